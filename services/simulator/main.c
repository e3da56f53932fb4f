/* integral-sim: a synthetic contact center publishing CloudEvents to Kafka, as a company's
 * telephony, shop, billing, web and speech analytics would (the model: sim.h).
 *
 *   integral-sim [--config PATH] [--seed N] [--speed X] [--rate N] [--count N]
 *
 * --seed, --speed, --rate and --count are the keys sim.seed, sim.speed, sim.rate and
 * sim.count given on the command line (they win over the file and the environment).
 * Modes: by default the simulated contact center runs at sim.speed times real time (after the
 * history, which goes out as fast as Kafka takes it); with --rate N it is driven to produce N
 * events per second, whatever simulated time that takes (load); with --count N it stops after
 * N events were acknowledged by Kafka. */
#include "sim.h"

#include "kafka_uv.h"
#include "log.h"
#include "service.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TICK_MS 10
#define MAX_OUTSTANDING 50000 /* produced but not yet acknowledged: past it, wait */
#define MAX_PER_TICK 20000

typedef struct {
    char *topic;
    long seed;
    double speed;
    long rate;
    long count;
    long customers;
    long partners;
    long agents;
    char *queues;
    long history_days;
    double contacts_per_hour;
    long start_hour;
} sim_settings_t;

static struct {
    service_t *svc;
    sim_settings_t cfg;
    kafka_config_t kafka;
    kafka_producer_t *producer;
    sim_t *sim;
    uv_timer_t tick;
    bool ticking;
    uint64_t started_wall;
    int64_t start_ms;
    uint64_t last_tick;
    double budget; /* rate mode: events owed */
    uint64_t produced, delivered, failed;
    bool done;
    uint64_t last_report;
} app;

static const config_key_t sim_keys[] = {
    {"sim.topic", CONFIG_STRING, offsetof(sim_settings_t, topic), "interactions", 1, 249, NULL,
     "Topic the events go to (key = subject)."},
    {"sim.seed", CONFIG_INT, offsetof(sim_settings_t, seed), "1", 0, 9.0e15, NULL,
     "Random seed: the same seed produces the same events (ids, subjects, data) in the same "
     "order; only the live events' times follow the clock."},
    {"sim.speed", CONFIG_DOUBLE, offsetof(sim_settings_t, speed), "10", 1, 100, NULL,
     "Time compression of the live part: simulated seconds per real second (1 = real time)."},
    {"sim.rate", CONFIG_INT, offsetof(sim_settings_t, rate), "0", 0, 1000000, NULL,
     "0: run at sim.speed. N: produce N events per second, however fast simulated time must "
     "go for it (load tests)."},
    {"sim.count", CONFIG_INT, offsetof(sim_settings_t, count), "0", 0, 1.0e12, NULL,
     "Stop after this many events were acknowledged by Kafka (0: run until stopped)."},
    {"sim.customers", CONFIG_INT, offsetof(sim_settings_t, customers), "2000", 1, 10000000, NULL,
     "Customers (ids c-00001, ...)."},
    {"sim.partners", CONFIG_INT, offsetof(sim_settings_t, partners), "10", 0, 100000, NULL,
     "Partner accounts (subjects partner:P001, ...): few, large orders."},
    {"sim.agents", CONFIG_INT, offsetof(sim_settings_t, agents), "8", 1, 9999, NULL,
     "Agents (ids A001, A002, ..., A999, A1000, ...), each serving one or two queues."},
    {"sim.queues", CONFIG_STRING, offsetof(sim_settings_t, queues),
     "support,billing,sales,retention", 1, 512, NULL,
     "Queues, comma-separated (at most 16). Reasons go to the queue of that name when there "
     "is one: billing, support (and technical), sales, retention (complaints, cancels)."},
    {"sim.history_days", CONFIG_INT, offsetof(sim_settings_t, history_days), "60", 0, 730, NULL,
     "Days of past orders and contacts sent first, with their past times, so that customers "
     "have a value and a history from the first minute."},
    {"sim.contacts_per_hour", CONFIG_DOUBLE, offsetof(sim_settings_t, contacts_per_hour), "160",
     0.1, 10000000, NULL, "Contacts arriving per simulated hour at the day's peak."},
    {"sim.start_hour", CONFIG_INT, offsetof(sim_settings_t, start_hour), "10", 0, 23, NULL,
     "The hour of the simulated day the live part starts at (arrivals follow the hour: the "
     "morning peak by default, so that a demo is busy at once)."},
};

static const config_section_t sections[] = {
    CONFIG_SECTION(sim_keys, &app.cfg),
    KAFKA_CONFIG_SECTION(&app.kafka),
};

