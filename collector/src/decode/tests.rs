//! Decoder tests: protocol behaviour, state scoping, limits, sequence
//! tracking, and every hostile case of the guide's RELIABILITY.md.

use std::net::{IpAddr, Ipv4Addr};

use super::testpkt::{Flow, IPFIX_V6_FIELDS, Msg, V5, V9_V4_FIELDS, encode};
use super::*;
use crate::record::FlowDirection;

const NOW_MS: i64 = 1_700_000_010_500;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

struct T {
    d: Decoder,
    flows: Vec<FlowRecord>,
    losses: Vec<LossRecord>,
}

impl T {
    fn new() -> T {
        T::with(DecodeLimits::default())
    }

    fn with(limits: DecodeLimits) -> T {
        T {
            d: Decoder::new(limits),
            flows: Vec::new(),
            losses: Vec::new(),
        }
    }

    fn feed(&mut self, from: IpAddr, now: i64, dgram: &[u8]) -> Result<usize, DecodeError> {
        self.d.decode(
            from,
            now,
            ExporterOpts::default(),
            dgram,
            &mut self.flows,
            &mut self.losses,
        )
    }

    fn ok(&mut self, dgram: &[u8]) -> usize {
        self.feed(ip(1), NOW_MS, dgram).expect("decodes")
    }

    fn tick(&mut self, now: i64) {
        self.d.tick(now, &mut self.losses);
    }

    fn stats(&self) -> &DecodeStats {
        self.d.stats()
    }
}

// ---------------------------------------------------------------- v5

#[test]
fn v5_decodes_fields_times_domain_and_sampling() {
    let mut t = T::new();
    let mut h = V5::new(1000);
    h.sampling_interval = 0x4000 | 100; // mode bits above the 14-bit interval
    let flows = [Flow::v4(1), Flow::v4(2)];
    assert_eq!(t.ok(&h.build(&flows)), 2);
    let r = t.flows[0];
    assert_eq!(r.kind, SourceKind::NetflowV5);
    assert_eq!(r.domain, (1 << 8) | 2);
    assert_eq!((r.src, r.dst), (flows[0].src, flows[0].dst));
    assert_eq!((r.src_port, r.dst_port, r.protocol), (1025, 443, 6));
    assert_eq!((r.in_if, r.out_if), (3, 7));
    assert_eq!((r.bytes_raw, r.packets_raw, r.sampling), (3000, 2, 100));
    assert_eq!(r.direction, FlowDirection::Unknown);
    // export 1_700_000_000.250 s, uptime 60 000, first 50 001, last 59 001
    let export_ms = 1_700_000_000_250;
    assert_eq!(r.first_ms, export_ms - (60_000 - 50_001));
    assert_eq!(r.last_ms, export_ms - (60_000 - 59_001));
    assert_eq!(t.stats().datagrams_v5, 1);
    assert_eq!(t.stats().flows_decoded, 2);
}

#[test]
fn v5_sampling_override_wins_and_zero_interval_is_one() {
    let mut t = T::new();
    let mut flows = Vec::new();
    let mut losses = Vec::new();
    let mut h = V5::new(0);
    h.sampling_interval = 100;
    t.d.decode(
        ip(1),
        NOW_MS,
        ExporterOpts {
            sampling: Some(1000),
            ..ExporterOpts::default()
        },
        &h.build(&[Flow::v4(1)]),
        &mut flows,
        &mut losses,
    )
    .unwrap();
    assert_eq!(flows[0].sampling, 1000);
    h.sampling_interval = 0;
    h.seq = 1;
    t.ok(&h.build(&[Flow::v4(1)]));
    assert_eq!(t.flows[0].sampling, 1);
}

#[test]
fn v5_gaps_duplicates_and_resets() {
    let mut t = T::new();
    let f = [Flow::v4(1); 10];
    t.ok(&V5::new(0).build(&f));
    // Exact duplicate: dropped, not decoded twice.
    assert_eq!(
        t.feed(ip(1), NOW_MS, &V5::new(0).build(&f)),
        Err(DecodeError::Duplicate)
    );
    assert_eq!(t.flows.len(), 10);
    assert_eq!(t.stats().duplicates, 1);
    assert_eq!(t.stats().dropped.duplicate, 1);
    // 20 flows missing, then a datagram at 30.
    t.ok(&V5::new(30).build(&f));
    t.tick(NOW_MS + 1_000);
    assert!(t.losses.is_empty(), "held during the reorder window");
    t.tick(NOW_MS + 2_000);
    assert_eq!(t.losses.len(), 1);
    let l = t.losses[0];
    assert_eq!(
        (l.reason, l.unit, l.count),
        (LossReason::Gap, LossUnit::Flows, 20)
    );
    assert_eq!((l.expected_seq, l.received_seq), (10, 30));
    assert_eq!((t.stats().gaps, t.stats().lost_flows), (1, 20));
    // Reboot: uptime back to 1 s.
    let mut h = V5::new(0);
    h.uptime_ms = 1_000;
    t.ok(&h.build(&f));
    assert_eq!(t.losses.last().map(|l| l.reason), Some(LossReason::Reset));
    assert_eq!(t.stats().resets, 1);
}

// ---------------------------------------------------------------- v9

