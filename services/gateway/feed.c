/* feed.c - alerts and assignment notices from Kafka into the agents' logs, the supervisors'
 * feed and the agents' screens. See feed.h. */
#include "feed.h"

#include "gwstore.h"
#include "log.h"
#include "sessions.h"
#include "timefmt.h"
#include "utf8.h"
#include "wallboard.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PARTITIONS_MAX 1024
#define IN_FLIGHT_MAX 5000
#define RECENT_IDS 1024 /* alert ids already shown to supervisors, newest last */
#define RETRY_MS 1000
#define ID_MAX 128
#define POP_TIMELINE_MAX 20 /* the screen pop shows the latest interactions */

typedef enum { TOPIC_ALERTS, TOPIC_ASSIGNMENTS, TOPIC_COUNT } topic_t;

typedef struct {
    uint32_t generation; /* bumped by a rewind: older work of the partition is void */
    bool paused;
} partition_t;

struct feed {
    gw_t *gw;
    partition_t parts[TOPIC_COUNT][PARTITIONS_MAX];
    size_t in_flight;
    bool held;
    uint64_t recent[RECENT_IDS];
    size_t recent_next;
    uv_timer_t retry_timer;
    bool timer_open;
    feed_stats_t stats;
};

/* One message at work: kept until Redis answered. */
typedef struct {
    feed_t *feed;
    rd_kafka_message_t *msg;
    topic_t topic;
    uint32_t generation;
    char agent[ID_MAX + 1];
    char customer[ID_MAX + 1];
    bool pop; /* assignment: pop the customer on the agent's screen */
} job_t;

static topic_t topic_of(const gw_t *gw, const rd_kafka_message_t *m)
{
    return strcmp(rd_kafka_topic_name(m->rkt), gw->cfg.assignments_topic) == 0
               ? TOPIC_ASSIGNMENTS
               : TOPIC_ALERTS;
}

static partition_t *partition_of(feed_t *f, topic_t t, int32_t partition)
{
    return partition >= 0 && partition < PARTITIONS_MAX ? &f->parts[t][partition] : NULL;
}

static void update_hold(feed_t *f)
{
    bool hold = f->held || f->in_flight >= IN_FLIGHT_MAX;
    if (f->gw->consumer)
        kafka_consumer_hold(f->gw->consumer, hold);
}

static void job_free(job_t *j)
{
    feed_t *f = j->feed;
    rd_kafka_message_destroy(j->msg);
    free(j);
    f->in_flight--;
    update_hold(f);
}

/* The message's effect is in Redis: its offset may be stored. */
static void job_done(job_t *j)
{
    feed_t *f = j->feed;
    gw_t *gw = f->gw;
    partition_t *p = partition_of(f, j->topic, j->msg->partition);
    if (gw->consumer && p && p->generation == j->generation)
        kafka_consumer_done(gw->consumer, rd_kafka_topic_name(j->msg->rkt), j->msg->partition,
                            j->msg->offset);
    job_free(j);
}

/* Redis failed: the partition goes back to this message and tries again after RETRY_MS. */
static void job_failed(job_t *j)
{
    feed_t *f = j->feed;
    gw_t *gw = f->gw;
    f->stats.redis_failures++;
    partition_t *p = partition_of(f, j->topic, j->msg->partition);
    if (gw->consumer && p && p->generation == j->generation) {
        p->generation++;
        p->paused = true;
        log_warn("gateway: Redis failed for %s [%d] at offset %lld; retrying",
                 rd_kafka_topic_name(j->msg->rkt), (int)j->msg->partition,
                 (long long)j->msg->offset);
        kafka_consumer_rewind(gw->consumer, rd_kafka_topic_name(j->msg->rkt), j->msg->partition,
                              j->msg->offset);
    }
    job_free(j);
}

