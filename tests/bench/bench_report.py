"""bench_report.py RUN_DIR - the engine benchmark's summary (tests/bench/README.md).

Reads what engine_bench.sh left in RUN_DIR (producer and waiter outputs, CPU and /metrics
snapshots, memory, the alert probe's result, the engine log), writes summary.json and
summary.txt there, prints the table, and exits 1 when a correctness check failed (data loss,
dead letters, events not all counted, engine exit status), 0 otherwise. Targets missed are
reported, not failed: the numbers depend on the machine.
"""
import json
import math
import os
import re
import sys

from bench_common import cpu_snapshots, cpu_ticks_s, delta, histogram, hist_quantile, kv, \
    metrics, total, window_s

TARGET_CPU_US = 12.0     # engine + Redis CPU per event
TARGET_P99_MS = 5.0      # event produced -> alert acknowledged, p99


def by_label(ms, name, label):
    out = {}
    for (n, labels), v in ms.items():
        if n == name:
            m = re.search(label + r'="([^"]*)"', labels)
            out[m.group(1) if m else ""] = v
    return out


def hist_summary(buckets):
    if not buckets or buckets[-1][1] <= 0:
        return {"count": 0}
    n = buckets[-1][1]
    top = None  # upper bound of the highest non-empty bucket: the max is at most this
    prev = 0.0
    for le, c in buckets:
        if c > prev:
            top = le
        prev = c
    within = dict(buckets)
    le5 = within.get(0.005)
    ms = lambda s: None if s is None else round(s * 1000, 3)
    return {
        "count": int(n),
        "p50_ms": ms(hist_quantile(buckets, 0.50)),
        "p90_ms": ms(hist_quantile(buckets, 0.90)),
        "p99_ms": ms(hist_quantile(buckets, 0.99)),
        "max_le_ms": None if top is None else ("+Inf" if top == math.inf else ms(top)),
        "share_le_5ms": None if le5 is None else round(le5 / n, 4),
        "buckets_ms": [("+Inf" if le == math.inf else ms(le), int(c)) for le, c in buckets],
    }


def fmt(v, unit=""):
    return "-" if v is None else "%s%s" % (v, unit)


def hist_text(h, within=True):
    """A histogram summary (hist_summary) as one line of the report."""
    text = "n=%s p50 %s p90 %s p99 %s ms, max <= %s ms" % (
        h.get("count"), fmt(h.get("p50_ms")), fmt(h.get("p90_ms")), fmt(h.get("p99_ms")),
        fmt(h.get("max_le_ms")))
    return text + (", %s within 5 ms" % fmt(h.get("share_le_5ms")) if within else "")


def faults(a, b, who):
    """Minor page faults of process WHO between snapshots a and b (None if not recorded)."""
    key = who + "_minflt"
    return int(b[key] - a[key]) if key in a and key in b else None


def cpu_window(run, start, end):
    a, b = cpu_snapshots(run, start, end)
    if not a or not b:
        return None
    ticks = lambda who, fields: cpu_ticks_s(a, b, who, fields)
    info = lambda k: b.get("redis_info_" + k, 0.0) - a.get("redis_info_" + k, 0.0)
    return {
        "window_s": window_s(a, b),
        "engine_s": ticks("engine", ["utime", "stime"]),
        "engine_sys_s": ticks("engine", ["stime"]),
        "engine_page_faults": faults(a, b, "engine"),
        "redis_page_faults": faults(a, b, "redis"),
        "redis_s": ticks("redis", ["utime", "stime"]),
        "redis_children_s": ticks("redis", ["cutime", "cstime"]),
        "redis_info_s": info("used_cpu_user") + info("used_cpu_sys"),
        "redis_info_children_s": info("used_cpu_user_children") + info("used_cpu_sys_children"),
        "broker_s": ticks("broker", ["utime", "stime"]),
        "machine_idle_share": (b["machine_idle"] - a["machine_idle"]) /
        max(1.0, b["machine_total"] - a["machine_total"]) if "machine_idle" in a else None,
        "aof_rewrites": b.get("redis_aof_rewrites", 0) - a.get("redis_aof_rewrites", 0),
        "aof_rewrite_in_progress_at_end": b.get("redis_aof_rewrite_in_progress", 0),
    }


