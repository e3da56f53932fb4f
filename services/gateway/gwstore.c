/* gwstore.c - the gateway's Redis side. See gwstore.h. */
#include "gwstore.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char function_library[] =
    "#!lua name=integral_gw\n"
    "\n"
    "-- Appends one alert to an agent's log unless its id is there already.\n"
    "local function append(stream, seen, id, json, now, window)\n"
    "  if redis.call('ZSCORE', seen, id) then return 0 end\n"
    "  redis.call('ZADD', seen, now, id)\n"
    "  redis.call('ZREMRANGEBYSCORE', seen, '-inf', now - window)\n"
    "  redis.call('XADD', stream, 'MINID', tostring(now - window), '*', 'alert', json)\n"
    "  redis.call('PEXPIRE', stream, window * 2)\n"
    "  redis.call('PEXPIRE', seen, window * 2)\n"
    "  return 1\n"
    "end\n"
    "\n"
    "-- KEYS: stream, seen. ARGV: alert id, alert JSON, now ms, window ms.\n"
    "local function gw_append(keys, args)\n"
    "  return append(keys[1], keys[2], args[1], args[2], tonumber(args[3]), tonumber(args[4]))\n"
    "end\n"
    "\n"
    "-- KEYS: pending, pending_at. ARGV: alert id, alert JSON, now ms, ttl ms.\n"
    "local function gw_hold(keys, args)\n"
    "  local now, ttl = tonumber(args[3]), tonumber(args[4])\n"
    "  redis.call('HSET', keys[1], args[1], args[2])\n"
    "  if not redis.call('ZSCORE', keys[2], args[1]) then\n"
    "    redis.call('ZADD', keys[2], now, args[1])\n"
    "  end\n"
    "  local old = redis.call('ZRANGEBYSCORE', keys[2], '-inf', now - ttl)\n"
    "  for _, id in ipairs(old) do redis.call('HDEL', keys[1], id) end\n"
    "  redis.call('ZREMRANGEBYSCORE', keys[2], '-inf', now - ttl)\n"
    "  redis.call('PEXPIRE', keys[1], ttl)\n"
    "  redis.call('PEXPIRE', keys[2], ttl)\n"
    "  return 1\n"
    "end\n"
    "\n"
    "-- KEYS: pending, pending_at, stream, seen. ARGV: now ms, window ms, ttl ms.\n"
    "-- Returns the held alerts (JSON texts, oldest first), now in the agent's log.\n"
    "local function gw_assign(keys, args)\n"
    "  local now, window, ttl = tonumber(args[1]), tonumber(args[2]), tonumber(args[3])\n"
    "  local held = {}\n"
    "  for _, id in ipairs(redis.call('ZRANGEBYSCORE', keys[2], now - ttl, '+inf')) do\n"
    "    local json = redis.call('HGET', keys[1], id)\n"
    "    if json then\n"
    "      append(keys[3], keys[4], id, json, now, window)\n"
    "      held[#held + 1] = json\n"
    "    end\n"
    "  end\n"
    "  return held\n"
    "end\n"
    "\n"
    "-- KEYS: stream. Returns {first seq, last seq} ('' when empty).\n"
    "local function gw_bounds(keys, args)\n"
    "  local first = redis.call('XRANGE', keys[1], '-', '+', 'COUNT', 1)\n"
    "  local last = redis.call('XREVRANGE', keys[1], '+', '-', 'COUNT', 1)\n"
    "  return {first[1] and first[1][1] or '', last[1] and last[1][1] or ''}\n"
    "end\n"
    "\n"
    "-- KEYS: {g:f:ALERT}. ARGV: agent, now ms, useful (-1: an ack), outcome.\n"
    "local function gw_record(keys, args)\n"
    "  if args[3] == '-1' then\n"
    "    redis.call('HSET', keys[1], 'agent', args[1], 'acked_at', args[2])\n"
    "  else\n"
    "    redis.call('HSET', keys[1], 'agent', args[1], 'feedback_at', args[2],\n"
    "               'useful', args[3], 'outcome', args[4])\n"
    "  end\n"
    "  redis.call('EXPIRE', keys[1], 7776000)\n"
    "  return 1\n"
    "end\n"
    "\n"
    "-- The live queue (the engine's {q}:* keys). ARGV: now ms, most waiting contacts listed\n"
    "-- per queue, service-level threshold ms. Returns {queues, agents}: each queue is\n"
    "-- {name, waiting count, oldest since (-1: none), {id, since, info, ...},\n"
    "--  {answered, answered within, abandoned, abandoned within} over 15 minutes,\n"
    "--  60 minutes of the same four counts, newest minute first}; agents as HGETALL.\n"
    "local function gw_queues(keys, args)\n"
    "  local now, max, threshold = tonumber(args[1]), tonumber(args[2]), tonumber(args[3])\n"
    "  local out = {}\n"
    "  for _, q in ipairs(redis.call('SMEMBERS', '{q}:queues')) do\n"
    "    local wkey = '{q}:waiting:' .. q\n"
    "    local count = redis.call('ZCARD', wkey)\n"
    "    local waiting = {}\n"
    "    local oldest = -1\n"
    "    if count > 0 then\n"
    "      local w = redis.call('ZRANGE', wkey, 0, max - 1, 'WITHSCORES')\n"
    "      oldest = tonumber(w[2])\n"
    "      for i = 1, #w, 2 do\n"
    "        waiting[#waiting + 1] = w[i]\n"
    "        waiting[#waiting + 1] = w[i + 1]\n"
    "        waiting[#waiting + 1] = redis.call('HGET', '{q}:info', w[i]) or '{}'\n"
    "      end\n"
    "    end\n"
    "    local recent = {0, 0, 0, 0}\n"
    "    local minutes = {}\n"
    "    for i = 1, 240 do minutes[i] = 0 end\n"
    "    for k, key in ipairs({'{q}:answered:' .. q, '{q}:abandoned:' .. q}) do\n"
    "      local done = redis.call('ZRANGEBYSCORE', key, now - 3600000, '+inf', 'WITHSCORES')\n"
    "      for i = 1, #done, 2 do\n"
    "        local wait = tonumber(string.match(done[i], '|(%d+)$')) or 0\n"
    "        local at = tonumber(done[i + 1])\n"
    "        local within = wait <= threshold and 1 or 0\n"
    "        local col = (k - 1) * 2\n"
    "        if at >= now - 900000 then\n"
    "          recent[col + 1] = recent[col + 1] + 1\n"
    "          recent[col + 2] = recent[col + 2] + within\n"
    "        end\n"
    "        local m = math.floor((now - at) / 60000)\n"
    "        if m < 0 then m = 0 end\n"
    "        if m < 60 then\n"
    "          minutes[m * 4 + col + 1] = minutes[m * 4 + col + 1] + 1\n"
    "          minutes[m * 4 + col + 2] = minutes[m * 4 + col + 2] + within\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "    out[#out + 1] = {q, count, oldest, waiting, recent, minutes}\n"
    "  end\n"
    "  return {out, redis.call('HGETALL', '{q}:agents')}\n"
    "end\n"
    "\n"
    "-- KEYS: {c:ID}:state, {c:ID}:timeline (the engine's). ARGV: how many timeline entries.\n"
    "-- Returns {document, entry...} (newest entry first), or nil without a document.\n"
    "local function gw_customer(keys, args)\n"
    "  local doc = redis.call('GET', keys[1])\n"
    "  if not doc then return nil end\n"
    "  local out = redis.call('LRANGE', keys[2], 0, tonumber(args[1]) - 1)\n"
    "  table.insert(out, 1, doc)\n"
    "  return out\n"
    "end\n"
    "\n"
    "redis.register_function{function_name='gw_append', callback=gw_append}\n"
    "redis.register_function{function_name='gw_hold', callback=gw_hold}\n"
    "redis.register_function{function_name='gw_assign', callback=gw_assign}\n"
    "redis.register_function{function_name='gw_bounds', callback=gw_bounds,\n"
    "                        flags={'no-writes'}}\n"
    "redis.register_function{function_name='gw_record', callback=gw_record}\n"
    "redis.register_function{function_name='gw_queues', callback=gw_queues,\n"
    "                        flags={'no-writes'}}\n"
    "redis.register_function{function_name='gw_customer', callback=gw_customer,\n"
    "                        flags={'no-writes'}}\n";

const char *gwstore_function_library(void)
{
    return function_library;
}

/* ------------------------------------------------------------------------------------------
 * Calls: one heap record per command carries the caller's callback to the reply.
 * ---------------------------------------------------------------------------------------- */

typedef struct {
    void (*cb)(void);
    void *data;
} call_t;

static call_t *call_new(void (*cb)(void), void *data)
{
    call_t *c = malloc(sizeof *c);
    if (c)
        *c = (call_t){cb, data};
    return c;
}

/* Sends argv; the reply goes to on_reply with the call. Returns 0 or -1 (nothing called). */
static int send_argv(redis_client_t *r, redis_reply_cb on_reply, void (*cb)(void), void *data,
                     int argc, const char **argv, const size_t *lens)
{
    if (!r)
        return -1; /* shutting down: the client is closed */
    call_t *c = call_new(cb, data);
    if (!c)
        return -1;
    if (redis_client_command_argv(r, on_reply, c, argc, argv, lens) != 0) {
        free(c);
        return -1;
    }
    return 0;
}

static call_t take(void *data)
{
    call_t c = *(call_t *)data;
    free(data);
    return c;
}

static void on_done_reply(redis_client_t *r, redisReply *reply, void *data)
{
    call_t c = take(data);
    ((gwstore_done_cb)c.cb)(c.data, reply && reply->type == REDIS_REPLY_INTEGER);
}

static void on_raw_reply(redis_client_t *r, redisReply *reply, void *data)
{
    call_t c = take(data);
    ((gwstore_reply_cb)c.cb)(c.data, reply);
}

static int strlens(int argc, const char **argv, size_t *lens, size_t value_at, size_t value_len)
{
    for (int i = 0; i < argc; i++)
        lens[i] = (size_t)i == value_at ? value_len : strlen(argv[i]);
    return argc;
}

#define KEY_MAX 200

/* FCALL fn 2 {g:tag:owner}:key1 {g:tag:owner}:key2 alert_id json now ms: the calls that put
 * one alert somewhere. */
static int alert_call(redis_client_t *r, const char *fn, const char *tag, const char *owner,
                      const char *key1, const char *key2, const char *alert_id,
                      const char *json, size_t len, int64_t now_ms, int64_t ms,
                      gwstore_done_cb cb, void *data)
{
    char k1[KEY_MAX], k2[KEY_MAX], now[24], span[24];
    snprintf(k1, sizeof k1, "{g:%s:%s}:%s", tag, owner, key1);
    snprintf(k2, sizeof k2, "{g:%s:%s}:%s", tag, owner, key2);
    snprintf(now, sizeof now, "%lld", (long long)now_ms);
    snprintf(span, sizeof span, "%lld", (long long)ms);
    const char *argv[] = {"FCALL", fn, "2", k1, k2, alert_id, json, now, span};
    size_t lens[9];
    int argc = strlens(9, argv, lens, 6, len);
    return send_argv(r, on_done_reply, (void (*)(void))cb, data, argc, argv, lens);
}

int gwstore_append_alert(redis_client_t *r, const char *agent, const char *alert_id,
                         const char *json, size_t len, int64_t now_ms, int64_t window_ms,
                         gwstore_done_cb cb, void *data)
{
    return alert_call(r, "gw_append", "a", agent, "alerts", "seen", alert_id, json, len, now_ms,
                      window_ms, cb, data);
}

int gwstore_hold_alert(redis_client_t *r, const char *customer, const char *alert_id,
                       const char *json, size_t len, int64_t now_ms, int64_t ttl_ms,
                       gwstore_done_cb cb, void *data)
{
    return alert_call(r, "gw_hold", "c", customer, "pending", "pending_at", alert_id, json, len,
                      now_ms, ttl_ms, cb, data);
}

int gwstore_assign(redis_client_t *r, const char *customer, const char *agent, int64_t now_ms,
                   int64_t window_ms, int64_t ttl_ms, gwstore_reply_cb cb, void *data)
{
    char pending[KEY_MAX], pending_at[KEY_MAX], stream[KEY_MAX], seen[KEY_MAX];
    char now[24], window[24], ttl[24];
    snprintf(pending, sizeof pending, "{g:c:%s}:pending", customer);
    snprintf(pending_at, sizeof pending_at, "{g:c:%s}:pending_at", customer);
    snprintf(stream, sizeof stream, "{g:a:%s}:alerts", agent);
    snprintf(seen, sizeof seen, "{g:a:%s}:seen", agent);
    snprintf(now, sizeof now, "%lld", (long long)now_ms);
    snprintf(window, sizeof window, "%lld", (long long)window_ms);
    snprintf(ttl, sizeof ttl, "%lld", (long long)ttl_ms);
    const char *argv[] = {"FCALL", "gw_assign", "4", pending, pending_at, stream, seen,
                          now,     window,      ttl};
    size_t lens[10];
    int argc = strlens(10, argv, lens, 99, 0);
    return send_argv(r, on_raw_reply, (void (*)(void))cb, data, argc, argv, lens);
}

static void on_bounds_reply(redis_client_t *r, redisReply *reply, void *data)
{
    call_t c = take(data);
    gwstore_bounds_cb cb = (gwstore_bounds_cb)c.cb;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING) {
        cb(c.data, false, "", "");
        return;
    }
    cb(c.data, true, reply->element[0]->str, reply->element[1]->str);
}

