"""bench_common.py - what the benchmarks' reports (bench_report.py for the engine benchmark,
gw_report.py for the gateway benchmark; tests/bench/README.md) read alike: the key=value files
the scripts and tools write, Prometheus /metrics snapshots and their histograms. One reading,
so that both reports count the same way.
"""
import math
import os
import re


def kv(path):
    """{key: value} of a file of key=value lines (numbers as int or float); {} when absent."""
    out = {}
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            line = line.rstrip("\r\n")
            if "=" in line:
                k, v = line.split("=", 1)
                out[k.strip()] = typed(v)
    return out


def typed(text):
    """An int or float when the text is one, else the text."""
    if re.fullmatch(r"-?[0-9]+", text):
        return int(text)
    if re.fullmatch(r"-?[0-9]*\.[0-9]+(e[-+]?[0-9]+)?", text):
        return float(text)
    return text


def metrics(path):
    """{(name, labels): value} of a Prometheus text exposition."""
    out = {}
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            if not line or line[0] == "#":
                continue
            m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
            if m:
                out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def total(ms, name):
    """Sum of a metric over all its labels."""
    return sum(v for (n, _), v in ms.items() if n == name)


def delta(after, before, name):
    """How much a metric (all labels) grew between two snapshots."""
    return total(after, name) - total(before, name)


def histogram(after, before, name):
    """Bucket deltas [(le, cumulative count)], sorted, for an unlabelled histogram."""
    buckets = {}
    for (n, labels), v in after.items():
        if n == name + "_bucket":
            le = re.search(r'le="([^"]*)"', labels).group(1)
            buckets[le] = v - before.get((n, labels), 0.0)
    return sorted((math.inf if le == "+Inf" else float(le), c) for le, c in buckets.items())


def hist_quantile(buckets, q):
    """Prometheus histogram_quantile: linear interpolation inside the bucket."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if le == math.inf:
                return prev_le
            if c == prev_c:
                return le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return prev_le


def cpu_snapshots(run, start, end):
    """The two CPU snapshots (cpu.START, cpu.END in the run directory) of a window."""
    return kv(os.path.join(run, "cpu." + start)), kv(os.path.join(run, "cpu." + end))


def cpu_ticks_s(a, b, who, fields=("utime", "stime")):
    """CPU seconds of process WHO between snapshots a and b, over the given /proc fields."""
    tck = float(a.get("clk_tck", 100))
    return sum(b[who + "_" + f] - a[who + "_" + f] for f in fields) / tck


def window_s(a, b):
    """Seconds between two CPU snapshots."""
    return (b["t_us"] - a["t_us"]) / 1e6
