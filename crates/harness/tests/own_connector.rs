//! The README's "Testing your own connector" example runs: a connector that is
//! not `imc` implements `Target` in-process and a scenario plays against it,
//! with its expectations, the invariants and the final recovery.

#[path = "../examples/own_connector.rs"]
mod own;

#[tokio::test]
async fn a_connector_of_your_own_runs_a_scenario() {
    let run = own::run().await;
    let history = run.history.to_string();
    assert!(run.mismatches.is_empty(), "{:?}\n{history}", run.mismatches);
    assert!(run.violations.is_empty(), "{:?}\n{history}", run.violations);
    assert!(
        run.harness_failures.is_empty(),
        "{:?}",
        run.harness_failures
    );
    assert!(history.contains("a < 250 queued as 1"), "{history}");
    assert!(
        history.contains("event - error maildrop [] cannot store message 2"),
        "{history}"
    );
    // The listing is the target's spool layout, not imc's (taken before the
    // final recovery puts `new` back).
    assert!(history.contains("final spool/new: (missing)"), "{history}");
    assert!(history.contains("final spool/tmp: (empty)"), "{history}");
}
