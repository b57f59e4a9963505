//! KB Q146791's claims KB-1..KB-5 (KB-6 is in [`crate::spool`]).

use crate::support::{KB_421, Spooled, TestFs};
use imc::{Level, StopReport};
use std::time::Duration;

fn kb4_errors(server: &str) -> StopReport {
    StopReport {
        errors: vec![
            format!(
                "Could not stop the Microsoft Exchange Internet Mail Connector on \\\\{server}"
            ),
            "0008: Not enough storage space is available.".to_string(),
        ],
        status: 8,
    }
}

/// KB-1: below the low-water mark at connect, the call is refused with the 421.
#[tokio::test]
async fn kb1_low_disk_refuses_new_connections() {
    let mut s = Spooled::start_with(|c| c.low_water_mark = u64::MAX / 2, None).await;
    let e = s.event(4101).await;
    assert_eq!(e.level, Level::Warning);
    assert_eq!(e.category, "Resources");
    assert!(
        e.message
            .ends_with(&format!("bytes) is below the low-water mark ({} bytes). Entering flush mode: no inbound messages are accepted.", u64::MAX / 2)),
        "{}",
        e.message
    );
    s.event(1000).await;
    let mut c = s.connect().await;
    assert_eq!(c.reply().await, KB_421);
    c.expect_closed().await;
    let e = s.event(1004).await;
    assert_eq!(
        e.message,
        "Refused a connection from 127.0.0.1: the spool volume is in flush mode."
    );
    assert_eq!(e.source, "MSExchangeIMC");
    // Still low: the monitor's check says so and logs nothing new.
    assert!(s.connector.check_disk().await);
    assert!(s.drain_events().iter().all(|e| e.id != 4101));
    assert!(s.in_files().is_empty());
    assert!(s.work_files().is_empty());
}

/// KB-1 with Q189587's flush mode: entering and leaving it are logged (4101,
/// 4102), the mark itself is not low, and connections follow the mode.
#[tokio::test]
async fn kb1_flush_mode_is_entered_and_left_as_free_space_changes() {
    let fs = TestFs::default();
    fs.set_free(1000);
    let mut s = Spooled::start_with(|c| c.low_water_mark = 10_000, Some(fs.clone())).await;
    let e = s.event(4101).await;
    assert_eq!(
        e.message,
        "Free space on the spool volume (1000 bytes) is below the low-water mark (10000 bytes). Entering flush mode: no inbound messages are accepted."
    );
    assert_eq!(
        (
            e.source.as_str(),
            e.level,
            e.category.as_str(),
            e.time.as_str()
        ),
        (
            "MSExchangeIMC",
            Level::Warning,
            "Resources",
            "1996-04-01T12:00:00+00:00"
        )
    );
    let mut c = s.connect().await;
    assert_eq!(c.reply().await, KB_421);
    c.expect_closed().await;

    fs.set_free(10_000); // exactly the mark: not below it
    assert!(!s.connector.check_disk().await);
    let e = s.event(4102).await;
    assert_eq!(
        e.message,
        "Free space on the spool volume (10000 bytes) is back above the low-water mark (10000 bytes). Leaving flush mode."
    );
    assert_eq!(
        (e.level, e.category.as_str()),
        (Level::Information, "Resources")
    );
    assert!(!s.connector.check_disk().await);
    let mut c = s.session().await;
    assert_eq!(c.mail(b"x\r\n").await, "250 OK");
    assert_eq!(s.in_files(), ["00000001"]);

    // Low again: the next connection notices by itself (and logs 4101 once).
    fs.set_free(9_999);
    let mut c = s.connect().await;
    assert_eq!(c.reply().await, KB_421);
    c.expect_closed().await;
    assert!(s.event(4101).await.message.starts_with(
        "Free space on the spool volume (9999 bytes) is below the low-water mark (10000 bytes)."
    ));
    assert!(s.connector.check_disk().await);
    assert!(
        s.drain_events()
            .iter()
            .all(|e| e.id != 4101 && e.id != 4102)
    );
}

/// On tokio's paused clock: the monitor's ticks come from its own timer, not
/// from how fast a loaded machine runs.
#[tokio::test(start_paused = true)]
async fn kb1_the_periodic_monitor_enters_and_leaves_flush_mode() {
    let fs = TestFs::default();
    let mut s = Spooled::start_with(
        |c| {
            c.low_water_mark = 10_000;
            c.disk_check_interval = Duration::from_millis(20);
        },
        Some(fs.clone()),
    )
    .await;
    s.event(1000).await;
    fs.set_free(1);
    s.event(4101).await;
    fs.set_free(u64::MAX - 1);
    s.event(4102).await;
    let mut c = s.session().await;
    assert_eq!(c.mail(b"x\r\n").await, "250 OK");
}

