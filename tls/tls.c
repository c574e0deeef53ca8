/* TLS termination: OpenSSL 3 contexts picked by SNI, ALPN h2 and http/1.1, shared tickets, reload. */
#include "tls/tls.h"

#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "tls/ticket.h"

/* TLS 1.2 suites with forward secrecy (ECDHE) and AEAD (AES-GCM,
 * ChaCha20-Poly1305) only, as Mozilla's "intermediate" profile; TLS 1.3 keeps
 * OpenSSL's suites, which are all AEAD. */
static const char tls_cipher_list[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                      "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                      "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char tls_groups[] = "X25519:P-256:P-384";

/* A session is bound to this value; it is the same on every instance, so a
 * ticket issued by one gateway resumes on another sharing its ticket keys. */
static const unsigned char tls_session_id_context[] = "sandbox-gateway";

/* The protocols the gateway speaks, in ALPN's wire form (RFC 7301 §3.1), in
 * the order it prefers them; without HTTP/2 the list starts at http/1.1. */
static const unsigned char tls_alpn_protocols[] = "\x02h2\x08http/1.1";
enum { TLS_ALPN_HTTP11_OFFSET = 3 };

enum {
    TLS_MAX_KEY_TYPES = 8,     /* certificates of distinct key types in one SSL_CTX */
    TLS_MAX_HOST_LENGTH = 253, /* RFC 1035 §2.3.4, without a trailing dot */
};

/* The certificates served for one set of names, at most one per key type,
 * all in one SSL_CTX: with ECDSA and RSA side by side OpenSSL picks per
 * handshake, by the client's signature algorithms (TLS 1.3) or cipher suites
 * (TLS 1.2), ECDSA first when both fit. */
typedef struct tls_site {
    SSL_CTX *ssl_context;
    char **names; /* lower-case DNS names of its certificates; "*.example.test" for a wildcard */
    size_t name_count;
    int key_types[TLS_MAX_KEY_TYPES]; /* EVP_PKEY base ids */
    size_t key_type_count;
} tls_site_t;

/* What one load of the files produced, replaced whole by a reload. Reference
 * counted so a reload can swap it while handshakes on other threads still
 * search it; an SSL_CTX in use by a connection is kept alive by OpenSSL's own
 * reference. */
typedef struct tls_generation {
    atomic_uint references;
    tls_site_t *sites; /* sites[0] holds the first pair: the default */
    size_t site_count;
} tls_generation_t;

struct tls_context {
    char **certificate_paths;
    char **key_paths;
    size_t pair_count;
    char *ticket_key_file; /* NULL: random keys */
    bool http2;            /* ALPN offers h2 */

    pthread_mutex_t lock; /* guards the generation pointer only */
    tls_generation_t *generation;

    tls_ticket_keys_t ticket_keys; /* has its own lock */

    atomic_uint_fast64_t handshakes;
    atomic_uint_fast64_t resumed;
    atomic_uint_fast64_t failed;
};

/* How far an accepted connection got, kept in the SSL's ex_data so each one
 * is counted once in the stats. */
typedef enum tls_handshake_state {
    TLS_HANDSHAKE_NONE = 0, /* not a connection of this module */
    TLS_HANDSHAKE_ACCEPTED,
    TLS_HANDSHAKE_HELLO, /* a ClientHello was read */
    TLS_HANDSHAKE_DONE,
    TLS_HANDSHAKE_FAILED,
} tls_handshake_state_t;

/* A certificate pair read from its files, before it joins a site. */
typedef struct tls_loaded_pair {
    X509 *leaf;
    STACK_OF(X509) *chain;
    EVP_PKEY *key;
    char **names;
    size_t name_count;
    int key_type;
} tls_loaded_pair_t;

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static int tls_handshake_state_index = -1;

/* ---- small helpers ---- */

static char *tls_strdup(const char *text) {
    return text == NULL ? NULL : strdup(text);
}

static void tls_free_strings(char **strings, size_t count) {
    if (strings == NULL)
        return;
    for (size_t i = 0; i < count; i++)
        free(strings[i]);
    free(strings);
}

/* Writes OpenSSL's reason for the earliest queued error (the cause; later
 * ones only say which call gave up) and empties the queue. */
static const char *tls_openssl_reason(char *buffer, size_t size) {
    unsigned long code = ERR_peek_error();
    if (code == 0) {
        snprintf(buffer, size, "unknown error");
    } else if (ERR_SYSTEM_ERROR(code)) {
        snprintf(buffer, size, "%s", strerror(ERR_GET_REASON(code))); /* an errno, from fopen */
    } else if (ERR_GET_LIB(code) == ERR_LIB_PEM && ERR_GET_REASON(code) == PEM_R_NO_START_LINE) {
        snprintf(buffer, size, "no PEM data found");
    } else if (ERR_GET_LIB(code) == ERR_LIB_OSSL_DECODER &&
               ERR_GET_REASON(code) == ERR_R_UNSUPPORTED) {
        /* OpenSSL 3's key decoders say only "unsupported" for a damaged file. */
        snprintf(buffer, size, "no readable PEM key found");
    } else {
        const char *reason = ERR_reason_error_string(code);
        if (reason != NULL)
            snprintf(buffer, size, "%s", reason);
        else
            ERR_error_string_n(code, buffer, size);
    }
    ERR_clear_error();
    return buffer;
}

static tls_handshake_state_t tls_handshake_state(const SSL *ssl) {
    return (tls_handshake_state_t)(uintptr_t)SSL_get_ex_data(ssl, tls_handshake_state_index);
}

static void tls_set_handshake_state(const SSL *ssl, tls_handshake_state_t state) {
    /* The info callback hands out a const SSL; the SSL itself is not const. */
    SSL_set_ex_data((SSL *)ssl, tls_handshake_state_index, (void *)(uintptr_t)state);
}

static tls_context_t *tls_context_of(const SSL *ssl) {
    return SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
}

static void tls_count(atomic_uint_fast64_t *counter) {
    atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
}

/* ---- names: SAN DNS entries, and SNI matching ---- */

/* Copies a DNS name lower-cased without a trailing dot; returns NULL for an
 * empty, too long or NUL-embedding name, or when out of memory. */
static char *tls_name_normalize(const char *name, size_t length) {
    if (length > 0 && name[length - 1] == '.')
        length--;
    if (length == 0 || length > TLS_MAX_HOST_LENGTH || memchr(name, '\0', length) != NULL)
        return NULL;
    char *copy = malloc(length + 1);
    if (copy == NULL)
        return NULL;
    for (size_t i = 0; i < length; i++) {
        char c = name[i];
        copy[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    copy[length] = '\0';
    return copy;
}

/* Adds a name unless already there (takes name over); returns 0 or -1. */
static int tls_names_add(char ***names, size_t *count, char *name) {
    for (size_t i = 0; i < *count; i++) {
        if (strcmp((*names)[i], name) == 0) {
            free(name);
            return 0;
        }
    }
    char **grown = realloc(*names, (*count + 1) * sizeof(*grown));
    if (grown == NULL) {
        free(name);
        return -1;
    }
    grown[(*count)++] = name;
    *names = grown;
    return 0;
}

/* Collects the DNS names a certificate is valid for: its subjectAltName DNS
 * entries, or its subject CN when it has none (RFC 6125 §6.4.4); returns 0,
 * or -1 when out of memory. */
static int tls_certificate_names(X509 *leaf, char ***names, size_t *count) {
    *names = NULL;
    *count = 0;
    GENERAL_NAMES *alternatives = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; alternatives != NULL && i < sk_GENERAL_NAME_num(alternatives); i++) {
        const GENERAL_NAME *alternative = sk_GENERAL_NAME_value(alternatives, i);
        if (alternative->type != GEN_DNS)
            continue;
        const ASN1_STRING *dns = alternative->d.dNSName;
        char *name = tls_name_normalize((const char *)ASN1_STRING_get0_data(dns),
                                        (size_t)ASN1_STRING_length(dns));
        if (name != NULL && tls_names_add(names, count, name) != 0)
            goto fail;
    }
    GENERAL_NAMES_free(alternatives);
    alternatives = NULL;
    if (*count > 0)
        return 0;
    X509_NAME *subject = X509_get_subject_name(leaf);
    int position = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (position < 0)
        return 0;
    unsigned char *common_name = NULL;
    int length = ASN1_STRING_to_UTF8(
        &common_name, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, position)));
    if (length < 0)
        return 0;
    char *name = tls_name_normalize((const char *)common_name, (size_t)length);
    OPENSSL_free(common_name);
    if (name != NULL && tls_names_add(names, count, name) != 0)
        goto fail;
    return 0;

fail:
    GENERAL_NAMES_free(alternatives);
    tls_free_strings(*names, *count);
    *names = NULL;
    *count = 0;
    return -1;
}

