//! A whole message sent by a real SMTP client (lettre's transport).

use crate::scenario::SendSpec;
use lettre::message::header::ContentTransferEncoding;
use lettre::message::{Body, Mailbox};
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncTransport, Message, Tokio1Executor};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

/// Builds the message of `spec`. Headers that would vary between runs (Date,
/// Message-ID) are fixed.
pub fn build(spec: &SendSpec) -> Result<Message, String> {
    let mailbox = |a: &str| -> Result<Mailbox, String> {
        a.parse().map_err(|e| format!("bad address {a:?}: {e}"))
    };
    let mut builder = Message::builder()
        .from(mailbox(&spec.from)?)
        .subject(spec.subject.clone().unwrap_or_default())
        .date(SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600))
        .message_id(Some("<harness@client.test>".to_string()));
    for to in &spec.to {
        builder = builder.to(mailbox(to)?);
    }
    let mut body = spec.body.clone().unwrap_or_default();
    if let Some(size) = spec.size {
        let size = size.0 as usize;
        while body.len() < size {
            body.push_str(&"x".repeat(75.min(size - body.len())));
            body.push('\n');
        }
    }
    builder.body(body_of(&body)?).map_err(|e| e.to_string())
}

/// The body lettre's `Body::new` makes of `text`, without its quadratic line-end
/// conversion (it inserts each `\r` in place: 30 s for 10 MiB). The encoding is
/// chosen as lettre chooses it, on the text as given; the line ends are made
/// CRLF here in one pass, so lettre has none left to insert and the bytes are
/// the same.
fn body_of(text: &str) -> Result<Body, String> {
    use email_encoding::body::Encoding;
    let encoding = match Encoding::choose(text, false) {
        Encoding::SevenBit => ContentTransferEncoding::SevenBit,
        Encoding::EightBit => ContentTransferEncoding::EightBit,
        Encoding::QuotedPrintable => ContentTransferEncoding::QuotedPrintable,
        Encoding::Base64 => ContentTransferEncoding::Base64,
    };
    let text = crlf(text);
    match encoding {
        // What `Body::new` does for these: the text as it is, once CRLF.
        ContentTransferEncoding::SevenBit | ContentTransferEncoding::EightBit => {
            Ok(Body::dangerous_pre_encoded(text.into_bytes(), encoding))
        }
        _ => Body::new_with_encoding(text, encoding)
            .map_err(|_| format!("the body cannot be sent as {encoding:?}")),
    }
}

/// `text` with every line feed not already after a carriage return preceded by
/// one, in one pass.
fn crlf(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 32 + 2);
    let mut previous = '\0';
    for c in text.chars() {
        if c == '\n' && previous != '\r' {
            out.push('\r');
        }
        out.push(c);
        previous = c;
    }
    out
}

/// What the connector must store for `message`: lettre sends its formatted bytes
/// and then `CRLF.CRLF`, so the stored text gains one CRLF.
pub fn stored_body(message: &Message) -> Vec<u8> {
    let mut body = message.formatted();
    body.extend_from_slice(b"\r\n");
    body
}

/// Sends `message` to `addr` and returns the final reply (`250 OK`), or the
/// server's reply code (if the failure was a reply) and lettre's error.
pub async fn send(
    addr: SocketAddr,
    message: Message,
    timeout: Duration,
) -> Result<String, (Option<u16>, String)> {
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
        .port(addr.port())
        .hello_name(ClientId::Domain("client.test".into()))
        .timeout(Some(timeout))
        .build();
    match transport.send(message).await {
        Ok(response) => Ok(format!(
            "{} {}",
            u16::from(response.code()),
            response.message().collect::<Vec<_>>().join(" / ")
        )),
        Err(e) => Err((e.status().map(u16::from), e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Size;

    fn spec(body: Option<&str>, size: Option<u64>) -> SendSpec {
        SendSpec {
            from: "alice@example.org".into(),
            to: vec!["bob@example.net".into()],
            subject: Some("big".into()),
            body: body.map(str::to_string),
            size: size.map(Size),
        }
    }

    #[test]
    fn line_feeds_become_crlf_once() {
        assert_eq!(crlf("a\nb\r\nc\n\n"), "a\r\nb\r\nc\r\n\r\n");
        assert_eq!(crlf("\nx"), "\r\nx");
        assert_eq!(crlf("é\n"), "é\r\n");
        assert_eq!(crlf(""), "");
    }

    /// The message is what lettre makes of the same text with LF line ends (its
    /// own conversion), byte for byte.
    #[test]
    fn the_message_is_the_one_lettre_builds_from_lf_text() {
        for (body, size) in [
            (Some("Hello.\nSecond line.\n.dot first\n"), None),
            (Some("no final newline"), Some(300)),
            (None, Some(4096)),
            // Long lines (quoted-printable), non-ASCII, CRLF given.
            (Some(&"y".repeat(300)), None),
            (Some("Grüße\nzweite Zeile\n"), None),
            (Some("a\r\nb\n"), Some(200)),
        ] {
            let ours = build(&spec(body, size)).unwrap();
            // The body as it was built before: LF line ends, lettre converts.
            let mut text = body.unwrap_or_default().to_string();
            while let Some(size) = size.filter(|s| text.len() < *s as usize) {
                text.push_str(&"x".repeat(75.min(size as usize - text.len())));
                text.push('\n');
            }
            let theirs = Message::builder()
                .from("alice@example.org".parse().unwrap())
                .subject("big")
                .date(SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600))
                .message_id(Some("<harness@client.test>".to_string()))
                .to("bob@example.net".parse().unwrap())
                .body(text)
                .unwrap();
            assert_eq!(ours.formatted(), theirs.formatted());
        }
    }

    /// A 10 MiB message: the body is the padded text with CRLF line ends, and the stored text is the formatted message plus one CRLF.
    #[test]
    fn a_10_mib_message_has_the_right_bytes() {
        let size = 10 * 1024 * 1024;
        let message = build(&spec(Some("first\n"), Some(size))).unwrap();
        let formatted = message.formatted();
        let split = formatted.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let headers = String::from_utf8_lossy(&formatted[..split]);
        // lettre's choice for the padding: its line-length rule counts the line
        // feed (75 + 1 = 76, too long for 7bit), and quoted-printable leaves
        // these lines as they are.
        assert!(
            headers.contains("Content-Transfer-Encoding: quoted-printable"),
            "{headers}"
        );
        let mut expected = String::from("first\r\n");
        let mut lf_len = "first\n".len();
        while lf_len < size as usize {
            let n = 75.min(size as usize - lf_len);
            expected.push_str(&"x".repeat(n));
            expected.push_str("\r\n");
            lf_len += n + 1;
        }
        let body = &formatted[split + 4..];
        assert_eq!(body.len(), expected.len());
        assert!(body == expected.as_bytes());
        let stored = stored_body(&message);
        assert_eq!(stored.len(), formatted.len() + 2);
        assert!(stored.starts_with(&formatted) && stored.ends_with(b"x\r\n\r\n"));
    }
}
