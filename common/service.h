/* service.h - what every Integral binary shares: flags, configuration, the loop, signals, the
 * HTTP endpoints /healthz, /readyz and /metrics, and a graceful shutdown.
 *
 * A service's main.c fills a service_desc_t and calls service_main. The life of a service:
 *   flags (--help, --version, --config PATH, --check-config, --config-doc)
 *   -> configuration loaded and validated (a bad key exits 2 with one line naming it)
 *   -> loop, signals, HTTP server listening -> desc->start()
 *   -> the loop runs ... SIGINT/SIGTERM -> desc->stop(): the service stops consuming,
 *      finishes what is in flight, drains producers, closes its clients, then calls
 *      service_stopped() -> the HTTP server and signal handles close -> uv_run returns
 *   -> uv_loop_close() must return 0 -> exit 0.
 * A second signal, or a stop that outlasts shutdown_timeout_ms, exits 1 at once (logged).
 * SIGHUP calls desc->reload(). */
#ifndef INTEGRAL_SERVICE_H
#define INTEGRAL_SERVICE_H

#include "config.h"
#include "config_keys.h"
#include "http.h"
#include "metrics.h"

#include <stdbool.h>
#include <uv.h>

typedef struct service service_t;

typedef struct {
    const char *name;    /* short name: "engine" (binary integral-engine, log lines "engine") */
    const char *summary; /* one line for --help */
    /* The service's own configuration sections; log.* and http.* are added by service_main. */
    const config_section_t *sections;
    size_t n_sections;
    /* Checks the loaded configuration beyond types and bounds (e.g. a list's syntax).
     * Returns 0, or -1 with one line in err naming the key. Optional. */
    int (*check_config)(char *err, size_t errlen);
    /* Called once the loop, signals and HTTP server are up. Returns 0, or -1 to exit 1
     * (after logging why). The service may add HTTP routes here. */
    int (*start)(service_t *svc);
    /* Begin a graceful stop; call service_stopped(svc) when done (possibly at once). */
    void (*stop)(service_t *svc);
    /* SIGHUP. Optional. */
    void (*reload)(service_t *svc);
    /* /readyz: true when the service can do its work; *why explains a false. Optional. */
    bool (*ready)(service_t *svc, const char **why);
    /* Optional subcommands: argv[1] not starting with '-' is passed here instead of running
     * the service (e.g. "integral-gateway token ..."). Returns the exit code. */
    int (*command)(int argc, char **argv);
    const char *command_usage; /* lines appended to --help */
    void *data;                /* the service's own context, reachable as svc->desc->data */
} service_desc_t;

struct service {
    uv_loop_t loop;
    const service_desc_t *desc;
    metrics_t *metrics;
    http_server_t *http;
    const char *config_path; /* NULL when running on defaults and environment */
    log_config_t log_config;
    http_config_t http_config;
    long shutdown_timeout_ms;
    bool stopping;
    int exit_code;
    uv_signal_t sigint, sigterm, sighup;
    uv_timer_t shutdown_deadline;
    uint64_t started_ms;
};

/* Runs the service; returns the process exit code. */
int service_main(int argc, char **argv, const service_desc_t *desc);

/* Called by the service when everything desc->stop started has finished. */
void service_stopped(service_t *svc);

/* Loads the configuration sections (the desc's plus log/http) from the service's config
 * path: the reload path. Returns 0, or -1 with one line in err. */
int service_load_config(service_t *svc, const config_section_t *sections, size_t n,
                        char *err, size_t errlen);

#endif
