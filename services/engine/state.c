/* state.c - one customer's state: applying events to it, and its JSON document. See state.h
 * for the model and the document's summary fields.
 *
 * Applying an event is a handful of scans over small arrays (the contact ring is the
 * largest, up to 128 entries) plus one short text for the timeline; a ring's array grows
 * (customer_reserve) only while the customer's history fills it, so most events allocate
 * nothing. The document is written by hand into the caller's buffer, numbers from integers
 * (money in cents, scores in fixed decimals) so that no printf runs per number, and read back
 * with cJSON, which happens once per customer when the engine first loads it from Redis. */
#include "state.h"

#include "expr.h" /* expr__utf8_char_len */
#include "jsonw.h" /* jsonw_word_needs_escape, jsonw_digits */
#include "timefmt.h"

#include <cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOUR_MS (60 * 60 * INT64_C(1000))
#define CONTACT_KEEP_MS (30 * STATE_DAY_MS)
#define COMPLAINT_KEEP_MS (90 * STATE_DAY_MS)
#define MARK_KEEP_MS (30 * STATE_DAY_MS)
#define BUCKET_MS (STATE_BUCKET_DAYS * STATE_DAY_MS)
#define BUCKETS_90D 9  /* the clock's bucket and the 8 before it */
#define BUCKETS_12M 36 /* the clock's bucket and the 35 before it */

/* Bounds a document's numbers must stay in when read back (they bound what apply can make:
 * amounts are at most 1e12 per order, times within years 0000-9999). */
#define TIME_MIN INT64_C(-62167219200000) /* 0000-01-01 */
#define TIME_MAX INT64_C(253402300799999) /* 9999-12-31T23:59:59.999 */
/* Money saturates at 1e14 currency units per bucket, per order and for mrr: far beyond any
 * real customer (one order is at most 1e12), and small enough that summing every bucket
 * cannot overflow. Apply and the reader share the bound, so what one writes the other reads. */
#define CENTS_MAX INT64_C(10000000000000000)
#define BUCKET_ORDERS_MAX 100000000

_Static_assert(BUCKETS_12M == STATE_MONEY_BUCKETS, "12 months is the whole bucket ring");
_Static_assert(2 * BUCKETS_90D <= STATE_MONEY_BUCKETS, "both 90-day windows fit the ring");

/* ------------------------------------------------------------------------------------------
 * Names, errors, hashing, configuration
 * ------------------------------------------------------------------------------------------ */

const char *state_strerror(int code)
{
    switch (code) {
    case STATE_APPLIED:
        return "applied";
    case STATE_DUPLICATE:
        return "duplicate event";
    case STATE_EINVAL:
        return "invalid argument or not this customer's event";
    case STATE_ENOSPC:
        return "buffer too small for the document";
    case STATE_EDOCUMENT:
        return "not a valid customer document";
    case STATE_ENOMEM:
        return "out of memory";
    default:
        return "unknown error";
    }
}

static const char *const trend_names[] = {
    [STATE_TREND_STABLE] = "stable",
    [STATE_TREND_RISING] = "rising",
    [STATE_TREND_FALLING] = "falling",
};

const char *state_trend_name(state_trend_t trend)
{
    return (unsigned)trend < 3 ? trend_names[trend] : "unknown";
}

const char *state_order_status_name(int status)
{
    return status == STATE_ORDER_PLACED ? "placed"
                                        : event_order_status_name((event_order_status_t)status);
}

static bool order_status_from_name(const char *name, int *status)
{
    event_order_status_t s;
    if (strcmp(name, "placed") == 0) {
        *status = STATE_ORDER_PLACED;
        return true;
    }
    if (!event_order_status_from_name(name, &s)) return false;
    *status = (int)s;
    return true;
}

uint64_t state_hash(const char *s)
{
    uint64_t h = UINT64_C(14695981039346656037);
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= UINT64_C(1099511628211);
    }
    return h;
}

void state_config_init(state_config_t *cfg)
{
    static const char *const reasons[] = {"support", "technical", "billing", "complaint"};
    /* Rough fully loaded costs per contact; a deployment sets its own in config/model.json. */
    static const double costs[EVENT_CHANNEL_COUNT] = {
        [EVENT_CHANNEL_PHONE] = 6.0, [EVENT_CHANNEL_CHAT] = 3.0,   [EVENT_CHANNEL_EMAIL] = 2.5,
        [EVENT_CHANNEL_WEB] = 0.1,   [EVENT_CHANNEL_MOBILE] = 0.1, [EVENT_CHANNEL_STORE] = 8.0,
        [EVENT_CHANNEL_KIOSK] = 0.5, [EVENT_CHANNEL_FAX] = 4.0,    [EVENT_CHANNEL_FIELD] = 45.0,
    };
    memset(cfg, 0, sizeof *cfg);
    cfg->n_support_reasons = (int)(sizeof reasons / sizeof reasons[0]);
    for (int i = 0; i < cfg->n_support_reasons; i++)
        strcpy(cfg->support_reasons[i], reasons[i]);
    memcpy(cfg->channel_cost, costs, sizeof costs);
    cfg->value_default_margin_rate = 0.3;
    cfg->value_revenue_weight = 0.0;
    cfg->value_margin_weight = 1.0;
    cfg->value_orders_weight = 5.0;
    cfg->value_cost_weight = -1.0;
    cfg->tier_a = 1000.0;
    cfg->tier_b = 250.0;
    cfg->trend_rising = 0.2;
    cfg->trend_falling = -0.2;
    cfg->churn_bias = -3.0;
}

/* ------------------------------------------------------------------------------------------
 * Small helpers: windows, copies, money
 * ------------------------------------------------------------------------------------------ */

/* t counts in a window of window_ms ending at as_of (see state.h, "Windows"). */
static bool in_window(int64_t t, int64_t as_of, int64_t window_ms)
{
    return as_of - t < window_ms;
}

static int32_t bucket_of(int64_t t)
{
    int64_t b = t / BUCKET_MS;
    return (int32_t)(t % BUCKET_MS < 0 ? b - 1 : b); /* floor, for times before 1970 */
}

/* Copies s (NUL-terminated, NULL as "") into dst of size cap, cut at a character boundary.
 * Every string copied here was checked by event_parse against a bound no larger than cap. */
static void copy_text(char *dst, size_t cap, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
    }
    memcpy(dst, s ? s : "", n);
    dst[n] = '\0';
}

static int64_t to_cents(double amount)
{
    return llround(amount * 100.0);
}

static int64_t clamp_cents(int64_t v)
{
    return v > CENTS_MAX ? CENTS_MAX : v < -CENTS_MAX ? -CENTS_MAX : v;
}

static bool ascii_equal_nocase(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char x = *a >= 'A' && *a <= 'Z' ? (char)(*a + 32) : *a;
        char y = *b >= 'A' && *b <= 'Z' ? (char)(*b + 32) : *b;
        if (x != y) return false;
    }
    return *a == *b;
}

static bool is_support_reason(const state_config_t *cfg, const char *reason)
{
    for (int i = 0; reason && i < cfg->n_support_reasons; i++)
        if (ascii_equal_nocase(reason, cfg->support_reasons[i])) return true;
    return false;
}

static bool is_key_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '_' || ch == ':' || ch == '@' || ch == '+' || ch == '-';
}

/* 1..max bytes of [A-Za-z0-9._:@+-], as event.h's subjects and keys. */
static bool is_key(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (n >= max || !is_key_char(s[n])) return false;
    return n > 0;
}

/* Valid UTF-8 without control characters, as event_parse's text. */
static bool is_text(const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t k = expr__utf8_char_len(s + i, n - i);
        if (k == 0 || (k == 1 && ((unsigned char)s[i] < 0x20 || s[i] == 0x7f))) return false;
        i += k;
    }
    return true;
}

/* ------------------------------------------------------------------------------------------
 * The customer: init, money, marks, contacts, orders, timeline
 * ------------------------------------------------------------------------------------------ */

/* The fields whose empty value is not zero. */
static void customer_set_empty(customer_t *c)
{
    c->clock_ms = STATE_TIME_NONE;
    c->last_offset = STATE_NO_OFFSET;
    c->profile.since_ms = STATE_TIME_NONE;
    c->last_order_ms = STATE_TIME_NONE;
    c->nps_last = -1;
    c->contact.queued_ms = c->contact.started_ms = STATE_TIME_NONE;
}

void customer_release(customer_t *c)
{
    free(c->profile.preferences);
    free(c->contacts);
    free(c->complaints.times_ms);
    free(c->failed_payments.times_ms);
    free(c->cancel_signals.times_ms);
    free(c->money);
    free(c->orders);
    free(c->event_ids);
    free(c->rules);
    memset(c, 0, sizeof *c);
}

static void customer_clear(customer_t *c)
{
    customer_release(c);
    customer_set_empty(c);
}

int customer_init_zeroed(customer_t *c, const char *id)
{
    customer_set_empty(c);
    if (!id || !is_key(id, STATE_ID_MAX) || strncmp(id, "agent:", 6) == 0 ||
        strcmp(id, "partner:") == 0)
        return STATE_EINVAL;
    strcpy(c->id, id);
    c->is_partner = strncmp(id, "partner:", 8) == 0;
    return 0;
}

int customer_init(customer_t *c, const char *id)
{
    customer_release(c);
    return customer_init_zeroed(c, id);
}

/* ------------------------------------------------------------------------------------------
 * Ring arrays: each ring's entries live in a heap array that doubles, from RING_FIRST
 * entries, up to the ring's bound. Apply reserves room for what an event can add before it
 * changes anything (customer_reserve), so the adders below never allocate.
 * ------------------------------------------------------------------------------------------ */

#define RING_FIRST 4

/* Room for need entries (clamped to max) in items, an array of *cap entries of size bytes
 * (NULL while *cap is 0). Returns the array, moved or not, or NULL out of memory (items and
 * *cap are then unchanged). */
static void *ring_reserve(void *items, int *cap, int need, int max, size_t size)
{
    if (need < 1) need = 1; /* so that a non-NULL array comes back */
    if (need > max) need = max;
    if (need <= *cap) return items;
    int n = *cap ? *cap : RING_FIRST;
    while (n < need)
        n *= 2;
    if (n > max) n = max;
    void *grown = realloc(items, (size_t)n * size);
    if (grown) *cap = n;
    return grown;
}

static bool reserve_marks(state_marks_t *m, int need)
{
    void *p = ring_reserve(m->times_ms, &m->cap, need, STATE_MARKS_MAX, sizeof *m->times_ms);
    if (p) m->times_ms = p;
    return p != NULL;
}

static bool reserve_contacts(customer_t *c, int need)
{
    void *p = ring_reserve(c->contacts, &c->contacts_cap, need, STATE_CONTACTS_MAX,
                           sizeof *c->contacts);
    if (p) c->contacts = p;
    return p != NULL;
}

static bool reserve_money(customer_t *c, int need)
{
    void *p = ring_reserve(c->money, &c->money_cap, need, STATE_MONEY_BUCKETS, sizeof *c->money);
    if (p) c->money = p;
    return p != NULL;
}

static bool reserve_orders(customer_t *c, int need)
{
    void *p = ring_reserve(c->orders, &c->orders_cap, need, STATE_ORDERS_MAX, sizeof *c->orders);
    if (p) c->orders = p;
    return p != NULL;
}

static bool reserve_event_ids(customer_t *c, int need)
{
    void *p = ring_reserve(c->event_ids, &c->event_ids_cap, need, STATE_EVENT_IDS,
                           sizeof *c->event_ids);
    if (p) c->event_ids = p;
    return p != NULL;
}

/* Cooldowns are few per customer (the rules that ever fired for it): 40 bytes each, not
 * STATE_RULES_MAX of them inline (640 bytes of every cached customer, ~60 MB of the
 * benchmark's 100,000). */
static bool reserve_rules(customer_t *c, int need)
{
    void *p = ring_reserve(c->rules, &c->rules_cap, need, STATE_RULES_MAX, sizeof *c->rules);
    if (p) c->rules = p;
    return p != NULL;
}

