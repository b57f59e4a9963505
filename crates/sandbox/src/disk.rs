//! Faults that change the tree under the root, done for real with `std::fs`.
//!
//! These act from outside the connector's view, as an operator or another
//! process would: they bypass the faulty filesystem, so they are neither logged
//! as connector operations nor counted by rules and triggers.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use fs4::FileExt;

use crate::SandboxError;
use crate::paths::{RelPath, resolve};
use crate::quota::{BLOCK, charged, whole_blocks};

/// Name of the ballast file `FillDisk` grows, directly under the root.
pub const BALLAST: &str = "ballast.bin";

/// Applies the on-disk faults and remembers how to undo them.
#[derive(Debug)]
pub(crate) struct Disk {
    root: PathBuf,
    stash: PathBuf,
    /// Held for the whole of each fault, so that faults applied from several
    /// threads (triggers fire on the connector's threads) never interleave.
    undo: Mutex<Undo>,
}

/// What `Restore` can undo, per root-relative path.
#[derive(Debug, Default)]
struct Undo {
    by_path: HashMap<String, Vec<Undoable>>,
    /// The paths of the records in `by_path`, in the order the faults were made.
    order: Vec<String>,
    stashed: u64,
}

/// One undoable fault, as recorded under the path it was applied to.
#[derive(Debug)]
enum Undoable {
    /// `Remove`: what was there (only its kind can be brought back).
    Removed { was_dir: bool },
    /// `Rename`: where it went.
    Renamed { to: RelPath },
    /// `Replace`: where in the stash it is kept.
    Replaced { stashed: PathBuf },
}

