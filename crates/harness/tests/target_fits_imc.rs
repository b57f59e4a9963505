//! The in-process `imc::Connector` behind `Target` (`harness::target::imc`),
//! driven the way the runner drives a target (start, events, SMTP, settle,
//! check_disk, stop, crash).

use harness::client::{ClientSession, ReadOutcome};
use harness::target::imc::ImcTarget;
use harness::target::{Exit, Settle, SpoolLayout, Target};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn the_in_process_connector_is_a_target() {
    let dir = tempfile::tempdir().unwrap();
    let settings = harness::scenario::ConnectorSpec {
        low_water_mark: Some(harness::scenario::Size(0)),
        ..Default::default()
    };
    let mut t: Box<dyn Target> = Box::new(
        ImcTarget::new(
            dir.path(),
            || Arc::new(imc::fs::RealFs),
            "exchange-4.0",
            &settings,
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .unwrap(),
    );
    assert_eq!(t.spool(), &SpoolLayout::imc());
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
