//! The `fuse` backend: the sandbox root is a FUSE mount passing through to a
//! backing directory, so every process using the volume (not only the
//! in-process connector) meets the whole fault model: errno rules, triggers,
//! the quota, the op log (with the calling process) and the crash model, all
//! from the one rule engine the in-process door uses.
//!
//! Built on `fuser` without libfuse: as root it opens `/dev/fuse` and mounts
//! with mount(2), inside the private mount namespace of the tmpfs backend
//! ([`enter_private_mount_namespace`](crate::enter_private_mount_namespace)),
//! so the mount never reaches the host and dies with the process. The kernel
//! caches nothing the daemon could not vouch for: attribute timeouts are 0,
//! and so are entry timeouts but directories', whose cached entries the
//! daemon checks on each request naming them (a stale one is `ESTALE`, and
//! the kernel walks the path again), so a fault applied to the backing tree
//! is seen by the next request; there is no writeback cache and no kernel passthrough (the daemon
//! sees every write), files are opened for direct I/O (no page cache, one
//! request per write(2)), and a crash remounts, so no kernel state survives it.
//!
//! Module layout: `nodes` (node ids and backing paths), `daemon` (the
//! request handlers), this file (mounting, unmounting, availability).

mod daemon;
mod nodes;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use fuser::{Config, MountOption, Session, SessionACL};

use crate::engine::{Accounting, Engine};
use crate::mount::{namespace_entered, umount_detach};

/// How long dropping a mount waits for the daemon's threads to end. They end
/// as soon as the kernel tears the connection down, which a detached mount
/// does once its last open file closes; a process still holding one must not
/// hang the harness, so past this the threads are left to end on their own.
const UNMOUNT_WAIT: Duration = Duration::from_secs(10);

/// Request threads per mount: the connector's blocking pool makes requests
/// in parallel, and a triggered fault may hold one thread for a while.
const THREADS: usize = 4;

/// Whether the probe mount worked.
static PROBE: OnceLock<Result<(), String>> = OnceLock::new();

/// Whether [`Backend::Fuse`](crate::Backend::Fuse) sandboxes can be created in
/// this process: the private mount namespace was entered, `/dev/fuse` exists
/// and a test mount worked. The error says why not, fit for reporting a test
/// as ignored.
pub fn fuse_available() -> Result<(), String> {
    namespace_entered()?;
    PROBE.get_or_init(probe).clone()
}

