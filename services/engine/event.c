/* event.c - the engine's event codec: bytes of one Kafka message in, a typed event_t or a
 * dead-letter reason out. See event.h for the contract.
 *
 * In order: cheap byte checks, one cJSON parse, then direct lookups of the attributes and of
 * the fields the event's type defines, each checked and its string copied into the event's
 * arena; the cJSON tree is freed before returning. Nothing is printed on the success path
 * except customer.profile's preferences, which are stored as compact JSON text. */
#include "event.h"

#include "utf8.h"

#include <assert.h>
#include <cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Names */

static const char *const reason_names[EVENT_REASON_COUNT] = {
    [EVENT_REASON_NONE] = "none",
    [EVENT_REASON_TOO_LARGE] = "too_large",
    [EVENT_REASON_MALFORMED_JSON] = "malformed_json",
    [EVENT_REASON_NOT_AN_OBJECT] = "not_an_object",
    [EVENT_REASON_MISSING_ATTRIBUTE] = "missing_attribute",
    [EVENT_REASON_BAD_ATTRIBUTE] = "bad_attribute",
    [EVENT_REASON_BAD_SPECVERSION] = "bad_specversion",
    [EVENT_REASON_UNKNOWN_TYPE] = "unknown_type",
    [EVENT_REASON_BAD_TIME] = "bad_time",
    [EVENT_REASON_TIME_IN_FUTURE] = "time_in_future",
    [EVENT_REASON_BAD_SUBJECT] = "bad_subject",
    [EVENT_REASON_MISSING_DATA] = "missing_data",
    [EVENT_REASON_BAD_DATA] = "bad_data",
    [EVENT_REASON_KEY_MISMATCH] = "key_mismatch",
};

static const char *const channel_names[EVENT_CHANNEL_COUNT] = {
    [EVENT_CHANNEL_PHONE] = "phone", [EVENT_CHANNEL_CHAT] = "chat",
    [EVENT_CHANNEL_EMAIL] = "email", [EVENT_CHANNEL_WEB] = "web",
    [EVENT_CHANNEL_MOBILE] = "mobile", [EVENT_CHANNEL_STORE] = "store",
    [EVENT_CHANNEL_KIOSK] = "kiosk", [EVENT_CHANNEL_FAX] = "fax",
    [EVENT_CHANNEL_FIELD] = "field",
};

static const char *const order_status_names[EVENT_ORDER_STATUS_COUNT] = {
    [EVENT_ORDER_SHIPPED] = "shipped",     [EVENT_ORDER_DELAYED] = "delayed",
    [EVENT_ORDER_CANCELLED] = "cancelled", [EVENT_ORDER_DELIVERED] = "delivered",
    [EVENT_ORDER_RETURNED] = "returned",   [EVENT_ORDER_OUT_OF_STOCK] = "out_of_stock",
};

static const char *const severity_names[EVENT_SEVERITY_COUNT] = {
    [EVENT_SEVERITY_LOW] = "low",
    [EVENT_SEVERITY_MEDIUM] = "medium",
    [EVENT_SEVERITY_HIGH] = "high",
    [EVENT_SEVERITY_CRITICAL] = "critical",
};

static const char *const subscription_action_names[EVENT_SUBSCRIPTION_ACTION_COUNT] = {
    [EVENT_SUBSCRIPTION_CANCEL_REQUESTED] = "cancel_requested",
    [EVENT_SUBSCRIPTION_DOWNGRADED] = "downgraded",
    [EVENT_SUBSCRIPTION_UPGRADED] = "upgraded",
    [EVENT_SUBSCRIPTION_RENEWED] = "renewed",
    [EVENT_SUBSCRIPTION_CANCELLED] = "cancelled",
};

static const char *const agent_state_names[EVENT_AGENT_STATE_COUNT] = {
    [EVENT_AGENT_AVAILABLE] = "available", [EVENT_AGENT_BUSY] = "busy",
    [EVENT_AGENT_WRAPUP] = "wrapup",       [EVENT_AGENT_AWAY] = "away",
    [EVENT_AGENT_OFFLINE] = "offline",
};

static const char *name_of(const char *const *names, int count, int value)
{
    return value >= 0 && value < count ? names[value] : "unknown";
}

