//! The sandbox itself: its lifetime, path checks, containment and op log.

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use imc::fs::{Fs, OpKind};
use sandbox::{BLOCK, Backend, Errno, Outcome, Sandbox, SandboxConfig, SandboxError};

fn sandbox() -> Sandbox {
    Sandbox::new(SandboxConfig::default()).unwrap()
}

#[test]
fn layout_is_a_fresh_root_and_a_private_stash() {
    let sb = sandbox();
    assert!(sb.root().is_absolute());
    assert!(sb.root().is_dir());
    assert!(sb.dir().join("stash").is_dir());
    assert_eq!(sb.backend(), Backend::Vfs);
    assert_eq!(sb.root().parent(), Some(sb.dir()));
    assert_eq!(std::fs::read_dir(sb.root()).unwrap().count(), 0);
    let other = sandbox();
    assert_ne!(sb.root(), other.root());
}

/// Handles taken before a crash belong to one process: they share the disk
/// and its log; after a crash only a new handle reaches it.
#[test]
fn handles_of_one_process_share_the_disk_until_a_crash() {
    let sb = sandbox();
    let (a, b) = (sb.fs(), sb.fs());
    a.create_dir(&sb.root().join("d")).unwrap();
    assert!(b.metadata(&sb.root().join("d")).unwrap().is_dir);
    assert_eq!(sb.ops().len(), 2);
    sb.crash();
    let c = sb.fs();
    c.create_dir(&sb.root().join("e")).unwrap();
    assert_eq!(sb.ops().len(), 3);
    assert_eq!(sb.parked(), 0);
}

#[test]
fn dropping_removes_everything() {
    let sb = sandbox();
    std::fs::create_dir(sb.root().join("d")).unwrap();
    std::fs::write(sb.root().join("d/x"), "x").unwrap();
    let dir = sb.dir().to_owned();
    drop(sb);
    assert!(!dir.exists());
}

#[test]
fn panicking_removes_everything() {
    let mut dir = PathBuf::new();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let sb = sandbox();
        std::fs::write(sb.root().join("x"), "x").unwrap();
        dir = sb.dir().to_owned();
        panic!("scenario failed");
    }));
    assert!(result.is_err());
    assert!(dir.is_absolute());
    assert!(!dir.exists());
}

#[test]
fn resolve_accepts_plain_relative_paths() {
    let sb = sandbox();
    assert_eq!(
        sb.resolve("imcdata/in").unwrap(),
        sb.root().join("imcdata/in")
    );
    assert_eq!(sb.resolve("./a//b/").unwrap(), sb.root().join("a/b"));
}

#[test]
fn resolve_rejects_paths_leaving_the_root() {
    let sb = sandbox();
    for (bad, why) in [
        ("/abs", "absolute"),
        ("../x", ".."),
        ("a/../../b", ".."),
        ("a/..", ".."),
        ("", "empty"),
        (".", "root itself"),
    ] {
        let err = sb.resolve(bad).unwrap_err();
        assert!(
            matches!(&err, SandboxError::InvalidPath { path, .. } if path == bad),
            "{bad}: {err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(why), "{bad}: {msg}");
    }
}

#[test]
fn paths_outside_the_root_are_refused_and_recorded() {
    let sb = sandbox();
    let fs = sb.fs();
    let stash_file = sb.dir().join("stash/x");
    let eacces = Some(Errno::Eacces.raw());

    let err = fs.create(&stash_file).err().unwrap();
    assert_eq!(err.raw_os_error(), eacces);
    assert!(!stash_file.exists());

    // Lexically inside, but `..` climbs out.
    let sneaky = sb.root().join("../stash/y");
    assert_eq!(fs.create_dir(&sneaky).unwrap_err().raw_os_error(), eacces);
    assert!(!sb.dir().join("stash/y").exists());

    // A rename out of the root, and a relative path.
    std::fs::write(sb.root().join("a"), "a").unwrap();
    let out = fs.rename(&sb.root().join("a"), &stash_file);
    assert_eq!(out.unwrap_err().raw_os_error(), eacces);
    assert!(sb.root().join("a").exists());
    assert_eq!(
        fs.metadata("a".as_ref()).unwrap_err().raw_os_error(),
        eacces
    );

    assert_eq!(
        sb.violations(),
        [
            "create <sandbox>/stash/x",
            "create_dir <sandbox>/root/../stash/y",
            "rename a -> <sandbox>/stash/x",
            "metadata a",
        ]
    );
    assert!(sb.ops().iter().all(|r| r.outcome == Outcome::OutsideRoot));
    // Paths inside are not violations.
    fs.metadata(sb.root()).unwrap();
    assert_eq!(sb.violations().len(), 4);
}

#[test]
fn every_operation_is_logged() {
    let sb = sandbox();
    let fs = sb.fs();
    let p = |rel: &str| sb.root().join(rel);
    fs.create_dir(&p("imcdata")).unwrap();
    let mut f = fs.create(&p("imcdata/work")).unwrap();
    f.write_all(b"hello").unwrap();
    f.sync_all().unwrap();
    drop(f);
    fs.sync_dir(&p("imcdata")).unwrap();
    fs.rename(&p("imcdata/work"), &p("imcdata/in")).unwrap();
    assert!(fs.metadata(&p("imcdata/missing")).is_err());
    assert_eq!(fs.read_dir(sb.root()).unwrap(), [p("imcdata")]);
    // Five bytes take a block.
    assert_eq!(
        fs.available_space(&p("imcdata")).unwrap(),
        (64 << 20) - BLOCK
    );
    assert!(fs.available_space(&p("gone")).is_err());
    fs.remove_file(&p("imcdata/in")).unwrap();

    let lines: Vec<String> = sb.ops().iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "create_dir imcdata: ok",
            "create imcdata/work: ok",
            "write imcdata/work: ok",
            "sync imcdata/work: ok",
            "sync_dir imcdata: ok",
            "rename imcdata/work -> imcdata/in: ok",
            "metadata imcdata/missing: ENOENT",
            "read_dir .: ok",
            "available_space imcdata: ok",
            "available_space gone: ENOENT",
            "remove imcdata/in: ok",
        ]
    );
    assert_eq!(sb.op_count(), lines.len());
    let kinds: Vec<OpKind> = sb.ops().iter().map(|r| r.op).collect();
    assert_eq!(
        kinds[..3],
        [OpKind::CreateDir, OpKind::Create, OpKind::Write]
    );
    // Reading the log or the free space through the sandbox logs nothing.
    let _ = sb.available_space();
    assert_eq!(sb.op_count(), lines.len());
}

