#!/usr/bin/env bash
# The embedded Kafka speaks the real protocol: an independent client (kcat) lists its brokers
# and Integral's topics, and produces and consumes keys, values and headers through it.
source "$(dirname "$0")/../support/it_lib.sh"

meta=$(kcat -L -b "$KAFKA_BROKERS")
echo "$meta" | grep -q "broker.* at 127.0.0.1:" || fail "kcat -L lists no broker: $meta"
for topic in interactions alerts assignments feedback deadletter; do
    echo "$meta" | grep -q "topic \"$topic\" with [0-9]* partitions" ||
        fail "kcat -L does not list topic $topic"
done
ok "kcat -L lists the brokers and the five topics"

printf '%s\n' "k1:$NONCE-one" "k2:$NONCE-two" |
    kcat -P -b "$KAFKA_BROKERS" -t it-single -K: -H "origin=it" -H "run=$NONCE"
got=$(kcat -C -b "$KAFKA_BROKERS" -t it-single -o beginning -e -q -f '%k|%s|%h\n' | grep "$NONCE")
expect_eq "k1|$NONCE-one|origin=it,run=$NONCE
k2|$NONCE-two|origin=it,run=$NONCE" "$got" "kcat round trip"
ok "kcat produced and consumed keys, values and headers"

"$BIN/integral-devbroker" --version | grep -q "^integral-devbroker [0-9]" || fail "--version"
"$BIN/integral-devbroker" --help | grep -q -- "--config PATH" || fail "--help"
ok "--help and --version"