/* Returns the index of name in names, or -1. */
static int index_of(const char *const *names, int count, const char *name)
{
    for (int i = 0; name && i < count; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

const char *event_reason_name(event_reason_t reason)
{
    return name_of(reason_names, EVENT_REASON_COUNT, (int)reason);
}

/* Each pair below is the same two lines over a different table: the enum types differ, so
 * callers get type-checked functions rather than one taking an int. */
#define NAME_FUNCTIONS(prefix, type, names, count)                                                 \
    const char *prefix##_name(type value)                                                          \
    {                                                                                              \
        return name_of(names, count, (int)value);                                                  \
    }                                                                                              \
    bool prefix##_from_name(const char *name, type *out)                                           \
    {                                                                                              \
        int i = index_of(names, count, name);                                                      \
        if (i < 0)                                                                                 \
            return false;                                                                          \
        *out = (type)i;                                                                            \
        return true;                                                                               \
    }

NAME_FUNCTIONS(event_channel, event_channel_t, channel_names, EVENT_CHANNEL_COUNT)
NAME_FUNCTIONS(event_order_status, event_order_status_t, order_status_names,
               EVENT_ORDER_STATUS_COUNT)
NAME_FUNCTIONS(event_severity, event_severity_t, severity_names, EVENT_SEVERITY_COUNT)
NAME_FUNCTIONS(event_subscription_action, event_subscription_action_t, subscription_action_names,
               EVENT_SUBSCRIPTION_ACTION_COUNT)
NAME_FUNCTIONS(event_agent_state, event_agent_state_t, agent_state_names, EVENT_AGENT_STATE_COUNT)

/* ---- Errors */

static int fail(event_error_t *err, event_reason_t reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The one setter of err. Returns -1, so callers can `return fail(...)`. */
static int fail(event_error_t *err, event_reason_t reason, const char *fmt, ...)
{
    va_list ap;
    err->reason = reason;
    va_start(ap, fmt);
    vsnprintf(err->detail, sizeof err->detail, fmt, ap);
    va_end(ap);
    return -1;
}

#define EXCERPT_SIZE 44

/* Copies the start of an untrusted string for an error message: at most 40 bytes, printable
 * ASCII kept and anything else shown as '?', so a detail is always one clean line. */
static const char *excerpt(const char *s, char out[EXCERPT_SIZE])
{
    size_t n = 0;
    for (; s[n] && n < EXCERPT_SIZE - 4; n++)
        out[n] = (s[n] >= 0x20 && s[n] < 0x7f) ? s[n] : '?';
    if (s[n]) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
    return out;
}

static const char *json_kind(const cJSON *item)
{
    if (cJSON_IsArray(item))
        return "an array";
    if (cJSON_IsString(item))
        return "a string";
    if (cJSON_IsNumber(item))
        return "a number";
    if (cJSON_IsBool(item))
        return "a boolean";
    if (cJSON_IsObject(item))
        return "an object";
    return "null";
}

/* ---- Strings */

/* [A-Za-z0-9._:@+-]: subjects and the ids and queue names in data (safe in Redis keys). */
static bool is_key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == ':' || c == '@' || c == '+' || c == '-';
}

typedef enum {
    CHARS_KEY,       /* [A-Za-z0-9._:@+-] */
    CHARS_PRINTABLE, /* printable ASCII without space: id, source */
    CHARS_TEXT,      /* UTF-8 without control characters */
} chars_t;

/* True when s is 1..max bytes of the given class; sets *len. */
static bool string_ok(const char *s, chars_t chars, size_t max, size_t *len)
{
    *len = strnlen(s, max + 1);
    if (*len == 0 || *len > max)
        return false;
    if (chars == CHARS_TEXT)
        return utf8_is_text((const unsigned char *)s, *len);
    for (size_t i = 0; i < *len; i++)
        if (chars == CHARS_KEY ? !is_key_char(s[i]) : (s[i] <= 0x20 || s[i] >= 0x7f))
            return false;
    return true;
}

/* Writes what a string of this class must be, for an error detail. */
static const char *string_rule(chars_t chars, size_t max, char *out, size_t cap)
{
    static const char *const classes[] = {
        [CHARS_KEY] = "characters of [A-Za-z0-9._:@+-]",
        [CHARS_PRINTABLE] = "printable ASCII characters, no spaces",
        [CHARS_TEXT] = "bytes of UTF-8 text without control characters",
    };
    snprintf(out, cap, "a string of 1-%zu %s", max, classes[chars]);
    return out;
}

/* ---- Arena */

/* cJSON_PrintPreallocated wants a little more room than it writes. */
#define PRINT_SLACK 64
#define STR(max) ((max) + 1)
#define ATTRIBUTES_BYTES (STR(EVENT_ID_MAX) + STR(EVENT_SOURCE_MAX) + STR(EVENT_SUBJECT_MAX))

/* The arena holds the largest event of each type without a runtime check failing. */
_Static_assert(ATTRIBUTES_BYTES + STR(EVENT_NAME_MAX) + STR(EVENT_SHORT_TEXT_MAX) +
                       STR(EVENT_LANGUAGE_MAX) + STR(EVENT_PREFERENCES_MAX) + PRINT_SLACK <=
                   EVENT_ARENA_SIZE,
               "customer.profile overflows the arena");
_Static_assert(ATTRIBUTES_BYTES + (1 + EVENT_QUEUES_MAX) * STR(EVENT_KEY_MAX) <= EVENT_ARENA_SIZE,
               "agent.state overflows the arena");
_Static_assert(ATTRIBUTES_BYTES + STR(EVENT_PAGE_MAX) + STR(EVENT_SHORT_TEXT_MAX) <=
                   EVENT_ARENA_SIZE,
               "web.visited overflows the arena");
_Static_assert(ATTRIBUTES_BYTES + 3 * STR(EVENT_KEY_MAX) + STR(EVENT_TEXT_MAX) <= EVENT_ARENA_SIZE,
               "contact.started (the largest contact event) overflows the arena");
_Static_assert(sizeof(event_t) <= 4096, "event_t should stay a few KiB");

/* Copies len bytes and a NUL into the arena. The bounds above make running out a bug. */
static const char *arena_copy(event_t *ev, const char *s, size_t len)
{
    assert(ev->arena_used + len + 1 <= sizeof ev->arena);
    char *dst = ev->arena + ev->arena_used;
    memcpy(dst, s, len);
    dst[len] = '\0';
    ev->arena_used += len + 1;
    return dst;
}

/* ---- Lookups and data fields */

typedef enum { OPTIONAL, REQUIRED } need_t;

typedef struct {
    event_t *ev;
    event_error_t *err;
    const cJSON *data; /* the data object, or NULL when absent */
} parser_t;

/* Finds the member called name; a null value counts as absent (*item = NULL). Returns -1
 * when the name occurs twice. O(members), which is a handful; the first byte is compared
 * inline because most names differ there and this runs ~10 times per event. */
static int find_member(const cJSON *object, const char *name, const cJSON **item)
{
    bool found = false;
    *item = NULL;
    for (const cJSON *c = object ? object->child : NULL; c; c = c->next) {
        if (!c->string || c->string[0] != name[0] || strcmp(c->string, name) != 0)
            continue;
        if (found)
            return -1;
        found = true;
        *item = cJSON_IsNull(c) ? NULL : c;
    }
    return 0;
}

/* Looks up data.<name>: *item is NULL when it is absent and optional. */
static int field(parser_t *p, const char *name, need_t need, const cJSON **item)
{
    if (find_member(p->data, name, item) < 0)
        return fail(p->err, EVENT_REASON_BAD_DATA, "duplicate field: data.%s", name);
    if (!*item && need == REQUIRED)
        return fail(p->err, EVENT_REASON_BAD_DATA, "missing field: data.%s", name);
    return 0;
}

static int get_string(parser_t *p, const char *name, need_t need, chars_t chars, size_t max,
                      const char **out)
{
    const cJSON *item;
    size_t len;
    char rule[80];
    if (field(p, name, need, &item) < 0)
        return -1;
    if (!item)
        return 0;
    if (!cJSON_IsString(item) || !string_ok(item->valuestring, chars, max, &len))
        return fail(p->err, EVENT_REASON_BAD_DATA, "data.%s: must be %s", name,
                    string_rule(chars, max, rule, sizeof rule));
    *out = arena_copy(p->ev, item->valuestring, len);
    return 0;
}

static int get_key(parser_t *p, const char *name, need_t need, const char **out)
{
    return get_string(p, name, need, CHARS_KEY, EVENT_KEY_MAX, out);
}

static int get_text(parser_t *p, const char *name, need_t need, size_t max, const char **out)
{
    return get_string(p, name, need, CHARS_TEXT, max, out);
}

/* A finite number in [min, max]; has (may be NULL for required fields) says it was there. */
static int get_number(parser_t *p, const char *name, need_t need, double min, double max,
                      double *out, bool *has)
{
    const cJSON *item;
    if (field(p, name, need, &item) < 0)
        return -1;
    if (!item)
        return 0;
    double v = item->valuedouble;
    if (!cJSON_IsNumber(item) || !isfinite(v) || v < min || v > max)
        return fail(p->err, EVENT_REASON_BAD_DATA, "data.%s: must be a number in [%.15g, %.15g]",
                    name, min, max);
    *out = v;
    if (has)
        *has = true;
    return 0;
}

/* An integral number in [min, max]: 4 and 4.0 are the same JSON number, 4.5 is not. */
static int get_int(parser_t *p, const char *name, need_t need, int min, int max, int *out,
                   bool *has)
{
    const cJSON *item;
    if (field(p, name, need, &item) < 0)
        return -1;
    if (!item)
        return 0;
    double v = item->valuedouble;
    if (!cJSON_IsNumber(item) || !(v >= min && v <= max) || v != floor(v))
        return fail(p->err, EVENT_REASON_BAD_DATA, "data.%s: must be an integer in [%d, %d]",
                    name, min, max);
    *out = (int)v;
    if (has)
        *has = true;
    return 0;
}

static int get_bool(parser_t *p, const char *name, bool *out, bool *has)
{
    const cJSON *item;
    if (field(p, name, OPTIONAL, &item) < 0)
        return -1;
    if (!item)
        return 0;
    if (!cJSON_IsBool(item))
        return fail(p->err, EVENT_REASON_BAD_DATA, "data.%s: must be true or false", name);
    *out = cJSON_IsTrue(item);
    *has = true;
    return 0;
}

/* A required string that is one of names; *out is its index. */
static int get_enum(parser_t *p, const char *name, const char *const *names, int count, int *out)
{
    const cJSON *item;
    if (field(p, name, REQUIRED, &item) < 0)
        return -1;
    *out = cJSON_IsString(item) ? index_of(names, count, item->valuestring) : -1;
    if (*out >= 0)
        return 0;
    char list[96];
    size_t n = 0;
    list[0] = '\0';
    for (int i = 0; i < count && n < sizeof list; i++)
        n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? "|" : "", names[i]);
    return fail(p->err, EVENT_REASON_BAD_DATA, "data.%s: must be one of %s", name, list);
}

/* ISO 4217-shaped: three upper-case letters. */
static int get_currency(parser_t *p, const char *name, char out[4])
{
    const cJSON *item;
    if (field(p, name, REQUIRED, &item) < 0)
        return -1;
    const char *s = cJSON_IsString(item) ? item->valuestring : "";
    for (int i = 0; i < 3; i++)
        if (s[i] < 'A' || s[i] > 'Z')
            return fail(p->err, EVENT_REASON_BAD_DATA,
                        "data.%s: must be three upper-case letters (ISO 4217)", name);
    if (s[3] != '\0')
        return fail(p->err, EVENT_REASON_BAD_DATA,
                    "data.%s: must be three upper-case letters (ISO 4217)", name);
    memcpy(out, s, 4);
    return 0;
}

static int get_date(parser_t *p, const char *name, int64_t *out_ms, bool *has)
{
    const cJSON *item;
    if (field(p, name, OPTIONAL, &item) < 0)
        return -1;
    if (!item)
        return 0;
    if (!cJSON_IsString(item) || timefmt_parse_date_or_time(item->valuestring, out_ms) < 0)
        return fail(p->err, EVENT_REASON_BAD_DATA,
                    "data.%s: must be an RFC 3339 date-time or date (2019-04-01)", name);
    *has = true;
    return 0;
}

/* An object, stored as compact JSON text of at most max bytes. cJSON prints it straight into
 * the arena, so a huge object costs at most max bytes of printing before it is refused. */
static int get_object_text(parser_t *p, const char *name, size_t max, const char **out)
{
    const cJSON *item;
    if (field(p, name, OPTIONAL, &item) < 0)
        return -1;
    if (!item)
        return 0;
    char *dst = p->ev->arena + p->ev->arena_used;
    int room = (int)(max + 1 + PRINT_SLACK);
    assert(p->ev->arena_used + (size_t)room <= sizeof p->ev->arena);
    /* PrintPreallocated takes a non-const item but only reads it. */
    if (!cJSON_IsObject(item) || !cJSON_PrintPreallocated((cJSON *)item, dst, room, false) ||
        strlen(dst) > max || !utf8_is_text((const unsigned char *)dst, strlen(dst)))
        return fail(p->err, EVENT_REASON_BAD_DATA,
                    "data.%s: must be an object of at most %zu bytes of UTF-8 JSON", name, max);
    *out = dst;
    p->ev->arena_used += strlen(dst) + 1;
    return 0;
}

/* An array of at most max keys (may be empty). */
static int get_key_list(parser_t *p, const char *name, int max, const char **items, int *count,
                        bool *has)
{
    const cJSON *item;
    size_t len;
    if (field(p, name, OPTIONAL, &item) < 0)
        return -1;
    if (!item)
        return 0;
    if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) > max)
        return fail(p->err, EVENT_REASON_BAD_DATA,
                    "data.%s: must be an array of at most %d strings", name, max);
    *count = 0;
    for (const cJSON *c = item->child; c; c = c->next) {
        if (!cJSON_IsString(c) || !string_ok(c->valuestring, CHARS_KEY, EVENT_KEY_MAX, &len))
            return fail(p->err, EVENT_REASON_BAD_DATA,
                        "data.%s[%d]: must be 1-%d characters of [A-Za-z0-9._:@+-]", name,
                        *count, EVENT_KEY_MAX);
        items[(*count)++] = arena_copy(p->ev, c->valuestring, len);
    }
    *has = true;
    return 0;
}

