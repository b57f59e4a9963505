//! `imc-harness enumerate`: SQLite's countdown over a scenario's filesystem
//! operations.
//!
//! The scenario runs once (its inline `expect`s removed: a failed operation
//! legitimately changes the replies) and its filesystem operations are read from
//! the run ([`crate::runner::Run::ops`]). Then, for each operation `k` and each errno, the
//! scenario runs again with operation `k` failing, once (transient) and from `k`
//! on (persistent). "Operation `k` fails" is an ordinary `errno` fault inserted as
//! the first step, so that it counts from the start: the op kind of `k`, its exact
//! path as the glob (or `**`), and `nth` the position of `k` among the operations
//! of that kind the glob matches ([`injections`]). Only the invariants must hold.
//!
//! Besides errnos, each tree fault of [`TreeFault`] is applied right before
//! operation `k` (a fault step armed with `when: { before_op }` on that very
//! operation, first in the scenario; [`tree_injections`]): the states a backup
//! job, an `mv` or a crash leaves between two of the connector's operations,
//! which an invented errno cannot stand for.

use crate::explore::{self, Kind, Outcome, Progress};
use crate::runner::RunOptions;
use crate::scenario::{self, ErrnoSpec, Fault, OpMatch, Scenario, ServiceAction, Size, Step, When};
use sandbox::OpKind;
use sandbox::{Errno, OpRecord};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The path glob of the injected faults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GlobMode {
    /// The operation's own path: a persistent fault fails that path only.
    #[default]
    Exact,
    /// `**`: a persistent fault fails every later operation of the kind.
    Any,
}

impl std::str::FromStr for GlobMode {
    type Err = String;
    fn from_str(s: &str) -> Result<GlobMode, String> {
        match s {
            "exact" => Ok(GlobMode::Exact),
            "any" => Ok(GlobMode::Any),
            other => Err(format!(
                "unknown glob mode `{other}`; expected `exact` or `any`"
            )),
        }
    }
}

/// A change of the tree (or a crash) made right before an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TreeFault {
    /// `imcdata/in` renamed to `imcdata/in.bak`.
    RenameIn,
    /// The same, and put back once the operation is done.
    RenameInBack,
    /// `imcdata/in` removed.
    RemoveIn,
    /// `imcdata/in` replaced by a plain file.
    ReplaceIn,
    /// `imcdata/work` removed.
    RemoveWork,
    /// The disk filled, 0 bytes left.
    FillDisk,
    /// The connector's process crashes (the vfs crash model applies).
    Crash,
    /// The connector's process crashes once the operation is done (what it does
    /// without the disk before its next operation, such as a reply, may come
    /// first).
    CrashAfter,
}

impl TreeFault {
    /// Every tree fault, in table order.
    pub const ALL: [TreeFault; 8] = [
        TreeFault::RenameIn,
        TreeFault::RenameInBack,
        TreeFault::RemoveIn,
        TreeFault::ReplaceIn,
        TreeFault::RemoveWork,
        TreeFault::FillDisk,
        TreeFault::Crash,
        TreeFault::CrashAfter,
    ];

