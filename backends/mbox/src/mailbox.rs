//! Finding and opening a mailbox file safely: `+detail` folder selection, creation of a
//! missing mailbox (0600, parent directory 0700), and the checks that refuse symlinks,
//! hard links, non-regular files and a file swapped between `lstat` and `open`.

use std::fs::{self, DirBuilder, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{io_at, Failure};
use crate::quota;
use lmtpd_store::Folder;

/// Attempts at opening when the path keeps changing under us.
const OPEN_TRIES: usize = 5;

/// Why a `+detail` may not name a folder file, or `Ok` when it may. Besides the shared
/// rules, names of our own companion files (`*.lock`, `*.lmtpd-count`) are refused.
pub(crate) fn check_detail(detail: &str) -> Result<(), &'static str> {
    lmtpd_store::template::check_detail(detail)?;
    if detail.ends_with(".lock") || detail.contains(quota::SUFFIX) {
        Err("names a lock or count file")
    } else {
        Ok(())
    }
}

/// Does the folder file `name` exist next to `inbox` (as [`resolve_target`] would find it
/// without `create`)?
pub(crate) fn folder_exists(inbox: &Path, name: &str, per_user_dir: bool) -> bool {
    if !per_user_dir || check_detail(name).is_err() {
        return false;
    }
    let dir = match inbox.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let folder = dir.join(name);
    folder != inbox && fs::symlink_metadata(&folder).is_ok_and(|m| m.is_file())
}

/// Picks the mbox file a copy goes into: the inbox, or the folder file
/// `<directory of the inbox>/<name>` when `per_user_dir` (the template gives every user a
/// directory of their own), the name is safe, and the folder is an existing regular file
/// (or missing with `create`; it is then created by [`open`]). Creates nothing itself.
pub(crate) fn resolve_target(
    inbox: &Path,
    folder: &Folder,
    per_user_dir: bool,
    user: &str,
) -> Result<PathBuf, Failure> {
    let (detail, create) = match folder {
        Folder::Inbox => return Ok(inbox.to_path_buf()),
        Folder::Named { name, create } => (name.as_str(), *create),
    };
    if !per_user_dir {
        log::debug!(
            "mbox: {user}: the mbox template has no per-user directory; \
             detail {detail:?} goes to the inbox"
        );
        return Ok(inbox.to_path_buf());
    }
    if let Err(why) = check_detail(detail) {
        log::warn!("mbox: {user}: detail {detail:?} {why}; delivering to the inbox");
        return Ok(inbox.to_path_buf());
    }
    let dir = match inbox.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let folder = dir.join(detail);
    if folder == inbox {
        return Ok(folder);
    }
    match fs::symlink_metadata(&folder) {
        Ok(meta) if meta.is_file() => Ok(folder),
        Ok(_) => {
            log::info!(
                "mbox: {user}: {} is not a regular file; delivering to the inbox",
                folder.display()
            );
            Ok(inbox.to_path_buf())
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            if create {
                Ok(folder)
            } else {
                log::info!("mbox: {user}: folder {detail} does not exist; delivering to the inbox");
                Ok(inbox.to_path_buf())
            }
        }
        Err(err) => Err(io_at("stat", &folder)(err)),
    }
}

/// Refuses metadata (from `lstat` or `fstat`) of a file we must not append to.
pub(crate) fn check_meta(meta: &Metadata, path: &Path) -> Result<(), Failure> {
    if meta.file_type().is_symlink() {
        Err(Failure::Unusable(format!(
            "{} is a symlink; refusing to deliver",
            path.display()
        )))
    } else if !meta.is_file() {
        Err(Failure::Unusable(format!(
            "{} is not a regular file; refusing to deliver",
            path.display()
        )))
    } else if meta.nlink() != 1 {
        Err(Failure::Unusable(format!(
            "{} has {} hard links; refusing to deliver",
            path.display(),
            meta.nlink()
        )))
    } else {
        Ok(())
    }
}

/// fsyncs a directory so new entries in it are durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory `path` lives in (`.` for a bare file name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates the directory of `path` (and missing ancestors) with mode 0700 when it is
/// missing, making the new entries durable. A symlinked directory (e.g. `/var/mail`) is
/// accepted.
pub(crate) fn ensure_parent(path: &Path) -> Result<(), Failure> {
    let dir = parent_of(path);
    if dir.is_dir() {
        return Ok(());
    }
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && fs::symlink_metadata(a).is_err())
        .collect();
    match DirBuilder::new().mode(0o700).recursive(true).create(dir) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(io_at("create directory", dir)(err)),
    }
    for created in missing {
        let parent = parent_of(created);
        sync_dir(parent).map_err(io_at("fsync", parent))?;
    }
    if dir.is_dir() {
        Ok(())
    } else {
        Err(Failure::Local(format!(
            "{} is not a directory",
            dir.display()
        )))
    }
}

/// The key of `path` in the in-process queue: its directory resolved through symlinks plus
/// its file name, so two spellings of one mailbox share a queue.
pub(crate) fn queue_key(path: &Path) -> PathBuf {
    match (fs::canonicalize(parent_of(path)), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    }
}

/// Flags for every open of a mailbox: never follow a symlink, never block on a FIFO.
const OPEN_FLAGS: i32 = libc::O_NOFOLLOW | libc::O_NONBLOCK;

/// Opens the mailbox `path` for reading and writing, creating it (0600, and its directory)
/// when missing. Refuses ([`Failure::Unusable`], `550 5.2.0`) a symlink, a non-regular file,
/// a file with a link count other than 1, and a file whose device/inode changed between
/// `lstat` and `open`.
pub(crate) fn open(path: &Path) -> Result<File, Failure> {
    for _ in 0..OPEN_TRIES {
        let before = match fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                ensure_parent(path)?;
                match OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(OPEN_FLAGS)
                    .open(path)
                {
                    Ok(file) => {
                        let dir = parent_of(path);
                        sync_dir(dir).map_err(io_at("fsync", dir))?;
                        return Ok(file);
                    }
                    Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(err) => return Err(io_at("create", path)(err)),
                }
            }
            Err(err) => return Err(io_at("stat", path)(err)),
        };
        check_meta(&before, path)?;
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(OPEN_FLAGS)
            .open(path)
        {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) if err.raw_os_error() == Some(libc::ELOOP) => {
                return Err(Failure::Unusable(format!(
                    "{} became a symlink while opening; refusing to deliver",
                    path.display()
                )))
            }
            Err(err) => return Err(io_at("open", path)(err)),
        };
        let after = file.metadata().map_err(io_at("fstat", path))?;
        if after.dev() != before.dev() || after.ino() != before.ino() {
            return Err(Failure::Unusable(format!(
                "{} was replaced between lstat and open; refusing to deliver",
                path.display()
            )));
        }
        check_meta(&after, path)?;
        return Ok(file);
    }
    Err(Failure::Local(format!(
        "{} keeps appearing and disappearing",
        path.display()
    )))
}

/// After locking: is `file` still the one at `path`? (A mail reader may have replaced the
/// mailbox by rename, or removed it, while we waited for the locks.)
pub(crate) fn still_current(file: &File, path: &Path) -> Result<bool, Failure> {
    let opened = file.metadata().map_err(io_at("fstat", path))?;
    let now = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(io_at("stat", path)(err)),
    };
    if opened.nlink() == 0 || opened.dev() != now.dev() || opened.ino() != now.ino() {
        return Ok(false);
    }
    check_meta(&opened, path)?;
    Ok(true)
}
