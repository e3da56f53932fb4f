/* ws_agents - the gateway benchmark's load client: N agent desktops on one libuv loop.
 *
 * It opens --agents WebSocket connections to ws://HOST:PORT/ws (at most --concurrency being set
 * up at once), each with a hand-written handshake (GET /ws, a random Sec-WebSocket-Key, the
 * 101 and its Sec-WebSocket-Accept checked with OpenSSL's SHA-1) and wslay 1.1.1 in client mode
 * for the framing (masks from a genmask callback). Each connection then authenticates as its
 * own agent, <prefix><%04u index> (A0000, A0001, ...; with --sim-ids the ids integral-sim gives
 * its agents, <prefix><%03u index+1>: A001 ... A999, A1000, ...), with an HS256 JWT minted here (OpenSSL
 * HMAC, base64url; header {"alg":"HS256","typ":"JWT"}, payload {"sub","role":"agent","exp"}),
 * the secret read from the environment variable --secret-env (INTEGRAL_GATEWAY_JWT_SECRET).
 *
 * For every {"type":"alert","seq":...,"alert":{...}} it records, with the receive time (wall
 * clock, microseconds):
 *   - latency = received - produced, where "produced" is read from the alert's event_id when it
 *     has gw_produce's form e<phase>-<index>-<produce unix us> (exact), else from event_time
 *     (1 ms resolution); latency_event_time = received - event_time is recorded as well;
 *   - three segments: produced -> the engine built the alert (alert.time), built -> stored in
 *     the agent's log (the seq's millisecond part: Redis's clock at XADD), stored -> received;
 *   - whether alert.agent_id is the connection's own agent (else: wrong_agent; an alert without
 *     agent_id is a held one, handed over with a screen pop: counted as held, not wrong), and
 *     whether seq increases on the connection (else: seq_regressions).
 * Statistics are kept per phase (the <phase> of gw_produce's event id, or the <seed> of
 * integral-sim's sim-<seed>-<n> when below 100; 0 for other ids). Screen pops are counted, with
 * their latency from the contact's event id (or its time).
 *
 * Output:
 *   --status FILE  rewritten (atomically) every 250 ms: key=value lines (connected,
 *                  authenticated, alerts, per-phase counts and last arrival) for scripts;
 *   --out FILE     the JSON summary, written on SIGUSR1 and at exit (SIGINT/SIGTERM: the
 *                  connections are closed with 1000 first, for at most 2 s);
 *   --raw FILE     one line per alert: agent event_id alert_id seq received_us latency_us
 *                  alert_agent_id (- when null: a held alert).
 * Exit status: 0, 1 on a setup error, 2 on bad usage.
 *
 *   ws_agents --port P [--host 127.0.0.1] [--agents 2000] [--agent-prefix A] [--sim-ids]
 *             [--concurrency 64] [--ttl-s 14400] [--secret-env INTEGRAL_GATEWAY_JWT_SECRET]
 *             [--subprotocol integral.v1] [--status FILE] [--out FILE] [--raw FILE]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* timegm */
#endif
#include <cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <uv.h>
#include <wslay/wslay.h>

#define HANDSHAKE_MAX 8192
#define READ_BUF (64 * 1024)
#define MAX_MESSAGE (16 * 1024 * 1024)
#define PHASES_MAX 100
#define CLOSE_CODES_MAX 16
#define ATTEMPTS_MAX 3
#define ID_MAX 64
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* ------------------------------------------------------------------------------------------
 * Options and global state
 * ---------------------------------------------------------------------------------------- */

static struct {
    const char *host, *prefix, *secret_env, *subprotocol;
    const char *status_path, *out_path, *raw_path;
    int port;
    unsigned agents, concurrency;
    long ttl_s;
    bool sim_ids;
} opt = {"127.0.0.1", "A", "INTEGRAL_GATEWAY_JWT_SECRET", "integral.v1", NULL, NULL, NULL, 0,
         2000, 64, 14400, false};

enum { ST_IDLE, ST_CONNECTING, ST_HANDSHAKE, ST_AUTHING, ST_OPEN, ST_CLOSED };

typedef struct conn {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    unsigned index;
    int state;
    int attempts;
    bool closing;          /* uv_close called */
    bool setting_up;       /* counted in setting_up */
    bool server_closed;    /* a close frame came from the gateway */
    bool we_closed;        /* we queued a close (shutdown) */
    char agent[ID_MAX];
    char key[32];          /* Sec-WebSocket-Key (base64 of 16 random bytes) */
    char accept[32];       /* the Sec-WebSocket-Accept we expect */
    char *hbuf;            /* handshake response so far */
    size_t hlen;
    wslay_event_context_ptr ws;
    const uint8_t *feed;   /* bytes read, being handed to wslay */
    size_t feed_len;
    char *obuf;            /* bytes for the socket, flushed once per pump */
    size_t olen, ocap;
    uint64_t alerts, pops;
    int64_t last_seq_ms, last_seq_n;
} conn_t;

typedef struct {
    int64_t *v;
    size_t n, cap;
} series_t;

enum { S_E2E, S_E2E_EVTIME, S_TO_ENGINE, S_TO_LOG, S_TO_SOCKET, S_POP, S_HELD, S_COUNT };
static const char *const series_names[S_COUNT] = {
    "latency_ms", "latency_event_time_ms", "produced_to_alert_built_ms",
    "alert_built_to_stored_ms", "stored_to_received_ms", "screen_pop_ms", "held_alert_ms",
};

typedef struct {
    bool used;
    uint64_t alerts, pops, exact, held;
    int64_t first_us, last_us;
    series_t s[S_COUNT];
} phase_t;

