/* test_engine_event.c - the engine's event codec (services/engine/event.c): one valid event of
 * each type read into the right fields, each dead-letter reason with the field it names, the
 * boundaries of sizes, ranges and dates, and the RFC 3339 formatter. */
#include "event.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOW_MS INT64_C(1796083200000)        /* 2026-12-01T00:00:00Z */
#define EVENT_TIME_MS INT64_C(1796058140000) /* 2026-11-30T17:02:20Z, the time of built events */
#define MAX_FUTURE_MS (5 * 60 * 1000)

static event_limits_t limits = {EVENT_MAX_BYTES_DEFAULT, NOW_MS, MAX_FUTURE_MS};
static event_t ev;
static event_error_t err;
static char msg[2 * EVENT_MAX_BYTES_DEFAULT];

static int setup(void **state)
{
    limits = (event_limits_t){EVENT_MAX_BYTES_DEFAULT, NOW_MS, MAX_FUTURE_MS};
    memset(&err, 0, sizeof err);
    return 0;
}

/* ---- Helpers */

/* Builds a message from every attribute; data is JSON text, or NULL for no data. */
static const char *build(const char *type, const char *subject, const char *time, const char *data)
{
    int n = snprintf(msg, sizeof msg,
                     "{\"specversion\": \"1.0\", \"id\": \"evt-0001\", \"source\": \"/acd/eu-1\", "
                     "\"type\": \"%s\", \"time\": \"%s\", \"subject\": \"%s\"%s%s}",
                     type, time, subject, data ? ", \"data\": " : "", data ? data : "");
    assert_true(n > 0 && (size_t)n < sizeof msg);
    return msg;
}

static const char *event_json(const char *type, const char *data)
{
    return build(type, "cust-1042", "2026-11-30T17:02:20Z", data);
}

static const char *event_at(const char *time)
{
    return build("contact.abandoned", "cust-1042", time,
                 "{\"contact_id\": \"k-1\", \"wait_s\": 3}");
}

static int parse(const char *json)
{
    return event_parse(json, strlen(json), &limits, &ev, &err);
}

static void assert_parses(const char *json)
{
    if (parse(json) != 0)
        fail_msg("rejected (%s: %s): %s", event_reason_name(err.reason), err.detail, json);
    assert_int_equal(err.reason, EVENT_REASON_NONE);
    assert_string_equal(err.detail, "");
}

/* Asserts that json is rejected for reason, with detail containing the given text. */
static void assert_rejected(const char *json, event_reason_t reason, const char *detail)
{
    if (parse(json) != -1) fail_msg("accepted: %s", json);
    if (err.reason != reason)
        fail_msg("reason %s (%s), expected %s: %s", event_reason_name(err.reason), err.detail,
                 event_reason_name(reason), json);
    if (!strstr(err.detail, detail)) fail_msg("detail \"%s\" lacks \"%s\"", err.detail, detail);
}

static void assert_bad_data(const char *type, const char *data, const char *detail)
{
    assert_rejected(event_json(type, data), EVENT_REASON_BAD_DATA, detail);
}

static int64_t time_of(const char *text)
{
    int64_t ms = 0;
    if (timefmt_parse(text, &ms) != 0) fail_msg("timefmt_parse rejected %s", text);
    return ms;
}

/* ---- One valid event per type */

static void contact_queued_reads_its_fields(void **state)
{
    assert_parses(event_json("contact.queued", "{\"contact_id\": \"k-77\", \"channel\": \"chat\", "
                                               "\"queue\": \"billing\", \"reason\": \"Rückruf\"}"));
    assert_int_equal(ev.type, EVENT_CONTACT_QUEUED);
    assert_string_equal(ev.id, "evt-0001");
    assert_string_equal(ev.source, "/acd/eu-1");
    assert_string_equal(ev.subject, "cust-1042");
    assert_false(ev.is_partner);
    assert_false(ev.is_agent);
    assert_true(ev.time_ms == EVENT_TIME_MS);
    assert_string_equal(ev.data.contact_queued.contact_id, "k-77");
    assert_int_equal(ev.data.contact_queued.channel, EVENT_CHANNEL_CHAT);
    assert_string_equal(ev.data.contact_queued.queue, "billing");
    assert_string_equal(ev.data.contact_queued.reason, "Rückruf");
}

static void contact_started_reads_its_fields(void **state)
{
    assert_parses(event_json("contact.started",
                             "{\"contact_id\": \"k-77\", \"channel\": \"phone\", "
                             "\"agent_id\": \"a-9\", \"queue\": \"vip\"}"));
    assert_int_equal(ev.type, EVENT_CONTACT_STARTED);
    assert_string_equal(ev.data.contact_started.contact_id, "k-77");
    assert_int_equal(ev.data.contact_started.channel, EVENT_CHANNEL_PHONE);
    assert_string_equal(ev.data.contact_started.agent_id, "a-9");
    assert_string_equal(ev.data.contact_started.queue, "vip");
    assert_null(ev.data.contact_started.reason);
}

static void contact_ended_reads_its_fields(void **state)
{
    assert_parses(event_json("contact.ended",
                             "{\"contact_id\": \"k-77\", \"duration_s\": 312.5, "
                             "\"resolved\": false, \"wrapup\": \"refund issued\"}"));
    assert_int_equal(ev.type, EVENT_CONTACT_ENDED);
    assert_string_equal(ev.data.contact_ended.contact_id, "k-77");
    assert_true(ev.data.contact_ended.duration_s == 312.5);
    assert_true(ev.data.contact_ended.has_resolved);
    assert_false(ev.data.contact_ended.resolved);
    assert_string_equal(ev.data.contact_ended.wrapup, "refund issued");
}

static void contact_ended_without_resolved_leaves_it_unflagged(void **state)
{
    assert_parses(event_json("contact.ended", "{\"contact_id\": \"k-77\", \"duration_s\": 0}"));
    assert_false(ev.data.contact_ended.has_resolved);
    assert_null(ev.data.contact_ended.wrapup);
}

static void contact_abandoned_reads_its_fields(void **state)
{
    assert_parses(event_json("contact.abandoned", "{\"contact_id\": \"k-78\", \"wait_s\": 95}"));
    assert_int_equal(ev.type, EVENT_CONTACT_ABANDONED);
    assert_string_equal(ev.data.contact_abandoned.contact_id, "k-78");
    assert_true(ev.data.contact_abandoned.wait_s == 95);
}

static void contact_transferred_to_a_queue_only_is_valid(void **state)
{
    assert_parses(event_json("contact.transferred",
                             "{\"contact_id\": \"k-77\", \"to_queue\": \"retention\"}"));
    assert_int_equal(ev.type, EVENT_CONTACT_TRANSFERRED);
    assert_string_equal(ev.data.contact_transferred.contact_id, "k-77");
    assert_string_equal(ev.data.contact_transferred.to_queue, "retention");
    assert_null(ev.data.contact_transferred.to_agent_id);
}

static void contact_transferred_to_an_agent_only_is_valid(void **state)
{
    assert_parses(
        event_json("contact.transferred", "{\"contact_id\": \"k-77\", \"to_agent_id\": \"a-12\"}"));
    assert_string_equal(ev.data.contact_transferred.to_agent_id, "a-12");
    assert_null(ev.data.contact_transferred.to_queue);
}

static void sentiment_sampled_reads_its_fields(void **state)
{
    assert_parses(event_json("sentiment.sampled", "{\"contact_id\": \"k-77\", \"score\": -0.35}"));
    assert_int_equal(ev.type, EVENT_SENTIMENT_SAMPLED);
    assert_string_equal(ev.data.sentiment_sampled.contact_id, "k-77");
    assert_true(ev.data.sentiment_sampled.score == -0.35);
}

