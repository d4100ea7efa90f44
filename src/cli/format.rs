//! Output helpers shared by report commands: formats, units, times (UTC).

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
}

/// `2026-11-22 05:00:00.123` (UTC).
pub fn time_utc(ms: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        None => format!("@{ms}"),
    }
}

/// Parses `2026-11-22T05:00:00Z`, `2026-11-22 05:00:00`, `2026-11-22`
/// (all UTC) or raw epoch milliseconds.
pub fn parse_time_ms(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Ok(Utc.from_utc_datetime(&t).timestamp_millis());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(Utc
            .from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight"))
            .timestamp_millis());
    }
    Err(format!(
        "expected a UTC time like 2026-11-22T05:00:00Z, 2026-11-22 05:00 or 2026-11-22, got {s:?}"
    ))
}

/// Like [`parse_time_ms`], but a time without a zone is read in the ISP's
/// zone (the core's parser: one for the CLI and payment imports).
pub use kopek_core::import::parse_time_in;

/// `2026-11-22 08:00 +03` in zone `tz`.
pub fn time_in(ms: i64, tz: chrono_tz::Tz) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) => t
            .with_timezone(&tz)
            .format("%Y-%m-%d %H:%M %:z")
            .to_string(),
        None => format!("@{ms}"),
    }
}

/// 1234567 → "1,234,567".
pub fn human_count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes with a unit, base 1000 (MB) or 1024 (MiB), two decimals, exact
/// integer arithmetic (no floating point).
pub fn human_bytes(n: u64, base: u64) -> String {
    let units: [&str; 6] = if base == 1024 {
        ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    } else {
        ["B", "kB", "MB", "GB", "TB", "PB"]
    };
    let mut div = 1u128;
    let mut i = 0;
    while i + 1 < units.len() && u128::from(n) >= div * u128::from(base) {
        div *= u128::from(base);
        i += 1;
    }
    if i == 0 {
        return format!("{n} B");
    }
    let hundredths = (u128::from(n) * 100 + div / 2) / div;
    format!("{}.{:02} {}", hundredths / 100, hundredths % 100, units[i])
}

/// Flushes `out`: its first write error, as [`super::output_error`] tells
/// it (a reader that closed the pipe ends the command quietly).
pub fn finish<W: Write>(mut out: Out<W>) -> super::Result {
    let _ = out.flush();
    match out.failed {
        Some(e) => Err(super::output_error(e).into()),
        None => Ok(()),
    }
}

/// Standard output that keeps its first write error and swallows the
/// writes after it, so that a report streamed row by row stops printing
/// (and says why, unless the reader just closed the pipe) without every
/// row handling the error.
pub struct Out<W: Write> {
    w: W,
    failed: Option<std::io::Error>,
}

impl Out<std::io::BufWriter<std::io::StdoutLock<'static>>> {
    /// Standard output, buffered.
    pub fn stdout() -> Self {
        Out {
            w: std::io::BufWriter::new(std::io::stdout().lock()),
            failed: None,
        }
    }
}

impl<W: Write> Out<W> {
    /// Keeps `e` as the failure unless there is one already.
    pub fn fail(&mut self, e: std::io::Error) {
        self.failed.get_or_insert(e);
    }
}

impl<W: Write> Write for Out<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.failed.is_none()
            && let Err(e) = self.w.write_all(buf)
        {
            self.fail(e);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.failed.is_none()
            && let Err(e) = self.w.flush()
        {
            self.fail(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_exact_and_selectable() {
        assert_eq!(human_bytes(999, 1000), "999 B");
        assert_eq!(human_bytes(1_000_000, 1000), "1.00 MB");
        assert_eq!(human_bytes(1_048_576, 1024), "1.00 MiB");
        assert_eq!(human_bytes(1_048_576, 1000), "1.05 MB");
        assert_eq!(human_count(1234567), "1,234,567");
    }

    #[test]
    fn times_parse_as_utc() {
        assert_eq!(parse_time_ms("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert_eq!(parse_time_ms("1970-01-02").unwrap(), 86_400_000);
        assert_eq!(parse_time_ms("1970-01-01 00:01").unwrap(), 60_000);
        assert!(parse_time_ms("yesterday").is_err());
        assert_eq!(time_utc(1000), "1970-01-01 00:00:01.000");
    }
}
