/* After 101 Switching Protocols: raw bytes both ways, each side's end passed on. */
#ifndef SGW_GATEWAY_TUNNEL_H
#define SGW_GATEWAY_TUNNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/transport.h"

typedef struct gw_tunnel {
    gw_transport_t *client;
    gw_transport_t *upstream;
    uint64_t last_activity_ms; /* for tunnel_idle_timeout */
    bool client_eof;           /* the client ended its sending side */
    bool upstream_eof;         /* the sandbox ended its sending side */
    bool client_shut;          /* the sandbox's end was passed on to the client */
    bool upstream_shut;        /* the client's end was passed on to the sandbox */
} gw_tunnel_t;

/* Starts carrying bytes between client and upstream (whose handlers the
 * owner has set to call the functions below): both read, and what either
 * side sent already passes. Returns the bytes passed each way, added to
 * *to_client and *to_upstream. */
void gw_tunnel_start(gw_tunnel_t *tunnel, gw_transport_t *client, gw_transport_t *upstream,
                     uint64_t *to_client, uint64_t *to_upstream);

/* What from's input holds goes to the other side's output, written at once;
 * reading from pauses while that output is full. Returns the bytes moved. */
size_t gw_tunnel_pass(gw_tunnel_t *tunnel, gw_transport_t *from);

/* One side ended its sending side (EOF): what it sent before passes first. */
void gw_tunnel_ended(gw_tunnel_t *tunnel, gw_transport_t *from);

/* The output of to drained: reading from the other side resumes. Returns the
 * bytes then moved. */
size_t gw_tunnel_drained(gw_tunnel_t *tunnel, gw_transport_t *to);

/* Passes each side's end on once the bytes before it were delivered, so a
 * WebSocket or other protocol can finish its close exchange; returns true
 * when both directions ended (the owner closes). */
bool gw_tunnel_half_close(gw_tunnel_t *tunnel);

#endif