#[test]
fn v9_template_and_data_in_one_datagram() {
    let mut t = T::new();
    let flows: Vec<Flow> = (0..5).map(Flow::v4).collect();
    let d = Msg::v9(1, 42)
        .template(300, V9_V4_FIELDS)
        .data(300, V9_V4_FIELDS, &flows)
        .build();
    assert_eq!(t.ok(&d), 5);
    let r = t.flows[4];
    assert_eq!(r.kind, SourceKind::NetflowV9);
    assert_eq!(r.domain, 42);
    assert_eq!(r.src, flows[4].src);
    assert_eq!(r.bytes_raw, flows[4].octets);
    assert_eq!(r.direction, FlowDirection::Ingress);
    // v9 uptime times: export 1_700_000_010 s, header uptime 60 000.
    assert_eq!(r.first_ms, 1_700_000_010_000 - (60_000 - 50_004));
    assert_eq!(r.last_ms, 1_700_000_010_000 - (60_000 - 59_004));
    assert_eq!(t.stats().templates_learned, 1);
    assert_eq!(t.stats().templates_current, 1);
}

#[test]
fn v9_data_before_template_is_held_then_decoded() {
    let mut t = T::new();
    let mut data = Msg::v9(1, 0);
    data.export_secs = 1_700_000_000;
    let data = data.data(300, V9_V4_FIELDS, &[Flow::v4(1)]).build();
    assert_eq!(t.ok(&data), 0);
    assert_eq!(t.stats().held_sets, 1);
    assert!(t.stats().pending_bytes_current > 0);
    let tpl = Msg::v9(2, 0).template(300, V9_V4_FIELDS).build();
    assert_eq!(t.ok(&tpl), 1, "held flows count as appended");
    assert_eq!(t.stats().held_sets_decoded, 1);
    assert_eq!(t.stats().held_records_decoded, 1);
    assert_eq!(t.stats().pending_bytes_current, 0);
    // Decoded with the held datagram's export time.
    assert_eq!(t.flows[0].first_ms, 1_700_000_000_000 - (60_000 - 50_001));
    t.tick(NOW_MS + 60_000);
    assert!(t.losses.is_empty());
}

#[test]
fn held_data_expires_into_a_no_template_loss() {
    let mut t = T::new();
    for seq in 0..3 {
        let d = Msg::v9(seq, 0)
            .data(300, V9_V4_FIELDS, &[Flow::v4(1)])
            .build();
        t.feed(ip(1), NOW_MS + i64::from(seq), &d).unwrap();
    }
    t.tick(NOW_MS + 4_999);
    assert!(t.losses.is_empty());
    t.tick(NOW_MS + 5_002);
    assert_eq!(t.losses.len(), 1);
    let l = t.losses[0];
    assert_eq!(
        (l.reason, l.unit, l.count),
        (LossReason::NoTemplate, LossUnit::Packets, 3)
    );
    assert_eq!((l.from_ms, l.to_ms), (NOW_MS, NOW_MS + 2));
    assert_eq!(t.stats().held_sets_dropped, 3);
    assert_eq!(t.stats().pending_bytes_current, 0);
    // The template arriving later decodes nothing old.
    assert_eq!(t.ok(&Msg::v9(3, 0).template(300, V9_V4_FIELDS).build()), 0);
}

#[test]
fn held_data_is_bounded_per_exporter_and_in_total() {
    let limits = DecodeLimits {
        max_pending_bytes_per_exporter: 4_096,
        max_pending_bytes_total: 6_000,
        ..DecodeLimits::default()
    };
    let mut t = T::with(limits);
    let flows: Vec<Flow> = (0..20).map(Flow::v4).collect();
    for seq in 0..20 {
        for e in 1..=3 {
            let d = Msg::v9(seq, 0).data(300, V9_V4_FIELDS, &flows).build();
            t.feed(ip(e), NOW_MS, &d).unwrap();
        }
    }
    let s = t.stats();
    assert!(s.pending_bytes_current <= 6_000);
    assert!(s.held_sets_overflow > 0);
    assert_eq!(s.held_sets, 60 - s.held_sets_overflow);
    let overflow_losses = t
        .losses
        .iter()
        .filter(|l| l.reason == LossReason::NoTemplate)
        .count() as u64;
    assert_eq!(overflow_losses, s.held_sets_overflow);
}

#[test]
fn templates_are_scoped_per_exporter_and_domain() {
    let mut t = T::new();
    let a: &[(u16, u16)] = &[(8, 4), (12, 4), (1, 4)];
    let b: &[(u16, u16)] = &[(12, 4), (8, 4), (2, 4), (1, 8)];
    let f = Flow::v4(9);
    t.ok(&Msg::v9(0, 1).template(256, a).build());
    t.feed(ip(2), NOW_MS, &Msg::v9(0, 1).template(256, b).build())
        .unwrap();
    t.ok(&Msg::v9(1, 2).template(256, b).build());
    t.ok(&Msg::v9(2, 1).data(256, a, &[f]).build());
    t.feed(ip(2), NOW_MS, &Msg::v9(1, 1).data(256, b, &[f]).build())
        .unwrap();
    t.ok(&Msg::v9(2, 2).data(256, b, &[f]).build());
    // IPFIX domain 1 of the same exporter is yet another scope.
    t.ok(&Msg::ipfix(0, 1).template(256, b).data(256, b, &[f]).build());
    assert_eq!(t.flows.len(), 4);
    for r in &t.flows {
        assert_eq!((r.src, r.dst, r.bytes_raw), (f.src, f.dst, f.octets));
    }
    assert_eq!(t.stats().templates_current, 4);
}

