/* feature.c - the named values rules and the churn model read. See feature.h for the
 * list and what each one means.
 *
 * feature_fill runs once per applied event: one pass over the customer's rings
 * (customer_counts) and a few field reads. Names are only looked up when rules and the model
 * are compiled. */
#include "feature.h"

#include <math.h>
#include <string.h>

static const struct {
    const char *name;
    expr_type_t type;
} features[FEATURE_COUNT] = {
    [FEATURE_CONTACTS_24H] = {"contacts_24h", EXPR_NUMBER},
    [FEATURE_CONTACTS_7D] = {"contacts_7d", EXPR_NUMBER},
    [FEATURE_CONTACTS_30D] = {"contacts_30d", EXPR_NUMBER},
    [FEATURE_SUPPORT_CONTACTS_30D] = {"support_contacts_30d", EXPR_NUMBER},
    [FEATURE_ABANDONED_7D] = {"abandoned_7d", EXPR_NUMBER},
    [FEATURE_COMPLAINTS_90D] = {"complaints_90d", EXPR_NUMBER},
    [FEATURE_FAILED_PAYMENTS_30D] = {"failed_payments_30d", EXPR_NUMBER},
    [FEATURE_CANCEL_SIGNALS_30D] = {"cancel_signals_30d", EXPR_NUMBER},
    [FEATURE_REVENUE_12M] = {"revenue_12m", EXPR_NUMBER},
    [FEATURE_MARGIN_12M] = {"margin_12m", EXPR_NUMBER},
    [FEATURE_ORDERS_12M] = {"orders_12m", EXPR_NUMBER},
    [FEATURE_REVENUE_90D] = {"revenue_90d", EXPR_NUMBER},
    [FEATURE_REVENUE_PREV_90D] = {"revenue_prev_90d", EXPR_NUMBER},
    [FEATURE_DAYS_SINCE_LAST_ORDER] = {"days_since_last_order", EXPR_NUMBER},
    [FEATURE_OPEN_ORDERS] = {"open_orders", EXPR_NUMBER},
    [FEATURE_DELAYED_ORDERS] = {"delayed_orders", EXPR_NUMBER},
    [FEATURE_COST_TO_SERVE_12M] = {"cost_to_serve_12m", EXPR_NUMBER},
    [FEATURE_MRR] = {"mrr", EXPR_NUMBER},
    [FEATURE_VALUE] = {"value", EXPR_NUMBER},
    [FEATURE_CHURN_RISK] = {"churn_risk", EXPR_NUMBER},
    [FEATURE_SENTIMENT_LAST] = {"sentiment_last", EXPR_NUMBER},
    [FEATURE_SENTIMENT_CONTACT_MEAN] = {"sentiment_contact_mean", EXPR_NUMBER},
    [FEATURE_SENTIMENT_30D_MEAN] = {"sentiment_30d_mean", EXPR_NUMBER},
    [FEATURE_WAIT_S] = {"wait_s", EXPR_NUMBER},
    [FEATURE_TENURE_DAYS] = {"tenure_days", EXPR_NUMBER},
    [FEATURE_CSAT_LAST] = {"csat_last", EXPR_NUMBER},
    [FEATURE_NPS_LAST] = {"nps_last", EXPR_NUMBER},
    [FEATURE_TIER] = {"tier", EXPR_STRING},
    [FEATURE_TREND] = {"trend", EXPR_STRING},
    [FEATURE_CHANNEL] = {"channel", EXPR_STRING},
    [FEATURE_QUEUE] = {"queue", EXPR_STRING},
    [FEATURE_AGENT_ID] = {"agent_id", EXPR_STRING},
    [FEATURE_SEGMENT] = {"segment", EXPR_STRING},
    [FEATURE_LANGUAGE] = {"language", EXPR_STRING},
    [FEATURE_EVENT_TYPE] = {"event_type", EXPR_STRING},
    [FEATURE_CONTACT_REASON] = {"contact_reason", EXPR_STRING},
    [FEATURE_ORDER_STATUS] = {"order_status", EXPR_STRING},
    [FEATURE_LAST_ORDER_ID] = {"last_order_id", EXPR_STRING},
    [FEATURE_LAST_ORDER_STATUS] = {"last_order_status", EXPR_STRING},
    [FEATURE_INTENT] = {"intent", EXPR_STRING},
    [FEATURE_SUBSCRIPTION_ACTION] = {"subscription_action", EXPR_STRING},
    [FEATURE_COMPLAINT_SEVERITY] = {"complaint_severity", EXPR_STRING},
    [FEATURE_COMPLAINT_CATEGORY] = {"complaint_category", EXPR_STRING},
    [FEATURE_IN_CONTACT] = {"in_contact", EXPR_BOOL},
    [FEATURE_QUEUED] = {"queued", EXPR_BOOL},
    [FEATURE_IS_PARTNER] = {"is_partner", EXPR_BOOL},
    [FEATURE_NEW_CONTACT] = {"new_contact", EXPR_BOOL},
    [FEATURE_SUPPORT_CONTACT] = {"support_contact", EXPR_BOOL},
    [FEATURE_CANCEL_SIGNAL] = {"cancel_signal", EXPR_BOOL},
};

