/* test_gateway_ws.c - services/gateway/ws.c against real sockets.
 *
 * Each test runs an http server with a /ws upgrade route on its own loop (127.0.0.1, ephemeral
 * port) on the main thread, and a client thread speaking WebSocket over blocking sockets with
 * 5 s timeouts: it masks its frames, and it can misbehave on purpose (unmasked frames, binary,
 * invalid UTF-8, never reading, never answering). The client thread only records what it saw;
 * the main thread asserts after joining it (cmocka is not thread-safe). When the client is done
 * it wakes the loop, which closes the server; every test ends with uv_loop_close() == 0.
 *
 * The server side is an "owner" like the gateway's: it echoes text messages, and some messages
 * are commands:
 *   "flood N [bye|kick|shutdown]"  queue m0..m(N-1), then ws_close_after_send(1000, "bye"),
 *                                  ws_close(4001, "kicked") or http_server_close
 *   "kick CODE REASON"             ws_close(CODE, REASON)
 *   "kicklong"                     ws_close(4001, a 140-byte UTF-8 reason)
 *   "slowflood"                    queue 1 KiB messages on every tick until ws refuses one
 *   "burst N"                      queue N 1 KiB messages; on_drain then says "drained"
 * Every owner records its on_close calls, so "exactly once" is checked in every test. */
#include "ws.h"
#include "test_socket.h"

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

#define MAX_OWNERS 16
#define MAX_SESSIONS 16
#define RESP_CAP 4096
#define FRAME_MAX (128 * 1024)
#define SLOW_BACKLOG (512 * 1024) /* twice ws.c's high-water mark: wslay holds some */
#define SLOW_MSG 1024
#define SLOW_GIVE_UP 40000 /* messages: far past what the kernel can hold */
#define SLOW_BATCH 128 /* per 20 ms tick: well under the cap, so only a stalled client hits it */

#define RFC_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define RFC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

#define OP_CONT 0x0
#define OP_TEXT 0x1
#define OP_BINARY 0x2
#define OP_CLOSE 0x8
#define OP_PING 0x9
#define OP_PONG 0xA

/* ------------------------------------------------------------------------------------------
 * Test context
 * ---------------------------------------------------------------------------------------- */

typedef struct test test_t;

typedef struct {
    test_t *t;
    ws_conn_t *ws; /* NULL after on_close */
    int closes;
    uint16_t code;
    int late_send_rc; /* ws_send_text from inside on_close */
} owner_t;

/* What a client saw on one connection. */
typedef struct {
    int status; /* of the handshake answer */
    char resp[RESP_CAP];
    int texts;    /* text messages before the close */
    bool ordered; /* texts "m<i>" came as m0, m1, m2, ... */
    char last[256];
    size_t last_len;
    int pings, pongs, others;
    int close_code; /* -1: no close frame */
    char close_reason[128];
    size_t close_reason_len;
    bool masked; /* the server masked a frame: it must not */
    bool eof;    /* the server closed TCP after the close */
    uint64_t close_after_ms, eof_after_ms; /* from the start of read_session */
} session_t;

struct test {
    uv_loop_t loop;
    http_server_t *srv;
    uv_async_t wake;
    pthread_t thread;
    int port;
    http_server_options_t http_opts;
    ws_options_t opts;
    void (*client)(test_t *t);
    atomic_bool finished;
    bool server_closing, server_closed;

    /* Recorded by the client thread, read after join. */
    session_t s[MAX_SESSIONS];

    /* Recorded on the loop thread. */
    owner_t *owners[MAX_OWNERS];
    int n_owners;
    int refused;        /* ws_accept < 0 */
    int accept_rc_last; /* the last refusal's return value */
    int messages;
    int closes;
    int drains;
    int flood_sent;
    int flood_rc;
    int after_flood_rc; /* ws_send_text right after the refusal */
    owner_t *flooder;   /* "slowflood" in progress */
    size_t burst_backlog; /* ws_backlog right after "burst N" */
    size_t max_backlog;
};

static void on_server_closed(http_server_t *srv, void *data)
{
    test_t *t = data;
    t->server_closed = true;
    t->srv = NULL;
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
    if (atomic_load(&t->finished)) {
        close_server(t);
        uv_close((uv_handle_t *)&t->wake, NULL);
    }
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
    t->http_opts.tick_ms = 20;
    for (int i = 0; i < MAX_SESSIONS; i++)
        t->s[i].close_code = -1;
    return t;
}

/* Every session that was accepted ended exactly once. */
static void assert_all_closed_once(const test_t *t)
{
    for (int i = 0; i < t->n_owners; i++) {
        assert_int_equal(t->owners[i]->closes, 1);
        assert_null(t->owners[i]->ws);
        assert_int_equal(t->owners[i]->late_send_rc, UV_ENOTCONN);
    }
    assert_int_equal(t->closes, t->n_owners);
}

static void test_destroy(test_t *t)
{
    for (int i = 0; i < t->n_owners; i++)
        free(t->owners[i]);
    free(t);
}

/* Runs the server until the client is done and the server closed; asserts the loop is empty
 * afterwards and that every session ended exactly once. */
static void run(test_t *t, void (*client)(test_t *t))
{
    http_server_options_t opts = t->http_opts;
    opts.host = "127.0.0.1";
    opts.port = 0;
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
    assert_all_closed_once(t);
}

/* ------------------------------------------------------------------------------------------
 * The owner (loop thread)
 * ---------------------------------------------------------------------------------------- */

static void flood(owner_t *o, int n)
{
    for (int i = 0; i < n; i++) {
        char m[32];
        int len = snprintf(m, sizeof m, "m%d", i);
        int rc = ws_send_text(o->ws, m, (size_t)len);
        if (rc != 0) {
            o->t->flood_rc = rc;
            return;
        }
        o->t->flood_sent++;
    }
}

