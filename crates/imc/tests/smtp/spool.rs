//! The spool: where messages land, in what order the disk is touched (KB-6), and
//! what happens when the disk or the client fails.

use crate::support::{KB_421, Spooled, TestFs, message};
use imc::Level;

#[tokio::test]
async fn an_accepted_message_is_in_in_and_work_is_empty() {
    let s = Spooled::start().await;
    let mut c = s.session().await;
    assert!(s.in_files().is_empty());
    c.envelope().await;
    assert_eq!(c.cmd("DATA").await, "354 Send data.  End with CRLF.CRLF");
    // Received into work/ while the text streams.
    assert_eq!(s.work_files(), ["00000001"]);
    assert!(s.in_files().is_empty());
    c.send("Subject: one\r\n\r\nbody\r\n.\r\n").await;
    assert_eq!(c.reply().await, "250 OK");
    assert_eq!(s.in_files(), ["00000001"]);
    assert!(s.work_files().is_empty());
}

#[tokio::test]
async fn ids_follow_the_counter_across_sessions() {
    let s = Spooled::start().await;
    let mut a = s.session().await;
    let mut b = s.session().await;
    // A takes id 1 at its DATA; B's whole message (id 2) lands before A's ends.
    a.envelope().await;
    assert_eq!(a.cmd("DATA").await, "354 Send data.  End with CRLF.CRLF");
    a.send("from a, part one\r\n").await;
    assert_eq!(b.mail(b"from b\r\n").await, "250 OK");
    assert_eq!(s.in_files(), ["00000002"]);
    a.send("from a, part two\r\n.\r\n").await;
    assert_eq!(a.reply().await, "250 OK");
    assert_eq!(a.mail(b"a again\r\n").await, "250 OK");
    assert_eq!(s.in_files(), ["00000001", "00000002", "00000003"]);
    assert!(
        s.stored("00000001")
            .ends_with(b"from a, part one\r\nfrom a, part two\r\n")
    );
    assert!(s.stored("00000002").ends_with(b"\r\nfrom b\r\n"));
    assert!(
        s.stored("00000002")
            .windows(11)
            .any(|w| w == b"id 00000002")
    );
}

/// KB-6: "messages are first written under imcdata\work and then moved to
/// imcdata\in"; and the 250 comes only after the file and IN are flushed.
#[tokio::test]
async fn kb6_work_then_in_then_250() {
    let fs = TestFs::default();
    let s = Spooled::start_with(|_| {}, Some(fs.clone())).await;
    let mut c = s.session().await;
    fs.clear_ops();
    assert_eq!(c.mail(b"Subject: kb6\r\n\r\nbody\r\n").await, "250 OK");
    // Read at the moment the 250 arrived: every step is already done.
    assert_eq!(
        fs.ops(),
        [
            "create imcdata/work/00000001",
            "write imcdata/work/00000001",
            "sync imcdata/work/00000001",
            "rename imcdata/work/00000001 imcdata/in/00000001",
            "sync_dir imcdata/in",
        ]
    );
}

#[tokio::test]
async fn kb6_a_large_message_is_streamed_into_work_before_the_move() {
    let fs = TestFs::default();
    let s = Spooled::start_with(|_| {}, Some(fs.clone())).await;
    let mut c = s.session().await;
    fs.clear_ops();
    let text = message(2048, 100); // 200 KiB: several chunks
    assert_eq!(c.mail(&text).await, "250 OK");
    let ops = fs.ops();
    let writes = ops
        .iter()
        .filter(|o| *o == "write imcdata/work/00000001")
        .count();
    assert!(writes >= 3, "{ops:?}");
    let mut expected = vec!["create imcdata/work/00000001".to_string()];
    expected.extend(std::iter::repeat_n(
        "write imcdata/work/00000001".to_string(),
        writes,
    ));
    expected.extend([
        "sync imcdata/work/00000001".to_string(),
        "rename imcdata/work/00000001 imcdata/in/00000001".to_string(),
        "sync_dir imcdata/in".to_string(),
    ]);
    assert_eq!(ops, expected);
    assert!(s.stored("00000001").ends_with(&text));
}

