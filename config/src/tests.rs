use super::*;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(Path::new("/etc/kopek/test.toml"), text)
}

fn error_of(text: &str) -> String {
    load(text)
        .expect_err("config should be rejected")
        .to_string()
}

#[test]
fn empty_file_gives_documented_defaults() {
    let c = load("").unwrap();
    assert_eq!(c.state_dir, PathBuf::from("/var/lib/kopek"));
    assert_eq!(c.collector.name, "main");
    assert_eq!(
        c.collector.listen,
        vec!["0.0.0.0:2055".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(
        c.collector.durability,
        Durability::Interval(Duration::from_secs(1))
    );
    assert_eq!(c.collector.segment.rotate_interval, Duration::from_secs(60));
    assert_eq!(
        c.collector.segment.compression,
        Compression::Zstd { level: 1 }
    );
    assert!(c.collector.exporters.is_empty());
}

#[test]
fn the_example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/kopek.toml");
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(!c.collector.exporters.is_empty());
}

#[test]
fn exporters_parse_with_sampling() {
    let c = load(
        r#"
        [[collector.exporter]]
        name = "border1"
        address = "192.0.2.1"
        sampling = 100
        clock = "arrival"
        [[collector.exporter]]
        name = "border2"
        address = "2001:db8::1"
        "#,
    )
    .unwrap();
    let e = &c.collector.exporters;
    assert_eq!(e[0].sampling, NonZeroU32::new(100));
    assert_eq!(e[1].sampling, None);
    assert_eq!(
        (e[0].clock, e[1].clock),
        (
            crate::ExporterClock::Arrival,
            crate::ExporterClock::Exporter
        )
    );
    assert_eq!(e[1].address, "2001:db8::1".parse::<IpAddr>().unwrap());
}

#[test]
fn unknown_key_is_rejected_with_file_line_and_key() {
    let err = error_of("[collector]\nname = \"a\"\nlisten_port = 5\n");
    assert!(err.contains("/etc/kopek/test.toml"), "{err}");
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("listen_port"), "{err}");
}

#[test]
fn wrong_type_names_the_key() {
    let err = error_of("[collector.segment]\nrotate_interval_s = \"soon\"\n");
    assert!(
        err.contains("rotate_interval_s") || err.contains("line 2"),
        "{err}"
    );
}

#[test]
fn validation_reports_every_problem_with_its_key() {
    let err = error_of(
        r#"
        [general]
        state_dir = "relative/dir"
        [collector]
        name = "Bad Name"
        listen = ["2055"]
        [collector.durability]
        fsync = "sometimes"
        [[collector.exporter]]
        name = "r1"
        address = "300.1.1.1"
        [[collector.exporter]]
        name = "r1"
        address = "10.0.0.1"
        sampling = 0
        "#,
    );
    for needle in [
        "general.state_dir",
        "collector.name",
        "collector.listen[0]",
        "collector.durability.fsync",
        "collector.exporter[0].address",
        "collector.exporter[1].name",
        "collector.exporter[1].sampling",
    ] {
        assert!(err.contains(needle), "missing {needle} in: {err}");
    }
}

#[test]
fn duplicate_exporter_address_is_rejected() {
    let err = error_of(
        r#"
        [[collector.exporter]]
        name = "a"
        address = "10.0.0.1"
        [[collector.exporter]]
        name = "b"
        address = "10.0.0.1"
        "#,
    );
    assert!(err.contains("collector.exporter[1].address"), "{err}");
}

#[test]
fn sampling_word_other_than_auto_is_rejected() {
    let err = error_of(
        "[[collector.exporter]]\nname = \"a\"\naddress = \"10.0.0.1\"\nsampling = \"often\"\n",
    );
    assert!(err.contains("collector.exporter[0].sampling"), "{err}");
}

#[test]
fn a_clock_other_than_exporter_or_arrival_is_rejected() {
    let err =
        error_of("[[collector.exporter]]\nname = \"a\"\naddress = \"10.0.0.1\"\nclock = \"ntp\"\n");
    assert!(
        err.contains(
            "key `collector.exporter[0].clock`: expected \"exporter\" or \"arrival\", got \"ntp\""
        ),
        "{err}"
    );
}

