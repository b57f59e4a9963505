//! The crash model before per-entry undo: a directory's durable entries are
//! copied whole (a `read_dir` and a `stat` per entry) at its first change
//! after a `sync_dir`. O(entries) per first change, so no longer used; kept,
//! for tests only, as the reference the per-entry journal must agree with.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

type Ino = u64;

/// A directory entry: the inode it names, and whether that is a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    ino: Ino,
    is_dir: bool,
}

/// A directory's entries by name.
type Entries = BTreeMap<OsString, Entry>;

/// What of a file's data is on stable storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Durable {
    /// The first `n` bytes of the current content.
    Len(u64),
    /// These bytes (the content before an unsynced truncating `create`).
    Bytes(Vec<u8>),
}

#[derive(Debug)]
struct FileState {
    generation: u64,
    durable: Durable,
}

/// The file a connector's handle writes: its inode, and which `create` of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileId {
    ino: Ino,
    generation: u64,
}

/// What the crash model knows; see the module documentation.
#[derive(Debug)]
pub(crate) struct Journal {
    root: PathBuf,
    /// Outside the root, on the same volume: hard links of removed files whose
    /// removal is not durable, and the holding area while crashing.
    limbo: PathBuf,
    /// The faults' stash, whose inodes still exist though outside the root.
    stash: PathBuf,
    /// Durable entries of each directory with unsynced changes, by inode.
    pending: HashMap<Ino, Entries>,
    /// Durable data of the files the connector created, by inode.
    files: HashMap<Ino, FileState>,
    /// Hard links in `limbo`, by inode.
    links: HashMap<Ino, PathBuf>,
    next_generation: u64,
    next_link: u64,
}

/// The tree under the root, by directory inode, and the inodes outside it that
/// still exist (in the stash or in limbo).
#[derive(Debug)]
pub(crate) struct Scan {
    root: Ino,
    dirs: HashMap<Ino, Entries>,
    outside: HashSet<Ino>,
}

impl Scan {
    fn inside(&self) -> HashSet<Ino> {
        let mut inos: HashSet<Ino> = self
            .dirs
            .values()
            .flat_map(|entries| entries.values().map(|e| e.ino))
            .collect();
        inos.insert(self.root);
        inos
    }
}

/// An entry placed in a tree, with its root-relative path.
#[derive(Clone, Debug)]
struct Node {
    rel: PathBuf,
    parent: Ino,
    name: OsString,
    entry: Entry,
}

impl Journal {
    /// A journal for `root`, keeping removed files in `limbo` (an existing,
    /// empty directory outside the root on the same volume).
    pub(crate) fn new(root: PathBuf, limbo: PathBuf, stash: PathBuf) -> Journal {
        Journal {
            root,
            limbo,
            stash,
            pending: HashMap::new(),
            files: HashMap::new(),
            links: HashMap::new(),
            next_generation: 0,
            next_link: 0,
        }
    }

    // ---- the connector's operations, around the real call ----

