//! Log set-up: env_logger on stderr, or a small RFC 3164 syslog writer on the local syslog
//! socket (`/dev/log`, or `/var/run/log` on FreeBSD), the BSD convention.

use std::os::unix::net::UnixDatagram;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::config::{Config, LogTarget};

/// Numeric syslog facility for a name, or `None` for an unknown name.
pub fn facility_code(name: &str) -> Option<u8> {
    Some(match name {
        "kern" => 0,
        "user" => 1,
        "mail" => 2,
        "daemon" => 3,
        "auth" => 4,
        "local0" => 16,
        "local1" => 17,
        "local2" => 18,
        "local3" => 19,
        "local4" => 20,
        "local5" => 21,
        "local6" => 22,
        "local7" => 23,
        _ => return None,
    })
}

fn severity(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Formats one syslog datagram: `<PRI>lmtpd[pid]: message`, without control characters.
pub fn syslog_line(facility: u8, level: Level, pid: u32, msg: &str) -> String {
    let pri = u16::from(facility) * 8 + u16::from(severity(level));
    let clean: String = msg
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("<{pri}>lmtpd[{pid}]: {clean}")
}

struct Syslog {
    sock: Mutex<Option<UnixDatagram>>,
    facility: u8,
    level: LevelFilter,
}

const SYSLOG_PATHS: [&str; 2] = ["/dev/log", "/var/run/log"];

fn connect() -> Option<UnixDatagram> {
    let s = UnixDatagram::unbound().ok()?;
    SYSLOG_PATHS
        .iter()
        .any(|p| s.connect(p).is_ok())
        .then_some(s)
}

impl Log for Syslog {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= self.level
    }
    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let line = syslog_line(
            self.facility,
            r.level(),
            std::process::id(),
            &r.args().to_string(),
        );
        let Ok(mut guard) = self.sock.lock() else {
            return;
        };
        if guard.is_none() {
            *guard = connect();
        }
        let sent = guard
            .as_ref()
            .is_some_and(|s| s.send(line.as_bytes()).is_ok());
        if !sent {
            // syslogd restarted: reconnect once, else fall back to stderr.
            *guard = connect();
            if guard
                .as_ref()
                .is_none_or(|s| s.send(line.as_bytes()).is_err())
            {
                eprintln!("{line}");
            }
        }
    }
    fn flush(&self) {}
}

/// Installs the logger the configuration asks for. `LMTPD_LOG` overrides the level filter
/// (env_logger syntax) on stderr.
pub fn init(cfg: &Config) {
    let level: LevelFilter = cfg.logging.log_level.parse().unwrap_or(LevelFilter::Info);
    match cfg.logging.log {
        LogTarget::Stderr => {
            env_logger::Builder::new()
                .parse_filters(&cfg.logging.log_level)
                .parse_env("LMTPD_LOG")
                .format_timestamp_millis()
                .init();
        }
        LogTarget::Syslog => {
            let logger = Syslog {
                sock: Mutex::new(connect()),
                facility: facility_code(&cfg.logging.syslog_facility).unwrap_or(2),
                level,
            };
            if log::set_boxed_logger(Box::new(logger)).is_ok() {
                log::set_max_level(level);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_lines_carry_priority_and_no_controls() {
        assert_eq!(
            syslog_line(2, Level::Info, 42, "delivered\nX"),
            "<22>lmtpd[42]: delivered X"
        );
        assert_eq!(syslog_line(16, Level::Error, 1, "e"), "<131>lmtpd[1]: e");
        assert_eq!(facility_code("mail"), Some(2));
        assert_eq!(facility_code("nope"), None);
    }

    #[test]
    fn datagrams_reach_a_syslog_socket() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("log");
        let server = UnixDatagram::bind(&path).expect("bind");
        let client = UnixDatagram::unbound().expect("sock");
        client.connect(&path).expect("connect");
        let logger = Syslog {
            sock: Mutex::new(Some(client)),
            facility: 2,
            level: LevelFilter::Info,
        };
        logger.log(
            &Record::builder()
                .level(Level::Warn)
                .args(format_args!("hello"))
                .build(),
        );
        let mut buf = [0u8; 128];
        let n = server.recv(&mut buf).expect("recv");
        let got = String::from_utf8_lossy(&buf[..n]);
        assert!(got.starts_with("<20>lmtpd["), "{got}");
        assert!(got.ends_with("]: hello"), "{got}");
    }
}
