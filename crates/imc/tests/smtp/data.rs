//! The message text: dot-unstuffing, the stored file, line endings, pipelining.

use crate::support::{DATE_2822, Spooled};

/// What the connector puts in front of message `id` sent by `Session::envelope`:
/// the envelope lines, then the trace header.
fn received(helo: &str, with: &str, id: &str) -> String {
    format!(
        "x-sender: alice@example.org\r\nx-receiver: bob@example.net\r\n\
         Received: from {helo} ([127.0.0.1])\r\n\tby imc.test with {with} id {id};\r\n\t{DATE_2822}\r\n"
    )
}

#[tokio::test]
async fn the_envelope_is_stored_with_every_recipient() {
    let s = Spooled::start().await;
    let mut c = s.session().await;
    assert_eq!(c.cmd("MAIL FROM:<>").await, "250 OK - mail from accepted");
    for rcpt in ["bob@example.net", "carol@example.org", "postmaster"] {
        assert_eq!(
            c.cmd(&format!("RCPT TO:<{rcpt}>")).await,
            "250 OK - recipient accepted"
        );
    }
    assert_eq!(c.data(b"Subject: bounce\r\n\r\nx\r\n").await, "250 OK");
    let stored = String::from_utf8(s.stored("00000001")).unwrap();
    assert!(
        stored.starts_with(
            "x-sender: \r\nx-receiver: bob@example.net\r\nx-receiver: carol@example.org\r\n\
             x-receiver: postmaster\r\nReceived: from client.example"
        ),
        "{stored}"
    );
}

#[tokio::test]
async fn the_stored_file_is_the_trace_header_and_the_unstuffed_text() {
    let s = Spooled::start().await;
    let mut c = s.session().await;
    let wire: &[u8] = b"From: alice@example.org\r\n\
        Subject: dots\r\n\
        \r\n\
        ..leading dot\r\n\
        ...\r\n\
        .x\r\n\
        \x20trailing spaces \t\r\n\
        caf\xc3\xa9 \x00 \xff\r\n\
        \r\n";
    assert_eq!(c.mail(wire).await, "250 OK");
    let expected = [
        received("client.example", "ESMTP", "00000001").as_bytes(),
        b"From: alice@example.org\r\n\
        Subject: dots\r\n\
        \r\n\
        .leading dot\r\n\
        ..\r\n\
        x\r\n\
        \x20trailing spaces \t\r\n\
        caf\xc3\xa9 \x00 \xff\r\n\
        \r\n",
    ]
    .concat();
    assert_eq!(
        String::from_utf8_lossy(&s.stored("00000001")),
        String::from_utf8_lossy(&expected)
    );
    assert_eq!(s.stored("00000001"), expected);
}

#[tokio::test]
async fn helo_gives_an_smtp_trace_header() {
    let s = Spooled::start().await;
    let mut c = s.connect().await;
    c.greeting().await;
    assert_eq!(c.cmd("HELO old.example").await, "250 imc.test");
    assert_eq!(c.mail(b"hi\r\n").await, "250 OK");
    assert_eq!(
        s.stored("00000001"),
        [
            received("old.example", "SMTP", "00000001").as_bytes(),
            b"hi\r\n"
        ]
        .concat()
    );
}

#[tokio::test]
async fn an_empty_message_is_just_the_trace_header() {
    let s = Spooled::start().await;
    let mut c = s.session().await;
    assert_eq!(c.mail(b"").await, "250 OK");
    assert_eq!(
        s.stored("00000001"),
        received("client.example", "ESMTP", "00000001").into_bytes()
    );
}

#[tokio::test]
async fn a_dot_after_a_bare_lf_does_not_end_the_data() {
    let s = Spooled::start().await;
    let mut c = s.session().await;
    // Each of these lone dots follows or carries a bare LF: none ends the data,
    // and a lone dot that does not end it is text, kept as it came (RFC 5321
    // 4.5.2 removes a leading dot only when other characters follow it).
    let cases: [&[u8]; 3] = [b"a\n.\r\nb\r\n", b"a\n.\nb\r\n", b"a\r\n.\nb\r\n"];
    for (i, text) in cases.iter().enumerate() {
        let id = format!("{:08X}", i + 1);
        assert_eq!(c.mail(text).await, "250 OK", "{text:?}");
        assert_eq!(
            s.stored(&id),
            [received("client.example", "ESMTP", &id).as_bytes(), text].concat(),
            "{text:?}"
        );
    }
    // Still in step: each message got exactly one reply.
    assert_eq!(c.cmd("NOOP").await, "250 OK");
}

