/* wallboard.c - the live queue for supervisors. See wallboard.h.
 *
 * The reply of gw_queues (gwstore.c) is turned into one JSON text per queue and per agent
 * once per interval; each supervisor's message is then assembled from the texts of its
 * scope, so a hundred supervisors cost one Redis call and a hundred concatenations. */
#include "wallboard.h"

#include "gwstore.h"
#include "jsonw.h"
#include "log.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_QUEUES 128
#define MINUTES 60
#define MAX_AGENTS 20000

typedef struct {
    char name[AUTH_MAX_ID + 1];
    int64_t minute[MINUTES]; /* the minute (ms / 60000) each slot counts */
    unsigned count[MINUTES];
} alert_series_t;

typedef struct {
    char name[AUTH_MAX_ID + 1];
    char *json;
} queue_text_t;

typedef struct {
    char *json;
    char queues[8][AUTH_MAX_ID + 1]; /* the first queues of the agent, for scoping */
    int n_queues;
} agent_text_t;

struct wallboard {
    gw_t *gw;
    uv_timer_t timer;
    bool in_flight;
    bool closing;
    queue_text_t queues[MAX_QUEUES];
    size_t n_queues;
    agent_text_t *agents;
    size_t n_agents;
    char *full; /* the unscoped message, built once per interval */
    size_t full_len;
    bool have_snapshot;
    char time[40];
    alert_series_t series[MAX_QUEUES + 1]; /* the last one: alerts without a queue */
    size_t n_series;
};

/* ------------------------------------------------------------------------------------------
 * Alerts per minute
 * ---------------------------------------------------------------------------------------- */

static alert_series_t *series_for(wallboard_t *wb, const char *queue)
{
    if (!queue || !queue[0])
        return &wb->series[MAX_QUEUES];
    for (size_t i = 0; i < wb->n_series; i++)
        if (strcmp(wb->series[i].name, queue) == 0)
            return &wb->series[i];
    if (wb->n_series == MAX_QUEUES)
        return &wb->series[MAX_QUEUES];
    alert_series_t *s = &wb->series[wb->n_series++];
    snprintf(s->name, sizeof s->name, "%s", queue);
    return s;
}

void wallboard_count_alert(gw_t *gw, const char *queue)
{
    if (!gw->wallboard)
        return;
    alert_series_t *s = series_for(gw->wallboard, queue);
    int64_t minute = gw_now_ms() / 60000;
    int slot = (int)(minute % MINUTES);
    if (s->minute[slot] != minute) {
        s->minute[slot] = minute;
        s->count[slot] = 0;
    }
    s->count[slot]++;
}

/* Adds series s to sum (oldest minute first). */
static void series_add(const alert_series_t *s, int64_t now_minute, unsigned *sum)
{
    for (int k = 0; k < MINUTES; k++) {
        int64_t minute = now_minute - (MINUTES - 1) + k;
        int slot = (int)(minute % MINUTES);
        if (s->minute[slot] == minute)
            sum[k] += s->count[slot];
    }
}

/* ------------------------------------------------------------------------------------------
 * The reply, turned into texts
 * ---------------------------------------------------------------------------------------- */

static double service_level(const gateway_config_t *cfg, double answered, double within,
                            double abandoned, double abandoned_within)
{
    double offered = answered;
    if (strcmp(cfg->service_level_formula, "offered") == 0)
        offered = answered + abandoned;
    else if (strcmp(cfg->service_level_formula, "offered_minus_short_abandons") == 0)
        offered = answered + abandoned - abandoned_within;
    return offered > 0 ? within / offered : NAN;
}

static void add_service_level(cJSON *o, const char *key, double sl)
{
    if (isnan(sl))
        cJSON_AddNullToObject(o, key);
    else
        cJSON_AddNumberToObject(o, key, round(sl * 1000) / 1000);
}

static long long integer_of(const redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type == REDIS_REPLY_STRING)
        return strtoll(r->str, NULL, 10);
    return 0;
}

