/* livequeue.c - the live queue and the assignment notices. See livequeue.h. */
#include "livequeue.h"

#include "agents.h"
#include "customers.h"
#include "jsonw.h"
#include "log.h"
#include "state.h"

#include <stdio.h>
#include <string.h>

#define INFO_MAX 1024

/* Who waits: the snapshot the wallboard shows next to a waiting contact. */
static long waiting_info(const customer_t *c, const char *contact_id, const char *queue,
                         int64_t since_ms, char *buf, size_t cap)
{
    char since[TIMEFMT_TEXT_SIZE], tier[2] = {c->scores.tier, '\0'};
    timefmt_format(since_ms, since, sizeof since);
    jsonw_t w;
    jsonw_init(&w, buf, cap);
    jsonw_object_begin(&w);
    jsonw_key(&w, "contact_id");
    jsonw_string(&w, contact_id);
    jsonw_key(&w, "customer_id");
    jsonw_string(&w, c->id);
    jsonw_key(&w, "name");
    jsonw_string(&w, c->profile.name[0] ? c->profile.name : NULL);
    jsonw_key(&w, "partner");
    jsonw_bool(&w, c->is_partner);
    jsonw_key(&w, "queue");
    jsonw_string(&w, queue);
    jsonw_key(&w, "channel");
    jsonw_string(&w, c->contact.channel == STATE_CHANNEL_UNKNOWN
                         ? NULL
                         : event_channel_name((event_channel_t)c->contact.channel));
    jsonw_key(&w, "since");
    jsonw_string(&w, since);
    jsonw_key(&w, "tier");
    jsonw_string(&w, c->scores.computed ? tier : NULL);
    jsonw_key(&w, "value");
    jsonw_fixed(&w, c->scores.value, 2);
    jsonw_key(&w, "churn_risk");
    jsonw_fixed(&w, c->scores.churn_risk, 4);
    jsonw_key(&w, "trend");
    jsonw_string(&w, state_trend_name(c->scores.trend));
    jsonw_object_end(&w);
    return jsonw_finish(&w);
}

static void queue_op(batch_t *batch, store_op_kind_t op, int64_t time_ms, const char *id,
                     const char *queue, const char *info, long info_len)
{
    if (info_len < 0 ||
        pipeline_queue_op(batch, op, time_ms, id, queue, info, info ? (size_t)info_len : 0) < 0)
        log_error("engine: cannot record live-queue operation %c for %s", (char)op, id);
}

static void notify_assignment(engine_t *e, batch_t *batch, const customer_t *c,
                              const event_t *ev, const char *agent_id)
{
    char buf[INFO_MAX], at[TIMEFMT_TEXT_SIZE];
    timefmt_format(ev->time_ms, at, sizeof at);
    const state_current_contact_t *k = &c->contact;
    jsonw_t w;
    jsonw_init(&w, buf, sizeof buf);
    jsonw_object_begin(&w);
    jsonw_key(&w, "type");
    jsonw_string(&w, event_type_name(ev->type));
    jsonw_key(&w, "agent_id");
    jsonw_string(&w, agent_id);
    jsonw_key(&w, "customer_id");
    jsonw_string(&w, c->id);
    jsonw_key(&w, "contact_id");
    jsonw_string(&w, k->id);
    jsonw_key(&w, "queue");
    jsonw_string(&w, k->queue[0] ? k->queue : NULL);
    jsonw_key(&w, "channel");
    jsonw_string(&w, k->channel == STATE_CHANNEL_UNKNOWN
                         ? NULL
                         : event_channel_name((event_channel_t)k->channel));
    jsonw_key(&w, "time");
    jsonw_string(&w, at);
    jsonw_key(&w, "event_id");
    jsonw_string(&w, ev->id);
    jsonw_object_end(&w);
    long len = jsonw_finish(&w);
    if (len < 0 || pipeline_publish(e->pipeline, batch, e->cfg.assignments_topic, agent_id, buf,
                                    (size_t)len) < 0)
        log_error("engine: cannot send the assignment of %s to %s", c->id, agent_id);
}

/* The event's contact is the customer's current one (a late event about an older contact
 * changes neither the queue nor who serves the customer). */
