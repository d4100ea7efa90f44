#!/usr/bin/env bash
# kopek collector vs nfcapd (nfdump 1.7.x), side by side, same streams.
#
#   bench/collector-vs-nfcapd.sh            # full run, ~11 minutes on a quiet machine
#   bench/collector-vs-nfcapd.sh --quick    # smoke test: one rate per version, one run
#   bench/collector-vs-nfcapd.sh --multi 1000   # also: 1,000 exporters, steady and with template churn
#
# Measures, for NetFlow v5, v9 and IPFIX: the highest rate each collector
# stores losslessly in 3 of 3 runs, CPU seconds per million flows and bytes
# on disk per flow at a fixed 500 k flows/s, and peak RSS. Results: a
# markdown table on stdout and in bench/results/<date>.md (raw JSON next to
# it). Method and analysis: docs/performance.md.
#
# Needs root for one thing: it raises net.core.rmem_max to at least 4 MiB
# (sysctl -w) so that nfcapd's SO_RCVBUF gets the same 4 MiB that kopek
# asks for (kopek, as root, would get it anyway through SO_RCVBUFFORCE).
# Environment: KOPEK_BIN (default: build target/release/kopek),
# CARGO_TARGET_DIR, BENCH_WORKDIR (scratch space, default a temp dir),
# IPV6_PERCENT (IPv6 share of the v9/IPFIX streams, default 0 so that
# datagrams carry exactly 30 / 30 / 24 flows), PHASES (subset of
# ladder,fixed,multi), CHURN_EVERY (datagrams per export stream in the
# many-exporters churn test, default 8), MULTI_FLOWS (flows per
# many-exporters run, default 2,000 per exporter).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
quick=()
multi=()
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=(--quick) ;;
        --multi) multi=(--multi-exporters "$2"); shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

for tool in nfcapd nfdump ss python3; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install nfdump iproute2 python3)" >&2; exit 1; }
done

want=4194304
have=$(sysctl -n net.core.rmem_max)
if [ "$have" -lt "$want" ]; then
    echo "raising net.core.rmem_max from $have to $want (sysctl -w) so both collectors get a 4 MiB socket buffer" >&2
    sysctl -q -w net.core.rmem_max=$want
else
    echo "net.core.rmem_max = $have (>= $want): left as is" >&2
fi

if [ -z "${KOPEK_BIN:-}" ]; then
    (cd "$repo" && cargo build --release --quiet)
    KOPEK_BIN="${CARGO_TARGET_DIR:-$repo/target}/release/kopek"
fi
version="$(cd "$repo" && git describe --always --dirty 2>/dev/null || echo unknown)"
# A dirty tree gets a fingerprint of its sources, so results name the code.
if [[ "$version" == *-dirty ]]; then
    version="$version (sources $(cd "$repo" && find src collector/src config/src -name '*.rs' | sort | xargs cat | sha256sum | cut -c1-12))"
fi

# Snapshot the binary: the target directory may be shared, and a build
# elsewhere must not swap the binary in the middle of the benchmark.
snap=$(mktemp -d /tmp/kopek-bench-bin.XXXXXX)
trap 'rm -rf "$snap"' EXIT
cp "$KOPEK_BIN" "$snap/kopek"
KOPEK_BIN="$snap/kopek"
version="$version, binary sha256 $(sha256sum "$KOPEK_BIN" | cut -c1-12)"

mkdir -p "$here/results"
stamp=$(date -u +%Y-%m-%dT%H%M)
suffix=""
[ ${#quick[@]} -gt 0 ] && suffix="-quick"
out="$here/results/$stamp$suffix.md"

python3 "$here/harness.py" --kopek "$KOPEK_BIN" --out "$out" --json "${out%.md}.json" \
    --kopek-version "$version" --ipv6-percent "${IPV6_PERCENT:-0}" \
    --phases "${PHASES:-ladder,fixed,multi}" --churn-every "${CHURN_EVERY:-8}" \
    ${MULTI_FLOWS:+--multi-flows "$MULTI_FLOWS"} \
    ${BENCH_WORKDIR:+--workdir "$BENCH_WORKDIR"} "${quick[@]}" "${multi[@]}"
echo "results: $out" >&2
