//! The process target against the real `imc serve` binary, through
//! `targets/imc-serve.yaml`: start, SMTP over a real socket, events, stop,
//! restart, crash, readiness failures, redactions, nothing left running.

use harness::client::{ClientSession, ReadOutcome, Reply};
use harness::target::file::{self, Loaded};
use harness::target::process::ProcessTarget;
use harness::target::{Event, Exit, Settle, Target};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A generous bound: every wait below ends as soon as its condition holds.
const BUDGET: Duration = Duration::from_secs(20);

fn imc_serve() -> Loaded {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../targets/imc-serve.yaml");
    file::load(&path).unwrap()
}

/// A sandbox-like root and a run directory outside it.
struct Dirs {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    run: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let run = tmp.path().join("run");
    std::fs::create_dir_all(&root).unwrap();
    Dirs {
        root,
        run,
        _tmp: tmp,
    }
}

fn target(loaded: &Loaded, d: &Dirs) -> ProcessTarget {
    ProcessTarget::new(loaded, &d.root, &d.run).unwrap()
}

/// True while some process is in the group.
fn group_alive(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(-pgid, 0) == 0 }
}

fn ids(events: &[Event]) -> Vec<u32> {
    events.iter().filter_map(|e| e.id).collect()
}

async fn reply(s: &mut ClientSession) -> Reply {
    match s.read_reply(BUDGET).await {
        ReadOutcome::Reply(r) => r,
        other => panic!("expected a reply, got {other:?}"),
    }
}

async fn command(s: &mut ClientSession, line: &str) -> Reply {
    s.send(format!("{line}\r\n").as_bytes()).await.unwrap();
    reply(s).await
}

/// One whole message; returns the reply to the dot.
async fn send_message(t: &ProcessTarget, body: &str) -> Reply {
    let mut s = ClientSession::connect(t.address().unwrap(), BUDGET)
        .await
        .unwrap();
    assert_eq!(reply(&mut s).await.code, 220);
    assert_eq!(command(&mut s, "EHLO client.test").await.code, 250);
    assert_eq!(
        command(&mut s, "MAIL FROM:<alice@example.org>").await.code,
        250
    );
    assert_eq!(command(&mut s, "RCPT TO:<bob@example.net>").await.code, 250);
    assert_eq!(command(&mut s, "DATA").await.code, 354);
    s.send(&harness::client::encode_data(body)).await.unwrap();
    s.send(b".\r\n").await.unwrap();
    let r = reply(&mut s).await;
    assert_eq!(command(&mut s, "QUIT").await.code, 221);
    r
}