int feature_find(const char *name, size_t len, expr_feature_t *out)
{
    for (unsigned i = 0; i < FEATURE_COUNT; i++) {
        if (strlen(features[i].name) == len && memcmp(features[i].name, name, len) == 0) {
            *out = (expr_feature_t){.index = i, .type = features[i].type};
            return 0;
        }
    }
    return -1;
}

static int resolve(const expr_resolver_t *self, const char *name, size_t len, expr_feature_t *out)
{
    (void)self;
    return feature_find(name, len, out);
}

const expr_resolver_t feature_resolver = {resolve};

const char *feature_name(unsigned index)
{
    return index < FEATURE_COUNT ? features[index].name : NULL;
}

expr_type_t feature_type(unsigned index)
{
    return index < FEATURE_COUNT ? features[index].type : EXPR_MISSING;
}

/* ---- Filling */

/* A string value; NULL or "" is missing. */
static expr_value_t text(const char *s)
{
    return s && s[0] ? expr_string(s, strlen(s)) : expr_missing();
}

static expr_value_t money(int64_t cents)
{
    return expr_number((double)cents / 100.0);
}

/* Whole days from since to now, never negative; missing when since is unknown. */
static expr_value_t days_since(int64_t since_ms, int64_t now_ms)
{
    if (since_ms == STATE_TIME_NONE) return expr_missing();
    return expr_number(now_ms > since_ms ? floor((double)(now_ms - since_ms) / STATE_DAY_MS) : 0);
}

static void fill_counts(const customer_t *c, int64_t now_ms, expr_value_t *v)
{
    state_counts_t n;
    customer_counts(c, now_ms, &n);
    v[FEATURE_CONTACTS_24H] = expr_number(n.contacts_24h);
    v[FEATURE_CONTACTS_7D] = expr_number(n.contacts_7d);
    v[FEATURE_CONTACTS_30D] = expr_number(n.contacts_30d);
    v[FEATURE_SUPPORT_CONTACTS_30D] = expr_number(n.support_contacts_30d);
    v[FEATURE_ABANDONED_7D] = expr_number(n.abandoned_7d);
    v[FEATURE_COMPLAINTS_90D] = expr_number(n.complaints_90d);
    v[FEATURE_FAILED_PAYMENTS_30D] = expr_number(n.failed_payments_30d);
    v[FEATURE_CANCEL_SIGNALS_30D] = expr_number(n.cancel_signals_30d);
    v[FEATURE_REVENUE_12M] = money(n.revenue_12m);
    v[FEATURE_MARGIN_12M] = money(n.margin_12m);
    v[FEATURE_ORDERS_12M] = expr_number(n.orders_12m);
    v[FEATURE_REVENUE_90D] = money(n.revenue_90d);
    v[FEATURE_REVENUE_PREV_90D] = money(n.revenue_prev_90d);
    v[FEATURE_OPEN_ORDERS] = expr_number(n.open_orders);
    v[FEATURE_DELAYED_ORDERS] = expr_number(n.delayed_orders);
    v[FEATURE_COST_TO_SERVE_12M] = money(n.cost_to_serve_12m);
    v[FEATURE_SENTIMENT_30D_MEAN] =
        n.sentiment_n_30d ? expr_number((double)n.sentiment_sum_30d / n.sentiment_n_30d / 1000.0)
                          : expr_missing();
}

#define BIT(f) (UINT64_C(1) << (f))