typedef struct {
    cJSON *item;
    double value;
    int64_t since;
} waiting_t;

static int by_value_then_wait(const void *a, const void *b)
{
    const waiting_t *x = a, *y = b;
    if (x->value != y->value)
        return x->value < y->value ? 1 : -1;
    return (x->since > y->since) - (x->since < y->since);
}

/* The waiting contacts of one queue, in the suggested answer order. */
static cJSON *waiting_contacts(const gateway_config_t *cfg, const redisReply *flat, int64_t now)
{
    size_t n = flat->elements / 3;
    waiting_t *w = calloc(n ? n : 1, sizeof *w);
    cJSON *out = cJSON_CreateArray();
    if (!w)
        return out;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const redisReply *info = flat->element[3 * i + 2];
        cJSON *c = info->type == REDIS_REPLY_STRING
                       ? cJSON_ParseWithLength(info->str, (size_t)info->len)
                       : NULL;
        if (!cJSON_IsObject(c)) {
            cJSON_Delete(c);
            c = cJSON_CreateObject();
            cJSON_AddStringToObject(c, "contact_id", flat->element[3 * i]->str);
        }
        int64_t since = integer_of(flat->element[3 * i + 1]);
        const cJSON *value = cJSON_GetObjectItemCaseSensitive(c, "value");
        const cJSON *tier = cJSON_GetObjectItemCaseSensitive(c, "tier");
        const cJSON *risk = cJSON_GetObjectItemCaseSensitive(c, "churn_risk");
        cJSON_AddNumberToObject(c, "wait_s", (double)((now - since) / 1000));
        cJSON *flags = cJSON_AddArrayToObject(c, "flags");
        if (cJSON_IsString(tier) && strcmp(tier->valuestring, "A") == 0)
            cJSON_AddItemToArray(flags, cJSON_CreateString("vip"));
        if (cJSON_IsNumber(risk) && risk->valuedouble >= cfg->at_risk_churn)
            cJSON_AddItemToArray(flags, cJSON_CreateString("at_risk"));
        w[k++] = (waiting_t){c, cJSON_IsNumber(value) ? value->valuedouble : 0, since};
    }
    qsort(w, k, sizeof *w, by_value_then_wait);
    for (size_t i = 0; i < k; i++) {
        cJSON_AddNumberToObject(w[i].item, "rank", (double)(i + 1));
        cJSON_AddItemToArray(out, w[i].item);
    }
    free(w);
    return out;
}

/* Per queue: agents by state, from the agents' JSON. */
static void add_agent_states(cJSON *q, const char *queue, cJSON *const *agents, size_t n)
{
    static const char *states[] = {"available", "busy", "wrapup", "away", "offline"};
    int counts[5] = {0};
    for (size_t i = 0; i < n; i++) {
        const cJSON *qs = cJSON_GetObjectItemCaseSensitive(agents[i], "queues");
        const cJSON *state = cJSON_GetObjectItemCaseSensitive(agents[i], "state");
        bool serves = false;
        const cJSON *name;
        cJSON_ArrayForEach(name, qs)
        {
            if (cJSON_IsString(name) && strcmp(name->valuestring, queue) == 0)
                serves = true;
        }
        for (int s = 0; serves && cJSON_IsString(state) && s < 5; s++)
            if (strcmp(state->valuestring, states[s]) == 0)
                counts[s]++;
    }
    cJSON *by = cJSON_AddObjectToObject(q, "agents");
    for (int s = 0; s < 5; s++)
        cJSON_AddNumberToObject(by, states[s], counts[s]);
}

