/* test_engine_state.c - one customer's state (services/engine/state.c): what each event does
 * to the counts, windows, orders, current contact and timeline; idempotency; and the JSON
 * document: exact round trips, resuming from a document, bounds, and garbage refused. */
#include "event.h"
#include "scores.h"
#include "state.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T0 INT64_C(1796058140000) /* 2026-11-30T17:02:20Z */
#define DAY STATE_DAY_MS
#define HOUR (DAY / 24)
#define SUBJECT "cust-1042"

static customer_t cust, other;
static state_config_t cfg;
static event_t ev;
static apply_result_t res;
static int64_t next_offset;
static int next_id;
static char doc[STATE_JSON_MAX], doc2[STATE_JSON_MAX];
static char err[256];

static int setup(void **state)
{
    (void)state;
    scores_config_init(&cfg);
    assert_int_equal(customer_init(&cust, SUBJECT), 0);
    next_offset = 100;
    next_id = 0;
    return 0;
}

/* ---- Helpers */

/* Parses one event: id, subject, type, time and data (JSON text or NULL). */
static void parse_event(const char *id, const char *subject, const char *type, int64_t t,
                        const char *data)
{
    static char msg[4096];
    char time[TIMEFMT_TEXT_SIZE];
    event_limits_t limits = {EVENT_MAX_BYTES_DEFAULT, 0, -1};
    event_error_t perr;
    assert_int_equal(timefmt_format(t, time, sizeof time), 24);
    int n = snprintf(msg, sizeof msg,
                     "{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"/test\",\"type\":\"%s\","
                     "\"time\":\"%s\",\"subject\":\"%s\"%s%s}",
                     id, type, time, subject, data ? ",\"data\":" : "", data ? data : "");
    assert_true(n > 0 && (size_t)n < sizeof msg);
    if (event_parse(msg, (size_t)n, &limits, &ev, &perr) != 0)
        fail_msg("event rejected (%s): %s", perr.detail, msg);
}

/* Applies an event with a fresh id and the next offset to c. */
static int apply_to(customer_t *c, const char *type, int64_t t, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int apply_to(customer_t *c, const char *type, int64_t t, const char *fmt, ...)
{
    char data[2048], id[32];
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(data, sizeof data, fmt, ap);
        va_end(ap);
    }
    snprintf(id, sizeof id, "e-%d", ++next_id);
    parse_event(id, c->id, type, t, fmt ? data : NULL);
    return customer_apply(c, &ev, next_offset++, &cfg, &res);
}

#define apply(...) apply_to(&cust, __VA_ARGS__)

static void queued(const char *contact, int64_t t, const char *channel, const char *reason)
{
    char data[256];
    snprintf(data, sizeof data,
             "{\"contact_id\":\"%s\",\"channel\":\"%s\",\"queue\":\"billing\"%s%s%s}", contact,
             channel, reason ? ",\"reason\":\"" : "", reason ? reason : "", reason ? "\"" : "");
    assert_int_equal(apply("contact.queued", t, "%s", data), STATE_APPLIED);
}

static state_counts_t counts(void)
{
    state_counts_t n;
    customer_counts(&cust, cust.clock_ms, &n);
    return n;
}

static size_t to_json(const customer_t *c, char *buf)
{
    size_t len = 0;
    int rc = customer_to_json(c, &cfg, buf, STATE_JSON_MAX, &len);
    if (rc != 0) fail_msg("customer_to_json: %s", state_strerror(rc));
    assert_int_equal(strlen(buf), len);
    return len;
}


/* Writes c, reads it back into `other`, writes that, and asserts both documents are equal. */
static void assert_round_trip(const customer_t *c)
{
    size_t len = to_json(c, doc);
    if (customer_from_json(&other, doc, len, err, sizeof err) != 0)
        fail_msg("own document refused: %s\n%s", err, doc);
    to_json(&other, doc2);
    assert_string_equal(doc2, doc);
}

/* A customer with something in every part of the state. */
static void build_rich_customer(customer_t *c)
{
    apply_to(c, "customer.profile", T0 - 40 * DAY,
             "{\"name\":\"Ada \\\"the\\\" Lovelace\",\"segment\":\"gold\",\"language\":\"en-GB\","
             "\"since\":\"2019-04-01\",\"preferences\":{\"channel\":\"email\",\"n\":[1,2.5,"
             "\"\\u00e9\"]}}");
    apply_to(c, "order.placed", T0 - 100 * DAY,
             "{\"order_id\":\"o-1\",\"amount\":120.5,\"currency\":\"EUR\",\"margin\":30.25}");
    apply_to(c, "order.placed", T0 - 5 * DAY,
             "{\"order_id\":\"o-17\",\"amount\":59.9,\"currency\":\"EUR\"}");
    apply_to(c, "order.updated", T0 - 4 * DAY, "{\"order_id\":\"o-17\",\"status\":\"delayed\"}");
    apply_to(c, "order.placed", T0 - 3 * DAY,
             "{\"order_id\":\"o-18\",\"amount\":10,\"currency\":\"EUR\",\"margin\":-2}");
    apply_to(c, "order.updated", T0 - 2 * DAY, "{\"order_id\":\"o-18\",\"status\":\"delivered\"}");
    apply_to(c, "order.updated", T0 - 2 * DAY, "{\"order_id\":\"o-9\",\"status\":\"shipped\"}");
    apply_to(c, "payment.failed", T0 - 3 * DAY, "{\"amount\":59.9,\"reason\":\"card expired\"}");
    apply_to(c, "complaint.filed", T0 - 60 * DAY,
             "{\"category\":\"late delivery\",\"severity\":\"high\"}");
    apply_to(c, "survey.answered", T0 - 20 * DAY, "{\"csat\":2,\"nps\":3}");
    apply_to(c, "web.visited", T0 - 1 * DAY,
             "{\"page\":\"/account/cancel\",\"intent\":\"cancel\"}");
    apply_to(c, "subscription.changed", T0 - 1 * DAY,
             "{\"action\":\"downgraded\",\"mrr_delta\":-10.5}");
    apply_to(c, "subscription.changed", T0 - 50 * DAY,
             "{\"action\":\"upgraded\",\"mrr_delta\":30}");
    apply_to(c, "contact.queued", T0 - 2 * HOUR,
             "{\"contact_id\":\"k-1\",\"channel\":\"chat\",\"queue\":\"support\",\"reason\":"
             "\"technical\"}");
    apply_to(c, "contact.started", T0 - 2 * HOUR + 60000,
             "{\"contact_id\":\"k-1\",\"channel\":\"chat\",\"agent_id\":\"a-2\"}");
    apply_to(c, "sentiment.sampled", T0 - 2 * HOUR + 90000,
             "{\"contact_id\":\"k-1\",\"score\":-0.25}");
    apply_to(c, "contact.ended", T0 - HOUR,
             "{\"contact_id\":\"k-1\",\"duration_s\":312,\"resolved\":false}");
    apply_to(c, "contact.queued", T0 - 3 * DAY,
             "{\"contact_id\":\"k-0\",\"channel\":\"phone\",\"queue\":\"billing\"}");
    apply_to(c, "contact.abandoned", T0 - 3 * DAY + 120000,
             "{\"contact_id\":\"k-0\",\"wait_s\":120}");
    apply_to(c, "contact.queued", T0 - 60000,
             "{\"contact_id\":\"k-2\",\"channel\":\"phone\",\"queue\":\"billing\",\"reason\":"
             "\"billing\"}");
    apply_to(c, "contact.started", T0 - 30000,
             "{\"contact_id\":\"k-2\",\"channel\":\"phone\",\"agent_id\":\"a-9\",\"queue\":"
             "\"billing\"}");
    apply_to(c, "sentiment.sampled", T0, "{\"contact_id\":\"k-2\",\"score\":-0.6}");
    customer_rule_fired(c, "repeat_contact", T0 - 30000);
    customer_rule_fired(c, "at_risk", T0);
}

/* ---- Contacts and windows */

static void fourth_support_contact_counts_four(void **state)
{
    const char *reasons[] = {"technical", "billing", "support", "complaint", "new address"};
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "k-%d", i);
        queued(id, T0 + i * DAY, "phone", reasons[i]);
    }
    state_counts_t n = counts();
    assert_int_equal(n.support_contacts_30d, 4);
    assert_int_equal(n.contacts_30d, 5);
}

