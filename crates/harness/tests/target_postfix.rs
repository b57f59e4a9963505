//! A real Postfix through `targets/postfix.yaml` and the `Target` trait: start,
//! a message accepted and read back from its queue file, events from its log,
//! stop and crash with nothing left running (even when the harness is killed),
//! and what ORACLES.md section 3 observed: `452 4.3.1` at MAIL FROM on low
//! space with its warning, `451 4.3.0` when the disk fills during DATA, a
//! missing queue directory recreated at start.
//!
//! Runs under libtest-mimic (`harness = false`): the tmpfs sandboxes need the
//! private mount namespace, entered while the process is single-threaded.
//! Without Postfix (`apt-get install postfix`: `.ci/run` does it), or not as
//! root (its master drops privileges), every test is reported as ignored with
//! the reason; without tmpfs, those that need a real full disk are.

use harness::client::{ClientSession, ReadOutcome, Reply};
use harness::target::file::{self, Loaded};
use harness::target::process::ProcessTarget;
use harness::target::{Event, Exit, Settle, Target};
use libtest_mimic::{Arguments, Completion, Failed, Trial};
use sandbox::{Backend, Fault, Sandbox, SandboxConfig};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A generous bound: every wait below ends as soon as its condition holds.
const BUDGET: Duration = Duration::from_secs(60);

/// Set in the child of `a_killed_harness_leaves_no_postfix`: the run directory.
const CHILD_ENV: &str = "IMC_HARNESS_POSTFIX_CHILD";

fn main() {
    if let Ok(run) = std::env::var(CHILD_ENV) {
        child_harness(Path::new(&run));
    }
    let namespace = sandbox::enter_private_mount_namespace();
    let _ = sandbox::remove_stale_sandboxes(None);
    let postfix = postfix_available();
    let tmpfs = namespace.clone().and_then(|()| sandbox::tmpfs_available());
    let fuse = namespace.and_then(|()| sandbox::fuse_available());
    let args = Arguments::from_args();
    type Test = fn() -> Result<(), Failed>;
    // Each test, and the backend it needs beyond a plain directory.
    let tests: &[(&str, Option<Backend>, Test)] = &[
        ("start_message_events_stop", None, start_message_events_stop),
        ("crash_leaves_no_process", None, crash_leaves_no_process),
        (
            "a_killed_harness_leaves_no_postfix",
            None,
            a_killed_harness_leaves_no_postfix,
        ),
        (
            "a_missing_queue_directory_is_recreated_at_start",
            None,
            a_missing_queue_directory_is_recreated_at_start,
        ),
        (
            "a_reload_does_not_recreate_a_missing_queue_directory",
            None,
            a_reload_does_not_recreate_a_missing_queue_directory,
        ),
        (
            "low_space_gives_452_at_mail_from",
            Some(Backend::Tmpfs),
            low_space_gives_452_at_mail_from,
        ),
        (
            "a_full_disk_during_data_gives_451",
            Some(Backend::Tmpfs),
            a_full_disk_during_data_gives_451,
        ),
        (
            "incoming_renamed_away_hangs_rcpt_until_it_is_back",
            None,
            incoming_renamed_away_hangs_rcpt_until_it_is_back,
        ),
        (
            "two_runs_give_the_same_lines",
            None,
            two_runs_give_the_same_lines,
        ),
        (
            "eio_on_the_fsync_of_the_queue_file_gives_451",
            Some(Backend::Fuse),
            eio_on_the_fsync_of_the_queue_file_gives_451,
        ),
        (
            "a_crash_right_after_250_under_the_posix_strict_model",
            Some(Backend::Fuse),
            a_crash_right_after_250_under_the_posix_strict_model,
        ),
        ("figures", None, figures),
    ];
    let trials = tests
        .iter()
        .map(|&(name, needs, test)| {
            let (postfix, tmpfs, fuse) = (postfix.clone(), tmpfs.clone(), fuse.clone());
            Trial::ignorable_test(name, move || {
                if let Err(why) = postfix {
                    return Ok(Completion::ignored_with(why));
                }
                let backend = match needs {
                    Some(Backend::Tmpfs) => tmpfs.map_err(|why| format!("tmpfs: {why}")),
                    Some(Backend::Fuse) => fuse.map_err(|why| format!("fuse: {why}")),
                    _ => Ok(()),
                };
                if let Err(why) = backend {
                    return Ok(Completion::ignored_with(why));
                }
                test().map(|()| Completion::Completed)
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

/// Why Postfix cannot be run here, if it cannot.
fn postfix_available() -> Result<(), String> {
    if !Path::new("/usr/bin/unshare").exists() {
        return Err(
            "unshare (util-linux) is missing: the Postfix target runs in a PID namespace".into(),
        );
    }
    for tool in ["/usr/sbin/postfix", "/usr/sbin/postconf"] {
        if !Path::new(tool).exists() {
            return Err(format!(
                "Postfix is not installed ({tool} is missing): apt-get install postfix"
            ));
        }
    }
    // SAFETY: a plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        return Err("Postfix's master must start as root".into());
    }
    Ok(())
}

fn postfix() -> Loaded {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../targets/postfix.yaml");
    file::load(&path).expect("targets/postfix.yaml loads")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A sandbox (the queue) and a run directory outside it, with the target.
struct Run {
    sandbox: Sandbox,
    run: tempfile::TempDir,
    target: ProcessTarget,
}

fn run_on(backend: Backend, quota: u64) -> Run {
    let sandbox = Sandbox::with_backend(SandboxConfig { quota }, backend).expect("a sandbox");
    let run = tempfile::tempdir().expect("a run directory");
    let target = ProcessTarget::new(&postfix(), sandbox.root(), run.path()).expect("a target");
    Run {
        sandbox,
        run,
        target,
    }
}

impl Run {
    fn config_dir(&self) -> PathBuf {
        self.run.path().join("etc")
    }
}

/// The pids of live (not zombie) processes of the Postfix instance
/// configured in `config`: the master has `-c <config>` among its arguments,
/// every daemon it started `MAIL_CONFIG=<config>` in its environment.
fn instance_processes(config: &Path) -> Vec<i32> {
    let needle = format!("MAIL_CONFIG={}", config.display());
    let arg = config.display().to_string();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let read = |name: &str| std::fs::read(entry.path().join(name)).unwrap_or_default();
        let (environ, cmdline) = (read("environ"), read("cmdline"));
        let ours = environ.split(|&b| b == 0).any(|v| v == needle.as_bytes())
            || cmdline.split(|&b| b == 0).any(|v| v == arg.as_bytes());
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.starts_with('Z')))
            .unwrap_or(true);
        if ours && !zombie {
            out.push(pid);
        }
    }
    out
}

/// The live processes of process group `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let fields: Vec<&str> = stat
            .rsplit_once(") ")
            .map_or(vec![], |(_, r)| r.split(' ').collect());
        if fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string() {
            out.push(pid);
        }
    }
    out
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(what().into()) }
}

