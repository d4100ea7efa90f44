//! Differential tests: kopek's decoder against netflow_parser (the
//! independent oracle) on the same bytes. Randomised templates (field
//! order, reduced-size lengths, unknown, enterprise and variable-length
//! fields), IPv4 and IPv6, v5, v9 and IPFIX.

use std::net::IpAddr;

use netflow_parser::variable_versions::field_value::FieldValue;
use netflow_parser::variable_versions::ipfix::FlowSetBody as IpfixBody;
use netflow_parser::variable_versions::v9::FlowSetBody as V9Body;
use netflow_parser::{NetflowPacket, NetflowParser};

use super::testpkt::{Flow, Msg, Rng, V5, be, encode};
use super::*;

/// The fields both decoders must agree on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Common {
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
    protocol: u8,
    in_if: u32,
    out_if: u32,
    bytes: u64,
    packets: u64,
}

impl From<&FlowRecord> for Common {
    fn from(r: &FlowRecord) -> Common {
        Common {
            src: r.src,
            dst: r.dst,
            src_port: r.src_port,
            dst_port: r.dst_port,
            protocol: r.protocol,
            in_if: r.in_if,
            out_if: r.out_if,
            bytes: r.bytes_raw,
            packets: r.packets_raw,
        }
    }
}

fn num(v: &FieldValue) -> u64 {
    v.as_u64()
        .or_else(|| v.as_u8().map(u64::from))
        .unwrap_or_else(|| panic!("oracle value not numeric: {v:?}"))
}

fn addr(v: &FieldValue) -> IpAddr {
    match v {
        FieldValue::Ip4Addr(a) => IpAddr::V4(*a),
        FieldValue::Ip6Addr(a) => IpAddr::V6(*a),
        other => panic!("oracle value not an address: {other:?}"),
    }
}

/// Reads the oracle's values of one record, by template position.
fn common_from_oracle(fields: &[(u16, u16)], values: &[&FieldValue]) -> Common {
    assert_eq!(fields.len(), values.len(), "oracle field count");
    let unspecified: IpAddr = if fields.iter().any(|f| f.0 == 27 || f.0 == 28) {
        "::".parse().unwrap()
    } else {
        "0.0.0.0".parse().unwrap()
    };
    let mut c = Common {
        src: unspecified,
        dst: unspecified,
        src_port: 0,
        dst_port: 0,
        protocol: 0,
        in_if: 0,
        out_if: 0,
        bytes: 0,
        packets: 0,
    };
    for (&(ie, _), v) in fields.iter().zip(values) {
        match ie {
            8 | 27 => c.src = addr(v),
            12 | 28 => c.dst = addr(v),
            7 => c.src_port = num(v) as u16,
            11 => c.dst_port = num(v) as u16,
            4 => c.protocol = num(v) as u8,
            10 => c.in_if = num(v) as u32,
            14 => c.out_if = num(v) as u32,
            1 => c.bytes = num(v),
            2 => c.packets = num(v),
            _ => {}
        }
    }
    c
}

fn oracle(datagram: &[u8], fields: &[(u16, u16)]) -> Vec<Common> {
    let mut parser = NetflowParser::default();
    let result = parser.parse_bytes(datagram);
    assert!(result.error.is_none(), "oracle error: {:?}", result.error);
    let mut out = Vec::new();
    for p in &result.packets {
        match p {
            NetflowPacket::V5(v5) => {
                for r in &v5.flowsets {
                    out.push(Common {
                        src: IpAddr::V4(r.src_addr),
                        dst: IpAddr::V4(r.dst_addr),
                        src_port: r.src_port,
                        dst_port: r.dst_port,
                        protocol: r.protocol_number,
                        in_if: u32::from(r.input),
                        out_if: u32::from(r.output),
                        bytes: u64::from(r.d_octets),
                        packets: u64::from(r.d_pkts),
                    });
                }
            }
            NetflowPacket::V9(v9) => {
                for fs in &v9.flowsets {
                    if let V9Body::Data(d) = &fs.body {
                        for rec in &d.fields {
                            let vals: Vec<&FieldValue> = rec.iter().map(|(_, v)| v).collect();
                            out.push(common_from_oracle(fields, &vals));
                        }
                    }
                }
            }
            NetflowPacket::IPFix(ipfix) => {
                for fs in &ipfix.flowsets {
                    if let IpfixBody::Data(d) = &fs.body {
                        for rec in &d.fields {
                            let vals: Vec<&FieldValue> = rec.iter().map(|(_, v)| v).collect();
                            out.push(common_from_oracle(fields, &vals));
                        }
                    }
                }
            }
            other => panic!("unexpected packet {other:?}"),
        }
    }
    out
}

