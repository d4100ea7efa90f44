//! `kopek enforcer run|install|status`: the default-deny nftables table.

use std::path::Path;

use clap::{Args, Subcommand};
use kopek_enforcer::{desired, nft};

#[derive(Debug, Args)]
pub struct EnforcerArgs {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the enforcer (systemd: kopek-enforcer.service; needs CAP_NET_ADMIN).
    Run,
    /// Install the table with nothing allowed (the unit's ExecStartPre: traffic of
    /// the subscriber networks is denied before anything is allowed).
    Install,
    /// Print the table the enforcer installs (nft syntax).
    Ruleset,
    /// Compare the kernel's allowed sets with what the core allows now.
    Status,
    /// Benchmark helper (bench/enforcer-apply.sh): apply kopek's batch for
    /// 100,000 addresses from scratch, 1,000 changes, or a renewal of all.
    #[command(hide = true)]
    BenchBatch { what: String },
}

pub fn exec(config_path: &Path, a: &EnforcerArgs) -> super::Result {
    match &a.cmd {
        Cmd::Run => Ok(kopek_enforcer::run::serve(config_path)?),
        Cmd::Install => {
            let config = kopek_config::Config::load(config_path)?;
            let c = &config.enforcer;
            nft::replace(c, &Default::default(), &Default::default(), None, c.lease)?;
            outln!("table inet {} installed, nothing allowed", c.table);
            Ok(())
        }
        Cmd::Ruleset => {
            let config = super::load_config_or_defaults(config_path)?;
            let c = &config.enforcer;
            let classes = if c.counters_poll.is_some() && c.counters_by_class {
                Some(kopek_enforcer::classes::ClassMirror::load(
                    &config.classifier,
                )?)
            } else {
                None
            };
            out!("{}", nft::base_table(c, classes.as_ref()));
            if let Some(m) = &classes {
                let mut fill = String::new();
                m.fill_lines(&c.table, false, &mut fill);
                out!("{fill}");
            }
            Ok(())
        }
        Cmd::BenchBatch { what } => {
            let config = kopek_config::Config::load(config_path)?;
            let c = &config.enforcer;
            let addr = |i: u32| -> ipnet::IpNet {
                ipnet::IpNet::from(std::net::IpAddr::V4(std::net::Ipv4Addr::new(
                    10,
                    (i >> 16 & 255) as u8,
                    (i >> 8 & 255) as u8,
                    (i & 255) as u8,
                )))
            };
            let all: Vec<ipnet::IpNet> = (1..=100_000).map(addr).collect();
            let set: std::collections::BTreeSet<ipnet::IpNet> = all.iter().copied().collect();
            let none = Default::default();
            let batch = match what.as_str() {
                // The whole table with 100,000 allowed: as the enforcer
                // starts (guarded), and as one batch.
                "replace" => {
                    nft::replace(c, &set, &none, None, c.lease)?;
                    return Ok(());
                }
                "replace-batch" => nft::replace_batch(c, &set, &none, None, c.lease),
                "scratch" | "renew" => {
                    nft::delta_batch(c, &all, &[], &Default::default(), None, c.lease)
                }
                "changes" => {
                    let new: Vec<ipnet::IpNet> = (1..=500u32)
                        .map(|i| {
                            ipnet::IpNet::from(std::net::IpAddr::V4(std::net::Ipv4Addr::new(
                                10,
                                200,
                                (i >> 8) as u8,
                                (i & 255) as u8,
                            )))
                        })
                        .collect();
                    nft::delta_batch(c, &new, &all[..500], &Default::default(), None, c.lease)
                }
                other => {
                    return Err(anyhow::anyhow!(
                        "scratch, changes, renew, replace or replace-batch, not {other:?}"
                    )
                    .into());
                }
            };
            nft::apply(c, &batch)?;
            Ok(())
        }
        Cmd::Status => {
            let config = super::load_config_or_defaults(config_path)?;
            let now = chrono::Utc::now().timestamp_millis();
            let d = desired::desired(
                &config.state_dir,
                config.classifier.bindings_file.as_deref(),
                now,
            )?;
            let Some(k) = nft::kernel_allowed(&config.enforcer)? else {
                return Err(anyhow::anyhow!(
                    "table inet {} is not installed",
                    config.enforcer.table
                )
                .into());
            };
            let missing: Vec<_> = d.allowed.difference(&k).collect();
            let extra: Vec<_> = k.difference(&d.allowed).collect();
            outln!(
                "allowed by the core: {}; in the kernel: {}; missing: {:?}; extra: {:?}",
                d.allowed.len(),
                k.len(),
                missing,
                extra
            );
            let kc = kopek_enforcer::shaping::kernel(&config.enforcer)?;
            let (wrong, unset) = kopek_enforcer::shaping::delta(&kc, &d.caps);
            outln!(
                "speed caps wanted: {}; in the kernel: {}; to remove: {:?}; to set: {:?}",
                d.caps.len(),
                kc.len(),
                wrong,
                unset
            );
            Ok(())
        }
    }
}
