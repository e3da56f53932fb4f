/* sessions.c - sessions, the client protocol, agents' alert delivery. See sessions.h.
 *
 * Lifetimes: a session lives from the upgrade until its ws_conn_t closes AND no Redis reply or
 * Kafka report still refers to it (refs). An agent record lives while it has sessions or a
 * pull in flight. Everything runs on the loop thread. */
#include "sessions.h"

#include "gwstore.h"
#include "jsonw.h"
#include "log.h"
#include "timefmt.h"
#include "wallboard.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define AGENT_BUCKETS 1024
#define PULL_BATCH 200
#define MSG_MAX (64 * 1024)
#define OUTCOME_MAX 500
#define ALERT_ID_MAX 64

typedef struct agent agent_t;

struct session {
    gw_t *gw;
    ws_conn_t *ws;      /* NULL once closed */
    unsigned refs;      /* replies and reports still to come */
    bool authed, authing;
    auth_claims_t claims;
    uint64_t auth_deadline_ms;
    char last_seq[GWSTORE_SEQ_MAX]; /* agents: the last alert delivered */
    agent_t *agent;
    session_t *next_of_agent;
    session_t *prev_sup, *next_sup;
    double tokens;      /* rate limit: a token bucket */
    uint64_t tokens_at_ms;
    unsigned excess;    /* messages refused in a row by the rate limit */
};

struct agent {
    char id[AUTH_MAX_ID + 1];
    session_t *sessions;
    bool pulling, pull_again;
    agent_t *next; /* hash chain */
};

/* A supervisor's alert, kept for the snapshot of later supervisors. */
typedef struct {
    char *json;
    size_t len;
    char queue[AUTH_MAX_ID + 1]; /* "" when the alert has no queue */
} feed_entry_t;

struct sessions {
    agent_t *agents[AGENT_BUCKETS];
    session_t *supervisors; /* doubly linked */
    feed_entry_t *feed;
    size_t feed_cap, feed_next, feed_count;
    sessions_stats_t stats;
    metrics_counter_t *auth_failed[AUTH_WRONG_ROLE + 2];
    metrics_histogram_t *send_latency;
};

int64_t gw_now_ms(void)
{
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* ------------------------------------------------------------------------------------------
 * Sending
 * ---------------------------------------------------------------------------------------- */

const auth_claims_t *session_claims(const session_t *s)
{
    return &s->claims;
}

void session_send(session_t *s, const char *msg, size_t len)
{
    if (s->ws)
        ws_send_text(s->ws, msg, len); /* a full backlog closes it with 1008 (ws.c) */
}

/* {"type":"error","code":...,"message":...,"ref":...[,"alert_id":...]}: a client message
 * that was refused; alert_id (may be NULL) names the alert an ack or feedback was about. */
static void send_error_about(session_t *s, const char *code, const char *message,
                             const char *ref, const char *alert_id)
{
    char buf[512];
    jsonw_t w;
    jsonw_init(&w, buf, sizeof buf);
    jsonw_object_begin(&w);
    jsonw_key(&w, "type");
    jsonw_string(&w, "error");
    jsonw_key(&w, "code");
    jsonw_string(&w, code);
    jsonw_key(&w, "message");
    jsonw_string(&w, message);
    jsonw_key(&w, "ref");
    jsonw_string(&w, ref);
    if (alert_id) {
        jsonw_key(&w, "alert_id");
        jsonw_string(&w, alert_id);
    }
    jsonw_object_end(&w);
    long n = jsonw_finish(&w);
    if (n > 0) {
        session_send(s, buf, (size_t)n);
        s->gw->sessions->stats.errors_sent++;
    }
}

static void send_error(session_t *s, const char *code, const char *message, const char *ref)
{
    send_error_about(s, code, message, ref, NULL);
}

/* ------------------------------------------------------------------------------------------
 * Agents
 * ---------------------------------------------------------------------------------------- */

static unsigned bucket_of(const char *id)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h % AGENT_BUCKETS;
}