/* ---- Data, one function per type */

static int parse_contact_queued(parser_t *p)
{
    event_contact_queued_t *d = &p->ev->data.contact_queued;
    int channel;
    if (get_key(p, "contact_id", REQUIRED, &d->contact_id) < 0 ||
        get_enum(p, "channel", channel_names, EVENT_CHANNEL_COUNT, &channel) < 0 ||
        get_key(p, "queue", REQUIRED, &d->queue) < 0 ||
        get_text(p, "reason", OPTIONAL, EVENT_TEXT_MAX, &d->reason) < 0)
        return -1;
    d->channel = (event_channel_t)channel;
    return 0;
}

static int parse_contact_started(parser_t *p)
{
    event_contact_started_t *d = &p->ev->data.contact_started;
    int channel;
    if (get_key(p, "contact_id", REQUIRED, &d->contact_id) < 0 ||
        get_enum(p, "channel", channel_names, EVENT_CHANNEL_COUNT, &channel) < 0 ||
        get_key(p, "agent_id", REQUIRED, &d->agent_id) < 0 ||
        get_key(p, "queue", OPTIONAL, &d->queue) < 0 ||
        get_text(p, "reason", OPTIONAL, EVENT_TEXT_MAX, &d->reason) < 0)
        return -1;
    d->channel = (event_channel_t)channel;
    return 0;
}

