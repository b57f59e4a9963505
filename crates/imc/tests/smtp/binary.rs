//! `imc serve` as a process: its address line, SIGTERM as a service stop (exit 0,
//! or KB-4's lines and status 8), argument errors, and the event log file.

use crate::support::{GUARD, KB_421};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;

fn imc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_imc"))
}

/// A running `imc serve` and the address it printed.
struct Served {
    child: Child,
    addr: SocketAddr,
    stderr: mpsc::Receiver<String>,
}

impl Served {
    fn start(root: &Path, extra: &[&str]) -> Served {
        let mut child = imc()
            .arg("serve")
            .arg("--root")
            .arg(root)
            .args(["--listen", "127.0.0.1:0", "--low-water-mark", "0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn imc");
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
        let first = match rx.recv_timeout(GUARD) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("imc serve printed nothing within {GUARD:?}");
            }
        };
        let Some(addr) = first.trim_end().strip_prefix("listening on ") else {
            let _ = child.kill();
            let stderr = erx.recv_timeout(GUARD).unwrap_or_default();
            panic!("unexpected first line {first:?}; stderr: {stderr}");
        };
        Served {
            addr: addr.parse().expect("an address"),
            child,
            stderr: erx,
        }
    }

    /// SIGTERM (a service stop); the exit status and everything on stderr.
    fn terminate(mut self) -> (ExitStatus, String) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = wait(&mut self.child);
        let stderr = self.stderr.recv_timeout(GUARD).expect("stderr");
        (status, stderr)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for the child, killing it if it hangs past the guard.
fn wait(child: &mut Child) -> ExitStatus {
    let pid = child.id();
    let (tx, rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if rx.recv_timeout(GUARD).is_err() {
            // Still running: kill it so wait() returns and the test fails.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    });
    let status = child.wait().expect("wait");
    let _ = tx.send(());
    watchdog.join().unwrap();
    assert!(
        status.code().is_some(),
        "killed by the hang guard: {status:?}"
    );
    status
}

/// Runs `imc` with these arguments to its end (it must end by itself).
fn run(args: &[&str]) -> Output {
    let mut child = imc()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn imc");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let o = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let e = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = wait(&mut child);
    Output {
        status,
        stdout: o.join().unwrap(),
        stderr: e.join().unwrap(),
    }
}

/// A blocking SMTP client, enough for a transaction.
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

    fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            assert!(self.reader.read_line(&mut l).expect("read") > 0, "closed");
            let l = l.strip_suffix("\r\n").expect("CRLF").to_string();
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

    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).is_ok() && rest.is_empty()
    }
}

fn deliver(addr: SocketAddr) {
    let mut c = Smtp::connect(addr);
    assert_eq!(
        c.reply(),
        "220 imc.test Microsoft Exchange Internet Mail Connector ready"
    );
    assert_eq!(
        c.cmd("EHLO client.example"),
        "250-imc.test\n250-SIZE 10485760\n250 HELP"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<a@example.org>"),
        "250 OK - mail from accepted"
    );
    assert_eq!(
        c.cmd("RCPT TO:<b@example.net>"),
        "250 OK - recipient accepted"
    );
    assert_eq!(c.cmd("DATA"), "354 Send data.  End with CRLF.CRLF");
    assert_eq!(c.cmd("Subject: via imc serve\r\n\r\nhello\r\n."), "250 OK");
    assert_eq!(c.cmd("QUIT"), "221 imc.test closing connection");
    assert!(c.closed());
}

#[test]
fn serve_delivers_and_a_clean_sigterm_exits_0() {
    let root = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("events.jsonl");
    let served = Served::start(root.path(), &["--event-log", log.to_str().unwrap()]);
    deliver(served.addr);
    let in_files: Vec<String> = std::fs::read_dir(root.path().join("imcdata/in"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(in_files.len(), 1);
    // Real runs name messages by the clock: 16 hex digits.
    assert!(
        in_files[0].len() == 16 && in_files[0].chars().all(|c| c.is_ascii_hexdigit()),
        "{in_files:?}"
    );
    let (status, stderr) = served.terminate();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(
        stderr, "",
        "events went to the file, and a clean stop says nothing"
    );
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let ids: Vec<u64> = events.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1002, 1002, 1002, 1000, 1001]);
    assert!(events.iter().all(|e| e["source"] == "MSExchangeIMC"));
    assert_eq!(events[3]["level"], "Information");
    assert_eq!(events[3]["category"], "Service Control");
}