#[test]
fn v9_options_sampling_applies_per_stream() {
    let mut t = T::new();
    // Sampler options: scope System(1)/4, FLOW_SAMPLER_ID(48)/1,
    // FLOW_SAMPLER_RANDOM_INTERVAL(50)/4.
    let mut rec = vec![0, 0, 0, 1, 7];
    rec.extend(512u32.to_be_bytes());
    let fields: &[(u16, u16)] = &[(8, 4), (12, 4), (1, 4), (2, 4), (48, 1)];
    let mut flow_rec = encode(&fields[..4], &Flow::v4(1));
    flow_rec.push(7);
    let d = Msg::v9(0, 5)
        .options_template(400, &[(1, 4)], &[(48, 1), (50, 4)])
        .data_raw(400, &[rec])
        .template(300, fields)
        .data_raw(300, &[flow_rec.clone()])
        .build();
    assert_eq!(t.ok(&d), 1);
    assert_eq!(t.flows[0].sampling, 512);
    assert_eq!(t.stats().options_records, 1);
    // Another domain of the same exporter does not inherit it.
    let d = Msg::v9(0, 6)
        .template(300, fields)
        .data_raw(300, &[flow_rec])
        .build();
    t.ok(&d);
    assert_eq!(t.flows[1].sampling, 1);
}

// ---------------------------------------------------------------- IPFIX

#[test]
fn ipfix_ipv6_absolute_times_and_reduced_size_counters() {
    let mut t = T::new();
    let mut fields = IPFIX_V6_FIELDS.to_vec();
    fields[7] = (1, 3); // 3-byte octet counter
    fields[8] = (2, 1); // 1-byte packet counter
    let f = Flow::v6(3);
    let d = Msg::ipfix(0, 9)
        .template(256, &fields)
        .data(256, &fields, &[f])
        .build();
    assert_eq!(t.ok(&d), 1);
    let r = t.flows[0];
    assert_eq!((r.src, r.dst, r.protocol), (f.src, f.dst, 17));
    assert_eq!((r.bytes_raw, r.packets_raw), (f.octets, f.packets));
    assert_eq!((r.first_ms, r.last_ms), (f.start_ms, f.end_ms));
    assert_eq!(r.kind, SourceKind::Ipfix);
    assert_eq!(r.domain, 9);
}

#[test]
fn ipfix_time_encodings() {
    for (s, e) in [(150, 151), (154, 155), (156, 157)] {
        let mut t = T::new();
        let fields = [
            (8, 4),
            (12, 4),
            (s, if s == 150 { 4 } else { 8 }),
            (e, if e == 151 { 4 } else { 8 }),
        ];
        let mut f = Flow::v4(1);
        f.start_ms = 1_700_000_001_000;
        f.end_ms = 1_700_000_002_000;
        t.ok(&Msg::ipfix(0, 0)
            .template(256, &fields)
            .data(256, &fields, &[f])
            .build());
        assert_eq!(
            (t.flows[0].first_ms, t.flows[0].last_ms),
            (f.start_ms, f.end_ms),
            "{s}"
        );
    }
}

#[test]
fn ipfix_uptime_times_need_system_init_time() {
    let mut t = T::new();
    let fields: &[(u16, u16)] = &[(8, 4), (12, 4), (22, 4), (21, 4)];
    let f = Flow::v4(1);
    // Unknown system init time: export time, counted.
    t.ok(&Msg::ipfix(0, 0)
        .template(256, fields)
        .data(256, fields, &[f])
        .build());
    assert_eq!(t.flows[0].first_ms, 1_700_000_010_000);
    assert_eq!(t.stats().records_sys_init_unknown, 1);
    assert_eq!(t.stats().records_time_fallback, 1);
    // Options record with systemInitTimeMilliseconds (160).
    let init_ms: u64 = 1_699_999_000_000;
    let mut rec = 1u32.to_be_bytes().to_vec(); // scope: observation domain
    rec.extend(init_ms.to_be_bytes());
    t.ok(&Msg::ipfix(1, 0)
        .options_template(257, &[(149, 4)], &[(160, 8)])
        .data_raw(257, &[rec])
        .data(256, fields, &[f])
        .build());
    assert_eq!(t.flows[1].first_ms, init_ms as i64 + 50_001);
    assert_eq!(t.flows[1].last_ms, init_ms as i64 + 59_001);
    // Or in the record itself.
    let fields2: &[(u16, u16)] = &[(8, 4), (12, 4), (22, 4), (160, 8)];
    let mut rec = encode(&fields2[..3], &f);
    rec.extend(5_000u64.to_be_bytes());
    t.ok(&Msg::ipfix(2, 1)
        .template(256, fields2)
        .data_raw(256, &[rec])
        .build());
    assert_eq!(t.flows[2].first_ms, 5_000 + 50_001);
}

#[test]
fn ipfix_enterprise_and_variable_length_fields() {
    let mut t = T::new();
    let tpl: &[(u16, u16, Option<u32>)] = &[
        (8, 4, None),
        (100, 6, Some(9)),
        (12, 4, None),
        (200, 65_535, Some(29_305)),
        (82, 65_535, None), // interfaceName, variable
        (1, 4, None),
    ];
    let mk = |long: usize, src: u8| {
        let mut r = vec![10, 0, 0, src];
        r.extend([0xee; 6]);
        r.extend([192, 0, 2, 1]);
        r.push(3);
        r.extend(b"abc");
        if long < 255 {
            r.push(long as u8);
        } else {
            r.push(255);
            r.extend((long as u16).to_be_bytes());
        }
        r.extend(std::iter::repeat_n(b'x', long));
        r.extend(1234u32.to_be_bytes());
        r
    };
    let d = Msg::ipfix(0, 0)
        .template_pen(256, tpl)
        .data_raw(256, &[mk(0, 1), mk(300, 2), mk(254, 3)])
        .build();
    assert_eq!(t.ok(&d), 3);
    let srcs: Vec<IpAddr> = t.flows.iter().map(|r| r.src).collect();
    assert_eq!(
        srcs,
        [ip_v4(10, 0, 0, 1), ip_v4(10, 0, 0, 2), ip_v4(10, 0, 0, 3)]
    );
    assert!(t.flows.iter().all(|r| r.bytes_raw == 1234));
    // A variable record cut off by the end of its set.
    let mut cut = mk(100, 4);
    cut.truncate(cut.len() - 10);
    let d = Msg::ipfix(3, 0).data_raw(256, &[mk(1, 5), cut]).build();
    assert_eq!(t.ok(&d), 1);
    assert_eq!(t.stats().records_truncated, 1);
}

