//! The spool: `imcdata/work` receives a message, `imcdata/in` holds finished ones.
//!
//! A message is written to `work/<id>`, flushed, renamed into `in/<id>`, and `in/`
//! is flushed; only then is it acknowledged. The move and the flush go through
//! one handle on IN ([`InEntry`]), opened before the move: if IN is renamed
//! away between the two, the flush still makes the message's entry durable in
//! the directory it was moved into, wherever that is now, and a refused
//! message is taken out of that directory, not out of whatever is at `in/`
//! by then. Every disk access goes through [`Fs`], on tokio's blocking pool so
//! a slow disk never stalls other sessions.
//!
//! Group commit ([`Spool::finish`]): messages that finish at the same time
//! share the move into IN's handle and its flush. One flush of IN makes
//! durable every move into it made before the flush began, so a batch is
//! acknowledged (or, if that flush fails, refused and taken out of IN) as a
//! whole; each message's own file is still written and flushed on its own
//! thread, where a disk merges flushes that come together. A message that
//! finishes alone does the same operations, in the same order, as without
//! batching, so the harness's operation logs do not change.

use crate::envelope::StoredHeader;
use crate::fs::{Fs, FsDir, FsFile};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Where message ids come from. Tests use [`CounterIds`] so runs are reproducible.
pub trait IdGenerator: Send + Sync + 'static {
    /// A new id, unique for this spool, usable as a file name.
    fn next_id(&self) -> String;
}

/// Ids `00000001`, `00000002`, ... (8 upper-case hex digits).
#[derive(Debug, Default)]
pub struct CounterIds(AtomicU64);

