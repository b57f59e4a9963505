//! The coverage table: each claim, the scenarios that cite it, their verdicts.

use super::{Claim, Registry};
use crate::runner::RunOptions;
use crate::scenario;
use crate::suite::{self, Case, Snapshots};
use std::fmt::{self, Write as _};

/// The verdict of one scenario, as the table shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every check of the scenario held (its snapshot too).
    Pass,
    /// Something failed.
    Fail,
    /// The scenario could not run here (see `imc-harness run`).
    Skip,
}

impl Outcome {
    /// `PASS`, `FAIL` or `SKIP`.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "SKIP",
        }
    }
}

/// One scenario citing a claim, and its verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// The scenario's id (`kb-q146791/kb3-in-removed-after-354`).
    pub scenario: String,
    /// Its verdict.
    pub outcome: Outcome,
}

/// One claim and the scenarios that check it.
#[derive(Clone, Debug)]
pub struct Row {
    /// The claim.
    pub claim: Claim,
    /// The scenarios citing it, in the order they ran.
    pub checks: Vec<Check>,
}

impl Row {
    /// True when at least one scenario checking the claim passed; a row that is
    /// not covered is flagged.
    pub fn covered(&self) -> bool {
        self.checks.iter().any(|c| c.outcome == Outcome::Pass)
    }
}

/// The coverage table: one row per registered claim, in the registry's order.
#[derive(Clone, Debug)]
pub struct Coverage {
    /// One row per claim.
    pub rows: Vec<Row>,
    /// Every scenario run, and its verdict.
    pub scenarios: Vec<Check>,
    /// Scenario files that could not be loaded: the path and the error.
    pub load_errors: Vec<(String, String)>,
}

impl Coverage {
    /// Builds the table from scenarios already judged: each scenario's claims
    /// and its verdict.
    pub fn from_verdicts(registry: &Registry, judged: &[(Vec<String>, Check)]) -> Coverage {
        let rows = registry
            .claims()
            .iter()
            .map(|claim| Row {
                claim: claim.clone(),
                checks: judged
                    .iter()
                    .filter(|(claims, _)| claims.contains(&claim.id))
                    .map(|(_, check)| check.clone())
                    .collect(),
            })
            .collect();
        Coverage {
            rows,
            scenarios: judged.iter().map(|(_, check)| check.clone()).collect(),
            load_errors: Vec::new(),
        }
    }

    /// The claims no passing scenario checks.
    pub fn flagged(&self) -> Vec<&Row> {
        self.rows.iter().filter(|r| !r.covered()).collect()
    }

    /// True when every scenario loaded and none failed.
    pub fn all_passed(&self) -> bool {
        self.load_errors.is_empty() && self.scenarios.iter().all(|s| s.outcome != Outcome::Fail)
    }

    /// The table as Markdown (for the README): one row per claim.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        out.push_str("| Claim | Source | What it says | Checked by (verdict) |\n");
        out.push_str("| --- | --- | --- | --- |\n");
        for row in &self.rows {
            let checks = if row.checks.is_empty() {
                String::new()
            } else {
                row.checks
                    .iter()
                    .map(|c| format!("{} `{}`", c.outcome.label(), c.scenario))
                    .collect::<Vec<_>>()
                    .join("<br>")
            };
            let checks = if row.covered() {
                checks
            } else if checks.is_empty() {
                "**no passing scenario**".to_string()
            } else {
                format!("**no passing scenario**<br>{checks}")
            };
            let _ = writeln!(
                out,
                "| `{}` | {}, {} | {} | {} |",
                row.claim.id,
                cell(&row.claim.source),
                cell(&row.claim.section),
                cell(&row.claim.summary),
                checks
            );
        }
        out.push('\n');
        out.push_str(&self.summary());
        out.push('\n');
        out
    }

    /// The closing lines: counts of scenarios and of flagged claims.
    fn summary(&self) -> String {
        let count = |o: Outcome| self.scenarios.iter().filter(|s| s.outcome == o).count();
        let flagged = self.flagged();
        let mut out = format!(
            "{} claims, {} checked by a passing scenario, {} flagged (no passing scenario); \
             {} scenarios: {} passed, {} failed, {} skipped",
            self.rows.len(),
            self.rows.len() - flagged.len(),
            flagged.len(),
            self.scenarios.len() + self.load_errors.len(),
            count(Outcome::Pass),
            count(Outcome::Fail) + self.load_errors.len(),
            count(Outcome::Skip),
        );
        let observed = flagged
            .iter()
            .filter(|r| r.claim.kind == super::Kind::Observed)
            .count();
        if observed > 0 {
            let _ = write!(
                out,
                "; of the flagged claims, {observed} are observations of other mail systems \
                 (kind `observed`: behaviour the `hardened` profile does not copy, or not yet)"
            );
        }
        out.push('.');
        out
    }
}

