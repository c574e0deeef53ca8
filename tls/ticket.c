/* Session ticket keys: nginx's key file format, random rotated keys, OpenSSL's ticket callback. */
#include "tls/ticket.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Random keys: a new encrypting key every hour, and the two before it kept
 * for decryption, so a ticket stays usable for its whole lifetime
 * (TLS_TICKET_LIFETIME_SECONDS) whenever in the hour it was issued. */
enum {
    TLS_TICKET_ROTATION_SECONDS = 3600,
    TLS_TICKET_RANDOM_KEYS_KEPT = 3,
};
_Static_assert((TLS_TICKET_RANDOM_KEYS_KEPT - 1) * TLS_TICKET_ROTATION_SECONDS >=
                   TLS_TICKET_LIFETIME_SECONDS,
               "random ticket keys must outlive the tickets they encrypt");

static uint64_t tls_ticket_now_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec;
}

int tls_ticket_key_set_read_file(tls_ticket_key_set_t *set, const char *path, char *error,
                                 size_t error_size) {
    unsigned char *bytes = NULL;
    size_t size = 0;
    set->keys = NULL;
    set->count = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(error, error_size, "tls_ticket_key_file %s: cannot read: %s", path,
                 strerror(errno));
        goto fail;
    }
    struct stat status;
    if (fstat(fd, &status) != 0) {
        snprintf(error, error_size, "tls_ticket_key_file %s: cannot read: %s", path,
                 strerror(errno));
        goto fail;
    }
    if (!S_ISREG(status.st_mode) || status.st_size == 0 ||
        status.st_size % TLS_TICKET_KEY_FILE_RECORD_SIZE != 0) {
        snprintf(error, error_size,
                 "tls_ticket_key_file %s: size %jd is not a non-zero multiple of %d bytes", path,
                 (intmax_t)status.st_size, TLS_TICKET_KEY_FILE_RECORD_SIZE);
        goto fail;
    }
    size = (size_t)status.st_size;
    bytes = malloc(size);
    if (bytes == NULL) {
        snprintf(error, error_size, "tls_ticket_key_file %s: out of memory", path);
        goto fail;
    }
    size_t done = 0;
    while (done < size) {
        ssize_t count = read(fd, bytes + done, size - done);
        if (count < 0 && errno == EINTR)
            continue;
        if (count <= 0) {
            snprintf(error, error_size, "tls_ticket_key_file %s: cannot read: %s", path,
                     count < 0 ? strerror(errno) : "file shrank while being read");
            goto fail;
        }
        done += (size_t)count;
    }
    set->count = size / TLS_TICKET_KEY_FILE_RECORD_SIZE;
    set->keys = calloc(set->count, sizeof(*set->keys));
    if (set->keys == NULL) {
        set->count = 0;
        snprintf(error, error_size, "tls_ticket_key_file %s: out of memory", path);
        goto fail;
    }
    /* nginx's layout of an 80-byte key, ngx_ssl_session_ticket_keys() in
     * src/event/ngx_event_openssl.c: name = buf[0..16), hmac_key = buf[16..48),
     * aes_key = buf[48..80) (its 48-byte keys put the AES key first, but only
     * the 80-byte form uses AES-256 and is accepted here). */
    for (size_t i = 0; i < set->count; i++) {
        const unsigned char *record = bytes + i * TLS_TICKET_KEY_FILE_RECORD_SIZE;
        tls_ticket_key_t *key = &set->keys[i];
        memcpy(key->name, record, TLS_TICKET_KEY_NAME_SIZE);
        memcpy(key->hmac_secret, record + TLS_TICKET_KEY_NAME_SIZE, TLS_TICKET_HMAC_SECRET_SIZE);
        memcpy(key->aes_key, record + TLS_TICKET_KEY_NAME_SIZE + TLS_TICKET_HMAC_SECRET_SIZE,
               TLS_TICKET_AES_KEY_SIZE);
    }
    OPENSSL_cleanse(bytes, size);
    free(bytes);
    close(fd);
    return 0;