#[test]
fn hold_bytes_past_16_gib_is_rejected() {
    let err = error_of("[collector.segment]\nhold_bytes = 17179869185\n");
    assert!(
        err.contains("collector.segment.hold_bytes") && err.contains("must be 0..=16 GiB"),
        "{err}"
    );
    let err = error_of("[collector.segment]\nhold_bytes = -1\n");
    assert!(
        err.contains("line 2") && err.contains("expected u64"),
        "{err}"
    );
}

#[test]
fn missing_file_names_the_file() {
    let err = Config::load(Path::new("/nonexistent/kopek.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/kopek.toml"), "{err}");
}

const TWO_EXPORTERS: &str = r#"
[[collector.exporter]]
name = "border"
address = "192.0.2.1"
[[collector.exporter]]
name = "bras"
address = "192.0.2.2"
"#;

#[test]
fn classifier_defaults() {
    let c = load("").unwrap();
    assert_eq!(c.classifier.bucket, Duration::from_secs(300));
    assert_eq!(c.classifier.default_class, "paid");
    assert!(c.classifier.points.is_empty());
    // Automatic: one reader per CPU but the commit thread's, at least 1.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(c.classifier.threads, (cpus - 1).clamp(1, 8));
    assert_eq!(
        load("[classifier]\nthreads = 3")
            .unwrap()
            .classifier
            .threads,
        3
    );
    assert_eq!(c.timezone, chrono_tz::Tz::UTC);
    assert_eq!(c.retention.raw_days, 400);
}

