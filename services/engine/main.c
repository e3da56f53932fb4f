/* integral-engine: every interaction into per-customer state in Redis, scores, rules and
 * alerts. Wiring only: configuration, the clients, the pipeline, start and stop.
 *
 * Stop order (SIGINT/SIGTERM): hold the consumer, seal the open batches and wait (up to
 * kafka.drain_timeout_ms) until everything in flight is acknowledged, so that Redis and the
 * committed offsets are current; then close the consumer (leaves the group), drain the
 * producer, close the Redis client (pending replies fail into the pipeline), and last the
 * pipeline. */
#include "agents.h"
#include "customers.h"
#include "engine.h"
#include "feature.h"
#include "livequeue.h"
#include "pipeline.h"
#include "rules.h"
#include "scores.h"
#include "store.h"

#include "kafka_uv.h"
#include "log.h"
#include "redis_uv.h"
#include "service.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#define DRAIN_CHECK_MS 20

static engine_t engine;

static const config_key_t engine_keys[] = {
    {"engine.topic", CONFIG_STRING, offsetof(engine_config_t, topic), "interactions", 1, 249,
     NULL, "Topic of interaction events (CloudEvents, key = subject)."},
    {"engine.group", CONFIG_STRING, offsetof(engine_config_t, group), "integral-engine", 1, 249,
     NULL, "Consumer group; engines in one group share the topic's partitions."},
    {"engine.alerts_topic", CONFIG_STRING, offsetof(engine_config_t, alerts_topic), "alerts", 1,
     249, NULL, "Topic alerts are written to (key = customer id)."},
    {"engine.assignments_topic", CONFIG_STRING, offsetof(engine_config_t, assignments_topic),
     "assignments", 1, 249, NULL,
     "Topic of notices that a contact reached an agent (key = agent id): the gateway's screen "
     "pops."},
    {"engine.deadletter_topic", CONFIG_STRING, offsetof(engine_config_t, deadletter_topic),
     "deadletter", 1, 249, NULL, "Topic bad events go to, unchanged, with reason headers."},
    {"engine.max_event_bytes", CONFIG_INT, offsetof(engine_config_t, max_event_bytes), "65536",
     1024, 1048576, NULL, "A larger message is dead-lettered as too_large."},
    {"engine.max_future_ms", CONFIG_INT, offsetof(engine_config_t, max_future_ms), "300000", 0,
     86400000, NULL, "An event time further ahead of the clock is dead-lettered."},
    {"engine.lateness_ms", CONFIG_INT, offsetof(engine_config_t, lateness_ms), "900000", 0,
     31536000000.0, NULL,
     "An event older than this (by its time) updates state but raises no live alert."},
    {"engine.cache_max_documents", CONFIG_INT, offsetof(engine_config_t, cache_max_documents),
     "200000", 1000, 100000000, NULL,
     "Customer and agent documents kept in memory (about 3 KiB each, at most 10 KiB); beyond "
     "it the least recently used ones are dropped, and loaded from Redis again on their next "
     "event."},
    {"engine.max_queued_events", CONFIG_INT, offsetof(engine_config_t, max_queued_events),
     "20000", 100, 10000000, NULL,
     "Events waiting for their document to load; past it consumption pauses. Their queue "
     "entries (2.3 KB each) are kept for reuse up to this bound."},
    {"engine.max_document_bytes", CONFIG_INT, offsetof(engine_config_t, max_document_bytes),
     "262144", 16384, 16777216, NULL, "Largest serialized document."},
    {"engine.model_file", CONFIG_STRING, offsetof(engine_config_t, model_file),
     "config/model.json", 0, 4096, NULL,
     "Scores: value weights, tier thresholds, churn model, channel costs (empty: built-in). "
     "A relative path is relative to the working directory."},
    {"engine.rules_file", CONFIG_STRING, offsetof(engine_config_t, rules_file),
     "config/rules.json", 0, 4096, NULL,
     "Alert rules; reloaded on SIGHUP and when the file changes (empty: no rules)."},
};

static const config_section_t sections[] = {
    CONFIG_SECTION(engine_keys, &engine.cfg),
    KAFKA_CONFIG_SECTION(&engine.kafka),
    REDIS_CONFIG_SECTION(&engine.redis_cfg),
};

/* The model and the rules are configuration too: a broken file stops the start (and
 * --check-config) with one line saying where. */
