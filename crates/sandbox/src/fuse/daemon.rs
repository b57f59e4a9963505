//! The FUSE request handlers: a passthrough to the backing directory in which
//! every request a process makes goes through the rule engine, so each is
//! logged with its caller, counted by rules and triggers, and may be failed.
//!
//! Which request is which operation (the `Fs` trait's kinds first, then those
//! only a process on the mount makes, `OpKind::MOUNT`):
//!
//! | request | operation |
//! | --- | --- |
//! | `create`, `open` with `O_TRUNC` for writing | `create` |
//! | `write` | `write` |
//! | `fsync` | `sync` |
//! | `fsyncdir` | `sync_dir` |
//! | `rename` (any flags) | `rename` |
//! | `unlink`, `rmdir` | `remove` |
//! | `mkdir` | `create_dir` |
//! | `getattr` without a handle (`stat`, `fstat`) | `metadata` |
//! | first `readdir` of an open directory | `read_dir` |
//! | `statfs` | `available_space` |
//! | `lookup` (one name of a path being walked) | `lookup` |
//! | `open` without truncation | `open` |
//! | `read` | `read` |
//! | `getattr` with a handle (the kernel's, for an `lseek` to the end) | `fstat` |
//! | `setattr` with a size / else a mode / else an owner / else times | `truncate` / `chmod` / `chown` / `set_times` |
//! | `link`, `symlink`, `readlink`, `mknod`, `access`, `opendir` | `link`, `symlink`, `read_link`, `mknod`, `access`, `open_dir` |
//! | `flush` (each `close` of a descriptor) | `flush` |
//!
//! Only the kernel's bookkeeping is left out: `forget`, `release` and
//! `releasedir` (their errors reach no process) and `init`. Requests the
//! daemon does not implement (extended attributes, locks, `fallocate`,
//! `lseek`, `ioctl`) are answered `ENOSYS` by `fuser` and not logged.
//!
//! The in-process connector on the mount therefore shows more than through
//! its own door: each path it names is walked (`lookup`s), each close is a
//! `flush`, a `metadata` of a missing path fails at a `lookup` (and is not
//! logged as a `metadata`), and glibc's `opendir` shows as an `open_dir` and
//! a `metadata` of the directory before its `read_dir`. The kinds it shares
//! with the `Fs` trait are counted alike. Every handler works on the backing
//! tree only; none touches the mount (that would send a request to this very
//! daemon).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};
use imc::fs::OpKind;

use super::nodes::Nodes;
use crate::Caller;
use crate::engine::{Engine, OpenFile};
use crate::quota::BLOCK;

/// Attributes, and the entries of everything but directories, are never
/// cached by the kernel (LazyFS's choice): a fault applied to the backing tree
/// is seen by the next request.
const NO_CACHE: Duration = Duration::ZERO;

/// How long the kernel may keep a directory's entry (its name -> node), so a
/// path walk through `imcdata/in` is not a `lookup` per component: 11 of the
/// 20 requests of a spooled message were. A fault that moves, removes or
/// replaces a directory is still seen at once: a request naming a directory
/// node whose path no longer holds its inode is answered `ESTALE`, on which
/// the kernel walks the path again, revalidating every entry (`LOOKUP_REVAL`).
/// A directory has one cached name, which the kernel moves when a `lookup`
/// finds the same node under another (`d_splice_alias`), as the node table
/// does: so the node's path is the name the kernel walked.
const DIR_TTL: Duration = Duration::from_secs(3600);

/// The entry timeout for a node of this kind.
fn entry_ttl(meta: &Metadata) -> Duration {
    if meta.is_dir() { DIR_TTL } else { NO_CACHE }
}

/// How files are opened: direct I/O, so the kernel's page cache holds
/// nothing and each write(2) is one request of exactly its bytes, as a call
/// through the in-process door is (a buffered write is cut at page
/// boundaries); reads always come from the backing file.
const FILE_OPEN: FopenFlags = FopenFlags::FOPEN_DIRECT_IO;

/// The daemon serving one mount.
#[derive(Debug)]
pub(crate) struct Daemon {
    engine: Arc<Engine>,
    nodes: Mutex<Nodes>,
    files: Mutex<HashMap<u64, Arc<Handle>>>,
    dirs: Mutex<HashMap<u64, DirHandle>>,
    next_handle: AtomicU64,
    /// Callers' process ids by thread id, read once from `/proc`.
    callers: Mutex<HashMap<u32, u32>>,
    /// Lookups failed by a rule while the kernel held the entry, by thread:
    /// the path and the error, owed again to that thread's next request.
    replays: Mutex<HashMap<u32, (PathBuf, Errno)>>,
}

