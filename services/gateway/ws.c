/* ws.c - WebSocket sessions on http's raw mode, framed by wslay 1.1.1. See ws.h for the behaviour
 * and shared/notes/websocket.md for the measured wslay facts this file is built around:
 *  - wslay pulls input through recv_cb and pushes output through send_cb. Input is "fed": on_data
 *    points the feed at the read buffer, wslay_event_recv drains it (WOULDBLOCK when empty), and
 *    whatever wslay leaves after it stops reading is dropped. Output goes to http_raw_write,
 *    which coalesces it into one write per loop iteration; above SEND_HIGH_WATER bytes in http
 *    send_cb says WOULDBLOCK and the rest waits inside wslay until http's on_drain.
 *  - a queued close overtakes queued data at the next frame boundary, and nothing is written
 *    after it. A kick wants exactly that; a goodbye (ws_close_after_send) queues its close only
 *    once wslay's queue is empty.
 *  - wslay's "close sent" means handed to send_cb, not written: the TCP close waits until http's
 *    buffer is empty as well (close_on_wire) and the peer's close came back (wslay wants no more
 *    input), or until the close deadline. Then http_raw_close: FIN and linger, never an RST.
 *  - wslay has no timers: pings, the idle limit and the close deadline run on http's sweep tick.
 *    The tick is also our only clock (http lends no loop), so times have its granularity and
 *    err on the generous side: data is stamped with the tick that follows it.
 *  - the wslay context is freed only in http's on_close, which always runs from a libuv close
 *    callback, never inside wslay. Inside wslay (in_wslay) nothing calls back into wslay: ws_*
 *    calls made from on_message only queue, and the pump runs when wslay_event_recv returns.
 *
 * A session's state only moves forward:
 *   OPEN    -> messages both ways
 *   GOODBYE -> ws_close_after_send: the queue drains, then our close frame is queued
 *   CLOSING -> a close frame is queued (ours, or wslay's answer to the peer's close or to a
 *              protocol error): wait for it to be written and for the peer's close
 *   LINGER  -> http_raw_close called (or http failed): only on_close is left
 *   CLOSED  -> inside on_close; freed right after */
#include "ws.h"

#include "log.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <wslay/wslay.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

#define SEND_HIGH_WATER (256 * 1024) /* bytes buffered in http before wslay is told to wait */

#define DEFAULT_MAX_MESSAGE (64 * 1024)
#define DEFAULT_MAX_BACKLOG_BYTES (1024 * 1024)
#define DEFAULT_MAX_BACKLOG_MSGS 4096
#define DEFAULT_PING_INTERVAL_MS 20000
#define DEFAULT_IDLE_TIMEOUT_MS 60000
#define DEFAULT_CLOSE_TIMEOUT_MS 3000

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define KEY_LEN 24     /* base64 of 16 bytes */
#define KEY_DECODED 18 /* EVP_DecodeBlock counts the two padding bytes: 16 + 2 */
#define ACCEPT_LEN 28  /* base64 of a 20-byte SHA-1 */

typedef enum { WS_OPEN, WS_GOODBYE, WS_CLOSING, WS_LINGER, WS_CLOSED } ws_state_t;

/* The options with defaults applied; copied so that every use is a plain field. */
typedef struct {
    size_t max_message;
    size_t max_backlog_bytes;
    unsigned max_backlog_msgs;
    unsigned ping_interval_ms;
    unsigned idle_timeout_ms;
    unsigned close_timeout_ms;
} limits_t;

