/* bench_produce - the engine benchmark's event generator: a fast librdkafka producer of
 * realistic, compact CloudEvents v1 (services/engine/README.md, "Event contract").
 *
 * Events are a deterministic function of (--seed, --start-index, --count, --customers): the
 * same arguments give the same events in the same order (only "time", which is the wall clock
 * at produce, differs between runs). The mix is what a contact center's systems send: contacts
 * (queued, started, sentiment samples, transferred, ended or abandoned, with reasons), orders
 * and their updates, failed payments, complaints, surveys, web visits, subscription changes,
 * profiles, and a few agent states. Customers are drawn with a skew: 1 % of them ("hot") get
 * 10 % of the events, so that some reach a 4th support contact in 30 days and alerts flow.
 *
 * Every event is keyed by its subject (the contract), and its Kafka timestamp (CreateTime) is
 * set explicitly to the same millisecond as its "time" attribute, so that an alert's
 * event_time is also the triggering message's Kafka timestamp.
 *
 * Events are compact (about 195 bytes on average): 1,000,000 of them over 64 partitions stay
 * under the development broker's 5 MiB per partition (shared/notes/kafka-devbroker.md, §5).
 *
 * --warmup-topic T: before the first event, one message (key "bench-warmup") is produced to T
 * and flushed, so that the connection to the broker is up and the first events' timestamps do
 * not include the producer's own start (metadata, connect: up to a second). Use a topic the
 * engine does not consume.
 *
 * Output (stdout): key=value lines (counts, bytes, first/last produce time in unix
 * microseconds, own CPU). --watermarks-out: after the flush, "partition low high" per
 * partition. --ids-out: "event_id kafka_timestamp_ms type subject" per event.
 *
 *   bench_produce --brokers B [--topic interactions] [--count N] [--customers N] [--rate R]
 *                 [--seed S] [--start-index I] [--linger-ms L] [--ids-out F]
 *                 [--watermarks-out F] [--warmup-topic T]
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

#define AGENTS 500
#define PARTITIONS_MAX 4096
#define EVENT_MAX 1024
#define HOT_SHARE_PERMILLE 100 /* of events that go to the hot customers */
#define HOT_CUSTOMERS_PERMILLE 10 /* of customers that are hot */
#define PARTNER_PERMILLE 20     /* of customers that are partner accounts */

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* ------------------------------------------------------------------------------------------
 * Deterministic randomness: splitmix64, one stream for the whole run.
 * ---------------------------------------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, n). */
static uint32_t rng_below(uint32_t n)
{
    return (uint32_t)(((rng_next() >> 32) * (uint64_t)n) >> 32);
}

static const char *pick(const char *const *list, size_t n)
{
    return list[rng_below((uint32_t)n)];
}

#define PICK(list) pick(list, sizeof list / sizeof list[0])

/* ------------------------------------------------------------------------------------------
 * Per-customer generator state: what makes a customer's events a coherent story (a contact is
 * queued, then started, then ended; an order is placed, then updated).
 * ---------------------------------------------------------------------------------------- */

enum { CONTACT_NONE, CONTACT_QUEUED, CONTACT_ACTIVE };

typedef struct {
    uint64_t contact;   /* event index of the current contact's first event */
    uint64_t order;     /* event index of the last order placed, 0: none */
    uint8_t stage;      /* CONTACT_* */
    uint8_t channel, queue, reason, agent;
    uint8_t samples;    /* sentiment samples in the current contact */
    uint8_t profiled;
} customer_t;

static const char *const channels[] = {"phone", "phone", "phone", "chat", "chat", "email",
                                       "web",   "mobile", "store"};
static const char *const queues[] = {"billing", "support", "sales", "retention", "vip",
                                     "technical"};
/* The first four are support reasons in config/model.json. */
static const char *const reasons[] = {"support", "technical", "billing", "complaint",
                                      "sales",   "info",      "upgrade"};
static const char *const currencies[] = {"EUR", "EUR", "EUR", "USD", "GBP"};
static const char *const order_status[] = {"shipped", "shipped", "delivered", "delivered",
                                           "delayed", "cancelled", "returned", "out_of_stock"};
