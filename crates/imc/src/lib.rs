//! `imc`: an SMTP spool connector modelled on the Exchange 4.0 Internet Mail
//! Connector, the system under test of imc-harness.
//!
//! A [`Connector`] is a real tokio SMTP server (RFC 5321). It receives each message
//! into `<root>/imcdata/work/<id>`, flushes it, moves it into `<root>/imcdata/in/<id>`,
//! flushes `in/`, and only then answers `250`. Every disk access goes through the
//! [`fs::Fs`] trait so a harness can inject faults; events go to an [`EventLog`].
//! What it answers when the disk or the spool directories fail is decided by a
//! [`Profile`]: `exchange-4.0` reproduces Microsoft KB Q146791.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let config = imc::Config::new("/var/spool/imc");
//! let connector = imc::Connector::new(
//!     config,
//!     imc::profile::exchange_4_0(),
//!     Arc::new(imc::fs::RealFs),
//!     imc::EventLog::new(Some(Box::new(std::io::stderr()))),
//!     Arc::new(imc::spool::ClockIds::default()),
//! );
//! let addr = connector.start().await?;
//! println!("listening on {addr}");
//! let report = connector.stop().await;
//! # Ok(()) }
//! ```

pub mod envelope;
pub mod event;
pub mod fs;
mod line;
pub mod mutant;
pub mod profile;
mod service;
mod session;
pub mod spool;
pub mod units;
pub mod win32;

pub use event::{Clock, Event, EventId, EventLog, Level};
pub use mutant::Mutant;
pub use profile::Profile;
pub use service::{Config, Connector, StartError, StopReport};
pub use session::{MAX_COMMAND_LINE, MAX_TEXT_LINE};