struct ws_conn {
    http_raw_t raw;
    wslay_event_context_ptr ctx;
    const ws_ops_t *ops;
    void *data;
    limits_t lim;
    const char *subprotocol; /* borrowed from the options */
    ws_state_t state;
    bool accepted;      /* the owner holds it: on_close is owed */
    bool in_wslay;      /* inside wslay_event_recv/send: queue only, pump afterwards */
    bool rx_seen;       /* bytes arrived since the last tick */
    bool clock_started; /* last_rx_ms was set by a tick */
    bool deadline_set;  /* deadline_ms is set for the current state (GOODBYE or CLOSING) */
    bool close_on_wire; /* our close frame has left our buffers */
    bool slow;          /* the backlog check closed it */
    bool backlog_high;  /* the backlog went over half of max_backlog_bytes; on_drain owed */
    const uint8_t *feed; /* input not yet taken by wslay; valid during on_data only */
    size_t feed_len;
    uint64_t last_rx_ms, last_ping_ms, deadline_ms;
    uint16_t goodbye_code;
    size_t goodbye_len;
    char goodbye_reason[WS_MAX_CLOSE_REASON];
    char peer[64];
};

static ws_stats_t stats;

static void pump(ws_conn_t *ws);

/* ------------------------------------------------------------------------------------------
 * Counters
 * ---------------------------------------------------------------------------------------- */

const ws_stats_t *ws_stats(void)
{
    return &stats;
}

const char *ws_end_name(ws_end_t end)
{
    static const char *const names[WS_END_COUNT] = {
        [WS_END_NORMAL] = "normal",       [WS_END_GOING_AWAY] = "going_away",
        [WS_END_PROTOCOL] = "protocol",   [WS_END_TOO_BIG] = "too_big",
        [WS_END_SLOW] = "slow",           [WS_END_POLICY] = "policy",
        [WS_END_PING_TIMEOUT] = "ping_timeout", [WS_END_APP] = "app",
        [WS_END_DROPPED] = "dropped",
    };
    return (unsigned)end < WS_END_COUNT ? names[end] : "?";
}

ws_end_t ws_end_of(uint16_t code, bool slow)
{
    switch (code) {
    case WS_CLOSE_CODE_NORMAL:
    case WS_CLOSE_CODE_NO_STATUS:
        return WS_END_NORMAL;
    case WS_CLOSE_CODE_GOING_AWAY:
        return WS_END_GOING_AWAY;
    case WS_CLOSE_CODE_POLICY:
        return slow ? WS_END_SLOW : WS_END_POLICY;
    case WS_CLOSE_CODE_TOO_BIG:
        return WS_END_TOO_BIG;
    case WS_CLOSE_CODE_ABNORMAL:
        return WS_END_DROPPED;
    case WS_CLOSE_CODE_PING_TIMEOUT:
        return WS_END_PING_TIMEOUT;
    default:
        return (code >= 3000 && code <= 4999) ? WS_END_APP : WS_END_PROTOCOL;
    }
}

/* ------------------------------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------------------------- */

/* Codes an endpoint may put in a close frame (the ones wslay accepts from a peer). */
static bool code_is_sendable(uint16_t code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
           (code >= 3000 && code <= 4999);
}

/* The length of reason cut to WS_MAX_CLOSE_REASON bytes without splitting a UTF-8 sequence:
 * back off while the first byte left out is a continuation byte (10xxxxxx). */
static size_t reason_fit(const char *reason)
{
    if (!reason)
        return 0;
    size_t len = strlen(reason);
    if (len <= WS_MAX_CLOSE_REASON)
        return len;
    len = WS_MAX_CLOSE_REASON;
    while (len > 0 && ((unsigned char)reason[len] & 0xC0) == 0x80)
        len--;
    return len;
}

/* Next item of a comma-separated header list ("a, b,c"), blanks trimmed. Returns false at the
 * end. */
static bool list_next(const char **cursor, const char **item, size_t *len)
{
    const char *p = *cursor;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p) {
            *cursor = p;
            return false;
        }
        const char *start = p;
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (end > start) {
            *item = start;
            *len = (size_t)(end - start);
            *cursor = p;
            return true;
        }
    }
}

static bool list_has_token(const char *list, const char *token)
{
    const char *item;
    size_t len;
    size_t token_len = strlen(token);
    while (list_next(&list, &item, &len))
        if (len == token_len && strncasecmp(item, token, len) == 0)
            return true;
    return false;
}

