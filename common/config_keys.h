/* config_keys.h - the configuration sections services share: log, http, kafka, redis.
 *
 * Each service builds its table of keys from these sections plus its own (config.h). The
 * structs hold exactly what the keys say; config_free releases their strings. */
#ifndef INTEGRAL_CONFIG_KEYS_H
#define INTEGRAL_CONFIG_KEYS_H

#include "config.h"

#include <stdbool.h>

typedef struct {
    char *level;  /* debug | info | warn | error */
    char *format; /* plain | json */
} log_config_t;

typedef struct {
    char *host;
    long port; /* 0: an ephemeral port, logged at start */
    long max_connections;
} http_config_t;

typedef struct {
    char *brokers;          /* bootstrap list, host:port[,host:port...] */
    char *properties;       /* extra librdkafka properties: "key=value,key=value" */
    long session_timeout_ms;
    long fetch_wait_max_ms;
    long commit_interval_ms;
    long batch_max;         /* messages handed to the application per loop wakeup */
    long batch_budget_us;   /* ... and the longest that may take */
    long drain_timeout_ms;  /* producer: how long shutdown waits for delivery reports */
    long linger_ms;
} kafka_config_t;

typedef struct {
    char *host;
    long port;
    long command_timeout_ms;
    long connect_timeout_ms;
    long reconnect_max_ms;
    long max_pending;
} redis_config_t;

/* Key counts are constants so that a service can put these sections in a static table. */
enum {
    LOG_CONFIG_N_KEYS = 2,
    HTTP_CONFIG_N_KEYS = 3,
    KAFKA_CONFIG_N_KEYS = 9,
    REDIS_CONFIG_N_KEYS = 6,
};

extern const config_key_t log_config_keys[LOG_CONFIG_N_KEYS];
extern const config_key_t http_config_keys[HTTP_CONFIG_N_KEYS];
extern const config_key_t kafka_config_keys[KAFKA_CONFIG_N_KEYS];
extern const config_key_t redis_config_keys[REDIS_CONFIG_N_KEYS];

#define LOG_CONFIG_SECTION(base) {log_config_keys, LOG_CONFIG_N_KEYS, (base)}
#define HTTP_CONFIG_SECTION(base) {http_config_keys, HTTP_CONFIG_N_KEYS, (base)}
#define KAFKA_CONFIG_SECTION(base) {kafka_config_keys, KAFKA_CONFIG_N_KEYS, (base)}
#define REDIS_CONFIG_SECTION(base) {redis_config_keys, REDIS_CONFIG_N_KEYS, (base)}

#endif
