//! The command state machine and its replies, byte for byte.

use crate::support::Spooled;

const SYNTAX: &str = "501 Syntax error in parameters or arguments";
const SEQUENCE: &str = "503 Bad sequence of commands";
const MAIL_OK: &str = "250 OK - mail from accepted";
const RCPT_OK: &str = "250 OK - recipient accepted";

#[tokio::test]
async fn greeting_helo_and_ehlo() {
    let s = Spooled::start().await;
    let mut c = s.connect().await;
    c.greeting().await;
    assert_eq!(c.cmd("HELO client.example").await, "250 imc.test");
    // A multi-line reply: `250-` on every line but the last, `250 ` on the last.
    assert_eq!(
        c.cmd("EHLO client.example").await,
        "250-imc.test\n250-SIZE 10485760\n250 HELP"
    );
    // Verbs are case-insensitive.
    assert_eq!(c.cmd("ehlo client.example").await.lines().count(), 3);
    assert_eq!(c.cmd("HELO").await, SYNTAX);
    assert_eq!(c.cmd("EHLO").await, SYNTAX);
    assert_eq!(c.cmd("HELO two words").await, SYNTAX);
}

#[tokio::test]
async fn ehlo_advertises_the_configured_size() {
    let s = Spooled::start_with(|c| c.max_message_size = 4096, None).await;
    let mut c = s.connect().await;
    c.greeting().await;
    assert_eq!(
        c.cmd("EHLO client.example").await,
        "250-imc.test\n250-SIZE 4096\n250 HELP"
    );
}

#[tokio::test]
async fn mail_needs_a_helo_first_and_only_once() {
    let s = Spooled::start().await;
    let mut c = s.connect().await;
    c.greeting().await;
    assert_eq!(c.cmd("MAIL FROM:<alice@example.org>").await, SEQUENCE);
    assert_eq!(c.cmd("HELO client.example").await, "250 imc.test");
    assert_eq!(c.cmd("MAIL FROM:<alice@example.org>").await, MAIL_OK);
    assert_eq!(c.cmd("MAIL FROM:<alice@example.org>").await, SEQUENCE);
}

#[tokio::test]
async fn mail_syntax() {
    let s = Spooled::start().await;
    let mut c = s.session().await;
    for bad in [
        "MAIL",
        "MAIL FROM:",
        "MAIL FROM:alice@example.org",
        "MAIL FROM:<alice@example.org",
        "MAIL FROM:<alice>",
        "MAIL FROM:<@example.org>",
        "MAIL FROM:<al ice@example.org>",
        "MAIL TO:<alice@example.org>",
        "MAIL FROM:<alice@example.org>SIZE=10",
        "MAIL FROM:<alice@example.org> SIZE=ten",
    ] {
        assert_eq!(c.cmd(bad).await, SYNTAX, "{bad}");
    }
    // None of those opened a transaction.
    assert_eq!(c.cmd("RCPT TO:<bob@example.net>").await, SEQUENCE);
}

#[tokio::test]
async fn mail_parameters() {
    let s = Spooled::start().await;
    let mut c = s.session().await;
    let unknown = "555 MAIL FROM/RCPT TO parameters not recognized or not implemented";
    assert_eq!(
        c.cmd("MAIL FROM:<alice@example.org> FOO=BAR").await,
        unknown
    );
    assert_eq!(
        c.cmd("MAIL FROM:<alice@example.org> BODY=BINARYMIME").await,
        unknown
    );
    assert_eq!(
        c.cmd("MAIL FROM:<alice@example.org> SIZE=100").await,
        MAIL_OK
    );
    assert_eq!(c.cmd("RSET").await, "250 OK");
    assert_eq!(
        c.cmd("mail from:<alice@example.org> size=100 body=8bitmime")
            .await,
        MAIL_OK
    );
    assert_eq!(c.cmd("RSET").await, "250 OK");
    // A source route is accepted (and ignored).
    assert_eq!(
        c.cmd("MAIL FROM:<@relay.example:alice@example.org>").await,
        MAIL_OK
    );
}

#[tokio::test]
async fn null_sender_is_accepted_and_delivered() {
    let s = Spooled::start().await;
    let mut c = s.session().await;
    assert_eq!(c.cmd("MAIL FROM:<>").await, MAIL_OK);
    assert_eq!(c.cmd("RCPT TO:<bob@example.net>").await, RCPT_OK);
    assert_eq!(c.data(b"Subject: bounce\r\n\r\nx\r\n").await, "250 OK");
    assert_eq!(s.in_files(), ["00000001"]);
}

#[tokio::test]
async fn rcpt() {
    let s = Spooled::start().await;
    let mut c = s.session().await;
    assert_eq!(c.cmd("RCPT TO:<bob@example.net>").await, SEQUENCE);
    assert_eq!(c.cmd("MAIL FROM:<alice@example.org>").await, MAIL_OK);
    for bad in [
        "RCPT",
        "RCPT TO:bob@example.net",
        "RCPT TO:<bob>",
        "RCPT FROM:<bob@example.net>",
        "RCPT TO:<bob@example.net",
    ] {
        assert_eq!(c.cmd(bad).await, SYNTAX, "{bad}");
    }
    assert_eq!(
        c.cmd("RCPT TO:<bob@example.net> NOTIFY=NEVER").await,
        "555 MAIL FROM/RCPT TO parameters not recognized or not implemented"
    );
    assert_eq!(c.cmd("RCPT TO:<postmaster>").await, RCPT_OK);
    assert_eq!(c.cmd("rcpt to:<Bob@Example.NET>").await, RCPT_OK);
}

