/* fuzz_event.c - libFuzzer target for the engine's event codec (services/engine/event.c).
 *
 * Feeds the input to event_parse as one Kafka message value, then checks what must hold for
 * any input, beyond "no crash, no sanitizer report": a rejection has a real reason and a one
 * line, printable detail; an accepted event has every string inside its arena, NUL-terminated
 * and within its bound, enums in range and numbers in range. The input also goes to
 * timefmt_parse, and every time accepted must survive timefmt_format and back. And to the
 * JSON scanner alone (jscan.c), which must never accept what cJSON refuses, and whose strings
 * must decode within their bytes.
 *
 * Build with clang:  clang -fsanitize=fuzzer,address,undefined ... fuzz_event.c event.c -lcjson
 * Replay a corpus without libFuzzer (e.g. in CI with gcc): link with tests/fuzz/replay.c. */
#include "event.h"
#include "jscan.h"

#include <cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW_MS INT64_C(1796083200000) /* 2026-12-01T00:00:00Z: fixed, so runs repeat */

/* A broken invariant: abort, which libFuzzer and the replayer report with the input. */
static void require(bool ok)
{
    if (!ok)
        abort();
}

/* s is NULL (absent) or a NUL-terminated string of at most max bytes inside the arena. */
static void require_string(const event_t *ev, const char *s, size_t max)
{
    if (!s)
        return;
    const char *end = ev->arena + ev->arena_used;
    require(s >= ev->arena && s < end);
    size_t len = strnlen(s, (size_t)(end - s));
    require(len < (size_t)(end - s) && len >= 1 && len <= max);
}

static void require_number(double v, double min, double max)
{
    require(isfinite(v) && v >= min && v <= max);
}

static void check_contact(const event_t *ev)
{
    switch (ev->type) {
    case EVENT_CONTACT_QUEUED:
        require_string(ev, ev->data.contact_queued.contact_id, EVENT_KEY_MAX);
        require(ev->data.contact_queued.contact_id && ev->data.contact_queued.queue);
        require_string(ev, ev->data.contact_queued.queue, EVENT_KEY_MAX);
        require_string(ev, ev->data.contact_queued.reason, EVENT_TEXT_MAX);
        require((unsigned)ev->data.contact_queued.channel < EVENT_CHANNEL_COUNT);
        break;
    case EVENT_CONTACT_STARTED:
        require(ev->data.contact_started.contact_id && ev->data.contact_started.agent_id);
        require_string(ev, ev->data.contact_started.contact_id, EVENT_KEY_MAX);
        require_string(ev, ev->data.contact_started.agent_id, EVENT_KEY_MAX);
        require_string(ev, ev->data.contact_started.queue, EVENT_KEY_MAX);
        require_string(ev, ev->data.contact_started.reason, EVENT_TEXT_MAX);
        require((unsigned)ev->data.contact_started.channel < EVENT_CHANNEL_COUNT);
        break;
    case EVENT_CONTACT_ENDED:
        require(ev->data.contact_ended.contact_id != NULL);
        require_string(ev, ev->data.contact_ended.contact_id, EVENT_KEY_MAX);
        require_string(ev, ev->data.contact_ended.wrapup, EVENT_TEXT_MAX);
        require_number(ev->data.contact_ended.duration_s, 0, EVENT_DURATION_MAX_S);
        break;
    case EVENT_CONTACT_ABANDONED:
        require(ev->data.contact_abandoned.contact_id != NULL);
        require_string(ev, ev->data.contact_abandoned.contact_id, EVENT_KEY_MAX);
        require_number(ev->data.contact_abandoned.wait_s, 0, EVENT_DURATION_MAX_S);
        break;
    case EVENT_CONTACT_TRANSFERRED:
        require(ev->data.contact_transferred.contact_id != NULL);
        require(ev->data.contact_transferred.to_agent_id || ev->data.contact_transferred.to_queue);
        require_string(ev, ev->data.contact_transferred.contact_id, EVENT_KEY_MAX);
        require_string(ev, ev->data.contact_transferred.to_agent_id, EVENT_KEY_MAX);
        require_string(ev, ev->data.contact_transferred.to_queue, EVENT_KEY_MAX);
        break;
    default:
        break;
    }
}

