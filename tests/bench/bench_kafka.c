/* bench_kafka - the part of the benchmarks' event producers (bench_produce, gw_produce) that is
 * the same in both: randomness, clocks, the CloudEvents envelope, the librdkafka producer
 * (settings, delivery reports, warm-up, sending, flushing), pacing at a fixed rate, stop
 * signals and the common summary lines. One implementation, so that the engine and the gateway
 * benchmarks measure their producers alike. See bench_kafka.h.
 */
#include "bench_kafka.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static const char *program = "bench";

void bench_kafka_init(const char *name)
{
    program = name;
}

const char *bench_program(void)
{
    return program;
}

/* ------------------------------------------------------------------------------------------
 * Deterministic randomness: splitmix64
 * ---------------------------------------------------------------------------------------- */

static uint64_t rng_state;

void bench_rng_seed(uint64_t seed)
{
    rng_state = seed;
}

uint64_t bench_rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint32_t bench_rng_below(uint32_t n)
{
    return (uint32_t)(((bench_rng_next() >> 32) * (uint64_t)n) >> 32);
}

/* ------------------------------------------------------------------------------------------
 * Clocks
 * ---------------------------------------------------------------------------------------- */

static int64_t clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t bench_wall_ms(void)
{
    return clock_ns(CLOCK_REALTIME) / 1000000;
}

int64_t bench_wall_us(void)
{
    return clock_ns(CLOCK_REALTIME) / 1000;
}

int64_t bench_mono_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

void bench_format_time(int64_t ms, char out[32])
{
    static time_t cached_s = -1;
    static char cached[24];
    time_t s = (time_t)(ms / 1000);
    if (s != cached_s) {
        struct tm tm;
        gmtime_r(&s, &tm);
        strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &tm);
        cached_s = s;
    }
    snprintf(out, 32, "%s.%03dZ", cached, (int)(ms % 1000));
}

/* ------------------------------------------------------------------------------------------
 * Stop signals
 * ---------------------------------------------------------------------------------------- */

volatile sig_atomic_t bench_stop_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    bench_stop_requested = 1;
}

void bench_install_stop_signals(void)
{
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);
}

/* ------------------------------------------------------------------------------------------
 * Producer
 * ---------------------------------------------------------------------------------------- */

bench_delivery_t bench_delivery;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err) {
        if (!bench_delivery.failed)
            snprintf(bench_delivery.first_error, sizeof bench_delivery.first_error, "%s",
                     rd_kafka_err2str(m->err));
        bench_delivery.failed++;
        return;
    }
    bench_delivery.delivered++;
    if (m->partition >= 0 && m->partition < BENCH_PARTITIONS_MAX) {
        bench_delivery.bytes[m->partition] += m->len + m->key_len;
        if (m->partition > bench_delivery.max_partition)
            bench_delivery.max_partition = m->partition;
    }
}

rd_kafka_t *bench_producer_new(const char *brokers, int linger_ms)
{
    char errstr[512], linger[16];
    snprintf(linger, sizeof linger, "%d", linger_ms);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *pairs[] = {
        "bootstrap.servers", brokers,
        "linger.ms", linger,
        "queue.buffering.max.messages", "2000000",
        "queue.buffering.max.kbytes", "2097152",
        "batch.num.messages", "10000",
        "compression.codec", "none",
        NULL,
    };
    for (int i = 0; pairs[i]; i += 2) {
        if (rd_kafka_conf_set(conf, pairs[i], pairs[i + 1], errstr, sizeof errstr)) {
            fprintf(stderr, "%s: %s: %s\n", program, pairs[i], errstr);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk)
        fprintf(stderr, "%s: %s\n", program, errstr);
    return rk;
}

/* A producer that has not seen a topic yet holds its first messages until it has the
 * partitions' leaders: fetch them before the clock starts. */
static rd_kafka_resp_err_t fetch_metadata(rd_kafka_t *rk, const char *topic)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return err;
}