def rate_between(timeline_path, total_events, lo=0.1, hi=0.9):
    """Applied events/s between lo and hi of the total (the steady state, without the start
    and the tail)."""
    if not os.path.exists(timeline_path) or total_events <= 0:
        return None
    pts = []
    with open(timeline_path) as f:
        for line in f:
            f_ = line.split()
            pts.append((int(f_[0]), int(f_[1])))
    if not pts:
        return None
    base = pts[0][1]
    t_lo = next((t for t, n in pts if n - base >= lo * total_events), None)
    t_hi = next((t for t, n in pts if n - base >= hi * total_events), None)
    if t_lo is None or t_hi is None or t_hi <= t_lo:
        return None
    return (hi - lo) * total_events / ((t_hi - t_lo) / 1e6)


def backlog(timeline_path, first_us, rate, count):
    """Largest number of events the engine had not processed yet (by its events_total) behind
    the producer's schedule (rate events/s from first_us), over the waiter's polls."""
    if not os.path.exists(timeline_path) or not rate:
        return None
    worst = 0
    with open(timeline_path) as f:
        for line in f:
            t, _, processed = (int(x) for x in line.split())
            due = min(count, max(0.0, (t - first_us) / 1e6 * rate))
            worst = max(worst, due - processed)
    return int(worst)


