#!/usr/bin/env bash
# The engine benchmark (tests/bench/README.md): throughput, CPU per event, memory and alert
# latency of integral-engine against its own redis-server and embedded Kafka.
#
#   tests/bench/engine_bench.sh [--events 1000000] [--customers 100000] [--partitions 64]
#                               [--latency-rate 5000] [--latency-seconds 30] [--no-aof]
#                               [--produce-tick-ms 1]
#                               [--perf | --perf-calls] [--seed 1] [--fetch-wait-ms 1]
#                               [--no-latency] [--redis-timeout-ms N]
#                               [--run-dir DIR] [--build-dir DIR] [--no-build] [--keep-data]
#
# 1. Builds a release build (RelWithDebInfo, no sanitizers) in build-bench/.
# 2. Starts, on free loopback ports and under one run directory: redis-server (persistence as
#    deploy/integral.sh: config/redis.conf, AOF everysec; --no-aof: none), the embedded
#    Kafka (topics interactions:<partitions>, alerts:12, deadletter:3) and the engine
#    (config/engine.json, rules and model from config/, kafka.fetch_wait_max_ms from
#    --fetch-wait-ms), and waits until the engine is ready (group joined, partitions claimed).
#    --redis-timeout-ms overrides redis.command_timeout_ms (config/engine.json: 5000).
#    Environment for experiments (all recorded in params.env): BENCH_REDIS_CONF, lines
#    appended to Redis's configuration (e.g. 'auto-aof-rewrite-percentage 0'); REDIS_WRAPPER,
#    a command put in front of redis-server (e.g. 'taskset -c 1'); GLIBC_TUNABLES for the
#    engine (default glibc.malloc.hugetlb=1, as deploy/integral.sh).
# 3. Phase 1, throughput: produces --events events over --customers customers as fast as
#    possible and times first produce -> every partition's end offset applied in Redis.
# 4. Phase 2, latency: produces at --latency-rate events/s for --latency-seconds (fresh ids;
#    the events due within each --produce-tick-ms go out together, one wake-up of the
#    producer per tick: 0 = one per event, which cost the producer ~35 % more CPU at
#    4,000/s) and reads the engine's latency histograms and an independent alert consumer.
# 5. Writes summary.json and summary.txt to the run directory (default
#    build-bench/bench-runs/<date>) and prints the table. Everything it started is stopped at
#    the end, also on failure or Ctrl-C. Exit 0 when every check passed, 1 when one failed,
#    2 on bad usage.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=$ROOT/tests/bench
EVENTS=1000000
CUSTOMERS=100000
PARTITIONS=64
LAT_RATE=5000
LAT_SECONDS=30
AOF=yes
PERF=no
PERF_CALLS=no
SEED=1
FETCH_WAIT_MS=1
PRODUCE_TICK_MS=1
LATENCY=yes
BUILD=$ROOT/build-bench
RUN=
BUILD_IT=yes
KEEP_DATA=no
REDIS_TIMEOUT_MS=
LOG_TAG=bench
# shellcheck source=tests/bench/bench_lib.sh
. "$BENCH/bench_lib.sh"

while [ $# -gt 0 ]; do
    case $1 in
    --events) EVENTS=$2; shift ;;
    --customers) CUSTOMERS=$2; shift ;;
    --partitions) PARTITIONS=$2; shift ;;
    --latency-rate) LAT_RATE=$2; shift ;;
    --latency-seconds) LAT_SECONDS=$2; shift ;;
    --no-aof) AOF=no ;;
    --perf) PERF=yes ;;
    --perf-calls) PERF=yes; PERF_CALLS=yes ;;
    --seed) SEED=$2; shift ;;
    --fetch-wait-ms) FETCH_WAIT_MS=$2; shift ;;
    --produce-tick-ms) PRODUCE_TICK_MS=$2; shift ;;
    --no-latency) LATENCY=no ;;
    --run-dir) RUN=$2; shift ;;
    --build-dir) BUILD=$2; shift ;;
    --no-build) BUILD_IT=no ;;
    --keep-data) KEEP_DATA=yes ;;
    --redis-timeout-ms) REDIS_TIMEOUT_MS=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "engine_bench.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
