//! [`ProcessTarget`]: a connector run as a program, described by a target file.
//!
//! Each start spawns the command in a process group of its own, on a free
//! loopback port, with `PR_SET_PDEATHSIG` (SIGKILL), so the process dies with
//! the harness even when the harness is killed; a drop (or a panic unwinding
//! through the owner) kills the whole group. Readiness, stop, crash, events and
//! redactions are as the target file says ([`super::file`]).
//!
//! A process has no `settled()`: [`settle`](Target::settle) waits until it has
//! been quiet (no new event, and no filesystem operation when an
//! [`activity`](ProcessTarget::set_activity) probe is given, e.g. by a FUSE
//! volume) for the file's `settle.quiet` window. That costs the window on
//! every step, and is a bet, not a proof: a process that works silently for
//! longer than the window is taken for done.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that spawned the process ends,
//! not the harness process: start targets from a tokio runtime's worker
//! threads (which live as long as the runtime), not from `spawn_blocking`,
//! whose idle threads are reaped.

use super::event::Event;
use super::file::{Loaded, Placeholders, TargetFile};
use super::program;
use super::redact::Redactor;
use super::source::EventReader;
use super::spool::SpoolLayout;
use super::{Exit, Settle, StartError, Stopped, Target};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Child;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Most stderr lines kept per start (a runaway process must not fill memory).
const MAX_STDERR_LINES: usize = 10_000;

/// How often a wait on a condition the harness cannot be told about (a quiet
/// window, a port, a process group's end) looks again.
const TICK: Duration = Duration::from_millis(2);

/// A count of filesystem operations the harness can see (a FUSE volume's op
/// log); `settle` waits until it stops moving too.
pub type Activity = Box<dyn Fn() -> u64 + Send + Sync>;

/// A target file's process, started and stopped as the runner says.
pub struct ProcessTarget {
    name: String,
    file: TargetFile,
    dir: PathBuf,
    root: PathBuf,
    run: PathBuf,
    events_path: PathBuf,
    program: Option<PathBuf>,
    redactor: Redactor,
    reader: Option<EventReader>,
    /// Events read (while settling or stopping) and not handed out yet.
    pending: VecDeque<Event>,
    running: Option<Running>,
    activity: Option<Activity>,
    ready_after: Option<Duration>,
    /// Scenario settings to pass, by name, with their values.
    settings: Vec<(&'static str, String)>,
}

struct Running {
    child: Child,
    pid: i32,
    addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
    stderr_task: JoinHandle<()>,
    stdout_task: JoinHandle<()>,
}

impl ProcessTarget {
    /// A stopped target of `loaded`, its spool on `root`, its own files
    /// (`{run}`, and `{events}` = `{run}/events`) in `run`, which must not be
    /// under `root` (created if missing).
    pub fn new(loaded: &Loaded, root: &Path, run: &Path) -> Result<ProcessTarget, String> {
        let redactor = Redactor::new(&loaded.file.redactions)
            .map_err(|e| format!("target `{}`: a redaction: {e}", loaded.name))?;
        std::fs::create_dir_all(run)
            .map_err(|e| format!("cannot create the run directory {}: {e}", run.display()))?;
        // The event log must not be on the volume a fault fills or removes.
        let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        if canonical(run).starts_with(canonical(root)) {
            return Err(format!(
                "the run directory {} is inside the spool root {}: its event log would share the faults",
                run.display(),
                root.display()
            ));
        }
        Ok(ProcessTarget {
            name: loaded.name.clone(),
            file: loaded.file.clone(),
            dir: loaded.dir.clone(),
            root: root.to_path_buf(),
            run: run.to_path_buf(),
            events_path: run.join("events"),
            program: None,
            redactor,
            reader: None,
            pending: VecDeque::new(),
            running: None,
            activity: None,
            ready_after: None,
            settings: Vec::new(),
        })
    }