/* fill_customer's features that cost a walk (over the contact's samples, the orders): only
 * filled when asked for. */
static const uint64_t contact_sentiment_bit = BIT(FEATURE_SENTIMENT_CONTACT_MEAN);
static const uint64_t last_order_bits = BIT(FEATURE_LAST_ORDER_ID) | BIT(FEATURE_LAST_ORDER_STATUS);

static void fill_customer(const customer_t *c, int64_t now_ms, uint64_t wanted, expr_value_t *v)
{
    const state_scores_t *s = &c->scores;
    static const char *const tiers[] = {"A", "B", "C"};
    double mean;
    v[FEATURE_DAYS_SINCE_LAST_ORDER] = days_since(c->last_order_ms, now_ms);
    v[FEATURE_MRR] = money(c->mrr_cents);
    v[FEATURE_VALUE] = s->computed ? expr_number(s->value) : expr_missing();
    v[FEATURE_CHURN_RISK] = s->computed ? expr_number(s->churn_risk) : expr_missing();
    v[FEATURE_TIER] = s->computed && s->tier >= 'A' && s->tier <= 'C' ? text(tiers[s->tier - 'A'])
                                                                      : expr_missing();
    v[FEATURE_TREND] = s->computed ? text(state_trend_name(s->trend)) : expr_missing();
    v[FEATURE_SENTIMENT_LAST] =
        c->has_sentiment ? expr_number(c->sentiment_last / 1000.0) : expr_missing();
    if (wanted & contact_sentiment_bit)
        v[FEATURE_SENTIMENT_CONTACT_MEAN] =
            customer_contact_sentiment(c, &mean) ? expr_number(mean) : expr_missing();
    v[FEATURE_TENURE_DAYS] = days_since(c->profile.since_ms, now_ms);
    v[FEATURE_CSAT_LAST] = c->csat_last ? expr_number(c->csat_last) : expr_missing();
    v[FEATURE_NPS_LAST] = c->nps_last >= 0 ? expr_number(c->nps_last) : expr_missing();
    v[FEATURE_SEGMENT] = text(c->profile.segment);
    v[FEATURE_LANGUAGE] = text(c->profile.language);
    if (wanted & last_order_bits) {
        const state_order_t *last = customer_last_order(c);
        v[FEATURE_LAST_ORDER_ID] = last ? text(last->id) : expr_missing();
        v[FEATURE_LAST_ORDER_STATUS] =
            last ? text(state_order_status_name(last->status)) : expr_missing();
    }
    v[FEATURE_IS_PARTNER] = expr_bool(c->is_partner);
}

static void fill_contact(const customer_t *c, int64_t now_ms, expr_value_t *v)
{
    const state_current_contact_t *k = &c->contact;
    bool in_contact = k->state != STATE_CONTACT_NONE;
    bool queued = k->state == STATE_CONTACT_QUEUED;
    v[FEATURE_IN_CONTACT] = expr_bool(in_contact);
    v[FEATURE_QUEUED] = expr_bool(queued);
    v[FEATURE_CHANNEL] = in_contact && k->channel != STATE_CHANNEL_UNKNOWN
                             ? text(event_channel_name((event_channel_t)k->channel))
                             : expr_missing();
    v[FEATURE_QUEUE] = in_contact ? text(k->queue) : expr_missing();
    v[FEATURE_AGENT_ID] = in_contact ? text(k->agent_id) : expr_missing();
    v[FEATURE_WAIT_S] =
        queued && k->queued_ms != STATE_TIME_NONE
            ? expr_number(now_ms > k->queued_ms ? (now_ms - k->queued_ms) / 1000.0 : 0)
            : expr_missing();
}

