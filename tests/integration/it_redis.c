/* it_redis.c - redis_uv against the test stack's real redis-server: commands and pipelining,
 * Redis Functions loaded on every (re)connect, a server stopped and restarted under a client, a
 * client started while Redis is down, the command-timeout watchdog (CLIENT PAUSE), a bad
 * function library, max_pending, close with commands in flight.
 *
 * Some tests stop and restart the shared Redis; every test's teardown starts it again if needed
 * and undoes what the test left (pause, functions, keys), so later tests find it as it was. No
 * fixed sleeps: the loop runs until a state is reached, bounded by a uv timer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "it_env.h"
#include "redis_uv.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define LIB_ECHO                                                                                 \
    "#!lua name=it_redis_lib\n"                                                                  \
    "redis.register_function('it_redis_echo', function(keys, args) return args[1] end)\n"
#define LIB_TWICE                                                                                \
    "#!lua name=it_redis_lib2\n"                                                                 \
    "redis.register_function('it_redis_twice', function(keys, args)\n"                          \
    "  return tonumber(args[1]) * 2\n"                                                           \
    "end)\n"
#define LIB_BAD "#!lua name=it_redis_bad\nredis.register_function('it_redis_bad', function(\n"

#define PIPELINE_COUNT 20000

/* ------------------------------------------------------------------------------------------
 * Redis control (shell, through it_sh)
 * ---------------------------------------------------------------------------------------- */

static char cli[256]; /* "redis-cli -h HOST -p PORT" */

static void redis_stop(void)
{
    /* SHUTDOWN closes the connection: redis-cli's exit status says nothing. Then wait until
     * the port no longer answers, so that a restart can bind it. */
    it_sh("%s shutdown nosave >/dev/null 2>&1", cli);
    assert_int_equal(it_sh("for i in $(seq 200); do %s ping >/dev/null 2>&1 || exit 0; "
                           "sleep 0.05; done; exit 1",
                           cli),
                     0);
}

/* Starts redis-server with the stack's config unless it answers already; returns once it
 * answers PING. */
static void redis_start(void)
{
    assert_int_equal(it_sh("%s ping 2>/dev/null | grep -q PONG || redis-server %s >/dev/null; "
                           "for i in $(seq 200); do %s ping 2>/dev/null | grep -q PONG && exit 0; "
                           "sleep 0.05; done; exit 1",
                           cli, it_env("REDIS_CONF"), cli),
                     0);
}

static int setup_group(void **state)
{
    snprintf(cli, sizeof cli, "redis-cli -h %s -p %d", it_env("REDIS_HOST"),
             it_env_int("REDIS_PORT"));
    redis_start();
    return 0;
}

