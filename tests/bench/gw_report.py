"""gw_report.py RUN_DIR - the gateway benchmark's summary (tests/bench/README.md).

Reads what gateway_bench.sh left in RUN_DIR (the producer's outputs and expected alerts per
phase, ws_agents' summary and raw alert lines, CPU, memory and /metrics snapshots, exit
statuses), checks that every expected alert reached its own agent exactly once and nothing
else arrived, writes summary.json and summary.md there and prints the Markdown.

With --source sim (params.env source=sim) the expected alerts are the phase's alerts on the
alerts topic with an agent_id (read back with kcat: p<N>.expect is "alert_id agent"), each of
which must reach that agent exactly once; alerts without agent_id (held for the customer's next
contact) count when they arrive, at most once per agent and only at an agent the customer was
assigned to (p<N>.assignments.jsonl).

Exit 1 when a correctness check failed (an alert missing, duplicated, unexpected or at the
wrong agent, a connection lost or never made, a producer delivery failure, a service's exit
status), 0 otherwise. Latency targets are reported, not failed.
"""
import datetime
import json
import math
import os
import re
import sys

from bench_common import cpu_snapshots, cpu_ticks_s, delta, histogram, hist_quantile, kv, \
    metrics, window_s


def hist_summary(buckets):
    if not buckets or buckets[-1][1] <= 0:
        return {"count": 0}
    ms = lambda s: None if s is None else round(s * 1000, 2)
    return {"count": int(buckets[-1][1]), "p50_ms": ms(hist_quantile(buckets, 0.5)),
            "p99_ms": ms(hist_quantile(buckets, 0.99))}


def cpu_seconds(run, start, end, who):
    a, b = cpu_snapshots(run, start, end)
    if not a or not b or who + "_utime" not in a or who + "_utime" not in b:
        return None
    return cpu_ticks_s(a, b, who)


def cpu_window_s(run, start, end):
    a, b = cpu_snapshots(run, start, end)
    return window_s(a, b) if a and b else None


PROCS = ["engine", "gateway", "redis", "broker", "agents"]
PROC_NAMES = {"engine": "integral-engine", "gateway": "integral-gateway",
              "redis": "redis-server", "broker": "integral-devbroker", "agents": "ws_agents"}


def fmt(v, nd=1):
    if v is None:
        return "–"
    if isinstance(v, (int,)) or (isinstance(v, float) and v.is_integer() and abs(v) >= 1000):
        return "{:,}".format(int(v))
    return "{:,.{}f}".format(v, nd)


