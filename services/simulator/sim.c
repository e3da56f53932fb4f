/* sim.c - the synthetic contact center. See sim.h.
 *
 * One heap of actions ordered by simulated time (ties broken by insertion order, so a seed
 * always replays the same way). An action may emit events into a small output queue, from
 * which sim_next hands them out one at a time. All randomness comes from one xoshiro256**
 * generator seeded with splitmix64. */
#include "sim.h"

#include "jsonw.h"
#include "timefmt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MINUTE_MS INT64_C(60000)
#define HOUR_MS (60 * MINUTE_MS)
#define DAY_MS (24 * HOUR_MS)
#define OUT_MAX 8

/* ------------------------------------------------------------------------------------------
 * Randomness
 * ---------------------------------------------------------------------------------------- */

typedef struct {
    uint64_t s[4];
} rng_t;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void rng_seed(rng_t *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(rng_t *r)
{
    uint64_t *s = r->s, result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1). */
static double unit(rng_t *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

static bool chance(rng_t *r, double p)
{
    return unit(r) < p;
}

static int below(rng_t *r, int n)
{
    return (int)(unit(r) * n);
}

static double between(rng_t *r, double lo, double hi)
{
    return lo + (hi - lo) * unit(r);
}

/* Exponentially distributed with the given mean. */
static double exponential(rng_t *r, double mean)
{
    return -mean * log(1.0 - unit(r));
}

static double normal(rng_t *r, double mean, double sd)
{
    double u = 1.0 - unit(r), v = unit(r);
    return mean + sd * sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

static double clamp(double x, double lo, double hi)
{
    return x < lo ? lo : x > hi ? hi : x;
}

/* ------------------------------------------------------------------------------------------
 * The world
 * ---------------------------------------------------------------------------------------- */

enum { SEG_LOW, SEG_MID, SEG_HIGH, SEG_PARTNER };

static const char *const channels[] = {"phone", "chat", "email", "web", "mobile",
                                       "store", "kiosk", "fax", "field"};
/* How often each channel is somebody's favourite (the last ones are rare). */
static const double channel_weights[] = {30, 25, 15, 12, 12, 3, 1.5, 0.5, 1};
#define N_CHANNELS (int)(sizeof channels / sizeof channels[0])

static const char *const first_names[] = {
    "Ada", "Alan", "Grace", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances", "Edsger",
    "Radia", "Donald", "Hedy", "Tim", "Katherine", "Niklaus", "Joan", "Bjarne", "Sophie", "John",
    "Mary", "Leslie", "Karen", "Guido", "Anita", "Yukihiro", "Shafi", "Whitfield", "Lynn", "Ivan"};
static const char *const last_names[] = {
    "Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Thompson",
    "Allen", "Dijkstra", "Perlman", "Knuth", "Lamarr", "Berners-Lee", "Johnson", "Wirth",
    "Clarke", "Stroustrup", "Wilson", "Backus", "Keller", "Lamport", "Jones", "van Rossum",
    "Borg", "Matsumoto", "Goldwasser", "Diffie", "Conway", "Sutherland"};
static const char *const languages[] = {"en", "de", "fr", "es", "it"};

typedef struct {
    char id[24];
    char name[64];
    int segment;
    double churn;    /* propensity: how often things go wrong, how badly it is taken */
    double mood;     /* 0 calm .. 1 furious: grows with bad experiences, fades */
    int channel;     /* preferred */
    bool rising;     /* will buy more and more: a less valuable customer becoming profitable */
    bool in_contact;
    bool cancelled;
    int orders;
    int64_t since_ms;
} customer_t;

enum { AGENT_AVAILABLE, AGENT_BUSY, AGENT_WRAPUP };

typedef struct {
    char id[8];
    unsigned queues; /* bit i: serves queue i */
    int state;
    int contact;     /* while busy */
} agent_t;

enum { CONTACT_WAITING, CONTACT_RINGING, CONTACT_ACTIVE, CONTACT_DONE };

typedef struct {
    char id[24];
    int customer;
    int queue;
    int channel;
    const char *reason;
    int state;
    int agent;
    int64_t queued_ms, started_ms;
} contact_t;

typedef enum {
    ACT_PROFILE, ACT_AGENT_START, ACT_ARRIVAL, ACT_RECONTACT, ACT_ANSWER, ACT_SENTIMENT,
    ACT_END, ACT_ABANDON, ACT_WRAPUP_DONE, ACT_SURVEY, ACT_ORDER, ACT_SHIPMENT, ACT_WEB,
    ACT_COMPLAINT,
} action_kind_t;

typedef struct {
    int64_t due;
    uint64_t seq;
    action_kind_t kind;
    int a, b; /* customer / contact / agent, and a detail */
} action_t;

struct sim {
    sim_config_t cfg;
    rng_t rng;
    int64_t start_ms;
    int n_customers;
    customer_t *customers;
    agent_t *agents;
    contact_t *contacts; /* a ring of the live contacts */
    int contacts_cap, contacts_next;
    action_t *heap;
    size_t n_heap, cap_heap;
    uint64_t next_seq, next_event, next_contact;
    int64_t now_ms; /* the wall clock of the sim_next call: live events' time */
    sim_event_t out[OUT_MAX];
    int out_head, out_count;
    sim_stats_t stats;
};

/* ------------------------------------------------------------------------------------------
 * The heap of actions
 * ---------------------------------------------------------------------------------------- */

static bool before(const action_t *x, const action_t *y)
{
    return x->due < y->due || (x->due == y->due && x->seq < y->seq);
}

static void schedule(sim_t *s, int64_t due, action_kind_t kind, int a, int b)
{
    if (s->n_heap == s->cap_heap) {
        size_t cap = s->cap_heap ? s->cap_heap * 2 : 1024;
        action_t *h = realloc(s->heap, cap * sizeof *h);
        if (!h)
            return; /* out of memory: this action is lost, the world goes on */
        s->heap = h;
        s->cap_heap = cap;
    }
    size_t i = s->n_heap++;
    s->heap[i] = (action_t){due, s->next_seq++, kind, a, b};
    while (i > 0 && before(&s->heap[i], &s->heap[(i - 1) / 2])) {
        action_t t = s->heap[i];
        s->heap[i] = s->heap[(i - 1) / 2];
        s->heap[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

static action_t pop(sim_t *s)
{
    action_t top = s->heap[0];
    s->heap[0] = s->heap[--s->n_heap];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < s->n_heap && before(&s->heap[l], &s->heap[m]))
            m = l;
        if (r < s->n_heap && before(&s->heap[r], &s->heap[m]))
            m = r;
        if (m == i)
            break;
        action_t t = s->heap[i];
        s->heap[i] = s->heap[m];
        s->heap[m] = t;
        i = m;
    }
    return top;
}

/* ------------------------------------------------------------------------------------------
 * Events
 * ---------------------------------------------------------------------------------------- */

typedef struct {
    sim_t *s;
    jsonw_t w;
    sim_event_t *ev;
} emit_t;

/* Starts an event: the CloudEvent's attributes, then "data": { ... left open. */
static bool emit_begin(sim_t *s, emit_t *e, const char *type, const char *source,
                       const char *subject, int64_t at_ms)
{
    if (s->out_count == OUT_MAX)
        return false;
    e->s = s;
    e->ev = &s->out[(s->out_head + s->out_count) % OUT_MAX];
    e->ev->type = type;
    e->ev->history = at_ms < s->start_ms;
    snprintf(e->ev->key, sizeof e->ev->key, "%s", subject);
    char id[48], time[TIMEFMT_TEXT_SIZE];
    snprintf(id, sizeof id, "sim-%llu-%llu", (unsigned long long)s->cfg.seed,
             (unsigned long long)++s->next_event);
    /* The past keeps its simulated time; the present is dated when it is produced, so the
     * simulation itself (and so the seed's replay) never depends on the clock. */
    timefmt_format(e->ev->history ? at_ms : s->now_ms, time, sizeof time);
    jsonw_init(&e->w, e->ev->json, sizeof e->ev->json);
    jsonw_object_begin(&e->w);
    jsonw_key(&e->w, "specversion");
    jsonw_string(&e->w, "1.0");
    jsonw_key(&e->w, "id");
    jsonw_string(&e->w, id);
    jsonw_key(&e->w, "source");
    jsonw_string(&e->w, source);
    jsonw_key(&e->w, "type");
    jsonw_string(&e->w, type);
    jsonw_key(&e->w, "time");
    jsonw_string(&e->w, time);
    jsonw_key(&e->w, "subject");
    jsonw_string(&e->w, subject);
    jsonw_key(&e->w, "data");
    jsonw_object_begin(&e->w);
    return true;
}

static void emit_end(emit_t *e)
{
    jsonw_object_end(&e->w);
    jsonw_object_end(&e->w);
    long n = jsonw_finish(&e->w);
    if (n < 0)
        return; /* cannot happen with these sizes; dropped rather than sent broken */
    e->ev->len = (size_t)n;
    e->s->out_count++;
    e->s->stats.events++;
    if (e->ev->history)
        e->s->stats.history_events++;
}

static void put_str(emit_t *e, const char *key, const char *value)
{
    jsonw_key(&e->w, key);
    jsonw_string(&e->w, value);
}

static void put_num(emit_t *e, const char *key, double value, int decimals)
{
    jsonw_key(&e->w, key);
    jsonw_fixed(&e->w, value, decimals);
}

/* ------------------------------------------------------------------------------------------
 * Customers, agents, queues
 * ---------------------------------------------------------------------------------------- */

static int pick_channel(rng_t *r)
{
    double total = 0, x;
    for (int i = 0; i < N_CHANNELS; i++)
        total += channel_weights[i];
    x = unit(r) * total;
    for (int i = 0; i < N_CHANNELS; i++)
        if ((x -= channel_weights[i]) < 0)
            return i;
    return 0;
}

static void make_customer(sim_t *s, int i)
{
    customer_t *c = &s->customers[i];
    rng_t *r = &s->rng;
    bool partner = i >= s->cfg.customers;
    if (partner)
        snprintf(c->id, sizeof c->id, "partner:P%03d", i - s->cfg.customers + 1);
    else
        snprintf(c->id, sizeof c->id, "c-%05d", i + 1);
    snprintf(c->name, sizeof c->name, "%s %s",
             first_names[below(r, (int)(sizeof first_names / sizeof first_names[0]))],
             last_names[below(r, (int)(sizeof last_names / sizeof last_names[0]))]);
    if (partner)
        snprintf(c->name + strlen(c->name), sizeof c->name - strlen(c->name), " Trading");
    double v = unit(r);
    c->segment = partner ? SEG_PARTNER : v < 0.55 ? SEG_LOW : v < 0.88 ? SEG_MID : SEG_HIGH;
    c->churn = clamp(normal(r, 0.25, 0.2), 0.0, 1.0);
    c->mood = clamp(c->churn * 0.3, 0, 1);
    c->channel = pick_channel(r); /* drawn apart from the segment: value is not a channel */
    c->rising = !partner && c->segment != SEG_HIGH && chance(r, 0.06);
    c->since_ms = s->start_ms - (int64_t)between(r, 30, 3000) * DAY_MS;
}

/* The queue a reason goes to: named after it when configured, else the first queue. */
static int queue_for(const sim_t *s, const char *reason)
{
    static const struct {
        const char *reason, *queue;
    } map[] = {{"billing", "billing"}, {"support", "support"}, {"technical", "support"},
               {"sales", "sales"},     {"complaint", "retention"}, {"cancel", "retention"}};
    for (size_t m = 0; m < sizeof map / sizeof map[0]; m++)
        if (strcmp(map[m].reason, reason) == 0)
            for (int q = 0; q < s->cfg.n_queues; q++)
                if (strcmp(s->cfg.queues[q], map[m].queue) == 0)
                    return q;
    return 0;
}

void sim_agent_id(int index, char out[8])
{
    int n = index + 1; /* A001 .. A999, then A1000 .. A9999 */
    if (n < 1 || n > 9999)
        n = 0; /* never: sim_new refuses more than 9,999 agents */
    snprintf(out, 8, "A%03d", n);
}

/* ------------------------------------------------------------------------------------------
 * Contacts
 * ---------------------------------------------------------------------------------------- */

static const char *pick_reason(sim_t *s, const customer_t *c)
{
    double x = unit(&s->rng);
    if (c->mood > 0.6 && x < 0.25)
        return "complaint";
    if (c->mood > 0.5 && c->churn > 0.5 && x < 0.35)
        return "cancel";
    x = unit(&s->rng);
    return x < 0.3 ? "support" : x < 0.55 ? "billing" : x < 0.8 ? "technical" : "sales";
}

/* A free slot in the ring of contacts (one whose contact is over), or -1 when every one is
 * in use (then the arrival is dropped: more callers than the simulation keeps). */
static int free_contact_slot(sim_t *s)
{
    for (int n = 0; n < s->contacts_cap; n++) {
        int i = s->contacts_next;
        s->contacts_next = (s->contacts_next + 1) % s->contacts_cap;
        if (!s->contacts[i].id[0] || s->contacts[i].state == CONTACT_DONE)
            return i;
    }
    return -1;
}

static int new_contact(sim_t *s, int customer, const char *reason, int64_t t)
{
    int i = free_contact_slot(s);
    if (i < 0)
        return -1;
    contact_t *k = &s->contacts[i];
    customer_t *c = &s->customers[customer];
    *k = (contact_t){.customer = customer, .reason = reason, .agent = -1, .queued_ms = t};
    snprintf(k->id, sizeof k->id, "k-%llu", (unsigned long long)++s->next_contact);
    k->channel = chance(&s->rng, 0.7) ? c->channel : pick_channel(&s->rng);
    k->queue = queue_for(s, reason);
    c->in_contact = true;
    s->stats.contacts++;
    return i;
}

static void emit_queued(sim_t *s, const contact_t *k, int64_t at)
{
    emit_t e;
    if (!emit_begin(s, &e, "contact.queued", "/sim/acd", s->customers[k->customer].id, at))
        return;
    put_str(&e, "contact_id", k->id);
    put_str(&e, "channel", channels[k->channel]);
    put_str(&e, "queue", s->cfg.queues[k->queue]);
    put_str(&e, "reason", k->reason);
    emit_end(&e);
}

static void emit_started(sim_t *s, const contact_t *k, const char *agent, int64_t at)
{
    emit_t e;
    if (!emit_begin(s, &e, "contact.started", "/sim/acd", s->customers[k->customer].id, at))
        return;
    put_str(&e, "contact_id", k->id);
    put_str(&e, "channel", channels[k->channel]);
    put_str(&e, "queue", s->cfg.queues[k->queue]);
    put_str(&e, "agent_id", agent);
    put_str(&e, "reason", k->reason);
    emit_end(&e);
}

static void emit_ended(sim_t *s, const contact_t *k, double duration_s, bool resolved,
                       int64_t at)
{
    emit_t e;
    if (!emit_begin(s, &e, "contact.ended", "/sim/acd", s->customers[k->customer].id, at))
        return;
    put_str(&e, "contact_id", k->id);
    put_num(&e, "duration_s", duration_s, 0);
    jsonw_key(&e.w, "resolved");
    jsonw_bool(&e.w, resolved);
    put_str(&e, "wrapup", resolved ? "resolved" : "follow_up");
    emit_end(&e);
}

static void emit_agent_state(sim_t *s, const agent_t *a, const char *state, bool queues,
                             int64_t at)
{
    char subject[16];
    snprintf(subject, sizeof subject, "agent:%s", a->id);
    emit_t e;
    if (!emit_begin(s, &e, "agent.state", "/sim/acd", subject, at))
        return;
    put_str(&e, "agent_id", a->id);
    put_str(&e, "state", state);
    if (queues) {
        jsonw_key(&e.w, "queues");
        jsonw_array_begin(&e.w);
        for (int q = 0; q < s->cfg.n_queues; q++)
            if (a->queues & (1u << q))
                jsonw_string(&e.w, s->cfg.queues[q]);
        jsonw_array_end(&e.w);
    }
    emit_end(&e);
}

/* How a contact went, from the customer's mood and traits. */
static bool went_well(sim_t *s, const customer_t *c)
{
    return !chance(&s->rng, 0.1 + 0.5 * c->mood * c->churn + 0.15 * c->mood);
}

/* A contact of the past: queued, answered at once by some agent, ended. */
static void history_contact(sim_t *s, int customer, int64_t t)
{
    customer_t *c = &s->customers[customer];
    int i = new_contact(s, customer, pick_reason(s, c), t);
    if (i < 0)
        return;
    contact_t *k = &s->contacts[i];
    char agent[8];
    sim_agent_id(below(&s->rng, s->cfg.agents), agent);
    emit_queued(s, k, t);
    emit_started(s, k, agent, t + 20000);
    bool ok = went_well(s, c);
    emit_ended(s, k, between(&s->rng, 120, 600), ok, t + 300000);
    c->in_contact = false;
    c->mood = clamp(c->mood + (ok ? -0.05 : 0.15), 0, 1);
    k->state = CONTACT_DONE;
    if (!ok && chance(&s->rng, 0.3 + c->mood)) /* not solved: they call again */
        schedule(s, t + (int64_t)(exponential(&s->rng, 3.0) * DAY_MS), ACT_RECONTACT, customer, 0);
}

/* The agents of queue q that are free, the first one found. */
static int free_agent(const sim_t *s, int q)
{
    for (int a = 0; a < s->cfg.agents; a++)
        if (s->agents[a].state == AGENT_AVAILABLE && (s->agents[a].queues & (1u << q)))
            return a;
    return -1;
}

/* The oldest waiting contact of agent a's queues. */
static int oldest_waiting(const sim_t *s, int a)
{
    int best = -1;
    for (int i = 0; i < s->contacts_cap; i++) {
        const contact_t *k = &s->contacts[i];
        if (k->state == CONTACT_WAITING && k->id[0] && (s->agents[a].queues & (1u << k->queue)) &&
            (best < 0 || k->queued_ms < s->contacts[best].queued_ms))
            best = i;
    }
    return best;
}

static void ring(sim_t *s, int contact, int agent, int64_t t)
{
    s->contacts[contact].state = CONTACT_RINGING;
    s->contacts[contact].agent = agent;
    s->agents[agent].state = AGENT_BUSY;
    s->agents[agent].contact = contact;
    schedule(s, t + (int64_t)between(&s->rng, 2000, 12000), ACT_ANSWER, contact, agent);
}

static void live_arrival(sim_t *s, int customer, const char *reason, int64_t t)
{
    int i = new_contact(s, customer, reason, t);
    if (i < 0)
        return;
    contact_t *k = &s->contacts[i];
    emit_queued(s, k, t);
    int a = free_agent(s, k->queue);
    if (a >= 0) {
        ring(s, i, a, t);
        return;
    }
    /* Patience: a few minutes on the phone or chat, longer for the rest. */
    double mean_s = k->channel <= 1 ? 150 : 900;
    schedule(s, t + (int64_t)(exponential(&s->rng, mean_s) * 1000), ACT_ABANDON, i, 0);
}

/* ------------------------------------------------------------------------------------------
 * Actions
 * ---------------------------------------------------------------------------------------- */

/* Contacts per hour at time t, relative to the day's peak; the live part starts at the
 * configured hour of the simulated day. */
static double day_profile(const sim_t *s, int64_t t)
{
    static const double profile[24] = {0.05, 0.03, 0.02, 0.02, 0.03, 0.08, 0.2,  0.45,
                                       0.75, 0.95, 1.0,  0.95, 0.8,  0.85, 0.95, 0.9,
                                       0.8,  0.65, 0.5,  0.4,  0.3,  0.2,  0.12, 0.08};
    int64_t hours = (t - s->start_ms) / HOUR_MS + s->cfg.start_hour + 24 * 1000;
    return profile[hours % 24];
}

static void on_arrival(sim_t *s, int64_t t)
{
    bool history = t < s->start_ms;
    /* The past at a quieter pace (one contact per customer per month or so), the present
     * by the hour of the day. */
    double per_hour = history ? s->n_customers / (30.0 * 24.0)
                              : s->cfg.contacts_per_hour * day_profile(s, t);
    if (per_hour < 0.01)
        per_hour = 0.01;
    int64_t next = t + (int64_t)(exponential(&s->rng, 3600.0 / per_hour) * 1000);
    if (!history || next < s->start_ms) /* the live arrivals have their own chain from start */
        schedule(s, next, ACT_ARRIVAL, 0, 0);
    /* Unhappy customers contact more often: now and then the moodiest of a few. */
    int customer = below(&s->rng, s->n_customers);
    for (int k = 0; chance(&s->rng, 0.4) && k < 3; k++) {
        int other = below(&s->rng, s->n_customers);
        if (s->customers[other].mood > s->customers[customer].mood)
            customer = other;
    }
    customer_t *c = &s->customers[customer];
    if (c->in_contact || c->cancelled)
        return;
    if (history)
        history_contact(s, customer, t);
    else
        live_arrival(s, customer, pick_reason(s, c), t);
}

static void on_recontact(sim_t *s, int customer, int64_t t)
{
    customer_t *c = &s->customers[customer];
    if (c->in_contact || c->cancelled)
        return;
    if (t < s->start_ms)
        history_contact(s, customer, t);
    else
        live_arrival(s, customer, c->mood > 0.7 && chance(&s->rng, 0.4) ? "complaint" : "support",
                     t);
}

static void on_answer(sim_t *s, int contact, int agent, int64_t t)
{
    contact_t *k = &s->contacts[contact];
    if (k->state != CONTACT_RINGING || k->agent != agent)
        return;
    k->state = CONTACT_ACTIVE;
    k->started_ms = t;
    emit_started(s, k, s->agents[agent].id, t);
    double handle_s = k->channel <= 1 ? between(&s->rng, 180, 600) : between(&s->rng, 60, 300);
    schedule(s, t + (int64_t)(handle_s * 1000), ACT_END, contact, 0);
    if (k->channel <= 1 || k->channel == 4) /* speech and text analytics: phone, chat, mobile */
        schedule(s, t + (int64_t)between(&s->rng, 15000, 45000), ACT_SENTIMENT, contact, 0);
}

static void on_sentiment(sim_t *s, int contact, int64_t t)
{
    contact_t *k = &s->contacts[contact];
    if (k->state != CONTACT_ACTIVE)
        return;
    const customer_t *c = &s->customers[k->customer];
    double score = clamp(normal(&s->rng, 0.3 - 1.3 * c->mood - 0.3 * c->churn, 0.25), -1, 1);
    emit_t e;
    if (emit_begin(s, &e, "sentiment.sampled", "/sim/speech", c->id, t)) {
        put_str(&e, "contact_id", k->id);
        put_num(&e, "score", score, 2);
        emit_end(&e);
    }
    schedule(s, t + (int64_t)between(&s->rng, 20000, 60000), ACT_SENTIMENT, contact, 0);
}

static void dispatch(sim_t *s, int agent, int64_t t)
{
    int next = oldest_waiting(s, agent);
    if (next >= 0)
        ring(s, next, agent, t);
}

static void on_end(sim_t *s, int contact, int64_t t)
{
    contact_t *k = &s->contacts[contact];
    if (k->state != CONTACT_ACTIVE)
        return;
    customer_t *c = &s->customers[k->customer];
    bool ok = went_well(s, c);
    emit_ended(s, k, (double)(t - k->started_ms) / 1000.0, ok, t);
    k->state = CONTACT_DONE;
    c->in_contact = false;
    s->stats.answered++;
    agent_t *a = &s->agents[k->agent];
    a->state = AGENT_WRAPUP;
    emit_agent_state(s, a, "wrapup", false, t);
    schedule(s, t + (int64_t)between(&s->rng, 20000, 60000), ACT_WRAPUP_DONE, k->agent, 0);
    c->mood = clamp(c->mood + (ok ? -0.1 : 0.2), 0, 1);
    if (!ok)
        schedule(s, t + (int64_t)(exponential(&s->rng, 2.0) * DAY_MS), ACT_RECONTACT,
                 k->customer, 0);
    if (!ok && chance(&s->rng, c->mood * 0.5))
        schedule(s, t + (int64_t)between(&s->rng, 1, 48) * HOUR_MS, ACT_COMPLAINT, k->customer, 0);
    if (chance(&s->rng, 0.3))
        schedule(s, t + 10 * MINUTE_MS, ACT_SURVEY, k->customer, 0);
}

static void on_abandon(sim_t *s, int contact, int64_t t)
{
    contact_t *k = &s->contacts[contact];
    if (k->state != CONTACT_WAITING)
        return;
    customer_t *c = &s->customers[k->customer];
    emit_t e;
    if (emit_begin(s, &e, "contact.abandoned", "/sim/acd", c->id, t)) {
        put_str(&e, "contact_id", k->id);
        put_num(&e, "wait_s", (double)(t - k->queued_ms) / 1000.0, 0);
        emit_end(&e);
    }
    k->state = CONTACT_DONE;
    c->in_contact = false;
    c->mood = clamp(c->mood + 0.15, 0, 1);
    s->stats.abandoned++;
    if (chance(&s->rng, 0.6)) /* they try again */
        schedule(s, t + (int64_t)between(&s->rng, 5, 60) * MINUTE_MS, ACT_RECONTACT, k->customer, 0);
}

static void on_wrapup_done(sim_t *s, int agent, int64_t t)
{
    agent_t *a = &s->agents[agent];
    a->state = AGENT_AVAILABLE;
    emit_agent_state(s, a, "available", false, t);
    dispatch(s, agent, t);
}

static void on_survey(sim_t *s, int customer, int64_t t)
{
    const customer_t *c = &s->customers[customer];
    emit_t e;
    if (!emit_begin(s, &e, "survey.answered", "/sim/crm", c->id, t))
        return;
    jsonw_key(&e.w, "csat");
    jsonw_int(&e.w, (int)clamp(round(normal(&s->rng, 4.5 - 3.5 * c->mood, 0.7)), 1, 5));
    emit_end(&e);
}

static void on_complaint(sim_t *s, int customer, int64_t t)
{
    static const char *const categories[] = {"delivery", "billing", "product", "service"};
    const customer_t *c = &s->customers[customer];
    emit_t e;
    if (!emit_begin(s, &e, "complaint.filed", "/sim/crm", c->id, t))
        return;
    put_str(&e, "category", categories[below(&s->rng, 4)]);
    put_str(&e, "severity", c->mood > 0.8 ? "high" : c->mood > 0.5 ? "medium" : "low");
    emit_end(&e);
}

/* Mean days between orders, and the amount's range, by segment. */
static const struct {
    double days, lo, hi;
} buying[] = {{60, 15, 80}, {25, 50, 250}, {10, 150, 1500}, {5, 2000, 20000}};

static void on_order(sim_t *s, int customer, int64_t t)
{
    customer_t *c = &s->customers[customer];
    if (c->cancelled)
        return;
    double days = buying[c->segment].days;
    double hi = buying[c->segment].hi;
    if (c->rising && t > s->start_ms - 90 * DAY_MS) { /* the last 90 days: buying more */
        days /= 4;
        hi *= 3;
    }
    schedule(s, t + (int64_t)(exponential(&s->rng, days) * DAY_MS), ACT_ORDER, customer, 0);
    double amount = between(&s->rng, buying[c->segment].lo, hi);
    char order[40];
    snprintf(order, sizeof order, "o-%s-%d", c->id + (c->segment == SEG_PARTNER ? 8 : 2),
             ++c->orders);
    emit_t e;
    if (emit_begin(s, &e, "order.placed", "/sim/shop", c->id, t)) {
        put_str(&e, "order_id", order);
        put_num(&e, "amount", amount, 2);
        put_num(&e, "margin", amount * between(&s->rng, 0.12, 0.35), 2);
        put_str(&e, "currency", "EUR");
        emit_end(&e);
    }
    s->stats.orders++;
    if (chance(&s->rng, 0.03 + 0.05 * c->churn) && emit_begin(s, &e, "payment.failed",
                                                              "/sim/billing", c->id, t + 60000)) {
        put_num(&e, "amount", amount, 2);
        put_str(&e, "reason", chance(&s->rng, 0.5) ? "card_declined" : "insufficient_funds");
        emit_end(&e);
    }
    schedule(s, t + (int64_t)between(&s->rng, 6, 30) * HOUR_MS, ACT_SHIPMENT, customer, c->orders);
}

static void emit_order_status(sim_t *s, const customer_t *c, int n, const char *status,
                              int64_t t)
{
    char order[40];
    snprintf(order, sizeof order, "o-%s-%d", c->id + (c->segment == SEG_PARTNER ? 8 : 2), n);
    emit_t e;
    if (!emit_begin(s, &e, "order.updated", "/sim/shop", c->id, t))
        return;
    put_str(&e, "order_id", order);
    put_str(&e, "status", status);
    emit_end(&e);
}

/* An order's life: shipped (or delayed, or out of stock), then delivered, now and then
 * returned. A delayed order upsets its customer, who may well call about it. */
static void on_shipment(sim_t *s, int customer, int order, int64_t t)
{
    customer_t *c = &s->customers[customer];
    int step = order >> 20, n = order & 0xfffff;
    if (step == 0) {
        double trouble = 0.06 + 0.12 * c->churn;
        if (chance(&s->rng, trouble)) {
            emit_order_status(s, c, n, chance(&s->rng, 0.8) ? "delayed" : "out_of_stock", t);
            c->mood = clamp(c->mood + 0.15, 0, 1);
            if (chance(&s->rng, 0.5))
                schedule(s, t + (int64_t)between(&s->rng, 10, 240) * MINUTE_MS, ACT_RECONTACT,
                         customer, 0);
            schedule(s, t + (int64_t)between(&s->rng, 2, 5) * DAY_MS, ACT_SHIPMENT, customer,
                     (2 << 20) | n);
            return;
        }
        emit_order_status(s, c, n, "shipped", t);
        schedule(s, t + (int64_t)between(&s->rng, 1, 3) * DAY_MS, ACT_SHIPMENT, customer,
                 (2 << 20) | n);
    } else if (step == 2) {
        emit_order_status(s, c, n, "delivered", t);
        if (chance(&s->rng, 0.03 + 0.05 * c->mood))
            schedule(s, t + (int64_t)between(&s->rng, 2, 10) * DAY_MS, ACT_SHIPMENT, customer,
                     (3 << 20) | n);
    } else {
        emit_order_status(s, c, n, "returned", t);
    }
}

static void on_web(sim_t *s, int customer, int64_t t)
{
    customer_t *c = &s->customers[customer];
    if (c->cancelled)
        return;
    schedule(s, t + (int64_t)(exponential(&s->rng, 8) * DAY_MS), ACT_WEB, customer, 0);
    bool unhappy = c->mood * c->churn > 0.2;
    const char *intent = unhappy && chance(&s->rng, 0.5) ? "cancel"
                         : chance(&s->rng, 0.2)          ? "compare"
                         : chance(&s->rng, 0.3)          ? "support"
                                                         : NULL;
    emit_t e;
    if (emit_begin(s, &e, "web.visited", "/sim/web", c->id, t)) {
        put_str(&e, "page", intent && strcmp(intent, "cancel") == 0 ? "/account/cancel"
                            : intent                                ? "/help"
                                                                    : "/products");
        if (intent)
            put_str(&e, "intent", intent);
        emit_end(&e);
    }
    if (intent && strcmp(intent, "cancel") == 0 && chance(&s->rng, 0.25) &&
        emit_begin(s, &e, "subscription.changed", "/sim/billing", c->id, t + 120000)) {
        bool leaves = c->mood > 0.8 && chance(&s->rng, 0.3);
        put_str(&e, "action", leaves ? "cancelled" : "cancel_requested");
        put_num(&e, "mrr_delta", leaves ? -between(&s->rng, 10, 80) : 0, 2);
        emit_end(&e);
        c->cancelled = leaves;
    }
}

static void on_profile(sim_t *s, int customer, int64_t t)
{
    const customer_t *c = &s->customers[customer];
    char since[TIMEFMT_TEXT_SIZE];
    timefmt_format(c->since_ms, since, sizeof since);
    since[10] = '\0'; /* the date */
    emit_t e;
    if (!emit_begin(s, &e, "customer.profile", "/sim/crm", c->id, t))
        return;
    put_str(&e, "name", c->name);
    put_str(&e, "segment", c->segment == SEG_PARTNER ? "partner" : c->segment == SEG_HIGH ? "premium"
                                                                                          : "retail");
    put_str(&e, "language", languages[below(&s->rng, 5)]);
    put_str(&e, "since", since);
    emit_end(&e);
}

static void run(sim_t *s, const action_t *a)
{
    int64_t t = a->due;
    switch (a->kind) {
    case ACT_PROFILE: on_profile(s, a->a, t); break;
    case ACT_AGENT_START: emit_agent_state(s, &s->agents[a->a], "available", true, t); break;
    case ACT_ARRIVAL: on_arrival(s, t); break;
    case ACT_RECONTACT: on_recontact(s, a->a, t); break;
    case ACT_ANSWER: on_answer(s, a->a, a->b, t); break;
    case ACT_SENTIMENT: on_sentiment(s, a->a, t); break;
    case ACT_END: on_end(s, a->a, t); break;
    case ACT_ABANDON: on_abandon(s, a->a, t); break;
    case ACT_WRAPUP_DONE: on_wrapup_done(s, a->a, t); break;
    case ACT_SURVEY: on_survey(s, a->a, t); break;
    case ACT_ORDER: on_order(s, a->a, t); break;
    case ACT_SHIPMENT: on_shipment(s, a->a, a->b, t); break;
    case ACT_WEB: on_web(s, a->a, t); break;
    case ACT_COMPLAINT: on_complaint(s, a->a, t); break;
    }
}

/* ------------------------------------------------------------------------------------------
 * The simulation
 * ---------------------------------------------------------------------------------------- */

/* Agents serve one or two queues, spread so that every queue has some. */
static void make_agents(sim_t *s)
{
    for (int i = 0; i < s->cfg.agents; i++) {
        agent_t *a = &s->agents[i];
        sim_agent_id(i, a->id);
        int q = i % s->cfg.n_queues;
        a->queues = 1u << q;
        if (chance(&s->rng, 0.5))
            a->queues |= 1u << below(&s->rng, s->cfg.n_queues);
        a->state = AGENT_AVAILABLE;
        a->contact = -1;
    }
}

sim_t *sim_new(const sim_config_t *cfg, int64_t start_ms)
{
    if (cfg->customers < 1 || cfg->agents < 1 || cfg->agents > 9999 || cfg->n_queues < 1 || cfg->start_hour < 0 ||
        cfg->start_hour > 23 ||
        cfg->n_queues > SIM_QUEUES_MAX || cfg->partners < 0 || cfg->history_days < 0)
        return NULL;
    sim_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->cfg = *cfg;
    s->start_ms = start_ms;
    s->n_customers = cfg->customers + cfg->partners;
    s->contacts_cap = 4096 + cfg->agents * 8;
    s->customers = calloc((size_t)s->n_customers, sizeof *s->customers);
    s->agents = calloc((size_t)cfg->agents, sizeof *s->agents);
    s->contacts = calloc((size_t)s->contacts_cap, sizeof *s->contacts);
    if (!s->customers || !s->agents || !s->contacts) {
        sim_free(s);
        return NULL;
    }
    rng_seed(&s->rng, cfg->seed);
    for (int i = 0; i < s->n_customers; i++)
        make_customer(s, i);
    make_agents(s);
    int64_t from = start_ms - (int64_t)cfg->history_days * DAY_MS;
    for (int i = 0; i < s->n_customers; i++) {
        /* The CRM's profiles: with history, at its start; live only (no history), spread
         * over the first simulated day, so that a live run does not begin with one profile
         * per customer (100,000 of them before the first contact with a large base). */
        if (cfg->history_days > 0)
            schedule(s, from + i, ACT_PROFILE, i, 0);
        else
            schedule(s, from + (int64_t)between(&s->rng, 0, (double)DAY_MS), ACT_PROFILE, i, 0);
        double days = buying[s->customers[i].segment].days;
        schedule(s, from + (int64_t)(exponential(&s->rng, days) * DAY_MS), ACT_ORDER, i, 0);
        schedule(s, from + (int64_t)(exponential(&s->rng, 8) * DAY_MS), ACT_WEB, i, 0);
    }
    for (int i = 0; i < cfg->agents; i++)
        schedule(s, start_ms, ACT_AGENT_START, i, 0);
    if (from < start_ms)
        schedule(s, from, ACT_ARRIVAL, 0, 0);
    schedule(s, start_ms, ACT_ARRIVAL, 0, 0);
    return s;
}

void sim_free(sim_t *s)
{
    if (!s)
        return;
    free(s->customers);
    free(s->agents);
    free(s->contacts);
    free(s->heap);
    free(s);
}

int64_t sim_next_due(const sim_t *s)
{
    return s->out_count ? INT64_MIN : s->n_heap ? s->heap[0].due : INT64_MAX;
}

bool sim_next(sim_t *s, int64_t until_ms, int64_t now_ms, sim_event_t *out)
{
    while (s->out_count == 0) {
        if (s->n_heap == 0 || s->heap[0].due > until_ms)
            return false;
        action_t a = pop(s);
        s->now_ms = now_ms;
        run(s, &a);
    }
    *out = s->out[s->out_head];
    s->out_head = (s->out_head + 1) % OUT_MAX;
    s->out_count--;
    return true;
}

const sim_stats_t *sim_stats(const sim_t *s)
{
    return &s->stats;
}
