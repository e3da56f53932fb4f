"""The live queue and the screen-pop notices, end to end: contacts queued, answered,
abandoned, transferred and ended through Kafka; the engine's {q}:* keys in Redis say who waits
where since when (with the customer's tier and risk), who was answered or abandoned after how
long, and every agent's state; contact.started and a transfer to an agent each send one
notice on the assignments topic (key = agent id); a replay changes none of it."""
import datetime
import json

from engine_it import EngineTest, check, event, now_utc

t = EngineTest("livequeue")
try:
    eng = t.start_engine()
    now = now_utc()
    sec = datetime.timedelta(seconds=1)
    q = "lq-" + t.nonce          # a queue of this run only
    q2 = "lq2-" + t.nonce
    agent = "ag-" + t.nonce
    agent2 = "ag2-" + t.nonce
    waiting, answered, abandoned, moved = (t.cid(n) for n in ("waiting", "answered", "abandoned", "moved"))

    def k(cust):
        return "k-" + cust

    def queued(cust, at, queue=q):
        return event("contact.queued", cust, {"contact_id": k(cust), "channel": "chat",
                                              "queue": queue, "reason": "billing"}, at=at)

    t.produce([
        event("agent.state", "agent:" + agent, {"agent_id": agent, "state": "available",
                                                "queues": [q]}, at=now - 60 * sec),
        event("customer.profile", waiting, {"name": "Wanda Waits", "segment": "retail"}, at=now - 50 * sec),
        queued(waiting, now - 40 * sec),
        queued(answered, now - 30 * sec),
        event("contact.started", answered, {"contact_id": k(answered), "channel": "chat",
                                            "agent_id": agent, "queue": q}, at=now - 18 * sec),
        queued(abandoned, now - 25 * sec),
        event("contact.abandoned", abandoned, {"contact_id": k(abandoned), "wait_s": 5}, at=now - 20 * sec),
        queued(moved, now - 15 * sec),
        event("contact.started", moved, {"contact_id": k(moved), "channel": "chat",
                                         "agent_id": agent, "queue": q}, at=now - 14 * sec),
        event("contact.transferred", moved, {"contact_id": k(moved), "to_queue": q2}, at=now - 10 * sec),
        event("agent.state", "agent:" + agent, {"agent_id": agent, "state": "busy"}, at=now - 9 * sec),
    ])

    r = t.redis
    t.wait(lambda: r.hget("{q}:agents", agent) and json.loads(r.hget("{q}:agents", agent))["state"] == "busy",
           30, "the agent's latest state in {q}:agents")
    t.wait(lambda: r.zrange("{q}:waiting:" + q2, 0, -1) == [k(moved)], 30,
           "a transfer to a queue waits there again")
    ag = json.loads(r.hget("{q}:agents", agent))
    check(ag["queues"] == [q], "the agent keeps its queues when a state event has none")

    wait_list = r.zrange("{q}:waiting:" + q, 0, -1, withscores=True)
    check([m for m, _ in wait_list] == [k(waiting)], "only the unanswered contact waits in %s (got %s)" % (q, wait_list))
    check(abs(wait_list[0][1] - (now - 40 * sec).timestamp() * 1000) < 2, "waiting since its contact.queued time")
    info = json.loads(r.hget("{q}:info", k(waiting)))
    check(info["customer_id"] == waiting and info["name"] == "Wanda Waits" and info["channel"] == "chat"
          and info["queue"] == q and "churn_risk" in info and "tier" in info,
          "the waiting contact's snapshot names the customer, channel, tier and risk")
    check(q in r.smembers("{q}:queues") and q2 in r.smembers("{q}:queues"), "both queues are listed")

    ans = r.zrange("{q}:answered:" + q, 0, -1)
    check(sorted(ans) == sorted([k(answered) + "|12000", k(moved) + "|1000"]),
          "answered contacts with their wait in ms (got %s)" % ans)
    check(r.zrange("{q}:abandoned:" + q, 0, -1) == [k(abandoned) + "|5000"], "the abandoned contact and its wait")

    # A transfer to an agent and the end of a waiting contact.
    t.produce([
        event("contact.transferred", answered, {"contact_id": k(answered), "to_agent_id": agent2}, at=now - 5 * sec),
        event("contact.ended", moved, {"contact_id": k(moved), "duration_s": 20}, at=now - 4 * sec),
    ])
    t.wait(lambda: r.zcard("{q}:waiting:" + q2) == 0, 30, "an ended contact no longer waits")

    notices = t.read_assignments(expect=3, timeout=30, settle=1.5)
    got = [(m["type"], m["agent_id"], m["customer_id"]) for m in notices]
    check(sorted(got) == sorted([("contact.started", agent, answered), ("contact.started", agent, moved),
                                 ("contact.transferred", agent2, answered)]),
          "one notice per contact reaching an agent (got %s)" % got)
    keys = sorted(m.key().decode() for m in t.seen[t.assign_topic])
    check(keys == sorted([agent, agent, agent2]), "notices are keyed by agent id")
    n = [m for m in notices if m["customer_id"] == answered and m["type"] == "contact.started"][0]
    check(n["contact_id"] == k(answered) and n["queue"] == q and n["channel"] == "chat" and n["event_id"],
          "a notice names the contact, queue, channel and event")

    # Replay: the same events again (re-sent ids) change nothing and send no notice.
    before = {key: r.dump(key) for key in ("{q}:waiting:" + q, "{q}:answered:" + q, "{q}:abandoned:" + q)}
    t.stop_engine(eng)
    r.delete("{p:%s:0}:applied" % t.topic, "{p:%s:1}:applied" % t.topic)
    eng = t.start_engine()
    t.wait(lambda: all(r.get("{p:%s:%d}:applied" % (t.topic, p)) for p in (0, 1)
                       if t.end_offsets(t.topic)[p] > 0), 30, "the replay reached the end")
    after = {key: r.dump(key) for key in before}
    check(before == after, "a replay from offset 0 leaves the live queue as it was")
    check(len(t.read_assignments(timeout=2)) == 3, "and sends no new notice")
    t.stop_engine(eng)
finally:
    t.close()
