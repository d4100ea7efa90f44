//! The proof the encoders are right: an independent decoder
//! (netflow_parser 1.0.6) reads back exactly the flows that went in.

use std::net::IpAddr;

use netflow_parser::variable_versions::field_value::FieldValue;
use netflow_parser::variable_versions::ipfix::lookup::{IANAIPFixField, IPFixField};
use netflow_parser::variable_versions::{ipfix, v9};
use netflow_parser::{NetflowPacket, NetflowParser, V9Field};

use super::*;
use crate::record::FlowDirection;

const EXPORTER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 250));

/// One decoded datagram: header facts plus records in wire order.
#[derive(Debug, Default)]
struct Decoded {
    sequence: u32,
    /// v5/v9 header count; IPFIX header length.
    count_or_len: u16,
    domain: u32,
    had_templates: bool,
    options_sampling: Option<u32>,
    records: Vec<FlowRecord>,
}

fn num(v: &FieldValue) -> u64 {
    v.as_u64()
        .or_else(|| v.as_u8().map(u64::from))
        .unwrap_or_else(|| panic!("not a number: {v:?}"))
}

fn addr(v: &FieldValue) -> IpAddr {
    match v {
        FieldValue::Ip4Addr(a) => IpAddr::V4(*a),
        FieldValue::Ip6Addr(a) => IpAddr::V6(*a),
        other => panic!("not an address: {other:?}"),
    }
}

