/* Session ticket keys: nginx's key file format, random rotated keys, OpenSSL's ticket callback. */
#ifndef SGW_TLS_TICKET_H
#define SGW_TLS_TICKET_H

#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    TLS_TICKET_KEY_NAME_SIZE = 16,
    TLS_TICKET_HMAC_SECRET_SIZE = 32,
    TLS_TICKET_AES_KEY_SIZE = 32,
    TLS_TICKET_KEY_FILE_RECORD_SIZE = 80, /* name + HMAC secret + AES key */
    /* How long a client may resume a session (OpenSSL's own default for TLS,
     * set explicitly because random key rotation is sized for it). */
    TLS_TICKET_LIFETIME_SECONDS = 2 * 3600,
};

typedef struct tls_ticket_key {
    unsigned char name[TLS_TICKET_KEY_NAME_SIZE]; /* sent in clear at the start of every ticket */
    unsigned char hmac_secret[TLS_TICKET_HMAC_SECRET_SIZE];
    unsigned char aes_key[TLS_TICKET_AES_KEY_SIZE];
} tls_ticket_key_t;

/* An ordered list of keys: the first encrypts, all decrypt. */
typedef struct tls_ticket_key_set {
    tls_ticket_key_t *keys;
    size_t count;
} tls_ticket_key_set_t;

/* The live keys of one process, shared by every worker thread. */
typedef struct tls_ticket_keys {
    pthread_rwlock_t lock;   /* guards set and next_rotation_seconds */
    tls_ticket_key_set_t set;
    bool rotating;           /* random keys, replaced on a timer; false for a key file */
    uint64_t next_rotation_seconds; /* CLOCK_MONOTONIC */
    EVP_CIPHER *cipher;      /* AES-256-CBC, fetched once rather than on every handshake */
} tls_ticket_keys_t;

/* Reads a key file: one or more 80-byte keys, nginx's layout; returns 0, or -1
 * with "tls_ticket_key_file FILE: reason" in error. */
int tls_ticket_key_set_read_file(tls_ticket_key_set_t *set, const char *path, char *error,
                                 size_t error_size);

/* Zeroes the key material and frees it; the set is left empty. */
void tls_ticket_key_set_clear(tls_ticket_key_set_t *set);

/* Initialises keys from a file's set (taken over: *set is left empty), or with
 * random keys rotated hourly when set is NULL; returns 0 or -1. */
int tls_ticket_keys_init(tls_ticket_keys_t *keys, tls_ticket_key_set_t *set);

/* Swaps in a file's new set (taken over: *set is left empty); the old keys are zeroed. */
void tls_ticket_keys_replace(tls_ticket_keys_t *keys, tls_ticket_key_set_t *set);

/* Random keys only: a new encrypting key now, keeping the newest older ones;
 * returns 0, or -1 for file keys or when out of randomness or memory. */
int tls_ticket_keys_rotate(tls_ticket_keys_t *keys);

/* Zeroes and frees everything. */
void tls_ticket_keys_destroy(tls_ticket_keys_t *keys);

/* The work of SSL_CTX_set_tlsext_ticket_key_evp_cb's callback, with its
 * arguments and return values (thread-safe). */
int tls_ticket_keys_callback(tls_ticket_keys_t *keys, unsigned char name[16],
                             unsigned char *iv, EVP_CIPHER_CTX *cipher_context,
                             EVP_MAC_CTX *mac_context, int encrypt);

#endif
