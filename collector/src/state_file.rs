//! Small files a daemon rewrites for its readers (its stats file), which
//! must go on being written when the disk is full: that is when an
//! operator most needs to read them.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Replaces the content of `path` with `bytes`: written under a temporary
/// name and renamed over it, so that a reader sees the old file or the new
/// one, whole. When the filesystem has no room for the temporary file (it
/// is full) the file is rewritten in place instead, reusing its own
/// blocks; a reader may then see it torn for a moment, and [`read_json`]
/// reads it again.
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_name(path);
    let renamed = fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, path));
    match renamed {
        Err(e) if no_space(&e) => {
            let _ = fs::remove_file(&tmp);
            let f = OpenOptions::new().write(true).open(path).map_err(|_| e)?;
            f.write_all_at(bytes, 0)?;
            f.set_len(bytes.len() as u64)
        }
        other => other,
    }
}

/// The filesystem had no room for a write (full, or over a quota).
pub fn no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

fn temp_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Why [`read_json`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: unreadable: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl ReadError {
    /// The file is not there.
    pub fn is_missing(&self) -> bool {
        matches!(self, ReadError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// Reads a JSON file written by [`replace`]; one that does not parse is
/// read again a moment later (it may have been caught while rewritten in
/// place) before that is an error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ReadError> {
    let once = || -> Result<T, ReadError> {
        let bytes = fs::read(path).map_err(|source| ReadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| ReadError::Parse {
            path: path.to_path_buf(),
            source,
        })
    };
    match once() {
        Err(ReadError::Parse { .. }) => {
            std::thread::sleep(Duration::from_millis(50));
            once()
        }
        res => res,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaced_whole_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.stats.json");
        replace(&p, br#"{"a": 1, "b": "long enough"}"#).unwrap();
        replace(&p, br#"{"a": 2}"#).unwrap();
        let v: serde_json::Value = read_json(&p).unwrap();
        assert_eq!(v["a"], 2);
        assert!(!temp_name(&p).exists());
        let e = read_json::<serde_json::Value>(&dir.path().join("none")).unwrap_err();
        assert!(e.is_missing(), "{e}");
        std::fs::write(&p, b"{").unwrap();
        let e = read_json::<serde_json::Value>(&p).unwrap_err();
        assert!(matches!(e, ReadError::Parse { .. }), "{e}");
    }
}
