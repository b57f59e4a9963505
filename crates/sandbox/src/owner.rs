//! Who owns a sandbox directory, so that none outlives its process.
//!
//! A sandbox directory is named after its owner's pid (`imc-sandbox-<pid>-XXXXXX`
//! in the temporary folder) and holds `owner.lock`, a file its owner keeps locked
//! (flock, through fs4) for the sandbox's whole life. The kernel drops the lock
//! when the owner dies, however it dies, so a free lock means a dead owner even if
//! its pid was reused since; a held one means a live owner, whose sandbox is never
//! touched. The lock file is put in place already locked (locked under a temporary
//! name, then renamed), so `owner.lock` is never seen unlocked while its owner
//! lives; a directory without it is one being created (or whose owner died while
//! creating it), judged by whether its pid is alive.
//!
//! [`remove_stale_sandboxes`] removes what dead owners left (a SIGKILL cannot be
//! caught); [`remove_own_sandboxes`] removes this process's own, for a process
//! about to exit on a signal, and refuses new sandboxes from then on.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tempfile::TempDir;

/// The start of every sandbox directory's name.
pub const PREFIX: &str = "imc-sandbox-";

/// The lock file in each sandbox directory.
const LOCK: &str = "owner.lock";

/// Whether this process still creates sandboxes (false once
/// [`remove_own_sandboxes`] ran). Creation holds it, so that no directory is being
/// created while the process removes its own.
static OPEN: Mutex<bool> = Mutex::new(true);

/// The held lock of a live sandbox; dropping it (or dying) releases it.
#[derive(Debug)]
pub(crate) struct OwnerLock {
    _file: File,
}

/// Creates a sandbox directory named after this process, holding its locked
/// `owner.lock`.
pub(crate) fn create_dir() -> io::Result<(TempDir, OwnerLock)> {
    let open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
    if !*open {
        return Err(io::Error::new(
            io::ErrorKind::Interrupted,
            "the process is stopping: no new sandbox is created",
        ));
    }
    let dir = tempfile::Builder::new()
        .prefix(&format!("{PREFIX}{}-", std::process::id()))
        .tempdir()?;
    let pending = dir.path().join(format!("{LOCK}.new"));
    let file = File::create_new(&pending)?;
    fs4::FileExt::lock(&file)?;
    fs::rename(&pending, dir.path().join(LOCK))?;
    drop(open);
    Ok((dir, OwnerLock { _file: file }))
}

/// The pid in a sandbox directory's name (`imc-sandbox-<pid>-XXXXXX`).
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, random) = rest.split_once('-')?;
    if random.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Whether a process with this pid exists (maybe another one than the owner, if
/// the pid was reused: then the sandbox is kept, the safe side).
fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return true;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// The sandbox directories in `tmp` whose owner's pid satisfies `which`.
fn sandboxes(tmp: &Path, which: impl Fn(u32) -> bool) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(tmp)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(owner_pid) else {
            continue;
        };
        // Directories only, never through a link planted by someone else.
        if entry.file_type().is_ok_and(|t| t.is_dir()) && which(pid) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Removes the sandbox directories in `tmp` (the temporary folder when `None`)
/// whose owner process no longer exists, and returns them. A sandbox whose owner
/// lives (its lock is held, or it is being created by a live pid) is never
/// touched, nor a directory that does not carry a pid in its name.
pub fn remove_stale_sandboxes(tmp: Option<&Path>) -> io::Result<Vec<PathBuf>> {
    let tmp = tmp.map_or_else(std::env::temp_dir, Path::to_path_buf);
    let mut removed = Vec::new();
    // Our own pid too: a dead process may have had it before (the locks tell).
    for dir in sandboxes(&tmp, |_| true)? {
        let pid = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(owner_pid)
            .unwrap_or(0);
        // Held while removing, so two cleaners do not race over one directory.
        let lock = match File::open(dir.join(LOCK)) {
            Ok(file) => match fs4::FileExt::try_lock(&file) {
                Ok(()) => Some(file),
                // Its owner lives.
                Err(_) => continue,
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if alive(pid) {
                    continue;
                }
                None
            }
            Err(_) => continue,
        };
        if remove_dir(&dir).is_ok() {
            removed.push(dir);
        }
        drop(lock);
    }
    Ok(removed)
}

/// Stops this process from creating sandboxes, then removes every sandbox
/// directory it owns (unmounting a tmpfs root first) and returns them; for a
/// process about to exit on a signal, while its runs may still be going. The
/// sandboxes' `Drop` later finds them gone, which is harmless.
pub fn remove_own_sandboxes() -> Vec<PathBuf> {
    let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
    *open = false;
    let me = std::process::id();
    let Ok(dirs) = sandboxes(&std::env::temp_dir(), |pid| pid == me) else {
        return Vec::new();
    };
    drop(open);
    let mut removed = Vec::new();
    for dir in dirs {
        unmount_root(&dir);
        if remove_dir(&dir).is_ok() {
            removed.push(dir);
        }
    }
    removed
}

/// Removes `dir`, trying again a few times: a run still going may create files in
/// it meanwhile (until its folders are gone).
fn remove_dir(dir: &Path) -> io::Result<()> {
    let mut last = Ok(());
    for _ in 0..8 {
        last = match fs::remove_dir_all(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            other => other,
        };
        if last.is_ok() {
            return Ok(());
        }
    }
    last
}

/// Lazily unmounts `dir/root` and `dir/volume` where a tmpfs or FUSE mount is
/// there (in this process's mount namespace), so their contents go with them
/// and the directory can be removed.
fn unmount_root(dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(outer) = fs::metadata(dir) else {
        return;
    };
    for name in ["root", "volume"] {
        let mounted = dir.join(name);
        let Ok(inner) = fs::symlink_metadata(&mounted) else {
            continue;
        };
        if outer.dev() == inner.dev() {
            continue;
        }
        #[cfg(target_os = "linux")]
        if let Ok(c) = std::ffi::CString::new(mounted.as_os_str().as_encoded_bytes()) {
            // SAFETY: a valid NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Refuses a volume of `quota` bytes that the host cannot hold: more than the free
/// space of the filesystem holding `dir` (`vfs`: the ballast is a real file
/// there), or than the memory available (`tmpfs`, `fuse`: the volume is RAM).
pub(crate) fn check_capacity(dir: &Path, quota: u64, tmpfs: bool) -> io::Result<()> {
    let (free, where_) = if tmpfs {
        match available_memory() {
            Some(free) => (free, "of memory available for a tmpfs".to_string()),
            None => return Ok(()),
        }
    } else {
        (
            fs4::available_space(dir)?,
            format!(
                "free where sandboxes live ({})",
                dir.parent().unwrap_or(dir).display()
            ),
        )
    };
    if quota > free {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "the sandbox's volume of {quota} bytes does not fit on this host: only {free} bytes {where_}; \
                 use a smaller `quota`, or set TMPDIR to a roomier folder"
            ),
        ));
    }
    Ok(())
}

/// `MemAvailable` of /proc/meminfo, in bytes (Linux; `None` elsewhere).
fn available_memory() -> Option<u64> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_in_names() {
        assert_eq!(owner_pid("imc-sandbox-1234-aB3dE9"), Some(1234));
        assert_eq!(owner_pid("imc-sandbox-1234-12345"), Some(1234));
        assert_eq!(owner_pid("imc-sandbox-aB3dE9"), None);
        assert_eq!(owner_pid("imc-sandbox-1234"), None);
        assert_eq!(owner_pid("imc-sandbox--x"), None);
        assert_eq!(owner_pid("other-1234-x"), None);
    }
}