/* After every test, passed or failed: Redis up, unpaused, nothing of ours left in it. */
static int teardown_test(void **state)
{
    it_sh("%s client unpause >/dev/null 2>&1", cli); /* first: a paused Redis blocks PING */
    redis_start();
    it_sh("for lib in it_redis_lib it_redis_lib2 it_redis_bad; do "
          "%s function delete $lib >/dev/null 2>&1; done",
          cli);
    it_sh("%s del it_redis:counter it_redis:bin it_redis:str >/dev/null 2>&1", cli);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Harness: one loop and one client per test
 * ---------------------------------------------------------------------------------------- */

#define MAX_STATES 64

typedef struct {
    uv_loop_t loop;
    uv_timer_t wait_timer;
    bool expired;
    redis_client_t *c;

    redis_state_t states[MAX_STATES];
    char reasons[MAX_STATES][256];
    int n_states;
    int count[4]; /* reports per redis_state_t */
    int closed;   /* close_cb calls */

    long replies;      /* non-NULL replies */
    long nulls;        /* NULL replies */
    long out_of_order; /* INCR replies that were not the next integer */
    long errors;       /* REDIS_REPLY_ERROR replies */
    int refused_in_null_cb;
    char null_errstr[256]; /* redis_client_errstr() seen by the last NULL reply */
    char last_str[256];    /* the last string or status reply */
    long long last_int;
    bool close_on_last;    /* close from inside reply PIPELINE_COUNT */
} it_t;


static void on_state(redis_client_t *c, redis_state_t state, const char *reason, void *data)
{
    it_t *t = data;
    assert_true(t->n_states < MAX_STATES);
    t->states[t->n_states] = state;
    snprintf(t->reasons[t->n_states], sizeof t->reasons[0], "%s", reason);
    t->n_states++;
    t->count[state]++;
    print_message("  state %s (%s)\n", redis_state_name(state), reason);
}

static void on_closed(redis_client_t *c, void *data)
{
    it_t *t = data;
    t->closed++;
}

static const char *last_reason(const it_t *t)
{
    return t->n_states ? t->reasons[t->n_states - 1] : "";
}

static redis_client_options_t default_options(it_t *t)
{
    return (redis_client_options_t){.host = it_env("REDIS_HOST"),
                                    .port = it_env_int("REDIS_PORT"),
                                    .reconnect_min_ms = 50,
                                    .reconnect_max_ms = 400,
                                    .on_state = on_state,
                                    .data = t};
}

static void it_start(it_t *t, const redis_client_options_t *opts)
{
    memset(t, 0, sizeof *t);
    assert_int_equal(uv_loop_init(&t->loop), 0);
    uv_timer_init(&t->loop, &t->wait_timer);
    t->wait_timer.data = &t->expired;
    redis_client_options_t o = opts ? *opts : default_options(t);
    o.data = t;
    assert_int_equal(redis_client_new(&t->c, &t->loop, &o), 0);
}

/* Closes the client (unless the test did), waits for close_cb, and checks the loop ends empty. */
static void it_finish(it_t *t)
{
    if (t->count[REDIS_STATE_CLOSED] == 0) /* else t->c may be freed already */
        redis_client_close(t->c, on_closed, t);
    IT_WAIT_FOR(t, t->closed == 1, 10000);
    assert_int_equal(t->states[t->n_states - 1], REDIS_STATE_CLOSED);
    assert_int_equal(t->count[REDIS_STATE_CLOSED], 1);
    uv_close((uv_handle_t *)&t->wait_timer, NULL);
    assert_int_equal(uv_run(&t->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&t->loop), 0);
    assert_int_equal(t->closed, 1);
}

/* A reply of any kind: counted, its value kept. */
static void on_reply(redis_client_t *c, redisReply *r, void *data)
{
    it_t *t = data;
    if (!r) {
        t->nulls++;
        snprintf(t->null_errstr, sizeof t->null_errstr, "%s", redis_client_errstr(c));
        /* No reply will come on this connection: new commands are refused now. */
        if (redis_client_command(c, NULL, NULL, "PING") == REDIS_CLIENT_ENOTREADY)
            t->refused_in_null_cb++;
        return;
    }
    t->replies++;
    if (r->type == REDIS_REPLY_ERROR)
        t->errors++;
    if (r->type == REDIS_REPLY_INTEGER)
        t->last_int = r->integer;
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
        r->type == REDIS_REPLY_ERROR)
        snprintf(t->last_str, sizeof t->last_str, "%.*s", (int)r->len, r->str);
}

/* Sends a command and runs the loop until its reply (or NULL) is in. */
static void roundtrip(it_t *t, const char *cmd)
{
    long before = t->replies + t->nulls;
    const char *argv[8];
    char buf[256];
    int argc = 0;
    snprintf(buf, sizeof buf, "%s", cmd);
    for (char *save = NULL, *tok = strtok_r(buf, " ", &save); tok && argc < 8;
         tok = strtok_r(NULL, " ", &save))
        argv[argc++] = tok;
    assert_int_equal(redis_client_command_argv(t->c, on_reply, t, argc, argv, NULL), 0);
    IT_WAIT_FOR(t, t->replies + t->nulls == before + 1, 5000);
}

#define STATE(t) redis_client_state((t)->c)

/* ------------------------------------------------------------------------------------------
 * Tests
 * ---------------------------------------------------------------------------------------- */

