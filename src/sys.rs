//! The few POSIX calls std does not offer (user and group lookup, dropping privileges,
//! umask, socket activation descriptors, polling stdin). This is the only module of the
//! root crate allowed `unsafe`; each block says why it is sound.
//!
//! Why not `rustix` or `nix` (weighed in issue 13): rustix, already locked through tempfile,
//! covers only the easy half (geteuid, umask, getrlimit/setrlimit, poll, getsockname). It
//! has no passwd/group lookup or initgroups (out of its scope by design), and its
//! `set_thread_uid`/`set_thread_gid` change only the calling thread on Linux, unlike libc's
//! process-wide setuid/setgid: privileges dropped that way would stay with the other
//! threads. nix covers all of it, but is a new dependency tree with frequent breaking 0.x
//! releases, to replace about 150 lines that are small, annotated and tested as root
//! (tests/it/ops.rs). Moving only the rustix half would leave two ways of calling the
//! system in one module and the `unsafe` allowance anyway. So the wrappers stay; revisit if
//! this module grows beyond thin calls.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

/// A user account from the password database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory, as the password database has it.
    pub home: std::path::PathBuf,
}

/// The effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Looks up a user by name (or numeric uid). `Ok(None)` when there is no such user.
pub fn lookup_user(name: &str) -> io::Result<Option<Account>> {
    let cname = CString::new(name).map_err(|_| io::Error::other("user name contains NUL"))?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // SAFETY: passwd is plain old data; all-zero is a valid (empty) value that
        // getpwnam_r overwrites.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the duration of the call and `buf` is
        // writable for `buf.len()` bytes, as getpwnam_r requires.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pw,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if result.is_null() {
            return Ok(None);
        }
        // SAFETY: on success pw_name points to a NUL-terminated string inside `buf`.
        let login = unsafe { CStr::from_ptr(pw.pw_name) }
            .to_string_lossy()
            .into_owned();
        let home = if pw.pw_dir.is_null() {
            std::path::PathBuf::new()
        } else {
            // SAFETY: a non-null pw_dir points to a NUL-terminated string inside `buf`.
            let bytes = unsafe { CStr::from_ptr(pw.pw_dir) }.to_bytes();
            std::path::PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
        };
        return Ok(Some(Account {
            name: login,
            uid: pw.pw_uid,
            gid: pw.pw_gid,
            home,
        }));
    }
}