static cJSON *queue_object(const gateway_config_t *cfg, const redisReply *r, int64_t now,
                           cJSON *const *agents, size_t n_agents)
{
    const redisReply *waiting = r->element[3], *recent = r->element[4], *minutes = r->element[5];
    cJSON *q = cJSON_CreateObject();
    cJSON_AddStringToObject(q, "name", r->element[0]->str);
    cJSON_AddNumberToObject(q, "waiting", (double)integer_of(r->element[1]));
    long long oldest = integer_of(r->element[2]);
    cJSON_AddNumberToObject(q, "longest_wait_s", oldest < 0 ? 0 : (double)((now - oldest) / 1000));
    double c[4];
    for (int i = 0; i < 4; i++)
        c[i] = (double)integer_of(recent->element[i]);
    cJSON_AddNumberToObject(q, "answered_15m", c[0]);
    cJSON_AddNumberToObject(q, "answered_within_15m", c[1]);
    cJSON_AddNumberToObject(q, "abandoned_15m", c[2]);
    cJSON_AddNumberToObject(q, "abandoned_within_15m", c[3]);
    add_service_level(q, "service_level", service_level(cfg, c[0], c[1], c[2], c[3]));
    cJSON_AddItemToObject(q, "contacts", waiting_contacts(cfg, waiting, now));
    add_agent_states(q, r->element[0]->str, agents, n_agents);
    /* The last hour, oldest minute first. */
    cJSON *hour = cJSON_AddArrayToObject(q, "history");
    for (int m = MINUTES - 1; m >= 0; m--) {
        double v[4];
        for (int i = 0; i < 4; i++)
            v[i] = (double)integer_of(minutes->element[m * 4 + i]);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "minutes_ago", m);
        cJSON_AddNumberToObject(e, "answered", v[0]);
        cJSON_AddNumberToObject(e, "abandoned", v[2]);
        add_service_level(e, "service_level", service_level(cfg, v[0], v[1], v[2], v[3]));
        cJSON_AddItemToArray(hour, e);
    }
    return q;
}

static bool queue_reply_ok(const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 6 || r->element[0]->type != REDIS_REPLY_STRING)
        return false;
    return r->element[3]->type == REDIS_REPLY_ARRAY && r->element[3]->elements % 3 == 0 &&
           r->element[4]->type == REDIS_REPLY_ARRAY && r->element[4]->elements == 4 &&
           r->element[5]->type == REDIS_REPLY_ARRAY && r->element[5]->elements == 4 * MINUTES &&
           r->element[0]->len <= AUTH_MAX_ID;
}

static void forget_texts(wallboard_t *wb)
{
    for (size_t i = 0; i < wb->n_queues; i++)
        free(wb->queues[i].json);
    wb->n_queues = 0;
    for (size_t i = 0; i < wb->n_agents; i++)
        free(wb->agents[i].json);
    free(wb->agents);
    wb->agents = NULL;
    wb->n_agents = 0;
    free(wb->full);
    wb->full = NULL;
}

/* Agents: parsed (for the per-queue counts) and kept as texts (for the messages). */
static size_t take_agents(wallboard_t *wb, const redisReply *flat, cJSON **parsed)
{
    size_t n = flat->elements / 2;
    if (n > MAX_AGENTS)
        n = MAX_AGENTS;
    wb->agents = calloc(n ? n : 1, sizeof *wb->agents);
    size_t k = 0;
    for (size_t i = 0; wb->agents && i < n; i++) {
        const redisReply *v = flat->element[2 * i + 1];
        cJSON *a = v->type == REDIS_REPLY_STRING ? cJSON_ParseWithLength(v->str, (size_t)v->len)
                                                 : NULL;
        if (!cJSON_IsObject(a)) {
            cJSON_Delete(a);
            continue;
        }
        agent_text_t *t = &wb->agents[k];
        if (!(t->json = cJSON_PrintUnformatted(a))) {
            cJSON_Delete(a);
            continue;
        }
        const cJSON *q;
        cJSON_ArrayForEach(q, cJSON_GetObjectItemCaseSensitive(a, "queues"))
        {
            if (cJSON_IsString(q) && t->n_queues < 8)
                snprintf(t->queues[t->n_queues++], sizeof t->queues[0], "%s", q->valuestring);
        }
        parsed[k++] = a;
    }
    wb->n_agents = k;
    return k;
}

