//! Errno rules and triggers: what they match and when they strike.
//!
//! Both count the operations that match them, starting from the moment they are
//! installed, and act on the `nth`; they share [`Counter`] so the two can never
//! disagree on what "the 3rd rename into `imcdata/in`" means.

use std::fmt;

use globset::{GlobBuilder, GlobMatcher};
use imc::fs::OpKind;

use crate::{Errno, Fault, SandboxError};

/// Makes operations fail with an OS error, as a scenario describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrnoRule {
    /// The kind of operation counted.
    pub op: OpKind,
    /// Glob over root-relative paths, `globset` syntax (`*` stays within one
    /// path component, `**` crosses them; the root itself is `.`). For a rename
    /// either side may match; for writes and syncs it is the file's path.
    pub path: String,
    /// Which matching operation fails first, counting from 1.
    pub nth: u32,
    /// The error it fails with.
    pub errno: Errno,
    /// Whether every matching operation after the `nth` fails too.
    pub persistent: bool,
    /// Only operations made by the process of this name count (its
    /// `/proc/<pid>/comm`, on the `fuse` backend, where the daemon knows the
    /// caller); `None`: every caller. The in-process connector has no name,
    /// so a rule with one never strikes on `vfs` or `tmpfs`.
    pub process: Option<String>,
}

impl fmt::Display for ErrnoRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ErrnoRule {
            op,
            path,
            nth,
            errno,
            persistent,
            process,
        } = self;
        if *persistent {
            write!(
                f,
                "every {op} matching `{path}` from the {} on fails with {errno}",
                Ordinal(*nth)
            )?;
        } else {
            write!(
                f,
                "the {} {op} matching `{path}` fails with {errno}",
                Ordinal(*nth)
            )?;
        }
        match process {
            Some(name) => write!(f, " (process `{name}` only)"),
            None => Ok(()),
        }
    }
}

/// Names the operation right before which an armed fault is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpTrigger {
    /// The kind of operation counted.
    pub op: OpKind,
    /// Glob over root-relative paths, as in [`ErrnoRule::path`].
    pub path: String,
    /// Which matching operation fires the trigger, counting from 1.
    pub nth: u32,
}

impl fmt::Display for OpTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "before the {} {} matching `{}`",
            Ordinal(self.nth),
            self.op,
            self.path
        )
    }
}

/// Counts the operations of one kind whose path matches one glob.
#[derive(Debug)]
pub(crate) struct Counter {
    op: OpKind,
    glob: GlobMatcher,
    nth: u32,
    seen: u64,
}

/// Where a counted operation falls relative to a counter's `nth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Count {
    /// The operation does not match.
    Unmatched,
    /// A matching operation before the `nth`.
    Before,
    /// The `nth` matching operation.
    Nth,
    /// A matching operation after the `nth`.
    After,
}

impl Counter {
    /// Validates `nth` and compiles `pattern`.
    pub(crate) fn new(op: OpKind, pattern: &str, nth: u32) -> Result<Counter, SandboxError> {
        if nth == 0 {
            return Err(SandboxError::InvalidRule {
                reason: format!(
                    "nth must be at least 1 (operations are counted from 1), got 0 for `{pattern}`"
                ),
            });
        }
        let glob = GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| SandboxError::InvalidRule {
                reason: e.to_string(),
            })?;
        Ok(Counter {
            op,
            glob: glob.compile_matcher(),
            nth,
            seen: 0,
        })
    }

    /// Counts one operation on `paths` (two for a rename) if it matches.
    pub(crate) fn count(&mut self, op: OpKind, paths: &[&str]) -> Count {
        if op != self.op || !paths.iter().any(|p| self.glob.is_match(p)) {
            return Count::Unmatched;
        }
        self.seen += 1;
        match self.seen.cmp(&u64::from(self.nth)) {
            std::cmp::Ordering::Less => Count::Before,
            std::cmp::Ordering::Equal => Count::Nth,
            std::cmp::Ordering::Greater => Count::After,
        }
    }
}

/// An installed errno rule with its own count.
#[derive(Debug)]
pub(crate) struct ArmedRule {
    errno: Errno,
    persistent: bool,
    process: Option<String>,
    counter: Counter,
}

impl ArmedRule {
    /// Validates and installs `rule`, counting from zero.
    pub(crate) fn new(rule: &ErrnoRule) -> Result<ArmedRule, SandboxError> {
        Ok(ArmedRule {
            errno: rule.errno,
            persistent: rule.persistent,
            process: rule.process.clone(),
            counter: Counter::new(rule.op, &rule.path, rule.nth)?,
        })
    }

    /// Counts the operation, made by the process named `process` (`None`:
    /// the in-process connector), and returns the error it must fail with,
    /// if any. Another process's operations are not counted.
    pub(crate) fn strike(
        &mut self,
        op: OpKind,
        paths: &[&str],
        process: Option<&str>,
    ) -> Option<Errno> {
        if self.process.is_some() && self.process.as_deref() != process {
            return None;
        }
        match self.counter.count(op, paths) {
            Count::Nth => Some(self.errno),
            Count::After if self.persistent => Some(self.errno),
            _ => None,
        }
    }
}

