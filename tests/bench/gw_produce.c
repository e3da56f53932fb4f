/* gw_produce - the gateway benchmark's event producer (tests/bench/README.md, "Gateway
 * benchmark"): CloudEvents at a fixed rate, with a known set of events that raise an alert
 * addressed to a connected agent.
 *
 * The stream mixes two populations (--contact-share of the events go to the first):
 *
 *   Contact stories, one fresh customer each (subject s<phase>-<n>): contact.queued,
 *   contact.started with agent_id <prefix><%04u> (agents taken in turn, so every agent gets
 *   stories; the engine's assignment notice makes the gateway pop the customer on that agent's
 *   screen), 1 to 4 sentiment.sampled of which exactly one scores <= -0.5, then contact.ended.
 *   --slots stories run side by side; each contact event advances a random one of them. With
 *   config/rules.json each story raises exactly one alert, negative_sentiment, addressed to the
 *   story's agent: the customer is in a contact with that agent, has one sample <= -0.5 (so the
 *   rule's 300 s cooldown never suppresses one), is tier C (no orders: value <= 0, so neither
 *   at_risk_high_value nor cancel_intent can fire), has one non-repeated contact
 *   (repeat_contact needs 4 support contacts) and no orders (order_problem, rising_value).
 *
 *   Background customers (subject b<n>, a pool of --background-customers shared by all
 *   phases): web visits, orders, failed payments, complaints, surveys, profiles, subscription
 *   changes, and 1 % agent.state. They are never in a contact, so whatever they raise (e.g.
 *   rising_value on a first order) has no agent_id: the gateway holds it for the customer's
 *   next contact, which never comes. They are load for the engine and the gateway, never an
 *   alert on an agent's socket.
 *
 * Every event's id is e<phase>-<index>-<produce unix microseconds>, its "time" and its Kafka
 * timestamp the same instant in milliseconds: the alert carries the triggering event's id, so
 * the WebSocket client (ws_agents) gets the exact production time and the phase from it.
 *
 * Pacing: event n is produced at t0 + n / --rate (absolute schedule, clock_nanosleep). After
 * rate x seconds events, the stories still under way get their contact.ended on the same
 * schedule (at most --slots more events), so that no contact is left open.
 *
 * Output (stdout): key=value lines: counts (produced, delivered, failed, contact events,
 * stories, screen pops expected, alerts expected), first/last produce time (unix us), elapsed,
 * achieved rate, how far behind schedule it fell, own CPU. --expect-out FILE: one line
 * "event_id agent_id" per event that must raise an agent's alert.
 *
 *   gw_produce --brokers B --phase P --rate R --seconds S [--topic interactions]
 *              [--agents 2000] [--agent-prefix A] [--slots 512] [--contact-share 0.6]
 *              [--background-customers 20000] [--seed 1] [--linger-ms 1]
 *              [--expect-out FILE] [--warmup-topic T]
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define EVENT_MAX 1024

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* splitmix64: deterministic from (seed, phase). */
static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint32_t rng_below(uint32_t n)
{
    return (uint32_t)(((rng_next() >> 32) * (uint64_t)n) >> 32);
}

#define PICK(list) list[rng_below((uint32_t)(sizeof list / sizeof list[0]))]

static const char *const channels[] = {"phone", "phone", "phone", "chat", "chat", "email",
                                       "web", "mobile"};
static const char *const queues[] = {"billing", "support", "sales", "retention", "vip",
                                     "technical"};
static const char *const reasons[] = {"support", "technical", "billing", "complaint",
                                      "sales", "info", "upgrade"};
static const char *const pages[] = {"/", "/pricing", "/help/returns", "/account",
                                    "/account/cancel", "/compare", "/order/status", "/support"};
static const char *const intents[] = {"browse", "compare", "support", "cancel", "buy"};
static const char *const currencies[] = {"EUR", "EUR", "EUR", "USD", "GBP"};
static const char *const pay_reasons[] = {"card expired", "insufficient funds", "declined"};
static const char *const categories[] = {"delivery", "billing", "product", "service"};
static const char *const severities[] = {"low", "medium", "medium", "high"};
static const char *const sub_actions[] = {"upgraded", "renewed", "renewed", "downgraded",
                                          "cancel_requested"};