static void on_incr(redis_client_t *c, redisReply *r, void *data)
{
    it_t *t = data;
    if (!r) {
        t->nulls++;
        return;
    }
    t->replies++;
    if (r->type != REDIS_REPLY_INTEGER || r->integer != t->replies)
        t->out_of_order++;
    if (t->close_on_last && t->replies == PIPELINE_COUNT)
        redis_client_close(c, on_closed, t); /* from inside a reply callback */
}

static void commands_and_pipelining(void **state)
{
    it_t t;
    redis_client_options_t opts = default_options(&t);
    opts.max_pending = 2 * PIPELINE_COUNT; /* the default, 16384, would refuse some: EFULL */
    it_start(&t, &opts);
    IT_WAIT_FOR(&t, STATE(&t) == REDIS_STATE_READY, 5000);
    assert_int_equal(t.n_states, 1);

    /* Plain, binary-safe and error replies. */
    roundtrip(&t, "DEL it_redis:counter it_redis:bin it_redis:str");
    const char bin[] = {'a', '\0', 'b', '\r', '\n'};
    long before = t.replies;
    assert_int_equal(redis_client_command(t.c, on_reply, &t, "SET it_redis:bin %b", bin,
                                          sizeof bin),
                     0);
    assert_int_equal(redis_client_command(t.c, on_reply, &t, "STRLEN it_redis:bin"), 0);
    IT_WAIT_FOR(&t, t.replies == before + 2, 5000);
    assert_int_equal(t.last_int, (long long)sizeof bin);
    roundtrip(&t, "SET it_redis:str hello");
    roundtrip(&t, "INCR it_redis:str");
    assert_int_equal(t.errors, 1); /* a command that ran and failed is a reply, not NULL */
    assert_non_null(strstr(t.last_str, "not an integer"));

    /* 20,000 INCRs back to back: all answered, in order. */
    t.replies = 0;
    t.close_on_last = true;
    uv_update_time(&t.loop);
    uint64_t start = uv_now(&t.loop);
    for (int i = 0; i < PIPELINE_COUNT; i++)
        assert_int_equal(redis_client_command(t.c, on_incr, &t, "INCR it_redis:counter"), 0);
    IT_WAIT_FOR(&t, t.closed == 1, 30000);
    print_message("  %d INCRs answered in %llu ms\n", PIPELINE_COUNT,
                  (unsigned long long)(uv_now(&t.loop) - start));
    assert_int_equal(t.replies, PIPELINE_COUNT);
    assert_int_equal(t.out_of_order, 0);
    assert_int_equal(t.nulls, 0);
    it_finish(&t);
}

/* Replies of every kind, nested, through the client's reply objects (redis_uv.c keeps them
 * for reuse, with short strings inside the object): each round must read back exactly, so
 * an object or string that outlived its reply, or a length that came from the previous one,
 * shows here. */
#define NESTED_ROUNDS 3000
static const char nested_script[] =
    "return {tonumber(ARGV[1]), ARGV[2], string.rep('x', tonumber(ARGV[1]) % 90), false,"
    " {redis.status_reply('QUEUED'), {tonumber(ARGV[1]) * 2}, ''}, redis.error_reply('ERR r'..ARGV[1])}";

typedef struct {
    it_t *t;
    long bad;
} nested_check_t;

static bool is_string(const redisReply *r, int type, const char *want, size_t len)
{
    return r && r->type == type && r->len == len && memcmp(r->str, want, len) == 0 &&
           r->str[len] == '\0';
}

