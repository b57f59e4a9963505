//! The OS error numbers a scenario can inject, by their POSIX names.

use std::fmt;
use std::io;
use std::str::FromStr;

/// An injectable OS error, named as in `errno.h`.
///
/// The set is deliberately small: these are the failures a spool connector can
/// meet on a local volume, and a closed set lets scenarios be checked when they
/// are parsed rather than when the fault fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Errno {
    /// No space left on device.
    Enospc,
    /// Input/output error.
    Eio,
    /// No such file or directory.
    Enoent,
    /// Permission denied.
    Eacces,
    /// Operation not permitted.
    Eperm,
    /// Read-only file system.
    Erofs,
    /// Not a directory.
    Enotdir,
    /// Is a directory.
    Eisdir,
    /// File exists.
    Eexist,
    /// Disk quota exceeded.
    Edquot,
    /// Cannot allocate memory.
    Enomem,
}

impl Errno {
    /// Every injectable errno, in the order they are listed in error messages.
    pub const ALL: [Errno; 11] = [
        Errno::Enospc,
        Errno::Eio,
        Errno::Enoent,
        Errno::Eacces,
        Errno::Eperm,
        Errno::Erofs,
        Errno::Enotdir,
        Errno::Eisdir,
        Errno::Eexist,
        Errno::Edquot,
        Errno::Enomem,
    ];

    /// The `errno.h` name (`ENOSPC`, `EIO`...).
    pub fn name(self) -> &'static str {
        match self {
            Errno::Enospc => "ENOSPC",
            Errno::Eio => "EIO",
            Errno::Enoent => "ENOENT",
            Errno::Eacces => "EACCES",
            Errno::Eperm => "EPERM",
            Errno::Erofs => "EROFS",
            Errno::Enotdir => "ENOTDIR",
            Errno::Eisdir => "EISDIR",
            Errno::Eexist => "EEXIST",
            Errno::Edquot => "EDQUOT",
            Errno::Enomem => "ENOMEM",
        }
    }

    /// The platform's numeric value, as found in `io::Error::raw_os_error`.
    pub fn raw(self) -> i32 {
        match self {
            Errno::Enospc => libc::ENOSPC,
            Errno::Eio => libc::EIO,
            Errno::Enoent => libc::ENOENT,
            Errno::Eacces => libc::EACCES,
            Errno::Eperm => libc::EPERM,
            Errno::Erofs => libc::EROFS,
            Errno::Enotdir => libc::ENOTDIR,
            Errno::Eisdir => libc::EISDIR,
            Errno::Eexist => libc::EEXIST,
            Errno::Edquot => libc::EDQUOT,
            Errno::Enomem => libc::ENOMEM,
        }
    }

    /// The injectable errno with this numeric value, if any.
    pub fn from_raw(raw: i32) -> Option<Errno> {
        Errno::ALL.into_iter().find(|e| e.raw() == raw)
    }

    /// An `io::Error` indistinguishable from the one the kernel would return.
    pub fn to_io_error(self) -> io::Error {
        io::Error::from_raw_os_error(self.raw())
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Errno {
    type Err = String;

    /// Parses a name such as `EIO`; case is ignored because scenario authors
    /// write both `EIO` and `eio`, and the names cannot be confused.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Errno::ALL
            .into_iter()
            .find(|e| e.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<&str> = Errno::ALL.iter().map(|e| e.name()).collect();
                format!("unknown errno `{s}`; expected one of {}", names.join(", "))
            })
    }
}

/// A short, stable name for an error as the op log and messages show it.
///
/// Real filesystem calls can fail with errors outside the injectable set
/// (renaming onto a non-empty directory gives `ENOTEMPTY`), so a few more names
/// are known here; anything else is shown by number, never by the locale-dependent
/// message, to keep run histories comparable across machines.
pub(crate) fn error_name(err: &io::Error) -> String {
    let Some(raw) = err.raw_os_error() else {
        return format!("{:?}", err.kind());
    };
    if let Some(errno) = Errno::from_raw(raw) {
        return errno.name().to_owned();
    }
    let extra = [
        (libc::ENOTEMPTY, "ENOTEMPTY"),
        (libc::EXDEV, "EXDEV"),
        (libc::EINVAL, "EINVAL"),
        (libc::EBUSY, "EBUSY"),
        (libc::EBADF, "EBADF"),
        (libc::ENAMETOOLONG, "ENAMETOOLONG"),
        (libc::ELOOP, "ELOOP"),
        (libc::EMLINK, "EMLINK"),
        (libc::EFBIG, "EFBIG"),
        (libc::EAGAIN, "EAGAIN"),
    ];
    extra
        .into_iter()
        .find(|&(code, _)| code == raw)
        .map_or_else(|| format!("errno {raw}"), |(_, name)| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for errno in Errno::ALL {
            assert_eq!(errno.name().parse::<Errno>(), Ok(errno));
            assert_eq!(errno.to_string(), errno.name());
            assert_eq!(Errno::from_raw(errno.raw()), Some(errno));
        }
        assert_eq!("enospc".parse::<Errno>(), Ok(Errno::Enospc));
    }

    #[test]
    fn maps_to_libc_values() {
        assert_eq!(Errno::Enospc.raw(), libc::ENOSPC);
        assert_eq!(Errno::Edquot.raw(), libc::EDQUOT);
        let err = Errno::Eio.to_io_error();
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
    }

    #[test]
    fn unknown_name_lists_the_accepted_ones() {
        let err = "EWHAT".parse::<Errno>().unwrap_err();
        assert!(err.contains("EWHAT"), "{err}");
        for errno in Errno::ALL {
            assert!(err.contains(errno.name()), "{err}");
        }
    }

    #[test]
    fn error_names_cover_real_errors() {
        let name = |raw| error_name(&io::Error::from_raw_os_error(raw));
        assert_eq!(name(libc::ENOENT), "ENOENT");
        assert_eq!(name(libc::ENOTEMPTY), "ENOTEMPTY");
        assert_eq!(name(4095), "errno 4095");
        assert_eq!(error_name(&io::Error::other("x")), "Other");
    }
}
