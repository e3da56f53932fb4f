/* kafka_uv.c - librdkafka consumer and producer on one libuv loop. See kafka_uv.h.
 *
 * Measured facts this file relies on (shared/notes/event-loop.md, kafka-devbroker.md):
 *  - the io-event write happens only when a queue goes from empty to non-empty, so a wakeup
 *    that stops at the batch cap must re-arm itself (a uv_idle) until the queue is empty, and
 *    a queue that holds something before its io-event is enabled (a log line rd_kafka_new
 *    queued, e.g. a CONFWARN for a kafka.properties key of the other client kind) never
 *    signals: we signal once ourselves after enabling it (measured: without that, no delivery
 *    report ever reached the loop and the engine held every event in flight);
 *  - an eventfd needs an 8-byte io-event payload, a pipe one byte;
 *  - rebalance, error and log callbacks run inside rd_kafka_consumer_poll, on the loop;
 *  - rd_kafka_offsets_store stores exactly the offset given: the next one to read, hence + 1;
 *  - with auto.offset.reset=earliest a position lost to retention is skipped with nothing but
 *    a warning log line, so we watch for that line and make the skip loud (on_consumer_log). */
#include "kafka_uv.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define CLOSE_CHECK_MS 20 /* shutdown only: re-check a close that raised no io-event */
#define KEEPALIVE_POLL_MS 10000

/* ------------------------------------------------------------------------------------------
 * Configuration shared by both clients
 * ---------------------------------------------------------------------------------------- */

static void on_rdkafka_log(const rd_kafka_t *rk, int level, const char *facility, const char *buf)
{
    /* librdkafka uses syslog levels: 0..3 errors, 4 warnings, 5..6 notices, 7 debug. */
    log_level_t ours = level <= 3 ? LOG_LEVEL_ERROR
                       : level == 4 ? LOG_LEVEL_WARN
                       : level <= 6 ? LOG_LEVEL_INFO
                                    : LOG_LEVEL_DEBUG;
    log_write(ours, "kafka %s %s: %s", rd_kafka_name(rk), facility, buf);
}

static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *err,
                    size_t errlen)
{
    char why[256];
    if (rd_kafka_conf_set(conf, name, value, why, sizeof why) != RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "kafka property %s=%s: %s", name, value, why);
        return -1;
    }
    return 0;
}

/* Applies "key=value,key=value" from kafka.properties. */
static int conf_set_list(rd_kafka_conf_t *conf, const char *list, char *err, size_t errlen)
{
    char *copy = strdup(list), *save = NULL;
    if (!copy)
        return -1;
    int rc = 0;
    for (char *pair = strtok_r(copy, ",", &save); pair && rc == 0;
         pair = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(pair, '=');
        if (!eq) {
            snprintf(err, errlen, "kafka.properties: \"%s\" is not key=value", pair);
            rc = -1;
            break;
        }
        *eq = '\0';
        rc = conf_set(conf, pair, eq + 1, err, errlen);
    }
    free(copy);
    return rc;
}

static rd_kafka_conf_t *conf_new(const kafka_config_t *cfg, const char *const *pairs, char *err,
                                 size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int rc = conf_set(conf, "bootstrap.servers", cfg->brokers, err, errlen);
    rc = rc ? rc : conf_set(conf, "log.queue", "true", err, errlen);
    for (size_t i = 0; rc == 0 && pairs[i]; i += 2)
        rc = conf_set(conf, pairs[i], pairs[i + 1], err, errlen);
    if (rc == 0 && cfg->properties && cfg->properties[0])
        rc = conf_set_list(conf, cfg->properties, err, errlen);
    if (rc) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, on_rdkafka_log);
    return conf;
}

static void drain_fd(int fd)
{
    char buf[64];
    while (read(fd, buf, sizeof buf) > 0)
        ;
}

/* A one-element partition list, for the calls that take lists. Caller destroys. */
static rd_kafka_topic_partition_list_t *one_partition(const char *topic, int32_t partition,
                                                      int64_t offset)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, topic, partition)->offset = offset;
    return list;
}