static const char *const pay_reasons[] = {"card expired", "insufficient funds", "declined"};
static const char *const categories[] = {"delivery", "billing", "product", "service", "fraud"};
static const char *const severities[] = {"low", "medium", "medium", "high", "critical"};
static const char *const pages[] = {"/", "/pricing", "/help/returns", "/account",
                                    "/account/cancel", "/compare", "/order/status", "/support"};
static const char *const intents[] = {"browse", "compare", "support", "cancel", "buy"};
static const char *const sub_actions[] = {"upgraded", "renewed", "renewed", "downgraded",
                                          "cancel_requested", "cancelled"};
static const char *const segments[] = {"gold", "silver", "bronze", "smb", "enterprise"};
static const char *const languages[] = {"en", "fr", "de", "es", "nl"};
static const char *const first_names[] = {"Ada", "Alan", "Grace", "Linus", "Edsger", "Barbara",
                                          "Ken", "Dennis", "Margaret", "Donald"};
static const char *const last_names[] = {"Lovelace", "Turing", "Hopper", "Torvalds", "Dijkstra",
                                         "Liskov", "Thompson", "Ritchie", "Hamilton", "Knuth"};
static const char *const agent_states[] = {"available", "busy", "busy", "wrapup", "away",
                                           "offline"};
static const char *const wrapups[] = {"solved", "callback promised", "escalated", "refund"};

/* ------------------------------------------------------------------------------------------
 * Formatting
 * ---------------------------------------------------------------------------------------- */

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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

typedef struct {
    char subject[64];
    char type[32];
    char data[512];
} draft_t;

static void subject_of(uint32_t customer, uint32_t customers, char *out, size_t cap)
{
    /* The last PARTNER_PERMILLE of the id space are partner accounts. */
    if ((uint64_t)customer * 1000 >= (uint64_t)customers * (1000 - PARTNER_PERMILLE))
        snprintf(out, cap, "partner:p%" PRIu32, customer);
    else
        snprintf(out, cap, "c%" PRIu32, customer);
}

static void draft(draft_t *d, const char *type)
{
    snprintf(d->type, sizeof d->type, "%s", type);
}

static void contact_event(draft_t *d, customer_t *c, uint64_t index)
{
    const char *channel = channels[c->channel], *queue = queues[c->queue];
    switch (c->stage) {
    case CONTACT_NONE:
        c->contact = index;
        c->channel = (uint8_t)rng_below(sizeof channels / sizeof channels[0]);
        c->queue = (uint8_t)rng_below(sizeof queues / sizeof queues[0]);
        c->reason = (uint8_t)rng_below(sizeof reasons / sizeof reasons[0]);
        c->agent = (uint8_t)rng_below(250);
        c->samples = 0;
        c->stage = CONTACT_QUEUED;
        draft(d, "contact.queued");
        snprintf(d->data, sizeof d->data,
                 "{\"contact_id\":\"k%" PRIu64 "\",\"channel\":\"%s\",\"queue\":\"%s\","
                 "\"reason\":\"%s\"}",
                 c->contact, channels[c->channel], queues[c->queue], reasons[c->reason]);
        return;
    case CONTACT_QUEUED: {
        uint32_t r = rng_below(100);
        if (r < 85) {
            c->stage = CONTACT_ACTIVE;
            draft(d, "contact.started");
            snprintf(d->data, sizeof d->data,
                     "{\"contact_id\":\"k%" PRIu64 "\",\"channel\":\"%s\",\"queue\":\"%s\","
                     "\"agent_id\":\"a-%u\",\"reason\":\"%s\"}",
                     c->contact, channel, queue, c->agent, reasons[c->reason]);
        } else if (r < 95) {
            c->stage = CONTACT_NONE;
            draft(d, "contact.abandoned");
            snprintf(d->data, sizeof d->data, "{\"contact_id\":\"k%" PRIu64 "\",\"wait_s\":%u}",
                     c->contact, 30 + rng_below(600));
        } else {
            c->queue = (uint8_t)rng_below(sizeof queues / sizeof queues[0]);
            draft(d, "contact.transferred");
            snprintf(d->data, sizeof d->data,
                     "{\"contact_id\":\"k%" PRIu64 "\",\"to_queue\":\"%s\"}", c->contact,
                     queues[c->queue]);
        }
        return;
    }
    default: { /* active */
        uint32_t r = rng_below(100);
        if (r < 55 && c->samples < 4) {
            c->samples++;
            /* Mostly neutral to positive; one in five clearly negative. */
            int score = rng_below(5) == 0 ? -(int)(500 + rng_below(500))
                                          : (int)rng_below(1400) - 400;
            draft(d, "sentiment.sampled");
            snprintf(d->data, sizeof d->data,
                     "{\"contact_id\":\"k%" PRIu64 "\",\"score\":%s%d.%03d}", c->contact,
                     score < 0 ? "-" : "", abs(score) / 1000, abs(score) % 1000);
        } else if (r < 93) {
            c->stage = CONTACT_NONE;
            draft(d, "contact.ended");
            unsigned duration = 20 + rng_below(1800);
            const char *resolved = rng_below(3) ? "true" : "false";
            if (rng_below(4) == 0)
                snprintf(d->data, sizeof d->data,
                         "{\"contact_id\":\"k%" PRIu64 "\",\"duration_s\":%u,\"resolved\":%s,"
                         "\"wrapup\":\"%s\"}",
                         c->contact, duration, resolved, PICK(wrapups));
            else
                snprintf(d->data, sizeof d->data,
                         "{\"contact_id\":\"k%" PRIu64 "\",\"duration_s\":%u,\"resolved\":%s}",
                         c->contact, duration, resolved);
        } else {
            c->stage = CONTACT_ACTIVE;
            draft(d, "contact.transferred");
            snprintf(d->data, sizeof d->data,
                     "{\"contact_id\":\"k%" PRIu64 "\",\"to_agent_id\":\"a-%u\"}", c->contact,
                     rng_below(250));
        }
        return;
    }
    }
}

