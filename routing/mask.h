/* mask_request_host: the Host template of a sandbox, with ${PORT} expanded. */
#ifndef SGW_ROUTING_MASK_H
#define SGW_ROUTING_MASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True if template is a usable host[:port] template: non-empty, at most 255
 * bytes, and no space, tab, CR, LF or other control byte. */
bool route_mask_valid(const char *template_text);

/* Writes template with every "${PORT}" replaced by port in decimal into out
 * (NUL-terminated); returns the length written, or -1 if out is too small or
 * the template is not valid. */
int route_mask_expand(const char *template_text, uint16_t port, char *out, size_t out_size);

#endif
