/* Unit tests of tls/: real handshakes in memory, with throwaway certificates made by openssl(1). */
/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tls/tls.h"

/* ---- fixtures: files in a private temporary directory ---- */

static char directory[256];

typedef struct certificate_files {
    char certificate[320];
    char key[320];
    X509 *loaded; /* for comparing with what a client was sent */
} certificate_files_t;

static certificate_files_t example_ecdsa; /* *.example.test, example.test */
static certificate_files_t example_rsa;   /* the same names, RSA */
static certificate_files_t other_ecdsa;   /* *.other.test */
static certificate_files_t www_ecdsa;     /* www.example.test only: exact beats wildcard */

static char reload_certificate[320]; /* rewritten by the reload tests */
static char reload_key[320];
static char missing_path[320];
static char garbage_path[320];
static char ticket_k1[320];    /* K1 */
static char ticket_k2k1[320];  /* K2, then K1: encrypts with K2, still decrypts K1 */
static char ticket_k2[320];    /* K2 alone */
static char ticket_reload[320];
static char ticket_short[320]; /* 79 bytes */
static char ticket_empty[320];
static char ticket_odd[320];   /* 161 bytes */

static unsigned char key_k1[80];
static unsigned char key_k2[80];

static SSL_CTX *client_context;

static void write_file(const char *path, const void *data, size_t length) {
    FILE *file = fopen(path, "wb");
    assert_non_null(file);
    assert_int_equal(fwrite(data, 1, length, file), length);
    assert_int_equal(fclose(file), 0);
}

static void copy_file(const char *from, const char *to) {
    char data[16384];
    FILE *file = fopen(from, "rb");
    assert_non_null(file);
    size_t length = fread(data, 1, sizeof(data), file);
    fclose(file);
    assert_true(length > 0 && length < sizeof(data));
    write_file(to, data, length);
}

static X509 *load_certificate(const char *path) {
    FILE *file = fopen(path, "r");
    assert_non_null(file);
    X509 *certificate = PEM_read_X509(file, NULL, NULL, NULL);
    fclose(file);
    assert_non_null(certificate);
    return certificate;
}

/* Makes a self-signed certificate with openssl(1); kind is "ec" or "rsa". */
static void make_certificate(certificate_files_t *files, const char *name, const char *kind,
                             const char *common_name, const char *alternative_names) {
    snprintf(files->certificate, sizeof(files->certificate), "%s/%s.crt", directory, name);
    snprintf(files->key, sizeof(files->key), "%s/%s.key", directory, name);
    char command[2048];
    snprintf(command, sizeof(command),
             "openssl req -x509 -newkey %s -nodes -keyout '%s' -out '%s' -days 2 -subj '/CN=%s' "
             "-addext 'subjectAltName=%s' >/dev/null 2>&1",
             strcmp(kind, "ec") == 0 ? "ec -pkeyopt ec_paramgen_curve:P-256" : "rsa:2048",
             files->key, files->certificate, common_name, alternative_names);
    assert_int_equal(system(command), 0);
    files->loaded = load_certificate(files->certificate);
}

static void make_path(char *path, size_t size, const char *name) {
    snprintf(path, size, "%s/%s", directory, name);
}

static int group_setup(void **state) {
    (void)state;
    snprintf(directory, sizeof(directory), "/tmp/sgw-test-tls-XXXXXX");
    if (mkdtemp(directory) == NULL)
        return -1;
    make_certificate(&example_ecdsa, "example-ecdsa", "ec", "example.test",
                     "DNS:*.example.test,DNS:example.test");
    make_certificate(&example_rsa, "example-rsa", "rsa", "example.test",
                     "DNS:example.test,DNS:*.EXAMPLE.test");
    make_certificate(&other_ecdsa, "other-ecdsa", "ec", "other.test", "DNS:*.other.test");
    make_certificate(&www_ecdsa, "www-ecdsa", "ec", "www.example.test", "DNS:www.example.test");

    make_path(reload_certificate, sizeof(reload_certificate), "reload.crt");
    make_path(reload_key, sizeof(reload_key), "reload.key");
    make_path(missing_path, sizeof(missing_path), "missing.pem");
    make_path(garbage_path, sizeof(garbage_path), "garbage.pem");
    write_file(garbage_path, "not a certificate\n", 18);

    for (size_t i = 0; i < sizeof(key_k1); i++) {
        key_k1[i] = (unsigned char)(0x10 + i);
        key_k2[i] = (unsigned char)(0xa0 + i);
    }
    unsigned char both[160];
    memcpy(both, key_k2, 80);
    memcpy(both + 80, key_k1, 80);
    make_path(ticket_k1, sizeof(ticket_k1), "k1.key");
    write_file(ticket_k1, key_k1, 80);
    make_path(ticket_k2k1, sizeof(ticket_k2k1), "k2k1.key");
    write_file(ticket_k2k1, both, 160);
    make_path(ticket_k2, sizeof(ticket_k2), "k2.key");
    write_file(ticket_k2, key_k2, 80);
    make_path(ticket_reload, sizeof(ticket_reload), "reload-ticket.key");
    make_path(ticket_short, sizeof(ticket_short), "short.key");
    write_file(ticket_short, both, 79);
    make_path(ticket_empty, sizeof(ticket_empty), "empty.key");
    write_file(ticket_empty, "", 0);
    make_path(ticket_odd, sizeof(ticket_odd), "odd.key");
    unsigned char odd[161] = {0};
    write_file(ticket_odd, odd, sizeof(odd));

    client_context = SSL_CTX_new(TLS_client_method());
    if (client_context == NULL)
        return -1;
    SSL_CTX_set_verify(client_context, SSL_VERIFY_NONE, NULL);
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    certificate_files_t *all[] = {&example_ecdsa, &example_rsa, &other_ecdsa, &www_ecdsa};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        X509_free(all[i]->loaded);
    SSL_CTX_free(client_context);
    char command[512];
    snprintf(command, sizeof(command), "rm -rf '%s'", directory);
    return system(command) == 0 ? 0 : -1;
}

/* ---- contexts ---- */