static int parse_contact_ended(parser_t *p)
{
    event_contact_ended_t *d = &p->ev->data.contact_ended;
    if (get_key(p, "contact_id", REQUIRED, &d->contact_id) < 0 ||
        get_number(p, "duration_s", REQUIRED, 0, EVENT_DURATION_MAX_S, &d->duration_s, NULL) < 0 ||
        get_bool(p, "resolved", &d->resolved, &d->has_resolved) < 0 ||
        get_text(p, "wrapup", OPTIONAL, EVENT_TEXT_MAX, &d->wrapup) < 0)
        return -1;
    return 0;
}

static int parse_contact_abandoned(parser_t *p)
{
    event_contact_abandoned_t *d = &p->ev->data.contact_abandoned;
    if (get_key(p, "contact_id", REQUIRED, &d->contact_id) < 0 ||
        get_number(p, "wait_s", REQUIRED, 0, EVENT_DURATION_MAX_S, &d->wait_s, NULL) < 0)
        return -1;
    return 0;
}

static int parse_contact_transferred(parser_t *p)
{
    event_contact_transferred_t *d = &p->ev->data.contact_transferred;
    if (get_key(p, "contact_id", REQUIRED, &d->contact_id) < 0 ||
        get_key(p, "to_agent_id", OPTIONAL, &d->to_agent_id) < 0 ||
        get_key(p, "to_queue", OPTIONAL, &d->to_queue) < 0)
        return -1;
    if (!d->to_agent_id && !d->to_queue)
        return fail(p->err, EVENT_REASON_BAD_DATA, "data: needs to_agent_id or to_queue");
    return 0;
}