static const char *const segments[] = {"gold", "silver", "bronze", "smb", "enterprise"};
static const char *const languages[] = {"en", "fr", "de", "es", "nl"};
static const char *const first_names[] = {"Ada", "Alan", "Grace", "Linus", "Edsger",
                                          "Barbara", "Ken", "Dennis", "Margaret", "Donald"};
static const char *const last_names[] = {"Lovelace", "Turing", "Hopper", "Torvalds",
                                         "Dijkstra", "Liskov", "Thompson", "Ritchie",
                                         "Hamilton", "Knuth"};
static const char *const agent_states[] = {"available", "busy", "busy", "wrapup", "away"};

typedef struct {
    uint64_t n;          /* story number in this phase: the customer s<phase>-<n> */
    uint32_t agent;
    uint8_t step;        /* 0 queued, 1 started, 2.. samples, then ended */
    uint8_t samples;     /* 1..4 */
    uint8_t negative_at; /* which sample is <= -0.5 */
    uint8_t channel, queue, reason;
    bool live;
} story_t;

typedef struct {
    char subject[64];
    char type[32];
    char data[512];
    char agent[40]; /* set when the event must raise an alert for this agent */
} draft_t;

static struct {
    unsigned phase, agents;
    const char *prefix;
    uint64_t next_story;
    uint32_t next_agent;
    uint64_t stories, contact_events, closing_events, background_events, agent_events, pops;
    uint64_t alerts;
} gen;

static void set(draft_t *d, const char *type)
{
    snprintf(d->type, sizeof d->type, "%s", type);
    d->agent[0] = '\0';
}

static void story_begin(story_t *s)
{
    s->n = gen.next_story++;
    s->agent = gen.next_agent;
    gen.next_agent = (gen.next_agent + 1) % gen.agents;
    s->step = 0;
    s->samples = (uint8_t)(1 + rng_below(4));
    s->negative_at = (uint8_t)rng_below(s->samples);
    s->channel = (uint8_t)rng_below(sizeof channels / sizeof channels[0]);
    s->queue = (uint8_t)rng_below(sizeof queues / sizeof queues[0]);
    s->reason = (uint8_t)rng_below(sizeof reasons / sizeof reasons[0]);
    s->live = true;
    gen.stories++;
}

static void story_end(story_t *s, draft_t *d, const char *contact)
{
    set(d, "contact.ended");
    snprintf(d->data, sizeof d->data,
             "{\"contact_id\":\"%s\",\"duration_s\":%u,\"resolved\":%s}", contact,
             60 + rng_below(900), rng_below(3) ? "true" : "false");
    s->live = false;
}

/* The story's next event; the story ends with its contact.ended. */
static void story_event(story_t *s, draft_t *d)
{
    if (!s->live)
        story_begin(s);
    char contact[48];
    snprintf(d->subject, sizeof d->subject, "s%u-%" PRIu64, gen.phase, s->n);
    snprintf(contact, sizeof contact, "k%u-%" PRIu64, gen.phase, s->n);
    gen.contact_events++;
    if (s->step == 0) {
        set(d, "contact.queued");
        snprintf(d->data, sizeof d->data,
                 "{\"contact_id\":\"%s\",\"channel\":\"%s\",\"queue\":\"%s\",\"reason\":\"%s\"}",
                 contact, channels[s->channel], queues[s->queue], reasons[s->reason]);
    } else if (s->step == 1) {
        set(d, "contact.started");
        snprintf(d->data, sizeof d->data,
                 "{\"contact_id\":\"%s\",\"channel\":\"%s\",\"queue\":\"%s\","
                 "\"agent_id\":\"%s%04u\",\"reason\":\"%s\"}",
                 contact, channels[s->channel], queues[s->queue], gen.prefix, s->agent,
                 reasons[s->reason]);
        gen.pops++;
    } else if (s->step < 2 + s->samples) {
        int sample = s->step - 2;
        /* score in thousandths: the negative one in [-1.000, -0.500], others in
         * [-0.400, 0.999]: well clear of the rule's -0.5 */
        int score = sample == s->negative_at ? -(int)(500 + rng_below(501))
                                             : (int)rng_below(1400) - 400;
        set(d, "sentiment.sampled");
        snprintf(d->data, sizeof d->data, "{\"contact_id\":\"%s\",\"score\":%s%d.%03d}",
                 contact, score < 0 ? "-" : "", abs(score) / 1000, abs(score) % 1000);
        if (sample == s->negative_at) {
            snprintf(d->agent, sizeof d->agent, "%s%04u", gen.prefix, s->agent);
            gen.alerts++;
        }
    } else {
        story_end(s, d, contact);
        return;
    }
    s->step++;
}

