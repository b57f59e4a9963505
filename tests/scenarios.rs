//! One test per scenario file under `scenarios/`, named by its path
//! (`kb-q146791/kb3-in-removed-before-dot`), so `cargo test kb3` runs one and
//! cargo-nextest sees each as its own test. A failing test prints the transcript,
//! the expectations that failed, the invariants violated and the snapshot diff.
//!
//! Backends: each scenario runs on the backend it names (`vfs` by default), or on
//! the one in `IMC_HARNESS_BACKEND` (`vfs`, `tmpfs` or `fuse`). Every KB and hardened
//! scenario that can (see `suite::tmpfs_comparable`) also runs as
//! `tmpfs/<path>` on a real tmpfs and must give the same snapshot as on vfs; where
//! tmpfs cannot be mounted those tests are reported as ignored, with the reason.

//!
//! Every scenario also runs as `fuse/<path>`: the connector on plain files of
//! a FUSE mount, faulted by the daemon, must give the same snapshot as on vfs
//! (ignored with the reason where FUSE is unavailable).
//!
//! Targets: each scenario runs against its own target (`imc` in-process by
//! default), or the one in `IMC_HARNESS_TARGET` (`imc-serve`, on fuse unless
//! `IMC_HARNESS_BACKEND` says otherwise). Every KB, hardened, smtp and mutant
//! scenario also runs as `imc-serve/<path>`: the shipped `imc serve` binary
//! (`targets/imc-serve.yaml`) on fuse must give the in-process snapshot, or its
//! own in `snapshots/imc-serve/` where the history legitimately differs, and
//! the same history byte for byte when run again.
use harness::runner::RunOptions;
use harness::scenario::Backend;
use harness::suite::{self, Snapshots};
use libtest_mimic::{Arguments, Completion, Failed, Trial};
use std::path::Path;

