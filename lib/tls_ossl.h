/*
 * Shared by the two files that include OpenSSL (tls_ctx.c, tls.c) and by
 * nothing else.
 */
#ifndef LSEC_TLS_OSSL_H
#define LSEC_TLS_OSSL_H

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

/* Empty this thread's OpenSSL error queue, as SSL_get_error() requires
 * before every SSL call, cheaply when it is already empty. */
void lsec__tls_clear_errors(void);
/* A connection's SSL object over the buffer BIO of `t`, in `ctx`'s role;
 * NULL when out of memory. */
SSL *lsec__tls_ssl_new(lsec__tls_ctx *ctx, lsec__tls *t);
int lsec__tls_ctx_role(const lsec__tls_ctx *ctx);

#endif
