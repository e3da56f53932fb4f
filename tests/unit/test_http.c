/* test_http.c - common/http.c against real sockets.
 *
 * Each test runs the server on its own loop (127.0.0.1, ephemeral port) on the main thread
 * and a client thread doing blocking socket I/O with 5 s timeouts. The client thread only
 * records what it saw; the main thread asserts after joining it (cmocka is not thread-safe).
 * When the client is done it wakes the loop (uv_async), which closes the server; every test
 * ends with uv_loop_close() == 0. A client may also signal a "phase" mid-way, so that the
 * loop does something (close the server) while connections are still open. */
#include "http.h"
#include "test_socket.h"
#include "metrics.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

#define RESP_MAX 8
#define RESP_CAP (128 * 1024)

/* ------------------------------------------------------------------------------------------
 * Test context
 * ---------------------------------------------------------------------------------------- */

typedef struct test test_t;

struct test {
    uv_loop_t loop;
    http_server_t *srv;
    metrics_t *metrics;
    uv_async_t wake;
    pthread_t thread;
    int port;
    void (*client)(test_t *t);
    void (*on_phase)(test_t *t, int phase); /* loop thread, for client_signal() */
    atomic_int phase;                       /* client side: phases signalled */
    atomic_bool finished;                   /* client side: the client function returned */
    int phase_seen;
    bool server_closing, server_closed;
    http_server_stats_t stats; /* taken when the client finished */

    /* Recorded by the client thread, read after join. */
    char resp[RESP_MAX][RESP_CAP];
    ssize_t resp_len[RESP_MAX];
    bool eof[RESP_MAX];
    char raw_in[256];
    ssize_t raw_len;
    uint64_t elapsed_ms;
    char *big; /* a large request body, to compare */
    size_t big_len;

    /* Recorded on the loop thread. */
    int handled;
    int deferred_done;
    int deferred_rc;
    int raw_closes;
    int raw_close_status;
    int raw_drains;
    int ticks;
    bool tick_write;
    bool flooding;
    size_t flood_bytes;
    size_t max_buffered;
    int flood_rc;
    char *big_body; /* /big's answer */
};

static void on_server_closed(http_server_t *srv, void *data)
{
    test_t *t = data;
    t->server_closed = true;
    t->srv = NULL; /* freed after this returns */
}

static void close_server(test_t *t)
{
    if (t->server_closing)
        return;
    t->server_closing = true;
    http_server_close(t->srv, on_server_closed, t);
}

static void on_wake(uv_async_t *async)
{
    test_t *t = async->data;
    int phase = atomic_load(&t->phase);
    while (t->phase_seen < phase) {
        t->phase_seen++;
        if (t->on_phase)
            t->on_phase(t, t->phase_seen);
    }
    if (atomic_load(&t->finished)) {
        if (t->srv)
            http_server_stats(t->srv, &t->stats);
        close_server(t);
        uv_close((uv_handle_t *)&t->wake, NULL);
    }
}

/* Client thread: tells the loop that the next phase was reached. */
static void client_signal(test_t *t)
{
    atomic_fetch_add(&t->phase, 1);
    uv_async_send(&t->wake);
}

static void *client_main(void *arg)
{
    test_t *t = arg;
    t->client(t);
    atomic_store(&t->finished, true);
    uv_async_send(&t->wake);
    return NULL;
}

static void add_routes(test_t *t);

static test_t *test_new(void)
{
    test_t *t = calloc(1, sizeof *t);
    assert_non_null(t);
    return t;
}

static void test_destroy(test_t *t)
{
    free(t->big);
    free(t->big_body);
    free(t);
}

/* Runs the server with opts (host and port are set here) until the client is done and the
 * server closed; asserts the loop is empty afterwards. */
