//! Shared directory fsyncs: concurrent deliveries into one `new/` (or `cur/`) share one
//! fsync of it through [`lmtpd_store::group::SyncGroup`], and each still returns only after
//! an fsync that started after its own link() (so the entry it created is covered).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use lmtpd_store::group::SyncGroup;

use crate::layout::sync_dir;

/// A failed fsync, shared by every delivery its generation covered.
type SyncError = Arc<io::Error>;

/// Directory fsyncs shared between the threads delivering into the same directory.
#[derive(Debug, Default)]
pub(crate) struct DirSyncs {
    groups: Mutex<HashMap<PathBuf, Arc<SyncGroup<SyncError>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Entries kept at most; beyond that idle groups are dropped (a group is only an
/// optimisation, so forgetting one is harmless).
const MAX_GROUPS: usize = 4096;

impl DirSyncs {
    fn group(&self, dir: &Path) -> Arc<SyncGroup<SyncError>> {
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
    /// A failed fsync fails every delivery it covered (none is retried: see `group`).
    pub(crate) fn sync(&self, dir: &Path) -> io::Result<()> {
        self.group(dir)
            .sync(|| sync_dir(dir).map_err(Arc::new))
            .map_err(|shared| match shared.raw_os_error() {
                Some(code) => io::Error::from_raw_os_error(code),
                None => io::Error::new(shared.kind(), shared.to_string()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_syncs_of_one_directory_all_succeed() {
        let dir = tempfile::tempdir().expect("tmp");
        let syncs = DirSyncs::default();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..50 {
                        syncs.sync(dir.path()).expect("sync");
                    }
                });
            }
        });
    }

    #[test]
    fn a_failing_sync_is_reported_with_its_os_error() {
        let syncs = DirSyncs::default();
        let missing = Path::new("/nonexistent/lmtpd/dirsync");
        let err = syncs.sync(missing).expect_err("no such directory");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
