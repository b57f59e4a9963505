//! The `tmpfs` backend's mounts, confined to a private mount namespace.
//!
//! A tmpfs sandbox mounts a real tmpfs on its `root/`, so that `ENOSPC`, free
//! space and the ballast's allocation are the kernel's own. Those mounts must
//! never reach the host's mount table, not even if the process is killed before
//! it can unmount: the process first moves into a mount namespace of its own
//! whose mounts do not propagate ([`enter_private_mount_namespace`]); when it
//! dies, the namespace and every mount in it go with it. Mounting is refused
//! until that has succeeded.

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::quota::BLOCK;

/// The outcome of the one attempt to enter the namespace.
static NAMESPACE: OnceLock<Result<(), String>> = OnceLock::new();

/// Whether a test mount worked, once the namespace is entered.
static PROBE: OnceLock<Result<(), String>> = OnceLock::new();

/// Moves the process into a private mount namespace, so that the tmpfs volumes
/// of [`Backend::Tmpfs`](crate::Backend::Tmpfs) sandboxes are invisible outside
/// it and vanish with it.
///
/// Call it at the start of `main`, while the process is still single-threaded
/// (a namespace is entered by the calling thread only, and threads started
/// earlier would stay behind; a user namespace cannot be entered at all by a
/// multi-threaded process). As root it unshares the mount namespace; otherwise,
/// or if root lacks `CAP_SYS_ADMIN`, it unshares a user namespace along with it,
/// mapping the caller's uid and gid to root inside. Either way it then makes
/// every mount recursively private, so nothing mounted afterwards propagates
/// back to the host.
///
/// Fails with the reason where this is not permitted (no privilege, user
/// namespaces disabled, threads already running, not Linux). Only the first
/// call does anything: later ones return its result.
pub fn enter_private_mount_namespace() -> Result<(), String> {
    NAMESPACE.get_or_init(enter).clone()
}

/// Whether [`Backend::Tmpfs`](crate::Backend::Tmpfs) sandboxes can be created in
/// this process: the private mount namespace was entered and a test tmpfs could
/// be mounted there. The error says why not, in a form fit for reporting a test
/// as ignored.
pub fn tmpfs_available() -> Result<(), String> {
    namespace_entered()?;
    PROBE.get_or_init(probe).clone()
}

/// Ok once [`enter_private_mount_namespace`] has succeeded.
pub(crate) fn namespace_entered() -> Result<(), String> {
    match NAMESPACE.get() {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(format!("cannot enter a private mount namespace: {e}")),
        None => Err("the process has not entered a private mount namespace \
             (call sandbox::enter_private_mount_namespace() at the start of main)"
            .to_owned()),
    }
}

#[cfg(target_os = "linux")]
fn enter() -> Result<(), String> {
    let threads = std::fs::read_dir("/proc/self/task")
        .map_err(|e| format!("cannot count the process's threads in /proc/self/task: {e}"))?
        .count();
    if threads > 1 {
        return Err(format!(
            "the process already runs {threads} threads; the namespace must be entered \
             while it is single-threaded, at the start of main"
        ));
    }
    // SAFETY: plain syscalls without pointers.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        // SAFETY: as above.
        if unsafe { libc::unshare(libc::CLONE_NEWNS) } == 0 {
            return make_private();
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EPERM) {
            return Err(format!("unshare(CLONE_NEWNS): {}", os_error(&err)));
        }
        // Root without CAP_SYS_ADMIN (a container): a user namespace may still do.
        return enter_user_namespace()
            .map_err(|e| format!("unshare(CLONE_NEWNS) as root: EPERM; then {e}"));
    }
    enter_user_namespace()
}

#[cfg(not(target_os = "linux"))]
fn enter() -> Result<(), String> {
    Err("mount namespaces exist only on Linux".to_owned())
}

/// Unshares a user and a mount namespace and maps the caller to root inside.
#[cfg(target_os = "linux")]
fn enter_user_namespace() -> Result<(), String> {
    // SAFETY: plain syscalls without pointers.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    // SAFETY: as above.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) } != 0 {
        let err = io::Error::last_os_error();
        let mut reason = format!("unshare(CLONE_NEWUSER|CLONE_NEWNS): {}", os_error(&err));
        let sysctl = |file: &str| std::fs::read_to_string(file).map(|v| v.trim().to_owned());
        if sysctl("/proc/sys/kernel/unprivileged_userns_clone").is_ok_and(|v| v == "0") {
            reason.push_str(" (kernel.unprivileged_userns_clone is 0)");
        }
        if sysctl("/proc/sys/user/max_user_namespaces").is_ok_and(|v| v == "0") {
            reason.push_str(" (user.max_user_namespaces is 0)");
        }
        return Err(reason);
    }
    let write = |file: &str, text: String| {
        std::fs::write(file, &text)
            .map_err(|e| format!("cannot write `{text}` to {file}: {}", os_error(&e)))
    };
    write("/proc/self/setgroups", "deny".to_owned())?;
    write("/proc/self/uid_map", format!("0 {uid} 1"))?;
    write("/proc/self/gid_map", format!("0 {gid} 1"))?;
    make_private()
}

