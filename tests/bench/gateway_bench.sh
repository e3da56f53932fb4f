#!/usr/bin/env bash
# The gateway benchmark (tests/bench/README.md, "Gateway benchmark"): event produced -> alert
# received on the agent's WebSocket, through the whole stack, with N agents connected.
#
#   tests/bench/gateway_bench.sh [BUILD_DIR] [--agents 2000] [--rates 1000,5000,10000,20000]
#                                [--seconds 30] [--search-steps 3] [--search-seconds 20]
#                                [--target-p99-ms 50] [--contact-share 0.6] [--slots 512]
#                                [--fetch-wait-ms 1] [--no-aof] [--perf] [--smoke]
#                                [--drain-s 180] [--run-dir DIR] [--no-build] [--no-lock]
#                                [--keep-data] [--ws-agents BIN]
#                                [--source gw|sim] [--sim-customers 100000]
#                                [--sim-contacts-per-hour 4000]
#
# 1. Builds integral-engine, -gateway, -devbroker, ws_agents and gw_produce in BUILD_DIR
#    (default build-gwbench; configured Release without sanitizers if new; an existing one
#    must be Release or RelWithDebInfo without sanitizers), under flock /tmp/integral-build.lock.
# 2. Takes /tmp/integral-build.lock for the whole run (--no-lock: the caller holds it), so that
#    no build or other benchmark overlaps it. Raises `ulimit -n` to the hard limit.
# 3. Every phase runs on a fresh stack (the dev broker slows down as its partitions fill, so
#    phases sharing one would depend on their order), on free loopback ports, files under one
#    run directory (default BUILD_DIR/gw-bench-runs/<date>): redis-server (appendonly yes,
#    everysec, as deploy/integral.sh; --no-aof: none), integral-devbroker (interactions:64,
#    alerts:32, assignments:32, feedback:3, deadletter:3), the engine (config/engine.json) and
#    the gateway (config/gateway.json, a random secret), both with kafka.fetch_wait_max_ms =
#    --fetch-wait-ms; then ws_agents connects --agents agents (each its own JWT), with the
#    gateway's RSS read before and after (memory per 1,000 connections); 5 s of idle CPU with
#    the agents connected; a 3 s warm-up at
#    500 events/s (phase 50+N, not reported); the phase: gw_produce holds the rate for
#    --seconds, then the run waits until every expected alert has arrived (at most --drain-s;
#    30 s without progress also ends the wait). CPU of every process and both services'
#    /metrics are snapshotted around the phase, peak RSS at its end; then everything stops
#    (SIGTERM; the gateway and the engine must exit 0).
# 4. One phase per rate of --rates, then the search: between the highest rate whose p99 stayed
#    under --target-p99-ms (everything delivered, producer on schedule) and the lowest failing
#    one above it, --search-steps more phases of --search-seconds bisect (multiples of 250).
# 5. gw_report.py joins the expected alerts with the received ones, writes summary.json and
#    summary.md to the run directory and prints the Markdown.
# Exit 0 when every check passed (every expected alert received exactly once by its own agent,
# nothing unexpected, no connection lost, clean exits), 1 otherwise, 2 on bad usage. A missed
# latency target is reported, not failed. A full run takes about 7 minutes.
#
# --source sim: the events come from the real simulator instead of gw_produce. Each phase (and
# each warm-up: 10 s at up to 1,000/s, seed 50+PHASE) runs
# `integral-sim --rate R --count R*seconds --seed PHASE` with sim.agents =
# --agents (its agents A001, A002, ... are exactly the connected ones: ws_agents --sim-ids),
# sim.customers --sim-customers, sim.history_days 0 (live traffic only), sim.contacts_per_hour
# --sim-contacts-per-hour, topic interactions. The run waits until the engine has consumed the
# phase's events, reads the alerts and assignments topics back with kcat, and expects every
# alert of the phase (event id sim-PHASE-*) with an agent_id exactly once on that agent's
# socket; alerts without agent_id (held for the customer's next contact) may arrive with a
# screen pop, at most once per agent and only at an agent the customer was assigned to.
# --smoke: 50 agents, rates 200,1000, 5 s each, one search step of 5 s (about 75 s).
# --ws-agents BIN: another build of the client (e.g. one with ASan).
# --perf: perf record (self time, 499 Hz) of the engine, gateway, redis-server and broker
# during each measured phase; top symbols in perf.p<N>.<process>.txt.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=$ROOT/tests/bench
BUILD=$ROOT/build-gwbench
AGENTS=2000
RATES=1000,5000,10000,20000
SECONDS_PER=30
SEARCH_STEPS=3
SEARCH_SECONDS=20
TARGET_P99_MS=50
CONTACT_SHARE=0.6
SLOTS=512
FETCH_WAIT_MS=1
AOF=yes
PERF=no
DRAIN_S=180
STALL_S=30
RUN=
BUILD_IT=yes
LOCK=yes
KEEP_DATA=no
WARMUP_S=3
SMOKE=no
PY=/usr/bin/python3
WS_AGENTS_BIN=
SOURCE=gw
SIM_CUSTOMERS=100000
SIM_CONTACTS_PER_HOUR=4000
CMDLINE=$(echo "tests/bench/gateway_bench.sh $*" | sed "s/ *$//")
LOG_TAG=gw-bench
# shellcheck source=tests/bench/bench_lib.sh
. "$BENCH/bench_lib.sh"

