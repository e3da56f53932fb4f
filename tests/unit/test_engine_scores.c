/* test_engine_scores.c - features and scores (services/engine/feature.c, scores.c): what each
 * feature reads, when it is missing, the value / tier / trend / churn formulas against hand
 * computation, their factors, and the model file with errors that name the key. */
#include "event.h"
#include "expr.h"
#include "feature.h"
#include "rules.h"
#include "scores.h"
#include "state.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T0 INT64_C(1796058140000) /* 2026-11-30T17:02:20Z */
#define DAY STATE_DAY_MS
#define SUBJECT "cust-1042"

static customer_t cust, twin;
static state_config_t cfg;
static event_t ev;
static apply_result_t res;
static expr_value_t values[FEATURE_COUNT];
static state_scores_t scores;
static int next_id;
static char err[256];

static int setup(void **state)
{
    (void)state;
    scores_config_init(&cfg);
    assert_int_equal(customer_init(&cust, SUBJECT), 0);
    memset(values, 0, sizeof values);
    next_id = 0;
    return 0;
}

/* ---- Helpers */

static int apply_to(customer_t *c, const char *type, int64_t t, const char *data)
{
    char msg[2048], time[TIMEFMT_TEXT_SIZE];
    event_limits_t limits = {EVENT_MAX_BYTES_DEFAULT, 0, -1};
    event_error_t perr;
    assert_int_equal(timefmt_format(t, time, sizeof time), 24);
    int n = snprintf(msg, sizeof msg,
                     "{\"specversion\":\"1.0\",\"id\":\"e-%d\",\"source\":\"/t\",\"type\":\"%s\","
                     "\"time\":\"%s\",\"subject\":\"%s\",\"data\":%s}",
                     ++next_id, type, time, c->id, data);
    if (event_parse(msg, (size_t)n, &limits, &ev, &perr) != 0)
        fail_msg("event rejected (%s): %s", perr.detail, msg);
    return customer_apply(c, &ev, STATE_NO_OFFSET, &cfg, &res);
}

#define apply(type, t, data) assert_int_equal(apply_to(&cust, (type), (t), (data)), STATE_APPLIED)

/* Features as the engine computes them after an event: fill, score, fill back. */
static void fill(void)
{
    feature_fill(&cust, &ev, &res, cust.clock_ms, values);
    scores_update(&cust, &cfg, values);
}

static double number(feature_t f)
{
    if (values[f].type != EXPR_NUMBER)
        fail_msg("%s is not a number (type %d)", feature_name(f), values[f].type);
    return values[f].as.number;
}

static void assert_string_value(feature_t f, const char *want)
{
    if (values[f].type != EXPR_STRING)
        fail_msg("%s is not a string (type %d)", feature_name(f), values[f].type);
    assert_int_equal(values[f].as.string.len, strlen(want));
    assert_memory_equal(values[f].as.string.ptr, want, strlen(want));
}

static void assert_missing(feature_t f)
{
    if (values[f].type != EXPR_MISSING)
        fail_msg("%s is not missing (type %d)", feature_name(f), values[f].type);
}

static void set(feature_t f, double v)
{
    values[f] = expr_number(v);
}

static int parse_model(const char *json)
{
    return scores_model_parse(json, strlen(json), "config/model.json", &cfg, err, sizeof err);
}

static void assert_model_error(const char *json, const char *want)
{
    err[0] = '\0';
    if (parse_model(json) != -1) fail_msg("model accepted: %s", json);
    assert_string_equal(err, want);
}

/* ---- Features */

static void resolver_knows_every_feature_by_name(void **state)
{
    for (unsigned i = 0; i < FEATURE_COUNT; i++) {
        expr_feature_t f;
        const char *name = feature_name(i);
        assert_non_null(name);
        assert_true(strlen(name) < STATE_FEATURE_NAME_SIZE); /* fits a factor, uncut */
        assert_int_equal(feature_find(name, strlen(name), &f), 0);
        assert_int_equal(f.index, i); /* so names are unique, too */
        assert_int_equal(f.type, feature_type(i));
        assert_int_not_equal(f.type, EXPR_MISSING);
    }
    expr_feature_t f;
    assert_int_equal(feature_find("suport_contacts_30d", 19, &f), -1);
    assert_int_equal(feature_find("contacts_30", 11, &f), -1); /* a prefix is not a name */
    assert_null(feature_name(FEATURE_COUNT));
}

