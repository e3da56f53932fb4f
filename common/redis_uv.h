/* redis_uv.h - a Redis client on the libuv loop: hiredis 0.14.1 async plus what 0.14 lacks.
 *
 * Two layers live in common/redis_uv.c:
 *   - redis_uv_attach(): our own hiredis event adapter on uv_poll_t. It replaces
 *     <hiredis/adapters/libuv.h>, which in 0.14.1 drops socket errors (a refused connect never
 *     reports anything; see shared/notes/event-loop.md section 2).
 *   - redis_client_*: one connection that a service keeps for its lifetime. It reconnects by
 *     itself with exponential backoff and jitter, loads the service's Redis Functions on every
 *     (re)connect before it calls itself READY, times out commands with a watchdog (0.14 has no
 *     redisAsyncSetTimeout) and bounds the commands in flight.
 *
 * Everything runs on the loop thread; no function here is thread-safe. One reply per command:
 * SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE, (P)UNSUBSCRIBE and MONITOR are refused. hiredis resolves
 * the host name synchronously: give an IP address (or a name in /etc/hosts). RESP2 only: never
 * send HELLO 3. */
#ifndef INTEGRAL_REDIS_UV_H
#define INTEGRAL_REDIS_UV_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <uv.h>

/* ---------------------------------------------------------------------------------------------
 * Adapter
 * ------------------------------------------------------------------------------------------- */

/* Called once the adapter's uv_poll_t is closed, i.e. after hiredis has freed the context and the
 * loop has run the handle's close callback. */
typedef void (*redis_uv_closed_cb)(void *arg);

/* Drives ac from loop: installs ac->ev hooks backed by a uv_poll_t on the context's socket.
 * closed_cb (may be NULL) is called with arg once that handle is closed, which lets an owner wait
 * for it before freeing itself or closing the loop. Call it before redisAsyncSetConnectCallback
 * (that call arms the write watcher through these hooks).
 * Returns 0, UV_EEXIST if ac already has an adapter, UV_ENOMEM, or the uv_poll_init_socket()
 * error; on error nothing is installed or leaked and closed_cb is never called. ac is borrowed:
 * hiredis still owns and frees it; the handle closes when hiredis calls ev.cleanup. */
int redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop, redis_uv_closed_cb closed_cb,
                    void *arg);

/* ---------------------------------------------------------------------------------------------
 * Client
 * ------------------------------------------------------------------------------------------- */

typedef struct redis_client_s redis_client_t;

/* Errors returned by redis_client_* (0 is success). Text: redis_client_strerror(). */
typedef enum {
    REDIS_CLIENT_OK = 0,
    REDIS_CLIENT_EINVAL = -1,    /* bad argument, or a command that breaks one-reply-per-command */
    REDIS_CLIENT_ENOMEM = -2,    /* out of memory */
    REDIS_CLIENT_ENOTREADY = -3, /* command refused: the client is not READY */
    REDIS_CLIENT_EFULL = -4,     /* command refused: max_pending commands already in flight */
    REDIS_CLIENT_EFORMAT = -5,   /* command refused: hiredis could not format it */
    REDIS_CLIENT_ECLOSED = -6,   /* redis_client_close() was called */
} redis_client_err_t;

/* Static text for an error code (never NULL). */
const char *redis_client_strerror(int err);

/* Transitions, each reported once through on_state:
 *   CONNECTING   -> READY | RECONNECTING | CLOSED     (first attempt, started by _new)
 *   READY        -> RECONNECTING | CLOSED
 *   RECONNECTING -> READY | CLOSED                    (failed retries stay RECONNECTING silently)
 * READY means connected AND every function library loaded (or PING answered when there is none):
 * commands are accepted only then. CLOSED is final. */
typedef enum {
    REDIS_STATE_CONNECTING,
    REDIS_STATE_READY,
    REDIS_STATE_RECONNECTING,
    REDIS_STATE_CLOSED,
} redis_state_t;

/* "connecting" | "ready" | "reconnecting" | "closed" (static, never NULL). */
const char *redis_state_name(redis_state_t state);

/* A command's result. reply is borrowed: valid during the callback only (hiredis frees it after);
 * it may be an error reply (REDIS_REPLY_ERROR: the command ran and failed, e.g. "ERR Function not
 * found"). reply == NULL means no reply will come: disconnected, timed out or client closed, and
 * redis_client_errstr(c) says why. The callback may issue commands and may call
 * redis_client_close(); the client stays valid until the close callback has run. */
typedef void (*redis_reply_cb)(redis_client_t *c, redisReply *reply, void *data);

/* Every state transition. reason is borrowed (valid during the call), e.g. "Connection refused",
 * "command timed out after 500 ms", "FUNCTION LOAD failed: ERR ...". May call
 * redis_client_close() (not from the CLOSED report). */
typedef void (*redis_state_cb)(redis_client_t *c, redis_state_t state, const char *reason,
                               void *data);

/* Called once when a closed client has released everything; c is freed right after it returns. */
typedef void (*redis_close_cb)(redis_client_t *c, void *data);