while [ $# -gt 0 ]; do
    case $1 in
    --agents) AGENTS=$2; shift ;;
    --rates) RATES=$2; shift ;;
    --seconds) SECONDS_PER=$2; shift ;;
    --search-steps) SEARCH_STEPS=$2; shift ;;
    --search-seconds) SEARCH_SECONDS=$2; shift ;;
    --target-p99-ms) TARGET_P99_MS=$2; shift ;;
    --contact-share) CONTACT_SHARE=$2; shift ;;
    --slots) SLOTS=$2; shift ;;
    --fetch-wait-ms) FETCH_WAIT_MS=$2; shift ;;
    --no-aof) AOF=no ;;
    --perf) PERF=yes ;;
    --smoke) SMOKE=yes; AGENTS=50; RATES=200,1000; SECONDS_PER=5; SEARCH_STEPS=1; SEARCH_SECONDS=5
             WARMUP_S=2 ;;
    --drain-s) DRAIN_S=$2; shift ;;
    --ws-agents) WS_AGENTS_BIN=$2; shift ;;
    --source) SOURCE=$2; shift ;;
    --sim-customers) SIM_CUSTOMERS=$2; shift ;;
    --sim-contacts-per-hour) SIM_CONTACTS_PER_HOUR=$2; shift ;;
    --run-dir) RUN=$2; shift ;;
    --no-build) BUILD_IT=no ;;
    --no-lock) LOCK=no ;;
    --keep-data) KEEP_DATA=yes ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "gateway_bench.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) BUILD=$(cd "$(dirname "$1")" && pwd)/$(basename "$1") ;;
    esac
    shift
done
for n in "$AGENTS" "$SECONDS_PER" "$SEARCH_STEPS" "$SEARCH_SECONDS" "$TARGET_P99_MS" "$SLOTS" \
    "$FETCH_WAIT_MS" "$DRAIN_S" "$SIM_CUSTOMERS" "$SIM_CONTACTS_PER_HOUR"; do
    [[ $n =~ ^[0-9]+$ ]] || { echo "gateway_bench.sh: not a number: $n" >&2; exit 2; }
done
[[ $RATES =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "gateway_bench.sh: --rates: N,N,..." >&2; exit 2; }
[[ $CONTACT_SHARE =~ ^(0(\.[0-9]+)?|1(\.0*)?)$ ]] ||
    { echo "gateway_bench.sh: --contact-share: 0..1" >&2; exit 2; }
if [ "$AGENTS" -lt 1 ] || [ "$AGENTS" -gt 10000 ]; then
    echo "gateway_bench.sh: --agents 1..10000" >&2
    exit 2
fi
case $SOURCE in
gw | sim) ;;
*) echo "gateway_bench.sh: --source gw|sim" >&2; exit 2 ;;
esac
if [ "$SOURCE" = sim ] && [ "$AGENTS" -gt 9999 ]; then
    echo "gateway_bench.sh: --source sim: --agents 1..9999 (integral-sim's sim.agents)" >&2
    exit 2
fi
IFS=, read -r -a RATE_LIST <<<"$RATES"

RUN=${RUN:-$BUILD/gw-bench-runs/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$RUN"
RUN=$(cd "$RUN" && pwd)

# ------------------------------------------------------------------------------------------
# Processes: every one we start is recorded, and stopped by its pid in cleanup.
# ------------------------------------------------------------------------------------------
ENGINE_PID='' GATEWAY_PID='' BROKER_PID='' REDIS_PID='' AGENTS_PID='' PRODUCE_PID='' PERF_PID=''
REDIS_PORT=''

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid perf "$PERF_PID" INT 30
    stop_pid gw_produce "$PRODUCE_PID" TERM 10
    stop_pid ws_agents "$AGENTS_PID" TERM 10
    stop_pid gateway "$GATEWAY_PID" TERM 40
    stop_pid engine "$ENGINE_PID" TERM 40
    stop_pid devbroker "$BROKER_PID" TERM 15
    stop_redis
    [ "$KEEP_DATA" = yes ] || rm -rf "$RUN/redis"
    [ $rc -eq 0 ] || log "failed (exit $rc); logs in $RUN"
    exit $rc
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# pid_of NAME: the pid of one of the stack's processes (empty when it is not running).
pid_of() {
    case $1 in
    engine) echo "$ENGINE_PID" ;; gateway) echo "$GATEWAY_PID" ;; redis) echo "$REDIS_PID" ;;
    broker) echo "$BROKER_PID" ;; agents) echo "$AGENTS_PID" ;;
    esac
}

