"""The engine reports how long it held its consumer, and why (topic it-eng-held).

When too many events wait for their documents to load (engine.max_queued_events), the engine
pauses consumption until Redis answers; /metrics counts that time in
integral_engine_consumer_held_seconds{reason="loads"} (and, for writes waiting to be sent,
reason="writes"). An operator reads it as "the engine waits for Redis".

Made here: the engine runs with max_queued_events at its minimum (100); CLIENT PAUSE 4000 ALL
stalls Redis (the engine's command timeout stays 5 s, so nothing reconnects) while 400 events
of 400 new customers arrive, each needing a load. The held time must cover most of the pause,
and once Redis answers again every event is applied: holding loses nothing."""
import subprocess
import time

from engine_it import STACK, EngineTest, check, event, metric_series, now_utc, wait_applied

PAUSE_MS = 4000
CUSTOMERS = 400

t = EngineTest("held")
try:
    eng = t.start_engine({"INTEGRAL_ENGINE_MAX_QUEUED_EVENTS": "100",
                          "INTEGRAL_REDIS_COMMAND_TIMEOUT_MS": "5000"})
    held = metric_series(eng, "integral_engine_consumer_held_seconds")
    check(held == {'reason="loads"': 0.0, 'reason="writes"': 0.0},
          "a new engine was never held: %s" % held)

    out = subprocess.run(["redis-cli", "-h", STACK["REDIS_HOST"], "-p", STACK["REDIS_PORT"],
                          "CLIENT", "PAUSE", str(PAUSE_MS), "ALL"],
                         capture_output=True, text=True, timeout=10).stdout.strip()
    paused_at = time.time()
    check(out == "OK", "redis-cli: CLIENT PAUSE %d ALL" % PAUSE_MS)
    customers = [t.cid("h%d" % i) for i in range(CUSTOMERS)]
    t.produce([event("web.visited", c, {"page": "/held"}, at=now_utc()) for c in customers])
    produced_in = time.time() - paused_at
    check(produced_in < 2.0, "400 events of new customers produced %.2f s into the pause" %
          produced_in)

    def held_loads():
        return metric_series(eng, "integral_engine_consumer_held_seconds")['reason="loads"']

    t.wait(lambda: held_loads() > 0.5 or time.time() > paused_at + PAUSE_MS / 1000.0, 10,
           "the engine held for loads or the pause over")
    during = held_loads()
    check(during > 0.5 and time.time() < paused_at + PAUSE_MS / 1000.0,
          "held for loads while Redis is paused: %.2f s so far" % during)
    wait_applied(t, t.end_offsets(t.topic), 60, "every event after the pause", [eng])
    after = metric_series(eng, "integral_engine_consumer_held_seconds")
    expect = PAUSE_MS / 1000.0 - produced_in - 0.5
    check(after['reason="loads"'] >= expect,
          "held for loads %.2f s in all (the pause left %.2f s after the events arrived)" %
          (after['reason="loads"'], PAUSE_MS / 1000.0 - produced_in))
    check(after['reason="writes"'] == 0.0,
          "never held for writes: %.3f s" % after['reason="writes"'])
    missing = [c for c in customers if t.doc(c) is None]
    check(not missing, "all %d customers have a document after the pause (missing: %s)" %
          (CUSTOMERS, missing[:3]))
    t.stop_engine(eng)
finally:
    t.close()
