//! The block quota: free space as reported is exactly what writes can consume,
//! charged in whole 4096-byte blocks as a tmpfs charges pages.

use std::io::Write;
use std::sync::Arc;

use imc::fs::{Fs, OpKind};
use sandbox::{BLOCK, Errno, Fault, Outcome, Sandbox, SandboxConfig};

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

fn len(sb: &Sandbox, rel: &str) -> u64 {
    std::fs::metadata(sb.root().join(rel)).unwrap().len()
}

#[test]
fn default_quota_is_64_mib() {
    let sb = Sandbox::new(SandboxConfig::default()).unwrap();
    assert_eq!(sb.quota(), 64 << 20);
    assert_eq!(free(&sb), 64 << 20);
}

#[test]
fn the_quota_is_rounded_down_to_whole_blocks() {
    let sb = sandbox(10 * BLOCK + 4095);
    assert_eq!(sb.quota(), 10 * BLOCK);
    assert_eq!(free(&sb), 10 * BLOCK);
    // Less than a block: a volume nothing fits in.
    let tiny = sandbox(BLOCK - 1);
    assert_eq!(tiny.quota(), 0);
    let mut f = tiny.fs().create(&tiny.root().join("a")).unwrap();
    let err = f.write(b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(Errno::Enospc.raw()));
}

/// As measured on a tmpfs: 200 bytes take 4096, free space moves in blocks.
#[test]
fn available_space_moves_in_whole_blocks() {
    let sb = sandbox(10 * BLOCK);
    let mut f = sb.fs().create(&sb.root().join("a")).unwrap();
    f.write_all(&[1; 200]).unwrap();
    assert_eq!(free(&sb), 9 * BLOCK);
    // Filling the rest of the block costs nothing more.
    f.write_all(&[1; 3896]).unwrap();
    assert_eq!(free(&sb), 9 * BLOCK);
    // One byte more takes a block.
    f.write_all(&[1; 1]).unwrap();
    assert_eq!(free(&sb), 8 * BLOCK);
    assert_eq!(sb.available_space(), 8 * BLOCK);
    // A big write takes exactly the blocks it crosses into.
    f.write_all(&[1; 3 * 4096]).unwrap();
    assert_eq!(len(&sb, "a"), 4 * BLOCK + 1);
    assert_eq!(free(&sb), 5 * BLOCK);
}

#[test]
fn directories_and_empty_files_cost_nothing() {
    let sb = sandbox(BLOCK);
    let fs = sb.fs();
    fs.create_dir(&sb.root().join("d")).unwrap();
    for i in 0..50 {
        drop(
            fs.create(&sb.root().join(format!("d/empty-{i:0>100}")))
                .unwrap(),
        );
    }
    assert_eq!(free(&sb), BLOCK);
}

/// The kernel's behaviour, measured on a tmpfs: the write that crosses the
/// limit stores the rest of the file's last block plus the free blocks and
/// returns that short count; the next one fails with ENOSPC.
#[test]
fn write_crossing_the_quota_is_short_then_enospc() {
    let sb = sandbox(3 * BLOCK);
    write_file(&sb, "other", 1);
    let path = sb.root().join("a");
    let mut f = sb.fs().create(&path).unwrap();
    f.write_all(&[1; 200]).unwrap();
    assert_eq!(free(&sb), BLOCK);

    // 3896 bytes left in the file's block, plus one free block.
    assert_eq!(f.write(&[2; 10_000]).unwrap(), 3896 + 4096);
    assert_eq!(free(&sb), 0);
    // Then nothing fits any more.
    let err = f.write(&[3; 10]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(Errno::Enospc.raw()));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 2 * BLOCK);
    assert_eq!(free(&sb), 0);

    let writes: Vec<Outcome> = sb
        .ops()
        .into_iter()
        .filter(|r| r.op == OpKind::Write)
        .map(|r| r.outcome)
        .collect();
    assert_eq!(
        writes[writes.len() - 2..],
        [
            Outcome::ShortWrite {
                written: 3896 + 4096,
                requested: 10_000
            },
            Outcome::QuotaFull
        ]
    );
}

#[test]
fn a_full_volume_still_takes_writes_into_a_files_last_block() {
    let sb = sandbox(2 * BLOCK);
    let mut a = sb.fs().create(&sb.root().join("a")).unwrap();
    a.write_all(&[1; 100]).unwrap();
    write_file(&sb, "b", 4096);
    assert_eq!(free(&sb), 0);
    // A new file cannot get a block...
    let mut c = sb.fs().create(&sb.root().join("c")).unwrap();
    assert_eq!(
        c.write(b"x").unwrap_err().raw_os_error(),
        Some(Errno::Enospc.raw())
    );
    // ...but `a` can grow to the end of its own.
    assert_eq!(a.write(&[2; 5000]).unwrap(), 3996);
    assert_eq!(len(&sb, "a"), BLOCK);
}

#[test]
fn write_all_fills_the_quota_exactly_then_fails() {
    let sb = sandbox(2 * BLOCK);
    let path = sb.root().join("a");
    let mut f = sb.fs().create(&path).unwrap();
    let err = f.write_all(&[7; 10_000]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(Errno::Enospc.raw()));
    assert_eq!(std::fs::read(&path).unwrap(), vec![7; 2 * 4096]);
    assert_eq!(free(&sb), 0);
}

#[test]
fn removing_a_file_frees_its_blocks() {
    let sb = sandbox(10 * BLOCK);
    write_file(&sb, "a", 4097);
    write_file(&sb, "b", 100);
    assert_eq!(free(&sb), 7 * BLOCK);
    sb.fs().remove_file(&sb.root().join("a")).unwrap();
    assert_eq!(free(&sb), 9 * BLOCK);
    // A failed removal frees nothing.
    assert!(sb.fs().remove_file(&sb.root().join("a")).is_err());
    assert_eq!(free(&sb), 9 * BLOCK);
}

