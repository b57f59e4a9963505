//! Sandboxed spool volumes and the faults applied to them.
//!
//! A [`Sandbox`] is a private temporary directory whose `root/` the connector
//! under test uses as its volume, through the fault-injecting [`FaultyFs`]. The
//! scenario changes that volume for real ([`Fault`]), makes operations fail with
//! chosen errors ([`ErrnoRule`]), arms faults to strike right before a given
//! operation ([`OpTrigger`]), and reads back what the connector did
//! ([`OpRecord`]). All state belongs to one `Sandbox`, so scenarios can run in
//! parallel.
//!
//! Two backends hold the volume ([`Backend`]): `vfs`, real files in a temporary
//! directory with a block quota kept by [`FaultyFs`] and a crash model
//! ([`Sandbox::crash`]), and `tmpfs`, a real size-limited tmpfs mounted on the
//! root (Linux, in a private mount namespace: see
//! [`enter_private_mount_namespace`]), where the kernel does the accounting.
//! Both charge files in whole [`BLOCK`]s, so a scenario sees the same free
//! space on either.

#![warn(missing_docs)]

mod crash;
mod disk;
mod engine;
mod errno;
mod error;
mod fault;
mod faulty_fs;
mod fuse;
mod mount;
mod op_log;
mod owner;
mod paths;
mod quota;
mod rule;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use tempfile::TempDir;

pub use crate::disk::BALLAST;
pub use crate::errno::Errno;
pub use crate::error::SandboxError;
pub use crate::fault::Fault;
pub use crate::faulty_fs::{FaultyFile, FaultyFs};
pub use crate::fuse::fuse_available;
pub use crate::mount::{enter_private_mount_namespace, tmpfs_available};
pub use crate::op_log::{Caller, OpRecord, Outcome};
pub use crate::owner::{PREFIX, remove_own_sandboxes, remove_stale_sandboxes};
pub use crate::quota::BLOCK;
pub use crate::rule::{At, ErrnoRule, OpTrigger, Strike};
/// The kinds of filesystem operation the op log, errno rules and triggers
/// name (the connector's `Fs` vocabulary), so that users of the sandbox need
/// not import the connector for them.
pub use imc::fs::OpKind;

/// How a [`Sandbox`] is set up. The backend is chosen by
/// [`Sandbox::with_backend`] ([`Sandbox::new`] is `vfs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SandboxConfig {
    /// Size of the sandbox volume in bytes, rounded down to whole [`BLOCK`]s:
    /// what the connector sees as free space when the root is empty.
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

/// What holds a sandbox's volume.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Real files in a temporary directory; [`FaultyFs`] keeps a block quota
    /// and a crash model.
    #[default]
    Vfs,
    /// A tmpfs of the quota's size mounted on the root (Linux only, in the
    /// private mount namespace of [`enter_private_mount_namespace`]): `ENOSPC`
    /// and free space are the kernel's; no crash model.
    Tmpfs,
    /// A FUSE mount on the root passing through to a backing directory
    /// (Linux, root, `/dev/fuse`, in the private mount namespace): every
    /// process using the root meets the rule engine, quota and crash model of
    /// `vfs` (see [`fuse_available`]).
    Fuse,
}

impl Backend {
    /// The lower-case name (`vfs`, `tmpfs`).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Vfs => "vfs",
            Backend::Tmpfs => "tmpfs",
            Backend::Fuse => "fuse",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "vfs" => Ok(Backend::Vfs),
            "tmpfs" => Ok(Backend::Tmpfs),
            "fuse" => Ok(Backend::Fuse),
            _ => Err(format!(
                "unknown backend `{s}`; expected vfs, tmpfs or fuse"
            )),
        }
    }
}

/// Room on the fuse backend's backing tmpfs beyond twice the quota: what
/// limbo and a ballast may hold at once beyond the files the quota counts.
const BACKING_SLACK: u64 = 64 << 20;