/* The marks an event of this type adds to, or NULL. */
static state_marks_t *event_marks(customer_t *c, const event_t *ev)
{
    switch (ev->type) {
    case EVENT_COMPLAINT_FILED: return &c->complaints;
    case EVENT_PAYMENT_FAILED: return &c->failed_payments;
    case EVENT_WEB_VISITED:
    case EVENT_SUBSCRIPTION_CHANGED: return &c->cancel_signals;
    default: return NULL;
    }
}

/* Room for everything ev can add: its id, and one entry in each ring its type touches
 * (a contact event: a contact and, for its channel's cost, a money bucket; an order event:
 * an order and a bucket). Returns false out of memory; what was reserved stays (unused
 * room changes nothing). */
static bool customer_reserve(customer_t *c, const event_t *ev)
{
    state_marks_t *marks = event_marks(c, ev);
    bool contact = ev->type >= EVENT_CONTACT_QUEUED && ev->type <= EVENT_SENTIMENT_SAMPLED;
    bool order = ev->type == EVENT_ORDER_PLACED || ev->type == EVENT_ORDER_UPDATED;
    return reserve_event_ids(c, c->n_event_ids + 1) &&
           (!marks || reserve_marks(marks, marks->n + 1)) &&
           (!contact || reserve_contacts(c, c->n_contacts + 1)) &&
           (!order || reserve_orders(c, c->n_orders + 1)) &&
           (!(contact || order) || reserve_money(c, c->n_money + 1));
}

/* A copy of s (at most max bytes, cut at a character boundary) on the heap, or NULL. */
static char *text_dup(const char *s, size_t max)
{
    char *copy = malloc(max + 1);
    if (copy) copy_text(copy, max + 1, s);
    return copy;
}

/* ------------------------------------------------------------------------------------------
 * Money, marks, contacts, orders
 * ------------------------------------------------------------------------------------------ */

/* The money bucket numbered b, or NULL. */
static state_money_bucket_t *money_find(const customer_t *c, int32_t b)
{
    for (int i = 0; i < c->n_money; i++)
        if (c->money[i].bucket == b) return &c->money[i];
    return NULL;
}

/* A new bucket numbered b, in order. Buckets out of the ring go first: the ring holds at
 * most STATE_MONEY_BUCKETS numbers as of the clock, b among them, so there is room. */
static state_money_bucket_t *money_insert(customer_t *c, int32_t b)
{
    int32_t oldest = bucket_of(c->clock_ms) - STATE_MONEY_BUCKETS + 1;
    int kept = 0, at;
    for (int i = 0; i < c->n_money; i++)
        if (c->money[i].bucket >= oldest) c->money[kept++] = c->money[i];
    c->n_money = kept;
    if (kept >= c->money_cap) return NULL; /* not reserved: cannot happen (customer_reserve) */
    for (at = kept; at > 0 && c->money[at - 1].bucket > b; at--)
        c->money[at] = c->money[at - 1];
    c->money[at] = (state_money_bucket_t){.bucket = b};
    c->n_money++;
    return &c->money[at];
}

/* Adds to the bucket of time t; a time older than the ring is forgotten. The clock is
 * already at least t. */
static void money_add(customer_t *c, int64_t t, int64_t revenue, int64_t margin, int orders,
                      int64_t cost)
{
    int32_t b = bucket_of(t);
    if (b <= bucket_of(c->clock_ms) - STATE_MONEY_BUCKETS) return;
    state_money_bucket_t *m = money_find(c, b);
    if (!m && !(m = money_insert(c, b))) return;
    m->revenue_cents = clamp_cents(m->revenue_cents + revenue);
    m->margin_cents = clamp_cents(m->margin_cents + margin);
    m->cost_cents = clamp_cents(m->cost_cents + cost);
    m->orders += orders;
    if (m->orders > BUCKET_ORDERS_MAX || m->orders < -BUCKET_ORDERS_MAX)
        m->orders = m->orders > 0 ? BUCKET_ORDERS_MAX : -BUCKET_ORDERS_MAX;
}

/* Records time t, kept keep_ms. A full ring gives up its oldest entry, unless t is older. */
static void marks_add(state_marks_t *m, int64_t t, int64_t clock, int64_t keep_ms)
{
    if (!in_window(t, clock, keep_ms)) return;
    if (m->n < m->cap) { /* room reserved while the ring is below its bound */
        m->times_ms[m->n++] = t;
        return;
    }
    int oldest = 0;
    for (int i = 1; i < m->n; i++)
        if (m->times_ms[i] < m->times_ms[oldest]) oldest = i;
    if (m->times_ms[oldest] < t) m->times_ms[oldest] = t;
}

/* Only marks still kept as of the clock count: those the document holds (see state.h,
 * "Windows"), so that a late event's counts are the same whether or not the customer was
 * reloaded in between. */
static int marks_count(const state_marks_t *m, int64_t clock, int64_t as_of, int64_t window_ms)
{
    int n = 0;
    for (int i = 0; i < m->n; i++)
        n += in_window(m->times_ms[i], clock, window_ms) &&
             in_window(m->times_ms[i], as_of, window_ms);
    return n;
}

/* The contact with this id hash, or a new entry for it (*is_new), or NULL when the contact
 * is too old to keep: older than 30 days, or older than every entry of a full ring. An entry
 * past 30 days counts as absent, as it would after a reload from the document. */
static state_contact_t *contact_touch(customer_t *c, uint64_t h, int64_t t, bool *is_new)
{
    state_contact_t *oldest = NULL;
    for (int i = 0; i < c->n_contacts; i++) {
        state_contact_t *k = &c->contacts[i];
        bool live = in_window(k->first_ms, c->clock_ms, CONTACT_KEEP_MS);
        if (k->id_hash == h && live) {
            *is_new = false;
            if (t < k->first_ms) k->first_ms = t;
            return k;
        }
        if (!oldest || k->first_ms < oldest->first_ms) oldest = k;
    }
    *is_new = true;
    if (!in_window(t, c->clock_ms, CONTACT_KEEP_MS)) return NULL;
    state_contact_t *k;
    if (c->n_contacts < c->contacts_cap) /* room reserved while below the bound */
        k = &c->contacts[c->n_contacts++];
    else if (oldest->first_ms < t || !in_window(oldest->first_ms, c->clock_ms, CONTACT_KEEP_MS))
        k = oldest;
    else
        return NULL;
    *k = (state_contact_t){.id_hash = h, .first_ms = t, .channel = STATE_CHANNEL_UNKNOWN};
    return k;
}

static const state_contact_t *contact_find(const customer_t *c, uint64_t h)
{
    for (int i = 0; i < c->n_contacts; i++)
        if (c->contacts[i].id_hash == h &&
            in_window(c->contacts[i].first_ms, c->clock_ms, CONTACT_KEEP_MS))
            return &c->contacts[i];
    return NULL;
}

/* Learns a contact's channel; the first time, its cost to serve goes to the money buckets. */
static void contact_set_channel(customer_t *c, state_contact_t *k, event_channel_t channel,
                                const state_config_t *cfg)
{
    if (!k || k->channel != STATE_CHANNEL_UNKNOWN) return;
    k->channel = (uint8_t)channel;
    money_add(c, k->first_ms, 0, 0, 0, to_cents(cfg->channel_cost[channel]));
}

static bool order_is_open(int status)
{
    return status == STATE_ORDER_PLACED || status == EVENT_ORDER_SHIPPED ||
           status == EVENT_ORDER_DELAYED || status == EVENT_ORDER_OUT_OF_STOCK;
}

static state_order_t *order_find(customer_t *c, const char *id)
{
    for (int i = 0; i < c->n_orders; i++)
        if (strcmp(c->orders[i].id, id) == 0) return &c->orders[i];
    return NULL;
}

/* A new tracked order. A full list evicts its least recently updated closed order, or when
 * all are open, its least recently updated one. */
static state_order_t *order_add(customer_t *c, const char *id, int status, int64_t t)
{
    state_order_t *o = NULL;
    if (c->n_orders < c->orders_cap) { /* room reserved while below the bound */
        o = &c->orders[c->n_orders++];
    } else {
        for (int i = 0; i < c->n_orders; i++) {
            state_order_t *x = &c->orders[i];
            if (!o || (order_is_open(o->status) && !order_is_open(x->status)) ||
                (order_is_open(o->status) == order_is_open(x->status) &&
                 x->updated_ms < o->updated_ms))
                o = x;
        }
    }
    *o = (state_order_t){.status = status, .placed_ms = STATE_TIME_NONE, .updated_ms = t};
    copy_text(o->id, sizeof o->id, id);
    return o;
}

/* A cancelled or returned order's money leaves its bucket, once. */
static void order_take_back(customer_t *c, state_order_t *o)
{
    if (!o->has_amount || o->taken_back) return;
    o->taken_back = true;
    money_add(c, o->placed_ms, -o->amount_cents, -o->margin_cents, -1, 0);
}


/* ------------------------------------------------------------------------------------------
 * Timeline texts: short, bounded, built without printf
 * ------------------------------------------------------------------------------------------ */

/* A text is built in a scratch buffer and cut once at the end, at a character boundary,
 * with an ellipsis when something did not fit. */
typedef struct {
    char buf[STATE_TIMELINE_TEXT_SIZE];
    size_t len;
    bool over;
} text_t;

#define TEXT_CAP (STATE_TIMELINE_TEXT_SIZE - 1)
#define ELLIPSIS "\xe2\x80\xa6"

static void text_put(text_t *t, const char *s)
{
    size_t n = strlen(s), room = TEXT_CAP - t->len;
    if (n > room) {
        n = room;
        t->over = true;
    }
    memcpy(t->buf + t->len, s, n);
    t->len += n;
}

static void text_finish(text_t *t, char *dst)
{
    size_t n = t->len;
    if (t->over) {
        n = TEXT_CAP - strlen(ELLIPSIS);
        while (n > 0 && ((unsigned char)t->buf[n] & 0xc0) == 0x80) /* inside a character */
            n--;
        memcpy(t->buf + n, ELLIPSIS, strlen(ELLIPSIS));
        n += strlen(ELLIPSIS);
    }
    memcpy(dst, t->buf, n);
    dst[n] = '\0';
}