static void on_retry(uv_timer_t *timer)
{
    feed_t *f = timer->data;
    gw_t *gw = f->gw;
    for (int t = 0; t < TOPIC_COUNT && gw->consumer; t++) {
        const char *name = t == TOPIC_ALERTS ? gw->cfg.alerts_topic : gw->cfg.assignments_topic;
        for (int32_t i = 0; i < PARTITIONS_MAX; i++) {
            if (f->parts[t][i].paused) {
                f->parts[t][i].paused = false;
                kafka_consumer_resume(gw->consumer, name, i);
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------
 * Alerts
 * ---------------------------------------------------------------------------------------- */

static uint64_t hash_id(const char *id)
{
    uint64_t h = 14695981039346656037ull;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return h;
}

/* True the first time this process sees id (among the last RECENT_IDS). */
static bool first_sight(feed_t *f, const char *id)
{
    uint64_t h = hash_id(id);
    for (size_t i = 0; i < RECENT_IDS; i++)
        if (f->recent[i] == h)
            return false;
    f->recent[f->recent_next] = h;
    f->recent_next = (f->recent_next + 1) % RECENT_IDS;
    return true;
}

static const char *string_field(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) && v->valuestring[0] && strlen(v->valuestring) <= ID_MAX
               ? v->valuestring
               : NULL;
}

static void on_alert_stored(void *data, bool ok)
{
    job_t *j = data;
    if (!ok) {
        job_failed(j);
        return;
    }
    if (j->agent[0])
        sessions_agent_log_changed(j->feed->gw, j->agent);
    job_done(j);
}

static void on_alert(feed_t *f, job_t *j, const cJSON *alert)
{
    gw_t *gw = f->gw;
    const rd_kafka_message_t *m = j->msg;
    const char *id = string_field(alert, "id");
    const char *customer = string_field(alert, "customer_id");
    const char *agent = string_field(alert, "agent_id");
    const char *queue = string_field(alert, "queue");
    const char *raised = string_field(alert, "time");
    int64_t raised_ms;
    if (!id || !gwstore_id_ok(customer) || (agent && !gwstore_id_ok(agent)) || (queue && !gwstore_id_ok(queue)) ||
        !raised || timefmt_parse(raised, &raised_ms) < 0) {
        f->stats.invalid++;
        log_warn("gateway: alert at %s [%d] offset %lld is not a valid alert; skipped",
                 rd_kafka_topic_name(m->rkt), (int)m->partition, (long long)m->offset);
        job_done(j);
        return;
    }
    int64_t now = gw_now_ms(), window = gw->cfg.resume_window_s * 1000;
    if (raised_ms < now - window) {
        f->stats.skipped_old++;
        job_done(j);
        return;
    }
    f->stats.alerts++;
    if (first_sight(f, id)) {
        sessions_supervisor_alert(gw, queue, m->payload, m->len);
        wallboard_count_alert(gw, queue);
    }
    snprintf(j->agent, sizeof j->agent, "%s", agent ? agent : "");
    int rc = agent ? gwstore_append_alert(gw->redis, agent, id, m->payload, m->len, now, window,
                                          on_alert_stored, j)
                   : gwstore_hold_alert(gw->redis, customer, id, m->payload, m->len, now,
                                        gw->cfg.pending_alert_ttl_s * 1000, on_alert_stored, j);
    if (rc != 0)
        job_failed(j);
}

/* ------------------------------------------------------------------------------------------
 * Assignments: held alerts to the agent, and the screen pop
 * ---------------------------------------------------------------------------------------- */

typedef struct {
    gw_t *gw;
    char agent[ID_MAX + 1];
    char *notice;  /* the assignment notice (JSON) */
    char *alerts;  /* the held alerts, as a JSON array text */
} pop_t;

static void pop_free(pop_t *p)
{
    free(p->notice);
    free(p->alerts);
    free(p);
}

/* {"type":"screen_pop","contact":<notice>,"customer":<summary>,"alerts":[...]}: the
 * customer's document without the engine's internals, with its latest timeline entries. */
static void on_customer(void *data, bool ok, cJSON *doc)
{
    (void)ok; /* without the customer (Redis failed), the pop still shows the contact */
    pop_t *p = data;
    gw_t *gw = p->gw;
    cJSON *msg = cJSON_CreateObject();
    cJSON_AddStringToObject(msg, "type", "screen_pop");
    cJSON_AddItemToObject(msg, "contact", cJSON_Parse(p->notice));
    cJSON_AddItemToObject(msg, "customer", cJSON_IsObject(doc) ? doc : cJSON_CreateNull());
    if (!cJSON_IsObject(doc))
        cJSON_Delete(doc);
    cJSON *alerts = cJSON_Parse(p->alerts);
    cJSON_AddItemToObject(msg, "alerts", alerts ? alerts : cJSON_CreateArray());
    char *text = cJSON_PrintUnformatted(msg);
    cJSON_Delete(msg);
    if (text && utf8_is_text((const unsigned char *)text, strlen(text))) {
        sessions_send_to_agent(gw, p->agent, text, strlen(text));
        sessions_note_screen_pop(gw);
    } else if (text) {
        log_warn("gateway: the screen pop for agent %s is not valid text; not sent", p->agent);
    }
    free(text);
    /* The held alerts follow the pop as alerts of the agent's log. */
    sessions_agent_log_changed(gw, p->agent);
    pop_free(p);
}

/* The held alerts (an array of JSON texts) as one JSON array text. */
static char *alerts_array(const redisReply *r)
{
    size_t cap = 3;
    for (size_t i = 0; i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING)
            cap += (size_t)r->element[i]->len + 1;
    char *out = malloc(cap), *p = out;
    if (!out)
        return NULL;
    *p++ = '[';
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_STRING)
            continue;
        if (p > out + 1)
            *p++ = ',';
        memcpy(p, e->str, (size_t)e->len);
        p += e->len;
    }
    *p++ = ']';
    *p = '\0';
    return out;
}

static void on_assigned(void *data, const redisReply *reply)
{
    job_t *j = data;
    gw_t *gw = j->feed->gw;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        job_failed(j);
        return;
    }
    if (j->pop && sessions_agent_connected(gw, j->agent)) {
        pop_t *p = calloc(1, sizeof *p);
        if (p) {
            p->gw = gw;
            snprintf(p->agent, sizeof p->agent, "%s", j->agent);
            p->notice = strndup(j->msg->payload, j->msg->len);
            p->alerts = alerts_array(reply);
        }
        if (!p || !p->notice || !p->alerts || gwstore_customer(gw->redis, j->customer, POP_TIMELINE_MAX, on_customer,
                                              p) != 0) {
            if (p)
                pop_free(p);
            sessions_agent_log_changed(gw, j->agent);
        }
    } else {
        sessions_agent_log_changed(gw, j->agent);
    }
    job_done(j);
}

