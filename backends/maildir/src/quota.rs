//! Maildir++ quota: reading, recalculating and appending to the root maildir's
//! `maildirsize` file (standards §6.6), and counting a maildir's usage from its messages.
//! The file is only kept for recipients with a limited quota (its first line is the
//! quota's definition).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use lmtpd_store::{Quota, Usage};

use crate::name;

/// The quota file's name, in the root maildir.
pub(crate) const FILE: &str = "maildirsize";
/// A file this large (or larger) is recalculated.
const RECALC_SIZE: u64 = 5120;
/// An over-quota file with one usage line is trusted for this long.
const STALE: Duration = Duration::from_secs(15 * 60);
/// Recalculation passes when scanned directories keep changing.
const SCAN_TRIES: usize = 3;

/// The definition line for `quota`: `<bytes>S` and/or `<count>C`, comma-separated.
pub(crate) fn definition(quota: &Quota) -> String {
    let mut parts = Vec::with_capacity(2);
    if let Some(bytes) = quota.bytes {
        parts.push(format!("{bytes}S"));
    }
    if let Some(count) = quota.messages {
        parts.push(format!("{count}C"));
    }
    parts.join(",")
}

/// What the caller wants to know.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Need {
    /// Is the mailbox already full (RCPT time)?
    Full,
    /// Would one more message of this many bytes exceed a limit?
    Add(u64),
}

impl Need {
    fn over(self, quota: &Quota, usage: Usage) -> bool {
        match self {
            Need::Full => quota.is_full(usage.bytes, usage.messages),
            Need::Add(size) => quota.would_exceed(usage.bytes, usage.messages, size),
        }
    }
}

/// A parsed, trusted `maildirsize`.
struct Current {
    usage: Usage,
    /// Usage lines after the definition.
    lines: usize,
    age: Duration,
}

/// True when `need` is over `quota` for the maildir at `root`. Reads `maildirsize`,
/// recalculating it when missing, too big, defined differently, unparsable, or over quota
/// while having several lines or being older than 15 minutes. `host` is the escaped host name
/// used for the temporary file. A recalculated file is only written when `root/tmp` exists.
pub(crate) fn over(root: &Path, quota: &Quota, need: Need, host: &str) -> io::Result<bool> {
    let def = definition(quota);
    if let Some(cur) = read(root, &def)? {
        let over = need.over(quota, cur.usage);
        if !over || (cur.lines <= 1 && cur.age < STALE) {
            return Ok(over);
        }
        log::debug!(
            "maildir: {} over quota per {FILE}; recalculating",
            root.display()
        );
    }
    let usage = recalculate(root, &def, host)?;
    Ok(need.over(quota, usage))
}

/// The usage of the maildir at `root` under the limited `quota`: what `maildirsize` says
/// when it is trusted (defined for this quota, parsable, small), else recounted from the
/// messages and rewritten (as a delivery would).
pub(crate) fn current(root: &Path, quota: &Quota, host: &str) -> io::Result<Usage> {
    let def = definition(quota);
    match read(root, &def)? {
        Some(cur) => Ok(cur.usage),
        None => recalculate(root, &def, host),
    }
}

