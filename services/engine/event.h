/* event.h - the engine's event codec: one Kafka message value in, one typed event_t out, or a
 * dead-letter reason.
 *
 * Events follow contract v1: CloudEvents 1.0 in JSON structured mode, e.g.
 *   {"specversion": "1.0", "id": "c-81f3", "source": "/acd/eu-1", "type": "contact.started",
 *    "time": "2026-11-30T17:02:20.123+01:00", "subject": "cust-1042",
 *    "data": {"contact_id": "k-77", "channel": "phone", "agent_id": "a-9"}}
 * event_parse takes the bytes, checks every attribute and every data field the type defines,
 * and copies the strings it keeps into an arena inside the event_t, so nothing it returns
 * points into the message. It does no I/O and keeps nothing between calls: it can be
 * unit-tested and fuzzed on its own.
 *
 * The message must be JSON as RFC 8259 defines it (jscan.h): no trailing commas, no leading
 * zeros, control characters in strings escaped, UTF-16 surrogates in pairs, at most 64 levels
 * of nesting and 65,536 values; and no NUL byte or \u0000 anywhere.
 *
 * Attributes (top level):
 *   specversion  required, exactly "1.0"
 *   id           required, 1-128 bytes of printable ASCII without spaces; the producer's
 *                unique id, which the engine uses as the idempotency key
 *   source       required, 1-256 bytes of printable ASCII without spaces (a URI-reference)
 *   type         required, one of the event_type_t names below
 *   time         required, RFC 3339 date-time with an offset ("Z", "+01:00"), optional
 *                fraction (up to 9 digits, truncated to ms); converted to ms since the epoch
 *                (UTC). A leap second (:60) folds into the next second.
 *   subject      required, 1-128 bytes of [A-Za-z0-9._:@+-]. The customer id; "partner:<id>"
 *                marks a partner account (is_partner). "agent:<id>" is used by agent.state
 *                only and always, and <id> must equal data.agent_id.
 *   data         an object; required by every type except customer.profile
 * Any other top-level attribute (CloudEvents extensions, datacontenttype, ...) is ignored,
 * and so is any data field a type does not define (producers may add fields before we read
 * them). A JSON null counts as absent, for attributes and data fields alike. A name given
 * twice is rejected, since parsers disagree on which copy wins.
 *
 * Data fields. "key" means 1-64 bytes of [A-Za-z0-9._:@+-] (ids and queue names, safe in
 * Redis keys); "text" means 1-N bytes of valid UTF-8 without control characters. A string
 * over its bound, an empty string, a wrong JSON type, a non-integer where an integer is due,
 * a number out of range or not finite (1e999) is a bad field: nothing is truncated or coerced.
 * Required fields are marked *, the rest are optional.
 *   contact.queued       contact_id* key, channel* enum, queue* key, reason text<=256
 *   contact.started      contact_id* key, channel* enum, agent_id* key, queue key (absent
 *                        for direct calls), reason text<=256
 *   contact.ended        contact_id* key, duration_s* number [0, 31536000], resolved bool,
 *                        wrapup text<=256
 *   contact.abandoned    contact_id* key, wait_s* number [0, 31536000]
 *   contact.transferred  contact_id* key, to_agent_id key, to_queue key; at least one of
 *                        to_agent_id and to_queue
 *   sentiment.sampled    contact_id* key, score* number [-1, 1]
 *   order.placed         order_id* key, amount* number [0, 1e12], currency* three uppercase
 *                        letters, margin number [-1e12, 1e12]
 *   order.updated        order_id* key, status* enum
 *   payment.failed       amount* number [0, 1e12], reason text<=256
 *   complaint.filed      category* text<=64, severity* enum
 *   survey.answered      csat integer [1, 5], nps integer [0, 10]; at least one of them
 *   web.visited          page* text<=512, intent text<=64 (e.g. "cancel", "compare")
 *   subscription.changed action* enum, mrr_delta number [-1e12, 1e12]
 *   customer.profile     an upsert: each present field overwrites, absent ones are kept (so a
 *                        field cannot be cleared in v1); data itself may be absent.
 *                        name text<=128, segment text<=64, language key<=35 (BCP 47),
 *                        since (RFC 3339 date-time or full-date "2019-04-01" -> ms UTC),
 *                        preferences object, kept as compact JSON text <=1024 bytes
 *                        (a number too large for a double is written there as null)
 *   agent.state          agent_id* key, state* enum, queues array of at most 16 keys
 *                        (absent: keep the agent's queues; [] : none)
 *
 * Bad input never crashes or asserts: it returns -1 with one reason (a stable snake_case
 * name, for a Kafka header and a metric label) and one line of printable ASCII naming the
 * attribute or field, e.g. "missing attribute: time", "data.score: must be a number in
 * [-1, 1]". Checks run in a fixed order and the first failure wins, so one message always
 * gets the same reason: size, bytes, JSON syntax, object, specversion, id, source, type,
 * subject, time, data (its fields in the order listed above), agent.state's subject. */