static struct {
    uv_loop_t *loop;
    conn_t *conns;
    unsigned next_start;      /* next connection index never started */
    unsigned *retry;          /* indexes to start again */
    unsigned n_retry;
    unsigned setting_up;
    unsigned connected, authenticated, open_now, closed_total, failed, dropped;
    unsigned handshake_failed, auth_refused;
    uint64_t alerts, pops, wrong_agent, held, seq_regressions, errors, other, bad_messages;
    uint64_t subprotocol_mismatch;
    struct { int code; unsigned count; } close_codes[CLOSE_CODES_MAX];
    phase_t phases[PHASES_MAX];
    bool stopping;
    int64_t start_us, all_authed_us;
    uv_timer_t status_timer, stop_timer;
    uv_signal_t sig_int, sig_term, sig_usr1;
    FILE *raw;
    unsigned char secret[4096];
    size_t secret_len;
    uint64_t mask_state;
} g;

static char read_buf[READ_BUF];

static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ------------------------------------------------------------------------------------------
 * Series and percentiles
 * ---------------------------------------------------------------------------------------- */

static void series_add(series_t *s, int64_t v)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        int64_t *nv = realloc(s->v, cap * sizeof *nv);
        if (!nv)
            return; /* dropped sample: counts still come from phase_t */
        s->v = nv;
        s->cap = cap;
    }
    s->v[s->n++] = v;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest rank: the smallest value with at least q of the samples at or below it. */
static int64_t rank(const int64_t *sorted, size_t n, double q)
{
    size_t k = (size_t)(q * (double)n + 0.999999999);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return sorted[k - 1];
}

/* {"n","mean","p50","p90","p99","p999","max","min"} in milliseconds (values are microseconds). */
static cJSON *series_json(const series_t *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "n", (double)s->n);
    if (s->n == 0)
        return o;
    int64_t *v = malloc(s->n * sizeof *v);
    if (!v)
        return o;
    memcpy(v, s->v, s->n * sizeof *v);
    qsort(v, s->n, sizeof *v, cmp_i64);
    double sum = 0;
    for (size_t i = 0; i < s->n; i++)
        sum += (double)v[i];
    cJSON_AddNumberToObject(o, "mean", sum / (double)s->n / 1000.0);
    cJSON_AddNumberToObject(o, "min", (double)v[0] / 1000.0);
    cJSON_AddNumberToObject(o, "p50", (double)rank(v, s->n, 0.50) / 1000.0);
    cJSON_AddNumberToObject(o, "p90", (double)rank(v, s->n, 0.90) / 1000.0);
    cJSON_AddNumberToObject(o, "p99", (double)rank(v, s->n, 0.99) / 1000.0);
    cJSON_AddNumberToObject(o, "p999", (double)rank(v, s->n, 0.999) / 1000.0);
    cJSON_AddNumberToObject(o, "max", (double)v[s->n - 1] / 1000.0);
    free(v);
    return o;
}

/* ------------------------------------------------------------------------------------------
 * Encoding: base64, base64url, the token, the handshake key
 * ---------------------------------------------------------------------------------------- */

static void b64url(const unsigned char *in, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        out[o++] = a[v >> 6 & 63];
        out[o++] = a[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        out[o++] = a[v >> 6 & 63];
    }
    out[o] = '\0';
}

/* header.payload.signature, HS256. Returns 0, or -1 when it does not fit. */
static int mint_token(const char *sub, char *out, size_t cap)
{
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    char payload[256], h64[64], p64[400], sig64[64];
    int n = snprintf(payload, sizeof payload, "{\"sub\":\"%s\",\"role\":\"agent\",\"exp\":%lld}",
                     sub, (long long)time(NULL) + opt.ttl_s);
    if (n < 0 || (size_t)n >= sizeof payload)
        return -1;
    b64url((const unsigned char *)header, sizeof header - 1, h64);
    b64url((const unsigned char *)payload, (size_t)n, p64);
    int len = snprintf(out, cap, "%s.%s", h64, p64);
    if (len < 0 || (size_t)len >= cap)
        return -1;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned mac_len = 0;
    if (!HMAC(EVP_sha256(), g.secret, (int)g.secret_len, (const unsigned char *)out, (size_t)len,
              mac, &mac_len))
        return -1;
    b64url(mac, mac_len, sig64);
    size_t used = (size_t)len;
    n = snprintf(out + used, cap - used, ".%s", sig64);
    return n < 0 || (size_t)n >= cap - used ? -1 : 0;
}

static int make_key(conn_t *c)
{
    unsigned char raw[16], dig[EVP_MAX_MD_SIZE];
    unsigned dig_len = 0;
    if (RAND_bytes(raw, sizeof raw) != 1)
        return -1;
    EVP_EncodeBlock((unsigned char *)c->key, raw, sizeof raw); /* 24 chars + NUL */
    char both[64];
    int n = snprintf(both, sizeof both, "%s%s", c->key, WS_GUID);
    if (n != 24 + 36 || !EVP_Digest(both, (size_t)n, dig, &dig_len, EVP_sha1(), NULL))
        return -1;
    EVP_EncodeBlock((unsigned char *)c->accept, dig, (int)dig_len); /* 28 chars + NUL */
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Parsing helpers
 * ---------------------------------------------------------------------------------------- */

/* RFC 3339 (the fraction optional, Z or an offset) to unix milliseconds. */
static bool parse_time_ms(const char *s, int64_t *out)
{
    int year, mon, day, hour, min, sec, n = 0;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &year, &mon, &day, &hour, &min, &sec, &n) != 6)
        return false;
    const char *p = s + n;
    int64_t frac = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 3)
                frac = frac * 10 + (*p - '0');
        if (digits == 0)
            return false;
        for (; digits < 3; digits++)
            frac *= 10;
    }
    long offset_s = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (sscanf(p + 1, "%2d:%2d", &oh, &om) != 2)
            return false;
        offset_s = (long)(oh * 3600 + om * 60) * (*p == '+' ? 1 : -1);
        p += 6;
    } else {
        return false;
    }
    if (*p)
        return false;
    struct tm tm = {.tm_year = year - 1900, .tm_mon = mon - 1, .tm_mday = day,
                    .tm_hour = hour, .tm_min = min, .tm_sec = sec};
    *out = ((int64_t)timegm(&tm) - offset_s) * 1000 + frac;
    return true;
}

