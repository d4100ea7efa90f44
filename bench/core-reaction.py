#!/usr/bin/env python3
"""Reaction time of the core (issue 4): from a tier-2 commit that exhausts
an account's money to the published "blocked" decision (an access_events
row), and from a payment acknowledged by the core to "allowed" again.

The real `kopek core run` daemon (default 1 s cycle) on a temp state dir;
this script plays the classifier (a tier-2 commit with the classifier's
schema and `seq` protocol) and the operator (`kopek payment add` over the
control socket). Each round: commit 11 MB of paid traffic to an account
holding 10.00 at 1.00/MB (→ blocked), then pay 20.00 (→ allowed).

    bench/core-reaction.py [--kopek target/release/kopek] [--rounds 30] [--accounts 10000]

Prints median, p90 and max of both latencies.
"""
import argparse
import json
import random
import os
import sqlite3
import subprocess
import tempfile
import time

TARIFF = 'unit = "MB"\n[[traffic]]\nname = "paid"\nclass = "paid"\ndirection = "in"\nprice = "1.00"\n'


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kopek", default="target/release/kopek")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--accounts", type=int, default=10000,
                    help="accounts in the database (all decided every cycle)")
    a = ap.parse_args()
    kopek = os.path.abspath(a.kopek)
    d = tempfile.mkdtemp(prefix="kopek-reaction-")
    cfg = os.path.join(d, "kopek.toml")
    sock = os.path.join(d, "core.sock")
    with open(cfg, "w") as f:
        f.write(f'[general]\nstate_dir = "{d}"\ntimezone = "Europe/Moscow"\n[core]\nsocket = "{sock}"\n')
    with open(os.path.join(d, "t.toml"), "w") as f:
        f.write(TARIFF)

    def k(*args):
        return subprocess.run([kopek, "--config", cfg, *args], check=True,
                              capture_output=True, text=True).stdout

    k("tariff", "add", "t", os.path.join(d, "t.toml"), "--effective", "2000-01-01",
      "--reason", "bench", "--offline")
    k("subscriber", "add", "--name", "bench", "--offline")
    # Bulk accounts straight into the (stopped) core's database.
    k("core", "cycle")  # creates the schema
    db = sqlite3.connect(os.path.join(d, "core.sqlite"))
    now = int(time.time() * 1000)
    db.executemany("INSERT INTO accounts (number, subscriber_id, policy, credit_limit, created_ms) VALUES (?, 1, 'block-at-zero', 0, ?)",
                   [(f"a{i}", now) for i in range(a.accounts)])
    db.execute("INSERT INTO account_tariffs (account_id, tariff_id, from_ms) SELECT id, 1, 0 FROM accounts")
    db.commit()
    db.close()
    k("payment", "add", "a0", "10.00", "--id", "seed", "--reason", "bench", "--offline")

    # tier 2, as the classifier creates it
    k("core", "cycle")
    t2 = sqlite3.connect(os.path.join(d, "tier2.sqlite"), isolation_level=None)
    t2.executescript("""
        PRAGMA journal_mode=WAL;
        CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS traffic (bucket_ms INTEGER NOT NULL, account TEXT NOT NULL, class TEXT NOT NULL,
            direction TEXT NOT NULL, point TEXT NOT NULL, billed INTEGER NOT NULL, bytes INTEGER NOT NULL,
            packets INTEGER NOT NULL, flows INTEGER NOT NULL, seq INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (bucket_ms, account, class, direction, point, billed));
        CREATE INDEX IF NOT EXISTS traffic_by_seq ON traffic (seq);
        INSERT OR IGNORE INTO meta VALUES ('traffic_seq', '0');
    """)
    core = subprocess.Popen([kopek, "--config", cfg, "core", "run"], stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while not os.path.exists(sock):
            assert time.time() < deadline, "core did not start"
            time.sleep(0.01)
        time.sleep(1.5)
        cdb = sqlite3.connect(os.path.join(d, "core.sqlite"))
        acct_id = cdb.execute("SELECT id FROM accounts WHERE number = 'a0'").fetchone()[0]

        def wait_state(state, after_seq):
            while True:
                r = cdb.execute("SELECT seq FROM access_events WHERE account_id = ? AND state = ? AND seq > ? ORDER BY seq LIMIT 1",
                                (acct_id, state, after_seq)).fetchone()
                if r:
                    return r[0], time.time()
                time.sleep(0.002)

        last = cdb.execute("SELECT coalesce(max(seq), 0) FROM access_events").fetchone()[0]
        block, unblock = [], []
        bucket = now - now % 300000
        for r in range(a.rounds):
            # 11 MB more for a0: its money (10.00 + 20.00 per earlier round) runs out.
            t2.execute("BEGIN IMMEDIATE")
            seq = int(t2.execute("SELECT value FROM meta WHERE key = 'traffic_seq'").fetchone()[0]) + 1
            t2.execute("UPDATE meta SET value = ? WHERE key = 'traffic_seq'", (str(seq),))
            t2.execute("""INSERT INTO traffic VALUES (?, 'a0', 'paid', 'in', '*', 1, ?, 1, 1, ?)
                          ON CONFLICT (bucket_ms, account, class, direction, point, billed) DO UPDATE SET
                          bytes = traffic.bytes + excluded.bytes, seq = excluded.seq""",
                       (bucket, 10_000_000 if r == 0 else 20_000_000, seq))
            if r == 0:
                t2.execute("""INSERT INTO traffic VALUES (?, 'a0', 'paid', 'in', '*', 1, 1000001, 1, 1, ?)
                              ON CONFLICT (bucket_ms, account, class, direction, point, billed) DO UPDATE SET
                              bytes = traffic.bytes + excluded.bytes, seq = excluded.seq""", (bucket + 300000, seq))
            t2.execute("COMMIT")
            t0 = time.time()
            last, t1 = wait_state("blocked:no-money", last)
            block.append(t1 - t0)
            # A random phase against the core's cycle.
            time.sleep(random.uniform(0.3, 1.3))
            k("payment", "add", "a0", "20.00", "--id", f"r{r}", "--reason", "bench")
            t0 = time.time()
            last, t1 = wait_state("allowed", last)
            unblock.append(t1 - t0)
            time.sleep(random.uniform(0.3, 1.3))
    finally:
        core.terminate()
        core.wait()

    def stats(v):
        v = sorted(v)
        return f"median {v[len(v)//2]*1000:.0f} ms, p90 {v[int(len(v)*0.9)]*1000:.0f} ms, max {v[-1]*1000:.0f} ms"
    print(json.dumps({"accounts": a.accounts, "rounds": a.rounds}))
    print(f"tier-2 commit -> blocked published: {stats(block)} (target <= 2000 ms)")
    print(f"payment acknowledged -> allowed published: {stats(unblock)}")


if __name__ == "__main__":
    main()