static void order_placed_reads_its_fields(void **state)
{
    assert_parses(event_json("order.placed", "{\"order_id\": \"o-5531\", \"amount\": 129.9, "
                                             "\"margin\": -12.5, \"currency\": \"EUR\"}"));
    assert_int_equal(ev.type, EVENT_ORDER_PLACED);
    assert_string_equal(ev.data.order_placed.order_id, "o-5531");
    assert_true(ev.data.order_placed.amount == 129.9);
    assert_true(ev.data.order_placed.has_margin);
    assert_true(ev.data.order_placed.margin == -12.5);
    assert_string_equal(ev.data.order_placed.currency, "EUR");
}

static void order_updated_reads_its_fields(void **state)
{
    assert_parses(
        event_json("order.updated", "{\"order_id\": \"o-5531\", \"status\": \"out_of_stock\"}"));
    assert_int_equal(ev.type, EVENT_ORDER_UPDATED);
    assert_string_equal(ev.data.order_updated.order_id, "o-5531");
    assert_int_equal(ev.data.order_updated.status, EVENT_ORDER_OUT_OF_STOCK);
}

static void payment_failed_reads_its_fields(void **state)
{
    assert_parses(event_json("payment.failed", "{\"amount\": 49, \"reason\": \"card_declined\"}"));
    assert_int_equal(ev.type, EVENT_PAYMENT_FAILED);
    assert_true(ev.data.payment_failed.amount == 49);
    assert_string_equal(ev.data.payment_failed.reason, "card_declined");
}

static void complaint_filed_reads_its_fields(void **state)
{
    assert_parses(
        event_json("complaint.filed", "{\"category\": \"billing\", \"severity\": \"critical\"}"));
    assert_int_equal(ev.type, EVENT_COMPLAINT_FILED);
    assert_string_equal(ev.data.complaint_filed.category, "billing");
    assert_int_equal(ev.data.complaint_filed.severity, EVENT_SEVERITY_CRITICAL);
}

static void survey_answered_with_csat_only_reads_it(void **state)
{
    assert_parses(event_json("survey.answered", "{\"csat\": 2}"));
    assert_int_equal(ev.type, EVENT_SURVEY_ANSWERED);
    assert_true(ev.data.survey_answered.has_csat);
    assert_int_equal(ev.data.survey_answered.csat, 2);
    assert_false(ev.data.survey_answered.has_nps);
}

static void survey_answered_with_nps_only_reads_it(void **state)
{
    assert_parses(event_json("survey.answered", "{\"nps\": 0}"));
    assert_false(ev.data.survey_answered.has_csat);
    assert_true(ev.data.survey_answered.has_nps);
    assert_int_equal(ev.data.survey_answered.nps, 0);
}

static void web_visited_reads_its_fields(void **state)
{
    assert_parses(event_json("web.visited",
                             "{\"page\": \"/account/cancel?step=2\", \"intent\": \"cancel\"}"));
    assert_int_equal(ev.type, EVENT_WEB_VISITED);
    assert_string_equal(ev.data.web_visited.page, "/account/cancel?step=2");
    assert_string_equal(ev.data.web_visited.intent, "cancel");
}

static void subscription_changed_reads_its_fields(void **state)
{
    assert_parses(
        event_json("subscription.changed", "{\"action\": \"downgraded\", \"mrr_delta\": -20}"));
    assert_int_equal(ev.type, EVENT_SUBSCRIPTION_CHANGED);
    assert_int_equal(ev.data.subscription_changed.action, EVENT_SUBSCRIPTION_DOWNGRADED);
    assert_true(ev.data.subscription_changed.has_mrr_delta);
    assert_true(ev.data.subscription_changed.mrr_delta == -20);
}

static void customer_profile_reads_its_fields_and_compacts_preferences(void **state)
{
    assert_parses(
        event_json("customer.profile",
                   "{\"name\": \"Zoë Brandt\", \"segment\": \"gold\", \"language\": \"de-CH\", "
                   "\"since\": \"2019-04-01\", \"preferences\": "
                   "{ \"channel\" : \"email\",\n \"quiet_hours\": [ 22, 7 ] }}"));
    assert_int_equal(ev.type, EVENT_CUSTOMER_PROFILE);
    const event_customer_profile_t *d = &ev.data.customer_profile;
    assert_string_equal(d->name, "Zoë Brandt");
    assert_string_equal(d->segment, "gold");
    assert_string_equal(d->language, "de-CH");
    assert_true(d->has_since);
    assert_true(d->since_ms == INT64_C(1554076800000));
    assert_string_equal(d->preferences, "{\"channel\":\"email\",\"quiet_hours\":[22,7]}");
}

static void customer_profile_since_may_be_a_date_time(void **state)
{
    assert_parses(event_json("customer.profile", "{\"since\": \"2019-04-01T02:00:00+02:00\"}"));
    assert_true(ev.data.customer_profile.since_ms == INT64_C(1554076800000));
    assert_null(ev.data.customer_profile.name);
}

static void customer_profile_without_data_is_an_empty_upsert(void **state)
{
    assert_parses(event_json("customer.profile", NULL));
    const event_customer_profile_t *d = &ev.data.customer_profile;
    assert_null(d->name);
    assert_null(d->segment);
    assert_null(d->language);
    assert_false(d->has_since);
    assert_null(d->preferences);
}

static void agent_state_reads_its_fields(void **state)
{
    assert_parses(
        build("agent.state", "agent:a-9", "2026-11-30T17:02:20Z",
              "{\"agent_id\": \"a-9\", \"state\": \"busy\", \"queues\": [\"billing\", \"vip\"]}"));
    assert_int_equal(ev.type, EVENT_AGENT_STATE);
    assert_true(ev.is_agent);
    assert_false(ev.is_partner);
    assert_string_equal(ev.subject, "agent:a-9");
    assert_string_equal(ev.data.agent_state.agent_id, "a-9");
    assert_int_equal(ev.data.agent_state.state, EVENT_AGENT_BUSY);
    assert_true(ev.data.agent_state.has_queues);
    assert_int_equal(ev.data.agent_state.n_queues, 2);
    assert_string_equal(ev.data.agent_state.queues[0], "billing");
    assert_string_equal(ev.data.agent_state.queues[1], "vip");
}

static void agent_state_with_empty_queues_means_none(void **state)
{
    assert_parses(build("agent.state", "agent:a-9", "2026-11-30T17:02:20Z",
                        "{\"agent_id\": \"a-9\", \"state\": \"offline\", \"queues\": []}"));
    assert_true(ev.data.agent_state.has_queues);
    assert_int_equal(ev.data.agent_state.n_queues, 0);
}

static void agent_state_without_queues_keeps_them(void **state)
{
    assert_parses(build("agent.state", "agent:a-9", "2026-11-30T17:02:20Z",
                        "{\"agent_id\": \"a-9\", \"state\": \"available\"}"));
    assert_false(ev.data.agent_state.has_queues);
}

/* ---- Attributes, extensions and subjects */

static void extensions_and_unknown_data_fields_are_ignored(void **state)
{
    assert_parses("{\"specversion\": \"1.0\", \"id\": \"e-1\", \"source\": \"/s\", "
                  "\"type\": \"sentiment.sampled\", \"time\": \"2026-11-30T17:02:20Z\", "
                  "\"subject\": \"c-1\", \"traceparent\": \"00-4bf9-00f0-01\", "
                  "\"datacontenttype\": \"application/json\", \"partitionkey\": {\"a\": [1]}, "
                  "\"data\": {\"contact_id\": \"k-1\", \"score\": 0.5, \"model\": \"v7\"}}");
    assert_true(ev.data.sentiment_sampled.score == 0.5);
}

