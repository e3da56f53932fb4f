# it_lib.sh - sourced by the shell integration tests (tests/integration/it_*.sh).
# Loads the shared stack's addresses ($INTEGRAL_IT_ENV) and gives small assertion helpers.
# Every helper is bounded in time; a failed check prints what was expected and exits 1.
set -euo pipefail

: "${INTEGRAL_IT_ENV:?run through ctest: the stack fixture sets INTEGRAL_IT_ENV}"
# shellcheck disable=SC1090
source "$INTEGRAL_IT_ENV"
BIN=${INTEGRAL_BIN_DIR:?}
TEST_BIN=${INTEGRAL_TEST_BIN_DIR:?}
PY=/usr/bin/python3 # Debian's interpreter: it has python3-websockets and confluent-kafka

TEST_NAME=$(basename "$0" .sh)
WORK=$(mktemp -d "$IT_DIR/$TEST_NAME.XXXXXX")
NONCE="$(date +%s%N)"
declare -a IT_PIDS=()

cleanup() {
    local pid
    for pid in "${IT_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

ok() {
    echo "ok - $*"
}

# wait_until SECONDS COMMAND...: runs COMMAND every 0.1 s until it succeeds.
wait_until() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.1
    done
}

# start_bg NAME COMMAND...: starts COMMAND with its output in $WORK/NAME.log; sets $LAST_PID.
start_bg() {
    local name=$1
    shift
    "$@" </dev/null >"$WORK/$name.out" 2>"$WORK/$name.log" &
    LAST_PID=$!
    IT_PIDS+=("$LAST_PID")
}

# running PID: true while the process exists and is not a zombie (an exited child that was
# not waited for still answers kill -0).
running() {
    [ -e "/proc/$1" ] && ! awk '{exit ($3 == "Z") ? 0 : 1}' "/proc/$1/stat" 2>/dev/null
}

# stop_bg PID [SIGNAL]: sends SIGTERM (or SIGNAL), waits (15 s at most) and sets $STOP_RC to
# the exit status. (Not usable inside $(...): a subshell cannot wait for our children.)
stop_bg() {
    local pid=$1
    kill "-${2:-TERM}" "$pid"
    local deadline=$((SECONDS + 15))
    while running "$pid"; do
        [ $SECONDS -lt $deadline ] || fail "process $pid did not stop within 15 s"
        sleep 0.1
    done
    STOP_RC=0
    wait "$pid" || STOP_RC=$?
}

# expect_status EXPECTED ACTUAL WHAT
expect_eq() {
    [ "$1" = "$2" ] || fail "$3: expected '$1', got '$2'"
}
