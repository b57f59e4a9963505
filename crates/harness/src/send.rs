//! A whole message sent by a real SMTP client (lettre's transport).

use crate::scenario::SendSpec;
use lettre::message::Mailbox;
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
    builder.body(body).map_err(|e| e.to_string())
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
