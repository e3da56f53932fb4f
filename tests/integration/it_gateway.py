"""The gateway end to end, with a real engine, Redis, the embedded Kafka and independent
clients (python3-websockets, kcat, confluent-kafka, redis-py, urllib):
  - every bad token kind is refused with close 4001 and its reason; no auth in time: 4008;
    a disallowed Origin: HTTP 403; nothing is sent before auth;
  - events produced with kcat become alerts on the right agent's socket only; an alert raised
    while the customer was still queued reaches the agent who answers, in the screen pop and
    as an alert; supervisors get every alert and the live queue;
  - ack and feedback reach the feedback topic and Redis, and the client hears "recorded";
  - disconnect, alerts meanwhile, reconnect with resume (to this gateway and to a second
    one): each missed alert exactly once, nothing else;
  - GET /api/customers/{id}: agents only their own customer, supervisors any;
  - closes the server starts: oversized message 1009, token expiry 4003, shutdown 1001."""
import asyncio
import datetime
import json
import time
import uuid

import websockets
from confluent_kafka import Consumer, TopicPartition

from engine_it import STACK, EngineTest, check, event, fail, now_utc
from gateway_it import (SECRET, Gateway, auth, closed_with, connect, drain, hand_token,
                        kcat_produce, recv)

t = EngineTest("gw")
gateways = []


def alerts_of(msgs, type_="alert"):
    return [m for m in msgs if m.get("type") == type_]


async def refused(gw, token, expect_reason, what):
    async with connect(gw) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        code, reason = await closed_with(ws)
    check(code == 4001 and reason == expect_reason,
          "%s is refused: close 4001 %r (got %s %r)" % (what, expect_reason, code, reason))


async def bad_tokens(gw):
    now = int(time.time())
    good = {"sub": "a-bad", "role": "agent", "exp": now + 3600}
    await refused(gw, "", "missing", "an empty token")
    await refused(gw, "not-a-jwt", "malformed", "a malformed token")
    await refused(gw, hand_token(good, secret="wrong-secret-" + "y" * 40), "bad_signature",
                  "a token signed with another secret")
    await refused(gw, hand_token(dict(good, exp=now - 300)), "expired", "an expired token")
    await refused(gw, hand_token(good, header={"alg": "none", "typ": "JWT"}, signature=""),
                  "bad_alg", "an alg:none token")
    await refused(gw, hand_token(good, header={"alg": "HS384", "typ": "JWT"}, alg="sha384"),
                  "bad_alg", "an HS384 token signed with the right secret")
    await refused(gw, hand_token(dict(good, role="admin")), "wrong_role", "a token with role admin")
    await refused(gw, hand_token({"role": "agent", "exp": now + 60}), "bad_claims", "a token without sub")
    await refused(gw, "x" * 5000, "too_long", "a 5000-byte token")
    async with connect(gw) as ws:
        await ws.send(json.dumps({"type": "ack", "alert_id": "x"}))
        code, reason = await closed_with(ws)
    check(code == 4001, "a first message other than auth closes 4001 (got %s %r)" % (code, reason))
    async with connect(gw) as ws:
        got = await drain(ws, 0.5)
        check(got == [], "nothing is sent before auth")
        code, reason = await closed_with(ws, timeout=5)
    check(code == 4008 and reason == "auth timeout", "no auth within the deadline: close 4008 (got %s)" % code)
    try:
        async with connect(gw, origin="http://evil.example"):
            fail("a disallowed Origin was accepted")
    except websockets.InvalidStatusCode as e:
        check(e.status_code == 403, "a disallowed Origin gets HTTP 403")
    async with connect(gw, origin="http://127.0.0.1:%d" % gw.port) as ws:
        await auth(ws, gw.token("a-origin"))
    check(True, "the allowed Origin is accepted")


def history(cust, n, now):
    """n ended support contacts in the last weeks."""
    out = []
    for i in range(n):
        at = now - datetime.timedelta(days=3 + 5 * i)
        k = "old-%s-%d" % (cust, i)
        out += [event("contact.queued", cust, {"contact_id": k, "channel": "phone", "queue": "q",
                                              "reason": "support"}, at=at),
                event("contact.ended", cust, {"contact_id": k, "duration_s": 60}, at=at + datetime.timedelta(minutes=5))]
    return out