static void features_missing_when_no_contact(void **state)
{
    apply("payment.failed", T0, "{\"amount\":10}");
    fill();
    assert_missing(FEATURE_CHANNEL);
    assert_missing(FEATURE_QUEUE);
    assert_missing(FEATURE_AGENT_ID);
    assert_missing(FEATURE_WAIT_S);
    assert_missing(FEATURE_SENTIMENT_CONTACT_MEAN);
    assert_missing(FEATURE_CSAT_LAST);
    assert_missing(FEATURE_DAYS_SINCE_LAST_ORDER);
    assert_missing(FEATURE_TENURE_DAYS);
    assert_missing(FEATURE_SEGMENT);
    assert_missing(FEATURE_ORDER_STATUS);
    assert_int_equal(values[FEATURE_IN_CONTACT].type, EXPR_BOOL);
    assert_false(values[FEATURE_IN_CONTACT].as.boolean);
    assert_float_equal(number(FEATURE_CONTACTS_30D), 0, 0);
    assert_float_equal(number(FEATURE_FAILED_PAYMENTS_30D), 1, 0);
}

static void features_of_the_current_contact(void **state)
{
    apply("contact.queued", T0,
          "{\"contact_id\":\"k-1\",\"channel\":\"phone\",\"queue\":\"billing\",\"reason\":"
          "\"technical\"}");
    feature_fill(&cust, &ev, &res, T0 + 90500, values);
    assert_string_value(FEATURE_CHANNEL, "phone");
    assert_string_value(FEATURE_QUEUE, "billing");
    assert_string_value(FEATURE_CONTACT_REASON, "technical");
    assert_missing(FEATURE_AGENT_ID);
    assert_float_equal(number(FEATURE_WAIT_S), 90.5, 1e-9);
    assert_true(values[FEATURE_QUEUED].as.boolean);
    assert_true(values[FEATURE_NEW_CONTACT].as.boolean);
    assert_true(values[FEATURE_SUPPORT_CONTACT].as.boolean);
    apply("contact.started", T0 + 100000,
          "{\"contact_id\":\"k-1\",\"channel\":\"phone\",\"agent_id\":\"a-9\"}");
    fill();
    assert_missing(FEATURE_WAIT_S); /* answered: no longer waiting */
    assert_false(values[FEATURE_NEW_CONTACT].as.boolean);
    assert_string_value(FEATURE_AGENT_ID, "a-9");
    assert_true(values[FEATURE_IN_CONTACT].as.boolean);
    assert_false(values[FEATURE_QUEUED].as.boolean);
}

static void features_of_the_triggering_event(void **state)
{
    apply("order.placed", T0 - 10 * DAY,
          "{\"order_id\":\"o-17\",\"amount\":80,\"currency\":\"EUR\"}");
    fill();
    assert_string_value(FEATURE_ORDER_STATUS, "placed");
    apply("order.updated", T0, "{\"order_id\":\"o-17\",\"status\":\"out_of_stock\"}");
    fill();
    assert_string_value(FEATURE_EVENT_TYPE, "order.updated");
    assert_string_value(FEATURE_ORDER_STATUS, "out_of_stock");
    assert_string_value(FEATURE_LAST_ORDER_STATUS, "out_of_stock");
    assert_float_equal(number(FEATURE_DELAYED_ORDERS), 1, 0);
    assert_float_equal(number(FEATURE_DAYS_SINCE_LAST_ORDER), 10, 0);
    assert_missing(FEATURE_INTENT);
    apply("web.visited", T0, "{\"page\":\"/cancel\",\"intent\":\"cancel\"}");
    fill();
    assert_string_value(FEATURE_INTENT, "cancel");
    assert_missing(FEATURE_ORDER_STATUS);
    assert_true(values[FEATURE_CANCEL_SIGNAL].as.boolean);
    apply("subscription.changed", T0, "{\"action\":\"downgraded\",\"mrr_delta\":-5}");
    fill();
    assert_string_value(FEATURE_SUBSCRIPTION_ACTION, "downgraded");
    apply("complaint.filed", T0, "{\"category\":\"rude agent\",\"severity\":\"critical\"}");
    fill();
    assert_string_value(FEATURE_COMPLAINT_SEVERITY, "critical");
    assert_string_value(FEATURE_COMPLAINT_CATEGORY, "rude agent");
    /* without a trigger, the event features are missing */
    feature_fill(&cust, NULL, NULL, cust.clock_ms, values);
    assert_missing(FEATURE_EVENT_TYPE);
    assert_missing(FEATURE_COMPLAINT_SEVERITY);
    assert_false(values[FEATURE_NEW_CONTACT].as.boolean);
}

