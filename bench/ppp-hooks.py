#!/usr/bin/env python3
"""pppd hook latency (issue 5): 1,000 calls of `kopek ppp ip-up|ip-down`
run the way pppd runs them (empty environment but pppd's variables, stdio
on /dev/null), one after another, with the core running (each hook pokes
its socket) and with the core down. Prints p50, p99 and max.

    bench/ppp-hooks.py [--kopek target/release/kopek] [--calls 1000]
"""
import argparse
import os
import subprocess
import tempfile
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kopek", default="target/release/kopek")
    ap.add_argument("--calls", type=int, default=1000)
    a = ap.parse_args()
    kopek = os.path.abspath(a.kopek)
    d = tempfile.mkdtemp(prefix="kopek-hooks-")
    cfg = os.path.join(d, "kopek.toml")
    sock = os.path.join(d, "core.sock")
    with open(cfg, "w") as f:
        f.write(f'[general]\nstate_dir = "{d}"\n[core]\nsocket = "{sock}"\n')

    def storm(label):
        lat = []
        for i in range(a.calls):
            kind = "ip-up" if i % 2 == 0 else "ip-down"
            s = i // 2
            ip = f"10.3.{s // 250}.{s % 250 + 1}"
            env = {"PEERNAME": f"user{s}", "IFNAME": f"ppp{s}", "IPREMOTE": ip, "IPLOCAL": "10.3.255.254",
                   "LINKNAME": f"link{s}"}
            t0 = time.perf_counter()
            subprocess.run([kopek, "--config", cfg, "ppp", kind, f"ppp{s}", "/dev/pts/1", "0", "10.3.255.254", ip, ""],
                           env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           check=True)
            lat.append(time.perf_counter() - t0)
        lat.sort()
        p = lambda q: lat[min(len(lat) - 1, int(len(lat) * q))] * 1000
        print(f"{label}: {a.calls} hooks, p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, max {lat[-1] * 1000:.1f} ms (target p99 < 50 ms)")

    storm("core down")
    core = subprocess.Popen([kopek, "--config", cfg, "core", "run"], stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while not os.path.exists(sock):
            assert time.time() < deadline, "core did not start"
            time.sleep(0.01)
        storm("core up")
    finally:
        core.terminate()
        core.wait()


if __name__ == "__main__":
    main()