static void text_int(text_t *t, int64_t v)
{
    char tmp[24], *p = jsonw_digits(tmp + sizeof tmp - 1, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
    tmp[sizeof tmp - 1] = '\0';
    if (v < 0) *--p = '-';
    text_put(t, p);
}

/* An amount with two decimals: "59.90", "-20.00". */
static void text_money(text_t *t, int64_t cents)
{
    char frac[4] = {'.', 0, 0, 0};
    uint64_t a = cents < 0 ? 0 - (uint64_t)cents : (uint64_t)cents;
    if (cents < 0) text_put(t, "-");
    text_int(t, (int64_t)(a / 100));
    frac[1] = (char)('0' + a % 100 / 10);
    frac[2] = (char)('0' + a % 10);
    text_put(t, frac);
}

/* "45s", "5m 12s", "2h 3m". */
static void text_duration(text_t *t, double seconds)
{
    int64_t s = (int64_t)seconds;
    if (s >= 3600) {
        text_int(t, s / 3600);
        text_put(t, "h ");
        text_int(t, s / 60 % 60);
        text_put(t, "m");
    } else if (s >= 60) {
        text_int(t, s / 60);
        text_put(t, "m ");
        text_int(t, s % 60);
        text_put(t, "s");
    } else {
        text_int(t, s);
        text_put(t, "s");
    }
}

/* "phone contact" or, when the channel is not known, "contact". */
static void text_contact(text_t *t, uint8_t channel)
{
    if (channel != STATE_CHANNEL_UNKNOWN) {
        text_put(t, event_channel_name((event_channel_t)channel));
        text_put(t, " ");
    }
    text_put(t, "contact");
}

/* Appends " (a, b)" from the non-NULL parts, each written as label + value. */
static void text_details(text_t *t, const char *label1, const char *v1, const char *label2,
                         const char *v2)
{
    if (!v1 && !v2) return;
    text_put(t, " (");
    if (v1) {
        text_put(t, label1);
        text_put(t, v1);
    }
    if (v1 && v2) text_put(t, ", ");
    if (v2) {
        text_put(t, label2);
        text_put(t, v2);
    }
    text_put(t, ")");
}

static void text_order_status(text_t *t, int status)
{
    text_put(t,
             status == EVENT_ORDER_OUT_OF_STOCK ? "out of stock" : state_order_status_name(status));
}

static void describe(const event_t *ev, uint8_t channel, text_t *t)
{
    switch (ev->type) {
    case EVENT_CONTACT_QUEUED: {
        const event_contact_queued_t *d = &ev->data.contact_queued;
        text_contact(t, channel);
        text_put(t, " in queue ");
        text_put(t, d->queue);
        text_details(t, "reason: ", d->reason, NULL, NULL);
        break;
    }
    case EVENT_CONTACT_STARTED: {
        const event_contact_started_t *d = &ev->data.contact_started;
        text_contact(t, channel);
        text_put(t, " with agent ");
        text_put(t, d->agent_id);
        text_details(t, "queue ", d->queue, "reason: ", d->reason);
        break;
    }
    case EVENT_CONTACT_ENDED: {
        const event_contact_ended_t *d = &ev->data.contact_ended;
        text_contact(t, channel);
        text_put(t, " ended after ");
        text_duration(t, d->duration_s);
        text_details(t, "", d->has_resolved ? (d->resolved ? "resolved" : "unresolved") : NULL,
                     "wrapup: ", d->wrapup);
        break;
    }
    case EVENT_CONTACT_ABANDONED:
        text_contact(t, channel);
        text_put(t, " abandoned after ");
        text_duration(t, ev->data.contact_abandoned.wait_s);
        text_put(t, " waiting");
        break;
    case EVENT_CONTACT_TRANSFERRED: {
        const event_contact_transferred_t *d = &ev->data.contact_transferred;
        text_contact(t, channel);
        text_put(t, " transferred to ");
        text_put(t, d->to_agent_id ? "agent " : "queue ");
        text_put(t, d->to_agent_id ? d->to_agent_id : d->to_queue);
        if (d->to_agent_id && d->to_queue) {
            text_put(t, " in queue ");
            text_put(t, d->to_queue);
        }
        break;
    }
    case EVENT_ORDER_PLACED:
        text_put(t, "order ");
        text_put(t, ev->data.order_placed.order_id);
        text_put(t, " placed: ");
        text_money(t, to_cents(ev->data.order_placed.amount));
        text_put(t, " ");
        text_put(t, ev->data.order_placed.currency);
        break;
    case EVENT_ORDER_UPDATED:
        text_put(t, "order ");
        text_put(t, ev->data.order_updated.order_id);
        text_put(t, " ");
        text_order_status(t, (int)ev->data.order_updated.status);
        break;
    case EVENT_PAYMENT_FAILED:
        text_put(t, "payment of ");
        text_money(t, to_cents(ev->data.payment_failed.amount));
        text_put(t, " failed");
        text_details(t, "reason: ", ev->data.payment_failed.reason, NULL, NULL);
        break;
    case EVENT_COMPLAINT_FILED:
        text_put(t, "complaint (");
        text_put(t, event_severity_name(ev->data.complaint_filed.severity));
        text_put(t, "): ");
        text_put(t, ev->data.complaint_filed.category);
        break;
    case EVENT_SURVEY_ANSWERED: {
        const event_survey_answered_t *d = &ev->data.survey_answered;
        text_put(t, "survey:");
        if (d->has_csat) {
            text_put(t, " CSAT ");
            text_int(t, d->csat);
        }
        if (d->has_nps) {
            text_put(t, d->has_csat ? ", NPS " : " NPS ");
            text_int(t, d->nps);
        }
        break;
    }
    case EVENT_WEB_VISITED:
        text_put(t, "visited ");
        text_put(t, ev->data.web_visited.page);
        text_details(t, "intent: ", ev->data.web_visited.intent, NULL, NULL);
        break;
    case EVENT_SUBSCRIPTION_CHANGED: {
        const event_subscription_changed_t *d = &ev->data.subscription_changed;
        text_put(t, "subscription ");
        text_put(t, d->action == EVENT_SUBSCRIPTION_CANCEL_REQUESTED
                        ? "cancel requested"
                        : event_subscription_action_name(d->action));
        if (d->has_mrr_delta) {
            text_put(t, " (MRR ");
            if (d->mrr_delta >= 0) text_put(t, "+");
            text_money(t, to_cents(d->mrr_delta));
            text_put(t, ")");
        }
        break;
    }
    default: /* sentiment.sampled and customer.profile add no entry (see state.h) */
        break;
    }
}

/* ------------------------------------------------------------------------------------------
 * Applying events
 * ------------------------------------------------------------------------------------------ */

/* When the current contact last changed state: an older event of it changes nothing. */
static int64_t current_changed_ms(const state_current_contact_t *cur)
{
    return cur->queued_ms > cur->started_ms ? cur->queued_ms : cur->started_ms;
}

/* The current contact, made to be contact id if it may be: not one that has ended, and not
 * one older than the current one. Returns NULL when the event must not touch it. */
static state_current_contact_t *current_for(customer_t *c, const state_contact_t *k, const char *id,
                                            uint64_t h, int64_t t)
{
    state_current_contact_t *cur = &c->contact;
    if (k && (k->flags & STATE_CONTACT_ENDED)) return NULL;
    if (cur->state != STATE_CONTACT_NONE && t < current_changed_ms(cur)) return NULL;
    if (cur->state == STATE_CONTACT_NONE || cur->id_hash != h || strcmp(cur->id, id) != 0) {
        *cur = (state_current_contact_t){
            .id_hash = h, .queued_ms = STATE_TIME_NONE, .started_ms = STATE_TIME_NONE};
        copy_text(cur->id, sizeof cur->id, id);
        cur->channel = k ? k->channel : STATE_CHANNEL_UNKNOWN;
    }
    return cur;
}

static void current_clear_if(customer_t *c, uint64_t h, const char *id, apply_result_t *res)
{
    if (c->contact.state != STATE_CONTACT_NONE && c->contact.id_hash == h &&
        strcmp(c->contact.id, id) == 0) {
        c->contact =
            (state_current_contact_t){.queued_ms = STATE_TIME_NONE, .started_ms = STATE_TIME_NONE};
        res->contact_closed = true;
    }
}

/* The contact_id of a contact event, or NULL. */
static const char *event_contact_id(const event_t *ev)
{
    switch (ev->type) {
    case EVENT_CONTACT_QUEUED:
        return ev->data.contact_queued.contact_id;
    case EVENT_CONTACT_STARTED:
        return ev->data.contact_started.contact_id;
    case EVENT_CONTACT_ENDED:
        return ev->data.contact_ended.contact_id;
    case EVENT_CONTACT_ABANDONED:
        return ev->data.contact_abandoned.contact_id;
    case EVENT_CONTACT_TRANSFERRED:
        return ev->data.contact_transferred.contact_id;
    case EVENT_SENTIMENT_SAMPLED:
        return ev->data.sentiment_sampled.contact_id;
    default:
        return NULL;
    }
}

/* Contact events: the contact ring, then the current contact. Returns the contact's channel
 * for the timeline. */
static uint8_t apply_contact(customer_t *c, const event_t *ev, const char *id,
                             const state_config_t *cfg, apply_result_t *res)
{
    uint64_t h = state_hash(id);
    int64_t t = ev->time_ms;
    bool is_new;
    state_contact_t *k = contact_touch(c, h, t, &is_new);
    /* A contact too old to count is not news: rules on new_contact must not fire for it. */
    res->new_contact = is_new && k;
    state_current_contact_t *cur;
    const char *reason = NULL;

    switch (ev->type) {
    case EVENT_CONTACT_QUEUED:
        reason = ev->data.contact_queued.reason;
        contact_set_channel(c, k, ev->data.contact_queued.channel, cfg);
        if ((cur = current_for(c, k, id, h, t))) {
            cur->state = STATE_CONTACT_QUEUED;
            cur->channel = (uint8_t)ev->data.contact_queued.channel;
            copy_text(cur->queue, sizeof cur->queue, ev->data.contact_queued.queue);
            cur->queued_ms = t;
        }
        break;
    case EVENT_CONTACT_STARTED:
        reason = ev->data.contact_started.reason;
        contact_set_channel(c, k, ev->data.contact_started.channel, cfg);
        if ((cur = current_for(c, k, id, h, t))) {
            cur->state = STATE_CONTACT_ACTIVE;
            cur->channel = (uint8_t)ev->data.contact_started.channel;
            copy_text(cur->agent_id, sizeof cur->agent_id, ev->data.contact_started.agent_id);
            if (ev->data.contact_started.queue)
                copy_text(cur->queue, sizeof cur->queue, ev->data.contact_started.queue);
            cur->started_ms = t;
        }
        break;
    case EVENT_CONTACT_TRANSFERRED: {
        const event_contact_transferred_t *d = &ev->data.contact_transferred;
        cur = &c->contact;
        /* Only the current contact moves: a transfer does not open a contact. */
        if (cur->state == STATE_CONTACT_NONE || cur->id_hash != h || t < current_changed_ms(cur))
            break;
        if (d->to_queue) copy_text(cur->queue, sizeof cur->queue, d->to_queue);
        copy_text(cur->agent_id, sizeof cur->agent_id, d->to_agent_id);
        cur->state = d->to_agent_id ? STATE_CONTACT_ACTIVE : STATE_CONTACT_QUEUED;
        if (d->to_agent_id)
            cur->started_ms = t;
        else
            cur->queued_ms = t;
        break;
    }
    case EVENT_CONTACT_ENDED:
    case EVENT_CONTACT_ABANDONED:
        if (k)
            k->flags |= STATE_CONTACT_ENDED |
                        (ev->type == EVENT_CONTACT_ABANDONED ? STATE_CONTACT_ABANDONED : 0);
        current_clear_if(c, h, id, res);
        break;
    case EVENT_SENTIMENT_SAMPLED: {
        int16_t milli = (int16_t)lround(ev->data.sentiment_sampled.score * 1000.0);
        c->has_sentiment = true;
        c->sentiment_last = milli;
        if (k && k->sentiment_n < UINT16_MAX) {
            k->sentiment_sum += milli;
            k->sentiment_n++;
        }
        break;
    }
    default:
        break;
    }
    if (k && is_support_reason(cfg, reason)) k->flags |= STATE_CONTACT_SUPPORT;
    res->support_contact = k && (k->flags & STATE_CONTACT_SUPPORT);
    return k ? k->channel : STATE_CHANNEL_UNKNOWN;
}

static void apply_order_placed(customer_t *c, const event_t *ev, const state_config_t *cfg,
                               apply_result_t *res)
{
    const event_order_placed_t *d = &ev->data.order_placed;
    state_order_t *o = order_find(c, d->order_id);
    if (!o) o = order_add(c, d->order_id, STATE_ORDER_PLACED, ev->time_ms);
    res->order_id = d->order_id;
    res->order_status = STATE_ORDER_PLACED;
    if (c->last_order_ms == STATE_TIME_NONE || ev->time_ms > c->last_order_ms)
        c->last_order_ms = ev->time_ms;
    if (o->has_amount) /* placed twice (a producer retry with a new id): counted once */
        return;
    o->has_amount = true;
    o->amount_cents = to_cents(d->amount);
    o->margin_cents =
        to_cents(d->has_margin ? d->margin : d->amount * cfg->value_default_margin_rate);
    o->placed_ms = ev->time_ms;
    money_add(c, o->placed_ms, o->amount_cents, o->margin_cents, 1, 0);
    /* Its cancellation arrived first (events of two systems): take it back right away. */
    if (o->status == EVENT_ORDER_CANCELLED || o->status == EVENT_ORDER_RETURNED)
        order_take_back(c, o);
}

static void apply_order_updated(customer_t *c, const event_t *ev, apply_result_t *res)
{
    const event_order_updated_t *d = &ev->data.order_updated;
    int status = (int)d->status;
    state_order_t *o = order_find(c, d->order_id);
    res->order_id = d->order_id;
    res->order_status = status;
    if (!o && !order_is_open(status))
        return; /* an order we never saw, now closed: nothing to track or take back */
    if (!o) o = order_add(c, d->order_id, status, ev->time_ms);
    if (ev->time_ms >= o->updated_ms) {
        o->status = status;
        o->updated_ms = ev->time_ms;
    }
    if (status == EVENT_ORDER_CANCELLED || status == EVENT_ORDER_RETURNED) order_take_back(c, o);
}

static void apply_profile(customer_t *c, const event_customer_profile_t *d)
{
    if (d->name) copy_text(c->profile.name, sizeof c->profile.name, d->name);
    if (d->segment) copy_text(c->profile.segment, sizeof c->profile.segment, d->segment);
    if (d->language) copy_text(c->profile.language, sizeof c->profile.language, d->language);
    if (d->has_since) c->profile.since_ms = d->since_ms;
}

static void apply_subscription(customer_t *c, const event_t *ev, apply_result_t *res)
{
    const event_subscription_changed_t *d = &ev->data.subscription_changed;
    /* A plain sum, not clamped at 0: a clamp would make the result depend on event order
     * (a downgrade seen before the upgrade it follows). It can be negative when the
     * subscription began before our history. */
    if (d->has_mrr_delta) c->mrr_cents = clamp_cents(c->mrr_cents + to_cents(d->mrr_delta));
    if (d->action == EVENT_SUBSCRIPTION_CANCELLED) c->mrr_cents = 0;
    if (d->action == EVENT_SUBSCRIPTION_CANCELLED ||
        d->action == EVENT_SUBSCRIPTION_CANCEL_REQUESTED) {
        marks_add(&c->cancel_signals, ev->time_ms, c->clock_ms, MARK_KEEP_MS);
        res->cancel_signal = true;
    }
}

/* Everything but contact events, which apply_contact handles. */
static void apply_other(customer_t *c, const event_t *ev, const state_config_t *cfg,
                        apply_result_t *res)
{
    switch (ev->type) {
    case EVENT_ORDER_PLACED:
        apply_order_placed(c, ev, cfg, res);
        break;
    case EVENT_ORDER_UPDATED:
        apply_order_updated(c, ev, res);
        break;
    case EVENT_PAYMENT_FAILED:
        marks_add(&c->failed_payments, ev->time_ms, c->clock_ms, MARK_KEEP_MS);
        break;
    case EVENT_COMPLAINT_FILED:
        marks_add(&c->complaints, ev->time_ms, c->clock_ms, COMPLAINT_KEEP_MS);
        break;
    case EVENT_SURVEY_ANSWERED:
        if (ev->data.survey_answered.has_csat) c->csat_last = ev->data.survey_answered.csat;
        if (ev->data.survey_answered.has_nps) c->nps_last = ev->data.survey_answered.nps;
        break;
    case EVENT_WEB_VISITED:
        if (ev->data.web_visited.intent &&
            ascii_equal_nocase(ev->data.web_visited.intent, "cancel")) {
            marks_add(&c->cancel_signals, ev->time_ms, c->clock_ms, MARK_KEEP_MS);
            res->cancel_signal = true;
        }
        break;
    case EVENT_SUBSCRIPTION_CHANGED:
        apply_subscription(c, ev, res);
        break;
    case EVENT_CUSTOMER_PROFILE:
        apply_profile(c, &ev->data.customer_profile);
        break;
    default:
        break;
    }
}

static bool seen_event_id(const customer_t *c, uint64_t h)
{
    for (int i = 0; i < c->n_event_ids; i++)
        if (c->event_ids[i] == h) return true;
    return false;
}

static void remember_event_id(customer_t *c, uint64_t h)
{
    if (c->event_ids_next >= c->event_ids_cap) return; /* not reserved: cannot happen */
    c->event_ids[c->event_ids_next] = h;
    c->event_ids_next = (c->event_ids_next + 1) % STATE_EVENT_IDS;
    if (c->n_event_ids < STATE_EVENT_IDS) c->n_event_ids++;
}

int customer_apply(customer_t *c, const event_t *ev, int64_t offset, const state_config_t *cfg,
                   apply_result_t *res)
{
    *res = (apply_result_t){.type = ev->type, .order_status = STATE_ORDER_STATUS_NONE};
    if (ev->type == EVENT_AGENT_STATE || ev->type >= EVENT_TYPE_COUNT || !ev->subject ||
        strcmp(ev->subject, c->id) != 0 || offset < STATE_NO_OFFSET)
        return STATE_EINVAL;
    uint64_t id_hash = state_hash(ev->id);
    if ((offset != STATE_NO_OFFSET && offset <= c->last_offset) || seen_event_id(c, id_hash))
        return STATE_DUPLICATE;
    const char *prefs = ev->type == EVENT_CUSTOMER_PROFILE ? ev->data.customer_profile.preferences
                                                           : NULL;
    char *prefs_copy = prefs ? text_dup(prefs, EVENT_PREFERENCES_MAX) : NULL;
    if ((prefs && !prefs_copy) || !customer_reserve(c, ev)) {
        free(prefs_copy);
        return STATE_ENOMEM;
    }
    if (prefs_copy) {
        free(c->profile.preferences);
        c->profile.preferences = prefs_copy;
    }

    remember_event_id(c, id_hash);
    if (offset != STATE_NO_OFFSET) c->last_offset = offset;
    if (c->clock_ms == STATE_TIME_NONE || ev->time_ms > c->clock_ms) c->clock_ms = ev->time_ms;

    uint8_t channel = STATE_CHANNEL_UNKNOWN;
    const char *contact_id = event_contact_id(ev);
    res->was_current = contact_id && c->contact.state != STATE_CONTACT_NONE &&
                       strcmp(c->contact.id, contact_id) == 0;
    if (res->was_current && c->contact.state == STATE_CONTACT_QUEUED) { /* before the event */
        res->was_waiting = true;
        memcpy(res->waited_queue, c->contact.queue, sizeof res->waited_queue);
        res->waited_since_ms = c->contact.queued_ms;
    }
    if (contact_id)
        channel = apply_contact(c, ev, contact_id, cfg, res);
    else
        apply_other(c, ev, cfg, res);

    if (ev->type != EVENT_SENTIMENT_SAMPLED && ev->type != EVENT_CUSTOMER_PROFILE) {
        text_t t = {.len = 0};
        describe(ev, channel, &t);
        text_finish(&t, res->timeline_text);
        res->timeline = true;
        if (c->timeline_len < STATE_TIMELINE_MAX)
            c->timeline_len++;
        else
            res->timeline_trim = true;
    }
    return STATE_APPLIED;
}

/* ------------------------------------------------------------------------------------------
 * Derived values
 * ------------------------------------------------------------------------------------------ */

static void count_contacts(const customer_t *c, int64_t as_of, state_counts_t *out)
{
    for (int i = 0; i < c->n_contacts; i++) {
        const state_contact_t *k = &c->contacts[i];
        /* an entry past 30 days of the clock is gone, as after a reload (contact_touch) */
        if (!in_window(k->first_ms, c->clock_ms, CONTACT_KEEP_MS) ||
            !in_window(k->first_ms, as_of, CONTACT_KEEP_MS))
            continue;
        out->contacts_30d++;
        out->contacts_7d += in_window(k->first_ms, as_of, 7 * STATE_DAY_MS);
        out->contacts_24h += in_window(k->first_ms, as_of, STATE_DAY_MS);
        out->support_contacts_30d += (k->flags & STATE_CONTACT_SUPPORT) != 0;
        out->abandoned_7d +=
            (k->flags & STATE_CONTACT_ABANDONED) && in_window(k->first_ms, as_of, 7 * STATE_DAY_MS);
        out->sentiment_sum_30d += k->sentiment_sum;
        out->sentiment_n_30d += k->sentiment_n;
    }
}

static void count_money(const customer_t *c, int64_t as_of, state_counts_t *out)
{
    int32_t now = bucket_of(as_of), clock = bucket_of(c->clock_ms);
    for (int i = 0; i < c->n_money; i++) {
        const state_money_bucket_t *m = &c->money[i];
        if (m->bucket > now || now - m->bucket >= BUCKETS_12M ||
            clock - m->bucket >= BUCKETS_12M) /* out of the ring: not in the document */
            continue;
        int32_t age = now - m->bucket;
        out->revenue_12m += m->revenue_cents;
        out->margin_12m += m->margin_cents;
        out->orders_12m += m->orders;
        out->cost_to_serve_12m += m->cost_cents;
        if (age < BUCKETS_90D)
            out->revenue_90d += m->revenue_cents;
        else if (age < 2 * BUCKETS_90D)
            out->revenue_prev_90d += m->revenue_cents;
    }
}

void customer_counts(const customer_t *c, int64_t as_of_ms, state_counts_t *out)
{
    memset(out, 0, sizeof *out);
    if (as_of_ms == STATE_TIME_NONE) return;
    count_contacts(c, as_of_ms, out);
    count_money(c, as_of_ms, out);
    out->complaints_90d = marks_count(&c->complaints, c->clock_ms, as_of_ms, COMPLAINT_KEEP_MS);
    out->failed_payments_30d =
        marks_count(&c->failed_payments, c->clock_ms, as_of_ms, MARK_KEEP_MS);
    out->cancel_signals_30d = marks_count(&c->cancel_signals, c->clock_ms, as_of_ms, MARK_KEEP_MS);
    for (int i = 0; i < c->n_orders; i++) {
        int s = c->orders[i].status;
        out->open_orders += order_is_open(s);
        out->delayed_orders += s == EVENT_ORDER_DELAYED || s == EVENT_ORDER_OUT_OF_STOCK;
    }
}

bool customer_contact_sentiment(const customer_t *c, double *mean)
{
    if (c->contact.state == STATE_CONTACT_NONE) return false;
    const state_contact_t *k = contact_find(c, c->contact.id_hash);
    if (!k || k->sentiment_n == 0) return false;
    *mean = (double)k->sentiment_sum / k->sentiment_n / 1000.0;
    return true;
}

const state_order_t *customer_last_order(const customer_t *c)
{
    const state_order_t *last = NULL;
    for (int i = 0; i < c->n_orders; i++)
        if (!last || c->orders[i].updated_ms > last->updated_ms) last = &c->orders[i];
    return last;
}

/* ------------------------------------------------------------------------------------------
 * Rule cooldowns
 * ------------------------------------------------------------------------------------------ */

static bool rule_id_ok(const char *id)
{
    return id && id[0] && strlen(id) < STATE_RULE_ID_SIZE && is_text(id);
}

int customer_rule_fired(customer_t *c, const char *rule_id, int64_t at_ms)
{
    if (!rule_id_ok(rule_id) || at_ms < TIME_MIN || at_ms > TIME_MAX) return STATE_EINVAL;
    int slot = -1;
    for (int i = 0; i < c->n_rules && slot < 0; i++)
        if (strcmp(c->rules[i].id, rule_id) == 0) slot = i;
    if (slot < 0 && c->n_rules < STATE_RULES_MAX) {
        if (!reserve_rules(c, c->n_rules + 1)) return STATE_ENOMEM;
        slot = c->n_rules++;
    }
    if (slot < 0) {
        slot = 0;
        for (int i = 1; i < c->n_rules; i++)
            if (c->rules[i].fired_ms < c->rules[slot].fired_ms) slot = i;
    }
    strcpy(c->rules[slot].id, rule_id);
    c->rules[slot].fired_ms = at_ms;
    return 0;
}

int64_t customer_rule_last_fired(const customer_t *c, const char *rule_id)
{
    for (int i = 0; rule_id && i < c->n_rules; i++)
        if (strcmp(c->rules[i].id, rule_id) == 0) return c->rules[i].fired_ms;
    return STATE_TIME_NONE;
}

/* ------------------------------------------------------------------------------------------
 * JSON writer: appends to the caller's buffer; once something does not fit, it only
 * remembers that (the caller checks once at the end)
 * ------------------------------------------------------------------------------------------ */

typedef struct {
    char *p, *end; /* end leaves room for the NUL */
    bool full;
} jw_t;

static void jw_raw(jw_t *w, const char *s, size_t n)
{
    if ((size_t)(w->end - w->p) < n) {
        w->full = true;
        w->p = w->end;
        return;
    }
    memcpy(w->p, s, n);
    w->p += n;
}

/* Only for string literals ("" lit refuses anything else at compile time). */
#define JW_LIT(w, lit) jw_raw((w), "" lit, sizeof(lit) - 1)

static void jw_cstr(jw_t *w, const char *s)
{
    jw_raw(w, s, strlen(s));
}

static void jw_char(jw_t *w, char ch)
{
    if (w->p < w->end)
        *w->p++ = ch;
    else
        w->full = true;
}

static bool needs_escape(unsigned char ch)
{
    return ch < 0x20 || ch == '"' || ch == '\\';
}

/* The bytes of s from `from` on, escaped; the slow path, for the rare string that needs it. */
static void jw_escaped(jw_t *w, const char *s, size_t from, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = from;
    for (size_t i = from; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!needs_escape(ch)) continue;
        jw_raw(w, s + run, i - run);
        if (ch == '"' || ch == '\\') {
            char esc[2] = {'\\', (char)ch};
            jw_raw(w, esc, 2);
        } else {
            char esc[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
            jw_raw(w, esc, 6);
        }
        run = i + 1;
    }
    jw_raw(w, s + run, n - run);
}

/* A JSON string. Text reaching here is valid UTF-8 (event_parse and the reader check it),
 * so only quotes, backslashes and control characters need escaping, and most strings have
 * none: they are checked 8 bytes at a time and copied in one piece. */
static void jw_str(jw_t *w, const char *s)
{
    size_t n = strlen(s), i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, s + i, 8);
        if (jsonw_word_needs_escape(x)) break;
    }
    while (i < n && !needs_escape((unsigned char)s[i]))
        i++;
    jw_char(w, '"');
    jw_raw(w, s, i);
    if (i < n) jw_escaped(w, s, i, n);
    jw_char(w, '"');
}

