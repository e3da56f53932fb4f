/* integral-gateway: live alerts to agent desktops and the live queue to supervisors, over
 * WebSocket, on one libuv loop with its Kafka consumer and producer and its Redis client.
 * Wiring only: configuration, the clients, start and stop.
 *
 * Stop order (SIGINT/SIGTERM): no more Kafka messages are taken and the wallboard stops;
 * once the messages taken have their Redis replies (or gateway drain time ran out) the
 * consumer closes (offsets committed), the producer drains (feedback), Redis closes; then
 * service.c closes the HTTP server, which says 1001 "server shutdown" to every WebSocket after
 * what is queued for it; the sessions' memory goes last, after the loop. */
#include "api.h"
#include "feed.h"
#include "gateway.h"
#include "gwstore.h"
#include "sessions.h"
#include "wallboard.h"

#include "log.h"
#include "service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DRAIN_CHECK_MS 20

static gw_t gateway;

static const config_key_t gateway_keys[] = {
    {"gateway.jwt_secret", CONFIG_STRING, offsetof(gateway_config_t, jwt_secret), "", 0, 4096,
     NULL,
     "HS256 secret of the tokens (at least 32 bytes). Set it through the environment "
     "(INTEGRAL_GATEWAY_JWT_SECRET) rather than a file."},
    {"gateway.jwt_skew_s", CONFIG_INT, offsetof(gateway_config_t, jwt_skew_s), "30", 0, 600,
     NULL, "Clock skew allowed when checking a token's exp and nbf."},
    {"gateway.allowed_origins", CONFIG_STRING, offsetof(gateway_config_t, allowed_origins),
     "http://127.0.0.1:8093,http://localhost:8093", 0, 4096, NULL,
     "Origins (scheme://host[:port], comma-separated) whose pages may open a WebSocket; \"*\" "
     "allows any. A browser always sends Origin: others get 403. Clients that send none "
     "(not browsers) are allowed."},
    {"gateway.auth_timeout_ms", CONFIG_INT, offsetof(gateway_config_t, auth_timeout_ms), "5000",
     100, 60000, NULL, "The first message (auth) must arrive within this; else close 4008."},
    {"gateway.max_message_bytes", CONFIG_INT, offsetof(gateway_config_t, max_message_bytes),
     "16384", 1024, 1048576, NULL, "A larger client message closes the connection with 1009."},
    {"gateway.ping_interval_ms", CONFIG_INT, offsetof(gateway_config_t, ping_interval_ms),
     "20000", 500, 600000, NULL, "A ping after this long without hearing from a client."},
    {"gateway.idle_timeout_ms", CONFIG_INT, offsetof(gateway_config_t, idle_timeout_ms),
     "60000", 1000, 3600000, NULL, "Nothing heard for this long: close 4002 \"ping timeout\"."},
    {"gateway.max_backlog_bytes", CONFIG_INT, offsetof(gateway_config_t, max_backlog_bytes),
     "1048576", 65536, 268435456, NULL,
     "Bytes queued for one client; past it the client is too slow: close 1008."},
    {"gateway.max_backlog_messages", CONFIG_INT,
     offsetof(gateway_config_t, max_backlog_messages), "4096", 16, 1000000, NULL,
     "Messages queued for one client; past it: close 1008 \"slow consumer\"."},
    {"gateway.rate_limit_per_s", CONFIG_DOUBLE, offsetof(gateway_config_t, rate_limit_per_s),
     "20", 0.1, 10000, NULL,
     "Client messages per second (a token bucket); beyond it they get a rate_limited error, "
     "and a client that keeps on past a full burst is closed with 1008."},
    {"gateway.rate_limit_burst", CONFIG_INT, offsetof(gateway_config_t, rate_limit_burst), "40",
     1, 100000, NULL, "The bucket's size: messages a client may send at once."},
    {"gateway.resume_window_s", CONFIG_INT, offsetof(gateway_config_t, resume_window_s), "900",
     60, 604800, NULL,
     "How far back an agent's alert log reaches: a client reconnecting within it gets every "
     "alert it missed."},
    {"gateway.pending_alert_ttl_s", CONFIG_INT, offsetof(gateway_config_t, pending_alert_ttl_s),
     "14400", 60, 604800, NULL,
     "Alerts raised while nobody served the customer wait this long for the agent who "
     "answers."},
    {"gateway.screen_pop_max_age_s", CONFIG_INT,
     offsetof(gateway_config_t, screen_pop_max_age_s), "60", 1, 86400, NULL,
     "An assignment notice older than this (a gateway catching up) pops no screen."},
    {"gateway.alerts_topic", CONFIG_STRING, offsetof(gateway_config_t, alerts_topic), "alerts",
     1, 249, NULL, "Topic of the engine's alerts."},
    {"gateway.assignments_topic", CONFIG_STRING, offsetof(gateway_config_t, assignments_topic),
     "assignments", 1, 249, NULL, "Topic of the engine's notices that a contact reached an agent."},
    {"gateway.feedback_topic", CONFIG_STRING, offsetof(gateway_config_t, feedback_topic),
     "feedback", 1, 249, NULL, "Topic acknowledgements and feedback go to (key = alert id)."},
    {"gateway.instance", CONFIG_STRING, offsetof(gateway_config_t, instance), "gw1", 1, 64,
     NULL,
     "This gateway's name, unique among the gateways: its consumer group is "
     "integral-gateway-<instance>, so a restart resumes where it stopped."},
    {"gateway.queue_interval_ms", CONFIG_INT, offsetof(gateway_config_t, queue_interval_ms),
     "1000", 100, 60000, NULL, "How often supervisors get the live queue."},
    {"gateway.max_waiting_listed", CONFIG_INT, offsetof(gateway_config_t, max_waiting_listed),
     "100", 1, 10000, NULL, "Waiting contacts listed per queue (the longest-waiting ones)."},
    {"gateway.service_level_threshold_s", CONFIG_INT,
     offsetof(gateway_config_t, service_level_threshold_s), "20", 1, 3600, NULL,
     "A contact answered within this counts toward the service level."},
    {"gateway.service_level_formula", CONFIG_STRING,
     offsetof(gateway_config_t, service_level_formula), "offered", 1, 64, WALLBOARD_FORMULAS,
     "answered: within/answered; offered: within/(answered+abandoned); "
     "offered_minus_short_abandons: within/(answered+abandoned-abandoned within threshold)."},
    {"gateway.service_level_target", CONFIG_DOUBLE,
     offsetof(gateway_config_t, service_level_target), "0.8", 0, 1, NULL,
     "The service level aimed at (0.8: 80 % within the threshold), shown on the wallboard."},
    {"gateway.at_risk_churn", CONFIG_DOUBLE, offsetof(gateway_config_t, at_risk_churn), "0.7", 0,
     1, NULL, "A waiting customer with this churn risk or more is flagged at_risk."},
    {"gateway.feed_size", CONFIG_INT, offsetof(gateway_config_t, feed_size), "200", 0, 100000,
     NULL, "Recent alerts a supervisor gets on connecting."},
    {"gateway.web_dir", CONFIG_STRING, offsetof(gateway_config_t, web_dir), "web", 1, 4096,
     NULL, "Directory of the web UI (agent.html, supervisor.html, static/)."},
};

