/* Unit tests of auth/cookie.c: the access cookie's format, expiry, tampering, binding to the
 * sandbox and its token, keys and key files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth/cookie.h"

static int setup(void **state) {
    (void)state;
    return auth_init();
}

static auth_cookie_key_t key_of(unsigned char fill) {
    auth_cookie_key_t key;
    memset(key.bytes, fill, sizeof(key.bytes));
    return key;
}

static auth_secret_t secret_of(const char *token) {
    auth_secret_t secret;
    auth_secret_from_token(&secret, token, strlen(token));
    return secret;
}

static void test_format_and_round_trip(void **state) {
    (void)state;
    auth_cookie_key_t key = key_of(1);
    auth_secret_t secret = secret_of("tok-1");
    char value[AUTH_COOKIE_VALUE_MAX];
    size_t length = auth_cookie_make(&key, "abc123", secret.digest, 1900000000, value);
    assert_int_equal(length, strlen(value));
    assert_int_equal(length, strlen("v1.1900000000.") + 43);
    assert_memory_equal(value, "v1.1900000000.", 14);
    for (size_t i = 14; i < length; i++)
        assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                               value[i]));
    assert_true(auth_cookie_valid(&key, "abc123", secret.digest, value, length, 1899999999));
    /* The token never shows: neither it nor its digest is in the value. */
    assert_null(strstr(value, "tok-1"));
}

static void test_expiry(void **state) {
    (void)state;
    auth_cookie_key_t key = key_of(2);
    auth_secret_t secret = secret_of("tok");
    char value[AUTH_COOKIE_VALUE_MAX];
    size_t length = auth_cookie_make(&key, "sb", secret.digest, 1000, value);
    assert_true(auth_cookie_valid(&key, "sb", secret.digest, value, length, 999));
    assert_false(auth_cookie_valid(&key, "sb", secret.digest, value, length, 1000));
    assert_false(auth_cookie_valid(&key, "sb", secret.digest, value, length, 5000));
}

static void test_bound_to_sandbox_token_and_key(void **state) {
    (void)state;
    auth_cookie_key_t key = key_of(3), other_key = key_of(4);
    auth_secret_t secret = secret_of("tok"), rotated = secret_of("tok2");
    char value[AUTH_COOKIE_VALUE_MAX];
    size_t length = auth_cookie_make(&key, "sb1", secret.digest, 2000, value);
    assert_true(auth_cookie_valid(&key, "sb1", secret.digest, value, length, 1));
    assert_false(auth_cookie_valid(&key, "sb2", secret.digest, value, length, 1));
    assert_false(auth_cookie_valid(&key, "sb1", rotated.digest, value, length, 1));
    assert_false(auth_cookie_valid(&other_key, "sb1", secret.digest, value, length, 1));
}

static void test_tampering(void **state) {
    (void)state;
    auth_cookie_key_t key = key_of(5);
    auth_secret_t secret = secret_of("tok");
    char value[AUTH_COOKIE_VALUE_MAX];
    size_t length = auth_cookie_make(&key, "sb", secret.digest, 3000, value);
    for (size_t i = 0; i < length; i++) {
        char copy[AUTH_COOKIE_VALUE_MAX];
        memcpy(copy, value, length);
        copy[i] = copy[i] == 'A' ? 'B' : 'A';
        assert_false(auth_cookie_valid(&key, "sb", secret.digest, copy, length, 1));
    }
    /* A later expiry with the old MAC; cut, extended, empty, other versions. */
    char later[AUTH_COOKIE_VALUE_MAX];
    snprintf(later, sizeof(later), "v1.9000%s", value + 7);
    assert_false(auth_cookie_valid(&key, "sb", secret.digest, later, strlen(later), 1));
    assert_false(auth_cookie_valid(&key, "sb", secret.digest, value, length - 1, 1));
    char longer[AUTH_COOKIE_VALUE_MAX + 2];
    snprintf(longer, sizeof(longer), "%sA", value);
    assert_false(auth_cookie_valid(&key, "sb", secret.digest, longer, length + 1, 1));
    assert_false(auth_cookie_valid(&key, "sb", secret.digest, "", 0, 1));
    assert_false(auth_cookie_valid(&key, "sb", secret.digest, "v2.3000.x", 9, 1));
    char no_expiry[AUTH_COOKIE_VALUE_MAX];
    snprintf(no_expiry, sizeof(no_expiry), "v1.%s", value + 8);
    assert_false(auth_cookie_valid(&key, "sb", secret.digest, no_expiry, strlen(no_expiry), 1));
}

static void test_key_files(void **state) {
    (void)state;
    char directory[] = "/tmp/sgw-cookie-XXXXXX";
    assert_non_null(mkdtemp(directory));
    char path[256];
    snprintf(path, sizeof(path), "%s/key", directory);
    char error[256];
    auth_cookie_key_t key;
    assert_int_equal(auth_cookie_key_read(path, &key, error, sizeof(error)), -1);
    assert_non_null(strstr(error, "cannot read"));
    static const size_t wrong_sizes[] = {0, 16, 31, 33, 64};
    for (size_t i = 0; i < sizeof(wrong_sizes) / sizeof(wrong_sizes[0]); i++) {
        FILE *file = fopen(path, "wb");
        assert_non_null(file);
        for (size_t j = 0; j < wrong_sizes[i]; j++)
            fputc((int)j, file);
        fclose(file);
        assert_int_equal(auth_cookie_key_read(path, &key, error, sizeof(error)), -1);
        assert_non_null(strstr(error, "not 32"));
    }
    FILE *file = fopen(path, "wb");
    assert_non_null(file);
    for (int i = 0; i < 32; i++)
        fputc(i, file);
    fclose(file);
    assert_int_equal(auth_cookie_key_read(path, &key, error, sizeof(error)), 0);
    assert_int_equal(key.bytes[31], 31);
    file = fopen(path, "ab");
    fputc('\n', file);
    fclose(file);
    assert_int_equal(auth_cookie_key_read(path, &key, error, sizeof(error)), -1);
    assert_non_null(strstr(error, "holds 33 bytes, not 32"));
    assert_int_equal(auth_cookie_key_read(directory, &key, error, sizeof(error)), -1);
    unlink(path);
    rmdir(directory);

    auth_cookie_key_t first, second;
    auth_cookie_key_random(&first);
    auth_cookie_key_random(&second);
    assert_memory_not_equal(first.bytes, second.bytes, sizeof(first.bytes));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_and_round_trip),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_bound_to_sandbox_token_and_key),
        cmocka_unit_test(test_tampering),
        cmocka_unit_test(test_key_files),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
