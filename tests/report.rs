//! `imc-harness run`'s output as CI reads it: one line per scenario, failures
//! at the line of their step, a summary with rerun commands, colour only when
//! asked or on a terminal, JUnit valid against the schema of nextest's reports,
//! JSON lines, `--failed`, `--profile`, and `diff-profiles`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn harness_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imc-harness"))
        .args(args)
        .current_dir(dir)
        .env_remove("NO_COLOR")
        .output()
        .expect("imc-harness runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const GOOD: &str = "claims: [KB-6]\nprofile: exchange-4.0\nsteps:\n  - service: start\n  - connect: a\n    expect: { code: 220 }\n";

/// Step 3 expects 250 where the connector greets with 220: line 6 of the file.
const BAD: &str = "claims: [KB-6]\nprofile: exchange-4.0\nsteps:\n  - service: start\n  - connect: a\n    expect: { code: 250 }\n";

/// A folder `scenarios/` with `good.yaml`, `bad.yaml`, `broken.yaml` (a load
/// error) and their snapshots recorded.
fn project_with_failures() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("scenarios");
    std::fs::create_dir_all(&s).unwrap();
    std::fs::write(s.join("good.yaml"), GOOD).unwrap();
    std::fs::write(s.join("bad.yaml"), BAD).unwrap();
    let o = harness_in(dir.path(), &["run", "--accept", "scenarios"]);
    assert!(
        dir.path().join("snapshots/good.snap").exists(),
        "{}",
        text(&o)
    );
    std::fs::write(
        s.join("broken.yaml"),
        "claims: [KB-6]\nprofile: exchange-4.0\nstep: []\n",
    )
    .unwrap();
    dir
}

#[test]
fn one_line_per_scenario_then_a_summary_with_rerun_commands() {
    let dir = project_with_failures();
    let o = harness_in(dir.path(), &["run", "scenarios"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    let status_lines: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(" [") && l.contains("s] "))
        .collect();
    assert_eq!(status_lines.len(), 4, "3 scenarios and the summary:\n{out}");
    assert!(out.contains("PASS ["), "{out}");
    assert!(out.contains("FAIL ["), "{out}");
    assert!(out.contains("ERROR ["), "{out}");
    // The failed expectation at the file and line of its step.
    assert!(
        out.contains(
            "scenarios/bad.yaml:5: step 2 (connect a): reply: expected code 250, got `220"
        ),
        "{out}"
    );
    // A load error is told apart from a failed check.
    assert!(
        out.contains("load error (the scenario did not run)"),
        "{out}"
    );
    assert!(
        out.contains("3 scenarios run: 1 passed, 1 failed, 1 could not run, 0 skipped"),
        "{out}"
    );
    assert!(
        out.contains("FAIL bad  (rerun: imc-harness run scenarios/bad.yaml)"),
        "{out}"
    );
    assert!(!out.contains('\u{1b}'), "no colour when piped: {out}");
    // One scenario: singular.
    let o = harness_in(dir.path(), &["run", "scenarios/good.yaml"]);
    assert!(
        text(&o).contains("1 scenario run: 1 passed"),
        "{}",
        text(&o)
    );
}

#[test]
fn quiet_prints_only_what_did_not_pass_and_verbose_every_transcript() {
    let dir = project_with_failures();
    let o = harness_in(dir.path(), &["run", "-q", "scenarios"]);
    let out = text(&o);
    assert!(!out.contains("PASS ["), "{out}");
    assert!(out.contains("FAIL ["), "{out}");
    let o = harness_in(dir.path(), &["run", "-v", "scenarios/good.yaml"]);
    assert!(
        text(&o).contains("a < 220 imc.test Microsoft Exchange Internet Mail Connector ready"),
        "{}",
        text(&o)
    );
}

#[test]
fn colour_only_when_asked_and_never_with_never() {
    let dir = project_with_failures();
    let o = harness_in(
        dir.path(),
        &["run", "--color", "always", "scenarios/good.yaml"],
    );
    assert!(
        text(&o).contains("\u{1b}[1m\u{1b}[32m") || text(&o).contains("\u{1b}["),
        "{}",
        text(&o)
    );
    let o = harness_in(
        dir.path(),
        &["run", "--color", "never", "scenarios/good.yaml"],
    );
    assert!(!text(&o).contains('\u{1b}'));
}

#[test]
fn an_empty_selection_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("scenarios")).unwrap();
    let o = harness_in(dir.path(), &["run", "scenarios"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no scenario files"), "{}", text(&o));
}

#[test]
fn failed_reruns_exactly_the_last_failures() {
    let dir = project_with_failures();
    let o = harness_in(dir.path(), &["run", "scenarios"]);
    assert!(!o.status.success());
    let o = harness_in(dir.path(), &["run", "--failed"]);
    let out = text(&o);
    assert!(
        out.contains("2 scenarios run: 0 passed, 1 failed, 1 could not run"),
        "{out}"
    );
    assert!(!out.contains("PASS"), "{out}");
    // Fix both; --failed runs them, they pass, and the next --failed has nothing.
    std::fs::write(dir.path().join("scenarios/bad.yaml"), GOOD).unwrap();
    std::fs::remove_file(dir.path().join("scenarios/broken.yaml")).unwrap();
    std::fs::copy(
        dir.path().join("snapshots/good.snap"),
        dir.path().join("snapshots/bad.snap"),
    )
    .unwrap();
    let snap = std::fs::read_to_string(dir.path().join("snapshots/bad.snap")).unwrap();
    std::fs::write(
        dir.path().join("snapshots/bad.snap"),
        snap.replace("scenario: good", "scenario: bad"),
    )
    .unwrap();
    let o = harness_in(dir.path(), &["run", "--failed"]);
    let out = text(&o);
    // The removed file is said to be gone; the fixed one passes.
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("no longer exists: scenarios/broken.yaml"),
        "{out}"
    );
    assert!(out.contains("1 scenario run: 1 passed"), "{out}");
    let o = harness_in(dir.path(), &["run", "--failed"]);
    assert!(
        text(&o).contains("no scenario failed in the last run"),
        "{}",
        text(&o)
    );
}