/* ------------------------------------------------------------------------------------------
 * Consumer
 * ---------------------------------------------------------------------------------------- */

struct kafka_consumer {
    uv_loop_t *loop;
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue; /* the consumer queue; the main queue is forwarded into it */
    int pipe_fds[2];
    uv_poll_t poll;
    uv_idle_t rearm;         /* keeps serving while the queue is non-empty past a batch */
    uv_timer_t tick;         /* keepalive poll; during close, the close check */
    kafka_consumer_handlers_t handlers;
    void *data;
    long batch_max;
    uint64_t batch_budget_ns; /* 0: no time bound */
    bool hold;
    bool closing;
    int open_handles;
    void (*close_cb)(void *data);
    void *close_data;
    kafka_consumer_stats_t stats;
};

static void consumer_serve(kafka_consumer_t *c);
static void on_rearm(uv_idle_t *idle);

static void on_consumer_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    kafka_consumer_t *c = opaque;
    c->stats.errors++;
    log_warn("kafka consumer: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static bool cooperative(rd_kafka_t *rk)
{
    return strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    kafka_consumer_t *c = opaque;
    bool coop = cooperative(rk);
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t rerr = RD_KAFKA_RESP_ERR_NO_ERROR;
    c->stats.rebalances++;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        log_info("kafka consumer: assigned %d partition(s)", parts->cnt);
        bool later = c->handlers.on_assign && !c->closing &&
                     c->handlers.on_assign(c, parts, c->data) == KAFKA_ASSIGN_LATER;
        if (later)
            return; /* the group waits for kafka_consumer_assign */
        if (coop)
            error = rd_kafka_incremental_assign(rk, parts);
        else
            rerr = rd_kafka_assign(rk, parts);
    } else {
        log_info("kafka consumer: revoking %d partition(s) (%s)", parts->cnt,
                 rd_kafka_err2name(err));
        if (c->handlers.on_revoke)
            c->handlers.on_revoke(c, parts, c->data);
        /* Commit what was processed before the partitions move on. A broker in the middle of
         * a rebalance may refuse it; the committed offset then stays behind and the new
         * owner re-reads from there: duplicates, never loss. */
        rd_kafka_commit(rk, NULL, 1);
        if (coop)
            error = rd_kafka_incremental_unassign(rk, parts);
        else
            rerr = rd_kafka_assign(rk, NULL);
    }
    if (error) {
        log_error("kafka consumer: rebalance: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else if (rerr) {
        log_error("kafka consumer: rebalance: %s", rd_kafka_err2str(rerr));
    }
}

/* librdkafka resets a position the broker no longer holds (retention deleted it) to the
 * earliest retained offset and says so only in a warning of facility OFFSET ("offset reset
 * (at offset N, broker B) to ... fetch failed due to requested offset not available"). A
 * group's first start (no committed offset) is logged at debug level, not here. We make the
 * warning loud and count it: it is data loss.
 * Why not auto.offset.reset=error and a deliberate seek: in 2.0.2 that error leaves the
 * partition in fetch state NONE, where a seek is refused (ERR__STATE, reported only to a
 * blocking seek), so the partition would stay stuck until the next rebalance. */
static void on_consumer_log(const rd_kafka_t *rk, int level, const char *facility,
                            const char *buf)
{
    kafka_consumer_t *c = rd_kafka_opaque(rk);
    if (level <= 4 && strcmp(facility, "OFFSET") == 0 && strstr(buf, "offset reset")) {
        c->stats.offset_resets++;
        log_error("kafka consumer: DATA LOSS: the broker no longer retains the position; "
                  "continuing from the earliest retained offset: %s",
                  buf);
        return;
    }
    on_rdkafka_log(rk, level, facility, buf);
}

static void consumer_handle(kafka_consumer_t *c, rd_kafka_message_t *m)
{
    if (!m->err && !c->closing) {
        c->stats.messages++;
        c->handlers.on_message(c, m, c->data); /* takes m */
        return;
    }
    if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        c->stats.errors++;
        log_warn("kafka consumer: %s", rd_kafka_message_errstr(m));
    }
    /* While closing, messages are dropped unprocessed: their offsets were not stored, so
     * they are delivered again to whoever owns the partition next. */
    rd_kafka_message_destroy(m);
}