/* One event for customer c (index: the event's global index, unique across phases). */
static void customer_event(draft_t *d, customer_t *c, uint64_t index)
{
    /* A contact under way goes on most of the time. */
    if (c->stage != CONTACT_NONE && rng_below(100) < 70) {
        contact_event(d, c, index);
        return;
    }
    if (!c->profiled && rng_below(4) == 0) {
        c->profiled = 1;
        draft(d, "customer.profile");
        snprintf(d->data, sizeof d->data,
                 "{\"name\":\"%s %s\",\"segment\":\"%s\",\"language\":\"%s\","
                 "\"since\":\"20%02u-%02u-01\"}",
                 PICK(first_names), PICK(last_names), PICK(segments), PICK(languages),
                 10 + rng_below(16), 1 + rng_below(12));
        return;
    }
    uint32_t r = rng_below(100);
    if (r < 22 && c->stage == CONTACT_NONE) {
        contact_event(d, c, index);
    } else if (r < 44) {
        uint32_t page = rng_below(sizeof pages / sizeof pages[0]);
        draft(d, "web.visited");
        if (rng_below(2))
            snprintf(d->data, sizeof d->data, "{\"page\":\"%s\",\"intent\":\"%s\"}", pages[page],
                     strcmp(pages[page], "/account/cancel") == 0 ? "cancel" : PICK(intents));
        else
            snprintf(d->data, sizeof d->data, "{\"page\":\"%s\"}", pages[page]);
    } else if (r < 58 || (r < 68 && !c->order)) {
        c->order = index;
        unsigned cents = 1500 + rng_below(40000);
        unsigned margin = cents * (15 + rng_below(30)) / 100;
        draft(d, "order.placed");
        snprintf(d->data, sizeof d->data,
                 "{\"order_id\":\"o%" PRIu64 "\",\"amount\":%u.%02u,\"margin\":%u.%02u,"
                 "\"currency\":\"%s\"}",
                 c->order, cents / 100, cents % 100, margin / 100, margin % 100,
                 PICK(currencies));
    } else if (r < 68) {
        draft(d, "order.updated");
        snprintf(d->data, sizeof d->data, "{\"order_id\":\"o%" PRIu64 "\",\"status\":\"%s\"}",
                 c->order, PICK(order_status));
    } else if (r < 73) {
        unsigned cents = 500 + rng_below(10000);
        draft(d, "payment.failed");
        snprintf(d->data, sizeof d->data, "{\"amount\":%u.%02u,\"reason\":\"%s\"}", cents / 100,
                 cents % 100, PICK(pay_reasons));
    } else if (r < 78) {
        draft(d, "complaint.filed");
        snprintf(d->data, sizeof d->data, "{\"category\":\"%s\",\"severity\":\"%s\"}",
                 PICK(categories), PICK(severities));
    } else if (r < 86) {
        draft(d, "survey.answered");
        if (rng_below(3))
            snprintf(d->data, sizeof d->data, "{\"csat\":%u,\"nps\":%u}", 1 + rng_below(5),
                     rng_below(11));
        else
            snprintf(d->data, sizeof d->data, "{\"nps\":%u}", rng_below(11));
    } else if (r < 93) {
        draft(d, "subscription.changed");
        const char *action = PICK(sub_actions);
        int delta = strcmp(action, "upgraded") == 0     ? (int)(5 + rng_below(50))
                    : strcmp(action, "downgraded") == 0 ? -(int)(5 + rng_below(30))
                                                        : 0;
        if (delta)
            snprintf(d->data, sizeof d->data, "{\"action\":\"%s\",\"mrr_delta\":%d}", action,
                     delta);
        else
            snprintf(d->data, sizeof d->data, "{\"action\":\"%s\"}", action);
    } else if (c->stage != CONTACT_NONE) {
        contact_event(d, c, index);
    } else {
        /* A second web visit rather than nothing: keeps every branch an event. */
        draft(d, "web.visited");
        snprintf(d->data, sizeof d->data, "{\"page\":\"%s\"}", PICK(pages));
    }
}

