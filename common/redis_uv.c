/* redis_uv.c - hiredis 0.14.1 async on libuv, and a self-healing client on top. See redis_uv.h.
 *
 * What hiredis 0.14.1 does that this file is built around (read from its async.c and measured,
 * shared/notes/event-loop.md section 2):
 *  - a failed connect calls onConnect(REDIS_ERR) and nothing else; a lost connection runs every
 *    pending reply callback with NULL, then ev.cleanup, then onDisconnect (only if it had
 *    connected). Either way the context is freed as soon as that returns, so a new context is
 *    made for every attempt, and whichever of those callbacks comes first forgets the pointer;
 *  - redisAsyncFree() from inside a reply callback is deferred until the callback returns
 *    (REDIS_IN_CALLBACK), but from inside onConnect/onDisconnect it frees a context that hiredis
 *    is still using. So we free a context only from our own timers, from user code outside
 *    hiredis, or from reply callbacks - never from onConnect/onDisconnect;
 *  - there is no redisAsyncSetTimeout: a watchdog timer compares the oldest command's send time
 *    (a FIFO, replies come in order) and the connect start with the limits;
 *  - a command with no argument trips an assert in __redisAsyncCommand and SUBSCRIBE or
 *    MONITOR change how replies map to callbacks, so commands are formatted here, checked, then
 *    handed over with redisAsyncFormattedCommand.
 * User callbacks may close the client anywhere; the client itself is freed only in the close
 * callback of its last libuv handle, when no hiredis or user frame can be on the stack. */
#include "redis_uv.h"

#include "log.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

#define DEFAULT_COMMAND_TIMEOUT_MS 2000
#define DEFAULT_CONNECT_TIMEOUT_MS 2000
#define DEFAULT_RECONNECT_MIN_MS 100
#define DEFAULT_RECONNECT_MAX_MS 5000
#define DEFAULT_MAX_PENDING 16384

/* Output buffers kept for reuse, and the largest one kept (see take_output). */
#define SPARE_BUFFERS 2
#define SPARE_BUFFER_MAX (64u * 1024 * 1024)

/* ------------------------------------------------------------------------------------------
 * Adapter: hiredis ev hooks on a uv_poll_t
 * ---------------------------------------------------------------------------------------- */

typedef struct {
    redisAsyncContext *ac; /* NULL once hiredis called cleanup: the context is being freed */
    uv_poll_t poll;
    uv_prepare_t flush; /* sends queued commands before the loop next waits (see ev_add_write) */
    int open_handles;   /* poll and flush, until both are closed */
    int events;  /* UV_READABLE | UV_WRITABLE that hiredis asked for */
    int started; /* what the handle was last started with (0: stopped) */
    redis_uv_closed_cb closed_cb;
    void *arg;
    /* Output taken from hiredis (see write_output): whole buffers, the first one sent up to
     * out_sent. */
    sds *out;
    size_t n_out, cap_out, out_sent;
    /* Sent buffers kept, emptied, to become hiredis's next output buffer (see take_output). */
    sds spare[SPARE_BUFFERS];
    size_t n_spare;
} redis_uv_events_t;

static void ev_add_read(void *privdata);
static void ev_add_write(void *privdata);
static void ev_del_write(void *privdata);
static void wait_writable(redis_uv_events_t *p);

/* Moves hiredis's output buffer to the end of the queue (no copy: the sds changes hands)
 * and gives hiredis a sent one back, emptied. hiredis appends every command to its buffer
 * (sdscatlen); a fresh buffer for each multi-MB transaction grew by reallocation, copying as
 * it went, and `perf record -e page-faults` put about half of the engine's sampled faults in
 * that append. A reused buffer is already large and mapped. (The engine's faults per event
 * moved little: its heap grows elsewhere too; tests/bench/README.md.) Returns 0, or -1 out
 * of memory (the buffer stays with hiredis). */
static int take_output(redis_uv_events_t *p)
{
    redisContext *c = &p->ac->c;
    if (sdslen(c->obuf) == 0)
        return 0;
    if (p->n_out == p->cap_out) {
        size_t cap = p->cap_out ? 2 * p->cap_out : 8;
        sds *out = realloc(p->out, cap * sizeof *out);
        if (!out)
            return -1;
        p->out = out;
        p->cap_out = cap;
    }
    sds empty = p->n_spare > 0 ? p->spare[--p->n_spare] : sdsempty();
    if (!empty)
        return -1;
    p->out[p->n_out++] = c->obuf;
    c->obuf = empty;
    return 0;
}

/* A buffer that has been sent: kept for take_output while there is room, else freed. */
static void recycle_output(redis_uv_events_t *p, sds buf)
{
    if (p->n_spare < SPARE_BUFFERS && sdsalloc(buf) <= SPARE_BUFFER_MAX) {
        sdsclear(buf);
        p->spare[p->n_spare++] = buf;
    } else {
        sdsfree(buf);
    }
}

/* Sends what the queue holds until the socket is full. Returns 0, or -1 on an I/O error
 * (errno set). */