impl IdGenerator for CounterIds {
    fn next_id(&self) -> String {
        format!("{:08X}", self.0.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

/// Ids from the clock: 16 hex digits of microseconds since the epoch, strictly
/// increasing within a process, so a restarted service never reuses a name in IN.
#[derive(Debug, Default)]
pub struct ClockIds(AtomicU64);

impl IdGenerator for ClockIds {
    fn next_id(&self) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let mut prev = self.0.load(Ordering::Relaxed);
        loop {
            let next = now.max(prev + 1);
            match self
                .0
                .compare_exchange(prev, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return format!("{next:016X}"),
                Err(p) => prev = p,
            }
        }
    }
}

/// The spool's directories and its filesystem.
#[derive(Clone)]
pub struct Spool {
    fs: Arc<dyn Fs>,
    root: PathBuf,
    /// Directories this connector created whose entry in their parent is not
    /// known to be durable yet (the parent's flush failed). A message is not
    /// acknowledged while any is left: a crash would take the directory, and the
    /// message in it, along.
    unsynced_dirs: Arc<Mutex<Vec<PathBuf>>>,
    /// Messages waiting for the group commit ([`Spool::finish`]).
    commits: Arc<Mutex<CommitQueue>>,
}

impl Spool {
    /// A spool under `root` (the directory holding `imcdata`).
    pub fn new(fs: Arc<dyn Fs>, root: PathBuf) -> Self {
        Spool {
            fs,
            root,
            unsynced_dirs: Arc::default(),
            commits: Arc::default(),
        }
    }

    /// The filesystem.
    pub fn fs(&self) -> &Arc<dyn Fs> {
        &self.fs
    }

    /// `<root>`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/imcdata`.
    pub fn imcdata(&self) -> PathBuf {
        self.root.join("imcdata")
    }

    /// `<root>/imcdata/work`.
    pub fn work_dir(&self) -> PathBuf {
        self.root.join("imcdata").join("work")
    }

    /// `<root>/imcdata/in`.
    pub fn in_dir(&self) -> PathBuf {
        self.root.join("imcdata").join("in")
    }

    /// Runs a filesystem call on the blocking pool.
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Fs) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let fs = self.fs.clone();
        tokio::task::spawn_blocking(move || f(&*fs))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(format!("filesystem task failed: {e}"))))
    }

    /// True when `path` is a directory (any error counts as missing).
    pub async fn is_dir(&self, path: PathBuf) -> bool {
        self.blocking(move |fs| fs.metadata(&path))
            .await
            .map(|m| m.is_dir)
            .unwrap_or(false)
    }

    /// Free bytes on the spool volume, measured at `imcdata` (or the root while
    /// `imcdata` is missing).
    pub async fn available_space(&self) -> io::Result<u64> {
        let imcdata = self.imcdata();
        let root = self.root.clone();
        self.blocking(move |fs| match fs.available_space(&imcdata) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs.available_space(&root),
            other => other,
        })
        .await
    }

    /// Creates `work/<id>` for a new message, which will start with `header`:
    /// the only way envelope and trace lines reach a stored file.
    pub async fn create_work(&self, id: &str, header: &StoredHeader) -> io::Result<WorkFile> {
        self.create_message(self.work_dir(), id, header).await
    }

    /// Creates `in/<id>` to receive the message in place: only the `partial-in`
    /// mutant does this, exposing incomplete messages in IN.
    pub async fn create_in_place(&self, id: &str, header: &StoredHeader) -> io::Result<WorkFile> {
        self.create_message(self.in_dir(), id, header).await
    }

    async fn create_message(
        &self,
        dir: PathBuf,
        id: &str,
        header: &StoredHeader,
    ) -> io::Result<WorkFile> {
        let path = dir.join(id);
        let p = path.clone();
        let file = self.blocking(move |fs| fs.create(&p)).await?;
        Ok(WorkFile {
            file: Some(file),
            path,
            id: id.to_string(),
            // Written with the first text, in the same write call.
            header: header.to_bytes(),
        })
    }

    /// Writes `last`, flushes the work file, closes it, moves it into IN and flushes
    /// IN. `durable: false` skips both flushes (only the `skip-fsync` mutant does).
    /// The error says which step failed.
    ///
    /// One trip to the blocking pool. The file's last write and flush run there
    /// at once, in parallel with other messages' (a disk merges flushes that
    /// come together into one journal commit). Then group commit: the message
    /// joins the queue of messages waiting to be moved into IN, and whichever
    /// thread finds no one draining it drains it, taking the whole queue as one
    /// batch: one handle on IN, every move through it, one flush of it. A
    /// message finishing alone does what it did before batching: write, flush,
    /// (flush the parents of created directories), move, flush IN.
    pub async fn finish(&self, work: WorkFile, last: Vec<u8>, durable: bool) -> Result<(), Finish> {
        let WorkFile {
            file,
            path,
            id,
            header,
        } = work;
        let last = if header.is_empty() {
            last
        } else {
            [header, last].concat()
        };
        let Some(file) = file else {
            return Err(Finish::Write(io::Error::other(
                "the work file was lost by an earlier failure",
            )));
        };
        let (done, result) = tokio::sync::oneshot::channel();
        let spool = self.clone();
        // Not awaited: the message is answered through its channel, always
        // before the blocking task that answers it ends (so tokio's paused
        // clock never jumps while a message is on its way to the disk).
        drop(tokio::task::spawn_blocking(move || {
            if let Err(e) = finish_file(file, &last, durable) {
                let _ = done.send(Err(e));
                return;
            }
            let job = Commit {
                path,
                id,
                durable,
                done,
            };
            let lead = {
                let mut queue = lock(&spool.commits);
                queue.jobs.push(job);
                !std::mem::replace(&mut queue.draining, true)
            };
            if lead {
                Drainer { spool, ran: false }.run();
            }
        }));
        result.await.unwrap_or_else(|_| {
            Err(Finish::Write(io::Error::other(
                "filesystem task failed before the message was finished",
            )))
        })
    }

    /// Takes and commits batches until the queue is empty (on the blocking pool).
    fn drain_commits(&self) {
        loop {
            let jobs = {
                let mut queue = lock(&self.commits);
                if queue.jobs.is_empty() {
                    queue.draining = false;
                    return;
                }
                std::mem::take(&mut queue.jobs)
            };
            Batch::new(jobs).commit(&*self.fs, &self.in_dir(), &self.unsynced_dirs);
        }
    }

    /// Moves `work/<id>` into IN (the work file must be closed), through a
    /// handle on IN opened first; an error leaves the message in work.
    pub async fn move_into_in(&self, id: &str) -> io::Result<InEntry> {
        let from = self.work_dir().join(id);
        let in_dir = self.in_dir();
        let id = id.to_string();
        self.blocking(move |fs| InEntry::move_in(fs, &in_dir, &from, id))
            .await
    }

    /// The entry of a message already in IN (only the `partial-in` mutant puts
    /// one there other than by [`Spool::move_into_in`]).
    pub async fn in_entry(&self, id: &str) -> io::Result<InEntry> {
        let in_dir = self.in_dir();
        let id = id.to_string();
        self.blocking(move |fs| {
            Ok(InEntry {
                dir: fs.open_dir(&in_dir)?.into(),
                path: in_dir.join(&id),
                id,
            })
        })
        .await
    }

    /// Makes durable the entry of every directory this connector created whose
    /// parent's flush had failed; called before a message is moved into IN.
    pub async fn sync_created_dirs(&self) -> io::Result<()> {
        let unsynced = self.unsynced_dirs.clone();
        self.blocking(move |fs| sync_created_dirs(fs, &unsynced))
            .await
    }

    /// Makes the entries of `dirs` durable, one flush per parent: at start,
    /// for directories an earlier process may have made without getting them
    /// flushed (its list of such directories ended with it). Those whose
    /// parent's flush fails are listed, to be flushed before the next move
    /// into IN; the first failure is returned.
    pub async fn sync_existing_dirs(&self, dirs: Vec<PathBuf>) -> io::Result<()> {
        let unsynced = self.unsynced_dirs.clone();
        self.blocking(move |fs| {
            let mut first = Ok(());
            let mut parents: Vec<&Path> = dirs.iter().filter_map(|d| d.parent()).collect();
            parents.dedup();
            for parent in parents {
                if let Err(e) = fs.sync_dir(parent) {
                    let mut list = lock(&unsynced);
                    for dir in dirs.iter().filter(|d| d.parent() == Some(parent)) {
                        if !list.contains(dir) {
                            list.push(dir.clone());
                        }
                    }
                    first = first.and(Err(e));
                }
            }
            first
        })
        .await
    }

    /// Removes a file, ignoring a file already gone.
    pub async fn remove(&self, path: PathBuf) -> io::Result<()> {
        self.blocking(move |fs| match fs.remove_file(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        })
        .await
    }

    /// Creates `path` if it is missing and makes its entry in its parent durable;
    /// true when it was created. An error if the entry of a directory this
    /// connector created cannot be made durable (now or at an earlier try): such
    /// a directory must not receive acknowledged mail.
    pub async fn ensure_dir(&self, path: PathBuf) -> io::Result<bool> {
        let unsynced = self.unsynced_dirs.clone();
        self.blocking(move |fs| match fs.metadata(&path) {
            Ok(m) if m.is_dir => {
                if lock(&unsynced).contains(&path) {
                    sync_parent(fs, &path)?;
                    lock(&unsynced).retain(|d| d != &path);
                }
                Ok(false)
            }
            Ok(_) => Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs.create_dir(&path)?;
                lock(&unsynced).push(path.clone());
                sync_parent(fs, &path)?;
                lock(&unsynced).retain(|d| d != &path);
                Ok(true)
            }
            Err(e) => Err(e),
        })
        .await
    }

    /// The files in `work/`, sorted.
    pub async fn work_files(&self) -> io::Result<Vec<PathBuf>> {
        let dir = self.work_dir();
        self.blocking(move |fs| fs.read_dir(&dir)).await
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn sync_parent(fs: &dyn Fs, dir: &Path) -> io::Result<()> {
    match dir.parent() {
        Some(parent) => fs.sync_dir(parent),
        None => Ok(()),
    }
}

/// Flushes the parent of every directory this connector created whose entry is
/// not durable yet; the first failure is returned and that directory stays listed.
/// A directory since removed by someone else needs nothing any more.
fn sync_created_dirs(fs: &dyn Fs, unsynced: &Mutex<Vec<PathBuf>>) -> io::Result<()> {
    let dirs = lock(unsynced).clone();
    for dir in dirs {
        match fs.metadata(&dir) {
            Ok(m) if m.is_dir => sync_parent(fs, &dir)?,
            _ => {}
        }
        lock(unsynced).retain(|d| d != &dir);
    }
    Ok(())
}

/// A message moved into IN, reached through the handle on IN it was moved
/// through: flushing it, removing it or moving it back act on the directory it
/// is in, wherever someone else has moved that directory since.
#[derive(Clone)]
pub struct InEntry {
    dir: Arc<dyn FsDir>,
    id: String,
    /// `<root>/imcdata/in/<id>`: where it was put, as events name it.
    path: PathBuf,
}

impl std::fmt::Debug for InEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InEntry").field("path", &self.path).finish()
    }
}