static void jw_str_or_null(jw_t *w, const char *s)
{
    if (s && s[0])
        jw_str(w, s);
    else
        JW_LIT(w, "null");
}

static void jw_int(jw_t *w, int64_t v)
{
    char tmp[24], *end = tmp + sizeof tmp;
    char *p = jsonw_digits(end, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
    if (v < 0) *--p = '-';
    jw_raw(w, p, (size_t)(end - p));
}

/* v / 10^decimals, without trailing zeros: (125, 2) -> 1.25, (1250, 2) -> 12.5, (-5, 3) ->
 * -0.005, (700, 2) -> 7. */
static void jw_scaled(jw_t *w, int64_t v, int decimals)
{
    char tmp[32], *end = tmp + sizeof tmp;
    uint64_t a = v < 0 ? 0 - (uint64_t)v : (uint64_t)v, scale = 1;
    for (int i = 0; i < decimals; i++)
        scale *= 10;
    uint64_t frac = a % scale;
    char *p = end;
    if (frac) {
        int d = decimals;
        while (frac % 10 == 0) {
            frac /= 10;
            d--;
        }
        for (; d > 0; d--) {
            *--p = (char)('0' + frac % 10);
            frac /= 10;
        }
        *--p = '.';
    }
    p = jsonw_digits(p, a / scale);
    if (v < 0) *--p = '-';
    jw_raw(w, p, (size_t)(end - p));
}

/* A double with at most `decimals` decimals. Beyond what int64 holds it falls back to printf
 * (never for what apply makes: amounts are bounded by 1e12 per order). */
static void jw_fixed(jw_t *w, double x, int decimals)
{
    static const double scale[] = {1, 10, 100, 1000, 10000};
    double scaled = x * scale[decimals];
    if (!isfinite(x)) {
        JW_LIT(w, "null");
    } else if (fabs(scaled) < 9e15) {
        jw_scaled(w, llround(scaled), decimals);
    } else {
        char tmp[40];
        int n = snprintf(tmp, sizeof tmp, "%.17g", x);
        jw_raw(w, tmp, (size_t)n);
    }
}

/* A time as "2026-11-30T17:02:20.123Z" with the quotes, or null. Times are kept within
 * years 0000-9999 (event_parse and the reader check), so the format always fits. */
static void jw_time(jw_t *w, int64_t ms)
{
    char t[TIMEFMT_TEXT_SIZE + 1];
    if (ms == STATE_TIME_NONE || timefmt_format(ms, t + 1, TIMEFMT_TEXT_SIZE) < 0) {
        JW_LIT(w, "null");
        return;
    }
    t[0] = t[TIMEFMT_TEXT_SIZE] = '"';
    jw_raw(w, t, sizeof t);
}

/* Compact id hashes: 11 characters of base64url per 64-bit value (the top 2 bits are 0). */
static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
#define HASH_TEXT_LEN 11

static void hash_text(uint64_t h, char out[HASH_TEXT_LEN])
{
    for (int i = HASH_TEXT_LEN - 1; i >= 0; i--, h >>= 6)
        out[i] = b64[h & 63];
}

static bool hash_from_text(const char *s, uint64_t *out)
{
    uint64_t h = 0;
    for (int i = 0; i < HASH_TEXT_LEN; i++) {
        const char *at = s[i] ? strchr(b64, s[i]) : NULL;
        if (!at || (i == 0 && at - b64 > 15)) return false;
        h = h << 6 | (uint64_t)(at - b64);
    }
    *out = h;
    return true;
}

static void jw_hash(jw_t *w, uint64_t h)
{
    char t[HASH_TEXT_LEN + 2];
    t[0] = t[HASH_TEXT_LEN + 1] = '"';
    hash_text(h, t + 1);
    jw_raw(w, t, sizeof t);
}

/* ------------------------------------------------------------------------------------------
 * Document: summary
 * ------------------------------------------------------------------------------------------ */

static void write_profile(jw_t *w, const customer_t *c)
{
    JW_LIT(w, "\"profile\":{\"name\":");
    jw_str_or_null(w, c->profile.name);
    JW_LIT(w, ",\"segment\":");
    jw_str_or_null(w, c->profile.segment);
    JW_LIT(w, ",\"language\":");
    jw_str_or_null(w, c->profile.language);
    JW_LIT(w, ",\"since\":");
    jw_time(w, c->profile.since_ms);
    JW_LIT(w, ",\"preferences\":");
    if (c->profile.preferences) /* compact JSON text, checked when it came in */
        jw_raw(w, c->profile.preferences, strlen(c->profile.preferences));
    else
        JW_LIT(w, "null");
    jw_char(w, '}');
}

static void write_factors(jw_t *w, const state_factor_t *f, int n)
{
    jw_char(w, '[');
    for (int i = 0; i < n; i++) {
        if (i) jw_char(w, ',');
        jw_char(w, '[');
        jw_str(w, f[i].feature);
        jw_char(w, ',');
        jw_fixed(w, f[i].value, 4);
        jw_char(w, ',');
        jw_fixed(w, f[i].weight, 4);
        jw_char(w, ',');
        jw_fixed(w, f[i].contribution, 4);
        jw_char(w, ']');
    }
    jw_char(w, ']');
}

static void write_scores(jw_t *w, const state_scores_t *s)
{
    if (!s->computed) {
        JW_LIT(w, "\"tier\":null,\"value\":null,\"churn_risk\":null,\"trend\":null,"
                  "\"factors\":{\"value\":[],\"churn\":[]}");
        return;
    }
    char tier[3] = {'"', s->tier, '"'};
    JW_LIT(w, "\"tier\":");
    jw_raw(w, tier, 3);
    JW_LIT(w, ",\"value\":");
    jw_fixed(w, s->value, 2);
    JW_LIT(w, ",\"churn_risk\":");
    jw_fixed(w, s->churn_risk, 4);
    JW_LIT(w, ",\"trend\":");
    jw_str(w, state_trend_name(s->trend));
    JW_LIT(w, ",\"factors\":{\"value\":");
    write_factors(w, s->value_factors, s->n_value_factors);
    JW_LIT(w, ",\"churn\":");
    write_factors(w, s->churn_factors, s->n_churn_factors);
    jw_char(w, '}');
}

static void write_counts(jw_t *w, const state_counts_t *n)
{
    JW_LIT(w, "\"counts\":{\"contacts_24h\":");
    jw_int(w, n->contacts_24h);
    JW_LIT(w, ",\"contacts_7d\":");
    jw_int(w, n->contacts_7d);
    JW_LIT(w, ",\"contacts_30d\":");
    jw_int(w, n->contacts_30d);
    JW_LIT(w, ",\"support_contacts_30d\":");
    jw_int(w, n->support_contacts_30d);
    JW_LIT(w, ",\"abandoned_7d\":");
    jw_int(w, n->abandoned_7d);
    JW_LIT(w, ",\"complaints_90d\":");
    jw_int(w, n->complaints_90d);
    JW_LIT(w, ",\"failed_payments_30d\":");
    jw_int(w, n->failed_payments_30d);
    JW_LIT(w, ",\"cancel_signals_30d\":");
    jw_int(w, n->cancel_signals_30d);
    JW_LIT(w, ",\"open_orders\":");
    jw_int(w, n->open_orders);
    JW_LIT(w, ",\"delayed_orders\":");
    jw_int(w, n->delayed_orders);
    jw_char(w, '}');
}

static void write_money(jw_t *w, const customer_t *c, const state_counts_t *n)
{
    JW_LIT(w, "\"money\":{\"revenue_12m\":");
    jw_scaled(w, n->revenue_12m, 2);
    JW_LIT(w, ",\"margin_12m\":");
    jw_scaled(w, n->margin_12m, 2);
    JW_LIT(w, ",\"orders_12m\":");
    jw_int(w, n->orders_12m);
    JW_LIT(w, ",\"revenue_90d\":");
    jw_scaled(w, n->revenue_90d, 2);
    JW_LIT(w, ",\"revenue_prev_90d\":");
    jw_scaled(w, n->revenue_prev_90d, 2);
    JW_LIT(w, ",\"cost_to_serve_12m\":");
    jw_scaled(w, n->cost_to_serve_12m, 2);
    JW_LIT(w, ",\"mrr\":");
    jw_scaled(w, c->mrr_cents, 2);
    JW_LIT(w, ",\"last_order\":");
    jw_time(w, c->last_order_ms);
    jw_char(w, '}');
}

static void write_sentiment_and_survey(jw_t *w, const customer_t *c, const state_counts_t *n)
{
    double mean;
    JW_LIT(w, "\"sentiment\":{\"last\":");
    if (c->has_sentiment)
        jw_scaled(w, c->sentiment_last, 3);
    else
        JW_LIT(w, "null");
    JW_LIT(w, ",\"contact_mean\":");
    if (customer_contact_sentiment(c, &mean))
        jw_fixed(w, mean, 3);
    else
        JW_LIT(w, "null");
    JW_LIT(w, ",\"mean_30d\":");
    if (n->sentiment_n_30d)
        jw_fixed(w, (double)n->sentiment_sum_30d / n->sentiment_n_30d / 1000.0, 3);
    else
        JW_LIT(w, "null");
    JW_LIT(w, "},\"survey\":{\"csat\":");
    if (c->csat_last)
        jw_int(w, c->csat_last);
    else
        JW_LIT(w, "null");
    JW_LIT(w, ",\"nps\":");
    if (c->nps_last >= 0)
        jw_int(w, c->nps_last);
    else
        JW_LIT(w, "null");
    jw_char(w, '}');
}

static void write_contact(jw_t *w, const state_current_contact_t *k)
{
    JW_LIT(w, "\"contact\":");
    if (k->state == STATE_CONTACT_NONE) {
        JW_LIT(w, "null");
        return;
    }
    JW_LIT(w, "{\"id\":");
    jw_str(w, k->id);
    JW_LIT(w, ",\"channel\":");
    jw_str_or_null(w, k->channel == STATE_CHANNEL_UNKNOWN
                          ? NULL
                          : event_channel_name((event_channel_t)k->channel));
    JW_LIT(w, ",\"queue\":");
    jw_str_or_null(w, k->queue);
    JW_LIT(w, ",\"agent_id\":");
    jw_str_or_null(w, k->agent_id);
    JW_LIT(w, ",\"state\":");
    if (k->state == STATE_CONTACT_QUEUED)
        JW_LIT(w, "\"queued\"");
    else
        JW_LIT(w, "\"active\"");
    JW_LIT(w, ",\"queued_since\":");
    jw_time(w, k->queued_ms);
    JW_LIT(w, ",\"started\":");
    jw_time(w, k->started_ms);
    jw_char(w, '}');
}

/* Open orders newest first: a selection by updated time over at most 16 orders. */
static void write_open_orders(jw_t *w, const customer_t *c)
{
    bool done[STATE_ORDERS_MAX] = {false};
    bool first = true;
    JW_LIT(w, "\"open_orders\":[");
    for (;;) {
        const state_order_t *o = NULL;
        int at = -1;
        for (int i = 0; i < c->n_orders; i++)
            if (!done[i] && order_is_open(c->orders[i].status) &&
                (!o || c->orders[i].updated_ms > o->updated_ms)) {
                o = &c->orders[i];
                at = i;
            }
        if (!o) break;
        done[at] = true;
        jw_cstr(w, first ? "{\"id\":" : ",{\"id\":");
        first = false;
        jw_str(w, o->id);
        JW_LIT(w, ",\"status\":");
        jw_str(w, state_order_status_name(o->status));
        JW_LIT(w, ",\"amount\":");
        if (o->has_amount)
            jw_scaled(w, o->amount_cents, 2);
        else
            JW_LIT(w, "null");
        JW_LIT(w, ",\"time\":");
        jw_time(w, o->updated_ms);
        jw_char(w, '}');
    }
    jw_char(w, ']');
}


/* ------------------------------------------------------------------------------------------
 * Document: internals ("w"). Times are ages in ms before "updated" (shorter than times),
 * except rule firings, which the caller's clock makes. Only entries that still count are
 * written, so a document read back equals the state it came from.
 *   ids  event id hashes, oldest first, 11 base64url characters each, concatenated
 *   c    contacts [hash, age, channel|null, flags (1 support, 2 abandoned, 4 ended),
 *        sentiment sum in thousandths, sentiment samples]
 *   cx, fp, cs   ages of complaints, failed payments, cancel signals
 *   m    money buckets [bucket number, revenue cents, margin cents, orders, cost cents]
 *   o    orders [id, status, amount cents|null, margin cents|null, placed age|null,
 *        updated age, taken back 0|1]
 *   r    rule firings [rule id, time in ms since the epoch]
 *   tl   entries in the customer's timeline list in Redis (at most STATE_TIMELINE_MAX)
 * ------------------------------------------------------------------------------------------ */

static void write_ids(jw_t *w, const customer_t *c)
{
    int first = c->n_event_ids < STATE_EVENT_IDS ? 0 : c->event_ids_next;
    char text[HASH_TEXT_LEN];
    JW_LIT(w, "\"ids\":\"");
    for (int i = 0; i < c->n_event_ids; i++) {
        hash_text(c->event_ids[(first + i) % STATE_EVENT_IDS], text);
        jw_raw(w, text, HASH_TEXT_LEN);
    }
    jw_char(w, '"');
}

static void write_contacts(jw_t *w, const customer_t *c)
{
    bool first = true;
    JW_LIT(w, ",\"c\":[");
    for (int i = 0; i < c->n_contacts; i++) {
        const state_contact_t *k = &c->contacts[i];
        if (!in_window(k->first_ms, c->clock_ms, CONTACT_KEEP_MS)) continue;
        jw_cstr(w, first ? "[" : ",[");
        first = false;
        jw_hash(w, k->id_hash);
        jw_char(w, ',');
        jw_int(w, c->clock_ms - k->first_ms);
        jw_char(w, ',');
        jw_str_or_null(w, k->channel == STATE_CHANNEL_UNKNOWN
                              ? NULL
                              : event_channel_name((event_channel_t)k->channel));
        jw_char(w, ',');
        jw_int(w, k->flags);
        jw_char(w, ',');
        jw_int(w, k->sentiment_sum);
        jw_char(w, ',');
        jw_int(w, k->sentiment_n);
        jw_char(w, ']');
    }
    jw_char(w, ']');
}

static void write_marks(jw_t *w, const char *name, const state_marks_t *m, int64_t clock,
                        int64_t keep_ms)
{
    bool first = true;
    jw_raw(w, name, strlen(name));
    for (int i = 0; i < m->n; i++) {
        if (!in_window(m->times_ms[i], clock, keep_ms)) continue;
        if (!first) jw_char(w, ',');
        first = false;
        jw_int(w, clock - m->times_ms[i]);
    }
    jw_char(w, ']');
}

static void write_buckets(jw_t *w, const customer_t *c)
{
    int32_t now = bucket_of(c->clock_ms);
    bool first = true;
    JW_LIT(w, ",\"m\":[");
    for (int i = 0; i < c->n_money; i++) {
        const state_money_bucket_t *m = &c->money[i];
        if (now - m->bucket >= BUCKETS_12M ||
            (!m->revenue_cents && !m->margin_cents && !m->orders && !m->cost_cents))
            continue;
        jw_cstr(w, first ? "[" : ",[");
        first = false;
        jw_int(w, m->bucket);
        jw_char(w, ',');
        jw_int(w, m->revenue_cents);
        jw_char(w, ',');
        jw_int(w, m->margin_cents);
        jw_char(w, ',');
        jw_int(w, m->orders);
        jw_char(w, ',');
        jw_int(w, m->cost_cents);
        jw_char(w, ']');
    }
    jw_char(w, ']');
}

static void write_orders(jw_t *w, const customer_t *c)
{
    JW_LIT(w, ",\"o\":[");
    for (int i = 0; i < c->n_orders; i++) {
        const state_order_t *o = &c->orders[i];
        jw_cstr(w, i ? ",[" : "[");
        jw_str(w, o->id);
        jw_char(w, ',');
        jw_str(w, state_order_status_name(o->status));
        if (o->has_amount) {
            jw_char(w, ',');
            jw_int(w, o->amount_cents);
            jw_char(w, ',');
            jw_int(w, o->margin_cents);
            jw_char(w, ',');
            jw_int(w, c->clock_ms - o->placed_ms);
        } else {
            JW_LIT(w, ",null,null,null");
        }
        jw_char(w, ',');
        jw_int(w, c->clock_ms - o->updated_ms);
        jw_cstr(w, o->taken_back ? ",1]" : ",0]");
    }
    jw_char(w, ']');
}

static void write_rules(jw_t *w, const customer_t *c)
{
    JW_LIT(w, ",\"r\":[");
    for (int i = 0; i < c->n_rules; i++) {
        jw_cstr(w, i ? ",[" : "[");
        jw_str(w, c->rules[i].id);
        jw_char(w, ',');
        jw_int(w, c->rules[i].fired_ms);
        jw_char(w, ']');
    }
    jw_char(w, ']');
}

static void write_internals(jw_t *w, const customer_t *c)
{
    JW_LIT(w, "\"w\":{");
    write_ids(w, c);
    if (c->clock_ms != STATE_TIME_NONE) { /* every ring is empty before the first event */
        write_contacts(w, c);
        write_marks(w, ",\"cx\":[", &c->complaints, c->clock_ms, COMPLAINT_KEEP_MS);
        write_marks(w, ",\"fp\":[", &c->failed_payments, c->clock_ms, MARK_KEEP_MS);
        write_marks(w, ",\"cs\":[", &c->cancel_signals, c->clock_ms, MARK_KEEP_MS);
        write_buckets(w, c);
        write_orders(w, c);
    }
    write_rules(w, c);
    JW_LIT(w, ",\"tl\":");
    jw_int(w, c->timeline_len);
    jw_char(w, '}');
}

int customer_to_json(const customer_t *c, const state_config_t *cfg, char *buf, size_t cap,
                     size_t *len)
{
    (void)cfg;
    if (cap == 0) return STATE_ENOSPC;
    jw_t w = {.p = buf, .end = buf + cap - 1};
    state_counts_t n;
    customer_counts(c, c->clock_ms, &n);

    JW_LIT(&w, "{\"v\":2,\"id\":");
    jw_str(&w, c->id);
    jw_cstr(&w,
            c->is_partner ? ",\"partner\":true,\"updated\":" : ",\"partner\":false,\"updated\":");
    jw_time(&w, c->clock_ms);
    JW_LIT(&w, ",\"offset\":");
    jw_int(&w, c->last_offset);
    jw_char(&w, ',');
    write_profile(&w, c);
    jw_char(&w, ',');
    write_scores(&w, &c->scores);
    jw_char(&w, ',');
    write_counts(&w, &n);
    jw_char(&w, ',');
    write_money(&w, c, &n);
    jw_char(&w, ',');
    write_sentiment_and_survey(&w, c, &n);
    jw_char(&w, ',');
    write_contact(&w, &c->contact);
    jw_char(&w, ',');
    write_open_orders(&w, c);
    jw_char(&w, ',');
    write_internals(&w, c);
    jw_char(&w, '}');

    *w.p = '\0';
    if (w.full) {
        buf[0] = '\0';
        return STATE_ENOSPC;
    }
    if (len) *len = (size_t)(w.p - buf);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Document: reading. Every field is checked for type and range, because Redis holds what
 * anyone wrote there; the first bad one fails the whole document, named by its path.
 * ------------------------------------------------------------------------------------------ */

typedef struct {
    char *err;
    size_t errlen;
    customer_t *c;
    bool out_of_memory;
} reader_t;

static int bad(reader_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The one setter of the error text. Returns STATE_EDOCUMENT. */
static int bad(reader_t *r, const char *fmt, ...)
{
    if (r->err && r->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err, r->errlen, fmt, ap);
        va_end(ap);
    }
    return STATE_EDOCUMENT;
}

static int no_memory(reader_t *r)
{
    r->out_of_memory = true;
    return bad(r, "document: out of memory");
}

static const cJSON *member(const cJSON *obj, const char *name)
{
    return cJSON_GetObjectItemCaseSensitive(obj, name);
}

/* The readers below set *out on every path (0 on failure), so that callers never hold an
 * unset value, whatever the compiler can prove. */

/* An integer number in [min, max]. */
static int read_int(reader_t *r, const cJSON *item, const char *path, int64_t min, int64_t max,
                    int64_t *out)
{
    double v = cJSON_IsNumber(item) ? item->valuedouble : NAN;
    *out = 0;
    if (!(v >= (double)min && v <= (double)max) || v != floor(v))
        return bad(r, "%s: must be an integer in [%lld, %lld]", path, (long long)min,
                   (long long)max);
    *out = (int64_t)v;
    return 0;
}

/* A finite number in [min, max]. */
static int read_number(reader_t *r, const cJSON *item, const char *path, double min, double max,
                       double *out)
{
    double v = cJSON_IsNumber(item) ? item->valuedouble : NAN;
    *out = 0;
    if (!(v >= min && v <= max)) return bad(r, "%s: must be a number in [%g, %g]", path, min, max);
    *out = v;
    return 0;
}

/* An amount in currency units, within the money bound. */
static int read_cents(reader_t *r, const cJSON *item, const char *path, int64_t *cents)
{
    double v = 0;
    if (read_number(r, item, path, -(double)CENTS_MAX / 100, (double)CENTS_MAX / 100, &v) < 0)
        return -1;
    *cents = to_cents(v);
    return 0;
}

/* A string (null as "" when nullable) of at most cap - 1 bytes: a key or text. */
static int read_string(reader_t *r, const cJSON *item, const char *path, bool nullable, bool key,
                       char *out, size_t cap)
{
    if (nullable && cJSON_IsNull(item)) {
        out[0] = '\0';
        return 0;
    }
    const char *s = cJSON_IsString(item) ? item->valuestring : NULL;
    if (!s || !s[0] || strlen(s) >= cap || (key ? !is_key(s, cap - 1) : !is_text(s)))
        return bad(r, "%s: must be a %s of 1-%zu bytes%s", path, key ? "key" : "text", cap - 1,
                   nullable ? " or null" : "");
    memcpy(out, s, strlen(s) + 1);
    return 0;
}

/* An RFC 3339 time within years 0000-9999, or null (STATE_TIME_NONE) when nullable. */
static int read_time(reader_t *r, const cJSON *item, const char *path, bool nullable, int64_t *out)
{
    if (nullable && cJSON_IsNull(item)) {
        *out = STATE_TIME_NONE;
        return 0;
    }
    if (!cJSON_IsString(item) || timefmt_parse(item->valuestring, out) < 0 || *out < TIME_MIN ||
        *out > TIME_MAX)
        return bad(r, "%s: must be an RFC 3339 time%s", path, nullable ? " or null" : "");
    return 0;
}

/* An age in ms before the clock: a time no later than it. */
static int read_age(reader_t *r, const cJSON *item, const char *path, int64_t *t)
{
    int64_t age = 0;
    if (read_int(r, item, path, 0, r->c->clock_ms - TIME_MIN, &age) < 0) return -1;
    *t = r->c->clock_ms - age;
    return 0;
}

static int read_bool(reader_t *r, const cJSON *item, const char *path, bool *out)
{
    if (!cJSON_IsBool(item)) return bad(r, "%s: must be true or false", path);
    *out = cJSON_IsTrue(item);
    return 0;
}

/* An array of at most max items (the bound of the ring it fills). */
static int read_array(reader_t *r, const cJSON *item, const char *path, int max, int *n)
{
    *n = 0;
    if (!cJSON_IsArray(item)) return bad(r, "%s: must be an array", path);
    *n = cJSON_GetArraySize(item);
    if (*n > max) return bad(r, "%s: more than %d items", path, max);
    return 0;
}

/* A fixed-length array (a "w" tuple). */
static int read_tuple(reader_t *r, const cJSON *item, const char *path, int len)
{
    if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) != len)
        return bad(r, "%s: must be an array of %d items", path, len);
    return 0;
}

