/* integral-devbroker: an embedded, in-memory Kafka for development, demos and tests.
 *
 * Starts librdkafka's mock cluster (the real Kafka protocol over TCP, so kcat and every
 * service talk to it as to Apache Kafka), creates Integral's topics, prints the bootstrap list
 * as the first line of stdout, optionally writes it to a file, and runs until SIGINT/SIGTERM.
 * It is NOT a production broker: see cluster.h for its limits. */
#include "cluster.h"

#include "log.h"
#include "service.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    long brokers;
    char *topics;
    char *bootstrap_file;
    bool debug;
} devbroker_config_t;

static devbroker_config_t config;
static cluster_topic_t topics[CLUSTER_TOPICS_MAX];
static int n_topics;
static cluster_t cluster;

static const config_key_t devbroker_keys[] = {
    {"broker.count", CONFIG_INT, offsetof(devbroker_config_t, brokers), "1", 1, 10, NULL,
     "Number of mock brokers; topics are replicated min(count, 3) times."},
    {"broker.topics", CONFIG_STRING, offsetof(devbroker_config_t, topics),
     "interactions:12,alerts:12,assignments:12,feedback:3,deadletter:3", 0, 4096, NULL,
     "Topics created at start, as name:partitions separated by commas. Each partition keeps "
     "at most 5 MiB: give enough partitions for the load."},
    {"broker.bootstrap_file", CONFIG_STRING, offsetof(devbroker_config_t, bootstrap_file), "", 0,
     4096, NULL,
     "If set, the bootstrap list is written to this file (atomically) once the brokers are up, "
     "and removed at exit."},
    {"broker.debug", CONFIG_BOOL, offsetof(devbroker_config_t, debug), "false", 0, 0, NULL,
     "Log the mock cluster's own debug output."},
};

static const config_section_t sections[] = {CONFIG_SECTION(devbroker_keys, &config)};

static int check_config(char *err, size_t errlen)
{
    n_topics = cluster_parse_topics(config.topics, topics, CLUSTER_TOPICS_MAX, err, errlen);
    return n_topics < 0 ? -1 : 0;
}

static int start(service_t *svc)
{
    char err[512];
    if (cluster_start(&cluster, (int)config.brokers, topics, n_topics, config.debug, err,
                      sizeof err) < 0) {
        log_error("cannot start the embedded Kafka: %s", err);
        return -1;
    }
    for (int i = 0; i < n_topics; i++)
        log_info("topic %s: %d partition(s)", topics[i].name, topics[i].partitions);
    log_warn("in-memory development broker: everything is lost at exit, and each partition "
             "keeps at most 5 MiB (the oldest messages beyond that are dropped silently); "
             "use Apache Kafka in production");
    if (config.bootstrap_file[0]) {
        int rc = cluster_write_bootstrap_file(&cluster, config.bootstrap_file);
        if (rc < 0) {
            log_error("broker.bootstrap_file: cannot write %s: %s", config.bootstrap_file,
                      strerror(-rc));
            return -1;
        }
    }
    log_info("bootstrap servers: %s", cluster.bootstraps);
    printf("%s\n", cluster.bootstraps);
    fflush(stdout);
    return 0;
}

static void stop(service_t *svc)
{
    if (config.bootstrap_file[0] && cluster.mock)
        unlink(config.bootstrap_file);
    cluster_stop(&cluster);
    service_stopped(svc);
}

static bool ready(service_t *svc, const char **why)
{
    *why = cluster.mock ? "ready" : "brokers not running";
    return cluster.mock != NULL;
}

int main(int argc, char **argv)
{
    static const service_desc_t desc = {
        .name = "devbroker",
        .summary = "embedded in-memory Kafka (librdkafka mock cluster) for development",
        .sections = sections,
        .n_sections = 1,
        .check_config = check_config,
        .start = start,
        .stop = stop,
        .ready = ready,
    };
    return service_main(argc, argv, &desc);
}