/* RFC 6125 §6.4.3: a wildcard stands for exactly one whole left-most label,
 * so "*.e2b.app" covers "3000-x.e2b.app" but neither "e2b.app" nor "a.b.e2b.app". */
static bool tls_wildcard_covers(const char *pattern, const char *host) {
    if (pattern[0] != '*' || pattern[1] != '.')
        return false;
    const char *dot = strchr(host, '.');
    return dot != NULL && dot != host && strcmp(dot + 1, pattern + 2) == 0;
}

/* The site for a host (lower-case): an exact name first, as nginx prefers
 * exact server names over wildcards, then a wildcard; NULL if none covers it. */
static const tls_site_t *tls_generation_find(const tls_generation_t *generation,
                                             const char *host) {
    for (size_t i = 0; i < generation->site_count; i++) {
        const tls_site_t *site = &generation->sites[i];
        for (size_t j = 0; j < site->name_count; j++) {
            if (strcmp(site->names[j], host) == 0)
                return site;
        }
    }
    for (size_t i = 0; i < generation->site_count; i++) {
        const tls_site_t *site = &generation->sites[i];
        for (size_t j = 0; j < site->name_count; j++) {
            if (tls_wildcard_covers(site->names[j], host))
                return site;
        }
    }
    return NULL;
}

