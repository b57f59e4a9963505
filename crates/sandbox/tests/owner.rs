//! Sandbox directories carry their owner's pid and lock: those of dead processes
//! are removed, never those of live ones; a quota the host cannot hold is refused.

use sandbox::{PREFIX, Sandbox, SandboxConfig, remove_stale_sandboxes};
use std::fs::File;
use std::path::Path;

/// The pid of a process that has exited (reaped, so the pid is free).
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

fn fake(tmp: &Path, name: &str, lock: bool) -> std::path::PathBuf {
    let dir = tmp.join(name);
    std::fs::create_dir_all(dir.join("root/imcdata/in")).unwrap();
    std::fs::write(dir.join("root/ballast"), vec![0u8; 8192]).unwrap();
    if lock {
        File::create(dir.join("owner.lock")).unwrap();
    }
    dir
}

#[test]
fn a_sandbox_is_named_after_its_owner_and_kept_while_it_lives() {
    let sb = Sandbox::new(SandboxConfig::default()).unwrap();
    let name = sb.dir().file_name().unwrap().to_str().unwrap().to_string();
    let expected = format!("{PREFIX}{}-", std::process::id());
    assert!(name.starts_with(&expected), "{name}");
    assert!(sb.dir().join("owner.lock").is_file());
    let tmp = sb.dir().parent().unwrap().to_path_buf();
    let removed = remove_stale_sandboxes(Some(&tmp)).unwrap();
    assert!(!removed.iter().any(|d| d == sb.dir()), "{removed:?}");
    assert!(sb.root().is_dir());
    let dir = sb.dir().to_path_buf();
    drop(sb);
    assert!(!dir.exists());

    // Sequential with the above: no other sandbox of this test comes or goes.
    let before = sandboxes_of_mine();
    let e = Sandbox::new(SandboxConfig { quota: u64::MAX }).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
    assert!(e.to_string().contains("does not fit on this host"), "{e}");
    assert_eq!(
        sandboxes_of_mine(),
        before,
        "the refused sandbox left its directory"
    );
}

/// This process's sandbox directories in the temporary folder.
fn sandboxes_of_mine() -> Vec<std::path::PathBuf> {
    let mine = format!("{PREFIX}{}-", std::process::id());
    let mut v: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&mine))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

#[test]
fn only_sandboxes_of_dead_owners_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let me = std::process::id();
    let dead = dead_pid();
    // Unlocked lock file: the owner died, whatever the pid is now.
    let dead_owner = fake(tmp, &format!("{PREFIX}{dead}-aaaaaa"), true);
    let reused_pid = fake(tmp, &format!("{PREFIX}{me}-bbbbbb"), true);
    // No lock file yet: being created by a live pid, or left by a dead one.
    let being_created = fake(tmp, &format!("{PREFIX}{me}-cccccc"), false);
    let died_creating = fake(tmp, &format!("{PREFIX}{dead}-dddddd"), false);
    // No pid in the name: not ours to judge.
    let unnamed = fake(tmp, &format!("{PREFIX}eeeeee"), true);
    let other = fake(tmp, "something-else", true);
    // A live owner holds its lock (here through a second open file description,
    // which flock treats as another owner).
    let live = fake(tmp, &format!("{PREFIX}{dead}-ffffff"), true);
    let held = File::open(live.join("owner.lock")).unwrap();
    fs4::FileExt::lock(&held).unwrap();

    let removed = remove_stale_sandboxes(Some(tmp)).unwrap();
    let mut expected = vec![
        dead_owner.clone(),
        reused_pid.clone(),
        died_creating.clone(),
    ];
    expected.sort();
    assert_eq!(removed, expected);
    for gone in [&dead_owner, &reused_pid, &died_creating] {
        assert!(!gone.exists(), "{}", gone.display());
    }
    for kept in [&being_created, &unnamed, &other, &live] {
        assert!(kept.join("root/ballast").exists(), "{}", kept.display());
    }
    // Once its owner is gone, the last one goes too.
    drop(held);
    assert_eq!(remove_stale_sandboxes(Some(tmp)).unwrap(), [live]);
}