int gwstore_bounds(redis_client_t *r, const char *agent, gwstore_bounds_cb cb, void *data)
{
    char stream[KEY_MAX];
    snprintf(stream, sizeof stream, "{g:a:%s}:alerts", agent);
    const char *argv[] = {"FCALL_RO", "gw_bounds", "1", stream};
    size_t lens[4];
    int argc = strlens(4, argv, lens, 99, 0);
    return send_argv(r, on_bounds_reply, (void (*)(void))cb, data, argc, argv, lens);
}

/* An XRANGE entry: [id, [field, value, ...]] with the field "alert". */
static bool entry_parts(const redisReply *e, const char **seq, const char **alert, size_t *len)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_ARRAY)
        return false;
    const redisReply *fields = e->element[1];
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *k = fields->element[i], *v = fields->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING &&
            strcmp(k->str, "alert") == 0) {
            *seq = e->element[0]->str;
            *alert = v->str;
            *len = (size_t)v->len;
            return true;
        }
    }
    return false;
}

static void on_range_reply(redis_client_t *r, redisReply *reply, void *data)
{
    call_t c = take(data);
    gwstore_range_cb cb = (gwstore_range_cb)c.cb;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        cb(c.data, false, 0, NULL, NULL, NULL);
        return;
    }
    size_t n = reply->elements, k = 0;
    const char **seqs = calloc(n ? n : 1, sizeof *seqs);
    const char **alerts = calloc(n ? n : 1, sizeof *alerts);
    size_t *lens = calloc(n ? n : 1, sizeof *lens);
    if (!seqs || !alerts || !lens) {
        cb(c.data, false, 0, NULL, NULL, NULL);
    } else {
        for (size_t i = 0; i < n; i++)
            if (entry_parts(reply->element[i], &seqs[k], &alerts[k], &lens[k]))
                k++;
        cb(c.data, true, k, seqs, alerts, lens);
    }
    free(seqs);
    free(alerts);
    free(lens);
}

