//! The `lmtpd` command: options (getopts) → configuration → checks → server, with
//! sysexits-style exit codes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use getopts::Options;
use lmtpd::config::{Config, Listen, DEFAULT_CONFIG};
use lmtpd::directory::Directory;
use lmtpd::server::{Context, Server};
use lmtpd_store::open::OpenErrorKind;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// sysexits(3) codes.
const EX_USAGE: u8 = 64;
const EX_DATAERR: u8 = 65;
const EX_NOUSER: u8 = 67;
const EX_UNAVAILABLE: u8 = 69;
const EX_OSERR: u8 = 71;
const EX_TEMPFAIL: u8 = 75;
const EX_CONFIG: u8 = 78;

/// The exit status for a store that cannot be opened: the configuration must change
/// (`EX_CONFIG`), a lock may be gone on the next try (`EX_TEMPFAIL`), or the system refused
/// (`EX_UNAVAILABLE`: permissions, an unwritable directory, an I/O error).
fn open_failure_status(kind: OpenErrorKind) -> u8 {
    match kind {
        OpenErrorKind::Refused => EX_CONFIG,
        OpenErrorKind::Busy => EX_TEMPFAIL,
        OpenErrorKind::Unavailable => EX_UNAVAILABLE,
    }
}

fn usage(opts: &Options) -> String {
    let brief = format!(
        "Usage: lmtpd [-c FILE] [-l ADDR]... [-t | -n] [-d]\n\
         \x20      lmtpd export --db FILE --mailbox ADDR [--folder F] (--mbox OUT | --eml-dir DIR)\n\
         \x20      lmtpd sieve check FILE... | lmtpd sieve test SCRIPT MESSAGE [options]\n\
         \x20      lmtpd quota (show | recalc) [-c FILE] ADDRESS\n\n\
         An LMTP (RFC 2033) delivery server for Maildir, mbox and SQLite mailboxes.\n\
         Without -c it reads {DEFAULT_CONFIG}. `lmtpd export` writes a SQLite mailbox\n\
         out as an mbox file or as one .eml file per message. `lmtpd sieve check`\n\
         compiles Sieve scripts; `lmtpd sieve test` shows what a script would do with a\n\
         message (`lmtpd sieve` for its options). `lmtpd quota show` prints a\n\
         recipient's quota limits and usage; `lmtpd quota recalc` recounts the usage\n\
         from the messages and rewrites the store's counters."
    );
    opts.usage(&brief)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("export") {
        return export(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some("sieve") {
        return sieve(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some("quota") {
        return quota(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some("account-helper") {
        // Started by lmtpd itself (accounts = passwd); standard input is its control socket.
        return lmtpd::helper::server::keeper_main();
    }
    let mut opts = Options::new();
    opts.optopt("c", "config", "configuration file", "FILE");
    opts.optmulti(
        "l",
        "listen",
        "add a listener: unix:PATH or IP:PORT",
        "ADDR",
    );
    opts.optflag(
        "t",
        "test",
        "check the configuration and users file, then exit",
    );
    opts.optopt(
        "a",
        "address",
        "with -t: show how ADDRESS resolves (user or account, store, path, quota)",
        "ADDRESS",
    );
    opts.optflag("n", "print", "print the effective settings, then exit");
    opts.optflag("d", "debug", "log at debug level");
    opts.optflag(
        "i",
        "inetd",
        "serve one session on standard input and output (inetd, mail.local -l style)",
    );
    opts.optflag("h", "help", "show this help");
    opts.optflag("V", "version", "show the version");
    let m = match opts.parse(&args[1..]) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("lmtpd: {e}\n{}", usage(&opts));
            return ExitCode::from(EX_USAGE);
        }
    };
    if m.opt_present("h") {
        print!("{}", usage(&opts));
        return ExitCode::SUCCESS;
    }
    if m.opt_present("V") {
        println!("lmtpd {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if !m.free.is_empty() {
        eprintln!(
            "lmtpd: unexpected argument '{}'\n{}",
            m.free[0],
            usage(&opts)
        );
        return ExitCode::from(EX_USAGE);
    }

    let path = PathBuf::from(m.opt_str("c").unwrap_or_else(|| DEFAULT_CONFIG.to_string()));
    let mut errors = Vec::new();
    let (mut config, config_errors) = Config::load_lenient(&path);
    errors.extend(config_errors.iter().map(ToString::to_string));
    for l in m.opt_strs("l") {
        match Listen::parse(&l) {
            Ok(l) => config.listeners.listen.push(l),
            Err(e) => errors.push(format!("-l {l}: {e}")),
        }
    }
    if m.opt_present("d") {
        config.logging.log_level = "debug".into();
    }
    let stdio = m.opt_present("i");
    if let Err(e) = config.validate(stdio) {
        errors.extend(e.iter().map(ToString::to_string));
    }
    let directory = match Directory::load(&config) {
        Ok(d) => Some(d),
        Err(e) => {
            errors.extend(e.iter().map(ToString::to_string));
            None
        }
    };

    if m.opt_present("n") {
        print!("{}", config.dump());
    }
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("lmtpd: {e}");
        }
        eprintln!("lmtpd: {} problem(s) found", errors.len());
        return ExitCode::from(EX_CONFIG);
    }
    let Some(directory) = directory else {
        return ExitCode::from(EX_CONFIG);
    };
    if let Some(address) = m.opt_str("a") {
        if !m.opt_present("t") {
            eprintln!("lmtpd: -a needs -t");
            return ExitCode::from(EX_USAGE);
        }
        return match lmtpd::doctor::explain(&config, &directory, &address) {
            Ok(lines) => {
                for l in lines {
                    println!("{l}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("{e}");
                ExitCode::from(EX_NOUSER)
            }
        };
    }
    if m.opt_present("t") {
        let mut problems = 0;
        for f in lmtpd::doctor::check(&config, &directory) {
            match f {
                lmtpd::doctor::Finding::Note(n) => println!("lmtpd: note: {n}"),
                lmtpd::doctor::Finding::Problem(p) => {
                    eprintln!("lmtpd: {p}");
                    problems += 1;
                }
            }
        }
        if problems > 0 {
            eprintln!("lmtpd: {problems} problem(s) found");
            return ExitCode::from(EX_CONFIG);
        }
        println!(
            "lmtpd: {} and {} are valid ({} users)",
            path.display(),
            config.recipients.users.display(),
            directory.len()
        );
        return ExitCode::SUCCESS;
    }
    if m.opt_present("n") {
        return ExitCode::SUCCESS;
    }

    // Mailboxes, spool files and folders are never readable by others.
    lmtpd::sys::set_umask(0o077);
    if stdio {
        // Under inetd, standard error may be the connection itself: log to syslog.
        config.logging.log = lmtpd::config::LogTarget::Syslog;
    }
    lmtpd::logging::init(&config);
    // A panic is a bug: log where it happened (the pool adds the connection id and closes
    // that session with 421 4.3.0), also when the log goes to syslog.
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        log::error!(
            "panic in thread {} at {}: {}",
            thread.name().unwrap_or("?"),
            info.location()
                .map_or_else(|| "?".to_string(), |l| l.to_string()),
            lmtpd::server::pool::panic_text(info.payload())
        );
    }));
    if !stdio {
        use lmtpd::server::limits;
        match limits::raise(config.process.workers) {
            Ok((old, new)) if new > old => log::info!(
                "descriptor limit (RLIMIT_NOFILE) raised from {old} to {new} for workers = {}",
                config.process.workers
            ),
            Ok((n, _)) => log::info!("descriptor limit (RLIMIT_NOFILE) {n}"),
            Err(e) => log::warn!("cannot read or raise RLIMIT_NOFILE: {e}"),
        }
        if let Some(w) = limits::check(config.process.workers) {
            log::warn!("{w}");
        }
    }

    // Catch SIGTERM/SIGINT/SIGHUP from here on: one that arrives while the stores open is
    // queued and handled once the server runs, instead of killing a half-started process.
    let signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot install signal handlers: {e}");
            return ExitCode::from(EX_OSERR);
        }
    };
    // Bind first (a port below 1024, a socket in a root-owned directory), then become the
    // mail user for good, and only then open the stores: a SQLite database, its WAL and
    // every mailbox are created by the user that will keep writing them.
    let (listeners, metrics) = if stdio {
        (Vec::new(), None)
    } else {
        match lmtpd::server::bind_listeners(&config)
            .and_then(|l| Ok((l, lmtpd::server::bind_metrics(&config)?)))
        {
            Ok(l) => l,
            Err(e) => {
                log::error!("{e}");
                return ExitCode::from(EX_OSERR);
            }
        }
    };
    // The account helper must start while lmtpd is still root: it is what delivers to each
    // system account as that account once the rest of lmtpd has dropped root.
    if config.accounts.passwd {
        if lmtpd::sys::euid() != 0 {
            log::error!(
                "accounts = passwd: lmtpd must start as root (its helper delivers as each account)"
            );
            return ExitCode::from(EX_CONFIG);
        }
        if let Err(e) = lmtpd::helper::client::start(&config) {
            log::error!("cannot start the account helper: {e}");
            return ExitCode::from(EX_OSERR);
        }
    }
    if let Err(e) = lmtpd::privileges::drop_if_root(&config) {
        log::error!("{e}");
        return ExitCode::from(EX_CONFIG);
    }
    let ctx = match Context::new(config, directory) {
        Ok(c) => c.with_config_path(path.clone()),
        Err(e) => {
            log::error!("{e}");
            return ExitCode::from(open_failure_status(e.kind()));
        }
    };
    if stdio {
        let ctx = Arc::new(ctx);
        if let Err(e) = handle_signals(signals, Arc::clone(&ctx)) {
            log::error!("cannot handle signals: {e}");
            return ExitCode::from(EX_OSERR);
        }
        return match lmtpd::server::serve_stdio(&ctx) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                log::error!("stdin session: {e}");
                ExitCode::from(EX_OSERR)
            }
        };
    }
    let server = match Server::new(ctx, listeners) {
        Ok(s) => s.with_metrics(metrics),
        Err(e) => {
            log::error!("{e}");
            return ExitCode::from(EX_OSERR);
        }
    };
    if let Err(e) = handle_signals(signals, server.context()) {
        log::error!("cannot install signal handlers: {e}");
        return ExitCode::from(EX_OSERR);
    }
    log::info!("lmtpd {} started", env!("CARGO_PKG_VERSION"));
    match server.run() {
        Ok(()) => {
            log::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(EX_OSERR)
        }
    }
}