static bool tls_same_names(const tls_site_t *site, const tls_loaded_pair_t *pair) {
    if (site->name_count != pair->name_count)
        return false;
    for (size_t i = 0; i < pair->name_count; i++) {
        bool found = false;
        for (size_t j = 0; j < site->name_count && !found; j++)
            found = strcmp(pair->names[i], site->names[j]) == 0;
        if (!found)
            return false;
    }
    return true;
}

/* ---- generations: the sites of one load ---- */

static void tls_site_clear(tls_site_t *site) {
    SSL_CTX_free(site->ssl_context); /* connections still using it hold their own reference */
    site->ssl_context = NULL;
    tls_free_strings(site->names, site->name_count);
    site->names = NULL;
    site->name_count = 0;
}

static void tls_generation_free(tls_generation_t *generation) {
    if (generation == NULL)
        return;
    for (size_t i = 0; i < generation->site_count; i++)
        tls_site_clear(&generation->sites[i]);
    free(generation->sites);
    free(generation);
}

/* Takes a reference on the current generation. */
static tls_generation_t *tls_generation_acquire(tls_context_t *context) {
    pthread_mutex_lock(&context->lock);
    tls_generation_t *generation = context->generation;
    atomic_fetch_add_explicit(&generation->references, 1, memory_order_relaxed);
    pthread_mutex_unlock(&context->lock);
    return generation;
}

/* Drops a reference; the last one, after a reload replaced the generation,
 * frees it, on whichever thread that happens. */
static void tls_generation_release(tls_generation_t *generation) {
    if (atomic_fetch_sub_explicit(&generation->references, 1, memory_order_acq_rel) == 1)
        tls_generation_free(generation);
}

/* ---- OpenSSL callbacks (run on worker threads, during handshakes) ---- */

/* Chooses the site for the client's SNI; without SNI, or for a name no
 * certificate covers, the connection keeps the first pair it started with
 * (the request is then answered 421 by the gateway, not refused here). */
