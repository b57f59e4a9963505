//! `imc-harness diff-profiles`: one scenario run under every profile, and what
//! each profile answered and logged at each step, side by side: KB Q146791's
//! behaviour (`exchange-4.0`) against a modern connector's (`hardened`).

use crate::history::{Entry, entry_lines};
use crate::runner::{self, RunOptions};
use crate::scenario;
use crate::suite::Case;
use std::fmt::Write as _;

/// What each profile did at one step of the scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// 1-based step index.
    pub step: usize,
    /// The step in words.
    pub action: String,
    /// Per profile (in [`Table::profiles`] order): the replies, events, faults
    /// and service actions the step produced, one transcript line each (what the
    /// harness sent is the same for every profile and left out).
    pub cells: Vec<Vec<String>>,
}

impl Row {
    /// True when the profiles did not all do the same.
    pub fn differs(&self) -> bool {
        self.cells.windows(2).any(|w| w[0] != w[1])
    }
}

/// A scenario under several profiles.
#[derive(Debug)]
pub struct Table {
    /// The scenario's id.
    pub id: String,
    /// The profiles, in column order.
    pub profiles: Vec<String>,
    /// One row per step.
    pub rows: Vec<Row>,
}

/// Runs `case` once per profile and lines up what each did, step by step.
pub fn compare(case: &Case, profiles: &[&str], options: &RunOptions) -> Result<Table, String> {
    let loaded = scenario::load(&case.path).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let mut per_profile = Vec::new();
    for profile in profiles {
        let opts = RunOptions {
            profile: Some((*profile).to_string()),
            ..options.clone()
        };
        let run = runtime
            .block_on(runner::run(&loaded, &opts))
            .map_err(|e| format!("{} under `{profile}`: {e}", case.path.display()))?;
        per_profile.push(by_step(&run.history.entries));
    }
    let rows = loaded
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| Row {
            step: i + 1,
            action: runner::describe(step),
            cells: per_profile
                .iter()
                .map(|steps| steps.get(i).cloned().unwrap_or_default())
                .collect(),
        })
        .collect();
    Ok(Table {
        id: case.id.clone(),
        profiles: profiles.iter().map(|p| p.to_string()).collect(),
        rows,
    })
}

/// The transcript lines of each step, sent bytes left out.
fn by_step(entries: &[Entry]) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    for entry in entries {
        match entry {
            Entry::Step { .. } => out.push(Vec::new()),
            Entry::Sent { .. } => {}
            other => {
                if let Some(cell) = out.last_mut() {
                    cell.extend(entry_lines(std::slice::from_ref(other)));
                }
            }
        }
    }
    out
}

impl Table {
    /// For a terminal: each step, then each profile's lines beside its name;
    /// steps where the profiles differ are marked `*`.
    pub fn text(&self) -> String {
        let width = self.profiles.iter().map(String::len).max().unwrap_or(0);
        let mut out = format!("{}\n", self.id);
        for row in &self.rows {
            let mark = if row.differs() { '*' } else { ' ' };
            let _ = writeln!(out, "{mark} step {}: {}", row.step, row.action);
            for (profile, cell) in self.profiles.iter().zip(&row.cells) {
                if cell.is_empty() {
                    let _ = writeln!(out, "    {profile:<width$}  (nothing)");
                }
                for (i, line) in cell.iter().enumerate() {
                    let name = if i == 0 { profile.as_str() } else { "" };
                    let _ = writeln!(out, "    {name:<width$}  {line}");
                }
            }
        }
        out
    }

    /// A Markdown table: a row per step, a column per profile.
    pub fn markdown(&self) -> String {
        let mut out = format!("#### `{}`\n\n| step |", self.id);
        for p in &self.profiles {
            let _ = write!(out, " `{p}` |");
        }
        out.push_str("\n|---|");
        for _ in &self.profiles {
            out.push_str("---|");
        }
        out.push('\n');
        let cell = |lines: &[String]| {
            if lines.is_empty() {
                return String::new();
            }
            lines
                .iter()
                .map(|l| format!("`{}`", l.replace('|', "\\|").replace('`', "'")))
                .collect::<Vec<_>>()
                .join("<br>")
        };
        for row in &self.rows {
            let _ = write!(out, "| {}. {} |", row.step, row.action.replace('|', "\\|"));
            for c in &row.cells {
                let _ = write!(out, " {} |", cell(c));
            }
            out.push('\n');
        }
        out
    }
}