/// Stops mount propagation from this namespace to the host's, for every mount.
#[cfg(target_os = "linux")]
fn make_private() -> Result<(), String> {
    // SAFETY: a NUL-terminated path and null pointers where mount(2) allows them.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return Err(format!(
            "mount(\"/\", MS_REC|MS_PRIVATE): {} (the new namespace is not private, \
             so nothing will be mounted)",
            os_error(&err)
        ));
    }
    Ok(())
}

/// Mounts a scratch tmpfs and unmounts it.
fn probe() -> Result<(), String> {
    let dir = tempfile::Builder::new()
        .prefix("imc-tmpfs-probe-")
        .tempdir()
        .map_err(|e| format!("cannot create a directory to mount on: {e}"))?;
    let mount = TmpfsMount::new(dir.path(), BLOCK).map_err(|e| e.to_string())?;
    drop(mount);
    Ok(())
}

/// A tmpfs mounted on a directory, lazily unmounted when dropped.
#[derive(Debug)]
pub(crate) struct TmpfsMount {
    path: PathBuf,
}

impl TmpfsMount {
    /// Mounts a tmpfs of `size` bytes (a non-zero multiple of [`BLOCK`], since
    /// the kernel rounds sizes up to pages and reads 0 as unlimited) on `path`,
    /// and checks that the kernel sees the volume as the quota model does.
    /// Refused unless the process is in its private mount namespace.
    pub(crate) fn new(path: &Path, size: u64) -> io::Result<TmpfsMount> {
        namespace_entered().map_err(|e| io::Error::other(format!("tmpfs backend: {e}")))?;
        if size == 0 || !size.is_multiple_of(BLOCK) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "tmpfs backend: the volume must be a non-zero number of {BLOCK}-byte \
                     blocks, got {size} bytes (a tmpfs of size 0 is unlimited)"
                ),
            ));
        }
        mount_tmpfs(path, size)?;
        let mount = TmpfsMount {
            path: path.to_owned(),
        };
        let st = statvfs(path)?;
        if st.frsize != BLOCK || st.blocks * st.frsize != size {
            return Err(io::Error::other(format!(
                "tmpfs backend: the kernel made a volume of {} blocks of {} bytes, \
                 not {} blocks of {BLOCK} (page size differs from the quota model's block?)",
                st.blocks,
                st.frsize,
                size / BLOCK
            )));
        }
        Ok(mount)
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        // Lazy: files still open elsewhere (a connector that outlives the
        // sandbox) keep the volume alive, detached, until they are closed.
        let _ = umount_detach(&self.path);
    }
}

/// What the quota model needs from `statvfs`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StatVfs {
    pub(crate) frsize: u64,
    pub(crate) blocks: u64,
}

fn cstring(path: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

#[cfg(target_os = "linux")]
fn mount_tmpfs(path: &Path, size: u64) -> io::Result<()> {
    let target = cstring(path)?;
    let options = CString::new(format!("size={size},mode=0755")).expect("no NUL");
    // SAFETY: NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            options.as_ptr().cast(),
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(
            err.kind(),
            format!(
                "tmpfs backend: mount -t tmpfs -o size={size}: {}",
                os_error(&err)
            ),
        ));
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn mount_tmpfs(_path: &Path, _size: u64) -> io::Result<()> {
    Err(io::Error::other("tmpfs backend: Linux only"))
}

#[cfg(target_os = "linux")]
pub(crate) fn umount_detach(path: &Path) -> io::Result<()> {
    let target = cstring(path)?;
    // SAFETY: a NUL-terminated string that outlives the call.
    if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn umount_detach(_path: &Path) -> io::Result<()> {
    Ok(())
}

/// Mounts the FUSE control filesystem on `path` (to abort connections).
#[cfg(target_os = "linux")]
pub(crate) fn mount_fusectl(path: &Path) -> io::Result<()> {
    namespace_entered().map_err(io::Error::other)?;
    let target = cstring(path)?;
    // SAFETY: NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            c"fusectl".as_ptr(),
            target.as_ptr(),
            c"fusectl".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn mount_fusectl(_path: &Path) -> io::Result<()> {
    Err(io::Error::other("Linux only"))
}

/// `statvfs(path)`.
pub(crate) fn statvfs(path: &Path) -> io::Result<StatVfs> {
    let c = cstring(path)?;
    // SAFETY: `statvfs` is plain old data; the kernel fills it on success.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid out pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    Ok(StatVfs {
        frsize: u64::from(st.f_frsize),
        blocks: u64::from(st.f_blocks),
    })
}

/// `EPERM (Operation not permitted)`: the errno's name and the OS's message.
pub(crate) fn os_error(err: &io::Error) -> String {
    let name = crate::errno::error_name(err);
    let text = err.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    format!("{name} ({text})")
}
