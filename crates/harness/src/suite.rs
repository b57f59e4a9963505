//! Running scenario files as a suite: what `cargo test` and `imc-harness run` share.

use crate::history::History;
use crate::invariants::{Invariant, Violation};
use crate::runner::{self, Mismatch, RunOptions};
use crate::scenario;
use crate::snapshot::{self, Comparison};
use std::path::{Path, PathBuf};

/// The folder name that marks a scenarios root: a scenario's id is its path
/// under the nearest ancestor folder of this name.
pub const SCENARIOS_DIR: &str = "scenarios";

/// The folder, beside a scenarios root, that holds its snapshots.
pub const SNAPSHOTS_DIR: &str = "snapshots";

/// A scenario file, its id and where its snapshot lives.
///
/// The id is the file's path under its scenarios root, without the extension
/// (`kb-q146791/kb3-in-removed-before-dot`), whatever the working directory and
/// however the path was spelt (`./scenarios/`, an absolute path, from inside
/// `scenarios/`): the root is found from the file's canonical path. A file
/// outside any scenarios root is identified by its file name, and its snapshot
/// lives in a `snapshots/` folder beside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    /// The file, as given.
    pub path: PathBuf,
    /// The id: test name and snapshot name source.
    pub id: String,
    /// The folder of its snapshot.
    pub snapshots: PathBuf,
}

impl Case {
    /// The case for `path`, its id relative to `base` when under it, and its
    /// snapshot in the `snapshots/` folder beside `base`.
    pub fn new(path: PathBuf, base: &Path) -> Case {
        let base_abs = absolute(base);
        let file_abs = absolute(&path);
        let (id, snapshots) = match file_abs.strip_prefix(&base_abs) {
            Ok(rel) => (id_of(rel), snapshots_beside(&base_abs)),
            Err(_) => outside(&file_abs),
        };
        Case {
            path,
            id,
            snapshots,
        }
    }

    /// The case for `path`, its id relative to the nearest enclosing folder
    /// named `scenarios` (see [`scenarios_root`]); outside any, its file name.
    pub fn locate(path: PathBuf) -> Case {
        let file_abs = absolute(&path);
        let (id, snapshots) = match scenarios_root(&file_abs) {
            Some(root) => (
                id_of(file_abs.strip_prefix(&root).unwrap_or(&file_abs)),
                snapshots_beside(&root),
            ),
            None => outside(&file_abs),
        };
        Case {
            path,
            id,
            snapshots,
        }
    }

    /// The snapshot name (`kb-q146791__kb3-in-removed-before-dot`).
    pub fn snapshot_name(&self) -> String {
        self.id.replace('/', "__")
    }

    /// The snapshot file (`snapshots/kb-q146791__kb3-in-removed-before-dot.snap`).
    pub fn snapshot_path(&self) -> PathBuf {
        self.snapshots
            .join(format!("{}.snap", self.snapshot_name()))
    }
}

/// The scenarios root of a file: the nearest ancestor of its canonical path
/// named `scenarios`, or `None` when there is none.
pub fn scenarios_root(path: &Path) -> Option<PathBuf> {
    absolute(path)
        .ancestors()
        .skip(1)
        .find(|dir| dir.file_name().is_some_and(|n| n == SCENARIOS_DIR))
        .map(Path::to_path_buf)
}

