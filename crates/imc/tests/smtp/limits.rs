//! Line limits, the message size limit, the recipient limit and idle timeouts.

use crate::support::{Spooled, guard, message};
use imc::{MAX_COMMAND_LINE, MAX_TEXT_LINE};
use std::time::Duration;
// The timeouts are measured on tokio's paused clock: only the connector's own
// timers move it, so a loaded machine cannot make a reply late or early.
use tokio::time::Instant;

const TOO_LONG: &str = "500 Line too long";

#[tokio::test]
async fn the_command_line_limit_is_512_octets_with_the_crlf() {
    assert_eq!(MAX_COMMAND_LINE, 512);
    let s = Spooled::start().await;
    let mut c = s.session().await;
    let noop = |len: usize| format!("NOOP {}", "x".repeat(len - 5));
    // 510 characters + CRLF = 512 octets: accepted.
    assert_eq!(c.cmd(&noop(510)).await, "250 OK");
    // 511 + CRLF = 513: refused, and the session goes on.
    assert_eq!(c.cmd(&noop(511)).await, TOO_LONG);
    assert_eq!(c.cmd("NOOP").await, "250 OK");
    // A real command at the limit works; one octet more is refused whole.
    let local = "a".repeat(510 - "MAIL FROM:<@example.org>".len());
    let mail = format!("MAIL FROM:<{local}@example.org>");
    assert_eq!(mail.len(), 510);
    assert_eq!(c.cmd(&mail.replace("@", "b@")).await, TOO_LONG);
    assert_eq!(c.cmd(&mail).await, "250 OK - mail from accepted");
}

#[tokio::test]
async fn a_huge_command_line_is_refused_once_and_the_session_goes_on() {
    let s = Spooled::start().await;
    let mut c = s.session().await;
    // 100 kB with no line end within the limit, then the rest of the line and a
    // pipelined NOOP: one 500 for the whole line, then the NOOP's reply.
    c.send(format!("NOOP {}\r\nNOOP\r\n", "y".repeat(100_000)))
        .await;
    assert_eq!(c.reply().await, TOO_LONG);
    assert_eq!(c.reply().await, "250 OK");
}

#[tokio::test]
async fn the_text_line_limit_is_1000_octets_with_the_crlf() {
    assert_eq!(MAX_TEXT_LINE, 1000);
    let s = Spooled::start().await;
    let mut c = s.session().await;
    // 998 + CRLF: accepted.
    let ok = format!("{}\r\n", "a".repeat(998));
    assert_eq!(c.mail(ok.as_bytes()).await, "250 OK");
    assert!(s.stored("00000001").ends_with(ok.as_bytes()));
    // 999 + CRLF: the whole message is refused after the dot, nothing is kept.
    let long = format!("first\r\n{}\r\nlast\r\n", "b".repeat(999));
    assert_eq!(
        c.mail(long.as_bytes()).await,
        "554 Transaction failed: line too long"
    );
    assert_eq!(s.in_files(), ["00000001"]);
    assert!(s.work_files().is_empty());
    // The session is still usable.
    assert_eq!(c.mail(b"short\r\n").await, "250 OK");
    assert_eq!(s.in_files().len(), 2);
}

#[tokio::test]
async fn the_transparency_dot_does_not_count_toward_the_text_line_limit() {
    // RFC 5321 4.5.3.1.6: 1000 octets "not counting the leading dot duplicated
    // for transparency": a 1000-octet line starting with a dot is 1001 on the wire.
    let s = Spooled::start().await;
    let mut c = s.session().await;
    let line = format!(".{}\r\n", "c".repeat(997));
    assert_eq!(line.len(), 1000);
    assert_eq!(c.mail(format!(".{line}").as_bytes()).await, "250 OK");
    assert!(s.stored("00000001").ends_with(line.as_bytes()));
    // One more octet is over the limit.
    let over = format!("..{}\r\n", "c".repeat(998));
    assert_eq!(
        c.mail(over.as_bytes()).await,
        "554 Transaction failed: line too long"
    );
    assert_eq!(s.in_files(), ["00000001"]);
}

#[tokio::test]
async fn the_maximum_message_size_is_checked_after_unstuffing() {
    let s = Spooled::start_with(|c| c.max_message_size = 1000, None).await;
    let mut c = s.session().await;
    // Exactly the maximum: accepted.
    let exact = message(10, 100);
    assert_eq!(exact.len(), 1000);
    assert_eq!(c.mail(&exact).await, "250 OK");
    // Dot-stuffed: 1010 octets on the wire, 1000 after unstuffing: accepted.
    let stuffed: Vec<u8> = exact
        .split_inclusive(|&b| b == b'\n')
        .flat_map(|l| [b".".as_slice(), &l[..98], b"\r\n"].concat())
        .collect();
    assert_eq!(stuffed.len(), 1010);
    assert_eq!(c.mail(&stuffed).await, "250 OK");
    // One octet over: 552 after the dot, nothing kept anywhere.
    let over = [message(9, 100), message(1, 101)].concat();
    assert_eq!(over.len(), 1001);
    assert_eq!(
        c.mail(&over).await,
        "552 Message size exceeds fixed maximum message size"
    );
    assert_eq!(s.in_files(), ["00000001", "00000002"]);
    assert!(s.work_files().is_empty());
    // Far over (streamed, not buffered): the same, and the session goes on.
    assert_eq!(
        c.mail(&message(3000, 100)).await,
        "552 Message size exceeds fixed maximum message size"
    );
    assert_eq!(c.cmd("NOOP").await, "250 OK");
    assert_eq!(s.in_files().len(), 2);
}