/* gw_produce's event ids: e<phase>-<index>-<produce unix us>. */
static bool parse_event_id(const char *id, unsigned *phase, int64_t *produced_us)
{
    unsigned p;
    unsigned long long index;
    long long us;
    char extra;
    if (!id || sscanf(id, "e%u-%llu-%lld%c", &p, &index, &us, &extra) != 3 || p >= PHASES_MAX)
        return false;
    *phase = p;
    *produced_us = us;
    return true;
}

/* integral-sim's event ids: sim-<seed>-<n>; the benchmark runs a phase with its number as the
 * seed. The phase, or 0. */
static unsigned sim_phase(const char *id)
{
    unsigned long long seed, n;
    char extra;
    if (!id || sscanf(id, "sim-%llu-%llu%c", &seed, &n, &extra) != 2 || seed >= PHASES_MAX)
        return 0;
    return (unsigned)seed;
}

/* A Redis stream id "<ms>-<n>". */
static bool parse_seq(const char *seq, int64_t *ms, int64_t *n)
{
    long long a, b;
    char extra;
    if (!seq || sscanf(seq, "%lld-%lld%c", &a, &b, &extra) != 2)
        return false;
    *ms = a;
    *n = b;
    return true;
}

static const char *str_item(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ------------------------------------------------------------------------------------------
 * Connections: output
 * ---------------------------------------------------------------------------------------- */

static void conn_close(conn_t *c);
static void start_more(void);

typedef struct {
    uv_write_t req;
    char *buf;
} write_t;

static void on_written(uv_write_t *req, int status)
{
    write_t *w = (write_t *)req;
    conn_t *c = req->data;
    free(w->buf);
    free(w);
    if (status < 0 && status != UV_ECANCELED && !c->closing)
        conn_close(c);
}

static int append_out(conn_t *c, const void *data, size_t len)
{
    if (c->olen + len > c->ocap) {
        size_t cap = c->ocap ? c->ocap : 1024;
        while (cap < c->olen + len)
            cap *= 2;
        char *nb = realloc(c->obuf, cap);
        if (!nb)
            return -1;
        c->obuf = nb;
        c->ocap = cap;
    }
    memcpy(c->obuf + c->olen, data, len);
    c->olen += len;
    return 0;
}

/* The buffer's ownership moves to the write request. */
static void flush(conn_t *c)
{
    if (c->olen == 0 || c->closing)
        return;
    write_t *w = malloc(sizeof *w);
    if (!w) {
        conn_close(c);
        return;
    }
    w->buf = c->obuf;
    w->req.data = c;
    uv_buf_t b = uv_buf_init(c->obuf, (unsigned)c->olen);
    c->obuf = NULL;
    c->olen = c->ocap = 0;
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written) < 0) {
        free(w->buf);
        free(w);
        conn_close(c);
    }
}

/* Lets wslay write what it has queued, then flushes; closes the TCP connection once the close
 * handshake is over. */
static void pump(conn_t *c)
{
    if (!c->ws || c->closing)
        return;
    if (wslay_event_want_write(c->ws) && wslay_event_send(c->ws) != 0) {
        conn_close(c);
        return;
    }
    flush(c);
    if (!wslay_event_want_read(c->ws) && !wslay_event_want_write(c->ws))
        conn_close(c); /* both closes went: the gateway closes TCP too; don't wait */
}

/* ------------------------------------------------------------------------------------------
 * wslay callbacks (client mode)
 * ---------------------------------------------------------------------------------------- */

