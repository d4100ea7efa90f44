#!/usr/bin/env python3
"""Tier 1 → tier 2 latency of the classifier at a steady flow rate.

Starts a collector and a classifier (the release binary, their own state
dir), sends a generated IPFIX stream at RATE flows/s for SECONDS with
`kopek gen`, and every 50 ms samples
  - tier 1: the collector's flows written (its stats file, 50 ms interval),
  - tier 2: records committed (SUM(flows) of traffic + unattributed: every
    generated record has exactly one subscriber side, and a record's flow
    count lies in one bucket).
The latency at a sample time T is how long ago tier 1 held as many records
as tier 2 holds at T: the age of the newest record not yet in tier 2 is at
most that. Reports the median, 99th percentile and maximum over the run.

    cargo build --release && bench/classifier-latency.py [--rate 100000] [--seconds 30]
"""

import argparse
import bisect
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

PORT = 42077


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=100_000)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--kopek", default=os.environ.get("KOPEK", "target/release/kopek"))
    a = ap.parse_args()
    kopek = os.path.abspath(a.kopek)
    d = tempfile.mkdtemp(prefix="kopek-latency-")
    cfg = os.path.join(d, "kopek.toml")
    with open(cfg, "w") as f:
        f.write(f"""
[general]
state_dir = "{d}/state"
[collector]
listen = ["127.0.0.1:{PORT}"]
stats_interval_ms = 100
[[collector.exporter]]
name = "gen"
address = "127.0.0.1"
[classifier]
subscriber_networks = ["10.0.0.0/16", "2001:db8:100::/48"]
[[classifier.class]]
name = "peering"
networks = ["198.51.100.0/24", "192.0.2.0/24", "2001:db8:ca1::/48"]
[retention]
raw_days = 0
traffic_days = 0
top_hosts_days = 0
""")
    env = dict(os.environ, KOPEK_LOG="warn")
    col = subprocess.Popen([kopek, "--config", cfg, "collector", "run"], env=env)
    cls = subprocess.Popen([kopek, "--config", cfg, "classifier", "run"], env=env)
    stats = os.path.join(d, "state", "collector-main.stats.json")
    db = os.path.join(d, "state", "tier2.sqlite")
    for _ in range(100):
        if os.path.exists(stats) and os.path.exists(db):
            break
        time.sleep(0.1)
    flows = a.rate * a.seconds
    gen = subprocess.Popen([kopek, "gen", "--target", f"127.0.0.1:{PORT}", "--version", "ipfix",
                            "--flows", str(flows), "--rate", str(a.rate)],
                           stdout=subprocess.DEVNULL)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    t1 = []  # (time, tier-1 flows)
    lat = []
    t0 = time.monotonic()
    done_at = None
    while True:
        now = time.monotonic() - t0
        try:
            with open(stats) as f:
                n1 = json.load(f)["flows_written"]
        except (OSError, ValueError, KeyError):
            n1 = t1[-1][1] if t1 else 0
        t1.append((now, n1))
        n2 = conn.execute("SELECT COALESCE((SELECT SUM(flows) FROM traffic), 0)"
                          " + COALESCE((SELECT SUM(flows) FROM unattributed), 0)").fetchone()[0]
        # First sample time at which tier 1 held more than n2 records.
        counts = [c for _, c in t1]
        i = bisect.bisect_right(counts, n2)
        if i < len(t1):
            lat.append(now - t1[i][0])
        elif n2 > 0:
            lat.append(0.0)
        if gen.poll() is not None and n2 >= flows:
            break
        if gen.poll() is not None and done_at is None:
            done_at = now
        if done_at is not None and now - done_at > 30:
            print(f"tier 2 stuck at {n2} of {flows}", file=sys.stderr)
            break
        time.sleep(0.05)
    for p in (cls, col):
        p.terminate()
        p.wait()
    lat.sort()
    p99 = lat[int(len(lat) * 0.99) - 1] if lat else float("nan")
    print(json.dumps({
        "rate_flows_per_s": a.rate, "seconds": a.seconds, "flows": flows,
        "tier2_flows": n2, "samples": len(lat),
        "latency_median_s": round(statistics.median(lat), 3) if lat else None,
        "latency_p99_s": round(p99, 3), "latency_max_s": round(max(lat), 3) if lat else None,
        "state_dir": d,
    }))


if __name__ == "__main__":
    main()
