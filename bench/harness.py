#!/usr/bin/env python3
"""kopek collector vs nfcapd, side by side, same generated streams.

Driven by bench/collector-vs-nfcapd.sh (which checks the tools, sets the
socket-buffer sysctl and builds kopek); run that, not this.

Every run: a fresh state directory, the collector started on loopback,
`kopek gen` pre-encodes the stream and sends it paced, the harness waits
until the collector's socket queue is empty, reads VmHWM and the socket's
kernel drop counter, sends SIGTERM, reaps the process with wait4() (exact
user+system CPU seconds and peak RSS of its whole life), then counts what
was stored: kopek via `kopek raw stats --format json` (flows, bytes and
packets compared with the generator's --write-expected file), nfcapd via
`nfdump -r FILE -I` (the same three totals). A run is lossless only when
all three totals equal the expected ones.

Both collectors run under identical conditions: same port, same socket
buffer (4 MiB requested; both end up with the kernel's doubled 8 MiB, see
the `rb` column of `ss -m` recorded in the results), same disk, same
sender, same streams (same seed), one after the other.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

PORT = 42055
TARGET = f"127.0.0.1:{PORT}"
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
# The stream of one ladder step lasts this long at the step's rate.
STREAM_SECONDS = 3.0
LADDER = [250_000, 500_000, 1_000_000, 1_500_000, 2_000_000, 2_500_000,
          3_000_000, 3_500_000, 4_000_000, 4_500_000, 5_000_000]
FIXED_RATE = 500_000
# Rate of the many-exporters memory test (flows/s over all exporters).
MULTI_RATE = 200_000
VERSIONS = ["5", "9", "ipfix"]
# A ladder step whose sender reached less than this share of the asked
# rate does not count (the sender, not the collector, was the limit).
SENDER_OK_SHARE = 0.95
SEED = 1
# A run during which other processes used more user-mode CPU than this
# (someone's build on the shared machine) is discarded and repeated, up to
# NOISY_RETRIES times, whatever its outcome and for every collector alike.
NOISY_USER_S = 0.3
NOISY_RETRIES = 3


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def udp_socket_line(port):
    """(rx_queue bytes, drops) of the UDP socket bound to `port`, or None."""
    try:
        with open("/proc/net/udp") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        cols = line.split()
        local = cols[1]
        if int(local.rsplit(":", 1)[1], 16) == port:
            rx = int(cols[4].split(":")[1], 16)
            return rx, int(cols[-1])
    return None


def socket_rcvbuf(port):
    """The `rb` the kernel granted the socket on `port` (ss -m)."""
    out = subprocess.run(["ss", "-ulmn", f"sport = :{port}"], capture_output=True, text=True).stdout
    for tok in out.replace("(", ",").replace(")", ",").split(","):
        if tok.startswith("rb") and tok[2:].isdigit():
            return int(tok[2:])
    return None


def proc_status_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_run_ns(pid):
    """CPU time (user + system, ns) of every live thread of `pid`, from
    /proc/PID/task/*/schedstat: nanosecond resolution, unlike the 10 ms
    ticks of /proc/PID/stat."""
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def cpu_ticks():
    """(busy, total, user-mode) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v), v[0] + v[1]


def wait_quiet(max_wait_s=180, busy_share=0.10):
    """Waits until the machine is idle (other engineers' builds, fuzzers):
    less than `busy_share` of all CPUs busy over half a second. Returns the
    seconds waited, or None if it never became quiet."""
    started = time.time()
    while time.time() - started < max_wait_s:
        b0, t0, _ = cpu_ticks()
        time.sleep(0.5)
        b1, t1, _ = cpu_ticks()
        if (b1 - b0) / max(1, t1 - t0) < busy_share:
            return time.time() - started
    log(f"  warning: machine still busy after {max_wait_s} s; measuring anyway (run flagged)")
    return None


def dir_bytes(d, pred):
    total = 0
    for root, _, files in os.walk(d):
        for n in files:
            if pred(n):
                total += os.path.getsize(os.path.join(root, n))
    return total


class Collector:
    label = "?"

    def __init__(self, kopek):
        self.kopek = kopek
        self.proc = None

    def wait_ready(self, timeout=10):
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited early: {self.proc.returncode}")
            if udp_socket_line(PORT) is not None and self.ready_extra():
                return
            time.sleep(0.02)
        raise RuntimeError(f"{self.label} did not bind port {PORT}")

    def ready_extra(self):
        return True

    def stop(self, timeout=60):
        """SIGTERM, then reap with wait4: (cpu seconds, ru_maxrss KiB).
        ru_maxrss is not used for results: it includes the forked Python
        image before exec; VmHWM (read before SIGTERM) is."""
        self.proc.send_signal(signal.SIGTERM)
        end = time.time() + timeout
        while True:
            pid, status, ru = os.wait4(self.proc.pid, os.WNOHANG)
            if pid != 0:
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.time() > end:
                self.proc.kill()
            time.sleep(0.01)
        if self.proc.returncode != 0:
            raise RuntimeError(f"{self.label} exited with {self.proc.returncode}; see {self.logpath}")
        self.user_s, self.sys_s = ru.ru_utime, ru.ru_stime
        return ru.ru_utime + ru.ru_stime, ru.ru_maxrss


class Kopek(Collector):
    def __init__(self, kopek, compression="zstd", exporters=None):
        super().__init__(kopek)
        self.compression = compression
        self.exporters = exporters or ["127.0.0.1"]
        self.label = f"kopek {compression}"

    def start(self, workdir):
        self.dir = workdir
        self.state = os.path.join(workdir, "state")
        os.makedirs(self.state)
        cfg = os.path.join(workdir, "kopek.toml")
        with open(cfg, "w") as f:
            f.write(f'[general]\nstate_dir = "{self.state}"\n\n[collector]\nname = "bench"\n'
                    f'listen = ["{TARGET}"]\nsocket_buffer_bytes = {SOCKET_BUFFER_BYTES}\n\n'
                    f'[collector.segment]\ncompression = "{self.compression}"\n\n')
            for i, a in enumerate(self.exporters):
                f.write(f'[[collector.exporter]]\nname = "e{i}"\naddress = "{a}"\nsampling = "auto"\n')
        self.logpath = os.path.join(workdir, "collector.log")
        self.cfg = cfg
        self.proc = subprocess.Popen([self.kopek, "--config", cfg, "collector", "run"],
                                     stdout=subprocess.DEVNULL, stderr=open(self.logpath, "w"),
                                     env={**os.environ, "KOPEK_LOG": "warn"})
        self.wait_ready()

    def ready_extra(self):
        # The stats file is written once the sockets are bound and the
        # first segment is open.
        return os.path.exists(os.path.join(self.state, "collector-bench.stats.json"))

    def stored(self):
        out = subprocess.run([self.kopek, "raw", "--state-dir", self.state, "stats", "--format", "json"],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"kopek raw stats failed: {out.stderr}")
        t = json.loads(out.stdout)["total"]
        with open(os.path.join(self.state, "collector-bench.stats.json")) as f:
            st = json.load(f)
        disk = dir_bytes(os.path.join(self.state, "raw"), lambda n: n.endswith(".kseg"))
        return {"flows": t["flows"], "bytes": t["bytes"], "packets": t["packets"],
                "flows_written": st["flows_written"], "disk_bytes": disk,
                "loss_records": st["loss_records_written"]}


class Nfcapd(Collector):
    FLAGS = {"none": [], "lz4": ["-y"], "lzo": ["-z"]}

    def __init__(self, kopek, compression="none"):
        super().__init__(kopek)
        self.compression = compression
        self.label = "nfcapd" + ("" if compression == "none" else f" {compression}")

    def start(self, workdir):
        self.dir = workdir
        self.flowdir = os.path.join(workdir, "nf")
        os.makedirs(self.flowdir)
        self.logpath = os.path.join(workdir, "collector.log")
        self.proc = subprocess.Popen(["nfcapd", "-w", self.flowdir, "-b", "127.0.0.1", "-p", str(PORT),
                                      "-B", str(SOCKET_BUFFER_BYTES), "-t", "3600"]
                                     + self.FLAGS[self.compression],
                                     stdout=open(self.logpath, "w"), stderr=subprocess.STDOUT)
        self.wait_ready()

    def stored(self):
        tot = {"flows": 0, "bytes": 0, "packets": 0}
        files = [n for n in os.listdir(self.flowdir) if n.startswith("nfcapd.")]
        for n in files:
            out = subprocess.run(["nfdump", "-r", os.path.join(self.flowdir, n), "-I"],
                                 capture_output=True, text=True, check=True).stdout
            for line in out.splitlines():
                k, _, v = line.partition(":")
                if k.strip() == "Flows":
                    tot["flows"] += int(v)
                elif k.strip() == "Bytes":
                    tot["bytes"] += int(v)
                elif k.strip() == "Packets":
                    tot["packets"] += int(v)
        tot["disk_bytes"] = dir_bytes(self.flowdir, lambda n: n.startswith("nfcapd."))
        tot["files"] = len(files)
        return tot


def run_one(kopek, coll, version, rate, flows, workroot, gen_extra=(), rss_series=False, keep=False):
    workdir = tempfile.mkdtemp(prefix="run-", dir=workroot)
    expected_path = os.path.join(workdir, "expected.json")
    quiet = wait_quiet()
    busy0, _, user0 = cpu_ticks()
    t0s = os.times()
    coll.start(workdir)
    rb = socket_rcvbuf(PORT)
    # Steady state: the collector's CPU from here (started, sockets bound)
    # to the drained socket below, without its start-up and shutdown.
    run_ns0 = proc_run_ns(coll.proc.pid)
    cmd = [kopek, "gen", "--target", TARGET, "--version", version, "--flows", str(flows),
           "--rate", str(rate), "--seed", str(SEED), "--write-expected", expected_path] + list(gen_extra)
    gen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    series = []
    t0 = time.time()
    # Reaped with wait4 (not Popen.poll) to get the sender's CPU time.
    while True:
        pid, gstatus, gru = os.wait4(gen.pid, os.WNOHANG)
        if pid != 0:
            gen.returncode = os.waitstatus_to_exitcode(gstatus)
            break
        if rss_series:
            series.append((round(time.time() - t0, 1), proc_status_kb(coll.proc.pid, "VmRSS"),
                           proc_status_kb(coll.proc.pid, "VmHWM")))
        time.sleep(0.5 if rss_series else 0.02)
    out, err = gen.stdout.read(), gen.stderr.read()
    gen_cpu = gru.ru_utime + gru.ru_stime
    if gen.returncode != 0:
        coll.stop()
        raise RuntimeError(f"kopek gen failed: {err}")
    sent = json.loads(out.strip().splitlines()[-1])
    with open(expected_path) as f:
        expected = json.load(f)
    # Drained: the socket queue is empty (everything read by the collector).
    end = time.time() + 60
    while time.time() < end:
        s = udp_socket_line(PORT)
        if s is None or s[0] == 0:
            break
        time.sleep(0.02)
    time.sleep(0.3)
    drops = (udp_socket_line(PORT) or (0, 0))[1]
    stream_cpu_s = (proc_run_ns(coll.proc.pid) - run_ns0) / 1e9
    hwm_kb = proc_status_kb(coll.proc.pid, "VmHWM")
    if rss_series:
        series.append((round(time.time() - t0, 1), proc_status_kb(coll.proc.pid, "VmRSS"), hwm_kb))
    cpu_s, maxrss_kb = coll.stop()
    busy1, _, user1 = cpu_ticks()
    t1s = os.times()
    # User CPU of this harness and every child it reaped (collector, sender, ss).
    ours_user = (t1s.user + t1s.children_user) - (t0s.user + t0s.children_user)
    stored = coll.stored()
    exact = all(stored[k] == expected[k] for k in ("flows", "bytes", "packets"))
    r = {
        "collector": coll.label, "version": version, "rate": rate, "flows_sent": sent["flows"],
        "achieved_rate": sent["flows_per_s"], "max_lag_us": sent["max_lag_us"],
        "datagrams": sent["datagrams"], "expected": {k: expected[k] for k in ("flows", "bytes", "packets")},
        "stored": stored, "exact": exact, "socket_drops": drops, "cpu_s": cpu_s,
        "user_s": coll.user_s, "sys_s": coll.sys_s, "sender_cpu_s": gen_cpu,
        # CPU seconds the whole machine was busy during the run beyond the
        # collector and the sender: other people's work (should be ~0).
        "foreign_cpu_s": round((busy1 - busy0) / CLK_TCK - cpu_s - gen_cpu, 2),
        # The same in user mode only (kernel writeback of the collector's
        # own files is system time): other processes' work. Runs above
        # NOISY_USER_S are repeated, for both collectors alike.
        "foreign_user_s": round((user1 - user0) / CLK_TCK - ours_user, 2),
        "waited_for_quiet_s": quiet,
        "vmhwm_kb": hwm_kb, "maxrss_kb": maxrss_kb, "rcvbuf": rb,
        "cpu_s_per_mflow": cpu_s / (sent["flows"] / 1e6),
        "stream_cpu_s": stream_cpu_s,
        "stream_cpu_s_per_mflow": stream_cpu_s / (sent["flows"] / 1e6),
        "user_s_per_mflow": coll.user_s / (sent["flows"] / 1e6),
        "sys_s_per_mflow": coll.sys_s / (sent["flows"] / 1e6),
        "disk_bytes_per_flow": stored["disk_bytes"] / stored["flows"] if stored["flows"] else None,
    }
    if rss_series:
        r["rss_series"] = series
    if isinstance(coll, Kopek) and stored["flows_written"] != stored["flows"]:
        r["note"] = f"stats flows_written {stored['flows_written']} != raw stats {stored['flows']}"
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        r["workdir"] = workdir
    log(f"  {coll.label:12} {version:5} rate {rate/1e6:4.2f}M achieved {sent['flows_per_s']/1e6:5.3f}M "
        f"stored {stored['flows']}/{expected['flows']} drops {drops} exact={exact} "
        f"cpu {cpu_s:.2f}s hwm {hwm_kb} KiB foreign {r['foreign_cpu_s']}s (user {r['foreign_user_s']}s)")
    return r


def run_clean(kopek, make, version, rate, flows, workroot, results, gen_extra=(), **kw):
    """run_one, repeated while the run was disturbed by other processes;
    disturbed runs stay in `results` with phase "noisy" (not counted)."""
    for attempt in range(NOISY_RETRIES + 1):
        r = run_one(kopek, make(), version, rate, flows, workroot, gen_extra, **kw)
        if r["foreign_user_s"] <= NOISY_USER_S or attempt == NOISY_RETRIES:
            if attempt == NOISY_RETRIES and r["foreign_user_s"] > NOISY_USER_S:
                r["note"] = "still disturbed after retries"
            return r
        r["phase"] = "noisy"
        results.append(r)
        log(f"  (disturbed by {r['foreign_user_s']} s of other processes' CPU: repeating)")


def machine_info():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    def sysctl(k):
        try:
            with open("/proc/sys/" + k.replace(".", "/")) as f:
                return f.read().strip()
        except OSError:
            return "?"
    return {
        "nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
        "rmem_max": sysctl("net.core.rmem_max"), "rmem_default": sysctl("net.core.rmem_default"),
        "nfdump": subprocess.run(["nfdump", "-V"], capture_output=True, text=True).stdout.strip(),
    }


def fmt_rate(r):
    return "none" if r is None else f"{r/1e6:.2f} M/s"


def ratio(a, b):
    if a is None or b in (None, 0):
        return "n/a"
    return f"{a/b:.2f}×"


def median_of(results, label, version, key):
    v = [r[key] for r in results if r["collector"] == label and r["version"] == version
         and r.get("phase") == "fixed" and r[key] is not None]
    return statistics.median(v) if v else None


def render(info, args, results, best, reasons, multi):
    L = []
    L.append(f"# kopek collector vs nfcapd — {info['date']}\n")
    L.append(f"Machine: {info['nproc']} × {info['cpu']}, kernel {info['kernel']}; {info['nfdump']}; "
             f"kopek {info['kopek_version']}.")
    L.append(f"net.core.rmem_max = {info['rmem_max']}; both collectors ask for {SOCKET_BUFFER_BYTES} bytes "
             f"(granted rb: kopek {info.get('rb_kopek')}, nfcapd {info.get('rb_nfcapd')}). "
             f"Sender `kopek gen` on the same machine, loopback, seed {SEED}, IPv6 share {args.ipv6_percent} %.")
    L.append(f"Mode: {'quick (smoke test, not a result)' if args.quick else 'full'}; "
             f"{args.runs} run(s) per ladder step; stream = {STREAM_SECONDS:.0f} s at the step's rate.\n")

    L.append("## Highest lossless rate (flows, bytes and packets stored == sent, in every run)\n")
    L.append(f"Ladder {', '.join(f'{x/1e6:g}' for x in (LADDER if not args.quick else [FIXED_RATE]))} M flows/s. "
             f"Each rate is run once going up until a run loses anything (or the sender falls below "
             f"{SENDER_OK_SHARE:.0%} of the rate); the highest passing rate is then run {args.runs - 1} more "
             f"time(s), stepping down if one of those loses. Reported: a rate lossless in {args.runs} of "
             f"{args.runs} runs.\n")
    L.append("| version | kopek (zstd) | nfcapd | kopek / nfcapd | kopek stopped because | nfcapd stopped because |")
    L.append("|---|---|---|---|---|---|")
    for v in args.versions:
        k, n = best.get(("kopek", v)), best.get(("nfcapd", v))
        L.append(f"| {v} | {fmt_rate(k)} | {fmt_rate(n)} | {ratio(k, n)} | "
                 f"{reasons.get(('kopek', v), '')} | {reasons.get(('nfcapd', v), '')} |")

    labels = ["kopek zstd", "kopek none", "nfcapd", "nfcapd lz4", "nfcapd lzo"]
    L.append(f"\n## CPU seconds per million flows at {args.fixed_rate/1e6:.2f} M flows/s "
             f"(user+system of the collector process, its whole life; median of {args.fixed_runs}; "
             "in brackets the medians of user and system time separately)\n")
    L.append("| version | " + " | ".join(labels) + " | kopek zstd / nfcapd |")
    L.append("|---|" + "---|" * (len(labels) + 1))
    for v in args.versions:
        vals = [median_of(results, l, v, "cpu_s_per_mflow") for l in labels]
        us = [median_of(results, l, v, "user_s_per_mflow") for l in labels]
        ss = [median_of(results, l, v, "sys_s_per_mflow") for l in labels]
        L.append(f"| {v} | " + " | ".join("n/a" if x is None else f"{x:.3f} ({u:.3f} u + {y:.3f} s)"
                                          for x, u, y in zip(vals, us, ss))
                 + f" | {ratio(vals[0], vals[2])} |")

    L.append(f"\n## CPU seconds per million flows at {args.fixed_rate/1e6:.2f} M flows/s, steady state "
             f"(the same runs, the collector's threads from just before the sender starts until its socket is "
             f"drained, from /proc/PID/task/*/schedstat: start-up and shutdown left out; median of {args.fixed_runs})\n")
    L.append("| version | " + " | ".join(labels) + " | kopek zstd / nfcapd |")
    L.append("|---|" + "---|" * (len(labels) + 1))
    for v in args.versions:
        vals = [median_of(results, l, v, "stream_cpu_s_per_mflow") for l in labels]
        L.append(f"| {v} | " + " | ".join("n/a" if x is None else f"{x:.3f}" for x in vals)
                 + f" | {ratio(vals[0], vals[2])} |")

    L.append("\n## Bytes on disk per flow (same runs)\n")
    L.append("| version | " + " | ".join(labels) + " | kopek zstd / nfcapd lz4 |")
    L.append("|---|" + "---|" * (len(labels) + 1))
    for v in args.versions:
        vals = [median_of(results, l, v, "disk_bytes_per_flow") for l in labels]
        L.append(f"| {v} | " + " | ".join("n/a" if x is None else f"{x:.2f}" for x in vals)
                 + f" | {ratio(vals[0], vals[3])} |")

    L.append("\n## Peak RSS, VmHWM before SIGTERM, KiB (same runs; median)\n")
    L.append("| version | " + " | ".join(labels) + " |")
    L.append("|---|" + "---|" * len(labels))
    for v in args.versions:
        vals = [median_of(results, l, v, "vmhwm_kb") for l in labels]
        L.append(f"| {v} | " + " | ".join("n/a" if x is None else f"{x:.0f}" for x in vals) + " |")
    hw = {}
    for r in results:
        if r.get("phase") == "ladder":
            key = (r["collector"], r["version"])
            if r["vmhwm_kb"] and r["vmhwm_kb"] > hw.get(key, (0, 0))[0]:
                hw[key] = (r["vmhwm_kb"], r["rate"])
    if hw:
        L.append("\nLargest VmHWM over all ladder runs, KiB (at rate): "
                 + ", ".join(f"{k[0]} {k[1]} {v[0]} ({v[1]/1e6:.2f}M)" for k, v in sorted(hw.items())))

    if multi:
        L.append(f"\n## {args.multi_exporters} exporters, v9, {MULTI_RATE/1e3:.0f} k flows/s in all\n")
        L.append(f"Each exporter has its own source address (127.1.x.y), socket, sequence numbers and templates. "
                 f"steady: one export stream per exporter (templates resent every 20 datagrams). churn: every "
                 f"exporter starts a new export stream (new source id, new template ids) every "
                 f"{args.churn_every} datagrams; the old ones go silent.\n")
        L.append("| mode | collector | flows stored / sent | exact | kopek decoder state at the end | VmRSS KiB at 25 % / 50 % / 75 % / end of sending | VmHWM KiB |")
        L.append("|---|---|---|---|---|---|---|")
        for r in multi:
            s = [x for x in r["rss_series"] if x[1] is not None]
            pts = [s[min(len(s) - 1, int(len(s) * q))][1] for q in (0.25, 0.5, 0.75)] + [s[-1][1]] if s else []
            L.append(f"| {r['mode']} | {r['collector']} | {r['stored']['flows']} / {r['expected']['flows']} | "
                     f"{r['exact']} | {r.get('streams', '')} | {' / '.join(map(str, pts))} | {r['vmhwm_kb']} |")

    counted = [r for r in results if r.get("phase") != "noisy"]
    worst = max((r["foreign_user_s"] for r in counted), default=0)
    noisy = len(results) - len(counted)
    L.append(f"\n## Every run\n\nForeign CPU = CPU seconds the machine was busy during a run beyond the collector "
             f"and the sender (other processes, kernel writeback), in brackets its user-mode part (other "
             f"processes only). Each run waits for a quiet machine (< 10 % busy for 0.5 s) first; a run with more "
             f"than {NOISY_USER_S} s of other processes' user CPU is marked `noisy`, not counted, and repeated "
             f"(both collectors alike, whatever the outcome): {noisy} such run(s). Worst counted run: "
             f"{worst:.2f} s.\n")
    L.append("| phase | collector | version | rate asked | achieved | flows expected | stored | drops | exact | CPU s (user/sys) | steady-state CPU s | sender CPU s | foreign CPU s (user) | VmHWM KiB | bytes/flow |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        bpf = r["disk_bytes_per_flow"]
        L.append(f"| {r.get('phase')} | {r['collector']} | {r['version']} | {r['rate']/1e6:.2f}M | "
                 f"{r['achieved_rate']/1e6:.3f}M | {r['expected']['flows']} | {r['stored']['flows']} | "
                 f"{r['socket_drops']} | {r['exact']} | {r['cpu_s']:.2f} ({r['user_s']:.2f}/{r['sys_s']:.2f}) | "
                 f"{r['stream_cpu_s']:.3f} | {r['sender_cpu_s']:.2f} | {r['foreign_cpu_s']:.2f} ({r['foreign_user_s']:.2f}) | {r['vmhwm_kb']} | "
                 f"{'n/a' if bpf is None else f'{bpf:.2f}'} |")
    return "\n".join(L) + "\n"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kopek", required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", required=True, help="markdown results file")
    p.add_argument("--json", help="raw results as JSON")
    p.add_argument("--workdir", default=None)
    p.add_argument("--versions", default=",".join(VERSIONS))
    p.add_argument("--ipv6-percent", type=int, default=0)
    p.add_argument("--multi-exporters", type=int, default=0,
                   help="also run the N-exporter template-churn memory test")
    p.add_argument("--churn-every", type=int, default=8)
    p.add_argument("--multi-flows", type=int, default=0,
                   help="flows of each many-exporters run (default 2,000 per exporter)")
    p.add_argument("--phases", default="ladder,fixed,multi",
                   help="comma-separated subset of ladder,fixed,multi")
    p.add_argument("--kopek-version", default="?")
    args = p.parse_args()
    args.versions = args.versions.split(",")
    args.phases = set(args.phases.split(","))
    if args.quick:
        args.runs, rates, args.fixed_runs = 1, [FIXED_RATE], 1
    else:
        args.runs, rates, args.fixed_runs = 3, LADDER, 3
    args.fixed_rate = FIXED_RATE
    info = machine_info()
    info["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    info["kopek_version"] = args.kopek_version
    workroot = args.workdir or tempfile.mkdtemp(prefix="kopek-bench-")
    os.makedirs(workroot, exist_ok=True)
    gen_extra = ["--ipv6-percent", str(args.ipv6_percent)]
    results, best, reasons = [], {}, {}
    started = time.time()

    def extra(v):
        return gen_extra if v != "5" else ["--ipv6-percent", "0"]

    for v in (args.versions if "ladder" in args.phases else []):
        for name, make in (("kopek", lambda: Kopek(args.kopek, "zstd")), ("nfcapd", lambda: Nfcapd(args.kopek))):
            log(f"ladder {name} {v}")
            best[(name, v)], reasons[(name, v)] = ladder(args.kopek, make, v, rates, args.runs, workroot,
                                                          results, extra(v))
    fixed_flows = int(FIXED_RATE * STREAM_SECONDS)
    for rep in range(args.fixed_runs if "fixed" in args.phases else 0):
        for v in args.versions:
            for make in (lambda: Kopek(args.kopek, "zstd"), lambda: Kopek(args.kopek, "none"),
                         lambda: Nfcapd(args.kopek, "none"), lambda: Nfcapd(args.kopek, "lz4"),
                         lambda: Nfcapd(args.kopek, "lzo")):
                r = run_clean(args.kopek, make, v, FIXED_RATE, fixed_flows, workroot, results, extra(v))
                r["phase"] = "fixed"
                results.append(r)
    for r in results:
        if r["collector"].startswith("kopek") and "rb_kopek" not in info:
            info["rb_kopek"] = r["rcvbuf"]
        if r["collector"].startswith("nfcapd") and "rb_nfcapd" not in info:
            info["rb_nfcapd"] = r["rcvbuf"]
    multi = []
    if args.multi_exporters and "multi" in args.phases:
        n = args.multi_exporters
        addrs = [f"127.1.{(i + 1) >> 8}.{(i + 1) & 255}" for i in range(n)]
        flows = args.multi_flows or (2000 * n if not args.quick else 300 * n)
        base = ["--exporters", str(n), "--source", "127.1.0.1", "--ipv6-percent", str(args.ipv6_percent)]
        for mode, extra_args in (("steady", []), ("churn", ["--template-churn-every", str(args.churn_every)])):
            for make in (lambda: Kopek(args.kopek, "zstd", exporters=addrs), lambda: Nfcapd(args.kopek)):
                coll = make()
                log(f"{n} exporters, {mode}: {coll.label}")
                r = run_one(args.kopek, coll, "9", MULTI_RATE, flows, workroot, base + extra_args,
                            rss_series=True, keep=True)
                r["phase"] = f"multi {mode}"
                r["mode"] = mode
                if isinstance(coll, Kopek):
                    with open(os.path.join(coll.state, "collector-bench.stats.json")) as f:
                        d = json.load(f)["decode"]
                    refused = sum(v for v in (d.get("dropped") or {}).values() if isinstance(v, int))
                    r["streams"] = (f"{d.get('streams_current')} streams, {d.get('templates_current')} "
                                    f"templates, {refused} datagrams refused")
                shutil.rmtree(r.pop("workdir"), ignore_errors=True)
                results.append(r)
                multi.append(r)
    md = render(info, args, results, best, reasons, multi)
    md += f"\nTotal wall time of the benchmark: {time.time() - started:.0f} s.\n"
    with open(args.out, "w") as f:
        f.write(md)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "results": results,
                       "best": {f"{k[0]} {k[1]}": v for k, v in best.items()},
                       "reasons": {f"{k[0]} {k[1]}": v for k, v in reasons.items()}}, f, indent=1)
    print(md)
    if not args.workdir:
        shutil.rmtree(workroot, ignore_errors=True)


