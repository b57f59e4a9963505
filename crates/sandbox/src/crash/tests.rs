//! The per-entry journal against the whole-directory reference
//! ([`whole_dir`](super::whole_dir)): the same operations, on two trees alike,
//! must crash to the same tree with the same description.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

/// One step of a connector (or of a fault, or the crash), by root-relative path.
#[derive(Clone, Debug)]
enum Op {
    /// `create` (truncating) and a first write.
    Create(String, Vec<u8>),
    /// A write through the `n`-th handle still open (modulo their number).
    Write(usize, Vec<u8>),
    /// `sync_all` through the `n`-th handle.
    Sync(usize),
    Rename(String, String),
    Remove(String),
    CreateDir(String),
    SyncDir(String),
    /// A fault's rename (durable at once).
    FaultRename(String, String),
    /// A fault's removal of a file or a whole directory.
    FaultRemove(String),
    /// A fault moving a path to the stash, or back from it.
    FaultStash(String),
    FaultRestore(String),
    Crash,
}

/// The same driver, the engine's calls around each real call, for each model.
macro_rules! driver {
    ($name:ident, $($model:tt)+) => {
        mod $name {
            use super::*;
            use $($model)+ as model;

            pub(super) struct Driver {
                _dir: tempfile::TempDir,
                pub(super) root: PathBuf,
                stash: PathBuf,
                journal: model::Journal,
                handles: Vec<(File, Option<model::FileId>)>,
            }

            impl Driver {
                pub(super) fn new() -> Driver {
                    let dir = tempfile::tempdir().expect("temp dir");
                    let root = dir.path().join("root");
                    let limbo = dir.path().join("limbo");
                    let stash = dir.path().join("stash");
                    for d in [&root, &limbo, &stash] {
                        fs::create_dir(d).expect("mkdir");
                    }
                    let journal = model::Journal::new(root.clone(), limbo, stash.clone());
                    Driver { _dir: dir, root, stash, journal, handles: Vec::new() }
                }

                /// Runs `op`; a crash returns its description.
                pub(super) fn run(&mut self, op: &Op) -> Vec<String> {
                    let p = |rel: &str| self.root.join(rel);
                    let j = &mut self.journal;
                    match op {
                        Op::Create(rel, data) => {
                            let path = p(rel);
                            let truncating = j.before_create(&path);
                            let opened = OpenOptions::new()
                                .write(true)
                                .create(true)
                                .truncate(true)
                                .open(&path);
                            if let Ok(mut file) = opened {
                                let id = j.created(&file, truncating);
                                let _ = file.write_all(data);
                                self.handles.push((file, id));
                            }
                        }
                        Op::Write(n, data) => {
                            if !self.handles.is_empty() {
                                let k = n % self.handles.len();
                                let _ = self.handles[k].0.write_all(data);
                            }
                        }
                        Op::Sync(n) => {
                            if !self.handles.is_empty() {
                                let (file, id) = &self.handles[n % self.handles.len()];
                                if let (Some(id), Ok(meta)) = (id, file.metadata()) {
                                    j.synced(*id, meta.len());
                                }
                            }
                        }
                        Op::Rename(from, to) => {
                            let (from, to) = (p(from), p(to));
                            let overwritten = j.before_rename(&from, &to);
                            if fs::rename(&from, &to).is_ok()
                                && let Some(ino) = overwritten
                            {
                                j.unlinked(ino);
                            }
                        }
                        Op::Remove(rel) => {
                            let path = p(rel);
                            let ino = j.before_remove(&path);
                            if fs::remove_file(&path).is_ok()
                                && let Some(ino) = ino
                            {
                                j.unlinked(ino);
                            }
                        }
                        Op::CreateDir(rel) => {
                            let path = p(rel);
                            j.before_create_dir(&path);
                            if fs::create_dir(&path).is_ok() {
                                j.created_dir(&path);
                            }
                        }
                        Op::SyncDir(rel) => {
                            let path = p(rel);
                            if File::open(&path).is_ok() {
                                j.synced_dir(&path);
                            }
                        }
                        Op::FaultRename(_, _)
                        | Op::FaultRemove(_)
                        | Op::FaultStash(_)
                        | Op::FaultRestore(_) => {
                            let before = j.scan();
                            fault(&self.root, &self.stash, op);
                            let after = j.scan();
                            j.after_fault(&before, &after);
                        }
                        Op::Crash => {
                            self.handles.clear();
                            return j.crash();
                        }
                    }
                    Vec::new()
                }
            }
        }
    };
}