static void on_consumer_handle_closed(uv_handle_t *handle)
{
    kafka_consumer_t *c = handle->data;
    if (--c->open_handles > 0)
        return;
    rd_kafka_queue_destroy(c->queue);
    rd_kafka_destroy(c->rk); /* the group was left already: this takes ~1 ms */
    close(c->pipe_fds[0]);
    close(c->pipe_fds[1]);
    void (*cb)(void *) = c->close_cb;
    void *data = c->close_data;
    free(c);
    if (cb)
        cb(data);
}

static void consumer_finish_close(kafka_consumer_t *c)
{
    rd_kafka_queue_io_event_enable(c->queue, -1, NULL, 0);
    c->open_handles = 3;
    uv_close((uv_handle_t *)&c->poll, on_consumer_handle_closed);
    uv_close((uv_handle_t *)&c->rearm, on_consumer_handle_closed);
    uv_close((uv_handle_t *)&c->tick, on_consumer_handle_closed);
}

/* Hands queued messages to the application: at most batch_max, and for at most the time
 * budget (read every CONSUMER_CLOCK_EVERY messages), so that a backlog does not keep the
 * loop from other I/O: a reply the application waits for (its Redis write, say) would
 * otherwise wait a whole batch - ~10 ms for 1,000 events in the engine's benchmark, with
 * Redis idle meanwhile. The rest is served on the next loop iteration (on_rearm). */
#define CONSUMER_CLOCK_EVERY 16

static void consumer_serve(kafka_consumer_t *c)
{
    long served = 0;
    uint64_t until = c->batch_budget_ns ? uv_hrtime() + c->batch_budget_ns : UINT64_MAX;
    while ((!c->hold || c->closing) && served < c->batch_max) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 0);
        if (!m)
            break;
        consumer_handle(c, m);
        served++;
        if (served % CONSUMER_CLOCK_EVERY == 0 && uv_hrtime() >= until)
            break;
    }
    if (c->closing && rd_kafka_consumer_closed(c->rk)) {
        if (c->open_handles == 0)
            consumer_finish_close(c);
        return;
    }
    bool more = rd_kafka_queue_length(c->queue) > 0 && (!c->hold || c->closing);
    if (more)
        uv_idle_start(&c->rearm, on_rearm); /* no-op when already active */
    else
        uv_idle_stop(&c->rearm);
}

static void on_rearm(uv_idle_t *idle)
{
    consumer_serve(idle->data);
}

static void on_consumer_readable(uv_poll_t *poll, int status, int events)
{
    kafka_consumer_t *c = poll->data;
    drain_fd(c->pipe_fds[0]);
    consumer_serve(c);
}

static void on_tick(uv_timer_t *timer)
{
    consumer_serve(timer->data);
}

static rd_kafka_t *consumer_rk_new(kafka_consumer_t *c, const kafka_config_t *cfg,
                                   const char *group, char *err, size_t errlen)
{
    char session[32], fetch_wait[32], commit[32];
    snprintf(session, sizeof session, "%ld", cfg->session_timeout_ms);
    snprintf(fetch_wait, sizeof fetch_wait, "%ld", cfg->fetch_wait_max_ms);
    snprintf(commit, sizeof commit, "%ld", cfg->commit_interval_ms);
    const char *pairs[] = {
        "group.id", group,
        "enable.auto.offset.store", "false", /* we store after the effect, not on receipt */
        "enable.auto.commit", "true",        /* commits what we stored, periodically */
        "auto.commit.interval.ms", commit,
        "auto.offset.reset", "earliest",     /* a reset past lost data is made loud: on_consumer_log */
        "session.timeout.ms", session,
        "heartbeat.interval.ms", cfg->session_timeout_ms >= 3000 ? "1000" : "300",
        "fetch.wait.max.ms", fetch_wait,
        "partition.assignment.strategy", "cooperative-sticky",
        NULL,
    };
    rd_kafka_conf_t *conf = conf_new(cfg, pairs, err, errlen);
    if (!conf)
        return NULL;
    rd_kafka_conf_set_opaque(conf, c);
    rd_kafka_conf_set_error_cb(conf, on_consumer_error);
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_log_cb(conf, on_consumer_log);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errlen);
    if (!rk)
        rd_kafka_conf_destroy(conf);
    return rk;
}

