/* store.c - partition claims, state loads and fenced batch writes in Redis. See store.h.
 *
 * The write is one FCALL per partition and write (one batch, or several merged by the
 * pipeline's group commit: store_write_send_many) (shared/notes/redis-write-budget.md, shape
 * H): about 3 us of Redis CPU per customer written, pipelined with no extra round trip, the
 * fence checked inside Redis. Values are passed as they are (one opaque string per key): Lua
 * copies each argument once, which is why the document is one value and not a hash. */
#include "store.h"

#include <stdbool.h>
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
 * Keys and values are appended to one growing buffer (a document is serialized straight into
 * it: store_write_begin/commit); the argv is built at send time, when the buffers no longer
 * move. A write's buffers are kept by store_write_reset, so a recycled write allocates
 * nothing.
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
    size_t begun_key_len; /* store_write_begin: the key is in place, the value follows */
};

store_write_t *store_write_new(const char *topic, int32_t partition, int64_t epoch,
                               int64_t next_offset)
{
    store_write_t *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    store_write_reset(w, topic, partition, epoch, next_offset);
    return w;
}

void store_write_reset(store_write_t *w, const char *topic, int32_t partition, int64_t epoch,
                       int64_t next_offset)
{
    w->partition = partition;
    w->epoch = epoch;
    w->next_offset = next_offset;
    w->n = w->n_ops = w->used = w->begun_key_len = 0;
    snprintf(w->topic, sizeof w->topic, "%s", topic);
}

void store_write_set_offset(store_write_t *w, int64_t next_offset)
{
    w->next_offset = next_offset;
}

