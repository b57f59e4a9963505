//! Reproducers: a failing schedule written back as a scenario file, and the
//! file checked by running it again.

use super::*;
use crate::invariants::Invariant;
use crate::runner::RunOptions;
use crate::scenario::{self, Scenario};
use std::path::Path;

/// The claims a reproducer of a violation of `kind` checks.
pub fn claims_for(kind: Kind) -> Vec<String> {
    let claims: &[&str] = match kind {
        Kind::Invariant(Invariant::NoLoss) => &["RFC5321-4.1.1.4", "RFC5321-6.1"],
        Kind::Invariant(Invariant::NoPhantom) => &["RFC5321-4.2.5", "RFC5321-6.1"],
        Kind::Invariant(Invariant::NoPartial) => &["KB-6", "RFC5321-6.1"],
        Kind::Invariant(Invariant::Liveness) => &["RFC5321-4.5.3.2"],
        Kind::Invariant(Invariant::WellFormed) => &["RFC5321-4.2", "RFC5321-3.8"],
        Kind::Invariant(Invariant::Recovery) => &["KB-5"],
        Kind::Invariant(Invariant::Containment) => &["RFC5321-6.1"],
        Kind::RunError => &["RFC5321-6.1"],
    };
    claims.iter().map(|c| c.to_string()).collect()
}

/// A scenario file for a failing schedule: `expect_violation` is set for a
/// seeded defect (the scenario then documents the catch and passes while the
/// defect is there), left out for a real bug (the scenario fails until it is
/// fixed). `header` becomes comment lines at the top.
pub fn reproducer(mut scenario: Scenario, kind: Kind, header: &str) -> Result<String, String> {
    if scenario.connector.mutant.is_some()
        && let Kind::Invariant(i) = kind
    {
        scenario.expect_violation = Some(i.name().to_string());
    }
    let full = scenario.clone();
    // A session action's `session` is left out where it is inherited.
    let mut current: Option<String> = None;
    for step in &mut scenario.steps {
        if let Some(name) = &step.connect {
            current = Some(name.clone());
        } else if step.is_session_action() {
            if step.session == current {
                step.session = None;
            } else {
                current = step.session.clone();
            }
        }
    }
    let yaml = serde_saphyr::to_string(&scenario).map_err(|e| e.to_string())?;
    let mut text = String::new();
    for line in header.lines() {
        text.push_str(&format!("# {line}\n"));
    }
    // `expect_violation` (a top-level scalar, written last) goes before the steps.
    let expect_line = yaml
        .lines()
        .find(|l| l.starts_with("expect_violation:"))
        .map(str::to_string);
    for line in yaml.lines() {
        if Some(line) == expect_line.as_deref() {
            continue;
        }
        if line.starts_with("steps:")
            && let Some(e) = &expect_line
        {
            text.push_str(e);
            text.push('\n');
        }
        text.push_str(line);
        text.push('\n');
    }
    // The file must read back as the very scenario that failed.
    let back = scenario::parse(&text, Path::new("reproducer.yaml"))
        .map_err(|e| format!("the reproducer does not parse back: {e}"))?;
    let same = serde_saphyr::to_string(&back).map_err(|e| e.to_string())?
        == serde_saphyr::to_string(&full).map_err(|e| e.to_string())?;
    if !same {
        return Err("the reproducer parses back as a different scenario".into());
    }
    Ok(text)
}

/// Writes `text` to `path`, creating its folder.
pub fn write_file(path: &Path, text: &str) -> Result<(), String> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Runs of a written reproducer when it is checked.
pub const RECHECK_RUNS: usize = 5;

/// Loads the written reproducer and runs it [`RECHECK_RUNS`] times with the
/// default run settings: how many runs failed with `kind` (0 if it does not load).
pub fn recheck(rt: &tokio::runtime::Runtime, path: &Path, kind: Kind) -> usize {
    match scenario::load(path) {
        Ok(s) => (0..RECHECK_RUNS)
            .filter(|_| run_on(rt, &s, &RunOptions::default()).fails_with(kind))
            .count(),
        Err(_) => 0,
    }
}

/// `fails the same way in 5 of 5 runs`, and a warning when not in all.
pub fn recheck_words(failed: usize) -> String {
    if failed == RECHECK_RUNS {
        format!("fails the same way in {failed} of {RECHECK_RUNS} runs")
    } else {
        format!(
            "fails the same way in only {failed} of {RECHECK_RUNS} runs: the failure depends on timing"
        )
    }
}

pub(crate) fn command_line(options: &Options) -> String {
    let mut line = format!("imc-harness explore --profile {}", options.target.profile);
    if let Some(m) = &options.target.mutant {
        line.push_str(&format!(" --mutant {m}"));
    }
    line.push_str(&format!(" --seed {}", options.seed));
    if options.max_steps != 30 {
        line.push_str(&format!(" --max-steps {}", options.max_steps));
    }
    if options.keep_going {
        line.push_str(" --keep-going");
    }
    line
}

pub(crate) fn header(
    options: &Options,
    index: u64,
    before: usize,
    after: usize,
    kind: Kind,
) -> String {
    format!(
        "Found by `{}` (case {index}), shrunk from {before} to {after} steps.\n\
         The invariant violated: {kind}.",
        command_line(options)
    )
}

pub(crate) fn describe_finding(options: &Options, kind: Kind, message: &str) -> String {
    let what = match &options.target.mutant {
        Some(m) => format!(
            "This schedule catches the seeded defect `{m}`: the invariant `{kind}` is violated \
             ({message}). The scenario expects that violation and fails if the invariant holds."
        ),
        None => format!(
            "The invariant `{kind}` is violated ({message}). This scenario fails until the \
             connector is fixed."
        ),
    };
    format!(
        "A minimal schedule found by `{}`. {what}",
        command_line(options)
    )
}