impl InEntry {
    /// Opens `in_dir` and moves `from` into it as `id`.
    fn move_in(fs: &dyn Fs, in_dir: &Path, from: &Path, id: String) -> io::Result<InEntry> {
        let dir: Arc<dyn FsDir> = fs.open_dir(in_dir)?.into();
        dir.rename_in(from, &id)?;
        Ok(InEntry {
            dir,
            path: in_dir.join(&id),
            id,
        })
    }

    /// The message id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `<root>/imcdata/in/<id>`, where the message was moved.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes the directory holding the message, making its entry durable.
    pub async fn sync(&self) -> io::Result<()> {
        self.through(|dir, _| dir.sync_all()).await
    }

    /// Removes the message from its directory; one already gone from it counts
    /// as removed (someone else took the message itself out).
    pub async fn remove(&self) -> io::Result<()> {
        self.through(|dir, id| match dir.remove_file(id) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        })
        .await
    }

    /// Moves the message from its directory to `to` (back into work).
    pub async fn move_out(&self, to: PathBuf) -> io::Result<()> {
        self.through(move |dir, id| dir.rename_out(id, &to)).await
    }

    async fn through(
        &self,
        f: impl FnOnce(&dyn FsDir, &str) -> io::Result<()> + Send + 'static,
    ) -> io::Result<()> {
        let (dir, id) = (self.dir.clone(), self.id.clone());
        tokio::task::spawn_blocking(move || f(&*dir, &id))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(format!("filesystem task failed: {e}"))))
    }
}

