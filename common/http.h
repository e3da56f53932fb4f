/* http.h - a small HTTP/1.1 server on a libuv loop (http-parser 2.9.4), with a raw mode for
 * protocols that take over the connection after an Upgrade (the gateway's WebSocket layer).
 *
 * What it does:
 *   - Routes by method and path: exact paths, or prefixes with HTTP_ROUTE_PREFIX. A GET route
 *     also answers HEAD (same headers, no body). Unknown path -> 404; known path with another
 *     method -> 405 with an Allow header.
 *   - Keep-alive (HTTP/1.1 default; HTTP/1.0 always gets Connection: close), pipelining with
 *     the answers in request order, one request handled at a time per connection.
 *   - Limits, each answered and followed by a close: headers over HTTP_MAX_HEADER_BYTES in all
 *     or one header over max_header_value -> 431, URL over max_url -> 414, body over max_body
 *     -> 413 (before the body is read when Content-Length says so), malformed -> 400, a request
 *     not complete within request_timeout_ms -> 408. "Expect: 100-continue" is honoured.
 *   - Asynchronous handlers: a handler may return without answering and call http_respond
 *     later (after a Redis reply, say). The connection is not read meanwhile; bytes already
 *     received after that request wait in a per-connection stash (at most one read, 64 KiB).
 *   - Raw mode: an HTTP_ROUTE_UPGRADE handler may take the connection over with
 *     http_request_upgrade(); from then on bytes go to its http_raw_ops_t callbacks and it
 *     writes with http_raw_write() (WebSocket framing lives in the caller, not here).
 *   - Timers: ONE sweep timer per server (tick_ms) drives the request timeout, the keep-alive
 *     idle timeout, the linger deadline, the shutdown deadline and the raw on_tick callback.
 *   - Output is coalesced per connection and flushed once per loop iteration: uv_try_write
 *     first, then the rest moves to a single uv_write in flight.
 *   - Graceful close everywhere: after a final answer (or http_raw_close) the server flushes,
 *     sends FIN (uv_shutdown), keeps reading and discarding until the peer's EOF or linger_ms,
 *     then closes, so that a client still sending never gets an RST that eats the answer.
 *
 * Everything runs on the loop's thread; nothing here is thread-safe. Errors are 0 or a
 * negative libuv error code (uv_strerror() gives the text). The process must ignore SIGPIPE
 * (service.c does): a write to a vanished client is then an EPIPE that closes it. */
#ifndef INTEGRAL_HTTP_H
#define INTEGRAL_HTTP_H

#include "metrics.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Request line plus headers, in bytes. http-parser's limit is process-global
 * (http_parser_set_max_header_size), so this is set once for every server in the process. */
#define HTTP_MAX_HEADER_BYTES 8192

typedef struct http_server http_server_t;
typedef struct http_request http_request_t;
typedef struct http_conn http_conn_t; /* private: one client connection */

/* ---------------------------------------------------------------------------------------------
 * Server
 * ------------------------------------------------------------------------------------------- */

/* Options. Zero (or NULL) means the default given here. */
typedef struct {
    const char *host;             /* "127.0.0.1": an IPv4 or IPv6 literal ("::1", no
                                     brackets); copied */
    int port;                     /* 0: an ephemeral port (see http_server_port) */
    unsigned max_connections;     /* 10000: past it a connection is accepted and closed at once,
                                     and counted as rejected */
    const char *server_name;      /* "integral": the Server header; copied */
    metrics_t *metrics;           /* kept, may be NULL; must outlive the server */
    size_t max_body;              /* 64 KiB: a larger request body -> 413 */
    size_t max_url;               /* 2 KiB: a longer request target -> 414 */
    size_t max_header_value;      /* 4 KiB: a longer header name or value -> 431 (bearer
                                     tokens exceed 1 KiB); all headers: HTTP_MAX_HEADER_BYTES */
    unsigned max_headers;         /* 64: more header lines -> 431 */
    unsigned request_timeout_ms;  /* 10000: a request (headers and body) must arrive within
                                     this from its first byte, and the first request of a
                                     connection within this from accept (slowloris guard) */
    unsigned idle_timeout_ms;     /* 10000: a keep-alive connection with no request and no
                                     write progress for this long is closed */
    unsigned tick_ms;             /* 250: the sweep timer's period (timeout granularity and
                                     the raw on_tick period) */
    unsigned linger_ms;           /* 2000: after our FIN, how long to wait for the peer's EOF */
    unsigned shutdown_timeout_ms; /* 5000: http_server_close forces connections closed after */
    size_t max_raw_buffered;      /* 8 MiB: http_raw_write refuses to buffer more (ENOBUFS) */
} http_server_options_t;

/* Handles one request. req is owned by the server but lent to the handler until it is
 * answered: the handler (now or later) must call exactly one of http_respond,
 * http_respond_headers, or (successfully) http_request_upgrade. */
typedef void (*http_handler_cb)(http_request_t *req, void *data);

/* Called once the server has closed every connection and handle; srv is freed right after. */
typedef void (*http_server_close_cb)(http_server_t *srv, void *data);

