/* ws.h - the gateway's WebSocket layer (RFC 6455, text messages only) on top of common/http.h's
 * raw mode, with wslay 1.1.1 doing the framing.
 *
 * An HTTP_ROUTE_UPGRADE handler calls ws_accept(): it checks the handshake, answers refusals
 * itself, writes the 101 and from then on the connection is a ws_conn_t that delivers complete
 * text messages to its owner's ws_ops_t and queues the owner's messages for the client.
 *
 * What it takes care of, so that the owner does not have to (see shared/notes/websocket.md for
 * the measured facts behind each point):
 *   - limits: a message over max_message -> close 1009; a binary message -> 1003; invalid UTF-8
 *     -> 1007; an unmasked or otherwise malformed frame -> 1002 (wslay); a client that does not
 *     read while we send (backlog over max_backlog_bytes or max_backlog_msgs) -> 1008 "slow
 *     consumer". Every buffer is bounded.
 *   - liveness without timers of its own: on the http server's sweep tick it pings a silent
 *     client and closes it with 4002 "ping timeout" when it stays silent; any byte received
 *     counts as life. Times therefore have the tick's granularity (http tick_ms).
 *   - the close handshake in the right order: a close frame is only followed by the TCP close
 *     once the frame has left our buffers and the peer's close came back (or close_timeout_ms
 *     passed); then http_raw_close sends FIN and lingers, so the close code is never lost to
 *     an RST. A server shutdown says 1001 "server shutdown" after what is already queued.
 *   - on_close exactly once, last, with the close code as the client saw it.
 *
 * Everything runs on the loop's thread; nothing here is thread-safe, the counters included. */
#ifndef INTEGRAL_GATEWAY_WS_H
#define INTEGRAL_GATEWAY_WS_H

#include "http.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ws_conn ws_conn_t; /* opaque; allocated by ws_accept, freed after on_close */

/* Close codes this layer sends itself (RFC 6455 section 7.4, plus our application range). */
#define WS_CLOSE_CODE_NORMAL 1000
#define WS_CLOSE_CODE_GOING_AWAY 1001
#define WS_CLOSE_CODE_PROTOCOL_ERROR 1002
#define WS_CLOSE_CODE_UNSUPPORTED_DATA 1003
#define WS_CLOSE_CODE_NO_STATUS 1005 /* never on the wire: an empty close frame */
#define WS_CLOSE_CODE_ABNORMAL 1006  /* never on the wire: the TCP connection dropped */
#define WS_CLOSE_CODE_INVALID_DATA 1007
#define WS_CLOSE_CODE_POLICY 1008
#define WS_CLOSE_CODE_TOO_BIG 1009
#define WS_CLOSE_CODE_INTERNAL_ERROR 1011
#define WS_CLOSE_CODE_PING_TIMEOUT 4002

#define WS_MAX_CLOSE_REASON 123 /* bytes: a control frame carries at most 125 */

typedef struct {
    /* A complete text message (wslay reassembles fragments), valid UTF-8. buf is borrowed: valid
     * during the call only, not NUL-terminated. Not called any more once the connection is
     * closing (after ws_close, ws_close_after_send, or the peer's close). Required. */
    void (*on_message)(ws_conn_t *ws, const char *buf, size_t len);
    /* The backlog fell back under half of max_backlog_bytes after being above it. Optional. */
    void (*on_drain)(ws_conn_t *ws);
    /* Every sweep tick while the connection is open (not once it is closing), with uv_now of
     * the loop: the owner checks its own deadlines here (auth deadline, token expiry).
     * Optional. */
    void (*on_tick)(ws_conn_t *ws, uint64_t now_ms);
    /* Exactly once, last. code: the close code that ended the session as seen on the wire: the
     * one we sent (when our close frame left our buffers), else the one the peer sent, else
     * 1006 for a dropped TCP connection (1005 stands for an empty close frame). ws is freed
     * right after this returns; ws_* calls on it from here are no-ops. Required. */
    void (*on_close)(ws_conn_t *ws, uint16_t code);
} ws_ops_t;