static int read_channel(reader_t *r, const cJSON *item, const char *path, uint8_t *out)
{
    event_channel_t ch;
    if (cJSON_IsNull(item)) {
        *out = STATE_CHANNEL_UNKNOWN;
        return 0;
    }
    if (!cJSON_IsString(item) || !event_channel_from_name(item->valuestring, &ch))
        return bad(r, "%s: must be a channel name or null", path);
    *out = (uint8_t)ch;
    return 0;
}

static int read_header(reader_t *r, const cJSON *root)
{
    customer_t *c = r->c;
    int64_t v;
    char id[STATE_ID_MAX + 1];
    bool partner = false;
    if (read_int(r, member(root, "v"), "v", 1, 2, &v) < 0 ||
        read_string(r, member(root, "id"), "id", false, true, id, sizeof id) < 0)
        return -1;
    if (customer_init(c, id) < 0) return bad(r, "id: not a customer id");
    if (read_bool(r, member(root, "partner"), "partner", &partner) < 0) return -1;
    if (partner != c->is_partner)
        return bad(r, "partner: must be true exactly for a \"partner:\" id");
    if (read_time(r, member(root, "updated"), "updated", true, &c->clock_ms) < 0 ||
        read_int(r, member(root, "offset"), "offset", STATE_NO_OFFSET, INT64_MAX / 2,
                 &c->last_offset) < 0)
        return -1;
    return 0;
}