/// Where an armed trigger strikes relative to the operation it waits for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum At {
    /// Right before the operation reaches the disk: the operation sees the change.
    #[default]
    Before,
    /// Once the operation has completed: before the connector's next operation,
    /// or when [`Sandbox::settle_triggers`](crate::Sandbox::settle_triggers) is
    /// called if no operation comes first (what the connector does meanwhile
    /// without the disk, such as sending a reply, may precede it).
    After,
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            At::Before => "before",
            At::After => "after",
        })
    }
}

/// What an armed trigger does when it fires.
#[derive(Clone, Debug)]
pub enum Strike {
    /// Apply a fault, as [`Sandbox::apply`](crate::Sandbox::apply) does.
    Fault(Fault),
    /// The connector's process is gone from here on: this operation (for
    /// [`At::Before`]) and every later one never reach the disk and never return,
    /// until [`Sandbox::crash`](crate::Sandbox::crash) applies the crash model.
    Halt,
}

/// An armed trigger and what it does, used up once it fires.
#[derive(Debug)]
struct ArmedTrigger {
    id: usize,
    at: At,
    counter: Counter,
    strike: Strike,
}

/// A trigger that fired: what to do, and where, in words
/// (`before sync_dir imcdata/in (#1)`).
#[derive(Debug)]
pub(crate) struct Firing {
    pub(crate) id: usize,
    pub(crate) strike: Strike,
    pub(crate) place: String,
}

/// The armed triggers, and those whose operation is done but that fire after it.
#[derive(Debug, Default)]
pub(crate) struct Triggers {
    armed: Vec<ArmedTrigger>,
    pending: Vec<Firing>,
    next_id: usize,
}

impl Triggers {
    /// Validates `trigger` and arms it, counting from zero; returns its id.
    pub(crate) fn arm(
        &mut self,
        trigger: &OpTrigger,
        at: At,
        strike: Strike,
    ) -> Result<usize, SandboxError> {
        let counter = Counter::new(trigger.op, &trigger.path, trigger.nth)?;
        let id = self.next_id;
        self.next_id += 1;
        self.armed.push(ArmedTrigger {
            id,
            at,
            counter,
            strike,
        });
        Ok(id)
    }

    /// Counts an operation (`call` is how it reads: `sync_dir imcdata/in`) on
    /// every armed trigger and returns what fires now, in order: the triggers
    /// waiting for the end of an earlier operation, then those armed before this
    /// one. The triggers armed after this one fire at the next call.
    pub(crate) fn admit(&mut self, op: OpKind, paths: &[&str], call: &str) -> Vec<Firing> {
        let mut due = std::mem::take(&mut self.pending);
        let mut i = 0;
        while i < self.armed.len() {
            if self.armed[i].counter.count(op, paths) == Count::Nth {
                let t = self.armed.remove(i);
                let firing = Firing {
                    id: t.id,
                    strike: t.strike,
                    place: format!("{} {call} (#{})", t.at, t.counter.nth),
                };
                match t.at {
                    At::Before => due.push(firing),
                    At::After => self.pending.push(firing),
                }
            } else {
                i += 1;
            }
        }
        due
    }

    /// True when no trigger is armed or waiting (the common case: nothing to count).
    pub(crate) fn is_idle(&self) -> bool {
        self.armed.is_empty() && self.pending.is_empty()
    }

    /// The triggers whose operation is done, to fire now.
    pub(crate) fn take_pending(&mut self) -> Vec<Firing> {
        std::mem::take(&mut self.pending)
    }

    /// Disarms every trigger that has not fired; returns their ids.
    pub(crate) fn disarm(&mut self) -> Vec<usize> {
        self.pending.clear();
        std::mem::take(&mut self.armed)
            .into_iter()
            .map(|t| t.id)
            .collect()
    }
}

/// A callback told of each strike right before it is carried out.
#[derive(Clone)]
pub(crate) struct OnStrike(pub(crate) std::sync::Arc<dyn Fn(&Strike) + Send + Sync>);

impl fmt::Debug for OnStrike {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OnStrike")
    }
}

/// The gate a halted process's operations wait at.
#[derive(Default)]
pub(crate) struct Halt {
    state: std::sync::Mutex<HaltState>,
    released: std::sync::Condvar,
}

#[derive(Default)]
struct HaltState {
    halted: bool,
    /// A halt happened at some point: the halted process's calls may still come.
    ever_halted: bool,
    released: bool,
    /// Bumped by [`Halt::drain`]: operations parked before it return.
    epoch: u64,
    /// The process generation that may use the disk: bumped by each crash, so
    /// a dead process's calls still queued (a blocking task that had not yet
    /// started) park as its parked calls do, and never reach the disk.
    generation: u64,
    /// Calls waiting at the gate now.
    parked: usize,
}

impl fmt::Debug for Halt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("Halt")
            .field("halted", &s.halted)
            .field("released", &s.released)
            .finish()
    }
}