static agent_t *agent_find(sessions_t *ss, const char *id)
{
    for (agent_t *a = ss->agents[bucket_of(id)]; a; a = a->next)
        if (strcmp(a->id, id) == 0)
            return a;
    return NULL;
}

static agent_t *agent_get(sessions_t *ss, const char *id)
{
    agent_t *a = agent_find(ss, id);
    if (a)
        return a;
    if (!(a = calloc(1, sizeof *a)))
        return NULL;
    snprintf(a->id, sizeof a->id, "%s", id);
    unsigned b = bucket_of(id);
    a->next = ss->agents[b];
    ss->agents[b] = a;
    return a;
}

static void agent_release_if_unused(sessions_t *ss, agent_t *a)
{
    if (a->sessions || a->pulling)
        return;
    agent_t **pp = &ss->agents[bucket_of(a->id)];
    while (*pp && *pp != a)
        pp = &(*pp)->next;
    if (*pp)
        *pp = a->next;
    free(a);
}

static void agent_pull(gw_t *gw, agent_t *a);

/* The pull's lower bound: the least advanced session of the agent. */
static const char *pull_from(const agent_t *a)
{
    const char *from = NULL;
    for (const session_t *s = a->sessions; s; s = s->next_of_agent)
        if (!from || gwstore_seq_cmp(s->last_seq, from) < 0)
            from = s->last_seq;
    return from;
}

/* {"type":"alert","seq":...,"alert":<alert>}; seq NULL for supervisors (no log). Returns the
 * length written to buf, or -1. */
static long alert_message(char *buf, size_t cap, const char *seq, const char *alert, size_t len)
{
    jsonw_t w;
    jsonw_init(&w, buf, cap);
    jsonw_object_begin(&w);
    jsonw_key(&w, "type");
    jsonw_string(&w, "alert");
    if (seq) {
        jsonw_key(&w, "seq");
        jsonw_string(&w, seq);
    }
    jsonw_key(&w, "alert");
    jsonw_raw(&w, alert, len);
    jsonw_object_end(&w);
    return jsonw_finish(&w);
}

/* From when the engine raised an alert (its "time", the second member the engine writes) to
 * its handing to an agent's socket: the gateway's share of the alert latency plus Kafka's. */
static void observe_send_latency(sessions_t *ss, const char *alert, size_t len)
{
    static const char key[] = "\"time\":\"";
    const char *at = memmem(alert, len, key, sizeof key - 1);
    char text[TIMEFMT_TEXT_SIZE];
    int64_t raised;
    if (!at || (size_t)(alert + len - at) < sizeof key - 1 + TIMEFMT_TEXT_SIZE)
        return;
    memcpy(text, at + sizeof key - 1, TIMEFMT_TEXT_SIZE - 1);
    text[TIMEFMT_TEXT_SIZE - 1] = '\0';
    if (timefmt_parse(text, &raised) == 0)
        metrics_histogram_observe(ss->send_latency, (double)(gw_now_ms() - raised) / 1000.0);
}

static void deliver(session_t *s, const char *seq, const char *alert, size_t len)
{
    if (gwstore_seq_cmp(seq, s->last_seq) <= 0)
        return; /* this session has it already */
    size_t cap = len + 128;
    char *buf = malloc(cap);
    long n = buf ? alert_message(buf, cap, seq, alert, len) : -1;
    if (n > 0) {
        session_send(s, buf, (size_t)n);
        snprintf(s->last_seq, sizeof s->last_seq, "%s", seq);
        s->gw->sessions->stats.alerts_sent++;
        observe_send_latency(s->gw->sessions, alert, len);
    }
    free(buf);
}

typedef struct {
    gw_t *gw;
    agent_t *agent;
} pull_t;

