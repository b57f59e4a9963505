//! Targets: the system under test, behind one small interface.
//!
//! The runner drives a [`Target`]: it starts it, talks SMTP to its
//! [`address`](Target::address), reads its [`events`](Target::poll_events),
//! waits until it has [`settled`](Target::settle) after each step, stops or
//! crashes it, and checks the invariants against its [`spool`](Target::spool)
//! layout (where a message is received, where an accepted one may be, how a
//! stored message reads). Nothing in this interface names `imc`: the in-process
//! connector is one implementation, a process described by a target file
//! ([`file`](mod@file), `targets/<name>.yaml`) is another ([`process`]).
//!
//! # Implementing `Target` for your own connector
//!
//! A Rust crate that can run its connector in-process implements [`Target`]
//! on a small adapter. What each method owes the runner:
//!
//! - [`start`](Target::start): bring the service up on the spool root the
//!   harness gave you (a sandbox), listening on a loopback address, and return
//!   that address once a client can connect. Missing spool directories are the
//!   service's business (KB-5: it recreates them). A start that fails returns
//!   [`StartError`] with what the service said; the runner records it and checks
//!   it against `service_error`.
//! - [`stop`](Target::stop): a graceful stop, as a service manager does it; the
//!   open sessions get what the service sends when it stops (a `421`). Return
//!   the exit status and the error lines it reported ([`Stopped`]), or `None`
//!   when it was not running.
//! - [`crash`](Target::crash): an abrupt end: nothing flushed, nothing logged,
//!   every socket dropped. `false` when it was not running.
//! - [`poll_events`](Target::poll_events): every event logged since the last
//!   call, in order, at once (never waits). Log an event before sending the
//!   reply it explains, and the runner orders them truthfully.
//! - [`settle`](Target::settle): wait until the service has finished reacting
//!   to what it was sent (every session waits for its client), within the
//!   budget; an in-process connector knows this exactly, a process is watched
//!   until it is quiet.
//! - [`spool`](Target::spool): the directories, relative to the root, and how
//!   a stored message reads ([`SpoolLayout`]).
//!
//! Methods that wait are `async` (tokio); the trait is object-safe through
//! [`async_trait`](macro@async_trait), so a runner holds a `Box<dyn Target>`:
//!
//! ```
//! use harness::target::{Event, SpoolLayout, StartError, Settle, Stopped, Target, Exit};
//! use std::net::SocketAddr;
//! use std::time::Duration;
//!
//! /// A connector that accepts nothing, to show the shape.
//! struct Mine {
//!     spool: SpoolLayout,
//!     addr: Option<SocketAddr>,
//!     events: Vec<Event>,
//! }
//!
//! #[harness::target::async_trait]
//! impl Target for Mine {
//!     fn name(&self) -> &str { "mine" }
//!     fn spool(&self) -> &SpoolLayout { &self.spool }
//!     async fn start(&mut self) -> Result<SocketAddr, StartError> {
//!         let addr = SocketAddr::from(([127, 0, 0, 1], 2525));
//!         self.addr = Some(addr);
//!         Ok(addr)
//!     }
//!     async fn stop(&mut self) -> Option<Stopped> {
//!         self.addr.take().map(|_| Stopped { exit: Exit::Code(0), expected: true, errors: vec![] })
//!     }
//!     async fn crash(&mut self) -> bool { self.addr.take().is_some() }
//!     fn address(&self) -> Option<SocketAddr> { self.addr }
//!     fn poll_events(&mut self) -> Vec<Event> { std::mem::take(&mut self.events) }
//!     async fn settle(&mut self, _budget: Duration) -> Settle { Settle::Quiet }
//! }
//!
//! let t: Box<dyn Target> = Box::new(Mine {
//!     spool: SpoolLayout::imc(),
//!     addr: None,
//!     events: vec![],
//! });
//! assert_eq!(t.spool().accepted, ["imcdata/in"]);
//! ```
//!
//! # Process targets
//!
//! A connector that ships as a program is described by a target file instead
//! ([`file::TargetFile`], `targets/imc-serve.yaml` for the `imc serve` binary)
//! and run by [`process::ProcessTarget`]: its own process group, a free loopback
//! port, readiness by a stdout line or the port accepting, stop by a signal with
//! the expected exit statuses, crash by SIGKILL of the group, events from a
//! JSON-lines file or a text log mapped by a regex, redactions of what varies
//! from run to run (ids, times, pids).