fn ours(datagram: &[u8]) -> Vec<Common> {
    let mut d = Decoder::new(DecodeLimits::default());
    let mut flows = Vec::new();
    let mut losses = Vec::new();
    let from: IpAddr = "192.0.2.1".parse().unwrap();
    d.decode(
        from,
        0,
        ExporterOpts::default(),
        datagram,
        &mut flows,
        &mut losses,
    )
    .expect("our decoder accepts it");
    flows.iter().map(Common::from).collect()
}

fn random_flow(rng: &mut Rng, v6: bool) -> Flow {
    let mut f = if v6 {
        Flow::v6(rng.below(65_536) as u32)
    } else {
        Flow::v4(rng.below(65_536) as u32)
    };
    if v6 {
        f.src = IpAddr::V6((u128::from(rng.next()) << 64 | u128::from(rng.next())).into());
    } else {
        f.src = IpAddr::V4((rng.next() as u32).into());
        f.dst = IpAddr::V4((rng.next() as u32).into());
    }
    f.src_port = rng.next() as u16;
    f.dst_port = rng.next() as u16;
    f.protocol = rng.next() as u8;
    f.in_if = rng.next() as u32;
    f.out_if = rng.next() as u32;
    f.octets = rng.next();
    f.packets = rng.next();
    f
}

/// A random template: the address pair plus a shuffled mix of the common
/// fields (reduced-size lengths) and fields kopek skips.
fn random_fields(rng: &mut Rng, v6: bool) -> Vec<(u16, u16)> {
    let pick = |rng: &mut Rng, lens: &[u16]| lens[rng.below(lens.len() as u64) as usize];
    let mut f: Vec<(u16, u16)> = if v6 {
        vec![(27, 16), (28, 16)]
    } else {
        vec![(8, 4), (12, 4)]
    };
    f.push((7, 2));
    f.push((11, 2));
    f.push((4, 1));
    f.push((10, pick(rng, &[1, 2, 3, 4])));
    f.push((14, pick(rng, &[1, 2, 3, 4])));
    f.push((1, pick(rng, &[1, 2, 3, 4, 8])));
    f.push((2, pick(rng, &[1, 2, 3, 4, 8])));
    for extra in [
        (5, 1),
        (6, 1),
        (16, 4),
        (17, 2),
        (15, 4),
        (22, 4),
        (21, 4),
        (9, 1),
    ] {
        if rng.below(2) == 0 {
            f.push(extra);
        }
    }
    // Fisher-Yates.
    for i in (1..f.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        f.swap(i, j);
    }
    if rng.below(4) == 0 {
        f.retain(|&(ie, _)| ie != 2); // no packet counter at all
    }
    f
}

#[test]
fn v5_matches_oracle() {
    let mut rng = Rng(0x5eed_0005);
    for round in 0..50 {
        let n = 1 + rng.below(30) as usize;
        let flows: Vec<Flow> = (0..n)
            .map(|_| {
                let mut f = random_flow(&mut rng, false);
                f.in_if &= 0xffff;
                f.out_if &= 0xffff;
                f.octets &= 0xffff_ffff;
                f.packets &= 0xffff_ffff;
                f
            })
            .collect();
        let d = V5::new(round).build(&flows);
        let ours = ours(&d);
        assert_eq!(ours.len(), n);
        assert_eq!(ours, oracle(&d, &[]), "round {round}");
    }
}

