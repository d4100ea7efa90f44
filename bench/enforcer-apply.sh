#!/usr/bin/env bash
# Enforcer batch cost (issue 5): applying 100,000 allowed addresses from
# scratch, 1,000 changes against 100,000, and renewing 100,000 leases —
# kopek's batches (`kopek enforcer` code path: `nft -f -` with the batch
# built by kopek_enforcer::nft) side by side with the same change written
# as a plain nft batch file by this script, each in a fresh network
# namespace. Needs root and nft. Prints medians of --runs (default 5).
#
#   bench/enforcer-apply.sh [KOPEK_BINARY] [RUNS]
set -euo pipefail
KOPEK="${1:-target/release/kopek}"
RUNS="${2:-5}"
NS="kpkbench$$"
WORK="$(mktemp -d)"
trap 'ip netns del "$NS" 2>/dev/null || true; rm -rf "$WORK"' EXIT

cat > "$WORK/kopek.toml" <<EOF
[general]
state_dir = "$WORK"
[enforcer]
networks = ["10.0.0.0/8"]
lease_s = 120
EOF

# The same content, written by hand the way an admin would.
python3 - "$WORK" <<'EOF'
import sys
w = sys.argv[1]
addrs = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(1, 100_001)]
def add(lst):
    out = []
    for k in range(0, len(lst), 2000):
        out.append("add element inet kopek allowed4 { " + ", ".join(f"{a} timeout 120s expires 120s" for a in lst[k:k+2000]) + " }\n")
    return "".join(out)
open(f"{w}/plain-scratch.nft", "w").write(add(addrs))
open(f"{w}/plain-changes.nft", "w").write(
    "delete element inet kopek allowed4 { " + ", ".join(addrs[:500]) + " }\n"
    + add([f"10.200.{i >> 8}.{i & 255}" for i in range(1, 501)]))
open(f"{w}/plain-renew.nft", "w").write(add(addrs))
EOF

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc; }

fresh() {
    ip netns del "$NS" 2>/dev/null || true
    ip netns add "$NS"
    ip netns exec "$NS" "$KOPEK" --config "$WORK/kopek.toml" enforcer install >/dev/null
}

declare -A R
for run in $(seq "$RUNS"); do
    fresh
    R[kopek_scratch]+="$(t ip netns exec "$NS" "$KOPEK" --config "$WORK/kopek.toml" enforcer bench-batch scratch)"$'\n'
    R[kopek_changes]+="$(t ip netns exec "$NS" "$KOPEK" --config "$WORK/kopek.toml" enforcer bench-batch changes)"$'\n'
    R[kopek_renew]+="$(t ip netns exec "$NS" "$KOPEK" --config "$WORK/kopek.toml" enforcer bench-batch renew)"$'\n'
    fresh
    R[plain_scratch]+="$(t ip netns exec "$NS" nft -f "$WORK/plain-scratch.nft")"$'\n'
    R[plain_changes]+="$(t ip netns exec "$NS" nft -f "$WORK/plain-changes.nft")"$'\n'
    R[plain_renew]+="$(t ip netns exec "$NS" nft -f "$WORK/plain-renew.nft")"$'\n'
done
echo "runs: $RUNS; seconds, median (kopek = batch built by kopek_enforcer::nft and applied through nft -f -, incl. process start)"
for what in scratch changes renew; do
    k=$(printf '%s' "${R[kopek_$what]}" | median)
    p=$(printf '%s' "${R[plain_$what]}" | median)
    echo "$what: kopek $k s, plain nft -f $p s"
done
