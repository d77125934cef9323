//! The server: binds the listeners, starts the worker pool, runs the accept loop, and shuts
//! down gracefully (stop accepting, idle sessions get `421 4.3.2`, running transactions get
//! until `shutdown_timeout`).

pub mod conn;
pub mod http;
pub mod limits;
pub mod listen;
pub mod pool;
pub mod tls;

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{Config, Listen};
use crate::deliver::Stores;
use crate::directory::Directory;
use crate::proto::SessionConfig;
pub use listen::Listener;
use lmtpd_store::open::OpenError;

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

/// The settings a SIGHUP can change, swapped as a whole: sessions pick up the current set
/// when they start (protocol limits) or when they need it (users, stores).
pub struct Live {
    /// The current configuration (restart-only keys keep their start-up values).
    pub config: Config,
    /// Protocol settings derived from it.
    pub session: SessionConfig,
    /// The mailbox backends.
    pub stores: Arc<Stores>,
    /// The users table.
    pub directory: Arc<Directory>,
    /// Compiled Sieve scripts (kept across reloads while the Sieve limits stay the same).
    pub scripts: Arc<crate::scripts::ScriptCache>,
    /// STARTTLS's configuration, when `tls_cert` and `tls_key` are set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The quota warning's text and sender.
    pub warning: crate::warning::Notice,
}

/// Everything a session needs, shared by all workers.
pub struct Context {
    /// The configuration lmtpd started with. Listeners, workers, privileges and logging come
    /// from here and change only with a restart; see [`Context::live`] for the rest.
    pub config: Config,
    /// The shutdown flag.
    pub shutdown: Arc<Shutdown>,
    /// Prefix of transaction ids (start time), so ids are unique across restarts.
    pub id_prefix: String,
    config_path: Option<PathBuf>,
    live: RwLock<Arc<Live>>,
    /// The retry journal (`retry_journal`), opened once at start-up.
    pub journal: Option<Arc<crate::journal::Journal>>,
}

/// Protocol settings from a configuration.
fn session_config(config: &Config) -> SessionConfig {
    SessionConfig {
        hostname: config.delivery.hostname.clone(),
        max_message_size: config.limits.max_message_size,
        max_recipients: config.limits.max_recipients,
        bare_newline: config.limits.bare_newline,
        ..SessionConfig::default()
    }
}

/// The keys whose new value needs a restart (sockets, threads, privileges, logging), by
/// name, when they differ between `boot` and `new`. Which keys those are is declared with
/// each key in [`crate::config::KEYS`].
pub fn restart_only_changes(boot: &Config, new: &Config) -> Vec<&'static str> {
    boot.restart_only_changes(new)
}

/// `new` with the restart-only keys set back to their `boot` values.
fn keep_restart_only(boot: &Config, new: Config) -> Config {
    boot.keep_restart_only(new)
}

impl Context {
    /// Builds the context from a configuration and a loaded users table, opening every
    /// store the users are routed to; fails with the kind of failure when one cannot be
    /// opened.
    pub fn new(config: Config, directory: Directory) -> Result<Context, OpenError> {
        let tls = tls::server_config(&config.tls)
            .map_err(|e| OpenError::new(lmtpd_store::open::OpenErrorKind::Refused, e))?;
        let stores = Stores::open(&config, &directory, None)?;
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let live = Live {
            session: session_config(&config),
            config: config.clone(),
            stores: Arc::new(stores),
            directory: Arc::new(directory),
            scripts: crate::scripts::ScriptCache::for_limits(None, config.sieve.limits()),
            tls,
            warning: crate::warning::Notice::of(&config),
        };
        Ok(Context {
            journal: crate::journal::open_configured(&config).map(Arc::new),
            config,
            shutdown: Arc::new(Shutdown::default()),
            id_prefix: format!("{secs:X}"),
            config_path: None,
            live: RwLock::new(Arc::new(live)),
        })
    }

    /// Remembers the configuration file, so that SIGHUP re-reads it too (not only the
    /// users file).
    pub fn with_config_path(mut self, path: PathBuf) -> Context {
        self.config_path = Some(path);
        self
    }

