//! Step 8 of `kopek demo`: the core (tier 3) over the demo's tier 2 —
//! tariffs, accounts, payments (one of them sent twice), a rating cycle at
//! the end of the generated day, the next day's posting, balances, who is
//! blocked, the ledger proof, and every billed tier-2 byte checked to be in
//! exactly one accrual.

use kopek_config::Config;
use kopek_core::import::parse_time_in;
use kopek_core::money::Money;
use kopek_core::ops::{Command, Payment, Policy};
use kopek_core::run::Core;

const HOME: &str = "unit = \"MB\"\nmonthly_fee = \"450.00\"\n\
[[zone]]\nname = \"night\"\nfrom = \"23:00\"\nto = \"01:00\"\n\
[[traffic]]\nname = \"paid-night\"\nclass = \"paid\"\ndirection = \"in\"\nzones = [\"night\"]\nprice = \"0\"\n\
[[traffic]]\nname = \"paid\"\nclass = \"paid\"\ndirection = \"in\"\nincluded = 1\nprice = \"0.02\"\n";
const BUSINESS: &str = "unit = \"GB\"\nmonthly_fee = \"9000.00\"\n\
[[traffic]]\nname = \"paid\"\nclass = \"paid\"\ndirection = \"max\"\nprice = \"25.00\"\n\
[[traffic]]\nname = \"peering\"\nclass = \"peering\"\ndirection = \"in\"\nprice = \"5.00\"\n";

fn t(config: &Config, s: &str) -> super::Result<i64> {
    Ok(parse_time_in(s, config.timezone).map_err(anyhow::Error::msg)?)
}

pub fn bill(config: &Config) -> super::Result<bool> {
    outln!("\n8. core (tier 3): tariffs, accounts, payments, rating, the ledger");
    let mut core = Core::open(config)?;
    let b = &mut core.billing;
    let setup = t(config, "2023-12-31 12:00")?;
    let start = t(config, "2024-01-01 00:00")?;
    let who = "demo";
    for (name, content) in [("home", HOME), ("business", BUSINESS)] {
        b.apply(
            &Command::TariffAdd {
                name: name.into(),
                content: content.into(),
                effective_ms: Some(start),
                why: "demo price list".into(),
            },
            who,
            setup,
        )?;
    }
    outln!(
        "   tariffs: home (450.00/month, paid 0.02/MB in beyond 1 MB, 23:00-01:00 free), business (9000.00/month, paid 25.00/GB of max(in, out), peering 5.00/GB in)"
    );
    let add_account = |b: &mut kopek_core::store::Billing,
                       number: &str,
                       sub: &str,
                       tariff: &str,
                       policy: Policy| {
        let s = b.apply(
            &Command::SubscriberAdd {
                name: sub.into(),
                kind: if tariff == "business" {
                    "org"
                } else {
                    "person"
                }
                .into(),
                contact: String::new(),
            },
            who,
            setup,
        )?;
        b.apply(
            &Command::AccountAdd {
                number: number.into(),
                subscriber: s.id.unwrap_or_default(),
                payer: None,
                policy,
                credit_limit: Money(if policy == Policy::Credit { 100_000 } else { 0 }),
                tariff: Some(tariff.into()),
                tariff_from_ms: Some(start),
            },
            who,
            setup,
        )
    };
    add_account(b, "acme", "ACME Ltd", "business", Policy::Credit)?;
    for i in 0..200 {
        add_account(
            b,
            &format!("home{i:03}"),
            &format!("Subscriber {i}"),
            "home",
            Policy::BlockAtZero,
        )?;
    }
    outln!(
        "   accounts: acme (business, credit to 1000.00), home000..home199 (home, blocked at zero)"
    );
    let pay = |b: &mut kopek_core::store::Billing, account: &str, amount: i64, id: &str| {
        b.apply(
            &Command::PaymentAdd(Payment {
                account: account.into(),
                amount: Money(amount),
                ext_id: id.into(),
                source: "bank".into(),
                at_ms: None,
                why: "demo register".into(),
                line: None,
            }),
            who,
            start + 3_600_000,
        )
    };
    pay(b, "acme", 1_000_000, "acme-1")?;
    for i in 20..200 {
        pay(b, &format!("home{i:03}"), 50_000, &format!("h-{i}"))?;
    }
    let again = pay(b, "acme", 1_000_000, "acme-1")?;
    outln!("   payments: acme 10000.00, home020..home199 500.00 each, home000..home019 nothing");
    outln!("   the bank sends acme-1 again: {}", again.message);

    let r = core.cycle(t(config, "2024-01-01 23:59")?)?;
    outln!(
        "   rating cycle at 2024-01-01 23:59: {} tier-2 rows rated ({} unrated), {} fee days, {} access changes, {} ms",
        r.rows,
        r.rows_unrated,
        r.fee_days,
        r.transitions.len(),
        r.elapsed_ms
    );
    let r = core.cycle(t(config, "2024-01-02 00:00:30")?)?;
    outln!(
        "   next day 00:00:30: the day is posted: {} ledger entries",
        r.entries_posted
    );
    let b = &core.billing;
    let now = t(config, "2024-01-02 00:00:30")?;
    for a in ["acme", "home000", "home050"] {
        let s = b.account_status(a, now)?;
        outln!(
            "   {a:<8} balance {:>10}  accrued {:>8}  available {:>10}  {}",
            s.balance.to_string(),
            s.accrued.to_string(),
            s.available.to_string(),
            s.state
        );
    }
    let blocked = b.blocked()?;
    outln!(
        "   blocked accounts: {} (among them the 20 that did not pay: {})",
        blocked.len(),
        if (0..20).all(|i| blocked.iter().any(|x| x.account == format!("home{i:03}"))) {
            "yes"
        } else {
            "NO"
        }
    );
    let inv = b.invoice("acme", "2024-01")?;
    outln!("   acme's invoice for 2024-01 so far:");
    for l in &inv.lines {
        outln!(
            "     {:<14} {:<9} in {:>15} B  out {:>15} B  {:>10}",
            l.service,
            l.class,
            l.in_bytes,
            l.out_bytes,
            l.amount.to_string()
        );
    }
    let v = b.verify()?;
    outln!(
        "   ledger: {} entries, books sum to {}, {}",
        v.entries,
        Money(v.total),
        if v.problems.is_empty() {
            "verified".to_string()
        } else {
            format!("PROBLEMS: {:?}", v.problems)
        }
    );
    // Every billed tier-2 byte is in exactly one accrual.
    let t2 = kopek_classifier::store::SqliteTier2::open_read(&config.state_dir)?;
    let billed: i64 = t2.query_row(
        "SELECT coalesce(sum(bytes), 0) FROM traffic WHERE billed = 1",
        [],
        |r| r.get(0),
    )?;
    let rated: i64 = b.conn().query_row(
        "SELECT coalesce(sum(in_bytes + out_bytes), 0) FROM accruals",
        [],
        |r| r.get(0),
    )?;
    let mut st = b
        .conn()
        .prepare("SELECT reason, count(*), coalesce(sum(bytes), 0), min(first_ms) FROM unrated GROUP BY reason")?;
    let unrated: Vec<(String, i64, i64, i64)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let mut unrated_bytes = 0;
    for (reason, n, bytes, first) in &unrated {
        outln!(
            "   unrated ({reason}): {n} keys, {bytes} bytes from {} on — visible in core.sqlite table unrated",
            kopek_core::fmt_ms(*first, config.timezone)
        );
        unrated_bytes += bytes;
    }
    let unpaid_blocked =
        (0..20).all(|i| blocked.iter().any(|x| x.account == format!("home{i:03}")));
    let ok = billed == rated + unrated_bytes && v.problems.is_empty() && unpaid_blocked;
    outln!(
        "   billed tier-2 bytes {billed} = rated {rated} + unrated {unrated_bytes}: {}",
        if billed == rated + unrated_bytes {
            "equal"
        } else {
            "NOT EQUAL"
        }
    );
    Ok(ok)
}

