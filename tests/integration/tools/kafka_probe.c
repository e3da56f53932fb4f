/* kafka_probe - a minimal Integral service for the Kafka glue's integration tests.
 *
 * It consumes a topic in a group through kafka_uv's loop-driven consumer and, for every
 * message, appends "partition offset key" to an output file (the "effect", one write(2) so a
 * kill -9 loses nothing written), then marks the message done. Optionally paced (probe.rate)
 * so that a test can kill it in the middle of a stream. Being a service, it also exercises the
 * lifecycle: SIGTERM closes the consumer asynchronously and exits 0 with an empty loop. */
#include "kafka_uv.h"
#include "log.h"
#include "service.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char *topic;
    char *group;
    char *output;
    long rate; /* messages per second, 0 = as fast as they come */
} probe_config_t;

static probe_config_t config;
static kafka_config_t kafka;
static kafka_consumer_t *consumer;
static uv_timer_t pace_timer;
static int out_fd = -1;
static uint64_t processed;
static service_t *service;

#define PACE_BATCH 50

static const config_key_t probe_keys[] = {
    {"probe.topic", CONFIG_STRING, offsetof(probe_config_t, topic), "it-probe", 1, 249, NULL,
     "Topic to consume."},
    {"probe.group", CONFIG_STRING, offsetof(probe_config_t, group), "it-probe", 1, 249, NULL,
     "Consumer group."},
    {"probe.output", CONFIG_STRING, offsetof(probe_config_t, output), "probe.out", 1, 4096,
     NULL, "File that every processed message is appended to."},
    {"probe.rate", CONFIG_INT, offsetof(probe_config_t, rate), "0", 0, 1000000, NULL,
     "Messages processed per second at most; 0 for no limit."},
};

static const config_section_t sections[] = {
    CONFIG_SECTION(probe_keys, &config),
    KAFKA_CONFIG_SECTION(&kafka),
};

static void on_pace(uv_timer_t *timer)
{
    kafka_consumer_hold(consumer, false);
}

static void on_message(kafka_consumer_t *c, rd_kafka_message_t *m, void *data)
{
    char line[512];
    int n = snprintf(line, sizeof line, "%d %lld %.*s\n", m->partition, (long long)m->offset,
                     (int)(m->key_len < 200 ? m->key_len : 200), (const char *)m->key);
    if (write(out_fd, line, (size_t)n) != n)
        log_error("probe: write failed");
    kafka_consumer_done(c, rd_kafka_topic_name(m->rkt), m->partition, m->offset);
    rd_kafka_message_destroy(m);
    processed++;
    if (config.rate > 0 && processed % PACE_BATCH == 0) {
        kafka_consumer_hold(c, true);
        uv_timer_start(&pace_timer, on_pace, (uint64_t)(PACE_BATCH * 1000 / config.rate), 0);
    }
}

static int start(service_t *svc)
{
    service = svc;
    out_fd = open(config.output, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out_fd < 0) {
        log_error("probe.output: cannot open %s", config.output);
        return -1;
    }
    uv_timer_init(&svc->loop, &pace_timer);
    const char *topics[] = {config.topic, NULL};
    kafka_consumer_handlers_t handlers = {.on_message = on_message};
    char err[512];
    if (kafka_consumer_new(&consumer, &svc->loop, &kafka, config.group, topics, &handlers, NULL,
                           err, sizeof err) < 0) {
        log_error("probe: %s", err);
        return -1;
    }
    return 0;
}

static void on_consumer_closed(void *data)
{
    log_info("probe: consumer closed after %llu messages", (unsigned long long)processed);
    close(out_fd);
    service_stopped(service);
}

static void stop(service_t *svc)
{
    uv_close((uv_handle_t *)&pace_timer, NULL);
    if (consumer)
        kafka_consumer_close(consumer, on_consumer_closed, NULL);
    else
        on_consumer_closed(NULL);
}

int main(int argc, char **argv)
{
    static const service_desc_t desc = {
        .name = "kafka-probe",
        .summary = "test consumer: appends every message of a topic to a file",
        .sections = sections,
        .n_sections = 2,
        .start = start,
        .stop = stop,
    };
    return service_main(argc, argv, &desc);
}