    /// Before `create(path)`: records the parent's durable entries if the file
    /// is new, or saves the durable content if the create will truncate it.
    /// Returns what to pass to [`Journal::created`].
    pub(crate) fn before_create(&mut self, path: &Path) -> Option<Durable> {
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_file() => {
                let keep = match self.files.get(&meta.ino()).map(|f| &f.durable) {
                    Some(Durable::Bytes(bytes)) => return Some(Durable::Bytes(bytes.clone())),
                    Some(Durable::Len(n)) => *n,
                    None => meta.len(),
                };
                Some(Durable::Bytes(read_prefix(path, keep).unwrap_or_default()))
            }
            _ => {
                self.touch_parent(path);
                None
            }
        }
    }

    /// After a successful `create`: starts tracking the file's data.
    pub(crate) fn created(&mut self, file: &File, truncated: Option<Durable>) -> Option<FileId> {
        let ino = file.metadata().ok()?.ino();
        if truncated.is_none() {
            // A new inode: anything known under that number is stale.
            self.scrub(ino);
        }
        self.next_generation += 1;
        let generation = self.next_generation;
        self.files.insert(
            ino,
            FileState {
                generation,
                durable: truncated.unwrap_or(Durable::Len(0)),
            },
        );
        Some(FileId { ino, generation })
    }

    /// After a successful `sync_all` of the file `id`, `len` bytes long.
    pub(crate) fn synced(&mut self, id: FileId, len: u64) {
        match self.files.get_mut(&id.ino) {
            Some(state) if state.generation == id.generation => state.durable = Durable::Len(len),
            _ => {}
        }
    }

    /// Before `rename(from, to)`: records both parents' durable entries and
    /// keeps the inode the rename may overwrite. Returns that inode.
    pub(crate) fn before_rename(&mut self, from: &Path, to: &Path) -> Option<Ino> {
        self.touch_parent(from);
        self.touch_parent(to);
        let source = fs::symlink_metadata(from).ok()?;
        let target = fs::symlink_metadata(to).ok()?;
        if target.ino() == source.ino() || !target.is_file() {
            return None;
        }
        self.keep(to, target.ino());
        Some(target.ino())
    }

    /// Before `remove_file(path)`: records the parent's durable entries and
    /// keeps the inode. Returns it.
    pub(crate) fn before_remove(&mut self, path: &Path) -> Option<Ino> {
        self.touch_parent(path);
        let meta = fs::symlink_metadata(path).ok()?;
        if !meta.is_file() {
            return None;
        }
        self.keep(path, meta.ino());
        Some(meta.ino())
    }

    /// After an inode lost an entry for good (removed, or overwritten by a
    /// rename): forgets its data unless a durable entry still names it.
    pub(crate) fn unlinked(&mut self, ino: Ino) {
        if !self.needed(ino) {
            self.files.remove(&ino);
        }
    }

    /// Before `create_dir(path)`.
    pub(crate) fn before_create_dir(&mut self, path: &Path) {
        self.touch_parent(path);
    }

    /// After a successful `create_dir(path)`: a new directory has no durable
    /// entries yet.
    pub(crate) fn created_dir(&mut self, path: &Path) {
        if let Ok(meta) = fs::symlink_metadata(path) {
            self.scrub(meta.ino());
            self.pending.insert(meta.ino(), Entries::new());
        }
    }

    /// After a successful `sync_dir(path)`: the directory's entries are all
    /// durable (or, for a file's path, its data is).
    pub(crate) fn synced_dir(&mut self, path: &Path) {
        let Ok(meta) = fs::metadata(path) else {
            return;
        };
        if meta.is_file() {
            if let Some(state) = self.files.get_mut(&meta.ino()) {
                state.durable = Durable::Len(meta.len());
            }
            return;
        }
        self.pending.remove(&meta.ino());
        // Removed files whose removal is now durable everywhere can go.
        let unneeded: Vec<Ino> = self
            .links
            .keys()
            .copied()
            .filter(|&ino| !self.needed(ino))
            .collect();
        for ino in unneeded {
            if let Some(link) = self.links.remove(&ino) {
                let _ = fs::remove_file(link);
            }
            self.files.remove(&ino);
        }
    }

    /// Records the durable entries of `path`'s directory before its first
    /// unsynced change.
    fn touch_parent(&mut self, path: &Path) {
        let Some(parent) = path.parent() else {
            return;
        };
        let Ok(meta) = fs::metadata(parent) else {
            return;
        };
        if self.pending.contains_key(&meta.ino()) {
            return;
        }
        if let Ok(entries) = read_entries(parent) {
            self.pending.insert(meta.ino(), entries);
        }
    }

    /// Whether a durable entry names `ino`.
    fn needed(&self, ino: Ino) -> bool {
        self.pending
            .values()
            .any(|entries| entries.values().any(|e| e.ino == ino))
    }

    /// Keeps a hard link to the file at `path` if a durable entry names it, so
    /// that a crash can bring it back after it is removed or overwritten.
    fn keep(&mut self, path: &Path, ino: Ino) {
        if self.links.contains_key(&ino) || !self.needed(ino) {
            return;
        }
        self.next_link += 1;
        let link = self.limbo.join(format!("removed-{}", self.next_link));
        if fs::hard_link(path, &link).is_ok() {
            self.links.insert(ino, link);
        }
    }

    /// Forgets everything recorded about an inode number that now names a new
    /// file or directory (inode numbers are reused).
    fn scrub(&mut self, ino: Ino) {
        self.pending.remove(&ino);
        self.files.remove(&ino);
        for entries in self.pending.values_mut() {
            entries.retain(|_, e| e.ino != ino);
        }
    }

    // ---- faults ----

    /// The tree as it is now, for [`Journal::after_fault`].
    pub(crate) fn scan(&self) -> Scan {
        let root = fs::metadata(&self.root).map_or(0, |m| m.ino());
        let mut dirs = HashMap::new();
        scan_dir(&self.root, root, &mut dirs);
        let mut outside = HashSet::new();
        collect_inos(&self.stash, &mut outside);
        collect_inos(&self.limbo, &mut outside);
        Scan {
            root,
            dirs,
            outside,
        }
    }

    /// Makes what a fault did between `before` and `after` durable, leaving
    /// the connector's unsynced changes as they were.
    pub(crate) fn after_fault(&mut self, before: &Scan, after: &Scan) {
        let removed = difference(&before.dirs, &after.dirs);
        // The entries of a directory back from outside the tree (the stash) did
        // not arrive: they came with it, as durable as they were (its own entry
        // in its parent is the arrival).
        let added: Vec<(Ino, OsString, Entry)> = difference(&after.dirs, &before.dirs)
            .into_iter()
            .filter(|(dir, _, _)| !before.outside.contains(dir))
            .collect();
        let inside_before = before.inside();
        // Whether each arrival is durable: made by the fault (its inode was not
        // in the tree before) or moved from an entry that was durable.
        let arrivals: Vec<(Ino, OsString, Entry, bool)> = added
            .into_iter()
            .map(|(dir, name, entry)| {
                let durable = !inside_before.contains(&entry.ino)
                    || removed.iter().any(|(d, n, e)| {
                        e.ino == entry.ino
                            && self
                                .pending
                                .get(d)
                                .is_none_or(|entries| entries.get(n) == Some(e))
                    });
                (dir, name, entry, durable)
            })
            .collect();
        let all_before: HashSet<Ino> = inside_before.union(&before.outside).copied().collect();
        let all_after: HashSet<Ino> = after.inside().union(&after.outside).copied().collect();
        // Deleted for good, or brand new: nothing known about them holds. Done
        // before the arrivals are recorded, or a directory the fault made would
        // be scrubbed from its parent's durable entries again.
        for &ino in all_before.symmetric_difference(&all_after) {
            self.scrub(ino);
        }
        for (dir, name, entry) in &removed {
            if !after.dirs.contains_key(dir) {
                continue;
            }
            if let Some(entries) = self.pending.get_mut(dir)
                && entries.get(name) == Some(entry)
            {
                entries.remove(name);
            }
        }
        for (dir, name, entry, durable) in &arrivals {
            if *durable {
                if let Some(entries) = self.pending.get_mut(dir) {
                    entries.insert(name.clone(), *entry);
                }
            } else if !self.pending.contains_key(dir) {
                // All durable but the connector's own entries moved in.
                let mut entries = after.dirs.get(dir).cloned().unwrap_or_default();
                for (d, n, _, durable) in &arrivals {
                    if d == dir && !durable {
                        entries.remove(n);
                    }
                }
                self.pending.insert(*dir, entries);
            }
        }
        // What a fault put somewhere stays there: so does the path to it, even
        // through a directory the connector made and never synced (an
        // administrator's move into it makes it durable, as a `sync` would).
        let mut parent_of: HashMap<Ino, (Ino, &OsString, Entry)> = HashMap::new();
        for (dir, entries) in &after.dirs {
            for (name, entry) in entries {
                if entry.is_dir {
                    parent_of.insert(entry.ino, (*dir, name, *entry));
                }
            }
        }
        for (dir, _, _, durable) in &arrivals {
            let mut ino = *dir;
            let mut seen = HashSet::new();
            while *durable && seen.insert(ino) {
                let Some(&(parent, name, entry)) = parent_of.get(&ino) else {
                    break;
                };
                if let Some(entries) = self.pending.get_mut(&parent) {
                    entries.insert(name.clone(), entry);
                }
                ino = parent;
            }
        }
    }

    // ---- the crash ----

    /// Drops everything that is not durable, on the disk, and describes what
    /// was dropped (root-relative paths, sorted). Afterwards everything is
    /// durable: the crashed state is the new baseline.
    pub(crate) fn crash(&mut self) -> Vec<String> {
        let scan = self.scan();
        let current = layout(scan.root, |d| scan.dirs.get(&d));
        let durable = layout(scan.root, |d| {
            self.pending.get(&d).or_else(|| scan.dirs.get(&d))
        });
        let mut lines = describe(&current, &durable, &self.links);
        let mut failures = Vec::new();

        let wanted: HashMap<&Path, Entry> =
            durable.iter().map(|n| (n.rel.as_path(), n.entry)).collect();
        let durable_inos: HashSet<Ino> = durable.iter().map(|n| n.entry.ino).collect();
        // Entries already where they belong (and their parents too).
        let mut kept: HashSet<&Path> = HashSet::new();
        for node in &current {
            let parent_kept = node
                .rel
                .parent()
                .is_none_or(|p| p.as_os_str().is_empty() || kept.contains(p));
            if parent_kept && wanted.get(node.rel.as_path()) == Some(&node.entry) {
                kept.insert(&node.rel);
            }
        }

        // Children first: move aside what belongs elsewhere, delete the rest.
        let mut sources: HashMap<Ino, PathBuf> = self.links.clone();
        for node in current.iter().rev() {
            if kept.contains(node.rel.as_path()) {
                continue;
            }
            let abs = self.root.join(&node.rel);
            let ino = node.entry.ino;
            let result = if durable_inos.contains(&ino) && !sources.contains_key(&ino) {
                let hold = self.limbo.join(format!("hold-{ino}"));
                fs::rename(&abs, &hold).map(|()| {
                    sources.insert(ino, hold);
                })
            } else if node.entry.is_dir {
                fs::remove_dir_all(&abs)
            } else {
                fs::remove_file(&abs)
            };
            if let Err(e) = result {
                failures.push(failure("move aside", &node.rel, &e));
            }
        }

        // Parents first: put the durable entries back. An inode durable under
        // two names (renamed into a synced directory out of an unsynced one)
        // gets the second as a hard link.
        let mut placed: HashMap<Ino, PathBuf> = durable
            .iter()
            .filter(|n| kept.contains(n.rel.as_path()))
            .map(|n| (n.entry.ino, self.root.join(&n.rel)))
            .collect();
        for node in &durable {
            if kept.contains(node.rel.as_path()) {
                continue;
            }
            let abs = self.root.join(&node.rel);
            let ino = node.entry.ino;
            let result = if let Some(first) = placed.get(&ino) {
                if node.entry.is_dir {
                    Ok(())
                } else {
                    fs::hard_link(first, &abs)
                }
            } else if let Some(source) = sources.remove(&ino) {
                fs::rename(&source, &abs).map(|()| {
                    placed.insert(ino, abs.clone());
                })
            } else if node.entry.is_dir {
                // Lost (reported by `describe`); recreated so its entries have a home.
                fs::create_dir(&abs)
            } else {
                Ok(())
            };
            if let Err(e) = result {
                failures.push(failure("put back", &node.rel, &e));
            }
        }

        // File data, by the files' durable paths.
        let first_path: HashMap<Ino, &Path> = durable
            .iter()
            .rev()
            .map(|n| (n.entry.ino, n.rel.as_path()))
            .collect();
        let mut data: Vec<(PathBuf, String)> = Vec::new();
        for (ino, state) in &self.files {
            let Some(rel) = first_path.get(ino) else {
                continue;
            };
            match restore_data(&self.root.join(rel), &state.durable) {
                Ok(Some(what)) => data.push((rel.to_path_buf(), format!("{} {what}", show(rel)))),
                Ok(None) => {}
                Err(e) => failures.push(failure("restore the synced data of", rel, &e)),
            }
        }
        data.sort();
        lines.extend(data.into_iter().map(|(_, line)| line));
        lines.extend(failures);

        // Start afresh: the crashed state is all durable.
        let _ = fs::remove_dir_all(&self.limbo);
        let _ = fs::create_dir(&self.limbo);
        self.pending.clear();
        self.files.clear();
        self.links.clear();
        lines
    }
}

