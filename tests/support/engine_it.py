"""engine_it.py - what the engine's black-box tests share (tests/integration/it_engine_*.py).

Run by ctest with Debian's /usr/bin/python3 (it has python3-confluent-kafka and
python3-redis). The shared stack (tests/support/stack.sh) gives a real redis-server and the
embedded Kafka; each test X owns the topics it-eng-X, it-eng-X-alerts and it-eng-X-dlq, and
uses customer ids with a per-run nonce so that runs never see each other's state.

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
        self.start_offsets = {t: self.end_offsets(t) for t in (self.alerts_topic, self.dlq_topic)}
        self.seen = {self.alerts_topic: [], self.dlq_topic: []}
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

    def read_deadletters(self, expect=None, timeout=30, settle=0.0):
        out = []
        for m in self.read(self.dlq_topic, expect, timeout, settle):
            headers = {k: (v.decode() if v is not None else None) for k, v in (m.headers() or [])}
            out.append({"key": m.key(), "value": m.value(), "headers": headers})
        return out

    # -- Redis -------------------------------------------------------------------------
    def doc(self, customer_id):
        v = self.redis.get("{c:%s}:state" % customer_id)
        return json.loads(v) if v is not None else None

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