async fn reply(s: &mut ClientSession) -> Result<Reply, Failed> {
    match s.read_reply(BUDGET).await {
        ReadOutcome::Reply(r) => Ok(r),
        other => Err(format!("expected a reply, got {other:?}").into()),
    }
}

async fn command(s: &mut ClientSession, line: &str) -> Result<Reply, Failed> {
    s.send(format!("{line}\r\n").as_bytes()).await?;
    reply(s).await
}

/// Connects and says EHLO.
async fn session(t: &ProcessTarget) -> Result<ClientSession, Failed> {
    let addr = t.address().ok_or("not running")?;
    let mut s = ClientSession::connect(addr, BUDGET).await?;
    let banner = reply(&mut s).await?;
    check(
        banner.lines == ["220 mx.postfix.test ESMTP Postfix"],
        || format!("banner {banner:?}"),
    )?;
    let ehlo = command(&mut s, "EHLO client.test").await?;
    check(ehlo.code == 250, || format!("EHLO: {ehlo:?}"))?;
    Ok(s)
}

/// One whole message; the reply to the dot, redacted.
async fn send_message(t: &ProcessTarget, body: &str) -> Result<String, Failed> {
    let mut s = session(t).await?;
    let mail = command(&mut s, "MAIL FROM:<alice@example.org>").await?;
    check(mail.lines == ["250 2.1.0 Ok"], || format!("MAIL: {mail:?}"))?;
    let rcpt = command(&mut s, "RCPT TO:<bob@example.net>").await?;
    check(rcpt.lines == ["250 2.1.5 Ok"], || format!("RCPT: {rcpt:?}"))?;
    let data = command(&mut s, "DATA").await?;
    check(data.code == 354, || format!("DATA: {data:?}"))?;
    s.send(&harness::client::encode_data(body)).await?;
    s.send(b".\r\n").await?;
    let r = reply(&mut s).await?;
    let quit = command(&mut s, "QUIT").await?;
    check(quit.code == 221, || format!("QUIT: {quit:?}"))?;
    Ok(t.redact(&r.lines.join("\n")))
}

