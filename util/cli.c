/* The command line both binaries share: [-c FILE] [-t] | --version | --help. */
#include "util/cli.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

int cli_parse(int argc, char **argv, const char *program, const char *usage,
              const char *default_path, cli_options_t *options) {
    options->path = default_path;
    options->check_only = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-v") == 0) {
            printf("%s %s\n", program, SGW_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(argv[i], "-t") == 0) {
            options->check_only = true;
        } else if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            options->path = argv[++i];
        } else {
            fprintf(stderr, "%s: unknown argument \"%s\"\n%s", program, argv[i], usage);
            return 2;
        }
    }
    return -1;
}

void cli_raise_descriptor_limit(void) {
    struct rlimit descriptors;
    if (getrlimit(RLIMIT_NOFILE, &descriptors) == 0 &&
        descriptors.rlim_cur < descriptors.rlim_max) {
        descriptors.rlim_cur = descriptors.rlim_max;
        setrlimit(RLIMIT_NOFILE, &descriptors);
    }
}
