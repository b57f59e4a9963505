//! The daemon's inode table: the kernel's node ids and the backing paths they
//! stand for (after chaos-mesh/toda's hookfs).
//!
//! A node id is the backing file's `st_ino` (programs use inode numbers: Postfix
//! builds queue ids from them), except the root, which FUSE calls 1. Each node
//! keeps the path it was last looked up at and the kernel's lookup count; a
//! `forget` that brings the count to 0 drops it. Faults change the backing
//! tree behind the kernel's back, so a path is checked against the node's
//! inode before use: a node whose path now names another file is stale.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// FUSE's node id of the mount's root.
pub(crate) const ROOT_ID: u64 = 1;

/// The node ids the kernel holds, and their backing paths.
#[derive(Debug)]
pub(crate) struct Nodes {
    root: PathBuf,
    root_ino: u64,
    by_id: HashMap<u64, Node>,
}

#[derive(Debug)]
struct Node {
    path: PathBuf,
    ino: u64,
    lookups: u64,
    /// A directory: the kernel may cache its entry (see the daemon's `DIR_TTL`).
    dir: bool,
}

impl Nodes {
    /// A table with only the root, the backing directory `root` (inode `root_ino`).
    pub(crate) fn new(root: PathBuf, root_ino: u64) -> Nodes {
        Nodes {
            root,
            root_ino,
            by_id: HashMap::new(),
        }
    }

    /// The node id the kernel is given for a backing file.
    pub(crate) fn id_of(&self, meta: &Metadata) -> u64 {
        if meta.ino() == self.root_ino {
            ROOT_ID
        } else if meta.ino() == ROOT_ID {
            // The one inode number that clashes with FUSE's root id; only
            // filesystems that number their root 1 have it, never for a file.
            u64::MAX
        } else {
            meta.ino()
        }
    }

    /// The backing path of node `id` and the inode it must have there.
    pub(crate) fn path(&self, id: u64) -> Option<(PathBuf, u64)> {
        if id == ROOT_ID {
            return Some((self.root.clone(), self.root_ino));
        }
        self.by_id.get(&id).map(|n| (n.path.clone(), n.ino))
    }

    /// Whether node `id` is a directory (the root is).
    pub(crate) fn is_dir(&self, id: u64) -> bool {
        id == ROOT_ID || self.by_id.get(&id).is_some_and(|n| n.dir)
    }

    /// The backing path of `name` in directory node `parent`. Names are one
    /// component (the kernel never sends `/`); `.` and `..` are refused so no
    /// path can leave the backing tree.
    pub(crate) fn child(&self, parent: u64, name: &OsStr) -> Option<PathBuf> {
        if name == "." || name == ".." || name.is_empty() {
            return None;
        }
        self.path(parent).map(|(dir, _)| dir.join(name))
    }

    /// The kernel got an entry for `path` (a lookup, create, mkdir...):
    /// counts it and returns the node id.
    pub(crate) fn remember(&mut self, path: &Path, meta: &Metadata) -> u64 {
        let id = self.id_of(meta);
        if id == ROOT_ID {
            return id;
        }
        let node = self.by_id.entry(id).or_insert_with(|| Node {
            path: path.to_owned(),
            ino: meta.ino(),
            lookups: 0,
            dir: meta.is_dir(),
        });
        node.path = path.to_owned();
        node.ino = meta.ino();
        node.dir = meta.is_dir();
        node.lookups += 1;
        id
    }

    /// True if the kernel holds the entry for `path` (`meta` its backing
    /// file's): a lookup of it then is the kernel revalidating that entry.
    pub(crate) fn holds(&self, path: &Path, meta: &Metadata) -> bool {
        self.by_id
            .get(&self.id_of(meta))
            .is_some_and(|n| n.path == path)
    }

    /// The kernel dropped `n` references to node `id`.
    pub(crate) fn forget(&mut self, id: u64, n: u64) {
        if let Some(node) = self.by_id.get_mut(&id) {
            node.lookups = node.lookups.saturating_sub(n);
            if node.lookups == 0 {
                self.by_id.remove(&id);
            }
        }
    }

    /// `from` was renamed to `to`: every node at or under `from` moves along.
    /// A file moves alone, so only a directory costs a walk of the table (a
    /// spool renames thousands of files, and the table holds them all).
    pub(crate) fn renamed(&mut self, from: &Path, to: &Path) {
        if let Ok(meta) = std::fs::symlink_metadata(to)
            && !meta.is_dir()
        {
            let id = self.id_of(&meta);
            if let Some(node) = self.by_id.get_mut(&id)
                && node.path == from
            {
                node.path = to.to_owned();
            }
            return;
        }
        for node in self.by_id.values_mut() {
            if let Ok(rest) = node.path.strip_prefix(from) {
                node.path = moved(to, rest);
            }
        }
    }

    /// `a` and `b` were exchanged (`RENAME_EXCHANGE`).
    pub(crate) fn exchanged(&mut self, a: &Path, b: &Path) {
        for node in self.by_id.values_mut() {
            if let Ok(rest) = node.path.strip_prefix(a) {
                node.path = moved(b, rest);
            } else if let Ok(rest) = node.path.strip_prefix(b) {
                node.path = moved(a, rest);
            }
        }
    }
}

/// `rest` under `to` (`to` itself when `rest` is empty: no trailing `/`).
fn moved(to: &Path, rest: &Path) -> PathBuf {
    if rest.as_os_str().is_empty() {
        to.to_owned()
    } else {
        to.join(rest)
    }
}
