//! The fault-injecting filesystem handed to the connector.
//!
//! Every call is admitted in the same way before it reaches the disk: refused if
//! it leaves the root, logged, counted by the armed triggers (whose faults are
//! applied right then, so the call sees the changed disk), then counted by the
//! errno rules (which may fail it untouched). On the `vfs` backend writes are
//! further cut to the quota, and the operations that change what is on stable
//! storage are recorded by the crash model ([`Journal`]). Without rules or
//! triggers that costs one lock to admit and one to record the outcome.
//!
//! Locks are taken in one order: the journal, then the disk's undo record, then
//! the state. A fault holds the journal while it changes the tree, so the crash
//! model can tell its changes from the connector's.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use imc::fs::{Fs, FsFile, Metadata, OpKind, RealFs};

use crate::crash::{FileId, Journal};
use crate::disk::Disk;
use crate::paths::relative;
use crate::quota::{self, Quota, charged};
use crate::rule::{ArmedRule, At, Firing, Halt, OnStrike, Strike, Triggers};
use crate::{Backend, Errno, Fault, OpRecord, OpTrigger, Outcome, SandboxError};

/// The connector's filesystem inside a [`Sandbox`](crate::Sandbox): the real
/// disk under the sandbox root, with a block quota and a crash model (`vfs`
/// backend) or the kernel's own tmpfs limits (`tmpfs` backend), injected
/// errors, triggered faults, containment and an operation log.
#[derive(Debug)]
pub struct FaultyFs {
    shared: Arc<Shared>,
}

/// What the filesystem and the files it opened share.
#[derive(Debug)]
struct Shared {
    /// The sandbox's temporary directory, only to show stray paths without the
    /// random part of its name.
    base: PathBuf,
    root: PathBuf,
    disk: Disk,
    /// The crash model; `vfs` backend only.
    journal: Option<Mutex<Journal>>,
    state: Mutex<State>,
    /// Where a halted process's operations wait (see [`Strike::Halt`]).
    halt: Halt,
    /// Told of each strike of a trigger before it is carried out.
    on_strike: Mutex<Option<OnStrike>>,
}

/// Everything the operations update. Never held across a fault's application:
/// applying a fault takes this lock itself.
#[derive(Debug)]
struct State {
    space: Space,
    /// Files open through [`FaultyFile`]s, by inode (`vfs` only).
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

/// An inode open through one or more [`FaultyFile`]s.
#[derive(Debug)]
struct OpenInode {
    handles: usize,
    /// Its length as of the last write through a handle.
    len: u64,
}

/// Who keeps the volume's size.
#[derive(Debug)]
enum Space {
    /// `vfs`: the sandbox's block quota.
    Quota(Quota),
    /// `tmpfs`: the kernel; `limit` is the mount's size.
    Kernel { limit: u64 },
}

/// An operation let through to the disk: the state, still locked so the caller
/// can reserve quota atomically, and the operation's slot in the log.
struct Admitted<'a> {
    state: MutexGuard<'a, State>,
    index: usize,
}

impl FaultyFs {
    /// A filesystem confined to `root`, on a volume of `limit` bytes. `base`
    /// is the sandbox directory holding `root`, `stash` and, for the `vfs`
    /// backend, `limbo` (the crash model's). On `tmpfs`, `root` is the mount.
    pub(crate) fn new(
        base: PathBuf,
        root: PathBuf,
        stash: PathBuf,
        limit: u64,
        backend: Backend,
    ) -> FaultyFs {
        let (space, journal) = match backend {
            Backend::Vfs => (
                Space::Quota(Quota::new(limit, quota::usage(&root))),
                Some(Mutex::new(Journal::new(
                    root.clone(),
                    base.join("limbo"),
                    stash.clone(),
                ))),
            ),
            Backend::Tmpfs => (
                Space::Kernel {
                    limit: quota::whole_blocks(limit),
                },
                None,
            ),
        };
        FaultyFs {
            shared: Arc::new(Shared {
                base,
                disk: Disk::new(root.clone(), stash),
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
            }),
        }
    }