    /// The name `--faults` takes.
    pub fn name(self) -> &'static str {
        match self {
            TreeFault::RenameIn => "rename-in",
            TreeFault::RenameInBack => "rename-in-back",
            TreeFault::RemoveIn => "remove-in",
            TreeFault::ReplaceIn => "replace-in",
            TreeFault::RemoveWork => "remove-work",
            TreeFault::FillDisk => "fill-disk",
            TreeFault::Crash => "crash",
            TreeFault::CrashAfter => "crash-after",
        }
    }

    /// The steps that make it happen at the operation `m` matches.
    pub fn steps(self, m: &OpMatch) -> Vec<Step> {
        let before = || {
            Some(When {
                before_op: Some(m.clone()),
                ..When::default()
            })
        };
        let fault = |f: Fault| Step {
            fault: Some(f),
            when: before(),
            ..Step::default()
        };
        let rename = Fault::Rename {
            from: "imcdata/in".into(),
            to: "imcdata/in.bak".into(),
        };
        match self {
            TreeFault::RenameIn => vec![fault(rename)],
            TreeFault::RenameInBack => vec![
                fault(rename),
                Step {
                    fault: Some(Fault::Restore("imcdata/in".into())),
                    when: Some(When {
                        after_op: Some(m.clone()),
                        ..When::default()
                    }),
                    ..Step::default()
                },
            ],
            TreeFault::RemoveIn => vec![fault(Fault::Remove("imcdata/in".into()))],
            TreeFault::ReplaceIn => vec![fault(Fault::Replace("imcdata/in".into()))],
            TreeFault::RemoveWork => vec![fault(Fault::Remove("imcdata/work".into()))],
            TreeFault::FillDisk => vec![fault(Fault::FillDisk { leave: Size(0) })],
            TreeFault::Crash => vec![Step {
                service: Some(ServiceAction::Crash),
                when: before(),
                ..Step::default()
            }],
            TreeFault::CrashAfter => vec![Step {
                service: Some(ServiceAction::Crash),
                when: Some(When {
                    after_op: Some(m.clone()),
                    ..When::default()
                }),
                ..Step::default()
            }],
        }
    }

    fn words(self) -> &'static str {
        match self {
            TreeFault::RenameIn => "IN is renamed away",
            TreeFault::RenameInBack => "IN is renamed away",
            TreeFault::RemoveIn => "IN is removed",
            TreeFault::ReplaceIn => "IN is replaced by a plain file",
            TreeFault::RemoveWork => "work is removed",
            TreeFault::FillDisk => "the disk is filled",
            TreeFault::Crash => "the connector crashes",
            TreeFault::CrashAfter => "the connector crashes",
        }
    }
}

impl std::str::FromStr for TreeFault {
    type Err = String;
    fn from_str(s: &str) -> Result<TreeFault, String> {
        TreeFault::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = TreeFault::ALL.iter().map(|f| f.name()).collect();
                format!(
                    "unknown fault `{s}`; expected `errno` or one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Settings of an enumeration.
#[derive(Clone, Debug)]
pub struct Options {
    /// The scenario file.
    pub scenario: PathBuf,
    /// Run with this profile instead of the scenario's.
    pub profile: Option<String>,
    /// Run with this seeded defect.
    pub mutant: Option<String>,
    /// The errnos each operation fails with (names).
    pub errnos: Vec<String>,
    /// The tree faults applied before each operation.
    pub faults: Vec<TreeFault>,
    /// The glob of the faults.
    pub glob: GlobMode,
    /// Where reproducers go (`None`: not written).
    pub out_dir: Option<PathBuf>,
    /// Worker threads.
    pub threads: usize,
    /// Show a progress bar (when stderr is a terminal).
    pub progress: bool,
    /// Run settings.
    pub run: RunOptions,
}

impl Options {
    /// `--faults`: `errno` (the errnos of [`Options::errnos`]) and tree fault
    /// names; what is not named is not run.
    pub fn select_faults(&mut self, names: &[String]) -> Result<(), String> {
        let mut faults = Vec::new();
        let mut errno = false;
        for name in names {
            match name.trim() {
                "errno" => errno = true,
                other => faults.push(other.parse::<TreeFault>()?),
            }
        }
        if !errno {
            self.errnos.clear();
        }
        self.faults = faults;
        Ok(())
    }

    /// The defaults: ENOSPC, EIO and ENOENT and every tree fault, exact paths, 2 threads, reproducers
    /// in `scenarios/regressions`, a 5 s reply timeout.
    pub fn new(scenario: PathBuf) -> Options {
        Options {
            scenario,
            profile: None,
            mutant: None,
            errnos: vec!["ENOSPC".into(), "EIO".into(), "ENOENT".into()],
            faults: TreeFault::ALL.to_vec(),
            glob: GlobMode::Exact,
            out_dir: Some(PathBuf::from("scenarios/regressions")),
            threads: 2,
            progress: false,
            run: RunOptions {
                reply_timeout: Duration::from_secs(5),
                ..RunOptions::default()
            },
        }
    }
}

/// One rerun: operation `k` failing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Injection {
    /// The operation's position in the run, from 1.
    pub k: usize,
    /// The operation, as the log shows it.
    pub call: String,
    /// Its kind.
    pub op: OpKind,
    /// The glob of the fault.
    pub glob: String,
    /// Its position among the operations of that kind the glob matches, from 1.
    pub nth: u32,
    /// What happens there.
    pub what: What,
}

/// What a rerun does at its operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum What {
    /// The operation fails with an errno, once or from then on.
    Errno {
        /// The error.
        errno: Errno,
        /// From `k` on, or only `k`.
        persistent: bool,
    },
    /// A tree fault right before the operation.
    Tree(TreeFault),
}

impl What {
    /// The table column it counts in: the errno's name or the tree fault's.
    pub fn column(&self) -> &'static str {
        match self {
            What::Errno { errno, .. } => errno.name(),
            What::Tree(t) => t.name(),
        }
    }
}