static void check_commerce(const event_t *ev)
{
    switch (ev->type) {
    case EVENT_SENTIMENT_SAMPLED:
        require(ev->data.sentiment_sampled.contact_id != NULL);
        require_string(ev, ev->data.sentiment_sampled.contact_id, EVENT_KEY_MAX);
        require_number(ev->data.sentiment_sampled.score, -1, 1);
        break;
    case EVENT_ORDER_PLACED:
        require(ev->data.order_placed.order_id != NULL);
        require_string(ev, ev->data.order_placed.order_id, EVENT_KEY_MAX);
        require_number(ev->data.order_placed.amount, 0, EVENT_AMOUNT_MAX);
        require(strlen(ev->data.order_placed.currency) == 3);
        if (ev->data.order_placed.has_margin)
            require_number(ev->data.order_placed.margin, -EVENT_AMOUNT_MAX, EVENT_AMOUNT_MAX);
        break;
    case EVENT_ORDER_UPDATED:
        require(ev->data.order_updated.order_id != NULL);
        require_string(ev, ev->data.order_updated.order_id, EVENT_KEY_MAX);
        require((unsigned)ev->data.order_updated.status < EVENT_ORDER_STATUS_COUNT);
        break;
    case EVENT_PAYMENT_FAILED:
        require_number(ev->data.payment_failed.amount, 0, EVENT_AMOUNT_MAX);
        require_string(ev, ev->data.payment_failed.reason, EVENT_TEXT_MAX);
        break;
    case EVENT_SUBSCRIPTION_CHANGED:
        require((unsigned)ev->data.subscription_changed.action < EVENT_SUBSCRIPTION_ACTION_COUNT);
        if (ev->data.subscription_changed.has_mrr_delta)
            require_number(ev->data.subscription_changed.mrr_delta, -EVENT_AMOUNT_MAX,
                           EVENT_AMOUNT_MAX);
        break;
    default:
        break;
    }
}

static void check_customer(const event_t *ev)
{
    const event_survey_answered_t *survey = &ev->data.survey_answered;
    const event_agent_state_data_t *agent = &ev->data.agent_state;
    switch (ev->type) {
    case EVENT_COMPLAINT_FILED:
        require(ev->data.complaint_filed.category != NULL);
        require_string(ev, ev->data.complaint_filed.category, EVENT_SHORT_TEXT_MAX);
        require((unsigned)ev->data.complaint_filed.severity < EVENT_SEVERITY_COUNT);
        break;
    case EVENT_SURVEY_ANSWERED:
        require(survey->has_csat || survey->has_nps);
        require(!survey->has_csat || (survey->csat >= 1 && survey->csat <= 5));
        require(!survey->has_nps || (survey->nps >= 0 && survey->nps <= 10));
        break;
    case EVENT_WEB_VISITED:
        require(ev->data.web_visited.page != NULL);
        require_string(ev, ev->data.web_visited.page, EVENT_PAGE_MAX);
        require_string(ev, ev->data.web_visited.intent, EVENT_SHORT_TEXT_MAX);
        break;
    case EVENT_CUSTOMER_PROFILE:
        require_string(ev, ev->data.customer_profile.name, EVENT_NAME_MAX);
        require_string(ev, ev->data.customer_profile.segment, EVENT_SHORT_TEXT_MAX);
        require_string(ev, ev->data.customer_profile.language, EVENT_LANGUAGE_MAX);
        require_string(ev, ev->data.customer_profile.preferences, EVENT_PREFERENCES_MAX);
        break;
    case EVENT_AGENT_STATE:
        require(agent->agent_id && ev->is_agent);
        require_string(ev, agent->agent_id, EVENT_KEY_MAX);
        require(strcmp(ev->subject + strlen("agent:"), agent->agent_id) == 0);
        require((unsigned)agent->state < EVENT_AGENT_STATE_COUNT);
        require(agent->n_queues >= 0 && agent->n_queues <= EVENT_QUEUES_MAX);
        require(agent->has_queues || agent->n_queues == 0);
        for (int i = 0; i < agent->n_queues; i++)
            require_string(ev, agent->queues[i], EVENT_KEY_MAX);
        break;
    default:
        break;
    }
}

