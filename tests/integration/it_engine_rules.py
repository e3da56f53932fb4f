"""The shipped rules (config/rules.json) other than repeat_contact (it_engine_repeat.py), end
to end: each fires exactly when it should and not before, names the right customer, contact,
agent and queue, gives its reasons and scores, has the deterministic id of (rule, event), keeps
its cooldown, and an event older than engine.lateness_ms updates state without an alert.
Last, an out-of-order event (older than the firing it follows, within the cooldown) must not
raise a second alert.

Customers are built from events whose numbers come from config/model.json:
  value = margin_12m + 5 * orders_12m - cost_to_serve_12m; tier A >= 1000, B >= 250, else C
  churn = 1 / (1 + e^-z), z = -3 + 0.6 complaints_90d + 0.5 failed_payments_30d
          + 0.012 min(days_since_last_order, 180) + ... ; churn >= 0.7 <=> z >= 0.8473
History (orders, complaints days back) is sent with old times: late events, which update state
but raise nothing. Topic "rules" is shared with it_engine_repeat.py in one ctest run: alerts are
filtered by this run's customer ids."""
import datetime
import json
import math
import os

from engine_it import SOURCE, EngineTest, alert_id, check, event, fail, now_utc

with open(os.path.join(SOURCE, "config/rules.json")) as f:
    RULES = {r["id"]: r for r in json.load(f)["rules"]}

