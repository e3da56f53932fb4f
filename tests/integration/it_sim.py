"""integral-sim end to end: the same seed gives the same events (ids, subjects, types, data; only
live times differ), --count stops it after that many acknowledged events with exit 0, and every
event it makes passes the engine's contract: a real engine applies them all, dead-letters none,
and customers get documents with values and tiers."""
import json
import os
import subprocess
import time
import uuid

from confluent_kafka import Consumer, TopicPartition

from engine_it import BIN, STACK, EngineTest, check, fail

t = EngineTest("sim")


def run_sim(topic, seed, count, extra=None):
    env = dict(os.environ)
    env.update({
        "INTEGRAL_KAFKA_BROKERS": STACK["KAFKA_BROKERS"],
        "INTEGRAL_HTTP_PORT": "0",
        "INTEGRAL_SIM_TOPIC": topic,
        "INTEGRAL_SIM_CUSTOMERS": "300",
        "INTEGRAL_SIM_PARTNERS": "3",
        "INTEGRAL_SIM_AGENTS": "6",
        "INTEGRAL_SIM_HISTORY_DAYS": "20",
    })
    env.update(extra or {})
    started = time.time()
    out = subprocess.run([os.path.join(BIN, "integral-sim"), "--seed", str(seed), "--count", str(count),
                          "--rate", "5000"], env=env, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        fail("integral-sim exited %d:\n%s" % (out.returncode, out.stderr[-3000:]))
    return time.time() - started, out.stderr


def read_all(topic, start, expect, timeout=30):
    c = Consumer({"bootstrap.servers": STACK["KAFKA_BROKERS"], "group.id": "it-sim-" + uuid.uuid4().hex,
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, start)])
    out = []
    deadline = time.time() + timeout
    while len(out) < expect and time.time() < deadline:
        m = c.poll(0.2)
        if m is not None and not m.error():
            out.append((m.key().decode(), json.loads(m.value())))
    c.close()
    return out


try:
    COUNT = 3000
    starts = {tp: t.end_offsets(tp)[0] for tp in ("it-sim-a", "it-sim-b")}
    secs, log = run_sim("it-sim-a", 42, COUNT)
    check(True, "--count %d --rate 5000: integral-sim stopped by itself with exit 0 after %.1f s" % (COUNT, secs))
    run_sim("it-sim-b", 42, COUNT)
    a = read_all("it-sim-a", starts["it-sim-a"], COUNT)
    b = read_all("it-sim-b", starts["it-sim-b"], COUNT)
    check(len(a) == COUNT and len(b) == COUNT, "each run produced exactly %d events (%d, %d)" % (COUNT, len(a), len(b)))

    def strip(events):
        return [(k, {f: v for f, v in e.items() if f != "time"}) for k, e in events]
    check(strip(a) == strip(b), "the same seed gives the same events in the same order")
    check(all(k == e["subject"] for k, e in a), "the Kafka key is the subject")
    types = {e["type"] for _, e in a}
    check({"customer.profile", "order.placed", "order.updated", "contact.queued", "contact.started",
           "contact.ended", "web.visited", "agent.state"} <= types, "the mix covers the contract (%s)" % sorted(types))
    check(any(e["subject"].startswith("partner:") for _, e in a), "partner accounts take part")

    # Through the engine: nothing dead-lettered, every event applied.
    eng = t.start_engine()
    run_sim(t.topic, 7, COUNT)
    t.wait(lambda: eng.metric("integral_engine_events_total") >= COUNT, 60, "the engine applied every event")
    check(eng.metric("integral_engine_events_total") == COUNT, "the engine applied all %d events" % COUNT)
    check(not t.read_deadletters(timeout=2), "no event of the simulator was dead-lettered")
    doc = t.doc("c-00001") or t.doc("c-00002")
    check(doc is not None and doc["tier"] in ("A", "B", "C") and isinstance(doc["value"], (int, float))
          and doc["profile"]["name"],
          "customers have documents with a name, a value and a tier")
    t.stop_engine(eng)
finally:
    t.close()