static int send_output(redis_uv_events_t *p)
{
    while (p->n_out > 0) {
        struct iovec iov[64];
        int n = 0;
        size_t total = 0;
        for (size_t i = 0; i < p->n_out && n < 64; i++, n++) {
            size_t skip = i == 0 ? p->out_sent : 0;
            iov[n].iov_base = p->out[i] + skip;
            iov[n].iov_len = sdslen(p->out[i]) - skip;
            total += iov[n].iov_len;
        }
        ssize_t sent = writev(p->ac->c.fd, iov, n);
        if (sent < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
        size_t left = (size_t)sent, done = 0;
        while (done < p->n_out && left >= sdslen(p->out[done]) - p->out_sent) {
            left -= sdslen(p->out[done]) - p->out_sent;
            recycle_output(p, p->out[done++]);
            p->out_sent = 0;
        }
        p->out_sent += left;
        memmove(p->out, p->out + done, (p->n_out - done) * sizeof *p->out);
        p->n_out -= done;
        if ((size_t)sent < total)
            break; /* a short write: the socket is full */
    }
    return 0;
}

/* The write side, instead of hiredis 0.14.1's redisBufferWrite: that one write()s its output
 * buffer and, when the socket took only part of it, memmoves the rest to the front
 * (sdsrange). With transactions of a few MB and a socket that takes a few hundred KB per
 * write, that was 10 % of the engine's CPU in memmove. Here the buffer changes hands once
 * per writable event and is sent from an offset. Connecting and errors stay hiredis's. */
static void write_output(redis_uv_events_t *p)
{
    redisContext *c = &p->ac->c;
    /* Out of memory taking the buffer: hiredis may send it itself only when nothing of ours
     * waits to go before it; else ours goes now and its buffer next time. */
    if (!(c->flags & REDIS_CONNECTED) || c->err || (take_output(p) < 0 && p->n_out == 0)) {
        redisAsyncHandleWrite(p->ac);
        return;
    }
    if (send_output(p) < 0) {
        /* Let hiredis see the error: it fails every pending callback and disconnects. */
        c->err = REDIS_ERR_IO;
        snprintf(c->errstr, sizeof c->errstr, "%s", strerror(errno));
        redisAsyncHandleWrite(p->ac);
        return;
    }
    if (p->n_out > 0 || sdslen(c->obuf) > 0)
        wait_writable(p);
    else
        ev_del_write(p);
    ev_add_read(p);
}

static void on_poll(uv_poll_t *handle, int status, int events)
{
    redis_uv_events_t *p = handle->data;

    /* The hiredis 1.0 fix (upstream 9ce15c4): on a socket error libuv stops the handle and
     * reports status UV_EBADF with no events. 0.14.1 returned here, so hiredis never saw a
     * refused connect. Run the handlers we were registered for: they find the error. */
    int ev = status ? p->events : events;
    if (status)
        p->started = 0; /* libuv stopped the handle */

    if (p->ac && (ev & UV_READABLE))
        redisAsyncHandleRead(p->ac);
    if (p->ac && (ev & UV_WRITABLE)) /* the read may have freed the context */
        write_output(p);
}

/* uv_poll_start fails only on a closing handle or bad arguments, neither of which hiredis can
 * cause: it stops calling the hooks once it has called cleanup. hiredis asks for write
 * interest on every command it queues; the handle is restarted only when the interest
 * changes (each restart re-arms the watcher: measured at ~3 % of the engine's CPU with a
 * few hundred commands per transaction). */
static void update_poll(redis_uv_events_t *p)
{
    if (p->events == p->started)
        return;
    if (p->events)
        uv_poll_start(&p->poll, p->events, on_poll);
    else
        uv_poll_stop(&p->poll);
    p->started = p->events;
}

static void ev_add_read(void *privdata)
{
    redis_uv_events_t *p = privdata;
    p->events |= UV_READABLE;
    update_poll(p);
}

static void ev_del_read(void *privdata)
{
    redis_uv_events_t *p = privdata;
    p->events &= ~UV_READABLE;
    update_poll(p);
}

/* The socket is full (or still connecting): send when it is writable. */
static void wait_writable(redis_uv_events_t *p)
{
    p->events |= UV_WRITABLE;
    update_poll(p);
}

static void on_flush(uv_prepare_t *handle)
{
    redis_uv_events_t *p = handle->data;
    uv_prepare_stop(handle);
    if (p->ac && !(p->events & UV_WRITABLE)) /* else on_poll sends once the socket drains */
        write_output(p);
}

/* hiredis queued a command. A connected socket is written once, before the loop next waits
 * (a prepare handle: no system call to start it), with everything queued by then; only a
 * socket that is full or still connecting waits for writability. Asking epoll for
 * writability on every command cost two epoll_ctl and one more loop wakeup per transaction:
 * at 2,000 events/s, a fifth of the engine's system calls (strace -c). */
static void ev_add_write(void *privdata)
{
    redis_uv_events_t *p = privdata;
    if (p->ac && (p->ac->c.flags & REDIS_CONNECTED) && !(p->events & UV_WRITABLE)) {
        if (!uv_is_active((uv_handle_t *)&p->flush))
            uv_prepare_start(&p->flush, on_flush);
        return;
    }
    wait_writable(p);
}

static void ev_del_write(void *privdata)
{
    redis_uv_events_t *p = privdata;
    if (p->n_out > 0)
        return; /* hiredis's buffer is empty, but ours is not */
    p->events &= ~UV_WRITABLE;
    update_poll(p);
}

static void on_handle_closed(uv_handle_t *handle)
{
    redis_uv_events_t *p = handle->data;
    if (--p->open_handles > 0)
        return;
    redis_uv_closed_cb closed_cb = p->closed_cb;
    void *arg = p->arg;
    for (size_t i = 0; i < p->n_out; i++)
        sdsfree(p->out[i]);
    for (size_t i = 0; i < p->n_spare; i++)
        sdsfree(p->spare[i]);
    free(p->out);
    free(p);
    if (closed_cb)
        closed_cb(arg);
}

/* Called by hiredis while it frees the context (the context itself is freed right after). */
static void ev_cleanup(void *privdata)
{
    redis_uv_events_t *p = privdata;
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->poll, on_handle_closed);
    uv_close((uv_handle_t *)&p->flush, on_handle_closed);
}

int redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop, redis_uv_closed_cb closed_cb,
                    void *arg)
{
    if (ac->ev.data || ac->ev.cleanup)
        return UV_EEXIST;
    if (ac->c.fd < 0)
        return UV_EBADF;
    redis_uv_events_t *p = calloc(1, sizeof *p);
    if (!p)
        return UV_ENOMEM;
    int rc = uv_poll_init_socket(loop, &p->poll, ac->c.fd);
    if (rc) {
        free(p); /* 0.14.1's adapter leaked it here */
        return rc;
    }
    uv_prepare_init(loop, &p->flush); /* cannot fail */
    p->open_handles = 2;
    p->ac = ac;
    p->poll.data = p;
    p->flush.data = p;
    p->closed_cb = closed_cb;
    p->arg = arg;

    ac->ev.data = p;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Reply objects, kept for reuse
 *
 * hiredis 0.14 callocs every reply and mallocs every string of one, then frees both as soon
 * as the callback returned. A transaction of n commands makes 2n replies (n QUEUED, then an
 * EXEC of n elements), so that was most of the engine's allocator traffic and, with the
 * large EXEC arrays, what made glibc consolidate its fast bins (tests/bench/README.md,
 * session 8). These functions build the same redisReply objects, which callers read as
 * usual, from a per-thread list of freed ones, with strings of up to REPLY_INLINE bytes
 * inside the object. Per thread because hiredis's freeObject gets no context; the list is
 * bounded, and freed with the thread's last client.
 * ---------------------------------------------------------------------------------------- */

#define REPLY_INLINE 39   /* "QUEUED", "OK", an epoch, a key: most replies fit */
#define SPARE_REPLIES_MAX 4096

typedef struct pooled_reply {
    redisReply reply; /* first: what hiredis and the callbacks see */
    struct pooled_reply *next_spare;
    char text[REPLY_INLINE + 1];
} pooled_reply_t;

static _Thread_local pooled_reply_t *spare_replies;
static _Thread_local size_t n_spare_replies;
static _Thread_local size_t clients_on_thread;

static void release_spare_replies(void)
{
    while (spare_replies) {
        pooled_reply_t *p = spare_replies;
        spare_replies = p->next_spare;
        free(p);
    }
    n_spare_replies = 0;
}

/* A reply of type, linked into its parent array as hiredis's own functions do; NULL out of
 * memory (hiredis then fails the connection with "Out of memory"). The type is given: the
 * task's is the wire's ('$' for a nil bulk string, '*' for a nil array). */
static redisReply *reply_new(const redisReadTask *task, int type)
{
    pooled_reply_t *p = spare_replies;
    if (p) {
        spare_replies = p->next_spare;
        n_spare_replies--;
    } else if (!(p = malloc(sizeof *p))) {
        return NULL;
    }
    p->reply = (redisReply){.type = type};
    if (task->parent) {
        redisReply *parent = task->parent->obj;
        assert(parent->type == REDIS_REPLY_ARRAY && (size_t)task->idx < parent->elements);
        parent->element[task->idx] = &p->reply;
    }
    return &p->reply;
}

static void reply_free(void *obj)
{
    redisReply *r = obj;
    if (!r)
        return;
    pooled_reply_t *p = container_of(r, pooled_reply_t, reply);
    if (r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; r->element && i < r->elements; i++)
            reply_free(r->element[i]);
        free(r->element);
    } else if (r->str && r->str != p->text) {
        free(r->str);
    }
    if (n_spare_replies >= SPARE_REPLIES_MAX) {
        free(p);
        return;
    }
    p->next_spare = spare_replies;
    spare_replies = p;
    n_spare_replies++;
}

static void *reply_string(const redisReadTask *task, char *str, size_t len)
{
    redisReply *r = reply_new(task, task->type); /* string, status or error */
    if (!r)
        return NULL;
    pooled_reply_t *p = container_of(r, pooled_reply_t, reply);
    char *text = len <= REPLY_INLINE ? p->text : malloc(len + 1);
    if (!text) {
        reply_free(r); /* its str is still NULL */
        return NULL;
    }
    memcpy(text, str, len);
    text[len] = '\0';
    r->str = text;
    r->len = len;
    return r;
}

