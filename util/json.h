/* JSON string escaping shared by the error responses and the access log. */
#ifndef SGW_UTIL_JSON_H
#define SGW_UTIL_JSON_H

#include <stddef.h>

/* Longest escape of one input byte: \u00XX. */
enum { JSON_ESCAPE_MAX_SEQUENCE = 6 };

/* Escapes length bytes of text for the inside of a JSON string: quote and
 * backslash get a backslash, control bytes and DEL become \u00XX, every other
 * byte (UTF-8 included) is copied. Writes at most capacity bytes to out, no
 * NUL, never cutting an escape or a UTF-8 sequence; returns the bytes written
 * and sets *consumed to the bytes of text they stand for. A capacity of at
 * least JSON_ESCAPE_MAX_SEQUENCE always consumes something of a non-empty text. */
size_t json_escape_into(char *out, size_t capacity, const char *text, size_t length,
                        size_t *consumed);

#endif