/// Looks up a group id by name. `Ok(None)` when there is no such group.
pub fn lookup_group(name: &str) -> io::Result<Option<u32>> {
    let cname = CString::new(name).map_err(|_| io::Error::other("group name contains NUL"))?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // SAFETY: group is plain old data; getgrnam_r overwrites it.
        let mut gr: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: as in lookup_user: valid pointers, writable buffer of the given length.
        let rc = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut gr,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        return Ok(if result.is_null() {
            None
        } else {
            Some(gr.gr_gid)
        });
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Drops root for good: supplementary groups of `user` (plus `gid`), then `gid`, then
/// `user.uid`, and verifies that root cannot be regained.
pub fn drop_privileges(user: &Account, gid: u32) -> io::Result<()> {
    let cname =
        CString::new(user.name.as_str()).map_err(|_| io::Error::other("name contains NUL"))?;
    // SAFETY: cname is a valid C string; initgroups only reads it. The gid type differs
    // by platform (gid_t on Linux, int on the BSDs), hence the `as _`.
    check(unsafe { libc::initgroups(cname.as_ptr(), gid as _) })?;
    // SAFETY: plain system calls with integer arguments.
    check(unsafe { libc::setgid(gid) })?;
    // SAFETY: as above.
    check(unsafe { libc::setuid(user.uid) })?;
    // SAFETY: getters without preconditions.
    let (ruid, euid, rgid, egid) = unsafe {
        (
            libc::getuid(),
            libc::geteuid(),
            libc::getgid(),
            libc::getegid(),
        )
    };
    if ruid != user.uid || euid != user.uid || rgid != gid || egid != gid {
        return Err(io::Error::other("uid/gid did not change as asked"));
    }
    if user.uid != 0 {
        // SAFETY: a plain system call; it must fail now.
        if unsafe { libc::setuid(0) } == 0 {
            return Err(io::Error::other("root privileges could be regained"));
        }
    }
    Ok(())
}

/// Becomes `uid` with primary group `gid` and exactly the supplementary `groups`, for good,
/// and verifies that root cannot be regained (the account helper's delivery child).
pub fn become_account(uid: u32, gid: u32, groups: &[u32]) -> io::Result<()> {
    if uid == 0 {
        return Err(io::Error::other("refusing to deliver as root"));
    }
    let list: Vec<libc::gid_t> = groups.iter().map(|&g| g as libc::gid_t).collect();
    // SAFETY: `list` is a valid array of `list.len()` gids for the duration of the call.
    // The length type differs by platform (size_t on Linux, int on the BSDs).
    check(unsafe { libc::setgroups(list.len() as _, list.as_ptr()) })?;
    // SAFETY: plain system calls with integer arguments.
    check(unsafe { libc::setgid(gid) })?;
    // SAFETY: as above.
    check(unsafe { libc::setuid(uid) })?;
    // SAFETY: getters without preconditions.
    let (ruid, euid, rgid, egid) = unsafe {
        (
            libc::getuid(),
            libc::geteuid(),
            libc::getgid(),
            libc::getegid(),
        )
    };
    if ruid != uid || euid != uid || rgid != gid || egid != gid {
        return Err(io::Error::other("uid/gid did not change as asked"));
    }
    // SAFETY: plain system calls; each must fail now.
    if unsafe { libc::setuid(0) } == 0 || unsafe { libc::seteuid(0) } == 0 {
        return Err(io::Error::other("root privileges could be regained"));
    }
    Ok(())
}

/// The most descriptors one message of the account helper's protocol carries.
pub const MAX_PASSED_FDS: usize = 2;

/// Sends `data` on the Unix stream socket `sock` with `fds` attached (SCM_RIGHTS). Returns
/// the number of bytes sent; the descriptors travel with the first byte.
pub fn send_with_fds(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    if fds.len() > MAX_PASSED_FDS || data.is_empty() {
        return Err(io::Error::other("bad descriptor message"));
    }
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let payload = std::mem::size_of_val(raw.as_slice());
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(payload as u32) } as usize;
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut control = vec![0u64; space.div_ceil(8).max(1)];
    // SAFETY: msghdr is plain old data; all-zero is valid and every field used is set.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !raw.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points to `space` writable, aligned bytes, enough for one
        // header with `payload` bytes of data, so CMSG_FIRSTHDR is non-null and CMSG_DATA
        // has room for the descriptors.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(payload as u32) as _;
            std::ptr::copy_nonoverlapping(
                raw.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(cmsg),
                payload,
            );
        }
    }
    loop {
        // SAFETY: msg and everything it points to are valid for the call.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, 0) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receives up to `buf.len()` bytes from the Unix stream socket `sock`, with the descriptors
/// attached to them (at most [`MAX_PASSED_FDS`]; more are closed and refused). Every
/// received descriptor is close-on-exec. `Ok((0, []))` at end of stream.
pub fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let payload = MAX_PASSED_FDS * std::mem::size_of::<RawFd>();
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(payload as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: msghdr is plain old data; all-zero is valid and every field used is set.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    #[cfg(any(
        target_os = "linux",
        target_os = "freebsd",
        target_os = "openbsd",
        target_os = "netbsd"
    ))]
    let flags = libc::MSG_CMSG_CLOEXEC;
    #[cfg(not(any(
        target_os = "linux",
        target_os = "freebsd",
        target_os = "openbsd",
        target_os = "netbsd"
    )))]
    let flags = 0;
    let n = loop {
        // SAFETY: msg points to valid, writable buffers of the stated sizes.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, flags) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: the kernel filled msg_control with msg_controllen bytes of cmsghdrs; the
    // CMSG_* macros walk exactly those. Each SCM_RIGHTS descriptor is new and ours to own.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let len = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 || fds.len() > MAX_PASSED_FDS {
        return Err(io::Error::other("too many descriptors passed"));
    }
    Ok((n, fds))
}

