//! Reading the files an operator points kopek at (the config, class lists,
//! bindings, tariffs, payment registers) with a size limit: a wrong path
//! (`/dev/zero`, a disk image, a log) gets a clear error instead of
//! filling memory.

use std::io::Read;
use std::path::Path;

/// The config file.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// A class list or bindings file (a full routing table with comments is
/// ~50 MB).
pub const MAX_LIST_BYTES: u64 = 512 << 20;
/// A tariff file.
pub const MAX_TARIFF_BYTES: u64 = 1 << 20;
/// A payment register to import.
pub const MAX_IMPORT_BYTES: u64 = 64 << 20;

/// The whole content of `path`, refused with `InvalidData` when it holds
/// more than `limit` bytes (read up to `limit` + 1 at most, also from a
/// pipe or a device that never ends).
pub fn read_limited(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let f = std::fs::File::open(path)?;
    let hint = f.metadata().map(|m| m.len()).unwrap_or(0).min(limit);
    let mut buf = Vec::with_capacity(hint as usize);
    f.take(limit + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        let size = if limit >= 1 << 20 {
            format!("{} MiB", limit >> 20)
        } else {
            format!("{limit} bytes")
        };
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("more than {size}, the limit for this kind of file: is it the right file?"),
        ));
    }
    Ok(buf)
}

/// [`read_limited`] as UTF-8 text.
pub fn read_limited_text(path: &Path, limit: u64) -> std::io::Result<String> {
    String::from_utf8(read_limited(path, limit)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_past_the_limit_is_refused_after_reading_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"12345").unwrap();
        assert_eq!(read_limited(&p, 5).unwrap(), b"12345");
        let e = read_limited(&p, 4).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("the limit"), "{e}");
        // A device that never ends.
        let e = read_limited(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        std::fs::write(&p, [0xff, 0xfe]).unwrap();
        assert!(
            read_limited_text(&p, 10)
                .unwrap_err()
                .to_string()
                .contains("UTF-8")
        );
    }
}
