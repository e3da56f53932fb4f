/* deadletter.c - the original message plus reason headers to the dead-letter topic. See
 * deadletter.h. */
#include "deadletter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct deadletter {
    char *key, *value;
    size_t key_len, value_len;
    bool has_key, has_value; /* a null key or value (not an empty one) stays null */
    rd_kafka_headers_t *headers; /* the original's, or NULL */
    char topic[250];
    int32_t partition;
    int64_t offset;
    char reason[32];
    char detail[128];
};

static char *copy(const void *p, size_t n)
{
    char *c = malloc(n ? n : 1);
    if (c && n)
        memcpy(c, p, n);
    return c;
}

deadletter_t *deadletter_new(const rd_kafka_message_t *msg, const char *reason,
                             const char *detail)
{
    deadletter_t *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->has_key = msg->key != NULL;
    d->has_value = msg->payload != NULL;
    d->key = copy(msg->key, msg->key_len);
    d->value = copy(msg->payload, msg->len);
    d->key_len = msg->key_len;
    d->value_len = msg->len;
    rd_kafka_headers_t *headers = NULL;
    if (rd_kafka_message_headers(msg, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR && headers)
        d->headers = rd_kafka_headers_copy(headers);
    snprintf(d->topic, sizeof d->topic, "%s", rd_kafka_topic_name(msg->rkt));
    d->partition = msg->partition;
    d->offset = msg->offset;
    snprintf(d->reason, sizeof d->reason, "%s", reason);
    snprintf(d->detail, sizeof d->detail, "%s", detail);
    if (!d->key || !d->value) {
        deadletter_free(d);
        return NULL;
    }
    return d;
}

void deadletter_free(deadletter_t *d)
{
    if (!d)
        return;
    if (d->headers)
        rd_kafka_headers_destroy(d->headers);
    free(d->key);
    free(d->value);
    free(d);
}

static rd_kafka_resp_err_t send_copy(kafka_producer_t *producer, const char *topic,
                                     const deadletter_t *d, size_t value_len, void *opaque)
{
    char partition[16], offset[24], length[24];
    snprintf(partition, sizeof partition, "%d", (int)d->partition);
    snprintf(offset, sizeof offset, "%lld", (long long)d->offset);
    snprintf(length, sizeof length, "%zu", d->value_len);
    rd_kafka_headers_t *h = d->headers ? rd_kafka_headers_copy(d->headers) : rd_kafka_headers_new(7);
    rd_kafka_header_add(h, "integral-reason", -1, d->reason, -1);
    rd_kafka_header_add(h, "integral-detail", -1, d->detail, -1);
    rd_kafka_header_add(h, "integral-source-topic", -1, d->topic, -1);
    rd_kafka_header_add(h, "integral-source-partition", -1, partition, -1);
    rd_kafka_header_add(h, "integral-source-offset", -1, offset, -1);
    rd_kafka_header_add(h, "integral-service", -1, "engine", -1);
    if (value_len < d->value_len)
        rd_kafka_header_add(h, "integral-truncated", -1, length, -1);
    rd_kafka_resp_err_t err = kafka_producer_send(
        producer, topic, RD_KAFKA_PARTITION_UA, d->has_key ? d->key : NULL, d->key_len,
        d->has_value ? d->value : NULL, value_len, h, opaque);
    if (err)
        rd_kafka_headers_destroy(h); /* not taken on failure */
    return err;
}

rd_kafka_resp_err_t deadletter_send(kafka_producer_t *producer, const char *topic,
                                    const deadletter_t *d, void *opaque)
{
    rd_kafka_resp_err_t err = send_copy(producer, topic, d, d->value_len, opaque);
    /* Kafka accepted it from its producer, but ours may be configured for less
     * (message.max.bytes): forward the head, the original stays at its offset. */
    if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE && d->value_len > DEADLETTER_TRUNCATE_BYTES)
        err = send_copy(producer, topic, d, DEADLETTER_TRUNCATE_BYTES, opaque);
    return err;
}