/* Creates a server on loop (not listening yet). opts is copied (host and server_name too;
 * metrics is kept). Returns 0 and *out, or UV_EINVAL / UV_ENOMEM with *out untouched. A
 * server is freed only by http_server_close, which must run before the loop is closed. */
int http_server_new(http_server_t **out, uv_loop_t *loop, const http_server_options_t *opts);

/* Route flags. */
#define HTTP_ROUTE_PREFIX 0x1u  /* path is a prefix ("/static/"); the longest prefix wins and
                                   an exact route wins over any prefix */
#define HTTP_ROUTE_UPGRADE 0x2u /* the handler may take the connection over (raw mode) */

/* Adds a route. method: "GET", "POST", ... (an http-parser method name; borrowed, compared
 * case-sensitively) or NULL for any method. path: borrowed, copied; starts with '/' and is
 * matched against the undecoded path (query removed). data is kept and passed to handler.
 * Returns 0, UV_EINVAL (bad method or path, NULL handler), UV_EEXIST (same method, path and
 * PREFIX flag), or UV_ENOMEM. */
int http_server_route(http_server_t *srv, const char *method, const char *path, unsigned flags,
                      http_handler_cb handler, void *data);

/* Binds and listens (backlog 511) and starts the sweep timer. Returns 0, UV_EINVAL for a host
 * that is not an IP literal, or the libuv error of bind/listen (UV_EADDRINUSE...). After a
 * failure the server must still be closed with http_server_close. */
int http_server_listen(http_server_t *srv);

/* The bound port (useful with port 0), or a negative libuv error before a successful listen. */
int http_server_port(const http_server_t *srv);

/* Closes the server: stops listening; closes idle connections at once; lets a request being
 * received or handled finish and answers it with Connection: close; calls the on_shutdown
 * hook of every raw connection (or http_raw_close when it has none) so that it can say goodbye
 * (WebSocket 1001). Whatever is still open after shutdown_timeout_ms is closed by force (raw
 * connections then get on_close(UV_ECANCELED); pending requests become orphans, see
 * http_respond). Then close_cb (may be NULL) is called once, asynchronously, and srv is
 * freed. Call exactly once; safe from inside any handler or callback of this server. */
void http_server_close(http_server_t *srv, http_server_close_cb close_cb, void *data);

/* Counters, monotonic since _new except connections. */
typedef struct {
    uint64_t responses; /* answers written, any status (101 from upgrades included) */
    uint64_t rejected;  /* connections closed at accept (over max_connections) */
    uint64_t timeouts;  /* connections closed by the request or idle timeout */
    unsigned connections; /* open now: HTTP, raw, and closing */
} http_server_stats_t;

void http_server_stats(const http_server_t *srv, http_server_stats_t *out);

/* ---------------------------------------------------------------------------------------------
 * Requests
 *
 * Every string returned here is borrowed from req: valid, NUL-terminated and unchanged until
 * req is answered. The connection is not read while a request is unanswered.
 * ------------------------------------------------------------------------------------------- */

/* "GET", "POST", ... (static). A HEAD request on a GET route says "HEAD". */
const char *http_request_method(const http_request_t *req);

/* The request path without the query, undecoded ("/api/x%20y"); "/" for an absolute URL
 * without a path. */
const char *http_request_path(const http_request_t *req);

/* Writes the client's address ("127.0.0.1:5000", "[::1]:5000") into out, for logs. Returns
 * 0, or UV_ENOTCONN with "unknown" in out. */
int http_request_peer(const http_request_t *req, char *out, size_t cap);

/* The query string after '?', undecoded, without the '?' ("" when there is none). */
const char *http_request_query(const http_request_t *req);

/* Decodes the first query parameter called name (compared after decoding; '+' is a space,
 * %XX a byte, invalid escapes stay literal) into out (cap bytes, NUL-terminated). A parameter
 * without '=' has the empty value. Returns the value's length, UV_ENOENT when absent, or
 * UV_ENOBUFS when it needs cap bytes or more (out then holds a truncated value). */
int http_request_query_param(const http_request_t *req, const char *name, char *out,
                             size_t cap);

/* The value of the first header called name (case-insensitive), trailing blanks removed, or
 * NULL. Trailers of a chunked body are appended to the headers. */
const char *http_request_header(const http_request_t *req, const char *name);

/* Header iteration: i < http_request_header_count(req). Returns false when i is out of range. */
size_t http_request_header_count(const http_request_t *req);
bool http_request_header_at(const http_request_t *req, size_t i, const char **name,
                            const char **value);

/* The request body (never NULL; NUL-terminated for convenience, but binary-safe with its
 * length) and its length, after any chunked decoding. */
const char *http_request_body(const http_request_t *req);
size_t http_request_body_len(const http_request_t *req);

/* True when the request asks to switch protocols (Upgrade plus Connection: upgrade, or
 * CONNECT). Only such a request may be upgraded; others on an upgrade route deserve a 426. */
bool http_request_is_upgrade(const http_request_t *req);

/* False once the connection has closed while the answer was pending (server close deadline,
 * a write error). The request must still be answered: http_respond then only frees it. */
bool http_request_connected(const http_request_t *req);

