"""Redis comes back without the engine's last writes while the engine is idle (topic
it-eng-resync).

A Redis restarted from an AOF that lacks its last second (appendfsync everysec) has lost
writes the engine was told were done. When that happens while the engine is idle, no write
is in flight to fail, so nothing else would tell the engine: it re-syncs every partition
whenever its Redis connection comes back. The shared stack's Redis keeps no data on disk and
is not restarted here; the loss is made by hand: with the engine idle, the test deletes the
run's documents and the partitions' applied offsets, then kills the engine's connections
(CLIENT KILL ADDR, its sockets found in /proc). The engine must reconnect, replay the topic
from offset 0 and rebuild the same documents (timelines included), raising no alert with a
new id. Without the re-sync the documents stay gone."""
import json
import os
import random
import re

from engine_it import (LATENESS_MAX_MS, STACK, EngineTest, check, mixed_stream,
                       produce_tracked, read_to_end, run_docs, wait_applied)

EVENTS = 1500
seed = int(os.environ.get("INTEGRAL_IT_SEED") or random.SystemRandom().randrange(1, 10**6))
print("# seed %d (INTEGRAL_IT_SEED=%d replays this run)" % (seed, seed), flush=True)


def engine_redis_addrs(pid, redis_port):
    """The local addresses ("127.0.0.1:port") of pid's TCP connections to redis_port, from
    /proc: its socket inodes, matched in /proc/net/tcp."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    addrs = []
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            cols = line.split()
            local, remote, inode = cols[1], cols[2], cols[9]
            if inode in inodes and int(remote.split(":")[1], 16) == redis_port:
                addrs.append("127.0.0.1:%d" % int(local.split(":")[1], 16))
    return addrs


t = EngineTest("resync")
try:
    stream = mixed_stream(seed, EVENTS, t.nonce)
    eng = t.start_engine({"INTEGRAL_ENGINE_LATENESS_MS": LATENESS_MAX_MS})
    where = produce_tracked(t, stream.events("a"))
    ends = t.end_offsets(t.topic)
    wait_applied(t, ends, 120, "the stream", [eng])
    before = run_docs(t, stream, "a")
    ids_before = {json.loads(m.value())["id"] for m in read_to_end(t, t.alerts_topic)}
    check(all(before.values()) and len(before) >= 20 and ids_before,
          "%d events applied: %d documents, %d alerts" % (len(where), len(before),
                                                         len(ids_before)))

    def claims():
        return len(re.findall(r"partition \d+ claimed", eng.log()))

    claims_before = claims()

    # -- Redis "loses" the run's writes while the engine is idle ---------------------------
    applied = ["{p:%s:%d}:applied" % (t.topic, p) for p in ends]
    t.redis.delete(*applied, *["{c:%s}:%s" % (c, k) for c in stream.customers("a")
                               for k in ("state", "timeline")])
    check(all(d is None for d in run_docs(t, stream, "a").values()),
          "documents and applied offsets deleted")
    addrs = engine_redis_addrs(eng.proc.pid, int(STACK["REDIS_PORT"]))
    check(addrs, "the engine's Redis connections: %s" % addrs)
    for a in addrs:
        t.redis.execute_command("CLIENT", "KILL", "ADDR", a)

    # -- It reconnects, re-syncs and rebuilds ------------------------------------------------
    t.wait(lambda: run_docs(t, stream, "a") == before, 60, "the same documents rebuilt")
    wait_applied(t, ends, 60, "the replay", [eng])
    check("Redis reconnected" in eng.log(), "the re-sync after the reconnect logged")
    check(claims() >= claims_before + len(ends),
          "every partition claimed again after the reconnect (%d claims, %d before)" %
          (claims(), claims_before))
    after = [json.loads(m.value())["id"] for m in read_to_end(t, t.alerts_topic)]
    new_ids = set(after) - ids_before
    check(not new_ids, "no alert with a new id (%d alerts in all, %d ids)" %
          (len(after), len(set(after))))
    t.stop_engine(eng)
finally:
    t.close()
