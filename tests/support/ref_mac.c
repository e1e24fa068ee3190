#include "ref_mac.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>

void lsec_test_ref_mac(uint8_t out[32], const uint8_t key[32], const void *msg,
                       size_t len)
{
    size_t size = 32, outlen = 0;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size),
        OSSL_PARAM_construct_end()};
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "BLAKE2BMAC", NULL);
    EVP_MAC_CTX *ctx = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;

    if (ctx == NULL || EVP_MAC_init(ctx, key, 32, params) != 1 ||
        EVP_MAC_update(ctx, msg, len) != 1 ||
        EVP_MAC_final(ctx, out, &outlen, 32) != 1 || outlen != 32) {
        fprintf(stderr, "OpenSSL BLAKE2BMAC failed\n");
        abort();
    }
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
}
