/* state.h - one customer's state: what the engine knows about a customer, updated in place by
 * each of the customer's events and written to Redis as one JSON document.
 *
 * A customer_t is a small struct (about 1.2 KiB, see sizeof) whose bounded rings live in heap
 * arrays that grow (by doubling) up to their bound as the customer's history fills them: a
 * customer with a few events costs about 2 KiB, not the 10 KiB that every ring at its bound
 * would take (measured: a cached customer's memory was a large part of the engine's CPU, the
 * kernel zeroing fresh pages, and of its RSS). The rings an event can grow are reserved
 * before it changes anything, so that running out of memory (STATE_ENOMEM) leaves the
 * customer as it was. A customer_t is therefore either all zero bytes or set up by
 * customer_init / customer_init_zeroed / customer_from_json, and customer_release gives back
 * what it holds; a struct copy would share its arrays (do not copy one).
 * Everything is pure: no I/O, no wall clock. Time is event time:
 * the customer's clock is the newest event time applied, and every window ("30 days") is
 * measured back from a given instant (the clock, for the document), so replaying the same
 * events in the same order gives the same state and the same document.
 *
 * Windows. An entry counts in a window of length W as of instant T when T - time < W; entries
 * newer than T count too (an out-of-order event). Rings that serve windows drop what falls
 * out of their longest window, in memory and in the document alike:
 *   contacts       one entry per contact_id, at the time of its earliest event seen; at most
 *                  STATE_CONTACTS_MAX (the oldest goes first), kept 30 days. A contact is
 *                  support when any of its events carried a support reason (config), abandoned
 *                  after contact.abandoned. Counts saturate at STATE_CONTACTS_MAX.
 *   complaints     complaint.filed times, kept 90 days, at most STATE_MARKS_MAX
 *   failed pay.    payment.failed times, kept 30 days, at most STATE_MARKS_MAX
 *   cancel signals web.visited with intent "cancel", subscription.changed cancel_requested or
 *                  cancelled: times, kept 30 days, at most STATE_MARKS_MAX
 *   money          STATE_MONEY_BUCKETS buckets of STATE_BUCKET_DAYS days (aligned to the epoch)
 *                  holding revenue, margin, order count and cost to serve. "12 months" is the
 *                  clock's bucket and the 35 before it (350-360 days), "90 days" the clock's
 *                  bucket and the 8 before it (80-90 days), "the 90 days before" the 9 before
 *                  those. Buckets make money exact per order and unbounded in order count, at
 *                  a 10-day resolution of the window edges.
 * Money is kept in integer cents (amounts are rounded to cents), summed whatever the currency
 * (v1 assumes one currency per deployment). An order.placed without margin gets
 * amount * value_default_margin_rate. A cancelled or returned order still tracked (see
 * orders) takes its revenue, margin and count back out of its bucket. Cost to serve adds, once
 * per contact, the cost of its channel (config) to the bucket of the contact's first event,
 * as soon as the channel is known (queued or started); a later config change does not
 * rewrite the past.
 *
 * Orders: the last STATE_ORDERS_MAX orders seen (placed or updated), with their latest status
 * (by event time: an older update does not overwrite a newer one). An order is open until it
 * is delivered, cancelled or returned; closed orders stay tracked (hidden from open_orders)
 * so that a later return can be taken back out of revenue, and are evicted first.
 *
 * The current contact is set by contact.queued (state queued), contact.started (active) and
 * contact.transferred (to a queue: queued again; to an agent: active) and cleared by
 * contact.ended or contact.abandoned of the same contact_id. A contact that has ended never
 * becomes current again (a late event), and an older contact never replaces a newer one.
 *
 * Timeline: every applied event but sentiment.sampled (too frequent; it is in sentiment) and
 * customer.profile (not an interaction) gives a short text for agents ("phone contact in queue
 * billing (reason: technical)", "order o-17 delayed"), cut to STATE_TIMELINE_TEXT_SIZE - 1
 * bytes at a character boundary, in apply_result_t. The engine pushes it to the customer's
 * timeline list in Redis (store.h), which keeps the last STATE_TIMELINE_MAX: the timeline is
 * not part of this state nor of the document, so a document stays small however long the
 * customer's history, and each event writes only its own entry.
 *
 * Idempotency: an event is a duplicate, and changes nothing, when its Kafka offset is at or
 * below the customer's last applied offset, or when the 64-bit hash of its id is among the
 * last STATE_EVENT_IDS applied.
 *
 * ------------------------------------------------------------------------------------------
 * The document (customer_to_json), version 2. Readers (the gateway, /api/customers/{id}) may
 * rely on every name outside "w"; "w" is the engine's compact internals and may change with
 * "v". Times are RFC 3339 UTC with milliseconds; amounts are numbers in currency units with at
 * most 2 decimals; absent values are null, never omitted. customer_from_json also reads
 * version 1, which differs only in the factors (objects {"feature", "value", "weight",
 * "contribution"}: 42 bytes of names per factor, 11 % of an average document).
 *   v            2
 *   id           the customer id (the events' subject)
 *   partner      true for a partner account (id "partner:<id>")
 *   updated      the clock: the newest event time applied (null before any)
 *   offset       the last applied Kafka offset (-1: none)
 *   profile      {name, segment, language, since, preferences}: strings or null; since a
 *                time; preferences the customer's preferences object as received, or null
 *   tier         "A" | "B" | "C"            (scores.h; null until scored)
 *   value        number, channel-neutral customer value over 12 months (scores.h)
 *   churn_risk   0..1, 4 decimals
 *   trend        "rising" | "stable" | "falling"
 *   factors      {"value": [...], "churn": [...]}: the top STATE_FACTORS_MAX contributions,
 *                largest first, each an array [feature, value, weight, contribution]: the
 *                feature's name and value, its weight in the model, what it added
 *   counts       {contacts_24h, contacts_7d, contacts_30d, support_contacts_30d, abandoned_7d,
 *                complaints_90d, failed_payments_30d, cancel_signals_30d, open_orders,
 *                delayed_orders}: integers as of "updated"
 *   money        {revenue_12m, margin_12m, orders_12m, revenue_90d, revenue_prev_90d,
 *                cost_to_serve_12m, mrr, last_order (time or null)}; mrr is the sum of the
 *                mrr_delta since the last cancellation (negative when the subscription began
 *                before the engine's history)
 *   sentiment    {last, contact_mean, mean_30d}: -1..1 (3 decimals) or null; contact_mean is
 *                the current contact's, mean_30d over the samples of contacts in 30 days
 *   survey       {csat: 1..5 | null, nps: 0..10 | null}: the last answers
 *   contact      the current contact or null: {id, channel (null if unknown), queue,
 *                agent_id, state "queued" | "active", queued_since, started}
 *   open_orders  [{id, status "placed" | "shipped" | "delayed" | "out_of_stock", amount
 *                (null if not seen placed), time (of the latest status)}], newest first
 *   w            internals: event id hashes, contact ring, marks, money buckets, tracked
 *                orders and rule cooldowns (see state.c, "Document: internals")
 * An example (abridged):
 *   {"v":2,"id":"cust-1042","partner":false,"updated":"2026-11-30T17:02:20.123Z","offset":41,
 *    "profile":{"name":"Ada","segment":"gold","language":"en","since":null,"preferences":null},
 *    "tier":"B","value":612.5,"churn_risk":0.3121,"trend":"rising","factors":{"value":[
 *    ["margin_12m",620,1,620]],"churn":[...]},
 *    "counts":{"contacts_24h":1,...},"money":{"revenue_12m":2480,...},...,"w":{...}}
 */
