/* http.c - HTTP/1.1 server on libuv with http-parser 2.9.4, plus raw mode after an Upgrade.
 * See http.h for the behaviour and shared/notes/websocket.md for the measured facts behind it.
 *
 * A connection is in one of four states:
 *   HTTP   -> parsing requests; at most one request is being handled at a time
 *   RAW    -> upgraded: bytes go to the owner's http_raw_ops_t
 *   LINGER -> closing gracefully: flush, uv_shutdown (FIN), read and discard until EOF/deadline
 *   CLOSED -> uv_close called; freed in its close callback
 * Transitions: HTTP -> RAW | LINGER | CLOSED, RAW -> LINGER | CLOSED, LINGER -> CLOSED.
 *
 * Work that must not run inside a caller's stack (flushing output, resuming a paused parser,
 * delivering stashed bytes, moving to LINGER) is queued per connection and done by one uv_idle
 * handle per server on the next loop iteration: "pump". So http_respond and http_raw_write
 * never call back into user code, and all output of one iteration goes out in one write. */
#include "http.h"

#include "log.h"
#include "utf8.h"

#include <arpa/inet.h>
#include <assert.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define READ_BUF_SIZE (64 * 1024)
#define OUTPUT_HIGH_WATER (256 * 1024) /* HTTP: stop parsing more requests above this */
#define LISTEN_BACKLOG 511
#define ACCEPT_WARN_INTERVAL_MS 10000
#define STATUS_MIN 100
#define STATUS_MAX 599

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

/* ------------------------------------------------------------------------------------------
 * Types
 * ---------------------------------------------------------------------------------------- */

/* Intrusive doubly-linked list; a node linked to itself is in no list. */
typedef struct link {
    struct link *prev, *next;
} link_t;

static void link_init(link_t *l)
{
    l->prev = l->next = l;
}

static bool link_empty(const link_t *l)
{
    return l->next == l;
}

static void link_push(link_t *head, link_t *l)
{
    l->prev = head->prev;
    l->next = head;
    head->prev->next = l;
    head->prev = l;
}

static void link_remove(link_t *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    link_init(l);
}

typedef struct {
    int method; /* enum http_method, or -1 for any */
    char *path;
    size_t path_len;
    unsigned flags;
    http_handler_cb handler;
    void *data;
} route_t;

typedef struct {
    uint32_t name, value; /* offsets into hbuf */
    uint32_t name_len, value_len;
} header_t;

struct http_request {
    http_conn_t *conn; /* NULL once the connection closed while this request was pending */
    const route_t *route;
    int method;
    unsigned short http_major, http_minor;
    bool keep_alive;
    bool head;    /* HEAD served by a GET route: no body in the answer */
    bool upgrade; /* parser->upgrade */
    char *url;    /* the request target; split in place into path and query */
    size_t url_len, url_cap;
    const char *path, *query;
    char *hbuf; /* "name\0value\0name\0value\0..." */
    size_t hlen, hcap;
    header_t *hdrs;
    size_t nhdrs, hdrs_cap;
    bool hdr_open; /* the last header is still being received */
    bool in_value; /* the last data callback was a header value */
    char *body;
    size_t body_len, body_cap;
};

typedef enum { CONN_HTTP, CONN_RAW, CONN_LINGER, CONN_CLOSED } conn_state_t;

struct http_conn {
    uv_tcp_t tcp;
    http_server_t *srv;
    link_t link; /* srv->conns */
    link_t work; /* srv->work while queued for a pump */
    conn_state_t state;
    http_parser parser;
    http_request_t *req;     /* being received; owned here */
    http_request_t *pending; /* handed to a handler, not answered yet; lent to the handler */
    int fail_status;         /* the 4xx/5xx a parser callback chose before failing */
    bool reading;
    bool close_after;  /* HTTP: close once the current answer is written; parse no more */
    bool upgrade_seen; /* HTTP: an upgrade request ended HTTP parsing on this connection */
    bool eof;          /* the peer's EOF was read */
    bool shutdown_started, shutdown_done;
    bool shutdown_notified; /* raw on_shutdown called */
    bool drain_owed;        /* raw: on_drain due when the output empties */
    unsigned requests;
    int close_status; /* raw: the status for on_close; first non-zero wins */
    uint64_t accepted_ms, request_start_ms, last_active_ms, linger_deadline_ms;
    char *stash; /* unparsed bytes held while parsing is paused (at most one read) */
    size_t stash_off, stash_len;
    char *obuf; /* output not yet handed to libuv */
    size_t olen, ocap;
    char *wbuf; /* output owned by the one uv_write in flight */
    size_t inflight;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    http_raw_t *raw;
};

struct http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_timer_t sweep;
    uv_idle_t pump;
    http_server_options_t opts; /* defaults applied; host and server_name point into ours */
    char *host, *server_name;
    route_t *routes;
    size_t nroutes, routes_cap;
    link_t conns;
    link_t work;
    unsigned nconns;
    unsigned rejecting; /* rejected connections whose handle is still closing */
    unsigned handles;   /* listener, sweep, pump: not yet closed */
    bool listening, closing, handles_closing;
    uint64_t close_deadline_ms;
    uint64_t last_accept_warn_ms;
    http_server_close_cb close_cb;
    void *close_data;
    http_server_stats_t stats;
    metrics_counter_t *m_responses[STATUS_MAX + 1];
    metrics_gauge_t *m_connections;
    metrics_counter_t *m_rejected;
    time_t date_at;
    char date[40];
    char rbuf[READ_BUF_SIZE]; /* shared by all connections: read_cb consumes synchronously */
};

static void conn_schedule(http_conn_t *c);
static void conn_close(http_conn_t *c, int status);
static void conn_linger(http_conn_t *c, int status);
static void conn_update_reading(http_conn_t *c);
static void on_pump(uv_idle_t *idle);
static void server_maybe_finish(http_server_t *srv);

/* ------------------------------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------------------------- */

/* Appends n bytes to a growable buffer, keeping room for a NUL after them. */
static int buf_append(char **buf, size_t *len, size_t *cap, const char *data, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t ncap = *cap ? *cap : 256;
        while (*len + n + 1 > ncap)
            ncap *= 2;
        char *nbuf = realloc(*buf, ncap);
        if (!nbuf)
            return UV_ENOMEM;
        *buf = nbuf;
        *cap = ncap;
    }
    if (n > 0)
        memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

static const char *status_text(int status)
{
    const char *s = http_status_str((enum http_status)status);
    return (s && s[0] != '<') ? s : "Unknown";
}

/* "Sun, 06 Nov 1994 08:49:37 GMT", cached per second; not locale-dependent. */
static const char *server_date(http_server_t *srv)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    if (now != srv->date_at) {
        struct tm tm;
        gmtime_r(&now, &tm);
        snprintf(srv->date, sizeof srv->date, "%s, %02d %s %04d %02d:%02d:%02d GMT",
                 days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900,
                 tm.tm_hour, tm.tm_min, tm.tm_sec);
        srv->date_at = now;
    }
    return srv->date;
}

