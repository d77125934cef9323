//! Listeners and the accept loop: the only user of mio. It watches every TCP and Unix
//! listener plus a shutdown waker, accepts with blocking std sockets, and hands each
//! connection to the worker pool (or answers `421 4.3.2` when the pool is full).

use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::conn::{Conn, Stream};
use super::pool::{Pool, Refused};
use super::Shutdown;
use crate::config::Listen;
use crate::metrics::RefuseReason;
use crate::proto::Reply;

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

    /// Accepts one connection as a blocking stream.
    pub fn accept(&self) -> io::Result<Conn> {
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

/// How long the accept loop waits before it tries again after `accept` failed for want of
/// descriptors (or memory), instead of spinning on a listener that stays readable.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Where the accept loop sends its connections.
pub struct Targets<'a> {
    /// The LMTP worker pool.
    pub pool: &'a Pool,
    /// The `/metrics` listener and the thread that answers it, if configured.
    pub metrics: Option<(&'a Listener, &'a crossbeam_channel::Sender<Conn>)>,
    /// Our host name, for `421` replies.
    pub hostname: &'a str,
}

/// One spare descriptor held in reserve: when `accept` fails with `EMFILE`, it is closed
/// so that the waiting client can be accepted and told `421 4.3.2` instead of hanging in
/// the backlog, then taken again.
struct Spare(Option<std::fs::File>);

impl Spare {
    fn new() -> Spare {
        Spare(std::fs::File::open("/dev/null").ok())
    }

    /// Frees the reserve, runs `f`, and takes the reserve again.
    fn with_released(&mut self, f: impl FnOnce()) {
        if self.0.take().is_some() {
            f();
        }
        *self = Spare::new();
    }
}

/// Logs refusals of a full pool: the first at once, then at most one line a second with
/// the count, so a burst of clients cannot flood the log.
#[derive(Default)]
struct Refusals {
    last: Option<Instant>,
    unlogged: u64,
}

impl Refusals {
    fn note(&mut self, conn: &Conn, sessions: usize) {
        self.unlogged += 1;
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.last = Some(Instant::now());
        log::warn!(
            "conn={} from {}: {sessions} sessions running (workers): refused with 421 4.3.2 \
             ({} refused since the last such line)",
            conn.id,
            conn.peer_text(),
            self.unlogged
        );
        self.unlogged = 0;
    }
}

/// True for the `accept` errors that mean "out of resources for now": descriptors, memory.
fn is_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Runs the accept loop until `shutdown` is triggered.
pub fn accept_loop(
    listeners: &[Listener],
    targets: &Targets<'_>,
    shutdown: &Arc<Shutdown>,
) -> io::Result<()> {
    let metrics_token = Token(listeners.len());
    let mut poll = Poll::new()?;
    for (i, l) in listeners.iter().enumerate() {
        poll.registry()
            .register(&mut SourceFd(&l.raw_fd()), Token(i), Interest::READABLE)?;
    }
    if let Some((l, _)) = targets.metrics {
        poll.registry().register(
            &mut SourceFd(&l.raw_fd()),
            metrics_token,
            Interest::READABLE,
        )?;
    }
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    shutdown.set_waker(Arc::clone(&waker));
    let mut events = Events::with_capacity(64);
    let mut spare = Spare::new();
    let mut backing_off = false;
    let mut last_warning: Option<Instant> = None;
    let mut ready: Vec<usize> = Vec::with_capacity(listeners.len() + 1);
    let mut refusals = Refusals::default();
    while !shutdown.is_triggered() {
        let wait = backing_off.then_some(ACCEPT_BACKOFF);
        if let Err(e) = poll.poll(&mut events, wait) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // Readiness is edge-triggered: after a backoff every listener is tried again,
        // since a connection left in a backlog raises no new event.
        ready.clear();
        if backing_off {
            ready.extend(0..=listeners.len());
        }
        ready.extend(events.iter().map(|ev| ev.token().0));
        ready.sort_unstable();
        ready.dedup();
        backing_off = false;
        for &i in &ready {
            let (l, is_metrics) = match listeners.get(i) {
                Some(l) => (l, false),
                None => match targets.metrics {
                    Some((l, _)) if i == metrics_token.0 => (l, true),
                    _ => continue,
                },
            };
            loop {
                match l.accept() {
                    Ok(conn) if is_metrics => {
                        if let Some((_, tx)) = targets.metrics {
                            // A scrape arriving while the last ones are still answered is
                            // dropped: Prometheus retries at its next interval.
                            let _ = tx.try_send(conn);
                        }
                    }
                    Ok(conn) => {
                        let m = crate::metrics::get();
                        m.connection(matches!(conn.stream, Stream::Unix(_)));
                        if let Err((mut conn, why)) = targets.pool.submit(conn) {
                            let reason = match why {
                                Refused::NoThread => RefuseReason::NoThread,
                                Refused::Full | Refused::Closed => RefuseReason::Busy,
                            };
                            m.refused(reason);
                            refusals.note(&conn, targets.pool.sessions());
                            conn.refuse(&Reply::too_many_connections(targets.hostname));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                    Err(e) => {
                        let m = crate::metrics::get();
                        m.accept_error();
                        let exhausted = is_exhaustion(&e);
                        if exhausted && !is_metrics {
                            // Every client waiting in the backlog is told now instead of
                            // hanging: each refused one frees its descriptor for the next.
                            spare.with_released(|| {
                                while let Ok(mut conn) = l.accept() {
                                    m.connection(matches!(conn.stream, Stream::Unix(_)));
                                    m.refused(RefuseReason::Descriptors);
                                    conn.refuse(&Reply::out_of_resources(targets.hostname));
                                }
                            });
                        }
                        if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                            last_warning = Some(Instant::now());
                            log::warn!(
                                "accept on {}: {e}; {}retrying every {} ms (logged at most once a second)",
                                l.local(),
                                if exhausted { "out of descriptors or memory: new clients get 421 4.3.2; " } else { "" },
                                ACCEPT_BACKOFF.as_millis()
                            );
                        }
                        backing_off = true;
                        break;
                    }
                }
            }
        }
    }
    Ok(())
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
        // sun_path holds 108 bytes with its NUL on Linux: a 107-byte path just fits, its
        // temporary name (a few bytes longer, however many digits the pid has) does not.
        let base = dir.path().as_os_str().len() + 1;
        let name = "s".repeat(107usize.saturating_sub(base).max(1));
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