static int tls_servername_callback(SSL *ssl, int *alert, void *argument) {
    (void)alert;
    tls_context_t *context = argument;
    if (tls_handshake_state(ssl) == TLS_HANDSHAKE_ACCEPTED)
        tls_set_handshake_state(ssl, TLS_HANDSHAKE_HELLO);
    const char *server_name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (server_name == NULL)
        return SSL_TLSEXT_ERR_OK;
    char *host = tls_name_normalize(server_name, strlen(server_name));
    if (host == NULL)
        return SSL_TLSEXT_ERR_OK;
    tls_generation_t *generation = tls_generation_acquire(context);
    const tls_site_t *site = tls_generation_find(generation, host);
    /* SSL_set_SSL_CTX takes its own reference on the chosen SSL_CTX. It fails
     * only when out of memory; the default certificate then serves. */
    if (site != NULL && site->ssl_context != SSL_get_SSL_CTX(ssl))
        SSL_set_SSL_CTX(ssl, site->ssl_context);
    tls_generation_release(generation);
    free(host);
    return SSL_TLSEXT_ERR_OK;
}

/* Selects h2 (when HTTP/2 is on) or http/1.1, the server's preference first
 * (RFC 7301 §3.2); with neither offered the handshake goes on without ALPN
 * rather than agreeing to a protocol the gateway does not speak. */
static int tls_alpn_callback(SSL *ssl, const unsigned char **selected,
                             unsigned char *selected_length, const unsigned char *offered,
                             unsigned int offered_length, void *argument) {
    (void)ssl;
    const tls_context_t *context = argument;
    unsigned int first = context->http2 ? 0 : TLS_ALPN_HTTP11_OFFSET;
    unsigned char *chosen = NULL;
    unsigned char chosen_length = 0;
    if (SSL_select_next_proto(&chosen, &chosen_length, tls_alpn_protocols + first,
                              (unsigned int)sizeof(tls_alpn_protocols) - 1 - first, offered,
                              offered_length) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *selected = chosen;
    *selected_length = chosen_length;
    return SSL_TLSEXT_ERR_OK;
}

/* OpenSSL calls this from the SSL_CTX the handshake started on (its
 * session_ctx), which belongs to this context like every other. */
static int tls_ticket_callback(SSL *ssl, unsigned char name[16],
                               unsigned char iv[EVP_MAX_IV_LENGTH],
                               EVP_CIPHER_CTX *cipher_context, EVP_MAC_CTX *mac_context,
                               int encrypt) {
    tls_context_t *context = tls_context_of(ssl);
    if (context == NULL)
        return -1;
    return tls_ticket_keys_callback(&context->ticket_keys, name, iv, cipher_context, mac_context,
                                    encrypt);
}

/* Counts each connection once: a finished handshake (resumed or not), or a
 * fatal alert, sent or received, before the end of the handshake. */
static void tls_info_callback(const SSL *ssl, int where, int value) {
    tls_handshake_state_t state = tls_handshake_state(ssl);
    if (state == TLS_HANDSHAKE_NONE || state == TLS_HANDSHAKE_DONE ||
        state == TLS_HANDSHAKE_FAILED)
        return; /* TLS 1.3 reports HANDSHAKE_DONE again after its tickets */
    tls_context_t *context = tls_context_of(ssl);
    if (context == NULL)
        return;
    if (where & SSL_CB_HANDSHAKE_DONE) {
        tls_set_handshake_state(ssl, TLS_HANDSHAKE_DONE);
        tls_count(&context->handshakes);
        if (SSL_session_reused(ssl))
            tls_count(&context->resumed);
    } else if ((where & SSL_CB_ALERT) && (value >> 8) == SSL3_AL_FATAL) {
        tls_set_handshake_state(ssl, TLS_HANDSHAKE_FAILED);
        tls_count(&context->failed);
    }
}

/* ex_data free callback, run by SSL_free for every SSL of the process: one of
 * ours that read a ClientHello and ended neither way was abandoned mid-handshake. */
static void tls_ssl_freed(void *parent, void *pointer, CRYPTO_EX_DATA *data, int index,
                          long argument, void *argument_pointer) {
    (void)data;
    (void)index;
    (void)argument;
    (void)argument_pointer;
    if ((tls_handshake_state_t)(uintptr_t)pointer != TLS_HANDSHAKE_HELLO)
        return;
    tls_context_t *context = tls_context_of(parent);
    if (context != NULL)
        tls_count(&context->failed);
}

static void tls_initialize(void) {
    tls_handshake_state_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, tls_ssl_freed);
}