fn ip_v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

#[test]
fn ipfix_template_withdrawal() {
    let mut t = T::new();
    let f: &[(u16, u16)] = &[(8, 4), (12, 4)];
    t.ok(&Msg::ipfix(0, 0)
        .template(256, f)
        .template(257, f)
        .options_template(258, &[(149, 4)], &[(160, 8)])
        .build());
    assert_eq!(t.stats().templates_current, 3);
    // Withdraw 256: field count 0.
    t.ok(&Msg::ipfix(0, 0).raw_set(2, &[1, 0, 0, 0]).build());
    assert_eq!(t.stats().templates_withdrawn, 1);
    // Data for 256 is now held, not decoded with the old template.
    assert_eq!(
        t.ok(&Msg::ipfix(0, 0).data(256, f, &[Flow::v4(1)]).build()),
        0
    );
    assert_eq!(t.stats().held_sets, 1);
    // Withdraw all data templates (id 2): the options template stays.
    t.ok(&Msg::ipfix(0, 0).raw_set(2, &[0, 2, 0, 0]).build());
    assert_eq!(t.stats().templates_current, 1);
    t.ok(&Msg::ipfix(0, 0).raw_set(3, &[0, 3, 0, 0]).build());
    assert_eq!(t.stats().templates_current, 0);
    assert_eq!(t.stats().templates_withdrawn, 3);
}

#[test]
fn ipfix_sequence_counts_records_and_drops_duplicates() {
    let mut t = T::new();
    let f: &[(u16, u16)] = &[(8, 4), (12, 4), (1, 4)];
    let flows = [Flow::v4(1); 4];
    t.ok(&Msg::ipfix(100, 0)
        .template(256, f)
        .data(256, f, &flows)
        .build());
    t.ok(&Msg::ipfix(104, 0).data(256, f, &flows).build());
    let dup = Msg::ipfix(104, 0).data(256, f, &flows).build();
    assert_eq!(t.feed(ip(1), NOW_MS, &dup), Err(DecodeError::Duplicate));
    assert_eq!(t.flows.len(), 8);
    // 8 records lost (two messages), then one arrives late and fills half.
    t.ok(&Msg::ipfix(116, 0).data(256, f, &flows).build());
    t.ok(&Msg::ipfix(108, 0).data(256, f, &flows).build());
    assert_eq!(t.stats().reordered, 1);
    t.tick(NOW_MS + 2_000);
    assert_eq!(t.losses.len(), 1);
    assert_eq!(t.losses[0].count, 4);
    assert_eq!(t.losses[0].unit, LossUnit::Flows);
    assert_eq!(t.losses[0].expected_seq, 112);
    // Template-only messages repeat the sequence number: no duplicate.
    t.ok(&Msg::ipfix(120, 0).template(256, f).build());
    t.ok(&Msg::ipfix(120, 0).template(256, f).build());
    assert_eq!(t.stats().duplicates, 1);
}

#[test]
fn v9_sequence_counts_packets() {
    let mut t = T::new();
    let f: &[(u16, u16)] = &[(8, 4), (12, 4)];
    t.ok(&Msg::v9(10, 0).template(256, f).build());
    t.ok(&Msg::v9(13, 0).data(256, f, &[Flow::v4(1)]).build());
    t.tick(NOW_MS + 2_000);
    assert_eq!(t.losses.len(), 1);
    assert_eq!(
        (t.losses[0].unit, t.losses[0].count),
        (LossUnit::Packets, 2)
    );
    assert_eq!(t.stats().lost_packets, 2);
}

#[test]
fn template_refresh_change_and_bad_redefinition() {
    let mut t = T::new();
    let a: &[(u16, u16)] = &[(8, 4), (12, 4), (1, 4)];
    let b: &[(u16, u16)] = &[(12, 4), (8, 4), (1, 8)];
    t.ok(&Msg::v9(0, 0).template(256, a).build());
    t.ok(&Msg::v9(1, 0).template(256, a).build());
    assert_eq!(t.stats().templates_refreshed, 1);
    t.ok(&Msg::v9(2, 0)
        .template(256, b)
        .data(256, b, &[Flow::v4(1)])
        .build());
    assert_eq!(t.stats().templates_changed, 1);
    assert_eq!(
        (t.flows[0].src, t.flows[0].bytes_raw),
        (Flow::v4(1).src, 3000)
    );
    // Redefined with a refused layout: the old plan must not decode the
    // new data; the data waits (and expires) instead.
    t.ok(&v9_with_set(0, &template_body(256, &[(8, 50)])));
    assert_eq!(t.stats().templates_current, 0);
    assert_eq!(t.ok(&Msg::v9(4, 0).data(256, b, &[Flow::v4(1)]).build()), 0);
    assert_eq!(t.stats().held_sets, 1);
}