    /// Passes a scenario's profile and connector settings to every later
    /// start, as the target file's `settings` say; an error names the first
    /// one it gives no arguments for. A `None` profile leaves the target's own
    /// default (no argument).
    pub fn configure(
        &mut self,
        profile: Option<&str>,
        connector: &crate::scenario::ConnectorSpec,
    ) -> Result<(), String> {
        let mut settings: Vec<(&'static str, String)> = Vec::new();
        if let Some(p) = profile {
            settings.push(("profile", p.to_string()));
        }
        let c = connector;
        if let Some(h) = &c.hostname {
            settings.push(("hostname", h.clone()));
        }
        if let Some(s) = c.low_water_mark {
            settings.push(("low_water_mark", s.bytes().to_string()));
        }
        if let Some(s) = c.max_message_size {
            settings.push(("max_message_size", s.bytes().to_string()));
        }
        if let Some(n) = c.max_recipients {
            settings.push(("max_recipients", n.to_string()));
        }
        if let Some(d) = c.command_timeout {
            settings.push(("command_timeout", format!("{}ms", d.get().as_millis())));
        }
        if let Some(m) = &c.mutant {
            settings.push(("mutant", m.clone()));
        }
        let check = self.placeholders(0);
        for (name, value) in &settings {
            self.file
                .settings
                .args(name, value, &check)
                .map_err(|e| format!("target `{}`: {e}", self.name))?;
        }
        self.settings = settings;
        Ok(())
    }

    /// Makes [`settle`](Target::settle) also wait until `count` stops moving.
    pub fn set_activity(&mut self, count: Activity) {
        self.activity = Some(count);
    }

    /// The process group of the running process (its pid), if any.
    pub fn process_group(&self) -> Option<i32> {
        self.running.as_ref().map(|r| r.pid)
    }

    /// How long the last start took, from spawning to ready.
    pub fn ready_after(&self) -> Option<Duration> {
        self.ready_after
    }

    /// The `{events}` file.
    pub fn events_path(&self) -> &Path {
        &self.events_path
    }

    fn placeholders(&self, port: u16) -> Placeholders {
        Placeholders {
            root: self.root.clone(),
            port,
            events: self.events_path.clone(),
            run: self.run.clone(),
        }
    }

    /// A free port on the listening address's host: bound, read, released.
    fn free_port(&self) -> Result<u16, String> {
        let host = self.placeholders(1).expand(&self.file.listen.value);
        let addr: SocketAddr = host
            .parse()
            .map_err(|_| format!("`listen` is not an address: `{host}`"))?;
        let probe = std::net::TcpListener::bind((addr.ip(), 0))
            .map_err(|e| format!("cannot find a free port on {}: {e}", addr.ip()))?;
        probe
            .local_addr()
            .map(|a| a.port())
            .map_err(|e| format!("cannot find a free port on {}: {e}", addr.ip()))
    }

    fn start_error(&self, message: String, stderr: Vec<String>, exit: Option<Exit>) -> StartError {
        StartError {
            message: format!("target `{}`: {message}", self.name),
            stderr,
            exit,
        }
    }

    fn read_events(&mut self) {
        if let Some(r) = self.reader.as_mut() {
            self.pending.extend(r.poll());
        }
    }
}

/// Reads `from` line by line into `lines` (redacted, capped), until it ends.
fn keep_lines(
    from: impl AsyncRead + Unpin + Send + 'static,
    lines: Arc<Mutex<Vec<String>>>,
    redactor: Redactor,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut reader = BufReader::new(from).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            let mut kept = lines.lock().unwrap_or_else(|e| e.into_inner());
            if kept.len() < MAX_STDERR_LINES {
                kept.push(redactor.apply(&line));
            }
        }
    })
}

/// Reads stdout to its end, telling `ready` at the first line `pattern` matches.
fn watch_stdout(
    from: impl AsyncRead + Unpin + Send + 'static,
    pattern: Option<regex::Regex>,
    ready: tokio::sync::oneshot::Sender<()>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ready = Some(ready);
        let mut reader = BufReader::new(from).lines();
        // Read on after readiness: a full pipe would block the process.
        while let Ok(Some(line)) = reader.next_line().await {
            if pattern.as_ref().is_some_and(|p| p.is_match(&line))
                && let Some(tx) = ready.take()
            {
                let _ = tx.send(());
            }
        }
    })
}