static void null_optional_field_counts_as_absent(void **state)
{
    assert_parses(event_json("contact.started", "{\"contact_id\": \"k-77\", \"channel\": \"web\", "
                                                "\"agent_id\": \"a-9\", \"queue\": null}"));
    assert_null(ev.data.contact_started.queue);
}

static void partner_subject_is_flagged(void **state)
{
    assert_parses(build("order.placed", "partner:acme-42", "2026-11-30T17:02:20Z",
                        "{\"order_id\": \"o-1\", \"amount\": 10, \"currency\": \"USD\"}"));
    assert_true(ev.is_partner);
    assert_false(ev.is_agent);
    assert_string_equal(ev.subject, "partner:acme-42");
}

static void reparsing_clears_the_previous_event(void **state)
{
    assert_parses(event_json("customer.profile", "{\"name\": \"Ann\", \"since\": \"2020-01-01\"}"));
    assert_parses(event_json("customer.profile", "{\"segment\": \"smb\"}"));
    assert_null(ev.data.customer_profile.name);
    assert_false(ev.data.customer_profile.has_since);
    assert_string_equal(ev.data.customer_profile.segment, "smb");
}

static void success_after_failure_clears_the_error(void **state)
{
    assert_rejected("[]", EVENT_REASON_NOT_AN_OBJECT, "array");
    assert_parses(event_at("2026-11-30T17:02:20Z"));
}

/* ---- too_large, malformed_json, not_an_object */

/* A valid event padded with an extension to exactly size bytes. */
static const char *event_of_size(size_t size)
{
    const char *head = "{\"specversion\": \"1.0\", \"id\": \"e-1\", \"source\": \"/s\", "
                       "\"type\": \"payment.failed\", \"time\": \"2026-11-30T17:02:20Z\", "
                       "\"subject\": \"c-1\", \"data\": {\"amount\": 1}, \"pad\": \"";
    size_t n = strlen(head);
    assert_true(size < sizeof msg && size > n + 2);
    memcpy(msg, head, n);
    memset(msg + n, 'x', size - n - 2);
    memcpy(msg + size - 2, "\"}", 3);
    assert_int_equal(strlen(msg), size);
    return msg;
}

static void message_of_exactly_the_limit_is_accepted(void **state)
{
    assert_parses(event_of_size(EVENT_MAX_BYTES_DEFAULT));
}

static void message_one_byte_over_the_limit_is_too_large(void **state)
{
    assert_rejected(event_of_size(EVENT_MAX_BYTES_DEFAULT + 1), EVENT_REASON_TOO_LARGE,
                    "65537 bytes");
}

static void too_large_uses_the_limit_given(void **state)
{
    limits.max_bytes = 200;
    assert_parses(event_of_size(200));
    assert_rejected(event_of_size(201), EVENT_REASON_TOO_LARGE, "limit of 200");
}

static void too_large_is_checked_before_parsing(void **state)
{
    limits.max_bytes = 4;
    assert_rejected("{not json", EVENT_REASON_TOO_LARGE, "9 bytes");
}

static void truncated_json_is_malformed(void **state)
{
    assert_rejected("{\"specversion\": \"1.0\", \"id\": \"e", EVENT_REASON_MALFORMED_JSON,
                    "malformed JSON");
}

static void empty_message_is_malformed(void **state)
{
    assert_int_equal(event_parse("", 0, &limits, &ev, &err), -1);
    assert_int_equal(err.reason, EVENT_REASON_MALFORMED_JSON);
    assert_string_equal(err.detail, "malformed JSON: empty message");
}

/* A valid event with text before and after it. */
static const char *event_between(const char *before, const char *after)
{
    static char json[4096];
    const char *inner = event_at("2026-11-30T17:02:20Z");
    size_t a = strlen(before), b = strlen(inner), c = strlen(after);
    assert_true(a + b + c < sizeof json);
    memcpy(json, before, a);
    memcpy(json + a, inner, b);
    memcpy(json + a + b, after, c + 1);
    return json;
}

static void bytes_after_the_object_are_malformed(void **state)
{
    assert_rejected(event_between("", " x"), EVENT_REASON_MALFORMED_JSON, "after the value");
    assert_rejected(event_between("", "{}"), EVENT_REASON_MALFORMED_JSON, "after the value");
}

static void whitespace_around_the_object_is_fine(void **state)
{
    assert_parses(event_between(" \r\n\t", " \n"));
}

static void message_ending_in_a_comma_is_malformed(void **state)
{
    assert_rejected("{\"a\": 1, ", EVENT_REASON_MALFORMED_JSON,
                    "malformed JSON near offset 9: expected a member name");
}

static void nul_byte_is_malformed(void **state)
{
    const char *json = event_at("2026-11-30T17:02:20Z");
    size_t len = strlen(json);
    char copy[4096];
    memcpy(copy, json, len + 1);
    copy[len / 2] = '\0';
    assert_int_equal(event_parse(copy, len, &limits, &ev, &err), -1);
    assert_int_equal(err.reason, EVENT_REASON_MALFORMED_JSON);
    assert_non_null(strstr(err.detail, "NUL byte"));
}

static void escaped_nul_is_malformed(void **state)
{
    assert_rejected(build("payment.failed", "c-1", "2026-11-30T17:02:20Z",
                          "{\"amount\": 1, \"reason\": \"a\\u0000b\"}"),
                    EVENT_REASON_MALFORMED_JSON, "\\u0000");
}

static void escaped_backslash_before_u0000_is_plain_text(void **state)
{
    /* JSON "a\\u0000" is the 7 characters a \ u 0 0 0 0, not a NUL. */
    assert_parses("{\"specversion\": \"1.0\", \"id\": \"a\\\\u0000\", \"source\": \"/s\", "
                  "\"type\": \"payment.failed\", \"time\": \"2026-11-30T17:02:20Z\", "
                  "\"subject\": \"c-1\", \"data\": {\"amount\": 1}}");
    assert_string_equal(ev.id, "a\\u0000");
}

static void json_that_is_not_an_object_is_rejected(void **state)
{
    assert_rejected("[1, 2]", EVENT_REASON_NOT_AN_OBJECT, "message is an array");
    assert_rejected("\"event\"", EVENT_REASON_NOT_AN_OBJECT, "message is a string");
    assert_rejected("42", EVENT_REASON_NOT_AN_OBJECT, "message is a number");
    assert_rejected("null", EVENT_REASON_NOT_AN_OBJECT, "message is null");
}

/* ---- missing_attribute, bad_attribute, bad_specversion, unknown_type */

static void missing_attribute_names_it(void **state)
{
    static const char *const names[] = {"specversion", "id", "source", "type", "time", "subject"};
    for (size_t skip = 0; skip < sizeof names / sizeof names[0]; skip++) {
        static const char *const values[] = {
            "1.0", "e-1", "/s", "web.visited", "2026-11-30T17:02:20Z", "c-1"};
        char json[1024], expected[64];
        size_t n = (size_t)snprintf(json, sizeof json, "{\"data\": {\"page\": \"/\"}");
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (i != skip)
                n += (size_t)snprintf(json + n, sizeof json - n, ", \"%s\": \"%s\"", names[i],
                                      values[i]);
        snprintf(json + n, sizeof json - n, "}");
        snprintf(expected, sizeof expected, "missing attribute: %s", names[skip]);
        assert_rejected(json, EVENT_REASON_MISSING_ATTRIBUTE, expected);
        assert_string_equal(err.detail, expected);
    }
}

