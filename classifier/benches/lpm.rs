//! Longest-prefix-match benchmark: `kopek_classifier::lpm::PrefixMap` against
//! `prefix_trie::PrefixMap` on a full-size synthetic table.
//!
//! ```text
//! cargo bench -p kopek-classifier --bench lpm
//! ```
//!
//! Table: 500 000 distinct IPv4 prefixes with a BGP-like length mix (~55 %
//! /24, ~10 % /22-/23, ~15 % /19-/21, ~19 % /8-/18, ~1 % /25-/32) and
//! 100 000 distinct IPv6 prefixes (/19-/48, mostly /32-/48, clustered in
//! /32 allocations inside the RIR /12s); values 0..8 like traffic classes.
//!
//! Lookups: one thread, 10 M addresses per run, median of 5 runs, results
//! summed into `black_box` (the lookups are independent, as for a batch of
//! flow records, so the CPU may overlap their cache misses):
//! (a) uniformly random IPv4, (b) IPv4 drawn from inside the table's
//! prefixes (a random prefix, random host bits), (c) the same for IPv6.
//! Afterwards every looked-up address is checked against prefix-trie's
//! longest match (prefix and value); mismatches must be 0.
//!
//! Memory: `memory_bytes()` for kopek's map; for both, the growth of the
//! process's resident set over the build (`/proc/self/statm`).

use std::collections::HashSet;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use kopek_classifier::lpm::{PrefixMap, PrefixMapBuilder, Strides};

const V4_PREFIXES: usize = 500_000;
const V6_PREFIXES: usize = 100_000;
const LOOKUPS: usize = 10_000_000;
const RUNS: usize = 5;
const CLASSES: u64 = 8;

type TrieV4 = prefix_trie::PrefixMap<Ipv4Net, u32>;
type TrieV6 = prefix_trie::PrefixMap<Ipv6Net, u32>;

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn range(&mut self, lo: u8, hi: u8) -> u8 {
        lo + self.below(u64::from(hi - lo) + 1) as u8
    }

    fn u128(&mut self) -> u128 {
        u128::from(self.next()) << 64 | u128::from(self.next())
    }
}

fn v4_len(rng: &mut Rng) -> u8 {
    match rng.below(1000) {
        0..540 => 24,
        540..640 => rng.range(22, 23),
        640..790 => rng.range(19, 21),
        790..870 => 16,
        870..920 => 17,
        920..980 => 18,
        980..990 => rng.range(8, 15),
        _ => rng.range(25, 32),
    }
}

fn v4_table(rng: &mut Rng) -> Vec<(Ipv4Net, u32)> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(V4_PREFIXES);
    while out.len() < V4_PREFIXES {
        let len = v4_len(rng);
        // Unicast-looking first octet 1..=223.
        let addr = (1 + rng.below(223) as u32) << 24 | (rng.next() as u32 & 0x00ff_ffff);
        let net = Ipv4Net::new_assert(Ipv4Addr::from(addr), len).trunc();
        if seen.insert(net) {
            out.push((net, rng.below(CLASSES) as u32));
        }
    }
    out
}

fn v6_table(rng: &mut Rng) -> Vec<(Ipv6Net, u32)> {
    // RIR blocks (2001::/16 and some /12s), then /32 allocations inside them;
    // most routes are an allocation or a more-specific of one.
    const REGIONS: [(u128, u32); 6] = [
        (0x2001, 16),
        (0x2400, 12),
        (0x2600, 12),
        (0x2800, 12),
        (0x2a00, 12),
        (0x2c00, 12),
    ];
    let region_addr = |rng: &mut Rng| {
        let (top, bits) = REGIONS[rng.below(REGIONS.len() as u64) as usize];
        top << 112 | (rng.u128() >> bits)
    };
    let allocations: Vec<u128> = (0..30_000).map(|_| region_addr(rng)).collect();
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(V6_PREFIXES);
    while out.len() < V6_PREFIXES {
        let inside = |rng: &mut Rng| {
            allocations[rng.below(allocations.len() as u64) as usize] & !(u128::MAX >> 32)
                | (rng.u128() >> 32)
        };
        let (addr, len) = match rng.below(100) {
            0..5 => (region_addr(rng), rng.range(19, 28)),
            5..30 => (
                inside(rng),
                if rng.below(5) == 0 {
                    rng.range(29, 31)
                } else {
                    32
                },
            ),
            30..50 => {
                let len = match rng.below(4) {
                    0 => 36,
                    1 => 40,
                    2 => 44,
                    _ => rng.range(33, 47),
                };
                (inside(rng), len)
            }
            _ => (inside(rng), 48),
        };
        let net = Ipv6Net::new_assert(Ipv6Addr::from(addr), len).trunc();
        if seen.insert(net) {
            out.push((net, rng.below(CLASSES) as u32));
        }
    }
    out
}

