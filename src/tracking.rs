//! The per-user tracking store behind Sieve's `vacation` (one reply per sender per handle
//! per period) and `duplicate` (RFC 7352's tracking list): one small append-only text file
//! per user under `sieve_state_dir`, with a companion `.lock` file.
//!
//! - A duplicate entry is one line appended and `fdatasync`ed, under a shared lock, so
//!   deliveries to one user running at once do not wait for each other (their syncs share
//!   the journal commit).
//! - A vacation claim (is there a live entry? if not, add one) is one step under the
//!   exclusive lock, so two deliveries cannot both reply; the line is synced before the
//!   reply is sent.
//! - When a list has grown to twice its size after the last compaction (and past 64 KiB), it
//!   is compacted under the exclusive lock: expired entries dropped, at most [`MAX_ENTRIES`]
//!   kept (the soonest to expire go first), written to a new file that is fsync'd and
//!   renamed over the old one, and the directory fsync'd. A crash leaves the old or the new
//!   file, never half of one; a line torn by a crash is ignored. Keys are at most
//!   [`MAX_KEY`] octets. So no list grows without bound.
//!
//! File format (version 1): the line `lmtpd-tracking 1`, then one entry per line, applied in
//! order:
//!
//! ```text
//! v 1796100000 h1%00bob@example.com          a vacation reply sent: expires then
//! d 1796200000 %00<abc@example.com>          a duplicate entry (re)set to expire then
//! D 1795600000 1796200000 %00<abc@example.com>  set unless one was live at the first time
//! ```
//!
//! Keys are written with every octet outside `!`..`~`, and `%` itself, as `%XX`, so a line
//! has no spaces but its separators.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The most entries one user's list keeps; past it the ones that expire soonest go first.
pub const MAX_ENTRIES: usize = 10_000;

/// The longest key (handle plus address or unique id, before encoding) that is tracked; a
/// longer one is not (a duplicate test on it is false, a vacation reply is not sent).
pub const MAX_KEY: usize = 256;

const HEADER: &str = "lmtpd-tracking 1";

/// A list is not compacted before it reaches this size.
const COMPACT_MIN: u64 = 64 << 10;

/// The most octets of a list that are read (a bound on memory whatever is in the file):
/// the largest compacted list (every key at its longest, every octet encoded) twice over
/// and the growth allowed before compaction. A list of Message-IDs of a typical length
/// takes about 60 octets an entry.
const READ_MAX: u64 = 3 * (MAX_ENTRIES as u64) * (3 * MAX_KEY as u64 + 48) + COMPACT_MIN;

/// What an entry tracks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

/// The live state of a list: (kind, key) → expiry.
type State = HashMap<(Kind, String), i64>;