static tls_context_t *context_of(const certificate_files_t *const *files, size_t count,
                                 const char *ticket_key_file, bool http2) {
    tls_certificate_pair_t pairs[8];
    for (size_t i = 0; i < count; i++) {
        pairs[i].certificate = files[i]->certificate;
        pairs[i].certificate_key = files[i]->key;
    }
    tls_settings_t settings = {pairs, count, ticket_key_file, http2};
    char error[512] = "";
    tls_context_t *context = tls_context_new(&settings, error, sizeof(error));
    if (context == NULL)
        fail_msg("tls_context_new: %s", error);
    return context;
}

/* example (ECDSA + RSA), other, www: the default is the example site. */
static tls_context_t *standard_context(const char *ticket_key_file) {
    const certificate_files_t *files[] = {&example_ecdsa, &example_rsa, &other_ecdsa, &www_ecdsa};
    return context_of(files, 4, ticket_key_file, false);
}

/* Returns the error tls_context_new reports for these files. */
static const char *context_error(const char *certificate, const char *key, const char *tickets,
                                 char *error, size_t error_size) {
    tls_certificate_pair_t pairs[] = {{certificate, key}};
    tls_settings_t settings = {pairs, 1, tickets, false};
    error[0] = '\0';
    tls_context_t *context = tls_context_new(&settings, error, error_size);
    assert_null(context);
    return error;
}

/* ---- in-memory handshakes over a BIO pair ---- */

typedef struct client_options {
    const char *server_name;
    int min_version; /* 0: the library's */
    int max_version;
    const unsigned char *alpn; /* wire format */
    unsigned int alpn_length;
    const char *cipher_list;
    const char *signature_algorithms;
    SSL_SESSION *session; /* to resume */
} client_options_t;

typedef struct connection {
    SSL *client;
    SSL *server;
    bool established;
    int server_error; /* ERR_GET_REASON of the server's failure, or 0 */
    int client_error;
} connection_t;

static bool handshake_pending(SSL *ssl, int result) {
    if (result == 1)
        return false;
    int error = SSL_get_error(ssl, result);
    return error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE;
}

/* Steps both ends until the handshake ends; returns whether it succeeded. */
static bool drive_handshake(connection_t *connection) {
    bool client_done = false;
    bool server_done = false;
    for (int round = 0; round < 32 && !(client_done && server_done); round++) {
        if (!client_done) {
            int result = SSL_do_handshake(connection->client);
            client_done = result == 1;
            if (!client_done && !handshake_pending(connection->client, result)) {
                connection->client_error = ERR_GET_REASON(ERR_peek_last_error());
                ERR_clear_error();
                return false;
            }
        }
        if (!server_done) {
            int result = SSL_do_handshake(connection->server);
            server_done = result == 1;
            if (!server_done && !handshake_pending(connection->server, result)) {
                connection->server_error = ERR_GET_REASON(ERR_peek_last_error());
                ERR_clear_error();
                /* Let the client read the alert, as a real one would. */
                SSL_do_handshake(connection->client);
                connection->client_error = ERR_GET_REASON(ERR_peek_last_error());
                ERR_clear_error();
                return false;
            }
        }
    }
    return client_done && server_done;
}

/* Sends bytes one way and checks they arrive; also makes a TLS 1.3 client
 * read the session tickets sent after the handshake. */
static void exchange(SSL *from, SSL *to, const char *text) {
    char buffer[64];
    size_t length = strlen(text);
    assert_int_equal(SSL_write(from, text, (int)length), (int)length);
    int got = SSL_read(to, buffer, sizeof(buffer));
    assert_int_equal(got, (int)length);
    assert_memory_equal(buffer, text, length);
}

static connection_t connect_with(tls_context_t *context, const client_options_t *options) {
    connection_t connection = {0};
    connection.client = SSL_new(client_context);
    connection.server = tls_context_new_ssl(context);
    assert_non_null(connection.client);
    assert_non_null(connection.server);
    SSL *client = connection.client;
    if (options->server_name != NULL)
        assert_int_equal(SSL_set_tlsext_host_name(client, options->server_name), 1);
    if (options->min_version != 0)
        assert_int_equal(SSL_set_min_proto_version(client, options->min_version), 1);
    if (options->max_version != 0)
        assert_int_equal(SSL_set_max_proto_version(client, options->max_version), 1);
    if (options->min_version != 0 && options->min_version < TLS1_2_VERSION) {
        /* OpenSSL 3 clients refuse TLS 1.1 at the default security level:
         * lower it, so that the refusal tested is the server's. */
        SSL_set_security_level(client, 0);
        assert_int_equal(SSL_set_cipher_list(client, "DEFAULT:@SECLEVEL=0"), 1);
    }
    if (options->alpn != NULL)
        assert_int_equal(SSL_set_alpn_protos(client, options->alpn, options->alpn_length), 0);
    if (options->cipher_list != NULL)
        assert_int_equal(SSL_set_cipher_list(client, options->cipher_list), 1);
    if (options->signature_algorithms != NULL)
        assert_int_equal(SSL_set1_sigalgs_list(client, options->signature_algorithms), 1);
    if (options->session != NULL)
        assert_int_equal(SSL_set_session(client, options->session), 1);
    BIO *client_bio = NULL;
    BIO *server_bio = NULL;
    assert_int_equal(BIO_new_bio_pair(&client_bio, 0, &server_bio, 0), 1);
    SSL_set_bio(connection.client, client_bio, client_bio);
    SSL_set_bio(connection.server, server_bio, server_bio);
    SSL_set_connect_state(connection.client);
    connection.established = drive_handshake(&connection);
    if (connection.established)
        exchange(connection.server, connection.client, "ping");
    return connection;
}

/* A client that leaves without close_notify has OpenSSL mark its session
 * unresumable, so clients here close cleanly. */
static void disconnect(connection_t *connection) {
    if (connection->client != NULL && SSL_is_init_finished(connection->client))
        SSL_shutdown(connection->client);
    ERR_clear_error();
    SSL_free(connection->client);
    SSL_free(connection->server);
    connection->client = NULL;
    connection->server = NULL;
}