static int read_profile(reader_t *r, const cJSON *root)
{
    customer_t *c = r->c;
    const cJSON *p = member(root, "profile");
    if (!cJSON_IsObject(p)) return bad(r, "profile: must be an object");
    if (read_string(r, member(p, "name"), "profile.name", true, false, c->profile.name,
                    sizeof c->profile.name) < 0 ||
        read_string(r, member(p, "segment"), "profile.segment", true, false, c->profile.segment,
                    sizeof c->profile.segment) < 0 ||
        read_string(r, member(p, "language"), "profile.language", true, true, c->profile.language,
                    sizeof c->profile.language) < 0 ||
        read_time(r, member(p, "since"), "profile.since", true, &c->profile.since_ms) < 0)
        return -1;
    const cJSON *prefs = member(p, "preferences");
    if (cJSON_IsNull(prefs)) return 0;
    /* Printed back as event.c stored it: compact, by cJSON, which wants some slack beyond
     * the length it prints. PrintPreallocated takes a non-const item but only reads it. */
    char text[EVENT_PREFERENCES_MAX + 64];
    if (!cJSON_IsObject(prefs) ||
        !cJSON_PrintPreallocated((cJSON *)prefs, text, sizeof text, false) ||
        strlen(text) > EVENT_PREFERENCES_MAX || !is_text(text))
        return bad(r, "profile.preferences: must be an object of at most %d bytes or null",
                   EVENT_PREFERENCES_MAX);
    if (!(c->profile.preferences = text_dup(text, EVENT_PREFERENCES_MAX))) return no_memory(r);
    return 0;
}