static bool is_current(const customer_t *c, const char *contact_id)
{
    return c->contact.state != STATE_CONTACT_NONE && strcmp(c->contact.id, contact_id) == 0;
}

/* The wait in milliseconds since the epoch, as the operation's text field. */
static const char *since_text(int64_t since_ms, char *buf, size_t cap)
{
    snprintf(buf, cap, "%lld", (long long)(since_ms == STATE_TIME_NONE ? 0 : since_ms));
    return buf;
}

/* The contact left its queue (answered, abandoned, ended): with what the engine knows of
 * where it waited, or - for a contact that was not the customer's current one - through the
 * lookup in Redis. */
static void left_queue(batch_t *batch, store_op_kind_t op, store_op_kind_t anywhere,
                       int64_t time_ms, const char *contact, const apply_result_t *res)
{
    char since[24];
    if (res->was_waiting) {
        const char *t = since_text(res->waited_since_ms, since, sizeof since);
        queue_op(batch, op, time_ms, contact, res->waited_queue, t, (long)strlen(t));
    } else if (anywhere && !res->was_current) { /* the current one was not waiting */
        queue_op(batch, anywhere, time_ms, contact, NULL, NULL, 0);
    }
}

static void on_customer_event(engine_t *e, batch_t *batch, const customer_t *c,
                              const event_t *ev, bool late)
{
    char info[INFO_MAX];
    const state_current_contact_t *k = &c->contact;
    const apply_result_t *res = customers_last_result(e);
    switch (ev->type) {
    case EVENT_CONTACT_QUEUED:
    case EVENT_CONTACT_TRANSFERRED: {
        const char *contact = ev->type == EVENT_CONTACT_QUEUED
                                  ? ev->data.contact_queued.contact_id
                                  : ev->data.contact_transferred.contact_id;
        if (!is_current(c, contact))
            return;
        if (k->state == STATE_CONTACT_QUEUED) {
            if (res->was_waiting && strcmp(res->waited_queue, k->queue) != 0)
                queue_op(batch, STORE_OP_LEFT_QUEUE, ev->time_ms, k->id, res->waited_queue,
                         NULL, 0);
            long n = waiting_info(c, k->id, k->queue, k->queued_ms, info, sizeof info);
            queue_op(batch, STORE_OP_QUEUED, k->queued_ms, k->id, k->queue, info, n);
        } else if (k->state == STATE_CONTACT_ACTIVE && ev->type == EVENT_CONTACT_TRANSFERRED &&
                   ev->data.contact_transferred.to_agent_id) {
            left_queue(batch, STORE_OP_ANSWERED, 0, ev->time_ms, k->id, res);
            if (!late)
                notify_assignment(e, batch, c, ev, k->agent_id);
        }
        return;
    }
    case EVENT_CONTACT_STARTED:
        if (!is_current(c, ev->data.contact_started.contact_id) ||
            k->state != STATE_CONTACT_ACTIVE)
            return;
        left_queue(batch, STORE_OP_ANSWERED, 0, ev->time_ms, k->id, res);
        if (!late)
            notify_assignment(e, batch, c, ev, k->agent_id);
        return;
    case EVENT_CONTACT_ABANDONED:
        left_queue(batch, STORE_OP_ABANDONED, STORE_OP_ABANDONED_ANYWHERE, ev->time_ms,
                   ev->data.contact_abandoned.contact_id, res);
        return;
    case EVENT_CONTACT_ENDED:
        left_queue(batch, STORE_OP_ENDED, STORE_OP_ENDED_ANYWHERE, ev->time_ms,
                   ev->data.contact_ended.contact_id, res);
        return;
    default:
        return;
    }
}

void livequeue_on_applied(engine_t *e, batch_t *batch, const doc_ops_t *ops, void *doc,
                          const event_t *ev, bool late)
{
    if (!batch)
        return;
    if (ops == &agent_doc_ops) {
        char info[INFO_MAX];
        const char *id = ev->data.agent_state.agent_id;
        queue_op(batch, STORE_OP_AGENT, ev->time_ms, id, NULL, info,
                 agent_summary_json(doc, info, sizeof info));
    } else if (ops == &customer_doc_ops) {
        on_customer_event(e, batch, doc, ev, late);
    }
}