static const config_section_t sections[] = {
    CONFIG_SECTION(gateway_keys, &gateway.cfg),
    KAFKA_CONFIG_SECTION(&gateway.kafka),
    REDIS_CONFIG_SECTION(&gateway.redis_cfg),
};

/* ------------------------------------------------------------------------------------------
 * Configuration
 * ---------------------------------------------------------------------------------------- */

static void free_origins(gw_t *gw)
{
    for (size_t i = 0; i < gw->n_origins; i++)
        free(gw->origins[i]);
    free(gw->origins);
    gw->origins = NULL;
    gw->n_origins = 0;
}

/* "a, b,c" -> {"a","b","c"}. Returns 0, or -1 with err for an entry that is not an origin. */
static int parse_origins(gw_t *gw, const char *list, char *err, size_t errlen)
{
    free_origins(gw);
    char *copy = strdup(list), *save = NULL;
    size_t cap = 1;
    for (const char *p = list; *p; p++)
        cap += *p == ',';
    gw->origins = calloc(cap, sizeof *gw->origins);
    int rc = copy && gw->origins ? 0 : -1;
    for (char *item = copy ? strtok_r(copy, ", ", &save) : NULL; item && rc == 0;
         item = strtok_r(NULL, ", ", &save)) {
        if (strcmp(item, "*") != 0 && strncmp(item, "http://", 7) != 0 &&
            strncmp(item, "https://", 8) != 0) {
            snprintf(err, errlen, "gateway.allowed_origins: \"%s\" is not scheme://host[:port]",
                     item);
            rc = -1;
        } else if (!(gw->origins[gw->n_origins++] = strdup(item))) {
            rc = -1;
        }
    }
    free(copy);
    return rc;
}