/* After the phase's count: every story still under way ends, so that no contact stays open
 * (queued contacts would sit in the engine's timer scan). Returns false when none is left. */
static bool close_next_story(story_t *story, unsigned slots, unsigned *next, draft_t *d)
{
    for (; *next < slots; (*next)++) {
        story_t *s = &story[*next];
        if (!s->live)
            continue;
        char contact[48];
        snprintf(d->subject, sizeof d->subject, "s%u-%" PRIu64, gen.phase, s->n);
        snprintf(contact, sizeof contact, "k%u-%" PRIu64, gen.phase, s->n);
        gen.contact_events++;
        gen.closing_events++;
        story_end(s, d, contact);
        (*next)++;
        return true;
    }
    return false;
}

static void background_event(draft_t *d, uint32_t customers, uint64_t index)
{
    if (rng_below(100) == 0) {
        unsigned agent = rng_below(gen.agents);
        snprintf(d->subject, sizeof d->subject, "agent:%s%04u", gen.prefix, agent);
        set(d, "agent.state");
        snprintf(d->data, sizeof d->data,
                 "{\"agent_id\":\"%s%04u\",\"state\":\"%s\",\"queues\":[\"%s\",\"%s\"]}",
                 gen.prefix, agent, PICK(agent_states), PICK(queues), PICK(queues));
        gen.agent_events++;
        return;
    }
    gen.background_events++;
    snprintf(d->subject, sizeof d->subject, "b%" PRIu32, rng_below(customers));
    uint32_t r = rng_below(100);
    if (r < 35) {
        set(d, "web.visited");
        if (rng_below(2))
            snprintf(d->data, sizeof d->data, "{\"page\":\"%s\",\"intent\":\"%s\"}", PICK(pages),
                     PICK(intents));
        else
            snprintf(d->data, sizeof d->data, "{\"page\":\"%s\"}", PICK(pages));
    } else if (r < 50) {
        unsigned cents = 1500 + rng_below(40000);
        unsigned margin = cents * (15 + rng_below(30)) / 100;
        set(d, "order.placed");
        snprintf(d->data, sizeof d->data,
                 "{\"order_id\":\"o%u-%" PRIu64 "\",\"amount\":%u.%02u,\"margin\":%u.%02u,"
                 "\"currency\":\"%s\"}",
                 gen.phase, index, cents / 100, cents % 100, margin / 100, margin % 100,
                 PICK(currencies));
    } else if (r < 55) {
        unsigned cents = 500 + rng_below(10000);
        set(d, "payment.failed");
        snprintf(d->data, sizeof d->data, "{\"amount\":%u.%02u,\"reason\":\"%s\"}", cents / 100,
                 cents % 100, PICK(pay_reasons));
    } else if (r < 60) {
        set(d, "complaint.filed");
        snprintf(d->data, sizeof d->data, "{\"category\":\"%s\",\"severity\":\"%s\"}",
                 PICK(categories), PICK(severities));
    } else if (r < 75) {
        set(d, "survey.answered");
        snprintf(d->data, sizeof d->data, "{\"csat\":%u,\"nps\":%u}", 1 + rng_below(5),
                 rng_below(11));
    } else if (r < 90) {
        set(d, "customer.profile");
        snprintf(d->data, sizeof d->data,
                 "{\"name\":\"%s %s\",\"segment\":\"%s\",\"language\":\"%s\","
                 "\"since\":\"20%02u-%02u-01\"}",
                 PICK(first_names), PICK(last_names), PICK(segments), PICK(languages),
                 10 + rng_below(16), 1 + rng_below(12));
    } else {
        set(d, "subscription.changed");
        const char *action = PICK(sub_actions);
        int delta = strcmp(action, "upgraded") == 0     ? (int)(5 + rng_below(50))
                    : strcmp(action, "downgraded") == 0 ? -(int)(5 + rng_below(30))
                                                        : 0;
        if (delta)
            snprintf(d->data, sizeof d->data, "{\"action\":\"%s\",\"mrr_delta\":%d}", action,
                     delta);
        else
            snprintf(d->data, sizeof d->data, "{\"action\":\"%s\"}", action);
    }
}