/// The size of each list right after this process last compacted it (when it is next due).
static COMPACTED: Mutex<Option<HashMap<PathBuf, u64>>> = Mutex::new(None);

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
        let (state, _) = read(&path)?;
        Ok(live(&state, kind, key, now))
    }

    /// Records `marks` for `user` at `now`, durably (appended and synced under a shared
    /// lock); compacts the list when it is due.
    pub fn record(&self, user: &str, marks: &[Mark], now: i64) -> Result<(), TrackingError> {
        let lines: String = marks
            .iter()
            .filter(|m| m.key.len() <= MAX_KEY)
            .map(|m| {
                let expires = expiry(now, m.seconds);
                match (m.kind, m.refresh) {
                    (Kind::Duplicate, false) => format!("D {now} {expires} {}\n", encode(&m.key)),
                    (kind, _) => format!("{} {expires} {}\n", kind.letter(), encode(&m.key)),
                }
            })
            .collect();
        if lines.is_empty() {
            return Ok(());
        }
        let path = self.path(user);
        let size = {
            let _lock = self.lock(&path, false)?;
            append(&path, &lines)?
        };
        match size {
            Some(size) if compaction_due(&path, size) => self.compact(&path, now),
            Some(_) => Ok(()),
            // No list yet: it is created whole, under the exclusive lock.
            None => {
                let _lock = self.lock(&path, true)?;
                let (mut state, _) = read(&path)?;
                replay(&mut state, &lines);
                write(&path, &state, now)
            }
        }
    }

    /// Vacation's step: if `user` has no live entry for `key`, records one for `seconds`
    /// (synced) and returns true; otherwise false. The check and the record are one locked
    /// step, so two deliveries at once cannot both reply.
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
        let lock = self.lock(&path, true)?;
        let (mut state, _) = read(&path)?;
        if live(&state, Kind::Vacation, key, now) {
            return Ok(false);
        }
        let line = format!("v {} {}\n", expiry(now, seconds), encode(key));
        match append(&path, &line)? {
            Some(size) => {
                drop(lock);
                if compaction_due(&path, size) {
                    self.compact(&path, now)?;
                }
            }
            None => {
                replay(&mut state, &line);
                write(&path, &state, now)?;
            }
        }
        Ok(true)
    }

    /// Rewrites the list at `path` with its live entries only.
    fn compact(&self, path: &Path, now: i64) -> Result<(), TrackingError> {
        let _lock = self.lock(path, true)?;
        let (state, _) = read(path)?;
        write(path, &state, now)
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

fn expiry(now: i64, seconds: u64) -> i64 {
    now.saturating_add(i64::try_from(seconds).unwrap_or(i64::MAX))
}

fn live(state: &State, kind: Kind, key: &str, now: i64) -> bool {
    state
        .get(&(kind, key.to_string()))
        .is_some_and(|&expires| expires > now)
}

/// Is the list at `path`, now `size` octets, due for compaction?
fn compaction_due(path: &Path, size: u64) -> bool {
    let Ok(mut guard) = COMPACTED.lock() else {
        return size > COMPACT_MIN;
    };
    let map = guard.get_or_insert_with(HashMap::new);
    let after = map.get(path).copied().unwrap_or(0);
    size > COMPACT_MIN.max(after.saturating_mul(2))
}

fn note_compacted(path: &Path, size: u64) {
    if let Ok(mut guard) = COMPACTED.lock() {
        let map = guard.get_or_insert_with(HashMap::new);
        // A bound on the memory of this hint: forgetting only means one early compaction.
        if map.len() >= 100_000 {
            map.clear();
        }
        map.insert(path.to_path_buf(), size);
    }
}

/// Appends `lines` to the list at `path` and syncs it; `None` when there is no list yet.
/// Returns the list's size after the append. A list whose last line was torn by a crash
/// gets a line break first, so the new lines stay whole.
fn append(path: &Path, lines: &str) -> Result<Option<u64>, TrackingError> {
    let io = |e| TrackingError::Io(path.to_path_buf(), e);
    let mut f = match OpenOptions::new()
        .read(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let size = f.metadata().map_err(io)?.len();
    let mut last = [0u8; 1];
    let torn = size > 0 && f.read_at(&mut last, size - 1).map_err(io)? == 1 && last[0] != b'\n';
    let mut buf = String::with_capacity(lines.len() + 1);
    if torn {
        buf.push('\n');
    }
    buf.push_str(lines);
    f.write_all(buf.as_bytes()).map_err(io)?;
    f.sync_data().map_err(io)?;
    Ok(Some(size + buf.len() as u64))
}

/// The live state of the list at `path` (empty when it does not exist or is not a list)
/// and its size in octets.
fn read(path: &Path) -> Result<(State, u64), TrackingError> {
    let text = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => {
            let mut bytes = Vec::new();
            f.take(READ_MAX)
                .read_to_end(&mut bytes)
                .map_err(|e| TrackingError::Io(path.to_path_buf(), e))?;
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((State::new(), 0)),
        Err(e) => return Err(TrackingError::Io(path.to_path_buf(), e)),
    };
    let mut state = State::new();
    let Some(body) = text.strip_prefix(HEADER).and_then(|t| t.strip_prefix('\n')) else {
        return Ok((state, text.len() as u64));
    };
    replay(&mut state, body);
    Ok((state, text.len() as u64))
}

/// Applies the complete lines of `text` (a line without its line break, torn by a crash, is
/// ignored; so is any line that does not parse).
fn replay(state: &mut State, text: &str) {
    let complete = match text.rfind('\n') {
        Some(i) => &text[..i],
        None => return,
    };
    for line in complete.split('\n') {
        let f: Vec<&str> = line.split(' ').collect();
        match f.as_slice() {
            [k @ ("v" | "d"), expires, key] => {
                let (Ok(expires), Some(key)) = (expires.parse::<i64>(), decode(key)) else {
                    continue;
                };
                let kind = if *k == "v" {
                    Kind::Vacation
                } else {
                    Kind::Duplicate
                };
                state.insert((kind, key), expires);
            }
            ["D", at, expires, key] => {
                let (Ok(at), Ok(expires), Some(key)) =
                    (at.parse::<i64>(), expires.parse::<i64>(), decode(key))
                else {
                    continue;
                };
                let slot = state.entry((Kind::Duplicate, key)).or_insert(i64::MIN);
                if *slot <= at {
                    *slot = expires;
                }
            }
            _ => {}
        }
    }
}

/// Replaces the list at `path` with the entries of `state` still live at `now` (at most
/// [`MAX_ENTRIES`], the latest to expire): a new file beside it, fsync'd, renamed over it,
/// and the directory fsync'd.
fn write(path: &Path, state: &State, now: i64) -> Result<(), TrackingError> {
    let io = |e| TrackingError::Io(path.to_path_buf(), e);
    let mut entries: Vec<(&(Kind, String), &i64)> =
        state.iter().filter(|(_, &e)| e > now).collect();
    if entries.len() > MAX_ENTRIES {
        entries.sort_by_key(|(_, &e)| std::cmp::Reverse(e));
        entries.truncate(MAX_ENTRIES);
    }
    let mut text = String::with_capacity(32 + entries.len() * 64);
    text.push_str(HEADER);
    text.push('\n');
    for ((kind, key), expires) in entries {
        text.push(kind.letter());
        text.push(' ');
        text.push_str(&expires.to_string());
        text.push(' ');
        text.push_str(&encode(key));
        text.push('\n');
    }
    let mut tmp_path = path.as_os_str().to_owned();
    tmp_path.push(".new");
    let tmp_path = PathBuf::from(tmp_path);
    // The exclusive lock is held: nobody else writes this temporary file.
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
    note_compacted(path, text.len() as u64);
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
    fn compaction_drops_expired_entries_and_bounds_the_list() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tracking::new(dir.path());
        let user = "u@example.org";
        let marks: Vec<Mark> = (0..MAX_ENTRIES + 50)
            .map(|i| mark(Kind::Duplicate, &format!("k{i}"), 10 + i as u64, false))
            .collect();
        t.record(user, &marks, NOW).unwrap();
        let (state, _) = read(&t.path(user)).unwrap();
        assert_eq!(
            state.len(),
            MAX_ENTRIES,
            "the first write is already bounded"
        );
        assert!(
            !live(&state, Kind::Duplicate, "k0", NOW),
            "the soonest to expire went first"
        );
        // Appending past the compaction point rewrites the list with live entries only.
        let other = "v@example.org";
        let old: Vec<Mark> = (0..3000)
            .map(|i| mark(Kind::Duplicate, &format!("old{i}"), 10, false))
            .collect();
        t.record(other, &old, NOW).unwrap();
        let new: Vec<Mark> = (0..6000)
            .map(|i| mark(Kind::Duplicate, &format!("new{i}"), 100, false))
            .collect();
        t.record(other, &new, NOW + 20).unwrap();
        let text = fs::read_to_string(t.path(other)).unwrap();
        assert!(!text.contains("old"), "expired entries were dropped");
        assert_eq!(text.lines().count(), 6001, "header and the live entries");
        let long = "x".repeat(MAX_KEY + 1);
        t.record(user, &[mark(Kind::Duplicate, &long, 10, false)], NOW)
            .unwrap();
        assert!(t.contains(user, Kind::Duplicate, &long, NOW).is_err());
    }

    #[test]
    fn a_line_torn_by_a_crash_is_ignored_and_the_next_one_stays_whole() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tracking::new(dir.path());
        t.record("u", &[mark(Kind::Duplicate, "a", 100, true)], NOW)
            .unwrap();
        let path = t.path("u");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"d 18000").unwrap();
        drop(f);
        assert!(t.contains("u", Kind::Duplicate, "a", NOW).unwrap());
        t.record("u", &[mark(Kind::Duplicate, "b", 100, true)], NOW)
            .unwrap();
        assert!(t.contains("u", Kind::Duplicate, "b", NOW).unwrap());
        assert!(t.contains("u", Kind::Duplicate, "a", NOW).unwrap());
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
