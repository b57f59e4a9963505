//! The authoring commands as a user runs them: `new` (a profile it knows, a YAML
//! name, `--force`), `check` over several stored runs and a folder of them, and
//! `claims` (the coverage table, in a terminal and as Markdown).

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
fn new_checks_the_profile_and_the_name_and_overwrites_only_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bug.yaml");
    let path = file.to_str().unwrap();

    let o = harness(&["new", path, "--profile", "hardend"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("did you mean `hardened`?"),
        "{}",
        text(&o)
    );
    assert!(!file.exists());

    let txt = dir.path().join("bug.txt");
    let o = harness(&["new", txt.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("is not a YAML file name"), "{}", text(&o));
    assert!(!txt.exists());

    let o = harness(&["new", path, "--profile", "hardened"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = harness(&["new", path]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("pass --force to overwrite"),
        "{}",
        text(&o)
    );
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("profile: hardened")
    );
    let o = harness(&["new", path, "--force"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("profile: exchange-4.0")
    );
    let o = harness(&["run", "--no-snapshots", path]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn check_takes_several_stored_runs_and_folders() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("runs");
    let o = harness(&[
        "run",
        "-q",
        "--save-history",
        out.to_str().unwrap(),
        "scenarios/kb-q146791/kb2-in-removed-before-connection.yaml",
        "scenarios/smtp/happy-path.yaml",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let a = out.join("kb-q146791__kb2-in-removed-before-connection.json");
    let b = out.join("smtp__happy-path.json");

    let o = harness(&["check", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        text(&o).matches("same as its snapshot").count(),
        2,
        "{}",
        text(&o)
    );
    let o = harness(&["check", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));

    // One changed run in the folder fails the whole check, and is named.
    let changed = out.join("nested/changed.json");
    std::fs::create_dir_all(changed.parent().unwrap()).unwrap();
    let json = std::fs::read_to_string(&a).unwrap();
    std::fs::write(&changed, json.replace("Connection Closing.", "Goodbye.")).unwrap();
    let o = harness(&["check", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("changed.json differs"), "{}", text(&o));

    // --against compares exactly one run; an empty folder is an error.
    let o = harness(&[
        "check",
        out.to_str().unwrap(),
        "--against",
        a.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = harness(&["check", empty.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("holds no stored run"), "{}", text(&o));
}

#[test]
fn claims_prints_the_coverage_table() {
    let o = harness(&["claims", "scenarios/kb-q146791"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("PASS kb-q146791/kb3-in-removed-after-354"),
        "{out}"
    );
    // No KB scenario checks the other MTAs' observations: flagged.
    assert!(out.contains("!! POSTFIX-LOWSPACE"), "{out}");
    assert!(
        out.contains("11 scenarios: 11 passed, 0 failed, 0 skipped"),
        "{out}"
    );

    let o = harness(&["claims", "--markdown", "scenarios/kb-q146791"]);
    assert!(o.status.success(), "{}", text(&o));
    let md = String::from_utf8(o.stdout).unwrap();
    assert!(
        md.starts_with("| Claim | Source | What it says | Checked by (verdict) |\n| --- |"),
        "{md}"
    );
    assert!(
        md.contains("| `KB-4` | Microsoft KB Q146791, Symptoms |"),
        "{md}"
    );
    assert!(
        md.contains("PASS `kb-q146791/kb4-stop-while-in-missing`"),
        "{md}"
    );
}

#[test]
fn the_readme_shows_the_table_the_command_prints() {
    // The README's table is the output of `imc-harness claims --markdown`
    // over the whole suite, pasted between two markers.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = "<!-- claims table: cargo run --release -- claims --markdown -->\n";
    let end = "<!-- end of claims table -->";
    let from = readme.find(start).expect("the README has the claims table") + start.len();
    let to = from + readme[from..].find(end).expect("the table ends");
    let o = harness(&["claims", "--markdown"]);
    assert!(o.status.success(), "{}", text(&o));
    let table = String::from_utf8(o.stdout).unwrap();
    assert!(
        readme[from..to].trim() == table.trim(),
        "README.md's claims table is stale: replace it with the output of \
         `cargo run --release -- claims --markdown`"
    );
}

#[test]
fn the_claims_registry_schema_is_printed() {
    let o = harness(&["claims", "--schema"]);
    assert!(o.status.success(), "{}", text(&o));
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/claims.schema.json"),
    )
    .unwrap();
    assert_eq!(String::from_utf8(o.stdout).unwrap(), committed);
}
