//! A recording SMTP client: sends exactly what a scenario says and reads every
//! reply, the greeting and 4xx/5xx included.
//!
//! Replies are parsed with lettre's `Response` parser; lettre's own connection is
//! not used here because it hides the greeting and turns error replies into errors.

use lettre::transport::smtp::response::Response;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Longest reply line accepted (RFC 5321 4.5.3.1.5 allows 512; a broken server may send more).
const MAX_REPLY_LINE: usize = 64 * 1024;

/// A parsed reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The enhanced status code (RFC 3463) at the start of the text, if any.
    pub enhanced: Option<String>,
    /// The text after the code, lines joined by `\n`, enhanced code included.
    pub text: String,
    /// The lines exactly as received, without CRLF.
    pub lines: Vec<String>,
}

/// What reading a reply produced.
#[derive(Debug)]
pub enum ReadOutcome {
    /// A well-formed reply.
    Reply(Reply),
    /// Bytes that are not a reply (kept for the history).
    Malformed(String),
    /// The server closed the connection (cleanly or with a reset).
    Closed,
    /// Nothing complete arrived in time.
    Timeout,
}

/// One client connection.
pub struct ClientSession {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    ends_with_newline: bool,
}

impl ClientSession {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Self> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        Ok(ClientSession {
            reader: BufReader::new(r),
            writer: w,
            ends_with_newline: true,
        })
    }

    /// Sends bytes as they are.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Some(&last) = bytes.last() {
            self.ends_with_newline = last == b'\n';
        }
        self.writer.write_all(bytes).await?;
        self.writer.flush().await
    }

    /// True if the last bytes sent ended a line (so a dot line can follow directly).
    pub fn at_line_start(&self) -> bool {
        self.ends_with_newline
    }

    /// Reads one reply (all its lines).
    pub async fn read_reply(&mut self, timeout: Duration) -> ReadOutcome {
        match tokio::time::timeout(timeout, self.read_reply_inner()).await {
            Ok(outcome) => outcome,
            Err(_) => ReadOutcome::Timeout,
        }
    }

    async fn read_reply_inner(&mut self) -> ReadOutcome {
        let mut raw = String::new();
        let mut lines = Vec::new();
        loop {
            let mut buf = Vec::new();
            let n = match (&mut self.reader)
                .take(MAX_REPLY_LINE as u64)
                .read_until(b'\n', &mut buf)
                .await
            {
                Ok(n) => n,
                Err(_) => return ReadOutcome::Closed,
            };
            if n == 0 {
                return if lines.is_empty() {
                    ReadOutcome::Closed
                } else {
                    ReadOutcome::Malformed(raw)
                };
            }
            let text = String::from_utf8_lossy(&buf).into_owned();
            raw.push_str(&text);
            if !text.ends_with("\r\n") {
                return ReadOutcome::Malformed(raw);
            }
            let line = text.trim_end_matches("\r\n").to_string();
            let last = line.len() == 3 || line.as_bytes().get(3) == Some(&b' ');
            let continued = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line);
            if last {
                break;
            }
            if !continued {
                return ReadOutcome::Malformed(raw);
            }
        }
        match parse(&raw, lines) {
            Some(reply) => ReadOutcome::Reply(reply),
            None => ReadOutcome::Malformed(raw),
        }
    }

    /// After a reply that should end the session (421, 221): waits for the server
    /// to close. Returns `None` when it closed, or what arrived instead.
    pub async fn expect_close(&mut self, timeout: Duration) -> Option<ReadOutcome> {
        match self.read_reply(timeout).await {
            ReadOutcome::Closed => None,
            other => Some(other),
        }
    }
}

/// Parses a complete reply with lettre, checking every line carries the same code.
fn parse(raw: &str, lines: Vec<String>) -> Option<Reply> {
    let response = Response::from_str(raw).ok()?;
    let code = u16::from(response.code());
    if lines.iter().any(|l| !l.starts_with(&code.to_string())) {
        return None;
    }
    let text = response.message().collect::<Vec<_>>().join("\n");
    let enhanced = text
        .split_whitespace()
        .next()
        .filter(|w| is_enhanced(w, code))
        .map(str::to_string);
    Some(Reply {
        code,
        enhanced,
        text,
        lines,
    })
}

/// `class.subject.detail` with the class matching the reply's first digit (RFC 3463).
fn is_enhanced(word: &str, code: u16) -> bool {
    let parts: Vec<&str> = word.split('.').collect();
    parts.len() == 3
        && parts[0] == (code / 100).to_string()
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Message text as it goes on the wire: CRLF line ends, leading dots doubled.
pub fn encode_data(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 32);
    let mut rest = text;
    while !rest.is_empty() {
        let (line, next, ended) = match rest.find('\n') {
            Some(i) => (&rest[..i], &rest[i + 1..], true),
            None => (rest, "", false),
        };
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('.') {
            out.push(b'.');
        }
        out.extend_from_slice(line.as_bytes());
        if ended {
            out.extend_from_slice(b"\r\n");
        }
        rest = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multiline_and_enhanced() {
        let r = parse(
            "250-imc.test\r\n250 SIZE 10\r\n",
            vec!["250-imc.test".into(), "250 SIZE 10".into()],
        )
        .unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.text, "imc.test\nSIZE 10");
        assert_eq!(r.enhanced, None);
        let r = parse(
            "452 4.3.1 Insufficient system storage\r\n",
            vec!["452 4.3.1 Insufficient system storage".into()],
        )
        .unwrap();
        assert_eq!(r.enhanced.as_deref(), Some("4.3.1"));
        assert!(parse("250-a\r\n251 b\r\n", vec!["250-a".into(), "251 b".into()]).is_none());
        assert!(parse("99 x\r\n", vec!["99 x".into()]).is_none());
    }

    #[test]
    fn enhanced_class_must_match() {
        assert!(is_enhanced("4.3.1", 452));
        assert!(!is_enhanced("5.3.1", 452));
        assert!(!is_enhanced("4.3", 452));
        assert!(!is_enhanced("4.3.1234", 452));
    }

    #[test]
    fn data_is_crlf_and_dot_stuffed() {
        assert_eq!(
            encode_data("a\n.b\n..c\r\nd"),
            b"a\r\n..b\r\n...c\r\nd".to_vec()
        );
        assert_eq!(encode_data(".\n"), b"..\r\n".to_vec());
    }
}
