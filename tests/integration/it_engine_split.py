"""Two engines in one consumer group split the 8 partitions of it-eng-split and end with the
same state, alerts and dead letters as one engine alone.

One stream (mixed_stream) goes through the topic twice, under two customer-id suffixes: "r"
with one engine (the reference), then "s" with two engines of one group, started together and
settled (each holds some partitions, 8 between them) before the stream is produced, so that
each processes its own share. INTEGRAL_IT_SEED=N replays a run."""
import os
import random
import time

from engine_it import (LATENESS_MAX_MS, EngineTest, check, compare_alerts, compare_deadletters,
                       compare_states, log_claims, mixed_stream, owned_count, produce_tracked,
                       read_to_end, wait_applied, wait_engines)

EVENTS = 12000
seed = int(os.environ.get("INTEGRAL_IT_SEED") or random.SystemRandom().randrange(1, 10**6))
print("# seed %d (INTEGRAL_IT_SEED=%d replays this run)" % (seed, seed), flush=True)

t = EngineTest("split")
ENV = {"INTEGRAL_ENGINE_LATENESS_MS": LATENESS_MAX_MS}
try:
    stream = mixed_stream(seed, EVENTS, t.nonce)
    partitions = sorted(t.end_offsets(t.topic))

    # The reference: one engine.
    where_r = produce_tracked(t, stream.events("r"))
    ends_r = t.end_offsets(t.topic)
    eng = t.start_engine(ENV, tag="reference")
    wait_applied(t, ends_r, 180, "the reference run", [eng])
    t.stop_engine(eng)

    # Two engines in the group: started together, then settled before the stream comes.
    a = t.start_engine(ENV, wait_ready=False, tag="engine-a")
    b = t.start_engine(ENV, wait_ready=False, tag="engine-b")
    wait_engines(t, lambda: (owned_count(a) + owned_count(b) == len(partitions) and
                             owned_count(a) > 0 and owned_count(b) > 0 and a.ready() and
                             b.ready()),
                 90, "the two engines to split the partitions", [a, b])
    check(a.proc.poll() is None and b.proc.poll() is None, "both engines run")
    share = (owned_count(a), owned_count(b))
    check(share[0] > 0 and share[1] > 0 and sum(share) == len(partitions),
          "the group split the %d partitions between the two engines: %d + %d" %
          (len(partitions), share[0], share[1]))

    began = time.time()
    where_s = produce_tracked(t, stream.events("s"))
    ends_s = t.end_offsets(t.topic)
    wait_applied(t, ends_s, 180, "the split run", [a, b])
    print("# split run: %d events in %.1f s" % (EVENTS, time.time() - began), flush=True)
    # What each engine did, from its own metrics: both applied part of the stream.
    done = [e.metric("integral_engine_events_total") +
            e.metric("integral_engine_deadlettered_total") for e in (a, b)]
    claims = (log_claims(a), log_claims(b))
    print("# engine a claimed %s and handled %d messages; engine b claimed %s and handled %d" %
          (claims[0], done[0], claims[1], done[1]), flush=True)
    check(done[0] > 0 and done[1] > 0 and sum(done) >= EVENTS,
          "each engine handled its share of the %d messages (%d + %d)" %
          (EVENTS, done[0], done[1]))
    check(set(claims[0]) | set(claims[1]) == set(partitions) and claims[0] and claims[1],
          "each engine claimed partitions in Redis, all %d between them" % len(partitions))
    t.stop_engine(a)
    t.stop_engine(b)

    compare_states(t, stream, "r", where_r, "s", where_s)
    read_to_end(t, t.alerts_topic)
    compare_alerts(t, stream, "r", "s")
    compare_deadletters(t, stream, "r", "s")
finally:
    t.close()