static void check_event(const event_t *ev, const event_error_t *err)
{
    require(err->reason == EVENT_REASON_NONE && err->detail[0] == '\0');
    require((unsigned)ev->type < EVENT_TYPE_COUNT);
    require(ev->arena_used <= sizeof ev->arena);
    require(ev->id && ev->source && ev->subject);
    require_string(ev, ev->id, EVENT_ID_MAX);
    require_string(ev, ev->source, EVENT_SOURCE_MAX);
    require_string(ev, ev->subject, EVENT_SUBJECT_MAX);
    require(ev->is_agent == (ev->type == EVENT_AGENT_STATE));
    require(ev->time_ms <= NOW_MS + 300000);
    check_contact(ev);
    check_commerce(ev);
    check_customer(ev);
}

static void check_error(const event_error_t *err)
{
    require(err->reason > EVENT_REASON_NONE && err->reason < EVENT_REASON_COUNT);
    size_t len = strnlen(err->detail, sizeof err->detail);
    require(len > 0 && len < sizeof err->detail);
    for (size_t i = 0; i < len; i++)
        require(err->detail[i] >= 0x20 && err->detail[i] < 0x7f);
}

/* Whatever timefmt_parse accepts formats and parses back to the same ms. */
static void check_time_round_trip(const uint8_t *data, size_t size)
{
    char text[64], formatted[TIMEFMT_TEXT_SIZE];
    int64_t ms, again;
    if (size >= sizeof text)
        return;
    memcpy(text, data, size);
    text[size] = '\0';
    if (timefmt_parse(text, &ms) < 0 || timefmt_format(ms, formatted, sizeof formatted) < 0)
        return;
    require(timefmt_parse(formatted, &again) == 0 && again == ms);
}

static void check_scanner(const uint8_t *data, size_t size)
{
    static jscan_token_t tokens[JSCAN_TOKENS_MAX];
    static char text[70000];
    jscan_doc_t doc;
    size_t at;
    const char *what;
    if (size == 0 || size >= sizeof text || memchr(data, '\0', size) ||
        jscan_parse((const char *)data, size, tokens, JSCAN_TOKENS_MAX, &doc, &at, &what) < 0)
        return;
    memcpy(text, data, size);
    text[size] = '\0';
    const char *end = NULL;
    cJSON *oracle = cJSON_ParseWithOpts(text, &end, true);
    require(oracle != NULL);
    cJSON_Delete(oracle);
    for (uint32_t t = 0; t < doc.count; t++) {
        char out[64];
        if (doc.tokens[t].type == JSCAN_STRING)
            require(jscan_string(&doc, t, out, sizeof out) <= (long)doc.tokens[t].len);
        else if (doc.tokens[t].type == JSCAN_NUMBER)
            (void)jscan_number(&doc, t);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static event_t ev; /* 2 KiB: kept off the stack */
    event_error_t err;
    const event_limits_t limits = {EVENT_MAX_BYTES_DEFAULT, NOW_MS, 300000};
    if (event_parse((const char *)data, size, &limits, &ev, &err) == 0)
        check_event(&ev, &err);
    else
        check_error(&err);
    check_time_round_trip(data, size);
    check_scanner(data, size);
    return 0;
}