/// What `fork` returned in this process.
pub enum Forked {
    /// This is the child.
    Child,
    /// This is the parent; the child's pid.
    Parent(u32),
}

/// fork(2). Only for a single-threaded process (the account helper): a child of a
/// multi-threaded one could find a lock held by a thread that no longer exists.
pub fn fork() -> io::Result<Forked> {
    // SAFETY: the caller is single-threaded (documented above), so the child's copy of
    // the address space is consistent.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as u32)),
    }
}

/// How a child process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// exit(code).
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

/// Waits for child `pid` (`None`: any child). With `block == false`, returns `Ok(None)`
/// when no such child has ended yet (or there is no child at all).
pub fn wait_child(pid: Option<u32>, block: bool) -> io::Result<Option<(u32, Exit)>> {
    let target = pid.map_or(-1, |p| p as libc::pid_t);
    let mut status = 0;
    loop {
        // SAFETY: status is a valid int to write to.
        let rc =
            unsafe { libc::waitpid(target, &mut status, if block { 0 } else { libc::WNOHANG }) };
        if rc > 0 {
            let exit = if libc::WIFSIGNALED(status) {
                Exit::Signal(libc::WTERMSIG(status))
            } else {
                Exit::Code(libc::WEXITSTATUS(status))
            };
            return Ok(Some((rc as u32, exit)));
        }
        if rc == 0 {
            return Ok(None);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ECHILD) => return Ok(None),
            _ => return Err(e),
        }
    }
}