def ladder(kopek, make, version, rates, runs, workroot, results, gen_extra):
    """The highest rate of `rates` stored losslessly in `runs` of `runs` runs.

    Climb: each rate once, upward, until a run loses anything or the
    sender cannot reach the rate. Confirm: the highest rate that passed is
    run `runs - 1` more times; if any of those loses, the rate below it is
    confirmed the same way, and so on. Every rate reported has `runs`
    lossless runs; the rate above it lost at least once (or was out of the
    sender's reach, or the ladder ended)."""
    def attempt(rate, run_no):
        r = run_clean(kopek, make, version, rate, int(rate * STREAM_SECONDS), workroot, results, gen_extra)
        r["phase"] = "ladder"
        r["run"] = run_no
        results.append(r)
        return r

    passed = []
    stop_reason = "top of the ladder reached (higher rates not tried)"
    for rate in rates:
        r = attempt(rate, 1)
        if r["achieved_rate"] < SENDER_OK_SHARE * rate:
            stop_reason = (f"sender reached only {r['achieved_rate']/1e6:.2f}M at {rate/1e6:.2f}M "
                           f"(a lower bound: the collector's limit lies higher)")
            break
        if not r["exact"]:
            stop_reason = (f"loss at {rate/1e6:.2f}M: {r['stored']['flows']} of {r['expected']['flows']} "
                           f"flows stored, {r['socket_drops']} datagrams dropped")
            break
        passed.append(rate)
    while passed:
        rate = passed.pop()
        ok = True
        for i in range(2, runs + 1):
            r = attempt(rate, i)
            if not r["exact"] or r["achieved_rate"] < SENDER_OK_SHARE * rate:
                stop_reason = (f"loss at {rate/1e6:.2f}M in confirmation run {i}: {r['stored']['flows']} of "
                               f"{r['expected']['flows']} flows stored, {r['socket_drops']} datagrams dropped")
                ok = False
                break
        if ok:
            return rate, stop_reason
    return None, stop_reason


if __name__ == "__main__":
    main()
