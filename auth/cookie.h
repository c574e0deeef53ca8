/* Access cookies of private sandboxes in a browser: v1.<expiry>.<MAC>, libsodium crypto_auth. */
#ifndef SGW_AUTH_COOKIE_H
#define SGW_AUTH_COOKIE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/token.h"

/* The cookie's name, and its value's greatest length ("v1." + 20 digits + "." + 43). */
#define AUTH_COOKIE_NAME "e2b_traffic_access"
enum { AUTH_COOKIE_KEY_SIZE = 32, AUTH_COOKIE_VALUE_MAX = 72 };

typedef struct auth_cookie_key {
    unsigned char bytes[AUTH_COOKIE_KEY_SIZE];
} auth_cookie_key_t;

/* Reads a key file: exactly AUTH_COOKIE_KEY_SIZE bytes (`openssl rand 32`).
 * Returns 0, or -1 with the reason in error. */
int auth_cookie_key_read(const char *path, auth_cookie_key_t *key, char *error, size_t error_size);

/* A random key (no key file: cookies then work on this process alone). */
void auth_cookie_key_random(auth_cookie_key_t *key);

/* Writes the cookie value for sandbox_id under key, bound to the digest of
 * the sandbox's current token, valid until expiry (Unix seconds), into out
 * (AUTH_COOKIE_VALUE_MAX bytes); returns its length. */
size_t auth_cookie_make(const auth_cookie_key_t *key, const char *sandbox_id,
                        const unsigned char digest[AUTH_DIGEST_SIZE], uint64_t expiry, char *out);

/* True if value (length bytes, not NUL-terminated) is a cookie made by
 * auth_cookie_make under key for this sandbox and token digest, and now (Unix
 * seconds) is before its expiry. The MAC is compared in constant time. */
bool auth_cookie_valid(const auth_cookie_key_t *key, const char *sandbox_id,
                       const unsigned char digest[AUTH_DIGEST_SIZE], const char *value,
                       size_t length, uint64_t now);

#endif
