//! The few libc calls std does not wrap: POSIX record locks (`fcntl(F_SETLK)`) and
//! `flock(2)`. Every other system call in this crate goes through safe std APIs.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;

/// Outcome of one non-blocking lock attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// The lock is ours now.
    Locked,
    /// Someone else holds a conflicting lock; try again later.
    Busy,
}

/// Sets (`F_WRLCK`) or clears (`F_UNLCK`) a POSIX record lock on the whole file, without
/// waiting.
fn setlk(file: &File, kind: libc::c_short) -> io::Result<Attempt> {
    // SAFETY: `libc::flock` is a plain C struct for which all-zero bytes are a valid value;
    // every field the kernel reads is then set explicitly.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0; // to the end of the file, however far it grows
    loop {
        // SAFETY: the descriptor belongs to `file`, which outlives the call, and `fl` is a
        // valid, initialised `struct flock` that fcntl only reads for F_SETLK.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &fl) };
        if rc != -1 {
            return Ok(Attempt::Locked);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(code) if code == libc::EACCES || code == libc::EAGAIN => return Ok(Attempt::Busy),
            _ => return Err(err),
        }
    }
}

/// Tries to take an exclusive POSIX record lock (`fcntl(F_SETLK, F_WRLCK)`) on the whole
/// file. Note the POSIX semantics: the lock belongs to the process and is dropped when any
/// descriptor of the file in this process is closed.
pub(crate) fn fcntl_try_lock(file: &File) -> io::Result<Attempt> {
    setlk(file, libc::F_WRLCK as libc::c_short)
}

/// Releases the POSIX record lock taken with [`fcntl_try_lock`].
pub(crate) fn fcntl_unlock(file: &File) -> io::Result<()> {
    setlk(file, libc::F_UNLCK as libc::c_short).map(|_| ())
}

/// Calls `flock(fd, op)`, retrying on EINTR; `EWOULDBLOCK` becomes [`Attempt::Busy`].
fn flock(file: &File, op: libc::c_int) -> io::Result<Attempt> {
    loop {
        // SAFETY: the descriptor belongs to `file`, which outlives the call; flock takes no
        // pointers.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(Attempt::Locked);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(code) if code == libc::EWOULDBLOCK => return Ok(Attempt::Busy),
            _ => return Err(err),
        }
    }
}

/// Tries to take an exclusive `flock(LOCK_EX|LOCK_NB)` on the open file.
pub(crate) fn flock_try_lock(file: &File) -> io::Result<Attempt> {
    flock(file, libc::LOCK_EX | libc::LOCK_NB)
}

/// Releases the lock taken with [`flock_try_lock`].
pub(crate) fn flock_unlock(file: &File) -> io::Result<()> {
    flock(file, libc::LOCK_UN).map(|_| ())
}

/// True unless `pid` certainly names no process on this host (`kill(pid, 0)` fails with
/// ESRCH). Used to break a dotlock left by a killed process, as liblockfile does.
pub(crate) fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return true;
    };
    if pid <= 0 {
        return true;
    }
    // SAFETY: signal 0 performs only the existence and permission checks; no signal is
    // delivered and no memory is involved.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}