/* True for an RFC 7230 token (header name). */
static bool is_token(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch <= 32 || ch >= 127 || strchr("()<>@,;:\\\"/[]?={}", ch))
            return false;
    }
    return true;
}

static bool is_header_value(const char *s)
{
    if (!s)
        return false;
    for (; *s; s++)
        if (*s == '\r' || *s == '\n')
            return false;
    return true;
}

/* Decodes a query component (in[0..n)) into out (cap > 0, NUL-terminated, truncated when
 * short). Returns the full decoded length. */
static size_t query_decode(char *out, size_t cap, const char *in, size_t n)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = in[i];
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%' && i + 2 < n && hex_digit_value(in[i + 1]) >= 0 &&
                   hex_digit_value(in[i + 2]) >= 0) {
            ch = (char)(hex_digit_value(in[i + 1]) * 16 + hex_digit_value(in[i + 2]));
            i += 2;
        }
        if (len + 1 < cap)
            out[len] = ch;
        len++;
    }
    out[len < cap ? len : cap - 1] = '\0';
    return len;
}

/* ------------------------------------------------------------------------------------------
 * Requests
 * ---------------------------------------------------------------------------------------- */

static void request_free(http_request_t *r)
{
    if (!r)
        return;
    free(r->url);
    free(r->hbuf);
    free(r->hdrs);
    free(r->body);
    free(r);
}

/* Terminates the header being received: a NUL after the name (and an empty value when none
 * came), a NUL after the value, trailing blanks trimmed. */
static int request_close_header(http_request_t *r)
{
    if (!r->hdr_open)
        return 0;
    header_t *h = &r->hdrs[r->nhdrs - 1];
    if (!r->in_value) {
        if (buf_append(&r->hbuf, &r->hlen, &r->hcap, "", 1) < 0)
            return UV_ENOMEM;
        h->value = (uint32_t)r->hlen;
        h->value_len = 0;
    }
    if (buf_append(&r->hbuf, &r->hlen, &r->hcap, "", 1) < 0)
        return UV_ENOMEM;
    while (h->value_len > 0 &&
           (r->hbuf[h->value + h->value_len - 1] == ' ' ||
            r->hbuf[h->value + h->value_len - 1] == '\t'))
        r->hbuf[h->value + --h->value_len] = '\0';
    r->hdr_open = false;
    r->in_value = false;
    return 0;
}

/* Splits the target in place into path and query. Returns 0, or -1 for a target that is
 * neither origin-form ("/p?q"), absolute-form ("http://h/p?q"), "*" nor a CONNECT authority. */
static int request_split_url(http_request_t *r)
{
    char *u = r->url;
    r->query = "";
    if (r->url_len == 0)
        return -1;
    char *start;
    if (u[0] == '/') {
        start = u;
    } else if (r->method == HTTP_CONNECT || (r->url_len == 1 && u[0] == '*')) {
        r->path = u;
        return 0;
    } else {
        struct http_parser_url pu;
        http_parser_url_init(&pu);
        if (http_parser_parse_url(u, r->url_len, 0, &pu) != 0)
            return -1;
        if (!(pu.field_set & (1 << UF_PATH))) {
            r->path = "/";
            if (pu.field_set & (1 << UF_QUERY)) {
                r->query = u + pu.field_data[UF_QUERY].off;
                u[pu.field_data[UF_QUERY].off + pu.field_data[UF_QUERY].len] = '\0';
            }
            return 0;
        }
        start = u + pu.field_data[UF_PATH].off;
    }
    char *hash = strchr(start, '#');
    if (hash)
        *hash = '\0';
    char *q = strchr(start, '?');
    if (q) {
        *q = '\0';
        r->query = q + 1;
    }
    r->path = start;
    return 0;
}

const char *http_request_method(const http_request_t *req)
{
    return http_method_str((enum http_method)req->method);
}

const char *http_request_path(const http_request_t *req)
{
    return req->path;
}

int http_request_peer(const http_request_t *req, char *out, size_t cap)
{
    struct sockaddr_storage addr;
    int len = sizeof addr;
    char host[INET6_ADDRSTRLEN] = "";
    snprintf(out, cap, "unknown");
    if (!req->conn || uv_tcp_getpeername(&req->conn->tcp, (struct sockaddr *)&addr, &len) != 0)
        return UV_ENOTCONN;
    int port = 0;
    if (addr.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&addr;
        uv_ip4_name(a, host, sizeof host);
        port = ntohs(a->sin_port);
        snprintf(out, cap, "%s:%d", host, port);
    } else if (addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&addr;
        uv_ip6_name(a, host, sizeof host);
        port = ntohs(a->sin6_port);
        snprintf(out, cap, "[%s]:%d", host, port);
    }
    return 0;
}

const char *http_request_query(const http_request_t *req)
{
    return req->query;
}

int http_request_query_param(const http_request_t *req, const char *name, char *out,
                             size_t cap)
{
    if (cap == 0)
        return UV_ENOBUFS;
    size_t name_len = strlen(name);
    const char *p = req->query;
    while (*p) {
        const char *end = strchr(p, '&');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        size_t klen = eq ? (size_t)(eq - p) : n;
        char key[256];
        size_t kdec = query_decode(key, sizeof key, p, klen);
        if (kdec == name_len && memcmp(key, name, name_len) == 0) {
            size_t vlen = eq ? n - klen - 1 : 0;
            size_t len = query_decode(out, cap, eq ? eq + 1 : p + n, vlen);
            if (len >= cap)
                return UV_ENOBUFS;
            return (int)len;
        }
        p += n;
        if (*p == '&')
            p++;
    }
    out[0] = '\0';
    return UV_ENOENT;
}

const char *http_request_header(const http_request_t *req, const char *name)
{
    for (size_t i = 0; i < req->nhdrs; i++)
        if (strcasecmp(req->hbuf + req->hdrs[i].name, name) == 0)
            return req->hbuf + req->hdrs[i].value;
    return NULL;
}

size_t http_request_header_count(const http_request_t *req)
{
    return req->nhdrs;
}

bool http_request_header_at(const http_request_t *req, size_t i, const char **name,
                            const char **value)
{
    if (i >= req->nhdrs)
        return false;
    *name = req->hbuf + req->hdrs[i].name;
    *value = req->hbuf + req->hdrs[i].value;
    return true;
}

const char *http_request_body(const http_request_t *req)
{
    return req->body ? req->body : "";
}

size_t http_request_body_len(const http_request_t *req)
{
    return req->body_len;
}

bool http_request_is_upgrade(const http_request_t *req)
{
    return req->upgrade;
}

bool http_request_connected(const http_request_t *req)
{
    return req->conn && req->conn->state == CONN_HTTP;
}