/// Waits until an event matching `want` has been logged (events read on the
/// way are kept in `seen`), bounded by [`BUDGET`].
async fn wait_event(
    t: &mut ProcessTarget,
    seen: &mut Vec<Event>,
    want: impl Fn(&Event) -> bool,
) -> Result<Event, Failed> {
    if let Some(e) = seen.iter().find(|e| want(e)) {
        return Ok(e.clone());
    }
    let end = tokio::time::Instant::now() + BUDGET;
    loop {
        let new = t.poll_events();
        let found = new.iter().find(|e| want(e)).cloned();
        seen.extend(new);
        if let Some(e) = found {
            return Ok(e);
        }
        if tokio::time::Instant::now() >= end {
            return Err(format!("the event never came; seen: {seen:#?}").into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn lines(events: &[Event]) -> Vec<String> {
    events.iter().map(|e| e.to_string()).collect()
}

fn start_message_events_stop() -> Result<(), Failed> {
    runtime().block_on(async {
        let mut r = run_on(Backend::Vfs, 64 << 20);
        let config = r.config_dir();
        let t = &mut r.target;
        let addr = t.start().await.map_err(|e| e.to_string())?;
        check(addr.ip().is_loopback(), || format!("{addr}"))?;
        // Ready at the master's `daemon started`, read in the start.
        let started = t.poll_events();
        check(
            lines(&started)
                == ["- info postfix/master [] daemon started -- version 3.7.11, configuration <config>"]
                || started.iter().any(|e| {
                    e.source == "postfix/master" && e.message.starts_with("daemon started -- version ")
                }),
            || format!("{started:#?}"),
        )?;
        let pgid = t.process_group().ok_or("no group")?;

        let body = "Subject: through a real Postfix\r\n\r\nHello.\r\n..leading dot\r\n";
        let answer = send_message(t, body).await?;
        check(answer == "250 2.0.0 Ok: queued as <qid>", || answer.clone())?;
        check(t.settle(BUDGET).await == Settle::Quiet, || "never quiet".into())?;
        let mut events = t.poll_events();
        wait_event(t, &mut events, |e| e.message.starts_with("disconnect from")).await?;
        let shown = lines(&events);
        for want in [
            "- info postfix/smtpd [] connect from localhost[127.0.0.1]",
            "- info postfix/smtpd [] <qid>: client=localhost[127.0.0.1]",
            "- info postfix/cleanup [] <qid>: message-id=<>",
            "- info postfix/smtpd [] disconnect from localhost[127.0.0.1] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5",
        ] {
            check(shown.iter().any(|l| l == want), || {
                format!("no `{want}` in {shown:#?}")
            })?;
        }
        // While running: the master and several daemons (in a process group
        // of their own, in the namespace whose init is in the harness's group).
        let instance = instance_processes(&config);
        check(instance.len() >= 3, || format!("instance: {instance:?}"))?;
        check(!group_members(pgid).is_empty(), || format!("group {pgid} empty"))?;

        // Accepted: held, read back as envelope and body.
        let layout = t.spool().clone();
        let held = harness::invariants::read_files(&r.sandbox.root().join("hold"));
        check(held.len() == 1, || format!("hold/: {held:?}"))?;
        let stored = t.read_message(&held[0].1);
        check(stored.sender.as_deref() == Some("alice@example.org"), || {
            format!("{stored:?}")
        })?;
        check(stored.recipients == ["bob@example.net"], || format!("{stored:?}"))?;
        check(stored.body == body.as_bytes(), || {
            format!("body {:?}", String::from_utf8_lossy(&stored.body))
        })?;
        let q = harness::target::postfix_queue::parse(&held[0].1);
        check(q.complete, || format!("{q:?}"))?;
        for dir in ["incoming", "active", "deferred"] {
            let files = harness::invariants::read_files(&r.sandbox.root().join(dir));
            check(files.is_empty(), || format!("{dir}/: {files:?}"))?;
        }
        check(layout.accepted.contains(&"hold".to_string()), || {
            format!("{layout:?}")
        })?;

        let began = tokio::time::Instant::now();
        let stopped = t.stop().await.ok_or("was running")?;
        let took = began.elapsed();
        check(stopped.exit == Exit::Code(143), || {
            format!("{stopped:?}")
        })?;
        check(stopped.expected, || format!("{stopped:?}"))?;
        check(stopped.errors.is_empty(), || format!("{stopped:?}"))?;
        check(t.address().is_none(), || "still an address".into())?;
        check(group_members(pgid).is_empty(), || {
            format!("group {pgid} left: {:?}", group_members(pgid))
        })?;
        check(instance_processes(&config).is_empty(), || {
            format!("left running: {:?}", instance_processes(&config))
        })?;
        eprintln!("postfix: ready after {:?}, stop {took:?}", t.ready_after());
        check(t.stop().await.is_none(), || "a second stop".into())?;
        Ok(())
    })
}

fn crash_leaves_no_process() -> Result<(), Failed> {
    runtime().block_on(async {
        let mut r = run_on(Backend::Vfs, 64 << 20);
        let config = r.config_dir();
        let t = &mut r.target;
        t.start().await.map_err(|e| e.to_string())?;
        let answer = send_message(t, "Subject: before the crash\r\n\r\nx\r\n").await?;
        check(answer.starts_with("250 2.0.0 Ok: queued as"), || {
            answer.clone()
        })?;
        // A session open in smtpd while it crashes.
        let mut open = session(t).await?;
        let pgid = t.process_group().ok_or("no group")?;
        let before = instance_processes(&config);
        check(before.len() >= 3, || format!("{before:?}"))?;
        check(t.crash().await, || "was running".into())?;
        check(group_members(pgid).is_empty(), || {
            format!(
                "group {pgid} left after the crash: {:?}",
                group_members(pgid)
            )
        })?;
        check(instance_processes(&config).is_empty(), || {
            format!("left running: {:?}", instance_processes(&config))
        })?;
        // The session's server is gone with it.
        let end = open.read_reply(BUDGET).await;
        check(matches!(end, ReadOutcome::Closed), || format!("{end:?}"))?;
        // The accepted message is still held; a new start takes mail again.
        let held = harness::invariants::read_files(&r.sandbox.root().join("hold"));
        check(held.len() == 1, || format!("{held:?}"))?;
        t.start().await.map_err(|e| e.to_string())?;
        let again = send_message(t, "Subject: after\r\n\r\ny\r\n").await?;
        check(again.starts_with("250 2.0.0 Ok: queued as"), || {
            again.clone()
        })?;
        let stopped = t.stop().await.ok_or("was running")?;
        check(stopped.expected, || format!("{stopped:?}"))?;
        Ok(())
    })
}

/// The child harness: starts Postfix, writes the master's pid into
/// `run/master.pid.harness`, then waits to be killed.
fn child_harness(run: &Path) -> ! {
    let rt = runtime();
    rt.block_on(async {
        let root = run.join("queue");
        std::fs::create_dir_all(&root).expect("queue");
        let mut t = ProcessTarget::new(&postfix(), &root, &run.join("run")).expect("target");
        t.start().await.expect("postfix starts");
        let pid = t.process_group().expect("running");
        std::fs::write(run.join("master.pid.harness"), pid.to_string()).expect("pid file");
        // Killed here by the test; the target must not be dropped first.
        std::future::pending::<()>().await;
    });
    unreachable!("pending never ends")
}

fn a_killed_harness_leaves_no_postfix() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    // The postfix user must reach the queue below it.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .env(CHILD_ENV, dir.path())
        .stdin(std::process::Stdio::null())
        .spawn()?;
    let pid_file = dir.path().join("master.pid.harness");
    // Wait for the child's Postfix to be ready (or the child to fail).
    let end = std::time::Instant::now() + BUDGET;
    let master: i32 = loop {
        if let Ok(text) = std::fs::read_to_string(&pid_file)
            && let Ok(pid) = text.trim().parse()
        {
            break pid;
        }
        if let Some(status) = child.try_wait()? {
            return Err(format!("the child harness ended first: {status}").into());
        }
        if std::time::Instant::now() >= end {
            let _ = child.kill();
            return Err("the child's Postfix never became ready".into());
        }
        std::thread::yield_now();
    };
    let config = dir.path().join("run/etc");
    check(!instance_processes(&config).is_empty(), || {
        "no instance".into()
    })?;
    // SIGKILL: no destructor, no signal handler runs in the harness.
    child.kill()?;
    child.wait()?;
    // PR_SET_PDEATHSIG kills the master; its daemons follow it.
    let end = std::time::Instant::now() + BUDGET;
    loop {
        let left = instance_processes(&config);
        if left.is_empty() && group_members(master).is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() >= end {
            return Err(format!("left running after the harness was killed: {left:?}").into());
        }
        std::thread::yield_now();
    }
}

fn a_missing_queue_directory_is_recreated_at_start() -> Result<(), Failed> {
    runtime().block_on(async {
        let mut r = run_on(Backend::Vfs, 64 << 20);
        let incoming = r.sandbox.root().join("incoming");
        let t = &mut r.target;
        t.start().await.map_err(|e| e.to_string())?;
        t.stop().await.ok_or("was running")?;
        std::fs::remove_dir_all(&incoming)?;
        std::fs::remove_dir_all(r.sandbox.root().join("hold"))?;
        // `postfix check` in the start (what `postfix start` runs first).
        t.start().await.map_err(|e| e.to_string())?;
        check(
            incoming.is_dir() && r.sandbox.root().join("hold").is_dir(),
            || "incoming/ and hold/ not recreated".into(),
        )?;
        let answer = send_message(t, "Subject: s\r\n\r\nb\r\n").await?;
        check(answer == "250 2.0.0 Ok: queued as <qid>", || answer.clone())?;
        t.stop().await.ok_or("was running")?;
        Ok(())
    })
}

/// `postfix reload` is `postsuper active` and a SIGHUP to the master (the
/// master's pid file holds its pid in the target's namespace, so the SIGHUP
/// is sent here, to the master found by its environment).
fn a_reload_does_not_recreate_a_missing_queue_directory() -> Result<(), Failed> {
    runtime().block_on(async {
        let mut r = run_on(Backend::Vfs, 64 << 20);
        let config = r.config_dir();
        let incoming = r.sandbox.root().join("incoming");
        let t = &mut r.target;
        t.start().await.map_err(|e| e.to_string())?;
        let mut events = t.poll_events();
        std::fs::remove_dir_all(&incoming)?;
        let master = instance_processes(&config)
            .into_iter()
            .find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == "master")
            })
            .ok_or("no master")?;
        // SAFETY: kill(2) on a pid of this test's own instance.
        check(unsafe { libc::kill(master, libc::SIGHUP) } == 0, || {
            "SIGHUP".into()
        })?;
        let reload = wait_event(t, &mut events, |e| e.message.starts_with("reload ")).await?;
        check(
            reload.message == "reload -- version 3.7.11, configuration <config>",
            || format!("{reload:?}"),
        )?;
        check(!incoming.exists(), || {
            "the reload recreated incoming/".into()
        })?;
        t.stop().await.ok_or("was running")?;
        // The next start does.
        t.start().await.map_err(|e| e.to_string())?;
        check(incoming.is_dir(), || {
            "the start did not recreate incoming/".into()
        })?;
        t.stop().await.ok_or("was running")?;
        Ok(())
    })
}

