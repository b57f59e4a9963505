//! A scenario rerun gives a byte-identical history: every scenario file is run
//! twice and the two histories (steps, replies, events, faults, final listing and
//! the final recovery) must be equal, and so must the invariant verdicts.

use harness::runner::RunOptions;
use harness::suite::{self, Snapshots};
use std::path::Path;

#[test]
fn every_scenario_reruns_byte_identical() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scenarios = root.join("scenarios");
    let cases =
        suite::cases(std::slice::from_ref(&scenarios), Some(&scenarios)).expect("scenarios");
    assert!(cases.len() > 20, "found only {} scenarios", cases.len());
    for case in &cases {
        let run = || suite::run_case(case, &RunOptions::default(), &Snapshots::Off);
        let (first, second) = (run(), run());
        assert!(first.error.is_none(), "{}: {:?}", case.id, first.error);
        let (a, b) = (
            first.history.as_ref().expect("ran"),
            second.history.as_ref().expect("ran"),
        );
        assert_eq!(
            serde_json::to_string(a).expect("histories serialize"),
            serde_json::to_string(b).expect("histories serialize"),
            "{} gave two different histories",
            case.id
        );
        let names = |v: &suite::Verdict| {
            v.violations
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&first),
            names(&second),
            "{}: violations differ",
            case.id
        );
    }
}