/// An open file.
#[derive(Debug)]
struct Handle {
    file: File,
    open: OpenFile,
}

/// An open directory; its entries are read at the first `readdir`.
#[derive(Debug)]
struct DirHandle {
    path: PathBuf,
    /// The backing directory itself, open since `opendir`: a flush through
    /// the handle reaches that inode even if a fault has moved it since.
    dir: Option<File>,
    entries: Option<Vec<(u64, FileType, std::ffi::OsString)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn errno(e: &io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

/// The attributes the kernel is given for a backing file: its own inode
/// number (the node id), mode, owner, size and times.
fn attr(id: u64, meta: &Metadata) -> FileAttr {
    let time = |secs: i64, nsecs: i64| {
        if secs >= 0 {
            UNIX_EPOCH + Duration::new(secs as u64, nsecs as u32)
        } else {
            UNIX_EPOCH
        }
    };
    FileAttr {
        ino: INodeNo(id),
        size: meta.size(),
        blocks: meta.blocks(),
        atime: time(meta.atime(), meta.atime_nsec()),
        mtime: time(meta.mtime(), meta.mtime_nsec()),
        ctime: time(meta.ctime(), meta.ctime_nsec()),
        crtime: time(meta.ctime(), meta.ctime_nsec()),
        kind: FileType::from_std(meta.file_type()).unwrap_or(FileType::RegularFile),
        perm: (meta.mode() & 0o7777) as u16,
        nlink: meta.nlink() as u32,
        uid: meta.uid(),
        gid: meta.gid(),
        rdev: meta.rdev() as u32,
        blksize: BLOCK as u32,
        flags: 0,
    }
}

/// Opens `path` on the backing tree with the kernel's open flags.
fn open_backing(path: &Path, flags: i32, mode: Option<u32>) -> io::Result<File> {
    let access = flags & libc::O_ACCMODE;
    let mut options = OpenOptions::new();
    options
        .read(access == libc::O_RDONLY || access == libc::O_RDWR)
        .write(access == libc::O_WRONLY || access == libc::O_RDWR)
        .truncate(flags & libc::O_TRUNC != 0)
        // The kernel gives every write its offset; an O_APPEND backing file
        // would ignore it.
        .custom_flags(
            flags
                & !(libc::O_ACCMODE
                    | libc::O_CREAT
                    | libc::O_EXCL
                    | libc::O_TRUNC
                    | libc::O_APPEND
                    | libc::O_NOCTTY),
        );
    if let Some(mode) = mode {
        options.mode(mode);
        if flags & libc::O_EXCL != 0 {
            options.create_new(true);
        } else {
            options.create(true);
        }
    }
    options.open(path)
}

/// Gives a new node to the calling user, as a kernel filesystem would (the
/// daemon runs as root; daemons under test may not).
fn own(path: &Path, req: &Request) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(req.uid()), Some(req.gid()))
}

impl Daemon {
    /// A daemon passing through to `engine`'s tree.
    pub(crate) fn new(engine: Arc<Engine>) -> io::Result<Daemon> {
        let root = engine.root().to_owned();
        let root_ino = fs::symlink_metadata(&root)?.ino();
        Ok(Daemon {
            engine,
            nodes: Mutex::new(Nodes::new(root, root_ino)),
            files: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            callers: Mutex::new(HashMap::new()),
            replays: Mutex::new(HashMap::new()),
        })
    }

    /// The process behind a request. The kernel sends the calling thread's
    /// id; the caller is its process (thread group) and that process's name
    /// as it is now: an `exec` renames a process (a child's `chdir` before
    /// its `exec` is made under its parent's name), so only the thread group
    /// is remembered, never the name.
    fn caller(&self, req: &Request) -> Caller {
        let tid = req.pid();
        // Any other request: the thread's syscall went on past the lookup.
        lock(&self.replays).remove(&tid);
        let pid = {
            let mut groups = lock(&self.callers);
            if groups.len() > 4096 {
                // Ids get reused; a bounded cache is refreshed now and then.
                groups.clear();
            }
            *groups.entry(tid).or_insert_with(|| {
                let status = fs::read_to_string(format!("/proc/{tid}/status")).unwrap_or_default();
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("Tgid:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(tid)
            })
        };
        let process = fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|s| s.trim_end().to_owned())
            .unwrap_or_default();
        Caller { pid, process }
    }

