//! Storing one copy: unique file in `tmp/`, stream + fsync, hard link into `new/` (or, for a
//! copy with flags, into `cur/` as `<name>:2,<flags>`), fsync that directory (shared with
//! concurrent deliveries), unlink the tmp file; on any failure nothing is left behind.
//!
//! On Linux the file is instead created without a name (`O_TMPFILE`) in the target
//! directory itself, written and fsync'd, and then given its name there with `linkat`: the
//! same guarantees (nothing is visible before it is complete and durable; a crash leaves
//! nothing, not even a `tmp/` entry) with one directory change per copy instead of three,
//! which is what concurrent deliveries into one mailbox wait for each other on. Filesystems
//! or kernels without it, and systems without `/proc/self/fd`, use `tmp/`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use lmtpd_store::{pump, Delivery, Flag, Message, PumpError, Target};

use crate::dirsync::DirSyncs;
use crate::error::{io_at, Failure};
use crate::layout::sync_dir;
use crate::name;

/// Copy buffer size: memory use does not grow with the message.
const BUF_SIZE: usize = 64 * 1024;
/// Attempts at a fresh name when one is taken (it never should be).
const NAME_TRIES: usize = 10;

/// Removes what a failed delivery left behind. Disarmed field by field as steps succeed.
#[derive(Default)]
struct Cleanup {
    tmp: Option<PathBuf>,
    new: Option<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(new) = self.new.take() {
            if let Err(err) = fs::remove_file(&new) {
                log::warn!("maildir: cannot remove {}: {err}", new.display());
            }
            if let Some(dir) = new.parent() {
                let _ = sync_dir(dir);
            }
        }
        if let Some(tmp) = self.tmp.take() {
            if let Err(err) = fs::remove_file(&tmp) {
                if err.kind() != io::ErrorKind::NotFound {
                    log::warn!("maildir: cannot remove {}: {err}", tmp.display());
                }
            }
        }
    }
}

/// Creates a fresh 0600 file in `tmp_dir` under a unique name, retrying on `EEXIST`.
fn create_tmp(tmp_dir: &Path, host: &str) -> Result<(String, PathBuf, File), Failure> {
    let mut last = None;
    for _ in 0..NAME_TRIES {
        let base = name::unique(host);
        let path = tmp_dir.join(&base);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(file) => return Ok((base, path, file)),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => last = Some(err),
            Err(err) => return Err(io_at("create", &path)(err)),
        }
    }
    Err(io_at("create unique file in", tmp_dir)(
        last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)),
    ))
}

/// A file without a name in `dir` (`O_TMPFILE`, mode 0600), or `None` when `unnamed` is
/// off or this system cannot make one there (then `tmp/` is used, and `unnamed` is cleared
/// so `O_TMPFILE` is not tried again).
#[cfg(target_os = "linux")]
fn create_unnamed(dir: &Path, unnamed: &AtomicBool) -> Result<Option<File>, Failure> {
    use std::sync::atomic::Ordering;
    if !unnamed.load(Ordering::Relaxed) {
        return Ok(None);
    }
    match OpenOptions::new()
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
    {
        Ok(file) => Ok(Some(file)),
        Err(err)
            if matches!(
                err.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
            ) =>
        {
            log::info!(
                "maildir: no O_TMPFILE in {} ({err}); copies go through tmp/",
                dir.display()
            );
            unnamed.store(false, Ordering::Relaxed);
            Ok(None)
        }
        Err(err) => Err(io_at("create", dir)(err)),
    }
}

#[cfg(not(target_os = "linux"))]
fn create_unnamed(_dir: &Path, _unnamed: &AtomicBool) -> Result<Option<File>, Failure> {
    Ok(None)
}

/// Streams `reader` into `file` through a fixed buffer; returns the bytes written.
fn copy(mut reader: impl Read, file: &mut File, path: &Path) -> Result<u64, Failure> {
    let mut buf = vec![0u8; BUF_SIZE];
    pump(&mut reader, &mut buf, |chunk| file.write_all(chunk)).map_err(|err| match err {
        PumpError::Read(err) => Failure::Io {
            what: "read message from spool".into(),
            err,
        },
        PumpError::Sink(err) => io_at("write", path)(err),
    })
}

