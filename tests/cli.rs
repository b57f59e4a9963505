//! The `imc-harness` command as a user runs it: exit statuses, the summary, a
//! scenario error with its line and column, and stored runs re-checked by `check`.

use std::path::Path;
use std::process::{Command, Output};

fn harness(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imc-harness"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
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

#[test]
fn run_passes_a_folder_and_prints_a_summary() {
    let o = harness(&["run", "-q", "scenarios/kb-q146791"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("scenarios: ") && text(&o).contains(" 0 failed"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_typo_in_a_key_fails_with_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.yaml");
    std::fs::write(
        &file,
        "claims: [KB-1]\nprofile: exchange-4.0\nsteps:\n  - service: start\n  - comand: NOOP\n",
    )
    .unwrap();
    let o = harness(&["run", file.to_str().unwrap()]);
    assert!(!o.status.success());
    let out = text(&o);
    assert!(out.contains("typo.yaml:5:5"), "{out}");
    assert!(out.contains("unknown field `comand`"), "{out}");
    assert!(out.contains("did you mean `command`"), "{out}");
}

#[test]
fn a_failing_expectation_fails_the_run_with_a_transcript() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wrong.yaml");
    std::fs::write(
        &file,
        "claims: [KB-2]\nprofile: exchange-4.0\nsteps:\n  - service: start\n  - fault: { remove: imcdata/in }\n  - connect: a\n    expect: { code: 220 }\n",
    )
    .unwrap();
    let o = harness(&["run", "--no-snapshots", file.to_str().unwrap()]);
    assert!(!o.status.success());
    let out = text(&o);
    assert!(
        out.contains("a < 421 Internal Error. Connection Closing."),
        "{out}"
    );
    assert!(out.contains("expected code 220"), "{out}");
    assert!(out.contains("1 failed"), "{out}");
}

#[test]
fn stored_runs_are_rechecked_and_diffed_without_rerunning() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let o = harness(&[
        "run",
        "-q",
        "--save-history",
        out,
        "scenarios/kb-q146791/kb2-in-removed-before-connection.yaml",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let stored = Path::new(out).join("kb-q146791__kb2-in-removed-before-connection.json");
    let o = harness(&["check", stored.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));

    // A run in which the reply changed differs from the snapshot, and from the original.
    let changed = dir.path().join("changed.json");
    let json = std::fs::read_to_string(&stored).unwrap();
    std::fs::write(&changed, json.replace("Connection Closing.", "Goodbye.")).unwrap();
    let o = harness(&["check", changed.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("+ - a < 421 Internal Error. Goodbye."),
        "{}",
        text(&o)
    );
    let o = harness(&[
        "check",
        changed.to_str().unwrap(),
        "--against",
        stored.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
}