def median(values):
    v = sorted(x for x in values if x is not None)
    return v[len(v) // 2] if v else None


def event_mix(after, before):
    """Events the engine parsed during the phase, by type."""
    out = {}
    for (n, labels), v in after.items():
        if n == "integral_engine_events_total":
            m = re.search(r'type="([^"]*)"', labels)
            d = v - before.get((n, labels), 0.0)
            if m and d > 0:
                out[m.group(1)] = int(d)
    return out


def latency_stats(values_us):
    """ws_agents' series summary (nearest rank, ms) of latencies in microseconds."""
    v = sorted(values_us)
    if not v:
        return {"n": 0}
    r = lambda q: v[min(len(v), max(1, int(math.ceil(q * len(v) - 1e-9)))) - 1] / 1000.0
    return {"n": len(v), "mean": sum(v) / len(v) / 1000.0, "min": v[0] / 1000.0,
            "p50": r(0.5), "p90": r(0.9), "p99": r(0.99), "p999": r(0.999),
            "max": v[-1] / 1000.0}


def rfc3339_ms(text):
    try:
        t = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
        return t.timestamp() * 1000.0
    except ValueError:
        return None


def raw_alert_lines(run, stack, min_fields):
    """(line, fields) of the stack's ws_agents raw alert lines with at least min_fields."""
    raw = os.path.join(run, stack + ".agents.raw")
    if not os.path.exists(raw):
        return
    with open(raw) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= min_fields:
                yield line, parts


def add_example(examples, kind, line):
    """Keeps the first five lines of each kind of problem."""
    if len(examples[kind]) < 5:
        examples[kind].append(line.strip())


def sim_join(run, phases, stacks):
    """--source sim: the phase's alerts on Kafka against what the sockets got."""
    expected = {}      # alert id -> agent (alerts with agent_id)
    phase_of = {}      # alert id -> phase, every alert of a phase on Kafka
    customer_of = {}   # alert id -> customer
    held_on_kafka = 0
    times_of = {}      # alert id -> (event time, built time), ms
    segments = {}      # phase -> {"to_engine"|"to_log"|"to_socket"|"held": [us]}
    assigned = {}      # customer -> agents it was assigned to
    for ph in phases:
        n = ph["phase"]
        with open(os.path.join(run, "p%d.expect" % n)) as f:
            for line in f:
                aid, agent = line.split()
                expected[aid] = agent
        prefix = "sim-%d-" % n
        path = os.path.join(run, "p%d.alerts.jsonl" % n)
        for line in open(path) if os.path.exists(path) else []:
            try:
                a = json.loads(line)
            except ValueError:
                continue
            if str(a.get("event_id", "")).startswith(prefix):
                if a["id"] not in phase_of and not a.get("agent_id"):
                    held_on_kafka += 1
                phase_of[a["id"]] = n
                customer_of[a["id"]] = a.get("customer_id")
                times_of[a["id"]] = (rfc3339_ms(a.get("event_time")), rfc3339_ms(a.get("time")))
        path = os.path.join(run, "p%d.assignments.jsonl" % n)
        for line in open(path) if os.path.exists(path) else []:
            try:
                a = json.loads(line)
            except ValueError:
                continue
            if a.get("customer_id") and a.get("agent_id"):
                assigned.setdefault((ph["stack"], a["customer_id"]), set()).add(a["agent_id"])
    received, held_seen = {}, set()
    dup = wrong = unexpected = held_received = held_dup = held_misplaced = 0
    examples = {"missing": [], "duplicate": [], "wrong_agent": [], "unexpected": [],
                "held_misplaced": []}
    arrivals = {}
    stack_phases = {}
    for ph in phases:
        stack_phases.setdefault(ph["stack"], set()).add(ph["phase"])

    for st in stacks:
        for line, parts in raw_alert_lines(run, st, 7):
            agent, eid, aid, alert_agent = parts[0], parts[1], parts[2], parts[6]
            m = re.match(r"sim-([0-9]+)-", eid)
            if m and int(parts[5]) >= 0 and alert_agent != "-":
                # Held alerts waited for the customer's contact: not in the latency.
                arrivals.setdefault(int(m.group(1)), []).append(int(parts[5]))
            if aid not in phase_of or phase_of[aid] not in stack_phases[st]:
                unexpected += 1
                add_example(examples, "unexpected", line)
                continue
            ev_ms, built_ms = times_of.get(aid, (None, None))
            seg = segments.setdefault(phase_of[aid], {})
            if alert_agent == "-" and ev_ms is not None:
                seg.setdefault("held", []).append(int(parts[4]) - ev_ms * 1000)
            elif ev_ms is not None and built_ms is not None:
                seq_ms = int(parts[3].split("-")[0]) if parts[3] != "-" else None
                seg.setdefault("to_engine", []).append((built_ms - ev_ms) * 1000)
                if seq_ms is not None:
                    seg.setdefault("to_log", []).append((seq_ms - built_ms) * 1000)
                    seg.setdefault("to_socket", []).append(int(parts[4]) - seq_ms * 1000)
            if alert_agent == "-":  # held, handed over with a screen pop
                held_received += 1
                if (aid, agent) in held_seen:
                    held_dup += 1
                    add_example(examples, "duplicate", line)
                    continue
                held_seen.add((aid, agent))
                if agent not in assigned.get((st, customer_of.get(aid)), ()):
                    held_misplaced += 1
                    add_example(examples, "held_misplaced", line)
                continue
            if aid in received:
                dup += 1
                add_example(examples, "duplicate", line)
                continue
            received[aid] = agent
            if aid not in expected:
                unexpected += 1
                add_example(examples, "unexpected", line)
            elif expected[aid] != agent:
                wrong += 1
                add_example(examples, "wrong_agent", line)
    missing_by_phase = {}
    for aid, agent in expected.items():
        if aid not in received:
            p = phase_of.get(aid, 0)
            missing_by_phase[p] = missing_by_phase.get(p, 0) + 1
            add_example(examples, "missing", "%s %s" % (aid, agent))
    return {"expected": expected, "received": received, "dup": dup, "wrong": wrong,
            "unexpected": unexpected, "examples": examples, "arrivals": arrivals,
            "missing_by_phase": missing_by_phase, "held_received": held_received,
            "segments": segments,
            "held_distinct": len({a for a, _ in held_seen}), "held_dup": held_dup,
            "held_misplaced": held_misplaced, "held_on_kafka": held_on_kafka}


def main():
    run = sys.argv[1]
    params = kv(os.path.join(run, "params.env"))
    target = float(params.get("target_p99_ms", 50))
    n_agents = int(params.get("agents", 0))

    # phases.txt: "phase rate seconds kind stack" per phase run (warm-ups included).
    phases = []
    with open(os.path.join(run, "phases.txt")) as f:
        for line in f:
            p, rate, seconds, kind, stack = line.split()
            phases.append({"phase": int(p), "rate": int(rate), "seconds": int(seconds),
                           "kind": kind, "stack": stack})
    stacks = sorted({ph["stack"] for ph in phases}, key=lambda s: int(s[1:]))

    # Per stack: ws_agents' summary, exit statuses, memory around the connections.
    agents, exits, conn_mem = {}, {}, {}
    for st in stacks:
        path = os.path.join(run, st + ".agents.json")
        agents[st] = json.load(open(path)) if os.path.exists(path) else {}
        exits[st] = kv(os.path.join(run, st + ".exits.env"))
        before = kv(os.path.join(run, "memory.%s.before_connect" % st)).get("gateway_rss_kb")
        after = kv(os.path.join(run, "memory.%s.after_connect" % st)).get("gateway_rss_kb")
        conn_mem[st] = {"rss_kb_before": before, "rss_kb_after": after,
                        "kb_per_1000": (after - before) * 1000.0 / n_agents
                        if before and after and n_agents else None}

    sim = params.get("source") == "sim"
    if sim:
        join = sim_join(run, phases, stacks)
    # The join: expected (event_id -> agent) against what the sockets got, all stacks.
    expected = {}
    for ph in ([] if sim else phases):
        with open(os.path.join(run, "p%d.expect" % ph["phase"])) as f:
            for line in f:
                eid, agent = line.split()
                expected[eid] = agent
    received = {}
    dup, wrong, unexpected = 0, 0, 0
    examples = {"missing": [], "duplicate": [], "wrong_agent": [], "unexpected": []}
    arrivals = {}  # phase -> latencies (us) in arrival order
    for st in ([] if sim else stacks):
        for line, parts in raw_alert_lines(run, st, 6):
            agent, eid = parts[0], parts[1]
            m = re.match(r"e([0-9]+)-", eid)
            if m and int(parts[5]) >= 0:
                arrivals.setdefault(int(m.group(1)), []).append(int(parts[5]))
            if eid in received:
                dup += 1
                add_example(examples, "duplicate", line)
                continue
            received[eid] = agent
            if eid not in expected:
                unexpected += 1
                add_example(examples, "unexpected", line)
            elif expected[eid] != agent:
                wrong += 1
                add_example(examples, "wrong_agent", line)
    missing_by_phase = {}
    for eid, agent in expected.items():
        if eid not in received:
            p = int(eid[1:].split("-")[0])
            missing_by_phase[p] = missing_by_phase.get(p, 0) + 1
            add_example(examples, "missing", "%s %s" % (eid, agent))
    missing = sum(missing_by_phase.values())
    if sim:
        expected, received, dup, wrong, unexpected = join["expected"], join["received"], \
            join["dup"], join["wrong"], join["unexpected"]
        examples, arrivals, missing_by_phase = join["examples"], join["arrivals"], \
            join["missing_by_phase"]
        missing = sum(missing_by_phase.values())

    rows = []
    for ph in phases:
        n, st = ph["phase"], ph["stack"]
        prod = kv(os.path.join(run, "p%d.produce" % n))
        a = next((x for x in agents[st].get("phases", []) if x["phase"] == n), {})
        eb, ea = metrics(os.path.join(run, "metrics.engine.p%d.before" % n)), \
            metrics(os.path.join(run, "metrics.engine.p%d.after" % n))
        gb, ga = metrics(os.path.join(run, "metrics.gateway.p%d.before" % n)), \
            metrics(os.path.join(run, "metrics.gateway.p%d.after" % n))
        end_mem = kv(os.path.join(run, "memory.%s.end" % st))
        cpu = {w: cpu_seconds(run, "p%d.start" % n, "p%d.end" % n, w) for w in PROCS}
        win = cpu_window_s(run, "p%d.start" % n, "p%d.end" % n)
        events = prod.get("produced", 0)
        lat = a.get("latency_ms", {})
        seq = arrivals.get(n, [])
        seg = {}
        if sim:  # the alerts with an agent_id only, segments from the alerts read back
            lat = latency_stats(seq)
            seg = {k: latency_stats(v) for k, v in join["segments"].get(n, {}).items()}
        quarter = max(1, len(seq) // 4)
        med = lambda v: sorted(v)[len(v) // 2] / 1000.0 if v else None
        row = {
            "phase": n, "kind": ph["kind"], "stack": st, "rate_target": ph["rate"],
            "seconds": ph["seconds"], "rate_achieved": prod.get("rate_achieved"),
            "max_behind_schedule_ms": prod.get("max_behind_schedule_ms"),
            "producer_flush_s": (prod["flushed_us"] - prod["last_produce_us"]) / 1e6
            if "flushed_us" in prod else None,
            "events": events, "alerts_expected": prod.get("alerts_expected"),
            "alerts_received": a.get("alerts", 0) - (a.get("held_alerts", 0) if sim else 0),
            "held_alerts_received": a.get("held_alerts", 0),
            "held_alerts_on_kafka": prod.get("alerts_held"),
            "alerts_on_kafka": prod.get("alerts_on_kafka"),
            "event_mix": event_mix(ea, eb),
            "alerts_missing": missing_by_phase.get(n, 0),
            "screen_pops_expected": prod.get("screen_pops_expected"),
            "screen_pops_received": a.get("screen_pops", 0),
            "latency_ms": lat,
            "latency_event_time_ms": a.get("latency_event_time_ms", {}),
            "produced_to_alert_built_ms": seg.get("to_engine") if sim else
            a.get("produced_to_alert_built_ms", {}),
            "alert_built_to_stored_ms": seg.get("to_log") if sim else
            a.get("alert_built_to_stored_ms", {}),
            "stored_to_received_ms": seg.get("to_socket") if sim else
            a.get("stored_to_received_ms", {}),
            "held_alert_ms": seg.get("held", {"n": 0}) if sim else None,
            "screen_pop_ms": a.get("screen_pop_ms", {}),
            "latency_trend": {"first_quarter_p50_ms": med(seq[:quarter]),
                              "last_quarter_p50_ms": med(seq[-quarter:])},
            "engine_consume_latency": hist_summary(
                histogram(ea, eb, "integral_engine_consume_latency_seconds")),
            "engine_alert_latency": hist_summary(
                histogram(ea, eb, "integral_engine_alert_latency_seconds")),
            "engine_events": delta(ea, eb, "integral_engine_events_total"),
            "engine_alerts": delta(ea, eb, "integral_engine_alerts_total"),
            "engine_deadlettered": delta(ea, eb, "integral_engine_deadlettered_total"),
            "gateway_alerts_sent": delta(ga, gb, "integral_gateway_alerts_sent"),
            "gateway_screen_pops": delta(ga, gb, "integral_gateway_screen_pops"),
            "gateway_ws_messages_out": delta(ga, gb, "integral_gateway_ws_messages_out"),
            "cpu_window_s": win,
            "cpu_s": cpu,
            "cpu_us_per_event": {w: (None if c is None or not events else c * 1e6 / events)
                                 for w, c in cpu.items()},
            "cpu_share_of_core": {w: (None if c is None or not win else c / win)
                                  for w, c in cpu.items()},
            "producer_cpu_s": prod.get("cpu_user_s", 0) + prod.get("cpu_sys_s", 0),
            "peak_rss_kb": {w: end_mem.get(w + "_hwm_kb") for w in PROCS},
            "gateway_connection_memory": conn_mem.get(st),
            "redis_memory": kv(os.path.join(run, st + ".redis.memory")),
        }
        if agents[st].get("max_rss_kb"):
            row["peak_rss_kb"]["agents"] = agents[st]["max_rss_kb"]
        row["meets_target"] = bool(lat.get("p99") is not None and lat["p99"] < target and
                                   row["alerts_missing"] == 0 and
                                   row["alerts_received"] == row["alerts_expected"] and
                                   (prod.get("rate_achieved") or 0) >= 0.97 * ph["rate"])
        rows.append(row)

    measured = [r for r in rows if r["kind"] != "warmup"]
    passing = [r["rate_target"] for r in measured if r["meets_target"]]
    failing = [r["rate_target"] for r in measured if not r["meets_target"]]
    best = max(passing) if passing else None
    above = min([f for f in failing if best is None or f > best], default=None)
    per_1000 = median(m["kb_per_1000"] for m in conn_mem.values())
    idle = {}  # share of a core with the agents connected and no events, median of the stacks
    for w in PROCS:
        shares = []
        for st in stacks:
            c, t = cpu_seconds(run, st + ".idle.start", st + ".idle.end", w), \
                cpu_window_s(run, st + ".idle.start", st + ".idle.end")
            if c is not None and t:
                shares.append(c / t)
        idle[w] = median(shares)
    total_cpu = {w: sum(r["cpu_s"][w] or 0 for r in measured) for w in PROCS}
    peak_rss = {w: max([r["peak_rss_kb"][w] or 0 for r in measured] or [0]) or None for w in PROCS}

    all_agents = list(agents.values())
    checks = {
        "all_agents_authenticated": all(a.get("authenticated") == n_agents for a in all_agents),
        "no_connection_failed": all(a.get("failed", 1) == 0 for a in all_agents),
        "no_connection_dropped": all(a.get("dropped", 1) == 0 for a in all_agents),
        "no_alert_missing": missing == 0,
        "no_alert_duplicated": dup == 0 and all(a.get("seq_regressions", 1) == 0 for a in all_agents),
        "no_alert_unexpected": unexpected == 0,
        "no_alert_at_wrong_agent": wrong == 0 and all(a.get("wrong_agent", 1) == 0 for a in all_agents),
        "no_held_alert_twice_or_misplaced": not sim or (join["held_dup"] == 0 and
                                                        join["held_misplaced"] == 0),
        "received_equals_expected": all(r["alerts_received"] == r["alerts_expected"] for r in rows),
        "producer_delivered_everything": all(
            kv(os.path.join(run, "p%d.produce" % r["phase"])).get("failed", 1) == 0 for r in rows),
        "no_dead_letters": all(r["engine_deadlettered"] == 0 for r in rows),
        "gateway_exit_0": all(e.get("gateway_exit") == 0 for e in exits.values()),
        "engine_exit_0": all(e.get("engine_exit") == 0 for e in exits.values()),
        "no_phase_timed_out": "failed_phase" not in params,
    }
    summary = {
        "params": params, "exits": exits, "checks": checks, "ok": all(checks.values()),
        "alerts": {"expected": len(expected), "received_distinct": len(received),
                   "missing": missing, "duplicates": dup, "unexpected": unexpected,
                   "wrong_agent": wrong, "examples": examples,
                   "held": ({k: join[k] for k in ("held_received", "held_distinct", "held_dup",
                                                  "held_misplaced", "held_on_kafka")}
                            if sim else None)},
        "connections": {st: {k: a.get(k) for k in (
            "agents", "connected", "authenticated", "failed", "dropped", "connect_s",
            "agents_with_alerts", "alerts_per_agent_min", "alerts_per_agent_max",
            "close_codes_received", "error_messages", "subprotocol_mismatch")}
            for st, a in agents.items()},
        "gateway_memory_per_stack": conn_mem,
        "gateway_kb_per_1000_connections_median": per_1000,
        "idle_cpu_share_of_core_median": idle,
        "highest_rate_meeting_target": best, "lowest_rate_missing_target_above": above,
        "total_cpu_s_measured_phases": total_cpu,
        "peak_rss_kb_max_over_phases": peak_rss,
        "phases": rows,
    }
    with open(os.path.join(run, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, default=str)

    # Markdown
    md = []
    p = params
    after = "?"
    if os.path.exists(os.path.join(run, "uptime.after")):
        after = open(os.path.join(run, "uptime.after")).read().split("load average: ")[-1].strip()
    md.append("`%s` on %s: %s × %s, %.1f GiB; load average before %s, after %s; `%s` "
              "(%s build; uncommitted: %s)." % (
                  p.get("command"), p.get("date"), p.get("nproc"), p.get("cpu_model"),
                  p.get("mem_total_kb", 0) / 1048576.0, p.get("load_before"), after,
                  p.get("git_rev"), p.get("build_type"), p.get("git_dirty_files") or "none"))
    md.append("")
    if sim:
        md.append("%d agents connected (A001 …, integral-sim's), each with its own JWT; every "
                  "phase on a fresh stack; events from `integral-sim --rate R --count R×s "
                  "--seed PHASE` (%s customers, no history, %s contacts/h at the peak); Redis "
                  "AOF %s; `kafka.fetch_wait_max_ms` %s for the engine and the gateway." % (
                      n_agents, fmt(p.get("sim_customers")), fmt(p.get("sim_contacts_per_hour")),
                      p.get("aof"), p.get("fetch_wait_ms")))
    else:
        md.append("%d agents connected, each with its own JWT; every phase on a fresh stack; "
                  "contact share %s (%s stories at once); Redis AOF %s; "
                  "`kafka.fetch_wait_max_ms` %s for the engine and the gateway." % (
                      n_agents, p.get("contact_share"), p.get("slots"), p.get("aof"),
                      p.get("fetch_wait_ms")))
    md.append("")
    md.append("| events/s (achieved) | s | events | alerts expected / received | "
              "p50 | p99 | p99.9 | max (ms) | p50, first → last ¼ of the alerts (ms) | "
              "CPU s: engine / gateway / redis / broker | peak RSS MiB: engine / gateway / "
              "redis / broker | p99 < %s ms |" % fmt(target, 0))
    md.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    mib = lambda kb: None if kb is None else kb / 1024.0
    for r in measured:
        lat, c, m = r["latency_ms"], r["cpu_s"], r["peak_rss_kb"]
        md.append("| %s (%s)%s | %s | %s | %s / %s | %s | %s | %s | %s | %s → %s | "
                  "%s / %s / %s / %s | %s / %s / %s / %s | %s |" % (
                      fmt(r["rate_target"]), fmt(r["rate_achieved"]),
                      " search" if r["kind"] == "search" else "",
                      r["seconds"], fmt(r["events"]), fmt(r["alerts_expected"]),
                      fmt(r["alerts_received"]), fmt(lat.get("p50")), fmt(lat.get("p99")),
                      fmt(lat.get("p999")), fmt(lat.get("max")),
                      fmt(r["latency_trend"]["first_quarter_p50_ms"]),
                      fmt(r["latency_trend"]["last_quarter_p50_ms"]),
                      fmt(c["engine"]), fmt(c["gateway"]), fmt(c["redis"]), fmt(c["broker"]),
                      fmt(mib(m["engine"]), 0), fmt(mib(m["gateway"]), 0),
                      fmt(mib(m["redis"]), 0), fmt(mib(m["broker"]), 0),
                      "yes" if r["meets_target"] else "**no**"))
    md.append("")
    md.append("Where the time goes, p50 / p99 in ms. Per alert, from its own timestamps (%s, "
              "`alert.time` = built by the engine, `seq` = Redis `XADD` in the gateway, all on "
              "one clock), and the engine's histograms:" % (
                  "`alert.event_time` = the simulator's production time (ms), alerts with an "
                  "agent_id only" if sim else "event id = production µs"))
    md.append("")
    md.append("| events/s | engine histogram: event → consumed | produced → engine built "
              "the alert | built → in the agent's log | log → on the socket | screen pop "
              "(contact.started → socket) | producer flush after its last event (s) |")
    md.append("|---|---|---|---|---|---|---|")
    for r in measured:
        seg = lambda k: "%s / %s" % (fmt(r[k].get("p50")), fmt(r[k].get("p99")))
        ec = r["engine_consume_latency"]
        md.append("| %s | %s / %s | %s | %s | %s | %s | %s |" % (
            fmt(r["rate_target"]), fmt(ec.get("p50_ms")), fmt(ec.get("p99_ms")),
            seg("produced_to_alert_built_ms"), seg("alert_built_to_stored_ms"),
            seg("stored_to_received_ms"), seg("screen_pop_ms"), fmt(r["producer_flush_s"], 2)))
    md.append("")
    md.append("| | |")
    md.append("|---|---|")
    md.append("| highest rate with p99 < %s ms (all delivered, on schedule) | %s events/s "
              "(lowest failing above it: %s) |" % (fmt(target, 0), fmt(best), fmt(above)))
    mem_cells = ", ".join("%s → %s kB" % (fmt(m["rss_kb_before"]), fmt(m["rss_kb_after"]))
                          for m in conn_mem.values())
    md.append("| gateway memory per 1,000 connections (RSS after − before connecting %d agents, "
              "median of the stacks) | **%s kB** (%s) |" % (n_agents, fmt(per_1000, 0), mem_cells))
    md.append("| idle, %d agents connected, no events (share of a core, median of the stacks): "
              "engine / gateway / redis / broker | %s / %s / %s / %s |" % (
                  n_agents, fmt(idle["engine"], 3), fmt(idle["gateway"], 3),
                  fmt(idle["redis"], 3), fmt(idle["broker"], 3)))
    md.append("| connecting %d agents (TCP + handshake + auth) | %s s (median) |" % (
        n_agents, fmt(median(a.get("connect_s") for a in all_agents), 2)))
    md.append("| alerts expected / received (distinct) / missing / duplicated / unexpected / "
              "wrong agent, all phases and warm-ups | %s / %s / %d / %d / %d / %d |" % (
                  fmt(len(expected)), fmt(len(received)), missing, dup, unexpected, wrong))
    if sim:
        md.append("| held alerts (no agent_id on Kafka) received with a screen pop: received / "
                  "distinct / twice at one agent / at an agent never assigned the customer; "
                  "held on Kafka | %s / %s / %d / %d; %s |" % (
                      fmt(join["held_received"]), fmt(join["held_distinct"]), join["held_dup"],
                      join["held_misplaced"], fmt(join["held_on_kafka"])))
        md.append("")
        md.append("Event mix (engine `integral_engine_events_total` by type, measured phases); "
                  "alerts on Kafka with / without agent_id; agents that got an alert:")
        md.append("")
        md.append("| events/s | contact.* | sentiment.sampled | agent.state | customer.profile "
                  "| other | alerts with agent_id / held | held delivered | agents with alerts |")
        md.append("|---|---|---|---|---|---|---|---|---|")
        for r in measured:
            mix = r["event_mix"]
            tot = sum(mix.values()) or 1
            share = lambda v: "%.0f %%" % (100.0 * v / tot)
            contact = sum(v for k, v in mix.items() if k.startswith("contact."))
            named = contact + mix.get("sentiment.sampled", 0) + mix.get("agent.state", 0) + \
                mix.get("customer.profile", 0)
            md.append("| %s | %s | %s | %s | %s | %s | %s / %s | %s | %s |" % (
                fmt(r["rate_target"]), share(contact), share(mix.get("sentiment.sampled", 0)),
                share(mix.get("agent.state", 0)), share(mix.get("customer.profile", 0)),
                share(tot - named), fmt(r["alerts_expected"]), fmt(r["held_alerts_on_kafka"]),
                fmt(r["held_alerts_received"]),
                fmt(agents[r["stack"]].get("agents_with_alerts"))))
        md.append("")
    md.append("| checks | %s |" % ("all passed" if summary["ok"] else "FAILED: " + ", ".join(
        k for k, v in checks.items() if not v)))
    text = "\n".join(md) + "\n"
    with open(os.path.join(run, "summary.md"), "w") as f:
        f.write(text)
    print(text)
    print("summary: %s" % os.path.join(run, "summary.json"))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