static void *reply_array(const redisReadTask *task, int elements)
{
    redisReply *r = reply_new(task, REDIS_REPLY_ARRAY);
    if (!r)
        return NULL;
    if (elements > 0) {
        /* calloc: hiredis frees an array it could not fill (an error midway) */
        r->element = calloc((size_t)elements, sizeof *r->element);
        if (!r->element) {
            reply_free(r);
            return NULL;
        }
    }
    r->elements = (size_t)(elements > 0 ? elements : 0);
    return r;
}

static void *reply_integer(const redisReadTask *task, long long value)
{
    redisReply *r = reply_new(task, REDIS_REPLY_INTEGER);
    if (r)
        r->integer = value;
    return r;
}

static void *reply_nil(const redisReadTask *task)
{
    return reply_new(task, REDIS_REPLY_NIL);
}

static redisReplyObjectFunctions pooled_replies = {
    .createString = reply_string,
    .createArray = reply_array,
    .createInteger = reply_integer,
    .createNil = reply_nil,
    .freeObject = reply_free,
};

/* ------------------------------------------------------------------------------------------
 * Client
 * ---------------------------------------------------------------------------------------- */

/* One command in flight: 24 bytes, as redis_uv.h promises per max_pending slot. Only user
 * commands are here; the client's own PING and FUNCTION LOADs are told apart by their hiredis
 * callback (on_internal_reply), so each on_reply pops exactly its own slot. */
typedef struct {
    redis_reply_cb cb;
    void *data;
    uint64_t sent_ms; /* uv_now() when queued */
} pending_t;

/* What an internal command was, passed to hiredis as privdata. */
enum {
    INTERNAL_SETUP_PING = 1, /* setup when there is no library: READY when answered */
    INTERNAL_SETUP_LOAD,     /* FUNCTION LOAD before READY */
    INTERNAL_LIVE_LOAD,      /* FUNCTION LOAD of a library added while READY */
};

struct redis_client_s {
    uv_loop_t *loop;
    redis_client_options_t opts; /* defaults applied; opts.host is our copy */
    redis_state_t state;

    redisAsyncContext *ac; /* the live context; NULL between attempts and once it is going */
    bool ac_ready;         /* ac answered its setup: READY (or CLOSED and draining) */
    unsigned setup_left;   /* setup replies ac still owes before READY */
    uint64_t attempt_start_ms;
    unsigned attempts; /* connect attempts made */
    unsigned failures; /* failed attempts since the last READY: the backoff exponent */
    uint64_t rng;      /* xorshift64 state for the jitter */

    uv_timer_t retry_timer; /* the next connect attempt (also the first one) */
    uv_timer_t watchdog;    /* connect and command timeouts */
    unsigned adapters;      /* adapter handles not yet closed (at most 1 live + closing ones) */
    unsigned timers_open;   /* 2 until the client is finally closing */
    bool timers_closing;

    pending_t *pending; /* ring of max_pending slots */
    size_t pending_head, pending_count;

    char *libs[REDIS_CLIENT_MAX_LIBRARIES];
    size_t n_libs;

    redis_close_cb close_cb;
    void *close_data;
    redis_client_stats_t stats;
    char errstr[256];
};

static void start_attempt(redis_client_t *c);
static void watchdog_rearm(redis_client_t *c);

const char *redis_client_strerror(int err)
{
    switch (err) {
    case REDIS_CLIENT_OK:
        return "success";
    case REDIS_CLIENT_EINVAL:
        return "invalid argument or command";
    case REDIS_CLIENT_ENOMEM:
        return "out of memory";
    case REDIS_CLIENT_ENOTREADY:
        return "redis client not ready";
    case REDIS_CLIENT_EFULL:
        return "too many redis commands in flight";
    case REDIS_CLIENT_EFORMAT:
        return "bad redis command format";
    case REDIS_CLIENT_ECLOSED:
        return "redis client closed";
    }
    return "unknown error";
}

const char *redis_state_name(redis_state_t state)
{
    switch (state) {
    case REDIS_STATE_CONNECTING:
        return "connecting";
    case REDIS_STATE_READY:
        return "ready";
    case REDIS_STATE_RECONNECTING:
        return "reconnecting";
    case REDIS_STATE_CLOSED:
        return "closed";
    }
    return "unknown";
}

static void set_errstr(redis_client_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_errstr(redis_client_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errstr, sizeof c->errstr, fmt, ap);
    va_end(ap);
}

/* Moves to state and reports it. The callback may close the client (except from CLOSED), so
 * callers do this last and re-check state afterwards if they go on. */
static void set_state(redis_client_t *c, redis_state_t state, const char *reason)
{
    assert(c->state != state && c->state != REDIS_STATE_CLOSED);
    assert(state != REDIS_STATE_CONNECTING);
    c->state = state;
    if (!c->opts.on_state)
        return;
    char copy[sizeof c->errstr]; /* reason must survive a close from inside the callback */
    snprintf(copy, sizeof copy, "%s", reason);
    c->opts.on_state(c, state, copy, c->opts.data);
}

/* hiredis keeps the text of a context's error in c.errstr; ac->errstr is only synced later. */
static const char *context_reason(const redisAsyncContext *ac)
{
    return ac->c.err && ac->c.errstr[0] ? ac->c.errstr : "connection lost";
}

