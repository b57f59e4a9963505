//! Service control: start, stop, crash, and what each does to open sessions and
//! to the spool.

use crate::support::{Spooled, TestFs};
use imc::{Level, StartError, StopReport};

const SHUTTING_DOWN: &str = "421 imc.test Service not available, closing transmission channel";

#[tokio::test]
async fn start_creates_the_spool_and_logs() {
    let mut s = Spooled::build(|_| {}, None);
    assert!(s.connector.local_addr().await.is_none());
    let addr = s.restart().await;
    assert_eq!(s.connector.local_addr().await, Some(addr));
    let r = s.root_win();
    let events = s.drain_events();
    let got: Vec<(u32, &str)> = events.iter().map(|e| (e.id, e.message.as_str())).collect();
    assert_eq!(
        got,
        [
            (
                1002,
                format!("The directory {r}\\imcdata was missing and has been created.").as_str()
            ),
            (
                1002,
                format!("The directory {r}\\imcdata\\work was missing and has been created.")
                    .as_str()
            ),
            (
                1002,
                format!("The directory {r}\\imcdata\\in was missing and has been created.")
                    .as_str()
            ),
            (
                1000,
                "The Microsoft Exchange Internet Mail Connector has started."
            ),
        ]
    );
    let started = events.last().unwrap();
    assert_eq!(
        (started.level, started.category.as_str()),
        (Level::Information, "Service Control")
    );
    assert!(s.in_files().is_empty() && s.work_files().is_empty());
}

#[tokio::test]
async fn start_stop_and_crash_only_act_in_the_right_state() {
    let s = Spooled::build(|_| {}, None);
    assert_eq!(s.connector.stop().await, None);
    assert!(!s.connector.crash().await);
    s.connector.start().await.unwrap();
    assert!(matches!(
        s.connector.start().await,
        Err(StartError::AlreadyRunning)
    ));
    assert_eq!(s.connector.stop().await, Some(StopReport::default()));
    assert_eq!(s.connector.stop().await, None);
    s.connector.start().await.unwrap();
    assert!(s.connector.crash().await);
    assert!(!s.connector.crash().await);
    assert!(s.connector.local_addr().await.is_none());
}

#[tokio::test]
async fn a_start_fails_when_a_spool_directory_cannot_be_made() {
    let s = Spooled::build(|_| {}, None);
    std::fs::write(s.root.path().join("imcdata"), b"a file").unwrap();
    match s.connector.start().await {
        Err(StartError::Spool(path, _)) => assert_eq!(path, s.root.path().join("imcdata")),
        other => panic!("{other:?}"),
    }
    assert!(s.connector.local_addr().await.is_none());
}

#[tokio::test]
async fn a_stop_tells_open_sessions_421_and_closes_them() {
    let mut s = Spooled::start().await;
    let mut greeted = s.connect().await;
    greeted.greeting().await;
    let mut idle = s.session().await;
    let mut in_txn = s.session().await;
    in_txn.envelope().await;
    let report = s.connector.stop().await.expect("was running");
    assert_eq!(report, StopReport::default());
    for c in [&mut greeted, &mut idle, &mut in_txn] {
        assert_eq!(c.reply().await, SHUTTING_DOWN);
        c.expect_closed().await;
    }
    assert!(
        tokio::net::TcpStream::connect(s.addr.unwrap())
            .await
            .is_err()
    );
    assert_eq!(s.event(1001).await.level, Level::Information);
    assert!(s.in_files().is_empty());
}

#[tokio::test]
async fn a_stop_during_data_drops_the_partial_message() {
    let fs = TestFs::default();
    let s = Spooled::start_with(|_| {}, Some(fs.clone())).await;
    let mut c = s.session().await;
    c.envelope().await;
    assert_eq!(c.cmd("DATA").await, "354 Send data.  End with CRLF.CRLF");
    c.send("Subject: interrupted\r\n\r\nhalf\r\n").await;
    assert_eq!(s.connector.stop().await, Some(StopReport::default()));
    assert_eq!(c.reply().await, SHUTTING_DOWN);
    c.expect_closed().await;
    assert!(
        fs.ops()
            .contains(&"remove imcdata/work/00000001".to_string())
    );
    assert!(s.work_files().is_empty());
    assert!(s.in_files().is_empty());
}

#[tokio::test]
async fn a_stopped_service_starts_again_and_ids_go_on() {
    let mut s = Spooled::start().await;
    let mut c = s.session().await;
    assert_eq!(c.mail(b"one\r\n").await, "250 OK");
    s.connector.stop().await.unwrap();
    c.reply().await;
    s.restart().await;
    let mut c = s.session().await;
    assert_eq!(c.mail(b"two\r\n").await, "250 OK");
    assert_eq!(s.in_files(), ["00000001", "00000002"]);
}

