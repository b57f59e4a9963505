//! The `Target` interface fits the in-process `imc::Connector`: a sketch of
//! the adapter the runner will use, driven the way the runner drives a target
//! (start, events, SMTP, settle, check_disk, stop, crash).

use harness::client::{ClientSession, ReadOutcome};
use harness::target::{Event, Exit, Settle, SpoolLayout, StartError, Stopped, Target};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

struct InProcess {
    connector: imc::Connector,
    events: UnboundedReceiver<imc::Event>,
    addr: Option<SocketAddr>,
    spool: SpoolLayout,
}

#[harness::target::async_trait]
impl Target for InProcess {
    fn name(&self) -> &str {
        "imc"
    }
    fn spool(&self) -> &SpoolLayout {
        &self.spool
    }
    async fn start(&mut self) -> Result<SocketAddr, StartError> {
        let addr = self.connector.start().await.map_err(|e| StartError {
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
        match tokio::time::timeout(budget, self.connector.settled()).await {
            Ok(()) => Settle::Quiet,
            Err(_) => Settle::Busy,
        }
    }
    async fn check_disk(&mut self) -> Option<bool> {
        Some(self.connector.check_disk().await)
    }
}

#[tokio::test]
async fn the_in_process_connector_is_a_target() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = imc::Config::new(dir.path());
    config.disk_check_interval = Duration::ZERO;
    config.low_water_mark = 0;
    let log = imc::EventLog::new(None);
    let events = log.subscribe();
    let connector = imc::Connector::new(
        config,
        imc::profile::by_name("exchange-4.0").unwrap(),
        Arc::new(imc::fs::RealFs),
        log,
        Arc::new(imc::spool::CounterIds::default()),
    );
    let mut t: Box<dyn Target> = Box::new(InProcess {
        connector,
        events,
        addr: None,
        spool: SpoolLayout::imc(),
    });
    let addr = t.start().await.unwrap();
    let ids: Vec<Option<u32>> = t.poll_events().iter().map(|e| e.id).collect();
    assert_eq!(ids, [Some(1002), Some(1002), Some(1002), Some(1000)]);
    let mut s = ClientSession::connect(addr, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(matches!(
        s.read_reply(Duration::from_secs(10)).await,
        ReadOutcome::Reply(r) if r.code == 220
    ));
    assert_eq!(t.settle(Duration::from_secs(10)).await, Settle::Quiet);
    assert_eq!(t.check_disk().await, Some(false));
    std::fs::remove_dir(dir.path().join("imcdata/in")).unwrap();
    let stopped = t.stop().await.unwrap();
    assert_eq!(
        stopped.exit,
        Exit::Code(8),
        "KB-4's status, as imc serve exits"
    );
    assert_eq!(stopped.errors.len(), 2);
    assert_eq!(t.address(), None);
    t.start().await.unwrap();
    assert!(t.crash().await);
    assert!(!t.crash().await);
    assert_eq!(
        t.exited(),
        None,
        "an in-process service never ends by itself"
    );
}
