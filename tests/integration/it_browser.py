"""The web UI in a real browser: Debian's chromium driven by playwright-core
(tests/browser/ui.test.mjs), against a real engine and a real gateway on the test stack.

This file owns the stack; the browser script owns the pages. The script asks for stack
operations with lines "@@ {json}" on its stdout and gets one JSON line back on its stdin:
  produce {step}          the events of one scenario step (below), with kcat
  raised {step, agent, customer, expect}   waits until the engine raised `expect` alerts
                          from the step's events (to agent, about customer); returns them
  gateway_stop / gateway_start   stop the gateway (SIGTERM), start it again, same instance
  feedback {alert_id, expect}    the feedback topic's messages for an alert, read with kcat
Checked (by the script, against what it sees in the pages and what this side returns):
  - alerts pop up on the right agent's page and not on another agent's; reasons in plain
    words, the suggested action; critical ones stay until acknowledged; the screen pop fills
    the customer panel; announcements in the ARIA live region; keyboard shortcuts;
  - ack and feedback from the page reach the feedback topic (read independently with kcat);
  - the wallboard shows the queue in the suggested order with badges and ticking waits, and
    follows contacts queued, answered and abandoned; the alert feed and its filters;
  - the gateway stops and starts again: the agent page reconnects by itself and shows the
    alerts raised meanwhile, once each; a notification and a chime for a critical alert while
    the tab is hidden; a reload resumes where the page was;
  - screenshots of both pages at 1366x768, with a real alert and a real queue, saved under
    BUILD/browser-artifacts/ (paths printed)."""
import datetime
import json
import os
import shutil
import subprocess
import sys
import time

from engine_it import SOURCE, STACK, EngineTest, check, event, fail, now_utc
from gateway_it import Gateway, kcat_produce

