"""kill -9 of the engine in the middle of 20,000 events, then a restart: the final Redis state
equals that of an uninterrupted run, no alert is missing and none is extra (alerts re-sent on
replay share their id: reported, by design), and the same events were dead-lettered.

One stream (mixed_stream: contacts, sentiment, orders, payments, complaints, web visits,
surveys over ~800 customers, with duplicates and bad events) goes through topic it-eng-kill
twice, under two customer-id suffixes: "r" with one engine left alone (the reference), then
"k" with an engine SIGKILLed when Redis's applied offsets reach a random 30-50 % of the run,
and a new engine in the same group that resumes from Redis's applied offsets.
INTEGRAL_IT_SEED=N replays a run (the seed picks the stream and the kill point)."""
import os
import random
import re
import time

from engine_it import (LATENESS_MAX_MS, EngineTest, applied_offsets, applied_progress, check,
                       compare_alerts, compare_deadletters, compare_states, fail, mixed_stream,
                       produce_tracked, read_to_end, wait_applied)

EVENTS = 20000
seed = int(os.environ.get("INTEGRAL_IT_SEED") or random.SystemRandom().randrange(1, 10**6))
print("# seed %d (INTEGRAL_IT_SEED=%d replays this run)" % (seed, seed), flush=True)
kill_at = random.Random(seed).uniform(0.3, 0.5)

t = EngineTest("kill")
ENV = {"INTEGRAL_KAFKA_SESSION_TIMEOUT_MS": "3000",
       "INTEGRAL_ENGINE_LATENESS_MS": LATENESS_MAX_MS}
try:
    stream = mixed_stream(seed, EVENTS, t.nonce)

    # The reference: the stream under suffix "r", one engine, nothing disturbed.
    began = time.time()
    where_r = produce_tracked(t, stream.events("r"))
    ends_r = t.end_offsets(t.topic)
    eng = t.start_engine(ENV, tag="reference")
    wait_applied(t, ends_r, 240, "the reference run", [eng])
    t.stop_engine(eng)
    print("# reference run: %d events in %.1f s" % (EVENTS, time.time() - began), flush=True)

    # The disturbed run: the same stream under suffix "k"; SIGKILL mid-way, then a restart.
    where_k = produce_tracked(t, stream.events("k"))
    ends_k = t.end_offsets(t.topic)
    began = time.time()
    victim = t.start_engine(ENV, tag="killed")
    deadline = time.time() + 240
    while applied_progress(t, ends_r, ends_k) < kill_at:
        if victim.proc.poll() is not None or time.time() > deadline:
            fail("the engine did not reach %.0f %% of the run:\n%s" %
                 (kill_at * 100, victim.log()[-3000:]))
        time.sleep(0.02)
    t.kill_engine(victim)
    at_kill = applied_offsets(t)
    progress = applied_progress(t, ends_r, ends_k)
    check(victim.proc.returncode == -9, "engine killed with SIGKILL at %.0f %% of the run "
          "(target %.0f %%)" % (progress * 100, kill_at * 100))
    check(progress < 1.0 and any(at_kill[p] < ends_k[p] for p in ends_k),
          "it was killed while events were still to be applied")

    restarted = t.start_engine(ENV, tag="restarted")
    wait_applied(t, ends_k, 240, "the run after the restart", [restarted])
    # Where it resumed: Redis's applied offset of each partition, at or after what Redis
    # held when the victim died (a write the victim sent just before may land after).
    resumed = {int(p): int(o) for p, o in
               re.findall(r"partition (\d+) claimed \(epoch \d+\), resuming at offset (\d+)",
                          restarted.log())}
    check(sorted(resumed) == sorted(ends_k) and
          all(ends_r[p] <= at_kill[p] <= resumed[p] <= ends_k[p] for p in ends_k),
          "the restarted engine resumed every partition at Redis's applied offset %s" %
          [resumed.get(p) for p in sorted(ends_k)])
    t.stop_engine(restarted)
    print("# disturbed run: %d events in %.1f s" % (EVENTS, time.time() - began), flush=True)

    compare_states(t, stream, "r", where_r, "k", where_k)
    read_to_end(t, t.alerts_topic)
    compare_alerts(t, stream, "r", "k")
    compare_deadletters(t, stream, "r", "k")
finally:
    t.close()