static void support_reason_on_any_event_counts_case_insensitively(void **state)
{
    queued("k-1", T0, "chat", NULL);
    assert_int_equal(counts().support_contacts_30d, 0);
    assert_int_equal(apply("contact.started", T0 + 1000,
                           "{\"contact_id\":\"k-1\",\"channel\":\"chat\",\"agent_id\":\"a-1\","
                           "\"reason\":\"Billing\"}"),
                     STATE_APPLIED);
    assert_true(res.support_contact);
    assert_int_equal(counts().support_contacts_30d, 1);
}

static void same_contact_counted_once_across_events(void **state)
{
    queued("k-1", T0, "phone", "technical");
    assert_true(res.new_contact);
    apply("contact.started", T0 + 1000,
          "{\"contact_id\":\"k-1\",\"channel\":\"phone\",\"agent_id\":\"a-1\"}");
    assert_false(res.new_contact);
    apply("sentiment.sampled", T0 + 2000, "{\"contact_id\":\"k-1\",\"score\":0.5}");
    apply("contact.ended", T0 + 3000, "{\"contact_id\":\"k-1\",\"duration_s\":2}");
    assert_false(res.new_contact);
    state_counts_t n = counts();
    assert_int_equal(n.contacts_30d, 1);
    assert_int_equal(n.support_contacts_30d, 1);
}

static void contact_31_days_back_not_counted(void **state)
{
    queued("k-old", T0 - 31 * DAY, "phone", "technical");
    queued("k-in", T0 - 29 * DAY, "phone", "technical");
    queued("k-now", T0, "phone", "technical");
    state_counts_t n = counts();
    assert_int_equal(n.contacts_30d, 2);
    assert_int_equal(n.support_contacts_30d, 2);
}

static void window_edge_is_exclusive(void **state)
{
    queued("k-edge", T0 - 30 * DAY, "phone", NULL);   /* exactly 30 days: out */
    queued("k-in", T0 - 30 * DAY + 1, "phone", NULL); /* 1 ms later: in */
    queued("k-now", T0, "phone", NULL);
    assert_int_equal(counts().contacts_30d, 2);
}

static void contact_too_old_to_count_is_not_new(void **state)
{
    queued("k-now", T0, "phone", "billing");
    queued("k-late", T0 - 31 * DAY, "phone", "billing"); /* arrives late */
    assert_false(res.new_contact);
    assert_int_equal(counts().contacts_30d, 1);
}

static void contact_dated_by_its_earliest_event(void **state)
{
    apply("contact.started", T0,
          "{\"contact_id\":\"k-1\",\"channel\":\"chat\",\"agent_id\":\"a\"}");
    assert_int_equal(counts().contacts_24h, 1);
    /* its queued event, 2 days older, arrives late: the contact is 2 days old */
    queued("k-1", T0 - 2 * DAY, "chat", NULL);
    assert_false(res.new_contact);
    assert_int_equal(counts().contacts_24h, 0);
    assert_int_equal(counts().contacts_7d, 1);
}

static void contact_windows_24h_7d_30d(void **state)
{
    queued("k-1", T0 - 10 * DAY, "phone", NULL);
    queued("k-2", T0 - 3 * DAY, "phone", NULL);
    queued("k-3", T0 - 2 * HOUR, "phone", NULL);
    queued("k-4", T0, "phone", NULL);
    state_counts_t n = counts();
    assert_int_equal(n.contacts_24h, 2);
    assert_int_equal(n.contacts_7d, 3);
    assert_int_equal(n.contacts_30d, 4);
}

static void abandoned_counts_in_7_days(void **state)
{
    queued("k-1", T0 - 8 * DAY, "phone", NULL);
    apply("contact.abandoned", T0 - 8 * DAY + 1000, "{\"contact_id\":\"k-1\",\"wait_s\":30}");
    queued("k-2", T0 - DAY, "phone", NULL);
    apply("contact.abandoned", T0 - DAY + 1000, "{\"contact_id\":\"k-2\",\"wait_s\":30}");
    queued("k-3", T0, "phone", NULL);
    apply("contact.ended", T0 + 1000, "{\"contact_id\":\"k-3\",\"duration_s\":30}");
    assert_int_equal(counts().abandoned_7d, 1); /* ended is not abandoned */
}

static void windows_follow_event_time_not_wall_clock(void **state)
{
    /* Years in the past: the windows count back from the events' own clock. */
    int64_t t = T0 - 3000 * DAY;
    queued("k-1", t - 2 * DAY, "phone", "technical");
    queued("k-2", t, "phone", "technical");
    assert_int_equal(cust.clock_ms, t);
    assert_int_equal(counts().contacts_30d, 2);
    /* A newer event moves the clock, and the old contacts leave the window. */
    queued("k-3", t + 40 * DAY, "phone", NULL);
    assert_int_equal(counts().contacts_30d, 1);
    assert_int_equal(counts().support_contacts_30d, 0);
}

static void contact_ring_keeps_newest_128(void **state)
{
    for (int i = 0; i < STATE_CONTACTS_MAX + 10; i++) {
        char id[16];
        snprintf(id, sizeof id, "k-%d", i);
        queued(id, T0 + i * 60000, "chat", NULL);
    }
    assert_int_equal(counts().contacts_30d, STATE_CONTACTS_MAX);
    /* The first contacts were evicted: an event of k-0 counts as a new contact again... */
    queued("k-0", T0 + 500 * 60000, "chat", NULL);
    assert_true(res.new_contact);
    /* ...while a recent one is still known. */
    queued("k-137", T0 + 501 * 60000, "chat", NULL);
    assert_false(res.new_contact);
}

static void cost_to_serve_counts_each_contact_once(void **state)
{
    queued("k-1", T0, "phone", NULL);
    apply("contact.started", T0 + 1,
          "{\"contact_id\":\"k-1\",\"channel\":\"phone\",\"agent_id\":\"a\"}");
    apply("contact.ended", T0 + 2, "{\"contact_id\":\"k-1\",\"duration_s\":1}");
    queued("k-2", T0 + 3, "chat", NULL);
    apply("contact.started", T0 + 4,
          "{\"contact_id\":\"k-2\",\"channel\":\"chat\",\"agent_id\":\"a\"}");
    assert_int_equal(counts().cost_to_serve_12m, 600 + 300);
}

static void cancel_signals_from_web_and_subscription(void **state)
{
    apply("web.visited", T0 - 40 * DAY, "{\"page\":\"/cancel\",\"intent\":\"cancel\"}");
    apply("web.visited", T0 - DAY, "{\"page\":\"/cancel\",\"intent\":\"Cancel\"}");
    assert_true(res.cancel_signal);
    apply("web.visited", T0 - DAY, "{\"page\":\"/pricing\",\"intent\":\"compare\"}");
    assert_false(res.cancel_signal);
    apply("subscription.changed", T0, "{\"action\":\"cancel_requested\"}");
    assert_true(res.cancel_signal);
    apply("subscription.changed", T0, "{\"action\":\"renewed\"}");
    assert_int_equal(counts().cancel_signals_30d, 2);
}

static void complaints_and_failed_payments_have_their_windows(void **state)
{
    apply("complaint.filed", T0 - 89 * DAY, "{\"category\":\"x\",\"severity\":\"low\"}");
    apply("complaint.filed", T0 - 91 * DAY, "{\"category\":\"x\",\"severity\":\"low\"}");
    apply("payment.failed", T0 - 31 * DAY, "{\"amount\":5}");
    apply("payment.failed", T0, "{\"amount\":5}");
    state_counts_t n = counts();
    assert_int_equal(n.complaints_90d, 1);
    assert_int_equal(n.failed_payments_30d, 1);
}