#ifndef INTEGRAL_STATE_H
#define INTEGRAL_STATE_H

#include "event.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STATE_ID_MAX EVENT_SUBJECT_MAX
#define STATE_CONTACTS_MAX 128
#define STATE_MARKS_MAX 32
#define STATE_ORDERS_MAX 16
#define STATE_EVENT_IDS 64
#define STATE_TIMELINE_MAX 100
#define STATE_TIMELINE_TEXT_SIZE 64 /* text bytes + NUL */
#define STATE_RULES_MAX 16
#define STATE_RULE_ID_SIZE 32 /* rule id bytes + NUL */
#define STATE_FACTORS_MAX 3
#define STATE_FEATURE_NAME_SIZE 32
#define STATE_MONEY_BUCKETS 36
#define STATE_BUCKET_DAYS 10
#define STATE_SUPPORT_REASONS_MAX 16
#define STATE_CHURN_TERMS_MAX 32

#define STATE_DAY_MS INT64_C(86400000)
#define STATE_TIME_NONE INT64_MIN /* "no such time" in every *_ms field */
#define STATE_NO_OFFSET (-1)      /* customer_apply without a Kafka offset: no offset check */

/* A document for a customer at every bound fits in this many bytes (checked by the tests);
 * customer_to_json needs at most this much room. */
#define STATE_JSON_MAX (48 * 1024)

