//! The per-user tracking store behind Sieve's `vacation` (one reply per sender per handle
//! per period) and `duplicate` (RFC 7352's tracking list): one small text file per user
//! under `sieve_state_dir`, replaced atomically (written, fsync'd, renamed, directory
//! fsync'd) under an exclusive lock on a companion `.lock` file, so a crash leaves either the
//! old or the new list, never half of one. Expired entries are dropped at every write and a
//! user's list holds at most [`MAX_ENTRIES`] entries of at most [`MAX_KEY`] octets, so the
//! store cannot grow without bound.
//!
//! File format (version 1), one entry per line after the header line:
//!
//! ```text
//! lmtpd-tracking 1
//! v 1796100000 h1%00bob@example.com
//! d 1796200000 %00<abc@example.com>
//! ```
//!
//! the kind (`v` vacation, `d` duplicate), the expiry in seconds since the epoch, and the
//! key with every octet outside `!`..`~` and `%` itself written as `%XX`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The most entries one user's list keeps; past it the ones that expire soonest go first.
pub const MAX_ENTRIES: usize = 10_000;

/// The longest key (handle plus address or unique id, before encoding) that is tracked; a
/// longer one is not (a duplicate test on it is false, a vacation reply is not sent).
pub const MAX_KEY: usize = 1000;

const HEADER: &str = "lmtpd-tracking 1";

/// What an entry tracks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A vacation reply sent: the key is the handle and the sender.
    Vacation,
    /// A message seen by `duplicate`: the key is the handle and the unique id.
    Duplicate,
}

impl Kind {
    fn letter(self) -> char {
        match self {
            Kind::Vacation => 'v',
            Kind::Duplicate => 'd',
        }
    }
}

/// One entry to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    /// Its kind.
    pub kind: Kind,
    /// Its key.
    pub key: String,
    /// How long it lives from now, in seconds.
    pub seconds: u64,
    /// Replace the expiry of an entry that is still there (`duplicate :last`); without it
    /// a live entry keeps the expiry it has (RFC 7352 §3.3).
    pub refresh: bool,
}

/// The key of a vacation or duplicate entry: the handle, a NUL, the value.
pub fn key(handle: &str, value: &str) -> String {
    format!("{handle}\0{value}")
}

/// The tracking store: a directory of per-user lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracking {
    dir: PathBuf,
}

/// Why the store could not answer or record.
#[derive(Debug)]
pub enum TrackingError {
    /// The directory or a file could not be used.
    Io(PathBuf, io::Error),
    /// The key is longer than [`MAX_KEY`].
    KeyTooLong,
}

impl std::fmt::Display for TrackingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrackingError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            TrackingError::KeyTooLong => write!(f, "key longer than {MAX_KEY} octets"),
        }
    }
}

/// One entry as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    kind: Kind,
    expires: i64,
    key: String,
}

impl Tracking {
    /// The store under `dir` (created, mode 0700, when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Tracking {
        Tracking { dir: dir.into() }
    }

    /// The file of `user` (its canonical address): one path component, every octet
    /// outside letters, digits, `@`, `+`, `-` and `_` (and a leading `.`) written as `%XX`,
    /// so no address can name another path.
    pub fn path(&self, user: &str) -> PathBuf {
        let mut name = String::with_capacity(user.len() + 8);
        for (i, b) in user.bytes().enumerate() {
            let keep = b.is_ascii_alphanumeric()
                || matches!(b, b'@' | b'+' | b'-' | b'_')
                || (b == b'.' && i > 0);
            if keep {
                name.push(char::from(b));
            } else {
                name.push_str(&format!("%{b:02X}"));
            }
        }
        if name.is_empty() {
            name.push_str("%00");
        }
        self.dir.join(name)
    }

    /// Is there a live entry of `kind` with `key` for `user` at `now`?
    pub fn contains(
        &self,
        user: &str,
        kind: Kind,
        key: &str,
        now: i64,
    ) -> Result<bool, TrackingError> {
        if key.len() > MAX_KEY {
            return Err(TrackingError::KeyTooLong);
        }
        let path = self.path(user);
        let _lock = self.lock(&path, false)?;
        let entries = read(&path)?;
        Ok(entries
            .iter()
            .any(|e| e.kind == kind && e.key == key && e.expires > now))
    }

    /// Records `marks` for `user` at `now`, durably, dropping expired entries.
    pub fn record(&self, user: &str, marks: &[Mark], now: i64) -> Result<(), TrackingError> {
        if marks.is_empty() {
            return Ok(());
        }
        let path = self.path(user);
        let _lock = self.lock(&path, true)?;
        let mut entries = read(&path)?;
        apply(&mut entries, marks, now);
        write(&path, &entries)
    }

    /// Vacation's step: if `user` has no live entry for `key`, records one for `seconds`
    /// (durably) and returns true; otherwise false. The check and the record are one
    /// locked step, so two deliveries at once cannot both reply.
    pub fn claim(
        &self,
        user: &str,
        key: &str,
        seconds: u64,
        now: i64,
    ) -> Result<bool, TrackingError> {
        if key.len() > MAX_KEY {
            return Err(TrackingError::KeyTooLong);
        }
        let path = self.path(user);
        let _lock = self.lock(&path, true)?;
        let mut entries = read(&path)?;
        if entries
            .iter()
            .any(|e| e.kind == Kind::Vacation && e.key == key && e.expires > now)
        {
            return Ok(false);
        }
        let mark = Mark {
            kind: Kind::Vacation,
            key: key.to_string(),
            seconds,
            refresh: true,
        };
        apply(&mut entries, &[mark], now);
        write(&path, &entries)?;
        Ok(true)
    }

    /// Takes the user's lock file (shared or exclusive), creating the directory and the
    /// file as needed; the lock goes with the returned file.
    fn lock(&self, path: &Path, exclusive: bool) -> Result<File, TrackingError> {
        let io = |e| TrackingError::Io(self.dir.clone(), e);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io)?;
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&lock_path)
            .map_err(|e| TrackingError::Io(lock_path.clone(), e))?;
        let locked = if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        };
        locked.map_err(|e| TrackingError::Io(lock_path, e))?;
        Ok(file)
    }
}

