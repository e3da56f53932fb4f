/* test_redis_uv.c - redis_uv without a Redis server: refused connects and backoff, refused
 * commands, timeouts and closes against local sockets that never answer or answer wrong, the
 * adapter on its own. Every loop test ends with uv_loop_close() == 0. The tests against a real
 * redis-server are in tests/integration/it_redis.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "redis_uv.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define GUARD_MS 10000 /* no test may run the loop longer than this */

/* ------------------------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------------------------- */

/* A loopback TCP socket on a free port: bound only (connects are refused) or listening
 * (connects complete in the kernel's backlog, and nothing is ever read or answered). */
static int local_socket(bool listening, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    if (listening)
        assert_int_equal(listen(fd, 64), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

#define MAX_STATES 16

typedef struct {
    uv_loop_t loop;
    uv_timer_t guard;
    redis_client_t *client;
    redis_state_t states[MAX_STATES];
    char reasons[MAX_STATES][256];
    int n_states;
    int closed;                /* close_cb calls */
    bool close_on_reconnecting; /* close from inside the RECONNECTING report */
} fixture_t;

static void on_guard(uv_timer_t *t)
{
    fail_msg("test did not finish within %d ms", GUARD_MS);
}

static void on_state(redis_client_t *c, redis_state_t state, const char *reason, void *data)
{
    fixture_t *f = data;
    assert_ptr_equal(c, f->client);
    assert_non_null(reason);
    assert_true(f->n_states < MAX_STATES);
    f->states[f->n_states] = state;
    snprintf(f->reasons[f->n_states], sizeof f->reasons[0], "%s", reason);
    f->n_states++;
    if (state == REDIS_STATE_RECONNECTING && f->close_on_reconnecting)
        redis_client_close(c, NULL, NULL); /* close_cb NULL is allowed */
}

static void on_closed(redis_client_t *c, void *data)
{
    fixture_t *f = data;
    assert_ptr_equal(c, f->client);
    f->closed++;
    uv_close((uv_handle_t *)&f->guard, NULL);
}

static void fixture_start(fixture_t *f)
{
    memset(f, 0, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->guard);
    uv_timer_start(&f->guard, on_guard, GUARD_MS, 0);
    uv_unref((uv_handle_t *)&f->guard); /* the client's handles keep the loop alive, not this */
}

static redis_client_options_t options(fixture_t *f, int port)
{
    return (redis_client_options_t){
        .host = "127.0.0.1", .port = port, .on_state = on_state, .data = f};
}

static void fixture_new(fixture_t *f, const redis_client_options_t *opts)
{
    assert_int_equal(redis_client_new(&f->client, &f->loop, opts), 0);
    assert_int_equal(redis_client_state(f->client), REDIS_STATE_CONNECTING);
}

/* Runs the loop until it is empty: every client closed, every handle gone. */
static void fixture_finish(fixture_t *f)
{
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->closed, 1);
    assert_true(f->n_states > 0);
    assert_int_equal(f->states[f->n_states - 1], REDIS_STATE_CLOSED);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

static void close_client(fixture_t *f)
{
    redis_client_close(f->client, on_closed, f);
}

/* Closes the client after delay_ms, from a timer of the test (heap-allocated: freed by the
 * loop close callback below). */
static void on_timer_freed(uv_handle_t *h)
{
    free(h);
}

static void on_close_timer_heap(uv_timer_t *t)
{
    fixture_t *f = t->data;
    uv_close((uv_handle_t *)t, on_timer_freed);
    close_client(f);
}

static void close_after(fixture_t *f, unsigned delay_ms)
{
    uv_timer_t *t = malloc(sizeof *t);
    assert_non_null(t);
    uv_timer_init(&f->loop, t);
    t->data = f;
    uv_timer_start(t, on_close_timer_heap, delay_ms, 0);
}

/* ------------------------------------------------------------------------------------------
 * Names and options
 * ---------------------------------------------------------------------------------------- */

static void strerror_and_state_names(void **state)
{
    assert_string_equal(redis_client_strerror(REDIS_CLIENT_OK), "success");
    for (int err = REDIS_CLIENT_EINVAL; err >= REDIS_CLIENT_ECLOSED; err--) {
        assert_non_null(redis_client_strerror(err));
        assert_string_not_equal(redis_client_strerror(err), "unknown error");
    }
    assert_string_equal(redis_client_strerror(REDIS_CLIENT_EFULL),
                        "too many redis commands in flight");
    assert_string_equal(redis_client_strerror(-100), "unknown error");
    assert_string_equal(redis_state_name(REDIS_STATE_CONNECTING), "connecting");
    assert_string_equal(redis_state_name(REDIS_STATE_READY), "ready");
    assert_string_equal(redis_state_name(REDIS_STATE_RECONNECTING), "reconnecting");
    assert_string_equal(redis_state_name(REDIS_STATE_CLOSED), "closed");
    assert_string_equal(redis_state_name((redis_state_t)42), "unknown");
}

static void new_rejects_bad_options(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    redis_client_t *c = (redis_client_t *)&loop; /* must stay untouched */
    redis_client_options_t opts = {.host = "127.0.0.1", .port = 6379};
    assert_int_equal(redis_client_new(&c, &loop, NULL), REDIS_CLIENT_EINVAL);
    assert_int_equal(redis_client_new(&c, NULL, &opts), REDIS_CLIENT_EINVAL);
    opts.host = NULL;
    assert_int_equal(redis_client_new(&c, &loop, &opts), REDIS_CLIENT_EINVAL);
    opts.host = "";
    assert_int_equal(redis_client_new(&c, &loop, &opts), REDIS_CLIENT_EINVAL);
    opts.host = "127.0.0.1";
    opts.port = 0;
    assert_int_equal(redis_client_new(&c, &loop, &opts), REDIS_CLIENT_EINVAL);
    opts.port = 65536;
    assert_int_equal(redis_client_new(&c, &loop, &opts), REDIS_CLIENT_EINVAL);
    assert_ptr_equal(c, (redis_client_t *)&loop);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ------------------------------------------------------------------------------------------
 * Refused connects, backoff, close
 * ---------------------------------------------------------------------------------------- */

typedef struct {
    fixture_t f;
    uv_check_t check;
    uint64_t reconnects;
    uint64_t at[8]; /* uv_now when the RECONNECTING report came, then when retry k started */
    int n_at;
} backoff_t;

static void backoff_on_state(redis_client_t *c, redis_state_t state, const char *reason,
                             void *data)
{
    backoff_t *b = data;
    on_state(c, state, reason, &b->f);
    if (state == REDIS_STATE_RECONNECTING)
        b->at[b->n_at++] = uv_now(&b->f.loop);
}

/* Once per loop iteration: notes the time each retry started (stats.reconnects went up). */
static void on_check(uv_check_t *check)
{
    backoff_t *b = check->data;
    if (b->f.n_states == 0 || b->f.closed || redis_client_state(b->f.client) ==
                                                 REDIS_STATE_CLOSED)
        return;
    redis_client_stats_t st;
    redis_client_stats(b->f.client, &st);
    if (st.reconnects == b->reconnects)
        return;
    assert_int_equal(st.reconnects, b->reconnects + 1);
    b->reconnects = st.reconnects;
    b->at[b->n_at++] = uv_now(&b->f.loop);
    if (b->reconnects == 5) {
        /* The refused connect fails within the iteration; 10 ms on, the client is in its
         * >= 160 ms backoff. */
        uv_close((uv_handle_t *)check, NULL);
        close_after(&b->f, 10);
    }
}

static void refused_connect_reconnects_with_growing_delay(void **state)
{
    int port;
    int fd = local_socket(false, &port);
    backoff_t b;
    fixture_start(&b.f);
    b.reconnects = 0;
    b.n_at = 0;
    uv_check_init(&b.f.loop, &b.check);
    b.check.data = &b;
    uv_check_start(&b.check, on_check);

    redis_client_options_t opts = options(&b.f, port);
    opts.on_state = backoff_on_state;
    opts.data = &b;
    opts.reconnect_min_ms = 20;
    opts.reconnect_max_ms = 160;
    fixture_new(&b.f, &opts);
    fixture_finish(&b.f);

    /* CONNECTING -> RECONNECTING once (failed retries are silent), then CLOSED. */
    assert_int_equal(b.f.n_states, 2);
    assert_int_equal(b.f.states[0], REDIS_STATE_RECONNECTING);
    assert_non_null(strstr(b.f.reasons[0], "Connection refused"));
    assert_int_equal(b.f.states[1], REDIS_STATE_CLOSED);
    assert_string_equal(b.f.reasons[1], "client closed");
    assert_int_equal(b.n_at, 6);

    /* Delays 20, 40, 80, 160, 160 ms (cap) plus up to 25% jitter; the check handle sees a
     * retry up to an iteration late, hence the slack. */
    const unsigned min_ms[] = {20, 40, 80, 160, 160};
    uint64_t prev_gap = 0;
    for (int k = 0; k < 5; k++) {
        uint64_t gap = b.at[k + 1] - b.at[k];
        print_message("retry %d after %llu ms\n", k + 1, (unsigned long long)gap);
        assert_true(gap + 2 >= min_ms[k]);
        assert_true(gap <= min_ms[k] * 5 / 4 + 100);
        if (k < 4)
            assert_true(gap > prev_gap);
        prev_gap = gap;
    }
    close(fd);
}

static void close_from_reconnecting_report(void **state)
{
    int port;
    int fd = local_socket(false, &port);
    fixture_t f;
    fixture_start(&f);
    f.close_on_reconnecting = true;
    redis_client_options_t opts = options(&f, port);
    fixture_new(&f, &opts);
    /* on_state closes with close_cb NULL: count the close through the state reports. */
    uv_run(&f.loop, UV_RUN_DEFAULT);
    assert_int_equal(f.n_states, 2);
    assert_int_equal(f.states[0], REDIS_STATE_RECONNECTING);
    assert_int_equal(f.states[1], REDIS_STATE_CLOSED);
    uv_close((uv_handle_t *)&f.guard, NULL);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f.loop), 0);
    close(fd);
}

static void on_never_called(redis_client_t *c, redisReply *reply, void *data)
{
    fail_msg("reply callback of a refused command was called");
}

static void commands_refused_until_ready(void **state)
{
    int port;
    int fd = local_socket(false, &port);
    fixture_t f;
    fixture_start(&f);
    redis_client_options_t opts = options(&f, port);
    fixture_new(&f, &opts);
    redis_client_t *c = f.client;

    assert_int_equal(redis_client_command(c, on_never_called, NULL, "GET %s", "k"),
                     REDIS_CLIENT_ENOTREADY);
    const char *argv[] = {"SET", "k", "v"};
    assert_int_equal(redis_client_command_argv(c, on_never_called, NULL, 3, argv, NULL),
                     REDIS_CLIENT_ENOTREADY);
    /* One reply per command: refused whatever the state. */
    assert_int_equal(redis_client_command(c, on_never_called, NULL, "SUBSCRIBE ch"),
                     REDIS_CLIENT_EINVAL);
    assert_int_equal(redis_client_command(c, on_never_called, NULL, "psubscribe p*"),
                     REDIS_CLIENT_EINVAL);
    assert_int_equal(redis_client_command(c, on_never_called, NULL, "SSUBSCRIBE ch"),
                     REDIS_CLIENT_EINVAL);
    assert_int_equal(redis_client_command(c, on_never_called, NULL, "UNSUBSCRIBE"),
                     REDIS_CLIENT_EINVAL);
    assert_int_equal(redis_client_command(c, on_never_called, NULL, "MONITOR"),
                     REDIS_CLIENT_EINVAL);
    assert_int_equal(redis_client_command(c, on_never_called, NULL, "CLIENT REPLY OFF"),
                     REDIS_CLIENT_EINVAL);
    assert_int_equal(redis_client_command(c, on_never_called, NULL, "HELLO 3"),
                     REDIS_CLIENT_EINVAL);
    const char *sub[] = {"subscribe", "ch"};
    assert_int_equal(redis_client_command_argv(c, on_never_called, NULL, 2, sub, NULL),
                     REDIS_CLIENT_EINVAL);
    assert_int_equal(redis_client_command(c, on_never_called, NULL, ""), REDIS_CLIENT_EINVAL);
    assert_int_equal(redis_client_command_argv(c, on_never_called, NULL, 0, argv, NULL),
                     REDIS_CLIENT_EINVAL);
    assert_int_equal(redis_client_command(c, on_never_called, NULL, "GET %q"),
                     REDIS_CLIENT_EFORMAT);
    assert_int_equal(redis_client_command(NULL, on_never_called, NULL, "PING"),
                     REDIS_CLIENT_EINVAL);
    /* Formatted by the caller, in buffers of their exact size (no NUL after them: ASan
     * catches a parser that reads on): a good one waits for READY, bad ones are refused. */
    static const char *const formatted[] = {
        "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", /* well formed */
        "*1\r\n$9\r\nPING\r\n",          /* the length runs past the end */
        "*1\r\n$4\r\nPING",                /* no CRLF after the argument */
        "*12",                            /* no CRLF after the count */
        "*1\r\n$99999999999999999999\r\n",  /* a length that overflows */
        "*1\r\n$9\r\nSUBSCRIBE\r\n",     /* well formed but refused */
    };
    for (size_t i = 0; i < sizeof formatted / sizeof formatted[0]; i++) {
        size_t len = strlen(formatted[i]);
        char *exact = malloc(len);
        assert_non_null(exact);
        memcpy(exact, formatted[i], len);
        assert_int_equal(redis_client_command_formatted(c, on_never_called, NULL, exact, len),
                         i == 0 ? REDIS_CLIENT_ENOTREADY : REDIS_CLIENT_EINVAL);
        free(exact);
    }
    assert_int_equal(redis_client_room(c), 0); /* not READY */

    redis_client_stats_t st;
    redis_client_stats(c, &st);
    assert_int_equal(st.sent, 0);
    assert_int_equal(st.failed, 0);
    assert_int_equal(st.refused, 13 + 6);
    assert_non_null(redis_client_errstr(c));

    /* Closed before the first attempt ran: no callback but CLOSED, then ECLOSED. */
    close_client(&f);
    assert_int_equal(redis_client_state(c), REDIS_STATE_CLOSED);
    assert_int_equal(redis_client_command(c, on_never_called, NULL, "PING"),
                     REDIS_CLIENT_ECLOSED);
    assert_int_equal(redis_client_add_function_library(c, "#!lua name=x\n"),
                     REDIS_CLIENT_ECLOSED);
    assert_string_equal(redis_client_errstr(c), "client closed");
    assert_int_equal(f.closed, 0); /* not before the handles are closed */
    fixture_finish(&f);
    assert_int_equal(f.n_states, 1);
    close(fd);
}

static void function_library_arguments(void **state)
{
    int port;
    int fd = local_socket(false, &port);
    fixture_t f;
    fixture_start(&f);
    redis_client_options_t opts = options(&f, port);
    fixture_new(&f, &opts);
    assert_int_equal(redis_client_add_function_library(NULL, "#!lua name=a\n"),
                     REDIS_CLIENT_EINVAL);
    assert_int_equal(redis_client_add_function_library(f.client, NULL), REDIS_CLIENT_EINVAL);
    assert_int_equal(redis_client_add_function_library(f.client, "return 1"),
                     REDIS_CLIENT_EINVAL);
    char lib[64];
    for (int i = 0; i < REDIS_CLIENT_MAX_LIBRARIES; i++) {
        snprintf(lib, sizeof lib, "#!lua name=lib%d\n", i);
        assert_int_equal(redis_client_add_function_library(f.client, lib), 0);
    }
    assert_int_equal(redis_client_add_function_library(f.client, "#!lua name=extra\n"),
                     REDIS_CLIENT_EINVAL);
    close_after(&f, 30); /* after an attempt or two, registered libraries and all */
    fixture_finish(&f);
    close(fd);
}

/* ------------------------------------------------------------------------------------------
 * Servers that accept and never answer, or answer wrong
 * ---------------------------------------------------------------------------------------- */

static void connect_timeout_when_server_never_answers(void **state)
{
    int port;
    int fd = local_socket(true, &port); /* the kernel accepts; nobody reads */
    fixture_t f;
    fixture_start(&f);
    f.close_on_reconnecting = true; /* close during the backoff that follows */
    redis_client_options_t opts = options(&f, port);
    opts.connect_timeout_ms = 100;
    opts.reconnect_min_ms = 5000;
    fixture_new(&f, &opts);
    uint64_t start = uv_now(&f.loop);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    uint64_t took = uv_now(&f.loop) - start;
    assert_int_equal(f.n_states, 2);
    assert_int_equal(f.states[0], REDIS_STATE_RECONNECTING);
    assert_string_equal(f.reasons[0], "connect timed out after 100 ms");
    assert_true(took >= 100 && took < 2000);
    uv_close((uv_handle_t *)&f.guard, NULL);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f.loop), 0);
    close(fd);
}

