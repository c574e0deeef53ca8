/* Traffic access token check: constant-time comparison of SHA-256 digests (libsodium). */
#include "auth/token.h"

#include <sodium.h>
#include <string.h>

enum { AUTH_DIGEST_HEX_LENGTH = 2 * AUTH_DIGEST_SIZE };

int auth_init(void) {
    /* sodium_init is itself thread-safe and returns 1 when already done. */
    return sodium_init() < 0 ? -1 : 0;
}

void auth_secret_from_token(auth_secret_t *secret, const char *token, size_t length) {
    sodium_memzero(secret, sizeof(*secret));
    if (token == NULL || length == 0)
        return;
    crypto_hash_sha256(secret->digest, (const unsigned char *)token, length);
    secret->present = true;
}

int auth_secret_from_sha256_hex(auth_secret_t *secret, const char *hex, size_t length) {
    sodium_memzero(secret, sizeof(*secret));
    if (hex == NULL || length != AUTH_DIGEST_HEX_LENGTH)
        return -1;
    /* sodium_hex2bin decodes without table lookups indexed by the digits, and
     * reports where it stopped: anything short of all 64 digits is malformed. */
    unsigned char digest[AUTH_DIGEST_SIZE];
    size_t digest_length = 0;
    const char *end = NULL;
    if (sodium_hex2bin(digest, sizeof(digest), hex, length, NULL, &digest_length, &end) != 0 ||
        digest_length != sizeof(digest) || end != hex + length) {
        sodium_memzero(digest, sizeof(digest));
        return -1;
    }
    memcpy(secret->digest, digest, sizeof(digest));
    sodium_memzero(digest, sizeof(digest));
    secret->present = true;
    return 0;
}

auth_result_t auth_token_check(const auth_secret_t *secret, const char *provided, size_t length) {
    if (provided == NULL)
        return AUTH_MISSING;
    /* Hashing first makes the comparison fixed-length: the time spent depends
     * on neither how much of the token matches nor how long the stored one is. */
    unsigned char digest[AUTH_DIGEST_SIZE];
    crypto_hash_sha256(digest, (const unsigned char *)provided, length);
    int difference = sodium_memcmp(digest, secret->digest, sizeof(digest));
    sodium_memzero(digest, sizeof(digest));
    if (!secret->present)
        return AUTH_INVALID; /* no token stored: nothing can match (fail closed) */
    return difference == 0 ? AUTH_OK : AUTH_INVALID;
}

const char *auth_result_message(auth_result_t result) {
    switch (result) {
    case AUTH_MISSING:
        return "Sandbox is secured with traffic access token. Token header '" AUTH_TOKEN_HEADER
               "' is missing";
    case AUTH_INVALID:
        return "Sandbox is secured with traffic access token. Provided token in header '"
               AUTH_TOKEN_HEADER "' is invalid";
    case AUTH_OK:
        break;
    }
    return NULL;
}