#[tokio::test]
async fn start_talk_stop_start_crash() {
    let loaded = imc_serve();
    let d = dirs();
    let mut t = target(&loaded, &d);
    assert_eq!(t.name(), "imc-serve");

    let addr = t.start().await.unwrap();
    assert_eq!(t.address(), Some(addr));
    assert!(addr.ip().is_loopback());
    // Logged before `listening on`, so in at once: 1002 for each directory, then 1000.
    let events = t.poll_events();
    assert_eq!(ids(&events), [1002, 1002, 1002, 1000], "{events:?}");
    assert!(events[3].message.contains("has started"), "{events:?}");
    assert_eq!(events[3].source, "MSExchangeIMC");
    assert_eq!(events[0].level, "Warning");
    assert_eq!(events[0].category, "Service Control");
    assert!(t.events_path().starts_with(&d.run));

    let body = "Subject: through a real process\r\n\r\nHello.\r\n";
    let r = send_message(&t, body).await;
    assert_eq!(
        r.lines,
        ["250 OK"],
        "exchange-4.0, imc serve's default profile"
    );
    assert_eq!(t.settle(BUDGET).await, Settle::Quiet);
    // Accepted: in IN, read back as envelope and body.
    let layout = t.spool().clone();
    let files = harness::invariants::read_files(&d.root.join(&layout.accepted[0]));
    assert_eq!(files.len(), 1, "{files:?}");
    let stored = t.read_message(&files[0].1);
    assert_eq!(stored.sender.as_deref(), Some("alice@example.org"));
    assert_eq!(stored.recipients, ["bob@example.net"]);
    assert_eq!(stored.body, body.as_bytes());
    assert!(
        harness::invariants::read_files(&d.root.join(&layout.receiving[0])).is_empty(),
        "nothing left in work"
    );

    let stopped = t.stop().await.unwrap();
    assert_eq!(stopped.exit, Exit::Code(0));
    assert!(stopped.expected);
    assert!(stopped.errors.is_empty(), "{:?}", stopped.errors);
    assert_eq!(t.address(), None);
    assert_eq!(ids(&t.poll_events()), [1001]);
    assert!(t.stop().await.is_none(), "a second stop: not running");

    // Again: the directories exist now, so only 1000.
    t.start().await.unwrap();
    assert_eq!(ids(&t.poll_events()), [1000]);
    let pgid = t.process_group().unwrap();
    assert!(group_alive(pgid));
    assert!(t.crash().await);
    assert!(
        !group_alive(pgid),
        "the process group is gone after a crash"
    );
    assert!(t.poll_events().is_empty(), "a crash logs nothing");
    assert!(!t.crash().await, "not running any more");
    // The accepted message survives the crash, and a new start takes mail.
    t.start().await.unwrap();
    assert_eq!(ids(&t.poll_events()), [1000]);
    assert_eq!(
        send_message(&t, "Subject: after\r\n\r\nx\r\n").await.code,
        250
    );
    assert_eq!(t.stop().await.unwrap().exit, Exit::Code(0));
}

#[tokio::test]
async fn a_process_that_dies_by_itself_is_seen_to_have_exited() {
    let loaded = imc_serve();
    let d = dirs();
    let mut t = target(&loaded, &d);
    t.start().await.unwrap();
    assert_eq!(t.exited(), None);
    let pid = t.process_group().unwrap();
    // Killed from outside, as a bug or an operator would.
    // SAFETY: kill(2) on the target's own process.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert!(ended(pid));
    let end = tokio::time::Instant::now() + BUDGET;
    let exit = loop {
        if let Some(exit) = t.exited() {
            break exit;
        }
        assert!(tokio::time::Instant::now() < end, "the exit was never seen");
        tokio::task::yield_now().await;
    };
    assert_eq!(exit, Exit::Signal(libc::SIGKILL));
    assert_eq!(t.address(), None);
    assert!(t.stop().await.is_none(), "no longer running");
    t.start().await.unwrap();
    assert_eq!(t.stop().await.unwrap().exit, Exit::Code(0));
}

#[tokio::test]
async fn a_text_log_maps_through_its_regex_and_is_redacted() {
    let text = r#"
command:
  program: /bin/sh
  args:
    - -c
    - |
      log={run}/maillog
      echo "Dec  1 10:00:00 mx postfix/cleanup[$$]: warning: pid $$ on port $PORT" >> "$log"
      echo "not a log line" >> "$log"
      echo ready
      exec sleep 600
  env: { PORT: "{port}" }
ready: { stdout: '^ready$' }
stop: { signal: SIGTERM, statuses: [0] }
spool: { receiving: [incoming], accepted: [incoming, active, deferred], format: whole }
events:
  log:
    path: "{run}/maillog"
    pattern: '^\w{3} [ \d]\d \d\d:\d\d:\d\d \S+ (?P<source>[^\[]+)\[\d+\]: (?:(?P<level>warning|error|fatal): )?(?P<message>.*)$'
redactions:
  - { pattern: 'pid \d+', replace: 'pid <pid>' }
  - { pattern: 'port \d+', replace: 'port <port>' }
"#;
    let loaded = file::parse(text, Path::new("/postfix-like.yaml")).unwrap();
    let d = dirs();
    let mut t = target(&loaded, &d);
    t.start().await.unwrap();
    let events = t.poll_events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].source, "postfix/cleanup");
    assert_eq!(events[0].level, "warning");
    assert_eq!(events[0].message, "pid <pid> on port <port>");
    assert_eq!(events[0].id, None);
    assert_eq!(events[1].level, harness::target::UNKNOWN_LEVEL);
    assert_eq!(events[1].message, "not a log line");
    // `sleep` dies of the SIGTERM: not an expected status.
    let stopped = t.stop().await.unwrap();
    assert_eq!(stopped.exit, Exit::Signal(libc::SIGTERM));
    assert!(!stopped.expected);
    assert_eq!(t.spool().dirs(), ["incoming", "active", "deferred"]);
    assert_eq!(t.read_message(b"raw").body, b"raw");
}