/// The entries of `before` that `after` does not have (by directory, name and
/// inode), sorted.
fn difference(
    before: &HashMap<Ino, Entries>,
    after: &HashMap<Ino, Entries>,
) -> Vec<(Ino, OsString, Entry)> {
    let mut out: Vec<(Ino, OsString, Entry)> = before
        .iter()
        .flat_map(|(dir, entries)| {
            entries.iter().filter_map(move |(name, entry)| {
                let same = after.get(dir).and_then(|e| e.get(name)) == Some(entry);
                (!same).then(|| (*dir, name.clone(), *entry))
            })
        })
        .collect();
    out.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    out
}

/// The tree reached from `root` through `entries_of`, parents before children,
/// siblings by name. A directory reached twice is walked once.
fn layout<'a>(root: Ino, entries_of: impl Fn(Ino) -> Option<&'a Entries>) -> Vec<Node> {
    fn walk<'a>(
        dir: Ino,
        rel: &Path,
        entries_of: &impl Fn(Ino) -> Option<&'a Entries>,
        seen: &mut HashSet<Ino>,
        out: &mut Vec<Node>,
    ) {
        let Some(entries) = entries_of(dir) else {
            return;
        };
        for (name, entry) in entries {
            let child = rel.join(name);
            out.push(Node {
                rel: child.clone(),
                parent: dir,
                name: name.clone(),
                entry: *entry,
            });
            if entry.is_dir && seen.insert(entry.ino) {
                walk(entry.ino, &child, entries_of, seen, out);
            }
        }
    }
    let mut out = Vec::new();
    let mut seen = HashSet::from([root]);
    walk(root, Path::new(""), &entries_of, &mut seen, &mut out);
    out
}