/// Resident set size of this process in bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn build_kopek(
    strides: Strides,
    v4: &[(Ipv4Net, u32)],
    v6: &[(Ipv6Net, u32)],
) -> (PrefixMap, f64, usize) {
    let rss0 = rss();
    let t = Instant::now();
    let mut b = PrefixMapBuilder::new(strides);
    for &(n, v) in v4 {
        b.insert(IpNet::V4(n), v);
    }
    for &(n, v) in v6 {
        b.insert(IpNet::V6(n), v);
    }
    let map = b.build();
    let ms = t.elapsed().as_secs_f64() * 1e3;
    (map, ms, rss().saturating_sub(rss0))
}

fn build_trie(v4: &[(Ipv4Net, u32)], v6: &[(Ipv6Net, u32)]) -> (TrieV4, TrieV6, f64, usize) {
    let rss0 = rss();
    let t = Instant::now();
    let mut t4 = TrieV4::new();
    for &(n, v) in v4 {
        t4.entry(n).or_insert(v);
    }
    let mut t6 = TrieV6::new();
    for &(n, v) in v6 {
        t6.entry(n).or_insert(v);
    }
    let ms = t.elapsed().as_secs_f64() * 1e3;
    (t4, t6, ms, rss().saturating_sub(rss0))
}

