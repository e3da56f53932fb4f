/* scores.c - value, tier, trend and churn risk with their factors, and the model file they
 * come from. See scores.h for the formulas and the file format.
 *
 * Computing is a few dozen multiplications per update and no allocation. Loading the model
 * reads the file with cJSON into a fresh config, checks every key and the keys against each
 * other, and only then replaces the caller's config, so a bad file changes nothing. */
#include "scores.h"

#include "feature.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODEL_FILE_MAX (256 * 1024) /* a model file is a few KiB; refuse anything huge */
#define WEIGHT_MAX 1e6
#define COST_MAX 1e6
#define BIAS_MAX 100.0

/* ------------------------------------------------------------------------------------------
 * The built-in model
 * ------------------------------------------------------------------------------------------ */

/* config/model.json repeats these (a test checks that they agree). A missing feature adds
 * nothing, so a customer without surveys or orders is neither helped nor hurt by them. */
static const struct {
    unsigned feature;
    double weight, center, max;
} default_churn_terms[] = {
    {FEATURE_SUPPORT_CONTACTS_30D, 0.45, 0, INFINITY},
    {FEATURE_COMPLAINTS_90D, 0.6, 0, INFINITY},
    {FEATURE_FAILED_PAYMENTS_30D, 0.5, 0, INFINITY},
    {FEATURE_CANCEL_SIGNALS_30D, 1.2, 0, INFINITY},
    {FEATURE_ABANDONED_7D, 0.35, 0, INFINITY},
    {FEATURE_SENTIMENT_30D_MEAN, -1.5, 0, INFINITY},
    {FEATURE_DAYS_SINCE_LAST_ORDER, 0.012, 0, 180},
    {FEATURE_CSAT_LAST, -0.35, 4, INFINITY},
    {FEATURE_NPS_LAST, -0.08, 7, INFINITY},
};

static void add_churn_term(state_config_t *cfg, unsigned feature, double weight, double center,
                           double max)
{
    state_churn_term_t *t = &cfg->churn_terms[cfg->n_churn_terms++];
    memset(t, 0, sizeof *t);
    snprintf(t->feature_name, sizeof t->feature_name, "%s", feature_name(feature));
    t->feature = feature;
    t->weight = weight;
    t->center = center;
    t->max = max;
}

void scores_config_init(state_config_t *cfg)
{
    state_config_init(cfg);
    cfg->n_churn_terms = 0;
    for (size_t i = 0; i < sizeof default_churn_terms / sizeof default_churn_terms[0]; i++)
        add_churn_term(cfg, default_churn_terms[i].feature, default_churn_terms[i].weight,
                       default_churn_terms[i].center, default_churn_terms[i].max);
}

/* ------------------------------------------------------------------------------------------
 * Computing
 * ------------------------------------------------------------------------------------------ */

static double round_to(double x, double scale)
{
    return round(x * scale) / scale;
}

static bool number_of(const expr_value_t *v, double *out)
{
    if (v->type != EXPR_NUMBER || isnan(v->as.number)) return false;
    *out = v->as.number;
    return true;
}

static double number_or_zero(const expr_value_t *v)
{
    double x;
    return number_of(v, &x) ? x : 0.0;
}

typedef struct {
    const char *feature;
    double value, weight, contribution, rank;
} candidate_t;

/* Copies the (at most) STATE_FACTORS_MAX candidates of highest rank, highest first; on a tie
 * the earlier term wins, so the order never depends on the sort. */
static int top_factors(candidate_t *cand, int n, state_factor_t *out)
{
    int k = 0;
    for (; k < STATE_FACTORS_MAX && k < n; k++) {
        int best = k;
        for (int i = k + 1; i < n; i++)
            if (cand[i].rank > cand[best].rank) best = i;
        candidate_t chosen = cand[best];
        memmove(&cand[k + 1], &cand[k], (size_t)(best - k) * sizeof *cand);
        cand[k] = chosen;
        memset(&out[k], 0, sizeof out[k]);
        /* feature names are shorter than the field (feature.c); no printf on this path */
        strncpy(out[k].feature, chosen.feature, sizeof out[k].feature - 1);
        out[k].value = round_to(chosen.value, 1e4);
        out[k].weight = round_to(chosen.weight, 1e4);
        out[k].contribution = round_to(chosen.contribution, 1e4);
    }
    return k;
}