static void close_while_setup_is_pending(void **state)
{
    int port;
    int fd = local_socket(true, &port);
    fixture_t f;
    fixture_start(&f);
    redis_client_options_t opts = options(&f, port);
    fixture_new(&f, &opts);
    assert_int_equal(redis_client_add_function_library(f.client, "#!lua name=a\n"), 0);
    close_after(&f, 50); /* TCP up, PING and FUNCTION LOAD unanswered */
    fixture_finish(&f);
    assert_int_equal(f.n_states, 1);
    close(fd);
}

/* An idle handle runs right after the timers phase, so in the first iteration it sees the
 * first attempt just started: the connect not yet completed (hiredis frees such a context with
 * no disconnect callback). */
static void on_idle_close(uv_idle_t *idle)
{
    fixture_t *f = idle->data;
    uv_close((uv_handle_t *)idle, NULL);
    close_client(f);
}

static void close_right_after_first_attempt_started(void **state)
{
    int port;
    int fd = local_socket(true, &port);
    fixture_t f;
    fixture_start(&f);
    redis_client_options_t opts = options(&f, port);
    fixture_new(&f, &opts);
    uv_idle_t idle;
    uv_idle_init(&f.loop, &idle);
    idle.data = &f;
    uv_idle_start(&idle, on_idle_close);
    fixture_finish(&f);
    assert_int_equal(f.n_states, 1);
    close(fd);
}