#[tokio::test]
async fn a_write_without_space_gets_the_kb_421() {
    let fs = TestFs::default();
    let mut s = Spooled::start_with(|_| {}, Some(fs.clone())).await;
    fs.fail_writes(libc::ENOSPC);
    // Small (failing at the last write, after the dot) and large (failing
    // mid-stream; the rest is read up to the dot): both get the 421 after the dot.
    for (n, text) in [(1, message(3, 50)), (2, message(2048, 100))] {
        let mut c = s.session().await;
        assert_eq!(c.mail(&text).await, KB_421);
        c.expect_closed().await;
        let e = s.event(4070).await;
        assert_eq!(e.source, "MSExchangeIMC");
        assert_eq!(e.level, Level::Error);
        assert_eq!(e.category, "Internal Processing");
        assert_eq!(
            e.message,
            format!(
                "Unable to write file {}\\imcdata\\work\\{n:08X} due to system error. There is not enough space on the disk.",
                s.root_win()
            )
        );
        assert!(s.in_files().is_empty());
    }
    // Space back: mail flows again.
    fs.fail_writes(0);
    let mut c = s.session().await;
    assert_eq!(c.mail(b"x\r\n").await, "250 OK");
    assert_eq!(s.in_files(), ["00000003"]);
}

#[tokio::test]
async fn an_io_error_on_write_gets_the_kb_421() {
    let fs = TestFs::default();
    let mut s = Spooled::start_with(|_| {}, Some(fs.clone())).await;
    fs.fail_writes(libc::EIO);
    let mut c = s.session().await;
    assert_eq!(c.mail(b"x\r\n").await, KB_421);
    c.expect_closed().await;
    assert!(s.event(4070).await.message.ends_with(
        "due to system error. The request could not be performed because of an I/O device error."
    ));
    assert!(s.in_files().is_empty());
}

#[tokio::test]
async fn a_failed_flush_of_in_gets_421_and_leaves_nothing_in_in() {
    // The move happened but could not be made durable: the client is told to
    // retry, so the message must not stay in IN to be delivered a second time.
    let fs = TestFs::default();
    let mut s = Spooled::start_with(|_| {}, Some(fs.clone())).await;
    fs.fail_sync_dir(libc::EIO);
    let mut c = s.session().await;
    assert_eq!(c.mail(b"Subject: twice?\r\n\r\nx\r\n").await, KB_421);
    c.expect_closed().await;
    assert_eq!(
        s.event(4070).await.message,
        format!(
            "Unable to make the message 00000001 ({}\\imcdata\\in\\00000001) durable, as a directory flush failed due to system error. The request could not be performed because of an I/O device error.",
            s.root_win()
        )
    );
    assert!(s.in_files().is_empty(), "{:?}", s.in_files());
}

#[tokio::test]
async fn a_client_reset_mid_data_leaves_no_work_file() {
    let fs = TestFs::default();
    let s = Spooled::start_with(|_| {}, Some(fs.clone())).await;
    let mut c = s.session().await;
    c.envelope().await;
    assert_eq!(c.cmd("DATA").await, "354 Send data.  End with CRLF.CRLF");
    c.send("Subject: cut\r\n\r\npart").await;
    c.reset();
    fs.wait_for_op("remove imcdata/work/00000001").await;
    assert!(s.work_files().is_empty());
    assert!(s.in_files().is_empty());
}

#[tokio::test]
async fn a_client_closing_mid_data_leaves_no_work_file() {
    let fs = TestFs::default();
    let s = Spooled::start_with(|_| {}, Some(fs.clone())).await;
    let mut c = s.session().await;
    c.envelope().await;
    assert_eq!(c.cmd("DATA").await, "354 Send data.  End with CRLF.CRLF");
    c.send("Subject: cut\r\n\r\npart\r\n").await;
    drop(c);
    fs.wait_for_op("remove imcdata/work/00000001").await;
    assert!(s.work_files().is_empty());
    assert!(s.in_files().is_empty());
}

#[tokio::test]
async fn a_missing_work_directory_refuses_data_with_the_kb_421() {
    let mut s = Spooled::start().await;
    let mut c = s.session().await;
    c.envelope().await;
    std::fs::remove_dir(s.work_dir()).unwrap();
    // The work file cannot be created: no 354, the 421 at once.
    assert_eq!(c.cmd("DATA").await, KB_421);
    c.expect_closed().await;
    assert_eq!(
        s.event(4070).await.message,
        format!(
            "Unable to write file {}\\imcdata\\work\\00000001 due to system error. The system cannot find the path specified.",
            s.root_win()
        )
    );
    assert!(s.in_files().is_empty());
    // A restart recreates it.
    s.connector.stop().await.unwrap();
    s.restart().await;
    assert!(s.work_dir().is_dir());
    let mut c = s.session().await;
    assert_eq!(c.mail(b"x\r\n").await, "250 OK");
}

/// One hardened transaction; the reply to the dot.
async fn hardened_message(c: &mut crate::support::Client, subject: &str) -> String {
    assert_eq!(
        c.cmd("MAIL FROM:<alice@example.org>").await,
        "250 2.1.0 Sender OK"
    );
    assert_eq!(
        c.cmd("RCPT TO:<bob@example.net>").await,
        "250 2.1.5 Recipient OK"
    );
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.cmd(&format!("Subject: {subject}\r\n\r\nHello.\r\n."))
        .await
}

