/* kafka_uv.h - a Kafka consumer and producer driven by one libuv loop.
 *
 * librdkafka signals its queues through a file descriptor (rd_kafka_queue_io_event_enable): the
 * consumer's through a pipe, the producer's through an eventfd, each watched by a uv_poll. No
 * polling thread, no timer polling, no sleeps: every callback below runs on the loop thread.
 *
 * Consumer guarantees (at-least-once, never a silent skip):
 *  - offsets are stored only when the application calls kafka_consumer_done (offset + 1) and
 *    committed periodically and on kafka_consumer_commit; a message never marked done is
 *    redelivered after a restart or a rebalance;
 *  - when an effect failed, kafka_consumer_rewind pauses the partition and seeks back to the
 *    failed offset, so later messages of that partition cannot commit past it;
 *  - rebalances are handled on the loop (eager or cooperative, whichever the group uses);
 *  - a position that fell behind the broker's retention is logged as DATA LOSS and counted,
 *    then consumption goes on from the earliest retained offset;
 *  - close is asynchronous (rd_kafka_consumer_close_queue) and never blocks the loop.
 * Producer: idempotence on, delivery reports on the loop, drained without blocking on close,
 * and a fatal error (idempotence broken) recreates the instance: the messages it held fail
 * with an error delivery report so that the application can send them again. */
#ifndef INTEGRAL_KAFKA_UV_H
#define INTEGRAL_KAFKA_UV_H

#include "config_keys.h"

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct kafka_consumer kafka_consumer_t;
typedef struct kafka_producer kafka_producer_t;

typedef struct {
    /* A message. Ownership passes to the application, which must rd_kafka_message_destroy it
     * (possibly later, e.g. after an asynchronous effect). Never called with an error message:
     * errors are logged and counted here. */
    void (*on_message)(kafka_consumer_t *c, rd_kafka_message_t *msg, void *data);
    /* Partitions are being assigned (list borrowed). Return 0 to have them assigned now, at
     * the group's committed offsets; or KAFKA_ASSIGN_LATER to assign them yourself with
     * kafka_consumer_assign once their positions are known (e.g. kept in a database): no
     * message of theirs is fetched before that, and the group waits. Optional. */
    int (*on_assign)(kafka_consumer_t *c, const rd_kafka_topic_partition_list_t *parts,
                     void *data);
    /* Partitions are being taken away (list borrowed). After this returns their offsets can no
     * longer be stored: drop or finish in-flight work of these partitions now. Optional. */
    void (*on_revoke)(kafka_consumer_t *c, const rd_kafka_topic_partition_list_t *parts,
                      void *data);
} kafka_consumer_handlers_t;

typedef struct {
    uint64_t messages;      /* handed to the application */
    uint64_t offset_resets; /* positions lost to retention: data loss */
    uint64_t errors;        /* consumer errors seen (logged) */
    uint64_t rebalances;
} kafka_consumer_stats_t;

/* Creates a consumer in group for topics (NULL-terminated array, copied) and subscribes.
 * Returns 0, or -1 with a reason in err. handlers and data are kept. */
int kafka_consumer_new(kafka_consumer_t **out, uv_loop_t *loop, const kafka_config_t *cfg,
                       const char *group, const char *const *topics,
                       const kafka_consumer_handlers_t *handlers, void *data, char *err,
                       size_t errlen);

#define KAFKA_ASSIGN_LATER 1

/* Errors: the functions below return RD_KAFKA_RESP_ERR_NO_ERROR (0) or librdkafka's own error
 * code, unchanged (its local errors are negative and broker errors positive, so no sign
 * convention can be layered on top); rd_kafka_err2str() names it. */

/* Marks a message processed: stores offset + 1 for its partition, committed with the next
 * commit. Fails e.g. when the partition is no longer ours. */
rd_kafka_resp_err_t kafka_consumer_done(kafka_consumer_t *c, const char *topic, int32_t partition,
                        int64_t offset);

/* An effect failed: pauses the partition and seeks back to offset, so it is delivered again
 * from there after kafka_consumer_resume. Messages of this partition already handed out past
 * that offset must not be marked done by the application. */
