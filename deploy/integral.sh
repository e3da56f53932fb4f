#!/usr/bin/env bash
# The local Integral stack: Redis, the embedded Kafka and every Integral service, on this
# machine, for development and demos.
#
#   deploy/integral.sh [run]   install what is missing, build, start everything, print what
#                              runs where, and stay in the foreground: Ctrl-C stops it all
#   deploy/integral.sh start   the same, but return once everything is healthy
#   deploy/integral.sh stop    stop a stack started by either command
#   deploy/integral.sh status  what runs, where, and whether it is healthy
#
# Everything lives under the run directory (default ./run): Redis data (AOF on), logs, pid
# files and the Kafka bootstrap list. Ports can be changed with environment variables:
#   INTEGRAL_RUN_DIR (./run)  INTEGRAL_BUILD_DIR (./build)  INTEGRAL_REDIS_PORT (6390)
# The HTTP port of each service is in its config file, config/<service>.json.
# The embedded Kafka is in memory and for development only: stopping it loses every topic,
# so a start with a fresh broker starts Redis empty too (the earlier data: RUN/redis.previous).
# The gateway's token secret is made once, at random, in RUN/jwt.secret; demo tokens for a
# few agents and a supervisor are printed with the web UI's addresses.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN=${INTEGRAL_RUN_DIR:-$ROOT/run}
BUILD=${INTEGRAL_BUILD_DIR:-$ROOT/build}
REDIS_PORT=${INTEGRAL_REDIS_PORT:-6390}
# Services in start order; the stop order is the reverse. Ones not built yet are skipped.
SERVICES=(engine gateway sim)

