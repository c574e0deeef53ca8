/* sandbox-netpolicy: command line of the egress agent, its `check` mode, signals. */
#include <event2/event.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "egress/admin.h"
#include "egress/agent.h"
#include "egress/config.h"
#include "egress/policy.h"
#include "egress/ruleset.h"
#include "util/cli.h"
#include "util/log.h"

static const char NETPOLICY_USAGE[] =
    "usage: sandbox-netpolicy [-c FILE]      run the node agent with FILE (default: "
    "./egress.conf)\n"
    "       sandbox-netpolicy -t [-c FILE]   check FILE, print \"FILE: ok\" or \"FILE:LINE: "
    "message\"\n"
    "       sandbox-netpolicy check [allow_out=LIST] [deny_out=LIST] "
    "[allow_internet_access=true|false]\n"
    "                                        print the nftables transaction a record with these\n"
    "                                        fields compiles to, without applying it\n"
    "       sandbox-netpolicy --version | --help\n";

/* `check FIELD=VALUE...`: the same parser and compiler as the agent, printed, not applied. */
static int netpolicy_check(int argc, char **argv) {
    static const char *const names[] = {"allow_internet_access", "deny_out", "allow_out"};
    egress_field_t fields[3] = {{0}};
    for (int i = 0; i < argc; i++) {
        const char *equals = strchr(argv[i], '=');
        size_t name_length = equals != NULL ? (size_t)(equals - argv[i]) : 0;
        size_t index = 0;
        while (index < 3 && (strlen(names[index]) != name_length ||
                             strncmp(names[index], argv[i], name_length) != 0))
            index++;
        if (equals == NULL || index == 3) {
            fprintf(stderr,
                    "sandbox-netpolicy check: \"%s\" is not allow_out=LIST, deny_out=LIST or "
                    "allow_internet_access=true|false\n",
                    argv[i]);
            return 1;
        }
        if (fields[index].value != NULL) {
            fprintf(stderr, "sandbox-netpolicy check: %s given twice\n", names[index]);
            return 1;
        }
        fields[index].value = equals + 1;
        fields[index].length = strlen(equals + 1);
    }

    int status = 1;
    egress_policy_t policy;
    egress_policy_init(&policy);
    egress_text_t script;
    egress_text_init(&script);
    char error[512];
    if (egress_policy_parse(&policy, fields[0], fields[1], fields[2], error, sizeof(error)) != 0) {
        fprintf(stderr, "sandbox-netpolicy check: %s\n", error);
        goto done;
    }
    if (egress_ruleset_compile(&policy, NULL, NULL, &script) != 0) {
        fprintf(stderr, "sandbox-netpolicy check: out of memory\n");
        goto done;
    }
    fwrite(script.data, 1, script.length, stdout);
    status = fflush(stdout) == 0 ? 0 : 1;
done:
    egress_text_free(&script);
    egress_policy_free(&policy);
    return status;
}

/* What the signal handlers act on. */
typedef struct netpolicy_process {
    struct event_base *base;
    egress_agent_t *agent; /* NULL until started */
} netpolicy_process_t;

static void netpolicy_on_signal(evutil_socket_t signal_number, short events, void *argument) {
    (void)events;
    netpolicy_process_t *process = argument;
    if (signal_number == SIGHUP) {
        log_info("SIGHUP: reading the node set and every record again");
        if (process->agent != NULL)
            egress_agent_resync(process->agent);
        return;
    }
    log_info("%s: stopping; the rules in force stay as they are",
             signal_number == SIGINT ? "SIGINT" : "SIGTERM");
    event_base_loopbreak(process->base);
}

/* Runs the agent until SIGTERM or SIGINT; returns the exit status. */
static int netpolicy_run(const egress_config_t *config) {
    int status = 1;
    struct event *signals[3] = {NULL, NULL, NULL};
    static const int signal_numbers[3] = {SIGTERM, SIGINT, SIGHUP};
    netpolicy_process_t process = {.base = event_base_new(), .agent = NULL};
    egress_admin_t *admin = NULL;
    struct event_base *base = process.base;
    if (base == NULL) {
        log_error("cannot create the event loop");
        return 1;
    }
    for (int i = 0; i < 3; i++) {
        signals[i] = evsignal_new(base, signal_numbers[i], netpolicy_on_signal, &process);
        if (signals[i] == NULL || evsignal_add(signals[i], NULL) != 0) {
            log_error("cannot watch signals");
            goto done;
        }
    }
    char error[512];
    process.agent = egress_agent_new(base, config, error, sizeof(error));
    if (process.agent == NULL) {
        log_error("cannot start: %s", error);
        goto done;
    }
    if (config->admin_listen != NULL) {
        admin = egress_admin_new(base, config->admin_listen, egress_agent_metrics(process.agent),
                                 error, sizeof(error));
        if (admin == NULL) {
            log_error("cannot start: %s", error);
            goto done;
        }
        log_info("admin: GET /metrics and /health on %s", config->admin_listen);
    }
    log_info("sandbox-netpolicy %s started: node %s, catalog %s (records %s*, node set %s%s), "
             "resync every %llu ms",
             SGW_VERSION, config->node_id, config->redis_url, config->redis_key_prefix,
             EGRESS_CONFIG_NODE_SET_PREFIX, config->node_id,
             (unsigned long long)config->resync_interval_ms);
    status = event_base_dispatch(base) < 0 ? 1 : 0;
done:
    egress_admin_free(admin);
    egress_agent_free(process.agent);
    for (int i = 0; i < 3; i++) {
        if (signals[i] != NULL)
            event_free(signals[i]);
    }
    event_base_free(base);
    return status;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "check") == 0)
        return netpolicy_check(argc - 2, argv + 2);
    cli_options_t options;
    int exit_status =
        cli_parse(argc, argv, "sandbox-netpolicy", NETPOLICY_USAGE, "egress.conf", &options);
    if (exit_status >= 0)
        return exit_status;
    const char *path = options.path;

    egress_config_t config;
    char error[1024];
    if (egress_config_defaults(&config) != 0) {
        fprintf(stderr, "sandbox-netpolicy: out of memory\n");
        egress_config_free(&config);
        return 1;
    }
    if (egress_config_load(&config, path, error, sizeof(error)) != 0) {
        fprintf(stderr, "%s\n", error);
        egress_config_free(&config);
        return 1;
    }
    if (options.check_only) {
        printf("%s: ok\n", path);
        egress_config_free(&config);
        return 0;
    }
    log_set_level(config.log_level);
    signal(SIGPIPE, SIG_IGN);
    /* Each intercepted connection is two descriptors (up to 1,024 per sandbox). */
    cli_raise_descriptor_limit();
    int status = netpolicy_run(&config);
    egress_config_free(&config);
    libevent_global_shutdown();
    return status;
}