static ssize_t ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user)
{
    (void)flags;
    conn_t *c = user;
    if (c->feed_len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < c->feed_len ? len : c->feed_len;
    memcpy(buf, c->feed, n);
    c->feed += n;
    c->feed_len -= n;
    return (ssize_t)n;
}

static ssize_t ws_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    (void)flags;
    conn_t *c = user;
    if (append_out(c, data, len) < 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

/* xorshift64*: masks only need to be unpredictable to proxies, not secret. */
static int ws_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user)
{
    (void)ctx;
    (void)user;
    for (size_t i = 0; i < len; i++) {
        g.mask_state ^= g.mask_state >> 12;
        g.mask_state ^= g.mask_state << 25;
        g.mask_state ^= g.mask_state >> 27;
        buf[i] = (uint8_t)((g.mask_state * 0x2545F4914F6CDD1DULL) >> 56);
    }
    return 0;
}

static void note_close_code(int code)
{
    for (int i = 0; i < CLOSE_CODES_MAX; i++) {
        if (g.close_codes[i].count == 0)
            g.close_codes[i].code = code;
        if (g.close_codes[i].code == code) {
            g.close_codes[i].count++;
            return;
        }
    }
}

static void on_alert(conn_t *c, const cJSON *msg, int64_t now_us)
{
    const cJSON *alert = cJSON_GetObjectItemCaseSensitive(msg, "alert");
    const char *seq = str_item(msg, "seq");
    const char *agent = str_item(alert, "agent_id");
    const char *event_id = str_item(alert, "event_id");
    const char *alert_id = str_item(alert, "id");
    int64_t event_ms = 0, built_ms = 0, seq_ms = 0, seq_n = 0, produced_us = 0;
    bool has_event_time = parse_time_ms(str_item(alert, "event_time"), &event_ms);
    bool has_built = parse_time_ms(str_item(alert, "time"), &built_ms);
    bool has_seq = parse_seq(seq, &seq_ms, &seq_n);
    unsigned phase = 0;
    bool exact = parse_event_id(event_id, &phase, &produced_us);
    if (!exact && has_event_time)
        produced_us = event_ms * 1000;
    if (!exact)
        phase = sim_phase(event_id);

    g.alerts++;
    c->alerts++;
    if (!agent)
        g.held++; /* held for the customer's next contact, handed over with the screen pop */
    else if (strcmp(agent, c->agent) != 0)
        g.wrong_agent++;
    if (has_seq) {
        if (seq_ms < c->last_seq_ms || (seq_ms == c->last_seq_ms && seq_n <= c->last_seq_n))
            g.seq_regressions++;
        c->last_seq_ms = seq_ms;
        c->last_seq_n = seq_n;
    } else {
        g.seq_regressions++; /* an agent's alert always has a seq */
    }

    phase_t *p = &g.phases[phase];
    p->used = true;
    p->alerts++;
    if (!agent)
        p->held++;
    if (!p->first_us)
        p->first_us = now_us;
    p->last_us = now_us;
    if (exact)
        p->exact++;
    if (!agent) {
        /* A held alert waited for the customer's contact: its own series, not the latency. */
        if (exact || has_event_time)
            series_add(&p->s[S_HELD], now_us - produced_us);
    } else {
        if (exact || has_event_time)
            series_add(&p->s[S_E2E], now_us - produced_us);
        if (has_event_time)
            series_add(&p->s[S_E2E_EVTIME], now_us - event_ms * 1000);
        if (has_built && (exact || has_event_time))
            series_add(&p->s[S_TO_ENGINE], built_ms * 1000 - produced_us);
        if (has_built && has_seq)
            series_add(&p->s[S_TO_LOG], (seq_ms - built_ms) * 1000);
        if (has_seq)
            series_add(&p->s[S_TO_SOCKET], now_us - seq_ms * 1000);
    }
    if (g.raw)
        fprintf(g.raw, "%s %s %s %s %" PRId64 " %" PRId64 " %s\n", c->agent,
                event_id ? event_id : "-", alert_id ? alert_id : "-", seq ? seq : "-", now_us,
                (exact || has_event_time) ? now_us - produced_us : -1, agent ? agent : "-");
}

static void on_screen_pop(conn_t *c, const cJSON *msg, int64_t now_us)
{
    const cJSON *contact = cJSON_GetObjectItemCaseSensitive(msg, "contact");
    unsigned phase = 0;
    int64_t produced_us = 0, ms = 0;
    if (!parse_event_id(str_item(contact, "event_id"), &phase, &produced_us)) {
        phase = sim_phase(str_item(contact, "event_id"));
        if (!parse_time_ms(str_item(contact, "time"), &ms)) {
            produced_us = 0;
        } else {
            produced_us = ms * 1000;
        }
    }
    g.pops++;
    c->pops++;
    phase_t *p = &g.phases[phase];
    p->used = true;
    p->pops++;
    if (produced_us)
        series_add(&p->s[S_POP], now_us - produced_us);
}

static void on_text(conn_t *c, const uint8_t *data, size_t len)
{
    int64_t now_us = wall_us();
    cJSON *msg = cJSON_ParseWithLength((const char *)data, len);
    const char *type = str_item(msg, "type");
    if (!type) {
        g.bad_messages++;
    } else if (strcmp(type, "alert") == 0) {
        on_alert(c, msg, now_us);
    } else if (strcmp(type, "screen_pop") == 0) {
        on_screen_pop(c, msg, now_us);
    } else if (strcmp(type, "welcome") == 0) {
        if (c->state == ST_AUTHING) {
            c->state = ST_OPEN;
            g.authenticated++;
            g.open_now++;
            if (c->setting_up) {
                c->setting_up = false;
                g.setting_up--;
            }
            if (g.authenticated == opt.agents)
                g.all_authed_us = wall_us();
            start_more();
        }
    } else if (strcmp(type, "error") == 0) {
        g.errors++;
    } else {
        g.other++;
    }
    cJSON_Delete(msg);
}

static void ws_on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                      void *user)
{
    (void)ctx;
    conn_t *c = user;
    if (arg->opcode == WSLAY_TEXT_FRAME) {
        on_text(c, arg->msg, arg->msg_length);
    } else if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
        c->server_closed = true;
        note_close_code(arg->status_code);
        if (c->state == ST_AUTHING)
            g.auth_refused++;
    } else if (arg->opcode == WSLAY_BINARY_FRAME) {
        g.bad_messages++;
    }
}

static const struct wslay_event_callbacks ws_callbacks = {
    ws_recv, ws_send, ws_genmask, NULL, NULL, NULL, ws_on_msg,
};

/* ------------------------------------------------------------------------------------------
 * Connections: life cycle
 * ---------------------------------------------------------------------------------------- */

static void maybe_finish(void);