/// SIGTERM/SIGINT: graceful shutdown. SIGHUP: re-read the configuration and users file.
fn handle_signals(
    mut signals: signal_hook::iterator::Signals,
    ctx: Arc<Context>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                match sig {
                    SIGHUP => ctx.reload(),
                    _ => {
                        log::info!("signal {sig}: shutting down");
                        ctx.shutdown.trigger();
                    }
                }
            }
        })?;
    Ok(())
}

/// `lmtpd sieve check FILE...` and `lmtpd sieve test SCRIPT MESSAGE [options]`.
fn sieve(args: &[String]) -> ExitCode {
    let brief = "Usage: lmtpd sieve check [-c CONFIG] FILE...\n       \
                 lmtpd sieve test [-c CONFIG] [--from A] [--to A] [--orcpt A] \
                 [--global-dir DIR] [--folder F]... [--now UNIXTIME] SCRIPT MESSAGE";
    let mut opts = Options::new();
    opts.optopt(
        "c",
        "config",
        "take the Sieve limits (and sieve_global_dir) from FILE",
        "FILE",
    );
    opts.optopt(
        "",
        "from",
        "envelope sender (default: none, the null sender)",
        "ADDR",
    );
    opts.optopt("", "to", "envelope recipient", "ADDR");
    opts.optopt("", "orcpt", "original recipient (DSN ORCPT)", "ADDR");
    opts.optopt(
        "",
        "global-dir",
        "directory of include :global scripts",
        "DIR",
    );
    opts.optmulti("", "folder", "a mailbox that exists (repeatable)", "F");
    opts.optopt(
        "",
        "now",
        "the time currentdate sees, in seconds since 1970",
        "SECS",
    );
    let (cmd, rest) = match args.split_first() {
        Some((c, rest)) if c == "check" || c == "test" => (c.as_str(), rest),
        _ => {
            eprintln!("lmtpd sieve: give check or test\n{}", opts.usage(brief));
            return ExitCode::from(EX_USAGE);
        }
    };
    let m = match opts.parse(rest) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("lmtpd sieve {cmd}: {e}\n{}", opts.usage(brief));
            return ExitCode::from(EX_USAGE);
        }
    };
    let sieve_cfg = match m.opt_str("c") {
        None => lmtpd::config::SieveSection::default(),
        Some(path) => {
            let (config, errors) = Config::load_lenient(std::path::Path::new(&path));
            if !errors.is_empty() {
                for e in &errors {
                    eprintln!("lmtpd: {e}");
                }
                return ExitCode::from(EX_CONFIG);
            }
            config.sieve
        }
    };
    let limits = sieve_cfg.limits();
    let code = if cmd == "check" {
        if m.free.is_empty() {
            eprintln!(
                "lmtpd sieve check: give at least one script\n{}",
                opts.usage(brief)
            );
            return ExitCode::from(EX_USAGE);
        }
        let paths: Vec<PathBuf> = m.free.iter().map(PathBuf::from).collect();
        lmtpd::sieve_tool::check(&paths, &limits)
    } else {
        let [script, message] = &m.free[..] else {
            eprintln!(
                "lmtpd sieve test: give SCRIPT and MESSAGE\n{}",
                opts.usage(brief)
            );
            return ExitCode::from(EX_USAGE);
        };
        let now = match m.opt_str("now").map(|n| n.parse::<i64>()) {
            None => None,
            Some(Ok(n)) => Some(n),
            Some(Err(_)) => {
                eprintln!("lmtpd sieve test: --now wants seconds since 1970");
                return ExitCode::from(EX_USAGE);
            }
        };
        lmtpd::sieve_tool::test(&lmtpd::sieve_tool::TestArgs {
            script: PathBuf::from(script),
            message: PathBuf::from(message),
            from: m.opt_str("from").unwrap_or_default(),
            to: m
                .opt_str("to")
                .unwrap_or_else(|| "recipient@localhost".into()),
            orcpt: m.opt_str("orcpt"),
            global_dir: m
                .opt_str("global-dir")
                .map(PathBuf::from)
                .or_else(|| m.opt_present("c").then(|| sieve_cfg.global_dir.clone())),
            folders: m.opt_strs("folder"),
            now,
            limits,
            redirect_from: sieve_cfg.redirect_from,
        })
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// `lmtpd quota (show | recalc) [-c FILE] ADDRESS`: the configuration and users file as the
/// server loads them, root dropped as the server drops it (so a rewritten `maildirsize` or
/// count cache belongs to the run user), then [`lmtpd::quota_cmd::run`].
fn quota(args: &[String]) -> ExitCode {
    use lmtpd::quota_cmd::{Action, QuotaError};
    let brief = "Usage: lmtpd quota (show | recalc) [-c FILE] ADDRESS";
    let mut opts = Options::new();
    opts.optopt("c", "config", "configuration file", "FILE");
    let Some((action, rest)) = args
        .split_first()
        .and_then(|(word, rest)| Action::parse(word).map(|a| (a, rest)))
    else {
        eprintln!("lmtpd quota: give show or recalc\n{}", opts.usage(brief));
        return ExitCode::from(EX_USAGE);
    };
    let m = match opts.parse(rest) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("lmtpd quota: {e}\n{}", opts.usage(brief));
            return ExitCode::from(EX_USAGE);
        }
    };
    let [address] = &m.free[..] else {
        eprintln!("lmtpd quota: give one ADDRESS\n{}", opts.usage(brief));
        return ExitCode::from(EX_USAGE);
    };
    let path = PathBuf::from(m.opt_str("c").unwrap_or_else(|| DEFAULT_CONFIG.to_string()));
    let (config, errors) = Config::load_lenient(&path);
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("lmtpd: {e}");
        }
        return ExitCode::from(EX_CONFIG);
    }
    let directory = match Directory::load(&config) {
        Ok(d) => d,
        Err(errors) => {
            for e in &errors {
                eprintln!("lmtpd: {e}");
            }
            return ExitCode::from(EX_CONFIG);
        }
    };
    lmtpd::sys::set_umask(0o077);
    if let Err(e) = lmtpd::privileges::drop_if_root(&config) {
        eprintln!("lmtpd quota: {e}");
        return ExitCode::from(EX_CONFIG);
    }
    match lmtpd::quota_cmd::run(&config, &directory, action, address) {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lmtpd quota: {e}");
            ExitCode::from(match &e {
                QuotaError::NoUser(_) => EX_NOUSER,
                QuotaError::Open(open) => open_failure_status(open.kind()),
                QuotaError::Store(_) if e.is_temporary() => EX_TEMPFAIL,
                QuotaError::Store(_) | QuotaError::Unsupported(_) => EX_UNAVAILABLE,
            })
        }
    }
}