D = datetime.timedelta
BROWSER_DIR = os.path.join(SOURCE, "tests", "browser")
CHROMIUM = os.environ.get("INTEGRAL_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = os.path.join(os.path.dirname(os.path.abspath(STACK["IT_DIR"])), "browser-artifacts")

t = EngineTest("browser")
n = t.nonce
short = n[:4]
Q1, Q2 = "billing-" + short, "retention-" + short
A1, A2 = "A1-" + short, "A2-" + short
OTHERS = [("A3-" + short, "busy"), ("A4-" + short, "wrapup"), ("A5-" + short, "away")]
SUP = "S1-" + short


def cust(name):
    return "%s-%s" % (name, n)


def contact(name):
    return "k-%s-%s" % (name, n)


def queued(c, k, queue, channel, at, reason="billing"):
    return event("contact.queued", c, {"contact_id": k, "channel": channel, "queue": queue, "reason": reason}, at=at)


def scenario(step, now):
    """The events of one step; times relative to now."""
    ev = []
    if step == "setup":
        for agent, state in [(A1, "available"), (A2, "available")] + OTHERS:
            ev.append(event("agent.state", "agent:" + agent,
                            {"agent_id": agent, "state": state, "queues": [Q1, Q2]}, at=now - D(minutes=6)))
        # Ada: three support contacts this month, a delayed order, a complaint, a poor survey;
        # her fourth contact (queued) raises repeat_contact (critical) and order_problem.
        ada = cust("ada")
        ev.append(event("customer.profile", ada, {"name": "Ada Lovelace", "segment": "gold", "language": "en",
                                                  "since": "2019-04-01"}, at=now - D(days=100)))
        for i, (amount, margin) in enumerate(((900, 320), (650, 210), (420, 130))):
            ev.append(event("order.placed", ada, {"order_id": "o-%d-%s" % (i, short), "amount": amount,
                                                  "margin": margin, "currency": "EUR"}, at=now - D(days=200 - 60 * i)))
        ev.append(event("order.placed", ada, {"order_id": "o-7-" + short, "amount": 249.9, "margin": 61.2,
                                              "currency": "EUR"}, at=now - D(days=6)))
        ev.append(event("order.updated", ada, {"order_id": "o-7-" + short, "status": "delayed"}, at=now - D(days=1)))
        for i in range(3):
            at = now - D(days=3 + 6 * i)
            k = "old-%d-%s" % (i, n)
            ev += [queued(ada, k, Q1, "phone", at),
                   event("contact.started", ada, {"contact_id": k, "channel": "phone", "queue": Q1,
                                                  "agent_id": OTHERS[i][0]}, at=at + D(minutes=2)),
                   event("contact.ended", ada, {"contact_id": k, "duration_s": 300, "resolved": False,
                                                "wrapup": "callback promised"}, at=at + D(minutes=8))]
        ev.append(event("complaint.filed", ada, {"category": "delivery", "severity": "high"}, at=now - D(days=2)))
        ev.append(event("survey.answered", ada, {"csat": 2, "nps": 3}, at=now - D(days=2)))
        # Others waiting: Grace (tier A) in Q1 first by value, Alan (tier C) last; Edsger
        # (tier B, at risk) and Linus in Q2.
        for key, name, margin, ch, q, wait in (("grace", "Grace Hopper", 1600, "phone", Q1, 95),
                                               ("alan", "Alan Turing", 12, "chat", Q1, 50),
                                               ("edsger", "Edsger Dijkstra", 420, "phone", Q2, 140),
                                               ("linus", "Linus Pauling", 180, "email", Q2, 30)):
            c = cust(key)
            ev.append(event("customer.profile", c, {"name": name}, at=now - D(days=300)))
            ev.append(event("order.placed", c, {"order_id": "o-%s-%s" % (key, short), "amount": margin * 3,
                                                "margin": margin, "currency": "EUR"}, at=now - D(days=40)))
            if key == "edsger":
                ev += [event("complaint.filed", c, {"category": "billing", "severity": "high"}, at=now - D(days=5)),
                       event("payment.failed", c, {"amount": 49.9, "reason": "card expired"}, at=now - D(days=4)),
                       event("survey.answered", c, {"csat": 1, "nps": 0}, at=now - D(days=3))]
            ev.append(queued(c, contact(key), q, ch, now - D(seconds=wait), reason="question"))
        ev.append(queued(ada, contact("ada"), Q1, "phone", now - D(seconds=40)))
    elif step == "answer":
        # A1 answers Ada: the screen pop, with the alerts raised while she waited.
        ev.append(event("contact.started", cust("ada"), {"contact_id": contact("ada"), "channel": "phone",
                                                         "queue": Q1, "agent_id": A1}))
        ev.append(event("agent.state", "agent:" + A1, {"agent_id": A1, "state": "busy", "queues": [Q1, Q2]}))
    elif step == "live":
        # Ada turns negative on A1's call; Barbara reaches A2 directly and is unhappy too.
        bar = cust("barbara")
        ev.append(event("sentiment.sampled", cust("ada"), {"contact_id": contact("ada"), "score": -0.72}))
        ev.append(event("customer.profile", bar, {"name": "Barbara Liskov"}, at=now - D(days=30)))
        ev.append(event("contact.started", bar, {"contact_id": contact("barbara"), "channel": "chat", "agent_id": A2}))
        ev.append(event("sentiment.sampled", bar, {"contact_id": contact("barbara"), "score": -0.9}))
        ev.append(event("agent.state", "agent:" + A2, {"agent_id": A2, "state": "busy", "queues": [Q1, Q2]}))
    elif step == "abandon":
        ev.append(event("contact.abandoned", cust("alan"), {"contact_id": contact("alan"), "wait_s": 80}))
    elif step == "answer_q2":
        ev.append(event("contact.started", cust("linus"), {"contact_id": contact("linus"), "channel": "email",
                                                           "queue": Q2, "agent_id": OTHERS[0][0]}))
    elif step == "while_down":
        # While the gateway is down: Ada looks at the cancellation page during her call
        # (cancel_intent, critical, addressed to A1).
        ev.append(event("web.visited", cust("ada"), {"page": "/account/cancel", "intent": "cancel"}))
    else:
        fail("unknown scenario step " + step)
    return ev


produced = {}   # step -> event ids


def produce(step):
    evs = scenario(step, now_utc())
    kcat_produce(t.topic, evs)
    produced[step] = {e["id"] for e in evs}
    return {"events": len(evs)}


def raised(step, agent=None, customer=None, expect=1, timeout=30):
    """Alerts the engine raised from the events of step (read from the alerts topic), those
    addressed to agent and/or about customer when given: once there are `expect` of them."""
    ids = produced.get(step)
    if not ids:
        fail("step %s was not produced" % step)
    deadline = time.time() + timeout
    while True:
        alerts = [a for a in t.read_alerts(timeout=0.5) if a["event_id"] in ids]
        mine = [a for a in alerts if (agent is None or a["agent_id"] == agent) and
                (customer is None or a["customer_id"] == customer)]
        if len(mine) >= expect:
            return [{"id": a["id"], "rule": a["rule"], "severity": a["severity"], "customer_id": a["customer_id"]}
                    for a in mine]
        if time.time() > deadline:
            fail("step %s: %d alert(s) for %s after %d s, %d expected" % (step, len(mine), agent, timeout, expect))


def feedback(alert_id, expect, timeout=20):
    """The feedback topic's messages keyed alert_id, read with kcat from the beginning."""
    deadline = time.time() + timeout
    while True:
        out = subprocess.run(["kcat", "-C", "-b", STACK["KAFKA_BROKERS"], "-t", gw.feedback_topic, "-o", "beginning",
                              "-e", "-q", "-f", "%k\t%s\n"], capture_output=True, text=True, timeout=30)
        msgs = []
        for line in out.stdout.splitlines():
            key, _, value = line.partition("\t")
            if key == alert_id:
                msgs.append(json.loads(value))
        if len(msgs) >= expect or time.time() > deadline:
            return msgs
        time.sleep(0.3)


def ensure_browser():
    if not os.access(CHROMIUM, os.X_OK):
        fail("%s not found: install it with deploy/deps.sh --browser (Debian's chromium)" % CHROMIUM)
    if not shutil.which("node"):
        fail("node not found: install it with deploy/deps.sh --browser")
    marker = os.path.join(BROWSER_DIR, "node_modules", "playwright-core", "package.json")
    if not os.path.exists(marker):
        print("# tests/browser/node_modules is missing: npm ci", flush=True)
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BROWSER_DIR)
        if r.returncode != 0 or not os.path.exists(marker):
            fail("npm ci in tests/browser failed")


