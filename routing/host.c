/* Hostname routing: "<port>-<sandboxID>[-ignored].<domain>" into a port and a sandbox ID. */
#include "routing/host.h"

#include <stdbool.h>
#include <string.h>

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

/* Parses the label "<port>-<sandboxID>[-<ignored>...]" into target. */
static route_host_status_t route_parse_label(const char *label, size_t length,
                                             route_target_t *target) {
    if (memchr(label, '.', length) != NULL)
        return ROUTE_HOST_INVALID_HOST; /* more labels than one before the domain */
    const char *dash = memchr(label, '-', length);
    if (dash == NULL)
        return ROUTE_HOST_INVALID_HOST;

    size_t port_length = (size_t)(dash - label);
    if (port_length == 0 || port_length > ROUTE_PORT_DIGITS_MAX)
        return ROUTE_HOST_INVALID_PORT;
    unsigned long port = 0;
    for (size_t i = 0; i < port_length; i++) {
        if (!route_host_is_digit(label[i]))
            return ROUTE_HOST_INVALID_PORT;
        port = port * 10 + (unsigned long)(label[i] - '0');
    }
    if (port == 0 || port > ROUTE_PORT_MAX)
        return ROUTE_HOST_INVALID_PORT;

    const char *id = dash + 1;
    const char *label_end = label + length;
    const char *id_end = memchr(id, '-', (size_t)(label_end - id));
    if (id_end == NULL)
        id_end = label_end; /* no ignored suffix */
    size_t id_length = (size_t)(id_end - id);
    if (id_length == 0 || id_length > ROUTE_SANDBOX_ID_MAX)
        return ROUTE_HOST_INVALID_ID;

    route_target_t result = {.port = (uint16_t)port};
    for (size_t i = 0; i < id_length; i++) {
        char c = route_host_lower(id[i]);
        if (!route_host_is_digit(c) && !(c >= 'a' && c <= 'z'))
            return ROUTE_HOST_INVALID_ID;
        result.sandbox_id[i] = c;
    }
    result.sandbox_id[id_length] = '\0';
    *target = result;
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

    /* A reg-name has no ':', so the first one starts the port (RFC 3986
     * §3.2.3: port = *DIGIT, possibly empty). Its value is irrelevant here. */
    size_t host_length = length;
    const char *colon = memchr(authority, ':', length);
    if (colon != NULL) {
        host_length = (size_t)(colon - authority);
        for (const char *cursor = colon + 1; cursor < authority + length; cursor++) {
            if (!route_host_is_digit(*cursor))
                return ROUTE_HOST_INVALID_HOST;
        }
    }
    if (host_length > 0 && authority[host_length - 1] == '.')
        host_length--; /* the fully qualified form names the same host */
    if (host_length == 0)
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
    case ROUTE_HOST_OK:
    case ROUTE_HOST_FOREIGN_DOMAIN:
        break;
    }
    return NULL;
}
