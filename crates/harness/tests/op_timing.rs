//! Faults and crashes timed by the connector's filesystem operations
//! (`when: { before_op | after_op }`): how they load, where they fire, what the
//! history says, and what a crash between two operations leaves.

use harness::invariants::Invariant;
use harness::runner::{self, RunOptions};
use harness::scenario::{self, Scenario, ScenarioError};
use std::path::Path;

fn parse(source: &str) -> Result<Scenario, ScenarioError> {
    scenario::parse(source, Path::new("scenarios/x.yaml"))
}

/// The header, then the steps (which start on line 4).
fn with_steps(steps: &str) -> String {
    format!("claims: [KB-3]\nprofile: hardened\nsteps:\n{steps}")
}

/// Asserts an error whose message contains `needle`, located on line `line` at
/// the first `token` of that line.
#[track_caller]
fn invalid_on(source: &str, line: usize, token: &str, needle: &str) {
    let text = source.lines().nth(line - 1).expect("the line exists");
    let column = text.find(token).expect("the token is on the line") + 1;
    invalid_at(source, line, column, needle)
}

#[track_caller]
fn invalid_at(source: &str, line: usize, column: usize, needle: &str) {
    let e = match parse(source) {
        Ok(s) => panic!("expected an error, parsed {s:#?}\n--- source:\n{source}"),
        Err(e) => e,
    };
    assert!(
        e.message().contains(needle),
        "message {:?} lacks {needle:?}\n{e}",
        e.message()
    );
    assert_eq!(
        (e.line(), e.column()),
        (Some(line), Some(column)),
        "wrong location for {needle:?}:\n{e}"
    );
}

#[test]
fn operation_stages_load_and_bad_ones_are_located() {
    let s = parse(&with_steps(
        "  - fault: { remove: imcdata/in }\n    when: { before_op: { op: sync_dir, path: imcdata/in, nth: 2 } }\n  - service: crash\n    when: { after_op: { op: rename } }\n",
    ))
    .unwrap();
    let (m, after) = s.steps[0].when.as_ref().unwrap().op_stage().unwrap();
    assert_eq!(
        (m.op.as_str(), m.path.as_deref(), m.nth, after),
        ("sync_dir", Some("imcdata/in"), Some(2), false)
    );
    let (m, after) = s.steps[1].when.as_ref().unwrap().op_stage().unwrap();
    assert_eq!(
        (m.op.as_str(), m.path.as_deref(), m.nth, after),
        ("rename", None, None, true)
    );

    let fault = "  - fault: free_disk\n";
    invalid_on(
        &with_steps(&format!(
            "{fault}    when: {{ before_op: {{ op: fsync }} }}\n"
        )),
        5,
        "fsync",
        "unknown operation `fsync`",
    );
    invalid_on(
        &with_steps(&format!(
            "{fault}    when: {{ after_op: {{ op: sync, path: 'a[' }} }}\n"
        )),
        5,
        "'a['",
        "`a[` is not a valid glob",
    );
    invalid_on(
        &with_steps(&format!(
            "{fault}    when: {{ after_op: {{ op: sync, nth: 0 }} }}\n"
        )),
        5,
        "0 }",
        "`nth` counts from 1",
    );
    invalid_on(
        &with_steps(&format!(
            "{fault}    when: {{ after_op: {{ op: sync, path: /etc }} }}\n"
        )),
        5,
        "/etc",
        "is absolute",
    );
    invalid_on(
        &with_steps(&format!(
            "  - connect: a\n{fault}    when: {{ session: a, before_op: {{ op: sync }} }}\n"
        )),
        6,
        "session",
        "`session` does not go with `before_op`",
    );
    invalid_on(
        &with_steps(&format!(
            "{fault}    when: {{ before_op: {{ op: sync }}, after_op: {{ op: sync }} }}\n"
        )),
        5,
        "after_op",
        "found `before_op`, `after_op`",
    );
    invalid_on(
        &with_steps("  - service: crash\n    when: { before_dot: true }\n"),
        5,
        "before_dot",
        "a `service: crash` is timed by an operation only",
    );
    invalid_on(
        &with_steps("  - service: stop\n    when: { before_op: { op: sync } }\n"),
        5,
        "when",
        "`when` is only allowed on `fault` steps and `service: crash`",
    );
}

fn run(source: &str) -> runner::Run {
    let s = parse(source).unwrap_or_else(|e| panic!("{e}"));
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(runner::run(&s, &RunOptions::default()))
        .unwrap()
}

