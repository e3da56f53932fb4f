#!/usr/bin/env bash
# redis_list_bench.sh - Redis CPU per timeline push, by list-max-listpack-size: what the
# engine's timeline writes cost Redis (config/redis.conf, "Timelines").
#
#   tests/bench/redis_list_bench.sh [--keys 20000] [--entries 100] [--pushes 200000]
#                                   [--sizes "-2 8"] [--rounds 2] [--run-dir D]
#
# Per size and round: a fresh redis-server (no persistence, so only the list work counts) on
# a free port is filled with --keys timelines of --entries entries each (a 117-byte
# timeline entry, as the engine writes them), then takes --pushes LPUSH + LTRIM 0 99 pairs
# to keys spread over the keyspace, pipelined with redis-cli --pipe: what the engine sends
# for a customer whose timeline is full. Reports Redis CPU (INFO cpu, user + sys) per pair
# and used memory. Rounds alternate the sizes, so a machine that slows down moves all of
# them alike.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KEYS=20000 ENTRIES=100 PUSHES=200000 SIZES="-2 8" ROUNDS=2 RUN=""
while [ $# -gt 0 ]; do
    case $1 in
    --keys) KEYS=$2; shift ;;
    --entries) ENTRIES=$2; shift ;;
    --pushes) PUSHES=$2; shift ;;
    --sizes) SIZES=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --run-dir) RUN=$2; shift ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "redis_list_bench.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
RUN=${RUN:-$(mktemp -d /tmp/integral-listbench.XXXXXX)}
mkdir -p "$RUN"
PY=/usr/bin/python3

# resp MODE N: N commands in RESP on stdout. fill: RPUSH of $ENTRIES entries per key; push:
# LPUSH + LTRIM pairs to keys k*2654435761 mod $KEYS (no key twice in a row).
resp() {
    "$PY" - "$1" "$2" "$KEYS" "$ENTRIES" <<'EOF'
import sys
mode, n, keys, entries = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
out = sys.stdout.buffer
entry = (b'{"time":"2026-12-01T11:15:18.300Z","type":"contact.queued",'
         b'"text":"phone contact in queue billing (reason: technical)"}')
def cmd(*args):
    b = b'*%d\r\n' % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        b += b'$%d\r\n%s\r\n' % (len(a), a)
    return b
for i in range(n):
    if mode == 'fill':
        out.write(cmd('RPUSH', '{c:cust-%d}:timeline' % i, *([entry] * entries)))
    else:
        key = '{c:cust-%d}:timeline' % ((i * 2654435761) % keys)
        out.write(cmd('LPUSH', key, entry) + cmd('LTRIM', key, 0, 99))
EOF
}

resp fill "$KEYS" >"$RUN/fill.resp"
resp push "$PUSHES" >"$RUN/push.resp"

redis_cpu() {
    redis-cli -p "$1" info cpu | tr -d '\r' |
        awk -F: '/^used_cpu_(user|sys):/ { s += $2 } END { printf "%.6f\n", s }'
}

printf '%-8s %-6s %-24s %s\n' size round "us Redis CPU per push" "used memory"
for round in $(seq "$ROUNDS"); do
    for size in $SIZES; do
        port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        rm -rf "$RUN/data" && mkdir -p "$RUN/data"
        redis-server --port "$port" --bind 127.0.0.1 --dir "$RUN/data" --save '' \
            --appendonly no --daemonize yes --logfile "$RUN/redis.log" \
            --list-max-listpack-size "$size" >/dev/null
        for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
        redis-cli -p "$port" --pipe <"$RUN/fill.resp" >/dev/null
        before=$(redis_cpu "$port")
        redis-cli -p "$port" --pipe <"$RUN/push.resp" >/dev/null
        after=$(redis_cpu "$port")
        memory=$(redis-cli -p "$port" info memory | tr -d '\r' | sed -n 's/^used_memory_human://p')
        redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
        printf '%-8s %-6s %-24s %s\n' "$size" "$round" \
            "$(awk -v a="$before" -v b="$after" -v n="$PUSHES" 'BEGIN { printf "%.2f", (b - a) * 1e6 / n }')" \
            "$memory"
    done
done
echo "(files in $RUN; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
