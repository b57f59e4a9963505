//! The rule engine: the one place that admits, faults, counts and records the
//! operations on a sandbox volume, whichever door they come in by.
//!
//! Two front doors call it: [`FaultyFs`](crate::FaultyFs), the in-process
//! wrapper of the connector's `Fs` trait, and the FUSE daemon (module `fuse`),
//! which serves every process using the mount. Each door does the real call
//! itself (`std::fs` on the path, or a syscall on the backing tree) inside the
//! closure it hands to the matching method here; everything around that call
//! is the engine's:
//!
//! * **admission** ([`Engine::admit`]): refused if it leaves the root
//!   (containment), logged, counted by the armed triggers (whose faults are
//!   applied right then, so the call sees the changed disk), then counted by
//!   the errno rules (which may fail it untouched);
//! * **settling** ([`Engine::settle`]): the outcome goes into the log;
//! * the **quota** (a block quota on `vfs` and `fuse`, the kernel's on
//!   `tmpfs`): writes are cut to it, removals and truncations give blocks back;
//! * the **crash journal** ([`Journal`]): the operations that change what is
//!   on stable storage are recorded around the real call.
//!
//! Without rules or triggers that costs one lock to admit and one to record the
//! outcome.
//!
//! Locks are taken in one order: the faults' lock, then the journal, then the
//! disk's undo record, then the state. A fault holds the faults' lock from its
//! change of the tree to the quota's recount, so two faults applied at once
//! (triggers fire on the connector's threads) never keep a stale count; it
//! holds the journal while it changes the tree, so the crash model can tell its
//! changes from the connector's.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use imc::fs::OpKind;

use crate::crash::{FileId, Journal};
use crate::disk::Disk;
use crate::paths::relative;
use crate::quota::{self, Quota, charged};
use crate::rule::{ArmedRule, At, Firing, Halt, OnStrike, Strike, Triggers};
use crate::{Caller, Errno, Fault, OpRecord, OpTrigger, Outcome, SandboxError};

/// The rules, triggers, quota, log and crash journal of one sandbox volume.
#[derive(Debug)]
pub(crate) struct Engine {
    /// The sandbox's temporary directory, only to show stray paths without the
    /// random part of its name.
    base: PathBuf,
    /// The tree the engine guards: the sandbox root (`vfs`, `tmpfs`) or the
    /// FUSE mount's backing directory (`fuse`).
    root: PathBuf,
    disk: Disk,
    /// Held by each fault (and a crash) from its change of the tree to the
    /// quota's recount, which must be one step.
    faults: Mutex<()>,
    /// The crash model; not on `tmpfs`.
    journal: Option<Mutex<Journal>>,
    state: Mutex<State>,
    /// Where a halted process's operations wait (see [`Strike::Halt`]).
    halt: Halt,
    /// Told of each strike of a trigger before it is carried out.
    on_strike: Mutex<Option<OnStrike>>,
}

/// Who keeps the volume's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Accounting {
    /// The engine: a block quota, and the crash model (`vfs`, `fuse`).
    Quota,
    /// The kernel: a real size-limited volume, no crash model (`tmpfs`).
    Kernel,
}

/// Everything the operations update. Never held across a fault's application:
/// applying a fault takes this lock itself.
#[derive(Debug)]
struct State {
    space: Space,
    /// Files open through [`OpenFile`]s, by inode (quota accounting only).
    open: HashMap<u64, OpenInode>,
    /// Open files whose last name under the root is gone: like a kernel, the
    /// quota keeps charging them until their last handle closes.
    orphans: HashSet<u64>,
    rules: Vec<ArmedRule>,
    triggers: Triggers,
    log: Vec<OpRecord>,
    violations: Vec<String>,
    /// Fired triggers: id, what was done, where (`before sync_dir imcdata/in (#1)`).
    fired: Vec<(usize, String, String)>,
}

/// An inode open through one or more [`OpenFile`]s.
#[derive(Debug)]
struct OpenInode {
    handles: usize,
    /// Its length as of the last write through a handle.
    len: u64,
}

/// Who keeps the volume's size, and the count.
#[derive(Debug)]
enum Space {
    /// The sandbox's block quota.
    Quota(Quota),
    /// The kernel; `limit` is the mount's size.
    Kernel { limit: u64 },
}