const UP_TO_DATA: &str = "  - service: start\n  - connect: a\n  - command: EHLO client.test\n  - command: 'MAIL FROM:<alice@example.org>'\n  - command: 'RCPT TO:<bob@example.net>'\n";

const MESSAGE: &str = "  - command: DATA\n  - message: \"Subject: t\\n\\nHello.\\n\"\n";

/// The rename lands between the move into IN and the fsync of IN, as the history
/// says; the connector flushes IN through the handle it moved the message
/// through, so the message is durable in the renamed IN and acknowledged.
#[test]
fn a_rename_before_the_fsync_of_in_fires_there_and_is_recorded() {
    let run = run(&with_steps(&format!(
        "{UP_TO_DATA}  - fault: {{ rename: {{ from: imcdata/in, to: imcdata/in.bak }} }}\n    when: {{ before_op: {{ op: sync_dir, path: imcdata/in }} }}\n{MESSAGE}"
    )));
    let lines = run.history.lines();
    let fired = lines
        .iter()
        .position(|l| {
            l.contains("fault: renamed directory imcdata/in -> imcdata/in.bak before sync_dir imcdata/in (#1)")
        })
        .unwrap_or_else(|| panic!("{}", lines.join("\n")));
    let dot = lines.iter().position(|l| l.ends_with("a > .")).unwrap();
    let reply = lines
        .iter()
        .rposition(|l| l.contains("a < 250 2.0.0"))
        .unwrap();
    assert!(dot < fired && fired < reply, "{}", lines.join("\n"));
    // The rename happened at that operation, and the flush reached IN where it went.
    let sync = run
        .ops
        .iter()
        .find(|o| o.op == imc::fs::OpKind::SyncDir && o.path == "imcdata/in")
        .unwrap();
    assert!(sync.to_string().ends_with(": ok"), "{sync}");
    assert!(run.mismatches.is_empty(), "{:?}", run.mismatches);
}

/// A crash between the move into IN and the fsync of IN: the connector never
/// answers, its move was not durable and is dropped; nothing is a violation.
#[test]
fn a_crash_before_the_fsync_of_in_stops_the_connector_there() {
    let run = run(&with_steps(&format!(
        "{UP_TO_DATA}  - service: crash\n    when: {{ before_op: {{ op: sync_dir, path: imcdata/in }} }}\n{MESSAGE}  - service: start\n"
    )));
    let text = run.history.lines().join("\n");
    let fired = text
        .find("fault: crash before sync_dir imcdata/in (#1)")
        .expect(&text);
    let crashed = text.find("service: crashed").expect(&text);
    let lost = text
        .find("crash lost: dropped file imcdata/in/00000001")
        .expect(&text);
    assert!(fired < crashed && crashed < lost, "{text}");
    assert!(
        !text.contains("a < 250 2.0.0"),
        "no reply after the crash point:\n{text}"
    );
    assert!(run.violations.is_empty(), "{:?}", run.violations);
    assert!(run.mismatches.is_empty(), "{:?}", run.mismatches);
    // The sync_dir that the crash stopped never reached the disk, nor returned.
    let sync = run
        .ops
        .iter()
        .find(|o| o.op == imc::fs::OpKind::SyncDir && o.path == "imcdata/in")
        .unwrap();
    assert_eq!(sync.outcome, sandbox::Outcome::Pending, "{:?}", run.ops);
}

/// A crash once the fsync of IN is done: the message is durable and survives,
/// whether or not its 250 got out.
#[test]
fn a_crash_after_the_fsync_of_in_keeps_the_message() {
    let run = run(&with_steps(&format!(
        "{UP_TO_DATA}  - service: crash\n    when: {{ after_op: {{ op: sync_dir, path: imcdata/in }} }}\n{MESSAGE}  - service: start\n"
    )));
    let text = run.history.lines().join("\n");
    assert!(
        text.contains("fault: crash after sync_dir imcdata/in (#1)"),
        "{text}"
    );
    assert!(!text.contains("crash lost"), "{text}");
    assert!(run.violations.is_empty(), "{:?}", run.violations);
    let in_files = run
        .history
        .listing
        .iter()
        .find(|l| l.dir == "imcdata/in")
        .unwrap();
    assert_eq!(in_files.files.as_ref().map(Vec::len), Some(1), "{text}");
}