async def routing_and_feedback(gw, gw2):
    n = t.nonce
    a1, a2, sup_id = "a1-" + n, "a2-" + n, "sup-" + n
    cust = t.cid("c1")
    queue = "gwq-" + n
    now = now_utc()
    k4 = "k4-" + n
    ws1 = await connect(gw)
    ws2 = await connect(gw)
    sup = await connect(gw)
    w1 = await auth(ws1, gw.token(a1))
    check(w1["role"] == "agent" and w1["sub"] == a1 and w1["resume"]["gap"] is False, "the agent's welcome")
    await auth(ws2, gw.token(a2))
    ws_sup = await auth(sup, gw.token(sup_id, "supervisor"))
    check(ws_sup["role"] == "supervisor" and ws_sup["queues"] is None, "the supervisor's welcome (all queues)")

    # The 4th support contact in 30 days, queued: the alert is held (nobody serves the customer).
    kcat_produce(t.topic, history(cust, 3, now) + [
        event("customer.profile", cust, {"name": "Carla Caller", "segment": "retail"}, at=now - datetime.timedelta(minutes=3)),
        event("contact.queued", cust, {"contact_id": k4, "channel": "chat", "queue": queue,
                                       "reason": "billing"}, at=now - datetime.timedelta(seconds=20))])
    feed = await recv(sup, lambda m: m["type"] == "alert", 30, "the supervisor's feed alert")
    repeat = feed["alert"]
    check(repeat["rule"] == "repeat_contact" and repeat["customer_id"] == cust and repeat["agent_id"] is None,
          "the supervisor sees the repeat-contact alert while the customer is queued")
    board = await recv(sup, lambda m: m["type"] == "queue" and any(q["name"] == queue and q["waiting"] == 1 for q in m["queues"]),
                       10, "the live queue with the waiting contact")
    q = [q for q in board["queues"] if q["name"] == queue][0]
    c = q["contacts"][0]
    check(c["customer_id"] == cust and c["name"] == "Carla Caller" and c["rank"] == 1 and c["wait_s"] >= 19
          and "tier" in c and "churn_risk" in c and isinstance(c["flags"], list),
          "the wallboard lists the waiting customer with tier, risk, flags, wait and rank")
    check(board["service_level"]["formula"] == "offered" and board["service_level"]["threshold_s"] == 20,
          "the wallboard names its service-level formula and threshold")

    # The agent answers: screen pop with the held alert, then the alert itself.
    kcat_produce(t.topic, [event("contact.started", cust, {"contact_id": k4, "channel": "chat", "queue": queue,
                                                           "agent_id": a1})])
    pop = await recv(ws1, lambda m: m["type"] == "screen_pop", 30, "the screen pop")
    check(pop["customer"]["id"] == cust and pop["customer"]["profile"]["name"] == "Carla Caller"
          and "w" not in pop["customer"] and pop["contact"]["contact_id"] == k4,
          "the screen pop carries the customer's summary and the contact")
    check([a["id"] for a in pop["alerts"]] == [repeat["id"]], "the screen pop carries the alert raised while queued")
    first = await recv(ws1, lambda m: m["type"] == "alert", 10, "the held alert as an alert")
    check(first["alert"]["id"] == repeat["id"] and first["seq"], "the held alert reaches the agent who answered")

    # Live: negative sentiment during the contact.
    kcat_produce(t.topic, [event("sentiment.sampled", cust, {"contact_id": k4, "score": -0.9})])
    live = await recv(ws1, lambda m: m["type"] == "alert", 30, "the live alert")
    check(live["alert"]["rule"] == "negative_sentiment" and live["alert"]["agent_id"] == a1
          and live["seq"] > first["seq"], "a live alert reaches the agent, after the first in log order")
    await recv(sup, lambda m: m["type"] == "alert" and m["alert"]["rule"] == "negative_sentiment", 10,
               "the supervisor's copy of the live alert")
    other = await drain(ws2, 1.5)
    check(alerts_of(other) == [] and alerts_of(other, "screen_pop") == [], "another agent receives nothing")

    # Ack and feedback, and the errors of bad client messages.
    await ws1.send(json.dumps({"type": "ack", "alert_id": live["alert"]["id"]}))
    r = await recv(ws1, lambda m: m["type"] in ("recorded", "error"), 10, "the ack's answer")
    check(r == {"type": "recorded", "what": "ack", "alert_id": live["alert"]["id"]}, "ack recorded")
    await ws1.send(json.dumps({"type": "feedback", "alert_id": live["alert"]["id"], "useful": False,
                               "outcome": "customer was calm already"}))
    r = await recv(ws1, lambda m: m["type"] in ("recorded", "error"), 10, "the feedback's answer")
    check(r["type"] == "recorded" and r["what"] == "feedback", "feedback recorded")
    await ws1.send(json.dumps({"type": "feedback", "alert_id": live["alert"]["id"]}))
    r = await recv(ws1, lambda m: m["type"] == "error", 10, "an error")
    check(r["code"] == "bad_message" and r["alert_id"] == live["alert"]["id"],
          "feedback without useful gets a bad_message error naming the alert")
    await ws1.send("{not json")
    r = await recv(ws1, lambda m: m["type"] == "error", 10, "an error")
    check(r["code"] == "bad_message", "a malformed message gets an error, the session goes on")
    await ws1.send(json.dumps({"type": "dance"}))
    r = await recv(ws1, lambda m: m["type"] == "error", 10, "an error")
    check(r["code"] == "unknown_type", "an unknown type gets an error")
    f = t.redis.hgetall("{g:f:%s}" % live["alert"]["id"])
    check(f.get("agent") == a1 and f.get("acked_at") and f.get("useful") == "0"
          and f.get("outcome") == "customer was calm already", "ack and feedback are recorded with the alert in Redis")
    fb = read_feedback(gw.feedback_topic, live["alert"]["id"], 2)
    check(sorted(m["type"] for m in fb) == ["ack", "feedback"] and all(m["agent_id"] == a1 for m in fb),
          "ack and feedback are on the feedback topic with the agent's id")

    # /metrics: connections by role, deliveries and their latency, backlogs, auth failures.
    check(gw.metric('integral_gateway_connections{role="supervisor"}') == 1, "/metrics counts the supervisor")
    check(gw.metric("integral_gateway_send_latency_seconds_count") >= 2, "/metrics has the send latency")
    check(gw.metric("integral_gateway_backlog_bytes") >= 0, "/metrics has the backlog")
    check(gw.metric('integral_gateway_auth_failures_total{reason="bad_alg"}') == 2,
          "/metrics counts refused tokens by reason")

    # The timeline (the engine's list): newest first, in the screen pop and from the API.
    pop_types = [e["type"] for e in pop["customer"]["timeline"]]
    check(len(pop_types) >= 7 and pop_types[-2:] == ["contact.ended", "contact.queued"],
          "the screen pop's timeline: %s" % pop_types)
    kcat_produce(t.topic, [event("web.visited", cust, {"page": "/p%d" % i, "intent": "support"})
                           for i in range(2)])

    def api_timeline():
        st, body = gw.http("/api/customers/" + cust, {"Authorization": "Bearer " + gw.token(a1)})
        return json.loads(body).get("timeline", []) if st == 200 else []

    t.wait(lambda: len(api_timeline()) == 10, 20, "10 timeline entries from the API")
    types = [e["type"] for e in api_timeline()]
    check(types == ["web.visited"] * 2 + ["contact.started", "contact.queued"] +
          ["contact.ended", "contact.queued"] * 3,
          "the API's timeline, newest first: %s" % types)

    # The API: an agent reads only its own customer.
    st, body = gw.http("/api/customers/" + cust, {"Authorization": "Bearer " + gw.token(a1)})
    check(st == 200 and json.loads(body)["id"] == cust and "w" not in json.loads(body), "the agent reads its customer")
    # The engine stores each factor as [feature, value, weight, contribution] (document
    # version 2); the API gives them as objects.
    stored = json.loads(t.redis.get("{c:%s}:state" % cust))["factors"]
    served = json.loads(body)["factors"]
    check(stored["churn"] and all(isinstance(f, list) and len(f) == 4 for f in stored["churn"]),
          "the stored factors are arrays: %s" % stored)
    check(served == {k: [dict(zip(("feature", "value", "weight", "contribution"), f)) for f in v]
                     for k, v in stored.items()},
          "the API's factors are the stored ones as objects: %s" % served)
    st, _ = gw.http("/api/customers/" + cust, {"Authorization": "Bearer " + gw.token(a2)})
    check(st == 403, "another agent gets 403")
    st, _ = gw.http("/api/customers/" + cust, {"Authorization": "Bearer " + gw.token(sup_id, "supervisor")})
    check(st == 200, "a supervisor reads any customer")
    st, _ = gw.http("/api/customers/" + cust)
    check(st == 401, "no token: 401")
    check(board["service_level"]["target"] == 0.8, "the wallboard has the service-level target")
    st, _ = gw.http("/api/customers/nobody-" + n, {"Authorization": "Bearer " + gw.token(sup_id, "supervisor")})
    check(st == 404, "an unknown customer: 404")

    # Resume: the agent drops, alerts are raised meanwhile, the agent comes back.
    last = live["seq"]
    await ws1.close()
    kcat_produce(t.topic, [
        event("order.placed", cust, {"order_id": "o-" + n, "amount": 120, "margin": 30, "currency": "EUR"}),
        event("order.updated", cust, {"order_id": "o-" + n, "status": "delayed"})])
    away = [await recv(sup, lambda m: m["type"] == "alert" and m["alert"]["rule"] == "order_problem", 30,
                       "the alert raised while the agent was away")]
    away += alerts_of(await drain(sup, 1.5))
    missed = sorted(m["alert"]["id"] for m in away if m["alert"]["agent_id"] == a1)
    for target, name in ((gw2, "a second gateway"), (gw, "the same gateway")):
        ws = await connect(target)
        w = await auth(ws, target.token(a1), resume=last)
        check(w["resume"]["after"] == last, "resume starts after the last seq seen (%s)" % name)
        got = alerts_of(await drain(ws, 2.0))
        ids = [m["alert"]["id"] for m in got]
        check(sorted(ids) == missed and len(set(ids)) == len(ids) and len(ids) >= 1,
              "reconnecting to %s delivers the %d missed alert(s) once each and nothing else (got %s)"
              % (name, len(missed), [m["alert"]["rule"] for m in got]))
        check([m["seq"] for m in got] == sorted(m["seq"] for m in got), "in log order")
        await ws.close()
    ws = await connect(gw)
    await auth(ws, gw.token(a1))
    check(alerts_of(await drain(ws, 1.0)) == [], "a connection without resume starts at the newest alert")
    await ws.close()
    await ws2.close()
    return sup