/// Reads `root/maildirsize`; `None` when it must be recalculated.
fn read(root: &Path, def: &str) -> io::Result<Option<Current>> {
    let path = root.join(FILE);
    let meta = match fs::symlink_metadata(&path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    if !meta.is_file() || meta.len() >= RECALC_SIZE {
        return Ok(None);
    }
    let mut raw = Vec::with_capacity(meta.len() as usize);
    match File::open(&path) {
        Ok(f) => f.take(RECALC_SIZE).read_to_end(&mut raw)?,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    if raw.len() as u64 >= RECALC_SIZE {
        return Ok(None);
    }
    let Ok(text) = String::from_utf8(raw) else {
        return Ok(None);
    };
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some(def) {
        return Ok(None);
    }
    let (mut bytes, mut count, mut n) = (0i64, 0i64, 0usize);
    for line in lines {
        let mut fields = line.split_whitespace();
        let Some(b) = fields.next() else { continue };
        let (Ok(b), Some(Ok(c))) = (b.parse::<i64>(), fields.next().map(str::parse::<i64>)) else {
            return Ok(None);
        };
        bytes = bytes.saturating_add(b);
        count = count.saturating_add(c);
        n += 1;
    }
    let age = meta
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or_default();
    Ok(Some(Current {
        usage: Usage {
            bytes: bytes.max(0) as u64,
            messages: count.max(0) as u64,
        },
        lines: n,
        age,
    }))
}

/// The size a Maildir++ name carries in `,S=<n>`, if any.
pub(crate) fn size_from_name(name: &str) -> Option<u64> {
    let start = name.find(",S=")? + 3;
    let digits: &str = &name[start..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// The `new/` and `cur/` directories counted towards the quota: the root's and those of
/// every Maildir++ folder except `.Trash`.
fn counted_dirs(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut maildirs = vec![root.to_path_buf()];
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with('.') || name == ".Trash" || name == "." || name == ".." {
            continue;
        }
        // DirEntry::file_type does not follow symlinks.
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            maildirs.push(entry.path());
        }
    }
    let mut dirs = Vec::with_capacity(maildirs.len() * 2);
    for m in maildirs {
        for sub in ["new", "cur"] {
            let dir = m.join(sub);
            if fs::symlink_metadata(&dir).is_ok_and(|meta| meta.is_dir()) {
                dirs.push(dir);
            }
        }
    }
    Ok(dirs)
}

fn mtimes(dirs: &[PathBuf]) -> Vec<Option<SystemTime>> {
    dirs.iter()
        .map(|d| fs::metadata(d).and_then(|m| m.modified()).ok())
        .collect()
}

/// Adds up the messages in `dirs` (sizes from `,S=`, else `lstat`).
fn scan(dirs: &[PathBuf]) -> io::Result<Usage> {
    let mut usage = Usage::default();
    for dir in dirs {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            let size = match size_from_name(&name) {
                Some(size) => size,
                None => match entry.metadata() {
                    Ok(meta) if meta.is_dir() => continue,
                    Ok(meta) => meta.len(),
                    Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(err),
                },
            };
            usage.bytes = usage.bytes.saturating_add(size);
            usage.messages += 1;
        }
    }
    Ok(usage)
}

/// Counts the messages of the maildir at `root` (its `new/` and `cur/` and those of its
/// folders except `.Trash`), scanning again (up to three passes) while a directory changes
/// during the scan. Writes nothing.
pub(crate) fn count(root: &Path) -> io::Result<Usage> {
    let mut usage = Usage::default();
    for attempt in 1..=SCAN_TRIES {
        let dirs = counted_dirs(root)?;
        let before = mtimes(&dirs);
        usage = scan(&dirs)?;
        if mtimes(&dirs) == before {
            break;
        }
        log::debug!(
            "maildir: {} changed during quota scan (pass {attempt})",
            root.display()
        );
    }
    Ok(usage)
}

/// Recounts the usage from the directories and rewrites `maildirsize` (tmp file + rename).
/// A failure to write the file is logged, not returned: the count is still right.
pub(crate) fn recalculate(root: &Path, def: &str, host: &str) -> io::Result<Usage> {
    let usage = count(root)?;
    if let Err(err) = write(root, def, usage, host) {
        log::warn!("maildir: cannot rewrite {}/{FILE}: {err}", root.display());
    }
    Ok(usage)
}

/// Writes a fresh `maildirsize` through `tmp/`; does nothing when `tmp/` is missing.
pub(crate) fn write(root: &Path, def: &str, usage: Usage, host: &str) -> io::Result<()> {
    let tmp_dir = root.join("tmp");
    if !fs::symlink_metadata(&tmp_dir).is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    let tmp = tmp_dir.join(format!("{}.{FILE}", name::unique(host)));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(format!("{def}\n{} {}\n", usage.bytes, usage.messages).as_bytes())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, root.join(FILE))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Appends `<size> 1` to an existing `maildirsize` after a delivery. A missing file is left
/// missing (the next check recalculates it, counting this message).
pub(crate) fn append(root: &Path, size: u64) -> io::Result<()> {
    let path = root.join(FILE);
    let meta = match fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_file() => meta,
        Ok(_) => return Ok(()), // replaced by the next recalculation
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    let mut file = OpenOptions::new().append(true).open(&path)?;
    let opened = file.metadata()?;
    if opened.dev() != meta.dev() || opened.ino() != meta.ino() {
        return Err(io::Error::other(
            "maildirsize was replaced while opening it",
        ));
    }
    file.write_all(format!("{size} 1\n").as_bytes())
}
