//! The record of every operation the connector made through the faulty filesystem.

use std::fmt;

use imc::fs::OpKind;

use crate::Errno;

/// One operation, in the order the sandbox admitted it (the order in which
/// rules and triggers counted it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpRecord {
    /// The kind of operation.
    pub op: OpKind,
    /// Its root-relative path (`.` for the root itself); for a path outside the
    /// root, the path as given, with the sandbox directory shown as `<sandbox>`.
    pub path: String,
    /// A rename's destination, in the same form as `path`.
    pub to: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// The process that made it, on the FUSE mount; `None` for the in-process
    /// connector's calls through [`FaultyFs`](crate::FaultyFs). Not shown by
    /// `Display`, so op logs read the same on every backend.
    pub caller: Option<Caller>,
}

/// The process behind an operation on the FUSE mount, as the kernel names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Caller {
    /// Its process id (in the sandbox's pid namespace, which is the harness's).
    pub pid: u32,
    /// Its name: `/proc/<pid>/comm` (at most 15 bytes, as the kernel keeps it).
    pub process: String,
}

impl OpRecord {
    /// The operation without its outcome (`rename a -> b`), as violations list it.
    pub(crate) fn call(&self) -> String {
        match &self.to {
            Some(to) => format!("{} {} -> {to}", self.op, self.path),
            None => format!("{} {}", self.op, self.path),
        }
    }
}

impl fmt::Display for OpRecord {
    /// `rename imcdata/work/00000001 -> imcdata/in/00000001: ok`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.call(), self.outcome)
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still in progress (seen only while another thread is inside the call).
    Pending,
    /// Succeeded.
    Ok,
    /// A write that stored only part of its buffer because the quota ran out.
    ShortWrite {
        /// Bytes written.
        written: usize,
        /// Bytes asked for.
        requested: usize,
    },
    /// A write refused with `ENOSPC` because the quota is exhausted.
    QuotaFull,
    /// Failed with an errno injected by a rule; the disk was not touched.
    Injected(Errno),
    /// Refused with `EACCES`: a path outside the sandbox root.
    OutsideRoot,
    /// Failed with an error from the real filesystem, by errno name (`ENOENT`).
    Failed(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Pending => f.write_str("pending"),
            Outcome::Ok => f.write_str("ok"),
            Outcome::ShortWrite { written, requested } => {
                write!(f, "short write ({written} of {requested} bytes)")
            }
            Outcome::QuotaFull => f.write_str("ENOSPC (quota full)"),
            Outcome::Injected(errno) => write!(f, "{errno} (injected)"),
            Outcome::OutsideRoot => f.write_str("EACCES (outside the sandbox root)"),
            Outcome::Failed(name) => f.write_str(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(op: OpKind, path: &str, to: Option<&str>, outcome: Outcome) -> String {
        OpRecord {
            op,
            path: path.into(),
            to: to.map(Into::into),
            outcome,
            caller: None,
        }
        .to_string()
    }

    #[test]
    fn display() {
        assert_eq!(
            record(
                OpKind::Rename,
                "imcdata/work/00000001",
                Some("imcdata/in/00000001"),
                Outcome::Ok
            ),
            "rename imcdata/work/00000001 -> imcdata/in/00000001: ok"
        );
        assert_eq!(
            record(
                OpKind::Write,
                "a",
                None,
                Outcome::ShortWrite {
                    written: 3,
                    requested: 10
                }
            ),
            "write a: short write (3 of 10 bytes)"
        );
        assert_eq!(
            record(OpKind::Sync, "a", None, Outcome::Injected(Errno::Eio)),
            "sync a: EIO (injected)"
        );
        assert_eq!(
            record(OpKind::Remove, "a", None, Outcome::Failed("ENOENT".into())),
            "remove a: ENOENT"
        );
    }
}
