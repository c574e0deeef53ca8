/* The route record: one sandbox's catalog hash, parsed and validated. */
#include "routing/record.h"

#include <arpa/inet.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "routing/mask.h"

/* The layout routing/record.h promises: what every request reads in the
 * record's first two cache lines, an IPv6 address included. */
_Static_assert(offsetof(route_record_t, pool_key_prefix_length) + sizeof(size_t) <= 64,
               "the per-request fields fill the record's first cache line");
_Static_assert(offsetof(route_record_t, activity_hint) == 64 &&
                   offsetof(route_record_t, address) + sizeof(struct sockaddr_in6) <= 128,
               "the hints and the address fill the second");

/* The fields the gateway reads, in route_record_fields order; others (netns,
 * deny_out, allow_out, allow_internet_access, ...) belong to other readers
 * and are never read (the catalog asks for these alone with HMGET). */
typedef enum route_record_field {
    ROUTE_RECORD_ADDR,
    ROUTE_RECORD_EXECUTION_ID,
    ROUTE_RECORD_ALLOW_PUBLIC_TRAFFIC,
    ROUTE_RECORD_TOKEN,
    ROUTE_RECORD_TOKEN_SHA256,
    ROUTE_RECORD_MASK_REQUEST_HOST,
    ROUTE_RECORD_MAX_CONNECTIONS,
    ROUTE_RECORD_PUBLIC_PORTS,
    ROUTE_RECORD_STATE,
    ROUTE_RECORD_AUTO_RESUME,
    ROUTE_RECORD_H2C_PORTS,
} route_record_field_t;

const char *const route_record_fields[ROUTE_RECORD_FIELD_COUNT] = {
    [ROUTE_RECORD_ADDR] = "addr",
    [ROUTE_RECORD_EXECUTION_ID] = "execution_id",
    [ROUTE_RECORD_ALLOW_PUBLIC_TRAFFIC] = "allow_public_traffic",
    [ROUTE_RECORD_TOKEN] = "traffic_access_token",
    [ROUTE_RECORD_TOKEN_SHA256] = "traffic_access_token_sha256",
    [ROUTE_RECORD_MASK_REQUEST_HOST] = "mask_request_host",
    [ROUTE_RECORD_MAX_CONNECTIONS] = "max_connections",
    [ROUTE_RECORD_PUBLIC_PORTS] = "public_ports",
    [ROUTE_RECORD_STATE] = "state",
    [ROUTE_RECORD_AUTO_RESUME] = "auto_resume",
    [ROUTE_RECORD_H2C_PORTS] = "h2c_ports",
};

enum {
    ROUTE_RECORD_QUOTE_INPUT_MAX = 48, /* bytes of a bad value shown in its error */
    ROUTE_RECORD_QUOTE_SIZE = ROUTE_RECORD_QUOTE_INPUT_MAX * 4 + sizeof("..."),
};

/* Copies value into out for an error message: printable ASCII as is, other
 * bytes as \xNN (so a hostile record cannot forge log lines), long values cut. */
static void route_record_quote(const char *value, size_t length, char *out, size_t out_size) {
    static const char hex_digits[] = "0123456789abcdef";
    size_t shown = length > ROUTE_RECORD_QUOTE_INPUT_MAX ? ROUTE_RECORD_QUOTE_INPUT_MAX : length;
    size_t written = 0;
    for (size_t i = 0; i < shown && written + 5 < out_size; i++) {
        unsigned char byte = (unsigned char)value[i];
        if (byte >= 0x20 && byte < 0x7f && byte != '"' && byte != '\\') {
            out[written++] = (char)byte;
        } else {
            out[written++] = '\\';
            out[written++] = 'x';
            out[written++] = hex_digits[byte >> 4];
            out[written++] = hex_digits[byte & 0x0f];
        }
    }
    if (shown < length && written + 4 <= out_size) {
        memcpy(out + written, "...", 3);
        written += 3;
    }
    out[written] = '\0';
}

/* Marks record malformed with a formatted reason; returns 0, or -1 when
 * memory is exhausted. Only the first reason is kept. */
__attribute__((format(printf, 2, 3))) static int route_record_fail(route_record_t *record,
                                                                   const char *format, ...) {
    if (record->error != NULL)
        return 0;
    va_list arguments;
    va_start(arguments, format);
    int length = vsnprintf(NULL, 0, format, arguments);
    va_end(arguments);
    if (length < 0)
        return -1;
    char *error = malloc((size_t)length + 1);
    if (error == NULL)
        return -1;
    va_start(arguments, format);
    vsnprintf(error, (size_t)length + 1, format, arguments);
    va_end(arguments);
    record->error = error;
    return 0;
}

