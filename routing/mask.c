/* mask_request_host: the Host template of a sandbox, with ${PORT} expanded. */
#include "routing/mask.h"

#include <stdio.h>
#include <string.h>

/* A DNS name is at most 253 bytes; 255 leaves room for a short ":port". */
enum { ROUTE_MASK_LENGTH_MAX = 255 };

static const char route_mask_placeholder[] = "${PORT}";

bool route_mask_valid(const char *template_text) {
    if (template_text == NULL)
        return false;
    size_t length = 0;
    for (const unsigned char *cursor = (const unsigned char *)template_text; *cursor != '\0';
         cursor++) {
        /* The expansion becomes a header value: CR or LF would split headers,
         * space or tab would make an invalid Host (RFC 9110 §7.2). */
        if (*cursor <= 0x20 || *cursor == 0x7f)
            return false;
        if (++length > ROUTE_MASK_LENGTH_MAX)
            return false;
    }
    return length > 0;
}

int route_mask_expand(const char *template_text, uint16_t port, char *out, size_t out_size) {
    if (out == NULL || out_size == 0)
        return -1;
    out[0] = '\0';
    if (!route_mask_valid(template_text))
        return -1;

    char port_text[sizeof("65535")];
    int port_length = snprintf(port_text, sizeof(port_text), "%u", (unsigned)port);
    size_t placeholder_length = sizeof(route_mask_placeholder) - 1;
    size_t written = 0;
    const char *cursor = template_text;
    while (*cursor != '\0') {
        const char *piece = cursor;
        size_t piece_length = 1;
        /* strncmp stops at the template's NUL, so a partial "${POR" at the end is safe. */
        if (strncmp(cursor, route_mask_placeholder, placeholder_length) == 0) {
            piece = port_text;
            piece_length = (size_t)port_length;
            cursor += placeholder_length;
        } else {
            cursor++;
        }
        if (piece_length >= out_size - written) {
            out[0] = '\0'; /* never hand back a truncated Host */
            return -1;
        }
        memcpy(out + written, piece, piece_length);
        written += piece_length;
    }
    out[written] = '\0';
    return (int)written;
}