/* Retry delay: reconnect_min_ms doubled per failure, capped at reconnect_max_ms, plus up to
 * 25% random jitter so that many clients do not reconnect in step. */
static uint64_t backoff_ms(redis_client_t *c)
{
    uint64_t delay = c->opts.reconnect_min_ms;
    for (unsigned i = 0; i < c->failures && delay < c->opts.reconnect_max_ms; i++)
        delay *= 2;
    if (delay > c->opts.reconnect_max_ms)
        delay = c->opts.reconnect_max_ms;
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    return delay + c->rng % (delay / 4 + 1);
}

static void maybe_finish(redis_client_t *c);

/* ------------------------------------------------------------------------------------------
 * Connection lifecycle
 * ---------------------------------------------------------------------------------------- */

static void on_retry(uv_timer_t *timer)
{
    start_attempt(container_of(timer, redis_client_t, retry_timer));
}

/* An attempt failed or a connection was lost (c->ac already forgotten): schedule the next one
 * and report RECONNECTING if that is news. reason is copied. */
static void attempt_failed(redis_client_t *c, const char *reason)
{
    set_errstr(c, "%s", reason);
    uv_timer_stop(&c->watchdog);
    if (c->state == REDIS_STATE_CLOSED)
        return;
    uint64_t delay = backoff_ms(c);
    c->failures++;
    uv_timer_start(&c->retry_timer, on_retry, delay, 0);
    log_debug("redis %s:%d: %s; retry in %llu ms", c->opts.host, c->opts.port, c->errstr,
              (unsigned long long)delay);
    if (c->state != REDIS_STATE_RECONNECTING)
        set_state(c, REDIS_STATE_RECONNECTING, c->errstr);
}

/* The live context is going: hiredis is tearing it down (a connect, read or write error; the
 * first of its callbacks to tell us lands here) or we are about to free it. Forget it first,
 * so that nothing of ours touches it again, then fail the attempt. */
static void conn_lost(redis_client_t *c, const char *reason)
{
    c->ac = NULL;
    c->ac_ready = false;
    c->setup_left = 0;
    attempt_failed(c, reason);
}

/* Drops the live context ourselves. Pending commands then fail with NULL, from inside
 * redisAsyncFree or, when called from a reply callback, right after that callback returns.
 * reason must not be c->errstr. */
static void drop_context(redis_client_t *c, const char *reason)
{
    redisAsyncContext *ac = c->ac;
    conn_lost(c, reason);
    redisAsyncFree(ac);
}

static void become_ready(redis_client_t *c)
{
    assert(c->state != REDIS_STATE_CLOSED); /* closing drops a context that is not READY */
    c->ac_ready = true;
    c->failures = 0;
    watchdog_rearm(c); /* from the connect deadline to the command deadlines */
    set_state(c, REDIS_STATE_READY, "connected");
}

/* Replies to the client's own PING and FUNCTION LOADs. */
static void on_internal_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redis_client_t *c = ac->data;
    redisReply *reply = r;
    int kind = (int)(uintptr_t)privdata;

    if (c->ac != ac)
        return; /* a context we already forgot, failing its commands on the way out */
    if (!reply) {
        conn_lost(c, context_reason(ac));
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        char reason[sizeof c->errstr];
        snprintf(reason, sizeof reason, "%s failed: %s",
                 kind == INTERNAL_SETUP_PING ? "PING" : "FUNCTION LOAD", reply->str);
        drop_context(c, reason); /* deferred by hiredis until we return */
        return;
    }
    if (kind != INTERNAL_LIVE_LOAD && --c->setup_left == 0)
        become_ready(c);
}

static int queue_load(redis_client_t *c, const char *lib, int kind)
{
    return redisAsyncCommand(c->ac, on_internal_reply, (void *)(uintptr_t)kind,
                             "FUNCTION LOAD REPLACE %s", lib);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    redis_client_t *c = ac->data;
    /* On REDIS_ERR hiredis frees ac right after this returns: forget it, never free it. */
    if (status != REDIS_OK && c->ac == ac)
        conn_lost(c, context_reason(ac));
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    redis_client_t *c = ac->data;
    if (c->ac == ac) /* else we dropped it ourselves and know why */
        conn_lost(c, status == REDIS_OK ? "disconnected" : context_reason(ac));
}

static void on_adapter_closed(void *arg)
{
    redis_client_t *c = arg;
    c->adapters--;
    maybe_finish(c);
}

/* A new context for every attempt: hiredis cannot reconnect one. Queues the setup commands
 * at once (hiredis sends them when the connect completes); READY comes with their replies. */