    /// The backing path of node `id`, if it still names the node's inode.
    /// A directory's that does not is `ESTALE`: its entry may be cached, and
    /// the kernel then walks the path afresh (see [`DIR_TTL`]).
    fn path(&self, id: INodeNo) -> Result<PathBuf, Errno> {
        let (path, ino, dir) = {
            let nodes = lock(&self.nodes);
            let (path, ino) = nodes.path(id.0).ok_or(Errno::ESTALE)?;
            (path, ino, nodes.is_dir(id.0))
        };
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.ino() == ino => Ok(path),
            // A fault moved or replaced it behind the kernel's back.
            _ if dir => Err(Errno::ESTALE),
            Ok(_) => Err(Errno::ENOENT),
            Err(e) => Err(errno(&e)),
        }
    }

    /// The backing path of `name` in directory node `parent`, which must still
    /// be where the kernel thinks (its entry may be cached: see [`DIR_TTL`]).
    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        let (path, ino) = {
            let nodes = lock(&self.nodes);
            let path = nodes.child(parent.0, name).ok_or(Errno::EINVAL)?;
            if parent.0 == super::nodes::ROOT_ID {
                // The root never moves (faults cannot name it).
                return Ok(path);
            }
            let (_, ino) = nodes.path(parent.0).ok_or(Errno::ESTALE)?;
            (path, ino)
        };
        match path.parent().map(fs::symlink_metadata) {
            Some(Ok(meta)) if meta.ino() == ino => Ok(path),
            _ => Err(Errno::ESTALE),
        }
    }

    /// Admits `op` on `path` (`to`: a link's new name), made by the process
    /// behind `req`, and does it with `call` unless a rule fails it.
    fn admitted<T>(
        &self,
        req: &Request,
        op: OpKind,
        path: &Path,
        to: Option<&Path>,
        call: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<T> {
        let caller = self.caller(req);
        self.engine.plain(op, path, to, Some(&caller), call)
    }

    /// Replies with the entry now at `path`, counting the kernel's reference.
    fn entry(&self, path: &Path, reply: ReplyEntry) {
        self.reply_entry(path, fs::symlink_metadata(path), reply);
    }

    /// Replies with the entry at `path` whose attributes are `meta`.
    fn reply_entry(&self, path: &Path, meta: io::Result<Metadata>, reply: ReplyEntry) {
        match meta {
            Ok(meta) => {
                let id = lock(&self.nodes).remember(path, &meta);
                reply.entry_with_ttls(
                    &NO_CACHE,
                    &entry_ttl(&meta),
                    &attr(id, &meta),
                    Generation(0),
                );
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn add_file(&self, file: File, open: OpenFile) -> FileHandle {
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        lock(&self.files).insert(fh, Arc::new(Handle { file, open }));
        FileHandle(fh)
    }

    fn file(&self, fh: FileHandle) -> Result<Arc<Handle>, Errno> {
        lock(&self.files).get(&fh.0).cloned().ok_or(Errno::EBADF)
    }
}

impl Filesystem for Daemon {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // An open with O_TRUNC arrives as one request (the connector's
        // `create`), not an open and a separate truncation.
        let _ = config.add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC);
        // Lookups (and readdirs) in one directory need not wait for each
        // other: every session's path walk goes through `imcdata/in`.
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS);
        Ok(())
    }

    /// A name's lookup. The kernel revalidates an entry it holds by looking
    /// it up again, and when that fails (but with `ENOMEM`) it drops the
    /// entry and at once looks the name up afresh, within the same call of
    /// the same thread: a rule that failed the first would go unseen. So the
    /// error is owed to that fresh lookup too, which is the same operation
    /// (neither logged nor counted again).
    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let path = match self.child(parent, name) {
            Ok(path) => path,
            Err(e) => return reply.error(e),
        };
        let owed = lock(&self.replays).remove(&req.pid());
        if let Some((owed_path, e)) = owed
            && owed_path == path
        {
            return reply.error(e);
        }
        let meta = self.admitted(req, OpKind::Lookup, &path, None, || {
            fs::symlink_metadata(&path)
        });
        if let Err(e) = &meta
            && let Ok(found) = fs::symlink_metadata(&path)
            && lock(&self.nodes).holds(&path, &found)
        {
            // There, yet refused: a rule's doing, on an entry the kernel holds.
            lock(&self.replays).insert(req.pid(), (path.clone(), errno(e)));
        }
        self.reply_entry(&path, meta, reply);
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        lock(&self.nodes).forget(ino.0, nlookup);
    }

    fn getattr(&self, req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let caller = self.caller(req);
        let result = match fh.map(|fh| self.file(fh)) {
            // The kernel asking by handle: the open file's own inode,
            // wherever its name went.
            Some(Ok(handle)) => self.engine.plain(
                OpKind::Fstat,
                handle.open.path(),
                None,
                Some(&caller),
                || handle.file.metadata(),
            ),
            _ => match self.path(ino) {
                Ok(path) => self
                    .engine
                    .look(OpKind::Metadata, &path, Some(&caller), || {
                        fs::symlink_metadata(&path)
                    }),
                Err(e) => return reply.error(e),
            },
        };
        match result {
            Ok(meta) => {
                let id = lock(&self.nodes).id_of(&meta);
                reply.attr(&NO_CACHE, &attr(id, &meta));
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let path = match self.path(ino) {
            Ok(path) => path,
            Err(e) => return reply.error(e),
        };
        // One operation per request, named by what it changes first.
        let op = if size.is_some() {
            OpKind::Truncate
        } else if mode.is_some() {
            OpKind::Chmod
        } else if uid.is_some() || gid.is_some() {
            OpKind::Chown
        } else {
            OpKind::SetTimes
        };
        let result = self.admitted(req, op, &path, None, || {
            if let Some(mode) = mode {
                fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))?;
            }
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::lchown(&path, uid, gid)?;
            }
            if let Some(size) = size {
                let old = fs::symlink_metadata(&path)?.len();
                match fh.map(|fh| self.file(fh)) {
                    Some(Ok(handle)) => handle.file.set_len(size)?,
                    _ => OpenOptions::new().write(true).open(&path)?.set_len(size)?,
                }
                self.engine.truncated(old, size);
            }
            if atime.is_some() || mtime.is_some() {
                let file = File::open(&path)?;
                let mut times = fs::FileTimes::new();
                let at = |t: TimeOrNow| match t {
                    TimeOrNow::SpecificTime(t) => t,
                    TimeOrNow::Now => SystemTime::now(),
                };
                if let Some(t) = atime {
                    times = times.set_accessed(at(t));
                }
                if let Some(t) = mtime {
                    times = times.set_modified(at(t));
                }
                file.set_times(times)?;
            }
            fs::symlink_metadata(&path)
        });
        match result {
            Ok(meta) => reply.attr(&NO_CACHE, &attr(ino.0, &meta)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        use std::os::unix::ffi::OsStrExt;
        let path = match self.path(ino) {
            Ok(path) => path,
            Err(e) => return reply.error(e),
        };
        match self.admitted(req, OpKind::ReadLink, &path, None, || fs::read_link(&path)) {
            Ok(target) => reply.data(target.as_os_str().as_bytes()),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        use std::os::unix::ffi::OsStrExt;
        let path = match self.child(parent, name) {
            Ok(path) => path,
            Err(e) => return reply.error(e),
        };
        let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
            return reply.error(Errno::EINVAL);
        };
        let made = self.admitted(req, OpKind::Mknod, &path, None, || {
            // SAFETY: a NUL-terminated path that outlives the call.
            let rc = unsafe { libc::mknod(c.as_ptr(), mode & !umask, libc::dev_t::from(rdev)) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            let _ = own(&path, req);
            Ok(())
        });
        match made {
            Ok(()) => self.entry(&path, reply),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let path = match self.child(parent, name) {
            Ok(path) => path,
            Err(e) => return reply.error(e),
        };
        let caller = self.caller(req);
        let made = self.engine.create_dir(&path, Some(&caller), || {
            fs::DirBuilder::new()
                .mode(mode & !umask & 0o7777)
                .create(&path)?;
            own(&path, req)
        });
        match made {
            Ok(()) => self.entry(&path, reply),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let path = match self.child(parent, name) {
            Ok(path) => path,
            Err(e) => return reply.error(e),
        };
        let caller = self.caller(req);
        match self
            .engine
            .remove(&path, Some(&caller), || fs::remove_file(&path))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let path = match self.child(parent, name) {
            Ok(path) => path,
            Err(e) => return reply.error(e),
        };
        let caller = self.caller(req);
        match self
            .engine
            .remove(&path, Some(&caller), || fs::remove_dir(&path))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let path = match self.child(parent, link_name) {
            Ok(path) => path,
            Err(e) => return reply.error(e),
        };
        let made = self.admitted(req, OpKind::Symlink, &path, None, || {
            std::os::unix::fs::symlink(target, &path).and_then(|()| own(&path, req))
        });
        match made {
            Ok(()) => self.entry(&path, reply),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (from, to) = match (self.child(parent, name), self.child(newparent, newname)) {
            (Ok(from), Ok(to)) => (from, to),
            (Err(e), _) | (_, Err(e)) => return reply.error(e),
        };
        let caller = self.caller(req);
        let exchange = flags.contains(RenameFlags::RENAME_EXCHANGE);
        let result = self.engine.rename(&from, &to, exchange, Some(&caller), || {
            renameat2(&from, &to, flags.bits())
        });
        match result {
            Ok(()) => {
                let mut nodes = lock(&self.nodes);
                if exchange {
                    nodes.exchanged(&from, &to);
                } else {
                    nodes.renamed(&from, &to);
                }
                reply.ok();
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let (from, to) = match (self.path(ino), self.child(newparent, newname)) {
            (Ok(from), Ok(to)) => (from, to),
            (Err(e), _) | (_, Err(e)) => return reply.error(e),
        };
        match self.admitted(req, OpKind::Link, &from, Some(&to), || {
            fs::hard_link(&from, &to)
        }) {
            Ok(()) => self.entry(&to, reply),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let path = match self.path(ino) {
            Ok(path) => path,
            Err(e) => return reply.error(e),
        };
        let flags = flags.0;
        let writing = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let opened = if writing && flags & libc::O_TRUNC != 0 {
            let caller = self.caller(req);
            self.engine
                .create(&path, Some(&caller), || open_backing(&path, flags, None))
        } else {
            self.admitted(req, OpKind::Open, &path, None, || {
                open_backing(&path, flags, None).map(|file| (file, OpenFile::opened(path.clone())))
            })
        };
        match opened {
            Ok((file, open)) => reply.opened(self.add_file(file, open), FILE_OPEN),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let handle = match self.file(fh) {
            Ok(handle) => handle,
            Err(e) => return reply.error(e),
        };
        let read = self.admitted(req, OpKind::Read, handle.open.path(), None, || {
            let mut buf = vec![0; size as usize];
            let mut filled = 0;
            while filled < buf.len() {
                match handle
                    .file
                    .read_at(&mut buf[filled..], offset + filled as u64)
                {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            buf.truncate(filled);
            Ok(buf)
        });
        match read {
            Ok(buf) => reply.data(&buf),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn write(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let handle = match self.file(fh) {
            Ok(handle) => handle,
            Err(e) => return reply.error(e),
        };
        let caller = self.caller(req);
        match self.engine.write(
            &handle.open,
            &handle.file,
            Some(offset),
            data,
            Some(&caller),
        ) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(errno(&e)),
        }
    }

    /// `close`: nothing is buffered here, so nothing to do but admit it (and
    /// not ENOSYS, so that the kernel keeps sending it).
    fn flush(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let handle = match self.file(fh) {
            Ok(handle) => handle,
            Err(e) => return reply.error(e),
        };
        if self.engine.halted() {
            // A halted process's descriptors are closed as it dies (or as the
            // harness drops its tasks), before the crash that would release a
            // parked close: that close must not wait. It reaches no disk.
            return reply.ok();
        }
        match self.admitted(req, OpKind::Flush, handle.open.path(), None, || Ok(())) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let Some(handle) = lock(&self.files).remove(&fh.0) {
            self.engine.closed(&handle.open);
        }
        reply.ok();
    }

    fn fsync(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let handle = match self.file(fh) {
            Ok(handle) => handle,
            Err(e) => return reply.error(e),
        };
        let caller = self.caller(req);
        match self.engine.sync(&handle.open, &handle.file, Some(&caller)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let path = match self.path(ino) {
            Ok(path) => path,
            Err(e) => return reply.error(e),
        };
        if let Err(e) = self.admitted(req, OpKind::OpenDir, &path, None, || {
            fs::read_dir(&path).map(drop)
        }) {
            return reply.error(errno(&e));
        }
        let dir = File::open(&path).ok();
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        lock(&self.dirs).insert(
            fh,
            DirHandle {
                path,
                dir,
                entries: None,
            },
        );
        reply.opened(FileHandle(fh), FopenFlags::empty());
    }

    fn readdir(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(path) = lock(&self.dirs).get(&fh.0).map(|d| d.path.clone()) else {
            return reply.error(Errno::EBADF);
        };
        let read = lock(&self.dirs)
            .get(&fh.0)
            .is_some_and(|d| d.entries.is_some());
        if offset == 0 || !read {
            let caller = self.caller(req);
            let listed = self.engine.look(OpKind::ReadDir, &path, Some(&caller), || {
                let nodes = lock(&self.nodes);
                let mut entries = Vec::new();
                for entry in fs::read_dir(&path)? {
                    let entry = entry?;
                    let meta = entry.metadata()?;
                    let kind =
                        FileType::from_std(meta.file_type()).unwrap_or(FileType::RegularFile);
                    entries.push((nodes.id_of(&meta), kind, entry.file_name()));
                }
                Ok(entries)
            });
            match listed {
                Ok(entries) => {
                    if let Some(d) = lock(&self.dirs).get_mut(&fh.0) {
                        d.entries = Some(entries);
                    }
                }
                Err(e) => return reply.error(errno(&e)),
            }
        }
        let dirs = lock(&self.dirs);
        let entries = dirs
            .get(&fh.0)
            .and_then(|d| d.entries.as_deref())
            .unwrap_or_default();
        for (i, (id, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*id), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        lock(&self.dirs).remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let Some((path, dir)) = lock(&self.dirs).get(&fh.0).map(|d| {
            (
                d.path.clone(),
                d.dir.as_ref().and_then(|f| f.try_clone().ok()),
            )
        }) else {
            return reply.error(Errno::EBADF);
        };
        let caller = self.caller(req);
        // Logged and counted under the path it was opened at, as on vfs; the
        // flush and the crash model follow the open directory wherever a fault
        // has moved it since (`/proc/self/fd/N` names that inode).
        let real = dir.as_ref().map_or_else(
            || path.clone(),
            |f| PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd())),
        );
        let synced = self
            .engine
            .sync_dir_at(&path, &real, Some(&caller), |journaled| match &dir {
                Some(f) if journaled => f.metadata().map(drop),
                Some(f) => f.sync_all(),
                None if journaled => File::open(&path).map(drop),
                None => File::open(&path)?.sync_all(),
            });
        match synced {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn statfs(&self, req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        let path = match self.path(ino) {
            Ok(path) => path,
            Err(e) => return reply.error(e),
        };
        let caller = self.caller(req);
        match self.engine.available_space(&path, Some(&caller)) {
            Ok(free) => {
                let blocks = self.engine.quota() / BLOCK;
                let free = free / BLOCK;
                // Inodes are not limited; say so with a large, fixed count.
                let files = 1 << 20;
                reply.statfs(
                    blocks,
                    free,
                    free,
                    files,
                    files,
                    BLOCK as u32,
                    255,
                    BLOCK as u32,
                );
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn access(&self, req: &Request, ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // Granted unless a rule fails it: the daemon keeps no permission
        // model of its own (no `default_permissions`, see `mod.rs`).
        let path = match self.path(ino) {
            Ok(path) => path,
            Err(e) => return reply.error(e),
        };
        match self.admitted(req, OpKind::Access, &path, None, || Ok(())) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let path = match self.child(parent, name) {
            Ok(path) => path,
            Err(e) => return reply.error(e),
        };
        let caller = self.caller(req);
        let created = self.engine.create(&path, Some(&caller), || {
            let file = open_backing(&path, flags, Some(mode & !umask & 0o7777))?;
            std::os::unix::fs::fchown(&file, Some(req.uid()), Some(req.gid()))?;
            Ok(file)
        });
        match created.and_then(|(file, open)| Ok((file.metadata()?, file, open))) {
            Ok((meta, file, open)) => {
                let id = lock(&self.nodes).remember(&path, &meta);
                let fh = self.add_file(file, open);
                reply.created(&NO_CACHE, &attr(id, &meta), Generation(0), fh, FILE_OPEN);
            }
            Err(e) => reply.error(errno(&e)),
        }
    }
}

/// `renameat2(from, to, flags)` (`RENAME_NOREPLACE`, `RENAME_EXCHANGE`).
fn renameat2(from: &Path, to: &Path, flags: u32) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
    };
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            flags,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