/* Value: only money and purchase frequency (see scores.h). */
static void compute_value(const state_config_t *cfg, const expr_value_t *values,
                          state_scores_t *out)
{
    const struct {
        unsigned feature;
        double weight;
    } terms[] = {
        {FEATURE_REVENUE_12M, cfg->value_revenue_weight},
        {FEATURE_MARGIN_12M, cfg->value_margin_weight},
        {FEATURE_ORDERS_12M, cfg->value_orders_weight},
        {FEATURE_COST_TO_SERVE_12M, cfg->value_cost_weight},
    };
    candidate_t cand[4];
    int n = 0;
    double value = 0;
    for (int i = 0; i < 4; i++) {
        double x = number_or_zero(&values[terms[i].feature]);
        double contribution = terms[i].weight * x;
        value += contribution;
        if (contribution != 0)
            cand[n++] = (candidate_t){feature_name(terms[i].feature), x, terms[i].weight,
                                      contribution, fabs(contribution)};
    }
    out->value = round_to(value, 100);
    out->tier = out->value >= cfg->tier_a ? 'A' : out->value >= cfg->tier_b ? 'B' : 'C';
    out->n_value_factors = top_factors(cand, n, out->value_factors);
}

static state_trend_t compute_trend(const state_config_t *cfg, const expr_value_t *values)
{
    double now = number_or_zero(&values[FEATURE_REVENUE_90D]);
    double before = number_or_zero(&values[FEATURE_REVENUE_PREV_90D]);
    if (before <= 0) return now > 0 ? STATE_TREND_RISING : STATE_TREND_STABLE;
    double change = (now - before) / before;
    if (change >= cfg->trend_rising) return STATE_TREND_RISING;
    if (change <= cfg->trend_falling) return STATE_TREND_FALLING;
    return STATE_TREND_STABLE;
}

/* The logistic model. A term on "value" reads the value computed just before. */
static void compute_churn(const state_config_t *cfg, const expr_value_t *values,
                          state_scores_t *out)
{
    candidate_t cand[STATE_CHURN_TERMS_MAX];
    int n = 0;
    double z = cfg->churn_bias;
    for (int i = 0; i < cfg->n_churn_terms; i++) {
        const state_churn_term_t *t = &cfg->churn_terms[i];
        double x;
        if (t->feature == FEATURE_VALUE)
            x = out->value;
        else if (t->feature >= FEATURE_COUNT || !number_of(&values[t->feature], &x))
            continue;
        double contribution = t->weight * (fmin(x, t->max) - t->center);
        z += contribution;
        if (contribution > 0)
            cand[n++] = (candidate_t){t->feature_name, x, t->weight, contribution, contribution};
    }
    out->churn_risk = round_to(1.0 / (1.0 + exp(-z)), 1e4);
    out->n_churn_factors = top_factors(cand, n, out->churn_factors);
}

void scores_compute(const state_config_t *cfg, const expr_value_t *values, state_scores_t *out)
{
    memset(out, 0, sizeof *out);
    out->computed = true;
    compute_value(cfg, values, out);
    out->trend = compute_trend(cfg, values);
    compute_churn(cfg, values, out);
}

void scores_update(customer_t *c, const state_config_t *cfg, expr_value_t *values)
{
    static const char *const tiers[] = {"A", "B", "C"};
    scores_compute(cfg, values, &c->scores);
    const char *trend = state_trend_name(c->scores.trend);
    values[FEATURE_VALUE] = expr_number(c->scores.value);
    values[FEATURE_CHURN_RISK] = expr_number(c->scores.churn_risk);
    values[FEATURE_TIER] = expr_string(tiers[c->scores.tier - 'A'], 1);
    values[FEATURE_TREND] = expr_string(trend, strlen(trend));
}

/* ------------------------------------------------------------------------------------------
 * The model file
 * ------------------------------------------------------------------------------------------ */

