//! The fault-injecting filesystem handed to the in-process connector: one of
//! the rule engine's two front doors (the other is the FUSE daemon).
//!
//! Each call is passed to the [`Engine`](crate::engine::Engine) with the
//! `std::fs` call to make once it is admitted; the engine does everything else
//! (containment, the log, triggers, errno rules, the quota, the crash model).

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use imc::fs::{Fs, FsDir, FsFile, Metadata, OpKind, RealDir, RealFs};

use crate::engine::{Engine, OpenFile};

/// The connector's filesystem inside a [`Sandbox`](crate::Sandbox): the real
/// disk under the sandbox root, with a block quota and a crash model (`vfs`
/// backend) or the kernel's own tmpfs limits (`tmpfs` backend), injected
/// errors, triggered faults, containment and an operation log.
///
/// On the `fuse` backend the FUSE daemon applies all of that to every process
/// using the mount, so this wrapper passes calls straight to [`RealFs`] (the
/// engine must not see the connector's operations twice).
#[derive(Debug)]
pub struct FaultyFs {
    engine: Arc<Engine>,
    /// `fuse`: the daemon admits every operation; this door stays open.
    direct: bool,
    /// The process generation this handle belongs to: after a crash its calls
    /// park for good, as a killed process's never return.
    generation: u64,
}

impl FaultyFs {
    /// The engine's in-process door for the process using the disk now;
    /// `direct` on the `fuse` backend.
    pub(crate) fn new(engine: Arc<Engine>, direct: bool) -> FaultyFs {
        let generation = engine.generation();
        FaultyFs {
            engine,
            direct,
            generation,
        }
    }

    /// Parks the call for good if this handle's process has crashed.
    fn live(&self) -> io::Result<()> {
        self.engine.live(self.generation)
    }
}

impl Fs for FaultyFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.live()?;
        if self.direct {
            return RealFs.create(path);
        }
        let (file, open) = self.engine.create(path, None, || File::create(path))?;
        Ok(Box::new(FaultyFile {
            file,
            open,
            engine: Arc::clone(&self.engine),
            generation: self.generation,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.live()?;
        if self.direct {
            return RealFs.rename(from, to);
        }
        self.engine
            .rename(from, to, false, None, || std::fs::rename(from, to))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.live()?;
        if self.direct {
            return RealFs.remove_file(path);
        }
        self.engine
            .remove(path, None, || std::fs::remove_file(path))
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        self.live()?;
        if self.direct {
            return RealFs.create_dir(path);
        }
        self.engine
            .create_dir(path, None, || RealFs.create_dir(path))
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.live()?;
        if self.direct {
            return RealFs.sync_dir(path);
        }
        self.engine.sync_dir(path, None, |journaled| {
            if journaled {
                RealDir::open(path).map(drop)
            } else {
                RealFs.sync_dir(path)
            }
        })
    }

    fn open_dir(&self, path: &Path) -> io::Result<Box<dyn FsDir>> {
        self.live()?;
        if self.direct {
            return RealFs.open_dir(path);
        }
        // Not an operation of the log: opening changes nothing on the disk, and
        // what is done through the handle is logged (under `path`) and counted
        // by rules and triggers like the same call by path.
        self.engine.contain("open_dir", path)?;
        Ok(Box::new(FaultyDir {
            dir: RealDir::open(path)?,
            path: path.to_owned(),
            engine: Arc::clone(&self.engine),
            generation: self.generation,
        }))
    }

    fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        self.live()?;
        if self.direct {
            return RealFs.metadata(path);
        }
        self.engine
            .look(OpKind::Metadata, path, None, || RealFs.metadata(path))
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        self.live()?;
        if self.direct {
            return RealFs.read_dir(path);
        }
        self.engine
            .look(OpKind::ReadDir, path, None, || RealFs.read_dir(path))
    }

    fn available_space(&self, path: &Path) -> io::Result<u64> {
        self.live()?;
        if self.direct {
            return RealFs.available_space(path);
        }
        self.engine.available_space(path, None)
    }
}

/// A file opened through [`FaultyFs::create`](Fs::create): writes are cut to the
/// quota (or meet the kernel's limit on `tmpfs`), and writes and syncs go
/// through rules, triggers and the log under the path the file was created at.
#[derive(Debug)]
pub struct FaultyFile {
    file: File,
    open: OpenFile,
    engine: Arc<Engine>,
    generation: u64,
}

impl Write for FaultyFile {
    /// Writes what the volume allows: all of `buf`, a prefix (a short write),
    /// or nothing and `ENOSPC`. The file is written sequentially from its end,
    /// as the connector does.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.engine.live(self.generation)?;
        self.engine.write(&self.open, &self.file, None, buf, None)
    }

    /// Not an operation of its own: `File` buffers nothing in user space.
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl FsFile for FaultyFile {
    fn sync_all(&mut self) -> io::Result<()> {
        self.engine.live(self.generation)?;
        self.engine.sync(&self.open, &self.file, None)
    }
}

impl Drop for FaultyFile {
    /// Closing the last handle on a removed file frees its blocks.
    fn drop(&mut self) {
        self.engine.closed(&self.open);
    }
}

/// A directory handle opened through [`FaultyFs::open_dir`](Fs::open_dir): its
/// calls are admitted, logged and counted under the path it was opened at (as
/// a [`FaultyFile`]'s are under its path), while the real call and the crash
/// model act on the directory itself, through its descriptor, wherever it is now.
#[derive(Debug)]
pub struct FaultyDir {
    dir: RealDir,
    path: PathBuf,
    engine: Arc<Engine>,
    generation: u64,
}

impl FaultyDir {
    /// `name` in the directory as it is now: `/proc/self/fd/N` follows the
    /// descriptor, so the crash model reads and records the right directory
    /// (by inode) even after a fault moved it.
    fn here(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.dir.as_raw_fd())).join(name)
    }
}

impl FsDir for FaultyDir {
    fn rename_in(&self, from: &Path, name: &str) -> io::Result<()> {
        self.engine.live(self.generation)?;
        let (shown, real) = (self.path.join(name), self.here(name));
        self.engine
            .rename_at((from, &shown), (from, &real), false, None, || {
                self.dir.rename_in(from, name)
            })
    }

    fn rename_out(&self, name: &str, to: &Path) -> io::Result<()> {
        self.engine.live(self.generation)?;
        let (shown, real) = (self.path.join(name), self.here(name));
        self.engine
            .rename_at((&shown, to), (&real, to), false, None, || {
                self.dir.rename_out(name, to)
            })
    }

    fn remove_file(&self, name: &str) -> io::Result<()> {
        self.engine.live(self.generation)?;
        let (shown, real) = (self.path.join(name), self.here(name));
        self.engine
            .remove_at(&shown, &real, None, || self.dir.remove_file(name))
    }

    fn sync_all(&self) -> io::Result<()> {
        self.engine.live(self.generation)?;
        // The entries of the directory's inode become durable, wherever it is
        // now; on vfs the journal records it and the disk is spared.
        self.engine
            .sync_dir_at(&self.path, &self.here(""), None, |journaled| {
                if journaled {
                    Ok(())
                } else {
                    self.dir.sync_all()
                }
            })
    }
}