/* ------------------------------------------------------------------------------------------
 * Producer
 * ---------------------------------------------------------------------------------------- */

static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* RFC 3339 UTC with milliseconds; the date-time part is cached per second. */
static void format_time(int64_t ms, char out[32])
{
    static time_t cached_s = -1;
    static char cached[24];
    time_t s = (time_t)(ms / 1000);
    if (s != cached_s) {
        struct tm tm;
        gmtime_r(&s, &tm);
        strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &tm);
        cached_s = s;
    }
    snprintf(out, 32, "%s.%03dZ", cached, (int)(ms % 1000));
}

static struct {
    uint64_t delivered, failed;
    char first_error[256];
} stats;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err) {
        if (!stats.failed)
            snprintf(stats.first_error, sizeof stats.first_error, "%s",
                     rd_kafka_err2str(m->err));
        stats.failed++;
    } else {
        stats.delivered++;
    }
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: gw_produce --brokers LIST --phase P --rate R --seconds S [options]\n"
            "  --topic NAME              event topic (interactions)\n"
            "  --phase P                 1..99: in event ids and story customers' ids\n"
            "  --rate R                  events per second\n"
            "  --seconds S               how long (count = rate x seconds)\n"
            "  --agents N                agents A0000..A<N-1> (2000)\n"
            "  --agent-prefix P          agent id prefix (A)\n"
            "  --slots N                 contact stories under way at once (512)\n"
            "  --contact-share F         share of events that belong to contact stories (0.6)\n"
            "  --background-customers N  pool of customers without contacts (20000)\n"
            "  --seed S                  seed (1)\n"
            "  --linger-ms L             producer linger.ms (1)\n"
            "  --expect-out FILE         'event_id agent_id' per event that must raise an alert\n"
            "  --warmup-topic T          produce and flush one message to T first\n");
}