for n in "$EVENTS" "$CUSTOMERS" "$PARTITIONS" "$LAT_RATE" "$LAT_SECONDS" "$SEED" "$FETCH_WAIT_MS" "$PRODUCE_TICK_MS" \
    ${REDIS_TIMEOUT_MS:+"$REDIS_TIMEOUT_MS"}; do
    [[ $n =~ ^[0-9]+$ ]] || { echo "engine_bench.sh: not a number: $n" >&2; exit 2; }
done

RUN=${RUN:-$BUILD/bench-runs/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$RUN"
RUN=$(cd "$RUN" && pwd)
PY=/usr/bin/python3

# ------------------------------------------------------------------------------------------
# Processes: every one we start is recorded, and stopped by its pid in cleanup.
# ------------------------------------------------------------------------------------------
ENGINE_PID='' BROKER_PID='' REDIS_PID='' PERF_PID='' ALERTS_PID='' APPLIED_PID='' REDIS_PORT=

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid perf "$PERF_PID" INT 30
    stop_pid bench_alerts "$ALERTS_PID" TERM 10
    stop_pid bench_applied "$APPLIED_PID" TERM 5
    stop_pid engine "$ENGINE_PID" TERM 40
    stop_pid devbroker "$BROKER_PID" TERM 15
    stop_redis
    if [ "$KEEP_DATA" = no ]; then
        rm -rf "$RUN/redis"
    fi
    uptime >"$RUN/uptime.after" 2>/dev/null || true
    [ $rc -eq 0 ] || log "failed (exit $rc); logs in $RUN"
    exit $rc
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# cpu_snapshot LABEL: CPU ticks of the engine, redis-server and the broker (utime stime cutime
# cstime from /proc/PID/stat), redis INFO cpu, the time, as key=value lines.
cpu_snapshot() {
    local out=$RUN/cpu.$1 name pid
    {
        cpu_clock_lines
        # the machine's idle and total ticks over every core: is a phase short of CPU, or
        # are its processes waiting for each other?
        awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i
                       print "machine_idle=" $5 + $6; print "machine_total=" t }' /proc/stat
        for name in engine redis broker; do
            case $name in
            engine) pid=$ENGINE_PID ;; redis) pid=$REDIS_PID ;; broker) pid=$BROKER_PID ;;
            esac
            proc_cpu "$name" "$pid" utime stime cutime cstime minflt
        done
        redis-cli -p "$REDIS_PORT" info cpu | tr -d '\r' | grep '^used_cpu' | sed 's/:/=/; s/^/redis_info_/'
        redis-cli -p "$REDIS_PORT" info persistence | tr -d '\r' |
            grep -E '^(aof_rewrites|aof_current_size|aof_rewrite_in_progress|rdb_bgsave_in_progress)[:]' |
            sed 's/:/=/; s/^/redis_/'
    } >"$out"
    redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' >"$RUN/commandstats.$1"
}

# perf_start PHASE / perf_stop: with --perf, sample the engine, redis-server and the broker
# during a phase (self time at 499 Hz; --perf-calls: call graphs at 199 Hz).
perf_start() {
    [ "$PERF" = yes ] || return 0
    local calls=()
    if [ "$PERF_CALLS" = yes ]; then
        calls=(--call-graph "dwarf,16384" -F 199)
    else
        calls=(-F 499)
    fi
    perf record -e cpu-clock "${calls[@]}" -p "$ENGINE_PID,$REDIS_PID,$BROKER_PID" \
        -o "$RUN/perf.$1.data" >"$RUN/perf.$1.log" 2>&1 &
    PERF_PID=$!
    sleep 0.5
}

