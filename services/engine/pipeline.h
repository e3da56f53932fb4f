/* pipeline.h - the engine's exactly-once path from a Kafka message to Redis and back.
 *
 *   message -> parse (bad: dead-letter topic) -> the subject's document, loaded from Redis on
 *   first touch -> apply in offset order -> alerts -> per partition and loop iteration, one
 *   batch: every document it touched serialized once -> (alerts acknowledged) -> one fenced
 *   write of the documents and the partition's applied offset -> offsets stored in Kafka.
 *
 * Group commit: a partition has at most one write in flight. The batches that become ready
 * meanwhile (all events applied, all deliveries acknowledged, consecutive) leave together in
 * the next write, up to about 1 MiB: a document several of them touched is written once, as of
 * the newest, with the newest applied offset; their live-queue operations in order. The
 * engine keeps at most a few MiB of writes in flight to Redis (the others wait their turn,
 * first come first served), and holds the consumer while too many bytes of built writes wait.
 *
 * Guarantees, and how:
 *  - Order per subject: one FIFO of events for the whole process; an event waits while its
 *    subject's document loads, and everything after it waits too.
 *  - Exactly-once effect: a partition is claimed in Redis (owner epoch) before it is assigned,
 *    at the applied offset Redis holds, so Redis is the source of truth for where to resume.
 *    Each document also remembers the last offset and the last event ids it applied, so an
 *    event seen twice (redelivery, or a producer that re-sent it) changes nothing.
 *  - No alert is lost: a batch's write is sent only after every alert it raised was
 *    acknowledged by Kafka. A crash in between replays the batch and raises the same alerts
 *    again, with the same deterministic ids.
 *  - A write that failed (Redis down, timeout): the partition forgets its documents, claims
 *    again and rewinds to the applied offset. A write refused as FENCED: another engine owns
 *    the partition; it is paused until the group settles.
 *
 * The documents themselves are behind doc_ops_t (customers, agents), and what happens after
 * an event was applied (rules, alerts) behind the on_applied hook: the pipeline knows
 * neither. */
#ifndef INTEGRAL_ENGINE_PIPELINE_H
#define INTEGRAL_ENGINE_PIPELINE_H

#include "cache.h"
#include "event.h"
#include "kafka_uv.h"
#include "metrics.h"
#include "redis_uv.h"
#include "store.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct pipeline pipeline_t;
typedef struct batch batch_t;

enum { DOC_APPLIED = 0, DOC_DUPLICATE = 1, DOC_NO_MEMORY = -2 };

/* A document model: one kind of subject's state, stored as one JSON value. */
typedef struct {
    const char *kind; /* "customer", "agent": for logs and metrics */
    /* A new, empty document for subject; NULL out of memory. */
    void *(*create)(const char *subject, void *ctx);
    /* Replaces doc with the stored JSON. 0, or -1 with err (the document is then empty). */
    int (*load)(void *doc, const char *json, size_t len, char *err, size_t errlen);
    /* DOC_APPLIED, DOC_DUPLICATE (nothing changed), DOC_NO_MEMORY (nothing changed: the
     * partition is read again from its applied offset), or another negative error (logged,
     * skipped). */
    int (*apply)(void *doc, const event_t *ev, int64_t offset, void *ctx);
    /* Writes the document. 0, or -1 when it does not fit in cap. */
    int (*serialize)(const void *doc, char *buf, size_t cap, size_t *len, void *ctx);
    void (*destroy)(void *doc);
    /* Writes the Redis key of subject's document. */
    int (*key)(char *out, size_t cap, const char *subject);
    /* May be NULL. True while the document needs the periodic scan of
     * pipeline_timed_pass_step (a customer waiting in a queue). Asked after each event
     * applied and after each load: only those change what it answers. */
    bool (*timed)(const void *doc);
} doc_ops_t;

/* Called after an event changed a document (not for duplicates): evaluate rules, raise
 * alerts with pipeline_send_alert(batch, ...). doc is the document the event was applied
 * to; late is true when the event is older than the configured lateness (no live alerts). */
typedef void (*pipeline_applied_cb)(pipeline_t *p, batch_t *batch, const doc_ops_t *ops,
                                    void *doc, const event_t *ev, bool late, void *data);