static int check_config(char *err, size_t errlen)
{
    char why[200];
    if (auth_check_secret(gateway.cfg.jwt_secret, why, sizeof why) < 0) {
        snprintf(err, errlen, "gateway.jwt_secret: %s", why);
        return -1;
    }
    return parse_origins(&gateway, gateway.cfg.allowed_origins, err, errlen);
}

/* ------------------------------------------------------------------------------------------
 * Metrics
 * ---------------------------------------------------------------------------------------- */

static double read_size(void *ctx)
{
    return (double)*(const size_t *)ctx;
}

static double read_u64(void *ctx)
{
    return (double)*(const uint64_t *)ctx;
}

static double read_backlog(void *ctx)
{
    return (double)sessions_backlog_bytes(ctx);
}

static double read_lag(void *ctx)
{
    gw_t *gw = ctx;
    return gw->consumer ? (double)kafka_consumer_lag(gw->consumer) : 0;
}

static void register_metrics(gw_t *gw)
{
    metrics_t *m = gw->svc->metrics;
    const sessions_stats_t *st = sessions_stats(gw);
    const ws_stats_t *ws = ws_stats();
    metrics_gauge_fn(m, "integral_gateway_connections", "Open WebSocket sessions, by role.",
                     "role=\"agent\"", read_size, (void *)&st->agents);
    metrics_gauge_fn(m, "integral_gateway_connections", NULL, "role=\"supervisor\"", read_size,
                     (void *)&st->supervisors);
    metrics_gauge_fn(m, "integral_gateway_connections", NULL, "role=\"unauthenticated\"",
                     read_size, (void *)&st->unauthenticated);
    metrics_gauge_fn(m, "integral_gateway_alerts_sent", "Alerts delivered to agents' sessions.",
                     NULL, read_u64, (void *)&st->alerts_sent);
    metrics_gauge_fn(m, "integral_gateway_screen_pops", "Screen pops sent.", NULL, read_u64,
                     (void *)&st->screen_pops);
    metrics_gauge_fn(m, "integral_gateway_feedback", "Acknowledgements and feedback taken.", NULL,
                     read_u64, (void *)&st->feedback);
    metrics_gauge_fn(m, "integral_gateway_rate_limited", "Client messages refused by the rate limit.",
                     NULL, read_u64, (void *)&st->rate_limited);
    metrics_gauge_fn(m, "integral_gateway_ws_messages_out", "WebSocket messages queued.", NULL,
                     read_u64, (void *)&ws->messages_out);
    metrics_gauge_fn(m, "integral_gateway_ws_bytes_out", "WebSocket bytes written.", NULL,
                     read_u64, (void *)&ws->bytes_out);
    metrics_gauge_fn(m, "integral_gateway_backlog_bytes",
                     "Bytes queued for all authenticated clients, not yet written.", NULL,
                     read_backlog, gw);
    for (int e = 0; e < WS_END_COUNT; e++) {
        char labels[48];
        snprintf(labels, sizeof labels, "how=\"%s\"", ws_end_name((ws_end_t)e));
        metrics_gauge_fn(m, "integral_gateway_sessions_ended",
                         e == 0 ? "WebSocket sessions ended, by how (slow: 1008 slow consumer)."
                                : NULL,
                         labels, read_u64, (void *)&ws->ended[e]);
    }
    metrics_gauge_fn(m, "integral_gateway_consumer_lag",
                     "Alerts and notices not yet consumed.", NULL, read_lag, gw);
}

