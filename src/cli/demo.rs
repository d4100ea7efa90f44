//! `kopek demo`: the whole suite (as far as it is built) on a temporary
//! state dir, fed by kopek's own NetFlow v5, v9 and IPFIX exporters over
//! loopback, then a summary of what it stored and a check that it is exact.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use kopek_collector::generator::{
    DatagramBatch, Encoder, FlowGen, GenProfile, IpfixConfig, IpfixEncoder, V5Config, V5Encoder,
    V9Config, V9Encoder, send_batch,
};
use kopek_collector::query::{self, RawFilter, Totals};
use kopek_collector::run::Collector;
use kopek_collector::segment::RawStore;
use kopek_config::Config;

use super::format::{human_bytes, human_count, time_utc};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Flows per exporter.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    flows: u64,
    /// Send rate per exporter, flows per second.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    rate: u64,
    /// Keep the state dir here instead of a temporary one.
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

struct Exporter {
    name: &'static str,
    addr: Ipv4Addr,
    encoder: Box<dyn Encoder>,
    /// Datagrams encoded but not sent: the demo's deliberate hole.
    skip: Vec<u64>,
}

pub fn exec(args: &DemoArgs) -> super::Result {
    let temp;
    let state_dir = match &args.state_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
            d.canonicalize()?
        }
        None => {
            temp = tempfile::Builder::new().prefix("kopek-demo-").tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let mut exporters = vec![
        Exporter {
            name: "border_v5",
            addr: Ipv4Addr::new(127, 0, 0, 1),
            encoder: Box::new(V5Encoder::new(V5Config::default())?),
            skip: vec![],
        },
        Exporter {
            name: "border_v9",
            addr: Ipv4Addr::new(127, 0, 0, 2),
            encoder: Box::new(V9Encoder::new(V9Config::default())?),
            skip: vec![100, 101, 102],
        },
        Exporter {
            name: "border_ipfix",
            addr: Ipv4Addr::new(127, 0, 0, 3),
            encoder: Box::new(IpfixEncoder::new(IpfixConfig::default())?),
            skip: vec![],
        },
    ];
    // Tier 2: classes from an inline list and a list file, static bindings
    // from a file, everything kept forever (the generated flows are dated
    // 2024-01-01 and would otherwise fall to retention).
    let lists = state_dir.join("peering.txt");
    std::fs::write(
        &lists,
        "# the IX's route-server prefixes and a CDN cache\n198.51.100.0/24\n192.0.2.0/24\n2001:db8:ca1::/48\n",
    )?;
    let bindings = state_dir.join("bindings.csv");
    let mut b = String::from("# account,prefix\nacme,10.0.0.0/24\nacme,2001:db8:100::/56\n");
    for i in 0..200u32 {
        b.push_str(&format!("home{:03},10.0.1.{}\n", i, i));
    }
    std::fs::write(&bindings, b)?;
    let mut toml = format!(
        "[general]\nstate_dir = {:?}\ntimezone = \"Europe/Moscow\"\n\
         [retention]\nraw_days = 0\ntraffic_days = 0\ntop_hosts_days = 0\n\
         [classifier]\nsubscriber_networks = [\"10.0.0.0/16\", \"2001:db8:100::/48\"]\n\
         bindings_file = {:?}\ndefault_class = \"paid\"\ntop_hosts_per_hour = 5\n\
         [[classifier.class]]\nname = \"local\"\nnetworks = [\"10.0.0.0/16\", \"2001:db8:100::/48\"]\n\
         [[classifier.class]]\nname = \"peering\"\nfiles = [{:?}]\ncount = \"inbound\"\n\
         [collector]\nname = \"demo\"\nlisten = [\"127.0.0.1:0\"]\nstats_interval_ms = 200\n",
        state_dir.display().to_string(),
        bindings.display().to_string(),
        lists.display().to_string()
    );
    for e in &exporters {
        toml.push_str(&format!(
            "[[collector.exporter]]\nname = \"{}\"\naddress = \"{}\"\n",
            e.name, e.addr
        ));
    }
    let config_path = state_dir.join("kopek.toml");
    std::fs::write(&config_path, &toml)?;
    let config = Config::load(&config_path)?;

    outln!("kopek demo — state dir {}", state_dir.display());
    outln!("\n1. collector (tier 1): receiving on UDP, writing raw segments");
    let collector = Collector::start(config.clone())?;
    let target: SocketAddr = collector.local_addrs()[0];
    outln!("   listening on {target}");

    // Each exporter: generate, encode, remember what a correct collector
    // must store, then send paced from its own loopback address.
    outln!(
        "\n2. exporters: kopek's own generator, {} flows each at {} flows/s",
        human_count(args.flows),
        human_count(args.rate)
    );
    let mut expected: HashMap<IpAddr, Totals> = HashMap::new();
    let mut sent_flows = 0u64;
    let mut lost_expected: Vec<(&str, u64, &str)> = Vec::new();
    for (i, e) in exporters.iter_mut().enumerate() {
        let profile = GenProfile {
            flows_per_s: args.rate,
            ..GenProfile::default()
        };
        let mut g = FlowGen::new(1000 + i as u64, profile)?;
        let mut flows = Vec::new();
        g.fill(&mut flows, args.flows as usize);
        for &d in &e.skip {
            e.encoder.skip_datagram(d);
        }
        let mut batch = DatagramBatch::new();
        let export_ms = flows.iter().map(|f| f.last_ms).max().unwrap_or(0) + 1_000;
        e.encoder.encode_into(&flows, export_ms, &mut batch)?;
        let skipped_flows = batch.skipped_flows(&e.skip);
        let emitted = batch.total_flows();
        // What the collector must store: the emitted flows, as encoded.
        let t = expected.entry(IpAddr::V4(e.addr)).or_default();
        for r in emitted_flows(&batch, &flows, e.encoder.as_ref(), IpAddr::V4(e.addr)) {
            t.add(&r);
        }
        let sock = UdpSocket::bind(SocketAddr::from((e.addr, 0)))
            .with_context(|| format!("bind {}", e.addr))?;
        let rep = send_batch(&sock, target, &batch, Some(args.rate))?;
        sent_flows += emitted;
        outln!(
            "   {:<13} {:<6} from {:<10} {:>9} flows in {:>6} datagrams, {:.2} s",
            e.name,
            e.encoder.kind().as_str(),
            e.addr,
            human_count(emitted),
            human_count(batch.len() as u64),
            rep.elapsed.as_secs_f64()
        );
        if !e.skip.is_empty() {
            let unit = if e.encoder.kind() == kopek_collector::SourceKind::NetflowV9 {
                "datagrams"
            } else {
                "flows"
            };
            let n = if unit == "datagrams" {
                e.skip.len() as u64
            } else {
                skipped_flows
            };
            outln!(
                "   {:<13} deliberately did not send {} datagrams ({} flows): a hole",
                "",
                e.skip.len(),
                skipped_flows
            );
            lost_expected.push((e.name, n, unit));
        }
    }
    // A stranger: not on the allow-list.
    let stranger = UdpSocket::bind("127.0.0.9:0")?;
    for _ in 0..5 {
        stranger.send_to(b"\x00\x05not netflow", target)?;
    }
    outln!(
        "   {:<13} sent 5 datagrams from 127.0.0.9, which is not on the allow-list",
        "stranger"
    );
    outln!(
        "   (the exports are dated 2024-01-01, so the collector warns that each exporter's clock is\n    far behind its own: on a live router, no NTP; `clock = \"arrival\"` would read it by arrival time)"
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    while collector.stats().flows_written < sent_flows && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let the decoder's reorder window pass so the hole becomes final.
    std::thread::sleep(Duration::from_millis(2_500));
    let stats = collector.shutdown()?;

    outln!("\n3. what tier 1 holds");
    let store = RawStore::new(config.collector.raw_dir(&config.state_dir));
    for s in store.list()? {
        let f = s.read_footer()?.unwrap_or_default();
        outln!(
            "   {}  {:>9} flows  {:>10}  {} .. {}",
            s.path.file_name().and_then(|n| n.to_str()).unwrap_or("?"),
            human_count(f.flow_records),
            human_bytes(s.size_bytes, 1024),
            time_utc(f.min_first_ms),
            time_utc(f.max_last_ms)
        );
    }
    let raw = query::stats(&store, &RawFilter::default(), false)?;
    let disk: u64 = store.list()?.iter().map(|s| s.size_bytes).sum();
    outln!(
        "   {} flows, {} on disk = {:.1} bytes/flow",
        human_count(raw.total.flows),
        human_bytes(disk, 1024),
        disk as f64 / raw.total.flows.max(1) as f64
    );

    outln!("\n4. totals per exporter, checked against what the generator sent");
    let mut exact = true;
    for e in &exporters {
        let a = IpAddr::V4(e.addr);
        let got = raw.by_exporter.get(&a).copied().unwrap_or_default();
        let want = expected.get(&a).copied().unwrap_or_default();
        let ok = got == want;
        exact &= ok;
        outln!(
            "   {:<13} {:>9} flows {:>16} {:>12} packets  {}",
            e.name,
            human_count(got.flows),
            human_bytes(got.bytes, 1000),
            human_count(got.packets),
            if ok {
                "= sent, exactly".to_string()
            } else {
                format!("≠ sent ({want:?})")
            }
        );
    }

    outln!("\n5. holes in the export streams (loss records in tier 1)");
    let mut seen_losses = 0;
    for (addr, l) in &raw.losses {
        let name = exporters
            .iter()
            .find(|e| IpAddr::V4(e.addr) == *addr)
            .map(|e| e.name)
            .unwrap_or("?");
        outln!(
            "   {name}: {} gap(s): {} flows + {} export datagrams lost, between {} and {}",
            l.gaps,
            l.lost_flows,
            l.lost_packets,
            l.first_ms.map(time_utc).unwrap_or_default(),
            l.last_ms.map(time_utc).unwrap_or_default()
        );
        seen_losses += l.records;
    }
    for (name, n, unit) in &lost_expected {
        let found = raw.losses.values().any(|l| {
            if *unit == "datagrams" {
                l.lost_packets == *n
            } else {
                l.lost_flows == *n
            }
        });
        exact &= found;
        outln!(
            "   expected: {name} lost {n} {unit} — {}",
            if found { "reported" } else { "NOT reported" }
        );
    }
    if seen_losses == 0 {
        exact &= lost_expected.is_empty();
    }

    outln!("\n6. collector counters");
    outln!(
        "   datagrams received {}, from unknown exporters {}, kernel drops {}",
        human_count(stats.datagrams_received),
        human_count(stats.datagrams_unknown_exporter),
        human_count(stats.socket_drops)
    );
    outln!(
        "   blocks {}, segments closed {}, fsyncs {}",
        stats.blocks_written,
        stats.segments_closed,
        stats.fsyncs
    );

    exact &= classify(&config, raw.total)?;
    exact &= super::demo_bill::bill(&config)?;
    exact &= super::demo_bill::enforce(&config)?;
    exact &= super::demo_capture::capture(&config)?;

    outln!(
        "\nnot shown (they need root): nft counters as a source (tests/enforcer_netns.rs), live capture (tests/pcap_source.rs).\nnext: RADIUS accounting; this demo grows with it."
    );
    outln!(
        "try: kopek raw --state-dir {} stats --by-address",
        state_dir.display()
    );
    outln!(
        "     kopek --config {} traffic --from 2023-12-31 --to 2024-01-02 --top 5",
        config_path.display()
    );
    outln!(
        "     kopek --config {} report invoice acme --period 2024-01",
        config_path.display()
    );
    if args.state_dir.is_none() {
        outln!("(the temporary state dir is removed now; pass --state-dir DIR to keep it)");
    }
    if !exact {
        return Err(anyhow::anyhow!("a tier does not match what was sent").into());
    }
    outln!("\nall exact.");
    Ok(())
}

/// Step 7: the classifier over what the collector stored, in-process:
/// classes, static and session bindings, pro-rata buckets, tier 2.
fn classify(config: &Config, raw_total: Totals) -> super::Result<bool> {
    use kopek_classifier::bindings::Registry;
    use kopek_classifier::engine::Engine;
    use kopek_classifier::report::{self, Period, TrafficQuery};
    use kopek_classifier::store::SqliteTier2;

    outln!("\n7. classifier (tier 2): accounts, classes, 5-minute buckets in SQLite");
    // A dynamic address: 10.0.2.7 belongs to alice, then to bob, the
    // hand-over in the middle of the generated stream (a pppd session
    // ending and another starting).
    // Flows are attributed by their first packet; the generated flows
    // start up to two minutes before the stream's clock (start_ms).
    let start = GenProfile::default().start_ms;
    let handover = start - 60_000;
    let mut reg = Registry::open(&config.state_dir)?;
    let ip: ipnet::IpNet = "10.0.2.7/32".parse()?;
    reg.add(
        "alice",
        ip,
        start - 3_600_000,
        Some(handover),
        "demo",
        Some("ppp0"),
    )?;
    reg.add("bob", ip, handover, None, "demo", Some("ppp1"))?;
    outln!(
        "   bindings: acme = 10.0.0.0/24 + 2001:db8:100::/56, home000..home199 = one address each (file);"
    );
    outln!(
        "             10.0.2.7: alice until {}, bob from then (sessions); the rest of 10.0.0.0/16 is nobody's",
        time_utc(handover)
    );
    let now = chrono::Utc::now().timestamp_millis();
    let t = Instant::now();
    let mut engine = Engine::open(config.clone(), now)?;
    let done = engine.catch_up(now)?;
    engine.finish_hosts(now)?;
    let s = engine.stats().clone();
    drop(engine);
    outln!(
        "   {} records classified in {:.2} s: {} split across buckets, {} unattributed, {} transit",
        human_count(done.records),
        t.elapsed().as_secs_f64(),
        human_count(s.committed.split_records),
        human_count(s.committed.unattributed_records),
        human_count(s.committed.transit_records),
    );

    let conn = SqliteTier2::open_read(&config.state_dir)?;
    let q = TrafficQuery {
        from_ms: start - 86_400_000,
        to_ms: start + 86_400_000,
        account: None,
        class: None,
        billed_only: false,
        period: Period::Total,
        tz: config.timezone,
    };
    let rows = report::traffic(&conn, &q)?;
    let mut per_account: HashMap<String, (u64, u64)> = HashMap::new();
    for r in &rows {
        let e = per_account.entry(r.account.clone()).or_default();
        e.0 += r.bytes_in;
        e.1 += r.bytes_out;
    }
    outln!("   per class (all accounts):");
    let mut per_class: HashMap<String, (u64, u64)> = HashMap::new();
    for r in &rows {
        let e = per_class.entry(r.class.clone()).or_default();
        e.0 += r.bytes_in;
        e.1 += r.bytes_out;
    }
    let mut classes: Vec<_> = per_class.into_iter().collect();
    classes.sort();
    for (c, (i, o)) in classes {
        outln!(
            "     {c:<8} in {:>12}  out {:>12}",
            human_bytes(i, 1000),
            human_bytes(o, 1000)
        );
    }
    let mut accounts: Vec<_> = per_account.iter().collect();
    accounts.sort_by_key(|(a, (i, o))| (std::cmp::Reverse(i + o), (*a).clone()));
    outln!("   largest accounts:");
    for (a, (i, o)) in accounts.iter().take(4) {
        outln!(
            "     {a:<8} in {:>12}  out {:>12}",
            human_bytes(*i, 1000),
            human_bytes(*o, 1000)
        );
    }
    for who in ["alice", "bob"] {
        let (i, o) = per_account.get(who).copied().unwrap_or_default();
        outln!(
            "     {who:<8} in {:>12}  out {:>12}   (10.0.2.7, {} the hand-over)",
            human_bytes(i, 1000),
            human_bytes(o, 1000),
            if who == "alice" { "before" } else { "after" }
        );
    }
    let unattributed = report::unattributed(&conn, q.from_ms, q.to_ms, None)?;
    let un_bytes: u64 = unattributed.iter().map(|u| u.bytes).sum();
    outln!(
        "   unattributed: {} addresses, {} — visible, not billed to anyone",
        human_count(unattributed.len() as u64),
        human_bytes(un_bytes, 1000)
    );
    let hosts = report::top_hosts(&conn, q.from_ms, q.to_ms, Some("acme"), 4)?;
    outln!(
        "   acme's largest remote hosts by bytes in + out (per-hour detail, connections merged):"
    );
    for h in hosts.iter().filter(|h| !h.remote.is_empty()) {
        outln!(
            "     {:<28} {:<8} in {:>12}  out {:>12}  {} flows",
            h.remote,
            h.class,
            human_bytes(h.bytes_in, 1000),
            human_bytes(h.bytes_out, 1000),
            human_count(h.flows)
        );
    }

    // Every byte of tier 1 is in tier 2 exactly once (no record of the
    // generated stream has two subscriber sides).
    let tier2_bytes: u64 = rows.iter().map(|r| r.bytes_in + r.bytes_out).sum::<u64>() + un_bytes;
    let ok = done.records == raw_total.flows && tier2_bytes == raw_total.bytes;
    outln!(
        "   tier 2 holds {} records, {} bytes; tier 1 {} records, {} bytes: {}",
        human_count(done.records),
        human_count(tier2_bytes),
        human_count(raw_total.flows),
        human_count(raw_total.bytes),
        if ok { "equal" } else { "NOT EQUAL" }
    );
    Ok(ok)
}

/// The records a correct collector stores for the emitted (not skipped)
/// datagrams of `batch`, which encoded `flows` in order.
fn emitted_flows(
    batch: &DatagramBatch,
    flows: &[kopek_collector::FlowRecord],
    encoder: &dyn Encoder,
    exporter: IpAddr,
) -> Vec<kopek_collector::FlowRecord> {
    // Datagrams (emitted and skipped) carry the representable flows in
    // order; walk them by running index.
    let mut all: Vec<(u64, u32, bool)> = batch
        .infos()
        .iter()
        .map(|d| (d.datagram_index, d.flows, true))
        .chain(
            batch
                .skipped()
                .iter()
                .map(|d| (d.datagram_index, d.flows, false)),
        )
        .collect();
    all.sort_by_key(|d| d.0);
    let representable: Vec<_> = flows
        .iter()
        .filter_map(|f| encoder.expected(f, exporter))
        .collect();
    let mut out = Vec::new();
    let mut i = 0usize;
    for (_, n, emitted) in all {
        let n = n as usize;
        if emitted {
            out.extend_from_slice(
                &representable[i.min(representable.len())..(i + n).min(representable.len())],
            );
        }
        i += n;
    }
    out
}
