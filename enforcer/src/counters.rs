//! nftables counters as a tier-1 source (the article's `iptables -Z`, done
//! right).
//!
//! Every allowed host (/32, /128) gets two named counters in the
//! enforcer's table, `k<address hex>i` and `k<address hex>o`, mapped from
//! the address in `cnt_in4`/`cnt_out4` (and the `6` twins); the forward
//! chain counts the packets it lets through (`counter name ip daddr map
//! @cnt_in4`, after the drops). Every `enforcer.counters_poll_s` the
//! enforcer reads and zeroes all of them at once (`nft reset counters
//! table`, one read-and-reset per counter in the kernel: no byte falls
//! between two reads and no counter grows until it wraps) and writes the
//! non-zero deltas as tier-1 flow records of kind `NftCounter` under
//! collector name [`COLLECTOR`]: subscriber address on its side, the
//! unspecified address as the remote, the poll interval as the time span.
//!
//! A host that leaves the allowed set is unmapped (no more counting) but
//! its counters stay until a poll has read them; then they are deleted.
//! Before the table is replaced, a poll empties them. Prefixes (interval
//! sets) are not counted per subscriber.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use ipnet::IpNet;
use kopek_collector::record::{FlowDirection, FlowRecord, SourceKind};
use kopek_collector::segment::{RawStore, SegmentWriter, WriterOptions};
use kopek_config::{Compression, Durability, EnforcerConfig};

use crate::EnforcerError;
use crate::classes::ClassMirror;

/// The tier-1 collector name of the counter source.
pub const COLLECTOR: &str = "nft";
/// A counter segment is sealed after this long.
const ROTATE_MS: i64 = 3_600_000;

/// The counter name of a host, direction (`i`: to the subscriber) and
/// class (`None`: the default class, or no classes mirrored).
pub fn counter_name(addr: IpAddr, inbound: bool, class: Option<&str>) -> String {
    let hex: String = match addr {
        IpAddr::V4(a) => crate::hex(&a.octets()),
        IpAddr::V6(a) => crate::hex(&a.octets()),
    };
    let dir = if inbound { 'i' } else { 'o' };
    match class {
        None => format!("k{hex}{dir}"),
        Some(c) => format!("k{hex}{dir}_{c}"),
    }
}

/// What a counter counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    pub addr: IpAddr,
    pub inbound: bool,
    pub class: Option<String>,
}

/// The host, direction and class a counter name stands for.
pub fn parse_name(name: &str) -> Option<Counted> {
    let body = name.strip_prefix('k')?;
    let (body, class) = match body.split_once('_') {
        Some((b, c)) if !c.is_empty() => (b, Some(c.to_string())),
        Some(_) => return None,
        None => (body, None),
    };
    let (hex, dir) = body.split_at(body.len().checked_sub(1)?);
    let inbound = match dir {
        "i" => true,
        "o" => false,
        _ => return None,
    };
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    let addr = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes.as_slice()).ok()?)),
        _ => return None,
    };
    Some(Counted {
        addr,
        inbound,
        class,
    })
}

fn host(n: &IpNet) -> Option<IpAddr> {
    (n.prefix_len() == n.max_prefix_len()).then(|| n.addr())
}

/// The classes counted apart (besides the default), as the maps' and
/// counters' name suffixes.
fn class_keys(classes: Option<&ClassMirror>) -> Vec<Option<&str>> {
    let mut v = vec![None];
    if let Some(m) = classes {
        v.extend(m.classes.iter().map(|c| Some(c.as_str())));
    }
    v
}

fn map_name(inbound: bool, fam: &str, class: Option<&str>) -> String {
    let base = if inbound { "cnt_in" } else { "cnt_out" };
    match class {
        None => format!("{base}{fam}"),
        Some(c) => format!("{base}{fam}_{c}"),
    }
}

