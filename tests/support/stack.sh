#!/usr/bin/env bash
# The integration tests' shared fixture: a real redis-server and the embedded Kafka
# (integral-devbroker) on free loopback ports.
#
#   stack.sh start DIR BIN_DIR   start both, write DIR/stack.env (KEY=VALUE lines)
#   stack.sh stop DIR            stop both (also after failed tests: ctest's FIXTURES_CLEANUP)
#
# Every process is started in its own session with its output in DIR/*.log, so that ctest
# never waits on a pipe held by a daemon. A leftover stack in DIR (an interrupted run) is
# stopped before a new one starts.
set -euo pipefail

cmd=${1:?usage: stack.sh start DIR BIN_DIR | stop DIR}
dir=${2:?missing DIR}

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

stop_pidfile() {
    local file=$1 pid
    [ -f "$file" ] || return 0
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

stop() {
    stop_pidfile "$dir/devbroker.pid"
    stop_pidfile "$dir/redis.pid"
    rm -f "$dir/stack.env"
}

start_redis() {
    local port
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        mkdir -p "$dir/redis"
        cat > "$dir/redis.conf" <<CONF
port $port
bind 127.0.0.1
daemonize yes
pidfile $dir/redis.pid
dir $dir/redis
logfile $dir/redis.log
save ""
appendonly no
CONF
        redis-server "$dir/redis.conf" >/dev/null 2>&1 || true
        for _ in $(seq 50); do
            if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
                echo "$port"
                return 0
            fi
            sleep 0.1
        done
        stop_pidfile "$dir/redis.pid"
    done
    echo "stack.sh: redis-server did not start (see $dir/redis.log)" >&2
    return 1
}

# Integral's topics, the Kafka glue tests' topics, and for each engine test X the topics
# it-eng-X (input), it-eng-X-alerts, it-eng-X-dlq and it-eng-X-assign, so that engine tests never see each
# other's messages. Partition counts matter: the group tests split 8 partitions.
topics() {
    local list="interactions:12,alerts:12,assignments:12,feedback:3,deadletter:3"
    list+=",it-gw-feedback:2,it-sim-a:1,it-sim-b:1,it-single:1,it-retention:1,it-kafka-count:6,it-kafka-rewind:2,it-kafka-kill:6"
    local t
    for t in rules:4 dlq:4 replay:4 kill:8 split:8 rebalance:8 fence:2 reload:2 redis:4 \
             livequeue:2 writes:2 gw:4 gwmany:8 browser:4 sim:4 behind:1; do
        list+=",it-eng-${t%%:*}:${t##*:},it-eng-${t%%:*}-alerts:4,it-eng-${t%%:*}-dlq:2"
        list+=",it-eng-${t%%:*}-assign:2"
    done
    echo "$list"
}

start_devbroker() {
    local bin=$1 http_port=$2
    rm -f "$dir/bootstrap"
    INTEGRAL_BROKER_BOOTSTRAP_FILE="$dir/bootstrap" \
    INTEGRAL_BROKER_TOPICS="$(topics)" \
    INTEGRAL_HTTP_PORT="$http_port" \
        setsid "$bin/integral-devbroker" </dev/null >"$dir/devbroker.out" 2>"$dir/devbroker.log" &
    echo $! > "$dir/devbroker.pid"
    for _ in $(seq 100); do
        [ -s "$dir/bootstrap" ] && return 0
        kill -0 "$(cat "$dir/devbroker.pid")" 2>/dev/null || break
        sleep 0.1
    done
    echo "stack.sh: integral-devbroker did not start:" >&2
    cat "$dir/devbroker.log" >&2
    return 1
}

case "$cmd" in
start)
    bin=${3:?missing BIN_DIR}
    mkdir -p "$dir"
    stop
    redis_port=$(start_redis)
    broker_http=$(free_port)
    start_devbroker "$bin" "$broker_http"
    cat > "$dir/stack.env.tmp" <<ENV
IT_DIR=$dir
BIN_DIR=$bin
REDIS_HOST=127.0.0.1
REDIS_PORT=$redis_port
REDIS_CONF=$dir/redis.conf
KAFKA_BROKERS=$(cat "$dir/bootstrap")
DEVBROKER_HTTP_PORT=$broker_http
ENV
    mv "$dir/stack.env.tmp" "$dir/stack.env"
    cat "$dir/stack.env"
    ;;
stop)
    stop
    ;;
*)
    echo "usage: stack.sh start DIR BIN_DIR | stop DIR" >&2
    exit 2
    ;;
esac