/// One scenario run's volume: a temporary directory holding the connector's
/// `root/` and a private `stash/` (and, on `vfs`, the crash model's `limbo/`),
/// removed with everything in it when the sandbox is dropped (also while
/// unwinding from a panic). On `tmpfs` the root is a mount, lazily unmounted
/// first. On `fuse` the root is a FUSE mount of `volume/backing/`, and
/// `volume/` (a tmpfs, sized twice the quota and then some) also holds
/// `stash/` and `limbo/`.
#[derive(Debug)]
pub struct Sandbox {
    engine: Arc<engine::Engine>,
    root: PathBuf,
    backend: Backend,
    /// The tmpfs on `root`; dropped (unmounted) before `dir`.
    #[expect(dead_code, reason = "held only to be unmounted when dropped")]
    mount: Option<mount::TmpfsMount>,
    /// The FUSE mount on `root`, replaced by a crash; dropped before `dir`.
    fuse: Mutex<Option<fuse::FuseMount>>,
    /// On `fuse`, the tmpfs holding the backing tree, the stash and limbo;
    /// unmounted after the FUSE mount, before `dir`.
    #[expect(dead_code, reason = "held only to be unmounted when dropped")]
    volume: Option<mount::TmpfsMount>,
    /// Declared after `mount` and `fuse` so it is dropped after; its drop
    /// removes the directory.
    dir: TempDir,
    /// Tells other processes that this sandbox's owner lives; released last.
    _owner: owner::OwnerLock,
}

impl Drop for Sandbox {
    /// Operations parked by a [`Strike::Halt`] return an error now (and every
    /// later one fails), so no thread waits for a sandbox that is gone.
    fn drop(&mut self) {
        self.engine.release();
    }
}

impl Sandbox {
    /// Creates a fresh, empty sandbox on the `vfs` backend.
    pub fn new(config: SandboxConfig) -> io::Result<Sandbox> {
        Sandbox::with_backend(config, Backend::Vfs)
    }

    /// Creates a fresh, empty sandbox on `backend`.
    ///
    /// A `tmpfs` sandbox fails unless the process has entered its private
    /// mount namespace ([`enter_private_mount_namespace`]), and needs a quota
    /// of at least one [`BLOCK`] (a tmpfs of size 0 would be unlimited).
    ///
    /// The directory is `imc-sandbox-<pid>-XXXXXX` in the temporary folder, with
    /// a lock its owner holds ([`remove_stale_sandboxes`] removes those of dead
    /// processes). A quota the host cannot hold (more than the free space there
    /// on `vfs`, more than the available memory on `tmpfs`) is refused, and so is
    /// any sandbox once [`remove_own_sandboxes`] ran.
    pub fn with_backend(config: SandboxConfig, backend: Backend) -> io::Result<Sandbox> {
        let (dir, owner) = owner::create_dir()?;
        owner::check_capacity(dir.path(), config.quota, backend != Backend::Vfs)?;
        // Canonical, so that the connector's paths (built from `root()`) and the
        // lexical containment check agree even if the temp dir is behind a symlink.
        let base = dir.path().canonicalize()?;
        let root = base.join("root");
        std::fs::create_dir(&root)?;
        // On fuse, the backing tree, the stash and limbo share a tmpfs of
        // their own: the daemon's cost is then FUSE's, not the host disk's
        // (ext4's inode allocation alone made `imc serve` several times slower).
        let (vol, volume) = match backend {
            Backend::Vfs | Backend::Tmpfs => (base.clone(), None),
            Backend::Fuse => {
                let vol = base.join("volume");
                std::fs::create_dir(&vol)?;
                let size = quota::whole_blocks(
                    config.quota.saturating_mul(2).saturating_add(BACKING_SLACK),
                );
                let mount = mount::TmpfsMount::new(&vol, size).map_err(|e| {
                    io::Error::new(e.kind(), format!("fuse backend: the backing volume: {e}"))
                })?;
                (vol, Some(mount))
            }
        };
        let stash = vol.join("stash");
        std::fs::create_dir(&stash)?;
        let mount = match backend {
            Backend::Vfs | Backend::Fuse => {
                std::fs::create_dir(vol.join("limbo"))?;
                None
            }
            Backend::Tmpfs => Some(mount::TmpfsMount::new(
                &root,
                quota::whole_blocks(config.quota),
            )?),
        };
        let (accounting, tree) = match backend {
            Backend::Vfs => (engine::Accounting::Quota, root.clone()),
            Backend::Tmpfs => (engine::Accounting::Kernel, root.clone()),
            // The engine guards the backing tree; processes see it at `root`.
            Backend::Fuse => (engine::Accounting::Quota, vol.join("backing")),
        };
        if backend == Backend::Fuse {
            std::fs::create_dir(&tree)?;
        }
        let engine = Arc::new(engine::Engine::new(
            base,
            tree,
            stash,
            config.quota,
            accounting,
        ));
        let fuse = match backend {
            Backend::Fuse => Some(fuse::FuseMount::new(&root, Arc::clone(&engine))?),
            Backend::Vfs | Backend::Tmpfs => None,
        };
        Ok(Sandbox {
            engine,
            root,
            backend,
            mount,
            fuse: Mutex::new(fuse),
            volume,
            dir,
            _owner: owner,
        })
    }

