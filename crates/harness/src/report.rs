//! Reporting a suite run for people and for CI: one status line per scenario
//! (`PASS [ 0.012s] smtp/happy-path`), failure details that point at the line of
//! the scenario file each failed step is on, a summary that lists every failure
//! with the command that reruns it, and machine-readable reports (JUnit, in the
//! format cargo-nextest writes, and JSON lines).

use crate::snapshot::Comparison;
use crate::suite::Verdict;
use anstyle::{AnsiColor, Style};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// A verdict and how long the case took.
#[derive(Debug)]
pub struct Timed {
    /// The verdict.
    pub verdict: Verdict,
    /// Wall time of the case (loading, the run, the checks).
    pub elapsed: Duration,
}

/// A case's outcome in one word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// It ran and every check held.
    Pass,
    /// It ran and a check failed (an expectation, an invariant, the snapshot,
    /// or the harness's own part).
    Fail,
    /// Not run: the backend cannot run it.
    Skip,
    /// Not run: the file could not be loaded, or the run could not start.
    Error,
}

impl Status {
    /// The status of `verdict`.
    pub fn of(verdict: &Verdict) -> Status {
        if verdict.skipped.is_some() {
            Status::Skip
        } else if verdict.error.is_some() {
            Status::Error
        } else if verdict.passed() {
            Status::Pass
        } else {
            Status::Fail
        }
    }

    /// The word shown (`PASS`, `FAIL`, `SKIP`, `ERROR`).
    pub fn word(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
            Status::Error => "ERROR",
        }
    }

    fn style(self) -> Style {
        let color = match self {
            Status::Pass => AnsiColor::Green,
            Status::Fail | Status::Error => AnsiColor::Red,
            Status::Skip => AnsiColor::Yellow,
        };
        Style::new().fg_color(Some(color.into())).bold()
    }
}

/// Paints text when colour is on.
#[derive(Clone, Copy, Debug)]
pub struct Paint {
    /// Whether to emit ANSI colour codes.
    pub color: bool,
}

impl Paint {
    fn paint(&self, style: Style, text: &str) -> String {
        if self.color {
            format!("{style}{text}{style:#}")
        } else {
            text.to_string()
        }
    }
}

/// `1 scenario`, `2 scenarios`.
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The status line of a case: `    PASS [   0.012s] smtp/happy-path`; a skipped
/// case gives its reason instead of a time.
pub fn status_line(t: &Timed, paint: Paint) -> String {
    let status = Status::of(&t.verdict);
    let word = paint.paint(status.style(), &format!("{:>9}", status.word()));
    let id = &t.verdict.case.id;
    match (&t.verdict.skipped, status) {
        (Some(why), _) => format!("{word} {:>12} {id}: {why}", ""),
        (None, Status::Error) => format!(
            "{word} [{:>8.3}s] {id} (could not run)",
            t.elapsed.as_secs_f64()
        ),
        _ => format!("{word} [{:>8.3}s] {id}", t.elapsed.as_secs_f64()),
    }
}