fn low_space_gives_452_at_mail_from() -> Result<(), Failed> {
    runtime().block_on(async {
        let mut r = run_on(Backend::Tmpfs, 32 << 20);
        let t = &mut r.target;
        t.start().await.map_err(|e| e.to_string())?;
        let mut events = t.poll_events();
        // Under 1.5 x message_size_limit (10240000): 15360000 bytes.
        r.sandbox.apply(&Fault::FillDisk { leave: 8 << 20 })?;
        let mut s = session(t).await?;
        let mail = command(&mut s, "MAIL FROM:<alice@example.org>").await?;
        check(
            mail.lines == ["452 4.3.1 Insufficient system storage"],
            || format!("MAIL: {mail:?}"),
        )?;
        let warning = wait_event(t, &mut events, |e| e.level == "warning").await?;
        // The free space statvfs gave smtpd: what the ballast left, less
        // what Postfix wrote since (its smtpd's pid file), in whole pages.
        let free: Option<u64> = warning
            .message
            .strip_prefix("not enough free space in mail queue: ")
            .and_then(|rest| rest.strip_suffix(" bytes < 1.5*message size limit"))
            .and_then(|n| n.parse().ok());
        check(
            warning.source == "postfix/smtpd"
                && free.is_some_and(|n| n <= 8 << 20 && n > (8 << 20) - (64 << 10)),
            || format!("{warning:?}"),
        )?;
        eprintln!("reply: {}\nevent: {warning}", mail.lines[0]);
        // Space again: the same session's next MAIL is taken.
        r.sandbox.apply(&Fault::FreeDisk)?;
        let mail = command(&mut s, "MAIL FROM:<alice@example.org>").await?;
        check(mail.lines == ["250 2.1.0 Ok"], || format!("{mail:?}"))?;
        drop(s);
        let stopped = t.stop().await.ok_or("was running")?;
        check(stopped.expected, || format!("{stopped:?}"))?;
        Ok(())
    })
}