driver!(per_entry, crate::crash);
driver!(reference, crate::crash::whole_dir);

/// What a fault does to the tree (the same on both trees).
fn fault(root: &Path, stash: &Path, op: &Op) {
    let stashed = |rel: &str| stash.join(rel.replace('/', "%"));
    let _ = match op {
        Op::FaultRename(from, to) => fs::rename(root.join(from), root.join(to)),
        Op::FaultRemove(rel) => {
            let path = root.join(rel);
            if path.is_dir() {
                fs::remove_dir_all(path)
            } else {
                fs::remove_file(path)
            }
        }
        Op::FaultStash(rel) => fs::rename(root.join(rel), stashed(rel)),
        Op::FaultRestore(rel) => fs::rename(stashed(rel), root.join(rel)),
        _ => unreachable!("not a fault"),
    };
}

/// The tree as text: each path with its kind and content, a second name of a
/// file as such.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, seen: &mut Vec<(u64, String)>, out: &mut Vec<String>) {
        let mut names: Vec<_> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .collect();
        names.sort();
        for path in names {
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            let meta = fs::symlink_metadata(&path).expect("stat");
            if meta.is_dir() {
                out.push(format!("{rel}/"));
                walk(root, &path, seen, out);
            } else if let Some((_, first)) = seen.iter().find(|(ino, _)| *ino == meta.ino()) {
                out.push(format!("{rel} = {first}"));
            } else {
                seen.push((meta.ino(), rel.clone()));
                let data = fs::read(&path).expect("read");
                out.push(format!("{rel}: {}", String::from_utf8_lossy(&data)));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut Vec::new(), &mut out);
    out
}

/// A crash's description without the files it lost inside a directory it
/// reports lost as a whole: the whole-directory model names them too, the
/// per-entry one only the directory (the trees are compared as they are).
fn subsumed(lines: Vec<String>) -> Vec<String> {
    let dirs: Vec<String> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("lost directory "))
        .filter_map(|l| l.split(':').next())
        .map(|d| format!("{d}/"))
        .collect();
    lines
        .into_iter()
        .filter(|l| {
            l.strip_prefix("lost file ")
                .is_none_or(|f| !dirs.iter().any(|d| f.starts_with(d.as_str())))
        })
        .collect()
}

/// Runs `ops` on both models from the same starting tree (`imcdata/in` and
/// `imcdata/work`, with `preexisting` files in `in`), then crashes; asserts
/// every crash agrees, and returns the last one's description.
fn agree(preexisting: usize, ops: &[Op]) -> Result<Vec<String>, TestCaseError> {
    let mut a = per_entry::Driver::new();
    let mut b = reference::Driver::new();
    for root in [&a.root, &b.root] {
        fs::create_dir_all(root.join("imcdata/in")).expect("mkdir");
        fs::create_dir_all(root.join("imcdata/work")).expect("mkdir");
        for i in 0..preexisting {
            fs::write(root.join(format!("imcdata/in/old{i}")), "old").expect("write");
        }
    }
    let mut last = Vec::new();
    for (i, op) in ops.iter().chain([&Op::Crash]).enumerate() {
        let (x, y) = (subsumed(a.run(op)), subsumed(b.run(op)));
        prop_assert_eq!(&x, &y, "crash after step {} ({:?}) of {:?}", i, op, ops);
        prop_assert_eq!(
            tree(&a.root),
            tree(&b.root),
            "tree after step {} ({:?}) of {:?}",
            i,
            op,
            ops
        );
        last = x;
    }
    Ok(last)
}

fn run(preexisting: usize, ops: &[Op]) -> Vec<String> {
    agree(preexisting, ops).unwrap_or_else(|e| panic!("{e}"))
}

fn s(x: &str) -> String {
    x.to_owned()
}

