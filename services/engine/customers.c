/* customers.c - customer documents, scores, rules and alerts. See customers.h. */
#include "customers.h"

#include "feature.h"
#include "jsonw.h"
#include "log.h"
#include "rules.h"
#include "scores.h"
#include "state.h"
#include "store.h"
#include "timefmt.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TIMER_RULES_MS 1000 /* each waiting customer's timer rules are checked this often, */
#define TIMER_SLICE_MS 20   /* in slices this far apart, so that no check holds the loop */
#define RULES_POLL_MS 1000
#define ALERT_MAX (16 * 1024)
#define REASONS_MAX 8

struct customers {
    engine_t *engine;
    state_config_t model;
    rules_t *rules;
    apply_result_t last_result; /* of the latest apply, read by the on_applied hook after it */
    expr_value_t values[FEATURE_COUNT]; /* the features of the customer being handled */
    uv_timer_t timer_rules;
    bool pass_running;        /* a pass of the timer check over the waiting customers */
    uint64_t pass_started_ms; /* loop time */
    size_t pass_slice;        /* customers per slice of that pass */
    int64_t pass_now_ms;      /* wall clock of the slice under way */
    uv_fs_poll_t rules_watch;
    bool watching;
    metrics_counter_t *alerts_by_rule[RULES_MAX];
    metrics_t *metrics;
    char alert[ALERT_MAX];
};

/* ------------------------------------------------------------------------------------------
 * The document model
 * ---------------------------------------------------------------------------------------- */

/* Customer documents (a customer_t, ~1.2 KB, plus its rings' arrays on the heap; one per
 * customer cached: 100,000 in the benchmark) come from big chunks backed by transparent huge
 * pages where the kernel allows them (MADV_HUGEPAGE), and freed ones are reused. From malloc,
 * each new customer cost page faults, a large part of the engine's CPU on a VM, and
 * fragmented the heap that the batch writes' buffers share. Without huge pages (measured:
 * MADV_NOHUGEPAGE) the faults cost more than zeroing the huge pages does. A slot is all zero
 * when handed out: fresh from mmap it is already, a reused one is cleared (customer_release,
 * when it was freed). One process-wide pool: the engine has one loop thread. The chunks are
 * kept (the cache is bounded). Sanitizer builds use calloc, so that ASan still sees every
 * document's lifetime. */
#if defined(__SANITIZE_ADDRESS__)
#define CUSTOMER_POOL 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CUSTOMER_POOL 0
#endif
#endif
#ifndef CUSTOMER_POOL
#define CUSTOMER_POOL 1
#endif

#if CUSTOMER_POOL
#include <sys/mman.h>

#define POOL_CHUNK_BYTES (64u * 1024 * 1024)
#define POOL_SLOT_BYTES ((sizeof(customer_t) + 63) & ~(size_t)63)

static struct {
    void *free_slots; /* freed documents, linked through their first bytes */
    char *next;       /* the rest of the current chunk */
    size_t left;
} pool;