static int read_factors(reader_t *r, const cJSON *list, const char *name, state_factor_t *f, int *n)
{
    char path[64];
    snprintf(path, sizeof path, "factors.%s", name);
    if (read_array(r, list, path, STATE_FACTORS_MAX, n) < 0) return -1;
    for (int i = 0; i < *n; i++) {
        const cJSON *item = cJSON_GetArrayItem(list, i);
        snprintf(path, sizeof path, "factors.%s[%d]", name, i);
        const cJSON *parts[4];
        if (cJSON_IsArray(item) && cJSON_GetArraySize(item) == 4) { /* version 2 */
            for (int k = 0; k < 4; k++)
                parts[k] = cJSON_GetArrayItem(item, k);
        } else if (cJSON_IsObject(item)) { /* version 1 */
            parts[0] = member(item, "feature"), parts[1] = member(item, "value");
            parts[2] = member(item, "weight"), parts[3] = member(item, "contribution");
        } else {
            return bad(r, "%s: must be [feature, value, weight, contribution]", path);
        }
        if (read_string(r, parts[0], path, false, true, f[i].feature, sizeof f[i].feature) < 0 ||
            read_number(r, parts[1], path, -1e16, 1e16, &f[i].value) < 0 ||
            read_number(r, parts[2], path, -1e16, 1e16, &f[i].weight) < 0 ||
            read_number(r, parts[3], path, -1e16, 1e16, &f[i].contribution) < 0)
            return -1;
    }
    return 0;
}

static int read_scores(reader_t *r, const cJSON *root)
{
    state_scores_t *s = &r->c->scores;
    const cJSON *tier = member(root, "tier"), *trend = member(root, "trend");
    const cJSON *factors = member(root, "factors");
    if (cJSON_IsNull(tier))
        return 0; /* not scored yet: the rest is null too, and written back so */
    if (!cJSON_IsString(tier) || strlen(tier->valuestring) != 1 ||
        !strchr("ABC", tier->valuestring[0]))
        return bad(r, "tier: must be \"A\", \"B\", \"C\" or null");
    s->computed = true;
    s->tier = tier->valuestring[0];
    int t = -1;
    for (int i = 0; i < 3 && cJSON_IsString(trend); i++)
        if (strcmp(trend->valuestring, trend_names[i]) == 0) t = i;
    if (t < 0) return bad(r, "trend: must be \"rising\", \"stable\" or \"falling\"");
    s->trend = (state_trend_t)t;
    if (read_number(r, member(root, "value"), "value", -1e16, 1e16, &s->value) < 0 ||
        read_number(r, member(root, "churn_risk"), "churn_risk", 0, 1, &s->churn_risk) < 0)
        return -1;
    if (!cJSON_IsObject(factors)) return bad(r, "factors: must be an object");
    if (read_factors(r, member(factors, "value"), "value", s->value_factors, &s->n_value_factors) <
            0 ||
        read_factors(r, member(factors, "churn"), "churn", s->churn_factors, &s->n_churn_factors) <
            0)
        return -1;
    return 0;
}

/* The values that are state, not derived: mrr, last order, last sentiment and survey. */
static int read_values(reader_t *r, const cJSON *root)
{
    customer_t *c = r->c;
    const cJSON *money = member(root, "money"), *sent = member(root, "sentiment");
    const cJSON *survey = member(root, "survey");
    int64_t v;
    if (!cJSON_IsObject(money) || !cJSON_IsObject(sent) || !cJSON_IsObject(survey))
        return bad(r, "money, sentiment and survey: must be objects");
    if (read_cents(r, member(money, "mrr"), "money.mrr", &c->mrr_cents) < 0 ||
        read_time(r, member(money, "last_order"), "money.last_order", true, &c->last_order_ms) < 0)
        return -1;
    const cJSON *last = member(sent, "last");
    if (!cJSON_IsNull(last)) {
        double score = 0;
        if (read_number(r, last, "sentiment.last", -1, 1, &score) < 0) return -1;
        c->has_sentiment = true;
        c->sentiment_last = (int16_t)lround(score * 1000.0);
    }
    const cJSON *csat = member(survey, "csat"), *nps = member(survey, "nps");
    if (!cJSON_IsNull(csat)) {
        if (read_int(r, csat, "survey.csat", 1, 5, &v) < 0) return -1;
        c->csat_last = (int)v;
    }
    if (!cJSON_IsNull(nps)) {
        if (read_int(r, nps, "survey.nps", 0, 10, &v) < 0) return -1;
        c->nps_last = (int)v;
    }
    return 0;
}

static int read_contact(reader_t *r, const cJSON *root)
{
    state_current_contact_t *k = &r->c->contact;
    const cJSON *item = member(root, "contact");
    if (cJSON_IsNull(item)) return 0;
    if (!cJSON_IsObject(item)) return bad(r, "contact: must be an object or null");
    const cJSON *state = member(item, "state");
    if (read_string(r, member(item, "id"), "contact.id", false, true, k->id, sizeof k->id) < 0 ||
        read_channel(r, member(item, "channel"), "contact.channel", &k->channel) < 0 ||
        read_string(r, member(item, "queue"), "contact.queue", true, true, k->queue,
                    sizeof k->queue) < 0 ||
        read_string(r, member(item, "agent_id"), "contact.agent_id", true, true, k->agent_id,
                    sizeof k->agent_id) < 0 ||
        read_time(r, member(item, "queued_since"), "contact.queued_since", true, &k->queued_ms) <
            0 ||
        read_time(r, member(item, "started"), "contact.started", true, &k->started_ms) < 0)
        return -1;
    if (cJSON_IsString(state) && strcmp(state->valuestring, "queued") == 0)
        k->state = STATE_CONTACT_QUEUED;
    else if (cJSON_IsString(state) && strcmp(state->valuestring, "active") == 0)
        k->state = STATE_CONTACT_ACTIVE;
    else
        return bad(r, "contact.state: must be \"queued\" or \"active\"");
    k->id_hash = state_hash(k->id);
    return 0;
}


static int read_ids(reader_t *r, const cJSON *w)
{
    customer_t *c = r->c;
    const cJSON *ids = member(w, "ids");
    size_t len = cJSON_IsString(ids) ? strlen(ids->valuestring) : 1;
    if (len % HASH_TEXT_LEN || len / HASH_TEXT_LEN > STATE_EVENT_IDS)
        return bad(r, "w.ids: must be a string of at most %d ids of %d characters", STATE_EVENT_IDS,
                   HASH_TEXT_LEN);
    int n = (int)(len / HASH_TEXT_LEN);
    if (n && !reserve_event_ids(c, n)) return no_memory(r);
    c->n_event_ids = n;
    for (int i = 0; i < c->n_event_ids; i++)
        if (!hash_from_text(ids->valuestring + i * HASH_TEXT_LEN, &c->event_ids[i]))
            return bad(r, "w.ids: id %d is not base64url", i);
    c->event_ids_next = c->n_event_ids % STATE_EVENT_IDS;
    return 0;
}

