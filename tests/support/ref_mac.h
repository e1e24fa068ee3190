/*
 * An implementation of PROTOCOL.md's MAC that is not the library's:
 * keyed BLAKE2b-256 through OpenSSL's BLAKE2BMAC, for tests that check
 * lib/ (which uses libsodium) against it.
 */
#ifndef LSEC_TEST_REF_MAC_H
#define LSEC_TEST_REF_MAC_H

#include <stddef.h>
#include <stdint.h>

/* out = BLAKE2b-256(key, msg); aborts the test program if OpenSSL fails. */
void lsec_test_ref_mac(uint8_t out[32], const uint8_t key[32], const void *msg,
                       size_t len);

#endif
