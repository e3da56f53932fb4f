/* cluster.h - the embedded Kafka: librdkafka's mock cluster with Integral's topics.
 *
 * In memory and for development and tests only: every topic, message, group and committed
 * offset is lost when the process exits, and librdkafka 2.0's mock keeps at most 5 MiB per
 * partition, silently dropping the oldest messages beyond that (a tiny retention). Production
 * points every service at Apache Kafka by configuration alone. */
#ifndef INTEGRAL_DEVBROKER_CLUSTER_H
#define INTEGRAL_DEVBROKER_CLUSTER_H

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdbool.h>

#define CLUSTER_TOPICS_MAX 128

typedef struct {
    char name[250];
    int partitions;
} cluster_topic_t;

typedef struct {
    rd_kafka_t *rk; /* the handle that owns the mock cluster */
    rd_kafka_mock_cluster_t *mock;
    const char *bootstraps; /* borrowed from the mock: valid until cluster_stop */
} cluster_t;

/* Parses "name:partitions,name:partitions". Returns the topic count, or -1 with err set. */
int cluster_parse_topics(const char *spec, cluster_topic_t *topics, int max, char *err,
                         size_t errlen);

/* Starts n_brokers mock brokers on ephemeral 127.0.0.1 ports and creates the topics.
 * Returns 0, or -1 with err set. */
int cluster_start(cluster_t *cluster, int n_brokers, const cluster_topic_t *topics,
                  int n_topics, bool debug, char *err, size_t errlen);

/* Writes the bootstrap list to path atomically (a temporary file renamed over it). */
int cluster_write_bootstrap_file(const cluster_t *cluster, const char *path);

/* Destroys the brokers and everything they held. Blocks for a few milliseconds. */
void cluster_stop(cluster_t *cluster);

#endif