/// Decodes every datagram with one parser (templates carry over), the way
/// a collector would, into FlowRecords.
fn decode_all<'a>(datagrams: impl Iterator<Item = &'a [u8]>) -> Vec<Decoded> {
    let mut parser = NetflowParser::default();
    let mut sampling: Option<u32> = None;
    let mut out = Vec::new();
    for bytes in datagrams {
        let result = parser.parse_bytes(bytes);
        assert!(result.error.is_none(), "{:?}", result.error);
        assert_eq!(result.packets.len(), 1);
        let mut d = Decoded::default();
        match &result.packets[0] {
            NetflowPacket::V5(p) => {
                let h = p.header;
                d.sequence = h.flow_sequence;
                d.count_or_len = h.count;
                d.domain = u32::from(h.engine_type) << 8 | u32::from(h.engine_id);
                let export_ms = i64::from(h.unix_secs) * 1000 + i64::from(h.unix_nsecs / 1_000_000);
                let ms = |t: u32| export_ms - i64::from(h.sys_up_time.wrapping_sub(t));
                for f in &p.flowsets {
                    let mut r = FlowRecord::empty(SourceKind::NetflowV5);
                    r.exporter = EXPORTER;
                    r.domain = d.domain;
                    r.src = IpAddr::V4(f.src_addr);
                    r.dst = IpAddr::V4(f.dst_addr);
                    r.src_port = f.src_port;
                    r.dst_port = f.dst_port;
                    r.protocol = f.protocol_number;
                    r.in_if = u32::from(f.input);
                    r.out_if = u32::from(f.output);
                    r.bytes_raw = u64::from(f.d_octets);
                    r.packets_raw = u64::from(f.d_pkts);
                    r.first_ms = ms(f.first);
                    r.last_ms = ms(f.last);
                    r.sampling = u32::from(h.sampling_interval & 0x3fff).max(1);
                    assert_eq!(f.tcp_flags, tcp_flags_of(&r));
                    d.records.push(r);
                }
            }
            NetflowPacket::V9(p) => {
                let h = p.header;
                d.sequence = h.sequence_number;
                d.count_or_len = h.count;
                d.domain = h.source_id;
                let export_ms = i64::from(h.unix_secs) * 1000;
                for set in &p.flowsets {
                    match &set.body {
                        v9::FlowSetBody::Template(_) => d.had_templates = true,
                        v9::FlowSetBody::OptionsTemplate(_) => {}
                        v9::FlowSetBody::OptionsData(o) => {
                            for rec in &o.fields {
                                for (f, v) in &rec.options_fields {
                                    if *f == V9Field::SamplingInterval {
                                        sampling = Some(num(v) as u32);
                                    }
                                }
                            }
                        }
                        v9::FlowSetBody::Data(data) => {
                            for rec in &data.fields {
                                let mut r = FlowRecord::empty(SourceKind::NetflowV9);
                                r.exporter = EXPORTER;
                                r.domain = d.domain;
                                r.sampling = sampling.unwrap_or(1);
                                let mut flags = 0;
                                for (f, v) in rec {
                                    let ms = |t: u64| {
                                        export_ms - i64::from(h.sys_up_time.wrapping_sub(t as u32))
                                    };
                                    match f {
                                        V9Field::Ipv4SrcAddr | V9Field::Ipv6SrcAddr => {
                                            r.src = addr(v)
                                        }
                                        V9Field::Ipv4DstAddr | V9Field::Ipv6DstAddr => {
                                            r.dst = addr(v)
                                        }
                                        V9Field::L4SrcPort => r.src_port = num(v) as u16,
                                        V9Field::L4DstPort => r.dst_port = num(v) as u16,
                                        V9Field::Protocol => r.protocol = num(v) as u8,
                                        V9Field::InputSnmp => r.in_if = num(v) as u32,
                                        V9Field::OutputSnmp => r.out_if = num(v) as u32,
                                        V9Field::InBytes => r.bytes_raw = num(v),
                                        V9Field::InPkts => r.packets_raw = num(v),
                                        V9Field::FirstSwitched => r.first_ms = ms(num(v)),
                                        V9Field::LastSwitched => r.last_ms = ms(num(v)),
                                        V9Field::Direction => {
                                            r.direction = FlowDirection::from_u8(num(v) as u8)
                                        }
                                        V9Field::TcpFlags => match v {
                                            FieldValue::TcpControlBits(b, 1) => {
                                                flags = u16::from(*b)
                                            }
                                            other => panic!("{other:?}"),
                                        },
                                        _ => {}
                                    }
                                }
                                assert_eq!(flags, u16::from(tcp_flags_of(&r)));
                                d.records.push(r);
                            }
                        }
                        other => panic!("unexpected v9 set {other:?}"),
                    }
                }
            }
            NetflowPacket::IPFix(p) => {
                let h = p.header;
                d.sequence = h.sequence_number;
                d.count_or_len = h.length;
                d.domain = h.observation_domain_id;
                for set in &p.flowsets {
                    match &set.body {
                        ipfix::FlowSetBody::Template(_) | ipfix::FlowSetBody::Templates(_) => {
                            d.had_templates = true
                        }
                        ipfix::FlowSetBody::OptionsTemplate(_)
                        | ipfix::FlowSetBody::OptionsTemplates(_) => {}
                        ipfix::FlowSetBody::OptionsData(o) => {
                            for rec in &o.fields {
                                for (f, v) in rec {
                                    if *f == IPFixField::IANA(IANAIPFixField::SamplingInterval) {
                                        sampling = Some(num(v) as u32);
                                    }
                                }
                            }
                        }
                        ipfix::FlowSetBody::Data(data) => {
                            for rec in &data.fields {
                                let mut r = FlowRecord::empty(SourceKind::Ipfix);
                                r.exporter = EXPORTER;
                                r.domain = d.domain;
                                r.sampling = sampling.unwrap_or(1);
                                for (f, v) in rec {
                                    let IPFixField::IANA(f) = f else {
                                        panic!("enterprise field {f:?}")
                                    };
                                    use IANAIPFixField as I;
                                    match f {
                                        I::SourceIpv4address | I::SourceIpv6address => {
                                            r.src = addr(v)
                                        }
                                        I::DestinationIpv4address | I::DestinationIpv6address => {
                                            r.dst = addr(v)
                                        }
                                        I::SourceTransportPort => r.src_port = num(v) as u16,
                                        I::DestinationTransportPort => r.dst_port = num(v) as u16,
                                        I::ProtocolIdentifier => r.protocol = num(v) as u8,
                                        I::IngressInterface => r.in_if = num(v) as u32,
                                        I::EgressInterface => r.out_if = num(v) as u32,
                                        I::OctetDeltaCount => r.bytes_raw = num(v),
                                        I::PacketDeltaCount => r.packets_raw = num(v),
                                        I::FlowStartMilliseconds => r.first_ms = num(v) as i64,
                                        I::FlowEndMilliseconds => r.last_ms = num(v) as i64,
                                        I::FlowDirection => {
                                            r.direction = FlowDirection::from_u8(num(v) as u8)
                                        }
                                        _ => {}
                                    }
                                }
                                d.records.push(r);
                            }
                        }
                        other => panic!("unexpected ipfix set {other:?}"),
                    }
                }
            }
            other => panic!("unexpected packet {other:?}"),
        }
        d.options_sampling = sampling;
        out.push(d);
    }
    out
}

