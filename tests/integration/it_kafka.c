/* it_kafka.c - the loop-driven Kafka glue (common/kafka_uv.c) against the embedded Kafka.
 *
 * Every test runs producer and consumer on one libuv loop, bounded by a deadline timer, and
 * ends with uv_loop_close() == 0. Messages carry a per-run nonce so that a test re-run against
 * the same broker only counts its own messages. The topics are created by the stack fixture
 * (tests/support/stack.sh). */
#include "it_env.h"
#include "kafka_uv.h"
#include "log.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEADLINE_MS 90000

typedef struct {
    uv_loop_t loop;
    uv_timer_t deadline;
    kafka_config_t kafka;
    char nonce[32];
    bool timed_out;
} fixture_t;

static void on_deadline(uv_timer_t *t)
{
    fixture_t *f = t->data;
    f->timed_out = true;
    uv_stop(&f->loop);
}

static void fixture_init(fixture_t *f)
{
    memset(f, 0, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->deadline);
    f->deadline.data = f;
    uv_timer_start(&f->deadline, on_deadline, DEADLINE_MS, 0);
    f->kafka = (kafka_config_t){
        .brokers = (char *)it_env("KAFKA_BROKERS"),
        .properties = "",
        .session_timeout_ms = 3000,
        .fetch_wait_max_ms = 10,
        .commit_interval_ms = 200,
        .batch_max = 500,
        .drain_timeout_ms = 10000,
        .linger_ms = 5,
    };
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(f->nonce, sizeof f->nonce, "%lx%lx", (long)ts.tv_sec, ts.tv_nsec);
}