static void null_attribute_counts_as_missing(void **state)
{
    assert_rejected("{\"specversion\": \"1.0\", \"id\": \"e-1\", \"source\": \"/s\", "
                    "\"type\": \"payment.failed\", \"time\": null, \"subject\": \"c-1\", "
                    "\"data\": {\"amount\": 1}}",
                    EVENT_REASON_MISSING_ATTRIBUTE, "missing attribute: time");
}

/* A payment.failed event whose id attribute is the given JSON value. */
static const char *event_with_id(const char *id_json)
{
    snprintf(
        msg, sizeof msg,
        "{\"specversion\": \"1.0\", \"id\": %s, \"source\": \"/s\", \"type\": \"payment.failed\", "
        "\"time\": \"2026-11-30T17:02:20Z\", \"subject\": \"c-1\", \"data\": {\"amount\": 1}}",
        id_json);
    return msg;
}

static void bad_ids_are_bad_attributes(void **state)
{
    assert_rejected(event_with_id("\"\""), EVENT_REASON_BAD_ATTRIBUTE, "id: must be");
    assert_rejected(event_with_id("\"has space\""), EVENT_REASON_BAD_ATTRIBUTE, "id: must be");
    assert_rejected(event_with_id("\"tab\\there\""), EVENT_REASON_BAD_ATTRIBUTE, "id: must be");
    assert_rejected(event_with_id("\"caf\xc3\xa9\""), EVENT_REASON_BAD_ATTRIBUTE, "id: must be");
    assert_rejected(event_with_id("17"), EVENT_REASON_BAD_ATTRIBUTE, "id: must be");
}

static void id_of_128_bytes_is_accepted_and_129_is_not(void **state)
{
    char id[140] = "\"";
    memset(id + 1, 'i', 128);
    memcpy(id + 129, "\"", 2);
    assert_parses(event_with_id(id));
    assert_int_equal(strlen(ev.id), 128);
    memcpy(id + 129, "j\"", 3);
    assert_rejected(event_with_id(id), EVENT_REASON_BAD_ATTRIBUTE, "id: must be a string of 1-128");
}

static void empty_source_is_a_bad_attribute(void **state)
{
    assert_rejected("{\"specversion\": \"1.0\", \"id\": \"e-1\", \"source\": \"\", "
                    "\"type\": \"payment.failed\", \"time\": \"2026-11-30T17:02:20Z\", "
                    "\"subject\": \"c-1\", \"data\": {\"amount\": 1}}",
                    EVENT_REASON_BAD_ATTRIBUTE, "source: must be");
}

static void type_that_is_not_a_string_is_a_bad_attribute(void **state)
{
    assert_rejected("{\"specversion\": \"1.0\", \"id\": \"e-1\", \"source\": \"/s\", \"type\": 3, "
                    "\"time\": \"2026-11-30T17:02:20Z\", \"subject\": \"c-1\"}",
                    EVENT_REASON_BAD_ATTRIBUTE, "type: must be a string");
}

static void duplicate_attribute_is_rejected(void **state)
{
    assert_rejected(
        "{\"specversion\": \"1.0\", \"id\": \"e-1\", \"id\": \"e-2\", \"source\": \"/s\", "
        "\"type\": \"payment.failed\", \"time\": \"2026-11-30T17:02:20Z\", "
        "\"subject\": \"c-1\", \"data\": {\"amount\": 1}}",
        EVENT_REASON_BAD_ATTRIBUTE, "duplicate attribute: id");
}

/* Names are compared decoded ("\u0074ype" is "type"), and duplicates are found however many
 * members an object has (up to 24 are listed once, more are looked up in the tokens). */
static void escaped_names_and_many_members_are_looked_up_alike(void **state)
{
    assert_parses("{\"specversion\": \"1.0\", \"\\u0069d\": \"e-1\", \"source\": \"/s\", "
                  "\"\\u0074ype\": \"payment.failed\", \"time\": \"2026-11-30T17:02:20Z\", "
                  "\"subject\": \"c-1\", \"data\": {\"amo\\u0075nt\": 1}}");
    assert_string_equal(ev.id, "e-1");
    assert_true(ev.data.payment_failed.amount == 1);
    assert_rejected("{\"specversion\": \"1.0\", \"id\": \"e-1\", \"\\u0069d\": \"e-2\", "
                    "\"source\": \"/s\", \"type\": \"payment.failed\", "
                    "\"time\": \"2026-11-30T17:02:20Z\", \"subject\": \"c-1\", "
                    "\"data\": {\"amount\": 1}}",
                    EVENT_REASON_BAD_ATTRIBUTE, "duplicate attribute: id");
    for (int extra = 20; extra <= 30; extra += 10) {
        char data[1024];
        size_t n = (size_t)snprintf(data, sizeof data, "{\"contact_id\": \"k-1\"");
        for (int i = 0; i < extra; i++)
            n += (size_t)snprintf(data + n, sizeof data - n, ", \"x%d\": %d", i, i);
        snprintf(data + n, sizeof data - n, ", \"score\": 0.5}");
        assert_parses(event_json("sentiment.sampled", data));
        assert_true(ev.data.sentiment_sampled.score == 0.5);
        snprintf(data + n, sizeof data - n, ", \"score\": 0.5, \"score\": 0.1}");
        assert_bad_data("sentiment.sampled", data, "duplicate field: data.score");
    }
}

static void specversion_other_than_1_0_is_rejected(void **state)
{
    assert_rejected("{\"specversion\": \"0.3\", \"id\": \"e-1\"}", EVENT_REASON_BAD_SPECVERSION,
                    "not \"0.3\"");
    assert_rejected("{\"specversion\": 1.0, \"id\": \"e-1\"}", EVENT_REASON_BAD_SPECVERSION,
                    "must be the string \"1.0\"");
}

static void unknown_type_is_named(void **state)
{
    assert_rejected(event_json("contact.teleported", "{}"), EVENT_REASON_UNKNOWN_TYPE,
                    "unknown type: \"contact.teleported\"");
    assert_rejected(event_json("Contact.Started", "{}"), EVENT_REASON_UNKNOWN_TYPE,
                    "Contact.Started");
}

static void unknown_type_detail_is_bounded_and_printable(void **state)
{
    char type[400];
    memset(type, 'T', sizeof type - 1);
    type[sizeof type - 1] = '\0';
    memcpy(type, "\\u0001", 6); /* a control character, escaped as JSON requires */
    assert_rejected(event_json(type, "{}"), EVENT_REASON_UNKNOWN_TYPE, "\"?TTT");
    assert_non_null(strstr(err.detail, "...\""));
    assert_true(strlen(err.detail) < 64);
}

/* ---- bad_time, time_in_future */

static void unparseable_time_is_bad_time(void **state)
{
    static const char *const times[] = {
        "yesterday",
        "2026-11-30",
        "2026-11-30T17:02:20",
        "2026-11-30 17:02:20Z",
        "2026-11-30T17:02Z",
        "26-11-30T17:02:20Z",
        "2026-11-30T17:02:20.Z",
        "2026-11-30T17:02:20.1234567890Z",
        "2026-11-30T17:02:20+0100",
        "2026-11-30T17:02:20+01",
        "2026-11-30T17:02:20Zjunk",
        "2026-11-30T17:02:20+24:00",
        "+2026-11-30T17:02:20Z",
        "",
    };
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++)
        assert_rejected(event_at(times[i]), EVENT_REASON_BAD_TIME, "not an RFC 3339 date-time");
}

