/* Fuzz target: the session-ticket key file (tls/ticket.c) and the ticket callback with
 * attacker-chosen key names. Input: key file bytes 0xff ticket key names (16 bytes each). */
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tests/fuzz/fuzz.h"
#include "tls/ticket.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static EVP_CIPHER_CTX *cipher_context;
static EVP_MAC_CTX *mac_context;

/* The first key whose name is name, or -1. */
static int first_named(const tls_ticket_key_set_t *set, const unsigned char *name) {
    for (size_t i = 0; i < set->count; i++) {
        if (memcmp(set->keys[i].name, name, TLS_TICKET_KEY_NAME_SIZE) == 0)
            return (int)i;
    }
    return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (cipher_context == NULL) {
        cipher_context = EVP_CIPHER_CTX_new();
        EVP_MAC *mac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
        mac_context = EVP_MAC_CTX_new(mac);
        EVP_MAC_free(mac);
        FUZZ_CHECK(cipher_context != NULL && mac_context != NULL);
    }
    const uint8_t *parts[2];
    size_t lengths[2] = {0, 0};
    size_t count = fuzz_split(data, size, parts, lengths, 2);

    /* The key file, read as the gateway reads it (a regular file in memory). */
    int fd = memfd_create("ticket.key", MFD_CLOEXEC);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(write(fd, parts[0], lengths[0]) == (ssize_t)lengths[0]);
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    tls_ticket_key_set_t set;
    char error[512];
    int read_result = tls_ticket_key_set_read_file(&set, path, error, sizeof(error));
    close(fd);
    bool whole = lengths[0] > 0 && lengths[0] % TLS_TICKET_KEY_FILE_RECORD_SIZE == 0;
    FUZZ_CHECK((read_result == 0) == whole);
    if (read_result != 0) {
        FUZZ_CHECK(strncmp(error, "tls_ticket_key_file ", 20) == 0);
        return 0;
    }
    FUZZ_CHECK(set.count == lengths[0] / TLS_TICKET_KEY_FILE_RECORD_SIZE);
    tls_ticket_key_set_t copy = {.keys = malloc(set.count * sizeof(tls_ticket_key_t)),
                                 .count = set.count};
    FUZZ_CHECK(copy.keys != NULL);
    memcpy(copy.keys, set.keys, set.count * sizeof(tls_ticket_key_t));

    tls_ticket_keys_t keys;
    FUZZ_CHECK(tls_ticket_keys_init(&keys, &set) == 0);
    unsigned char iv[EVP_MAX_IV_LENGTH];
    unsigned char name[TLS_TICKET_KEY_NAME_SIZE];

    /* Decrypting: a known name resumes (renewing when not the first key), any other is a
     * full handshake. Each key's own name, then names from the input. */
    size_t names = copy.count + (count > 1 ? lengths[1] / TLS_TICKET_KEY_NAME_SIZE : 0);
    for (size_t i = 0; i < names && i < 64; i++) {
        if (i < copy.count)
            memcpy(name, copy.keys[i].name, sizeof(name));
        else
            memcpy(name, parts[1] + (i - copy.count) * TLS_TICKET_KEY_NAME_SIZE, sizeof(name));
        memset(iv, 0x11, sizeof(iv));
        int result = tls_ticket_keys_callback(&keys, name, iv, cipher_context, mac_context, 0);
        int position = first_named(&copy, name);
        FUZZ_CHECK(result == (position < 0 ? 0 : position == 0 ? 1 : 2));
    }
    /* Encrypting: always under the first key's name. */
    FUZZ_CHECK(tls_ticket_keys_callback(&keys, name, iv, cipher_context, mac_context, 1) == 1);
    FUZZ_CHECK(memcmp(name, copy.keys[0].name, sizeof(name)) == 0);

    tls_ticket_keys_destroy(&keys);
    tls_ticket_key_set_clear(&copy);
    return 0;
}
