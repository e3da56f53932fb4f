/* cluster.c - librdkafka's mock cluster as a development Kafka. See cluster.h.
 *
 * Facts from shared/notes/kafka-devbroker.md that shape this file: ports are ephemeral and
 * there is no port option in 2.0.2; the Admin API cannot create topics on the mock (its
 * controller id does not exist), so topics are created here with rd_kafka_mock_topic_create;
 * the mock's threads must not receive SIGINT/SIGTERM, so they are created with the signals
 * blocked and inherit that mask. */
#include "cluster.h"

#include "config.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PARTITIONS_MAX 10000

int cluster_parse_topics(const char *spec, cluster_topic_t *topics, int max, char *err,
                         size_t errlen)
{
    char buf[4096];
    char *items[CLUSTER_TOPICS_MAX];
    snprintf(buf, sizeof buf, "%s", spec);
    int n = config_split_list(buf, items, max < CLUSTER_TOPICS_MAX ? max : CLUSTER_TOPICS_MAX);
    if (n <= 0) {
        snprintf(err, errlen, "broker.topics: %s", n == 0 ? "no topic given" : "too many topics");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        char *colon = strrchr(items[i], ':');
        char *end = NULL;
        long partitions = colon ? strtol(colon + 1, &end, 10) : 0;
        if (!colon || colon == items[i] || *end != '\0' || partitions < 1 ||
            partitions > PARTITIONS_MAX || (size_t)(colon - items[i]) >= sizeof topics[i].name) {
            snprintf(err, errlen,
                     "broker.topics: \"%s\" is not name:partitions with 1..%d partitions",
                     items[i], PARTITIONS_MAX);
            return -1;
        }
        *colon = '\0';
        snprintf(topics[i].name, sizeof topics[i].name, "%s", items[i]);
        topics[i].partitions = (int)partitions;
    }
    return n;
}

static rd_kafka_t *owner_new(bool debug, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (debug && rd_kafka_conf_set(conf, "debug", "mock,broker", err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
    if (!rk)
        rd_kafka_conf_destroy(conf);
    return rk;
}

typedef struct {
    rd_kafka_mock_cluster_t *mock;
    const cluster_topic_t *topic;
    int replication;
    rd_kafka_resp_err_t result;
} topic_job_t;

static void *create_topic(void *arg)
{
    topic_job_t *job = arg;
    job->result = rd_kafka_mock_topic_create(job->mock, job->topic->name, job->topic->partitions,
                                             job->replication);
    return NULL;
}

/* Creates the topics concurrently, one thread each. Measured: one after the other, each
 * create took ~0.4 s (36 topics: 15 s), because the mock's thread sleeps in poll() and, in
 * librdkafka 2.0.2, is woken by the first request queued only; requests queued together are
 * served together. */
static int create_topics(cluster_t *cluster, const cluster_topic_t *topics, int n_topics,
                         int replication, char *err, size_t errlen)
{
    topic_job_t jobs[CLUSTER_TOPICS_MAX];
    pthread_t threads[CLUSTER_TOPICS_MAX];
    int started = 0, rc = 0;
    for (int i = 0; i < n_topics; i++) {
        jobs[i] = (topic_job_t){cluster->mock, &topics[i], replication, RD_KAFKA_RESP_ERR_NO_ERROR};
        if (pthread_create(&threads[i], NULL, create_topic, &jobs[i]) != 0) {
            create_topic(&jobs[i]); /* no thread to be had: do it here */
            continue;
        }
        threads[started++] = threads[i];
    }
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < n_topics && rc == 0; i++) {
        if (jobs[i].result) {
            snprintf(err, errlen, "cannot create topic %s: %s", topics[i].name,
                     rd_kafka_err2str(jobs[i].result));
            rc = -1;
        }
    }
    return rc;
}

/* Whether fd is a listening TCP socket (getsockopt fails on anything that is not a socket). */
static bool is_tcp_listener(int fd)
{
    int accepting = 0, protocol = 0;
    socklen_t len = sizeof accepting;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) < 0 || !accepting)
        return false;
    len = sizeof protocol;
    return getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len) == 0 &&
           protocol == IPPROTO_TCP;
}

int cluster_disable_nagle(void)
{
    DIR *dir = opendir("/proc/self/fd");
    if (!dir)
        return 0;
    int changed = 0, one = 1;
    for (struct dirent *d; (d = readdir(dir));) {
        char *end;
        long fd = strtol(d->d_name, &end, 10);
        if (*end != '\0' || end == d->d_name || fd == dirfd(dir) || !is_tcp_listener((int)fd))
            continue;
        if (setsockopt((int)fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0)
            changed++;
    }
    closedir(dir);
    return changed;
}

int cluster_start(cluster_t *cluster, int n_brokers, const cluster_topic_t *topics,
                  int n_topics, bool debug, char *err, size_t errlen)
{
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    cluster->rk = owner_new(debug, err, errlen);
    cluster->mock = cluster->rk ? rd_kafka_mock_cluster_new(cluster->rk, n_brokers) : NULL;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!cluster->mock) {
        if (cluster->rk) {
            snprintf(err, errlen, "cannot create the mock cluster");
            rd_kafka_destroy(cluster->rk);
        }
        return -1;
    }
    if (create_topics(cluster, topics, n_topics, n_brokers < 3 ? n_brokers : 3, err, errlen) <
        0) {
        cluster_stop(cluster);
        return -1;
    }
    cluster->bootstraps = rd_kafka_mock_cluster_bootstraps(cluster->mock);
    int listeners = cluster_disable_nagle();
    if (listeners < n_brokers)
        log_warn("dev broker: TCP_NODELAY set on %d listening sockets for %d brokers: "
                 "acknowledgements may wait up to 40 ms (delayed ACK)",
                 listeners, n_brokers);
    return 0;
}

int cluster_write_bootstrap_file(const cluster_t *cluster, const char *path)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -errno;
    fprintf(f, "%s\n", cluster->bootstraps);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return -e;
    }
    return 0;
}

void cluster_stop(cluster_t *cluster)
{
    if (cluster->mock)
        rd_kafka_mock_cluster_destroy(cluster->mock);
    if (cluster->rk)
        rd_kafka_destroy(cluster->rk);
    cluster->mock = NULL;
    cluster->rk = NULL;
    cluster->bootstraps = NULL;
}
