//! Reading CRLF-terminated lines with a length limit, without unbounded buffering.

use tokio::io::{AsyncRead, AsyncReadExt};

/// How a line ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// `\r\n`, as RFC 5321 requires.
    CrLf,
    /// A bare `\n`.
    Lf,
}

impl Ending {
    /// The bytes of this ending.
    pub fn bytes(self) -> &'static [u8] {
        match self {
            Ending::CrLf => b"\r\n",
            Ending::Lf => b"\n",
        }
    }
}

/// One read from the peer.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line's content (without its ending) and how it ended.
    Complete(Vec<u8>, Ending),
    /// A line longer than the limit; it was read and dropped whole. Its ending is
    /// kept: in DATA a dot after a bare LF must not end the text, however long the
    /// line before it was.
    TooLong(Ending),
    /// The peer closed the connection (a partial last line is dropped).
    Eof,
}

/// Splits a byte stream into lines. Memory stays under the limit plus one read.
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Where the unread part of `buf` starts: lines are consumed by moving this,
    /// and the rest is moved down once per read, not once per line.
    start: usize,
    discarding: bool,
    /// While discarding: the last byte dropped was a CR (the line may end in CRLF
    /// across the drop).
    dropped_cr: bool,
}

const READ_SIZE: usize = 16 * 1024;

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// A reader over `inner`.
    pub fn new(inner: R) -> Self {
        LineReader {
            inner,
            buf: Vec::with_capacity(READ_SIZE),
            start: 0,
            discarding: false,
            dropped_cr: false,
        }
    }

    /// True when a whole line is already buffered (no read needed to return it).
    pub fn has_line(&self) -> bool {
        self.buf[self.start..].contains(&b'\n')
    }

    /// The next line; `limit` counts the content plus its ending, as RFC 5321 4.5.3.1
    /// counts octets "including the <CRLF>". Cancel-safe: dropping the future loses
    /// nothing, so it can sit in a `select!`.
    pub async fn next_line(&mut self, limit: usize) -> std::io::Result<Line> {
        loop {
            if let Some(pos) = self.buf[self.start..].iter().position(|&b| b == b'\n') {
                let end = self.start + pos;
                let mut line = self.buf[self.start..end].to_vec();
                self.start = end + 1;
                let cr = match line.last() {
                    Some(&b) => b == b'\r',
                    None => self.discarding && self.dropped_cr,
                };
                let ending = if cr { Ending::CrLf } else { Ending::Lf };
                if std::mem::take(&mut self.discarding) {
                    return Ok(Line::TooLong(ending));
                }
                if cr {
                    line.pop();
                }
                if line.len() + ending.bytes().len() > limit {
                    return Ok(Line::TooLong(ending));
                }
                return Ok(Line::Complete(line, ending));
            }
            self.buf.drain(..std::mem::take(&mut self.start));
            if self.buf.len() > limit {
                // No line end within the limit: drop what we have, keep dropping
                // up to the next line end.
                self.discarding = true;
                self.dropped_cr = self.buf.last() == Some(&b'\r');
                self.buf.clear();
            }
            self.buf.reserve(READ_SIZE);
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                self.buf.clear();
                return Ok(Line::Eof);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], limit: usize) -> Vec<Line> {
        let mut r = LineReader::new(input);
        let mut out = Vec::new();
        loop {
            let l = r.next_line(limit).await.unwrap();
            let end = l == Line::Eof;
            out.push(l);
            if end {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn splits_crlf_and_bare_lf() {
        let got = lines(b"HELO a\r\nNOOP\nQUIT\r\npartial", 512).await;
        assert_eq!(
            got,
            vec![
                Line::Complete(b"HELO a".to_vec(), Ending::CrLf),
                Line::Complete(b"NOOP".to_vec(), Ending::Lf),
                Line::Complete(b"QUIT".to_vec(), Ending::CrLf),
                Line::Eof,
            ]
        );
    }

    #[tokio::test]
    async fn limit_counts_the_crlf() {
        let ok = [b"x".repeat(510), b"\r\n".to_vec()].concat();
        let long = [b"x".repeat(511), b"\r\n".to_vec()].concat();
        let input = [ok.clone(), long, b"NEXT\r\n".to_vec()].concat();
        let got = lines(&input, 512).await;
        assert_eq!(got[0], Line::Complete(b"x".repeat(510), Ending::CrLf));
        assert_eq!(got[1], Line::TooLong(Ending::CrLf));
        assert_eq!(got[2], Line::Complete(b"NEXT".to_vec(), Ending::CrLf));
    }

    #[tokio::test]
    async fn a_huge_line_is_dropped_without_buffering_it() {
        let input = [b"y".repeat(100_000), b"\r\nQUIT\r\n".to_vec()].concat();
        let mut r = LineReader::new(&input[..]);
        assert_eq!(r.next_line(512).await.unwrap(), Line::TooLong(Ending::CrLf));
        assert!(r.buf.capacity() < 100_000);
        assert_eq!(
            r.next_line(512).await.unwrap(),
            Line::Complete(b"QUIT".to_vec(), Ending::CrLf)
        );
    }

    /// Yields the given chunks one read at a time.
    struct Chunks(std::collections::VecDeque<Vec<u8>>);

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if let Some(chunk) = self.0.pop_front() {
                buf.put_slice(&chunk);
            }
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn an_over_long_line_keeps_its_ending() {
        let chunks = [
            // Seen whole, then refused.
            [b"a".repeat(600), b"\n".to_vec()].concat(),
            [b"b".repeat(600), b"\r\n".to_vec()].concat(),
            // Dropped while reading.
            b"c".repeat(600),
            b"\n".to_vec(),
            b"d".repeat(600),
            b"\r\n".to_vec(),
            // A CRLF split by the drop: the CR ends a dropped read.
            [b"e".repeat(600), b"\r".to_vec()].concat(),
            b"\n".to_vec(),
            // A dropped CR that is not part of the ending.
            [b"f".repeat(600), b"\r".to_vec()].concat(),
            b"f\n".to_vec(),
        ];
        let mut r = LineReader::new(Chunks(chunks.into_iter().collect()));
        let mut got = Vec::new();
        loop {
            let l = r.next_line(512).await.unwrap();
            if l == Line::Eof {
                break;
            }
            got.push(l);
        }
        assert_eq!(
            got,
            vec![
                Line::TooLong(Ending::Lf),
                Line::TooLong(Ending::CrLf),
                Line::TooLong(Ending::Lf),
                Line::TooLong(Ending::CrLf),
                Line::TooLong(Ending::CrLf),
                Line::TooLong(Ending::Lf),
            ]
        );
    }
}