/* ------------------------------------------------------------------------------------------
 * Start
 * ---------------------------------------------------------------------------------------- */

static void on_redis_state(redis_client_t *c, redis_state_t state, const char *reason,
                           void *data)
{
    if (state == REDIS_STATE_READY)
        log_info("redis: ready");
    else if (reason)
        log_warn("redis: %s (%s)", redis_state_name(state), reason);
}

static void on_delivery(kafka_producer_t *p, rd_kafka_resp_err_t err, void *opaque, void *data)
{
    sessions_on_feedback_delivery(data, opaque, err == RD_KAFKA_RESP_ERR_NO_ERROR);
}

static void set_ws_options(gw_t *gw)
{
    const gateway_config_t *cfg = &gw->cfg;
    gw->ws_opts = (ws_options_t){
        .max_message = (size_t)cfg->max_message_bytes,
        .max_backlog_bytes = (size_t)cfg->max_backlog_bytes,
        .max_backlog_msgs = (unsigned)cfg->max_backlog_messages,
        .ping_interval_ms = (unsigned)cfg->ping_interval_ms,
        .idle_timeout_ms = (unsigned)cfg->idle_timeout_ms,
        .origins = (const char *const *)gw->origins,
        .n_origins = gw->n_origins,
        .subprotocol = "integral.v1",
    };
}

