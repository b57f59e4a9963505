//! Why a sandbox request was refused.

use std::fmt;
use std::io;

use crate::errno::error_name;

/// A fault, path, rule or trigger the sandbox could not accept or carry out.
///
/// Every variant names the root-relative path involved (never the temporary
/// directory's absolute path), so the message can go into a run history as is.
#[derive(Debug)]
pub enum SandboxError {
    /// A scenario path that does not name something strictly under the root.
    InvalidPath {
        /// The path as the scenario wrote it.
        path: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// An errno rule or trigger that cannot be installed (zero `nth`, bad glob).
    InvalidRule {
        /// What is wrong with it.
        reason: String,
    },
    /// A filesystem call failed while setting up the sandbox or applying a fault.
    Io {
        /// What was being done (`remove`, `rename imcdata/in to`...).
        action: String,
        /// The root-relative path it was done to.
        path: String,
        /// The OS error.
        source: io::Error,
    },
    /// The fault does not fit the tree as it is now: nothing to restore, a name
    /// clash, a target that already exists...
    Conflict {
        /// The root-relative path the fault is about.
        path: String,
        /// What stands in the way.
        reason: String,
    },
}

impl SandboxError {
    /// Wraps an OS error met while doing `action` to `path`.
    pub(crate) fn io(
        action: impl Into<String>,
        path: impl Into<String>,
        source: io::Error,
    ) -> Self {
        SandboxError::Io {
            action: action.into(),
            path: path.into(),
            source,
        }
    }

    /// A fault that cannot be applied to `path` in the tree's current state.
    pub(crate) fn conflict(path: impl Into<String>, reason: impl Into<String>) -> Self {
        SandboxError::Conflict {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for SandboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SandboxError::InvalidPath { path, reason } => {
                write!(f, "invalid sandbox path `{path}`: {reason}")
            }
            SandboxError::InvalidRule { reason } => write!(f, "invalid rule: {reason}"),
            SandboxError::Io {
                action,
                path,
                source,
            } => write!(
                f,
                "cannot {action} `{path}`: {} ({source})",
                error_name(source)
            ),
            SandboxError::Conflict { path, reason } => {
                write!(f, "cannot apply to `{path}`: {reason}")
            }
        }
    }
}

impl std::error::Error for SandboxError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SandboxError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
