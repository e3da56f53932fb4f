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

/* Turns Nagle's algorithm off (TCP_NODELAY) on every listening TCP socket of this process,
 * which Linux passes on to the connections they accept. Returns how many it changed.
 *
 * Why: librdkafka 2.0.2's mock brokers leave Nagle on for their connections, unlike Apache
 * Kafka. A small response then waits for the client's delayed ACK of the one before it (up to
 * 40 ms on Linux): with two produce requests in flight, the second's acknowledgement came
 * 10-40 ms late (engine alerts at 2,000 events/s: p99 19.6 ms; with this, 6.3 ms). The mock
 * has no option for it and does not expose its sockets, so its listeners are found among the
 * process's file descriptors once it has started. */
int cluster_disable_nagle(void);

/* Writes the bootstrap list to path atomically (a temporary file renamed over it). */
int cluster_write_bootstrap_file(const cluster_t *cluster, const char *path);

/* Destroys the brokers and everything they held. Blocks for a few milliseconds. */
void cluster_stop(cluster_t *cluster);

#endif