/* A tiny TCP server on the loop: accepts, then either closes at once or answers every read
 * with a fixed error reply. */
typedef struct {
    uv_tcp_t server;
    uv_tcp_t conns[8];
    int n_conns;
    const char *answer; /* NULL: close at once */
    fixture_t *f;
} fake_server_t;

static void on_fake_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    static char mem[4096];
    *buf = uv_buf_init(mem, sizeof mem);
}

static void on_fake_write(uv_write_t *req, int status)
{
    free(req);
}

static void on_fake_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    fake_server_t *fs = s->data;
    if (n < 0) {
        uv_close((uv_handle_t *)s, NULL);
        return;
    }
    if (n > 0) {
        uv_write_t *req = malloc(sizeof *req);
        uv_buf_t out = uv_buf_init((char *)fs->answer, (unsigned)strlen(fs->answer));
        uv_write(req, s, &out, 1, on_fake_write);
    }
}

static void on_fake_connection(uv_stream_t *server, int status)
{
    fake_server_t *fs = server->data;
    assert_int_equal(status, 0);
    assert_true(fs->n_conns < 8);
    uv_tcp_t *conn = &fs->conns[fs->n_conns++];
    uv_tcp_init(server->loop, conn);
    conn->data = fs;
    assert_int_equal(uv_accept(server, (uv_stream_t *)conn), 0);
    if (fs->answer)
        uv_read_start((uv_stream_t *)conn, on_fake_alloc, on_fake_read);
    else
        uv_close((uv_handle_t *)conn, NULL);
}

