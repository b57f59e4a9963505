//! The fault-injecting filesystem handed to the connector.
//!
//! Every call is admitted in the same way before it reaches the disk: refused if
//! it leaves the root, logged, counted by the armed triggers (whose faults are
//! applied right then, so the call sees the changed disk), then counted by the
//! errno rules (which may fail it untouched). Writes are further cut to the
//! quota. Without rules or triggers that costs one lock to admit and one to
//! record the outcome.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use imc::fs::{Fs, FsFile, Metadata, OpKind, RealFs};

use crate::disk::Disk;
use crate::paths::relative;
use crate::quota::{self, Quota};
use crate::rule::{ArmedRule, ArmedTrigger};
use crate::{Errno, Fault, OpRecord, OpTrigger, Outcome, SandboxError};

/// The connector's filesystem inside a [`Sandbox`](crate::Sandbox): the real
/// disk under the sandbox root, with a byte quota, injected errors, triggered
/// faults, containment and an operation log.
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
    state: Mutex<State>,
}

/// Everything the operations update. Never held across a fault's application:
/// applying a fault takes this lock itself.
#[derive(Debug)]
struct State {
    quota: Quota,
    rules: Vec<ArmedRule>,
    triggers: Vec<ArmedTrigger>,
    log: Vec<OpRecord>,
    violations: Vec<String>,
    fired: Vec<String>,
}

/// An operation let through to the disk: the state, still locked so the caller
/// can reserve quota atomically, and the operation's slot in the log.
struct Admitted<'a> {
    state: MutexGuard<'a, State>,
    index: usize,
}

impl FaultyFs {
    /// A filesystem confined to `root`, with a quota of `limit` bytes. `base` is
    /// the sandbox directory holding `root` and `stash`.
    pub(crate) fn new(base: PathBuf, root: PathBuf, stash: PathBuf, limit: u64) -> FaultyFs {
        let used = quota::usage(&root);
        FaultyFs {
            shared: Arc::new(Shared {
                base,
                disk: Disk::new(root.clone(), stash),
                root,
                state: Mutex::new(State {
                    quota: Quota::new(limit, used),
                    rules: Vec::new(),
                    triggers: Vec::new(),
                    log: Vec::new(),
                    violations: Vec::new(),
                    fired: Vec::new(),
                }),
            }),
        }
    }

    /// See [`Sandbox::apply`](crate::Sandbox::apply).
    pub(crate) fn apply(&self, fault: &Fault) -> Result<String, SandboxError> {
        self.shared.apply(fault)
    }

    /// See [`Sandbox::arm`](crate::Sandbox::arm).
    pub(crate) fn arm(&self, trigger: &OpTrigger, fault: Fault) -> Result<(), SandboxError> {
        self.shared.validate(&fault)?;
        let armed = ArmedTrigger::new(trigger, fault)?;
        self.shared.lock().triggers.push(armed);
        Ok(())
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
        std::mem::take(&mut self.shared.lock().fired)
    }

    /// Free bytes of quota, without logging an operation.
    pub(crate) fn available(&self) -> u64 {
        self.shared.lock().quota.available()
    }

