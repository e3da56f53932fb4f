/* scores.h - a customer's scores, recomputed from its features on every update: value and
 * tier, value trend, and churn risk, each with the factors that contributed most.
 *
 *   value       channel-neutral worth over 12 months, from money and purchase frequency only:
 *                 value = w_revenue * revenue_12m + w_margin * margin_12m
 *                       + w_orders * orders_12m + w_cost * cost_to_serve_12m
 *               (w_cost is negative: serving costs). No term reads the channel a customer
 *               prefers or uses; cost to serve is what the contacts actually cost.
 *   tier        "A" when value >= tiers.A, "B" when >= tiers.B, else "C".
 *   trend       revenue_90d against revenue_prev_90d: no revenue in either is "stable";
 *               revenue only now is "rising"; otherwise the relative change
 *               (now - before) / before >= trend.rising is "rising", <= trend.falling
 *               "falling", else "stable". A low-value customer whose spending grows shows
 *               as rising, so agents can treat tomorrow's valuable customer accordingly.
 *   churn_risk  a logistic model: 1 / (1 + e^-(bias + sum of terms)); each term is
 *               weight * (min(feature, max) - center) over a numeric feature, 0 when the
 *               feature is missing. "center" makes a feature that lowers risk readable as a
 *               factor (csat_last with center 4: a 1 raises the risk, a 5 lowers it).
 *   factors     value: its non-zero terms by size; churn: its terms that raise the risk,
 *               largest first; at most STATE_FACTORS_MAX each.
 *
 * The model file (config/model.json) sets any of these; what it leaves out keeps the
 * built-in default (scores_config_init), except churn.weights, which replaces the default
 * terms as a whole:
 *   {"support_reasons": ["support", "technical", "billing", "complaint"],
 *    "channel_cost": {"phone": 6.0, "chat": 3.0, ...},            currency units per contact
 *    "value": {"weights": {"revenue_12m": 0, "margin_12m": 1, "orders_12m": 5,
 *                          "cost_to_serve_12m": -1},
 *              "default_margin_rate": 0.3},                       for orders without margin
 *    "tiers": {"A": 1000, "B": 250},
 *    "trend": {"rising": 0.2, "falling": -0.2},
 *    "churn": {"bias": -3.0,
 *              "weights": {"support_contacts_30d": 0.45,
 *                          "days_since_last_order": {"weight": 0.012, "max": 180},
 *                          "csat_last": {"weight": -0.35, "center": 4}, ...}}}
 * Any key not listed is an error, and so is a wrong type, a number out of range, an unknown
 * or non-numeric churn feature; the error names the file and the key:
 *   config/model.json: churn.weights.suport_contacts_30d: unknown feature */
#ifndef INTEGRAL_SCORES_H
#define INTEGRAL_SCORES_H

#include "expr.h"
#include "state.h"

#include <stddef.h>

/* Fills cfg with the built-in model: state_config_init plus the default churn terms. */
void scores_config_init(state_config_t *cfg);

/* Reads the model file at path over the built-in defaults. Returns 0 with *cfg replaced, or
 * -1 with one line in err ("<path>: <key>: <problem>") and *cfg unchanged. */
int scores_model_load(const char *path, state_config_t *cfg, char *err, size_t errlen);

/* As scores_model_load, from len bytes of JSON text; source names it in errors. */
int scores_model_parse(const char *json, size_t len, const char *source, state_config_t *cfg,
                       char *err, size_t errlen);

/* Computes the scores from features values (feature.h: FEATURE_COUNT of them, as
 * feature_fill made them) into *out. Pure: reads only cfg and values. */
void scores_compute(const state_config_t *cfg, const expr_value_t *values, state_scores_t *out);

/* scores_compute into c->scores, then writes the new value, churn_risk, tier and trend back
 * into values so that rules evaluated next see them. String values point to static names. */
void scores_update(customer_t *c, const state_config_t *cfg, expr_value_t *values);

#endif