    /// What holds the volume.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Simulates a power loss, as LazyFS would: on the `vfs` backend, drops on
    /// the real disk everything the connector did not make durable (unsynced
    /// file data, directory entries created, renamed or removed since the
    /// directory's last `sync_dir`; see the rules in the `crash` module) and
    /// describes what was dropped, one line per change, root-relative, in a
    /// deterministic order (empty if nothing was lost). Call it once the
    /// connector's tasks are gone; the state after it is the new durable
    /// baseline, and after a [`Strike::Halt`] a new connector may use the disk
    /// (the halted one's operations stay parked). On `tmpfs` it changes nothing
    /// (the kernel's page cache survives a process crash) and says so in the one
    /// line it returns. On `fuse` it unmounts, drops from the backing tree what
    /// `vfs` would, and mounts again, so that no page cache survives either (a
    /// failed remount is told in a last line).
    pub fn crash(&self) -> Vec<String> {
        if self.backend != Backend::Fuse {
            return self.engine.crash();
        }
        let mut fuse = self.fuse.lock().unwrap_or_else(PoisonError::into_inner);
        // The daemon's threads parked by a halt must be free for the unmount.
        self.engine.drain_parked();
        drop(fuse.take());
        let mut lines = self.engine.crash();
        match fuse::FuseMount::new(&self.root, Arc::clone(&self.engine)) {
            Ok(mount) => *fuse = Some(mount),
            Err(e) => lines.push(format!("could not mount the volume again: {e}")),
        }
        lines
    }

    /// The connector's root directory (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the volume's files can be inspected without making an operation
    /// on it: the root on `vfs` and `tmpfs`; on `fuse` the backing directory
    /// (reading through the mount would be logged and counted by the rules,
    /// as anything the daemon serves is).
    pub fn tree(&self) -> &Path {
        self.engine.root()
    }

    /// The sandbox's temporary directory, which holds `root/` and `stash/`
    /// (on `fuse`, `volume/stash/`, beside the backing tree).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The filesystem to give a connector process: a handle of the process
    /// that may use the disk now. After a [`Sandbox::crash`] the calls of
    /// every handle taken before it park for good (a killed process's calls
    /// never return, and a task of it that had not started yet never reaches
    /// the disk), so a restarted connector needs a new one.
    pub fn fs(&self) -> Arc<FaultyFs> {
        // On fuse the daemon admits every call: the in-process door stays open.
        Arc::new(FaultyFs::new(
            Arc::clone(&self.engine),
            self.backend == Backend::Fuse,
        ))
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
        self.engine.apply(fault)
    }

    /// The latest fault on the tree (`Remove`, `Rename`, `Replace`, made by a
    /// step or by a trigger) not undone yet, described as the disk is now.
    /// Restoring (or, when it cannot be, forgetting) each in turn, until none
    /// is left, undoes any sequence of faults in reverse order, as a backup job
    /// putting everything back would.
    pub fn next_restore(&self) -> Option<Displacement> {
        self.engine.next_restore()
    }

    /// Drops the latest undo record of `path` without touching the disk, after
    /// a `Restore` of it failed, so the faults made before it can still be undone.
    pub fn forget_restore(&self, path: &str) {
        self.engine.forget_restore(path)
    }

    /// Arms `fault` to be applied right before the `nth` operation matching
    /// `trigger` (counted from now) reaches the disk; that operation then sees
    /// the changed disk. The fault's paths and rule are checked now. What the
    /// fault did is collected by [`Sandbox::take_fired`].
    pub fn arm(&self, trigger: OpTrigger, fault: Fault) -> Result<(), SandboxError> {
        self.engine.arm(&trigger, fault)
    }

    /// Arms a trigger on the `nth` operation matching `trigger` (counted from
    /// now), to strike before it reaches the disk or once it has completed (see
    /// [`At`]), with a fault or a halt of the connector's process (see
    /// [`Strike`]). Returns the trigger's id, as [`Sandbox::disarm`] reports it.
    pub fn arm_at(
        &self,
        trigger: OpTrigger,
        at: At,
        strike: Strike,
    ) -> Result<usize, SandboxError> {
        self.engine.arm_at(&trigger, at, strike)
    }