/* ------------------------------------------------------------------------------------------
 * Output
 * ---------------------------------------------------------------------------------------- */

static size_t conn_buffered(const http_conn_t *c)
{
    return c->olen + c->inflight;
}

static int conn_reserve(http_conn_t *c, size_t n)
{
    if (c->olen + n <= c->ocap)
        return 0;
    size_t ncap = c->ocap ? c->ocap : 4096;
    while (c->olen + n > ncap)
        ncap *= 2;
    char *nbuf = realloc(c->obuf, ncap);
    if (!nbuf)
        return UV_ENOMEM;
    c->obuf = nbuf;
    c->ocap = ncap;
    return 0;
}

static void count_response(http_server_t *srv, int status)
{
    srv->stats.responses++;
    if (!srv->opts.metrics || status < STATUS_MIN || status > STATUS_MAX)
        return;
    metrics_counter_t **slot = &srv->m_responses[status];
    if (!*slot) {
        char labels[32];
        snprintf(labels, sizeof labels, "code=\"%d\"", status);
        *slot = metrics_counter(srv->opts.metrics, "integral_http_requests_total",
                                "HTTP responses by status code.", labels);
    }
    if (*slot)
        metrics_counter_inc(*slot);
}

/* Appends a whole response to the connection's output. The caller has validated the extra
 * headers. Returns 0 or UV_ENOMEM. */
static int conn_append_response(http_conn_t *c, int status, const char *content_type,
                                const http_header_t *headers, size_t n_headers,
                                const void *body, size_t len, bool head, bool keep)
{
    http_server_t *srv = c->srv;
    bool no_body = status == 204 || status == 304;
    const char *reason = status_text(status);
    size_t need = 160 + strlen(reason) + strlen(srv->server_name) +
                  (content_type ? strlen(content_type) + 16 : 0);
    for (size_t i = 0; i < n_headers; i++)
        need += strlen(headers[i].name) + strlen(headers[i].value) + 4;
    size_t body_out = (head || no_body) ? 0 : len;
    if (conn_reserve(c, need + body_out) < 0)
        return UV_ENOMEM;
    char *p = c->obuf + c->olen;
    size_t room = c->ocap - c->olen;
    int n = snprintf(p, room, "HTTP/1.1 %d %s\r\nServer: %s\r\nDate: %s\r\n", status, reason,
                     srv->server_name, server_date(srv));
    size_t used = (size_t)n;
    if (content_type)
        used += (size_t)snprintf(p + used, room - used, "Content-Type: %s\r\n", content_type);
    /* None for 304 either: its Content-Length would have to be the 200's (RFC 7230 3.3.2). */
    if (!no_body)
        used += (size_t)snprintf(p + used, room - used, "Content-Length: %zu\r\n", len);
    used += (size_t)snprintf(p + used, room - used, "Connection: %s\r\n",
                             keep ? "keep-alive" : "close");
    for (size_t i = 0; i < n_headers; i++)
        used += (size_t)snprintf(p + used, room - used, "%s: %s\r\n", headers[i].name,
                                 headers[i].value);
    used += (size_t)snprintf(p + used, room - used, "\r\n");
    assert(used < room);
    if (body_out > 0)
        memcpy(p + used, body, body_out);
    c->olen += used + body_out;
    count_response(srv, status);
    return 0;
}

static void on_write(uv_write_t *wreq, int status);

/* Hands the output to the kernel: uv_try_write first; what remains moves (ownership and all)
 * to the single uv_write in flight. With a write in flight, new output waits in obuf and
 * on_write flushes it. Returns 0 or a libuv error (the caller closes). */
static int conn_flush(http_conn_t *c)
{
    if (c->olen == 0 || c->inflight > 0)
        return 0;
    uv_buf_t b = uv_buf_init(c->obuf, (unsigned)c->olen);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == UV_EAGAIN)
        n = 0;
    if (n < 0)
        return n;
    if (n > 0)
        c->last_active_ms = uv_now(c->srv->loop);
    if ((size_t)n == c->olen) {
        /* Free it: an idle connection then costs no output buffer at all. */
        free(c->obuf);
        c->obuf = NULL;
        c->olen = c->ocap = 0;
        return 0;
    }
    c->wbuf = c->obuf;
    c->inflight = c->olen - (size_t)n;
    c->obuf = NULL;
    c->olen = c->ocap = 0;
    b = uv_buf_init(c->wbuf + n, (unsigned)c->inflight);
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc < 0) {
        free(c->wbuf);
        c->wbuf = NULL;
        c->inflight = 0;
        return rc;
    }
    return 0;
}

/* Runs before the close callback even when uv_close cancelled the write (UV_ECANCELED), so the
 * connection is still allocated here. */
static void on_write(uv_write_t *wreq, int status)
{
    http_conn_t *c = container_of(wreq, http_conn_t, wreq);
    free(c->wbuf);
    c->wbuf = NULL;
    c->inflight = 0;
    if (c->state == CONN_CLOSED)
        return;
    if (status < 0) {
        conn_close(c, status);
        return;
    }
    c->last_active_ms = uv_now(c->srv->loop);
    conn_schedule(c);
}

/* ------------------------------------------------------------------------------------------
 * Errors from the parser and the sweep: answer, then close
 * ---------------------------------------------------------------------------------------- */

static void conn_send_error(http_conn_t *c, int status)
{
    request_free(c->req);
    c->req = NULL;
    char body[64];
    int n = snprintf(body, sizeof body, "%s\n", status_text(status));
    conn_append_response(c, status, "text/plain", NULL, 0, body, (size_t)n, false, false);
    c->close_after = true;
    conn_schedule(c);
}

static void conn_parse_error(http_conn_t *c, enum http_errno e)
{
    int status = c->fail_status;
    if (status == 0) {
        status = 400;
        if (e == HPE_HEADER_OVERFLOW)
            /* No header started yet: the request line (the URL) is what is too long. The
             * parser does not flush its marks on errors, so a first header *name* over the
             * whole limit would look the same; both get a 4xx and a close anyway. */
            status = (c->req && c->req->nhdrs == 0) ? 414 : 431;
    }
    log_debug("http: answering %d: %s (%s)", status, http_errno_name(e),
              http_errno_description(e));
    conn_send_error(c, status);
}

/* ------------------------------------------------------------------------------------------
 * Parser callbacks. Data callbacks may come in pieces (a token split across reads): append.
 * ---------------------------------------------------------------------------------------- */

static int fail(http_conn_t *c, int status)
{
    c->fail_status = status;
    return -1;
}