static bool nested_reply_is(const redisReply *r, long i)
{
    char text[32], xs[96];
    size_t text_len = (size_t)snprintf(text, sizeof text, "round-%ld", i);
    size_t n_x = (size_t)(i % 90);
    memset(xs, 'x', n_x);
    char err[32];
    size_t err_len = (size_t)snprintf(err, sizeof err, "ERR r%ld", i);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 6)
        return false;
    const redisReply *inner = r->element[4];
    return r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer == i &&
           is_string(r->element[1], REDIS_REPLY_STRING, text, text_len) &&
           is_string(r->element[2], REDIS_REPLY_STRING, xs, n_x) &&
           r->element[3]->type == REDIS_REPLY_NIL && inner->type == REDIS_REPLY_ARRAY &&
           inner->elements == 3 && is_string(inner->element[0], REDIS_REPLY_STATUS, "QUEUED", 6) &&
           inner->element[1]->type == REDIS_REPLY_ARRAY && inner->element[1]->elements == 1 &&
           inner->element[1]->element[0]->integer == 2 * i &&
           is_string(inner->element[2], REDIS_REPLY_STRING, "", 0) &&
           is_string(r->element[5], REDIS_REPLY_ERROR, err, err_len);
}

static void on_nested(redis_client_t *c, redisReply *r, void *data)
{
    (void)c;
    nested_check_t *n = data;
    if (!nested_reply_is(r, n->t->replies))
        n->bad++;
    n->t->replies++;
}

/* EXEC of INCR on a string (fails inside the transaction) and GET. */
static void on_exec_reply(redis_client_t *c, redisReply *r, void *data)
{
    (void)c;
    nested_check_t *n = data;
    n->t->replies++;
    bool ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
              r->element[0]->type == REDIS_REPLY_ERROR &&
              strstr(r->element[0]->str, "not an integer") &&
              is_string(r->element[1], REDIS_REPLY_STRING, "text", 4);
    n->bad += !ok;
}

static void replies_of_every_kind_read_back_exactly(void **state)
{
    it_t t;
    redis_client_options_t opts = default_options(&t);
    opts.max_pending = 2 * NESTED_ROUNDS;
    it_start(&t, &opts);
    IT_WAIT_FOR(&t, STATE(&t) == REDIS_STATE_READY, 5000);
    nested_check_t n = {&t, 0};
    for (long i = 0; i < NESTED_ROUNDS; i++) {
        char arg[24], text[32];
        snprintf(arg, sizeof arg, "%ld", i);
        snprintf(text, sizeof text, "round-%ld", i);
        /* the first half all at once (objects from the allocator), the rest one by one
         * (objects reused) */
        assert_int_equal(redis_client_command(t.c, on_nested, &n, "EVAL %s 0 %s %s",
                                              nested_script, arg, text),
                         0);
        if (i >= NESTED_ROUNDS / 2)
            IT_WAIT_FOR(&t, t.replies == i + 1, 5000);
    }
    IT_WAIT_FOR(&t, t.replies == NESTED_ROUNDS, 10000);
    assert_int_equal(n.bad, 0);

    /* A transaction: QUEUED statuses, then EXEC's array with a failed command in it. */
    roundtrip(&t, "SET it_redis:tx text");
    roundtrip(&t, "MULTI");
    assert_string_equal(t.last_str, "OK");
    roundtrip(&t, "INCR it_redis:tx");
    assert_string_equal(t.last_str, "QUEUED");
    roundtrip(&t, "GET it_redis:tx");
    assert_string_equal(t.last_str, "QUEUED");
    long before = t.replies;
    n.bad = 0;
    assert_int_equal(redis_client_command(t.c, on_exec_reply, &n, "EXEC"), 0);
    IT_WAIT_FOR(&t, t.replies == before + 1, 5000);
    assert_int_equal(n.bad, 0);
    it_finish(&t);
}

/* Values of several MB: the socket takes each command in many writes, the rest waiting in
 * the adapter's own queue (redis_uv.c, write_output); commands queued meanwhile follow in
 * order. */
enum { BIG = 6 * 1024 * 1024 };

static char *big_value(int seed)
{
    char *v = malloc(BIG);
    for (size_t i = 0; i < BIG; i++)
        v[i] = (char)((i * 7 + (size_t)seed) % 251);
    return v;
}

typedef struct {
    it_t *t;
    const char *want;
    int matched;
} big_check_t;

static void on_big_get(redis_client_t *c, redisReply *r, void *data)
{
    (void)c;
    big_check_t *b = data;
    b->t->replies++;
    b->matched = r && r->type == REDIS_REPLY_STRING && r->len == BIG &&
                 memcmp(r->str, b->want, BIG) == 0;
}

