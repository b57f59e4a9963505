//! The `vfs` crash model: after `crash()`, only what was made durable remains.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use imc::fs::{Fs, FsFile};
use sandbox::{BLOCK, Fault, Sandbox, SandboxConfig};

/// A sandbox with `imcdata/{work,in}` made before tracking began (durable).
fn sandbox() -> Sandbox {
    let sb = Sandbox::new(SandboxConfig { quota: 64 * BLOCK }).unwrap();
    fs::create_dir_all(sb.root().join("imcdata/work")).unwrap();
    fs::create_dir_all(sb.root().join("imcdata/in")).unwrap();
    sb
}

fn p(sb: &Sandbox, rel: &str) -> PathBuf {
    sb.root().join(rel)
}

/// Creates `rel` through the sandbox and writes `data` without syncing.
fn write(sb: &Sandbox, rel: &str, data: &[u8]) -> Box<dyn FsFile> {
    let mut f = sb.fs().create(&p(sb, rel)).unwrap();
    f.write_all(data).unwrap();
    f
}

fn sync_dir(sb: &Sandbox, rel: &str) {
    sb.fs().sync_dir(&p(sb, rel)).unwrap();
}

fn rename(sb: &Sandbox, from: &str, to: &str) {
    sb.fs().rename(&p(sb, from), &p(sb, to)).unwrap();
}

fn read(sb: &Sandbox, rel: &str) -> Option<Vec<u8>> {
    fs::read(p(sb, rel)).ok()
}

