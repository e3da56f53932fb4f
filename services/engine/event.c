/* event.c - the engine's event codec: bytes of one Kafka message in, a typed event_t or a
 * dead-letter reason out. See event.h for the contract.
 *
 * In order: cheap byte checks, one strict scan of the JSON into tokens (jscan.c), then direct
 * lookups of the attributes and of the fields the event's type defines, each checked and its
 * string decoded straight into the event's arena. Nothing is printed on the success path
 * but customer.profile's preferences, which cJSON prints as compact JSON text. */
#include "event.h"

#include "jscan.h"
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

static const char *json_kind(const jscan_doc_t *doc, int item)
{
    switch ((jscan_type_t)doc->tokens[item].type) {
    case JSCAN_ARRAY: return "an array";
    case JSCAN_STRING: return "a string";
    case JSCAN_NUMBER: return "a number";
    case JSCAN_TRUE:
    case JSCAN_FALSE: return "a boolean";
    case JSCAN_OBJECT: return "an object";
    default: return "null";
    }
}

static bool is_type(const jscan_doc_t *doc, int item, jscan_type_t type)
{
    return doc->tokens[item].type == type;
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

/* True when s (len bytes) is 1..max bytes of the given class. */
static bool string_ok(const char *s, size_t len, chars_t chars, size_t max)
{
    if (len == 0 || len > max)
        return false;
    if (chars == CHARS_TEXT)
        return utf8_is_text((const unsigned char *)s, len);
    for (size_t i = 0; i < len; i++)
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

/* Decodes a string value into buf for a comparison or an error excerpt: cut to fit, and ""
 * for any other JSON type. Returns the whole length (cap or more: it was cut), -1 for
 * \u0000. */
static long scratch_text(const jscan_doc_t *doc, int item, char *buf, size_t cap)
{
    if (!is_type(doc, item, JSCAN_STRING)) {
        buf[0] = '\0';
        return 0;
    }
    return jscan_string(doc, (uint32_t)item, buf, cap);
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

/* The arena's free room for a value of at most max bytes and its NUL. The bounds above make
 * running out a bug. */
static char *arena_room(event_t *ev, size_t max)
{
    assert(ev->arena_used + max + 1 <= sizeof ev->arena);
    return ev->arena + ev->arena_used;
}

/* Decodes a string value straight into the arena and keeps it there when it is 1..max bytes
 * of the class; NULL otherwise (nothing kept). */
static const char *arena_string(event_t *ev, const jscan_doc_t *doc, int item, chars_t chars,
                                size_t max)
{
    if (!is_type(doc, item, JSCAN_STRING))
        return NULL;
    char *dst = arena_room(ev, max);
    long len = jscan_string(doc, (uint32_t)item, dst, max + 1);
    if (len < 0 || !string_ok(dst, (size_t)len, chars, max))
        return NULL;
    ev->arena_used += (size_t)len + 1;
    return dst;
}

/* ---- Lookups and data fields */

typedef enum { OPTIONAL, REQUIRED } need_t;

#define ROOT 0 /* the token of the message's object */
#define MEMBERS_MAX 24

/* An object's members, listed once: a lookup then compares names without walking the tokens
 * again. An object with more members, or with an escaped name, is looked up in the tokens. */
typedef struct {
    int obj;   /* the object's token, -1 when there is none */
    int count; /* -1: not listed */
    struct {
        const char *name;
        uint32_t len, value;
    } at[MEMBERS_MAX];
} members_t;

static void list_members(members_t *m, const jscan_doc_t *doc, int obj)
{
    const jscan_token_t *tok = doc->tokens;
    m->obj = obj;
    m->count = 0;
    if (obj < 0)
        return;
    for (uint32_t k = (uint32_t)obj + 1; k < tok[obj].next; k = tok[k + 1].next) {
        if (m->count == MEMBERS_MAX || tok[k].escaped) {
            m->count = -1;
            return;
        }
        m->at[m->count].name = doc->text + tok[k].start;
        m->at[m->count].len = tok[k].len;
        m->at[m->count].value = k + 1;
        m->count++;
    }
}

/* Whether a member's name (len bytes, no NUL: check_bytes) is the C string name. Names are
 * short and most differ in their first byte, so a plain loop beats strlen and memcmp calls. */
static bool name_is(const char *member, uint32_t len, const char *name)
{
    for (uint32_t i = 0; i < len; i++)
        if (member[i] != name[i]) /* stops at name's NUL, which member never has */
            return false;
    return name[len] == '\0';
}

/* Finds the member called name; a null value counts as absent (*item = -1). Returns -1 when
 * the name occurs twice. */
static int find_member(const jscan_doc_t *doc, const members_t *m, const char *name, int *item)
{
    int found = -1;
    *item = -1;
    if (m->obj < 0)
        return 0;
    if (m->count < 0) {
        found = jscan_member(doc, (uint32_t)m->obj, name, strlen(name));
    } else {
        for (int i = 0; i < m->count; i++) {
            if (!name_is(m->at[i].name, m->at[i].len, name))
                continue;
            if (found >= 0) {
                found = -2;
                break;
            }
            found = (int)m->at[i].value;
        }
    }
    if (found == -2)
        return -1;
    if (found >= 0 && !is_type(doc, found, JSCAN_NULL))
        *item = found;
    return 0;
}

typedef struct {
    event_t *ev;
    event_error_t *err;
    const jscan_doc_t *doc;
    members_t data; /* obj -1 when there is no data object */
} parser_t;

/* Looks up data.<name>: *item is -1 when it is absent and optional. */
static int field(parser_t *p, const char *name, need_t need, int *item)
{
    if (find_member(p->doc, &p->data, name, item) < 0)
        return fail(p->err, EVENT_REASON_BAD_DATA, "duplicate field: data.%s", name);
    if (*item < 0 && need == REQUIRED)
        return fail(p->err, EVENT_REASON_BAD_DATA, "missing field: data.%s", name);
    return 0;
}

static int get_string(parser_t *p, const char *name, need_t need, chars_t chars, size_t max,
                      const char **out)
{
    int item;
    char rule[80];
    if (field(p, name, need, &item) < 0)
        return -1;
    if (item < 0)
        return 0;
    *out = arena_string(p->ev, p->doc, item, chars, max);
    if (!*out)
        return fail(p->err, EVENT_REASON_BAD_DATA, "data.%s: must be %s", name,
                    string_rule(chars, max, rule, sizeof rule));
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
    int item;
    if (field(p, name, need, &item) < 0)
        return -1;
    if (item < 0)
        return 0;
    double v = is_type(p->doc, item, JSCAN_NUMBER) ? jscan_number(p->doc, (uint32_t)item) : NAN;
    if (!isfinite(v) || v < min || v > max)
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
    int item;
    if (field(p, name, need, &item) < 0)
        return -1;
    if (item < 0)
        return 0;
    double v = is_type(p->doc, item, JSCAN_NUMBER) ? jscan_number(p->doc, (uint32_t)item) : NAN;
    if (!(v >= min && v <= max) || v != floor(v))
        return fail(p->err, EVENT_REASON_BAD_DATA, "data.%s: must be an integer in [%d, %d]",
                    name, min, max);
    *out = (int)v;
    if (has)
        *has = true;
    return 0;
}

static int get_bool(parser_t *p, const char *name, bool *out, bool *has)
{
    int item;
    if (field(p, name, OPTIONAL, &item) < 0)
        return -1;
    if (item < 0)
        return 0;
    if (!is_type(p->doc, item, JSCAN_TRUE) && !is_type(p->doc, item, JSCAN_FALSE))
        return fail(p->err, EVENT_REASON_BAD_DATA, "data.%s: must be true or false", name);
    *out = is_type(p->doc, item, JSCAN_TRUE);
    *has = true;
    return 0;
}

/* A required string that is one of names; *out is its index. */
static int get_enum(parser_t *p, const char *name, const char *const *names, int count, int *out)
{
    int item;
    char text[32];
    if (field(p, name, REQUIRED, &item) < 0)
        return -1;
    long len = scratch_text(p->doc, item, text, sizeof text);
    *out = len >= 0 && (size_t)len < sizeof text ? index_of(names, count, text) : -1;
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
    int item;
    char s[8];
    if (field(p, name, REQUIRED, &item) < 0)
        return -1;
    long len = scratch_text(p->doc, item, s, sizeof s);
    for (int i = 0; i < 3; i++)
        if (len != 3 || s[i] < 'A' || s[i] > 'Z')
            return fail(p->err, EVENT_REASON_BAD_DATA,
                        "data.%s: must be three upper-case letters (ISO 4217)", name);
    memcpy(out, s, 4);
    return 0;
}

static int get_date(parser_t *p, const char *name, int64_t *out_ms, bool *has)
{
    int item;
    char text[64];
    if (field(p, name, OPTIONAL, &item) < 0)
        return -1;
    if (item < 0)
        return 0;
    long len = scratch_text(p->doc, item, text, sizeof text);
    if (!is_type(p->doc, item, JSCAN_STRING) || len < 0 || (size_t)len >= sizeof text ||
        timefmt_parse_date_or_time(text, out_ms) < 0)
        return fail(p->err, EVENT_REASON_BAD_DATA,
                    "data.%s: must be an RFC 3339 date-time or date (2019-04-01)", name);
    *has = true;
    return 0;
}

/* An object, stored as compact JSON text of at most max bytes, printed by cJSON: the form
 * the document keeps it in (state.c reads documents with cJSON), so a document read back and
 * written again is the same text. Profiles are rare: the scanner's span is parsed again. */
static int get_object_text(parser_t *p, const char *name, size_t max, const char **out)
{
    int item;
    if (field(p, name, OPTIONAL, &item) < 0)
        return -1;
    if (item < 0)
        return 0;
    const jscan_token_t *t = &p->doc->tokens[item];
    cJSON *object = is_type(p->doc, item, JSCAN_OBJECT)
                        ? cJSON_ParseWithLength(p->doc->text + t->start, t->len)
                        : NULL;
    char *dst = arena_room(p->ev, max + PRINT_SLACK);
    bool ok = object && cJSON_PrintPreallocated(object, dst, (int)(max + 1 + PRINT_SLACK), false) &&
              strlen(dst) <= max && utf8_is_text((const unsigned char *)dst, strlen(dst));
    cJSON_Delete(object);
    if (!ok)
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
    int item;
    if (field(p, name, OPTIONAL, &item) < 0)
        return -1;
    if (item < 0)
        return 0;
    if (!is_type(p->doc, item, JSCAN_ARRAY) ||
        jscan_array_size(p->doc, (uint32_t)item) > (uint32_t)max)
        return fail(p->err, EVENT_REASON_BAD_DATA,
                    "data.%s: must be an array of at most %d strings", name, max);
    *count = 0;
    const jscan_token_t *tok = p->doc->tokens;
    for (uint32_t e = (uint32_t)item + 1; e < tok[item].next; e = tok[e].next) {
        items[*count] = arena_string(p->ev, p->doc, (int)e, CHARS_KEY, EVENT_KEY_MAX);
        if (!items[*count])
            return fail(p->err, EVENT_REASON_BAD_DATA,
                        "data.%s[%d]: must be 1-%d characters of [A-Za-z0-9._:@+-]", name,
                        *count, EVENT_KEY_MAX);
        (*count)++;
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

/* The message: its tokens and its top-level members. */
typedef struct {
    const jscan_doc_t *doc;
    members_t root;
} message_t;

/* Looks up a required attribute. */
static int attribute(const message_t *msg, const char *name, int *item, event_error_t *err)
{
    if (find_member(msg->doc, &msg->root, name, item) < 0)
        return fail(err, EVENT_REASON_BAD_ATTRIBUTE, "duplicate attribute: %s", name);
    if (*item < 0)
        return fail(err, EVENT_REASON_MISSING_ATTRIBUTE, "missing attribute: %s", name);
    return 0;
}

static int parse_specversion(const message_t *msg, event_error_t *err)
{
    const jscan_doc_t *doc = msg->doc;
    int item;
    char text[EXCERPT_SIZE + 4], shown[EXCERPT_SIZE];
    if (attribute(msg, "specversion", &item, err) < 0)
        return -1;
    if (!is_type(doc, item, JSCAN_STRING))
        return fail(err, EVENT_REASON_BAD_SPECVERSION, "specversion: must be the string \"1.0\"");
    if (scratch_text(doc, item, text, sizeof text) != 3 || memcmp(text, "1.0", 3) != 0)
        return fail(err, EVENT_REASON_BAD_SPECVERSION, "specversion: must be \"1.0\", not \"%s\"",
                    excerpt(text, shown));
    return 0;
}

/* id and source: bounded printable ASCII, kept in the arena. */
static int parse_name(const message_t *msg, const char *name, size_t max, event_t *ev,
                      event_error_t *err, const char **out)
{
    const jscan_doc_t *doc = msg->doc;
    int item;
    char rule[80];
    if (attribute(msg, name, &item, err) < 0)
        return -1;
    *out = arena_string(ev, doc, item, CHARS_PRINTABLE, max);
    if (!*out)
        return fail(err, EVENT_REASON_BAD_ATTRIBUTE, "%s: must be %s", name,
                    string_rule(CHARS_PRINTABLE, max, rule, sizeof rule));
    return 0;
}

static int parse_type(const message_t *msg, event_t *ev, event_error_t *err)
{
    const jscan_doc_t *doc = msg->doc;
    int item;
    char text[EXCERPT_SIZE + 4], shown[EXCERPT_SIZE];
    if (attribute(msg, "type", &item, err) < 0)
        return -1;
    if (!is_type(doc, item, JSCAN_STRING))
        return fail(err, EVENT_REASON_BAD_ATTRIBUTE, "type: must be a string");
    long len = scratch_text(doc, item, text, sizeof text);
    if (len < 0 || (size_t)len >= sizeof text || !event_type_from_name(text, &ev->type))
        return fail(err, EVENT_REASON_UNKNOWN_TYPE, "unknown type: \"%s\"", excerpt(text, shown));
    return 0;
}

static bool has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The subject's charset and its prefixes: partner:<id> anywhere but agent.state, agent:<id>
 * there only. That <id> is data.agent_id is checked after data, by check_agent_subject. */
static int parse_subject(const message_t *msg, event_t *ev, event_error_t *err)
{
    const jscan_doc_t *doc = msg->doc;
    int item;
    char rule[80];
    if (attribute(msg, "subject", &item, err) < 0)
        return -1;
    const char *s = arena_string(ev, doc, item, CHARS_KEY, EVENT_SUBJECT_MAX);
    if (!s)
        return fail(err, EVENT_REASON_BAD_SUBJECT, "subject: must be %s",
                    string_rule(CHARS_KEY, EVENT_SUBJECT_MAX, rule, sizeof rule));
    size_t len = strlen(s);
    ev->is_partner = has_prefix(s, "partner:");
    ev->is_agent = has_prefix(s, "agent:");
    if ((ev->is_partner && len == strlen("partner:")) || (ev->is_agent && len == strlen("agent:")))
        return fail(err, EVENT_REASON_BAD_SUBJECT, "subject: needs an id after the prefix");
    if (ev->is_agent && ev->type != EVENT_AGENT_STATE)
        return fail(err, EVENT_REASON_BAD_SUBJECT, "subject: agent:<id> is for agent.state only");
    if (!ev->is_agent && ev->type == EVENT_AGENT_STATE)
        return fail(err, EVENT_REASON_BAD_SUBJECT,
                    "subject: must be agent:<agent_id> for agent.state");
    ev->subject = s;
    return 0;
}

static int check_agent_subject(const event_t *ev, event_error_t *err)
{
    if (ev->type != EVENT_AGENT_STATE ||
        strcmp(ev->subject + strlen("agent:"), ev->data.agent_state.agent_id) == 0)
        return 0;
    return fail(err, EVENT_REASON_BAD_SUBJECT, "subject: must be agent:<data.agent_id>");
}

static int parse_time(const message_t *msg, const event_limits_t *limits, event_t *ev,
                      event_error_t *err)
{
    const jscan_doc_t *doc = msg->doc;
    int item;
    char text[64], shown[EXCERPT_SIZE];
    if (attribute(msg, "time", &item, err) < 0)
        return -1;
    if (!is_type(doc, item, JSCAN_STRING))
        return fail(err, EVENT_REASON_BAD_TIME, "time: must be an RFC 3339 string, not %s",
                    json_kind(doc, item));
    long len = scratch_text(doc, item, text, sizeof text);
    if (len < 0 || (size_t)len >= sizeof text || timefmt_parse(text, &ev->time_ms) < 0)
        return fail(err, EVENT_REASON_BAD_TIME, "time: not an RFC 3339 date-time: \"%s\"",
                    excerpt(text, shown));
    /* Unsigned difference: now_ms comes from the caller and could be anything. */
    if (limits->max_future_ms >= 0 && ev->time_ms > limits->now_ms &&
        (uint64_t)ev->time_ms - (uint64_t)limits->now_ms > (uint64_t)limits->max_future_ms)
        return fail(err, EVENT_REASON_TIME_IN_FUTURE, "time: \"%s\" is over %lld ms ahead of now",
                    excerpt(text, shown), (long long)limits->max_future_ms);
    return 0;
}

static int parse_data(const message_t *msg, event_t *ev, event_error_t *err)
{
    parser_t p = {.ev = ev, .err = err, .doc = msg->doc};
    int data;
    if (find_member(msg->doc, &msg->root, "data", &data) < 0)
        return fail(err, EVENT_REASON_BAD_ATTRIBUTE, "duplicate attribute: data");
    if (data < 0 && types[ev->type].needs_data)
        return fail(err, EVENT_REASON_MISSING_DATA, "missing data: %s needs a data object",
                    types[ev->type].name);
    if (data >= 0 && !is_type(msg->doc, data, JSCAN_OBJECT))
        return fail(err, EVENT_REASON_BAD_DATA, "data: must be an object, not %s",
                    json_kind(msg->doc, data));
    list_members(&p.data, msg->doc, data);
    return types[ev->type].parse(&p);
}

/* ---- Bytes */

/* Rejects a NUL byte (never valid JSON) and a \u0000 escape, before the JSON syntax: either
 * would cut a C string short, so "id": "a\u0000b" and "id": "a\u0000c" would be the same
 * idempotency key. */
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
    return 0;
}

/* The tokens of the message being parsed: 1 MiB, so not on the stack; the engine parses on
 * one thread. */
static jscan_token_t scan_tokens[JSCAN_TOKENS_MAX];

static int parse_json(const char *buf, size_t len, jscan_doc_t *doc, event_error_t *err)
{
    size_t at;
    const char *what;
    if (jscan_parse(buf, len, scan_tokens, JSCAN_TOKENS_MAX, doc, &at, &what) < 0)
        return fail(err, EVENT_REASON_MALFORMED_JSON, "malformed JSON near offset %zu: %s", at,
                    what);
    return 0;
}

/* Attributes in a fixed order, so that one bad message always gets the same reason. */
static int parse_event(const jscan_doc_t *doc, const event_limits_t *limits, event_t *ev,
                       event_error_t *err)
{
    message_t msg = {.doc = doc};
    if (!is_type(doc, ROOT, JSCAN_OBJECT))
        return fail(err, EVENT_REASON_NOT_AN_OBJECT, "message is %s, not an object",
                    json_kind(doc, ROOT));
    list_members(&msg.root, doc, ROOT);
    if (parse_specversion(&msg, err) < 0 ||
        parse_name(&msg, "id", EVENT_ID_MAX, ev, err, &ev->id) < 0 ||
        parse_name(&msg, "source", EVENT_SOURCE_MAX, ev, err, &ev->source) < 0 ||
        parse_type(&msg, ev, err) < 0 || parse_subject(&msg, ev, err) < 0 ||
        parse_time(&msg, limits, ev, err) < 0 || parse_data(&msg, ev, err) < 0 ||
        check_agent_subject(ev, err) < 0)
        return -1;
    return 0;
}

int event_parse(const char *buf, size_t len, const event_limits_t *limits, event_t *out,
                event_error_t *err)
{
    jscan_doc_t doc;
    err->reason = EVENT_REASON_NONE;
    err->detail[0] = '\0';
    if (len > limits->max_bytes)
        return fail(err, EVENT_REASON_TOO_LARGE, "message is %zu bytes, over the limit of %zu",
                    len, limits->max_bytes);
    if (len == 0)
        return fail(err, EVENT_REASON_MALFORMED_JSON, "malformed JSON: empty message");
    if (check_bytes(buf, len, err) < 0 || parse_json(buf, len, &doc, err) < 0)
        return -1;
    /* Everything but the arena's bytes: absent optional fields must read NULL/false/0. */
    memset(out, 0, offsetof(event_t, arena));
    return parse_event(&doc, limits, out, err);
}