size_t store_write_capacity(const store_write_t *w)
{
    return w->bytes_cap + w->cap * sizeof *w->entries + w->cap_ops * sizeof *w->ops;
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

static int reserve_bytes(store_write_t *w, size_t need)
{
    if (need <= w->bytes_cap)
        return 0;
    if (need < 32 * 1024)
        need = 32 * 1024; /* no small steps */
    return reserve((void **)&w->bytes, &w->bytes_cap, need, 1);
}

char *store_write_begin(store_write_t *w, const char *key, size_t max_len)
{
    size_t key_len = strlen(key);
    if (reserve((void **)&w->entries, &w->cap, w->n + 1, sizeof *w->entries) < 0 ||
        reserve_bytes(w, w->used + key_len + max_len) < 0)
        return NULL;
    memcpy(w->bytes + w->used, key, key_len);
    w->begun_key_len = key_len;
    return w->bytes + w->used + key_len;
}

void store_write_commit(store_write_t *w, size_t len)
{
    size_t key_len = w->begun_key_len;
    w->entries[w->n++] = (store_entry_t){w->used, key_len, w->used + key_len, len};
    w->used += key_len + len;
    w->begun_key_len = 0;
}

int store_write_add(store_write_t *w, const char *key, const char *value, size_t len)
{
    char *at = store_write_begin(w, key, len);
    if (!at)
        return -1;
    memcpy(at, value, len);
    store_write_commit(w, len);
    return 0;
}

/* Appends len bytes to w->bytes; returns their offset, or -1 out of memory. */
static long append_bytes(store_write_t *w, const char *data, size_t len)
{
    if (reserve_bytes(w, w->used + len) < 0)
        return -1;
    memcpy(w->bytes + w->used, data, len);
    w->used += len;
    return (long)(w->used - len);
}

static int add_op_fields(store_write_t *w, const char *const fields[STORE_OP_FIELDS],
                         const size_t lens[STORE_OP_FIELDS])
{
    if (reserve((void **)&w->ops, &w->cap_ops, w->n_ops + 1, sizeof *w->ops) < 0)
        return -1;
    size_t total = 0;
    for (int i = 0; i < STORE_OP_FIELDS; i++)
        total += lens[i];
    if (reserve_bytes(w, w->used + total) < 0)
        return -1;
    store_op_t o;
    for (int i = 0; i < STORE_OP_FIELDS; i++) {
        o.at[i] = (size_t)append_bytes(w, fields[i], lens[i]);
        o.len[i] = lens[i];
    }
    w->ops[w->n_ops++] = o;
    return 0;
}

int store_write_add_op(store_write_t *w, store_op_kind_t op, int64_t time_ms, const char *id,
                       const char *queue, const char *info, size_t info_len)
{
    char kind[2] = {(char)op, '\0'}, when[24];
    snprintf(when, sizeof when, "%lld", (long long)time_ms);
    const char *fields[STORE_OP_FIELDS] = {kind, when, id, queue ? queue : "", info ? info : ""};
    size_t lens[STORE_OP_FIELDS] = {1, strlen(when), strlen(id), strlen(fields[3]),
                                    info ? info_len : 0};
    return add_op_fields(w, fields, lens);
}

int store_write_copy_ops(store_write_t *dst, const store_write_t *src)
{
    for (size_t k = 0; src && k < src->n_ops; k++) {
        const store_op_t *o = &src->ops[k];
        const char *fields[STORE_OP_FIELDS];
        for (int i = 0; i < STORE_OP_FIELDS; i++)
            fields[i] = src->bytes + o->at[i];
        if (add_op_fields(dst, fields, o->len) < 0)
            return -1;
    }
    return 0;
}

int store_write_move_ops(store_write_t *dst, store_write_t *src)
{
    int rc = store_write_copy_ops(dst, src);
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

/* ------------------------------------------------------------------------------------------
 * The FCALL of one or more writes of a partition
 * ---------------------------------------------------------------------------------------- */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

void store_command_free(store_command_t *cmd)
{
    free(cmd->argv);
    free(cmd->lens);
    cmd->argv = NULL;
    cmd->lens = NULL;
    cmd->argc = 0;
}

/* The entries to write, newest first, each key once (the newest value): picks[] gets
 * (write index, entry index) pairs; returns how many, or -1 out of memory. */
static long pick_entries(store_write_t *const *ws, size_t n, size_t total, size_t (*picks)[2])
{
    if (n == 1) {
        for (size_t k = 0; k < total; k++)
            picks[k][0] = 0, picks[k][1] = k;
        return (long)total;
    }
    size_t slots = 16;
    while (slots < total * 2)
        slots *= 2;
    const store_entry_t **table = calloc(slots, sizeof *table);
    const store_write_t **owner = calloc(slots, sizeof *owner);
    if (!table || !owner) {
        free(table);
        free((void *)owner);
        return -1;
    }
    long m = 0;
    for (size_t i = n; i-- > 0;) {
        const store_write_t *w = ws[i];
        for (size_t k = 0; k < w->n; k++) {
            const store_entry_t *e = &w->entries[k];
            const char *key = w->bytes + e->key_at;
            size_t s = (size_t)hash_bytes(key, e->key_len) & (slots - 1);
            bool seen = false;
            for (; table[s]; s = (s + 1) & (slots - 1)) {
                const store_entry_t *t = table[s];
                if (t->key_len == e->key_len &&
                    memcmp(owner[s]->bytes + t->key_at, key, e->key_len) == 0) {
                    seen = true;
                    break;
                }
            }
            if (seen)
                continue;
            table[s] = e;
            owner[s] = w;
            picks[m][0] = i;
            picks[m][1] = k;
            m++;
        }
    }
    free(table);
    free((void *)owner);
    return m;
}

int store_command_build(store_command_t *cmd, store_write_t *const *ws, size_t n)
{
    memset(cmd, 0, sizeof *cmd);
    if (n == 0)
        return -1;
    size_t total = 0, ops = 0;
    for (size_t i = 0; i < n; i++) {
        total += ws[i]->n;
        ops += ws[i]->n_ops;
    }
    size_t(*picks)[2] = malloc((total ? total : 1) * sizeof *picks);
    long m = picks ? pick_entries(ws, n, total, picks) : -1;
    size_t argc = 5 + 2 + 2 * (m < 0 ? 0 : (size_t)m) + STORE_OP_FIELDS * ops;
    cmd->argv = malloc(argc * sizeof *cmd->argv);
    cmd->lens = malloc(argc * sizeof *cmd->lens);
    if (m < 0 || !cmd->argv || !cmd->lens) {
        free(picks);
        store_command_free(cmd);
        return -1;
    }
    /* FCALL integral_apply numkeys owner applied k1..km epoch offset v1..vm ops... */
    const store_write_t *last = ws[n - 1];
    snprintf(cmd->numkeys, sizeof cmd->numkeys, "%zu", 2 + (size_t)m);
    snprintf(cmd->owner, sizeof cmd->owner, "{p:%s:%d}:owner", last->topic, (int)last->partition);
    snprintf(cmd->applied, sizeof cmd->applied, "{p:%s:%d}:applied", last->topic,
             (int)last->partition);
    snprintf(cmd->epoch, sizeof cmd->epoch, "%lld", (long long)last->epoch);
    snprintf(cmd->offset, sizeof cmd->offset, "%lld", (long long)last->next_offset);
    const char *head[] = {"FCALL", "integral_apply", cmd->numkeys, cmd->owner, cmd->applied};
    size_t a = 0;
    for (; a < 5; a++) {
        cmd->argv[a] = head[a];
        cmd->lens[a] = strlen(head[a]);
    }
    for (long k = 0; k < m; k++, a++) {
        const store_write_t *w = ws[picks[k][0]];
        const store_entry_t *e = &w->entries[picks[k][1]];
        cmd->argv[a] = w->bytes + e->key_at;
        cmd->lens[a] = e->key_len;
    }
    cmd->argv[a] = cmd->epoch, cmd->lens[a++] = strlen(cmd->epoch);
    cmd->argv[a] = cmd->offset, cmd->lens[a++] = strlen(cmd->offset);
    for (long k = 0; k < m; k++, a++) {
        const store_write_t *w = ws[picks[k][0]];
        const store_entry_t *e = &w->entries[picks[k][1]];
        cmd->argv[a] = w->bytes + e->value_at;
        cmd->lens[a] = e->value_len;
    }
    for (size_t i = 0; i < n; i++) {
        const store_write_t *w = ws[i];
        for (size_t k = 0; k < w->n_ops; k++) {
            for (int f = 0; f < STORE_OP_FIELDS; f++, a++) {
                cmd->argv[a] = w->bytes + w->ops[k].at[f];
                cmd->lens[a] = w->ops[k].len[f];
            }
        }
    }
    free(picks);
    cmd->argc = (int)a;
    cmd->docs = (size_t)m;
    return 0;
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

int store_write_send_many(redis_client_t *redis, store_write_t *const *ws, size_t n,
                          store_write_cb cb, void *data, size_t *docs)
{
    store_command_t cmd;
    write_call_t *call = malloc(sizeof *call);
    if (!call || store_command_build(&cmd, ws, n) < 0) {
        free(call);
        return STORE_REFUSED;
    }
    *call = (write_call_t){cb, data};
    int rc = redis_client_command_argv(redis, on_write_reply, call, cmd.argc, cmd.argv,
                                       cmd.lens) == 0
                 ? 0
                 : STORE_REFUSED;
    if (rc != 0)
        free(call);
    else if (docs)
        *docs = cmd.docs;
    store_command_free(&cmd);
    return rc;
}

int store_write_send(redis_client_t *redis, store_write_t *w, store_write_cb cb, void *data)
{
    int rc = store_write_send_many(redis, &w, 1, cb, data, NULL);
    store_write_free(w);
    return rc;
}
