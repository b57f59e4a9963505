//! The event log: structured events written as JSON lines and observable in-process.
//!
//! Events are what an administrator reads in the Windows event viewer for the real
//! IMC. They go to a file outside the spool volume (a full spool must not silence
//! the log) and to every in-process subscriber, in the order they were logged.

use serde::Serialize;
use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Severity of an event, as in the Windows event log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Level {
    /// Normal operation.
    Information,
    /// Something the administrator should look at; mail still flows.
    Warning,
    /// Mail was refused or lost its way.
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Information => "Information",
            Level::Warning => "Warning",
            Level::Error => "Error",
        })
    }
}

/// One logged event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// When it was logged (RFC 3339, from the connector's clock).
    pub time: String,
    /// Event id (`4055`). See [`EventId`] for the ids this connector logs.
    pub id: u32,
    /// Event source (`MSExchangeIMC` for the `exchange-4.0` profile).
    pub source: String,
    /// Severity.
    pub level: Level,
    /// Category (`Internal Processing`, `Service Control`, `Resources`).
    pub category: String,
    /// The text, one paragraph.
    pub message: String,
}

/// The events this connector logs. 4055 is KB Q146791's; 4070 is Q231737's (a
/// temporary message file could not be written); the others are this
/// connector's own numbering for facts the articles mention without an id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventId {
    /// 1000: the service started.
    Started = 1000,
    /// 1001: the service stopped.
    Stopped = 1001,
    /// 1002: a missing spool directory was created (at start, or by self-healing).
    DirectoryCreated = 1002,
    /// 1003: an incomplete work file from an earlier run was removed at start.
    LeftoverRemoved = 1003,
    /// 1004: a connection was refused because the service cannot accept mail.
    ConnectionRefused = 1004,
    /// 4055: a work file could not be moved into IN (KB Q146791).
    MoveFailed = 4055,
    /// 4070: a work file could not be created, written or flushed (Q231737).
    WriteFailed = 4070,
    /// 4071: a message could neither be flushed in IN nor taken out of it, and
    /// was accepted rather than delivered twice.
    AcceptedNotDurable = 4071,
    /// 4101: free space fell under the low-water mark: flush mode (Q189587).
    FlushModeEntered = 4101,
    /// 4102: free space is back above the low-water mark.
    FlushModeLeft = 4102,
}

impl EventId {
    /// The level and category each id is logged with.
    pub fn level_and_category(self) -> (Level, &'static str) {
        match self {
            EventId::Started | EventId::Stopped => (Level::Information, "Service Control"),
            EventId::DirectoryCreated | EventId::LeftoverRemoved => {
                (Level::Warning, "Service Control")
            }
            EventId::ConnectionRefused => (Level::Warning, "Internal Processing"),
            EventId::MoveFailed | EventId::WriteFailed => (Level::Error, "Internal Processing"),
            EventId::AcceptedNotDurable => (Level::Warning, "Internal Processing"),
            EventId::FlushModeEntered => (Level::Warning, "Resources"),
            EventId::FlushModeLeft => (Level::Information, "Resources"),
        }
    }
}

/// Where event times come from. Tests fix it so stored files are byte-identical.
#[derive(Clone, Copy, Debug, Default)]
pub enum Clock {
    /// The system clock.
    #[default]
    System,
    /// Always this instant.
    Fixed(chrono::DateTime<chrono::Utc>),
}

impl Clock {
    /// The current time by this clock.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        match self {
            Clock::System => chrono::Utc::now(),
            Clock::Fixed(t) => *t,
        }
    }
}

/// The event log: a JSON-lines sink plus in-process subscribers. Cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    sink: Option<Box<dyn Write + Send>>,
    subscribers: Vec<mpsc::UnboundedSender<Event>>,
}

impl fmt::Debug for EventLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLog").finish_non_exhaustive()
    }
}

impl EventLog {
    /// A log writing JSON lines to `sink` (a file, stderr), or nowhere with `None`.
    pub fn new(sink: Option<Box<dyn Write + Send>>) -> Self {
        EventLog {
            inner: Arc::new(Mutex::new(Inner {
                sink,
                subscribers: Vec::new(),
            })),
        }
    }

    /// Every event logged from now on, in order.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Event> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().subscribers.push(tx);
        rx
    }

    /// Logs an event. A failing sink does not stop the connector (the event still
    /// reaches subscribers); the failure is reported once on stderr.
    pub fn log(&self, event: Event) {
        let mut inner = self.lock();
        if let Some(sink) = inner.sink.as_mut() {
            let mut line = serde_json::to_vec(&event).expect("events serialize");
            line.push(b'\n');
            if let Err(e) = sink.write_all(&line).and_then(|()| sink.flush()) {
                // Not `eprintln!`: the sink may be stderr itself, full or closed.
                let _ = writeln!(
                    std::io::stderr(),
                    "imc: event log write failed, events go to subscribers only: {e}"
                );
                inner.sink = None;
            }
        }
        inner
            .subscribers
            .retain(|tx| tx.send(event.clone()).is_ok());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while logging leaves the sink usable; keep logging.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}