int gwstore_range(redis_client_t *r, const char *agent, const char *after, unsigned count,
                  gwstore_range_cb cb, void *data)
{
    char stream[KEY_MAX], start[GWSTORE_SEQ_MAX + 1], n[16];
    snprintf(stream, sizeof stream, "{g:a:%s}:alerts", agent);
    snprintf(start, sizeof start, "(%s", after);
    snprintf(n, sizeof n, "%u", count);
    const char *argv[] = {"XRANGE", stream, start, "+", "COUNT", n};
    size_t lens[6];
    int argc = strlens(6, argv, lens, 99, 0);
    return send_argv(r, on_range_reply, (void (*)(void))cb, data, argc, argv, lens);
}

int gwstore_record(redis_client_t *r, const char *alert_id, const char *agent, int64_t now_ms,
                   int useful, const char *outcome, gwstore_done_cb cb, void *data)
{
    char key[KEY_MAX], now[24], flag[4];
    snprintf(key, sizeof key, "{g:f:%s}", alert_id);
    snprintf(now, sizeof now, "%lld", (long long)now_ms);
    snprintf(flag, sizeof flag, "%d", useful < 0 ? -1 : useful ? 1 : 0);
    const char *argv[] = {"FCALL", "gw_record", "1", key, agent, now, flag, outcome ? outcome : ""};
    size_t lens[8];
    int argc = strlens(8, argv, lens, 99, 0);
    return send_argv(r, on_done_reply, (void (*)(void))cb, data, argc, argv, lens);
}

