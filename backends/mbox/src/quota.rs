//! Quota usage of an mbox: bytes are the file size; the message count is counted once and
//! cached in the sidecar `<mbox>.lmtpd-count`, trusted only while the mailbox still has
//! the size, inode and modification time recorded in it.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Suffix of the count sidecar file.
pub(crate) const SUFFIX: &str = ".lmtpd-count";
/// Read size while counting messages.
const SCAN_BUF: usize = 64 * 1024;
/// First word of the sidecar, so a foreign file of that name is never trusted.
const MAGIC: &str = "lmtpd-mbox-count-1";

/// The sidecar path of `mbox`.
pub(crate) fn sidecar_path(mbox: &Path) -> PathBuf {
    let mut s = mbox.as_os_str().to_owned();
    s.push(SUFFIX);
    PathBuf::from(s)
}

/// What the cached count is valid for: `<size> <inode> <mtime seconds> <mtime nanoseconds>`.
fn stamp(meta: &Metadata) -> String {
    format!(
        "{} {} {} {}",
        meta.len(),
        meta.ino(),
        meta.mtime(),
        meta.mtime_nsec()
    )
}

/// The cached message count of the mailbox whose current metadata is `meta`, when the
/// sidecar exists and matches it.
pub(crate) fn cached(mbox: &Path, meta: &Metadata) -> Option<u64> {
    let path = sidecar_path(mbox);
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let mut text = String::new();
    file.take(256).read_to_string(&mut text).ok()?;
    let line = text.strip_suffix('\n')?;
    let rest = line.strip_prefix(MAGIC)?.strip_prefix(' ')?;
    let (count, stamped) = rest.split_once(' ')?;
    if stamped != stamp(meta) {
        return None;
    }
    count.parse().ok()
}

/// Records `count` messages for the mailbox whose metadata is `meta` (tmp file + rename;
/// not fsynced: it is a cache, checked against the mailbox on every read). Failures are
/// logged only.
pub(crate) fn store(mbox: &Path, meta: &Metadata, count: u64) {
    let path = sidecar_path(mbox);
    let mut tmp = path.clone().into_os_string();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let _ = fs::remove_file(&tmp);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(format!("{MAGIC} {count} {}\n", stamp(meta)).as_bytes())?;
        drop(file);
        fs::rename(&tmp, &path)
    })();
    if let Err(err) = result {
        let _ = fs::remove_file(&tmp);
        log::warn!("mbox: cannot write {}: {err}", path.display());
    }
}

/// Counts the messages in an open mailbox: `From ` lines at the start of the file or after
/// an empty line (RFC 4155 separators). Reads with `pread`, so no second descriptor is
/// opened (closing one would drop this process's fcntl locks).
pub(crate) fn count(file: &File) -> io::Result<u64> {
    let mut buf = vec![0u8; SCAN_BUF];
    let mut offset = 0u64;
    let mut counter = Counter::default();
    loop {
        let n = match file.read_at(&mut buf, offset) {
            Ok(0) => return Ok(counter.count),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        counter.feed(&buf[..n]);
        offset += n as u64;
    }
}

/// The separator counter's state between chunks.
#[derive(Debug)]
pub(crate) struct Counter {
    /// The current line follows an empty line (or starts the file).
    after_blank: bool,
    /// Bytes of the current line seen so far (saturating).
    col: usize,
    /// The current line so far is a prefix of `From `.
    prefix: bool,
    /// Separators found.
    pub(crate) count: u64,
}

impl Default for Counter {
    fn default() -> Self {
        Counter {
            after_blank: true,
            col: 0,
            prefix: true,
            count: 0,
        }
    }
}

impl Counter {
    /// Scans the next chunk.
    pub(crate) fn feed(&mut self, data: &[u8]) {
        const FROM: &[u8] = b"From ";
        for &b in data {
            if b == b'\n' {
                self.after_blank = self.col == 0;
                self.col = 0;
                self.prefix = true;
                continue;
            }
            if self.prefix && self.col < FROM.len() && b == FROM[self.col] {
                if self.col + 1 == FROM.len() && self.after_blank {
                    self.count += 1;
                }
            } else {
                self.prefix = false;
            }
            self.col = self.col.saturating_add(1);
        }
    }
}