static void features_of_the_profile_and_surveys(void **state)
{
    apply("customer.profile", T0,
          "{\"segment\":\"gold\",\"language\":\"de\",\"since\":\"2026-01-01\"}");
    apply("survey.answered", T0, "{\"csat\":4}");
    apply("sentiment.sampled", T0, "{\"contact_id\":\"k-1\",\"score\":-0.75}");
    fill();
    assert_string_value(FEATURE_SEGMENT, "gold");
    assert_string_value(FEATURE_LANGUAGE, "de");
    assert_float_equal(number(FEATURE_TENURE_DAYS), 333, 0); /* 2026-01-01 to 11-30 */
    assert_float_equal(number(FEATURE_CSAT_LAST), 4, 0);
    assert_missing(FEATURE_NPS_LAST);
    assert_float_equal(number(FEATURE_SENTIMENT_LAST), -0.75, 1e-12);
    assert_float_equal(number(FEATURE_SENTIMENT_30D_MEAN), -0.75, 1e-12);
    assert_false(values[FEATURE_IS_PARTNER].as.boolean);
}

static void repeat_contact_rule_fires_on_first_event_of_fourth_support_contact(void **state)
{
    const char *src = "new_contact && support_contacts_30d >= 4 && channel == \"phone\"";
    expr_program_t *p;
    expr_error_t xerr;
    assert_int_equal(expr_compile(src, strlen(src), &feature_resolver, &p, &xerr), 0);
    int fired = 0;
    for (int i = 0; i < 5; i++) {
        char data[160];
        snprintf(data, sizeof data,
                 "{\"contact_id\":\"k-%d\",\"channel\":\"phone\",\"queue\":\"q\",\"reason\":"
                 "\"billing\"}",
                 i);
        apply("contact.queued", T0 + i * DAY, data);
        fill();
        bool fires = expr_eval(p, values, FEATURE_COUNT, NULL, 0, NULL);
        assert_int_equal(fires, i >= 3);
        fired += fires;
        /* the contact's next event is not its first: no second alert for it */
        snprintf(data, sizeof data,
                 "{\"contact_id\":\"k-%d\",\"channel\":\"phone\",\"agent_id\":\"a\"}", i);
        apply("contact.started", T0 + i * DAY + 1000, data);
        fill();
        assert_false(expr_eval(p, values, FEATURE_COUNT, NULL, 0, NULL));
    }
    assert_int_equal(fired, 2);
    expr_free(p);
}

/* Asserts that quick[f] equals full[f]. */
static void assert_same_feature(const expr_value_t *quick, const expr_value_t *full, unsigned f)
{
    assert_int_equal(quick[f].type, full[f].type);
    if (full[f].type == EXPR_NUMBER)
        assert_true(quick[f].as.number == full[f].as.number);
    else if (full[f].type == EXPR_STRING) {
        assert_int_equal(quick[f].as.string.len, full[f].as.string.len);
        assert_memory_equal(quick[f].as.string.ptr, full[f].as.string.ptr, full[f].as.string.len);
    } else if (full[f].type == EXPR_BOOL)
        assert_int_equal(quick[f].as.boolean, full[f].as.boolean);
}

/* The timer's shortcut: rules record the features their conditions read, and a fill of only
 * those gives each of them as feature_fill does, whichever group it belongs to. */
