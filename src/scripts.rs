//! Finding, reading and caching Sieve scripts: the global `sieve_before`/`sieve_after`
//! lists (files, or directories of `*.sieve` files), each user's active script (the `sieve`
//! template or the users-file `sieve=` path, with Dovecot's ManageSieve symlink layout) and
//! the scripts `include` names. A script is compiled once and compiled again only when its
//! file changes (device, inode, size, modification or change time); a script that does not
//! compile is remembered the same way, so a broken script costs one `stat` per delivery.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::sieve::{self, CompileError, Limits, Script};

/// Most scripts the cache remembers; when full it starts again empty (scripts are small and
/// compile in microseconds, so a full cache only costs recompiles).
const CACHE_ENTRIES: usize = 4096;

/// Why a script that exists cannot be run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScriptError {
    /// The file cannot be opened or read (permissions, I/O).
    Read(String),
    /// The file is refused: not a regular file, too large, or a symlink leading out of the
    /// user's directory.
    Refused(String),
    /// The script does not compile; every error with its line and column.
    Compile(Vec<CompileError>),
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScriptError::Read(why) => write!(f, "cannot read: {why}"),
            ScriptError::Refused(why) => write!(f, "refused: {why}"),
            ScriptError::Compile(errors) => {
                let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
                write!(f, "does not compile: {}", all.join("; "))
            }
        }
    }
}

impl ScriptError {
    /// The metric label of this kind of failure.
    pub fn kind(&self) -> crate::metrics::SieveError {
        match self {
            ScriptError::Read(_) | ScriptError::Refused(_) => crate::metrics::SieveError::Read,
            ScriptError::Compile(_) => crate::metrics::SieveError::Compile,
        }
    }
}

/// What looking for a script found.
#[derive(Clone, Debug)]
pub enum Found {
    /// No file at that path: nothing to run.
    Missing,
    /// The compiled script, and the file it was read from (a symlink's target).
    Script(Arc<Script>, PathBuf),
    /// A file that cannot be run, and why.
    Failed(PathBuf, ScriptError),
}

/// The identity of a file's content as far as `stat` can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Size in bytes.
    pub len: u64,
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, i64),
    /// Change time (seconds, nanoseconds).
    pub ctime: (i64, i64),
}

/// A script file's source as [`read_source`] found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// No file at that path: nothing to run.
    Missing,
    /// The file it was read from (a symlink's target), its stamp and its bytes.
    Text(PathBuf, Stamp, Vec<u8>),
    /// A file that cannot be run, and why.
    Failed(PathBuf, ScriptError),
}

/// Reads the script at `path` with the same rules as [`ScriptCache::personal`] (a symlink
/// is followed only to a file inside the directory that holds it; not a regular file or more
/// than `max` bytes is refused), without compiling it: the account helper reads a system
/// account's script this way, as the account, and lmtpd compiles what it sends.
pub fn read_source(path: &Path, max: usize) -> Source {
    let confine = path.parent().unwrap_or(Path::new("/"));
    match locate(path, Some(confine)) {
        Located::Missing => Source::Missing,
        Located::Failed(p, e) => Source::Failed(p, e),
        Located::File(real, _) => match open_checked(&real) {
            Ok((mut file, stamp)) => match read_bounded(&mut file, stamp.len, max) {
                Ok(text) => Source::Text(real, stamp, text),
                Err(e) => Source::Failed(real, e),
            },
            Err(e) => Source::Failed(real, e),
        },
    }
}

/// The `dir/NAME.sieve` file `include` names, `None` when `name` cannot be a script file
/// name (RFC 6609 §3.2 leaves names to the implementation; we refuse `/`, a leading `.` and
/// control characters).
pub fn include_file(dir: &Path, name: &str) -> Option<PathBuf> {
    if name.is_empty()
        || name.starts_with('.')
        || name.contains('/')
        || name.chars().any(char::is_control)
    {
        return None;
    }
    Some(dir.join(format!("{name}.sieve")))
}

/// Where a script path leads: nothing, a file (resolved, with the `stat` of it), or a
/// refusal.
enum Located {
    Missing,
    File(PathBuf, fs::Metadata),
    Failed(PathBuf, ScriptError),
}

