/* store.c - partition claims, state loads and fenced batch writes in Redis. See store.h.
 *
 * Writes are WATCH-fenced transactions (see "The writer" below; shared/notes/
 * redis-write-budget.md, shape X): every document is one opaque value written by a native
 * MSET, so Redis never copies it into Lua and back. */
#include "store.h"

#include "jsonw.h" /* jsonw_digits */

#include <stdbool.h>
#include <stdint.h>
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
    "  local info = redis.call('HGET', '{q}:info', contact)\n"
    "  if not info then return nil end\n"
    "  local ok, snapshot = pcall(cjson.decode, info)\n"
    "  local queue = ok and type(snapshot) == 'table' and snapshot.queue\n"
    "  redis.call('HDEL', '{q}:info', contact)\n"
    "  if type(queue) ~= 'string' then return nil end\n"
    "  local since = redis.call('ZSCORE', '{q}:waiting:' .. queue, contact)\n"
    "  redis.call('ZREM', '{q}:waiting:' .. queue, contact)\n"
    "  return queue, tonumber(since)\n"
    "end\n"
    "\n"
    "-- An abandon (x) or end (e) at time t of a contact that was not the customer's current\n"
    "-- one: the engine does not know where it waits, its snapshot in {q}:info does. The\n"
    "-- other operations are native commands (store.c).\n"
    "local function queue_op(op, t, id)\n"
    "  local from, since = unqueue(id)\n"
    "  if op == 'x' and from and since then\n"
    "    local key = '{q}:abandoned:' .. from\n"
    "    redis.call('ZADD', key, t, id .. '|' .. math.max(0, t - since))\n"
    "    redis.call('ZREMRANGEBYSCORE', key, '-inf', t - 3600000)\n"
    "  end\n"
    "end\n"
    "\n"
    "-- ARGV: live-queue operations, 5 arguments each. Called inside the fenced transaction\n"
    "-- that writes the documents (store.c), after them.\n"
    "local function queue(keys, args)\n"
    "  for i = 1, #args, 5 do\n"
    "    queue_op(args[i], tonumber(args[i + 1]), args[i + 2])\n"
    "  end\n"
    "  return 1\n"
    "end\n"
    "\n"
    "redis.register_function('integral_claim', claim)\n"
    "redis.register_function('integral_queue', queue)\n";

const char *store_function_library(void)
{
    return function_library;
}

/* The keys and numbers of every write are put together here without snprintf: through it
 * they cost ~700-900 instructions each, several per event (callgrind, tests/bench). */

/* out = a b c and a NUL; returns the length, or -1 when it does not fit in cap. */
static int concat3(char *out, size_t cap, const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    if (la + lb + lc >= cap)
        return -1;
    memcpy(out, a, la);
    memcpy(out + la, b, lb);
    memcpy(out + la + lb, c, lc + 1);
    return (int)(la + lb + lc);
}