/* Options. Zero means the default given here, so `{.host = "127.0.0.1", .port = 6379}` works. */
typedef struct {
    const char *host;                /* copied; an IP address (resolution would block) */
    int port;                        /* 1..65535 */
    unsigned command_timeout_ms;     /* 2000: oldest unanswered command older -> reconnect */
    unsigned connect_timeout_ms;     /* 2000: connect start to READY (TCP + FUNCTION LOADs) */
    unsigned reconnect_min_ms;       /* 100: first retry delay, doubled per failed attempt */
    unsigned reconnect_max_ms;       /* 5000: cap on the retry delay (before jitter) */
    unsigned max_pending;            /* 16384: commands in flight; more are refused (EFULL).
                                        The queue is allocated up front, 24 bytes per slot. */
    redis_state_cb on_state;         /* may be NULL */
    void *data;                      /* passed to on_state; borrowed */
} redis_client_options_t;

/* Counters for metrics, all monotonic since _new. */
typedef struct {
    uint64_t sent;       /* commands queued (accepted by redis_client_command*) */
    uint64_t failed;     /* of those, completed with reply == NULL */
    uint64_t refused;    /* commands refused (not READY, full, bad format) */
    uint64_t timeouts;   /* contexts dropped by the watchdog (command or connect timeout) */
    uint64_t reconnects; /* connect attempts after the first one */
} redis_client_stats_t;

/* Creates a client on loop and starts connecting (the first attempt runs on the loop's next
 * iteration, so no callback is made before this returns). opts is copied (host too; data is
 * kept). Returns 0 and *out, or EINVAL / ENOMEM with *out untouched. The client is freed only
 * by redis_client_close(): every client must be closed before its loop is closed. */
int redis_client_new(redis_client_t **out, uv_loop_t *loop, const redis_client_options_t *opts);

/* Registers a Redis Functions library (lua_code, copied; starts "#!lua name=...") that is sent as
 * FUNCTION LOAD REPLACE on every (re)connect, before READY: Redis restarted without persistence
 * has lost it. Added while connected, it is loaded at once too. If Redis answers with an error
 * (bad Lua), the connection is dropped with reason "FUNCTION LOAD failed: <error>" and retried
 * with backoff. Returns 0, EINVAL (NULL, or more than REDIS_CLIENT_MAX_LIBRARIES), ENOMEM,
 * ECLOSED. */
#define REDIS_CLIENT_MAX_LIBRARIES 16
int redis_client_add_function_library(redis_client_t *c, const char *lua_code);

/* Queues a command (hiredis printf-like format: %s, %b with a length, ...). Returns 0 when queued:
 * cb (may be NULL) is then called exactly once, with the reply or NULL. Otherwise a negative
 * redis_client_err_t (ENOTREADY, EFULL, EFORMAT, EINVAL) and cb is never called.
 * Commands issued back to back are pipelined: hiredis buffers them and writes them together
 * when the socket is writable. data is borrowed, handed back to cb. */
int redis_client_command(redis_client_t *c, redis_reply_cb cb, void *data, const char *fmt, ...);

/* As redis_client_command with binary-safe arguments (argv/argvlen borrowed, copied before it
 * returns; argvlen NULL means strlen). */
int redis_client_command_argv(redis_client_t *c, redis_reply_cb cb, void *data, int argc,
                              const char **argv, const size_t *argvlen);

/* Queues one command the caller has already encoded in RESP ("*3\r\n$3\r\nSET\r\n..."):
 * for a large command built straight from the caller's buffers, without the argv copy that
 * redis_client_command_argv makes. cmd (len bytes) is copied; it must hold exactly one
 * command and be followed by a NUL (cmd[len] == 0: hiredis 0.14 scans the command's name
 * with strchr). Returns and calls cb as redis_client_command. */
int redis_client_command_formatted(redis_client_t *c, redis_reply_cb cb, void *data,
                                   const char *cmd, size_t len);

/* How many more commands would be accepted now (0 unless READY): a caller that must send a
 * group of commands all or nothing (MULTI ... EXEC) checks this first. */
unsigned redis_client_room(const redis_client_t *c);

/* Closes the client. The state becomes CLOSED at once (reported through on_state, the last
 * report) and new commands are refused. Pending commands get their replies if the connection is
 * READY and Redis answers within command_timeout_ms, otherwise they fail with NULL. close_cb
 * (may be NULL) is called once every handle is closed, then c is freed. Call exactly once; safe
 * from inside any of the client's callbacks except the CLOSED report. */
void redis_client_close(redis_client_t *c, redis_close_cb close_cb, void *data);

redis_state_t redis_client_state(const redis_client_t *c);

/* Why the last failure happened: connect error, timeout, Redis error during FUNCTION LOAD, or
 * "client closed". Borrowed, valid until the next callback of this client. Never NULL. */
const char *redis_client_errstr(const redis_client_t *c);

/* Copies the counters to *out. */
void redis_client_stats(const redis_client_t *c, redis_client_stats_t *out);

#endif