#[test]
fn sandboxes_do_not_share_state() {
    let config = |blocks| SandboxConfig {
        quota: blocks * BLOCK,
    };
    let a = Sandbox::new(config(2)).unwrap();
    let b = Sandbox::with_backend(config(3), Backend::Vfs).unwrap();
    a.fs()
        .create(&a.root().join("x"))
        .unwrap()
        .write_all(&[0; 50])
        .unwrap();
    assert_eq!(a.available_space(), BLOCK);
    assert_eq!(b.available_space(), 3 * BLOCK);
    assert_eq!(a.op_count(), 2);
    assert_eq!(b.op_count(), 0);
}

/// The same for fuse: refused outside the namespace, and the reason is what
/// an ignored test reports.
#[test]
fn fuse_needs_the_private_mount_namespace() {
    let fuse = || Sandbox::with_backend(SandboxConfig::default(), Backend::Fuse);
    match sandbox::enter_private_mount_namespace() {
        Err(_) => {
            let err = fuse().unwrap_err().to_string();
            assert!(err.contains("fuse backend"), "{err}");
            assert!(err.contains("private mount namespace"), "{err}");
            let unavailable = sandbox::fuse_available().unwrap_err();
            assert!(unavailable.contains("threads"), "{unavailable}");
        }
        Ok(()) => {
            if sandbox::fuse_available().is_ok() {
                assert_eq!(fuse().unwrap().backend(), Backend::Fuse);
            }
        }
    }
}

/// libtest runs tests on threads, so this process cannot enter a mount
/// namespace, and a tmpfs sandbox is refused rather than mounted where the
/// host could see it.
#[test]
fn tmpfs_needs_the_private_mount_namespace() {
    let tmpfs = || Sandbox::with_backend(SandboxConfig::default(), Backend::Tmpfs);
    match sandbox::enter_private_mount_namespace() {
        Err(reason) => {
            assert!(reason.contains("threads"), "{reason}");
            // Idempotent: the same answer again.
            assert_eq!(sandbox::enter_private_mount_namespace(), Err(reason));
            let err = tmpfs().unwrap_err().to_string();
            assert!(err.contains("private mount namespace"), "{err}");
            let unavailable = sandbox::tmpfs_available().unwrap_err();
            assert!(unavailable.contains("threads"), "{unavailable}");
        }
        // Single-threaded after all (a custom test runner): then it works.
        Ok(()) => {
            if sandbox::tmpfs_available().is_ok() {
                assert_eq!(tmpfs().unwrap().backend(), Backend::Tmpfs);
            }
        }
    }
}

#[test]
fn backend_names() {
    for backend in [Backend::Vfs, Backend::Tmpfs, Backend::Fuse] {
        assert_eq!(backend.name().parse::<Backend>(), Ok(backend));
        assert_eq!(backend.to_string(), backend.name());
    }
    assert_eq!(Backend::default(), Backend::Vfs);
    assert!(
        "ext4"
            .parse::<Backend>()
            .unwrap_err()
            .contains("vfs, tmpfs or fuse")
    );
}