/* Whether a connection with these options was sent the certificate of files. */
static bool serves(tls_context_t *context, const client_options_t *options,
                   const certificate_files_t *files) {
    connection_t connection = connect_with(context, options);
    assert_true(connection.established);
    X509 *certificate = SSL_get1_peer_certificate(connection.client);
    assert_non_null(certificate);
    bool same = X509_cmp(certificate, files->loaded) == 0;
    X509_free(certificate);
    disconnect(&connection);
    return same;
}

static bool serves_name(tls_context_t *context, const char *server_name,
                        const certificate_files_t *files) {
    client_options_t options = {.server_name = server_name};
    return serves(context, &options, files);
}

/* Connects and returns the client's session for later resumption. */
static SSL_SESSION *session_from(tls_context_t *context, int version) {
    client_options_t options = {
        .server_name = "a.example.test", .min_version = version, .max_version = version};
    connection_t connection = connect_with(context, &options);
    assert_true(connection.established);
    SSL_SESSION *session = SSL_get1_session(connection.client);
    assert_non_null(session);
    assert_true(SSL_SESSION_is_resumable(session));
    disconnect(&connection);
    return session;
}

/* Tries to resume session; returns whether it was resumed, and in *renewed
 * the client's new session (NULL if the caller does not want it). */
static bool resumes(tls_context_t *context, SSL_SESSION *session, int version,
                    SSL_SESSION **renewed) {
    client_options_t options = {.server_name = "a.example.test",
                                .min_version = version,
                                .max_version = version,
                                .session = session};
    connection_t connection = connect_with(context, &options);
    assert_true(connection.established);
    bool reused = SSL_session_reused(connection.client) == 1;
    assert_int_equal(SSL_session_reused(connection.server), reused);
    if (renewed != NULL)
        *renewed = SSL_get1_session(connection.client);
    disconnect(&connection);
    return reused;
}

/* The name of the key a session's ticket was made with: its first 16 bytes. */
static bool ticket_named(SSL_SESSION *session, const unsigned char *key) {
    const unsigned char *ticket = NULL;
    size_t length = 0;
    SSL_SESSION_get0_ticket(session, &ticket, &length);
    return length > 16 && memcmp(ticket, key, 16) == 0;
}

/* ---- protocol versions and suites ---- */

static void test_versions(void **state) {
    (void)state;
    tls_context_t *context = standard_context(NULL);

    client_options_t tls13 = {.server_name = "a.example.test"};
    connection_t connection = connect_with(context, &tls13);
    assert_true(connection.established);
    assert_int_equal(SSL_version(connection.server), TLS1_3_VERSION);
    disconnect(&connection);

    client_options_t tls12 = {.server_name = "a.example.test",
                              .min_version = TLS1_2_VERSION,
                              .max_version = TLS1_2_VERSION};
    connection = connect_with(context, &tls12);
    assert_true(connection.established);
    assert_int_equal(SSL_version(connection.server), TLS1_2_VERSION);
    disconnect(&connection);

    client_options_t tls11 = {.server_name = "a.example.test",
                              .min_version = TLS1_1_VERSION,
                              .max_version = TLS1_1_VERSION};
    connection = connect_with(context, &tls11);
    assert_false(connection.established);
    assert_int_equal(connection.server_error, SSL_R_UNSUPPORTED_PROTOCOL);
    assert_int_equal(connection.client_error, SSL_R_TLSV1_ALERT_PROTOCOL_VERSION);
    disconnect(&connection);

    tls_context_free(context);
}

static void test_tls12_suites(void **state) {
    (void)state;
    tls_context_t *context = standard_context(NULL);
    static const char *const accepted[] = {
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",   "ECDHE-RSA-CHACHA20-POLY1305",
    };
    for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
        client_options_t options = {.server_name = "a.example.test",
                                    .min_version = TLS1_2_VERSION,
                                    .max_version = TLS1_2_VERSION,
                                    .cipher_list = accepted[i]};
        connection_t connection = connect_with(context, &options);
        assert_true(connection.established);
        assert_string_equal(SSL_get_cipher_name(connection.server), accepted[i]);
        disconnect(&connection);
    }
    /* No forward secrecy, or CBC: refused. */
    static const char *const refused[] = {"AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA",
                                          "ECDHE-ECDSA-AES256-SHA384", "DHE-RSA-AES128-GCM-SHA256"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        client_options_t options = {.server_name = "a.example.test",
                                    .min_version = TLS1_2_VERSION,
                                    .max_version = TLS1_2_VERSION,
                                    .cipher_list = refused[i]};
        connection_t connection = connect_with(context, &options);
        assert_false(connection.established);
        assert_int_equal(connection.server_error, SSL_R_NO_SHARED_CIPHER);
        disconnect(&connection);
    }
    tls_context_free(context);
}

/* ---- certificates: SNI, default, key types ---- */

static void test_sni_selects_certificate(void **state) {
    (void)state;
    /* other first: it is the default, so a fallback is told from a match. */
    const certificate_files_t *files[] = {&other_ecdsa, &example_ecdsa, &example_rsa, &www_ecdsa};
    tls_context_t *context = context_of(files, 4, NULL, false);

    assert_true(serves_name(context, "3000-abc.example.test", &example_ecdsa));
    assert_true(serves_name(context, "example.test", &example_ecdsa));
    assert_true(serves_name(context, "X.Example.TEST", &example_ecdsa));
    assert_true(serves_name(context, "x.other.test", &other_ecdsa));
    /* Exact names beat wildcards, whatever the order of the pairs. */
    assert_true(serves_name(context, "www.example.test", &www_ecdsa));
    /* Without SNI, and for names no certificate covers: the first pair. */
    assert_true(serves_name(context, NULL, &other_ecdsa));
    assert_true(serves_name(context, "unknown.test", &other_ecdsa));
    assert_true(serves_name(context, "other.test", &other_ecdsa));
    /* A wildcard covers one whole label only. */
    assert_true(serves_name(context, "a.b.example.test", &other_ecdsa));
    assert_true(serves_name(context, "xexample.test", &other_ecdsa));
    tls_context_free(context);

    context = standard_context(NULL);
    assert_true(serves_name(context, NULL, &example_ecdsa));
    assert_true(serves_name(context, "nowhere.invalid", &example_ecdsa));
    assert_true(serves_name(context, "a.other.test", &other_ecdsa));
    tls_context_free(context);
}