#[test]
fn sigterm_after_in_was_removed_prints_kb4_and_exits_8() {
    let root = tempfile::tempdir().unwrap();
    let served = Served::start(root.path(), &["--hostname", "mx.example"]);
    std::fs::remove_dir(root.path().join("imcdata/in")).unwrap();
    // KB-2 on the way: a new call is refused.
    let mut c = Smtp::connect(served.addr);
    assert_eq!(c.reply(), KB_421);
    assert!(c.closed());
    let (status, stderr) = served.terminate();
    assert_eq!(status.code(), Some(8), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    // Events (JSON lines) go to stderr by default; the stop's lines come last.
    assert_eq!(
        lines[lines.len() - 2..],
        [
            "Could not stop the Microsoft Exchange Internet Mail Connector on \\\\mx.example",
            "0008: Not enough storage space is available.",
        ]
    );
    assert!(lines[..lines.len() - 2].iter().all(|l| l.starts_with('{')));
    assert!(stderr.contains(r#""id":1004"#), "{stderr}");
}

#[test]
fn a_bad_size_is_refused_clearly() {
    let root = tempfile::tempdir().unwrap();
    let o = run(&[
        "serve",
        "--root",
        root.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--low-water-mark",
        "10parsecs",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--low-water-mark"), "{stderr}");
    assert!(stderr.contains("unknown size unit `parsecs`"), "{stderr}");
    assert!(o.stdout.is_empty());
    // Nothing was created.
    assert!(!root.path().join("imcdata").exists());
}

#[test]
fn an_unknown_profile_is_refused_with_the_known_ones() {
    let root = tempfile::tempdir().unwrap();
    let o = run(&[
        "serve",
        "--root",
        root.path().to_str().unwrap(),
        "--profile",
        "exchange-5.5",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    let known = stderr
        .split("unknown profile `exchange-5.5`; known profiles: ")
        .nth(1)
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(known.starts_with("exchange-4.0"), "{stderr}");
}

#[test]
fn other_bad_arguments_fail() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    for args in [
        &["serve"][..],
        &["serve", "--root", r, "--command-timeout", "fast"],
        &["serve", "--root", r, "--listen", "localhost"],
        &["serve", "--root", r, "--max-message-size", "99999999999GiB"],
        &["deliver", "--root", r],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("error:"),
            "{args:?}"
        );
    }
}

#[test]
fn an_event_log_inside_the_root_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let log = root.path().join("events.jsonl");
    let o = run(&[
        "serve",
        "--root",
        root.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--event-log",
        log.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("imc: event log "), "{stderr}");
    assert!(stderr.contains("is inside the spool root"), "{stderr}");
    assert!(o.stdout.is_empty(), "it must not listen");
    assert!(!log.exists());
}

#[test]
fn a_busy_port_is_reported() {
    let root = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = run(&[
        "serve",
        "--root",
        root.path().to_str().unwrap(),
        "--listen",
        &addr,
        "--low-water-mark",
        "0",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("imc: cannot listen on {addr}")),
        "{stderr}"
    );
}

#[test]
fn a_bad_hostname_is_refused_at_start_up() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    for (name, why) in [
        ("a\r\nb", "byte 0x0D is not printable ASCII"),
        ("mx example", "byte 0x20"),
        ("-mx.example", "not a domain name"),
    ] {
        let o = run(&["serve", "--root", r, &format!("--hostname={name}")]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name:?}: {stderr}");
        assert!(stderr.contains("--hostname"), "{stderr}");
        assert!(stderr.contains(why), "{name:?}: {stderr}");
        assert!(o.stdout.is_empty(), "it must not listen");
    }
    assert!(!root.path().join("imcdata").exists());
}

/// A free loopback port, for a server whose `listening on` line cannot be read.
fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[test]
fn a_full_stdout_does_not_stop_the_connector() {
    let root = tempfile::tempdir().unwrap();
    let addr = free_port();
    let mut child = imc()
        .args(["serve", "--root", root.path().to_str().unwrap()])
        .args(["--listen", &addr.to_string(), "--low-water-mark", "0"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn imc");
    // Events go to stderr: the 1000 (started) comes right before the
    // `listening on` line that cannot be written.
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if err.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            if line.contains(r#""id":1000"#) {
                let _ = tx.send(());
            }
            all.push_str(&line);
        }
        let _ = tx.send(());
        all
    });
    rx.recv_timeout(GUARD).expect("started");
    deliver(addr);
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = wait(&mut child);
    assert_eq!(status.code(), Some(0), "no panic (101) on a full stdout");
}

#[test]
fn a_full_stderr_does_not_stop_the_connector_nor_its_stop() {
    let root = tempfile::tempdir().unwrap();
    let mut child = imc()
        .args(["serve", "--root", root.path().to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--low-water-mark", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // Events (by default) and the KB-4 stop lines all go to a full stderr.
        .stderr(std::fs::File::create("/dev/full").unwrap())
        .spawn()
        .expect("spawn imc");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut first = String::new();
        let _ = out.read_line(&mut first);
        let _ = tx.send(first);
    });
    let first = rx.recv_timeout(GUARD).expect("a first line");
    let addr: SocketAddr = first
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{first:?}"))
        .parse()
        .unwrap();
    deliver(addr);
    std::fs::remove_dir_all(root.path().join("imcdata/in")).unwrap();
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = wait(&mut child);
    assert_eq!(status.code(), Some(8), "KB-4's status, no panic (101)");
}
