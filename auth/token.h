/* Traffic access token check: constant-time comparison of SHA-256 digests (libsodium). */
#ifndef SGW_AUTH_TOKEN_H
#define SGW_AUTH_TOKEN_H

#include <stdbool.h>
#include <stddef.h>

enum { AUTH_DIGEST_SIZE = 32 };

#define AUTH_TOKEN_HEADER "e2b-traffic-access-token"

typedef struct auth_secret {
    bool present; /* false: no token stored, every request is refused (fail closed) */
    unsigned char digest[AUTH_DIGEST_SIZE];
} auth_secret_t;

typedef enum auth_result {
    AUTH_OK = 0,
    AUTH_MISSING, /* 403 "... Token header 'e2b-traffic-access-token' is missing" */
    AUTH_INVALID, /* 403 "... Provided token in header 'e2b-traffic-access-token' is invalid" */
} auth_result_t;

/* Calls sodium_init once; returns 0 or -1. Safe to call from several threads. */
int auth_init(void);

/* Stores the digest of a plain token; an empty token stores no secret (present is
 * false), since it would admit an empty header (fail closed). */
void auth_secret_from_token(auth_secret_t *secret, const char *token, size_t length);

/* Stores a digest given as 64 hex digits (either case); returns 0, or -1 if
 * malformed (present is then false: fail closed). */
int auth_secret_from_sha256_hex(auth_secret_t *secret, const char *hex, size_t length);

/* Checks the header value (provided == NULL when the header is absent) in time
 * independent of its content and length and of the secret. */
auth_result_t auth_token_check(const auth_secret_t *secret, const char *provided, size_t length);

/* The 403 message for a result other than AUTH_OK. */
const char *auth_result_message(auth_result_t result);

#endif