impl Injection {
    /// The steps, put first in the scenario, that make it happen.
    pub fn steps(&self) -> Vec<Step> {
        match self.what {
            What::Errno { errno, persistent } => vec![Step {
                fault: Some(Fault::Errno(ErrnoSpec {
                    op: self.op.name().to_string(),
                    path: Some(self.glob.clone()),
                    errno: errno.name().to_string(),
                    nth: (self.nth != 1).then_some(self.nth),
                    persistent,
                    process: None,
                })),
                ..Step::default()
            }],
            What::Tree(t) => t.steps(&OpMatch {
                op: self.op.name().to_string(),
                path: Some(self.glob.clone()),
                nth: (self.nth != 1).then_some(self.nth),
                process: None,
            }),
        }
    }
}

impl fmt::Display for Injection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.what {
            What::Errno { errno, persistent } => write!(
                f,
                "operation {} (`{}`) fails with {errno} {}",
                self.k,
                self.call,
                if persistent { "from then on" } else { "once" }
            ),
            What::Tree(t) => write!(
                f,
                "{} {} operation {} (`{}`){}",
                t.words(),
                if t == TreeFault::CrashAfter {
                    "right after"
                } else {
                    "right before"
                },
                self.k,
                self.call,
                if t == TreeFault::RenameInBack {
                    " and put back right after it"
                } else {
                    ""
                }
            ),
        }
    }
}

/// The glob matching exactly `path` (metacharacters in brackets).
pub fn escape_glob(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\' | '!') {
            out.push('[');
            out.push(c);
            out.push(']');
        } else {
            out.push(c);
        }
    }
    out
}

fn call(op: &OpRecord) -> String {
    match &op.to {
        Some(to) => format!("{} {} -> {to}", op.op, op.path),
        None => format!("{} {}", op.op, op.path),
    }
}

/// The operations of `ops` that enumerate counts down: those of the kinds the
/// connector's `Fs` trait makes ([`OpKind::FS`]), so a scenario gets the same
/// table on every backend. The kinds seen only on a FUSE mount (`lookup`,
/// `flush`...) are the kernel's work around those calls; their failures reach
/// the connector as failures of the calls themselves, which the table has.
pub fn connector_ops(ops: &[OpRecord]) -> Vec<OpRecord> {
    ops.iter().filter(|o| o.op.in_fs()).cloned().collect()
}