static int start(service_t *svc)
{
    gw_t *gw = &gateway;
    gw->svc = svc;
    gw->loop = &svc->loop;
    gw->keys = (auth_keys_t){(const unsigned char *)gw->cfg.jwt_secret,
                             strlen(gw->cfg.jwt_secret), (unsigned)gw->cfg.jwt_skew_s};
    char err[512];
    if (!gw->origins && parse_origins(gw, gw->cfg.allowed_origins, err, sizeof err) < 0) {
        log_error("%s", err);
        return -1;
    }
    set_ws_options(gw);
    redis_client_options_t ropts = {
        .host = gw->redis_cfg.host,
        .port = (int)gw->redis_cfg.port,
        .command_timeout_ms = (unsigned)gw->redis_cfg.command_timeout_ms,
        .connect_timeout_ms = (unsigned)gw->redis_cfg.connect_timeout_ms,
        .reconnect_max_ms = (unsigned)gw->redis_cfg.reconnect_max_ms,
        .max_pending = (unsigned)gw->redis_cfg.max_pending,
        .on_state = on_redis_state,
        .data = gw,
    };
    if (sessions_init(gw) < 0 || wallboard_start(gw) < 0 ||
        redis_client_new(&gw->redis, gw->loop, &ropts) != 0 ||
        redis_client_add_function_library(gw->redis, gwstore_function_library()) != 0) {
        log_error("cannot set up the sessions or the Redis client");
        return -1;
    }
    if (kafka_producer_new(&gw->producer, gw->loop, &gw->kafka, on_delivery, gw, err,
                           sizeof err) < 0 ||
        feed_start(gw, err, sizeof err) < 0) {
        log_error("%s", err);
        return -1;
    }
    if (api_routes(gw) != 0) {
        log_error("cannot add the HTTP routes");
        return -1;
    }
    register_metrics(gw);
    log_info("gateway %s: WebSocket at /ws, agent desktop at /, wallboard at /supervisor",
             gw->cfg.instance);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Stop: each step's callback starts the next one.
 * ---------------------------------------------------------------------------------------- */

static uv_timer_t drain_timer;
static uint64_t drain_started_ms;

static void on_redis_closed(redis_client_t *c, void *data)
{
    gw_t *gw = data;
    gw->redis = NULL;
    feed_free(gw);
    service_stopped(gw->svc);
}

static void on_producer_closed(void *data)
{
    gw_t *gw = data;
    gw->producer = NULL;
    if (gw->redis)
        redis_client_close(gw->redis, on_redis_closed, gw);
    else
        on_redis_closed(NULL, gw);
}

static void on_consumer_closed(void *data)
{
    gw_t *gw = data;
    gw->consumer = NULL;
    if (gw->producer)
        kafka_producer_close(gw->producer, on_producer_closed, gw);
    else
        on_producer_closed(gw);
}

static void close_consumer(gw_t *gw)
{
    if (gw->consumer)
        kafka_consumer_close(gw->consumer, on_consumer_closed, gw);
    else
        on_consumer_closed(gw);
}

static void on_drain_closed(uv_handle_t *handle)
{
    close_consumer(handle->data);
}

static void on_drain_check(uv_timer_t *timer)
{
    gw_t *gw = timer->data;
    bool expired = uv_now(gw->loop) - drain_started_ms >= (uint64_t)gw->kafka.drain_timeout_ms;
    if (feed_in_flight(gw) > 0 && !expired)
        return;
    uv_timer_stop(timer);
    uv_close((uv_handle_t *)timer, on_drain_closed);
}

static void stop(service_t *svc)
{
    gw_t *gw = &gateway;
    gw->stopping = true;
    feed_hold(gw);
    wallboard_stop(gw);
    drain_started_ms = uv_now(gw->loop);
    uv_timer_init(gw->loop, &drain_timer);
    drain_timer.data = gw;
    uv_timer_start(&drain_timer, on_drain_check, 0, DRAIN_CHECK_MS);
}

static bool ready(service_t *svc, const char **why)
{
    gw_t *gw = &gateway;
    if (!gw->redis || redis_client_state(gw->redis) != REDIS_STATE_READY) {
        *why = "Redis is not ready";
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------------------------------
 * integral-gateway token [--config PATH] --sub ID --role agent|supervisor [--ttl 8h]
 * ---------------------------------------------------------------------------------------- */

static int token_command(int argc, char **argv)
{
    const char *path = NULL;
    char **args = calloc((size_t)argc + 1, sizeof *args);
    int n = 0;
    if (!args)
        return 1;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            path = argv[++i];
        else
            args[n++] = argv[i];
    }
    char err[512];
    int rc = 2;
    bool help = false;
    for (int i = 0; i < n; i++)
        help = help || strcmp(args[i], "--help") == 0;
    if (help) {
        rc = auth_token_command(n, args, &(auth_keys_t){0});
    } else if (config_load(sections, 1, path, err, sizeof err) < 0) {
        fprintf(stderr, "integral-gateway: %s\n", err);
    } else if (auth_check_secret(gateway.cfg.jwt_secret, err, sizeof err) < 0) {
        fprintf(stderr, "integral-gateway: gateway.jwt_secret: %s\n", err);
    } else {
        auth_keys_t keys = {(const unsigned char *)gateway.cfg.jwt_secret,
                            strlen(gateway.cfg.jwt_secret), (unsigned)gateway.cfg.jwt_skew_s};
        rc = auth_token_command(n, args, &keys);
    }
    config_free(sections, 1);
    free(args);
    return rc;
}

static int command(int argc, char **argv)
{
    if (strcmp(argv[0], "token") == 0)
        return token_command(argc, argv);
    fprintf(stderr, "integral-gateway: unknown command \"%s\" (see --help)\n", argv[0]);
    return 2;
}

int main(int argc, char **argv)
{
    static const service_desc_t desc = {
        .name = "gateway",
        .summary = "live alerts to agent desktops and the live queue to supervisors, over "
                   "WebSocket",
        .sections = sections,
        .n_sections = sizeof sections / sizeof sections[0],
        .check_config = check_config,
        .start = start,
        .stop = stop,
        .ready = ready,
        .command = command,
        .command_usage = "\nCommands:\n"
                         "  token [--config PATH] --sub ID --role agent|supervisor [--ttl 8h]\n"
                         "        [--queues q1,q2]   print a signed token (demos and tests)\n",
        .data = &gateway,
    };
    int rc = service_main(argc, argv, &desc);
    sessions_free(&gateway);
    free_origins(&gateway);
    return rc;
}