static void sentiment_means_per_contact_and_30_days(void **state)
{
    queued("k-1", T0 - 10 * DAY, "chat", NULL);
    apply("sentiment.sampled", T0 - 10 * DAY, "{\"contact_id\":\"k-1\",\"score\":0.5}");
    apply("contact.ended", T0 - 10 * DAY, "{\"contact_id\":\"k-1\",\"duration_s\":60}");
    queued("k-2", T0, "chat", NULL);
    apply("sentiment.sampled", T0, "{\"contact_id\":\"k-2\",\"score\":-0.2}");
    apply("sentiment.sampled", T0, "{\"contact_id\":\"k-2\",\"score\":-0.4}");
    double mean;
    assert_true(customer_contact_sentiment(&cust, &mean));
    assert_float_equal(mean, -0.3, 1e-9);
    state_counts_t n = counts();
    assert_int_equal(n.sentiment_n_30d, 3);
    assert_int_equal(n.sentiment_sum_30d, 500 - 200 - 400);
    assert_int_equal(cust.sentiment_last, -400);
}

/* ---- Idempotency */

static void duplicate_event_id_changes_nothing(void **state)
{
    parse_event("evt-1", SUBJECT, "contact.queued", T0,
                "{\"contact_id\":\"k-1\",\"channel\":\"phone\",\"queue\":\"q\"}");
    assert_int_equal(customer_apply(&cust, &ev, 10, &cfg, &res), STATE_APPLIED);
    to_json(&cust, doc);
    parse_event("evt-1", SUBJECT, "contact.queued", T0 + DAY,
                "{\"contact_id\":\"k-2\",\"channel\":\"phone\",\"queue\":\"q\"}");
    assert_int_equal(customer_apply(&cust, &ev, 11, &cfg, &res), STATE_DUPLICATE);
    to_json(&cust, doc2);
    assert_string_equal(doc2, doc);
    assert_int_equal(cust.last_offset, 10);
}

static void offset_at_or_below_last_is_duplicate(void **state)
{
    parse_event("a", SUBJECT, "payment.failed", T0, "{\"amount\":1}");
    assert_int_equal(customer_apply(&cust, &ev, 10, &cfg, &res), STATE_APPLIED);
    parse_event("b", SUBJECT, "payment.failed", T0, "{\"amount\":1}");
    assert_int_equal(customer_apply(&cust, &ev, 10, &cfg, &res), STATE_DUPLICATE);
    parse_event("c", SUBJECT, "payment.failed", T0, "{\"amount\":1}");
    assert_int_equal(customer_apply(&cust, &ev, 9, &cfg, &res), STATE_DUPLICATE);
    assert_int_equal(counts().failed_payments_30d, 1);
    parse_event("d", SUBJECT, "payment.failed", T0, "{\"amount\":1}");
    assert_int_equal(customer_apply(&cust, &ev, 11, &cfg, &res), STATE_APPLIED);
    assert_int_equal(counts().failed_payments_30d, 2);
}

static void event_id_remembered_for_64_events(void **state)
{
    parse_event("first", SUBJECT, "payment.failed", T0, "{\"amount\":1}");
    assert_int_equal(customer_apply(&cust, &ev, STATE_NO_OFFSET, &cfg, &res), STATE_APPLIED);
    for (int i = 0; i < STATE_EVENT_IDS - 1; i++)
        apply("web.visited", T0, "{\"page\":\"/\"}");
    parse_event("first", SUBJECT, "payment.failed", T0, "{\"amount\":1}");
    assert_int_equal(customer_apply(&cust, &ev, STATE_NO_OFFSET, &cfg, &res), STATE_DUPLICATE);
    apply("web.visited", T0, "{\"page\":\"/\"}"); /* the 65th pushes "first" out */
    parse_event("first", SUBJECT, "payment.failed", T0, "{\"amount\":1}");
    assert_int_equal(customer_apply(&cust, &ev, STATE_NO_OFFSET, &cfg, &res), STATE_APPLIED);
}

static void agent_state_event_rejected(void **state)
{
    parse_event("x", "agent:a-9", "agent.state", T0, "{\"agent_id\":\"a-9\",\"state\":\"busy\"}");
    static customer_t agent; /* all zero: customer_init takes a zeroed or set-up customer */
    assert_int_equal(customer_init(&agent, "agent:a-9"), STATE_EINVAL);
    assert_int_equal(customer_apply(&cust, &ev, 1, &cfg, &res), STATE_EINVAL);
    assert_int_equal(cust.clock_ms, STATE_TIME_NONE);
}

static void another_customers_event_rejected(void **state)
{
    parse_event("x", "cust-7", "payment.failed", T0, "{\"amount\":1}");
    assert_int_equal(customer_apply(&cust, &ev, 1, &cfg, &res), STATE_EINVAL);
    assert_int_equal(cust.n_event_ids, 0);
}

static void partner_flag_from_subject(void **state)
{
    assert_int_equal(customer_init(&other, "partner:acme"), 0);
    assert_true(other.is_partner);
    assert_false(cust.is_partner);
    assert_int_equal(customer_init(&other, "partner:"), STATE_EINVAL);
}

/* Fresh zeroed memory (the engine's pool) needs only the non-zero fields set: the same
 * customer as customer_init gives, and the same rejections. */
static void init_of_zeroed_memory_equals_init(void **state)
{
    static customer_t zeroed;
    memset(&zeroed, 0, sizeof zeroed);
    assert_int_equal(customer_init_zeroed(&zeroed, SUBJECT), 0);
    assert_memory_equal(&zeroed, &cust, sizeof cust); /* cust: customer_init in setup */
    memset(&zeroed, 0, sizeof zeroed);
    assert_int_equal(customer_init_zeroed(&zeroed, "agent:a-9"), STATE_EINVAL);
    assert_int_equal(customer_init_zeroed(&zeroed, ""), STATE_EINVAL);
}

/* ---- Orders and money */

static void open_order_leaves_on_delivered(void **state)
{
    apply("order.placed", T0, "{\"order_id\":\"o-1\",\"amount\":50,\"currency\":\"EUR\"}");
    assert_int_equal(res.order_status, STATE_ORDER_PLACED);
    assert_int_equal(counts().open_orders, 1);
    apply("order.updated", T0 + 1, "{\"order_id\":\"o-1\",\"status\":\"delayed\"}");
    assert_int_equal(res.order_status, EVENT_ORDER_DELAYED);
    assert_int_equal(counts().open_orders, 1);
    assert_int_equal(counts().delayed_orders, 1);
    apply("order.updated", T0 + 2, "{\"order_id\":\"o-1\",\"status\":\"delivered\"}");
    assert_int_equal(counts().open_orders, 0);
    assert_int_equal(counts().delayed_orders, 0);
    assert_int_equal(counts().revenue_12m, 5000); /* delivered keeps its revenue */
}

static void older_order_update_does_not_overwrite_newer(void **state)
{
    apply("order.placed", T0, "{\"order_id\":\"o-1\",\"amount\":50,\"currency\":\"EUR\"}");
    apply("order.updated", T0 + 2000, "{\"order_id\":\"o-1\",\"status\":\"delivered\"}");
    apply("order.updated", T0 + 1000, "{\"order_id\":\"o-1\",\"status\":\"delayed\"}");
    assert_int_equal(counts().open_orders, 0);
}

static void cancelled_and_returned_orders_take_revenue_back(void **state)
{
    apply("order.placed", T0,
          "{\"order_id\":\"o-1\",\"amount\":50,\"currency\":\"EUR\",\"margin\":10}");
    apply("order.placed", T0,
          "{\"order_id\":\"o-2\",\"amount\":20,\"currency\":\"EUR\",\"margin\":4}");
    apply("order.updated", T0 + 1, "{\"order_id\":\"o-1\",\"status\":\"cancelled\"}");
    apply("order.updated", T0 + 2, "{\"order_id\":\"o-1\",\"status\":\"cancelled\"}"); /* again */
    apply("order.updated", T0 + 3, "{\"order_id\":\"o-2\",\"status\":\"delivered\"}");
    apply("order.updated", T0 + 4, "{\"order_id\":\"o-2\",\"status\":\"returned\"}");
    state_counts_t n = counts();
    assert_int_equal(n.revenue_12m, 0);
    assert_int_equal(n.margin_12m, 0);
    assert_int_equal(n.orders_12m, 0);
}

