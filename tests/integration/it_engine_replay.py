"""Replaying the topic changes nothing, and rebuilding from it gives the same state.

1. A few hundred mixed events over ~20 customers (engine_it.mixed_stream: contacts, orders,
   sentiment, complaints, ...; some re-sent, some bad), plus a customer whose complaint and
   order are re-sent by their producer (same event ids, new offsets): those are applied once
   (document byte for byte unchanged, no second alert, counted as duplicates). Rules are the
   shipped ones plus "every_complaint" (cooldown 0), so a duplicate applied twice would alert
   twice. engine.lateness_ms is at its maximum: alerts do not depend on when the test runs.
2. Replay: the engine stops, the applied offsets are deleted from Redis and a new engine in a
   NEW consumer group re-reads the whole topic from offset 0. Every document must be byte for
   byte unchanged, and no alert with a new id may appear (re-sent ones with known ids are
   reported).
3. Rebuild: the same, with the customers' documents deleted too: every document is rebuilt
   byte for byte, and the alerts raised are exactly the first run's ids (state.h: "replaying
   the same events in the same order gives the same state and the same document")."""
import datetime
import json
import os
import time

from engine_it import (LATENESS_MAX_MS, SOURCE, EngineTest, check, event, metric_series,
                       mixed_stream, now_utc, produce_tracked, read_to_end, wait_applied)