static void large_commands_are_sent_whole_and_in_order(void **state)
{
    it_t t;
    it_start(&t, NULL);
    IT_WAIT_FOR(&t, STATE(&t) == REDIS_STATE_READY, 5000);
    roundtrip(&t, "DEL it_redis:big1 it_redis:big2 it_redis:order");
    char *v1 = big_value(1), *v2 = big_value(2);
    long before = t.replies;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(redis_client_command(t.c, on_reply, &t, "SET it_redis:big%d %b", i + 1,
                                              i ? v2 : v1, (size_t)BIG),
                         0);
        assert_int_equal(redis_client_command(t.c, on_reply, &t, "RPUSH it_redis:order %d", i + 1),
                         0);
    }
    IT_WAIT_FOR(&t, t.replies == before + 4, 10000);
    assert_int_equal(t.last_int, 2);
    /* Queued while the first ones are still going out, too. */
    big_check_t b1 = {&t, v1, 0}, b2 = {&t, v2, 0};
    before = t.replies;
    assert_int_equal(redis_client_command(t.c, on_big_get, &b1, "GET it_redis:big1"), 0);
    assert_int_equal(redis_client_command(t.c, on_reply, &t, "SET it_redis:big1 %b", v2,
                                          (size_t)BIG),
                     0);
    assert_int_equal(redis_client_command(t.c, on_big_get, &b2, "GET it_redis:big1"), 0);
    IT_WAIT_FOR(&t, t.replies == before + 3, 10000);
    assert_int_equal(b1.matched, 1);
    assert_int_equal(b2.matched, 1);
    assert_int_equal(t.errors, 0);
    roundtrip(&t, "DEL it_redis:big1 it_redis:big2 it_redis:order");
    free(v1);
    free(v2);
    it_finish(&t);
}

static void close_while_ready_answers_pending_commands(void **state)
{
    it_t t;
    it_start(&t, NULL);
    IT_WAIT_FOR(&t, STATE(&t) == REDIS_STATE_READY, 5000);
    roundtrip(&t, "DEL it_redis:counter");
    t.replies = 0;
    for (int i = 0; i < 100; i++)
        assert_int_equal(redis_client_command(t.c, on_incr, &t, "INCR it_redis:counter"), 0);
    redis_client_close(t.c, on_closed, &t);
    assert_int_equal(STATE(&t), REDIS_STATE_CLOSED);
    assert_int_equal(redis_client_command(t.c, on_incr, &t, "INCR it_redis:counter"),
                     REDIS_CLIENT_ECLOSED);
    it_finish(&t);
    assert_int_equal(t.replies, 100);
    assert_int_equal(t.nulls, 0);
    assert_int_equal(t.out_of_order, 0);
}

static void function_libraries_are_loaded(void **state)
{
    it_t t;
    it_start(&t, NULL);
    assert_int_equal(redis_client_add_function_library(t.c, LIB_ECHO), 0);
    IT_WAIT_FOR(&t, STATE(&t) == REDIS_STATE_READY, 5000);
    roundtrip(&t, "FCALL it_redis_echo 0 hello");
    assert_string_equal(t.last_str, "hello");

    /* Added while READY: loaded at once, READY all along. */
    assert_int_equal(redis_client_add_function_library(t.c, LIB_TWICE), 0);
    roundtrip(&t, "FCALL it_redis_twice 0 21");
    assert_int_equal(t.last_int, 42);
    roundtrip(&t, "FCALL it_redis_missing 0");
    assert_non_null(strstr(t.last_str, "Function not found"));
    assert_int_equal(t.n_states, 1);
    assert_int_equal(t.nulls, 0);
    it_finish(&t);
}

