/* config_keys.c - the tables of the shared configuration sections. See config_keys.h. */
#include "config_keys.h"

#include <stddef.h>

/* Each table fills its declared size (config_keys.h); tests/unit/test_config.c checks that
 * no entry was left zeroed. */

const config_key_t log_config_keys[LOG_CONFIG_N_KEYS] = {
    {"log.level", CONFIG_STRING, offsetof(log_config_t, level), "info", 0, 0,
     "debug|info|warn|error", "Lowest level of log line written to stderr."},
    {"log.format", CONFIG_STRING, offsetof(log_config_t, format), "plain", 0, 0, "plain|json",
     "Log line format: plain text, or one JSON object per line."},
};

const config_key_t http_config_keys[HTTP_CONFIG_N_KEYS] = {
    {"http.host", CONFIG_STRING, offsetof(http_config_t, host), "127.0.0.1", 0, 255, NULL,
     "Address the HTTP server (health, metrics, API) listens on."},
    {"http.port", CONFIG_INT, offsetof(http_config_t, port), "0", 0, 65535, NULL,
     "TCP port of the HTTP server; 0 picks a free port and logs it."},
    {"http.max_connections", CONFIG_INT, offsetof(http_config_t, max_connections), "10000", 1,
     1000000, NULL, "Connections held at once; past it new ones are accepted and closed."},
};

const config_key_t kafka_config_keys[KAFKA_CONFIG_N_KEYS] = {
    {"kafka.brokers", CONFIG_STRING, offsetof(kafka_config_t, brokers), "127.0.0.1:9092", 0,
     4096, NULL, "Kafka bootstrap servers, host:port separated by commas."},
    {"kafka.properties", CONFIG_STRING, offsetof(kafka_config_t, properties), "", 0, 8192, NULL,
     "Extra librdkafka properties as key=value pairs separated by commas "
     "(e.g. security.protocol=SASL_SSL); applied last."},
    {"kafka.session_timeout_ms", CONFIG_INT, offsetof(kafka_config_t, session_timeout_ms),
     "6000", 1000, 300000, NULL,
     "Consumer group session timeout: how long a crashed member holds its partitions."},
    {"kafka.fetch_wait_max_ms", CONFIG_INT, offsetof(kafka_config_t, fetch_wait_max_ms), "10", 0,
     10000, NULL, "Longest a fetch waits for data; bounds latency on a quiet topic."},
    {"kafka.commit_interval_ms", CONFIG_INT, offsetof(kafka_config_t, commit_interval_ms),
     "1000", 10, 60000, NULL, "How often stored (processed) offsets are committed."},
    {"kafka.batch_max", CONFIG_INT, offsetof(kafka_config_t, batch_max), "1000", 1, 100000,
     NULL, "Messages handed to the application per loop wakeup before other I/O runs."},
    {"kafka.batch_budget_us", CONFIG_INT, offsetof(kafka_config_t, batch_budget_us), "2000", 100,
     1000000, NULL,
     "Longest a loop wakeup spends handing messages to the application (checked every 16) "
     "before other I/O runs: bounds how long a Redis reply or a timer waits behind a backlog."},
    {"kafka.drain_timeout_ms", CONFIG_INT, offsetof(kafka_config_t, drain_timeout_ms), "10000",
     0, 600000, NULL, "On shutdown, how long the producer waits for outstanding deliveries."},
    {"kafka.linger_ms", CONFIG_INT, offsetof(kafka_config_t, linger_ms), "1", 0, 1000, NULL,
     "Producer batching delay (linger.ms): how long a message waits for others to share its "
     "request. 0 sends at once; what queues while a request is in flight still goes together."},
};

const config_key_t redis_config_keys[REDIS_CONFIG_N_KEYS] = {
    {"redis.host", CONFIG_STRING, offsetof(redis_config_t, host), "127.0.0.1", 0, 255, NULL,
     "Redis server address."},
    {"redis.port", CONFIG_INT, offsetof(redis_config_t, port), "6379", 1, 65535, NULL,
     "Redis server port."},
    {"redis.command_timeout_ms", CONFIG_INT, offsetof(redis_config_t, command_timeout_ms),
     "2000", 10, 600000, NULL,
     "A command unanswered this long drops the connection, fails pending commands and "
     "reconnects."},
    {"redis.connect_timeout_ms", CONFIG_INT, offsetof(redis_config_t, connect_timeout_ms),
     "2000", 10, 600000, NULL, "Longest a connection attempt may take."},
    {"redis.reconnect_max_ms", CONFIG_INT, offsetof(redis_config_t, reconnect_max_ms), "5000",
     10, 600000, NULL, "Upper bound of the exponential reconnect backoff."},
    {"redis.max_pending", CONFIG_INT, offsetof(redis_config_t, max_pending), "100000", 1,
     10000000, NULL, "Commands in flight at most; past it commands are refused."},
};