/* ---------------------------------------------------------------------------------------------
 * Responses. Each takes req and frees it: req is invalid after the call, whatever it returns.
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    const char *name;  /* borrowed; a token, e.g. "Location" */
    const char *value; /* borrowed; no CR or LF */
} http_header_t;

/* Answers req: status (200..599), content_type (NULL: no Content-Type header), body (copied;
 * may be NULL when len is 0). Adds Server, Date, Content-Length and Connection; 204 and 304
 * get neither body nor Content-Length; a HEAD request gets the headers only. The bytes are
 * written on the next loop iteration together with any other answer ready by then.
 * Returns 0 when queued, UV_ENOTCONN when the client is gone (nothing sent), or UV_EINVAL for
 * a bad status or header (a 500 is sent instead, and an error logged). */
int http_respond(http_request_t *req, int status, const char *content_type, const void *body,
                 size_t len);

/* As http_respond with extra headers (headers borrowed, copied, n_headers may be 0), e.g.
 * Location, Allow, Cache-Control. Must not include Content-Length, Connection or
 * Transfer-Encoding. */
int http_respond_headers(http_request_t *req, int status, const char *content_type,
                         const http_header_t *headers, size_t n_headers, const void *body,
                         size_t len);

/* ---------------------------------------------------------------------------------------------
 * Raw mode (after an Upgrade)
 *
 * The owner embeds an http_raw_t in its per-connection object, points ops at its callbacks and
 * calls http_request_upgrade from an HTTP_ROUTE_UPGRADE handler (at once or later). On success
 * it writes its own "101 Switching Protocols" with http_raw_write, and from then on:
 *   - on_data gets every byte the client sends, starting with any bytes that arrived after the
 *     upgrade request's headers (delivered on the next loop iteration, never inside
 *     http_request_upgrade);
 *   - on_drain is called when all written bytes have been handed to the kernel;
 *   - on_tick is called on every sweep tick (pings and idle checks need no timers of their own);
 *   - on_shutdown is called once when the server is closing;
 *   - on_close is called exactly once, last, when the TCP connection is closed.
 * Every callback gets the owner's http_raw_t (container_of gets back the owner's object). It
 * may call http_raw_write, http_raw_close, http_raw_abort and http_server_close. The
 * http_raw_t must stay valid until on_close has been called; after on_close the server never
 * touches it again, so on_close may free it.
 * ------------------------------------------------------------------------------------------- */

typedef struct http_raw http_raw_t;

typedef struct {
    /* Bytes from the client; buf is borrowed (the loop's shared read buffer): valid during the
     * call only. Required. */
    void (*on_data)(http_raw_t *self, const char *buf, size_t len);
    /* Everything written so far has left our buffers (http_raw_buffered() == 0). Optional. */
    void (*on_drain)(http_raw_t *self);
    /* The sweep tick; now_ms is uv_now() of the loop. Optional. */
    void (*on_tick)(http_raw_t *self, uint64_t now_ms);
    /* The server is closing: send a goodbye, then http_raw_close (the server forces the close
     * after shutdown_timeout_ms). Optional: without it the server calls http_raw_close. */
    void (*on_shutdown)(http_raw_t *self);
    /* The connection is closed. status: 0 after http_raw_close when the peer then closed its
     * side; UV_EOF when the peer closed first; UV_ETIMEDOUT when the linger deadline expired;
     * UV_ECANCELED after http_raw_abort or a forced server close; another negative libuv error
     * for a read or write failure. Required. */
    void (*on_close)(http_raw_t *self, int status);
} http_raw_ops_t;

struct http_raw {
    const http_raw_ops_t *ops; /* set by the owner before http_request_upgrade; kept */
    http_conn_t *conn;         /* private to http.c: NULL before the upgrade and after on_close */
};

/* Switches req's connection to raw mode with raw (kept: see above) and frees req. Returns 0,
 * or, with req untouched and still to be answered: UV_EINVAL (not an upgrade request, the
 * route lacks HTTP_ROUTE_UPGRADE, or raw->ops lacks on_data/on_close), UV_ENOTCONN (the client
 * is gone), UV_ECANCELED (the server is closing). */
int http_request_upgrade(http_request_t *req, http_raw_t *raw);

/* Queues len bytes (copied) for the client. Writes from one loop iteration are coalesced into
 * one write. Returns 0, UV_ENOTCONN after http_raw_close/abort or once the connection is
 * closing, or UV_ENOBUFS when more than max_raw_buffered bytes would be buffered (nothing
 * queued; the connection stays usable). */
int http_raw_write(http_raw_t *raw, const void *buf, size_t len);

/* Bytes written but not yet handed to the kernel: the backpressure measure. */
size_t http_raw_buffered(const http_raw_t *raw);

/* Graceful close: the queued bytes are written, then FIN; input is read and discarded until
 * the client's EOF or linger_ms; then on_close. No more on_data, on_drain or on_tick. */
void http_raw_close(http_raw_t *raw);

/* Closes at once; queued bytes are dropped; on_close(UV_ECANCELED) follows asynchronously. */
void http_raw_abort(http_raw_t *raw);

#endif