metrics_snapshot() { curl -fsS -m 10 "http://127.0.0.1:$ENGINE_HTTP/metrics" >"$RUN/metrics.$1" || true; }

# engine_gone PHASE: the engine died during a phase (a crash is a result too): record how,
# skip the rest, and let the report say so.
engine_gone() {
    log "error: $1: the engine is gone: $(tail -2 "$RUN/engine.log" | tr '\n' ' ')"
    echo "failed_phase=$1" >>"$RUN/params.env"
    set +e
    wait "$ENGINE_PID"
    echo "engine_exit=$?" >"$RUN/engine.exit"
    set -e
    ENGINE_PID=
    dmesg 2>/dev/null | grep "integral-engine\[" | tail -2 >"$RUN/dmesg.txt" || true
}

# ------------------------------------------------------------------------------------------
# Build and start
# ------------------------------------------------------------------------------------------
uptime >"$RUN/uptime.before"
log "run directory $RUN; load before: $(cut -d, -f3- "$RUN/uptime.before" | sed 's/^ *//')"
cat >"$RUN/params.env" <<EOF
events=$EVENTS
customers=$CUSTOMERS
partitions=$PARTITIONS
latency_rate=$LAT_RATE
latency_seconds=$LAT_SECONDS
aof=$AOF
seed=$SEED
fetch_wait_ms=$FETCH_WAIT_MS
produce_tick_ms=$PRODUCE_TICK_MS
latency=$LATENCY
redis_command_timeout_ms=${REDIS_TIMEOUT_MS:-config}
engine_glibc_tunables=${GLIBC_TUNABLES:-glibc.malloc.hugetlb=1}
bench_redis_conf='$(printf %s "${BENCH_REDIS_CONF:-}" | tr "\n" ";")'
bench_redis_wrapper='${REDIS_WRAPPER:-}'
git_rev=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
nproc=$(nproc)
cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
EOF

if [ "$BUILD_IT" = yes ]; then
    log "building (RelWithDebInfo, no sanitizers) in $BUILD"
    flock /tmp/integral-build.lock sh -c "
        cmake -S '$ROOT' -B '$BUILD' -DCMAKE_BUILD_TYPE=RelWithDebInfo -DINTEGRAL_SANITIZE=OFF \
            -DINTEGRAL_WERROR=OFF >'$RUN/build.log' 2>&1 &&
        cmake --build '$BUILD' -j 2 --target integral-engine integral-devbroker bench_produce \
            bench_applied >>'$RUN/build.log' 2>&1" || { tail -30 "$RUN/build.log" >&2; die "build failed"; }
fi
check_release_build "$BUILD" RelWithDebInfo
ENGINE_BIN=$BUILD/bin/integral-engine
BROKER_BIN=$BUILD/bin/integral-devbroker
PRODUCE=$BUILD/tests/bench_produce
APPLIED=$BUILD/tests/bench_applied

# Redis: its own directory; persistence as deploy/integral.sh (or none with --no-aof).
start_redis "$RUN/"
log "redis-server $REDIS_PID on port $REDIS_PORT (appendonly $AOF)"

start_devbroker "$RUN/" "interactions:$PARTITIONS,alerts:12,deadletter:3"
log "integral-devbroker $BROKER_PID: $BROKERS"

CACHE_MAX=$((CUSTOMERS + CUSTOMERS / 10 + 2000))
start_engine "$RUN/"
wait_ready engine "$ENGINE_PID" "$ENGINE_HTTP" "$RUN/engine.log"
log "engine $ENGINE_PID ready on http://127.0.0.1:$ENGINE_HTTP (cache $CACHE_MAX documents, fetch wait ${FETCH_WAIT_MS} ms)"
cat >>"$RUN/params.env" <<EOF
redis_port=$REDIS_PORT
engine_http=$ENGINE_HTTP
engine_pid=$ENGINE_PID
redis_pid=$REDIS_PID
broker_pid=$BROKER_PID
cache_max_documents=$CACHE_MAX
EOF

