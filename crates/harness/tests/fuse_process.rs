//! `process:` end to end on the fuse backend: the runner hands the name to
//! the sandbox's rules and triggers, which match it against the process the
//! FUSE daemon sees. The in-process connector's calls come from this very
//! process, so a rule naming this process's name (its `/proc/self/comm`)
//! strikes the connector and one naming another process does not.
//!
//! Runs under libtest-mimic (`harness = false`): the private mount namespace
//! must be entered while the process is single-threaded. Where FUSE is
//! unavailable the tests are reported as ignored, with the reason.

use harness::runner::{self, RunOptions};
use harness::scenario::{self, Scenario};
use std::path::Path;

fn main() {
    let usable = sandbox::enter_private_mount_namespace().and_then(|()| sandbox::fuse_available());
    let args = libtest_mimic::Arguments::from_args();
    let tests: &[(&str, fn())] = &[
        (
            "an_errno_rule_strikes_the_named_process_only",
            an_errno_rule_strikes_the_named_process_only,
        ),
        (
            "a_timed_fault_fires_on_the_named_process_only",
            a_timed_fault_fires_on_the_named_process_only,
        ),
    ];
    let trials = tests
        .iter()
        .map(|&(name, test)| {
            let usable = usable.clone();
            libtest_mimic::Trial::ignorable_test(name, move || match usable {
                Err(reason) => Ok(libtest_mimic::Completion::ignored_with(reason)),
                Ok(()) => {
                    test();
                    Ok(libtest_mimic::Completion::Completed)
                }
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

/// This process's name, as the FUSE daemon reads it for the connector's calls.
fn me() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .unwrap()
        .trim_end()
        .to_owned()
}

fn parse(source: &str) -> Scenario {
    scenario::parse(source, Path::new("scenarios/x.yaml")).unwrap_or_else(|e| panic!("{e}"))
}

fn run(source: &str) -> runner::Run {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(runner::run(&parse(source), &RunOptions::default()))
        .unwrap()
}

/// A message through one session, after `fault` (a step or two).
fn scenario(fault: &str) -> String {
    format!(
        "claims: [KB-3]\nprofile: hardened\nsandbox: {{ backend: fuse }}\nsteps:\n\
         \x20 - service: start\n\
         {fault}\
         \x20 - connect: a\n\
         \x20 - command: EHLO client.test\n\
         \x20 - command: 'MAIL FROM:<alice@example.org>'\n\
         \x20 - command: 'RCPT TO:<bob@example.net>'\n\
         \x20 - command: DATA\n\
         \x20 - message: \"Subject: t\\n\\nHello.\\n\"\n"
    )
}

fn queued(run: &runner::Run) -> bool {
    run.history
        .lines()
        .iter()
        .any(|l| l.contains("250 2.0.0 OK queued"))
}

fn an_errno_rule_strikes_the_named_process_only() {
    let errno = |process: &str| {
        scenario(&format!(
            "  - fault:\n      errno: {{ op: sync, path: 'imcdata/work/*', errno: EIO, persistent: true, process: '{process}' }}\n"
        ))
    };
    let other = run(&errno("cleanup"));
    let text = other.history.to_string();
    assert!(queued(&other), "another process's rule: {text}");
    assert!(
        text.contains("(process `cleanup` only)"),
        "the history names the process: {text}"
    );
    let mine = run(&errno(&me()));
    let text = mine.history.to_string();
    assert!(
        !queued(&mine),
        "this process's rule failed the sync: {text}"
    );
    let failed: Vec<_> = mine
        .ops
        .iter()
        .filter(|r| matches!(r.outcome, sandbox::Outcome::Injected(_)))
        .collect();
    assert!(!failed.is_empty());
    for r in failed {
        let caller = r.caller.as_ref().expect("the daemon names the caller");
        assert_eq!(
            (caller.pid, caller.process.as_str()),
            (std::process::id(), me().as_str()),
            "{r}"
        );
    }
}

fn a_timed_fault_fires_on_the_named_process_only() {
    let timed = |process: &str| {
        scenario(&format!(
            "  - fault: {{ remove: imcdata/in }}\n    when: {{ before_op: {{ op: lookup, path: 'imcdata/in/*', process: '{process}' }} }}\n"
        ))
    };
    let mine = run(&timed(&me()));
    let text = mine.history.to_string();
    let wanted = format!(" (#1 by process {})", me());
    assert!(
        text.lines().any(
            |l| l.contains("removed directory imcdata/in before lookup imcdata/in/")
                && l.ends_with(&wanted)
        ),
        "fired where and for whom: {text}"
    );
    assert!(mine.mismatches.is_empty(), "{:?}", mine.mismatches);
    let other = run(&timed("cleanup"));
    assert_eq!(other.mismatches.len(), 1, "{:?}", other.mismatches);
    let m = &other.mismatches[0];
    assert!(m.message.contains("never fired"), "{m}");
    assert!(m.action.ends_with("by process cleanup"), "{m}");
    assert!(queued(&other), "{}", other.history);
}