    /// See [`Sandbox::apply`](crate::Sandbox::apply).
    pub(crate) fn apply(&self, fault: &Fault) -> Result<String, SandboxError> {
        self.shared.apply(fault)
    }

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
            self.shared.validate(fault)?;
        }
        self.shared.lock().triggers.arm(trigger, at, strike)
    }

    /// See [`Sandbox::settle_triggers`](crate::Sandbox::settle_triggers).
    pub(crate) fn settle_triggers(&self) {
        let due = self.shared.lock().triggers.take_pending();
        self.shared.strike(due);
    }

    /// See [`Sandbox::disarm`](crate::Sandbox::disarm).
    pub(crate) fn disarm(&self) -> Vec<usize> {
        self.shared.lock().triggers.disarm()
    }

    /// See [`Sandbox::on_strike`](crate::Sandbox::on_strike).
    pub(crate) fn on_strike(&self, f: OnStrike) {
        *self
            .shared
            .on_strike
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(f);
    }

    /// See [`Sandbox::halted`](crate::Sandbox::halted).
    pub(crate) fn halted(&self) -> bool {
        self.shared.halt.is_halted()
    }

    /// Unparks a halted process's operations for good (the sandbox is going away).
    pub(crate) fn release(&self) {
        self.shared.halt.release();
    }

    /// See [`Sandbox::next_restore`](crate::Sandbox::next_restore).
    pub(crate) fn next_restore(&self) -> Option<crate::Displacement> {
        self.shared.disk.next_restore()
    }

    /// See [`Sandbox::forget_restore`](crate::Sandbox::forget_restore).
    pub(crate) fn forget_restore(&self, path: &str) {
        self.shared.disk.forget(path)
    }

    /// A copy of the operation log.
    pub(crate) fn ops(&self) -> Vec<OpRecord> {
        self.shared.lock().log.clone()
    }

    /// The number of operations logged so far.
    pub(crate) fn op_count(&self) -> usize {
        self.shared.lock().log.len()
    }

    /// The operations refused for leaving the root.
    pub(crate) fn violations(&self) -> Vec<String> {
        self.shared.lock().violations.clone()
    }

    /// Descriptions of the triggered faults applied since the last call.
    pub(crate) fn take_fired(&self) -> Vec<String> {
        let fired = std::mem::take(&mut self.shared.lock().fired);
        fired.into_iter().map(|(_, done, _)| done).collect()
    }

    /// The same, each with its trigger's id and where it fired.
    pub(crate) fn take_fired_by_id(&self) -> Vec<(usize, String)> {
        let fired = std::mem::take(&mut self.shared.lock().fired);
        fired
            .into_iter()
            .map(|(id, done, place)| (id, format!("{done} {place}")))
            .collect()
    }

    /// Free bytes, without logging an operation (0 if the kernel cannot say).
    pub(crate) fn available(&self) -> u64 {
        self.shared.free_space().unwrap_or(0)
    }

    /// The volume's size in bytes (whole blocks).
    pub(crate) fn quota(&self) -> u64 {
        self.shared.lock().space.limit()
    }

    /// See [`Sandbox::crash`](crate::Sandbox::crash).
    pub(crate) fn crash(&self) -> Vec<String> {
        let Some(mut journal) = self.shared.journal() else {
            self.shared.halt.resume();
            return vec![
                "nothing dropped: the tmpfs backend has no crash model \
                 (the kernel keeps page-cache data, so everything written survives)"
                    .to_owned(),
            ];
        };
        let lines = journal.crash();
        drop(journal);
        self.shared.recount();
        self.shared.halt.resume();
        lines
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

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not turn every later call into a panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
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
    /// operations' backs). Walks without the lock: operations may go on
    /// meanwhile; the count is a snapshot either way.
    fn recount(&self) {
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
    fn apply(&self, fault: &Fault) -> Result<String, SandboxError> {
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
                        self.recount();
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
        self.recount();
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

    /// Admits an operation on `path` (and `to`, for a rename): see the module
    /// documentation. On refusal the operation is logged with its outcome and
    /// the error to return is given.
    fn admit(&self, op: OpKind, path: &Path, to: Option<&Path>) -> io::Result<Admitted<'_>> {
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
        });
        let due = if state.triggers.is_idle() {
            Vec::new()
        } else {
            let call = state.log[index].call();
            state.triggers.admit(op, &paths, &call)
        };
        if !due.is_empty() {
            drop(state);
            self.strike(due);
            // A halt stops this very operation before it reaches the disk.
            self.halt.gate()?;
            state = self.lock();
        }
        // Every rule counts the operation, even once an earlier one has struck.
        let struck = state
            .rules
            .iter_mut()
            .fold(None, |first, rule| first.or(rule.strike(op, &paths)));
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
}