#ifndef INTEGRAL_EVENT_H
#define INTEGRAL_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "timefmt.h"

#define EVENT_MAX_BYTES_DEFAULT (64 * 1024) /* a larger message is too_large */

#define EVENT_ID_MAX 128
#define EVENT_SOURCE_MAX 256
#define EVENT_SUBJECT_MAX 128
#define EVENT_KEY_MAX 64 /* contact, order, agent ids and queue names */
#define EVENT_TEXT_MAX 256
#define EVENT_SHORT_TEXT_MAX 64 /* category, intent, segment */
#define EVENT_NAME_MAX 128
#define EVENT_PAGE_MAX 512
#define EVENT_LANGUAGE_MAX 35
#define EVENT_PREFERENCES_MAX 1024
#define EVENT_QUEUES_MAX 16
#define EVENT_DURATION_MAX_S 31536000.0 /* one year: a longer contact or wait is garbage */
#define EVENT_AMOUNT_MAX 1e12

/* Every string of one event fits: event.c checks the largest case at compile time. */
#define EVENT_ARENA_SIZE 2048

typedef enum {
    EVENT_CONTACT_QUEUED,
    EVENT_CONTACT_STARTED,
    EVENT_CONTACT_ENDED,
    EVENT_CONTACT_ABANDONED,
    EVENT_CONTACT_TRANSFERRED,
    EVENT_SENTIMENT_SAMPLED,
    EVENT_ORDER_PLACED,
    EVENT_ORDER_UPDATED,
    EVENT_PAYMENT_FAILED,
    EVENT_COMPLAINT_FILED,
    EVENT_SURVEY_ANSWERED,
    EVENT_WEB_VISITED,
    EVENT_SUBSCRIPTION_CHANGED,
    EVENT_CUSTOMER_PROFILE,
    EVENT_AGENT_STATE,
    EVENT_TYPE_COUNT
} event_type_t;

typedef enum {
    EVENT_CHANNEL_PHONE,
    EVENT_CHANNEL_CHAT,
    EVENT_CHANNEL_EMAIL,
    EVENT_CHANNEL_WEB,
    EVENT_CHANNEL_MOBILE,
    EVENT_CHANNEL_STORE,
    EVENT_CHANNEL_KIOSK,
    EVENT_CHANNEL_FAX,
    EVENT_CHANNEL_FIELD,
    EVENT_CHANNEL_COUNT
} event_channel_t;

typedef enum {
    EVENT_ORDER_SHIPPED,
    EVENT_ORDER_DELAYED,
    EVENT_ORDER_CANCELLED,
    EVENT_ORDER_DELIVERED,
    EVENT_ORDER_RETURNED,
    EVENT_ORDER_OUT_OF_STOCK,
    EVENT_ORDER_STATUS_COUNT
} event_order_status_t;

typedef enum {
    EVENT_SEVERITY_LOW,
    EVENT_SEVERITY_MEDIUM,
    EVENT_SEVERITY_HIGH,
    EVENT_SEVERITY_CRITICAL,
    EVENT_SEVERITY_COUNT
} event_severity_t;

