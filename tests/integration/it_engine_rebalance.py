"""A rebalance in the middle of the stream - a second engine joins the group, then the first
is stopped (SIGTERM) - ends with the same state, alerts and dead letters as one engine alone.

One stream (mixed_stream) goes through it-eng-rebalance twice, under two customer-id
suffixes: "r" with one engine (the reference), then "b" produced at a steady rate (a live
stream, not a backlog) while engine A runs alone, engine B joins at ~20 % of the stream (the
cooperative group moves some partitions to it), and A is stopped with SIGTERM once B holds
partitions (A's are handed over to B). INTEGRAL_IT_SEED=N replays a run."""
import os
import random
import time

from engine_it import (LATENESS_MAX_MS, EngineTest, PacedProducer, check,
                       compare_alerts, compare_deadletters, compare_states, fail, log_claims,
                       mixed_stream, owned_count, produce_tracked, read_to_end, wait_applied,
                       wait_engines)

EVENTS = 12000
RATE = 500  # events per second: the stream lasts ~24 s, through both rebalances
seed = int(os.environ.get("INTEGRAL_IT_SEED") or random.SystemRandom().randrange(1, 10**6))
print("# seed %d (INTEGRAL_IT_SEED=%d replays this run)" % (seed, seed), flush=True)

t = EngineTest("rebalance")
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

    # Engine A alone, the stream flowing.
    a = t.start_engine(ENV, tag="engine-a")
    check(owned_count(a) == len(partitions), "engine A holds all %d partitions" % len(partitions))
    began = time.time()
    producer = PacedProducer(t, stream.events("b"), RATE)
    wait_engines(t, lambda: producer.produced() >= 0.2, 60, "20 % of the stream", [a])

    # B joins: the group rebalances while events flow.
    b = t.start_engine(ENV, wait_ready=False, tag="engine-b")
    wait_engines(t, lambda: (owned_count(b) > 0 and b.ready() and
                             owned_count(a) + owned_count(b) == len(partitions)),
                 60, "engine B to take some partitions", [a, b])
    joined_at = producer.produced()
    share = (owned_count(a), owned_count(b))
    check(share[0] > 0 and share[1] > 0,
          "B joined at %.0f %% of the stream: A holds %d partitions, B %d" %
          (joined_at * 100, share[0], share[1]))
    # Both work on the stream for a moment before A goes: B applies some of its share.
    b_start = b.metric("integral_engine_events_total")
    wait_engines(t, lambda: b.metric("integral_engine_events_total") > b_start or
                 producer.produced() >= 1.0, 60, "engine B to apply events", [a, b])
    if producer.produced() >= 1.0:
        fail("the stream ended before A was stopped: raise EVENTS or lower RATE")

    # A stops (SIGTERM): drains, leaves the group; B takes A's partitions.
    stopped_at = producer.produced()
    t.stop_engine(a)
    check(True, "engine A stopped with SIGTERM at %.0f %% of the stream (exit 0)" %
          (stopped_at * 100))
    wait_engines(t, lambda: owned_count(b) == len(partitions), 60,
                 "engine B to hold every partition", [b])
    check(owned_count(b) == len(partitions) and producer.produced() < 1.0,
          "engine B holds all %d partitions while the stream still flows (%.0f %% produced)" %
          (len(partitions), producer.produced() * 100))

    where_b = producer.result()
    ends_b = t.end_offsets(t.topic)
    wait_applied(t, ends_b, 180, "the rebalanced run", [b])
    print("# rebalanced run: %d events in %.1f s; A claimed %s, B claimed %s" %
          (EVENTS, time.time() - began, log_claims(a), log_claims(b)), flush=True)
    t.stop_engine(b)

    compare_states(t, stream, "r", where_r, "b", where_b)
    read_to_end(t, t.alerts_topic)
    compare_alerts(t, stream, "r", "b")
    compare_deadletters(t, stream, "r", "b")
finally:
    t.close()
