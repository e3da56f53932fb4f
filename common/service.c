/* service.c - flags, configuration, loop, signals, health endpoints and graceful shutdown
 * shared by every Integral binary. See service.h. */
#include "service.h"

#include "integral_version.h"
#include "log.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECTIONS_MAX 16

static const config_key_t service_keys[] = {
    {"shutdown_timeout_ms", CONFIG_INT, offsetof(service_t, shutdown_timeout_ms), "30000", 100,
     600000, NULL,
     "Longest a graceful shutdown may take before the process exits 1 regardless."},
};

/* All sections of a service: log, http, the shutdown key, then the service's own. */
static size_t all_sections(service_t *svc, config_section_t *out)
{
    size_t n = 0;
    out[n++] = (config_section_t)LOG_CONFIG_SECTION(&svc->log_config);
    out[n++] = (config_section_t)HTTP_CONFIG_SECTION(&svc->http_config);
    out[n++] = (config_section_t)CONFIG_SECTION(service_keys, svc);
    for (size_t i = 0; i < svc->desc->n_sections && n < SECTIONS_MAX; i++)
        out[n++] = svc->desc->sections[i];
    return n;
}

static void print_help(const service_desc_t *desc)
{
    printf("integral-%s %s - %s\n\n"
           "Usage: integral-%s [--config PATH] [--check-config]\n"
           "       integral-%s --config-doc | --help | --version\n",
           desc->name, INTEGRAL_VERSION, desc->summary, desc->name, desc->name);
    if (desc->command_usage)
        printf("%s", desc->command_usage);
    printf("\nOptions:\n"
           "  --config PATH    JSON configuration file (default: built-in defaults)\n"
           "  --check-config   validate the configuration and exit (0 when valid)\n"
           "  --config-doc     print every configuration key as a Markdown table\n"
           "  --help           this text\n"
           "  --version        version and build\n\n"
           "Every key can be overridden by an environment variable: INTEGRAL_ and the key in\n"
           "upper case with dots as underscores (kafka.brokers -> INTEGRAL_KAFKA_BROKERS).\n"
           "SIGINT/SIGTERM stop gracefully; SIGHUP reloads what the service can reload.\n");
}

typedef enum { FLAGS_RUN, FLAGS_EXIT_OK, FLAGS_EXIT_USAGE, FLAGS_CHECK, FLAGS_DOC } flags_t;

static flags_t parse_flags(int argc, char **argv, service_t *svc)
{
    flags_t action = FLAGS_RUN;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            print_help(svc->desc);
            return FLAGS_EXIT_OK;
        } else if (!strcmp(arg, "--version") || !strcmp(arg, "-V")) {
            printf("integral-%s %s (%s)\n", svc->desc->name, INTEGRAL_VERSION, INTEGRAL_GIT_REV);
            return FLAGS_EXIT_OK;
        } else if (!strcmp(arg, "--config") && i + 1 < argc) {
            svc->config_path = argv[++i];
        } else if (!strncmp(arg, "--config=", 9)) {
            svc->config_path = arg + 9;
        } else if (!strcmp(arg, "--check-config")) {
            action = FLAGS_CHECK;
        } else if (!strcmp(arg, "--config-doc")) {
            action = FLAGS_DOC;
        } else {
            fprintf(stderr, "integral-%s: unknown option '%s' (see --help)\n", svc->desc->name,
                    arg);
            return FLAGS_EXIT_USAGE;
        }
    }
    return action;
}

int service_load_config(service_t *svc, const config_section_t *sections, size_t n, char *err,
                        size_t errlen)
{
    return config_load(sections, n, svc->config_path, err, errlen);
}

/* ------------------------------------------------------------------------------------------
 * HTTP endpoints
 * ---------------------------------------------------------------------------------------- */

