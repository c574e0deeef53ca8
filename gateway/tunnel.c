/* After 101 Switching Protocols: raw bytes both ways, each side's end passed on. */
#include "gateway/tunnel.h"

#include <event2/buffer.h>

#include "gateway/exchange.h"
#include "util/clock.h"

static gw_transport_t *gw_tunnel_other(const gw_tunnel_t *tunnel, const gw_transport_t *side) {
    return side == tunnel->client ? tunnel->upstream : tunnel->client;
}

size_t gw_tunnel_pass(gw_tunnel_t *tunnel, gw_transport_t *from) {
    gw_transport_t *to = gw_tunnel_other(tunnel, from);
    struct evbuffer *output = gw_transport_output(to);
    struct evbuffer *input = gw_transport_input(from);
    size_t length = evbuffer_get_length(input);
    evbuffer_add_buffer(output, input);
    tunnel->last_activity_ms = clock_coarse_ms();
    gw_transport_flush(to, false);
    if (evbuffer_get_length(output) >= GW_BUFFER_HIGH) {
        gw_transport_read(from, false);
        gw_transport_write_low(to, GW_BUFFER_LOW);
    }
    return length;
}

void gw_tunnel_start(gw_tunnel_t *tunnel, gw_transport_t *client, gw_transport_t *upstream,
                     uint64_t *to_client, uint64_t *to_upstream) {
    *tunnel = (gw_tunnel_t){.client = client, .upstream = upstream};
    tunnel->last_activity_ms = clock_coarse_ms();
    gw_transport_read(client, true);
    gw_transport_read(upstream, true);
    *to_client += gw_tunnel_pass(tunnel, upstream);
    *to_upstream += gw_tunnel_pass(tunnel, client);
}

void gw_tunnel_ended(gw_tunnel_t *tunnel, gw_transport_t *from) {
    gw_tunnel_pass(tunnel, from);
    if (from == tunnel->client) {
        tunnel->client_eof = true;
        /* A stream that cannot half-close cannot be written to any more. */
        if (!gw_transport_can(from, GW_TRANSPORT_HALF_CLOSE))
            tunnel->client_shut = true;
    } else {
        tunnel->upstream_eof = true;
    }
}

size_t gw_tunnel_drained(gw_tunnel_t *tunnel, gw_transport_t *to) {
    gw_transport_write_low(to, 0);
    gw_transport_t *from = gw_tunnel_other(tunnel, to);
    bool from_ended = from == tunnel->client ? tunnel->client_eof : tunnel->upstream_eof;
    if (from_ended)
        return 0;
    gw_transport_read(from, true);
    return gw_tunnel_pass(tunnel, from);
}

bool gw_tunnel_half_close(gw_tunnel_t *tunnel) {
    if (tunnel->client_eof && !tunnel->upstream_shut &&
        evbuffer_get_length(gw_transport_output(tunnel->upstream)) == 0) {
        gw_transport_shutdown_write(tunnel->upstream);
        tunnel->upstream_shut = true;
    }
    if (tunnel->upstream_eof && !tunnel->client_shut &&
        evbuffer_get_length(gw_transport_output(tunnel->client)) == 0) {
        gw_transport_shutdown_write(tunnel->client);
        tunnel->client_shut = true;
    }
    return tunnel->upstream_shut && tunnel->client_shut;
}