/* Results and errors. The non-negative values are results, the negative ones errors. */
typedef enum {
    STATE_APPLIED = 0,    /* the event changed the state */
    STATE_DUPLICATE = 1,  /* already applied (id or offset): nothing changed */
    STATE_EINVAL = -1,    /* not this customer's event, not a customer event, or a bad argument */
    STATE_ENOSPC = -2,    /* customer_to_json: the buffer is too small */
    STATE_EDOCUMENT = -3, /* customer_from_json: not a valid version-1 document */
    STATE_ENOMEM = -4,    /* out of memory: nothing changed */
} state_err_t;

/* Returns a static string describing a state_err_t. */
const char *state_strerror(int code);

/* ------------------------------------------------------------------------------------------
 * Configuration: what state.c and scores.c read. One struct so that one file
 * (config/model.json, see scores.h) describes the whole model; state_config_init fills the
 * built-in defaults of everything but the churn model (scores_config_init adds it).
 * ------------------------------------------------------------------------------------------ */

typedef struct {
    char feature_name[STATE_FEATURE_NAME_SIZE];
    unsigned feature; /* index in the features values (feature.h) */
    double weight;
    double center; /* the term is weight * (min(value, max) - center); missing: 0 */
    double max;    /* INFINITY: no cap */
} state_churn_term_t;

typedef struct {
    /* contact reasons (contact.queued/started "reason") that make a contact a support
     * contact; compared without regard to ASCII case */
    int n_support_reasons;
    char support_reasons[STATE_SUPPORT_REASONS_MAX][EVENT_SHORT_TEXT_MAX + 1];
    double channel_cost[EVENT_CHANNEL_COUNT]; /* cost to serve one contact, currency units */
    double value_default_margin_rate;         /* margin of an order placed without one */
    /* value = revenue_weight * revenue_12m + margin_weight * margin_12m
     *       + orders_weight * orders_12m + cost_weight * cost_to_serve_12m */
    double value_revenue_weight, value_margin_weight, value_orders_weight, value_cost_weight;
    double tier_a, tier_b;              /* value >= tier_a: A; >= tier_b: B; else C */
    double trend_rising, trend_falling; /* relative change of revenue_90d over the 90 days
                                           before: >= rising: rising; <= falling: falling */
    double churn_bias;
    int n_churn_terms;
    state_churn_term_t churn_terms[STATE_CHURN_TERMS_MAX];
} state_config_t;

/* Fills cfg with the built-in defaults (those config/model.json ships with), without churn
 * terms. */
void state_config_init(state_config_t *cfg);

/* ------------------------------------------------------------------------------------------
 * The customer
 * ------------------------------------------------------------------------------------------ */

#define STATE_CHANNEL_UNKNOWN 0xff /* a contact seen before its channel (e.g. by its sentiment) */

#define STATE_CONTACT_SUPPORT 0x01
#define STATE_CONTACT_ABANDONED 0x02
#define STATE_CONTACT_ENDED 0x04
#define STATE_CONTACT_FLAGS 0x07

typedef struct {
    uint64_t id_hash;
    int64_t first_ms;      /* earliest event of the contact */
    int32_t sentiment_sum; /* in thousandths */
    uint16_t sentiment_n;  /* saturates */
    uint8_t channel;       /* event_channel_t or STATE_CHANNEL_UNKNOWN */
    uint8_t flags;         /* STATE_CONTACT_* */
} state_contact_t;

typedef struct {
    int n, cap;
    int64_t *times_ms; /* cap entries (at most STATE_MARKS_MAX), unordered */
} state_marks_t;

typedef struct {
    int32_t bucket; /* floor(days since the epoch / STATE_BUCKET_DAYS); slot is bucket % N */
    int32_t orders;
    int64_t revenue_cents, margin_cents, cost_cents;
} state_money_bucket_t;

#define STATE_ORDER_PLACED (-1) /* status of an order seen placed and not updated since */

typedef struct {
    char id[EVENT_KEY_MAX + 1];
    int status;      /* STATE_ORDER_PLACED or an event_order_status_t */
    bool has_amount; /* seen placed: amount, margin and placed_ms are set */
    bool taken_back; /* cancelled/returned: its money left its bucket */
    int64_t amount_cents, margin_cents;
    int64_t placed_ms;
    int64_t updated_ms; /* time of the latest status */
} state_order_t;

typedef enum {
    STATE_CONTACT_NONE,
    STATE_CONTACT_QUEUED,
    STATE_CONTACT_ACTIVE
} state_contact_state_t;

