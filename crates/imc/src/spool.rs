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
}

impl Spool {
    /// A spool under `root` (the directory holding `imcdata`).
    pub fn new(fs: Arc<dyn Fs>, root: PathBuf) -> Self {
        Spool {
            fs,
            root,
            unsynced_dirs: Arc::default(),
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
    /// IN, all in one call on the blocking pool. `durable: false` skips both
    /// flushes (only the `skip-fsync` mutant does). The error says which step failed.
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
        let Some(mut file) = file else {
            return Err(Finish::Write(io::Error::other(
                "the work file was lost by an earlier failure",
            )));
        };
        let in_dir = self.in_dir();
        let fs = self.fs.clone();
        let unsynced = self.unsynced_dirs.clone();
        tokio::task::spawn_blocking(move || {
            if !last.is_empty() {
                file.write_all(&last).map_err(Finish::Write)?;
            }
            if durable {
                file.sync_all().map_err(Finish::Sync)?;
            }
            drop(file); // closed before the move
            if durable {
                // Before the move: the message never enters a directory that a
                // crash could take away with it.
                sync_created_dirs(&*fs, &unsynced).map_err(Finish::Directory)?;
            }
            let entry = InEntry::move_in(&*fs, &in_dir, &path, id).map_err(Finish::Rename)?;
            if durable {
                entry
                    .dir
                    .sync_all()
                    .map_err(|e| Finish::SyncDir(e, entry.clone()))?;
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|e| {
            Err(Finish::Write(io::Error::other(format!(
                "filesystem task failed: {e}"
            ))))
        })
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
}