static void timer_fill_of_some_features_matches_the_full_fill(void **state)
{
    apply("order.placed", T0,
          "{\"order_id\":\"o-1\",\"amount\":100,\"margin\":30,\"currency\":\"EUR\"}");
    apply("order.updated", T0 + 500, "{\"order_id\":\"o-1\",\"status\":\"delayed\"}");
    apply("contact.queued", T0 + 1000,
          "{\"contact_id\":\"k-1\",\"channel\":\"phone\",\"queue\":\"q\",\"reason\":\"billing\"}");
    apply("sentiment.sampled", T0 + 2000, "{\"contact_id\":\"k-1\",\"score\":-0.5}");
    fill();
    expr_value_t quick[FEATURE_COUNT];
    feature_fill(&cust, NULL, NULL, T0 + 61000, values);
    uint64_t windows = feature_window_mask();
    assert_true(windows & (UINT64_C(1) << FEATURE_SUPPORT_CONTACTS_30D));
    assert_false(windows & (UINT64_C(1) << FEATURE_WAIT_S));
    for (unsigned f = 0; f < FEATURE_COUNT; f++) { /* one feature at a time */
        feature_fill_some(&cust, UINT64_C(1) << f, T0 + 61000, quick);
        assert_same_feature(quick, values, f);
    }
    feature_fill_some(&cust, UINT64_MAX, T0 + 61000, quick);
    for (unsigned f = 0; f < FEATURE_COUNT; f++)
        assert_same_feature(quick, values, f);
    /* vip_waiting's features: no pass over the windows, none of the costly walks */
    uint64_t vip = (UINT64_C(1) << FEATURE_TIER) | (UINT64_C(1) << FEATURE_QUEUED) |
                   (UINT64_C(1) << FEATURE_WAIT_S);
    feature_fill_some(&cust, vip, T0 + 61000, quick);
    assert_true(quick[FEATURE_WAIT_S].as.number == 60.0);
    assert_true(quick[FEATURE_QUEUED].as.boolean);
    assert_int_equal(quick[FEATURE_SUPPORT_CONTACTS_30D].type, EXPR_MISSING);
    assert_int_equal(quick[FEATURE_SENTIMENT_CONTACT_MEAN].type, EXPR_MISSING);
    assert_int_equal(quick[FEATURE_LAST_ORDER_STATUS].type, EXPR_MISSING);
    assert_int_equal(values[FEATURE_LAST_ORDER_STATUS].type, EXPR_STRING);
    assert_int_equal(values[FEATURE_SENTIMENT_CONTACT_MEAN].type, EXPR_NUMBER);
    const char *text = "{\"rules\":[{\"id\":\"w\",\"on\":[\"timer\"],\"condition\":\"queued && "
                       "wait_s >= 60\",\"severity\":\"info\",\"title\":\"t\",\"message\":\"m "
                       "{support_contacts_30d}\",\"action\":\"a\",\"cooldown_s\":0},{\"id\":\"x\","
                       "\"on\":[\"contact.queued\"],\"condition\":\"complaints_90d > 1\","
                       "\"severity\":\"info\",\"title\":\"t\",\"message\":\"m\",\"action\":\"a\","
                       "\"cooldown_s\":0}]}";
    rules_t *rules = rules_parse(text, strlen(text), "test", &feature_resolver, err, sizeof err);
    assert_non_null(rules);
    assert_true(rules->timer_features ==
                ((UINT64_C(1) << FEATURE_QUEUED) | (UINT64_C(1) << FEATURE_WAIT_S)));
    assert_true(rules->rules[1].condition_features == UINT64_C(1) << FEATURE_COMPLAINTS_90D);
    rules_free(rules);
}

/* ---- Scores */