/// Sends `signal` to the process group `pgid`; false if no process is in it.
fn kill_group(pgid: i32, signal: i32) -> bool {
    // 0 would be the harness's own group, and -(-1) every process it may signal.
    if pgid <= 1 {
        return false;
    }
    // SAFETY: kill(2) with a negative pid addresses a process group; no memory involved.
    unsafe { libc::kill(-pgid, signal) == 0 }
}

/// Whether a process of the group `pgid` still runs. A zombie does not count:
/// a child orphaned by the kill is reaped by whoever adopted it, when it gets to it.
fn group_alive(pgid: i32) -> bool {
    if !kill_group(pgid, 0) {
        return false;
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return true;
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .any(|stat| {
            // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
            let fields: Vec<&str> = stat
                .rsplit_once(") ")
                .map_or(vec![], |(_, rest)| rest.split(' ').collect());
            fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
        })
}

/// Waits (bounded) until no process of the group `pgid` runs, killing
/// what is left of it.
async fn group_gone(pgid: i32, within: Duration) -> bool {
    let end = Instant::now() + within;
    loop {
        if !group_alive(pgid) {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        kill_group(pgid, libc::SIGKILL);
        tokio::time::sleep(TICK).await;
    }
}

/// Waits for the reader tasks to reach the end of their pipes, for at most
/// `within` (a surviving grandchild could hold a pipe open).
async fn drained(running: &mut Running, within: Duration) {
    let _ = tokio::time::timeout(within, &mut running.stderr_task).await;
    running.stdout_task.abort();
}

#[async_trait::async_trait]
impl Target for ProcessTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn spool(&self) -> &SpoolLayout {
        &self.file.spool
    }

    async fn start(&mut self) -> Result<SocketAddr, StartError> {
        if self.running.is_some() {
            return Err(self.start_error("it is already running".into(), vec![], None));
        }
        let program = match &self.program {
            Some(p) => p.clone(),
            None => {
                let c = &self.file.command;
                let p = program::find(&c.program, c.cargo.as_ref(), &self.dir)
                    .map_err(|e| self.start_error(e, vec![], None))?;
                self.program = Some(p.clone());
                p
            }
        };
        let port = self
            .free_port()
            .map_err(|e| self.start_error(e, vec![], None))?;
        let values = self.placeholders(port);
        let listen = values.expand(&self.file.listen.value);
        let addr: SocketAddr = listen.parse().map_err(|_| {
            self.start_error(
                format!("`listen` is not an address: `{listen}`"),
                vec![],
                None,
            )
        })?;
        // Whatever the last process logged after the last read is its own.
        self.read_events();
        let events = PathBuf::from(values.expand(&self.file.events.path().value));
        self.reader = Some(
            EventReader::new(&self.file.events, events, self.redactor.clone())
                .map_err(|e| self.start_error(e, vec![], None))?,
        );

        for f in &self.file.files {
            let path = PathBuf::from(values.expand(&f.path.value));
            let written = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&path, values.expand(&f.text.value)));
            if let Err(e) = written {
                return Err(self.start_error(
                    format!("cannot write {}: {e}", path.display()),
                    vec![],
                    None,
                ));
            }
        }
        let mut args: Vec<String> = self
            .file
            .command
            .args
            .iter()
            .map(|a| values.expand(&a.value))
            .collect();
        for (name, value) in &self.settings {
            args.extend(
                self.file
                    .settings
                    .args(name, value, &values)
                    .map_err(|e| self.start_error(e, vec![], None))?,
            );
        }
        let mut command = tokio::process::Command::new(&program);
        command
            .args(args)
            .envs(
                self.file
                    .command
                    .env
                    .iter()
                    .map(|(k, v)| (k, values.expand(&v.value))),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: getpid before the fork; in the child only async-signal-safe
        // calls (prctl, getppid) run before exec.
        let parent = unsafe { libc::getpid() };
        unsafe {
            command.pre_exec(move || {
                // Dies with the harness, even by SIGKILL, which no Drop sees.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The harness died between the fork and the prctl. (No
                // allocation here: another thread may hold the allocator's lock.)
                if libc::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        // Checked at load; a file built in code may hold anything.
        let compile = |s: &Option<serde_saphyr::Spanned<String>>, what: &str| match s {
            Some(s) => regex::Regex::new(&s.value)
                .map(Some)
                .map_err(|e| self.start_error(format!("`{what}`: {e}"), vec![], None)),
            None => Ok(None),
        };
        let pattern = compile(&self.file.ready.stdout, "ready.stdout")?;
        let log_pattern = compile(&self.file.ready.log, "ready.log")?;
        let spawned_at = Instant::now();
        let mut child = command.spawn().map_err(|e| {
            self.start_error(
                format!("cannot run {}: {e}", program.display()),
                vec![],
                None,
            )
        })?;
        // Only a reaped child has no id; this one was just spawned.
        let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) else {
            return Err(self.start_error("the process has no id".into(), vec![], None));
        };
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_task = keep_lines(
            child.stderr.take().expect("stderr is piped"),
            stderr.clone(),
            self.redactor.clone(),
        );
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let by_port = pattern.is_none() && log_pattern.is_none();
        let stdout_task = watch_stdout(
            child.stdout.take().expect("stdout is piped"),
            pattern,
            ready_tx,
        );
        let mut running = Running {
            child,
            pid,
            addr,
            stderr,
            stderr_task,
            stdout_task,
        };
        let timeout = self.file.ready.timeout.get();
        let reader = self.reader.as_mut();
        let pending = &mut self.pending;
        let ready = async {
            if let (Some(re), Some(reader)) = (&log_pattern, reader) {
                loop {
                    let mut seen = false;
                    for (line, event) in reader.poll_lines() {
                        seen |= re.is_match(&line);
                        pending.push_back(event);
                    }
                    if seen {
                        break true;
                    }
                    tokio::time::sleep(TICK).await;
                }
            } else if by_port {
                while tokio::net::TcpStream::connect(addr).await.is_err() {
                    tokio::time::sleep(TICK).await;
                }
                true
            } else {
                // The sender dropped: stdout ended without the line.
                ready_rx.await.is_ok()
            }
        };
        let deadline = spawned_at + timeout;
        let mut outcome = tokio::select! {
            ready = ready => if ready { Ok(()) } else { Err(None) },
            status = running.child.wait() => Err(Some(status)),
            _ = tokio::time::sleep_until(deadline) => Err(None),
        };
        if matches!(outcome, Err(None)) && Instant::now() < deadline {
            // Stdout ended without the line: the process is exiting, most likely.
            if let Ok(status) = tokio::time::timeout_at(deadline, running.child.wait()).await {
                outcome = Err(Some(status));
            }
        }
        match outcome {
            Ok(()) => {
                self.ready_after = Some(spawned_at.elapsed());
                self.running = Some(running);
                self.read_events();
                Ok(addr)
            }
            Err(exited) => {
                let ended = exited.is_some();
                let status = match exited {
                    Some(status) => status.ok(),
                    None => {
                        kill_group(pid, libc::SIGKILL);
                        running.child.wait().await.ok()
                    }
                };
                group_gone(pid, timeout).await;
                drained(&mut running, timeout).await;
                let stderr =
                    std::mem::take(&mut *running.stderr.lock().unwrap_or_else(|e| e.into_inner()));
                self.read_events();
                let exit = status.map(Exit::from);
                let message = match (ended, exit) {
                    (true, Some(e)) => format!("the process ended ({e}) before it was ready"),
                    (true, None) => "the process ended before it was ready".to_string(),
                    (false, _) if log_pattern.is_some() => format!(
                        "no line of {} matched `{}` within {} ms; the process was killed",
                        self.reader
                            .as_ref()
                            .map_or_else(String::new, |r| r.path().display().to_string()),
                        self.file
                            .ready
                            .log
                            .as_ref()
                            .map_or("", |s| s.value.as_str()),
                        timeout.as_millis()
                    ),
                    (false, _) if by_port => format!(
                        "{addr} did not accept a connection within {} ms; the process was killed",
                        timeout.as_millis()
                    ),
                    (false, _) => format!(
                        "no stdout line matched `{}` within {} ms; the process was killed",
                        self.file
                            .ready
                            .stdout
                            .as_ref()
                            .map_or("", |s| s.value.as_str()),
                        timeout.as_millis()
                    ),
                };
                Err(self.start_error(message, stderr, exit))
            }
        }
    }

    async fn stop(&mut self) -> Option<Stopped> {
        let mut running = self.running.take()?;
        let before = running
            .stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len();
        let stop = self.file.stop.clone();
        let timeout = stop.timeout.get();
        if stop.group {
            kill_group(running.pid, stop.signal.number());
        } else {
            // SAFETY: kill(2) on the process's own pid; no memory involved.
            unsafe { libc::kill(running.pid, stop.signal.number()) };
        }
        let (exit, in_time) = match tokio::time::timeout(timeout, running.child.wait()).await {
            Ok(status) => (status.map(Exit::from).unwrap_or(Exit::Code(-1)), true),
            Err(_) => {
                kill_group(running.pid, libc::SIGKILL);
                let status = running.child.wait().await;
                (status.map(Exit::from).unwrap_or(Exit::Code(-1)), false)
            }
        };
        // A stop leaves nothing of the target running, children included.
        group_gone(running.pid, timeout).await;
        drained(&mut running, timeout).await;
        let mut errors: Vec<String> = running
            .stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .split_off(before);
        if !in_time {
            errors.push(format!(
                "the process did not exit within {} ms of {:?}; it was killed",
                timeout.as_millis(),
                stop.signal
            ));
        }
        self.read_events();
        let expected = in_time && matches!(exit, Exit::Code(c) if stop.statuses.contains(&c));
        Some(Stopped {
            exit,
            expected,
            errors,
        })
    }

    async fn crash(&mut self) -> bool {
        let Some(mut running) = self.running.take() else {
            return false;
        };
        kill_group(running.pid, self.file.crash.signal.number());
        let _ = running.child.wait().await;
        group_gone(running.pid, self.file.stop.timeout.get()).await;
        running.stdout_task.abort();
        running.stderr_task.abort();
        self.read_events();
        true
    }

    fn address(&self) -> Option<SocketAddr> {
        self.running.as_ref().map(|r| r.addr)
    }

    fn exited(&mut self) -> Option<Exit> {
        let running = self.running.as_mut()?;
        let status = running.child.try_wait().ok()??;
        let running = self.running.take()?;
        // Its children go with it, as after a crash.
        kill_group(running.pid, libc::SIGKILL);
        running.stdout_task.abort();
        running.stderr_task.abort();
        self.read_events();
        Some(Exit::from(status))
    }

    fn poll_events(&mut self) -> Vec<Event> {
        self.read_events();
        self.pending.drain(..).collect()
    }

    async fn settle(&mut self, budget: Duration) -> Settle {
        let quiet = self.file.settle.quiet.get();
        let start = Instant::now();
        let mut last = start;
        let mut ops = self.activity.as_ref().map(|a| a());
        loop {
            let before = self.pending.len();
            self.read_events();
            let now = Instant::now();
            if self.pending.len() != before {
                last = now;
            }
            if let Some(a) = &self.activity {
                let n = a();
                if Some(n) != ops {
                    ops = Some(n);
                    last = now;
                }
            }
            if now - last >= quiet {
                return Settle::Quiet;
            }
            if now - start >= budget {
                return Settle::Busy;
            }
            tokio::time::sleep(TICK.min(quiet)).await;
        }
    }

    fn redact(&self, text: &str) -> String {
        self.redactor.apply(text)
    }
}

impl Drop for ProcessTarget {
    fn drop(&mut self) {
        // Nothing of the target outlives its owner, on a panic too.
        if let Some(r) = &self.running {
            kill_group(r.pid, libc::SIGKILL);
        }
    }
}