/// The reruns for `ops`: each operation, each errno, once then persistent.
/// Operations outside the sandbox root are left out (they fail anyway), and so is
/// ENOENT on `remove` (see [`explore::realistic`]).
pub fn injections(ops: &[OpRecord], errnos: &[Errno], glob: GlobMode) -> Vec<Injection> {
    let mut out = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if op.path.starts_with("<sandbox>") || op.path.starts_with('/') {
            continue;
        }
        let matches = |o: &OpRecord| {
            o.op == op.op
                && match glob {
                    GlobMode::Any => true,
                    GlobMode::Exact => o.path == op.path || o.to.as_deref() == Some(&op.path),
                }
        };
        let nth = ops[..i].iter().filter(|o| matches(o)).count() as u32 + 1;
        let pattern = match glob {
            GlobMode::Any => "**".to_string(),
            GlobMode::Exact => escape_glob(&op.path),
        };
        for &errno in errnos {
            if !explore::realistic(op.op, errno) {
                continue;
            }
            for persistent in [false, true] {
                out.push(Injection {
                    k: i + 1,
                    call: call(op),
                    op: op.op,
                    glob: pattern.clone(),
                    nth,
                    what: What::Errno { errno, persistent },
                });
            }
        }
    }
    out
}

/// The reruns with a tree fault right before each operation (its exact path as
/// the glob), each fault in turn. Operations outside the root are left out.
pub fn tree_injections(ops: &[OpRecord], faults: &[TreeFault]) -> Vec<Injection> {
    let mut out = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if op.path.starts_with("<sandbox>") || op.path.starts_with('/') {
            continue;
        }
        let matches = |o: &OpRecord| {
            o.op == op.op && (o.path == op.path || o.to.as_deref() == Some(&op.path))
        };
        let nth = ops[..i].iter().filter(|o| matches(o)).count() as u32 + 1;
        for &t in faults {
            out.push(Injection {
                k: i + 1,
                call: call(op),
                op: op.op,
                glob: escape_glob(&op.path),
                nth,
                what: What::Tree(t),
            });
        }
    }
    out
}

/// The scenario as the reruns play it: no `expect`, no pure check steps, no
/// `expect_violation`, and the profile and mutant asked for.
pub fn prepare(scenario: &Scenario, profile: Option<&str>, mutant: Option<&str>) -> Scenario {
    let mut s = scenario.clone();
    s.steps.retain(|step| step.action().is_some());
    for step in &mut s.steps {
        step.expect = None;
    }
    s.expect_violation = None;
    if let Some(p) = profile {
        s.profile = p.to_string();
    }
    if let Some(m) = mutant {
        s.connector.mutant = Some(m.to_string());
    }
    s
}

/// `base` with the injection's steps first.
pub fn with_fault(base: &Scenario, injection: &Injection) -> Scenario {
    let mut s = base.clone();
    let mut steps = injection.steps();
    steps.append(&mut s.steps);
    s.steps = steps;
    s
}

/// One rerun's result.
#[derive(Debug)]
pub struct RunResult {
    /// What failed.
    pub injection: Injection,
    /// How the run failed (empty: every invariant held).
    pub kinds: Vec<Kind>,
    /// The first violation of each kind, in words.
    pub messages: Vec<String>,
    /// Steps that did not play as written.
    pub problems: Vec<String>,
}

/// A reproducer written (or not) for a distinct violation.
#[derive(Debug)]
pub struct Reproducer {
    /// The violation.
    pub kind: Kind,
    /// The injection (`None`: the scenario fails without any).
    pub injection: Option<Injection>,
    /// The violation in words.
    pub message: String,
    /// Steps that do not play as written in that run (a start the fault made
    /// fail...): the scenario fails under `imc-harness run` for those too.
    pub problems: Vec<String>,
    /// Where it was written.
    pub path: Option<PathBuf>,
    /// The text (when not written, or when writing failed).
    pub yaml: Option<String>,
    /// The written file, loaded and run [`explore::RECHECK_RUNS`] times: how many
    /// runs failed the same way.
    pub rechecked: Option<usize>,
}

