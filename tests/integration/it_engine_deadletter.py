"""Bad input goes to the dead-letter topic unchanged, and the engine goes on. Every kind of bad
message (event.h's reasons, plus key_mismatch) is sent between good events of one customer
(same key, so the same partition), some with confluent-kafka and some with kcat (an
independent client). Each must reach it-eng-dlq-dlq once, with the same key and value bytes
(null stays null), the right integral-reason, a detail naming what is wrong, and source
topic / partition / offset headers that point at the original message. The good events
around them are all applied, alerts still work, the applied offsets pass the bad messages,
and integral_engine_deadlettered_total counts them by reason.
Last, a message Kafka accepted but larger than the engine's producer may send (1,010,000
bytes): its dead letter must get out, and until it has, Redis's applied offset must not move
past it (a restart resumes there), and the events after it must still be applied."""
import datetime
import json
import subprocess
import time

from confluent_kafka import Producer

from engine_it import (EngineTest, applied_offsets, check, event, fail, fetch_at,
                       metric_series, now_utc, produce_raw_tracked, rfc3339, wait_applied)

MAX_BYTES = 65536  # engine.max_event_bytes (default)

t = EngineTest("dlq")
try:
    eng = t.start_engine()
    now = now_utc()
    sec = datetime.timedelta(seconds=1)
    good = t.cid("good")
    contact = "k-dlq-" + t.nonce

    def raw(ev):
        return json.dumps(ev).encode()

    def ok_event(**over):
        """A valid event of the good customer, with attributes replaced or (None) removed."""
        ev = event("web.visited", good, {"page": "/help"}, at=now - 30 * sec)
        for k, v in over.items():
            if v is None:
                del ev[k]
            else:
                ev[k] = v
        return ev

    def padded(total):
        """A valid web.visited of exactly `total` bytes (an ignored extension attribute)."""
        ev = ok_event()
        ev["itpadding"] = ""
        n = total - len(raw(ev))
        ev["itpadding"] = "x" * n
        b = raw(ev)
        assert len(b) == total
        return ev, b

    # (name, key, value, reason, detail substring, client). Keys are the good customer's, so
    # that every message shares its partition and sits between its good events.
    K = good.encode()
    big_ev, big = padded(MAX_BYTES + 1)
    edge_ev, edge = padded(MAX_BYTES)  # exactly at the limit: applied
    bad = [
        ("malformed JSON", K, b'{"specversion": "1.0", "id": ', "malformed_json",
         "malformed JSON near offset", "py"),
        ("trailing bytes", K, raw(ok_event()) + b' {}', "malformed_json",
         "bytes after the value", "py"),
        ("NUL byte", K, raw(ok_event())[:-1] + b'\x00}', "malformed_json", "NUL byte at offset",
         "py"),
        ("raw tab in a string", K, raw(ok_event(source="/web\tx")).replace(b"\\t", b"\t"),
         "malformed_json", "control character in a string", "py"),
        ("leading zero", K, raw(ok_event(data={"page": "/help", "n": 1})).replace(b": 1}", b": 01}"),
         "malformed_json", "expected ',' or '}'", "py"),
        ("not an object", K, b'["web.visited", 1]', "not_an_object",
         "message is an array, not an object", "py"),
        ("missing id", K, raw(ok_event(id=None)), "missing_attribute", "missing attribute: id",
         "py"),
        ("id of the wrong type", K, raw(ok_event(id=12345)), "bad_attribute", "id: must be",
         "py"),
        ("id given twice", K,
         raw(ok_event()).replace(b'{"specversion"', b'{"id": "dup-1", "specversion"', 1),
         "bad_attribute", "duplicate attribute: id", "py"),
        ("bad specversion", K, raw(ok_event(specversion="0.3")), "bad_specversion",
         'must be "1.0", not "0.3"', "py"),
        ("unknown type", K, raw(ok_event(type="contact.teleported")), "unknown_type",
         'unknown type: "contact.teleported"', "py"),
        ("unparseable time", K, raw(ok_event(time="yesterday at noon")), "bad_time",
         'not an RFC 3339 date-time: "yesterday at noon"', "py"),
        ("impossible date", K, raw(ok_event(time="2025-02-30T10:00:00Z")), "bad_time",
         "not an RFC 3339 date-time", "py"),
        ("time far in the future", K,
         raw(ok_event(time=(now + datetime.timedelta(days=1)).strftime(
             "%Y-%m-%dT%H:%M:%S.000Z"))), "time_in_future", "ms ahead of now", "py"),
        ("bad subject charset", b"cust 42", raw(ok_event(subject="cust 42")), "bad_subject",
         "subject: must be", "py"),
        ("agent subject on a customer event", b"agent:a-1", raw(ok_event(subject="agent:a-1")),
         "bad_subject", "agent:<id> is for agent.state only", "py"),
        ("agent.state subject not its agent_id", b"agent:a-1",
         raw(event("agent.state", "agent:a-1", {"agent_id": "a-2", "state": "available"},
                   at=now - 30 * sec)), "bad_subject", "must be agent:<data.agent_id>", "py"),
        ("missing data", K, raw(event("contact.queued", good, None, at=now - 30 * sec)),
         "missing_data", "contact.queued needs a data object", "py"),
        ("data not an object", K, raw(ok_event(data="page=/help")), "bad_data",
         "data: must be an object, not a string", "py"),
        ("score out of range", K,
         raw(event("sentiment.sampled", good, {"contact_id": contact, "score": 2},
                   at=now - 30 * sec)), "bad_data", "data.score: must be a number in [-1, 1]",
         "py"),
        ("missing required field", K,
         raw(event("order.placed", good, {"order_id": "o-1", "amount": 10},
                   at=now - 30 * sec)), "bad_data", "missing field: data.currency", "py"),
        ("over 64 KiB", K, big, "too_large",
         "message is %d bytes, over the limit of %d" % (MAX_BYTES + 1, MAX_BYTES), "py"),
        ("key not the subject", b"someone-else", raw(ok_event()), "key_mismatch",
         "is not the subject", "py"),
        ("null key", None, raw(ok_event()), "key_mismatch", "is not the subject",
         "py"),
        ("empty value", K, b"", "malformed_json", "empty message", "py"),
        ("null value (tombstone)", K, None, "malformed_json", "empty message", "py"),
        # kcat: KEY:VALUE lines
        ("kcat: malformed JSON", K, b'{"specversion": "1.0" "id": "x"}', "malformed_json",
         "malformed JSON", "kcat"),
        ("kcat: unknown type", K, raw(ok_event(type="order.teleported")), "unknown_type",
         'unknown type: "order.teleported"', "kcat"),
        ("kcat: key not the subject", b"kcat-key", raw(ok_event()), "key_mismatch",
         "is not the subject", "kcat"),
        ("kcat: bad time", K, raw(ok_event(time="2026-13-01T00:00:00Z")), "bad_time",
         "not an RFC 3339 date-time", "kcat"),
        ("kcat: bad data", K,
         raw(event("survey.answered", good, {"csat": 9}, at=now - 30 * sec)), "bad_data",
         "data.csat: must be an integer in [1, 5]", "kcat"),
    ]
    # Every (key, value) differs, so each dead letter maps back to one bad message.
    assert len({(b[1], b[2]) for b in bad}) == len(bad)

    # Good events before, between and after.
    g_queued = event("contact.queued", good, {"contact_id": contact, "channel": "chat",
                                              "queue": "care"}, at=now - 60 * sec)
    g_started = event("contact.started", good, {"contact_id": contact, "channel": "chat",
                                                "agent_id": "a-dlq", "queue": "care"},
                      at=now - 50 * sec)
    g_sample = event("sentiment.sampled", good, {"contact_id": contact, "score": -0.8},
                     at=now - 20 * sec)
    py_bad = [b for b in bad if b[5] == "py"]
    kcat_bad = [b for b in bad if b[5] == "kcat"]
    half = len(py_bad) // 2
    pairs = ([(K, raw(g_queued))] + [(b[1], b[2]) for b in py_bad[:half]] +
             [(K, edge)] + [(b[1], b[2]) for b in py_bad[half:]] + [(K, raw(g_started))])
    where = produce_raw_tracked(t, pairs)
    sent_at = {}  # (key, value) -> (partition, offset)
    for (k, v), w in zip(pairs, where):
        sent_at[(k, v)] = w
    # kcat: one message per line, key before the first ':'.
    lines = b"".join(b[1] + b":" + b[2] + b"\n" for b in kcat_bad)
    assert all(b":" not in b[1] and b"\n" not in b[2] for b in kcat_bad)
    r = subprocess.run(["kcat", "-P", "-b", t.brokers, "-t", t.topic, "-K:"], input=lines,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    check(r.returncode == 0, "kcat produced %d bad messages (%s)" %
          (len(kcat_bad), r.stderr.decode(errors="replace").strip()[:200]))
    g_where = produce_raw_tracked(t, [(K, raw(g_sample))])[0]

    # -- The dead letters
    letters = t.read_deadletters(expect=len(bad), timeout=60, settle=2.0)
    check(len(letters) == len(bad), "%d bad messages, %d dead letters" %
          (len(bad), len(letters)))
    by_msg = {}
    for dl in letters:
        by_msg.setdefault((dl["key"], dl["value"]), []).append(dl)
    for name, k, v, reason, detail, client in bad:
        got = by_msg.get((k, v), [])
        if len(got) != 1:
            fail("%s: %d dead letter(s) with its key and value bytes (keys seen: %s)" %
                 (name, len(got), sorted({str(dl["key"])[:40] for dl in letters})))
        h = got[0]["headers"]
        if h.get("integral-reason") != reason:
            fail("%s: integral-reason %r, expected %r (detail %r)" %
                 (name, h.get("integral-reason"), reason, h.get("integral-detail")))
        if detail not in (h.get("integral-detail") or ""):
            fail("%s: integral-detail %r does not say %r" % (name, h.get("integral-detail"),
                                                             detail))
        if h.get("integral-source-topic") != t.topic or h.get("integral-service") != "engine":
            fail("%s: source topic / service headers: %s" % (name, h))
        part, off = int(h["integral-source-partition"]), int(h["integral-source-offset"])
        if client == "py" and sent_at[(k, v)] != (part, off):
            fail("%s: headers say partition %d offset %d, the producer's report %s" %
                 (name, part, off, sent_at[(k, v)]))
        orig = fetch_at(t, t.topic, part, off)
        if orig is None or orig.key() != k or orig.value() != v:
            fail("%s: the message at %s/%d/%d is not the original" % (name, t.topic, part, off))
        print("ok - %s: %s, %r" % (name, reason, h["integral-detail"]), flush=True)
    check(True, "every bad message (%d kinds, %d of them sent with kcat) is dead-lettered "
          "once, key and value unchanged, with its reason, a detail, and source headers "
          "pointing at the original" % (len(bad), len(kcat_bad)))
    check(len({b[3] for b in bad}) == 13, "all 13 reasons were exercised")

    # -- The engine went on
    ends = t.end_offsets(t.topic)
    wait_applied(t, ends, 60, "the applied offsets to pass the bad messages", [eng])
    applied = applied_offsets(t)
    check(all(applied[p] >= e for p, e in ends.items() if e > 0),
          "the applied offsets in Redis passed every bad message: %s" % applied)
    doc = t.doc(good)
    types = [e["type"] for e in doc["timeline"]]
    check(doc["offset"] == g_where[1] and
          types == ["contact.started", "web.visited", "contact.queued"],
          "the good events around them were all applied (contact queued and started, the "
          "65536-byte event at the limit): timeline, newest applied first, %s" % types)
    check(doc["contact"]["state"] == "active" and doc["sentiment"]["last"] == -0.8,
          "the event after the bad ones was applied")
    alerts = [a for a in t.read_alerts(expect=1, timeout=30, settle=1.0)
              if a["customer_id"] == good]
    check(len(alerts) == 1 and alerts[0]["rule"] == "negative_sentiment" and
          alerts[0]["event_id"] == g_sample["id"] and alerts[0]["agent_id"] == "a-dlq",
          "alerts still work: negative_sentiment on the sample after them")

    # -- The metric
    series = metric_series(eng, "integral_engine_deadlettered_total")
    want = {}
    for b in bad:
        want[b[3]] = want.get(b[3], 0) + 1
    got = {k.split('"')[1]: v for k, v in series.items() if v}
    check(got == {k: float(v) for k, v in want.items()},
          "integral_engine_deadlettered_total by reason: %s" % json.dumps(got, sort_keys=True))
    check(len(series) == 13, "every reason is a series, also at 0 (%d)" % len(series))

    # -- A message Kafka accepted (1,010,000 bytes: under the broker's default limit of
    # 1,048,588 and a Java producer's 1 MiB) but over the engine's own producer limit
    # (librdkafka's message.max.bytes, 1,000,000 by default): too_large, and its dead letter
    # must still get out, or at least not be lost. Then a good event on the same partition.
    huge_ev = ok_event()
    huge_ev["itpadding"] = ""
    huge_ev["itpadding"] = "x" * (1010000 - len(raw(huge_ev)))
    huge = raw(huge_ev)
    big_producer = Producer({"bootstrap.servers": t.brokers, "message.max.bytes": 2000000})
    reports = []
    big_producer.produce(t.topic, key=K, value=huge,
                         on_delivery=lambda err, m: reports.append((err, m.partition(),
                                                                    m.offset())))
    big_producer.flush(30)
    check(len(reports) == 1 and reports[0][0] is None,
          "Kafka accepted a %d-byte message (%s)" % (len(huge), reports))
    _e, hp, ho = reports[0]
    t.wait(lambda: metric_series(eng, "integral_engine_deadlettered_total").get(
        'reason="too_large"') == 2, 30, "the engine to read the huge message")
    # Read and sealed into a batch: the next event goes into a later batch.
    after = ok_event(time=rfc3339(now_utc()))
    a_where = produce_raw_tracked(t, [(K, raw(after))])[0]
    check(a_where[0] == hp, "a good event after it on the same partition %d" % hp)
    # Not a failure by itself if it is not (an engine that writes batches in order holds it
    # back until the dead letter is out): checked at the end.
    deadline = time.time() + 15
    while (t.doc(good) or {}).get("offset") != a_where[1] and time.time() < deadline:
        time.sleep(0.1)

    def huge_letters():
        return [dl for dl in t.read_deadletters(timeout=0)
                if dl["headers"].get("integral-source-partition") == str(hp) and
                dl["headers"].get("integral-source-offset") == str(ho)]

    applied = applied_offsets(t)[hp]
    check(huge_letters() or applied <= ho,
          "Redis's applied offset of partition %d does not pass offset %d while that "
          "message's dead letter is unacknowledged (applied %d): else a restart resumes past "
          "it and it is never dead-lettered" % (hp, ho, applied))
    t.wait(lambda: huge_letters(), 30, "the dead letter of the %d-byte message" % len(huge))
    dl = huge_letters()[0]
    check(dl["headers"]["integral-reason"] == "too_large",
          "the %d-byte message is dead-lettered as too_large" % len(huge))
    t.wait(lambda: (t.doc(good) or {}).get("offset") == a_where[1], 30,
           "the event after the huge one applied")
    check(True, "the event after it is applied")

    t.stop_engine(eng)
    check("event loop not empty" not in eng.log(), "engine stopped cleanly")
finally:
    t.close()
