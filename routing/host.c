/* Hostname routing: "<port>-<sandboxID>[-ignored].<domain>" into a port and a sandbox ID. */
#include "routing/host.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

enum {
    ROUTE_PORT_DIGITS_MAX = 5,
    ROUTE_PORT_MAX = 65535,
};

/* ASCII only: the C library's tolower() follows the locale. */
static char route_host_lower(char c) {
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static bool route_host_is_digit(char c) {
    return c >= '0' && c <= '9';
}

/* RFC 3986 §3.2.2: an authority is printable ASCII; NUL, spaces, control
 * bytes and 8-bit bytes can only be an attack or a broken client. */
static bool route_host_byte_allowed(char c) {
    unsigned char byte = (unsigned char)c;
    return byte > 0x20 && byte < 0x7f;
}

/* True if host (host_length bytes, any case) ends with domain (lower-case). */
static bool route_host_ends_with(const char *host, size_t host_length, const char *domain,
                                 size_t domain_length) {
    const char *tail = host + (host_length - domain_length);
    for (size_t i = 0; i < domain_length; i++) {
        if (route_host_lower(tail[i]) != domain[i])
            return false;
    }
    return true;
}

/* A port as a label or E2b-Sandbox-Port carries it: 1 to 5 digits, 1 to 65535. */
static bool route_parse_port(const char *text, size_t length, uint16_t *port) {
    if (length == 0 || length > ROUTE_PORT_DIGITS_MAX)
        return false;
    unsigned long value = 0;
    for (size_t i = 0; i < length; i++) {
        if (!route_host_is_digit(text[i]))
            return false;
        value = value * 10 + (unsigned long)(text[i] - '0');
    }
    if (value == 0 || value > ROUTE_PORT_MAX)
        return false;
    *port = (uint16_t)value;
    return true;
}

/* A sandbox ID, [a-z0-9]{1,63} in any case, lower-cased into id. */
static bool route_parse_id(const char *text, size_t length, char *id) {
    if (length == 0 || length > ROUTE_SANDBOX_ID_MAX)
        return false;
    for (size_t i = 0; i < length; i++) {
        char c = route_host_lower(text[i]);
        if (!route_host_is_digit(c) && !(c >= 'a' && c <= 'z'))
            return false;
        id[i] = c;
    }
    id[length] = '\0';
    return true;
}

/* Parses the label "<port>-<sandboxID>[-<ignored>...]" into target. */
static route_host_status_t route_parse_label(const char *label, size_t length,
                                             route_target_t *target) {
    if (memchr(label, '.', length) != NULL)
        return ROUTE_HOST_INVALID_HOST; /* more labels than one before the domain */
    const char *dash = memchr(label, '-', length);
    if (dash == NULL)
        return ROUTE_HOST_INVALID_HOST;
    route_target_t result;
    if (!route_parse_port(label, (size_t)(dash - label), &result.port))
        return ROUTE_HOST_INVALID_PORT;
    const char *id = dash + 1;
    const char *label_end = label + length;
    const char *id_end = memchr(id, '-', (size_t)(label_end - id));
    if (id_end == NULL)
        id_end = label_end; /* no ignored suffix */
    if (!route_parse_id(id, (size_t)(id_end - id), result.sandbox_id))
        return ROUTE_HOST_INVALID_ID;
    *target = result;
    return ROUTE_HOST_OK;
}

/* The authority's host without a trailing dot and ":port"; false when the
 * port is not digits. An IPv6 literal keeps its brackets. */
static bool route_host_part(const char *authority, size_t length, size_t *host_length) {
    size_t end = length;
    const char *colon = NULL;
    if (authority[0] == '[') {
        const char *close = memchr(authority, ']', length);
        if (close == NULL)
            return false;
        end = (size_t)(close - authority) + 1;
        if (end < length) {
            if (authority[end] != ':')
                return false;
            colon = authority + end;
        }
    } else {
        /* A reg-name has no ':', so the first one starts the port (RFC 3986
         * §3.2.3: port = *DIGIT, possibly empty). */
        colon = memchr(authority, ':', length);
        if (colon != NULL)
            end = (size_t)(colon - authority);
    }
    if (colon != NULL) {
        for (const char *cursor = colon + 1; cursor < authority + length; cursor++) {
            if (!route_host_is_digit(*cursor))
                return false;
        }
    }
    if (end > 0 && authority[end - 1] == '.')
        end--; /* the fully qualified form names the same host */
    *host_length = end;
    return true;
}

/* True if host (host_length bytes) is an IPv4 literal or a bracketed IPv6 one. */
static bool route_host_is_ip(const char *host, size_t host_length) {
    char text[INET6_ADDRSTRLEN + 2];
    unsigned char address[sizeof(struct in6_addr)];
    if (host_length < 2 || host_length >= sizeof(text))
        return false;
    if (host[0] == '[') {
        if (host[host_length - 1] != ']')
            return false;
        memcpy(text, host + 1, host_length - 2);
        text[host_length - 2] = '\0';
        return inet_pton(AF_INET6, text, address) == 1;
    }
    memcpy(text, host, host_length);
    text[host_length] = '\0';
    return inet_pton(AF_INET, text, address) == 1;
}

bool route_host_is_shared(const char *authority, size_t length, char *const *domains,
                          size_t domain_count) {
    if (authority == NULL || length == 0)
        return false;
    /* Every request asks: a "<port>-<id>" label is told apart by its first
     * bytes, before anything is parsed. */
    char first = route_host_lower(authority[0]);
    if (route_host_is_digit(first)) {
        for (size_t i = 0; i < length && authority[i] != ':'; i++) {
            if (!route_host_is_digit(authority[i]) && authority[i] != '.')
                return false;
        }
    } else if (first != '[' && first != 'l' && first != 's') {
        return false;
    }
    size_t host_length;
    if (!route_host_part(authority, length, &host_length) || host_length == 0)
        return false;
    if (first == '[' || route_host_is_digit(first))
        return route_host_is_ip(authority, host_length);
    if (host_length == 9)
        return strncasecmp(authority, "localhost", 9) == 0;
    if (host_length <= 8 || strncasecmp(authority, "sandbox.", 8) != 0)
        return false;
    for (size_t i = 0; i < domain_count; i++) {
        if (domains[i] != NULL && strlen(domains[i]) == host_length - 8 &&
            route_host_ends_with(authority, host_length, domains[i], host_length - 8))
            return true;
    }
    return false;
}

route_host_status_t route_parse_shared(const route_shared_fields_t *fields,
                                       route_target_t *target) {
    memset(target, 0, sizeof(*target));
    if (fields->id_count == 0)
        return ROUTE_HOST_MISSING_ID;
    if (fields->port_count == 0)
        return ROUTE_HOST_MISSING_PORT;
    if (fields->id_count > 1 || !route_parse_id(fields->id, fields->id_length, target->sandbox_id))
        return ROUTE_HOST_INVALID_ID;
    if (fields->port_count > 1 || !route_parse_port(fields->port, fields->port_length, &target->port))
        return ROUTE_HOST_INVALID_PORT;
    return ROUTE_HOST_OK;
}

route_host_status_t route_parse_host(const char *authority, size_t length,
                                     char *const *domains, size_t domain_count,
                                     route_target_t *target) {
    memset(target, 0, sizeof(*target));
    if (authority == NULL || length == 0)
        return ROUTE_HOST_INVALID_HOST;
    for (size_t i = 0; i < length; i++) {
        if (!route_host_byte_allowed(authority[i]))
            return ROUTE_HOST_INVALID_HOST;
    }
    if (authority[0] == '[')
        return ROUTE_HOST_FOREIGN_DOMAIN; /* an IPv6 literal is never a configured domain */
    size_t host_length;
    if (!route_host_part(authority, length, &host_length) || host_length == 0)
        return ROUTE_HOST_INVALID_HOST;

    /* The longest domain wins so that "eu.e2b.app" can be served beside "e2b.app". */
    bool matched = false;
    size_t matched_length = 0;
    for (size_t i = 0; i < domain_count; i++) {
        const char *domain = domains[i];
        if (domain == NULL)
            continue;
        size_t domain_length = strlen(domain);
        if (domain_length == 0 || domain_length > host_length)
            continue;
        if (!route_host_ends_with(authority, host_length, domain, domain_length))
            continue;
        if (domain_length < host_length && authority[host_length - domain_length - 1] != '.')
            continue; /* "xe2b.app" is not under "e2b.app" */
        if (!matched || domain_length > matched_length) {
            matched = true;
            matched_length = domain_length;
        }
    }
    if (!matched)
        return ROUTE_HOST_FOREIGN_DOMAIN;
    if (matched_length == host_length)
        return ROUTE_HOST_INVALID_HOST; /* the bare domain names no sandbox */
    return route_parse_label(authority, host_length - matched_length - 1, target);
}

const char *route_host_status_message(route_host_status_t status) {
    switch (status) {
    case ROUTE_HOST_INVALID_HOST:
        return "Invalid host";
    case ROUTE_HOST_INVALID_PORT:
        return "Invalid sandbox port";
    case ROUTE_HOST_INVALID_ID:
        return "Invalid sandbox ID";
    case ROUTE_HOST_MISSING_ID:
        return "Missing header E2b-Sandbox-Id";
    case ROUTE_HOST_MISSING_PORT:
        return "Missing header E2b-Sandbox-Port";
    case ROUTE_HOST_OK:
    case ROUTE_HOST_FOREIGN_DOMAIN:
        break;
    }
    return NULL;
}