/* v in decimal and a NUL at out (at least 21 bytes); returns the length. */
static size_t format_i64(char *out, int64_t v)
{
    char tmp[24], *end = tmp + sizeof tmp;
    char *at = jsonw_digits(end, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
    if (v < 0)
        *--at = '-';
    size_t n = (size_t)(end - at);
    memcpy(out, at, n);
    out[n] = '\0';
    return n;
}

static int format_key(char *out, size_t cap, const char *tag, const char *id)
{
    return concat3(out, cap, tag, id, "}:state");
}

int store_customer_key(char *out, size_t cap, const char *customer_id)
{
    return format_key(out, cap, "{c:", customer_id);
}

int store_agent_key(char *out, size_t cap, const char *agent_id)
{
    return format_key(out, cap, "{a:", agent_id);
}

int store_timeline_key(char *out, size_t cap, const char *customer_id)
{
    return concat3(out, cap, "{c:", customer_id, "}:timeline");
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

/* The capacity a buffer of cap elements grows to so as to hold need (> cap): doubling. */
static size_t grown_capacity(size_t cap, size_t need)
{
    size_t grown = cap ? cap * 2 : 16;
    while (grown < need)
        grown *= 2;
    return grown;
}

static int reserve(void **buf, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t grown = grown_capacity(*cap, need);
    void *p = realloc(*buf, grown * elem);
    if (!p)
        return -1;
    *buf = p;
    *cap = grown;
    return 0;
}

/* Grows a byte buffer of which `used` bytes are in use to hold at least `need`. Not realloc:
 * glibc's realloc copies the whole old block, room never written included, and every page it
 * writes is one the kernel must map (~12 us each on the VM of tests/bench/README.md); a
 * document reserves 16 KB and writes about 2. Only the bytes in use are copied here. */
static int grow_bytes(char **buf, size_t *cap, size_t used, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t grown = grown_capacity(*cap, need);
    char *p = malloc(grown);
    if (!p)
        return -1;
    if (used)
        memcpy(p, *buf, used);
    free(*buf);
    *buf = p;
    *cap = grown;
    return 0;
}

static int reserve_bytes(store_write_t *w, size_t need)
{
    if (need <= w->bytes_cap)
        return 0;
    /* Small first: every open batch has a write (its live-queue and timeline operations
     * come first), hundreds are alive under a backlog, and most stay small. Doubling from
     * 4 KiB copies at most the final size once more (grow_bytes copies only what is used).
     * This did not change the engine's peak RSS in the benchmark (tests/bench/README.md). */
    if (need < 4096)
        need = 4096;
    return grow_bytes(&w->bytes, &w->bytes_cap, w->used, need);
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
    size_t when_len = format_i64(when, time_ms);
    const char *fields[STORE_OP_FIELDS] = {kind, when, id, queue ? queue : "", info ? info : ""};
    size_t lens[STORE_OP_FIELDS] = {1, when_len, strlen(id), strlen(fields[3]),
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

/* Timeline entries (STORE_OP_TIMELINE) are not live-queue operations: they become native
 * LPUSH commands (job_add_pushes), not arguments of the Lua function. */
static bool op_is_push(const store_write_t *w, size_t k)
{
    return w->ops[k].len[0] == 1 && w->bytes[w->ops[k].at[0]] == STORE_OP_TIMELINE;
}

/* ------------------------------------------------------------------------------------------
 * The command of one or more writes of a partition
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
    cmd->pair_args = cmd->op_args = 0;
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
        for (size_t k = 0; k < ws[i]->n_ops; k++)
            ops += !op_is_push(ws[i], k);
    }
    size_t(*picks)[2] = malloc((total ? total : 1) * sizeof *picks);
    long m = picks ? pick_entries(ws, n, total, picks) : -1;
    size_t argc = 2 * (m < 0 ? 0 : (size_t)m) + 2 + STORE_OP_FIELDS * ops;
    cmd->argv = malloc(argc * sizeof *cmd->argv);
    cmd->lens = malloc(argc * sizeof *cmd->lens);
    if (m < 0 || !cmd->argv || !cmd->lens) {
        free(picks);
        store_command_free(cmd);
        return -1;
    }
    const store_write_t *last = ws[n - 1];
    partition_keys(last->topic, last->partition, cmd->owner, cmd->applied);
    snprintf(cmd->epoch, sizeof cmd->epoch, "%lld", (long long)last->epoch);
    snprintf(cmd->offset, sizeof cmd->offset, "%lld", (long long)last->next_offset);
    size_t a = 0;
    for (long k = 0; k < m; k++) {
        const store_write_t *w = ws[picks[k][0]];
        const store_entry_t *e = &w->entries[picks[k][1]];
        cmd->argv[a] = w->bytes + e->key_at, cmd->lens[a++] = e->key_len;
        cmd->argv[a] = w->bytes + e->value_at, cmd->lens[a++] = e->value_len;
    }
    cmd->argv[a] = cmd->applied, cmd->lens[a++] = strlen(cmd->applied);
    cmd->argv[a] = cmd->offset, cmd->lens[a++] = strlen(cmd->offset);
    cmd->pair_args = a;
    for (size_t i = 0; i < n; i++) {
        const store_write_t *w = ws[i];
        for (size_t k = 0; k < w->n_ops; k++) {
            if (op_is_push(w, k))
                continue; /* LPUSH, see job_add_pushes */
            for (int f = 0; f < STORE_OP_FIELDS; f++, a++) {
                cmd->argv[a] = w->bytes + w->ops[k].at[f];
                cmd->lens[a] = w->ops[k].len[f];
            }
        }
    }
    free(picks);
    cmd->op_args = a - cmd->pair_args;
    cmd->docs = (size_t)m;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * RESP, written by hand: the documents go from the write's buffer into the command once.
 * ---------------------------------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
} resp_t;

static int resp_reserve(resp_t *b, size_t more)
{
    return grow_bytes(&b->p, &b->cap, b->len, b->len + more);
}

/* Writes c, n in decimal and CRLF at p (at most 23 bytes); returns how many. */
static size_t put_header(char *p, char c, size_t n)
{
    char tmp[20], *end = tmp + sizeof tmp, *at = jsonw_digits(end, n);
    size_t digits = (size_t)(end - at);
    p[0] = c;
    memcpy(p + 1, at, digits);
    p[1 + digits] = '\r';
    p[2 + digits] = '\n';
    return digits + 3;
}

/* "$<len>\r\n<bytes>\r\n" per argument. 32 bytes cover the rest: "$", 20 digits, two CRLF
 * and the NUL. The buffer always ends with a NUL past len: hiredis 0.14 scans a formatted
 * command's name with strchr. */
static int resp_args(resp_t *b, size_t argc, const char *const *argv, const size_t *lens)
{
    size_t need = 1;
    for (size_t i = 0; i < argc; i++)
        need += lens[i] + 32;
    if (resp_reserve(b, need) < 0)
        return -1;
    for (size_t i = 0; i < argc; i++) {
        b->len += put_header(b->p + b->len, '$', lens[i]);
        memcpy(b->p + b->len, argv[i], lens[i]);
        b->len += lens[i];
        b->p[b->len++] = '\r';
        b->p[b->len++] = '\n';
    }
    b->p[b->len] = '\0';
    return 0;
}

static int resp_header(resp_t *b, size_t argc, const char *name)
{
    if (resp_reserve(b, 32) < 0)
        return -1;
    b->len += put_header(b->p + b->len, '*', argc);
    size_t len = strlen(name);
    return resp_args(b, 1, &name, &len);
}

/* ------------------------------------------------------------------------------------------
 * The writer: fenced transactions
 *
 * One transaction at a time on the connection, holding every write that is ready:
 *   WATCH owner...  +  MGET owner...            (one round trip)
 *   the jobs whose owner epoch is no longer theirs are FENCED; for the others:
 *   MULTI, per write: MSET k v ... applied offset, FCALL integral_queue 0 ops..., an LPUSH
 *   (and LTRIM) per timeline; EXEC
 * EXEC does nothing when an owner key changed after WATCH (a claim slipped in): the
 * transaction starts over, and the MGET then tells who lost its partition. Documents go in
 * one native MSET, not through Lua: shared/notes/redis-write-budget.md measured 1.5 us of
 * Redis CPU per 1 KB value this way against 3.0 through a function, which copies every
 * argument into Lua and back. Writes that become ready meanwhile wait for the next
 * transaction, so the busier the engine, the larger each transaction.
 *
 * Pacing: while less than PACE_BYTES is queued, a transaction starts at most every pace_ms
 * (STORE_PACE_MS). At moderate rates a transaction otherwise carries a few events (2.7 at
 * 4,000 events/s over 64 partitions in the benchmark; 9.2 paced) and its fixed part - WATCH, MGET, MULTI, EXEC, two round trips, Redis's reads,
 * AOF write and wakeups, the engine's replies - is most of what each event costs. Alerts do
 * not wait for it (they are produced when the event is applied); the applied offset and the
 * state other services read become visible up to pace_ms later. Measured at 4,000 events/s
 * (tests/bench/README.md): Redis 52.0 / 53.5 -> 42.1 / 42.3 us per event.
 * ---------------------------------------------------------------------------------------- */

#define ABORTS_MAX 16 /* EXEC aborted this many times in a row: give up (re-sync) */
#define PACE_BYTES (256u * 1024) /* this much queued starts the next one without pacing */
#define SPARE_JOBS_MAX 64
#define SPARE_JOB_BYTES_MAX (2u * 1024 * 1024)

typedef struct store_job store_job_t;
struct store_job {
    store_job_t *next;
    store_write_cb cb;
    void *data;
    char owner[PARTITION_KEY_MAX];
    char epoch[24];
    resp_t pairs;   /* the job's MSET, in RESP */
    resp_t cmds;    /* its other commands, one after the other, in RESP: the live queue's,
                       then the timelines' LPUSH and LTRIM */
    size_t *cmd_at; /* where each command of cmds starts (n_cmds + 1 offsets) */
    size_t n_cmds, cap_cmd_at;
};

struct store_writer {
    redis_client_t *redis;
    uv_timer_t pace;         /* armed: the queued jobs start a transaction when it fires */
    uint64_t pace_ms;
    uint64_t last_start_ms;  /* loop time the latest transaction started */
    size_t queued_bytes;
    store_job_t *queued, *queued_tail; /* for the next transaction, in arrival order */
    store_job_t *tx;                   /* the transaction in flight */
    size_t tx_jobs;
    bool in_flight;
    bool orphaned; /* freed while in flight: the last reply frees it */
    unsigned aborts;
    store_job_t *spare;
    size_t n_spare;
    store_writer_stats_t stats;
};

store_writer_t *store_writer_new(redis_client_t *redis, uv_loop_t *loop, unsigned pace_ms)
{
    store_writer_t *sw = calloc(1, sizeof *sw);
    if (!sw)
        return NULL;
    sw->redis = redis;
    sw->pace_ms = pace_ms;
    uv_timer_init(loop, &sw->pace);
    sw->pace.data = sw;
    return sw;
}

const store_writer_stats_t *store_writer_stats(const store_writer_t *sw)
{
    return &sw->stats;
}

static void job_destroy(store_job_t *j)
{
    free(j->pairs.p);
    free(j->cmds.p);
    free(j->cmd_at);
    free(j);
}

static void jobs_destroy(store_job_t *j)
{
    while (j) {
        store_job_t *next = j->next;
        job_destroy(j);
        j = next;
    }
}

static store_job_t *job_alloc(store_writer_t *sw)
{
    store_job_t *j = sw->spare;
    if (j) {
        sw->spare = j->next;
        sw->n_spare--;
    } else if (!(j = calloc(1, sizeof *j))) {
        return NULL;
    }
    j->next = NULL;
    j->pairs.len = j->cmds.len = 0;
    j->n_cmds = 0;
    return j;
}

static void job_recycle(store_writer_t *sw, store_job_t *j)
{
    if (sw->n_spare >= SPARE_JOBS_MAX ||
        j->pairs.cap + j->cmds.cap > SPARE_JOB_BYTES_MAX) {
        job_destroy(j);
        return;
    }
    j->next = sw->spare;
    sw->spare = j;
    sw->n_spare++;
}

static void on_pace_closed(uv_handle_t *handle)
{
    free(handle->data);
}

/* Frees the jobs now and the writer once its timer is closed. */
static void writer_destroy(store_writer_t *sw)
{
    jobs_destroy(sw->queued);
    jobs_destroy(sw->tx);
    jobs_destroy(sw->spare);
    sw->queued = sw->tx = sw->spare = NULL;
    uv_close((uv_handle_t *)&sw->pace, on_pace_closed);
}

void store_writer_free(store_writer_t *sw)
{
    if (!sw)
        return;
    if (sw->in_flight) { /* nobody is called back any more; the reply frees it */
        sw->orphaned = true;
        return;
    }
    writer_destroy(sw);
}

/* Calls back every job of list (detached by the caller) and recycles it. */
static void jobs_finish(store_writer_t *sw, store_job_t *list, int status, const char *reason)
{
    while (list) {
        store_job_t *j = list;
        list = j->next;
        j->cb(j->data, status, reason);
        job_recycle(sw, j);
    }
}

static int tx_start(store_writer_t *sw);
static void on_pace(uv_timer_t *timer);

/* Whether what is queued waits for the pace timer (armed now if it was not): a transaction
 * started less than pace_ms ago and little is queued. */
static bool tx_paced(store_writer_t *sw)
{
    if (uv_is_active((uv_handle_t *)&sw->pace))
        return true;
    uint64_t since = uv_now(sw->pace.loop) - sw->last_start_ms;
    if (since >= sw->pace_ms || sw->queued_bytes >= PACE_BYTES)
        return false;
    uv_timer_start(&sw->pace, on_pace, sw->pace_ms - since, 0);
    return true;
}

/* Starts a transaction of every queued job unless it waits for the pace timer; the jobs of
 * one that cannot be sent fail (called back). */
static void tx_next(store_writer_t *sw)
{
    while (!sw->in_flight && sw->queued && !tx_paced(sw) && tx_start(sw) < 0) {
        store_job_t *failed = sw->tx;
        sw->tx = NULL;
        sw->tx_jobs = 0;
        jobs_finish(sw, failed, STORE_FAILED, redis_client_errstr(sw->redis));
    }
}

static void on_pace(uv_timer_t *timer)
{
    tx_next(timer->data);
}

/* The transaction is over: the next one starts with what queued meanwhile (or is paced),
 * then its jobs (list) are called back. So nothing is queued while no transaction is in
 * flight unless the pace timer is armed, and a callback that writes again only queues (or
 * starts a transaction of its own job). */
static void tx_finish(store_writer_t *sw, store_job_t *list, int status, const char *reason)
{
    sw->tx = NULL;
    sw->tx_jobs = 0;
    sw->in_flight = false;
    tx_next(sw);
    jobs_finish(sw, list, status, reason);
}

/* WATCH and MGET of every job's owner key: argv of 1 + jobs. */
static int tx_send_watch(store_writer_t *sw, const char *verb, redis_reply_cb cb)
{
    const char **argv = malloc((sw->tx_jobs + 1) * sizeof *argv);
    size_t *lens = malloc((sw->tx_jobs + 1) * sizeof *lens);
    int rc = -1;
    if (argv && lens) {
        argv[0] = verb;
        lens[0] = strlen(verb);
        size_t i = 1;
        for (store_job_t *j = sw->tx; j; j = j->next, i++) {
            argv[i] = j->owner;
            lens[i] = strlen(j->owner);
        }
        rc = redis_client_command_argv(sw->redis, cb, sw, (int)i, argv, lens);
    }
    free(argv);
    free(lens);
    return rc;
}

static void on_owners(redis_client_t *redis, redisReply *reply, void *data);

/* Takes every queued job into a transaction and sends its WATCH + MGET. On failure the jobs
 * are left in sw->tx for the caller and -1 is returned. */
static int tx_start(store_writer_t *sw)
{
    sw->tx = sw->queued;
    sw->queued = sw->queued_tail = NULL;
    sw->queued_bytes = 0;
    sw->last_start_ms = uv_now(sw->pace.loop);
    sw->tx_jobs = 0;
    for (store_job_t *j = sw->tx; j; j = j->next)
        sw->tx_jobs++;
    if (redis_client_room(sw->redis) < 2 || tx_send_watch(sw, "WATCH", NULL) != 0 ||
        tx_send_watch(sw, "MGET", on_owners) != 0)
        return -1;
    sw->in_flight = true;
    sw->stats.transactions++;
    return 0;
}

static void on_exec(redis_client_t *redis, redisReply *reply, void *data);

/* The number of commands a job adds to the transaction: its MSET and the others. */
static unsigned job_commands(const store_job_t *j)
{
    return 1 + (unsigned)j->n_cmds;
}

/* MULTI, then each kept job's MSET (documents and applied offset) and its other commands
 * (live queue, timelines), EXEC. Returns 0 or -1 (nothing more was sent, or the connection
 * is failing). */
static int tx_send_body(store_writer_t *sw)
{
    static const char *multi = "MULTI", *exec = "EXEC";
    static const size_t multi_len = 5, exec_len = 4;
    unsigned commands = 2;
    for (store_job_t *j = sw->tx; j; j = j->next)
        commands += job_commands(j);
    if (redis_client_room(sw->redis) < commands ||
        redis_client_command_argv(sw->redis, NULL, NULL, 1, &multi, &multi_len) != 0)
        return -1;
    for (store_job_t *j = sw->tx; j; j = j->next) {
        if (redis_client_command_formatted(sw->redis, NULL, NULL, j->pairs.p, j->pairs.len) != 0)
            return -1; /* only when the connection is going: it takes the MULTI with it */
        for (size_t i = 0; i < j->n_cmds; i++)
            if (redis_client_command_formatted(sw->redis, NULL, NULL, j->cmds.p + j->cmd_at[i],
                                               j->cmd_at[i + 1] - j->cmd_at[i]) != 0)
                return -1;
    }
    return redis_client_command_argv(sw->redis, on_exec, sw, 1, &exec, &exec_len);
}

/* The writer a transaction's reply is for, or NULL when it was freed meanwhile: it goes now
 * (the replies it waits for are MGET's or EXEC's, one at a time). */
static store_writer_t *writer_alive(void *data)
{
    store_writer_t *sw = data;
    if (!sw->orphaned)
        return sw;
    writer_destroy(sw);
    return NULL;
}

static bool owner_is(const redisReply *r, const char *epoch)
{
    return r->type == REDIS_REPLY_STRING && strcmp(r->str, epoch) == 0;
}

static void on_owners(redis_client_t *redis, redisReply *reply, void *data)
{
    (void)redis;
    store_writer_t *sw = writer_alive(data);
    if (!sw)
        return;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != sw->tx_jobs) {
        tx_finish(sw, sw->tx, STORE_FAILED,
                  !reply                               ? redis_client_errstr(sw->redis)
                  : reply->type == REDIS_REPLY_ERROR ? reply->str
                                                       : "unexpected MGET reply");
        return;
    }
    /* Split: the jobs that still own their partition stay in the transaction. */
    store_job_t *kept = NULL, **kept_tail = &kept, *fenced = NULL, **fenced_tail = &fenced;
    size_t i = 0, n_kept = 0;
    char reason[96] = "FENCED";
    for (store_job_t *j = sw->tx, *next; j; j = next, i++) {
        next = j->next;
        j->next = NULL;
        if (owner_is(reply->element[i], j->epoch)) {
            *kept_tail = j, kept_tail = &j->next;
            n_kept++;
        } else {
            *fenced_tail = j, fenced_tail = &j->next;
            snprintf(reason, sizeof reason, "FENCED partition owner epoch is %s",
                     reply->element[i]->type == REDIS_REPLY_STRING ? reply->element[i]->str
                                                                   : "nil");
        }
    }
    sw->tx = kept;
    sw->tx_jobs = n_kept;
    sw->stats.fenced += fenced ? 1 : 0;
    if (!kept) {
        static const char *unwatch = "UNWATCH";
        static const size_t unwatch_len = 7;
        redis_client_command_argv(sw->redis, NULL, NULL, 1, &unwatch, &unwatch_len);
        tx_finish(sw, fenced, STORE_FENCED, reason);
        return;
    }
    if (tx_send_body(sw) != 0) {
        tx_finish(sw, kept, STORE_FAILED, "cannot send the transaction");
        jobs_finish(sw, fenced, STORE_FENCED, reason);
        return;
    }
    jobs_finish(sw, fenced, STORE_FENCED, reason);
}