/// `lmtpd export`: a SQLite or PostgreSQL mailbox out as mbox or .eml files.
fn export(args: &[String]) -> ExitCode {
    let mut opts = Options::new();
    opts.optopt("", "db", "the SQLite database", "FILE");
    opts.optopt(
        "",
        "postgres",
        "the PostgreSQL database (a connection string)",
        "CONNINFO",
    );
    opts.reqopt("", "mailbox", "the mailbox address", "ADDR");
    opts.optopt("", "folder", "only this folder (default: all)", "F");
    opts.optopt("", "mbox", "write one mbox file", "OUT");
    opts.optopt(
        "",
        "eml-dir",
        "write one .eml file per message into DIR",
        "DIR",
    );
    let brief =
        "Usage: lmtpd export (--db FILE | --postgres CONNINFO) --mailbox ADDR [--folder F] \
                 (--mbox OUT | --eml-dir DIR)";
    let m = match opts.parse(args) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("lmtpd export: {e}\n{}", opts.usage(brief));
            return ExitCode::from(EX_USAGE);
        }
    };
    let (format, out) = match (m.opt_str("mbox"), m.opt_str("eml-dir")) {
        (Some(f), None) => (lmtpd_store::export::ExportFormat::Mbox, f),
        (None, Some(d)) => (lmtpd_store::export::ExportFormat::Eml, d),
        _ => {
            eprintln!(
                "lmtpd export: give exactly one of --mbox and --eml-dir\n{}",
                opts.usage(brief)
            );
            return ExitCode::from(EX_USAGE);
        }
    };
    let mailbox = m.opt_str("mailbox").unwrap_or_default();
    let folder = m.opt_str("folder");
    let out_path = std::path::Path::new(&out);
    let result = match (m.opt_str("db"), m.opt_str("postgres")) {
        (Some(db), None) => export_sqlite(&db, &mailbox, folder.as_deref(), format, out_path),
        (None, Some(conninfo)) => {
            export_postgres(&conninfo, &mailbox, folder.as_deref(), format, out_path)
        }
        _ => {
            eprintln!(
                "lmtpd export: give exactly one of --db and --postgres\n{}",
                opts.usage(brief)
            );
            return ExitCode::from(EX_USAGE);
        }
    };
    match result {
        Ok(n) => {
            println!("lmtpd export: {n} message(s) written to {out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lmtpd export: {e}");
            ExitCode::from(EX_DATAERR)
        }
    }
}

