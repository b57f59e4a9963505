//! What an exploration found, and its summary as printed.

use super::*;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A failing case, shrunk.
#[derive(Debug)]
pub struct Finding {
    /// The case index.
    pub case: u64,
    /// How it failed.
    pub kind: Kind,
    /// The first violation of that kind in the original case.
    pub message: String,
    /// Steps of the original schedule.
    pub steps_before: usize,
    /// Steps of the shrunk schedule.
    pub steps_after: usize,
    /// Runs the shrink made.
    pub shrink_runs: usize,
    /// The shrink stopped at a limit.
    pub cut_short: bool,
    /// The first violation of that kind in the shrunk schedule.
    pub shrunk_message: String,
    /// Steps of the shrunk schedule that do not play as written (none, normally).
    pub problems: Vec<String>,
    /// The reproducer's text.
    pub yaml: String,
    /// Where it was written (`None`: not written).
    pub path: Option<PathBuf>,
    /// The original case run again: how many of [`CONFIRM_RUNS`] runs failed the same way.
    pub confirmed: usize,
    /// The written file, loaded again and run [`RECHECK_RUNS`] times: how many failed the same way.
    pub rechecked: Option<usize>,
}

/// Runs of a failing case, again, before it is shrunk.
pub const CONFIRM_RUNS: usize = 3;

/// What an exploration did.
#[derive(Debug, Default)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// The shard run.
    pub shard: Shard,
    /// Cases this shard had to run.
    pub planned: u64,
    /// Cases run.
    pub ran: u64,
    /// Steps in the cases run.
    pub steps: u64,
    /// Time spent running cases (shrinking aside).
    pub elapsed: Duration,
    /// Time spent shrinking.
    pub shrink_elapsed: Duration,
    /// Why it stopped before the last case, if it did.
    pub stopped: Option<String>,
    /// Failing cases by kind.
    pub by_kind: BTreeMap<Kind, u64>,
    /// The index of the first failing case.
    pub first_failure: Option<u64>,
    /// The shrunk failures.
    pub findings: Vec<Finding>,
    /// The slowest case (index, time).
    pub slowest: Option<(u64, Duration)>,
}

impl Report {
    /// Schedules run per second (shrinking aside).
    pub fn rate(&self) -> f64 {
        self.ran as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            writeln!(
                f,
                "violation: {} (seed {}, case {})",
                finding.kind, self.seed, finding.case
            )?;
            writeln!(f, "  first seen {}", finding.message)?;
            if finding.confirmed < CONFIRM_RUNS {
                writeln!(
                    f,
                    "  the case failed that way again in only {} of {CONFIRM_RUNS} runs: the failure depends on timing",
                    finding.confirmed
                )?;
            }
            writeln!(
                f,
                "  shrunk from {} to {} steps in {} runs{}",
                finding.steps_before,
                finding.steps_after,
                finding.shrink_runs,
                if finding.cut_short {
                    " (stopped at the shrink limit)"
                } else {
                    ""
                }
            )?;
            writeln!(f, "  minimal schedule: {}", finding.shrunk_message)?;
            for p in &finding.problems {
                writeln!(f, "  warning: a step does not play as written: {p}")?;
            }
            match &finding.path {
                Some(p) => {
                    writeln!(f, "  reproducer: {}", p.display())?;
                    if let Some(n) = finding.rechecked {
                        writeln!(f, "  re-run from the file: {}", recheck_words(n))?;
                    }
                }
                None => writeln!(f, "  reproducer (not written):\n{}", finding.yaml)?,
            }
        }
        if let Some(why) = &self.stopped {
            writeln!(f, "stopped early: {why}")?;
        }
        let secs = self.elapsed.as_secs_f64();
        writeln!(
            f,
            "explored {} of {} cases (seed {}{}) in {secs:.1} s: {:.0} schedules/s, {:.1} steps per schedule{}",
            self.ran,
            self.planned,
            self.seed,
            if self.shard.count > 1 {
                format!(", shard {}/{}", self.shard.index, self.shard.count)
            } else {
                String::new()
            },
            self.rate(),
            self.steps as f64 / (self.ran.max(1)) as f64,
            if self.shrink_elapsed > Duration::ZERO {
                format!(
                    "; shrinking took {:.1} s",
                    self.shrink_elapsed.as_secs_f64()
                )
            } else {
                String::new()
            }
        )?;
        if let Some((case, t)) = self.slowest {
            writeln!(
                f,
                "slowest case: {case} ({:.0} ms)",
                t.as_secs_f64() * 1000.0
            )?;
        }
        if self.by_kind.is_empty() {
            writeln!(f, "violations: none")?;
        } else {
            let parts: Vec<String> = self
                .by_kind
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            writeln!(f, "violations (failing cases): {}", parts.join(", "))?;
        }
        Ok(())
    }
}