t = EngineTest("replay")
try:
    with open(os.path.join(SOURCE, "config/rules.json")) as f:
        rules = json.load(f)
    rules["rules"].append({
        "id": "every_complaint", "on": ["complaint.filed"], "condition": "complaints_90d >= 1",
        "severity": "info", "title": "Complaint #{complaints_90d}",
        "message": "{complaint_category}", "action": "Read it.", "cooldown_s": 0})
    rules_path = os.path.join(t.work, "rules.json")
    with open(rules_path, "w") as f:
        json.dump(rules, f, indent=2)
    env = {"INTEGRAL_ENGINE_LATENESS_MS": LATENESS_MAX_MS,
           "INTEGRAL_ENGINE_RULES_FILE": rules_path}

    def total(eng, name):
        return sum(metric_series(eng, name).values())

    def snapshot(customers):
        """{customer: (document bytes, its timeline list)}."""
        pipe = t.redis.pipeline()
        for c in customers:
            pipe.get("{c:%s}:state" % c)
            pipe.lrange("{c:%s}:timeline" % c, 0, -1)
        replies = pipe.execute()
        return {c: (replies[2 * i], tuple(replies[2 * i + 1])) for i, c in enumerate(customers)}

    def alerts_now(customers):
        """[(alert id, rule, customer)] on the alerts topic since the test began."""
        out = []
        for m in read_to_end(t, t.alerts_topic):
            a = json.loads(m.value())
            if a["customer_id"] in customers:
                out.append((a["id"], a["rule"], a["customer_id"]))
        return out

    # -- 1. The first run -----------------------------------------------------------------
    start = time.time()
    eng = t.start_engine(extra_env=env, tag="first")
    stream = mixed_stream(seed=7, n_events=600, nonce=t.nonce)
    events = stream.events("r")
    customers = sorted(stream.customers("r"))
    produce_tracked(t, events)
    n_bad = sum(1 for _n, _e, b in stream.items if b)
    n_resent = len(events) - len({e["id"] for e in events})
    print("# %d events over %d customers (%d bad, %d re-sent)" %
          (len(events), len(customers), n_bad, n_resent), flush=True)

    # A producer re-sends two events (same bytes, same id, new offset).
    dup = t.cid("dup")
    now = now_utc()
    complaint = event("complaint.filed", dup, {"category": "delivery", "severity": "high"},
                      at=now - datetime.timedelta(seconds=60))
    order = event("order.placed", dup, {"order_id": "o-1", "amount": 120, "currency": "EUR"},
                  at=now - datetime.timedelta(seconds=50))
    first = produce_tracked(t, [complaint, order])
    wait_applied(t, t.end_offsets(t.topic), 120, "the first run", [eng])
    before = snapshot([dup])[dup]
    dups_before = total(eng, "integral_engine_duplicates_total")
    again = produce_tracked(t, [complaint, order])
    check(again[0][1] > first[0][1] and again[1][1] > first[1][1],
          "the same two events re-sent at new offsets %s (first %s)" % (again, first))
    ends = t.end_offsets(t.topic)
    wait_applied(t, ends, 60, "the re-sent events", [eng])
    check(snapshot([dup])[dup] == before,
          "re-sent events (same ids) change nothing: the document and the timeline (%d "
          "entries) are byte for byte the same (complaints_90d %d, revenue_12m %s, offset %d)" %
          (len(before[1]), json.loads(before[0])["counts"]["complaints_90d"],
           json.loads(before[0])["money"]["revenue_12m"], json.loads(before[0])["offset"]))
    check(total(eng, "integral_engine_duplicates_total") - dups_before == 2,
          "both counted as duplicates")
    customers.append(dup)
    t.read_alerts(expect=0, timeout=2, settle=2.0)
    dup_alerts = sorted(r for _i, r, c in alerts_now({dup}) if c == dup)
    check(dup_alerts == ["every_complaint", "rising_value"],
          "no second alert for the re-sent events: %s" % dup_alerts)

    docs1 = snapshot(customers)
    alerts1 = alerts_now(set(customers))
    ids1 = {a[0] for a in alerts1}
    by_rule = {}
    for _i, r, _c in alerts1:
        by_rule[r] = by_rule.get(r, 0) + 1
    dlq1 = len(read_to_end(t, t.dlq_topic))
    n_msgs = sum(ends.values())
    check(all(docs1[c][0] is not None for c in customers) and len(ids1) >= 20,
          "first run: %d documents (%d timeline entries), %d alerts (%s), %d dead letters, %d "
          "messages in the topic" % (len(customers), sum(len(d[1]) for d in docs1.values()),
                                     len(ids1), json.dumps(by_rule, sort_keys=True), dlq1,
                                     n_msgs))
    t.stop_engine(eng)
    print("# first run: %.1f s" % (time.time() - start), flush=True)

    def reset_applied():
        keys = ["{p:%s:%d}:applied" % (t.topic, p) for p in ends]
        t.redis.delete(*keys)
        check(all(t.redis.get(k) is None for k in keys),
              "applied offsets of the %d partitions deleted" % len(keys))

    def rerun(tag, group, what, counter):
        """Starts an engine in a new group, waits until it has re-read the whole topic
        (the applied offsets are back at the ends and every message is counted)."""
        t0 = time.time()
        e = t.start_engine(extra_env=dict(env, INTEGRAL_ENGINE_GROUP=group), tag=tag)
        wait_applied(t, ends, 180, what, [e])
        t.wait(lambda: total(e, counter) + total(e, "integral_engine_deadlettered_total") >=
               n_msgs, 60, "%d messages re-read" % n_msgs)
        log = e.log()
        check(all("partition %d claimed" % p in log and "nothing applied yet" in log
                  for p in ends), "%s: every partition claimed with nothing applied: read from "
              "offset 0 in group %s (%.1f s)" % (tag, group, time.time() - t0))
        return e

    # -- 2. Replay: nothing applied, new group ----------------------------------------------
    reset_applied()
    eng = rerun("replay", t.group + "-replay", "the replay", "integral_engine_duplicates_total")
    n_dups = total(eng, "integral_engine_duplicates_total")
    n_dlq = total(eng, "integral_engine_deadlettered_total")
    check(n_dups + n_dlq == n_msgs and total(eng, "integral_engine_documents_written_total") == 0,
          "every one of the %d messages was re-read: %d duplicates, %d bad; no document written"
          % (n_msgs, n_dups, n_dlq))
    t.read_alerts(expect=0, timeout=2, settle=2.0)
    docs2 = snapshot(customers)
    changed = [c for c in customers if docs2[c] != docs1[c]]
    check(not changed, "all %d documents and timelines byte for byte unchanged after the replay%s" %
          (len(customers), (": differ: %s" % changed[:3]) if changed else ""))
    alerts2 = alerts_now(set(customers))
    new_ids = {a[0] for a in alerts2} - ids1
    resent = len(alerts2) - len(alerts1)
    check(not new_ids, "no alert with a new id after the replay (%d new)" % len(new_ids))
    dlq2 = len(read_to_end(t, t.dlq_topic))
    print("# replay re-sent %d alert(s) with known ids and %d dead letter(s) (bad messages are "
          "dead-lettered again when re-read)" % (resent, dlq2 - dlq1), flush=True)
    check(resent == 0, "the replay raised no alert at all (duplicates are not evaluated)")
    t.stop_engine(eng)

    # -- 3. Rebuild: documents deleted too --------------------------------------------------
    t.redis.delete(*["{c:%s}:%s" % (c, k) for c in customers for k in ("state", "timeline")])
    reset_applied()
    eng = rerun("rebuild", t.group + "-rebuild", "the rebuild", "integral_engine_events_total")
    t.read_alerts(expect=0, timeout=2, settle=2.0)
    docs3 = snapshot(customers)
    changed = [c for c in customers if docs3[c] != docs1[c]]
    for c in changed[:2]:
        a, b = json.loads(docs1[c][0]), json.loads(docs3[c][0]) if docs3[c][0] else {}
        if docs1[c][1] != docs3[c][1]:
            print("  %s: timelines differ" % c, flush=True)
        print("  %s differs in %s" % (c, sorted(k for k in a if a.get(k) != b.get(k))),
              flush=True)
    check(not changed, "all %d documents and timelines rebuilt from the topic byte for byte equal%s" %
          (len(customers), (": differ: %s" % changed[:3]) if changed else ""))
    alerts3 = alerts_now(set(customers))[len(alerts2):]
    ids3 = {a[0] for a in alerts3}
    check(ids3 == ids1, "the rebuild raised the first run's %d alert ids again, no other "
          "(%d missing, %d new)" % (len(ids1), len(ids1 - ids3), len(ids3 - ids1)))
    t.stop_engine(eng)
    check("event loop not empty" not in eng.log(), "engine stopped cleanly")
finally:
    t.close()
