//! Snapshots: the history of a run as YAML, stored with insta in `snapshots/`.
//!
//! `cargo test` asserts with insta (so `cargo insta review` updates them); the
//! `imc-harness run` command compares with the stored file directly.

use crate::history::History;
use crate::scenario::Scenario;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Serialize)]
struct Document<'a> {
    scenario: &'a str,
    profile: &'a str,
    claims: &'a [String],
    history: Vec<String>,
}

/// The snapshot name of a scenario: its path under `scenarios/` without the
/// extension, `/` turned into `__` (`kb-q146791/kb3.yaml` -> `kb-q146791__kb3`).
pub fn name_for(relative: &Path) -> String {
    relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("__")
}

/// The snapshot's contents: YAML naming the scenario, its profile and claims, and
/// the history line by line.
pub fn render(id: &str, scenario: &Scenario, history: &History) -> String {
    render_parts(id, &scenario.profile, &scenario.claims, history)
}

fn render_parts(id: &str, profile: &str, claims: &[String], history: &History) -> String {
    let doc = Document {
        scenario: id,
        profile,
        claims,
        history: history.lines(),
    };
    // One history line per YAML line: no folding, so diffs stay line for line.
    let options = serde_saphyr::ser_options! { prefer_block_scalars: false };
    serde_saphyr::to_string_with_options(&doc, options).expect("snapshot documents serialize")
}

/// A run saved to a file (`imc-harness run --save-history DIR`), so it can be
/// re-checked against the snapshots, or diffed with another run, without rerunning.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct StoredRun {
    /// The scenario id (`kb-q146791/kb3-in-removed-after-354`).
    pub scenario: String,
    /// Its profile.
    pub profile: String,
    /// Its claims.
    pub claims: Vec<String>,
    /// The whole history, the final recovery included.
    pub history: History,
}

impl StoredRun {
    /// The run of `scenario` as `id`.
    pub fn new(id: &str, scenario: &Scenario, history: &History) -> StoredRun {
        StoredRun {
            scenario: id.to_string(),
            profile: scenario.profile.clone(),
            claims: scenario.claims.clone(),
            history: history.clone(),
        }
    }

    /// The snapshot name (`kb-q146791__kb3-in-removed-after-354`).
    pub fn snapshot_name(&self) -> String {
        self.scenario.replace('/', "__")
    }

    /// What its snapshot holds.
    pub fn render(&self) -> String {
        render_parts(&self.scenario, &self.profile, &self.claims, &self.history)
    }

    /// Reads a stored run; the error names the file.
    pub fn load(path: &Path) -> Result<StoredRun, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a stored run: {e}", path.display()))
    }

    /// Writes it as `<dir>/<snapshot name>.json`, returning the path.
    pub fn save(&self, dir: &Path) -> Result<PathBuf, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join(format!("{}.json", self.snapshot_name()));
        let json = serde_json::to_string_pretty(self).expect("runs serialize");
        std::fs::write(&path, json + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }
}

/// Expands `paths` into stored-run files (`imc-harness check`): a file is taken
/// as it is; a folder is searched recursively for `*.json` files, sorted by path.
/// A path that cannot be read, or a folder holding no stored run, is an error.
pub fn stored_runs(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> Result<(), String> {
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry
                .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
                .path();
            if path.is_dir() {
                walk(&path, found)?;
            } else if path.extension().is_some_and(|e| e == "json") {
                found.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for path in paths {
        let meta =
            std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found)?;
            if found.is_empty() {
                return Err(format!(
                    "{} holds no stored run (`.json`, written by `run --save-history`)",
                    path.display()
                ));
            }
            found.sort();
            out.extend(found);
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

/// Asserts `contents` against `<dir>/<name>.snap` with insta (the `cargo test` path).
/// Panics with insta's diff on a mismatch, as insta does.
pub fn assert(dir: &Path, name: &str, contents: &str) {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(dir);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| insta::assert_snapshot!(name, contents));
}

/// How a run compares with its stored snapshot.
#[derive(Debug, PartialEq, Eq)]
pub enum Comparison {
    /// Identical.
    Same,
    /// No snapshot is stored yet.
    Missing(PathBuf),
    /// Stored, and different: a line diff (`-` stored, `+` this run).
    Differs(String),
    /// Missing or different, and written anew (`imc-harness run --accept`).
    Written(PathBuf),
}

/// The header insta writes above a snapshot's contents; `write` uses the same,
/// so a snapshot accepted by either tool reads the same to the other.
const HEADER: &str = "---\nsource: crates/harness/src/snapshot.rs\n---\n";

/// Writes `contents` as the snapshot `<dir>/<name>.snap` (in insta's format)
/// and removes a stale `<name>.snap.new` beside it; returns the path written.
pub fn write(dir: &Path, name: &str, contents: &str) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(format!("{name}.snap"));
    let text = format!("{HEADER}{}\n", contents.trim_end());
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    remove_pending(dir, name);
    Ok(path)
}

/// Removes `<dir>/<name>.snap.new`, the pending snapshot insta leaves for
/// `cargo insta review`, if there is one.
pub fn remove_pending(dir: &Path, name: &str) {
    let _ = std::fs::remove_file(dir.join(format!("{name}.snap.new")));
}

/// Compares `contents` with the stored `<dir>/<name>.snap` (insta's file format:
/// a `---` header, then the contents).
pub fn compare(dir: &Path, name: &str, contents: &str) -> Comparison {
    let path = dir.join(format!("{name}.snap"));
    let Ok(stored) = std::fs::read_to_string(&path) else {
        return Comparison::Missing(path);
    };
    let body = strip_header(&stored);
    if body.trim_end() == contents.trim_end() {
        Comparison::Same
    } else {
        Comparison::Differs(diff(body.trim_end(), contents.trim_end()))
    }
}

fn strip_header(stored: &str) -> &str {
    stored
        .strip_prefix("---\n")
        .and_then(|rest| rest.split_once("\n---\n").map(|(_, body)| body))
        .unwrap_or(stored)
}

/// A plain line diff (longest common subsequence), enough for transcripts.
pub fn diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = String::new();
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push_str(&format!("  {}\n", a[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push_str(&format!("+ {}\n", b[j]));
            j += 1;
        } else {
            out.push_str(&format!("- {}\n", a[i]));
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            name_for(Path::new("kb-q146791/kb3.yaml")),
            "kb-q146791__kb3"
        );
        assert_eq!(name_for(Path::new("smtp/happy.yml")), "smtp__happy");
    }

    #[test]
    fn header_is_stripped() {
        let stored = "---\nsource: x\n---\nscenario: a\nhistory: []\n";
        assert_eq!(strip_header(stored), "scenario: a\nhistory: []\n");
    }

    #[test]
    fn diff_marks_changes() {
        let d = diff("a\nb\nc", "a\nx\nc");
        assert_eq!(d, "  a\n+ x\n- b\n  c\n");
    }
}