#[tokio::test]
async fn a_dot_after_an_over_long_bare_lf_line_does_not_end_the_data() {
    let s = Spooled::start().await;
    let mut c = s.session().await;
    c.envelope().await;
    assert_eq!(c.cmd("DATA").await, "354 Send data.  End with CRLF.CRLF");
    // An over-long line ended by a bare LF, then `.CRLF` and a smuggled command:
    // all of it is text up to the real CRLF.CRLF, answered once with 554.
    let mut text = vec![b'x'; 1200];
    text.extend_from_slice(b"\n.\r\nNOOP\r\n.\r\n");
    c.send(&text).await;
    assert_eq!(c.reply().await, "554 Transaction failed: line too long");
    assert_eq!(c.cmd("QUIT").await, "221 imc.test closing connection");
    c.expect_closed().await;
    assert!(s.in_files().is_empty());
}

#[tokio::test]
async fn commands_pipelined_in_one_write_get_one_reply_each_in_order() {
    let s = Spooled::start().await;
    let mut c = s.connect().await;
    c.greeting().await;
    c.send(
        "EHLO client.example\r\n\
         MAIL FROM:<alice@example.org>\r\n\
         RCPT TO:<bob@example.net>\r\n\
         RCPT TO:carol@example.net\r\n\
         RCPT TO:<carol@example.net>\r\n\
         DATA\r\n",
    )
    .await;
    assert_eq!(c.reply().await, "250-imc.test\n250-SIZE 10485760\n250 HELP");
    assert_eq!(c.reply().await, "250 OK - mail from accepted");
    assert_eq!(c.reply().await, "250 OK - recipient accepted");
    assert_eq!(
        c.reply().await,
        "501 Syntax error in parameters or arguments"
    );
    assert_eq!(c.reply().await, "250 OK - recipient accepted");
    assert_eq!(c.reply().await, "354 Send data.  End with CRLF.CRLF");
    // The text, its dot and the next transaction in one write.
    c.send(
        "first\r\n.\r\n\
         MAIL FROM:<>\r\n\
         RCPT TO:<postmaster>\r\n\
         DATA\r\n",
    )
    .await;
    assert_eq!(c.reply().await, "250 OK");
    assert_eq!(c.reply().await, "250 OK - mail from accepted");
    assert_eq!(c.reply().await, "250 OK - recipient accepted");
    assert_eq!(c.reply().await, "354 Send data.  End with CRLF.CRLF");
    c.send("second\r\n.\r\nQUIT\r\n").await;
    assert_eq!(c.reply().await, "250 OK");
    assert_eq!(c.reply().await, "221 imc.test closing connection");
    c.expect_closed().await;
    assert_eq!(s.in_files(), ["00000001", "00000002"]);
    assert!(s.stored("00000002").ends_with(b"\r\nsecond\r\n"));
}

#[tokio::test]
async fn a_whole_session_in_one_write() {
    let s = Spooled::start().await;
    let mut c = s.connect().await;
    c.send(
        "HELO client.example\r\n\
         MAIL FROM:<alice@example.org>\r\n\
         RCPT TO:<bob@example.net>\r\n\
         DATA\r\n\
         Subject: one write\r\n\
         \r\n\
         ..body\r\n\
         .\r\n\
         QUIT\r\n",
    )
    .await;
    c.greeting().await;
    for expected in [
        "250 imc.test",
        "250 OK - mail from accepted",
        "250 OK - recipient accepted",
        "354 Send data.  End with CRLF.CRLF",
        "250 OK",
        "221 imc.test closing connection",
    ] {
        assert_eq!(c.reply().await, expected);
    }
    c.expect_closed().await;
    assert_eq!(
        s.stored("00000001"),
        [
            received("client.example", "SMTP", "00000001").as_bytes(),
            b"Subject: one write\r\n\r\n.body\r\n"
        ]
        .concat()
    );
}

#[tokio::test]
async fn a_large_message_arrives_intact() {
    let s = Spooled::start().await;
    let mut c = s.session().await;
    // 3 MiB in lines of every length up to the limit, some starting with a dot.
    let mut wire = Vec::new();
    let mut stored = Vec::new();
    let mut i = 0usize;
    while stored.len() < 3 << 20 {
        let len = i % 998;
        let mut line: Vec<u8> = (0..len).map(|j| b'a' + ((i + j) % 26) as u8).collect();
        if i.is_multiple_of(7) && len > 0 {
            line[0] = b'.';
            wire.push(b'.');
        }
        wire.extend_from_slice(&line);
        wire.extend_from_slice(b"\r\n");
        stored.extend_from_slice(&line);
        stored.extend_from_slice(b"\r\n");
        i += 1;
    }
    assert_eq!(c.mail(&wire).await, "250 OK");
    let file = s.stored("00000001");
    let header = received("client.example", "ESMTP", "00000001");
    assert_eq!(&file[..header.len()], header.as_bytes());
    assert!(file[header.len()..] == stored[..], "text differs");
}