static int read_contacts(reader_t *r, const cJSON *w)
{
    customer_t *c = r->c;
    const cJSON *list = member(w, "c");
    char path[32];
    int count;
    if (read_array(r, list, "w.c", STATE_CONTACTS_MAX, &count) < 0) return -1;
    if (count && !reserve_contacts(c, count)) return no_memory(r);
    for (c->n_contacts = 0; c->n_contacts < count; c->n_contacts++) {
        int i = c->n_contacts;
        const cJSON *item = cJSON_GetArrayItem(list, i);
        state_contact_t *k = &c->contacts[i];
        int64_t flags, sum, n;
        snprintf(path, sizeof path, "w.c[%d]", i);
        if (read_tuple(r, item, path, 6) < 0) return -1;
        const cJSON *hash = cJSON_GetArrayItem(item, 0);
        if (!cJSON_IsString(hash) || strlen(hash->valuestring) != HASH_TEXT_LEN ||
            !hash_from_text(hash->valuestring, &k->id_hash))
            return bad(r, "%s: hash must be %d base64url characters", path, HASH_TEXT_LEN);
        if (read_age(r, cJSON_GetArrayItem(item, 1), path, &k->first_ms) < 0 ||
            read_channel(r, cJSON_GetArrayItem(item, 2), path, &k->channel) < 0 ||
            read_int(r, cJSON_GetArrayItem(item, 3), path, 0, STATE_CONTACT_FLAGS, &flags) < 0 ||
            read_int(r, cJSON_GetArrayItem(item, 4), path, -1000 * (int64_t)UINT16_MAX,
                     1000 * (int64_t)UINT16_MAX, &sum) < 0 ||
            read_int(r, cJSON_GetArrayItem(item, 5), path, 0, UINT16_MAX, &n) < 0)
            return -1;
        if (!in_window(k->first_ms, c->clock_ms, CONTACT_KEEP_MS) || sum < -1000 * n ||
            sum > 1000 * n)
            return bad(r, "%s: older than 30 days, or a sentiment sum out of range", path);
        k->flags = (uint8_t)flags;
        k->sentiment_sum = (int32_t)sum;
        k->sentiment_n = (uint16_t)n;
    }
    return 0;
}

static int read_marks(reader_t *r, const cJSON *w, const char *name, state_marks_t *m,
                      int64_t keep_ms)
{
    const cJSON *list = member(w, name);
    char path[32];
    snprintf(path, sizeof path, "w.%s", name);
    int n;
    if (read_array(r, list, path, STATE_MARKS_MAX, &n) < 0) return -1;
    if (n && !reserve_marks(m, n)) return no_memory(r);
    for (m->n = 0; m->n < n; m->n++) {
        int i = m->n;
        snprintf(path, sizeof path, "w.%s[%d]", name, i);
        if (read_age(r, cJSON_GetArrayItem(list, i), path, &m->times_ms[i]) < 0) return -1;
        if (!in_window(m->times_ms[i], r->c->clock_ms, keep_ms))
            return bad(r, "%s: older than its window", path);
    }
    return 0;
}

static int read_buckets(reader_t *r, const cJSON *w)
{
    customer_t *c = r->c;
    const cJSON *list = member(w, "m");
    int32_t now = bucket_of(c->clock_ms);
    char path[32];
    int n;
    if (read_array(r, list, "w.m", STATE_MONEY_BUCKETS, &n) < 0) return -1;
    if (n && !reserve_money(c, n)) return no_memory(r);
    for (int i = 0; i < n; i++) {
        const cJSON *item = cJSON_GetArrayItem(list, i);
        int64_t b, orders;
        snprintf(path, sizeof path, "w.m[%d]", i);
        if (read_tuple(r, item, path, 5) < 0 ||
            read_int(r, cJSON_GetArrayItem(item, 0), path, now - BUCKETS_12M + 1, now, &b) < 0)
            return -1;
        if (money_find(c, (int32_t)b))
            return bad(r, "%s: bucket %lld given twice", path, (long long)b);
        state_money_bucket_t *m = money_insert(c, (int32_t)b);
        if (!m) return no_memory(r); /* reserved above: cannot happen */
        if (read_int(r, cJSON_GetArrayItem(item, 1), path, -CENTS_MAX, CENTS_MAX,
                     &m->revenue_cents) < 0 ||
            read_int(r, cJSON_GetArrayItem(item, 2), path, -CENTS_MAX, CENTS_MAX,
                     &m->margin_cents) < 0 ||
            read_int(r, cJSON_GetArrayItem(item, 3), path, -BUCKET_ORDERS_MAX, BUCKET_ORDERS_MAX,
                     &orders) < 0 ||
            read_int(r, cJSON_GetArrayItem(item, 4), path, -CENTS_MAX, CENTS_MAX, &m->cost_cents) <
                0)
            return -1;
        m->orders = (int32_t)orders;
    }
    return 0;
}

static int read_order(reader_t *r, const cJSON *item, const char *path, state_order_t *o)
{
    const cJSON *status = cJSON_GetArrayItem(item, 1), *amount = cJSON_GetArrayItem(item, 2);
    int64_t taken_back;
    if (read_tuple(r, item, path, 7) < 0 ||
        read_string(r, cJSON_GetArrayItem(item, 0), path, false, true, o->id, sizeof o->id) < 0)
        return -1;
    if (!cJSON_IsString(status) || !order_status_from_name(status->valuestring, &o->status))
        return bad(r, "%s: status must be an order status", path);
    o->placed_ms = STATE_TIME_NONE;
    o->has_amount = !cJSON_IsNull(amount);
    if (o->has_amount && (read_int(r, amount, path, 0, CENTS_MAX, &o->amount_cents) < 0 ||
                          read_int(r, cJSON_GetArrayItem(item, 3), path, -CENTS_MAX, CENTS_MAX,
                                   &o->margin_cents) < 0 ||
                          read_age(r, cJSON_GetArrayItem(item, 4), path, &o->placed_ms) < 0))
        return -1;
    if (!o->has_amount &&
        (!cJSON_IsNull(cJSON_GetArrayItem(item, 3)) || !cJSON_IsNull(cJSON_GetArrayItem(item, 4))))
        return bad(r, "%s: margin and placed age must be null without an amount", path);
    if (read_age(r, cJSON_GetArrayItem(item, 5), path, &o->updated_ms) < 0 ||
        read_int(r, cJSON_GetArrayItem(item, 6), path, 0, 1, &taken_back) < 0)
        return -1;
    o->taken_back = taken_back;
    return 0;
}

static int read_orders(reader_t *r, const cJSON *w)
{
    customer_t *c = r->c;
    const cJSON *list = member(w, "o");
    char path[32];
    int n;
    if (read_array(r, list, "w.o", STATE_ORDERS_MAX, &n) < 0) return -1;
    if (n && !reserve_orders(c, n)) return no_memory(r);
    for (c->n_orders = 0; c->n_orders < n; c->n_orders++) {
        snprintf(path, sizeof path, "w.o[%d]", c->n_orders);
        if (read_order(r, cJSON_GetArrayItem(list, c->n_orders), path, &c->orders[c->n_orders]) <
            0)
            return -1;
    }
    return 0;
}

static int read_rules(reader_t *r, const cJSON *w)
{
    customer_t *c = r->c;
    const cJSON *list = member(w, "r");
    char path[32];
    int n;
    if (read_array(r, list, "w.r", STATE_RULES_MAX, &n) < 0) return -1;
    if (n && !reserve_rules(c, n)) return no_memory(r);
    c->n_rules = n;
    for (int i = 0; i < c->n_rules; i++) {
        const cJSON *item = cJSON_GetArrayItem(list, i);
        snprintf(path, sizeof path, "w.r[%d]", i);
        if (read_tuple(r, item, path, 2) < 0 ||
            read_string(r, cJSON_GetArrayItem(item, 0), path, false, false, c->rules[i].id,
                        sizeof c->rules[i].id) < 0 ||
            read_int(r, cJSON_GetArrayItem(item, 1), path, TIME_MIN, TIME_MAX,
                     &c->rules[i].fired_ms) < 0)
            return -1;
    }
    return 0;
}

static int read_internals(reader_t *r, const cJSON *root)
{
    const cJSON *w = member(root, "w");
    if (!cJSON_IsObject(w)) return bad(r, "w: must be an object");
    int64_t tl = 0;
    const cJSON *len = member(w, "tl");
    if (read_ids(r, w) < 0 || read_rules(r, w) < 0 ||
        (len && read_int(r, len, "w.tl", 0, STATE_TIMELINE_MAX, &tl) < 0))
        return -1;
    r->c->timeline_len = (int32_t)tl; /* absent (an older document): counted from 0 again */
    if (r->c->clock_ms == STATE_TIME_NONE) /* no event yet: nothing else was written */
        return 0;
    if (read_contacts(r, w) < 0 ||
        read_marks(r, w, "cx", &r->c->complaints, COMPLAINT_KEEP_MS) < 0 ||
        read_marks(r, w, "fp", &r->c->failed_payments, MARK_KEEP_MS) < 0 ||
        read_marks(r, w, "cs", &r->c->cancel_signals, MARK_KEEP_MS) < 0 || read_buckets(r, w) < 0 ||
        read_orders(r, w) < 0)
        return -1;
    return 0;
}

/* The same byte checks as event.c's check_bytes, for the same cJSON traps: a NUL or \u0000
 * cuts strings short, and a trailing comma makes cJSON 1.7.15 read past the buffer. */
static int check_bytes(reader_t *r, const char *json, size_t len)
{
    if (memchr(json, '\0', len)) return bad(r, "document: contains a NUL byte");
    for (const char *b = memchr(json, '\\', len); b;
         b = memchr(b, '\\', (size_t)(json + len - b))) {
        const char *run = b;
        while (b < json + len && *b == '\\')
            b++;
        if ((b - run) % 2 == 1 && json + len - b >= 5 && memcmp(b, "u0000", 5) == 0)
            return bad(r, "document: contains \\u0000");
    }
    size_t end = len;
    while (end > 0 && (unsigned char)json[end - 1] <= ' ')
        end--;
    if (end > 0 && json[end - 1] == ',') return bad(r, "document: ends with a comma");
    return 0;
}

static int read_document(reader_t *r, const cJSON *root)
{
    if (!cJSON_IsObject(root)) return bad(r, "document: not a JSON object");
    if (read_header(r, root) < 0 || read_profile(r, root) < 0 || read_scores(r, root) < 0 ||
        read_values(r, root) < 0 || read_contact(r, root) < 0 ||
        read_internals(r, root) < 0)
        return -1;
    /* Without a clock nothing can have been applied: only an empty customer is valid. */
    if (r->c->clock_ms == STATE_TIME_NONE &&
        (r->c->n_contacts || r->c->contact.state != STATE_CONTACT_NONE ||
         r->c->last_order_ms != STATE_TIME_NONE))
        return bad(r, "updated: null, but the document has events");
    return 0;
}

int customer_from_json(customer_t *c, const char *json, size_t len, char *err, size_t errlen)
{
    reader_t r = {.err = err, .errlen = errlen, .c = c};
    const char *end = NULL;
    int rc = -1;
    customer_clear(c);
    if (err && errlen) err[0] = '\0';
    if (len > STATE_JSON_MAX) {
        bad(&r, "document: %zu bytes, over the %d a customer can take", len, STATE_JSON_MAX);
    } else if (check_bytes(&r, json, len) == 0) {
        cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, false);
        size_t at = end ? (size_t)(end - json) : 0;
        while (root && at < len && (unsigned char)json[at] <= ' ')
            at++;
        if (!root)
            bad(&r, "document: malformed JSON near offset %zu", at);
        else if (at < len)
            bad(&r, "document: bytes after the value at offset %zu", at);
        else
            rc = read_document(&r, root);
        cJSON_Delete(root);
    }
    if (rc < 0) {
        customer_clear(c);
        return r.out_of_memory ? STATE_ENOMEM : STATE_EDOCUMENT;
    }
    return 0;
}