/* The features of the triggering event; all missing (bools false) without one. */
static void fill_trigger(const event_t *ev, const apply_result_t *res, expr_value_t *v)
{
    v[FEATURE_NEW_CONTACT] = expr_bool(res && res->new_contact);
    v[FEATURE_SUPPORT_CONTACT] = expr_bool(res && res->support_contact);
    v[FEATURE_CANCEL_SIGNAL] = expr_bool(res && res->cancel_signal);
    v[FEATURE_ORDER_STATUS] = res && res->order_status != STATE_ORDER_STATUS_NONE
                                  ? text(state_order_status_name(res->order_status))
                                  : expr_missing();
    if (!ev) return;
    v[FEATURE_EVENT_TYPE] = text(event_type_name(ev->type));
    switch (ev->type) {
    case EVENT_CONTACT_QUEUED:
        v[FEATURE_CONTACT_REASON] = text(ev->data.contact_queued.reason);
        break;
    case EVENT_CONTACT_STARTED:
        v[FEATURE_CONTACT_REASON] = text(ev->data.contact_started.reason);
        break;
    case EVENT_WEB_VISITED:
        v[FEATURE_INTENT] = text(ev->data.web_visited.intent);
        break;
    case EVENT_SUBSCRIPTION_CHANGED:
        v[FEATURE_SUBSCRIPTION_ACTION] =
            text(event_subscription_action_name(ev->data.subscription_changed.action));
        break;
    case EVENT_COMPLAINT_FILED:
        v[FEATURE_COMPLAINT_SEVERITY] =
            text(event_severity_name(ev->data.complaint_filed.severity));
        v[FEATURE_COMPLAINT_CATEGORY] = text(ev->data.complaint_filed.category);
        break;
    default:
        break;
    }
}

uint64_t feature_window_mask(void)
{
    static const unsigned windows[] = {
        FEATURE_CONTACTS_24H,        FEATURE_CONTACTS_7D,         FEATURE_CONTACTS_30D,
        FEATURE_SUPPORT_CONTACTS_30D, FEATURE_ABANDONED_7D,       FEATURE_COMPLAINTS_90D,
        FEATURE_FAILED_PAYMENTS_30D, FEATURE_CANCEL_SIGNALS_30D, FEATURE_REVENUE_12M,
        FEATURE_MARGIN_12M,          FEATURE_ORDERS_12M,          FEATURE_REVENUE_90D,
        FEATURE_REVENUE_PREV_90D,    FEATURE_OPEN_ORDERS,         FEATURE_DELAYED_ORDERS,
        FEATURE_COST_TO_SERVE_12M,   FEATURE_SENTIMENT_30D_MEAN};
    static uint64_t mask; /* computed once: the timer asks per waiting customer per second */
    if (!mask)
        for (size_t i = 0; i < sizeof windows / sizeof *windows; i++)
            mask |= UINT64_C(1) << windows[i];
    return mask;
}

void feature_fill_some(const customer_t *c, uint64_t wanted, int64_t now_ms,
                       expr_value_t *values)
{
    static const uint64_t contact_bits =
        BIT(FEATURE_IN_CONTACT) | BIT(FEATURE_QUEUED) | BIT(FEATURE_CHANNEL) |
        BIT(FEATURE_QUEUE) | BIT(FEATURE_AGENT_ID) | BIT(FEATURE_WAIT_S);
    static const uint64_t trigger_bits =
        BIT(FEATURE_NEW_CONTACT) | BIT(FEATURE_SUPPORT_CONTACT) | BIT(FEATURE_CANCEL_SIGNAL) |
        BIT(FEATURE_ORDER_STATUS) | BIT(FEATURE_EVENT_TYPE) | BIT(FEATURE_CONTACT_REASON) |
        BIT(FEATURE_INTENT) | BIT(FEATURE_SUBSCRIPTION_ACTION) |
        BIT(FEATURE_COMPLAINT_SEVERITY) | BIT(FEATURE_COMPLAINT_CATEGORY);
    uint64_t windows = feature_window_mask();
    memset(values, 0, FEATURE_COUNT * sizeof *values); /* EXPR_MISSING is 0 */
    if (wanted & windows)
        fill_counts(c, now_ms, values);
    if (wanted & ~(windows | contact_bits | trigger_bits))
        fill_customer(c, now_ms, wanted, values);
    if (wanted & contact_bits)
        fill_contact(c, now_ms, values);
    fill_trigger(NULL, NULL, values);
}

void feature_fill(const customer_t *c, const event_t *trigger, const apply_result_t *res,
                  int64_t now_ms, expr_value_t *values)
{
    memset(values, 0, FEATURE_COUNT * sizeof *values); /* EXPR_MISSING is 0 */
    fill_counts(c, now_ms, values);
    fill_customer(c, now_ms, UINT64_MAX, values);
    fill_contact(c, now_ms, values);
    fill_trigger(trigger, res, values);
}