fail:
    if (bytes != NULL) {
        OPENSSL_cleanse(bytes, size);
        free(bytes);
    }
    if (fd >= 0)
        close(fd);
    tls_ticket_key_set_clear(set);
    return -1;
}

void tls_ticket_key_set_clear(tls_ticket_key_set_t *set) {
    if (set->keys != NULL) {
        OPENSSL_cleanse(set->keys, set->count * sizeof(*set->keys));
        free(set->keys);
    }
    set->keys = NULL;
    set->count = 0;
}

/* Returns 0, or -1 when the generator fails. The name need not be secret. */
static int tls_ticket_key_generate(tls_ticket_key_t *key) {
    if (RAND_bytes(key->name, sizeof(key->name)) != 1 ||
        RAND_priv_bytes(key->hmac_secret, sizeof(key->hmac_secret)) != 1 ||
        RAND_priv_bytes(key->aes_key, sizeof(key->aes_key)) != 1) {
        OPENSSL_cleanse(key, sizeof(*key));
        return -1;
    }
    return 0;
}

/* With the write lock held: puts a new random key first and drops the oldest
 * beyond TLS_TICKET_RANDOM_KEYS_KEPT; returns 0 or -1 (the keys unchanged). */
static int tls_ticket_keys_rotate_locked(tls_ticket_keys_t *keys, uint64_t now) {
    size_t kept = keys->set.count < TLS_TICKET_RANDOM_KEYS_KEPT ? keys->set.count
                                                                : TLS_TICKET_RANDOM_KEYS_KEPT - 1;
    tls_ticket_key_t *rotated = calloc(kept + 1, sizeof(*rotated));
    if (rotated == NULL)
        return -1;
    if (tls_ticket_key_generate(&rotated[0]) != 0) {
        free(rotated);
        return -1;
    }
    if (kept > 0)
        memcpy(&rotated[1], keys->set.keys, kept * sizeof(*rotated));
    tls_ticket_key_set_clear(&keys->set);
    keys->set.keys = rotated;
    keys->set.count = kept + 1;
    keys->next_rotation_seconds = now + TLS_TICKET_ROTATION_SECONDS;
    return 0;
}

int tls_ticket_keys_init(tls_ticket_keys_t *keys, tls_ticket_key_set_t *set) {
    memset(keys, 0, sizeof(*keys));
    keys->cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
    if (keys->cipher == NULL)
        return -1;
    if (pthread_rwlock_init(&keys->lock, NULL) != 0) {
        EVP_CIPHER_free(keys->cipher);
        keys->cipher = NULL;
        return -1;
    }
    if (set != NULL) {
        keys->set = *set;
        set->keys = NULL;
        set->count = 0;
        return 0;
    }
    keys->rotating = true;
    if (tls_ticket_keys_rotate_locked(keys, tls_ticket_now_seconds()) != 0) {
        tls_ticket_keys_destroy(keys);
        return -1;
    }
    return 0;
}

void tls_ticket_keys_replace(tls_ticket_keys_t *keys, tls_ticket_key_set_t *set) {
    pthread_rwlock_wrlock(&keys->lock);
    tls_ticket_key_set_t old = keys->set;
    keys->set = *set;
    pthread_rwlock_unlock(&keys->lock);
    set->keys = NULL;
    set->count = 0;
    tls_ticket_key_set_clear(&old);
}

int tls_ticket_keys_rotate(tls_ticket_keys_t *keys) {
    pthread_rwlock_wrlock(&keys->lock);
    int result = -1;
    if (keys->rotating)
        result = tls_ticket_keys_rotate_locked(keys, tls_ticket_now_seconds());
    pthread_rwlock_unlock(&keys->lock);
    return result;
}

void tls_ticket_keys_destroy(tls_ticket_keys_t *keys) {
    if (keys->cipher == NULL)
        return; /* never initialised, or destroyed already */
    tls_ticket_key_set_clear(&keys->set);
    pthread_rwlock_destroy(&keys->lock);
    EVP_CIPHER_free(keys->cipher);
    keys->cipher = NULL;
}