    /// Fires the [`At::After`] triggers whose operation has completed with no
    /// operation since (call it once the connector is idle).
    pub fn settle_triggers(&self) {
        self.engine.settle_triggers()
    }

    /// Disarms every trigger that has not fired and returns their ids.
    pub fn disarm(&self) -> Vec<usize> {
        self.engine.disarm()
    }

    /// Sets the callback told of each strike of an armed trigger, on the
    /// connector's thread, right before it is carried out (to hear of a halt at
    /// once, or to read what a `remove` is about to take away).
    pub fn on_strike(&self, f: impl Fn(&Strike) + Send + Sync + 'static) {
        self.engine
            .on_strike(rule::OnStrike(std::sync::Arc::new(f)))
    }

    /// [`Sandbox::take_fired`], each description followed by where it fired
    /// (`renamed directory imcdata/in -> imcdata/in.bak before sync_dir
    /// imcdata/in (#1)`; a halt reads `crash before ...`) and paired with its
    /// trigger's id (as [`Sandbox::arm_at`] returned it).
    pub fn take_fired_by_id(&self) -> Vec<(usize, String)> {
        self.engine.take_fired_by_id()
    }

    /// True from a [`Strike::Halt`] until [`Sandbox::crash`].
    pub fn halted(&self) -> bool {
        self.engine.halted()
    }

    /// How many calls wait now at the halt gate, never to reach the disk: those
    /// of a halted process, and those a crashed process made through a handle
    /// taken before the crash (see [`Sandbox::fs`]).
    pub fn parked(&self) -> usize {
        self.engine.parked()
    }

    /// [`Sandbox::fs`] as a function that outlives a borrow of the sandbox:
    /// what a connector restarted after a crash takes its new handle from.
    pub fn fs_source(&self) -> impl Fn() -> Arc<FaultyFs> + Send + Sync + 'static {
        let engine = Arc::clone(&self.engine);
        let direct = self.backend == Backend::Fuse;
        move || Arc::new(FaultyFs::new(Arc::clone(&engine), direct))
    }

    /// [`Sandbox::halted`] as a function that outlives a borrow of the
    /// sandbox (for a wait that races the halt).
    pub fn halted_probe(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let engine = Arc::clone(&self.engine);
        move || engine.halted()
    }

    /// Descriptions of the armed faults that fired since the last call, in
    /// firing order (a fault that could not be applied is described as such).
    pub fn take_fired(&self) -> Vec<String> {
        self.engine.take_fired()
    }

    /// A copy of the log of every operation made through [`Sandbox::fs`].
    pub fn ops(&self) -> Vec<OpRecord> {
        self.engine.ops()
    }

    /// The number of operations made through [`Sandbox::fs`] so far.
    pub fn op_count(&self) -> usize {
        self.engine.op_count()
    }

    /// The operations logged since the last call, as a function that outlives
    /// a borrow of the sandbox: what a process target's quiet window watches.
    pub fn op_watcher(&self) -> impl FnMut() -> Vec<OpRecord> + Send + 'static {
        let engine = Arc::clone(&self.engine);
        let mut seen = 0;
        move || {
            if engine.op_count() <= seen {
                return Vec::new();
            }
            let mut new = engine.ops();
            let new = new.split_off(seen.min(new.len()));
            seen += new.len();
            new
        }
    }

    /// The operations refused for naming a path outside the root
    /// (`create <sandbox>/stash/x`), in order.
    pub fn violations(&self) -> Vec<String> {
        self.engine.violations()
    }

    /// The volume's size in bytes: the configured quota rounded down to whole
    /// [`BLOCK`]s.
    pub fn quota(&self) -> u64 {
        self.engine.quota()
    }

    /// The free space the connector would be told, read without logging an
    /// operation (so checks do not shift op counts).
    pub fn available_space(&self) -> u64 {
        self.engine.available()
    }
}

/// A fault on the tree not undone yet (see [`Sandbox::next_restore`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Displacement {
    /// The root-relative path the fault was applied to.
    pub path: String,
    /// It was a file that was removed: a `Restore` would bring back an empty
    /// file, not its contents, so a recovery leaves it gone. (A removed
    /// directory comes back empty; a renamed or replaced path comes back whole.)
    pub removed_file: bool,
    /// What the fault set aside is gone (a later fault removed the place it
    /// was renamed to): there is nothing left to put back.
    pub vanished: bool,
}
