//! The on-disk Maildir layout: creating and checking `tmp/new/cur`, Maildir++ folders for
//! `+detail`, and sweeping stale `tmp/` entries.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{io_at, Failure};
use lmtpd_store::Folder;

/// The three subdirectories of every maildir and folder.
pub(crate) const SUBDIRS: [&str; 3] = ["tmp", "new", "cur"];

/// Checks that `path` is a real directory (not a symlink, not a file).
/// `Ok(false)` when it does not exist.
pub(crate) fn check_dir(path: &Path) -> Result<bool, Failure> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(Failure::Local(format!(
            "{} is a symlink; refusing to deliver",
            path.display()
        ))),
        Ok(meta) if !meta.is_dir() => Err(Failure::Local(format!(
            "{} is not a directory; refusing to deliver",
            path.display()
        ))),
        Ok(_) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(io_at("stat", path)(err)),
    }
}

/// fsyncs a directory so new entries in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Creates `path` with mode 0700 (parents too when `parents`), tolerating a concurrent
/// creator, then checks it is a real directory.
fn make_dir(path: &Path, parents: bool) -> Result<(), Failure> {
    if check_dir(path)? {
        return Ok(());
    }
    // The directories about to be created (path and missing ancestors), so their entries
    // can be made durable: a 250 must not depend on a directory a crash could forget.
    let missing: Vec<&Path> = path
        .ancestors()
        .take(if parents { usize::MAX } else { 1 })
        .take_while(|a| !a.as_os_str().is_empty() && fs::symlink_metadata(a).is_err())
        .collect();
    let mut builder = DirBuilder::new();
    builder.mode(0o700).recursive(parents);
    match builder.create(path) {
        Ok(()) => {
            for dir in missing {
                let parent = match dir.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                sync_dir(parent).map_err(io_at("fsync", parent))?;
            }
        }
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(io_at("create directory", path)(err)),
    }
    if check_dir(path)? {
        Ok(())
    } else {
        Err(Failure::Local(format!(
            "{} vanished after creation",
            path.display()
        )))
    }
}

/// Makes sure `dir` is a usable maildir: the directory itself and `tmp/`, `new/`, `cur/`,
/// each mode 0700 when created and none of them a symlink.
pub(crate) fn ensure_maildir(dir: &Path, parents: bool) -> Result<(), Failure> {
    make_dir(dir, parents)?;
    for sub in SUBDIRS {
        make_dir(&dir.join(sub), false)?;
    }
    Ok(())
}

/// Why a `+detail` may not name a folder, or `Ok` when it may: the shared rules, and no
/// trailing dot (an empty Maildir++ hierarchy level).
pub(crate) fn check_detail(detail: &str) -> Result<(), &'static str> {
    lmtpd_store::template::check_detail(detail)?;
    if detail.ends_with('.') {
        Err("ends with '.'")
    } else {
        Ok(())
    }
}

/// Finds the folder directory named `want` (`.<detail>`) under `root`, or one whose name
/// differs only in ASCII case. Does not check what it found.
/// Does the Maildir++ folder `name` (levels separated by `.`) exist under `root`, found the
/// way delivery finds it? A name delivery would refuse does not.
pub(crate) fn folder_exists(root: &Path, name: &str) -> Result<bool, Failure> {
    if check_detail(name).is_err() {
        return Ok(false);
    }
    Ok(find_folder(root, &format!(".{}", imap_utf7(name)))?.is_some_and(|p| p.is_dir()))
}

/// A folder name as Maildir++ keeps it on disk: IMAP's modified UTF-7 (RFC 3501 §5.1.3), as
/// Dovecot and Courier read it. Printable ASCII stays as it is except `&`, which becomes
/// `&-`; every run of other characters becomes `&` + modified base64 of its UTF-16 + `-`.
pub(crate) fn imap_utf7(name: &str) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";
    let mut out = String::with_capacity(name.len());
    let mut run: Vec<u16> = Vec::new();
    let flush = |run: &mut Vec<u16>, out: &mut String| {
        if run.is_empty() {
            return;
        }
        out.push('&');
        let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            let sextets = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
            for s in &sextets[..chunk.len() + 1] {
                out.push(char::from(B64[*s as usize]));
            }
        }
        out.push('-');
        run.clear();
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut run, &mut out);
            out.push(c);
            if c == '&' {
                out.push('-');
            }
        } else {
            let mut buf = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut run, &mut out);
    out
}