typedef enum {
    EVENT_SUBSCRIPTION_CANCEL_REQUESTED,
    EVENT_SUBSCRIPTION_DOWNGRADED,
    EVENT_SUBSCRIPTION_UPGRADED,
    EVENT_SUBSCRIPTION_RENEWED,
    EVENT_SUBSCRIPTION_CANCELLED,
    EVENT_SUBSCRIPTION_ACTION_COUNT
} event_subscription_action_t;

typedef enum {
    EVENT_AGENT_AVAILABLE,
    EVENT_AGENT_BUSY,
    EVENT_AGENT_WRAPUP,
    EVENT_AGENT_AWAY,
    EVENT_AGENT_OFFLINE,
    EVENT_AGENT_STATE_COUNT
} event_agent_state_t;

/* Why a message goes to the dead-letter topic. The names (event_reason_name) are stable. */
typedef enum {
    EVENT_REASON_NONE,              /* "none": parsed */
    EVENT_REASON_TOO_LARGE,         /* over limits->max_bytes, checked before parsing */
    EVENT_REASON_MALFORMED_JSON,    /* not JSON, trailing bytes, a NUL byte or \u0000 */
    EVENT_REASON_NOT_AN_OBJECT,     /* JSON, but not an object */
    EVENT_REASON_MISSING_ATTRIBUTE, /* a required attribute is absent or null */
    EVENT_REASON_BAD_ATTRIBUTE,     /* id/source/type: wrong type, empty, too long, charset;
                                       or any attribute given twice */
    EVENT_REASON_BAD_SPECVERSION,   /* specversion is not "1.0" */
    EVENT_REASON_UNKNOWN_TYPE,      /* type is a string but not one of ours */
    EVENT_REASON_BAD_TIME,          /* time is not a valid RFC 3339 date-time */
    EVENT_REASON_TIME_IN_FUTURE,    /* time is over limits->max_future_ms after now_ms */
    EVENT_REASON_BAD_SUBJECT,       /* charset, length, or the partner:/agent: rules */
    EVENT_REASON_MISSING_DATA,      /* the type needs a data object and there is none */
    EVENT_REASON_BAD_DATA,          /* data is not an object, or a field is missing or bad */
    EVENT_REASON_KEY_MISMATCH,      /* the Kafka key is not the subject (set by the engine:
                                       event_parse never sees the key) */
    EVENT_REASON_COUNT
} event_reason_t;

typedef struct {
    event_reason_t reason;
    char detail[128]; /* one line naming the attribute or field; "" when reason is none */
} event_error_t;

typedef struct {
    size_t max_bytes;      /* a longer message is too_large (EVENT_MAX_BYTES_DEFAULT) */
    int64_t now_ms;        /* the caller's clock: event_parse reads none */
    int64_t max_future_ms; /* time may be at most this far after now_ms; < 0: no check */
} event_limits_t;

/* Per-type data. Strings point into the event's arena; an absent optional string is NULL.
 * An optional number or bool comes with a has_ flag; fields marked "required" are always set. */
typedef struct {
    const char *contact_id;  /* required */
    event_channel_t channel; /* required */
    const char *queue;       /* required */
    const char *reason;
} event_contact_queued_t;

typedef struct {
    const char *contact_id;  /* required */
    event_channel_t channel; /* required */
    const char *agent_id;    /* required */
    const char *queue;
    const char *reason;
} event_contact_started_t;

typedef struct {
    const char *contact_id; /* required */
    double duration_s;      /* required */
    bool has_resolved;
    bool resolved;
    const char *wrapup;
} event_contact_ended_t;

typedef struct {
    const char *contact_id; /* required */
    double wait_s;          /* required */
} event_contact_abandoned_t;

typedef struct {
    const char *contact_id; /* required */
    const char *to_agent_id; /* at least one of to_agent_id and to_queue is set */
    const char *to_queue;
} event_contact_transferred_t;

typedef struct {
    const char *contact_id; /* required */
    double score;           /* required, -1..1 */
} event_sentiment_sampled_t;

typedef struct {
    const char *order_id; /* required */
    double amount;        /* required */
    char currency[4];     /* required: "EUR" */
    bool has_margin;
    double margin;
} event_order_placed_t;