    /// The current reloadable settings.
    pub fn live(&self) -> Arc<Live> {
        match self.live.read() {
            Ok(l) => Arc::clone(&l),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The current users table.
    pub fn directory(&self) -> Arc<Directory> {
        Arc::clone(&self.live().directory)
    }

    /// SIGHUP: re-reads the configuration file (when known) and the users file, and swaps
    /// them in without dropping connections. Changed keys that need a restart are logged
    /// and keep their old values. On any error everything stays as it was and the problems
    /// are logged.
    pub fn reload(&self) {
        let old = self.live();
        let config = match &self.config_path {
            Some(path) => {
                let (new, errors) = Config::load_lenient(path);
                if !errors.is_empty() {
                    for e in errors {
                        log::error!("{e}");
                    }
                    log::error!(
                        "{} not reloaded; keeping the previous settings and users table",
                        path.display()
                    );
                    crate::metrics::get().reload(false);
                    return;
                }
                let restart = restart_only_changes(&self.config, &new);
                if !restart.is_empty() {
                    log::warn!(
                        "changed settings that need a restart are ignored until then: {}",
                        restart.join(", ")
                    );
                }
                keep_restart_only(&self.config, new)
            }
            None => old.config.clone(),
        };
        let directory = match Directory::load(&config) {
            Ok(d) => d,
            Err(errors) => {
                for e in errors {
                    log::error!("{e}");
                }
                log::error!("users file not reloaded; keeping the previous table and settings");
                crate::metrics::get().reload(false);
                return;
            }
        };
        // A certificate that cannot be read now (a key readable by root only, read at
        // start-up before privileges were dropped) keeps the one in use; the rest reloads.
        let tls = match tls::server_config(&config.tls) {
            Ok(t) => t,
            Err(e) => {
                log::warn!("{e}; keeping the TLS certificate in use");
                old.tls.clone()
            }
        };
        let stores = match Stores::open(&config, &directory, Some((&old.config, &old.stores))) {
            Ok(s) => s,
            Err(e) => {
                log::error!("{e}");
                log::error!("not reloaded: a store cannot be opened; keeping the previous table and settings");
                crate::metrics::get().reload(false);
                return;
            }
        };
        let (added, removed, changed) = old.directory.diff(&directory);
        let n = directory.len();
        let settings_changed = config != old.config;
        if let Ok(level) = config.logging.log_level.parse::<log::LevelFilter>() {
            log::set_max_level(level);
        }
        let scripts =
            crate::scripts::ScriptCache::for_limits(Some(&old.scripts), config.sieve.limits());
        let live = Live {
            session: session_config(&config),
            warning: crate::warning::Notice::of(&config),
            config,
            stores: Arc::new(stores),
            directory: Arc::new(directory),
            scripts,
            tls,
        };
        let users = live.config.recipients.users.display().to_string();
        match self.live.write() {
            Ok(mut slot) => *slot = Arc::new(live),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(live),
        }
        crate::metrics::get().reload(true);
        log::info!(
            "reloaded {users}: {n} users ({added} added, {removed} removed, {changed} changed){}",
            if settings_changed {
                "; settings changed"
            } else {
                ""
            }
        );
    }
}

/// Resolves `socket_owner` / `socket_group` to ids.
fn socket_perms(cfg: &Config) -> io::Result<listen::SocketPerms> {
    let uid = match cfg.listeners.socket_owner.as_str() {
        "" => None,
        name => Some(
            crate::sys::lookup_user(name)?
                .ok_or_else(|| io::Error::other(format!("socket_owner: no user '{name}'")))?
                .uid,
        ),
    };
    let gid = match cfg.listeners.socket_group.as_str() {
        "" => None,
        name => Some(
            crate::sys::lookup_group(name)?
                .ok_or_else(|| io::Error::other(format!("socket_group: no group '{name}'")))?,
        ),
    };
    Ok(listen::SocketPerms {
        mode: cfg.listeners.socket_mode,
        uid,
        gid,
    })
}

/// Binds the configured listeners, or takes the ones inherited through socket activation
/// (`LISTEN_FDS`). Runs first, as root when started as root: Unix sockets get their owner,
/// group and mode here.
pub fn bind_listeners(config: &Config) -> io::Result<Vec<Listener>> {
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
        return Ok(listeners);
    }
    let perms = socket_perms(config)?;
    for spec in &config.listeners.listen {
        let l = Listener::bind(spec, &perms)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {spec}: {e}")))?;
        listeners.push(l);
    }
    Ok(listeners)
}

/// Binds the `metrics` listener, if one is configured (before dropping root, like the
/// LMTP listeners; a Unix socket gets the same mode and owner).
pub fn bind_metrics(config: &Config) -> io::Result<Option<Listener>> {
    let Some(spec) = &config.listeners.metrics else {
        return Ok(None);
    };
    let perms = socket_perms(config)?;
    Listener::bind(spec, &perms)
        .map(Some)
        .map_err(|e| io::Error::new(e.kind(), format!("metrics: cannot listen on {spec}: {e}")))
}

/// A bound server, ready to run.
pub struct Server {
    ctx: Arc<Context>,
    listeners: Vec<Listener>,
    metrics: Option<Listener>,
}

impl Server {
    /// Binds every configured listener and builds the server (see [`bind_listeners`] and
    /// [`Server::new`] for the two steps separately, with a privilege drop between them).
    pub fn bind(ctx: Context) -> io::Result<Server> {
        let listeners = bind_listeners(&ctx.config)?;
        let metrics = bind_metrics(&ctx.config)?;
        Ok(Server::new(ctx, listeners)?.with_metrics(metrics))
    }

