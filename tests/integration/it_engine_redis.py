"""Redis stalls under a running engine while events flow (topic it-eng-redis): the engine
reports not ready (/readyz 503), recovers, and the final state still equals that of an
undisturbed run - no event lost or applied twice - with the same alerts and dead letters.

The shared stack's Redis keeps no data on disk, so it is not stopped: CLIENT PAUSE 6000 ALL
(sent with redis-cli) stalls every client for 6 s, well past the engine's command timeout
(INTEGRAL_REDIS_COMMAND_TIMEOUT_MS=1000): its commands time out, it drops the connection and
reconnects, and re-reads its partitions from Redis's applied offsets.

One stream (mixed_stream) goes through the topic twice, under two customer-id suffixes: "r"
undisturbed (the reference), then "p" produced at a steady rate with the pause at ~30 % of
it. INTEGRAL_IT_SEED=N replays a run."""
import os
import random
import subprocess
import time

from engine_it import (LATENESS_MAX_MS, STACK, EngineTest, PacedProducer, check,
                       compare_alerts, compare_deadletters, compare_states, fail, mixed_stream,
                       produce_tracked, read_to_end, wait_applied, wait_engines)

EVENTS = 8000
RATE = 400  # events per second: the stream lasts ~20 s, the pause 6 s of it
PAUSE_MS = 6000
seed = int(os.environ.get("INTEGRAL_IT_SEED") or random.SystemRandom().randrange(1, 10**6))
print("# seed %d (INTEGRAL_IT_SEED=%d replays this run)" % (seed, seed), flush=True)

t = EngineTest("redis")
ENV = {"INTEGRAL_ENGINE_LATENESS_MS": LATENESS_MAX_MS}
# The disturbed run's engine gives Redis 1 s per command (the reference keeps the default).
STALL_ENV = dict(ENV, INTEGRAL_REDIS_COMMAND_TIMEOUT_MS="1000")


def readyz(eng):
    """The HTTP status of /readyz (0 when it does not answer)."""
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % eng.http_port,
                                    timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception:
        return 0


try:
    stream = mixed_stream(seed, EVENTS, t.nonce)

    # The reference: the stream under suffix "r", nothing disturbed.
    where_r = produce_tracked(t, stream.events("r"))
    eng = t.start_engine(ENV, tag="reference")
    wait_applied(t, t.end_offsets(t.topic), 180, "the reference run", [eng])
    t.stop_engine(eng)

    # The disturbed run: suffix "p", a live stream, Redis paused under the engine.
    eng = t.start_engine(STALL_ENV, tag="engine")
    producer = PacedProducer(t, stream.events("p"), RATE)
    writes_before = eng.metric("integral_engine_writes_total")
    wait_engines(t, lambda: producer.produced() >= 0.3 and
                 eng.metric("integral_engine_writes_total") > writes_before + 5,
                 60, "30 % of the stream, with the engine writing", [eng])
    check(readyz(eng) == 200, "the engine is ready before the pause")
    out = subprocess.run(["redis-cli", "-h", STACK["REDIS_HOST"], "-p", STACK["REDIS_PORT"],
                          "CLIENT", "PAUSE", str(PAUSE_MS), "ALL"],
                         capture_output=True, text=True, timeout=10).stdout.strip()
    paused_at = time.time()
    check(out == "OK", "redis-cli: CLIENT PAUSE %d ALL at %.0f %% of the stream" %
          (PAUSE_MS, producer.produced() * 100))
    statuses = []
    while time.time() < paused_at + PAUSE_MS / 1000.0 - 0.2:
        statuses.append(readyz(eng))
        if eng.proc.poll() is not None:
            fail("the engine exited %s during the pause:\n%s" %
                 (eng.proc.returncode, eng.log()[-3000:]))
        time.sleep(0.1)
    check(503 in statuses, "/readyz answered 503 while Redis was stalled (%d of %d polls)" %
          (statuses.count(503), len(statuses)))
    check(0 not in statuses, "the engine kept answering HTTP during the stall")
    wait_engines(t, lambda: readyz(eng) == 200, 60, "/readyz 200 after the pause", [eng])
    check(True, "/readyz answered 200 again %.1f s after the pause ended" %
          (time.time() - paused_at - PAUSE_MS / 1000.0))
    log = eng.log()
    check("redis: reconnecting (command timed out after 1000 ms)" in log,
          "the engine logged the command timeout and reconnected")
    check("re-reading it from Redis's applied offset" in log,
          "the engine re-read partitions from Redis's applied offsets")

    where_p = producer.result()
    wait_applied(t, t.end_offsets(t.topic), 180, "the run with the Redis stall", [eng])
    print("# write failures %d, load errors %d, duplicates skipped %d" %
          (eng.metric("integral_engine_write_failures_total"),
           eng.metric("integral_engine_load_errors_total"),
           eng.metric("integral_engine_duplicates_total")), flush=True)
    t.stop_engine(eng)
    check("AddressSanitizer" not in eng.log(), "the engine stopped cleanly (exit 0)")

    compare_states(t, stream, "r", where_r, "p", where_p)
    read_to_end(t, t.alerts_topic)
    compare_alerts(t, stream, "r", "p")
    compare_deadletters(t, stream, "r", "p")
finally:
    t.close()
