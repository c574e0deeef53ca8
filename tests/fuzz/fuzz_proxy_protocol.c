/* Fuzz target: the PROXY v1/v2 parser (gateway/proxy_protocol.c); every shorter prefix of a
 * complete header asks for more bytes, and a header never claims bytes it was not given. */
#include <netinet/in.h>

#include "gateway/proxy_protocol.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Copies the prefix, so ASan catches any read past it. */
static gw_proxy_status_t parse_prefix(const uint8_t *data, size_t length,
                                      gw_proxy_header_t *header) {
    uint8_t *copy = malloc(length > 0 ? length : 1);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, data, length);
    gw_proxy_status_t status = gw_proxy_protocol_parse(copy, length, header);
    free(copy);
    return status;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > GW_PROXY_HEADER_MAX)
        size = GW_PROXY_HEADER_MAX;
    gw_proxy_header_t header;
    gw_proxy_status_t status = parse_prefix(data, size, &header);
    if (status == GW_PROXY_DONE) {
        FUZZ_CHECK(header.length > 0 && header.length <= size);
        if (!header.local)
            FUZZ_CHECK(header.source.ss_family == AF_INET || header.source.ss_family == AF_INET6);
    }
    /* A complete header, or a valid beginning: every shorter prefix is a valid beginning (all
     * of them up to 256 bytes, then 64 spread over the rest). */
    size_t end = status == GW_PROXY_DONE ? header.length : status == GW_PROXY_NEED_MORE ? size : 0;
    for (size_t step = 0; step < 256 + 64; step++) {
        size_t prefix = step < 256 ? step : 256 + (end - 256) * (step - 256) / 64;
        if (prefix >= end)
            break;
        gw_proxy_header_t partial;
        FUZZ_CHECK(parse_prefix(data, prefix, &partial) == GW_PROXY_NEED_MORE);
    }
    return 0;
}