static void start_attempt(redis_client_t *c)
{
    assert(!c->ac && c->pending_count == 0 && c->state != REDIS_STATE_CLOSED);
    if (c->attempts++ > 0)
        c->stats.reconnects++;

    redisAsyncContext *ac = redisAsyncConnect(c->opts.host, c->opts.port);
    if (!ac) {
        attempt_failed(c, "out of memory");
        return;
    }
    if (ac->err) { /* e.g. refused at once: never connected, so this frees with no callback */
        char reason[sizeof c->errstr];
        snprintf(reason, sizeof reason, "%s", ac->c.errstr);
        redisAsyncFree(ac);
        attempt_failed(c, reason);
        return;
    }
    int rc = redis_uv_attach(ac, c->loop, on_adapter_closed, c);
    if (rc) {
        redisAsyncFree(ac);
        attempt_failed(c, uv_strerror(rc));
        return;
    }
    ac->c.reader->fn = &pooled_replies; /* no reply was read yet */
    c->adapters++;
    ac->data = c;
    c->ac = ac;
    c->ac_ready = false;
    c->attempt_start_ms = uv_now(c->loop);
    redisAsyncSetConnectCallback(ac, on_connect); /* arms the write watcher */
    redisAsyncSetDisconnectCallback(ac, on_disconnect);

    int failed = 0;
    if (c->n_libs == 0) {
        failed = redisAsyncCommand(ac, on_internal_reply, (void *)(uintptr_t)INTERNAL_SETUP_PING,
                                   "PING") != REDIS_OK;
        c->setup_left = 1;
    } else {
        for (size_t i = 0; i < c->n_libs && !failed; i++)
            failed = queue_load(c, c->libs[i], INTERNAL_SETUP_LOAD) != REDIS_OK;
        c->setup_left = (unsigned)c->n_libs;
    }
    if (failed) { /* only a failed malloc while formatting */
        drop_context(c, "out of memory");
        return;
    }
    watchdog_rearm(c);
}

/* ------------------------------------------------------------------------------------------
 * Watchdog
 * ---------------------------------------------------------------------------------------- */

/* The next instant the live context must have progressed by: READY before the connect
 * deadline, then the oldest command answered before its own. */
static bool watchdog_deadline(const redis_client_t *c, uint64_t *deadline)
{
    if (!c->ac)
        return false;
    if (!c->ac_ready) {
        *deadline = c->attempt_start_ms + c->opts.connect_timeout_ms;
        return true;
    }
    if (c->pending_count) {
        *deadline = c->pending[c->pending_head].sent_ms + c->opts.command_timeout_ms;
        return true;
    }
    return false;
}

static void on_watchdog(uv_timer_t *timer)
{
    redis_client_t *c = container_of(timer, redis_client_t, watchdog);
    uint64_t deadline;
    if (!watchdog_deadline(c, &deadline))
        return;
    if (uv_now(c->loop) < deadline) { /* the command it was armed for got its reply */
        watchdog_rearm(c);
        return;
    }
    char reason[64];
    if (c->ac_ready)
        snprintf(reason, sizeof reason, "command timed out after %u ms",
                 c->opts.command_timeout_ms);
    else
        snprintf(reason, sizeof reason, "connect timed out after %u ms",
                 c->opts.connect_timeout_ms);
    c->stats.timeouts++;
    drop_context(c, reason);
}

static void watchdog_rearm(redis_client_t *c)
{
    uint64_t deadline, now = uv_now(c->loop);
    uv_timer_stop(&c->watchdog);
    if (watchdog_deadline(c, &deadline))
        uv_timer_start(&c->watchdog, on_watchdog, deadline > now ? deadline - now : 0, 0);
}

/* ------------------------------------------------------------------------------------------
 * Closing
 * ---------------------------------------------------------------------------------------- */

static void client_free(redis_client_t *c)
{
    for (size_t i = 0; i < c->n_libs; i++)
        free(c->libs[i]);
    free(c->pending);
    free((char *)c->opts.host);
    free(c);
    /* Its contexts, and the replies they held, are gone (maybe_finish). */
    if (--clients_on_thread == 0)
        release_spare_replies();
}

static void on_timer_closed(uv_handle_t *handle)
{
    redis_client_t *c = handle->data;
    if (--c->timers_open > 0)
        return;
    if (c->close_cb)
        c->close_cb(c, c->close_data);
    client_free(c);
}

/* Once closed and every context and adapter handle is gone, closes the timers; the last timer
 * close callback frees the client. */
static void maybe_finish(redis_client_t *c)
{
    if (c->state != REDIS_STATE_CLOSED || c->ac || c->adapters > 0 || c->timers_closing)
        return;
    c->timers_closing = true;
    uv_close((uv_handle_t *)&c->retry_timer, on_timer_closed);
    uv_close((uv_handle_t *)&c->watchdog, on_timer_closed);
}

void redis_client_close(redis_client_t *c, redis_close_cb close_cb, void *data)
{
    assert(c->state != REDIS_STATE_CLOSED && "redis_client_close called twice");
    bool drain = c->state == REDIS_STATE_READY && c->pending_count > 0;
    c->close_cb = close_cb;
    c->close_data = data;
    uv_timer_stop(&c->retry_timer);
    set_errstr(c, "client closed");
    set_state(c, REDIS_STATE_CLOSED, "client closed");
    /* A READY connection answers what is in flight (on_reply drops it when the last reply is
     * in, the watchdog if Redis is too slow); anything else goes now. */
    if (c->ac && !drain)
        drop_context(c, "client closed");
    maybe_finish(c);
}

/* ------------------------------------------------------------------------------------------
 * Public API
 * ---------------------------------------------------------------------------------------- */