/// The messages waiting to be committed, and whether a drainer is taking them.
#[derive(Default)]
struct CommitQueue {
    jobs: Vec<Commit>,
    /// A blocking task is draining the queue: a new message only joins it.
    draining: bool,
}

/// A message whose file is finished (written, flushed, closed), to be moved
/// into IN.
struct Commit {
    /// `work/<id>`.
    path: PathBuf,
    id: String,
    durable: bool,
    done: tokio::sync::oneshot::Sender<Result<(), Finish>>,
}

/// The thread draining the commit queue. Left by a panic, it answers no one:
/// it drops the queued messages, whose sessions then get an error, and lets
/// the next message drain the queue.
struct Drainer {
    spool: Spool,
    ran: bool,
}

impl Drainer {
    fn run(mut self) {
        self.spool.drain_commits();
        self.ran = true;
    }
}

impl Drop for Drainer {
    fn drop(&mut self) {
        if !self.ran {
            let mut queue = lock(&self.spool.commits);
            queue.draining = false;
            queue.jobs.clear();
        }
    }
}

/// Messages that finish together, moved into IN with shared flushes.
///
/// The parents of directories this connector created are flushed once (before
/// any move into them); IN is opened once, every message is moved in through
/// that handle, in queue order, and the handle is flushed once: that one
/// flush makes durable every move into IN made before it, so every message it
/// covered is acknowledged, or, if it fails, refused (each gets the error and
/// its entry, to be taken out of IN through the same handle).
struct Batch {
    jobs: Vec<(Commit, Option<Result<(), Finish>>)>,
}

impl Batch {
    fn new(jobs: Vec<Commit>) -> Batch {
        Batch {
            jobs: jobs.into_iter().map(|j| (j, None)).collect(),
        }
    }

    /// The messages still going on (no outcome yet).
    fn going_on(&mut self) -> impl Iterator<Item = &mut (Commit, Option<Result<(), Finish>>)> {
        self.jobs
            .iter_mut()
            .filter(|(_, outcome)| outcome.is_none())
    }

    fn commit(mut self, fs: &dyn Fs, in_dir: &Path, unsynced: &Mutex<Vec<PathBuf>>) {
        // Before the moves: no message enters a directory that a crash could
        // take away with it.
        if self.jobs.iter().any(|(j, o)| j.durable && o.is_none())
            && let Err(e) = sync_created_dirs(fs, unsynced)
        {
            self.fail_all(&e, Finish::Directory);
        }
        if self.jobs.iter().any(|(_, o)| o.is_none()) {
            match fs.open_dir(in_dir) {
                Ok(dir) => self.move_in(dir.into(), in_dir),
                Err(e) => self.fail_all(&e, Finish::Rename),
            }
        }
        for (job, outcome) in self.jobs {
            let outcome = outcome.unwrap_or(Ok(()));
            // A session cut off (a crash, a dropped connection) no longer listens.
            let _ = job.done.send(outcome);
        }
    }

