//! Armed faults fire right before the nth matching operation.

use std::io::Write;
use std::path::PathBuf;

use imc::fs::{Fs, OpKind};
use sandbox::{Errno, ErrnoRule, Fault, OpTrigger, Outcome, Sandbox, SandboxConfig, SandboxError};

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
        process: None,
    }
}

#[test]
fn fires_right_before_the_nth_matching_op() {
    let sb = sandbox();
    let fs = sb.fs();
    // Not counted: made before arming.
    drop(fs.create(&p(&sb, "imcdata/in/0")).unwrap());
    sb.arm(
        trigger(OpKind::Create, "imcdata/in/*", 2),
        Fault::Remove {
            path: "imcdata/in".into(),
        },
    )
    .unwrap();

    drop(fs.create(&p(&sb, "imcdata/in/1")).unwrap());
    // Not matching: other kind, other path.
    fs.metadata(&p(&sb, "imcdata/in/1")).unwrap();
    drop(fs.create(&p(&sb, "other")).unwrap());
    assert!(p(&sb, "imcdata/in").exists());
    assert!(sb.take_fired().is_empty());

    // The 2nd matching create sees the directory already gone.
    let err = fs.create(&p(&sb, "imcdata/in/2")).err().unwrap();
    assert_eq!(err.raw_os_error(), Some(Errno::Enoent.raw()));
    assert!(!p(&sb, "imcdata/in").exists());
    assert_eq!(sb.take_fired(), ["removed directory imcdata/in"]);
    assert!(sb.take_fired().is_empty());
    assert_eq!(
        sb.ops().last().unwrap().to_string(),
        "create imcdata/in/2: ENOENT"
    );

    // Fired once only.
    std::fs::create_dir(p(&sb, "imcdata/in")).unwrap();
    drop(fs.create(&p(&sb, "imcdata/in/3")).unwrap());
    drop(fs.create(&p(&sb, "imcdata/in/4")).unwrap());
    assert!(p(&sb, "imcdata/in/4").exists());
    assert!(sb.take_fired().is_empty());
}

#[test]
fn the_op_sees_an_errno_rule_installed_by_the_trigger() {
    let sb = sandbox();
    let fs = sb.fs();
    sb.arm(
        trigger(OpKind::Rename, "**", 1),
        Fault::Errno(ErrnoRule {
            op: OpKind::Rename,
            path: "**".into(),
            nth: 1,
            errno: Errno::Eio,
            persistent: false,
            process: None,
        }),
    )
    .unwrap();
    std::fs::write(p(&sb, "a"), "a").unwrap();
    let err = fs.rename(&p(&sb, "a"), &p(&sb, "b")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(Errno::Eio.raw()));
    assert_eq!(
        sb.take_fired(),
        ["installed errno rule: the 1st rename matching `**` fails with EIO"]
    );
    fs.rename(&p(&sb, "a"), &p(&sb, "b")).unwrap();
}

#[test]
fn a_write_sees_the_disk_filled_right_before_it() {
    let sb = sandbox();
    let mut f = sb.fs().create(&p(&sb, "imcdata/in/1")).unwrap();
    f.write_all(b"first").unwrap();
    sb.arm(
        trigger(OpKind::Write, "imcdata/in/1", 2),
        Fault::FillDisk { leave: 0 },
    )
    .unwrap();
    f.write_all(b"second").unwrap();
    assert!(sb.take_fired().is_empty());
    // The disk is filled right before this write, but the file's block still
    // has room for the rest of it.
    assert_eq!(f.write(&[b'x'; 5000]).unwrap(), 4096 - 11);
    assert_eq!(sb.available_space(), 0);
    assert_eq!(
        std::fs::metadata(p(&sb, "imcdata/in/1")).unwrap().len(),
        4096
    );
    assert_eq!(sb.take_fired().len(), 1);
    assert_eq!(
        sb.ops().last().unwrap().outcome,
        Outcome::ShortWrite {
            written: 4096 - 11,
            requested: 5000
        }
    );
    assert_eq!(
        f.write(b"y").unwrap_err().raw_os_error(),
        Some(Errno::Enospc.raw())
    );
}

#[test]
fn several_triggers_on_one_op_fire_in_arming_order() {
    let sb = sandbox();
    let rename = Fault::Rename {
        from: "imcdata/in".into(),
        to: "imcdata/in.old".into(),
    };
    let restore = Fault::Restore {
        path: "imcdata/in".into(),
    };
    sb.arm(trigger(OpKind::ReadDir, ".", 1), rename).unwrap();
    sb.arm(trigger(OpKind::ReadDir, "*", 1), restore).unwrap();
    sb.fs().read_dir(sb.root()).unwrap();
    assert_eq!(
        sb.take_fired(),
        [
            "renamed directory imcdata/in -> imcdata/in.old",
            "restored imcdata/in from imcdata/in.old: moved the directory back"
        ]
    );
    assert!(p(&sb, "imcdata/in").is_dir());
}

#[test]
fn a_fault_that_cannot_be_applied_is_reported_and_the_op_proceeds() {
    let sb = sandbox();
    sb.arm(
        trigger(OpKind::CreateDir, "**", 1),
        Fault::Remove {
            path: "missing".into(),
        },
    )
    .unwrap();
    sb.fs().create_dir(&p(&sb, "d")).unwrap();
    let fired = sb.take_fired();
    assert_eq!(fired.len(), 1);
    assert!(
        fired[0].starts_with("could not apply `remove missing`: "),
        "{fired:?}"
    );
    assert!(p(&sb, "d").is_dir());
}