fn locate(path: &Path, confine: Option<&Path>) -> Located {
    let link = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Located::Missing,
        Err(e) => return Located::Failed(path.into(), ScriptError::Read(e.to_string())),
    };
    if !link.file_type().is_symlink() {
        return Located::File(path.to_path_buf(), link);
    }
    match resolve_confined(path, confine) {
        Ok(Some(real)) => match fs::metadata(&real) {
            Ok(m) => Located::File(real, m),
            Err(e) => Located::Failed(real, ScriptError::Read(e.to_string())),
        },
        Ok(None) => Located::Missing,
        Err(err) => Located::Failed(path.into(), err),
    }
}

/// Opens a resolved script path (never through a symlink swapped in since) and checks that
/// it is a regular file.
fn open_checked(path: &Path) -> Result<(fs::File, Stamp), ScriptError> {
    let file = open_nofollow(path).map_err(|e| ScriptError::Read(e.to_string()))?;
    let meta = file
        .metadata()
        .map_err(|e| ScriptError::Read(e.to_string()))?;
    if !meta.is_file() {
        return Err(ScriptError::Refused("not a regular file".into()));
    }
    Ok((file, Stamp::of(&meta)))
}

/// At most `max` bytes of `file`, whose size is `len`; a larger file is refused.
fn read_bounded(file: &mut fs::File, len: u64, max: usize) -> Result<Vec<u8>, ScriptError> {
    if len > max as u64 {
        return Err(ScriptError::Refused(format!(
            "{len} bytes is more than sieve_max_script_size ({max})"
        )));
    }
    let mut source = Vec::with_capacity(usize::try_from(len).unwrap_or(0).min(max));
    file.take(max as u64 + 1)
        .read_to_end(&mut source)
        .map_err(|e| ScriptError::Read(e.to_string()))?;
    if source.len() > max {
        return Err(ScriptError::Refused(format!(
            "more than sieve_max_script_size ({max}) bytes"
        )));
    }
    Ok(source)
}