/* ---- loading ---- */

/* PEM password callback: keys must not be encrypted, and a gateway started
 * by systemd has nobody to type a passphrase. */
static int tls_no_passphrase(char *buffer, int size, int writing, void *argument) {
    (void)buffer;
    (void)size;
    (void)writing;
    (void)argument;
    return 0;
}

static void tls_loaded_pair_clear(tls_loaded_pair_t *pair) {
    X509_free(pair->leaf);
    sk_X509_pop_free(pair->chain, X509_free);
    EVP_PKEY_free(pair->key);
    tls_free_strings(pair->names, pair->name_count);
    memset(pair, 0, sizeof(*pair));
}

/* Reads a certificate chain and its key; returns 0, or -1 with "FILE: reason". */
static int tls_loaded_pair_read(tls_loaded_pair_t *pair, const char *certificate_path,
                                const char *key_path, char *error, size_t error_size) {
    char reason[256];
    memset(pair, 0, sizeof(*pair));
    ERR_clear_error();
    BIO *file = BIO_new_file(certificate_path, "r");
    if (file == NULL)
        goto certificate_fail;
    pair->leaf = PEM_read_bio_X509_AUX(file, NULL, tls_no_passphrase, NULL);
    if (pair->leaf == NULL)
        goto certificate_fail;
    pair->chain = sk_X509_new_null();
    if (pair->chain == NULL)
        goto certificate_fail;
    for (;;) {
        X509 *issuer = PEM_read_bio_X509(file, NULL, tls_no_passphrase, NULL);
        if (issuer == NULL)
            break;
        if (sk_X509_push(pair->chain, issuer) == 0) {
            X509_free(issuer);
            goto certificate_fail;
        }
    }
    /* The chain ends where no more PEM blocks start; anything else is damage. */
    unsigned long last = ERR_peek_last_error();
    if (last != 0 && !(ERR_GET_LIB(last) == ERR_LIB_PEM &&
                       ERR_GET_REASON(last) == PEM_R_NO_START_LINE))
        goto certificate_fail;
    ERR_clear_error();
    BIO_free(file);

    file = BIO_new_file(key_path, "r");
    if (file == NULL)
        goto key_fail;
    pair->key = PEM_read_bio_PrivateKey(file, NULL, tls_no_passphrase, NULL);
    if (pair->key == NULL)
        goto key_fail;
    BIO_free(file);
    file = NULL;

    if (X509_check_private_key(pair->leaf, pair->key) != 1) {
        ERR_clear_error();
        snprintf(error, error_size, "tls_certificate_key %s: does not match tls_certificate %s",
                 key_path, certificate_path);
        goto fail;
    }
    pair->key_type = EVP_PKEY_get_base_id(pair->key);
    if (tls_certificate_names(pair->leaf, &pair->names, &pair->name_count) != 0) {
        snprintf(error, error_size, "tls_certificate %s: out of memory", certificate_path);
        goto fail;
    }
    return 0;

certificate_fail:
    snprintf(error, error_size, "tls_certificate %s: cannot load: %s", certificate_path,
             tls_openssl_reason(reason, sizeof(reason)));
    goto fail;
key_fail:
    snprintf(error, error_size, "tls_certificate_key %s: cannot load: %s", key_path,
             tls_openssl_reason(reason, sizeof(reason)));
fail:
    BIO_free(file);
    tls_loaded_pair_clear(pair);
    return -1;
}

