/* it_env.h - what an integration test needs to know about the shared test stack.
 *
 * tests/support/stack.sh writes KEY=VALUE lines to the file named by $INTEGRAL_IT_ENV:
 *   REDIS_HOST, REDIS_PORT, REDIS_CONF (to restart it), DEVBROKER_HTTP_PORT,
 *   KAFKA_BROKERS (bootstrap list of the embedded Kafka), IT_DIR (a scratch folder).
 * The same file is `source`-able by shell tests. */
#ifndef INTEGRAL_IT_ENV_H
#define INTEGRAL_IT_ENV_H

/* Returns the value of key in the stack's env file (borrowed, valid until exit). Aborts the
 * test with a clear message when the file or the key is missing: a test cannot go on. */
const char *it_env(const char *key);

/* it_env(key) as an int. */
int it_env_int(const char *key);

/* Runs a shell command, returns its exit status (or -1); logs the command. */
int it_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Runs loop until cond holds, at most ms milliseconds, then asserts cond (cmocka). t is a
 * struct with a uv_loop_t loop, a uv_timer_t wait_timer initialized on it whose data points
 * at t->expired, and bool expired. */
#define IT_WAIT_FOR(t, cond, ms)                                                                 \
    do {                                                                                         \
        (t)->expired = false;                                                                    \
        uv_timer_start(&(t)->wait_timer, it_wait_expired, (ms), 0);                              \
        while (!(cond) && !(t)->expired)                                                         \
            uv_run(&(t)->loop, UV_RUN_ONCE);                                                     \
        uv_timer_stop(&(t)->wait_timer);                                                         \
        if (!(cond))                                                                             \
            fail_msg("not within %d ms: %s", (int)(ms), #cond);                                  \
    } while (0)

/* IT_WAIT_FOR's timer callback: sets *(bool *)timer->data. */
struct uv_timer_s;
void it_wait_expired(struct uv_timer_s *timer);
#endif