static void order_placed_twice_counted_once(void **state)
{
    apply("order.placed", T0, "{\"order_id\":\"o-1\",\"amount\":50,\"currency\":\"EUR\"}");
    apply("order.placed", T0 + 5, "{\"order_id\":\"o-1\",\"amount\":50,\"currency\":\"EUR\"}");
    state_counts_t n = counts();
    assert_int_equal(n.orders_12m, 1);
    assert_int_equal(n.revenue_12m, 5000);
    assert_int_equal(n.margin_12m, 1500); /* default margin rate 0.3 */
}

static void revenue_90d_and_the_90_days_before(void **state)
{
    apply("order.placed", T0 - 400 * DAY,
          "{\"order_id\":\"o-0\",\"amount\":1000,\"currency\":\"EUR\"}");
    apply("order.placed", T0 - 120 * DAY,
          "{\"order_id\":\"o-1\",\"amount\":100,\"currency\":\"EUR\"}");
    apply("order.placed", T0 - 10 * DAY,
          "{\"order_id\":\"o-2\",\"amount\":30.5,\"currency\":\"EUR\"}");
    apply("order.placed", T0, "{\"order_id\":\"o-3\",\"amount\":0.25,\"currency\":\"EUR\"}");
    state_counts_t n = counts();
    assert_int_equal(n.revenue_90d, 3075);
    assert_int_equal(n.revenue_prev_90d, 10000);
    assert_int_equal(n.revenue_12m, 13075); /* 400 days back is outside 12 months */
    assert_int_equal(n.orders_12m, 3);
    assert_int_equal(cust.last_order_ms, T0);
}

/* The windows end on 10-day bucket boundaries: the clock's bucket and 8 before it are "90
 * days", the 9 before those "the 90 days before", 36 in all "12 months". */
static void money_windows_follow_bucket_edges(void **state)
{
    const int64_t b = STATE_BUCKET_DAYS * DAY, now = T0 / b;
    const struct {
        int64_t t;
        int amount;
    } orders[] = {
        {(now - 8) * b, 1},          /* oldest ms of the last 90 days */
        {(now - 9) * b + b - 1, 10}, /* newest ms of the 90 days before */
        {(now - 17) * b, 100},       /* oldest ms of the 90 days before */
        {(now - 18) * b + b - 1, 1000},
        {(now - 35) * b, 10000}, /* oldest ms of 12 months */
        {(now - 36) * b + b - 1, 100000},
    };
    apply("web.visited", T0, "{\"page\":\"/\"}"); /* the clock first: nothing is too old */
    for (size_t i = 0; i < sizeof orders / sizeof orders[0]; i++)
        apply("order.placed", orders[i].t,
              "{\"order_id\":\"o-%zu\",\"amount\":%d,\"currency\":\"EUR\"}", i, orders[i].amount);
    state_counts_t n = counts();
    assert_int_equal(n.revenue_90d, 100);
    assert_int_equal(n.revenue_prev_90d, 11000);
    assert_int_equal(n.revenue_12m, 1111100);
    assert_int_equal(n.orders_12m, 5);
}

static void money_leaves_12_months_as_the_clock_moves(void **state)
{
    const int64_t b = STATE_BUCKET_DAYS * DAY;
    apply("order.placed", T0, "{\"order_id\":\"o-1\",\"amount\":10,\"currency\":\"EUR\"}");
    apply("web.visited", T0 + 35 * b, "{\"page\":\"/\"}");
    assert_int_equal(counts().revenue_12m, 1000);
    apply("web.visited", T0 + 36 * b, "{\"page\":\"/\"}");
    assert_int_equal(counts().revenue_12m, 0);
    assert_int_equal(counts().orders_12m, 0);
}

static void orders_list_keeps_16_and_evicts_closed_first(void **state)
{
    for (int i = 0; i < STATE_ORDERS_MAX; i++) {
        char data[128];
        snprintf(data, sizeof data, "{\"order_id\":\"o-%d\",\"amount\":1,\"currency\":\"EUR\"}", i);
        apply("order.placed", T0 + i, "%s", data);
    }
    apply("order.updated", T0 + 100, "{\"order_id\":\"o-5\",\"status\":\"delivered\"}");
    apply("order.placed", T0 + 200, "{\"order_id\":\"o-new\",\"amount\":1,\"currency\":\"EUR\"}");
    assert_int_equal(cust.n_orders, STATE_ORDERS_MAX);
    assert_int_equal(counts().open_orders, STATE_ORDERS_MAX); /* o-5 went, o-0 stayed */
    bool has_o0 = false;
    for (int i = 0; i < cust.n_orders; i++)
        has_o0 |= strcmp(cust.orders[i].id, "o-0") == 0;
    assert_true(has_o0);
}

/* ---- Current contact */

static void current_contact_follows_queued_started_ended(void **state)
{
    queued("k-1", T0, "phone", NULL);
    assert_int_equal(cust.contact.state, STATE_CONTACT_QUEUED);
    assert_string_equal(cust.contact.queue, "billing");
    assert_int_equal(cust.contact.queued_ms, T0);
    apply("contact.started", T0 + 5000,
          "{\"contact_id\":\"k-1\",\"channel\":\"phone\",\"agent_id\":\"a-9\"}");
    assert_int_equal(cust.contact.state, STATE_CONTACT_ACTIVE);
    assert_string_equal(cust.contact.agent_id, "a-9");
    assert_string_equal(cust.contact.queue, "billing"); /* kept: started named no queue */
    apply("contact.ended", T0 + 9000, "{\"contact_id\":\"k-1\",\"duration_s\":4}");
    assert_true(res.contact_closed);
    assert_int_equal(cust.contact.state, STATE_CONTACT_NONE);
}

static void late_event_of_ended_contact_does_not_reopen_it(void **state)
{
    queued("k-1", T0, "phone", NULL);
    apply("contact.ended", T0 + 9000, "{\"contact_id\":\"k-1\",\"duration_s\":4}");
    apply("contact.started", T0 + 5000,
          "{\"contact_id\":\"k-1\",\"channel\":\"phone\",\"agent_id\":\"a-9\"}");
    assert_int_equal(cust.contact.state, STATE_CONTACT_NONE);
}

static void ending_another_contact_keeps_the_current_one(void **state)
{
    queued("k-1", T0, "phone", NULL);
    apply("contact.abandoned", T0 + 1000, "{\"contact_id\":\"k-0\",\"wait_s\":4}");
    assert_false(res.contact_closed);
    assert_string_equal(cust.contact.id, "k-1");
}

static void transfer_to_queue_queues_again(void **state)
{
    queued("k-1", T0, "phone", NULL);
    apply("contact.started", T0 + 1000,
          "{\"contact_id\":\"k-1\",\"channel\":\"phone\",\"agent_id\":\"a-9\"}");
    apply("contact.transferred", T0 + 2000, "{\"contact_id\":\"k-1\",\"to_queue\":\"retention\"}");
    assert_int_equal(cust.contact.state, STATE_CONTACT_QUEUED);
    assert_string_equal(cust.contact.queue, "retention");
    assert_string_equal(cust.contact.agent_id, "");
    assert_int_equal(cust.contact.queued_ms, T0 + 2000);
    apply("contact.transferred", T0 + 3000, "{\"contact_id\":\"k-1\",\"to_agent_id\":\"a-3\"}");
    assert_int_equal(cust.contact.state, STATE_CONTACT_ACTIVE);
    assert_string_equal(cust.contact.agent_id, "a-3");
}

/* ---- Timeline */

