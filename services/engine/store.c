/* store.c - partition claims, state loads and fenced batch writes in Redis. See store.h.
 *
 * The write is one FCALL per partition and batch (shared/notes/redis-write-budget.md, shape
 * H): about 3 us of Redis CPU per customer written, pipelined with no extra round trip, the
 * fence checked inside Redis. Values are passed as they are (one opaque string per key): Lua
 * copies each argument once, which is why the document is one value and not a hash. */
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char function_library[] =
    "#!lua name=integral\n"
    "\n"
    "-- KEYS: {p:N}:owner, {p:N}:applied. Takes the partition: owner epoch + 1.\n"
    "-- Returns {epoch, applied offset or -1}.\n"
    "local function claim(keys, args)\n"
    "  local epoch = redis.call('INCR', keys[1])\n"
    "  local applied = redis.call('GET', keys[2])\n"
    "  return {epoch, applied or '-1'}\n"
    "end\n"
    "\n"
    "-- The live queue (read by the gateway): waiting contacts per queue, answered and\n"
    "-- abandoned ones with their wait, agents by state. Every key shares the tag {q}.\n"
    "local function unqueue(contact)\n"
    "  local queue = redis.call('HGET', '{q}:where', contact)\n"
    "  if not queue then return nil end\n"
    "  local since = redis.call('ZSCORE', '{q}:waiting:' .. queue, contact)\n"
    "  redis.call('ZREM', '{q}:waiting:' .. queue, contact)\n"
    "  redis.call('HDEL', '{q}:where', contact)\n"
    "  redis.call('HDEL', '{q}:info', contact)\n"
    "  return queue, tonumber(since)\n"
    "end\n"
    "\n"
    "-- One live-queue operation: op, time (ms), id, queue, info (see store.h).\n"
    "local function queue_op(op, t, id, queue, info)\n"
    "  if op == 'Q' then\n"
    "    unqueue(id)\n"
    "    redis.call('ZADD', '{q}:waiting:' .. queue, t, id)\n"
    "    redis.call('HSET', '{q}:where', id, queue)\n"
    "    redis.call('HSET', '{q}:info', id, info)\n"
    "    redis.call('SADD', '{q}:queues', queue)\n"
    "  elseif op == 'S' or op == 'X' then\n"
    "    local from, since = unqueue(id)\n"
    "    if from and since then\n"
    "      local key = (op == 'S' and '{q}:answered:' or '{q}:abandoned:') .. from\n"
    "      redis.call('ZADD', key, t, id .. '|' .. math.max(0, t - since))\n"
    "      redis.call('ZREMRANGEBYSCORE', key, '-inf', t - 3600000)\n"
    "    end\n"
    "  elseif op == 'E' then\n"
    "    unqueue(id)\n"
    "  elseif op == 'G' then\n"
    "    redis.call('HSET', '{q}:agents', id, info)\n"
    "  end\n"
    "end\n"
    "\n"
    "-- KEYS: {p:N}:owner, {p:N}:applied, then the documents to write.\n"
    "-- ARGV: the caller's epoch, the next offset to apply, one value per document, then the\n"
    "-- live-queue operations, 5 arguments each.\n"
    "-- Writes nothing unless the caller still owns the partition.\n"
    "local function apply(keys, args)\n"
    "  local owner = redis.call('GET', keys[1])\n"
    "  if owner ~= args[1] then\n"
    "    return redis.error_reply('FENCED partition owner epoch is ' .. tostring(owner))\n"
    "  end\n"
    "  for i = 3, #keys do\n"
    "    redis.call('SET', keys[i], args[i])\n"
    "  end\n"
    "  for i = #keys + 1, #args, 5 do\n"
    "    queue_op(args[i], tonumber(args[i + 1]), args[i + 2], args[i + 3], args[i + 4])\n"
    "  end\n"
    "  redis.call('SET', keys[2], args[2])\n"
    "  return 1\n"
    "end\n"
    "\n"
"redis.register_function('integral_claim', claim)\n"
    "redis.register_function('integral_apply', apply)\n";

const char *store_function_library(void)
{
    return function_library;
}

static int format_key(char *out, size_t cap, const char *tag, const char *id)
{
    int n = snprintf(out, cap, "{%s:%s}:state", tag, id);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

int store_customer_key(char *out, size_t cap, const char *customer_id)
{
    return format_key(out, cap, "c", customer_id);
}

int store_agent_key(char *out, size_t cap, const char *agent_id)
{
    return format_key(out, cap, "a", agent_id);
}

/* Topic names are at most 249 bytes: the keys fit in PARTITION_KEY_MAX. */
#define PARTITION_KEY_MAX 300

static void partition_keys(const char *topic, int32_t partition, char *owner, char *applied)
{
    snprintf(owner, PARTITION_KEY_MAX, "{p:%s:%d}:owner", topic, (int)partition);
    snprintf(applied, PARTITION_KEY_MAX, "{p:%s:%d}:applied", topic, (int)partition);
}

/* ------------------------------------------------------------------------------------------
 * Claim and load
 * ---------------------------------------------------------------------------------------- */

typedef struct {
    store_claim_cb cb;
    void *data;
} claim_call_t;

static int64_t reply_integer(const redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type == REDIS_REPLY_STRING)
        return strtoll(r->str, NULL, 10);
    return -1;
}