log() { printf '[integral] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# http_port SERVICE: the http.port key of config/SERVICE.json.
http_port() {
    sed -n 's/.*"port"[[:space:]]*:[[:space:]]*\([0-9]*\).*/\1/p' "$ROOT/config/$1.json" | head -1
}

healthy() { curl -fsS -m 2 "http://127.0.0.1:$1/readyz" >/dev/null 2>&1; }

wait_healthy() {
    local name=$1 port=$2 pidfile=$3
    for _ in $(seq 300); do
        healthy "$port" && return 0
        pid_alive "$pidfile" || { tail -20 "$RUN/$name.log" >&2; die "$name exited"; }
        sleep 0.1
    done
    tail -20 "$RUN/$name.log" >&2
    die "$name not ready after 30 s (log: $RUN/$name.log)"
}

build() {
    "$ROOT/deploy/deps.sh"
    if [ ! -f "$BUILD/CMakeCache.txt" ]; then
        cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    fi
    cmake --build "$BUILD" -j "$(nproc)" >"$RUN/build.log" 2>&1 ||
        { tail -30 "$RUN/build.log" >&2; die "build failed (log: $RUN/build.log)"; }
}

start_redis() {
    if pid_alive "$RUN/redis.pid"; then
        log "redis-server already running on port $REDIS_PORT"
        return
    fi
    mkdir -p "$RUN/redis"
    cat >"$RUN/redis.conf" <<CONF
port $REDIS_PORT
bind 127.0.0.1
daemonize yes
pidfile $RUN/redis.pid
dir $RUN/redis
logfile $RUN/redis.log
include $ROOT/config/redis.conf
CONF
    redis-server "$RUN/redis.conf" || die "redis-server did not start (log: $RUN/redis.log)"
    for _ in $(seq 100); do
        redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && return 0
        sleep 0.1
    done
    die "redis-server not answering on port $REDIS_PORT (log: $RUN/redis.log)"
}

# start_binary NAME ENV...: starts integral-NAME with config/NAME.json in its own session
# (so that Ctrl-C reaches this script only, which then stops everything in order).
start_binary() {
    local name=$1
    shift
    if pid_alive "$RUN/$name.pid"; then
        log "$name already running"
        return
    fi
    # From the project root: the configs name their files (rules, model) relative to it.
    (cd "$ROOT" && exec env "$@" setsid "$BUILD/bin/integral-$name" --config "config/$name.json" \
        </dev/null >"$RUN/$name.out" 2>"$RUN/$name.log") &
    echo $! >"$RUN/$name.pid"
}

# The gateway's HS256 secret: random, made once per run directory, never in a file of the
# repository.
jwt_secret() {
    if [ ! -s "$RUN/jwt.secret" ]; then
        (umask 077 && head -c 48 /dev/urandom | base64 -w0 >"$RUN/jwt.secret")
    fi
    cat "$RUN/jwt.secret"
}

# Demo tokens (12 hours) and the pages to open with them.
print_demo() {
    [ -x "$BUILD/bin/integral-gateway" ] && pid_alive "$RUN/gateway.pid" || return 0
    local port secret agent token
    port=$(http_port gateway)
    secret=$(jwt_secret)
    printf 'Agent desktops (demo tokens, valid 12 h):\n'
    for agent in ${INTEGRAL_DEMO_AGENTS:-A001 A002 A003}; do
        token=$(INTEGRAL_GATEWAY_JWT_SECRET=$secret "$BUILD/bin/integral-gateway" token \
            --sub "$agent" --role agent --ttl 12h)
        printf '  %-5s http://127.0.0.1:%s/?token=%s\n' "$agent" "$port" "$token"
    done
    token=$(INTEGRAL_GATEWAY_JWT_SECRET=$secret "$BUILD/bin/integral-gateway" token \
        --sub S001 --role supervisor --ttl 12h)
    printf 'Supervisor wallboard:\n  S001  http://127.0.0.1:%s/supervisor?token=%s\n\n' \
        "$port" "$token"
}

# The embedded Kafka starts empty. Redis data of an earlier run holds applied offsets of a log
# that is gone, and the engine would skip every new event below them (measured: a restarted
# stack counted 44,827 skipped events and applied none): a fresh broker gets a fresh Redis.
# The earlier data is kept in RUN/redis.previous.
reset_redis_for_fresh_broker() {
    pid_alive "$RUN/devbroker.pid" && return 0
    if pid_alive "$RUN/redis.pid"; then
        redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
        stop_pid redis-server "$RUN/redis.pid"
    fi
    if [ -d "$RUN/redis" ] && [ -n "$(ls -A "$RUN/redis")" ]; then
        rm -rf "$RUN/redis.previous"
        mv "$RUN/redis" "$RUN/redis.previous"
        log "the embedded Kafka starts empty, so Redis does too (the earlier data: $RUN/redis.previous)"
    fi
}

start_all() {
    mkdir -p "$RUN"
    build
    reset_redis_for_fresh_broker
    start_redis
    rm -f "$RUN/kafka.bootstrap"
    start_binary devbroker INTEGRAL_BROKER_BOOTSTRAP_FILE="$RUN/kafka.bootstrap"
    wait_healthy devbroker "$(http_port devbroker)" "$RUN/devbroker.pid"
    local brokers
    brokers=$(cat "$RUN/kafka.bootstrap")
    for svc in "${SERVICES[@]}"; do
        [ -x "$BUILD/bin/integral-$svc" ] || continue
        local extra=()
        [ "$svc" != gateway ] || extra=(INTEGRAL_GATEWAY_JWT_SECRET="$(jwt_secret)")
        # The engine's heap on transparent huge pages (services/engine/README.md, "Memory").
        [ "$svc" != engine ] || extra=(GLIBC_TUNABLES="${GLIBC_TUNABLES:-glibc.malloc.hugetlb=1}")
        start_binary "$svc" INTEGRAL_KAFKA_BROKERS="$brokers" INTEGRAL_REDIS_HOST=127.0.0.1 \
            INTEGRAL_REDIS_PORT="$REDIS_PORT" "${extra[@]}"
        wait_healthy "$svc" "$(http_port "$svc")" "$RUN/$svc.pid"
    done
    status
}

stop_pid() {
    local name=$1 file=$2
    pid_alive "$file" || { rm -f "$file"; return 0; }
    local pid
    pid=$(cat "$file")
    kill -TERM "$pid"
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name did not stop within 15 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    else
        log "stopped $name"
    fi
    rm -f "$file"
}

stop_all() {
    local i
    for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
        stop_pid "${SERVICES[i]}" "$RUN/${SERVICES[i]}.pid"
    done
    stop_pid devbroker "$RUN/devbroker.pid"
    rm -f "$RUN/kafka.bootstrap"
    if pid_alive "$RUN/redis.pid"; then
        redis-cli -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || true
        stop_pid redis-server "$RUN/redis.pid"
        log "stopped redis-server"
    fi
}

status() {
    local any=0
    printf '\n%-12s %-8s %-32s %s\n' what pid address health
    if pid_alive "$RUN/redis.pid"; then
        printf '%-12s %-8s %-32s %s\n' redis "$(cat "$RUN/redis.pid")" "127.0.0.1:$REDIS_PORT" \
            "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null || echo down)"
        any=1
    fi
    for name in devbroker "${SERVICES[@]}"; do
        pid_alive "$RUN/$name.pid" || continue
        local port state=ready
        port=$(http_port "$name")
        healthy "$port" || state="not ready"
        printf '%-12s %-8s %-32s %s\n' "$name" "$(cat "$RUN/$name.pid")" \
            "http://127.0.0.1:$port" "$state"
        any=1
    done
    if [ -f "$RUN/kafka.bootstrap" ]; then
        printf '\nKafka bootstrap servers: %s\n' "$(cat "$RUN/kafka.bootstrap")"
        printf '  try: kcat -L -b %s\n' "$(cat "$RUN/kafka.bootstrap")"
    fi
    printf 'Logs: %s/*.log\n\n' "$RUN"
    print_demo
    [ $any -eq 1 ] || log "nothing is running"
}

case "${1:-run}" in
run)
    trap 'log "stopping"; stop_all; exit 0' INT TERM
    start_all
    log "running; Ctrl-C stops everything"
    while true; do
        sleep 1 &
        wait $! || true
        for name in devbroker "${SERVICES[@]}"; do
            if [ -f "$RUN/$name.pid" ] && ! pid_alive "$RUN/$name.pid"; then
                log "$name exited unexpectedly; last lines of $RUN/$name.log:"
                tail -5 "$RUN/$name.log" >&2
                rm -f "$RUN/$name.pid"
            fi
        done
    done
    ;;
start) start_all ;;
stop) stop_all ;;
status) status ;;
*)
    echo "usage: deploy/integral.sh [run|start|stop|status]" >&2
    exit 2
    ;;
esac