/* "kicklong": 70 two-byte characters, cut to 61 of them (122 bytes) on the wire. */
static void kick_long(ws_conn_t *ws)
{
    char reason[141];
    for (int i = 0; i < 70; i++)
        memcpy(reason + 2 * i, "\xc3\xa9", 2); /* é */
    reason[140] = '\0';
    ws_close(ws, 4001, reason);
}

static void run_command(owner_t *o, const char *cmd)
{
    test_t *t = o->t;
    int n = 0, code = 0, used = 0;
    if (sscanf(cmd, "flood %d%n", &n, &used) == 1) {
        flood(o, n);
        const char *then = cmd + used;
        if (strcmp(then, " bye") == 0) {
            ws_close_after_send(o->ws, 1000, "bye");
            assert_int_equal(ws_send_text(o->ws, "late", 4), UV_ENOTCONN);
        } else if (strcmp(then, " kick") == 0) {
            ws_close(o->ws, 4001, "kicked");
        } else if (strcmp(then, " shutdown") == 0) {
            close_server(t);
        }
    } else if (sscanf(cmd, "kick %d %n", &code, &used) == 1) {
        ws_close(o->ws, (uint16_t)code, cmd + used);
        ws_close(o->ws, 4999, "ignored: already closing");
        assert_int_equal(ws_send_text(o->ws, "late", 4), UV_ENOTCONN);
    } else if (strcmp(cmd, "kicklong") == 0) {
        kick_long(o->ws);
    } else if (strcmp(cmd, "slowflood") == 0) {
        t->flooder = o;
    } else if (sscanf(cmd, "burst %d", &n) == 1) {
        char m[SLOW_MSG];
        memset(m, 'x', sizeof m);
        for (int i = 0; i < n; i++) {
            int len = snprintf(m, sizeof m, "m%d ", i);
            m[len] = 'x';
            assert_int_equal(ws_send_text(o->ws, m, sizeof m), 0);
        }
        t->burst_backlog = ws_backlog(o->ws);
    }
}

static bool is_command(const char *buf, size_t len)
{
    static const char *const prefixes[] = {"flood ", "kick", "slowflood", "burst "};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        size_t n = strlen(prefixes[i]);
        if (len >= n && memcmp(buf, prefixes[i], n) == 0)
            return true;
    }
    return false;
}

static void owner_on_message(ws_conn_t *ws, const char *buf, size_t len)
{
    owner_t *o = ws_data(ws);
    assert_ptr_equal(o->ws, ws);
    o->t->messages++;
    if (len < 64 && is_command(buf, len)) {
        char cmd[64];
        memcpy(cmd, buf, len);
        cmd[len] = '\0';
        run_command(o, cmd);
        return;
    }
    assert_int_equal(ws_send_text(ws, buf, len), 0);
}

/* "slowflood": 1 KiB messages, SLOW_BATCH per tick, until ws refuses one. */
static void slow_flood_tick(owner_t *o)
{
    test_t *t = o->t;
    char m[SLOW_MSG];
    memset(m, 'x', sizeof m);
    for (int i = 0; i < SLOW_BATCH; i++) {
        int n = snprintf(m, sizeof m, "m%d ", t->flood_sent);
        m[n] = 'x'; /* snprintf's NUL */
        int rc = ws_send_text(o->ws, m, sizeof m);
        size_t backlog = ws_backlog(o->ws);
        if (backlog > t->max_backlog)
            t->max_backlog = backlog;
        if (rc != 0) {
            t->flood_rc = rc;
            t->after_flood_rc = ws_send_text(o->ws, m, sizeof m);
            t->flooder = NULL;
            return;
        }
        if (++t->flood_sent == SLOW_GIVE_UP) { /* never refused: end it, the test fails */
            t->flooder = NULL;
            ws_close_after_send(o->ws, 1000, "gave up");
            return;
        }
    }
}

static void owner_on_tick(ws_conn_t *ws, uint64_t now_ms)
{
    owner_t *o = ws_data(ws);
    if (o->t->flooder == o)
        slow_flood_tick(o);
}

static void owner_on_drain(ws_conn_t *ws)
{
    owner_t *o = ws_data(ws);
    o->t->drains++;
    assert_true(ws_backlog(ws) < o->t->opts.max_backlog_bytes / 2);
    assert_int_equal(ws_send_text(ws, "drained", 7), 0);
}

static void owner_on_close(ws_conn_t *ws, uint16_t code)
{
    owner_t *o = ws_data(ws);
    assert_ptr_equal(o->ws, ws);
    o->closes++;
    o->code = code;
    o->t->closes++;
    if (o->t->flooder == o)
        o->t->flooder = NULL;
    /* Calls from inside on_close are harmless no-ops. */
    o->late_send_rc = ws_send_text(ws, "late", 4);
    ws_close(ws, 1000, "late");
    ws_close_after_send(ws, 1000, "late");
    o->ws = NULL;
}

static const ws_ops_t owner_ops = {
    .on_message = owner_on_message,
    .on_drain = owner_on_drain,
    .on_tick = owner_on_tick,
    .on_close = owner_on_close,
};

static void on_ws(http_request_t *req, void *data)
{
    test_t *t = data;
    assert_true(t->n_owners < MAX_OWNERS);
    owner_t *o = calloc(1, sizeof *o);
    assert_non_null(o);
    o->t = t;
    ws_conn_t *ws = NULL;
    int rc = ws_accept(req, &t->opts, &owner_ops, o, &ws);
    if (rc < 0) {
        t->refused++;
        t->accept_rc_last = rc;
        free(o);
        return;
    }
    assert_non_null(ws);
    assert_ptr_equal(ws_data(ws), o);
    assert_true(strncmp(ws_peer(ws), "127.0.0.1:", 10) == 0); /* the client's address */
    o->ws = ws;
    t->owners[t->n_owners++] = o;
}