/* EXEC's reply: one element per command; any error fails the transaction's jobs. */
static const char *exec_failure(const redisReply *r, size_t expect)
{
    if (r->type == REDIS_REPLY_ERROR)
        return r->str;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != expect)
        return "unexpected EXEC reply";
    for (size_t i = 0; i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_ERROR)
            return r->element[i]->str;
    return NULL;
}

static void on_exec(redis_client_t *redis, redisReply *reply, void *data)
{
    (void)redis;
    store_writer_t *sw = writer_alive(data);
    if (!sw)
        return;
    if (!reply) {
        tx_finish(sw, sw->tx, STORE_FAILED, redis_client_errstr(sw->redis));
        return;
    }
    if (reply->type == REDIS_REPLY_NIL) { /* an owner key changed after WATCH: start over */
        sw->stats.aborted++;
        if (++sw->aborts >= ABORTS_MAX) {
            sw->aborts = 0;
            tx_finish(sw, sw->tx, STORE_FAILED, "transaction aborted 16 times in a row");
            return;
        }
        store_job_t *tail = sw->tx;
        for (;; tail = tail->next) {
            sw->queued_bytes += tail->pairs.len + tail->cmds.len; /* they count for pacing */
            if (!tail->next)
                break;
        }
        tail->next = sw->queued; /* first in the next transaction */
        if (!sw->queued)
            sw->queued_tail = tail;
        sw->queued = sw->tx;
        tx_finish(sw, NULL, STORE_OK, NULL);
        return;
    }
    sw->aborts = 0;
    size_t commands = 0;
    for (store_job_t *j = sw->tx; j; j = j->next)
        commands += job_commands(j);
    const char *failure = exec_failure(reply, commands);
    tx_finish(sw, sw->tx, failure ? STORE_FAILED : STORE_OK, failure);
}