/* The engine writes each factor as [feature, value, weight, contribution] (document version
 * 2, services/engine/state.h): clients get the objects they always had. A factor already an
 * object (version 1) or of another shape is left as it is. */
static void expand_factors(cJSON *doc)
{
    static const char *const names[] = {"feature", "value", "weight", "contribution"};
    cJSON *factors = cJSON_GetObjectItemCaseSensitive(doc, "factors");
    if (!cJSON_IsObject(factors))
        return;
    for (cJSON *list = factors->child; list; list = list->next) {
        if (!cJSON_IsArray(list))
            continue;
        int i = 0;
        for (cJSON *item = list->child; item; item = item->next, i++) {
            if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) != 4)
                continue;
            cJSON *object = cJSON_CreateObject();
            if (!object)
                return;
            for (int k = 0; k < 4; k++)
                cJSON_AddItemToObject(object, names[k], cJSON_DetachItemFromArray(item, 0));
            cJSON_ReplaceItemInArray(list, i, object); /* frees item */
            item = object;
        }
    }
}

/* The document parsed, without "w", with its factors as objects and the entries as
 * "timeline"; NULL when it is not a JSON object (an entry that is not JSON is left out). */
static cJSON *customer_from_reply(const redisReply *r)
{
    cJSON *doc = cJSON_ParseWithLength(r->element[0]->str, (size_t)r->element[0]->len);
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        return NULL;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "w");
    expand_factors(doc);
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "timeline");
    cJSON *timeline = cJSON_AddArrayToObject(doc, "timeline");
    for (size_t i = 1; timeline && i < r->elements; i++) {
        const redisReply *e = r->element[i];
        cJSON *entry = e->type == REDIS_REPLY_STRING
                           ? cJSON_ParseWithLength(e->str, (size_t)e->len)
                           : NULL;
        if (cJSON_IsObject(entry))
            cJSON_AddItemToArray(timeline, entry);
        else
            cJSON_Delete(entry);
    }
    return doc;
}