fn find_folder(root: &Path, want: &str) -> Result<Option<PathBuf>, Failure> {
    let exact = root.join(want);
    match fs::symlink_metadata(&exact) {
        Ok(_) => return Ok(Some(exact)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(io_at("stat", &exact)(err)),
    }
    let entries = fs::read_dir(root).map_err(io_at("read directory", root))?;
    let mut found: Option<PathBuf> = None;
    for entry in entries {
        let entry = entry.map_err(io_at("read directory", root))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.eq_ignore_ascii_case(want) {
            // Deterministic choice when several variants exist: the smallest name.
            let path = entry.path();
            match &found {
                Some(f) if *f <= path => {}
                _ => found = Some(path),
            }
        }
    }
    Ok(found)
}

/// Creates the empty `maildirfolder` marker in `folder` unless it exists already.
fn mark_folder(folder: &Path) -> Result<(), Failure> {
    let marker = folder.join("maildirfolder");
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&marker)
    {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(io_at("create", &marker)(err)),
    }
}

/// Picks the maildir a copy goes into: `root` (INBOX) or the Maildir++ folder `.<name>`
/// (created when missing if the target says so, else INBOX when missing). The root must
/// already be a checked maildir.
pub(crate) fn resolve_target(root: &Path, folder: &Folder, user: &str) -> Result<PathBuf, Failure> {
    let (detail, create) = match folder {
        Folder::Inbox => return Ok(root.to_path_buf()),
        Folder::Named { name, create } => (name.as_str(), *create),
    };
    if let Err(why) = check_detail(detail) {
        log::warn!("maildir: {user}: folder {detail:?} {why}; delivering to INBOX");
        return Ok(root.to_path_buf());
    }
    let want = format!(".{}", imap_utf7(detail));
    match find_folder(root, &want)? {
        Some(folder) => {
            ensure_maildir(&folder, false)?;
            if create {
                mark_folder(&folder)?;
            }
            Ok(folder)
        }
        None if create => {
            let folder = root.join(want);
            ensure_maildir(&folder, false)?;
            mark_folder(&folder)?;
            log::info!("maildir: {user}: created folder {}", folder.display());
            Ok(folder)
        }
        None => {
            log::info!("maildir: {user}: folder {detail} does not exist; delivering to INBOX");
            Ok(root.to_path_buf())
        }
    }
}

/// Removes entries of `maildir/tmp/` whose modification time is more than `max_age` ago and
/// returns how many were removed. Directories and `dovecot*` names are left alone; a missing
/// `tmp/` counts as empty; a `tmp/` that is a symlink or not a directory is an error.
pub fn sweep_tmp(maildir: &Path, max_age: Duration) -> io::Result<usize> {
    let tmp = maildir.join("tmp");
    match fs::symlink_metadata(&tmp) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(io::Error::other(format!(
                "{} is a symlink or not a directory",
                tmp.display()
            )))
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(err) => return Err(err),
    }
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in fs::read_dir(&tmp)? {
        let Ok(entry) = entry else { continue };
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with("dovecot"))
        {
            continue;
        }
        // DirEntry::metadata does not follow symlinks.
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            continue;
        }
        let old = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > max_age);
        if !old {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => log::warn!(
                "maildir: cannot remove stale {}: {err}",
                entry.path().display()
            ),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod utf7_tests {
    use super::imap_utf7;

    #[test]
    fn rfc3501_5_1_3_modified_utf7_folder_names() {
        // The RFC's own example.
        assert_eq!(
            imap_utf7("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(imap_utf7("Lists.rust"), "Lists.rust");
        assert_eq!(imap_utf7("A&B"), "A&-B");
        assert_eq!(imap_utf7("Überweisungen"), "&ANw-berweisungen");
        // A character outside the BMP is a surrogate pair.
        assert_eq!(imap_utf7("😀"), "&2D3eAA-");
    }
}