mod diagnostic;
mod event;
pub mod file;
pub mod postfix_queue;
pub mod process;
pub mod program;
mod redact;
pub mod source;
mod spool;

/// The attribute that makes [`Target`]'s `async fn`s object-safe, re-exported so
/// an implementation needs no dependency of its own: `#[harness::target::async_trait]`.
pub use async_trait::async_trait;
pub use diagnostic::{Located, TargetFileError};
pub use event::{Event, UNKNOWN_LEVEL};
pub use redact::Redactor;
pub use spool::{MessageFormat, SpoolLayout, StoredMessage};

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// The system under test, as the runner drives it. See the [module
/// documentation](self) for what each method owes the runner.
#[async_trait]
pub trait Target: Send {
    /// The target's name (`imc`, `imc-serve`), for reports.
    fn name(&self) -> &str;

    /// Where messages are received and kept, relative to the spool root, and how
    /// a stored message reads. The invariants look only there.
    fn spool(&self) -> &SpoolLayout;

    /// Starts the service; returns the address it listens on, once a client can
    /// connect. Every event it logged while starting is in
    /// [`poll_events`](Target::poll_events) by then.
    async fn start(&mut self) -> Result<SocketAddr, StartError>;

    /// A graceful stop. Returns how it ended, or `None` if it was not running.
    /// When this returns, the service is gone and has logged all it will.
    async fn stop(&mut self) -> Option<Stopped>;

    /// An abrupt end (a killed process): nothing flushed, nothing logged. False
    /// if it was not running. When this returns, nothing of it is left running.
    async fn crash(&mut self) -> bool;

    /// The listening address while running.
    fn address(&self) -> Option<SocketAddr>;

    /// The events logged since the last call, in order, redacted; never waits.
    fn poll_events(&mut self) -> Vec<Event>;

    /// Waits until the service has reacted to what it was sent (its events
    /// logged, its files written), for at most `budget`.
    async fn settle(&mut self, budget: Duration) -> Settle;

    /// How the service ended, if it ended by itself (a process that exited or
    /// died without being stopped or crashed) since it was started; it is then
    /// no longer running. The runner records it in the history. The default:
    /// never (an in-process service does not end by itself).
    fn exited(&mut self) -> Option<Exit> {
        None
    }

    /// Runs the service's free-space check now, where it has one it can be asked
    /// to run (`service: check_disk`): whether it is refusing mail for space.
    /// `None` (the default): this target cannot be asked.
    async fn check_disk(&mut self) -> Option<bool> {
        None
    }

    /// `text` (a reply, an error line) with what varies from run to run
    /// replaced by fixed text (the target file's redactions). The default
    /// changes nothing: an in-process target is deterministic already.
    fn redact(&self, text: &str) -> String {
        text.to_string()
    }

    /// A stored message (a file in an [`accepted`](SpoolLayout::accepted)
    /// directory) as envelope and body, for the ledger. The default reads it
    /// in the layout's [`format`](SpoolLayout::format).
    fn read_message(&self, stored: &[u8]) -> StoredMessage {
        self.spool().format.read(stored)
    }
}

/// Why a start failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartError {
    /// What went wrong, in a line (`the process exited with status 1 before it was ready`).
    pub message: String,
    /// What the service wrote on stderr (redacted), for `service_error`.
    pub stderr: Vec<String>,
    /// How the process ended, if it did.
    pub exit: Option<Exit>,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if !self.stderr.is_empty() {
            f.write_str("; its stderr:")?;
            for line in &self.stderr {
                write!(f, "\n  | {line}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for StartError {}

/// How a stop went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stopped {
    /// How the service ended (an in-process one: the status its binary would use).
    pub exit: Exit,
    /// Whether that status is one the target file expects from a stop.
    pub expected: bool,
    /// The error lines it reported while stopping (a process: stderr from the
    /// stop signal to its exit), redacted: KB-4's two lines when faulted.
    pub errors: Vec<String>,
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this status.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "status {c}"),
            Exit::Signal(s) => write!(f, "signal {}", file::signal_name(*s)),
        }
    }
}

impl From<std::process::ExitStatus> for Exit {
    fn from(status: std::process::ExitStatus) -> Exit {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(c), _) => Exit::Code(c),
            (None, Some(s)) => Exit::Signal(s),
            (None, None) => Exit::Code(-1),
        }
    }
}

/// What [`Target::settle`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settle {
    /// The target has finished reacting.
    Quiet,
    /// It was still busy when the budget ran out (a `liveness` matter).
    Busy,
}