// ---------------------------------------------------------------- hostile

fn v9_with_set(set_id: u16, body: &[u8]) -> Vec<u8> {
    Msg::v9(0, 0).raw_set(set_id, body).build()
}

fn template_body(id: u16, fields: &[(u16, u16)]) -> Vec<u8> {
    let mut b = id.to_be_bytes().to_vec();
    b.extend((fields.len() as u16).to_be_bytes());
    for (ie, len) in fields {
        b.extend(ie.to_be_bytes());
        b.extend(len.to_be_bytes());
    }
    b
}

#[test]
fn hostile_zero_length_fields_are_rejected() {
    let mut t = T::new();
    t.ok(&v9_with_set(
        0,
        &template_body(256, &[(8, 4), (12, 4), (99, 0)]),
    ));
    t.ok(&v9_with_set(0, &template_body(257, &[(99, 0), (98, 0)])));
    assert_eq!(t.stats().template_rejects.bad_field_length, 2);
    assert_eq!(t.stats().templates_current, 0);
    // Data for them is held (never decoded with a zero-length plan).
    assert_eq!(t.ok(&Msg::v9(1, 0).raw_set(257, &[0; 64]).build()), 0);
}

#[test]
fn hostile_flowset_length_zero_or_short_or_long_drops_the_datagram() {
    let mut t = T::new();
    let good = Msg::v9(0, 0).template(256, &[(8, 4), (12, 4)]).build();
    for bad_len in [0u16, 1, 3, 0xffff] {
        let mut d = good.clone();
        d.extend([1, 0]); // set id 256
        d.extend(bad_len.to_be_bytes());
        d.extend([0; 8]);
        assert_eq!(
            t.feed(ip(1), NOW_MS, &d),
            Err(DecodeError::BadSetLength(bad_len))
        );
        // The template before the bad set was not learned either.
        assert_eq!(t.stats().templates_current, 0);
    }
    assert_eq!(t.stats().dropped.bad_set_length, 4);
    // IPFIX too.
    let mut d = Msg::ipfix(0, 0).build();
    d.extend([0, 2, 0, 0]);
    d[3] = 20;
    assert_eq!(t.feed(ip(1), NOW_MS, &d), Err(DecodeError::BadSetLength(0)));
}

#[test]
fn hostile_field_count_65535() {
    let mut t = T::new();
    let mut b = vec![1, 0, 0xff, 0xff];
    b.extend([0, 8, 0, 4, 0, 12, 0, 4]);
    t.ok(&v9_with_set(0, &b));
    let mut ipfix = Msg::ipfix(0, 0);
    ipfix.raw_set(2, &b);
    t.ok(&ipfix.build());
    assert_eq!(t.stats().template_rejects.template_truncated, 2);
    // Many fields that are all there: over the per-template limit.
    let many: Vec<(u16, u16)> = (0..200).map(|i| (1000 + i, 1)).collect();
    t.ok(&v9_with_set(0, &template_body(256, &many)));
    assert_eq!(t.stats().template_rejects.too_many_fields, 1);
    assert_eq!(t.stats().templates_current, 0);
}

#[test]
fn hostile_wrong_length_for_the_type() {
    let mut t = T::new();
    for fields in [
        &[(8u16, 50u16), (12, 4)][..],
        &[(8, 4), (12, 4), (4, 3)],
        &[(27, 4), (28, 16)],
        &[(8, 4), (7, 4)],
    ] {
        t.ok(&v9_with_set(0, &template_body(256, fields)));
    }
    assert_eq!(t.stats().template_rejects.bad_field_length, 4);
    assert_eq!(t.stats().templates_current, 0);
    // A bad template among good ones: the good ones are still learned.
    let mut b = template_body(300, &[(8, 4), (12, 4)]);
    b.extend(template_body(301, &[(8, 50)]));
    b.extend(template_body(302, &[(27, 16), (28, 16)]));
    t.ok(&v9_with_set(0, &b));
    assert_eq!(t.stats().templates_current, 2);
}

#[test]
fn hostile_reserved_template_ids_and_set_ids() {
    let mut t = T::new();
    t.ok(&v9_with_set(0, &template_body(5, &[(8, 4)])));
    assert_eq!(t.stats().template_rejects.bad_template_id, 1);
    t.ok(&v9_with_set(77, &[1, 2, 3, 4]));
    assert_eq!(t.stats().sets_reserved_skipped, 1);
    // v9 has no withdrawal: field count 0 is refused.
    t.ok(&v9_with_set(0, &[1, 0, 0, 0]));
    assert_eq!(t.stats().template_rejects.no_fields, 1);
}

#[test]
fn hostile_options_templates() {
    let mut t = T::new();
    // IPFIX options template with scope count 0, then > field count.
    for scope in [0u16, 5] {
        let mut b = vec![1, 0, 0, 2];
        b.extend(scope.to_be_bytes());
        b.extend([0, 149, 0, 4, 0, 34, 0, 4]);
        t.ok(&Msg::ipfix(0, 0).raw_set(3, &b).build());
    }
    // v9 options with scope length not a multiple of 4.
    t.ok(&v9_with_set(
        1,
        &[1, 0, 0, 3, 0, 4, 0, 1, 0, 4, 0, 34, 0, 4],
    ));
    // v9 options with lengths beyond the set.
    t.ok(&v9_with_set(1, &[1, 0, 0xff, 0xfc, 0, 4, 0, 1, 0, 4]));
    let r = &t.stats().template_rejects;
    assert_eq!((r.bad_scope, r.template_truncated), (3, 1));
    // Options data with a 50-byte sampling interval field is refused.
    t.ok(&v9_with_set(
        1,
        &[1, 0, 0, 4, 0, 4, 0, 1, 0, 4, 0, 34, 0, 50],
    ));
    assert_eq!(t.stats().template_rejects.bad_field_length, 1);
    assert_eq!(t.stats().templates_current, 0);
}