static void out_of_range_date_parts_are_bad_time(void **state)
{
    static const char *const times[] = {
        "2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z", "2026-02-30T00:00:00Z",
        "2026-04-31T00:00:00Z", "2026-11-00T00:00:00Z", "2026-11-30T24:00:00Z",
        "2026-11-30T17:60:00Z", "2026-11-30T17:02:61Z", "2026-11-30T17:02:20+01:60",
    };
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++)
        assert_rejected(event_at(times[i]), EVENT_REASON_BAD_TIME, times[i]);
}

static void time_that_is_not_a_string_is_bad_time(void **state)
{
    assert_rejected("{\"specversion\": \"1.0\", \"id\": \"e-1\", \"source\": \"/s\", "
                    "\"type\": \"payment.failed\", \"time\": 1796058140000, \"subject\": \"c-1\", "
                    "\"data\": {\"amount\": 1}}",
                    EVENT_REASON_BAD_TIME, "time: must be an RFC 3339 string, not a number");
}

static void leap_day_is_valid_in_2024_only(void **state)
{
    assert_parses(event_at("2024-02-29T00:00:00Z"));
    assert_true(ev.time_ms == INT64_C(1709164800000));
    assert_rejected(event_at("2025-02-29T00:00:00Z"), EVENT_REASON_BAD_TIME, "2025-02-29");
}

static void century_leap_rules_apply(void **state)
{
    int64_t ms;
    assert_int_equal(timefmt_parse("2000-02-29T00:00:00Z", &ms), 0);
    assert_int_equal(timefmt_parse("1900-02-29T00:00:00Z", &ms), -1);
    assert_int_equal(timefmt_parse("2100-02-29T00:00:00Z", &ms), -1);
}

static void offsets_convert_to_utc(void **state)
{
    assert_true(time_of("2026-11-30T18:02:20+01:00") == EVENT_TIME_MS);
    assert_true(time_of("2026-11-30T11:32:20-05:30") == EVENT_TIME_MS);
    assert_true(time_of("2026-11-30T17:02:20-00:00") == EVENT_TIME_MS);
    assert_true(time_of("2026-12-01T02:02:20+09:00") == EVENT_TIME_MS); /* across midnight */
    assert_true(time_of("2026-11-30t17:02:20z") == EVENT_TIME_MS);      /* RFC 3339 allows t, z */
    assert_parses(event_at("2026-11-30T18:02:20+01:00"));
    assert_true(ev.time_ms == EVENT_TIME_MS);
}

static void fractional_seconds_are_truncated_to_ms(void **state)
{
    assert_true(time_of("2026-11-30T17:02:20.1Z") == EVENT_TIME_MS + 100);
    assert_true(time_of("2026-11-30T17:02:20.12Z") == EVENT_TIME_MS + 120);
    assert_true(time_of("2026-11-30T17:02:20.123Z") == EVENT_TIME_MS + 123);
    assert_true(time_of("2026-11-30T17:02:20.999999999Z") == EVENT_TIME_MS + 999);
    assert_true(time_of("2026-11-30T18:02:20.5+01:00") == EVENT_TIME_MS + 500);
}

static void leap_second_folds_into_the_next_second(void **state)
{
    assert_true(time_of("2016-12-31T23:59:60Z") == time_of("2017-01-01T00:00:00Z"));
}

static void times_before_1970_are_negative(void **state)
{
    assert_true(time_of("1969-12-31T23:59:59.999Z") == -1);
    assert_true(time_of("0001-01-01T00:00:00Z") == INT64_C(-62135596800000));
}

static void time_up_to_max_future_is_accepted(void **state)
{
    assert_parses(event_at("2026-12-01T00:05:00Z")); /* now + 5 min exactly */
}

static void time_beyond_max_future_is_rejected(void **state)
{
    assert_rejected(event_at("2026-12-01T00:05:00.001Z"), EVENT_REASON_TIME_IN_FUTURE,
                    "time: \"2026-12-01T00:05:00.001Z\" is over 300000 ms ahead of now");
}

static void negative_max_future_disables_the_check(void **state)
{
    limits.max_future_ms = -1;
    assert_parses(event_at("9999-12-31T23:59:59Z"));
}

static void far_past_now_does_not_overflow_the_future_check(void **state)
{
    limits.now_ms = INT64_MIN;
    limits.max_future_ms = INT64_MAX;
    assert_rejected(event_at("2026-11-30T17:02:20Z"), EVENT_REASON_TIME_IN_FUTURE, "ahead of now");
}

/* ---- bad_subject */

static void subject_with_bad_characters_is_rejected(void **state)
{
    assert_rejected(build("web.visited", "cust 1042", "2026-11-30T17:02:20Z", "{\"page\": \"/\"}"),
                    EVENT_REASON_BAD_SUBJECT, "subject: must be a string of 1-128 characters");
    assert_rejected(build("web.visited", "cust/1042", "2026-11-30T17:02:20Z", "{\"page\": \"/\"}"),
                    EVENT_REASON_BAD_SUBJECT, "subject: must be");
    assert_rejected(build("web.visited", "", "2026-11-30T17:02:20Z", "{\"page\": \"/\"}"),
                    EVENT_REASON_BAD_SUBJECT, "subject: must be");
}

static void subject_of_129_bytes_is_rejected(void **state)
{
    char subject[130];
    memset(subject, 's', 128);
    subject[128] = '\0';
    assert_parses(build("web.visited", subject, "2026-11-30T17:02:20Z", "{\"page\": \"/\"}"));
    subject[128] = 's';
    subject[129] = '\0';
    assert_rejected(build("web.visited", subject, "2026-11-30T17:02:20Z", "{\"page\": \"/\"}"),
                    EVENT_REASON_BAD_SUBJECT, "subject: must be");
}

static void agent_subject_on_a_customer_event_is_rejected(void **state)
{
    assert_rejected(build("web.visited", "agent:a-9", "2026-11-30T17:02:20Z", "{\"page\": \"/\"}"),
                    EVENT_REASON_BAD_SUBJECT, "agent:<id> is for agent.state only");
}

static void agent_state_needs_an_agent_subject(void **state)
{
    assert_rejected(build("agent.state", "a-9", "2026-11-30T17:02:20Z",
                          "{\"agent_id\": \"a-9\", \"state\": \"busy\"}"),
                    EVENT_REASON_BAD_SUBJECT, "must be agent:<agent_id>");
}

static void agent_subject_must_match_agent_id(void **state)
{
    assert_rejected(build("agent.state", "agent:a-9", "2026-11-30T17:02:20Z",
                          "{\"agent_id\": \"a-10\", \"state\": \"busy\"}"),
                    EVENT_REASON_BAD_SUBJECT, "agent:<data.agent_id>");
}

static void prefix_without_an_id_is_a_bad_subject(void **state)
{
    assert_rejected(build("web.visited", "partner:", "2026-11-30T17:02:20Z", "{\"page\": \"/\"}"),
                    EVENT_REASON_BAD_SUBJECT, "needs an id");
    assert_rejected(build("agent.state", "agent:", "2026-11-30T17:02:20Z",
                          "{\"agent_id\": \"a-9\", \"state\": \"busy\"}"),
                    EVENT_REASON_BAD_SUBJECT, "needs an id");
}

/* ---- missing_data, bad_data */

static void type_with_required_fields_needs_data(void **state)
{
    assert_rejected(event_json("contact.started", NULL), EVENT_REASON_MISSING_DATA,
                    "missing data: contact.started");
    assert_rejected(event_json("survey.answered", "null"), EVENT_REASON_MISSING_DATA,
                    "missing data: survey.answered");
}

