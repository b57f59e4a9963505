//! Sandboxed spool volumes and the faults applied to them.
//!
//! A [`Sandbox`] is a private temporary directory whose `root/` the connector
//! under test uses as its volume, through the fault-injecting [`FaultyFs`]. The
//! scenario changes that volume for real ([`Fault`]), makes operations fail with
//! chosen errors ([`ErrnoRule`]), arms faults to strike right before a given
//! operation ([`OpTrigger`]), and reads back what the connector did
//! ([`OpRecord`]). All state belongs to one `Sandbox`, so scenarios can run in
//! parallel.

#![warn(missing_docs)]

mod disk;
mod errno;
mod error;
mod fault;
mod faulty_fs;
mod op_log;
mod paths;
mod quota;
mod rule;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tempfile::TempDir;

pub use crate::errno::Errno;
pub use crate::error::SandboxError;
pub use crate::fault::Fault;
pub use crate::faulty_fs::{FaultyFile, FaultyFs};
pub use crate::op_log::{OpRecord, Outcome};
pub use crate::rule::{ErrnoRule, OpTrigger};

/// How a [`Sandbox`] is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SandboxConfig {
    /// Size of the sandbox volume in bytes: what the connector sees as free
    /// space when the root is empty.
    pub quota: u64,
}

impl Default for SandboxConfig {
    /// A 64 MiB volume: room for many messages, small enough to fill quickly.
    fn default() -> Self {
        SandboxConfig {
            quota: 64 * 1024 * 1024,
        }
    }
}

/// One scenario run's volume: a temporary directory holding the connector's
/// `root/` and a private `stash/`, removed with everything in it when the
/// sandbox is dropped (also while unwinding from a panic).
#[derive(Debug)]
pub struct Sandbox {
    fs: Arc<FaultyFs>,
    root: PathBuf,
    /// Declared last so it is dropped last; its drop removes the directory.
    dir: TempDir,
}

impl Sandbox {
    /// Creates a fresh, empty sandbox.
    pub fn new(config: SandboxConfig) -> io::Result<Sandbox> {
        let dir = tempfile::Builder::new().prefix("imc-sandbox-").tempdir()?;
        // Canonical, so that the connector's paths (built from `root()`) and the
        // lexical containment check agree even if the temp dir is behind a symlink.
        let base = dir.path().canonicalize()?;
        let root = base.join("root");
        let stash = base.join("stash");
        std::fs::create_dir(&root)?;
        std::fs::create_dir(&stash)?;
        let fs = Arc::new(FaultyFs::new(base, root.clone(), stash, config.quota));
        Ok(Sandbox { fs, root, dir })
    }

    /// The connector's root directory (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The sandbox's temporary directory, which holds `root/` and `stash/`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The filesystem to give the connector; always the same instance.
    pub fn fs(&self) -> Arc<FaultyFs> {
        Arc::clone(&self.fs)
    }

    /// The absolute path of a scenario path, which must be relative to the root
    /// and stay strictly under it: empty paths, absolute paths, `..` and paths
    /// naming the root itself are refused.
    pub fn resolve(&self, rel: &str) -> Result<PathBuf, SandboxError> {
        paths::resolve(&self.root, rel).map(|p| p.abs)
    }

    /// Applies `fault` for real and describes what was done, in one line with
    /// root-relative paths (it goes into the run history, which must not depend
    /// on where the sandbox happens to live).
    pub fn apply(&self, fault: &Fault) -> Result<String, SandboxError> {
        self.fs.apply(fault)
    }

    /// Arms `fault` to be applied right before the `nth` operation matching
    /// `trigger` (counted from now) reaches the disk; that operation then sees
    /// the changed disk. The fault's paths and rule are checked now. What the
    /// fault did is collected by [`Sandbox::take_fired`].
    pub fn arm(&self, trigger: OpTrigger, fault: Fault) -> Result<(), SandboxError> {
        self.fs.arm(&trigger, fault)
    }

    /// Descriptions of the armed faults that fired since the last call, in
    /// firing order (a fault that could not be applied is described as such).
    pub fn take_fired(&self) -> Vec<String> {
        self.fs.take_fired()
    }

    /// A copy of the log of every operation made through [`Sandbox::fs`].
    pub fn ops(&self) -> Vec<OpRecord> {
        self.fs.ops()
    }

    /// The number of operations made through [`Sandbox::fs`] so far.
    pub fn op_count(&self) -> usize {
        self.fs.op_count()
    }

    /// The operations refused for naming a path outside the root
    /// (`create <sandbox>/stash/x`), in order.
    pub fn violations(&self) -> Vec<String> {
        self.fs.violations()
    }

    /// The quota in bytes.
    pub fn quota(&self) -> u64 {
        self.fs.quota()
    }

    /// The free space the connector would be told, read without logging an
    /// operation (so checks do not shift op counts).
    pub fn available_space(&self) -> u64 {
        self.fs.available()
    }
}
