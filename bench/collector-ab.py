#!/usr/bin/env python3
"""Interleaved A/B of collector builds: CPU seconds per million flows.

    bench/collector-ab.py [--rounds 4] [--version 9] [--flows 3000000] [--rate 500000] [--count-loss] BIN_A BIN_B [...]

Each round runs every binary once, in turn, on the same generated stream
(`kopek gen` of the first binary, seed 1, IPv4 only) into a fresh state
dir with zstd segments, and reads the collector's user + system time from
wait4(2). Interleaving spreads the machine's slow and fast moments over
all binaries alike; the medians are printed at the end. Every run must
store every flow (checked with `kopek raw stats`), or the script stops;
with --count-loss (rates near the limit) it prints how many flows each
run lost instead, and their sum per binary at the end.
Method and results: docs/performance.md.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

PORT = 42077

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--rounds", type=int, default=4)
p.add_argument("--version", default="9", choices=["5", "9", "ipfix"])
p.add_argument("--flows", type=int, default=3_000_000)
p.add_argument("--rate", type=int, default=500_000)
p.add_argument("--count-loss", action="store_true",
               help="report lost flows per run instead of stopping at the first")
p.add_argument("bins", nargs="+")
a = p.parse_args()

work = tempfile.mkdtemp(prefix="kopek-ab-")
cpu = {b: [] for b in a.bins}
lost = {b: [] for b in a.bins}
try:
    for r in range(a.rounds):
        for b in a.bins:
            state = os.path.join(work, "state")
            shutil.rmtree(state, ignore_errors=True)
            os.makedirs(state)
            cfg = os.path.join(work, "kopek.toml")
            with open(cfg, "w") as f:
                f.write(f'[general]\nstate_dir = "{state}"\n\n[collector]\nname = "ab"\n'
                        f'listen = ["127.0.0.1:{PORT}"]\nsocket_buffer_bytes = 4194304\n\n'
                        '[collector.segment]\ncompression = "zstd"\n\n'
                        '[[collector.exporter]]\nname = "e0"\naddress = "127.0.0.1"\nsampling = "auto"\n')
            proc = subprocess.Popen([b, "--config", cfg, "collector", "run"],
                                    stderr=subprocess.DEVNULL, env={**os.environ, "KOPEK_LOG": "warn"})
            ready = os.path.join(state, "collector-ab.stats.json")
            deadline = time.time() + 30
            while not os.path.exists(ready):
                if time.time() > deadline or proc.poll() is not None:
                    raise SystemExit(f"{b}: collector did not start")
                time.sleep(0.05)
            subprocess.run([a.bins[0], "gen", "--target", f"127.0.0.1:{PORT}", "--version", a.version,
                            "--flows", str(a.flows), "--rate", str(a.rate), "--ipv6-percent", "0",
                            "--seed", "1"], check=True, capture_output=True)
            time.sleep(1.0)
            proc.terminate()
            _, _, ru = os.wait4(proc.pid, 0)
            out = subprocess.run([b, "raw", "--state-dir", state, "stats", "--format", "json"],
                                 capture_output=True, text=True, check=True).stdout
            stored = json.loads(out)["total"]["flows"]
            if stored != a.flows and not a.count_loss:
                raise SystemExit(f"{b}: stored {stored} of {a.flows} flows; not a valid CPU figure")
            per_m = (ru.ru_utime + ru.ru_stime) / (a.flows / 1e6)
            cpu[b].append(per_m)
            lost[b].append(a.flows - stored)
            print(f"round {r + 1} {b}: {per_m:.4f} CPU s per million flows "
                  f"({ru.ru_utime / (a.flows / 1e6):.4f} user), lost {a.flows - stored}", flush=True)
finally:
    shutil.rmtree(work, ignore_errors=True)
for b in a.bins:
    print(f"{b}: median {statistics.median(cpu[b]):.4f} CPU s per million flows over {a.rounds} rounds"
          + (f"; lost {sum(lost[b])} flows in {sum(1 for x in lost[b] if x)} of {a.rounds} runs"
             if a.count_loss else ""))