/// Median over [`RUNS`] runs of millions of lookups per second.
fn mlps<A: Copy>(addrs: &[A], f: impl Fn(A) -> Option<u32>) -> f64 {
    let mut rates: Vec<f64> = (0..RUNS)
        .map(|_| {
            let addrs = black_box(addrs);
            let t = Instant::now();
            let mut acc = 0u64;
            for &a in addrs {
                acc = acc.wrapping_add(f(a).map_or(1 << 32, u64::from));
            }
            black_box(acc);
            addrs.len() as f64 / t.elapsed().as_secs_f64() / 1e6
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[RUNS / 2]
}

fn main() {
    let mut rng = Rng(0x6b6f_7065_6b21);
    let t = Instant::now();
    let v4 = v4_table(&mut rng);
    let v6 = v6_table(&mut rng);
    let len_counts = |lens: &mut dyn Iterator<Item = u8>| {
        let mut c = [0usize; 129];
        lens.for_each(|l| c[usize::from(l)] += 1);
        c
    };
    let c4 = len_counts(&mut v4.iter().map(|p| p.0.prefix_len()));
    let c6 = len_counts(&mut v6.iter().map(|p| p.0.prefix_len()));
    let share = |c: &[usize], lo: usize, hi: usize, n: usize| {
        100.0 * c[lo..=hi].iter().sum::<usize>() as f64 / n as f64
    };
    println!(
        "table: {} IPv4 prefixes (/24 {:.1}%, /22-/23 {:.1}%, /19-/21 {:.1}%, /8-/18 {:.1}%, /25-/32 {:.1}%), \
         {} IPv6 prefixes (/19-/31 {:.1}%, /32 {:.1}%, /33-/47 {:.1}%, /48 {:.1}%), generated in {:.0} ms",
        v4.len(),
        share(&c4, 24, 24, v4.len()),
        share(&c4, 22, 23, v4.len()),
        share(&c4, 19, 21, v4.len()),
        share(&c4, 8, 18, v4.len()),
        share(&c4, 25, 32, v4.len()),
        v6.len(),
        share(&c6, 19, 31, v6.len()),
        share(&c6, 32, 32, v6.len()),
        share(&c6, 33, 47, v6.len()),
        share(&c6, 48, 48, v6.len()),
        t.elapsed().as_secs_f64() * 1e3,
    );

    // prefix-trie first: a fresh heap makes its RSS growth a fair measure.
    let (t4, t6, trie_ms, trie_rss) = build_trie(&v4, &v6);
    let (compact, compact_ms, compact_rss) = build_kopek(Strides::COMPACT, &v4, &v6);
    let (fast, fast_ms, fast_rss) = build_kopek(Strides::FAST, &v4, &v6);
    assert_eq!(fast.len(), v4.len() + v6.len());
    assert_eq!(compact.len(), fast.len());
    assert_eq!(t4.len() + t6.len(), fast.len());

    let random_v4: Vec<u32> = (0..LOOKUPS).map(|_| rng.next() as u32).collect();
    let inside_v4: Vec<u32> = (0..LOOKUPS)
        .map(|_| {
            let n = v4[rng.below(v4.len() as u64) as usize].0;
            u32::from(n.network()) | (rng.next() as u32 & u32::from(n.hostmask()))
        })
        .collect();
    let inside_v6: Vec<u128> = (0..LOOKUPS)
        .map(|_| {
            let n = v6[rng.below(v6.len() as u64) as usize].0;
            u128::from(n.network()) | (rng.u128() & u128::from(n.hostmask()))
        })
        .collect();

    let trie_v4 = |a: u32| {
        t4.get_lpm(&Ipv4Net::from(Ipv4Addr::from(a)))
            .map(|(_, &v)| v)
    };
    let trie_v6 = |a: u128| {
        t6.get_lpm(&Ipv6Net::from(Ipv6Addr::from(a)))
            .map(|(_, &v)| v)
    };
    let rows = [
        (
            "kopek lpm FAST",
            fast_ms,
            Some(fast.memory_bytes()),
            fast_rss,
            mlps(&random_v4, |a| fast.lookup_v4(a)),
            mlps(&inside_v4, |a| fast.lookup_v4(a)),
            mlps(&inside_v6, |a| fast.lookup_v6(a)),
        ),
        (
            "kopek lpm COMPACT",
            compact_ms,
            Some(compact.memory_bytes()),
            compact_rss,
            mlps(&random_v4, |a| compact.lookup_v4(a)),
            mlps(&inside_v4, |a| compact.lookup_v4(a)),
            mlps(&inside_v6, |a| compact.lookup_v6(a)),
        ),
        (
            "prefix-trie 0.8",
            trie_ms,
            None,
            trie_rss,
            mlps(&random_v4, trie_v4),
            mlps(&inside_v4, trie_v4),
            mlps(&inside_v6, trie_v6),
        ),
    ];

    // Exactness: every looked-up address, prefix and value, both kopek maps.
    let mut checked = 0usize;
    let mut mismatches = 0usize;
    let v4_addrs = random_v4
        .iter()
        .chain(&inside_v4)
        .map(|&a| IpAddr::V4(a.into()));
    let v6_addrs = inside_v6.iter().map(|&a| IpAddr::V6(a.into()));
    for addr in v4_addrs.chain(v6_addrs) {
        let want = match addr {
            IpAddr::V4(a) => t4
                .get_lpm(&Ipv4Net::from(a))
                .map(|(n, &v)| (IpNet::V4(*n), v)),
            IpAddr::V6(a) => t6
                .get_lpm(&Ipv6Net::from(a))
                .map(|(n, &v)| (IpNet::V6(*n), v)),
        };
        checked += 1;
        mismatches += usize::from(fast.lookup_prefix(addr) != want);
        mismatches += usize::from(compact.lookup_prefix(addr) != want);
    }

    let base = &rows[2];
    println!(
        "\n{} lookups per run, median of {RUNS} runs, one thread; (xN) = ratio to prefix-trie",
        LOOKUPS
    );
    println!(
        "{:<18} {:>9} {:>10} {:>9} {:>18} {:>18} {:>18}",
        "structure",
        "build ms",
        "memory MB",
        "RSS+ MB",
        "v4 random M/s",
        "v4 in-table M/s",
        "v6 in-table M/s"
    );
    for r in &rows {
        let mem =
            r.2.map_or("-".to_string(), |b| format!("{:.1}", b as f64 / 1e6));
        let cell = |v: f64, b: f64| format!("{v:.2} (x{:.1})", v / b);
        println!(
            "{:<18} {:>9.0} {:>10} {:>9.1} {:>18} {:>18} {:>18}",
            r.0,
            r.1,
            mem,
            r.3 as f64 / 1e6,
            cell(r.4, base.4),
            cell(r.5, base.5),
            cell(r.6, base.6),
        );
    }
    // Batched lookups (eight in lockstep), COMPACT: rate and agreement
    // with one-at-a-time lookups.
    let batched = |f: &dyn Fn(&mut Vec<Option<u32>>)| {
        let mut out = Vec::with_capacity(LOOKUPS);
        let mut rates: Vec<f64> = (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                f(&mut out);
                black_box(&out);
                out.len() as f64 / t.elapsed().as_secs_f64() / 1e6
            })
            .collect();
        rates.sort_by(f64::total_cmp);
        (rates[RUNS / 2], out)
    };
    let (r4, o4) = batched(&|out| compact.lookup_v4_many(&random_v4, out));
    let (i4, p4) = batched(&|out| compact.lookup_v4_many(&inside_v4, out));
    let (i6, p6) = batched(&|out| compact.lookup_v6_many(&inside_v6, out));
    for (got, addrs) in [(&o4, &random_v4), (&p4, &inside_v4)] {
        for (g, &a) in got.iter().zip(addrs.iter()) {
            checked += 1;
            mismatches += usize::from(*g != compact.lookup_v4(a));
        }
    }
    for (g, &a) in p6.iter().zip(inside_v6.iter()) {
        checked += 1;
        mismatches += usize::from(*g != compact.lookup_v6(a));
    }
    let (r, c) = (&rows[1], |v: f64, b: f64| format!("{v:.2} (x{:.2})", v / b));
    println!(
        "{:<18} {:>9} {:>10} {:>9} {:>18} {:>18} {:>18}",
        "COMPACT, batched",
        "",
        "",
        "",
        c(r4, r.4),
        c(i4, r.5),
        c(i6, r.6)
    );
    println!(
        "(batched: lookup_v4_many/lookup_v6_many, eight lookups in lockstep; (xN) = ratio to COMPACT one at a time)"
    );
    println!(
        "\nverified {checked} addresses against prefix-trie (FAST and COMPACT): {mismatches} mismatches"
    );
    assert_eq!(mismatches, 0, "kopek lpm disagrees with prefix-trie");
}