typedef struct {
    state_contact_state_t state; /* NONE: no current contact, the rest is unset */
    uint64_t id_hash;
    char id[EVENT_KEY_MAX + 1];
    uint8_t channel;                  /* or STATE_CHANNEL_UNKNOWN */
    char queue[EVENT_KEY_MAX + 1];    /* "" when none */
    char agent_id[EVENT_KEY_MAX + 1]; /* "" when none */
    int64_t queued_ms;                /* queued since (STATE_TIME_NONE when not queued yet) */
    int64_t started_ms;               /* answered at (STATE_TIME_NONE when not yet) */
} state_current_contact_t;

typedef struct {
    char feature[STATE_FEATURE_NAME_SIZE];
    double value, weight, contribution; /* rounded to 4 decimals */
} state_factor_t;

/* A rule's last firing for this customer (its cooldown). */
typedef struct {
    char id[STATE_RULE_ID_SIZE];
    int64_t fired_ms;
} state_cooldown_t;

typedef enum { STATE_TREND_STABLE, STATE_TREND_RISING, STATE_TREND_FALLING } state_trend_t;

/* Written by scores_update (scores.h), stored here so that they are in the document. */
typedef struct {
    bool computed;
    char tier; /* 'A', 'B' or 'C' */
    state_trend_t trend;
    double value;      /* rounded to cents */
    double churn_risk; /* rounded to 4 decimals */
    int n_value_factors, n_churn_factors;
    state_factor_t value_factors[STATE_FACTORS_MAX];
    state_factor_t churn_factors[STATE_FACTORS_MAX];
} state_scores_t;

typedef struct {
    char id[STATE_ID_MAX + 1];
    bool is_partner;
    int64_t clock_ms;    /* newest event time applied; STATE_TIME_NONE before any */
    int64_t last_offset; /* STATE_NO_OFFSET before any */

    struct {
        char name[EVENT_NAME_MAX + 1]; /* "" when unknown, as the others */
        char segment[EVENT_SHORT_TEXT_MAX + 1];
        char language[EVENT_LANGUAGE_MAX + 1];
        int64_t since_ms;
        char *preferences; /* compact JSON object text (at most EVENT_PREFERENCES_MAX bytes),
                              or NULL when unknown */
    } profile;

    /* Rings: n entries in an array of cap (NULL while 0), at most the bound each names. */
    int n_contacts, contacts_cap;
    state_contact_t *contacts; /* STATE_CONTACTS_MAX, unordered */
    state_marks_t complaints, failed_payments, cancel_signals;
    int n_money, money_cap;
    state_money_bucket_t *money; /* STATE_MONEY_BUCKETS, by bucket number, oldest first */
    int64_t last_order_ms;
    int64_t mrr_cents;
    int n_orders, orders_cap;
    state_order_t *orders; /* STATE_ORDERS_MAX, unordered */

    bool has_sentiment;
    int16_t sentiment_last; /* thousandths */
    int csat_last;          /* 0: none */
    int nps_last;           /* -1: none */

    state_current_contact_t contact;

    int n_event_ids, event_ids_next, event_ids_cap; /* a ring in apply order: it wraps only */
    uint64_t *event_ids;                            /* once it holds STATE_EVENT_IDS */

    int32_t timeline_len; /* entries in the timeline list in Redis (STATE_TIMELINE_MAX) */

    int n_rules, rules_cap;
    state_cooldown_t *rules; /* STATE_RULES_MAX, unordered */

    state_scores_t scores;
} customer_t;

/* What customer_apply tells the rules about the event it applied. Strings are borrowed from
 * the event. */
typedef struct {
    event_type_t type;
    bool new_contact;     /* the first event seen of its contact_id, when that contact counts
                             (within 30 days of the clock, and kept by the ring) */
    bool support_contact; /* the event's contact is (now) a support contact */
    bool contact_closed;  /* it ended or abandoned the current contact */
    bool cancel_signal;   /* a cancel signal (see the file comment) */
    int order_status;     /* order events: STATE_ORDER_PLACED or the new status; else -2 */
    const char *order_id; /* order events, else NULL */
    bool timeline;        /* the event is an interaction for the timeline: */
    char timeline_text[STATE_TIMELINE_TEXT_SIZE]; /* its text */
    bool timeline_trim;   /* the list holds STATE_TIMELINE_MAX already: trim it after */
    bool was_current; /* the event's contact was the current one before the event */
    /* ... and waited in a queue: */
    bool was_waiting;
    char waited_queue[EVENT_KEY_MAX + 1]; /* in this queue */
    int64_t waited_since_ms;              /* since then (STATE_TIME_NONE if unknown) */
} apply_result_t;