fn a_full_disk_during_data_gives_451() -> Result<(), Failed> {
    runtime().block_on(async {
        let mut r = run_on(Backend::Tmpfs, 32 << 20);
        let t = &mut r.target;
        // Enough room at MAIL FROM: 1.5 x 1 MiB.
        let connector = harness::scenario::ConnectorSpec {
            max_message_size: Some(harness::scenario::Size(1 << 20)),
            ..Default::default()
        };
        t.configure(None, &connector)?;
        t.start().await.map_err(|e| e.to_string())?;
        let mut events = t.poll_events();
        let mut s = session(t).await?;
        command(&mut s, "MAIL FROM:<alice@example.org>").await?;
        command(&mut s, "RCPT TO:<bob@example.net>").await?;
        let data = command(&mut s, "DATA").await?;
        check(data.code == 354, || format!("{data:?}"))?;
        // The disk fills while the data streams: 64 KiB left, 512 KiB sent.
        r.sandbox.apply(&Fault::FillDisk { leave: 64 << 10 })?;
        let line = "x".repeat(998);
        let mut body = String::from("Subject: too big for the disk\r\n\r\n");
        while body.len() < 512 << 10 {
            body.push_str(&line);
            body.push_str("\r\n");
        }
        s.send(&harness::client::encode_data(&body)).await?;
        s.send(b".\r\n").await?;
        let dot = reply(&mut s).await?;
        check(
            dot.lines == ["451 4.3.0 Error: queue file write error"],
            || format!("dot: {dot:?}"),
        )?;
        let warning = wait_event(t, &mut events, |e| {
            e.level == "warning" && e.source == "postfix/cleanup"
        })
        .await?;
        check(
            warning.message == "<qid>: write queue file: No space left on device",
            || format!("{warning:?}"),
        )?;
        eprintln!("reply: {}\nevent: {warning}", dot.lines[0]);
        // Nothing left in the queue.
        for dir in ["incoming", "hold", "active", "deferred"] {
            let files = harness::invariants::read_files(&r.sandbox.root().join(dir));
            check(files.is_empty(), || {
                format!("{dir}/: {} files", files.len())
            })?;
        }
        drop(s);
        t.stop().await.ok_or("was running")?;
        Ok(())
    })
}

