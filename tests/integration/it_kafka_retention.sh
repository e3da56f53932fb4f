#!/usr/bin/env bash
# The embedded broker keeps about 5 MiB per partition and drops the oldest beyond that. A
# consumer whose committed offset fell out of that window must say so loudly (DATA LOSS in
# its log), then go on from the earliest retained message.
source "$(dirname "$0")/../support/it_lib.sh"

TOPIC=it-retention
GROUP="it-retention-$NONCE"
OUT="$WORK/processed"

probe() {
    INTEGRAL_PROBE_TOPIC=$TOPIC INTEGRAL_PROBE_GROUP=$GROUP INTEGRAL_PROBE_OUTPUT=$OUT \
    INTEGRAL_KAFKA_BROKERS=$KAFKA_BROKERS INTEGRAL_KAFKA_SESSION_TIMEOUT_MS=3000 \
        start_bg "$1" "$TEST_BIN/kafka_probe"
}

seq 1 100 | awk -v n="$NONCE" '{print n "-" $1 ":small"}' |
    kcat -P -b "$KAFKA_BROKERS" -t $TOPIC -K:
probe first
wait_until 60 bash -c "[ \$(grep -c ' $NONCE-' '$OUT' 2>/dev/null || echo 0) -ge 100 ]" ||
    fail "the consumer did not process the first 100 messages"
stop_bg "$LAST_PID"
expect_eq 0 "$STOP_RC" "exit status after SIGTERM"
ok "consumed 100 messages and committed"

# 8,000 x 1 KiB: more than the partition keeps, so the committed offset falls out of it.
head -c 1000 /dev/zero | tr '\0' x > "$WORK/kib"
seq 1 8000 | awk -v n="$NONCE" -v v="$(cat "$WORK/kib")" '{print n "-big-" $1 ":" v}' |
    kcat -P -b "$KAFKA_BROKERS" -t $TOPIC -K:
low=$(kcat -Q -b "$KAFKA_BROKERS" -t "$TOPIC:0:-2" | awk '{print $NF}')
[ "$low" -gt 100 ] || fail "the broker still retains offset 100 (log start $low)"
ok "the broker dropped the oldest messages (log start is now $low)"

probe second
wait_until 60 grep -q "DATA LOSS" "$WORK/second.log" ||
    fail "the consumer did not report the lost offsets: $(tail -5 "$WORK/second.log")"
wait_until 60 grep -q " $NONCE-big-8000\$" "$OUT" ||
    fail "the consumer did not go on to the end after the reset"
stop_bg "$LAST_PID"
expect_eq 0 "$STOP_RC" "exit status after SIGTERM"
ok "offset reset reported as DATA LOSS, consumption went on from offset $low"