fn flows(seed: u64, n: usize) -> (FlowGen, Vec<FlowRecord>) {
    let mut g = FlowGen::new(seed, GenProfile::default()).unwrap();
    let mut v = Vec::new();
    g.fill(&mut v, n);
    (g, v)
}

/// Encodes a generated stream, decodes it, and checks every flow came back
/// exactly as [`Encoder::expected`] says. Returns the decoded datagrams.
fn round_trip(enc: &mut dyn Encoder, seed: u64, n: u64) -> (DatagramBatch, Vec<Decoded>) {
    let mut g = FlowGen::new(seed, GenProfile::default()).unwrap();
    let mut batch = DatagramBatch::new();
    let mut input = Vec::new();
    encode_stream(&mut g, enc, n, &mut batch, Some(&mut input)).unwrap();
    let decoded = decode_all(batch.iter());
    let got: Vec<FlowRecord> = decoded.iter().flat_map(|d| d.records.clone()).collect();
    let want: Vec<FlowRecord> = input
        .iter()
        .filter_map(|f| enc.expected(f, EXPORTER))
        .collect();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "flow {i}");
    }
    let stats = enc.stats();
    assert_eq!(stats.values_clamped, 0);
    assert_eq!(stats.flows_emitted, want.len() as u64);
    assert_eq!(stats.flows_emitted + stats.flows_unrepresentable, n);
    assert_eq!(batch.total_flows(), want.len() as u64);
    for (info, d) in batch.infos().iter().zip(&decoded) {
        assert_eq!(info.flows as usize, d.records.len());
        assert_eq!(info.sequence, d.sequence);
        assert_eq!(d.domain, enc.domain());
        assert!(d.records.len() <= enc.max_flows_per_datagram());
    }
    (batch, decoded)
}

#[test]
fn v5_round_trip_is_exact() {
    let mut enc = V5Encoder::new(V5Config {
        engine_type: 1,
        engine_id: 7,
        ..V5Config::default()
    })
    .unwrap();
    let (batch, decoded) = round_trip(&mut enc, 11, 20_000);
    let v6 = enc.stats().flows_unrepresentable;
    assert!(v6 > 1500 && v6 < 2500, "{v6}");
    // flow_sequence counts flows; count = flows in the datagram.
    let mut seq = 0u32;
    for d in &decoded {
        assert_eq!(d.sequence, seq);
        assert_eq!(usize::from(d.count_or_len), d.records.len());
        seq += u32::from(d.count_or_len);
    }
    assert!(batch.iter().all(|b| b.len() <= 24 + 30 * 48));
    assert!(decoded.iter().filter(|d| d.records.len() == 30).count() > decoded.len() / 2);
}

#[test]
fn v5_sampling_and_clamping() {
    let mut enc = V5Encoder::new(V5Config {
        sampling_interval: 100,
        ..V5Config::default()
    })
    .unwrap();
    let (_, mut fl) = flows(1, 100);
    fl.retain(|f| f.src.is_ipv4());
    fl[0].bytes_raw = u64::from(u32::MAX) + 5;
    fl[1].in_if = 70_000;
    let mut batch = DatagramBatch::new();
    enc.encode_into(&fl, fl.last().unwrap().last_ms, &mut batch)
        .unwrap();
    assert_eq!(enc.stats().values_clamped, 2);
    let got: Vec<FlowRecord> = decode_all(batch.iter())
        .into_iter()
        .flat_map(|d| d.records)
        .collect();
    let want: Vec<FlowRecord> = fl
        .iter()
        .filter_map(|f| enc.expected(f, EXPORTER))
        .collect();
    assert_eq!(got, want);
    assert_eq!(got[0].bytes_raw, u64::from(u32::MAX));
    assert_eq!(got[0].sampling, 100);
    assert_eq!(got[1].in_if, 65_535);
    assert_eq!(&batch.get(0)[22..24], &(0x4000u16 | 100).to_be_bytes());
}