fn incoming_renamed_away_hangs_rcpt_until_it_is_back() -> Result<(), Failed> {
    runtime().block_on(async {
        let mut r = run_on(Backend::Vfs, 64 << 20);
        let t = &mut r.target;
        t.start().await.map_err(|e| e.to_string())?;
        let mut events = t.poll_events();
        let mut s = session(t).await?;
        let mail = command(&mut s, "MAIL FROM:<alice@example.org>").await?;
        check(mail.code == 250, || format!("{mail:?}"))?;
        r.sandbox.apply(&Fault::Rename {
            from: "incoming".into(),
            to: "incoming.away".into(),
        })?;
        // smtpd opens the queue file at the first valid RCPT: cleanup cannot
        // create it, logs, and tries again every 10 s; the RCPT gets no reply.
        s.send(b"RCPT TO:<bob@example.net>
").await?;
        let warning = wait_event(t, &mut events, |e| e.source == "postfix/cleanup").await?;
        check(
            warning.level == "warning"
                && warning.message
                    == "mail_queue_enter: create file incoming/<n>.<pid>: No such file or directory",
            || format!("{warning:?}; all: {:#?}", lines(&events)),
        )?;
        let early = s.read_reply(Duration::ZERO).await;
        check(matches!(early, ReadOutcome::Timeout), || {
            format!("a reply while incoming/ is away: {early:?}")
        })?;
        eprintln!("events while incoming/ is away:\n{}", lines(&events).join("\n"));
        // Back: the next try creates the file and the RCPT is answered.
        r.sandbox.apply(&Fault::Restore {
            path: "incoming".into(),
        })?;
        let rcpt = reply(&mut s).await?;
        check(rcpt.lines == ["250 2.1.5 Ok"], || format!("{rcpt:?}"))?;
        let data = command(&mut s, "DATA").await?;
        check(data.code == 354, || format!("{data:?}"))?;
        s.send(&harness::client::encode_data("Subject: late\r\n\r\nx\r\n")).await?;
        s.send(b".\r\n").await?;
        let dot = reply(&mut s).await?;
        check(
            t.redact(&dot.lines.join("\n")) == "250 2.0.0 Ok: queued as <qid>",
            || format!("{dot:?}"),
        )?;
        drop(s);
        let after = t.poll_events();
        eprintln!("then:\n{}", lines(&after).join("\n"));
        t.stop().await.ok_or("was running")?;
        Ok(())
    })
}

fn eio_on_the_fsync_of_the_queue_file_gives_451() -> Result<(), Failed> {
    runtime().block_on(async {
        let mut r = run_on(Backend::Fuse, 64 << 20);
        let t = &mut r.target;
        t.start().await.map_err(|e| e.to_string())?;
        let mut events = t.poll_events();
        // cleanup's first fsync of a queue file fails with EIO.
        r.sandbox.apply(&Fault::Errno(sandbox::ErrnoRule {
            op: imc::fs::OpKind::Sync,
            path: "incoming/*".into(),
            nth: 1,
            errno: sandbox::Errno::Eio,
            persistent: false,
            process: Some("cleanup".into()),
        }))?;
        let mut s = session(t).await?;
        command(&mut s, "MAIL FROM:<alice@example.org>").await?;
        command(&mut s, "RCPT TO:<bob@example.net>").await?;
        let data = command(&mut s, "DATA").await?;
        check(data.code == 354, || format!("{data:?}"))?;
        s.send(b"Subject: not synced\r\n\r\nx\r\n.\r\n").await?;
        let dot = reply(&mut s).await?;
        check(
            dot.lines == ["451 4.3.0 Error: queue file write error"],
            || format!("dot: {dot:?}"),
        )?;
        // The fsync was cleanup's, on the file it had opened in incoming/
        // (already renamed into hold/: the HOLD action moves it before the
        // fsync), and it failed.
        let syncs: Vec<String> = r
            .sandbox
            .ops()
            .iter()
            .filter(|op| op.op == imc::fs::OpKind::Sync)
            .map(|op| op.to_string())
            .collect();
        check(syncs.iter().any(|l| l.ends_with("EIO (injected)")), || {
            format!("{syncs:?}")
        })?;
        // Unlike a failed write, a failed fsync is not logged
        // (mail_stream_finish_file returns CLEANUP_STAT_WRITE silently).
        check(t.settle(BUDGET).await == Settle::Quiet, || {
            "never quiet".into()
        })?;
        events.extend(t.poll_events());
        check(!events.iter().any(|e| e.level == "warning"), || {
            format!("{:#?}", lines(&events))
        })?;
        eprintln!(
            "reply: {}\nevents:\n{}\nsyncs: {syncs:?}",
            dot.lines[0],
            lines(&events).join("\n")
        );
        for dir in ["incoming", "hold", "active", "deferred"] {
            let files = harness::invariants::read_files(&r.sandbox.root().join(dir));
            check(files.is_empty(), || {
                format!("{dir}/: {} files", files.len())
            })?;
        }
        // The rule struck once: the next message is taken.
        drop(s);
        let answer = send_message(t, "Subject: again\r\n\r\ny\r\n").await?;
        check(answer == "250 2.0.0 Ok: queued as <qid>", || answer.clone())?;
        t.stop().await.ok_or("was running")?;
        Ok(())
    })
}

/// Postfix fsyncs the queue file but never a directory (ORACLES.md section
/// 3): under the POSIX-strict crash model (a new entry is durable only once
/// its directory is fsynced) a power loss right after the 250 takes the
/// message's entries with it. What the model drops is printed.
fn a_crash_right_after_250_under_the_posix_strict_model() -> Result<(), Failed> {
    runtime().block_on(async {
        let mut r = run_on(Backend::Fuse, 64 << 20);
        let t = &mut r.target;
        t.start().await.map_err(|e| e.to_string())?;
        // The queue layout has long been on disk on a real system: make the
        // directories `postfix check` created durable (fsync of each
        // directory, through the mount, as any process would).
        let root = r.sandbox.root().to_path_buf();
        std::fs::File::open(&root)?.sync_all()?;
        for entry in std::fs::read_dir(&root)? {
            let path = entry?.path();
            if path.is_dir() {
                std::fs::File::open(&path)?.sync_all()?;
            }
        }
        let before = r.sandbox.op_count();
        let answer = send_message(t, "Subject: acknowledged\r\n\r\nkeep me\r\n").await?;
        check(answer == "250 2.0.0 Ok: queued as <qid>", || answer.clone())?;
        let held = harness::invariants::read_files(&r.sandbox.root().join("hold"));
        check(held.len() == 1, || format!("{held:?}"))?;
        let ops: Vec<String> = r.sandbox.ops()[before..]
            .iter()
            .filter(|op| {
                matches!(
                    op.op,
                    imc::fs::OpKind::Create
                        | imc::fs::OpKind::Rename
                        | imc::fs::OpKind::Sync
                        | imc::fs::OpKind::SyncDir
                ) && (op.path.starts_with("incoming") || op.path.starts_with("hold"))
            })
            .map(|op| op.to_string())
            .collect();
        check(t.crash().await, || "was running".into())?;
        let dropped = r.sandbox.crash();
        let after: Vec<String> = ["incoming", "hold", "active", "deferred"]
            .iter()
            .flat_map(|d| {
                harness::invariants::read_files(&r.sandbox.root().join(d))
                    .into_iter()
                    .map(move |(name, _)| format!("{d}/{name}"))
            })
            .collect();
        eprintln!(
            "the message's operations:\n  {}\ndropped by the crash:\n  {}\nqueue files after it: {after:?}",
            ops.join("\n  "),
            dropped.join("\n  ")
        );
        // No directory fsync: the acknowledged message is gone, the queue
        // directories stay.
        check(!ops.iter().any(|o| o.starts_with("sync_dir")), || format!("{ops:?}"))?;
        check(after.is_empty(), || format!("kept: {after:?}; dropped: {dropped:?}"))?;
        check(root.join("hold").is_dir() && root.join("incoming").is_dir(), || {
            format!("the layout went too: {dropped:?}")
        })?;
        Ok(())
    })
}

/// What one run shows a history: replies and events, redacted, the sandbox
/// path written `<root>`.
async fn one_run() -> Result<(Vec<String>, String), Failed> {
    let mut r = run_on(Backend::Vfs, 64 << 20);
    let root = r.sandbox.root().display().to_string();
    let t = &mut r.target;
    t.start().await.map_err(|e| e.to_string())?;
    let mut lines = lines(&t.poll_events());
    let mut s = session(t).await?;
    for c in [
        "MAIL FROM:<alice@example.org>",
        "RCPT TO:<bob@example.net>",
        "DATA",
    ] {
        lines.push(t.redact(&command(&mut s, c).await?.lines.join("\n")));
    }
    s.send(b"Subject: s\r\n\r\nbody\r\n.\r\n").await?;
    let raw = reply(&mut s).await?.lines.join("\n");
    lines.push(t.redact(&raw));
    lines.push(t.redact(&command(&mut s, "QUIT").await?.lines.join("\n")));
    let mut events = t.poll_events();
    wait_event(t, &mut events, |e| e.message.starts_with("disconnect from")).await?;
    lines.extend(self::lines(&events));
    let stopped = t.stop().await.ok_or("was running")?;
    lines.push(format!("{} {:?}", stopped.exit, stopped.errors));
    lines.extend(self::lines(&t.poll_events()));
    Ok((
        lines
            .into_iter()
            .map(|l| l.replace(&root, "<root>"))
            .collect(),
        raw,
    ))
}

fn two_runs_give_the_same_lines() -> Result<(), Failed> {
    runtime().block_on(async {
        let (a, raw_a) = one_run().await?;
        let (b, raw_b) = one_run().await?;
        check(raw_a != raw_b, || {
            format!("the queue ids differ before redaction: {raw_a}")
        })?;
        check(a == b, || format!("{a:#?}\n!=\n{b:#?}"))?;
        eprintln!("{}", a.join("\n"));
        Ok(())
    })
}

/// `cargo test -p harness --test target_postfix figures -- --nocapture`: start
/// (`postfix check` and the master up to `daemon started`) and stop times.
fn figures() -> Result<(), Failed> {
    runtime().block_on(async {
        let mut r = run_on(Backend::Vfs, 64 << 20);
        let t = &mut r.target;
        let (mut ready, mut stop, mut message) = (vec![], vec![], vec![]);
        for _ in 0..5 {
            t.start().await.map_err(|e| e.to_string())?;
            ready.push(t.ready_after().ok_or("no figure")?);
            let began = tokio::time::Instant::now();
            let answer = send_message(t, "Subject: f\r\n\r\nx\r\n").await?;
            check(answer.starts_with("250 "), || answer.clone())?;
            message.push(began.elapsed());
            let began = tokio::time::Instant::now();
            let stopped = t.stop().await.ok_or("was running")?;
            stop.push(began.elapsed());
            check(stopped.expected, || format!("{stopped:?}"))?;
        }
        let median = |v: &mut Vec<Duration>| {
            v.sort();
            v[v.len() / 2]
        };
        eprintln!(
            "postfix over 5 runs (medians): spawn to ready {:?} (min {:?}, max {:?}), \
             one message (connect to 221) {:?}, stop {:?} (max {:?})",
            median(&mut ready),
            ready[0],
            ready[ready.len() - 1],
            median(&mut message),
            median(&mut stop),
            stop[stop.len() - 1],
        );
        Ok(())
    })
}
