//! The `fuse` backend, against a real kernel FUSE mount: every process using
//! the sandbox root meets the rule engine (errno rules, triggers, quota, op
//! log, crash model) through the daemon.
//!
//! Runs under libtest-mimic (`harness = false`): the process must enter its
//! private mount namespace while still single-threaded. Where /dev/fuse or
//! the mount is unavailable the tests are reported as ignored, with the
//! reason; as root with /dev/fuse they always run.

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use imc::fs::OpKind;
use sandbox::{
    BLOCK, Backend, Errno, ErrnoRule, Fault, OpRecord, OpTrigger, Outcome, Sandbox, SandboxConfig,
};

fn main() {
    // Before libtest-mimic starts its threads.
    let usable = sandbox::enter_private_mount_namespace().and_then(|()| sandbox::fuse_available());
    let args = libtest_mimic::Arguments::from_args();
    let tests: &[(&str, fn())] = &[
        (
            "passes_through_and_logs_the_caller",
            passes_through_and_logs_the_caller,
        ),
        ("errno_on_the_nth_matching_op", errno_on_the_nth_matching_op),
        (
            "rules_match_the_process_name_in_the_log",
            rules_match_the_process_name_in_the_log,
        ),
        (
            "a_trigger_fires_right_before_the_op",
            a_trigger_fires_right_before_the_op,
        ),
        (
            "a_process_gets_the_errno_on_its_nth_operation_of_each_kind",
            a_process_gets_the_errno_on_its_nth_operation_of_each_kind,
        ),
        (
            "a_persistent_rule_for_a_process_fails_each_of_its_calls",
            a_persistent_rule_for_a_process_fails_each_of_its_calls,
        ),
        (
            "a_trigger_for_a_process_fires_on_that_process_only",
            a_trigger_for_a_process_fires_on_that_process_only,
        ),
        (
            "the_kernel_asking_by_handle_is_an_fstat",
            the_kernel_asking_by_handle_is_an_fstat,
        ),
        (
            "a_close_after_a_halt_does_not_wait_for_the_crash",
            a_close_after_a_halt_does_not_wait_for_the_crash,
        ),
        (
            "statfs_reports_the_quota_and_writes_go_short",
            statfs_reports_the_quota_and_writes_go_short,
        ),
        (
            "fsync_reaches_the_daemon_every_time",
            fsync_reaches_the_daemon_every_time,
        ),
        (
            "every_write_reaches_the_daemon_at_once",
            every_write_reaches_the_daemon_at_once,
        ),
        (
            "a_fault_on_the_backing_tree_is_seen_at_once",
            a_fault_on_the_backing_tree_is_seen_at_once,
        ),
        (
            "inode_numbers_are_the_backing_files",
            inode_numbers_are_the_backing_files,
        ),
        (
            "rename_flags_noreplace_and_exchange",
            rename_flags_noreplace_and_exchange,
        ),
        (
            "new_nodes_belong_to_the_caller",
            new_nodes_belong_to_the_caller,
        ),
        (
            "crash_drops_what_was_not_durable_and_remounts",
            crash_drops_what_was_not_durable_and_remounts,
        ),
        (
            "the_mount_is_private_and_gone_after_drop",
            the_mount_is_private_and_gone_after_drop,
        ),
        (
            "a_directory_replaced_under_a_cached_entry_is_seen_at_once",
            a_directory_replaced_under_a_cached_entry_is_seen_at_once,
        ),
        (
            "the_backing_tree_is_on_a_tmpfs_of_its_own",
            the_backing_tree_is_on_a_tmpfs_of_its_own,
        ),
        (
            "an_open_file_does_not_hang_the_drop",
            an_open_file_does_not_hang_the_drop,
        ),
        (
            "one_script_on_vfs_tmpfs_and_fuse",
            one_script_on_vfs_tmpfs_and_fuse,
        ),
        (
            "one_crash_on_vfs_tmpfs_and_fuse",
            one_crash_on_vfs_tmpfs_and_fuse,
        ),
        (
            "names_cannot_leave_the_backing_tree",
            names_cannot_leave_the_backing_tree,
        ),
        (
            "mounts_made_and_dropped_at_once_never_cut_each_other",
            mounts_made_and_dropped_at_once_never_cut_each_other,
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
    let conclusion = libtest_mimic::run(&args, trials);
    // Every sandbox is gone by now: so must every FUSE mount be, the crash
    // tests' remounts included.
    let left: Vec<String> = mountinfo("self")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" - fuse imc-sandbox "))
        .map(str::to_owned)
        .collect();
    if !left.is_empty() {
        eprintln!(
            "FUSE mounts left behind after the tests:\n{}",
            left.join("\n")
        );
        std::process::exit(101);
    }
    conclusion.exit();
}

fn fuse(blocks: u64) -> Sandbox {
    let sb = Sandbox::with_backend(
        SandboxConfig {
            quota: blocks * BLOCK,
        },
        Backend::Fuse,
    )
    .unwrap();
    assert_eq!(sb.backend(), Backend::Fuse);
    sb
}

fn p(sb: &Sandbox, rel: &str) -> PathBuf {
    sb.root().join(rel)
}

fn backing(sb: &Sandbox, rel: &str) -> PathBuf {
    sb.tree().join(rel)
}

/// The log as `op path: outcome` lines, without the callers.
fn lines(ops: &[OpRecord]) -> Vec<String> {
    ops.iter().map(ToString::to_string).collect()
}

/// The operations of the kinds the in-process door makes too.
fn fs_kinds(ops: &[OpRecord]) -> Vec<OpRecord> {
    ops.iter().filter(|r| r.op.in_fs()).cloned().collect()
}

/// `wanted` appears in `log` in this order (other lines may come between).
fn assert_subsequence(log: &[String], wanted: &[&str]) {
    let mut rest = log.iter();
    for w in wanted {
        assert!(
            rest.any(|l| l == w),
            "`{w}` missing, or out of order, in {log:#?}"
        );
    }
}

fn errno_rule(op: OpKind, path: &str, nth: u32, errno: Errno, persistent: bool) -> Fault {
    Fault::Errno(ErrnoRule {
        op,
        path: path.into(),
        nth,
        errno,
        persistent,
        process: None,
    })
}