    /// Moves every message still going on into IN through `dir`, then flushes
    /// `dir` once for the durable ones it received.
    fn move_in(&mut self, dir: Arc<dyn FsDir>, in_dir: &Path) {
        let mut moved = false;
        for (job, outcome) in self.going_on() {
            match dir.rename_in(&job.path, &job.id) {
                Ok(()) => moved |= job.durable,
                Err(e) => *outcome = Some(Err(Finish::Rename(e))),
            }
        }
        if !moved {
            return;
        }
        if let Err(e) = dir.sync_all() {
            for (job, outcome) in self.going_on() {
                if job.durable {
                    let entry = InEntry {
                        dir: dir.clone(),
                        path: in_dir.join(&job.id),
                        id: job.id.clone(),
                    };
                    *outcome = Some(Err(Finish::SyncDir(same_error(&e), entry)));
                }
            }
        }
    }

    /// Every message still going on fails at this step with (a copy of) `e`.
    fn fail_all(&mut self, e: &io::Error, step: fn(io::Error) -> Finish) {
        for (_, outcome) in self.going_on() {
            *outcome = Some(Err(step(same_error(e))));
        }
    }
}

/// The last bytes of one message, its flush, and closing it (before the
/// move, whatever this returns); the failed step.
fn finish_file(mut file: Box<dyn FsFile>, last: &[u8], durable: bool) -> Result<(), Finish> {
    if !last.is_empty() {
        file.write_all(last).map_err(Finish::Write)?;
    }
    if durable {
        file.sync_all().map_err(Finish::Sync)?;
    }
    Ok(())
}

/// A copy of `e` for each message a shared step failed for: the same errno
/// (what the events and replies are chosen by), or the same kind and text.
fn same_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

/// The step of [`Spool::finish`] that failed.
#[derive(Debug)]
pub enum Finish {
    /// Writing the last bytes.
    Write(io::Error),
    /// Flushing the work file.
    Sync(io::Error),
    /// Opening IN or moving it into IN (it is still in work).
    Rename(io::Error),
    /// Flushing IN (the message is in IN, maybe not durably; the entry reaches it).
    SyncDir(io::Error, InEntry),
    /// Making durable a directory the connector created on the way to IN (the
    /// message is still in work).
    Directory(io::Error),
}

/// A message being received into `work/<id>`.
pub struct WorkFile {
    file: Option<Box<dyn FsFile>>,
    path: PathBuf,
    id: String,
    /// The stored header's bytes until the first write.
    header: Vec<u8>,
}

impl WorkFile {
    /// The message id (its file name).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `<root>/imcdata/work/<id>`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many bytes of the header the first write will add.
    pub fn unwritten_header(&self) -> usize {
        self.header.len()
    }

    /// Appends `buf` to the file (all of it, or an error), after the header if
    /// this is the first write.
    pub async fn write(&mut self, buf: Vec<u8>) -> io::Result<()> {
        let buf = if self.header.is_empty() {
            buf
        } else {
            [std::mem::take(&mut self.header), buf].concat()
        };
        self.with_file(move |file| file.write_all(&buf)).await
    }

    /// Flushes the file's data to stable storage.
    pub async fn sync_all(&mut self) -> io::Result<()> {
        self.with_file(|file| file.sync_all()).await
    }