static int check_config(char *err, size_t errlen)
{
    state_config_t model;
    scores_config_init(&model);
    if (engine.cfg.model_file[0] &&
        scores_model_load(engine.cfg.model_file, &model, err, errlen) < 0)
        return -1;
    if (!engine.cfg.rules_file[0])
        return 0;
    rules_t *rules = rules_load(engine.cfg.rules_file, &feature_resolver, err, errlen);
    rules_free(rules);
    return rules ? 0 : -1;
}

/* A reconnect may be to a Redis that restarted and lost its last writes (AOF everysec) while
 * this engine was idle, with no write in flight to fail: every owned partition re-reads its
 * documents and resumes from the applied offset Redis holds now, so state converges again
 * (a transient disconnect costs a reload and a replay, nothing else). */
static void on_redis_state(redis_client_t *c, redis_state_t state, const char *reason,
                           void *data)
{
    (void)c;
    engine_t *e = data;
    log_info("redis: %s (%s)", redis_state_name(state), reason ? reason : "");
    if (state != REDIS_STATE_READY)
        return;
    if (e->redis_was_ready && e->pipeline)
        pipeline_resync_all(e->pipeline, "Redis reconnected (it may have lost writes)");
    e->redis_was_ready = true;
}

static int start_redis(engine_t *e)
{
    redis_client_options_t opts = {
        .host = e->redis_cfg.host,
        .port = (int)e->redis_cfg.port,
        .command_timeout_ms = (unsigned)e->redis_cfg.command_timeout_ms,
        .connect_timeout_ms = (unsigned)e->redis_cfg.connect_timeout_ms,
        .reconnect_max_ms = (unsigned)e->redis_cfg.reconnect_max_ms,
        .max_pending = (unsigned)e->redis_cfg.max_pending,
        .on_state = on_redis_state,
        .data = e,
    };
    if (redis_client_new(&e->redis, e->loop, &opts) != 0)
        return -1;
    return redis_client_add_function_library(e->redis, store_function_library());
}

static double read_lag(void *ctx)
{
    engine_t *e = ctx;
    return e->consumer ? (double)kafka_consumer_lag(e->consumer) : 0;
}

/* The producer exists before the pipeline it reports to. */
static void on_delivery(kafka_producer_t *p, rd_kafka_resp_err_t err, void *opaque, void *data)
{
    engine_t *e = data;
    pipeline_on_delivery(p, err, opaque, e->pipeline);
}

/* After an event changed a document: rules and alerts, then the live queue. */
static void on_applied(pipeline_t *p, batch_t *batch, const doc_ops_t *ops, void *doc,
                       const event_t *ev, bool late, void *data)
{
    customers_on_applied(p, batch, ops, doc, ev, late, data);
    livequeue_on_applied(data, batch, ops, doc, ev, late);
}