static int on_message_begin(http_parser *p)
{
    http_conn_t *c = p->data;
    request_free(c->req);
    c->req = calloc(1, sizeof *c->req);
    if (!c->req)
        return fail(c, 503);
    c->req->conn = c;
    c->request_start_ms = uv_now(c->srv->loop);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    http_conn_t *c = p->data;
    http_request_t *r = c->req;
    if (r->url_len + len > c->srv->opts.max_url)
        return fail(c, 414);
    if (buf_append(&r->url, &r->url_len, &r->url_cap, at, len) < 0)
        return fail(c, 503);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    http_conn_t *c = p->data;
    http_request_t *r = c->req;
    if (!r->hdr_open || r->in_value) {
        if (request_close_header(r) < 0)
            return fail(c, 503);
        if (r->nhdrs >= c->srv->opts.max_headers)
            return fail(c, 431);
        if (r->nhdrs == r->hdrs_cap) {
            size_t ncap = r->hdrs_cap ? r->hdrs_cap * 2 : 16;
            header_t *n = realloc(r->hdrs, ncap * sizeof *n);
            if (!n)
                return fail(c, 503);
            r->hdrs = n;
            r->hdrs_cap = ncap;
        }
        r->hdrs[r->nhdrs++] = (header_t){.name = (uint32_t)r->hlen};
        r->hdr_open = true;
        r->in_value = false;
    }
    header_t *h = &r->hdrs[r->nhdrs - 1];
    if (h->name_len + len > c->srv->opts.max_header_value)
        return fail(c, 431);
    if (buf_append(&r->hbuf, &r->hlen, &r->hcap, at, len) < 0)
        return fail(c, 503);
    h->name_len += (uint32_t)len;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    http_conn_t *c = p->data;
    http_request_t *r = c->req;
    if (!r->hdr_open)
        return fail(c, 400);
    header_t *h = &r->hdrs[r->nhdrs - 1];
    if (!r->in_value) {
        if (buf_append(&r->hbuf, &r->hlen, &r->hcap, "", 1) < 0)
            return fail(c, 503);
        h->value = (uint32_t)r->hlen;
        r->in_value = true;
    }
    if (h->value_len + len > c->srv->opts.max_header_value)
        return fail(c, 431);
    if (buf_append(&r->hbuf, &r->hlen, &r->hcap, at, len) < 0)
        return fail(c, 503);
    h->value_len += (uint32_t)len;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    http_conn_t *c = p->data;
    http_request_t *r = c->req;
    if (request_close_header(r) < 0)
        return fail(c, 503);
    r->method = (int)p->method;
    r->http_major = p->http_major;
    r->http_minor = p->http_minor;
    r->upgrade = p->upgrade;
    /* HTTP/1.0 always closes, even with "Connection: keep-alive". */
    r->keep_alive = http_should_keep_alive(p) && p->http_major == 1 && p->http_minor >= 1;
    if (request_split_url(r) < 0)
        return fail(c, 400);
    bool has_length = (p->flags & F_CONTENTLENGTH) != 0;
    if (has_length && p->content_length > c->srv->opts.max_body)
        return fail(c, 413); /* before reading the body */
    if (has_length && p->content_length > 0) {
        r->body = malloc((size_t)p->content_length + 1);
        if (!r->body)
            return fail(c, 503);
        r->body_cap = (size_t)p->content_length + 1;
    }
    const char *expect = http_request_header(r, "Expect");
    if (expect && strcasecmp(expect, "100-continue") == 0 && p->http_minor >= 1 &&
        (has_length ? p->content_length > 0 : (p->flags & F_CHUNKED) != 0)) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (conn_reserve(c, sizeof cont - 1) < 0)
            return fail(c, 503);
        memcpy(c->obuf + c->olen, cont, sizeof cont - 1);
        c->olen += sizeof cont - 1;
        conn_schedule(c);
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    http_conn_t *c = p->data;
    http_request_t *r = c->req;
    if (r->body_len + len > c->srv->opts.max_body)
        return fail(c, 413); /* chunked: the total is known only now */
    if (buf_append(&r->body, &r->body_len, &r->body_cap, at, len) < 0)
        return fail(c, 503);
    return 0;
}

static void dispatch(http_conn_t *c, http_request_t *r);

/* The request is complete: hand it to its handler. The parser is paused so that execute()
 * returns after this request; conn_parse decides whether to go on. */
