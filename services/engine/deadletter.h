/* deadletter.h - bad events go to the dead-letter topic, unchanged, with why and from where.
 *
 * The original key, value and headers are sent as they came, plus these headers:
 *   integral-reason         a stable snake_case reason (event.h), e.g. "bad_data"
 *   integral-detail         one line naming the attribute or field
 *   integral-source-topic   where the message was read
 *   integral-source-partition, integral-source-offset
 *   integral-service        "engine"
 *   integral-truncated      only when the value was too large to forward: its full length
 *                           (the copy then holds its first DEADLETTER_TRUNCATE_BYTES; the
 *                           original stays at the source offset)
 * Nothing is lost: the source offset is marked done only after the dead-letter topic
 * acknowledged the copy.
 *
 * A dead letter copies what it sends, so the consumed message can be freed at once (librdkafka
 * does not destroy a consumer while any message it handed out is alive). */
#ifndef INTEGRAL_ENGINE_DEADLETTER_H
#define INTEGRAL_ENGINE_DEADLETTER_H

#include "kafka_uv.h"

#include <stdbool.h>

#define DEADLETTER_TRUNCATE_BYTES (64 * 1024)

typedef struct deadletter deadletter_t;

/* Copies msg (borrowed) with the reason. NULL out of memory. */
deadletter_t *deadletter_new(const rd_kafka_message_t *msg, const char *reason,
                             const char *detail);
void deadletter_free(deadletter_t *d);

/* Sends it to topic (the producer's delivery callback follows with opaque), or returns
 * librdkafka's error. A value the producer refuses as too large is sent truncated instead. */
rd_kafka_resp_err_t deadletter_send(kafka_producer_t *producer, const char *topic,
                                    const deadletter_t *d, void *opaque);

#endif