#[test]
fn hostile_wrong_versions_and_truncated_headers() {
    let mut t = T::new();
    for v in [0u16, 1, 6, 7, 8, 11, 0xffff] {
        let mut d = vec![0u8; 100];
        d[..2].copy_from_slice(&v.to_be_bytes());
        assert_eq!(t.feed(ip(1), NOW_MS, &d), Err(DecodeError::WrongVersion(v)));
    }
    assert_eq!(t.feed(ip(1), NOW_MS, &[]), Err(DecodeError::Truncated));
    assert_eq!(t.feed(ip(1), NOW_MS, &[9]), Err(DecodeError::Truncated));
    assert_eq!(t.stats().dropped.wrong_version, 7);
    // Every prefix of valid datagrams: never a panic, and every strict
    // prefix of a header is Truncated.
    let f: Vec<Flow> = (0..3).map(Flow::v4).collect();
    let samples = [
        V5::new(0).build(&f),
        Msg::v9(0, 0)
            .template(256, V9_V4_FIELDS)
            .data(256, V9_V4_FIELDS, &f)
            .build(),
        Msg::ipfix(0, 0)
            .template(256, IPFIX_V6_FIELDS)
            .data(256, IPFIX_V6_FIELDS, &f)
            .build(),
    ];
    for (s, header) in samples.iter().zip([24, 20, 16]) {
        for cut in 0..s.len() {
            let r = t.feed(ip(1), NOW_MS, &s[..cut]);
            if (2..header).contains(&cut) {
                assert_eq!(r, Err(DecodeError::Truncated), "cut {cut}");
            }
        }
    }
    // IPFIX length field beyond the datagram or below the header.
    let mut d = Msg::ipfix(0, 0).build();
    d[3] = 200;
    assert!(matches!(
        t.feed(ip(1), NOW_MS, &d),
        Err(DecodeError::BadLength { .. })
    ));
    d[3] = 4;
    assert!(matches!(
        t.feed(ip(1), NOW_MS, &d),
        Err(DecodeError::BadLength { .. })
    ));
}

#[test]
fn hostile_template_longer_than_its_data() {
    let mut t = T::new();
    let big: Vec<(u16, u16)> = vec![(8, 4), (12, 4), (999, 60_000)];
    t.ok(&v9_with_set(0, &template_body(256, &big)));
    assert_eq!(t.stats().templates_current, 1);
    assert_eq!(t.ok(&Msg::v9(1, 0).raw_set(256, &[1; 400]).build()), 0);
}

#[test]
fn template_without_addresses_counts_no_address() {
    let mut t = T::new();
    let f: &[(u16, u16)] = &[(1, 4), (2, 4)];
    let d = Msg::v9(0, 0)
        .template(256, f)
        .data(256, f, &[Flow::v4(1), Flow::v4(2)])
        .build();
    assert_eq!(t.ok(&d), 0);
    assert_eq!(t.stats().records_no_address, 2);
}

#[test]
fn missing_times_fall_back_to_export_time() {
    let mut t = T::new();
    let f: &[(u16, u16)] = &[(8, 4), (12, 4), (1, 4)];
    t.ok(&Msg::v9(0, 0)
        .template(256, f)
        .data(256, f, &[Flow::v4(1)])
        .build());
    assert_eq!(t.flows[0].first_ms, 1_700_000_010_000);
    assert_eq!(t.flows[0].last_ms, 1_700_000_010_000);
    assert_eq!(t.stats().records_time_fallback, 1);
}

// ---------------------------------------------------------------- limits

/// One datagram defining `n` templates `first..first + n`.
fn many_templates(domain: u32, first: u16, n: u16) -> Vec<u8> {
    let mut m = Msg::ipfix(0, domain);
    let mut body = Vec::new();
    for id in first..first + n {
        body.extend(template_body(
            id,
            &[(8, 4), (12, 4), (1, 4), (2, 4), (id % 50 + 100, 2)],
        ));
    }
    m.raw_set(2, &body);
    m.build()
}

#[test]
fn template_flood_from_many_exporters_stays_capped() {
    let limits = DecodeLimits::default();
    let mut t = T::with(limits.clone());
    let legit = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
    let f: &[(u16, u16)] = &[(8, 4), (12, 4), (1, 4)];
    t.feed(legit, NOW_MS, &Msg::ipfix(0, 0).template(256, f).build())
        .unwrap();
    // 1,000 exporters × 100 template ids = 100,000 ids.
    for e in 0..1000u32 {
        let from = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + e));
        t.feed(from, NOW_MS, &many_templates(e, 256, 100)).unwrap();
    }
    let s = t.stats();
    assert_eq!(s.templates_current, limits.max_templates_total as u64);
    assert_eq!(s.templates_learned + s.templates_rejected, 100_001);
    assert_eq!(s.template_rejects.template_limit_total, 100_001 - 65_536);
    // The legitimate exporter keeps decoding (its template refresh too).
    let d = Msg::ipfix(0, 0)
        .template(256, f)
        .data(256, f, &[Flow::v4(1)])
        .build();
    assert_eq!(t.feed(legit, NOW_MS, &d), Ok(1));
    let mut per_exporter_max = 0;
    for e in t.d.exporters.values() {
        per_exporter_max = per_exporter_max.max(e.template_count);
        let n: usize = e.streams.values().map(|s| s.templates.len()).sum();
        assert_eq!(n, e.template_count);
    }
    assert!(per_exporter_max <= limits.max_templates_per_exporter);
}