typedef struct {
    const char *source;
    char *err;
    size_t errlen;
    state_config_t *cfg;
} loader_t;

static int fail(loader_t *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The one setter of err: "<source>: <key>: <problem>". Returns -1. */
static int fail(loader_t *l, const char *fmt, ...)
{
    if (l->err && l->errlen) {
        int n = snprintf(l->err, l->errlen, "%s: ", l->source);
        if (n >= 0 && (size_t)n < l->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(l->err + n, l->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return -1;
}

static int get_number(loader_t *l, const cJSON *item, const char *path, double min, double max,
                      double *out)
{
    if (!cJSON_IsNumber(item) || !(item->valuedouble >= min && item->valuedouble <= max))
        return fail(l, "%s: must be a number in [%g, %g]", path, min, max);
    *out = item->valuedouble;
    return 0;
}

static int expect_object(loader_t *l, const cJSON *item, const char *path)
{
    if (!cJSON_IsObject(item)) return fail(l, "%s: must be an object", path);
    /* cJSON keeps both copies of a repeated key; which one a reader takes is unclear. */
    for (const cJSON *a = item->child; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (strcmp(a->string, b->string) == 0)
                return fail(l, "%s.%s: given twice", path, a->string);
    return 0;
}

static int load_support_reasons(loader_t *l, const cJSON *item)
{
    state_config_t *cfg = l->cfg;
    int n = cJSON_GetArraySize(item);
    if (!cJSON_IsArray(item) || n > STATE_SUPPORT_REASONS_MAX)
        return fail(l, "support_reasons: must be an array of at most %d strings",
                    STATE_SUPPORT_REASONS_MAX);
    /* Whole slots are rewritten, so that equal configs are equal bytes (a test compares them). */
    memset(cfg->support_reasons, 0, sizeof cfg->support_reasons);
    cfg->n_support_reasons = n;
    for (int i = 0; i < n; i++) {
        const cJSON *s = cJSON_GetArrayItem(item, i);
        if (!cJSON_IsString(s) || !s->valuestring[0] ||
            strlen(s->valuestring) > EVENT_SHORT_TEXT_MAX)
            return fail(l, "support_reasons[%d]: must be a string of 1-%d bytes", i,
                        EVENT_SHORT_TEXT_MAX);
        strcpy(cfg->support_reasons[i], s->valuestring);
    }
    return 0;
}

static int load_channel_cost(loader_t *l, const cJSON *item)
{
    char path[96];
    if (expect_object(l, item, "channel_cost") < 0) return -1;
    for (const cJSON *e = item->child; e; e = e->next) {
        event_channel_t ch;
        snprintf(path, sizeof path, "channel_cost.%.60s", e->string);
        if (!event_channel_from_name(e->string, &ch)) return fail(l, "%s: unknown channel", path);
        if (get_number(l, e, path, 0, COST_MAX, &l->cfg->channel_cost[ch]) < 0) return -1;
    }
    return 0;
}

static int load_value_weights(loader_t *l, const cJSON *item)
{
    state_config_t *cfg = l->cfg;
    const struct {
        const char *name;
        double *weight;
    } terms[] = {
        {"revenue_12m", &cfg->value_revenue_weight},
        {"margin_12m", &cfg->value_margin_weight},
        {"orders_12m", &cfg->value_orders_weight},
        {"cost_to_serve_12m", &cfg->value_cost_weight},
    };
    char path[96];
    if (expect_object(l, item, "value.weights") < 0) return -1;
    for (const cJSON *e = item->child; e; e = e->next) {
        double *weight = NULL;
        snprintf(path, sizeof path, "value.weights.%.60s", e->string);
        for (int i = 0; i < 4; i++)
            if (strcmp(e->string, terms[i].name) == 0) weight = terms[i].weight;
        if (!weight)
            return fail(l,
                        "%s: not a value term (revenue_12m, margin_12m, orders_12m, "
                        "cost_to_serve_12m: value is channel-neutral)",
                        path);
        if (get_number(l, e, path, -WEIGHT_MAX, WEIGHT_MAX, weight) < 0) return -1;
    }
    return 0;
}

static int load_value(loader_t *l, const cJSON *item)
{
    if (expect_object(l, item, "value") < 0) return -1;
    for (const cJSON *e = item->child; e; e = e->next) {
        if (strcmp(e->string, "weights") == 0) {
            if (load_value_weights(l, e) < 0) return -1;
        } else if (strcmp(e->string, "default_margin_rate") == 0) {
            if (get_number(l, e, "value.default_margin_rate", 0, 1,
                           &l->cfg->value_default_margin_rate) < 0)
                return -1;
        } else {
            return fail(l, "value.%.60s: unknown key", e->string);
        }
    }
    return 0;
}

/* An object of named numbers, each landing in its own field. */
static int load_pairs(loader_t *l, const cJSON *item, const char *section, const char *name1,
                      double *out1, const char *name2, double *out2, double min, double max)
{
    char path[96];
    if (expect_object(l, item, section) < 0) return -1;
    for (const cJSON *e = item->child; e; e = e->next) {
        snprintf(path, sizeof path, "%s.%.60s", section, e->string);
        double *out = strcmp(e->string, name1) == 0   ? out1
                      : strcmp(e->string, name2) == 0 ? out2
                                                      : NULL;
        if (!out) return fail(l, "%s: unknown key (%s or %s)", path, name1, name2);
        if (get_number(l, e, path, min, max, out) < 0) return -1;
    }
    return 0;
}

/* One churn term: a weight, or {"weight": w, "center": c, "max": m}. */
static int load_churn_term(loader_t *l, const cJSON *e, const char *path, double *weight,
                           double *center, double *max)
{
    char sub[128];
    *center = 0;
    *max = INFINITY;
    if (cJSON_IsNumber(e)) return get_number(l, e, path, -WEIGHT_MAX, WEIGHT_MAX, weight);
    if (!cJSON_IsObject(e))
        return fail(l, "%s: must be a number or {\"weight\", \"center\", \"max\"}", path);
    if (expect_object(l, e, path) < 0) return -1;
    if (!cJSON_GetObjectItemCaseSensitive(e, "weight")) return fail(l, "%s.weight: missing", path);
    for (const cJSON *k = e->child; k; k = k->next) {
        snprintf(sub, sizeof sub, "%s.%.30s", path, k->string);
        double *out = strcmp(k->string, "weight") == 0   ? weight
                      : strcmp(k->string, "center") == 0 ? center
                      : strcmp(k->string, "max") == 0    ? max
                                                         : NULL;
        if (!out) return fail(l, "%s: unknown key (weight, center or max)", sub);
        if (get_number(l, k, sub, -WEIGHT_MAX * 1e3, WEIGHT_MAX * 1e3, out) < 0) return -1;
    }
    return 0;
}

static int load_churn_weights(loader_t *l, const cJSON *item)
{
    char path[96];
    if (expect_object(l, item, "churn.weights") < 0) return -1;
    l->cfg->n_churn_terms = 0;
    for (const cJSON *e = item->child; e; e = e->next) {
        expr_feature_t f;
        double weight = 0, center = 0, max = INFINITY;
        snprintf(path, sizeof path, "churn.weights.%.60s", e->string);
        if (feature_find(e->string, strlen(e->string), &f) < 0)
            return fail(l, "%s: unknown feature", path);
        if (f.type != EXPR_NUMBER) return fail(l, "%s: not a number feature", path);
        if (f.index == FEATURE_CHURN_RISK)
            return fail(l, "%s: the churn model cannot read its own output", path);
        if (l->cfg->n_churn_terms == STATE_CHURN_TERMS_MAX)
            return fail(l, "%s: more than %d terms", path, STATE_CHURN_TERMS_MAX);
        if (load_churn_term(l, e, path, &weight, &center, &max) < 0) return -1;
        add_churn_term(l->cfg, f.index, weight, center, max);
    }
    return 0;
}

static int load_churn(loader_t *l, const cJSON *item)
{
    if (expect_object(l, item, "churn") < 0) return -1;
    for (const cJSON *e = item->child; e; e = e->next) {
        if (strcmp(e->string, "bias") == 0) {
            if (get_number(l, e, "churn.bias", -BIAS_MAX, BIAS_MAX, &l->cfg->churn_bias) < 0)
                return -1;
        } else if (strcmp(e->string, "weights") == 0) {
            if (load_churn_weights(l, e) < 0) return -1;
        } else {
            return fail(l, "churn.%.60s: unknown key", e->string);
        }
    }
    return 0;
}

static int load_section(loader_t *l, const cJSON *e)
{
    state_config_t *cfg = l->cfg;
    const char *name = e->string;
    if (strcmp(name, "support_reasons") == 0) return load_support_reasons(l, e);
    if (strcmp(name, "channel_cost") == 0) return load_channel_cost(l, e);
    if (strcmp(name, "value") == 0) return load_value(l, e);
    if (strcmp(name, "tiers") == 0)
        return load_pairs(l, e, "tiers", "A", &cfg->tier_a, "B", &cfg->tier_b, -1e15, 1e15);
    if (strcmp(name, "trend") == 0)
        return load_pairs(l, e, "trend", "rising", &cfg->trend_rising, "falling",
                          &cfg->trend_falling, -1, 1e6);
    if (strcmp(name, "churn") == 0) return load_churn(l, e);
    return fail(l, "%.60s: unknown key", name);
}

/* Checks the keys against each other, once all are read. */
static int check_model(loader_t *l)
{
    const state_config_t *cfg = l->cfg;
    if (cfg->tier_a < cfg->tier_b)
        return fail(l, "tiers.A: must be at least tiers.B (%g)", cfg->tier_b);
    if (!(cfg->trend_falling <= 0 && cfg->trend_rising >= 0 &&
          cfg->trend_falling < cfg->trend_rising))
        return fail(l, "trend: falling must be <= 0 <= rising, and below it");
    return 0;
}

int scores_model_parse(const char *json, size_t len, const char *source, state_config_t *cfg,
                       char *err, size_t errlen)
{
    state_config_t next;
    loader_t l = {.source = source, .err = err, .errlen = errlen, .cfg = &next};
    const char *end = NULL;
    scores_config_init(&next);
    /* Models are written by people, not peers, but keep cJSON off its trailing-comma bug
     * (see event.c): it only bites a buffer without a NUL, so parse a NUL-terminated copy. */
    char *text = malloc(len + 1);
    if (!text) return fail(&l, "out of memory");
    memcpy(text, json, len);
    text[len] = '\0';
    cJSON *root = cJSON_ParseWithOpts(text, &end, true);
    int rc;
    if (!root)
        rc = fail(&l, "malformed JSON near offset %zu", end ? (size_t)(end - text) : (size_t)0);
    else if (expect_object(&l, root, "(top level)") < 0)
        rc = -1;
    else {
        rc = 0;
        for (const cJSON *e = root->child; e && rc == 0; e = e->next)
            rc = load_section(&l, e);
        if (rc == 0) rc = check_model(&l);
    }
    cJSON_Delete(root);
    free(text);
    if (rc == 0)
        memcpy(cfg, &next, sizeof next); /* with its padding: equal configs compare equal */
    return rc;
}

int scores_model_load(const char *path, state_config_t *cfg, char *err, size_t errlen)
{
    loader_t l = {.source = path, .err = err, .errlen = errlen};
    FILE *f = fopen(path, "rb");
    if (!f) return fail(&l, "cannot open: %s", strerror(errno));
    char *buf = malloc(MODEL_FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, MODEL_FILE_MAX + 1, f) : 0;
    int read_error = ferror(f);
    fclose(f);
    int rc;
    if (!buf)
        rc = fail(&l, "out of memory");
    else if (read_error)
        rc = fail(&l, "read error");
    else if (n > MODEL_FILE_MAX)
        rc = fail(&l, "larger than %d bytes", MODEL_FILE_MAX);
    else
        rc = scores_model_parse(buf, n, path, cfg, err, errlen);
    free(buf);
    return rc;
}
