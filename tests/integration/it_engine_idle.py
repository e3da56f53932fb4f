"""An idle engine stays in its consumer group (topic it-eng-idle).

librdkafka leaves the group when the application has not polled for max.poll.interval.ms, and
io-events only wake the engine when a message arrives: an idle engine used to leave its group
every 5 minutes (the default), and its partitions were then re-claimed. Here the interval is
7 s (kafka.properties; it must not be below session.timeout.ms, 6 s) and the engine stays
idle for 20 s. It must keep every partition
without a new claim (the owner epochs in Redis are unchanged), log no revocation, and apply
an event produced afterwards at once."""
import datetime
import re
import time

from engine_it import EngineTest, check, event, now_utc

IDLE_S = 20

t = EngineTest("idle")
try:
    eng = t.start_engine({"INTEGRAL_KAFKA_PROPERTIES": "max.poll.interval.ms=7000"})
    cid = t.cid("idle")
    t.produce([event("web.visited", cid, {"page": "/"}, at=now_utc())])
    t.wait(lambda: t.doc(cid) is not None, 20, "the first event applied")
    partitions = sorted(t.end_offsets(t.topic))

    def owners():
        return [t.redis.get("{p:%s:%d}:owner" % (t.topic, p)) for p in partitions]

    before = owners()
    check(all(before), "every partition claimed: owner epochs %s" % before)
    log_before = eng.log()
    time.sleep(IDLE_S)
    after = owners()
    check(after == before, "after %d s idle (3 x max.poll.interval.ms) no partition was claimed "
          "again: owner epochs %s" % (IDLE_S, after))
    idle_log = eng.log()[len(log_before):]
    left = re.findall(r".*(?:revoked|lost|max\.poll|leaving group).*", idle_log, re.I)
    check(not left, "no revocation or leave in the log while idle%s" %
          ((": " + left[0][:200]) if left else ""))
    start = time.time()
    t.produce([event("payment.failed", cid, {"amount": 5},
                     at=now_utc() + datetime.timedelta(milliseconds=1))])
    t.wait(lambda: (t.doc(cid) or {}).get("counts", {}).get("failed_payments_30d") == 1, 10,
           "the event after the idle time applied")
    check(time.time() - start < 5, "and applied within %.1f s" % (time.time() - start))
    check(owners() == before, "still the same owners")
    t.stop_engine(eng)
finally:
    t.close()
