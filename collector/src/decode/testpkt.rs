//! Test-only builders of NetFlow v5, v9 and IPFIX datagrams, written from
//! the RFCs (3954, 7011) for kopek's tests and fuzz seeds.

use std::net::IpAddr;

/// A flow as the tests describe it, before encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Flow {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    pub in_if: u32,
    pub out_if: u32,
    pub octets: u64,
    pub packets: u64,
    /// Uptime stamps (v5, v9 22/21, IPFIX 22/21), ms.
    pub first_uptime_ms: u32,
    pub last_uptime_ms: u32,
    /// Absolute times (IPFIX 150-157), ms since 1970.
    pub start_ms: i64,
    pub end_ms: i64,
    pub direction: u8,
    pub sampling: u32,
}

impl Flow {
    pub(crate) fn v4(i: u32) -> Flow {
        Flow {
            src: IpAddr::from([10, 0, (i >> 8) as u8, i as u8]),
            dst: IpAddr::from([192, 0, 2, (i % 250) as u8 + 1]),
            src_port: 1024u16.wrapping_add(i as u16),
            dst_port: 443,
            protocol: 6,
            in_if: 3,
            out_if: 7,
            octets: 1500 * (u64::from(i) + 1),
            packets: u64::from(i) + 1,
            first_uptime_ms: 50_000u32.wrapping_add(i),
            last_uptime_ms: 59_000u32.wrapping_add(i),
            start_ms: 1_700_000_000_000 + i64::from(i),
            end_ms: 1_700_000_009_000 + i64::from(i),
            direction: 0,
            sampling: 0,
        }
    }

    pub(crate) fn v6(i: u32) -> Flow {
        let mut f = Flow::v4(i);
        f.src = IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16]);
        f.dst = IpAddr::from([0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1]);
        f.protocol = 17;
        f
    }
}

/// Big-endian, keeping the low `len` bytes.
pub(crate) fn be(v: u128, len: usize, out: &mut Vec<u8>) {
    for i in (0..len).rev() {
        out.push(if i < 16 { (v >> (8 * i)) as u8 } else { 0 });
    }
}