static void restarted_redis_gets_functions_back(void **state)
{
    it_t t;
    redis_client_options_t opts = default_options(&t);
    it_start(&t, &opts);
    assert_int_equal(redis_client_add_function_library(t.c, LIB_ECHO), 0);
    IT_WAIT_FOR(&t, STATE(&t) == REDIS_STATE_READY, 5000);
    roundtrip(&t, "FCALL it_redis_echo 0 before");
    assert_string_equal(t.last_str, "before");

    /* Queued, then Redis goes before the loop gets to send them: all fail with NULL. */
    long nulls = t.nulls;
    for (int i = 0; i < 5; i++)
        assert_int_equal(redis_client_command(t.c, on_reply, &t, "INCR it_redis:counter"), 0);
    redis_stop();
    IT_WAIT_FOR(&t, STATE(&t) == REDIS_STATE_RECONNECTING && t.nulls == nulls + 5, 5000);
    assert_int_equal(t.refused_in_null_cb, 5);
    assert_true(t.null_errstr[0] != '\0');
    assert_true(last_reason(&t)[0] != '\0');
    assert_int_equal(redis_client_command(t.c, on_reply, &t, "PING"), REDIS_CLIENT_ENOTREADY);
    redis_client_stats_t st;
    redis_client_stats(t.c, &st);
    assert_int_equal(st.failed, 5);

    /* Back up: READY again only once the library is reloaded (nothing persisted it). */
    redis_start();
    IT_WAIT_FOR(&t, STATE(&t) == REDIS_STATE_READY, 10000);
    assert_int_equal(t.count[REDIS_STATE_READY], 2);
    assert_int_equal(t.count[REDIS_STATE_RECONNECTING], 1);
    roundtrip(&t, "FCALL it_redis_echo 0 after");
    assert_string_equal(t.last_str, "after");
    roundtrip(&t, "INCR it_redis:counter");
    assert_int_equal(t.last_int, 1);
    redis_client_stats(t.c, &st);
    assert_true(st.reconnects >= 1);
    it_finish(&t);
}

static void client_started_while_redis_is_down(void **state)
{
    redis_stop();
    it_t t;
    it_start(&t, NULL);
    IT_WAIT_FOR(&t, STATE(&t) == REDIS_STATE_RECONNECTING, 5000);
    assert_non_null(strstr(t.reasons[0], "Connection refused"));
    redis_client_stats_t st;
    IT_WAIT_FOR(&t, (redis_client_stats(t.c, &st), st.reconnects >= 2), 5000);
    assert_int_equal(t.n_states, 1); /* failed retries are silent */
    assert_int_equal(redis_client_command(t.c, on_reply, &t, "PING"), REDIS_CLIENT_ENOTREADY);

    redis_start();
    IT_WAIT_FOR(&t, STATE(&t) == REDIS_STATE_READY, 10000);
    roundtrip(&t, "PING");
    assert_string_equal(t.last_str, "PONG");
    it_finish(&t);
}

static void command_timeout_drops_and_reconnects(void **state)
{
    it_t t;
    redis_client_options_t opts = default_options(&t);
    opts.command_timeout_ms = 500;
    it_start(&t, &opts);
    IT_WAIT_FOR(&t, STATE(&t) == REDIS_STATE_READY, 5000);
    roundtrip(&t, "PING");

    assert_int_equal(it_sh("%s client pause 3000 all >/dev/null", cli), 0);
    uv_update_time(&t.loop);
    uint64_t start = uv_now(&t.loop);
    assert_int_equal(redis_client_command(t.c, on_reply, &t, "INCR it_redis:counter"), 0);
    IT_WAIT_FOR(&t, STATE(&t) == REDIS_STATE_RECONNECTING && t.nulls == 1, 5000);
    uint64_t took = uv_now(&t.loop) - start;
    print_message("  watchdog fired after %llu ms\n", (unsigned long long)took);
    assert_true(took >= 500 && took < 2500);
    assert_string_equal(last_reason(&t), "command timed out after 500 ms");
    assert_string_equal(t.null_errstr, "command timed out after 500 ms");
    redis_client_stats_t st;
    redis_client_stats(t.c, &st);
    assert_true(st.timeouts >= 1);

    /* READY again once the pause is over (the reconnect's PING waits for it too). */
    IT_WAIT_FOR(&t, STATE(&t) == REDIS_STATE_READY, 15000);
    roundtrip(&t, "PING");
    assert_string_equal(t.last_str, "PONG");
    it_finish(&t);
}