static void run(test_t *t, http_server_options_t opts, void (*client)(test_t *t))
{
    opts.host = "127.0.0.1";
    opts.port = 0;
    opts.metrics = t->metrics;
    assert_int_equal(uv_loop_init(&t->loop), 0);
    assert_int_equal(http_server_new(&t->srv, &t->loop, &opts), 0);
    add_routes(t);
    assert_int_equal(http_server_listen(t->srv), 0);
    t->port = http_server_port(t->srv);
    assert_true(t->port > 0);
    assert_int_equal(uv_async_init(&t->loop, &t->wake, on_wake), 0);
    t->wake.data = t;
    t->client = client;
    assert_int_equal(pthread_create(&t->thread, NULL, client_main, t), 0);
    assert_int_equal(uv_run(&t->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(pthread_join(t->thread, NULL), 0);
    assert_true(t->server_closed);
    assert_int_equal(uv_loop_close(&t->loop), 0);
}

/* ------------------------------------------------------------------------------------------
 * Handlers (loop thread)
 * ---------------------------------------------------------------------------------------- */

typedef enum { DEFER_RESPOND, DEFER_UPGRADE } defer_kind_t;

typedef struct {
    uv_timer_t timer;
    http_request_t *req;
    test_t *t;
    defer_kind_t kind;
} deferred_t;

static void on_hello(http_request_t *req, void *data)
{
    test_t *t = data;
    t->handled++;
    http_respond(req, 200, "text/plain", "hello world\n", 12);
}

static void on_echo(http_request_t *req, void *data)
{
    test_t *t = data;
    t->handled++;
    http_respond(req, 200, "application/octet-stream", http_request_body(req),
                 http_request_body_len(req));
}

static void on_query(http_request_t *req, void *data)
{
    char name[64], other[64], body[512];
    int rc = http_request_query_param(req, "name", name, sizeof name);
    int missing = http_request_query_param(req, "nope", other, sizeof other);
    const char *hdr = http_request_header(req, "x-TEST-header");
    int n = snprintf(body, sizeof body, "path=%s query=%s name=%s rc=%d missing=%d hdr=%s",
                     http_request_path(req), http_request_query(req), rc >= 0 ? name : "-", rc,
                     missing, hdr ? hdr : "(null)");
    http_respond(req, 200, "text/plain", body, (size_t)n);
}

static void on_redirect(http_request_t *req, void *data)
{
    http_header_t headers[] = {{"Location", "/hello"}, {"Cache-Control", "no-store"}};
    http_respond_headers(req, 302, "text/plain", headers, 2, "moved\n", 6);
}

static void on_static(http_request_t *req, void *data)
{
    const char *path = http_request_path(req);
    http_respond(req, 200, "text/plain", path, strlen(path));
}

#define BIG_BODY (200 * 1024)

static void on_big(http_request_t *req, void *data)
{
    test_t *t = data;
    t->handled++;
    if (!t->big_body) {
        t->big_body = malloc(BIG_BODY);
        assert_non_null(t->big_body);
        for (size_t i = 0; i < BIG_BODY; i++)
            t->big_body[i] = (char)('a' + i % 26);
    }
    http_respond(req, 200, "application/octet-stream", t->big_body, BIG_BODY);
}

static void echo_on_data(http_raw_t *self, const char *buf, size_t len);
static void echo_on_drain(http_raw_t *self);
static void echo_on_tick(http_raw_t *self, uint64_t now_ms);
static void echo_on_shutdown(http_raw_t *self);
static void echo_on_close(http_raw_t *self, int status);

static const http_raw_ops_t echo_ops = {
    .on_data = echo_on_data,
    .on_drain = echo_on_drain,
    .on_tick = echo_on_tick,
    .on_shutdown = echo_on_shutdown,
    .on_close = echo_on_close,
};

typedef struct {
    http_raw_t raw;
    test_t *t;
} echo_t;

static const char switching[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\n"
                                "Connection: Upgrade\r\n\r\n";

/* Takes the connection over; an echo that closes gracefully on '!'. */
static void upgrade_to_echo(test_t *t, http_request_t *req)
{
    echo_t *e = calloc(1, sizeof *e);
    assert_non_null(e);
    e->t = t;
    e->raw.ops = &echo_ops;
    int rc = http_request_upgrade(req, &e->raw);
    if (rc < 0) {
        free(e);
        http_respond(req, 500, "text/plain", "upgrade failed\n", 15);
        return;
    }
    assert_int_equal(http_raw_write(&e->raw, switching, sizeof switching - 1), 0);
}

#define FLOOD_CHUNK (64 * 1024)

/* '#' floods the client with FLOOD_CHUNK pieces until the buffer cap refuses one. */
static void echo_flood(test_t *t, http_raw_t *self)
{
    static char chunk[FLOOD_CHUNK];
    memset(chunk, 'f', sizeof chunk);
    int rc;
    while ((rc = http_raw_write(self, chunk, sizeof chunk)) == 0)
        t->flood_bytes += sizeof chunk;
    t->flood_rc = rc;
    t->flooding = true;
}

static void echo_on_data(http_raw_t *self, const char *buf, size_t len)
{
    if (memchr(buf, '#', len)) {
        echo_flood(container_of(self, echo_t, raw)->t, self);
        return;
    }
    assert_int_equal(http_raw_write(self, buf, len), 0);
    assert_true(http_raw_buffered(self) >= len);
    if (memchr(buf, '!', len))
        http_raw_close(self);
}

static void echo_on_drain(http_raw_t *self)
{
    test_t *t = container_of(self, echo_t, raw)->t;
    t->raw_drains++;
    if (t->flooding) {
        t->flooding = false;
        assert_int_equal(http_raw_buffered(self), 0);
        http_raw_write(self, "DONE", 4);
    }
}

static void echo_on_tick(http_raw_t *self, uint64_t now_ms)
{
    test_t *t = container_of(self, echo_t, raw)->t;
    if (t->flooding && http_raw_buffered(self) > t->max_buffered)
        t->max_buffered = http_raw_buffered(self);
    if (++t->ticks == 3 && t->tick_write)
        http_raw_write(self, "TICK", 4);
}

static void echo_on_shutdown(http_raw_t *self)
{
    http_raw_write(self, "BYE", 3);
    http_raw_close(self);
    assert_int_equal(http_raw_write(self, "late", 4), UV_ENOTCONN);
}

static void echo_on_close(http_raw_t *self, int status)
{
    echo_t *e = container_of(self, echo_t, raw);
    e->t->raw_closes++;
    e->t->raw_close_status = status;
    assert_null(self->conn);
    free(e);
}

static void on_deferred_closed(uv_handle_t *handle)
{
    free(container_of(handle, deferred_t, timer));
}

static void on_deferred(uv_timer_t *timer)
{
    deferred_t *d = container_of(timer, deferred_t, timer);
    if (d->kind == DEFER_UPGRADE) {
        upgrade_to_echo(d->t, d->req);
    } else {
        d->t->deferred_rc = http_respond(d->req, 200, "text/plain", "async\n", 6);
    }
    d->t->deferred_done++;
    uv_close((uv_handle_t *)timer, on_deferred_closed);
}

static void defer(test_t *t, http_request_t *req, uint64_t ms, defer_kind_t kind)
{
    deferred_t *d = calloc(1, sizeof *d);
    assert_non_null(d);
    d->req = req;
    d->t = t;
    d->kind = kind;
    uv_timer_init(&t->loop, &d->timer);
    uv_timer_start(&d->timer, on_deferred, ms, 0);
}

static void on_async(http_request_t *req, void *data)
{
    defer(data, req, 50, DEFER_RESPOND);
}

static void on_slow(http_request_t *req, void *data)
{
    defer(data, req, 300, DEFER_RESPOND);
}

static void on_ws(http_request_t *req, void *data)
{
    test_t *t = data;
    char v[8];
    if (!http_request_is_upgrade(req)) {
        http_header_t h = {"Upgrade", "echo"};
        http_respond_headers(req, 426, "text/plain", &h, 1, "upgrade required\n", 17);
    } else if (http_request_query_param(req, "refuse", v, sizeof v) >= 0) {
        http_respond(req, 403, "text/plain", "no\n", 3);
    } else if (http_request_query_param(req, "async", v, sizeof v) >= 0) {
        defer(t, req, 30, DEFER_UPGRADE);
    } else {
        upgrade_to_echo(t, req);
    }
}

static void add_routes(test_t *t)
{
    http_server_t *s = t->srv;
    assert_int_equal(http_server_route(s, "GET", "/hello", 0, on_hello, t), 0);
    assert_int_equal(http_server_route(s, "POST", "/echo", 0, on_echo, t), 0);
    assert_int_equal(http_server_route(s, "GET", "/async", 0, on_async, t), 0);
    assert_int_equal(http_server_route(s, "GET", "/slow", 0, on_slow, t), 0);
    assert_int_equal(http_server_route(s, "GET", "/query", 0, on_query, t), 0);
    assert_int_equal(http_server_route(s, "GET", "/redirect", 0, on_redirect, t), 0);
    assert_int_equal(http_server_route(s, "GET", "/static/", HTTP_ROUTE_PREFIX, on_static, t),
                     0);
    assert_int_equal(http_server_route(s, "GET", "/ws", HTTP_ROUTE_UPGRADE, on_ws, t), 0);
    assert_int_equal(http_server_route(s, "GET", "/big", 0, on_big, t), 0);
    assert_int_equal(http_server_route(s, "GET", "/hello", 0, on_hello, t), UV_EEXIST);
    assert_int_equal(http_server_route(s, "FETCH", "/x", 0, on_hello, t), UV_EINVAL);
    assert_int_equal(http_server_route(s, "GET", "relative", 0, on_hello, t), UV_EINVAL);
}

/* ------------------------------------------------------------------------------------------
 * Client side (client thread): HTTP responses read over the blocking client of test_socket.h
 * ---------------------------------------------------------------------------------------- */

/* Reads one response (headers, then Content-Length bytes unless head or 1xx/204/304) into
 * out (NUL-terminated). Returns its length, or -1 when the connection ended first. */
static ssize_t client_response(test_client_t *cl, char *out, size_t cap, bool head)
{
    for (;;) {
        char *end = memmem(cl->buf, cl->len, "\r\n\r\n", 4);
        if (end) {
            size_t hlen = (size_t)(end - cl->buf) + 4;
            size_t body = 0;
            /* The buffer is not NUL-terminated: parse the head from a terminated copy. */
            char head_text[8192];
            size_t copy = hlen < sizeof head_text ? hlen : sizeof head_text - 1;
            memcpy(head_text, cl->buf, copy);
            head_text[copy] = '\0';
            int status = copy > 9 ? atoi(head_text + 9) : 0;
            char *cl_hdr = strcasestr(head_text, "\r\ncontent-length:");
            if (cl_hdr && !head && status >= 200 && status != 204 && status != 304)
                body = (size_t)strtoul(cl_hdr + 17, NULL, 10);
            while (cl->len < hlen + body)
                if (test_client_fill(cl) <= 0)
                    return -1;
            if (hlen + body >= cap)
                return -1;
            test_client_take(cl, out, hlen + body);
            return (ssize_t)(hlen + body);
        }
        if (test_client_fill(cl) <= 0)
            return -1;
    }
}

static bool has(const char *resp, const char *needle)
{
    return strstr(resp, needle) != NULL;
}

static const char *body_of(const char *resp)
{
    const char *p = strstr(resp, "\r\n\r\n");
    return p ? p + 4 : "";
}

/* One request on a fresh connection; the response into resp[i], EOF seen into eof[i]. */
static void one_request(test_t *t, int i, const char *request, bool head, bool wait_eof)
{
    test_client_t *cl = test_client_open(t->port, 0);
    test_client_send_str(cl, request);
    t->resp_len[i] = client_response(cl, t->resp[i], RESP_CAP, head);
    if (wait_eof)
        t->eof[i] = test_client_wait_eof(cl);
    test_client_close(cl);
}

/* ------------------------------------------------------------------------------------------
 * Basic requests
 * ---------------------------------------------------------------------------------------- */

static void client_get_hello(test_t *t)
{
    one_request(t, 0, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", false, false);
}

static void get_returns_200_with_body(void **state)
{
    test_t *t = test_new();
    run(t, (http_server_options_t){0}, client_get_hello);
    assert_true(t->resp_len[0] > 0);
    assert_true(has(t->resp[0], "HTTP/1.1 200 OK\r\n"));
    assert_true(has(t->resp[0], "\r\nServer: integral\r\n"));
    assert_true(has(t->resp[0], "\r\nDate: "));
    assert_true(has(t->resp[0], "\r\nContent-Type: text/plain\r\n"));
    assert_true(has(t->resp[0], "\r\nContent-Length: 12\r\n"));
    assert_true(has(t->resp[0], "\r\nConnection: keep-alive\r\n"));
    assert_string_equal(body_of(t->resp[0]), "hello world\n");
    assert_int_equal(t->handled, 1);
    assert_int_equal(t->stats.responses, 1);
    test_destroy(t);
}

static void client_head_then_get(test_t *t)
{
    test_client_t *cl = test_client_open(t->port, 0);
    test_client_send_str(cl, "HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    t->resp_len[0] = client_response(cl, t->resp[0], RESP_CAP, true);
    /* If HEAD had sent a body, this response would start with it. */
    test_client_send_str(cl, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    t->resp_len[1] = client_response(cl, t->resp[1], RESP_CAP, false);
    test_client_close(cl);
}

static void head_returns_headers_only(void **state)
{
    test_t *t = test_new();
    run(t, (http_server_options_t){0}, client_head_then_get);
    assert_true(has(t->resp[0], "HTTP/1.1 200 OK\r\n"));
    assert_true(has(t->resp[0], "\r\nContent-Length: 12\r\n"));
    assert_string_equal(body_of(t->resp[0]), "");
    assert_true(has(t->resp[1], "HTTP/1.1 200 OK\r\n"));
    assert_string_equal(body_of(t->resp[1]), "hello world\n");
    test_destroy(t);
}

static void client_get_missing(test_t *t)
{
    one_request(t, 0, "GET /nope?x=1 HTTP/1.1\r\nHost: x\r\n\r\n", false, false);
}

static void unknown_path_returns_404(void **state)
{
    test_t *t = test_new();
    run(t, (http_server_options_t){0}, client_get_missing);
    assert_true(has(t->resp[0], "HTTP/1.1 404 Not Found\r\n"));
    assert_true(has(t->resp[0], "\r\nConnection: keep-alive\r\n"));
    assert_int_equal(t->handled, 0);
    test_destroy(t);
}

static void client_post_hello(test_t *t)
{
    one_request(t, 0, "POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab", false,
                false);
}

static void wrong_method_returns_405_with_allow(void **state)
{
    test_t *t = test_new();
    run(t, (http_server_options_t){0}, client_post_hello);
    assert_true(has(t->resp[0], "HTTP/1.1 405 Method Not Allowed\r\n"));
    assert_true(has(t->resp[0], "\r\nAllow: GET, HEAD\r\n"));
    assert_int_equal(t->handled, 0);
    test_destroy(t);
}

static void client_prefix(test_t *t)
{
    one_request(t, 0, "GET /static/css/a.css?v=2 HTTP/1.1\r\nHost: x\r\n\r\n", false, false);
    one_request(t, 1, "GET /static HTTP/1.1\r\nHost: x\r\n\r\n", false, false);
}

static void prefix_route_matches_subpaths(void **state)
{
    test_t *t = test_new();
    run(t, (http_server_options_t){0}, client_prefix);
    assert_true(has(t->resp[0], "HTTP/1.1 200 OK\r\n"));
    assert_string_equal(body_of(t->resp[0]), "/static/css/a.css");
    assert_true(has(t->resp[1], "HTTP/1.1 404 "));
    test_destroy(t);
}

static void client_query(test_t *t)
{
    one_request(t, 0,
                "GET /query?a=1&name=J%C3%B6rg+M%2B&b HTTP/1.1\r\nHost: x\r\n"
                "X-Test-Header: some value  \r\n\r\n",
                false, false);
    one_request(t, 1, "GET http://example.com/query?name=abs HTTP/1.1\r\nHost: x\r\n\r\n", false,
                false);
}

static void query_and_headers_are_readable(void **state)
{
    test_t *t = test_new();
    run(t, (http_server_options_t){0}, client_query);
    assert_string_equal(body_of(t->resp[0]),
                        "path=/query query=a=1&name=J%C3%B6rg+M%2B&b name=J\xc3\xb6rg M+ rc=8 "
                        "missing=-2 hdr=some value");
    assert_string_equal(body_of(t->resp[1]),
                        "path=/query query=name=abs name=abs rc=3 missing=-2 hdr=(null)");
    test_destroy(t);
}

static void client_redirect(test_t *t)
{
    one_request(t, 0, "GET /redirect HTTP/1.1\r\nHost: x\r\n\r\n", false, false);
}

static void extra_response_headers_are_sent(void **state)
{
    test_t *t = test_new();
    run(t, (http_server_options_t){0}, client_redirect);
    assert_true(has(t->resp[0], "HTTP/1.1 302 Found\r\n"));
    assert_true(has(t->resp[0], "\r\nLocation: /hello\r\n"));
    assert_true(has(t->resp[0], "\r\nCache-Control: no-store\r\n"));
    assert_true(has(t->resp[0], "\r\nContent-Length: 6\r\n"));
    assert_string_equal(body_of(t->resp[0]), "moved\n");
    test_destroy(t);
}

/* ------------------------------------------------------------------------------------------
 * Limits and malformed input
 * ---------------------------------------------------------------------------------------- */

static void client_garbage(test_t *t)
{
    one_request(t, 0, "\x01\x02 garbage here\r\n\r\n", false, true);
}

static void garbage_returns_400_and_closes(void **state)
{
    test_t *t = test_new();
    run(t, (http_server_options_t){0}, client_garbage);
    assert_true(has(t->resp[0], "HTTP/1.1 400 Bad Request\r\n"));
    assert_true(has(t->resp[0], "\r\nConnection: close\r\n"));
    assert_true(t->eof[0]);
    test_destroy(t);
}

static void client_big_headers(test_t *t)
{
    char *req = malloc(16384);
    size_t n = (size_t)sprintf(req, "GET /hello HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 10; i++) {
        n += (size_t)sprintf(req + n, "X-Filler-%d: ", i);
        memset(req + n, 'a', 900);
        n += 900;
        n += (size_t)sprintf(req + n, "\r\n");
    }
    sprintf(req + n, "\r\n");
    one_request(t, 0, req, false, true);
    free(req);
}

static void oversized_headers_return_431(void **state)
{
    test_t *t = test_new();
    run(t, (http_server_options_t){0}, client_big_headers);
    assert_true(has(t->resp[0], "HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    assert_true(has(t->resp[0], "\r\nConnection: close\r\n"));
    assert_true(t->eof[0]);
    assert_int_equal(t->handled, 0);
    test_destroy(t);
}

static void client_big_header_value(test_t *t)
{
    char req[4096];
    size_t n = (size_t)sprintf(req, "GET /hello HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ");
    memset(req + n, 'k', 1500);
    n += 1500;
    sprintf(req + n, "\r\n\r\n");
    one_request(t, 0, req, false, true);
}

static void oversized_header_value_returns_431(void **state)
{
    test_t *t = test_new();
    run(t, (http_server_options_t){.max_header_value = 1024}, client_big_header_value);
    assert_true(has(t->resp[0], "HTTP/1.1 431 "));
    assert_true(t->eof[0]);
    assert_int_equal(t->handled, 0);
    test_destroy(t);
}

static void client_long_urls(test_t *t)
{
    char *req = malloc(16384);
    for (int i = 0; i < 2; i++) {
        size_t len = i == 0 ? 3000 : 10000; /* over max_url; over the whole header limit */
        size_t n = (size_t)sprintf(req, "GET /hello?");
        memset(req + n, 'q', len);
        n += len;
        sprintf(req + n, " HTTP/1.1\r\nHost: x\r\n\r\n");
        one_request(t, i, req, false, true);
    }
    free(req);
}

static void long_url_returns_414(void **state)
{
    test_t *t = test_new();
    run(t, (http_server_options_t){0}, client_long_urls);
    for (int i = 0; i < 2; i++) {
        assert_true(has(t->resp[i], "HTTP/1.1 414 URI Too Long\r\n"));
        assert_true(t->eof[i]);
    }
    assert_int_equal(t->handled, 0);
    test_destroy(t);
}

static void client_big_body(test_t *t)
{
    test_client_t *cl = test_client_open(t->port, 0);
    size_t len = 100000;
    char *body = malloc(len);
    memset(body, 'b', len);
    test_client_send_str(cl, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
    /* The whole body, as a client that does not wait for an answer would: the server must
     * drain it instead of resetting the connection and losing the 413. */
    test_client_send(cl, body, len);
    t->resp_len[0] = client_response(cl, t->resp[0], RESP_CAP, false);
    t->eof[0] = test_client_wait_eof(cl);
    test_client_close(cl);
    free(body);
}

static void big_body_returns_413(void **state)
{
    test_t *t = test_new();
    run(t, (http_server_options_t){0}, client_big_body);
    assert_true(has(t->resp[0], "HTTP/1.1 413 Payload Too Large\r\n"));
    assert_true(has(t->resp[0], "\r\nConnection: close\r\n"));
    assert_true(t->eof[0]);
    assert_int_equal(t->handled, 0);
    test_destroy(t);
}

static void client_big_chunked_body(test_t *t)
{
    test_client_t *cl = test_client_open(t->port, 0);
    test_client_send_str(cl,
                         "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    char chunk[4200];
    int n = sprintf(chunk, "1000\r\n");
    memset(chunk + n, 'c', 4096);
    memcpy(chunk + n + 4096, "\r\n", 2);
    for (int i = 0; i < 3; i++) /* 12 KiB against max_body 10 KiB */
        if (!test_client_send(cl, chunk, (size_t)n + 4096 + 2))
            break;
    t->resp_len[0] = client_response(cl, t->resp[0], RESP_CAP, false);
    t->eof[0] = test_client_wait_eof(cl);
    test_client_close(cl);
}

static void chunked_body_over_limit_returns_413(void **state)
{
    test_t *t = test_new();
    run(t, (http_server_options_t){.max_body = 10240}, client_big_chunked_body);
    assert_true(has(t->resp[0], "HTTP/1.1 413 "));
    assert_true(t->eof[0]);
    assert_int_equal(t->handled, 0);
    test_destroy(t);
}

/* ------------------------------------------------------------------------------------------
 * Bodies
 * ---------------------------------------------------------------------------------------- */

static void fill_big(test_t *t, size_t len)
{
    t->big = malloc(len);
    t->big_len = len;
    unsigned x = 12345;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        t->big[i] = (char)(x >> 16); /* binary, NULs included */
    }
}

static void client_post_big(test_t *t)
{
    test_client_t *cl = test_client_open(t->port, 0);
    char head[128];
    snprintf(head, sizeof head, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n",
             t->big_len);
    test_client_send_str(cl, head);
    test_client_send(cl, t->big, t->big_len);
    t->resp_len[0] = client_response(cl, t->resp[0], RESP_CAP, false);
    test_client_close(cl);
}

static void post_body_is_received_intact(void **state)
{
    test_t *t = test_new();
    fill_big(t, 60000);
    run(t, (http_server_options_t){0}, client_post_big);
    assert_true(has(t->resp[0], "HTTP/1.1 200 OK\r\n"));
    assert_true(has(t->resp[0], "\r\nContent-Length: 60000\r\n"));
    const char *body = strstr(t->resp[0], "\r\n\r\n") + 4;
    assert_int_equal(t->resp_len[0] - (body - t->resp[0]), 60000);
    assert_memory_equal(body, t->big, 60000);
    test_destroy(t);
}

static void client_post_chunked(test_t *t)
{
    test_client_t *cl = test_client_open(t->port, 0);
    test_client_send_str(cl, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "5\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: yes\r\n\r\n");
    t->resp_len[0] = client_response(cl, t->resp[0], RESP_CAP, false);
    test_client_close(cl);
}

static void chunked_post_body_is_received_intact(void **state)
{
    test_t *t = test_new();
    run(t, (http_server_options_t){0}, client_post_chunked);
    assert_true(has(t->resp[0], "\r\nContent-Length: 12\r\n"));
    assert_string_equal(body_of(t->resp[0]), "hello, world");
    test_destroy(t);
}

static void client_expect_continue(test_t *t)
{
    test_client_t *cl = test_client_open(t->port, 0);
    test_client_send_str(cl, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                             "Expect: 100-continue\r\n\r\n");
    t->resp_len[0] = client_response(cl, t->resp[0], RESP_CAP, false);
    test_client_send_str(cl, "data");
    t->resp_len[1] = client_response(cl, t->resp[1], RESP_CAP, false);
    test_client_close(cl);
}

static void expect_100_continue_gets_interim_response(void **state)
{
    test_t *t = test_new();
    run(t, (http_server_options_t){0}, client_expect_continue);
    assert_string_equal(t->resp[0], "HTTP/1.1 100 Continue\r\n\r\n");
    assert_true(has(t->resp[1], "HTTP/1.1 200 OK\r\n"));
    assert_string_equal(body_of(t->resp[1]), "data");
    test_destroy(t);
}

/* ------------------------------------------------------------------------------------------
 * Connections: keep-alive, pipelining, HTTP/1.0, slow clients
 * ---------------------------------------------------------------------------------------- */

static void client_keep_alive(test_t *t)
{
    test_client_t *cl = test_client_open(t->port, 0);
    for (int i = 0; i < 2; i++) {
        test_client_send_str(cl, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
        t->resp_len[i] = client_response(cl, t->resp[i], RESP_CAP, false);
    }
    test_client_close(cl);
}

static void keep_alive_serves_two_requests_on_one_connection(void **state)
{
    test_t *t = test_new();
    run(t, (http_server_options_t){0}, client_keep_alive);
    for (int i = 0; i < 2; i++) {
        assert_true(has(t->resp[i], "HTTP/1.1 200 OK\r\n"));
        assert_string_equal(body_of(t->resp[i]), "hello world\n");
    }
    assert_int_equal(t->handled, 2);
    test_destroy(t);
}

static void client_pipelined(test_t *t)
{
    test_client_t *cl = test_client_open(t->port, 0);
    test_client_send_str(cl, "GET /static/one HTTP/1.1\r\nHost: x\r\n\r\n"
                             "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
                             "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nthree"
                             "GET /static/four HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    for (int i = 0; i < 4; i++)
        t->resp_len[i] = client_response(cl, t->resp[i], RESP_CAP, false);
    t->eof[0] = test_client_wait_eof(cl);
    test_client_close(cl);
}

static void pipelined_requests_are_answered_in_order(void **state)
{
    test_t *t = test_new();
    run(t, (http_server_options_t){0}, client_pipelined);
    assert_string_equal(body_of(t->resp[0]), "/static/one");
    assert_string_equal(body_of(t->resp[1]), "hello world\n");
    assert_string_equal(body_of(t->resp[2]), "three");
    assert_string_equal(body_of(t->resp[3]), "/static/four");
    assert_true(has(t->resp[3], "\r\nConnection: close\r\n"));
    assert_true(t->eof[0]);
    test_destroy(t);
}

#define FLOOD_REQUESTS 24

static void client_pipelined_flood(test_t *t)
{
    test_client_t *cl = test_client_open(t->port, 0);
    char req[FLOOD_REQUESTS * 64];
    size_t n = 0;
    for (int i = 0; i < FLOOD_REQUESTS; i++)
        n += (size_t)sprintf(req + n, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    test_client_send(cl, req, n);
    usleep(300000); /* not reading: the server must stop at its high-water mark */
    char *resp = malloc(RESP_CAP * 2);
    int good = 0;
    for (int i = 0; i < FLOOD_REQUESTS; i++) {
        ssize_t len = client_response(cl, resp, RESP_CAP * 2, false);
        const char *body = len > 0 ? strstr(resp, "\r\n\r\n") + 4 : NULL;
        if (body && len - (body - resp) == BIG_BODY && body[0] == 'a' &&
            body[BIG_BODY - 1] == (char)('a' + (BIG_BODY - 1) % 26))
            good++;
    }
    t->resp_len[0] = good;
    free(resp);
    test_client_close(cl);
}

static void pipelined_flood_is_answered_in_order_under_backpressure(void **state)
{
    test_t *t = test_new();
    run(t, (http_server_options_t){0}, client_pipelined_flood);
    assert_int_equal(t->resp_len[0], FLOOD_REQUESTS);
    assert_int_equal(t->handled, FLOOD_REQUESTS);
    test_destroy(t);
}

static void client_http10(test_t *t)
{
    one_request(t, 0, "GET /hello HTTP/1.0\r\n\r\n", false, true);
    one_request(t, 1, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", false, true);
}

static void http10_gets_connection_close(void **state)
{
    test_t *t = test_new();
    run(t, (http_server_options_t){0}, client_http10);
    for (int i = 0; i < 2; i++) {
        assert_true(has(t->resp[i], "HTTP/1.1 200 OK\r\n"));
        assert_true(has(t->resp[i], "\r\nConnection: close\r\n"));
        assert_string_equal(body_of(t->resp[i]), "hello world\n");
        assert_true(t->eof[i]);
    }
    test_destroy(t);
}

static void client_one_byte_at_a_time(test_t *t)
{
    static const char req[] = "POST /echo?x=1 HTTP/1.1\r\nHost: localhost\r\n"
                              "X-Long-Header-Name: some longer value\r\n"
                              "Content-Length: 11\r\n\r\nhello bytes";
    test_client_t *cl = test_client_open(t->port, 0);
    for (size_t i = 0; i < sizeof req - 1; i++) {
        test_client_send(cl, req + i, 1);
        usleep(1000);
    }
    t->resp_len[0] = client_response(cl, t->resp[0], RESP_CAP, false);
    test_client_close(cl);
}

static void request_sent_one_byte_at_a_time_works(void **state)
{
    test_t *t = test_new();
    run(t, (http_server_options_t){0}, client_one_byte_at_a_time);
    assert_true(has(t->resp[0], "HTTP/1.1 200 OK\r\n"));
    assert_string_equal(body_of(t->resp[0]), "hello bytes");
    test_destroy(t);
}

static void client_idle(test_t *t)
{
    test_client_t *cl = test_client_open(t->port, 0);
    test_client_send_str(cl, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    t->resp_len[0] = client_response(cl, t->resp[0], RESP_CAP, false);
    uint64_t start = test_now_ms();
    t->eof[0] = test_client_wait_eof(cl);
    t->elapsed_ms = test_now_ms() - start;
    test_client_close(cl);
}

static void idle_keep_alive_connection_is_closed(void **state)
{
    test_t *t = test_new();
    run(t, (http_server_options_t){.idle_timeout_ms = 150, .tick_ms = 20}, client_idle);
    assert_true(has(t->resp[0], "HTTP/1.1 200 OK\r\n"));
    assert_true(t->eof[0]);
    assert_in_range(t->elapsed_ms, 100, 2000);
    assert_int_equal(t->stats.timeouts, 1);
    test_destroy(t);
}

static void client_slowloris(test_t *t)
{
    test_client_t *cl = test_client_open(t->port, 0);
    test_client_send_str(cl, "GET /hello HTTP/1.1\r\nHost: x\r\n");
    uint64_t start = test_now_ms();
    t->resp_len[0] = client_response(cl, t->resp[0], RESP_CAP, false);
    t->eof[0] = test_client_wait_eof(cl);
    t->elapsed_ms = test_now_ms() - start;
    test_client_close(cl);
    /* A connection that never sends anything is closed too, silently. */
    cl = test_client_open(t->port, 0);
    t->eof[1] = test_client_wait_eof(cl);
    t->resp_len[1] = (ssize_t)cl->len;
    test_client_close(cl);
}

static void incomplete_request_times_out_with_408(void **state)
{
    test_t *t = test_new();
    run(t, (http_server_options_t){.request_timeout_ms = 150, .tick_ms = 20}, client_slowloris);
    assert_true(has(t->resp[0], "HTTP/1.1 408 Request Timeout\r\n"));
    assert_true(has(t->resp[0], "\r\nConnection: close\r\n"));
    assert_true(t->eof[0]);
    assert_in_range(t->elapsed_ms, 100, 2000);
    assert_true(t->eof[1]);
    assert_int_equal(t->resp_len[1], 0);
    assert_int_equal(t->stats.timeouts, 2);
    test_destroy(t);
}

static void client_over_max(test_t *t)
{
    test_client_t *a = test_client_open(t->port, 0), *b = test_client_open(t->port, 0);
    test_client_send_str(a, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    t->resp_len[0] = client_response(a, t->resp[0], RESP_CAP, false);
    test_client_send_str(b, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    t->resp_len[1] = client_response(b, t->resp[1], RESP_CAP, false);
    test_client_t *c = test_client_open(t->port, 0);
    t->eof[2] = test_client_wait_eof(c);
    t->resp_len[2] = (ssize_t)c->len;
    test_client_close(c);
    test_client_close(b);
    test_client_close(a);
}

static void connections_over_max_are_rejected(void **state)
{
    test_t *t = test_new();
    run(t, (http_server_options_t){.max_connections = 2}, client_over_max);
    assert_true(has(t->resp[0], "HTTP/1.1 200 OK\r\n"));
    assert_true(has(t->resp[1], "HTTP/1.1 200 OK\r\n"));
    assert_true(t->eof[2]);
    assert_int_equal(t->resp_len[2], 0);
    assert_int_equal(t->stats.rejected, 1);
    test_destroy(t);
}

/* ------------------------------------------------------------------------------------------
 * Asynchronous responses
 * ---------------------------------------------------------------------------------------- */

static void client_async_pipelined(test_t *t)
{
    test_client_t *cl = test_client_open(t->port, 0);
    test_client_send_str(cl, "GET /async HTTP/1.1\r\nHost: x\r\n\r\n"
                             "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    for (int i = 0; i < 2; i++)
        t->resp_len[i] = client_response(cl, t->resp[i], RESP_CAP, false);
    test_client_close(cl);
}

static void async_response_precedes_pipelined_request(void **state)
{
    test_t *t = test_new();
    run(t, (http_server_options_t){0}, client_async_pipelined);
    assert_string_equal(body_of(t->resp[0]), "async\n");
    assert_true(has(t->resp[0], "\r\nConnection: keep-alive\r\n"));
    assert_string_equal(body_of(t->resp[1]), "hello world\n");
    assert_int_equal(t->deferred_done, 1);
    assert_int_equal(t->deferred_rc, 0);
    test_destroy(t);
}

static void client_reset_during_async(test_t *t)
{
    test_client_t *cl = test_client_open(t->port, 0);
    test_client_send_str(cl, "GET /async HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\n\r\n");
    usleep(10000); /* the request is being handled */
    test_client_reset(cl);
    cl = test_client_open(t->port, 0);
    test_client_send_str(cl, "GET /async HTTP/1.1\r\nHost: x\r\n\r\n");
    usleep(10000);
    test_client_close(cl); /* FIN this time */
    usleep(200000);   /* both answers are due meanwhile */
}

static void client_gone_while_async_response_pending_is_safe(void **state)
{
    test_t *t = test_new();
    run(t, (http_server_options_t){0}, client_reset_during_async);
    assert_int_equal(t->deferred_done, 2);
    assert_int_equal(t->handled, 0); /* the pipelined /hello was never parsed */
    assert_int_equal(t->stats.connections, 0);
    test_destroy(t);
}

static void close_on_phase(test_t *t, int phase)
{
    close_server(t);
}

static void client_slow_then_close(test_t *t)
{
    test_client_t *cl = test_client_open(t->port, 0);
    test_client_send_str(cl, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    usleep(20000);
    client_signal(t); /* the server closes; its deadline passes before /slow answers */
    t->eof[0] = test_client_wait_eof(cl);
    t->resp_len[0] = (ssize_t)cl->len;
    test_client_close(cl);
}

static void forced_close_orphans_pending_request(void **state)
{
    test_t *t = test_new();
    t->on_phase = close_on_phase;
    run(t, (http_server_options_t){.shutdown_timeout_ms = 50, .tick_ms = 10},
        client_slow_then_close);
    assert_true(t->eof[0]);
    assert_int_equal(t->resp_len[0], 0);
    assert_int_equal(t->deferred_done, 1); /* uv_run waited for the handler's timer */
    assert_int_equal(t->deferred_rc, UV_ENOTCONN);
    test_destroy(t);
}

static void client_async_then_close(test_t *t)
{
    test_client_t *cl = test_client_open(t->port, 0);
    test_client_send_str(cl, "GET /async HTTP/1.1\r\nHost: x\r\n\r\n");
    usleep(10000);
    client_signal(t); /* server close while the answer is pending */
    t->resp_len[0] = client_response(cl, t->resp[0], RESP_CAP, false);
    t->eof[0] = test_client_wait_eof(cl);
    test_client_close(cl);
}

static void server_close_lets_pending_response_finish(void **state)
{
    test_t *t = test_new();
    t->on_phase = close_on_phase;
    run(t, (http_server_options_t){0}, client_async_then_close);
    assert_true(has(t->resp[0], "HTTP/1.1 200 OK\r\n"));
    assert_true(has(t->resp[0], "\r\nConnection: close\r\n"));
    assert_string_equal(body_of(t->resp[0]), "async\n");
    assert_true(t->eof[0]);
    assert_int_equal(t->deferred_rc, 0);
    test_destroy(t);
}

/* ------------------------------------------------------------------------------------------
 * Upgrade and raw mode
 * ---------------------------------------------------------------------------------------- */

#define UPGRADE_REQUEST(target)                                                                \
    "GET " target " HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: keep-alive, Upgrade\r\n\r\n"

static void client_upgrade_echo(test_t *t)
{
    test_client_t *cl = test_client_open(t->port, 0);
    test_client_send_str(cl, UPGRADE_REQUEST("/ws") "PING1"); /* data in the same packet */
    t->resp_len[0] = client_response(cl, t->resp[0], RESP_CAP, false);
    t->raw_len = test_client_read_exact(cl, t->raw_in, 5);
    test_client_send_str(cl, "PING2");
    if (test_client_read_exact(cl, t->raw_in + 5, 5) < 0)
        t->raw_len = -1;
    test_client_close(cl);
}

static void upgrade_delivers_same_packet_bytes_and_echoes(void **state)
{
    test_t *t = test_new();
    run(t, (http_server_options_t){0}, client_upgrade_echo);
    assert_string_equal(t->resp[0], switching);
    assert_int_equal(t->raw_len, 5);
    assert_string_equal(t->raw_in, "PING1PING2");
    assert_int_equal(t->raw_closes, 1);
    assert_int_equal(t->raw_close_status, UV_EOF); /* the client closed first */
    assert_true(t->raw_drains >= 1);
    test_destroy(t);
}

static void client_async_upgrade(test_t *t)
{
    test_client_t *cl = test_client_open(t->port, 0);
    test_client_send_str(cl, UPGRADE_REQUEST("/ws?async=1") "EARLY");
    t->resp_len[0] = client_response(cl, t->resp[0], RESP_CAP, false);
    t->raw_len = test_client_read_exact(cl, t->raw_in, 5);
    test_client_close(cl);
}

static void async_upgrade_delivers_stashed_bytes(void **state)
{
    test_t *t = test_new();
    run(t, (http_server_options_t){0}, client_async_upgrade);
    assert_string_equal(t->resp[0], switching);
    assert_string_equal(t->raw_in, "EARLY");
    assert_int_equal(t->raw_closes, 1);
    test_destroy(t);
}

static void client_refused_upgrades(test_t *t)
{
    one_request(t, 0, UPGRADE_REQUEST("/ws?refuse=1") "JUNK", false, true);
    one_request(t, 1, UPGRADE_REQUEST("/hello") "JUNK", false, true);
    one_request(t, 2, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\n\r\n", false, false);
}

static void refused_upgrade_is_answered_and_closed(void **state)
{
    test_t *t = test_new();
    run(t, (http_server_options_t){0}, client_refused_upgrades);
    assert_true(has(t->resp[0], "HTTP/1.1 403 Forbidden\r\n"));
    assert_true(has(t->resp[0], "\r\nConnection: close\r\n"));
    assert_true(t->eof[0]);
    /* An upgrade to a plain route is served as plain HTTP, then closed: the rest of the
     * stream is not HTTP. */
    assert_true(has(t->resp[1], "HTTP/1.1 200 OK\r\n"));
    assert_true(has(t->resp[1], "\r\nConnection: close\r\n"));
    assert_true(t->eof[1]);
    /* Upgrade without "Connection: upgrade" is no upgrade request. */
    assert_true(has(t->resp[2], "HTTP/1.1 426 Upgrade Required\r\n"));
    assert_int_equal(t->raw_closes, 0);
    test_destroy(t);
}

static void client_raw_close(test_t *t)
{
    test_client_t *cl = test_client_open(t->port, 0);
    test_client_send_str(cl, UPGRADE_REQUEST("/ws"));
    t->resp_len[0] = client_response(cl, t->resp[0], RESP_CAP, false);
    test_client_send_str(cl, "last words!"); /* '!' makes the echo close */
    t->eof[0] = test_client_wait_eof(cl);
    t->raw_len = (ssize_t)cl->len;
    memcpy(t->raw_in, cl->buf, cl->len < sizeof t->raw_in ? cl->len : sizeof t->raw_in - 1);
    test_client_close(cl);
}

static void raw_close_is_graceful(void **state)
{
    test_t *t = test_new();
    run(t, (http_server_options_t){0}, client_raw_close);
    assert_string_equal(t->resp[0], switching);
    assert_true(t->eof[0]);
    assert_string_equal(t->raw_in, "last words!"); /* written before the FIN */
    assert_int_equal(t->raw_closes, 1);
    assert_int_equal(t->raw_close_status, 0);
    test_destroy(t);
}

static void client_ticks(test_t *t)
{
    test_client_t *cl = test_client_open(t->port, 0);
    test_client_send_str(cl, UPGRADE_REQUEST("/ws"));
    t->resp_len[0] = client_response(cl, t->resp[0], RESP_CAP, false);
    t->raw_len = test_client_read_exact(cl, t->raw_in, 4);
    test_client_close(cl);
}

static void raw_connection_gets_ticks(void **state)
{
    test_t *t = test_new();
    t->tick_write = true;
    run(t, (http_server_options_t){.tick_ms = 20}, client_ticks);
    assert_string_equal(t->raw_in, "TICK");
    assert_true(t->ticks >= 3);
    test_destroy(t);
}

static void client_raw_flood(test_t *t)
{
    test_client_t *cl = test_client_open(t->port, 32 * 1024);
    test_client_send_str(cl, UPGRADE_REQUEST("/ws"));
    t->resp_len[0] = client_response(cl, t->resp[0], RESP_CAP, false);
    test_client_send_str(cl, "#");
    usleep(300000); /* not reading: the server's buffer must show the backlog */
    size_t total = cl->len;
    char tail[4] = {0};
    if (cl->len >= 4)
        memcpy(tail, cl->buf + cl->len - 4, 4);
    cl->len = 0;
    for (;;) {
        ssize_t n = test_client_fill(cl);
        if (n <= 0)
            break;
        total += (size_t)n;
        if (cl->len >= 4)
            memcpy(tail, cl->buf + cl->len - 4, 4);
        cl->len = 0;
        if (memcmp(tail, "DONE", 4) == 0)
            break;
    }
    t->raw_len = (ssize_t)total;
    memcpy(t->raw_in, tail, 4);
    test_client_close(cl);
}

static void raw_backpressure_is_bounded_visible_and_drains(void **state)
{
    test_t *t = test_new();
    /* More than the kernel's socket buffers can take (tcp_wmem max is 4 MiB). */
    size_t cap = 12u << 20;
    run(t, (http_server_options_t){.tick_ms = 20, .max_raw_buffered = cap}, client_raw_flood);
    assert_int_equal(t->flood_rc, UV_ENOBUFS);
    assert_int_equal(t->flood_bytes, cap);         /* the cap, to the byte */
    assert_true(t->max_buffered > (4u << 20));     /* backlog visible while the client stalls */
    assert_int_equal(t->raw_len, cap + 4);
    assert_memory_equal(t->raw_in, "DONE", 4); /* on_drain came after everything left */
    test_destroy(t);
}

static void client_open_connections_then_close(test_t *t)
{
    test_client_t *plain = test_client_open(t->port, 0), *raw = test_client_open(t->port, 0);
    test_client_send_str(plain, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    t->resp_len[0] = client_response(plain, t->resp[0], RESP_CAP, false);
    test_client_send_str(raw, UPGRADE_REQUEST("/ws"));
    t->resp_len[1] = client_response(raw, t->resp[1], RESP_CAP, false);
    client_signal(t); /* server close with an idle keep-alive and a raw connection open */
    t->eof[0] = test_client_wait_eof(plain);
    t->eof[1] = test_client_wait_eof(raw);
    memcpy(t->raw_in, raw->buf, raw->len < sizeof t->raw_in ? raw->len : sizeof t->raw_in - 1);
    test_client_close(raw);
    test_client_close(plain);
}

static void server_close_closes_open_connections(void **state)
{
    test_t *t = test_new();
    t->on_phase = close_on_phase;
    run(t, (http_server_options_t){0}, client_open_connections_then_close);
    assert_true(has(t->resp[0], "HTTP/1.1 200 OK\r\n"));
    assert_string_equal(t->resp[1], switching);
    assert_true(t->eof[0]);
    assert_true(t->eof[1]);
    assert_string_equal(t->raw_in, "BYE"); /* on_shutdown said goodbye before the FIN */
    assert_int_equal(t->raw_closes, 1);
    assert_int_equal(t->raw_close_status, 0);
    test_destroy(t);
}

/* ------------------------------------------------------------------------------------------
 * Metrics
 * ---------------------------------------------------------------------------------------- */

static void client_for_metrics(test_t *t)
{
    test_client_t *cl = test_client_open(t->port, 0);
    test_client_send_str(
        cl, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
            "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    for (int i = 0; i < 3; i++)
        t->resp_len[i] = client_response(cl, t->resp[i], RESP_CAP, false);
    test_client_t *extra = test_client_open(t->port, 0); /* over max_connections */
    t->eof[0] = test_client_wait_eof(extra);
    test_client_close(extra);
    test_client_close(cl);
}

static void metrics_count_responses_and_connections(void **state)
{
    test_t *t = test_new();
    t->metrics = metrics_new();
    assert_non_null(t->metrics);
    run(t, (http_server_options_t){.max_connections = 1}, client_for_metrics);
    metrics_t *m = t->metrics;
    const char *name = "integral_http_requests_total";
    assert_int_equal(metrics_counter_value(metrics_counter(m, name, NULL, "code=\"200\"")), 2);
    assert_int_equal(metrics_counter_value(metrics_counter(m, name, NULL, "code=\"404\"")), 1);
    assert_int_equal(metrics_counter_value(metrics_counter(
                         m, "integral_http_rejected_connections_total", NULL, NULL)),
                     1);
    assert_true(metrics_gauge_value(metrics_gauge(m, "integral_http_connections", NULL, NULL)) ==
                0.0);
    metrics_free(m);
    test_destroy(t);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as service.c does: a vanished peer is EPIPE, not death */
    alarm(120);               /* a hung loop fails the run instead of blocking ctest */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(get_returns_200_with_body),
        cmocka_unit_test(head_returns_headers_only),
        cmocka_unit_test(unknown_path_returns_404),
        cmocka_unit_test(wrong_method_returns_405_with_allow),
        cmocka_unit_test(prefix_route_matches_subpaths),
        cmocka_unit_test(query_and_headers_are_readable),
        cmocka_unit_test(extra_response_headers_are_sent),
        cmocka_unit_test(garbage_returns_400_and_closes),
        cmocka_unit_test(oversized_headers_return_431),
        cmocka_unit_test(oversized_header_value_returns_431),
        cmocka_unit_test(long_url_returns_414),
        cmocka_unit_test(big_body_returns_413),
        cmocka_unit_test(chunked_body_over_limit_returns_413),
        cmocka_unit_test(post_body_is_received_intact),
        cmocka_unit_test(chunked_post_body_is_received_intact),
        cmocka_unit_test(expect_100_continue_gets_interim_response),
        cmocka_unit_test(keep_alive_serves_two_requests_on_one_connection),
        cmocka_unit_test(pipelined_requests_are_answered_in_order),
        cmocka_unit_test(pipelined_flood_is_answered_in_order_under_backpressure),
        cmocka_unit_test(http10_gets_connection_close),
        cmocka_unit_test(request_sent_one_byte_at_a_time_works),
        cmocka_unit_test(idle_keep_alive_connection_is_closed),
        cmocka_unit_test(incomplete_request_times_out_with_408),
        cmocka_unit_test(connections_over_max_are_rejected),
        cmocka_unit_test(async_response_precedes_pipelined_request),
        cmocka_unit_test(client_gone_while_async_response_pending_is_safe),
        cmocka_unit_test(forced_close_orphans_pending_request),
        cmocka_unit_test(server_close_lets_pending_response_finish),
        cmocka_unit_test(upgrade_delivers_same_packet_bytes_and_echoes),
        cmocka_unit_test(async_upgrade_delivers_stashed_bytes),
        cmocka_unit_test(refused_upgrade_is_answered_and_closed),
        cmocka_unit_test(raw_close_is_graceful),
        cmocka_unit_test(raw_connection_gets_ticks),
        cmocka_unit_test(raw_backpressure_is_bounded_visible_and_drains),
        cmocka_unit_test(server_close_closes_open_connections),
        cmocka_unit_test(metrics_count_responses_and_connections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