static void take_reply(gw_t *gw, const redisReply *reply)
{
    wallboard_t *wb = gw->wallboard;
    forget_texts(wb);
    int64_t now = gw_now_ms();
    const redisReply *queues = reply->element[0], *agents = reply->element[1];
    size_t n_agents_max = agents->elements / 2 < MAX_AGENTS ? agents->elements / 2 : MAX_AGENTS;
    cJSON **parsed = calloc(n_agents_max ? n_agents_max : 1, sizeof *parsed);
    size_t n_agents = parsed ? take_agents(wb, agents, parsed) : 0;
    for (size_t i = 0; i < queues->elements && wb->n_queues < MAX_QUEUES; i++) {
        const redisReply *r = queues->element[i];
        if (!queue_reply_ok(r))
            continue;
        cJSON *q = queue_object(&gw->cfg, r, now, parsed, n_agents);
        char *text = cJSON_PrintUnformatted(q);
        cJSON_Delete(q);
        if (!text)
            continue;
        queue_text_t *t = &wb->queues[wb->n_queues++];
        snprintf(t->name, sizeof t->name, "%s", r->element[0]->str);
        t->json = text;
    }
    for (size_t i = 0; i < n_agents; i++)
        cJSON_Delete(parsed[i]);
    free(parsed);
    time_t secs = (time_t)(now / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(wb->time, sizeof wb->time, "%Y-%m-%dT%H:%M:%SZ", &tm);
    wb->have_snapshot = true;
}

/* ------------------------------------------------------------------------------------------
 * Messages
 * ---------------------------------------------------------------------------------------- */

static bool scope_has(const auth_claims_t *c, const char *queue)
{
    if (c->n_queues == 0)
        return true;
    for (size_t i = 0; i < c->n_queues; i++)
        if (strcmp(c->queues[i], queue) == 0)
            return true;
    return false;
}

static bool agent_in_scope(const auth_claims_t *c, const agent_text_t *a)
{
    if (c->n_queues == 0)
        return true;
    for (int i = 0; i < a->n_queues; i++)
        if (scope_has(c, a->queues[i]))
            return true;
    return false;
}

static const char *formula_definition(const char *formula)
{
    if (strcmp(formula, "answered") == 0)
        return "answered within threshold / answered";
    if (strcmp(formula, "offered") == 0)
        return "answered within threshold / (answered + abandoned)";
    return "answered within threshold / (answered + abandoned - abandoned within threshold)";
}

/* The queue message for scope c; returns a malloc'd text and its length, or NULL. */
static char *build_message(gw_t *gw, const auth_claims_t *c, size_t *len)
{
    wallboard_t *wb = gw->wallboard;
    size_t cap = 4096;
    for (size_t i = 0; i < wb->n_queues; i++)
        cap += strlen(wb->queues[i].json) + 1;
    for (size_t i = 0; i < wb->n_agents; i++)
        cap += strlen(wb->agents[i].json) + 1;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    jsonw_t w;
    jsonw_init(&w, buf, cap);
    jsonw_object_begin(&w);
    jsonw_key(&w, "type");
    jsonw_string(&w, "queue");
    jsonw_key(&w, "time");
    jsonw_string(&w, wb->time);
    jsonw_key(&w, "service_level");
    jsonw_object_begin(&w);
    jsonw_key(&w, "formula");
    jsonw_string(&w, gw->cfg.service_level_formula);
    jsonw_key(&w, "definition");
    jsonw_string(&w, formula_definition(gw->cfg.service_level_formula));
    jsonw_key(&w, "threshold_s");
    jsonw_int(&w, gw->cfg.service_level_threshold_s);
    jsonw_key(&w, "target");
    jsonw_number(&w, gw->cfg.service_level_target);
    jsonw_object_end(&w);
    jsonw_key(&w, "queues");
    jsonw_array_begin(&w);
    for (size_t i = 0; i < wb->n_queues; i++)
        if (scope_has(c, wb->queues[i].name))
            jsonw_raw(&w, wb->queues[i].json, strlen(wb->queues[i].json));
    jsonw_array_end(&w);
    jsonw_key(&w, "agents");
    jsonw_array_begin(&w);
    for (size_t i = 0; i < wb->n_agents; i++)
        if (agent_in_scope(c, &wb->agents[i]))
            jsonw_raw(&w, wb->agents[i].json, strlen(wb->agents[i].json));
    jsonw_array_end(&w);
    unsigned per_minute[MINUTES] = {0};
    int64_t now_minute = gw_now_ms() / 60000;
    for (size_t i = 0; i < wb->n_series; i++)
        if (scope_has(c, wb->series[i].name))
            series_add(&wb->series[i], now_minute, per_minute);
    if (c->n_queues == 0)
        series_add(&wb->series[MAX_QUEUES], now_minute, per_minute);
    jsonw_key(&w, "alerts_per_minute");
    jsonw_array_begin(&w);
    for (int k = 0; k < MINUTES; k++)
        jsonw_int(&w, per_minute[k]);
    jsonw_array_end(&w);
    jsonw_object_end(&w);
    long n = jsonw_finish(&w);
    if (n < 0) {
        free(buf);
        return NULL;
    }
    *len = (size_t)n;
    return buf;
}

static void send_to(session_t *s, const auth_claims_t *c, void *data)
{
    gw_t *gw = data;
    wallboard_t *wb = gw->wallboard;
    if (c->n_queues == 0) {
        if (!wb->full)
            wb->full = build_message(gw, c, &wb->full_len);
        if (wb->full)
            session_send(s, wb->full, wb->full_len);
        return;
    }
    size_t len;
    char *msg = build_message(gw, c, &len);
    if (msg)
        session_send(s, msg, len);
    free(msg);
}

void wallboard_greet(gw_t *gw, session_t *s)
{
    /* Without a snapshot yet, the next interval brings one. */
    if (gw->wallboard && gw->wallboard->have_snapshot)
        send_to(s, session_claims(s), gw);
}

/* ------------------------------------------------------------------------------------------
 * The interval
 * ---------------------------------------------------------------------------------------- */

static void on_queues(void *data, const redisReply *reply)
{
    wallboard_t *wb = data;
    gw_t *gw = wb->gw;
    wb->in_flight = false;
    if (wb->closing) {
        forget_texts(wb);
        free(wb);
        return;
    }
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_ARRAY ||
        reply->element[1]->type != REDIS_REPLY_ARRAY) {
        log_warn("gateway: cannot read the live queue: %s",
                 reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "no reply");
        return;
    }
    take_reply(gw, reply);
    sessions_each_supervisor(gw, send_to, gw);
}

