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
 *                 [--seed S] [--start-index I] [--linger-ms L] [--tick-ms T] [--ids-out F]
 *                 [--watermarks-out F] [--warmup-topic T]
 */
#include "bench_kafka.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AGENTS 500
#define HOT_SHARE_PERMILLE 100 /* of events that go to the hot customers */
#define HOT_CUSTOMERS_PERMILLE 10 /* of customers that are hot */
#define PARTNER_PERMILLE 20     /* of customers that are partner accounts */

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
        c->channel = (uint8_t)bench_rng_below(sizeof channels / sizeof channels[0]);
        c->queue = (uint8_t)bench_rng_below(sizeof queues / sizeof queues[0]);
        c->reason = (uint8_t)bench_rng_below(sizeof reasons / sizeof reasons[0]);
        c->agent = (uint8_t)bench_rng_below(250);
        c->samples = 0;
        c->stage = CONTACT_QUEUED;
        draft(d, "contact.queued");
        snprintf(d->data, sizeof d->data,
                 "{\"contact_id\":\"k%" PRIu64 "\",\"channel\":\"%s\",\"queue\":\"%s\","
                 "\"reason\":\"%s\"}",
                 c->contact, channels[c->channel], queues[c->queue], reasons[c->reason]);
        return;
    case CONTACT_QUEUED: {
        uint32_t r = bench_rng_below(100);
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
                     c->contact, 30 + bench_rng_below(600));
        } else {
            c->queue = (uint8_t)bench_rng_below(sizeof queues / sizeof queues[0]);
            draft(d, "contact.transferred");
            snprintf(d->data, sizeof d->data,
                     "{\"contact_id\":\"k%" PRIu64 "\",\"to_queue\":\"%s\"}", c->contact,
                     queues[c->queue]);
        }
        return;
    }
    default: { /* active */
        uint32_t r = bench_rng_below(100);
        if (r < 55 && c->samples < 4) {
            c->samples++;
            /* Mostly neutral to positive; one in five clearly negative. */
            int score = bench_rng_below(5) == 0 ? -(int)(500 + bench_rng_below(500))
                                          : (int)bench_rng_below(1400) - 400;
            draft(d, "sentiment.sampled");
            snprintf(d->data, sizeof d->data,
                     "{\"contact_id\":\"k%" PRIu64 "\",\"score\":%s%d.%03d}", c->contact,
                     score < 0 ? "-" : "", abs(score) / 1000, abs(score) % 1000);
        } else if (r < 93) {
            c->stage = CONTACT_NONE;
            draft(d, "contact.ended");
            unsigned duration = 20 + bench_rng_below(1800);
            const char *resolved = bench_rng_below(3) ? "true" : "false";
            if (bench_rng_below(4) == 0)
                snprintf(d->data, sizeof d->data,
                         "{\"contact_id\":\"k%" PRIu64 "\",\"duration_s\":%u,\"resolved\":%s,"
                         "\"wrapup\":\"%s\"}",
                         c->contact, duration, resolved, BENCH_PICK(wrapups));
            else
                snprintf(d->data, sizeof d->data,
                         "{\"contact_id\":\"k%" PRIu64 "\",\"duration_s\":%u,\"resolved\":%s}",
                         c->contact, duration, resolved);
        } else {
            c->stage = CONTACT_ACTIVE;
            draft(d, "contact.transferred");
            snprintf(d->data, sizeof d->data,
                     "{\"contact_id\":\"k%" PRIu64 "\",\"to_agent_id\":\"a-%u\"}", c->contact,
                     bench_rng_below(250));
        }
        return;
    }
    }
}

