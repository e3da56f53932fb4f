/* bench_applied - waits until the engine has applied every message of a topic, and says when.
 *
 * The engine writes, with each batch, the partition's next offset not yet applied to
 * {p:TOPIC:N}:applied (services/engine/README.md, "Redis keys"). This polls those keys for all
 * partitions with one MGET every --interval-ms and remembers, per partition, when its value was
 * first seen. Once the watermarks file (bench_produce --watermarks-out: "partition low high"
 * lines, written atomically after the producer's flush) exists and every partition's applied
 * offset has reached its high watermark, it prints the completion time: the latest of the
 * partitions' "first seen at the final value" times, so the answer does not depend on when the
 * file appeared, only on the polling interval.
 *
 * A second criterion guards against the applied offsets never getting there although the
 * engine has finished (seen: a partition's batch writes can land in Redis out of order, which
 * leaves {p}:applied behind; see tests/bench/README.md). With --metrics-port and --expect-events,
 * each poll also reads the engine's /metrics; once events_total has grown by the expected count
 * and in_flight and consumer_lag are 0, the engine is idle. If it stays idle for --grace-ms while
 * some applied offset is still behind, the wait ends with criterion=idle, the idle time as the
 * completion time, and the partitions behind are listed.
 *
 * Output (stdout): done_us=<unix microseconds> applied_total=<messages> polls=<n>
 * criterion=applied|idle behind_partitions=<n> behind_messages=<n>. --timeline FILE:
 * "unix_us applied_total engine_events_total" per poll (for the sustained-rate curve). Exit 0
 * when done, 1 on timeout or a Redis error, 2 on bad usage.
 *
 *   bench_applied --redis-port P --partitions N --watermarks FILE [--topic interactions]
 *                 [--redis-host 127.0.0.1] [--interval-ms 100] [--timeout-s 900]
 *                 [--timeline FILE] [--metrics-port P --expect-events N [--grace-ms 2000]]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Reads "partition low high" lines into high[]; 0 when complete, -1 when not there (yet). */
static int read_watermarks(const char *path, int partitions, int64_t *high)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int seen = 0, p;
    int64_t low, hi;
    while (fscanf(f, "%d %" SCNd64 " %" SCNd64, &p, &low, &hi) == 3) {
        if (p >= 0 && p < partitions) {
            high[p] = hi;
            seen++;
        }
    }
    fclose(f);
    return seen == partitions ? 0 : -1;
}

typedef struct {
    double events_total, in_flight, lag;
} engine_metrics_t;

/* Sums the series of one metric in a Prometheus text exposition. */
static double metric_sum(const char *text, const char *name)
{
    double sum = 0;
    size_t n = strlen(name);
    for (const char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        if (strncmp(line, name, n) == 0 && (line[n] == ' ' || line[n] == '{')) {
            const char *v = strchr(line + n, ' ');
            if (line[n] == '{') {
                const char *close = strchr(line + n, '}');
                v = close ? strchr(close, ' ') : NULL;
            }
            if (v)
                sum += strtod(v + 1, NULL);
        }
    }
    return sum;
}