static int on_message_complete(http_parser *p)
{
    http_conn_t *c = p->data;
    http_request_t *r = c->req;
    c->req = NULL;
    if (request_close_header(r) < 0) { /* trailers */
        c->req = r;
        return fail(c, 503);
    }
    if (p->upgrade)
        c->upgrade_seen = true; /* the rest of the stream is not HTTP */
    c->pending = r;
    c->requests++;
    http_parser_pause(p, 1);
    dispatch(c, r);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ------------------------------------------------------------------------------------------
 * Routing
 * ---------------------------------------------------------------------------------------- */

static bool route_matches_path(const route_t *rt, const char *path)
{
    if (rt->flags & HTTP_ROUTE_PREFIX)
        return strncmp(path, rt->path, rt->path_len) == 0;
    return strcmp(path, rt->path) == 0;
}

static bool same_pattern(const route_t *a, const route_t *b)
{
    return (a->flags & HTTP_ROUTE_PREFIX) == (b->flags & HTTP_ROUTE_PREFIX) &&
           strcmp(a->path, b->path) == 0;
}

/* The most specific pattern matching path: an exact route, else the longest prefix. */
static const route_t *find_pattern(const http_server_t *srv, const char *path)
{
    const route_t *best = NULL;
    for (size_t i = 0; i < srv->nroutes; i++) {
        const route_t *rt = &srv->routes[i];
        if (!route_matches_path(rt, path))
            continue;
        if (!(rt->flags & HTTP_ROUTE_PREFIX))
            return rt;
        if (!best || rt->path_len > best->path_len)
            best = rt;
    }
    return best;
}

static void respond_405(http_server_t *srv, http_request_t *r, const route_t *pattern)
{
    char allow[256] = "";
    size_t len = 0;
    bool has_get = false, has_head = false;
    for (size_t i = 0; i < srv->nroutes; i++) {
        const route_t *rt = &srv->routes[i];
        if (!same_pattern(rt, pattern))
            continue;
        const char *m = http_method_str((enum http_method)rt->method);
        has_get |= rt->method == HTTP_GET;
        has_head |= rt->method == HTTP_HEAD;
        len += (size_t)snprintf(allow + len, sizeof allow - len, "%s%s", len ? ", " : "", m);
        if (len >= sizeof allow)
            len = sizeof allow - 1;
    }
    if (has_get && !has_head)
        snprintf(allow + len, sizeof allow - len, ", HEAD");
    http_header_t h = {"Allow", allow};
    static const char body[] = "Method Not Allowed\n";
    http_respond_headers(r, 405, "text/plain", &h, 1, body, sizeof body - 1);
}

static void dispatch(http_conn_t *c, http_request_t *r)
{
    http_server_t *srv = c->srv;
    const route_t *pattern = find_pattern(srv, r->path);
    if (!pattern) {
        static const char body[] = "Not Found\n";
        http_respond(r, 404, "text/plain", body, sizeof body - 1);
        return;
    }
    const route_t *route = NULL, *get = NULL;
    for (size_t i = 0; i < srv->nroutes && !route; i++) {
        const route_t *rt = &srv->routes[i];
        if (!same_pattern(rt, pattern))
            continue;
        if (rt->method == r->method || rt->method < 0)
            route = rt;
        else if (rt->method == HTTP_GET && !get)
            get = rt;
    }
    if (!route && r->method == HTTP_HEAD && get) {
        route = get;
        r->head = true;
    }
    if (!route) {
        respond_405(srv, r, pattern);
        return;
    }
    r->route = route;
    /* A refused or ignored upgrade cannot go back to HTTP: the parser has stopped. */
    if (r->upgrade)
        r->keep_alive = false;
    route->handler(r, route->data);
}

/* ------------------------------------------------------------------------------------------
 * Responses
 * ---------------------------------------------------------------------------------------- */

/* Detaches req from its connection; returns the connection if it can still be written. */
static http_conn_t *request_take(http_request_t *req)
{
    http_conn_t *c = req->conn;
    if (!c)
        return NULL;
    assert(c->pending == req);
    c->pending = NULL;
    req->conn = NULL;
    if (c->state != CONN_HTTP)
        return NULL; /* closing: uv_close was called, the close callback has not run yet */
    return c;
}

int http_respond_headers(http_request_t *req, int status, const char *content_type,
                         const http_header_t *headers, size_t n_headers, const void *body,
                         size_t len)
{
    http_conn_t *c = request_take(req);
    if (!c) {
        request_free(req);
        return UV_ENOTCONN;
    }
    int rc = 0;
    bool valid = status >= 200 && status <= STATUS_MAX &&
                 (!content_type || is_header_value(content_type)) && (body || len == 0);
    for (size_t i = 0; valid && i < n_headers; i++)
        valid = is_token(headers[i].name) && is_header_value(headers[i].value) &&
                strcasecmp(headers[i].name, "Content-Length") != 0 &&
                strcasecmp(headers[i].name, "Connection") != 0 &&
                strcasecmp(headers[i].name, "Transfer-Encoding") != 0;
    if (!valid) {
        log_error("http: invalid response for %s %s (status %d or a header); sending 500",
                  http_request_method(req), req->path, status);
        static const char err[] = "Internal Server Error\n";
        status = 500;
        content_type = "text/plain";
        headers = NULL;
        n_headers = 0;
        body = err;
        len = sizeof err - 1;
        rc = UV_EINVAL;
    }
    bool keep = req->keep_alive && !c->srv->closing && !c->close_after;
    if (conn_append_response(c, status, content_type, headers, n_headers, body, len, req->head,
                             keep) < 0) {
        log_error("http: out of memory for a %zu-byte response; closing", len);
        keep = false;
        rc = UV_ENOMEM;
    }
    if (!keep)
        c->close_after = true;
    c->last_active_ms = uv_now(c->srv->loop);
    request_free(req);
    conn_schedule(c); /* flush, and resume parsing if this answer was asynchronous */
    return rc;
}

int http_respond(http_request_t *req, int status, const char *content_type, const void *body,
                 size_t len)
{
    return http_respond_headers(req, status, content_type, NULL, 0, body, len);
}

/* ------------------------------------------------------------------------------------------
 * Input
 * ---------------------------------------------------------------------------------------- */

static bool conn_can_parse(const http_conn_t *c)
{
    return c->state == CONN_HTTP && !c->pending && !c->close_after && !c->upgrade_seen &&
           conn_buffered(c) < OUTPUT_HIGH_WATER;
}

/* Feeds bytes to the parser while the connection can take requests. Returns how many bytes
 * were consumed; the caller keeps the rest (stash) or drops it. */
static size_t conn_parse(http_conn_t *c, const char *data, size_t len)
{
    size_t off = 0;
    while (off < len && conn_can_parse(c)) {
        size_t avail = len - off;
        size_t n = http_parser_execute(&c->parser, &parser_settings, data + off, avail);
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        off += n;
        if (c->state != CONN_HTTP)
            break; /* upgraded, or closed by a handler */
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            continue;
        }
        if (e != HPE_OK || n < avail) {
            /* A short count without an error happens only after an upgrade, and upgrades
             * pause first; fail closed rather than spin on it. */
            conn_parse_error(c, e != HPE_OK ? e : HPE_UNKNOWN);
            return len;
        }
    }
    return off;
}

static int stash_put(http_conn_t *c, const char *data, size_t len)
{
    assert(c->stash_len == c->stash_off); /* reading stops while something is stashed */
    free(c->stash);
    c->stash = malloc(len);
    c->stash_off = c->stash_len = 0;
    if (!c->stash)
        return UV_ENOMEM;
    memcpy(c->stash, data, len);
    c->stash_len = len;
    return 0;
}

static void stash_clear(http_conn_t *c)
{
    free(c->stash);
    c->stash = NULL;
    c->stash_off = c->stash_len = 0;
}

static bool stash_empty(const http_conn_t *c)
{
    return c->stash_off == c->stash_len;
}

/* Bytes read in HTTP state. What the parser does not take now is copied (the read buffer is
 * shared) when it may still be needed: a later request, or raw data after an upgrade. */
static void conn_http_input(http_conn_t *c, const char *data, size_t len)
{
    size_t used = conn_parse(c, data, len);
    if (used < len && (c->state == CONN_RAW || (c->state == CONN_HTTP && !c->close_after))) {
        if (stash_put(c, data + used, len - used) < 0) {
            log_error("http: out of memory stashing %zu bytes; closing", len - used);
            conn_close(c, UV_ENOMEM);
            return;
        }
    }
    conn_update_reading(c);
}

/* What the peer's EOF means depends on the state. */
static void conn_on_eof(http_conn_t *c)
{
    c->eof = true;
    c->reading = false; /* libuv stopped reading itself */
    switch (c->state) {
    case CONN_HTTP:
        /* A half-received request is dropped; earlier answers are still written. */
        request_free(c->req);
        c->req = NULL;
        c->close_after = true;
        conn_schedule(c);
        break;
    case CONN_RAW:
        conn_linger(c, UV_EOF);
        break;
    case CONN_LINGER:
        if (c->shutdown_done)
            conn_close(c, 0);
        break;
    case CONN_CLOSED:
        break;
    }
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    http_conn_t *c = container_of(handle, http_conn_t, tcp);
    buf->base = c->srv->rbuf;
    buf->len = sizeof c->srv->rbuf;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    http_conn_t *c = container_of(stream, http_conn_t, tcp);
    if (nread == 0 || c->state == CONN_CLOSED)
        return;
    if (nread == UV_EOF) {
        conn_on_eof(c);
        return;
    }
    if (nread < 0) {
        conn_close(c, (int)nread);
        return;
    }
    switch (c->state) {
    case CONN_HTTP:
        conn_http_input(c, buf->base, (size_t)nread);
        break;
    case CONN_RAW:
        c->raw->ops->on_data(c->raw, buf->base, (size_t)nread);
        break;
    case CONN_LINGER: /* discarded: we only wait for EOF */
    case CONN_CLOSED:
        break;
    }
}