static void timeline_texts_read_for_agents(void **state)
{
    queued("k-1", T0, "phone", "technical");
    assert_true(res.timeline);
    assert_string_equal(res.timeline_text, "phone contact in queue billing (reason: technical)");
    apply("order.updated", T0, "{\"order_id\":\"o-17\",\"status\":\"delayed\"}");
    assert_string_equal(res.timeline_text, "order o-17 delayed");
    apply("contact.ended", T0, "{\"contact_id\":\"k-1\",\"duration_s\":312.5,\"resolved\":true}");
    assert_string_equal(res.timeline_text, "phone contact ended after 5m 12s (resolved)");
    apply("survey.answered", T0, "{\"csat\":2,\"nps\":3}");
    assert_string_equal(res.timeline_text, "survey: CSAT 2, NPS 3");
    apply("subscription.changed", T0, "{\"action\":\"cancel_requested\",\"mrr_delta\":-20}");
    assert_string_equal(res.timeline_text, "subscription cancel requested (MRR -20.00)");
    apply("sentiment.sampled", T0, "{\"contact_id\":\"k-1\",\"score\":0.1}");
    assert_false(res.timeline); /* neither is an interaction for the timeline */
    apply("customer.profile", T0, "{\"name\":\"Ada\"}");
    assert_false(res.timeline);
    /* A duplicate changes nothing, so it has no entry either. */
    parse_event("e-1", cust.id, "payment.failed", T0, "{\"amount\":1}");
    assert_int_equal(customer_apply(&cust, &ev, STATE_NO_OFFSET, &cfg, &res), STATE_DUPLICATE);
    assert_false(res.timeline);
}

static void mutate(const char *from, const char *to);
static void assert_refused(const char *json, size_t len, const char *detail);

/* The engine counts what the Redis list holds, so it asks for a trim only once it is full;
 * the count travels in the document ("w.tl"). */
static void timeline_count_asks_for_trim_when_full(void **state)
{
    for (int i = 0; i < STATE_TIMELINE_MAX; i++) {
        apply("payment.failed", T0 + i, "{\"amount\":%d}", i);
        assert_false(res.timeline_trim);
    }
    assert_int_equal(cust.timeline_len, STATE_TIMELINE_MAX);
    apply("payment.failed", T0 + 1000, "{\"amount\":1}");
    assert_true(res.timeline_trim);
    assert_int_equal(cust.timeline_len, STATE_TIMELINE_MAX);
    apply("customer.profile", T0 + 1001, "{\"name\":\"Ada\"}"); /* no entry, no trim */
    assert_false(res.timeline_trim);
    size_t len = to_json(&cust, doc);
    assert_non_null(strstr(doc, "\"tl\":100"));
    assert_int_equal(customer_from_json(&other, doc, len, err, sizeof err), 0);
    assert_int_equal(other.timeline_len, STATE_TIMELINE_MAX);
    mutate("\"tl\":100", "\"tl\":101");
    assert_refused(doc2, strlen(doc2), "w.tl");
}

static void timeline_text_cut_at_character_boundary(void **state)
{
    /* 30 two-byte characters: the text passes 63 bytes inside a character. */
    char reason[128] = "";
    for (int i = 0; i < 30; i++)
        strcat(reason, "\xc3\xa9");
    queued("k-1", T0, "phone", reason);
    const char *text = res.timeline_text;
    size_t n = strlen(text);
    assert_true(n <= STATE_TIMELINE_TEXT_SIZE - 1);
    assert_memory_equal(text + n - 3, "\xe2\x80\xa6", 3);
    assert_true(((unsigned char)text[n - 4] & 0xc0) != 0xc0); /* no lead byte left alone */
    assert_memory_equal(text, "phone contact in queue billing (reason: \xc3\xa9", 42);
}

/* ---- What the live queue needs: where the event's contact waited before it */

static void apply_says_where_the_contact_waited(void **state)
{
    queued("k-1", T0, "phone", NULL);
    assert_false(res.was_current); /* new */
    apply("contact.started", T0 + 5000,
          "{\"contact_id\":\"k-1\",\"channel\":\"phone\",\"agent_id\":\"a-1\"}");
    assert_true(res.was_current && res.was_waiting);
    assert_string_equal(res.waited_queue, "billing");
    assert_int_equal(res.waited_since_ms, T0);
    apply("contact.ended", T0 + 9000, "{\"contact_id\":\"k-1\",\"duration_s\":4}");
    assert_true(res.was_current);
    assert_false(res.was_waiting); /* it was active */
    apply("contact.abandoned", T0 + 9500, "{\"contact_id\":\"k-0\",\"wait_s\":1}");
    assert_false(res.was_current); /* not the current one: the live queue looks it up */
}

/* ---- Late events after a reload */

/* What fell out of the windows as of the clock is gone from memory as from the document, so a
 * late event (older than the clock) counts the same whether or not the customer was reloaded
 * from Redis before it (it_engine_kill found scores that differed after a restart). */
static void late_event_counts_the_same_after_a_reload(void **state)
{
    queued("k-1", T0, "phone", "technical"); /* a support contact... */
    apply("sentiment.sampled", T0 + 1000, "{\"contact_id\":\"k-1\",\"score\":0.9}");
    apply("payment.failed", T0 + 2000, "{\"amount\":5}");
    apply("complaint.filed", T0 + 3000, "{\"category\":\"billing\",\"severity\":\"high\"}");
    apply("web.visited", T0 + 35 * DAY, "{\"page\":\"/\"}"); /* ...35 days before the clock */
    size_t len = to_json(&cust, doc);
    if (customer_from_json(&other, doc, len, err, sizeof err) != 0)
        fail_msg("own document refused: %s", err);
    int64_t late = T0 + 25 * DAY; /* k-1 is 25 days before it: inside "30 days" of it */
    apply_to(&cust, "payment.failed", late, "{\"amount\":7}");
    apply_to(&other, "payment.failed", late, "{\"amount\":7}");
    state_counts_t a, b;
    customer_counts(&cust, late, &a);
    customer_counts(&other, late, &b);
    assert_int_equal(a.contacts_30d, 0);
    assert_int_equal(a.support_contacts_30d, 0);
    assert_int_equal(a.sentiment_n_30d, 0);
    assert_int_equal(a.failed_payments_30d, 1); /* the late one only */
    assert_int_equal(a.complaints_90d, 1);      /* 90 days: still kept */
    assert_int_equal(b.contacts_30d, a.contacts_30d);
    assert_int_equal(b.support_contacts_30d, a.support_contacts_30d);
    assert_int_equal(b.sentiment_n_30d, a.sentiment_n_30d);
    assert_int_equal(b.sentiment_sum_30d, a.sentiment_sum_30d);
    assert_int_equal(b.failed_payments_30d, a.failed_payments_30d);
    assert_int_equal(b.complaints_90d, a.complaints_90d);
    assert_int_equal(b.revenue_12m, a.revenue_12m);
    assert_int_equal(b.cost_to_serve_12m, a.cost_to_serve_12m);
}

/* ---- Profile, rules */

static void profile_upsert_keeps_absent_fields(void **state)
{
    apply("customer.profile", T0, "{\"name\":\"Ada\",\"segment\":\"gold\"}");
    apply("customer.profile", T0 + 1,
          "{\"segment\":\"silver\",\"preferences\":{\"channel\":\"chat\"}}");
    assert_string_equal(cust.profile.name, "Ada");
    assert_string_equal(cust.profile.segment, "silver");
    assert_string_equal(cust.profile.preferences, "{\"channel\":\"chat\"}");
}

static void rule_cooldown_remembers_last_firing(void **state)
{
    assert_int_equal(customer_rule_last_fired(&cust, "repeat_contact"), STATE_TIME_NONE);
    assert_int_equal(customer_rule_fired(&cust, "repeat_contact", T0), 0);
    assert_int_equal(customer_rule_fired(&cust, "repeat_contact", T0 + 5), 0);
    assert_int_equal(customer_rule_last_fired(&cust, "repeat_contact"), T0 + 5);
    for (int i = 0; i < STATE_RULES_MAX; i++) {
        char id[16];
        snprintf(id, sizeof id, "rule-%d", i);
        assert_int_equal(customer_rule_fired(&cust, id, T0 + 10 + i), 0);
    }
    /* the 17th rule took the slot of the one fired longest ago */
    assert_int_equal(customer_rule_last_fired(&cust, "repeat_contact"), STATE_TIME_NONE);
    assert_int_equal(customer_rule_last_fired(&cust, "rule-0"), T0 + 10);
    assert_int_equal(customer_rule_fired(&cust, "a-rule-id-longer-than-31-bytes-x", T0),
                     STATE_EINVAL);
}

/* ---- The document */