/// KB-2: IN removed, renamed or replaced: new calls get the 421 and are closed;
/// with IN back they are accepted again.
#[tokio::test]
async fn kb2_a_missing_in_refuses_new_connections() {
    let mut s = Spooled::start().await;
    let in_dir = s.in_dir();
    let moved = s.root.path().join("imcdata").join("in.old");
    let refused = format!(
        "Refused a connection from 127.0.0.1: the directory {}\\imcdata\\in is missing.",
        s.root_win()
    );
    for fault in ["remove", "rename", "replace"] {
        match fault {
            "remove" => std::fs::remove_dir(&in_dir).unwrap(),
            "rename" => std::fs::rename(&in_dir, &moved).unwrap(),
            _ => {
                std::fs::remove_dir_all(&in_dir).unwrap();
                std::fs::write(&in_dir, b"not a directory").unwrap();
            }
        }
        let mut c = s.connect().await;
        assert_eq!(c.reply().await, KB_421, "{fault}");
        c.expect_closed().await;
        let e = s.event(1004).await;
        assert_eq!(e.message, refused);
        assert_eq!(
            (e.level, e.category.as_str()),
            (Level::Warning, "Internal Processing")
        );
        // Put IN back: accepted again.
        match fault {
            "remove" => std::fs::create_dir(&in_dir).unwrap(),
            "rename" => std::fs::rename(&moved, &in_dir).unwrap(),
            _ => {
                std::fs::remove_file(&in_dir).unwrap();
                std::fs::create_dir(&in_dir).unwrap();
            }
        }
        let mut c = s.session().await;
        assert_eq!(c.mail(b"x\r\n").await, "250 OK", "{fault}");
    }
    assert_eq!(s.in_files().len(), 1); // the last one; IN was recreated empty twice
}

fn kb3_event_text(s: &Spooled, id: &str) -> String {
    let r = s.root_win();
    format!(
        "Unable to move file {r}\\imcdata\\work\\{id} to {r}\\imcdata\\in\\{id} due to system error. The system cannot find the path specified."
    )
}

/// KB-3: IN vanishes after the 354, before the dot: the mail is rejected with
/// the 421 after the dot, event 4055 is logged, and the message is not in IN.
#[tokio::test]
async fn kb3_in_removed_after_the_354() {
    let mut s = Spooled::start().await;
    let mut c = s.session().await;
    c.envelope().await;
    assert_eq!(c.cmd("DATA").await, "354 Send data.  End with CRLF.CRLF");
    c.send("Subject: kb3\r\n\r\nfirst half\r\n").await;
    std::fs::remove_dir(s.in_dir()).unwrap();
    c.send("second half\r\n.\r\n").await;
    assert_eq!(c.reply().await, KB_421);
    c.expect_closed().await;
    let e = s.event(4055).await;
    assert_eq!(e.source, "MSExchangeIMC");
    assert_eq!(e.level, Level::Error);
    assert_eq!(e.category, "Internal Processing");
    assert_eq!(e.message, kb3_event_text(&s, "00000001"));
    assert!(!s.in_dir().exists());
    // As the real IMC did, the work file stays behind (removed at the next start).
    assert_eq!(s.work_files(), ["00000001"]);
}

#[tokio::test]
async fn kb3_in_renamed_before_data() {
    let mut s = Spooled::start().await;
    let mut c = s.session().await;
    c.envelope().await;
    let moved = s.root.path().join("imcdata").join("in.old");
    std::fs::rename(s.in_dir(), &moved).unwrap();
    // The open session is not refused: DATA is accepted and fails at the move.
    assert_eq!(c.data(b"Subject: kb3\r\n\r\nx\r\n").await, KB_421);
    c.expect_closed().await;
    assert_eq!(s.event(4055).await.message, kb3_event_text(&s, "00000001"));
    assert_eq!(std::fs::read_dir(&moved).unwrap().count(), 0);
    assert!(!s.in_dir().exists());
}