static void add_routes(test_t *t)
{
    /* Any method: ws_accept itself answers 405. */
    assert_int_equal(http_server_route(t->srv, NULL, "/ws", HTTP_ROUTE_UPGRADE, on_ws, t), 0);
}

/* ------------------------------------------------------------------------------------------
 * Client side (client thread): a minimal WebSocket client over the blocking test_socket.h one
 * ---------------------------------------------------------------------------------------- */

typedef struct {
    bool fin, masked;
    int opcode;
    size_t len;
    char payload[FRAME_MAX + 1];
} frame_t;

/* Reads one HTTP response (head, then Content-Length bytes) into s->resp; sets s->status.
 * Bytes after it stay in cl->buf (WebSocket frames after a 101). */
static void client_response(test_client_t *cl, session_t *s)
{
    s->status = -1;
    for (;;) {
        char *end = memmem(cl->buf, cl->len, "\r\n\r\n", 4);
        if (end) {
            size_t hlen = (size_t)(end - cl->buf) + 4;
            if (hlen >= RESP_CAP)
                return;
            memcpy(s->resp, cl->buf, hlen);
            s->resp[hlen] = '\0';
            size_t body = 0;
            char *cl_hdr = strcasestr(s->resp, "\r\ncontent-length:");
            if (cl_hdr)
                body = (size_t)strtoul(cl_hdr + 17, NULL, 10);
            while (cl->len < hlen + body)
                if (test_client_fill(cl) <= 0)
                    return;
            if (hlen + body >= RESP_CAP)
                return;
            memcpy(s->resp + hlen, cl->buf + hlen, body);
            s->resp[hlen + body] = '\0';
            test_client_discard(cl, hlen + body);
            s->status = atoi(s->resp + 9);
            return;
        }
        if (test_client_fill(cl) <= 0)
            return;
    }
}