static void on_pulled(void *data, bool ok, size_t n, const char *const *seqs,
                      const char *const *alerts, const size_t *lens)
{
    pull_t pull = *(pull_t *)data;
    free(data);
    agent_t *a = pull.agent;
    a->pulling = false;
    if (!ok)
        log_warn("gateway: cannot read the alert log of agent %s; retried on the next alert",
                 a->id);
    for (size_t i = 0; ok && i < n; i++)
        for (session_t *s = a->sessions; s; s = s->next_of_agent)
            deliver(s, seqs[i], alerts[i], lens[i]);
    bool more = ok && n == PULL_BATCH;
    if ((more || a->pull_again) && a->sessions && !pull.gw->stopping) {
        a->pull_again = false;
        agent_pull(pull.gw, a);
        return;
    }
    a->pull_again = false;
    agent_release_if_unused(pull.gw->sessions, a);
}

static void agent_pull(gw_t *gw, agent_t *a)
{
    if (a->pulling) {
        a->pull_again = true;
        return;
    }
    const char *from = pull_from(a);
    if (!from)
        return;
    pull_t *pull = malloc(sizeof *pull);
    if (!pull)
        return;
    *pull = (pull_t){gw, a};
    a->pulling = true;
    if (gwstore_range(gw->redis, a->id, from, PULL_BATCH, on_pulled, pull) != 0) {
        free(pull);
        a->pulling = false;
        log_warn("gateway: Redis refused reading the alert log of agent %s", a->id);
    }
}

void sessions_agent_log_changed(gw_t *gw, const char *agent)
{
    agent_t *a = agent_find(gw->sessions, agent);
    if (a && a->sessions)
        agent_pull(gw, a);
}

bool sessions_agent_connected(gw_t *gw, const char *agent)
{
    agent_t *a = agent_find(gw->sessions, agent);
    return a && a->sessions;
}

void sessions_send_to_agent(gw_t *gw, const char *agent, const char *msg, size_t len)
{
    agent_t *a = agent_find(gw->sessions, agent);
    for (session_t *s = a ? a->sessions : NULL; s; s = s->next_of_agent)
        session_send(s, msg, len);
}

static void agent_detach(sessions_t *ss, session_t *s)
{
    agent_t *a = s->agent;
    session_t **pp = &a->sessions;
    while (*pp && *pp != s)
        pp = &(*pp)->next_of_agent;
    if (*pp)
        *pp = s->next_of_agent;
    s->agent = NULL;
    ss->stats.agents--;
    agent_release_if_unused(ss, a);
}

/* ------------------------------------------------------------------------------------------
 * Supervisors
 * ---------------------------------------------------------------------------------------- */

static bool in_scope(const auth_claims_t *c, const char *queue)
{
    if (c->n_queues == 0)
        return true;
    for (size_t i = 0; queue && queue[0] && i < c->n_queues; i++)
        if (strcmp(c->queues[i], queue) == 0)
            return true;
    return false;
}

static void feed_keep(sessions_t *ss, const char *queue, const char *alert, size_t len)
{
    if (ss->feed_cap == 0)
        return;
    feed_entry_t *e = &ss->feed[ss->feed_next];
    char *copy = malloc(len);
    if (!copy)
        return;
    memcpy(copy, alert, len);
    free(e->json);
    *e = (feed_entry_t){copy, len, ""};
    snprintf(e->queue, sizeof e->queue, "%s", queue ? queue : "");
    ss->feed_next = (ss->feed_next + 1) % ss->feed_cap;
    if (ss->feed_count < ss->feed_cap)
        ss->feed_count++;
}

void sessions_supervisor_alert(gw_t *gw, const char *queue, const char *alert, size_t len)
{
    sessions_t *ss = gw->sessions;
    feed_keep(ss, queue, alert, len);
    if (!ss->supervisors)
        return;
    size_t cap = len + 64;
    char *buf = malloc(cap);
    long n = buf ? alert_message(buf, cap, NULL, alert, len) : -1;
    for (session_t *s = ss->supervisors; s && n > 0; s = s->next_sup)
        if (in_scope(&s->claims, queue))
            session_send(s, buf, (size_t)n);
    free(buf);
}