def main():
    run = sys.argv[1]
    P = lambda name: os.path.join(run, name)
    params = kv(P("params.env"))
    with open(P("uptime.before")) as f:
        load_before = f.read().strip()
    load_after = ""
    if os.path.exists(P("uptime.after")):
        with open(P("uptime.after")) as f:
            load_after = f.read().strip()
    engine_log = open(P("engine.log"), errors="replace").read()
    checks = {}
    problems = []

    idle = cpu_window(run, "idle.start", "idle.end")

    # ---------------- Phase 1
    prod1, app1 = kv(P("p1.produce")), kv(P("p1.applied"))
    m1a, m1b = metrics(P("metrics.p1.after")), metrics(P("metrics.p1.before"))
    cpu1 = cpu_window(run, "p1.start", "p1.end")
    mem1 = kv(P("p1.memory"))
    events1 = prod1.get("produced", 0)
    elapsed1 = ((app1["done_us"] - prod1.get("first_produce_us", 0)) / 1e6
                if "done_us" in app1 else 0.0)
    failed_phase = params.get("failed_phase")
    processed_at_end = None  # the engine's events_total at the waiter's last poll
    if os.path.exists(P("p1.timeline")):
        last = None
        for line in open(P("p1.timeline")):
            last = line.split()
        if last:
            processed_at_end = int(last[2])
    high1 = 0
    low1 = 0
    if os.path.exists(P("p1.watermarks")):
        for line in open(P("p1.watermarks")):
            _, lo, hi = line.split()
            high1 += int(hi)
            low1 += int(lo)
    counted1 = delta(m1a, m1b, "integral_engine_events_total")
    docs1 = delta(m1a, m1b, "integral_engine_documents_written_total")
    writes1 = delta(m1a, m1b, "integral_engine_writes_total")
    alerts1 = {k: v - by_label(m1b, "integral_engine_alerts_total", "rule").get(k, 0)
               for k, v in by_label(m1a, "integral_engine_alerts_total", "rule").items()}
    p1 = {
        "events": int(events1),
        "avg_event_bytes": prod1.get("avg_value_bytes"),
        "max_partition_bytes": prod1.get("max_partition_bytes"),
        "producer_s": prod1.get("elapsed_s"),
        "producer_events_per_s": prod1.get("rate_achieved"),
        "producer_cpu_s": round(prod1.get("cpu_user_s", 0) + prod1.get("cpu_sys_s", 0), 3),
        "elapsed_s": round(elapsed1, 3),
        "events_per_s": round(events1 / elapsed1) if elapsed1 > 0 else None,
        "processed_at_last_poll": processed_at_end,
        "steady_events_per_s_10_90": (lambda r: r and round(r))(
            rate_between(P("p1.timeline"), events1)),
        "applied_total": int(app1.get("applied_total", 0)),
        "completion_criterion": app1.get("criterion"),
        "applied_behind_partitions": int(app1.get("behind_partitions", 0)),
        "applied_behind_messages": int(app1.get("behind_messages", 0)),
        "high_watermark_total": high1,
        "retention_dropped": low1,
        "events_counted": int(counted1),
        "documents_written": int(docs1),
        "batch_writes": int(writes1),
        "documents_per_event": round(docs1 / events1, 3) if events1 else None,
        "events_per_batch_write": round(events1 / writes1, 1) if writes1 else None,
        "loads": int(delta(m1a, m1b, "integral_engine_loads_total")),
        "consumer_held_s": {k: round(v - by_label(
            m1b, "integral_engine_consumer_held_seconds", "reason").get(k, 0), 2)
            for k, v in by_label(m1a, "integral_engine_consumer_held_seconds", "reason").items()},
        "alerts": {k: int(v) for k, v in alerts1.items() if v},
        "engine_vmhwm_mb": round(mem1.get("engine_vmhwm_kb", 0) / 1024, 1),
        "redis_used_memory_mb": round(mem1.get("redis_used_memory", 0) / 1048576, 1),
        "redis_used_memory_rss_mb": round(mem1.get("redis_used_memory_rss", 0) / 1048576, 1),
        "redis_keys": int(mem1.get("redis_keys", 0)),
    }
    if cpu1 and not failed_phase:
        us = lambda s: round(s * 1e6 / events1, 2) if events1 else None
        p1["cpu"] = {k: round(v, 3) if isinstance(v, float) else v for k, v in cpu1.items()}
        p1["cpu_us_per_event"] = {
            "engine": us(cpu1["engine_s"]),
            "redis": us(cpu1["redis_s"]),
            "engine_plus_redis": us(cpu1["engine_s"] + cpu1["redis_s"]),
            "redis_aof_rewrite_children": us(cpu1["redis_children_s"]),
            "engine_plus_redis_with_children": us(cpu1["engine_s"] + cpu1["redis_s"] +
                                                  cpu1["redis_children_s"]),
            "broker": us(cpu1["broker_s"]),
            "producer": us(p1["producer_cpu_s"]),
        }
    checks["p1_events_counted_equal_produced"] = int(counted1) == int(events1)
    checks["p1_applied_offsets_reached_high_watermarks"] = (
        app1.get("criterion") == "applied" and p1["applied_total"] == high1 and high1 == events1)
    checks["p1_nothing_dropped_by_retention"] = low1 == 0

    # ---------------- Phase 2
    p2 = None
    if params.get("latency") == "yes" and os.path.exists(P("p2.produce")):
        prod2, app2 = kv(P("p2.produce")), kv(P("p2.applied"))
        m2a, m2b = metrics(P("metrics.p2.after")), metrics(P("metrics.p2.before"))
        cpu2 = cpu_window(run, "p2.start", "p2.end")
        events2 = prod2.get("produced", 0)
        alerts2 = {k: v - by_label(m2b, "integral_engine_alerts_total", "rule").get(k, 0)
                   for k, v in by_label(m2a, "integral_engine_alerts_total", "rule").items()}
        probe = json.load(open(P("p2.alerts.json"))) if os.path.exists(P("p2.alerts.json")) else {}
        p2 = {
            "events": int(events2),
            "target_rate": params.get("latency_rate"),
            "achieved_rate": prod2.get("rate_achieved"),
            "max_behind_schedule_ms": prod2.get("max_behind_schedule_ms"),
            "producer_cpu_s": round(prod2.get("cpu_user_s", 0) + prod2.get("cpu_sys_s", 0), 3),
            "max_backlog_events": backlog(P("p2.timeline"), prod2.get("first_produce_us", 0),
                                          params.get("latency_rate"), events2),
            "events_counted": int(delta(m2a, m2b, "integral_engine_events_total")),
            "completion_criterion": app2.get("criterion"),
            "applied_behind_partitions": int(app2.get("behind_partitions", 0)),
            "applied_behind_messages": int(app2.get("behind_messages", 0)),
            "alerts": {k: int(v) for k, v in alerts2.items() if v},
            "alert_latency_histogram": hist_summary(
                histogram(m2a, m2b, "integral_engine_alert_latency_seconds")),
            "consume_latency_histogram": hist_summary(
                histogram(m2a, m2b, "integral_engine_consume_latency_seconds")),
            "alert_build_latency_histogram": hist_summary(
                histogram(m2a, m2b, "integral_engine_alert_build_latency_seconds")),
            "alert_probe": probe,
        }
        if cpu2 and events2:
            p2["cpu_us_per_event"] = {
                "engine": round(cpu2["engine_s"] * 1e6 / events2, 2),
                "redis": round(cpu2["redis_s"] * 1e6 / events2, 2),
                "broker": round(cpu2["broker_s"] * 1e6 / events2, 2),
                "producer": round(p2["producer_cpu_s"] * 1e6 / events2, 2),
            }
            p2["cpu"] = {k: round(v, 3) if isinstance(v, float) else v for k, v in cpu2.items()}
        checks["p2_events_counted_equal_produced"] = p2["events_counted"] == int(events2)
        checks["p2_applied_offsets_reached_high_watermarks"] = app2.get("criterion") == "applied"
        checks["p2_alert_probe_event_time_matches"] = probe.get("event_time_mismatch", 1) == 0

    # ---------------- Whole run
    m_end = metrics(P("metrics.p2.after")) or metrics(P("metrics.p1.after"))
    dead = total(m_end, "integral_engine_deadlettered_total")
    checks["no_dead_letters"] = dead == 0
    checks["no_data_loss_in_engine_log"] = "DATA LOSS" not in engine_log
    checks["no_write_failures"] = (total(m_end, "integral_engine_write_failures_total") == 0 and
                                   total(m_end, "integral_engine_writes_fenced_total") == 0)
    checks["no_apply_or_load_errors"] = (total(m_end, "integral_engine_apply_errors_total") == 0 and
                                         total(m_end, "integral_engine_load_errors_total") == 0)
    eng_exit = kv(P("engine.exit")).get("engine_exit")
    checks["engine_exit_0"] = eng_exit == 0
    checks["engine_survived_every_phase"] = not failed_phase
    for k, ok in checks.items():
        if not ok:
            problems.append(k)

    targets = {}
    if "cpu_us_per_event" in p1:
        v = p1["cpu_us_per_event"]["engine_plus_redis"]
        targets["cpu_engine_plus_redis_le_12us"] = {"value": v, "met": v <= TARGET_CPU_US}
    if p2:
        v = p2["alert_latency_histogram"].get("p99_ms")
        targets["alert_p99_le_5ms_histogram"] = {"value": v, "met": v is not None and v <= TARGET_P99_MS}
        v = p2["alert_probe"].get("kafka_ms", {}).get("p99")
        targets["alert_p99_le_5ms_probe_kafka_ts"] = {"value": v, "met": v is not None and v <= TARGET_P99_MS}

    summary = {
        "params": params,
        "load_before": load_before,
        "load_after": load_after,
        "idle_cpu": idle,
        "phase1_throughput": p1,
        "phase2_latency": p2,
        "deadlettered": int(dead),
        "failed_phase": failed_phase,
        "engine_exit": eng_exit,
        "dmesg": open(P("dmesg.txt")).read().strip() if os.path.exists(P("dmesg.txt")) else None,
        "checks": checks,
        "targets": targets,
        "perf": {"%s_%s" % (ph, who): open(P("perf.%s.%s.txt" % (ph, who))).read().splitlines()[:25]
                 for ph in ("p1", "p2") for who in ("engine", "redis", "broker")
                 if os.path.exists(P("perf.%s.%s.txt" % (ph, who)))},
    }
    with open(P("summary.json"), "w") as f:
        json.dump(summary, f, indent=1)

    # ---------------- Table
    rows = []
    add = lambda k, v: rows.append((k, v))
    add("run", run)
    add("params", "%d events, %d customers, %d partitions, AOF %s, fetch wait %s ms, "
        "redis timeout %s, seed %d, phase 2 produced in %s ms ticks" % (
            params["events"], params["customers"], params["partitions"], params["aof"],
            fmt(params.get("fetch_wait_ms")), params.get("redis_command_timeout_ms", "config"),
            params["seed"], fmt(params.get("produce_tick_ms"))))
    add("machine", "%s cores %s; rev %s" % (fmt(params.get("nproc")), params.get("cpu_model"),
                                             params.get("git_rev")))
    add("load before", load_before.split("load average:")[-1].strip())
    add("load after", load_after.split("load average:")[-1].strip())
    if idle:
        w = idle["window_s"]
        add("idle CPU (share of one core)", "engine %.1f %%, redis %.1f %%, broker %.1f %%" % (
            100 * idle["engine_s"] / w, 100 * idle["redis_s"] / w, 100 * idle["broker_s"] / w))
    add("", "")
    add("PHASE 1 throughput", "")
    add("events (avg bytes, max partition MiB)", "%d (%s B, %.2f MiB)" % (
        p1["events"], fmt(p1["avg_event_bytes"]), (p1["max_partition_bytes"] or 0) / 1048576))
    add("producer", "%s s, %s ev/s, %s CPU s" % (fmt(p1["producer_s"]), fmt(p1["producer_events_per_s"]),
                                                 p1["producer_cpu_s"]))
    if failed_phase:
        add("ENGINE DIED in phase", "%s (exit status %s; %s)" % (
            failed_phase, fmt(eng_exit), summary["dmesg"] or "no kernel message"))
        add("processed before it died", "%s events (engine events_total at the last poll)" % fmt(processed_at_end))
        if processed_at_end and os.path.exists(P("p1.timeline")):
            pts = [l.split() for l in open(P("p1.timeline"))]
            t_first = next(int(t) for t, _, n in pts if int(n) == processed_at_end)
            secs = (t_first - prod1.get("first_produce_us", 0)) / 1e6
            add("processing rate until then", "%.0f events/s (%.1f s from the first produce)" % (
                processed_at_end / secs, secs))
    if not failed_phase:
        add("first produce -> all applied", "%s s%s" % (p1["elapsed_s"], "" if p1["completion_criterion"] == "applied" else
            " (engine idle; %d partitions' applied offsets %d messages behind)" % (
                p1["applied_behind_partitions"], p1["applied_behind_messages"])))
        add("sustained throughput", "%s events/s" % fmt(p1["events_per_s"]))
        add("steady rate (10-90 % applied)", "%s events/s" % fmt(p1["steady_events_per_s_10_90"]))
    if "cpu" in p1:
        c, u = p1["cpu"], p1["cpu_us_per_event"]
        add("CPU window", "%.2f s" % c["window_s"])
        if c.get("machine_idle_share") is not None:
            add("machine idle (all cores)", "%.1f %%" % (100 * c["machine_idle_share"]))
        add("engine CPU", "%.2f s = %s us/event (system %.2f s)" % (
            c["engine_s"], u["engine"], c["engine_sys_s"]))
        if c.get("engine_page_faults") is not None:
            add("page faults per event", "engine %.3f, redis-server %.3f (a fresh 4 KiB page "
                "costs ~12 us on this VM)" % (c["engine_page_faults"] / p1["events"],
                                              c["redis_page_faults"] / p1["events"]))
        add("redis-server CPU (/proc)", "%.2f s = %s us/event (INFO cpu: %.2f s)" % (
            c["redis_s"], u["redis"], c["redis_info_s"]))
        add("engine + redis", "%s us/event (target <= %.0f)%s" % (
            u["engine_plus_redis"], TARGET_CPU_US, "" if u["engine_plus_redis"] <= TARGET_CPU_US else "  MISSED"))
        add("AOF rewrite children", "%.2f s = %s us/event (%d rewrites%s)" % (
            c["redis_children_s"], u["redis_aof_rewrite_children"], c["aof_rewrites"],
            ", one in progress at end" if c["aof_rewrite_in_progress_at_end"] else ""))
        add("broker / producer CPU", "%.2f s = %s us/event / %s us/event" % (
            c["broker_s"], u["broker"], u["producer"]))
    if not failed_phase:
        add("documents written per event", "%s (%s events per batch write)" % (
            fmt(p1["documents_per_event"]), fmt(p1["events_per_batch_write"])))
        if p1["consumer_held_s"]:
            add("engine's consumer held", ", ".join(
                "%s %.1f s" % kv_ for kv_ in sorted(p1["consumer_held_s"].items())) +
                " (writes: waiting for Redis to take them)")
        add("engine peak RSS (VmHWM)", "%s MiB" % p1["engine_vmhwm_mb"])
        add("redis used_memory (rss)", "%s MiB (%s MiB), %d keys" % (
            p1["redis_used_memory_mb"], p1["redis_used_memory_rss_mb"], p1["redis_keys"]))
        add("alerts raised", ", ".join("%s %d" % kv_ for kv_ in sorted(p1["alerts"].items())) or "none")
    add("counted / produced / applied", "%d / %d / %d" % (p1["events_counted"], p1["events"],
                                                         p1["applied_total"]))
    if p2:
        add("", "")
        add("PHASE 2 latency", "")
        add("events", "%d at %s/s (achieved %s/s, max %s ms behind schedule)" % (
            p2["events"], fmt(p2["target_rate"]), fmt(p2["achieved_rate"]),
            fmt(p2["max_behind_schedule_ms"])))
        if p2["completion_criterion"] != "applied":
            add("all applied", "no: engine idle with %d partitions' applied offsets %d messages behind" % (
                p2["applied_behind_partitions"], p2["applied_behind_messages"]))
        add("alert latency, engine histogram", hist_text(p2["alert_latency_histogram"]))
        add("  of which in the engine",
            hist_text(p2.get("alert_build_latency_histogram", {})) +
            " (event taken from the consumer -> alert handed to Kafka)")
        pr = p2["alert_probe"]
        for key, label in (("kafka_ms", "alert probe, Kafka ts - event ts"),
                           ("received_ms", "alert probe, received - event ts")):
            q = pr.get(key, {})
            add(label, "n=%s p50 %s p90 %s p99 %s max %s ms" % (
                q.get("count"), *(fmt(round(q[k], 2) if k in q else None) for k in ("p50", "p90", "p99", "max"))))
        add("event -> processed, engine histogram",
            hist_text(p2["consume_latency_histogram"], within=False))
        if "cpu_us_per_event" in p2:
            u = p2["cpu_us_per_event"]
            add("CPU at this rate", "engine %s, redis %s, broker %s, producer %s us/event" % (
                u["engine"], u["redis"], u["broker"], u["producer"]))
            c = p2["cpu"]
            add("  as share of one core", "engine %.0f %%, redis %.0f %% (+%.0f %% AOF rewrite), broker %.0f %%" % (
                100 * c["engine_s"] / c["window_s"], 100 * c["redis_s"] / c["window_s"],
                100 * c["redis_children_s"] / c["window_s"], 100 * c["broker_s"] / c["window_s"]))
        add("max backlog behind the schedule", "%s events" % fmt(p2["max_backlog_events"]))
        add("alerts raised", ", ".join("%s %d" % kv_ for kv_ in sorted(p2["alerts"].items())) or "none")
    add("", "")
    add("dead letters", "%d" % dead)
    for k, ok in checks.items():
        add("check " + k, "ok" if ok else "FAILED")
    for k, t in targets.items():
        add("target " + k, "%s (%s)" % ("met" if t["met"] else "MISSED", fmt(t["value"])))
    width = max(len(k) for k, _ in rows)
    text = "\n".join(("%-*s  %s" % (width, k, v)).rstrip() for k, v in rows) + "\n"
    with open(P("summary.txt"), "w") as f:
        f.write(text)
    sys.stdout.write(text)
    for key in ("p1_engine", "p2_engine"):
        if key in summary["perf"]:
            sys.stdout.write("\nperf %s, top by self time:\n%s\n" % (
                key, "\n".join(summary["perf"][key][:12])))
    if problems:
        sys.stderr.write("FAILED checks: %s\n" % ", ".join(problems))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