static void churn_logistic_matches_hand_computation(void **state)
{
    assert_int_equal(parse_model("{\"churn\":{\"bias\":-2.5,\"weights\":{"
                                 "\"support_contacts_30d\":0.6,\"complaints_90d\":0.9,"
                                 "\"sentiment_30d_mean\":-1.2}}}"),
                     0);
    set(FEATURE_SUPPORT_CONTACTS_30D, 4);
    set(FEATURE_COMPLAINTS_90D, 1);
    set(FEATURE_SENTIMENT_30D_MEAN, -0.5);
    scores_compute(&cfg, values, &scores);
    double z = -2.5 + 0.6 * 4 + 0.9 * 1 + -1.2 * -0.5; /* 1.4 */
    assert_float_equal(scores.churn_risk, round(1e4 / (1 + exp(-z))) / 1e4, 1e-12);
    assert_float_equal(scores.churn_risk, 0.8022, 1e-12);
    assert_int_equal(scores.n_churn_factors, 3);
    assert_string_equal(scores.churn_factors[0].feature, "support_contacts_30d");
    assert_float_equal(scores.churn_factors[0].value, 4, 0);
    assert_float_equal(scores.churn_factors[0].weight, 0.6, 1e-12);
    assert_float_equal(scores.churn_factors[0].contribution, 2.4, 1e-12);
    assert_string_equal(scores.churn_factors[1].feature, "complaints_90d");
    assert_string_equal(scores.churn_factors[2].feature, "sentiment_30d_mean");
    assert_float_equal(scores.churn_factors[2].contribution, 0.6, 1e-12);
}

static void churn_term_center_and_max(void **state)
{
    assert_int_equal(parse_model("{\"churn\":{\"bias\":0,\"weights\":{"
                                 "\"csat_last\":{\"weight\":-0.5,\"center\":4},"
                                 "\"days_since_last_order\":{\"weight\":0.01,\"max\":100}}}}"),
                     0);
    set(FEATURE_CSAT_LAST, 1);
    set(FEATURE_DAYS_SINCE_LAST_ORDER, 400);
    scores_compute(&cfg, values, &scores);
    double z = -0.5 * (1 - 4) + 0.01 * 100; /* 2.5: capped at 100 days */
    assert_float_equal(scores.churn_risk, round(1e4 / (1 + exp(-z))) / 1e4, 1e-12);
    assert_string_equal(scores.churn_factors[0].feature, "csat_last");
    assert_float_equal(scores.churn_factors[0].contribution, 1.5, 1e-12);
    assert_float_equal(scores.churn_factors[1].value, 400, 0); /* shown as it is */
    assert_float_equal(scores.churn_factors[1].contribution, 1, 1e-12);
}

static void churn_missing_feature_adds_nothing(void **state)
{
    assert_int_equal(parse_model("{\"churn\":{\"bias\":-1,\"weights\":{"
                                 "\"csat_last\":{\"weight\":-0.5,\"center\":4}}}}"),
                     0);
    scores_compute(&cfg, values, &scores); /* csat_last missing */
    assert_float_equal(scores.churn_risk, round(1e4 / (1 + exp(1))) / 1e4, 1e-12);
    assert_int_equal(scores.n_churn_factors, 0);
}

static void churn_factors_are_only_those_raising_risk_top_three(void **state)
{
    set(FEATURE_SUPPORT_CONTACTS_30D, 1); /* 0.45 */
    set(FEATURE_COMPLAINTS_90D, 2);       /* 1.2 */
    set(FEATURE_CANCEL_SIGNALS_30D, 1);   /* 1.2, later in the model: after complaints */
    set(FEATURE_FAILED_PAYMENTS_30D, 1);  /* 0.5 */
    set(FEATURE_CSAT_LAST, 5);            /* -0.35: lowers the risk */
    scores_compute(&cfg, values, &scores);
    assert_int_equal(scores.n_churn_factors, 3);
    assert_string_equal(scores.churn_factors[0].feature, "complaints_90d");
    assert_string_equal(scores.churn_factors[1].feature, "cancel_signals_30d");
    assert_string_equal(scores.churn_factors[2].feature, "failed_payments_30d");
}

static void churn_factors_leave_out_terms_that_add_nothing(void **state)
{
    set(FEATURE_SUPPORT_CONTACTS_30D, 2); /* 0.9 */
    set(FEATURE_COMPLAINTS_90D, 0);       /* present, but 0 */
    set(FEATURE_CSAT_LAST, 4);            /* at its center: 0 */
    scores_compute(&cfg, values, &scores);
    assert_int_equal(scores.n_churn_factors, 1);
    assert_string_equal(scores.churn_factors[0].feature, "support_contacts_30d");
}