int redis_client_new(redis_client_t **out, uv_loop_t *loop, const redis_client_options_t *opts)
{
    if (!out || !loop || !opts || !opts->host || !opts->host[0] || opts->port < 1 ||
        opts->port > 65535)
        return REDIS_CLIENT_EINVAL;

    redis_client_t *c = calloc(1, sizeof *c);
    if (!c)
        return REDIS_CLIENT_ENOMEM;
    c->opts = *opts;
    if (!c->opts.command_timeout_ms)
        c->opts.command_timeout_ms = DEFAULT_COMMAND_TIMEOUT_MS;
    if (!c->opts.connect_timeout_ms)
        c->opts.connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    if (!c->opts.reconnect_min_ms)
        c->opts.reconnect_min_ms = DEFAULT_RECONNECT_MIN_MS;
    if (!c->opts.reconnect_max_ms)
        c->opts.reconnect_max_ms = DEFAULT_RECONNECT_MAX_MS;
    if (c->opts.reconnect_max_ms < c->opts.reconnect_min_ms) /* e.g. only min set, above 5 s */
        c->opts.reconnect_max_ms = c->opts.reconnect_min_ms;
    if (!c->opts.max_pending)
        c->opts.max_pending = DEFAULT_MAX_PENDING;

    c->opts.host = strdup(opts->host);
    c->pending = calloc(c->opts.max_pending, sizeof *c->pending);
    if (!c->opts.host || !c->pending) {
        free((char *)c->opts.host);
        free(c->pending);
        free(c);
        return REDIS_CLIENT_ENOMEM;
    }
    c->loop = loop;
    c->state = REDIS_STATE_CONNECTING;
    c->rng = (uv_hrtime() ^ (uint64_t)(uintptr_t)c) | 1;

    /* uv_timer_init cannot fail. */
    uv_timer_init(loop, &c->retry_timer);
    uv_timer_init(loop, &c->watchdog);
    c->retry_timer.data = c;
    c->watchdog.data = c;
    c->timers_open = 2;
    clients_on_thread++;
    uv_timer_start(&c->retry_timer, on_retry, 0, 0); /* first attempt on the next iteration */
    *out = c;
    return 0;
}

int redis_client_add_function_library(redis_client_t *c, const char *lua_code)
{
    if (!c || !lua_code || strncmp(lua_code, "#!", 2) != 0)
        return REDIS_CLIENT_EINVAL;
    if (c->state == REDIS_STATE_CLOSED)
        return REDIS_CLIENT_ECLOSED;
    if (c->n_libs >= REDIS_CLIENT_MAX_LIBRARIES)
        return REDIS_CLIENT_EINVAL;
    char *copy = strdup(lua_code);
    if (!copy)
        return REDIS_CLIENT_ENOMEM;
    c->libs[c->n_libs++] = copy;

    if (!c->ac)
        return 0; /* the next attempt loads it */
    /* Connected or connecting: load it on this context too; before READY it joins the setup
     * (hiredis queues it behind the others, even before the TCP connect completes). */
    int kind = c->ac_ready ? INTERNAL_LIVE_LOAD : INTERNAL_SETUP_LOAD;
    if (queue_load(c, copy, kind) != REDIS_OK) {
        drop_context(c, "out of memory");
        return 0; /* registered all the same: the next attempt loads it */
    }
    if (kind == INTERNAL_SETUP_LOAD)
        c->setup_left++;
    return 0;
}

/* The decimal number at *p, up to its CRLF, all before end (a formatted command need not end
 * with a NUL: strtol could read past it). Moves *p past the CRLF; -1 when malformed. */
static long resp_number(const char **p, const char *end)
{
    long n = 0;
    const char *s = *p;
    if (s >= end || *s < '0' || *s > '9')
        return -1;
    for (; s < end && *s >= '0' && *s <= '9'; s++) {
        if (n > (LONG_MAX - 9) / 10)
            return -1;
        n = n * 10 + (*s - '0');
    }
    if (end - s < 2 || s[0] != '\r' || s[1] != '\n')
        return -1;
    *p = s + 2;
    return n;
}

/* Argument i of a formatted command ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", len bytes). */
static bool command_arg(const char *cmd, size_t len, int i, const char **arg, size_t *arglen)
{
    const char *p = cmd, *end = cmd + len;
    if (p >= end || *p++ != '*')
        return false;
    long argc = resp_number(&p, end);
    if (argc < 0 || i >= argc)
        return false;
    for (int k = 0; k <= i; k++) {
        if (p >= end || *p++ != '$')
            return false;
        long n = resp_number(&p, end);
        if (n < 0 || n > end - p || end - p - n < 2)
            return false;
        *arg = p;
        *arglen = (size_t)n;
        p += n + 2;
    }
    return true;
}

typedef struct {
    const char *text;
    size_t len;
} word_t;

#define WORD(w) {w, sizeof w - 1}

static bool arg_is(const char *arg, size_t len, word_t word)
{
    return word.len == len && strncasecmp(arg, word.text, len) == 0;
}

/* Commands that break one reply per command: pub/sub and MONITOR push replies nobody asked
 * for, replication streams one, CLIENT REPLY OFF|SKIP suppresses them, HELLO 3 switches to
 * RESP3 that 0.14 cannot parse. Every command goes through this check: the lengths are
 * compared first. */
