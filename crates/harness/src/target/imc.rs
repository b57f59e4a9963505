//! [`ImcTarget`]: the in-process `imc` connector as a [`Target`], and the one
//! file of the harness that imports `imc`.
//!
//! The connector runs on the runner's own tokio runtime over the sandbox's
//! filesystem, with counter ids, a fixed clock and no periodic disk check, so
//! a rerun gives the same history byte for byte; `settle` is its exact
//! `settled()`. What else of `imc` the harness needs (the size and duration
//! syntax of scenarios, the names of its profiles and seeded defects) is
//! re-exported from here, so that the harness depends on the connector in one
//! place.

use super::{Event, Exit, Settle, SpoolLayout, StartError, Stopped, Target};
use crate::scenario::ConnectorSpec;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// The scenario language's sizes and durations (`64KiB`, `250ms`) are the
/// connector's own syntax, as `imc serve`'s flags read them.
pub use imc::units::{parse_duration, parse_size};

/// The fixed instant of the in-process connector's clock in runs
/// (2026-01-01T00:00:00Z), which the `Received:` lines carry.
fn fixed_clock() -> imc::Clock {
    imc::Clock::Fixed(chrono::DateTime::from_timestamp(1_767_225_600, 0).expect("valid instant"))
}

/// An error naming the known profiles if `name` is not one.
pub fn check_profile(name: &str) -> Result<(), String> {
    imc::profile::by_name(name).map(|_| ())
}

/// The names of the connector's seeded defects (`skip-fsync`, ...).
pub fn mutant_names() -> Vec<&'static str> {
    imc::Mutant::ALL.iter().map(|m| m.name()).collect()
}

/// An error naming the known mutants if `name` is not one.
pub fn check_mutant(name: &str) -> Result<(), String> {
    name.parse::<imc::Mutant>().map(|_| ())
}

/// The in-process connector, driven through [`Target`].
pub struct ImcTarget {
    connector: imc::Connector,
    /// A new connector process on a new handle of the disk: after a crash
    /// the dead one's handles park for good (`sandbox::Sandbox::fs`), so the
    /// next start is a new connector, as a restarted process would be.
    rebirth: Box<dyn Fn() -> imc::Connector + Send + Sync>,
    /// Crashed since the last start: the next start is a new connector.
    crashed: bool,
    events: UnboundedReceiver<imc::Event>,
    addr: Option<SocketAddr>,
    spool: SpoolLayout,
}

impl ImcTarget {
    /// A stopped connector with `profile` and the scenario's `connector:`
    /// settings, its spool on `root`, every disk call through a handle from
    /// `fs` (one per process: a start after a crash takes a new one),
    /// listening on `listen` (port 0: any) once started. An unknown profile or
    /// mutant is an error naming the known ones.
    pub fn new<F>(
        root: &Path,
        fs: impl Fn() -> Arc<F> + Send + Sync + 'static,
        profile: &str,
        settings: &ConnectorSpec,
        listen: SocketAddr,
    ) -> Result<ImcTarget, String>
    where
        F: imc::fs::Fs + 'static,
    {
        let profile = imc::profile::by_name(profile)?;
        let mutant = match &settings.mutant {
            Some(name) => Some(name.parse::<imc::Mutant>()?),
            None => None,
        };
        let mut config = imc::Config::new(root);
        config.disk_check_interval = Duration::ZERO;
        config.clock = fixed_clock();
        if let Some(h) = &settings.hostname {
            config.hostname = h.clone();
        }
        if let Some(s) = settings.low_water_mark {
            config.low_water_mark = s.0;
        }
        if let Some(s) = settings.max_message_size {
            config.max_message_size = s.0;
        }
        if let Some(n) = settings.max_recipients {
            config.max_recipients = n as usize;
        }
        if let Some(d) = settings.command_timeout {
            config.command_timeout = d.0;
        }
        config.mutant = mutant;
        config.listen = listen;
        let log = imc::EventLog::new(None);
        let events = log.subscribe();
        let ids: Arc<dyn imc::spool::IdGenerator> = Arc::new(imc::spool::CounterIds::default());
        let rebirth = Box::new(move || {
            imc::Connector::new(
                config.clone(),
                profile.clone(),
                fs(),
                log.clone(),
                Arc::clone(&ids),
            )
        });
        Ok(ImcTarget {
            connector: rebirth(),
            rebirth,
            crashed: false,
            events,
            addr: None,
            spool: SpoolLayout::imc(),
        })
    }
}

impl ImcTarget {
    /// The connector to use the disk now: a new one after a crash (the dead
    /// one's calls would park for good).
    fn alive(&mut self) -> &imc::Connector {
        if std::mem::take(&mut self.crashed) {
            self.connector = (self.rebirth)();
        }
        &self.connector
    }
}

#[async_trait::async_trait]
impl Target for ImcTarget {
    fn name(&self) -> &str {
        "imc"
    }

    fn spool(&self) -> &SpoolLayout {
        &self.spool
    }

    async fn start(&mut self) -> Result<SocketAddr, StartError> {
        let addr = self.alive().start().await.map_err(|e| StartError {
            message: e.to_string(),
            stderr: vec![],
            exit: None,
        })?;
        self.addr = Some(addr);
        Ok(addr)
    }

    async fn stop(&mut self) -> Option<Stopped> {
        self.addr = None;
        let report = self.connector.stop().await?;
        Some(Stopped {
            exit: Exit::Code(report.status),
            expected: true,
            errors: report.errors,
        })
    }

    async fn crash(&mut self) -> bool {
        self.addr = None;
        self.crashed = true;
        self.connector.crash().await
    }

    fn address(&self) -> Option<SocketAddr> {
        self.addr
    }

    fn poll_events(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(Event {
                id: Some(e.id),
                level: e.level.to_string(),
                source: e.source,
                category: e.category,
                message: e.message,
            });
        }
        out
    }

    async fn settle(&mut self, budget: Duration) -> Settle {
        // Bounded: a session parked on a halted disk never settles.
        match tokio::time::timeout(budget, self.connector.settled()).await {
            Ok(()) => Settle::Quiet,
            Err(_) => Settle::Busy,
        }
    }

    async fn check_disk(&mut self) -> Option<bool> {
        // A crashed connector's disk handle parks for good: the check is the
        // next process's, as a check of a restarted service would be.
        Some(self.alive().check_disk().await)
    }
}
