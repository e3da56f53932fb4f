/* bench_kafka - what the benchmarks' event producers (bench_produce for the engine benchmark,
 * gw_produce for the gateway benchmark; tests/bench/README.md) share, so that both pace,
 * stamp, send and account for their events the same way:
 *
 *   - a deterministic random stream (splitmix64) and BENCH_PICK from a word list;
 *   - clocks and the RFC 3339 "time" attribute;
 *   - the CloudEvents v1 envelope around an event's data;
 *   - the librdkafka producer: its settings, delivery reports, the warm-up, a send that waits
 *     out a full queue, the flush with its failure report;
 *   - the absolute-schedule pacing at a fixed rate;
 *   - SIGINT/SIGTERM as a stop request;
 *   - the key=value lines on stdout that both print alike (times, pacing, own CPU).
 *
 * Messages on stderr start with the program name given to bench_kafka_init.
 */
#ifndef INTEGRAL_BENCH_KAFKA_H
#define INTEGRAL_BENCH_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#define BENCH_PARTITIONS_MAX 4096
#define BENCH_EVENT_MAX 1024

/* ---- Deterministic randomness: one splitmix64 stream for the whole run. ---- */
void bench_rng_seed(uint64_t seed);
uint64_t bench_rng_next(void);
uint32_t bench_rng_below(uint32_t n); /* uniform in [0, n) */
#define BENCH_COUNT(list) (sizeof list / sizeof list[0])
#define BENCH_PICK(list) (list[bench_rng_below((uint32_t)BENCH_COUNT(list))])

/* ---- Clocks ---- */
int64_t bench_wall_ms(void);
int64_t bench_wall_us(void);
int64_t bench_mono_ns(void);
/* RFC 3339 UTC with milliseconds; the date-time part is cached per second. */
void bench_format_time(int64_t ms, char out[32]);

/* ---- Stop on SIGINT / SIGTERM ---- */
extern volatile sig_atomic_t bench_stop_requested;
void bench_install_stop_signals(void);

/* ---- The producer ---- */

/* Delivery reports, counted by the producer's callback. */
typedef struct {
    uint64_t delivered, failed;
    uint64_t bytes[BENCH_PARTITIONS_MAX]; /* key + value bytes acknowledged, per partition */
    int32_t max_partition;
    char first_error[256];
} bench_delivery_t;

extern bench_delivery_t bench_delivery;

/* What the produce loop counts, for the summary lines. */
typedef struct {
    uint64_t produced, value_bytes, queue_full;
    int64_t first_us, last_us, max_behind_ns;
    int64_t produced_us, flushed_us; /* set by bench_producer_flush */
} bench_run_t;

/* Names the program in error messages. */
void bench_kafka_init(const char *program);
const char *bench_program(void);

/* A producer for the benchmark (linger.ms as given, large queues, no compression) that
 * counts its delivery reports in bench_delivery; NULL (after a message) on failure. */
rd_kafka_t *bench_producer_new(const char *brokers, int linger_ms);

/* Produces and flushes one message (key "bench-warmup") to warmup_topic and fetches topic's
 * metadata, so that the first events do not carry the producer's start-up (connect,
 * metadata). Resets bench_delivery. 0, or -1 after a message. */
int bench_producer_warm_up(rd_kafka_t *rk, const char *warmup_topic, const char *topic);

/* Waits until event n of a run at rate events/s that started at t0_ns (monotonic) is due;
 * records in run how far behind schedule it fell. With tick_ns > 0 an event is due at the
 * end of the tick its schedule falls in: the events of one tick go out together, after one
 * wake-up instead of one each. */
void bench_pace(rd_kafka_t *rk, bench_run_t *run, int64_t t0_ns, uint64_t n, double rate,
                int64_t tick_ns);

/* Formats the CloudEvents v1 envelope into out (BENCH_EVENT_MAX bytes); its length, or -1
 * (after a message) when it does not fit. */
int bench_format_event(char *out, const char *id, const char *source, const char *type,
                       const char *time, const char *subject, const char *data);

/* Sends one event keyed by its subject, with the Kafka timestamp ts_ms, waiting while the
 * queue is full; counts it in run and serves delivery reports every 256 events. 0, or -1
 * after a message. */
int bench_send(rd_kafka_t *rk, bench_run_t *run, const char *topic, const char *key,
               const char *value, int len, int64_t ts_ms);

/* Records that an event was produced at t_us (wall clock): the run's first and last. */
void bench_note_produced(bench_run_t *run, int64_t t_us);

/* Flushes (at most 120 s), sets run->produced_us and ->flushed_us; 0, or 1 after a message
 * when the flush failed or a delivery failed. */
int bench_producer_flush(rd_kafka_t *rk, bench_run_t *run);

/* ---- Summary lines (stdout) ---- */
void bench_print_times(const bench_run_t *run); /* first/last produce, done, flushed (us) */
void bench_print_pacing_and_cpu(const bench_run_t *run); /* behind schedule, queue full, CPU */

#endif
