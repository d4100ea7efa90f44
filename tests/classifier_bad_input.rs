//! Bad operator input for the classifier's surfaces: the config with its
//! list and bindings files, `kopek binding`, `kopek traffic`,
//! `kopek classifier explain`. A clear error naming what is wrong, a
//! non-zero exit, and nothing half-applied.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::kopek_bin;

fn kopek(config: &Path, args: &[&str]) -> Output {
    Command::new(kopek_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env("KOPEK_LOG", "error")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Each of `cases` (arguments, exit code, a piece of the message) exits
/// with that code and says so on stderr.
fn assert_refused(config: &Path, cases: &[(&[&str], i32, &str)]) {
    for (args, code, frag) in cases {
        let o = kopek(config, args);
        assert_eq!(o.status.code(), Some(*code), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(frag),
            "{args:?}: {frag:?} not in {}",
            stderr(&o)
        );
    }
}

/// A valid config in `dir` whose class list and bindings files are given.
fn setup(dir: &Path, list: &str, bindings: &str, extra: &str) -> std::path::PathBuf {
    let l = dir.join("peering.txt");
    let b = dir.join("bindings.csv");
    std::fs::write(&l, list).unwrap();
    std::fs::write(&b, bindings).unwrap();
    let c = dir.join("kopek.toml");
    std::fs::write(
        &c,
        format!(
            r#"
[general]
state_dir = "{}"
timezone = "Europe/Moscow"
[[collector.exporter]]
name = "border"
address = "192.0.2.1"
[classifier]
subscriber_networks = ["10.0.0.0/8"]
bindings_file = "{}"
[[classifier.class]]
name = "peering"
files = ["{}"]
{extra}
"#,
            dir.join("state").display(),
            b.display(),
            l.display()
        ),
    )
    .unwrap();
    c
}

#[test]
fn config_check_reads_the_files_it_names_and_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    // (list file, bindings file, extra toml, expected exit, message fragment)
    let cases: &[(&str, &str, &str, i32, &str)] = &[
        ("192.0.2.0/24\n", "acme,10.1.0.0/16\n", "", 0, "ok ("),
        (
            "# IX\n192.0.2.0/24\n192.0.2.1/24\n",
            "",
            "",
            78,
            "peering.txt:3: expected a network",
        ),
        ("bogus\n", "", "", 78, "peering.txt:1:"),
        (
            "",
            "acme 10.1.0.0/16\n",
            "",
            78,
            "bindings.csv:1: expected `account,prefix`",
        ),
        ("", "acme,10.1.0.1/16\n", "", 78, "bindings.csv:1:"),
        (
            "",
            "bad account,10.1.0.0/16\n",
            "",
            78,
            "bindings.csv:1: account id",
        ),
        (
            "",
            "",
            "[[classifier.observation_point]]\nname = \"a\"\nexporter = \"border\"\n[[classifier.observation_point]]\nname = \"b\"\nexporter = \"border\"\ninterface = 2\n",
            78,
            "would count the same traffic twice",
        ),
        ("", "", "[classifier.nonsense]\n", 78, "unknown field"),
        // The capture's BPF filter is compiled by libpcap at check time.
        (
            "",
            "",
            "[collector.pcap]\ninterface = \"eth0\"\nfilter = \"udp port 2055 or ip6\"\n",
            0,
            "ok (",
        ),
        (
            "",
            "",
            "[collector.pcap]\ninterface = \"eth0\"\nfilter = \"tcp port (((\"\n",
            78,
            "key `collector.pcap.filter`: libpcap cannot compile",
        ),
    ];
    // Class lists and the bindings file on a device that never ends:
    // refused at the limit.
    let c = setup(dir.path(), "", "", "");
    let text = std::fs::read_to_string(&c).unwrap();
    for (from, what) in [("peering.txt", "class list"), ("bindings.csv", "bindings")] {
        let at = dir.path().join(from).display().to_string();
        std::fs::write(&c, text.replace(&at, "/dev/zero")).unwrap();
        let o = kopek(&c, &["config", "check"]);
        let all = format!("{}{}", stdout(&o), stderr(&o));
        assert_eq!(o.status.code(), Some(78), "{what}: {all}");
        assert!(
            all.contains("/dev/zero") && all.contains("more than 512 MiB"),
            "{what}: {all}"
        );
    }
    for (list, bindings, extra, code, frag) in cases {
        let c = setup(dir.path(), list, bindings, extra);
        let o = kopek(&c, &["config", "check"]);
        let all = format!("{}{}", stdout(&o), stderr(&o));
        assert_eq!(
            o.status.code(),
            Some(*code),
            "{list:?} {bindings:?} {extra:?}: {all}"
        );
        assert!(all.contains(frag), "{frag:?} not in {all}");
    }
}

#[test]
fn binding_commands_refuse_bad_input_and_apply_nothing_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let c = setup(dir.path(), "", "", "");
    let ok = kopek(
        &c,
        &[
            "binding",
            "add",
            "alice",
            "10.0.0.7",
            "--from",
            "2026-11-01",
        ],
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    // (arguments, expected exit, message fragment)
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["binding", "add", "bob", "10.0.0.7", "--from", "2026-11-05"],
            1,
            "already bound to account \"alice\"",
        ),
        (&["binding", "add", "b o b", "10.0.0.8"], 1, "account id"),
        (
            &["binding", "add", "bob", "10.0.0.8/24"],
            2,
            "zero host bits",
        ),
        (
            &["binding", "add", "bob", "banana"],
            2,
            "expected an address",
        ),
        (
            &["binding", "add", "bob", "10.0.0.8", "--from", "yesterday"],
            1,
            "expected a time",
        ),
        (
            &[
                "binding",
                "add",
                "bob",
                "10.0.0.8",
                "--from",
                "2026-11-05",
                "--to",
                "2026-11-01",
            ],
            1,
            "must be after the start",
        ),
        // An epoch beyond i64 is not a time.
        (
            &[
                "binding",
                "add",
                "bob",
                "10.0.0.8",
                "--from",
                "99999999999999999999",
            ],
            1,
            "expected a time",
        ),
        (
            &["binding", "end", "10.0.0.9"],
            1,
            "no open binding of 10.0.0.9/32",
        ),
        (
            &["binding", "ls", "--limit", "-1"],
            2,
            "unexpected argument '-1'",
        ),
    ];
    assert_refused(&c, cases);
    // Nothing of the refused commands was recorded.
    let ls = kopek(&c, &["binding", "ls", "--format", "csv"]);
    assert!(ls.status.success());
    let rows: Vec<_> = stdout(&ls).lines().skip(1).map(str::to_string).collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0].starts_with("1,alice,10.0.0.7/32,2026-10-31T21:00:00.000Z,open,cli"),
        "{rows:?}"
    );
}