/// Durable before 250: IN recreated by the hardened profile while imcdata cannot
/// be flushed is never used for acknowledged mail, since a crash would take it
/// along; once imcdata can be flushed, the 250 comes after that flush.
#[tokio::test]
async fn a_recreated_in_whose_entry_is_not_durable_gets_no_acknowledged_mail() {
    const LOCAL_ERROR: &str = "451 4.3.0 Requested action aborted: local error in processing";
    let fs = TestFs::default();
    let mut s = Spooled::start_hardened(|_| {}, Some(fs.clone())).await;
    std::fs::remove_dir(s.in_dir()).unwrap();
    fs.fail_sync_dir_of("imcdata", libc::EIO);
    let mut c = s.connect().await;
    assert_eq!(c.reply().await, "220 imc.test ESMTP imc ready");
    assert!(c.cmd("EHLO client.example").await.starts_with("250-"));
    // IN is created, but its entry cannot be made durable: refused.
    assert_eq!(hardened_message(&mut c, "first").await, LOCAL_ERROR);
    assert!(s.in_dir().is_dir());
    // IN exists now; it still is not durable, so the next message is refused too,
    // before it is moved into IN (the client keeps it), and the log says which.
    assert_eq!(hardened_message(&mut c, "second").await, LOCAL_ERROR);
    let e = s.event(4070).await;
    assert!(
        e.message
            .starts_with("Unable to make the message 00000002 (")
            && e.message.contains("\\imcdata\\work\\00000002) durable"),
        "{}",
        e.message
    );
    assert!(s.in_files().is_empty());
    assert!(s.work_files().is_empty());
    // The flush works again: it is done before the move, and so before the 250.
    fs.fail_sync_dir(0);
    fs.clear_ops();
    assert!(
        hardened_message(&mut c, "third")
            .await
            .starts_with("250 2.0.0 OK queued as")
    );
    let ops = fs.ops();
    let tail: Vec<&str> = ops.iter().map(String::as_str).rev().take(3).collect();
    assert_eq!(
        tail,
        [
            "sync_dir imcdata/in",
            "rename imcdata/work/00000003 imcdata/in/00000003",
            "sync_dir imcdata",
        ],
        "{ops:?}"
    );
    // Once durable, IN's parent is not flushed again for every message.
    fs.clear_ops();
    assert!(hardened_message(&mut c, "fourth").await.starts_with("250"));
    assert!(
        !fs.ops().contains(&"sync_dir imcdata".to_string()),
        "{:?}",
        fs.ops()
    );
}

/// IN renamed away (a backup job) right after the move into it and before its
/// flush: the flush goes through the handle the move went through, so the
/// message's entry is durable in the renamed directory and it is acknowledged,
/// in both profiles. It used to be refused (421 / 451) while it stayed in the
/// renamed IN, which the backup job puts back: a duplicate of a refused message.
#[tokio::test]
async fn in_renamed_between_the_move_and_its_flush_keeps_the_message_accepted() {
    for hardened in [false, true] {
        let fs = TestFs::default();
        let mut s = if hardened {
            Spooled::start_hardened(|_| {}, Some(fs.clone())).await
        } else {
            Spooled::start_with(|_| {}, Some(fs.clone())).await
        };
        let (in_dir, backup) = (s.in_dir(), s.in_dir().with_file_name("in.bak"));
        let moved = backup.clone();
        fs.after_op(
            "rename imcdata/work/00000001 imcdata/in/00000001",
            move || std::fs::rename(&in_dir, &moved).unwrap(),
        );
        let reply = if hardened {
            let mut c = s.connect().await;
            assert_eq!(c.reply().await, "220 imc.test ESMTP imc ready");
            assert!(c.cmd("EHLO client.example").await.starts_with("250-"));
            hardened_message(&mut c, "backup").await
        } else {
            let mut c = s.session().await;
            c.mail(b"Subject: backup\r\n\r\nx\r\n").await
        };
        assert!(
            reply.starts_with("250"),
            "hardened {hardened}: {reply}; {:?}",
            s.drain_events()
        );
        assert!(backup.join("00000001").is_file(), "hardened {hardened}");
        let ops = fs.ops();
        let tail: Vec<&str> = ops.iter().map(String::as_str).rev().take(2).collect();
        assert_eq!(
            tail,
            [
                "sync_dir imcdata/in",
                "rename imcdata/work/00000001 imcdata/in/00000001"
            ],
            "hardened {hardened}: {ops:?}"
        );
    }
}
