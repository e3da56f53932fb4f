/* store.h - the engine's Redis side: partition claims, state loads and fenced batch writes.
 *
 * Key schema (every key of one customer shares the hash tag {c:ID}, so Redis Cluster can
 * come later; the fenced batch write below spans many slots and so needs one instance now):
 *   {c:ID}:state    the customer's document (state.h): summary fields readable as JSON
 *   {c:ID}:timeline LIST of the customer's last 100 interactions, newest first (in the order
 *                   the engine applied them), each {"time", "type", "text"} as JSON
 *   {a:ID}:state    an agent's document (state, queues, the customer it serves)
 *   {p:TOPIC:N}:owner     the epoch of the engine that owns partition N of TOPIC
 *   {p:TOPIC:N}:applied   the next offset of that partition whose effects are not in Redis
 *
 * The live queue, for the gateway's supervisors (one tag {q}: one slot for all of it):
 *   {q}:queues            SET of queue names ever seen
 *   {q}:waiting:QUEUE     ZSET contact_id -> the time it was queued (ms, event time)
 *   {q}:info              HASH contact_id -> JSON snapshot of who waits (customer, name,
 *                         queue, channel, tier, value, churn_risk, flags) taken when it was
 *                         queued, while it waits (its "queue" is what the Lua lookup of a
 *                         contact that is no longer its customer's current one reads)
 *   {q}:answered:QUEUE    ZSET "contact_id|wait_ms" -> the time it was answered (last hour)
 *   {q}:abandoned:QUEUE   ZSET "contact_id|wait_ms" -> the time it was abandoned (last hour)
 *   {q}:agents            HASH agent_id -> JSON {id, state, queues, since}
 * They are written by the same fenced transaction as the documents, so a replay cannot apply an
 * operation twice, and every operation is idempotent besides.
 *
 * Exactly-once effect: a batch of one partition writes every customer it touched and the
 * partition's applied offset in one transaction (MULTI/EXEC), fenced by WATCH on the owner
 * epoch: it writes nothing when the epoch is not the caller's (an engine that lost the
 * partition in a rebalance cannot overwrite its new owner). A new owner claims the partition
 * (epoch + 1) and continues from the applied offset, so state and offset can never disagree,
 * even after Redis lost its last second of writes (AOF everysec). */
#ifndef INTEGRAL_ENGINE_STORE_H
#define INTEGRAL_ENGINE_STORE_H

#include "redis_uv.h"

#include <stddef.h>
#include <stdint.h>

#define STORE_KEY_MAX 160 /* "{c:" + a 128-byte subject + "}:state" fits */

typedef enum {
    STORE_OK = 0,
    STORE_FENCED = -1, /* another engine owns the partition now: drop it */
    STORE_FAILED = -2, /* no reply (Redis down or timed out) or an unexpected one: the write
                          may or may not have happened; re-claim and replay */
    STORE_REFUSED = -3, /* the client refused the command (not ready, queue full) */
} store_status_t;

/* The Lua source of the "integral" function library, registered on every (re)connect. */
const char *store_function_library(void);

/* Writes the key of a customer's ({c:ID}:state) or an agent's ({a:ID}:state) document. */
int store_customer_key(char *out, size_t cap, const char *customer_id);
int store_agent_key(char *out, size_t cap, const char *agent_id);
/* Writes the key of a customer's timeline list ({c:ID}:timeline). */
int store_timeline_key(char *out, size_t cap, const char *customer_id);

/* Claims partition: owner epoch + 1. cb gets STORE_OK with the new epoch and the applied
 * offset (-1 when nothing was ever applied), or a failure with a reason (borrowed). */
typedef void (*store_claim_cb)(void *data, int status, int64_t epoch, int64_t applied,
                               const char *reason);
int store_claim(redis_client_t *redis, const char *topic, int32_t partition, store_claim_cb cb,
                void *data);

/* Loads one document: cb gets STORE_OK with the value (borrowed for the call; NULL, 0 when
 * the key does not exist) or a failure. */
typedef void (*store_load_cb)(void *data, int status, const char *value, size_t len);
int store_load(redis_client_t *redis, const char *key, store_load_cb cb, void *data);

/* A batch write under construction. Keys and values are copied in. */
typedef struct store_write store_write_t;

store_write_t *store_write_new(const char *topic, int32_t partition, int64_t epoch,
                               int64_t next_offset);
/* Empties w for another use, keeping its buffers (no allocation when it is reused). */
void store_write_reset(store_write_t *w, const char *topic, int32_t partition, int64_t epoch,
                       int64_t next_offset);
void store_write_set_offset(store_write_t *w, int64_t next_offset);
/* Bytes of memory w holds (its buffers' capacity). */
size_t store_write_capacity(const store_write_t *w);
int store_write_add(store_write_t *w, const char *key, const char *value, size_t len);
/* Adds a document serialized in place: store_write_begin returns where its value (at most
 * max_len bytes) goes, NULL out of memory; store_write_commit(w, len) adds it. A begun value
 * that is never committed is simply forgotten (begin again, or add something else). */