def read_feedback(topic, alert_id, expect, timeout=20):
    c = Consumer({"bootstrap.servers": STACK["KAFKA_BROKERS"], "group.id": "it-fb-" + uuid.uuid4().hex,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    out = []
    deadline = time.time() + timeout
    while time.time() < deadline and len(out) < expect:
        m = c.poll(0.2)
        if m is not None and not m.error() and m.key() == alert_id.encode():
            out.append(json.loads(m.value()))
    c.close()
    return out


async def server_closes(gw):
    async with connect(gw) as ws:
        await auth(ws, gw.token("a-big-" + t.nonce))
        await ws.send("x" * 20000)
        code, _ = await closed_with(ws)
    check(code == 1009, "a message over gateway.max_message_bytes closes with 1009 (got %s)" % code)
    async with connect(gw) as ws:
        await auth(ws, gw.token("a-exp-" + t.nonce, ttl="2s"))
        code, reason = await closed_with(ws, timeout=10)
    check(code == 4003 and reason == "token expired", "a token expiring during the session closes 4003 (got %s)" % code)


async def main():
    eng = t.start_engine()
    gw = Gateway(t, extra_env={"INTEGRAL_GATEWAY_AUTH_TIMEOUT_MS": "1000",
                               "INTEGRAL_GATEWAY_JWT_SKEW_S": "0"})
    gw2 = Gateway(t)
    gateways.extend([gw, gw2])
    gw.start()
    gw2.start()
    await bad_tokens(gw)
    await server_closes(gw)
    sup = await routing_and_feedback(gw, gw2)
    gw.stop()
    code, reason = await closed_with(sup)
    check(code == 1001, "a gateway shutdown closes the supervisor with 1001 (got %s %r)" % (code, reason))
    check("event loop not empty" not in gw.log(), "the gateway stopped cleanly")
    gw2.stop()
    t.stop_engine(eng)


try:
    asyncio.run(main())
finally:
    for g in gateways:
        g.kill()
    t.close()