size_t ws_backlog(const ws_conn_t *ws)
{
    return wslay_event_get_queued_msg_length(ws->ctx) + http_raw_buffered(&ws->raw);
}

void *ws_data(const ws_conn_t *ws)
{
    return ws->data;
}

void ws_set_data(ws_conn_t *ws, void *data)
{
    ws->data = data;
}

const char *ws_peer(const ws_conn_t *ws)
{
    return ws->peer;
}

const char *ws_subprotocol(const ws_conn_t *ws)
{
    return ws->subprotocol;
}

/* ------------------------------------------------------------------------------------------
 * Closing
 * ---------------------------------------------------------------------------------------- */

/* The end of the WebSocket session: http flushes, sends FIN, lingers, then calls on_close. */
static void linger(ws_conn_t *ws)
{
    if (ws->state >= WS_LINGER)
        return;
    ws->state = WS_LINGER;
    http_raw_close(&ws->raw);
}

/* Moves to CLOSING: a close frame is queued in wslay; the deadline starts at the next tick. */
static void enter_closing(ws_conn_t *ws)
{
    if (ws->state >= WS_CLOSING)
        return;
    ws->state = WS_CLOSING;
    ws->deadline_set = false;
}

/* Queues our close frame (wslay sends it ahead of queued data) without pumping. */
static void queue_close(ws_conn_t *ws, uint16_t code, const char *reason, size_t len)
{
    if (ws->state >= WS_CLOSING)
        return;
    int rc = wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason, len);
    enter_closing(ws);
    /* NO_MORE_MSG: a close is already queued (wslay's answer to the peer) - as good. */
    if (rc != 0 && rc != WSLAY_ERR_NO_MORE_MSG) {
        log_warn("ws %s: cannot queue close %u (wslay error %d); dropping", ws->peer, code, rc);
        linger(ws);
    }
}

static void start_close(ws_conn_t *ws, uint16_t code, const char *reason, size_t len)
{
    queue_close(ws, code, reason, len);
    pump(ws);
}

void ws_close(ws_conn_t *ws, uint16_t code, const char *reason)
{
    if (!ws || ws->state >= WS_CLOSING)
        return;
    if (!code_is_sendable(code)) {
        log_error("ws %s: close code %u may not be sent; sending 1011", ws->peer, code);
        code = WS_CLOSE_CODE_INTERNAL_ERROR;
    }
    start_close(ws, code, reason, reason_fit(reason));
}

void ws_close_after_send(ws_conn_t *ws, uint16_t code, const char *reason)
{
    if (!ws || ws->state != WS_OPEN)
        return;
    if (!code_is_sendable(code)) {
        log_error("ws %s: close code %u may not be sent; sending 1011", ws->peer, code);
        code = WS_CLOSE_CODE_INTERNAL_ERROR;
    }
    ws->goodbye_code = code;
    ws->goodbye_len = reason_fit(reason);
    if (ws->goodbye_len > 0)
        memcpy(ws->goodbye_reason, reason, ws->goodbye_len);
    ws->state = WS_GOODBYE;
    ws->deadline_set = false;
    pump(ws);
}

/* ------------------------------------------------------------------------------------------
 * Output
 * ---------------------------------------------------------------------------------------- */

/* Once our close frame has left http's buffer and wslay wants no more input (the peer's close
 * arrived, or wslay gave up reading after an error), the session is over. */
static void check_finished(ws_conn_t *ws)
{
    if (ws->state >= WS_LINGER)
        return;
    if (wslay_event_get_close_sent(ws->ctx) && http_raw_buffered(&ws->raw) == 0)
        ws->close_on_wire = true;
    if (ws->close_on_wire && !wslay_event_want_read(ws->ctx))
        linger(ws);
}

/* Moves what wslay holds into http (up to the high-water mark), queueing a pending goodbye once
 * the queue is empty. Deferred while wslay is on the stack. */