#[test]
fn template_flood_from_one_exporter_stays_capped() {
    let mut t = T::new();
    let f: &[(u16, u16)] = &[(8, 4), (12, 4), (1, 4)];
    t.ok(&Msg::ipfix(0, 0).template(256, f).build());
    // 100,000 ids over 100 observation domains.
    for domain in 1..=100u32 {
        for chunk in 0..10u16 {
            let d = many_templates(domain, 256 + chunk * 100, 100);
            t.ok(&d);
        }
    }
    let s = t.stats();
    assert_eq!(s.templates_current, 512);
    assert_eq!(s.template_rejects.template_limit_exporter, 100_001 - 512);
    // Another exporter is unaffected.
    let d = Msg::ipfix(0, 0)
        .template(256, f)
        .data(256, f, &[Flow::v4(1)])
        .build();
    assert_eq!(t.feed(ip(2), NOW_MS, &d), Ok(1));
    // The flooding exporter's first template still decodes.
    assert_eq!(
        t.ok(&Msg::ipfix(1, 0).data(256, f, &[Flow::v4(1)]).build()),
        1
    );
}

#[test]
fn at_the_stream_limit_the_least_recently_seen_stream_makes_room() {
    let limits = DecodeLimits {
        max_streams: 4,
        ..DecodeLimits::default()
    };
    let mut t = T::with(limits);
    let f: &[(u16, u16)] = &[(8, 4), (12, 4)];
    for domain in 0..4 {
        t.feed(
            ip(1),
            NOW_MS + domain as i64,
            &Msg::ipfix(0, domain).template(256, f).build(),
        )
        .unwrap();
    }
    // Domain 0 was seen first and not since; none is idle for a minute.
    let fifth = Msg::ipfix(0, 99).template(256, f).build();
    t.feed(ip(1), NOW_MS + 10, &fifth).unwrap();
    let s = t.stats();
    assert_eq!((s.streams_current, s.streams_evicted), (4, 1));
    assert_eq!((s.templates_current, s.templates_evicted), (4, 1));
    assert_eq!(s.dropped.stream_limit, 0, "nothing refused");
    // Domain 0 comes back: a new stream again, another eviction (domain 1).
    t.feed(
        ip(1),
        NOW_MS + 20,
        &Msg::ipfix(0, 0).template(256, f).build(),
    )
    .unwrap();
    assert_eq!(t.stats().streams_evicted, 2);
    // The survivors are the most recently seen: domains 2, 3, 99, 0.
    let fresh = Msg::ipfix(0, 3).template(256, f).build();
    t.feed(ip(1), NOW_MS + 30, &fresh).unwrap();
    assert_eq!(t.stats().streams_evicted, 2, "domain 3 was still there");
}

#[test]
fn forget_exporter_releases_everything() {
    let mut t = T::new();
    t.ok(&Msg::v9(0, 0)
        .template(256, V9_V4_FIELDS)
        .data(300, V9_V4_FIELDS, &[Flow::v4(1)])
        .build());
    t.feed(ip(2), NOW_MS, &V5::new(0).build(&[Flow::v4(1)]))
        .unwrap();
    assert!(t.stats().pending_bytes_current > 0);
    t.d.forget_exporter(ip(1));
    let s = t.stats();
    assert_eq!(
        (
            s.templates_current,
            s.pending_bytes_current,
            s.streams_current
        ),
        (0, 0, 1)
    );
    assert_eq!((s.exporters_forgotten, s.held_sets_dropped), (1, 1));
    // Starting again from scratch works.
    t.ok(&Msg::v9(0, 0).template(256, V9_V4_FIELDS).build());
    assert_eq!(t.stats().templates_current, 1);
}

#[test]
fn stats_add_and_serialize() {
    let mut t = T::new();
    t.ok(&V5::new(0).build(&[Flow::v4(1)]));
    let _ = t.feed(ip(1), NOW_MS, &[0, 1]);
    let mut sum = DecodeStats::default();
    sum.add(t.stats());
    sum.add(t.stats());
    assert_eq!(sum.flows_decoded, 2);
    assert_eq!(sum.dropped.wrong_version, 2);
    let json = serde_json::to_string(&sum).unwrap();
    let back: DecodeStats = serde_json::from_str(&json).unwrap();
    assert_eq!(back, sum);
    assert_eq!(DecodeError::WrongVersion(1).reason(), "wrong_version");
    assert_eq!(
        DecodeError::BadTemplate(TemplateProblem::ZeroRecordLength).reason(),
        "zero_record_length"
    );
}

// ------------------------------------------------------------ clocks

