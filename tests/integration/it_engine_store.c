/* it_engine_store.c - the engine's fenced writer (services/engine/store.c) against the test
 * stack's real redis-server: a write lands with its applied offset and live-queue operations;
 * a write whose epoch is stale, or ahead, is FENCED and writes nothing; a claim that lands
 * between the writer's WATCH and its EXEC aborts the transaction, which starts over and is
 * then fenced; writes that become ready while a transaction is in flight share the next one;
 * timeline entries are pushed per customer, newest first, trimmed when asked.
 * Every test uses its own topic (partition keys) and customer keys, read back with hiredis's
 * blocking client, an independent connection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "it_env.h"
#include "store.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RESULTS_MAX 8

typedef struct {
    uv_loop_t loop;
    uv_timer_t wait_timer;
    bool expired;
    redis_client_t *redis;
    store_writer_t *writer;
    redisContext *probe; /* blocking hiredis: reads what the writer wrote */
    char topic[64];
    bool ready, closed;
    int64_t epoch; /* of the last claim */
    int claims;
    int results[RESULTS_MAX]; /* write callbacks, by write index */
    char reasons[RESULTS_MAX][128];
    uint64_t answered_ms[RESULTS_MAX]; /* loop time of each write's callback */
    void *last_call;                   /* the callback data of the latest sized write */
    int done;
} it_t;


static void on_state(redis_client_t *c, redis_state_t state, const char *reason, void *data)
{
    (void)c;
    it_t *t = data;
    t->ready = state == REDIS_STATE_READY;
    print_message("  redis %s (%s)\n", redis_state_name(state), reason);
}

static void on_closed(redis_client_t *c, void *data)
{
    (void)c;
    it_t *t = data;
    t->closed = true;
}