static void pump(ws_conn_t *ws)
{
    if (ws->in_wslay || ws->state >= WS_LINGER)
        return;
    for (;;) {
        if (ws->state == WS_GOODBYE && wslay_event_get_queued_msg_count(ws->ctx) == 0)
            queue_close(ws, ws->goodbye_code, ws->goodbye_reason, ws->goodbye_len);
        if (ws->state >= WS_LINGER || !wslay_event_want_write(ws->ctx))
            break;
        ws->in_wslay = true;
        int rc = wslay_event_send(ws->ctx);
        ws->in_wslay = false;
        if (rc != 0) {
            /* send_cb failed: http is closing the connection (or out of memory). */
            log_debug("ws %s: send failed (wslay error %d); closing", ws->peer, rc);
            linger(ws);
            return;
        }
        /* Once more only when that emptied the queue in front of a goodbye. */
        if (ws->state != WS_GOODBYE || wslay_event_get_queued_msg_count(ws->ctx) != 0)
            break;
    }
    check_finished(ws);
}

static ssize_t on_wslay_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
                             int flags, void *user_data)
{
    ws_conn_t *ws = user_data;
    size_t buffered = http_raw_buffered(&ws->raw);
    if (buffered >= SEND_HIGH_WATER) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK); /* on_drain pumps again */
        return -1;
    }
    int rc = http_raw_write(&ws->raw, data, len);
    if (rc == UV_ENOBUFS && buffered > 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (rc < 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    stats.bytes_out += len;
    return (ssize_t)len;
}

int ws_send_text(ws_conn_t *ws, const char *buf, size_t len)
{
    if (!ws || ws->state != WS_OPEN)
        return UV_ENOTCONN;
    size_t backlog = ws_backlog(ws);
    if (len > ws->lim.max_backlog_bytes || backlog > ws->lim.max_backlog_bytes - len ||
        wslay_event_get_queued_msg_count(ws->ctx) >= ws->lim.max_backlog_msgs) {
        log_info("ws %s: slow consumer (%zu bytes, %zu messages queued); closing", ws->peer,
                 backlog, wslay_event_get_queued_msg_count(ws->ctx));
        ws->slow = true;
        start_close(ws, WS_CLOSE_CODE_POLICY, "slow consumer", strlen("slow consumer"));
        return UV_ENOBUFS;
    }
    struct wslay_event_msg msg = {.opcode = WSLAY_TEXT_FRAME,
                                  .msg = (const uint8_t *)buf,
                                  .msg_length = len};
    int rc = wslay_event_queue_msg(ws->ctx, &msg);
    if (rc == WSLAY_ERR_NOMEM)
        return UV_ENOMEM;
    if (rc != 0)
        return UV_ENOTCONN; /* NO_MORE_MSG: wslay has a close queued */
    stats.messages_out++;
    if (backlog + len > ws->lim.max_backlog_bytes / 2)
        ws->backlog_high = true;
    pump(ws);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Input
 * ---------------------------------------------------------------------------------------- */

static ssize_t on_wslay_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                             void *user_data)
{
    ws_conn_t *ws = user_data;
    if (ws->feed_len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < ws->feed_len ? len : ws->feed_len;
    memcpy(buf, ws->feed, n);
    ws->feed += n;
    ws->feed_len -= n;
    return (ssize_t)n;
}

/* A complete message or control frame. Pings were answered by wslay already. */
static void on_wslay_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                         void *user_data)
{
    ws_conn_t *ws = user_data;
    switch (arg->opcode) {
    case WSLAY_TEXT_FRAME:
        if (ws->state != WS_OPEN)
            return; /* closing: the owner is done with this client */
        stats.messages_in++;
        stats.bytes_in += arg->msg_length;
        /* wslay passes NULL for an empty message. */
        ws->ops->on_message(ws, arg->msg ? (const char *)arg->msg : "", arg->msg_length);
        break;
    case WSLAY_BINARY_FRAME:
        queue_close(ws, WS_CLOSE_CODE_UNSUPPORTED_DATA, "text messages only",
                    strlen("text messages only"));
        break;
    case WSLAY_CONNECTION_CLOSE:
        enter_closing(ws); /* wslay queued the answer, unless our own close was first */
        break;
    default: /* ping (answered), pong (any byte counts as life) */
        break;
    }
}

static void on_raw_data(http_raw_t *raw, const char *buf, size_t len)
{
    ws_conn_t *ws = container_of(raw, ws_conn_t, raw);
    ws->rx_seen = true;
    if (ws->state >= WS_LINGER || !wslay_event_want_read(ws->ctx))
        return; /* wslay reads no more (after a close or an error): dropped */
    ws->feed = (const uint8_t *)buf;
    ws->feed_len = len;
    ws->in_wslay = true;
    int rc = wslay_event_recv(ws->ctx);
    ws->in_wslay = false;
    ws->feed = NULL;
    ws->feed_len = 0; /* what wslay left after it stopped reading is dropped */
    if (rc != 0) {
        /* Out of memory: wslay queued a close; try to get it out, then go. */
        log_warn("ws %s: receive failed (wslay error %d); closing", ws->peer, rc);
        enter_closing(ws);
        pump(ws);
        linger(ws);
        return;
    }
    if (!wslay_event_want_read(ws->ctx))
        enter_closing(ws); /* a protocol error: wslay queued 1002/1007/1009 */
    pump(ws);
}

/* ------------------------------------------------------------------------------------------
 * http's raw callbacks
 * ---------------------------------------------------------------------------------------- */

static void maybe_notify_drain(ws_conn_t *ws)
{
    if (ws->state != WS_OPEN || !ws->backlog_high ||
        ws_backlog(ws) >= ws->lim.max_backlog_bytes / 2)
        return;
    ws->backlog_high = false;
    if (ws->ops->on_drain)
        ws->ops->on_drain(ws);
}

static void on_raw_drain(http_raw_t *raw)
{
    ws_conn_t *ws = container_of(raw, ws_conn_t, raw);
    pump(ws); /* what waited above the high-water mark; notes a written close frame */
    maybe_notify_drain(ws);
}

static void send_ping(ws_conn_t *ws, uint64_t now)
{
    struct wslay_event_msg ping = {.opcode = WSLAY_PING, .msg = NULL, .msg_length = 0};
    if (wslay_event_queue_msg(ws->ctx, &ping) == 0) {
        stats.pings++;
        ws->last_ping_ms = now;
    }
}

static void on_raw_tick(http_raw_t *raw, uint64_t now)
{
    ws_conn_t *ws = container_of(raw, ws_conn_t, raw);
    if (ws->rx_seen || !ws->clock_started) {
        ws->last_rx_ms = now;
        ws->rx_seen = false;
        ws->clock_started = true;
    }
    switch (ws->state) {
    case WS_OPEN: {
        uint64_t silent = now - ws->last_rx_ms;
        if (silent >= ws->lim.idle_timeout_ms)
            queue_close(ws, WS_CLOSE_CODE_PING_TIMEOUT, "ping timeout", strlen("ping timeout"));
        else if (silent >= ws->lim.ping_interval_ms &&
                 now - ws->last_ping_ms >= ws->lim.ping_interval_ms)
            send_ping(ws, now);
        break;
    }
    case WS_GOODBYE:
    case WS_CLOSING:
        if (!ws->deadline_set) {
            ws->deadline_ms = now + ws->lim.close_timeout_ms;
            ws->deadline_set = true;
        } else if (now >= ws->deadline_ms) {
            if (ws->state == WS_GOODBYE) /* the queue did not drain: the close goes first */
                queue_close(ws, ws->goodbye_code, ws->goodbye_reason, ws->goodbye_len);
            else
                linger(ws); /* no close from the peer (or ours is stuck behind a backlog) */
        }
        break;
    case WS_LINGER:
    case WS_CLOSED:
        return;
    }
    pump(ws);
    if (ws->state == WS_OPEN && ws->ops->on_tick)
        ws->ops->on_tick(ws, now);
    maybe_notify_drain(ws);
}

static void on_raw_shutdown(http_raw_t *raw)
{
    ws_close_after_send(container_of(raw, ws_conn_t, raw), WS_CLOSE_CODE_GOING_AWAY,
                        "server shutdown");
}

static void on_raw_close(http_raw_t *raw, int status)
{
    ws_conn_t *ws = container_of(raw, ws_conn_t, raw);
    ws->state = WS_CLOSED;
    /* 0: http flushed everything, FIN included, and the peer closed its side. */
    if (status == 0 && wslay_event_get_close_sent(ws->ctx))
        ws->close_on_wire = true;
    uint16_t code = WS_CLOSE_CODE_ABNORMAL;
    if (ws->close_on_wire)
        code = wslay_event_get_status_code_sent(ws->ctx);
    else if (wslay_event_get_close_received(ws->ctx))
        code = wslay_event_get_status_code_received(ws->ctx);
    if (ws->accepted) {
        stats.ended[ws_end_of(code, ws->slow)]++;
        log_debug("ws %s: closed with %u (http status %s)", ws->peer, code,
                  status ? uv_err_name(status) : "ok");
        ws->ops->on_close(ws, code);
    }
    wslay_event_context_free(ws->ctx);
    free(ws);
}

static const http_raw_ops_t raw_ops = {
    .on_data = on_raw_data,
    .on_drain = on_raw_drain,
    .on_tick = on_raw_tick,
    .on_shutdown = on_raw_shutdown,
    .on_close = on_raw_close,
};

static const struct wslay_event_callbacks wslay_callbacks = {
    .recv_callback = on_wslay_recv,
    .send_callback = on_wslay_send,
    .on_msg_recv_callback = on_wslay_msg,
};

/* ------------------------------------------------------------------------------------------
 * Handshake
 * ---------------------------------------------------------------------------------------- */

int ws_accept_value(const char *key, char out[WS_ACCEPT_LEN + 1])
{
    if (!key || strlen(key) != KEY_LEN || key[KEY_LEN - 2] != '=' || key[KEY_LEN - 1] != '=')
        return UV_EINVAL;
    unsigned char raw[KEY_LEN];
    if (EVP_DecodeBlock(raw, (const unsigned char *)key, KEY_LEN) != KEY_DECODED)
        return UV_EINVAL; /* -1 for a character outside the base64 alphabet */
    char cat[KEY_LEN + sizeof WS_GUID - 1];
    memcpy(cat, key, KEY_LEN);
    memcpy(cat + KEY_LEN, WS_GUID, sizeof WS_GUID - 1);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    if (!EVP_Digest(cat, sizeof cat, digest, &digest_len, EVP_sha1(), NULL) || digest_len != 20)
        return UV_EINVAL;
    EVP_EncodeBlock((unsigned char *)out, digest, 20); /* 28 characters and a NUL */
    return 0;
}

static bool origin_allowed(const ws_options_t *opts, const char *origin)
{
    if (!origin)
        return true; /* not a browser: the token is what authenticates it */
    if (opts->n_origins == 1 && strcmp(opts->origins[0], "*") == 0)
        return true;
    for (size_t i = 0; i < opts->n_origins; i++)
        if (strcasecmp(opts->origins[i], origin) == 0) /* scheme and host are case-blind */
            return true;
    return false;
}

/* Looks at every Sec-WebSocket-Protocol header (a client may send several). Returns 0 with
 * *chosen set (or NULL when nothing is to be echoed), or 400. */
static int pick_subprotocol(http_request_t *req, const ws_options_t *opts, const char **chosen)
{
    bool offered = false;
    *chosen = NULL;
    size_t n = http_request_header_count(req);
    for (size_t i = 0; i < n; i++) {
        const char *name, *value, *item;
        size_t len;
        if (!http_request_header_at(req, i, &name, &value) ||
            strcasecmp(name, "Sec-WebSocket-Protocol") != 0)
            continue;
        while (list_next(&value, &item, &len)) {
            offered = true;
            /* Subprotocol names are case-sensitive (RFC 6455 section 4.1). */
            if (opts->subprotocol && strlen(opts->subprotocol) == len &&
                memcmp(item, opts->subprotocol, len) == 0)
                *chosen = opts->subprotocol;
        }
    }
    if (!offered || !opts->subprotocol)
        return 0;
    return *chosen ? 0 : 400;
}

/* Returns 0 with accept and *subprotocol filled, or the status to refuse with and *why. */
static int check_handshake(http_request_t *req, const ws_options_t *opts, char *accept,
                           const char **subprotocol, const char **why)
{
    if (strcmp(http_request_method(req), "GET") != 0) {
        *why = "WebSocket handshakes use GET";
        return 405;
    }
    if (!http_request_is_upgrade(req)) {
        *why = "this is a WebSocket endpoint: upgrade required";
        return 426;
    }
    const char *upgrade = http_request_header(req, "Upgrade");
    if (!upgrade || !list_has_token(upgrade, "websocket")) {
        *why = "Upgrade must be websocket";
        return 400;
    }
    const char *version = http_request_header(req, "Sec-WebSocket-Version");
    if (!version || strcmp(version, "13") != 0) {
        *why = "unsupported Sec-WebSocket-Version (13 only)";
        return 426;
    }
    if (ws_accept_value(http_request_header(req, "Sec-WebSocket-Key"), accept) < 0) {
        *why = "invalid Sec-WebSocket-Key";
        return 400;
    }
    if (!origin_allowed(opts, http_request_header(req, "Origin"))) {
        *why = "origin not allowed";
        return 403;
    }
    if (pick_subprotocol(req, opts, subprotocol) != 0) {
        *why = "unsupported Sec-WebSocket-Protocol";
        return 400;
    }
    return 0;
}

static void count_refusal(int status)
{
    switch (status) {
    case 400:
        stats.refused[WS_REFUSED_400]++;
        break;
    case 403:
        stats.refused[WS_REFUSED_403]++;
        break;
    case 405:
        stats.refused[WS_REFUSED_405]++;
        break;
    case 426:
        stats.refused[WS_REFUSED_426]++;
        break;
    default:
        stats.refused[WS_REFUSED_5XX]++;
        break;
    }
}

/* Answers req (which frees it) with status and a one-line reason. */
static void refuse(http_request_t *req, int status, const char *why)
{
    http_header_t headers[2];
    size_t n = 0;
    if (status == 405) {
        headers[n++] = (http_header_t){"Allow", "GET"};
    } else if (status == 426) {
        headers[n++] = (http_header_t){"Upgrade", "websocket"};
        headers[n++] = (http_header_t){"Sec-WebSocket-Version", "13"};
    }
    char body[128];
    int len = snprintf(body, sizeof body, "%s\n", why);
    if (len < 0 || (size_t)len >= sizeof body)
        len = 0;
    log_debug("ws: handshake refused with %d: %s", status, why);
    count_refusal(status);
    http_respond_headers(req, status, "text/plain", headers, n, body, (size_t)len);
}

static limits_t limits_of(const ws_options_t *o)
{
    return (limits_t){
        .max_message = o->max_message ? o->max_message : DEFAULT_MAX_MESSAGE,
        .max_backlog_bytes = o->max_backlog_bytes ? o->max_backlog_bytes
                                                  : DEFAULT_MAX_BACKLOG_BYTES,
        .max_backlog_msgs = o->max_backlog_msgs ? o->max_backlog_msgs
                                                : DEFAULT_MAX_BACKLOG_MSGS,
        .ping_interval_ms = o->ping_interval_ms ? o->ping_interval_ms
                                                : DEFAULT_PING_INTERVAL_MS,
        .idle_timeout_ms = o->idle_timeout_ms ? o->idle_timeout_ms : DEFAULT_IDLE_TIMEOUT_MS,
        .close_timeout_ms = o->close_timeout_ms ? o->close_timeout_ms
                                                : DEFAULT_CLOSE_TIMEOUT_MS,
    };
}

/* A session before the upgrade: nothing is written yet. Returns NULL when out of memory. */
static ws_conn_t *conn_new(http_request_t *req, const ws_options_t *opts, const ws_ops_t *ops,
                           void *data, const char *subprotocol)
{
    ws_conn_t *ws = calloc(1, sizeof *ws);
    if (!ws)
        return NULL;
    if (wslay_event_context_server_init(&ws->ctx, &wslay_callbacks, ws) != 0) {
        free(ws);
        return NULL;
    }
    ws->lim = limits_of(opts);
    /* Always set: wslay's default is 2 GiB, allocated per frame from the header's length. */
    wslay_event_config_set_max_recv_msg_length(ws->ctx, ws->lim.max_message);
    ws->ops = ops;
    ws->data = data;
    ws->subprotocol = subprotocol;
    ws->state = WS_OPEN;
    ws->raw.ops = &raw_ops;
    http_request_peer(req, ws->peer, sizeof ws->peer);
    return ws;
}

static void conn_free(ws_conn_t *ws)
{
    wslay_event_context_free(ws->ctx);
    free(ws);
}

int ws_accept(http_request_t *req, const ws_options_t *opts, const ws_ops_t *ops, void *data,
              ws_conn_t **out)
{
    if (!req)
        return UV_EINVAL;
    if (!opts || !ops || !ops->on_message || !ops->on_close || !out ||
        (opts->n_origins > 0 && !opts->origins)) {
        log_error("ws: ws_accept called without options, callbacks or out");
        refuse(req, 500, "internal error");
        return UV_EINVAL;
    }
    char accept[WS_ACCEPT_LEN + 1];
    const char *subprotocol = NULL, *why = NULL;
    int status = check_handshake(req, opts, accept, &subprotocol, &why);
    if (status != 0) {
        refuse(req, status, why);
        return UV_EPROTO;
    }
    char head[512];
    int head_len = snprintf(head, sizeof head,
                            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                            "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s%s\r\n",
                            accept, subprotocol ? "Sec-WebSocket-Protocol: " : "",
                            subprotocol ? subprotocol : "", subprotocol ? "\r\n" : "");
    if (head_len < 0 || (size_t)head_len >= sizeof head) {
        log_error("ws: subprotocol option too long");
        refuse(req, 500, "internal error");
        return UV_EINVAL;
    }
    ws_conn_t *ws = conn_new(req, opts, ops, data, subprotocol);
    if (!ws) {
        log_error("ws: out of memory accepting a connection");
        refuse(req, 503, "out of memory");
        return UV_ENOMEM;
    }
    int rc = http_request_upgrade(req, &ws->raw);
    if (rc < 0) {
        /* req is untouched and still ours to answer. */
        conn_free(ws);
        if (rc == UV_EINVAL)
            log_error("ws: upgrade refused by http (route without HTTP_ROUTE_UPGRADE?)");
        refuse(req, rc == UV_EINVAL ? 500 : 503,
               rc == UV_ECANCELED ? "server shutting down" : "cannot upgrade");
        return rc;
    }
    rc = http_raw_write(&ws->raw, head, (size_t)head_len);
    if (rc < 0) {
        /* http owns the connection now: on_close frees ws without telling an owner. */
        log_error("ws: cannot write the 101: %s", uv_strerror(rc));
        ws->state = WS_LINGER;
        http_raw_abort(&ws->raw);
        return rc;
    }
    ws->accepted = true;
    stats.accepted++;
    *out = ws;
    return 0;
}