static void on_claim_reply(redis_client_t *redis, redisReply *reply, void *data)
{
    claim_call_t call = *(claim_call_t *)data;
    free(data);
    if (!reply) {
        call.cb(call.data, STORE_FAILED, 0, 0, redis_client_errstr(redis));
    } else if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        call.cb(call.data, STORE_FAILED, 0, 0,
                reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected claim reply");
    } else {
        call.cb(call.data, STORE_OK, reply_integer(reply->element[0]),
                reply_integer(reply->element[1]), NULL);
    }
}

int store_claim(redis_client_t *redis, const char *topic, int32_t partition, store_claim_cb cb,
                void *data)
{
    claim_call_t *call = malloc(sizeof *call);
    if (!call)
        return STORE_REFUSED;
    *call = (claim_call_t){cb, data};
    char owner[PARTITION_KEY_MAX], applied[PARTITION_KEY_MAX];
    partition_keys(topic, partition, owner, applied);
    int rc = redis_client_command(redis, on_claim_reply, call, "FCALL integral_claim 2 %s %s",
                                  owner, applied);
    if (rc != 0) {
        free(call);
        return STORE_REFUSED;
    }
    return 0;
}

typedef struct {
    store_load_cb cb;
    void *data;
} load_call_t;

static void on_load_reply(redis_client_t *redis, redisReply *reply, void *data)
{
    load_call_t call = *(load_call_t *)data;
    free(data);
    if (!reply || (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_NIL))
        call.cb(call.data, STORE_FAILED, NULL, 0);
    else if (reply->type == REDIS_REPLY_NIL)
        call.cb(call.data, STORE_OK, NULL, 0);
    else
        call.cb(call.data, STORE_OK, reply->str, (size_t)reply->len);
}

int store_load(redis_client_t *redis, const char *key, store_load_cb cb, void *data)
{
    load_call_t *call = malloc(sizeof *call);
    if (!call)
        return STORE_REFUSED;
    *call = (load_call_t){cb, data};
    if (redis_client_command(redis, on_load_reply, call, "GET %s", key) != 0) {
        free(call);
        return STORE_REFUSED;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Batch write
 *
 * Keys and values are appended to one growing buffer; the argv is built at send time, when
 * the buffer no longer moves.
 * ---------------------------------------------------------------------------------------- */

typedef struct {
    size_t key_at, key_len;
    size_t value_at, value_len;
} store_entry_t;

/* A live-queue operation: STORE_OP_FIELDS strings, each at an offset into bytes. */
#define STORE_OP_FIELDS 5

typedef struct {
    size_t at[STORE_OP_FIELDS], len[STORE_OP_FIELDS];
} store_op_t;

struct store_write {
    char topic[250];
    int32_t partition;
    int64_t epoch, next_offset;
    store_entry_t *entries;
    size_t n, cap;
    store_op_t *ops;
    size_t n_ops, cap_ops;
    char *bytes;
    size_t used, bytes_cap;
};

store_write_t *store_write_new(const char *topic, int32_t partition, int64_t epoch,
                               int64_t next_offset)
{
    store_write_t *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    *w = (store_write_t){.partition = partition, .epoch = epoch, .next_offset = next_offset};
    snprintf(w->topic, sizeof w->topic, "%s", topic);
    return w;
}

static int reserve(void **buf, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t grown = *cap ? *cap * 2 : 16;
    while (grown < need)
        grown *= 2;
    void *p = realloc(*buf, grown * elem);
    if (!p)
        return -1;
    *buf = p;
    *cap = grown;
    return 0;
}

int store_write_add(store_write_t *w, const char *key, const char *value, size_t len)
{
    size_t key_len = strlen(key);
    if (reserve((void **)&w->entries, &w->cap, w->n + 1, sizeof *w->entries) < 0 ||
        reserve((void **)&w->bytes, &w->bytes_cap, w->used + key_len + len, 1) < 0)
        return -1;
    store_entry_t *e = &w->entries[w->n++];
    *e = (store_entry_t){w->used, key_len, w->used + key_len, len};
    memcpy(w->bytes + w->used, key, key_len);
    memcpy(w->bytes + w->used + key_len, value, len);
    w->used += key_len + len;
    return 0;
}

/* Appends len bytes to w->bytes; returns their offset, or -1 out of memory. */
static long append_bytes(store_write_t *w, const char *data, size_t len)
{
    if (reserve((void **)&w->bytes, &w->bytes_cap, w->used + len, 1) < 0)
        return -1;
    memcpy(w->bytes + w->used, data, len);
    w->used += len;
    return (long)(w->used - len);
}

int store_write_add_op(store_write_t *w, store_op_kind_t op, int64_t time_ms, const char *id,
                       const char *queue, const char *info, size_t info_len)
{
    char kind[2] = {(char)op, '\0'}, when[24];
    snprintf(when, sizeof when, "%lld", (long long)time_ms);
    const char *fields[STORE_OP_FIELDS] = {kind, when, id, queue ? queue : "", info ? info : ""};
    size_t lens[STORE_OP_FIELDS] = {1, strlen(when), strlen(id), strlen(fields[3]),
                                    info ? info_len : 0};
    if (reserve((void **)&w->ops, &w->cap_ops, w->n_ops + 1, sizeof *w->ops) < 0)
        return -1;
    store_op_t o;
    for (int i = 0; i < STORE_OP_FIELDS; i++) {
        long at = append_bytes(w, fields[i], lens[i]);
        if (at < 0)
            return -1;
        o.at[i] = (size_t)at;
        o.len[i] = lens[i];
    }
    w->ops[w->n_ops++] = o;
    return 0;
}

int store_write_move_ops(store_write_t *dst, store_write_t *src)
{
    int rc = 0;
    for (size_t k = 0; src && k < src->n_ops && rc == 0; k++) {
        const store_op_t *o = &src->ops[k];
        char kind = src->bytes[o->at[0]];
        char when[24];
        snprintf(when, sizeof when, "%.*s", (int)o->len[1], src->bytes + o->at[1]);
        char id[256], queue[256];
        snprintf(id, sizeof id, "%.*s", (int)o->len[2], src->bytes + o->at[2]);
        snprintf(queue, sizeof queue, "%.*s", (int)o->len[3], src->bytes + o->at[3]);
        rc = store_write_add_op(dst, (store_op_kind_t)kind, strtoll(when, NULL, 10), id, queue,
                                src->bytes + o->at[4], o->len[4]);
    }
    store_write_free(src);
    return rc;
}

size_t store_write_ops(const store_write_t *w)
{
    return w->n_ops;
}

size_t store_write_count(const store_write_t *w)
{
    return w->n;
}

size_t store_write_bytes(const store_write_t *w)
{
    return w->used;
}

void store_write_free(store_write_t *w)
{
    if (!w)
        return;
    free(w->entries);
    free(w->ops);
    free(w->bytes);
    free(w);
}

typedef struct {
    store_write_cb cb;
    void *data;
} write_call_t;

static void on_write_reply(redis_client_t *redis, redisReply *reply, void *data)
{
    write_call_t call = *(write_call_t *)data;
    free(data);
    if (!reply)
        call.cb(call.data, STORE_FAILED, redis_client_errstr(redis));
    else if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 1)
        call.cb(call.data, STORE_OK, NULL);
    else if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "FENCED", 6) == 0)
        call.cb(call.data, STORE_FENCED, reply->str);
    else
        call.cb(call.data, STORE_FAILED,
                reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected write reply");
}

