/* Unit tests of auth/token.c: token and digest secrets, checks and messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "auth/token.h"

/* SHA-256 of "secret-token", as `printf %s secret-token | sha256sum` prints it. */
static const char token_text[] = "secret-token";
static const char token_sha256_lower[] =
    "930bbdc51b6aed5c2a5678fd6e28dee7a05e8a4b643cfc0b4427c3efb86c0d94";

static int setup(void **state) {
    (void)state;
    return auth_init();
}

static auth_result_t check(const auth_secret_t *secret, const char *provided) {
    return auth_token_check(secret, provided, provided == NULL ? 0 : strlen(provided));
}

static void test_right_token(void **state) {
    (void)state;
    auth_secret_t secret;
    auth_secret_from_token(&secret, token_text, strlen(token_text));
    assert_true(secret.present);
    assert_int_equal(check(&secret, "secret-token"), AUTH_OK);
}

static void test_wrong_token(void **state) {
    (void)state;
    auth_secret_t secret;
    auth_secret_from_token(&secret, token_text, strlen(token_text));
    assert_int_equal(check(&secret, "secret-tokeN"), AUTH_INVALID);
    assert_int_equal(check(&secret, "Secret-token"), AUTH_INVALID);
    assert_int_equal(check(&secret, "secret-token "), AUTH_INVALID);
    assert_int_equal(check(&secret, "secret-toke"), AUTH_INVALID);
    assert_int_equal(check(&secret, "secret-token-and-more"), AUTH_INVALID);
    assert_int_equal(check(&secret, token_sha256_lower), AUTH_INVALID);
    /* Only length bytes are the token. */
    assert_int_equal(auth_token_check(&secret, "secret-tokenXYZ", 12), AUTH_OK);
    assert_int_equal(auth_token_check(&secret, "secret-token\0", 13), AUTH_INVALID);
}

static void test_empty_and_absent(void **state) {
    (void)state;
    auth_secret_t secret;
    auth_secret_from_token(&secret, token_text, strlen(token_text));
    assert_int_equal(check(&secret, ""), AUTH_INVALID);
    assert_int_equal(check(&secret, NULL), AUTH_MISSING);
}

static void test_no_secret_fails_closed(void **state) {
    (void)state;
    auth_secret_t secret;
    memset(&secret, 0, sizeof(secret));
    assert_int_equal(check(&secret, NULL), AUTH_MISSING);
    assert_int_equal(check(&secret, ""), AUTH_INVALID);
    assert_int_equal(check(&secret, "anything"), AUTH_INVALID);

    /* An empty stored token stores no secret, so an empty header cannot pass. */
    auth_secret_from_token(&secret, "", 0);
    assert_false(secret.present);
    assert_int_equal(check(&secret, ""), AUTH_INVALID);
}

static void test_sha256_hex(void **state) {
    (void)state;
    auth_secret_t secret;
    assert_int_equal(
        auth_secret_from_sha256_hex(&secret, token_sha256_lower, strlen(token_sha256_lower)), 0);
    assert_true(secret.present);
    assert_int_equal(check(&secret, "secret-token"), AUTH_OK);
    assert_int_equal(check(&secret, "other"), AUTH_INVALID);
    assert_int_equal(check(&secret, token_sha256_lower), AUTH_INVALID);

    auth_secret_t from_token;
    auth_secret_from_token(&from_token, token_text, strlen(token_text));
    assert_memory_equal(secret.digest, from_token.digest, AUTH_DIGEST_SIZE);
}

static void test_sha256_hex_upper_case(void **state) {
    (void)state;
    char upper[sizeof(token_sha256_lower)];
    for (size_t i = 0; i < sizeof(upper); i++) {
        char c = token_sha256_lower[i];
        upper[i] = (c >= 'a' && c <= 'f') ? (char)(c - 'a' + 'A') : c;
    }
    auth_secret_t secret;
    assert_int_equal(auth_secret_from_sha256_hex(&secret, upper, strlen(upper)), 0);
    assert_int_equal(check(&secret, "secret-token"), AUTH_OK);
}

static void assert_bad_hex(const char *hex, size_t length) {
    auth_secret_t secret;
    memset(&secret, 0xff, sizeof(secret));
    secret.present = true;
    assert_int_equal(auth_secret_from_sha256_hex(&secret, hex, length), -1);
    assert_false(secret.present);
    assert_int_equal(check(&secret, "secret-token"), AUTH_INVALID);
}

static void test_sha256_bad_hex(void **state) {
    (void)state;
    char hex[80];
    size_t length = strlen(token_sha256_lower);

    assert_bad_hex("", 0);
    assert_bad_hex(NULL, 0);
    assert_bad_hex(token_sha256_lower, length - 1);
    assert_bad_hex(token_sha256_lower, length - 2);

    memcpy(hex, token_sha256_lower, length);
    memcpy(hex + length, "00", 2);
    assert_bad_hex(hex, length + 2);

    memcpy(hex, token_sha256_lower, length);
    hex[10] = 'g';
    assert_bad_hex(hex, length);
    hex[10] = ' ';
    assert_bad_hex(hex, length);
    hex[10] = '\0';
    assert_bad_hex(hex, length);
    hex[10] = ':';
    assert_bad_hex(hex, length);

    memcpy(hex, token_sha256_lower, length);
    hex[length - 1] = 'z';
    assert_bad_hex(hex, length);
    hex[0] = '-';
    assert_bad_hex(hex, length);
}

static void test_messages(void **state) {
    (void)state;
    assert_string_equal(auth_result_message(AUTH_MISSING),
                        "Sandbox is secured with traffic access token. Token header "
                        "'e2b-traffic-access-token' is missing");
    assert_string_equal(auth_result_message(AUTH_INVALID),
                        "Sandbox is secured with traffic access token. Provided token in header "
                        "'e2b-traffic-access-token' is invalid");
    assert_null(auth_result_message(AUTH_OK));
}

static void test_init_twice(void **state) {
    (void)state;
    assert_int_equal(auth_init(), 0);
    assert_int_equal(auth_init(), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_right_token),
        cmocka_unit_test(test_wrong_token),
        cmocka_unit_test(test_empty_and_absent),
        cmocka_unit_test(test_no_secret_fails_closed),
        cmocka_unit_test(test_sha256_hex),
        cmocka_unit_test(test_sha256_hex_upper_case),
        cmocka_unit_test(test_sha256_bad_hex),
        cmocka_unit_test(test_messages),
        cmocka_unit_test(test_init_twice),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
