//! HELO/EHLO, MAIL and RCPT arguments by RFC 5321's grammar: every control byte
//! in every field is refused with 501 and nothing of it reaches the spool; what
//! real clients send (the null sender, SIZE/BODY, address literals, quoted local
//! parts, source routes) is accepted and stored as printable text.

use crate::support::{Client, Spooled};

/// The bytes no field may hold: C0 controls and DEL.
fn controls() -> impl Iterator<Item = u8> {
    (0u8..0x20).chain([0x7F])
}

/// One profile's replies to the refusals.
struct Refusals {
    greeting: &'static str,
    helo_ok: &'static str,
    mail_ok: &'static str,
    syntax: &'static str,
    bad_sender: &'static str,
    bad_recipient: &'static str,
    bad_sequence: &'static str,
    unrecognized: &'static str,
}

const EXCHANGE: Refusals = Refusals {
    greeting: "220 imc.test Microsoft Exchange Internet Mail Connector ready",
    helo_ok: "250 imc.test",
    mail_ok: "250 OK - mail from accepted",
    syntax: "501 Syntax error in parameters or arguments",
    bad_sender: "501 Syntax error in parameters or arguments",
    bad_recipient: "501 Syntax error in parameters or arguments",
    bad_sequence: "503 Bad sequence of commands",
    unrecognized: "500 Syntax error, command unrecognized",
};

const HARDENED: Refusals = Refusals {
    greeting: "220 imc.test ESMTP imc ready",
    helo_ok: "250 imc.test",
    mail_ok: "250 2.1.0 Sender OK",
    syntax: "501 5.5.4 Syntax error in parameters or arguments",
    bad_sender: "501 5.1.7 Bad sender address syntax",
    bad_recipient: "501 5.1.3 Bad recipient address syntax",
    bad_sequence: "503 5.5.1 Bad sequence of commands",
    unrecognized: "500 5.5.2 Syntax error, command unrecognized",
};

/// The fields of a path: each template has one `#` where the byte goes.
const PATH_FIELDS: [(&str, &str); 4] = [
    ("local part", "<al#ice@example.org>"),
    ("domain", "<alice@exam#ple.org>"),
    (
        "source route",
        "<@re#lay.example,@relay2.example:alice@example.org>",
    ),
    ("quoted local part", "<\"al#ice\"@example.org>"),
];

async fn connect(s: &Spooled, r: &Refusals) -> Client {
    let mut c = s.connect().await;
    assert_eq!(c.reply().await, r.greeting);
    c
}

fn with_byte(template: &str, byte: u8) -> Vec<u8> {
    let (a, b) = template.split_once('#').expect("a # in the template");
    [a.as_bytes(), &[byte], b.as_bytes()].concat()
}

async fn every_control_byte_in_every_field(s: Spooled, r: &Refusals) {
    for byte in controls() {
        for verb in ["HELO", "EHLO"] {
            for template in ["cli#ent.example", "[127.0.#0.1]"] {
                let mut c = connect(&s, r).await;
                let line = [verb.as_bytes(), b" ", &with_byte(template, byte), b"\r\n"].concat();
                c.send(&line).await;
                let what = format!("{verb} {template:?} with 0x{byte:02X}");
                if byte == b'\n' {
                    // A bare LF ends the line: two commands, neither holding it.
                    let first = c.reply().await;
                    assert!(
                        first == r.syntax || first.starts_with("250"),
                        "{what}: {first}"
                    );
                    assert_eq!(c.reply().await, r.unrecognized, "{what}");
                    continue;
                }
                assert_eq!(c.reply().await, r.syntax, "{what}");
                // Nothing was taken as the client's name: MAIL is out of sequence.
                assert_eq!(
                    c.cmd("MAIL FROM:<alice@example.org>").await,
                    r.bad_sequence,
                    "{what}"
                );
            }
        }
        let mut c = connect(&s, r).await;
        assert!(c.cmd("EHLO client.example").await.starts_with("250"));
        for (field, template) in PATH_FIELDS {
            let what = format!("{field} with 0x{byte:02X}");
            let path = with_byte(template, byte);
            c.send([b"MAIL FROM:".as_slice(), &path, b"\r\n"].concat())
                .await;
            if byte == b'\n' {
                // Cut at the LF: an unclosed path, then a line that is no command.
                assert_eq!(c.reply().await, r.syntax, "{what}");
                assert_eq!(c.reply().await, r.unrecognized, "{what}");
            } else {
                assert_eq!(c.reply().await, r.bad_sender, "MAIL {what}");
            }
            // No sender was taken.
            assert_eq!(c.cmd("RCPT TO:<bob@example.net>").await, r.bad_sequence);
            assert_eq!(c.cmd("MAIL FROM:<carol@example.org>").await, r.mail_ok);
            c.send([b"RCPT TO:".as_slice(), &path, b"\r\n"].concat())
                .await;
            if byte == b'\n' {
                assert_eq!(c.reply().await, r.syntax, "{what}");
                assert_eq!(c.reply().await, r.unrecognized, "{what}");
            } else {
                assert_eq!(c.reply().await, r.bad_recipient, "RCPT {what}");
            }
            // No recipient was taken.
            assert_eq!(c.cmd("DATA").await, r.bad_sequence, "{what}");
            assert!(c.cmd("RSET").await.starts_with("250"));
        }
    }
    assert!(s.in_files().is_empty());
    assert!(s.work_files().is_empty());
    // The session still works, and what is stored is all printable.
    let mut c = connect(&s, r).await;
    assert_eq!(c.cmd("HELO client.example").await, r.helo_ok);
    assert_eq!(c.cmd("MAIL FROM:<alice@example.org>").await, r.mail_ok);
    assert!(c.cmd("RCPT TO:<bob@example.net>").await.starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("354"));
    assert!(
        c.cmd("Subject: x\r\n\r\nHello.\r\n.")
            .await
            .starts_with("250")
    );
    let stored = s.stored(&s.in_files()[0]);
    let header = &stored[..find(&stored, b"\r\n\r\n")];
    assert!(
        header
            .iter()
            .all(|&b| b == b'\r' || b == b'\n' || b == b'\t' || (0x20..0x7F).contains(&b)),
        "{:?}",
        String::from_utf8_lossy(header)
    );
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("the header's end")
}