/* A third of max.poll.interval.ms, at most KEEPALIVE_POLL_MS. */
static uint64_t keepalive_ms(rd_kafka_t *rk)
{
    char value[32];
    size_t size = sizeof value;
    long max_poll = 300000;
    if (rd_kafka_conf_get(rd_kafka_conf(rk), "max.poll.interval.ms", value, &size) ==
        RD_KAFKA_CONF_OK)
        max_poll = strtol(value, NULL, 10);
    long third = max_poll / 3;
    return (uint64_t)(third > 0 && third < KEEPALIVE_POLL_MS ? third : KEEPALIVE_POLL_MS);
}

static int subscribe(rd_kafka_t *rk, const char *const *topics, char *err, size_t errlen)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(4);
    for (size_t i = 0; topics[i]; i++)
        rd_kafka_topic_partition_list_add(list, topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t rerr = rd_kafka_subscribe(rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (rerr) {
        snprintf(err, errlen, "kafka subscribe: %s", rd_kafka_err2str(rerr));
        return -1;
    }
    return 0;
}

int kafka_consumer_new(kafka_consumer_t **out, uv_loop_t *loop, const kafka_config_t *cfg,
                       const char *group, const char *const *topics,
                       const kafka_consumer_handlers_t *handlers, void *data, char *err,
                       size_t errlen)
{
    kafka_consumer_t *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->loop = loop;
    c->handlers = *handlers;
    c->data = data;
    c->batch_max = cfg->batch_max;
    c->batch_budget_ns = (uint64_t)cfg->batch_budget_us * 1000;
    c->rk = consumer_rk_new(c, cfg, group, err, errlen);
    if (!c->rk || pipe2(c->pipe_fds, O_NONBLOCK | O_CLOEXEC) < 0) {
        if (c->rk) {
            snprintf(err, errlen, "pipe: %s", strerror(errno));
            rd_kafka_destroy(c->rk);
        }
        free(c);
        return -1;
    }
    rd_kafka_poll_set_consumer(c->rk);          /* main queue (errors, logs) -> consumer queue */
    rd_kafka_set_log_queue(c->rk, NULL);        /* logs are served on the loop too */
    c->queue = rd_kafka_queue_get_consumer(c->rk);
    /* Enable the io-event on the final, forwarded-to queue only; serve what it holds. */
    rd_kafka_queue_io_event_enable(c->queue, c->pipe_fds[1], "1", 1);
    ssize_t signalled = write(c->pipe_fds[1], "1", 1);
    (void)signalled; /* a full pipe has a wakeup pending already */
    uv_poll_init(loop, &c->poll, c->pipe_fds[0]);
    uv_idle_init(loop, &c->rearm);
    uv_timer_init(loop, &c->tick);
    c->poll.data = c->rearm.data = c->tick.data = c;
    /* librdkafka counts the time between consumer polls against max.poll.interval.ms (300 s)
     * and leaves the group past it; io-events only wake us when something arrives, so an idle
     * consumer polls on this timer too (measured: without it an idle engine left its group
     * every 5 minutes). */
    uint64_t keepalive = keepalive_ms(c->rk);
    uv_timer_start(&c->tick, on_tick, keepalive, keepalive);
    uv_poll_start(&c->poll, UV_READABLE, on_consumer_readable);
    if (subscribe(c->rk, topics, err, errlen) < 0) {
        kafka_consumer_close(c, NULL, NULL);
        *out = NULL;
        return -1;
    }
    *out = c;
    return 0;
}

rd_kafka_resp_err_t kafka_consumer_done(kafka_consumer_t *c, const char *topic, int32_t partition, int64_t offset)
{
    rd_kafka_topic_partition_list_t *list = one_partition(topic, partition, offset + 1);
    rd_kafka_resp_err_t rerr = rd_kafka_offsets_store(c->rk, list);
    if (!rerr)
        rerr = list->elems[0].err;
    rd_kafka_topic_partition_list_destroy(list);
    return rerr;
}

static rd_kafka_resp_err_t partition_call(kafka_consumer_t *c, const char *topic, int32_t partition, bool pause)
{
    rd_kafka_topic_partition_list_t *list = one_partition(topic, partition, 0);
    rd_kafka_resp_err_t rerr = pause ? rd_kafka_pause_partitions(c->rk, list)
                                     : rd_kafka_resume_partitions(c->rk, list);
    if (!rerr)
        rerr = list->elems[0].err;
    rd_kafka_topic_partition_list_destroy(list);
    return rerr;
}

rd_kafka_resp_err_t kafka_consumer_pause(kafka_consumer_t *c, const char *topic, int32_t partition)
{
    return partition_call(c, topic, partition, true);
}

rd_kafka_resp_err_t kafka_consumer_resume(kafka_consumer_t *c, const char *topic, int32_t partition)
{
    rd_kafka_resp_err_t rc = partition_call(c, topic, partition, false);
    consumer_serve(c);
    return rc;
}

rd_kafka_resp_err_t kafka_consumer_seek(kafka_consumer_t *c, const char *topic, int32_t partition, int64_t offset)
{
    rd_kafka_topic_partition_list_t *list = one_partition(topic, partition, offset);
    /* Timeout 0: asynchronous, the loop never waits. Messages fetched before the seek are
     * discarded by librdkafka (they carry an outdated version). */
    rd_kafka_error_t *error = rd_kafka_seek_partitions(c->rk, list, 0);
    rd_kafka_resp_err_t rc = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (error) {
        log_error("kafka consumer: seek %s [%d] to %lld: %s", topic, partition, (long long)offset,
                  rd_kafka_error_string(error));
        rc = rd_kafka_error_code(error);
        rd_kafka_error_destroy(error);
    }
    rd_kafka_topic_partition_list_destroy(list);
    return rc;
}

rd_kafka_resp_err_t kafka_consumer_assign(kafka_consumer_t *c,
                                          const rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_resp_err_t rerr = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (cooperative(c->rk)) {
        rd_kafka_error_t *error = rd_kafka_incremental_assign(c->rk, parts);
        if (error) {
            rerr = rd_kafka_error_code(error);
            log_error("kafka consumer: assign: %s", rd_kafka_error_string(error));
            rd_kafka_error_destroy(error);
        }
    } else {
        rerr = rd_kafka_assign(c->rk, parts);
    }
    consumer_serve(c);
    return rerr;
}

rd_kafka_resp_err_t kafka_consumer_rewind(kafka_consumer_t *c, const char *topic, int32_t partition, int64_t offset)
{
    rd_kafka_resp_err_t rc = kafka_consumer_pause(c, topic, partition);
    return rc ? rc : kafka_consumer_seek(c, topic, partition, offset);
}

void kafka_consumer_hold(kafka_consumer_t *c, bool hold)
{
    c->hold = hold;
    if (!hold)
        consumer_serve(c);
}

void kafka_consumer_commit(kafka_consumer_t *c)
{
    rd_kafka_commit(c->rk, NULL, 1);
}

int64_t kafka_consumer_lag(kafka_consumer_t *c)
{
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(c->rk, &parts))
        return -1;
    rd_kafka_position(c->rk, parts);
    int64_t lag = parts->cnt ? 0 : -1;
    for (int i = 0; i < parts->cnt; i++) {
        int64_t low, high;
        rd_kafka_topic_partition_t *p = &parts->elems[i];
        if (rd_kafka_get_watermark_offsets(c->rk, p->topic, p->partition, &low, &high) ||
            high < 0 || p->offset < 0)
            continue;
        lag += high > p->offset ? high - p->offset : 0;
    }
    rd_kafka_topic_partition_list_destroy(parts);
    return lag;
}