/* Appends one command to j->cmds: name, then argc arguments. */
static int cmd_add(store_job_t *j, const char *name, size_t argc, const char *const *argv,
                   const size_t *lens)
{
    if (reserve((void **)&j->cmd_at, &j->cap_cmd_at, j->n_cmds + 2, sizeof *j->cmd_at) < 0)
        return -1;
    j->cmd_at[j->n_cmds] = j->cmds.len;
    if (resp_header(&j->cmds, 1 + argc, name) < 0 || resp_args(&j->cmds, argc, argv, lens) < 0)
        return -1;
    j->cmd_at[++j->n_cmds] = j->cmds.len;
    return 0;
}

/* cmd_add with NUL-terminated arguments. */
static int cmd_addv(store_job_t *j, const char *name, size_t argc, const char *const *argv)
{
    size_t lens[8];
    for (size_t i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    return cmd_add(j, name, argc, argv, lens);
}

/* ------------------------------------------------------------------------------------------
 * The live queue's operations as native commands (store.h has what each one means). The
 * engine knows where the contact waited and since when, so nothing needs reading in Redis;
 * only an abandon or end of a contact that was not the customer's current one ('x', 'e')
 * goes through the Lua function, which looks it up (the contact's snapshot in {q}:info
 * names its queue). Consecutive Lua operations share one FCALL, and everything stays in
 * order.
 * ---------------------------------------------------------------------------------------- */

#define QUEUE_NAME_MAX 80 /* a queue name: 64 bytes at most in events */
#define QUEUE_KEY_MAX 128 /* "{q}:abandoned:" + a queue name */
#define OP_ID_MAX 256     /* a contact or agent id (64 bytes at most in events) */
#define DONE_WINDOW_MS INT64_C(3600000) /* answered and abandoned: the last hour */

/* A field of an operation as a NUL-terminated string (fields are at most a key or a
 * snapshot, but the text is cut to the buffer in any case). */
static const char *field(char *buf, size_t cap, const char *const *f, const size_t *l, int i)
{
    size_t n = l[i] < cap ? l[i] : cap - 1;
    memcpy(buf, f[i], n);
    buf[n] = '\0';
    return buf;
}

/* What a job already did per queue, so that it says it once: the queue listed in
 * {q}:queues (SADD), and the newest time its answered and abandoned lists are to be trimmed
 * to (one ZREMRANGEBYSCORE each at the end of the job's operations, not one per contact:
 * readers count the last hour by score anyway, trimming only bounds memory). A queue beyond
 * JOB_QUEUES_MAX is listed and trimmed with each operation, as if none were remembered. */
#define JOB_QUEUES_MAX 64

typedef struct {
    char name[QUEUE_NAME_MAX];
    bool listed;
    int64_t trim_until[2]; /* answered, abandoned; INT64_MIN: none */
} job_queue_t;

typedef struct {
    size_t n;
    job_queue_t q[JOB_QUEUES_MAX];
} job_queues_t;

/* The job's record of queue, added on first use; NULL when the table is full. */
static job_queue_t *job_queue(job_queues_t *jq, const char *queue)
{
    for (size_t i = 0; i < jq->n; i++)
        if (strcmp(jq->q[i].name, queue) == 0)
            return &jq->q[i];
    if (jq->n == JOB_QUEUES_MAX)
        return NULL;
    job_queue_t *q = &jq->q[jq->n++];
    snprintf(q->name, sizeof q->name, "%s", queue);
    q->listed = false;
    q->trim_until[0] = q->trim_until[1] = INT64_MIN;
    return q;
}

static const char *const done_kinds[2] = {"answered", "abandoned"};

static int trim_done(store_job_t *j, const char *queue, int kind, int64_t until_ms)
{
    char key[QUEUE_KEY_MAX], until[24];
    snprintf(key, sizeof key, "{q}:%s:%s", done_kinds[kind], queue);
    snprintf(until, sizeof until, "%lld", (long long)until_ms);
    const char *trim[] = {key, "-inf", until};
    return cmd_addv(j, "ZREMRANGEBYSCORE", 3, trim);
}

/* The trims the job's operations asked for, once per list. */
static int job_trim_done(store_job_t *j, const job_queues_t *jq)
{
    for (size_t i = 0; i < jq->n; i++)
        for (int kind = 0; kind < 2; kind++)
            if (jq->q[i].trim_until[kind] != INT64_MIN &&
                trim_done(j, jq->q[i].name, kind, jq->q[i].trim_until[kind]) < 0)
                return -1;
    return 0;
}

/* The contact waits no more: out of its queue's waiting set and {q}:info. */
static int unqueue_native(store_job_t *j, const char *id, const char *queue)
{
    char waiting[QUEUE_KEY_MAX];
    snprintf(waiting, sizeof waiting, "{q}:waiting:%s", queue);
    const char *zrem[] = {waiting, id}, *info[] = {"{q}:info", id};
    return cmd_addv(j, "ZREM", 2, zrem) < 0 || cmd_addv(j, "HDEL", 2, info) < 0 ? -1 : 0;
}

static int queue_op_native(store_job_t *j, job_queues_t *jq, const char *const *f,
                           const size_t *l)
{
    char id[OP_ID_MAX], queue[QUEUE_NAME_MAX], when[24], key[QUEUE_KEY_MAX];
    field(id, sizeof id, f, l, 2);
    field(queue, sizeof queue, f, l, 3);
    field(when, sizeof when, f, l, 1);
    switch (f[0][0]) {
    case STORE_OP_QUEUED: {
        snprintf(key, sizeof key, "{q}:waiting:%s", queue);
        const char *zadd[] = {key, when, id}, *queues[] = {"{q}:queues", queue},
                   *info_args[] = {"{q}:info", id, f[4]};
        size_t info_lens[] = {strlen(info_args[0]), strlen(id), l[4]};
        job_queue_t *q = job_queue(jq, queue);
        bool list = !q || !q->listed;
        if (q)
            q->listed = true;
        return cmd_addv(j, "ZADD", 3, zadd) < 0 ||
                       cmd_add(j, "HSET", 3, info_args, info_lens) < 0 ||
                       (list && cmd_addv(j, "SADD", 2, queues) < 0)
                   ? -1
                   : 0;
    }
    case STORE_OP_LEFT_QUEUE: {
        snprintf(key, sizeof key, "{q}:waiting:%s", queue);
        const char *zrem[] = {key, id};
        return cmd_addv(j, "ZREM", 2, zrem);
    }
    case STORE_OP_ANSWERED:
    case STORE_OP_ABANDONED: {
        char since[24], member[OP_ID_MAX + 24];
        int kind = f[0][0] == STORE_OP_ANSWERED ? 0 : 1;
        long long t = strtoll(when, NULL, 10), from = strtoll(field(since, sizeof since, f, l, 4),
                                                              NULL, 10);
        snprintf(member, sizeof member, "%s|%lld", id, t > from ? t - from : 0);
        snprintf(key, sizeof key, "{q}:%s:%s", done_kinds[kind], queue);
        const char *zadd[] = {key, when, member};
        if (unqueue_native(j, id, queue) < 0 || cmd_addv(j, "ZADD", 3, zadd) < 0)
            return -1;
        int64_t until = t - DONE_WINDOW_MS;
        job_queue_t *q = job_queue(jq, queue);
        if (!q)
            return trim_done(j, queue, kind, until);
        if (until > q->trim_until[kind])
            q->trim_until[kind] = until;
        return 0;
    }
    case STORE_OP_ENDED:
        return unqueue_native(j, id, queue);
    case STORE_OP_AGENT: {
        const char *args[] = {"{q}:agents", id, f[4]};
        size_t lens[] = {strlen(args[0]), strlen(id), l[4]};
        return cmd_add(j, "HSET", 3, args, lens);
    }
    default:
        return -1;
    }
}

static bool op_is_lua(char kind)
{
    return kind == STORE_OP_ABANDONED_ANYWHERE || kind == STORE_OP_ENDED_ANYWHERE;
}

/* The operations' fields, 5 per operation, in order (cmd's argv after the pairs), then the
 * trims they asked for. */
static int job_add_queue_ops(store_job_t *j, const char *const *argv, const size_t *lens,
                             size_t n_args)
{
    static const char *const head[] = {"integral_queue", "0"};
    static const size_t head_lens[] = {14, 1};
    job_queues_t *jq = malloc(sizeof *jq);
    if (!jq)
        return -1;
    jq->n = 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n_args;) {
        if (!op_is_lua(argv[i][0])) {
            rc = queue_op_native(j, jq, argv + i, lens + i);
            i += STORE_OP_FIELDS;
            continue;
        }
        size_t run = i;
        while (run < n_args && op_is_lua(argv[run][0]))
            run += STORE_OP_FIELDS;
        if (reserve((void **)&j->cmd_at, &j->cap_cmd_at, j->n_cmds + 2, sizeof *j->cmd_at) < 0) {
            rc = -1;
            break;
        }
        j->cmd_at[j->n_cmds] = j->cmds.len;
        if (resp_header(&j->cmds, 3 + (run - i), "FCALL") < 0 ||
            resp_args(&j->cmds, 2, head, head_lens) < 0 ||
            resp_args(&j->cmds, run - i, argv + i, lens + i) < 0)
            rc = -1;
        else
            j->cmd_at[++j->n_cmds] = j->cmds.len;
        i = run;
    }
    if (rc == 0)
        rc = job_trim_done(j, jq);
    free(jq);
    return rc;
}