/// What failed in a case, for a person to act on: each failed expectation at
/// the line of its step in the scenario file (`kb3.yaml:24: step 7 (a:
/// message): expected code 421, got 250`), the invariants violated, what the
/// harness could not do, the snapshot difference, and the last `tail` lines of
/// the transcript. Empty for a case that passed or was skipped.
pub fn failure_detail(verdict: &Verdict, tail: usize) -> String {
    let mut out = String::new();
    match Status::of(verdict) {
        Status::Pass | Status::Skip => return out,
        Status::Error => {
            let text = verdict.error.as_deref().unwrap_or_default();
            out.push_str("  load error (the scenario did not run):\n");
            for line in text.lines() {
                let _ = writeln!(out, "    {line}");
            }
            return out;
        }
        Status::Fail => {}
    }
    let file = &verdict.case.path;
    let lines = std::fs::read_to_string(file)
        .map(|s| crate::scenario::step_lines(&s))
        .unwrap_or_default();
    let at = |step: usize| -> String {
        let name = file.display();
        match lines.get(step.wrapping_sub(1)).copied().flatten() {
            Some(line) => format!("{name}:{line}"),
            None => name.to_string(),
        }
    };
    if !verdict.mismatches.is_empty() {
        out.push_str("  expectations that failed:\n");
        for m in &verdict.mismatches {
            let _ = writeln!(
                out,
                "    {}: step {} ({}): {}",
                at(m.step),
                m.step,
                m.action,
                m.message
            );
        }
    }
    if !verdict.invariants_as_expected() {
        if verdict.violations.is_empty() {
            if let Some(want) = verdict.expected_violation {
                let _ = writeln!(
                    out,
                    "  expected the invariant `{want}` to be violated (a seeded defect runs); it held"
                );
            }
        } else {
            out.push_str("  invariants violated:\n");
            for v in &verdict.violations {
                let place = v.step.map_or_else(
                    || "in the final recovery".to_string(),
                    |s| format!("{}: after step {s}", at(s)),
                );
                let _ = writeln!(out, "    {} ({place}): {}", v.invariant, v.message);
                for line in &v.excerpt {
                    let _ = writeln!(out, "      | {line}");
                }
            }
        }
    }
    if !verdict.harness_failures.is_empty() {
        out.push_str("  harness failure (not a verdict on the connector):\n");
        for f in &verdict.harness_failures {
            let _ = writeln!(out, "    {f}");
        }
    }
    match &verdict.snapshot {
        Some(Comparison::Differs(d)) => {
            let _ = writeln!(
                out,
                "  snapshot {} differs (- stored, + this run):",
                verdict.case.snapshot_path().display()
            );
            for line in compact_diff(d, 3) {
                let _ = writeln!(out, "    {line}");
            }
        }
        Some(Comparison::Missing(p)) => {
            let _ = writeln!(
                out,
                "  no snapshot stored at {}; record it with `imc-harness run --accept {}`",
                p.display(),
                file.display()
            );
        }
        _ => {}
    }
    if let Some(h) = &verdict.history {
        let all = h.lines();
        let from = all.len().saturating_sub(tail);
        if from > 0 {
            let _ = writeln!(
                out,
                "  transcript (last {} of {} lines; `-v` prints it whole):",
                all.len() - from,
                all.len()
            );
        } else {
            out.push_str("  transcript:\n");
        }
        for line in &all[from..] {
            let _ = writeln!(out, "    {line}");
        }
    }
    out
}

/// The changed lines of a line diff (`+ `/`- ` lines) with `context` unchanged
/// lines around each change; `...` where lines are left out.
pub fn compact_diff(diff: &str, context: usize) -> Vec<String> {
    let lines: Vec<&str> = diff.lines().collect();
    let changed: Vec<bool> = lines
        .iter()
        .map(|l| l.starts_with("+ ") || l.starts_with("- ") || *l == "+" || *l == "-")
        .collect();
    let keep: Vec<bool> = (0..lines.len())
        .map(|i| {
            let lo = i.saturating_sub(context);
            let hi = (i + context + 1).min(lines.len());
            changed[lo..hi].iter().any(|&c| c)
        })
        .collect();
    let mut out = Vec::new();
    let mut skipped = false;
    for (line, keep) in lines.iter().zip(keep) {
        if keep {
            if skipped {
                out.push("...".to_string());
                skipped = false;
            }
            out.push((*line).to_string());
        } else {
            skipped = true;
        }
    }
    if skipped {
        out.push("...".to_string());
    }
    out
}

/// The closing summary: counts, time, and every case that did not pass with
/// the command that reruns it (`imc-harness run scenarios/x.yaml`).
pub fn summary(results: &[Timed], elapsed: Duration, paint: Paint) -> String {
    let count = |s: Status| {
        results
            .iter()
            .filter(|t| Status::of(&t.verdict) == s)
            .count()
    };
    let (pass, fail, skip, error) = (
        count(Status::Pass),
        count(Status::Fail),
        count(Status::Skip),
        count(Status::Error),
    );
    let mut parts = vec![format!("{pass} passed"), format!("{fail} failed")];
    if error > 0 {
        parts.push(format!("{error} could not run"));
    }
    parts.push(format!("{skip} skipped"));
    let mut out = String::new();
    let style = if fail + error > 0 {
        Status::Fail.style()
    } else {
        Status::Pass.style()
    };
    let _ = writeln!(
        out,
        "{} [{:>8.3}s] {} run: {}",
        paint.paint(style, &format!("{:>9}", "Summary")),
        elapsed.as_secs_f64(),
        plural(results.len(), "scenario", "scenarios"),
        parts.join(", ")
    );
    for t in results {
        let status = Status::of(&t.verdict);
        if matches!(status, Status::Fail | Status::Error) {
            let _ = writeln!(
                out,
                "{} {}  (rerun: imc-harness run {})",
                paint.paint(status.style(), &format!("{:>9}", status.word())),
                t.verdict.case.id,
                shell_word(&t.verdict.case.path)
            );
        }
    }
    out
}

