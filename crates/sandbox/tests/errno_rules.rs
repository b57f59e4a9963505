//! Errno rules: which operations they count and which they fail.

use std::io::{self, Write};
use std::path::PathBuf;

use imc::fs::{Fs, OpKind};
use sandbox::{Errno, ErrnoRule, Fault, Outcome, Sandbox, SandboxConfig, SandboxError};

fn sandbox() -> Sandbox {
    let sb = Sandbox::new(SandboxConfig::default()).unwrap();
    for dir in [
        "imcdata",
        "imcdata/in",
        "imcdata/in/sub",
        "imcdata/out",
        "imcdata/work",
    ] {
        std::fs::create_dir(sb.root().join(dir)).unwrap();
    }
    sb
}

fn rule(op: OpKind, path: &str, nth: u32, errno: Errno, persistent: bool) -> Fault {
    Fault::Errno(ErrnoRule {
        op,
        path: path.into(),
        nth,
        errno,
        persistent,
        process: None,
    })
}

fn errno_of<T>(result: io::Result<T>) -> Option<i32> {
    result.err().and_then(|e| e.raw_os_error())
}

/// Creates `rel` and returns the raw errno on failure.
fn create(sb: &Sandbox, rel: &str) -> Option<i32> {
    errno_of(sb.fs().create(&sb.root().join(rel)))
}

fn p(sb: &Sandbox, rel: &str) -> PathBuf {
    sb.root().join(rel)
}

const EIO: Option<i32> = Some(libc::EIO);

#[test]
fn nth_fails_once() {
    let sb = sandbox();
    let d = sb
        .apply(&rule(OpKind::Create, "**", 2, Errno::Eio, false))
        .unwrap();
    assert_eq!(
        d,
        "installed errno rule: the 2nd create matching `**` fails with EIO"
    );
    assert_eq!(create(&sb, "a"), None);
    assert_eq!(create(&sb, "b"), EIO);
    assert_eq!(create(&sb, "c"), None);
    assert_eq!(create(&sb, "d"), None);
    assert!(!p(&sb, "b").exists());
    assert!(p(&sb, "c").exists());
}

#[test]
fn persistent_fails_from_nth_on() {
    let sb = sandbox();
    sb.apply(&rule(OpKind::Create, "**", 2, Errno::Erofs, true))
        .unwrap();
    let results: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|r| create(&sb, r))
        .collect();
    let erofs = Some(libc::EROFS);
    assert_eq!(results, [None, erofs, erofs, erofs]);
}

#[test]
fn counting_starts_when_the_rule_is_installed() {
    let sb = sandbox();
    assert_eq!(create(&sb, "a"), None);
    assert_eq!(create(&sb, "b"), None);
    sb.apply(&rule(OpKind::Create, "**", 1, Errno::Eio, false))
        .unwrap();
    assert_eq!(create(&sb, "c"), EIO);
}

#[test]
fn only_the_rules_op_kind_and_glob_count() {
    let sb = sandbox();
    sb.apply(&rule(OpKind::Create, "imcdata/in/*", 2, Errno::Eio, false))
        .unwrap();
    // Not counted: other kind, other directory, deeper than `*` reaches.
    sb.fs().create_dir(&p(&sb, "imcdata/in/x")).unwrap();
    assert_eq!(create(&sb, "imcdata/out/a"), None);
    assert_eq!(create(&sb, "imcdata/in/sub/a"), None);
    assert_eq!(create(&sb, "imcdata/in/a"), None);
    assert_eq!(create(&sb, "imcdata/out/b"), None);
    assert_eq!(create(&sb, "imcdata/in/b"), EIO);
}

#[test]
fn double_star_crosses_directories() {
    let sb = sandbox();
    sb.apply(&rule(OpKind::Create, "imcdata/**", 1, Errno::Eio, true))
        .unwrap();
    assert_eq!(create(&sb, "top"), None);
    assert_eq!(create(&sb, "imcdata/in/sub/a"), EIO);
    assert_eq!(create(&sb, "imcdata/a"), EIO);
}

#[test]
fn rename_matches_either_side() {
    let sb = sandbox();
    let fs = sb.fs();
    for name in ["1", "2", "3"] {
        std::fs::write(p(&sb, &format!("imcdata/work/{name}")), name).unwrap();
    }
    sb.apply(&rule(OpKind::Rename, "imcdata/in/*", 1, Errno::Eio, true))
        .unwrap();
    // Matching the destination.
    let to_in = fs.rename(&p(&sb, "imcdata/work/1"), &p(&sb, "imcdata/in/1"));
    assert_eq!(errno_of(to_in), EIO);
    // Matching neither.
    fs.rename(&p(&sb, "imcdata/work/2"), &p(&sb, "imcdata/out/2"))
        .unwrap();
    // Matching the source.
    std::fs::write(p(&sb, "imcdata/in/4"), "4").unwrap();
    let from_in = fs.rename(&p(&sb, "imcdata/in/4"), &p(&sb, "imcdata/out/4"));
    assert_eq!(errno_of(from_in), EIO);
}