static void on_assignment(feed_t *f, job_t *j, const cJSON *notice)
{
    gw_t *gw = f->gw;
    const char *agent = string_field(notice, "agent_id");
    const char *customer = string_field(notice, "customer_id");
    const char *at = string_field(notice, "time");
    int64_t at_ms;
    if (!gwstore_id_ok(agent) || !gwstore_id_ok(customer) || !at || timefmt_parse(at, &at_ms) < 0) {
        f->stats.invalid++;
        log_warn("gateway: assignment at %s [%d] offset %lld is not valid; skipped",
                 rd_kafka_topic_name(j->msg->rkt), (int)j->msg->partition,
                 (long long)j->msg->offset);
        job_done(j);
        return;
    }
    int64_t now = gw_now_ms();
    f->stats.assignments++;
    snprintf(j->agent, sizeof j->agent, "%s", agent);
    snprintf(j->customer, sizeof j->customer, "%s", customer);
    /* An old notice (a restarted gateway catching up) still hands over the held alerts, but
     * pops nothing: that contact is probably over. */
    j->pop = at_ms >= now - gw->cfg.screen_pop_max_age_s * 1000;
    if (!j->pop)
        f->stats.skipped_old++;
    if (gwstore_assign(gw->redis, customer, agent, now, gw->cfg.resume_window_s * 1000,
                       gw->cfg.pending_alert_ttl_s * 1000, on_assigned, j) != 0)
        job_failed(j);
}

/* ------------------------------------------------------------------------------------------
 * The consumer
 * ---------------------------------------------------------------------------------------- */

static void on_message(kafka_consumer_t *c, rd_kafka_message_t *m, void *data)
{
    gw_t *gw = data;
    feed_t *f = gw->feed;
    job_t *j = calloc(1, sizeof *j);
    if (!j) {
        rd_kafka_message_destroy(m);
        return; /* not done: redelivered after a restart */
    }
    j->feed = f;
    j->msg = m;
    j->topic = topic_of(gw, m);
    partition_t *p = partition_of(f, j->topic, m->partition);
    j->generation = p ? p->generation : 0;
    f->in_flight++;
    update_hold(f);
    cJSON *o = m->len > 0 && utf8_is_text(m->payload, m->len)
                   ? cJSON_ParseWithLength(m->payload, m->len)
                   : NULL;
    if (!cJSON_IsObject(o) || !gw->redis) {
        f->stats.invalid++;
        log_warn("gateway: message at %s [%d] offset %lld is not a JSON object; skipped",
                 rd_kafka_topic_name(m->rkt), (int)m->partition, (long long)m->offset);
        job_done(j);
    } else if (j->topic == TOPIC_ALERTS) {
        on_alert(f, j, o);
    } else {
        on_assignment(f, j, o);
    }
    cJSON_Delete(o);
}

int feed_start(gw_t *gw, char *err, size_t errlen)
{
    feed_t *f = calloc(1, sizeof *f);
    if (!f) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    f->gw = gw;
    gw->feed = f;
    uv_timer_init(gw->loop, &f->retry_timer);
    f->retry_timer.data = f;
    f->timer_open = true;
    uv_timer_start(&f->retry_timer, on_retry, RETRY_MS, RETRY_MS);
    char group[300];
    snprintf(group, sizeof group, "integral-gateway-%s", gw->cfg.instance);
    const char *topics[] = {gw->cfg.alerts_topic, gw->cfg.assignments_topic, NULL};
    kafka_consumer_handlers_t handlers = {.on_message = on_message};
    if (kafka_consumer_new(&gw->consumer, gw->loop, &gw->kafka, group, topics, &handlers, gw,
                           err, errlen) < 0)
        return -1;
    log_info("consuming %s and %s in group %s", gw->cfg.alerts_topic, gw->cfg.assignments_topic,
             group);
    return 0;
}

void feed_hold(gw_t *gw)
{
    if (!gw->feed)
        return;
    gw->feed->held = true;
    update_hold(gw->feed);
    if (gw->feed->timer_open) {
        uv_timer_stop(&gw->feed->retry_timer);
    }
}

size_t feed_in_flight(const gw_t *gw)
{
    return gw->feed ? gw->feed->in_flight : 0;
}

static void on_timer_closed(uv_handle_t *handle)
{
    free(handle->data);
}

void feed_free(gw_t *gw)
{
    feed_t *f = gw->feed;
    if (!f)
        return;
    gw->feed = NULL;
    if (f->timer_open)
        uv_close((uv_handle_t *)&f->retry_timer, on_timer_closed);
    else
        free(f);
}

void feed_stats(const gw_t *gw, feed_stats_t *out)
{
    *out = gw->feed ? gw->feed->stats : (feed_stats_t){0};
}
