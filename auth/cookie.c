/* Access cookies of private sandboxes in a browser: v1.<expiry>.<MAC>, libsodium crypto_auth. */
#include "auth/cookie.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(AUTH_COOKIE_KEY_SIZE == crypto_auth_KEYBYTES, "crypto_auth's key size");

enum {
    AUTH_COOKIE_MAC_TEXT = 43, /* crypto_auth_BYTES (32) in unpadded base64url */
    AUTH_COOKIE_EXPIRY_DIGITS_MAX = 20,
};

int auth_cookie_key_read(const char *path, auth_cookie_key_t *key, char *error, size_t error_size) {
    int descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (descriptor < 0) {
        snprintf(error, error_size, "cannot read \"%s\": %s", path, strerror(errno));
        return -1;
    }
    struct stat status;
    unsigned char bytes[AUTH_COOKIE_KEY_SIZE + 1];
    ssize_t got = -1;
    if (fstat(descriptor, &status) == 0 && S_ISREG(status.st_mode))
        got = read(descriptor, bytes, sizeof(bytes));
    int saved = errno;
    close(descriptor);
    if (got != AUTH_COOKIE_KEY_SIZE || status.st_size != AUTH_COOKIE_KEY_SIZE) {
        if (got < 0)
            snprintf(error, error_size, "cannot read \"%s\": %s", path,
                     S_ISREG(status.st_mode) ? strerror(saved) : "not a regular file");
        else
            snprintf(error, error_size, "\"%s\" holds %lld bytes, not %d (openssl rand 32)", path,
                     (long long)status.st_size, AUTH_COOKIE_KEY_SIZE);
        sodium_memzero(bytes, sizeof(bytes));
        return -1;
    }
    memcpy(key->bytes, bytes, AUTH_COOKIE_KEY_SIZE);
    sodium_memzero(bytes, sizeof(bytes));
    return 0;
}

void auth_cookie_key_random(auth_cookie_key_t *key) {
    crypto_auth_keygen(key->bytes);
}

/* The MAC of (sandbox ID, expiry, token digest), each field delimited. */
static void auth_cookie_mac(const auth_cookie_key_t *key, const char *sandbox_id,
                            const unsigned char digest[AUTH_DIGEST_SIZE], const char *expiry,
                            size_t expiry_length, unsigned char mac[crypto_auth_BYTES]) {
    crypto_auth_hmacsha512256_state state;
    crypto_auth_hmacsha512256_init(&state, key->bytes, sizeof(key->bytes));
    crypto_auth_hmacsha512256_update(&state, (const unsigned char *)"v1\n", 3);
    crypto_auth_hmacsha512256_update(&state, (const unsigned char *)sandbox_id, strlen(sandbox_id));
    crypto_auth_hmacsha512256_update(&state, (const unsigned char *)"\n", 1);
    crypto_auth_hmacsha512256_update(&state, (const unsigned char *)expiry, expiry_length);
    crypto_auth_hmacsha512256_update(&state, (const unsigned char *)"\n", 1);
    crypto_auth_hmacsha512256_update(&state, digest, AUTH_DIGEST_SIZE);
    crypto_auth_hmacsha512256_final(&state, mac);
    sodium_memzero(&state, sizeof(state));
}

size_t auth_cookie_make(const auth_cookie_key_t *key, const char *sandbox_id,
                        const unsigned char digest[AUTH_DIGEST_SIZE], uint64_t expiry, char *out) {
    char expiry_text[AUTH_COOKIE_EXPIRY_DIGITS_MAX + 1];
    int expiry_length = snprintf(expiry_text, sizeof(expiry_text), "%llu",
                                 (unsigned long long)expiry);
    unsigned char mac[crypto_auth_BYTES];
    auth_cookie_mac(key, sandbox_id, digest, expiry_text, (size_t)expiry_length, mac);
    int length = snprintf(out, AUTH_COOKIE_VALUE_MAX, "v1.%s.", expiry_text);
    sodium_bin2base64(out + length, AUTH_COOKIE_VALUE_MAX - (size_t)length, mac, sizeof(mac),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return (size_t)length + AUTH_COOKIE_MAC_TEXT;
}

bool auth_cookie_valid(const auth_cookie_key_t *key, const char *sandbox_id,
                       const unsigned char digest[AUTH_DIGEST_SIZE], const char *value,
                       size_t length, uint64_t now) {
    if (length < 3 + 1 + 1 + AUTH_COOKIE_MAC_TEXT || memcmp(value, "v1.", 3) != 0)
        return false;
    const char *expiry = value + 3;
    size_t expiry_length = length - 3 - 1 - AUTH_COOKIE_MAC_TEXT;
    if (expiry_length == 0 || expiry_length > AUTH_COOKIE_EXPIRY_DIGITS_MAX ||
        expiry[expiry_length] != '.')
        return false;
    uint64_t seconds = 0;
    for (size_t i = 0; i < expiry_length; i++) {
        if (expiry[i] < '0' || expiry[i] > '9' || seconds > (UINT64_MAX - 9) / 10)
            return false;
        seconds = seconds * 10 + (uint64_t)(expiry[i] - '0');
    }
    unsigned char given[crypto_auth_BYTES];
    size_t given_length = 0;
    const char *end = NULL;
    if (sodium_base642bin(given, sizeof(given), expiry + expiry_length + 1, AUTH_COOKIE_MAC_TEXT,
                          NULL, &given_length, &end, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        given_length != sizeof(given) || end != value + length)
        return false;
    unsigned char expected[crypto_auth_BYTES];
    auth_cookie_mac(key, sandbox_id, digest, expiry, expiry_length, expected);
    bool valid = sodium_memcmp(given, expected, sizeof(given)) == 0;
    return valid && now < seconds;
}
