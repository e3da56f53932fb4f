/* gateway.h - the gateway's context: configuration and the clients its modules share.
 *
 * Modules:
 *   ws.c         WebSocket (wslay) on the common HTTP server's raw mode
 *   auth.c       HS256 tokens (libjwt 1.10, algorithm pinned, exp/nbf checked here)
 *   sessions.c   one session per connection: authentication, the protocol (PROTOCOL.md),
 *                agents' alert delivery and resume, supervisors' feed
 *   feed.c       the Kafka side: alerts and assignment notices in, feedback out
 *   wallboard.c  the live queue for supervisors, from the engine's {q}:* keys
 *   gwstore.c    the gateway's Redis keys and functions
 *   api.c        GET /api/customers/{id} and the static web UI */
#ifndef INTEGRAL_GATEWAY_GATEWAY_H
#define INTEGRAL_GATEWAY_GATEWAY_H

#include "auth.h"
#include "config_keys.h"
#include "kafka_uv.h"
#include "redis_uv.h"
#include "service.h"
#include "ws.h"

#include <stdbool.h>
#include <uv.h>

typedef struct sessions sessions_t;
typedef struct feed feed_t;
typedef struct wallboard wallboard_t;

typedef struct {
    char *jwt_secret;
    long jwt_skew_s;
    char *allowed_origins;
    long auth_timeout_ms;
    long max_message_bytes;
    long ping_interval_ms;
    long idle_timeout_ms;
    long max_backlog_bytes;
    long max_backlog_messages;
    double rate_limit_per_s;
    long rate_limit_burst;
    long resume_window_s;
    long pending_alert_ttl_s;
    long screen_pop_max_age_s;
    char *alerts_topic;
    char *assignments_topic;
    char *feedback_topic;
    char *instance;
    long queue_interval_ms;
    long max_waiting_listed;
    long service_level_threshold_s;
    char *service_level_formula;
    double service_level_target;
    double at_risk_churn;
    long feed_size;
    char *web_dir;
} gateway_config_t;

typedef struct {
    service_t *svc;
    uv_loop_t *loop;
    gateway_config_t cfg;
    kafka_config_t kafka;
    redis_config_t redis_cfg;
    redis_client_t *redis;
    kafka_producer_t *producer;
    kafka_consumer_t *consumer;
    auth_keys_t keys;
    ws_options_t ws_opts;
    char **origins; /* parsed gateway.allowed_origins */
    size_t n_origins;
    sessions_t *sessions;
    feed_t *feed;
    wallboard_t *wallboard;
    bool stopping;
} gw_t;

/* Wall-clock milliseconds. */
int64_t gw_now_ms(void);

#endif