static int parse_sentiment_sampled(parser_t *p)
{
    event_sentiment_sampled_t *d = &p->ev->data.sentiment_sampled;
    if (get_key(p, "contact_id", REQUIRED, &d->contact_id) < 0 ||
        get_number(p, "score", REQUIRED, -1, 1, &d->score, NULL) < 0)
        return -1;
    return 0;
}

static int parse_order_placed(parser_t *p)
{
    event_order_placed_t *d = &p->ev->data.order_placed;
    if (get_key(p, "order_id", REQUIRED, &d->order_id) < 0 ||
        get_number(p, "amount", REQUIRED, 0, EVENT_AMOUNT_MAX, &d->amount, NULL) < 0 ||
        get_currency(p, "currency", d->currency) < 0 ||
        get_number(p, "margin", OPTIONAL, -EVENT_AMOUNT_MAX, EVENT_AMOUNT_MAX, &d->margin,
                   &d->has_margin) < 0)
        return -1;
    return 0;
}

static int parse_order_updated(parser_t *p)
{
    event_order_updated_t *d = &p->ev->data.order_updated;
    int status;
    if (get_key(p, "order_id", REQUIRED, &d->order_id) < 0 ||
        get_enum(p, "status", order_status_names, EVENT_ORDER_STATUS_COUNT, &status) < 0)
        return -1;
    d->status = (event_order_status_t)status;
    return 0;
}

static int parse_payment_failed(parser_t *p)
{
    event_payment_failed_t *d = &p->ev->data.payment_failed;
    if (get_number(p, "amount", REQUIRED, 0, EVENT_AMOUNT_MAX, &d->amount, NULL) < 0 ||
        get_text(p, "reason", OPTIONAL, EVENT_TEXT_MAX, &d->reason) < 0)
        return -1;
    return 0;
}

static int parse_complaint_filed(parser_t *p)
{
    event_complaint_filed_t *d = &p->ev->data.complaint_filed;
    int severity;
    if (get_text(p, "category", REQUIRED, EVENT_SHORT_TEXT_MAX, &d->category) < 0 ||
        get_enum(p, "severity", severity_names, EVENT_SEVERITY_COUNT, &severity) < 0)
        return -1;
    d->severity = (event_severity_t)severity;
    return 0;
}

static int parse_survey_answered(parser_t *p)
{
    event_survey_answered_t *d = &p->ev->data.survey_answered;
    if (get_int(p, "csat", OPTIONAL, 1, 5, &d->csat, &d->has_csat) < 0 ||
        get_int(p, "nps", OPTIONAL, 0, 10, &d->nps, &d->has_nps) < 0)
        return -1;
    if (!d->has_csat && !d->has_nps)
        return fail(p->err, EVENT_REASON_BAD_DATA, "data: needs csat or nps");
    return 0;
}

static int parse_web_visited(parser_t *p)
{
    event_web_visited_t *d = &p->ev->data.web_visited;
    if (get_text(p, "page", REQUIRED, EVENT_PAGE_MAX, &d->page) < 0 ||
        get_text(p, "intent", OPTIONAL, EVENT_SHORT_TEXT_MAX, &d->intent) < 0)
        return -1;
    return 0;
}

static int parse_subscription_changed(parser_t *p)
{
    event_subscription_changed_t *d = &p->ev->data.subscription_changed;
    int action;
    if (get_enum(p, "action", subscription_action_names, EVENT_SUBSCRIPTION_ACTION_COUNT,
                 &action) < 0 ||
        get_number(p, "mrr_delta", OPTIONAL, -EVENT_AMOUNT_MAX, EVENT_AMOUNT_MAX, &d->mrr_delta,
                   &d->has_mrr_delta) < 0)
        return -1;
    d->action = (event_subscription_action_t)action;
    return 0;
}

static int parse_customer_profile(parser_t *p)
{
    event_customer_profile_t *d = &p->ev->data.customer_profile;
    if (get_text(p, "name", OPTIONAL, EVENT_NAME_MAX, &d->name) < 0 ||
        get_text(p, "segment", OPTIONAL, EVENT_SHORT_TEXT_MAX, &d->segment) < 0 ||
        get_string(p, "language", OPTIONAL, CHARS_KEY, EVENT_LANGUAGE_MAX, &d->language) < 0 ||
        get_date(p, "since", &d->since_ms, &d->has_since) < 0 ||
        get_object_text(p, "preferences", EVENT_PREFERENCES_MAX, &d->preferences) < 0)
        return -1;
    return 0;
}