fn mountinfo(pid: &str) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()
}

/// The connector's own sequence through `std::fs` on the mount, one request
/// per call, each logged with this process as the caller.
fn passes_through_and_logs_the_caller() {
    let sb = fuse(16);
    fs::create_dir(p(&sb, "work")).unwrap();
    fs::create_dir(p(&sb, "in")).unwrap();
    let mut f = File::create(p(&sb, "work/1")).unwrap();
    f.write_all(b"hello").unwrap();
    f.sync_all().unwrap();
    drop(f);
    fs::rename(p(&sb, "work/1"), p(&sb, "in/1")).unwrap();
    File::open(p(&sb, "in")).unwrap().sync_all().unwrap();
    fs::metadata(p(&sb, "in/1")).unwrap();
    // glibc's opendir fstats the directory: a stat of `in` the daemon
    // cannot tell from any other (the in-process door has no such call).
    let listed: Vec<_> = fs::read_dir(p(&sb, "in"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(listed, ["1"]);
    fs4::available_space(p(&sb, "in")).unwrap();
    fs::remove_file(p(&sb, "in/1")).unwrap();
    // The kernel's own requests around each call (each name walked, each
    // close) are logged too, in their place.
    assert_subsequence(
        &lines(&sb.ops()),
        &[
            "lookup work: ENOENT",
            "create_dir work: ok",
            "lookup work/1: ENOENT",
            "create work/1: ok",
            "write work/1: ok",
            "sync work/1: ok",
            "flush work/1: ok",
            "lookup in/1: ENOENT",
            "rename work/1 -> in/1: ok",
            "open_dir in: ok",
            "sync_dir in: ok",
            "lookup in/1: ok",
            "metadata in/1: ok",
            "open_dir in: ok",
            "read_dir in: ok",
            "lookup in/1: ok",
            "remove in/1: ok",
        ],
    );
    // Those of the `Fs` trait's kinds are exactly the in-process door's.
    assert_eq!(
        lines(&fs_kinds(&sb.ops())),
        [
            "create_dir work: ok",
            "create_dir in: ok",
            "create work/1: ok",
            "write work/1: ok",
            "sync work/1: ok",
            "rename work/1 -> in/1: ok",
            "sync_dir in: ok",
            "metadata in/1: ok",
            "metadata in: ok",
            "read_dir in: ok",
            "available_space in: ok",
            "remove in/1: ok",
        ]
    );
    let me = std::process::id();
    let name = fs::read_to_string("/proc/self/comm").unwrap();
    for op in sb.ops() {
        let caller = op.caller.as_ref().expect("the daemon names the caller");
        assert_eq!(caller.pid, me, "{op}");
        assert_eq!(caller.process, name.trim_end(), "{op}");
    }
    assert!(!backing(&sb, "in/1").exists());
    assert!(backing(&sb, "work").is_dir());
}

fn errno_on_the_nth_matching_op() {
    let sb = fuse(16);
    fs::create_dir(p(&sb, "in")).unwrap();
    sb.apply(&errno_rule(OpKind::Create, "in/*", 2, Errno::Eio, false))
        .unwrap();
    File::create(p(&sb, "in/1")).unwrap();
    let err = File::create(p(&sb, "in/2")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    // Untouched: the backing tree never saw the refused create.
    assert!(!backing(&sb, "in/2").exists());
    File::create(p(&sb, "in/3")).unwrap();
    // Persistent: the nth and every later one.
    sb.apply(&errno_rule(OpKind::Rename, "**", 1, Errno::Enospc, true))
        .unwrap();
    for to in ["in/4", "in/5"] {
        let err = fs::rename(p(&sb, "in/1"), p(&sb, to)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    }
    sb.apply(&Fault::ClearErrno).unwrap();
    fs::rename(p(&sb, "in/1"), p(&sb, "in/4")).unwrap();
    let outcomes: Vec<_> = sb.ops().into_iter().map(|r| r.to_string()).collect();
    assert!(
        outcomes.contains(&"create in/2: EIO (injected)".to_owned()),
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains(&"rename in/1 -> in/5: ENOSPC (injected)".to_owned()),
        "{outcomes:?}"
    );
}

/// Another process's operations carry its own pid and name, and a rule
/// naming a process counts only that process's operations.
fn rules_match_the_process_name_in_the_log() {
    let sb = fuse(16);
    sb.apply(&Fault::Errno(ErrnoRule {
        op: OpKind::Create,
        path: "**".into(),
        nth: 1,
        errno: Errno::Eacces,
        persistent: false,
        process: Some("sh".into()),
    }))
    .unwrap();
    // Not `sh`: neither failed nor counted.
    File::create(p(&sb, "mine")).unwrap();
    let refused = Command::new("sh")
        .arg("-c")
        .arg("echo x > refused")
        .current_dir(sb.root())
        .status()
        .unwrap();
    assert!(!refused.success());
    assert!(!backing(&sb, "refused").exists());
    let status = Command::new("sh")
        .arg("-c")
        .arg("echo x > made-by-sh")
        .current_dir(sb.root())
        .status()
        .unwrap();
    assert!(status.success());
    let create = sb
        .ops()
        .into_iter()
        .rfind(|r| r.op == OpKind::Create)
        .expect("the shell's create is logged");
    assert_eq!(create.path, "made-by-sh");
    let caller = create.caller.unwrap();
    assert_eq!(caller.process, "sh");
    assert_ne!(caller.pid, std::process::id());
}

fn a_trigger_fires_right_before_the_op() {
    let sb = fuse(16);
    fs::create_dir_all(p(&sb, "imcdata/in")).unwrap();
    sb.arm(
        OpTrigger {
            op: OpKind::Create,
            path: "imcdata/in/*".into(),
            nth: 1,
            process: None,
        },
        Fault::Remove {
            path: "imcdata/in".into(),
        },
    )
    .unwrap();
    let err = File::create(p(&sb, "imcdata/in/1")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    assert_eq!(sb.take_fired(), ["removed directory imcdata/in"]);
    assert!(!p(&sb, "imcdata/in").exists());
}

fn statfs_reports_the_quota_and_writes_go_short() {
    let sb = fuse(3);
    assert_eq!(fs4::available_space(sb.root()).unwrap(), 3 * BLOCK);
    assert_eq!(fs4::total_space(sb.root()).unwrap(), 3 * BLOCK);
    let mut f = File::create(p(&sb, "a")).unwrap();
    f.write_all(&[1; 200]).unwrap();
    assert_eq!(fs4::available_space(sb.root()).unwrap(), 2 * BLOCK);
    assert_eq!(sb.available_space(), 2 * BLOCK);
    // As on vfs and tmpfs: the rest of the block and the free blocks.
    assert_eq!(f.write(&[2; 30_000]).unwrap(), 3896 + 2 * 4096);
    let err = f.write(&[3; 10]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    assert_eq!(fs4::available_space(sb.root()).unwrap(), 0);
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
                written: 3896 + 2 * 4096,
                requested: 30_000
            },
            Outcome::QuotaFull
        ]
    );
    drop(f);
    fs::remove_file(p(&sb, "a")).unwrap();
    assert_eq!(fs4::available_space(sb.root()).unwrap(), 3 * BLOCK);
}

/// After one ENOSYS the kernel would stop sending fsync and report success.
fn fsync_reaches_the_daemon_every_time() {
    let sb = fuse(16);
    let mut f = File::create(p(&sb, "a")).unwrap();
    f.write_all(b"x").unwrap();
    f.sync_all().unwrap();
    f.sync_data().unwrap();
    sb.apply(&errno_rule(OpKind::Sync, "a", 3, Errno::Eio, false))
        .unwrap();
    f.sync_all().unwrap();
    f.sync_all().unwrap();
    // The third since the rule: it fails, so the kernel did send it.
    assert_eq!(f.sync_all().unwrap_err().raw_os_error(), Some(libc::EIO));
    drop(f);
    let dir = File::open(sb.root()).unwrap();
    dir.sync_all().unwrap();
    dir.sync_all().unwrap();
    let syncs = |op| sb.ops().iter().filter(|r| r.op == op).count();
    assert_eq!(syncs(OpKind::Sync), 5);
    assert_eq!(syncs(OpKind::SyncDir), 2);
}

/// No writeback cache: each write(2) is a request, seen before any close or
/// fsync, with the backing file already holding the bytes.
fn every_write_reaches_the_daemon_at_once() {
    let sb = fuse(16);
    let mut f = File::create(p(&sb, "a")).unwrap();
    for i in 1..=3 {
        f.write_all(b"abc").unwrap();
        let writes = sb.ops().iter().filter(|r| r.op == OpKind::Write).count();
        assert_eq!(writes, i);
        assert_eq!(fs::metadata(backing(&sb, "a")).unwrap().len(), 3 * i as u64);
    }
    // Read back through the mount: what the backing file holds.
    let mut s = String::new();
    File::open(p(&sb, "a"))
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "abcabcabc");
}

/// Attribute timeouts are 0, and so are entry timeouts but directories'
/// (whose stale nodes the kernel is made to walk again): no stale entry
/// survives a change of the backing tree.
fn a_fault_on_the_backing_tree_is_seen_at_once() {
    let sb = fuse(16);
    fs::create_dir_all(p(&sb, "imcdata/in")).unwrap();
    fs::write(p(&sb, "imcdata/in/1"), "one").unwrap();
    assert!(p(&sb, "imcdata/in/1").exists());
    sb.apply(&Fault::Rename {
        from: "imcdata/in".into(),
        to: "imcdata/in.old".into(),
    })
    .unwrap();
    assert!(!p(&sb, "imcdata/in").exists());
    assert_eq!(
        fs::read_to_string(p(&sb, "imcdata/in.old/1")).unwrap(),
        "one"
    );
    sb.apply(&Fault::Replace {
        path: "imcdata/in.old".into(),
    })
    .unwrap();
    assert!(p(&sb, "imcdata/in.old").is_file());
    // Written behind the daemon's back: the size is fresh too.
    fs::write(backing(&sb, "behind"), "12345").unwrap();
    assert_eq!(fs::metadata(p(&sb, "behind")).unwrap().len(), 5);
    fs::write(backing(&sb, "behind"), "1234567").unwrap();
    assert_eq!(fs::metadata(p(&sb, "behind")).unwrap().len(), 7);
}

/// A directory's entry stays in the kernel's cache; when a fault (here, and
/// behind the daemon's back) puts another directory at its name, every kind
/// of request through that name reaches the new one at once.
fn a_directory_replaced_under_a_cached_entry_is_seen_at_once() {
    let sb = fuse(16);
    fs::create_dir_all(p(&sb, "imcdata/in")).unwrap();
    fs::write(p(&sb, "imcdata/in/old"), "old").unwrap();
    let old = fs::metadata(p(&sb, "imcdata/in")).unwrap().ino();
    sb.apply(&Fault::Rename {
        from: "imcdata/in".into(),
        to: "imcdata/in.old".into(),
    })
    .unwrap();
    fs::create_dir(backing(&sb, "imcdata/in")).unwrap();
    let new = fs::metadata(backing(&sb, "imcdata/in")).unwrap().ino();
    assert_ne!(old, new);
    // stat, a create in it, a listing, a rename into it, a sync of it.
    assert_eq!(fs::metadata(p(&sb, "imcdata/in")).unwrap().ino(), new);
    fs::write(p(&sb, "imcdata/in/1"), "one").unwrap();
    assert!(backing(&sb, "imcdata/in/1").is_file());
    assert!(!backing(&sb, "imcdata/in.old/1").exists());
    fs::write(p(&sb, "imcdata/2"), "two").unwrap();
    fs::rename(p(&sb, "imcdata/2"), p(&sb, "imcdata/in/2")).unwrap();
    let names = |rel: &str| {
        let mut v: Vec<String> = fs::read_dir(p(&sb, rel))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names("imcdata/in"), ["1", "2"]);
    assert_eq!(names("imcdata/in.old"), ["old"]);
    File::open(p(&sb, "imcdata/in"))
        .unwrap()
        .sync_all()
        .unwrap();
    let synced = sb
        .ops()
        .into_iter()
        .filter(|r| r.op == OpKind::SyncDir)
        .map(|r| r.path)
        .collect::<Vec<_>>();
    assert_eq!(synced, ["imcdata/in"]);
    // And the other way: the name left without a directory.
    fs::remove_dir_all(backing(&sb, "imcdata/in")).unwrap();
    let err = fs::metadata(p(&sb, "imcdata/in")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{err}");
    let err = File::create(p(&sb, "imcdata/in/3")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{err}");
}

fn inode_numbers_are_the_backing_files() {
    let sb = fuse(16);
    fs::create_dir(p(&sb, "d")).unwrap();
    fs::write(p(&sb, "d/a"), "a").unwrap();
    for rel in ["d", "d/a"] {
        assert_eq!(
            fs::metadata(p(&sb, rel)).unwrap().ino(),
            fs::metadata(backing(&sb, rel)).unwrap().ino(),
            "{rel}"
        );
    }
    // A rename keeps the inode, as on a disk.
    let ino = fs::metadata(p(&sb, "d/a")).unwrap().ino();
    fs::rename(p(&sb, "d/a"), p(&sb, "b")).unwrap();
    assert_eq!(fs::metadata(p(&sb, "b")).unwrap().ino(), ino);
    let listed: Vec<u64> = fs::read_dir(sb.root())
        .unwrap()
        .map(|e| {
            use std::os::unix::fs::DirEntryExt;
            e.unwrap().ino()
        })
        .collect();
    assert!(listed.contains(&ino), "{listed:?}");
}

fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> std::io::Result<()> {
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).unwrap();
    let (from, to) = (c(from), c(to));
    // SAFETY: NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            flags,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn rename_flags_noreplace_and_exchange() {
    let sb = fuse(16);
    fs::write(p(&sb, "a"), "aaaa").unwrap();
    fs::write(p(&sb, "b"), "b").unwrap();
    // Refused by the kernel itself (the target's entry is fresh), before
    // any request: not logged.
    let err = renameat2(&p(&sb, "a"), &p(&sb, "b"), libc::RENAME_NOREPLACE).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
    assert_eq!(fs::read_to_string(p(&sb, "b")).unwrap(), "b");
    let free = sb.available_space();
    renameat2(&p(&sb, "a"), &p(&sb, "b"), libc::RENAME_EXCHANGE).unwrap();
    assert_eq!(fs::read_to_string(p(&sb, "a")).unwrap(), "b");
    assert_eq!(fs::read_to_string(p(&sb, "b")).unwrap(), "aaaa");
    // Nothing was overwritten, so nothing was given back to the quota.
    assert_eq!(sb.available_space(), free);
    renameat2(&p(&sb, "a"), &p(&sb, "c"), libc::RENAME_NOREPLACE).unwrap();
    assert_eq!(fs::read_to_string(p(&sb, "c")).unwrap(), "b");
    let renames: Vec<_> = lines(&sb.ops())
        .into_iter()
        .filter(|l| l.starts_with("rename"))
        .collect();
    assert_eq!(renames, ["rename a -> b: ok", "rename a -> c: ok"]);
}

/// A daemon that dropped privileges owns what it creates.
fn new_nodes_belong_to_the_caller() {
    let sb = fuse(16);
    fs::create_dir(p(&sb, "shared")).unwrap();
    fs::set_permissions(p(&sb, "shared"), fs::Permissions::from_mode(0o777)).unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg("echo x > shared/f && mkdir shared/d")
        .current_dir(sb.root())
        .uid(4242)
        .gid(4343)
        .status()
        .unwrap();
    assert!(status.success());
    for rel in ["shared/f", "shared/d"] {
        let meta = fs::metadata(backing(&sb, rel)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (4242, 4343), "{rel}");
    }
    let meta = fs::metadata(backing(&sb, "shared")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
}

/// The vfs crash model on the backing tree, and a fresh mount after it.
fn crash_drops_what_was_not_durable_and_remounts() {
    let sb = fuse(16);
    fs::create_dir(p(&sb, "in")).unwrap();
    File::open(sb.root()).unwrap().sync_all().unwrap();
    // Durable: data synced and the entry synced.
    let mut kept = File::create(p(&sb, "in/kept")).unwrap();
    kept.write_all(b"kept").unwrap();
    kept.sync_all().unwrap();
    File::open(p(&sb, "in")).unwrap().sync_all().unwrap();
    kept.write_all(b" and more").unwrap();
    drop(kept);
    // Not durable: never synced, nor its directory.
    fs::write(p(&sb, "in/lost"), "lost").unwrap();
    let lines = sb.crash();
    assert_eq!(fs::read_to_string(p(&sb, "in/kept")).unwrap(), "kept");
    assert!(!p(&sb, "in/lost").exists());
    assert!(!lines.is_empty(), "{lines:?}");
    // Mounted again, and still faulted by the same engine.
    let root = sb.root().to_str().unwrap().to_owned();
    let mounts = mountinfo("self").unwrap();
    let count = mounts
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(root.as_str()))
        .count();
    assert_eq!(count, 1, "{mounts}");
    sb.apply(&errno_rule(OpKind::Create, "**", 1, Errno::Eio, false))
        .unwrap();
    assert_eq!(
        File::create(p(&sb, "in/x")).unwrap_err().raw_os_error(),
        Some(libc::EIO)
    );
}

fn the_mount_is_private_and_gone_after_drop() {
    let sb = fuse(16);
    let root = sb.root().to_str().unwrap().to_owned();
    let dir = sb.dir().to_owned();
    let mine = mountinfo("self").unwrap();
    let line = mine
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(root.as_str()))
        .unwrap_or_else(|| panic!("{root} not mounted:\n{mine}"));
    assert!(line.contains(" - fuse imc-sandbox "), "{line}");
    assert!(!line.contains("shared:"), "{line}");
    if let Some(host) = mountinfo("1") {
        assert!(!host.contains(&root), "the host sees {root}");
    }
    sb.crash();
    drop(sb);
    assert!(!mountinfo("self").unwrap().contains(&root));
    if let Some(host) = mountinfo("1") {
        assert!(!host.contains(&root));
    }
    assert!(!dir.exists());
}

/// The backing tree, the stash and limbo share one tmpfs (so renames into the
/// stash and limbo's hard links work), mounted in the sandbox only and gone
/// with it.
fn the_backing_tree_is_on_a_tmpfs_of_its_own() {
    let sb = fuse(16);
    let volume = sb.dir().join("volume");
    let st = statfs_type(sb.tree());
    assert_eq!(st, libc::TMPFS_MAGIC, "backing tree on f_type {st:#x}");
    let dev = |p: &Path| fs::metadata(p).unwrap().dev();
    assert_eq!(dev(sb.tree()), dev(&volume.join("stash")));
    assert_eq!(dev(sb.tree()), dev(&volume.join("limbo")));
    assert_ne!(dev(sb.tree()), dev(sb.dir()));
    let dir = sb.dir().to_owned();
    drop(sb);
    assert!(
        !mountinfo("self")
            .unwrap()
            .contains(volume.to_str().unwrap())
    );
    assert!(!dir.exists());
}

fn statfs_type(path: &Path) -> libc::__fsword_t {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path and a zeroed struct the call fills.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statfs(c.as_ptr(), &mut st) }, 0);
    st.f_type
}

