//! [`SpoolLayout`]: where a target receives and keeps messages, and how a
//! stored message reads ([`MessageFormat`]).

use serde::{Deserialize, Serialize};

/// A target's spool, relative to the root the harness gives it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpoolLayout {
    /// Where a message is written while it is being received (`imcdata/work`):
    /// never a place an accepted message may stay.
    pub receiving: Vec<String>,
    /// Every directory where an accepted message may legitimately be
    /// (`imcdata/in`; Postfix: `incoming`, `active`, `deferred`...): `no-loss`
    /// finds each acknowledged message in exactly one file there, `no-phantom`
    /// and `no-partial` look nowhere else.
    #[schemars(length(min = 1))]
    pub accepted: Vec<String>,
    /// How a stored file reads. Default `x-headers`.
    #[serde(default, skip_serializing_if = "MessageFormat::is_default")]
    pub format: MessageFormat,
}

impl SpoolLayout {
    /// The `imc` connector's: received into `imcdata/work`, moved into `imcdata/in`.
    pub fn imc() -> SpoolLayout {
        SpoolLayout {
            receiving: vec!["imcdata/work".into()],
            accepted: vec!["imcdata/in".into()],
            format: MessageFormat::XHeaders,
        }
    }

    /// Every directory of the layout, accepted ones first (for imc,
    /// `imcdata/in` then `imcdata/work`, the order of the runner's listing):
    /// what a run lists at its end.
    pub fn dirs(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for d in self.accepted.iter().chain(&self.receiving) {
            if !out.contains(&d.as_str()) {
                out.push(d);
            }
        }
        out
    }
}

/// How a stored message file is laid out.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum MessageFormat {
    /// The IIS/Exchange drop-directory form `imc` writes: `x-sender:` and
    /// `x-receiver:` lines, the connector's own `Received:` trace header, then
    /// the message as the client sent it.
    #[default]
    XHeaders,
    /// The file is the message as the client sent it, nothing in front.
    Whole,
    /// A Postfix queue file (`qmgr(8)`'s record format, what `postcat` reads):
    /// the sender from its `S` record, the recipients from its `R` (and
    /// delivered `D`) records, the body from the message content records,
    /// without the `Received:` header smtpd put in front. See
    /// [`postfix_queue`](super::postfix_queue).
    PostfixQueue,
}

impl MessageFormat {
    /// True for the default, `x-headers`.
    pub fn is_default(&self) -> bool {
        *self == MessageFormat::XHeaders
    }

    /// Reads a stored file.
    pub fn read(self, stored: &[u8]) -> StoredMessage {
        match self {
            MessageFormat::Whole => StoredMessage {
                sender: None,
                recipients: Vec::new(),
                body: stored.to_vec(),
            },
            MessageFormat::PostfixQueue => super::postfix_queue::read(stored),
            MessageFormat::XHeaders => {
                let mut sender = None;
                let mut recipients = Vec::new();
                for line in stored.split(|&b| b == b'\n') {
                    let line = String::from_utf8_lossy(line);
                    let line = line.trim_end_matches('\r');
                    if let Some(v) = line.strip_prefix("x-sender:") {
                        sender = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("x-receiver:") {
                        recipients.push(v.trim().to_string());
                    } else {
                        break;
                    }
                }
                StoredMessage {
                    sender,
                    recipients,
                    body: crate::invariants::body_of(stored).to_vec(),
                }
            }
        }
    }
}

/// An accepted message as the ledger compares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    /// The reverse path, where the file records it.
    pub sender: Option<String>,
    /// The recipients, where the file records them.
    pub recipients: Vec<String>,
    /// The message as the client sent it (after dot-unstuffing), without what
    /// the target put in front.
    pub body: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_headers_give_envelope_and_body() {
        let stored = b"x-sender: a@example.org\r\nx-receiver: b@example.net\r\nx-receiver: c@example.net\r\nReceived: from client.test ([127.0.0.1])\r\n\tby imc.test with ESMTP id 1;\r\n\tThu, 1 Jan 2026 00:00:00 +0000\r\nSubject: s\r\n\r\nhi\r\n";
        let m = MessageFormat::XHeaders.read(stored);
        assert_eq!(m.sender.as_deref(), Some("a@example.org"));
        assert_eq!(m.recipients, ["b@example.net", "c@example.net"]);
        assert_eq!(m.body, b"Subject: s\r\n\r\nhi\r\n");
        let whole = MessageFormat::Whole.read(stored);
        assert_eq!(whole.body, stored);
        assert_eq!(whole.sender, None);
    }

    #[test]
    fn dirs_lists_each_once() {
        assert_eq!(SpoolLayout::imc().dirs(), ["imcdata/in", "imcdata/work"]);
        let mut l = SpoolLayout::imc();
        l.accepted.push("imcdata/work".into());
        assert_eq!(l.dirs(), ["imcdata/in", "imcdata/work"]);
    }
}