/* Runs the loop until every handle is closed (or the deadline), then closes it. */
static void fixture_run_and_close(fixture_t *f)
{
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_false(f->timed_out);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

static void stop_deadline(fixture_t *f)
{
    uv_close((uv_handle_t *)&f->deadline, NULL);
}

/* Parses "nonce:index" values; returns the index, or -1 for a message of another run. */
static long value_index(const fixture_t *f, const rd_kafka_message_t *m)
{
    size_t n = strlen(f->nonce);
    if (m->len <= n + 1 || memcmp(m->payload, f->nonce, n) != 0 ||
        ((const char *)m->payload)[n] != ':')
        return -1;
    char digits[24];
    size_t len = m->len - n - 1 < sizeof digits - 1 ? m->len - n - 1 : sizeof digits - 1;
    memcpy(digits, (const char *)m->payload + n + 1, len);
    digits[len] = '\0';
    return strtol(digits, NULL, 10);
}

/* ------------------------------------------------------------------------------------------
 * 10,000 keyed messages through the producer and the consumer, none lost, order kept per key
 * ---------------------------------------------------------------------------------------- */

#define COUNT_MESSAGES 10000
#define COUNT_KEYS 500

typedef struct {
    fixture_t f;
    kafka_producer_t *producer;
    kafka_consumer_t *consumer;
    int delivered, failed;
    int distinct, duplicates, out_of_order;
    long last_index_of_key[COUNT_KEYS];
    unsigned char seen[COUNT_MESSAGES];
} count_test_t;

static void on_count_delivery(kafka_producer_t *p, rd_kafka_resp_err_t err, void *opaque,
                              void *data)
{
    count_test_t *t = data;
    if (err)
        t->failed++;
    else
        t->delivered++;
    if (t->delivered + t->failed == COUNT_MESSAGES)
        kafka_producer_close(p, NULL, NULL);
}

static void on_consumer_closed(void *data)
{
    stop_deadline(data);
}

static void on_count_message(kafka_consumer_t *c, rd_kafka_message_t *m, void *data)
{
    count_test_t *t = data;
    long i = value_index(&t->f, m);
    if (i >= 0 && i < COUNT_MESSAGES) {
        int key = (int)(i % COUNT_KEYS);
        if (t->seen[i]) {
            t->duplicates++;
        } else {
            t->seen[i] = 1;
            t->distinct++;
            if (i < t->last_index_of_key[key])
                t->out_of_order++;
            t->last_index_of_key[key] = i;
        }
    }
    assert_int_equal(kafka_consumer_done(c, rd_kafka_topic_name(m->rkt), m->partition, m->offset),
                     0);
    rd_kafka_message_destroy(m);
    if (t->distinct == COUNT_MESSAGES && i >= 0)
        kafka_consumer_close(c, on_consumer_closed, &t->f);
}

static void ten_thousand_keyed_messages_none_lost(void **state)
{
    count_test_t *t = calloc(1, sizeof *t);
    fixture_init(&t->f);
    for (int k = 0; k < COUNT_KEYS; k++)
        t->last_index_of_key[k] = -1;
    char err[512];
    assert_int_equal(kafka_producer_new(&t->producer, &t->f.loop, &t->f.kafka, on_count_delivery,
                                        t, err, sizeof err),
                     0);
    for (int i = 0; i < COUNT_MESSAGES; i++) {
        char key[32], value[64];
        int kl = snprintf(key, sizeof key, "customer-%d", i % COUNT_KEYS);
        int vl = snprintf(value, sizeof value, "%s:%d", t->f.nonce, i);
        assert_int_equal(kafka_producer_send(t->producer, "it-kafka-count", RD_KAFKA_PARTITION_UA,
                                             key, (size_t)kl, value, (size_t)vl, NULL, NULL),
                         0);
    }
    char group[64];
    snprintf(group, sizeof group, "it-count-%s", t->f.nonce);
    const char *topics[] = {"it-kafka-count", NULL};
    kafka_consumer_handlers_t handlers = {.on_message = on_count_message};
    assert_int_equal(kafka_consumer_new(&t->consumer, &t->f.loop, &t->f.kafka, group, topics,
                                        &handlers, t, err, sizeof err),
                     0);
    fixture_run_and_close(&t->f);
    assert_int_equal(t->delivered, COUNT_MESSAGES);
    assert_int_equal(t->failed, 0);
    assert_int_equal(t->distinct, COUNT_MESSAGES);
    assert_int_equal(t->out_of_order, 0);
    free(t);
}

/* ------------------------------------------------------------------------------------------
 * A failed effect, then rewind (pause + seek): the message comes again, nothing is skipped,
 * and the committed offsets end at the end of the log.
 * ---------------------------------------------------------------------------------------- */

#define REWIND_MESSAGES 200
#define REWIND_FAIL_AT 77 /* the index whose first effect fails */

typedef struct {
    fixture_t f;
    kafka_consumer_t *consumer;
    uv_timer_t resume_timer;
    int32_t rewound_partition; /* -1 when no partition is rewinding */
    int64_t rewound_offset;
    int fail_at_deliveries;     /* how often REWIND_FAIL_AT was handed to us */
    int skipped_while_rewinding;
    int distinct;
    unsigned char seen[REWIND_MESSAGES];
    int64_t end_offsets[2];
} rewind_test_t;

static void on_resume(uv_timer_t *timer)
{
    rewind_test_t *t = timer->data;
    assert_int_equal(kafka_consumer_resume(t->consumer, "it-kafka-rewind", t->rewound_partition), 0);
}

static void on_rewind_message(kafka_consumer_t *c, rd_kafka_message_t *m, void *data)
{
    rewind_test_t *t = data;
    long i = value_index(&t->f, m);
    const char *topic = rd_kafka_topic_name(m->rkt);
    if (t->rewound_partition == m->partition) {
        if (m->offset != t->rewound_offset) {
            /* Fetched before the seek took effect: the application must not mark these done. */
            t->skipped_while_rewinding++;
            rd_kafka_message_destroy(m);
            return;
        }
        t->rewound_partition = -1;
    }
    if (i == REWIND_FAIL_AT && t->fail_at_deliveries++ == 0) {
        /* The effect failed: do not mark it done; go back and try again in 200 ms. */
        t->rewound_partition = m->partition;
        t->rewound_offset = m->offset;
        assert_int_equal(kafka_consumer_rewind(c, topic, m->partition, m->offset), 0);
        uv_timer_start(&t->resume_timer, on_resume, 200, 0);
        rd_kafka_message_destroy(m);
        return;
    }
    if (i >= 0 && i < REWIND_MESSAGES && !t->seen[i]) {
        t->seen[i] = 1;
        t->distinct++;
    }
    assert_int_equal(kafka_consumer_done(c, topic, m->partition, m->offset), 0);
    rd_kafka_message_destroy(m);
    if (t->distinct == REWIND_MESSAGES) {
        uv_close((uv_handle_t *)&t->resume_timer, NULL);
        kafka_consumer_close(c, on_consumer_closed, &t->f);
    }
}

/* Produces count messages on a loop of its own and waits for every delivery report. */
typedef struct {
    int target;
    int delivered;
} produce_wait_t;

static void on_wait_delivery(kafka_producer_t *p, rd_kafka_resp_err_t err, void *opaque,
                             void *data)
{
    produce_wait_t *w = data;
    assert_int_equal(err, 0);
    if (++w->delivered == w->target)
        kafka_producer_close(p, NULL, NULL);
}

static void produce_and_wait(fixture_t *f, const char *topic, int count)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    produce_wait_t w = {count, 0};
    kafka_producer_t *p;
    char err[512];
    assert_int_equal(kafka_producer_new(&p, &loop, &f->kafka, on_wait_delivery, &w, err,
                                        sizeof err),
                     0);
    for (int i = 0; i < count; i++) {
        char key[32], value[64];
        int kl = snprintf(key, sizeof key, "k%d", i % 7);
        int vl = snprintf(value, sizeof value, "%s:%d", f->nonce, i);
        assert_int_equal(kafka_producer_send(p, topic, RD_KAFKA_PARTITION_UA, key, (size_t)kl,
                                             value, (size_t)vl, NULL, NULL),
                         0);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(w.delivered, count);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* The group's committed offsets for the topic's two partitions, read by a plain consumer. */
static void committed_offsets(fixture_t *f, const char *group, const char *topic, int64_t *out)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", f->kafka.brokers, err,
                                       sizeof err),
                     RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "group.id", group, err, sizeof err),
                     RD_KAFKA_CONF_OK);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    assert_non_null(rk);
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(2);
    rd_kafka_topic_partition_list_add(list, topic, 0);
    rd_kafka_topic_partition_list_add(list, topic, 1);
    assert_int_equal(rd_kafka_committed(rk, list, 10000), 0);
    for (int p = 0; p < 2; p++)
        out[p] = list->elems[p].offset;
    rd_kafka_topic_partition_list_destroy(list);
    rd_kafka_destroy(rk);
}