impl State {
    fn settle<T>(&mut self, index: usize, result: &io::Result<T>) {
        self.log[index].outcome = match result {
            Ok(_) => Outcome::Ok,
            Err(e) => Outcome::Failed(crate::errno::error_name(e)),
        };
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

impl State {
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

impl Fs for FaultyFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let index = self.shared.admit(OpKind::Create, path, None)?.index;
        let mut journal = self.shared.journal();
        let truncating = journal.as_mut().and_then(|j| j.before_create(path));
        let truncated = regular_file(path).map_or(0, |(_, len)| len);
        let result = File::create(path);
        let id = match (&result, journal.as_mut()) {
            (Ok(file), Some(j)) => j.created(file, truncating),
            _ => None,
        };
        drop(journal);
        let mut state = self.shared.lock();
        state.settle(index, &result);
        let file = result?;
        state.release(truncated);
        let ino = file.metadata().map(|m| m.ino()).ok();
        if let Some(ino) = ino {
            state.opened(ino);
        }
        Ok(Box::new(FaultyFile {
            file,
            path: path.to_owned(),
            ino,
            id,
            shared: Arc::clone(&self.shared),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let index = self.shared.admit(OpKind::Rename, from, Some(to))?.index;
        let mut journal = self.shared.journal();
        let overwritten_ino = journal.as_mut().and_then(|j| j.before_rename(from, to));
        // A rename onto an existing file drops that file, and its blocks.
        let same = match (fs::symlink_metadata(from), fs::symlink_metadata(to)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        let overwritten = if same { None } else { regular_file(to) };
        let result = fs::rename(from, to);
        if let (Ok(()), Some(j), Some(ino)) = (&result, journal.as_mut(), overwritten_ino) {
            j.unlinked(ino);
        }
        drop(journal);
        let mut state = self.shared.lock();
        state.settle(index, &result);
        if let (Ok(()), Some(file)) = (&result, overwritten) {
            state.unlinked(file);
        }
        result
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let index = self.shared.admit(OpKind::Remove, path, None)?.index;
        let mut journal = self.shared.journal();
        let ino = journal.as_mut().and_then(|j| j.before_remove(path));
        let removed = regular_file(path);
        let result = fs::remove_file(path);
        if let (Ok(()), Some(j), Some(ino)) = (&result, journal.as_mut(), ino) {
            j.unlinked(ino);
        }
        drop(journal);
        let mut state = self.shared.lock();
        state.settle(index, &result);
        if let (Ok(()), Some(file)) = (&result, removed) {
            state.unlinked(file);
        }
        result
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let index = self.shared.admit(OpKind::CreateDir, path, None)?.index;
        let mut journal = self.shared.journal();
        if let Some(j) = journal.as_mut() {
            j.before_create_dir(path);
        }
        let result = RealFs.create_dir(path);
        if let (Ok(()), Some(j)) = (&result, journal.as_mut()) {
            j.created_dir(path);
        }
        drop(journal);
        self.shared.settle(index, &result);
        result
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let index = self.shared.admit(OpKind::SyncDir, path, None)?.index;
        let mut journal = self.shared.journal();
        // With the crash model (vfs) durability is the journal's to decide and the
        // sandbox is thrown away: a real fsync would only make runs slow and
        // dependent on the host's disk. Opening the path still fails as it would.
        let result = match journal.as_ref() {
            Some(_) => std::fs::File::open(path).map(drop),
            None => RealFs.sync_dir(path),
        };
        if let (Ok(()), Some(j)) = (&result, journal.as_mut()) {
            j.synced_dir(path);
        }
        drop(journal);
        self.shared.settle(index, &result);
        result
    }

    fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        let index = self.shared.admit(OpKind::Metadata, path, None)?.index;
        let result = RealFs.metadata(path);
        self.shared.settle(index, &result);
        result
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let index = self.shared.admit(OpKind::ReadDir, path, None)?.index;
        let result = RealFs.read_dir(path);
        self.shared.settle(index, &result);
        result
    }

    fn available_space(&self, path: &Path) -> io::Result<u64> {
        let Admitted { state, index } = self.shared.admit(OpKind::AvailableSpace, path, None)?;
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
        self.shared.settle(index, &result);
        result
    }
}

/// A file opened through [`FaultyFs::create`](Fs::create): writes are cut to the
/// quota (or meet the kernel's limit on `tmpfs`), and writes and syncs go
/// through rules, triggers and the log under the path the file was created at.
#[derive(Debug)]
pub struct FaultyFile {
    file: File,
    path: PathBuf,
    /// The file's inode, for the quota's count of open files.
    ino: Option<u64>,
    /// The file as the crash model knows it (`vfs` only).
    id: Option<FileId>,
    shared: Arc<Shared>,
}

impl FaultyFile {
    /// Writes through the quota: all of `buf`, a prefix (a short write, as a
    /// kernel on a nearly full volume does: the rest of the file's last block
    /// and the free blocks), or nothing and `ENOSPC`. The file is assumed to be
    /// written sequentially from its end, as the connector does.
    fn write_within_quota(
        &mut self,
        mut state: MutexGuard<'_, State>,
        index: usize,
        buf: &[u8],
    ) -> io::Result<usize> {
        let len = match self.file.metadata() {
            Ok(meta) => meta.len(),
            Err(e) => {
                let result = Err(e);
                state.settle::<usize>(index, &result);
                return result;
            }
        };
        let Space::Quota(quota) = &mut state.space else {
            unreachable!("called for the quota backend only");
        };
        let reservation = quota.reserve(len, buf.len());
        if reservation.fit == 0 {
            state.log[index].outcome = Outcome::QuotaFull;
            return Err(Errno::Enospc.to_io_error());
        }
        drop(state);
        let result = self.file.write(&buf[..reservation.fit]);
        let mut state = self.shared.lock();
        let written = *result.as_ref().unwrap_or(&0);
        if let Space::Quota(quota) = &mut state.space {
            quota.settle(len, reservation, written);
        }
        if let Some(open) = self.ino.and_then(|ino| state.open.get_mut(&ino)) {
            open.len = len + written as u64;
        }
        state.settle_write(index, &result, buf.len());
        result
    }
}

impl State {
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
}

impl Write for FaultyFile {
    /// Writes what the volume allows: all of `buf`, a prefix (a short write),
    /// or nothing and `ENOSPC`; see the `quota` module for how the `vfs` backend
    /// matches the kernel's page accounting.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // A handle of its own, so the admitted state's lock does not borrow `self`.
        let shared = Arc::clone(&self.shared);
        let Admitted { state, index } = shared.admit(OpKind::Write, &self.path, None)?;
        if buf.is_empty() {
            let mut state = state;
            state.log[index].outcome = Outcome::Ok;
            return Ok(0);
        }
        if matches!(state.space, Space::Quota(_)) {
            return self.write_within_quota(state, index, buf);
        }
        drop(state);
        let result = self.file.write(buf);
        self.shared.lock().settle_write(index, &result, buf.len());
        result
    }

    /// Not an operation of its own: `File` buffers nothing in user space.
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl FsFile for FaultyFile {
    fn sync_all(&mut self) -> io::Result<()> {
        let index = self.shared.admit(OpKind::Sync, &self.path, None)?.index;
        let mut journal = self.shared.journal();
        // As for `sync_dir`: on vfs the journal records the sync, the disk is spared.
        let result = match journal.as_ref() {
            Some(_) => Ok(()),
            None => self.file.sync_all(),
        };
        if let (Ok(()), Some(j), Some(id)) = (&result, journal.as_mut(), self.id) {
            if let Ok(meta) = self.file.metadata() {
                j.synced(id, meta.len());
            }
        }
        drop(journal);
        self.shared.settle(index, &result);
        result
    }
}

impl Drop for FaultyFile {
    /// Closing the last handle on a removed file frees its blocks.
    fn drop(&mut self) {
        if let Some(ino) = self.ino {
            self.shared.lock().closed(ino);
        }
    }
}