/// A trigger that never fires fails the scenario at the step that armed it.
#[test]
fn a_fault_armed_on_an_operation_that_never_comes_fails_the_scenario() {
    let run = run(&with_steps(
        "  - service: start\n  - fault: free_disk\n    when: { before_op: { op: rename, path: imcdata/nowhere/* } }\n",
    ));
    assert_eq!(run.mismatches.len(), 1, "{:?}", run.mismatches);
    let m = &run.mismatches[0];
    assert_eq!(m.step, 2);
    assert!(m.message.contains("armed at step 2, never fired"), "{m}");
}

/// The same scenario gives the same history, crash and all.
#[test]
fn operation_timed_runs_are_deterministic() {
    let source = with_steps(&format!(
        "{UP_TO_DATA}  - fault: {{ remove: imcdata/in }}\n    when: {{ after_op: {{ op: rename, path: imcdata/in/* }} }}\n{MESSAGE}  - service: crash\n    when: {{ before_op: {{ op: create_dir }} }}\n  - service: start\n"
    ));
    let a = run(&source).history.to_string();
    for _ in 0..3 {
        assert_eq!(run(&source).history.to_string(), a);
    }
    // The message removed with IN by the fault is the scenario's deletion.
    let r = run(&source);
    assert!(
        !r.violations
            .iter()
            .any(|v| v.invariant == Invariant::NoLoss),
        "{:?}\n{a}",
        r.violations
    );
}

/// IN replaced by a plain file, then that file removed by a timed fault: the
/// recovery undoes both (found by explore: it used to undo the removal only and
/// leave a file where IN must be, a false `recovery` violation).
#[test]
fn the_recovery_undoes_a_timed_removal_of_a_placeholder_and_the_replace() {
    let run = run(&with_steps(
        "  - service: start\n  - connect: a\n  - command: EHLO client.test\n  - fault: { remove: imcdata/in }\n    when: { before_op: { op: create } }\n  - command: 'MAIL FROM:<alice@example.org>'\n  - fault: { replace: imcdata/in }\n  - command: 'RCPT TO:<bob@example.net>'\n  - command: DATA\n",
    ));
    assert!(run.violations.is_empty(), "{:?}", run.violations);
    let text = run.history.to_string();
    assert!(
        text.contains("removed file imcdata/in before create"),
        "{text}"
    );
}

/// The other way round: IN replaced at an operation, its placeholder removed
/// at a step; the recovery again undoes both.
#[test]
fn the_recovery_undoes_a_removal_of_a_placeholder_after_a_timed_replace() {
    let run = run(&with_steps(&format!(
        "  - service: start\n  - fault: {{ replace: imcdata/in }}\n    when: {{ before_op: {{ op: write }} }}\n  - connect: a\n  - command: EHLO client.test\n  - command: 'MAIL FROM:<alice@example.org>'\n  - command: 'RCPT TO:<bob@example.net>'\n{MESSAGE}  - fault: {{ remove: imcdata/in }}\n"
    )));
    assert!(run.violations.is_empty(), "{:?}", run.violations);
}

/// IN replaced at an operation, the placeholder renamed away and restored at
/// steps: the restore undoes the rename only, and the recovery the replace.
#[test]
fn a_restore_undoes_the_last_displacement_only() {
    let run = run(&with_steps(&format!(
        "  - fault: {{ replace: imcdata/in }}\n    when: {{ after_op: {{ op: rename }} }}\n{UP_TO_DATA}{MESSAGE}  - fault: {{ rename: {{ from: imcdata/in, to: imcdata/in.bak }} }}\n  - fault: {{ restore: imcdata/in }}\n"
    )));
    assert!(run.violations.is_empty(), "{:?}", run.violations);
}

