//! SIGINT and SIGTERM: remove every live sandbox, then exit 130 or 143.
//!
//! The signals are blocked in every thread (the mask is set before any other
//! thread starts, and threads inherit it) and taken by one thread that waits for
//! them with `sigwait`, so the cleanup runs as ordinary code, not in a handler.
//! Runs still going are cut short by the exit; their sandboxes are gone first.

use std::io;

/// Blocks SIGINT and SIGTERM in this thread and every thread it starts, and
/// starts the thread that handles them. Call it before any other thread starts.
pub fn install() -> io::Result<()> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; the signals are valid.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
    }
    // SAFETY: `set` is initialised; the old mask is not wanted.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    let waiter = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || wait(set));
    if let Err(e) = waiter {
        // Without the waiter, blocked signals would never be seen: unblock them.
        // SAFETY: as above.
        unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
        return Err(e);
    }
    Ok(())
}

fn wait(set: libc::sigset_t) {
    let mut signal = 0;
    loop {
        // SAFETY: `set` is initialised and `signal` is a valid out pointer.
        if unsafe { libc::sigwait(&set, &mut signal) } == 0 {
            break;
        }
    }
    let name = if signal == libc::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    };
    let removed = sandbox::remove_own_sandboxes();
    eprintln!(
        "imc-harness: stopped by {name}; removed {} live sandbox{}",
        removed.len(),
        if removed.len() == 1 { "" } else { "es" }
    );
    std::process::exit(128 + signal);
}