#define STATE_ORDER_STATUS_NONE (-2)

/* Empties c (all zero bytes, or a customer: what it holds is released) and gives it an id:
 * 1-STATE_ID_MAX bytes (an event subject; "partner:<id>" makes it a partner). id is copied.
 * Returns 0, or STATE_EINVAL for a bad id (c is then empty). */
int customer_init(customer_t *c, const char *id);
/* customer_init for a customer_t whose bytes are all zero already (fresh memory from mmap):
 * writes only what must not be zero, so that untouched pages stay unmapped. */
int customer_init_zeroed(customer_t *c, const char *id);
/* Frees what c holds and leaves it all zero bytes (ready for customer_init_zeroed). */
void customer_release(customer_t *c);

/* Applies one parsed event at Kafka offset (or STATE_NO_OFFSET) to the customer it is about
 * (ev->subject must equal c->id). Returns STATE_APPLIED with *res filled, STATE_DUPLICATE
 * (nothing changed; *res says only the type), STATE_EINVAL for another customer's event or
 * an agent.state event (agents are not customers; nothing changed), or STATE_ENOMEM (nothing
 * changed). ev and cfg are borrowed
 * for the call; *res points into ev. Scores are not updated here: see scores_update. */
int customer_apply(customer_t *c, const event_t *ev, int64_t offset, const state_config_t *cfg,
                   apply_result_t *res);

/* Everything the document and the features derive from the rings, as of as_of_ms. Amounts
 * are in cents. */
typedef struct {
    int contacts_24h, contacts_7d, contacts_30d, support_contacts_30d, abandoned_7d;
    int complaints_90d, failed_payments_30d, cancel_signals_30d;
    int open_orders, delayed_orders; /* delayed: open and delayed or out_of_stock */
    int orders_12m;
    int64_t revenue_12m, margin_12m, revenue_90d, revenue_prev_90d, cost_to_serve_12m;
    int64_t sentiment_sum_30d; /* thousandths, over contacts in 30 days */
    int sentiment_n_30d;
} state_counts_t;

void customer_counts(const customer_t *c, int64_t as_of_ms, state_counts_t *out);

/* The current contact's sentiment mean (-1..1): false when there is no current contact or it
 * has no samples. */
bool customer_contact_sentiment(const customer_t *c, double *mean);

/* The most recently updated tracked order, or NULL. Borrowed from c. */
const state_order_t *customer_last_order(const customer_t *c);

/* Rule cooldowns. rule_id: 1 .. STATE_RULE_ID_SIZE - 1 bytes. customer_rule_fired records a
 * firing at at_ms (the rule with the oldest firing makes room when all STATE_RULES_MAX are in
 * use); returns 0, STATE_EINVAL for a bad id or STATE_ENOMEM (nothing recorded).
 * customer_rule_last_fired returns the last firing or STATE_TIME_NONE. */
int customer_rule_fired(customer_t *c, const char *rule_id, int64_t at_ms);
int64_t customer_rule_last_fired(const customer_t *c, const char *rule_id);

/* Writes the document (see the file comment) into buf[0 .. cap - 1] with a NUL after it and
 * sets *len to its length (without the NUL). Returns 0, or STATE_ENOSPC when it does not fit
 * (STATE_JSON_MAX always does). cfg is borrowed; reserved for settings of the document. */
int customer_to_json(const customer_t *c, const state_config_t *cfg, char *buf, size_t cap,
                     size_t *len);

/* Reads a document (json, len bytes, need not be NUL-terminated) into c (all zero bytes, or a
 * customer: replaced). Returns 0, or STATE_EDOCUMENT with one line in err naming the bad field
 * ("w.c[3]: channel must be a channel name"), or STATE_ENOMEM; c is then empty (customer_init
 * state with no id). What
 * customer_to_json wrote reads back exactly: writing it again gives the same bytes. The
 * derived fields (counts, money but mrr and last_order, open_orders) are not read. */
int customer_from_json(customer_t *c, const char *json, size_t len, char *err, size_t errlen);

/* Names used in the document. */
const char *state_trend_name(state_trend_t trend);
const char *state_order_status_name(int status); /* "placed", "delayed", ... */

/* The 64-bit hash used for event and contact ids (FNV-1a): exposed for tests and tools. */
uint64_t state_hash(const char *s);

#endif