/* Reads when the connection can use the bytes: not while a request is pending, bytes are
 * stashed, or the output is over the high-water mark. */
static void conn_update_reading(http_conn_t *c)
{
    bool want = false;
    switch (c->state) {
    case CONN_HTTP:
        want = stash_empty(c) && !c->pending &&
               (c->close_after || conn_buffered(c) < OUTPUT_HIGH_WATER);
        break;
    case CONN_RAW:
        want = stash_empty(c);
        break;
    case CONN_LINGER:
        want = true;
        break;
    case CONN_CLOSED:
        return;
    }
    if (c->eof)
        want = false;
    if (want && !c->reading) {
        int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
        if (rc < 0) {
            conn_close(c, rc);
            return;
        }
        c->reading = true;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

/* ------------------------------------------------------------------------------------------
 * Pump: deferred work per connection, one pass per loop iteration
 * ---------------------------------------------------------------------------------------- */

static void conn_schedule(http_conn_t *c)
{
    if (c->state == CONN_CLOSED || !link_empty(&c->work))
        return;
    link_push(&c->srv->work, &c->work);
    uv_idle_start(&c->srv->pump, on_pump); /* a no-op when already started */
}

static void on_shutdown(uv_shutdown_t *sreq, int status)
{
    http_conn_t *c = container_of(sreq, http_conn_t, sreq);
    if (c->state == CONN_CLOSED)
        return;
    if (status < 0) {
        conn_close(c, status);
        return;
    }
    c->shutdown_done = true;
    if (c->eof)
        conn_close(c, 0);
}

static void conn_pump(http_conn_t *c)
{
    if (c->state == CONN_HTTP && !stash_empty(c)) {
        if (c->close_after || (c->upgrade_seen && !c->pending)) {
            stash_clear(c);
        } else if (conn_can_parse(c)) {
            /* An asynchronous answer goes out before the requests pipelined behind it are
             * handled: if the peer is gone, they are not handled at all. */
            int rc = conn_flush(c);
            if (rc < 0) {
                conn_close(c, rc);
                return;
            }
            size_t used = conn_parse(c, c->stash + c->stash_off, c->stash_len - c->stash_off);
            c->stash_off += used;
            if (c->state == CONN_HTTP && (c->close_after || stash_empty(c)))
                stash_clear(c);
        }
    }
    if (c->state == CONN_RAW && !stash_empty(c)) {
        /* Bytes that came with or after the upgrade request. */
        char *data = c->stash;
        size_t off = c->stash_off, len = c->stash_len;
        c->stash = NULL;
        c->stash_off = c->stash_len = 0;
        c->raw->ops->on_data(c->raw, data + off, len - off);
        free(data);
    }
    if (c->state == CONN_HTTP && c->close_after && !c->pending)
        conn_linger(c, 0);
    if (c->state == CONN_CLOSED)
        return;
    int rc = conn_flush(c);
    if (rc < 0) {
        conn_close(c, rc);
        return;
    }
    if (c->state == CONN_LINGER && c->olen == 0 && !c->shutdown_started) {
        c->shutdown_started = true;
        rc = uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown);
        if (rc < 0) {
            conn_close(c, rc);
            return;
        }
    }
    if (c->state == CONN_RAW && c->drain_owed && conn_buffered(c) == 0) {
        c->drain_owed = false;
        if (c->raw->ops->on_drain)
            c->raw->ops->on_drain(c->raw);
        if (c->state == CONN_CLOSED)
            return;
    }
    if (c->state == CONN_HTTP && !stash_empty(c) && conn_can_parse(c))
        conn_schedule(c); /* blocked on output until now: parse the rest next iteration */
    conn_update_reading(c);
}

static void on_pump(uv_idle_t *idle)
{
    http_server_t *srv = container_of(idle, http_server_t, pump);
    /* Take this iteration's list; connections scheduled meanwhile wait for the next one. */
    link_t batch;
    link_init(&batch);
    if (!link_empty(&srv->work)) {
        batch.next = srv->work.next;
        batch.prev = srv->work.prev;
        batch.next->prev = &batch;
        batch.prev->next = &batch;
        link_init(&srv->work);
    }
    while (!link_empty(&batch)) {
        http_conn_t *c = container_of(batch.next, http_conn_t, work);
        link_remove(&c->work);
        if (c->state != CONN_CLOSED)
            conn_pump(c);
    }
    if (link_empty(&srv->work))
        uv_idle_stop(&srv->pump);
}

/* ------------------------------------------------------------------------------------------
 * Connection life
 * ---------------------------------------------------------------------------------------- */

static void on_conn_closed(uv_handle_t *handle)
{
    http_conn_t *c = container_of(handle, http_conn_t, tcp);
    http_server_t *srv = c->srv;
    link_remove(&c->link);
    link_remove(&c->work);
    if (c->pending)
        c->pending->conn = NULL; /* orphan: the handler still answers it, which frees it */
    request_free(c->req);
    free(c->stash);
    free(c->obuf);
    assert(c->wbuf == NULL); /* on_write ran before this callback */
    srv->nconns--;
    srv->stats.connections = srv->nconns;
    if (srv->m_connections)
        metrics_gauge_set(srv->m_connections, srv->nconns);
    http_raw_t *raw = c->raw;
    int status = c->close_status;
    free(c);
    if (raw) {
        raw->conn = NULL;
        raw->ops->on_close(raw, status);
    }
    server_maybe_finish(srv);
}

/* Closes at once; pending output is dropped (queued writes end with UV_ECANCELED). */
static void conn_close(http_conn_t *c, int status)
{
    if (c->state == CONN_CLOSED)
        return;
    if (c->close_status == 0)
        c->close_status = status;
    c->state = CONN_CLOSED;
    c->reading = false;
    link_remove(&c->work);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

/* Graceful close: flush, FIN, read and discard until EOF or the linger deadline. */
static void conn_linger(http_conn_t *c, int status)
{
    if (c->state == CONN_LINGER || c->state == CONN_CLOSED)
        return;
    if (c->close_status == 0)
        c->close_status = status;
    c->state = CONN_LINGER;
    c->linger_deadline_ms = uv_now(c->srv->loop) + c->srv->opts.linger_ms;
    request_free(c->req);
    c->req = NULL;
    stash_clear(c);
    conn_schedule(c);
}

static void on_rejected_closed(uv_handle_t *handle)
{
    http_server_t *srv = handle->data;
    free(handle);
    srv->rejecting--;
    server_maybe_finish(srv);
}

static void reject(http_server_t *srv)
{
    srv->stats.rejected++;
    if (srv->m_rejected)
        metrics_counter_inc(srv->m_rejected);
    uv_tcp_t *t = malloc(sizeof *t);
    if (!t) {
        log_error("http: out of memory rejecting a connection");
        return;
    }
    uv_tcp_init(srv->loop, t);
    t->data = srv;
    srv->rejecting++;
    uv_accept((uv_stream_t *)&srv->listener, (uv_stream_t *)t);
    uv_close((uv_handle_t *)t, on_rejected_closed);
}

static void on_connection(uv_stream_t *listener, int status)
{
    http_server_t *srv = container_of(listener, http_server_t, listener);
    uint64_t now = uv_now(srv->loop);
    if (status < 0) {
        /* EMFILE and friends: libuv keeps the listener going; say it now and then. */
        if (now - srv->last_accept_warn_ms >= ACCEPT_WARN_INTERVAL_MS || !srv->last_accept_warn_ms) {
            log_warn("http: accept failed: %s", uv_strerror(status));
            srv->last_accept_warn_ms = now;
        }
        return;
    }
    if (srv->closing || srv->nconns >= srv->opts.max_connections) {
        reject(srv);
        return;
    }
    http_conn_t *c = calloc(1, sizeof *c);
    if (!c) {
        log_error("http: out of memory accepting a connection");
        reject(srv);
        return;
    }
    c->srv = srv;
    c->state = CONN_HTTP;
    c->accepted_ms = c->last_active_ms = now;
    link_init(&c->work);
    link_push(&srv->conns, &c->link);
    srv->nconns++;
    srv->stats.connections = srv->nconns;
    if (srv->m_connections)
        metrics_gauge_set(srv->m_connections, srv->nconns);
    uv_tcp_init(srv->loop, &c->tcp);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    int rc = uv_accept(listener, (uv_stream_t *)&c->tcp);
    if (rc < 0) {
        conn_close(c, rc);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    conn_update_reading(c);
}

/* ------------------------------------------------------------------------------------------
 * Sweep timer: every timeout of every connection
 * ---------------------------------------------------------------------------------------- */

static void sweep_http(http_conn_t *c, uint64_t now)
{
    const http_server_options_t *o = &c->srv->opts;
    if (c->pending || c->close_after)
        return; /* the handler is working, or the answer is being written */
    if (c->req) {
        if (now - c->request_start_ms >= o->request_timeout_ms) {
            c->srv->stats.timeouts++;
            conn_send_error(c, 408);
        }
    } else if (c->requests == 0) {
        if (now - c->accepted_ms >= o->request_timeout_ms) {
            c->srv->stats.timeouts++;
            conn_close(c, UV_ETIMEDOUT);
        }
    } else if (now - c->last_active_ms >= o->idle_timeout_ms) {
        /* Idle since the last answer or the last write progress. */
        c->srv->stats.timeouts++;
        conn_close(c, UV_ETIMEDOUT);
    }
}

static void on_sweep(uv_timer_t *timer)
{
    http_server_t *srv = container_of(timer, http_server_t, sweep);
    uint64_t now = uv_now(srv->loop);
    bool force = srv->closing && now >= srv->close_deadline_ms;
    for (link_t *l = srv->conns.next, *next; l != &srv->conns; l = next) {
        next = l->next; /* callbacks may close connections, but none is freed here */
        http_conn_t *c = container_of(l, http_conn_t, link);
        if (force) {
            conn_close(c, UV_ECANCELED);
            continue;
        }
        switch (c->state) {
        case CONN_HTTP:
            sweep_http(c, now);
            break;
        case CONN_RAW:
            if (c->raw->ops->on_tick)
                c->raw->ops->on_tick(c->raw, now);
            break;
        case CONN_LINGER:
            if (now >= c->linger_deadline_ms)
                conn_close(c, UV_ETIMEDOUT);
            break;
        case CONN_CLOSED:
            break;
        }
    }
}

/* ------------------------------------------------------------------------------------------
 * Raw mode
 * ---------------------------------------------------------------------------------------- */

int http_request_upgrade(http_request_t *req, http_raw_t *raw)
{
    if (!raw || !raw->ops || !raw->ops->on_data || !raw->ops->on_close || !req->upgrade ||
        !req->route || !(req->route->flags & HTTP_ROUTE_UPGRADE))
        return UV_EINVAL;
    http_conn_t *c = req->conn;
    if (!c || c->state != CONN_HTTP)
        return UV_ENOTCONN;
    if (c->srv->closing)
        return UV_ECANCELED;
    request_take(req);
    request_free(req);
    c->state = CONN_RAW;
    c->raw = raw;
    raw->conn = c;
    count_response(c->srv, 101);
    conn_schedule(c); /* delivers stashed bytes, then reads */
    return 0;
}

int http_raw_write(http_raw_t *raw, const void *buf, size_t len)
{
    http_conn_t *c = raw->conn;
    if (!c || c->state != CONN_RAW)
        return UV_ENOTCONN;
    if (conn_buffered(c) + len > c->srv->opts.max_raw_buffered)
        return UV_ENOBUFS;
    if (len == 0)
        return 0;
    if (conn_reserve(c, len) < 0)
        return UV_ENOBUFS;
    memcpy(c->obuf + c->olen, buf, len);
    c->olen += len;
    c->drain_owed = true;
    conn_schedule(c);
    return 0;
}

size_t http_raw_buffered(const http_raw_t *raw)
{
    return raw->conn ? conn_buffered(raw->conn) : 0;
}

void http_raw_close(http_raw_t *raw)
{
    http_conn_t *c = raw->conn;
    if (c && c->state == CONN_RAW)
        conn_linger(c, 0);
}

void http_raw_abort(http_raw_t *raw)
{
    http_conn_t *c = raw->conn;
    if (c)
        conn_close(c, UV_ECANCELED);
}

/* ------------------------------------------------------------------------------------------
 * Server
 * ---------------------------------------------------------------------------------------- */

static void set_header_limit(void)
{
    http_parser_set_max_header_size(HTTP_MAX_HEADER_BYTES);
}

int http_server_new(http_server_t **out, uv_loop_t *loop, const http_server_options_t *opts)
{
    static uv_once_t once = UV_ONCE_INIT;
    if (!out || !loop || !opts || opts->port < 0 || opts->port > 65535)
        return UV_EINVAL;
    uv_once(&once, set_header_limit);
    http_server_t *srv = calloc(1, sizeof *srv);
    if (!srv)
        return UV_ENOMEM;
    srv->loop = loop;
    srv->opts = *opts;
    http_server_options_t *o = &srv->opts;
    srv->host = strdup(opts->host ? opts->host : "127.0.0.1");
    srv->server_name = strdup(opts->server_name ? opts->server_name : "integral");
    if (!srv->host || !srv->server_name || !is_header_value(srv->server_name)) {
        int rc = (srv->host && srv->server_name) ? UV_EINVAL : UV_ENOMEM;
        free(srv->host);
        free(srv->server_name);
        free(srv);
        return rc;
    }
    o->host = srv->host;
    o->server_name = srv->server_name;
    if (!o->max_connections)
        o->max_connections = 10000;
    if (!o->max_body)
        o->max_body = 64 * 1024;
    if (!o->max_url)
        o->max_url = 2048;
    if (!o->max_header_value)
        o->max_header_value = 4096;
    if (!o->max_headers)
        o->max_headers = 64;
    if (!o->request_timeout_ms)
        o->request_timeout_ms = 10000;
    if (!o->idle_timeout_ms)
        o->idle_timeout_ms = 10000;
    if (!o->tick_ms)
        o->tick_ms = 250;
    if (!o->linger_ms)
        o->linger_ms = 2000;
    if (!o->shutdown_timeout_ms)
        o->shutdown_timeout_ms = 5000;
    if (!o->max_raw_buffered)
        o->max_raw_buffered = 8u * 1024 * 1024;
    link_init(&srv->conns);
    link_init(&srv->work);
    uv_tcp_init(loop, &srv->listener);
    uv_timer_init(loop, &srv->sweep);
    uv_idle_init(loop, &srv->pump);
    srv->handles = 3;
    if (o->metrics) {
        srv->m_connections = metrics_gauge(o->metrics, "integral_http_connections",
                                           "Open HTTP connections (raw and closing included).",
                                           NULL);
        srv->m_rejected = metrics_counter(o->metrics, "integral_http_rejected_connections_total",
                                          "Connections closed at accept: over max_connections.",
                                          NULL);
    }
    *out = srv;
    return 0;
}

int http_server_route(http_server_t *srv, const char *method, const char *path, unsigned flags,
                      http_handler_cb handler, void *data)
{
    if (!srv || !path || path[0] != '/' || !handler ||
        (flags & ~(HTTP_ROUTE_PREFIX | HTTP_ROUTE_UPGRADE)))
        return UV_EINVAL;
    int m = -1;
    if (method) {
        for (int i = 0; i < 64; i++) {
            const char *name = http_method_str((enum http_method)i);
            if (name[0] == '<') /* "<unknown>": past the last method */
                break;
            if (strcmp(name, method) == 0) {
                m = i;
                break;
            }
        }
        if (m < 0)
            return UV_EINVAL;
    }
    route_t rt = {.method = m, .path = (char *)path, .path_len = strlen(path), .flags = flags,
                  .handler = handler, .data = data};
    for (size_t i = 0; i < srv->nroutes; i++)
        if (srv->routes[i].method == m && same_pattern(&srv->routes[i], &rt))
            return UV_EEXIST;
    if (srv->nroutes == srv->routes_cap) {
        size_t ncap = srv->routes_cap ? srv->routes_cap * 2 : 8;
        route_t *n = realloc(srv->routes, ncap * sizeof *n);
        if (!n)
            return UV_ENOMEM;
        srv->routes = n;
        srv->routes_cap = ncap;
    }
    rt.path = strdup(path);
    if (!rt.path)
        return UV_ENOMEM;
    srv->routes[srv->nroutes++] = rt;
    return 0;
}

int http_server_listen(http_server_t *srv)
{
    if (srv->closing || srv->listening)
        return UV_EINVAL;
    struct sockaddr_storage ss;
    int rc;
    if (strchr(srv->host, ':'))
        rc = uv_ip6_addr(srv->host, srv->opts.port, (struct sockaddr_in6 *)&ss);
    else
        rc = uv_ip4_addr(srv->host, srv->opts.port, (struct sockaddr_in *)&ss);
    if (rc < 0)
        return UV_EINVAL;
    rc = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&srv->listener, LISTEN_BACKLOG, on_connection);
    if (rc < 0)
        return rc;
    srv->listening = true;
    uv_timer_start(&srv->sweep, on_sweep, srv->opts.tick_ms, srv->opts.tick_ms);
    return 0;
}

int http_server_port(const http_server_t *srv)
{
    if (!srv->listening)
        return UV_EINVAL;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    int rc = uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &len);
    if (rc < 0)
        return rc;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void http_server_stats(const http_server_t *srv, http_server_stats_t *out)
{
    *out = srv->stats;
    out->connections = srv->nconns;
}

static void on_server_handle_closed(uv_handle_t *handle)
{
    http_server_t *srv = handle->data;
    if (--srv->handles > 0)
        return;
    if (srv->close_cb)
        srv->close_cb(srv, srv->close_data);
    for (size_t i = 0; i < srv->nroutes; i++)
        free(srv->routes[i].path);
    free(srv->routes);
    free(srv->host);
    free(srv->server_name);
    free(srv);
}

/* Once closing and every connection is gone, close the server's own handles. */
static void server_maybe_finish(http_server_t *srv)
{
    if (!srv->closing || srv->nconns > 0 || srv->rejecting > 0 || srv->handles_closing)
        return;
    srv->handles_closing = true;
    srv->sweep.data = srv;
    srv->pump.data = srv;
    uv_close((uv_handle_t *)&srv->sweep, on_server_handle_closed);
    uv_close((uv_handle_t *)&srv->pump, on_server_handle_closed);
}

/* A connection at server close: idle ones close now, busy ones finish their request. */
static void conn_begin_shutdown(http_conn_t *c)
{
    switch (c->state) {
    case CONN_HTTP:
        if (c->req || c->pending || !stash_empty(c))
            break; /* the answer will say Connection: close */
        if (conn_buffered(c) > 0) {
            c->close_after = true;
            conn_schedule(c);
        } else {
            conn_close(c, UV_ECANCELED);
        }
        break;
    case CONN_RAW:
        if (c->shutdown_notified)
            break;
        c->shutdown_notified = true;
        if (c->raw->ops->on_shutdown)
            c->raw->ops->on_shutdown(c->raw);
        else
            http_raw_close(c->raw);
        break;
    case CONN_LINGER:
    case CONN_CLOSED:
        break;
    }
}

void http_server_close(http_server_t *srv, http_server_close_cb close_cb, void *data)
{
    assert(!srv->closing);
    srv->closing = true;
    srv->close_cb = close_cb;
    srv->close_data = data;
    srv->close_deadline_ms = uv_now(srv->loop) + srv->opts.shutdown_timeout_ms;
    srv->listener.data = srv;
    uv_close((uv_handle_t *)&srv->listener, on_server_handle_closed);
    srv->listening = false;
    for (link_t *l = srv->conns.next, *next; l != &srv->conns; l = next) {
        next = l->next;
        conn_begin_shutdown(container_of(l, http_conn_t, link));
    }
    server_maybe_finish(srv);
}
