//! Service control: start, stop, crash, and the low-disk monitor (flush mode).

use crate::envelope::{GrammarError, HostName};
use crate::event::{Clock, Event, EventId, EventLog};
use crate::fs::Fs;
use crate::profile::Profile;
use crate::session::Session;
use crate::spool::{IdGenerator, Spool};
use crate::win32;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Connector settings. [`Config::new`] gives the defaults documented on each field.
#[derive(Clone, Debug)]
pub struct Config {
    /// The directory holding `imcdata` (the spool volume's mount point, typically).
    pub root: PathBuf,
    /// Where to listen. Default `127.0.0.1:0` (a free port).
    pub listen: SocketAddr,
    /// Host name in the greeting, replies and trace headers; also the server name of
    /// the KB-4 stop error. Default `imc.test`.
    pub hostname: String,
    /// Free space under which the connector is in flush mode (Q189587). Default 10 MiB.
    pub low_water_mark: u64,
    /// How often the low-disk monitor checks; zero disables the periodic check
    /// (connections still check). Default 15 s.
    pub disk_check_interval: Duration,
    /// Largest message accepted, in bytes of text after the dot-unstuffing. Default 10 MiB.
    pub max_message_size: u64,
    /// Most recipients per transaction. Default 100 (RFC 5321 4.5.3.1.8's minimum).
    pub max_recipients: usize,
    /// How long to wait for each command or data line. Default 300 s (RFC 5321 4.5.3.2).
    pub command_timeout: Duration,
    /// How long a stop waits for a session to get its last replies (the 421)
    /// to a client that does not read them, before closing the connection
    /// anyway. Default 5 s. Whatever such a session had not finished stays the
    /// client's (it got no 250).
    pub stop_grace: Duration,
    /// Event and trace-header times. Default the system clock.
    pub clock: Clock,
    /// A seeded defect (testing the harness only). Default none.
    pub mutant: Option<crate::Mutant>,
}

impl Config {
    /// Defaults for a spool under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Config {
            root: root.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            hostname: "imc.test".to_string(),
            low_water_mark: 10 << 20,
            disk_check_interval: Duration::from_secs(15),
            max_message_size: 10 << 20,
            max_recipients: 100,
            command_timeout: Duration::from_secs(300),
            stop_grace: Duration::from_secs(5),
            clock: Clock::System,
            mutant: None,
        }
    }
}

/// What sessions share.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) profile: Profile,
    pub(crate) spool: Spool,
    pub(crate) events: EventLog,
    pub(crate) ids: Arc<dyn IdGenerator>,
    flush_mode: AtomicBool,
    /// Sessions doing something other than waiting for their client's next bytes.
    busy: AtomicUsize,
    /// Woken whenever `busy` drops to zero.
    settled: tokio::sync::Notify,
}

/// A session's share of [`Shared::busy`]: busy from creation until it waits for
/// input, again once input arrives, and never after it is dropped (a crash's
/// abort included).
pub(crate) struct Activity {
    shared: Arc<Shared>,
    busy: bool,
}

impl Activity {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        shared.busy.fetch_add(1, Ordering::SeqCst);
        Activity { shared, busy: true }
    }

    /// The session now waits for its client.
    pub(crate) fn waiting(&mut self) {
        if std::mem::replace(&mut self.busy, false)
            && self.shared.busy.fetch_sub(1, Ordering::SeqCst) == 1
        {
            self.shared.settled.notify_waiters();
        }
    }

    /// The session has something to do.
    pub(crate) fn working(&mut self) {
        if !std::mem::replace(&mut self.busy, true) {
            self.shared.busy.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        self.waiting();
    }
}

impl Shared {
    pub(crate) fn log(&self, id: EventId, message: String) {
        let (level, category) = id.level_and_category();
        self.events.log(Event {
            time: self.config.clock.now().to_rfc3339(),
            id: id as u32,
            source: self.profile.event_source.to_string(),
            level,
            category: category.to_string(),
            message,
        });
    }

    /// Measures free space, enters or leaves flush mode (logging the change), and
    /// returns whether the connector is in flush mode. A failed measurement keeps
    /// the current mode.
    pub(crate) async fn check_disk(&self) -> bool {
        match self.spool.available_space().await {
            Ok(free) => self.note_free_space(free),
            Err(_) => self.flush_mode.load(Ordering::SeqCst),
        }
    }