impl Stamp {
    fn of(m: &fs::Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

type Compiled = Result<Arc<Script>, ScriptError>;

/// Compiled scripts by file, shared by every session (and kept across a SIGHUP reload when
/// the limits did not change; see [`ScriptCache::for_limits`]).
#[derive(Debug)]
pub struct ScriptCache {
    limits: Limits,
    entries: Mutex<HashMap<PathBuf, (Stamp, Compiled)>>,
}

impl ScriptCache {
    /// An empty cache compiling with `limits`.
    pub fn new(limits: Limits) -> ScriptCache {
        ScriptCache {
            limits,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// `previous` when it compiles with `limits`, else a new cache (a reload that changes a
    /// limit recompiles everything under the new one).
    pub fn for_limits(previous: Option<&Arc<ScriptCache>>, limits: Limits) -> Arc<ScriptCache> {
        match previous {
            Some(p) if p.limits == limits => Arc::clone(p),
            _ => Arc::new(ScriptCache::new(limits)),
        }
    }

    /// The limits scripts are compiled and run with.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A global script (an administrator's file: symlinks are followed anywhere).
    pub fn global(&self, path: &Path) -> Found {
        self.load(path, None)
    }

    /// A user's script at `path`. When `path` is a symlink (ManageSieve's active script), it
    /// is followed only to a file inside the directory that holds the link.
    pub fn personal(&self, path: &Path) -> Found {
        let confine = path.parent().unwrap_or(Path::new("/"));
        self.load(path, Some(confine))
    }

    /// A script `include` names: `dir/NAME.sieve`, confined to `dir` when `confined`. `None`
    /// for a name that cannot be a script file name (RFC 6609 §3.2 leaves names to the
    /// implementation; we refuse `/`, a leading `.` and control characters).
    pub fn included(&self, dir: &Path, name: &str, confined: bool) -> Option<Found> {
        let file = include_file(dir, name)?;
        Some(self.load(&file, confined.then_some(dir)))
    }

    /// The compiled script `include` names (see [`ScriptCache::included`]) as the engine's
    /// [`crate::sieve::Host::include`] answers: a missing file is `NotFound` (a no-op with
    /// `:optional`), anything else that cannot run is `Failed` with the path and why.
    pub fn include(
        &self,
        dir: &Path,
        name: &str,
        confined: bool,
    ) -> Result<Arc<Script>, crate::sieve::IncludeError> {
        use crate::sieve::IncludeError;
        match self.included(dir, name, confined) {
            None => Err(IncludeError::Failed(format!(
                "'{name}' cannot be a script name"
            ))),
            Some(Found::Missing) => Err(IncludeError::NotFound),
            Some(Found::Script(s, _)) => Ok(s),
            Some(Found::Failed(path, err)) => {
                Err(IncludeError::Failed(format!("{}: {err}", path.display())))
            }
        }
    }

    /// The scripts a `sieve_before`/`sieve_after` entry stands for: the file itself, or
    /// every `*.sieve` file of a directory in name order (as Pigeonhole reads one).
    pub fn expand_global(path: &Path) -> Vec<PathBuf> {
        if !path.is_dir() {
            return vec![path.to_path_buf()];
        }
        let mut files: Vec<PathBuf> = fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "sieve") && p.is_file())
            .collect();
        files.sort();
        files
    }

    fn load(&self, path: &Path, confine: Option<&Path>) -> Found {
        match locate(path, confine) {
            Located::Missing => Found::Missing,
            Located::Failed(p, e) => Found::Failed(p, e),
            Located::File(real, meta) => match self.compiled(&real, &meta) {
                Ok(script) => Found::Script(script, real),
                Err(err) => Found::Failed(real, err),
            },
        }
    }

    /// The script at `path`, whose `stat` gave `seen`: from the cache while the file is
    /// unchanged (a delivery then costs that one `stat`), else opened (never through a
    /// symlink swapped in since), checked and compiled.
    fn compiled(&self, path: &Path, seen: &fs::Metadata) -> Compiled {
        if let Some(c) = self.cached(path, Stamp::of(seen)) {
            return c;
        }
        let (mut file, stamp) = open_checked(path)?;
        if let Some(c) = self.cached(path, stamp) {
            return c;
        }
        let compiled = read_bounded(&mut file, stamp.len, self.limits.max_script_size)
            .and_then(|source| self.compile(&source));
        self.remember(path.to_path_buf(), stamp, compiled.clone());
        compiled
    }

    /// A script read elsewhere (a system account's, read by the account helper) under
    /// `key`, whose file had `stamp`: from the cache while the stamp is the same, else
    /// compiled from `source`. `key` names the account and the file, so two accounts never
    /// share an entry.
    pub fn from_source(&self, key: PathBuf, stamp: Stamp, source: &[u8]) -> Compiled {
        if let Some(c) = self.cached(&key, stamp) {
            return c;
        }
        let compiled = self.compile(source);
        self.remember(key, stamp, compiled.clone());
        compiled
    }

    fn compile(&self, source: &[u8]) -> Compiled {
        let max = self.limits.max_script_size;
        if source.len() > max {
            return Err(ScriptError::Refused(format!(
                "{} bytes is more than sieve_max_script_size ({max})",
                source.len()
            )));
        }
        sieve::compile(source, &self.limits)
            .map(Arc::new)
            .map_err(ScriptError::Compile)
    }

    fn remember(&self, key: PathBuf, stamp: Stamp, compiled: Compiled) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= CACHE_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (stamp, compiled));
    }

    fn cached(&self, path: &Path, stamp: Stamp) -> Option<Compiled> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(path)
            .filter(|(s, _)| *s == stamp)
            .map(|(_, c)| c.clone())
    }
}

/// Where a symlinked script leads, when that is allowed: anywhere without `confine`, else
/// only to a file inside `confine` (both canonicalised, so `..` and further links are
/// resolved before the check). `Ok(None)` for a dangling link (ManageSieve with no active
/// script leaves none, but a dangling one means the same).
fn resolve_confined(path: &Path, confine: Option<&Path>) -> Result<Option<PathBuf>, ScriptError> {
    let real = match fs::canonicalize(path) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ScriptError::Read(e.to_string())),
    };
    let Some(dir) = confine else {
        return Ok(Some(real));
    };
    let dir = fs::canonicalize(dir).map_err(|e| ScriptError::Read(e.to_string()))?;
    let inside = real.starts_with(&dir)
        && real
            .strip_prefix(&dir)
            .is_ok_and(|rest| rest.components().all(|c| matches!(c, Component::Normal(_))));
    if inside {
        Ok(Some(real))
    } else {
        Err(ScriptError::Refused(format!(
            "the symlink leads to {}, outside {}",
            real.display(),
            dir.display()
        )))
    }
}

