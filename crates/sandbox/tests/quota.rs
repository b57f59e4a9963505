//! The byte quota: free space as reported is exactly what writes can consume.

use std::io::Write;
use std::sync::Arc;

use imc::fs::Fs;
use sandbox::{Errno, Fault, Outcome, Sandbox, SandboxConfig};

fn sandbox(quota: u64) -> Sandbox {
    Sandbox::new(SandboxConfig { quota }).unwrap()
}

fn free(sb: &Sandbox) -> u64 {
    sb.fs().available_space(sb.root()).unwrap()
}

fn write_file(sb: &Sandbox, rel: &str, len: usize) {
    let mut f = sb.fs().create(&sb.root().join(rel)).unwrap();
    f.write_all(&vec![b'x'; len]).unwrap();
}

#[test]
fn default_quota_is_64_mib() {
    let sb = Sandbox::new(SandboxConfig::default()).unwrap();
    assert_eq!(sb.quota(), 64 << 20);
    assert_eq!(free(&sb), 64 << 20);
}

#[test]
fn available_space_decreases_by_written_bytes() {
    let sb = sandbox(1000);
    assert_eq!(free(&sb), 1000);
    let mut f = sb.fs().create(&sb.root().join("a")).unwrap();
    f.write_all(&[1; 300]).unwrap();
    assert_eq!(free(&sb), 700);
    f.write_all(&[1; 50]).unwrap();
    assert_eq!(free(&sb), 650);
    assert_eq!(sb.available_space(), 650);
}

#[test]
fn directories_and_empty_files_cost_nothing() {
    let sb = sandbox(1000);
    let fs = sb.fs();
    fs.create_dir(&sb.root().join("d")).unwrap();
    drop(fs.create(&sb.root().join("d/empty")).unwrap());
    assert_eq!(free(&sb), 1000);
}

#[test]
fn write_crossing_the_quota_is_short_then_enospc() {
    let sb = sandbox(100);
    let path = sb.root().join("a");
    let mut f = sb.fs().create(&path).unwrap();
    f.write_all(&[1; 60]).unwrap();

    // A single write is cut to what fits, like a kernel's short write.
    assert_eq!(f.write(&[2; 70]).unwrap(), 40);
    // Then nothing fits any more.
    let err = f.write(&[3; 10]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(Errno::Enospc.raw()));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 100);
    assert_eq!(free(&sb), 0);

    let outcomes: Vec<Outcome> = sb.ops().into_iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes[2..4],
        [
            Outcome::ShortWrite {
                written: 40,
                requested: 70
            },
            Outcome::QuotaFull
        ]
    );
}

#[test]
fn write_all_fills_the_quota_exactly_then_fails() {
    let sb = sandbox(100);
    let path = sb.root().join("a");
    let mut f = sb.fs().create(&path).unwrap();
    let err = f.write_all(&[7; 150]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(Errno::Enospc.raw()));
    assert_eq!(std::fs::read(&path).unwrap(), vec![7; 100]);
    assert_eq!(free(&sb), 0);
}

#[test]
fn removing_a_file_frees_its_bytes() {
    let sb = sandbox(1000);
    write_file(&sb, "a", 400);
    write_file(&sb, "b", 100);
    assert_eq!(free(&sb), 500);
    sb.fs().remove_file(&sb.root().join("a")).unwrap();
    assert_eq!(free(&sb), 900);
    // A failed removal frees nothing.
    assert!(sb.fs().remove_file(&sb.root().join("a")).is_err());
    assert_eq!(free(&sb), 900);
}

#[test]
fn recreating_a_file_frees_its_old_length() {
    let sb = sandbox(1000);
    write_file(&sb, "a", 400);
    let _f = sb.fs().create(&sb.root().join("a")).unwrap();
    assert_eq!(free(&sb), 1000);
}

#[test]
fn rename_moves_nothing_but_overwriting_frees_the_target() {
    let sb = sandbox(1000);
    let fs = sb.fs();
    write_file(&sb, "a", 300);
    fs.rename(&sb.root().join("a"), &sb.root().join("b"))
        .unwrap();
    assert_eq!(free(&sb), 700);
    write_file(&sb, "c", 200);
    fs.rename(&sb.root().join("c"), &sb.root().join("b"))
        .unwrap();
    assert_eq!(free(&sb), 800);
}

/// Whatever the history, writing until ENOSPC consumes exactly the free space
/// reported before.
#[test]
fn available_space_is_what_can_still_be_written() {
    let sb = sandbox(10_000);
    let fs = sb.fs();
    fs.create_dir(&sb.root().join("d")).unwrap();
    write_file(&sb, "d/a", 1234);
    write_file(&sb, "b", 999);
    fs.remove_file(&sb.root().join("b")).unwrap();
    // A fault that changes the tree behind the counter's back.
    std::fs::write(sb.root().join("d/outside-write"), [0; 500]).unwrap();
    sb.apply(&Fault::Remove { path: "d".into() }).unwrap();
    write_file(&sb, "c", 77);

    let before = free(&sb);
    assert_eq!(before, 10_000 - 77);
    let mut f = fs.create(&sb.root().join("fill")).unwrap();
    assert!(f.write_all(&vec![0; 20_000]).is_err());
    assert_eq!(
        std::fs::metadata(sb.root().join("fill")).unwrap().len(),
        before
    );
    assert_eq!(free(&sb), 0);
}

#[test]
fn faults_changing_the_tree_are_recounted() {
    let sb = sandbox(1000);
    std::fs::create_dir(sb.root().join("d")).unwrap();
    std::fs::write(sb.root().join("d/x"), [0; 300]).unwrap();
    // Written behind the sandbox's back: not counted until a fault recounts.
    assert_eq!(free(&sb), 1000);
    sb.apply(&Fault::Replace { path: "d".into() }).unwrap();
    // The replaced tree went to the stash, outside the root.
    assert_eq!(free(&sb), 1000);
    sb.apply(&Fault::Restore { path: "d".into() }).unwrap();
    assert_eq!(free(&sb), 700);
}

/// Concurrent writers together never cross the quota, and fill it exactly.
#[test]
fn concurrent_writers_share_the_quota_exactly() {
    let sb = Arc::new(sandbox(5_000));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let sb = Arc::clone(&sb);
            std::thread::spawn(move || {
                let mut f = sb.fs().create(&sb.root().join(format!("f{i}"))).unwrap();
                for _ in 0..20 {
                    if f.write_all(&[i; 97]).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let on_disk: u64 = (0..8)
        .map(|i| {
            std::fs::metadata(sb.root().join(format!("f{i}")))
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(on_disk, 5_000);
    assert_eq!(free(&sb), 0);
}