int bench_producer_warm_up(rd_kafka_t *rk, const char *warmup_topic, const char *topic)
{
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(warmup_topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY("bench-warmup", 12), RD_KAFKA_V_VALUE("warmup", 6), RD_KAFKA_V_END);
    if (!err)
        err = rd_kafka_flush(rk, 30000);
    if (!err)
        err = fetch_metadata(rk, topic);
    if (err || bench_delivery.failed) {
        fprintf(stderr, "%s: warm-up to %s: %s\n", program, warmup_topic,
                err ? rd_kafka_err2str(err) : bench_delivery.first_error);
        return -1;
    }
    bench_delivery = (bench_delivery_t){0};
    return 0;
}

void bench_pace(rd_kafka_t *rk, bench_run_t *run, int64_t t0_ns, uint64_t n, double rate,
                int64_t tick_ns)
{
    int64_t offset = (int64_t)((double)n * 1e9 / rate);
    if (tick_ns > 0)
        offset = (offset + tick_ns - 1) / tick_ns * tick_ns;
    int64_t due = t0_ns + offset;
    int64_t now = bench_mono_ns();
    if (now < due) {
        rd_kafka_poll(rk, 0);
        struct timespec ts = {(time_t)(due / 1000000000), (long)(due % 1000000000)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR &&
               !bench_stop_requested)
            ;
    } else if (now - due > run->max_behind_ns) {
        run->max_behind_ns = now - due;
    }
}

int bench_format_event(char *out, const char *id, const char *source, const char *type,
                       const char *time, const char *subject, const char *data)
{
    int len = snprintf(out, BENCH_EVENT_MAX,
                       "{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"%s\","
                       "\"type\":\"%s\",\"time\":\"%s\",\"subject\":\"%s\",\"data\":%s}",
                       id, source, type, time, subject, data);
    if (len < 0 || len >= BENCH_EVENT_MAX) {
        fprintf(stderr, "%s: event %s too long\n", program, id);
        return -1;
    }
    return len;
}

int bench_send(rd_kafka_t *rk, bench_run_t *run, const char *topic, const char *key,
               const char *value, int len, int64_t ts_ms)
{
    size_t key_len = strlen(key);
    /* RD_KAFKA_MSG_F_COPY: librdkafka copies the value, never writes it. */
    void *copied_value = (void *)value;
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE(copied_value, (size_t)len),
            RD_KAFKA_V_TIMESTAMP(ts_ms), RD_KAFKA_V_END);
        if (!err)
            break;
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fprintf(stderr, "%s: produce: %s\n", program, rd_kafka_err2str(err));
            return -1;
        }
        run->queue_full++;
        rd_kafka_poll(rk, 1);
    }
    if ((run->produced & 255) == 0)
        rd_kafka_poll(rk, 0);
    run->produced++;
    run->value_bytes += (uint64_t)len;
    return 0;
}

void bench_note_produced(bench_run_t *run, int64_t t_us)
{
    if (!run->first_us)
        run->first_us = t_us;
    run->last_us = t_us;
}

int bench_producer_flush(rd_kafka_t *rk, bench_run_t *run)
{
    run->produced_us = bench_wall_us();
    rd_kafka_resp_err_t err = rd_kafka_flush(rk, 120000);
    run->flushed_us = bench_wall_us();
    int rc = 0;
    if (err) {
        fprintf(stderr, "%s: flush: %s (%d left)\n", program, rd_kafka_err2str(err),
                rd_kafka_outq_len(rk));
        rc = 1;
    }
    if (bench_delivery.failed) {
        fprintf(stderr, "%s: %" PRIu64 " deliveries failed: %s\n", program,
                bench_delivery.failed, bench_delivery.first_error);
        rc = 1;
    }
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Summary lines
 * ---------------------------------------------------------------------------------------- */

void bench_print_times(const bench_run_t *run)
{
    printf("first_produce_us=%" PRId64 "\n", run->first_us);
    printf("last_produce_us=%" PRId64 "\n", run->last_us);
    printf("produce_done_us=%" PRId64 "\n", run->produced_us);
    printf("flushed_us=%" PRId64 "\n", run->flushed_us);
}

static double seconds_of(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

void bench_print_pacing_and_cpu(const bench_run_t *run)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("max_behind_schedule_ms=%.3f\n", (double)run->max_behind_ns / 1e6);
    printf("queue_full=%" PRIu64 "\n", run->queue_full);
    printf("cpu_user_s=%.3f\n", seconds_of(ru.ru_utime));
    printf("cpu_sys_s=%.3f\n", seconds_of(ru.ru_stime));
}
