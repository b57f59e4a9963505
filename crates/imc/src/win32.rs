//! The Windows error texts the real IMC put in its events, for an `io::Error`.
//!
//! KB Q146791 quotes `The system cannot find the path specified.` for a move into a
//! missing IN; the connector names the Win32 error that matches the real one.

use std::io;

/// The Win32 error code and its system message for an I/O error.
pub fn describe(err: &io::Error) -> (u32, &'static str) {
    match err.raw_os_error() {
        // A missing directory, or a plain file where a directory should be.
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => {
            (3, "The system cannot find the path specified.")
        }
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => (112, "There is not enough space on the disk."),
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) | Some(libc::EISDIR) => {
            (5, "Access is denied.")
        }
        Some(libc::EEXIST) => (183, "Cannot create a file when that file already exists."),
        Some(libc::ENOMEM) => (
            8,
            "Not enough storage is available to process this command.",
        ),
        Some(libc::EIO) => (
            1117,
            "The request could not be performed because of an I/O device error.",
        ),
        _ => match err.kind() {
            io::ErrorKind::NotFound => (3, "The system cannot find the path specified."),
            io::ErrorKind::PermissionDenied => (5, "Access is denied."),
            _ => (31, "A device attached to the system is not functioning."),
        },
    }
}

/// A path as the IMC printed it: backslash-separated.
pub fn path(p: &std::path::Path) -> String {
    p.display().to_string().replace('/', "\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kb_text_for_missing_directory() {
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(
            describe(&e),
            (3, "The system cannot find the path specified.")
        );
        let e = io::Error::from_raw_os_error(libc::ENOTDIR);
        assert_eq!(describe(&e).0, 3);
    }

    #[test]
    fn disk_full_and_io() {
        let e = io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(
            describe(&e),
            (112, "There is not enough space on the disk.")
        );
        let e = io::Error::from_raw_os_error(libc::EIO);
        assert_eq!(describe(&e).0, 1117);
    }

    #[test]
    fn backslashes() {
        assert_eq!(
            path(std::path::Path::new("/r/imcdata/in/1")),
            "\\r\\imcdata\\in\\1"
        );
    }
}