/// An operation let through to the disk: the state, still locked so the caller
/// can reserve quota atomically, and the operation's slot in the log.
pub(crate) struct Admitted<'a> {
    state: MutexGuard<'a, State>,
    index: usize,
}

/// A file opened for writing by an admitted `create`: what the engine needs to
/// admit and account the writes and syncs made through it. Pass it to
/// [`Engine::closed`] when the handle goes.
#[derive(Debug)]
pub(crate) struct OpenFile {
    /// The path it was created at; its writes and syncs are logged under it.
    path: PathBuf,
    /// The file's inode, for the quota's count of open files.
    ino: Option<u64>,
    /// The file as the crash model knows it.
    id: Option<FileId>,
}

impl OpenFile {
    /// The path its operations are logged under.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A file opened without being created or truncated (on the FUSE mount):
    /// its writes and syncs are admitted and logged like any other, but the
    /// crash model keeps it as it was found (durable), and the quota charges
    /// it from the tree.
    pub(crate) fn opened(path: PathBuf) -> OpenFile {
        OpenFile {
            path,
            ino: None,
            id: None,
        }
    }
}

impl Engine {
    /// An engine guarding `root`, on a volume of `limit` bytes. `base` is the
    /// sandbox directory; with quota accounting, the crash model's `limbo` is
    /// beside `stash` (both on `root`'s volume).
    pub(crate) fn new(
        base: PathBuf,
        root: PathBuf,
        stash: PathBuf,
        limit: u64,
        accounting: Accounting,
    ) -> Engine {
        let (space, journal) = match accounting {
            Accounting::Quota => (
                Space::Quota(Quota::new(limit, quota::usage(&root))),
                Some(Mutex::new(Journal::new(
                    root.clone(),
                    stash.with_file_name("limbo"),
                    stash.clone(),
                ))),
            ),
            Accounting::Kernel => (
                Space::Kernel {
                    limit: quota::whole_blocks(limit),
                },
                None,
            ),
        };
        Engine {
            base,
            disk: Disk::new(root.clone(), stash),
            faults: Mutex::new(()),
            root,
            journal,
            state: Mutex::new(State {
                space,
                open: HashMap::new(),
                orphans: HashSet::new(),
                rules: Vec::new(),
                triggers: Triggers::default(),
                log: Vec::new(),
                violations: Vec::new(),
                fired: Vec::new(),
            }),
            halt: Halt::default(),
            on_strike: Mutex::new(None),
        }
    }

    /// The tree the engine guards.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    // ---- the sandbox's controls ----

    /// See [`Sandbox::arm`](crate::Sandbox::arm).
    pub(crate) fn arm(&self, trigger: &OpTrigger, fault: Fault) -> Result<(), SandboxError> {
        self.arm_at(trigger, At::Before, Strike::Fault(fault))
            .map(drop)
    }

    /// See [`Sandbox::arm_at`](crate::Sandbox::arm_at).
    pub(crate) fn arm_at(
        &self,
        trigger: &OpTrigger,
        at: At,
        strike: Strike,
    ) -> Result<usize, SandboxError> {
        if let Strike::Fault(fault) = &strike {
            self.validate(fault)?;
        }
        self.lock().triggers.arm(trigger, at, strike)
    }

    /// See [`Sandbox::settle_triggers`](crate::Sandbox::settle_triggers).
    pub(crate) fn settle_triggers(&self) {
        let due = self.lock().triggers.take_pending();
        self.strike(due);
    }

    /// See [`Sandbox::disarm`](crate::Sandbox::disarm).
    pub(crate) fn disarm(&self) -> Vec<usize> {
        self.lock().triggers.disarm()
    }

    /// See [`Sandbox::on_strike`](crate::Sandbox::on_strike).
    pub(crate) fn on_strike(&self, f: OnStrike) {
        *self
            .on_strike
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(f);
    }

    /// See [`Sandbox::halted`](crate::Sandbox::halted).
    pub(crate) fn halted(&self) -> bool {
        self.halt.is_halted()
    }

    /// See [`Sandbox::parked`](crate::Sandbox::parked).
    pub(crate) fn parked(&self) -> usize {
        self.halt.parked()
    }

    /// The generation of the process that may use the disk now: handles of
    /// the in-process door are stamped with it.
    pub(crate) fn generation(&self) -> u64 {
        self.halt.generation()
    }