/// Opens `path` for reading without following a symlink in its last component (the path
/// was resolved already; a link swapped in since is refused, not followed).
fn open_nofollow(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn cache() -> ScriptCache {
        ScriptCache::new(Limits::default())
    }

    #[test]
    fn a_missing_script_is_no_script() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            cache().personal(&dir.path().join(".dovecot.sieve")),
            Found::Missing
        ));
    }

    #[test]
    fn a_script_is_compiled_once_and_again_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sieve");
        fs::write(&path, "keep;\n").unwrap();
        let c = cache();
        let Found::Script(a, _) = c.global(&path) else {
            panic!("no script")
        };
        let Found::Script(b, _) = c.global(&path) else {
            panic!("no script")
        };
        assert!(Arc::ptr_eq(&a, &b), "the second load is the cached script");
        fs::write(&path, "discard;\n# longer now\n").unwrap();
        let Found::Script(d, _) = c.global(&path) else {
            panic!("no script")
        };
        assert!(!Arc::ptr_eq(&a, &d), "a changed file is compiled again");
    }

    #[test]
    fn a_broken_script_reports_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sieve");
        fs::write(&path, "keep;\nfrobnicate;\n").unwrap();
        match cache().global(&path) {
            Found::Failed(p, ScriptError::Compile(errors)) => {
                assert_eq!(p, path);
                assert_eq!(errors[0].pos.line, 2, "{errors:?}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn managesieve_symlink_inside_the_users_directory_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sieve")).unwrap();
        fs::write(dir.path().join("sieve/roundcube.sieve"), "keep;\n").unwrap();
        let active = dir.path().join(".dovecot.sieve");
        symlink("sieve/roundcube.sieve", &active).unwrap();
        match cache().personal(&active) {
            Found::Script(_, real) => assert!(real.ends_with("sieve/roundcube.sieve")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_symlink_out_of_the_users_directory_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("evil.sieve"), "discard;\n").unwrap();
        let home = tempfile::tempdir().unwrap();
        let active = home.path().join(".dovecot.sieve");
        symlink(outside.path().join("evil.sieve"), &active).unwrap();
        assert!(matches!(
            cache().personal(&active),
            Found::Failed(_, ScriptError::Refused(_))
        ));
        // A relative link climbing out with .. is refused too.
        let active2 = home.path().join("other.sieve");
        let rel = format!(
            "../{}/evil.sieve",
            outside.path().file_name().unwrap().to_str().unwrap()
        );
        symlink(rel, &active2).unwrap();
        assert!(matches!(
            cache().personal(&active2),
            Found::Failed(_, ScriptError::Refused(_))
        ));
    }

    #[test]
    fn a_dangling_active_link_is_no_script() {
        let home = tempfile::tempdir().unwrap();
        let active = home.path().join(".dovecot.sieve");
        symlink("sieve/gone.sieve", &active).unwrap();
        assert!(matches!(cache().personal(&active), Found::Missing));
    }

    #[test]
    fn a_directory_or_oversized_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            cache().global(dir.path()),
            Found::Failed(_, ScriptError::Refused(_))
        ));
        let big = dir.path().join("big.sieve");
        fs::write(&big, vec![b'#'; 2 << 20]).unwrap();
        assert!(matches!(
            cache().global(&big),
            Found::Failed(_, ScriptError::Refused(_))
        ));
    }

    #[test]
    fn include_names_cannot_leave_their_directory() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache();
        for bad in ["", "../x", "a/b", ".hidden", "a\nb"] {
            assert!(c.included(dir.path(), bad, true).is_none(), "{bad:?}");
        }
        fs::write(dir.path().join("spam.sieve"), "keep;\n").unwrap();
        assert!(matches!(
            c.included(dir.path(), "spam", true),
            Some(Found::Script(..))
        ));
    }

    #[test]
    fn a_global_directory_runs_its_sieve_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["20-b.sieve", "10-a.sieve", "notes.txt"] {
            fs::write(dir.path().join(n), "keep;\n").unwrap();
        }
        let files = ScriptCache::expand_global(dir.path());
        let names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["10-a.sieve", "20-b.sieve"]);
    }
}