static void on_healthz(http_request_t *req, void *data)
{
    service_t *svc = data;
    char body[256];
    int n = snprintf(body, sizeof body,
                     "{\"status\":\"ok\",\"service\":\"%s\",\"version\":\"%s\",\"uptime_s\":%llu}\n",
                     svc->desc->name, INTEGRAL_VERSION,
                     (unsigned long long)((uv_now(&svc->loop) - svc->started_ms) / 1000));
    http_respond(req, 200, "application/json", body, (size_t)n);
}

static void on_readyz(http_request_t *req, void *data)
{
    service_t *svc = data;
    const char *why = "ready";
    bool ready = !svc->stopping && (!svc->desc->ready || svc->desc->ready(svc, &why));
    if (svc->stopping)
        why = "shutting down";
    char body[256];
    int n = snprintf(body, sizeof body, "%s\n", why);
    http_respond(req, ready ? 200 : 503, "text/plain", body, (size_t)n);
}

static void on_metrics(http_request_t *req, void *data)
{
    service_t *svc = data;
    char *text = NULL;
    size_t len = 0;
    if (metrics_render(svc->metrics, &text, &len) < 0) {
        http_respond(req, 500, "text/plain", "out of memory\n", 14);
        return;
    }
    http_respond(req, 200, "text/plain; version=0.0.4", text, len);
    free(text);
}

static double read_uptime(void *ctx)
{
    service_t *svc = ctx;
    return (double)(uv_now(&svc->loop) - svc->started_ms) / 1000.0;
}

