"""The fenced write refuses a stale owner (topic it-eng-fence, 2 partitions).

End to end: while an engine owns the topic, the owner epoch of partition 0 is bumped behind
its back with redis-cli, as a new owner's claim would. The engine's next write of partition 0
is refused: it logs it, writes nothing for that partition (applied offset and documents
unchanged) while partition 1 goes on, and does not crash. After its pause it claims the
partition again and re-reads it from the applied offset: in the end the state and the alerts
equal those of an undisturbed run of the same stream. INTEGRAL_IT_SEED=N replays a run.
The writer alone (stale and later epochs, a claim landing between its WATCH and EXEC) is
tested against Redis in tests/integration/it_engine_store.c."""
import os
import random
import re
import subprocess
import time

from engine_it import (LATENESS_MAX_MS, STACK, EngineTest, check, compare_alerts,
                       compare_deadletters, compare_states, fail, mixed_stream,
                       produce_tracked, read_to_end, run_docs, wait_applied, wait_engines)

EVENTS = 3000
seed = int(os.environ.get("INTEGRAL_IT_SEED") or random.SystemRandom().randrange(1, 10**6))
print("# seed %d (INTEGRAL_IT_SEED=%d replays this run)" % (seed, seed), flush=True)

t = EngineTest("fence")
OWNER = "{p:%s:0}:owner" % t.topic
APPLIED = "{p:%s:0}:applied" % t.topic


def cli_lines(*args):
    """redis-cli, plain output (not a terminal): one line per reply element."""
    r = subprocess.run(["redis-cli", "-h", STACK["REDIS_HOST"], "-p", STACK["REDIS_PORT"]] +
                       list(args), capture_output=True, text=True, timeout=20)
    return r.stdout.strip().splitlines()


def claim_cli():
    """FCALL integral_claim of partition 0 with redis-cli: (epoch, applied offset text)."""
    lines = cli_lines("FCALL", "integral_claim", "2", OWNER, APPLIED)
    if len(lines) != 2:
        fail("redis-cli FCALL integral_claim: %r" % lines)
    return int(lines[0]), lines[1]


def metric_of_live(eng, name):
    """eng.metric(name); an engine that died meanwhile fails the test with its log."""
    try:
        return eng.metric(name)
    except OSError:
        try:
            eng.proc.wait(10)
        except subprocess.TimeoutExpired:
            raise
        fail("the engine died (exit %s) after its write was refused:\n%s" %
             (eng.proc.returncode, eng.log()[-4000:]))


ENV = {"INTEGRAL_ENGINE_LATENESS_MS": LATENESS_MAX_MS}
try:
    # -- End to end ----------------------------------------------------------------------
    stream = mixed_stream(seed, EVENTS, t.nonce)
    half = EVENTS // 2
    eng = t.start_engine(ENV, tag="engine")
    # The reference: the whole stream under suffix "r", undisturbed.
    where_r = produce_tracked(t, stream.events("r"))
    wait_applied(t, t.end_offsets(t.topic), 120, "the reference run", [eng])
    # The fenced run: suffix "f", first half, then the epoch bump, then the second half.
    where_f = produce_tracked(t, stream.events("f", 0, half))
    wait_applied(t, t.end_offsets(t.topic), 120, "the first half", [eng])
    epoch = int(t.redis.get(OWNER))
    bumped, applied0 = claim_cli()
    applied0 = int(applied0)
    snapshot = run_docs(t, stream, "f")
    check(bumped > epoch, "a new owner's claim bumped partition 0's epoch to %d behind the "
          "engine's back (applied offset %d)" % (bumped, applied0))

    rest = produce_tracked(t, stream.events("f", half))
    where_f += rest
    ends = t.end_offsets(t.topic)
    # Partition 0's customers (a customer's events all go to one partition).
    names0 = {name for (name, _e, _b), (p, _o) in zip(stream.items, where_f) if p == 0}
    touched0 = {stream.items[half + i][0] for i, (p, _o) in enumerate(rest) if p == 0}
    refused = re.compile(r"engine: partition 0: write refused \(FENCED[^)]*\)")
    wait_engines(t, lambda: refused.search(eng.log()) is not None, 60,
                 "the engine to log its refused write", [eng])
    check(True, "the engine logged the refusal: %s" % refused.search(eng.log()).group(0))
    check(metric_of_live(eng, "integral_engine_writes_fenced_total") >= 1,
          "the refusal is counted (integral_engine_writes_fenced_total)")
    check(metric_of_live(eng, "integral_engine_redis_transactions_total") >= 1,
          "transactions are counted (integral_engine_redis_transactions_total)")
    wait_applied(t, {1: ends[1]}, 60, "partition 1, which the engine still owns", [eng])
    check(True, "partition 1 went on: its applied offset reached its end (%d)" % ends[1])

    # Until the engine claims partition 0 again (after its pause), nothing of partition 0
    # may change: not the applied offset, not a document, not the owner.
    reclaim = re.compile(r"partition 0 claimed \(epoch %d\)" % (bumped + 1))
    samples = 0
    while not reclaim.search(eng.log()):
        now_applied = int(t.redis.get(APPLIED))
        owner = int(t.redis.get(OWNER))
        docs = run_docs(t, stream, "f")
        changed = [n for n in names0 if docs[n] != snapshot[n]]
        if reclaim.search(eng.log()):
            break  # it claimed meanwhile: this sample may see its writes
        if now_applied != applied0 or owner != bumped or changed:
            fail("the fenced engine wrote partition 0: applied %d (was %d), owner %d (was %d), "
                 "%d document(s) changed, e.g. %s" % (now_applied, applied0, owner, bumped,
                                                      len(changed), changed[:3]))
        if eng.proc.poll() is not None:
            fail("the engine exited %s:\n%s" % (eng.proc.returncode, eng.log()[-3000:]))
        samples += 1
        if samples > 600:
            fail("the engine never claimed partition 0 again")
        time.sleep(0.1)
    check(samples >= 10 and len(touched0) > 0,
          "while fenced, the engine wrote nothing for partition 0 (%d samples over the pause; "
          "%d of its customers had new events)" % (samples, len(touched0)))
    check(eng.proc.poll() is None, "the engine did not crash")

    wait_applied(t, ends, 120, "the fenced partition after the new claim", [eng])
    check(True, "after its pause it claimed partition 0 again (epoch %d) and caught up" %
          (bumped + 1))
    t.stop_engine(eng)

    compare_states(t, stream, "r", where_r, "f", where_f)
    read_to_end(t, t.alerts_topic)
    compare_alerts(t, stream, "r", "f")
    compare_deadletters(t, stream, "r", "f")
finally:
    t.close()