#[test]
fn v9_round_trip_is_exact_both_interface_widths() {
    for width in [IfIndexWidth::Bytes2, IfIndexWidth::Bytes4] {
        let mut enc = V9Encoder::new(V9Config {
            source_id: 77,
            ifindex_width: width,
            ..V9Config::default()
        })
        .unwrap();
        let (batch, decoded) = round_trip(&mut enc, 12, 20_000);
        assert_eq!(enc.stats().flows_unrepresentable, 0);
        for (i, d) in decoded.iter().enumerate() {
            // Sequence counts datagrams; count counts all records.
            assert_eq!(d.sequence, i as u32);
            let templates = if d.had_templates { 2 } else { 0 };
            assert_eq!(usize::from(d.count_or_len), d.records.len() + templates);
            assert_eq!(d.had_templates, i % 20 == 0, "datagram {i}");
        }
        assert!(batch.iter().all(|b| b.len() <= 1472));
        assert_eq!(
            enc.stats().template_datagrams,
            decoded.len().div_ceil(20) as u64
        );
    }
}

#[test]
fn v9_and_ipfix_template_fields() {
    let v9 = V9Encoder::new(V9Config::default()).unwrap();
    let ids = |f: Vec<TemplateField>| f.iter().map(|t| (t.ie, t.len_bytes)).collect::<Vec<_>>();
    assert_eq!(
        ids(v9.template_fields(false)),
        [
            (8, 4),
            (12, 4),
            (15, 4),
            (10, 2),
            (14, 2),
            (2, 4),
            (1, 4),
            (22, 4),
            (21, 4),
            (7, 2),
            (11, 2),
            (6, 1),
            (4, 1),
            (5, 1),
            (61, 1),
            (16, 2),
            (17, 2)
        ]
    );
    assert_eq!(
        ids(v9.template_fields(true))[..3],
        [(27, 16), (28, 16), (62, 16)]
    );
    let ipfix = IpfixEncoder::new(IpfixConfig::default()).unwrap();
    assert_eq!(
        ids(ipfix.template_fields(false)),
        [
            (8, 4),
            (12, 4),
            (15, 4),
            (10, 4),
            (14, 4),
            (2, 8),
            (1, 8),
            (152, 8),
            (153, 8),
            (7, 2),
            (11, 2),
            (6, 1),
            (4, 1),
            (5, 1),
            (61, 1)
        ]
    );
}

#[test]
fn v9_sampling_goes_out_as_options() {
    let mut enc = V9Encoder::new(V9Config {
        sampling_interval: 512,
        template_resend_every_datagrams: 5,
        ..V9Config::default()
    })
    .unwrap();
    let (_, decoded) = round_trip(&mut enc, 13, 3000);
    for (i, d) in decoded.iter().enumerate() {
        assert_eq!(d.options_sampling, Some(512));
        // 2 templates + 1 options template + 1 options data record.
        let extra = if i % 5 == 0 { 4 } else { 0 };
        assert_eq!(usize::from(d.count_or_len), d.records.len() + extra);
    }
}

#[test]
fn ipfix_round_trip_is_exact() {
    for (width, sampling) in [(IfIndexWidth::Bytes4, 1), (IfIndexWidth::Bytes2, 64)] {
        let mut enc = IpfixEncoder::new(IpfixConfig {
            observation_domain_id: 4242,
            ifindex_width: width,
            sampling_interval: sampling,
            ..IpfixConfig::default()
        })
        .unwrap();
        let (batch, decoded) = round_trip(&mut enc, 14, 20_000);
        // Sequence = data records (flows and options data) before the message.
        let mut seq = 0u32;
        for (i, (d, bytes)) in decoded.iter().zip(batch.iter()).enumerate() {
            assert_eq!(d.sequence, seq);
            assert_eq!(usize::from(d.count_or_len), bytes.len());
            assert_eq!(d.had_templates, i % 20 == 0);
            let options = u32::from(sampling > 1 && d.had_templates);
            seq += d.records.len() as u32 + options;
            assert!(d.records.len() <= 24);
            if sampling > 1 {
                assert_eq!(d.options_sampling, Some(sampling));
            }
        }
        assert!(batch.iter().all(|b| b.len() <= 1472));
    }
}