# Idle baseline: what the stack costs with nothing to do (the engine's fetch loop runs every
# kafka.fetch_wait_max_ms against a broker that always waits the full time).
cpu_snapshot idle.start
sleep 5
cpu_snapshot idle.end

# ------------------------------------------------------------------------------------------
# Phase 1: throughput
# ------------------------------------------------------------------------------------------
log "phase 1: $EVENTS events over $CUSTOMERS customers, as fast as possible"
metrics_snapshot p1.before
"$APPLIED" --redis-port "$REDIS_PORT" --partitions "$PARTITIONS" --interval-ms 100 \
    --watermarks "$RUN/p1.watermarks" --timeline "$RUN/p1.timeline" --timeout-s 1800 \
    --metrics-port "$ENGINE_HTTP" --expect-events "$EVENTS" \
    >"$RUN/p1.applied" 2>"$RUN/p1.applied.log" &
APPLIED_PID=$!
perf_start p1
cpu_snapshot p1.start
"$PRODUCE" --brokers "$BROKERS" --count "$EVENTS" --customers "$CUSTOMERS" --seed "$SEED" \
    --start-index 0 --rate 0 --linger-ms 5 --watermarks-out "$RUN/p1.watermarks" \
    --warmup-topic deadletter \
    >"$RUN/p1.produce" 2>"$RUN/p1.produce.log" || die "bench_produce failed: $(cat "$RUN/p1.produce.log")"
log "phase 1: produced in $(sed -n 's/^elapsed_s=//p' "$RUN/p1.produce") s; waiting for the engine"
P1_OK=yes
wait "$APPLIED_PID" || P1_OK=no
APPLIED_PID=
cpu_snapshot p1.end
perf_stop
if [ $P1_OK = no ] && ! kill -0 "$ENGINE_PID" 2>/dev/null; then
    engine_gone p1
elif [ $P1_OK = no ]; then
    die "phase 1: the engine did not apply everything: $(cat "$RUN/p1.applied.log")"
else
metrics_snapshot p1.after
{
    awk '/^VmHWM/ {print "engine_vmhwm_kb=" $2} /^VmRSS/ {print "engine_vmrss_kb=" $2}' \
        "/proc/$ENGINE_PID/status"
    redis-cli -p "$REDIS_PORT" info memory | tr -d '\r' |
        grep -E '^(used_memory|used_memory_rss|used_memory_peak):' | sed 's/:/=/; s/^/redis_/'
    redis-cli -p "$REDIS_PORT" dbsize | awk '{print "redis_keys=" $1}'
} >"$RUN/p1.memory"
log "phase 1: done"
fi