static int parse_agent_state(parser_t *p)
{
    event_agent_state_data_t *d = &p->ev->data.agent_state;
    int state;
    if (get_key(p, "agent_id", REQUIRED, &d->agent_id) < 0 ||
        get_enum(p, "state", agent_state_names, EVENT_AGENT_STATE_COUNT, &state) < 0 ||
        get_key_list(p, "queues", EVENT_QUEUES_MAX, d->queues, &d->n_queues, &d->has_queues) < 0)
        return -1;
    d->state = (event_agent_state_t)state;
    return 0;
}

typedef int (*data_parse_fn)(parser_t *p);

static const struct {
    const char *name;
    data_parse_fn parse;
    bool needs_data; /* the type has a required field */
} types[EVENT_TYPE_COUNT] = {
    [EVENT_CONTACT_QUEUED] = {"contact.queued", parse_contact_queued, true},
    [EVENT_CONTACT_STARTED] = {"contact.started", parse_contact_started, true},
    [EVENT_CONTACT_ENDED] = {"contact.ended", parse_contact_ended, true},
    [EVENT_CONTACT_ABANDONED] = {"contact.abandoned", parse_contact_abandoned, true},
    [EVENT_CONTACT_TRANSFERRED] = {"contact.transferred", parse_contact_transferred, true},
    [EVENT_SENTIMENT_SAMPLED] = {"sentiment.sampled", parse_sentiment_sampled, true},
    [EVENT_ORDER_PLACED] = {"order.placed", parse_order_placed, true},
    [EVENT_ORDER_UPDATED] = {"order.updated", parse_order_updated, true},
    [EVENT_PAYMENT_FAILED] = {"payment.failed", parse_payment_failed, true},
    [EVENT_COMPLAINT_FILED] = {"complaint.filed", parse_complaint_filed, true},
    [EVENT_SURVEY_ANSWERED] = {"survey.answered", parse_survey_answered, true},
    [EVENT_WEB_VISITED] = {"web.visited", parse_web_visited, true},
    [EVENT_SUBSCRIPTION_CHANGED] = {"subscription.changed", parse_subscription_changed, true},
    [EVENT_CUSTOMER_PROFILE] = {"customer.profile", parse_customer_profile, false},
    [EVENT_AGENT_STATE] = {"agent.state", parse_agent_state, true},
};

const char *event_type_name(event_type_t type)
{
    int i = (int)type;
    return i >= 0 && i < EVENT_TYPE_COUNT ? types[i].name : "unknown";
}

bool event_type_from_name(const char *name, event_type_t *out)
{
    for (int i = 0; name && i < EVENT_TYPE_COUNT; i++)
        if (strcmp(types[i].name, name) == 0) {
            *out = (event_type_t)i;
            return true;
        }
    return false;
}

/* ---- Attributes */

/* Looks up a required attribute. */
static int attribute(const cJSON *root, const char *name, const cJSON **item, event_error_t *err)
{
    if (find_member(root, name, item) < 0)
        return fail(err, EVENT_REASON_BAD_ATTRIBUTE, "duplicate attribute: %s", name);
    if (!*item)
        return fail(err, EVENT_REASON_MISSING_ATTRIBUTE, "missing attribute: %s", name);
    return 0;
}

static int parse_specversion(const cJSON *root, event_error_t *err)
{
    const cJSON *item;
    char shown[EXCERPT_SIZE];
    if (attribute(root, "specversion", &item, err) < 0)
        return -1;
    if (!cJSON_IsString(item))
        return fail(err, EVENT_REASON_BAD_SPECVERSION, "specversion: must be the string \"1.0\"");
    if (strcmp(item->valuestring, "1.0") != 0)
        return fail(err, EVENT_REASON_BAD_SPECVERSION, "specversion: must be \"1.0\", not \"%s\"",
                    excerpt(item->valuestring, shown));
    return 0;
}

/* id and source: bounded printable ASCII, copied into the arena. */
static int parse_name(const cJSON *root, const char *name, size_t max, event_t *ev,
                      event_error_t *err, const char **out)
{
    const cJSON *item;
    size_t len;
    char rule[80];
    if (attribute(root, name, &item, err) < 0)
        return -1;
    if (!cJSON_IsString(item) || !string_ok(item->valuestring, CHARS_PRINTABLE, max, &len))
        return fail(err, EVENT_REASON_BAD_ATTRIBUTE, "%s: must be %s", name,
                    string_rule(CHARS_PRINTABLE, max, rule, sizeof rule));
    *out = arena_copy(ev, item->valuestring, len);
    return 0;
}

static int parse_type(const cJSON *root, event_t *ev, event_error_t *err)
{
    const cJSON *item;
    char shown[EXCERPT_SIZE];
    if (attribute(root, "type", &item, err) < 0)
        return -1;
    if (!cJSON_IsString(item))
        return fail(err, EVENT_REASON_BAD_ATTRIBUTE, "type: must be a string");
    if (!event_type_from_name(item->valuestring, &ev->type))
        return fail(err, EVENT_REASON_UNKNOWN_TYPE, "unknown type: \"%s\"",
                    excerpt(item->valuestring, shown));
    return 0;
}

static bool has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The subject's charset and its prefixes: partner:<id> anywhere but agent.state, agent:<id>
 * there only. That <id> is data.agent_id is checked after data, by check_agent_subject. */