static bool command_refused(const char *cmd, size_t len)
{
    static const word_t refused[] = {WORD("subscribe"),   WORD("psubscribe"),
                                     WORD("ssubscribe"),  WORD("unsubscribe"),
                                     WORD("punsubscribe"), WORD("sunsubscribe"),
                                     WORD("monitor"),     WORD("sync"),
                                     WORD("psync")};
    static const word_t client = WORD("client"), reply = WORD("reply"), hello = WORD("hello"),
                        two = WORD("2");
    const char *name, *arg;
    size_t name_len, arg_len;
    if (!command_arg(cmd, len, 0, &name, &name_len))
        return true; /* no command name: hiredis would assert */
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (arg_is(name, name_len, refused[i]))
            return true;
    if (arg_is(name, name_len, client))
        return command_arg(cmd, len, 1, &arg, &arg_len) && arg_is(arg, arg_len, reply);
    if (arg_is(name, name_len, hello))
        return command_arg(cmd, len, 1, &arg, &arg_len) && !arg_is(arg, arg_len, two);
    return false;
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redis_client_t *c = ac->data;
    redisReply *reply = r;

    if (!reply && c->ac == ac) /* hiredis is tearing ac down: say so before failing commands */
        conn_lost(c, context_reason(ac));

    assert(c->pending_count > 0);
    pending_t p = c->pending[c->pending_head];
    c->pending_head = (c->pending_head + 1) % c->opts.max_pending;
    c->pending_count--;
    if (!reply)
        c->stats.failed++;
    if (p.cb)
        p.cb(c, reply, p.data);

    /* Closed while READY: the connection goes once the last reply is in. */
    if (c->state == REDIS_STATE_CLOSED && c->ac == ac && c->pending_count == 0)
        drop_context(c, "client closed");
}

/* Takes a formatted command (freed by the caller). */
static int submit(redis_client_t *c, redis_reply_cb cb, void *data, const char *cmd, size_t len)
{
    int rc = 0;
    if (command_refused(cmd, len))
        rc = REDIS_CLIENT_EINVAL;
    else if (c->state != REDIS_STATE_READY)
        rc = REDIS_CLIENT_ENOTREADY;
    else if (c->pending_count >= c->opts.max_pending)
        rc = REDIS_CLIENT_EFULL;
    else if (redisAsyncFormattedCommand(c->ac, on_reply, NULL, cmd, len) != REDIS_OK)
        rc = REDIS_CLIENT_ENOTREADY; /* the context is disconnecting */
    if (rc) {
        c->stats.refused++;
        return rc;
    }
    size_t tail = (c->pending_head + c->pending_count) % c->opts.max_pending;
    c->pending[tail] = (pending_t){cb, data, uv_now(c->loop)};
    c->pending_count++;
    c->stats.sent++;
    if (!uv_is_active((uv_handle_t *)&c->watchdog))
        watchdog_rearm(c);
    return 0;
}

static int refuse(redis_client_t *c, int rc)
{
    c->stats.refused++;
    return rc;
}

int redis_client_command(redis_client_t *c, redis_reply_cb cb, void *data, const char *fmt, ...)
{
    if (!c || !fmt)
        return REDIS_CLIENT_EINVAL;
    if (c->state == REDIS_STATE_CLOSED)
        return refuse(c, REDIS_CLIENT_ECLOSED);
    char *cmd;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len < 0) /* -2: bad format, -1: out of memory */
        return refuse(c, len == -2 ? REDIS_CLIENT_EFORMAT : REDIS_CLIENT_ENOMEM);
    int rc = submit(c, cb, data, cmd, (size_t)len);
    free(cmd);
    return rc;
}

int redis_client_command_argv(redis_client_t *c, redis_reply_cb cb, void *data, int argc,
                              const char **argv, const size_t *argvlen)
{
    if (!c || !argv || argc < 1)
        return c ? refuse(c, REDIS_CLIENT_EINVAL) : REDIS_CLIENT_EINVAL;
    if (c->state == REDIS_STATE_CLOSED)
        return refuse(c, REDIS_CLIENT_ECLOSED);
    char *cmd;
    int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0)
        return refuse(c, REDIS_CLIENT_ENOMEM);
    int rc = submit(c, cb, data, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return rc;
}

int redis_client_command_formatted(redis_client_t *c, redis_reply_cb cb, void *data,
                                   const char *cmd, size_t len)
{
    if (!c || !cmd || len == 0)
        return c ? refuse(c, REDIS_CLIENT_EINVAL) : REDIS_CLIENT_EINVAL;
    if (c->state == REDIS_STATE_CLOSED)
        return refuse(c, REDIS_CLIENT_ECLOSED);
    return submit(c, cb, data, cmd, len);
}

unsigned redis_client_room(const redis_client_t *c)
{
    if (c->state != REDIS_STATE_READY)
        return 0;
    return (unsigned)(c->opts.max_pending - c->pending_count);
}

redis_state_t redis_client_state(const redis_client_t *c)
{
    return c->state;
}

const char *redis_client_errstr(const redis_client_t *c)
{
    return c->errstr;
}

void redis_client_stats(const redis_client_t *c, redis_client_stats_t *out)
{
    *out = c->stats;
}