static void json_round_trip_is_exact(void **state)
{
    build_rich_customer(&cust);
    assert_round_trip(&cust);
    assert_non_null(strstr(
        doc, "\"id\":\"cust-1042\",\"partner\":false,\"updated\":\"2026-11-30T17:02:20.000Z\""));
    assert_non_null(
        strstr(doc, "\"preferences\":{\"channel\":\"email\",\"n\":[1,2.5,\"\xc3\xa9\"]}"));
    assert_non_null(strstr(doc, "\"contact\":{\"id\":\"k-2\",\"channel\":\"phone\""));
    assert_non_null(
        strstr(doc, "\"open_orders\":[{\"id\":\"o-9\",\"status\":\"shipped\",\"amount\":null"));
    assert_non_null(strstr(doc, "\"mrr\":19.5,"));
}

static void json_round_trip_of_a_new_customer_is_exact(void **state)
{
    assert_round_trip(&cust);
    assert_non_null(strstr(doc, "\"updated\":null,\"offset\":-1"));
    assert_non_null(strstr(doc, "\"contact\":null"));
}

static void json_round_trip_with_scores_is_exact(void **state)
{
    build_rich_customer(&cust);
    /* Scores with awkward numbers: values with many decimals, negative weights. */
    cust.scores = (state_scores_t){.computed = true,
                                   .tier = 'B',
                                   .trend = STATE_TREND_FALLING,
                                   .value = 612.5,
                                   .churn_risk = 0.4213,
                                   .n_value_factors = 1,
                                   .n_churn_factors = 2};
    cust.scores.value_factors[0] = (state_factor_t){"margin_12m", 620.25, 1, 620.25};
    cust.scores.churn_factors[0] = (state_factor_t){"csat_last", 2, -0.35, 0.7};
    cust.scores.churn_factors[1] = (state_factor_t){"sentiment_30d_mean", -0.4333, -1.5, 0.65};
    assert_round_trip(&cust);
    assert_non_null(strstr(doc, "\"churn\":[[\"csat_last\",2,-0.35,0.7],"));
}

/* A version-1 document (factors as objects) is read; it is written back as version 2. */
static void version_1_document_is_read(void **state)
{
    build_rich_customer(&cust);
    cust.scores = (state_scores_t){.computed = true, .tier = 'B', .value = 612.5,
                                   .churn_risk = 0.4213, .n_value_factors = 1};
    cust.scores.value_factors[0] = (state_factor_t){"margin_12m", 620.25, 1, 620.25};
    to_json(&cust, doc);
    static const char v2_factor[] = "\"value\":[[\"margin_12m\",620.25,1,620.25]]";
    static const char v1_factor[] =
        "\"value\":[{\"feature\":\"margin_12m\",\"value\":620.25,\"weight\":1,"
        "\"contribution\":620.25}]";
    char *at = strstr(doc, v2_factor);
    assert_non_null(at);
    assert_memory_equal(doc, "{\"v\":2,", 7);
    static char v1[STATE_JSON_MAX];
    snprintf(v1, sizeof v1, "{\"v\":1,%.*s%s%s", (int)(at - doc - 7), doc + 7, v1_factor,
             at + strlen(v2_factor));
    assert_int_equal(customer_from_json(&other, v1, strlen(v1), err, sizeof err), 0);
    to_json(&other, doc2);
    assert_string_equal(doc2, doc);
    /* a factor of neither shape is a bad document, named */
    snprintf(v1, sizeof v1, "%.*s\"value\":[[\"margin_12m\",620.25,1]]%s", (int)(at - doc), doc,
             at + strlen(v2_factor));
    assert_int_equal(customer_from_json(&other, v1, strlen(v1), err, sizeof err),
                     STATE_EDOCUMENT);
    assert_non_null(strstr(err, "factors.value[0]: must be [feature, value, weight, contribution]"));
}

/* A customer read back from its document goes on exactly as one that never left memory. */
static void resumed_customer_applies_like_the_original(void **state)
{
    customer_t *resumed = calloc(1, sizeof *resumed);
    assert_non_null(resumed);
    build_rich_customer(&cust);
    size_t len = to_json(&cust, doc);
    assert_int_equal(customer_from_json(resumed, doc, len, err, sizeof err), 0);
    for (int i = 0; i < 40; i++) {
        int64_t t = T0 + i * HOUR;
        char data[160];
        snprintf(
            data, sizeof data,
            "{\"contact_id\":\"k-%d\",\"channel\":\"chat\",\"queue\":\"q\",\"reason\":\"billing\"}",
            i % 7);
        int saved_id = next_id;
        int64_t saved_offset = next_offset;
        assert_int_equal(apply_to(&cust, "contact.queued", t, "%s", data), STATE_APPLIED);
        bool was_new = res.new_contact;
        next_id = saved_id;
        next_offset = saved_offset;
        assert_int_equal(apply_to(resumed, "contact.queued", t, "%s", data), STATE_APPLIED);
        assert_int_equal(res.new_contact, was_new);
        snprintf(data, sizeof data, "{\"order_id\":\"o-%d\",\"status\":\"cancelled\"}", i % 20);
        saved_id = next_id;
        saved_offset = next_offset;
        apply_to(&cust, "order.updated", t + 1, "%s", data);
        next_id = saved_id;
        next_offset = saved_offset;
        apply_to(resumed, "order.updated", t + 1, "%s", data);
    }
    to_json(&cust, doc);
    to_json(resumed, doc2);
    assert_string_equal(doc2, doc);
    customer_release(resumed);
    free(resumed);
}

/* ---- Memory: rings grow with the customer's history; running out changes nothing */

/* Allocation failures on demand: this test links with --wrap=malloc,--wrap=realloc
 * (tests/CMakeLists.txt), so the engine's own calls come here. */
static int allocations_before_failure = -1; /* -1: never fail */

void *__real_malloc(size_t size);
void *__real_realloc(void *p, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_realloc(void *p, size_t size);

static bool allocation_fails(void)
{
    if (allocations_before_failure < 0) return false;
    return allocations_before_failure-- == 0;
}

void *__wrap_malloc(size_t size)
{
    return allocation_fails() ? NULL : __real_malloc(size);
}

void *__wrap_realloc(void *p, size_t size)
{
    return allocation_fails() ? NULL : __real_realloc(p, size);
}

static void small_customer_holds_small_rings(void **state)
{
    queued("k-1", T0, "phone", "billing");
    assert_int_equal(cust.n_contacts, 1);
    assert_int_equal(cust.contacts_cap, 4);
    assert_int_equal(cust.event_ids_cap, 4);
    assert_int_equal(cust.orders_cap, 0);
    assert_null(cust.orders);
    assert_int_equal(cust.complaints.cap, 0);
    assert_int_equal(cust.money_cap, 4); /* the phone call's cost to serve */
    assert_int_equal(cust.rules_cap, 0);  /* no rule fired: no cooldowns */
    assert_null(cust.rules);
    assert_true(sizeof(customer_t) < 1280);
    for (int i = 2; i <= 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "k-%d", i);
        queued(id, T0 + i, "phone", NULL);
    }
    assert_int_equal(cust.contacts_cap, 8);
    assert_int_equal(cust.event_ids_cap, 8);
    assert_int_equal(counts().contacts_30d, 5);
}

/* Each allocation an event can need fails in turn: the event is refused with STATE_ENOMEM,
 * the document is unchanged, and the same event applies once memory is back. */
static void out_of_memory_changes_nothing(void **state)
{
    for (int i = 1; i <= 4; i++) { /* every ring at its first capacity, full */
        char id[16];
        snprintf(id, sizeof id, "k-%d", i - 1);
        queued(id, T0 + i * HOUR, "chat", NULL);
    }
    size_t len = to_json(&cust, doc);
    (void)len;
    const char *events[][2] = {
        {"contact.queued", "{\"contact_id\":\"k-9\",\"channel\":\"fax\",\"queue\":\"q\"}"},
        {"order.placed", "{\"order_id\":\"o-1\",\"amount\":10,\"currency\":\"EUR\"}"},
        {"complaint.filed", "{\"category\":\"billing\",\"severity\":\"high\"}"},
        {"customer.profile", "{\"name\":\"Ada\",\"preferences\":{\"channel\":\"chat\"}}"},
    };
    for (size_t e = 0; e < sizeof events / sizeof events[0]; e++) {
        char id[32];
        snprintf(id, sizeof id, "oom-%zu", e);
        parse_event(id, SUBJECT, events[e][0], T0 + DAY, events[e][1]);
        int rc, fail_at;
        for (fail_at = 0;; fail_at++) {
            allocations_before_failure = fail_at;
            rc = customer_apply(&cust, &ev, next_offset, &cfg, &res);
            allocations_before_failure = -1;
            if (rc != STATE_ENOMEM) break;
            to_json(&cust, doc2);
            assert_string_equal(doc2, doc);
        }
        assert_int_equal(rc, STATE_APPLIED);
        assert_true(fail_at > 0); /* the event needed memory, and went without it first */
        next_offset++;
        to_json(&cust, doc);
    }
    assert_string_equal(cust.profile.preferences, "{\"channel\":\"chat\"}");
    assert_int_equal(counts().complaints_90d, 1);
    assert_int_equal(counts().contacts_30d, 5);
}

