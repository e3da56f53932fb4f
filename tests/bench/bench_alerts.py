"""bench_alerts.py - the engine benchmark's independent alert-latency probe.

Run with Debian's /usr/bin/python3 (python3-confluent-kafka). It positions a plain consumer
(no group, assigned by hand) at the current end of every partition of the alerts topic,
writes --ready, and reads alerts until SIGTERM/SIGINT. Then it looks every alert's event_id
up in the producer's id file (bench_produce --ids-out: "event_id kafka_ts_ms type subject")
and writes --out (JSON) with, over the alerts raised by those events:

  kafka_ms    alert message's Kafka timestamp - triggering event's Kafka timestamp. Both are
              CreateTime stamped by the producers when they called produce (the bench
              producer for the event, the engine for the alert): event produced -> alert
              handed to the engine's Kafka producer. Excludes the alert's own trip to the
              broker. 1 ms resolution.
  received_ms wall clock when this consumer received the alert - the event's Kafka
              timestamp: event produced -> alert readable by a downstream consumer (the
              gateway's view), including the broker and this consumer's fetch wait
              (--fetch-wait-ms, default 5: the development broker answers an empty fetch
              only after that long, and each fetch costs it a scan of the partition).

--raw FILE keeps one line per matched alert (event_ts_ms built_ms alert_ts_ms received_ms rule
event_type; built_ms is the alert's own "time", the engine's clock when it built the alert).
It also checks that the alert's event_time equals the event's Kafka timestamp (bench_produce
sets both to the same millisecond). Timer alerts (event_type "timer") have no triggering event
and are only counted.

    /usr/bin/python3 bench_alerts.py --brokers B --topic alerts --ready F --out F.json --ids F
"""
import argparse
import datetime
import json
import signal
import sys
import time

from confluent_kafka import Consumer, TopicPartition

stop = False


def on_signal(signum, frame):
    global stop
    stop = True


def parse_time_ms(text):
    dt = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    dt = dt.replace(tzinfo=datetime.timezone.utc)
    return int(round(dt.timestamp() * 1000))


def quantiles(values):
    if not values:
        return {"count": 0}
    v = sorted(values)
    n = len(v)

    def q(p):  # nearest rank
        k = max(0, min(n - 1, int(-(-p * n // 1)) - 1))
        return v[k]

    return {"count": n, "p50": q(0.50), "p90": q(0.90), "p99": q(0.99), "max": v[-1],
            "mean": sum(v) / n}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", default="alerts")
    ap.add_argument("--ready", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--fetch-wait-ms", type=int, default=5,
                    help="this consumer's fetch.wait.max.ms: the development broker always "
                         "waits that long on an empty fetch, so received_ms includes up to it")
    ap.add_argument("--raw", help="write one line per matched alert: event_ts_ms built_ms "
                                  "alert_ts_ms received_ms rule event_type")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    c = Consumer({"bootstrap.servers": args.brokers, "group.id": "bench-alerts-probe",
                  "enable.auto.commit": False, "fetch.wait.max.ms": args.fetch_wait_ms,
                  "enable.partition.eof": False})
    md = c.list_topics(args.topic, timeout=10)
    parts = sorted(md.topics[args.topic].partitions)
    assign = []
    for p in parts:
        low, high = c.get_watermark_offsets(TopicPartition(args.topic, p), timeout=10)
        assign.append(TopicPartition(args.topic, p, high))
    c.assign(assign)
    with open(args.ready, "w") as f:
        f.write("%d\n" % len(parts))

    alerts = []
    while not stop:
        m = c.poll(0.05)
        if m is None or m.error():
            continue
        recv_ms = time.time() * 1000.0
        try:
            a = json.loads(m.value())
        except ValueError:
            continue
        alerts.append((a.get("event_id"), a.get("event_type"), a.get("event_time"),
                       a.get("rule"), m.timestamp()[1], recv_ms, a.get("time")))
    c.close()

    ids = {}
    with open(args.ids) as f:
        for line in f:
            parts_ = line.split(" ", 2)
            ids[parts_[0]] = int(parts_[1])

    kafka_ms, received_ms, by_rule = [], [], {}
    timers = unmatched = time_mismatch = 0
    raw = open(args.raw, "w") if args.raw else None
    for event_id, event_type, event_time, rule, alert_ts, recv_ms, built in alerts:
        by_rule[rule] = by_rule.get(rule, 0) + 1
        if event_type == "timer":
            timers += 1
            continue
        ev_ts = ids.get(event_id)
        if ev_ts is None:
            unmatched += 1
            continue
        if event_time and parse_time_ms(event_time) != ev_ts:
            time_mismatch += 1
        kafka_ms.append(alert_ts - ev_ts)
        received_ms.append(recv_ms - ev_ts)
        if raw:
            raw.write("%d %d %d %.3f %s %s\n" % (ev_ts, parse_time_ms(built) if built else 0,
                                                 alert_ts, recv_ms, rule, event_type))
    if raw:
        raw.close()
    out = {
        "alerts": len(alerts),
        "by_rule": by_rule,
        "timer_alerts": timers,
        "unmatched": unmatched,
        "event_time_mismatch": time_mismatch,
        "kafka_ms": quantiles(kafka_ms),
        "received_ms": quantiles(received_ms),
    }
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