#[tokio::test]
async fn a_crash_cuts_sessions_silently_and_the_next_start_cleans_work() {
    let mut s = Spooled::start().await;
    let mut idle = s.session().await;
    let mut sending = s.session().await;
    sending.envelope().await;
    assert_eq!(
        sending.cmd("DATA").await,
        "354 Send data.  End with CRLF.CRLF"
    );
    sending.send("Subject: crash\r\n\r\npart").await;
    assert_eq!(s.work_files(), ["00000001"]);
    s.drain_events();

    assert!(s.connector.crash().await);
    idle.expect_cut().await;
    sending.expect_cut().await;
    assert!(s.drain_events().is_empty(), "a crash logs nothing");
    assert!(
        tokio::net::TcpStream::connect(s.addr.unwrap())
            .await
            .is_err()
    );
    // Nothing cleaned up yet.
    assert_eq!(s.work_files(), ["00000001"]);

    s.restart().await;
    let events = s.drain_events();
    let ids: Vec<u32> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids, [1003, 1000]);
    assert_eq!(
        events[0].message,
        format!(
            "Removed the incomplete work file {}\\imcdata\\work\\00000001 left by an earlier run.",
            s.root_win()
        )
    );
    assert_eq!(
        (events[0].level, events[0].category.as_str()),
        (Level::Warning, "Service Control")
    );
    assert!(s.work_files().is_empty());
    assert!(s.in_files().is_empty());
    let mut c = s.session().await;
    assert_eq!(c.mail(b"after the crash\r\n").await, "250 OK");
    assert_eq!(s.in_files(), ["00000002"]);
}

#[tokio::test]
async fn messages_accepted_before_a_crash_survive_it() {
    let mut s = Spooled::start().await;
    let mut c = s.session().await;
    assert_eq!(c.mail(b"kept\r\n").await, "250 OK");
    assert!(s.connector.crash().await);
    c.expect_cut().await;
    s.restart().await;
    assert_eq!(s.in_files(), ["00000001"]);
    assert!(s.stored("00000001").ends_with(b"\r\nkept\r\n"));
}

/// A client that never reads its replies cannot hold a stop for the command
/// timeout (300 s): the stop ends within the stop grace (5 s), cutting that
/// session, whose last reply (the 421) the client never gets. On tokio's paused
/// clock, so the time measured is the connector's own timers, not the machine's
/// load.
#[tokio::test(start_paused = true)]
async fn a_stop_is_not_held_by_a_client_that_does_not_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Spooled::start().await;
    let config = s.connector.config().clone();
    assert_eq!(config.stop_grace, std::time::Duration::from_secs(5));
    assert_eq!(config.command_timeout, std::time::Duration::from_secs(300));
    let stream = tokio::net::TcpStream::connect(s.addr.unwrap())
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // 48 MiB of NOOPs whose replies are never read: the server blocks writing.
    let flood = tokio::spawn(async move {
        let _ = writer
            .write_all("NOOP\r\n".repeat(8 << 20).as_bytes())
            .await;
    });
    // On the paused clock this only returns once every task is blocked: the
    // server on its reply writes, the client on its flood.
    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    let started = tokio::time::Instant::now();
    let report = s.connector.stop().await.expect("was running");
    let took = started.elapsed();
    assert_eq!(report, StopReport::default());
    assert!(
        took >= config.stop_grace && took < config.stop_grace * 2,
        "the stop took {took:?}"
    );
    // The stop finished while the client had read nothing; what it can still
    // read ends without the 421, whose write was given up.
    let mut got = Vec::new();
    let _ = reader.read_to_end(&mut got).await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("220 "),
        "{:?}",
        &text[..text.len().min(80)]
    );
    assert!(
        !text.contains("421"),
        "the 421 reached a client that never read"
    );
    flood.await.unwrap();
}

/// A start makes the spool's directory entries durable even when the
/// directories are there already: an earlier process (this one ended cleanly)
/// may have made them without getting their parents flushed, and its list of
/// such directories ended with it. While the flush fails, no message is moved
/// into IN (421: the client keeps it); once it works, it comes before the move.
#[tokio::test]
async fn a_start_flushes_the_parents_of_in_and_work_made_by_an_earlier_process() {
    let fs = TestFs::default();
    let mut s = Spooled::build(|_| {}, Some(fs.clone()));
    std::fs::create_dir_all(s.in_dir()).unwrap();
    std::fs::create_dir_all(s.work_dir()).unwrap();
    s.restart().await;
    assert_eq!(fs.ops(), ["sync_dir ", "sync_dir imcdata"]);
    assert_eq!(s.connector.stop().await.expect("was running").status, 0);

    fs.clear_ops();
    fs.fail_sync_dir_of("imcdata", libc::EIO);
    s.restart().await;
    let mut c = s.session().await;
    assert_eq!(
        c.mail(b"Subject: not yet\r\n\r\nx\r\n").await,
        "421 Internal Error. Connection Closing."
    );
    assert!(s.in_files().is_empty(), "{:?}", s.in_files());
    assert!(
        !fs.ops().iter().any(|op| op.starts_with("rename")),
        "{:?}",
        fs.ops()
    );

    fs.fail_sync_dir(0);
    fs.clear_ops();
    let mut c = s.session().await;
    assert_eq!(c.mail(b"Subject: now\r\n\r\nx\r\n").await, "250 OK");
    let ops = fs.ops();
    let tail: Vec<&str> = ops.iter().map(String::as_str).rev().take(3).collect();
    assert_eq!(
        tail,
        [
            "sync_dir imcdata/in",
            "rename imcdata/work/00000002 imcdata/in/00000002",
            "sync_dir imcdata",
        ],
        "{ops:?}"
    );
}