static void on_customer_reply(redis_client_t *r, redisReply *reply, void *data)
{
    (void)r;
    call_t c = take(data);
    gwstore_customer_cb cb = (gwstore_customer_cb)c.cb;
    if (!reply || (reply->type != REDIS_REPLY_NIL &&
                   (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
                    reply->element[0]->type != REDIS_REPLY_STRING))) {
        cb(c.data, false, NULL);
        return;
    }
    cb(c.data, true, reply->type == REDIS_REPLY_NIL ? NULL : customer_from_reply(reply));
}

int gwstore_customer(redis_client_t *r, const char *customer, unsigned timeline_max,
                     gwstore_customer_cb cb, void *data)
{
    char state[KEY_MAX], timeline[KEY_MAX], max[16];
    snprintf(state, sizeof state, "{c:%s}:state", customer);
    snprintf(timeline, sizeof timeline, "{c:%s}:timeline", customer);
    snprintf(max, sizeof max, "%u", timeline_max ? timeline_max : 1);
    const char *argv[] = {"FCALL_RO", "gw_customer", "2", state, timeline, max};
    size_t lens[6];
    int argc = strlens(6, argv, lens, 99, 0);
    return send_argv(r, on_customer_reply, (void (*)(void))cb, data, argc, argv, lens);
}

int gwstore_queues(redis_client_t *r, int64_t now_ms, unsigned max_waiting,
                   int64_t threshold_ms, gwstore_reply_cb cb, void *data)
{
    char now[24], max[16], threshold[24];
    snprintf(now, sizeof now, "%lld", (long long)now_ms);
    snprintf(max, sizeof max, "%u", max_waiting);
    snprintf(threshold, sizeof threshold, "%lld", (long long)threshold_ms);
    const char *argv[] = {"FCALL_RO", "gw_queues", "0", now, max, threshold};
    size_t lens[6];
    int argc = strlens(6, argv, lens, 99, 0);
    return send_argv(r, on_raw_reply, (void (*)(void))cb, data, argc, argv, lens);
}

/* ------------------------------------------------------------------------------------------
 * Stream ids
 * ---------------------------------------------------------------------------------------- */

static bool parse_seq(const char *s, unsigned long long *ms, unsigned long long *seq)
{
    if (!s || !*s || strlen(s) >= GWSTORE_SEQ_MAX)
        return false;
    char *end;
    if (*s < '0' || *s > '9')
        return false;
    *ms = strtoull(s, &end, 10);
    *seq = 0;
    if (*end == '\0')
        return true;
    if (*end != '-' || end[1] < '0' || end[1] > '9')
        return false;
    *seq = strtoull(end + 1, &end, 10);
    return *end == '\0';
}

bool gwstore_id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 128)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("._:@+-", *p)))
            return false;
    return true;
}

bool gwstore_seq_valid(const char *s)
{
    unsigned long long ms, seq;
    return parse_seq(s, &ms, &seq);
}

int gwstore_seq_cmp(const char *a, const char *b)
{
    unsigned long long am = 0, as = 0, bm = 0, bs = 0;
    bool va = parse_seq(a, &am, &as), vb = parse_seq(b, &bm, &bs);
    if (!va || !vb)
        return va - vb;
    if (am != bm)
        return am < bm ? -1 : 1;
    return as < bs ? -1 : as > bs;
}
