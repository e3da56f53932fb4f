#!/usr/bin/env bash
# engine_instructions.sh - the engine's instructions per event during phase 1 of
# engine_bench.sh, counted by callgrind: a number that does not move with the machine's load
# the way CPU time does (tests/bench/README.md, "Instructions per event").
#
#   tests/bench/engine_instructions.sh [--events 30000] [--customers 3000] [--run-dir D]
#                                      [--no-build] [--top 30]
#
# The engine runs under valgrind --tool=callgrind with instrumentation off; it is switched on
# when the producer starts and the counts are dumped when every partition's applied offset
# reached its high watermark ("phase 1: done"). Threads are counted apart: the main thread
# (the loop: parsing, state, documents, Redis I/O) is the number to compare between builds;
# librdkafka's threads poll the broker every fetch.wait.max.ms, so their count grows with how
# long the run takes. Prints instructions per event of the main thread and of all threads,
# and the main thread's top functions by self cost; the callgrind files and the annotation
# (callgrind.txt) stay in the run directory. Exit status: engine_bench.sh's (0 when its checks
# passed).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
EVENTS=30000
CUSTOMERS=3000
RUN=""
TOP=30
BUILD_ARG=()
while [ $# -gt 0 ]; do
    case $1 in
    --events) EVENTS=$2; shift ;;
    --customers) CUSTOMERS=$2; shift ;;
    --run-dir) RUN=$2; shift ;;
    --top) TOP=$2; shift ;;
    --no-build) BUILD_ARG=(--no-build) ;;
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "engine_instructions.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null ||
    { echo "engine_instructions.sh: needs valgrind (deploy/deps.sh --bench)" >&2; exit 2; }
[ -n "$RUN" ] || RUN=$ROOT/build-bench/bench-runs/instructions-$(date +%Y%m%d-%H%M%S)
mkdir -p "$RUN"
OUT=$RUN/callgrind.out
LOG=$RUN/bench.log

export ENGINE_WRAPPER="valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes --callgrind-out-file=$OUT"
"$ROOT/tests/bench/engine_bench.sh" --events "$EVENTS" --customers "$CUSTOMERS" --no-latency \
    "${BUILD_ARG[@]}" --run-dir "$RUN/bench" >"$LOG" 2>&1 &
BENCH=$!
trap 'kill "$BENCH" 2>/dev/null || true' INT TERM

# wait_log PATTERN: until the bench log has a line matching PATTERN (or the bench ended).
wait_log() {
    while ! grep -q "$1" "$LOG" 2>/dev/null; do
        kill -0 "$BENCH" 2>/dev/null || return 1
        sleep 0.1
    done
}

engine_pid() {
    awk -F= '$1 == "engine_pid" {print $2}' "$RUN/bench/params.env" 2>/dev/null
}

status=0
if wait_log "phase 1: .* as fast as possible"; then
    PID=$(engine_pid)
    callgrind_control -i on "$PID" >/dev/null 2>&1
    if wait_log "phase 1: done"; then
        callgrind_control -d "$PID" >/dev/null 2>&1
        callgrind_control -i off "$PID" >/dev/null 2>&1
    fi
fi
wait "$BENCH" || status=$?
# The first dump, one file per thread: callgrind.out.1-01 (the main thread), -02, ...
MAIN=$(ls "$OUT".1-01 2>/dev/null || true)
if [ -z "$MAIN" ]; then
    echo "engine_instructions.sh: no callgrind dump (see $LOG)" >&2
    exit 1
fi
# totals: the "totals:" line of a dump (awk reads to the end: an early exit would fail the
# pipe under pipefail). Printed with %.0f: awk prints a number past 2^31 as "3.34e+09" with
# plain print, which bash's arithmetic refuses (and mawk's %d stops at 2^31 - 1).
thread_total() { awk '$1 == "totals:" {t = $2} END {printf "%.0f\n", t + 0}' "$1"; }
ALL=0
for f in "$OUT".1-*; do ALL=$((ALL + $(thread_total "$f"))); done
MAIN_TOTAL=$(thread_total "$MAIN")
ANNOTATED=$RUN/callgrind.txt
callgrind_annotate "$MAIN" >"$ANNOTATED"
echo "run              $RUN"
echo "events           $EVENTS over $CUSTOMERS customers (phase 1 of engine_bench.sh)"
echo "main thread      $MAIN_TOTAL instructions, $((MAIN_TOTAL / EVENTS)) per event"
echo "all threads      $ALL instructions, $((ALL / EVENTS)) per event"
echo
awk -v top="$TOP" '/file:function/ {f = 1; next} f && NF && !/^-+$/ && n++ < top' "$ANNOTATED"
exit "$status"