/// Adds or refreshes `marks` and drops what expired by `now`; keeps at most
/// [`MAX_ENTRIES`], dropping the soonest to expire.
fn apply(entries: &mut Vec<Entry>, marks: &[Mark], now: i64) {
    entries.retain(|e| e.expires > now);
    for m in marks {
        if m.key.len() > MAX_KEY {
            continue;
        }
        let expires = now.saturating_add(i64::try_from(m.seconds).unwrap_or(i64::MAX));
        match entries
            .iter_mut()
            .find(|e| e.kind == m.kind && e.key == m.key)
        {
            Some(e) if m.refresh => e.expires = expires,
            Some(_) => {}
            None if expires > now => entries.push(Entry {
                kind: m.kind,
                expires,
                key: m.key.clone(),
            }),
            None => {}
        }
    }
    if entries.len() > MAX_ENTRIES {
        entries.sort_by_key(|e| std::cmp::Reverse(e.expires));
        entries.truncate(MAX_ENTRIES);
    }
}

/// The entries of the list at `path`; none when it does not exist. Lines that do not
/// parse are skipped.
fn read(path: &Path) -> Result<Vec<Entry>, TrackingError> {
    let mut text = String::new();
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => {
            // A list holds at most MAX_ENTRIES lines of bounded length.
            let bound = (MAX_ENTRIES as u64 + 1) * (3 * MAX_KEY as u64 + 32);
            f.take(bound)
                .read_to_string(&mut text)
                .map_err(|e| TrackingError::Io(path.to_path_buf(), e))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(TrackingError::Io(path.to_path_buf(), e)),
    }
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Ok(Vec::new());
    }
    Ok(lines.filter_map(parse_line).collect())
}

fn parse_line(line: &str) -> Option<Entry> {
    let mut parts = line.splitn(3, ' ');
    let kind = match parts.next()? {
        "v" => Kind::Vacation,
        "d" => Kind::Duplicate,
        _ => return None,
    };
    let expires = parts.next()?.parse().ok()?;
    let key = decode(parts.next()?)?;
    Some(Entry { kind, expires, key })
}