#[test]
fn failing_ops_leave_the_disk_unchanged() {
    let sb = sandbox();
    let fs = sb.fs();
    std::fs::write(p(&sb, "kept"), "content").unwrap();
    let mut file = fs.create(&p(&sb, "written")).unwrap();
    file.write_all(b"12345").unwrap();
    for op in OpKind::ALL {
        sb.apply(&rule(op, "**", 1, Errno::Eio, true)).unwrap();
    }
    let free = sb.available_space();
    // Two small files, a 4096-byte block each.
    assert_eq!(free, (64 << 20) - 2 * 4096);

    assert_eq!(create(&sb, "kept"), EIO);
    assert_eq!(create(&sb, "new"), EIO);
    assert_eq!(std::fs::read(p(&sb, "kept")).unwrap(), b"content");
    assert!(!p(&sb, "new").exists());

    assert_eq!(errno_of(fs.rename(&p(&sb, "kept"), &p(&sb, "moved"))), EIO);
    assert!(p(&sb, "kept").exists() && !p(&sb, "moved").exists());

    assert_eq!(errno_of(fs.remove_file(&p(&sb, "kept"))), EIO);
    assert!(p(&sb, "kept").exists());

    assert_eq!(errno_of(fs.create_dir(&p(&sb, "dir"))), EIO);
    assert!(!p(&sb, "dir").exists());

    assert_eq!(errno_of(file.write(b"more")), EIO);
    assert_eq!(errno_of(file.sync_all()), EIO);
    assert_eq!(std::fs::read(p(&sb, "written")).unwrap(), b"12345");

    assert_eq!(errno_of(fs.sync_dir(sb.root())), EIO);
    assert_eq!(errno_of(fs.metadata(&p(&sb, "kept"))), EIO);
    assert_eq!(errno_of(fs.read_dir(sb.root())), EIO);
    assert_eq!(errno_of(fs.available_space(sb.root())), EIO);
    assert_eq!(sb.available_space(), free);
}

#[test]
fn writes_and_syncs_match_the_files_path() {
    let sb = sandbox();
    let fs = sb.fs();
    sb.apply(&rule(
        OpKind::Write,
        "imcdata/work/*",
        2,
        Errno::Enospc,
        false,
    ))
    .unwrap();
    sb.apply(&rule(OpKind::Sync, "imcdata/work/b", 1, Errno::Eio, false))
        .unwrap();
    let mut other = fs.create(&p(&sb, "imcdata/out/a")).unwrap();
    let mut a = fs.create(&p(&sb, "imcdata/work/a")).unwrap();
    let mut b = fs.create(&p(&sb, "imcdata/work/b")).unwrap();
    other.write_all(b"x").unwrap();
    a.write_all(b"x").unwrap();
    assert_eq!(errno_of(b.write(b"y")), Some(libc::ENOSPC));
    b.write_all(b"z").unwrap();
    a.sync_all().unwrap();
    assert_eq!(errno_of(b.sync_all()), EIO);
    b.sync_all().unwrap();
    assert_eq!(std::fs::read(p(&sb, "imcdata/work/b")).unwrap(), b"z");
}

#[test]
fn rules_count_independently() {
    let sb = sandbox();
    sb.apply(&rule(OpKind::Create, "**", 2, Errno::Eio, false))
        .unwrap();
    sb.apply(&rule(OpKind::Create, "**", 3, Errno::Eacces, false))
        .unwrap();
    // The first rule fails the 2nd create; the second still counts it and fails the 3rd.
    let results: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|r| create(&sb, r))
        .collect();
    assert_eq!(results, [None, EIO, Some(libc::EACCES), None]);
}

#[test]
fn clear_errno_removes_all_rules() {
    let sb = sandbox();
    sb.apply(&rule(OpKind::Create, "**", 1, Errno::Eio, true))
        .unwrap();
    sb.apply(&rule(OpKind::Rename, "**", 1, Errno::Eio, true))
        .unwrap();
    assert_eq!(create(&sb, "a"), EIO);
    assert_eq!(
        sb.apply(&Fault::ClearErrno).unwrap(),
        "cleared 2 errno rule(s)"
    );
    assert_eq!(create(&sb, "a"), None);
}

#[test]
fn injected_failures_are_logged() {
    let sb = sandbox();
    sb.apply(&rule(
        OpKind::Create,
        "imcdata/in/*",
        1,
        Errno::Edquot,
        false,
    ))
    .unwrap();
    create(&sb, "imcdata/in/a");
    let ops = sb.ops();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].outcome, Outcome::Injected(Errno::Edquot));
    assert_eq!(ops[0].to_string(), "create imcdata/in/a: EDQUOT (injected)");
}

#[test]
fn invalid_rules_are_refused() {
    let sb = sandbox();
    let zero = sb.apply(&rule(OpKind::Create, "**", 0, Errno::Eio, false));
    assert!(
        matches!(zero, Err(SandboxError::InvalidRule { .. })),
        "{zero:?}"
    );
    let glob = sb.apply(&rule(OpKind::Create, "imcdata/[in", 1, Errno::Eio, false));
    assert!(
        matches!(glob, Err(SandboxError::InvalidRule { .. })),
        "{glob:?}"
    );
    // Nothing was installed.
    assert_eq!(create(&sb, "a"), None);
}

/// A rule for a named process counts only that process's operations; the
/// in-process connector has no name, so on vfs it never strikes.
#[test]
fn a_rule_for_a_process_leaves_the_in_process_connector_alone() {
    let sb = sandbox();
    let only_sh = ErrnoRule {
        op: OpKind::Create,
        path: "**".into(),
        nth: 1,
        errno: Errno::Eio,
        persistent: true,
        process: Some("sh".into()),
    };
    assert_eq!(
        sb.apply(&Fault::Errno(only_sh)).unwrap(),
        "installed errno rule: every create matching `**` from the 1st on fails with EIO \
         (process `sh` only)"
    );
    assert_eq!(create(&sb, "imcdata/in/1"), None);
    assert_eq!(create(&sb, "imcdata/in/2"), None);
}