/* Copies the encrypting key, rotating random keys first when their hour is
 * up; returns 0, or -1 if there is none. A failed rotation keeps the old key
 * in use and is retried by the next handshake. */
static int tls_ticket_keys_copy_encrypting(tls_ticket_keys_t *keys, tls_ticket_key_t *key) {
    uint64_t now = tls_ticket_now_seconds();
    pthread_rwlock_rdlock(&keys->lock);
    bool due = keys->rotating && now >= keys->next_rotation_seconds;
    pthread_rwlock_unlock(&keys->lock);
    if (due) {
        pthread_rwlock_wrlock(&keys->lock);
        if (now >= keys->next_rotation_seconds) /* another thread may have done it */
            tls_ticket_keys_rotate_locked(keys, now);
        pthread_rwlock_unlock(&keys->lock);
    }
    int result = -1;
    pthread_rwlock_rdlock(&keys->lock);
    if (keys->set.count > 0) {
        *key = keys->set.keys[0];
        result = 0;
    }
    pthread_rwlock_unlock(&keys->lock);
    return result;
}

/* Copies the key a ticket names; returns its position (0 = the encrypting
 * key), or -1 if no key has that name. */
static int tls_ticket_keys_copy_named(tls_ticket_keys_t *keys, const unsigned char *name,
                                      tls_ticket_key_t *key) {
    int position = -1;
    pthread_rwlock_rdlock(&keys->lock);
    for (size_t i = 0; i < keys->set.count; i++) {
        if (memcmp(keys->set.keys[i].name, name, TLS_TICKET_KEY_NAME_SIZE) == 0) {
            *key = keys->set.keys[i];
            position = (int)i;
            break;
        }
    }
    pthread_rwlock_unlock(&keys->lock);
    return position;
}

/* HMAC-SHA256 keyed with the key's 32-byte secret, as nginx does for 80-byte keys. */
static int tls_ticket_set_mac_key(EVP_MAC_CTX *mac_context, tls_ticket_key_t *key) {
    static char digest_name[] = "SHA256";
    OSSL_PARAM parameters[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key->hmac_secret,
                                          sizeof(key->hmac_secret)),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
        OSSL_PARAM_construct_end(),
    };
    return EVP_MAC_CTX_set_params(mac_context, parameters) == 1 ? 0 : -1;
}

int tls_ticket_keys_callback(tls_ticket_keys_t *keys, unsigned char name[16],
                             unsigned char *iv, EVP_CIPHER_CTX *cipher_context,
                             EVP_MAC_CTX *mac_context, int encrypt) {
    tls_ticket_key_t key;
    int result = -1;
    if (encrypt) {
        /* Returns 1: ticket issued; -1: error (OpenSSL then sends none). */
        if (tls_ticket_keys_copy_encrypting(keys, &key) != 0)
            return -1;
        int iv_length = EVP_CIPHER_get_iv_length(keys->cipher);
        if (iv_length <= 0 || RAND_bytes(iv, iv_length) != 1)
            goto done;
        memcpy(name, key.name, TLS_TICKET_KEY_NAME_SIZE);
        if (EVP_EncryptInit_ex(cipher_context, keys->cipher, NULL, key.aes_key, iv) != 1 ||
            tls_ticket_set_mac_key(mac_context, &key) != 0)
            goto done;
        result = 1;
    } else {
        /* Returns 0: unknown key, full handshake; 1: resume; 2: resume and
         * issue a fresh ticket under the current key (RFC 5077 §3.3), for a
         * ticket made with an older key that will soon be retired. */
        int position = tls_ticket_keys_copy_named(keys, name, &key);
        if (position < 0)
            return 0;
        if (EVP_DecryptInit_ex(cipher_context, keys->cipher, NULL, key.aes_key, iv) != 1 ||
            tls_ticket_set_mac_key(mac_context, &key) != 0)
            goto done;
        result = position == 0 ? 1 : 2;
    }
done:
    OPENSSL_cleanse(&key, sizeof(key));
    return result;
}