int store_write_send(redis_client_t *redis, store_write_t *w, store_write_cb cb, void *data)
{
    /* FCALL integral_apply numkeys owner applied k1..kn epoch offset v1..vn ops... */
    size_t argc = 3 + 2 + w->n + 2 + w->n + STORE_OP_FIELDS * w->n_ops;
    const char **argv = malloc(argc * sizeof *argv);
    size_t *lens = malloc(argc * sizeof *lens);
    write_call_t *call = malloc(sizeof *call);
    int rc = STORE_REFUSED;
    if (argv && lens && call) {
        char numkeys[24], owner[PARTITION_KEY_MAX], applied[PARTITION_KEY_MAX];
        char epoch[24], offset[24];
        snprintf(numkeys, sizeof numkeys, "%zu", 2 + w->n);
        partition_keys(w->topic, w->partition, owner, applied);
        snprintf(epoch, sizeof epoch, "%lld", (long long)w->epoch);
        snprintf(offset, sizeof offset, "%lld", (long long)w->next_offset);
        const char *head[] = {"FCALL", "integral_apply", numkeys, owner, applied};
        size_t i = 0;
        for (; i < 5; i++) {
            argv[i] = head[i];
            lens[i] = strlen(head[i]);
        }
        for (size_t k = 0; k < w->n; k++, i++) {
            argv[i] = w->bytes + w->entries[k].key_at;
            lens[i] = w->entries[k].key_len;
        }
        argv[i] = epoch, lens[i++] = strlen(epoch);
        argv[i] = offset, lens[i++] = strlen(offset);
        for (size_t k = 0; k < w->n; k++, i++) {
            argv[i] = w->bytes + w->entries[k].value_at;
            lens[i] = w->entries[k].value_len;
        }
        for (size_t k = 0; k < w->n_ops; k++) {
            for (int f = 0; f < STORE_OP_FIELDS; f++, i++) {
                argv[i] = w->bytes + w->ops[k].at[f];
                lens[i] = w->ops[k].len[f];
            }
        }
        *call = (write_call_t){cb, data};
        if (redis_client_command_argv(redis, on_write_reply, call, (int)argc, argv, lens) == 0)
            rc = 0;
    }
    if (rc != 0)
        free(call);
    free(argv);
    free(lens);
    store_write_free(w);
    return rc;
}