#[test]
fn classes_and_points_parse() {
    let c = load(&format!(
        r#"
[general]
timezone = "Europe/Moscow"
[classifier]
bucket_s = 60
subscriber_networks = ["10.0.0.0/8", "2001:db8:100::/40", "198.51.100.7"]
[[classifier.class]]
name = "local"
networks = ["10.0.0.0/8"]
[[classifier.class]]
name = "peering"
files = ["/etc/kopek/peering.txt"]
count = "inbound"
[[classifier.observation_point]]
name = "uplink_in"
exporter = "border"
interface = 3
direction = "ingress"
[[classifier.observation_point]]
name = "uplink_out"
exporter = "border"
interface = 3
direction = "egress"
{TWO_EXPORTERS}"#
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.timezone, chrono_tz::Tz::Europe__Moscow);
    assert_eq!(c.classifier.bucket_ms(), 60_000);
    assert_eq!(c.classifier.subscriber_networks.len(), 3);
    assert_eq!(c.classifier.classes[1].count, CountRule::Inbound);
    assert_eq!(c.classifier.points.len(), 2);
    assert_eq!(
        c.classifier.points[0].exporter,
        "192.0.2.1".parse::<IpAddr>().unwrap()
    );
}

#[test]
fn overlapping_observation_points_are_named() {
    // (points, expected fragment or None for a valid config)
    let cases: &[(&str, Option<&str>)] = &[
        (
            r#"{name="a", exporter="border"}, {name="b", exporter="border", interface=3}"#,
            Some(
                "\"a\" (classifier.observation_point[0]) and \"b\" would count the same traffic twice: both take any records of exporter \"border\" on interface 3",
            ),
        ),
        (
            r#"{name="a", exporter="border", interface=3, direction="ingress"}, {name="b", exporter="border", interface=5, direction="egress"}"#,
            Some(
                "entering exporter \"border\" on interface 3 and leaving on interface 5 is exported twice",
            ),
        ),
        (
            r#"{name="a", exporter="border", direction="ingress"}, {name="b", exporter="border", direction="ingress", interface=4}"#,
            Some("both take ingress records"),
        ),
        (
            r#"{name="a", exporter="border", interface=3, direction="ingress"}, {name="b", exporter="border", interface=4, direction="ingress"}"#,
            None,
        ),
        (
            r#"{name="a", exporter="border", interface=3, direction="ingress"}, {name="b", exporter="border", interface=3, direction="egress"}"#,
            None,
        ),
        (
            r#"{name="a", exporter="border"}, {name="b", exporter="bras"}"#,
            None,
        ),
    ];
    for (points, want) in cases {
        let text = format!("[classifier]\nobservation_point = [{points}]\n{TWO_EXPORTERS}");
        match (load(&text), want) {
            (Ok(_), None) => {}
            (Err(e), Some(frag)) => {
                let e = e.to_string();
                assert!(e.contains(frag), "{points}: {e}");
                assert!(e.contains("key `classifier.observation_point[1]`"), "{e}");
            }
            (Ok(_), Some(frag)) => panic!("{points}: accepted, wanted {frag}"),
            (Err(e), None) => panic!("{points}: rejected: {e}"),
        }
    }
}

#[test]
fn bad_classifier_values_name_their_keys() {
    let e = error_of(
        r#"
[general]
timezone = "Mars/Olympus"
[classifier]
bucket_s = 7
subscriber_networks = ["10.1.2.3/8", "banana"]
threads = 65
[[classifier.class]]
name = "Local"
count = "sideways"
files = ["relative.txt"]
[[classifier.observation_point]]
name = "p"
exporter = "nobody"
[retention]
raw_days = 400
traffic_days = 30
"#,
    );
    for frag in [
        "key `general.timezone`",
        "key `classifier.bucket_s`: must divide 900",
        "key `classifier.subscriber_networks[0]`",
        "key `classifier.subscriber_networks[1]`",
        "key `classifier.threads`: must be 0 (one per CPU) ..= 64, got 65",
        "key `classifier.class[0].name`",
        "key `classifier.class[0].count`",
        "key `classifier.class[0].files[0]`: must be an absolute path",
        "key `classifier.observation_point[0].exporter`: no [[collector.exporter]] is named \"nobody\"",
        "key `retention.traffic_days`",
    ] {
        assert!(e.contains(frag), "missing {frag:?} in {e}");
    }
}

#[test]
fn counting_by_class_needs_counters() {
    let err = error_of("[enforcer]\ncounters_by_class = true\n");
    assert!(
        err.contains("enforcer.counters_by_class") && err.contains("counters_poll_s"),
        "{err}"
    );
    let c = load("[enforcer]\ncounters_poll_s = 60\ncounters_by_class = true\n").unwrap();
    assert!(c.enforcer.counters_by_class);
    assert!(!load("").unwrap().enforcer.counters_by_class);
}

#[test]
fn pcap_source_parses_with_defaults() {
    let c = load("[collector]\nlisten = []\n[collector.pcap]\ninterface = \"ppp0\"\n").unwrap();
    assert!(c.collector.listen.is_empty());
    let p = c.collector.pcap.expect("pcap configured");
    assert_eq!(p.interface, "ppp0");
    assert_eq!(
        (p.filter.as_str(), p.snaplen, p.buffer_bytes, p.promiscuous),
        ("", 128, 8 << 20, false)
    );
    assert_eq!(
        (p.active_timeout, p.idle_timeout, p.max_flows),
        (Duration::from_secs(60), Duration::from_secs(15), 1_000_000)
    );
    assert!(load("").unwrap().collector.pcap.is_none());
}

#[test]
fn bad_pcap_values_name_their_keys() {
    let e = error_of(
        r#"[collector.pcap]
interface = "eth0; rm -rf /"
snaplen = 20
buffer_bytes = 1024
active_timeout_s = 10
idle_timeout_s = 30
max_flows = 5
"#,
    );
    for key in [
        "collector.pcap.interface",
        "collector.pcap.snaplen",
        "collector.pcap.buffer_bytes",
        "collector.pcap.idle_timeout_s",
        "collector.pcap.max_flows",
    ] {
        assert!(e.contains(&format!("key `{key}`")), "{key} missing in: {e}");
    }
    let e = error_of("[collector]\nlisten = []\n");
    assert!(e.contains("key `collector.listen`"), "{e}");
    let e = error_of("[collector.pcap]\ninterface = \"eth0\"\nsnaplenn = 100\n");
    assert!(e.contains("snaplenn"), "unknown key: {e}");
}
