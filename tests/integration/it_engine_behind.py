"""A log that ends below the applied offset Redis holds (topic it-eng-behind, 1 partition).

Redis, not Kafka, says where a partition resumes. When the topic was recreated, or the
broker lost data, the log's offsets start again below the applied offset Redis holds, and
the engine skips every event below it (they look applied). That must not be silent: the
engine logs once per claim that the log ends below the applied offset, and counts the skips.
Made here by hand: after a first run, the partition's applied offset is set far beyond the
log's end while the engine is stopped."""
import json

from engine_it import EngineTest, check, event, wait_applied

t = EngineTest("behind")
try:
    eng = t.start_engine()
    cust = t.cid("c")
    t.produce([event("web.visited", cust, {"page": "/p%d" % i}) for i in range(3)])
    ends = t.end_offsets(t.topic)
    wait_applied(t, ends, 60, "the first events", [eng])
    before = t.doc(cust)
    check(before is not None and before["offset"] == ends[0] - 1,
          "3 events applied (document offset %s, log end %d)" %
          (before and before["offset"], ends[0]))
    t.stop_engine(eng)

    # -- Redis is ahead of the log: as after the topic was recreated --------------------
    applied_key = "{p:%s:0}:applied" % t.topic
    t.redis.set(applied_key, 1000000)
    eng = t.start_engine(tag="engine-behind")
    t.produce([event("complaint.filed", cust, {"category": "billing", "severity": "high"})])
    t.wait(lambda: eng.metric("integral_engine_skipped_total") >= 1, 30, "the event skipped")
    line = "Redis holds applied offset 1000000 but the log ends at %d" % (ends[0] + 1)
    t.wait(lambda: line in eng.log(), 10, "the log says the log ends below the applied offset")
    check(t.doc(cust) == before, "the skipped event changed nothing")
    t.produce([event("complaint.filed", cust, {"category": "billing", "severity": "low"})])
    t.wait(lambda: eng.metric("integral_engine_skipped_total") >= 2, 30, "a second skip")
    check(eng.log().count("but the log ends at") == 1, "said once per claim")
    t.stop_engine(eng)
finally:
    t.close()