#[test]
fn recreating_a_file_frees_its_old_blocks() {
    let sb = sandbox(10 * BLOCK);
    write_file(&sb, "a", 9000);
    assert_eq!(free(&sb), 7 * BLOCK);
    let _f = sb.fs().create(&sb.root().join("a")).unwrap();
    assert_eq!(free(&sb), 10 * BLOCK);
}

#[test]
fn rename_moves_nothing_but_overwriting_frees_the_target() {
    let sb = sandbox(10 * BLOCK);
    let fs = sb.fs();
    write_file(&sb, "a", 5000);
    fs.rename(&sb.root().join("a"), &sb.root().join("b"))
        .unwrap();
    assert_eq!(free(&sb), 8 * BLOCK);
    write_file(&sb, "c", 200);
    fs.rename(&sb.root().join("c"), &sb.root().join("b"))
        .unwrap();
    assert_eq!(free(&sb), 9 * BLOCK);
}

/// Whatever the history, writing until ENOSPC consumes exactly the free space
/// reported before.
#[test]
fn available_space_is_what_can_still_be_written() {
    let sb = sandbox(10 * BLOCK);
    let fs = sb.fs();
    fs.create_dir(&sb.root().join("d")).unwrap();
    write_file(&sb, "d/a", 1234);
    write_file(&sb, "b", 9999);
    fs.remove_file(&sb.root().join("b")).unwrap();
    // A change behind the counter's back, recounted by the next fault.
    std::fs::write(sb.root().join("d/outside-write"), [0; 500]).unwrap();
    write_file(&sb, "e", 5000);
    sb.apply(&Fault::Remove { path: "d".into() }).unwrap();
    write_file(&sb, "c", 77);

    let before = free(&sb);
    assert_eq!(before, (10 - 2 - 1) * BLOCK);
    let mut f = fs.create(&sb.root().join("fill")).unwrap();
    assert!(f.write_all(&vec![0; 100_000]).is_err());
    assert_eq!(len(&sb, "fill"), before);
    assert_eq!(free(&sb), 0);
}

#[test]
fn faults_changing_the_tree_are_recounted() {
    let sb = sandbox(10 * BLOCK);
    std::fs::create_dir(sb.root().join("d")).unwrap();
    std::fs::write(sb.root().join("d/x"), [0; 300]).unwrap();
    // Written behind the sandbox's back: not counted until a fault recounts.
    assert_eq!(free(&sb), 10 * BLOCK);
    sb.apply(&Fault::Replace { path: "d".into() }).unwrap();
    // The replaced tree went to the stash, outside the root.
    assert_eq!(free(&sb), 10 * BLOCK);
    sb.apply(&Fault::Restore { path: "d".into() }).unwrap();
    assert_eq!(free(&sb), 9 * BLOCK);
}

/// Concurrent writers together never cross the quota, and fill it exactly.
#[test]
fn concurrent_writers_share_the_quota_exactly() {
    let sb = Arc::new(sandbox(5 * BLOCK));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let sb = Arc::clone(&sb);
            std::thread::spawn(move || {
                let mut f = sb.fs().create(&sb.root().join(format!("f{i}"))).unwrap();
                // Until ENOSPC (the bound only guards against a broken quota).
                for _ in 0..1000 {
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
    let lens: Vec<u64> = (0..8).map(|i| len(&sb, &format!("f{i}"))).collect();
    // Every writer ran until ENOSPC, so each file ends on a block boundary
    // (the unlucky ones got none), and together they take the volume exactly.
    assert!(lens.iter().all(|l| l % BLOCK == 0), "{lens:?}");
    assert_eq!(lens.iter().sum::<u64>(), 5 * BLOCK);
    assert_eq!(free(&sb), 0);
}

/// As on a tmpfs: a file removed (or overwritten by a rename) while still open
/// keeps its blocks, and may grow, until its last handle closes.
#[test]
fn a_removed_file_keeps_its_blocks_until_closed() {
    let sb = sandbox(10 * BLOCK);
    let fs = sb.fs();
    let mut a = fs.create(&sb.root().join("a")).unwrap();
    a.write_all(&[1; 5000]).unwrap();
    fs.remove_file(&sb.root().join("a")).unwrap();
    assert_eq!(free(&sb), 8 * BLOCK);
    a.write_all(&[1; 5000]).unwrap();
    assert_eq!(free(&sb), 7 * BLOCK);
    // A fault's recount still charges it.
    sb.apply(&Fault::FillDisk { leave: 7 * BLOCK }).unwrap();
    assert_eq!(free(&sb), 7 * BLOCK);
    drop(a);
    assert_eq!(free(&sb), 10 * BLOCK);

    let mut b = fs.create(&sb.root().join("b")).unwrap();
    b.write_all(&[2; 100]).unwrap();
    write_file(&sb, "c", 10);
    fs.rename(&sb.root().join("c"), &sb.root().join("b"))
        .unwrap();
    assert_eq!(free(&sb), 8 * BLOCK);
    drop(b);
    assert_eq!(free(&sb), 9 * BLOCK);

    // Removed by a fault while open: the same.
    let mut d = fs.create(&sb.root().join("d")).unwrap();
    d.write_all(&[3; 100]).unwrap();
    sb.apply(&Fault::Remove { path: "d".into() }).unwrap();
    assert_eq!(free(&sb), 8 * BLOCK);
    drop(d);
    assert_eq!(free(&sb), 9 * BLOCK);
}