/* Returns a NUL-terminated copy, or NULL when memory is exhausted. */
static char *route_record_copy(const char *text, size_t length) {
    char *copy = malloc(length + 1);
    if (copy == NULL)
        return NULL;
    memcpy(copy, text, length);
    copy[length] = '\0';
    return copy;
}

/* Fills the address from an IPv4 or IPv6 literal; returns true if it is one.
 * Names are refused: resolving would block the worker and trust DNS. */
static bool route_record_parse_address(route_record_t *record, const char *text, size_t length) {
    char literal[sizeof(record->address_text)];
    if (length == 0 || length >= sizeof(literal) || memchr(text, '\0', length) != NULL)
        return false;
    memcpy(literal, text, length);
    literal[length] = '\0';

    struct sockaddr_in address4 = {.sin_family = AF_INET, .sin_port = 0};
    struct sockaddr_in6 address6 = {.sin6_family = AF_INET6, .sin6_port = 0};
    if (inet_pton(AF_INET, literal, &address4.sin_addr) == 1) {
        memcpy(&record->address, &address4, sizeof(address4));
        record->address_length = sizeof(address4);
    } else if (inet_pton(AF_INET6, literal, &address6.sin6_addr) == 1) {
        memcpy(&record->address, &address6, sizeof(address6));
        record->address_length = sizeof(address6);
    } else {
        return false;
    }
    memcpy(record->address_text, literal, length + 1);
    return true;
}

/* Parses a positive decimal count: digits only, no sign, no spaces. */
static bool route_record_parse_count(const char *text, size_t length, long *count) {
    if (length == 0)
        return false;
    long value = 0;
    for (size_t i = 0; i < length; i++) {
        if (text[i] < '0' || text[i] > '9')
            return false;
        int digit = text[i] - '0';
        if (value > (LONG_MAX - digit) / 10)
            return false;
        value = value * 10 + digit;
    }
    if (value <= 0)
        return false;
    *count = value;
    return true;
}

/* Parses a list of ports (public_ports, h2c_ports), "49983" or "80, 8080":
 * each a port of 1 to 65535 in digits, into *ports and *count; an empty field
 * is none; "*" (where star is not NULL) sets *star instead. Returns 0
 * (record->error set if malformed), or -1 when memory is exhausted. */
static int route_record_parse_ports(route_record_t *record, const char *name, const char *text,
                                    size_t length, uint16_t **ports, size_t *count, bool *star) {
    if (star != NULL && length == 1 && text[0] == '*') {
        *star = true;
        return 0;
    }
    size_t commas = 0;
    for (size_t i = 0; i < length; i++)
        commas += text[i] == ',';
    *ports = calloc(commas + 1, sizeof(**ports));
    if (*ports == NULL)
        return -1;
    size_t at = 0;
    while (length > 0) {
        size_t end = at;
        while (end < length && text[end] != ',')
            end++;
        size_t first = at, last = end;
        while (first < last && (text[first] == ' ' || text[first] == '\t'))
            first++;
        while (last > first && (text[last - 1] == ' ' || text[last - 1] == '\t'))
            last--;
        unsigned long port = 0;
        bool valid = last > first && last - first <= 5;
        for (size_t i = first; valid && i < last; i++) {
            valid = text[i] >= '0' && text[i] <= '9';
            port = port * 10 + (unsigned long)(text[i] - '0');
        }
        if (!valid || port == 0 || port > 65535) {
            char quoted[ROUTE_RECORD_QUOTE_SIZE];
            route_record_quote(text, length, quoted, sizeof(quoted));
            return route_record_fail(record, "%s \"%s\" is not a list of ports", name, quoted);
        }
        (*ports)[(*count)++] = (uint16_t)port;
        if (end == length)
            break;
        at = end + 1;
    }
    return 0;
}

static bool route_record_port_in(const uint16_t *ports, size_t count, uint16_t port) {
    for (size_t i = 0; i < count; i++) {
        if (ports[i] == port)
            return true;
    }
    return false;
}

bool route_record_port_h2c(const route_record_t *record, uint16_t port) {
    return record->h2c_all_ports ||
           route_record_port_in(record->h2c_ports, record->h2c_port_count, port);
}

bool route_record_port_public(const route_record_t *record, uint16_t port) {
    return route_record_port_in(record->public_ports, record->public_port_count, port);
}

/* Reads the fields into record; returns 0 (record->error set if malformed), or
 * -1 when memory is exhausted. */