/* One event for customer c (index: the event's global index, unique across phases). */
static void customer_event(draft_t *d, customer_t *c, uint64_t index)
{
    /* A contact under way goes on most of the time. */
    if (c->stage != CONTACT_NONE && bench_rng_below(100) < 70) {
        contact_event(d, c, index);
        return;
    }
    if (!c->profiled && bench_rng_below(4) == 0) {
        c->profiled = 1;
        draft(d, "customer.profile");
        snprintf(d->data, sizeof d->data,
                 "{\"name\":\"%s %s\",\"segment\":\"%s\",\"language\":\"%s\","
                 "\"since\":\"20%02u-%02u-01\"}",
                 BENCH_PICK(first_names), BENCH_PICK(last_names), BENCH_PICK(segments), BENCH_PICK(languages),
                 10 + bench_rng_below(16), 1 + bench_rng_below(12));
        return;
    }
    uint32_t r = bench_rng_below(100);
    if (r < 22 && c->stage == CONTACT_NONE) {
        contact_event(d, c, index);
    } else if (r < 44) {
        uint32_t page = bench_rng_below(sizeof pages / sizeof pages[0]);
        draft(d, "web.visited");
        if (bench_rng_below(2))
            snprintf(d->data, sizeof d->data, "{\"page\":\"%s\",\"intent\":\"%s\"}", pages[page],
                     strcmp(pages[page], "/account/cancel") == 0 ? "cancel" : BENCH_PICK(intents));
        else
            snprintf(d->data, sizeof d->data, "{\"page\":\"%s\"}", pages[page]);
    } else if (r < 58 || (r < 68 && !c->order)) {
        c->order = index;
        unsigned cents = 1500 + bench_rng_below(40000);
        unsigned margin = cents * (15 + bench_rng_below(30)) / 100;
        draft(d, "order.placed");
        snprintf(d->data, sizeof d->data,
                 "{\"order_id\":\"o%" PRIu64 "\",\"amount\":%u.%02u,\"margin\":%u.%02u,"
                 "\"currency\":\"%s\"}",
                 c->order, cents / 100, cents % 100, margin / 100, margin % 100,
                 BENCH_PICK(currencies));
    } else if (r < 68) {
        draft(d, "order.updated");
        snprintf(d->data, sizeof d->data, "{\"order_id\":\"o%" PRIu64 "\",\"status\":\"%s\"}",
                 c->order, BENCH_PICK(order_status));
    } else if (r < 73) {
        unsigned cents = 500 + bench_rng_below(10000);
        draft(d, "payment.failed");
        snprintf(d->data, sizeof d->data, "{\"amount\":%u.%02u,\"reason\":\"%s\"}", cents / 100,
                 cents % 100, BENCH_PICK(pay_reasons));
    } else if (r < 78) {
        draft(d, "complaint.filed");
        snprintf(d->data, sizeof d->data, "{\"category\":\"%s\",\"severity\":\"%s\"}",
                 BENCH_PICK(categories), BENCH_PICK(severities));
    } else if (r < 86) {
        draft(d, "survey.answered");
        if (bench_rng_below(3))
            snprintf(d->data, sizeof d->data, "{\"csat\":%u,\"nps\":%u}", 1 + bench_rng_below(5),
                     bench_rng_below(11));
        else
            snprintf(d->data, sizeof d->data, "{\"nps\":%u}", bench_rng_below(11));
    } else if (r < 93) {
        draft(d, "subscription.changed");
        const char *action = BENCH_PICK(sub_actions);
        int delta = strcmp(action, "upgraded") == 0     ? (int)(5 + bench_rng_below(50))
                    : strcmp(action, "downgraded") == 0 ? -(int)(5 + bench_rng_below(30))
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
        snprintf(d->data, sizeof d->data, "{\"page\":\"%s\"}", BENCH_PICK(pages));
    }
}

static void agent_event(draft_t *d)
{
    unsigned agent = bench_rng_below(AGENTS);
    snprintf(d->subject, sizeof d->subject, "agent:a-%u", agent);
    draft(d, "agent.state");
    snprintf(d->data, sizeof d->data,
             "{\"agent_id\":\"a-%u\",\"state\":\"%s\",\"queues\":[\"%s\",\"%s\"]}", agent,
             BENCH_PICK(agent_states), BENCH_PICK(queues), BENCH_PICK(queues));
}

/* ------------------------------------------------------------------------------------------
 * Producer
 * ---------------------------------------------------------------------------------------- */

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
            "  --tick-ms T           with --rate: send the events due within each T ms together\n"
            "                        at its end, one wake-up per tick (0: each event on time)\n"
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

typedef struct {
    const char *brokers, *topic, *ids_out, *watermarks_out, *warmup_topic;
    uint64_t count, start_index, seed;
    uint32_t customers;
    double rate;
    int linger_ms, tick_ms;
} options_t;

/* Parses the command line into o: -1 to go on, or the exit status (0 after --help, 2 on bad
 * usage). */
