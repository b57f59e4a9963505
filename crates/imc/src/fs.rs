//! The connector's only door to the disk.
//!
//! Every file and directory operation of the connector goes through [`Fs`], whose
//! methods have the shapes of their `std::fs` namesakes, so the real
//! implementation ([`RealFs`]) and a fault-injecting wrapper (the harness's
//! sandbox) are drop-in replacements for each other. Nothing in this crate may
//! touch the spool by any other route: a fault that the harness injects here
//! must be the only thing the connector can see.

use std::ffi::CString;
use std::fmt;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
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
    /// [`Fs::sync_dir`] or [`FsDir::sync_all`]: flush a directory's entries to
    /// stable storage.
    SyncDir,
    /// [`Fs::rename`], [`FsDir::rename_in`] or [`FsDir::rename_out`].
    Rename,
    /// [`Fs::remove_file`] or [`FsDir::remove_file`].
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

/// A directory opened as a handle (`File::open(dir)`, with `O_DIRECTORY`):
/// what is done through it (`renameat`, `unlinkat` and `fsync` on its
/// descriptor) happens in that directory wherever it has been moved since it
/// was opened, so a move into it and the flush that makes the move durable
/// cannot land in two different directories. Names are single path components.
pub trait FsDir: Send + Sync {
    /// Moves the file at `from` into this directory as `name`
    /// (`renameat(AT_FDCWD, from, dirfd, name)`).
    fn rename_in(&self, from: &Path, name: &str) -> io::Result<()>;
    /// Moves this directory's entry `name` to the path `to`
    /// (`renameat(dirfd, name, AT_FDCWD, to)`).
    fn rename_out(&self, name: &str, to: &Path) -> io::Result<()>;
    /// Removes the file `name` from this directory (`unlinkat(dirfd, name, 0)`).
    fn remove_file(&self, name: &str) -> io::Result<()>;
    /// Flushes this directory's entries to stable storage (`fsync(dirfd)`).
    fn sync_all(&self) -> io::Result<()>;
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
    /// Flushes a directory's entries to stable storage (`File::open(dir)?.sync_all()`,
    /// opened with `O_DIRECTORY`: `ENOTDIR` for anything but a directory).
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Opens a directory as a handle ([`FsDir`]); fails with `ENOTDIR` for
    /// anything but a directory. Opening changes nothing on the disk.
    fn open_dir(&self, path: &Path) -> io::Result<Box<dyn FsDir>>;
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
        // `O_DIRECTORY`: a plain file put where the directory was must not be
        // flushed in its place (its fsync would succeed and flush nothing of it).
        RealDir::open(path)?.sync_all()
    }
    fn open_dir(&self, path: &Path) -> io::Result<Box<dyn FsDir>> {
        Ok(Box::new(RealDir::open(path)?))
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

/// The real directory handle: an `O_DIRECTORY` descriptor and the `*at` calls.
#[derive(Debug)]
pub struct RealDir {
    dir: std::fs::File,
}

impl RealDir {
    /// Opens `path`, which must be a directory (`ENOTDIR` otherwise).
    pub fn open(path: &Path) -> io::Result<RealDir> {
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(path)?;
        Ok(RealDir { dir })
    }
}

impl AsFd for RealDir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }
}

impl AsRawFd for RealDir {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.dir.as_raw_fd()
    }
}

/// A path or name as a C string; a NUL byte in it is `EINVAL`, as the kernel would say.
fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// A single component: a name with a `/` (or `..`, `.`, nothing) would leave the directory.
fn c_name(name: &str) -> io::Result<CString> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    c_path(Path::new(name))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl FsDir for RealDir {
    fn rename_in(&self, from: &Path, name: &str) -> io::Result<()> {
        let (from, name) = (c_path(from)?, c_name(name)?);
        // SAFETY: both strings are NUL-terminated and outlive the call; the
        // descriptor is open for as long as `self`.
        check(unsafe {
            libc::renameat(
                libc::AT_FDCWD,
                from.as_ptr(),
                self.dir.as_raw_fd(),
                name.as_ptr(),
            )
        })
    }
    fn rename_out(&self, name: &str, to: &Path) -> io::Result<()> {
        let (name, to) = (c_name(name)?, c_path(to)?);
        // SAFETY: as in `rename_in`.
        check(unsafe {
            libc::renameat(
                self.dir.as_raw_fd(),
                name.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
            )
        })
    }
    fn remove_file(&self, name: &str) -> io::Result<()> {
        let name = c_name(name)?;
        // SAFETY: as in `rename_in`.
        check(unsafe { libc::unlinkat(self.dir.as_raw_fd(), name.as_ptr(), 0) })
    }
    fn sync_all(&self) -> io::Result<()> {
        self.dir.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_not_flushed_as_a_directory() {
        // A plain file put where IN was: opening it as a directory must fail,
        // or its fsync would pass for a flush of IN's entries.
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("in");
        std::fs::write(&file, b"").unwrap();
        let not_dir = |e: io::Error| e.raw_os_error() == Some(libc::ENOTDIR);
        assert!(RealFs.sync_dir(&file).is_err_and(not_dir));
        assert!(RealFs.open_dir(&file).err().is_some_and(not_dir));
    }

    #[test]
    fn a_handle_acts_on_its_directory_wherever_it_went() {
        let root = tempfile::tempdir().unwrap();
        let (dir, moved) = (root.path().join("in"), root.path().join("in.bak"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(root.path().join("m"), b"x").unwrap();
        let handle = RealFs.open_dir(&dir).unwrap();
        std::fs::rename(&dir, &moved).unwrap();
        handle.rename_in(&root.path().join("m"), "m").unwrap();
        handle.sync_all().unwrap();
        assert!(moved.join("m").is_file());
        handle.rename_out("m", &root.path().join("back")).unwrap();
        assert!(root.path().join("back").is_file());
        std::fs::write(moved.join("n"), b"y").unwrap();
        handle.remove_file("n").unwrap();
        assert!(!moved.join("n").exists());
        let einval = |e: io::Error| e.raw_os_error() == Some(libc::EINVAL);
        assert!(handle.remove_file("../m").is_err_and(einval));
    }
}
