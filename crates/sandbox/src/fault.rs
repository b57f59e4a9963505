//! The faults a scenario can inflict on the connector's volume.

use std::fmt;

use crate::ErrnoRule;

/// One change to the sandbox, applied for real by [`Sandbox::apply`](crate::Sandbox::apply)
/// or by an armed trigger.
///
/// Paths are relative to the sandbox root (see [`Sandbox::resolve`](crate::Sandbox::resolve)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Removes the file, or the directory with everything in it, at `path`.
    Remove {
        /// What to remove.
        path: String,
    },
    /// Renames `from` to `to`; a directory's contents move along. Refused if `to`
    /// exists, since overwriting it could not be undone.
    Rename {
        /// The current name.
        from: String,
        /// The new name.
        to: String,
    },
    /// Moves what is at `path` into a private stash outside the connector's view
    /// and leaves an empty regular file in its place (a directory turned file).
    Replace {
        /// What to replace.
        path: String,
    },
    /// Undoes the last `Remove`, `Rename` (by its `from`) or `Replace` of `path`.
    Restore {
        /// The path given to the fault being undone.
        path: String,
    },
    /// Grows a ballast file under the root until exactly `leave` bytes of quota
    /// remain free.
    FillDisk {
        /// Bytes to leave free.
        leave: u64,
    },
    /// Removes the ballast file.
    FreeDisk,
    /// Installs an errno rule.
    Errno(ErrnoRule),
    /// Removes every errno rule.
    ClearErrno,
}

impl fmt::Display for Fault {
    /// A compact form of the fault as requested (what it is, not what it did),
    /// used to report a fault that could not be applied.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Remove { path } => write!(f, "remove {path}"),
            Fault::Rename { from, to } => write!(f, "rename {from} -> {to}"),
            Fault::Replace { path } => write!(f, "replace {path}"),
            Fault::Restore { path } => write!(f, "restore {path}"),
            Fault::FillDisk { leave } => write!(f, "fill disk leaving {leave} bytes"),
            Fault::FreeDisk => f.write_str("free disk"),
            Fault::Errno(rule) => write!(f, "errno rule: {rule}"),
            Fault::ClearErrno => f.write_str("clear errno rules"),
        }
    }
}