/* The timeline entries of ws, grouped by key in order: per key one LPUSH of its entries,
 * oldest first (so the newest ends first), then LTRIM to the last trim_to when one of them
 * asked for it (the op's queue field: the count to keep, "" for no trim). */
static int job_add_pushes(store_job_t *j, store_write_t *const *ws, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < ws[i]->n_ops; k++)
            total += op_is_push(ws[i], k);
    if (total == 0)
        return 0;
    /* refs[]: (write, op) of every push; group_of[]: its key's first push; next_in[]: the
     * next push of the same key. Open addressing on the key. */
    size_t slots = 16;
    while (slots < total * 2)
        slots *= 2;
    size_t(*refs)[2] = malloc(total * sizeof *refs);
    size_t *next_in = malloc(total * sizeof *next_in), *tail = malloc(total * sizeof *tail);
    long *table = malloc(slots * sizeof *table);
    int rc = refs && next_in && tail && table ? 0 : -1;
    size_t m = 0;
    for (size_t s = 0; rc == 0 && s < slots; s++)
        table[s] = -1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        for (size_t k = 0; k < ws[i]->n_ops; k++) {
            if (!op_is_push(ws[i], k))
                continue;
            const store_op_t *o = &ws[i]->ops[k];
            const char *key = ws[i]->bytes + o->at[2];
            size_t s = (size_t)hash_bytes(key, o->len[2]) & (slots - 1);
            for (; table[s] >= 0; s = (s + 1) & (slots - 1)) {
                const store_op_t *h = &ws[refs[table[s]][0]]->ops[refs[table[s]][1]];
                if (h->len[2] == o->len[2] &&
                    memcmp(ws[refs[table[s]][0]]->bytes + h->at[2], key, o->len[2]) == 0)
                    break;
            }
            refs[m][0] = i, refs[m][1] = k;
            next_in[m] = SIZE_MAX;
            if (table[s] < 0) {
                table[s] = (long)m;
                tail[m] = m;
            } else {
                size_t first = (size_t)table[s];
                next_in[tail[first]] = m;
                tail[first] = m;
            }
            m++;
        }
    }
    for (size_t s = 0; rc == 0 && s < slots; s++) {
        if (table[s] < 0)
            continue;
        size_t first = (size_t)table[s], count = 0, keep = 0;
        for (size_t p = first; p != SIZE_MAX; p = next_in[p]) {
            const store_op_t *o = &ws[refs[p][0]]->ops[refs[p][1]];
            count++;
            if (o->len[3]) { /* fields are not NUL-terminated: copy before parsing */
                const char *f[] = {ws[refs[p][0]]->bytes + o->at[3]};
                char text[24];
                keep = (size_t)strtoul(field(text, sizeof text, f, &o->len[3], 0), NULL, 10);
            }
        }
        const store_op_t *h = &ws[refs[first][0]]->ops[refs[first][1]];
        const char *key = ws[refs[first][0]]->bytes + h->at[2];
        size_t key_len = h->len[2];
        rc = reserve((void **)&j->cmd_at, &j->cap_cmd_at, j->n_cmds + 2, sizeof *j->cmd_at) < 0
                 ? -1
                 : 0;
        if (rc == 0) {
            j->cmd_at[j->n_cmds] = j->cmds.len;
            rc = resp_header(&j->cmds, 2 + count, "LPUSH") < 0 ||
                         resp_args(&j->cmds, 1, &key, &key_len) < 0
                     ? -1
                     : 0;
        }
        for (size_t p = first; rc == 0 && p != SIZE_MAX; p = next_in[p]) {
            const store_op_t *o = &ws[refs[p][0]]->ops[refs[p][1]];
            const char *entry = ws[refs[p][0]]->bytes + o->at[4];
            rc = resp_args(&j->cmds, 1, &entry, &o->len[4]);
        }
        if (rc == 0)
            j->cmd_at[++j->n_cmds] = j->cmds.len;
        if (rc == 0 && keep > 0) {
            char stop[24];
            size_t stop_len = format_i64(stop, (int64_t)keep - 1);
            const char *args[] = {key, "0", stop};
            size_t lens[] = {key_len, 1, stop_len};
            rc = cmd_add(j, "LTRIM", 3, args, lens);
        }
    }
    free(refs);
    free(next_in);
    free(tail);
    free(table);
    return rc;
}