fn probe() -> Result<(), String> {
    if !Path::new("/dev/fuse").exists() {
        return Err(
            "/dev/fuse does not exist (modprobe fuse, or give the container \
                    --device /dev/fuse)"
                .to_owned(),
        );
    }
    let dir = tempfile::Builder::new()
        .prefix("imc-fuse-probe-")
        .tempdir()
        .map_err(|e| format!("cannot create a directory to mount on: {e}"))?;
    let (mnt, backing) = (dir.path().join("mnt"), dir.path().join("backing"));
    for d in [&mnt, &backing, &dir.path().join("stash")] {
        fs::create_dir(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let engine = Arc::new(Engine::new(
        dir.path().to_owned(),
        backing,
        dir.path().join("stash"),
        crate::BLOCK,
        Accounting::Kernel,
    ));
    let mount = FuseMount::new(&mnt, engine).map_err(|e| e.to_string())?;
    drop(mount);
    Ok(())
}

/// A FUSE mount of an engine's tree on a directory, served by threads of its
/// own, lazily unmounted when dropped.
#[derive(Debug)]
pub(crate) struct FuseMount {
    path: PathBuf,
    /// The kernel's name for the connection (its device number), to abort it.
    connection: Option<u64>,
    ended: mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

/// Where the FUSE control filesystem is mounted, if it can be: its usual
/// place, mounted there by us if need be (in the private namespace only, so
/// the host's `/sys` is left as it was).
static FUSECTL: OnceLock<Option<PathBuf>> = OnceLock::new();

fn fusectl() -> Option<&'static Path> {
    FUSECTL
        .get_or_init(|| {
            let dir = Path::new("/sys/fs/fuse/connections");
            let mounted = fs::read_to_string("/proc/self/mountinfo")
                .is_ok_and(|m| m.lines().any(|l| l.contains(" - fusectl ")));
            (mounted || crate::mount::mount_fusectl(dir).is_ok()).then(|| dir.to_owned())
        })
        .as_deref()
}

/// The FUSE connection mounted last on `path`, from the mount table (a stat
/// would be a request, and show in the op log). The kernel names connections
/// by device number; FUSE's are anonymous devices (major 0), so the number is
/// the minor.
fn connection_of(path: &Path) -> Option<u64> {
    let path = path.to_str()?;
    let table = fs::read_to_string("/proc/self/mountinfo").ok()?;
    table
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(path))
        .filter_map(|l| l.split(' ').nth(2)?.split_once(':'))
        .filter(|(major, _)| *major == "0")
        .filter_map(|(_, minor)| minor.parse().ok())
        .next_back()
}

/// Aborts the FUSE connection `id`: every request pending or to come fails
/// and the daemon's threads end, even if a process still holds a file open.
fn abort(id: u64) {
    if let Some(ctl) = fusectl() {
        let _ = fs::write(ctl.join(id.to_string()).join("abort"), "1");
    }
}

impl FuseMount {
    /// Mounts `engine`'s tree on `path`; the mount is up (the kernel's INIT
    /// answered) when this returns. Refused unless the process is in its
    /// private mount namespace.
    pub(crate) fn new(path: &Path, engine: Arc<Engine>) -> io::Result<FuseMount> {
        refuse_overlap(path, engine.root())?;
        namespace_entered().map_err(|e| io::Error::other(format!("fuse backend: {e}")))?;
        let daemon = daemon::Daemon::new(engine)?;
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("imc-sandbox".to_owned()),
            MountOption::Subtype("imc-sandbox".to_owned()),
            // No `default_permissions`: with attributes never cached, the
            // kernel's permission checks would send a `getattr` for every
            // directory of every path walked, each logged as a `metadata`.
        ];
        // Any user: daemons under test may run as another uid.
        config.acl = SessionACL::All;
        config.n_threads = Some(THREADS);
        let session = Session::new(daemon, path, &config).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("fuse backend: mount on {}: {e}", path.display()),
            )
        })?;
        let (tx, ended) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sandbox-fuse".to_owned())
            .spawn(move || {
                // Ends when the kernel tears the connection down (unmount).
                let _ = session.run();
                let _ = tx.send(());
            })?;
        let connection = connection_of(path);
        Ok(FuseMount {
            path: path.to_owned(),
            connection,
            ended,
            thread: Some(thread),
        })
    }
}

/// The handlers work on the backing tree only: one inside the mount (or the
/// mount inside it) would send the daemon requests to itself and deadlock.
fn refuse_overlap(mount: &Path, backing: &Path) -> io::Result<()> {
    if mount.starts_with(backing) || backing.starts_with(mount) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "fuse backend: the backing directory {} and the mount {} must not \
                 contain each other",
                backing.display(),
                mount.display()
            ),
        ));
    }
    Ok(())
}

impl Drop for FuseMount {
    fn drop(&mut self) {
        // A process still holding a file on the volume would keep a detached
        // connection, and the daemon, alive: cut it. First, while the mount
        // still holds the connection's device number: once detached, the
        // number is free and another mount (another thread's sandbox) may get
        // it, and that connection would be the one cut.
        if let Some(id) = self.connection {
            abort(id);
        }
        // Lazy, never a plain umount: a busy mount must not fail the drop,
        // and nothing here may wait on the daemon being served.
        let _ = umount_detach(&self.path);
        if self.ended.recv_timeout(UNMOUNT_WAIT).is_ok()
            && let Some(thread) = self.thread.take()
        {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backing_tree_and_the_mount_never_nest() {
        let refused = |m: &str, b: &str| refuse_overlap(Path::new(m), Path::new(b)).is_err();
        assert!(refused("/s/root", "/s/root/backing"));
        assert!(refused("/s/root/mnt", "/s/root"));
        assert!(refused("/s/root", "/s/root"));
        assert!(!refused("/s/root", "/s/backing"));
        assert!(!refused("/s/root", "/s/rootx"));
    }
}
