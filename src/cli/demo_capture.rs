//! `kopek demo`, step 10: packet capture as a source. A capture file of
//! known packets (written through libpcap) goes through the collector's
//! packet parser and flow table (`kopek collector pcap-read`) into its own
//! tier 1, whose per-address totals must equal the packets' own.

use std::collections::BTreeMap;
use std::net::IpAddr;

use kopek_collector::capture::{self, PacketInfo};
use kopek_collector::query::{self, RawFilter, Totals};
use kopek_collector::segment::RawStore;
use kopek_config::Config;

use super::format::{human_bytes, human_count};

/// 2024-01-01 12:00:00 UTC, inside the demo's generated day.
const START_MS: i64 = 1_704_110_400_000;

pub fn capture(config: &Config) -> super::Result<bool> {
    outln!(
        "\n10. packet capture (a host with no NetFlow exporter): a capture file → flows → tier 1"
    );
    let mut c = config.clone();
    c.state_dir = config.state_dir.join("capture");
    std::fs::create_dir_all(&c.state_dir)?;
    let file = c.state_dir.join("demo.pcap");

    let (frames, truth) = packets();
    capture::write_file(&file, &frames).map_err(anyhow::Error::msg)?;
    outln!(
        "   {}: {} frames (a 90 s download, DNS queries and answers, pings, ARP)",
        file.display(),
        frames.len()
    );
    out!("   ");
    super::collector::pcap_read(&c, &file, "capture", None)?;

    let store = RawStore::new(c.collector.raw_dir(&c.state_dir));
    let raw = query::stats(&store, &RawFilter::default(), true)?;
    let mut exact = true;
    for (addr, want) in &truth {
        let got = raw.by_address.get(addr).copied().unwrap_or_default();
        let ok = (got.bytes, got.packets) == (want.bytes, want.packets);
        exact &= ok;
        outln!(
            "   {:<14} {:>3} flow records {:>10} {:>6} packets  {}",
            addr.to_string(),
            got.flows,
            human_bytes(got.bytes, 1000),
            human_count(got.packets),
            if ok {
                "= the packets' IP bytes, exactly".to_string()
            } else {
                format!(
                    "≠ captured ({} bytes, {} packets)",
                    want.bytes, want.packets
                )
            }
        );
    }
    Ok(exact)
}

/// Captured frames: (time in ms, bytes).
type Frames = Vec<(i64, Vec<u8>)>;

/// The frames of the demo capture, in time order, and per address the
/// bytes (IP lengths) and packets it sent or received.
fn packets() -> (Frames, BTreeMap<IpAddr, Totals>) {
    let ip = |s: &str| s.parse::<IpAddr>().expect("literal");
    let (home, cdn) = (ip("10.0.1.0"), ip("198.51.100.7"));
    let (home2, dns) = (ip("10.0.1.1"), ip("203.0.113.53"));
    let (acme, gw) = (ip("10.0.0.5"), ip("192.0.2.1"));
    let pkt = |src, dst, protocol, src_port, dst_port, ip_len| PacketInfo {
        src,
        dst,
        protocol,
        src_port,
        dst_port,
        ip_len,
    };
    let mut list: Vec<(i64, PacketInfo)> = Vec::new();
    // A 90 s download, 10 packets a second, acknowledged every second
    // packet: longer than the 60 s active timeout, so two records a way.
    for i in 0..900 {
        let t = START_MS + i * 100;
        list.push((t, pkt(cdn, home, 6, 443, 51_000, 1500)));
        if i % 2 == 1 {
            list.push((t + 1, pkt(home, cdn, 6, 51_000, 443, 52)));
        }
    }
    // DNS: 30 queries and answers, each from its own source port.
    for i in 0..30 {
        let t = START_MS + 5_000 + i * 1_000;
        let port = 40_000 + i as u16;
        list.push((t, pkt(home2, dns, 17, port, 53, 72)));
        list.push((t + 3, pkt(dns, home2, 17, 53, port, 180)));
    }
    // Ten pings and their replies.
    for i in 0..10 {
        let t = START_MS + 2_000 + i * 1_000;
        list.push((t, pkt(acme, gw, 1, 0, 8 << 8, 84)));
        list.push((t + 1, pkt(gw, acme, 1, 0, 0, 84)));
    }
    list.sort_by_key(|p| p.0);
    let mut truth: BTreeMap<IpAddr, Totals> = BTreeMap::new();
    let mut frames = Vec::with_capacity(list.len() + 5);
    for (t, p) in &list {
        for a in [p.src, p.dst] {
            let e = truth.entry(a).or_default();
            e.bytes += u64::from(p.ip_len);
            e.packets += 1;
        }
        frames.push((*t, capture::packet::ethernet_ipv4_frame(p).expect("IPv4")));
    }
    // ARP is not IP: counted and skipped, never billed.
    for i in 0..5 {
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        frames.push((START_MS + 500 + i * 20_000, arp));
    }
    frames.sort_by_key(|f| f.0);
    (frames, truth)
}