static void test_ecdsa_and_rsa_side_by_side(void **state) {
    (void)state;
    tls_context_t *context = standard_context(NULL);
    /* TLS 1.3: chosen by the client's signature algorithms, ECDSA preferred. */
    client_options_t any = {.server_name = "a.example.test"};
    assert_true(serves(context, &any, &example_ecdsa));
    client_options_t rsa_only = {.server_name = "a.example.test",
                                 .signature_algorithms =
                                     "rsa_pss_rsae_sha256:rsa_pss_rsae_sha384:rsa_pss_rsae_sha512"};
    assert_true(serves(context, &rsa_only, &example_rsa));
    client_options_t ecdsa_only = {.server_name = "a.example.test",
                                   .signature_algorithms = "ecdsa_secp256r1_sha256"};
    assert_true(serves(context, &ecdsa_only, &example_ecdsa));
    /* TLS 1.2: chosen by the cipher suite. */
    client_options_t rsa_suite = {.server_name = "example.test",
                                  .min_version = TLS1_2_VERSION,
                                  .max_version = TLS1_2_VERSION,
                                  .cipher_list = "ECDHE-RSA-AES128-GCM-SHA256"};
    assert_true(serves(context, &rsa_suite, &example_rsa));
    client_options_t ecdsa_suite = {.server_name = "example.test",
                                    .min_version = TLS1_2_VERSION,
                                    .max_version = TLS1_2_VERSION,
                                    .cipher_list = "ECDHE-ECDSA-AES128-GCM-SHA256"};
    assert_true(serves(context, &ecdsa_suite, &example_ecdsa));
    /* Without SNI the default site holds both as well. */
    client_options_t rsa_default = {.signature_algorithms = "rsa_pss_rsae_sha256"};
    assert_true(serves(context, &rsa_default, &example_rsa));
    /* The other site has ECDSA only: an RSA-only client cannot connect. */
    client_options_t rsa_other = {.server_name = "a.other.test",
                                  .signature_algorithms = "rsa_pss_rsae_sha256"};
    connection_t connection = connect_with(context, &rsa_other);
    assert_false(connection.established);
    disconnect(&connection);
    tls_context_free(context);

    /* RSA listed first still shares its site with the ECDSA certificate. */
    const certificate_files_t *files[] = {&example_rsa, &example_ecdsa};
    context = context_of(files, 2, NULL, false);
    assert_true(serves(context, &any, &example_ecdsa));
    assert_true(serves(context, &rsa_only, &example_rsa));
    tls_context_free(context);
}

/* ---- ALPN ---- */

static void check_alpn(tls_context_t *context, const char *offered, size_t offered_length,
                       const char *expected) {
    client_options_t options = {.server_name = "a.example.test",
                                .alpn = (const unsigned char *)offered,
                                .alpn_length = (unsigned int)offered_length};
    connection_t connection = connect_with(context, &options);
    assert_true(connection.established);
    const unsigned char *selected = NULL;
    unsigned int length = 0;
    SSL_get0_alpn_selected(connection.client, &selected, &length);
    if (expected == NULL) {
        assert_int_equal(length, 0);
    } else {
        assert_int_equal(length, strlen(expected));
        assert_memory_equal(selected, expected, length);
    }
    SSL_get0_alpn_selected(connection.server, &selected, &length);
    assert_int_equal(length, expected == NULL ? 0 : strlen(expected));
    disconnect(&connection);
}

static void test_alpn(void **state) {
    (void)state;
    tls_context_t *context = standard_context(NULL);
    static const char h2_then_http11[] = "\x02h2\x08http/1.1";
    static const char http11_only[] = "\x08http/1.1";
    static const char h2_only[] = "\x02h2";
    static const char http10_and_h3[] = "\x08http/1.0\x02h3";
    check_alpn(context, h2_then_http11, sizeof(h2_then_http11) - 1, "http/1.1");
    check_alpn(context, http11_only, sizeof(http11_only) - 1, "http/1.1");
    check_alpn(context, h2_only, sizeof(h2_only) - 1, NULL);
    check_alpn(context, http10_and_h3, sizeof(http10_and_h3) - 1, NULL);
    check_alpn(context, NULL, 0, NULL);
    tls_context_free(context);

    /* With HTTP/2 on, h2 is preferred whatever the client's order. */
    const certificate_files_t *files[] = {&example_ecdsa};
    context = context_of(files, 1, NULL, true);
    static const char http11_then_h2[] = "\x08http/1.1\x02h2";
    check_alpn(context, h2_then_http11, sizeof(h2_then_http11) - 1, "h2");
    check_alpn(context, http11_then_h2, sizeof(http11_then_h2) - 1, "h2");
    check_alpn(context, h2_only, sizeof(h2_only) - 1, "h2");
    check_alpn(context, http11_only, sizeof(http11_only) - 1, "http/1.1");
    check_alpn(context, http10_and_h3, sizeof(http10_and_h3) - 1, NULL);
    tls_context_free(context);
}

/* ---- session tickets ---- */

static void test_resumption_across_instances(void **state) {
    (void)state;
    static const int versions[] = {TLS1_3_VERSION, TLS1_2_VERSION};
    for (size_t i = 0; i < 2; i++) {
        /* Two gateways sharing a key file resume each other's sessions. */
        tls_context_t *first = standard_context(ticket_k1);
        tls_context_t *second = standard_context(ticket_k1);
        SSL_SESSION *session = session_from(first, versions[i]);
        assert_true(ticket_named(session, key_k1));
        assert_true(resumes(second, session, versions[i], NULL));
        assert_true(resumes(first, session, versions[i], NULL));
        SSL_SESSION_free(session);
        tls_context_free(first);
        tls_context_free(second);

        /* With random keys, each instance resumes only its own. */
        first = standard_context(NULL);
        second = standard_context(NULL);
        session = session_from(first, versions[i]);
        assert_false(ticket_named(session, key_k1));
        assert_true(resumes(first, session, versions[i], NULL));
        assert_false(resumes(second, session, versions[i], NULL));
        SSL_SESSION_free(session);
        tls_context_free(first);
        tls_context_free(second);
    }
}

