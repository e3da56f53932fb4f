"""engine_it.py - what the engine's black-box tests share (tests/integration/it_engine_*.py).

Run by ctest with Debian's /usr/bin/python3 (it has python3-confluent-kafka and
python3-redis). The shared stack (tests/support/stack.sh) gives a real redis-server and the
embedded Kafka; each test X owns the topics it-eng-X, it-eng-X-alerts, it-eng-X-dlq and
it-eng-X-assign, and uses customer ids with a per-run nonce so that runs never see each
other's state.

    from engine_it import *
    t = EngineTest("rules")
    eng = t.start_engine()
    t.produce([event("contact.queued", t.cid("c1"), {...}), ...])
    alerts = t.read_alerts(expect=1)
    t.stop_engine(eng)          # SIGTERM; asserts exit 0
"""
import datetime
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import redis
from confluent_kafka import Consumer, Producer, TopicPartition

ENV_FILE = os.environ["INTEGRAL_IT_ENV"]
BIN = os.environ["INTEGRAL_BIN_DIR"]
SOURCE = os.environ["INTEGRAL_SOURCE_DIR"]


def load_env():
    env = {}
    with open(ENV_FILE) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                env[k] = v
    return env


STACK = load_env()


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr, flush=True)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)
    print("ok - " + msg, flush=True)


def rfc3339(dt):
    return dt.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc)


def event(type_, subject, data=None, at=None, id_=None, source="/it"):
    """A CloudEvent (dict) of contract v1; at: a datetime (default: now)."""
    ev = {
        "specversion": "1.0",
        "id": id_ or "e-" + uuid.uuid4().hex,
        "source": source,
        "type": type_,
        "time": rfc3339(at or now_utc()),
        "subject": subject,
    }
    if data is not None:
        ev["data"] = data
    return ev


