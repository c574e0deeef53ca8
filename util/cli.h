/* The command line both binaries share: [-c FILE] [-t] | --version | --help. */
#ifndef SGW_UTIL_CLI_H
#define SGW_UTIL_CLI_H

#include <stdbool.h>

typedef struct cli_options {
    const char *path; /* -c FILE, or the default */
    bool check_only;  /* -t: check the file and exit */
} cli_options_t;

/* Reads argv (program names the binary in messages, usage is printed for
 * --help and after an error). Returns -1 to run with *options, or the exit
 * status when it printed the version (0), the usage (0) or an error (2). */
int cli_parse(int argc, char **argv, const char *program, const char *usage,
              const char *default_path, cli_options_t *options);

/* Raises the open-files limit to the hard limit (systemd's LimitNOFILE sets it): both binaries
 * hold a descriptor per connection. */
void cli_raise_descriptor_limit(void);

#endif