static void data_that_is_not_an_object_is_bad_data(void **state)
{
    assert_bad_data("payment.failed", "[1]", "data: must be an object, not an array");
    assert_bad_data("customer.profile", "\"Ann\"", "data: must be an object, not a string");
}

static void missing_required_field_is_named(void **state)
{
    assert_rejected(
        event_json("contact.started", "{\"channel\": \"phone\", \"agent_id\": \"a-9\"}"),
        EVENT_REASON_BAD_DATA, "missing field: data.contact_id");
    assert_string_equal(err.detail, "missing field: data.contact_id");
    assert_bad_data("sentiment.sampled", "{\"contact_id\": \"k-1\"}", "missing field: data.score");
}

static void duplicate_data_field_is_rejected(void **state)
{
    assert_bad_data("sentiment.sampled",
                    "{\"contact_id\": \"k-1\", \"score\": 0.1, \"score\": -0.9}",
                    "duplicate field: data.score");
}

static void score_of_minus_one_and_one_are_accepted(void **state)
{
    assert_parses(event_json("sentiment.sampled", "{\"contact_id\": \"k-1\", \"score\": -1}"));
    assert_true(ev.data.sentiment_sampled.score == -1);
    assert_parses(event_json("sentiment.sampled", "{\"contact_id\": \"k-1\", \"score\": 1.0}"));
    assert_true(ev.data.sentiment_sampled.score == 1);
}

static void score_just_outside_the_range_is_bad_data(void **state)
{
    assert_bad_data("sentiment.sampled", "{\"contact_id\": \"k-1\", \"score\": 1.0001}",
                    "data.score: must be a number in [-1, 1]");
    assert_string_equal(err.detail, "data.score: must be a number in [-1, 1]");
    assert_bad_data("sentiment.sampled", "{\"contact_id\": \"k-1\", \"score\": -1.0001}",
                    "data.score: must be a number in [-1, 1]");
}

static void number_given_as_a_string_is_bad_data(void **state)
{
    assert_bad_data("sentiment.sampled", "{\"contact_id\": \"k-1\", \"score\": \"0.5\"}",
                    "data.score: must be a number");
}

static void infinite_number_is_bad_data(void **state)
{
    assert_bad_data(
        "order.placed",
        "{\"order_id\": \"o-1\", \"amount\": 1, \"currency\": \"EUR\", \"margin\": -1e999}",
        "data.margin: must be a number in [-1000000000000, 1000000000000]");
}

static void negative_amounts_and_durations_are_bad_data(void **state)
{
    assert_bad_data("payment.failed", "{\"amount\": -0.01}",
                    "data.amount: must be a number in [0,");
    assert_bad_data("contact.ended", "{\"contact_id\": \"k-1\", \"duration_s\": -1}",
                    "data.duration_s: must be a number in [0, 31536000]");
    assert_bad_data("contact.abandoned", "{\"contact_id\": \"k-1\", \"wait_s\": -5}",
                    "data.wait_s: must be a number in [0, 31536000]");
}

static void csat_of_zero_is_bad_data(void **state)
{
    assert_bad_data("survey.answered", "{\"csat\": 0}", "data.csat: must be an integer in [1, 5]");
}

static void csat_and_nps_bounds(void **state)
{
    assert_parses(event_json("survey.answered", "{\"csat\": 5, \"nps\": 10}"));
    assert_int_equal(ev.data.survey_answered.csat, 5);
    assert_int_equal(ev.data.survey_answered.nps, 10);
    assert_bad_data("survey.answered", "{\"csat\": 6}", "data.csat: must be an integer in [1, 5]");
    assert_bad_data("survey.answered", "{\"nps\": 11}", "data.nps: must be an integer in [0, 10]");
    assert_bad_data("survey.answered", "{\"nps\": -1}", "data.nps: must be an integer in [0, 10]");
}

static void non_integer_csat_is_bad_data(void **state)
{
    assert_bad_data("survey.answered", "{\"csat\": 4.5}", "data.csat: must be an integer");
}

static void survey_without_csat_or_nps_is_bad_data(void **state)
{
    assert_bad_data("survey.answered", "{\"comment\": \"meh\"}", "data: needs csat or nps");
}

static void transfer_without_a_target_is_bad_data(void **state)
{
    assert_bad_data("contact.transferred", "{\"contact_id\": \"k-1\"}",
                    "data: needs to_agent_id or to_queue");
}

static void unknown_enum_value_lists_the_choices(void **state)
{
    assert_bad_data(
        "contact.queued", "{\"contact_id\": \"k-1\", \"channel\": \"pigeon\", \"queue\": \"q\"}",
        "data.channel: must be one of phone|chat|email|web|mobile|store|kiosk|fax|field");
    assert_bad_data(
        "order.updated", "{\"order_id\": \"o-1\", \"status\": \"lost\"}",
        "data.status: must be one of shipped|delayed|cancelled|delivered|returned|out_of_stock");
    assert_bad_data("complaint.filed", "{\"category\": \"x\", \"severity\": \"HIGH\"}",
                    "data.severity: must be one of low|medium|high|critical");
    assert_bad_data(
        "subscription.changed", "{\"action\": \"paused\"}",
        "data.action: must be one of cancel_requested|downgraded|upgraded|renewed|cancelled");
    assert_rejected(build("agent.state", "agent:a-9", "2026-11-30T17:02:20Z",
                          "{\"agent_id\": \"a-9\", \"state\": 1}"),
                    EVENT_REASON_BAD_DATA,
                    "data.state: must be one of available|busy|wrapup|away|offline");
}

static void currency_must_be_three_upper_case_letters(void **state)
{
    static const char *const bad[] = {"\"eur\"", "\"EURO\"", "\"EU\"", "\"E1R\"", "978"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char data[128];
        snprintf(data, sizeof data, "{\"order_id\": \"o-1\", \"amount\": 5, \"currency\": %s}",
                 bad[i]);
        assert_bad_data("order.placed", data, "data.currency: must be three upper-case letters");
    }
}

static void key_with_bad_characters_is_bad_data(void **state)
{
    assert_bad_data("contact.abandoned", "{\"contact_id\": \"k 1\", \"wait_s\": 1}",
                    "data.contact_id: must be a string of 1-64 characters of [A-Za-z0-9._:@+-]");
    assert_bad_data("contact.abandoned", "{\"contact_id\": \"\", \"wait_s\": 1}",
                    "data.contact_id: must be");
    assert_bad_data("contact.abandoned", "{\"contact_id\": 12, \"wait_s\": 1}",
                    "data.contact_id: must be");
}

static void text_of_256_bytes_is_accepted_and_257_is_bad_data(void **state)
{
    char text[300], data[400];
    memset(text, 'r', 256);
    text[256] = '\0';
    snprintf(data, sizeof data, "{\"amount\": 1, \"reason\": \"%s\"}", text);
    assert_parses(event_json("payment.failed", data));
    assert_int_equal(strlen(ev.data.payment_failed.reason), 256);
    text[256] = 'r';
    text[257] = '\0';
    snprintf(data, sizeof data, "{\"amount\": 1, \"reason\": \"%s\"}", text);
    assert_bad_data("payment.failed", data,
                    "data.reason: must be a string of 1-256 bytes of UTF-8 text without control");
}

static void text_with_control_characters_is_bad_data(void **state)
{
    assert_bad_data("payment.failed", "{\"amount\": 1, \"reason\": \"line\\nbreak\"}",
                    "data.reason: must be");
}

