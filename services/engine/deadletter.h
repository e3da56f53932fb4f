/* deadletter.h - bad events go to the dead-letter topic, unchanged, with why and from where.
 *
 * The original key and value are sent as they came, with these headers:
 *   integral-reason         a stable snake_case reason (event.h), e.g. "bad_data"
 *   integral-detail         one line naming the attribute or field
 *   integral-source-topic   where the message was read
 *   integral-source-partition, integral-source-offset
 *   integral-service        "engine"
 * Nothing is lost: the source offset is marked done only after the dead-letter topic
 * acknowledged the copy (the caller passes the opaque its delivery callback expects). */
#ifndef INTEGRAL_ENGINE_DEADLETTER_H
#define INTEGRAL_ENGINE_DEADLETTER_H

#include "kafka_uv.h"

/* Sends msg (borrowed) to topic with the reason headers. Returns 0 (the producer's delivery
 * callback follows with opaque) or librdkafka's error. */
rd_kafka_resp_err_t deadletter_send(kafka_producer_t *producer, const char *topic,
                                    const rd_kafka_message_t *msg, const char *reason,
                                    const char *detail, void *opaque);

#endif