#[test]
fn the_run_directory_must_be_outside_the_root() {
    let d = dirs();
    let e = ProcessTarget::new(&imc_serve(), &d.root, &d.root.join("run"))
        .err()
        .expect("refused");
    assert!(e.contains("is inside the spool root"), "{e}");
}

#[tokio::test]
async fn ready_when_the_port_accepts() {
    let mut loaded = imc_serve();
    loaded.file.ready.stdout = None;
    loaded.file.ready.port = true;
    let d = dirs();
    let mut t = target(&loaded, &d);
    let addr = t.start().await.unwrap();
    // The port accepts once bound, which may be before 1000 is logged: the
    // settle after a start (as the runner does after every step) sees it.
    assert_eq!(t.settle(BUDGET).await, Settle::Quiet);
    let events = t.poll_events();
    assert_eq!(ids(&events).last(), Some(&1000), "{events:?}");
    let mut s = ClientSession::connect(addr, BUDGET).await.unwrap();
    assert_eq!(reply(&mut s).await.code, 220);
    drop(s);
    assert_eq!(t.stop().await.unwrap().exit, Exit::Code(0));
}

#[tokio::test]
async fn a_stop_while_faulted_exits_8_with_the_kb4_lines() {
    let loaded = imc_serve();
    let d = dirs();
    let mut t = target(&loaded, &d);
    t.start().await.unwrap();
    std::fs::remove_dir(d.root.join("imcdata/in")).unwrap();
    let stopped = t.stop().await.unwrap();
    assert_eq!(stopped.exit, Exit::Code(8));
    assert!(stopped.expected, "8 is one of the file's statuses");
    assert_eq!(stopped.errors.len(), 2, "{:?}", stopped.errors);
    assert!(
        stopped.errors[0]
            .starts_with("Could not stop the Microsoft Exchange Internet Mail Connector"),
        "{:?}",
        stopped.errors
    );
    assert_eq!(
        stopped.errors[1],
        "0008: Not enough storage space is available."
    );
}

/// Waits (bounded by [`BUDGET`]) for `pid` to end, whoever its parent is: a
/// pidfd is readable once the process has exited. True if it did.
fn ended(pid: i32) -> bool {
    // SAFETY: plain syscalls on integers; the pollfd lives on this stack.
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        if fd < 0 {
            return std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        }
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SIGCHLD (tokio's reaper) interrupts the poll: poll again.
        let n = loop {
            let n = libc::poll(&mut p, 1, BUDGET.as_millis() as i32);
            if n >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                break n;
            }
        };
        libc::close(fd);
        n == 1
    }
}

