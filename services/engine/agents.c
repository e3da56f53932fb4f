/* agents.c - agent documents. See agents.h. */
#include "agents.h"

#include "jsonw.h"
#include "store.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AGENT_RECENT_IDS 16

typedef struct {
    char id[EVENT_KEY_MAX + 1];
    event_agent_state_t state;
    bool known;
    int n_queues;
    char queues[EVENT_QUEUES_MAX][EVENT_KEY_MAX + 1];
    int64_t updated_ms;
    int64_t offset;
    int n_ids;
    char ids[AGENT_RECENT_IDS][EVENT_ID_MAX + 1]; /* ring, newest at (n_ids - 1) % size */
} agent_t;

static void *agent_create(const char *subject, void *ctx)
{
    agent_t *a = calloc(1, sizeof *a);
    if (a) {
        snprintf(a->id, sizeof a->id, "%s", subject + strlen("agent:"));
        a->offset = -1;
    }
    return a;
}

static void agent_destroy(void *doc)
{
    free(doc);
}

static int agent_key(char *out, size_t cap, const char *subject)
{
    return store_agent_key(out, cap, subject + strlen("agent:"));
}

static bool seen(const agent_t *a, const char *id)
{
    int n = a->n_ids < AGENT_RECENT_IDS ? a->n_ids : AGENT_RECENT_IDS;
    for (int i = 0; i < n; i++)
        if (strcmp(a->ids[i], id) == 0)
            return true;
    return false;
}

static void remember(agent_t *a, const char *id)
{
    snprintf(a->ids[a->n_ids % AGENT_RECENT_IDS], sizeof a->ids[0], "%s", id);
    a->n_ids++;
}

static int agent_apply(void *doc, const event_t *ev, int64_t offset, void *ctx)
{
    agent_t *a = doc;
    if (ev->type != EVENT_AGENT_STATE)
        return -1;
    if (offset <= a->offset || seen(a, ev->id))
        return DOC_DUPLICATE;
    a->offset = offset;
    remember(a, ev->id);
    if (ev->time_ms < a->updated_ms)
        return DOC_APPLIED; /* late: older than what we show */
    const event_agent_state_data_t *d = &ev->data.agent_state;
    a->state = d->state;
    a->known = true;
    a->updated_ms = ev->time_ms;
    if (d->has_queues) {
        a->n_queues = d->n_queues;
        for (int i = 0; i < d->n_queues; i++)
            snprintf(a->queues[i], sizeof a->queues[i], "%s", d->queues[i]);
    }
    return DOC_APPLIED;
}

static int agent_serialize(const void *doc, char *buf, size_t cap, size_t *len, void *ctx)
{
    const agent_t *a = doc;
    cJSON *o = cJSON_CreateObject();
    char updated[TIMEFMT_TEXT_SIZE] = "";
    timefmt_format(a->updated_ms, updated, sizeof updated);
    cJSON_AddNumberToObject(o, "v", 1);
    cJSON_AddStringToObject(o, "id", a->id);
    if (a->known)
        cJSON_AddStringToObject(o, "state", event_agent_state_name(a->state));
    else
        cJSON_AddNullToObject(o, "state");
    cJSON *queues = cJSON_AddArrayToObject(o, "queues");
    for (int i = 0; i < a->n_queues; i++)
        cJSON_AddItemToArray(queues, cJSON_CreateString(a->queues[i]));
    cJSON_AddStringToObject(o, "updated", updated);
    cJSON_AddNumberToObject(o, "offset", (double)a->offset);
    cJSON *ids = cJSON_AddArrayToObject(o, "ids");
    int n = a->n_ids < AGENT_RECENT_IDS ? a->n_ids : AGENT_RECENT_IDS;
    for (int i = 0; i < n; i++) /* oldest first, so a reload keeps the ring order */
        cJSON_AddItemToArray(ids, cJSON_CreateString(a->ids[(a->n_ids - n + i) % AGENT_RECENT_IDS]));
    bool ok = cJSON_PrintPreallocated(o, buf, (int)(cap > 1 << 30 ? 1 << 30 : cap), false);
    cJSON_Delete(o);
    if (!ok)
        return -1;
    *len = strlen(buf);
    return 0;
}

long agent_summary_json(const void *doc, char *buf, size_t cap)
{
    const agent_t *a = doc;
    char since[TIMEFMT_TEXT_SIZE] = "";
    timefmt_format(a->updated_ms, since, sizeof since);
    jsonw_t w;
    jsonw_init(&w, buf, cap);
    jsonw_object_begin(&w);
    jsonw_key(&w, "id");
    jsonw_string(&w, a->id);
    jsonw_key(&w, "state");
    jsonw_string(&w, a->known ? event_agent_state_name(a->state) : NULL);
    jsonw_key(&w, "queues");
    jsonw_array_begin(&w);
    for (int i = 0; i < a->n_queues; i++)
        jsonw_string(&w, a->queues[i]);
    jsonw_array_end(&w);
    jsonw_key(&w, "since");
    jsonw_string(&w, since);
    jsonw_object_end(&w);
    return jsonw_finish(&w);
}

static int fail(char *err, size_t errlen, const char *what)
{
    snprintf(err, errlen, "agent document: %s", what);
    return -1;
}

static int agent_load(void *doc, const char *json, size_t len, char *err, size_t errlen)
{
    agent_t *a = doc;
    cJSON *o = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return fail(err, errlen, "not a JSON object");
    }
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(o, "state");
    const cJSON *queues = cJSON_GetObjectItemCaseSensitive(o, "queues");
    const cJSON *updated = cJSON_GetObjectItemCaseSensitive(o, "updated");
    const cJSON *offset = cJSON_GetObjectItemCaseSensitive(o, "offset");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(o, "ids");
    int rc = 0;
    if (!cJSON_IsArray(queues) || !cJSON_IsString(updated) || !cJSON_IsNumber(offset) ||
        !cJSON_IsArray(ids) || !(cJSON_IsNull(state) || cJSON_IsString(state)))
        rc = fail(err, errlen, "missing or mistyped field");
    else if (cJSON_IsString(state) && !event_agent_state_from_name(state->valuestring, &a->state))
        rc = fail(err, errlen, "unknown state");
    else if (timefmt_parse(updated->valuestring, &a->updated_ms) < 0)
        rc = fail(err, errlen, "bad updated time");
    if (rc == 0) {
        a->known = cJSON_IsString(state);
        a->offset = (int64_t)offset->valuedouble;
        a->n_queues = 0;
        const cJSON *q;
        cJSON_ArrayForEach(q, queues)
        {
            if (a->n_queues < EVENT_QUEUES_MAX && cJSON_IsString(q))
                snprintf(a->queues[a->n_queues++], sizeof a->queues[0], "%s", q->valuestring);
        }
        a->n_ids = 0;
        const cJSON *id;
        cJSON_ArrayForEach(id, ids)
        {
            if (cJSON_IsString(id))
                remember(a, id->valuestring);
        }
    }
    cJSON_Delete(o);
    return rc;
}

const doc_ops_t agent_doc_ops = {
    .kind = "agent",
    .create = agent_create,
    .load = agent_load,
    .apply = agent_apply,
    .serialize = agent_serialize,
    .destroy = agent_destroy,
    .key = agent_key,
};