static void on_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    if (c->ws) {
        wslay_event_context_free(c->ws);
        c->ws = NULL;
    }
    free(c->hbuf);
    free(c->obuf);
    c->hbuf = NULL;
    c->obuf = NULL;
    c->hlen = c->olen = c->ocap = 0;
    c->feed_len = 0;
    bool was_open = c->state == ST_OPEN;
    bool before_open = c->state != ST_OPEN;
    c->state = ST_CLOSED;
    c->closing = false;
    g.closed_total++;
    if (was_open) {
        g.open_now--;
        if (!g.stopping)
            g.dropped++; /* an agent lost its connection during the run */
    }
    if (c->setting_up) {
        c->setting_up = false;
        g.setting_up--;
    }
    if (before_open && !g.stopping) {
        if (c->attempts < ATTEMPTS_MAX) {
            g.retry[g.n_retry++] = c->index;
        } else {
            g.failed++;
            fprintf(stderr, "ws_agents: agent %s: gave up after %d attempts\n", c->agent,
                    c->attempts);
        }
        start_more();
    }
    maybe_finish();
}

static void conn_close(conn_t *c)
{
    if (c->closing || c->state == ST_CLOSED || c->state == ST_IDLE)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void feed_ws(conn_t *c, const uint8_t *data, size_t len)
{
    c->feed = data;
    c->feed_len = len;
    int rc = wslay_event_recv(c->ws);
    c->feed_len = 0; /* what wslay left after disabling reads is dropped */
    if (rc != 0) {
        conn_close(c);
        return;
    }
    pump(c);
}

/* The whole response header is in hbuf[0..end): check it, then switch to WebSocket. */
static int check_handshake(conn_t *c, size_t end)
{
    c->hbuf[end - 2] = '\0'; /* ends the last header line */
    if (strncmp(c->hbuf, "HTTP/1.1 101", 12) != 0) {
        char *eol = strstr(c->hbuf, "\r\n");
        if (eol)
            *eol = '\0';
        fprintf(stderr, "ws_agents: agent %s: handshake refused: %s\n", c->agent, c->hbuf);
        return -1;
    }
    bool accept_ok = false, proto_ok = !opt.subprotocol[0];
    for (char *line = strstr(c->hbuf, "\r\n"); line; line = strstr(line, "\r\n")) {
        line += 2;
        char *colon = strchr(line, ':'), *eol = strstr(line, "\r\n");
        if (!colon || (eol && colon > eol))
            continue;
        size_t name_len = (size_t)(colon - line);
        char *value = colon + 1;
        while (*value == ' ' || *value == '\t')
            value++;
        size_t value_len = eol ? (size_t)(eol - value) : strlen(value);
        while (value_len && (value[value_len - 1] == ' ' || value[value_len - 1] == '\t'))
            value_len--;
        if (name_len == 20 && strncasecmp(line, "Sec-WebSocket-Accept", 20) == 0)
            accept_ok = value_len == strlen(c->accept) && memcmp(value, c->accept, value_len) == 0;
        else if (name_len == 22 && strncasecmp(line, "Sec-WebSocket-Protocol", 22) == 0)
            proto_ok = value_len == strlen(opt.subprotocol) &&
                       memcmp(value, opt.subprotocol, value_len) == 0;
    }
    if (!accept_ok) {
        fprintf(stderr, "ws_agents: agent %s: wrong or missing Sec-WebSocket-Accept\n", c->agent);
        return -1;
    }
    if (!proto_ok)
        g.subprotocol_mismatch++;
    return 0;
}

static void start_ws(conn_t *c, const uint8_t *rest, size_t rest_len)
{
    if (wslay_event_context_client_init(&c->ws, &ws_callbacks, c) != 0) {
        conn_close(c);
        return;
    }
    wslay_event_config_set_max_recv_msg_length(c->ws, MAX_MESSAGE);
    c->state = ST_AUTHING;
    g.connected++;
    char token[1024], msg[1200];
    if (mint_token(c->agent, token, sizeof token) < 0) {
        fprintf(stderr, "ws_agents: cannot mint a token\n");
        conn_close(c);
        return;
    }
    int n = snprintf(msg, sizeof msg, "{\"type\":\"auth\",\"token\":\"%s\"}", token);
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)msg, (size_t)n};
    if (n < 0 || (size_t)n >= sizeof msg || wslay_event_queue_msg(c->ws, &m) != 0) {
        conn_close(c);
        return;
    }
    if (rest_len)
        feed_ws(c, rest, rest_len); /* frames that came with the 101 */
    else
        pump(c);
}

static void on_handshake_bytes(conn_t *c, const char *data, size_t len)
{
    if (!c->hbuf && !(c->hbuf = malloc(HANDSHAKE_MAX + 1))) {
        conn_close(c);
        return;
    }
    size_t take = len < HANDSHAKE_MAX - c->hlen ? len : HANDSHAKE_MAX - c->hlen;
    memcpy(c->hbuf + c->hlen, data, take);
    size_t old = c->hlen;
    c->hlen += take;
    c->hbuf[c->hlen] = '\0';
    char *end = strstr(c->hbuf, "\r\n\r\n");
    if (!end) {
        if (c->hlen == HANDSHAKE_MAX) {
            fprintf(stderr, "ws_agents: agent %s: handshake response too long\n", c->agent);
            g.handshake_failed++;
            conn_close(c);
        }
        return;
    }
    size_t header_len = (size_t)(end - c->hbuf) + 4;
    if (check_handshake(c, header_len) < 0) {
        g.handshake_failed++;
        conn_close(c);
        return;
    }
    /* Bytes of this read past the header are already WebSocket frames. */
    size_t used_here = header_len - old;
    const uint8_t *rest = (const uint8_t *)data + used_here;
    size_t rest_len = len - used_here;
    free(c->hbuf);
    c->hbuf = NULL;
    c->hlen = 0;
    start_ws(c, rest, rest_len);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(read_buf, sizeof read_buf); /* consumed synchronously in on_read */
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    conn_t *c = s->data;
    if (n < 0) {
        if (!g.stopping && c->state == ST_OPEN && !c->server_closed)
            fprintf(stderr, "ws_agents: agent %s: connection lost: %s\n", c->agent,
                    uv_strerror((int)n));
        conn_close(c);
        return;
    }
    if (n == 0 || c->closing)
        return;
    if (c->state == ST_HANDSHAKE)
        on_handshake_bytes(c, buf->base, (size_t)n);
    else if (c->ws)
        feed_ws(c, (const uint8_t *)buf->base, (size_t)n);
}