#[test]
fn junit_is_valid_against_the_schema_of_nextests_reports_and_json_has_a_record_each() {
    let dir = project_with_failures();
    let junit = dir.path().join("out/junit.xml");
    let json = dir.path().join("out/report.json");
    let o = harness_in(
        dir.path(),
        &[
            "run",
            "--report",
            &format!("junit={}", junit.display()),
            "--report",
            &format!("json={}", json.display()),
            "scenarios",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<testcase name=\"good\""), "{xml}");
    assert!(
        xml.contains("<failure message=\"step 2 (connect a): reply: expected code 250"),
        "{xml}"
    );
    assert!(xml.contains("<error message="), "{xml}");
    match Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(project().join("tests/fixtures/junit-nextest.xsd"))
        .arg(&junit)
        .output()
    {
        Ok(v) => assert!(v.status.success(), "{}", text(&v)),
        Err(e) => assert!(
            std::env::var_os("CI").is_none(),
            "xmllint (libxml2-utils) is needed to validate the JUnit report: {e}"
        ),
    }
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&json)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    let bad = lines.iter().find(|r| r["id"] == "bad").unwrap();
    assert_eq!(bad["verdict"], "fail");
    assert_eq!(bad["file"], "scenarios/bad.yaml");
    assert!(bad["time"].as_f64().unwrap() > 0.0);
    assert!(
        bad["failures"][0]
            .as_str()
            .unwrap()
            .contains("expected code 250")
    );
    assert_eq!(bad["violations"].as_array().unwrap().len(), 0);
    let broken = lines.iter().find(|r| r["id"] == "broken").unwrap();
    assert_eq!(broken["verdict"], "error");
}

#[test]
fn profile_overrides_every_scenarios_profile() {
    let p = project();
    let kb3 = "scenarios/kb-q146791/kb3-in-removed-after-354.yaml";
    let o = harness_in(&p, &["run", "--profile", "hardened", kb3]);
    let out = text(&o);
    // Hardened recreates IN and accepts: the KB expectation of a 421 fails.
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("expected code 421, got `250"), "{out}");
    assert!(
        !out.contains("snapshot"),
        "snapshots are not compared: {out}"
    );
    let o = harness_in(&p, &["run", "--profile", "exchange-4.1", kb3]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("unknown profile `exchange-4.1`"),
        "{}",
        text(&o)
    );
    let o = harness_in(&p, &["run", "--reply-timeout", "1", kb3]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn diff_profiles_shows_each_profiles_replies_and_events_per_step() {
    let p = project();
    let o = harness_in(
        &p,
        &[
            "diff-profiles",
            "scenarios/kb-q146791/kb3-in-removed-after-354.yaml",
        ],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("* step 8: a: message"), "{out}");
    let step8: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("* step 8"))
        .skip(1)
        .take_while(|l| !l.starts_with("* step") && !l.starts_with("  step"))
        .collect();
    let exchange = step8
        .iter()
        .position(|l| l.contains("exchange-4.0"))
        .unwrap();
    let hardened = step8.iter().position(|l| l.contains("hardened")).unwrap();
    let (kb, modern) = step8.split_at(hardened);
    assert!(
        exchange == 0
            && kb
                .iter()
                .any(|l| l.ends_with("a < 421 Internal Error. Connection Closing.")),
        "{out}"
    );
    assert!(kb.iter().any(|l| l.contains("event 4055")), "{out}");
    assert!(modern.iter().any(|l| l.contains("a < 250 2.0.0")), "{out}");
    let o = harness_in(
        &p,
        &[
            "diff-profiles",
            "--markdown",
            "scenarios/kb-q146791/kb3-in-removed-after-354.yaml",
        ],
    );
    assert!(
        text(&o).contains("| step | `exchange-4.0` | `hardened` |"),
        "{}",
        text(&o)
    );
}