#[test]
fn same_seed_same_bytes() {
    let encoders = || -> Vec<Box<dyn Encoder>> {
        vec![
            Box::new(V5Encoder::new(V5Config::default()).unwrap()),
            Box::new(V9Encoder::new(V9Config::default()).unwrap()),
            Box::new(IpfixEncoder::new(IpfixConfig::default()).unwrap()),
        ]
    };
    let run = |seed: u64| -> Vec<Vec<Vec<u8>>> {
        encoders()
            .iter_mut()
            .map(|enc| {
                let mut g = FlowGen::new(seed, GenProfile::default()).unwrap();
                let mut batch = DatagramBatch::new();
                encode_stream(&mut g, enc.as_mut(), 5000, &mut batch, None).unwrap();
                batch.to_vecs()
            })
            .collect()
    };
    let a = run(5);
    assert_eq!(a, run(5));
    let b = run(6);
    for (x, y) in a.iter().zip(&b) {
        assert_ne!(x, y);
    }
    // encode() and encode_into() write the same bytes.
    let (g, fl) = flows(5, 500);
    for mut enc in encoders() {
        let mut vecs = Vec::new();
        enc.encode(&fl, g.now_ms(), &mut vecs).unwrap();
        let mut enc2 = encoders()
            .into_iter()
            .find(|e| e.kind() == enc.kind())
            .unwrap();
        let mut batch = DatagramBatch::new();
        enc2.encode_into(&fl, g.now_ms(), &mut batch).unwrap();
        assert_eq!(vecs, batch.to_vecs());
    }
}

#[test]
fn skipped_datagrams_leave_sequence_gaps() {
    let (g, fl) = flows(21, 3000);
    let cases: Vec<Box<dyn Encoder>> = vec![
        Box::new(V5Encoder::new(V5Config::default()).unwrap()),
        Box::new(V9Encoder::new(V9Config::default()).unwrap()),
        Box::new(IpfixEncoder::new(IpfixConfig::default()).unwrap()),
    ];
    for mut enc in cases {
        // Reference run without skips.
        let mut reference = DatagramBatch::new();
        let mut plain = match enc.kind() {
            SourceKind::NetflowV5 => {
                Box::new(V5Encoder::new(V5Config::default()).unwrap()) as Box<dyn Encoder>
            }
            SourceKind::NetflowV9 => Box::new(V9Encoder::new(V9Config::default()).unwrap()),
            _ => Box::new(IpfixEncoder::new(IpfixConfig::default()).unwrap()),
        };
        plain.encode_into(&fl, g.now_ms(), &mut reference).unwrap();

        enc.skip_datagram(3);
        enc.skip_datagram(20); // v9/IPFIX: a template resend goes missing too
        enc.skip_next_datagrams(2); // 0 and 1
        let mut batch = DatagramBatch::new();
        enc.encode_into(&fl, g.now_ms(), &mut batch).unwrap();
        let kept: Vec<u64> = batch.infos().iter().map(|i| i.datagram_index).collect();
        assert_eq!(batch.len() + 4, reference.len(), "{:?}", enc.kind());
        assert!(!kept.contains(&0) && !kept.contains(&1));
        assert!(!kept.contains(&3) && !kept.contains(&20));
        // Every kept datagram is byte-identical to the unskipped run's.
        for (info, bytes) in batch.infos().iter().zip(batch.iter()) {
            assert_eq!(bytes, reference.get(info.datagram_index as usize));
        }
        let lost: u64 = [0, 1, 3, 20]
            .iter()
            .map(|&i| u64::from(reference.infos()[i].flows))
            .sum();
        let s = enc.stats();
        assert_eq!(s.datagrams_skipped, 4);
        assert_eq!(s.flows_skipped, lost);
        assert_eq!(s.flows_emitted + s.flows_skipped, reference.total_flows());
        assert_eq!(batch.skipped_flows(&[0, 1, 3, 20]), lost);
        assert_eq!(
            batch.skipped_flows(&[3]),
            u64::from(reference.infos()[3].flows)
        );
        let skipped: Vec<(u64, u32)> = batch
            .skipped()
            .iter()
            .map(|d| (d.datagram_index, d.sequence))
            .collect();
        let want: Vec<(u64, u32)> = [0, 1, 3, 20]
            .iter()
            .map(|&i| (i, reference.infos()[i as usize].sequence))
            .collect();
        assert_eq!(skipped, want);
        // The gap shows in the sequence numbers, in the format's own unit.
        let after3 = batch
            .infos()
            .iter()
            .find(|i| i.datagram_index == 4)
            .unwrap();
        let before3 = batch
            .infos()
            .iter()
            .find(|i| i.datagram_index == 2)
            .unwrap();
        let gap = after3.sequence - before3.sequence;
        match enc.kind() {
            SourceKind::NetflowV9 => assert_eq!(gap, 2),
            _ => assert_eq!(
                u64::from(gap),
                u64::from(before3.flows) + u64::from(reference.infos()[3].flows)
            ),
        }
    }
}