static void on_connect(uv_connect_t *req, int status)
{
    conn_t *c = req->data;
    if (status < 0) {
        if (!g.stopping)
            fprintf(stderr, "ws_agents: agent %s: connect: %s\n", c->agent, uv_strerror(status));
        conn_close(c);
        return;
    }
    if (c->closing)
        return;
    char req_text[512];
    int n = snprintf(req_text, sizeof req_text,
                     "GET /ws HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                     opt.host, opt.port, c->key,
                     opt.subprotocol[0] ? "Sec-WebSocket-Protocol: " : "", opt.subprotocol,
                     opt.subprotocol[0] ? "\r\n" : "");
    c->state = ST_HANDSHAKE;
    if (n < 0 || (size_t)n >= sizeof req_text || append_out(c, req_text, (size_t)n) < 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
        conn_close(c);
        return;
    }
    flush(c);
}

static void conn_start(conn_t *c)
{
    struct sockaddr_in addr;
    c->attempts++;
    c->state = ST_CONNECTING;
    c->server_closed = c->we_closed = false;
    c->setting_up = true;
    g.setting_up++;
    if (uv_ip4_addr(opt.host, opt.port, &addr) != 0 || make_key(c) < 0 ||
        uv_tcp_init(g.loop, &c->tcp) != 0) {
        fprintf(stderr, "ws_agents: cannot set up a connection to %s:%d\n", opt.host, opt.port);
        c->state = ST_CLOSED;
        c->setting_up = false;
        g.setting_up--;
        g.failed++;
        return;
    }
    c->tcp.data = c;
    c->connect_req.data = c;
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&addr, on_connect) != 0)
        conn_close(c);
}

static void start_more(void)
{
    while (!g.stopping && g.setting_up < opt.concurrency) {
        if (g.n_retry) {
            conn_start(&g.conns[g.retry[--g.n_retry]]);
        } else if (g.next_start < opt.agents) {
            conn_start(&g.conns[g.next_start++]);
        } else {
            break;
        }
    }
}

/* ------------------------------------------------------------------------------------------
 * Reports
 * ---------------------------------------------------------------------------------------- */

static int write_atomically(const char *path, const char *text)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    fputs(text, f);
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, path);
}

static void write_status(void)
{
    if (!opt.status_path)
        return;
    char buf[16384];
    size_t o = 0;
#define OUT(...)                                                                                \
    do {                                                                                        \
        int n_ = snprintf(buf + o, sizeof buf - o, __VA_ARGS__);                               \
        if (n_ > 0 && (size_t)n_ < sizeof buf - o)                                              \
            o += (size_t)n_;                                                                    \
    } while (0)
    OUT("t_us=%" PRId64 "\n", wall_us());
    OUT("agents=%u\nconnected=%u\nauthenticated=%u\nopen=%u\nfailed=%u\ndropped=%u\n",
        opt.agents, g.connected, g.authenticated, g.open_now, g.failed, g.dropped);
    OUT("all_authenticated_us=%" PRId64 "\n", g.all_authed_us);
    OUT("alerts=%" PRIu64 "\npops=%" PRIu64 "\nwrong_agent=%" PRIu64 "\nheld=%" PRIu64
        "\nerrors=%" PRIu64 "\n",
        g.alerts, g.pops, g.wrong_agent, g.held, g.errors);
    for (unsigned p = 0; p < PHASES_MAX; p++)
        if (g.phases[p].used)
            OUT("phase_%u_alerts=%" PRIu64 "\nphase_%u_held=%" PRIu64 "\nphase_%u_pops=%" PRIu64
                "\nphase_%u_last_us=%" PRId64 "\n",
                p, g.phases[p].alerts, p, g.phases[p].held, p, g.phases[p].pops, p,
                g.phases[p].last_us);
#undef OUT
    buf[o] = '\0';
    if (write_atomically(opt.status_path, buf) < 0)
        fprintf(stderr, "ws_agents: %s: %s\n", opt.status_path, strerror(errno));
}