    /// Serves `GET /metrics` on `listener` too (see [`bind_metrics`]).
    pub fn with_metrics(mut self, listener: Option<Listener>) -> Server {
        self.metrics = listener;
        self
    }

    /// Builds the server from a context and bound listeners: creates the spool directory
    /// (a warning, not an error, when it cannot) and sweeps stale spool files.
    pub fn new(ctx: Context, listeners: Vec<Listener>) -> io::Result<Server> {
        let spool = ctx.live().config.delivery.spool_dir.clone();
        if let Err(e) = std::fs::create_dir_all(&spool) {
            // Only messages over the in-memory bound need it; those get 451 until fixed.
            log::warn!(
                "spool_dir {}: {e}: messages over 128 KiB will be deferred (lmtpd -t checks it)",
                spool.display()
            );
        }
        match crate::spool::sweep(&spool, Duration::from_secs(3600)) {
            Ok(0) => {}
            Ok(n) => log::info!("removed {n} stale spool files"),
            Err(e) => log::warn!("cannot sweep {}: {e}", spool.display()),
        }
        Ok(Server {
            ctx: Arc::new(ctx),
            listeners,
            metrics: None,
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
            ctx.config.process.workers,
            Arc::new(move |c: &mut conn::Conn| conn::serve(&handler_ctx, c)),
        )?;
        for l in &self.listeners {
            log::info!("listening on {}", l.local());
        }
        // Scrapes are answered one at a time on a thread of their own, never by the LMTP
        // workers: a busy server still shows what it does.
        let (metrics_tx, metrics_rx) = crossbeam_channel::bounded::<conn::Conn>(4);
        let scraper = match &self.metrics {
            Some(l) => {
                log::info!("metrics on {} (GET /metrics)", l.local());
                Some(
                    std::thread::Builder::new()
                        .name("metrics".into())
                        .stack_size(pool::STACK_SIZE)
                        .spawn(move || {
                            for mut c in metrics_rx.iter() {
                                http::serve_metrics(&mut c);
                            }
                        })?,
                )
            }
            None => None,
        };
        let targets = listen::Targets {
            pool: &pool,
            metrics: self.metrics.as_ref().map(|l| (l, &metrics_tx)),
            hostname: &ctx.config.delivery.hostname,
        };
        let r = listen::accept_loop(&self.listeners, &targets, &ctx.shutdown);
        drop(metrics_tx);
        drop(self.listeners);
        drop(self.metrics);
        log::info!(
            "shutting down: {} sessions running, waiting up to {:?}",
            pool.sessions(),
            ctx.config.process.shutdown_timeout
        );
        if !pool.finish(ctx.config.process.shutdown_timeout) {
            log::warn!("shutdown deadline passed with sessions still running");
        }
        if let Some(t) = scraper {
            let _ = t.join();
        }
        r
    }
}

/// Serves one session on standard input and output (`lmtpd -i`), then returns.
pub fn serve_stdio(ctx: &Context) -> io::Result<()> {
    std::fs::create_dir_all(&ctx.config.delivery.spool_dir)?;
    let stream = conn::Stream::stdio()?;
    let mut conn = conn::Conn::new(stream, None);
    conn::serve(ctx, &mut conn);
    conn.close();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_keys_are_reported_and_kept() {
        let boot = Config::default();
        let mut new = Config::default();
        new.process.workers = boot.process.workers + 1;
        new.process.user = "vmail".into();
        new.limits.max_recipients = 7;
        new.limits.timeout = std::time::Duration::from_secs(9);
        new.listeners
            .listen
            .push(Listen::Tcp("127.0.0.1:2424".parse().expect("addr")));
        assert_eq!(
            restart_only_changes(&boot, &new),
            vec!["listen", "user", "workers"]
        );
        let kept = keep_restart_only(&boot, new);
        assert_eq!(kept.process.workers, boot.process.workers);
        assert!(kept.listeners.listen.is_empty());
        assert!(kept.process.user.is_empty());
        // Reloadable keys take their new values.
        assert_eq!(kept.limits.max_recipients, 7);
        assert_eq!(kept.limits.timeout, std::time::Duration::from_secs(9));
    }
}