/// Replaces the list at `path` with `entries`: a new file beside it, fsync'd, renamed over
/// it, and the directory fsync'd.
fn write(path: &Path, entries: &[Entry]) -> Result<(), TrackingError> {
    let io = |e| TrackingError::Io(path.to_path_buf(), e);
    let mut text = String::with_capacity(32 + entries.len() * 64);
    text.push_str(HEADER);
    text.push('\n');
    for e in entries {
        text.push(e.kind.letter());
        text.push(' ');
        text.push_str(&e.expires.to_string());
        text.push(' ');
        text.push_str(&encode(&e.key));
        text.push('\n');
    }
    let mut tmp_path = path.as_os_str().to_owned();
    tmp_path.push(".new");
    let tmp_path = PathBuf::from(tmp_path);
    // The lock is held: nobody else writes this temporary file.
    let _ = fs::remove_file(&tmp_path);
    let mut tmp = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp_path)
        .map_err(io)?;
    tmp.write_all(text.as_bytes()).map_err(io)?;
    tmp.sync_all().map_err(io)?;
    drop(tmp);
    fs::rename(&tmp_path, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

fn encode(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn mark(kind: Kind, key: &str, seconds: u64, refresh: bool) -> Mark {
        Mark {
            kind,
            key: key.into(),
            seconds,
            refresh,
        }
    }

    #[test]
    fn a_vacation_claim_holds_for_its_period_then_expires() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tracking::new(dir.path().join("state"));
        let k = key("h", "bob@example.com");
        assert!(t.claim("alice@example.org", &k, 3600, NOW).unwrap());
        assert!(!t.claim("alice@example.org", &k, 3600, NOW + 10).unwrap());
        assert!(!t.claim("alice@example.org", &k, 3600, NOW + 3599).unwrap());
        assert!(
            t.claim("alice@example.org", &k, 3600, NOW + 3600).unwrap(),
            "the period is over"
        );
        assert!(
            t.claim("carol@example.org", &k, 3600, NOW + 10).unwrap(),
            "each user has a list of their own"
        );
        assert!(
            t.claim(
                "alice@example.org",
                &key("h2", "bob@example.com"),
                3600,
                NOW + 10
            )
            .unwrap(),
            "each handle is tracked on its own"
        );
    }

    #[test]
    fn rfc7352_3_3_duplicate_entries_expire_from_first_sight_unless_last() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tracking::new(dir.path());
        let k = key("", "<1@example.com>");
        let user = "alice@example.org";
        t.record(user, &[mark(Kind::Duplicate, &k, 100, false)], NOW)
            .unwrap();
        assert!(t.contains(user, Kind::Duplicate, &k, NOW + 50).unwrap());
        // Seen again at +50 without :last: the expiry stays at +100.
        t.record(user, &[mark(Kind::Duplicate, &k, 100, false)], NOW + 50)
            .unwrap();
        assert!(!t.contains(user, Kind::Duplicate, &k, NOW + 100).unwrap());
        // With :last the period restarts at each sighting.
        t.record(user, &[mark(Kind::Duplicate, &k, 100, true)], NOW + 200)
            .unwrap();
        t.record(user, &[mark(Kind::Duplicate, &k, 100, true)], NOW + 250)
            .unwrap();
        assert!(t.contains(user, Kind::Duplicate, &k, NOW + 349).unwrap());
        assert!(!t.contains(user, Kind::Duplicate, &k, NOW + 350).unwrap());
        assert!(
            !t.contains(user, Kind::Vacation, &k, NOW + 300).unwrap(),
            "kinds are apart"
        );
    }

    #[test]
    fn expired_entries_are_pruned_and_the_list_is_bounded() {
        let mut entries = Vec::new();
        let marks: Vec<Mark> = (0..MAX_ENTRIES + 50)
            .map(|i| mark(Kind::Duplicate, &format!("k{i}"), 10 + i as u64, false))
            .collect();
        apply(&mut entries, &marks, NOW);
        assert_eq!(entries.len(), MAX_ENTRIES);
        assert!(
            !entries.iter().any(|e| e.key == "k0"),
            "the soonest to expire went first"
        );
        apply(&mut entries, &[], NOW + 10 + 100);
        assert_eq!(entries.len(), MAX_ENTRIES + 50 - 101);
        let long = "x".repeat(MAX_KEY + 1);
        apply(
            &mut entries,
            &[mark(Kind::Duplicate, &long, 10, false)],
            NOW,
        );
        assert!(!entries.iter().any(|e| e.key == long));
    }

    #[test]
    fn keys_with_any_octets_survive_the_file_and_names_stay_one_component() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tracking::new(dir.path());
        let k = key("h %\n", "<a b@c>\u{e9}");
        t.record("u", &[mark(Kind::Duplicate, &k, 100, false)], NOW)
            .unwrap();
        assert!(t.contains("u", Kind::Duplicate, &k, NOW).unwrap());
        for user in ["../../etc/passwd", ".hidden", "a/b", ""] {
            let p = t.path(user);
            assert_eq!(p.parent(), Some(dir.path()), "{user}");
            let name = p.file_name().unwrap().to_str().unwrap();
            assert!(!name.contains('/') && !name.starts_with('.'), "{name}");
        }
        assert_ne!(t.path("a/b"), t.path("a%2Fb"), "encoding is one-to-one");
    }

    #[test]
    fn the_files_are_private_and_a_symlinked_list_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let t = Tracking::new(&state);
        t.record("u", &[mark(Kind::Vacation, "k", 100, true)], NOW)
            .unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&t.path("u")), 0o600);
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), t.path("v")).unwrap();
        assert!(t.contains("v", Kind::Vacation, "k", NOW).is_err());
    }

    #[test]
    fn an_unknown_file_format_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tracking::new(dir.path());
        fs::write(t.path("u"), "something else\nv 99999999999 k\n").unwrap();
        assert!(!t.contains("u", Kind::Vacation, "k", NOW).unwrap());
    }
}