fn child_pid(d: &Dirs) -> i32 {
    std::fs::read_to_string(d.run.join("child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn dropping_the_target_kills_its_whole_group() {
    let d = dirs();
    // The leader forks a child into its group, then says it is ready.
    let script = "sleep 600 & echo $! > {run}/child.pid; echo ready; wait";
    let mut t = target(&shell(script, "20s"), &d);
    t.start().await.unwrap();
    let leader = t.process_group().unwrap();
    let child = child_pid(&d);
    assert!(group_alive(leader));
    drop(t);
    assert!(ended(child), "the child {child} outlived its target");
    assert!(ended(leader), "the leader {leader} outlived its target");
}

#[tokio::test]
async fn imc_serve_dies_with_its_target() {
    let loaded = imc_serve();
    let d = dirs();
    let mut t = target(&loaded, &d);
    t.start().await.unwrap();
    let pid = t.process_group().unwrap();
    drop(t);
    assert!(ended(pid), "imc serve ({pid}) outlived its target");
}

/// A target file running `sh -c SCRIPT`, ready by the stdout line `ready`.
fn shell(script: &str, timeout: &str) -> Loaded {
    let text = format!(
        "command: {{ program: /bin/sh, args: ['-c', {script:?}] }}\n\
         ready: {{ stdout: '^ready$', timeout: {timeout} }}\n\
         spool: {{ receiving: [work], accepted: [in] }}\n\
         events: {{ json_lines: {{ path: '{{events}}' }} }}\n"
    );
    file::parse(&text, Path::new("/shell.yaml")).unwrap()
}

#[tokio::test]
async fn a_process_that_exits_before_it_is_ready_is_a_clear_error() {
    let d = dirs();
    let mut t = target(&shell("echo 'no spool here' >&2; exit 3", "10s"), &d);
    let e = t.start().await.unwrap_err();
    assert_eq!(e.exit, Some(Exit::Code(3)));
    assert_eq!(e.stderr, ["no spool here"]);
    let shown = e.to_string();
    assert!(
        shown.contains("ended (status 3) before it was ready"),
        "{shown}"
    );
    assert!(shown.contains("| no spool here"), "{shown}");
    assert_eq!(t.address(), None);
}

#[tokio::test]
async fn imc_serve_refusing_its_arguments_is_a_clear_error() {
    let mut loaded = imc_serve();
    // An event log inside the spool root: `imc serve` refuses it and exits 1.
    for a in &mut loaded.file.command.args {
        if a.value == "{events}" {
            a.value = "{root}/events".into();
        }
    }
    let d = dirs();
    let mut t = target(&loaded, &d);
    let e = t.start().await.unwrap_err();
    assert_eq!(e.exit, Some(Exit::Code(1)), "{e}");
    assert!(
        e.stderr
            .iter()
            .any(|l| l.contains("is inside the spool root")),
        "{e}"
    );
}

#[tokio::test]
async fn a_process_never_ready_is_killed_with_its_children() {
    // A child in the same group, which a kill of the leader alone would leave.
    let script = "sleep 600 & echo $! > {run}/child.pid; sleep 600";
    // The readiness timeout must outlast the shell's start for there to be a
    // child to check: a loaded machine gets a longer one (bounded).
    let mut ms = 300;
    loop {
        let d = dirs();
        let mut t = target(&shell(script, &format!("{ms}ms")), &d);
        let e = t.start().await.unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("no stdout line matched `^ready$` within {ms} ms")),
            "{e}"
        );
        assert_eq!(e.exit, Some(Exit::Signal(libc::SIGKILL)));
        // Killed after the shell forked and wrote the pid, or it tries again.
        let written = std::fs::read_to_string(d.run.join("child.pid")).unwrap_or_default();
        if let Ok(child) = written.trim().parse::<i32>() {
            assert!(ended(child), "the child {child} outlived the failed start");
            return;
        }
        ms *= 2;
        assert!(ms <= 20_000, "the shell never started its child");
    }
}

/// The events and the reply to a message of one whole run, with the sandbox
/// path written `<root>` as the runner writes it.
async fn one_run() -> (Vec<String>, String) {
    let loaded = imc_serve();
    let d = dirs();
    let mut t = target(&loaded, &d);
    // Hardened names the message in its 250; exchange-4.0's KB-4 stop lines
    // are in the other test.
    let connector = harness::scenario::ConnectorSpec {
        hostname: Some("mx.example.org".into()),
        ..Default::default()
    };
    t.configure(Some("hardened"), &connector).unwrap();
    t.start().await.unwrap();
    let r = send_message(&t, "Subject: s\r\n\r\nbody\r\n").await;
    t.settle(BUDGET).await;
    let raw = r.lines.join("\n");
    let mut lines = vec![t.redact(&raw)];
    // Remove IN, so the next start recreates it.
    std::fs::remove_dir_all(d.root.join("imcdata/in")).unwrap();
    let stopped = t.stop().await.unwrap();
    lines.push(format!("{} {:?}", stopped.exit, stopped.errors));
    t.start().await.unwrap();
    t.stop().await.unwrap();
    let root = d.root.display().to_string();
    let win32 = root.replace('/', "\\");
    for e in t.poll_events() {
        lines.push(
            e.to_string()
                .replace(&win32, "<root>")
                .replace(&root, "<root>"),
        );
    }
    (lines, raw)
}