#[test]
fn restart_resets_sequence_and_resends_templates() {
    let (g, fl) = flows(31, 200);
    let t = g.now_ms();
    let mut v9 = V9Encoder::new(V9Config::default()).unwrap();
    let mut batch = DatagramBatch::new();
    v9.encode_into(&fl, t, &mut batch).unwrap();
    let before = batch.len();
    assert!(before > 2);
    v9.restart(t - 60_000);
    v9.encode_into(&fl[..10], t, &mut batch).unwrap();
    let d = &decode_all(batch.iter())[before];
    assert_eq!(d.sequence, 0);
    assert!(d.had_templates);
    let uptime = u32::from_be_bytes(batch.get(before)[4..8].try_into().unwrap());
    assert!(uptime <= 61_000, "{uptime}");

    let mut v5 = V5Encoder::new(V5Config::default()).unwrap();
    let mut batch = DatagramBatch::new();
    v5.encode_into(&fl, t, &mut batch).unwrap();
    let before = batch.len();
    v5.restart(t - 1000);
    v5.encode_into(&fl[fl.len() - 5..], t, &mut batch).unwrap();
    let last = batch.get(before);
    assert_eq!(u32::from_be_bytes(last[16..20].try_into().unwrap()), 0);
    assert_eq!(u32::from_be_bytes(last[4..8].try_into().unwrap()), 1000);

    let mut ipfix = IpfixEncoder::new(IpfixConfig::default()).unwrap();
    let mut batch = DatagramBatch::new();
    ipfix.encode_into(&fl, t, &mut batch).unwrap();
    let before = batch.len();
    ipfix.restart(0);
    ipfix.encode_into(&fl[..10], t, &mut batch).unwrap();
    let d = &decode_all(batch.iter())[before];
    assert_eq!((d.sequence, d.had_templates), (0, true));
}

#[test]
fn bad_configs_and_export_times_are_errors() {
    let v9 = |f: fn(&mut V9Config)| {
        let mut c = V9Config::default();
        f(&mut c);
        V9Encoder::new(c).err().map(|e| e.to_string())
    };
    for (key, f) in [
        (
            "template_id_v4",
            (|c| c.template_id_v4 = 255) as fn(&mut V9Config),
        ),
        ("template_id_v6", |c| c.template_id_v6 = 256),
        ("max_flows_per_datagram", |c| c.max_flows_per_datagram = 0),
        ("max_datagram_bytes", |c| c.max_datagram_bytes = 200),
        ("max_datagram_bytes", |c| c.max_datagram_bytes = u16::MAX),
        ("template_resend_every_datagrams", |c| {
            c.template_resend_every_datagrams = 0
        }),
        ("sampling_interval", |c| c.sampling_interval = 0),
    ] {
        let e = v9(f).unwrap_or_else(|| panic!("{key} accepted"));
        assert!(e.contains(key), "{e}");
    }
    assert!(
        IpfixEncoder::new(IpfixConfig {
            max_message_bytes: 100,
            ..IpfixConfig::default()
        })
        .is_err()
    );
    for (interval, flows) in [(0, 30), (16_384, 30), (1, 0), (1, 31)] {
        assert!(
            V5Encoder::new(V5Config {
                sampling_interval: interval,
                max_flows_per_datagram: flows,
                ..V5Config::default()
            })
            .is_err()
        );
    }
    // Smallest allowed datagrams still work: one IPv6 record each.
    let mut tiny = V9Encoder::new(V9Config {
        max_datagram_bytes: 20 + 4 + 2 * (4 + 17 * 4) + 4 + 80,
        ..V9Config::default()
    })
    .unwrap();
    round_trip(&mut tiny, 3, 500);

    let (_, fl) = flows(1, 10);
    let mut out = DatagramBatch::new();
    let mut encs: Vec<Box<dyn Encoder>> = vec![
        Box::new(V5Encoder::new(V5Config::default()).unwrap()),
        Box::new(V9Encoder::new(V9Config::default()).unwrap()),
        Box::new(IpfixEncoder::new(IpfixConfig::default()).unwrap()),
    ];
    for enc in encs.iter_mut() {
        for t in [-1, i64::MIN, i64::MAX, 5_000_000_000_000] {
            assert!(
                enc.encode_into(&fl, t, &mut out).is_err(),
                "{:?} {t}",
                enc.kind()
            );
        }
    }
    // Before the exporter booted.
    assert!(
        encs[0]
            .encode_into(&fl, DEFAULT_BOOT_MS - 1, &mut out)
            .is_err()
    );
    assert!(
        encs[1]
            .encode_into(&fl, DEFAULT_BOOT_MS - 1001, &mut out)
            .is_err()
    );
    assert!(out.is_empty());
}