static int route_record_fill(route_record_t *record, const route_record_value_t *values) {
    char quoted[ROUTE_RECORD_QUOTE_SIZE];

    const route_record_value_t *execution_id = &values[ROUTE_RECORD_EXECUTION_ID];
    if (execution_id->text != NULL) {
        /* It keys the upstream pool as a C string: a NUL would let two
         * lifetimes share connections. */
        if (memchr(execution_id->text, '\0', execution_id->length) != NULL)
            return route_record_fail(record, "execution_id contains a NUL byte");
        char *copy = route_record_copy(execution_id->text, execution_id->length);
        if (copy == NULL)
            return -1;
        free(record->execution_id);
        record->execution_id = copy;
    }

    const route_record_value_t *address = &values[ROUTE_RECORD_ADDR];
    if (address->text == NULL)
        return route_record_fail(record, "addr is missing");
    if (!route_record_parse_address(record, address->text, address->length)) {
        route_record_quote(address->text, address->length, quoted, sizeof(quoted));
        return route_record_fail(record, "addr \"%s\" is not an IP address", quoted);
    }

    /* Anything but the two words is refused rather than guessed: a typo must
     * not turn a private sandbox public. */
    const route_record_value_t *allow_public = &values[ROUTE_RECORD_ALLOW_PUBLIC_TRAFFIC];
    if (allow_public->text != NULL) {
        if (allow_public->length == 4 && memcmp(allow_public->text, "true", 4) == 0) {
            record->allow_public_traffic = true;
        } else if (allow_public->length == 5 && memcmp(allow_public->text, "false", 5) == 0) {
            record->allow_public_traffic = false;
        } else {
            route_record_quote(allow_public->text, allow_public->length, quoted, sizeof(quoted));
            return route_record_fail(record, "allow_public_traffic \"%s\" is not true or false",
                                     quoted);
        }
    }

    /* An empty token field means no token (the secret stays absent, so a
     * private sandbox refuses everyone). Token values are never logged. */
    const route_record_value_t *token_sha256 = &values[ROUTE_RECORD_TOKEN_SHA256];
    const route_record_value_t *token = &values[ROUTE_RECORD_TOKEN];
    if (token_sha256->text != NULL && token_sha256->length > 0) {
        if (auth_secret_from_sha256_hex(&record->secret, token_sha256->text,
                                        token_sha256->length) != 0)
            return route_record_fail(record, "traffic_access_token_sha256 is not 64 hex digits");
    } else if (token->text != NULL && token->length > 0) {
        auth_secret_from_token(&record->secret, token->text, token->length);
    }

    /* An empty mask is treated as absent: the client's Host is sent. */
    const route_record_value_t *mask = &values[ROUTE_RECORD_MASK_REQUEST_HOST];
    if (mask->text != NULL && mask->length > 0) {
        char *copy = route_record_copy(mask->text, mask->length);
        if (copy == NULL)
            return -1;
        /* A NUL inside would hide the rest of the value from the check. */
        if (memchr(mask->text, '\0', mask->length) != NULL || !route_mask_valid(copy)) {
            free(copy);
            route_record_quote(mask->text, mask->length, quoted, sizeof(quoted));
            return route_record_fail(record,
                                     "mask_request_host \"%s\" is longer than 255 bytes or "
                                     "has a space, CR, LF or control byte",
                                     quoted);
        }
        record->mask_request_host = copy;
    }

    const route_record_value_t *max_connections = &values[ROUTE_RECORD_MAX_CONNECTIONS];
    if (max_connections->text != NULL &&
        !route_record_parse_count(max_connections->text, max_connections->length,
                                  &record->max_connections)) {
        route_record_quote(max_connections->text, max_connections->length, quoted,
                           sizeof(quoted));
        return route_record_fail(record, "max_connections \"%s\" is not a positive integer",
                                 quoted);
    }

    /* DESIGN "Auto-resume": anything else than these words is refused, as
     * allow_public_traffic's typos are. */
    const route_record_value_t *state = &values[ROUTE_RECORD_STATE];
    if (state->text != NULL) {
        if (state->length == 6 && memcmp(state->text, "paused", 6) == 0) {
            record->paused = true;
        } else if (!(state->length == 7 && memcmp(state->text, "running", 7) == 0)) {
            route_record_quote(state->text, state->length, quoted, sizeof(quoted));
            return route_record_fail(record, "state \"%s\" is not running or paused", quoted);
        }
    }
    const route_record_value_t *auto_resume = &values[ROUTE_RECORD_AUTO_RESUME];
    if (auto_resume->text != NULL) {
        if (auto_resume->length == 5 && memcmp(auto_resume->text, "false", 5) == 0) {
            record->auto_resume = false;
        } else if (!(auto_resume->length == 4 && memcmp(auto_resume->text, "true", 4) == 0)) {
            route_record_quote(auto_resume->text, auto_resume->length, quoted, sizeof(quoted));
            return route_record_fail(record, "auto_resume \"%s\" is not true or false", quoted);
        }
    }

    const route_record_value_t *public_ports = &values[ROUTE_RECORD_PUBLIC_PORTS];
    if (public_ports->text != NULL &&
        (route_record_parse_ports(record, "public_ports", public_ports->text, public_ports->length,
                                  &record->public_ports, &record->public_port_count, NULL) != 0 ||
         record->error != NULL))
        return record->error != NULL ? 0 : -1;
    const route_record_value_t *h2c_ports = &values[ROUTE_RECORD_H2C_PORTS];
    if (h2c_ports->text != NULL)
        return route_record_parse_ports(record, "h2c_ports", h2c_ports->text, h2c_ports->length,
                                        &record->h2c_ports, &record->h2c_port_count,
                                        &record->h2c_all_ports);
    return 0;
}

