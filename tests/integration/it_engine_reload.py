"""Rules reload without dropping events. The engine runs on a temporary rules file with one
rule, "probe": subscription.changed with mrr >= THRESHOLD alerts (cooldown 0), its title
naming the file's version. Each step sends probes (a new customer each, mrr just under and
over the threshold in force) and checks which alert and with which title:
  v1 >= 500 at start; SIGHUP with an unchanged file reloads it;
  v2 >= 200 written, then SIGHUP: the next event sees v2;
  v3 >= 1000 written, no signal: picked up by the engine's once-a-second poll within ~2 s;
  a JSON syntax error, and then an unknown feature in the condition: each refused with the
    file, line and column in the log, v3 stays in force (also across a SIGHUP);
  v4 >= 100 written: in force again.
Meanwhile a producer thread sends order.placed events (amount 1) to 4 customers without a
pause: every one of them must be applied (orders_12m and revenue_12m in Redis equal the
number sent)."""
import json
import os
import signal
import threading
import time

from confluent_kafka import Producer

from engine_it import EngineTest, check, event, fail, wait_applied

t = EngineTest("reload")
path = os.path.join(t.work, "rules.json")


def rules_text(version, condition):
    return json.dumps({"rules": [{
        "id": "probe",
        "on": ["subscription.changed"],
        "condition": condition,
        "severity": "info",
        "title": "probe %s: mrr {mrr:.0f}" % version,
        "message": "mrr {mrr:.0f}",
        "action": "none",
        "cooldown_s": 0}]}, indent=2) + "\n"


def write(text):
    with open(path, "w") as f:  # in place, as an editor or `cat >` would
        f.write(text)


def line_col(text, index):
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


class Steady(threading.Thread):
    """Produces order.placed (amount 1) round-robin to 4 customers until stopped."""

    def __init__(self):
        super().__init__(daemon=True)
        self.customers = [t.cid("steady%d" % i) for i in range(4)]
        self.stopping = threading.Event()
        self.sent = {c: 0 for c in self.customers}
        self.errors = []

    def run(self):
        p = Producer({"bootstrap.servers": t.brokers, "linger.ms": 5,
                      "enable.idempotence": True})

        def on_delivery(err, msg):
            if err is not None:
                self.errors.append(str(err))

        i = 0
        while not self.stopping.is_set():
            c = self.customers[i % 4]
            ev = event("order.placed", c, {"order_id": "o-%d" % i, "amount": 1,
                                           "currency": "EUR"})
            p.produce(t.topic, key=c, value=json.dumps(ev), on_delivery=on_delivery)
            self.sent[c] += 1
            i += 1
            p.poll(0)
            time.sleep(0.02)  # pacing: about 50 events a second
        if p.flush(60):
            self.errors.append("not flushed")