static void value_formula_matches_weights(void **state)
{
    set(FEATURE_REVENUE_12M, 2000);
    set(FEATURE_MARGIN_12M, 620.25);
    set(FEATURE_ORDERS_12M, 3);
    set(FEATURE_COST_TO_SERVE_12M, 9);
    scores_compute(&cfg, values, &scores);
    assert_float_equal(scores.value, 620.25 + 5 * 3 - 9, 1e-9); /* revenue weight is 0 */
    assert_int_equal(scores.n_value_factors, 3);
    assert_string_equal(scores.value_factors[0].feature, "margin_12m");
    assert_string_equal(scores.value_factors[1].feature, "orders_12m");
    assert_string_equal(scores.value_factors[2].feature, "cost_to_serve_12m");
    assert_float_equal(scores.value_factors[2].contribution, -9, 1e-12);
}

static void tier_thresholds(void **state)
{
    static const struct {
        double margin;
        char tier;
    } cases[] = {{1000, 'A'}, {5000, 'A'}, {999.99, 'B'}, {250, 'B'}, {249.99, 'C'}, {-40, 'C'}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        set(FEATURE_MARGIN_12M, cases[i].margin);
        scores_compute(&cfg, values, &scores);
        if (scores.tier != cases[i].tier)
            fail_msg("value %g: tier %c, expected %c", cases[i].margin, scores.tier, cases[i].tier);
    }
}

static void trend_rising_falling_stable(void **state)
{
    static const struct {
        double now, before;
        state_trend_t trend;
    } cases[] = {
        {0, 0, STATE_TREND_STABLE},     /* no revenue at all */
        {50, 0, STATE_TREND_RISING},    /* a first purchase */
        {120, 100, STATE_TREND_RISING}, /* +20 % */
        {119, 100, STATE_TREND_STABLE}, {81, 100, STATE_TREND_STABLE},
        {80, 100, STATE_TREND_FALLING}, /* -20 % */
        {0, 100, STATE_TREND_FALLING},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        set(FEATURE_REVENUE_90D, cases[i].now);
        set(FEATURE_REVENUE_PREV_90D, cases[i].before);
        scores_compute(&cfg, values, &scores);
        if (scores.trend != cases[i].trend)
            fail_msg("%g after %g: %s, expected %s", cases[i].now, cases[i].before,
                     state_trend_name(scores.trend), state_trend_name(cases[i].trend));
    }
}

/* Two customers with the same purchases and contacts, one preferring phone and one chat, in
 * different segments: the same value. */
static void value_ignores_preferred_channel(void **state)
{
    customer_t *c[2] = {&cust, &twin};
    const char *profiles[2] = {
        "{\"segment\":\"phone-first\",\"preferences\":{\"channel\":\"phone\"}}",
        "{\"segment\":\"digital\",\"preferences\":{\"channel\":\"chat\"}}"};
    assert_int_equal(customer_init(&twin, "cust-2"), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(apply_to(c[i], "customer.profile", T0 - 5 * DAY, profiles[i]),
                         STATE_APPLIED);
        apply_to(c[i], "order.placed", T0 - 4 * DAY,
                 "{\"order_id\":\"o-1\",\"amount\":300,\"currency\":\"EUR\",\"margin\":90}");
        apply_to(c[i], "contact.queued", T0,
                 "{\"contact_id\":\"k-1\",\"channel\":\"email\",\"queue\":\"q\"}");
        feature_fill(c[i], &ev, &res, c[i]->clock_ms, values);
        scores_update(c[i], &cfg, values);
    }
    assert_true(cust.scores.computed);
    assert_float_equal(cust.scores.value, 90 + 5 - 2.5, 1e-9);
    assert_float_equal(twin.scores.value, cust.scores.value, 0);
    assert_int_equal(twin.scores.tier, cust.scores.tier);
}