    async fn with_file(
        &mut self,
        f: impl FnOnce(&mut dyn FsFile) -> io::Result<()> + Send + 'static,
    ) -> io::Result<()> {
        // The handle travels to the blocking pool and back; a panic there loses it.
        let Some(mut file) = self.file.take() else {
            return Err(io::Error::other(
                "the work file was lost by an earlier failure",
            ));
        };
        let (file, result) = tokio::task::spawn_blocking(move || {
            let r = f(&mut *file);
            (file, r)
        })
        .await
        .map_err(|e| io::Error::other(format!("filesystem task failed: {e}")))?;
        self.file = Some(file);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_ids_are_fixed_width_hex() {
        let ids = CounterIds::default();
        assert_eq!(ids.next_id(), "00000001");
        assert_eq!(ids.next_id(), "00000002");
    }

    #[test]
    fn clock_ids_strictly_increase() {
        let ids = ClockIds::default();
        let a = ids.next_id();
        let b = ids.next_id();
        assert_eq!(a.len(), 16);
        assert!(b > a, "{b} should sort after {a}");
    }

    /// [`RealFs`](crate::fs::RealFs) that records its calls and holds the
    /// first move into IN until told, so that the next messages queue up
    /// behind it and are moved in together; it fails the directory flushes after the first
    /// `sync_dirs_ok`.
    struct HeldFs {
        root: PathBuf,
        ops: Mutex<Vec<String>>,
        held: Mutex<Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>>,
        sync_dirs_ok: AtomicU64,
    }

    struct HeldFile {
        inner: Box<dyn FsFile>,
        name: String,
        fs: Arc<HeldFs>,
    }

    struct HeldDir {
        inner: Box<dyn FsDir>,
        name: String,
        fs: Arc<HeldFs>,
    }

    impl HeldFs {
        fn rel(&self, p: &Path) -> String {
            p.strip_prefix(&self.root).unwrap().display().to_string()
        }
        fn record(&self, op: String) {
            self.ops.lock().unwrap().push(op);
        }
    }

    impl io::Write for HeldFile {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.fs.record(format!("write {}", self.name));
            self.inner.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl FsFile for HeldFile {
        fn sync_all(&mut self) -> io::Result<()> {
            self.fs.record(format!("sync {}", self.name));
            self.inner.sync_all()
        }
    }

    impl FsDir for HeldDir {
        fn rename_in(&self, from: &Path, name: &str) -> io::Result<()> {
            let from = self.fs.rel(from);
            self.fs
                .record(format!("rename {from} {}/{name}", self.name));
            let held = self.fs.held.lock().unwrap().take();
            if let Some((entered, release)) = held {
                entered.send(()).unwrap();
                release.recv().unwrap();
            }
            self.inner.rename_in(&self.fs.root.join(&from), name)
        }
        fn rename_out(&self, name: &str, to: &Path) -> io::Result<()> {
            self.inner.rename_out(name, to)
        }
        fn remove_file(&self, name: &str) -> io::Result<()> {
            self.fs.record(format!("remove {}/{name}", self.name));
            self.inner.remove_file(name)
        }
        fn sync_all(&self) -> io::Result<()> {
            self.fs.record(format!("sync_dir {}", self.name));
            let ok = self.fs.sync_dirs_ok.load(Ordering::SeqCst);
            if ok == 0 {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            self.fs.sync_dirs_ok.store(ok - 1, Ordering::SeqCst);
            self.inner.sync_all()
        }
    }

    /// The [`Fs`] of a test: a [`HeldFs`] behind an `Arc`, so files and
    /// handles can reach its log.
    struct Held(Arc<HeldFs>);

    impl Fs for Held {
        fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
            Ok(Box::new(HeldFile {
                inner: crate::fs::RealFs.create(path)?,
                name: self.0.rel(path),
                fs: self.0.clone(),
            }))
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            crate::fs::RealFs.rename(from, to)
        }
        fn remove_file(&self, path: &Path) -> io::Result<()> {
            crate::fs::RealFs.remove_file(path)
        }
        fn create_dir(&self, path: &Path) -> io::Result<()> {
            crate::fs::RealFs.create_dir(path)
        }
        fn sync_dir(&self, path: &Path) -> io::Result<()> {
            crate::fs::RealFs.sync_dir(path)
        }
        fn open_dir(&self, path: &Path) -> io::Result<Box<dyn FsDir>> {
            Ok(Box::new(HeldDir {
                inner: crate::fs::RealFs.open_dir(path)?,
                name: self.0.rel(path),
                fs: self.0.clone(),
            }))
        }
        fn metadata(&self, path: &Path) -> io::Result<crate::fs::Metadata> {
            crate::fs::RealFs.metadata(path)
        }
        fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
            crate::fs::RealFs.read_dir(path)
        }
        fn available_space(&self, path: &Path) -> io::Result<u64> {
            crate::fs::RealFs.available_space(path)
        }
    }

    /// Finishes `00000001` alone (its move into IN held), and `00000002` and
    /// `00000003` while it is held, so that those two are moved in together. The
    /// outcomes, the operations, and the files left in IN.
    async fn two_finish_together(
        sync_dirs_ok: u64,
    ) -> (Vec<Result<(), Finish>>, Vec<String>, Vec<PathBuf>) {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("imcdata/work")).unwrap();
        std::fs::create_dir_all(root.path().join("imcdata/in")).unwrap();
        let (entered_tx, entered) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel();
        let fs = Arc::new(HeldFs {
            root: root.path().to_path_buf(),
            ops: Mutex::default(),
            held: Mutex::new(Some((entered_tx, release_rx))),
            sync_dirs_ok: AtomicU64::new(sync_dirs_ok),
        });
        let spool = Spool::new(Arc::new(Held(fs.clone())), root.path().to_path_buf());
        let work = |id: &str| {
            let path = spool.work_dir().join(id);
            WorkFile {
                file: Some(spool.fs().create(&path).unwrap()),
                path,
                id: id.to_string(),
                header: Vec::new(),
            }
        };
        let finish = |w: WorkFile| {
            let spool = spool.clone();
            tokio::spawn(async move { spool.finish(w, b"x\r\n".to_vec(), true).await })
        };
        let first = finish(work("00000001"));
        tokio::task::spawn_blocking(move || entered.recv().unwrap())
            .await
            .unwrap();
        let (second, third) = (finish(work("00000002")), finish(work("00000003")));
        // Both files are finished and join the queue behind the held batch
        // (on threads of the blocking pool), then the held move goes on.
        while lock(&spool.commits).jobs.len() < 2 {
            tokio::task::yield_now().await;
        }
        release.send(()).unwrap();
        let mut outcomes = Vec::new();
        for task in [first, second, third] {
            outcomes.push(task.await.unwrap());
        }
        for outcome in &outcomes {
            if let Err(Finish::SyncDir(_, entry)) = outcome {
                entry.remove().await.unwrap();
            }
        }
        let ops = fs.ops.lock().unwrap().clone();
        let left = crate::fs::RealFs.read_dir(&spool.in_dir()).unwrap();
        (outcomes, ops, left)
    }

