"""The repeat-contact rule, end to end: the 4th support contact within 30 days alerts on the
first event of that contact; the 3rd does not; a contact 31 days back does not count; several
events of one contact count once. Events go in through Kafka (confluent-kafka), state is read
back from Redis, alerts from the alerts topic."""
import datetime

from engine_it import EngineTest, check, event, now_utc

t = EngineTest("rules")
try:
    eng = t.start_engine()
    now = now_utc()
    day = datetime.timedelta(days=1)
    minute = datetime.timedelta(minutes=1)

    def contact(cid, n, at, reason="support", events=("contact.queued", "contact.started")):
        out = []
        for i, type_ in enumerate(events):
            data = {"contact_id": "k%d" % n, "channel": "phone", "queue": "billing",
                    "reason": reason}
            if type_ == "contact.started":
                data["agent_id"] = "a-1"
            out.append(event(type_, cid, data, at=at + datetime.timedelta(seconds=i)))
        return out

    three = t.cid("three")
    four = t.cid("four")
    old = t.cid("old")
    # "three": 3 support contacts (two events each) -> no alert.
    t.produce(contact(three, 1, now - 9 * day) + contact(three, 2, now - 5 * day) +
              contact(three, 3, now - minute))
    # "old": one contact 31 days back, then 3 recent ones -> 3 in 30 days, no alert.
    t.produce(contact(old, 1, now - 31 * day) + contact(old, 2, now - 3 * day) +
              contact(old, 3, now - 2 * day) + contact(old, 4, now - minute))
    # "four": the 4th support contact in 30 days -> one alert, on its first event.
    four_events = (contact(four, 1, now - 20 * day) + contact(four, 2, now - 10 * day) +
                   contact(four, 3, now - 5 * day) + contact(four, 4, now - datetime.timedelta(seconds=30)))
    t.produce(four_events)

    alerts = t.read_alerts(expect=1, timeout=30, settle=2.0)
    repeat = [a for a in alerts if a["rule"] == "repeat_contact"]
    check(len(repeat) == 1, "exactly one repeat_contact alert (got %d)" % len(repeat))
    a = repeat[0]
    check(a["customer_id"] == four, "the alert is for the customer with 4 support contacts")
    first_of_fourth = four_events[6]  # contact k4's contact.queued
    check(a["event_id"] == first_of_fourth["id"], "raised on the first event of the 4th contact")
    check(a["contact_id"] == "k4" and a["queue"] == "billing", "alert names contact and queue")
    check(any(r["feature"] == "support_contacts_30d" and r["value"] == 4 for r in a["reasons"]),
          "reasons show support_contacts_30d = 4")
    check(len(a["id"]) == 32, "alert id is 32 hex characters")

    t.wait(lambda: (t.doc(three) or {}).get("counts", {}).get("support_contacts_30d") == 3, 20,
           "state of the customer with 3 contacts")
    docs = t.docs([three, four, old])
    check(docs[three]["counts"]["support_contacts_30d"] == 3,
          "3 support contacts counted once each (6 events)")
    check(docs[old]["counts"]["contacts_30d"] == 3, "a contact 31 days back is not counted")
    check(docs[four]["counts"]["support_contacts_30d"] == 4, "the 4th contact is counted")
    check(docs[four]["contact"]["id"] == "k4" and docs[four]["contact"]["agent_id"] == "a-1",
          "the current contact and its agent are in the summary")
    t.stop_engine(eng)
    check("event loop not empty" not in eng.log(), "engine stopped cleanly")
finally:
    t.close()