/// A process still holding a file on the volume neither keeps the mount nor
/// blocks the drop: the connection is aborted and the daemon ends.
fn an_open_file_does_not_hang_the_drop() {
    let sb = fuse(16);
    let mut f = File::create(p(&sb, "open")).unwrap();
    f.write_all(b"still open").unwrap();
    let root = sb.root().to_str().unwrap().to_owned();
    let dir = sb.dir().to_owned();
    drop(sb);
    assert!(!mountinfo("self").unwrap().contains(&root));
    assert!(!dir.exists());
    // The connection is gone: the handle is dead, not hanging.
    let err = f.write_all(b" and more").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
}

/// `..` is resolved by the kernel on the mount, so no request names a path
/// outside the backing tree, and nothing outside it is touched.
fn names_cannot_leave_the_backing_tree() {
    let sb = fuse(16);
    fs::create_dir(p(&sb, "d")).unwrap();
    // Leaves the mount: the kernel resolves it, the daemon never sees it.
    let outside = p(&sb, "d/../../escaped");
    fs::write(&outside, "x").unwrap();
    assert!(sb.dir().join("escaped").exists());
    assert!(
        sb.ops()
            .iter()
            .all(|r| r.path != "escaped" && !r.path.contains(".."))
    );
    assert!(sb.violations().is_empty());
    fs::remove_file(outside).unwrap();
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

/// The connector's spool sequence through its `Fs` door (on fuse that door
/// is plain `RealFs` on the mount, and the daemon does the faulting), with
/// faults, rules and a trigger, a full disk and short writes: free space
/// after every step, then the op log of the `Fs` trait's kinds; and the
/// lines of the other kinds (only the FUSE mount has them).
fn spool_script(sb: &Sandbox) -> (Vec<String>, Vec<String>) {
    use imc::fs::Fs;
    let fs = sb.fs();
    let mut log = Vec::new();
    let mut note = |what: String| {
        let free = fs.available_space(sb.root()).unwrap();
        log.push(format!("{what} -> {free} free"));
    };
    let p = |rel: &str| sb.root().join(rel);
    for dir in ["imcdata", "imcdata/work", "imcdata/in"] {
        fs.create_dir(&p(dir)).unwrap();
    }
    fs.sync_dir(&p("imcdata")).unwrap();
    note("spool made".into());
    for id in 1..=3 {
        let work = p(&format!("imcdata/work/{id}"));
        let mut f = fs.create(&work).unwrap();
        for n in [200, 5000, 70_000] {
            let r = f.write(&vec![b'm'; n]).map_err(|e| e.raw_os_error());
            note(format!("message {id}: write {n}: {r:?}"));
        }
        f.sync_all().unwrap();
        drop(f);
        fs.rename(&work, &p(&format!("imcdata/in/{id}"))).unwrap();
        fs.sync_dir(&p("imcdata/in")).unwrap();
        note(format!("message {id} in IN"));
    }
    let meta = fs.metadata(&p("imcdata/in/2")).unwrap();
    note(format!(
        "metadata in/2: {} bytes, dir {}",
        meta.len, meta.is_dir
    ));
    sb.apply(&errno_rule(
        OpKind::Rename,
        "imcdata/in/*",
        1,
        Errno::Eio,
        false,
    ))
    .unwrap();
    sb.arm(
        OpTrigger {
            op: OpKind::Create,
            path: "imcdata/work/*".into(),
            nth: 1,
            process: None,
        },
        Fault::FillDisk { leave: 2 * BLOCK },
    )
    .unwrap();
    let mut f = fs.create(&p("imcdata/work/4")).unwrap();
    note(format!("create 4 fired {:?}", sb.take_fired()));
    for n in [100, 5000, 10_000, 1] {
        let r = f.write(&vec![b'x'; n]).map_err(|e| e.raw_os_error());
        note(format!("message 4: write {n}: {r:?}"));
    }
    drop(f);
    let r = fs
        .rename(&p("imcdata/work/4"), &p("imcdata/in/4"))
        .map_err(|e| e.raw_os_error());
    note(format!("rename 4 into IN: {r:?}"));
    fs.remove_file(&p("imcdata/work/4")).unwrap();
    note(sb.apply(&Fault::FreeDisk).unwrap());
    note(
        sb.apply(&Fault::Rename {
            from: "imcdata/in".into(),
            to: "imcdata/in.old".into(),
        })
        .unwrap(),
    );
    let r = fs
        .metadata(&p("imcdata/in"))
        .map(drop)
        .map_err(|e| e.raw_os_error());
    note(format!("metadata of the renamed IN: {r:?}"));
    note(
        sb.apply(&Fault::Restore {
            path: "imcdata/in".into(),
        })
        .unwrap(),
    );
    let listed = fs.read_dir(&p("imcdata/in")).unwrap();
    note(format!("IN holds {}", listed.len()));
    fs.remove_file(&p("imcdata/in/1")).unwrap();
    note("removed 1".into());
    let (fs_ops, mount_ops): (Vec<OpRecord>, Vec<OpRecord>) =
        sb.ops().into_iter().partition(|r| r.op.in_fs());
    log.extend(lines(&fs_ops));
    (log, lines(&mount_ops))
}

/// The sandbox's conformance: one script, the same free space after every
/// step and the same op log (of the `Fs` trait's kinds) on all three
/// backends. Two exceptions on fuse, both the kernel's doing and checked
/// here: glibc's `opendir` (under `read_dir`) fstats the directory, which the
/// daemon sees as a `metadata` of it; and a `metadata` of a missing path
/// fails in the kernel's lookup, which is logged as a `lookup`, not a
/// `metadata`. Only fuse has the mount-only kinds.
fn one_script_on_vfs_tmpfs_and_fuse() {
    sandbox::tmpfs_available().unwrap();
    let (on_vfs, vfs_mount_ops) = spool_script(&on(Backend::Vfs, 64));
    let (on_tmpfs, tmpfs_mount_ops) = spool_script(&on(Backend::Tmpfs, 64));
    let (mut on_fuse, fuse_mount_ops) = spool_script(&on(Backend::Fuse, 64));
    assert_eq!(on_vfs, on_tmpfs);
    assert_eq!(vfs_mount_ops, Vec::<String>::new());
    assert_eq!(tmpfs_mount_ops, Vec::<String>::new());
    for wanted in [
        "lookup imcdata/in: ENOENT",
        "flush imcdata/work/4: ok",
        "open_dir imcdata/in: ok",
    ] {
        assert!(
            fuse_mount_ops.iter().any(|l| l == wanted),
            "{wanted}: {fuse_mount_ops:#?}"
        );
    }
    let opendir = on_fuse
        .iter()
        .position(|l| l == "metadata imcdata/in: ok")
        .expect("the fstat of opendir");
    assert_eq!(on_fuse[opendir + 1], "read_dir imcdata/in: ok");
    on_fuse.remove(opendir);
    let missing = |l: &String| l.starts_with("metadata ") && l.ends_with(": ENOENT");
    assert!(!on_fuse.iter().any(missing), "{on_fuse:#?}");
    let on_vfs: Vec<String> = on_vfs.into_iter().filter(|l| !missing(l)).collect();
    for (i, (a, b)) in on_vfs.iter().zip(on_fuse.iter()).enumerate() {
        assert_eq!(a, b, "line {i} differs:\n  vfs:  {a}\n  fuse: {b}");
    }
    assert_eq!(on_vfs.len(), on_fuse.len(), "{on_fuse:#?}");
    // The script did fill the volume, cross it, and meet the rule.
    for wanted in ["ENOSPC (quota full)", "short write", "EIO (injected)"] {
        assert!(on_vfs.iter().any(|l| l.contains(wanted)), "{on_vfs:#?}");
    }
}

/// The crash model: fuse drops exactly what vfs drops (tmpfs nothing).
fn one_crash_on_vfs_tmpfs_and_fuse() {
    use imc::fs::Fs;
    fn script(sb: &Sandbox) -> (Vec<String>, Vec<String>) {
        let fs = sb.fs();
        let p = |rel: &str| sb.root().join(rel);
        for dir in ["imcdata", "imcdata/work", "imcdata/in"] {
            fs.create_dir(&p(dir)).unwrap();
        }
        fs.sync_dir(&p("imcdata")).unwrap();
        fs.sync_dir(sb.root()).unwrap();
        // Durable: data and entry synced.
        let mut f = fs.create(&p("imcdata/in/1")).unwrap();
        f.write_all(b"one, synced").unwrap();
        f.sync_all().unwrap();
        fs.sync_dir(&p("imcdata/in")).unwrap();
        f.write_all(b", then more").unwrap();
        drop(f);
        // Data synced, entry not.
        let mut f = fs.create(&p("imcdata/work/2")).unwrap();
        f.write_all(b"two").unwrap();
        f.sync_all().unwrap();
        drop(f);
        // Moved into a synced IN, the source never synced.
        fs.rename(&p("imcdata/work/2"), &p("imcdata/in/2")).unwrap();
        fs.sync_dir(&p("imcdata/in")).unwrap();
        // Nothing synced.
        let mut f = fs.create(&p("imcdata/work/3")).unwrap();
        f.write_all(b"three").unwrap();
        drop(f);
        fs.remove_file(&p("imcdata/in/1")).unwrap();
        let dropped = sb.crash();
        let mut tree = Vec::new();
        for dir in ["imcdata/work", "imcdata/in"] {
            for entry in fs::read_dir(p(dir)).unwrap() {
                let path = entry.unwrap().path();
                let body = fs::read_to_string(&path).unwrap();
                let rel = path.strip_prefix(sb.root()).unwrap().display().to_string();
                tree.push(format!("{rel}: {body}"));
            }
        }
        tree.sort();
        (dropped, tree)
    }
    sandbox::tmpfs_available().unwrap();
    let (vfs_dropped, vfs_tree) = script(&on(Backend::Vfs, 64));
    let (fuse_dropped, fuse_tree) = script(&on(Backend::Fuse, 64));
    let (tmpfs_dropped, tmpfs_tree) = script(&on(Backend::Tmpfs, 64));
    assert_eq!(fuse_dropped, vfs_dropped);
    assert_eq!(fuse_tree, vfs_tree);
    assert!(!vfs_dropped.is_empty());
    // What vfs keeps: the durable entries, at their durable length.
    assert!(
        vfs_tree.contains(&"imcdata/in/1: one, synced".to_owned()),
        "{vfs_tree:?}"
    );
    assert!(
        tmpfs_dropped[0].starts_with("nothing dropped"),
        "{tmpfs_dropped:?}"
    );
    assert_eq!(
        tmpfs_tree,
        ["imcdata/in/2: two", "imcdata/work/3: three"],
        "tmpfs keeps everything"
    );
}

/// Sandboxes mounted and dropped on several threads at once (as the suite's
/// tests do): dropping one must never cut another's connection, even one that
/// got the device number the dropped one just freed. Bounded: 4 threads of 40
/// mounts each.
fn mounts_made_and_dropped_at_once_never_cut_each_other() {
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..40 {
                    let sb =
                        Sandbox::with_backend(SandboxConfig { quota: 64 * BLOCK }, Backend::Fuse)
                            .unwrap_or_else(|e| panic!("thread {t}, mount {i}: {e}"));
                    fs::write(sb.root().join("f"), b"x")
                        .unwrap_or_else(|e| panic!("thread {t}, mount {i}: write: {e}"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("no mount failed");
    }
}

/// The program `name` as found on `PATH`.
fn program(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not on PATH"))
}

/// The same program under the name `other`: the kernel names a process
/// after the file it executed, so this one is another process by name.
fn renamed(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("other");
    std::os::unix::fs::symlink(program(name), &link).unwrap();
    (dir, link)
}

/// One run of `program` with `args` in the sandbox root: its pid, whether it
/// succeeded, and the operations it made (those logged while it ran).
fn run_in(sb: &Sandbox, program: &Path, args: &[String]) -> (u32, bool, Vec<OpRecord>) {
    let before = sb.op_count();
    let mut child = Command::new(program)
        .args(args)
        .current_dir(sb.root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let ok = child.wait().unwrap().success();
    (pid, ok, sb.ops()[before..].to_vec())
}

/// One kind of the mount's operations, made by a real program: `args` with
/// `{i}` replaced by the run's number; `path` the rule's glob.
struct Case {
    op: OpKind,
    program: &'static str,
    args: &'static [&'static str],
    path: &'static str,
}

const CASES: &[Case] = &[
    Case {
        op: OpKind::Lookup,
        program: "cat",
        args: &["a"],
        path: "a",
    },
    Case {
        op: OpKind::Open,
        program: "cat",
        args: &["a"],
        path: "a",
    },
    // cat reads twice (the data, then the end): the 2nd is in its 1st run.
    Case {
        op: OpKind::Read,
        program: "cat",
        args: &["a"],
        path: "a",
    },
    Case {
        op: OpKind::Truncate,
        program: "truncate",
        args: &["-s", "3", "a"],
        path: "a",
    },
    Case {
        op: OpKind::Chmod,
        program: "chmod",
        args: &["600", "a"],
        path: "a",
    },
    Case {
        op: OpKind::Chown,
        program: "chown",
        args: &["1:1", "a"],
        path: "a",
    },
    Case {
        op: OpKind::SetTimes,
        program: "touch",
        args: &["a"],
        path: "a",
    },
    Case {
        op: OpKind::Link,
        program: "ln",
        args: &["a", "b{i}"],
        path: "b*",
    },
    Case {
        op: OpKind::Symlink,
        program: "ln",
        args: &["-s", "a", "s{i}"],
        path: "s*",
    },
    Case {
        op: OpKind::ReadLink,
        program: "readlink",
        args: &["s"],
        path: "s",
    },
    Case {
        op: OpKind::Mknod,
        program: "mkfifo",
        args: &["f{i}"],
        path: "f*",
    },
    Case {
        op: OpKind::Access,
        program: "test",
        args: &["-w", "a"],
        path: "a",
    },
    Case {
        op: OpKind::OpenDir,
        program: "ls",
        args: &["d"],
        path: "d",
    },
    // cp checks the close of what it wrote.
    Case {
        op: OpKind::Flush,
        program: "cp",
        args: &["a", "c{i}"],
        path: "c*",
    },
];

/// For every kind only a process on the mount makes: a rule for the 2nd
/// matching operation of the process named `cat` (`ln`, `cp`...) fails
/// exactly that one, in the run of the program that made it, while the same
/// program under another name is neither failed nor counted; each operation
/// is logged with the pid and name of the process that made it.
fn a_process_gets_the_errno_on_its_nth_operation_of_each_kind() {
    let mut covered = Vec::new();
    for case in CASES {
        let sb = fuse(16);
        fs::write(p(&sb, "a"), "hello\n").unwrap();
        fs::create_dir(p(&sb, "d")).unwrap();
        std::os::unix::fs::symlink("a", p(&sb, "s")).unwrap();
        sb.apply(&Fault::Errno(ErrnoRule {
            op: case.op,
            path: case.path.into(),
            nth: 2,
            errno: Errno::Eio,
            persistent: false,
            process: Some(case.program.into()),
        }))
        .unwrap();
        let (_dir, other) = renamed(case.program);
        let named = program(case.program);
        let mut failed_runs = Vec::new();
        let mut seen = 0;
        for (i, (exe, name)) in [
            (&other, "other"),
            (&named, case.program),
            (&other, "other"),
            (&named, case.program),
            (&other, "other"),
        ]
        .into_iter()
        .enumerate()
        {
            let args: Vec<String> = case
                .args
                .iter()
                .map(|a| a.replace("{i}", &i.to_string()))
                .collect();
            let (pid, ok, ops) = run_in(&sb, exe, &args);
            let what = format!("{} run {i} ({name})", case.op);
            // The chdir before the exec is made under the parent's name.
            let after_exec: Vec<&OpRecord> = ops
                .iter()
                .skip_while(|r| r.caller.as_ref().unwrap().process != name)
                .collect();
            assert!(!after_exec.is_empty(), "{what}: {ops:#?}");
            for r in &after_exec {
                let caller = r.caller.as_ref().unwrap();
                assert_eq!(
                    (caller.pid, caller.process.as_str()),
                    (pid, name),
                    "{what}: {r}"
                );
            }
            let injected = ops
                .iter()
                .filter(|r| matches!(r.outcome, Outcome::Injected(_)))
                .count();
            let matching: Vec<&&OpRecord> = after_exec
                .iter()
                .filter(|r| r.op == case.op && glob_matches(case.path, r))
                .collect();
            assert!(!matching.is_empty(), "{what} made no {}: {ops:#?}", case.op);
            if name == "other" {
                assert!(ok && injected == 0, "{what}: {ops:#?}");
                continue;
            }
            for r in &matching {
                seen += 1;
                let wanted = if seen == 2 {
                    Outcome::Injected(Errno::Eio)
                } else {
                    Outcome::Ok
                };
                assert_eq!(r.outcome, wanted, "{what}, matching op #{seen}: {r}");
            }
            assert_eq!(injected, usize::from(!ok), "{what} ok={ok}: {ops:#?}");
            if !ok {
                failed_runs.push(i);
            }
        }
        assert_eq!(failed_runs.len(), 1, "{}: {failed_runs:?}", case.op);
        covered.push(case.op);
    }
    let mut untested: Vec<OpKind> = OpKind::MOUNT
        .into_iter()
        .filter(|k| !covered.contains(k))
        .collect();
    // Made by the kernel on its own account, tested apart (below).
    untested.retain(|k| *k != OpKind::Fstat);
    assert_eq!(untested, [], "mount-only kinds without a case");
}

/// The rule's glob against a logged operation (either side of a link).
fn glob_matches(glob: &str, r: &OpRecord) -> bool {
    let m = globset::Glob::new(glob).unwrap().compile_matcher();
    m.is_match(&r.path) || r.to.as_deref().is_some_and(|to| m.is_match(to))
}

/// Persistent: every `open` by `cat` from the 2nd on fails; `head` opening
/// the same file between them is untouched.
fn a_persistent_rule_for_a_process_fails_each_of_its_calls() {
    let sb = fuse(16);
    fs::write(p(&sb, "a"), "hello\n").unwrap();
    sb.apply(&Fault::Errno(ErrnoRule {
        op: OpKind::Open,
        path: "a".into(),
        nth: 2,
        errno: Errno::Eacces,
        persistent: true,
        process: Some("cat".into()),
    }))
    .unwrap();
    let a = vec!["a".to_owned()];
    let (cat, head) = (program("cat"), program("head"));
    let outcomes: Vec<bool> = [&cat, &head, &cat, &head, &cat]
        .into_iter()
        .map(|exe| run_in(&sb, exe, &a).1)
        .collect();
    assert_eq!(outcomes, [true, true, false, true, false]);
    let refused: Vec<String> = sb
        .ops()
        .iter()
        .filter(|r| r.outcome == Outcome::Injected(Errno::Eacces))
        .map(|r| format!("{r} by {}", r.caller.as_ref().unwrap().process))
        .collect();
    assert_eq!(
        refused,
        [
            "open a: EACCES (injected) by cat",
            "open a: EACCES (injected) by cat"
        ]
    );
}

/// A `before_op` trigger naming a process fires at that process's nth
/// matching operation only, and says so where it fired.
fn a_trigger_for_a_process_fires_on_that_process_only() {
    let sb = fuse(16);
    fs::write(p(&sb, "a"), "hello\n").unwrap();
    let id = sb
        .arm_at(
            OpTrigger {
                op: OpKind::Open,
                path: "a".into(),
                nth: 1,
                process: Some("cat".into()),
            },
            sandbox::At::Before,
            sandbox::Strike::Fault(Fault::Rename {
                from: "a".into(),
                to: "a.moved".into(),
            }),
        )
        .unwrap();
    // This process's open, and the same program under another name: not it.
    assert_eq!(fs::read_to_string(p(&sb, "a")).unwrap(), "hello\n");
    let (_dir, other) = renamed("cat");
    let a = vec!["a".to_owned()];
    assert!(run_in(&sb, &other, &a).1);
    assert!(sb.take_fired_by_id().is_empty());
    // cat's open: the file is moved right before it reaches the disk.
    let (pid, ok, ops) = run_in(&sb, &program("cat"), &a);
    assert!(!ok, "cat found the file it was opening moved: {ops:#?}");
    assert_eq!(
        sb.take_fired_by_id(),
        [(
            id,
            "renamed file a -> a.moved before open a (#1 by process cat)".to_owned()
        )]
    );
    let open = ops.iter().find(|r| r.op == OpKind::Open).unwrap();
    assert_eq!(open.outcome, Outcome::Failed("ENOENT".into()));
    assert_eq!(open.caller.as_ref().unwrap().pid, pid);
    assert!(backing(&sb, "a.moved").exists());
}

/// The kernel asks for an open file's attributes by handle (an `lseek` to
/// the end): an `fstat` of the file's path, which a rule can fail.
fn the_kernel_asking_by_handle_is_an_fstat() {
    use std::os::fd::AsRawFd;
    let sb = fuse(16);
    fs::write(p(&sb, "a"), "hello\n").unwrap();
    let f = File::open(p(&sb, "a")).unwrap();
    // SAFETY: an open descriptor.
    let end = unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_END) };
    assert_eq!(end, 6);
    let last = sb.ops().pop().unwrap();
    assert_eq!(last.to_string(), "fstat a: ok");
    sb.apply(&errno_rule(OpKind::Fstat, "a", 1, Errno::Eio, false))
        .unwrap();
    // SAFETY: as above.
    let end = unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_END) };
    assert_eq!(end, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EIO)
    );
}