class Engine:
    def __init__(self, proc, http_port, log_path):
        self.proc = proc
        self.http_port = http_port
        self.log_path = log_path

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def metrics(self):
        import urllib.request
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.http_port, timeout=5) as r:
            return r.read().decode()

    def metric(self, name):
        """Sum of every series of a metric (0 when absent)."""
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def ready(self):
        import urllib.request
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % self.http_port, timeout=2) as r:
                return r.status == 200
        except Exception:
            return False


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class EngineTest:
    def __init__(self, name):
        self.name = name
        self.topic = "it-eng-" + name
        self.alerts_topic = self.topic + "-alerts"
        self.dlq_topic = self.topic + "-dlq"
        self.assign_topic = self.topic + "-assign"
        self.nonce = uuid.uuid4().hex[:8]
        self.group = "it-eng-%s-%s" % (name, self.nonce)
        self.brokers = STACK["KAFKA_BROKERS"]
        self.redis = redis.Redis(host=STACK["REDIS_HOST"], port=int(STACK["REDIS_PORT"]),
                                 decode_responses=True)
        self.work = os.path.join(STACK["IT_DIR"], "%s.%s" % (name, self.nonce))
        os.makedirs(self.work, exist_ok=True)
        self.producer = Producer({"bootstrap.servers": self.brokers, "linger.ms": 5,
                                  "enable.idempotence": True})
        self.engines = []
        # Alerts and dead letters are read from the offsets the topics had when the test
        # began: earlier runs against the same stack are not this run's.
        own = (self.alerts_topic, self.dlq_topic, self.assign_topic)
        self.start_offsets = {t: self.end_offsets(t) for t in own}
        self.seen = {t: [] for t in own}
        self.readers = {}

    def cid(self, name):
        """A customer id unique to this run."""
        return "%s-%s" % (name, self.nonce)

    # -- Kafka -------------------------------------------------------------------------
    def end_offsets(self, topic):
        c = Consumer({"bootstrap.servers": self.brokers, "group.id": "it-probe-" + uuid.uuid4().hex})
        md = c.list_topics(topic, timeout=10)
        ends = {}
        for p in md.topics[topic].partitions:
            ends[p] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        c.close()
        return ends

    def produce(self, events, key=None, raw=False):
        """events: dicts (JSON-encoded, key = subject) or, with raw=True, (key, bytes) pairs."""
        for ev in events:
            if raw:
                k, v = ev
                self.producer.produce(self.topic, key=k, value=v)
            else:
                self.producer.produce(self.topic, key=key or ev["subject"], value=json.dumps(ev))
            self.producer.poll(0)
        left = self.producer.flush(30)
        if left:
            fail("%d message(s) not delivered to %s" % (left, self.topic))

    def _reader(self, topic):
        if topic not in self.readers:
            c = Consumer({"bootstrap.servers": self.brokers, "group.id": "it-read-" + uuid.uuid4().hex,
                          "enable.auto.commit": False, "fetch.wait.max.ms": 10})
            c.assign([TopicPartition(topic, p, o) for p, o in self.start_offsets[topic].items()])
            self.readers[topic] = c
        return self.readers[topic]

    def read(self, topic, expect=None, timeout=30, settle=0.0):
        """All messages of topic since the test began: waits until there are `expect` of
        them (or `timeout`), then `settle` seconds more to catch any extra one."""
        c = self._reader(topic)
        deadline = time.time() + timeout
        settle_until = None
        while True:
            m = c.poll(0.1)
            if m is not None and not m.error():
                self.seen[topic].append(m)
                continue
            if expect is not None and len(self.seen[topic]) >= expect and settle_until is None:
                settle_until = time.time() + settle
            if settle_until is not None and time.time() >= settle_until:
                break
            if time.time() >= deadline:
                break
        return list(self.seen[topic])

    def read_alerts(self, expect=None, timeout=30, settle=0.0):
        return [json.loads(m.value()) for m in self.read(self.alerts_topic, expect, timeout, settle)]

    def read_assignments(self, expect=None, timeout=30, settle=0.0):
        return [json.loads(m.value()) for m in self.read(self.assign_topic, expect, timeout, settle)]

    def read_deadletters(self, expect=None, timeout=30, settle=0.0):
        out = []
        for m in self.read(self.dlq_topic, expect, timeout, settle):
            headers = {k: (v.decode() if v is not None else None) for k, v in (m.headers() or [])}
            out.append({"key": m.key(), "value": m.value(), "headers": headers})
        return out

    # -- Redis -------------------------------------------------------------------------
    def doc(self, customer_id):
        """The customer's document with its timeline list attached as "timeline" (newest
        first), as the gateway shows it; None when there is no document."""
        pipe = self.redis.pipeline()
        pipe.get("{c:%s}:state" % customer_id)
        pipe.lrange("{c:%s}:timeline" % customer_id, 0, -1)
        v, timeline = pipe.execute()
        return with_timeline(v, timeline)

    def docs(self, customer_ids):
        return {c: self.doc(c) for c in customer_ids}

    # -- The engine --------------------------------------------------------------------
    def start_engine(self, extra_env=None, wait_ready=True, tag=None):
        port = free_port()
        tag = tag or "engine%d" % len(self.engines)
        log_path = os.path.join(self.work, tag + ".log")
        env = dict(os.environ)
        env.update({
            "INTEGRAL_KAFKA_BROKERS": self.brokers,
            "INTEGRAL_KAFKA_SESSION_TIMEOUT_MS": "3000",
            "INTEGRAL_KAFKA_COMMIT_INTERVAL_MS": "200",
            "INTEGRAL_REDIS_HOST": STACK["REDIS_HOST"],
            "INTEGRAL_REDIS_PORT": STACK["REDIS_PORT"],
            "INTEGRAL_HTTP_PORT": str(port),
            "INTEGRAL_ENGINE_TOPIC": self.topic,
            "INTEGRAL_ENGINE_GROUP": self.group,
            "INTEGRAL_ENGINE_ALERTS_TOPIC": self.alerts_topic,
            "INTEGRAL_ENGINE_DEADLETTER_TOPIC": self.dlq_topic,
            "INTEGRAL_ENGINE_ASSIGNMENTS_TOPIC": self.assign_topic,
            "INTEGRAL_ENGINE_RULES_FILE": os.path.join(SOURCE, "config/rules.json"),
            "INTEGRAL_ENGINE_MODEL_FILE": os.path.join(SOURCE, "config/model.json"),
        })
        env.update(extra_env or {})
        with open(log_path, "w") as log:
            proc = subprocess.Popen([os.path.join(BIN, "integral-engine")], env=env,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        eng = Engine(proc, port, log_path)
        self.engines.append(eng)
        if wait_ready:
            self.wait(lambda: eng.ready() or proc.poll() is not None, 60, "engine ready")
            if proc.poll() is not None:
                fail("engine exited %s:\n%s" % (proc.returncode, eng.log()[-3000:]))
        return eng

    def stop_engine(self, eng, sig=signal.SIGTERM, expect_code=0, timeout=30):
        eng.proc.send_signal(sig)
        try:
            code = eng.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            eng.proc.kill()
            fail("engine did not stop within %d s:\n%s" % (timeout, eng.log()[-3000:]))
        if expect_code is not None and code != expect_code:
            fail("engine exited %d, not %d:\n%s" % (code, expect_code, eng.log()[-3000:]))
        return code

    def kill_engine(self, eng):
        eng.proc.kill()
        eng.proc.wait(10)

    def wait(self, cond, timeout, what):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if cond():
                return
            time.sleep(0.1)
        fail("timed out after %d s waiting for %s" % (timeout, what))

    def close(self):
        for eng in self.engines:
            if eng.proc.poll() is None:
                eng.proc.kill()
                eng.proc.wait(10)
        for c in self.readers.values():
            c.close()


# ==========================================================================================
# Same-state comparisons (it_engine_kill, _split, _rebalance, _redis): one event stream run
# twice on one topic, under two customer-id suffixes ("runs"), once undisturbed and once with
# the disturbance; then documents, alerts and dead letters are compared customer by customer.
# ==========================================================================================

# engine.lateness_ms at its maximum (one year): the stream's event times lie in the past
# (up to ~200 days back) and a live alert must not depend on when the test happens to run.
LATENESS_MAX_MS = "31536000000"


def _ms(dt):
    return int(dt.timestamp() * 1000)


def _from_ms(ms):
    return datetime.datetime.fromtimestamp(ms / 1000.0, datetime.timezone.utc)


class Stream:
    """A deterministic, realistic mix of customer events (mixed_stream). items[i] is
    (customer name, event without subject, bad); subject(name, run) makes a customer id.
    The same stream materialized for two runs differs only in the subjects: event ids,
    times, contact and order ids are the same, so alert ids (rule + event id) and the
    documents' internals ("w") are equal between runs."""

    def __init__(self, items, names, nonce):
        self.items = items
        self.names = names
        self.nonce = nonce

    def subject(self, name, run):
        return "%s-%s%s" % (name, self.nonce, run)

    def events(self, run, start=0, stop=None):
        out = []
        for name, ev, _bad in self.items[start:stop]:
            e = dict(ev)
            e["subject"] = self.subject(name, run)
            out.append(e)
        return out

    def customers(self, run):
        return {self.subject(n, run): n for n in self.names}


def mixed_stream(seed, n_events, nonce, end=None):
    """n_events events over about n_events / 30 customers, deterministic from seed.
    Kinds of customers:
      regular (~75 %): a profile, 0-3 contacts, 0-6 orders of 20-250 with updates, web visits,
        surveys, a subscription change; value stays under tier A (margin_12m + 5 orders
        < 1000), so no "timer" rule (vip_waiting: tier A and queued) can ever fire for them;
      frequent (~20 %): 4-7 support contacts in 30 days (queued -> started -> sentiment ->
        ended, some abandoned), complaints, failed payments, cancel intent, orders enough for
        tier B: repeat_contact, negative_sentiment, at_risk_high_value, cancel_intent,
        order_problem;
      vip (~5 %): tier A by large orders; their contacts start directly (never queued, never
        transferred to a queue), so vip_waiting - evaluated on the wall clock, which would
        make two runs differ - never applies; rising_value, cancel_intent.
    About 0.5 % of events are re-sent (same id, right after: duplicates the document must
    ignore) and 0.2 % are bad (sentiment score out of range: dead-lettered).
    Event times are in the past (up to ~200 days before `end`, default now - 2 min), so no
    event is "in the future" for the engine; run the engine with LATENESS_MAX_MS."""
    import random
    rng = random.Random(seed)
    end_ms = _ms(end or (now_utc() - datetime.timedelta(minutes=2)))
    end_ms -= end_ms % 1000
    day = 86400000
    per_customer = []
    names = []
    total = 0
    idx = 0
    channels = ["phone", "chat", "email"]
    queues = ["billing", "technical", "orders", "retention", "general"]
    support = ["billing", "technical", "support", "complaint"]
    other = ["sales", "question", "address change"]
    while total < n_events:
        kind = rng.random()
        kind = "vip" if kind < 0.05 else "frequent" if kind < 0.25 else "regular"
        name = ("partner:p%05d" if rng.random() < 0.03 else "c%05d") % idx
        idx += 1
        evs = []  # (time_ms, type, data)

        def t_in(days_back_max, days_back_min=0.0):
            return end_ms - int(rng.uniform(days_back_min, days_back_max) * day)

        evs.append((t_in(200, 190), "customer.profile",
                    {"name": "Customer %s" % name.split(":")[-1],
                     "segment": rng.choice(["consumer", "smb", "gold"]),
                     "language": rng.choice(["en", "de-CH", "fr"]),
                     "since": "20%02d-%02d-01" % (rng.randint(10, 24), rng.randint(1, 12))}))
        # Orders.
        if kind == "vip":
            n_orders, lo, hi = rng.randint(4, 8), 1500.0, 4000.0
        elif kind == "frequent":
            n_orders, lo, hi = rng.randint(3, 8), 100.0, 250.0
        else:
            n_orders, lo, hi = rng.randint(0, 6), 20.0, 250.0
        for o in range(n_orders):
            at = t_in(180, 0.2)
            data = {"order_id": "o-%d-%d" % (idx, o), "amount": round(rng.uniform(lo, hi), 2),
                    "currency": "EUR"}
            if rng.random() < 0.3:
                data["margin"] = round(data["amount"] * rng.uniform(0.1, 0.4), 2)
            evs.append((at, "order.placed", data))
            for status in rng.choice([[], ["shipped"], ["shipped", "delivered"], ["delayed"],
                                      ["out_of_stock"], ["shipped", "delayed"], ["cancelled"],
                                      ["shipped", "delivered", "returned"]]):
                at += int(rng.uniform(0.1, 3) * day)
                if at < end_ms:
                    evs.append((at, "order.updated", {"order_id": data["order_id"],
                                                      "status": status}))
        # Contacts.
        n_contacts = {"vip": rng.randint(1, 3), "frequent": rng.randint(4, 7),
                      "regular": rng.randint(0, 3)}[kind]
        for k in range(n_contacts):
            at = t_in(28 if kind == "frequent" else 60, 0.01)
            cid = "k-%d-%d" % (idx, k)
            channel = rng.choice(channels)
            queue = rng.choice(queues)
            reason = rng.choice(support if kind == "frequent" or rng.random() < 0.4 else other)
            agent = "a-%02d" % rng.randint(1, 40)
            if kind != "vip":
                evs.append((at, "contact.queued", {"contact_id": cid, "channel": channel,
                                                   "queue": queue, "reason": reason}))
                if rng.random() < 0.15:
                    evs.append((at + rng.randint(20, 300) * 1000, "contact.abandoned",
                                {"contact_id": cid, "wait_s": rng.randint(20, 300)}))
                    continue
                at += rng.randint(10, 400) * 1000
            data = {"contact_id": cid, "channel": channel, "agent_id": agent, "reason": reason}
            if kind != "vip":
                data["queue"] = queue
            evs.append((at, "contact.started", data))
            mood = rng.uniform(-1, 0.3) if kind == "frequent" else rng.uniform(-0.4, 1)
            for s in range(rng.randint(0, 4)):
                at += rng.randint(15, 90) * 1000
                score = max(-1.0, min(1.0, round(mood + rng.uniform(-0.3, 0.3), 3)))
                evs.append((at, "sentiment.sampled", {"contact_id": cid, "score": score}))
            if kind != "vip" and rng.random() < 0.1:
                at += rng.randint(30, 120) * 1000
                evs.append((at, "contact.transferred",
                             {"contact_id": cid, "to_agent_id": "a-%02d" % rng.randint(1, 40)}))
            at += rng.randint(60, 900) * 1000
            evs.append((at, "contact.ended", {"contact_id": cid,
                                              "duration_s": rng.randint(60, 1800),
                                              "resolved": rng.random() < 0.6,
                                              "wrapup": rng.choice(["refund", "explained",
                                                                    "escalated", "callback"])}))
        # Everything else.
        for _ in range(rng.randint(2, 3) if kind == "frequent" else rng.randint(0, 1)):
            evs.append((t_in(80), "complaint.filed",
                        {"category": rng.choice(["billing", "delivery", "service"]),
                         "severity": rng.choice(["low", "medium", "high", "critical"])}))
        for _ in range(rng.randint(1, 2) if kind == "frequent" else
                       (1 if rng.random() < 0.15 else 0)):
            evs.append((t_in(25), "payment.failed",
                        {"amount": round(rng.uniform(10, 200), 2), "reason": "card_declined"}))
        for _ in range(rng.randint(1, 4)):
            intent = rng.choice(["cancel"] if kind != "regular" and rng.random() < 0.5 else
                                ["compare", "upgrade", "support"])
            data = {"page": "/account/%s" % intent}
            if rng.random() < 0.8:
                data["intent"] = intent
            evs.append((t_in(40), "web.visited", data))
        if rng.random() < 0.5:
            evs.append((t_in(50), "survey.answered",
                        {"csat": rng.randint(1, 5), "nps": rng.randint(0, 10)}))
        if rng.random() < 0.3:
            action = rng.choice(["upgraded", "downgraded", "renewed", "cancel_requested"])
            evs.append((t_in(50), "subscription.changed",
                        {"action": action, "mrr_delta": rng.choice([-20, -5, 0, 10, 30])}))
        evs.sort(key=lambda e: e[0])
        # A few arrive out of order (an older event after a newer one).
        for i in range(1, len(evs)):
            if rng.random() < 0.03:
                evs[i - 1], evs[i] = evs[i], evs[i - 1]
        items = []
        for at, type_, data in evs:
            bad = type_ == "sentiment.sampled" and rng.random() < 0.05
            if bad:
                data = dict(data, score=2.5)  # out of [-1, 1]: dead-lettered as bad_data
            ev = {"specversion": "1.0", "id": "e-%d-%07d" % (seed, len(items) + total),
                  "source": "/it/%s" % type_.split(".")[0], "type": type_,
                  "time": rfc3339(_from_ms(at)), "data": data}
            items.append((name, ev, bad))
            if not bad and rng.random() < 0.005:
                items.append((name, ev, False))  # re-sent by its producer: a duplicate
        per_customer.append(items)
        names.append(name)
        total += len(items)
    # Interleave the customers at random, each customer's events staying in order.
    order = [i for i, items in enumerate(per_customer) for _ in items]
    rng.shuffle(order)
    pos = [0] * len(per_customer)
    out = []
    for i in order[:n_events]:
        out.append(per_customer[i][pos[i]])
        pos[i] += 1
    return Stream(out, names, nonce)


def produce_tracked(t, events):
    """Produces events (key = subject) to t.topic; returns their (partition, offset), in
    order, from the delivery reports."""
    return produce_raw_tracked(t, [(ev["subject"], json.dumps(ev)) for ev in events])


_partitions = {}  # topic -> its partition numbers


def applied_offsets(t, topic=None):
    """{partition: next offset to apply} from Redis ({p:TOPIC:N}:applied; -1 when absent)."""
    topic = topic or t.topic
    if topic not in _partitions:
        _partitions[topic] = sorted(t.end_offsets(topic))
    parts = _partitions[topic]
    pipe = t.redis.pipeline()
    for p in parts:
        pipe.get("{p:%s:%d}:applied" % (topic, p))
    return {p: int(v) if v is not None else -1 for p, v in zip(parts, pipe.execute())}


def applied_progress(t, start, ends):
    """Fraction of the messages between start and ends ({partition: offset}) applied."""
    applied = applied_offsets(t)
    total = sum(ends[p] - start.get(p, 0) for p in ends)
    done = sum(max(0, min(applied[p], ends[p]) - start.get(p, 0)) for p in ends if p in applied)
    return done / total if total else 1.0


def _engine_gauges(eng):
    """The engine's pipeline metrics, for a failure message."""
    if eng.proc.poll() is not None:
        return ""
    try:
        lines = [l for l in eng.metrics().splitlines()
                 if l.startswith("integral_engine_") and not l.startswith("integral_engine_events")
                 and "_bucket" not in l]
    except Exception as e:
        return "(metrics: %s)" % e
    return "--- metrics\n" + "\n".join(lines) + "\n"


def wait_applied(t, ends, timeout, what, engines=()):
    """Waits until Redis's applied offsets reach ends ({partition: offset}); fails with the
    engines' log tails on timeout or when one of them exits. Fails at once when an applied
    offset goes backwards (it never may: every write moves it forward), and when the running
    engines sit idle (nothing queued or in flight, no consumer lag) for 5 s with offsets
    still behind: no event is left to move them."""
    deadline = time.time() + timeout
    high = {}
    idle_since, idle_high = None, {}
    next_idle_check = time.time() + 1

    def tails():
        return "".join("\n--- %s\n%s%s" % (e.log_path, e.log()[-2500:], _engine_gauges(e))
                       for e in engines)

    while time.time() < deadline:
        applied = applied_offsets(t)
        back = {p: (high[p], v) for p, v in applied.items() if v < high.get(p, -1)}
        if back:
            fail("%s: an applied offset went backwards {partition: (was, now)}: %s%s" %
                 (what, back, tails()))
        for p, v in applied.items():
            high[p] = max(v, high.get(p, -1))
        if all(applied.get(p, -1) >= e for p, e in ends.items() if e > 0):
            return
        for eng in engines:
            if eng.proc.poll() is not None:
                fail("engine exited %s while waiting for %s:\n%s" %
                     (eng.proc.returncode, what, eng.log()[-3000:]))
        if engines and time.time() >= next_idle_check:
            next_idle_check = time.time() + 1
            try:
                idle = all(e.metric("integral_engine_in_flight") == 0 and
                           e.metric("integral_engine_queued_events") == 0 and
                           e.metric("integral_engine_consumer_lag") == 0 for e in engines)
            except Exception:
                idle = False
            if not idle or idle_since is None or high != idle_high:
                idle_since = time.time() if idle else None
                idle_high = dict(high)
            elif time.time() - idle_since >= 5:
                fail("%s: the engine(s) sit idle (nothing queued or in flight, no lag) with "
                     "applied offsets behind the ends: applied %s, ends %s%s" %
                     (what, applied, ends, tails()))
        time.sleep(0.1)
    fail("timed out after %d s waiting for %s: applied %s, ends %s%s" %
         (timeout, what, applied_offsets(t), ends, tails()))


def read_to_end(t, topic, timeout=60):
    """Every message of topic since the test began, up to its end offsets as of now."""
    ends = t.end_offsets(topic)
    start = t.start_offsets[topic]
    c = t._reader(topic)
    deadline = time.time() + timeout

    def missing():
        seen = {}
        for m in t.seen[topic]:
            seen[m.partition()] = max(seen.get(m.partition(), -1), m.offset())
        return {p: e for p, e in ends.items() if e > start.get(p, 0) and seen.get(p, -1) < e - 1}

    while missing():
        if time.time() > deadline:
            fail("%s: not read to its end within %d s: %s" % (topic, timeout, missing()))
        m = c.poll(0.2)
        if m is not None and not m.error():
            t.seen[topic].append(m)
    return list(t.seen[topic])


def with_timeline(doc_text, timeline):
    """A document (JSON text or None) with its timeline list's entries as "timeline"."""
    if doc_text is None:
        if timeline:
            fail("a timeline without a document: %s" % timeline[:2])
        return None
    doc = json.loads(doc_text)
    doc["timeline"] = [json.loads(e) for e in timeline]
    return doc


def run_docs(t, stream, run):
    """{customer name: document (with its timeline) or None} of one run."""
    subjects = stream.customers(run)
    pipe = t.redis.pipeline()
    order = list(subjects)
    for s in order:
        pipe.get("{c:%s}:state" % s)
        pipe.lrange("{c:%s}:timeline" % s, 0, -1)
    replies = pipe.execute()
    return {subjects[s]: with_timeline(replies[2 * i], replies[2 * i + 1])
            for i, s in enumerate(order)}


def expected_offsets(stream, where, start=0):
    """{customer name: Kafka offset of its last applied event} for a run produced with
    produce_tracked (where[i] for stream item start + i): bad events and re-sent duplicates
    are not applied and leave the document's "offset" where it was."""
    last = {}
    seen_ids = {}
    for (name, ev, bad), (_p, off) in zip(stream.items[start:], where):
        if bad or ev["id"] in seen_ids.setdefault(name, set()):
            continue
        seen_ids[name].add(ev["id"])
        last[name] = off
    return last


def comparable(doc, name, offset):
    """The document with what legitimately differs between two runs of one stream replaced:
      "id"     the customer id, which carries the run's suffix: replaced by the name, and
               checked to be the run's subject by the caller;
      "offset" the Kafka offset of the customer's last applied event, which depends on where
               the run's events landed in the topic: checked here against the delivery
               report of that event, then removed.
    Nothing else differs: event, contact and order ids and every event time are the same in
    both runs, so "w" (event id hashes, contact hashes, ages, rule firings in event time)
    must be byte for byte equal. The document's "partner" follows the name."""
    if doc is None:
        return None
    d = dict(doc)
    if d.get("offset") != offset:
        return {"offset mismatch": (d.get("offset"), offset)}
    d["id"] = name
    del d["offset"]
    return d


def compare_states(t, stream, ref_run, ref_where, run, run_where, start=0):
    """Checks that every customer's document of `run` equals that of `ref_run` (see
    comparable); where lists come from produce_tracked of each run's events."""
    ref_docs = run_docs(t, stream, ref_run)
    docs = run_docs(t, stream, run)
    ref_off = expected_offsets(stream, ref_where, start)
    off = expected_offsets(stream, run_where, start)
    bad = []
    n = 0
    for name in stream.names:
        if ref_docs[name] is not None:
            n += 1
            if ref_docs[name]["id"] != stream.subject(name, ref_run):
                bad.append((name, "reference id", ref_docs[name]["id"]))
        if docs[name] is not None and docs[name]["id"] != stream.subject(name, run):
            bad.append((name, "id", docs[name]["id"]))
        a = comparable(ref_docs[name], name, ref_off.get(name))
        b = comparable(docs[name], name, off.get(name))
        if a != b:
            if a is None or b is None or "offset mismatch" in a or "offset mismatch" in b:
                bad.append((name, a if (a is None or "offset mismatch" in (a or {})) else "doc",
                            b if (b is None or "offset mismatch" in (b or {})) else "doc"))
            else:
                keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                bad.append((name, keys, {k: (a.get(k), b.get(k)) for k in keys[:2]}))
    for b in bad[:5]:
        print("  differs: %s" % (b,), file=sys.stderr)
    check(n > 0 and not bad, "%d of %d customers' documents equal those of the undisturbed run "
          "(%d differ)" % (len(stream.names) - len(bad), len(stream.names), len(bad)))


def alerts_of(t, stream, run):
    """{alert id: [alerts]} of one run's customers, from the alerts topic read to its end."""
    subjects = stream.customers(run)
    out = {}
    for m in t.seen[t.alerts_topic]:
        a = json.loads(m.value())
        if a["customer_id"] in subjects:
            out.setdefault(a["id"], []).append(a)
    return out


def compare_alerts(t, stream, ref_run, run):
    """The set of alert ids of `run` equals that of `ref_run`, each id for the same (rule,
    customer, event); an id delivered twice (a batch replayed after its alerts were
    acknowledged) is by design and only reported. Call read_to_end(t, t.alerts_topic) first.
    Returns (reference alerts by id, run alerts by id)."""
    ref = alerts_of(t, stream, ref_run)
    got = alerts_of(t, stream, run)
    ref_names = stream.customers(ref_run)
    names = stream.customers(run)

    def what(alerts, subjects):
        a = alerts[0]
        return (a["rule"], subjects[a["customer_id"]], a["event_id"])

    missing = sorted(set(ref) - set(got))
    extra = sorted(set(got) - set(ref))
    differ = [i for i in set(ref) & set(got)
              if what(ref[i], ref_names) != what(got[i], names)]
    inconsistent = [i for i, al in got.items() if len({what([a], names) for a in al}) > 1]
    rules = {}
    for al in ref.values():
        rules[al[0]["rule"]] = rules.get(al[0]["rule"], 0) + 1
    print("# reference alerts by rule: %s" % json.dumps(rules, sort_keys=True), flush=True)
    check(len(ref) >= 20 and len(rules) >= 4,
          "the undisturbed run raised %d alerts of %d rules" % (len(ref), len(rules)))
    check("vip_waiting" not in rules and not any(a[0]["rule"] == "vip_waiting"
                                                 for a in got.values()),
          "no wall-clock (timer) alert in either run: the comparison is deterministic")
    for i in missing[:5]:
        print("  missing: %s" % (what(ref[i], ref_names),), file=sys.stderr)
    for i in extra[:5]:
        print("  extra: %s" % (what(got[i], names),), file=sys.stderr)
    check(not missing, "no alert missing (%d of %d ids)" % (len(ref) - len(missing), len(ref)))
    check(not extra, "no alert beyond the undisturbed run's (%d extra)" % len(extra))
    check(not differ and not inconsistent,
          "each alert id stands for the same (rule, customer, event) in both runs")
    dups = {i: len(al) for i, al in got.items() if len(al) > 1}
    ref_dups = {i: len(al) for i, al in ref.items() if len(al) > 1}
    print("# duplicates by id (same id delivered again, by design on replay): %d id(s), "
          "%d extra deliveries; undisturbed run: %d id(s)" %
          (len(dups), sum(dups.values()) - len(dups), len(ref_dups)), flush=True)
    return ref, got


def compare_deadletters(t, stream, ref_run, run):
    """The same events were dead-lettered in both runs (as a set; replays may repeat one)."""
    read_to_end(t, t.dlq_topic)
    sets = {}
    for r in (ref_run, run):
        subjects = stream.customers(r)
        ids = set()
        for m in t.seen[t.dlq_topic]:
            try:
                ev = json.loads(m.value())
            except ValueError:
                continue
            if ev.get("subject") in subjects:
                ids.add(ev["id"])
        sets[r] = ids
    expected = {ev["id"] for _n, ev, bad in stream.items if bad}
    check(sets[ref_run] == expected and sets[run] == expected,
          "the %d bad events were dead-lettered in both runs" % len(expected))


def log_claims(eng):
    """Partitions an engine claimed, from its log ("partition N claimed")."""
    import re
    return sorted({int(m) for m in re.findall(r"partition (\d+) claimed", eng.log())})


# ==========================================================================================
# Helpers of it_engine_rules, _deadletter, _replay and _reload.
# ==========================================================================================

def alert_id(rule_id, event_id):
    """The alert id the engine must give (rule, event): the first 16 bytes of
    SHA-256(rule id, NUL, event id) in hex (rules.h, rules_alert_id)."""
    import hashlib
    return hashlib.sha256(rule_id.encode() + b"\0" + event_id.encode()).hexdigest()[:32]


def metric_series(eng, name):
    """{labels text ('' when none): value} of every series of one metric."""
    out = {}
    for line in eng.metrics().splitlines():
        if line.startswith(name + " "):
            out[""] = float(line.rsplit(" ", 1)[1])
        elif line.startswith(name + "{"):
            labels, value = line[len(name) + 1:].rsplit(" ", 1)
            out[labels.rstrip("}")] = float(value)
    return out


def produce_raw_tracked(t, pairs, topic=None):
    """Produces (key, value) pairs as given (bytes, str or None: a null key or value) to
    topic (default t.topic); returns their (partition, offset), in order."""
    topic = topic or t.topic
    where = [None] * len(pairs)
    errors = []

    def report(i):
        def on_delivery(err, msg):
            if err is not None:
                errors.append(str(err))
            else:
                where[i] = (msg.partition(), msg.offset())
        return on_delivery

    for i, (k, v) in enumerate(pairs):
        while True:
            try:
                t.producer.produce(topic, key=k, value=v, on_delivery=report(i))
                break
            except BufferError:  # the producer's queue is full: let deliveries drain
                t.producer.poll(0.1)
        t.producer.poll(0)
    left = t.producer.flush(60)
    if left or errors or None in where:
        fail("produce to %s: %d left, errors %s" % (topic, left, errors[:3]))
    return where


def fetch_at(t, topic, partition, offset, timeout=15):
    """The message at (topic, partition, offset), or None."""
    c = Consumer({"bootstrap.servers": t.brokers, "group.id": "it-fetch-" + uuid.uuid4().hex,
                  "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, partition, offset)])
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = c.poll(0.2)
            if m is not None and not m.error():
                return m if m.offset() == offset else None
        return None
    finally:
        c.close()


class PacedProducer:
    """Produces events (key = subject) to t.topic from a thread at about `rate` events per
    second, in chunks, so that the engine works on a live stream while a test disturbs it.
    produced() says how many were handed to the producer; result() waits for the end and
    returns every event's (partition, offset), in order."""

    def __init__(self, t, events, rate, chunk=50):
        import threading
        self.t = t
        self.events = events
        self.rate = rate
        self.chunk = chunk
        self.where = [None] * len(events)
        self.errors = []
        self.count = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _report(self, i):
        def on_delivery(err, msg):
            if err is not None:
                self.errors.append(str(err))
            else:
                self.where[i] = (msg.partition(), msg.offset())
        return on_delivery

    def _run(self):
        p = self.t.producer
        began = time.time()
        for i, ev in enumerate(self.events):
            while True:
                try:
                    p.produce(self.t.topic, key=ev["subject"], value=json.dumps(ev),
                              on_delivery=self._report(i))
                    break
                except BufferError:
                    p.poll(0.1)
            self.count = i + 1
            if self.count % self.chunk == 0:
                p.poll(0)
                # Pacing, not waiting for a condition: the stream's rate.
                ahead = began + self.count / float(self.rate) - time.time()
                if ahead > 0:
                    time.sleep(ahead)
        self.left = p.flush(60)

    def produced(self):
        return self.count / float(len(self.events))

    def result(self):
        self.thread.join(120)
        if self.thread.is_alive() or self.left or self.errors or None in self.where:
            fail("paced produce to %s: errors %s" % (self.t.topic, self.errors[:3]))
        return self.where


def owned_count(eng):
    """Partitions the engine's consumer holds now, from its log: the sum of "assigned N" less
    the sum of "revoking N" (the group is cooperative: both are increments)."""
    import re
    log = eng.log()
    got = sum(int(n) for n in re.findall(r"kafka consumer: assigned (\d+) partition", log))
    lost = sum(int(n) for n in re.findall(r"kafka consumer: revoking (\d+) partition", log))
    return got - lost


def wait_engines(t, cond, timeout, what, engines):
    """t.wait, but a timeout or an engine's exit fails with the engines' log tails."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        for eng in engines:
            if eng.proc.poll() is not None:
                fail("engine %s exited %s while waiting for %s:\n%s" %
                     (eng.log_path, eng.proc.returncode, what, eng.log()[-3000:]))
        time.sleep(0.1)
    fail("timed out after %d s waiting for %s:%s" %
         (timeout, what, "".join("\n--- %s\n%s" % (e.log_path, e.log()[-2000:])
                                 for e in engines)))
