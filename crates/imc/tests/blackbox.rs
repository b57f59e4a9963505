//! `imc serve` as a black box on a real volume: the binary on a 16 MiB tmpfs,
//! driven over a real socket, with the faults of KB Q146791 applied by the
//! plain commands an administrator would type (`mv`, `rm -r`, `fallocate`)
//! and the replies, the event log file and the exit status checked exactly.
//! README.md, "Black-box use on a real volume", is the same walk by hand.
//!
//! Runs under libtest-mimic (`harness = false`): the process enters a private
//! mount namespace at the start of `main`, while still single-threaded, so the
//! tmpfs never reaches the host's mount table and vanishes with the process.
//! That needs root; without it (or without the tools) the tests are reported
//! as ignored, with the reason. Filters and cargo-nextest work as usual.
//! Nothing sleeps: every wait is on a reply, a line or an exit,
//! bounded by [`GUARD`] so a broken connector fails instead of hanging.

use std::ffi::CString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

/// Longest any single wait may take before the test fails as hung.
const GUARD: Duration = Duration::from_secs(20);

/// KB Q146791's refusal.
const KB_421: &str = "421 Internal Error. Connection Closing.";

/// KB-4: what a stop while faulted prints (`--hostname EXCH01`).
const KB4_STDERR: &str = "Could not stop the Microsoft Exchange Internet Mail Connector on \\\\EXCH01\n\
                          0008: Not enough storage space is available.\n";

/// The low-water mark given to `imc serve`, and what the ballast leaves free.
const LOW_WATER_MARK: &str = "1MiB";
const LEAVE: u64 = 512 << 10;

