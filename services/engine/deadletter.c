/* deadletter.c - the original message plus reason headers to the dead-letter topic. See
 * deadletter.h. */
#include "deadletter.h"

#include <stdio.h>
#include <string.h>

rd_kafka_resp_err_t deadletter_send(kafka_producer_t *producer, const char *topic,
                                    const rd_kafka_message_t *msg, const char *reason,
                                    const char *detail, void *opaque)
{
    char partition[16], offset[24];
    snprintf(partition, sizeof partition, "%d", (int)msg->partition);
    snprintf(offset, sizeof offset, "%lld", (long long)msg->offset);
    rd_kafka_headers_t *headers = rd_kafka_headers_new(6);
    rd_kafka_header_add(headers, "integral-reason", -1, reason, -1);
    rd_kafka_header_add(headers, "integral-detail", -1, detail, -1);
    rd_kafka_header_add(headers, "integral-source-topic", -1, rd_kafka_topic_name(msg->rkt), -1);
    rd_kafka_header_add(headers, "integral-source-partition", -1, partition, -1);
    rd_kafka_header_add(headers, "integral-source-offset", -1, offset, -1);
    rd_kafka_header_add(headers, "integral-service", -1, "engine", -1);
    rd_kafka_resp_err_t err =
        kafka_producer_send(producer, topic, RD_KAFKA_PARTITION_UA, msg->key, msg->key_len,
                            msg->payload, msg->len, headers, opaque);
    if (err)
        rd_kafka_headers_destroy(headers); /* not taken on failure */
    return err;
}
