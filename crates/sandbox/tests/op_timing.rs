//! Triggers that strike after their operation, and halts: a crash of the
//! connector's process at an exact operation.

use std::path::PathBuf;
use std::sync::mpsc;

use imc::fs::{Fs, OpKind};
use sandbox::{At, Fault, OpTrigger, Outcome, Sandbox, SandboxConfig, Strike};

fn sandbox() -> Sandbox {
    let sb = Sandbox::new(SandboxConfig::default()).unwrap();
    std::fs::create_dir_all(sb.root().join("imcdata/in")).unwrap();
    sb
}

fn p(sb: &Sandbox, rel: &str) -> PathBuf {
    sb.root().join(rel)
}

fn trigger(op: OpKind, path: &str, nth: u32) -> OpTrigger {
    OpTrigger {
        op,
        path: path.into(),
        nth,
    }
}

#[test]
fn an_after_trigger_strikes_once_its_operation_is_done() {
    let sb = sandbox();
    let fs = sb.fs();
    let rename = Fault::Rename {
        from: "imcdata/in".into(),
        to: "imcdata/in.bak".into(),
    };
    let id = sb
        .arm_at(
            trigger(OpKind::CreateDir, "imcdata/x", 1),
            At::After,
            Strike::Fault(rename),
        )
        .unwrap();
    // The operation itself sees the disk unchanged...
    fs.create_dir(&p(&sb, "imcdata/x")).unwrap();
    assert!(p(&sb, "imcdata/in").exists());
    // ...the next one, of any kind, sees the fault.
    assert!(fs.metadata(&p(&sb, "imcdata/in")).is_err());
    assert_eq!(
        sb.take_fired_by_id(),
        [(
            id,
            "renamed directory imcdata/in -> imcdata/in.bak after create_dir imcdata/x (#1)"
                .to_string()
        )]
    );

    // With no operation after it, settling fires it.
    let id = sb
        .arm_at(
            trigger(OpKind::SyncDir, "imcdata/in.bak", 1),
            At::After,
            Strike::Fault(Fault::Remove {
                path: "imcdata/in.bak".into(),
            }),
        )
        .unwrap();
    fs.sync_dir(&p(&sb, "imcdata/in.bak")).unwrap();
    assert!(p(&sb, "imcdata/in.bak").exists());
    sb.settle_triggers();
    assert!(!p(&sb, "imcdata/in.bak").exists());
    assert_eq!(sb.take_fired_by_id()[0].0, id);
    assert!(sb.disarm().is_empty());
}

#[test]
fn unfired_triggers_are_disarmed_and_reported() {
    let sb = sandbox();
    let a = sb
        .arm_at(trigger(OpKind::Rename, "**", 1), At::Before, Strike::Halt)
        .unwrap();
    let b = sb
        .arm_at(trigger(OpKind::Sync, "**", 2), At::After, Strike::Halt)
        .unwrap();
    assert_eq!(sb.disarm(), [a, b]);
    sb.fs().metadata(&p(&sb, "imcdata")).unwrap();
    assert!(!sb.halted());
}

/// A halt stops the very operation it fires on, and every later one of the
/// old process, until the crash model is applied; then a new process uses the
/// disk while the old one's calls stay parked; dropping the sandbox ends them.
#[test]
fn a_halt_parks_the_process_until_the_sandbox_goes() {
    let sb = sandbox();
    let (told, heard) = mpsc::channel();
    sb.on_strike(move |s| {
        if matches!(s, Strike::Halt) {
            told.send(()).unwrap();
        }
    });
    sb.arm_at(
        trigger(OpKind::SyncDir, "imcdata/in", 1),
        At::Before,
        Strike::Halt,
    )
    .unwrap();
    let fs = sb.fs();
    let dir = p(&sb, "imcdata/in");
    let old = std::thread::spawn(move || {
        let first = fs.sync_dir(&dir);
        // What a dead process would do next, were it let go.
        let second = fs.create_dir(&dir.join("late"));
        (first, second)
    });
    heard.recv().unwrap();
    assert!(sb.halted());
    assert_eq!(
        sb.take_fired_by_id()[0].1,
        "crash before sync_dir imcdata/in (#1)"
    );
    // Nothing of the old process reaches the disk (the parked sync_dir stays
    // pending in the log), and the crash model lets a new one in.
    sb.crash();
    assert!(!sb.halted());
    sb.fs().create_dir(&p(&sb, "imcdata/new")).unwrap();
    let sync = sb
        .ops()
        .into_iter()
        .find(|o| o.op == OpKind::SyncDir)
        .unwrap();
    assert_eq!(sync.outcome, Outcome::Pending);
    let root = sb.root().to_path_buf();
    drop(sb);
    let (first, second) = old.join().unwrap();
    assert!(first.is_err() && second.is_err());
    assert!(!root.join("imcdata/in/late").exists());
}

/// A crashed process's call that had not reached the disk when the crash came
/// (a task still queued, so no halt parked it) never reaches it afterwards:
/// it parks for good, is not logged, and counts for no trigger; a handle
/// taken after the crash works. Before, such a call ran on the new disk and
/// could fire a trigger meant for the next process.
#[test]
fn a_crashed_process_call_that_comes_late_never_reaches_the_disk() {
    let sb = sandbox();
    let old = sb.fs();
    sb.crash();
    sb.arm_at(
        trigger(OpKind::CreateDir, "imcdata/**", 1),
        At::Before,
        Strike::Halt,
    )
    .unwrap();
    let late = p(&sb, "imcdata/late");
    let straggler = std::thread::spawn(move || old.create_dir(&late));
    // Wait until the call has either come back or parked.
    while !straggler.is_finished() && sb.parked() == 0 {
        std::thread::yield_now();
    }
    assert!(!straggler.is_finished(), "a dead handle's call returned");
    assert!(!sb.halted(), "a dead handle's call fired a trigger");
    assert!(!p(&sb, "imcdata/late").exists());
    assert!(sb.ops().iter().all(|o| o.op != OpKind::CreateDir));
    // The next process's first create_dir is the one the trigger meant.
    let new = sb.fs();
    let fresh = p(&sb, "imcdata/fresh");
    let next = std::thread::spawn(move || new.create_dir(&fresh));
    while !next.is_finished() && !sb.halted() {
        std::thread::yield_now();
    }
    assert!(sb.halted());
    assert_eq!(
        sb.take_fired_by_id()[0].1,
        "crash before create_dir imcdata/fresh (#1)"
    );
    drop(sb);
    assert!(straggler.join().unwrap().is_err());
    assert!(next.join().unwrap().is_err());
}