int main(int argc, char **argv)
{
    const char *brokers = NULL, *topic = "interactions", *expect_out = NULL, *warmup = NULL;
    unsigned phase = 0, slots = 512;
    double rate = 0, seconds = 0, contact_share = 0.6;
    uint32_t background = 20000;
    uint64_t seed = 1;
    int linger_ms = 1;
    gen.agents = 2000;
    gen.prefix = "A";
    static const struct option options[] = {
        {"brokers", required_argument, NULL, 'b'},
        {"topic", required_argument, NULL, 't'},
        {"phase", required_argument, NULL, 'p'},
        {"rate", required_argument, NULL, 'r'},
        {"seconds", required_argument, NULL, 's'},
        {"agents", required_argument, NULL, 'a'},
        {"agent-prefix", required_argument, NULL, 'P'},
        {"slots", required_argument, NULL, 'S'},
        {"contact-share", required_argument, NULL, 'c'},
        {"background-customers", required_argument, NULL, 'B'},
        {"seed", required_argument, NULL, 'e'},
        {"linger-ms", required_argument, NULL, 'l'},
        {"expect-out", required_argument, NULL, 'x'},
        {"warmup-topic", required_argument, NULL, 'w'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'b': brokers = optarg; break;
        case 't': topic = optarg; break;
        case 'p': phase = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'r': rate = strtod(optarg, NULL); break;
        case 's': seconds = strtod(optarg, NULL); break;
        case 'a': gen.agents = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'P': gen.prefix = optarg; break;
        case 'S': slots = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'c': contact_share = strtod(optarg, NULL); break;
        case 'B': background = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'e': seed = strtoull(optarg, NULL, 10); break;
        case 'l': linger_ms = atoi(optarg); break;
        case 'x': expect_out = optarg; break;
        case 'w': warmup = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!brokers || phase > 99 || rate <= 0 || seconds <= 0 || gen.agents < 1 ||
        gen.agents > 10000 || slots < 1 || contact_share < 0 || contact_share > 1 ||
        background < 1 || linger_ms < 0 || strlen(gen.prefix) > 16) {
        usage(stderr);
        return 2;
    }
    gen.phase = phase;
    uint64_t count = (uint64_t)(rate * seconds + 0.5);

    char errstr[512], linger[16];
    snprintf(linger, sizeof linger, "%d", linger_ms);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *pairs[] = {
        "bootstrap.servers", brokers, "linger.ms", linger,
        "queue.buffering.max.messages", "2000000", "queue.buffering.max.kbytes", "2097152",
        "batch.num.messages", "10000", "compression.codec", "none", NULL,
    };
    for (int i = 0; pairs[i]; i += 2) {
        if (rd_kafka_conf_set(conf, pairs[i], pairs[i + 1], errstr, sizeof errstr)) {
            fprintf(stderr, "gw_produce: %s: %s\n", pairs[i], errstr);
            return 2;
        }
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        fprintf(stderr, "gw_produce: %s\n", errstr);
        return 1;
    }
    FILE *expect = NULL;
    if (expect_out && !(expect = fopen(expect_out, "w"))) {
        fprintf(stderr, "gw_produce: %s: %s\n", expect_out, strerror(errno));
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    if (warmup) {
        /* The connection and the event topic's metadata, so that the first events do not
         * carry the producer's start-up. */
        rd_kafka_resp_err_t err = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(warmup), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY("bench-warmup", 12), RD_KAFKA_V_VALUE("warmup", 6), RD_KAFKA_V_END);
        if (!err)
            err = rd_kafka_flush(rk, 30000);
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        if (!err)
            err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
        if (md)
            rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
        if (err || stats.failed) {
            fprintf(stderr, "gw_produce: warm-up to %s: %s\n", warmup,
                    err ? rd_kafka_err2str(err) : stats.first_error);
            return 1;
        }
        stats.delivered = 0;
    }

    story_t *story = calloc(slots, sizeof *story);
    if (!story) {
        fprintf(stderr, "gw_produce: out of memory\n");
        return 1;
    }
    rng_state = seed * 0x2545f4914f6cdd1dULL ^ ((uint64_t)phase << 40);
    uint32_t share_permille = (uint32_t)(contact_share * 1000 + 0.5);

    uint64_t produced = 0, value_bytes = 0, queue_full = 0;
    int64_t first_us = 0, last_us = 0, max_behind_ns = 0;
    int64_t t0 = mono_ns();
    draft_t d;
    char value[EVENT_MAX], when[32];
    unsigned closing = 0;
    for (uint64_t n = 0; !stop_requested; n++) {
        if (n < count) {
            if (rng_below(1000) < share_permille)
                story_event(&story[rng_below(slots)], &d);
            else
                background_event(&d, background, n);
        } else if (!close_next_story(story, slots, &closing, &d)) {
            break;
        }
        int64_t due = t0 + (int64_t)((double)n * 1e9 / rate);
        int64_t now = mono_ns();
        if (now < due) {
            rd_kafka_poll(rk, 0);
            struct timespec ts = {(time_t)(due / 1000000000), (long)(due % 1000000000)};
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR &&
                   !stop_requested)
                ;
        } else if (now - due > max_behind_ns) {
            max_behind_ns = now - due;
        }
        int64_t t_us = wall_us(), ts_ms = t_us / 1000;
        format_time(ts_ms, when);
        char id[64];
        snprintf(id, sizeof id, "e%u-%" PRIu64 "-%" PRId64, phase, n, t_us);
        int len = snprintf(value, sizeof value,
                           "{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"/bench/gateway\","
                           "\"type\":\"%s\",\"time\":\"%s\",\"subject\":\"%s\",\"data\":%s}",
                           id, d.type, when, d.subject, d.data);
        if (len < 0 || len >= (int)sizeof value) {
            fprintf(stderr, "gw_produce: event %" PRIu64 " too long\n", n);
            return 1;
        }
        size_t key_len = strlen(d.subject);
        for (;;) {
            rd_kafka_resp_err_t err = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_KEY(d.subject, key_len), RD_KAFKA_V_VALUE(value, (size_t)len),
                RD_KAFKA_V_TIMESTAMP(ts_ms), RD_KAFKA_V_END);
            if (!err)
                break;
            if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                fprintf(stderr, "gw_produce: produce: %s\n", rd_kafka_err2str(err));
                return 1;
            }
            queue_full++;
            rd_kafka_poll(rk, 1);
        }
        if (!first_us)
            first_us = t_us;
        last_us = t_us;
        produced++;
        value_bytes += (uint64_t)len;
        if (expect && d.agent[0])
            fprintf(expect, "%s %s\n", id, d.agent);
        if ((n & 255) == 0)
            rd_kafka_poll(rk, 0);
    }
    int64_t produced_us = wall_us();
    rd_kafka_resp_err_t ferr = rd_kafka_flush(rk, 120000);
    int64_t flushed_us = wall_us();
    int rc = 0;
    if (expect && fclose(expect) != 0) {
        fprintf(stderr, "gw_produce: %s: %s\n", expect_out, strerror(errno));
        rc = 1;
    }
    if (ferr) {
        fprintf(stderr, "gw_produce: flush: %s (%d left)\n", rd_kafka_err2str(ferr),
                rd_kafka_outq_len(rk));
        rc = 1;
    }
    if (stats.failed) {
        fprintf(stderr, "gw_produce: %" PRIu64 " deliveries failed: %s\n", stats.failed,
                stats.first_error);
        rc = 1;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double elapsed = (double)(last_us - first_us) / 1e6;
    printf("phase=%u\n", phase);
    printf("rate_target=%.0f\n", rate);
    printf("produced=%" PRIu64 "\n", produced);
    printf("delivered=%" PRIu64 "\n", stats.delivered);
    printf("failed=%" PRIu64 "\n", stats.failed);
    printf("contact_events=%" PRIu64 "\n", gen.contact_events);
    printf("background_events=%" PRIu64 "\n", gen.background_events);
    printf("agent_state_events=%" PRIu64 "\n", gen.agent_events);
    printf("closing_events=%" PRIu64 "\n", gen.closing_events);
    printf("stories=%" PRIu64 "\n", gen.stories);
    printf("screen_pops_expected=%" PRIu64 "\n", gen.pops);
    printf("alerts_expected=%" PRIu64 "\n", gen.alerts);
    printf("avg_value_bytes=%.1f\n", produced ? (double)value_bytes / (double)produced : 0.0);
    printf("first_produce_us=%" PRId64 "\n", first_us);
    printf("last_produce_us=%" PRId64 "\n", last_us);
    printf("produce_done_us=%" PRId64 "\n", produced_us);
    printf("flushed_us=%" PRId64 "\n", flushed_us);
    printf("elapsed_s=%.3f\n", elapsed);
    printf("rate_achieved=%.0f\n", elapsed > 0 ? (double)(produced - 1) / elapsed : 0.0);
    printf("max_behind_schedule_ms=%.3f\n", (double)max_behind_ns / 1e6);
    printf("queue_full=%" PRIu64 "\n", queue_full);
    printf("cpu_user_s=%.3f\n", (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6);
    printf("cpu_sys_s=%.3f\n", (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
    fflush(stdout);
    free(story);
    rd_kafka_destroy(rk);
    return stop_requested ? 130 : rc;
}