#[tokio::test]
async fn redactions_make_two_runs_identical() {
    let (a, raw_a) = one_run().await;
    let (b, raw_b) = one_run().await;
    assert_ne!(
        raw_a, raw_b,
        "the ids differ from run to run before redaction"
    );
    assert_eq!(a, b);
    assert!(a[0].starts_with("250 2.0.0 OK queued as <id>"), "{a:?}");
    assert!(
        a.iter().any(|l| l.starts_with(
            "1002 Warning imc [Service Control] The directory <root>\\imcdata\\in was missing"
        )),
        "{a:?}"
    );
}

#[tokio::test]
async fn a_setting_the_file_does_not_map_is_refused() {
    let mut loaded = imc_serve();
    loaded.file.settings.low_water_mark = None;
    let d = dirs();
    let mut t = target(&loaded, &d);
    let connector = harness::scenario::ConnectorSpec {
        low_water_mark: Some(harness::scenario::Size(1 << 20)),
        ..Default::default()
    };
    let e = t.configure(None, &connector).unwrap_err();
    assert!(e.contains("cannot set `low_water_mark`"), "{e}");
}

#[tokio::test]
async fn a_mutant_goes_through_its_flag() {
    let loaded = imc_serve();
    let d = dirs();
    let mut t = target(&loaded, &d);
    let connector = harness::scenario::ConnectorSpec {
        mutant: Some("skip-fsync".into()),
        ..Default::default()
    };
    t.configure(None, &connector).unwrap();
    t.start().await.unwrap();
    // `imc serve` says so on stderr at start: not a stop error.
    let stopped = t.stop().await.unwrap();
    assert_eq!(stopped.exit, Exit::Code(0));
    assert!(stopped.errors.is_empty(), "{:?}", stopped.errors);
}

#[tokio::test]
async fn settle_waits_for_the_quiet_window() {
    let loaded = imc_serve();
    let quiet = loaded.file.settle.quiet.get();
    let d = dirs();
    let mut t = target(&loaded, &d);
    t.start().await.unwrap();
    let ready = t.ready_after().unwrap();
    assert!(ready < loaded.file.ready.timeout.get());
    let began = tokio::time::Instant::now();
    assert_eq!(t.settle(BUDGET).await, Settle::Quiet);
    let took = began.elapsed();
    assert!(
        took >= quiet,
        "settled after {took:?}, before the {quiet:?} window"
    );
    // A probe that never stops moving keeps it busy until the budget ends.
    let n = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let m = n.clone();
    t.set_activity(Box::new(move || {
        m.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }));
    assert_eq!(t.settle(quiet * 3).await, Settle::Busy);
    t.stop().await.unwrap();
}