typedef struct {
    uv_loop_t *loop;
    kafka_producer_t *producer;
    redis_client_t *redis;
    metrics_t *metrics;
    const char *topic;            /* consumed; partitions are claimed per topic */
    const char *deadletter_topic;
    const char *alerts_topic;
    size_t max_event_bytes;
    int64_t max_future_ms;
    int64_t lateness_ms;
    size_t cache_max_entries;
    size_t max_queued_events; /* past it the consumer is held */
    size_t max_doc_bytes;     /* a serialized document larger than this is an error */
    const doc_ops_t *customer_ops;
    const doc_ops_t *agent_ops;
    void *doc_ctx; /* passed to the doc_ops functions */
    pipeline_applied_cb on_applied;
    void *data;
} pipeline_options_t;

/* Creates the pipeline. The consumer is attached later (it needs the pipeline's handlers).
 * At shutdown the consumer is detached (attach NULL) and then the producer, as each closes:
 * the pipeline then leaves them alone while Redis replies still come back. */
int pipeline_new(pipeline_t **out, const pipeline_options_t *opts);
void pipeline_attach_consumer(pipeline_t *p, kafka_consumer_t *consumer);
void pipeline_detach_producer(pipeline_t *p);

/* The consumer's handlers and the producer's delivery callback: wire them to these. */
int pipeline_on_assign(kafka_consumer_t *c, const rd_kafka_topic_partition_list_t *parts,
                       void *data);
void pipeline_on_revoke(kafka_consumer_t *c, const rd_kafka_topic_partition_list_t *parts,
                        void *data);
void pipeline_on_message(kafka_consumer_t *c, rd_kafka_message_t *msg, void *data);
void pipeline_on_delivery(kafka_producer_t *prod, rd_kafka_resp_err_t err, void *opaque,
                          void *data);

/* Raises an alert for the batch: value (a JSON document) is copied and sent to the alerts
 * topic with key; the batch's write waits for its acknowledgement. batch may be NULL for an
 * alert no event raised (a timer): it is sent until acknowledged, tied to no offset. */
int pipeline_send_alert(pipeline_t *p, batch_t *batch, const char *key, const char *value,
                        size_t len);

/* As pipeline_send_alert, to another topic (kept: it must outlive the pipeline), for notices
 * other services act on (the gateway's screen pops). */
int pipeline_publish(pipeline_t *p, batch_t *batch, const char *topic, const char *key,
                     const char *value, size_t len);

/* Adds a live-queue operation (store.h) to the batch's write: it reaches Redis in the same
 * fenced transaction as the batch's documents. 0, or -1 (out of memory, orphaned batch). */
int pipeline_queue_op(batch_t *batch, store_op_kind_t op, int64_t time_ms, const char *id,
                      const char *queue, const char *info, size_t info_len);

/* Calls cb for every loaded document (customers and agents) of the partitions held. cb may
 * change the document in memory (it is written with the subject's next event) and may send
 * alerts with a NULL batch. */
typedef void (*pipeline_each_cb)(const doc_ops_t *ops, void *doc, void *data);
void pipeline_each_document(pipeline_t *p, pipeline_each_cb cb, void *data);

/* A pass over the documents whose ops->timed said true, in steps, so that a periodic check
 * of many documents never holds the loop for long (each event arriving meanwhile would wait):
 * pipeline_timed_pass_start starts a pass (ending any previous one) and returns how many
 * documents it has; each pipeline_timed_pass_step calls cb as pipeline_each_document does
 * for up to max of them, and returns false once the pass is over. A document that stops
 * being timed (or leaves the cache) before its turn is skipped; one that becomes timed
 * meanwhile waits for the next pass. */
size_t pipeline_timed_pass_start(pipeline_t *p);
bool pipeline_timed_pass_step(pipeline_t *p, size_t max, pipeline_each_cb cb, void *data);

/* Re-syncs every partition held (as after a failed write): its queued events, batches and
 * documents are forgotten, it is claimed again and resumes from the applied offset Redis
 * holds. For a Redis that came back and may have lost writes; why is logged. */
void pipeline_resync_all(pipeline_t *p, const char *why);

/* True once the group assigned this engine its partitions, every one is claimed, and Redis is
 * ready; why says what is not. */
bool pipeline_ready(const pipeline_t *p, const char **why);

/* Work not yet acknowledged: events queued, batches not complete, deliveries in flight. */
size_t pipeline_in_flight(const pipeline_t *p);

/* Seals the open batches now (shutdown: their writes go out before the consumer closes). */
void pipeline_flush(pipeline_t *p);

/* Frees everything; call after the consumer, the producer and the Redis client are closed
 * (so that no callback of theirs can reach the pipeline any more). close_cb runs once the
 * pipeline's handles are closed. */
void pipeline_close(pipeline_t *p, void (*close_cb)(void *data), void *data);

#endif