/* Builds record->pool_key_prefix; returns 0, or -1 when memory is exhausted. */
static int route_record_build_pool_key(route_record_t *record) {
    size_t id_length = strlen(record->sandbox_id);
    size_t execution_length = strlen(record->execution_id);
    size_t address_length = strlen(record->address_text);
    size_t length = id_length + execution_length + address_length + 3;
    char *key = malloc(length + 1);
    if (key == NULL)
        return -1;
    char *cursor = key;
    memcpy(cursor, record->sandbox_id, id_length);
    cursor += id_length;
    *cursor++ = '\n';
    memcpy(cursor, record->execution_id, execution_length);
    cursor += execution_length;
    *cursor++ = '\n';
    memcpy(cursor, record->address_text, address_length);
    cursor += address_length;
    *cursor++ = '\n';
    *cursor = '\0';
    record->pool_key_prefix = key;
    record->pool_key_prefix_length = length;
    return 0;
}

static void route_record_free(route_record_t *record) {
    free(record->pool_key_prefix);
    free(record->execution_id);
    free(record->mask_request_host);
    free(record->public_ports);
    free(record->h2c_ports);
    free(record->error);
    sodium_memzero(&record->secret, sizeof(record->secret));
    free(record);
}

route_record_t *route_record_parse_fields(const char *sandbox_id,
                                          const route_record_value_t *values) {
    route_record_t *record = aligned_alloc(alignof(route_record_t), sizeof(*record));
    if (record == NULL)
        return NULL;
    memset(record, 0, sizeof(*record));
    record->references = 1;
    record->allow_public_traffic = true;
    record->auto_resume = true;
    record->execution_id = route_record_copy("", 0);
    if (record->execution_id == NULL)
        goto fail;

    size_t id_length = strnlen(sandbox_id, sizeof(record->sandbox_id));
    if (id_length >= sizeof(record->sandbox_id)) {
        if (route_record_fail(record, "sandbox ID is longer than %d bytes",
                              ROUTE_SANDBOX_ID_MAX) != 0)
            goto fail;
        return record;
    }
    memcpy(record->sandbox_id, sandbox_id, id_length + 1);

    size_t total = 0;
    for (size_t field = 0; field < ROUTE_RECORD_FIELD_COUNT; field++)
        total = values[field].length < SIZE_MAX - total ? total + values[field].length : SIZE_MAX;
    if (total > ROUTE_RECORD_BYTES_MAX) {
        if (route_record_fail(record, "its fields hold %zu bytes, over %d", total,
                              ROUTE_RECORD_BYTES_MAX) != 0)
            goto fail;
        return record;
    }
    if (route_record_fill(record, values) != 0)
        goto fail;
    if (record->error == NULL && route_record_build_pool_key(record) != 0)
        goto fail;
    return record;

fail:
    route_record_free(record);
    return NULL;
}

route_record_t *route_record_parse(const char *sandbox_id, size_t field_count,
                                   const char *const *fields, const size_t *field_lengths,
                                   const char *const *values, const size_t *value_lengths) {
    /* Redis hashes have unique fields; should one repeat anyway, the last wins. */
    route_record_value_t known[ROUTE_RECORD_FIELD_COUNT] = {{0}};
    for (size_t i = 0; i < field_count; i++) {
        for (size_t field = 0; field < ROUTE_RECORD_FIELD_COUNT; field++) {
            const char *name = route_record_fields[field];
            if (field_lengths[i] == strlen(name) && memcmp(fields[i], name, field_lengths[i]) == 0) {
                known[field].text = values[i];
                known[field].length = value_lengths[i];
                break;
            }
        }
    }
    return route_record_parse_fields(sandbox_id, known);
}

route_record_t *route_record_ref(route_record_t *record) {
    record->references++;
    return record;
}

void route_record_unref(route_record_t *record) {
    if (record == NULL)
        return;
    if (--record->references > 0)
        return;
    route_record_free(record);
}