/// Lines that create and map the counters of newly allowed hosts (one per
/// direction and counted class).
pub fn add_lines(
    c: &EnforcerConfig,
    nets: &[IpNet],
    classes: Option<&ClassMirror>,
    out: &mut String,
) {
    let keys = class_keys(classes);
    for a in nets.iter().filter_map(host) {
        let fam = if a.is_ipv4() { "4" } else { "6" };
        for class in &keys {
            for inbound in [true, false] {
                let name = counter_name(a, inbound, *class);
                out.push_str(&format!("add counter inet {} {name}\n", c.table));
                out.push_str(&format!(
                    "add element inet {} {} {{ {a} : \"{name}\" }}\n",
                    c.table,
                    map_name(inbound, fam, *class)
                ));
            }
        }
    }
}

/// Lines that stop counting hosts leaving the allowed set (their counters
/// stay until read).
pub fn unmap_lines(
    c: &EnforcerConfig,
    nets: &[IpNet],
    classes: Option<&ClassMirror>,
    out: &mut String,
) {
    let keys = class_keys(classes);
    for a in nets.iter().filter_map(host) {
        let fam = if a.is_ipv4() { "4" } else { "6" };
        for class in &keys {
            for inbound in [true, false] {
                out.push_str(&format!(
                    "delete element inet {} {} {{ {a} }}\n",
                    c.table,
                    map_name(inbound, fam, *class)
                ));
            }
        }
    }
}

/// One counter read (and zeroed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub name: String,
    pub packets: u64,
    pub bytes: u64,
}

