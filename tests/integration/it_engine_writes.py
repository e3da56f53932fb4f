"""Every batch write holds its documents as of its own applied offset, under a backlog.

Were a document serialized later than its batch's last event (a later batch having changed
it meanwhile), a write could store a state ahead of the offset it stores with it, and a
crash right after it would skip the later events on restart - and the alerts they had not
delivered yet. Were a changed document left out of a write, its applied offset would move
past changes Redis does not hold. pipeline.c serializes documents when their write is sent;
a document a later batch changes moves to that batch, and the earlier batch then goes only
in one write with it (or, past a bound, the document is serialized into the earlier batch's
write at once). This test holds both sides.

4,000 events over 6 customers in 400 waves, each visit raising an alert (a rule added for
the test, cooldown 0): batches wait for their alerts' acknowledgements and for their
partition's write in flight, while later batches change the same customers. Redis MONITOR
sees every MSET; in each, every document's "offset" (its customer's last applied event)
must be below the partition's applied offset written with it, and once an applied offset is
written, every customer of the partition must have a document in Redis as of its last event
below that offset."""
import datetime
import json
import os
import re
import socket
import threading

from engine_it import (LATENESS_MAX_MS, SOURCE, EngineTest, check, event, fail,
                       now_utc, produce_tracked, wait_applied)

ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"')
ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b", b'"': b'"',
           b"\\": b"\\"}


def unquote(raw):
    """An argument as MONITOR prints it (sdscatrepr) back to its bytes."""
    out, i = bytearray(), 0
    while i < len(raw):
        c = raw[i:i + 1]
        if c != b"\\":
            out += c
            i += 1
        elif raw[i + 1:i + 2] == b"x":
            out.append(int(raw[i + 2:i + 4], 16))
            i += 4
        else:
            out += ESCAPES.get(raw[i + 1:i + 2], raw[i + 1:i + 2])
            i += 2
    return bytes(out)


class Monitor:
    """The MSET commands Redis executes, as argument lists, from a MONITOR connection."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port))
        self.sock.sendall(b"MONITOR\r\n")
        self.msets, self.buf, self.stopped = [], b"", False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopped:
            try:
                data = self.sock.recv(1 << 20)
            except OSError:
                return
            if not data:
                return
            self.buf += data
            *lines, self.buf = self.buf.split(b"\r\n")
            for line in lines:
                if b'] "MSET"' in line or b'] "mset"' in line:
                    args = [unquote(a) for a in ARG.findall(line.split(b"] ", 1)[1])]
                    self.msets.append(args[1:])

    def stop(self):
        self.stopped = True
        self.sock.close()
        self.thread.join(5)


t = EngineTest("writes")
try:
    mon = Monitor(t.redis.connection_pool.connection_kwargs["host"],
                  t.redis.connection_pool.connection_kwargs["port"])
    with open(os.path.join(SOURCE, "config/rules.json")) as f:
        rules = json.load(f)
    rules["rules"].append({
        "id": "every_visit", "on": ["web.visited"], "condition": "contacts_30d >= 0",
        "severity": "info", "title": "Visit", "message": "{contacts_30d}", "action": "None.",
        "cooldown_s": 0})
    rules_path = os.path.join(t.work, "rules.json")
    with open(rules_path, "w") as f:
        json.dump(rules, f, indent=2)
    eng = t.start_engine({"INTEGRAL_ENGINE_LATENESS_MS": LATENESS_MAX_MS,
                          "INTEGRAL_ENGINE_RULES_FILE": rules_path})
    customers = [t.cid("w%d" % i) for i in range(6)]
    start = now_utc() - datetime.timedelta(hours=2)
    events = []
    for n in range(4000):
        c = customers[n % len(customers)]
        at = start + datetime.timedelta(milliseconds=n)
        if n % 3 == 0:
            events.append(event("order.placed", c, {"order_id": "o%d" % n, "amount": 10.5,
                                                     "margin": 2.5, "currency": "EUR"}, at=at))
        else:
            events.append(event("web.visited", c, {"page": "/p/%d" % n, "intent": "compare"},
                                at=at))
    where = []
    for wave in range(0, len(events), 10):
        where += produce_tracked(t, events[wave:wave + 10])
    ends = {}
    for p, o in where:
        ends[p] = max(ends.get(p, 0), o + 1)
    wait_applied(t, ends, 120, "all 4000 events applied", engines=[eng])
    t.stop_engine(eng)
    mon.stop()

    prefix = ("{p:%s:" % t.topic).encode()
    ours = tuple(("{c:%s}:state" % c).encode() for c in customers)
    offsets = {}  # (partition, customer document key) -> its events' offsets, ascending
    for ev, (p, o) in zip(events, where):
        offsets.setdefault((p, ("{c:%s}:state" % ev["subject"]).encode()), []).append(o)
    stored = {}  # document key -> the "offset" of the last document written
    writes = checked = complete = 0
    for args in mon.msets:
        pairs = dict(zip(args[0::2], args[1::2]))
        applied_keys = [k for k in pairs if k.startswith(prefix) and k.endswith(b"}:applied")]
        if not applied_keys:
            continue
        check(len(applied_keys) == 1, "a write stores one applied offset: %r" % applied_keys)
        applied = int(pairs[applied_keys[0]])
        part = int(applied_keys[0][len(prefix):-len(b"}:applied")])
        docs = {k: json.loads(v) for k, v in pairs.items() if k in ours}
        writes += 1 if docs else 0
        for key, doc in docs.items():
            checked += 1
            stored[key] = doc["offset"]
            if doc["offset"] >= applied:
                fail("%s written at offset %d with the applied offset %d: the document is "
                     "ahead of its write" % (key.decode(), doc["offset"], applied))
        for (p, key), offs in offsets.items():
            below = [o for o in offs if o < applied]
            if p == part and below:
                complete += 1
                if stored.get(key, -1) < below[-1]:
                    fail("applied offset %d written for partition %d while %s is in Redis as "
                         "of offset %s, not %d: a write left it out" %
                         (applied, p, key.decode(), stored.get(key), below[-1]))
    check(writes >= 2 and checked >= len(customers),
          "MONITOR saw the writes (%d writes, %d documents)" % (writes, checked))
    check(complete >= len(customers),
          "after each write, Redis held every customer of its partition as of its last event "
          "below the applied offset (%d checks)" % complete)
    last = {}
    for ev, (_, offset) in zip(events, where):
        last[ev["subject"]] = max(last.get(ev["subject"], -1), offset)
    final = t.docs(customers)
    check(all(final[c] and final[c]["offset"] == last[c] for c in customers),
          "every document is in Redis as of its customer's last event")
    print("ok: %d writes, %d documents checked" % (writes, checked))
finally:
    t.close()