/// `process` and the kinds only a FUSE mount has load on backend `fuse`; on
/// `vfs` (the default) and `tmpfs` they are located errors, since there every
/// operation is the in-process connector's own call.
#[test]
fn process_and_mount_only_operations_need_backend_fuse() {
    let on = |backend: &str, steps: &str| {
        format!(
            "claims: [KB-3]\nprofile: hardened\nsandbox: {{ backend: {backend} }}\nsteps:\n{steps}"
        )
    };
    let timed = "  - fault: free_disk\n    when: { before_op: { op: lookup, path: imcdata/in, nth: 2, process: cleanup } }\n";
    let errno = "  - fault:\n      errno: { op: write, errno: EIO, nth: 2, process: cat }\n";
    let s = parse(&on("fuse", &format!("{timed}{errno}"))).unwrap_or_else(|e| panic!("{e}"));
    let (m, _) = s.steps[0].when.as_ref().unwrap().op_stage().unwrap();
    assert_eq!(
        (m.op.as_str(), m.process.as_deref()),
        ("lookup", Some("cleanup"))
    );
    let Some(scenario::Fault::Errno(spec)) = &s.steps[1].fault else {
        panic!("an errno fault");
    };
    assert_eq!(spec.process.as_deref(), Some("cat"));
    assert_eq!(
        runner::describe(&s.steps[0]),
        "fault free disk before lookup #2 matching imcdata/in by process cleanup"
    );

    for backend in ["vfs", "tmpfs"] {
        let vfs_timed =
            "  - fault: free_disk\n    when: { before_op: { op: create, process: cleanup } }\n";
        invalid_on(
            &on(backend, vfs_timed),
            6,
            "process",
            &format!("`process` needs backend `fuse`; on `{backend}` every operation"),
        );
        invalid_on(
            &on(backend, errno),
            6,
            "process",
            "`process` needs backend `fuse`",
        );
        invalid_on(
            &on(
                backend,
                "  - service: crash\n    when: { after_op: { op: flush } }\n",
            ),
            6,
            "flush",
            "`flush` is made only by a process on a FUSE mount",
        );
    }
    // Without `sandbox:` the backend is vfs.
    invalid_on(
        &with_steps("  - fault:\n      errno: { op: read_link, errno: EIO }\n"),
        5,
        "read_link",
        "`read_link` is made only by a process on a FUSE mount, and backend `vfs` has none",
    );
    invalid_on(
        &on(
            "fuse",
            "  - fault: free_disk\n    when: { after_op: { op: read, process: '' } }\n",
        ),
        6,
        "''",
        "`process` is empty",
    );
    invalid_on(
        &on(
            "fuse",
            "  - fault: free_disk\n    when: { after_op: { op: read, process: /usr/bin/cat } }\n",
        ),
        6,
        "/usr",
        "cannot be a process name",
    );
    let long =
        "  - fault:\n      errno: { op: write, errno: EIO, process: postfix-cleanup-daemon }\n";
    let e = parse(&on("fuse", long)).unwrap_err();
    assert!(
        e.to_string().contains("`process: postfix-cleanup`"),
        "the name as the kernel keeps it:\n{e}"
    );
    invalid_on(
        &on("fuse", long),
        6,
        "postfix",
        "22 bytes long, and the kernel keeps only the first 15",
    );
}

/// A scenario of backend `fuse` naming a process, run on vfs instead
/// (`--backend vfs`), is skipped with the reason: its rules would never strike.
#[test]
fn a_process_rule_on_another_backend_is_skipped() {
    let s = parse(
        "claims: [KB-3]\nprofile: hardened\nsandbox: { backend: fuse }\nsteps:\n  - fault:\n      errno: { op: create, errno: EIO, process: cleanup }\n",
    )
    .unwrap();
    let options = RunOptions {
        backend: Some(scenario::Backend::Vfs),
        ..RunOptions::default()
    };
    let why = harness::suite::skip_reason(&s, &options).expect("skipped");
    assert_eq!(
        why,
        "names the process `cleanup`, which only backend `fuse` tells apart \
         (on `vfs` every operation is the in-process connector's)"
    );
    let s = parse(
        "claims: [KB-3]\nprofile: hardened\nsandbox: { backend: fuse }\nsteps:\n  - fault: free_disk\n    when: { before_op: { op: lookup } }\n",
    )
    .unwrap();
    let why = harness::suite::skip_reason(&s, &options).expect("skipped");
    assert!(why.starts_with("counts `lookup` operations"), "{why}");
}

/// After a crash, a `check_disk` (or any call) before the next start is the
/// next process's: the crashed connector's disk handle parks for good, so a
/// check made through it would wait for ever (explore met this in a
/// 900-step schedule).
#[test]
fn a_disk_check_after_a_crash_is_made_by_the_next_process() {
    let run = run(&with_steps(
        "  - service: start\n  - service: crash\n  - service: check_disk\n  - service: start\n",
    ));
    let lines = run.history.lines();
    assert!(lines.iter().any(|l| l.contains("check_disk")), "{lines:#?}");
    assert!(run.violations.is_empty(), "{:?}", run.violations);
    assert!(run.mismatches.is_empty(), "{:?}", run.mismatches);
}