#[test]
fn reports_refuse_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let c = setup(dir.path(), "192.0.2.0/24\n", "", "");
    // An empty tier 2 so the queries themselves can run.
    let o = kopek(&c, &["binding", "ls"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cases: &[(&[&str], i32, &str)] = &[
        (&["traffic", "--from", "garbage"], 1, "expected a time"),
        (
            &["traffic", "--from", "2026-11-02", "--to", "2026-11-01"],
            1,
            "--from must be before --to",
        ),
        (
            &["traffic", "--unit-base", "1001"],
            2,
            "expected 1000 or 1024",
        ),
        (&["traffic", "--by", "week"], 2, "invalid value 'week'"),
        (
            &["traffic", "--top", "0"],
            2,
            "invalid value '0' for '--top <N>'",
        ),
        // Options a view does not use are refused, not silently ignored.
        (
            &["traffic", "--unattributed", "--account", "alice"],
            2,
            "'--unattributed' cannot be used with '--account <ACCOUNT>'",
        ),
        (
            &["traffic", "--unattributed", "--points"],
            2,
            "cannot be used with",
        ),
        (
            &["traffic", "--points", "--class", "paid"],
            2,
            "'--points' cannot be used with '--class <CLASS>'",
        ),
        (
            &["traffic", "--versions", "--account", "alice"],
            2,
            "'--versions' cannot be used with '--account <ACCOUNT>'",
        ),
        (
            &["traffic", "--top", "3", "--unattributed"],
            2,
            "cannot be used with",
        ),
        (&["classifier", "explain", "10.0.0.300"], 2, "invalid"),
        (
            &["classifier", "explain", "10.0.0.3", "--at", "tomorrow"],
            1,
            "expected a time",
        ),
    ];
    assert_refused(&c, cases);
}

/// `kopek classifier rebuild`: nothing to rebuild, bad arguments, and a
/// filesystem without room for a second tier 2 (a 4 MB tmpfs, so this test
/// needs root): a clear error, and tier 2 as it was.
#[test]
fn rebuild_refuses_what_it_cannot_do_and_leaves_tier2_alone() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let _tmpfs = common::Tmpfs::mount(&state, "4m");
    let c = setup(dir.path(), "192.0.2.0/24\n", "", "");
    let o = kopek(&c, &["classifier", "rebuild"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no tier 2 to rebuild"),
        "{}",
        stderr(&o)
    );

    // A tier 2 of ~1.5 MB on a filesystem with less than twice that free.
    drop(kopek_classifier::store::SqliteTier2::open(&state).unwrap());
    let t2 = state.join(kopek_classifier::store::TIER2_FILE);
    let conn = rusqlite::Connection::open(&t2).unwrap();
    conn.execute_batch(
        "CREATE TABLE pad (x BLOB); INSERT INTO pad VALUES (zeroblob(1500000));
         PRAGMA wal_checkpoint(TRUNCATE);",
    )
    .unwrap();
    drop(conn);
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["classifier", "rebuild", "--from", "garbage"],
            1,
            "expected a time",
        ),
        (
            &["classifier", "rebuild", "--lists", "newest"],
            2,
            "invalid value 'newest'",
        ),
        (
            &[
                "classifier",
                "rebuild",
                "--discard-damaged",
                "--from",
                "2026-01-01",
            ],
            2,
            "cannot be used with",
        ),
        (&["classifier", "rebuild"], 1, "a rebuild needs about 3 MB"),
        (
            &["classifier", "rebuild", "--dry-run"],
            1,
            "a rebuild needs about 3 MB",
        ),
    ];
    assert_refused(&c, cases);
    assert!(!state.join("rebuild.tmp").exists());
    let pad: i64 = rusqlite::Connection::open(&t2)
        .unwrap()
        .query_row("SELECT length(x) FROM pad", [], |r| r.get(0))
        .unwrap();
    assert_eq!(pad, 1_500_000);
}

/// `kopek backup` and `kopek restore` with nothing to copy, a missing
/// argument, or a backup that is not a database: a clear error, and the
/// state dir as it was.
#[test]
fn backup_and_restore_refuse_what_they_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let c = setup(dir.path(), "192.0.2.0/24\n", "", "");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let junk = dir.path().join("junk");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(junk.join("core.sqlite"), vec![b'x'; 4096]).unwrap();
    let (to, from_empty, from_junk) = (
        dir.path().join("to").display().to_string(),
        empty.display().to_string(),
        junk.display().to_string(),
    );
    let cases: &[(&[&str], i32, &str)] = &[
        (&["backup"], 2, "--to <TO>"),
        (&["backup", "--to", &to], 1, "no kopek database to back up"),
        (&["restore"], 2, "--from <FROM>"),
        (
            &["restore", "--from", &from_empty],
            1,
            "no kopek backup here",
        ),
        (
            &["restore", "--from", &from_junk],
            1,
            "not a database to restore",
        ),
    ];
    assert_refused(&c, cases);
    assert!(!state.join("core.sqlite").exists());
    assert!(!dir.path().join("to").exists());
}
