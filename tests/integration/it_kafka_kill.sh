#!/usr/bin/env bash
# A consumer killed with SIGKILL in the middle of a stream and restarted resumes from its
# committed offsets: the union of what both runs processed holds every message, and the
# restart did not start over from the beginning.
source "$(dirname "$0")/../support/it_lib.sh"

TOPIC=it-kafka-kill
TOTAL=10000
GROUP="it-kill-$NONCE"
OUT="$WORK/processed"

seq 1 $TOTAL | awk -v n="$NONCE" '{print n "-" $1 ":value-" $1}' |
    kcat -P -b "$KAFKA_BROKERS" -t $TOPIC -K: -X linger.ms=5
ok "produced $TOTAL keyed messages with kcat"

probe() {
    INTEGRAL_PROBE_TOPIC=$TOPIC INTEGRAL_PROBE_GROUP=$GROUP INTEGRAL_PROBE_OUTPUT=$OUT \
    INTEGRAL_PROBE_RATE=2500 INTEGRAL_KAFKA_BROKERS=$KAFKA_BROKERS \
    INTEGRAL_KAFKA_SESSION_TIMEOUT_MS=3000 INTEGRAL_KAFKA_COMMIT_INTERVAL_MS=200 \
        start_bg "$1" "$TEST_BIN/kafka_probe"
}
ours() { grep -c " $NONCE-" "$OUT" 2>/dev/null || echo 0; }
distinct() { awk -v n="$NONCE" 'index($3, n "-") == 1 {print $3}' "$OUT" | sort -u | wc -l; }

probe first
first=$LAST_PID
wait_until 60 bash -c "[ \$(grep -c ' $NONCE-' '$OUT' 2>/dev/null || echo 0) -ge 3000 ]" ||
    fail "the first consumer processed $(ours) messages in 60 s"
kill -KILL "$first"
wait "$first" 2>/dev/null || true
before=$(ours)
[ "$before" -lt $TOTAL ] || fail "the first consumer finished before it was killed"
ok "killed the consumer with SIGKILL after $before messages"

probe second
second=$LAST_PID
wait_until 90 bash -c "[ \$(awk -v n='$NONCE' 'index(\$3, n \"-\") == 1 {print \$3}' '$OUT' | sort -u | wc -l) -ge $TOTAL ]" ||
    fail "after the restart only $(distinct) of $TOTAL distinct messages were processed"
stop_bg "$second"
expect_eq 0 "$STOP_RC" "exit status of the restarted consumer after SIGTERM"

after=$(ours)
duplicates=$((after - TOTAL))
expect_eq $TOTAL "$(distinct)" "distinct messages processed"
# Resuming from committed offsets repeats at most what was processed after the last commit;
# starting over would repeat all $before.
[ "$duplicates" -lt "$before" ] ||
    fail "the restart repeated $duplicates messages: it did not resume from committed offsets"
grep -q "uv_loop_close\|event loop not empty" "$WORK/second.log" && fail "loop not empty at exit"
ok "restart resumed from committed offsets: $TOTAL distinct, $duplicates redelivered, 0 lost"