/// A path as one shell word (quoted when it holds anything but the usual).
fn shell_word(path: &Path) -> String {
    let s = path.display().to_string();
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+@:,".contains(c))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// One case as a machine-readable record (`--report json=FILE`: one JSON object
/// per line).
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    /// The scenario id.
    pub id: &'a str,
    /// The scenario file, as given.
    pub file: String,
    /// `pass`, `fail`, `skip` or `error`.
    pub verdict: Status,
    /// Seconds the case took.
    pub time: f64,
    /// The failed expectations, the harness's failures, the snapshot's state and
    /// the load error, one line each.
    pub failures: Vec<String>,
    /// The invariants violated (`no-loss: ...`).
    pub violations: Vec<String>,
    /// Why it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<&'a str>,
}

impl<'a> Record<'a> {
    /// The record of `t`.
    pub fn of(t: &'a Timed) -> Record<'a> {
        let v = &t.verdict;
        let mut failures: Vec<String> = v.mismatches.iter().map(|m| m.to_string()).collect();
        failures.extend(v.harness_failures.iter().cloned());
        if let Some(e) = &v.error {
            failures.push(e.clone());
        }
        match &v.snapshot {
            Some(Comparison::Differs(_)) => failures.push(format!(
                "snapshot {} differs",
                v.case.snapshot_path().display()
            )),
            Some(Comparison::Missing(p)) => {
                failures.push(format!("no snapshot stored at {}", p.display()))
            }
            _ => {}
        }
        if !v.invariants_as_expected()
            && v.violations.is_empty()
            && let Some(want) = v.expected_violation
        {
            failures.push(format!(
                "expected the invariant `{want}` to be violated; it held"
            ));
        }
        let violations = if v.expected_violation.is_some() && v.invariants_as_expected() {
            Vec::new() // the expected violation of a seeded defect is its pass
        } else {
            v.violations
                .iter()
                .map(|x| format!("{}: {}", x.invariant, x.message))
                .collect()
        };
        Record {
            id: &v.case.id,
            file: v.case.path.display().to_string(),
            verdict: Status::of(v),
            time: t.elapsed.as_secs_f64(),
            failures,
            violations,
            skipped: v.skipped.as_deref(),
        }
    }
}

/// The JSON-lines report: one [`Record`] per case.
pub fn json(results: &[Timed]) -> String {
    let mut out = String::new();
    for t in results {
        let line = serde_json::to_string(&Record::of(t)).expect("records serialize");
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The JUnit XML report, as cargo-nextest writes it (one `testsuite` named
/// `suite`, one `testcase` per scenario, `failure`/`error`/`skipped` children,
/// the failure text in the element body). Written with `quick-junit`, the
/// crate nextest itself uses.
pub fn junit(results: &[Timed], suite: &str, elapsed: Duration) -> String {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut report = Report::new("imc-harness");
    let mut ts = TestSuite::new(suite);
    for t in results {
        let v = &t.verdict;
        let status = match Status::of(v) {
            Status::Pass => TestCaseStatus::success(),
            Status::Skip => {
                let mut s = TestCaseStatus::skipped();
                if let Some(why) = &v.skipped {
                    s.set_message(why.as_str());
                }
                s
            }
            kind @ (Status::Fail | Status::Error) => {
                let mut s = TestCaseStatus::non_success(if kind == Status::Error {
                    NonSuccessKind::Error
                } else {
                    NonSuccessKind::Failure
                });
                let record = Record::of(t);
                let first = record
                    .failures
                    .first()
                    .or(record.violations.first())
                    .cloned()
                    .unwrap_or_else(|| "failed".into());
                s.set_message(first.lines().next().unwrap_or_default());
                s.set_description(failure_detail(v, 40));
                s
            }
        };
        let mut case = TestCase::new(v.case.id.as_str(), status);
        case.set_classname(suite);
        case.set_time(t.elapsed);
        ts.add_test_case(case);
    }
    ts.set_time(elapsed);
    report.add_test_suite(ts);
    report.set_time(elapsed);
    report
        .to_string()
        .expect("a JUnit report of plain strings serializes")
}