static int fake_server_start(fake_server_t *fs, fixture_t *f, const char *answer)
{
    memset(fs, 0, sizeof *fs);
    fs->answer = answer;
    fs->f = f;
    uv_tcp_init(&f->loop, &fs->server);
    fs->server.data = fs;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    assert_int_equal(uv_tcp_bind(&fs->server, (struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&fs->server, 16, on_fake_connection), 0);
    int len = sizeof sa;
    assert_int_equal(uv_tcp_getsockname(&fs->server, (struct sockaddr *)&sa, &len), 0);
    return ntohs(sa.sin_port);
}

static void fake_server_stop(fake_server_t *fs)
{
    uv_close((uv_handle_t *)&fs->server, NULL);
    for (int i = 0; i < fs->n_conns; i++)
        if (!uv_is_closing((uv_handle_t *)&fs->conns[i]))
            uv_close((uv_handle_t *)&fs->conns[i], NULL);
}

typedef struct {
    fixture_t f;
    fake_server_t fs;
} fake_t;

static void fake_on_state(redis_client_t *c, redis_state_t state, const char *reason, void *data)
{
    fake_t *t = data;
    on_state(c, state, reason, &t->f);
    if (state == REDIS_STATE_RECONNECTING) {
        fake_server_stop(&t->fs);
        close_client(&t->f);
    }
}

static void run_against_fake(const char *answer, const char *lib, const char *want_reason)
{
    fake_t t;
    fixture_start(&t.f);
    int port = fake_server_start(&t.fs, &t.f, answer);
    redis_client_options_t opts = options(&t.f, port);
    opts.on_state = fake_on_state;
    opts.data = &t;
    fixture_new(&t.f, &opts);
    if (lib)
        assert_int_equal(redis_client_add_function_library(t.f.client, lib), 0);
    fixture_finish(&t.f);
    assert_int_equal(t.f.n_states, 2);
    assert_int_equal(t.f.states[0], REDIS_STATE_RECONNECTING);
    assert_string_equal(t.f.reasons[0], want_reason);
}

static void server_closing_at_once_means_reconnecting(void **state)
{
    run_against_fake(NULL, NULL, "Server closed the connection");
}

static void error_reply_to_ping_means_reconnecting(void **state)
{
    run_against_fake("-LOADING Redis is loading the dataset in memory\r\n", NULL,
                     "PING failed: LOADING Redis is loading the dataset in memory");
}

static void error_reply_to_function_load_means_reconnecting(void **state)
{
    run_against_fake("-ERR Error compiling function\r\n", "#!lua name=bad\nnot lua",
                     "FUNCTION LOAD failed: ERR Error compiling function");
}

/* ------------------------------------------------------------------------------------------
 * Adapter
 * ---------------------------------------------------------------------------------------- */

static void on_adapter_closed(void *arg)
{
    (*(int *)arg)++;
}

static void adapter_attach_once_and_report_close(void **state)
{
    int port;
    int fd = local_socket(true, &port);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    redisAsyncContext *ac = redisAsyncConnect("127.0.0.1", port);
    assert_non_null(ac);
    assert_int_equal(ac->err, 0);
    int closed = 0;
    assert_int_equal(redis_uv_attach(ac, &loop, on_adapter_closed, &closed), 0);
    assert_int_equal(redis_uv_attach(ac, &loop, on_adapter_closed, &closed), UV_EEXIST);
    uv_run(&loop, UV_RUN_NOWAIT);
    redisAsyncFree(ac);
    ac = NULL;
    assert_int_equal(closed, 0); /* the handle closes on the loop */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(closed, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(strerror_and_state_names),
        cmocka_unit_test(new_rejects_bad_options),
        cmocka_unit_test(refused_connect_reconnects_with_growing_delay),
        cmocka_unit_test(close_from_reconnecting_report),
        cmocka_unit_test(commands_refused_until_ready),
        cmocka_unit_test(function_library_arguments),
        cmocka_unit_test(connect_timeout_when_server_never_answers),
        cmocka_unit_test(close_while_setup_is_pending),
        cmocka_unit_test(close_right_after_first_attempt_started),
        cmocka_unit_test(server_closing_at_once_means_reconnecting),
        cmocka_unit_test(error_reply_to_ping_means_reconnecting),
        cmocka_unit_test(error_reply_to_function_load_means_reconnecting),
        cmocka_unit_test(adapter_attach_once_and_report_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