static void test_ticket_key_rotation_file(void **state) {
    (void)state;
    static const int versions[] = {TLS1_3_VERSION, TLS1_2_VERSION};
    for (size_t i = 0; i < 2; i++) {
        tls_context_t *old_keys = standard_context(ticket_k1);
        tls_context_t *rotated = standard_context(ticket_k2k1);
        tls_context_t *retired = standard_context(ticket_k2);
        SSL_SESSION *session = session_from(old_keys, versions[i]);

        /* [K2, K1] decrypts K1's ticket and issues a fresh one under K2. */
        SSL_SESSION *renewed = NULL;
        assert_true(resumes(rotated, session, versions[i], &renewed));
        assert_non_null(renewed);
        assert_true(ticket_named(renewed, key_k2));
        assert_true(resumes(retired, renewed, versions[i], NULL));
        SSL_SESSION_free(renewed);

        /* [K1] alone decrypts with its first key: TLS 1.2 keeps the ticket. */
        assert_true(resumes(old_keys, session, versions[i], &renewed));
        if (versions[i] == TLS1_2_VERSION)
            assert_true(ticket_named(renewed, key_k1));
        SSL_SESSION_free(renewed);

        /* Once K1 is gone from the file, its tickets no longer resume. */
        assert_false(resumes(retired, session, versions[i], NULL));

        /* File keys change only by reload, never on their own. */
        assert_int_equal(tls_context_rotate_ticket_keys(rotated), -1);

        SSL_SESSION_free(session);
        tls_context_free(old_keys);
        tls_context_free(rotated);
        tls_context_free(retired);
    }
}

static void test_ticket_key_rotation_random(void **state) {
    (void)state;
    tls_context_t *context = standard_context(NULL);
    SSL_SESSION *session = session_from(context, TLS1_2_VERSION);
    /* Two rotations keep the first key for decryption, and resuming with it
     * renews the ticket under the newest key. */
    assert_int_equal(tls_context_rotate_ticket_keys(context), 0);
    SSL_SESSION *renewed = NULL;
    assert_true(resumes(context, session, TLS1_2_VERSION, &renewed));
    const unsigned char *old_ticket = NULL;
    const unsigned char *new_ticket = NULL;
    size_t old_length = 0;
    size_t new_length = 0;
    SSL_SESSION_get0_ticket(session, &old_ticket, &old_length);
    SSL_SESSION_get0_ticket(renewed, &new_ticket, &new_length);
    assert_true(old_length > 16 && new_length > 16);
    assert_memory_not_equal(old_ticket, new_ticket, 16);
    assert_int_equal(tls_context_rotate_ticket_keys(context), 0);
    assert_true(resumes(context, session, TLS1_2_VERSION, NULL));
    /* The third drops it. */
    assert_int_equal(tls_context_rotate_ticket_keys(context), 0);
    assert_false(resumes(context, session, TLS1_2_VERSION, NULL));
    /* The renewed ticket, made one rotation later, still works. */
    assert_true(resumes(context, renewed, TLS1_2_VERSION, NULL));
    SSL_SESSION_free(renewed);
    SSL_SESSION_free(session);
    tls_context_free(context);
}

/* ---- reload ---- */

static void test_reload_certificates(void **state) {
    (void)state;
    copy_file(example_ecdsa.certificate, reload_certificate);
    copy_file(example_ecdsa.key, reload_key);
    tls_certificate_pair_t pairs[] = {{reload_certificate, reload_key}};
    tls_settings_t settings = {pairs, 1, NULL, false};
    char error[512] = "";
    tls_context_t *context = tls_context_new(&settings, error, sizeof(error));
    assert_non_null(context);
    assert_true(serves_name(context, "a.example.test", &example_ecdsa));

    /* A connection open across the reloads, and one accepted before a reload
     * whose handshake runs after it. */
    client_options_t options = {.server_name = "a.example.test"};
    connection_t open = connect_with(context, &options);
    assert_true(open.established);

    /* A damaged certificate: refused, the old one kept. */
    write_file(reload_certificate, "-----BEGIN CERTIFICATE-----\nAAAA\n", 33);
    assert_int_equal(tls_context_reload(context, error, sizeof(error)), -1);
    char expected[1024];
    snprintf(expected, sizeof(expected), "tls_certificate %s: cannot load: ", reload_certificate);
    assert_memory_equal(error, expected, strlen(expected));
    assert_true(serves_name(context, "a.example.test", &example_ecdsa));

    /* A certificate that does not match the key: refused too. */
    copy_file(other_ecdsa.certificate, reload_certificate);
    assert_int_equal(tls_context_reload(context, error, sizeof(error)), -1);
    snprintf(expected, sizeof(expected),
             "tls_certificate_key %s: does not match tls_certificate %s",
             reload_key, reload_certificate);
    assert_string_equal(error, expected);
    assert_true(serves_name(context, "a.example.test", &example_ecdsa));

    SSL *accepted_before = tls_context_new_ssl(context);
    assert_non_null(accepted_before);

    /* A good new pair: new handshakes see it. */
    copy_file(other_ecdsa.key, reload_key);
    assert_int_equal(tls_context_reload(context, error, sizeof(error)), 0);
    assert_true(serves_name(context, "a.other.test", &other_ecdsa));
    assert_true(serves_name(context, NULL, &other_ecdsa));

    /* Open connections are unaffected. */
    exchange(open.client, open.server, "after reload");
    exchange(open.server, open.client, "still here");
    disconnect(&open);

    /* The SSL accepted before the reload completes with the old certificate. */
    connection_t late = {.client = SSL_new(client_context), .server = accepted_before};
    BIO *client_bio = NULL;
    BIO *server_bio = NULL;
    assert_int_equal(BIO_new_bio_pair(&client_bio, 0, &server_bio, 0), 1);
    SSL_set_bio(late.client, client_bio, client_bio);
    SSL_set_bio(late.server, server_bio, server_bio);
    SSL_set_connect_state(late.client);
    assert_true(drive_handshake(&late));
    X509 *certificate = SSL_get1_peer_certificate(late.client);
    assert_int_equal(X509_cmp(certificate, example_ecdsa.loaded), 0);
    X509_free(certificate);
    disconnect(&late);

    /* A missing file: refused, the new one kept. */
    unlink(reload_key);
    assert_int_equal(tls_context_reload(context, error, sizeof(error)), -1);
    snprintf(expected, sizeof(expected), "tls_certificate_key %s: cannot load: ", reload_key);
    assert_memory_equal(error, expected, strlen(expected));
    assert_true(serves_name(context, NULL, &other_ecdsa));
    tls_context_free(context);
}