/// The canonical form of `path`, or (if it cannot be resolved) its absolute form.
fn absolute(path: &Path) -> PathBuf {
    path.canonicalize()
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

fn id_of(rel: &Path) -> String {
    rel.with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn snapshots_beside(root: &Path) -> PathBuf {
    root.parent().unwrap_or(root).join(SNAPSHOTS_DIR)
}

/// The id and snapshot folder of a file outside any scenarios root.
fn outside(file: &Path) -> (String, PathBuf) {
    let id = file.file_stem().map_or_else(
        || "scenario".to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    let dir = file.parent().unwrap_or(Path::new(".")).join(SNAPSHOTS_DIR);
    (id, dir)
}

/// The scenario files under `paths` (files or folders), as cases. With `base`,
/// ids are relative to it; without, to each file's scenarios root
/// ([`Case::locate`]).
pub fn cases(paths: &[PathBuf], base: Option<&Path>) -> Result<Vec<Case>, String> {
    let files = scenario::discover(paths).map_err(|e| e.to_string())?;
    Ok(files
        .into_iter()
        .map(|p| match base {
            Some(base) => Case::new(p, base),
            None => Case::locate(p),
        })
        .collect())
}

/// How snapshots are checked. Each case's snapshot is `Case::snapshot_path`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Snapshots {
    /// With insta (`cargo test`): a difference writes a `.snap.new` for
    /// `cargo insta review`, or fails at once under CI.
    Insta,
    /// Compared with the stored file; a missing snapshot fails the case, as
    /// under `cargo test`.
    Compare,
    /// Written (or rewritten) when missing or different, and any stale
    /// `.snap.new` beside it removed (`imc-harness run --accept`).
    Accept,
    /// Not checked.
    Off,
}

/// What became of one case.
#[derive(Debug)]
pub struct Verdict {
    /// The case.
    pub case: Case,
    /// The history, when the scenario ran.
    pub history: Option<History>,
    /// Inline expectations that failed.
    pub mismatches: Vec<Mismatch>,
    /// Invariants that did not hold.
    pub violations: Vec<Violation>,
    /// The invariant the scenario expects to be violated (mutant scenarios).
    pub expected_violation: Option<Invariant>,
    /// The snapshot comparison, when checked.
    pub snapshot: Option<Comparison>,
    /// Why it could not run (a bad scenario file, an unusable sandbox).
    pub error: Option<String>,
    /// Why it was not run at all (it needs what the chosen backend lacks); a
    /// skipped case neither passes nor fails.
    pub skipped: Option<String>,
    /// What the harness itself failed to do (for example undo a fault in the
    /// final recovery): no verdict on the connector, but the case fails.
    pub harness_failures: Vec<String>,
}

impl Verdict {
    /// A verdict for `case` with nothing known yet.
    fn new(case: &Case) -> Verdict {
        Verdict {
            case: case.clone(),
            history: None,
            mismatches: Vec::new(),
            violations: Vec::new(),
            expected_violation: None,
            snapshot: None,
            error: None,
            skipped: None,
            harness_failures: Vec::new(),
        }
    }

    /// True when it ran, every expectation held, the harness did all it had to,
    /// and the snapshot (if checked) is stored and matched. A skipped case has
    /// not passed.
    pub fn passed(&self) -> bool {
        self.skipped.is_none()
            && self.error.is_none()
            && self.harness_failures.is_empty()
            && self.mismatches.is_empty()
            && self.invariants_as_expected()
            && !matches!(
                self.snapshot,
                Some(Comparison::Differs(_) | Comparison::Missing(_))
            )
    }

    /// True when the case was skipped (see [`Verdict::skipped`]).
    pub fn is_skipped(&self) -> bool {
        self.skipped.is_some()
    }

    /// No violation, or (for a mutant scenario) the expected one was seen.
    pub fn invariants_as_expected(&self) -> bool {
        match self.expected_violation {
            None => self.violations.is_empty(),
            Some(want) => self.violations.iter().any(|v| v.invariant == want),
        }
    }

    /// The transcript and every difference, for a person to read.
    pub fn report(&self) -> String {
        let mut out = String::new();
        if let Some(why) = &self.skipped {
            out.push_str(&format!("skipped: {why}\n"));
            return out;
        }
        if let Some(e) = &self.error {
            out.push_str(&format!("{e}\n"));
            return out;
        }
        if let Some(h) = &self.history {
            out.push_str("transcript:\n");
            for line in h.lines() {
                out.push_str(&format!("  {line}\n"));
            }
        }
        if !self.violations.is_empty() {
            out.push_str("invariants violated:\n");
            for v in &self.violations {
                out.push_str(&format!("  - {v}\n"));
            }
        }
        if let Some(want) = self.expected_violation {
            if self.violations.iter().any(|v| v.invariant == want) {
                out.push_str(&format!(
                    "the expected violation of `{want}` was seen (this scenario runs a seeded defect)\n"
                ));
            } else {
                out.push_str(&format!(
                    "expected the invariant `{want}` to be violated; it held\n"
                ));
            }
        }
        if let Some(h) = &self.history
            && !self.invariants_as_expected()
            && !h.recovery.is_empty()
        {
            out.push_str("final recovery:\n");
            for e in &h.recovery {
                for line in e.to_string().lines() {
                    out.push_str(&format!("  {line}\n"));
                }
            }
        }
        if !self.harness_failures.is_empty() {
            out.push_str("harness failure (not a verdict on the connector):\n");
            for f in &self.harness_failures {
                out.push_str(&format!("  - {f}\n"));
            }
        }
        if !self.mismatches.is_empty() {
            out.push_str("expectations that failed:\n");
            for m in &self.mismatches {
                out.push_str(&format!("  - {m}\n"));
            }
        }
        match &self.snapshot {
            Some(Comparison::Differs(d)) => {
                out.push_str(&format!("snapshot differs (- stored, + this run):\n{d}"));
            }
            Some(Comparison::Missing(p)) => {
                out.push_str(&format!(
                    "no snapshot stored at {}; record it with `imc-harness run --accept {}`\n",
                    p.display(),
                    self.case.path.display()
                ));
            }
            Some(Comparison::Written(p)) => {
                out.push_str(&format!("snapshot written to {}\n", p.display()));
            }
            _ => {}
        }
        out
    }
}

/// Whether a scenario's snapshot must be the same on the tmpfs backend as on vfs:
/// `Err` says why not. Injected errnos exist only in the fault-injecting layer's
/// decisions, which the kernel never makes, and a crash loses unsynced writes only
/// in the vfs crash model (tmpfs keeps the page cache), so those scenarios differ
/// by design.
pub fn tmpfs_comparable(scenario: &scenario::Scenario) -> Result<(), &'static str> {
    if scenario.connector.mutant.is_some() {
        return Err("runs a seeded defect");
    }
    for step in &scenario.steps {
        if matches!(step.fault, Some(scenario::Fault::Errno(_))) {
            return Err("injects an errno");
        }
        if step.service == Some(scenario::ServiceAction::Crash) {
            return Err("crashes the service (only the vfs crash model loses unsynced data)");
        }
    }
    Ok(())
}

/// Runs one case on its own single-threaded runtime.
pub fn run_case(case: &Case, options: &RunOptions, snapshots: &Snapshots) -> Verdict {
    match scenario::load(&case.path) {
        Ok(scenario) => run_loaded(case, &scenario, options, snapshots),
        Err(e) => Verdict {
            error: Some(e.to_string()),
            ..Verdict::new(case)
        },
    }
}

/// Why a scenario cannot run on `backend` (chosen for the run, in place of its
/// own) and must be skipped: `Some(reason)`. A crash loses unsynced data only
/// under a crash model, which the tmpfs backend does not have (the kernel keeps
/// the page cache), so a scenario that crashes would test nothing there.
pub fn skip_reason(scenario: &scenario::Scenario, options: &RunOptions) -> Option<String> {
    let backend = options.backend.unwrap_or(scenario.sandbox.backend);
    if backend == scenario::Backend::Tmpfs {
        if let Err(why) = sandbox::tmpfs_available() {
            return Some(format!("backend `tmpfs` unavailable: {why}"));
        }
        let crashes = scenario
            .steps
            .iter()
            .any(|s| s.service == Some(scenario::ServiceAction::Crash));
        if crashes && scenario.sandbox.backend != scenario::Backend::Tmpfs {
            return Some(
                "crashes the service, and backend `tmpfs` has no crash model \
                 (the kernel keeps the page cache, so a crash loses nothing)"
                    .into(),
            );
        }
    }
    if backend == scenario::Backend::Fuse
        && let Err(why) = sandbox::fuse_available()
    {
        return Some(format!("backend `fuse` unavailable: {why}"));
    }
    // `service: check_disk` asks an in-process connector; a process cannot be asked.
    if runner::runs_a_process(scenario, options)
        && scenario
            .steps
            .iter()
            .any(|s| s.service == Some(scenario::ServiceAction::CheckDisk))
        && !runner::target_checks_disk(scenario, options)
    {
        return Some(
            "uses `service: check_disk`, and a process target cannot be asked to run its disk check"
                .into(),
        );
    }
    // A process on tmpfs gets the tree faults only.
    if backend == scenario::Backend::Tmpfs
        && runner::runs_a_process(scenario, options)
        && let Some(why) = runner::needs_fuse(scenario)
    {
        return Some(format!(
            "{why}, which a process target gets only on backend `fuse`"
        ));
    }
    if backend != scenario::Backend::Fuse
        && let Some(what) = mount_only(scenario)
    {
        return Some(format!(
            "{what}, which only backend `fuse` tells apart (on `{}` every operation is \
             the in-process connector's)",
            backend_name(backend)
        ));
    }
    None
}

/// The folder of a process target's own snapshots, under `snapshots`:
/// `snapshots/<target>/`, for the scenarios whose history legitimately differs
/// from the in-process one. `None` for the in-process connector.
pub fn target_snapshots(
    snapshots: &Path,
    scenario: &scenario::Scenario,
    options: &RunOptions,
) -> Option<PathBuf> {
    if !runner::runs_a_process(scenario, options) {
        return None;
    }
    let name = options.target.as_deref().or(scenario.target.as_deref())?;
    let stem = Path::new(name).file_stem()?.to_string_lossy().into_owned();
    Some(snapshots.join(stem))
}

/// What in `scenario` only a FUSE mount has (loading allows it on scenarios
/// of backend `fuse` only): a `process` to match, or an operation kind that
/// no `Fs` call makes. Run on another backend, such a rule would never strike.
fn mount_only(scenario: &scenario::Scenario) -> Option<String> {
    for step in &scenario.steps {
        let mut matched = Vec::new();
        if let Some(scenario::Fault::Errno(spec)) = &step.fault {
            matched.push((spec.op.as_str(), spec.process.as_deref()));
        }
        if let Some((m, _)) = step.when.as_ref().and_then(scenario::When::op_stage) {
            matched.push((m.op.as_str(), m.process.as_deref()));
        }
        for (op, process) in matched {
            if let Some(name) = process {
                return Some(format!("names the process `{name}`"));
            }
            if op.parse::<sandbox::OpKind>().is_ok_and(|k| !k.in_fs()) {
                return Some(format!("counts `{op}` operations"));
            }
        }
    }
    None
}

fn backend_name(backend: scenario::Backend) -> &'static str {
    match backend {
        scenario::Backend::Vfs => "vfs",
        scenario::Backend::Tmpfs => "tmpfs",
        scenario::Backend::Fuse => "fuse",
    }
}