/* {"type":"feed","alerts":[...]}: the kept alerts of the supervisor's scope, oldest first. */
static void send_feed_snapshot(session_t *s)
{
    sessions_t *ss = s->gw->sessions;
    size_t cap = 64;
    for (size_t i = 0; i < ss->feed_count; i++)
        cap += ss->feed[i].len + 1;
    char *buf = malloc(cap);
    if (!buf)
        return;
    jsonw_t w;
    jsonw_init(&w, buf, cap);
    jsonw_object_begin(&w);
    jsonw_key(&w, "type");
    jsonw_string(&w, "feed");
    jsonw_key(&w, "alerts");
    jsonw_array_begin(&w);
    size_t first = (ss->feed_next + ss->feed_cap - ss->feed_count) % (ss->feed_cap ? ss->feed_cap : 1);
    for (size_t k = 0; k < ss->feed_count; k++) {
        const feed_entry_t *e = &ss->feed[(first + k) % ss->feed_cap];
        if (in_scope(&s->claims, e->queue[0] ? e->queue : NULL))
            jsonw_raw(&w, e->json, e->len);
    }
    jsonw_array_end(&w);
    jsonw_object_end(&w);
    long n = jsonw_finish(&w);
    if (n > 0)
        session_send(s, buf, (size_t)n);
    free(buf);
}

void sessions_each_supervisor(gw_t *gw, sessions_supervisor_cb cb, void *data)
{
    for (session_t *s = gw->sessions->supervisors; s; s = s->next_sup)
        cb(s, &s->claims, data);
}

size_t sessions_supervisors(const gw_t *gw)
{
    return gw->sessions->stats.supervisors;
}

static void supervisor_detach(sessions_t *ss, session_t *s)
{
    if (s->prev_sup)
        s->prev_sup->next_sup = s->next_sup;
    else
        ss->supervisors = s->next_sup;
    if (s->next_sup)
        s->next_sup->prev_sup = s->prev_sup;
    s->prev_sup = s->next_sup = NULL;
    ss->stats.supervisors--;
}

/* ------------------------------------------------------------------------------------------
 * Authentication
 * ---------------------------------------------------------------------------------------- */

static void session_unref(session_t *s)
{
    if (--s->refs == 0 && !s->ws)
        free(s);
}

static void send_welcome(session_t *s, bool gap)
{
    char buf[4096], expires[40];
    time_t exp = (time_t)s->claims.exp;
    struct tm tm;
    gmtime_r(&exp, &tm);
    strftime(expires, sizeof expires, "%Y-%m-%dT%H:%M:%SZ", &tm);
    jsonw_t w;
    jsonw_init(&w, buf, sizeof buf);
    jsonw_object_begin(&w);
    jsonw_key(&w, "type");
    jsonw_string(&w, "welcome");
    jsonw_key(&w, "role");
    jsonw_string(&w, s->claims.role == AUTH_ROLE_AGENT ? "agent" : "supervisor");
    jsonw_key(&w, "sub");
    jsonw_string(&w, s->claims.sub);
    jsonw_key(&w, "expires");
    jsonw_string(&w, expires);
    if (s->claims.role == AUTH_ROLE_SUPERVISOR) {
        jsonw_key(&w, "queues"); /* the scope; null: every queue */
        if (s->claims.n_queues == 0) {
            jsonw_null(&w);
        } else {
            jsonw_array_begin(&w);
            for (size_t i = 0; i < s->claims.n_queues; i++)
                jsonw_string(&w, s->claims.queues[i]);
            jsonw_array_end(&w);
        }
    }
    if (s->claims.role == AUTH_ROLE_AGENT) {
        jsonw_key(&w, "resume");
        jsonw_object_begin(&w);
        jsonw_key(&w, "after");
        jsonw_string(&w, s->last_seq);
        jsonw_key(&w, "gap");
        jsonw_bool(&w, gap);
        jsonw_key(&w, "window_s");
        jsonw_int(&w, s->gw->cfg.resume_window_s);
        jsonw_object_end(&w);
    }
    jsonw_object_end(&w);
    long n = jsonw_finish(&w);
    if (n > 0)
        session_send(s, buf, (size_t)n);
}

