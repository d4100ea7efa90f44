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
        [[collector.exporter]]
        name = "border2"
        address = "2001:db8::1"
        "#,
    )
    .unwrap();
    let e = &c.collector.exporters;
    assert_eq!(e[0].sampling, NonZeroU32::new(100));
    assert_eq!(e[1].sampling, None);
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
fn missing_file_names_the_file() {
    let err = Config::load(Path::new("/nonexistent/kopek.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/kopek.toml"), "{err}");
}