#[test]
fn malformed_triggers_and_faults_are_refused_when_armed() {
    let sb = sandbox();
    let fault = || Fault::FreeDisk;
    let zero = sb.arm(trigger(OpKind::Create, "**", 0), fault());
    assert!(
        matches!(zero, Err(SandboxError::InvalidRule { .. })),
        "{zero:?}"
    );
    let glob = sb.arm(trigger(OpKind::Create, "{a", 1), fault());
    assert!(
        matches!(glob, Err(SandboxError::InvalidRule { .. })),
        "{glob:?}"
    );
    let path = sb.arm(
        trigger(OpKind::Create, "**", 1),
        Fault::Remove {
            path: "../x".into(),
        },
    );
    assert!(
        matches!(path, Err(SandboxError::InvalidPath { .. })),
        "{path:?}"
    );
    let rule = sb.arm(
        trigger(OpKind::Create, "**", 1),
        Fault::Errno(ErrnoRule {
            op: OpKind::Create,
            path: "**".into(),
            nth: 0,
            errno: Errno::Eio,
            persistent: false,
            process: None,
        }),
    );
    assert!(
        matches!(rule, Err(SandboxError::InvalidRule { .. })),
        "{rule:?}"
    );
    drop(sb.fs().create(&p(&sb, "a")).unwrap());
    assert!(sb.take_fired().is_empty());
}

/// Triggers fire on the connector's threads; several at once must neither
/// deadlock (applying a fault takes the state lock itself) nor fire twice.
#[test]
fn triggers_fire_once_under_concurrency() {
    let sb = std::sync::Arc::new(sandbox());
    let never = Fault::Errno(ErrnoRule {
        op: OpKind::Create,
        path: "never".into(),
        nth: 1,
        errno: Errno::Eio,
        persistent: false,
        process: None,
    });
    sb.arm(trigger(OpKind::Metadata, "**", 30), never).unwrap();
    sb.arm(trigger(OpKind::Metadata, "**", 50), Fault::ClearErrno)
        .unwrap();
    sb.arm(
        trigger(OpKind::Metadata, "**", 70),
        Fault::FillDisk { leave: 0 },
    )
    .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let sb = std::sync::Arc::clone(&sb);
            std::thread::spawn(move || {
                for _ in 0..25 {
                    sb.fs().metadata(sb.root()).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut fired = sb.take_fired();
    fired.sort();
    assert_eq!(fired.len(), 3, "{fired:?}");
    assert!(fired[0].starts_with("cleared "), "{fired:?}");
    assert!(fired[1].starts_with("filled disk"), "{fired:?}");
    assert!(fired[2].starts_with("installed errno rule"), "{fired:?}");
    assert_eq!(sb.op_count(), 100);
    assert_eq!(sb.available_space(), 0);
}

/// Faults applied at the same moment from several threads (triggers of
/// concurrent sessions) each change the tree and recount the quota; a count
/// taken before another fault's change must never be the one that is kept.
/// Bounded: 200 rounds of a disk fill racing a rename and an errno fault.
#[test]
fn concurrent_faults_keep_the_quota_true() {
    for round in 0..200 {
        // A small volume: the fill is cheap, the race the same.
        let sb = Sandbox::new(SandboxConfig { quota: 1 << 20 }).unwrap();
        std::fs::create_dir_all(p(&sb, "imcdata/in")).unwrap();
        let sb = std::sync::Arc::new(sb);
        std::fs::create_dir(p(&sb, "spare")).unwrap();
        // Enough files that a recount's walk overlaps another fault's change.
        for i in 0..40 {
            std::fs::write(p(&sb, &format!("imcdata/in/{i}")), "x").unwrap();
        }
        let faults = [
            Fault::FillDisk { leave: 0 },
            Fault::Rename {
                from: "spare".into(),
                to: "spare.old".into(),
            },
            Fault::ClearErrno,
            Fault::ClearErrno,
        ];
        let start = std::sync::Arc::new(std::sync::Barrier::new(faults.len()));
        let threads: Vec<_> = faults
            .into_iter()
            .map(|fault| {
                let (sb, start) = (std::sync::Arc::clone(&sb), std::sync::Arc::clone(&start));
                std::thread::spawn(move || {
                    start.wait();
                    sb.apply(&fault).unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(sb.available_space(), 0, "round {round}");
    }
}

/// A trigger for a named process counts only that process's operations; the
/// in-process connector has no name, so on vfs it never fires.
#[test]
fn a_trigger_for_a_process_leaves_the_in_process_connector_alone() {
    let sb = sandbox();
    let fs = sb.fs();
    let only_cat = OpTrigger {
        process: Some("cat".into()),
        ..trigger(OpKind::Create, "**", 1)
    };
    assert_eq!(
        only_cat.to_string(),
        "before the 1st create matching `**` (process `cat` only)"
    );
    sb.arm(
        only_cat,
        Fault::Remove {
            path: "imcdata/in".into(),
        },
    )
    .unwrap();
    drop(fs.create(&p(&sb, "imcdata/in/1")).unwrap());
    assert!(sb.take_fired().is_empty());
    assert!(p(&sb, "imcdata/in/1").exists());
    // Still armed, still waiting for `cat`.
    assert_eq!(sb.disarm().len(), 1);
}