#[test]
fn odd_flows_are_counted_not_panicked_on() {
    let mut mixed = FlowRecord::empty(SourceKind::Ipfix);
    mixed.dst = "2001:db8::1".parse().unwrap();
    let mut late = FlowRecord::empty(SourceKind::Ipfix);
    late.first_ms = DEFAULT_START_MS + 5000;
    late.last_ms = i64::MAX;
    late.bytes_raw = u64::MAX;
    late.packets_raw = u64::MAX;
    late.in_if = u32::MAX;
    let export = DEFAULT_START_MS;
    for mut enc in [
        Box::new(V5Encoder::new(V5Config::default()).unwrap()) as Box<dyn Encoder>,
        Box::new(V9Encoder::new(V9Config::default()).unwrap()),
        Box::new(IpfixEncoder::new(IpfixConfig::default()).unwrap()),
    ] {
        let mut out = DatagramBatch::new();
        enc.encode_into(
            &[mixed, late, FlowRecord::empty(SourceKind::Ipfix)],
            export,
            &mut out,
        )
        .unwrap();
        assert!(enc.expected(&mixed, EXPORTER).is_none());
        let s = enc.stats();
        assert_eq!(s.flows_unrepresentable, 1);
        assert_eq!(s.flows_emitted, 2);
        assert!(s.values_clamped >= 2, "{:?} {s:?}", enc.kind());
        decode_all(out.iter());
    }
}

#[test]
fn sent_over_loopback_and_decoded() {
    use std::net::UdpSocket;
    use std::time::Duration;
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = rx.local_addr().unwrap();
    let mut enc = V9Encoder::new(V9Config::default()).unwrap();
    let mut g = FlowGen::new(8, GenProfile::default()).unwrap();
    let mut batch = DatagramBatch::new();
    let mut input = Vec::new();
    encode_stream(&mut g, &mut enc, 3000, &mut batch, Some(&mut input)).unwrap();
    let expected_datagrams = batch.len();
    let receiver = std::thread::spawn(move || {
        let mut received = Vec::new();
        let mut buf = vec![0u8; 65_536];
        for _ in 0..expected_datagrams {
            let (n, _) = rx.recv_from(&mut buf).unwrap();
            received.push(buf[..n].to_vec());
        }
        received
    });
    // 3000 flows at 300 000 flows/s: 10 ms, in bursts.
    let report = send_batch(&tx, target, &batch, Some(300_000)).unwrap();
    assert_eq!(report.flows_sent, 3000);
    assert_eq!(report.datagrams_sent, batch.len() as u64);
    let received = receiver.join().unwrap();
    let got: Vec<FlowRecord> = decode_all(received.iter().map(Vec::as_slice))
        .into_iter()
        .flat_map(|d| d.records)
        .collect();
    let want: Vec<FlowRecord> = input
        .iter()
        .filter_map(|f| enc.expected(f, EXPORTER))
        .collect();
    assert_eq!(got, want);
}