static int parse_subject(const cJSON *root, event_t *ev, event_error_t *err)
{
    const cJSON *item;
    size_t len;
    char rule[80];
    if (attribute(root, "subject", &item, err) < 0)
        return -1;
    if (!cJSON_IsString(item) || !string_ok(item->valuestring, CHARS_KEY, EVENT_SUBJECT_MAX, &len))
        return fail(err, EVENT_REASON_BAD_SUBJECT, "subject: must be %s",
                    string_rule(CHARS_KEY, EVENT_SUBJECT_MAX, rule, sizeof rule));
    const char *s = item->valuestring;
    ev->is_partner = has_prefix(s, "partner:");
    ev->is_agent = has_prefix(s, "agent:");
    if ((ev->is_partner && len == strlen("partner:")) || (ev->is_agent && len == strlen("agent:")))
        return fail(err, EVENT_REASON_BAD_SUBJECT, "subject: needs an id after the prefix");
    if (ev->is_agent && ev->type != EVENT_AGENT_STATE)
        return fail(err, EVENT_REASON_BAD_SUBJECT, "subject: agent:<id> is for agent.state only");
    if (!ev->is_agent && ev->type == EVENT_AGENT_STATE)
        return fail(err, EVENT_REASON_BAD_SUBJECT,
                    "subject: must be agent:<agent_id> for agent.state");
    ev->subject = arena_copy(ev, s, len);
    return 0;
}

static int check_agent_subject(const event_t *ev, event_error_t *err)
{
    if (ev->type != EVENT_AGENT_STATE ||
        strcmp(ev->subject + strlen("agent:"), ev->data.agent_state.agent_id) == 0)
        return 0;
    return fail(err, EVENT_REASON_BAD_SUBJECT, "subject: must be agent:<data.agent_id>");
}

static int parse_time(const cJSON *root, const event_limits_t *limits, event_t *ev,
                      event_error_t *err)
{
    const cJSON *item;
    char shown[EXCERPT_SIZE];
    if (attribute(root, "time", &item, err) < 0)
        return -1;
    if (!cJSON_IsString(item))
        return fail(err, EVENT_REASON_BAD_TIME, "time: must be an RFC 3339 string, not %s",
                    json_kind(item));
    if (timefmt_parse(item->valuestring, &ev->time_ms) < 0)
        return fail(err, EVENT_REASON_BAD_TIME, "time: not an RFC 3339 date-time: \"%s\"",
                    excerpt(item->valuestring, shown));
    /* Unsigned difference: now_ms comes from the caller and could be anything. */
    if (limits->max_future_ms >= 0 && ev->time_ms > limits->now_ms &&
        (uint64_t)ev->time_ms - (uint64_t)limits->now_ms > (uint64_t)limits->max_future_ms)
        return fail(err, EVENT_REASON_TIME_IN_FUTURE, "time: \"%s\" is over %lld ms ahead of now",
                    excerpt(item->valuestring, shown), (long long)limits->max_future_ms);
    return 0;
}

static int parse_data(const cJSON *root, event_t *ev, event_error_t *err)
{
    parser_t p = {.ev = ev, .err = err};
    if (find_member(root, "data", &p.data) < 0)
        return fail(err, EVENT_REASON_BAD_ATTRIBUTE, "duplicate attribute: data");
    if (!p.data && types[ev->type].needs_data)
        return fail(err, EVENT_REASON_MISSING_DATA, "missing data: %s needs a data object",
                    types[ev->type].name);
    if (p.data && !cJSON_IsObject(p.data))
        return fail(err, EVENT_REASON_BAD_DATA, "data: must be an object, not %s",
                    json_kind(p.data));
    return types[ev->type].parse(&p);
}

/* ---- Bytes */

/* Rejects, before cJSON sees them, inputs it gets wrong:
 *  - a NUL byte (never valid JSON) or a \u0000 escape would silently cut a C string short,
 *    so "id": "a\u0000b" and "id": "a\u0000c" would be the same idempotency key;
 *  - JSON ending in a comma makes cJSON 1.7.15 as released (fixed in 1.7.18 and in Debian's
 *    1.7.15-1+deb12u3; CVE-2023-53154) read one byte past a buffer that is not NUL-terminated
 *    while looking for the next member's name. The fuzzer finds that within seconds. */
