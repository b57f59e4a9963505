//! A process target and the backends: vfs is refused with a clear error, tmpfs
//! skips what only the fuse daemon can do to a process (errnos, timed faults,
//! the crash model), and in-process imc is unaffected.

use harness::runner::{self, RunError, RunOptions};
use harness::scenario::{self, Backend};
use harness::suite;
use std::path::{Path, PathBuf};

fn targets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../targets")
}

fn scenario(steps: &str) -> scenario::Scenario {
    let text = format!("claims: [KB-1]\nprofile: hardened\nsteps:\n{steps}");
    scenario::parse(&text, Path::new("t.yaml")).unwrap()
}

fn serve(backend: Backend) -> RunOptions {
    RunOptions {
        backend: Some(backend),
        target: Some("imc-serve".into()),
        targets_dir: Some(targets()),
        ..RunOptions::default()
    }
}

#[tokio::test]
async fn vfs_with_a_process_target_is_a_clear_error() {
    let s = scenario("  - service: start\n");
    let Err(RunError::Unsupported(e)) = runner::run(&s, &serve(Backend::Vfs)).await else {
        panic!("ran on vfs");
    };
    assert!(e.contains("target `imc-serve` runs as a process"), "{e}");
    assert!(e.contains("use backend `fuse`"), "{e}");
}

#[test]
fn tmpfs_gives_a_process_tree_faults_only() {
    let tmpfs = serve(Backend::Tmpfs);
    let errno = scenario("  - service: start\n  - fault: { errno: { op: write, errno: EIO } }\n");
    let timed = scenario(
        "  - service: start\n  - fault: { remove: imcdata/in }\n    when: { before_op: { op: sync_dir } }\n",
    );
    let tree = scenario("  - service: start\n  - fault: { remove: imcdata/in }\n");
    let crash = scenario("  - service: start\n  - service: crash\n");
    assert_eq!(runner::needs_fuse(&errno), Some("injects an errno"));
    assert_eq!(
        runner::needs_fuse(&timed),
        Some("times a fault by a filesystem operation")
    );
    assert!(runner::needs_fuse(&crash).is_some());
    assert_eq!(runner::needs_fuse(&tree), None);
    if sandbox::tmpfs_available().is_ok() {
        let why = suite::skip_reason(&errno, &tmpfs).unwrap();
        assert!(
            why.contains("injects an errno") && why.contains("`fuse`"),
            "{why}"
        );
        let why = suite::skip_reason(&timed, &tmpfs).unwrap();
        assert!(why.contains("times a fault"), "{why}");
        assert_eq!(suite::skip_reason(&tree, &tmpfs), None);
    }
    // The in-process connector gets errnos on tmpfs through its own door.
    let in_process = RunOptions {
        backend: Some(Backend::Tmpfs),
        ..RunOptions::default()
    };
    if sandbox::tmpfs_available().is_ok() {
        assert_eq!(suite::skip_reason(&errno, &in_process), None);
    }
}