static void on_interval(uv_timer_t *timer)
{
    gw_t *gw = timer->data;
    wallboard_t *wb = gw->wallboard;
    if (wb->in_flight || sessions_supervisors(gw) == 0)
        return;
    wb->in_flight = true;
    if (gwstore_queues(gw->redis, gw_now_ms(), (unsigned)gw->cfg.max_waiting_listed,
                       gw->cfg.service_level_threshold_s * 1000, on_queues, wb) != 0)
        wb->in_flight = false;
}

int wallboard_start(gw_t *gw)
{
    wallboard_t *wb = calloc(1, sizeof *wb);
    if (!wb)
        return -1;
    wb->gw = gw;
    gw->wallboard = wb;
    uv_timer_init(gw->loop, &wb->timer);
    wb->timer.data = gw;
    uv_timer_start(&wb->timer, on_interval, 0, (uint64_t)gw->cfg.queue_interval_ms);
    return 0;
}

static void on_timer_closed(uv_handle_t *handle)
{
    wallboard_t *wb = handle->data;
    if (wb->in_flight) {
        wb->closing = true; /* freed by the reply (Redis closes after us) */
        return;
    }
    forget_texts(wb);
    free(wb);
}

void wallboard_stop(gw_t *gw)
{
    wallboard_t *wb = gw->wallboard;
    if (!wb)
        return;
    gw->wallboard = NULL;
    wb->timer.data = wb;
    uv_close((uv_handle_t *)&wb->timer, on_timer_closed);
}