/// One line per entry the crash changes, from the tree before (`current`) and
/// after (`durable`), sorted by path. `links` are the removed files that can
/// be brought back.
fn describe(current: &[Node], durable: &[Node], links: &HashMap<Ino, PathBuf>) -> Vec<String> {
    let locations = |nodes: &[Node]| {
        let mut map: HashMap<Ino, Vec<Node>> = HashMap::new();
        for node in nodes {
            map.entry(node.entry.ino).or_default().push(node.clone());
        }
        map
    };
    let now = locations(current);
    let then = locations(durable);
    let key = |n: &Node| (n.parent, n.name.clone());
    let mut lines: Vec<(PathBuf, String)> = Vec::new();
    let mut inos: Vec<Ino> = now.keys().chain(then.keys()).copied().collect();
    inos.sort_unstable();
    inos.dedup();
    for ino in inos {
        let here = now.get(&ino).map_or(&[][..], Vec::as_slice);
        let there = then.get(&ino).map_or(&[][..], Vec::as_slice);
        let gone: Vec<&Node> = here
            .iter()
            .filter(|n| !there.iter().any(|t| key(t) == key(n)))
            // Inside a directory that is dropped as a whole: not worth a line.
            .filter(|n| then.contains_key(&n.parent) || !now.contains_key(&n.parent))
            .collect();
        let new: Vec<&Node> = there
            .iter()
            .filter(|t| !here.iter().any(|n| key(n) == key(t)))
            .collect();
        for (i, node) in gone.iter().enumerate() {
            let kind = kind(node.entry.is_dir);
            let line = match (new.get(i), there.first()) {
                (Some(back), _) => format!(
                    "moved {} back to {} (rename not synced)",
                    show(&node.rel),
                    show(&back.rel)
                ),
                (None, Some(stays)) => format!(
                    "dropped the name {} of {kind} {} (entry not synced)",
                    show(&node.rel),
                    show(&stays.rel)
                ),
                (None, None) => format!("dropped {kind} {} (entry not synced)", show(&node.rel)),
            };
            lines.push((node.rel.clone(), line));
        }
        for node in new.iter().skip(gone.len()) {
            let kind = kind(node.entry.is_dir);
            let line = if let Some(other) = here.first() {
                format!(
                    "{} is back as another name of {} (its removal was not synced)",
                    show(&node.rel),
                    show(&other.rel)
                )
            } else if links.contains_key(&ino) {
                format!(
                    "brought back {kind} {} (removal not synced)",
                    show(&node.rel)
                )
            } else {
                format!(
                    "lost {kind} {}: its entry is durable but the {kind} is gone",
                    show(&node.rel)
                )
            };
            lines.push((node.rel.clone(), line));
        }
    }
    lines.sort();
    lines.into_iter().map(|(_, line)| line).collect()
}