/* Assigns partitions whose on_assign returned KAFKA_ASSIGN_LATER, each at the offset in its
 * element (an offset, RD_KAFKA_OFFSET_BEGINNING, or RD_KAFKA_OFFSET_STORED for the committed
 * one). parts is borrowed. Call it once per deferred assignment, with those partitions. */
rd_kafka_resp_err_t kafka_consumer_assign(kafka_consumer_t *c,
                                          const rd_kafka_topic_partition_list_t *parts);

rd_kafka_resp_err_t kafka_consumer_rewind(kafka_consumer_t *c, const char *topic, int32_t partition,
                          int64_t offset);

rd_kafka_resp_err_t kafka_consumer_pause(kafka_consumer_t *c, const char *topic, int32_t partition);
rd_kafka_resp_err_t kafka_consumer_resume(kafka_consumer_t *c, const char *topic, int32_t partition);
/* Asynchronous seek of an assigned partition (offset or RD_KAFKA_OFFSET_BEGINNING/END). */
rd_kafka_resp_err_t kafka_consumer_seek(kafka_consumer_t *c, const char *topic, int32_t partition,
                        int64_t offset);

/* Stops (true) or restarts (false) handing messages to the application, e.g. while too much
 * work is in flight. Rebalances are still served. */
void kafka_consumer_hold(kafka_consumer_t *c, bool hold);

/* Commits the stored offsets now, asynchronously. */
void kafka_consumer_commit(kafka_consumer_t *c);

/* Messages between the positions and the high watermarks of the assigned partitions, from the
 * client's cached watermarks (no broker round trip); -1 before the first fetch. */
int64_t kafka_consumer_lag(kafka_consumer_t *c);

const kafka_consumer_stats_t *kafka_consumer_stats(const kafka_consumer_t *c);
rd_kafka_t *kafka_consumer_rk(kafka_consumer_t *c);

/* Leaves the group (revoking partitions, committing stored offsets) without blocking the loop,
 * then frees the consumer and calls close_cb once. Messages the application still owns stay
 * valid and must still be destroyed by it; marking them done after close is not possible. */
void kafka_consumer_close(kafka_consumer_t *c, void (*close_cb)(void *data), void *data);

/* ----------------------------------------------------------------------------------------- */

/* Delivery report for one message: err is RD_KAFKA_RESP_ERR_NO_ERROR when the broker
 * acknowledged it. opaque is the pointer given to kafka_producer_send. */
typedef void (*kafka_delivery_cb)(kafka_producer_t *p, rd_kafka_resp_err_t err, void *opaque,
                                  void *data);

typedef struct {
    uint64_t sent;
    uint64_t delivered;
    uint64_t failed;
    uint64_t recreated; /* instances replaced after a fatal error */
} kafka_producer_stats_t;

/* Creates an idempotent producer. on_delivery (may be NULL) and data are kept. */
int kafka_producer_new(kafka_producer_t **out, uv_loop_t *loop, const kafka_config_t *cfg,
                       kafka_delivery_cb on_delivery, void *data, char *err, size_t errlen);

/* Sends a copy of value (and key) to topic. headers may be NULL; on success they are taken.
 * partition is RD_KAFKA_PARTITION_UA to partition by key. Returns 0 (the delivery report
 * follows exactly once), or librdkafka's error code (no report; headers not taken), e.g.
 * RD_KAFKA_RESP_ERR__QUEUE_FULL. */
rd_kafka_resp_err_t kafka_producer_send(kafka_producer_t *p, const char *topic, int32_t partition,
                        const void *key, size_t keylen, const void *value, size_t len,
                        rd_kafka_headers_t *headers, void *opaque);

/* Messages not yet acknowledged. */
int kafka_producer_outstanding(const kafka_producer_t *p);

const kafka_producer_stats_t *kafka_producer_stats(const kafka_producer_t *p);

/* For tests: makes the broker-facing instance fail as if idempotence broke. */
void kafka_producer_inject_fatal(kafka_producer_t *p);

/* Refuses new messages, waits on the loop (up to the configured drain timeout) for the
 * outstanding delivery reports, destroys the producer and calls close_cb once. Messages still
 * outstanding at the deadline get an error delivery report first. */
void kafka_producer_close(kafka_producer_t *p, void (*close_cb)(void *data), void *data);

#endif