# cpu_snapshot LABEL: utime/stime ticks (all threads) of every process, and the time.
cpu_snapshot() {
    local name pid
    {
        cpu_clock_lines
        for name in engine gateway redis broker agents; do
            pid=$(pid_of "$name")
            [ -z "$pid" ] || proc_cpu "$name" "$pid" utime stime
        done
    } >"$RUN/cpu.$1"
}

# memory_snapshot LABEL: VmRSS and VmHWM (kB) of every process.
memory_snapshot() {
    local name pid
    for name in engine gateway redis broker agents; do
        pid=$(pid_of "$name")
        [ -n "$pid" ] || continue
        awk -v n="$name" '/^VmRSS/ {print n "_rss_kb=" $2} /^VmHWM/ {print n "_hwm_kb=" $2}' \
            "/proc/$pid/status" 2>/dev/null || true
    done >"$RUN/memory.$1"
}

metrics_snapshot() {
    curl -fsS -m 10 "http://127.0.0.1:$ENGINE_HTTP/metrics" >"$RUN/metrics.engine.$1" 2>/dev/null || true
    curl -fsS -m 10 "http://127.0.0.1:$GATEWAY_PORT/metrics" >"$RUN/metrics.gateway.$1" 2>/dev/null || true
}

perf_start() {
    [ "$PERF" = yes ] || return 0
    perf record -e cpu-clock -F 499 -p "$ENGINE_PID,$GATEWAY_PID,$REDIS_PID,$BROKER_PID" \
        -o "$RUN/perf.$1.data" >"$RUN/perf.$1.log" 2>&1 9>&- &
    PERF_PID=$!
    sleep 0.5
}

STATUS=
status_value() { sed -n "s/^$1=//p" "$STATUS" 2>/dev/null | head -1 || true; }

# ------------------------------------------------------------------------------------------
# Build, lock, limits
# ------------------------------------------------------------------------------------------
if [ "$BUILD_IT" = yes ]; then
    log "building in $BUILD"
    flock /tmp/integral-build.lock sh -c "
        if [ ! -f '$BUILD/CMakeCache.txt' ]; then
            cmake -S '$ROOT' -B '$BUILD' -DCMAKE_BUILD_TYPE=Release -DINTEGRAL_SANITIZE=OFF \
                >'$RUN/build.log' 2>&1 || exit 1
        fi
        cmake --build '$BUILD' -j 2 --target integral-engine integral-gateway integral-devbroker \
            integral-sim ws_agents gw_produce >>'$RUN/build.log' 2>&1" || { tail -30 "$RUN/build.log" >&2; die "build failed"; }
fi
check_release_build "$BUILD" 'Release|RelWithDebInfo'
BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BUILD/CMakeCache.txt")
ENGINE_BIN=$BUILD/bin/integral-engine
GATEWAY_BIN=$BUILD/bin/integral-gateway
BROKER_BIN=$BUILD/bin/integral-devbroker
WS_AGENTS=${WS_AGENTS_BIN:-$BUILD/tests/ws_agents}
PRODUCE=$BUILD/tests/gw_produce
SIM_BIN=$BUILD/bin/integral-sim
NEED_BINS=("$ENGINE_BIN" "$GATEWAY_BIN" "$BROKER_BIN" "$WS_AGENTS" "$PRODUCE")
if [ "$SOURCE" = sim ]; then
    NEED_BINS+=("$SIM_BIN")
    command -v kcat >/dev/null || die "--source sim needs kcat (the alerts are read back with it)"
fi
for b in "${NEED_BINS[@]}"; do
    [ -x "$b" ] || die "missing $b (build it, or drop --no-build)"
done

if [ "$LOCK" = yes ]; then
    exec 9>>/tmp/integral-build.lock
    log "waiting for /tmp/integral-build.lock"
    flock -w 3600 9 || die "could not take /tmp/integral-build.lock within an hour"
fi

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((AGENTS + 256)) ] ||
    die "ulimit -n is $(ulimit -n) (hard $(ulimit -Hn)): $AGENTS agents need at least $((AGENTS + 256))"

