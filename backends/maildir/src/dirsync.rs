//! Group fsync of `new/` directories: concurrent deliveries into one maildir share one
//! directory fsync, and each still returns only after an fsync that started after its own
//! link() (so the entry it created is covered).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::layout::sync_dir;

#[derive(Debug, Default)]
struct State {
    /// Tickets handed out so far; a ticket is taken right after the caller's link().
    next_ticket: u64,
    /// Every ticket below this is covered by a completed fsync.
    synced_upto: u64,
    /// Someone is running an fsync now.
    in_progress: bool,
}

#[derive(Debug, Default)]
struct Group {
    state: Mutex<State>,
    done: Condvar,
}

/// Directory fsyncs shared between the threads delivering into the same directory.
#[derive(Debug, Default)]
pub(crate) struct DirSyncs {
    groups: Mutex<HashMap<PathBuf, Arc<Group>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Entries kept at most; beyond that idle groups are dropped (a group is only an
/// optimisation, so forgetting one is harmless).
const MAX_GROUPS: usize = 4096;

impl DirSyncs {
    fn group(&self, dir: &Path) -> Arc<Group> {
        let mut groups = lock(&self.groups);
        if let Some(group) = groups.get(dir) {
            return Arc::clone(group);
        }
        if groups.len() >= MAX_GROUPS {
            groups.retain(|_, g| Arc::strong_count(g) > 1);
        }
        Arc::clone(groups.entry(dir.to_path_buf()).or_default())
    }

    /// Makes every directory entry created in `dir` before this call durable. Call it after
    /// link(); when it returns Ok, an fsync of `dir` that began after that link completed.
    pub(crate) fn sync(&self, dir: &Path) -> io::Result<()> {
        let group = self.group(dir);
        let mut s = lock(&group.state);
        let ticket = s.next_ticket;
        s.next_ticket += 1;
        loop {
            if s.synced_upto > ticket {
                return Ok(());
            }
            if s.in_progress {
                s = group.done.wait(s).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // Lead an fsync covering every ticket handed out so far.
            s.in_progress = true;
            let upto = s.next_ticket;
            drop(s);
            let result = sync_dir(dir);
            s = lock(&group.state);
            s.in_progress = false;
            if result.is_ok() {
                s.synced_upto = s.synced_upto.max(upto);
            }
            group.done.notify_all();
            result?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_caller_returns_after_a_covering_sync() {
        let dir = tempfile::tempdir().expect("tmp");
        let syncs = Arc::new(DirSyncs::default());
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let syncs = Arc::clone(&syncs);
                let d = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        syncs.sync(&d).expect("sync");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("thread");
        }
        let g = syncs.group(dir.path());
        let s = lock(&g.state);
        assert_eq!(s.next_ticket, 400);
        assert_eq!(s.synced_upto, 400, "every ticket covered");
        assert!(!s.in_progress);
    }

    #[test]
    fn a_failing_sync_is_reported_and_not_counted() {
        let syncs = DirSyncs::default();
        let missing = Path::new("/nonexistent/lmtpd/dirsync");
        assert!(syncs.sync(missing).is_err());
        let g = syncs.group(missing);
        assert_eq!(lock(&g.state).synced_upto, 0);
    }
}
