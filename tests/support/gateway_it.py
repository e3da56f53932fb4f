"""gateway_it.py - what the gateway's black-box tests share (tests/integration/it_gateway*.py).

The stack (tests/support/stack.sh) gives Redis and the embedded Kafka; EngineTest (engine_it)
gives a real engine on the test's own topics; a Gateway here is a real integral-gateway process
reading that engine's alerts and assignments. Clients are python3-websockets (Debian's, an
independent implementation) and node's built-in WebSocket; tokens are minted by
`integral-gateway token`, and bad ones hand-built here with hmac (not with the code under test).

    from gateway_it import *
    t = EngineTest("gw"); eng = t.start_engine()
    gw = Gateway(t); gw.start()
    async with connect(gw) as ws: welcome = await auth(ws, gw.token("A1", "agent"))
"""
import asyncio
import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import websockets

from engine_it import BIN, SOURCE, STACK, check, fail, free_port

SECRET = "it-secret-" + "x" * 40  # 50 bytes: HS256 wants at least 32


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_token(payload, header=None, secret=SECRET, alg="sha256", signature=None):
    """A JWT built by hand: any header, any payload, any HMAC (or a given signature)."""
    header = header if header is not None else {"alg": "HS256", "typ": "JWT"}
    head = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(payload).encode())
    if signature is None:
        signature = b64url(hmac.new(secret.encode(), head.encode(), alg).digest())
    return head + "." + signature


class Gateway:
    def __init__(self, t, instance=None, extra_env=None):
        self.t = t
        self.instance = instance or "it-%s-%s" % (t.name, uuid.uuid4().hex[:6])
        self.port = free_port()
        self.extra_env = extra_env or {}
        self.proc = None
        self.log_path = os.path.join(t.work, "gateway-%s.log" % self.instance)
        self.feedback_topic = "it-gw-feedback"

    def env(self):
        env = dict(os.environ)
        env.update({
            "INTEGRAL_KAFKA_BROKERS": STACK["KAFKA_BROKERS"],
            "INTEGRAL_KAFKA_SESSION_TIMEOUT_MS": "3000",
            "INTEGRAL_KAFKA_COMMIT_INTERVAL_MS": "200",
            "INTEGRAL_REDIS_HOST": STACK["REDIS_HOST"],
            "INTEGRAL_REDIS_PORT": STACK["REDIS_PORT"],
            "INTEGRAL_HTTP_PORT": str(self.port),
            "INTEGRAL_GATEWAY_JWT_SECRET": SECRET,
            "INTEGRAL_GATEWAY_INSTANCE": self.instance,
            "INTEGRAL_GATEWAY_ALERTS_TOPIC": self.t.alerts_topic,
            "INTEGRAL_GATEWAY_ASSIGNMENTS_TOPIC": self.t.assign_topic,
            "INTEGRAL_GATEWAY_FEEDBACK_TOPIC": self.feedback_topic,
            "INTEGRAL_GATEWAY_ALLOWED_ORIGINS": "http://127.0.0.1:%d" % self.port,
            "INTEGRAL_GATEWAY_WEB_DIR": os.path.join(SOURCE, "web"),
        })
        env.update(self.extra_env)
        return env

    def start(self, wait_ready=True):
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen([os.path.join(BIN, "integral-gateway")], env=self.env(),
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        if wait_ready:
            deadline = time.time() + 60
            while not self.ready():
                if self.proc.poll() is not None:
                    fail("gateway exited %s:\n%s" % (self.proc.returncode, self.log()[-3000:]))
                if time.time() > deadline:
                    fail("gateway not ready after 60 s:\n" + self.log()[-3000:])
                time.sleep(0.1)
        return self

    def stop(self, sig=signal.SIGTERM, expect_code=0, timeout=30):
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            fail("gateway did not stop within %d s:\n%s" % (timeout, self.log()[-3000:]))
        if expect_code is not None and code != expect_code:
            fail("gateway exited %d, not %d:\n%s" % (code, expect_code, self.log()[-3000:]))
        return code

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def url(self, path="/ws"):
        return "ws://127.0.0.1:%d%s" % (self.port, path)

    def http(self, path, headers=None):
        """(status, body) of a GET."""
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path), headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def ready(self):
        try:
            return self.http("/readyz")[0] == 200
        except Exception:
            return False

    def metric(self, name):
        try:
            _, text = self.http("/metrics")
        except Exception:
            return -1
        total = None
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
        return -1 if total is None else total

    def token(self, sub, role="agent", ttl="1h", queues=None):
        args = [os.path.join(BIN, "integral-gateway"), "token", "--sub", sub, "--role", role, "--ttl", ttl]
        if queues:
            args += ["--queues", ",".join(queues)]
        out = subprocess.run(args, env=self.env(), capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            fail("token command failed: " + out.stderr)
        return out.stdout.strip()


def kcat_produce(topic, events):
    """Produces events (dicts, key = subject) with kcat, an independent Kafka client."""
    lines = "".join("%s\t%s\n" % (ev["subject"], json.dumps(ev)) for ev in events)
    out = subprocess.run(["kcat", "-P", "-b", STACK["KAFKA_BROKERS"], "-t", topic, "-K", "\t"],
                         input=lines, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        fail("kcat failed: " + out.stderr)


def connect(gw, origin=None, **kw):
    kw.setdefault("max_size", 8 * 1024 * 1024)
    kw.setdefault("open_timeout", 10)
    return websockets.connect(gw.url(), origin=origin, subprotocols=["integral.v1"], **kw)


async def auth(ws, token, resume=None, timeout=10):
    msg = {"type": "auth", "token": token}
    if resume is not None:
        msg["resume"] = resume
    await ws.send(json.dumps(msg))
    welcome = await recv(ws, lambda m: True, timeout)
    if welcome.get("type") != "welcome":
        fail("expected a welcome, got %s" % welcome)
    return welcome


async def recv(ws, pred, timeout=15, what="a message"):
    """The first message (parsed) satisfying pred; others are dropped."""
    deadline = time.time() + timeout
    while True:
        left = deadline - time.time()
        if left <= 0:
            fail("timed out waiting for %s" % what)
        try:
            raw = await asyncio.wait_for(ws.recv(), left)
        except asyncio.TimeoutError:
            fail("timed out waiting for %s" % what)
        m = json.loads(raw)
        if pred(m):
            return m


async def drain(ws, seconds):
    """Every message that arrives within seconds."""
    out = []
    deadline = time.time() + seconds
    while True:
        left = deadline - time.time()
        if left <= 0:
            return out
        try:
            out.append(json.loads(await asyncio.wait_for(ws.recv(), left)))
        except asyncio.TimeoutError:
            return out
        except websockets.ConnectionClosed:
            return out


async def closed_with(ws, timeout=10):
    """(code, reason) the server closed ws with."""
    try:
        await asyncio.wait_for(ws.wait_closed(), timeout)
    except asyncio.TimeoutError:
        fail("the connection was not closed within %d s" % timeout)
    return ws.close_code, ws.close_reason