    /// Lets a call through a handle of process `generation` go on, or parks
    /// it for good if that process has crashed since (see [`Halt::gate_for`](crate::rule::Halt::gate_for)).
    pub(crate) fn live(&self, generation: u64) -> io::Result<()> {
        self.halt.gate_for(generation)
    }

    /// Unparks a halted process's operations for good (the sandbox is going away).
    pub(crate) fn release(&self) {
        self.halt.release();
    }

    /// Makes the halted process's operations parked so far return an error,
    /// without reaching the disk (before a FUSE mount is taken down).
    pub(crate) fn drain_parked(&self) {
        self.halt.drain();
    }

    /// See [`Sandbox::next_restore`](crate::Sandbox::next_restore).
    pub(crate) fn next_restore(&self) -> Option<crate::Displacement> {
        self.disk.next_restore()
    }

    /// See [`Sandbox::forget_restore`](crate::Sandbox::forget_restore).
    pub(crate) fn forget_restore(&self, path: &str) {
        self.disk.forget(path)
    }

    /// A copy of the operation log.
    pub(crate) fn ops(&self) -> Vec<OpRecord> {
        self.lock().log.clone()
    }

    /// The number of operations logged so far.
    pub(crate) fn op_count(&self) -> usize {
        self.lock().log.len()
    }

    /// The operations refused for leaving the root.
    pub(crate) fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// Descriptions of the triggered faults applied since the last call.
    pub(crate) fn take_fired(&self) -> Vec<String> {
        let fired = std::mem::take(&mut self.lock().fired);
        fired.into_iter().map(|(_, done, _)| done).collect()
    }

    /// The same, each with its trigger's id and where it fired.
    pub(crate) fn take_fired_by_id(&self) -> Vec<(usize, String)> {
        let fired = std::mem::take(&mut self.lock().fired);
        fired
            .into_iter()
            .map(|(id, done, place)| (id, format!("{done} {place}")))
            .collect()
    }

    /// Free bytes, without logging an operation (0 if the kernel cannot say).
    pub(crate) fn available(&self) -> u64 {
        self.free_space().unwrap_or(0)
    }

    /// The volume's size in bytes (whole blocks).
    pub(crate) fn quota(&self) -> u64 {
        self.lock().space.limit()
    }