type Test = (&'static str, fn());

fn main() {
    let tests: &[Test] = &[
        ("exchange_4_0_on_tmpfs", exchange_4_0_on_tmpfs),
        ("hardened_on_tmpfs", hardened_on_tmpfs),
    ];
    let args = libtest_mimic::Arguments::from_args();
    // Before libtest-mimic starts its threads: the namespace must be entered while
    // the process is single-threaded. Listing (nextest) needs no namespace.
    let usable = if args.list {
        Ok(())
    } else {
        enter_private_mount_namespace()
            .and_then(|()| tools_present())
            .and_then(|()| Volume::mount().map(drop))
    };
    let trials = tests
        .iter()
        .map(|&(name, test)| {
            let usable = usable.clone();
            libtest_mimic::Trial::ignorable_test(name, move || match usable {
                Err(reason) => Ok(libtest_mimic::Completion::ignored_with(reason)),
                Ok(()) => {
                    println!("test {name}:");
                    test();
                    Ok(libtest_mimic::Completion::Completed)
                }
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

/// Moves the process into a mount namespace of its own whose mounts do not
/// propagate back (the few calls `sandbox::enter_private_mount_namespace`
/// makes as root; imc must not depend on the harness).
fn enter_private_mount_namespace() -> Result<(), String> {
    // SAFETY: plain syscalls; the pointers are null or NUL-terminated literals.
    unsafe {
        if libc::geteuid() != 0 {
            return Err("not root: mounting a tmpfs needs root".into());
        }
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(format!(
                "unshare(CLONE_NEWNS): {}",
                io::Error::last_os_error()
            ));
        }
        let flags = libc::MS_REC | libc::MS_PRIVATE;
        let none = std::ptr::null();
        if libc::mount(none, c"/".as_ptr(), none, flags, std::ptr::null()) != 0 {
            return Err(format!(
                "mount(/, MS_REC|MS_PRIVATE): {}",
                io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// The commands the test runs, as a user would.
fn tools_present() -> Result<(), String> {
    for tool in ["mount", "mv", "rm", "fallocate"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Err(format!("`{tool}` is not available"));
        }
    }
    Ok(())
}

/// Runs a command to its end; it must succeed.
fn sh(argv: &[&str]) {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"));
    assert!(
        out.status.success(),
        "{argv:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("no NUL in a path")
}

/// A 16 MiB tmpfs mounted on a fresh temporary directory; lazily unmounted
/// (`MNT_DETACH`) when dropped, also on a failed check, and then removed.
struct Volume {
    dir: TempDir,
}

impl Volume {
    fn mount() -> Result<Volume, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("a mount point: {e}"))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16M", "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Volume { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Bytes free for an unprivileged writer, as `df` shows them.
    fn free(&self) -> u64 {
        let path = c_path(self.path());
        // SAFETY: statvfs fills the zeroed struct; the path is NUL-terminated.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut st) }, 0);
        st.f_bavail as u64 * st.f_frsize as u64
    }

    /// `fallocate -l SIZE ROOT/ballast`, sized to leave [`LEAVE`] bytes free.
    fn fill(&self) -> String {
        let size = self.free() - LEAVE;
        let ballast = self.path().join("ballast");
        sh(&[
            "fallocate",
            "-l",
            &size.to_string(),
            ballast.to_str().unwrap(),
        ]);
        assert_eq!(self.free(), LEAVE);
        format!("fallocate -l {size} ballast")
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let path = c_path(self.path());
        // SAFETY: a NUL-terminated path.
        unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
    }
}

/// A running `imc serve` and the address it printed. Dropping it kills it.
struct Served {
    child: Child,
    addr: SocketAddr,
    stderr: mpsc::Receiver<String>,
}

impl Served {
    fn start(root: &Path, profile: &str, log: &Path) -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_imc"))
            .arg("serve")
            .arg("--root")
            .arg(root)
            .args(["--profile", profile, "--listen", "127.0.0.1:0"])
            .arg("--event-log")
            .arg(log)
            .args(["--disk-check-interval", "0"])
            .args(["--low-water-mark", LOW_WATER_MARK])
            .args(["--hostname", "EXCH01"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn imc serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut first = String::new();
            let _ = BufReader::new(stdout).read_line(&mut first);
            let _ = tx.send(first);
        });
        let mut err = child.stderr.take().unwrap();
        let (etx, erx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut all = String::new();
            let _ = err.read_to_string(&mut all);
            let _ = etx.send(all);
        });
        let mut served = Served {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr: erx,
        };
        let first = rx
            .recv_timeout(GUARD)
            .unwrap_or_else(|_| panic!("imc serve printed nothing within {GUARD:?}"));
        match first.trim_end().strip_prefix("listening on ") {
            Some(addr) => served.addr = addr.parse().expect("an address"),
            None => {
                let _ = served.child.kill();
                let stderr = served.stderr.recv_timeout(GUARD).unwrap_or_default();
                panic!("unexpected first line {first:?}; stderr: {stderr}");
            }
        }
        served
    }

    fn sigterm(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: a signal to our own child.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    }

    /// Waits for the exit that a [`Served::sigterm`] started: the exit status and
    /// everything printed on stderr.
    fn exit(mut self) -> (ExitStatus, String) {
        let pid = self.child.id();
        let (tx, rx) = mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if rx.recv_timeout(GUARD).is_err() {
                // Still running: kill it so wait() returns and the check fails.
                // SAFETY: a signal to our own child, not yet reaped.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        });
        let status = self.child.wait().expect("wait");
        let _ = tx.send(());
        watchdog.join().unwrap();
        assert!(
            status.code().is_some(),
            "imc serve did not exit within {GUARD:?} of SIGTERM: {status:?}"
        );
        let stderr = self.stderr.recv_timeout(GUARD).expect("stderr");
        (status, stderr)
    }

    fn stop(self) -> (ExitStatus, String) {
        self.sigterm();
        self.exit()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a profile answers on the happy path.
struct Dialect {
    profile: &'static str,
    source: &'static str,
    greeting: &'static str,
    ehlo: &'static str,
    mail_ok: &'static str,
    rcpt_ok: &'static str,
    data_start: &'static str,
    /// The reply after the dot, given the message id.
    queued: fn(&str) -> String,
    quit: &'static str,
}

const EXCHANGE: Dialect = Dialect {
    profile: "exchange-4.0",
    source: "MSExchangeIMC",
    greeting: "220 EXCH01 Microsoft Exchange Internet Mail Connector ready",
    ehlo: "250-EXCH01\n250-SIZE 10485760\n250 HELP",
    mail_ok: "250 OK - mail from accepted",
    rcpt_ok: "250 OK - recipient accepted",
    data_start: "354 Send data.  End with CRLF.CRLF",
    queued: |_| "250 OK".to_owned(),
    quit: "221 EXCH01 closing connection",
};

const HARDENED: Dialect = Dialect {
    profile: "hardened",
    source: "imc",
    greeting: "220 EXCH01 ESMTP imc ready",
    ehlo: "250-EXCH01\n250-PIPELINING\n250-SIZE 10485760\n250-8BITMIME\n\
           250-ENHANCEDSTATUSCODES\n250 HELP",
    mail_ok: "250 2.1.0 Sender OK",
    rcpt_ok: "250 2.1.5 Recipient OK",
    data_start: "354 Start mail input; end with <CRLF>.<CRLF>",
    queued: |id| format!("250 2.0.0 OK queued as {id}"),
    quit: "221 2.0.0 EXCH01 closing connection",
};

/// A blocking SMTP client on a real socket.
struct Smtp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Smtp {
    fn connect(addr: SocketAddr) -> Smtp {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(GUARD)).unwrap();
        Smtp {
            writer: s.try_clone().unwrap(),
            reader: BufReader::new(s),
        }
    }

    /// One whole reply, its lines joined by `\n`.
    fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            let n = self.reader.read_line(&mut l).expect("a reply");
            assert!(n > 0, "closed after {lines:?}");
            let l = l.strip_suffix("\r\n").expect("CRLF").to_owned();
            let last = l.as_bytes().get(3) != Some(&b'-');
            lines.push(l);
            if last {
                return lines.join("\n");
            }
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        self.reply()
    }

    /// The message text and the lone dot; the reply.
    fn message(&mut self, subject: &str) -> String {
        let text = format!("Subject: {subject}\r\n\r\nSent to imc serve on a tmpfs.\r\n.\r\n");
        self.writer.write_all(text.as_bytes()).unwrap();
        self.reply()
    }

    /// True once the server has closed the connection (and sent nothing more).
    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).is_ok() && rest.is_empty()
    }

    /// Connects and expects the greeting.
    fn open(addr: SocketAddr, d: &Dialect) -> Smtp {
        let mut c = Smtp::connect(addr);
        assert_eq!(c.reply(), d.greeting);
        c
    }

    /// EHLO, MAIL, RCPT, DATA up to the 354.
    fn up_to_data(&mut self, d: &Dialect) {
        assert_eq!(self.cmd("EHLO client.example"), d.ehlo);
        assert_eq!(self.cmd("MAIL FROM:<alice@example.org>"), d.mail_ok);
        self.rcpt_and_data(d);
    }

    fn rcpt_and_data(&mut self, d: &Dialect) {
        assert_eq!(self.cmd("RCPT TO:<bob@example.net>"), d.rcpt_ok);
        assert_eq!(self.cmd("DATA"), d.data_start);
    }

    fn quit(mut self, d: &Dialect) {
        assert_eq!(self.cmd("QUIT"), d.quit);
        assert!(self.closed(), "still open after QUIT");
    }
}

/// The spool root's directories.
struct Spool {
    root: PathBuf,
}

impl Spool {
    fn dir(&self, name: &str) -> PathBuf {
        self.root.join("imcdata").join(name)
    }

    fn entries(&self, name: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir(name))
            .unwrap_or_else(|e| panic!("imcdata/{name}: {e}"))
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    /// `<root>` as the events print it: backslash-separated.
    fn win32(&self) -> String {
        self.root.display().to_string().replace('/', "\\")
    }

    /// The message id of the work file a DATA created: the one entry of `work`
    /// not in `before`.
    fn new_work_file(&self, before: &[String]) -> String {
        let mut new: Vec<String> = self
            .entries("work")
            .into_iter()
            .filter(|e| !before.contains(e))
            .collect();
        assert_eq!(new.len(), 1, "one new work file after 354: {new:?}");
        let id = new.pop().unwrap();
        // Real runs name messages by the clock: 16 hex digits.
        assert!(
            id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit()),
            "{id}"
        );
        id
    }

    /// A whole transaction that must end in IN; its message id.
    fn deliver(&self, addr: SocketAddr, d: &Dialect, subject: &str) -> String {
        let before = self.entries("work");
        let mut c = Smtp::open(addr, d);
        c.up_to_data(d);
        let id = self.new_work_file(&before);
        assert_eq!(c.message(subject), (d.queued)(&id));
        c.quit(d);
        self.assert_in(&id);
        id
    }

    fn assert_in(&self, id: &str) {
        assert!(self.dir("in").join(id).is_file(), "{id} is not in IN");
        assert!(!self.dir("work").join(id).exists(), "{id} is still in work");
    }
}

/// The event log file, re-read after the reply or exit that must follow the
/// events (they are logged before it).
struct Events {
    path: PathBuf,
    seen: usize,
}

impl Events {
    /// The events appended since the last call.
    fn since_last(&mut self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let events: Vec<Value> = text
            .lines()
            .skip(self.seen)
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
            .collect();
        self.seen += events.len();
        events
    }

    /// The new events have exactly these ids (and the profile's source); they
    /// are returned for closer checks.
    fn expect(&mut self, d: &Dialect, ids: &[u64]) -> Vec<Value> {
        let events = self.since_last();
        let got: Vec<u64> = events.iter().map(|e| e["id"].as_u64().unwrap()).collect();
        assert_eq!(got, ids, "new events: {events:#?}");
        for e in &events {
            assert_eq!(e["source"], d.source, "{e}");
        }
        events
    }
}

fn assert_event(e: &Value, level: &str, category: &str, message: &str) {
    assert_eq!(e["level"], level, "{e}");
    assert_eq!(e["category"], category, "{e}");
    assert_eq!(e["message"], message, "{e}");
}

fn ok(what: &str) {
    println!("  ok: {what}");
}

/// Where the spool and the event log live: a fresh tmpfs, and a directory
/// outside it.
struct Setup {
    volume: Volume,
    spool: Spool,
    events: Events,
    _logs: TempDir,
    log: PathBuf,
}

fn setup() -> Setup {
    let volume = Volume::mount().expect("mount a tmpfs");
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("events.jsonl");
    Setup {
        spool: Spool {
            root: volume.path().to_path_buf(),
        },
        volume,
        events: Events {
            path: log.clone(),
            seen: 0,
        },
        _logs: logs,
        log,
    }
}

/// KB Q146791, profile `exchange-4.0`: every fault by hand, every documented
/// reply, event and exit status.
fn exchange_4_0_on_tmpfs() {
    let d = &EXCHANGE;
    let mut s = setup();
    let (spool, root) = (&s.spool, s.spool.win32());
    let served = Served::start(&spool.root, d.profile, &s.log);
    let started = s.events.expect(d, &[1002, 1002, 1002, 1000]);
    assert_event(
        &started[2],
        "Warning",
        "Service Control",
        &format!("The directory {root}\\imcdata\\in was missing and has been created."),
    );
    ok("imc serve on an empty 16 MiB tmpfs: `listening on`, events 1002 x3 + 1000");

    let id = spool.deliver(served.addr, d, "first");
    s.events.expect(d, &[]);
    ok(&format!("a message -> 250 OK, imcdata/in/{id}"));

    // KB-2: IN renamed away; a new call is refused.
    let (in_dir, old) = (spool.dir("in"), spool.dir("in.old"));
    sh(&["mv", in_dir.to_str().unwrap(), old.to_str().unwrap()]);
    let mut c = Smtp::connect(served.addr);
    assert_eq!(c.reply(), KB_421);
    assert!(c.closed(), "a refused connection is closed");
    let refused = s.events.expect(d, &[1004]);
    assert_event(
        &refused[0],
        "Warning",
        "Internal Processing",
        &format!(
            "Refused a connection from 127.0.0.1: the directory {root}\\imcdata\\in is missing."
        ),
    );
    ok("mv imcdata/in imcdata/in.old -> new connection: 421 and closed, event 1004");

    sh(&["mv", old.to_str().unwrap(), in_dir.to_str().unwrap()]);
    let id = spool.deliver(served.addr, d, "after the move back");
    s.events.expect(d, &[]);
    ok(&format!(
        "mv it back -> mail flows: 250 OK, imcdata/in/{id}"
    ));

    // KB-3: IN removed between the 354 and the dot.
    let before = spool.entries("work");
    let mut c = Smtp::open(served.addr, d);
    c.up_to_data(d);
    let id = spool.new_work_file(&before);
    sh(&["rm", "-r", in_dir.to_str().unwrap()]);
    assert_eq!(c.message("during rm -r"), KB_421);
    assert!(c.closed(), "closed after the 421");
    let failed = s.events.expect(d, &[4055]);
    assert_event(
        &failed[0],
        "Error",
        "Internal Processing",
        &format!(
            "Unable to move file {root}\\imcdata\\work\\{id} to {root}\\imcdata\\in\\{id} \
             due to system error. The system cannot find the path specified."
        ),
    );
    assert!(
        spool.dir("work").join(&id).is_file(),
        "KB-3 leaves work/{id}"
    );
    ok(&format!(
        "rm -r imcdata/in after 354 -> 421 and closed, event 4055 for {id}, work/{id} left behind"
    ));

    // KB-4: a stop while IN is missing.
    let (status, stderr) = served.stop();
    assert_eq!(status.code(), Some(8), "stderr: {stderr}");
    assert_eq!(stderr, KB4_STDERR);
    s.events.expect(d, &[1001]);
    ok("SIGTERM while IN is missing -> exit 8, `Could not stop ... \\\\EXCH01` / `0008: ...`");

    // KB-5: a restart recreates IN (and clears the leftover of KB-3).
    let served = Served::start(&spool.root, d.profile, &s.log);
    let restarted = s.events.expect(d, &[1002, 1003, 1000]);
    assert_event(
        &restarted[0],
        "Warning",
        "Service Control",
        &format!("The directory {root}\\imcdata\\in was missing and has been created."),
    );
    assert_event(
        &restarted[1],
        "Warning",
        "Service Control",
        &format!(
            "Removed the incomplete work file {root}\\imcdata\\work\\{id} left by an earlier run."
        ),
    );
    let id = spool.deliver(served.addr, d, "after the restart");
    ok(&format!(
        "restart -> event 1002 (IN recreated), 1003 (leftover removed); a message -> 250 OK, imcdata/in/{id}"
    ));

    // KB-1: the disk filled under the low-water mark.
    let fallocate = s.volume.fill();
    let mut c = Smtp::connect(served.addr);
    assert_eq!(c.reply(), KB_421);
    assert!(c.closed(), "a refused connection is closed");
    let low = s.events.expect(d, &[4101, 1004]);
    assert_event(
        &low[0],
        "Warning",
        "Resources",
        &format!(
            "Free space on the spool volume ({LEAVE} bytes) is below the low-water mark \
             (1048576 bytes). Entering flush mode: no inbound messages are accepted."
        ),
    );
    assert_event(
        &low[1],
        "Warning",
        "Internal Processing",
        "Refused a connection from 127.0.0.1: the spool volume is in flush mode.",
    );
    ok(&format!(
        "{fallocate} ({LEAVE} bytes left) -> new connection: 421 and closed, events 4101 + 1004"
    ));

    // KB-4 again, for the disk.
    let (status, stderr) = served.stop();
    assert_eq!(status.code(), Some(8), "stderr: {stderr}");
    assert_eq!(stderr, KB4_STDERR);
    s.events.expect(d, &[1001]);
    ok("SIGTERM under the low-water mark -> exit 8, the same two lines");

    sh(&["rm", s.volume.path().join("ballast").to_str().unwrap()]);
    let served = Served::start(&spool.root, d.profile, &s.log);
    s.events.expect(d, &[1000]);
    let id = spool.deliver(served.addr, d, "after the ballast");
    let (status, stderr) = served.stop();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(stderr, "");
    s.events.expect(d, &[1001]);
    ok(&format!(
        "rm ballast, restart -> 250 OK, imcdata/in/{id}; SIGTERM -> exit 0, nothing on stderr"
    ));
}

/// The same walk with `--profile hardened`: IN is recreated instead of refused,
/// low disk is a `452 4.3.1` at MAIL FROM, and a stop always succeeds.
fn hardened_on_tmpfs() {
    let d = &HARDENED;
    let mut s = setup();
    let (spool, root) = (&s.spool, s.spool.win32());
    let recreated = format!("The directory {root}\\imcdata\\in was missing and has been created.");
    let served = Served::start(&spool.root, d.profile, &s.log);
    s.events.expect(d, &[1002, 1002, 1002, 1000]);
    ok("imc serve --profile hardened on an empty 16 MiB tmpfs: events 1002 x3 + 1000");

    let first = spool.deliver(served.addr, d, "first");
    ok(&format!("a message -> 250 2.0.0 OK queued as {first}"));

    let (in_dir, old) = (spool.dir("in"), spool.dir("in.old"));
    sh(&["mv", in_dir.to_str().unwrap(), old.to_str().unwrap()]);
    let id = spool.deliver(served.addr, d, "after the move");
    let ev = s.events.expect(d, &[1002]);
    assert_event(&ev[0], "Warning", "Service Control", &recreated);
    assert_eq!(spool.entries("in.old"), [first]);
    assert_eq!(spool.entries("in"), std::slice::from_ref(&id));
    ok(&format!(
        "mv imcdata/in imcdata/in.old -> new connection accepted; the move recreates IN (event 1002): 250 queued as {id}"
    ));

    let before = spool.entries("work");
    let mut c = Smtp::open(served.addr, d);
    c.up_to_data(d);
    let id = spool.new_work_file(&before);
    sh(&["rm", "-r", in_dir.to_str().unwrap()]);
    assert_eq!(c.message("during rm -r"), (d.queued)(&id));
    let ev = s.events.expect(d, &[1002]);
    assert_event(&ev[0], "Warning", "Service Control", &recreated);
    spool.assert_in(&id);
    c.quit(d);
    ok(&format!(
        "rm -r imcdata/in after 354 -> IN recreated (event 1002): 250 queued as {id}"
    ));

    let fallocate = s.volume.fill();
    let mut c = Smtp::open(served.addr, d);
    assert_eq!(c.cmd("EHLO client.example"), d.ehlo);
    assert_eq!(
        c.cmd("MAIL FROM:<alice@example.org>"),
        "452 4.3.1 Insufficient system storage"
    );
    let low = s.events.expect(d, &[4101]);
    assert_event(
        &low[0],
        "Warning",
        "Resources",
        &format!(
            "Free space on the spool volume ({LEAVE} bytes) is below the low-water mark (1048576 bytes). Entering flush mode: no inbound messages are accepted."
        ),
    );
    // Refused again: the state is logged once, not per refused MAIL.
    assert_eq!(
        c.cmd("MAIL FROM:<alice@example.org>"),
        "452 4.3.1 Insufficient system storage"
    );
    s.events.expect(d, &[]);
    ok(&format!(
        "{fallocate} ({LEAVE} bytes left) -> connection accepted, MAIL FROM: 452 4.3.1 Insufficient system storage (twice), event 4101 once"
    ));

    let ballast = s.volume.path().join("ballast");
    sh(&["rm", ballast.to_str().unwrap()]);
    let before = spool.entries("work");
    assert_eq!(c.cmd("MAIL FROM:<alice@example.org>"), d.mail_ok);
    let back = s.events.expect(d, &[4102]);
    assert_eq!(back[0]["level"], "Information", "{}", back[0]);
    c.rcpt_and_data(d);
    let id = spool.new_work_file(&before);
    assert_eq!(c.message("after the ballast"), (d.queued)(&id));
    spool.assert_in(&id);
    ok(&format!(
        "rm ballast -> the same session goes on (event 4102): 250 queued as {id}"
    ));

    // A stop while faulted still succeeds; the idle session is told so.
    s.volume.fill();
    served.sigterm();
    assert_eq!(
        c.reply(),
        "421 4.3.2 EXCH01 Service not available, closing transmission channel"
    );
    assert!(c.closed(), "closed by the stop");
    let (status, stderr) = served.exit();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(stderr, "");
    s.events.expect(d, &[1001]);
    ok("fallocate again, SIGTERM -> open session gets 421 4.3.2; exit 0, nothing on stderr");

    sh(&["rm", ballast.to_str().unwrap()]);
    let served = Served::start(&spool.root, d.profile, &s.log);
    s.events.expect(d, &[1000]);
    let id = spool.deliver(served.addr, d, "after the restart");
    let (status, stderr) = served.stop();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(stderr, "");
    s.events.expect(d, &[1001]);
    ok(&format!(
        "rm ballast, restart -> 250 queued as {id}; SIGTERM -> exit 0"
    ));
}
