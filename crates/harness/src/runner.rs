//! The runner: boots the connector in a sandbox, plays a scenario's steps, and
//! records one ordered [`History`].
//!
//! Each run owns everything it touches (sandbox, connector, sessions, faults), so
//! runs are independent and can go in parallel. The connector runs in-process on
//! `127.0.0.1:0`, with counter ids, a fixed clock and no periodic disk check, so a
//! rerun gives the same history byte for byte.

use crate::check::{self, StepResult};
use crate::client::{ClientSession, ReadOutcome, Reply, encode_data};
use crate::history::{Entry, History, Listing};
use crate::invariants::{self, Invariant, Ledger, Violation};
use crate::scenario::{self, Backend, Fault, OpMatch, Scenario, ServiceAction, Step, When};
use crate::target::choice::{self, Choice};
use crate::target::imc::ImcTarget;
use crate::target::process::ProcessTarget;
use crate::target::{Settle, SpoolLayout, Target};
use sandbox::{Sandbox, SandboxConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Run settings. `Default` gives the documented defaults.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// How long to wait for each reply before recording `no reply`. Default 10 s.
    pub reply_timeout: Duration,
    /// Run every scenario on this backend instead of the one it names. Default none.
    pub backend: Option<Backend>,
    /// Run every scenario with this connector profile instead of its own.
    /// Default none.
    pub profile: Option<String>,
    /// Run every scenario against this target (`imc`, a target file's name or
    /// path) instead of its own. Default none: the scenario's, else `imc`.
    pub target: Option<String>,
    /// Where target names are looked up. Default none: the scenario's
    /// `targets` folder, else the nearest above the working directory.
    pub targets_dir: Option<std::path::PathBuf>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            reply_timeout: Duration::from_secs(10),
            backend: None,
            profile: None,
            target: None,
            targets_dir: None,
        }
    }
}

/// Why a scenario could not be run at all.
#[derive(Debug)]
pub enum RunError {
    /// The sandbox could not be created.
    Sandbox(std::io::Error),
    /// The scenario asks for something this build cannot do.
    Unsupported(String),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Sandbox(e) => write!(f, "cannot create the sandbox: {e}"),
            RunError::Unsupported(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for RunError {}

/// A step's expectation that did not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// 1-based step index.
    pub step: usize,
    /// The step in words.
    pub action: String,
    /// What differed.
    pub message: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {} ({}): {}", self.step, self.action, self.message)
    }
}

/// The result of one run.
#[derive(Debug)]
pub struct Run {
    /// Everything that happened.
    pub history: History,
    /// Expectations that did not hold.
    pub mismatches: Vec<Mismatch>,
    /// Invariants that did not hold, in the order seen.
    pub violations: Vec<Violation>,
    /// The connector's filesystem operations during the steps (not the final
    /// recovery), in order: what `enumerate` counts and fails one by one.
    pub ops: Vec<sandbox::OpRecord>,
    /// What the harness itself could not do (undo a fault in the final
    /// recovery): the run fails, but no invariant is blamed on the connector.
    pub harness_failures: Vec<String>,
}

/// Runs a scenario to its end, against the target it names (or
/// [`RunOptions::target`]; by default the in-process `imc`).
pub async fn run(scenario: &Scenario, options: &RunOptions) -> Result<Run, RunError> {
    let choice = choose_target(scenario, options).map_err(RunError::Unsupported)?;
    let process = matches!(choice, Choice::Process(_));
    let profile = options
        .profile
        .clone()
        .unwrap_or_else(|| scenario.profile.clone());
    let connector = scenario.connector.clone();
    run_with(scenario, options, process, move |sandbox: &Sandbox| {
        Ok(match choice {
            Choice::InProcess => Box::new(ImcTarget::new(
                sandbox.root(),
                sandbox.fs_source(),
                &profile,
                &connector,
                loopback_listen(),
            )?) as Box<dyn Target>,
            Choice::Process(loaded) => {
                process_fits(scenario, sandbox.backend(), &loaded.name)?;
                // Its own files (event log) beside the root, off the faulted volume.
                let mut t =
                    ProcessTarget::new(&loaded, sandbox.root(), &sandbox.dir().join("run"))?;
                t.configure(Some(&profile), &connector)?;
                let mut watch = sandbox.op_watcher();
                t.set_op_paths(Box::new(move || {
                    watch().into_iter().map(|op| op.path).collect()
                }));
                Box::new(t)
            }
        })
    })
    .await
}

