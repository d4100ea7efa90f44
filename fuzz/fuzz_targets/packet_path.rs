//! Stateful fuzzing of the collector's packet path: one [`Decoder`] sees a
//! whole sequence of datagrams, so templates, options and held data from
//! earlier datagrams apply to later ones (template packet, then data).
//!
//! Input framing (also written by the seed generator,
//! `collector/src/decode/fuzz_seeds.rs`), repeated until the input ends:
//!
//! ```text
//!   ctl: u8     bits 0-1 exporter (one of 4 addresses, one IPv6)
//!               bits 2-5 clock step before this datagram, × 300 ms
//!               bit 6    forget the exporter after this datagram
//!               bit 7    sampling override Some(64)
//!   len: u16 BE datagram length (cut to what is left)
//!   datagram bytes
//! ```
//!
//! After each datagram the clock ticks. Checked: no panic, no hang, the
//! returned flow count, record invariants, and that the gauges stay under
//! the (deliberately small) limits.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use kopek_collector::decode::{DecodeLimits, Decoder, ExporterOpts};
use libfuzzer_sys::fuzz_target;

const EXPORTERS: [IpAddr; 4] = [
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
];

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits {
        max_templates_per_exporter: 48,
        max_templates_total: 96,
        max_streams: 12,
        max_pending_bytes_per_exporter: 8 * 1024,
        max_pending_bytes_total: 16 * 1024,
        ..DecodeLimits::default()
    };
    let mut decoder = Decoder::new(limits.clone());
    let mut now_ms: i64 = 1_700_000_000_000;
    let mut flows = Vec::new();
    let mut losses = Vec::new();
    let mut rest = data;
    while let [ctl, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (datagram, after) = tail.split_at(len);
        rest = after;
        let exporter = EXPORTERS[usize::from(ctl & 3)];
        now_ms += i64::from((ctl >> 2) & 0x0f) * 300;
        let opts = ExporterOpts {
            sampling: (ctl & 0x80 != 0).then_some(64),
            // One exporter's times read by the arrival clock.
            arrival_clock: ctl & 3 == 3,
        };

        flows.clear();
        losses.clear();
        if let Ok(n) = decoder.decode(
            exporter,
            now_ms,
            opts,
            datagram,
            &mut flows,
            &mut losses,
        ) {
            assert_eq!(n, flows.len());
        }
        for f in &flows {
            assert!(f.last_ms >= f.first_ms);
            assert!(f.sampling >= 1);
            assert_eq!(f.exporter, exporter);
        }
        decoder.tick(now_ms, &mut losses);
        if ctl & 0x40 != 0 {
            decoder.forget_exporter(exporter);
        }
        let s = decoder.stats();
        assert!(s.templates_current <= limits.max_templates_total as u64);
        assert!(s.streams_current <= limits.max_streams as u64);
        assert!(s.pending_bytes_current <= limits.max_pending_bytes_total as u64);
    }
    // Everything held eventually expires.
    decoder.tick(now_ms + 60_000, &mut losses);
    assert_eq!(decoder.stats().pending_bytes_current, 0);
});