/* Encodes the writes into a job: its MSET, its live-queue commands, its timelines' pushes, in
 * RESP (the one copy of the documents the writer makes; hiredis then appends them to its
 * output buffer). */
static int job_fill(store_job_t *j, store_write_t *const *ws, size_t n, size_t *docs)
{
    store_command_t cmd;
    if (store_command_build(&cmd, ws, n) < 0)
        return -1;
    snprintf(j->owner, sizeof j->owner, "%s", cmd.owner);
    snprintf(j->epoch, sizeof j->epoch, "%s", cmd.epoch);
    int rc = resp_header(&j->pairs, 1 + cmd.pair_args, "MSET") < 0 ||
                     resp_args(&j->pairs, cmd.pair_args, cmd.argv, cmd.lens) < 0 ||
                     job_add_queue_ops(j, cmd.argv + cmd.pair_args, cmd.lens + cmd.pair_args,
                                       cmd.op_args) < 0 ||
                     job_add_pushes(j, ws, n) < 0
                 ? -1
                 : 0;
    *docs = cmd.docs;
    store_command_free(&cmd);
    return rc;
}

int store_write_encode(store_write_t *const *ws, size_t n, char **resp, size_t *len,
                       size_t *commands)
{
    store_job_t j = {0};
    size_t docs;
    int rc = n > 0 && job_fill(&j, ws, n, &docs) == 0 ? 0 : -1;
    char *out = rc == 0 ? malloc(j.pairs.len + j.cmds.len + 1) : NULL;
    if (out) {
        memcpy(out, j.pairs.p, j.pairs.len);
        memcpy(out + j.pairs.len, j.cmds.p, j.cmds.len);
        out[j.pairs.len + j.cmds.len] = '\0';
    }
    *resp = out;
    *len = out ? j.pairs.len + j.cmds.len : 0;
    *commands = out ? job_commands(&j) : 0;
    free(j.pairs.p);
    free(j.cmds.p);
    free(j.cmd_at);
    return out ? 0 : -1;
}