t = EngineTest("rules")
try:
    eng = t.start_engine()
    now = now_utc()
    day = datetime.timedelta(days=1)
    sec = datetime.timedelta(seconds=1)
    C = {n: t.cid(n) for n in ["risk-a", "risk-c", "vip", "vip-answered", "vip-c", "neg",
                               "neg-after", "neg-ooo", "late", "op-in", "op-out", "cancel-b",
                               "cancel-c", "rise", "flat"]}
    K = {n: "k-%s-%s" % (n, t.nonce) for n in C}  # contact ids, unique per run (timer alert ids)
    sent = {}  # name -> [events]

    def add(name, type_, data, at):
        ev = event(type_, C[name], data, at=at)
        sent.setdefault(name, []).append(ev)
        return ev

    def order(name, oid, amount, at, margin=None):
        data = {"order_id": oid, "amount": amount, "currency": "EUR"}
        if margin is not None:
            data["margin"] = margin
        return add(name, "order.placed", data, at)

    def queued(name, at, channel="phone", queue="general", reason="question"):
        return add(name, "contact.queued", {"contact_id": K[name], "channel": channel,
                                            "queue": queue, "reason": reason}, at)

    def started(name, at, agent, channel="phone", queue="general"):
        return add(name, "contact.started", {"contact_id": K[name], "channel": channel,
                                             "agent_id": agent, "queue": queue}, at)

    def z_to_risk(z):
        return round(1 / (1 + math.exp(-z)), 4)

    # -- at_risk_high_value: tier A (value 1200 + 5 = 1205) and tier C (20 + 5 = 25), same
    # churn history: an order 100 days back (+1.2), 3 complaints 8-10 days back (+1.8):
    # z = 0.0 at most before the live events; payment failed (+0.5): z = 0.5, risk 0.62, no
    # alert; a second one: z = 1.0, risk 0.7311 >= 0.7, alert; a complaint: z = 1.6, cooldown.
    risk_events = {}
    for name, amount, margin in (("risk-a", 3000, 1200), ("risk-c", 100, 20)):
        order(name, "o-1", amount, now - 100 * day - 3600 * sec, margin)
        for d in (10, 9, 8):
            add(name, "complaint.filed", {"category": "delivery", "severity": "high"},
                now - d * day)
        pf1 = add(name, "payment.failed", {"amount": 40, "reason": "card_declined"},
                  now - 120 * sec)
        pf2 = add(name, "payment.failed", {"amount": 40, "reason": "card_declined"},
                  now - 90 * sec)
        cf = add(name, "complaint.filed", {"category": "billing", "severity": "medium"},
                 now - 60 * sec)
        risk_events[name] = (pf1, pf2, cf)

    # -- vip_waiting: tier A (value 1200 + 5 - 6 for the phone contact = 1199), queued 50 s
    # before now and never answered: the timer alert comes once it has waited 60 s. One
    # answered after 5 s and a tier C one (no orders) waiting as long get none.
    for name in ("vip", "vip-answered"):
        order(name, "o-1", 3000, now - 100 * day, 1200)
    vip_q = queued("vip", now - 50 * sec, queue="vip")
    queued("vip-answered", now - 50 * sec, queue="vip")
    started("vip-answered", now - 45 * sec, "a-vip", queue="vip")
    queued("vip-c", now - 50 * sec, queue="vip")

    # -- negative_sentiment: -0.4 in contact: no; -0.6: alert; -0.9 within 300 s: cooldown.
    queued("neg", now - 300 * sec, channel="chat", queue="care")
    started("neg", now - 290 * sec, "a-neg", channel="chat", queue="care")
    add("neg", "sentiment.sampled", {"contact_id": K["neg"], "score": -0.4}, now - 200 * sec)
    neg_hit = add("neg", "sentiment.sampled", {"contact_id": K["neg"], "score": -0.6},
                  now - 150 * sec)
    add("neg", "sentiment.sampled", {"contact_id": K["neg"], "score": -0.9}, now - 100 * sec)
    add("neg", "contact.ended", {"contact_id": K["neg"], "duration_s": 200}, now - 60 * sec)
    # -0.6 after the contact ended: not in contact, no alert.
    queued("neg-after", now - 300 * sec, channel="chat", queue="care")
    started("neg-after", now - 290 * sec, "a-neg", channel="chat", queue="care")
    add("neg-after", "contact.ended", {"contact_id": K["neg-after"], "duration_s": 100},
        now - 180 * sec)
    add("neg-after", "sentiment.sampled", {"contact_id": K["neg-after"], "score": -0.6},
        now - 120 * sec)

    # An out-of-order sample: older than the firing it follows, within its cooldown (events
    # from several systems arrive out of order; state.h applies them): no second alert.
    queued("neg-ooo", now - 300 * sec, channel="chat", queue="care")
    started("neg-ooo", now - 290 * sec, "a-neg", channel="chat", queue="care")
    ooo_hit = add("neg-ooo", "sentiment.sampled", {"contact_id": K["neg-ooo"], "score": -0.6},
                  now - 150 * sec)
    ooo_older = add("neg-ooo", "sentiment.sampled",
                    {"contact_id": K["neg-ooo"], "score": -0.7}, now - 170 * sec)

    # -- lateness: a contact and a -0.8 sample 30 and 20 minutes back (engine.lateness_ms is
    # 15 minutes): state is updated, no alert; then a live -0.7 alerts (the late firing at
    # -20 min is outside the 300 s cooldown).
    queued("late", now - 1800 * sec, channel="chat", queue="care")
    started("late", now - 1790 * sec, "a-late", channel="chat", queue="care")
    add("late", "sentiment.sampled", {"contact_id": K["late"], "score": -0.8}, now - 1200 * sec)
    late_live = event("sentiment.sampled", C["late"], {"contact_id": K["late"], "score": -0.7},
                      at=now - 30 * sec)

    # -- order_problem. In contact: placed (late), contact, delayed: alert naming the order;
    # a second delayed order within the 3600 s cooldown: none.
    order("op-in", "o-A", 50, now - 5 * day)
    queued("op-in", now - 240 * sec, queue="orders")
    started("op-in", now - 200 * sec, "a-op", queue="orders")
    op_in_hit = add("op-in", "order.updated", {"order_id": "o-A", "status": "delayed"},
                    now - 120 * sec)
    add("op-in", "order.updated", {"order_id": "o-B", "status": "out_of_stock"}, now - 60 * sec)
    # Not in contact: delayed, no alert; then a contact starts with the delayed order open:
    # alert on its first event; its contact.started within the cooldown: none.
    order("op-out", "o-C", 80, now - 5 * day)
    add("op-out", "order.updated", {"order_id": "o-C", "status": "delayed"}, now - 240 * sec)
    op_out_hit = queued("op-out", now - 120 * sec, queue="orders")
    started("op-out", now - 60 * sec, "a-op2", queue="orders")

    # -- cancel_intent: tier B (value 500 + 5 = 505) and tier C (no orders). A "compare" visit
    # first (no alert), then intent cancel: alert for B only; a cancel_requested within the
    # cooldown: none. z stays < 0 (2 cancel signals, an order 10 days back): no at_risk.
    order("cancel-b", "o-1", 1500, now - 10 * day, 500)
    for name in ("cancel-b", "cancel-c"):
        add(name, "web.visited", {"page": "/compare", "intent": "compare"}, now - 180 * sec)
        add(name, "web.visited", {"page": "/account/cancel", "intent": "cancel"},
            now - 120 * sec)
    cancel_hit = sent["cancel-b"][-1]
    add("cancel-b", "subscription.changed", {"action": "cancel_requested", "mrr_delta": -30},
        now - 60 * sec)

    # -- rising_value: 100 some 150 days back (the 90 days before), 300 now: +200 %, alert;
    # another order within 30 days: cooldown. Flat: 100 then, 100 now: stable, no alert.
    order("rise", "o-1", 100, now - 150 * day)
    rise_hit = order("rise", "o-2", 300, now - 120 * sec)
    order("rise", "o-3", 50, now - 60 * sec)
    order("flat", "o-1", 100, now - 150 * day)
    order("flat", "o-2", 100, now - 120 * sec)

    t.produce([ev for evs in sent.values() for ev in evs])

    # The late events are applied (state) before the live one follows.
    t.wait(lambda: ((t.doc(C["late"]) or {}).get("sentiment") or {}).get("last") == -0.8, 30,
           "the late sentiment sample in the state")
    d = t.doc(C["late"])
    check(d["contact"] is not None and d["contact"]["id"] == K["late"] and
          d["contact"]["state"] == "active" and d["sentiment"]["last"] == -0.8,
          "events older than engine.lateness_ms update the state (contact, sentiment)")
    t.produce([late_live])
    sent["late"].append(late_live)

    expected = {
        "risk-a": ["at_risk_high_value"], "vip": ["vip_waiting"], "neg": ["negative_sentiment"],
        "late": ["negative_sentiment"], "op-in": ["order_problem"], "op-out": ["order_problem"],
        "cancel-b": ["cancel_intent"], "rise": ["rising_value"],
    }
    mine = {v: k for k, v in C.items()}
    wanted = {(C[n], r) for n, rules in expected.items() for r in rules}
    wanted.add((C["neg-ooo"], "negative_sentiment"))  # checked last

    def all_seen():
        return wanted <= {(a["customer_id"], a["rule"]) for a in t.read_alerts(timeout=0)}

    t.wait(all_seen, 90, "the %d expected alerts" % len(wanted))
    alerts = t.read_alerts(expect=0, timeout=3, settle=3.0)  # anything extra arrives now
    alerts = [a for a in alerts if a["customer_id"] in mine]
    ooo = [a for a in alerts if a["customer_id"] == C["neg-ooo"]]
    alerts = [a for a in alerts if a["customer_id"] != C["neg-ooo"]]
    got = {}
    for a in alerts:
        got.setdefault(mine[a["customer_id"]], []).append(a["rule"])
    if got != {k: sorted(v) for k, v in expected.items()}:
        fail("alerts by customer: got %s, expected %s" % (json.dumps(got, sort_keys=True),
                                                          json.dumps(expected, sort_keys=True)))
    check(True, "exactly the expected alerts: %s" % ", ".join(
        "%s:%s" % (k, v[0]) for k, v in sorted(expected.items())))
    by = {mine[a["customer_id"]]: a for a in alerts}

    # -- Every alert: deterministic id, format, rule texts.
    for name, a in sorted(by.items()):
        rule = RULES[a["rule"]]
        if a["id"] != alert_id(a["rule"], a["event_id"]) or len(a["id"]) != 32:
            fail("%s: alert id %s is not SHA-256(rule, event) %s" %
                 (name, a["id"], alert_id(a["rule"], a["event_id"])))
        if (a["severity"] != rule["severity"] or a["action"] != rule["action"] or
                a["partner"] is not False or a["customer_id"] != C[name] or
                set(a["scores"]) != {"value", "tier", "churn_risk", "trend"} or
                not a["title"] or not a["message"] or "n/a" in a["title"]):
            fail("%s: alert fields: %s" % (name, json.dumps(a)))
    check(True, "every alert has the 32-hex id of SHA-256(rule, event id), the rule's "
          "severity and action, customer id, scores and rendered texts")

    def trigger(name, a):
        evs = [e for e in sent[name] if e["id"] == a["event_id"]]
        return evs[0] if evs else None

    def reasons(a):
        return [(r["feature"], r["op"], r["threshold"], r["value"]) for r in a["reasons"]]

    # -- at_risk_high_value
    a = by["risk-a"]
    pf1, pf2, cf = risk_events["risk-a"]
    check(a["event_id"] == pf2["id"] and a["event_type"] == "payment.failed" and
          a["event_time"] == pf2["time"],
          "at_risk_high_value fires on the event that takes churn risk to 0.7, not before "
          "(the first payment.failed: 0.62) and not again within the cooldown (complaint)")
    check(reasons(a) == [("tier", "==", "A", "A"), ("churn_risk", ">=", 0.7, z_to_risk(1.0))],
          "at_risk reasons: tier == A, churn_risk %.4f >= 0.7 (got %s)" %
          (z_to_risk(1.0), reasons(a)))
    check(a["scores"]["tier"] == "A" and a["scores"]["value"] == 1205 and
          a["scores"]["churn_risk"] == z_to_risk(1.0) and a["agent_id"] is None and
          a["contact_id"] is None and a["queue"] is None,
          "at_risk scores (value 1205, tier A) and no contact fields outside a contact")
    da, dc = t.doc(C["risk-a"]), t.doc(C["risk-c"])
    check(da["tier"] == "A" and dc["tier"] == "C" and
          da["churn_risk"] == dc["churn_risk"] == z_to_risk(1.6),
          "a tier C customer with the same churn risk (%.4f) gets no at_risk alert" %
          z_to_risk(1.6))
    check(da["counts"]["complaints_90d"] == 4 and da["counts"]["failed_payments_30d"] == 2,
          "the events within the cooldown were applied all the same")

    # -- vip_waiting
    a = by["vip"]
    raised = datetime.datetime.fromisoformat(a["time"].replace("Z", "+00:00"))
    queued_at = datetime.datetime.fromisoformat(vip_q["time"].replace("Z", "+00:00"))
    waited = (raised - queued_at).total_seconds()
    check(a["event_id"] == K["vip"] and a["event_type"] == "timer" and
          a["id"] == alert_id("vip_waiting", K["vip"]),
          "vip_waiting is a timer alert whose event is the queued contact")
    check(60 <= waited < 120, "raised after 60 s of waiting, not before (%.1f s)" % waited)
    check(a["contact_id"] == K["vip"] and a["queue"] == "vip" and a["channel"] == "phone" and
          a["agent_id"] is None and a["scores"]["tier"] == "A",
          "vip alert names the queued contact, queue, channel, no agent")
    r = reasons(a)
    check([x[:3] for x in r] == [("tier", "==", "A"), ("queued", "==", True),
                                 ("wait_s", ">=", 60)] and r[2][3] >= 60,
          "vip reasons: tier == A, queued, wait_s >= 60 (got %s)" % r)
    check(a["title"].startswith("Tier A customer waiting 6") and a["title"].endswith(" in vip"),
          "vip title renders wait and queue: %r" % a["title"])
    check(True, "no vip alert for a customer answered after 5 s, nor for a tier C one waiting, "
          "and one alert only within the 600 s cooldown")

    # -- negative_sentiment
    a = by["neg"]
    check(a["event_id"] == neg_hit["id"],
          "negative_sentiment fires on -0.6, not on -0.4 before, not on -0.9 in the cooldown")
    check(a["agent_id"] == "a-neg" and a["contact_id"] == K["neg"] and a["queue"] == "care" and
          a["channel"] == "chat", "it names the agent, contact, queue and channel")
    check(reasons(a) == [("in_contact", "==", True, True),
                         ("sentiment_last", "<=", -0.5, -0.6)],
          "reasons: in_contact, sentiment_last -0.6 <= -0.5 (got %s)" % reasons(a))
    check(t.doc(C["neg-after"])["sentiment"]["last"] == -0.6,
          "-0.6 after contact.ended is applied but raises nothing")

    # -- lateness
    a = by["late"]
    check(a["event_id"] == late_live["id"],
          "the late -0.8 raised no alert; the live -0.7 that followed did")

    # -- order_problem
    a = by["op-in"]
    check(a["event_id"] == op_in_hit["id"] and a["event_type"] == "order.updated",
          "order_problem fires on order.updated delayed during a contact")
    check(a["title"] == "Order o-A is delayed" and "o-A" in a["message"] and
          a["agent_id"] == "a-op" and a["contact_id"] == K["op-in"] and a["queue"] == "orders",
          "it names the order (%r) and the contact's agent and queue" % a["title"])
    check(reasons(a) == [("in_contact", "==", True, True), ("delayed_orders", ">=", 1, 1)],
          "reasons: in_contact, delayed_orders 1 >= 1 (got %s)" % reasons(a))
    check(t.doc(C["op-in"])["counts"]["delayed_orders"] == 2,
          "a second delayed order within the cooldown is counted, raises nothing")
    a = by["op-out"]
    check(a["event_id"] == op_out_hit["id"] and a["event_type"] == "contact.queued" and
          a["title"] == "Order o-C is delayed" and a["agent_id"] is None and
          a["contact_id"] == K["op-out"],
          "delayed out of contact: no alert; the contact that starts with it open: alert on "
          "its first event, none on contact.started (cooldown)")

    # -- cancel_intent
    a = by["cancel-b"]
    check(a["event_id"] == cancel_hit["id"] and a["scores"]["tier"] == "B" and
          reasons(a) == [("tier", "==", "B", "B"), ("intent", "==", "cancel", "cancel")],
          "cancel_intent: tier B web.visited intent cancel alerts (reasons %s); the compare "
          "visit before and cancel_requested after (cooldown) do not" % reasons(a))
    check(t.doc(C["cancel-c"])["counts"]["cancel_signals_30d"] == 1 and
          t.doc(C["cancel-c"])["tier"] == "C", "a tier C customer's cancel intent: no alert")

    # -- rising_value
    a = by["rise"]
    check(a["event_id"] == rise_hit["id"] and a["scores"]["trend"] == "rising" and
          reasons(a) == [("trend", "==", "rising", "rising"), ("revenue_90d", ">", 0, 300)],
          "rising_value: 300 in 90 days against 100 before alerts on order.placed (reasons %s);"
          " the next order within 30 days does not" % reasons(a))
    df = t.doc(C["flat"])
    check(df["trend"] == "stable" and df["money"]["revenue_90d"] == 100 and
          df["money"]["revenue_prev_90d"] == 100, "flat revenue (100, 100): stable, no alert")
    dr = t.doc(C["rise"])
    check(dr["money"]["revenue_90d"] == 350 and dr["money"]["revenue_prev_90d"] == 100,
          "rising customer's money: 350 against 100")

    # -- Latency metrics: every alert an event raised is timed from the event's Kafka
    # timestamp to the alert acknowledged, and from the event reaching the engine's loop to
    # the alert handed to the producer: the second is inside the first.
    whole_n = eng.metric("integral_engine_alert_latency_seconds_count")
    whole_s = eng.metric("integral_engine_alert_latency_seconds_sum")
    own_n = eng.metric("integral_engine_alert_build_latency_seconds_count")
    own_s = eng.metric("integral_engine_alert_build_latency_seconds_sum")
    check(whole_n >= len(alerts) - 1 and own_n == whole_n and 0 < own_s < whole_s,
          "alert latency metrics: %d alerts timed from the Kafka timestamp to acknowledged "
          "(%.1f ms on average), as many from the engine's loop to handed to Kafka (%.2f ms)"
          % (whole_n, 1000 * whole_s / max(whole_n, 1), 1000 * own_s / max(own_n, 1)))

    t.stop_engine(eng)
    check("event loop not empty" not in eng.log(), "engine stopped cleanly")

    # -- Cooldown and out-of-order events (last: a failure here is an engine bug, see
    # customers.c evaluate(): "event_ms >= last" lets an event older than the last firing
    # bypass the cooldown, and records that older time as the last firing).
    check(len(ooo) >= 1 and ooo[0]["event_id"] == ooo_hit["id"],
          "negative_sentiment fires on -0.6 (neg-ooo)")
    check(len(ooo) == 1,
          "an out-of-order sample 20 s older than the firing, within the 300 s cooldown, "
          "raises no second alert (got %d: %s)" % (len(ooo), [a["event_id"] for a in ooo]))
finally:
    t.close()