fn main() {
    // Before any thread starts: tmpfs mounts stay private to this process.
    let namespace = sandbox::enter_private_mount_namespace();
    // Sandboxes left by a killed earlier run (their owner's lock is free).
    let _ = sandbox::remove_stale_sandboxes(None);
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scenarios = root.join("scenarios");
    let snapshot_dir = root.join("snapshots");
    let mut options = RunOptions::default();
    match std::env::var("IMC_HARNESS_BACKEND").as_deref() {
        Ok("tmpfs") => options.backend = Some(Backend::Tmpfs),
        Ok("vfs") => options.backend = Some(Backend::Vfs),
        Ok("fuse") => options.backend = Some(Backend::Fuse),
        Ok(other) => {
            panic!("IMC_HARNESS_BACKEND must be `vfs`, `tmpfs` or `fuse`, not `{other}`")
        }
        Err(_) => {}
    }
    let targets = root.join("targets");
    options.targets_dir = Some(targets.clone());
    if let Ok(t) = std::env::var("IMC_HARNESS_TARGET") {
        if t != harness::target::choice::IN_PROCESS {
            options.backend.get_or_insert(Backend::Fuse);
        }
        options.target = Some(t);
    }
    let tmpfs = namespace.clone().and_then(|()| sandbox::tmpfs_available());
    let fuse = namespace.and_then(|()| sandbox::fuse_available());
    let cases = suite::cases(std::slice::from_ref(&scenarios), Some(&scenarios))
        .unwrap_or_else(|e| panic!("cannot list the scenarios: {e}"));
    let mut trials = Vec::new();
    for case in cases {
        assert_eq!(
            case.snapshots, snapshot_dir,
            "snapshots live beside scenarios/"
        );
        let (c, opts, tmpfs_state, fuse_state) =
            (case.clone(), options.clone(), tmpfs.clone(), fuse.clone());
        trials.push(Trial::ignorable_test(case.id.clone(), move || {
            if opts.backend == Some(Backend::Tmpfs)
                && let Err(why) = tmpfs_state
            {
                return Ok(Completion::ignored_with(format!("tmpfs: {why}")));
            }
            if opts.backend == Some(Backend::Fuse)
                && let Err(why) = fuse_state
            {
                return Ok(Completion::ignored_with(format!("fuse: {why}")));
            }
            check(&c, &opts, Snapshots::Insta)
        }));
        let serve = ["kb-q146791/", "hardened/", "smtp/", "mutants/"]
            .iter()
            .any(|p| case.id.starts_with(p));
        if serve {
            let (c, fuse_state, targets) = (case.clone(), fuse.clone(), targets.clone());
            trials.push(Trial::ignorable_test(
                format!("imc-serve/{}", case.id),
                move || {
                    if let Err(why) = fuse_state {
                        return Ok(Completion::ignored_with(why));
                    }
                    let opts = RunOptions {
                        backend: Some(Backend::Fuse),
                        target: Some("imc-serve".into()),
                        targets_dir: Some(targets),
                        ..RunOptions::default()
                    };
                    let done = check(&c, &opts, Snapshots::Compare)?;
                    rerun_identical(&c, &opts)?;
                    Ok(done)
                },
            ));
        }
        let (c, fuse_state) = (case.clone(), fuse.clone());
        trials.push(Trial::ignorable_test(
            format!("fuse/{}", case.id),
            move || {
                if let Err(why) = fuse_state {
                    return Ok(Completion::ignored_with(why));
                }
                let opts = RunOptions {
                    backend: Some(Backend::Fuse),
                    ..RunOptions::default()
                };
                // The same snapshot as on vfs, errnos and crashes included.
                check(&c, &opts, Snapshots::Compare)
            },
        ));
        let conformance = case.id.starts_with("kb-q146791/") || case.id.starts_with("hardened/");
        if !conformance {
            continue;
        }
        let Ok(scenario) = harness::scenario::load(&case.path) else {
            continue; // the main trial reports the error
        };
        if suite::tmpfs_comparable(&scenario).is_err() {
            continue;
        }
        let (c, tmpfs_state) = (case.clone(), tmpfs.clone());
        trials.push(Trial::ignorable_test(
            format!("tmpfs/{}", case.id),
            move || {
                if let Err(why) = tmpfs_state {
                    return Ok(Completion::ignored_with(why));
                }
                let opts = RunOptions {
                    backend: Some(Backend::Tmpfs),
                    ..RunOptions::default()
                };
                // The same snapshot as on vfs, compared without writing anything.
                check(&c, &opts, Snapshots::Compare)
            },
        ));
    }
    libtest_mimic::run(&args, trials).exit();
}

/// Runs the case twice more: the two histories must be the same, byte for byte.
fn rerun_identical(case: &suite::Case, options: &RunOptions) -> Result<(), Failed> {
    let run = || suite::run_case(case, options, &Snapshots::Off);
    let (a, b) = (run(), run());
    if a.skipped.is_some() {
        return Ok(());
    }
    let json = |v: &suite::Verdict| serde_json::to_string(&v.history).unwrap_or_default();
    if a.history.is_none() || json(&a) != json(&b) {
        return Err(Failed::from(format!(
            "{}: two runs gave different histories\n--- first\n{}--- second\n{}",
            case.path.display(),
            a.history.map(|h| h.to_string()).unwrap_or_default(),
            b.history.map(|h| h.to_string()).unwrap_or_default()
        )));
    }
    Ok(())
}

fn check(
    case: &suite::Case,
    options: &RunOptions,
    snapshots: Snapshots,
) -> Result<Completion, Failed> {
    let verdict = suite::run_case(case, options, &snapshots);
    if let Some(why) = &verdict.skipped {
        Ok(Completion::ignored_with(why.clone()))
    } else if verdict.passed() {
        Ok(Completion::Completed)
    } else {
        Err(Failed::from(format!(
            "{}\n{}",
            case.path.display(),
            verdict.report()
        )))
    }
}
