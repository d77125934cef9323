//! Listeners and the accept loop: the only user of mio. It watches every TCP and Unix
//! listener plus a shutdown waker, accepts with blocking std sockets, and hands each
//! connection to the worker pool (or answers `421 4.3.2` when the pool is full).

use std::io::{self, Write};
use std::net::{Shutdown as NetShutdown, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::conn::{Conn, Stream};
use super::pool::Pool;
use super::Shutdown;
use crate::config::Listen;

const WAKER: Token = Token(usize::MAX);

/// A bound listening socket.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// Unix-domain socket and its path (removed again at shutdown).
    Unix(UnixListener, PathBuf),
    /// Unix-domain socket inherited from the service manager.
    Activated(UnixListener),
}

/// Mode and ownership for created Unix sockets.
#[derive(Clone, Copy, Debug)]
pub struct SocketPerms {
    /// Permission bits.
    pub mode: u32,
    /// New owner, if any.
    pub uid: Option<u32>,
    /// New group, if any.
    pub gid: Option<u32>,
}

impl Listener {
    /// Binds one configured listener. A Unix socket path left by a dead process is
    /// replaced; one that still answers, or a path that is not a socket, is an error. A
    /// Unix socket gets `perms` (mode, then owner and group when given).
    pub fn bind(spec: &Listen, perms: &SocketPerms) -> io::Result<Listener> {
        let l = match spec {
            Listen::Tcp(addr) => Listener::Tcp(TcpListener::bind(addr)?),
            Listen::Unix(path) => {
                remove_stale_socket(path)?;
                Listener::Unix(bind_unix(path, perms)?, path.clone())
            }
        };
        l.set_nonblocking()?;
        Ok(l)
    }

    /// Wraps a listener inherited through socket activation. Its socket file (if any)
    /// belongs to the service manager and is not removed at exit.
    pub fn inherited(fd: crate::sys::Inherited) -> io::Result<Listener> {
        let l = match fd {
            crate::sys::Inherited::Tcp(fd) => Listener::Tcp(TcpListener::from(fd)),
            crate::sys::Inherited::Unix(fd) => Listener::Activated(UnixListener::from(fd)),
        };
        l.set_nonblocking()?;
        Ok(l)
    }

    fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Listener::Tcp(t) => t.set_nonblocking(true),
            Listener::Unix(u, _) | Listener::Activated(u) => u.set_nonblocking(true),
        }
    }

    /// What this listener is bound to (with the real port when 0 was asked for).
    pub fn local(&self) -> Listen {
        match self {
            Listener::Tcp(t) => match t.local_addr() {
                Ok(a) => Listen::Tcp(a),
                Err(_) => Listen::Unix(PathBuf::from("?")),
            },
            Listener::Unix(_, p) => Listen::Unix(p.clone()),
            Listener::Activated(u) => Listen::Unix(
                u.local_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(Path::to_path_buf))
                    .unwrap_or_else(|| PathBuf::from("(inherited)")),
            ),
        }
    }

    fn accept(&self) -> io::Result<Conn> {
        match self {
            Listener::Tcp(t) => {
                let (s, peer) = t.accept()?;
                s.set_nonblocking(false)?;
                let _ = s.set_nodelay(true);
                Ok(Conn::new(Stream::Tcp(s), Some(peer.ip())))
            }
            Listener::Unix(u, _) | Listener::Activated(u) => {
                let (s, _) = u.accept()?;
                s.set_nonblocking(false)?;
                Ok(Conn::new(Stream::Unix(s), None))
            }
        }
    }

    fn raw_fd(&self) -> i32 {
        match self {
            Listener::Tcp(t) => t.as_raw_fd(),
            Listener::Unix(u, _) | Listener::Activated(u) => u.as_raw_fd(),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Binds a Unix socket that appears at `path` only once it is listening and has its final
/// mode and owner: bound under a temporary name next to it, then hard-linked into place
/// (which, unlike rename, never replaces a socket another server just created). A client
/// that sees the path can connect, and never meets a socket with looser permissions.
fn bind_unix(path: &Path, perms: &SocketPerms) -> io::Result<UnixListener> {
    let finish = |at: &Path| -> io::Result<()> {
        if perms.uid.is_some() || perms.gid.is_some() {
            std::os::unix::fs::chown(at, perms.uid, perms.gid)?;
        }
        std::fs::set_permissions(at, std::fs::Permissions::from_mode(perms.mode))
    };
    let tmp = temp_sibling(path);
    let _ = std::fs::remove_file(&tmp);
    let listener = match UnixListener::bind(&tmp) {
        Ok(l) => l,
        // The longer temporary name may not fit in sun_path: bind in place instead.
        Err(_) => {
            let l = UnixListener::bind(path)?;
            finish(path)?;
            return Ok(l);
        }
    };
    let placed = finish(&tmp).and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    placed.map(|()| listener)
}

/// `<dir>/.<name>.<pid>`: the temporary name a Unix socket is bound under.
fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}", std::process::id()))
}

fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} is in use by a running server", path.display()),
        )),
        Err(_) => std::fs::remove_file(path),
    }
}

/// Runs the accept loop until `shutdown` is triggered.
pub fn accept_loop(
    listeners: &[Listener],
    pool: &Pool,
    shutdown: &Arc<Shutdown>,
    hostname: &str,
) -> io::Result<()> {
    let mut poll = Poll::new()?;
    for (i, l) in listeners.iter().enumerate() {
        poll.registry()
            .register(&mut SourceFd(&l.raw_fd()), Token(i), Interest::READABLE)?;
    }
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    shutdown.set_waker(Arc::clone(&waker));
    let mut events = Events::with_capacity(64);
    while !shutdown.is_triggered() {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in events.iter() {
            let Some(l) = listeners.get(ev.token().0) else {
                continue;
            };
            loop {
                match l.accept() {
                    Ok(conn) => {
                        if let Err(conn) = pool.submit(conn) {
                            refuse_busy(conn, hostname);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // EMFILE and friends: log, and let poll wake us again.
                        log::warn!("accept on {}: {e}", l.local());
                        std::thread::sleep(Duration::from_millis(10));
                        break;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Every worker is busy and the queue is full: say so at once instead of hanging.
fn refuse_busy(mut conn: Conn, hostname: &str) {
    log::warn!(
        "all workers busy: refusing connection from {}",
        conn.peer_text()
    );
    let _ = conn.stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = conn.stream.write_all(
        format!("421 4.3.2 {hostname} Too many connections, try again later\r\n").as_bytes(),
    );
    conn.stream.shutdown(NetShutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    const PERMS: SocketPerms = SocketPerms {
        mode: 0o660,
        uid: None,
        gid: None,
    };

    #[test]
    fn a_unix_socket_appears_listening_with_its_mode_and_no_temporary_left() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("lmtp.sock");
        let l = Listener::bind(&Listen::Unix(path.clone()), &PERMS).expect("bind");
        let meta = std::fs::symlink_metadata(&path).expect("socket");
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        assert!(UnixStream::connect(&path).is_ok(), "listening");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["lmtp.sock"], "no temporary name left");
        // A second server on the same path is refused, and the first keeps its socket.
        let err = Listener::bind(&Listen::Unix(path.clone()), &PERMS).map(drop);
        assert_eq!(err.map_err(|e| e.kind()), Err(io::ErrorKind::AddrInUse));
        assert!(UnixStream::connect(&path).is_ok());
        drop(l);
        assert!(!path.exists(), "removed at exit");
    }

    #[test]
    fn a_path_too_long_for_the_temporary_name_is_bound_in_place() {
        let dir = tempfile::tempdir().expect("tmp");
        // sun_path holds 108 bytes with its NUL on Linux: a 102-byte path fits, its
        // temporary name (3 + pid digits longer) does not.
        let base = dir.path().as_os_str().len() + 1;
        let name = "s".repeat(102usize.saturating_sub(base).max(1));
        let path = dir.path().join(name);
        if cfg!(target_os = "linux") {
            assert!(path.as_os_str().len() < 108);
            assert!(temp_sibling(&path).as_os_str().len() >= 108);
        }
        let l = Listener::bind(&Listen::Unix(path.clone()), &PERMS).expect("bind in place");
        assert!(UnixStream::connect(&path).is_ok());
        assert_eq!(
            std::fs::metadata(&path)
                .expect("socket")
                .permissions()
                .mode()
                & 0o777,
            0o660
        );
        drop(l);
    }
}
