//! `explore` and `enumerate`: replays are byte for byte, seeded defects are found
//! and their reproducers fail the same way, every scenario file round-trips
//! through YAML.

use harness::enumerate;
use harness::explore::{self, Kind, Options, Shard, Target};
use harness::invariants::Invariant;
use harness::runner::RunOptions;
use harness::scenario;
use harness::suite::{self, Snapshots};
use std::path::{Path, PathBuf};

fn target(mutant: Option<&str>) -> Target {
    Target {
        profile: "hardened".into(),
        mutant: mutant.map(str::to_string),
        backend: None,
    }
}

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios")
}

#[test]
fn the_same_seed_replays_the_same_histories_byte_for_byte() {
    let mut options = Options::new(target(None), 20_260_101);
    options.cases = 20;
    let first = explore::replay(&options);
    // One thread this time: the schedules depend on (seed, case) only.
    options.threads = 1;
    let second = explore::replay(&options);
    assert_eq!(first.len(), 20);
    assert_eq!(second.len(), 20);
    for ((i, a, h), (j, b, g)) in first.iter().zip(&second) {
        assert_eq!(i, j);
        assert_eq!(a, b, "case {i}: the schedule differs");
        let h = h.as_ref().expect("the run was made").to_string();
        let g = g.as_ref().expect("the run was made").to_string();
        assert_eq!(h, g, "case {i}: the history differs");
    }
    // Not all alike: the cases explore different schedules.
    assert!(first.iter().any(|(_, a, _)| a != &first[0].1));
}

#[test]
fn shards_split_the_cases_and_together_make_the_whole_run() {
    let list = |cases, shard: &str| -> Vec<u64> {
        explore::shard_indices(cases, shard.parse().unwrap())
            .iter()
            .collect()
    };
    let all: Vec<u64> = explore::shard_indices(10, Shard::default())
        .iter()
        .collect();
    assert_eq!(all, (0..10).collect::<Vec<u64>>());
    let (a, b, c) = (list(10, "0/3"), list(10, "1/3"), list(10, "2/3"));
    assert_eq!(a, [0, 3, 6, 9]);
    assert_eq!(b, [1, 4, 7]);
    let mut union: Vec<u64> = [a, b, c].concat();
    union.sort();
    assert_eq!(union, all);
    // More shards than cases: the last shards run nothing.
    assert_eq!(list(2, "3/4"), Vec::<u64>::new());
    assert!(list(0, "0/1").is_empty());
    // Counted, not listed: a shard of 10^12 cases is as cheap as one of 10.
    let huge = explore::shard_indices(1_000_000_000_000, "2/7".parse().unwrap());
    assert_eq!(huge.len(), 142_857_142_857);
    assert_eq!(huge.get(huge.len() - 1), 999_999_999_994);
    assert_eq!(huge.up_to(1), 0);
    assert_eq!(huge.up_to(9), 2);
    assert!("3/3".parse::<Shard>().is_err());
    // A case's schedule does not depend on the shard that runs it.
    assert_eq!(explore::schedule(5, 7, 30), explore::schedule(5, 7, 30));
    assert_ne!(explore::schedule(5, 7, 30), explore::schedule(6, 7, 30));
}

/// Explores with a seeded defect from a seed known to find it within a few
/// cases; the reproducer written must parse back and fail the same way.
fn finds(mutant: &str, seed: u64, invariant: Invariant) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("reproducer.yaml");
    let mut options = Options::new(target(Some(mutant)), seed);
    options.cases = 20;
    options.out = Some(out.clone());
    let report = explore::explore(&options);
    assert!(
        report.first_failure.is_some_and(|i| i < 20),
        "{mutant} not found: {report}"
    );
    let finding = &report.findings[0];
    assert_eq!(finding.kind, Kind::Invariant(invariant), "{report}");
    assert!(finding.steps_after <= finding.steps_before);
    assert_eq!(finding.path.as_deref(), Some(out.as_path()));
    assert_eq!(finding.rechecked, Some(explore::RECHECK_RUNS), "{report}");

    // It parses back, names the defect and the invariant.
    let text = std::fs::read_to_string(&out).unwrap();
    let loaded = scenario::parse(&text, &out).unwrap();
    assert_eq!(loaded.connector.mutant.as_deref(), Some(mutant));
    assert_eq!(loaded.expect_violation.as_deref(), Some(invariant.name()));
    assert_eq!(loaded.steps.len(), finding.steps_after);
    // As written (expect_violation set) it passes; without expect_violation it
    // fails with that very invariant.
    let case = suite::Case::new(out.clone(), dir.path());
    let options = RunOptions::default();
    let verdict = suite::run_loaded(&case, &loaded, &options, &Snapshots::Off);
    assert!(verdict.passed(), "{}", verdict.report());
    let mut bare = loaded.clone();
    bare.expect_violation = None;
    let verdict = suite::run_loaded(&case, &bare, &options, &Snapshots::Off);
    assert!(!verdict.passed());
    assert!(verdict.violations.iter().any(|v| v.invariant == invariant));
}