#[cfg(feature = "sqlite")]
fn export_sqlite(
    db: &str,
    mailbox: &str,
    folder: Option<&str>,
    format: lmtpd_store::export::ExportFormat,
    out: &std::path::Path,
) -> Result<usize, String> {
    lmtpd_sqlite::export(&PathBuf::from(db), mailbox, folder, format, out)
}

#[cfg(not(feature = "sqlite"))]
fn export_sqlite(
    _db: &str,
    _mailbox: &str,
    _folder: Option<&str>,
    _format: lmtpd_store::export::ExportFormat,
    _out: &std::path::Path,
) -> Result<usize, String> {
    Err("this lmtpd was built without SQLite support".into())
}

#[cfg(feature = "postgres")]
fn export_postgres(
    conninfo: &str,
    mailbox: &str,
    folder: Option<&str>,
    format: lmtpd_store::export::ExportFormat,
    out: &std::path::Path,
) -> Result<usize, String> {
    lmtpd_postgres::export(conninfo, mailbox, folder, format, out)
}

#[cfg(not(feature = "postgres"))]
fn export_postgres(
    _conninfo: &str,
    _mailbox: &str,
    _folder: Option<&str>,
    _format: lmtpd_store::export::ExportFormat,
    _out: &std::path::Path,
) -> Result<usize, String> {
    Err("this lmtpd was built without PostgreSQL support".into())
}
