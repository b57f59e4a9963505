//! Each fault changes the disk for real, and `Restore` undoes it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use imc::fs::Fs;
use sandbox::{BLOCK, Fault, Sandbox, SandboxConfig, SandboxError};

/// A sandbox with `imcdata/in` holding two messages (a block each).
fn sandbox(quota: u64) -> Sandbox {
    let sb = Sandbox::new(SandboxConfig { quota }).unwrap();
    fs::create_dir_all(sb.root().join("imcdata/in")).unwrap();
    fs::write(sb.root().join("imcdata/in/1"), "one").unwrap();
    fs::write(sb.root().join("imcdata/in/2"), "two").unwrap();
    sb
}

fn p(sb: &Sandbox, rel: &str) -> PathBuf {
    sb.root().join(rel)
}

fn names(sb: &Sandbox, rel: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(p(sb, rel))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn remove(path: &str) -> Fault {
    Fault::Remove { path: path.into() }
}

fn rename(from: &str, to: &str) -> Fault {
    Fault::Rename {
        from: from.into(),
        to: to.into(),
    }
}

fn replace(path: &str) -> Fault {
    Fault::Replace { path: path.into() }
}

fn restore(path: &str) -> Fault {
    Fault::Restore { path: path.into() }
}

#[test]
fn remove_deletes_a_directory_with_its_contents() {
    let sb = sandbox(1 << 20);
    let d = sb.apply(&remove("imcdata/in")).unwrap();
    assert_eq!(d, "removed directory imcdata/in");
    assert!(!p(&sb, "imcdata/in").exists());
    assert!(p(&sb, "imcdata").is_dir());
}

#[test]
fn remove_deletes_a_file() {
    let sb = sandbox(1 << 20);
    assert_eq!(
        sb.apply(&remove("./imcdata//in/1")).unwrap(),
        "removed file imcdata/in/1"
    );
    assert!(!p(&sb, "imcdata/in/1").exists());
    assert_eq!(names(&sb, "imcdata/in"), ["2"]);
}

#[test]
fn remove_of_a_missing_path_is_an_error() {
    let sb = sandbox(1 << 20);
    let err = sb.apply(&remove("imcdata/nope")).unwrap_err();
    assert!(matches!(err, SandboxError::Io { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("imcdata/nope") && msg.contains("ENOENT"),
        "{msg}"
    );
    assert!(!msg.contains(sb.root().to_str().unwrap()), "{msg}");
}

#[test]
fn rename_moves_the_directory_with_its_contents() {
    let sb = sandbox(1 << 20);
    let d = sb.apply(&rename("imcdata/in", "imcdata/in.old")).unwrap();
    assert_eq!(d, "renamed directory imcdata/in -> imcdata/in.old");
    assert!(!p(&sb, "imcdata/in").exists());
    assert_eq!(names(&sb, "imcdata/in.old"), ["1", "2"]);
}

#[test]
fn rename_refuses_to_overwrite() {
    let sb = sandbox(1 << 20);
    fs::create_dir(p(&sb, "imcdata/out")).unwrap();
    let err = sb.apply(&rename("imcdata/in", "imcdata/out")).unwrap_err();
    assert!(matches!(err, SandboxError::Conflict { .. }), "{err:?}");
    assert_eq!(names(&sb, "imcdata/in"), ["1", "2"]);
}

#[test]
fn replace_stashes_the_directory_and_leaves_a_file() {
    let sb = sandbox(1 << 20);
    let d = sb.apply(&replace("imcdata/in")).unwrap();
    assert_eq!(
        d,
        "replaced directory imcdata/in with an empty file (original stashed)"
    );
    let meta = fs::metadata(p(&sb, "imcdata/in")).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.len(), 0);
    // The contents are kept, outside the root.
    let stash = sb.dir().join("stash");
    let stashed: Vec<_> = fs::read_dir(&stash)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(stashed.len(), 1);
    assert_eq!(fs::read(stashed[0].join("1")).unwrap(), b"one");
    assert!(!stash.starts_with(sb.root()));
}

#[test]
fn restore_after_remove_recreates_an_empty_directory() {
    let sb = sandbox(1 << 20);
    sb.apply(&remove("imcdata/in")).unwrap();
    let d = sb.apply(&restore("imcdata/in")).unwrap();
    assert_eq!(d, "restored imcdata/in: recreated it as an empty directory");
    assert!(p(&sb, "imcdata/in").is_dir());
    assert!(names(&sb, "imcdata/in").is_empty());
}

#[test]
fn restore_after_remove_of_a_recreated_directory_keeps_it() {
    let sb = sandbox(1 << 20);
    sb.apply(&remove("imcdata/in")).unwrap();
    sb.fs().create_dir(&p(&sb, "imcdata/in")).unwrap();
    drop(sb.fs().create(&p(&sb, "imcdata/in/new")).unwrap());
    sb.apply(&restore("imcdata/in")).unwrap();
    assert_eq!(names(&sb, "imcdata/in"), ["new"]);
}

#[test]
fn restore_after_rename_renames_back() {
    let sb = sandbox(1 << 20);
    sb.apply(&rename("imcdata/in", "imcdata/in.old")).unwrap();
    let d = sb.apply(&restore("imcdata/in")).unwrap();
    assert_eq!(
        d,
        "restored imcdata/in from imcdata/in.old: moved the directory back"
    );
    assert!(!p(&sb, "imcdata/in.old").exists());
    assert_eq!(fs::read(p(&sb, "imcdata/in/2")).unwrap(), b"two");
}

#[test]
fn restore_after_rename_merges_into_a_recreated_directory() {
    let sb = sandbox(1 << 20);
    sb.apply(&rename("imcdata/in", "imcdata/in.old")).unwrap();
    // The connector notices and recreates its directory, then keeps working.
    let fs_ = sb.fs();
    fs_.create_dir(&p(&sb, "imcdata/in")).unwrap();
    fs_.create(&p(&sb, "imcdata/in/3"))
        .unwrap()
        .write_all(b"three")
        .unwrap();
    let d = sb.apply(&restore("imcdata/in")).unwrap();
    assert_eq!(
        d,
        "restored imcdata/in from imcdata/in.old: moved 2 entries into the directory recreated meanwhile"
    );
    assert_eq!(names(&sb, "imcdata/in"), ["1", "2", "3"]);
    assert_eq!(fs::read(p(&sb, "imcdata/in/1")).unwrap(), b"one");
    assert!(!p(&sb, "imcdata/in.old").exists());
}

#[test]
fn restore_after_rename_refuses_a_name_clash_and_moves_nothing() {
    let sb = sandbox(1 << 20);
    sb.apply(&rename("imcdata/in", "imcdata/in.old")).unwrap();
    fs::create_dir(p(&sb, "imcdata/in")).unwrap();
    fs::write(p(&sb, "imcdata/in/2"), "new two").unwrap();
    let err = sb.apply(&restore("imcdata/in")).unwrap_err();
    assert!(matches!(err, SandboxError::Conflict { .. }), "{err:?}");
    assert!(err.to_string().contains("`2`"), "{err}");
    assert_eq!(names(&sb, "imcdata/in.old"), ["1", "2"]);
    assert_eq!(names(&sb, "imcdata/in"), ["2"]);
    // Once the clash is gone, the restore can be retried.
    fs::remove_file(p(&sb, "imcdata/in/2")).unwrap();
    sb.apply(&restore("imcdata/in")).unwrap();
    assert_eq!(names(&sb, "imcdata/in"), ["1", "2"]);
}

#[test]
fn restore_after_replace_brings_the_directory_back() {
    let sb = sandbox(1 << 20);
    sb.apply(&replace("imcdata/in")).unwrap();
    let d = sb.apply(&restore("imcdata/in")).unwrap();
    assert_eq!(
        d,
        "restored imcdata/in from the stash: removed the placeholder file, moved the directory back"
    );
    assert_eq!(names(&sb, "imcdata/in"), ["1", "2"]);
    assert!(
        fs::read_dir(sb.dir().join("stash"))
            .unwrap()
            .next()
            .is_none()
    );
}

#[test]
fn restore_after_replace_merges_into_a_recreated_directory() {
    let sb = sandbox(1 << 20);
    sb.apply(&replace("imcdata/in")).unwrap();
    let fs_ = sb.fs();
    fs_.remove_file(&p(&sb, "imcdata/in")).unwrap();
    fs_.create_dir(&p(&sb, "imcdata/in")).unwrap();
    drop(fs_.create(&p(&sb, "imcdata/in/3")).unwrap());
    sb.apply(&restore("imcdata/in")).unwrap();
    assert_eq!(names(&sb, "imcdata/in"), ["1", "2", "3"]);
}

#[test]
fn restores_undo_in_reverse_order() {
    let sb = sandbox(1 << 20);
    sb.apply(&rename("imcdata/in", "imcdata/a")).unwrap();
    fs::create_dir(p(&sb, "imcdata/in")).unwrap();
    fs::write(p(&sb, "imcdata/in/x"), "x").unwrap();
    sb.apply(&replace("imcdata/in")).unwrap();
    // Undo the replace first, then the rename.
    sb.apply(&restore("imcdata/in")).unwrap();
    assert_eq!(names(&sb, "imcdata/in"), ["x"]);
    sb.apply(&restore("imcdata/in")).unwrap();
    assert_eq!(names(&sb, "imcdata/in"), ["1", "2", "x"]);
    assert!(sb.apply(&restore("imcdata/in")).is_err());
}

#[test]
fn restore_with_nothing_to_restore_is_an_error() {
    let sb = sandbox(1 << 20);
    let err = sb.apply(&restore("imcdata/in")).unwrap_err();
    assert!(matches!(err, SandboxError::Conflict { .. }), "{err:?}");
    assert!(err.to_string().contains("nothing to restore"), "{err}");
    sb.apply(&remove("imcdata/in")).unwrap();
    sb.apply(&restore("imcdata/in")).unwrap();
    assert!(sb.apply(&restore("imcdata/in")).is_err());
}

#[test]
fn fill_disk_leaves_exactly_the_requested_blocks() {
    let sb = sandbox(1 << 20);
    let fs_ = sb.fs();
    fs_.create(&p(&sb, "imcdata/in/3"))
        .unwrap()
        .write_all(&[0; 1000])
        .unwrap();
    let d = sb.apply(&Fault::FillDisk { leave: 2 * BLOCK }).unwrap();
    // 256 blocks; the two messages written behind the sandbox's back count
    // too, a whole block each, like the 1000-byte one.
    let ballast_len = (256 - 3 - 2) * BLOCK;
    assert_eq!(
        d,
        format!(
            "filled disk: ballast.bin is {ballast_len} bytes, leaving 8192 of 1048576 bytes free"
        )
    );
    assert_eq!(fs_.available_space(sb.root()).unwrap(), 2 * BLOCK);

    let meta = fs::metadata(p(&sb, "ballast.bin")).unwrap();
    assert_eq!(meta.len(), ballast_len);
    assert!(
        meta.blocks() * 512 >= meta.len(),
        "ballast is sparse: {meta:?}"
    );

    // And exactly that much can still be written.
    let mut f = fs_.create(&p(&sb, "imcdata/in/4")).unwrap();
    assert!(f.write_all(&[0; 10_000]).is_err());
    assert_eq!(
        fs::metadata(p(&sb, "imcdata/in/4")).unwrap().len(),
        2 * BLOCK
    );
}

#[test]
fn fill_disk_rounds_what_it_leaves_down_to_a_block() {
    let sb = sandbox(1 << 20);
    let d = sb.apply(&Fault::FillDisk { leave: 4321 }).unwrap();
    let ballast_len = (256 - 2 - 1) * BLOCK;
    assert_eq!(
        d,
        format!(
            "filled disk: ballast.bin is {ballast_len} bytes, leaving 4096 of 1048576 bytes free \
             (4321 asked; space comes in 4096-byte blocks)"
        )
    );
    assert_eq!(sb.available_space(), BLOCK);
    assert_eq!(
        fs::metadata(p(&sb, "ballast.bin")).unwrap().len(),
        ballast_len
    );
    // Less than a block to leave: nothing is left.
    sb.apply(&Fault::FillDisk { leave: BLOCK - 1 }).unwrap();
    assert_eq!(sb.available_space(), 0);
}

#[test]
fn fill_disk_grows_an_existing_ballast() {
    let sb = sandbox(1 << 20);
    sb.apply(&Fault::FillDisk { leave: 100_000 }).unwrap();
    assert_eq!(sb.available_space(), 24 * BLOCK);
    sb.apply(&Fault::FillDisk { leave: 10 }).unwrap();
    assert_eq!(sb.available_space(), 0);
    let meta = fs::metadata(p(&sb, "ballast.bin")).unwrap();
    assert_eq!(meta.len(), (256 - 2) * BLOCK);
    assert!(meta.blocks() * 512 >= meta.len());
}

#[test]
fn fill_disk_leaves_a_fuller_disk_as_is() {
    // Three blocks, two of them taken by the messages.
    let sb = sandbox(3 * BLOCK + 1000);
    assert_eq!(sb.quota(), 3 * BLOCK);
    let d = sb.apply(&Fault::FillDisk { leave: 5000 }).unwrap();
    assert_eq!(
        d,
        "disk left as is: 4096 bytes free, not more than the 5000 to leave"
    );
    assert!(!p(&sb, "ballast.bin").exists());
    assert_eq!(sb.available_space(), BLOCK);
}

#[test]
fn free_disk_removes_the_ballast() {
    let sb = sandbox(1 << 20);
    sb.apply(&Fault::FillDisk { leave: 0 }).unwrap();
    assert_eq!(sb.available_space(), 0);
    let d = sb.apply(&Fault::FreeDisk).unwrap();
    assert_eq!(
        d,
        format!("freed disk: removed ballast.bin ({} bytes)", 254 * BLOCK)
    );
    assert!(!p(&sb, "ballast.bin").exists());
    assert_eq!(sb.available_space(), 254 * BLOCK);
    let err = sb.apply(&Fault::FreeDisk).unwrap_err();
    assert!(err.to_string().contains("no ballast"), "{err}");
}

#[test]
fn faults_on_invalid_paths_are_refused() {
    let sb = sandbox(1 << 20);
    for fault in [
        remove("/etc"),
        remove("../stash"),
        rename("imcdata/in", "../in"),
        replace(""),
        restore("."),
    ] {
        let err = sb.apply(&fault).unwrap_err();
        assert!(
            matches!(err, SandboxError::InvalidPath { .. }),
            "{fault}: {err:?}"
        );
    }
    assert_eq!(names(&sb, "imcdata/in"), ["1", "2"]);
}

#[test]
fn descriptions_never_show_the_temporary_directory() {
    let sb = sandbox(1 << 20);
    let base = sb.dir().to_str().unwrap().to_owned();
    let mut lines = vec![
        sb.apply(&replace("imcdata/in")).unwrap(),
        sb.apply(&restore("imcdata/in")).unwrap(),
        sb.apply(&Fault::FillDisk { leave: 1 }).unwrap(),
        sb.apply(&Fault::FreeDisk).unwrap(),
    ];
    lines.extend(sb.apply(&remove("missing")).err().map(|e| e.to_string()));
    for line in lines {
        assert!(!line.contains(&base), "{line}");
        assert!(!line.contains('\n'), "{line}");
    }
}

#[test]
fn a_restore_out_of_order_is_refused_and_next_restore_undoes_in_reverse() {
    let sb = sandbox(1 << 20);
    sb.apply(&rename("imcdata/in", "imcdata/in2")).unwrap();
    sb.apply(&replace("imcdata/in2")).unwrap();
    // Undoing the rename first would move the placeholder file back as IN.
    let e = sb.apply(&restore("imcdata/in")).unwrap_err().to_string();
    assert!(e.contains("restore imcdata/in2 first"), "{e}");
    // In reverse order, everything comes back whole.
    let mut undone = Vec::new();
    while let Some(next) = sb.next_restore() {
        assert!(!next.removed_file && !next.vanished, "{next:?}");
        sb.apply(&restore(&next.path)).unwrap();
        undone.push(next.path);
    }
    assert_eq!(undone, ["imcdata/in2", "imcdata/in"]);
    assert_eq!(names(&sb, "imcdata/in"), ["1", "2"]);
    assert!(!p(&sb, "imcdata/in2").exists());
}

#[test]
fn next_restore_tells_a_removed_file_and_a_vanished_copy() {
    let sb = sandbox(1 << 20);
    sb.apply(&remove("imcdata/in/1")).unwrap();
    let next = sb.next_restore().unwrap();
    assert!(next.removed_file && !next.vanished, "{next:?}");
    sb.forget_restore("imcdata/in/1");
    sb.apply(&rename("imcdata/in", "imcdata/in2")).unwrap();
    fs::remove_dir_all(p(&sb, "imcdata/in2")).unwrap();
    let next = sb.next_restore().unwrap();
    assert_eq!(next.path, "imcdata/in");
    assert!(next.vanished && !next.removed_file, "{next:?}");
    sb.forget_restore("imcdata/in");
    assert_eq!(sb.next_restore(), None);
}