    /// See [`Sandbox::crash`](crate::Sandbox::crash): drops from the tree what
    /// the crash model says is not durable.
    pub(crate) fn crash(&self) -> Vec<String> {
        // First of all: no call of the dead process reaches the disk from now on.
        self.halt.end_generation();
        let faults = self.lock_faults();
        let Some(mut journal) = self.journal() else {
            self.halt.resume();
            return vec![
                "nothing dropped: the tmpfs backend has no crash model \
                 (the kernel keeps page-cache data, so everything written survives)"
                    .to_owned(),
            ];
        };
        let lines = journal.crash();
        drop(journal);
        self.recount(&faults);
        self.halt.resume();
        lines
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not turn every later call into a panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The faults' lock: see the module documentation. Take it first.
    fn lock_faults(&self) -> MutexGuard<'_, ()> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The crash model, locked; `None` on `tmpfs`. Take it before the state.
    fn journal(&self) -> Option<MutexGuard<'_, Journal>> {
        self.journal
            .as_ref()
            .map(|j| j.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Free bytes on the volume: the quota's, or the kernel's `statvfs`.
    fn free_space(&self) -> io::Result<u64> {
        let quota = match &self.lock().space {
            Space::Quota(quota) => Some(quota.available()),
            Space::Kernel { .. } => None,
        };
        quota.map_or_else(|| fs4::available_space(&self.root), Ok)
    }

    /// Recounts the quota from the tree (faults change it behind the
    /// operations' backs). The caller holds the faults' lock, so no other
    /// fault changes the tree during the walk; the connector's operations may
    /// go on meanwhile (the state lock is not held while walking).
    fn recount(&self, _faults: &MutexGuard<'_, ()>) {
        if matches!(self.lock().space, Space::Kernel { .. }) {
            return;
        }
        let mut inodes = HashSet::new();
        let used = quota::usage_and_inodes(&self.root, &mut inodes);
        let state = &mut *self.lock();
        // Open files a fault took out of the root still take their blocks.
        state.orphans = state
            .open
            .keys()
            .copied()
            .filter(|ino| !inodes.contains(ino))
            .collect();
        let orphaned: u64 = state
            .orphans
            .iter()
            .map(|ino| charged(state.open[ino].len))
            .sum();
        if let Space::Quota(quota) = &mut state.space {
            quota.recount(used + orphaned);
        }
    }

    /// Checks a fault's paths and rule without applying it, so that a trigger
    /// with a malformed fault is refused when armed rather than when it fires.
    fn validate(&self, fault: &Fault) -> Result<(), SandboxError> {
        match fault {
            Fault::Remove { path } | Fault::Replace { path } | Fault::Restore { path } => {
                self.disk.resolve(path).map(drop)
            }
            Fault::Rename { from, to } => {
                self.disk.resolve(from)?;
                self.disk.resolve(to).map(drop)
            }
            Fault::Errno(rule) => ArmedRule::new(rule).map(drop),
            Fault::FillDisk { .. } | Fault::FreeDisk | Fault::ClearErrno => Ok(()),
        }
    }

    /// Applies `fault`, then recounts the quota from the tree, since faults
    /// change it behind the operations' backs, and tells the crash model what
    /// the fault changed (durable at once). Must be called without the state
    /// lock held.
    pub(crate) fn apply(&self, fault: &Fault) -> Result<String, SandboxError> {
        let faults = self.lock_faults();
        let changes_tree = !matches!(fault, Fault::Errno(_) | Fault::ClearErrno);
        let mut journal = if changes_tree { self.journal() } else { None };
        let before = journal.as_ref().map(|j| j.scan());
        let result = match fault {
            Fault::Remove { path } => self.disk.remove(path),
            Fault::Rename { from, to } => self.disk.rename(from, to),
            Fault::Replace { path } => self.disk.replace(path),
            Fault::Restore { path } => self.disk.restore(path),
            Fault::FillDisk { leave } => {
                let limit = self.lock().space.limit();
                let kernel = matches!(self.lock().space, Space::Kernel { .. });
                let free = || {
                    if !kernel {
                        // Fresh from the tree (and the open files removed from it).
                        self.recount(&faults);
                    }
                    self.free_space()
                };
                self.disk.fill(limit, free, *leave)
            }
            Fault::FreeDisk => self.disk.free(),
            Fault::Errno(rule) => ArmedRule::new(rule).map(|armed| {
                self.lock().rules.push(armed);
                format!("installed errno rule: {rule}")
            }),
            Fault::ClearErrno => {
                let cleared = std::mem::take(&mut self.lock().rules).len();
                Ok(format!("cleared {cleared} errno rule(s)"))
            }
        };
        if let (Some(journal), Some(before)) = (journal.as_mut(), before) {
            let after = journal.scan();
            journal.after_fault(&before, &after);
        }
        drop(journal);
        self.recount(&faults);
        result
    }

    /// How a path appears in the log: root-relative when inside the root, else
    /// as given, with the sandbox directory's random name hidden.
    fn display(&self, path: &Path) -> String {
        if let Some(rel) = relative(&self.root, path) {
            rel
        } else if let Ok(rest) = path.strip_prefix(&self.base) {
            Path::new("<sandbox>").join(rest).display().to_string()
        } else {
            path.display().to_string()
        }
    }

    // ---- admission: the one place rules and triggers are consulted ----

    /// Lets a call that is not an operation of the log (opening a directory
    /// handle, `what`) go on: it waits while the process is halted, and a path
    /// outside the root is refused with `EACCES` and recorded as a violation.
    pub(crate) fn contain(&self, what: &str, path: &Path) -> io::Result<()> {
        self.halt.gate()?;
        if relative(&self.root, path).is_none() {
            let call = format!("{what} {}", self.display(path));
            self.lock().violations.push(call);
            return Err(Errno::Eacces.to_io_error());
        }
        Ok(())
    }

    /// Admits an operation on `path` (and `to`, for a rename) made by `caller`
    /// (`None`: the in-process connector): see the module documentation. On
    /// refusal the operation is logged with its outcome and the error to
    /// return is given.
    fn admit(
        &self,
        op: OpKind,
        path: &Path,
        to: Option<&Path>,
        caller: Option<&Caller>,
    ) -> io::Result<Admitted<'_>> {
        self.halt.gate()?;
        let rel = relative(&self.root, path);
        let rel_to = match to {
            None => Some(None),
            Some(to) => relative(&self.root, to).map(Some),
        };
        // `None` on either side: a path that leaves the root.
        let (Some(rel), Some(rel_to)) = (rel, rel_to) else {
            let record = OpRecord {
                op,
                path: self.display(path),
                to: to.map(|to| self.display(to)),
                outcome: Outcome::OutsideRoot,
                caller: caller.cloned(),
            };
            let mut state = self.lock();
            state.violations.push(record.call());
            state.log.push(record);
            return Err(Errno::Eacces.to_io_error());
        };
        let paths: Vec<&str> = [Some(rel.as_str()), rel_to.as_deref()]
            .into_iter()
            .flatten()
            .collect();

        let mut state = self.lock();
        let index = state.log.len();
        state.log.push(OpRecord {
            op,
            path: rel.clone(),
            to: rel_to.clone(),
            outcome: Outcome::Pending,
            caller: caller.cloned(),
        });
        let process = caller.map(|c| c.process.as_str());
        let due = if state.triggers.is_idle() {
            Vec::new()
        } else {
            let call = state.log[index].call();
            state.triggers.admit(op, &paths, process, &call)
        };
        if !due.is_empty() {
            drop(state);
            self.strike(due);
            // A halt stops this very operation before it reaches the disk.
            self.halt.gate()?;
            state = self.lock();
        }
        // Every rule counts the operation, even once an earlier one has struck.
        let struck = state.rules.iter_mut().fold(None, |first, rule| {
            first.or(rule.strike(op, &paths, process))
        });
        if let Some(errno) = struck {
            state.log[index].outcome = Outcome::Injected(errno);
            return Err(errno.to_io_error());
        }
        Ok(Admitted { state, index })
    }

    /// Carries out fired triggers, in order, and records what each did. Must be
    /// called without the state lock held.
    fn strike(&self, due: Vec<Firing>) {
        let told = self
            .on_strike
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for Firing { id, strike, place } in due {
            match strike {
                Strike::Halt => {
                    // Recorded before anyone hears of the halt.
                    self.lock().fired.push((id, "crash".to_owned(), place));
                    self.halt.halt();
                    if let Some(f) = &told {
                        (f.0)(&Strike::Halt);
                    }
                }
                Strike::Fault(fault) => {
                    let strike = Strike::Fault(fault);
                    if let Some(f) = &told {
                        (f.0)(&strike);
                    }
                    let Strike::Fault(fault) = strike else {
                        unreachable!("built just above")
                    };
                    let done = self
                        .apply(&fault)
                        .unwrap_or_else(|e| format!("could not apply `{fault}`: {e}"));
                    self.lock().fired.push((id, done, place));
                }
            }
        }
    }

    /// Records how an admitted operation ended.
    fn settle<T>(&self, index: usize, result: &io::Result<T>) {
        self.lock().settle(index, result);
    }

    // ---- the operations, each around the real call its door makes ----

    /// `create(path)`: `open` creates or truncates the file for writing.
    pub(crate) fn create(
        &self,
        path: &Path,
        caller: Option<&Caller>,
        open: impl FnOnce() -> io::Result<File>,
    ) -> io::Result<(File, OpenFile)> {
        let index = self.admit(OpKind::Create, path, None, caller)?.index;
        let mut journal = self.journal();
        let truncating = journal.as_mut().and_then(|j| j.before_create(path));
        let truncated = regular_file(path).map_or(0, |(_, len)| len);
        let result = open();
        let id = match (&result, journal.as_mut()) {
            (Ok(file), Some(j)) => j.created(file, truncating),
            _ => None,
        };
        drop(journal);
        let mut state = self.lock();
        state.settle(index, &result);
        let file = result?;
        state.release(truncated);
        let ino = file.metadata().map(|m| m.ino()).ok();
        if let Some(ino) = ino {
            state.opened(ino);
        }
        let open = OpenFile {
            path: path.to_owned(),
            ino,
            id,
        };
        Ok((file, open))
    }

    /// `rename(from, to)`: `rename` does it. With `exchange`
    /// (`RENAME_EXCHANGE`) both names stay, swapped, so nothing is overwritten.
    pub(crate) fn rename(
        &self,
        from: &Path,
        to: &Path,
        exchange: bool,
        caller: Option<&Caller>,
        rename: impl FnOnce() -> io::Result<()>,
    ) -> io::Result<()> {
        self.rename_at((from, to), (from, to), exchange, caller, rename)
    }

    /// [`Engine::rename`] admitted, logged and counted as `shown`, with the
    /// crash model and the quota on `real`: the same paths, or a directory
    /// handle's entry reached through `/proc/self/fd` wherever it is now.
    pub(crate) fn rename_at(
        &self,
        shown: (&Path, &Path),
        (from, to): (&Path, &Path),
        exchange: bool,
        caller: Option<&Caller>,
        rename: impl FnOnce() -> io::Result<()>,
    ) -> io::Result<()> {
        let index = self
            .admit(OpKind::Rename, shown.0, Some(shown.1), caller)?
            .index;
        let mut journal = self.journal();
        let overwritten_ino = journal
            .as_mut()
            .and_then(|j| j.before_rename(from, to))
            .filter(|_| !exchange);
        // A rename onto an existing file drops that file, and its blocks.
        let same = match (fs::symlink_metadata(from), fs::symlink_metadata(to)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        let overwritten = if same || exchange {
            None
        } else {
            regular_file(to)
        };
        let result = rename();
        if let (Ok(()), Some(j), Some(ino)) = (&result, journal.as_mut(), overwritten_ino) {
            j.unlinked(ino);
        }
        drop(journal);
        let mut state = self.lock();
        state.settle(index, &result);
        if let (Ok(()), Some(file)) = (&result, overwritten) {
            state.unlinked(file);
        }
        result
    }

    /// `remove_file(path)` (and, from FUSE, `rmdir`): `remove` does it.
    pub(crate) fn remove(
        &self,
        path: &Path,
        caller: Option<&Caller>,
        remove: impl FnOnce() -> io::Result<()>,
    ) -> io::Result<()> {
        self.remove_at(path, path, caller, remove)
    }

    /// [`Engine::remove`] admitted as `shown`, of the file at `path` (see
    /// [`Engine::rename_at`]).
    pub(crate) fn remove_at(
        &self,
        shown: &Path,
        path: &Path,
        caller: Option<&Caller>,
        remove: impl FnOnce() -> io::Result<()>,
    ) -> io::Result<()> {
        let index = self.admit(OpKind::Remove, shown, None, caller)?.index;
        let mut journal = self.journal();
        let ino = journal.as_mut().and_then(|j| j.before_remove(path));
        let removed = regular_file(path);
        let result = remove();
        if let (Ok(()), Some(j), Some(ino)) = (&result, journal.as_mut(), ino) {
            j.unlinked(ino);
        }
        drop(journal);
        let mut state = self.lock();
        state.settle(index, &result);
        if let (Ok(()), Some(file)) = (&result, removed) {
            state.unlinked(file);
        }
        result
    }

    /// `create_dir(path)`: `create` does it.
    pub(crate) fn create_dir(
        &self,
        path: &Path,
        caller: Option<&Caller>,
        create: impl FnOnce() -> io::Result<()>,
    ) -> io::Result<()> {
        let index = self.admit(OpKind::CreateDir, path, None, caller)?.index;
        let mut journal = self.journal();
        if let Some(j) = journal.as_mut() {
            j.before_create_dir(path);
        }
        let result = create();
        if let (Ok(()), Some(j)) = (&result, journal.as_mut()) {
            j.created_dir(path);
        }
        drop(journal);
        self.settle(index, &result);
        result
    }

    /// `sync_dir(path)`. `sync` is told whether the crash model records the
    /// sync: then durability is the journal's to decide and the sandbox is
    /// thrown away, so a real fsync would only make runs slow and dependent on
    /// the host's disk (opening the path must still fail as it would).
    pub(crate) fn sync_dir(
        &self,
        path: &Path,
        caller: Option<&Caller>,
        sync: impl FnOnce(bool) -> io::Result<()>,
    ) -> io::Result<()> {
        self.sync_dir_at(path, path, caller, sync)
    }

    /// [`Engine::sync_dir`] admitted as `shown`, of the directory at `path`
    /// (see [`Engine::rename_at`]): that inode's entries become durable.
    pub(crate) fn sync_dir_at(
        &self,
        shown: &Path,
        path: &Path,
        caller: Option<&Caller>,
        sync: impl FnOnce(bool) -> io::Result<()>,
    ) -> io::Result<()> {
        let index = self.admit(OpKind::SyncDir, shown, None, caller)?.index;
        let mut journal = self.journal();
        let result = sync(journal.is_some());
        if let (Ok(()), Some(j)) = (&result, journal.as_mut()) {
            j.synced_dir(path);
        }
        drop(journal);
        self.settle(index, &result);
        result
    }

    /// An operation that changes nothing (`metadata`, `read_dir`): `look` does it.
    pub(crate) fn look<T>(
        &self,
        op: OpKind,
        path: &Path,
        caller: Option<&Caller>,
        look: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<T> {
        self.plain(op, path, None, caller, look)
    }

    /// An operation the engine admits and logs but whose effect neither the
    /// quota nor the crash model follows (on the FUSE mount: `lookup`, `read`,
    /// `chmod`, `link` and the like; `to` is a link's new name): `call` does it.
    pub(crate) fn plain<T>(
        &self,
        op: OpKind,
        path: &Path,
        to: Option<&Path>,
        caller: Option<&Caller>,
        call: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<T> {
        let index = self.admit(op, path, to, caller)?.index;
        let result = call();
        self.settle(index, &result);
        result
    }

    /// `available_space(path)`: the quota's free space (failing as `statvfs`
    /// would on a missing path), or the kernel's.
    pub(crate) fn available_space(&self, path: &Path, caller: Option<&Caller>) -> io::Result<u64> {
        let Admitted { state, index } = self.admit(OpKind::AvailableSpace, path, None, caller)?;
        let quota = match &state.space {
            Space::Quota(quota) => Some(quota.available()),
            Space::Kernel { .. } => None,
        };
        drop(state);
        let result = match quota {
            // statvfs fails on a missing path; so must the quota.
            Some(free) => fs::metadata(path).map(|_| free),
            None => fs4::available_space(path),
        };
        self.settle(index, &result);
        result
    }

    /// A write of `buf` to `file` through `handle`: at its end (`at: None`,
    /// the in-process connector's sequential writes) or at an offset (FUSE).
    /// Writes what the volume allows: all of `buf`, a prefix (a short write,
    /// as a kernel on a nearly full volume does: the rest of the file's last
    /// block and the free blocks), or nothing and `ENOSPC`; see the `quota`
    /// module for how this matches the kernel's page accounting.
    pub(crate) fn write(
        &self,
        handle: &OpenFile,
        file: &File,
        at: Option<u64>,
        buf: &[u8],
        caller: Option<&Caller>,
    ) -> io::Result<usize> {
        let Admitted { mut state, index } =
            self.admit(OpKind::Write, &handle.path, None, caller)?;
        let write = |part: &[u8]| match at {
            None => { file }.write(part),
            Some(offset) => file.write_at(part, offset),
        };
        if buf.is_empty() {
            state.log[index].outcome = Outcome::Ok;
            return Ok(0);
        }
        if !matches!(state.space, Space::Quota(_)) {
            drop(state);
            let result = write(buf);
            self.lock().settle_write(index, &result, buf.len());
            return result;
        }
        let len = match file.metadata() {
            Ok(meta) => meta.len(),
            Err(e) => {
                let result = Err(e);
                state.settle::<usize>(index, &result);
                return result;
            }
        };
        // Bytes overwritten inside the file cost nothing; the rest extends it
        // from `end` (a write past the end leaves a hole, charged nothing).
        let end = at.map_or(len, |offset| offset.max(len));
        let overlap =
            at.map_or(0, |offset| len.saturating_sub(offset).min(buf.len() as u64)) as usize;
        let Space::Quota(quota) = &mut state.space else {
            unreachable!("checked above");
        };
        let reservation = quota.reserve(end, buf.len() - overlap);
        let fit = overlap + reservation.fit;
        if fit == 0 {
            state.log[index].outcome = Outcome::QuotaFull;
            return Err(Errno::Enospc.to_io_error());
        }
        drop(state);
        let result = write(&buf[..fit]);
        let mut state = self.lock();
        let written = *result.as_ref().unwrap_or(&0);
        let grown = written.saturating_sub(overlap);
        if let Space::Quota(quota) = &mut state.space {
            quota.settle(end, reservation, grown);
        }
        if let Some(open) = handle.ino.and_then(|ino| state.open.get_mut(&ino)) {
            let new_len = end + grown as u64;
            open.len = if at.is_some() {
                open.len.max(new_len)
            } else {
                new_len
            };
        }
        state.settle_write(index, &result, buf.len());
        result
    }

    /// `sync_all` of `file` through `handle`. As for [`Engine::sync_dir`]: with
    /// the crash model the journal records the sync and the disk is spared.
    pub(crate) fn sync(
        &self,
        handle: &OpenFile,
        file: &File,
        caller: Option<&Caller>,
    ) -> io::Result<()> {
        let index = self.admit(OpKind::Sync, &handle.path, None, caller)?.index;
        let result = match &self.journal {
            // The length first: the journal's lock is held only to record it.
            Some(_) => Ok(file.metadata().ok().map(|meta| meta.len())),
            None => file.sync_all().map(|()| None),
        };
        if let (Ok(Some(len)), Some(mut j), Some(id)) = (&result, self.journal(), handle.id) {
            j.synced(id, *len);
        }
        let result = result.map(drop);
        self.settle(index, &result);
        result
    }

    /// A regular file of `old` bytes was cut to `new` (a `truncate` on the
    /// FUSE mount): the blocks past the new end come back. Growing leaves a
    /// hole, which costs nothing.
    pub(crate) fn truncated(&self, old: u64, new: u64) {
        if new < old {
            let mut state = self.lock();
            if let Space::Quota(quota) = &mut state.space {
                quota.release(charged(old) - charged(new));
            }
        }
    }

    /// The handle `handle` was closed: closing the last handle on a removed
    /// file frees its blocks.
    pub(crate) fn closed(&self, handle: &OpenFile) {
        if let Some(ino) = handle.ino {
            self.lock().closed(ino);
        }
    }
}

impl Space {
    fn limit(&self) -> u64 {
        match self {
            Space::Quota(quota) => quota.limit(),
            Space::Kernel { limit } => *limit,
        }
    }
}

impl State {
    fn settle<T>(&mut self, index: usize, result: &io::Result<T>) {
        self.log[index].outcome = match result {
            Ok(_) => Outcome::Ok,
            Err(e) => Outcome::Failed(crate::errno::error_name(e)),
        };
    }

    /// Records how a write of `requested` bytes ended.
    fn settle_write(&mut self, index: usize, result: &io::Result<usize>, requested: usize) {
        self.log[index].outcome = match result {
            Ok(written) if *written < requested => Outcome::ShortWrite {
                written: *written,
                requested,
            },
            Ok(_) => Outcome::Ok,
            // The kernel's own full volume (tmpfs) reads as the quota's.
            Err(e)
                if e.raw_os_error() == Some(libc::ENOSPC)
                    && matches!(self.space, Space::Kernel { .. }) =>
            {
                Outcome::QuotaFull
            }
            Err(e) => Outcome::Failed(crate::errno::error_name(e)),
        };
    }

    /// Gives back the blocks of a file of `len` bytes that was truncated;
    /// nothing to do when the kernel keeps count.
    fn release(&mut self, len: u64) {
        if let Space::Quota(quota) = &mut self.space {
            quota.release(charged(len));
        }
    }

    /// Accounts for the file `(ino, len)` losing its last name: its blocks
    /// come back now, or when its last handle closes if it is still open.
    fn unlinked(&mut self, (ino, len): (u64, u64)) {
        if self.open.contains_key(&ino) {
            self.orphans.insert(ino);
        } else {
            self.release(len);
        }
    }

    /// A handle on `ino` was opened by a `create`, which truncated the file.
    fn opened(&mut self, ino: u64) {
        if matches!(self.space, Space::Kernel { .. }) {
            return;
        }
        let open = self
            .open
            .entry(ino)
            .or_insert(OpenInode { handles: 0, len: 0 });
        open.handles += 1;
        open.len = 0;
    }

    /// A handle on `ino` was closed.
    fn closed(&mut self, ino: u64) {
        let Some(open) = self.open.get_mut(&ino) else {
            return;
        };
        open.handles -= 1;
        if open.handles == 0 {
            let len = open.len;
            self.open.remove(&ino);
            if self.orphans.remove(&ino) {
                self.release(len);
            }
        }
    }
}

/// The regular file at `path`, if there is one: its inode and length (what
/// removing or replacing it gives back to the quota, rounded up to blocks).
fn regular_file(path: &Path) -> Option<(u64, u64)> {
    fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| (m.ino(), m.len()))
}
