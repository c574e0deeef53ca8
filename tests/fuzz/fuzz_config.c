/* Fuzz target: gateway.conf text (gateway/config.c on util/conf.c), NUL bytes and all. */
#include "gateway/config.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gw_config_t config;
    char error[1024];
    FUZZ_CHECK(gw_config_defaults(&config) == 0);
    int result = gw_config_parse_bytes(&config, "fuzz.conf", (const char *)data, size, error,
                                       sizeof(error));
    if (result != 0) {
        /* Every refusal names the file, and the line when there is one. */
        FUZZ_CHECK(strncmp(error, "fuzz.conf:", 10) == 0);
    } else {
        FUZZ_CHECK(config.domain_count > 0 && config.listen_count > 0);
        FUZZ_CHECK(config.max_header_size >= 1024);
    }
    gw_config_free(&config);
    return 0;
}