    #[tokio::test]
    async fn messages_finishing_together_share_one_flush_of_in() {
        let (outcomes, ops, left) = two_finish_together(u64::MAX).await;
        assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
        // The files of 2 and 3 are finished in parallel while 1's move is
        // held, so their writes and flushes interleave in either order; their
        // moves come after 1's flush of IN and share the next one.
        assert_eq!(
            ops[..3],
            [
                "write imcdata/work/00000001",
                "sync imcdata/work/00000001",
                "rename imcdata/work/00000001 imcdata/in/00000001",
            ]
        );
        let mut files = ops[3..7].to_vec();
        files.sort();
        assert_eq!(
            files,
            [
                "sync imcdata/work/00000002",
                "sync imcdata/work/00000003",
                "write imcdata/work/00000002",
                "write imcdata/work/00000003",
            ]
        );
        let mut moves = ops[8..10].to_vec();
        moves.sort();
        assert_eq!(
            moves,
            [
                "rename imcdata/work/00000002 imcdata/in/00000002",
                "rename imcdata/work/00000003 imcdata/in/00000003",
            ]
        );
        assert_eq!(ops[7], "sync_dir imcdata/in");
        assert_eq!(ops[10..], ["sync_dir imcdata/in"]);
        assert_eq!(left.len(), 3);
    }

    #[tokio::test]
    async fn a_failed_shared_flush_of_in_refuses_every_message_it_covered() {
        let (outcomes, ops, left) = two_finish_together(1).await;
        assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
        for (outcome, id) in outcomes[1..].iter().zip(["00000002", "00000003"]) {
            match outcome {
                Err(Finish::SyncDir(e, entry)) => {
                    assert_eq!(e.raw_os_error(), Some(libc::EIO));
                    assert_eq!(entry.id(), id);
                }
                other => panic!("{id}: {other:?}"),
            }
        }
        assert_eq!(
            ops[ops.len() - 3..],
            [
                "sync_dir imcdata/in",
                "remove imcdata/in/00000002",
                "remove imcdata/in/00000003",
            ]
        );
        assert_eq!(
            ops.iter().filter(|o| *o == "sync_dir imcdata/in").count(),
            2
        );
        let names: Vec<_> = left
            .iter()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["00000001"]);
    }
}