/// Runs a scenario against the target `make` builds on the run's sandbox (its
/// spool on [`Sandbox::root`]): how a crate tests its own connector in-process
/// (README, "Testing your own connector"). `process` says that the target is a
/// separate process (a crash on a halted disk is then sequenced for it). The
/// scenario's `target`, `profile` and `connector:` settings are `make`'s to
/// honour; an `Err` from it is [`RunError::Unsupported`].
pub async fn run_with(
    scenario: &Scenario,
    options: &RunOptions,
    process: bool,
    make: impl FnOnce(&Sandbox) -> Result<Box<dyn Target>, String>,
) -> Result<Run, RunError> {
    let backend = match options.backend.unwrap_or(scenario.sandbox.backend) {
        Backend::Vfs => sandbox::Backend::Vfs,
        Backend::Tmpfs => {
            sandbox::tmpfs_available().map_err(|why| {
                RunError::Unsupported(format!("backend `tmpfs` unavailable: {why}"))
            })?;
            sandbox::Backend::Tmpfs
        }
        Backend::Fuse => {
            sandbox::fuse_available().map_err(|why| {
                RunError::Unsupported(format!("backend `fuse` unavailable: {why}"))
            })?;
            sandbox::Backend::Fuse
        }
    };
    if process && backend == sandbox::Backend::Vfs {
        // Refused before any sandbox is made (a target file's name is in the error).
        let name = options
            .target
            .as_deref()
            .or(scenario.target.as_deref())
            .unwrap_or("?");
        process_fits(scenario, backend, name).map_err(RunError::Unsupported)?;
    }
    let quota = scenario.sandbox.quota.map_or(64 << 20, |s| s.0);
    let sandbox =
        Sandbox::with_backend(SandboxConfig { quota }, backend).map_err(RunError::Sandbox)?;
    let target = make(&sandbox).map_err(RunError::Unsupported)?;
    let spool = target.spool().clone();
    let root = sandbox.root().display().to_string();
    // A crash armed on an operation stops the target's disk calls where they
    // are; the runner hears of it here and crashes the target.
    let halt = Arc::new(HaltSignal::default());
    let told = Arc::clone(&halt);
    let tree = sandbox.tree().to_path_buf();
    let accepted = spool.accepted.clone();
    sandbox.on_strike(move |strike| match strike {
        // The sandbox itself says whether the disk is halted (one source of
        // truth: a flag of the runner's own could miss a second halt).
        sandbox::Strike::Halt => told.notify.notify_one(),
        // What a timed `remove` takes out of an accepted directory is the
        // scenario's deletion, not the target's loss: read it while it is still there.
        sandbox::Strike::Fault(sandbox::Fault::Remove { path }) => {
            let gone: Vec<Vec<u8>> = invariants::read_spool(&tree, &accepted)
                .into_iter()
                .filter(|(n, _)| invariants::is_under(n, path))
                .map(|(_, c)| c)
                .collect();
            told.removed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(gone);
        }
        sandbox::Strike::Fault(_) => {}
    });
    let mut runner = Runner {
        options: options.clone(),
        // The root as a target may write it: as it is, and with backslashes
        // (the IMC writes Windows paths in its events).
        redactions: vec![
            (root.replace('/', "\\"), "<root>".into()),
            (root, "<root>".into()),
        ],
        target,
        spool,
        process,
        sandbox,
        addr: None,
        sessions: BTreeMap::new(),
        armed: Vec::new(),
        op_armed: Vec::new(),
        halt,
        history: History::default(),
        mismatches: Vec::new(),
        ledger: Ledger::default(),
        violations: Vec::new(),
        reported: BTreeSet::new(),
        harness_failures: Vec::new(),
        seen_in_in: Default::default(),
        step: 0,
        ops_seen: 0,
    };
    for (i, step) in scenario.steps.iter().enumerate() {
        runner.step = i + 1;
        runner.step(i + 1, step).await;
        runner.check_spool();
    }
    runner.unfired();
    runner.history.listing = runner.listing();
    runner.unfired_op_triggers();
    let ops = runner.sandbox.ops();
    runner.recover().await;
    // Tear down without a trace: a crash closes everything and logs nothing.
    runner.target.crash().await;
    Ok(Run {
        history: runner.history,
        mismatches: runner.mismatches,
        violations: runner.violations,
        ops,
        harness_failures: runner.harness_failures,
    })
}

/// The target a run plays against: `--target`, else the scenario's, else `imc`.
fn choose_target(scenario: &Scenario, options: &RunOptions) -> Result<Choice, String> {
    let name = options
        .target
        .as_deref()
        .or(scenario.target.as_deref())
        .unwrap_or(choice::IN_PROCESS);
    let dir = match &options.targets_dir {
        Some(d) => Some(d.clone()),
        None => scenario
            .targets_dir
            .clone()
            .or_else(|| choice::default_dir(None)),
    };
    choice::resolve(name, dir.as_deref())
}

/// Whether the chosen target can be asked to run its disk check
/// (`service: check_disk`): imc always, a target file with `check_disk`.
pub fn target_checks_disk(scenario: &Scenario, options: &RunOptions) -> bool {
    match choose_target(scenario, options) {
        Ok(Choice::InProcess) => true,
        Ok(Choice::Process(loaded)) => loaded.file.check_disk.is_some(),
        Err(_) => true, // the run reports the error
    }
}

/// Whether the chosen target runs as a process (not `imc`).
pub fn runs_a_process(scenario: &Scenario, options: &RunOptions) -> bool {
    options
        .target
        .as_deref()
        .or(scenario.target.as_deref())
        .is_some_and(|n| n != choice::IN_PROCESS)
}

/// Why a process target cannot play `scenario` on `backend`: vfs faults only
/// the in-process connector's own calls; tmpfs makes the tree faults real but
/// has no errno rules, no operation-timed triggers and no crash model, which
/// only the fuse daemon gives a process.
pub fn process_fits(
    scenario: &Scenario,
    backend: sandbox::Backend,
    name: &str,
) -> Result<(), String> {
    match backend {
        sandbox::Backend::Vfs => Err(format!(
            "target `{name}` runs as a process, and backend `vfs` can fault only the \
             in-process connector's own calls: use backend `fuse` (every fault) or \
             `tmpfs` (tree faults only)"
        )),
        sandbox::Backend::Tmpfs => match needs_fuse(scenario) {
            Some(why) => Err(format!(
                "{why}, which a process target gets only on backend `fuse` \
                 (tmpfs makes tree faults only)"
            )),
            None => Ok(()),
        },
        sandbox::Backend::Fuse => Ok(()),
    }
}

/// What in `scenario` needs the fuse daemon when the target is a process.
pub fn needs_fuse(scenario: &Scenario) -> Option<&'static str> {
    for step in &scenario.steps {
        if matches!(step.fault, Some(Fault::Errno(_)) | Some(Fault::ClearErrno)) {
            return Some("injects an errno");
        }
        if step.when.as_ref().is_some_and(|w| w.op_stage().is_some()) {
            return Some("times a fault by a filesystem operation");
        }
        if step.service == Some(ServiceAction::Crash) {
            return Some("crashes the service (the crash model)");
        }
    }
    None
}

/// A listening address on a loopback address of its own (127.x.y.z, port 0).
///
/// Each run's listener closes its connections first, leaving them in TIME_WAIT
/// on its port for a minute; thousands of runs a minute on 127.0.0.1 alone make
/// every `bind` search a crowded port range (and could exhaust it). Spread over
/// 127.0.0.0/8, a run's port is free at the first try. Addresses never appear in
/// a history.
fn loopback_listen() -> SocketAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % (250 * 250);
    let hi = (std::process::id() % 250) as u8 + 1;
    let ip = [127, hi, (n / 250) as u8, (n % 250) as u8 + 1];
    SocketAddr::from((ip, 0))
}

/// Loads a scenario file and runs it.
pub async fn run_file(path: &Path, options: &RunOptions) -> Result<Run, String> {
    let scenario = scenario::load(path).map_err(|e| e.to_string())?;
    run(&scenario, options)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))
}

struct Armed {
    when: When,
    fault: Fault,
    /// The step that armed it (1-based).
    step: usize,
}

/// A fault or crash armed in the sandbox on a filesystem operation.
struct OpArmed {
    /// The sandbox's id of the trigger.
    id: usize,
    /// The step that armed it.
    step: usize,
    /// The fault (`None`: a crash).
    fault: Option<Fault>,
    /// What it waits for, in words.
    waits_for: String,
}