static void *pool_alloc(void)
{
    void *slot = pool.free_slots;
    if (slot) {
        pool.free_slots = *(void **)slot;
        *(void **)slot = NULL; /* the rest was cleared by customer_release */
        return slot;
    }
    if (pool.left < POOL_SLOT_BYTES) {
        void *chunk = mmap(NULL, POOL_CHUNK_BYTES, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (chunk == MAP_FAILED)
            return NULL;
#ifdef MADV_HUGEPAGE
        madvise(chunk, POOL_CHUNK_BYTES, MADV_HUGEPAGE); /* advice only: may be refused */
#endif
        pool.next = chunk;
        pool.left = POOL_CHUNK_BYTES;
    }
    slot = pool.next;
    pool.next += POOL_SLOT_BYTES;
    pool.left -= POOL_SLOT_BYTES;
    return slot;
}

/* slot: all zero bytes (customer_release) */
static void pool_free(void *slot)
{
    if (!slot)
        return;
    *(void **)slot = pool.free_slots;
    pool.free_slots = slot;
}
#else
static void *pool_alloc(void)
{
    return calloc(1, sizeof(customer_t));
}

static void pool_free(void *slot)
{
    free(slot);
}
#endif

static void customer_destroy(void *doc)
{
    if (doc)
        customer_release(doc);
    pool_free(doc);
}

static void *customer_create(const char *subject, void *ctx)
{
    customer_t *c = pool_alloc();
    if (c && customer_init_zeroed(c, subject) < 0) {
        customer_destroy(c);
        return NULL;
    }
    return c;
}

static int customer_load(void *doc, const char *json, size_t len, char *err, size_t errlen)
{
    return customer_from_json(doc, json, len, err, errlen) < 0 ? -1 : 0;
}

static int customer_apply_event(void *doc, const event_t *ev, int64_t offset, void *ctx)
{
    engine_t *e = ctx;
    customers_t *cs = e->customers;
    customer_t *c = doc;
    int rc = customer_apply(c, ev, offset, &cs->model, &cs->last_result);
    if (rc == STATE_DUPLICATE)
        return DOC_DUPLICATE;
    if (rc == STATE_ENOMEM)
        return DOC_NO_MEMORY;
    if (rc < 0)
        return -1;
    /* The features as of the event, then the scores from them (written back into the
     * features, which the rules read next in customers_on_applied). */
    feature_fill(c, ev, &cs->last_result, ev->time_ms, cs->values);
    scores_update(c, &cs->model, cs->values);
    return DOC_APPLIED;
}

static int customer_serialize(const void *doc, char *buf, size_t cap, size_t *len, void *ctx)
{
    engine_t *e = ctx;
    return customer_to_json(doc, &e->customers->model, buf, cap, len) < 0 ? -1 : 0;
}

static bool customer_waiting(const void *doc)
{
    return ((const customer_t *)doc)->contact.state == STATE_CONTACT_QUEUED;
}

const doc_ops_t customer_doc_ops = {
    .kind = "customer",
    .create = customer_create,
    .load = customer_load,
    .apply = customer_apply_event,
    .serialize = customer_serialize,
    .destroy = customer_destroy,
    .key = store_customer_key,
    .timed = customer_waiting,
};

/* ------------------------------------------------------------------------------------------
 * Alerts
 * ---------------------------------------------------------------------------------------- */

static void write_value(jsonw_t *w, const expr_value_t *v)
{
    switch (v->type) {
    case EXPR_NUMBER: jsonw_number(w, v->as.number); break;
    case EXPR_STRING: jsonw_stringn(w, v->as.string.ptr, v->as.string.len); break;
    case EXPR_BOOL: jsonw_bool(w, v->as.boolean); break;
    default: jsonw_null(w); break;
    }
}

static void write_threshold(jsonw_t *w, const expr_reason_t *r)
{
    if (r->n_thresholds == 1 && strcmp(r->op, "in") != 0) {
        write_value(w, &r->thresholds[0]);
        return;
    }
    jsonw_array_begin(w);
    for (size_t i = 0; i < r->n_thresholds; i++)
        write_value(w, &r->thresholds[i]);
    jsonw_array_end(w);
}

static void write_contact(jsonw_t *w, const customer_t *c)
{
    bool in_contact = c->contact.state != STATE_CONTACT_NONE;
    bool has_agent = in_contact && c->contact.agent_id[0];
    bool has_queue = in_contact && c->contact.queue[0];
    bool has_channel = in_contact && c->contact.channel != STATE_CHANNEL_UNKNOWN;
    jsonw_key(w, "agent_id");
    jsonw_string(w, has_agent ? c->contact.agent_id : NULL);
    jsonw_key(w, "contact_id");
    jsonw_string(w, in_contact ? c->contact.id : NULL);
    jsonw_key(w, "queue");
    jsonw_string(w, has_queue ? c->contact.queue : NULL);
    jsonw_key(w, "channel");
    jsonw_string(w, has_channel ? event_channel_name((event_channel_t)c->contact.channel) : NULL);
}

static void write_scores(jsonw_t *w, const customer_t *c)
{
    const state_scores_t *s = &c->scores;
    char tier[2] = {s->tier, '\0'};
    jsonw_key(w, "scores");
    jsonw_object_begin(w);
    jsonw_key(w, "value");
    jsonw_fixed(w, s->value, 2);
    jsonw_key(w, "tier");
    jsonw_string(w, s->computed ? tier : NULL);
    jsonw_key(w, "churn_risk");
    jsonw_fixed(w, s->churn_risk, 4);
    jsonw_key(w, "trend");
    jsonw_string(w, state_trend_name(s->trend));
    jsonw_object_end(w);
}

static void write_text(jsonw_t *w, const char *key, const template_t *t,
                       const expr_value_t *values)
{
    char text[1024];
    template_render(t, values, FEATURE_COUNT, text, sizeof text, NULL);
    jsonw_key(w, key);
    jsonw_string(w, text);
}

/* Builds the alert document into cs->alert; returns its length or -1. */
static long build_alert(customers_t *cs, const rule_t *rule, const customer_t *c,
                        const char *event_id, const char *event_type, int64_t event_ms,
                        const expr_reason_t *reasons, size_t n_reasons)
{
    char id[33], now[TIMEFMT_TEXT_SIZE], at[TIMEFMT_TEXT_SIZE];
    rules_alert_id(rule->id, event_id, id);
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    timefmt_format((int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000, now, sizeof now);
    timefmt_format(event_ms, at, sizeof at);
    jsonw_t w;
    jsonw_init(&w, cs->alert, sizeof cs->alert);
    jsonw_object_begin(&w);
    jsonw_key(&w, "id");
    jsonw_string(&w, id);
    jsonw_key(&w, "time");
    jsonw_string(&w, now);
    jsonw_key(&w, "rule");
    jsonw_string(&w, rule->id);
    jsonw_key(&w, "severity");
    jsonw_string(&w, rule_severity_name(rule->severity));
    jsonw_key(&w, "customer_id");
    jsonw_string(&w, c->id);
    jsonw_key(&w, "partner");
    jsonw_bool(&w, c->is_partner);
    write_contact(&w, c);
    write_text(&w, "title", rule->title, cs->values);
    write_text(&w, "message", rule->message, cs->values);
    jsonw_key(&w, "action");
    jsonw_string(&w, rule->action);
    jsonw_key(&w, "reasons");
    jsonw_array_begin(&w);
    for (size_t i = 0; i < n_reasons; i++) {
        jsonw_object_begin(&w);
        jsonw_key(&w, "feature");
        jsonw_string(&w, reasons[i].name);
        jsonw_key(&w, "value");
        write_value(&w, reasons[i].value);
        jsonw_key(&w, "op");
        jsonw_string(&w, reasons[i].op);
        jsonw_key(&w, "threshold");
        write_threshold(&w, &reasons[i]);
        jsonw_object_end(&w);
    }
    jsonw_array_end(&w);
    write_scores(&w, c);
    jsonw_key(&w, "event_id");
    jsonw_string(&w, event_id);
    jsonw_key(&w, "event_type");
    jsonw_string(&w, event_type);
    jsonw_key(&w, "event_time");
    jsonw_string(&w, at);
    jsonw_object_end(&w);
    return jsonw_finish(&w);
}

/* Evaluates one rule against the filled features; on a firing outside the cooldown, records
 * it and (unless late) sends the alert. */
static void evaluate(customers_t *cs, int index, customer_t *c, batch_t *batch,
                     const char *event_id, const char *event_type, int64_t event_ms, bool late)
{
    const rule_t *rule = &cs->rules->rules[index];
    expr_reason_t reasons[REASONS_MAX];
    size_t n_reasons = 0;
    if (!expr_eval(rule->condition, cs->values, FEATURE_COUNT, reasons, REASONS_MAX,
                   &n_reasons))
        return;
    /* In cooldown when within cooldown_ms of the last firing on either side: an event that
     * arrives late (older than the firing) must not alert again, nor pull the window back. */
    int64_t last = customer_rule_last_fired(c, rule->id);
    if (last != STATE_TIME_NONE && llabs(event_ms - last) < rule->cooldown_ms)
        return;
    if (customer_rule_fired(c, rule->id,
                            last != STATE_TIME_NONE && last > event_ms ? last : event_ms) < 0)
        log_error("engine: cannot record the cooldown of %s for %s (out of memory)", rule->id,
                  c->id); /* the alert still goes: losing it would be worse */
    if (late)
        return;
    long len = build_alert(cs, rule, c, event_id, event_type, event_ms, reasons, n_reasons);
    if (len < 0) {
        log_error("engine: alert %s for %s does not fit in %d bytes", rule->id, c->id, ALERT_MAX);
        return;
    }
    if (pipeline_send_alert(cs->engine->pipeline, batch, c->id, cs->alert, (size_t)len) < 0) {
        log_error("engine: cannot send alert %s for %s", rule->id, c->id);
        return;
    }
    metrics_counter_inc(cs->alerts_by_rule[index]);
}

/* The event's timeline entry goes into the batch's write, pushed with the customer's
 * document in one transaction (store.h: {c:ID}:timeline). */
static void push_timeline(batch_t *batch, const customer_t *c, const event_t *ev,
                          const apply_result_t *res)
{
    char entry[512], at[TIMEFMT_TEXT_SIZE], keep[16], key[STORE_KEY_MAX];
    /* 512: a 63-byte text all escaped */
    jsonw_t w;
    timefmt_format(ev->time_ms, at, sizeof at);
    jsonw_init(&w, entry, sizeof entry);
    jsonw_object_begin(&w);
    jsonw_key(&w, "time");
    jsonw_string(&w, at);
    jsonw_key(&w, "type");
    jsonw_string(&w, event_type_name(ev->type));
    jsonw_key(&w, "text");
    jsonw_string(&w, res->timeline_text);
    jsonw_object_end(&w);
    long n = jsonw_finish(&w);
    if (res->timeline_trim) /* the list is full: keep its newest */
        snprintf(keep, sizeof keep, "%d", STATE_TIMELINE_MAX);
    else
        keep[0] = '\0';
    if (n < 0 || store_timeline_key(key, sizeof key, c->id) < 0 ||
        pipeline_queue_op(batch, STORE_OP_TIMELINE, ev->time_ms, key, keep, entry, (size_t)n) < 0)
        log_error("engine: timeline entry of %s (event %s) not written", c->id, ev->id);
}

const apply_result_t *customers_last_result(const engine_t *e)
{
    return &e->customers->last_result;
}

void customers_on_applied(pipeline_t *p, batch_t *batch, const doc_ops_t *ops, void *doc,
                          const event_t *ev, bool late, void *data)
{
    engine_t *e = data;
    customers_t *cs = e->customers;
    uint32_t bit = 1u << ev->type;
    if (ops != &customer_doc_ops)
        return;
    customer_t *c = doc; /* cs->values were filled by the apply just before */
    if (batch && cs->last_result.timeline)
        push_timeline(batch, c, ev, &cs->last_result);
    if (!cs->rules || !(cs->rules->all_triggers & bit))
        return;
    for (int i = 0; i < cs->rules->n; i++)
        if (cs->rules->rules[i].triggers & bit)
            evaluate(cs, i, c, batch, ev->id, event_type_name(ev->type), ev->time_ms, late);
}

/* "timer" rules for a customer waiting in a queue, on the wall clock. First only the features
 * their conditions read: most waiting customers match none, and this runs for each of them
 * every second. The full fill is for the alert's text. */
static void check_waiting(const doc_ops_t *ops, void *doc, void *data)
{
    customers_t *cs = data;
    customer_t *c = doc;
    if (ops != &customer_doc_ops || c->contact.state != STATE_CONTACT_QUEUED)
        return;
    const rules_t *rules = cs->rules;
    int64_t now = cs->pass_now_ms;
    feature_fill_some(c, rules->timer_features, now, cs->values);
    bool any = false;
    for (int i = 0; i < rules->n && !any; i++)
        any = (rules->rules[i].triggers & RULE_TRIGGER_TIMER) &&
              expr_eval(rules->rules[i].condition, cs->values, FEATURE_COUNT, NULL, 0, NULL);
    if (!any)
        return;
    feature_fill(c, NULL, NULL, now, cs->values);
    for (int i = 0; i < rules->n; i++)
        if (rules->rules[i].triggers & RULE_TRIGGER_TIMER)
            evaluate(cs, i, c, NULL, c->contact.id, "timer", now, false);
}

/* Every TIMER_SLICE_MS: the next slice of the pass over the waiting customers; a pass starts
 * every TIMER_RULES_MS and is cut into slices that end it before the next one is due. Tens of
 * thousands of customers left waiting would otherwise hold the loop for tens of ms at once
 * (measured: 20-63 ms at once with 17,000-26,000 of them, ~1 us each, tests/bench/README.md). */
static void on_timer_rules(uv_timer_t *timer)
{
    engine_t *e = timer->data;
    customers_t *cs = e->customers;
    if (!e->pipeline || !cs->rules || !(cs->rules->all_triggers & RULE_TRIGGER_TIMER))
        return;
    uint64_t now = uv_now(e->loop);
    if (!cs->pass_running) {
        if (now - cs->pass_started_ms < TIMER_RULES_MS)
            return;
        size_t n = pipeline_timed_pass_start(e->pipeline);
        cs->pass_running = true;
        cs->pass_started_ms = now;
        cs->pass_slice = n / (TIMER_RULES_MS / TIMER_SLICE_MS - 1) + 1;
    }
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    cs->pass_now_ms = (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
    cs->pass_running = pipeline_timed_pass_step(e->pipeline, cs->pass_slice, check_waiting, cs);
}

/* ------------------------------------------------------------------------------------------
 * Rules: load, reload, watch
 * ---------------------------------------------------------------------------------------- */

static void register_rule_metrics(customers_t *cs)
{
    for (int i = 0; i < cs->rules->n; i++) {
        char labels[64];
        snprintf(labels, sizeof labels, "rule=\"%s\"", cs->rules->rules[i].id);
        cs->alerts_by_rule[i] =
            metrics_counter(cs->metrics, "integral_engine_alerts_total", "Alerts raised, by rule.",
                            labels);
    }
}

static int load_rules(customers_t *cs, char *err, size_t errlen)
{
    const char *path = cs->engine->cfg.rules_file;
    if (!path[0])
        return 0;
    rules_t *rules = rules_load(path, &feature_resolver, err, errlen);
    if (!rules)
        return -1;
    rules_free(cs->rules);
    cs->rules = rules;
    register_rule_metrics(cs);
    log_info("rules: %d loaded from %s", rules->n, path);
    return 0;
}

void customers_reload(engine_t *e)
{
    char err[512];
    if (load_rules(e->customers, err, sizeof err) < 0)
        log_error("rules: %s; keeping the %d rule(s) in force", err,
                  e->customers->rules ? e->customers->rules->n : 0);
}

static void on_rules_changed(uv_fs_poll_t *handle, int status, const uv_stat_t *prev,
                             const uv_stat_t *curr)
{
    engine_t *e = handle->data;
    if (status == 0) {
        log_info("rules: %s changed", e->cfg.rules_file);
        customers_reload(e);
    }
}

int customers_init(engine_t *e, char *err, size_t errlen)
{
    customers_t *cs = calloc(1, sizeof *cs);
    if (!cs) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    e->customers = cs;
    cs->engine = e;
    cs->metrics = e->svc->metrics;
    scores_config_init(&cs->model);
    if (e->cfg.model_file[0] && scores_model_load(e->cfg.model_file, &cs->model, err, errlen) < 0)
        return -1;
    if (load_rules(cs, err, errlen) < 0)
        return -1;
    uv_timer_init(e->loop, &cs->timer_rules);
    cs->timer_rules.data = e;
    uv_timer_start(&cs->timer_rules, on_timer_rules, TIMER_SLICE_MS, TIMER_SLICE_MS);
    if (e->cfg.rules_file[0]) {
        uv_fs_poll_init(e->loop, &cs->rules_watch);
        cs->rules_watch.data = e;
        uv_fs_poll_start(&cs->rules_watch, on_rules_changed, e->cfg.rules_file, RULES_POLL_MS);
        cs->watching = true;
    }
    return 0;
}

static void on_customers_handle_closed(uv_handle_t *handle)
{
    customers_t *cs = handle->data;
    if (handle == (uv_handle_t *)&cs->timer_rules && cs->watching)
        return; /* the watch closes last */
    rules_free(cs->rules);
    free(cs);
}

void customers_close(engine_t *e)
{
    customers_t *cs = e->customers;
    if (!cs)
        return;
    e->customers = NULL;
    if (!uv_is_active((uv_handle_t *)&cs->timer_rules) && cs->timer_rules.loop == NULL) {
        rules_free(cs->rules);
        free(cs);
        return;
    }
    cs->timer_rules.data = cs;
    uv_close((uv_handle_t *)&cs->timer_rules, on_customers_handle_closed);
    if (cs->watching) {
        cs->rules_watch.data = cs;
        uv_close((uv_handle_t *)&cs->rules_watch, on_customers_handle_closed);
    }
}