/// The table for a terminal: each claim on a line (id, source, summary), then
/// one line per scenario with its verdict; `!!` flags a claim no passing
/// scenario checks.
impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .rows
            .iter()
            .map(|r| r.claim.id.len())
            .max()
            .unwrap_or(0);
        writeln!(
            f,
            "Each claim (what it says, its source), then the scenarios citing it and \
             their verdicts; !! marks a claim no passing scenario checks.\n"
        )?;
        for row in &self.rows {
            let flag = if row.covered() { "  " } else { "!!" };
            writeln!(
                f,
                "{flag} {:width$}  {} ({}, {})",
                row.claim.id, row.claim.summary, row.claim.source, row.claim.section
            )?;
            for check in &row.checks {
                writeln!(
                    f,
                    "   {:width$}    {} {}",
                    "",
                    check.outcome.label(),
                    check.scenario
                )?;
            }
            if !row.covered() {
                writeln!(f, "   {:width$}    no passing scenario", "")?;
            }
        }
        for (path, error) in &self.load_errors {
            writeln!(f, "\ncannot load {path}:\n{error}")?;
        }
        writeln!(f, "\n{}", self.summary())
    }
}

/// A Markdown table cell: no `|`, and `<...>` shown as text, not taken as HTML.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Runs every scenario of `cases` once (snapshots compared, as `imc-harness
/// run` does) and tables, for each claim of `registry`, the scenarios citing it
/// and their verdicts.
pub fn coverage(registry: &Registry, cases: &[Case], options: &RunOptions) -> Coverage {
    let mut judged = Vec::new();
    let mut load_errors = Vec::new();
    for case in cases {
        match scenario::load(&case.path) {
            Ok(loaded) => {
                let verdict = suite::run_loaded(case, &loaded, options, &Snapshots::Compare);
                let outcome = if verdict.is_skipped() {
                    Outcome::Skip
                } else if verdict.passed() {
                    Outcome::Pass
                } else {
                    Outcome::Fail
                };
                judged.push((
                    loaded.claims,
                    Check {
                        scenario: case.id.clone(),
                        outcome,
                    },
                ));
            }
            Err(e) => load_errors.push((case.path.display().to_string(), e.to_string())),
        }
    }
    let mut table = Coverage::from_verdicts(registry, &judged);
    table.load_errors = load_errors;
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        Registry::parse(
            "claims:\n\
             - { id: A-1, kind: documented, source: Doc A, section: '1', summary: first, text: t }\n\
             - { id: B-2, kind: documented, source: Doc B, section: '2 <CRLF>', summary: second, text: t }\n\
             - { id: C-3, kind: observed, source: Other, section: '3', summary: third | piped, text: t }\n",
        )
        .unwrap()
    }

    fn judged(claims: &[&str], scenario: &str, outcome: Outcome) -> (Vec<String>, Check) {
        (
            claims.iter().map(|c| c.to_string()).collect(),
            Check {
                scenario: scenario.into(),
                outcome,
            },
        )
    }

    #[test]
    fn each_claim_lists_the_scenarios_citing_it_and_flags_those_without_a_pass() {
        let table = Coverage::from_verdicts(
            &registry(),
            &[
                judged(&["A-1", "B-2"], "x/one", Outcome::Pass),
                judged(&["B-2"], "x/two", Outcome::Fail),
                judged(&["C-3"], "x/three", Outcome::Skip),
            ],
        );
        let checks = |i: usize| table.rows[i].checks.clone();
        assert_eq!(checks(0).len(), 1);
        assert_eq!(checks(1).len(), 2);
        assert!(table.rows[0].covered() && table.rows[1].covered());
        // A skipped scenario proves nothing: C-3 is flagged.
        assert!(!table.rows[2].covered());
        assert_eq!(
            table
                .flagged()
                .iter()
                .map(|r| r.claim.id.as_str())
                .collect::<Vec<_>>(),
            ["C-3"]
        );
        assert!(!table.all_passed());

        let text = table.to_string();
        assert!(text.contains("   A-1  first (Doc A, 1)"), "{text}");
        assert!(text.contains("PASS x/one"), "{text}");
        assert!(text.contains("FAIL x/two"), "{text}");
        assert!(text.contains("!! C-3"), "{text}");
        assert!(
            text.contains("3 claims, 2 checked by a passing scenario, 1 flagged"),
            "{text}"
        );
        assert!(
            text.contains("3 scenarios: 1 passed, 1 failed, 1 skipped"),
            "{text}"
        );
        assert!(
            text.contains("of the flagged claims, 1 are observations"),
            "{text}"
        );

        let md = table.markdown();
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(
            lines[0],
            "| Claim | Source | What it says | Checked by (verdict) |"
        );
        assert_eq!(lines[2], "| `A-1` | Doc A, 1 | first | PASS `x/one` |");
        assert_eq!(
            lines[3],
            "| `B-2` | Doc B, 2 &lt;CRLF&gt; | second | PASS `x/one`<br>FAIL `x/two` |"
        );
        assert_eq!(
            lines[4],
            "| `C-3` | Other, 3 | third \\| piped | **no passing scenario**<br>SKIP `x/three` |"
        );
    }

    #[test]
    fn a_claim_no_scenario_cites_is_flagged() {
        let table = Coverage::from_verdicts(&registry(), &[]);
        assert_eq!(table.flagged().len(), 3);
        assert!(table.all_passed());
        assert!(
            table
                .markdown()
                .contains("| `A-1` | Doc A, 1 | first | **no passing scenario** |")
        );
    }
}