/// Step 9: what the enforcer would install for this state (it needs root
/// and nft to apply it; `kopek enforcer ruleset` prints the same table).
pub fn enforce(config: &Config) -> super::Result<bool> {
    outln!(
        "\n9. enforcer: the default-deny table for these decisions (not applied: that needs root)"
    );
    let now = parse_time_in("2024-01-02 00:00:30", config.timezone).map_err(anyhow::Error::msg)?;
    let d = kopek_enforcer::desired::desired(
        &config.state_dir,
        config.classifier.bindings_file.as_deref(),
        now,
    )?;
    let b = kopek_core::store::Billing::open_read(&config.state_dir, config.timezone)?;
    let blocked = b.blocked()?.len();
    outln!(
        "   allowed set: {} prefixes of allowed accounts; {} blocked accounts have none in it",
        d.allowed.len(),
        blocked
    );
    let mut c = config.enforcer.clone();
    if c.networks.is_empty() {
        c.networks = config.classifier.subscriber_networks.clone();
    }
    let table = kopek_enforcer::nft::base_table(&c, None);
    for line in table
        .lines()
        .filter(|l| l.contains("drop") || l.contains("set allowed4 "))
    {
        outln!("   {}", line.trim());
    }
    let home000: ipnet::IpNet = "10.0.1.0/32".parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let home050: ipnet::IpNet = "10.0.1.50/32".parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let ok = !d.allowed.contains(&home000) && d.allowed.contains(&home050);
    outln!(
        "   home000 (10.0.1.0, unpaid) allowed: {}; home050 (10.0.1.50, paid) allowed: {}",
        d.allowed.contains(&home000),
        d.allowed.contains(&home050)
    );
    Ok(ok)
}