# ------------------------------------------------------------------------------------------
# Phase 2: latency
# ------------------------------------------------------------------------------------------
if [ "$LATENCY" = yes ] && [ -n "$ENGINE_PID" ]; then
    LAT_EVENTS=$((LAT_RATE * LAT_SECONDS))
    log "phase 2: $LAT_EVENTS events at $LAT_RATE/s (fresh ids)"
    "$PY" "$BENCH/bench_alerts.py" --brokers "$BROKERS" --topic alerts --ready "$RUN/p2.alerts.ready" \
        --out "$RUN/p2.alerts.json" --ids "$RUN/p2.ids" --raw "$RUN/p2.alerts.raw" --fetch-wait-ms 5 >"$RUN/p2.alerts.log" 2>&1 &
    ALERTS_PID=$!
    for _ in $(seq 300); do
        [ -s "$RUN/p2.alerts.ready" ] && break
        kill -0 "$ALERTS_PID" 2>/dev/null || die "bench_alerts.py exited: $(tail -5 "$RUN/p2.alerts.log")"
        sleep 0.1
    done
    [ -s "$RUN/p2.alerts.ready" ] || die "bench_alerts.py not ready"
    metrics_snapshot p2.before
    perf_start p2
    "$APPLIED" --redis-port "$REDIS_PORT" --partitions "$PARTITIONS" --interval-ms 100 \
        --watermarks "$RUN/p2.watermarks" --timeline "$RUN/p2.timeline" --timeout-s 1800 \
        --metrics-port "$ENGINE_HTTP" --expect-events "$LAT_EVENTS" \
        >"$RUN/p2.applied" 2>"$RUN/p2.applied.log" &
    APPLIED_PID=$!
    cpu_snapshot p2.start
    "$PRODUCE" --brokers "$BROKERS" --count "$LAT_EVENTS" --customers "$CUSTOMERS" --seed "$SEED" \
        --start-index "$EVENTS" --rate "$LAT_RATE" --linger-ms 1 --tick-ms "$PRODUCE_TICK_MS" --ids-out "$RUN/p2.ids" \
        --warmup-topic deadletter \
        --watermarks-out "$RUN/p2.watermarks" \
        >"$RUN/p2.produce" 2>"$RUN/p2.produce.log" || die "bench_produce failed: $(cat "$RUN/p2.produce.log")"
    P2_OK=yes
    wait "$APPLIED_PID" || P2_OK=no
    APPLIED_PID=
    cpu_snapshot p2.end
    perf_stop
    sleep 1 # the last alerts' acknowledgements and the probe's last fetches
    metrics_snapshot p2.after
    stop_pid bench_alerts "$ALERTS_PID" TERM 60
    wait "$ALERTS_PID" 2>/dev/null || true
    ALERTS_PID=
    if [ $P2_OK = no ] && ! kill -0 "$ENGINE_PID" 2>/dev/null; then
        engine_gone p2
    elif [ $P2_OK = no ]; then
        die "phase 2: the engine did not apply everything: $(cat "$RUN/p2.applied.log")"
    fi
    [ -s "$RUN/p2.alerts.json" ] || die "bench_alerts.py wrote no result: $(tail -5 "$RUN/p2.alerts.log")"
    log "phase 2: done"
fi

if [ -n "$ENGINE_PID" ]; then
    {
        awk '/^VmHWM/ {print "engine_vmhwm_kb=" $2}' "/proc/$ENGINE_PID/status"
        redis-cli -p "$REDIS_PORT" info memory | tr -d '\r' |
            grep -E '^(used_memory|used_memory_rss|used_memory_peak):' | sed 's/:/=/; s/^/redis_/'
    } >"$RUN/end.memory"
    # Stop the engine now (graceful: it must exit 0) so that its log is complete for the checks.
    stop_pid engine "$ENGINE_PID" TERM 40
    set +e
    wait "$ENGINE_PID"
    echo "engine_exit=$?" >"$RUN/engine.exit"
    set -e
    ENGINE_PID=
fi
redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' >"$RUN/redis.commandstats"
redis-cli -p "$REDIS_PORT" info persistence | tr -d '\r' >"$RUN/redis.persistence"

for phase in p1 p2; do
    [ -s "$RUN/perf.$phase.data" ] || continue
    log "perf ($phase): top functions by self time"
    for who in engine redis broker; do
        pid=$(sed -n "s/^${who}_pid=//p" "$RUN/params.env")
        perf_top "$RUN/perf.$phase.data" "$pid" "$RUN/perf.$phase.$who.txt"
        if [ "$PERF_CALLS" = yes ]; then
            perf report -i "$RUN/perf.$phase.data" --pid "$pid" --children --sort sym -g none \
                --percentage relative --stdio --percent-limit 1 2>/dev/null | grep -v '^#' | grep -v '^$' |
                head -80 >"$RUN/perf.$phase.$who.children.txt" || true
        fi
    done
done

uptime >"$RUN/uptime.after"
"$PY" "$BENCH/bench_report.py" "$RUN"