steady = Steady()
try:
    write(rules_text("v1", "mrr >= 500"))
    eng = t.start_engine(extra_env={"INTEGRAL_ENGINE_RULES_FILE": path})
    loaded = "rules: 1 loaded from %s" % path
    check(loaded in eng.log(), "engine started with the rules of %s" % path)
    steady.start()

    probes = {}  # customer -> (mrr, expected title or None)
    reported = set()
    mark = [0]

    def probe(mrr, title):
        c = t.cid("p%d" % (len(probes) + 1))
        probes[c] = (mrr, title)
        t.produce([event("subscription.changed", c, {"action": "upgraded", "mrr_delta": mrr})])
        return c

    def expect_probes(what):
        """Waits for every probe's alert so far; checks titles and that no other came."""
        want = {c: title for c, (_m, title) in probes.items() if title}
        t.wait(lambda: set(want) <= {a["customer_id"] for a in t.read_alerts(timeout=0)},
               30, "alerts of %s" % what)
        alerts = [a for a in t.read_alerts(expect=0, timeout=1, settle=1.0)
                  if a["customer_id"] in probes]
        got = {}
        for a in alerts:
            got.setdefault(a["customer_id"], []).append(a["title"])
        if got != {c: [title] for c, title in want.items()}:
            fail("%s: alerts %s, expected %s" % (what, got, want))
        step = [c for c in probes if c not in reported]
        reported.update(step)
        check(True, "%s: %s; no other alert" % (what, ", ".join(
            "mrr %d -> %s" % (probes[c][0], repr(probes[c][1]) if probes[c][1] else "none")
            for c in step)))

    def log_since():
        return eng.log()[mark[0]:]

    def set_mark():
        mark[0] = len(eng.log())

    def wait_since(needle, timeout=30, after=None):
        """Waits until the log since the mark holds needle (after the text `after`)."""
        def seen():
            log = log_since()
            if after is not None:
                if after not in log:
                    return False
                log = log[log.rindex(after):]
            return needle in log
        deadline = time.time() + timeout
        while not seen():
            if eng.proc.poll() is not None:
                fail("engine exited %s:\n%s" % (eng.proc.returncode, eng.log()[-3000:]))
            if time.time() > deadline:
                fail("no %r in the engine log within %d s; its rules lines:\n%s" % (
                    needle, timeout, "\n".join(x for x in log_since().splitlines()
                                               if "rules" in x or "SIGHUP" in x)))
            time.sleep(0.05)
        return log_since()

    # -- v1
    probe(300, None)
    probe(700, "probe v1: mrr 700")
    expect_probes("v1 (mrr >= 500)")

    # -- SIGHUP, file unchanged
    set_mark()
    eng.proc.send_signal(signal.SIGHUP)
    log = wait_since(loaded)
    check(log.index("SIGHUP: reloading") < log.index(loaded),
          "SIGHUP with an unchanged file reloads it")

    # -- v2 and SIGHUP: the next event sees it
    set_mark()
    write(rules_text("v2", "mrr >= 200"))
    eng.proc.send_signal(signal.SIGHUP)
    log = wait_since("SIGHUP: reloading")
    log = wait_since(loaded)
    check(True, "v2 written and SIGHUP: reloaded")
    probe(300, "probe v2: mrr 300")
    expect_probes("v2 (mrr >= 200) right after SIGHUP")
    # The poll sees the same change within a second or two: let that reload pass first, so
    # the next step measures its own.
    wait_since(loaded, timeout=10, after="rules: %s changed" % path)

    # -- v3, no signal: the poll picks it up
    set_mark()
    t0 = time.time()
    write(rules_text("v3", "mrr >= 1000"))
    log = wait_since(loaded, timeout=10)
    took = time.time() - t0
    check("SIGHUP" not in log and "rules: %s changed" % path in log,
          "v3 written, no signal: the file change was noticed")
    check(took < 3.5, "and reloaded within %.1f s (the engine polls each second)" % took)
    probe(700, None)
    probe(1200, "probe v3: mrr 1200")
    expect_probes("v3 (mrr >= 1000) after the poll")

    # -- a JSON syntax error: refused with file, line and column; v3 stays
    good = rules_text("v3", "mrr >= 1000")
    cut = good.index('"severity"') - 1
    while good[cut] != ",":
        cut -= 1
    broken = good[:cut] + good[cut + 1:]  # the comma after "condition": ... removed
    line, col = line_col(broken, broken.index('"severity"'))
    set_mark()
    write(broken)
    want = "rules: %s:%d:%d: invalid JSON; keeping the 1 rule(s) in force" % (path, line, col)
    wait_since(want, timeout=10)
    check(True, "a JSON syntax error is refused, logged with file:line:column (%d:%d)" %
          (line, col))
    set_mark()
    eng.proc.send_signal(signal.SIGHUP)
    wait_since(want, after="SIGHUP: reloading")
    check(eng.proc.poll() is None,
          "SIGHUP with the broken file: refused again, the engine runs on")
    probe(700, None)
    probe(1200, "probe v3: mrr 1200")
    expect_probes("the broken file ignored, v3 in force")

    # -- an unknown feature in the condition: refused with file, line and column; v3 stays
    bad = rules_text("v3", "mrr >= 0 && mrrr >= 100")
    line, col = line_col(bad, bad.index("mrrr"))
    set_mark()
    write(bad)
    want = ('rules: %s:%d:%d: rule probe: condition: unknown feature "mrrr"; keeping the 1 '
            'rule(s) in force' % (path, line, col))
    wait_since(want, timeout=10)
    check(True, "an unknown feature in a condition is refused, logged with file:line:column "
          "(%d:%d)" % (line, col))
    probe(1200, "probe v3: mrr 1200")
    expect_probes("the unknown feature ignored, v3 in force")

    # -- v4: good again
    set_mark()
    write(rules_text("v4", "mrr >= 100"))
    wait_since(loaded, timeout=10)
    probe(150, "probe v4: mrr 150")
    expect_probes("v4 (mrr >= 100) after the broken files")

    # -- no event dropped
    steady.stopping.set()
    steady.join(60)
    check(not steady.errors and sum(steady.sent.values()) > 100,
          "%d order events produced during the reloads" % sum(steady.sent.values()))
    wait_applied(t, t.end_offsets(t.topic), 60, "every event applied", [eng])
    docs = t.docs(steady.customers)
    bad_docs = {c: (d or {}).get("money", {}).get("orders_12m") for c, d in docs.items()
                if not d or d["money"]["orders_12m"] != steady.sent[c] or
                d["money"]["revenue_12m"] != steady.sent[c]}
    check(not bad_docs, "every one of them is applied: orders_12m and revenue_12m in Redis "
          "equal the number sent (%s)" % ", ".join(
              "%d" % steady.sent[c] for c in steady.customers))
    mrrs = {c: (t.doc(c) or {}).get("money", {}).get("mrr") for c in probes}
    check(all(mrrs[c] == m for c, (m, _tt) in probes.items()),
          "every probe applied (mrr in Redis)")
    n = sum(steady.sent.values()) + len(probes)
    check(eng.metric("integral_engine_events_total") == n,
          "integral_engine_events_total is %d: nothing lost, nothing twice" % n)
    t.stop_engine(eng)
    check("event loop not empty" not in eng.log(), "engine stopped cleanly")
finally:
    steady.stopping.set()
    t.close()
