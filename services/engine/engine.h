/* engine.h - the engine's context: its configuration and the clients every module uses. */
#ifndef INTEGRAL_ENGINE_ENGINE_H
#define INTEGRAL_ENGINE_ENGINE_H

#include <stdbool.h>

#include "config_keys.h"
#include "kafka_uv.h"
#include "redis_uv.h"
#include "service.h"

#include <uv.h>

typedef struct pipeline pipeline_t;
typedef struct customers customers_t;

typedef struct {
    char *topic;
    char *group;
    char *alerts_topic;
    char *assignments_topic;
    char *deadletter_topic;
    long max_event_bytes;
    long max_future_ms;
    long lateness_ms;
    long cache_max_documents;
    long max_queued_events;
    long max_document_bytes;
    char *model_file;
    char *rules_file;
} engine_config_t;

typedef struct {
    service_t *svc;
    uv_loop_t *loop;
    engine_config_t cfg;
    kafka_config_t kafka;
    redis_config_t redis_cfg;
    redis_client_t *redis;
    bool redis_was_ready; /* the client was ready before: a READY now is a reconnect */
    kafka_producer_t *producer;
    kafka_consumer_t *consumer;
    pipeline_t *pipeline;
    customers_t *customers; /* model, rules and alerts: customers.c */
    uv_timer_t drain_timer;
    uint64_t drain_started_ms;
} engine_t;

#endif