/// Reads and zeroes every counter of the table in one `nft` call.
pub fn reset_all(c: &EnforcerConfig) -> Result<Vec<Reading>, EnforcerError> {
    let out = Command::new(&c.nft)
        .args(["-j", "reset", "counters", "table", "inet", &c.table])
        .output()
        .map_err(|e| EnforcerError::Nft(format!("running {}: {e}", c.nft.display())))?;
    if !out.status.success() {
        return Err(EnforcerError::Nft(format!(
            "reset counters: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| EnforcerError::Nft(format!("unreadable JSON from nft: {e}")))?;
    Ok(v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| {
            let c = o.get("counter")?;
            Some(Reading {
                name: c.get("name")?.as_str()?.to_string(),
                packets: c.get("packets")?.as_u64()?,
                bytes: c.get("bytes")?.as_u64()?,
            })
        })
        .collect())
}

/// The tier-1 side: one open segment of collector [`COLLECTOR`].
pub struct Source {
    store: RawStore,
    _lock: kopek_collector::segment::StoreLock,
    writer: Option<SegmentWriter>,
    last_poll_ms: i64,
    last_poll: Instant,
    pub records_written: u64,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("records_written", &self.records_written)
            .finish()
    }
}

impl Source {
    /// Takes the `nft` collector lock in `<state_dir>/raw` and seals what a
    /// crash left open.
    pub fn open(state_dir: &Path, now_ms: i64) -> Result<Source, EnforcerError> {
        let seg = |e: kopek_collector::segment::SegmentError| EnforcerError::Invalid(e.to_string());
        let store = RawStore::new(state_dir.join("raw"));
        store.create_dir().map_err(seg)?;
        let lock = store.lock(COLLECTOR).map_err(seg)?;
        for r in store.recover(COLLECTOR, now_ms).map_err(seg)? {
            tracing::warn!(segment = %r.closed_path.display(), truncated = r.truncated_bytes, "recovered a counter segment left open");
        }
        Ok(Source {
            store,
            _lock: lock,
            writer: None,
            last_poll_ms: now_ms,
            last_poll: Instant::now(),
            records_written: 0,
        })
    }

    pub fn due(&self, c: &EnforcerConfig) -> bool {
        c.counters_poll
            .is_some_and(|p| self.last_poll.elapsed() >= p)
    }

    /// Makes sure the next readings have somewhere to go before the
    /// counters are read and zeroed: what an earlier write could not put
    /// on disk (a full disk: its blocks stay in memory) is written first,
    /// and the segment is rotated or opened. While this fails the counters
    /// are left alone and go on counting in the kernel (64-bit), so
    /// nothing is lost, and at most one poll's records wait in memory.
    pub fn prepare(&mut self, now_ms: i64) -> Result<(), EnforcerError> {
        let seg = |e: kopek_collector::segment::SegmentError| EnforcerError::Invalid(e.to_string());
        if let Some(w) = self.writer.as_mut()
            && w.pending_bytes() > 0
        {
            w.write_held().map_err(seg)?;
        }
        if self
            .writer
            .as_ref()
            .is_some_and(|w| now_ms - w.created_ms() >= ROTATE_MS)
            && let Some(w) = self.writer.take()
        {
            w.close(now_ms).map_err(seg)?;
        }
        if self.writer.is_none() {
            let id = self.store.next_id(COLLECTOR).map_err(seg)?;
            let opts = WriterOptions {
                compression: Compression::Zstd { level: 1 },
                durability: Durability::EveryBlock,
            };
            self.writer = Some(
                SegmentWriter::create(self.store.dir(), COLLECTOR, id, now_ms, opts)
                    .map_err(seg)?,
            );
        }
        Ok(())
    }

    /// Turns readings into tier-1 records and writes them durably (fsync
    /// per block), into the segment [`Self::prepare`] readied. Returns the
    /// counters read as zero (candidates for deletion once unmapped). A
    /// write that fails keeps the records in memory for the next
    /// [`Self::prepare`].
    pub fn write(
        &mut self,
        readings: &[Reading],
        classes: Option<&ClassMirror>,
        now_ms: i64,
    ) -> Result<Vec<String>, EnforcerError> {
        let seg = |e: kopek_collector::segment::SegmentError| EnforcerError::Invalid(e.to_string());
        let first = self.last_poll_ms.min(now_ms);
        let mut zero = Vec::new();
        let mut records = Vec::new();
        for r in readings {
            let Some(Counted {
                addr,
                inbound,
                class,
            }) = parse_name(&r.name)
            else {
                continue;
            };
            if r.bytes == 0 && r.packets == 0 {
                zero.push(r.name.clone());
                continue;
            }
            // The class's representative (the classifier puts it in the
            // class again); without classes, the unspecified address.
            let remote = classes
                .and_then(|m| {
                    m.representative(class.as_deref().unwrap_or(&m.default), addr.is_ipv4())
                })
                .unwrap_or(if addr.is_ipv4() {
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                } else {
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                });
            let (src, dst) = if inbound {
                (remote, addr)
            } else {
                (addr, remote)
            };
            records.push(FlowRecord {
                exporter: IpAddr::V4(Ipv4Addr::LOCALHOST),
                domain: 0,
                kind: SourceKind::NftCounter,
                first_ms: first,
                last_ms: now_ms,
                src,
                dst,
                src_port: 0,
                dst_port: 0,
                protocol: 0,
                direction: if inbound {
                    FlowDirection::Egress
                } else {
                    FlowDirection::Ingress
                },
                in_if: 0,
                out_if: 0,
                bytes_raw: r.bytes,
                packets_raw: r.packets,
                sampling: 1,
            });
        }
        // The records are the writer's from here (in memory if the disk
        // refuses them): the poll is done either way.
        self.last_poll_ms = now_ms;
        self.last_poll = Instant::now();
        if !records.is_empty() {
            let w = self
                .writer
                .as_mut()
                .ok_or_else(|| EnforcerError::Invalid("counter segment not prepared".into()))?;
            w.append_flows(&records).map_err(seg)?;
            w.sync_if_due(Instant::now()).map_err(seg)?;
            self.records_written += records.len() as u64;
        }
        Ok(zero)
    }

    /// Seals the open segment (on stop).
    pub fn close(&mut self, now_ms: i64) -> Result<(), EnforcerError> {
        if let Some(w) = self.writer.take() {
            w.close(now_ms)
                .map_err(|e| EnforcerError::Invalid(e.to_string()))?;
        }
        Ok(())
    }
}

/// Counters of hosts no longer allowed that read zero: to delete.
pub fn stale(zero: &[String], applied: &BTreeSet<IpNet>) -> Vec<String> {
    zero.iter()
        .filter(|n| parse_name(n).is_some_and(|k| !applied.contains(&IpNet::from(k.addr))))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counter segments' filesystem full: a write that fails keeps its
    /// records in memory, `prepare` (which runs before any counter is
    /// zeroed) fails while there is no room, and once there is, writes
    /// them: every reading ends in tier 1 once. Mounts a tmpfs: root (CI
    /// runs as root).
    #[test]
    fn readings_survive_a_full_disk() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        std::fs::create_dir_all(&raw).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(&raw)
            .status()
            .expect("run mount");
        assert!(mounted.success(), "mounting a tmpfs needs root");
        struct Unmount<'a>(&'a Path);
        impl Drop for Unmount<'_> {
            fn drop(&mut self) {
                let _ = Command::new("umount").arg(self.0).status();
            }
        }
        let _unmount = Unmount(&raw);
        let now = 1_800_000_000_000;
        let reading = |host: &str, bytes: u64| Reading {
            name: counter_name(host.parse().unwrap(), true, None),
            packets: 1,
            bytes,
        };
        let mut src = Source::open(dir.path(), now).unwrap();
        src.prepare(now).unwrap();
        {
            use std::io::Write;
            let mut f = std::fs::File::create(raw.join("filler")).unwrap();
            while f.write_all(&[0u8; 4096]).is_ok() {}
        }
        // More than the room a page of the segment has left.
        let many: Vec<Reading> = (0..3_000u64)
            .map(|i| reading(&format!("10.0.{}.{}", i / 256, i % 256), 1_000 + i))
            .collect();
        assert!(src.write(&many, None, now).is_err());
        assert!(
            src.prepare(now).is_err(),
            "no room: the counters must not be read"
        );
        std::fs::remove_file(raw.join("filler")).unwrap();
        src.prepare(now + 1_000).unwrap();
        src.write(&[reading("10.0.0.2", 2_000)], None, now + 1_000)
            .unwrap();
        src.close(now + 2_000).unwrap();
        let mut bytes = Vec::new();
        for seg in src.store.list().unwrap() {
            let mut r = kopek_collector::segment::SegmentReader::open(&seg.path).unwrap();
            let (mut flows, mut losses) = (Vec::new(), Vec::new());
            while r.next_block(&mut flows, &mut losses).unwrap().is_some() {}
            bytes.extend(flows.iter().map(|f| f.bytes_raw));
        }
        let mut want: Vec<u64> = many.iter().map(|r| r.bytes).chain([2_000]).collect();
        bytes.sort();
        want.sort();
        assert_eq!(bytes, want);
    }

    #[test]
    fn counter_names_round_trip() {
        for (a, inbound, class) in [
            ("10.1.0.2", true, None),
            ("2001:db8::1", false, None),
            ("10.1.0.2", false, Some("peering_2")),
        ] {
            let addr: IpAddr = a.parse().unwrap();
            let n = counter_name(addr, inbound, class);
            assert_eq!(
                parse_name(&n),
                Some(Counted {
                    addr,
                    inbound,
                    class: class.map(Into::into)
                }),
                "{n}"
            );
        }
        assert_eq!(
            counter_name("10.1.0.2".parse().unwrap(), true, None),
            "k0a010002i"
        );
        assert_eq!(
            counter_name("10.1.0.2".parse().unwrap(), false, Some("local")),
            "k0a010002o_local"
        );
        assert_eq!(parse_name("k0a010002i_"), None);
        assert_eq!(parse_name("k0a0100i"), None);
        assert_eq!(parse_name("x"), None);
        assert_eq!(parse_name("k0a010002x"), None);
    }
}