#[tokio::test]
async fn every_control_byte_in_every_field_gets_501_exchange() {
    every_control_byte_in_every_field(Spooled::start().await, &EXCHANGE).await;
}

#[tokio::test]
async fn every_control_byte_in_every_field_gets_501_hardened() {
    every_control_byte_in_every_field(Spooled::start_hardened(|_| {}, None).await, &HARDENED).await;
}

/// What real clients send is accepted, and stored as the grammar read it: the
/// source route dropped, a quoted local part kept whole.
#[tokio::test]
async fn what_real_clients_send_is_accepted_and_stored() {
    let s = Spooled::start_hardened(|_| {}, None).await;
    let mut c = connect(&s, &HARDENED).await;
    assert!(c.cmd("EHLO [127.0.0.1]").await.starts_with("250-imc.test"));
    assert!(c.cmd("EHLO [IPv6:::1]").await.starts_with("250-imc.test"));
    assert_eq!(
        c.cmd("MAIL FROM:<> SIZE=100 BODY=8BITMIME").await,
        HARDENED.mail_ok
    );
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 OK");
    assert_eq!(
        c.cmd("MAIL FROM:<@relay.example,@r2.example:alice@example.org>")
            .await,
        HARDENED.mail_ok
    );
    for rcpt in [
        "RCPT TO:<Postmaster>",
        "RCPT TO:<\"bob smith\"@example.net>",
        "RCPT TO: <carol@[192.0.2.1]>",
    ] {
        assert_eq!(c.cmd(rcpt).await, "250 2.1.5 Recipient OK", "{rcpt}");
    }
    assert!(c.cmd("DATA").await.starts_with("354"));
    assert!(c.cmd("Subject: x\r\n\r\nHi.\r\n.").await.starts_with("250"));
    let stored = String::from_utf8(s.stored("00000001")).unwrap();
    assert!(
        stored.starts_with(
            "x-sender: alice@example.org\r\n\
             x-receiver: Postmaster\r\n\
             x-receiver: \"bob smith\"@example.net\r\n\
             x-receiver: carol@[192.0.2.1]\r\n\
             Received: from [IPv6:::1] ([127.0.0.1])\r\n\
             \tby imc.test with ESMTP id 00000001;\r\n"
        ),
        "{stored}"
    );
}

/// Malformed but printable arguments are refused too, each with its reply.
#[tokio::test]
async fn malformed_arguments_get_the_profile_s_501() {
    let s = Spooled::start_hardened(|_| {}, None).await;
    let mut c = connect(&s, &HARDENED).await;
    for helo in [
        "HELO",
        "HELO a b",
        "EHLO -bad.example",
        "EHLO a..b",
        "HELO [1.2.3]",
    ] {
        assert_eq!(c.cmd(helo).await, HARDENED.syntax, "{helo}");
    }
    assert!(c.cmd("EHLO client.example").await.starts_with("250"));
    for (mail, reply) in [
        ("MAIL FROM:alice@example.org", HARDENED.syntax),
        ("MAIL FROM:<alice@example.org", HARDENED.syntax),
        ("MAIL FROM:<alice>", HARDENED.bad_sender),
        ("MAIL FROM:<a..b@example.org>", HARDENED.bad_sender),
        ("MAIL FROM:<alice@example.org>x", HARDENED.syntax),
    ] {
        assert_eq!(c.cmd(mail).await, reply, "{mail}");
    }
    assert_eq!(
        c.cmd("MAIL FROM:<alice@example.org>").await,
        HARDENED.mail_ok
    );
    for rcpt in [
        "RCPT TO:<>",
        "RCPT TO:<@x.example:>",
        "RCPT TO:<bob@-x.example>",
    ] {
        assert_eq!(c.cmd(rcpt).await, HARDENED.bad_recipient, "{rcpt}");
    }
}

/// A library user's host name is checked at start too: it goes into every
/// greeting and trace header.
#[tokio::test]
async fn a_bad_hostname_is_a_start_error() {
    let s = Spooled::build(|c| c.hostname = "mx\r\n250 fake".into(), None);
    let e = s.connector.start().await.expect_err("refused");
    assert!(matches!(e, imc::StartError::Hostname(..)), "{e}");
    assert!(e.to_string().contains("0x0D"), "{e}");
    assert!(s.connector.local_addr().await.is_none());
}
