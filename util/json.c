/* JSON string escaping shared by the error responses and the access log. */
#include "util/json.h"

#include <stdbool.h>

static bool json_escape_is_continuation(unsigned char byte) { return (byte & 0xC0) == 0x80; }

/* Length of the UTF-8 sequence a lead byte starts, 0 for a byte that cannot lead. */
static size_t json_escape_utf8_sequence_length(unsigned char byte) {
    if (byte >= 0xC0 && byte < 0xE0)
        return 2;
    if (byte >= 0xE0 && byte < 0xF0)
        return 3;
    if (byte >= 0xF0 && byte < 0xF8)
        return 4;
    return 0;
}

/* Where to cut text at or before end so no UTF-8 sequence is split. Invalid
 * UTF-8 (no lead byte within reach, or a sequence already complete) is cut
 * where it is. */
static size_t json_escape_utf8_boundary(const unsigned char *text, size_t end, size_t length) {
    if (end >= length || !json_escape_is_continuation(text[end]))
        return end;
    /* A UTF-8 sequence is at most 4 bytes: its lead byte is at most 3 back. */
    for (size_t back = 1; back <= 3 && back <= end; back++) {
        unsigned char byte = text[end - back];
        if (json_escape_is_continuation(byte))
            continue;
        return json_escape_utf8_sequence_length(byte) > back ? end - back : end;
    }
    return end;
}

size_t json_escape_into(char *out, size_t capacity, const char *text, size_t length,
                        size_t *consumed) {
    static const char hex_digits[] = "0123456789abcdef";
    const unsigned char *bytes = (const unsigned char *)text;
    size_t written = 0;
    size_t index = 0;
    for (; index < length; index++) {
        unsigned char byte = bytes[index];
        if (byte == '"' || byte == '\\') {
            if (capacity - written < 2)
                break;
            out[written++] = '\\';
            out[written++] = (char)byte;
        } else if (byte < 0x20 || byte == 0x7F) {
            /* RFC 8259 §7 requires escaping below 0x20; DEL too, so a log line
             * shown on a terminal cannot carry control sequences. */
            if (capacity - written < JSON_ESCAPE_MAX_SEQUENCE)
                break;
            out[written++] = '\\';
            out[written++] = 'u';
            out[written++] = '0';
            out[written++] = '0';
            out[written++] = hex_digits[byte >> 4];
            out[written++] = hex_digits[byte & 0x0F];
        } else {
            if (capacity - written < 1)
                break;
            out[written++] = (char)byte;
        }
    }
    /* Bytes from 0x80 up are copied one for one, so moving the cut back by k
     * input bytes removes exactly the last k output bytes. */
    size_t cut = json_escape_utf8_boundary(bytes, index, length);
    written -= index - cut;
    *consumed = cut;
    return written;
}
