//! The one libc call std does not wrap here: `linkat(2)` with `AT_SYMLINK_FOLLOW`, which
//! names an `O_TMPFILE` file through `/proc/self/fd` (Linux). Everything else in this crate
//! goes through safe std APIs.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::path::Path;

/// Gives the unnamed (`O_TMPFILE`) file `file` the name `path`; never replaces an existing
/// name (`EEXIST`).
#[cfg(target_os = "linux")]
pub(crate) fn link_unnamed(file: &File, path: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::io::AsRawFd;
    let from =
        CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).map_err(io::Error::other)?;
    let to = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: both pointers are NUL-terminated strings owned by this frame, alive for the
    // whole call; linkat reads them and keeps no reference.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Not available: callers use `tmp/` (they never get an unnamed file here).
#[cfg(not(target_os = "linux"))]
pub(crate) fn link_unnamed(_file: &File, _path: &Path) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}