static int check_bytes(const char *buf, size_t len, event_error_t *err)
{
    const char *end = buf + len, *nul = memchr(buf, '\0', len);
    if (nul)
        return fail(err, EVENT_REASON_MALFORMED_JSON, "malformed JSON: NUL byte at offset %zu",
                    (size_t)(nul - buf));
    for (const char *b = memchr(buf, '\\', len); b; b = memchr(b, '\\', (size_t)(end - b))) {
        const char *run = b;
        while (b < end && *b == '\\')
            b++;
        /* An odd run of backslashes escapes what follows; an even one is escaped backslashes. */
        if ((b - run) % 2 == 1 && end - b >= 5 && memcmp(b, "u0000", 5) == 0)
            return fail(err, EVENT_REASON_MALFORMED_JSON,
                        "malformed JSON: \\u0000 at offset %zu is not supported",
                        (size_t)(b - 1 - buf));
    }
    while (end > buf && (unsigned char)end[-1] <= ' ')
        end--;
    if (end > buf && end[-1] == ',')
        return fail(err, EVENT_REASON_MALFORMED_JSON, "malformed JSON: ends with a comma");
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * The tree's memory. cJSON mallocs every node and every string: about 25 allocations and
 * frees per event, a visible share of the engine's CPU. While an event is parsed, cJSON's
 * allocations come from a bump arena instead, emptied as a whole after the event (the tree
 * never outlives event_parse). Outside a parse, and for what does not fit, the hooks fall back
 * to malloc; free tells the two apart by address. The hooks are process-wide (cJSON has no
 * others), which is why they are installed once and pass everything else through. Under
 * AddressSanitizer the arena is poisoned but for live allocations, each followed by a
 * poisoned gap: a node used after its event, or overrun, is still reported.
 * ---------------------------------------------------------------------------------------- */

#if defined(__SANITIZE_ADDRESS__)
#define TREE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TREE_ASAN 1
#endif
#endif
#ifdef TREE_ASAN
#include <sanitizer/asan_interface.h>
#define TREE_GAP 16
#else
#define ASAN_POISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#define ASAN_UNPOISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#define TREE_GAP 0
#endif

#define TREE_ARENA_BYTES (256u * 1024) /* a 64 KiB event's tree fits, most of the time */

static struct {
    _Alignas(16) char bytes[TREE_ARENA_BYTES];
    size_t used;
    bool active;
    bool hooked;
} tree_arena;

static void *tree_malloc(size_t n)
{
    size_t rounded = ((n + 15) & ~(size_t)15) + TREE_GAP;
    if (tree_arena.active && rounded <= TREE_ARENA_BYTES - tree_arena.used) {
        void *p = tree_arena.bytes + tree_arena.used;
        tree_arena.used += rounded;
        ASAN_UNPOISON_MEMORY_REGION(p, n);
        return p;
    }
    return malloc(n);
}

static void tree_free(void *p)
{
    char *c = p;
    if (c >= tree_arena.bytes && c < tree_arena.bytes + TREE_ARENA_BYTES)
        return; /* the arena's: emptied after the event */
    free(p);
}

static void tree_arena_begin(void)
{
    if (!tree_arena.hooked) {
        cJSON_Hooks hooks = {tree_malloc, tree_free};
        cJSON_InitHooks(&hooks);
        ASAN_POISON_MEMORY_REGION(tree_arena.bytes, TREE_ARENA_BYTES);
        tree_arena.hooked = true;
    }
    tree_arena.used = 0;
    tree_arena.active = true;
}

static void tree_arena_end(void)
{
    ASAN_POISON_MEMORY_REGION(tree_arena.bytes, tree_arena.used);
    tree_arena.active = false;
    tree_arena.used = 0;
}

/* Parses the bytes into a tree, or fails with the offset where cJSON gave up. */
static cJSON *parse_json(const char *buf, size_t len, event_error_t *err)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, len, &end, false);
    size_t at = end ? (size_t)(end - buf) : 0;
    if (!root) {
        fail(err, EVENT_REASON_MALFORMED_JSON, "malformed JSON near offset %zu", at);
        return NULL;
    }
    /* cJSON stops after the value; only whitespace may follow it. */
    while (at < len && (buf[at] == ' ' || buf[at] == '\t' || buf[at] == '\n' || buf[at] == '\r'))
        at++;
    if (at < len) {
        cJSON_Delete(root);
        fail(err, EVENT_REASON_MALFORMED_JSON,
             "malformed JSON: bytes after the value at offset %zu", at);
        return NULL;
    }
    return root;
}

/* Attributes in a fixed order, so that one bad message always gets the same reason. */
static int parse_event(const cJSON *root, const event_limits_t *limits, event_t *ev,
                       event_error_t *err)
{
    if (!cJSON_IsObject(root))
        return fail(err, EVENT_REASON_NOT_AN_OBJECT, "message is %s, not an object",
                    json_kind(root));
    if (parse_specversion(root, err) < 0 ||
        parse_name(root, "id", EVENT_ID_MAX, ev, err, &ev->id) < 0 ||
        parse_name(root, "source", EVENT_SOURCE_MAX, ev, err, &ev->source) < 0 ||
        parse_type(root, ev, err) < 0 || parse_subject(root, ev, err) < 0 ||
        parse_time(root, limits, ev, err) < 0 || parse_data(root, ev, err) < 0 ||
        check_agent_subject(ev, err) < 0)
        return -1;
    return 0;
}

int event_parse(const char *buf, size_t len, const event_limits_t *limits, event_t *out,
                event_error_t *err)
{
    err->reason = EVENT_REASON_NONE;
    err->detail[0] = '\0';
    if (len > limits->max_bytes)
        return fail(err, EVENT_REASON_TOO_LARGE, "message is %zu bytes, over the limit of %zu",
                    len, limits->max_bytes);
    if (len == 0)
        return fail(err, EVENT_REASON_MALFORMED_JSON, "malformed JSON: empty message");
    if (check_bytes(buf, len, err) < 0)
        return -1;
    tree_arena_begin();
    cJSON *root = parse_json(buf, len, err);
    int rc = -1;
    if (root) {
        /* Everything but the arena's bytes: absent optional fields must read NULL/false/0. */
        memset(out, 0, offsetof(event_t, arena));
        rc = parse_event(root, limits, out, err);
        cJSON_Delete(root);
    }
    tree_arena_end();
    return rc;
}