/// An exporter whose clock is unset (1970 after a reboot without NTP):
/// by default its flows carry its times, and the decoder reports how far
/// behind it is; with `arrival_clock` every time of a datagram moves by
/// its arrival minus its export time — uptime-relative (v5, v9),
/// absolute (IPFIX) and held-then-decoded sets alike — and durations
/// stay the exporter's.
#[test]
fn an_unset_exporter_clock_is_reported_and_read_by_arrival_when_configured() {
    let arrival = ExporterOpts {
        arrival_clock: true,
        ..ExporterOpts::default()
    };
    // Exporter clock at 1970-01-01 00:16:40 (1,000 s after the epoch).
    let export_ms = 1_000_000;
    let skew = NOW_MS - export_ms;
    let mut v5 = V5::new(0);
    v5.unix_secs = 1_000;
    v5.unix_nsecs = 0;
    let v5 = v5.build(&[Flow::v4(1)]);
    let mut v9 = Msg::v9(1, 0);
    v9.export_secs = 1_000;
    let v9 = v9
        .template(300, V9_V4_FIELDS)
        .data(300, V9_V4_FIELDS, &[Flow::v4(1)])
        .build();
    let mut ipfix_flow = Flow::v6(1);
    ipfix_flow.start_ms = 900_000;
    ipfix_flow.end_ms = 990_000;
    let mut ipfix = Msg::ipfix(0, 0);
    ipfix.export_secs = 1_000;
    let ipfix = ipfix
        .template(256, IPFIX_V6_FIELDS)
        .data(256, IPFIX_V6_FIELDS, &[ipfix_flow])
        .build();
    // A v9 data set that waits for its template.
    let mut held = Msg::v9(0, 7);
    held.export_secs = 1_000;
    let held = held.data(300, V9_V4_FIELDS, &[Flow::v4(1)]).build();
    let mut tpl = Msg::v9(1, 7);
    tpl.export_secs = 1_010;
    let tpl = tpl.template(300, V9_V4_FIELDS).build();
    // (first, last) by the exporter's clock.
    let v5_times = (export_ms - (60_000 - 50_001), export_ms - (60_000 - 59_001));
    let ipfix_times = (900_000, 990_000);
    for opts in [ExporterOpts::default(), arrival] {
        let shift = if opts.arrival_clock { skew } else { 0 };
        let mut t = T::new();
        let mut feed = |from: IpAddr, now: i64, d: &[u8]| {
            t.flows.clear();
            t.d.decode(from, now, opts, d, &mut t.flows, &mut t.losses)
                .unwrap();
            t.flows
                .iter()
                .map(|r| (r.first_ms, r.last_ms))
                .collect::<Vec<_>>()
        };
        let moved = |(a, b): (i64, i64)| (a + shift, b + shift);
        assert_eq!(feed(ip(1), NOW_MS, &v5), vec![moved(v5_times)]);
        assert_eq!(feed(ip(2), NOW_MS, &v9), vec![moved(v5_times)]);
        assert_eq!(feed(ip(3), NOW_MS, &ipfix), vec![moved(ipfix_times)]);
        // Held at its own arrival; its template comes 10 s later.
        assert!(feed(ip(4), NOW_MS, &held).is_empty());
        assert_eq!(feed(ip(4), NOW_MS + 10_000, &tpl), vec![moved(v5_times)]);
        for exporter in 1..=3 {
            assert_eq!(t.d.clock_skew_ms(ip(exporter)), Some(skew));
        }
        assert_eq!(t.d.clock_skew_ms(ip(4)), Some(skew));
        assert_eq!(t.d.clock_skew_ms(ip(5)), None);
    }
}

/// An exporter clock ahead of the collector's: up to five minutes its
/// times stand (as with any clock); further ahead (2099 here, a year, an
/// hour) they are read by the arrival time whatever `clock` says, since no
/// flow is seen in the future — v5 and v9 (uptime-relative) and IPFIX
/// (absolute) alike.
#[test]
fn a_clock_far_ahead_is_read_by_arrival_even_unconfigured() {
    let now_secs = (NOW_MS / 1000) as u32;
    for (ahead_s, moved) in [
        (4 * 60, false),
        (5 * 60 + 1, true),
        (3_600, true),
        (4_070_908_800 - now_secs, true), // 2099-01-01
    ] {
        let export_secs = now_secs + ahead_s;
        let export_ms = i64::from(export_secs) * 1000;
        let mut v5 = V5::new(0);
        v5.unix_secs = export_secs;
        v5.unix_nsecs = 0;
        let v5 = v5.build(&[Flow::v4(1)]);
        let mut v9 = Msg::v9(1, 0);
        v9.export_secs = export_secs;
        let v9 = v9
            .template(300, V9_V4_FIELDS)
            .data(300, V9_V4_FIELDS, &[Flow::v4(1)])
            .build();
        let mut f = Flow::v6(1);
        f.start_ms = export_ms - 90_000;
        f.end_ms = export_ms - 10_000;
        let mut ipfix = Msg::ipfix(0, 0);
        ipfix.export_secs = export_secs;
        let ipfix = ipfix
            .template(256, IPFIX_V6_FIELDS)
            .data(256, IPFIX_V6_FIELDS, &[f])
            .build();
        let shift = if moved { NOW_MS - export_ms } else { 0 };
        let mut t = T::new();
        for (i, (d, (first, last))) in [
            (&v5, (export_ms - 9_999, export_ms - 999)),
            (&v9, (export_ms - 9_999, export_ms - 999)),
            (&ipfix, (export_ms - 90_000, export_ms - 10_000)),
        ]
        .into_iter()
        .enumerate()
        {
            t.flows.clear();
            let from = ip(i as u8 + 1);
            t.d.decode(
                from,
                NOW_MS,
                ExporterOpts::default(),
                d,
                &mut t.flows,
                &mut t.losses,
            )
            .unwrap();
            let got: Vec<_> = t.flows.iter().map(|r| (r.first_ms, r.last_ms)).collect();
            assert_eq!(
                got,
                vec![(first + shift, last + shift)],
                "{ahead_s} s ahead, exporter {i}"
            );
            assert_eq!(t.d.clock_skew_ms(from), Some(NOW_MS - export_ms));
        }
    }
}