/// Puts a file's data back to its durable state; says what it did, if anything.
fn restore_data(path: &Path, durable: &Durable) -> io::Result<Option<String>> {
    let len = fs::symlink_metadata(path)?.len();
    match durable {
        Durable::Len(keep) if len > *keep => {
            OpenOptions::new().write(true).open(path)?.set_len(*keep)?;
            Ok(Some(format!(
                "truncated from {len} to {keep} bytes (data not synced)"
            )))
        }
        Durable::Len(_) => Ok(None),
        Durable::Bytes(bytes) => {
            if len == bytes.len() as u64 && fs::read(path)? == *bytes {
                return Ok(None);
            }
            fs::write(path, bytes)?;
            Ok(Some(format!(
                "back to its {} synced bytes, was {len} (truncating create not synced)",
                bytes.len()
            )))
        }
    }
}

/// The entries of a directory, by name.
fn read_entries(dir: &Path) -> io::Result<Entries> {
    let mut entries = Entries::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        // `symlink_metadata`, not the `d_ino` of `readdir`, which some
        // filesystems (overlayfs) do not keep equal to `st_ino`.
        let Ok(meta) = fs::symlink_metadata(entry.path()) else {
            continue;
        };
        entries.insert(
            entry.file_name(),
            Entry {
                ino: meta.ino(),
                is_dir: meta.is_dir(),
            },
        );
    }
    Ok(entries)
}

fn scan_dir(dir: &Path, ino: Ino, out: &mut HashMap<Ino, Entries>) {
    let Ok(entries) = read_entries(dir) else {
        return;
    };
    for (name, entry) in &entries {
        if entry.is_dir && !out.contains_key(&entry.ino) {
            scan_dir(&dir.join(name), entry.ino, out);
        }
    }
    out.insert(ino, entries);
}

fn collect_inos(dir: &Path, out: &mut HashSet<Ino>) {
    let Ok(entries) = read_entries(dir) else {
        return;
    };
    for (name, entry) in entries {
        out.insert(entry.ino);
        if entry.is_dir {
            collect_inos(&dir.join(name), out);
        }
    }
}

fn read_prefix(path: &Path, len: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?.take(len).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn show(rel: &Path) -> String {
    rel.display().to_string()
}

fn kind(is_dir: bool) -> &'static str {
    if is_dir { "directory" } else { "file" }
}

fn failure(action: &str, rel: &Path, err: &io::Error) -> String {
    format!(
        "could not {action} {}: {}",
        show(rel),
        crate::errno::error_name(err)
    )
}
