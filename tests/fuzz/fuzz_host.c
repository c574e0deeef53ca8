/* Fuzz target: the Host parser (routing/host.c) on any authority bytes. */
#include "routing/host.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char *domains[] = {"e2b.app", "sandbox.localhost", "eu.e2b.app", "x"};
    route_target_t target;
    memset(&target, 0x5a, sizeof(target));
    route_host_status_t status = route_parse_host((const char *)data, size, domains, 4, &target);
    if (status != ROUTE_HOST_OK) {
        FUZZ_CHECK(status == ROUTE_HOST_FOREIGN_DOMAIN ||
                   route_host_status_message(status) != NULL);
        return 0;
    }
    /* DESIGN "Hostnames": a port 1 to 65535, an ID of 1 to 63 of [a-z0-9]. */
    FUZZ_CHECK(target.port >= 1);
    size_t id_length = strnlen(target.sandbox_id, sizeof(target.sandbox_id));
    FUZZ_CHECK(id_length >= 1 && id_length <= ROUTE_SANDBOX_ID_MAX);
    for (size_t i = 0; i < id_length; i++) {
        char c = target.sandbox_id[i];
        FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'));
    }
    /* The same authority routes the same way every time. */
    route_target_t again;
    FUZZ_CHECK(route_parse_host((const char *)data, size, domains, 4, &again) == ROUTE_HOST_OK);
    FUZZ_CHECK(again.port == target.port && strcmp(again.sandbox_id, target.sandbox_id) == 0);
    return 0;
}