static int parse_options(int argc, char **argv, options_t *o)
{
    *o = (options_t){.topic = "interactions", .count = 100000, .seed = 1, .customers = 10000,
                     .linger_ms = 5};
    static const struct option options[] = {
        {"brokers", required_argument, NULL, 'b'},  {"topic", required_argument, NULL, 't'},
        {"count", required_argument, NULL, 'n'},    {"customers", required_argument, NULL, 'c'},
        {"rate", required_argument, NULL, 'r'},     {"seed", required_argument, NULL, 's'},
        {"start-index", required_argument, NULL, 'i'},
        {"linger-ms", required_argument, NULL, 'l'},  {"tick-ms", required_argument, NULL, 'T'},
        {"ids-out", required_argument, NULL, 'I'},  {"watermarks-out", required_argument, NULL, 'W'},
        {"warmup-topic", required_argument, NULL, 'w'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'b': o->brokers = optarg; break;
        case 't': o->topic = optarg; break;
        case 'n': o->count = strtoull(optarg, NULL, 10); break;
        case 'c': o->customers = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'r': o->rate = strtod(optarg, NULL); break;
        case 's': o->seed = strtoull(optarg, NULL, 10); break;
        case 'i': o->start_index = strtoull(optarg, NULL, 10); break;
        case 'l': o->linger_ms = atoi(optarg); break;
        case 'T': o->tick_ms = atoi(optarg); break;
        case 'I': o->ids_out = optarg; break;
        case 'W': o->watermarks_out = optarg; break;
        case 'w': o->warmup_topic = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!o->brokers || o->customers < 1 || o->rate < 0 || o->linger_ms < 0 ||
        o->tick_ms < 0 || o->tick_ms > 1000) {
        usage(stderr);
        return 2;
    }
    return -1;
}

/* The next event of the stream into d: 1 % agent states, the rest customers' events (hot
 * customers first). */
static void next_event(draft_t *d, customer_t *state, uint32_t customers, uint32_t hot,
                       uint64_t index)
{
    if (bench_rng_below(100) == 0) {
        agent_event(d);
        return;
    }
    uint32_t cust = bench_rng_below(1000) < HOT_SHARE_PERMILLE ? bench_rng_below(hot)
                                                                : bench_rng_below(customers);
    subject_of(cust, customers, d->subject, sizeof d->subject);
    customer_event(d, &state[cust], index);
}

static uint64_t max_partition_bytes(void)
{
    uint64_t max_bytes = 0;
    for (int p = 0; p <= bench_delivery.max_partition; p++)
        if (bench_delivery.bytes[p] > max_bytes)
            max_bytes = bench_delivery.bytes[p];
    return max_bytes;
}

static void print_summary(const bench_run_t *run)
{
    double elapsed = (double)(run->flushed_us - run->first_us) / 1e6;
    printf("produced=%" PRIu64 "\n", run->produced);
    printf("delivered=%" PRIu64 "\n", bench_delivery.delivered);
    printf("failed=%" PRIu64 "\n", bench_delivery.failed);
    printf("value_bytes=%" PRIu64 "\n", run->value_bytes);
    printf("avg_value_bytes=%.1f\n",
           run->produced ? (double)run->value_bytes / (double)run->produced : 0.0);
    printf("max_partition_bytes=%" PRIu64 "\n", max_partition_bytes());
    bench_print_times(run);
    printf("elapsed_s=%.3f\n", elapsed);
    printf("rate_achieved=%.0f\n", elapsed > 0 ? (double)run->produced / elapsed : 0.0);
    bench_print_pacing_and_cpu(run);
    fflush(stdout);
}

/* Produces o->count events; 0, or 1 after a message. */
static int produce_events(rd_kafka_t *rk, const options_t *o, customer_t *state, FILE *ids,
                          bench_run_t *run)
{
    /* One stream per (seed, start index): phases differ, runs repeat. */
    bench_rng_seed(o->seed * 0x2545f4914f6cdd1dULL ^ o->start_index);
    uint32_t hot = o->customers * HOT_CUSTOMERS_PERMILLE / 1000;
    if (hot < 1)
        hot = 1;
    int64_t t0 = bench_mono_ns();
    draft_t d;
    char value[BENCH_EVENT_MAX], when[32], id[64];
    for (uint64_t n = 0; n < o->count && !bench_stop_requested; n++) {
        uint64_t index = o->start_index + n;
        if (o->rate > 0)
            bench_pace(rk, run, t0, n, o->rate, (int64_t)o->tick_ms * 1000000);
        next_event(&d, state, o->customers, hot, index);
        int64_t ts_ms = bench_wall_ms();
        bench_format_time(ts_ms, when);
        snprintf(id, sizeof id, "s%" PRIu64 "-%" PRIu64, o->seed, index);
        int len = bench_format_event(value, id, "/bench", d.type, when, d.subject, d.data);
        if (len < 0 || bench_send(rk, run, o->topic, d.subject, value, len, ts_ms) < 0)
            return 1;
        bench_note_produced(run, bench_wall_us());
        if (ids)
            fprintf(ids, "%s %" PRId64 " %s %s\n", id, ts_ms, d.type, d.subject);
    }
    return 0;
}

int main(int argc, char **argv)
{
    options_t o;
    int status = parse_options(argc, argv, &o);
    if (status >= 0)
        return status;
    bench_kafka_init("bench_produce");
    rd_kafka_t *rk = bench_producer_new(o.brokers, o.linger_ms);
    if (!rk)
        return 1;
    FILE *ids = NULL;
    if (o.ids_out && !(ids = fopen(o.ids_out, "w"))) {
        fprintf(stderr, "bench_produce: %s: %s\n", o.ids_out, strerror(errno));
        return 1;
    }
    bench_install_stop_signals();
    if (o.warmup_topic && bench_producer_warm_up(rk, o.warmup_topic, o.topic) < 0)
        return 1;
    customer_t *state = calloc(o.customers, sizeof *state);
    if (!state) {
        fprintf(stderr, "bench_produce: out of memory\n");
        return 1;
    }
    bench_run_t run = {0};
    if (produce_events(rk, &o, state, ids, &run))
        return 1;
    int rc = bench_producer_flush(rk, &run);
    if (ids)
        fclose(ids);
    if (o.watermarks_out && write_watermarks(rk, o.topic, o.watermarks_out) < 0)
        rc = 1;
    print_summary(&run);
    free(state);
    rd_kafka_destroy(rk);
    return bench_stop_requested ? 130 : rc;
}
