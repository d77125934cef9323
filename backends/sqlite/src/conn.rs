//! Opening connections: the pragmas every connection gets, and read-only opens for the
//! tools (`schema_status`, `export`).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// Flags of the server's read-write connections. No `SQLITE_OPEN_CREATE` (the file is created
/// by [`crate::SqliteStore::open`] with mode 0600) and no URI interpretation of the path.
pub(crate) fn rw_flags() -> OpenFlags {
    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
}

/// Sets the durability pragmas on a fresh connection: `busy_timeout`, `journal_mode=WAL`,
/// `synchronous=FULL` (each commit syncs the WAL, so a 250 survives a power loss),
/// `foreign_keys=ON` and a 128 KiB page cache. Runs on every pooled connection.
pub(crate) fn init(conn: &mut Connection, busy: Duration) -> rusqlite::Result<()> {
    conn.busy_timeout(busy)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!(
                "cannot switch the database to WAL mode (journal_mode is {mode})"
            )),
        ));
    }
    // A small page cache per pooled connection: bodies are streamed through BLOB I/O, so a
    // large cache only holds pages of big messages and multiplies by the pool size.
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -128;",
    )
}

/// Opens an existing database read-only (never creates or migrates it).
pub(crate) fn open_read_only(path: &Path) -> Result<Connection, String> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|err| format!("{}: cannot open: {err}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|err| format!("{}: {err}", path.display()))?;
    Ok(conn)
}

/// Opens a database for a one-shot look at its header without creating anything next to
/// it. A WAL-mode database whose `-wal` file is absent is fully checkpointed, so it is read
/// as `immutable` (no locks, no `-shm`/`-wal` created, which matters when `lmtpd -t` runs as
/// another user than the server); with a `-wal` present (a server is running, or crashed)
/// the normal read-only open reads through it.
pub(crate) fn open_for_status(path: &Path) -> Result<Connection, String> {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    if Path::new(&wal).exists() {
        return open_read_only(path);
    }
    let uri = format!("file:{}?immutable=1", uri_path(path));
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(uri, flags)
        .map_err(|err| format!("{}: cannot open: {err}", path.display()))
}

/// Percent-encodes a path for a `file:` URI (everything but unreserved characters and `/`).
fn uri_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