/* Options. Zero (or NULL) means the default given here, except origins (see there). */
typedef struct {
    size_t max_message;        /* 64 KiB: a bigger message -> close 1009 */
    size_t max_backlog_bytes;  /* 1 MiB: queued-in-wslay + buffered-in-http over this -> close
                                  1008 "slow consumer" */
    unsigned max_backlog_msgs; /* 4096: the same, in messages queued in wslay */
    unsigned ping_interval_ms; /* 20000: a ping after this long without receiving anything */
    unsigned idle_timeout_ms;  /* 60000: nothing received for this long -> close 4002 */
    unsigned close_timeout_ms; /* 3000: after our close frame, how long to wait for the peer's
                                  close before dropping the connection; also how long
                                  ws_close_after_send waits for the queue to drain */
    const char *const *origins; /* allowlist of Origin values (scheme://host[:port], compared
                                   case-insensitively). A request WITH an Origin not in it ->
                                   403; a request without Origin (non-browser clients) is
                                   allowed. n_origins == 1 && origins[0] == "*" allows any;
                                   an empty list refuses every request that has an Origin. */
    size_t n_origins;
    const char *subprotocol; /* e.g. "integral.v1": when the client offers
                                Sec-WebSocket-Protocol, the list must contain it and it is
                                echoed, else 400; a client offering none is accepted. NULL: no
                                subprotocol is echoed and offers are ignored. */
} ws_options_t;

/* From an HTTP_ROUTE_UPGRADE route handler: takes req (it is answered or upgraded in every
 * case, and invalid after the call).
 *
 * Checks the handshake in this order, answering a refusal itself with a short text/plain
 * reason (http adds Connection: close):
 *   method GET                                  else 405 with Allow: GET
 *   an upgrade request (Upgrade + Connection)   else 426 with Upgrade: websocket
 *   Upgrade: websocket                          else 400
 *   Sec-WebSocket-Version: 13                   else 426 with Sec-WebSocket-Version: 13
 *   Sec-WebSocket-Key: 24 base64 chars, 16 bytes else 400
 *   Origin absent or allowed                    else 403
 *   subprotocol, when offered (see options)     else 400
 * On success writes the 101 (no Sec-WebSocket-Extensions: permessage-deflate is declined),
 * starts the WebSocket session, sets *out and returns 0; callbacks start on a later loop
 * iteration. opts and ops are borrowed and must outlive the connection (static configuration
 * in practice); data is the owner's, kept and never touched.
 * Returns UV_EPROTO for a refused handshake, UV_ENOMEM (answered 503), UV_ECANCELED when the
 * server is closing (answered 503), UV_ENOTCONN when the client is already gone, or UV_EINVAL
 * for a programming error (NULL argument, a route without HTTP_ROUTE_UPGRADE: answered 500). */
int ws_accept(http_request_t *req, const ws_options_t *opts, const ws_ops_t *ops, void *data,
              ws_conn_t **out);

#define WS_ACCEPT_LEN 28 /* base64 of a SHA-1 digest */

/* The Sec-WebSocket-Accept value for a Sec-WebSocket-Key: base64(SHA-1(key + RFC GUID)), into
 * out (NUL-terminated). Returns 0, or UV_EINVAL when key is not 24 base64 characters encoding
 * 16 bytes. No I/O (ws_accept uses it; exposed for tests and tools). */
int ws_accept_value(const char *key, char out[WS_ACCEPT_LEN + 1]);

void *ws_data(const ws_conn_t *ws);
void ws_set_data(ws_conn_t *ws, void *data);

/* "ip:port" of the client, for logs ("unknown" when the socket had none). Valid
 * as long as ws. */
const char *ws_peer(const ws_conn_t *ws);

/* The negotiated subprotocol (opts->subprotocol), or NULL when the client offered none. */
const char *ws_subprotocol(const ws_conn_t *ws);