static int http_start(service_t *svc)
{
    http_server_options_t opts = {
        .host = svc->http_config.host,
        .port = (int)svc->http_config.port,
        .max_connections = (unsigned)svc->http_config.max_connections,
        .server_name = "integral",
        .metrics = svc->metrics,
    };
    if (http_server_new(&svc->http, &svc->loop, &opts) < 0)
        return -1;
    http_server_route(svc->http, "GET", "/healthz", 0, on_healthz, svc);
    http_server_route(svc->http, "GET", "/readyz", 0, on_readyz, svc);
    http_server_route(svc->http, "GET", "/metrics", 0, on_metrics, svc);
    int rc = http_server_listen(svc->http);
    if (rc < 0) {
        log_error("http: cannot listen on %s:%ld: %s", svc->http_config.host,
                  svc->http_config.port, uv_strerror(rc));
        return -1;
    }
    log_info("http: listening on http://%s:%d", svc->http_config.host,
             http_server_port(svc->http));
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Signals and shutdown
 * ---------------------------------------------------------------------------------------- */

static void on_shutdown_deadline(uv_timer_t *timer)
{
    service_t *svc = timer->data;
    log_error("shutdown took longer than %ld ms; exiting now", svc->shutdown_timeout_ms);
    exit(1);
}

static void begin_stop(service_t *svc, int exit_code)
{
    if (svc->stopping) {
        log_error("second stop request; exiting now");
        exit(1);
    }
    svc->stopping = true;
    svc->exit_code = exit_code;
    uv_timer_start(&svc->shutdown_deadline, on_shutdown_deadline,
                   (uint64_t)svc->shutdown_timeout_ms, 0);
    if (svc->desc->stop)
        svc->desc->stop(svc);
    else
        service_stopped(svc);
}

static void on_signal(uv_signal_t *handle, int signum)
{
    service_t *svc = handle->data;
    if (signum == SIGHUP) {
        log_info("SIGHUP: reloading");
        if (svc->desc->reload)
            svc->desc->reload(svc);
        return;
    }
    log_info("%s: stopping gracefully", signum == SIGINT ? "SIGINT" : "SIGTERM");
    begin_stop(svc, 0);
}

static void on_http_closed(http_server_t *http, void *data)
{
    service_t *svc = data;
    svc->http = NULL;
    uv_close((uv_handle_t *)&svc->sigint, NULL);
    uv_close((uv_handle_t *)&svc->sigterm, NULL);
    uv_close((uv_handle_t *)&svc->sighup, NULL);
    uv_close((uv_handle_t *)&svc->shutdown_deadline, NULL);
}

void service_stopped(service_t *svc)
{
    if (svc->http)
        http_server_close(svc->http, on_http_closed, svc);
    else
        on_http_closed(NULL, svc);
}

static void signals_start(service_t *svc)
{
    uv_signal_t *handles[] = {&svc->sigint, &svc->sigterm, &svc->sighup};
    int signums[] = {SIGINT, SIGTERM, SIGHUP};
    for (int i = 0; i < 3; i++) {
        uv_signal_init(&svc->loop, handles[i]);
        handles[i]->data = svc;
        uv_signal_start(handles[i], on_signal, signums[i]);
    }
    uv_timer_init(&svc->loop, &svc->shutdown_deadline);
    svc->shutdown_deadline.data = svc;
}

static void on_walk_report(uv_handle_t *handle, void *arg)
{
    log_error("handle still open at exit: %s", uv_handle_type_name(handle->type));
}

/* Runs the loop until everything closed; returns the exit code. */
static int run(service_t *svc)
{
    signal(SIGPIPE, SIG_IGN); /* a peer that went away is an EPIPE, not a death */
    uv_loop_init(&svc->loop);
    svc->started_ms = uv_now(&svc->loop);
    svc->metrics = metrics_new();
    signals_start(svc);
    char labels[128];
    snprintf(labels, sizeof labels, "service=\"%s\",version=\"%s\"", svc->desc->name,
             INTEGRAL_VERSION);
    metrics_gauge_set(metrics_gauge(svc->metrics, "integral_build_info", "Build of this process.",
                                    labels),
                      1);
    metrics_gauge_fn(svc->metrics, "integral_uptime_seconds", "Seconds since start.", NULL,
                     read_uptime, svc);
    if (http_start(svc) < 0 || (svc->desc->start && svc->desc->start(svc) < 0)) {
        if (!svc->stopping)
            begin_stop(svc, 1);
        svc->exit_code = 1;
    }
    uv_run(&svc->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&svc->loop);
    if (rc != 0) {
        uv_walk(&svc->loop, on_walk_report, NULL);
        log_error("event loop not empty at exit: %s", uv_strerror(rc));
        svc->exit_code = 1;
    }
    metrics_free(svc->metrics);
    log_info("stopped (exit %d)", svc->exit_code);
    return svc->exit_code;
}

int service_main(int argc, char **argv, const service_desc_t *desc)
{
    if (argc > 1 && argv[1][0] != '-' && desc->command)
        return desc->command(argc - 1, argv + 1);
    service_t svc = {.desc = desc};
    flags_t action = parse_flags(argc, argv, &svc);
    if (action == FLAGS_EXIT_OK || action == FLAGS_EXIT_USAGE)
        return action == FLAGS_EXIT_OK ? 0 : 2;
    config_section_t sections[SECTIONS_MAX];
    size_t n = all_sections(&svc, sections);
    if (action == FLAGS_DOC) {
        config_write_doc(stdout, sections, n);
        return 0;
    }
    char err[512];
    if (service_load_config(&svc, sections, n, err, sizeof err) < 0 ||
        (desc->check_config && desc->check_config(err, sizeof err) < 0)) {
        fprintf(stderr, "integral-%s: %s\n", desc->name, err);
        config_free(sections, n);
        return 2;
    }
    if (action == FLAGS_CHECK) {
        printf("%s: configuration is valid\n", svc.config_path ? svc.config_path : "defaults");
        config_free(sections, n);
        return 0;
    }
    log_level_t level;
    log_level_parse(svc.log_config.level, &level); /* validated by its choices */
    log_setup(desc->name, level, strcmp(svc.log_config.format, "json") == 0);
    log_info("starting integral-%s %s (%s), config %s", desc->name, INTEGRAL_VERSION,
             INTEGRAL_GIT_REV, svc.config_path ? svc.config_path : "built-in defaults");
    int code = run(&svc);
    config_free(sections, n);
    return code;
}