static void agent_event(draft_t *d)
{
    unsigned agent = rng_below(AGENTS);
    snprintf(d->subject, sizeof d->subject, "agent:a-%u", agent);
    draft(d, "agent.state");
    snprintf(d->data, sizeof d->data,
             "{\"agent_id\":\"a-%u\",\"state\":\"%s\",\"queues\":[\"%s\",\"%s\"]}", agent,
             PICK(agent_states), PICK(queues), PICK(queues));
}

/* ------------------------------------------------------------------------------------------
 * Producer
 * ---------------------------------------------------------------------------------------- */

typedef struct {
    uint64_t delivered, failed;
    uint64_t bytes[PARTITIONS_MAX]; /* key + value bytes acknowledged, per partition */
    int32_t max_partition;
    char first_error[256];
} stats_t;

static stats_t stats;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err) {
        if (!stats.failed)
            snprintf(stats.first_error, sizeof stats.first_error, "%s",
                     rd_kafka_err2str(m->err));
        stats.failed++;
        return;
    }
    stats.delivered++;
    if (m->partition >= 0 && m->partition < PARTITIONS_MAX) {
        stats.bytes[m->partition] += m->len + m->key_len;
        if (m->partition > stats.max_partition)
            stats.max_partition = m->partition;
    }
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_produce --brokers LIST [options]\n"
            "  --topic NAME          topic (interactions)\n"
            "  --count N             events to produce (100000)\n"
            "  --customers N         distinct customers (10000)\n"
            "  --rate R              events per second, 0 = as fast as possible (0)\n"
            "  --seed S              seed of the event stream (1)\n"
            "  --start-index I       index of the first event: phases use fresh ids (0)\n"
            "  --linger-ms L         producer linger.ms (5)\n"
            "  --ids-out FILE        write 'event_id kafka_ts_ms type subject' per event\n"
            "  --watermarks-out FILE after the flush, write 'partition low high' per partition\n"
            "  --warmup-topic T      produce and flush one message to T before starting\n");
}

static int write_watermarks(rd_kafka_t *rk, const char *topic, const char *path)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
    rd_kafka_topic_destroy(rkt);
    if (err || md->topic_cnt != 1) {
        fprintf(stderr, "bench_produce: metadata: %s\n", rd_kafka_err2str(err));
        if (md)
            rd_kafka_metadata_destroy(md);
        return -1;
    }
    int n = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "bench_produce: %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    for (int p = 0; p < n; p++) {
        int64_t low = -1, high = -1;
        err = rd_kafka_query_watermark_offsets(rk, topic, p, &low, &high, 10000);
        if (err) {
            fprintf(stderr, "bench_produce: watermarks of %s [%d]: %s\n", topic, p,
                    rd_kafka_err2str(err));
            fclose(f);
            return -1;
        }
        fprintf(f, "%d %" PRId64 " %" PRId64 "\n", p, low, high);
    }
    fclose(f);
    return rename(tmp, path);
}

