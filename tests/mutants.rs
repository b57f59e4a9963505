//! Each mutant scenario (`scenarios/mutants/`) declares the invariant its seeded
//! defect violates; `tests/scenarios.rs` checks the violation is caught. Here the
//! same scenarios run without the mutant and must keep every invariant, so a
//! caught violation is the defect's doing and not the scenario's.

use harness::runner::RunOptions;
use harness::suite::{self, Snapshots};
use std::path::Path;

#[test]
fn mutant_scenarios_keep_every_invariant_without_their_mutant() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scenarios = root.join("scenarios");
    let cases =
        suite::cases(&[scenarios.join("mutants")], Some(&scenarios)).expect("mutant scenarios");
    assert!(
        cases.len() >= 5,
        "one scenario per mutant, found {}",
        cases.len()
    );
    let mut mutants_seen = Vec::new();
    for case in cases {
        let mut scenario = harness::scenario::load(&case.path).expect("mutant scenario loads");
        let mutant = scenario
            .connector
            .mutant
            .take()
            .expect("a mutant scenario names its mutant");
        assert!(
            scenario.expect_violation.take().is_some(),
            "{}: a mutant scenario declares the violation it expects",
            case.id
        );
        let verdict = suite::run_loaded(&case, &scenario, &RunOptions::default(), &Snapshots::Off);
        assert!(verdict.error.is_none(), "{}: {:?}", case.id, verdict.error);
        assert!(
            verdict.violations.is_empty(),
            "{} without mutant `{mutant}` should keep every invariant:\n{}",
            case.id,
            verdict.report()
        );
        mutants_seen.push(mutant);
    }
    for m in imc::Mutant::ALL {
        assert!(
            mutants_seen.contains(&m.name().to_string()),
            "no scenario under scenarios/mutants/ runs mutant `{m}`"
        );
    }
}