/* A server SSL_CTX with every setting but the certificates; NULL on failure. */
static SSL_CTX *tls_ssl_context_new(tls_context_t *context) {
    SSL_CTX *ssl_context = SSL_CTX_new(TLS_server_method());
    if (ssl_context == NULL)
        return NULL;
    if (SSL_CTX_set_min_proto_version(ssl_context, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ssl_context, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ssl_context, tls_cipher_list) != 1 ||
        SSL_CTX_set1_groups_list(ssl_context, tls_groups) != 1 ||
        SSL_CTX_set_session_id_context(ssl_context, tls_session_id_context,
                                       sizeof(tls_session_id_context) - 1) != 1 ||
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ssl_context, tls_ticket_callback) != 1 ||
        SSL_CTX_set_app_data(ssl_context, context) != 1) {
        SSL_CTX_free(ssl_context);
        return NULL;
    }
    /* IGNORE_UNEXPECTED_EOF: most HTTP clients close without close_notify;
     * HTTP/1.1 frames its own messages, so that is an end of stream (EOF),
     * not an error that would cut a response still being sent. */
    SSL_CTX_set_options(ssl_context, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                         SSL_OP_PRIORITIZE_CHACHA | SSL_OP_NO_COMPRESSION |
                                         SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_clear_options(ssl_context, SSL_OP_NO_TICKET);
    /* An idle keep-alive connection then holds no 34 KB read/write buffers. */
    SSL_CTX_set_mode(ssl_context, SSL_MODE_RELEASE_BUFFERS);
    /* Stateless tickets only: a server-side cache would resume only on the
     * instance that issued the session. */
    SSL_CTX_set_session_cache_mode(ssl_context, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_timeout(ssl_context, TLS_TICKET_LIFETIME_SECONDS);
    SSL_CTX_set_tlsext_servername_callback(ssl_context, tls_servername_callback);
    SSL_CTX_set_tlsext_servername_arg(ssl_context, context);
    SSL_CTX_set_alpn_select_cb(ssl_context, tls_alpn_callback, context);
    SSL_CTX_set_info_callback(ssl_context, tls_info_callback);
    return ssl_context;
}

/* Puts a pair into the site already holding its names if that site has no
 * certificate of its key type yet, else into a new site; returns 0, or -1
 * with the reason. The pair's names are taken over or freed. */
static int tls_generation_add(tls_context_t *context, tls_generation_t *generation,
                              tls_loaded_pair_t *pair, const char *certificate_path,
                              char *error, size_t error_size) {
    char reason[256];
    tls_site_t *site = NULL;
    for (size_t i = 0; i < generation->site_count && site == NULL; i++) {
        tls_site_t *candidate = &generation->sites[i];
        bool type_taken = false;
        for (size_t j = 0; j < candidate->key_type_count; j++)
            type_taken = type_taken || candidate->key_types[j] == pair->key_type;
        if (!type_taken && candidate->key_type_count < TLS_MAX_KEY_TYPES &&
            tls_same_names(candidate, pair))
            site = candidate;
    }
    if (site == NULL) {
        site = &generation->sites[generation->site_count];
        site->ssl_context = tls_ssl_context_new(context);
        if (site->ssl_context == NULL) {
            snprintf(error, error_size, "tls_certificate %s: cannot create a TLS context: %s",
                     certificate_path, tls_openssl_reason(reason, sizeof(reason)));
            return -1;
        }
        site->names = pair->names;
        site->name_count = pair->name_count;
        pair->names = NULL;
        pair->name_count = 0;
        generation->site_count++;
    }
    /* Each call fills the slot of the certificate's key type: a second type
     * sits beside the first instead of replacing it. */
    if (SSL_CTX_use_certificate(site->ssl_context, pair->leaf) != 1 ||
        SSL_CTX_set1_chain(site->ssl_context, pair->chain) != 1 ||
        SSL_CTX_use_PrivateKey(site->ssl_context, pair->key) != 1 ||
        SSL_CTX_check_private_key(site->ssl_context) != 1) {
        snprintf(error, error_size, "tls_certificate %s: cannot use: %s", certificate_path,
                 tls_openssl_reason(reason, sizeof(reason)));
        return -1;
    }
    site->key_types[site->key_type_count++] = pair->key_type;
    return 0;
}

/* Loads every pair into a new generation (one reference, the caller's);
 * returns NULL with "FILE: reason". */
static tls_generation_t *tls_generation_load(tls_context_t *context, char *error,
                                             size_t error_size) {
    tls_loaded_pair_t pair;
    memset(&pair, 0, sizeof(pair));
    tls_generation_t *generation = calloc(1, sizeof(*generation));
    if (generation == NULL)
        goto out_of_memory;
    atomic_init(&generation->references, 1);
    generation->sites = calloc(context->pair_count, sizeof(*generation->sites));
    if (generation->sites == NULL)
        goto out_of_memory;
    for (size_t i = 0; i < context->pair_count; i++) {
        if (tls_loaded_pair_read(&pair, context->certificate_paths[i], context->key_paths[i],
                                 error, error_size) != 0)
            goto fail;
        if (tls_generation_add(context, generation, &pair, context->certificate_paths[i], error,
                               error_size) != 0)
            goto fail;
        tls_loaded_pair_clear(&pair);
    }
    return generation;

out_of_memory:
    snprintf(error, error_size, "tls: out of memory");
fail:
    tls_loaded_pair_clear(&pair);
    tls_generation_free(generation);
    return NULL;
}

/* ---- the context ---- */

tls_context_t *tls_context_new(const tls_settings_t *settings, char *error, size_t error_size) {
    tls_ticket_key_set_t file_keys = {NULL, 0};
    bool lock_ready = false;
    tls_context_t *context = NULL;
    if (pthread_once(&tls_once, tls_initialize) != 0 || tls_handshake_state_index < 0) {
        snprintf(error, error_size, "tls: cannot initialise OpenSSL");
        return NULL;
    }
    if (settings->pair_count == 0) {
        snprintf(error, error_size, "tls: no tls_certificate and tls_certificate_key configured");
        return NULL;
    }
    context = calloc(1, sizeof(*context));
    if (context == NULL)
        goto out_of_memory;
    context->certificate_paths = calloc(settings->pair_count, sizeof(char *));
    context->key_paths = calloc(settings->pair_count, sizeof(char *));
    if (context->certificate_paths == NULL || context->key_paths == NULL)
        goto out_of_memory;
    context->pair_count = settings->pair_count;
    for (size_t i = 0; i < settings->pair_count; i++) {
        context->certificate_paths[i] = tls_strdup(settings->pairs[i].certificate);
        context->key_paths[i] = tls_strdup(settings->pairs[i].certificate_key);
        if (context->certificate_paths[i] == NULL || context->key_paths[i] == NULL)
            goto out_of_memory;
    }
    context->http2 = settings->http2;
    if (settings->ticket_key_file != NULL) {
        context->ticket_key_file = tls_strdup(settings->ticket_key_file);
        if (context->ticket_key_file == NULL)
            goto out_of_memory;
    }
    if (pthread_mutex_init(&context->lock, NULL) != 0)
        goto out_of_memory;
    lock_ready = true;
    atomic_init(&context->handshakes, 0);
    atomic_init(&context->resumed, 0);
    atomic_init(&context->failed, 0);

    context->generation = tls_generation_load(context, error, error_size);
    if (context->generation == NULL)
        goto fail;
    if (context->ticket_key_file != NULL &&
        tls_ticket_key_set_read_file(&file_keys, context->ticket_key_file, error, error_size) != 0)
        goto fail;
    if (tls_ticket_keys_init(&context->ticket_keys,
                             context->ticket_key_file != NULL ? &file_keys : NULL) != 0) {
        snprintf(error, error_size, "tls: cannot set up session ticket keys");
        goto fail;
    }
    return context;

out_of_memory:
    snprintf(error, error_size, "tls: out of memory");
fail:
    tls_ticket_key_set_clear(&file_keys);
    if (context != NULL) {
        tls_generation_free(context->generation);
        if (lock_ready)
            pthread_mutex_destroy(&context->lock);
        tls_free_strings(context->certificate_paths, context->pair_count);
        tls_free_strings(context->key_paths, context->pair_count);
        free(context->ticket_key_file);
        free(context);
    }
    return NULL;
}

SSL *tls_context_new_ssl(tls_context_t *context) {
    tls_generation_t *generation = tls_generation_acquire(context);
    SSL *ssl = SSL_new(generation->sites[0].ssl_context);
    tls_generation_release(generation);
    if (ssl == NULL)
        return NULL;
    if (SSL_set_ex_data(ssl, tls_handshake_state_index,
                        (void *)(uintptr_t)TLS_HANDSHAKE_ACCEPTED) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

int tls_context_reload(tls_context_t *context, char *error, size_t error_size) {
    tls_ticket_key_set_t file_keys = {NULL, 0};
    tls_generation_t *generation = tls_generation_load(context, error, error_size);
    if (generation == NULL)
        return -1;
    if (context->ticket_key_file != NULL &&
        tls_ticket_key_set_read_file(&file_keys, context->ticket_key_file, error, error_size) !=
            0) {
        tls_generation_release(generation);
        return -1;
    }
    pthread_mutex_lock(&context->lock);
    tls_generation_t *old = context->generation;
    context->generation = generation;
    pthread_mutex_unlock(&context->lock);
    if (context->ticket_key_file != NULL)
        tls_ticket_keys_replace(&context->ticket_keys, &file_keys);
    tls_generation_release(old);
    return 0;
}

void tls_context_free(tls_context_t *context) {
    if (context == NULL)
        return;
    tls_generation_release(context->generation);
    context->generation = NULL;
    tls_ticket_keys_destroy(&context->ticket_keys);
    pthread_mutex_destroy(&context->lock);
    tls_free_strings(context->certificate_paths, context->pair_count);
    tls_free_strings(context->key_paths, context->pair_count);
    free(context->ticket_key_file);
    free(context);
}

tls_stats_t tls_context_get_stats(const tls_context_t *context) {
    tls_stats_t stats = {
        .handshakes = atomic_load_explicit(&context->handshakes, memory_order_relaxed),
        .resumed = atomic_load_explicit(&context->resumed, memory_order_relaxed),
        .failed = atomic_load_explicit(&context->failed, memory_order_relaxed),
    };
    return stats;
}

int tls_context_rotate_ticket_keys(tls_context_t *context) {
    return tls_ticket_keys_rotate(&context->ticket_keys);
}

/* ---- bufferevents ---- */

struct bufferevent *tls_bufferevent_wrap(tls_context_t *context, struct event_base *base,
                                         struct bufferevent *underlying) {
    SSL *ssl = tls_context_new_ssl(context);
    if (ssl == NULL)
        return NULL;
    /* On failure libevent has freed the SSL. (Out of memory past its first
     * allocations, libevent 2.1 may also have dropped a reference to
     * underlying: a corner no caller can handle cleanly, left as is.) */
    struct bufferevent *bev = bufferevent_openssl_filter_new(
        base, underlying, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL)
        return NULL;
    /* The ClientHello often came in the same segment as the PROXY header and
     * waits in underlying's input, where no read event will announce it:
     * enabling EV_READ on bev makes libevent read it at once (tested). With
     * SSL_OP_IGNORE_UNEXPECTED_EOF OpenSSL already reports a bare TCP close
     * as a clean one; this covers libevent's own check as well. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

void tls_bufferevent_shutdown_write(struct bufferevent *bev) {
    SSL *ssl = bufferevent_openssl_get_ssl(bev); /* NULL for a plain bufferevent */
    if (ssl != NULL && SSL_is_init_finished(ssl)) {
        /* close_notify joins the underlying bufferevent's output, after
         * everything written before it. */
        SSL_shutdown(ssl);
        ERR_clear_error();
    }
    /* There it waits to be written: shutting the socket now would cut it
     * off. */
    if (bufferevent_get_underlying(bev) != NULL)
        return;
    shutdown(bufferevent_getfd(bev), SHUT_WR);
}