/// What an enumeration found.
#[derive(Debug)]
pub struct Report {
    /// The scenario file.
    pub scenario: PathBuf,
    /// The profile run.
    pub profile: String,
    /// The mutant run, if any.
    pub mutant: Option<String>,
    /// The operations of the run without faults.
    pub ops: Vec<OpRecord>,
    /// How the run without faults failed (normally not at all).
    pub baseline: Vec<Kind>,
    /// Every rerun, in order.
    pub results: Vec<RunResult>,
    /// Time of the reruns.
    pub elapsed: Duration,
    /// One per distinct violation (kind and operation kind).
    pub reproducers: Vec<Reproducer>,
}

impl Report {
    /// Reruns with a violation.
    pub fn failing_runs(&self) -> usize {
        self.results.iter().filter(|r| !r.kinds.is_empty()).count()
            + usize::from(!self.baseline.is_empty())
    }

    /// Reruns per second.
    pub fn rate(&self) -> f64 {
        self.results.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Failing runs per kind, over every rerun.
    pub fn by_kind(&self) -> BTreeMap<Kind, usize> {
        let mut out = BTreeMap::new();
        for r in &self.results {
            for k in &r.kinds {
                *out.entry(*k).or_default() += 1;
            }
        }
        out
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} (profile {}{}): {} filesystem operations, {} runs with one failing",
            self.scenario.display(),
            self.profile,
            self.mutant
                .as_ref()
                .map(|m| format!(", mutant {m}"))
                .unwrap_or_default(),
            self.ops.len(),
            self.results.len()
        )?;
        if !self.baseline.is_empty() {
            let names: Vec<&str> = self.baseline.iter().map(|k| k.name()).collect();
            writeln!(
                f,
                "without any fault the run already violates: {}",
                names.join(", ")
            )?;
        }
        // The table: one row per operation kind, one column per fault (failing
        // runs / runs), then the violations of the row.
        let mut columns: Vec<&'static str> = Vec::new();
        for r in &self.results {
            let c = r.injection.what.column();
            if !columns.contains(&c) {
                columns.push(c);
            }
        }
        type Row = (
            usize,
            BTreeMap<&'static str, (usize, usize)>,
            BTreeMap<Kind, usize>,
        );
        let mut rows: BTreeMap<OpKind, Row> = BTreeMap::new();
        for op in &self.ops {
            rows.entry(op.op).or_default().0 += 1;
        }
        for r in &self.results {
            let row = rows.entry(r.injection.op).or_default();
            let cell = row.1.entry(r.injection.what.column()).or_default();
            cell.1 += 1;
            if !r.kinds.is_empty() {
                cell.0 += 1;
            }
            for k in &r.kinds {
                *row.2.entry(*k).or_default() += 1;
            }
        }
        let width = |c: &str| c.len().max(5);
        write!(f, "  {:<16} {:>5}", "operation", "ops")?;
        for c in &columns {
            write!(f, " {:>w$}", c, w = width(c))?;
        }
        writeln!(f, "  violations")?;
        for (op, (ops, cells, kinds)) in &rows {
            write!(f, "  {:<16} {ops:>5}", op.name())?;
            for c in &columns {
                let cell = match cells.get(c) {
                    Some((failing, runs)) => format!("{failing}/{runs}"),
                    None => "-".to_string(),
                };
                write!(f, " {:>w$}", cell, w = width(c))?;
            }
            let v = if kinds.is_empty() {
                "-".to_string()
            } else {
                kinds
                    .iter()
                    .map(|(k, n)| format!("{k}: {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            writeln!(f, "  {v}")?;
        }
        for r in &self.reproducers {
            match &r.injection {
                Some(i) => writeln!(f, "violation: {} when {i}", r.kind)?,
                None => writeln!(f, "violation: {} without any fault", r.kind)?,
            }
            writeln!(f, "  {}", r.message)?;
            for p in &r.problems {
                writeln!(f, "  warning: a step does not play as written: {p}")?;
            }
            if let Some(p) = &r.path {
                writeln!(f, "  reproducer: {}", p.display())?;
            }
            if let Some(n) = r.rechecked {
                writeln!(f, "  re-run from the file: {}", explore::recheck_words(n))?;
            }
            if let Some(y) = &r.yaml {
                writeln!(f, "{y}")?;
            }
        }
        let secs = self.elapsed.as_secs_f64();
        let by_kind = self.by_kind();
        writeln!(
            f,
            "{} runs in {secs:.1} s ({:.0} runs/s); {} with a violation{}",
            self.results.len(),
            self.rate(),
            self.results.iter().filter(|r| !r.kinds.is_empty()).count(),
            if by_kind.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    by_kind
                        .iter()
                        .map(|(k, n)| format!("{k}: {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        )
    }
}

fn kinds_and_messages(outcome: &Outcome) -> (Vec<Kind>, Vec<String>) {
    let kinds = outcome.kinds();
    let messages = kinds.iter().map(|&k| outcome.describe(k)).collect();
    (kinds, messages)
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scenario".into())
}

/// Runs the enumeration.
pub fn enumerate(options: &Options) -> Result<Report, String> {
    let original = scenario::load(&options.scenario).map_err(|e| e.to_string())?;
    let mut errnos = Vec::new();
    for name in &options.errnos {
        errnos.push(name.trim().parse::<Errno>()?);
    }
    let mut base = prepare(
        &original,
        options.profile.as_deref(),
        options.mutant.as_deref(),
    );
    if let Some(b) = options.run.backend {
        base.sandbox.backend = b;
    }
    // The reproducers name the target they were found against.
    if let Some(t) = &options.run.target {
        base.target = Some(t.clone());
    }
    let rt = explore::runtime();
    let baseline = explore::run_on(&rt, &base, &options.run);
    if let Some(e) = &baseline.error {
        return Err(format!("{}: {e}", options.scenario.display()));
    }
    let (baseline_kinds, baseline_messages) = kinds_and_messages(&baseline);
    let ops = connector_ops(&baseline.ops);
    let mut plan = injections(&ops, &errnos, options.glob);
    plan.extend(tree_injections(&ops, &options.faults));
    let progress = Progress::new(plan.len() as u64, "runs", options.progress);
    let results: Mutex<Vec<Option<RunResult>>> =
        Mutex::new((0..plan.len()).map(|_| None).collect());
    let failing = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    explore::parallel(
        plan.len(),
        options.threads,
        |_| false,
        |rt, i| {
            let injection = &plan[i];
            let outcome = explore::run_on(rt, &with_fault(&base, injection), &options.run);
            let (kinds, messages) = kinds_and_messages(&outcome);
            let problems = outcome.mismatches.iter().map(|m| m.to_string()).collect();
            if !kinds.is_empty() {
                failing.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            results.lock().expect("lock")[i] = Some(RunResult {
                injection: injection.clone(),
                kinds,
                messages,
                problems,
            });
            progress.inc();
            progress.message(format!(
                "{} with a violation",
                failing.load(std::sync::atomic::Ordering::SeqCst)
            ));
        },
    );
    progress.finish();
    let elapsed = started.elapsed();
    let results: Vec<RunResult> = results
        .into_inner()
        .expect("lock")
        .into_iter()
        .flatten()
        .collect();

    let mut report = Report {
        scenario: options.scenario.clone(),
        profile: base.profile.clone(),
        mutant: base.connector.mutant.clone(),
        ops,
        baseline: baseline_kinds.clone(),
        results,
        elapsed,
        reproducers: Vec::new(),
    };
    // One reproducer per distinct violation: the baseline's own, then per kind
    // of violation and kind of operation, the first run that shows it.
    let name = stem(&options.scenario);
    let mut tag = format!("enumerate-{name}-{}", report.profile);
    if let Some(m) = &report.mutant {
        tag.push_str(&format!("-{m}"));
    }
    let baseline_problems: Vec<String> =
        baseline.mismatches.iter().map(|m| m.to_string()).collect();
    let mut wanted: Vec<(Kind, Option<Injection>, String, Vec<String>)> = Vec::new();
    for (k, m) in baseline_kinds.iter().zip(&baseline_messages) {
        wanted.push((*k, None, m.clone(), baseline_problems.clone()));
    }
    // Per kind of violation, kind of operation and fault column, the first run
    // that shows it, preferring one whose steps all play as written.
    type Key = (Kind, OpKind, &'static str);
    let mut chosen: Vec<(Key, usize, usize)> = Vec::new();
    for (i, r) in report.results.iter().enumerate() {
        for (j, k) in r.kinds.iter().enumerate() {
            if baseline_kinds.contains(k) {
                continue;
            }
            // Errnos count as one fault here: one reproducer per operation kind.
            let fault = match r.injection.what {
                What::Errno { .. } => "errno",
                What::Tree(t) => t.name(),
            };
            let key = (*k, r.injection.op, fault);
            match chosen.iter_mut().find(|(c, _, _)| *c == key) {
                None => chosen.push((key, i, j)),
                Some(c) => {
                    if !report.results[c.1].problems.is_empty() && r.problems.is_empty() {
                        *c = (key, i, j);
                    }
                }
            }
        }
    }
    for ((kind, _, _), i, j) in chosen {
        let r = &report.results[i];
        wanted.push((
            kind,
            Some(r.injection.clone()),
            r.messages[j].clone(),
            r.problems.clone(),
        ));
    }
    for (kind, injection, message, problems) in wanted {
        let mut s = match &injection {
            Some(i) => with_fault(&base, i),
            None => base.clone(),
        };
        let what = match &injection {
            Some(i) => format!("{i}"),
            None => "no fault at all".to_string(),
        };
        s.name = Some(format!("enumerate: {kind} in {name} when {what}"));
        let mut command = format!(
            "imc-harness enumerate {} --profile {}",
            options.scenario.display(),
            report.profile
        );
        if let Some(m) = &report.mutant {
            command.push_str(&format!(" --mutant {m}"));
        }
        if options.glob == GlobMode::Any {
            command.push_str(" --glob any");
        }
        let catch = if report.mutant.is_some() {
            "It catches the seeded defect: the scenario expects the violation and fails if the invariant holds."
        } else {
            "The scenario fails until the connector is fixed."
        };
        s.description = Some(format!(
            "Found by `{command}`: with {what}, the invariant `{kind}` is violated ({message}). \
             The steps are those of {} without their expectations{}. {catch}",
            options.scenario.display(),
            if injection.is_some() {
                ", after the fault"
            } else {
                ""
            },
        ));
        let header = format!("Found by `{command}`.\nThe run with {what} violates `{kind}`.");
        let mut rep = Reproducer {
            kind,
            injection: injection.clone(),
            message,
            problems,
            path: None,
            yaml: None,
            rechecked: None,
        };
        // The claims stay the scenario's own.
        match explore::reproducer(s, kind, &header) {
            Err(e) => rep.yaml = Some(format!("(cannot write the reproducer: {e})")),
            Ok(text) => match &options.out_dir {
                None => rep.yaml = Some(text),
                Some(dir) => {
                    let file = match &injection {
                        Some(
                            i @ Injection {
                                what: What::Tree(t),
                                ..
                            },
                        ) => format!("{tag}-{kind}-{}-{}.yaml", i.op.name(), t.name()),
                        Some(i) => format!("{tag}-{kind}-{}.yaml", i.op.name()),
                        None => format!("{tag}-{kind}.yaml"),
                    };
                    let path = dir.join(file);
                    match explore::write_file(&path, &text) {
                        Ok(()) => {
                            rep.rechecked = Some(explore::recheck(&rt, &path, kind));
                            rep.path = Some(path);
                        }
                        Err(e) => rep.yaml = Some(format!("{e}\n{text}")),
                    }
                }
            },
        }
        report.reproducers.push(rep);
    }
    Ok(report)
}