static void write_summary(void)
{
    if (g.raw)
        fflush(g.raw);
    if (!opt.out_path)
        return;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "agents", opt.agents);
    cJSON_AddNumberToObject(o, "connected", g.connected);
    cJSON_AddNumberToObject(o, "authenticated", g.authenticated);
    cJSON_AddNumberToObject(o, "open", g.open_now);
    cJSON_AddNumberToObject(o, "failed", g.failed);
    cJSON_AddNumberToObject(o, "handshake_failed", g.handshake_failed);
    cJSON_AddNumberToObject(o, "auth_refused", g.auth_refused);
    cJSON_AddNumberToObject(o, "dropped", g.dropped);
    cJSON_AddNumberToObject(o, "connect_s",
                            g.all_authed_us ? (double)(g.all_authed_us - g.start_us) / 1e6 : -1);
    cJSON_AddNumberToObject(o, "alerts_received", (double)g.alerts);
    cJSON_AddNumberToObject(o, "screen_pops", (double)g.pops);
    cJSON_AddNumberToObject(o, "wrong_agent", (double)g.wrong_agent);
    cJSON_AddNumberToObject(o, "held_alerts", (double)g.held);
    cJSON_AddNumberToObject(o, "seq_regressions", (double)g.seq_regressions);
    cJSON_AddNumberToObject(o, "error_messages", (double)g.errors);
    cJSON_AddNumberToObject(o, "other_messages", (double)g.other);
    cJSON_AddNumberToObject(o, "bad_messages", (double)g.bad_messages);
    cJSON_AddNumberToObject(o, "subprotocol_mismatch", (double)g.subprotocol_mismatch);
    uint64_t min_alerts = UINT64_MAX, max_alerts = 0;
    unsigned with_alerts = 0;
    for (unsigned i = 0; i < opt.agents; i++) {
        uint64_t a = g.conns[i].alerts;
        with_alerts += a > 0;
        if (a < min_alerts)
            min_alerts = a;
        if (a > max_alerts)
            max_alerts = a;
    }
    cJSON_AddNumberToObject(o, "agents_with_alerts", with_alerts);
    cJSON_AddNumberToObject(o, "alerts_per_agent_min", opt.agents ? (double)min_alerts : 0);
    cJSON_AddNumberToObject(o, "alerts_per_agent_max", (double)max_alerts);
    cJSON *codes = cJSON_AddObjectToObject(o, "close_codes_received");
    for (int i = 0; i < CLOSE_CODES_MAX && g.close_codes[i].count; i++) {
        char k[16];
        snprintf(k, sizeof k, "%d", g.close_codes[i].code);
        cJSON_AddNumberToObject(codes, k, g.close_codes[i].count);
    }
    cJSON *phases = cJSON_AddArrayToObject(o, "phases");
    for (unsigned p = 0; p < PHASES_MAX; p++) {
        const phase_t *ph = &g.phases[p];
        if (!ph->used)
            continue;
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "phase", p);
        cJSON_AddNumberToObject(j, "alerts", (double)ph->alerts);
        cJSON_AddNumberToObject(j, "held_alerts", (double)ph->held);
        cJSON_AddNumberToObject(j, "exact_produce_times", (double)ph->exact);
        cJSON_AddNumberToObject(j, "screen_pops", (double)ph->pops);
        cJSON_AddNumberToObject(j, "first_received_us", (double)ph->first_us);
        cJSON_AddNumberToObject(j, "last_received_us", (double)ph->last_us);
        for (int s = 0; s < S_COUNT; s++)
            cJSON_AddItemToObject(j, series_names[s], series_json(&ph->s[s]));
        cJSON_AddItemToArray(phases, j);
    }
    cJSON_AddNumberToObject(o, "cpu_user_s",
                            (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6);
    cJSON_AddNumberToObject(o, "cpu_sys_s",
                            (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
    cJSON_AddNumberToObject(o, "max_rss_kb", (double)ru.ru_maxrss);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (text) {
        size_t n = strlen(text);
        char *with_nl = malloc(n + 2);
        if (with_nl) {
            memcpy(with_nl, text, n);
            with_nl[n] = '\n';
            with_nl[n + 1] = '\0';
            if (write_atomically(opt.out_path, with_nl) < 0)
                fprintf(stderr, "ws_agents: %s: %s\n", opt.out_path, strerror(errno));
            free(with_nl);
        }
        free(text);
    }
}

/* ------------------------------------------------------------------------------------------
 * Timers, signals, shutdown
 * ---------------------------------------------------------------------------------------- */

static void on_status_timer(uv_timer_t *t)
{
    (void)t;
    write_status();
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Everything closed: the loop's own handles go too, and uv_run returns. */
static void maybe_finish(void)
{
    if (!g.stopping)
        return;
    for (unsigned i = 0; i < opt.agents; i++)
        if (g.conns[i].state != ST_CLOSED && g.conns[i].state != ST_IDLE)
            return;
    close_handle((uv_handle_t *)&g.status_timer);
    close_handle((uv_handle_t *)&g.stop_timer);
    close_handle((uv_handle_t *)&g.sig_int);
    close_handle((uv_handle_t *)&g.sig_term);
    close_handle((uv_handle_t *)&g.sig_usr1);
}

static void on_stop_timer(uv_timer_t *t)
{
    (void)t;
    for (unsigned i = 0; i < opt.agents; i++)
        conn_close(&g.conns[i]);
    maybe_finish();
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    if (signum == SIGUSR1) {
        write_summary();
        write_status();
        return;
    }
    if (g.stopping)
        return;
    g.stopping = true;
    write_status();
    write_summary(); /* the numbers first, then the goodbyes */
    for (unsigned i = 0; i < opt.agents; i++) {
        conn_t *c = &g.conns[i];
        if (c->state == ST_OPEN && c->ws && !c->closing) {
            c->we_closed = true;
            wslay_event_queue_close(c->ws, 1000, (const uint8_t *)"bench done", 10);
            pump(c);
        } else {
            conn_close(c);
        }
    }
    uv_timer_start(&g.stop_timer, on_stop_timer, 2000, 0);
    maybe_finish();
}

/* ------------------------------------------------------------------------------------------
 * main
 * ---------------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ws_agents --port P [options]\n"
            "  --host H            gateway address (127.0.0.1)\n"
            "  --agents N          connections, one agent each (2000)\n"
            "  --agent-prefix P    agent ids are P%%04u: A0000, A0001, ... (A)\n"
            "  --sim-ids           agent ids as integral-sim's: P%%03u from 1: A001 ... A999,\n"
            "                      A1000, ...\n"
            "  --concurrency N     connections being set up at once (64)\n"
            "  --ttl-s S           token lifetime (14400)\n"
            "  --secret-env NAME   environment variable with the HS256 secret\n"
            "                      (INTEGRAL_GATEWAY_JWT_SECRET)\n"
            "  --subprotocol P     offered subprotocol, \"\" for none (integral.v1)\n"
            "  --status FILE       key=value progress, rewritten every 250 ms\n"
            "  --out FILE          JSON summary (on SIGUSR1 and at exit)\n"
            "  --raw FILE          one line per alert\n");
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"host", required_argument, NULL, 'H'},        {"port", required_argument, NULL, 'p'},
        {"agents", required_argument, NULL, 'n'},      {"agent-prefix", required_argument, NULL, 'P'},
        {"concurrency", required_argument, NULL, 'c'}, {"ttl-s", required_argument, NULL, 't'},
        {"secret-env", required_argument, NULL, 'e'},  {"subprotocol", required_argument, NULL, 'S'},
        {"status", required_argument, NULL, 's'},      {"out", required_argument, NULL, 'o'},
        {"raw", required_argument, NULL, 'r'},         {"help", no_argument, NULL, 'h'},
        {"sim-ids", no_argument, NULL, 'I'},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (o) {
        case 'H': opt.host = optarg; break;
        case 'p': opt.port = atoi(optarg); break;
        case 'n': opt.agents = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'P': opt.prefix = optarg; break;
        case 'c': opt.concurrency = (unsigned)strtoul(optarg, NULL, 10); break;
        case 't': opt.ttl_s = strtol(optarg, NULL, 10); break;
        case 'e': opt.secret_env = optarg; break;
        case 'S': opt.subprotocol = optarg; break;
        case 's': opt.status_path = optarg; break;
        case 'o': opt.out_path = optarg; break;
        case 'r': opt.raw_path = optarg; break;
        case 'I': opt.sim_ids = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (opt.port <= 0 || opt.port > 65535 || opt.agents < 1 || opt.agents > 1000000 ||
        opt.concurrency < 1 || opt.ttl_s < 60 || strlen(opt.prefix) > 32) {
        usage(stderr);
        return 2;
    }
    const char *secret = getenv(opt.secret_env);
    if (!secret || strlen(secret) < 32 || strlen(secret) > sizeof g.secret) {
        fprintf(stderr, "ws_agents: %s must hold the gateway's secret (32 to %zu bytes)\n",
                opt.secret_env, sizeof g.secret);
        return 2;
    }
    g.secret_len = strlen(secret);
    memcpy(g.secret, secret, g.secret_len);
    if (RAND_bytes((unsigned char *)&g.mask_state, sizeof g.mask_state) != 1 || !g.mask_state)
        g.mask_state = 0x9e3779b97f4a7c15ULL;

    g.conns = calloc(opt.agents, sizeof *g.conns);
    g.retry = calloc(opt.agents, sizeof *g.retry);
    if (!g.conns || !g.retry) {
        fprintf(stderr, "ws_agents: out of memory\n");
        return 1;
    }
    for (unsigned i = 0; i < opt.agents; i++) {
        g.conns[i].index = i;
        g.conns[i].state = ST_IDLE;
        g.conns[i].last_seq_ms = -1;
        if (opt.sim_ids)
            snprintf(g.conns[i].agent, sizeof g.conns[i].agent, "%s%03u", opt.prefix, i + 1);
        else
            snprintf(g.conns[i].agent, sizeof g.conns[i].agent, "%s%04u", opt.prefix, i);
    }
    if (opt.raw_path) {
        if (!(g.raw = fopen(opt.raw_path, "w"))) {
            fprintf(stderr, "ws_agents: %s: %s\n", opt.raw_path, strerror(errno));
            return 1;
        }
        setvbuf(g.raw, NULL, _IOFBF, 1 << 20);
    }

    g.loop = uv_default_loop();
    uv_timer_init(g.loop, &g.status_timer);
    uv_timer_init(g.loop, &g.stop_timer);
    uv_signal_init(g.loop, &g.sig_int);
    uv_signal_init(g.loop, &g.sig_term);
    uv_signal_init(g.loop, &g.sig_usr1);
    uv_signal_start(&g.sig_int, on_signal, SIGINT);
    uv_signal_start(&g.sig_term, on_signal, SIGTERM);
    uv_signal_start(&g.sig_usr1, on_signal, SIGUSR1);
    uv_timer_start(&g.status_timer, on_status_timer, 250, 250);
    g.start_us = wall_us();
    start_more();
    write_status();
    uv_run(g.loop, UV_RUN_DEFAULT);

    write_status();
    write_summary();
    int rc = uv_loop_close(g.loop);
    if (rc != 0)
        fprintf(stderr, "ws_agents: uv_loop_close: %s\n", uv_strerror(rc));
    if (g.raw)
        fclose(g.raw);
    for (unsigned p = 0; p < PHASES_MAX; p++)
        for (int s = 0; s < S_COUNT; s++)
            free(g.phases[p].s[s].v);
    free(g.conns);
    free(g.retry);
    OPENSSL_cleanse(g.secret, sizeof g.secret);
    fprintf(stderr, "ws_agents: %u connected, %u authenticated, %" PRIu64 " alerts (%" PRIu64
            " held), %" PRIu64 " screen pops, %" PRIu64 " wrong agent, %u dropped, %u failed\n",
            g.connected, g.authenticated, g.alerts, g.held, g.pops, g.wrong_agent, g.dropped,
            g.failed);
    return 0;
}