static void out_of_memory_recording_a_cooldown_records_nothing(void **state)
{
    assert_int_equal(customer_rule_fired(&cust, "repeat_contact", T0), 0);
    assert_int_equal(cust.rules_cap, 4);
    for (int i = 1; i < 4; i++) { /* the first capacity, full */
        char id[16];
        snprintf(id, sizeof id, "rule-%d", i);
        assert_int_equal(customer_rule_fired(&cust, id, T0 + i), 0);
    }
    allocations_before_failure = 0;
    assert_int_equal(customer_rule_fired(&cust, "rule-4", T0 + 4), STATE_ENOMEM);
    assert_int_equal(customer_rule_fired(&cust, "repeat_contact", T0 + 5), 0); /* no room needed */
    allocations_before_failure = -1;
    assert_int_equal(cust.n_rules, 4);
    assert_int_equal(customer_rule_last_fired(&cust, "rule-4"), STATE_TIME_NONE);
    assert_int_equal(customer_rule_last_fired(&cust, "repeat_contact"), T0 + 5);
    assert_int_equal(customer_rule_fired(&cust, "rule-4", T0 + 6), 0);
    assert_int_equal(cust.rules_cap, 8);
    assert_int_equal(customer_rule_last_fired(&cust, "rule-4"), T0 + 6);
}

static void out_of_memory_reading_a_document_is_not_a_bad_document(void **state)
{
    build_rich_customer(&cust);
    size_t len = to_json(&cust, doc);
    int rc, fail_at;
    for (fail_at = 0;; fail_at++) {
        allocations_before_failure = fail_at;
        rc = customer_from_json(&other, doc, len, err, sizeof err);
        allocations_before_failure = -1;
        if (rc != STATE_ENOMEM) break;
        assert_string_equal(err, "document: out of memory");
        assert_int_equal(other.n_contacts, 0);
        assert_null(other.contacts);
    }
    assert_int_equal(rc, 0);
    assert_true(fail_at > 0);
    to_json(&other, doc2);
    assert_string_equal(doc2, doc);
}

static void heavy_customer_document_stays_bounded(void **state)
{
    /* Every ring at its bound, with the longest strings the events allow. */
    char long_key[EVENT_KEY_MAX + 1], long_text[EVENT_TEXT_MAX + 1];
    memset(long_key, 'k', EVENT_KEY_MAX);
    long_key[EVENT_KEY_MAX] = '\0';
    memset(long_text, '"', EVENT_TEXT_MAX); /* quotes: every byte escaped */
    long_text[EVENT_TEXT_MAX] = '\0';
    char escaped[2 * EVENT_TEXT_MAX + 1] = "";
    for (int i = 0; i < EVENT_TEXT_MAX; i++)
        strcat(escaped, "\\\"");
    for (int i = 0; i < 300; i++) {
        int64_t t = T0 + i * 60000;
        long_key[0] = (char)('a' + i % 26);
        long_key[1] = (char)('a' + i / 26 % 26);
        apply("contact.queued", t,
              "{\"contact_id\":\"%s\",\"channel\":\"phone\",\"queue\":\"%s\",\"reason\":\"%s\"}",
              long_key, long_key, escaped);
        apply("order.placed", t,
              "{\"order_id\":\"%s\",\"amount\":999999999999,\"currency\":\"EUR\",\"margin\":-"
              "999999999999}",
              long_key);
        apply("complaint.filed", t, "{\"category\":\"c\",\"severity\":\"critical\"}");
        apply("payment.failed", t, "{\"amount\":1}");
        apply("web.visited", t, "{\"page\":\"/x\",\"intent\":\"cancel\"}");
    }
    /* the longest profile: every byte of name and segment escaped, 1 KiB of preferences */
    char name[2 * EVENT_NAME_MAX + 1] = "", segment[2 * EVENT_SHORT_TEXT_MAX + 1] = "";
    char prefs[EVENT_PREFERENCES_MAX + 1] = "{\"k\":\"";
    for (int i = 0; i < EVENT_NAME_MAX; i++)
        strcat(name, "\\\"");
    for (int i = 0; i < EVENT_SHORT_TEXT_MAX; i++)
        strcat(segment, "\\\"");
    memset(prefs + 6, 'p', EVENT_PREFERENCES_MAX - 8);
    strcpy(prefs + EVENT_PREFERENCES_MAX - 2, "\"}");
    apply("customer.profile", T0,
          "{\"name\":\"%s\",\"segment\":\"%s\",\"language\":\"%s\","
          "\"since\":\"2019-04-01\",\"preferences\":%s}",
          name, segment, "abcdefghij-abcdefghij-abcdefghij-ab", prefs);
    assert_int_equal(strlen(cust.profile.preferences), EVENT_PREFERENCES_MAX);
    for (int i = 0; i < STATE_RULES_MAX; i++) {
        char id[32];
        snprintf(id, sizeof id, "\"%030d", i); /* quotes are escaped: twice the bytes */
        assert_int_equal(customer_rule_fired(&cust, id, T0), 0);
    }
    /* 300 orders of 1e12 in one bucket: money saturates at 1e14 rather than overflowing */
    assert_int_equal(counts().revenue_12m, INT64_C(10000000000000000));
    assert_int_equal(counts().margin_12m, -INT64_C(10000000000000000));
    size_t len = to_json(&cust, doc);
    assert_true(len < STATE_JSON_MAX);
    assert_round_trip(&cust);
    print_message("heavy customer document: %zu bytes (STATE_JSON_MAX %d)\n", len, STATE_JSON_MAX);
}

static void small_buffer_is_enospc(void **state)
{
    char small[64];
    size_t len = 99;
    build_rich_customer(&cust);
    assert_int_equal(customer_to_json(&cust, &cfg, small, sizeof small, &len), STATE_ENOSPC);
    assert_int_equal(len, 99);
    assert_string_equal(small, "");
}

static void times_match_timefmt_format(void **state)
{
    const int64_t times[] = {T0,
                             T0 + 999,
                             0,
                             -1,
                             INT64_C(-62167219200000),
                             INT64_C(253402300799999),
                             INT64_C(951782400000) /* 2000-02-29 */};
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
        char want[TIMEFMT_TEXT_SIZE], needle[64];
        assert_int_equal(customer_init(&cust, SUBJECT), 0);
        cust.clock_ms = times[i];
        to_json(&cust, doc);
        assert_int_equal(timefmt_format(times[i], want, sizeof want), 24);
        snprintf(needle, sizeof needle, "\"updated\":\"%s\"", want);
        if (!strstr(doc, needle))
            fail_msg("%lld: no %s in %.120s", (long long)times[i], needle, doc);
    }
}

/* Replaces the first `from` in doc with `to` (into doc2). */
static void mutate(const char *from, const char *to)
{
    char *at = strstr(doc, from);
    if (!at) fail_msg("no %s in the document", from);
    size_t head = (size_t)(at - doc);
    snprintf(doc2, sizeof doc2, "%.*s%s%s", (int)head, doc, to, at + strlen(from));
}

static void assert_refused(const char *json, size_t len, const char *detail)
{
    err[0] = '\0';
    if (customer_from_json(&other, json, len, err, sizeof err) != STATE_EDOCUMENT)
        fail_msg("accepted: %.200s", json);
    if (!strstr(err, detail)) fail_msg("error \"%s\" lacks \"%s\"", err, detail);
    assert_string_equal(other.id, ""); /* left empty */
    assert_int_equal(other.n_contacts, 0);
}