uptime >"$RUN/uptime.before"
log "run directory $RUN; load before: $(sed 's/.*load average: //' "$RUN/uptime.before")"

# Customers the engine will cache in one stack (a stack lives for one phase): the story
# customers of the largest phase, the background pool, the agents.
MAX_RATE=0
for r in "${RATE_LIST[@]}"; do if [ "$r" -gt "$MAX_RATE" ]; then MAX_RATE=$r; fi; done
BACKGROUND=20000
CACHE_MAX=$((MAX_RATE * SECONDS_PER * 2 / 10 + SLOTS + BACKGROUND + AGENTS + 10000))
[ "$SOURCE" != sim ] || CACHE_MAX=$((SIM_CUSTOMERS + 10 + 2 * AGENTS + 10000))
[ $CACHE_MAX -ge 200000 ] || CACHE_MAX=200000

JWT_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=' | head -c 64)
[ ${#JWT_SECRET} -ge 32 ] || die "could not make a secret"

cat >"$RUN/params.env" <<EOF
command=$CMDLINE
date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
agents=$AGENTS
rates=$RATES
seconds=$SECONDS_PER
search_steps=$SEARCH_STEPS
search_seconds=$SEARCH_SECONDS
target_p99_ms=$TARGET_P99_MS
contact_share=$CONTACT_SHARE
slots=$SLOTS
background_customers=$BACKGROUND
fetch_wait_ms=$FETCH_WAIT_MS
aof=$AOF
smoke=$SMOKE
source=$SOURCE
sim_customers=$SIM_CUSTOMERS
sim_contacts_per_hour=$SIM_CONTACTS_PER_HOUR
build_dir=$BUILD
build_type=$BUILD_TYPE
cache_max_documents=$CACHE_MAX
git_rev=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
git_dirty_files=$(git -C "$ROOT" status --porcelain -- services common 2>/dev/null | awk '{print $2}' | tr '\n' ' ')
nproc=$(nproc)
cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
mem_total_kb=$(awk '/^MemTotal/ {print $2}' /proc/meminfo)
load_before=$(sed 's/.*load average: //' "$RUN/uptime.before")
ulimit_n=$(ulimit -n)
redis_version=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')
EOF

# ------------------------------------------------------------------------------------------
# One stack: redis-server, the broker, the engine, the gateway, and the agents
# ------------------------------------------------------------------------------------------

# start_stack TAG: everything fresh (an empty Redis, an empty broker), files TAG.*.
start_stack() {
    local tag=$1
    rm -rf "$RUN/redis"
    start_redis "$RUN/$tag."
    start_devbroker "$RUN/$tag." "interactions:64,alerts:32,assignments:32,feedback:3,deadletter:3"
    start_engine "$RUN/$tag."

    GATEWAY_PORT=$(free_port)
    (cd "$ROOT" && exec env \
        INTEGRAL_KAFKA_BROKERS="$BROKERS" \
        INTEGRAL_REDIS_HOST=127.0.0.1 INTEGRAL_REDIS_PORT="$REDIS_PORT" \
        INTEGRAL_HTTP_PORT="$GATEWAY_PORT" \
        INTEGRAL_GATEWAY_JWT_SECRET="$JWT_SECRET" \
        INTEGRAL_GATEWAY_INSTANCE=gwbench \
        INTEGRAL_GATEWAY_ALLOWED_ORIGINS="http://127.0.0.1:$GATEWAY_PORT" \
        INTEGRAL_GATEWAY_WEB_DIR="$ROOT/web" \
        INTEGRAL_KAFKA_FETCH_WAIT_MAX_MS="$FETCH_WAIT_MS" \
        setsid "$GATEWAY_BIN" --config config/gateway.json \
        </dev/null >"$RUN/$tag.gateway.out" 2>"$RUN/$tag.gateway.log" 9>&-) &
    GATEWAY_PID=$!

    wait_ready engine "$ENGINE_PID" "$ENGINE_HTTP" "$RUN/$tag.engine.log"
    wait_ready gateway "$GATEWAY_PID" "$GATEWAY_PORT" "$RUN/$tag.gateway.log"
    cat >"$RUN/$tag.stack.env" <<EOF
engine_pid=$ENGINE_PID
gateway_pid=$GATEWAY_PID
redis_pid=$REDIS_PID
broker_pid=$BROKER_PID
gateway_port=$GATEWAY_PORT
engine_http=$ENGINE_HTTP
redis_port=$REDIS_PORT
brokers=$BROKERS
EOF
    log "$tag: stack up: redis $REDIS_PID, broker $BROKER_PID, engine $ENGINE_PID, gateway $GATEWAY_PID (ws://127.0.0.1:$GATEWAY_PORT/ws)"
}

# connect_agents TAG: ws_agents with --agents agents; the gateway's RSS before and after.
connect_agents() {
    local tag=$1 authed='' failed t0
    sleep 2
    memory_snapshot "$tag.before_connect"
    STATUS=$RUN/$tag.agents.status
    local ids=()
    [ "$SOURCE" != sim ] || ids=(--sim-ids)
    INTEGRAL_GATEWAY_JWT_SECRET="$JWT_SECRET" setsid "$WS_AGENTS" --port "$GATEWAY_PORT" \
        --agents "$AGENTS" "${ids[@]}" --status "$STATUS" --out "$RUN/$tag.agents.json" \
        --raw "$RUN/$tag.agents.raw" </dev/null >"$RUN/$tag.agents.out" 2>"$RUN/$tag.agents.log" 9>&- &
    AGENTS_PID=$!
    echo "agents_pid=$AGENTS_PID" >>"$RUN/$tag.stack.env"
    t0=$(date +%s%N)
    for _ in $(seq 1200); do
        authed=$(status_value authenticated)
        [ "${authed:-0}" -ge "$AGENTS" ] && break
        # One read: the status file can appear between two (a run died with "0 failed").
        failed=$(status_value failed)
        [ "${failed:-0}" = 0 ] ||
            die "ws_agents: $failed connections failed: $(tail -3 "$RUN/$tag.agents.log")"
        kill -0 "$AGENTS_PID" 2>/dev/null || die "ws_agents exited: $(tail -3 "$RUN/$tag.agents.log")"
        sleep 0.1
    done
    [ "${authed:-0}" -ge "$AGENTS" ] || die "only ${authed:-0} of $AGENTS agents authenticated in 120 s"
    log "$tag: $AGENTS agents authenticated in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
    sleep 3 # the gateway settles (handshake buffers freed; the first pings are 20 s away)
    memory_snapshot "$tag.after_connect"
    curl -fsS -m 10 "http://127.0.0.1:$GATEWAY_PORT/metrics" >"$RUN/$tag.metrics.gateway.connected" || true
    # What the stack costs with the agents connected and nothing to do (idle fetch loops,
    # the gateway's sweep and live-queue timers).
    cpu_snapshot "$tag.idle.start"
    sleep 5
    cpu_snapshot "$tag.idle.end"
}

# stop_stack TAG: peak memory, Redis's view, then everything stops (the services must exit 0).
stop_stack() {
    local tag=$1
    memory_snapshot "$tag.end"
    redis-cli -p "$REDIS_PORT" info memory | tr -d '\r' |
        grep -E '^(used_memory|used_memory_rss|used_memory_peak):' | sed 's/:/=/' >"$RUN/$tag.redis.memory" || true
    redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' >"$RUN/$tag.redis.commandstats" || true
    stop_pid ws_agents "$AGENTS_PID" TERM 15
    set +e
    wait "$AGENTS_PID"; echo "agents_exit=$?" >"$RUN/$tag.exits.env"
    stop_pid gateway "$GATEWAY_PID" TERM 40
    wait "$GATEWAY_PID"; echo "gateway_exit=$?" >>"$RUN/$tag.exits.env"
    stop_pid engine "$ENGINE_PID" TERM 40
    wait "$ENGINE_PID"; echo "engine_exit=$?" >>"$RUN/$tag.exits.env"
    set -e
    AGENTS_PID='' GATEWAY_PID='' ENGINE_PID=''
    stop_pid devbroker "$BROKER_PID" TERM 15
    BROKER_PID=''
    stop_redis
    REDIS_PID=''
    [ "$KEEP_DATA" = yes ] || rm -rf "$RUN/redis"
}

# ------------------------------------------------------------------------------------------
# Phases, each on a fresh stack: the dev broker slows down as its partitions fill up, so that
# phases sharing a stack would depend on their order.
# ------------------------------------------------------------------------------------------
PHASES_FILE=$RUN/phases.txt
: >"$PHASES_FILE"
FAILED_PHASE=

# produce_and_wait TAG PHASE RATE SECONDS KIND: produce, then wait for every expected alert.
# wait_for_alerts TAG PHASE EXPECTED: until the agents have every expected alert of the
# phase (held ones, counted apart by ws_agents, do not count), or progress stalls for STALL_S,
# or DRAIN_S pass (FAILED_PHASE is then set). Sets WAITED to the seconds it took.
wait_for_alerts() {
    local tag=$1 phase=$2 expected=$3 a h got prev=-1 now t0 last_progress
    t0=$(date +%s)
    last_progress=$t0
    while :; do
        a=$(status_value "phase_${phase}_alerts")
        h=$(status_value "phase_${phase}_held")
        got=$(( ${a:-0} - ${h:-0} ))
        [ "$got" -ge "$expected" ] && break
        now=$(date +%s)
        [ "$got" != "$prev" ] && { prev=$got; last_progress=$now; }
        if [ $((now - last_progress)) -ge $STALL_S ] || [ $((now - t0)) -ge "$DRAIN_S" ]; then
            log "$tag: phase $phase: only $got of $expected alerts after $((now - t0)) s"
            FAILED_PHASE=$phase
            break
        fi
        kill -0 "$AGENTS_PID" 2>/dev/null || die "ws_agents exited: $(tail -3 "$RUN/$tag.agents.log")"
        kill -0 "$GATEWAY_PID" 2>/dev/null || die "the gateway died: $(tail -3 "$RUN/$tag.gateway.log")"
        kill -0 "$ENGINE_PID" 2>/dev/null || die "the engine died: $(tail -3 "$RUN/$tag.engine.log")"
        sleep 0.1
    done
    WAITED=$(( $(date +%s) - t0 ))
}

# finish_phase PHASE: a second for stragglers (a duplicate or an unexpected alert would show
# now), then the phase's CPU, profile, metrics and memory snapshots.
finish_phase() {
    sleep 1
    cpu_snapshot "p$1.end"
    perf_stop
    metrics_snapshot "p$1.after"
    memory_snapshot "p$1.after"
}

produce_and_wait() {
    local tag=$1 phase=$2 rate=$3 seconds=$4 kind=$5 expected
    log "$tag: phase $phase ($kind): $rate events/s for $seconds s"
    metrics_snapshot "p$phase.before"
    [ "$kind" = warmup ] || perf_start "p$phase"
    cpu_snapshot "p$phase.start"
    "$PRODUCE" --brokers "$BROKERS" --phase "$phase" --rate "$rate" --seconds "$seconds" \
        --agents "$AGENTS" --slots "$SLOTS" --contact-share "$CONTACT_SHARE" \
        --background-customers "$BACKGROUND" --expect-out "$RUN/p$phase.expect" \
        --warmup-topic deadletter >"$RUN/p$phase.produce" 2>"$RUN/p$phase.produce.log" 9>&- &
    PRODUCE_PID=$!
    wait "$PRODUCE_PID" || { PRODUCE_PID=''; die "gw_produce failed: $(cat "$RUN/p$phase.produce.log")"; }
    PRODUCE_PID=''
    expected=$(sed -n 's/^alerts_expected=//p' "$RUN/p$phase.produce")
    wait_for_alerts "$tag" "$phase" "$expected"
    finish_phase "$phase"
    echo "$phase $rate $seconds $kind $tag" >>"$PHASES_FILE"
    log "$tag: phase $phase: $(status_value "phase_${phase}_alerts") of $expected alerts; achieved $(sed -n 's/^rate_achieved=//p' "$RUN/p$phase.produce") events/s; waited ${WAITED} s after the producer's flush"
}

# engine_consumed FILE: events the engine has taken off the interactions topic (parsed, dead-
# lettered or duplicates), from a /metrics snapshot.
engine_consumed() {
    awk '/^integral_engine_(events|deadlettered|duplicates)_total/ { n += $NF } END { printf "%d\n", n }' \
        "$1" 2>/dev/null || echo 0
}

# sim_and_wait TAG PHASE RATE SECONDS KIND: integral-sim produces RATE x SECONDS events (seed =
# PHASE); once the engine has consumed them, the alerts and assignments topics are read back
# and the run waits until every alert of the phase with an agent_id has reached a socket.
sim_and_wait() {
    local tag=$1 phase=$2 rate=$3 seconds=$4 kind=$5 count expected got prev=-1 t0 t1 now
    local last_progress consumed0 consumed=0 sim_rc t_wait a h
    count=$((rate * seconds))
    log "$tag: phase $phase ($kind, integral-sim): $rate events/s for $seconds s ($count events)"
    metrics_snapshot "p$phase.before"
    consumed0=$(engine_consumed "$RUN/metrics.engine.p$phase.before")
    [ "$kind" = warmup ] || perf_start "p$phase"
    cpu_snapshot "p$phase.start"
    t0=$(date +%s%6N)
    set +e
    (cd "$ROOT" && exec env \
        INTEGRAL_KAFKA_BROKERS="$BROKERS" \
        INTEGRAL_HTTP_PORT="$(free_port)" \
        INTEGRAL_SIM_TOPIC=interactions \
        INTEGRAL_SIM_AGENTS="$AGENTS" \
        INTEGRAL_SIM_CUSTOMERS="$SIM_CUSTOMERS" \
        INTEGRAL_SIM_HISTORY_DAYS=0 \
        INTEGRAL_SIM_CONTACTS_PER_HOUR="$SIM_CONTACTS_PER_HOUR" \
        "$SIM_BIN" --rate "$rate" --count "$count" --seed "$phase" \
        </dev/null >"$RUN/p$phase.sim.out" 2>"$RUN/p$phase.sim.log" 9>&-) &
    PRODUCE_PID=$!
    wait "$PRODUCE_PID"
    sim_rc=$?
    set -e
    PRODUCE_PID=''
    t1=$(date +%s%6N)
    [ $sim_rc -eq 0 ] || die "integral-sim failed ($sim_rc): $(tail -3 "$RUN/p$phase.sim.log")"
    # The engine consumes the phase's events.
    t_wait=$(date +%s)
    last_progress=$t_wait
    while :; do
        curl -fsS -m 10 "http://127.0.0.1:$ENGINE_HTTP/metrics" >"$RUN/p$phase.engine.poll" 2>/dev/null || true
        consumed=$(( $(engine_consumed "$RUN/p$phase.engine.poll") - consumed0 ))
        [ "$consumed" -ge "$count" ] && break
        now=$(date +%s)
        [ "$consumed" != "$prev" ] && { prev=$consumed; last_progress=$now; }
        if [ $((now - last_progress)) -ge $STALL_S ] || [ $((now - t_wait)) -ge "$DRAIN_S" ]; then
            log "$tag: phase $phase: the engine consumed only $consumed of $count events"
            FAILED_PHASE=$phase
            break
        fi
        kill -0 "$ENGINE_PID" 2>/dev/null || die "the engine died: $(tail -3 "$RUN/$tag.engine.log")"
        sleep 0.2
    done
    sleep 1 # the engine's last alerts reach the broker
    timeout 300 kcat -C -q -b "$BROKERS" -t alerts -o beginning -e -f '%s\n' \
        >"$RUN/p$phase.alerts.jsonl" 2>"$RUN/p$phase.kcat.log" ||
        die "kcat (alerts) failed: $(tail -3 "$RUN/p$phase.kcat.log")"
    timeout 300 kcat -C -q -b "$BROKERS" -t assignments -o beginning -e -f '%s\n' \
        >"$RUN/p$phase.assignments.jsonl" 2>>"$RUN/p$phase.kcat.log" ||
        die "kcat (assignments) failed: $(tail -3 "$RUN/p$phase.kcat.log")"
    # The expected alerts: the phase's alerts with an agent_id (distinct alert ids).
    "$PY" - "$RUN" "$phase" "$rate" "$count" "$t0" "$t1" "$consumed" <<'PYEOF'
import json, os, sys
run, phase, rate, count, t0, t1, consumed = sys.argv[1:]
prefix = "sim-%s-" % phase
direct, held, on_kafka = {}, set(), 0
for line in open(os.path.join(run, "p%s.alerts.jsonl" % phase)):
    try:
        a = json.loads(line)
    except ValueError:
        continue
    if not str(a.get("event_id", "")).startswith(prefix):
        continue
    on_kafka += 1
    if a.get("agent_id"):
        direct[a["id"]] = a["agent_id"]
    else:
        held.add(a["id"])
with open(os.path.join(run, "p%s.expect" % phase), "w") as f:
    for i, agent in sorted(direct.items()):
        f.write("%s %s\n" % (i, agent))
elapsed = (int(t1) - int(t0)) / 1e6
with open(os.path.join(run, "p%s.produce" % phase), "w") as f:
    f.write("source=sim\nproduced=%s\ndelivered=%s\nfailed=0\nrate_target=%s\n"
            "rate_achieved=%.1f\nelapsed_s=%.3f\nfirst_produce_us=%s\nlast_produce_us=%s\n"
            "engine_consumed=%s\nalerts_on_kafka=%d\nalerts_expected=%d\nalerts_held=%d\n"
            % (count, count, rate, int(count) / elapsed if elapsed > 0 else 0, elapsed, t0, t1,
               consumed, on_kafka, len(direct), len(held)))
PYEOF
    expected=$(sed -n 's/^alerts_expected=//p' "$RUN/p$phase.produce")
    wait_for_alerts "$tag" "$phase" "$expected"
    finish_phase "$phase"
    echo "$phase $rate $seconds $kind $tag" >>"$PHASES_FILE"
    a=$(status_value "phase_${phase}_alerts")
    h=$(status_value "phase_${phase}_held")
    log "$tag: phase $phase: ${a:-0} alerts received (${h:-0} of them held ones) for $expected with an agent_id on Kafka ($(sed -n 's/^alerts_held=//p' "$RUN/p$phase.produce") without); achieved $(sed -n 's/^rate_achieved=//p' "$RUN/p$phase.produce") events/s"
}

# run_phase PHASE RATE SECONDS KIND: a fresh stack, the agents, a warm-up (phase 50+PHASE, not
# reported), the phase, the stack stopped.
run_phase() {
    local phase=$1 rate=$2 seconds=$3 kind=$4 tag=s$1
    start_stack "$tag"
    connect_agents "$tag"
    local run_it=produce_and_wait warm_rate=$(( rate < 500 ? rate : 500 )) warm_s=$WARMUP_S
    if [ "$SOURCE" = sim ]; then
        # The simulator's first alerts come seconds into a run, a few per second: a longer
        # warm-up, so that the alerts and assignments partitions have carried some before the
        # phase (the first alerts through a cold path took 0.3-0.6 s in a first run).
        run_it=sim_and_wait
        warm_rate=$(( rate < 1000 ? rate : 1000 ))
        warm_s=$(( WARMUP_S * 10 / 3 ))
    fi
    $run_it "$tag" $((50 + phase)) "$warm_rate" "$warm_s" warmup
    sleep 1
    [ -n "$FAILED_PHASE" ] || $run_it "$tag" "$phase" "$rate" "$seconds" "$kind"
    kill -USR1 "$AGENTS_PID" 2>/dev/null || true
    sleep 0.5
    stop_stack "$tag"
}

# phase_verdict PHASE: "pass|fail P99_MS" (from ws_agents' summary of the phase's stack).
phase_verdict() {
    "$PY" - "$RUN" "$1" "$TARGET_P99_MS" <<'EOF'
import json, sys, os
run, phase, target = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
try:
    s = json.load(open(os.path.join(run, "s%d.agents.json" % phase)))
    prod = {}
    for line in open(os.path.join(run, "p%d.produce" % phase)):
        k, _, v = line.strip().partition("=")
        prod[k] = v
    ph = [p for p in s["phases"] if p["phase"] == phase][0]
    p99 = ph["latency_ms"]["p99"]
    complete = ph["alerts"] - ph.get("held_alerts", 0) == int(prod["alerts_expected"])
    on_time = float(prod["rate_achieved"]) >= 0.97 * float(prod["rate_target"])
    print("pass" if complete and on_time and p99 < target else "fail", p99)
except Exception:
    print("fail none")
EOF
}

phase=1
best_pass=0
first_fail=0
for rate in "${RATE_LIST[@]}"; do
    [ -z "$FAILED_PHASE" ] || break
    run_phase $phase "$rate" "$SECONDS_PER" ladder
    read -r verdict p99 < <(phase_verdict $phase)
    log "phase $phase: p99 $p99 ms: $verdict (target ${TARGET_P99_MS} ms)"
    if [ "$verdict" = pass ]; then
        [ "$rate" -gt "$best_pass" ] && best_pass=$rate
    elif [ "$first_fail" = 0 ] || [ "$rate" -lt "$first_fail" ]; then
        first_fail=$rate
    fi
    phase=$((phase + 1))
done
# A failing rate below a passing one (noise) does not bound the search.
[ "$first_fail" -gt "$best_pass" ] || first_fail=0

# Bisect between the best passing rate and the first failing one above it (or below the
# lowest rate when none passed).
step=0
while [ -z "$FAILED_PHASE" ] && [ $step -lt "$SEARCH_STEPS" ] && [ "$first_fail" -gt 0 ]; do
    mid=$(( (best_pass + first_fail) / 2 / 250 * 250 ))
    if [ $mid -le "$best_pass" ] || [ $mid -ge "$first_fail" ]; then break; fi
    run_phase $phase $mid "$SEARCH_SECONDS" search
    read -r verdict p99 < <(phase_verdict $phase)
    log "phase $phase: p99 $p99 ms: $verdict"
    if [ "$verdict" = pass ]; then best_pass=$mid; else first_fail=$mid; fi
    phase=$((phase + 1))
    step=$((step + 1))
done
echo "best_pass=$best_pass" >>"$RUN/params.env"
echo "first_fail=$first_fail" >>"$RUN/params.env"
uptime >"$RUN/uptime.after"

if [ "$PERF" = yes ]; then
    for data in "$RUN"/perf.p*.data; do
        [ -s "$data" ] || continue
        p=$(basename "$data" .data)
        tag=s${p#perf.p}
        for who in engine gateway redis broker; do
            pid=$(sed -n "s/^${who}_pid=//p" "$RUN/$tag.stack.env")
            perf_top "$data" "$pid" "$RUN/$p.$who.txt"
        done
    done
fi

[ -z "$FAILED_PHASE" ] || echo "failed_phase=$FAILED_PHASE" >>"$RUN/params.env"
"$PY" "$BENCH/gw_report.py" "$RUN"
