//! Body files: large message bodies kept as files in `<database>.bodies/` beside the
//! database instead of in a BLOB, each written and fsync'd (file, then directory) before the
//! `messages` row that names it is committed, and removed again once no row names it.
//!
//! Why: SQLite in WAL mode writes every page twice (into the WAL at commit, into the database
//! at checkpoint), so a 10 MiB body cost 20 MiB of writes and held the single group-commit
//! writer for the whole copy. A body file is written once, by the delivering thread, outside
//! the writer lock; the row that names it is a few hundred bytes.
//!
//! Crash rules: a row is committed only after its file is durable, so no committed row ever
//! names a missing or half-written file. A crash between the two leaves a file that no row
//! names; [`BodyDir::sweep`] removes such files (and leftovers in `tmp/`) once they are older
//! than [`SWEEP_MIN_AGE`], which no delivery in progress can be. The daemon sweeps on its
//! first delivery and then daily (`lib.rs`); tools that open the store never do. Files are created 0600 with
//! `O_EXCL | O_NOFOLLOW`, their names are made here (never from an address), and a reader
//! refuses a symlink, a hard-linked file or one whose size differs from the row's.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lmtpd_store::Body;
use rusqlite::{Connection, OptionalExtension};

use crate::error::Failure;

/// Files (and `tmp/` leftovers) younger than this are never swept: a delivery may be between
/// writing its file and committing its row.
pub(crate) const SWEEP_MIN_AGE: Duration = Duration::from_secs(3600);

/// Longest file name this module makes (and the longest a reader accepts).
const MAX_NAME: usize = 64;

/// Makes names unique within the process; the time and pid make them unique across runs.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The body-file directory of the database `db`: `<db>.bodies`.
pub(crate) fn dir_of(db: &Path) -> PathBuf {
    let mut p = OsString::from(db.as_os_str());
    p.push(".bodies");
    PathBuf::from(p)
}

/// True for a name this module could have made: lower-case hex and dots, not empty, short.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| (b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) || b == b'.')
}

/// Opens the body file `name` of the database `db` for reading, checked: a regular file (not
/// a symlink: `O_NOFOLLOW`), one link, exactly `size` bytes.
pub(crate) fn open_body(db: &Path, name: &str, size: u64) -> io::Result<File> {
    if !valid_name(name) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("body file name {name:?} is not one lmtpd makes"),
        ));
    }
    let path = dir_of(db).join(name);
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)?;
    let meta = file.metadata()?;
    let refuse = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {why}", path.display()),
        ))
    };
    if !meta.is_file() {
        return refuse("not a regular file".into());
    }
    if meta.nlink() != 1 {
        return refuse(format!("has {} links (refused)", meta.nlink()));
    }
    if meta.len() != size {
        return refuse(format!("{} bytes, the row says {size}", meta.len()));
    }
    Ok(file)
}

/// The body-file directory of one database, checked at open.
#[derive(Debug)]
pub(crate) struct BodyDir {
    dir: PathBuf,
    tmp: PathBuf,
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` (mode 0700) unless it exists, syncing its parent; refuses a symlink or a
/// non-directory in its place.
fn ensure_dir(dir: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: is a symbolic link (refused)", dir.display()),
        )),
        Ok(meta) if !meta.is_dir() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a directory", dir.display()),
        )),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new().mode(0o700).create(dir)?;
            match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => sync_dir(p),
                _ => sync_dir(Path::new(".")),
            }
        }
        Err(e) => Err(e),
    }
}

impl BodyDir {
    /// The body-file directory of the database `db`, created (0700, with `tmp/`) when
    /// missing.
    /// An existing directory must be ours to write: a probe file is made and removed in
    /// `tmp/`, and a directory others may write into is refused.
    pub(crate) fn open(db: &Path) -> io::Result<BodyDir> {
        let dir = dir_of(db);
        ensure_dir(&dir)?;
        let tmp = dir.join("tmp");
        ensure_dir(&tmp)?;
        for d in [&dir, &tmp] {
            if fs::symlink_metadata(d)?.mode() & 0o022 != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: writable by others (refused)", d.display()),
                ));
            }
        }
        let probe = tmp.join(format!("probe.{:x}", std::process::id()));
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&probe)
            .and_then(|_| fs::remove_file(&probe))
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", tmp.display())))?;
        Ok(BodyDir { dir, tmp })
    }

    /// Writes `body` (without its first `skip` bytes) into a new body file and makes it
    /// durable: written in `tmp/`, fsync'd, renamed into the directory, directory fsync'd.
    /// Returns the file's name, for `messages.body_file`. Nothing is left behind on error.
    pub(crate) fn write(&self, body: &dyn Body) -> Result<String, Failure> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let name = format!(
            "{:x}.{:x}.{:x}.{:x}",
            now.as_secs(),
            now.subsec_nanos(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let tmp = self.tmp.join(&name);
        let io = |what: &'static str| move |err: io::Error| Failure::Io { what, err };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(io("create body file"))?;
        let written = (|| {
            let mut reader = body.open().map_err(io("open spooled body"))?;
            crate::deliver::copy_exact(&mut reader, &mut file, body.len(), "write body file")?;
            file.sync_all().map_err(io("fsync body file"))?;
            drop(file);
            fs::rename(&tmp, self.dir.join(&name)).map_err(io("rename body file"))
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        if let Err(err) = sync_dir(&self.dir) {
            let _ = fs::remove_file(self.dir.join(&name));
            return Err(Failure::Io {
                what: "fsync body directory",
                err,
            });
        }
        Ok(name)
    }

    /// Removes the body file `name` that no committed row names (its delivery failed before
    /// the commit). Best effort: a file left behind is swept later.
    pub(crate) fn remove(&self, name: &str) {
        if valid_name(name) {
            if let Err(e) = fs::remove_file(self.dir.join(name)) {
                log::warn!("sqlite: cannot remove unused body file {name}: {e}");
            }
        }
    }

    /// Removes every body file that no `messages` row names and every `tmp/` leftover, of
    /// those older than `min_age` at `now`. Returns how many were removed.
    pub(crate) fn sweep(
        &self,
        conn: &Connection,
        min_age: Duration,
        now: SystemTime,
    ) -> io::Result<usize> {
        // The later of the modification and the change time (a rename sets the latter); a
        // time in the future (a clock that went back) is never old.
        let old = |meta: &fs::Metadata| {
            let changed = UNIX_EPOCH
                + Duration::from_secs(u64::try_from(meta.ctime()).unwrap_or(u64::MAX / 4));
            let newest = meta.modified().map_or(changed, |m| m.max(changed));
            now.duration_since(newest).is_ok_and(|age| age >= min_age)
        };
        let mut removed = 0;
        for entry in fs::read_dir(&self.tmp)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_file() && old(&meta) && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        let mut named = conn
            .prepare("SELECT 1 FROM messages WHERE body_file = ?1 LIMIT 1")
            .map_err(io::Error::other)?;
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let meta = entry.metadata()?;
            if !meta.is_file() || !valid_name(&name) || !old(&meta) {
                continue;
            }
            let used = named
                .query_row([&name], |_| Ok(()))
                .optional()
                .map_err(io::Error::other)?
                .is_some();
            if !used && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}