static void text_that_is_not_utf8_is_bad_data(void **state)
{
    assert_bad_data("payment.failed", "{\"amount\": 1, \"reason\": \"bad \xc3( byte\"}",
                    "data.reason: must be");
    assert_bad_data("payment.failed", "{\"amount\": 1, \"reason\": \"overlong \xc0\xaf\"}",
                    "data.reason: must be");
    assert_bad_data("payment.failed", "{\"amount\": 1, \"reason\": \"surrogate \xed\xa0\x80\"}",
                    "data.reason: must be");
    assert_bad_data("payment.failed", "{\"amount\": 1, \"reason\": \"cut \xe2\x82\"}",
                    "data.reason: must be");
}

static void text_with_escaped_unicode_is_accepted(void **state)
{
    assert_parses(
        event_json("payment.failed", "{\"amount\": 1, \"reason\": \"\\u00fcber \\ud83d\\ude00\"}"));
    assert_string_equal(ev.data.payment_failed.reason, "über \xf0\x9f\x98\x80");
}

static void bool_given_as_a_string_is_bad_data(void **state)
{
    assert_bad_data("contact.ended",
                    "{\"contact_id\": \"k-1\", \"duration_s\": 1, \"resolved\": \"yes\"}",
                    "data.resolved: must be true or false");
}

static void more_than_16_queues_is_bad_data(void **state)
{
    char data[512] = "{\"agent_id\": \"a-9\", \"state\": \"busy\", \"queues\": [\"q0\"";
    for (int i = 1; i < 16; i++)
        snprintf(data + strlen(data), sizeof data - strlen(data), ", \"q%d\"", i);
    strcat(data, "]}");
    assert_parses(build("agent.state", "agent:a-9", "2026-11-30T17:02:20Z", data));
    assert_int_equal(ev.data.agent_state.n_queues, 16);
    assert_string_equal(ev.data.agent_state.queues[15], "q15");
    data[strlen(data) - 2] = '\0';
    strcat(data, ", \"q16\"]}");
    assert_rejected(build("agent.state", "agent:a-9", "2026-11-30T17:02:20Z", data),
                    EVENT_REASON_BAD_DATA, "data.queues: must be an array of at most 16 strings");
}

static void bad_queue_name_is_named_by_index(void **state)
{
    assert_rejected(build("agent.state", "agent:a-9", "2026-11-30T17:02:20Z",
                          "{\"agent_id\": \"a-9\", \"state\": \"busy\", \"queues\": [\"ok\", 7]}"),
                    EVENT_REASON_BAD_DATA, "data.queues[1]: must be");
}

static void preferences_must_be_an_object(void **state)
{
    assert_bad_data("customer.profile", "{\"preferences\": \"email\"}",
                    "data.preferences: must be an object of at most 1024 bytes");
}

static void preferences_over_1024_bytes_compact_are_bad_data(void **state)
{
    /* {"k":"<v>"} is 8 bytes plus v: 1016 bytes of value fill 1024 exactly. */
    char value[1100], data[1300];
    memset(value, 'v', 1016);
    value[1016] = '\0';
    snprintf(data, sizeof data, "{\"preferences\": {\"k\" :  \"%s\"}}", value);
    assert_parses(event_json("customer.profile", data));
    assert_int_equal(strlen(ev.data.customer_profile.preferences), 1024);
    value[1016] = 'v';
    value[1017] = '\0';
    snprintf(data, sizeof data, "{\"preferences\": {\"k\" :  \"%s\"}}", value);
    assert_bad_data("customer.profile", data,
                    "data.preferences: must be an object of at most 1024");
}

static void bad_since_is_bad_data(void **state)
{
    assert_bad_data("customer.profile", "{\"since\": \"2019-02-29\"}", "data.since: must be");
    assert_bad_data("customer.profile", "{\"since\": 2019}", "data.since: must be");
}

/* ---- Every reason has a distinct, stable name; helpers */

static void reasons_have_distinct_snake_case_names(void **state)
{
    static const char *const expected[EVENT_REASON_COUNT] = {
        "none",          "too_large",       "malformed_json", "not_an_object", "missing_attribute",
        "bad_attribute", "bad_specversion", "unknown_type",   "bad_time",      "time_in_future",
        "bad_subject",   "missing_data",    "bad_data",       "key_mismatch",
    };
    for (int i = 0; i < EVENT_REASON_COUNT; i++)
        assert_string_equal(event_reason_name((event_reason_t)i), expected[i]);
    assert_string_equal(event_reason_name(EVENT_REASON_COUNT), "unknown");
}

static void type_names_round_trip(void **state)
{
    for (int i = 0; i < EVENT_TYPE_COUNT; i++) {
        event_type_t t = EVENT_TYPE_COUNT;
        assert_true(event_type_from_name(event_type_name((event_type_t)i), &t));
        assert_int_equal(t, i);
    }
    assert_string_equal(event_type_name(EVENT_AGENT_STATE), "agent.state");
    assert_string_equal(event_type_name(EVENT_TYPE_COUNT), "unknown");
}

static void from_name_rejects_unknown_names_and_leaves_out_alone(void **state)
{
    event_type_t t = EVENT_ORDER_PLACED;
    assert_false(event_type_from_name("order", &t));
    assert_false(event_type_from_name(NULL, &t));
    assert_int_equal(t, EVENT_ORDER_PLACED);
    event_channel_t c = EVENT_CHANNEL_FAX;
    assert_false(event_channel_from_name("Phone", &c));
    assert_int_equal(c, EVENT_CHANNEL_FAX);
}

/* Every value of every data enum has a name that maps back to it (a value added to an enum
 * without a name would read "unknown" or crash here). */
static void enum_names_round_trip(void **state)
{
    for (int i = 0; i < EVENT_CHANNEL_COUNT; i++) {
        event_channel_t v = EVENT_CHANNEL_COUNT;
        assert_true(event_channel_from_name(event_channel_name((event_channel_t)i), &v));
        assert_int_equal(v, i);
    }
    for (int i = 0; i < EVENT_ORDER_STATUS_COUNT; i++) {
        event_order_status_t v = EVENT_ORDER_STATUS_COUNT;
        assert_true(
            event_order_status_from_name(event_order_status_name((event_order_status_t)i), &v));
        assert_int_equal(v, i);
    }
    for (int i = 0; i < EVENT_SEVERITY_COUNT; i++) {
        event_severity_t v = EVENT_SEVERITY_COUNT;
        assert_true(event_severity_from_name(event_severity_name((event_severity_t)i), &v));
        assert_int_equal(v, i);
    }
    for (int i = 0; i < EVENT_SUBSCRIPTION_ACTION_COUNT; i++) {
        event_subscription_action_t v = EVENT_SUBSCRIPTION_ACTION_COUNT;
        assert_true(event_subscription_action_from_name(
            event_subscription_action_name((event_subscription_action_t)i), &v));
        assert_int_equal(v, i);
    }
    for (int i = 0; i < EVENT_AGENT_STATE_COUNT; i++) {
        event_agent_state_t v = EVENT_AGENT_STATE_COUNT;
        assert_true(
            event_agent_state_from_name(event_agent_state_name((event_agent_state_t)i), &v));
        assert_int_equal(v, i);
    }
    assert_string_equal(event_order_status_name(EVENT_ORDER_OUT_OF_STOCK), "out_of_stock");
    assert_string_equal(event_subscription_action_name(EVENT_SUBSCRIPTION_CANCEL_REQUESTED),
                        "cancel_requested");
    assert_string_equal(event_channel_name(EVENT_CHANNEL_COUNT), "unknown");
}

/* ---- timefmt_format */

