/* A request's routing decision from its sandbox's record: where it goes, or why not. */
#include "routing/decision.h"

#include <netinet/in.h>
#include <string.h>

#include "routing/mask.h"
#include "util/log.h"

static const char ROUTE_MESSAGE_ADDRESS_REFUSED[] = "The sandbox address is not allowed";
static const char ROUTE_MESSAGE_LOOP[] = "Loop detected";
static const char ROUTE_MESSAGE_MALFORMED[] = "The sandbox record is invalid";

/* The longest Host a mask expands to: 255 bytes of template (route_mask_valid),
 * and "${PORT}" never grows. */
enum { ROUTE_DECISION_HOST_MAX = 256 };

/* Writes "<prefix><port>" into arena: the pool key. Built by hand: this runs
 * for every request. Returns 0, or -1 when memory is exhausted. */
static int route_decision_pool_key(const route_record_t *record, uint16_t port, arena_t *arena,
                                   route_decision_t *decision) {
    char reversed[5];
    size_t digits = 0;
    unsigned value = port;
    do {
        reversed[digits++] = (char)('0' + value % 10);
        value /= 10;
    } while (value > 0);
    size_t prefix_length = record->pool_key_prefix_length;
    char *key = arena_alloc(arena, prefix_length + digits + 1);
    if (key == NULL)
        return -1;
    memcpy(key, record->pool_key_prefix, prefix_length);
    for (size_t i = 0; i < digits; i++)
        key[prefix_length + i] = reversed[digits - 1 - i];
    key[prefix_length + digits] = '\0';
    decision->pool_key = key;
    decision->pool_key_length = prefix_length + digits;
    return 0;
}

/* Sets the refusal of status with message; returns 0. */
static int route_decision_refuse(route_decision_t *decision, int status, const char *message) {
    decision->status = status;
    decision->message = message;
    return 0;
}

int route_decide(route_record_t *record, uint16_t port, const route_address_policy_t *policy,
                 const char *token, size_t token_length, bool cookie_admits, arena_t *arena,
                 route_decision_t *decision) {
    /* Field by field, and the address as long as it is: this runs for every
     * request. */
    decision->status = 0;
    decision->message = NULL;
    decision->host = NULL;
    decision->host_length = 0;
    memcpy(&decision->address, &record->address, record->address_length);
    decision->address_length = record->address_length;
    if (decision->address.any.sa_family == AF_INET6)
        decision->address.ipv6.sin6_port = htons(port);
    else
        decision->address.ipv4.sin_port = htons(port);

    /* The ranges depend on the address alone: checked once per record. */
    if (!record->address_checked) {
        record->address_refused =
            route_address_refused(policy, (const struct sockaddr *)&record->address);
        record->address_checked = true;
    }
    if (record->address_refused) {
        log_warn("sandbox %s: record points at a refused address %s", record->sandbox_id,
                 record->address_text);
        return route_decision_refuse(decision, 502, ROUTE_MESSAGE_ADDRESS_REFUSED);
    }
    if (route_address_is_own(policy, &decision->address.any)) {
        log_warn("sandbox %s: record points at the gateway itself (%s port %u)", record->sandbox_id,
                 record->address_text, (unsigned)port);
        return route_decision_refuse(decision, 508, ROUTE_MESSAGE_LOOP);
    }
    if (!record->allow_public_traffic && !route_record_port_public(record, port) &&
        !(cookie_admits && token == NULL)) {
        auth_result_t result = auth_token_check(&record->secret, token, token_length);
        if (result != AUTH_OK)
            return route_decision_refuse(decision, 403, auth_result_message(result));
    }
    if (record->mask_request_host != NULL) {
        decision->host = arena_alloc(arena, ROUTE_DECISION_HOST_MAX);
        if (decision->host == NULL)
            return -1;
        int length = route_mask_expand(record->mask_request_host, port, decision->host,
                                       ROUTE_DECISION_HOST_MAX);
        if (length < 0) {
            log_error("sandbox %s: cannot expand mask_request_host", record->sandbox_id);
            return route_decision_refuse(decision, 502, ROUTE_MESSAGE_MALFORMED);
        }
        decision->host_length = (size_t)length;
    }
    return route_decision_pool_key(record, port, arena, decision);
}