/// Told from the target's thread when an operation-timed crash fires.
#[derive(Default)]
struct HaltSignal {
    notify: tokio::sync::Notify,
    /// The contents of IN files a timed `remove` took away.
    removed: std::sync::Mutex<Vec<Vec<u8>>>,
}

struct Runner {
    options: RunOptions,
    redactions: Vec<(String, String)>,
    /// The system under test; dropped before the sandbox (a process is
    /// killed before its volume goes).
    target: Box<dyn Target>,
    /// The target's spool layout: where the invariants look.
    spool: SpoolLayout,
    /// Whether the target is a process (not in-process).
    process: bool,
    sandbox: Sandbox,
    addr: Option<SocketAddr>,
    sessions: BTreeMap<String, ClientSession>,
    armed: Vec<Armed>,
    /// Faults and crashes armed on filesystem operations, in arming order.
    op_armed: Vec<OpArmed>,
    halt: Arc<HaltSignal>,
    history: History,
    mismatches: Vec<Mismatch>,
    ledger: Ledger,
    violations: Vec<Violation>,
    /// Violations already reported (one report per distinct finding).
    reported: BTreeSet<(Invariant, String)>,
    /// What the harness could not do (see [`Run::harness_failures`]).
    harness_failures: Vec<String>,
    /// The bodies of every message seen in IN after a step.
    seen_in_in: std::collections::HashSet<Vec<u8>>,
    /// The step being played (0 during the final recovery).
    step: usize,
    /// Filesystem operations already checked.
    ops_seen: usize,
}

impl Runner {
    fn violate(&mut self, invariant: Invariant, message: String) {
        if !self.reported.insert((invariant, message.clone())) {
            return;
        }
        let mut excerpt = if self.step == 0 {
            crate::history::entry_lines(&self.history.recovery)
        } else {
            self.history.lines()
        };
        let excerpt = excerpt.split_off(excerpt.len().saturating_sub(12));
        self.violations.push(Violation {
            invariant,
            step: (self.step > 0).then_some(self.step),
            message,
            excerpt,
        });
    }

    /// Waits until the connector has finished reacting to what it was sent, so a
    /// step's events and disk changes are all in before the next step.
    async fn settle(&mut self) {
        let timeout = self.options.reply_timeout;
        if self.target.settle(timeout).await == Settle::Busy {
            self.violate(
                Invariant::Liveness,
                format!(
                    "the connector was still busy {} ms after the step",
                    timeout.as_millis()
                ),
            );
        }
    }

    /// The messages in the target's accepted directories ("IN"): each file's
    /// path under the root and its body, as the target's format reads it.
    fn accepted(&self) -> Vec<(String, Vec<u8>)> {
        invariants::read_spool(self.sandbox.tree(), &self.spool.accepted)
            .into_iter()
            .map(|(name, content)| (name, self.target.read_message(&content).body))
            .collect()
    }

    /// `no-phantom` and `no-partial` after every step.
    fn check_spool(&mut self) {
        let files = self.accepted();
        for (_, body) in &files {
            if !self.seen_in_in.contains(body) {
                self.seen_in_in.insert(body.clone());
            }
        }
        for (invariant, message) in self.ledger.check_in(&files) {
            self.violate(invariant, message);
        }
        // A file must appear in IN complete, by a rename: creating or writing one
        // in place exposes a partial message to whoever reads IN.
        let ops = self.sandbox.ops();
        for op in ops.iter().skip(self.ops_seen) {
            let in_accepted = self
                .spool
                .accepted
                .iter()
                .any(|dir| invariants::is_under(&op.path, dir) && op.path != *dir);
            if matches!(op.op, sandbox::OpKind::Create | sandbox::OpKind::Write) && in_accepted {
                self.violate(
                    Invariant::NoPartial,
                    format!(
                        "{} was written in place in IN (`{}`), not renamed into it",
                        op.path, op.op
                    ),
                );
            }
        }
        self.ops_seen = ops.len();
        for v in self.sandbox.violations() {
            let v = self.redact(&v);
            self.violate(Invariant::Containment, v);
        }
    }

    /// A fault armed with `when:` that never fired fails its step: a stage that
    /// never came (a misspelt session, a reply code that never came) would
    /// otherwise turn the scenario into one that tests nothing.
    fn unfired(&mut self) {
        for armed in std::mem::take(&mut self.armed) {
            let w = &armed.when;
            let session = w.session.as_deref().unwrap_or("?");
            let stage = if let Some(code) = w.after_reply {
                format!("session {session} never received {code}")
            } else if let Some(n) = w.after_data_bytes {
                format!("session {session} never sent {n} bytes of message data")
            } else {
                format!("session {session} never sent the end-of-data dot")
            };
            let fault = to_sandbox_fault(&armed.fault).map_or_else(|e| e, |f| f.to_string());
            self.mismatches.push(Mismatch {
                step: armed.step,
                action: format!("fault {fault} {}", describe_when(w)),
                message: format!("armed at step {}, never fired: {stage}", armed.step),
            });
        }
    }

    /// Records an entry in the history, or in the recovery log after the last step.
    fn record(&mut self, entry: Entry) {
        if self.step == 0 {
            self.history.recovery.push(entry);
        } else {
            self.history.push(entry);
        }
    }