static void garbage_json_rejected(void **state)
{
    static const struct {
        const char *json, *detail;
    } cases[] = {
        {"", "malformed"},
        {"null", "not a JSON object"},
        {"[]", "not a JSON object"},
        {"{}", "v:"},
        {"{\"v\":3}", "v:"},
        {"{\"v\":1,\"id\":\"cust 1\"}", "id:"},
        {"{\"v\":1,\"id\":\"agent:a\",\"partner\":false}", "id:"},
        {"{\"v\":1,\"id\":\"c\",\"partner\":1}", "partner:"},
        {"{\"v\":1,\"id\":\"c\",\"partner\":false,\"updated\":\"yesterday\"}", "updated:"},
        {"{\"v\":1,\"id\":\"c\",\"partner\":false,\"updated\":null,\"offset\":1.5}", "offset:"},
        {"{\"v\":1", "malformed"},
        {"{\"v\":1,", "comma"},
        {"{\"v\":1,\"id\":\"c\"},", "comma"},
        {"{\"v\":1} x", "bytes after"},
        {"{\"v\":1,\"id\":\"a\\u0000b\"}", "\\u0000"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_refused(cases[i].json, strlen(cases[i].json), cases[i].detail);
    assert_refused("{\"v\":1}\0", 8, "NUL");
    static char huge[STATE_JSON_MAX + 2];
    memset(huge, ' ', sizeof huge);
    assert_refused(huge, sizeof huge, "over");
}

static void bad_field_in_document_named_in_error(void **state)
{
    build_rich_customer(&cust);
    size_t len = to_json(&cust, doc);
    static const struct {
        const char *from, *to, *detail;
    } cases[] = {
        {"\"chat\",5,", "\"pigeon\",5,", "w.c["},
        {"\"state\":\"active\"", "\"state\":\"sleeping\"", "contact.state"},
        {"\"csat\":2", "\"csat\":6", "survey.csat"},
        {"\"tier\":null", "\"tier\":\"Z\"", "tier"},
        {"\"ids\":\"", "\"ids\":\"!", "w.ids"},
        {"\"cx\":[", "\"cx\":[-5,", "w.cx[0]"},
        {"\"language\":\"en-GB\"", "\"language\":\"en GB\"", "profile.language"},
        {"\"r\":[[\"repeat_contact\",", "\"r\":[[\"\",", "w.r[0]"},
        {"\"o\":[[\"o-1\",\"placed\"", "\"o\":[[\"o-1\",\"lost\"", "w.o[0]"},
        {"\"preferences\":{\"channel\":\"email\",\"n\":[1,2.5,\"\xc3\xa9\"]}",
         "\"preferences\":\"x\"", "profile.preferences"},
    };
    (void)len;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mutate(cases[i].from, cases[i].to);
        assert_refused(doc2, strlen(doc2), cases[i].detail);
    }
}

/* Truncating a valid document anywhere never crashes and never reads as valid. */
static void every_truncation_of_a_document_is_refused(void **state)
{
    build_rich_customer(&cust);
    size_t len = to_json(&cust, doc);
    for (size_t n = 0; n < len; n++)
        assert_int_equal(customer_from_json(&other, doc, n, err, sizeof err), STATE_EDOCUMENT);
    assert_int_equal(customer_from_json(&other, doc, len, err, sizeof err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(fourth_support_contact_counts_four, setup),
        cmocka_unit_test_setup(support_reason_on_any_event_counts_case_insensitively, setup),
        cmocka_unit_test_setup(same_contact_counted_once_across_events, setup),
        cmocka_unit_test_setup(contact_31_days_back_not_counted, setup),
        cmocka_unit_test_setup(window_edge_is_exclusive, setup),
        cmocka_unit_test_setup(contact_too_old_to_count_is_not_new, setup),
        cmocka_unit_test_setup(contact_dated_by_its_earliest_event, setup),
        cmocka_unit_test_setup(contact_windows_24h_7d_30d, setup),
        cmocka_unit_test_setup(abandoned_counts_in_7_days, setup),
        cmocka_unit_test_setup(windows_follow_event_time_not_wall_clock, setup),
        cmocka_unit_test_setup(contact_ring_keeps_newest_128, setup),
        cmocka_unit_test_setup(small_customer_holds_small_rings, setup),
        cmocka_unit_test_setup(out_of_memory_changes_nothing, setup),
        cmocka_unit_test_setup(out_of_memory_recording_a_cooldown_records_nothing, setup),
        cmocka_unit_test_setup(out_of_memory_reading_a_document_is_not_a_bad_document, setup),
        cmocka_unit_test_setup(cost_to_serve_counts_each_contact_once, setup),
        cmocka_unit_test_setup(cancel_signals_from_web_and_subscription, setup),
        cmocka_unit_test_setup(complaints_and_failed_payments_have_their_windows, setup),
        cmocka_unit_test_setup(sentiment_means_per_contact_and_30_days, setup),
        cmocka_unit_test_setup(duplicate_event_id_changes_nothing, setup),
        cmocka_unit_test_setup(offset_at_or_below_last_is_duplicate, setup),
        cmocka_unit_test_setup(event_id_remembered_for_64_events, setup),
        cmocka_unit_test_setup(agent_state_event_rejected, setup),
        cmocka_unit_test_setup(another_customers_event_rejected, setup),
        cmocka_unit_test_setup(partner_flag_from_subject, setup),
        cmocka_unit_test_setup(init_of_zeroed_memory_equals_init, setup),
        cmocka_unit_test_setup(open_order_leaves_on_delivered, setup),
        cmocka_unit_test_setup(older_order_update_does_not_overwrite_newer, setup),
        cmocka_unit_test_setup(cancelled_and_returned_orders_take_revenue_back, setup),
        cmocka_unit_test_setup(order_placed_twice_counted_once, setup),
        cmocka_unit_test_setup(revenue_90d_and_the_90_days_before, setup),
        cmocka_unit_test_setup(money_windows_follow_bucket_edges, setup),
        cmocka_unit_test_setup(money_leaves_12_months_as_the_clock_moves, setup),
        cmocka_unit_test_setup(orders_list_keeps_16_and_evicts_closed_first, setup),
        cmocka_unit_test_setup(current_contact_follows_queued_started_ended, setup),
        cmocka_unit_test_setup(late_event_of_ended_contact_does_not_reopen_it, setup),
        cmocka_unit_test_setup(ending_another_contact_keeps_the_current_one, setup),
        cmocka_unit_test_setup(transfer_to_queue_queues_again, setup),
        cmocka_unit_test_setup(timeline_texts_read_for_agents, setup),
        cmocka_unit_test_setup(timeline_count_asks_for_trim_when_full, setup),
        cmocka_unit_test_setup(timeline_text_cut_at_character_boundary, setup),
        cmocka_unit_test_setup(late_event_counts_the_same_after_a_reload, setup),
        cmocka_unit_test_setup(apply_says_where_the_contact_waited, setup),
        cmocka_unit_test_setup(profile_upsert_keeps_absent_fields, setup),
        cmocka_unit_test_setup(rule_cooldown_remembers_last_firing, setup),
        cmocka_unit_test_setup(json_round_trip_is_exact, setup),
        cmocka_unit_test_setup(json_round_trip_of_a_new_customer_is_exact, setup),
        cmocka_unit_test_setup(json_round_trip_with_scores_is_exact, setup),
        cmocka_unit_test_setup(version_1_document_is_read, setup),
        cmocka_unit_test_setup(resumed_customer_applies_like_the_original, setup),
        cmocka_unit_test_setup(heavy_customer_document_stays_bounded, setup),
        cmocka_unit_test_setup(small_buffer_is_enospc, setup),
        cmocka_unit_test_setup(times_match_timefmt_format, setup),
        cmocka_unit_test_setup(garbage_json_rejected, setup),
        cmocka_unit_test_setup(bad_field_in_document_named_in_error, setup),
        cmocka_unit_test_setup(every_truncation_of_a_document_is_refused, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
