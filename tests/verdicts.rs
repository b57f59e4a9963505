//! A PASS means the checks ran: a scenario's snapshot is found however its path
//! is spelt, a missing snapshot fails `run` as it fails `cargo test`, `--accept`
//! records it, a scenario the backend cannot run is skipped (not failed, not
//! passed), and plain `cargo test` covers the whole workspace.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn harness_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imc-harness"))
        .args(args)
        .current_dir(dir)
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

/// A project of its own: `scenarios/smtp/happy-path.yaml` and its snapshot,
/// whose stored text is changed when `spoil` is set.
fn copy_project(spoil: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = project();
    std::fs::create_dir_all(dir.path().join("scenarios/smtp")).unwrap();
    std::fs::create_dir_all(dir.path().join("snapshots")).unwrap();
    std::fs::copy(
        src.join("scenarios/smtp/happy-path.yaml"),
        dir.path().join("scenarios/smtp/happy-path.yaml"),
    )
    .unwrap();
    let snap = std::fs::read_to_string(src.join("snapshots/smtp__happy-path.snap")).unwrap();
    let snap = if spoil {
        snap.replace("250 OK", "250 Spoilt")
    } else {
        snap
    };
    assert!(
        !spoil || snap.contains("Spoilt"),
        "the snapshot has a 250 OK"
    );
    std::fs::write(dir.path().join("snapshots/smtp__happy-path.snap"), snap).unwrap();
    dir
}

#[test]
fn the_snapshot_is_found_however_the_path_is_spelt() {
    let spoilt = copy_project(true);
    let root = spoilt.path();
    let abs = root.join("scenarios/smtp/happy-path.yaml");
    let spellings: [(PathBuf, &str); 5] = [
        (root.to_path_buf(), "scenarios/smtp/happy-path.yaml"),
        (root.to_path_buf(), "./scenarios/"),
        (root.to_path_buf(), abs.to_str().unwrap()),
        (root.join("scenarios"), "smtp/happy-path.yaml"),
        (root.join("scenarios/smtp"), "./happy-path.yaml"),
    ];
    for (cwd, path) in &spellings {
        let o = harness_in(cwd, &["run", "-q", path]);
        let out = text(&o);
        assert!(
            !o.status.success(),
            "{path} from {}: passed against a spoilt snapshot\n{out}",
            cwd.display()
        );
        assert!(out.contains("FAIL smtp/happy-path"), "{path}: {out}");
        assert!(
            out.contains("differs (- stored, + this run)"),
            "{path}: {out}"
        );
    }
    let good = copy_project(false);
    for (cwd, path) in &spellings {
        let cwd = good.path().join(cwd.strip_prefix(root).unwrap());
        let path = path.replace(root.to_str().unwrap(), good.path().to_str().unwrap());
        let o = harness_in(&cwd, &["run", "-q", &path]);
        assert!(o.status.success(), "{path}: {}", text(&o));
    }
}

#[test]
fn a_missing_snapshot_fails_run_and_accept_records_it() {
    let dir = copy_project(false);
    let snap = dir.path().join("snapshots/smtp__happy-path.snap");
    let stored = std::fs::read_to_string(&snap).unwrap();
    std::fs::remove_file(&snap).unwrap();
    let pending = dir.path().join("snapshots/smtp__happy-path.snap.new");
    std::fs::write(&pending, "stale").unwrap();

    let o = harness_in(dir.path(), &["run", "-q", "scenarios"]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("no snapshot stored at"), "{out}");
    assert!(out.contains("imc-harness run --accept"), "{out}");

    let o = harness_in(dir.path(), &["run", "--accept", "scenarios"]);
    let out = text(&o);
    assert!(out.contains("snapshot written to"), "{out}");
    // Written in the format insta writes, byte for byte.
    assert_eq!(std::fs::read_to_string(&snap).unwrap(), stored);
    assert!(!pending.exists(), "the stale .snap.new is removed");

    let o = harness_in(dir.path(), &["run", "-q", "scenarios"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn accept_rewrites_a_differing_snapshot() {
    let dir = copy_project(true);
    let snap = dir.path().join("snapshots/smtp__happy-path.snap");
    let o = harness_in(dir.path(), &["run", "--accept", "scenarios"]);
    assert!(text(&o).contains("snapshot written to"), "{}", text(&o));
    let good = std::fs::read_to_string(project().join("snapshots/smtp__happy-path.snap")).unwrap();
    assert_eq!(std::fs::read_to_string(&snap).unwrap(), good);
}

#[test]
fn a_file_outside_any_scenarios_folder_has_its_own_id_and_snapshot_folder() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("field-bug.yaml");
    std::fs::copy(project().join("scenarios/smtp/happy-path.yaml"), &file).unwrap();
    let o = harness_in(dir.path(), &["run", "-q", "field-bug.yaml"]);
    let out = text(&o);
    assert!(!o.status.success(), "no snapshot yet: {out}");
    let expected = dir.path().join("snapshots").join("field-bug.snap");
    let expected = expected.canonicalize().unwrap_or(expected);
    assert!(
        out.contains(&format!("no snapshot stored at {}", expected.display())),
        "{out}"
    );
    assert!(out.contains("FAIL field-bug"), "{out}");
    let o = harness_in(dir.path(), &["run", "-q", "--accept", "field-bug.yaml"]);
    assert!(expected.exists(), "{}", text(&o));
    let o = harness_in(dir.path(), &["run", "-q", "field-bug.yaml"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn a_crash_scenario_on_tmpfs_is_skipped_with_the_reason() {
    let o = harness_in(
        &project(),
        &[
            "run",
            "-q",
            "--backend",
            "tmpfs",
            "scenarios/hardened/h5-crash-leftovers.yaml",
            "scenarios/smtp/happy-path.yaml",
        ],
    );
    let out = text(&o);
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("SKIP")
                && l.contains("hardened/h5-crash-leftovers: ")),
        "{out}"
    );
    assert!(out.contains("1 skipped"), "{out}");
    assert!(
        out.contains("no crash model") || out.contains("tmpfs` unavailable"),
        "the reason is given: {out}"
    );
    if !out.contains("tmpfs` unavailable") {
        assert!(out.contains("1 passed, 0 failed, 1 skipped"), "{out}");
        assert!(o.status.success(), "{out}");
    }
}

#[test]
fn plain_cargo_test_covers_every_crate_of_the_workspace() {
    let o = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(project())
        .output()
        .expect("cargo metadata runs");
    assert!(o.status.success(), "{}", text(&o));
    let meta: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let set = |key: &str| {
        let mut v: Vec<String> = meta[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} is listed"))
            .iter()
            .map(|m| m.as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let members = set("workspace_members");
    assert_eq!(members.len(), 4, "{members:?}");
    assert_eq!(set("workspace_default_members"), members);
    // And CI runs exactly the README's test command.
    let readme = std::fs::read_to_string(project().join("README.md")).unwrap();
    let ci = std::fs::read_to_string(project().join(".ci/run")).unwrap();
    assert!(
        readme.contains("\ncargo test\n"),
        "README names `cargo test`"
    );
    assert!(
        ci.lines().any(|l| l.trim() == "cargo test"),
        ".ci/run runs `cargo test` as the README says"
    );
}