    /// The final recovery: clear every fault, put displaced directories back,
    /// restart the service, then check `no-loss`, and that a new message is accepted.
    async fn recover(&mut self) {
        self.step = 0;
        self.armed.clear();
        self.sandbox.disarm();
        // A crash that struck after the last step's race still ends the process
        // (else the restart below would wait on the halted disk for ever).
        if self.halted() {
            self.crash(&mut StepResult::default()).await;
        }
        let mut result = StepResult::default();
        let names: Vec<String> = self.sessions.keys().cloned().collect();
        for name in names {
            self.sessions.remove(&name);
            self.ledger.closed(&name);
        }
        // Stop first: the stop waits for every session to finish what it is doing,
        // so no connector work races with the clearing of the faults.
        if self.addr.is_some() {
            self.stop_racing_the_halt(&mut result).await;
        }
        let _ = self.sandbox.apply(&sandbox::Fault::ClearErrno);
        let _ = self.sandbox.apply(&sandbox::Fault::FreeDisk);
        // Undo every fault still in effect, the latest first, whichever step or
        // trigger made it: that undoes any sequence the language allows.
        let mut undone = true;
        while let Some(pending) = self.sandbox.next_restore() {
            let path = pending.path;
            if pending.removed_file || pending.vanished {
                // A removed file's contents cannot come back (an empty file in
                // its place would be a message nobody sent), nor what a later
                // fault removed from where it was set aside.
                self.sandbox.forget_restore(&path);
                continue;
            }
            let mut restore = StepResult::default();
            self.apply(&Fault::Restore(path.clone()), &mut restore);
            if !restore.problems.is_empty() {
                undone = false;
                self.sandbox.forget_restore(&path);
                for problem in restore.problems {
                    self.harness_failures.push(format!(
                        "the final recovery could not undo a fault: {problem}"
                    ));
                }
            }
        }
        if !undone {
            // The spool is not as the connector left it plus the faults undone,
            // so `no-loss` and `recovery` would judge the harness, not the connector.
            self.harness_failures.push(
                "`no-loss` and `recovery` were not checked: the volume could not be put back"
                    .into(),
            );
            return;
        }
        // Put back as a backup job would: what a displaced IN still held is
        // delivered now, so a refused message left in it is a phantom.
        let files = self.accepted();
        for (invariant, message) in self.ledger.check_in(&files) {
            if invariant == Invariant::NoPhantom {
                self.violate(invariant, format!("after IN was put back: {message}"));
            }
        }
        self.start_racing_the_halt(&mut result).await;
        let files = self.accepted();
        for (invariant, message) in self.ledger.check_no_loss(&files) {
            self.violate(invariant, message);
        }
        if self.addr.is_none() {
            self.violate(
                Invariant::Recovery,
                "the service does not start again after the faults were cleared".into(),
            );
            return;
        }
        let name = "recovery".to_string();
        let body = "Subject: recovery check\r\n\r\nMail must flow once the faults are cleared.\r\n";
        self.connect(&name, &mut result).await;
        for line in [
            "EHLO client.test",
            "MAIL FROM:<harness@client.test>",
            "RCPT TO:<postmaster@imc.test>",
            "DATA",
        ] {
            let bytes = format!("{line}\r\n").into_bytes();
            if self
                .send(&name, &bytes, line.to_string(), &mut result)
                .await
            {
                self.read_replies(&name, 1, &mut result).await;
            }
        }
        let before = result.replies.len();
        self.data(&name, body, &mut result).await;
        self.dot(&name, &mut result).await;
        self.settle().await;
        let accepted =
            result.replies.len() > before && result.replies.last().is_some_and(|r| r.code == 250);
        if !accepted {
            let got = result
                .replies
                .last()
                .map_or("no reply".to_string(), |r| r.lines.join(" / "));
            self.violate(
                Invariant::Recovery,
                format!("a new message after recovery got `{got}`, not 250"),
            );
        } else {
            let files = self.accepted();
            if !files.iter().any(|(_, b)| b.as_slice() == body.as_bytes()) {
                self.violate(
                    Invariant::Recovery,
                    "the message accepted after recovery is not in IN".into(),
                );
            }
        }
        for problem in std::mem::take(&mut result.problems) {
            self.violate(Invariant::Recovery, problem);
        }
        self.drain_events(&mut result);
    }
    /// The recovery's stop. Disarming stops new triggers, but one that an
    /// operation in flight matched just before may still halt the disk, and a
    /// stop waits for sessions parked there: it races the halt, and a halt
    /// turns it into a crash.
    async fn stop_racing_the_halt(&mut self, result: &mut StepResult) {
        let halt = Arc::clone(&self.halt);
        let halted = self.sandbox.halted_probe();
        let struck = {
            let stop = self.stop(result);
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    () = &mut stop => break false,
                    () = halt.notify.notified() => if halted() { break true },
                }
            }
        };
        if struck || self.halted() {
            self.crash(result).await;
        }
    }

    /// The recovery's start, racing a late halt as the stop does: a halt
    /// crashes the half-started target and the start is made again (each
    /// trigger fires once, so this ends).
    async fn start_racing_the_halt(&mut self, result: &mut StepResult) {
        loop {
            let halt = Arc::clone(&self.halt);
            let halted = self.sandbox.halted_probe();
            let struck = {
                let start = self.start(false, result);
                tokio::pin!(start);
                loop {
                    tokio::select! {
                        () = &mut start => break false,
                        () = halt.notify.notified() => if halted() { break true },
                    }
                }
            };
            if !struck && !self.halted() {
                return;
            }
            self.crash(result).await;
        }
    }

    async fn step(&mut self, index: usize, step: &Step) {
        let action = describe(step);
        self.record(Entry::Step {
            index,
            action: action.clone(),
        });
        let mut result = StepResult::default();
        let halt = Arc::clone(&self.halt);
        let halted = self.sandbox.halted_probe();
        {
            // Everything that may wait on the connector races the halt: an
            // operation-timed crash can strike while owed replies are read too.
            let act = async {
                self.act(step, &mut result).await;
                self.settle().await;
                self.read_owed(&mut result).await;
            };
            tokio::pin!(act);
            loop {
                tokio::select! {
                    _ = &mut act => break,
                    _ = halt.notify.notified() => {
                        if halted() {
                            break; // the connector is gone: what it was doing never ends
                        }
                    }
                }
            }
        }
        if !self.halted() {
            self.sandbox.settle_triggers();
        }
        self.fired_by_ops();
        if self.halted() {
            self.crash(&mut result).await;
        }
        self.drain_events(&mut result);
        self.exited();
        if let Some(expect) = &step.expect {
            let names = |n: &str| self.redact(n);
            for message in check::check(expect, &result, self.sandbox.tree(), &names) {
                self.mismatches.push(Mismatch {
                    step: index,
                    action: action.clone(),
                    message,
                });
            }
        }
        for message in result.problems {
            self.mismatches.push(Mismatch {
                step: index,
                action: action.clone(),
                message,
            });
        }
    }

    /// Reads the replies the server still owes each session (as the ledger counts
    /// them): after a refused DATA, message text is read as commands and answered
    /// line by line. Left unread, those replies would be taken for the answers to
    /// later steps, and the ledger would lag behind the server.
    async fn read_owed(&mut self, result: &mut StepResult) {
        let names: Vec<String> = self.sessions.keys().cloned().collect();
        for name in names {
            while self.sessions.contains_key(&name) && self.ledger.owed(&name) > 0 {
                let before = result.replies.len();
                self.read_replies(&name, 1, result).await;
                if result.replies.len() == before {
                    break; // closed, silent or malformed: recorded as such
                }
            }
        }
    }

    async fn act(&mut self, step: &Step, result: &mut StepResult) {
        if let Some((m, after)) = step.when.as_ref().and_then(When::op_stage) {
            self.arm_op(step, m, after, result);
            return;
        }
        let session = step.session.clone().unwrap_or_default();
        if let Some(action) = step.service {
            self.service(action, step, result).await;
        } else if let Some(name) = &step.connect {
            self.connect(name, result).await;
        } else if let Some(line) = &step.command {
            let bytes = format!("{line}\r\n").into_bytes();
            if self.send(&session, &bytes, line.clone(), result).await {
                self.read_replies(&session, 1, result).await;
            }
        } else if let Some(lines) = &step.pipeline {
            let bytes: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
            let shown = lines.join(" | ");
            if self.send(&session, bytes.as_bytes(), shown, result).await {
                self.read_replies(&session, lines.len(), result).await;
            }
        } else if let Some(text) = &step.data {
            self.data(&session, text, result).await;
        } else if step.dot.is_some() {
            self.dot(&session, result).await;
        } else if let Some(text) = &step.message {
            if self.data(&session, text, result).await {
                self.dot(&session, result).await;
            }
        } else if let Some(raw) = &step.raw {
            let shown = format!("(raw) {:?}", raw.bytes);
            if self
                .send(&session, raw.bytes.as_bytes(), shown, result)
                .await
            {
                self.read_replies(&session, raw.replies as usize, result)
                    .await;
            }
        } else if let Some(name) = &step.disconnect {
            if self.sessions.remove(name).is_some() {
                self.ledger.closed(name);
                self.record(Entry::Disconnected {
                    session: name.clone(),
                });
            }
        } else if let Some(spec) = &step.send {
            self.send_message(spec, result).await;
        } else if let Some(fault) = &step.fault {
            match &step.when {
                Some(when) => self.armed.push(Armed {
                    when: when.clone(),
                    fault: fault.clone(),
                    step: self.step,
                }),
                None => self.apply(fault, result),
            }
        }
    }

    async fn service(&mut self, action: ServiceAction, step: &Step, result: &mut StepResult) {
        let expects_error = step
            .expect
            .as_ref()
            .is_some_and(|e| e.service_error.as_ref().is_some_and(|l| !l.is_empty()));
        match action {
            ServiceAction::Start => self.start(expects_error, result).await,
            ServiceAction::Stop => self.stop(result).await,
            ServiceAction::Restart => {
                self.stop(result).await;
                self.start(expects_error, result).await;
            }
            ServiceAction::Crash => self.crash(result).await,
            ServiceAction::CheckDisk => {
                let flush = self.target.check_disk().await;
                self.drain_events(result);
                let text = match flush {
                    Some(flush) => {
                        format!(
                            "disk check: flush mode {}",
                            if flush { "on" } else { "off" }
                        )
                    }
                    None => {
                        result.problems.push(format!(
                            "check_disk: the target `{}` cannot be asked to check its disk",
                            self.target.name()
                        ));
                        "disk check: not supported by the target".to_string()
                    }
                };
                self.record(Entry::Service {
                    text,
                    errors: vec![],
                });
            }
        }
    }

    /// `service: crash`, or an operation-timed crash that fired: the connector's
    /// tasks are gone, the crash model drops what was not durable, and each
    /// session reads what it got before the crash, up to the close.
    async fn crash(&mut self, result: &mut StepResult) {
        let (crashed, lost) = if self.process && self.halted() {
            // A killed process whose calls the halt parked in the FUSE daemon
            // cannot finish dying until they are answered: send the kill (the
            // target's first poll), apply the crash model (which answers them,
            // none reaching the disk), then wait for the process to be gone.
            let sandbox = &self.sandbox;
            let crash = self.target.crash();
            tokio::pin!(crash);
            tokio::select! {
                biased;
                crashed = &mut crash => (crashed, sandbox.crash()),
                () = std::future::ready(()) => {
                    let lost = sandbox.crash();
                    (crash.await, lost)
                }
            }
        } else {
            let crashed = self.target.crash().await;
            (crashed, self.sandbox.crash())
        };
        let text = if crashed {
            "crashed"
        } else {
            "crash: not running"
        };
        self.addr = None;
        self.record(Entry::Service {
            text: text.into(),
            errors: vec![],
        });
        // What the disk had not made durable is gone (the vfs crash model).
        for lost in lost {
            let text = format!("crash lost: {}", self.redact(&lost));
            self.record(Entry::Fault { text });
        }
        // A dot the crash left unanswered may or may not have made it to IN.
        self.ledger.crash_begins();
        self.drain_sessions(result).await;
        self.ledger.crash_ends();
    }

    fn halted(&self) -> bool {
        self.sandbox.halted()
    }

    /// Arms the step's fault (or crash) on the connector's filesystem operation.
    fn arm_op(&mut self, step: &Step, m: &OpMatch, after: bool, result: &mut StepResult) {
        let op = match m.op.parse::<sandbox::OpKind>() {
            Ok(op) => op,
            Err(e) => {
                result.problems.push(e);
                return;
            }
        };
        let path = m.path.clone().unwrap_or_else(|| "**".into());
        let nth = m.nth.unwrap_or(1);
        let (strike, fault) = match &step.fault {
            Some(f) => match to_sandbox_fault(f) {
                Ok(sf) => (sandbox::Strike::Fault(sf), Some(f.clone())),
                Err(e) => {
                    result.problems.push(e);
                    return;
                }
            },
            None => (sandbox::Strike::Halt, None),
        };
        let at = if after {
            sandbox::At::After
        } else {
            sandbox::At::Before
        };
        let waits_for = describe_op_match(m, after);
        let trigger = sandbox::OpTrigger {
            op,
            path,
            nth,
            process: m.process.clone(),
        };
        match self.sandbox.arm_at(trigger, at, strike) {
            Ok(id) => self.op_armed.push(OpArmed {
                id,
                step: self.step,
                fault,
                waits_for,
            }),
            Err(e) => {
                let msg = self.redact(&format!("could not arm the fault {waits_for}: {e}"));
                result.problems.push(msg);
            }
        }
    }

    /// Records the operation-timed faults that fired, in firing order, and keeps
    /// the recovery's and the ledger's books on what they did.
    fn fired_by_ops(&mut self) {
        for (id, text) in self.sandbox.take_fired_by_id() {
            let text = self.redact(&text);
            self.record(Entry::Fault { text });
            let Some(pos) = self.op_armed.iter().position(|a| a.id == id) else {
                continue;
            };
            // The sandbox keeps the undo record of what it did; the recovery
            // reads it from there.
            self.op_armed.remove(pos);
        }
        let gone =
            std::mem::take(&mut *self.halt.removed.lock().unwrap_or_else(|e| e.into_inner()));
        if !gone.is_empty() {
            let bodies = gone
                .iter()
                .map(|c| self.target.read_message(c).body)
                .collect();
            self.ledger.removed_by_fault(bodies);
        }
    }

    /// An operation-timed fault or crash that never fired by the end of the
    /// steps is a mismatch of the step that armed it: the scenario did not test
    /// what it says.
    fn unfired_op_triggers(&mut self) {
        let unfired = self.sandbox.disarm();
        for armed in std::mem::take(&mut self.op_armed) {
            if !unfired.contains(&armed.id) {
                continue;
            }
            let what = match &armed.fault {
                Some(f) => format!("the fault `{}`", f.name()),
                None => "the crash".to_string(),
            };
            self.mismatches.push(Mismatch {
                step: armed.step,
                action: format!("{what} {}", armed.waits_for),
                message: format!(
                    "armed at step {}, never fired: the connector made no such operation",
                    armed.step
                ),
            });
        }
    }

    async fn start(&mut self, expects_error: bool, result: &mut StepResult) {
        match self.target.start().await {
            Ok(addr) => {
                self.addr = Some(addr);
                self.drain_events(result);
                self.record(Entry::Service {
                    text: "started".into(),
                    errors: vec![],
                });
                result.service_errors.get_or_insert_with(Vec::new);
            }
            Err(e) => {
                // A process's errors are its stderr; an in-process one's, its error.
                let errors: Vec<String> = if e.stderr.is_empty() {
                    vec![self.redact(&e.message)]
                } else {
                    e.stderr.iter().map(|l| self.redact(l)).collect()
                };
                let shown = self.redact(&e.to_string());
                self.drain_events(result);
                self.record(Entry::Service {
                    text: match e.exit {
                        Some(exit) => format!("start failed ({exit})"),
                        None => "start failed".into(),
                    },
                    errors: errors.clone(),
                });
                if !expects_error {
                    result
                        .problems
                        .push(format!("the service did not start: {shown}"));
                }
                result
                    .service_errors
                    .get_or_insert_with(Vec::new)
                    .extend(errors);
            }
        }
    }

    async fn stop(&mut self, result: &mut StepResult) {
        let report = self.target.stop().await;
        self.addr = None;
        self.drain_sessions(result).await;
        self.drain_events(result);
        match report {
            Some(report) => {
                let errors: Vec<String> = report.errors.iter().map(|l| self.redact(l)).collect();
                let text = if !errors.is_empty() {
                    format!("stopped with errors ({})", report.exit)
                } else if self.target.exit_statuses() || !report.expected {
                    format!("stopped ({})", report.exit)
                } else {
                    "stopped".into()
                };
                self.record(Entry::Service {
                    text,
                    errors: errors.clone(),
                });
                if !report.expected {
                    result.problems.push(format!(
                        "the stop ended with {}, not as the target `{}` expects a stop to end",
                        report.exit,
                        self.target.name()
                    ));
                }
                result
                    .service_errors
                    .get_or_insert_with(Vec::new)
                    .extend(errors);
            }
            None => {
                self.record(Entry::Service {
                    text: "stop: not running".into(),
                    errors: vec![],
                });
                result
                    .problems
                    .push("stop: the service was not running".into());
            }
        }
    }

    /// A target that ended by itself (a process that exited or died) since the
    /// last look: recorded with its status, and no longer running.
    fn exited(&mut self) {
        if let Some(exit) = self.target.exited() {
            self.addr = None;
            self.record(Entry::Service {
                text: format!("exited by itself ({exit})"),
                errors: vec![],
            });
        }
    }

    /// After a stop or crash: reads what each open session got (a 421, or nothing)
    /// up to the close, in session-name order.
    async fn drain_sessions(&mut self, result: &mut StepResult) {
        let names: Vec<String> = self.sessions.keys().cloned().collect();
        for name in names {
            self.read_replies(&name, usize::MAX, result).await;
        }
    }

    async fn connect(&mut self, name: &str, result: &mut StepResult) {
        if self.sessions.contains_key(name) {
            result
                .problems
                .push(format!("session `{name}` is already connected"));
            return;
        }
        let outcome = match self.addr {
            None => Err("the service is not running".to_string()),
            Some(addr) => ClientSession::connect(addr, self.options.reply_timeout)
                .await
                .map_err(|e| e.to_string()),
        };
        match outcome {
            Ok(session) => {
                self.sessions.insert(name.to_string(), session);
                self.ledger.connected(name);
                self.read_replies(name, 1, result).await;
            }
            Err(error) => {
                result.connect_failed = true;
                self.record(Entry::ConnectFailed {
                    session: name.to_string(),
                    error,
                });
            }
        }
    }

    /// Sends bytes on a session; false (and recorded) if that was impossible.
    async fn send(
        &mut self,
        name: &str,
        bytes: &[u8],
        shown: String,
        result: &mut StepResult,
    ) -> bool {
        if !self.sessions.contains_key(name) {
            result
                .problems
                .push(format!("session `{name}` is not open"));
            return false;
        }
        self.record(Entry::Sent {
            session: name.to_string(),
            text: shown,
        });
        let session = self.sessions.get_mut(name).expect("checked above");
        let sent = session.send(bytes).await;
        self.ledger.sent(name, bytes);
        if sent.is_err() {
            self.sessions.remove(name);
            self.ledger.closed(name);
            self.record(Entry::Closed {
                session: name.to_string(),
            });
            result.closed = true;
            return false;
        }
        true
    }

    /// Sends message text (no dot), firing `after_data_bytes` faults at their byte.
    async fn data(&mut self, name: &str, text: &str, result: &mut StepResult) -> bool {
        let bytes = encode_data(text);
        let mut split = None;
        if let Some(pos) = self.armed.iter().position(|a| {
            a.when.session.as_deref() == Some(name)
                && a.when
                    .after_data_bytes
                    .is_some_and(|n| n as usize <= bytes.len())
        }) {
            let armed = self.armed.remove(pos);
            let n = armed.when.after_data_bytes.unwrap_or(0) as usize;
            split = Some((n, armed.fault));
        }
        let lines = bytes.iter().filter(|&&b| b == b'\n').count();
        match split {
            None => {
                let shown = format!("(data: {} bytes, {lines} lines)", bytes.len());
                self.send(name, &bytes, shown, result).await
            }
            Some((n, fault)) => {
                let shown = format!("(data: first {n} of {} bytes)", bytes.len());
                if !self.send(name, &bytes[..n], shown, result).await {
                    return false;
                }
                self.apply(&fault, result);
                let shown = format!("(data: remaining {} bytes)", bytes.len() - n);
                self.send(name, &bytes[n..], shown, result).await
            }
        }
    }

    async fn dot(&mut self, name: &str, result: &mut StepResult) {
        self.fire(name, |w| w.before_dot == Some(true), result);
        let at_line_start = self.sessions.get(name).is_none_or(|s| s.at_line_start());
        let bytes: &[u8] = if at_line_start {
            b".\r\n"
        } else {
            b"\r\n.\r\n"
        };
        if self.send(name, bytes, ".".into(), result).await {
            self.read_replies(name, 1, result).await;
        }
    }

    /// Reads up to `count` replies, recording each, firing `after_reply` faults,
    /// and following a 421 or 221 to the connection's close.
    async fn read_replies(&mut self, name: &str, count: usize, result: &mut StepResult) {
        let timeout = self.options.reply_timeout;
        let mut read = 0;
        while read < count {
            let Some(session) = self.sessions.get_mut(name) else {
                return;
            };
            let outcome = session.read_reply(timeout).await;
            self.drain_events(result);
            match outcome {
                ReadOutcome::Reply(reply) => {
                    read += 1;
                    let closing = matches!(reply.code, 421 | 221);
                    self.record_reply(name, reply, result);
                    if closing {
                        self.follow_close(name, result).await;
                        return;
                    }
                }
                ReadOutcome::Malformed(text) => {
                    read += 1;
                    self.malformed(name, text);
                }
                ReadOutcome::Closed => {
                    self.sessions.remove(name);
                    self.ledger.closed(name);
                    self.record(Entry::Closed {
                        session: name.to_string(),
                    });
                    result.closed = true;
                    return;
                }
                ReadOutcome::Timeout => {
                    if count == usize::MAX {
                        return; // draining: an open session with nothing more to say
                    }
                    let waited = format!("{} ms", timeout.as_millis());
                    self.violate(
                        Invariant::Liveness,
                        format!("no reply on `{name}` within {waited}"),
                    );
                    self.record(Entry::NoReply {
                        session: name.to_string(),
                        waited,
                    });
                    return;
                }
            }
        }
    }

    /// Bytes that are not a reply: recorded, and a `well-formed` violation.
    fn malformed(&mut self, name: &str, text: String) {
        self.violate(
            Invariant::WellFormed,
            format!("malformed reply on `{name}`: {text:?}"),
        );
        self.record(Entry::Malformed {
            session: name.to_string(),
            text,
        });
    }

    fn record_reply(&mut self, name: &str, reply: Reply, result: &mut StepResult) {
        // The expectations see the reply as the history shows it.
        let lines: Vec<String> = reply.lines.iter().map(|l| self.redact(l)).collect();
        let reply = Reply {
            text: self.redact(&reply.text),
            lines: lines.clone(),
            ..reply
        };
        self.record(Entry::Reply {
            session: name.to_string(),
            lines,
        });
        let code = reply.code;
        self.ledger.replied(name, code);
        result.replies.push(reply);
        self.fire(name, |w| w.after_reply == Some(code), result);
    }

    /// Applies, in the order they were armed, the faults armed on `session` whose
    /// stage `reached` says has come.
    fn fire(&mut self, session: &str, reached: impl Fn(&When) -> bool, result: &mut StepResult) {
        let (due, waiting): (Vec<Armed>, Vec<Armed>) = std::mem::take(&mut self.armed)
            .into_iter()
            .partition(|a| a.when.session.as_deref() == Some(session) && reached(&a.when));
        self.armed = waiting;
        for armed in due {
            self.apply(&armed.fault, result);
        }
    }

    /// A 421 or 221 must be followed by the server closing the connection.
    async fn follow_close(&mut self, name: &str, result: &mut StepResult) {
        let timeout = self.options.reply_timeout;
        let Some(session) = self.sessions.get_mut(name) else {
            return;
        };
        match session.expect_close(timeout).await {
            None => {
                self.sessions.remove(name);
                self.ledger.closed(name);
                self.record(Entry::Closed {
                    session: name.to_string(),
                });
                result.closed = true;
            }
            Some(ReadOutcome::Timeout) => {
                self.violate(
                    Invariant::WellFormed,
                    format!("`{name}` stayed open after a reply that closes the connection"),
                );
            }
            Some(ReadOutcome::Reply(reply)) => {
                self.violate(
                    Invariant::WellFormed,
                    format!("`{name}` got another reply after a closing one"),
                );
                self.record_reply(name, reply, result);
            }
            Some(ReadOutcome::Malformed(text)) => self.malformed(name, text),
            Some(ReadOutcome::Closed) => unreachable!("expect_close maps Closed to None"),
        }
    }

    async fn send_message(&mut self, spec: &scenario::SendSpec, result: &mut StepResult) {
        let message = match crate::send::build(spec) {
            Ok(m) => m,
            Err(e) => {
                result.problems.push(e);
                return;
            }
        };
        let outcome = match self.addr {
            None => Err((None, "the service is not running".to_string())),
            Some(addr) => {
                self.ledger
                    .complete("send", crate::send::stored_body(&message));
                crate::send::send(addr, message, self.options.reply_timeout).await
            }
        };
        self.drain_events(result);
        let text = match outcome {
            Ok(reply) => {
                self.ledger.answer_complete("send", Some(250));
                self.redact(&reply)
            }
            Err((code, error)) => {
                self.ledger.answer_complete("send", code);
                result.send_failed = Some(true);
                format!("failed: {}", self.redact(&error))
            }
        };
        result.send_failed.get_or_insert(false);
        self.record(Entry::Send { text });
    }

    fn apply(&mut self, fault: &Fault, result: &mut StepResult) {
        // Messages a `remove` takes away (with IN, with a copy of IN set aside,
        // or one by one) are gone by the fault, not lost by the connector. A
        // file in work that was never seen in IN is not: a message acknowledged
        // while still there was acknowledged too early, whatever removed it.
        let root = self.sandbox.tree().to_path_buf();
        let before = matches!(fault, Fault::Remove(_))
            .then(|| invariants::read_tree(&root, &[sandbox::BALLAST]));
        let receiving = self.spool.receiving.clone();
        let text = match to_sandbox_fault(fault) {
            Ok(f) => match self.sandbox.apply(&f) {
                Ok(done) => {
                    if let Some(before) = before {
                        let after = invariants::read_tree(&root, &[sandbox::BALLAST]);
                        let gone = before
                            .into_iter()
                            .filter(|(n, _)| !after.iter().any(|(m, _)| m == n))
                            .map(|(n, c)| (n, self.target.read_message(&c).body))
                            .filter(|(n, body)| {
                                let being_received =
                                    receiving.iter().any(|dir| invariants::is_under(n, dir));
                                !being_received || self.seen_in_in.contains(body)
                            })
                            .map(|(_, body)| body)
                            .collect();
                        self.ledger.removed_by_fault(gone);
                    }
                    done
                }
                Err(e) => {
                    let msg = format!("could not apply `{}`: {e}", f);
                    result.problems.push(self.redact(&msg));
                    format!("FAILED {f}: {e}")
                }
            },
            Err(e) => {
                result.problems.push(e.clone());
                format!("FAILED: {e}")
            }
        };
        let text = self.redact(&text);
        self.record(Entry::Fault { text });
    }

    fn drain_events(&mut self, result: &mut StepResult) {
        // A fault timed by an operation fired before the events and replies the
        // connector produced after that operation (as far as one can tell).
        self.fired_by_ops();
        for event in self.target.poll_events() {
            let event = crate::target::Event {
                message: self.redact(&event.message),
                ..event
            };
            self.record(Entry::Event {
                id: event.id,
                level: event.level.to_string(),
                source: event.source.clone(),
                category: event.category.clone(),
                message: event.message.clone(),
            });
            result.events.push(event);
        }
    }

    /// The target's own redactions, then the sandbox's path written `<root>`.
    fn redact(&self, text: &str) -> String {
        let mut out = self.target.redact(text);
        for (from, to) in &self.redactions {
            out = out.replace(from.as_str(), to);
        }
        out
    }

    fn listing(&self) -> Vec<Listing> {
        self.spool
            .dirs()
            .iter()
            .map(|dir| Listing {
                dir: dir.to_string(),
                // Names redacted as the target's ids are (`imc serve`'s clock ids).
                files: check::list_dir(&self.sandbox.tree().join(dir)).map(|names| {
                    let mut names: Vec<String> = names.iter().map(|n| self.redact(n)).collect();
                    names.sort();
                    names
                }),
            })
            .collect()
    }
}

