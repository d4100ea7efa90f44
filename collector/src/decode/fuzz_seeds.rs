//! Seed corpus of the `packet_path` fuzz target (fuzz/fuzz_targets/), in
//! its framing: `ctl u8, len u16 BE, datagram` repeated (see the target's
//! docs). Valid v5 / v9 / IPFIX template + data sequences, so that the
//! fuzzer starts from inputs that reach deep into the decoder.
//!
//! `write_fuzz_seeds` (ignored by default) writes them:
//! `cargo test -p kopek-collector write_fuzz_seeds -- --ignored`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::testpkt::{Flow, IPFIX_V6_FIELDS, Msg, V5, V9_V4_FIELDS};
use super::*;

/// The fuzz target's exporter addresses, by the low two bits of `ctl`.
const EXPORTERS: [IpAddr; 4] = [
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
];

/// Frames datagrams: `(exporter 0..4, clock steps of 300 ms, bytes)`.
fn frame(parts: &[(u8, u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (exporter, step, d) in parts {
        out.push((exporter & 3) | ((step & 0x0f) << 2));
        out.extend((d.len() as u16).to_be_bytes());
        out.extend(d);
    }
    out
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let v4: Vec<Flow> = (0..4).map(Flow::v4).collect();
    let v6: Vec<Flow> = (0..3).map(Flow::v6).collect();
    let small: &[(u16, u16)] = &[(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 4), (2, 4)];
    let ipfix_ms: &[(u16, u16)] = &[
        (8, 4),
        (12, 4),
        (7, 2),
        (11, 2),
        (4, 1),
        (10, 2),
        (14, 2),
        (1, 8),
        (2, 8),
        (152, 8),
        (153, 8),
        (61, 1),
    ];
    let uptime: &[(u16, u16)] = &[(8, 4), (12, 4), (1, 4), (22, 4), (21, 4)];
    let mut sys_init = 1u32.to_be_bytes().to_vec();
    sys_init.extend(1_699_999_000_000u64.to_be_bytes());
    let mut sampler = vec![0, 0, 0, 1, 7];
    sampler.extend(100u32.to_be_bytes());
    let mut flow_with_sampler = super::testpkt::encode(small, &Flow::v4(1));
    flow_with_sampler.push(7);
    let mut small_sampled = small.to_vec();
    small_sampled.push((48, 1));
    let var_tpl: &[(u16, u16, Option<u32>)] = &[
        (8, 4, None),
        (12, 4, None),
        (82, 65_535, None),
        (100, 4, Some(9)),
        (1, 4, None),
    ];
    let var_rec = |name: &[u8]| {
        let mut r = vec![10, 1, 1, 1, 192, 0, 2, 9, name.len() as u8];
        r.extend(name);
        r.extend([0xee; 4]);
        r.extend(900u32.to_be_bytes());
        r
    };

    vec![
        (
            "v5_in_order_then_gap",
            frame(&[
                (0, 0, V5::new(0).build(&v4)),
                (0, 1, V5::new(4).build(&v4)),
                (0, 8, V5::new(20).build(&v4)),
            ]),
        ),
        (
            "v9_template_and_data",
            frame(&[
                (
                    1,
                    0,
                    Msg::v9(1, 0)
                        .template(256, V9_V4_FIELDS)
                        .data(256, V9_V4_FIELDS, &v4)
                        .build(),
                ),
                (1, 1, Msg::v9(2, 0).data(256, V9_V4_FIELDS, &v4).build()),
            ]),
        ),
        (
            "v9_data_before_template",
            frame(&[
                (2, 0, Msg::v9(1, 3).data(300, small, &v4).build()),
                (2, 1, Msg::v9(2, 3).template(300, small).build()),
                (2, 1, Msg::v9(3, 3).data(300, small, &v4).build()),
            ]),
        ),
        (
            "v9_options_sampling",
            frame(&[(
                0,
                0,
                Msg::v9(1, 0)
                    .options_template(400, &[(1, 4)], &[(48, 1), (50, 4)])
                    .data_raw(400, &[sampler])
                    .template(300, &small_sampled)
                    .data_raw(300, &[flow_with_sampler])
                    .build(),
            )]),
        ),
        (
            "ipfix_v4_v6",
            frame(&[
                (
                    3,
                    0,
                    Msg::ipfix(0, 1)
                        .template(256, ipfix_ms)
                        .template(257, IPFIX_V6_FIELDS)
                        .data(256, ipfix_ms, &v4)
                        .data(257, IPFIX_V6_FIELDS, &v6)
                        .build(),
                ),
                (
                    3,
                    1,
                    Msg::ipfix(7, 1).data(257, IPFIX_V6_FIELDS, &v6).build(),
                ),
            ]),
        ),
        (
            "ipfix_variable_enterprise",
            frame(&[(
                0,
                0,
                Msg::ipfix(0, 0)
                    .template_pen(256, var_tpl)
                    .data_raw(256, &[var_rec(b"ge-0/0/1"), var_rec(b"")])
                    .build(),
            )]),
        ),
        (
            "ipfix_options_sys_init",
            frame(&[
                (
                    1,
                    0,
                    Msg::ipfix(0, 2)
                        .options_template(258, &[(149, 4)], &[(160, 8)])
                        .data_raw(258, &[sys_init])
                        .template(256, uptime)
                        .build(),
                ),
                (1, 1, Msg::ipfix(1, 2).data(256, uptime, &v4).build()),
            ]),
        ),
        (
            "ipfix_withdraw_and_held",
            frame(&[
                (2, 0, Msg::ipfix(0, 0).template(256, small).build()),
                (2, 1, Msg::ipfix(0, 0).raw_set(2, &[1, 0, 0, 0]).build()),
                (2, 1, Msg::ipfix(0, 0).data(256, small, &v4).build()),
                (2, 15, Msg::ipfix(4, 0).template(256, small).build()),
                (2, 1, Msg::ipfix(4, 0).raw_set(2, &[0, 2, 0, 0]).build()),
            ]),
        ),
        (
            "mixed_exporters",
            frame(&[
                (0, 0, V5::new(100).build(&v4)),
                (1, 0, Msg::v9(9, 1).template(256, small).build()),
                (3, 0, Msg::ipfix(0, 1).template(256, small).build()),
                (1, 1, Msg::v9(10, 1).data(256, small, &v4).build()),
                (3, 1, Msg::ipfix(0, 1).data(256, small, &v4).build()),
                (0, 1, V5::new(104).build(&v4)),
            ]),
        ),
    ]
}

/// Replays a framed input the way the fuzz target does.
fn replay(data: &[u8]) -> (usize, usize) {
    let mut d = Decoder::new(DecodeLimits::default());
    let (mut flows, mut losses) = (Vec::new(), Vec::new());
    let mut errors = 0;
    let mut now_ms = 1_700_000_000_000i64;
    let mut rest = data;
    while let [ctl, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (datagram, after) = tail.split_at(len);
        rest = after;
        now_ms += i64::from((ctl >> 2) & 0x0f) * 300;
        let exporter = EXPORTERS[usize::from(ctl & 3)];
        if d.decode(
            exporter,
            now_ms,
            ExporterOpts::default(),
            datagram,
            &mut flows,
            &mut losses,
        )
        .is_err()
        {
            errors += 1;
        }
        d.tick(now_ms, &mut losses);
    }
    (flows.len(), errors)
}

#[test]
fn fuzz_seeds_are_valid_and_small() {
    let mut total_bytes = 0;
    for (name, data) in seeds() {
        let (flows, errors) = replay(&data);
        assert_eq!(errors, 0, "{name}");
        assert!(flows > 0, "{name}");
        total_bytes += data.len();
    }
    assert!(total_bytes < 100 * 1024);
}

#[test]
#[ignore = "writes fuzz/seeds/packet_path; run on purpose"]
fn write_fuzz_seeds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/packet_path");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, data) in seeds() {
        std::fs::write(dir.join(name), data).unwrap();
    }
}