#[test]
fn a_rename_into_a_big_directory_with_only_the_file_synced_is_undone() {
    // Per entry, only `in/x` is recorded: the 200 entries already there must
    // survive the crash, and `x` go back to `work/`.
    let lines = run(
        200,
        &[
            Op::Create(s("imcdata/work/x"), b"body".to_vec()),
            Op::Sync(0),
            Op::SyncDir(s("imcdata/work")),
            Op::Rename(s("imcdata/work/x"), s("imcdata/in/x")),
            Op::SyncDir(s("imcdata/in/x")),
        ],
    );
    assert_eq!(
        lines,
        ["moved imcdata/in/x back to imcdata/work/x (rename not synced)"]
    );
}

#[test]
fn a_rename_over_an_existing_entry_brings_the_old_file_back() {
    let lines = run(
        3,
        &[
            Op::Create(s("imcdata/work/old1"), b"new".to_vec()),
            Op::Sync(0),
            Op::Rename(s("imcdata/work/old1"), s("imcdata/in/old1")),
        ],
    );
    assert_eq!(
        lines,
        [
            "brought back file imcdata/in/old1 (removal not synced)",
            "dropped file imcdata/in/old1 (entry not synced)"
        ]
    );
}

#[test]
fn a_rename_away_and_back_keeps_the_first_durable_state() {
    // The second rename must not record `in/old0` again (as absent, which is
    // what it is between the two): its durable state is the first one seen.
    let lines = run(
        2,
        &[
            Op::Rename(s("imcdata/in/old0"), s("imcdata/work/old0")),
            Op::Rename(s("imcdata/work/old0"), s("imcdata/in/old0")),
            Op::Create(s("imcdata/in/new"), b"x".to_vec()),
        ],
    );
    assert_eq!(lines, ["dropped file imcdata/in/new (entry not synced)"]);
}

#[test]
fn a_sync_between_changes_starts_a_new_undo_record() {
    let lines = run(
        1,
        &[
            Op::Rename(s("imcdata/in/old0"), s("imcdata/work/old0")),
            Op::SyncDir(s("imcdata/in")),
            Op::Rename(s("imcdata/work/old0"), s("imcdata/in/old0")),
        ],
    );
    // `work/old0` was never synced, and `in/` durably lost it: gone.
    assert_eq!(lines, ["dropped file imcdata/in/old0 (entry not synced)"]);
}

fn path() -> impl Strategy<Value = String> {
    let dirs = [
        "imcdata/in",
        "imcdata/work",
        "imcdata/new",
        "imcdata/new/sub",
    ];
    let names = ["1", "2", "old0"];
    (0..dirs.len(), 0..names.len()).prop_map(move |(d, n)| format!("{}/{}", dirs[d], names[n]))
}

fn dir() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(s("imcdata/in")),
        Just(s("imcdata/work")),
        Just(s("imcdata/new")),
        Just(s("imcdata/new/sub")),
        Just(s("imcdata/in2")),
        Just(s("imcdata")),
    ]
}

fn any_path() -> impl Strategy<Value = String> {
    prop_oneof![3 => path(), 1 => dir()]
}

fn op() -> impl Strategy<Value = Op> {
    let data = prop::collection::vec(b'a'..=b'z', 0..4);
    prop_oneof![
        4 => (path(), data.clone()).prop_map(|(p, d)| Op::Create(p, d)),
        2 => (0..4usize, data).prop_map(|(n, d)| Op::Write(n, d)),
        3 => (0..4usize).prop_map(Op::Sync),
        5 => (any_path(), any_path()).prop_map(|(a, b)| Op::Rename(a, b)),
        2 => path().prop_map(Op::Remove),
        2 => dir().prop_map(Op::CreateDir),
        4 => prop_oneof![3 => dir(), 1 => path()].prop_map(Op::SyncDir),
        1 => (any_path(), any_path()).prop_map(|(a, b)| Op::FaultRename(a, b)),
        1 => any_path().prop_map(Op::FaultRemove),
        1 => dir().prop_map(Op::FaultStash),
        1 => dir().prop_map(Op::FaultRestore),
        1 => Just(Op::Crash),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Any sequence crashes the same way under both models.
    #[test]
    fn per_entry_undo_agrees_with_whole_directory_copies(
        preexisting in 0..3usize,
        ops in prop::collection::vec(op(), 1..24),
    ) {
        agree(preexisting, &ops)?;
    }
}