/// The scenario's fault as the sandbox's.
fn to_sandbox_fault(fault: &Fault) -> Result<sandbox::Fault, String> {
    Ok(match fault {
        Fault::Remove(path) => sandbox::Fault::Remove { path: path.clone() },
        Fault::Rename { from, to } => sandbox::Fault::Rename {
            from: from.clone(),
            to: to.clone(),
        },
        Fault::Replace(path) => sandbox::Fault::Replace { path: path.clone() },
        Fault::Restore(path) => sandbox::Fault::Restore { path: path.clone() },
        Fault::FillDisk { leave } => sandbox::Fault::FillDisk { leave: leave.0 },
        Fault::FreeDisk => sandbox::Fault::FreeDisk,
        Fault::ClearErrno => sandbox::Fault::ClearErrno,
        Fault::Errno(spec) => sandbox::Fault::Errno(sandbox::ErrnoRule {
            op: spec.op.parse()?,
            path: spec.path.clone().unwrap_or_else(|| "**".into()),
            nth: spec.nth.unwrap_or(1),
            errno: spec.errno.parse()?,
            persistent: spec.persistent,
            process: spec.process.clone(),
        }),
    })
}

/// A step in words, for the transcript.
pub fn describe(step: &Step) -> String {
    let s = step.session.as_deref().unwrap_or("?");
    let mut text = if let Some(a) = step.service {
        let name = match a {
            ServiceAction::Start => "start",
            ServiceAction::Stop => "stop",
            ServiceAction::Restart => "restart",
            ServiceAction::Crash => "crash",
            ServiceAction::CheckDisk => "check_disk",
        };
        match &step.when {
            Some(w) => format!("service {name} {}", describe_when(w)),
            None => format!("service {name}"),
        }
    } else if let Some(n) = &step.connect {
        format!("connect {n}")
    } else if let Some(c) = &step.command {
        format!("{s}: {c}")
    } else if let Some(p) = &step.pipeline {
        format!("{s}: pipeline {}", p.join(" | "))
    } else if step.data.is_some() {
        format!("{s}: data")
    } else if step.dot.is_some() {
        format!("{s}: dot")
    } else if step.message.is_some() {
        format!("{s}: message")
    } else if step.raw.is_some() {
        format!("{s}: raw")
    } else if let Some(n) = &step.disconnect {
        format!("disconnect {n}")
    } else if let Some(m) = &step.send {
        format!("send from {} to {}", m.from, m.to.join(", "))
    } else if let Some(f) = &step.fault {
        let f = to_sandbox_fault(f).map_or_else(|e| e, |f| f.to_string());
        match &step.when {
            Some(w) => format!("fault {f} {}", describe_when(w)),
            None => format!("fault {f}"),
        }
    } else {
        "check".to_string()
    };
    if let Some(note) = &step.note {
        text.push_str(&format!(" ({note})"));
    }
    text
}

fn describe_when(w: &When) -> String {
    let session = w.session.as_deref().unwrap_or("?");
    if let Some((m, after)) = w.op_stage() {
        describe_op_match(m, after)
    } else if let Some(code) = w.after_reply {
        format!("when {session} gets {code}")
    } else if let Some(n) = w.after_data_bytes {
        format!("after {n} bytes of {session}'s data")
    } else {
        format!("before {session}'s dot")
    }
}

/// `before sync_dir #1 matching imcdata/in` (`... by process cat`).
fn describe_op_match(m: &OpMatch, after: bool) -> String {
    let by = match &m.process {
        Some(name) => format!(" by process {name}"),
        None => String::new(),
    };
    format!(
        "{} {} #{} matching {}{by}",
        if after { "after" } else { "before" },
        m.op,
        m.nth.unwrap_or(1),
        m.path.as_deref().unwrap_or("**")
    )
}