/// Once the process is halted its later calls park until the crash; but the
/// close of its descriptors (as it dies, or as the harness drops its tasks,
/// before it applies the crash) returns at once: parked, it would wait for
/// the very crash it precedes.
fn a_close_after_a_halt_does_not_wait_for_the_crash() {
    let sb = fuse(16);
    let open_before = File::create(p(&sb, "b")).unwrap();
    let (tx, halted) = std::sync::mpsc::channel();
    sb.on_strike(move |s| {
        if matches!(s, sandbox::Strike::Halt) {
            let _ = tx.send(());
        }
    });
    sb.arm_at(
        OpTrigger {
            op: OpKind::Write,
            path: "a".into(),
            nth: 1,
            process: None,
        },
        sandbox::At::Before,
        sandbox::Strike::Halt,
    )
    .unwrap();
    let mut f = File::create(p(&sb, "a")).unwrap();
    let parked = std::thread::spawn(move || f.write(b"never written").map_err(|e| e.kind()));
    halted.recv().unwrap();
    let logged = sb.op_count();
    drop(open_before);
    assert_eq!(
        sb.op_count(),
        logged,
        "the dead process's close is not logged"
    );
    sb.crash();
    assert!(parked.join().unwrap().is_err());
    assert_eq!(
        fs::metadata(backing(&sb, "a"))
            .map(|m| m.len())
            .unwrap_or(0),
        0
    );
}