#[test]
fn explore_finds_ignore_rename_error() {
    finds("ignore-rename-error", 8, Invariant::NoLoss);
}

#[test]
fn explore_finds_keep_rejected() {
    finds("keep-rejected", 15, Invariant::NoPhantom);
}

#[test]
fn enumerate_keeps_the_invariants_of_the_hardened_profile_and_catches_keep_rejected() {
    let path = scenarios_dir().join("kb-q146791/kb3-in-removed-after-354.yaml");
    let mut options = enumerate::Options::new(path.clone());
    options.profile = Some("hardened".into());
    options.out_dir = None;
    options.faults.clear();
    let report = enumerate::enumerate(&options).unwrap();
    assert!(!report.ops.is_empty());
    // Each operation, three errnos (two for a remove: no ENOENT), once and persistent.
    let removes = report
        .ops
        .iter()
        .filter(|o| o.op == imc::fs::OpKind::Remove)
        .count();
    assert_eq!(report.results.len(), (report.ops.len() * 3 - removes) * 2);
    assert_eq!(report.failing_runs(), 0, "{report}");

    let dir = tempfile::tempdir().unwrap();
    options.mutant = Some("keep-rejected".into());
    options.out_dir = Some(dir.path().to_path_buf());
    let report = enumerate::enumerate(&options).unwrap();
    assert!(report.baseline.is_empty(), "{report}");
    let rep = report
        .reproducers
        .iter()
        .find(|r| r.kind == Kind::Invariant(Invariant::NoPhantom))
        .unwrap_or_else(|| panic!("keep-rejected not caught: {report}"));
    assert_eq!(rep.rechecked, Some(explore::RECHECK_RUNS), "{report}");
    let written = scenario::load(rep.path.as_ref().unwrap()).unwrap();
    assert!(written.steps[0].fault.is_some(), "the fault comes first");
    assert!(written.steps.iter().all(|s| s.expect.is_none()));
}

#[test]
fn injections_name_the_nth_operation_of_its_kind_on_its_path() {
    use imc::fs::OpKind;
    use sandbox::{Errno, OpRecord, Outcome};
    let op = |op, path: &str, to: Option<&str>| OpRecord {
        op,
        path: path.into(),
        to: to.map(Into::into),
        outcome: Outcome::Ok,
        caller: None,
    };
    let ops = [
        op(OpKind::Sync, "imcdata/work/00000001", None),
        op(
            OpKind::Rename,
            "imcdata/work/00000001",
            Some("imcdata/in/00000001"),
        ),
        op(OpKind::Sync, "imcdata/work/00000002", None),
        op(OpKind::Sync, "imcdata/work/00000001", None),
    ];
    let plan = enumerate::injections(&ops, &[Errno::Eio], enumerate::GlobMode::Exact);
    assert_eq!(plan.len(), 8);
    let last = &plan[6];
    assert_eq!((last.k, last.nth), (4, 2));
    assert!(matches!(
        last.what,
        enumerate::What::Errno {
            persistent: false,
            ..
        }
    ));
    assert_eq!(last.glob, "imcdata/work/00000001");
    let plan = enumerate::injections(&ops, &[Errno::Eio], enumerate::GlobMode::Any);
    assert_eq!((plan[6].nth, plan[6].glob.as_str()), (3, "**"));
    assert_eq!(enumerate::escape_glob("a*b[1]"), "a[*]b[[]1[]]");
}

#[test]
fn every_scenario_file_round_trips_through_yaml() {
    let files = scenario::discover(&[scenarios_dir()]).unwrap();
    assert!(files.len() > 10);
    for file in files {
        let loaded = scenario::load(&file).unwrap();
        let text = serde_saphyr::to_string(&loaded).unwrap();
        let back = scenario::parse(&text, &file)
            .unwrap_or_else(|e| panic!("{}: does not parse back:\n{e}\n{text}", file.display()));
        assert_eq!(
            serde_saphyr::to_string(&back).unwrap(),
            text,
            "{}",
            file.display()
        );
    }
}

/// The time budget bounds the shrink too: on a clock that advances one second
/// per reading, a budget a few readings past the first failure leaves the shrink
/// a few attempts (each at most two runs), where the same shrink unbounded needs
/// many more.
#[test]
fn the_time_budget_bounds_shrinking() {
    let mut options = Options::new(target(Some("ignore-rename-error")), 8);
    options.cases = 20;
    options.threads = 1;
    options.no_write = true;
    let free = explore::explore(&options);
    let first = free.first_failure.expect("the defect is found");
    let unbounded = &free.findings[0];
    assert!(!unbounded.cut_short, "{free}");

    options.clock = explore::Clock::ticking(std::time::Duration::from_secs(1));
    // One reading per case claimed (up to the one after the failure), then the
    // shrink's: about eight attempts.
    let budget = first + 12;
    options.time_budget = Some(std::time::Duration::from_secs(budget));
    let bounded = explore::explore(&options);
    assert_eq!(bounded.first_failure, Some(first), "{bounded}");
    let finding = &bounded.findings[0];
    assert!(finding.cut_short, "{bounded}");
    assert!(finding.shrink_runs <= 2 * 10 + 1, "{bounded}");
    assert!(
        unbounded.shrink_runs > finding.shrink_runs + 10,
        "the unbounded shrink needed only {} runs: {free}",
        unbounded.shrink_runs
    );
    assert!(
        bounded
            .stopped
            .as_deref()
            .is_some_and(|s| s.contains("while shrinking")),
        "{bounded}"
    );
}

