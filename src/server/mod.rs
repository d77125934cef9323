//! The server: binds the listeners, starts the worker pool, runs the accept loop, and shuts
//! down gracefully (stop accepting, idle sessions get `421 4.3.2`, running transactions get
//! until `shutdown_timeout`).

pub mod conn;
pub mod listen;
pub mod pool;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{Config, Listen};
use crate::deliver::Stores;
use crate::directory::Directory;
use crate::proto::SessionConfig;
use listen::Listener;

/// A shutdown request that the accept loop and every session can see.
#[derive(Default)]
pub struct Shutdown {
    flag: AtomicBool,
    waker: Mutex<Option<Arc<mio::Waker>>>,
}

impl Shutdown {
    /// Asks the server to stop (safe to call from any thread, any number of times).
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Ok(w) = self.waker.lock() {
            if let Some(w) = w.as_ref() {
                let _ = w.wake();
            }
        }
    }

    /// True once a shutdown was requested.
    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    fn set_waker(&self, w: Arc<mio::Waker>) {
        if let Ok(mut slot) = self.waker.lock() {
            *slot = Some(w);
        }
        // A trigger that raced with start-up must still wake the loop.
        if self.is_triggered() {
            self.trigger();
        }
    }
}

/// Everything a session needs, shared by all workers.
pub struct Context {
    /// The effective configuration.
    pub config: Config,
    /// Protocol settings derived from it.
    pub session: SessionConfig,
    /// The mailbox backends.
    pub stores: Stores,
    /// The shutdown flag.
    pub shutdown: Arc<Shutdown>,
    /// Prefix of transaction ids (start time), so ids are unique across restarts.
    pub id_prefix: String,
    directory: RwLock<Arc<Directory>>,
}

impl Context {
    /// Builds the context from a configuration and a loaded users table, opening every
    /// store the users are routed to.
    pub fn new(config: Config, directory: Directory) -> Result<Context, String> {
        let session = SessionConfig {
            hostname: config.hostname.clone(),
            max_message_size: config.max_message_size,
            max_recipients: config.max_recipients,
            bare_newline: config.bare_newline,
            ..SessionConfig::default()
        };
        let stores = Stores::open(&config, &directory)?;
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Ok(Context {
            session,
            stores,
            shutdown: Arc::new(Shutdown::default()),
            id_prefix: format!("{secs:X}"),
            directory: RwLock::new(Arc::new(directory)),
            config,
        })
    }

    /// The current users table.
    pub fn directory(&self) -> Arc<Directory> {
        match self.directory.read() {
            Ok(d) => Arc::clone(&d),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Re-reads the users file (SIGHUP). On error the old table stays and the problems are
    /// logged.
    pub fn reload_users(&self) {
        match Directory::load(&self.config) {
            Ok(d) if !self.stores.serves(&self.config, &d) => log::error!(
                "users file not reloaded: it routes users to a store that is not open \
                 (restart lmtpd to open it); keeping the previous table"
            ),
            Ok(d) => {
                let old = self.directory();
                let (added, removed, changed) = old.diff(&d);
                let n = d.len();
                match self.directory.write() {
                    Ok(mut slot) => *slot = Arc::new(d),
                    Err(poisoned) => *poisoned.into_inner() = Arc::new(d),
                }
                log::info!(
                    "reloaded {}: {n} users ({added} added, {removed} removed, {changed} changed)",
                    self.config.users.display()
                );
            }
            Err(errors) => {
                for e in errors {
                    log::error!("{e}");
                }
                log::error!("users file not reloaded; keeping the previous table");
            }
        }
    }
}

/// Resolves `socket_owner` / `socket_group` to ids.
fn socket_perms(cfg: &Config) -> io::Result<listen::SocketPerms> {
    let uid = match cfg.socket_owner.as_str() {
        "" => None,
        name => Some(
            crate::sys::lookup_user(name)?
                .ok_or_else(|| io::Error::other(format!("socket_owner: no user '{name}'")))?
                .uid,
        ),
    };
    let gid = match cfg.socket_group.as_str() {
        "" => None,
        name => Some(
            crate::sys::lookup_group(name)?
                .ok_or_else(|| io::Error::other(format!("socket_group: no group '{name}'")))?,
        ),
    };
    Ok(listen::SocketPerms {
        mode: cfg.socket_mode,
        uid,
        gid,
    })
}

/// A bound server, ready to run.
pub struct Server {
    ctx: Arc<Context>,
    listeners: Vec<Listener>,
}

impl Server {
    /// Binds every configured listener. Sweeps stale spool files first.
    pub fn bind(ctx: Context) -> io::Result<Server> {
        std::fs::create_dir_all(&ctx.config.spool_dir)?;
        match crate::spool::sweep(&ctx.config.spool_dir, Duration::from_secs(3600)) {
            Ok(0) => {}
            Ok(n) => log::info!("removed {n} stale spool files"),
            Err(e) => log::warn!("cannot sweep {}: {e}", ctx.config.spool_dir.display()),
        }
        let mut listeners = Vec::new();
        let inherited = crate::sys::listen_fds()?;
        if !inherited.is_empty() {
            log::info!(
                "socket activation: {} inherited listener(s); 'listen' is ignored",
                inherited.len()
            );
            for fd in inherited {
                listeners.push(Listener::inherited(fd)?);
            }
        } else {
            let perms = socket_perms(&ctx.config)?;
            for spec in &ctx.config.listen {
                let l = Listener::bind(spec, &perms).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot listen on {spec}: {e}"))
                })?;
                listeners.push(l);
            }
        }
        Ok(Server {
            ctx: Arc::new(ctx),
            listeners,
        })
    }

    /// The addresses actually bound (useful with port 0).
    pub fn local_addrs(&self) -> Vec<Listen> {
        self.listeners.iter().map(Listener::local).collect()
    }

    /// The shared context (for signal handlers: shutdown and reload).
    pub fn context(&self) -> Arc<Context> {
        Arc::clone(&self.ctx)
    }

    /// Serves until shutdown is triggered, then waits up to `shutdown_timeout` for running
    /// sessions. Listeners (and Unix socket files) are closed before returning.
    pub fn run(self) -> io::Result<()> {
        let ctx = Arc::clone(&self.ctx);
        let handler_ctx = Arc::clone(&self.ctx);
        let pool = pool::Pool::start(
            ctx.config.workers,
            ctx.config.queue,
            Arc::new(move |c| conn::serve(&handler_ctx, c)),
        )?;
        for l in &self.listeners {
            log::info!("listening on {}", l.local());
        }
        let r = listen::accept_loop(&self.listeners, &pool, &ctx.shutdown, &ctx.config.hostname);
        drop(self.listeners);
        log::info!(
            "shutting down: {} sessions running, waiting up to {:?}",
            pool.busy(),
            ctx.config.shutdown_timeout
        );
        if !pool.finish(ctx.config.shutdown_timeout) {
            log::warn!("shutdown deadline passed with sessions still running");
        }
        r
    }
}

/// Serves one session on standard input and output (`lmtpd -i`), then returns.
pub fn serve_stdio(ctx: &Context) -> io::Result<()> {
    std::fs::create_dir_all(&ctx.config.spool_dir)?;
    let stream = conn::Stream::stdio()?;
    conn::serve(ctx, conn::Conn::new(stream, None));
    Ok(())
}
