/* TLS termination: OpenSSL 3 contexts picked by SNI, ALPN h2 and http/1.1, shared tickets, reload. */
#ifndef SGW_TLS_TLS_H
#define SGW_TLS_TLS_H

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tls_certificate_pair {
    const char *certificate;     /* PEM: the leaf first, then its chain */
    const char *certificate_key; /* PEM private key of the leaf */
} tls_certificate_pair_t;

typedef struct tls_settings {
    const tls_certificate_pair_t *pairs; /* first pair = default (no SNI / unknown SNI) */
    size_t pair_count;
    const char *ticket_key_file; /* NULL: random keys, rotated */
    bool http2;                  /* ALPN offers h2 before http/1.1 */
} tls_settings_t;

/* Process-wide; used by every worker thread at once. It must outlive every SSL
 * and bufferevent made from it: free it after the workers are gone. */
typedef struct tls_context tls_context_t;

/* Counters for metrics: handshakes completed, resumed, failed (approximate,
 * relaxed atomics). A failure is a fatal alert sent or received during the
 * handshake, or a connection closed after its ClientHello and before the end
 * of the handshake. */
typedef struct tls_stats {
    uint64_t handshakes;
    uint64_t resumed;
    uint64_t failed;
} tls_stats_t;

/* Loads every pair and the ticket keys (the settings' strings are copied);
 * returns NULL and writes "FILE: reason" into error. */
tls_context_t *tls_context_new(const tls_settings_t *settings, char *error, size_t error_size);

/* Returns a new server-side SSL in accept state for an accepted connection
 * (thread-safe), or NULL. */
SSL *tls_context_new_ssl(tls_context_t *context);

/* Re-reads certificates and ticket keys from the same paths (SIGHUP); on any
 * failure keeps the old ones, returns -1 and writes the reason; new handshakes
 * use the new ones, open connections are unaffected. Thread-safe against
 * concurrent tls_context_new_ssl and handshakes. */
int tls_context_reload(tls_context_t *context, char *error, size_t error_size);

/* Frees the context; every SSL made from it must be freed already. */
void tls_context_free(tls_context_t *context);

/* Reads the counters (thread-safe). */
tls_stats_t tls_context_get_stats(const tls_context_t *context);

/* Without a ticket key file: starts a new random encrypting key now, keeping
 * the previous ones for decryption (otherwise done every hour on its own);
 * returns 0, or -1 with a ticket key file, whose keys only a reload changes. */
int tls_context_rotate_ticket_keys(tls_context_t *context);

/* Wraps a socket bufferevent (an accepted connection; it may have read a
 * plaintext prefix such as a PROXY header, and hold what followed) in a
 * bufferevent that terminates TLS over it: the handshake runs before the
 * first read callback, fed at once by bytes already buffered when EV_READ is
 * enabled; its end is reported to the event callback as BEV_EVENT_CONNECTED,
 * which a caller must not treat as an error. A close without close_notify is
 * reported as BEV_EVENT_EOF. The new bufferevent owns underlying
 * (BEV_OPT_CLOSE_ON_FREE frees it and its socket). Returns NULL on failure
 * (out of memory); the caller then frees underlying. */
struct bufferevent *tls_bufferevent_wrap(tls_context_t *context, struct event_base *base,
                                         struct bufferevent *underlying);

/* Half-closes the sending side of a client bufferevent, plain or TLS, so
 * callers never branch on TLS: a plain one's socket is shut for writing; a
 * TLS one sends close_notify (TLS's end of stream), which its underlying
 * bufferevent writes. Call it when the output buffer is empty; reading goes
 * on until the peer closes. */
void tls_bufferevent_shutdown_write(struct bufferevent *bev);

#endif