const kafka_consumer_stats_t *kafka_consumer_stats(const kafka_consumer_t *c)
{
    return &c->stats;
}

rd_kafka_t *kafka_consumer_rk(kafka_consumer_t *c)
{
    return c->rk;
}

void kafka_consumer_close(kafka_consumer_t *c, void (*close_cb)(void *data), void *data)
{
    if (c->closing)
        return;
    c->closing = true;
    c->close_cb = close_cb;
    c->close_data = data;
    rd_kafka_error_t *error = rd_kafka_consumer_close_queue(c->rk, c->queue);
    if (error) {
        log_error("kafka consumer: close: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    /* The close finishes on the queue (revoke, leave group); its last step raises no event
     * of its own on every path, so re-check on a short timer during shutdown only. */
    uv_timer_start(&c->tick, on_tick, CLOSE_CHECK_MS, CLOSE_CHECK_MS);
    consumer_serve(c);
}

/* ------------------------------------------------------------------------------------------
 * Producer
 *
 * A producer is one live librdkafka instance plus, after a fatal error, retired instances that
 * are being emptied: their messages are purged, which turns each into an error delivery
 * report, and each retired instance is destroyed once nothing is outstanding on it.
 * ---------------------------------------------------------------------------------------- */

typedef struct producer_instance {
    kafka_producer_t *owner;
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue; /* main queue: delivery reports, errors, logs */
    int efd;
    uv_poll_t poll;
    bool fatal;    /* set by the error callback; handled once the poll returns */
    bool retiring;
    bool closing;
    struct producer_instance *next_retired;
} producer_instance_t;

struct kafka_producer {
    uv_loop_t *loop;
    kafka_config_t cfg; /* strings borrowed from the caller's config, used to recreate */
    producer_instance_t *live;
    producer_instance_t *retired;
    kafka_delivery_cb on_delivery;
    void *data;
    bool closing;
    uv_timer_t drain_timer;
    uint64_t drain_started_ms;
    void (*close_cb)(void *data);
    void *close_data;
    kafka_producer_stats_t stats;
};

static int producer_instance_new(kafka_producer_t *p, char *err, size_t errlen);

static void on_delivery_report(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    producer_instance_t *inst = opaque;
    kafka_producer_t *p = inst->owner;
    if (m->err) {
        p->stats.failed++;
        log_warn("kafka producer: delivery to %s failed: %s", rd_kafka_topic_name(m->rkt),
                 rd_kafka_err2str(m->err));
    } else {
        p->stats.delivered++;
    }
    if (p->on_delivery)
        p->on_delivery(p, m->err, m->_private, p->data);
}

static void on_producer_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    producer_instance_t *inst = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, why, sizeof why);
        log_error("kafka producer: fatal error %s: %s; replacing the producer",
                  rd_kafka_err2name(orig), why);
        inst->fatal = true;
        /* Replace the live instance now, before this instance's failed delivery reports
         * reach the application: a message it sends again must go to the new one. */
        kafka_producer_t *p = inst->owner;
        char errtext[256];
        if (p->live == inst) {
            p->live = NULL;
            if (!p->closing && producer_instance_new(p, errtext, sizeof errtext) < 0)
                log_error("kafka producer: cannot recreate: %s", errtext);
        }
        return;
    }
    log_warn("kafka producer: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static void on_instance_closed(uv_handle_t *handle)
{
    producer_instance_t *inst = handle->data;
    rd_kafka_queue_destroy(inst->queue);
    rd_kafka_destroy(inst->rk); /* nothing outstanding any more: does not block */
    close(inst->efd);
    free(inst);
}

static void instance_close(producer_instance_t *inst)
{
    inst->closing = true;
    rd_kafka_queue_io_event_enable(inst->queue, -1, NULL, 0);
    uv_close((uv_handle_t *)&inst->poll, on_instance_closed);
}

/* Puts a broken instance aside; its messages come back as error delivery reports. */
static void instance_retire(kafka_producer_t *p, producer_instance_t *inst)
{
    inst->retiring = true;
    inst->next_retired = p->retired;
    p->retired = inst;
    rd_kafka_purge(inst->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT |
                                 RD_KAFKA_PURGE_F_NON_BLOCKING);
    p->stats.recreated++;
}

static void sweep_retired(kafka_producer_t *p)
{
    for (producer_instance_t **pp = &p->retired; *pp;) {
        producer_instance_t *inst = *pp;
        if (!inst->closing && rd_kafka_outq_len(inst->rk) == 0) {
            *pp = inst->next_retired;
            instance_close(inst);
        } else {
            pp = &inst->next_retired;
        }
    }
}

static void producer_check_close(kafka_producer_t *p);

static void on_producer_readable(uv_poll_t *poll, int status, int events)
{
    producer_instance_t *inst = poll->data;
    kafka_producer_t *p = inst->owner;
    uint64_t count;
    ssize_t ignored = read(inst->efd, &count, sizeof count);
    (void)ignored;
    while (rd_kafka_poll(inst->rk, 0) > 0)
        ;
    if (inst->fatal && !inst->retiring) {
        /* on_producer_error already made another instance live. */
        instance_retire(p, inst);
        while (rd_kafka_poll(inst->rk, 0) > 0) /* the purge's delivery reports */
            ;
    }
    sweep_retired(p);
    producer_check_close(p);
}

static int producer_instance_new(kafka_producer_t *p, char *err, size_t errlen)
{
    char linger[32];
    snprintf(linger, sizeof linger, "%ld", p->cfg.linger_ms);
    const char *pairs[] = {
        "enable.idempotence", "true", /* off by default in librdkafka 2.0 */
        "linger.ms", linger,
        NULL,
    };
    producer_instance_t *inst = calloc(1, sizeof *inst);
    rd_kafka_conf_t *conf = inst ? conf_new(&p->cfg, pairs, err, errlen) : NULL;
    if (!conf) {
        free(inst);
        return -1;
    }
    inst->owner = p;
    rd_kafka_conf_set_opaque(conf, inst);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery_report);
    rd_kafka_conf_set_error_cb(conf, on_producer_error);
    inst->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
    if (!inst->rk) {
        rd_kafka_conf_destroy(conf);
        free(inst);
        return -1;
    }
    inst->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    rd_kafka_set_log_queue(inst->rk, NULL);
    inst->queue = rd_kafka_queue_get_main(inst->rk);
    uint64_t one = 1; /* an eventfd takes an 8-byte increment */
    rd_kafka_queue_io_event_enable(inst->queue, inst->efd, &one, sizeof one);
    ssize_t signalled = write(inst->efd, &one, sizeof one); /* serve what it holds already */
    (void)signalled; /* only fails at a counter near 2^64: a wakeup is pending then */
    uv_poll_init(p->loop, &inst->poll, inst->efd);
    inst->poll.data = inst;
    uv_poll_start(&inst->poll, UV_READABLE, on_producer_readable);
    p->live = inst;
    return 0;
}