static void scores_update_writes_back_the_score_features(void **state)
{
    apply("order.placed", T0, "{\"order_id\":\"o-1\",\"amount\":5000,\"currency\":\"EUR\"}");
    feature_fill(&cust, &ev, &res, cust.clock_ms, values);
    assert_missing(FEATURE_TIER); /* not scored yet */
    scores_update(&cust, &cfg, values);
    assert_string_value(FEATURE_TIER, "A"); /* margin 1500 + 5 */
    assert_string_value(FEATURE_TREND, "rising");
    assert_float_equal(number(FEATURE_VALUE), 1505, 1e-9);
    assert_float_equal(number(FEATURE_CHURN_RISK), cust.scores.churn_risk, 0);
    /* and the document carries them */
    static char doc[STATE_JSON_MAX];
    size_t len;
    assert_int_equal(customer_to_json(&cust, &cfg, doc, sizeof doc, &len), 0);
    assert_non_null(strstr(doc, "\"tier\":\"A\",\"value\":1505,\"churn_risk\":"));
    assert_non_null(
        strstr(doc, "\"trend\":\"rising\",\"factors\":{\"value\":[[\"margin_12m\",1500,1,1500]"));
}

/* ---- The model file */

static void model_file_errors_name_the_key(void **state)
{
    static const struct {
        const char *json, *err;
    } cases[] = {
        {"{\"churn\":{\"weights\":{\"suport_contacts_30d\":0.4}}}",
         "config/model.json: churn.weights.suport_contacts_30d: unknown feature"},
        {"{\"churn\":{\"weights\":{\"tier\":0.4}}}",
         "config/model.json: churn.weights.tier: not a number feature"},
        {"{\"churn\":{\"weights\":{\"churn_risk\":1}}}",
         "config/model.json: churn.weights.churn_risk: the churn model cannot read its own output"},
        {"{\"churn\":{\"weights\":{\"csat_last\":{\"weight\":1,\"centre\":4}}}}",
         "config/model.json: churn.weights.csat_last.centre: unknown key (weight, center or max)"},
        {"{\"churn\":{\"weights\":{\"csat_last\":{\"center\":4}}}}",
         "config/model.json: churn.weights.csat_last.weight: missing"},
        {"{\"churn\":{\"weights\":{\"csat_last\":\"high\"}}}",
         "config/model.json: churn.weights.csat_last: must be a number or {\"weight\", \"center\", "
         "\"max\"}"},
        {"{\"churn\":{\"bias\":\"low\"}}",
         "config/model.json: churn.bias: must be a number in [-100, 100]"},
        {"{\"churn\":{\"weights\":{\"abandoned_7d\":1,\"abandoned_7d\":2}}}",
         "config/model.json: churn.weights.abandoned_7d: given twice"},
        {"{\"value\":{\"weights\":{\"contacts_30d\":1}}}",
         "config/model.json: value.weights.contacts_30d: not a value term (revenue_12m, "
         "margin_12m, "
         "orders_12m, cost_to_serve_12m: value is channel-neutral)"},
        {"{\"channel_cost\":{\"pigeon\":1}}",
         "config/model.json: channel_cost.pigeon: unknown channel"},
        {"{\"channel_cost\":{\"phone\":-1}}",
         "config/model.json: channel_cost.phone: must be a number in [0, 1e+06]"},
        {"{\"tiers\":{\"A\":100,\"B\":200}}",
         "config/model.json: tiers.A: must be at least tiers.B (200)"},
        {"{\"tiers\":{\"a\":100}}", "config/model.json: tiers.a: unknown key (A or B)"},
        {"{\"trend\":{\"rising\":-0.1}}",
         "config/model.json: trend: falling must be <= 0 <= rising, and below it"},
        {"{\"support_reasons\":[\"billing\",\"\"]}",
         "config/model.json: support_reasons[1]: must be a string of 1-64 bytes"},
        {"{\"suport_reasons\":[]}", "config/model.json: suport_reasons: unknown key"},
        {"{\"churn\":{\"weights\":{}},}", "config/model.json: malformed JSON near offset 25"},
        {"[]", "config/model.json: (top level): must be an object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_model_error(cases[i].json, cases[i].err);
}

static void bad_model_leaves_config_unchanged(void **state)
{
    state_config_t before = cfg;
    assert_int_equal(parse_model("{\"tiers\":{\"A\":5},\"churn\":{\"weights\":{\"nope\":1}}}"), -1);
    assert_memory_equal(&cfg, &before, sizeof cfg);
    assert_int_equal(parse_model("{\"tiers\":{\"A\":5000}}"), 0);
    assert_float_equal(cfg.tier_a, 5000, 0);
    assert_float_equal(cfg.tier_b, 250, 0); /* the rest keeps its default */
    assert_int_equal(cfg.n_churn_terms, before.n_churn_terms);
}

static void churn_weights_replace_the_default_terms(void **state)
{
    assert_int_equal(parse_model("{\"churn\":{\"weights\":{\"abandoned_7d\":2}}}"), 0);
    assert_int_equal(cfg.n_churn_terms, 1);
    assert_string_equal(cfg.churn_terms[0].feature_name, "abandoned_7d");
    assert_int_equal(cfg.churn_terms[0].feature, FEATURE_ABANDONED_7D);
    assert_float_equal(cfg.churn_terms[0].weight, 2, 0);
}

static void shipped_model_file_matches_builtin_defaults(void **state)
{
    const char *root = getenv("INTEGRAL_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/config/model.json", root ? root : ".");
    state_config_t builtin;
    scores_config_init(&builtin);
    memset(&cfg, 0xAB, sizeof cfg); /* every byte must come from the load */
    if (scores_model_load(path, &cfg, err, sizeof err) != 0) fail_msg("%s", err);
    assert_memory_equal(&cfg, &builtin, sizeof cfg);
}

static void model_file_load_errors_name_the_file(void **state)
{
    char path[] = "/tmp/test_engine_scores_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "{\"churn\": {\"weights\": {\"suport_contacts_30d\": 0.4}}}\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(scores_model_load(path, &cfg, err, sizeof err), -1);
    char want[256];
    snprintf(want, sizeof want, "%s: churn.weights.suport_contacts_30d: unknown feature", path);
    assert_string_equal(err, want);
    unlink(path);
    assert_int_equal(scores_model_load(path, &cfg, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", path);
    assert_string_equal(err, want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(resolver_knows_every_feature_by_name, setup),
        cmocka_unit_test_setup(features_missing_when_no_contact, setup),
        cmocka_unit_test_setup(features_of_the_current_contact, setup),
        cmocka_unit_test_setup(features_of_the_triggering_event, setup),
        cmocka_unit_test_setup(features_of_the_profile_and_surveys, setup),
        cmocka_unit_test_setup(timer_fill_of_some_features_matches_the_full_fill, setup),
        cmocka_unit_test_setup(repeat_contact_rule_fires_on_first_event_of_fourth_support_contact,
                               setup),
        cmocka_unit_test_setup(churn_logistic_matches_hand_computation, setup),
        cmocka_unit_test_setup(churn_term_center_and_max, setup),
        cmocka_unit_test_setup(churn_missing_feature_adds_nothing, setup),
        cmocka_unit_test_setup(churn_factors_are_only_those_raising_risk_top_three, setup),
        cmocka_unit_test_setup(churn_factors_leave_out_terms_that_add_nothing, setup),
        cmocka_unit_test_setup(value_formula_matches_weights, setup),
        cmocka_unit_test_setup(tier_thresholds, setup),
        cmocka_unit_test_setup(trend_rising_falling_stable, setup),
        cmocka_unit_test_setup(value_ignores_preferred_channel, setup),
        cmocka_unit_test_setup(scores_update_writes_back_the_score_features, setup),
        cmocka_unit_test_setup(model_file_errors_name_the_key, setup),
        cmocka_unit_test_setup(bad_model_leaves_config_unchanged, setup),
        cmocka_unit_test_setup(churn_weights_replace_the_default_terms, setup),
        cmocka_unit_test_setup(shipped_model_file_matches_builtin_defaults, setup),
        cmocka_unit_test_setup(model_file_load_errors_name_the_file, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