#[tokio::test]
async fn a_declared_size_over_the_maximum_is_refused_at_mail() {
    let s = Spooled::start_with(|c| c.max_message_size = 1000, None).await;
    let mut c = s.session().await;
    assert_eq!(
        c.cmd("MAIL FROM:<alice@example.org> SIZE=1001").await,
        "552 Message size exceeds fixed maximum message size"
    );
    // No transaction was opened.
    assert_eq!(
        c.cmd("RCPT TO:<bob@example.net>").await,
        "503 Bad sequence of commands"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<alice@example.org> SIZE=1000").await,
        "250 OK - mail from accepted"
    );
}

#[tokio::test]
async fn the_recipient_limit() {
    let s = Spooled::start_with(|c| c.max_recipients = 3, None).await;
    let mut c = s.session().await;
    assert_eq!(
        c.cmd("MAIL FROM:<alice@example.org>").await,
        "250 OK - mail from accepted"
    );
    for i in 0..3 {
        assert_eq!(
            c.cmd(&format!("RCPT TO:<r{i}@example.net>")).await,
            "250 OK - recipient accepted"
        );
    }
    assert_eq!(
        c.cmd("RCPT TO:<r3@example.net>").await,
        "452 Too many recipients"
    );
    assert_eq!(
        c.cmd("RCPT TO:<r4@example.net>").await,
        "452 Too many recipients"
    );
    // The transaction goes on with the three.
    assert_eq!(c.data(b"x\r\n").await, "250 OK");
    // A new transaction has a fresh count.
    assert_eq!(
        c.cmd("MAIL FROM:<alice@example.org>").await,
        "250 OK - mail from accepted"
    );
    for i in 0..3 {
        assert_eq!(
            c.cmd(&format!("RCPT TO:<s{i}@example.net>")).await,
            "250 OK - recipient accepted"
        );
    }
}

#[tokio::test]
async fn the_default_recipient_limit_is_100() {
    let s = Spooled::start().await;
    let mut c = s.session().await;
    let mut batch = String::from("MAIL FROM:<alice@example.org>\r\n");
    for i in 0..101 {
        batch.push_str(&format!("RCPT TO:<r{i}@example.net>\r\n"));
    }
    c.send(batch).await;
    assert_eq!(c.reply().await, "250 OK - mail from accepted");
    for i in 0..100 {
        assert_eq!(c.reply().await, "250 OK - recipient accepted", "{i}");
    }
    assert_eq!(c.reply().await, "452 Too many recipients");
}

const TIMEOUT: Duration = Duration::from_millis(300);
const TIMED_OUT: &str = "421 imc.test Timeout, closing connection";

/// The timeout fired one timeout after `idle` began, to the timer wheel's
/// millisecond, on the paused clock.
fn assert_fired_after_timeout(idle: Instant) {
    let waited = idle.elapsed();
    assert!(
        waited >= TIMEOUT && waited <= TIMEOUT + Duration::from_millis(1),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_client_is_told_421_and_closed() {
    let s = Spooled::start_with(|c| c.command_timeout = TIMEOUT, None).await;
    let mut c = s.connect().await;
    c.greeting().await;
    let idle = Instant::now();
    assert_eq!(c.reply().await, TIMED_OUT);
    assert_fired_after_timeout(idle);
    c.expect_closed().await;
}

#[tokio::test(start_paused = true)]
async fn the_timeout_is_per_command_not_per_session() {
    let s = Spooled::start_with(|c| c.command_timeout = TIMEOUT, None).await;
    let mut c = s.session().await;
    // Busy for three timeouts, a command just before each timeout would fire:
    // a session-wide timer would have fired.
    let busy = Instant::now();
    while busy.elapsed() < 3 * TIMEOUT {
        tokio::time::advance(TIMEOUT - Duration::from_millis(1)).await;
        assert_eq!(c.cmd("NOOP").await, "250 OK");
    }
    let idle = Instant::now();
    assert_eq!(c.reply().await, TIMED_OUT);
    assert_fired_after_timeout(idle);
    c.expect_closed().await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_client_in_data_is_told_421_and_its_partial_message_dropped() {
    let s = Spooled::start_with(|c| c.command_timeout = TIMEOUT, None).await;
    let mut c = s.session().await;
    c.envelope().await;
    assert_eq!(c.cmd("DATA").await, "354 Send data.  End with CRLF.CRLF");
    assert_eq!(s.work_files(), ["00000001"]);
    c.send("Subject: never finished\r\n\r\npartial").await;
    let idle = Instant::now();
    assert_eq!(c.reply().await, TIMED_OUT);
    assert_fired_after_timeout(idle);
    c.expect_closed().await;
    assert!(s.in_files().is_empty());
    assert!(s.work_files().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_cut_after_the_timeout() {
    let s = Spooled::start_with(|c| c.command_timeout = TIMEOUT, None).await;
    let mut c = s.session().await;
    // 48 MiB of NOOPs whose 64 MiB of replies are never read: they outgrow the
    // socket buffers, so the server blocks writing; the timeout must apply there
    // too, or the session (and any stop) waits for this client forever.
    let flood = "NOOP\r\n".repeat(8 << 20);
    let sent = guard("the server giving up on the client", c.try_send(flood)).await;
    assert!(
        sent.is_err(),
        "the server read 48 MiB of commands without being read"
    );
}