static void bad_function_library_is_reported(void **state)
{
    it_t t;
    it_start(&t, NULL);
    assert_int_equal(redis_client_add_function_library(t.c, LIB_BAD), 0);
    IT_WAIT_FOR(&t, STATE(&t) == REDIS_STATE_RECONNECTING, 5000);
    assert_true(strncmp(t.reasons[0], "FUNCTION LOAD failed: ", 22) == 0);
    assert_true(strncmp(redis_client_errstr(t.c), "FUNCTION LOAD failed: ", 22) == 0);
    /* It is retried with backoff and never gets READY. */
    redis_client_stats_t st;
    IT_WAIT_FOR(&t, (redis_client_stats(t.c, &st), st.reconnects >= 3), 5000);
    assert_int_equal(t.count[REDIS_STATE_READY], 0);
    assert_int_equal(t.n_states, 1);
    it_finish(&t);
}

static void bad_function_library_added_while_ready(void **state)
{
    it_t t;
    it_start(&t, NULL);
    IT_WAIT_FOR(&t, STATE(&t) == REDIS_STATE_READY, 5000);
    for (int i = 0; i < 3; i++) /* in flight when the load fails: they still get replies */
        assert_int_equal(redis_client_command(t.c, on_reply, &t, "PING"), 0);
    assert_int_equal(redis_client_add_function_library(t.c, LIB_BAD), 0);
    IT_WAIT_FOR(&t, STATE(&t) == REDIS_STATE_RECONNECTING, 5000);
    assert_true(strncmp(last_reason(&t), "FUNCTION LOAD failed: ", 22) == 0);
    assert_int_equal(t.replies + t.nulls, 3);
    it_finish(&t);
}

static void max_pending_refuses_with_efull(void **state)
{
    it_t t;
    redis_client_options_t opts = default_options(&t);
    opts.max_pending = 4;
    it_start(&t, &opts);
    IT_WAIT_FOR(&t, STATE(&t) == REDIS_STATE_READY, 5000);
    for (int i = 0; i < 4; i++)
        assert_int_equal(redis_client_command(t.c, on_reply, &t, "PING"), 0);
    assert_int_equal(redis_client_command(t.c, on_reply, &t, "PING"), REDIS_CLIENT_EFULL);
    redis_client_stats_t st;
    redis_client_stats(t.c, &st);
    assert_int_equal(st.refused, 1);
    IT_WAIT_FOR(&t, t.replies == 4, 5000);
    /* Answered: the slots are free again, the ring wraps. */
    for (int i = 0; i < 4; i++)
        assert_int_equal(redis_client_command(t.c, on_reply, &t, "PING"), 0);
    IT_WAIT_FOR(&t, t.replies == 8, 5000);
    redis_client_stats(t.c, &st);
    assert_int_equal(st.sent, 8);
    assert_int_equal(st.failed, 0);
    it_finish(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(commands_and_pipelining, teardown_test),
        cmocka_unit_test_teardown(replies_of_every_kind_read_back_exactly, teardown_test),
        cmocka_unit_test_teardown(large_commands_are_sent_whole_and_in_order, teardown_test),
        cmocka_unit_test_teardown(close_while_ready_answers_pending_commands, teardown_test),
        cmocka_unit_test_teardown(function_libraries_are_loaded, teardown_test),
        cmocka_unit_test_teardown(restarted_redis_gets_functions_back, teardown_test),
        cmocka_unit_test_teardown(client_started_while_redis_is_down, teardown_test),
        cmocka_unit_test_teardown(command_timeout_drops_and_reconnects, teardown_test),
        cmocka_unit_test_teardown(bad_function_library_is_reported, teardown_test),
        cmocka_unit_test_teardown(bad_function_library_added_while_ready, teardown_test),
        cmocka_unit_test_teardown(max_pending_refuses_with_efull, teardown_test),
    };
    return cmocka_run_group_tests(tests, setup_group, NULL);
}