static void failed_effect_rewind_redelivers_the_message(void **state)
{
    rewind_test_t *t = calloc(1, sizeof *t);
    fixture_init(&t->f);
    t->rewound_partition = -1;
    uv_timer_init(&t->f.loop, &t->resume_timer);
    t->resume_timer.data = t;
    produce_and_wait(&t->f, "it-kafka-rewind", REWIND_MESSAGES);

    char group[64], err[512];
    snprintf(group, sizeof group, "it-rewind-%s", t->f.nonce);
    const char *topics[] = {"it-kafka-rewind", NULL};
    kafka_consumer_handlers_t handlers = {.on_message = on_rewind_message};
    assert_int_equal(kafka_consumer_new(&t->consumer, &t->f.loop, &t->f.kafka, group, topics,
                                        &handlers, t, err, sizeof err),
                     0);
    fixture_run_and_close(&t->f);
    assert_int_equal(t->fail_at_deliveries, 2); /* failed once, delivered again, then done */
    assert_int_equal(t->distinct, REWIND_MESSAGES);

    /* Closing committed what was done: the group's offsets are the ends of the log, so the
     * failed message was not committed past while it was failing. */
    int64_t committed[2], low, high, total = 0;
    committed_offsets(&t->f, group, "it-kafka-rewind", committed);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", t->f.kafka.brokers, err, sizeof err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    for (int p = 0; p < 2; p++) {
        assert_int_equal(rd_kafka_query_watermark_offsets(rk, "it-kafka-rewind", p, &low, &high,
                                                          10000),
                         0);
        assert_int_equal(committed[p], high);
        total += high;
    }
    rd_kafka_destroy(rk);
    assert_true(total >= REWIND_MESSAGES);
    free(t);
}

/* ------------------------------------------------------------------------------------------
 * A fatal producer error: the producer replaces its instance, the messages it held come back
 * as failed delivery reports, and sending them again delivers every one.
 * ---------------------------------------------------------------------------------------- */

#define FATAL_MESSAGES 300