/* Builds one frame (masked unless told otherwise) into out; returns its length. */
static size_t frame_build(char *out, bool fin, int opcode, const void *payload, size_t len,
                          bool mask)
{
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    uint8_t *p = (uint8_t *)out;
    size_t h = 0;
    p[h++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    uint8_t m = mask ? 0x80 : 0;
    if (len < 126) {
        p[h++] = (uint8_t)(m | len);
    } else if (len < 65536) {
        p[h++] = m | 126;
        p[h++] = (uint8_t)(len >> 8);
        p[h++] = (uint8_t)len;
    } else {
        p[h++] = m | 127;
        for (int i = 7; i >= 0; i--)
            p[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    if (mask) {
        memcpy(p + h, key, 4);
        h += 4;
    }
    const uint8_t *src = payload;
    for (size_t i = 0; i < len; i++)
        p[h + i] = mask ? src[i] ^ key[i % 4] : src[i];
    return h + len;
}

static bool send_frame_ex(test_client_t *cl, bool fin, int opcode, const void *payload,
                          size_t len, bool mask)
{
    char *buf = malloc(len + 14);
    if (!buf)
        return false;
    size_t n = frame_build(buf, fin, opcode, payload, len, mask);
    bool ok = test_client_send(cl, buf, n);
    free(buf);
    return ok;
}

static bool send_frame(test_client_t *cl, int opcode, const void *payload, size_t len)
{
    return send_frame_ex(cl, true, opcode, payload, len, true);
}

static bool send_text(test_client_t *cl, const char *s)
{
    return send_frame(cl, OP_TEXT, s, strlen(s));
}

static bool send_close(test_client_t *cl, int code, const char *reason)
{
    char p[128];
    size_t n = 0;
    if (code >= 0) {
        p[0] = (char)(code >> 8);
        p[1] = (char)code;
        n = 2 + strlen(reason);
        memcpy(p + 2, reason, n - 2);
    }
    return send_frame(cl, OP_CLOSE, p, n);
}

/* Reads one frame from the server. Returns false on EOF, error, timeout or an oversized frame. */
static bool read_frame(test_client_t *cl, frame_t *f)
{
    while (cl->len < 2)
        if (test_client_fill(cl) <= 0)
            return false;
    const uint8_t *b = (const uint8_t *)cl->buf;
    size_t h = 2;
    uint64_t len = b[1] & 0x7f;
    size_t ext = len == 126 ? 2 : len == 127 ? 8 : 0;
    bool masked = (b[1] & 0x80) != 0;
    while (cl->len < h + ext + (masked ? 4 : 0))
        if (test_client_fill(cl) <= 0)
            return false;
    b = (const uint8_t *)cl->buf;
    if (ext) {
        len = 0;
        for (size_t i = 0; i < ext; i++)
            len = (len << 8) | b[h + i];
        h += ext;
    }
    uint8_t key[4] = {0};
    if (masked) {
        memcpy(key, b + h, 4);
        h += 4;
    }
    if (len > FRAME_MAX)
        return false;
    while (cl->len < h + len)
        if (test_client_fill(cl) <= 0)
            return false;
    b = (const uint8_t *)cl->buf;
    f->fin = (b[0] & 0x80) != 0;
    f->opcode = b[0] & 0x0f;
    f->masked = masked;
    f->len = (size_t)len;
    for (size_t i = 0; i < len; i++)
        f->payload[i] = (char)(b[h + i] ^ key[i % 4]);
    f->payload[len] = '\0';
    test_client_discard(cl, h + (size_t)len);
    return true;
}

/* Keeps (the start of) a text message as the session's last one. */
static void keep_text(session_t *s, const frame_t *f)
{
    size_t n = f->len < sizeof s->last - 1 ? f->len : sizeof s->last - 1;
    memcpy(s->last, f->payload, n);
    s->last[n] = '\0';
    s->last_len = f->len;
}

/* Reads frames until the server's close frame (or EOF/timeout). Counts text messages and checks
 * that "m<i>" ones come in order; answers pings when pong is set; after the close, echoes it
 * when reply is set, then waits for the server's EOF. */
static void read_session(test_client_t *cl, session_t *s, bool reply, bool pong)
{
    frame_t *f = malloc(sizeof *f);
    if (!f)
        abort();
    uint64_t start = test_now_ms();
    int next = 0;
    s->ordered = true;
    while (read_frame(cl, f)) {
        s->masked |= f->masked;
        if (f->opcode == OP_TEXT) {
            if (f->payload[0] == 'm' && f->len > 1) {
                if (atoi(f->payload + 1) != next)
                    s->ordered = false;
                next++;
            }
            s->texts++;
            keep_text(s, f);
        } else if (f->opcode == OP_PING) {
            s->pings++;
            if (pong)
                send_frame(cl, OP_PONG, f->payload, f->len);
        } else if (f->opcode == OP_PONG) {
            s->pongs++;
        } else if (f->opcode == OP_CLOSE) {
            s->close_after_ms = test_now_ms() - start;
            const uint8_t *p = (const uint8_t *)f->payload;
            s->close_code = f->len >= 2 ? (p[0] << 8) | p[1] : 1005;
            s->close_reason_len = f->len >= 2 ? f->len - 2 : 0;
            memcpy(s->close_reason, f->payload + 2, s->close_reason_len);
            s->close_reason[s->close_reason_len] = '\0';
            if (reply)
                send_close(cl, s->close_code == 1005 ? -1 : s->close_code, "");
            s->eof = test_client_wait_eof_dropping_data(cl);
            s->eof_after_ms = test_now_ms() - start;
            break;
        } else {
            s->others++;
        }
    }
    free(f);
}

/* Reads the next text message into s (last/last_len); false when something else came. */
static bool read_text(test_client_t *cl, session_t *s)
{
    frame_t *f = malloc(sizeof *f);
    if (!f)
        abort();
    bool ok = false;
    while (read_frame(cl, f)) {
        if (f->opcode == OP_PONG) {
            s->pongs++;
            continue;
        }
        if (f->opcode == OP_TEXT) {
            s->texts++;
            keep_text(s, f);
            ok = true;
        }
        break;
    }
    free(f);
    return ok;
}

#define HANDSHAKE(target, extra)                                                               \
    "GET " target " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"       \
    "Sec-WebSocket-Key: " RFC_KEY "\r\nSec-WebSocket-Version: 13\r\n" extra "\r\n"

/* Connects and sends request; the answer's head into s. */
static test_client_t *client_request(test_t *t, const char *request, session_t *s)
{
    test_client_t *cl = test_client_open(t->port, 0);
    test_client_send(cl, request, strlen(request));
    client_response(cl, s);
    return cl;
}

static test_client_t *ws_connect(test_t *t, session_t *s)
{
    return client_request(t, HANDSHAKE("/ws", ""), s);
}

/* A refused handshake: the answer, then the server's close. */
static void refused(test_t *t, const char *request, session_t *s)
{
    test_client_t *cl = client_request(t, request, s);
    s->eof = test_client_wait_eof_dropping_data(cl);
    test_client_close(cl);
}

/* An accepted handshake, closed at once by the client with 1000. */
static void accepted(test_t *t, const char *request, session_t *s)
{
    test_client_t *cl = client_request(t, request, s);
    if (s->status == 101) {
        send_close(cl, 1000, "done");
        read_session(cl, s, false, false);
    }
    test_client_close(cl);
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

/* ------------------------------------------------------------------------------------------
 * Handshake
 * ---------------------------------------------------------------------------------------- */

static void accept_value_matches_rfc_sample(void **state)
{
    char out[WS_ACCEPT_LEN + 1];
    assert_int_equal(ws_accept_value(RFC_KEY, out), 0);
    assert_string_equal(out, RFC_ACCEPT);
    assert_int_equal(ws_accept_value("dGhlIHNhbXBsZSBub25jZQ=", out), UV_EINVAL);  /* 23 */
    assert_int_equal(ws_accept_value("dGhlIHNhbXBsZSBub25jZQ==x", out), UV_EINVAL); /* 25 */
    assert_int_equal(ws_accept_value("dGhlIHNhbXBsZSBub25jZQAA", out), UV_EINVAL); /* 18 B */
    assert_int_equal(ws_accept_value("dGhlIHNhbXBsZSBub25j!Q==", out), UV_EINVAL);
    assert_int_equal(ws_accept_value(NULL, out), UV_EINVAL);
}

static void client_handshakes(test_t *t)
{
    accepted(t, HANDSHAKE("/ws", ""), &t->s[0]);
    refused(t,
            "POST /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: " RFC_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
            &t->s[1]);
    test_client_t *plain = client_request(t, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", &t->s[2]);
    test_client_close(plain);
    refused(t,
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: " RFC_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
            &t->s[3]);
    refused(t,
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: " RFC_KEY "\r\nSec-WebSocket-Version: 8\r\n\r\n",
            &t->s[4]);
    refused(t,
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n",
            &t->s[5]);
    refused(t, HANDSHAKE("/ws", "Origin: https://evil.example\r\n"), &t->s[6]);
    accepted(t, HANDSHAKE("/ws", "Origin: https://app.example\r\n"), &t->s[7]);
    accepted(t,
             HANDSHAKE("/ws", "Sec-WebSocket-Protocol: chat, integral.v1\r\n"
                              "Sec-WebSocket-Extensions: permessage-deflate\r\n"),
             &t->s[8]);
    refused(t, HANDSHAKE("/ws", "Sec-WebSocket-Protocol: chat\r\n"), &t->s[9]);
    /* Firefox says "Connection: keep-alive, Upgrade" and "Upgrade: WebSocket" is legal. */
    accepted(t,
             "GET /ws?x=1 HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\n"
             "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: " RFC_KEY "\r\n"
             "Sec-WebSocket-Version: 13\r\nOrigin: HTTPS://APP.EXAMPLE\r\n\r\n",
             &t->s[10]);
}

static void handshake_accepts_and_refuses_with_the_right_status(void **state)
{
    static const char *const origins[] = {"https://app.example", "http://localhost:5173"};
    test_t *t = test_new();
    t->opts.origins = origins;
    t->opts.n_origins = 2;
    t->opts.subprotocol = "integral.v1";
    ws_stats_t before, after;
    before = *ws_stats();
    run(t, client_handshakes);
    after = *ws_stats();

    session_t *s = t->s;
    assert_int_equal(s[0].status, 101); /* no Origin: a non-browser client */
    assert_true(has(s[0].resp, "\r\nUpgrade: websocket\r\n"));
    assert_true(has(s[0].resp, "\r\nConnection: Upgrade\r\n"));
    assert_true(has(s[0].resp, "\r\nSec-WebSocket-Accept: " RFC_ACCEPT "\r\n"));
    assert_false(has(s[0].resp, "Sec-WebSocket-Protocol")); /* none offered, none echoed */
    assert_int_equal(s[0].close_code, 1000);
    assert_true(s[0].eof);

    assert_int_equal(s[1].status, 405);
    assert_true(has(s[1].resp, "\r\nAllow: GET\r\n"));
    assert_true(has(s[1].resp, "\r\nConnection: close\r\n"));
    assert_true(s[1].eof);

    assert_int_equal(s[2].status, 426); /* a plain GET on the WebSocket path */
    assert_true(has(s[2].resp, "\r\nUpgrade: websocket\r\n"));

    assert_int_equal(s[3].status, 400);
    assert_string_equal(body_of(s[3].resp), "Upgrade must be websocket\n");
    assert_true(s[3].eof);

    assert_int_equal(s[4].status, 426);
    assert_true(has(s[4].resp, "\r\nSec-WebSocket-Version: 13\r\n"));
    assert_true(s[4].eof);

    assert_int_equal(s[5].status, 400);
    assert_string_equal(body_of(s[5].resp), "invalid Sec-WebSocket-Key\n");
    assert_true(s[5].eof);

    assert_int_equal(s[6].status, 403);
    assert_true(has(s[6].resp, "HTTP/1.1 403 Forbidden\r\n"));
    assert_true(has(s[6].resp, "\r\nConnection: close\r\n"));
    assert_true(s[6].eof);

    assert_int_equal(s[7].status, 101); /* an allowed Origin */

    assert_int_equal(s[8].status, 101);
    assert_true(has(s[8].resp, "\r\nSec-WebSocket-Protocol: integral.v1\r\n"));
    assert_false(has(s[8].resp, "Sec-WebSocket-Extensions")); /* deflate declined */

    assert_int_equal(s[9].status, 400);
    assert_string_equal(body_of(s[9].resp), "unsupported Sec-WebSocket-Protocol\n");

    assert_int_equal(s[10].status, 101);

    assert_int_equal(t->n_owners, 4);
    assert_int_equal(t->refused, 7);
    assert_int_equal(t->accept_rc_last, UV_EPROTO);
    for (int i = 0; i < t->n_owners; i++)
        assert_int_equal(t->owners[i]->code, 1000);
    assert_int_equal(after.accepted - before.accepted, 4);
    assert_int_equal(after.refused[WS_REFUSED_400] - before.refused[WS_REFUSED_400], 3);
    assert_int_equal(after.refused[WS_REFUSED_403] - before.refused[WS_REFUSED_403], 1);
    assert_int_equal(after.refused[WS_REFUSED_405] - before.refused[WS_REFUSED_405], 1);
    assert_int_equal(after.refused[WS_REFUSED_426] - before.refused[WS_REFUSED_426], 2);
    assert_int_equal(after.ended[WS_END_NORMAL] - before.ended[WS_END_NORMAL], 4);
    test_destroy(t);
}

static void client_subprotocol_owner_sees(test_t *t)
{
    accepted(t, HANDSHAKE("/ws", "Sec-WebSocket-Protocol: integral.v1\r\n"), &t->s[0]);
    accepted(t, HANDSHAKE("/ws", "Sec-WebSocket-Protocol: chat\r\n"), &t->s[1]);
}

static void without_subprotocol_option_offers_are_ignored(void **state)
{
    test_t *t = test_new(); /* opts.subprotocol NULL; no origins, no Origin sent */
    run(t, client_subprotocol_owner_sees);
    assert_int_equal(t->s[0].status, 101);
    assert_int_equal(t->s[1].status, 101);
    assert_false(has(t->s[0].resp, "Sec-WebSocket-Protocol"));
    assert_int_equal(t->n_owners, 2);
    test_destroy(t);
}

/* ------------------------------------------------------------------------------------------
 * Messages
 * ---------------------------------------------------------------------------------------- */

static void client_echoes(test_t *t)
{
    session_t *s = &t->s[0];
    test_client_t *cl = test_client_open(t->port, 0);
    /* The first frame comes in the same packet as the handshake. */
    char first[512];
    size_t n = strlen(HANDSHAKE("/ws", ""));
    memcpy(first, HANDSHAKE("/ws", ""), n);
    n += frame_build(first + n, true, OP_TEXT, "early", 5, true);
    test_client_send(cl, first, n);
    client_response(cl, s);
    read_text(cl, s);
    snprintf(t->s[1].last, sizeof t->s[1].last, "%s", s->last);

    /* Fragmented, with a ping between the fragments: the pong comes first. */
    send_frame_ex(cl, false, OP_TEXT, "hel", 3, true);
    send_frame(cl, OP_PING, "p1", 2);
    send_frame_ex(cl, false, OP_CONT, "lo ", 3, true);
    send_frame_ex(cl, true, OP_CONT, "world", 5, true);
    read_text(cl, s);
    snprintf(t->s[2].last, sizeof t->s[2].last, "%s", s->last);

    /* One byte per write. */
    char frame[64];
    size_t len = frame_build(frame, true, OP_TEXT, "byte by byte", 12, true);
    for (size_t i = 0; i < len; i++) {
        test_client_send(cl, frame + i, 1);
        usleep(2000);
    }
    read_text(cl, s);
    snprintf(t->s[3].last, sizeof t->s[3].last, "%s", s->last);

    /* Empty, UTF-8, and the largest allowed (a 64-bit length both ways). */
    send_text(cl, "");
    read_text(cl, s);
    t->s[4].last_len = s->last_len;
    send_text(cl, "caf\xc3\xa9 \xe2\x82\xac");
    read_text(cl, s);
    snprintf(t->s[5].last, sizeof t->s[5].last, "%s", s->last);
    char *big = malloc(65536);
    if (!big)
        abort();
    memset(big, 'b', 65536);
    send_frame(cl, OP_TEXT, big, 65536);
    free(big);
    read_text(cl, s);
    t->s[6].last_len = s->last_len;

    send_close(cl, 1000, "done:hello");
    read_session(cl, s, false, false);
    test_client_close(cl);
}

static void echo_round_trip_with_fragments_and_split_writes(void **state)
{
    test_t *t = test_new();
    ws_stats_t before, after;
    before = *ws_stats();
    run(t, client_echoes);
    after = *ws_stats();
    session_t *s = &t->s[0];
    assert_int_equal(s->status, 101);
    assert_string_equal(t->s[1].last, "early");
    assert_string_equal(t->s[2].last, "hello world");
    assert_int_equal(s->pongs, 1); /* wslay answered the ping */
    assert_string_equal(t->s[3].last, "byte by byte");
    assert_int_equal(t->s[4].last_len, 0);
    assert_string_equal(t->s[5].last, "caf\xc3\xa9 \xe2\x82\xac");
    assert_int_equal(t->s[6].last_len, 65536);
    assert_int_equal(s->texts, 6);
    assert_false(s->masked);
    /* The client's close is echoed, reason and all, and the server then closes TCP. */
    assert_int_equal(s->close_code, 1000);
    assert_string_equal(s->close_reason, "done:hello");
    assert_true(s->eof);
    assert_int_equal(t->messages, 6);
    assert_int_equal(t->owners[0]->code, 1000);
    assert_int_equal(after.messages_in - before.messages_in, 6);
    assert_int_equal(after.messages_out - before.messages_out, 6);
    assert_true(after.bytes_out - before.bytes_out > 65536);
    test_destroy(t);
}

/* One connection per misbehaviour; the client answers the close and waits for EOF. */
static void client_protocol_errors(test_t *t)
{
    test_client_t *cl = ws_connect(t, &t->s[0]);
    char *big = malloc(2000);
    if (!big)
        abort();
    memset(big, 'a', 2000);
    send_frame(cl, OP_TEXT, big, 2000);
    read_session(cl, &t->s[0], true, false);
    test_client_close(cl);

    cl = ws_connect(t, &t->s[1]); /* over the limit only in total */
    send_frame_ex(cl, false, OP_TEXT, big, 600, true);
    send_frame_ex(cl, true, OP_CONT, big, 600, true);
    read_session(cl, &t->s[1], true, false);
    test_client_close(cl);
    free(big);

    cl = ws_connect(t, &t->s[2]);
    send_frame(cl, OP_BINARY, "\x01\x02", 2);
    read_session(cl, &t->s[2], true, false);
    test_client_close(cl);

    cl = ws_connect(t, &t->s[3]);
    send_text(cl, "ok \xc3\x28 not UTF-8");
    read_session(cl, &t->s[3], true, false);
    test_client_close(cl);

    cl = ws_connect(t, &t->s[4]);
    send_frame_ex(cl, true, OP_TEXT, "naked", 5, false);
    read_session(cl, &t->s[4], true, false);
    test_client_close(cl);

    cl = ws_connect(t, &t->s[5]);
    send_frame(cl, 0x3, "x", 1); /* a reserved opcode */
    read_session(cl, &t->s[5], true, false);
    test_client_close(cl);
}

static void protocol_errors_close_with_their_codes(void **state)
{
    test_t *t = test_new();
    t->opts.max_message = 1024;
    ws_stats_t before, after;
    before = *ws_stats();
    run(t, client_protocol_errors);
    after = *ws_stats();
    static const int expected[] = {1009, 1009, 1003, 1007, 1002, 1002};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(t->s[i].status, 101);
        assert_int_equal(t->s[i].close_code, expected[i]);
        assert_true(t->s[i].eof);
        assert_int_equal(t->s[i].texts, 0);
        assert_int_equal(t->owners[i]->code, expected[i]);
    }
    assert_string_equal(t->s[2].close_reason, "text messages only");
    assert_int_equal(t->messages, 0);
    assert_int_equal(after.ended[WS_END_TOO_BIG] - before.ended[WS_END_TOO_BIG], 2);
    assert_int_equal(after.ended[WS_END_PROTOCOL] - before.ended[WS_END_PROTOCOL], 4);
    test_destroy(t);
}

/* ------------------------------------------------------------------------------------------
 * Closing
 * ---------------------------------------------------------------------------------------- */

static void client_kicks(test_t *t)
{
    test_client_t *cl = ws_connect(t, &t->s[0]);
    send_text(cl, "kick 4001 token expired");
    read_session(cl, &t->s[0], true, false);
    test_client_close(cl);

    cl = ws_connect(t, &t->s[1]);
    send_text(cl, "kicklong");
    read_session(cl, &t->s[1], true, false);
    test_client_close(cl);

    cl = ws_connect(t, &t->s[2]); /* the close overtakes what is queued */
    send_text(cl, "flood 100 kick");
    read_session(cl, &t->s[2], true, false);
    test_client_close(cl);
}

static void kick_sends_code_and_reason_ahead_of_queued_messages(void **state)
{
    test_t *t = test_new();
    run(t, client_kicks);
    assert_int_equal(t->s[0].close_code, 4001);
    assert_string_equal(t->s[0].close_reason, "token expired");
    assert_true(t->s[0].eof);
    assert_int_equal(t->owners[0]->code, 4001);

    /* 140 bytes of "é" are cut to 122: at most 123, and never inside a character. */
    assert_int_equal(t->s[1].close_code, 4001);
    assert_int_equal(t->s[1].close_reason_len, 122);
    assert_memory_equal(t->s[1].close_reason, "\xc3\xa9\xc3\xa9", 4);
    assert_memory_equal(t->s[1].close_reason + 120, "\xc3\xa9", 2);

    assert_int_equal(t->flood_sent, 100);
    assert_int_equal(t->s[2].texts, 0);
    assert_int_equal(t->s[2].close_code, 4001);
    assert_string_equal(t->s[2].close_reason, "kicked");
    assert_int_equal(t->owners[2]->code, 4001);
    test_destroy(t);
}

static void client_goodbye(test_t *t)
{
    test_client_t *cl = ws_connect(t, &t->s[0]);
    send_text(cl, "flood 500 bye");
    read_session(cl, &t->s[0], true, false);
    test_client_close(cl);
}

static void close_after_send_delivers_everything_then_closes(void **state)
{
    test_t *t = test_new();
    run(t, client_goodbye);
    session_t *s = &t->s[0];
    assert_int_equal(t->flood_sent, 500);
    assert_int_equal(s->texts, 500);
    assert_true(s->ordered);
    assert_string_equal(s->last, "m499");
    assert_int_equal(s->close_code, 1000);
    assert_string_equal(s->close_reason, "bye");
    assert_true(s->eof);
    assert_int_equal(t->owners[0]->code, 1000);
    test_destroy(t);
}

static void client_never_answers_close(test_t *t)
{
    test_client_t *cl = ws_connect(t, &t->s[0]);
    send_text(cl, "kick 4001 bye");
    read_session(cl, &t->s[0], false, false); /* no close back: the server must give up */
    test_client_close(cl);
}

static void close_deadline_drops_a_peer_that_never_answers(void **state)
{
    test_t *t = test_new();
    t->opts.close_timeout_ms = 300;
    run(t, client_never_answers_close);
    session_t *s = &t->s[0];
    assert_int_equal(s->close_code, 4001);
    assert_true(s->eof);
    assert_true(s->eof_after_ms - s->close_after_ms >= 250);
    assert_true(s->eof_after_ms - s->close_after_ms < 2000);
    assert_int_equal(t->owners[0]->code, 4001); /* our close was on the wire */
    test_destroy(t);
}

static void client_drops_tcp(test_t *t)
{
    test_client_t *cl = ws_connect(t, &t->s[0]);
    send_text(cl, "hi");
    read_text(cl, &t->s[0]);
    test_client_close(cl); /* FIN without a close frame */
}

static void dropped_tcp_ends_with_1006(void **state)
{
    test_t *t = test_new();
    ws_stats_t before, after;
    before = *ws_stats();
    run(t, client_drops_tcp);
    after = *ws_stats();
    assert_string_equal(t->s[0].last, "hi");
    assert_int_equal(t->owners[0]->code, 1006);
    assert_int_equal(after.ended[WS_END_DROPPED] - before.ended[WS_END_DROPPED], 1);
    test_destroy(t);
}

static void client_server_shutdown(test_t *t)
{
    test_client_t *cl = ws_connect(t, &t->s[0]);
    send_text(cl, "flood 200 shutdown");
    read_session(cl, &t->s[0], true, false);
    test_client_close(cl);
}

static void server_close_sends_1001_after_queued_messages(void **state)
{
    test_t *t = test_new();
    run(t, client_server_shutdown);
    session_t *s = &t->s[0];
    assert_int_equal(s->texts, 200);
    assert_true(s->ordered);
    assert_int_equal(s->close_code, 1001);
    assert_string_equal(s->close_reason, "server shutdown");
    assert_true(s->eof);
    assert_int_equal(t->owners[0]->code, 1001);
    test_destroy(t);
}

/* ------------------------------------------------------------------------------------------
 * Liveness and backpressure
 * ---------------------------------------------------------------------------------------- */

static void client_silent(test_t *t)
{
    test_client_t *cl = ws_connect(t, &t->s[0]);
    read_session(cl, &t->s[0], true, false); /* never pongs */
    test_client_close(cl);
}

static void silent_client_is_pinged_then_closed_4002(void **state)
{
    test_t *t = test_new();
    t->opts.ping_interval_ms = 200;
    t->opts.idle_timeout_ms = 600;
    ws_stats_t before, after;
    before = *ws_stats();
    run(t, client_silent);
    after = *ws_stats();
    session_t *s = &t->s[0];
    assert_true(s->pings >= 1);
    assert_true(s->pings <= 3);
    assert_int_equal(s->close_code, 4002);
    assert_string_equal(s->close_reason, "ping timeout");
    assert_true(s->close_after_ms >= 550);
    assert_true(s->close_after_ms < 2000);
    assert_true(s->eof);
    assert_int_equal(t->owners[0]->code, 4002);
    assert_int_equal(after.ended[WS_END_PING_TIMEOUT] - before.ended[WS_END_PING_TIMEOUT], 1);
    assert_true(after.pings - before.pings >= 1);
    test_destroy(t);
}

static void client_answers_pings(test_t *t)
{
    session_t *s = &t->s[0];
    test_client_t *cl = ws_connect(t, s);
    frame_t *f = malloc(sizeof *f);
    if (!f)
        abort();
    uint64_t until = test_now_ms() + 1200; /* twice the idle timeout */
    while (test_now_ms() < until && read_frame(cl, f)) {
        if (f->opcode == OP_PING) {
            s->pings++;
            send_frame(cl, OP_PONG, f->payload, f->len);
        } else {
            s->others++;
        }
    }
    free(f);
    send_close(cl, 1000, "");
    read_session(cl, s, false, false);
    test_client_close(cl);
}

static void client_answering_pings_stays_open(void **state)
{
    test_t *t = test_new();
    t->opts.ping_interval_ms = 200;
    t->opts.idle_timeout_ms = 600;
    run(t, client_answers_pings);
    session_t *s = &t->s[0];
    assert_true(s->pings >= 3);
    assert_int_equal(s->others, 0);
    assert_int_equal(s->close_code, 1000);
    assert_int_equal(t->owners[0]->code, 1000);
    test_destroy(t);
}

static void client_slow(test_t *t)
{
    session_t *s = &t->s[0];
    test_client_t *cl = test_client_open(t->port, 32 * 1024);
    test_client_send(cl, HANDSHAKE("/ws", ""), strlen(HANDSHAKE("/ws", "")));
    client_response(cl, s);
    send_text(cl, "slowflood");
    usleep(2000 * 1000); /* not reading: the backlog builds up */
    read_session(cl, s, true, false);
    test_client_close(cl);
}

static void slow_client_is_closed_1008_with_bounded_backlog(void **state)
{
    test_t *t = test_new();
    t->opts.max_backlog_bytes = SLOW_BACKLOG;
    ws_stats_t before, after;
    before = *ws_stats();
    run(t, client_slow);
    after = *ws_stats();
    session_t *s = &t->s[0];
    assert_int_equal(t->flood_rc, UV_ENOBUFS);
    assert_int_equal(t->after_flood_rc, UV_ENOTCONN);
    /* Never more than the cap (frame headers moved into http's buffer aside). */
    assert_true(t->max_backlog <= SLOW_BACKLOG + SLOW_BACKLOG / 64);
    assert_true(t->max_backlog > SLOW_BACKLOG / 2);
    /* The kernel took its share first: the cap was hit by a stalled client, not by a burst. */
    assert_true((size_t)t->flood_sent * SLOW_MSG > 2 * SLOW_BACKLOG);
    /* The client got a prefix of the flood, in order, then the close ahead of the rest. */
    assert_true(s->texts > 0);
    assert_true(s->texts < t->flood_sent);
    assert_true(s->ordered);
    assert_int_equal(s->close_code, 1008);
    assert_string_equal(s->close_reason, "slow consumer");
    assert_true(s->eof);
    assert_int_equal(t->owners[0]->code, 1008);
    assert_int_equal(after.ended[WS_END_SLOW] - before.ended[WS_END_SLOW], 1);
    test_destroy(t);
}

static void client_burst(test_t *t)
{
    session_t *s = &t->s[0];
    test_client_t *cl = ws_connect(t, s);
    send_text(cl, "burst 40");
    for (int i = 0; i < 41 && read_text(cl, s); i++)
        ;
    send_close(cl, 1000, "");
    read_session(cl, s, false, false);
    test_client_close(cl);
}

static void on_drain_follows_a_backlog_over_half_the_cap(void **state)
{
    test_t *t = test_new();
    t->opts.max_backlog_bytes = 64 * 1024;
    run(t, client_burst);
    session_t *s = &t->s[0];
    assert_true(t->burst_backlog >= 40 * SLOW_MSG); /* 40 KiB: over half of 64 KiB */
    assert_int_equal(t->drains, 1);
    assert_int_equal(s->texts, 41);
    assert_string_equal(s->last, "drained"); /* after the burst, once it was written */
    assert_int_equal(s->close_code, 1000);
    test_destroy(t);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as service.c does: a vanished peer is EPIPE, not death */
    alarm(120);               /* a hung loop fails the run instead of blocking ctest */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accept_value_matches_rfc_sample),
        cmocka_unit_test(handshake_accepts_and_refuses_with_the_right_status),
        cmocka_unit_test(without_subprotocol_option_offers_are_ignored),
        cmocka_unit_test(echo_round_trip_with_fragments_and_split_writes),
        cmocka_unit_test(protocol_errors_close_with_their_codes),
        cmocka_unit_test(kick_sends_code_and_reason_ahead_of_queued_messages),
        cmocka_unit_test(close_after_send_delivers_everything_then_closes),
        cmocka_unit_test(close_deadline_drops_a_peer_that_never_answers),
        cmocka_unit_test(dropped_tcp_ends_with_1006),
        cmocka_unit_test(server_close_sends_1001_after_queued_messages),
        cmocka_unit_test(silent_client_is_pinged_then_closed_4002),
        cmocka_unit_test(client_answering_pings_stays_open),
        cmocka_unit_test(on_drain_follows_a_backlog_over_half_the_cap),
        cmocka_unit_test(slow_client_is_closed_1008_with_bounded_backlog),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