static void test_reload_ticket_keys(void **state) {
    (void)state;
    copy_file(ticket_k1, ticket_reload);
    tls_context_t *context = standard_context(ticket_reload);
    SSL_SESSION *session = session_from(context, TLS1_3_VERSION);

    /* A file of a wrong size: refused, the old keys kept. */
    copy_file(ticket_short, ticket_reload);
    char error[512] = "";
    assert_int_equal(tls_context_reload(context, error, sizeof(error)), -1);
    char expected[1024];
    snprintf(expected, sizeof(expected),
             "tls_ticket_key_file %s: size 79 is not a non-zero multiple of 80 bytes",
             ticket_reload);
    assert_string_equal(error, expected);
    assert_true(resumes(context, session, TLS1_3_VERSION, NULL));

    /* New keys without K1: its tickets stop resuming. */
    copy_file(ticket_k2, ticket_reload);
    assert_int_equal(tls_context_reload(context, error, sizeof(error)), 0);
    assert_false(resumes(context, session, TLS1_3_VERSION, NULL));

    /* K1 back behind K2: resumes again. */
    copy_file(ticket_k2k1, ticket_reload);
    assert_int_equal(tls_context_reload(context, error, sizeof(error)), 0);
    assert_true(resumes(context, session, TLS1_3_VERSION, NULL));

    SSL_SESSION_free(session);
    tls_context_free(context);
}

/* Handshakes on several threads while the main thread reloads. */
typedef struct hammer {
    tls_context_t *context;
    int successes;
} hammer_t;

enum { HAMMER_THREADS = 4, HAMMER_HANDSHAKES = 40, HAMMER_RELOADS = 25 };

/* No cmocka assertions here: they cannot unwind another thread. */
static void *hammer_run(void *argument) {
    hammer_t *hammer = argument;
    static const char *const names[] = {NULL, "a.example.test", "x.other.test", "www.example.test"};
    for (int i = 0; i < HAMMER_HANDSHAKES; i++) {
        connection_t connection = {.client = SSL_new(client_context),
                                   .server = tls_context_new_ssl(hammer->context)};
        BIO *client_bio = NULL;
        BIO *server_bio = NULL;
        if (connection.client != NULL && connection.server != NULL &&
            BIO_new_bio_pair(&client_bio, 0, &server_bio, 0) == 1) {
            SSL_set_bio(connection.client, client_bio, client_bio);
            SSL_set_bio(connection.server, server_bio, server_bio);
            SSL_set_connect_state(connection.client);
            if (names[i % 4] != NULL)
                SSL_set_tlsext_host_name(connection.client, names[i % 4]);
            if (drive_handshake(&connection))
                hammer->successes++;
        }
        disconnect(&connection);
    }
    return NULL;
}

static void test_reload_concurrent_with_handshakes(void **state) {
    (void)state;
    tls_context_t *context = standard_context(NULL);
    pthread_t threads[HAMMER_THREADS];
    hammer_t hammers[HAMMER_THREADS];
    for (int i = 0; i < HAMMER_THREADS; i++) {
        hammers[i] = (hammer_t){context, 0};
        assert_int_equal(pthread_create(&threads[i], NULL, hammer_run, &hammers[i]), 0);
    }
    char error[512] = "";
    for (int i = 0; i < HAMMER_RELOADS; i++) {
        assert_int_equal(tls_context_reload(context, error, sizeof(error)), 0);
        assert_int_equal(tls_context_rotate_ticket_keys(context), 0);
    }
    for (int i = 0; i < HAMMER_THREADS; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        assert_int_equal(hammers[i].successes, HAMMER_HANDSHAKES);
    }
    tls_stats_t stats = tls_context_get_stats(context);
    assert_int_equal(stats.handshakes, HAMMER_THREADS * HAMMER_HANDSHAKES);
    assert_int_equal(stats.failed, 0);
    tls_context_free(context);
}

/* ---- errors ---- */