typedef struct {
    fixture_t f;
    kafka_producer_t *producer;
    unsigned char delivered[FATAL_MESSAGES];
    int distinct, failed_reports;
    uint64_t recreated;
} fatal_test_t;

static void send_index(fatal_test_t *t, int i)
{
    char key[32], value[64];
    int kl = snprintf(key, sizeof key, "k%d", i % 11);
    int vl = snprintf(value, sizeof value, "%s:%d", t->f.nonce, i);
    assert_int_equal(kafka_producer_send(t->producer, "it-kafka-count", RD_KAFKA_PARTITION_UA, key,
                                         (size_t)kl, value, (size_t)vl, NULL,
                                         (void *)(intptr_t)(i + 1)),
                     0);
}

static void on_fatal_delivery(kafka_producer_t *p, rd_kafka_resp_err_t err, void *opaque,
                              void *data)
{
    fatal_test_t *t = data;
    int i = (int)(intptr_t)opaque - 1;
    if (err) {
        t->failed_reports++;
        send_index(t, i); /* the application's retry: the new instance takes it */
        return;
    }
    if (!t->delivered[i]) {
        t->delivered[i] = 1;
        t->distinct++;
    }
    if (t->distinct == FATAL_MESSAGES) {
        t->recreated = kafka_producer_stats(p)->recreated;
        kafka_producer_close(p, NULL, NULL);
        stop_deadline(&t->f);
    }
}

static void fatal_producer_error_recreates_and_loses_nothing(void **state)
{
    fatal_test_t *t = calloc(1, sizeof *t);
    fixture_init(&t->f);
    char err[512];
    assert_int_equal(kafka_producer_new(&t->producer, &t->f.loop, &t->f.kafka, on_fatal_delivery,
                                        t, err, sizeof err),
                     0);
    for (int i = 0; i < FATAL_MESSAGES; i++)
        send_index(t, i);
    kafka_producer_inject_fatal(t->producer); /* before the first delivery: all are held */
    uv_run(&t->f.loop, UV_RUN_DEFAULT);
    assert_false(t->f.timed_out);
    assert_int_equal(uv_loop_close(&t->f.loop), 0);
    assert_int_equal(t->distinct, FATAL_MESSAGES);
    assert_true(t->failed_reports > 0);
    assert_int_equal(t->recreated, 1);
    free(t);
}

/* librdkafka queues a log line while rd_kafka_new creates the producer (here: a CONFWARN for a
 * consumer-only property); its io-event fires only when the queue goes from empty to
 * non-empty, so the delivery reports behind that line must still reach the loop. */
static void on_log_delivery_deadline(uv_timer_t *timer)
{
    uv_stop(timer->loop);
}

static void deliveries_arrive_behind_a_log_line_from_creation(void **state)
{
    (void)state;
    fixture_t f;
    fixture_init(&f);
    stop_deadline(&f);
    f.kafka.properties = "queued.max.messages.kbytes=4096"; /* a consumer property */
    produce_wait_t w = {20, 0};
    kafka_producer_t *p;
    char err[512];
    assert_int_equal(kafka_producer_new(&p, &f.loop, &f.kafka, on_wait_delivery, &w, err,
                                        sizeof err),
                     0);
    for (int i = 0; i < w.target; i++) {
        char value[64];
        int vl = snprintf(value, sizeof value, "%s:log:%d", f.nonce, i);
        assert_int_equal(kafka_producer_send(p, "it-kafka-count", RD_KAFKA_PARTITION_UA, "k", 1,
                                             value, (size_t)vl, NULL, NULL),
                         0);
    }
    uv_timer_t deadline;
    uv_timer_init(&f.loop, &deadline);
    uv_timer_start(&deadline, on_log_delivery_deadline, 15000, 0);
    uv_unref((uv_handle_t *)&deadline);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    assert_int_equal(w.delivered, w.target); /* before: 0, the loop never woke */
    uv_close((uv_handle_t *)&deadline, NULL);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f.loop), 0);
}

int main(void)
{
    log_setup("it_kafka", LOG_LEVEL_INFO, false);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ten_thousand_keyed_messages_none_lost),
        cmocka_unit_test(failed_effect_rewind_redelivers_the_message),
        cmocka_unit_test(fatal_producer_error_recreates_and_loses_nothing),
        cmocka_unit_test(deliveries_arrive_behind_a_log_line_from_creation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