char *store_write_begin(store_write_t *w, const char *key, size_t max_len);
void store_write_commit(store_write_t *w, size_t len);
size_t store_write_count(const store_write_t *w);

/* Operations, after the documents: the live queue's and timeline entries (see the key
 * schema above). The live queue's are native commands built from what the engine knows of
 * the contact; 'x' and 'e' go through the Lua function, which finds where the contact waits
 * ({q}:info) - for a contact that was not the customer's current one. Every operation is
 * idempotent: a replay of a transaction's operations leaves the live queue as it was. */
typedef enum {
    STORE_OP_QUEUED = 'Q',     /* id waits in queue since time_ms; info = its snapshot */
    STORE_OP_LEFT_QUEUE = 'R', /* id no longer waits in queue (it moved to another one) */
    STORE_OP_ANSWERED = 'S',   /* id, waiting in queue since info (ms, decimal), answered at
                                  time_ms: counted with its wait */
    STORE_OP_ABANDONED = 'X',  /* the same, abandoned */
    STORE_OP_ENDED = 'E',      /* id, waiting in queue, waits no more, counted nowhere */
    STORE_OP_AGENT = 'G',      /* id = agent: info = its JSON */
    STORE_OP_ABANDONED_ANYWHERE = 'x', /* id abandoned at time_ms, wherever it waits */
    STORE_OP_ENDED_ANYWHERE = 'e',     /* id waits no more, wherever it waited */
    STORE_OP_TIMELINE = 'T',  /* id = a customer's timeline key (store_timeline_key): info
                                 = an entry, pushed first (LPUSH); queue = "" or how many
                                 entries to keep (LTRIM after the push) */
} store_op_kind_t;

int store_write_add_op(store_write_t *w, store_op_kind_t op, int64_t time_ms, const char *id,
                       const char *queue, const char *info, size_t info_len);
size_t store_write_ops(const store_write_t *w);

/* Appends src's operations to dst (src may be NULL); _move_ops then frees src. 0, or -1 out
 * of memory. */
int store_write_copy_ops(store_write_t *dst, const store_write_t *src);
int store_write_move_ops(store_write_t *dst, store_write_t *src);
size_t store_write_bytes(const store_write_t *w);
void store_write_free(store_write_t *w);

/* The writer: sends writes as WATCH-fenced transactions on one connection, one transaction
 * at a time, each holding every write that became ready while the previous one was in
 * flight, and at most one every pace_ms while little is queued (see store.c). Free it once the
 * Redis client is closed (nothing in flight then); a writer freed with a transaction in
 * flight calls nobody back and is released by the reply. It holds a timer on loop: the loop
 * must run once more after the free (its close callback releases the memory). */
typedef struct store_writer store_writer_t;

typedef struct {
    uint64_t transactions; /* started (a restarted one counts again) */
    uint64_t aborted;      /* EXEC refused: an owner key changed after WATCH */
    uint64_t fenced;       /* transactions in which some write was fenced */
} store_writer_stats_t;

#define STORE_PACE_MS 2 /* the engine's pace_ms */
store_writer_t *store_writer_new(redis_client_t *redis, uv_loop_t *loop, unsigned pace_ms);
void store_writer_free(store_writer_t *sw);
const store_writer_stats_t *store_writer_stats(const store_writer_t *sw);

/* Group commit: sends ws[0..n) (consecutive writes of one partition, oldest first) as one
 * fenced write: every key once with its newest value, the live-queue operations of all of
 * them in order, and the applied offset and epoch of the last. The writes are copied (free to
 * reuse when this returns). *docs (may be NULL) gets the number of documents. cb gets
 * STORE_OK, STORE_FENCED (the partition's owner epoch is not the write's: nothing of it was
 * written) or STORE_FAILED with a reason, exactly once, never from inside this call. Returns
 * 0, or STORE_REFUSED (cb never called). */
typedef void (*store_write_cb)(void *data, int status, const char *reason);
int store_write_send_many(store_writer_t *sw, store_write_t *const *ws, size_t n,
                          store_write_cb cb, void *data, size_t *docs);

/* What store_write_send_many writes, as arguments (exposed for tests): argv[0 .. pair_args)
 * are the MSET pairs (each document's key and value, then the applied key and offset),
 * argv[pair_args .. pair_args + op_args) the live-queue operations' fields. argv points into
 * the writes and into the struct: valid while both are. */
typedef struct {
    size_t pair_args, op_args;
    const char **argv;
    size_t *lens;
    size_t docs;
    char epoch[24], offset[24];
    char owner[300], applied[300];
} store_command_t;
int store_command_build(store_command_t *cmd, store_write_t *const *ws, size_t n);
void store_command_free(store_command_t *cmd);

/* Every command store_write_send_many sends for ws inside the transaction, in RESP (exposed
 * for tests): *resp (malloc'd, NUL-terminated) holds *commands commands. 0, or -1. */
int store_write_encode(store_write_t *const *ws, size_t n, char **resp, size_t *len,
                       size_t *commands);

#endif