    /// Enters or leaves flush mode for a measured free space, logging the change
    /// (once each way: 4101, 4102), and returns whether the connector is in it.
    /// Every measurement goes through here, the monitor's, a new connection's
    /// and the hardened profile's at MAIL, so the log tells when mail began and
    /// stopped being refused for space, whatever did the measuring.
    pub(crate) fn note_free_space(&self, free: u64) -> bool {
        let mark = self.config.low_water_mark;
        let low = free < mark;
        let was = self.flush_mode.swap(low, Ordering::SeqCst);
        if low && !was {
            self.log(
                EventId::FlushModeEntered,
                format!(
                    "Free space on the spool volume ({free} bytes) is below the low-water mark ({mark} bytes). Entering flush mode: no inbound messages are accepted."
                ),
            );
        } else if !low && was {
            self.log(
                EventId::FlushModeLeft,
                format!(
                    "Free space on the spool volume ({free} bytes) is back above the low-water mark ({mark} bytes). Leaving flush mode."
                ),
            );
        }
        low
    }
}

/// Why the service did not start.
#[derive(Debug)]
pub enum StartError {
    /// It is already running.
    AlreadyRunning,
    /// A spool directory could not be created or read.
    Spool(PathBuf, io::Error),
    /// The listening socket could not be bound.
    Bind(SocketAddr, io::Error),
    /// [`Config::hostname`] is not a domain name or an address literal: it goes
    /// into every greeting and trace header, so a line break there would split them.
    Hostname(String, GrammarError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::AlreadyRunning => f.write_str("the service is already running"),
            StartError::Spool(p, e) => {
                write!(f, "cannot prepare spool directory {}: {e}", p.display())
            }
            StartError::Bind(a, e) => write!(f, "cannot listen on {a}: {e}"),
            StartError::Hostname(h, e) => write!(f, "host name {h:?}: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// What a stop reported. The service is stopped whatever it says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StopReport {
    /// Error lines shown by the service manager (KB-4's two lines when faulted).
    pub errors: Vec<String>,
    /// The exit status `imc serve` uses for this stop.
    pub status: i32,
}

/// The connector: a service that can be started, stopped and crashed repeatedly.
pub struct Connector {
    shared: Arc<Shared>,
    running: tokio::sync::Mutex<Option<Running>>,
}

struct Running {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    acceptor: JoinHandle<()>,
    sessions: Arc<Mutex<JoinSet<()>>>,
    monitor: Option<JoinHandle<()>>,
}

impl Connector {
    /// A stopped connector over `fs`, logging to `events`, naming messages with `ids`.
    pub fn new(
        config: Config,
        profile: Profile,
        fs: Arc<dyn Fs>,
        events: EventLog,
        ids: Arc<dyn IdGenerator>,
    ) -> Self {
        let spool = Spool::new(fs, config.root.clone());
        Connector {
            shared: Arc::new(Shared {
                config,
                profile,
                spool,
                events,
                ids,
                flush_mode: AtomicBool::new(false),
                busy: AtomicUsize::new(0),
                settled: tokio::sync::Notify::new(),
            }),
            running: tokio::sync::Mutex::new(None),
        }
    }

    /// The event log.
    pub fn events(&self) -> &EventLog {
        &self.shared.events
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The profile.
    pub fn profile(&self) -> &Profile {
        &self.shared.profile
    }

    /// The listening address while running.
    pub async fn local_addr(&self) -> Option<SocketAddr> {
        self.running.lock().await.as_ref().map(|r| r.addr)
    }

    /// Starts the service: creates `imcdata`, `work` and `in` where missing (KB-5),
    /// removes incomplete work files left by an earlier run (a message is only
    /// acknowledged once in IN, so they were never accepted), checks the disk,
    /// and listens. Returns the bound address.
    pub async fn start(&self) -> Result<SocketAddr, StartError> {
        let mut running = self.running.lock().await;
        if running.is_some() {
            return Err(StartError::AlreadyRunning);
        }
        let hostname = HostName::parse(&self.shared.config.hostname)
            .map_err(|e| StartError::Hostname(self.shared.config.hostname.clone(), e))?;
        let spool = &self.shared.spool;
        let mut existing = Vec::new();
        for dir in [spool.imcdata(), spool.work_dir(), spool.in_dir()] {
            match spool.ensure_dir(dir.clone()).await {
                Ok(true) => self.shared.log(
                    EventId::DirectoryCreated,
                    format!(
                        "The directory {} was missing and has been created.",
                        win32::path(&dir)
                    ),
                ),
                Ok(false) => existing.push(dir),
                Err(e) => return Err(StartError::Spool(dir, e)),
            }
        }
        // An earlier process may have made these and not got their entries
        // flushed (its list of such directories ended with it): a start makes
        // every entry on the way to IN and work durable. A failure is not fatal:
        // the flush is tried again before the next move into IN, and no message
        // is moved there until it succeeds.
        let _ = spool.sync_existing_dirs(existing).await;
        let leftovers = spool
            .work_files()
            .await
            .map_err(|e| StartError::Spool(spool.work_dir(), e))?;
        for path in leftovers {
            spool
                .remove(path.clone())
                .await
                .map_err(|e| StartError::Spool(path.clone(), e))?;
            self.shared.log(
                EventId::LeftoverRemoved,
                format!(
                    "Removed the incomplete work file {} left by an earlier run.",
                    win32::path(&path)
                ),
            );
        }
        self.shared.flush_mode.store(false, Ordering::SeqCst);
        self.shared.check_disk().await;

        let listen = self.shared.config.listen;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| StartError::Bind(listen, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::Bind(listen, e))?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let sessions = Arc::new(Mutex::new(JoinSet::new()));
        let acceptor = tokio::spawn(accept_loop(
            listener,
            self.shared.clone(),
            shutdown_rx.clone(),
            sessions.clone(),
            Arc::new(hostname),
        ));
        let interval = self.shared.config.disk_check_interval;
        let monitor = (!interval.is_zero()).then(|| {
            let shared = self.shared.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await; // the first tick is immediate; start already checked
                loop {
                    tick.tick().await;
                    shared.check_disk().await;
                }
            })
        });
        self.shared.log(
            EventId::Started,
            format!("The {} has started.", self.shared.profile.service_name),
        );
        *running = Some(Running {
            addr,
            shutdown,
            acceptor,
            sessions,
            monitor,
        });
        Ok(addr)
    }

    /// A graceful stop: no new connections; each open session finishes the command
    /// it is in and is told `421` before it is closed. A client that does not read
    /// its replies holds the stop for at most [`Config::stop_grace`]: the session's
    /// writes are then given up and the connection closed. While faulted (IN missing, or
    /// space under the low-water mark) the report carries the profile's stop errors
    /// (KB-4); the service stops anyway. `None` if it was not running.
    pub async fn stop(&self) -> Option<StopReport> {
        let running = self.running.lock().await.take()?;
        let _ = running.shutdown.send(true);
        let _ = running.acceptor.await;
        let mut sessions = std::mem::take(&mut *lock(&running.sessions));
        while sessions.join_next().await.is_some() {}
        if let Some(m) = running.monitor {
            m.abort();
        }
        let spool = &self.shared.spool;
        let in_missing = !spool.is_dir(spool.in_dir()).await;
        let low_disk = self.shared.flush_mode.load(Ordering::SeqCst)
            || spool
                .available_space()
                .await
                .is_ok_and(|free| free < self.shared.config.low_water_mark);
        let situations = &self.shared.profile.situations;
        let report = if in_missing || low_disk {
            StopReport {
                errors: situations
                    .stop_when_faulted
                    .iter()
                    .map(|l| {
                        l.replace("{service}", self.shared.profile.service_name)
                            .replace("{server}", &self.shared.config.hostname)
                    })
                    .collect(),
                status: if situations.stop_when_faulted.is_empty() {
                    0
                } else {
                    situations.stop_error_status
                },
            }
        } else {
            StopReport::default()
        };
        self.shared.flush_mode.store(false, Ordering::SeqCst);
        self.shared.log(
            EventId::Stopped,
            format!("The {} has stopped.", self.shared.profile.service_name),
        );
        Some(report)
    }

    /// An abrupt end, like a killed process: every task is cut where it is, sockets
    /// drop, nothing is cleaned up and nothing is logged. False if it was not running.
    pub async fn crash(&self) -> bool {
        let Some(running) = self.running.lock().await.take() else {
            return false;
        };
        running.acceptor.abort();
        let _ = running.acceptor.await;
        if let Some(m) = running.monitor {
            m.abort();
        }
        let mut sessions = std::mem::take(&mut *lock(&running.sessions));
        sessions.abort_all();
        while sessions.join_next().await.is_some() {}
        self.shared.flush_mode.store(false, Ordering::SeqCst);
        true
    }

    /// Waits until every session is waiting for its client (or gone): whatever the
    /// connector does in answer to what it has read (writing, moving, logging) is
    /// then done. A harness calls it between steps so the events of a step are all
    /// logged before the next one starts.
    pub async fn settled(&self) {
        loop {
            let notified = self.shared.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.shared.busy.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Runs the low-disk monitor's check now; returns whether flush mode is on.
    pub async fn check_disk(&self) -> bool {
        self.shared.check_disk().await
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    sessions: Arc<Mutex<JoinSet<()>>>,
    hostname: Arc<HostName>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(_) => {
                        // Out of descriptors or memory: retrying at once would spin
                        // a core; pause briefly (a stop still ends the wait).
                        tokio::select! {
                            _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => continue,
                            _ = shutdown.changed() => return,
                        }
                    }
                };
                let _ = stream.set_nodelay(true);
                let (r, w) = stream.into_split();
                let session = Session::new(
                    shared.clone(),
                    r,
                    w,
                    peer.ip(),
                    hostname.clone(),
                    shutdown.clone(),
                );
                let mut set = lock(&sessions);
                while set.try_join_next().is_some() {}
                set.spawn(session.run());
            }
            _ = shutdown.changed() => return,
        }
    }
}
