//! Verdicts that mean what they say: a fault armed with `when:` that never
//! fires fails its scenario, a `when:` on a session that is never connected is a
//! load error, and the final recovery undoes any sequence of tree faults the
//! language allows, or says the harness failed, never blaming the connector.

use harness::invariants::Invariant;
use harness::runner::RunOptions;
use harness::scenario;
use harness::suite::{self, Snapshots, Verdict};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::path::Path;

fn run(yaml: &str) -> Verdict {
    let path = Path::new("verdicts.yaml");
    let scenario = scenario::parse(yaml, path).unwrap_or_else(|e| panic!("{e}"));
    let case = suite::Case::new(path.to_path_buf(), Path::new("."));
    suite::run_loaded(&case, &scenario, &RunOptions::default(), &Snapshots::Off)
}

const HEAD: &str = "claims: [KB-2]\nprofile: exchange-4.0\nsteps:\n  - service: start\n";

#[test]
fn a_fault_that_never_fires_fails_the_scenario_with_where_it_was_armed() {
    for (when, stage) in [
        ("after_reply: 354", "session z never received 354"),
        ("after_data_bytes: 10", "session z never sent 10 bytes"),
        (
            "before_dot: true",
            "session z never sent the end-of-data dot",
        ),
    ] {
        let yaml = format!(
            "{HEAD}  - connect: a\n  - connect: z\n  - fault: {{ remove: imcdata/in }}\n    when: {{ session: z, {when} }}\n  - command: EHLO client.test\n    session: a\n"
        );
        let v = run(&yaml);
        assert!(!v.passed(), "{when}: {}", v.report());
        let m = v
            .mismatches
            .iter()
            .find(|m| m.message.contains("never fired"))
            .unwrap_or_else(|| panic!("{when}: {}", v.report()));
        assert_eq!(m.step, 4, "{m}");
        assert!(m.message.starts_with("armed at step 4, never fired"), "{m}");
        assert!(m.message.contains(stage), "{m}");
    }
}

#[test]
fn a_fault_that_fires_leaves_no_complaint() {
    let yaml = format!(
        "{HEAD}  - connect: a\n  - command: EHLO client.test\n  - command: \"MAIL FROM:<a@b.test>\"\n  - command: \"RCPT TO:<c@d.test>\"\n  - fault: {{ remove: imcdata/in }}\n    when: {{ session: a, after_reply: 354 }}\n  - command: DATA\n  - message: \"Subject: x\\n\\nbody\\n\"\n"
    );
    let v = run(&yaml);
    assert!(
        !v.mismatches
            .iter()
            .any(|m| m.message.contains("never fired")),
        "{}",
        v.report()
    );
}

#[test]
fn when_on_a_session_never_connected_is_a_located_load_error() {
    let yaml = format!(
        "{HEAD}  - connect: alpha\n  - fault: {{ remove: imcdata/in }}\n    when: {{ session: alpah, after_reply: 354 }}\n"
    );
    let e = scenario::parse(&yaml, Path::new("typo.yaml"))
        .expect_err("a when on an unknown session is refused")
        .to_string();
    assert!(e.contains("typo.yaml:7:22"), "{e}");
    assert!(e.contains("never connects"), "{e}");
    assert!(e.contains("did you mean `alpha`?"), "{e}");
    // A session connected after the fault is armed is fine.
    let later = format!(
        "{HEAD}  - fault: {{ remove: imcdata/in }}\n    when: {{ session: a, after_reply: 354 }}\n  - connect: a\n"
    );
    scenario::parse(&later, Path::new("later.yaml")).expect("connected later: accepted");
}

#[test]
fn replace_rename_restore_is_undone_by_the_recovery() {
    let yaml = format!(
        "{HEAD}  - fault: {{ replace: imcdata/in }}\n  - fault: {{ rename: {{ from: imcdata/in, to: imcdata/in2 }} }}\n  - fault: {{ restore: imcdata/in }}\n  - connect: a\n"
    );
    let v = run(&yaml);
    assert!(v.violations.is_empty(), "{}", v.report());
    assert!(v.harness_failures.is_empty(), "{}", v.report());
}

/// One fault of the language on the spool's directories.
#[derive(Clone, Debug)]
enum TreeFault {
    Remove(&'static str),
    Rename(&'static str, &'static str),
    Replace(&'static str),
    Restore(&'static str),
}

impl TreeFault {
    fn yaml(&self) -> String {
        match self {
            TreeFault::Remove(p) => format!("{{ remove: {p} }}"),
            TreeFault::Rename(a, b) => format!("{{ rename: {{ from: {a}, to: {b} }} }}"),
            TreeFault::Replace(p) => format!("{{ replace: {p} }}"),
            TreeFault::Restore(p) => format!("{{ restore: {p} }}"),
        }
    }
}

fn tree_fault() -> impl Strategy<Value = TreeFault> {
    let path = prop::sample::select(vec!["imcdata/in", "imcdata/work", "imcdata/in2", "imcdata"]);
    prop_oneof![
        path.clone().prop_map(TreeFault::Remove),
        (path.clone(), path.clone()).prop_map(|(a, b)| TreeFault::Rename(a, b)),
        path.clone().prop_map(TreeFault::Replace),
        path.prop_map(TreeFault::Restore),
    ]
}

/// Whatever sequence of tree faults a scenario makes, with messages between
/// them, the recovery puts the volume back (or reports that the harness could
/// not): `recovery` and `no-loss` are never blamed on a connector that did
/// nothing wrong. Seeded, so a failure replays.
#[test]
fn any_sequence_of_tree_faults_is_undone_by_the_recovery() {
    let config = Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let strategy = prop::collection::vec((tree_fault(), any::<bool>()), 1..7);
    runner
        .run(&strategy, |faults| {
            let mut yaml = HEAD.to_string();
            for (i, (fault, send)) in faults.iter().enumerate() {
                yaml.push_str(&format!("  - fault: {}\n", fault.yaml()));
                if *send {
                    let s = format!("s{i}");
                    yaml.push_str(&format!(
                        "  - connect: {s}\n  - command: HELO client.test\n  - command: \"MAIL FROM:<a@b.test>\"\n  - command: \"RCPT TO:<c@d.test>\"\n  - command: DATA\n  - message: \"Subject: {i}\\n\\nbody {i}\\n\"\n  - disconnect: {s}\n"
                    ));
                }
            }
            let v = run(&yaml);
            let blamed: Vec<String> = v
                .violations
                .iter()
                .filter(|x| matches!(x.invariant, Invariant::Recovery | Invariant::NoLoss))
                .map(|x| x.to_string())
                .collect();
            prop_assert!(blamed.is_empty(), "{yaml}\n{}", v.report());
            prop_assert!(v.harness_failures.is_empty(), "{yaml}\n{}", v.report());
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