fn names(sb: &Sandbox, rel: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(p(sb, rel))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn unsynced_data_is_lost() {
    let sb = sandbox();
    let f = write(&sb, "imcdata/work/1", &[1; 5000]);
    drop(f);
    sync_dir(&sb, "imcdata/work");
    assert_eq!(
        sb.crash(),
        ["imcdata/work/1 truncated from 5000 to 0 bytes (data not synced)"]
    );
    assert_eq!(read(&sb, "imcdata/work/1").unwrap(), b"");
}

#[test]
fn synced_data_survives_and_later_data_does_not() {
    let sb = sandbox();
    let mut f = write(&sb, "imcdata/work/1", &[1; 3000]);
    f.sync_all().unwrap();
    f.write_all(&[2; 2000]).unwrap();
    drop(f);
    sync_dir(&sb, "imcdata/work");
    assert_eq!(
        sb.crash(),
        ["imcdata/work/1 truncated from 5000 to 3000 bytes (data not synced)"]
    );
    assert_eq!(read(&sb, "imcdata/work/1").unwrap(), vec![1; 3000]);
}

#[test]
fn fully_synced_work_is_untouched() {
    let sb = sandbox();
    let mut f = write(&sb, "imcdata/work/1", b"message");
    f.sync_all().unwrap();
    sync_dir(&sb, "imcdata/work");
    rename(&sb, "imcdata/work/1", "imcdata/in/1");
    sync_dir(&sb, "imcdata/in");
    sync_dir(&sb, "imcdata/work");
    assert!(sb.crash().is_empty());
    assert_eq!(read(&sb, "imcdata/in/1").unwrap(), b"message");
    assert!(names(&sb, "imcdata/work").is_empty());
    // Nothing is left to drop a second time.
    assert!(sb.crash().is_empty());
}

#[test]
fn a_file_in_a_never_synced_directory_disappears() {
    let sb = sandbox();
    let mut f = write(&sb, "imcdata/work/1", b"data");
    // Syncing the file does not make its entry durable.
    f.sync_all().unwrap();
    drop(f);
    assert_eq!(
        sb.crash(),
        ["dropped file imcdata/work/1 (entry not synced)"]
    );
    assert!(names(&sb, "imcdata/work").is_empty());
}

#[test]
fn a_rename_into_an_unsynced_directory_is_undone() {
    let sb = sandbox();
    let mut f = write(&sb, "imcdata/work/1", b"message");
    f.sync_all().unwrap();
    sync_dir(&sb, "imcdata/work");
    rename(&sb, "imcdata/work/1", "imcdata/in/1");
    assert_eq!(
        sb.crash(),
        ["moved imcdata/in/1 back to imcdata/work/1 (rename not synced)"]
    );
    assert!(names(&sb, "imcdata/in").is_empty());
    assert_eq!(read(&sb, "imcdata/work/1").unwrap(), b"message");
}

#[test]
fn a_rename_into_a_synced_directory_stays() {
    let sb = sandbox();
    let mut f = write(&sb, "imcdata/work/1", b"message");
    f.sync_all().unwrap();
    sync_dir(&sb, "imcdata/work");
    rename(&sb, "imcdata/work/1", "imcdata/in/1");
    sync_dir(&sb, "imcdata/in");
    // `work` was not synced after the rename: its entry is still durable, so
    // the message shows under both names, as after a real crash without an
    // atomic rename.
    assert_eq!(
        sb.crash(),
        ["imcdata/work/1 is back as another name of imcdata/in/1 (its removal was not synced)"]
    );
    assert_eq!(read(&sb, "imcdata/in/1").unwrap(), b"message");
    assert_eq!(read(&sb, "imcdata/work/1").unwrap(), b"message");
}

#[test]
fn a_rename_of_a_never_durable_file_is_gone_entirely() {
    let sb = sandbox();
    let mut f = write(&sb, "imcdata/work/1", b"message");
    f.sync_all().unwrap();
    rename(&sb, "imcdata/work/1", "imcdata/in/1");
    sync_dir(&sb, "imcdata/work");
    assert_eq!(sb.crash(), ["dropped file imcdata/in/1 (entry not synced)"]);
    assert!(names(&sb, "imcdata/in").is_empty());
    assert!(names(&sb, "imcdata/work").is_empty());
}

#[test]
fn an_unsynced_removal_is_undone() {
    let sb = sandbox();
    fs::write(p(&sb, "imcdata/in/1"), b"durable").unwrap();
    sb.fs().remove_file(&p(&sb, "imcdata/in/1")).unwrap();
    assert!(read(&sb, "imcdata/in/1").is_none());
    assert_eq!(
        sb.crash(),
        ["brought back file imcdata/in/1 (removal not synced)"]
    );
    assert_eq!(read(&sb, "imcdata/in/1").unwrap(), b"durable");
    // Nothing is kept outside the root once the crash is over.
    assert_eq!(fs::read_dir(sb.dir().join("limbo")).unwrap().count(), 0);
}

#[test]
fn a_synced_removal_is_final() {
    let sb = sandbox();
    fs::write(p(&sb, "imcdata/in/1"), b"durable").unwrap();
    sb.fs().remove_file(&p(&sb, "imcdata/in/1")).unwrap();
    // The removed file is kept aside until its removal is durable...
    assert_eq!(fs::read_dir(sb.dir().join("limbo")).unwrap().count(), 1);
    sync_dir(&sb, "imcdata/in");
    // ...and no longer.
    assert_eq!(fs::read_dir(sb.dir().join("limbo")).unwrap().count(), 0);
    assert!(sb.crash().is_empty());
    assert!(read(&sb, "imcdata/in/1").is_none());
}

#[test]
fn an_overwriting_rename_is_undone() {
    let sb = sandbox();
    fs::write(p(&sb, "imcdata/in/1"), b"old").unwrap();
    let mut f = write(&sb, "imcdata/work/1", b"new");
    f.sync_all().unwrap();
    rename(&sb, "imcdata/work/1", "imcdata/in/1");
    assert_eq!(
        sb.crash(),
        [
            "brought back file imcdata/in/1 (removal not synced)",
            "dropped file imcdata/in/1 (entry not synced)",
        ]
    );
    assert_eq!(read(&sb, "imcdata/in/1").unwrap(), b"old");
    assert!(names(&sb, "imcdata/work").is_empty());
}

#[test]
fn an_unsynced_truncating_create_is_undone() {
    let sb = sandbox();
    fs::write(p(&sb, "imcdata/in/1"), b"hello world").unwrap();
    let f = write(&sb, "imcdata/in/1", b"new");
    drop(f);
    assert_eq!(
        sb.crash(),
        ["imcdata/in/1 back to its 11 synced bytes, was 3 (truncating create not synced)"]
    );
    assert_eq!(read(&sb, "imcdata/in/1").unwrap(), b"hello world");

    // Synced, the new content is what stays.
    let mut f = write(&sb, "imcdata/in/1", b"new");
    f.sync_all().unwrap();
    f.write_all(b" and more").unwrap();
    drop(f);
    assert_eq!(
        sb.crash(),
        ["imcdata/in/1 truncated from 12 to 3 bytes (data not synced)"]
    );
    assert_eq!(read(&sb, "imcdata/in/1").unwrap(), b"new");
}

#[test]
fn a_truncating_create_keeps_only_the_synced_prefix() {
    let sb = sandbox();
    let mut f = write(&sb, "imcdata/in/1", b"synced");
    f.sync_all().unwrap();
    f.write_all(b" unsynced").unwrap();
    drop(f);
    sync_dir(&sb, "imcdata/in");
    let f = write(&sb, "imcdata/in/1", b"again");
    drop(f);
    assert_eq!(
        sb.crash(),
        ["imcdata/in/1 back to its 6 synced bytes, was 5 (truncating create not synced)"]
    );
    assert_eq!(read(&sb, "imcdata/in/1").unwrap(), b"synced");
}

#[test]
fn a_directory_never_made_durable_takes_its_contents_along() {
    let sb = sandbox();
    let fs_ = sb.fs();
    fs_.create_dir(&p(&sb, "imcdata/new")).unwrap();
    let mut f = write(&sb, "imcdata/new/1", b"x");
    f.sync_all().unwrap();
    sync_dir(&sb, "imcdata/new");
    assert_eq!(
        sb.crash(),
        ["dropped directory imcdata/new (entry not synced)"]
    );
    assert_eq!(names(&sb, "imcdata"), ["in", "work"]);
}

#[test]
fn a_new_directory_made_durable_keeps_only_its_durable_entries() {
    let sb = sandbox();
    let fs_ = sb.fs();
    fs_.create_dir(&p(&sb, "imcdata/new")).unwrap();
    sync_dir(&sb, "imcdata");
    let mut f = write(&sb, "imcdata/new/1", b"x");
    f.sync_all().unwrap();
    drop(write(&sb, "imcdata/new/2", b"y"));
    assert_eq!(
        sb.crash(),
        [
            "dropped file imcdata/new/1 (entry not synced)",
            "dropped file imcdata/new/2 (entry not synced)",
        ]
    );
    assert!(names(&sb, "imcdata/new").is_empty());
}

#[test]
fn an_unsynced_directory_rename_is_undone_with_its_contents() {
    let sb = sandbox();
    fs::write(p(&sb, "imcdata/in/1"), b"one").unwrap();
    rename(&sb, "imcdata/in", "imcdata/in2");
    assert_eq!(
        sb.crash(),
        ["moved imcdata/in2 back to imcdata/in (rename not synced)"]
    );
    assert_eq!(names(&sb, "imcdata"), ["in", "work"]);
    assert_eq!(read(&sb, "imcdata/in/1").unwrap(), b"one");
}

#[test]
fn the_summary_is_sorted_by_path() {
    let sb = sandbox();
    for name in ["c", "a", "b"] {
        drop(write(&sb, &format!("imcdata/work/{name}"), b"x"));
    }
    drop(write(&sb, "imcdata/in/z", b"x"));
    assert_eq!(
        sb.crash(),
        [
            "dropped file imcdata/in/z (entry not synced)",
            "dropped file imcdata/work/a (entry not synced)",
            "dropped file imcdata/work/b (entry not synced)",
            "dropped file imcdata/work/c (entry not synced)",
        ]
    );
}

/// Faults are an administrator's doing: durable at once.
#[test]
fn faults_are_durable_immediately() {
    let sb = sandbox();
    fs::write(p(&sb, "imcdata/in/1"), b"one").unwrap();
    fs::write(p(&sb, "imcdata/in/2"), b"two").unwrap();
    // The connector changes `in` without syncing it...
    drop(write(&sb, "imcdata/in/3", b"three"));
    // ...then a fault removes a file there and renames the directory.
    sb.apply(&Fault::Remove {
        path: "imcdata/in/1".into(),
    })
    .unwrap();
    sb.apply(&Fault::Rename {
        from: "imcdata/in".into(),
        to: "imcdata/in.old".into(),
    })
    .unwrap();
    sb.apply(&Fault::FillDisk { leave: BLOCK }).unwrap();
    // Only the connector's unsynced file goes, from where the fault moved it.
    assert_eq!(
        sb.crash(),
        ["dropped file imcdata/in.old/3 (entry not synced)"]
    );
    assert_eq!(names(&sb, "imcdata"), ["in.old", "work"]);
    assert_eq!(names(&sb, "imcdata/in.old"), ["2"]);
    assert!(p(&sb, "ballast.bin").is_file());
}

#[test]
fn a_fault_moving_an_undurable_file_does_not_make_it_durable() {
    let sb = sandbox();
    let mut f = write(&sb, "imcdata/work/1", b"x");
    f.sync_all().unwrap();
    sb.apply(&Fault::Rename {
        from: "imcdata/work/1".into(),
        to: "imcdata/in/1".into(),
    })
    .unwrap();
    assert_eq!(sb.crash(), ["dropped file imcdata/in/1 (entry not synced)"]);
    assert!(names(&sb, "imcdata/in").is_empty());
}

#[test]
fn replace_and_restore_are_durable() {
    let sb = sandbox();
    fs::write(p(&sb, "imcdata/in/1"), b"one").unwrap();
    drop(write(&sb, "imcdata/work/9", b"pending"));
    sb.apply(&Fault::Replace {
        path: "imcdata/in".into(),
    })
    .unwrap();
    sb.apply(&Fault::Restore {
        path: "imcdata/in".into(),
    })
    .unwrap();
    assert_eq!(
        sb.crash(),
        ["dropped file imcdata/work/9 (entry not synced)"]
    );
    assert_eq!(read(&sb, "imcdata/in/1").unwrap(), b"one");
}

#[test]
fn the_quota_counts_what_survives_the_crash() {
    let sb = sandbox();
    assert_eq!(sb.available_space(), 64 * BLOCK);
    let mut f = write(&sb, "imcdata/work/1", &[1; 100]);
    f.sync_all().unwrap();
    f.write_all(&[2; 3 * 4096]).unwrap();
    drop(f);
    sync_dir(&sb, "imcdata/work");
    drop(write(&sb, "imcdata/in/2", &[3; 5 * 4096]));
    assert_eq!(sb.available_space(), (64 - 4 - 5) * BLOCK);
    let lines = sb.crash();
    assert_eq!(lines.len(), 2, "{lines:?}");
    // One block for the 100 synced bytes.
    assert_eq!(sb.available_space(), 63 * BLOCK);
    assert_eq!(sb.fs().available_space(sb.root()).unwrap(), 63 * BLOCK);
    // And the freed blocks can be written again, exactly.
    let mut g = sb.fs().create(&p(&sb, "imcdata/work/fill")).unwrap();
    assert!(g.write_all(&vec![0; 64 * 4096]).is_err());
    assert_eq!(
        fs::metadata(p(&sb, "imcdata/work/fill")).unwrap().len(),
        63 * BLOCK
    );
}

#[test]
fn the_crash_logs_no_operation() {
    let sb = sandbox();
    drop(write(&sb, "imcdata/work/1", b"x"));
    let ops = sb.op_count();
    sb.crash();
    assert_eq!(sb.op_count(), ops);
}

/// A directory a fault makes (here `restore` recreating a removed IN) is
/// durable at once, also in a directory where the connector has unsynced
/// changes: a crash must not drop it, nor what the connector made durable in it.
#[test]
fn a_directory_a_fault_creates_is_durable_beside_unsynced_changes() {
    let sb = sandbox();
    // An unsynced change in `imcdata`: the connector made a directory there.
    sb.fs().create_dir(&p(&sb, "imcdata/new")).unwrap();
    sb.apply(&Fault::Remove {
        path: "imcdata/in".into(),
    })
    .unwrap();
    sb.apply(&Fault::Restore {
        path: "imcdata/in".into(),
    })
    .unwrap();
    let mut f = write(&sb, "imcdata/in/1", b"x");
    f.sync_all().unwrap();
    sync_dir(&sb, "imcdata/in");
    assert_eq!(
        sb.crash(),
        ["dropped directory imcdata/new (entry not synced)"]
    );
    assert_eq!(names(&sb, "imcdata"), ["in", "work"]);
    assert_eq!(read(&sb, "imcdata/in/1").unwrap(), b"x");
}

/// A fault moving durable files into a directory the connector created and
/// never synced (`restore` of IN into the IN recreated meanwhile) makes that
/// directory's entry durable too: the files the administrator moved survive.
#[test]
fn a_fault_moving_files_into_an_undurable_directory_makes_it_durable() {
    let sb = sandbox();
    fs::write(p(&sb, "imcdata/in/1"), b"one").unwrap();
    sb.apply(&Fault::Rename {
        from: "imcdata/in".into(),
        to: "imcdata/in.bak".into(),
    })
    .unwrap();
    // The connector recreates IN; the flush of imcdata never happens.
    sb.fs().create_dir(&p(&sb, "imcdata/in")).unwrap();
    drop(write(&sb, "imcdata/work/2", b"pending"));
    sb.apply(&Fault::Restore {
        path: "imcdata/in".into(),
    })
    .unwrap();
    assert_eq!(
        sb.crash(),
        ["dropped file imcdata/work/2 (entry not synced)"]
    );
    assert_eq!(names(&sb, "imcdata"), ["in", "work"]);
    assert_eq!(read(&sb, "imcdata/in/1").unwrap(), b"one");
}

/// A file with two durable names (what a crash leaves of a rename whose source
/// directory was not synced) keeps both when a fault takes the directory of one
/// of them away and brings it back (`replace`, then `restore` of IN).
#[test]
fn a_directory_back_from_the_stash_keeps_a_file_known_under_two_names() {
    let sb = sandbox();
    let mut f = write(&sb, "imcdata/work/1", b"x");
    f.sync_all().unwrap();
    drop(f);
    sync_dir(&sb, "imcdata/work");
    rename(&sb, "imcdata/work/1", "imcdata/in/1");
    sync_dir(&sb, "imcdata/in");
    assert_eq!(
        sb.crash(),
        ["imcdata/work/1 is back as another name of imcdata/in/1 (its removal was not synced)"]
    );
    sb.apply(&Fault::Replace {
        path: "imcdata/in".into(),
    })
    .unwrap();
    sb.apply(&Fault::Restore {
        path: "imcdata/in".into(),
    })
    .unwrap();
    assert_eq!(sb.crash(), Vec::<String>::new());
    assert_eq!(read(&sb, "imcdata/in/1").unwrap(), b"x");
    assert_eq!(read(&sb, "imcdata/work/1").unwrap(), b"x");
}

/// The connector's unsynced file, moved by a fault into a directory the same
/// fault makes (`restore` recreating `work` and moving `work.bak`'s entries into
/// it), stays undurable there.
#[test]
fn a_fault_moving_an_undurable_file_into_a_new_directory_does_not_make_it_durable() {
    let sb = sandbox();
    let mut f = write(&sb, "imcdata/work/1", b"x");
    f.sync_all().unwrap();
    drop(f);
    sb.apply(&Fault::Rename {
        from: "imcdata/work".into(),
        to: "imcdata/work.bak".into(),
    })
    .unwrap();
    fs::create_dir(p(&sb, "imcdata/work")).unwrap();
    sb.apply(&Fault::Restore {
        path: "imcdata/work".into(),
    })
    .unwrap();
    assert_eq!(
        sb.crash(),
        ["dropped file imcdata/work/1 (entry not synced)"]
    );
}

/// A move into IN through a handle on IN, IN renamed away by a fault (a backup
/// job), then the handle's flush: the flush is of IN's inode, so the message's
/// entry is durable in the renamed directory and a crash keeps it there. The
/// calls are logged under the path the handle was opened at.
#[test]
fn a_directory_handle_flush_makes_its_entries_durable_where_the_directory_went() {
    let sb = sandbox();
    let mut f = write(&sb, "imcdata/work/1", b"message");
    f.sync_all().unwrap();
    drop(f);
    sync_dir(&sb, "imcdata/work");
    let dir = sb.fs().open_dir(&p(&sb, "imcdata/in")).unwrap();
    dir.rename_in(&p(&sb, "imcdata/work/1"), "1").unwrap();
    sb.apply(&Fault::Rename {
        from: "imcdata/in".into(),
        to: "imcdata/in.bak".into(),
    })
    .unwrap();
    // By path the flush has nothing to flush; through the handle it does.
    assert!(sb.fs().sync_dir(&p(&sb, "imcdata/in")).is_err());
    dir.sync_all().unwrap();
    sync_dir(&sb, "imcdata/work");
    assert_eq!(sb.crash(), Vec::<String>::new());
    assert_eq!(read(&sb, "imcdata/in.bak/1").unwrap(), b"message");
    assert!(names(&sb, "imcdata/work").is_empty());
    let ops: Vec<String> = sb.ops().iter().map(|op| op.to_string()).collect();
    assert_eq!(
        ops[ops.len() - 4..],
        [
            "rename imcdata/work/1 -> imcdata/in/1: ok",
            "sync_dir imcdata/in: ENOENT",
            "sync_dir imcdata/in: ok",
            "sync_dir imcdata/work: ok",
        ]
    );
}

/// The same without the handle's flush: the entry was never durable in the
/// renamed directory, so the crash puts the message back in work.
#[test]
fn an_unflushed_move_through_a_handle_is_undone_where_the_directory_went() {
    let sb = sandbox();
    let mut f = write(&sb, "imcdata/work/1", b"message");
    f.sync_all().unwrap();
    drop(f);
    sync_dir(&sb, "imcdata/work");
    let dir = sb.fs().open_dir(&p(&sb, "imcdata/in")).unwrap();
    dir.rename_in(&p(&sb, "imcdata/work/1"), "1").unwrap();
    sb.apply(&Fault::Rename {
        from: "imcdata/in".into(),
        to: "imcdata/in.bak".into(),
    })
    .unwrap();
    assert_eq!(
        sb.crash(),
        ["moved imcdata/in.bak/1 back to imcdata/work/1 (rename not synced)"]
    );
    assert_eq!(read(&sb, "imcdata/work/1").unwrap(), b"message");
}

/// Removing and moving out through a handle reach the directory where it is
/// now, and a handle cannot be opened on a file or outside the root.
#[test]
fn a_handle_removes_and_moves_out_of_the_directory_where_it_is_now() {
    let sb = sandbox();
    for name in ["1", "2"] {
        drop(write(&sb, &format!("imcdata/in/{name}"), b"m"));
    }
    let dir = sb.fs().open_dir(&p(&sb, "imcdata/in")).unwrap();
    sb.apply(&Fault::Rename {
        from: "imcdata/in".into(),
        to: "imcdata/in.bak".into(),
    })
    .unwrap();
    dir.remove_file("1").unwrap();
    dir.rename_out("2", &p(&sb, "imcdata/work/2")).unwrap();
    assert!(names(&sb, "imcdata/in.bak").is_empty());
    assert_eq!(names(&sb, "imcdata/work"), ["2"]);
    let ops: Vec<String> = sb.ops().iter().map(|op| op.to_string()).collect();
    assert_eq!(
        ops[ops.len() - 2..],
        [
            "remove imcdata/in/1: ok",
            "rename imcdata/in/2 -> imcdata/work/2: ok"
        ]
    );
    let enotdir = sb.fs().open_dir(&p(&sb, "imcdata/work/2")).err().unwrap();
    assert_eq!(enotdir.raw_os_error(), Some(libc::ENOTDIR));
    let outside = sb.fs().open_dir(&std::env::temp_dir()).err().unwrap();
    assert_eq!(outside.raw_os_error(), Some(libc::EACCES));
    assert_eq!(sb.violations().len(), 1, "{:?}", sb.violations());
}