impl Disk {
    /// A disk acting on `root`, stashing replaced trees in `stash` (which must be
    /// on the same volume, so that stashing is a rename).
    pub(crate) fn new(root: PathBuf, stash: PathBuf) -> Disk {
        Disk {
            root,
            stash,
            undo: Mutex::new(Undo::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Undo> {
        // A panic elsewhere must not make every later fault panic too.
        self.undo.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks that `path` is a valid scenario path.
    pub(crate) fn resolve(&self, path: &str) -> Result<RelPath, SandboxError> {
        resolve(&self.root, path)
    }

    /// `Fault::Remove`.
    pub(crate) fn remove(&self, path: &str) -> Result<String, SandboxError> {
        let p = self.resolve(path)?;
        let mut undo = self.lock();
        let meta =
            fs::symlink_metadata(&p.abs).map_err(|e| SandboxError::io("remove", &p.rel, e))?;
        let was_dir = meta.is_dir();
        if was_dir {
            fs::remove_dir_all(&p.abs)
        } else {
            fs::remove_file(&p.abs)
        }
        .map_err(|e| SandboxError::io("remove", &p.rel, e))?;
        undo.push(&p.rel, Undoable::Removed { was_dir });
        Ok(format!("removed {} {}", kind(was_dir), p.rel))
    }

    /// `Fault::Rename`.
    pub(crate) fn rename(&self, from: &str, to: &str) -> Result<String, SandboxError> {
        let from = self.resolve(from)?;
        let to = self.resolve(to)?;
        if from.rel == to.rel {
            return Err(SandboxError::conflict(
                &from.rel,
                "cannot rename a path onto itself",
            ));
        }
        let mut undo = self.lock();
        let meta = fs::symlink_metadata(&from.abs)
            .map_err(|e| SandboxError::io("rename", &from.rel, e))?;
        if fs::symlink_metadata(&to.abs).is_ok() {
            return Err(SandboxError::conflict(
                &to.rel,
                format!(
                    "the rename target already exists; renaming {} onto it could not be undone",
                    from.rel
                ),
            ));
        }
        fs::rename(&from.abs, &to.abs)
            .map_err(|e| SandboxError::io(format!("rename to {}", to.rel), &from.rel, e))?;
        let description = format!("renamed {} {} -> {}", kind(meta.is_dir()), from.rel, to.rel);
        undo.push(&from.rel, Undoable::Renamed { to });
        Ok(description)
    }

    /// `Fault::Replace`.
    pub(crate) fn replace(&self, path: &str) -> Result<String, SandboxError> {
        let p = self.resolve(path)?;
        let mut undo = self.lock();
        let meta =
            fs::symlink_metadata(&p.abs).map_err(|e| SandboxError::io("replace", &p.rel, e))?;
        undo.stashed += 1;
        let stashed = self.stash.join(undo.stashed.to_string());
        move_path(&p.abs, &stashed).map_err(|e| SandboxError::io("stash", &p.rel, e))?;
        if let Err(e) = File::create_new(&p.abs) {
            // Put things back rather than leave a half-applied fault behind.
            let _ = move_path(&stashed, &p.abs);
            return Err(SandboxError::io("create the placeholder file", &p.rel, e));
        }
        undo.push(&p.rel, Undoable::Replaced { stashed });
        Ok(format!(
            "replaced {} {} with an empty file (original stashed)",
            kind(meta.is_dir()),
            p.rel
        ))
    }

    /// `Fault::Restore`: undoes the last undoable fault on `path`. The record is
    /// dropped only once the undo succeeded, so a failed restore can be retried.
    pub(crate) fn restore(&self, path: &str) -> Result<String, SandboxError> {
        let p = self.resolve(path)?;
        let mut undo = self.lock();
        let Some(last) = undo.by_path.get(&p.rel).and_then(|stack| stack.last()) else {
            return Err(SandboxError::conflict(
                &p.rel,
                "nothing to restore: it was not removed, renamed or replaced (or was already restored)",
            ));
        };
        if let Undoable::Renamed { to } = last {
            // Undo in order: what was done later where it went must be undone
            // first, or the wrong thing would be moved back.
            let at = undo.order.iter().rposition(|q| *q == p.rel).unwrap_or(0);
            if let Some(later) = undo.order[at + 1..].iter().find(|q| overlaps(q, &to.rel)) {
                return Err(SandboxError::conflict(
                    &p.rel,
                    format!(
                        "{later} was faulted after {} was renamed to {}; restore {later} first",
                        p.rel, to.rel
                    ),
                ));
            }
        }
        let description = match last {
            Undoable::Removed { was_dir } => self.recreate(&p, *was_dir)?,
            Undoable::Renamed { to } => {
                let how = move_back(&to.abs, &to.rel, &p)?;
                format!("restored {} from {}: {how}", p.rel, to.rel)
            }
            Undoable::Replaced { stashed } => {
                let placeholder = fs::symlink_metadata(&p.abs).is_ok_and(|m| m.is_file());
                if placeholder {
                    fs::remove_file(&p.abs)
                        .map_err(|e| SandboxError::io("remove the placeholder file", &p.rel, e))?;
                }
                let how = move_back(stashed, "the stash", &p)?;
                let removed = if placeholder {
                    "removed the placeholder file, "
                } else {
                    ""
                };
                format!("restored {} from the stash: {removed}{how}", p.rel)
            }
        };
        undo.pop(&p.rel);
        Ok(description)
    }

    /// The latest fault not yet undone, as the disk is now.
    pub(crate) fn next_restore(&self) -> Option<crate::Displacement> {
        let undo = self.lock();
        let path = undo.order.last()?;
        let record = undo.by_path[path].last()?;
        Some(crate::Displacement {
            path: path.clone(),
            removed_file: matches!(record, Undoable::Removed { was_dir: false }),
            vanished: match record {
                Undoable::Renamed { to } => fs::symlink_metadata(&to.abs).is_err(),
                Undoable::Replaced { stashed } => fs::symlink_metadata(stashed).is_err(),
                Undoable::Removed { .. } => false,
            },
        })
    }

    /// Forgets the latest undo record of `path` without acting on the disk
    /// (after a restore that cannot be made, so the next one can be tried).
    pub(crate) fn forget(&self, path: &str) {
        if let Ok(p) = self.resolve(path) {
            self.lock().pop(&p.rel);
        }
    }

    /// Undoes a `Remove`: brings back an empty directory (or empty file).
    fn recreate(&self, p: &RelPath, was_dir: bool) -> Result<String, SandboxError> {
        match fs::symlink_metadata(&p.abs) {
            Ok(meta) if meta.is_dir() == was_dir => Ok(format!(
                "restored {}: it already exists again as {}",
                p.rel,
                article(was_dir)
            )),
            Ok(meta) => Err(SandboxError::conflict(
                &p.rel,
                format!(
                    "it now exists as {}, not as the {} that was removed",
                    article(meta.is_dir()),
                    kind(was_dir)
                ),
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let created = if was_dir {
                    fs::create_dir_all(&p.abs)
                } else {
                    p.abs
                        .parent()
                        .map_or(Ok(()), fs::create_dir_all)
                        .and_then(|()| File::create_new(&p.abs).map(drop))
                };
                created.map_err(|e| SandboxError::io("recreate", &p.rel, e))?;
                Ok(format!(
                    "restored {}: recreated it as an empty {}",
                    p.rel,
                    kind(was_dir)
                ))
            }
            Err(e) => Err(SandboxError::io("restore", &p.rel, e)),
        }
    }

    /// `Fault::FillDisk`: grows the ballast so that `leave` bytes, rounded down
    /// to whole blocks, stay free of the `limit`. `free` reads the free space
    /// (the quota's or the kernel's) once the fault holds the lock.
    pub(crate) fn fill(
        &self,
        limit: u64,
        free: impl FnOnce() -> io::Result<u64>,
        leave: u64,
    ) -> Result<String, SandboxError> {
        let _undo = self.lock();
        let free = free().map_err(|e| SandboxError::io("measure the free space of", ".", e))?;
        let keep = whole_blocks(leave);
        let rounded = if keep == leave {
            String::new()
        } else {
            format!(" ({leave} asked; space comes in {BLOCK}-byte blocks)")
        };
        if free <= keep {
            return Ok(format!(
                "disk left as is: {free} bytes free, not more than the {leave} to leave"
            ));
        }
        let path = self.root.join(BALLAST);
        let io_err = |e| SandboxError::io("grow the ballast", BALLAST, e);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err)?;
        // Whole blocks: the ballast's last block is complete, and the free
        // space is a whole number of blocks, on both backends.
        let len = charged(file.metadata().map_err(io_err)?.len()) + whole_blocks(free - keep);
        // `allocate` skips files whose blocks already cover `len` (the last block
        // of an earlier ballast may have room), so extend the length explicitly.
        FileExt::allocate(&file, len).map_err(io_err)?;
        if file.metadata().map_err(io_err)?.len() < len {
            file.set_len(len).map_err(io_err)?;
        }
        Ok(format!(
            "filled disk: {BALLAST} is {len} bytes, leaving {keep} of {limit} bytes free{rounded}"
        ))
    }

    /// `Fault::FreeDisk`: removes the ballast.
    pub(crate) fn free(&self) -> Result<String, SandboxError> {
        let _undo = self.lock();
        let path = self.root.join(BALLAST);
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => meta,
            Ok(_) => {
                return Err(SandboxError::conflict(
                    BALLAST,
                    "is not a regular file, not removing it",
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(SandboxError::conflict(
                    BALLAST,
                    "no ballast file to free: the disk was not filled",
                ));
            }
            Err(e) => return Err(SandboxError::io("free", BALLAST, e)),
        };
        // Truncated first: removing alone frees the blocks only at the last
        // close, and a child process forked meanwhile (a process target
        // starting elsewhere in this process) holds a copy of every open
        // descriptor until its exec, so the space could come back late.
        OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(0))
            .map_err(|e| SandboxError::io("truncate", BALLAST, e))?;
        fs::remove_file(&path).map_err(|e| SandboxError::io("remove", BALLAST, e))?;
        Ok(format!(
            "freed disk: removed {BALLAST} ({} bytes)",
            meta.len()
        ))
    }
}

impl Undo {
    fn push(&mut self, rel: &str, undoable: Undoable) {
        self.by_path
            .entry(rel.to_owned())
            .or_default()
            .push(undoable);
        self.order.push(rel.to_owned());
    }

    fn pop(&mut self, rel: &str) {
        if let Some(stack) = self.by_path.get_mut(rel) {
            stack.pop();
            if stack.is_empty() {
                self.by_path.remove(rel);
            }
            if let Some(at) = self.order.iter().rposition(|p| p == rel) {
                self.order.remove(at);
            }
        }
    }
}

/// Whether one root-relative path is the other or lies under it.
fn overlaps(a: &str, b: &str) -> bool {
    let under = |x: &str, y: &str| x.strip_prefix(y).is_some_and(|r| r.starts_with('/'));
    a == b || under(a, b) || under(b, a)
}

/// Moves `src` back to `dst`. If the connector has recreated `dst` as a
/// directory meanwhile, the entries of `src` are moved into it instead, so that
/// both what it wrote since and what was taken away end up in place; a name
/// present in both is refused before anything moves.
fn move_back(src: &Path, src_label: &str, dst: &RelPath) -> Result<String, SandboxError> {
    let src_meta =
        fs::symlink_metadata(src).map_err(|e| SandboxError::io("restore from", src_label, e))?;
    match fs::symlink_metadata(&dst.abs) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Its parent may be gone too (removed after it was displaced): put
            // the way back first, as one restoring a backup would.
            if let Some(parent) = dst.abs.parent() {
                fs::create_dir_all(parent)
                    .map_err(|e| SandboxError::io("recreate the parent of", &dst.rel, e))?;
            }
            move_path(src, &dst.abs).map_err(|e| SandboxError::io("move back", &dst.rel, e))?;
            Ok(format!("moved the {} back", kind(src_meta.is_dir())))
        }
        Err(e) => Err(SandboxError::io("restore", &dst.rel, e)),
        Ok(meta) if meta.is_dir() && src_meta.is_dir() => {
            let entries = merge_into(src, &dst.abs).map_err(|e| match e {
                Merge::Clash(name) => SandboxError::conflict(
                    &dst.rel,
                    format!("`{name}` exists both in {src_label} and in the recreated directory"),
                ),
                Merge::Io(e) => SandboxError::io("merge into", &dst.rel, e),
            })?;
            Ok(format!(
                "moved {entries} entries into the directory recreated meanwhile"
            ))
        }
        Ok(meta) => Err(SandboxError::conflict(
            &dst.rel,
            format!(
                "{} is in the way of the {} to restore",
                article(meta.is_dir()),
                kind(src_meta.is_dir())
            ),
        )),
    }
}

/// Moves `src` to `dst` by renaming, or, across filesystems (a `tmpfs`
/// sandbox's root is a mount of its own, its stash is not), by copying the tree
/// and removing the original: like `mv`.
fn move_path(src: &Path, dst: &Path) -> io::Result<()> {
    match fs::rename(src, dst) {
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            if let Err(e) = copy_tree(src, dst) {
                let _ = remove_tree(dst);
                return Err(e);
            }
            remove_tree(src)
        }
        other => other,
    }
}

/// Copies a file, symlink or directory tree, keeping permissions.
fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(src)?;
    if meta.is_dir() {
        fs::create_dir(dst)?;
        for entry in fs::read_dir(src)? {
            let entry = entry?;
            copy_tree(&entry.path(), &dst.join(entry.file_name()))?;
        }
        fs::set_permissions(dst, meta.permissions())
    } else if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, dst)
    } else {
        fs::copy(src, dst).map(drop)
    }
}

