//! The `tmpfs` backend, against a real kernel tmpfs.
//!
//! Runs under libtest-mimic (`harness = false`): the process must enter its
//! private mount namespace while still single-threaded, before any test
//! thread exists. Where mounting is not possible the tests are reported as
//! ignored, with the reason. Filters and cargo-nextest work as usual.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use imc::fs::{Fs, OpKind};
use sandbox::{
    BLOCK, Backend, Errno, ErrnoRule, Fault, OpTrigger, Outcome, Sandbox, SandboxConfig,
};

fn main() {
    // Before libtest-mimic starts its threads: the namespace must be entered while
    // the process is single-threaded.
    let usable = sandbox::enter_private_mount_namespace().and_then(|()| {
        // A second call is a no-op.
        assert_eq!(sandbox::enter_private_mount_namespace(), Ok(()));
        sandbox::tmpfs_available()
    });
    let args = libtest_mimic::Arguments::from_args();
    let tests: &[(&str, fn())] = &[
        ("enospc_comes_from_the_kernel", enospc_comes_from_the_kernel),
        (
            "fill_disk_leaves_exactly_n_bytes",
            fill_disk_leaves_exactly_n_bytes,
        ),
        (
            "free_space_matches_the_vfs_model",
            free_space_matches_the_vfs_model,
        ),
        (
            "the_mount_is_private_and_gone_after_drop",
            the_mount_is_private_and_gone_after_drop,
        ),
        (
            "a_lingering_fs_does_not_keep_the_mount",
            a_lingering_fs_does_not_keep_the_mount,
        ),
        ("crash_drops_nothing", crash_drops_nothing),
        (
            "rules_triggers_and_containment_still_work",
            rules_triggers_and_containment_still_work,
        ),
        (
            "replace_and_restore_cross_the_mount",
            replace_and_restore_cross_the_mount,
        ),
        ("a_volume_needs_a_whole_block", a_volume_needs_a_whole_block),
        (
            "free_disk_frees_at_once_while_another_holds_the_ballast",
            free_disk_frees_at_once_while_another_holds_the_ballast,
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

fn on(backend: Backend, blocks: u64) -> Sandbox {
    Sandbox::with_backend(
        SandboxConfig {
            quota: blocks * BLOCK,
        },
        backend,
    )
    .unwrap()
}

fn tmpfs(blocks: u64) -> Sandbox {
    on(Backend::Tmpfs, blocks)
}

fn p(sb: &Sandbox, rel: &str) -> PathBuf {
    sb.root().join(rel)
}

/// Free space as the kernel reports it, bypassing the sandbox.
fn statvfs_free(path: &Path) -> u64 {
    fs4::available_space(path).unwrap()
}

fn mountinfo(pid: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()
}

fn enospc_comes_from_the_kernel() {
    let sb = tmpfs(3);
    assert_eq!(sb.backend(), Backend::Tmpfs);
    assert_eq!(sb.quota(), 3 * BLOCK);
    let fs = sb.fs();
    assert_eq!(fs.available_space(sb.root()).unwrap(), 3 * BLOCK);
    // Another file, written behind the sandbox's back: the kernel counts it.
    std::fs::write(p(&sb, "other"), b"x").unwrap();
    assert_eq!(fs.available_space(sb.root()).unwrap(), 2 * BLOCK);

    let mut f = fs.create(&p(&sb, "a")).unwrap();
    f.write_all(&[1; 200]).unwrap();
    assert_eq!(statvfs_free(sb.root()), BLOCK);
    assert_eq!(sb.available_space(), BLOCK);
    // The kernel's short write: the rest of the page, and the free page.
    assert_eq!(f.write(&[2; 10_000]).unwrap(), 3896 + 4096);
    let err = f.write(&[3; 10]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(Errno::Enospc.raw()));
    // Not the sandbox's doing: a write bypassing it fails the same way.
    let direct = std::fs::write(p(&sb, "direct"), b"y").unwrap_err();
    assert_eq!(direct.raw_os_error(), Some(libc::ENOSPC));
    assert_eq!(statvfs_free(sb.root()), 0);
    let writes: Vec<Outcome> = sb
        .ops()
        .into_iter()
        .filter(|r| r.op == OpKind::Write)
        .map(|r| r.outcome)
        .collect();
    assert_eq!(
        writes,
        [
            Outcome::Ok,
            Outcome::ShortWrite {
                written: 7992,
                requested: 10_000
            },
            Outcome::QuotaFull
        ]
    );
    // A missing path fails like statvfs does.
    let missing = fs.available_space(&p(&sb, "missing")).unwrap_err();
    assert_eq!(missing.raw_os_error(), Some(libc::ENOENT));
}

fn fill_disk_leaves_exactly_n_bytes() {
    let sb = tmpfs(256);
    std::fs::write(p(&sb, "message"), [0; 5000]).unwrap();
    let d = sb.apply(&Fault::FillDisk { leave: 3 * BLOCK }).unwrap();
    assert_eq!(
        d,
        format!(
            "filled disk: ballast.bin is {} bytes, leaving 12288 of 1048576 bytes free",
            (256 - 2 - 3) * BLOCK
        )
    );
    assert_eq!(statvfs_free(sb.root()), 3 * BLOCK);
    // Exactly that much still goes in.
    let mut f = std::fs::File::create(p(&sb, "fill")).unwrap();
    let err = f.write_all(&[0; 5 * 4096]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    assert_eq!(f.metadata().unwrap().len(), 3 * BLOCK);
    // (Closed first: an open file keeps its pages after it is removed.)
    drop(f);
    std::fs::remove_file(p(&sb, "fill")).unwrap();
    // Rounded down to a block, and grown from an existing ballast.
    sb.apply(&Fault::FillDisk { leave: 4321 }).unwrap();
    assert_eq!(statvfs_free(sb.root()), BLOCK);
    sb.apply(&Fault::FillDisk { leave: 0 }).unwrap();
    assert_eq!(statvfs_free(sb.root()), 0);
    let d = sb.apply(&Fault::FreeDisk).unwrap();
    assert_eq!(
        d,
        format!("freed disk: removed ballast.bin ({} bytes)", 254 * BLOCK)
    );
    assert_eq!(statvfs_free(sb.root()), 254 * BLOCK);
}

/// The same operations give the same free space, outcomes and descriptions
/// on both backends.
fn free_space_matches_the_vfs_model() {
    fn script(sb: &Sandbox) -> Vec<String> {
        let fs = sb.fs();
        let mut log = Vec::new();
        let mut note = |what: String| {
            let free = fs.available_space(sb.root()).unwrap();
            log.push(format!("{what} -> {free} free"));
        };
        let p = |rel: &str| sb.root().join(rel);
        fs.create_dir(&p("d")).unwrap();
        note("mkdir d".into());
        for i in 0..20 {
            fs.create_dir(&p(&format!("d/sub-{i:0>60}"))).unwrap();
        }
        note("20 more directories".into());
        let mut a = fs.create(&p("d/a")).unwrap();
        for n in [200, 3896, 1, 0, 12_288, 5000] {
            let r = a.write(&vec![b'a'; n]);
            note(format!("write {n} to d/a: {r:?}"));
        }
        let mut b = fs.create(&p("b")).unwrap();
        b.write_all(&[b'b'; 4097]).unwrap();
        drop(fs.create(&p("empty")).unwrap());
        note("b 4097, empty 0".into());
        fs.rename(&p("b"), &p("d/b")).unwrap();
        note("rename b".into());
        fs.rename(&p("empty"), &p("d/a")).unwrap();
        // The kernel keeps an open file's pages after its last name is gone.
        note("rename empty over d/a, still open".into());
        let r = a.write(&[b'a'; 5000]);
        note(format!("write 5000 to the removed d/a: {r:?}"));
        drop(a);
        note("close d/a".into());
        drop(fs.create(&p("d/b")).unwrap());
        note("truncating create d/b".into());
        let mut c = fs.create(&p("c")).unwrap();
        c.write_all(&[b'c'; 9000]).unwrap();
        fs.remove_file(&p("c")).unwrap();
        note("c written and removed, still open".into());
        drop(c);
        note("close c".into());
        drop(b);
        for leave in [4321, 3 * BLOCK, 0] {
            let d = sb.apply(&Fault::FillDisk { leave }).unwrap();
            note(d);
        }
        let mut e = fs.create(&p("e")).unwrap();
        let r = e.write(b"e");
        note(format!("write to e on a full disk: {r:?}"));
        let d = sb.apply(&Fault::FreeDisk).unwrap();
        note(d);
        for n in [100_000, 100_000, 100_000, 10] {
            let r = e.write(&vec![b'e'; n]);
            note(format!(
                "write {n} to e: {:?}",
                r.map_err(|e| e.raw_os_error())
            ));
        }
        // A fault removing an open file: it keeps its blocks too.
        let d = sb.apply(&Fault::Remove { path: "e".into() }).unwrap();
        note(d);
        let r = e.write(&[b'e'; 5000]);
        note(format!(
            "write to the removed e: {:?}",
            r.map_err(|e| e.raw_os_error())
        ));
        drop(e);
        note("close e".into());
        let mut kept = fs.create(&p("d/kept")).unwrap();
        kept.write_all(&[b'k'; 5000]).unwrap();
        drop(kept);
        note("d/kept 5000".into());
        let d = sb.apply(&Fault::Replace { path: "d".into() }).unwrap();
        note(d);
        let d = sb.apply(&Fault::Restore { path: "d".into() }).unwrap();
        note(d);
        for record in sb.ops() {
            log.push(record.to_string());
        }
        log
    }
    let vfs = on(Backend::Vfs, 40);
    let tmp = tmpfs(40);
    let on_vfs = script(&vfs);
    let on_tmpfs = script(&tmp);
    for (i, (a, b)) in on_vfs.iter().zip(&on_tmpfs).enumerate() {
        assert_eq!(a, b, "line {i} differs:\n  vfs:   {a}\n  tmpfs: {b}");
    }
    assert_eq!(on_vfs.len(), on_tmpfs.len());
    // The script did fill the volume and cross it.
    assert!(
        on_vfs.iter().any(|l| l.contains("ENOSPC (quota full)")),
        "{on_vfs:#?}"
    );
    assert!(
        on_vfs.iter().any(|l| l.contains("short write")),
        "{on_vfs:#?}"
    );
}

fn the_mount_is_private_and_gone_after_drop() {
    let sb = tmpfs(4);
    let root = sb.root().to_str().unwrap().to_owned();
    let dir = sb.dir().to_owned();
    let mine = mountinfo("self").unwrap();
    let line = mine
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(root.as_str()))
        .unwrap_or_else(|| panic!("{root} not mounted:\n{mine}"));
    assert!(line.contains(" - tmpfs "), "{line}");
    // Private: no `shared:` peer group to propagate through.
    assert!(!line.contains("shared:"), "{line}");
    if let Some(host) = mountinfo("1") {
        assert!(!host.contains(&root), "the host sees {root}");
    }
    drop(sb);
    assert!(!mountinfo("self").unwrap().contains(&root));
    if let Some(host) = mountinfo("1") {
        assert!(!host.contains(&root));
    }
    assert!(!dir.exists());
}

fn a_lingering_fs_does_not_keep_the_mount() {
    let sb = tmpfs(4);
    let fs = sb.fs();
    let mut f = fs.create(&p(&sb, "open")).unwrap();
    f.write_all(b"still open").unwrap();
    let root = sb.root().to_str().unwrap().to_owned();
    let dir = sb.dir().to_owned();
    drop(sb);
    // Detached, not mounted anywhere any more, and the directory is gone,
    // although a file on the volume is still open.
    assert!(!mountinfo("self").unwrap().contains(&root));
    assert!(!dir.exists());
    f.write_all(b" and writable").unwrap();
    drop(f);
    drop(fs);
}

fn crash_drops_nothing() {
    let sb = tmpfs(8);
    let mut f = sb.fs().create(&p(&sb, "unsynced")).unwrap();
    f.write_all(&[1; 5000]).unwrap();
    drop(f);
    let lines = sb.crash();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("nothing dropped: the tmpfs backend"),
        "{lines:?}"
    );
    assert_eq!(std::fs::read(p(&sb, "unsynced")).unwrap(), vec![1; 5000]);
}

fn rules_triggers_and_containment_still_work() {
    let sb = tmpfs(8);
    let fs = sb.fs();
    sb.apply(&Fault::Errno(ErrnoRule {
        op: OpKind::Create,
        path: "in/*".into(),
        nth: 1,
        errno: Errno::Eio,
        persistent: false,
        process: None,
    }))
    .unwrap();
    fs.create_dir(&p(&sb, "in")).unwrap();
    let err = fs.create(&p(&sb, "in/1")).err().unwrap();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    assert!(!p(&sb, "in/1").exists());
    sb.arm(
        OpTrigger {
            op: OpKind::Write,
            path: "in/2".into(),
            nth: 1,
            process: None,
        },
        Fault::FillDisk { leave: 0 },
    )
    .unwrap();
    let mut f = fs.create(&p(&sb, "in/2")).unwrap();
    let err = f.write(b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    assert_eq!(sb.take_fired().len(), 1);
    let outside = sb.dir().join("stash/x");
    let err = fs.create(&outside).err().unwrap();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES));
    assert_eq!(sb.violations(), ["create <sandbox>/stash/x"]);
}

/// The stash is outside the mount: stashing copies (EXDEV) and frees space.
fn replace_and_restore_cross_the_mount() {
    let sb = tmpfs(8);
    std::fs::create_dir_all(p(&sb, "in/sub")).unwrap();
    std::fs::write(p(&sb, "in/1"), [1; 5000]).unwrap();
    std::fs::write(p(&sb, "in/sub/2"), b"two").unwrap();
    assert_eq!(sb.available_space(), 5 * BLOCK);
    sb.apply(&Fault::Replace { path: "in".into() }).unwrap();
    assert!(p(&sb, "in").is_file());
    assert_eq!(sb.available_space(), 8 * BLOCK);
    sb.apply(&Fault::Restore { path: "in".into() }).unwrap();
    assert_eq!(std::fs::read(p(&sb, "in/1")).unwrap(), vec![1; 5000]);
    assert_eq!(std::fs::read(p(&sb, "in/sub/2")).unwrap(), b"two");
    assert_eq!(sb.available_space(), 5 * BLOCK);
    assert_eq!(
        std::fs::read_dir(sb.dir().join("stash")).unwrap().count(),
        0
    );
}

fn a_volume_needs_a_whole_block() {
    let err =
        Sandbox::with_backend(SandboxConfig { quota: BLOCK - 1 }, Backend::Tmpfs).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("unlimited"), "{err}");
    // Rounded down like the vfs quota, although the kernel would round up.
    let sb = Sandbox::with_backend(
        SandboxConfig {
            quota: 2 * BLOCK + 1,
        },
        Backend::Tmpfs,
    )
    .unwrap();
    assert_eq!(sb.quota(), 2 * BLOCK);
    assert_eq!(statvfs_free(sb.root()), 2 * BLOCK);
}

/// A descriptor of the ballast held elsewhere (a child forked while it was
/// open, not yet at its exec) must not keep its blocks: `free_disk` gives the
/// space back at once. Removing alone left them taken until the last close,
/// and scenarios saw 452s after `free_disk` while process targets started.
fn free_disk_frees_at_once_while_another_holds_the_ballast() {
    let sb = tmpfs(256);
    sb.apply(&Fault::FillDisk { leave: BLOCK }).unwrap();
    let held = std::fs::File::open(p(&sb, "ballast.bin")).unwrap();
    sb.apply(&Fault::FreeDisk).unwrap();
    assert_eq!(statvfs_free(sb.root()), 256 * BLOCK);
    drop(held);
}