typedef struct {
    const char *order_id;        /* required */
    event_order_status_t status; /* required */
} event_order_updated_t;

typedef struct {
    double amount; /* required */
    const char *reason;
} event_payment_failed_t;

typedef struct {
    const char *category;      /* required */
    event_severity_t severity; /* required */
} event_complaint_filed_t;

typedef struct {
    bool has_csat; /* at least one of has_csat and has_nps */
    int csat;
    bool has_nps;
    int nps;
} event_survey_answered_t;

typedef struct {
    const char *page; /* required */
    const char *intent;
} event_web_visited_t;

typedef struct {
    event_subscription_action_t action; /* required */
    bool has_mrr_delta;
    double mrr_delta;
} event_subscription_changed_t;

typedef struct {
    const char *name;
    const char *segment;
    const char *language;
    bool has_since;
    int64_t since_ms;
    const char *preferences; /* compact JSON object text */
} event_customer_profile_t;

typedef struct {
    const char *agent_id;      /* required; the subject is "agent:" + agent_id */
    event_agent_state_t state; /* required */
    bool has_queues;           /* false: keep the agent's queues; true with 0: none */
    int n_queues;
    const char *queues[EVENT_QUEUES_MAX];
} event_agent_state_data_t;

/* One parsed event. It holds pointers into its own arena, so it must not be copied by
 * assignment or memcpy (the copy's strings would point into the original): pass a pointer,
 * and parse again to reuse it. */
typedef struct {
    event_type_t type;
    const char *id;
    const char *source;
    const char *subject;
    bool is_partner; /* subject is "partner:<id>" */
    bool is_agent;   /* subject is "agent:<id>" (type is EVENT_AGENT_STATE) */
    int64_t time_ms; /* UTC, ms since the epoch */
    union {
        event_contact_queued_t contact_queued;
        event_contact_started_t contact_started;
        event_contact_ended_t contact_ended;
        event_contact_abandoned_t contact_abandoned;
        event_contact_transferred_t contact_transferred;
        event_sentiment_sampled_t sentiment_sampled;
        event_order_placed_t order_placed;
        event_order_updated_t order_updated;
        event_payment_failed_t payment_failed;
        event_complaint_filed_t complaint_filed;
        event_survey_answered_t survey_answered;
        event_web_visited_t web_visited;
        event_subscription_changed_t subscription_changed;
        event_customer_profile_t customer_profile;
        event_agent_state_data_t agent_state;
    } data; /* the member named for type */
    size_t arena_used;
    char arena[EVENT_ARENA_SIZE];
} event_t;

/* Parses one message value: buf (borrowed, need not be NUL-terminated) of len bytes.
 * Returns 0 with *out filled and err->reason EVENT_REASON_NONE, or -1 with err set and *out
 * unspecified. limits is borrowed; nothing is kept after the call. Call it from one thread
 * at a time: the scanner's tokens live in a static array (1 MiB, too large for a stack). */
int event_parse(const char *buf, size_t len, const event_limits_t *limits, event_t *out,
                event_error_t *err);

/* Names: the contract's spelling ("contact.started", "out_of_stock", "bad_data"), static
 * strings; "unknown" for a value outside the enum. The _from_name functions take the same
 * spelling and return false, leaving *out alone, for anything else. */
const char *event_type_name(event_type_t type);
bool event_type_from_name(const char *name, event_type_t *out);
const char *event_reason_name(event_reason_t reason);
const char *event_channel_name(event_channel_t channel);
bool event_channel_from_name(const char *name, event_channel_t *out);
const char *event_order_status_name(event_order_status_t status);
bool event_order_status_from_name(const char *name, event_order_status_t *out);
const char *event_severity_name(event_severity_t severity);
bool event_severity_from_name(const char *name, event_severity_t *out);
const char *event_subscription_action_name(event_subscription_action_t action);
bool event_subscription_action_from_name(const char *name, event_subscription_action_t *out);
const char *event_agent_state_name(event_agent_state_t state);
bool event_agent_state_from_name(const char *name, event_agent_state_t *out);

#endif