def run_browser(env):
    """Runs the browser script, answering its requests; returns its exit code."""
    proc = subprocess.Popen(["node", os.path.join(BROWSER_DIR, "ui.test.mjs")], cwd=BROWSER_DIR, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    try:
        for line in proc.stdout:
            if not line.startswith("@@ "):
                print(line, end="", flush=True)
                continue
            req = json.loads(line[3:])
            op = req.get("op")
            try:
                if op == "produce":
                    res = produce(req["step"])
                elif op == "raised":
                    res = raised(req["step"], req.get("agent"), req.get("customer"), req.get("expect", 1))
                elif op == "gateway_stop":
                    gw.stop()
                    res = {"stopped": True}
                elif op == "gateway_start":
                    gw.start()
                    res = {"started": True}
                elif op == "feedback":
                    res = feedback(req["alert_id"], req.get("expect", 1))
                else:
                    raise ValueError("unknown op %r" % op)
                answer = {"id": req["id"], "ok": True, "result": res}
            except SystemExit:
                proc.kill()
                raise
            except Exception as e:  # reported to the script, which fails with it
                answer = {"id": req["id"], "ok": False, "error": "%s: %s" % (type(e).__name__, e)}
            proc.stdin.write(json.dumps(answer) + "\n")
            proc.stdin.flush()
        return proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


gw = None
try:
    ensure_browser()
    os.makedirs(ARTIFACTS, exist_ok=True)
    eng = t.start_engine()
    gw = Gateway(t, instance="it-browser-" + short)
    gw.start()
    env = dict(os.environ)
    env.update({
        "BASE_URL": "http://127.0.0.1:%d" % gw.port,
        "CHROMIUM": CHROMIUM,
        "ARTIFACTS": ARTIFACTS,
        "AGENT_1": A1, "AGENT_2": A2, "QUEUE_1": Q1, "QUEUE_2": Q2, "NONCE": n,
        "TOKEN_1": gw.token(A1, ttl="1h"),
        "TOKEN_2": gw.token(A2, ttl="1h"),
        "TOKEN_SUP": gw.token(SUP, "supervisor", ttl="1h", queues=[Q1, Q2]),
        "CUSTOMER_ADA": cust("ada"), "CUSTOMER_BARBARA": cust("barbara"),
        "CONTACTS": json.dumps({k: contact(k) for k in ("ada", "grace", "alan", "edsger", "linus")}),
    })
    code = run_browser(env)
    check(code == 0, "the browser tests pass (node exited %s)" % code)
    gw.stop()
    t.stop_engine(eng)
finally:
    if gw:
        gw.kill()
    t.close()