static void format_time_writes_utc_with_milliseconds(void **state)
{
    char out[TIMEFMT_TEXT_SIZE];
    assert_int_equal(timefmt_format(EVENT_TIME_MS + 123, out, sizeof out), 24);
    assert_string_equal(out, "2026-11-30T17:02:20.123Z");
    assert_int_equal(timefmt_format(0, out, sizeof out), 24);
    assert_string_equal(out, "1970-01-01T00:00:00.000Z");
    assert_int_equal(timefmt_format(-1, out, sizeof out), 24);
    assert_string_equal(out, "1969-12-31T23:59:59.999Z");
    assert_int_equal(timefmt_format(INT64_C(1709164800000), out, sizeof out), 24);
    assert_string_equal(out, "2024-02-29T00:00:00.000Z");
}

static void format_time_round_trips_through_parse(void **state)
{
    static const int64_t samples[] = {
        INT64_C(-62135596800000), -86400001, 0, 951782400000, INT64_C(1796058140999),
        INT64_C(253402300799999)};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        char out[TIMEFMT_TEXT_SIZE];
        assert_int_equal(timefmt_format(samples[i], out, sizeof out), 24);
        assert_true(time_of(out) == samples[i]);
    }
}

static void format_time_refuses_a_small_buffer_or_a_five_digit_year(void **state)
{
    char out[TIMEFMT_TEXT_SIZE];
    assert_int_equal(timefmt_format(0, out, sizeof out - 1), -1);
    assert_int_equal(timefmt_format(INT64_C(253402300800000), out, sizeof out), -1);
    assert_string_equal(out, "");
    assert_int_equal(timefmt_format(INT64_MIN, out, sizeof out), -1);
    assert_int_equal(timefmt_format(INT64_MAX, out, sizeof out), -1);
}

#define TEST(name) cmocka_unit_test_setup(name, setup)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(contact_queued_reads_its_fields),
        TEST(contact_started_reads_its_fields),
        TEST(contact_ended_reads_its_fields),
        TEST(contact_ended_without_resolved_leaves_it_unflagged),
        TEST(contact_abandoned_reads_its_fields),
        TEST(contact_transferred_to_a_queue_only_is_valid),
        TEST(contact_transferred_to_an_agent_only_is_valid),
        TEST(sentiment_sampled_reads_its_fields),
        TEST(order_placed_reads_its_fields),
        TEST(order_updated_reads_its_fields),
        TEST(payment_failed_reads_its_fields),
        TEST(complaint_filed_reads_its_fields),
        TEST(survey_answered_with_csat_only_reads_it),
        TEST(survey_answered_with_nps_only_reads_it),
        TEST(web_visited_reads_its_fields),
        TEST(subscription_changed_reads_its_fields),
        TEST(customer_profile_reads_its_fields_and_compacts_preferences),
        TEST(customer_profile_since_may_be_a_date_time),
        TEST(customer_profile_without_data_is_an_empty_upsert),
        TEST(agent_state_reads_its_fields),
        TEST(agent_state_with_empty_queues_means_none),
        TEST(agent_state_without_queues_keeps_them),
        TEST(extensions_and_unknown_data_fields_are_ignored),
        TEST(null_optional_field_counts_as_absent),
        TEST(partner_subject_is_flagged),
        TEST(reparsing_clears_the_previous_event),
        TEST(success_after_failure_clears_the_error),
        TEST(message_of_exactly_the_limit_is_accepted),
        TEST(message_one_byte_over_the_limit_is_too_large),
        TEST(too_large_uses_the_limit_given),
        TEST(too_large_is_checked_before_parsing),
        TEST(truncated_json_is_malformed),
        TEST(empty_message_is_malformed),
        TEST(bytes_after_the_object_are_malformed),
        TEST(whitespace_around_the_object_is_fine),
        TEST(message_ending_in_a_comma_is_malformed),
        TEST(nul_byte_is_malformed),
        TEST(escaped_nul_is_malformed),
        TEST(escaped_backslash_before_u0000_is_plain_text),
        TEST(json_that_is_not_an_object_is_rejected),
        TEST(missing_attribute_names_it),
        TEST(null_attribute_counts_as_missing),
        TEST(bad_ids_are_bad_attributes),
        TEST(id_of_128_bytes_is_accepted_and_129_is_not),
        TEST(empty_source_is_a_bad_attribute),
        TEST(type_that_is_not_a_string_is_a_bad_attribute),
        TEST(duplicate_attribute_is_rejected),
        TEST(escaped_names_and_many_members_are_looked_up_alike),
        TEST(specversion_other_than_1_0_is_rejected),
        TEST(unknown_type_is_named),
        TEST(unknown_type_detail_is_bounded_and_printable),
        TEST(unparseable_time_is_bad_time),
        TEST(out_of_range_date_parts_are_bad_time),
        TEST(time_that_is_not_a_string_is_bad_time),
        TEST(leap_day_is_valid_in_2024_only),
        TEST(century_leap_rules_apply),
        TEST(offsets_convert_to_utc),
        TEST(fractional_seconds_are_truncated_to_ms),
        TEST(leap_second_folds_into_the_next_second),
        TEST(times_before_1970_are_negative),
        TEST(time_up_to_max_future_is_accepted),
        TEST(time_beyond_max_future_is_rejected),
        TEST(negative_max_future_disables_the_check),
        TEST(far_past_now_does_not_overflow_the_future_check),
        TEST(subject_with_bad_characters_is_rejected),
        TEST(subject_of_129_bytes_is_rejected),
        TEST(agent_subject_on_a_customer_event_is_rejected),
        TEST(agent_state_needs_an_agent_subject),
        TEST(agent_subject_must_match_agent_id),
        TEST(prefix_without_an_id_is_a_bad_subject),
        TEST(type_with_required_fields_needs_data),
        TEST(data_that_is_not_an_object_is_bad_data),
        TEST(missing_required_field_is_named),
        TEST(duplicate_data_field_is_rejected),
        TEST(score_of_minus_one_and_one_are_accepted),
        TEST(score_just_outside_the_range_is_bad_data),
        TEST(number_given_as_a_string_is_bad_data),
        TEST(infinite_number_is_bad_data),
        TEST(negative_amounts_and_durations_are_bad_data),
        TEST(csat_of_zero_is_bad_data),
        TEST(csat_and_nps_bounds),
        TEST(non_integer_csat_is_bad_data),
        TEST(survey_without_csat_or_nps_is_bad_data),
        TEST(transfer_without_a_target_is_bad_data),
        TEST(unknown_enum_value_lists_the_choices),
        TEST(currency_must_be_three_upper_case_letters),
        TEST(key_with_bad_characters_is_bad_data),
        TEST(text_of_256_bytes_is_accepted_and_257_is_bad_data),
        TEST(text_with_control_characters_is_bad_data),
        TEST(text_that_is_not_utf8_is_bad_data),
        TEST(text_with_escaped_unicode_is_accepted),
        TEST(bool_given_as_a_string_is_bad_data),
        TEST(more_than_16_queues_is_bad_data),
        TEST(bad_queue_name_is_named_by_index),
        TEST(preferences_must_be_an_object),
        TEST(preferences_over_1024_bytes_compact_are_bad_data),
        TEST(bad_since_is_bad_data),
        TEST(reasons_have_distinct_snake_case_names),
        TEST(type_names_round_trip),
        TEST(from_name_rejects_unknown_names_and_leaves_out_alone),
        TEST(enum_names_round_trip),
        TEST(format_time_writes_utc_with_milliseconds),
        TEST(format_time_round_trips_through_parse),
        TEST(format_time_refuses_a_small_buffer_or_a_five_digit_year),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