int main(int argc, char **argv)
{
    const char *brokers = NULL, *topic = "interactions", *ids_out = NULL, *wm_out = NULL;
    const char *warmup_topic = NULL;
    uint64_t count = 100000, start_index = 0, seed = 1;
    uint32_t customers = 10000;
    double rate = 0;
    int linger_ms = 5;
    static const struct option options[] = {
        {"brokers", required_argument, NULL, 'b'},  {"topic", required_argument, NULL, 't'},
        {"count", required_argument, NULL, 'n'},    {"customers", required_argument, NULL, 'c'},
        {"rate", required_argument, NULL, 'r'},     {"seed", required_argument, NULL, 's'},
        {"start-index", required_argument, NULL, 'i'},
        {"linger-ms", required_argument, NULL, 'l'},
        {"ids-out", required_argument, NULL, 'I'},  {"watermarks-out", required_argument, NULL, 'W'},
        {"warmup-topic", required_argument, NULL, 'w'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'b': brokers = optarg; break;
        case 't': topic = optarg; break;
        case 'n': count = strtoull(optarg, NULL, 10); break;
        case 'c': customers = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'r': rate = strtod(optarg, NULL); break;
        case 's': seed = strtoull(optarg, NULL, 10); break;
        case 'i': start_index = strtoull(optarg, NULL, 10); break;
        case 'l': linger_ms = atoi(optarg); break;
        case 'I': ids_out = optarg; break;
        case 'W': wm_out = optarg; break;
        case 'w': warmup_topic = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!brokers || customers < 1 || rate < 0 || linger_ms < 0) {
        usage(stderr);
        return 2;
    }

    char errstr[512], linger[16];
    snprintf(linger, sizeof linger, "%d", linger_ms);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *pairs[] = {
        "bootstrap.servers", brokers,
        "linger.ms", linger,
        "queue.buffering.max.messages", "2000000",
        "queue.buffering.max.kbytes", "2097152",
        "batch.num.messages", "10000",
        "compression.codec", "none",
        NULL,
    };
    for (int i = 0; pairs[i]; i += 2) {
        if (rd_kafka_conf_set(conf, pairs[i], pairs[i + 1], errstr, sizeof errstr)) {
            fprintf(stderr, "bench_produce: %s: %s\n", pairs[i], errstr);
            return 2;
        }
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        fprintf(stderr, "bench_produce: %s\n", errstr);
        return 1;
    }
    FILE *ids = NULL;
    if (ids_out && !(ids = fopen(ids_out, "w"))) {
        fprintf(stderr, "bench_produce: %s: %s\n", ids_out, strerror(errno));
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    if (warmup_topic) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(warmup_topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY("bench-warmup", 12), RD_KAFKA_V_VALUE("warmup", 6), RD_KAFKA_V_END);
        if (!err)
            err = rd_kafka_flush(rk, 30000);
        /* The event topic's metadata too: a producer that has not seen a topic yet holds its
         * first messages until it has the partitions' leaders. */
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        if (!err)
            err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
        if (md)
            rd_kafka_metadata_destroy(md);
        if (err || stats.failed) {
            fprintf(stderr, "bench_produce: warm-up to %s: %s\n", warmup_topic,
                    err ? rd_kafka_err2str(err) : stats.first_error);
            return 1;
        }
        stats = (stats_t){0};
        rd_kafka_topic_destroy(rkt);
    }

    customer_t *state = calloc(customers, sizeof *state);
    if (!state) {
        fprintf(stderr, "bench_produce: out of memory\n");
        return 1;
    }
    /* One stream per (seed, start index): phases differ, runs repeat. */
    rng_state = seed * 0x2545f4914f6cdd1dULL ^ start_index;
    uint32_t hot = customers * HOT_CUSTOMERS_PERMILLE / 1000;
    if (hot < 1)
        hot = 1;

    uint64_t produced = 0, value_bytes = 0, queue_full = 0;
    int64_t first_us = 0, last_us = 0, max_behind_ns = 0;
    int64_t t0 = mono_ns();
    draft_t d;
    char value[EVENT_MAX], when[32];
    for (uint64_t n = 0; n < count && !stop_requested; n++) {
        uint64_t index = start_index + n;
        if (rate > 0) {
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
        }
        if (rng_below(100) == 0) {
            agent_event(&d);
        } else {
            uint32_t cust = rng_below(1000) < HOT_SHARE_PERMILLE ? rng_below(hot)
                                                                  : rng_below(customers);
            subject_of(cust, customers, d.subject, sizeof d.subject);
            customer_event(&d, &state[cust], index);
        }
        int64_t ts_ms = wall_ms();
        format_time(ts_ms, when);
        int len = snprintf(value, sizeof value,
                           "{\"specversion\":\"1.0\",\"id\":\"s%" PRIu64 "-%" PRIu64
                           "\",\"source\":\"/bench\",\"type\":\"%s\",\"time\":\"%s\","
                           "\"subject\":\"%s\",\"data\":%s}",
                           seed, index, d.type, when, d.subject, d.data);
        if (len < 0 || len >= (int)sizeof value) {
            fprintf(stderr, "bench_produce: event %" PRIu64 " too long\n", index);
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
                fprintf(stderr, "bench_produce: produce: %s\n", rd_kafka_err2str(err));
                return 1;
            }
            queue_full++;
            rd_kafka_poll(rk, 1);
        }
        if (!first_us)
            first_us = wall_us();
        last_us = wall_us();
        produced++;
        value_bytes += (uint64_t)len;
        if (ids)
            fprintf(ids, "s%" PRIu64 "-%" PRIu64 " %" PRId64 " %s %s\n", seed, index, ts_ms,
                    d.type, d.subject);
        if ((n & 255) == 0)
            rd_kafka_poll(rk, 0);
    }
    int64_t produced_us = wall_us();
    rd_kafka_resp_err_t ferr = rd_kafka_flush(rk, 120000);
    int64_t flushed_us = wall_us();
    if (ids)
        fclose(ids);
    int rc = 0;
    if (ferr) {
        fprintf(stderr, "bench_produce: flush: %s (%d left)\n", rd_kafka_err2str(ferr),
                rd_kafka_outq_len(rk));
        rc = 1;
    }
    if (stats.failed) {
        fprintf(stderr, "bench_produce: %" PRIu64 " deliveries failed: %s\n", stats.failed,
                stats.first_error);
        rc = 1;
    }
    if (wm_out && write_watermarks(rk, topic, wm_out) < 0)
        rc = 1;
    uint64_t max_bytes = 0;
    for (int p = 0; p <= stats.max_partition; p++)
        if (stats.bytes[p] > max_bytes)
            max_bytes = stats.bytes[p];
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double elapsed = (double)(flushed_us - first_us) / 1e6;
    printf("produced=%" PRIu64 "\n", produced);
    printf("delivered=%" PRIu64 "\n", stats.delivered);
    printf("failed=%" PRIu64 "\n", stats.failed);
    printf("value_bytes=%" PRIu64 "\n", value_bytes);
    printf("avg_value_bytes=%.1f\n", produced ? (double)value_bytes / (double)produced : 0.0);
    printf("max_partition_bytes=%" PRIu64 "\n", max_bytes);
    printf("first_produce_us=%" PRId64 "\n", first_us);
    printf("last_produce_us=%" PRId64 "\n", last_us);
    printf("produce_done_us=%" PRId64 "\n", produced_us);
    printf("flushed_us=%" PRId64 "\n", flushed_us);
    printf("elapsed_s=%.3f\n", elapsed);
    printf("rate_achieved=%.0f\n", elapsed > 0 ? (double)produced / elapsed : 0.0);
    printf("max_behind_schedule_ms=%.3f\n", (double)max_behind_ns / 1e6);
    printf("queue_full=%" PRIu64 "\n", queue_full);
    printf("cpu_user_s=%.3f\n", (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6);
    printf("cpu_sys_s=%.3f\n", (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
    fflush(stdout);
    free(state);
    rd_kafka_destroy(rk);
    return stop_requested ? 130 : rc;
}