static int parse_queues(const char *list, sim_config_t *c, char *err, size_t errlen)
{
    c->n_queues = 0;
    const char *p = list;
    while (*p) {
        size_t n = strcspn(p, ",");
        if (n == 0 || n >= sizeof c->queues[0] || c->n_queues == SIM_QUEUES_MAX) {
            snprintf(err, errlen, "sim.queues: \"%s\" is not 1..16 names of 1..31 characters",
                     list);
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            char ch = p[i];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                  ch == '-' || ch == '_' || ch == '.')) {
                snprintf(err, errlen, "sim.queues: \"%.*s\" has a character other than "
                                      "[A-Za-z0-9._-]", (int)n, p);
                return -1;
            }
        }
        snprintf(c->queues[c->n_queues++], sizeof c->queues[0], "%.*s", (int)n, p);
        p += n + (p[n] == ',');
    }
    return 0;
}

static int model_config(sim_config_t *c, char *err, size_t errlen)
{
    *c = (sim_config_t){
        .seed = (uint64_t)app.cfg.seed,
        .customers = (int)app.cfg.customers,
        .partners = (int)app.cfg.partners,
        .agents = (int)app.cfg.agents,
        .history_days = (int)app.cfg.history_days,
        .contacts_per_hour = app.cfg.contacts_per_hour,
        .start_hour = (int)app.cfg.start_hour,
    };
    return parse_queues(app.cfg.queues, c, err, errlen);
}

static int check_config(char *err, size_t errlen)
{
    sim_config_t c;
    return model_config(&c, err, errlen);
}

/* ------------------------------------------------------------------------------------------
 * Producing
 * ---------------------------------------------------------------------------------------- */