/// Points standard input at `/dev/null` (the keeper, once it holds its own descriptor of the
/// control socket it was given as standard input: no child may inherit that socket).
pub fn stdin_to_dev_null() -> io::Result<()> {
    let null = std::fs::File::open("/dev/null")?;
    // SAFETY: dup2 takes two integers; `null` stays open for the call and fd 0 is
    // replaced atomically.
    if unsafe { libc::dup2(null.as_raw_fd(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Ends this process at once with `code`, without running destructors or atexit handlers
/// (a forked child must not flush buffers it inherited from its parent).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Sends SIGKILL to process `pid` (a child of ours that must not finish what it started).
pub fn kill_process(pid: u32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets the file mode creation mask and returns the old one.
pub fn set_umask(mask: u32) -> u32 {
    // SAFETY: umask cannot fail; the cast fits mode_t on every platform we build for.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

/// The local time zone's offset from UTC at Unix time `t`, in minutes (localtime_r's
/// `tm_gmtoff`, so TZ and /etc/localtime apply as for every program); 0 when unknown.
pub fn local_offset_minutes(t: i64) -> i32 {
    // time_t is i64 on the targets we build for; a 32-bit one saturates.
    #[allow(clippy::useless_conversion, irrefutable_let_patterns)]
    let t = libc::time_t::try_from(t).unwrap_or(libc::time_t::MAX);
    // SAFETY: tm is plain data, fully written by localtime_r on success; both pointers are
    // valid for the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if ok {
        i32::try_from(tm.tm_gmtoff / 60).unwrap_or(0)
    } else {
        0
    }
}

/// What a socket-activation descriptor is.
#[derive(Debug)]
pub enum Inherited {
    /// An AF_INET or AF_INET6 stream listener.
    Tcp(OwnedFd),
    /// An AF_UNIX stream listener.
    Unix(OwnedFd),
}

/// The listening sockets passed by systemd socket activation (`LISTEN_PID` equal to our
/// pid, `LISTEN_FDS` = n, descriptors 3 .. 3+n). Empty when not socket-activated. The
/// variables are removed so children do not see them.
pub fn listen_fds() -> io::Result<Vec<Inherited>> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let n: RawFd = match std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        Some(n) if pid_ok && n > 0 && n < 1000 => n,
        _ => return Ok(Vec::new()),
    };
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    let mut out = Vec::new();
    for fd in 3..3 + n {
        // SAFETY: socket activation hands us descriptors 3..3+n, owned by this process and
        // used nowhere else; wrapping each once transfers that ownership.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_storage is plain old data large enough for any address.
        let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: fd is open; ss and len are valid for writing.
        let rc = unsafe {
            libc::getsockname(
                fd,
                (&mut ss as *mut libc::sockaddr_storage).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::other(format!(
                "inherited descriptor {fd} is not a socket: {}",
                io::Error::last_os_error()
            )));
        }
        match i32::from(ss.ss_family) {
            libc::AF_UNIX => out.push(Inherited::Unix(owned)),
            libc::AF_INET | libc::AF_INET6 => out.push(Inherited::Tcp(owned)),
            other => {
                return Err(io::Error::other(format!(
                    "inherited descriptor {fd} has unsupported address family {other}"
                )))
            }
        }
    }
    Ok(out)
}

/// The soft and hard `RLIMIT_NOFILE` (`u64::MAX` for unlimited).
pub fn nofile_limit() -> io::Result<(u64, u64)> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: rl is a valid rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // rlim_t is u64 on Linux but i64 on FreeBSD: the cast is needed there.
    #[allow(clippy::unnecessary_cast)]
    let conv = |v: libc::rlim_t| {
        if v == libc::RLIM_INFINITY {
            u64::MAX
        } else {
            v as u64
        }
    };
    Ok((conv(rl.rlim_cur), conv(rl.rlim_max)))
}

/// Sets the soft `RLIMIT_NOFILE` to `soft` (at most the hard limit), keeping the hard one.
pub fn set_nofile_soft(soft: u64) -> io::Result<()> {
    let (_, hard) = nofile_limit()?;
    let soft = soft.min(hard);
    #[allow(clippy::unnecessary_cast)]
    let to_rlim = |v: u64| {
        if v == u64::MAX {
            libc::RLIM_INFINITY
        } else {
            v as libc::rlim_t
        }
    };
    let rl = libc::rlimit {
        rlim_cur: to_rlim(soft),
        rlim_max: to_rlim(hard),
    };
    // SAFETY: rl is a valid, initialised rlimit; setrlimit only reads it.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until `fd` is readable (or at EOF/hang-up), up to `timeout`. Returns false on
/// timeout. Used for the stdin session of `lmtpd -i`, where std offers no read timeout.
pub fn wait_readable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    loop {
        // SAFETY: pfd is a valid array of one pollfd for the duration of the call.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(rc > 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_its_group_exist() {
        let root = lookup_user("root").expect("lookup").expect("root exists");
        assert_eq!(root.uid, 0);
        assert!(lookup_user("no-such-user-lmtpd").expect("lookup").is_none());
        let g = lookup_group(if cfg!(target_os = "linux") {
            "root"
        } else {
            "wheel"
        })
        .expect("lookup");
        assert_eq!(g, Some(0));
        assert!(lookup_group("no-such-group-lmtpd")
            .expect("lookup")
            .is_none());
    }

    #[test]
    fn umask_round_trips() {
        let old = set_umask(0o077);
        assert_eq!(set_umask(old), 0o077);
    }

    #[test]
    fn no_socket_activation_without_matching_pid() {
        // LISTEN_PID of another process must be ignored.
        std::env::set_var("LISTEN_PID", "1");
        std::env::set_var("LISTEN_FDS", "2");
        assert!(listen_fds().expect("ok").is_empty());
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
    }
}
