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
#include "bench_kafka.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    s->samples = (uint8_t)(1 + bench_rng_below(4));
    s->negative_at = (uint8_t)bench_rng_below(s->samples);
    s->channel = (uint8_t)bench_rng_below(sizeof channels / sizeof channels[0]);
    s->queue = (uint8_t)bench_rng_below(sizeof queues / sizeof queues[0]);
    s->reason = (uint8_t)bench_rng_below(sizeof reasons / sizeof reasons[0]);
    s->live = true;
    gen.stories++;
}

static void story_end(story_t *s, draft_t *d, const char *contact)
{
    set(d, "contact.ended");
    snprintf(d->data, sizeof d->data,
             "{\"contact_id\":\"%s\",\"duration_s\":%u,\"resolved\":%s}", contact,
             60 + bench_rng_below(900), bench_rng_below(3) ? "true" : "false");
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
        int score = sample == s->negative_at ? -(int)(500 + bench_rng_below(501))
                                             : (int)bench_rng_below(1400) - 400;
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
    if (bench_rng_below(100) == 0) {
        unsigned agent = bench_rng_below(gen.agents);
        snprintf(d->subject, sizeof d->subject, "agent:%s%04u", gen.prefix, agent);
        set(d, "agent.state");
        snprintf(d->data, sizeof d->data,
                 "{\"agent_id\":\"%s%04u\",\"state\":\"%s\",\"queues\":[\"%s\",\"%s\"]}",
                 gen.prefix, agent, BENCH_PICK(agent_states), BENCH_PICK(queues), BENCH_PICK(queues));
        gen.agent_events++;
        return;
    }
    gen.background_events++;
    snprintf(d->subject, sizeof d->subject, "b%" PRIu32, bench_rng_below(customers));
    uint32_t r = bench_rng_below(100);
    if (r < 35) {
        set(d, "web.visited");
        if (bench_rng_below(2))
            snprintf(d->data, sizeof d->data, "{\"page\":\"%s\",\"intent\":\"%s\"}", BENCH_PICK(pages),
                     BENCH_PICK(intents));
        else
            snprintf(d->data, sizeof d->data, "{\"page\":\"%s\"}", BENCH_PICK(pages));
    } else if (r < 50) {
        unsigned cents = 1500 + bench_rng_below(40000);
        unsigned margin = cents * (15 + bench_rng_below(30)) / 100;
        set(d, "order.placed");
        snprintf(d->data, sizeof d->data,
                 "{\"order_id\":\"o%u-%" PRIu64 "\",\"amount\":%u.%02u,\"margin\":%u.%02u,"
                 "\"currency\":\"%s\"}",
                 gen.phase, index, cents / 100, cents % 100, margin / 100, margin % 100,
                 BENCH_PICK(currencies));
    } else if (r < 55) {
        unsigned cents = 500 + bench_rng_below(10000);
        set(d, "payment.failed");
        snprintf(d->data, sizeof d->data, "{\"amount\":%u.%02u,\"reason\":\"%s\"}", cents / 100,
                 cents % 100, BENCH_PICK(pay_reasons));
    } else if (r < 60) {
        set(d, "complaint.filed");
        snprintf(d->data, sizeof d->data, "{\"category\":\"%s\",\"severity\":\"%s\"}",
                 BENCH_PICK(categories), BENCH_PICK(severities));
    } else if (r < 75) {
        set(d, "survey.answered");
        snprintf(d->data, sizeof d->data, "{\"csat\":%u,\"nps\":%u}", 1 + bench_rng_below(5),
                 bench_rng_below(11));
    } else if (r < 90) {
        set(d, "customer.profile");
        snprintf(d->data, sizeof d->data,
                 "{\"name\":\"%s %s\",\"segment\":\"%s\",\"language\":\"%s\","
                 "\"since\":\"20%02u-%02u-01\"}",
                 BENCH_PICK(first_names), BENCH_PICK(last_names), BENCH_PICK(segments), BENCH_PICK(languages),
                 10 + bench_rng_below(16), 1 + bench_rng_below(12));
    } else {
        set(d, "subscription.changed");
        const char *action = BENCH_PICK(sub_actions);
        int delta = strcmp(action, "upgraded") == 0     ? (int)(5 + bench_rng_below(50))
                    : strcmp(action, "downgraded") == 0 ? -(int)(5 + bench_rng_below(30))
                                                        : 0;
        if (delta)
            snprintf(d->data, sizeof d->data, "{\"action\":\"%s\",\"mrr_delta\":%d}", action,
                     delta);
        else
            snprintf(d->data, sizeof d->data, "{\"action\":\"%s\"}", action);
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

typedef struct {
    const char *brokers, *topic, *expect_out, *warmup_topic;
    unsigned phase, slots;
    double rate, seconds, contact_share;
    uint32_t background;
    uint64_t seed;
    int linger_ms;
} options_t;

/* Parses the command line into o (and gen's agents and prefix): -1 to go on, or the exit
 * status (0 after --help, 2 on bad usage). */
static int parse_options(int argc, char **argv, options_t *o)
{
    *o = (options_t){.topic = "interactions", .slots = 512, .contact_share = 0.6,
                     .background = 20000, .seed = 1, .linger_ms = 1};
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
        case 'b': o->brokers = optarg; break;
        case 't': o->topic = optarg; break;
        case 'p': o->phase = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'r': o->rate = strtod(optarg, NULL); break;
        case 's': o->seconds = strtod(optarg, NULL); break;
        case 'a': gen.agents = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'P': gen.prefix = optarg; break;
        case 'S': o->slots = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'c': o->contact_share = strtod(optarg, NULL); break;
        case 'B': o->background = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'e': o->seed = strtoull(optarg, NULL, 10); break;
        case 'l': o->linger_ms = atoi(optarg); break;
        case 'x': o->expect_out = optarg; break;
        case 'w': o->warmup_topic = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!o->brokers || o->phase > 99 || o->rate <= 0 || o->seconds <= 0 || gen.agents < 1 ||
        gen.agents > 10000 || o->slots < 1 || o->contact_share < 0 || o->contact_share > 1 ||
        o->background < 1 || o->linger_ms < 0 || strlen(gen.prefix) > 16) {
        usage(stderr);
        return 2;
    }
    gen.phase = o->phase;
    return -1;
}

/* Event n of the phase into d: a story's or a background customer's while n < count, then the
 * stories' closing events. false when there is none left. */
static bool next_event(draft_t *d, const options_t *o, story_t *story, uint64_t n,
                       uint64_t count, uint32_t share_permille, unsigned *closing)
{
    if (n >= count)
        return close_next_story(story, o->slots, closing, d);
    if (bench_rng_below(1000) < share_permille)
        story_event(&story[bench_rng_below(o->slots)], d);
    else
        background_event(d, o->background, n);
    return true;
}

/* Produces the phase's events on schedule; 0, or 1 after a message. */
static int produce_events(rd_kafka_t *rk, const options_t *o, story_t *story, FILE *expect,
                          bench_run_t *run)
{
    bench_rng_seed(o->seed * 0x2545f4914f6cdd1dULL ^ ((uint64_t)o->phase << 40));
    uint32_t share_permille = (uint32_t)(o->contact_share * 1000 + 0.5);
    uint64_t count = (uint64_t)(o->rate * o->seconds + 0.5);
    int64_t t0 = bench_mono_ns();
    draft_t d;
    char value[BENCH_EVENT_MAX], when[32], id[64];
    unsigned closing = 0;
    for (uint64_t n = 0; !bench_stop_requested; n++) {
        if (!next_event(&d, o, story, n, count, share_permille, &closing))
            break;
        bench_pace(rk, run, t0, n, o->rate, 0);
        int64_t t_us = bench_wall_us(), ts_ms = t_us / 1000;
        bench_format_time(ts_ms, when);
        snprintf(id, sizeof id, "e%u-%" PRIu64 "-%" PRId64, o->phase, n, t_us);
        int len = bench_format_event(value, id, "/bench/gateway", d.type, when, d.subject,
                                     d.data);
        if (len < 0 || bench_send(rk, run, o->topic, d.subject, value, len, ts_ms) < 0)
            return 1;
        bench_note_produced(run, t_us);
        if (expect && d.agent[0])
            fprintf(expect, "%s %s\n", id, d.agent);
    }
    return 0;
}

static void print_summary(const options_t *o, const bench_run_t *run)
{
    double elapsed = (double)(run->last_us - run->first_us) / 1e6;
    printf("phase=%u\n", o->phase);
    printf("rate_target=%.0f\n", o->rate);
    printf("produced=%" PRIu64 "\n", run->produced);
    printf("delivered=%" PRIu64 "\n", bench_delivery.delivered);
    printf("failed=%" PRIu64 "\n", bench_delivery.failed);
    printf("contact_events=%" PRIu64 "\n", gen.contact_events);
    printf("background_events=%" PRIu64 "\n", gen.background_events);
    printf("agent_state_events=%" PRIu64 "\n", gen.agent_events);
    printf("closing_events=%" PRIu64 "\n", gen.closing_events);
    printf("stories=%" PRIu64 "\n", gen.stories);
    printf("screen_pops_expected=%" PRIu64 "\n", gen.pops);
    printf("alerts_expected=%" PRIu64 "\n", gen.alerts);
    printf("avg_value_bytes=%.1f\n",
           run->produced ? (double)run->value_bytes / (double)run->produced : 0.0);
    bench_print_times(run);
    printf("elapsed_s=%.3f\n", elapsed);
    printf("rate_achieved=%.0f\n",
           elapsed > 0 ? (double)(run->produced - 1) / elapsed : 0.0);
    bench_print_pacing_and_cpu(run);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    options_t o;
    int status = parse_options(argc, argv, &o);
    if (status >= 0)
        return status;
    bench_kafka_init("gw_produce");
    rd_kafka_t *rk = bench_producer_new(o.brokers, o.linger_ms);
    if (!rk)
        return 1;
    FILE *expect = NULL;
    if (o.expect_out && !(expect = fopen(o.expect_out, "w"))) {
        fprintf(stderr, "gw_produce: %s: %s\n", o.expect_out, strerror(errno));
        return 1;
    }
    bench_install_stop_signals();
    if (o.warmup_topic && bench_producer_warm_up(rk, o.warmup_topic, o.topic) < 0)
        return 1;
    story_t *story = calloc(o.slots, sizeof *story);
    if (!story) {
        fprintf(stderr, "gw_produce: out of memory\n");
        return 1;
    }
    bench_run_t run = {0};
    if (produce_events(rk, &o, story, expect, &run))
        return 1;
    int rc = bench_producer_flush(rk, &run);
    if (expect && fclose(expect) != 0) {
        fprintf(stderr, "gw_produce: %s: %s\n", o.expect_out, strerror(errno));
        rc = 1;
    }
    print_summary(&o, &run);
    free(story);
    rd_kafka_destroy(rk);
    return bench_stop_requested ? 130 : rc;
}