    /// The quota in bytes.
    pub(crate) fn quota(&self) -> u64 {
        self.shared.lock().quota.limit()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not turn every later call into a panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
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
    /// change it behind the operations' backs. Must be called without the state
    /// lock held.
    fn apply(&self, fault: &Fault) -> Result<String, SandboxError> {
        let result = match fault {
            Fault::Remove { path } => self.disk.remove(path),
            Fault::Rename { from, to } => self.disk.rename(from, to),
            Fault::Replace { path } => self.disk.replace(path),
            Fault::Restore { path } => self.disk.restore(path),
            Fault::FillDisk { leave } => {
                let limit = self.lock().quota.limit();
                self.disk.fill(limit, *leave)
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
        // Walk without the lock: operations may go on meanwhile; the count is a
        // snapshot either way.
        let used = quota::usage(&self.root);
        self.lock().quota.recount(used);
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
        let due = state.due_triggers(op, &paths);
        if !due.is_empty() {
            drop(state);
            for fault in due {
                let fired = self
                    .apply(&fault)
                    .unwrap_or_else(|e| format!("could not apply `{fault}`: {e}"));
                self.lock().fired.push(fired);
            }
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

    /// Records how an admitted operation ended.
    fn settle<T>(&self, index: usize, result: &io::Result<T>) {
        self.lock().settle(index, result);
    }
}

impl State {
    /// Counts the operation on every armed trigger and disarms and returns the
    /// faults of those it fires, in arming order.
    fn due_triggers(&mut self, op: OpKind, paths: &[&str]) -> Vec<Fault> {
        let mut due = Vec::new();
        let mut i = 0;
        while i < self.triggers.len() {
            if self.triggers[i].fires(op, paths) {
                due.push(self.triggers.remove(i).into_fault());
            } else {
                i += 1;
            }
        }
        due
    }

    fn settle<T>(&mut self, index: usize, result: &io::Result<T>) {
        self.log[index].outcome = match result {
            Ok(_) => Outcome::Ok,
            Err(e) => Outcome::Failed(crate::errno::error_name(e)),
        };
    }
}

/// Length of the regular file at `path`, 0 if there is none: what replacing or
/// removing it gives back to the quota.
fn regular_len(path: &Path) -> u64 {
    fs::symlink_metadata(path).map_or(0, |m| if m.is_file() { m.len() } else { 0 })
}

impl Fs for FaultyFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let index = self.shared.admit(OpKind::Create, path, None)?.index;
        let truncated = regular_len(path);
        let result = File::create(path);
        let mut state = self.shared.lock();
        state.settle(index, &result);
        let file = result?;
        state.quota.release(truncated);
        Ok(Box::new(FaultyFile {
            file,
            path: path.to_owned(),
            shared: Arc::clone(&self.shared),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let index = self.shared.admit(OpKind::Rename, from, Some(to))?.index;
        // A rename onto an existing file drops that file, and its bytes.
        let same = match (fs::symlink_metadata(from), fs::symlink_metadata(to)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        let overwritten = if same { 0 } else { regular_len(to) };
        let result = fs::rename(from, to);
        let mut state = self.shared.lock();
        state.settle(index, &result);
        if result.is_ok() {
            state.quota.release(overwritten);
        }
        result
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let index = self.shared.admit(OpKind::Remove, path, None)?.index;
        let len = regular_len(path);
        let result = fs::remove_file(path);
        let mut state = self.shared.lock();
        state.settle(index, &result);
        if result.is_ok() {
            state.quota.release(len);
        }
        result
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let index = self.shared.admit(OpKind::CreateDir, path, None)?.index;
        let result = RealFs.create_dir(path);
        self.shared.settle(index, &result);
        result
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let index = self.shared.admit(OpKind::SyncDir, path, None)?.index;
        let result = RealFs.sync_dir(path);
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
        let index = self.shared.admit(OpKind::AvailableSpace, path, None)?.index;
        // statvfs fails on a missing path; so must the quota.
        let exists = fs::metadata(path).map(drop);
        let mut state = self.shared.lock();
        let result = exists.map(|()| state.quota.available());
        state.settle(index, &result);
        result
    }
}

/// A file opened through [`FaultyFs::create`](Fs::create): writes are cut to the
/// quota, and writes and syncs go through rules, triggers and the log under the
/// path the file was created at.
#[derive(Debug)]
pub struct FaultyFile {
    file: File,
    path: PathBuf,
    shared: Arc<Shared>,
}

impl Write for FaultyFile {
    /// Writes what the quota allows: all of `buf`, a prefix (a short write, as a
    /// kernel on a nearly full volume does), or nothing and `ENOSPC`.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Admitted { mut state, index } = self.shared.admit(OpKind::Write, &self.path, None)?;
        if buf.is_empty() {
            state.log[index].outcome = Outcome::Ok;
            return Ok(0);
        }
        let fit = state.quota.reserve(buf.len());
        if fit == 0 {
            state.log[index].outcome = Outcome::QuotaFull;
            return Err(Errno::Enospc.to_io_error());
        }
        drop(state);
        let result = self.file.write(&buf[..fit]);
        let mut state = self.shared.lock();
        match &result {
            Ok(written) => {
                state.quota.release((fit - written) as u64);
                state.log[index].outcome = if *written < buf.len() {
                    Outcome::ShortWrite {
                        written: *written,
                        requested: buf.len(),
                    }
                } else {
                    Outcome::Ok
                };
            }
            Err(_) => {
                state.quota.release(fit as u64);
                state.settle(index, &result);
            }
        }
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
        let result = self.file.sync_all();
        self.shared.settle(index, &result);
        result
    }
}