int kafka_producer_new(kafka_producer_t **out, uv_loop_t *loop, const kafka_config_t *cfg,
                       kafka_delivery_cb on_delivery, void *data, char *err, size_t errlen)
{
    kafka_producer_t *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    p->loop = loop;
    p->cfg = *cfg;
    p->on_delivery = on_delivery;
    p->data = data;
    if (producer_instance_new(p, err, errlen) < 0) {
        free(p);
        return -1;
    }
    uv_timer_init(loop, &p->drain_timer);
    p->drain_timer.data = p;
    *out = p;
    return 0;
}

rd_kafka_resp_err_t kafka_producer_send(kafka_producer_t *p, const char *topic, int32_t partition,
                        const void *key, size_t keylen, const void *value, size_t len,
                        rd_kafka_headers_t *headers, void *opaque)
{
    if (p->closing || !p->live)
        return RD_KAFKA_RESP_ERR__STATE;
    rd_kafka_resp_err_t rerr;
    if (headers)
        rerr = rd_kafka_producev(p->live->rk, RD_KAFKA_V_TOPIC(topic),
                                 RD_KAFKA_V_PARTITION(partition),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                 RD_KAFKA_V_KEY(key, keylen), RD_KAFKA_V_VALUE((void *)value, len),
                                 RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_OPAQUE(opaque),
                                 RD_KAFKA_V_END);
    else
        rerr = rd_kafka_producev(p->live->rk, RD_KAFKA_V_TOPIC(topic),
                                 RD_KAFKA_V_PARTITION(partition),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                 RD_KAFKA_V_KEY(key, keylen), RD_KAFKA_V_VALUE((void *)value, len),
                                 RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    if (rerr)
        return rerr;
    p->stats.sent++;
    return RD_KAFKA_RESP_ERR_NO_ERROR;
}

int kafka_producer_outstanding(const kafka_producer_t *p)
{
    int n = p->live ? rd_kafka_outq_len(p->live->rk) : 0;
    for (const producer_instance_t *inst = p->retired; inst; inst = inst->next_retired)
        n += rd_kafka_outq_len(inst->rk);
    return n;
}

const kafka_producer_stats_t *kafka_producer_stats(const kafka_producer_t *p)
{
    return &p->stats;
}

void kafka_producer_inject_fatal(kafka_producer_t *p)
{
    if (p->live)
        rd_kafka_test_fatal_error(p->live->rk, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                                  "injected by a test");
}

static void on_drain_timer_closed(uv_handle_t *handle)
{
    kafka_producer_t *p = handle->data;
    void (*cb)(void *) = p->close_cb;
    void *data = p->close_data;
    free(p);
    if (cb)
        cb(data);
}

static void producer_check_close(kafka_producer_t *p)
{
    if (!p->closing || uv_is_closing((uv_handle_t *)&p->drain_timer))
        return;
    bool expired = uv_now(p->loop) - p->drain_started_ms >= (uint64_t)p->cfg.drain_timeout_ms;
    if (p->live && expired && rd_kafka_outq_len(p->live->rk) > 0) {
        log_error("kafka producer: %d message(s) undelivered after %ld ms; failing them",
                  rd_kafka_outq_len(p->live->rk), p->cfg.drain_timeout_ms);
        producer_instance_t *inst = p->live;
        instance_retire(p, inst);
        p->live = NULL;
        while (rd_kafka_poll(inst->rk, 0) > 0)
            ;
    }
    if (p->live && rd_kafka_outq_len(p->live->rk) == 0) {
        instance_close(p->live);
        p->live = NULL;
    }
    sweep_retired(p);
    if (!p->live && !p->retired)
        uv_close((uv_handle_t *)&p->drain_timer, on_drain_timer_closed);
}

static void on_drain_timer(uv_timer_t *timer)
{
    kafka_producer_t *p = timer->data;
    if (p->live)
        while (rd_kafka_poll(p->live->rk, 0) > 0)
            ;
    producer_check_close(p);
}

void kafka_producer_close(kafka_producer_t *p, void (*close_cb)(void *data), void *data)
{
    if (p->closing)
        return;
    p->closing = true;
    p->close_cb = close_cb;
    p->close_data = data;
    p->drain_started_ms = uv_now(p->loop);
    /* Delivery reports wake the loop through the eventfd; the timer only enforces the
     * deadline and notices an outq that emptied without a report (internal requests). */
    uv_timer_start(&p->drain_timer, on_drain_timer, CLOSE_CHECK_MS, CLOSE_CHECK_MS);
    producer_check_close(p);
}