/// The figures the README quotes: `cargo test -p harness --release --test
/// target_process figures -- --nocapture`.
#[tokio::test]
async fn figures() {
    let loaded = imc_serve();
    let d = dirs();
    let mut t = target(&loaded, &d);
    let (mut ready, mut stop, mut settle, mut message) = (vec![], vec![], vec![], vec![]);
    for _ in 0..10 {
        t.start().await.unwrap();
        ready.push(t.ready_after().unwrap());
        let began = tokio::time::Instant::now();
        assert_eq!(send_message(&t, "Subject: f\r\n\r\nx\r\n").await.code, 250);
        message.push(began.elapsed());
        let began = tokio::time::Instant::now();
        assert_eq!(t.settle(BUDGET).await, Settle::Quiet);
        settle.push(began.elapsed());
        let began = tokio::time::Instant::now();
        assert_eq!(t.stop().await.unwrap().exit, Exit::Code(0));
        stop.push(began.elapsed());
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    eprintln!(
        "imc-serve over 10 runs (medians): spawn to ready {:?}, one message (connect to 221) {:?}, \
         settle after it {:?} (quiet window {:?}), stop {:?}",
        median(&mut ready),
        median(&mut message),
        median(&mut settle),
        loaded.file.settle.quiet.get(),
        median(&mut stop)
    );
}

#[tokio::test]
async fn files_readiness_by_a_log_line_and_a_stop_sent_to_the_group() {
    // The leader survives SIGTERM (as `unshare --fork` does) and ends when its
    // child, which acts on the signal, has.
    let text = r#"
command:
  program: /bin/sh
  args:
    - -c
    - |
      cp "{run}/etc/conf" "{run}/seen"
      trap 'echo leader-saw-term >&2' TERM
      sh -c 'trap "exit 0" TERM; echo "ready on $0" >> "$1"; while :; do sleep 1 & wait $! 2>/dev/null; done' "{port}" "{run}/log" &
      child=$!
      while kill -0 "$child" 2>/dev/null; do wait "$child"; done
      exit 7
files:
  - path: "{run}/etc/conf"
    text: "port = {port}\nroot = {root}\n"
ready: { log: '^ready on \d+$' }
stop: { signal: SIGTERM, group: true, statuses: [7] }
spool: { receiving: [work], accepted: [in] }
events:
  log: { path: "{run}/log", pattern: '^(?P<message>.*)$', level: info }
"#;
    let loaded = file::parse(text, Path::new("/group.yaml")).unwrap();
    let d = dirs();
    let mut t = target(&loaded, &d);
    let addr = t.start().await.unwrap();
    // The file was written from its template before the start.
    let seen = std::fs::read_to_string(d.run.join("seen")).unwrap();
    assert_eq!(
        seen,
        format!("port = {}\nroot = {}\n", addr.port(), d.root.display())
    );
    // The line that made it ready is an event of the start.
    let events = t.poll_events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].message, format!("ready on {}", addr.port()));
    assert_eq!(events[0].level, "info");
    let stopped = t.stop().await.unwrap();
    assert_eq!(stopped.exit, Exit::Code(7), "{stopped:?}");
    assert!(stopped.expected, "{stopped:?}");
    // The leader saw the signal too, and lived on until its child ended.
    assert!(
        stopped.errors.iter().any(|l| l == "leader-saw-term"),
        "{stopped:?}"
    );
    // Written afresh at every start.
    std::fs::write(d.run.join("etc/conf"), "changed").unwrap();
    let addr = t.start().await.unwrap();
    let seen = std::fs::read_to_string(d.run.join("seen")).unwrap();
    assert!(
        seen.starts_with(&format!("port = {}\n", addr.port())),
        "{seen}"
    );
    assert!(t.stop().await.unwrap().expected);
}

#[tokio::test]
async fn readiness_by_a_log_line_that_never_comes_is_a_clear_error() {
    let text = r#"
command: { program: /bin/sh, args: [-c, 'echo "not it" >> "{run}/log"; exec sleep 600'] }
ready: { log: '^ready$', timeout: 300ms }
spool: { receiving: [work], accepted: [in] }
events: { log: { path: "{run}/log", pattern: '^(?P<message>.*)$' } }
"#;
    let loaded = file::parse(text, Path::new("/never.yaml")).unwrap();
    let d = dirs();
    let mut t = target(&loaded, &d);
    let e = t.start().await.unwrap_err();
    let shown = e.to_string();
    assert!(
        shown.contains("matched `^ready$` within 300 ms; the process was killed"),
        "{shown}"
    );
    assert!(
        shown.contains(&d.run.join("log").display().to_string()),
        "{shown}"
    );
    assert_eq!(e.exit, Some(Exit::Signal(libc::SIGKILL)));
    // What it logged is still an event.
    assert_eq!(t.poll_events().len(), 1);
}