/// KB-4: stopping while faulted reports the two lines and status 8; the service
/// stops all the same. A clean stop reports nothing.
#[tokio::test]
async fn kb4_stop_while_in_is_missing() {
    let mut s = Spooled::start_with(|c| c.hostname = "exch01".into(), None).await;
    std::fs::remove_dir(s.in_dir()).unwrap();
    let report = s.connector.stop().await.expect("was running");
    assert_eq!(report, kb4_errors("exch01"));
    let e = s.event(1001).await;
    assert_eq!(
        e.message,
        "The Microsoft Exchange Internet Mail Connector has stopped."
    );
    // It did stop.
    assert!(s.connector.local_addr().await.is_none());
    assert!(
        tokio::net::TcpStream::connect(s.addr.unwrap())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn kb4_stop_while_disk_is_low() {
    let s = Spooled::start_with(|c| c.low_water_mark = u64::MAX / 2, None).await;
    assert_eq!(s.connector.stop().await, Some(kb4_errors("imc.test")));
}

#[tokio::test]
async fn kb4_a_clean_stop_reports_nothing() {
    let s = Spooled::start().await;
    let mut c = s.session().await;
    assert_eq!(c.mail(b"x\r\n").await, "250 OK");
    assert_eq!(c.cmd("QUIT").await, "221 imc.test closing connection");
    let report = s.connector.stop().await.expect("was running");
    assert_eq!(report, StopReport::default());
    assert!(report.errors.is_empty());
    assert_eq!(report.status, 0);
}

/// KB-5: starting again recreates IN (event 1002) and mail flows.
#[tokio::test]
async fn kb5_start_again_recreates_in_and_accepts_mail() {
    let mut s = Spooled::start().await;
    std::fs::remove_dir(s.in_dir()).unwrap();
    assert_eq!(s.connector.stop().await, Some(kb4_errors("imc.test")));
    s.drain_events();
    s.restart().await;
    assert!(s.in_dir().is_dir());
    let e = s.event(1002).await;
    assert_eq!(
        e.message,
        format!(
            "The directory {}\\imcdata\\in was missing and has been created.",
            s.root_win()
        )
    );
    assert_eq!(
        (e.level, e.category.as_str()),
        (Level::Warning, "Service Control")
    );
    s.event(1000).await;
    let mut c = s.session().await;
    assert_eq!(c.mail(b"Subject: after kb5\r\n\r\nx\r\n").await, "250 OK");
    assert_eq!(s.in_files(), ["00000001"]);
}

/// The whole article in order: a call in flight when IN vanishes (KB-3), new
/// calls refused (KB-2), a faulted stop (KB-4), a start that recreates IN and
/// clears the stale work file (KB-5), and mail flowing again through work (KB-6).
#[tokio::test]
async fn the_whole_article() {
    let mut s = Spooled::start().await;
    let mut c = s.session().await;
    c.envelope().await;
    assert_eq!(c.cmd("DATA").await, "354 Send data.  End with CRLF.CRLF");
    std::fs::remove_dir(s.in_dir()).unwrap();
    c.send("lost\r\n.\r\n").await;
    assert_eq!(c.reply().await, KB_421);
    s.event(4055).await;
    let mut c = s.connect().await;
    assert_eq!(c.reply().await, KB_421);
    c.expect_closed().await;
    assert_eq!(s.connector.stop().await, Some(kb4_errors("imc.test")));
    s.drain_events();
    s.restart().await;
    // Start logs synchronously: IN recreated, the stale work file removed, started.
    let ids: Vec<u32> = s.drain_events().iter().map(|e| e.id).collect();
    assert_eq!(ids, [1002, 1003, 1000]);
    assert!(s.work_files().is_empty());
    let mut c = s.session().await;
    assert_eq!(c.mail(b"found\r\n").await, "250 OK");
    assert_eq!(s.in_files(), ["00000002"]);
    assert!(s.work_files().is_empty());
    assert_eq!(s.connector.stop().await, Some(StopReport::default()));
}

/// The hardened profile refuses MAIL on low disk (452 4.3.1) and logs entering
/// the low-space state and leaving it once each (4101, 4102), like flush mode,
/// with no periodic check (`disk_check_interval` 0) and no event per refusal.
#[tokio::test]
async fn hardened_logs_entering_and_leaving_low_space_once_each() {
    const NO_SPACE: &str = "452 4.3.1 Insufficient system storage";
    const SENDER_OK: &str = "250 2.1.0 Sender OK";
    let fs = TestFs::default();
    let mut s = Spooled::start_hardened(|c| c.low_water_mark = 10_000, Some(fs.clone())).await;
    assert!(s.connector.config().disk_check_interval.is_zero());
    s.event(1000).await;
    let mut c = s.connect().await;
    assert_eq!(c.reply().await, "220 imc.test ESMTP imc ready");
    assert!(c.cmd("EHLO client.example").await.starts_with("250-"));
    fs.set_free(9_999);
    for _ in 0..3 {
        assert_eq!(c.cmd("MAIL FROM:<alice@example.org>").await, NO_SPACE);
    }
    // A SIZE that does not fit is refused without entering the state again.
    fs.set_free(10_500);
    let events = s.drain_events();
    let ids: Vec<u32> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids, [4101], "{events:?}");
    assert!(events[0].message.starts_with(
        "Free space on the spool volume (9999 bytes) is below the low-water mark (10000 bytes)."
    ));
    assert_eq!(
        c.cmd("MAIL FROM:<alice@example.org> SIZE=1000").await,
        NO_SPACE
    );
    let events = s.drain_events();
    let ids: Vec<u32> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids, [4102], "{events:?}");
    for _ in 0..2 {
        assert_eq!(c.cmd("MAIL FROM:<alice@example.org>").await, SENDER_OK);
        assert_eq!(c.cmd("RSET").await, "250 2.0.0 OK");
    }
    assert!(s.drain_events().is_empty());
}