impl Halt {
    fn lock(&self) -> std::sync::MutexGuard<'_, HaltState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The process is gone: operations from now on wait at the gate.
    pub(crate) fn halt(&self) {
        let mut s = self.lock();
        s.halted = true;
        s.ever_halted = true;
    }

    /// True between a halt and the next [`Halt::resume`].
    pub(crate) fn is_halted(&self) -> bool {
        self.lock().halted
    }

    /// A new process may use the disk; the operations of the old one stay parked.
    pub(crate) fn resume(&self) {
        self.lock().halted = false;
    }

    /// The sandbox is going away: parked operations return an error, and if a
    /// halt ever happened so does every later one (a halted process's calls
    /// must not reach a disk being removed; without a halt a lingering handle
    /// keeps working).
    pub(crate) fn release(&self) {
        self.lock().released = true;
        self.released.notify_all();
    }

    /// Makes the operations parked so far return an error (without reaching
    /// the disk), while later ones of the halted process still park: for a
    /// FUSE daemon, whose threads must be free before its mount can go.
    pub(crate) fn drain(&self) {
        self.lock().epoch += 1;
        self.released.notify_all();
    }

    /// How many calls wait at the gate now.
    pub(crate) fn parked(&self) -> usize {
        self.lock().parked
    }

    /// The generation of the process that may use the disk now.
    pub(crate) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// The process using the disk is gone for good (a crash): the calls of
    /// every handle handed out so far park from now on.
    pub(crate) fn end_generation(&self) {
        let mut s = self.lock();
        s.generation += 1;
        s.ever_halted = true;
    }

    /// [`Halt::gate`] for a call made through a handle of process `generation`:
    /// a dead process's call parks (never reaching the disk) like a halted one.
    pub(crate) fn gate_for(&self, generation: u64) -> std::io::Result<()> {
        let s = self.lock();
        if generation >= s.generation {
            drop(s);
            return self.gate();
        }
        self.park(s)
    }

    /// Lets an operation through, or parks it while the process is halted (a
    /// dead process's call never returns) until the sandbox is released or
    /// the parked operations are drained.
    pub(crate) fn gate(&self) -> std::io::Result<()> {
        let s = self.lock();
        if !(s.halted || s.released && s.ever_halted) {
            return Ok(());
        }
        self.park(s)
    }

    /// Waits until the sandbox is released or the parked calls are drained.
    fn park(&self, mut s: std::sync::MutexGuard<'_, HaltState>) -> std::io::Result<()> {
        let epoch = s.epoch;
        s.parked += 1;
        while !s.released && s.epoch == epoch {
            s = self
                .released
                .wait(s)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        s.parked -= 1;
        Err(Errno::Eio.to_io_error())
    }
}

/// `1st`, `2nd`, `3rd`, `11th`... for readable descriptions.
pub(crate) struct Ordinal(pub(crate) u32);

impl fmt::Display for Ordinal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        let suffix = match (n % 10, n % 100) {
            (_, 11..=13) => "th",
            (1, _) => "st",
            (2, _) => "nd",
            (3, _) => "rd",
            _ => "th",
        };
        write!(f, "{n}{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals() {
        let s: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111]
            .into_iter()
            .map(|n| Ordinal(n).to_string())
            .collect();
        assert_eq!(
            s,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st",
                "111th"
            ]
        );
    }

    #[test]
    fn counter_counts_only_matches() {
        let mut c = Counter::new(OpKind::Rename, "imcdata/in/*", 2).unwrap();
        assert_eq!(c.count(OpKind::Create, &["imcdata/in/a"]), Count::Unmatched);
        assert_eq!(
            c.count(OpKind::Rename, &["imcdata/in/a/b"]),
            Count::Unmatched
        );
        assert_eq!(
            c.count(OpKind::Rename, &["x", "imcdata/in/a"]),
            Count::Before
        );
        assert_eq!(c.count(OpKind::Rename, &["imcdata/in/b", "y"]), Count::Nth);
        assert_eq!(c.count(OpKind::Rename, &["imcdata/in/c"]), Count::After);
    }

    #[test]
    fn invalid_rules_are_refused() {
        assert!(matches!(
            Counter::new(OpKind::Write, "**", 0),
            Err(SandboxError::InvalidRule { .. })
        ));
        let err = Counter::new(OpKind::Write, "a[", 1).unwrap_err();
        assert!(err.to_string().contains("a["), "{err}");
    }

    #[test]
    fn rule_descriptions() {
        let rule = ErrnoRule {
            op: OpKind::Rename,
            path: "imcdata/in/*".into(),
            nth: 2,
            errno: Errno::Eio,
            persistent: false,
            process: None,
        };
        assert_eq!(
            rule.to_string(),
            "the 2nd rename matching `imcdata/in/*` fails with EIO"
        );
        let rule = ErrnoRule {
            persistent: true,
            ..rule
        };
        assert_eq!(
            rule.to_string(),
            "every rename matching `imcdata/in/*` from the 2nd on fails with EIO"
        );
    }
}