/// Writes the copy (`d`'s trace for `target`, then the body) into `file`, checks that it is
/// exactly `size` bytes and fsyncs it; `at` names the file (or its directory) in errors.
fn write_copy(
    file: &mut File,
    at: &Path,
    msg: &Message<'_>,
    d: &Delivery<'_>,
    target: &Target,
    size: u64,
) -> Result<(), Failure> {
    let reader = d.reader_at(msg, target).map_err(|err| Failure::Io {
        what: "open message spool".into(),
        err,
    })?;
    let written = copy(reader, file, at)?;
    if written != size {
        return Err(Failure::Local(format!(
            "message copy is {written} bytes, expected {size}; not delivering"
        )));
    }
    file.sync_all().map_err(io_at("fsync", at))
}

/// Stores the copy `trace` + body of `msg` in the maildir `dir` (which must exist with
/// `tmp/`, `new/` and `cur/`). Without flags the copy goes to `new/`; with flags it goes to
/// `cur/` with the info `:2,<letters>` (Maildir flags are only valid in `cur/`). Returns the
/// path relative to `dir`, e.g. `new/<name>`. `host` is the escaped host name; `unnamed`
/// says whether to try `O_TMPFILE` (see the module documentation).
pub(crate) fn store_copy(
    dir: &Path,
    host: &str,
    syncs: &DirSyncs,
    unnamed: &AtomicBool,
    msg: &Message<'_>,
    d: &Delivery<'_>,
    target: &Target,
) -> Result<String, Failure> {
    let flags = target.flags;
    let tmp_dir = dir.join("tmp");
    let (sub, info) = if flags.is_empty() {
        ("new", String::new())
    } else {
        (
            "cur",
            format!(
                ":2,{}",
                flags.iter().map(Flag::maildir_letter).collect::<String>()
            ),
        )
    };
    let new_dir = dir.join(sub);
    let size = d.copy_size_at(msg, target);
    let crlf_size = size.saturating_add(d.copy_lines_at(msg, target));

    // Linux: written without a name in the target directory, named once durable.
    if let Some(mut file) = create_unnamed(&new_dir, unnamed)? {
        write_copy(&mut file, &new_dir, msg, d, target, size)?;
        let mut cleanup = Cleanup::default();
        let mut tries = 0;
        let named = loop {
            let new_name = format!("{},S={size},W={crlf_size}{info}", name::unique(host));
            let new_path = new_dir.join(&new_name);
            match crate::sys::link_unnamed(&file, &new_path) {
                Ok(()) => {
                    cleanup.new = Some(new_path);
                    break Some(new_name);
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists && tries < NAME_TRIES => {
                    tries += 1;
                }
                // No /proc/self/fd (a chroot without /proc), or a security policy that
                // forbids linking through it: this copy and the next go through tmp/
                // instead (where a real permission problem fails on its own); the unnamed
                // file vanishes when it is closed.
                Err(err)
                    if matches!(
                        err.raw_os_error(),
                        Some(libc::ENOENT | libc::EPERM | libc::EACCES)
                    ) && new_dir.is_dir() =>
                {
                    log::info!(
                        "maildir: cannot name an O_TMPFILE file ({err}); copies go through tmp/"
                    );
                    unnamed.store(false, std::sync::atomic::Ordering::Relaxed);
                    break None;
                }
                Err(err) => return Err(io_at("link into", &new_path)(err)),
            }
        };
        drop(file);
        if let Some(new_name) = named {
            syncs.sync(&new_dir).map_err(io_at("fsync", &new_dir))?;
            cleanup.new = None;
            return Ok(format!("{sub}/{new_name}"));
        }
    }

    let mut cleanup = Cleanup::default();
    let (mut base, tmp_path, mut file) = create_tmp(&tmp_dir, host)?;
    cleanup.tmp = Some(tmp_path.clone());

    write_copy(&mut file, &tmp_path, msg, d, target, size)?;
    drop(file);

    // link() never replaces an existing file; on the (unexpected) EEXIST pick a new name.
    let mut tries = 0;
    let (new_name, new_path) = loop {
        let new_name = format!("{base},S={size},W={crlf_size}{info}");
        let new_path = new_dir.join(&new_name);
        match fs::hard_link(&tmp_path, &new_path) {
            Ok(()) => break (new_name, new_path),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists && tries < NAME_TRIES => {
                tries += 1;
                base = name::unique(host);
            }
            Err(err) => return Err(io_at("link into", &new_path)(err)),
        }
    };
    cleanup.new = Some(new_path);
    // Shared with concurrent deliveries into the same directory: returns after an fsync of
    // it that began after our link.
    syncs.sync(&new_dir).map_err(io_at("fsync", &new_dir))?;
    fs::remove_file(&tmp_path).map_err(io_at("unlink", &tmp_path))?;
    cleanup.tmp = None;
    cleanup.new = None;
    Ok(format!("{sub}/{new_name}"))
}