static int setup(void **state)
{
    static int round;
    it_t *t = calloc(1, sizeof *t);
    assert_non_null(t);
    assert_int_equal(uv_loop_init(&t->loop), 0);
    uv_timer_init(&t->loop, &t->wait_timer);
    t->wait_timer.data = &t->expired;
    snprintf(t->topic, sizeof t->topic, "it-store-%d-%d", (int)getpid(), ++round);
    redis_client_options_t o = {.host = it_env("REDIS_HOST"),
                                .port = it_env_int("REDIS_PORT"),
                                .on_state = on_state,
                                .data = t};
    assert_int_equal(redis_client_new(&t->redis, &t->loop, &o), 0);
    assert_int_equal(redis_client_add_function_library(t->redis, store_function_library()), 0);
    IT_WAIT_FOR(t, t->ready, 5000);
    assert_non_null(t->writer = store_writer_new(t->redis, &t->loop, STORE_PACE_MS));
    t->probe = redisConnect(it_env("REDIS_HOST"), it_env_int("REDIS_PORT"));
    assert_true(t->probe && !t->probe->err);
    for (int i = 0; i < RESULTS_MAX; i++)
        t->results[i] = 1; /* no answer yet */
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    it_t *t = *state;
    redis_client_close(t->redis, on_closed, t);
    IT_WAIT_FOR(t, t->closed, 5000);
    store_writer_free(t->writer);
    uv_close((uv_handle_t *)&t->wait_timer, NULL);
    assert_int_equal(uv_run(&t->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&t->loop), 0);
    redisFree(t->probe);
    free(t);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------------------------- */

static void on_claimed(void *data, int status, int64_t epoch, int64_t applied,
                       const char *reason)
{
    (void)applied;
    it_t *t = data;
    assert_int_equal(status, STORE_OK);
    (void)reason;
    t->epoch = epoch;
    t->claims++;
}

static int64_t claim(it_t *t, int32_t partition)
{
    int before = t->claims;
    assert_int_equal(store_claim(t->redis, t->topic, partition, on_claimed, t), 0);
    IT_WAIT_FOR(t, t->claims == before + 1, 5000);
    return t->epoch;
}

typedef struct {
    it_t *t;
    int index;
} call_t;

static void on_written(void *data, int status, const char *reason)
{
    call_t *call = data;
    it_t *t = call->t;
    t->results[call->index] = status;
    t->answered_ms[call->index] = uv_now(&t->loop);
    snprintf(t->reasons[call->index], sizeof t->reasons[0], "%s", reason ? reason : "");
    t->done++;
    free(call);
}

/* Sends one write of partition with epoch: documents "<key>=<value>" for each customer name
 * in docs (NULL-terminated), applied offset next_offset. */
static void send_write(it_t *t, int index, int32_t partition, int64_t epoch,
                       int64_t next_offset, const char *const *docs, bool with_op)
{
    store_write_t *w = store_write_new(t->topic, partition, epoch, next_offset);
    assert_non_null(w);
    for (int i = 0; docs[i]; i++) {
        char key[STORE_KEY_MAX], value[128];
        char id[96];
        snprintf(id, sizeof id, "%s-%s", t->topic, docs[i]);
        assert_true(store_customer_key(key, sizeof key, id) > 0);
        int n = snprintf(value, sizeof value, "{\"v\":%lld}", (long long)next_offset);
        assert_int_equal(store_write_add(w, key, value, (size_t)n), 0);
    }
    if (with_op) {
        char contact[96], info[160];
        snprintf(contact, sizeof contact, "%s-contact", t->topic);
        snprintf(info, sizeof info, "{\"queue\":\"%s\"}", t->topic);
        assert_int_equal(
            store_write_add_op(w, STORE_OP_QUEUED, 1000, contact, t->topic, info, strlen(info)),
            0);
    }
    call_t *call = malloc(sizeof *call);
    *call = (call_t){t, index};
    size_t docs_n = 0;
    assert_int_equal(store_write_send_many(t->writer, &w, 1, on_written, call, &docs_n), 0);
    store_write_free(w); /* copied by the writer */
}

/* Sends, with writer sw, a write of partition holding one document of value_len bytes. */
static void send_sized_write(it_t *t, store_writer_t *sw, int index, int32_t partition,
                             int64_t epoch, int64_t next_offset, size_t value_len)
{
    store_write_t *w = store_write_new(t->topic, partition, epoch, next_offset);
    assert_non_null(w);
    char id[96], key[STORE_KEY_MAX];
    snprintf(id, sizeof id, "%s-sized-%d", t->topic, index);
    assert_true(store_customer_key(key, sizeof key, id) > 0);
    char *value = malloc(value_len);
    assert_non_null(value);
    memset(value, 'x', value_len);
    assert_int_equal(store_write_add(w, key, value, value_len), 0);
    free(value);
    call_t *call = malloc(sizeof *call);
    *call = (call_t){t, index};
    t->last_call = call;
    assert_int_equal(store_write_send_many(sw, &w, 1, on_written, call, NULL), 0);
    store_write_free(w);
}

/* GET through the independent connection: the value, or "" when the key does not exist. */
static const char *probe_get(it_t *t, const char *key, char *buf, size_t cap)
{
    redisReply *r = redisCommand(t->probe, "GET %s", key);
    assert_non_null(r);
    snprintf(buf, cap, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
    return buf;
}

/* The document of customer "<topic>-<name>" as the writer stored it. */
static const char *doc_of(it_t *t, const char *name, char *buf, size_t cap)
{
    char id[128], key[STORE_KEY_MAX];
    snprintf(id, sizeof id, "%s-%s", t->topic, name);
    assert_true(store_customer_key(key, sizeof key, id) > 0);
    return probe_get(t, key, buf, cap);
}

static const char *applied_of(it_t *t, int partition, char *buf, size_t cap)
{
    char key[160];
    snprintf(key, sizeof key, "{p:%s:%d}:applied", t->topic, partition);
    return probe_get(t, key, buf, cap);
}

#define DOC(t, name) doc_of((t), (name), (char[256]){0}, 256)
#define APPLIED(t, p) applied_of((t), (p), (char[64]){0}, 64)

/* ------------------------------------------------------------------------------------------
 * Tests
 * ---------------------------------------------------------------------------------------- */

static void write_lands_with_offset_and_operations(void **state)
{
    it_t *t = *state;
    int64_t epoch = claim(t, 0);
    const char *docs[] = {"a", "b", NULL};
    send_write(t, 0, 0, epoch, 41, docs, true);
    IT_WAIT_FOR(t, t->done == 1, 5000);
    assert_int_equal(t->results[0], STORE_OK);
    assert_string_equal(DOC(t, "a"), "{\"v\":41}");
    assert_string_equal(DOC(t, "b"), "{\"v\":41}");
    assert_string_equal(APPLIED(t, 0), "41");
    /* The operation ran in the same transaction: the contact waits in its queue. */
    char key[160];
    snprintf(key, sizeof key, "{q}:waiting:%s", t->topic);
    redisReply *r = redisCommand(t->probe, "ZSCORE %s %s-contact", key, t->topic);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "1000");
    freeReplyObject(r);
    r = redisCommand(t->probe, "SISMEMBER {q}:queues %s", t->topic);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    freeReplyObject(redisCommand(t->probe, "FCALL integral_queue 0 e 2000 %s-contact  ",
                                 t->topic));
}

/* Sends one write of partition 7 holding the given operations (kind, time, id, queue, info). */
typedef struct {
    store_op_kind_t op;
    int64_t time_ms;
    const char *id, *queue, *info;
} op_t;

static void send_ops(it_t *t, int index, int64_t epoch, int64_t next_offset, const op_t *ops,
                     size_t n)
{
    store_write_t *w = store_write_new(t->topic, 7, epoch, next_offset);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(store_write_add_op(w, ops[i].op, ops[i].time_ms, ops[i].id, ops[i].queue,
                                            ops[i].info, ops[i].info ? strlen(ops[i].info) : 0),
                         0);
    call_t *call = malloc(sizeof *call);
    *call = (call_t){t, index};
    assert_int_equal(store_write_send_many(t->writer, &w, 1, on_written, call, NULL), 0);
    store_write_free(w);
}

static long long zscore(it_t *t, const char *key, const char *member)
{
    redisReply *r = redisCommand(t->probe, "ZSCORE %s %s", key, member);
    long long v = r->type == REDIS_REPLY_STRING ? atoll(r->str) : -1;
    freeReplyObject(r);
    return v;
}

/* The live queue's operations as the engine sends them: native ones from what it knows (queued,
 * moved to another queue, answered with its wait), and an abandon of a contact it does not
 * know waiting, which the Lua function finds through its snapshot in {q}:info. */
static void live_queue_operations_native_and_looked_up(void **state)
{
    it_t *t = *state;
    int64_t epoch = claim(t, 7);
    char a[96], b[96], qa[96], qb[96], key[160], info_a[160], info_b1[160], info_b2[160];
    snprintf(a, sizeof a, "%s-ka", t->topic);
    snprintf(b, sizeof b, "%s-kb", t->topic);
    snprintf(qa, sizeof qa, "%s-qa", t->topic);
    snprintf(qb, sizeof qb, "%s-qb", t->topic);
    snprintf(info_a, sizeof info_a, "{\"queue\":\"%s\",\"a\":1}", qa);
    snprintf(info_b1, sizeof info_b1, "{\"queue\":\"%s\",\"b\":1}", qa);
    snprintf(info_b2, sizeof info_b2, "{\"queue\":\"%s\",\"b\":2}", qb);
    const op_t first[] = {
        {STORE_OP_QUEUED, 1000, a, qa, info_a},
        {STORE_OP_QUEUED, 1500, b, qa, info_b1},
        {STORE_OP_LEFT_QUEUE, 1600, b, qa, NULL}, /* b moves to qb */
        {STORE_OP_QUEUED, 1600, b, qb, info_b2},
        {STORE_OP_ANSWERED, 4000, a, qa, "1000"}, /* a waited 3 s */
    };
    send_ops(t, 0, epoch, 10, first, 5);
    IT_WAIT_FOR(t, t->done == 1, 5000);
    assert_int_equal(t->results[0], STORE_OK);
    snprintf(key, sizeof key, "{q}:waiting:%s", qa);
    assert_int_equal(zscore(t, key, a), -1);
    assert_int_equal(zscore(t, key, b), -1);
    snprintf(key, sizeof key, "{q}:waiting:%s", qb);
    assert_int_equal(zscore(t, key, b), 1600);
    snprintf(key, sizeof key, "{q}:answered:%s", qa);
    char member[128];
    snprintf(member, sizeof member, "%s|3000", a);
    assert_int_equal(zscore(t, key, member), 4000);
    /* b abandoned, the engine not knowing where it waits: looked up. */
    const op_t second[] = {{STORE_OP_ABANDONED_ANYWHERE, 5600, b, NULL, NULL}};
    send_ops(t, 1, epoch, 11, second, 1);
    IT_WAIT_FOR(t, t->done == 2, 5000);
    assert_int_equal(t->results[1], STORE_OK);
    snprintf(key, sizeof key, "{q}:waiting:%s", qb);
    assert_int_equal(zscore(t, key, b), -1);
    snprintf(key, sizeof key, "{q}:abandoned:%s", qb);
    snprintf(member, sizeof member, "%s|4000", b);
    assert_int_equal(zscore(t, key, member), 5600);
    redisReply *r = redisCommand(t->probe, "HMGET {q}:info %s %s", a, b);
    assert_int_equal(r->element[0]->type, REDIS_REPLY_NIL);
    assert_int_equal(r->element[1]->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    /* A snapshot that is not JSON (written by hand): the lookup drops it, the write goes on. */
    freeReplyObject(redisCommand(t->probe, "HSET {q}:info %s not-json", a));
    const op_t third[] = {{STORE_OP_ENDED_ANYWHERE, 5700, a, NULL, NULL}};
    send_ops(t, 2, epoch, 12, third, 1);
    IT_WAIT_FOR(t, t->done == 3, 5000);
    assert_int_equal(t->results[2], STORE_OK);
    r = redisCommand(t->probe, "HEXISTS {q}:info %s", a);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    freeReplyObject(redisCommand(t->probe, "DEL {q}:answered:%s {q}:abandoned:%s", qa, qb));
}

static void stale_and_later_epochs_are_fenced(void **state)
{
    it_t *t = *state;
    int64_t epoch = claim(t, 1);
    const char *docs[] = {"c", NULL};
    send_write(t, 0, 1, epoch, 10, docs, false);
    IT_WAIT_FOR(t, t->done == 1, 5000);
    assert_int_equal(t->results[0], STORE_OK);
    int64_t bumped = claim(t, 1); /* a new owner */
    send_write(t, 1, 1, epoch, 20, docs, false);      /* the old one */
    send_write(t, 2, 1, bumped + 1, 30, docs, false); /* an epoch nobody claimed */
    IT_WAIT_FOR(t, t->done == 3, 5000);
    assert_int_equal(t->results[1], STORE_FENCED);
    assert_int_equal(t->results[2], STORE_FENCED);
    assert_non_null(strstr(t->reasons[1], "FENCED partition owner epoch is"));
    assert_string_equal(DOC(t, "c"), "{\"v\":10}");
    assert_string_equal(APPLIED(t, 1), "10");
}

static void claim_between_watch_and_exec_aborts_then_fences(void **state)
{
    it_t *t = *state;
    int64_t epoch = claim(t, 2);
    const char *docs[] = {"d", NULL};
    uint64_t aborted = store_writer_stats(t->writer)->aborted;
    send_write(t, 0, 2, epoch, 7, docs, true);
    /* On the same connection, right behind the writer's WATCH + MGET and before its MULTI
     * (sent only once MGET has answered): the claim changes the watched key. */
    int before = t->claims;
    assert_int_equal(store_claim(t->redis, t->topic, 2, on_claimed, t), 0);
    IT_WAIT_FOR(t, t->done == 1 && t->claims == before + 1, 5000);
    assert_int_equal(t->results[0], STORE_FENCED);
    assert_int_equal(store_writer_stats(t->writer)->aborted, aborted + 1);
    assert_string_equal(DOC(t, "d"), "");
    assert_string_equal(APPLIED(t, 2), "");
    redisReply *r = redisCommand(t->probe, "HEXISTS {q}:info %s-contact", t->topic);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
}

static void writes_ready_meanwhile_share_the_next_transaction(void **state)
{
    it_t *t = *state;
    int64_t e3 = claim(t, 3), e4 = claim(t, 4), e5 = claim(t, 5);
    uint64_t before = store_writer_stats(t->writer)->transactions;
    /* 400 documents each: the transaction's command outgrows its first buffers. */
    enum { DOCS = 400 };
    static char names[3][DOCS][16];
    const char *d[3][DOCS + 1];
    for (int w = 0; w < 3; w++) {
        for (int i = 0; i < DOCS; i++) {
            snprintf(names[w][i], sizeof names[w][i], i ? "p%d-%d" : "p%d", w + 3, i);
            d[w][i] = names[w][i];
        }
        d[w][DOCS] = NULL;
    }
    send_write(t, 0, 3, e3, 3, d[0], false); /* starts a transaction at once */
    send_write(t, 1, 4, e4, 4, d[1], false); /* these two wait for it, then go together */
    send_write(t, 2, 5, e5, 5, d[2], false);
    IT_WAIT_FOR(t, t->done == 3, 5000);
    for (int i = 0; i < 3; i++)
        assert_int_equal(t->results[i], STORE_OK);
    assert_int_equal(store_writer_stats(t->writer)->transactions, before + 2);
    assert_string_equal(DOC(t, "p4"), "{\"v\":4}");
    assert_string_equal(DOC(t, "p5"), "{\"v\":5}");
    assert_string_equal(DOC(t, "p5-399"), "{\"v\":5}");
    assert_string_equal(APPLIED(t, 3), "3");
    assert_string_equal(APPLIED(t, 4), "4");
    assert_string_equal(APPLIED(t, 5), "5");
}

/* Pacing (store.c): a write that comes less than pace_ms after the previous transaction
 * started waits for its turn, and what comes meanwhile goes with it; much queued does not
 * wait. A writer of its own with a 2 s pace, so that the order cannot depend on speed. */
static void writes_soon_after_a_transaction_wait_for_the_pace(void **state)
{
    enum { PACE = 2000 };
    it_t *t = *state;
    store_writer_t *sw = store_writer_new(t->redis, &t->loop, PACE);
    assert_non_null(sw);
    int64_t e6 = claim(t, 6);
    uv_update_time(&t->loop);
    uint64_t t0 = uv_now(&t->loop);
    send_sized_write(t, sw, 0, 6, e6, 1, 100); /* idle, none before: at once */
    IT_WAIT_FOR(t, t->done == 1, 5000);
    assert_true(t->answered_ms[0] - t0 < PACE - 100);
    send_sized_write(t, sw, 1, 6, e6, 2, 100); /* waits for the pace... */
    send_sized_write(t, sw, 2, 6, e6, 3, 100); /* ...with this one */
    IT_WAIT_FOR(t, t->done == 3, 3 * PACE);
    assert_true(t->answered_ms[1] - t0 >= PACE);
    assert_int_equal(t->answered_ms[1], t->answered_ms[2]);
    assert_int_equal(store_writer_stats(sw)->transactions, 2);
    assert_string_equal(APPLIED(t, 6), "3");
    /* Paced again, until 300 KB more are queued: then at the next turn of the loop. */
    uint64_t t1 = uv_now(&t->loop);
    send_sized_write(t, sw, 3, 6, e6, 4, 100);
    send_sized_write(t, sw, 4, 6, e6, 5, 300 * 1024);
    IT_WAIT_FOR(t, t->done == 5, 5000);
    assert_true(t->answered_ms[4] - t1 < PACE - 100);
    assert_int_equal(store_writer_stats(sw)->transactions, 3);
    for (int i = 0; i < 5; i++)
        assert_int_equal(t->results[i], STORE_OK);
    assert_string_equal(APPLIED(t, 6), "5");
    /* Freed with a write waiting for its turn: nobody is called back, nothing leaks. */
    send_sized_write(t, sw, 5, 6, e6, 6, 100);
    void *waiting = t->last_call;
    send_sized_write(t, sw, 6, 6, e6, 7, 100);
    store_writer_free(sw);
    uv_run(&t->loop, UV_RUN_NOWAIT);
    assert_int_equal(t->done, 5);
    free(waiting);
    free(t->last_call);
}

static void timelines_pushed_per_customer_newest_first(void **state)
{
    it_t *t = *state;
    int64_t epoch = claim(t, 6);
    char id[96], key[STORE_KEY_MAX], other[STORE_KEY_MAX];
    snprintf(id, sizeof id, "%s-tl", t->topic);
    assert_true(store_timeline_key(key, sizeof key, id) > 0);
    snprintf(id, sizeof id, "%s-tl2", t->topic);
    assert_true(store_timeline_key(other, sizeof other, id) > 0);
    /* 105 entries of one customer, the last 5 asking for a trim to 100 (as the engine does
     * once its count says the list is full), and 3 of another, interleaved, never trimmed. */
    store_write_t *w = store_write_new(t->topic, 6, epoch, 105);
    for (int i = 0; i < 105; i++) {
        char entry[32];
        int n = snprintf(entry, sizeof entry, "{\"n\":%d}", i);
        assert_int_equal(store_write_add_op(w, STORE_OP_TIMELINE, i, key, i >= 100 ? "100" : "",
                                            entry, (size_t)n),
                         0);
        if (i % 50 == 0)
            assert_int_equal(
                store_write_add_op(w, STORE_OP_TIMELINE, i, other, "", entry, (size_t)n), 0);
    }
    call_t *call = malloc(sizeof *call);
    *call = (call_t){t, 0};
    assert_int_equal(store_write_send_many(t->writer, &w, 1, on_written, call, NULL), 0);
    store_write_free(w);
    IT_WAIT_FOR(t, t->done == 1, 5000);
    assert_int_equal(t->results[0], STORE_OK);
    redisReply *r = redisCommand(t->probe, "LRANGE %s 0 -1", key);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 100);
    assert_string_equal(r->element[0]->str, "{\"n\":104}");
    assert_string_equal(r->element[99]->str, "{\"n\":5}");
    freeReplyObject(r);
    r = redisCommand(t->probe, "LRANGE %s 0 -1", other);
    assert_int_equal(r->elements, 3);
    assert_string_equal(r->element[0]->str, "{\"n\":100}");
    assert_string_equal(r->element[2]->str, "{\"n\":0}");
    freeReplyObject(r);
    freeReplyObject(redisCommand(t->probe, "DEL %s %s", key, other));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(write_lands_with_offset_and_operations, setup, teardown),
        cmocka_unit_test_setup_teardown(live_queue_operations_native_and_looked_up, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(stale_and_later_epochs_are_fenced, setup, teardown),
        cmocka_unit_test_setup_teardown(claim_between_watch_and_exec_aborts_then_fences, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(writes_ready_meanwhile_share_the_next_transaction, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(writes_soon_after_a_transaction_wait_for_the_pace, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(timelines_pushed_per_customer_newest_first, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
