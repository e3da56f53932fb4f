# bench_lib.sh - shell pieces the benchmark scripts (engine_bench.sh, gateway_bench.sh;
# tests/bench/README.md) share: logging, stopping what they started by its pid, free ports,
# checking the build directory, starting redis-server, integral-devbroker and integral-engine
# on free loopback ports and waiting until they are ready, and sampling CPU. One copy, so that
# both benchmarks run their stacks alike. Sourced, never run.
#
# The caller sets: LOG_TAG (log prefix), RUN (run directory), ROOT (the checkout), PY (python3);
# for start_redis AOF; for start_devbroker BROKER_BIN; for start_engine ENGINE_BIN, CACHE_MAX,
# FETCH_WAIT_MS and optionally REDIS_TIMEOUT_MS. The functions set the *_PID, *_PORT, BROKERS
# and ENGINE_HTTP globals. Every process is started with fd 9 closed (gateway_bench.sh holds
# the build lock on it).

# usage: the script's header comment (after the #! line, up to `set -e`).
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print } /^set -e/ { exit }' "$0"; }

log() { printf '[%s %s] %s\n' "$LOG_TAG" "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

stop_pid() { # stop_pid NAME PID [SIGNAL] [WAIT_S]
    local name=$1 pid=$2 sig=${3:-TERM} wait_s=${4:-30}
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -"$sig" "$pid" 2>/dev/null || true
    for _ in $(seq $((wait_s * 10))); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    log "$name ($pid) did not stop within ${wait_s} s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

free_port() {
    $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# check_release_build DIR TYPES: DIR's CMakeCache.txt has a build type matching the regular
# expression TYPES and no sanitizers.
check_release_build() {
    grep -qE "CMAKE_BUILD_TYPE:STRING=($2)\$" "$1/CMakeCache.txt" ||
        die "$1 is not a $(echo "$2" | sed 's/|/ or /') build"
    grep -q 'INTEGRAL_SANITIZE:BOOL=ON' "$1/CMakeCache.txt" && die "$1 has sanitizers on"
    return 0
}

# wait_ready NAME PID PORT LOG: until http://127.0.0.1:PORT/readyz answers (at most 60 s).
wait_ready() {
    for _ in $(seq 600); do
        curl -fsS -m 2 "http://127.0.0.1:$3/readyz" >/dev/null 2>&1 && return 0
        kill -0 "$2" 2>/dev/null || die "$1 exited: $(tail -5 "$4")"
        sleep 0.1
    done
    die "$1 not ready after 60 s (log: $4)"
}

# start_redis PREFIX: redis-server on a free port, data in $RUN/redis, files PREFIXredis.*;
# settings as deploy/integral.sh (config/redis.conf; appendonly $AOF), then the lines of
# $BENCH_REDIS_CONF if set (experiments, e.g. 'auto-aof-rewrite-percentage 0'; params.env
# records them). REDIS_WRAPPER, when set, is a command put in front of redis-server (e.g.
# 'taskset -c 1'). Sets REDIS_PORT, REDIS_PID.
start_redis() {
    local prefix=$1
    REDIS_PORT=$(free_port)
    mkdir -p "$RUN/redis"
    cat >"${prefix}redis.conf" <<CONF
port $REDIS_PORT
bind 127.0.0.1
daemonize yes
pidfile ${prefix}redis.pid
dir $RUN/redis
logfile ${prefix}redis.log
include $ROOT/config/redis.conf
appendonly $AOF
${BENCH_REDIS_CONF:-}
CONF
    ${REDIS_WRAPPER:-} redis-server "${prefix}redis.conf" 9>&- || die "redis-server did not start (log: ${prefix}redis.log)"
    for _ in $(seq 100); do
        redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break
        sleep 0.1
    done
    REDIS_PID=$(cat "${prefix}redis.pid")
    redis-cli -p "$REDIS_PORT" ping | grep -q PONG || die "redis-server not answering"
}

# stop_redis: shutdown without saving, then by its pid.
stop_redis() {
    [ -n "$REDIS_PID" ] && kill -0 "$REDIS_PID" 2>/dev/null || return 0
    redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    stop_pid redis-server "$REDIS_PID" TERM 15
}

# start_devbroker PREFIX TOPICS: integral-devbroker with TOPICS (name:partitions,...), files
# PREFIXdevbroker.* and PREFIXbootstrap. Sets BROKER_PID and BROKERS (its bootstrap list).
start_devbroker() {
    local prefix=$1
    rm -f "${prefix}bootstrap"
    INTEGRAL_BROKER_BOOTSTRAP_FILE="${prefix}bootstrap" \
    INTEGRAL_BROKER_TOPICS="$2" \
    INTEGRAL_HTTP_PORT="$(free_port)" \
        setsid "$BROKER_BIN" </dev/null >"${prefix}devbroker.out" 2>"${prefix}devbroker.log" 9>&- &
    BROKER_PID=$!
    for _ in $(seq 100); do
        [ -s "${prefix}bootstrap" ] && break
        kill -0 "$BROKER_PID" 2>/dev/null || die "integral-devbroker exited: $(tail -3 "${prefix}devbroker.log")"
        sleep 0.1
    done
    [ -s "${prefix}bootstrap" ] || die "integral-devbroker wrote no bootstrap list"
    BROKERS=$(cat "${prefix}bootstrap")
}

# start_engine PREFIX: integral-engine (config/engine.json, rules and model from config/)
# against $BROKERS and the Redis on $REDIS_PORT, files PREFIXengine.*, its heap on huge pages
# as deploy/integral.sh starts it (GLIBC_TUNABLES, unless set). Sets ENGINE_HTTP and
# ENGINE_PID; does not wait (wait_ready). ENGINE_WRAPPER, when set, is a command the engine
# runs under (e.g. "valgrind --tool=callgrind --collect-atstart=no": see README.md).
start_engine() {
    local prefix=$1
    ENGINE_HTTP=$(free_port)
    (cd "$ROOT" && exec env \
        INTEGRAL_KAFKA_BROKERS="$BROKERS" \
        INTEGRAL_REDIS_HOST=127.0.0.1 INTEGRAL_REDIS_PORT="$REDIS_PORT" \
        INTEGRAL_HTTP_PORT="$ENGINE_HTTP" \
        INTEGRAL_ENGINE_RULES_FILE="$ROOT/config/rules.json" \
        INTEGRAL_ENGINE_MODEL_FILE="$ROOT/config/model.json" \
        INTEGRAL_ENGINE_CACHE_MAX_DOCUMENTS="$CACHE_MAX" \
        INTEGRAL_KAFKA_FETCH_WAIT_MAX_MS="$FETCH_WAIT_MS" \
        GLIBC_TUNABLES="${GLIBC_TUNABLES:-glibc.malloc.hugetlb=1}" \
        ${REDIS_TIMEOUT_MS:+INTEGRAL_REDIS_COMMAND_TIMEOUT_MS="$REDIS_TIMEOUT_MS"} \
        setsid ${ENGINE_WRAPPER:-} "$ENGINE_BIN" --config config/engine.json \
        </dev/null >"${prefix}engine.out" 2>"${prefix}engine.log" 9>&-) &
    ENGINE_PID=$!
}

# proc_cpu NAME PID FIELDS...: NAME_FIELD=value lines from /proc/PID/stat (FIELDS of utime
# stime cutime cstime in ticks, minflt majflt in page faults), or NAME_gone=1.
proc_cpu() {
    local name=$1 pid=$2
    shift 2
    # Fields after the ")" of comm: 3=state ... 10=minflt 12=majflt 14=utime 15=stime
    # 16=cutime 17=cstime.
    awk -v n="$name" -v want="$*" '
        BEGIN { col["minflt"] = 8; col["majflt"] = 10
                col["utime"] = 12; col["stime"] = 13; col["cutime"] = 14; col["cstime"] = 15
                k = split(want, fields, " ") }
        { sub(/^.*\) /, ""); for (i = 1; i <= k; i++) print n "_" fields[i] "=" $col[fields[i]] }' \
        "/proc/$pid/stat" 2>/dev/null || echo "${name}_gone=1"
}

# cpu_clock_lines: the time (unix us) and the clock tick, heading a CPU snapshot.
cpu_clock_lines() {
    echo "t_us=$(date +%s%6N)"
    echo "clk_tck=$(getconf CLK_TCK)"
}

# perf_stop: ends the perf record started into PERF_PID, if any.
perf_stop() {
    [ -n "$PERF_PID" ] || return 0
    stop_pid perf "$PERF_PID" INT 120
    wait "$PERF_PID" 2>/dev/null || true
    PERF_PID=
}

# perf_top DATA PID OUT: the top symbols by self time of PID in perf DATA, into OUT.
perf_top() {
    perf report -i "$1" --pid "$2" --no-children --sort dso,sym -g none \
        --percentage relative --stdio --percent-limit 0.5 2>/dev/null | grep -v '^#' |
        grep -v '^$' | head -40 >"$3" || true
}
