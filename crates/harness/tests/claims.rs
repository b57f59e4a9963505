//! The claims registry: `claims:` must name registered claims (a located error
//! with a suggestion otherwise), free-form labels go in `tags:`, every committed
//! scenario cites registered claims, and the coverage table runs real scenarios.

use harness::claims::{self, Outcome};
use harness::runner::RunOptions;
use harness::scenario::{self, ScenarioError};
use harness::suite;
use std::path::{Path, PathBuf};

fn parse(source: &str) -> Result<scenario::Scenario, ScenarioError> {
    scenario::parse(source, Path::new("scenarios/x.yaml"))
}

fn project() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[track_caller]
fn unknown_claim(source: &str, line: usize, column: usize) -> ScenarioError {
    let e = parse(source).expect_err("an unknown claim is refused");
    assert!(matches!(e, ScenarioError::Invalid(_)), "{e}");
    assert_eq!((e.line(), e.column()), (Some(line), Some(column)), "{e}");
    assert!(
        e.message().contains("unknown claim") && e.message().contains("not in the claims registry"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains(&format!("scenarios/x.yaml:{line}:{column}")),
        "{e}"
    );
    e
}

#[test]
fn a_misspelt_claim_is_a_located_error_with_a_suggestion() {
    let e = unknown_claim(
        "claims: [KB-3, RFC5321-4.1.14]\nprofile: hardened\nsteps: [{ service: start }]\n",
        1,
        16,
    );
    assert_eq!(
        e.message(),
        "unknown claim `RFC5321-4.1.14`: it is not in the claims registry"
    );
    assert_eq!(e.help(), Some("did you mean `RFC5321-4.1.1.4`?"));

    // Case is a typo too.
    let e = unknown_claim(
        "claims:\n  - kb-3\nprofile: hardened\nsteps: [{ service: start }]\n",
        2,
        5,
    );
    assert_eq!(e.help(), Some("did you mean `KB-3`?"));
}

#[test]
fn a_free_form_claim_is_refused_and_pointed_at_tags() {
    let e = unknown_claim(
        "claims: [backup-job]\nprofile: hardened\nsteps: [{ service: start }]\n",
        1,
        10,
    );
    let help = e.help().unwrap();
    assert!(
        help.contains("scenarios/claims.yaml") && help.contains("`tags:`"),
        "{help}"
    );
}

#[test]
fn tags_are_free_form() {
    let s = parse(
        "claims: [KB-3]\ntags: [backup-job, field report]\nprofile: hardened\nsteps: [{ service: start }]\n",
    )
    .unwrap();
    assert_eq!(s.tags, ["backup-job", "field report"]);
    let e = parse("claims: [KB-3]\ntags: ['']\nprofile: hardened\nsteps: [{ service: start }]\n")
        .unwrap_err();
    assert_eq!(e.message(), "tag 1 is empty");
    assert_eq!((e.line(), e.column()), (Some(2), Some(8)));
}

#[test]
fn every_committed_scenario_cites_registered_claims_only() {
    // Loading validates the claims; every scenario must load.
    let files = scenario::discover(&[project().join("scenarios")]).unwrap();
    assert!(files.len() > 40, "{files:?}");
    assert!(
        !files.iter().any(|f| f.ends_with(claims::REGISTRY_FILE)),
        "discovery must skip the registry"
    );
    for file in files {
        if let Err(e) = scenario::load(&file) {
            panic!("{}:\n{e}", file.display());
        }
    }
}

#[test]
fn every_claim_explore_writes_is_registered() {
    use harness::explore::{Kind, claims_for};
    use harness::invariants::Invariant;
    let registry = claims::registry();
    let kinds = Invariant::ALL
        .iter()
        .map(|i| Kind::Invariant(*i))
        .chain([Kind::RunError]);
    for kind in kinds {
        for id in claims_for(kind) {
            assert!(
                registry.get(&id).is_some(),
                "explore writes unregistered claim {id}"
            );
        }
    }
}

#[test]
fn the_coverage_table_runs_the_scenarios_citing_each_claim() {
    let dir = project().join("scenarios/kb-q146791");
    let cases = suite::cases(
        &[
            dir.join("kb3-in-removed-after-354.yaml"),
            dir.join("kb5-restart-recreates-in.yaml"),
        ],
        None,
    )
    .unwrap();
    let table = claims::coverage(claims::registry(), &cases, &RunOptions::default());
    assert!(table.all_passed(), "{table}");
    let row = |id: &str| table.rows.iter().find(|r| r.claim.id == id).unwrap();
    let ids = |id: &str| {
        row(id)
            .checks
            .iter()
            .map(|c| (c.scenario.as_str(), c.outcome))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids("KB-3"),
        [("kb-q146791/kb3-in-removed-after-354", Outcome::Pass)]
    );
    assert_eq!(
        ids("KB-5"),
        [("kb-q146791/kb5-restart-recreates-in", Outcome::Pass)]
    );
    assert_eq!(ids("KB-1"), []);
    assert!(row("KB-3").covered() && !row("KB-1").covered());
    let text = table.to_string();
    assert!(text.contains("!! KB-1 "), "{text}");
    assert!(
        text.contains("PASS kb-q146791/kb3-in-removed-after-354"),
        "{text}"
    );
    let md = table.markdown();
    assert!(
        md.contains("| `KB-1` | Microsoft KB Q146791, Symptoms | low disk space; inbound SMTP refused with 421 Internal Error | **no passing scenario** |"),
        "{md}"
    );
}

#[test]
fn a_failing_scenario_shows_as_fail_and_does_not_cover_its_claim() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wrong.yaml");
    // KB-2: the call is refused with 421, not greeted with 220.
    std::fs::write(
        &file,
        "claims: [KB-2]\nprofile: exchange-4.0\nsteps:\n  - service: start\n  - fault: { remove: imcdata/in }\n  - connect: a\n    expect: { code: 220 }\n",
    )
    .unwrap();
    let cases = suite::cases(&[file], None).unwrap();
    let table = claims::coverage(claims::registry(), &cases, &RunOptions::default());
    let row = table.rows.iter().find(|r| r.claim.id == "KB-2").unwrap();
    assert_eq!(row.checks.len(), 1);
    assert_eq!(row.checks[0].outcome, Outcome::Fail);
    assert!(!row.covered() && !table.all_passed());
}