static void test_errors_name_the_file(void **state) {
    (void)state;
    char error[512];
    char expected[1024];

    context_error(missing_path, example_ecdsa.key, NULL, error, sizeof(error));
    snprintf(expected, sizeof(expected),
             "tls_certificate %s: cannot load: No such file or directory", missing_path);
    assert_string_equal(error, expected);

    context_error(garbage_path, example_ecdsa.key, NULL, error, sizeof(error));
    snprintf(expected, sizeof(expected), "tls_certificate %s: cannot load: no PEM data found",
             garbage_path);
    assert_string_equal(error, expected);

    context_error(example_ecdsa.certificate, garbage_path, NULL, error, sizeof(error));
    snprintf(expected, sizeof(expected),
             "tls_certificate_key %s: cannot load: no readable PEM key found", garbage_path);
    assert_string_equal(error, expected);

    context_error(example_ecdsa.certificate, missing_path, NULL, error, sizeof(error));
    snprintf(expected, sizeof(expected),
             "tls_certificate_key %s: cannot load: No such file or directory", missing_path);
    assert_string_equal(error, expected);

    /* A key of another certificate, of the same and of another type. */
    context_error(example_ecdsa.certificate, other_ecdsa.key, NULL, error, sizeof(error));
    snprintf(expected, sizeof(expected),
             "tls_certificate_key %s: does not match tls_certificate %s",
             other_ecdsa.key, example_ecdsa.certificate);
    assert_string_equal(error, expected);
    context_error(example_rsa.certificate, example_ecdsa.key, NULL, error, sizeof(error));
    snprintf(expected, sizeof(expected),
             "tls_certificate_key %s: does not match tls_certificate %s",
             example_ecdsa.key, example_rsa.certificate);
    assert_string_equal(error, expected);

    /* Ticket key files: a non-zero multiple of 80 bytes. */
    static const struct {
        const char *path;
        int size;
    } sizes[] = {{ticket_short, 79}, {ticket_empty, 0}, {ticket_odd, 161}};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        context_error(example_ecdsa.certificate, example_ecdsa.key, sizes[i].path, error,
                      sizeof(error));
        snprintf(expected, sizeof(expected),
                 "tls_ticket_key_file %s: size %d is not a non-zero multiple of 80 bytes",
                 sizes[i].path, sizes[i].size);
        assert_string_equal(error, expected);
    }
    context_error(example_ecdsa.certificate, example_ecdsa.key, missing_path, error,
                  sizeof(error));
    snprintf(expected, sizeof(expected),
             "tls_ticket_key_file %s: cannot read: No such file or directory", missing_path);
    assert_string_equal(error, expected);

    /* The failing pair is named, not the first. */
    tls_certificate_pair_t pairs[] = {{example_ecdsa.certificate, example_ecdsa.key},
                                      {other_ecdsa.certificate, garbage_path}};
    tls_settings_t settings = {pairs, 2, NULL, false};
    assert_null(tls_context_new(&settings, error, sizeof(error)));
    snprintf(expected, sizeof(expected), "tls_certificate_key %s: cannot load: ", garbage_path);
    assert_memory_equal(error, expected, strlen(expected));

    tls_settings_t none = {NULL, 0, NULL, false};
    assert_null(tls_context_new(&none, error, sizeof(error)));
    assert_non_null(strstr(error, "tls_certificate"));
}

/* ---- stats ---- */

static void test_stats(void **state) {
    (void)state;
    tls_context_t *context = standard_context(NULL);
    SSL_SESSION *session = session_from(context, TLS1_3_VERSION);
    assert_true(resumes(context, session, TLS1_3_VERSION, NULL));
    SSL_SESSION_free(session);

    client_options_t tls11 = {.min_version = TLS1_1_VERSION, .max_version = TLS1_1_VERSION};
    connection_t connection = connect_with(context, &tls11);
    assert_false(connection.established);
    disconnect(&connection);

    /* Abandoned after the ClientHello: counted when the SSL is freed. */
    connection = (connection_t){.client = SSL_new(client_context),
                                .server = tls_context_new_ssl(context)};
    BIO *client_bio = NULL;
    BIO *server_bio = NULL;
    assert_int_equal(BIO_new_bio_pair(&client_bio, 0, &server_bio, 0), 1);
    SSL_set_bio(connection.client, client_bio, client_bio);
    SSL_set_bio(connection.server, server_bio, server_bio);
    SSL_set_connect_state(connection.client);
    assert_int_equal(SSL_do_handshake(connection.client), -1);
    assert_int_equal(SSL_do_handshake(connection.server), -1);
    /* Accepted but never spoken to: not a failure. */
    SSL *idle = tls_context_new_ssl(context);
    SSL_free(idle);
    tls_stats_t stats = tls_context_get_stats(context);
    assert_int_equal(stats.failed, 1);
    disconnect(&connection);

    stats = tls_context_get_stats(context);
    assert_int_equal(stats.handshakes, 2);
    assert_int_equal(stats.resumed, 1);
    assert_int_equal(stats.failed, 2);
    tls_context_free(context);
}

/* ---- bufferevents over a real socket and event loop ---- */

typedef struct peer {
    int fd;
    bool handshake;
    bool got_world;
    bool close_notify; /* the server's tls_bufferevent_shutdown_write arrived as close_notify */
} peer_t;

/* A blocking client: says hello, reads the answer and the server's close,
 * then closes the TCP connection without close_notify, as browsers do. */
static void *peer_run(void *argument) {
    peer_t *peer = argument;
    SSL *ssl = SSL_new(client_context);
    SSL_set_fd(ssl, peer->fd);
    SSL_set_tlsext_host_name(ssl, "3000-abc.example.test");
    peer->handshake = SSL_connect(ssl) == 1;
    if (peer->handshake && SSL_write(ssl, "hello", 5) == 5) {
        char buffer[16];
        int got = SSL_read(ssl, buffer, sizeof(buffer));
        peer->got_world = got == 5 && memcmp(buffer, "world", 5) == 0;
        got = SSL_read(ssl, buffer, sizeof(buffer));
        peer->close_notify = got == 0 && SSL_get_error(ssl, got) == SSL_ERROR_ZERO_RETURN;
    }
    ERR_clear_error();
    close(peer->fd);
    SSL_free(ssl);
    return NULL;
}

typedef struct server_side {
    struct event_base *base;
    bool connected;
    bool got_hello;
    bool shut;
    bool eof;
    bool error;
} server_side_t;

static void server_read(struct bufferevent *bev, void *argument) {
    server_side_t *server = argument;
    struct evbuffer *input = bufferevent_get_input(bev);
    if (evbuffer_get_length(input) < 5)
        return;
    char buffer[5];
    evbuffer_remove(input, buffer, sizeof(buffer));
    server->got_hello = memcmp(buffer, "hello", 5) == 0;
    bufferevent_write(bev, "world", 5);
}

static void server_written(struct bufferevent *bev, void *argument) {
    server_side_t *server = argument;
    if (!server->shut && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        tls_bufferevent_shutdown_write(bev);
        server->shut = true;
    }
}

static void server_event(struct bufferevent *bev, short events, void *argument) {
    (void)bev;
    server_side_t *server = argument;
    if (events & BEV_EVENT_CONNECTED) {
        server->connected = true;
        return;
    }
    server->eof = (events & BEV_EVENT_EOF) != 0;
    server->error = (events & BEV_EVENT_ERROR) != 0;
    event_base_loopbreak(server->base);
}