/* Queues a text message (buf copied; it must be valid UTF-8). Returns 0; UV_ENOTCONN once the
 * connection is closing; UV_ENOBUFS when it would take the backlog over max_backlog_bytes or
 * max_backlog_msgs - ws has then ALREADY started closing with 1008 "slow consumer" (the close
 * overtakes the backlog), so the caller just drops its reference; UV_ENOMEM (nothing queued,
 * the connection stays open). */
int ws_send_text(ws_conn_t *ws, const char *buf, size_t len);

/* Kick: queues a close frame now, ahead of any queued message (a slow client's backlog is not
 * worth waiting for), then waits close_timeout_ms for the peer's close. reason (may be NULL)
 * is copied and truncated to WS_MAX_CLOSE_REASON bytes on a UTF-8 boundary. code must be one
 * that may be sent (1000-1003, 1007-1011, 3000-4999); another is replaced by 1011 and logged.
 * No-op once closing. */
void ws_close(ws_conn_t *ws, uint16_t code, const char *reason);

/* Goodbye: queues the close frame only after every message queued so far has been written
 * (1000, and 1001 at shutdown). New messages are refused from now on. If the queue has not
 * drained within close_timeout_ms, the close goes out anyway, ahead of what is left. A later
 * ws_close overrides it; no-op once closing. */
void ws_close_after_send(ws_conn_t *ws, uint16_t code, const char *reason);

/* Bytes queued for the client: held by wslay plus buffered in http, for metrics and the slow
 * consumer check. */
size_t ws_backlog(const ws_conn_t *ws);

/* ---------------------------------------------------------------------------------------------
 * Counters (process-wide, monotonic, loop thread only)
 * ------------------------------------------------------------------------------------------- */

/* How sessions ended, from the code in on_close. */
typedef enum {
    WS_END_NORMAL,       /* 1000 (and 1005, an empty close frame) */
    WS_END_GOING_AWAY,   /* 1001: server shutdown, or the browser left the page */
    WS_END_PROTOCOL,     /* 1002, 1003, 1007 and other 1xxx: the client broke the protocol */
    WS_END_TOO_BIG,      /* 1009 */
    WS_END_SLOW,         /* 1008 sent by the backlog check ("slow consumer") */
    WS_END_POLICY,       /* other 1008 */
    WS_END_PING_TIMEOUT, /* 4002 */
    WS_END_APP,          /* other 3000-4999: the owner's kicks */
    WS_END_DROPPED,      /* 1006: no close frame either way (TCP dropped, deadline passed) */
    WS_END_COUNT
} ws_end_t;

/* Refused handshakes, by the status answered. */
typedef enum {
    WS_REFUSED_400,
    WS_REFUSED_403,
    WS_REFUSED_405,
    WS_REFUSED_426,
    WS_REFUSED_5XX, /* out of memory, server closing, bad route */
    WS_REFUSED_COUNT
} ws_refused_t;

typedef struct {
    uint64_t accepted;                     /* sessions started (101 written) */
    uint64_t messages_in;                  /* text messages delivered to owners */
    uint64_t bytes_in;                     /* their payload bytes */
    uint64_t messages_out;                 /* text messages queued by ws_send_text */
    uint64_t bytes_out;                    /* bytes handed to http: frames, headers included */
    uint64_t pings;                        /* pings sent to silent clients */
    uint64_t ended[WS_END_COUNT];          /* sessions ended, by ws_end_t */
    uint64_t refused[WS_REFUSED_COUNT];    /* handshakes refused, by ws_refused_t */
} ws_stats_t;

/* The counters, live (for metrics readers and tests). */
const ws_stats_t *ws_stats(void);

/* "normal", "going_away", ... (static) for metric labels; "?" out of range. */
const char *ws_end_name(ws_end_t end);

/* The ws_end_t that a session closed with code (and, for 1008, slow or not) counts as. */
ws_end_t ws_end_of(uint16_t code, bool slow);

#endif
