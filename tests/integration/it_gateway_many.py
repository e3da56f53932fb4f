"""The gateway under load, with independent clients (python3-websockets):
  - 1,000 agents connected at once to one gateway, one customer each: every agent gets its own
    customer's screen pop and alert, and nobody else's;
  - a client that stops reading while alerts pour in is closed with 1008 "slow consumer"
    (gateway.max_backlog_bytes), and the gateway's memory stays bounded meanwhile;
  - a client that floods messages gets rate_limited errors, then 1008 "rate limit"."""
import asyncio
import json
import resource
import socket
import time

import websockets

from engine_it import EngineTest, check, event, fail
from gateway_it import Gateway, auth, connect, hand_token, kcat_produce


def agent_token(agent):
    """Signed here (1,000 runs of `integral-gateway token` would stall the event loop; the
    command itself is tested in it_gateway)."""
    return hand_token({"sub": agent, "role": "agent", "exp": int(time.time()) + 3600})

AGENTS = 1000
t = EngineTest("gwmany")
gateways = []


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def contact_and_alert(cust, agent, n):
    k = "k-%s-%d" % (cust, n)
    return [event("contact.started", cust, {"contact_id": k, "channel": "chat", "queue": "load",
                                            "agent_id": agent}),
            event("sentiment.sampled", cust, {"contact_id": k, "score": -0.9})]


async def agent_session(gw, agent, ready, go, results):
    async with connect(gw, max_queue=None) as ws:
        await auth(ws, agent_token(agent), timeout=60)
        ready.append(agent)
        await go.wait()
        got = {"pops": [], "alerts": []}
        deadline = time.time() + 120
        while not (got["pops"] and got["alerts"]) and time.time() < deadline:
            try:
                m = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.time()))
            except asyncio.TimeoutError:
                break
            if m["type"] == "screen_pop":
                got["pops"].append(m["contact"]["agent_id"])
            elif m["type"] == "alert":
                got["alerts"].append(m["alert"]["agent_id"])
        results[agent] = got


async def many_agents(gw):
    n = t.nonce
    agents = ["m%04d-%s" % (i, n) for i in range(AGENTS)]
    ready, results, go = [], {}, asyncio.Event()
    rss_before = rss_kb(gw.proc.pid)
    tasks = [asyncio.create_task(agent_session(gw, a, ready, go, results)) for a in agents]
    deadline = time.time() + 120
    while len(ready) < AGENTS and time.time() < deadline:
        await asyncio.sleep(0.2)
    check(len(ready) == AGENTS, "%d agents connected and authenticated at once" % len(ready))
    check(gw.metric('integral_gateway_connections{role="agent"}') == AGENTS,
          "/metrics counts %d agent connections" % AGENTS)
    rss_after = rss_kb(gw.proc.pid)
    print("gateway RSS %d KiB before, %d KiB with %d agents: %.1f KiB per connection"
          % (rss_before, rss_after, AGENTS, (rss_after - rss_before) / AGENTS), flush=True)
    go.set()
    events = []
    for i, a in enumerate(agents):
        events += contact_and_alert(t.cid("c%04d" % i), a, i)
    kcat_produce(t.topic, events)
    await asyncio.gather(*tasks)
    complete = [a for a in agents if results.get(a, {}).get("pops") and results[a].get("alerts")]
    check(len(complete) == AGENTS, "every agent got its screen pop and its alert (%d of %d)" % (len(complete), AGENTS))
    wrong = [a for a in agents if any(x != a for x in results[a]["pops"] + results[a]["alerts"])]
    check(not wrong, "no agent got another agent's screen pop or alert (%d did)" % len(wrong))


async def slow_consumer(gw):
    agent = "slow-" + t.nonce
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.connect(("127.0.0.1", gw.port))
    ws = await websockets.connect(gw.url(), sock=sock, max_queue=1, read_limit=4096,
                                  subprotocols=["integral.v1"], max_size=None)
    await auth(ws, gw.token(agent))
    before = gw.metric('integral_gateway_sessions_ended{how="slow"}')
    events = []
    for i in range(400):
        events += contact_and_alert(t.cid("slow%03d" % i), agent, i)
    kcat_produce(t.topic, events)
    deadline = time.time() + 60
    peak = 0
    while gw.metric('integral_gateway_sessions_ended{how="slow"}') <= before and time.time() < deadline:
        peak = max(peak, rss_kb(gw.proc.pid))
        await asyncio.sleep(0.05)
    check(gw.metric('integral_gateway_sessions_ended{how="slow"}') > before,
          "the gateway gave up on the client that does not read")
    read = 0
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
            read += 1
    except websockets.ConnectionClosed:
        pass
    check(ws.close_code == 1008 and ws.close_reason == "slow consumer",
          "the slow client gets close 1008 \"slow consumer\" after %d messages (got %s %r)"
          % (read, ws.close_code, ws.close_reason))
    print("gateway peak RSS while the client was stuck: %d KiB" % peak, flush=True)


async def flooder(gw):
    async with connect(gw) as ws:
        await auth(ws, gw.token("flood-" + t.nonce))
        for _ in range(200):
            await ws.send(json.dumps({"type": "ping"}))
        msgs = []
        try:
            while True:
                msgs.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        except websockets.ConnectionClosed:
            pass
        limited = [m for m in msgs if m.get("type") == "error" and m.get("code") == "rate_limited"]
        check(limited, "past the burst, pings get rate_limited errors (%d)" % len(limited))
        check(ws.close_code == 1008 and ws.close_reason == "rate limit",
              "a client that keeps flooding is closed with 1008 \"rate limit\" (got %s)" % ws.close_code)


async def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    eng = t.start_engine()
    gw = Gateway(t, extra_env={"INTEGRAL_GATEWAY_MAX_BACKLOG_BYTES": "65536",
                               "INTEGRAL_GATEWAY_RATE_LIMIT_BURST": "20"})
    gateways.append(gw)
    gw.start()
    await many_agents(gw)
    await slow_consumer(gw)
    await flooder(gw)
    gw.stop(timeout=60)
    t.stop_engine(eng)


try:
    asyncio.run(main())
finally:
    for g in gateways:
        g.kill()
    t.close()
