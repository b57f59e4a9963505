//! One test per scenario file under `scenarios/`, named by its path
//! (`kb-q146791/kb3-in-removed-before-dot`), so `cargo test kb3` runs one and
//! cargo-nextest sees each as its own test. A failing test prints the transcript,
//! the expectations that failed, and the snapshot diff.

use harness::runner::RunOptions;
use harness::suite::{self, Snapshots};
use libtest_mimic::{Arguments, Failed, Trial};
use std::path::Path;

fn main() {
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scenarios = root.join("scenarios");
    let snapshots = Snapshots::Insta(root.join("snapshots"));
    let cases = suite::cases(std::slice::from_ref(&scenarios), &scenarios)
        .unwrap_or_else(|e| panic!("cannot list the scenarios: {e}"));
    let trials = cases
        .into_iter()
        .map(|case| {
            let snapshots = snapshots.clone();
            Trial::test(case.id.clone(), move || {
                let verdict = suite::run_case(&case, &RunOptions::default(), &snapshots);
                if verdict.passed() {
                    Ok(())
                } else {
                    Err(Failed::from(format!(
                        "{}\n{}",
                        case.path.display(),
                        verdict.report()
                    )))
                }
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
