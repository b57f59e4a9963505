//! Running scenario files as a suite: what `cargo test` and `imc-harness run` share.

use crate::history::History;
use crate::invariants::{Invariant, Violation};
use crate::runner::{self, Mismatch, RunOptions};
use crate::scenario;
use crate::snapshot::{self, Comparison};
use std::path::{Path, PathBuf};

/// A scenario file and its id (its path under the scenarios folder, without the
/// extension: `kb-q146791/kb3-in-removed-before-dot`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    /// The file.
    pub path: PathBuf,
    /// The id: test name and snapshot name source.
    pub id: String,
}

impl Case {
    /// The case for `path`; its id is relative to `base` when under it.
    pub fn new(path: PathBuf, base: &Path) -> Case {
        let rel = path.strip_prefix(base).unwrap_or(&path);
        let id = rel
            .with_extension("")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        Case { path, id }
    }

    /// The snapshot name (`kb-q146791__kb3-in-removed-before-dot`).
    pub fn snapshot_name(&self) -> String {
        self.id.replace('/', "__")
    }
}

/// The scenario files under `paths` (files or folders), as cases relative to `base`.
pub fn cases(paths: &[PathBuf], base: &Path) -> Result<Vec<Case>, String> {
    let files = scenario::discover(paths).map_err(|e| e.to_string())?;
    Ok(files.into_iter().map(|p| Case::new(p, base)).collect())
}

/// How snapshots are checked.
#[derive(Clone, Debug)]
pub enum Snapshots {
    /// With insta (`cargo test`): a difference writes a `.snap.new` for
    /// `cargo insta review`, or fails at once under CI.
    Insta(PathBuf),
    /// Compared with the stored file; a missing snapshot is reported, not a failure.
    Compare(PathBuf),
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
        }
    }

    /// True when it ran, every expectation held and the snapshot (if any) matched.
    pub fn passed(&self) -> bool {
        self.error.is_none()
            && self.mismatches.is_empty()
            && self.invariants_as_expected()
            && !matches!(self.snapshot, Some(Comparison::Differs(_)))
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
        if let Some(h) = &self.history {
            if !self.invariants_as_expected() && !h.recovery.is_empty() {
                out.push_str("final recovery:\n");
                for e in &h.recovery {
                    for line in e.to_string().lines() {
                        out.push_str(&format!("  {line}\n"));
                    }
                }
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
                out.push_str(&format!("no snapshot stored yet at {}\n", p.display()));
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

/// Runs an already loaded (possibly modified) scenario as `case`.
pub fn run_loaded(
    case: &Case,
    scenario: &scenario::Scenario,
    options: &RunOptions,
    snapshots: &Snapshots,
) -> Verdict {
    let mut verdict = Verdict::new(case);
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
    verdict.snapshot = match snapshots {
        Snapshots::Off => None,
        Snapshots::Compare(dir) => Some(snapshot::compare(dir, &case.snapshot_name(), &contents)),
        Snapshots::Insta(dir) => {
            let cmp = snapshot::compare(dir, &case.snapshot_name(), &contents);
            if cmp != Comparison::Same {
                // Let insta record the new snapshot for `cargo insta review` (or
                // refuse under CI); its panic is the failure.
                let name = case.snapshot_name();
                let (dir, contents) = (dir.clone(), contents.clone());
                let insta =
                    std::panic::catch_unwind(move || snapshot::assert(&dir, &name, &contents));
                if insta.is_ok() {
                    // insta accepted it (INSTA_UPDATE=always or INSTA_FORCE_PASS).
                    Some(Comparison::Same)
                } else {
                    Some(match cmp {
                        Comparison::Missing(p) => Comparison::Differs(format!(
                            "no snapshot stored at {}; run `cargo insta review` to accept the new one\n",
                            p.display()
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
    verdict.expected_violation = scenario
        .expect_violation
        .as_deref()
        .and_then(Invariant::from_name);
    verdict
}
