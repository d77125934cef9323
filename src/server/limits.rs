//! The descriptor limit (`RLIMIT_NOFILE`) that `workers` sessions need: how many that is,
//! raising the soft limit toward the hard one at start, and the warning `lmtpd -t` gives.

/// Descriptors the server holds besides its sessions: listeners, the poll and waker, the
/// spare kept for refusing clients when descriptors run out, the SQLite writer and read
/// pool (three each), log and standard streams.
pub const BASE_DESCRIPTORS: u64 = 160;
/// Descriptors one session may hold while it delivers: its socket, a spool file, and a
/// mailbox file with its lock or directory (more for short moments with parallel Maildir
/// copies).
pub const PER_SESSION: u64 = 4;

/// The soft `RLIMIT_NOFILE` that `workers` sessions need.
pub fn needed(workers: usize) -> u64 {
    BASE_DESCRIPTORS + PER_SESSION * workers as u64
}

/// Raises the soft `RLIMIT_NOFILE` toward the hard limit, as far as `workers` needs (never
/// lowers it). Returns the soft limit before and after, for the log.
pub fn raise(workers: usize) -> std::io::Result<(u64, u64)> {
    let (soft, hard) = crate::sys::nofile_limit()?;
    let target = needed(workers).min(hard);
    if target <= soft {
        return Ok((soft, soft));
    }
    crate::sys::set_nofile_soft(target)?;
    Ok((soft, crate::sys::nofile_limit()?.0))
}

/// The warning for the process's current limits, when they are below what `workers` needs
/// (for the start-up log and `lmtpd -t`).
pub fn check(workers: usize) -> Option<String> {
    let (soft, hard) = crate::sys::nofile_limit().ok()?;
    shortfall(workers, soft, hard)
}

/// The warning for a limit below what `workers` needs, if it is.
pub fn shortfall(workers: usize, soft: u64, hard: u64) -> Option<String> {
    let want = needed(workers);
    let reachable = soft.max(hard.min(want));
    (reachable < want).then(|| {
        format!(
            "warning: RLIMIT_NOFILE allows {reachable} descriptors (soft {}, hard {}), \
             workers = {workers} needs about {want}: when they run out new clients get \
             421 4.3.2; raise the hard limit (LimitNOFILE= in the systemd unit, \
             ulimit -Hn, login.conf openfiles) or lower workers",
            show(soft),
            show(hard)
        )
    })
}

fn show(v: u64) -> String {
    if v == u64::MAX {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_need_grows_with_workers() {
        assert_eq!(needed(0), BASE_DESCRIPTORS);
        assert_eq!(needed(512), BASE_DESCRIPTORS + 2048);
    }

    #[test]
    fn a_hard_limit_below_the_need_is_reported_and_a_raisable_soft_one_is_not() {
        assert!(shortfall(512, 1024, 1_048_576).is_none(), "raised at start");
        assert!(shortfall(512, 4096, 4096).is_none());
        let w = shortfall(512, 1024, 1024).expect("hard limit too low");
        assert!(
            w.contains("workers = 512") && w.contains("hard 1024"),
            "{w}"
        );
        assert!(shortfall(4096, 1024, u64::MAX).is_none());
    }
}