/* The agent's session is ready once it knows where its delivery starts. */
static void agent_ready(session_t *s, bool gap)
{
    sessions_t *ss = s->gw->sessions;
    agent_t *a = agent_get(ss, s->claims.sub);
    if (!a) {
        ws_close(s->ws, WS_CLOSE_CODE_INTERNAL_ERROR, "out of memory");
        return;
    }
    s->authed = true;
    ss->stats.unauthenticated--;
    s->agent = a;
    s->next_of_agent = a->sessions;
    a->sessions = s;
    ss->stats.agents++;
    send_welcome(s, gap);
    agent_pull(s->gw, a);
}

static void on_bounds(void *data, bool ok, const char *first, const char *last)
{
    session_t *s = data;
    if (s->ws && !ok)
        ws_close(s->ws, WS_CLOSE_CODE_INTERNAL_ERROR, "alert log unavailable");
    else if (s->ws) {
        snprintf(s->last_seq, sizeof s->last_seq, "%s", last[0] ? last : "0-0");
        agent_ready(s, false);
    }
    session_unref(s);
}

static void supervisor_ready(session_t *s)
{
    sessions_t *ss = s->gw->sessions;
    s->authed = true;
    ss->stats.unauthenticated--;
    s->next_sup = ss->supervisors;
    if (ss->supervisors)
        ss->supervisors->prev_sup = s;
    ss->supervisors = s;
    ss->stats.supervisors++;
    send_welcome(s, false);
    send_feed_snapshot(s);
    wallboard_greet(s->gw, s);
}

static void refuse(session_t *s, auth_result_t r)
{
    sessions_t *ss = s->gw->sessions;
    ss->stats.auth_failures++;
    if ((int)r < (int)(sizeof ss->auth_failed / sizeof ss->auth_failed[0]))
        metrics_counter_inc(ss->auth_failed[r]);
    log_info("gateway: %s refused: %s", ws_peer(s->ws), auth_result_name(r));
    ws_close(s->ws, GW_CLOSE_UNAUTHORIZED, auth_result_name(r));
}

/* "auth": {"token": "...", "resume": "<seq>"} */
static void on_auth(session_t *s, const cJSON *msg)
{
    const cJSON *token = cJSON_GetObjectItemCaseSensitive(msg, "token");
    const cJSON *resume = cJSON_GetObjectItemCaseSensitive(msg, "resume");
    if (!cJSON_IsString(token)) {
        refuse(s, AUTH_MISSING);
        return;
    }
    auth_result_t r = auth_verify(&s->gw->keys, token->valuestring, strlen(token->valuestring),
                                  0, gw_now_ms() / 1000, &s->claims);
    if (r != AUTH_OK) {
        refuse(s, r);
        return;
    }
    s->authing = true;
    if (s->claims.role == AUTH_ROLE_SUPERVISOR) {
        supervisor_ready(s);
        return;
    }
    if (resume && !cJSON_IsNull(resume)) {
        if (!cJSON_IsString(resume) || !gwstore_seq_valid(resume->valuestring)) {
            send_error(s, "bad_resume", "resume must be a seq from an alert message", "auth");
            ws_close(s->ws, WS_CLOSE_CODE_POLICY, "bad resume");
            return;
        }
        snprintf(s->last_seq, sizeof s->last_seq, "%s", resume->valuestring);
        /* Entries older than the window are trimmed: a resume point before it may have
         * missed some, and the client is told so. */
        long long ms = strtoll(s->last_seq, NULL, 10);
        bool gap = ms > 0 && ms < gw_now_ms() - s->gw->cfg.resume_window_s * 1000;
        agent_ready(s, gap);
        return;
    }
    s->refs++;
    if (gwstore_bounds(s->gw->redis, s->claims.sub, on_bounds, s) != 0) {
        s->refs--;
        ws_close(s->ws, WS_CLOSE_CODE_INTERNAL_ERROR, "alert log unavailable");
    }
}

