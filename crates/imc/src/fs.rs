//! The connector's only door to the disk.
//!
//! Every file and directory operation of the connector goes through [`Fs`], whose
//! methods have the shapes of their `std::fs` namesakes, so the real
//! implementation ([`RealFs`]) and a fault-injecting wrapper (the harness's
//! sandbox) are drop-in replacements for each other. Nothing in this crate may
//! touch the spool by any other route: a fault that the harness injects here
//! must be the only thing the connector can see.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The kind of a filesystem operation, as counted and matched by fault injectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    /// [`Fs::create`]: create or truncate a file for writing.
    Create,
    /// [`Write::write`] on an [`FsFile`]: write bytes to an open file.
    Write,
    /// [`FsFile::sync_all`]: flush a file's data to stable storage.
    Sync,
    /// [`Fs::sync_dir`]: flush a directory's entries to stable storage.
    SyncDir,
    /// [`Fs::rename`].
    Rename,
    /// [`Fs::remove_file`].
    Remove,
    /// [`Fs::create_dir`].
    CreateDir,
    /// [`Fs::metadata`].
    Metadata,
    /// [`Fs::read_dir`].
    ReadDir,
    /// [`Fs::available_space`].
    AvailableSpace,
}

impl OpKind {
    /// Every kind, in declaration order.
    pub const ALL: [OpKind; 10] = [
        OpKind::Create,
        OpKind::Write,
        OpKind::Sync,
        OpKind::SyncDir,
        OpKind::Rename,
        OpKind::Remove,
        OpKind::CreateDir,
        OpKind::Metadata,
        OpKind::ReadDir,
        OpKind::AvailableSpace,
    ];

    /// The lower-case name used in scenarios and reports (`create`, `write`, `sync_dir`...).
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Create => "create",
            OpKind::Write => "write",
            OpKind::Sync => "sync",
            OpKind::SyncDir => "sync_dir",
            OpKind::Rename => "rename",
            OpKind::Remove => "remove",
            OpKind::CreateDir => "create_dir",
            OpKind::Metadata => "metadata",
            OpKind::ReadDir => "read_dir",
            OpKind::AvailableSpace => "available_space",
        }
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for OpKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OpKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = OpKind::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "unknown operation `{s}`; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// What the connector needs to know about a path (the subset of `std::fs::Metadata` it uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// True for a directory.
    pub is_dir: bool,
    /// True for a regular file.
    pub is_file: bool,
    /// Length in bytes.
    pub len: u64,
}

impl From<std::fs::Metadata> for Metadata {
    fn from(m: std::fs::Metadata) -> Self {
        Metadata {
            is_dir: m.is_dir(),
            is_file: m.is_file(),
            len: m.len(),
        }
    }
}

/// An open file, written sequentially (the shape of `std::fs::File` as the connector uses it).
pub trait FsFile: Write + Send {
    /// Flushes data and metadata to stable storage (`File::sync_all`).
    fn sync_all(&mut self) -> io::Result<()>;
}

impl FsFile for std::fs::File {
    fn sync_all(&mut self) -> io::Result<()> {
        std::fs::File::sync_all(self)
    }
}

/// The connector's filesystem. Paths are absolute; implementations must be thread-safe.
pub trait Fs: Send + Sync + 'static {
    /// Creates (or truncates) a file for writing, like `File::create`.
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;
    /// Renames a file or directory, like `std::fs::rename`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file, like `std::fs::remove_file`.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Creates one directory, like `std::fs::create_dir`.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Flushes a directory's entries to stable storage (`File::open(dir)?.sync_all()`).
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Follows symlinks, like `std::fs::metadata`.
    fn metadata(&self, path: &Path) -> io::Result<Metadata>;
    /// The paths of a directory's entries, sorted by name.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>>;
    /// Bytes available to an unprivileged writer on the volume holding `path`
    /// (`fs4::available_space`, i.e. statvfs `f_bavail * f_frsize`).
    fn available_space(&self, path: &Path) -> io::Result<u64>;
}

/// The real filesystem: `std::fs` plus `fs4` for free space.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

impl Fs for RealFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        Ok(Box::new(std::fs::File::create(path)?))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::File::open(path)?.sync_all()
    }
    fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        std::fs::metadata(path).map(Metadata::from)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let mut out = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<Vec<_>>>()?;
        out.sort();
        Ok(out)
    }
    fn available_space(&self, path: &Path) -> io::Result<u64> {
        fs4::available_space(path)
    }
}