fn addr_bytes(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

fn ntp(ms: i64) -> u128 {
    let secs = (ms.div_euclid(1000) + 2_208_988_800) as u128;
    let frac = ((ms.rem_euclid(1000) as u128) << 32) / 1000 + 1;
    (secs << 32) | frac
}

/// Encodes `f` with the template `fields` ((element id, length) pairs).
pub(crate) fn encode(fields: &[(u16, u16)], f: &Flow) -> Vec<u8> {
    let mut out = Vec::new();
    for &(ie, len) in fields {
        let l = usize::from(len);
        let v: u128 = match ie {
            8 | 27 => addr_bytes(f.src),
            12 | 28 => addr_bytes(f.dst),
            7 => u128::from(f.src_port),
            11 => u128::from(f.dst_port),
            4 => u128::from(f.protocol),
            10 => u128::from(f.in_if),
            14 => u128::from(f.out_if),
            1 | 23 => u128::from(f.octets),
            2 | 24 => u128::from(f.packets),
            22 => u128::from(f.first_uptime_ms),
            21 => u128::from(f.last_uptime_ms),
            152 => f.start_ms as u128,
            153 => f.end_ms as u128,
            150 => (f.start_ms / 1000) as u128,
            151 => (f.end_ms / 1000) as u128,
            154 | 156 => ntp(f.start_ms),
            155 | 157 => ntp(f.end_ms),
            61 => u128::from(f.direction),
            34 | 50 => u128::from(f.sampling),
            _ => 0x5a5a_5a5a_5a5a_5a5a,
        };
        be(v, l, &mut out);
    }
    out
}

/// A NetFlow v5 datagram.
pub(crate) struct V5 {
    pub seq: u32,
    pub uptime_ms: u32,
    pub unix_secs: u32,
    pub unix_nsecs: u32,
    pub engine_type: u8,
    pub engine_id: u8,
    pub sampling_interval: u16,
}

impl V5 {
    pub(crate) fn new(seq: u32) -> V5 {
        V5 {
            seq,
            uptime_ms: 60_000,
            unix_secs: 1_700_000_000,
            unix_nsecs: 250_000_000,
            engine_type: 1,
            engine_id: 2,
            sampling_interval: 0,
        }
    }

    pub(crate) fn build(&self, flows: &[Flow]) -> Vec<u8> {
        let mut d = Vec::new();
        be(5, 2, &mut d);
        be(flows.len() as u128, 2, &mut d);
        be(self.uptime_ms.into(), 4, &mut d);
        be(self.unix_secs.into(), 4, &mut d);
        be(self.unix_nsecs.into(), 4, &mut d);
        be(self.seq.into(), 4, &mut d);
        d.push(self.engine_type);
        d.push(self.engine_id);
        be(self.sampling_interval.into(), 2, &mut d);
        for f in flows {
            be(addr_bytes(f.src), 4, &mut d);
            be(addr_bytes(f.dst), 4, &mut d);
            be(0x0a00_0001, 4, &mut d); // next hop
            be(f.in_if.into(), 2, &mut d);
            be(f.out_if.into(), 2, &mut d);
            be(f.packets.into(), 4, &mut d);
            be(f.octets.into(), 4, &mut d);
            be(f.first_uptime_ms.into(), 4, &mut d);
            be(f.last_uptime_ms.into(), 4, &mut d);
            be(f.src_port.into(), 2, &mut d);
            be(f.dst_port.into(), 2, &mut d);
            d.push(0); // pad
            d.push(0x1b); // tcp flags
            d.push(f.protocol);
            d.push(0); // tos
            be(64_500, 2, &mut d);
            be(64_501, 2, &mut d);
            d.push(24);
            d.push(16);
            be(0, 2, &mut d);
        }
        d
    }
}

/// A v9 or IPFIX message under construction.
pub(crate) struct Msg {
    ipfix: bool,
    pub seq: u32,
    pub domain: u32,
    pub export_secs: u32,
    pub uptime_ms: u32,
    /// v9 header count (records of any kind).
    records: u16,
    sets: Vec<u8>,
}

impl Msg {
    pub(crate) fn v9(seq: u32, source_id: u32) -> Msg {
        Msg {
            ipfix: false,
            seq,
            domain: source_id,
            export_secs: 1_700_000_010,
            uptime_ms: 60_000,
            records: 0,
            sets: Vec::new(),
        }
    }

    pub(crate) fn ipfix(seq: u32, domain: u32) -> Msg {
        Msg {
            ipfix: true,
            ..Msg::v9(seq, domain)
        }
    }

    /// Appends a set with this id and body, padded to 4 bytes.
    pub(crate) fn raw_set(&mut self, id: u16, body: &[u8]) -> &mut Msg {
        let pad = (4 - body.len() % 4) % 4;
        be(id.into(), 2, &mut self.sets);
        be((4 + body.len() + pad) as u128, 2, &mut self.sets);
        self.sets.extend_from_slice(body);
        self.sets.extend(std::iter::repeat_n(0, pad));
        self
    }

    /// A template set with one template.
    pub(crate) fn template(&mut self, id: u16, fields: &[(u16, u16)]) -> &mut Msg {
        let mut b = Vec::new();
        be(id.into(), 2, &mut b);
        be(fields.len() as u128, 2, &mut b);
        for &(ie, len) in fields {
            be(ie.into(), 2, &mut b);
            be(len.into(), 2, &mut b);
        }
        self.records += 1;
        let set_id = if self.ipfix { 2 } else { 0 };
        self.raw_set(set_id, &b)
    }

    /// An IPFIX template with enterprise fields: `(id | 0x8000, len, pen)`.
    pub(crate) fn template_pen(&mut self, id: u16, fields: &[(u16, u16, Option<u32>)]) -> &mut Msg {
        let mut b = Vec::new();
        be(id.into(), 2, &mut b);
        be(fields.len() as u128, 2, &mut b);
        for &(ie, len, pen) in fields {
            let raw = if pen.is_some() { ie | 0x8000 } else { ie };
            be(raw.into(), 2, &mut b);
            be(len.into(), 2, &mut b);
            if let Some(pen) = pen {
                be(pen.into(), 4, &mut b);
            }
        }
        self.records += 1;
        self.raw_set(2, &b)
    }

    /// An options template: v9 (scope fields as given) or IPFIX
    /// (`scope` first, counted as scope fields).
    pub(crate) fn options_template(
        &mut self,
        id: u16,
        scope: &[(u16, u16)],
        fields: &[(u16, u16)],
    ) -> &mut Msg {
        let mut b = Vec::new();
        be(id.into(), 2, &mut b);
        if self.ipfix {
            be((scope.len() + fields.len()) as u128, 2, &mut b);
            be(scope.len() as u128, 2, &mut b);
        } else {
            be((scope.len() * 4) as u128, 2, &mut b);
            be((fields.len() * 4) as u128, 2, &mut b);
        }
        for &(ie, len) in scope.iter().chain(fields) {
            be(ie.into(), 2, &mut b);
            be(len.into(), 2, &mut b);
        }
        self.records += 1;
        let set_id = if self.ipfix { 3 } else { 1 };
        self.raw_set(set_id, &b)
    }

    /// A data set of flows encoded with `fields`.
    pub(crate) fn data(&mut self, id: u16, fields: &[(u16, u16)], flows: &[Flow]) -> &mut Msg {
        let mut b = Vec::new();
        for f in flows {
            b.extend(encode(fields, f));
        }
        self.records += flows.len() as u16;
        self.raw_set(id, &b)
    }

    /// A data set of pre-encoded records.
    pub(crate) fn data_raw(&mut self, id: u16, records: &[Vec<u8>]) -> &mut Msg {
        let b: Vec<u8> = records.concat();
        self.records += records.len() as u16;
        self.raw_set(id, &b)
    }

    pub(crate) fn build(&self) -> Vec<u8> {
        let mut d = Vec::new();
        if self.ipfix {
            be(10, 2, &mut d);
            be((16 + self.sets.len()) as u128, 2, &mut d);
            be(self.export_secs.into(), 4, &mut d);
            be(self.seq.into(), 4, &mut d);
            be(self.domain.into(), 4, &mut d);
        } else {
            be(9, 2, &mut d);
            be(self.records.into(), 2, &mut d);
            be(self.uptime_ms.into(), 4, &mut d);
            be(self.export_secs.into(), 4, &mut d);
            be(self.seq.into(), 4, &mut d);
            be(self.domain.into(), 4, &mut d);
        }
        d.extend_from_slice(&self.sets);
        d
    }
}

/// The usual IPv4 template of a v9 router (uptime times).
pub(crate) const V9_V4_FIELDS: &[(u16, u16)] = &[
    (8, 4),
    (12, 4),
    (7, 2),
    (11, 2),
    (4, 1),
    (10, 4),
    (14, 4),
    (1, 8),
    (2, 4),
    (22, 4),
    (21, 4),
    (61, 1),
    (5, 1),
    (6, 1),
    (16, 4),
    (17, 4),
];

/// An IPFIX IPv6 template with absolute ms times.
pub(crate) const IPFIX_V6_FIELDS: &[(u16, u16)] = &[
    (27, 16),
    (28, 16),
    (7, 2),
    (11, 2),
    (4, 1),
    (10, 4),
    (14, 4),
    (1, 8),
    (2, 8),
    (152, 8),
    (153, 8),
    (61, 1),
];

/// Tiny deterministic PRNG (xorshift64*) for property-style tests.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