#[tokio::test]
async fn data_sequence_and_syntax() {
    let s = Spooled::start().await;
    let mut c = s.session().await;
    assert_eq!(c.cmd("DATA").await, SEQUENCE);
    assert_eq!(c.cmd("MAIL FROM:<alice@example.org>").await, MAIL_OK);
    assert_eq!(c.cmd("DATA").await, SEQUENCE);
    assert_eq!(c.cmd("RCPT TO:<bob@example.net>").await, RCPT_OK);
    assert_eq!(c.cmd("DATA now").await, SYNTAX);
    // Refused DATA left the transaction intact.
    assert_eq!(c.data(b"x\r\n").await, "250 OK");
    // The transaction ends with the dot: DATA again needs a new envelope.
    assert_eq!(c.cmd("DATA").await, SEQUENCE);
    assert_eq!(c.cmd("RCPT TO:<bob@example.net>").await, SEQUENCE);
    assert!(s.work_files().is_empty());
}

#[tokio::test]
async fn rset_and_helo_clear_the_transaction() {
    let s = Spooled::start().await;
    let mut c = s.session().await;
    c.envelope().await;
    assert_eq!(c.cmd("RSET now").await, SYNTAX);
    assert_eq!(c.cmd("RSET").await, "250 OK");
    assert_eq!(c.cmd("DATA").await, SEQUENCE);
    assert_eq!(c.cmd("RCPT TO:<bob@example.net>").await, SEQUENCE);
    c.envelope().await;
    assert_eq!(c.cmd("HELO again.example").await, "250 imc.test");
    assert_eq!(c.cmd("DATA").await, SEQUENCE);
    // RSET keeps the HELO: a new transaction may start at once.
    assert_eq!(c.cmd("RSET").await, "250 OK");
    assert_eq!(c.cmd("MAIL FROM:<alice@example.org>").await, MAIL_OK);
}

#[tokio::test]
async fn noop_vrfy_help_expn_unknown() {
    let s = Spooled::start().await;
    let mut c = s.connect().await;
    c.greeting().await;
    // These need no HELO.
    assert_eq!(c.cmd("NOOP").await, "250 OK");
    assert_eq!(c.cmd("NOOP with an argument").await, "250 OK");
    assert_eq!(
        c.cmd("VRFY bob").await,
        "252 Cannot VRFY user, but will accept message and attempt delivery"
    );
    assert_eq!(c.cmd("VRFY").await, SYNTAX);
    assert_eq!(
        c.cmd("HELP").await,
        "214 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT"
    );
    assert_eq!(c.cmd("HELP MAIL").await.get(..4), Some("214 "));
    for verb in ["EXPN staff", "TURN", "SEND FROM:<a@b.c>", "SOML", "SAML"] {
        assert_eq!(c.cmd(verb).await, "502 Command not implemented", "{verb}");
    }
    for unknown in ["FOO", "", "MAILFROM:<a@b.c>", "STARTTLS", "AUTH PLAIN"] {
        assert_eq!(
            c.cmd(unknown).await,
            "500 Syntax error, command unrecognized",
            "{unknown:?}"
        );
    }
    // Still answering after all of that.
    assert_eq!(c.cmd("noop").await, "250 OK");
}

#[tokio::test]
async fn quit_replies_221_and_closes() {
    let s = Spooled::start().await;
    let mut c = s.session().await;
    c.envelope().await;
    assert_eq!(c.cmd("QUIT").await, "221 imc.test closing connection");
    c.expect_closed().await;
    // QUIT in the middle of a transaction delivers nothing.
    assert!(s.in_files().is_empty());
    assert!(s.work_files().is_empty());
}

#[tokio::test]
async fn quit_before_helo() {
    let s = Spooled::start().await;
    let mut c = s.connect().await;
    c.greeting().await;
    assert_eq!(c.cmd("quit").await, "221 imc.test closing connection");
    c.expect_closed().await;
}

#[tokio::test]
async fn a_configured_hostname_is_used_everywhere() {
    let s = Spooled::start_with(|c| c.hostname = "mail.example.com".into(), None).await;
    let mut c = s.connect().await;
    assert_eq!(
        c.reply().await,
        "220 mail.example.com Microsoft Exchange Internet Mail Connector ready"
    );
    assert_eq!(c.cmd("HELO client.example").await, "250 mail.example.com");
    assert_eq!(
        c.cmd("EHLO client.example").await,
        "250-mail.example.com\n250-SIZE 10485760\n250 HELP"
    );
    assert_eq!(
        c.cmd("QUIT").await,
        "221 mail.example.com closing connection"
    );
}