/// Runs an already loaded (possibly modified) scenario as `case`.
pub fn run_loaded(
    case: &Case,
    scenario: &scenario::Scenario,
    options: &RunOptions,
    snapshots: &Snapshots,
) -> Verdict {
    let mut verdict = Verdict::new(case);
    if let Some(why) = skip_reason(scenario, options) {
        verdict.skipped = Some(why);
        return verdict;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            verdict.error = Some(format!("cannot start a runtime: {e}"));
            return verdict;
        }
    };
    let run = match runtime.block_on(runner::run(scenario, options)) {
        Ok(run) => run,
        Err(e) => {
            verdict.error = Some(format!("{}: {e}", case.path.display()));
            return verdict;
        }
    };
    let contents = snapshot::render(&case.id, scenario, &run.history);
    let name = case.snapshot_name();
    // A process target is checked against its own snapshot where it has one,
    // else against the in-process one; `--accept` writes its own only where
    // the two differ.
    let own = target_snapshots(&case.snapshots, scenario, options);
    let dir = match &own {
        Some(own) if own.join(format!("{name}.snap")).is_file() => own,
        Some(own)
            if matches!(snapshots, Snapshots::Accept)
                && snapshot::compare(&case.snapshots, &name, &contents) != Comparison::Same =>
        {
            own
        }
        _ => &case.snapshots,
    };
    // A snapshot records the scenario's own profile: under another, it is not
    // the reference.
    let other_profile = options
        .profile
        .as_ref()
        .is_some_and(|p| *p != scenario.profile);
    verdict.snapshot = match snapshots {
        _ if other_profile => None,
        Snapshots::Off => None,
        Snapshots::Compare => Some(snapshot::compare(dir, &name, &contents)),
        Snapshots::Accept => Some(match snapshot::compare(dir, &name, &contents) {
            Comparison::Same => {
                snapshot::remove_pending(dir, &name);
                Comparison::Same
            }
            _ => match snapshot::write(dir, &name, &contents) {
                Ok(path) => Comparison::Written(path),
                Err(e) => {
                    verdict.harness_failures.push(e);
                    Comparison::Missing(case.snapshot_path())
                }
            },
        }),
        Snapshots::Insta => {
            let cmp = snapshot::compare(dir, &name, &contents);
            if cmp != Comparison::Same {
                // Let insta record the new snapshot for `cargo insta review` (or
                // refuse under CI); its panic is the failure.
                let (dir, name, contents) = (dir.clone(), name.clone(), contents.clone());
                let insta =
                    std::panic::catch_unwind(move || snapshot::assert(&dir, &name, &contents));
                if insta.is_ok() {
                    // insta accepted it (INSTA_UPDATE=always or INSTA_FORCE_PASS).
                    Some(Comparison::Same)
                } else {
                    Some(match cmp {
                        Comparison::Missing(p) => Comparison::Differs(format!(
                            "no snapshot stored at {}; record it with `imc-harness run --accept {}` \
                             (or `cargo insta review`)\n",
                            p.display(),
                            case.path.display()
                        )),
                        other => other,
                    })
                }
            } else {
                Some(cmp)
            }
        }
    };
    verdict.history = Some(run.history);
    verdict.mismatches = run.mismatches;
    verdict.violations = run.violations;
    verdict.harness_failures.extend(run.harness_failures);
    verdict.expected_violation = scenario
        .expect_violation
        .as_deref()
        .and_then(Invariant::from_name);
    verdict
}