static void test_bufferevent(void **state) {
    (void)state;
    tls_context_t *context = standard_context(NULL);
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    assert_int_equal(evutil_make_socket_nonblocking(fds[0]), 0);

    server_side_t server = {.base = event_base_new()};
    assert_non_null(server.base);
    struct bufferevent *socket_bev =
        bufferevent_socket_new(server.base, fds[0], BEV_OPT_CLOSE_ON_FREE);
    assert_non_null(socket_bev);
    struct bufferevent *bev = tls_bufferevent_wrap(context, server.base, socket_bev);
    assert_non_null(bev);
    bufferevent_setcb(bev, server_read, server_written, server_event, &server);
    bufferevent_enable(bev, EV_READ | EV_WRITE);

    peer_t peer = {.fd = fds[1]};
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, peer_run, &peer), 0);
    struct timeval limit = {10, 0};
    event_base_loopexit(server.base, &limit);
    event_base_dispatch(server.base);
    assert_int_equal(pthread_join(thread, NULL), 0);

    assert_true(peer.handshake);
    assert_true(server.connected);
    assert_true(server.got_hello);
    assert_true(peer.got_world);
    assert_true(server.shut);
    assert_true(peer.close_notify);
    /* The bare TCP close after it is an end of stream, not an error. */
    assert_true(server.eof);
    assert_false(server.error);

    bufferevent_free(bev); /* closes fds[0] */
    event_base_free(server.base);
    tls_stats_t stats = tls_context_get_stats(context);
    assert_int_equal(stats.handshakes, 1);
    assert_int_equal(stats.failed, 0);
    tls_context_free(context);
}

/* A PROXY header in plaintext, then TLS on the same connection, as behind a
 * load balancer that passes TCP through. The client sends both before the
 * server's loop runs, so the ClientHello is already buffered when TLS starts. */
typedef struct proxied_server {
    server_side_t side;
    tls_context_t *context;
    struct bufferevent *plain;
    struct bufferevent *tls;
    bool header_read;
} proxied_server_t;

static void *proxied_peer_run(void *argument) {
    peer_t *peer = argument;
    static const char header[] = "PROXY TCP4 192.0.2.1 192.0.2.2 56324 443\r\n";
    if (write(peer->fd, header, sizeof(header) - 1) != (ssize_t)(sizeof(header) - 1))
        return NULL;
    return peer_run(peer);
}

static void proxied_read_header(struct bufferevent *bev, void *argument) {
    proxied_server_t *server = argument;
    struct evbuffer *input = bufferevent_get_input(bev);
    struct evbuffer_ptr end = evbuffer_search(input, "\r\n", 2, NULL);
    if (end.pos < 0)
        return;
    evbuffer_drain(input, (size_t)end.pos + 2);
    server->header_read = true;
    server->tls = tls_bufferevent_wrap(server->context, server->side.base, bev);
    if (server->tls == NULL) {
        event_base_loopbreak(server->side.base);
        return;
    }
    server->plain = NULL; /* owned by server->tls now */
    bufferevent_setcb(server->tls, server_read, server_written, server_event, &server->side);
    bufferevent_enable(server->tls, EV_READ | EV_WRITE);
}

static void test_bufferevent_after_proxy_header(void **state) {
    (void)state;
    tls_context_t *context = standard_context(NULL);
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    assert_int_equal(evutil_make_socket_nonblocking(fds[0]), 0);
    proxied_server_t server = {.side = {.base = event_base_new()}, .context = context};
    assert_non_null(server.side.base);
    server.plain = bufferevent_socket_new(server.side.base, fds[0], BEV_OPT_CLOSE_ON_FREE);
    assert_non_null(server.plain);
    bufferevent_setcb(server.plain, proxied_read_header, NULL, NULL, &server);
    bufferevent_enable(server.plain, EV_READ | EV_WRITE);

    peer_t peer = {.fd = fds[1]};
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, proxied_peer_run, &peer), 0);
    usleep(200 * 1000); /* header and ClientHello now wait in one read */
    struct timeval limit = {10, 0};
    event_base_loopexit(server.side.base, &limit);
    event_base_dispatch(server.side.base);
    assert_int_equal(pthread_join(thread, NULL), 0);

    assert_true(server.header_read);
    assert_non_null(server.tls);
    assert_true(peer.handshake);
    assert_true(server.side.connected);
    assert_true(server.side.got_hello);
    assert_true(peer.got_world);
    assert_true(server.side.shut);
    assert_true(peer.close_notify);
    assert_true(server.side.eof);
    assert_false(server.side.error);
    bufferevent_free(server.tls); /* frees the plain one and closes fds[0] */
    event_base_free(server.side.base);
    tls_context_free(context);
}

static void test_shutdown_write_plain(void **state) {
    (void)state;
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    struct event_base *base = event_base_new();
    struct bufferevent *bev = bufferevent_socket_new(base, fds[0], BEV_OPT_CLOSE_ON_FREE);
    assert_non_null(bev);
    tls_bufferevent_shutdown_write(bev);
    char byte;
    assert_int_equal(read(fds[1], &byte, 1), 0);
    /* Reading still works after the half-close. */
    assert_int_equal(write(fds[1], "x", 1), 1);
    assert_int_equal(read(fds[0], &byte, 1), 1);
    bufferevent_free(bev);
    event_base_free(base);
    close(fds[1]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_tls12_suites),
        cmocka_unit_test(test_sni_selects_certificate),
        cmocka_unit_test(test_ecdsa_and_rsa_side_by_side),
        cmocka_unit_test(test_alpn),
        cmocka_unit_test(test_resumption_across_instances),
        cmocka_unit_test(test_ticket_key_rotation_file),
        cmocka_unit_test(test_ticket_key_rotation_random),
        cmocka_unit_test(test_reload_certificates),
        cmocka_unit_test(test_reload_ticket_keys),
        cmocka_unit_test(test_reload_concurrent_with_handshakes),
        cmocka_unit_test(test_errors_name_the_file),
        cmocka_unit_test(test_stats),
        cmocka_unit_test(test_bufferevent),
        cmocka_unit_test(test_bufferevent_after_proxy_header),
        cmocka_unit_test(test_shutdown_write_plain),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
