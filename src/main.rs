//! The `lmtpd` command: options (getopts) → configuration → checks → server, with
//! sysexits-style exit codes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use getopts::Options;
use lmtpd::config::{Config, Listen, DEFAULT_CONFIG};
use lmtpd::directory::Directory;
use lmtpd::server::{Context, Server};

/// sysexits(3) codes.
const EX_USAGE: u8 = 64;
const EX_OSERR: u8 = 71;
const EX_CONFIG: u8 = 78;

fn usage(opts: &Options) -> String {
    let brief = format!(
        "Usage: lmtpd [-c FILE] [-l ADDR]... [-t | -n] [-d]\n\n\
         An LMTP (RFC 2033) delivery server for Maildir mailboxes.\n\
         Without -c it reads {DEFAULT_CONFIG}."
    );
    opts.usage(&brief)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
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
    opts.optflag("n", "print", "print the effective settings, then exit");
    opts.optflag("d", "debug", "log at debug level");
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
    let mut config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            errors.extend(e);
            Config::default()
        }
    };
    for l in m.opt_strs("l") {
        match Listen::parse(&l) {
            Ok(l) => config.listen.push(l),
            Err(e) => errors.push(format!("-l {l}: {e}")),
        }
    }
    if m.opt_present("d") {
        config.log_level = "debug".into();
    }
    if let Err(e) = config.validate() {
        errors.extend(e);
    }
    let directory = match Directory::load(&config) {
        Ok(d) => Some(d),
        Err(e) => {
            errors.extend(e);
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
    if m.opt_present("t") {
        println!(
            "lmtpd: {} and {} are valid ({} users)",
            path.display(),
            config.users.display(),
            directory.len()
        );
        return ExitCode::SUCCESS;
    }
    if m.opt_present("n") {
        return ExitCode::SUCCESS;
    }

    env_logger::Builder::new()
        .parse_filters(&config.log_level)
        .parse_env("LMTPD_LOG")
        .format_timestamp_millis()
        .init();

    let server = match Server::bind(Context::new(config, directory)) {
        Ok(s) => s,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::from(EX_OSERR);
        }
    };
    if let Err(e) = install_signal_handlers(server.context()) {
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

/// SIGTERM/SIGINT: graceful shutdown. SIGHUP: re-read the users file.
fn install_signal_handlers(ctx: Arc<Context>) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                match sig {
                    SIGHUP => ctx.reload_users(),
                    _ => {
                        log::info!("signal {sig}: shutting down");
                        ctx.shutdown.trigger();
                    }
                }
            }
        })?;
    Ok(())
}