static int64_t wall_ms(void)
{
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void finish_if_done(void)
{
    if (app.done && app.delivered + app.failed >= app.produced && !app.svc->stopping) {
        log_info("sim: %llu events produced and acknowledged; stopping",
                 (unsigned long long)app.delivered);
        raise(SIGTERM); /* the service's own graceful stop */
    }
}

static void on_delivery(kafka_producer_t *p, rd_kafka_resp_err_t err, void *opaque, void *data)
{
    if (err) {
        if (app.failed++ == 0)
            log_error("sim: an event was not delivered: %s", rd_kafka_err2str(err));
    } else {
        app.delivered++;
    }
    finish_if_done();
}

/* How many events this tick may produce. */
static long tick_budget(uint64_t now)
{
    long outstanding = (long)(app.produced - app.delivered - app.failed);
    long room = MAX_OUTSTANDING - outstanding;
    if (room <= 0)
        return 0;
    long n = MAX_PER_TICK;
    if (app.cfg.rate > 0) {
        app.budget += (double)app.cfg.rate * (double)(now - app.last_tick) / 1000.0;
        if (app.budget > app.cfg.rate) /* after a stall, no burst beyond one second's worth */
            app.budget = (double)app.cfg.rate;
        n = (long)app.budget;
    }
    if (app.cfg.count > 0 && (long)(app.cfg.count - (long)app.produced) < n)
        n = app.cfg.count - (long)app.produced;
    return n < room ? n : room;
}

static void on_tick(uv_timer_t *t)
{
    uint64_t now = uv_now(t->loop);
    long n = tick_budget(now);
    app.last_tick = now;
    int64_t wall = wall_ms();
    /* Simulated time: as far as the speed allows (rate mode: as far as needed). */
    int64_t until = app.cfg.rate > 0
                        ? INT64_MAX
                        : app.start_ms + (int64_t)((double)(now - app.started_wall) * app.cfg.speed);
    sim_event_t ev;
    long sent = 0;
    while (sent < n && sim_next(app.sim, until, wall, &ev)) {
        rd_kafka_resp_err_t err =
            kafka_producer_send(app.producer, app.cfg.topic, RD_KAFKA_PARTITION_UA, ev.key,
                                strlen(ev.key), ev.json, ev.len, NULL, NULL);
        if (err) {
            log_warn("sim: Kafka refused an event (%s); it is dropped", rd_kafka_err2str(err));
            app.failed++;
        }
        app.produced++;
        sent++;
    }
    if (app.cfg.rate > 0)
        app.budget -= (double)sent;
    if (now - app.last_report >= 10000) {
        const sim_stats_t *st = sim_stats(app.sim);
        log_info("sim: %llu events (%llu history); simulated time +%.1f min; contacts %llu, "
                 "answered %llu, abandoned %llu",
                 (unsigned long long)app.produced, (unsigned long long)st->history_events,
                 (double)(sim_next_due(app.sim) - app.start_ms) / 60000.0,
                 (unsigned long long)st->contacts, (unsigned long long)st->answered,
                 (unsigned long long)st->abandoned);
        app.last_report = now;
    }
    if (app.cfg.count > 0 && (long)app.produced >= app.cfg.count && !app.done) {
        app.done = true;
        uv_timer_stop(t);
        finish_if_done();
    }
}

/* ------------------------------------------------------------------------------------------
 * Lifecycle
 * ---------------------------------------------------------------------------------------- */

static double read_u64(void *ctx)
{
    return (double)*(const uint64_t *)ctx;
}

static void register_metrics(metrics_t *m)
{
    const sim_stats_t *st = sim_stats(app.sim);
    metrics_gauge_fn(m, "integral_sim_events", "Events produced.", NULL, read_u64, &app.produced);
    metrics_gauge_fn(m, "integral_sim_events_delivered", "Events acknowledged by Kafka.", NULL,
                     read_u64, &app.delivered);
    metrics_gauge_fn(m, "integral_sim_events_failed", "Events Kafka did not take.", NULL,
                     read_u64, &app.failed);
    metrics_gauge_fn(m, "integral_sim_history_events", "Past events replayed first.", NULL,
                     read_u64, (void *)&st->history_events);
    metrics_gauge_fn(m, "integral_sim_contacts", "Contacts simulated.", NULL, read_u64,
                     (void *)&st->contacts);
    metrics_gauge_fn(m, "integral_sim_contacts_answered", "Contacts answered and ended.", NULL,
                     read_u64, (void *)&st->answered);
    metrics_gauge_fn(m, "integral_sim_contacts_abandoned", "Contacts abandoned in a queue.",
                     NULL, read_u64, (void *)&st->abandoned);
}

static int start(service_t *svc)
{
    char err[512];
    sim_config_t model;
    app.svc = svc;
    if (model_config(&model, err, sizeof err) < 0) {
        log_error("%s", err);
        return -1;
    }
    app.start_ms = wall_ms();
    if (!(app.sim = sim_new(&model, app.start_ms))) {
        log_error("sim: cannot create the simulation");
        return -1;
    }
    if (kafka_producer_new(&app.producer, &svc->loop, &app.kafka, on_delivery, NULL, err,
                           sizeof err) < 0) {
        log_error("%s", err);
        return -1;
    }
    register_metrics(svc->metrics);
    app.started_wall = app.last_tick = uv_now(&svc->loop);
    uv_timer_init(&svc->loop, &app.tick);
    app.ticking = true;
    uv_timer_start(&app.tick, on_tick, 0, TICK_MS);
    log_info("sim: seed %ld, %ld customers, %ld partners, %ld agents, %ld days of history; %s",
             app.cfg.seed, app.cfg.customers, app.cfg.partners, app.cfg.agents,
             app.cfg.history_days, app.cfg.rate > 0 ? "rate mode" : "simulated pace");
    return 0;
}

static void on_producer_closed(void *data)
{
    app.producer = NULL;
    sim_free(app.sim);
    app.sim = NULL;
    service_stopped(app.svc);
}

static void on_tick_closed(uv_handle_t *h)
{
    if (app.producer)
        kafka_producer_close(app.producer, on_producer_closed, NULL);
    else
        on_producer_closed(NULL);
}

static void stop(service_t *svc)
{
    if (app.ticking) {
        app.ticking = false;
        uv_close((uv_handle_t *)&app.tick, on_tick_closed);
    } else {
        on_tick_closed(NULL);
    }
}

static bool ready(service_t *svc, const char **why)
{
    if (!app.producer) {
        *why = "starting";
        return false;
    }
    return true;
}

/* --seed N and friends become the keys' environment overrides, which config_load reads
 * after the file: so the command line wins. */
static int take_flags(int *argc, char **argv)
{
    static const char *const flags[][2] = {{"--seed", "INTEGRAL_SIM_SEED"},
                                           {"--speed", "INTEGRAL_SIM_SPEED"},
                                           {"--rate", "INTEGRAL_SIM_RATE"},
                                           {"--count", "INTEGRAL_SIM_COUNT"}};
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        size_t f = 0;
        while (f < sizeof flags / sizeof flags[0] && strcmp(argv[i], flags[f][0]) != 0)
            f++;
        if (f == sizeof flags / sizeof flags[0]) {
            argv[out++] = argv[i];
            continue;
        }
        if (i + 1 >= *argc) {
            fprintf(stderr, "integral-sim: %s needs a value\n", argv[i]);
            return -1;
        }
        setenv(flags[f][1], argv[++i], 1);
    }
    argv[out] = NULL;
    *argc = out;
    return 0;
}

int main(int argc, char **argv)
{
    static const service_desc_t desc = {
        .name = "sim",
        .summary = "a synthetic contact center publishing interaction events to Kafka",
        .sections = sections,
        .n_sections = sizeof sections / sizeof sections[0],
        .check_config = check_config,
        .start = start,
        .stop = stop,
        .ready = ready,
        .command_usage = "\nSimulation flags (the keys sim.seed, sim.speed, sim.rate, sim.count):\n"
                         "  --seed N    the same seed, the same events\n"
                         "  --speed X   simulated seconds per real second, 1..100\n"
                         "  --rate N    hold N events per second (load), whatever the speed\n"
                         "  --count N   stop after N events were acknowledged by Kafka\n",
    };
    if (take_flags(&argc, argv) < 0)
        return 2;
    return service_main(argc, argv, &desc);
}