static int start(service_t *svc)
{
    engine_t *e = &engine;
    e->svc = svc;
    e->loop = &svc->loop;
    char err[512];
    if (customers_init(e, err, sizeof err) < 0) {
        log_error("%s", err);
        return -1;
    }
    if (start_redis(e) < 0) {
        log_error("cannot create the Redis client");
        return -1;
    }
    if (kafka_producer_new(&e->producer, e->loop, &e->kafka, on_delivery, e, err,
                           sizeof err) < 0) {
        log_error("%s", err);
        return -1;
    }
    pipeline_options_t opts = {
        .loop = e->loop,
        .producer = e->producer,
        .redis = e->redis,
        .metrics = svc->metrics,
        .topic = e->cfg.topic,
        .deadletter_topic = e->cfg.deadletter_topic,
        .alerts_topic = e->cfg.alerts_topic,
        .max_event_bytes = (size_t)e->cfg.max_event_bytes,
        .max_future_ms = e->cfg.max_future_ms,
        .lateness_ms = e->cfg.lateness_ms,
        .cache_max_entries = (size_t)e->cfg.cache_max_documents,
        .max_queued_events = (size_t)e->cfg.max_queued_events,
        .max_doc_bytes = (size_t)e->cfg.max_document_bytes,
        .customer_ops = &customer_doc_ops,
        .agent_ops = &agent_doc_ops,
        .doc_ctx = e,
        .on_applied = on_applied,
        .data = e,
    };
    if (pipeline_new(&e->pipeline, &opts) < 0) {
        log_error("cannot create the pipeline");
        return -1;
    }
    const char *topics[] = {e->cfg.topic, NULL};
    kafka_consumer_handlers_t handlers = {
        .on_message = pipeline_on_message,
        .on_assign = pipeline_on_assign,
        .on_revoke = pipeline_on_revoke,
    };
    if (kafka_consumer_new(&e->consumer, e->loop, &e->kafka, e->cfg.group, topics, &handlers,
                           e->pipeline, err, sizeof err) < 0) {
        log_error("%s", err);
        return -1;
    }
    pipeline_attach_consumer(e->pipeline, e->consumer);
    metrics_gauge_fn(svc->metrics, "integral_engine_consumer_lag",
                     "Messages between the consumer's positions and the partitions' ends.", NULL,
                     read_lag, e);
    log_info("consuming %s in group %s", e->cfg.topic, e->cfg.group);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Stop: each step's callback starts the next one.
 * ---------------------------------------------------------------------------------------- */

static void on_pipeline_closed(void *data)
{
    engine_t *e = data;
    e->pipeline = NULL;
    customers_close(e);
    service_stopped(e->svc);
}

/* Last: Redis's pending replies (and their failures) have reached the pipeline by now. */
static void on_redis_closed(redis_client_t *c, void *data)
{
    engine_t *e = data;
    e->redis = NULL;
    if (e->pipeline)
        pipeline_close(e->pipeline, on_pipeline_closed, e);
    else
        on_pipeline_closed(e);
}

static void on_producer_closed(void *data)
{
    engine_t *e = data;
    e->producer = NULL;
    if (e->pipeline)
        pipeline_detach_producer(e->pipeline);
    if (e->redis)
        redis_client_close(e->redis, on_redis_closed, e);
    else
        on_redis_closed(NULL, e);
}

static void on_consumer_closed(void *data)
{
    engine_t *e = data;
    e->consumer = NULL;
    metrics_gauge_fn(e->svc->metrics, "integral_engine_consumer_lag", NULL, NULL, NULL, NULL);
    if (e->pipeline)
        pipeline_attach_consumer(e->pipeline, NULL);
    if (e->producer)
        kafka_producer_close(e->producer, on_producer_closed, e);
    else
        on_producer_closed(e);
}

static void close_consumer(engine_t *e)
{
    if (e->consumer)
        kafka_consumer_close(e->consumer, on_consumer_closed, e);
    else
        on_consumer_closed(e);
}

static void on_drain_closed(uv_handle_t *handle)
{
    close_consumer(handle->data);
}

/* Waits for the in-flight work to be acknowledged, then closes the consumer. */
static void on_drain_check(uv_timer_t *timer)
{
    engine_t *e = timer->data;
    size_t in_flight = pipeline_in_flight(e->pipeline);
    bool expired = uv_now(e->loop) - e->drain_started_ms >= (uint64_t)e->kafka.drain_timeout_ms;
    if (in_flight > 0 && !expired)
        return;
    if (in_flight > 0)
        log_warn("stopping with %zu item(s) unacknowledged; they are replayed on the next "
                 "start",
                 in_flight);
    uv_timer_stop(timer);
    uv_close((uv_handle_t *)timer, on_drain_closed);
}

static void stop(service_t *svc)
{
    engine_t *e = &engine;
    if (!e->pipeline || !e->consumer) {
        close_consumer(e);
        return;
    }
    kafka_consumer_hold(e->consumer, true);
    pipeline_flush(e->pipeline);
    e->drain_started_ms = uv_now(e->loop);
    uv_timer_init(e->loop, &e->drain_timer);
    e->drain_timer.data = e;
    uv_timer_start(&e->drain_timer, on_drain_check, 0, DRAIN_CHECK_MS);
}

static void reload(service_t *svc)
{
    customers_reload(&engine);
}

static bool ready(service_t *svc, const char **why)
{
    if (!engine.pipeline) {
        *why = "starting";
        return false;
    }
    return pipeline_ready(engine.pipeline, why);
}

int main(int argc, char **argv)
{
    /* The engine allocates and frees buffers of tens of KiB to a few MiB all the time (batch
     * writes, hiredis's command and output buffers). By default glibc serves those with
     * mmap/munmap and gives freed heap tops back to the kernel, so every batch paid fresh page
     * faults and TLB shootdowns (a third of the engine's CPU in the benchmark's profile).
     * Keep them in the heap and keep the heap. */
    mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 256 * 1024 * 1024);
    mallopt(M_TOP_PAD, 16 * 1024 * 1024);
    static const service_desc_t desc = {
        .name = "engine",
        .summary = "interaction events into per-customer state, scores, rules and alerts",
        .sections = sections,
        .n_sections = sizeof sections / sizeof sections[0],
        .check_config = check_config,
        .start = start,
        .stop = stop,
        .reload = reload,
        .ready = ready,
    };
    return service_main(argc, argv, &desc);
}