#[test]
fn v9_matches_oracle_ipv4_and_ipv6() {
    let mut rng = Rng(0x5eed_0009);
    for round in 0..200 {
        let v6 = round % 3 == 0;
        let fields = random_fields(&mut rng, v6);
        let n = 1 + rng.below(20) as usize;
        let flows: Vec<Flow> = (0..n).map(|_| random_flow(&mut rng, v6)).collect();
        let d = Msg::v9(round, 7)
            .template(256 + round as u16, &fields)
            .data(256 + round as u16, &fields, &flows)
            .build();
        let ours = ours(&d);
        assert_eq!(ours.len(), n, "round {round}");
        assert_eq!(ours, oracle(&d, &fields), "round {round} fields {fields:?}");
    }
}

#[test]
fn ipfix_matches_oracle_ipv4_and_ipv6() {
    let mut rng = Rng(0x5eed_0010);
    for round in 0..200 {
        let v6 = round % 2 == 0;
        let fields = random_fields(&mut rng, v6);
        let n = 1 + rng.below(20) as usize;
        let flows: Vec<Flow> = (0..n).map(|_| random_flow(&mut rng, v6)).collect();
        let d = Msg::ipfix(round, 3)
            .template(300, &fields)
            .data(300, &fields, &flows)
            .build();
        let ours = ours(&d);
        assert_eq!(ours.len(), n, "round {round}");
        assert_eq!(ours, oracle(&d, &fields), "round {round} fields {fields:?}");
    }
}

#[test]
fn ipfix_variable_and_enterprise_fields_match_oracle() {
    let mut rng = Rng(0x5eed_0011);
    for round in 0..100 {
        let v6 = round % 2 == 1;
        let base = random_fields(&mut rng, v6);
        // Template with a variable-length interfaceName (82) and an
        // enterprise field inserted at random positions.
        let var_at = rng.below(base.len() as u64 + 1) as usize;
        let ent_at = rng.below(base.len() as u64 + 2) as usize;
        let mut tpl: Vec<(u16, u16, Option<u32>)> =
            base.iter().map(|&(ie, len)| (ie, len, None)).collect();
        tpl.insert(var_at, (82, 65_535, None));
        tpl.insert(ent_at, (77, 3, Some(12_345)));
        let n = 1 + rng.below(10) as usize;
        let mut records = Vec::new();
        for _ in 0..n {
            let f = random_flow(&mut rng, v6);
            let mut rec = Vec::new();
            for &(ie, len, pen) in &tpl {
                if len == 65_535 {
                    let l = rng.below(300) as usize;
                    if l < 255 {
                        rec.push(l as u8);
                    } else {
                        rec.push(255);
                        rec.extend((l as u16).to_be_bytes());
                    }
                    rec.extend(std::iter::repeat_n(b'a' + (l % 26) as u8, l));
                } else if pen.is_some() {
                    be(rng.next().into(), usize::from(len), &mut rec);
                } else {
                    rec.extend(encode(&[(ie, len)], &f));
                }
            }
            records.push(rec);
        }
        let d = Msg::ipfix(round, 0)
            .template_pen(400, &tpl)
            .data_raw(400, &records)
            .build();
        let oracle_fields: Vec<(u16, u16)> = tpl
            .iter()
            .map(
                |&(ie, len, pen)| {
                    if pen.is_some() { (0, len) } else { (ie, len) }
                },
            )
            .collect();
        let ours = ours(&d);
        assert_eq!(ours.len(), n, "round {round}");
        assert_eq!(
            ours,
            oracle(&d, &oracle_fields),
            "round {round} template {tpl:?}"
        );
    }
}