/* GET /metrics from the engine (HTTP/1.1, Connection: close). 0, or -1. */
static int fetch_metrics(int port, engine_metrics_t *out)
{
    static char buf[1 << 20];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    static const char req[] = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              "Connection: close\r\n\r\n";
    size_t used = 0;
    ssize_t n;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) {
        close(fd);
        return -1;
    }
    while (used < sizeof buf - 1 && (n = read(fd, buf + used, sizeof buf - 1 - used)) > 0)
        used += (size_t)n;
    close(fd);
    buf[used] = '\0';
    const char *body = strstr(buf, "\r\n\r\n");
    if (!body || strncmp(buf, "HTTP/1.1 200", 12) != 0)
        return -1;
    out->events_total = metric_sum(body, "integral_engine_events_total");
    out->in_flight = metric_sum(body, "integral_engine_in_flight");
    out->lag = metric_sum(body, "integral_engine_consumer_lag");
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_applied --redis-port P --partitions N --watermarks FILE [--topic T]\n"
               "       [--redis-host H] [--interval-ms 100] [--timeout-s 900] [--timeline F]\n"
               "       [--metrics-port P --expect-events N [--grace-ms 2000]]\n");
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *topic = "interactions", *wm_path = NULL, *tl_path = NULL;
    int port = 0, partitions = 0, interval_ms = 100, timeout_s = 900;
    int metrics_port = 0, grace_ms = 2000;
    double expect_events = 0;
    static const struct option options[] = {
        {"redis-host", required_argument, NULL, 'H'}, {"redis-port", required_argument, NULL, 'p'},
        {"topic", required_argument, NULL, 't'},      {"partitions", required_argument, NULL, 'n'},
        {"watermarks", required_argument, NULL, 'w'}, {"interval-ms", required_argument, NULL, 'i'},
        {"timeout-s", required_argument, NULL, 'T'},  {"timeline", required_argument, NULL, 'l'},
        {"metrics-port", required_argument, NULL, 'm'},
        {"expect-events", required_argument, NULL, 'e'},
        {"grace-ms", required_argument, NULL, 'g'},
        {"help", no_argument, NULL, 'h'},             {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'H': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 't': topic = optarg; break;
        case 'n': partitions = atoi(optarg); break;
        case 'w': wm_path = optarg; break;
        case 'i': interval_ms = atoi(optarg); break;
        case 'T': timeout_s = atoi(optarg); break;
        case 'l': tl_path = optarg; break;
        case 'm': metrics_port = atoi(optarg); break;
        case 'e': expect_events = strtod(optarg, NULL); break;
        case 'g': grace_ms = atoi(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (port <= 0 || partitions <= 0 || partitions > 4096 || !wm_path || interval_ms < 1) {
        usage(stderr);
        return 2;
    }
    redisContext *redis = redisConnect(host, port);
    if (!redis || redis->err) {
        fprintf(stderr, "bench_applied: redis %s:%d: %s\n", host, port,
                redis ? redis->errstr : "out of memory");
        return 1;
    }
    FILE *timeline = tl_path ? fopen(tl_path, "w") : NULL;
    if (tl_path && !timeline) {
        fprintf(stderr, "bench_applied: %s: %s\n", tl_path, strerror(errno));
        return 1;
    }
    /* MGET {p:T:0}:applied ... {p:T:N-1}:applied */
    const char **argv_m = calloc((size_t)partitions + 1, sizeof *argv_m);
    char *keys = calloc((size_t)partitions, 300);
    int64_t *applied = calloc((size_t)partitions, sizeof *applied);
    int64_t *since = calloc((size_t)partitions, sizeof *since);
    int64_t *high = calloc((size_t)partitions, sizeof *high);
    if (!argv_m || !keys || !applied || !since || !high) {
        fprintf(stderr, "bench_applied: out of memory\n");
        return 1;
    }
    argv_m[0] = "MGET";
    for (int p = 0; p < partitions; p++) {
        snprintf(keys + (size_t)p * 300, 300, "{p:%s:%d}:applied", topic, p);
        argv_m[p + 1] = keys + (size_t)p * 300;
        applied[p] = -1;
    }
    bool have_wm = false;
    engine_metrics_t em = {0};
    double base_events = -1;
    int64_t idle_since = 0, metrics_ok_us = 0;
    int64_t start = wall_us(), deadline = start + (int64_t)timeout_s * 1000000;
    uint64_t polls = 0;
    for (;;) {
        redisReply *r = redisCommandArgv(redis, partitions + 1, argv_m, NULL);
        int64_t now = wall_us();
        if (!r || r->type != REDIS_REPLY_ARRAY || (int)r->elements != partitions) {
            fprintf(stderr, "bench_applied: MGET failed: %s\n",
                    r ? (r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply")
                      : redis->errstr);
            return 1;
        }
        polls++;
        int64_t total = 0;
        for (int p = 0; p < partitions; p++) {
            redisReply *e = r->element[p];
            int64_t v = e->type == REDIS_REPLY_STRING ? strtoll(e->str, NULL, 10) : 0;
            if (v != applied[p]) {
                applied[p] = v;
                since[p] = now;
            }
            total += v;
        }
        freeReplyObject(r);
        if (metrics_port && !metrics_ok_us)
            metrics_ok_us = now;
        if (metrics_port && fetch_metrics(metrics_port, &em) == 0) {
            metrics_ok_us = now;
            if (base_events < 0)
                base_events = em.events_total;
            bool idle = expect_events > 0 && em.events_total - base_events >= expect_events &&
                        em.in_flight == 0 && em.lag == 0;
            if (!idle)
                idle_since = 0;
            else if (!idle_since)
                idle_since = now;
        }
        if (timeline)
            fprintf(timeline, "%" PRId64 " %" PRId64 " %.0f\n", now, total,
                    base_events < 0 ? 0.0 : em.events_total - base_events);
        if (!have_wm)
            have_wm = read_watermarks(wm_path, partitions, high) == 0;
        if (have_wm) {
            bool done = true;
            int64_t done_us = 0, behind = 0;
            int behind_partitions = 0;
            for (int p = 0; p < partitions; p++) {
                if (applied[p] < high[p]) {
                    done = false;
                    behind_partitions++;
                    behind += high[p] - applied[p];
                } else if (high[p] > 0 && since[p] > done_us) {
                    done_us = since[p];
                }
            }
            bool idle_done = !done && idle_since && now - idle_since >= (int64_t)grace_ms * 1000;
            if (done || idle_done) {
                printf("done_us=%" PRId64 "\napplied_total=%" PRId64 "\npolls=%" PRIu64 "\n"
                       "criterion=%s\nbehind_partitions=%d\nbehind_messages=%" PRId64 "\n",
                       done ? (done_us ? done_us : now) : idle_since, total, polls,
                       done ? "applied" : "idle", behind_partitions, behind);
                for (int p = 0; idle_done && p < partitions; p++)
                    if (applied[p] < high[p])
                        fprintf(stderr,
                                "bench_applied: engine idle but partition %d applied %" PRId64
                                " < high watermark %" PRId64 "\n",
                                p, applied[p], high[p]);
                if (timeline)
                    fclose(timeline);
                redisFree(redis);
                return 0;
            }
        }
        if (metrics_port && now - metrics_ok_us > 15 * 1000000) {
            fprintf(stderr, "bench_applied: the engine's /metrics has not answered for 15 s "
                            "(engine gone?): %" PRId64 " applied\n", total);
            return 1;
        }
        if (now > deadline) {
            fprintf(stderr, "bench_applied: timeout after %d s: %" PRId64 " applied\n",
                    timeout_s, total);
            for (int p = 0; have_wm && p < partitions; p++)
                if (applied[p] < high[p])
                    fprintf(stderr, "  partition %d: applied %" PRId64 " of %" PRId64 "\n", p,
                            applied[p], high[p]);
            return 1;
        }
        struct timespec ts = {interval_ms / 1000, (long)(interval_ms % 1000) * 1000000};
        nanosleep(&ts, NULL);
    }
}