int store_write_send_many(store_writer_t *sw, store_write_t *const *ws, size_t n,
                          store_write_cb cb, void *data, size_t *docs)
{
    size_t count = 0;
    store_job_t *j = job_alloc(sw);
    if (!j)
        return STORE_REFUSED;
    if (job_fill(j, ws, n, &count) < 0) {
        job_recycle(sw, j);
        return STORE_REFUSED;
    }
    j->cb = cb;
    j->data = data;
    if (sw->queued_tail)
        sw->queued_tail->next = j;
    else
        sw->queued = j;
    sw->queued_tail = j;
    sw->queued_bytes += j->pairs.len + j->cmds.len;
    if (uv_is_active((uv_handle_t *)&sw->pace)) {
        /* Others wait for the timer: this one too, or all of them at the next turn of the
         * loop once much is queued (a failure then calls back each, none from here). */
        if (sw->queued_bytes >= PACE_BYTES && uv_timer_get_due_in(&sw->pace) > 0)
            uv_timer_start(&sw->pace, on_pace, 0, 0);
    } else if (!sw->in_flight && !tx_paced(sw) && tx_start(sw) < 0) {
        /* Idle, so this job was the only one queued: refuse it, nobody is called back. */
        sw->tx = NULL;
        sw->tx_jobs = 0;
        job_recycle(sw, j);
        return STORE_REFUSED;
    }
    if (docs)
        *docs = count;
    return 0;
}