/// A long schedule that fails (a seeded defect makes the failure certain)
/// shrinks to a handful of steps in a bounded number of runs.
#[test]
fn a_long_failing_schedule_shrinks_to_a_handful_of_steps() {
    let target = target(Some("ignore-rename-error"));
    let run = RunOptions::default();
    let rt = explore::runtime();
    // The first long schedule of seed 1 that the defect makes fail.
    let (actions, outcome) = (0..200)
        .map(|i| explore::schedule(1, i, 3000))
        .filter(|a| a.len() >= 1000)
        .find_map(|a| {
            let o = explore::run_on(&rt, &explore::to_scenario(&a, &target, "long"), &run);
            o.fails_with(Kind::Invariant(Invariant::NoLoss))
                .then_some((a, o))
        })
        .expect("a long failing schedule");
    let kind = Kind::Invariant(Invariant::NoLoss);
    let seen = outcome
        .violations
        .iter()
        .find(|v| v.invariant == Invariant::NoLoss)
        .and_then(|v| v.step);
    let before = actions.len();
    let shrunk = explore::shrink(
        &rt,
        actions,
        &target,
        &run,
        kind,
        seen,
        &explore::ShrinkLimits::default(),
        &explore::Clock::real(),
        |_, _| {},
    );
    assert!(!shrunk.cut_short, "{} runs", shrunk.runs);
    assert!(shrunk.outcome.fails_with(kind));
    assert!(
        shrunk.actions.len() <= 10,
        "{before} steps shrunk to {}: {:?}",
        shrunk.actions.len(),
        shrunk.actions
    );
}

/// Tree faults at each operation: a crash right after the move into IN catches
/// `skip-fsync`, which no errno can (the data is lost only at a crash); and the
/// reproducer arms its fault on that very operation.
#[test]
fn enumerate_over_tree_faults_catches_skip_fsync_with_a_crash() {
    let path = scenarios_dir().join("smtp/happy-path.yaml");
    let mut options = enumerate::Options::new(path);
    options.profile = Some("hardened".into());
    options.mutant = Some("skip-fsync".into());
    options.errnos.clear();
    let dir = tempfile::tempdir().unwrap();
    options.out_dir = Some(dir.path().to_path_buf());
    let report = enumerate::enumerate(&options).unwrap();
    let in_root = report
        .ops
        .iter()
        .filter(|o| !o.path.starts_with("<sandbox>") && !o.path.starts_with('/'))
        .count();
    assert_eq!(
        report.results.len(),
        in_root * enumerate::TreeFault::ALL.len()
    );
    let rep = report
        .reproducers
        .iter()
        .find(|r| {
            r.kind == Kind::Invariant(Invariant::NoLoss)
                && r.injection.as_ref().is_some_and(|i| {
                    i.what == enumerate::What::Tree(enumerate::TreeFault::CrashAfter)
                })
        })
        .unwrap_or_else(|| panic!("skip-fsync not caught: {report}"));
    assert_eq!(rep.rechecked, Some(explore::RECHECK_RUNS), "{report}");
    let written = scenario::load(rep.path.as_ref().unwrap()).unwrap();
    let first = &written.steps[0];
    assert!(first.service.is_some(), "the crash comes first");
    assert!(first.when.as_ref().unwrap().after_op.is_some());
    // The table has a column per fault.
    let text = report.to_string();
    for f in enumerate::TreeFault::ALL {
        assert!(text.contains(f.name()), "{text}");
    }
}

/// Schedules draw faults and crashes timed by an operation, which become
/// `when: { before_op | after_op }` steps that load back.
#[test]
fn schedules_draw_operation_timed_faults() {
    let timed: Vec<explore::Action> = (0..50)
        .flat_map(|i| explore::schedule(1, i, 30))
        .filter(|a| matches!(a, explore::Action::Timed(..)))
        .collect();
    assert!(
        timed
            .iter()
            .any(|a| matches!(a, explore::Action::Timed(explore::TimedFault::Crash, _))),
        "{timed:?}"
    );
    assert!(timed.iter().any(|a| matches!(
        a,
        explore::Action::Timed(explore::TimedFault::Rename(explore::Dir::In), _)
    )));
    let steps = explore::to_steps(&timed);
    assert!(
        steps
            .iter()
            .all(|s| s.when.as_ref().is_some_and(|w| w.op_stage().is_some()))
    );
    let scenario = explore::to_scenario(&timed, &target(None), "timed");
    let text = explore::reproducer(scenario, Kind::RunError, "").unwrap();
    assert!(
        text.contains("before_op") || text.contains("after_op"),
        "{text}"
    );
}