fn remove_tree(path: &Path) -> io::Result<()> {
    if fs::symlink_metadata(path)?.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

/// Why [`merge_into`] stopped.
enum Merge {
    /// An entry name present on both sides.
    Clash(String),
    /// An OS error.
    Io(io::Error),
}

/// Moves every entry of directory `src` into directory `dst`, then removes
/// `src`; returns how many entries moved. Clashes are checked for all entries
/// before the first one moves.
fn merge_into(src: &Path, dst: &Path) -> Result<usize, Merge> {
    let mut names = fs::read_dir(src)
        .and_then(|entries| {
            entries
                .map(|e| e.map(|e| e.file_name()))
                .collect::<io::Result<Vec<_>>>()
        })
        .map_err(Merge::Io)?;
    names.sort();
    if let Some(clash) = names
        .iter()
        .find(|name| fs::symlink_metadata(dst.join(name)).is_ok())
    {
        return Err(Merge::Clash(clash.to_string_lossy().into_owned()));
    }
    for name in &names {
        move_path(&src.join(name), &dst.join(name)).map_err(Merge::Io)?;
    }
    fs::remove_dir(src).map_err(Merge::Io)?;
    Ok(names.len())
}

fn kind(is_dir: bool) -> &'static str {
    if is_dir { "directory" } else { "file" }
}

fn article(is_dir: bool) -> &'static str {
    if is_dir { "a directory" } else { "a file" }
}