/* ------------------------------------------------------------------------------------------
 * Feedback
 * ---------------------------------------------------------------------------------------- */

typedef struct {
    session_t *session;
    char what[10];
    char alert_id[ALERT_ID_MAX + 1];
} feedback_t;

static bool valid_alert_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > ALERT_ID_MAX)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_'))
            return false;
    return true;
}

static void on_recorded(void *data, bool ok)
{
    if (!ok)
        log_warn("gateway: feedback not recorded in Redis (it is in Kafka)");
}

/* ack {alert_id} and feedback {alert_id, useful, outcome}: to Kafka, then recorded. */
static void on_feedback(session_t *s, const cJSON *msg, bool is_ack)
{
    const char *what = is_ack ? "ack" : "feedback";
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "alert_id");
    const cJSON *useful = cJSON_GetObjectItemCaseSensitive(msg, "useful");
    const cJSON *outcome = cJSON_GetObjectItemCaseSensitive(msg, "outcome");
    if (!cJSON_IsString(id) || !valid_alert_id(id->valuestring)) {
        send_error(s, "bad_message", "alert_id must be an alert's id", what);
        return;
    }
    if (!is_ack && !cJSON_IsBool(useful)) {
        send_error_about(s, "bad_message", "useful must be true or false", what, id->valuestring);
        return;
    }
    if (!is_ack && outcome && !cJSON_IsNull(outcome) &&
        (!cJSON_IsString(outcome) || strlen(outcome->valuestring) > OUTCOME_MAX)) {
        send_error_about(s, "bad_message", "outcome must be text of at most 500 bytes", what,
                         id->valuestring);
        return;
    }
    const char *text = !is_ack && cJSON_IsString(outcome) ? outcome->valuestring : NULL;
    char buf[1024], at[40];
    int64_t now = gw_now_ms();
    time_t secs = (time_t)(now / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t k = strftime(at, sizeof at, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(at + k, sizeof at - k, ".%03dZ", (int)(now % 1000));
    jsonw_t w;
    jsonw_init(&w, buf, sizeof buf);
    jsonw_object_begin(&w);
    jsonw_key(&w, "type");
    jsonw_string(&w, what);
    jsonw_key(&w, "alert_id");
    jsonw_string(&w, id->valuestring);
    jsonw_key(&w, s->claims.role == AUTH_ROLE_AGENT ? "agent_id" : "supervisor_id");
    jsonw_string(&w, s->claims.sub);
    if (!is_ack) {
        jsonw_key(&w, "useful");
        jsonw_bool(&w, cJSON_IsTrue(useful));
        jsonw_key(&w, "outcome");
        jsonw_string(&w, text);
    }
    jsonw_key(&w, "time");
    jsonw_string(&w, at);
    jsonw_key(&w, "gateway");
    jsonw_string(&w, s->gw->cfg.instance);
    jsonw_object_end(&w);
    long n = jsonw_finish(&w);
    feedback_t *f = calloc(1, sizeof *f);
    if (n < 0 || !f) {
        free(f);
        send_error_about(s, "internal", "cannot record it now", what, id->valuestring);
        return;
    }
    f->session = s;
    snprintf(f->what, sizeof f->what, "%s", what);
    snprintf(f->alert_id, sizeof f->alert_id, "%s", id->valuestring);
    rd_kafka_resp_err_t err =
        s->gw->producer
            ? kafka_producer_send(s->gw->producer, s->gw->cfg.feedback_topic,
                                  RD_KAFKA_PARTITION_UA, id->valuestring, strlen(id->valuestring),
                                  buf, (size_t)n, NULL, f)
            : RD_KAFKA_RESP_ERR__DESTROY;
    if (err) {
        free(f);
        send_error_about(s, "unavailable", "feedback cannot be taken now; send it again", what,
                         id->valuestring);
        return;
    }
    s->refs++;
    s->gw->sessions->stats.feedback++;
    gwstore_record(s->gw->redis, id->valuestring, s->claims.sub, now,
                   is_ack ? -1 : cJSON_IsTrue(useful), text, on_recorded, NULL);
}

void sessions_on_feedback_delivery(gw_t *gw, void *opaque, bool delivered)
{
    feedback_t *f = opaque;
    session_t *s = f->session;
    if (s->ws && delivered) {
        char buf[256];
        jsonw_t w;
        jsonw_init(&w, buf, sizeof buf);
        jsonw_object_begin(&w);
        jsonw_key(&w, "type");
        jsonw_string(&w, "recorded");
        jsonw_key(&w, "what");
        jsonw_string(&w, f->what);
        jsonw_key(&w, "alert_id");
        jsonw_string(&w, f->alert_id);
        jsonw_object_end(&w);
        long n = jsonw_finish(&w);
        if (n > 0)
            session_send(s, buf, (size_t)n);
    } else if (s->ws) {
        send_error_about(s, "unavailable", "feedback was not stored; send it again", f->what,
                         f->alert_id);
    }
    free(f);
    session_unref(s);
}

/* ------------------------------------------------------------------------------------------
 * Messages
 * ---------------------------------------------------------------------------------------- */

/* A token bucket per session; a client that keeps going past it is closed. */
static bool rate_ok(session_t *s)
{
    const gateway_config_t *cfg = &s->gw->cfg;
    uint64_t now = uv_now(s->gw->loop);
    s->tokens += (double)(now - s->tokens_at_ms) / 1000.0 * cfg->rate_limit_per_s;
    if (s->tokens > (double)cfg->rate_limit_burst)
        s->tokens = (double)cfg->rate_limit_burst;
    s->tokens_at_ms = now;
    if (s->tokens >= 1.0) {
        s->tokens -= 1.0;
        s->excess = 0;
        return true;
    }
    s->gw->sessions->stats.rate_limited++;
    if (++s->excess > (unsigned)cfg->rate_limit_burst) /* after the errors it was sent */
        ws_close_after_send(s->ws, WS_CLOSE_CODE_POLICY, "rate limit");
    else
        send_error(s, "rate_limited", "too many messages; slow down", NULL);
    return false;
}

static void on_message(ws_conn_t *ws, const char *buf, size_t len)
{
    session_t *s = ws_data(ws);
    if (!rate_ok(s))
        return;
    cJSON *msg = cJSON_ParseWithLength(buf, len);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(msg, "type");
    if (!cJSON_IsObject(msg) || !cJSON_IsString(type)) {
        if (!s->authed && !s->authing)
            refuse(s, AUTH_MISSING);
        else
            send_error(s, "bad_message", "a message is a JSON object with a \"type\"", NULL);
    } else if (!s->authed && !s->authing) {
        if (strcmp(type->valuestring, "auth") == 0)
            on_auth(s, msg);
        else
            refuse(s, AUTH_MISSING);
    } else if (!s->authed) {
        send_error(s, "not_ready", "authentication is still in progress", type->valuestring);
    } else if (strcmp(type->valuestring, "ack") == 0) {
        on_feedback(s, msg, true);
    } else if (strcmp(type->valuestring, "feedback") == 0) {
        on_feedback(s, msg, false);
    } else if (strcmp(type->valuestring, "ping") == 0) {
        session_send(s, "{\"type\":\"pong\"}", 15);
    } else if (strcmp(type->valuestring, "auth") == 0) {
        send_error(s, "already_authenticated", "this session is authenticated", "auth");
    } else {
        send_error(s, "unknown_type", "unknown message type", type->valuestring);
    }
    cJSON_Delete(msg);
}

static void on_tick(ws_conn_t *ws, uint64_t now_ms)
{
    session_t *s = ws_data(ws);
    if (!s->authed && !s->authing && now_ms >= s->auth_deadline_ms) {
        s->gw->sessions->stats.auth_failures++;
        ws_close(ws, GW_CLOSE_AUTH_TIMEOUT, "auth timeout");
    } else if (s->authed && gw_now_ms() / 1000 >= s->claims.exp + (int64_t)s->gw->keys.skew_s) {
        ws_close(ws, GW_CLOSE_TOKEN_EXPIRED, "token expired");
    }
}

static void on_close(ws_conn_t *ws, uint16_t code)
{
    session_t *s = ws_data(ws);
    sessions_t *ss = s->gw->sessions;
    if (s->agent)
        agent_detach(ss, s);
    else if (s->authed && s->claims.role == AUTH_ROLE_SUPERVISOR)
        supervisor_detach(ss, s);
    else if (!s->authed)
        ss->stats.unauthenticated--;
    s->ws = NULL;
    if (s->refs == 0)
        free(s);
}

static const ws_ops_t session_ops = {
    .on_message = on_message,
    .on_tick = on_tick,
    .on_close = on_close,
};

void sessions_on_upgrade(http_request_t *req, void *data)
{
    gw_t *gw = data;
    session_t *s = calloc(1, sizeof *s);
    if (!s) {
        http_respond(req, 503, "text/plain", "out of memory\n", 14);
        return;
    }
    s->gw = gw;
    s->auth_deadline_ms = uv_now(gw->loop) + (uint64_t)gw->cfg.auth_timeout_ms;
    s->tokens = (double)gw->cfg.rate_limit_burst;
    s->tokens_at_ms = uv_now(gw->loop);
    if (ws_accept(req, &gw->ws_opts, &session_ops, s, &s->ws) != 0) {
        free(s);
        return;
    }
    gw->sessions->stats.unauthenticated++;
}

/* ------------------------------------------------------------------------------------------
 * Setup
 * ---------------------------------------------------------------------------------------- */

int sessions_init(gw_t *gw)
{
    sessions_t *ss = calloc(1, sizeof *ss);
    if (!ss)
        return -1;
    ss->feed_cap = (size_t)gw->cfg.feed_size;
    if (ss->feed_cap && !(ss->feed = calloc(ss->feed_cap, sizeof *ss->feed))) {
        free(ss);
        return -1;
    }
    for (int r = AUTH_MISSING; r <= AUTH_WRONG_ROLE; r++) {
        char labels[64];
        snprintf(labels, sizeof labels, "reason=\"%s\"", auth_result_name((auth_result_t)r));
        ss->auth_failed[r] = metrics_counter(gw->svc->metrics, "integral_gateway_auth_failures_total",
                                             "Refused authentications, by reason.", labels);
    }
    ss->send_latency = metrics_histogram(
        gw->svc->metrics, "integral_gateway_send_latency_seconds",
        "From an alert raised by the engine to its handing to an agent's socket.", NULL,
        metrics_latency_buckets, metrics_latency_buckets_count);
    gw->sessions = ss;
    return 0;
}

size_t sessions_backlog_bytes(const gw_t *gw)
{
    const sessions_t *ss = gw->sessions;
    size_t total = 0;
    for (int b = 0; b < AGENT_BUCKETS; b++)
        for (const agent_t *a = ss->agents[b]; a; a = a->next)
            for (const session_t *s = a->sessions; s; s = s->next_of_agent)
                total += s->ws ? ws_backlog(s->ws) : 0;
    for (const session_t *s = ss->supervisors; s; s = s->next_sup)
        total += s->ws ? ws_backlog(s->ws) : 0;
    return total;
}

void sessions_free(gw_t *gw)
{
    sessions_t *ss = gw->sessions;
    if (!ss)
        return;
    for (size_t i = 0; i < ss->feed_cap; i++)
        free(ss->feed[i].json);
    free(ss->feed);
    for (int b = 0; b < AGENT_BUCKETS; b++) {
        while (ss->agents[b]) {
            agent_t *a = ss->agents[b];
            ss->agents[b] = a->next;
            free(a);
        }
    }
    free(ss);
    gw->sessions = NULL;
}

void sessions_note_screen_pop(gw_t *gw)
{
    gw->sessions->stats.screen_pops++;
}

const sessions_stats_t *sessions_stats(const gw_t *gw)
{
    return &gw->sessions->stats;
}
