/* feature.h - the named values rule conditions, alert templates and the churn model read:
 * one flat array of expr_value_t per evaluation, indexed by feature_t, filled from a customer
 * (and the event that triggered the evaluation) without allocating. (The file is not called
 * features.h: under -Iservices/engine that would shadow glibc's <features.h>.)
 *
 * Names are stable: rules (conditions and templates) and config/model.json use them, and the
 * resolver below checks them at load time. A value is EXPR_MISSING when it does not exist
 * for this customer or this event (no current contact: channel is missing), and a condition
 * on a missing value is false (expr.h). Windows count back from now_ms (see state.h,
 * "Windows"); the engine passes the customer's clock, so replays evaluate the same.
 *
 * Numbers
 *   contacts_24h, contacts_7d, contacts_30d  contacts (each contact_id once) in the window
 *   support_contacts_30d   contacts in 30 days with a support reason (config support_reasons)
 *   abandoned_7d           contacts in 7 days the customer abandoned in queue
 *   complaints_90d         complaint.filed in 90 days
 *   failed_payments_30d    payment.failed in 30 days
 *   cancel_signals_30d     cancel signals in 30 days (web intent "cancel", subscription
 *                          cancel_requested or cancelled)
 *   revenue_12m, margin_12m     order amounts and margins over 12 months, currency units
 *   orders_12m             orders placed in 12 months (cancelled and returned ones taken back)
 *   revenue_90d, revenue_prev_90d   revenue in the last 90 days, and in the 90 days before
 *   days_since_last_order  whole days since the newest order.placed; missing if none
 *   open_orders            tracked orders not yet delivered, cancelled or returned
 *   delayed_orders         open orders whose status is delayed or out_of_stock
 *   cost_to_serve_12m      contacts in 12 months, each at its channel's cost (config)
 *   mrr                    subscription monthly recurring revenue
 *   value, churn_risk      scores (scores.h); missing until the customer is scored
 *   sentiment_last         the last sentiment sample, -1..1; missing if none
 *   sentiment_contact_mean mean sentiment of the current contact; missing without samples
 *   sentiment_30d_mean     mean sentiment of the samples of contacts in 30 days
 *   wait_s                 seconds since the current contact was queued, while it is
 *                          queued; missing otherwise
 *   tenure_days            whole days since profile "since"; missing if unknown
 *   csat_last, nps_last    the last survey answers (1..5, 0..10); missing if none
 * Strings
 *   tier                   "A" | "B" | "C"; missing until scored
 *   trend                  "rising" | "stable" | "falling"; missing until scored
 *   channel, queue, agent_id   of the current contact; missing without one (or unknown)
 *   segment, language      from the profile; missing if unknown
 *   event_type             the triggering event's type ("contact.queued"); missing without
 *   contact_reason         the triggering contact.queued/started's reason
 *   order_status           the triggering order event's status: "placed" for order.placed,
 *                          else the new status ("delayed", "out_of_stock", ...)
 *   last_order_id, last_order_status   the most recently updated tracked order (state.h,
 *                          "Orders"), open or not; missing without one
 *   intent                 the triggering web.visited's intent
 *   subscription_action    the triggering subscription.changed's action
 *   complaint_severity, complaint_category   the triggering complaint.filed's
 * Bools
 *   in_contact             the customer has a current contact (queued or active)
 *   queued                 the current contact is queued
 *   is_partner             a partner account
 *   new_contact            the triggering event is the first one of its contact
 *   support_contact        the triggering event's contact is a support contact
 *   cancel_signal          the triggering event is a cancel signal
 */
#ifndef INTEGRAL_FEATURE_H
#define INTEGRAL_FEATURE_H

#include "event.h"
#include "expr.h"
#include "state.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    /* numbers */
    FEATURE_CONTACTS_24H,
    FEATURE_CONTACTS_7D,
    FEATURE_CONTACTS_30D,
    FEATURE_SUPPORT_CONTACTS_30D,
    FEATURE_ABANDONED_7D,
    FEATURE_COMPLAINTS_90D,
    FEATURE_FAILED_PAYMENTS_30D,
    FEATURE_CANCEL_SIGNALS_30D,
    FEATURE_REVENUE_12M,
    FEATURE_MARGIN_12M,
    FEATURE_ORDERS_12M,
    FEATURE_REVENUE_90D,
    FEATURE_REVENUE_PREV_90D,
    FEATURE_DAYS_SINCE_LAST_ORDER,
    FEATURE_OPEN_ORDERS,
    FEATURE_DELAYED_ORDERS,
    FEATURE_COST_TO_SERVE_12M,
    FEATURE_MRR,
    FEATURE_VALUE,
    FEATURE_CHURN_RISK,
    FEATURE_SENTIMENT_LAST,
    FEATURE_SENTIMENT_CONTACT_MEAN,
    FEATURE_SENTIMENT_30D_MEAN,
    FEATURE_WAIT_S,
    FEATURE_TENURE_DAYS,
    FEATURE_CSAT_LAST,
    FEATURE_NPS_LAST,
    /* strings */
    FEATURE_TIER,
    FEATURE_TREND,
    FEATURE_CHANNEL,
    FEATURE_QUEUE,
    FEATURE_AGENT_ID,
    FEATURE_SEGMENT,
    FEATURE_LANGUAGE,
    FEATURE_EVENT_TYPE,
    FEATURE_CONTACT_REASON,
    FEATURE_ORDER_STATUS,
    FEATURE_LAST_ORDER_ID,
    FEATURE_LAST_ORDER_STATUS,
    FEATURE_INTENT,
    FEATURE_SUBSCRIPTION_ACTION,
    FEATURE_COMPLAINT_SEVERITY,
    FEATURE_COMPLAINT_CATEGORY,
    /* bools */
    FEATURE_IN_CONTACT,
    FEATURE_QUEUED,
    FEATURE_IS_PARTNER,
    FEATURE_NEW_CONTACT,
    FEATURE_SUPPORT_CONTACT,
    FEATURE_CANCEL_SIGNAL,
    FEATURE_COUNT
} feature_t;

/* Resolves feature names for expr_compile and template_compile: index is the feature_t. */
extern const expr_resolver_t feature_resolver;

/* Looks a name up (len bytes, need not be NUL-terminated). Returns 0 with *out set, or -1. */
int feature_find(const char *name, size_t len, expr_feature_t *out);

/* A feature's name (static) and type; NULL and EXPR_MISSING past FEATURE_COUNT. */
const char *feature_name(unsigned index);
expr_type_t feature_type(unsigned index);

/* Fills values[0 .. FEATURE_COUNT - 1] for customer c as of now_ms. trigger (may be NULL)
 * and res (may be NULL; what customer_apply returned for trigger) give the event features;
 * without them those are missing. String values are borrowed from c, trigger and static
 * names: keep c and trigger unchanged while values are in use. */
void feature_fill(const customer_t *c, const event_t *trigger, const apply_result_t *res,
                  int64_t now_ms, expr_value_t *values);

/* The features feature_fill gets from the customer's windows and money (a pass over its
 * rings): a bit per feature index. */
uint64_t feature_window_mask(void);

/* feature_fill without an event, as far as it is needed for the features whose bits are set
 * in wanted (a bit per feature index): those get feature_fill's values, others may stay
 * missing. For the timer's check, every second for every waiting customer, which reads a few
 * features (rules_t.timer_features). */
void feature_fill_some(const customer_t *c, uint64_t wanted, int64_t now_ms,
                       expr_value_t *values);

#endif
