//! Postfix queue files, read as the ledger needs them (the `postfix-queue`
//! [`MessageFormat`](super::MessageFormat)).
//!
//! A queue file is a sequence of records, each a type byte, its length in
//! base 128 (low seven bits first, the high bit set on every byte but the
//! last) and that many bytes of data (Postfix's `record.c`, `rec_type.h`).
//! Three segments follow one another: the envelope (up to the `M` record:
//! `S` sender, `R` recipients, `O` original recipients, `A` attributes...),
//! the message content (up to `X`: `N` a line, `L` part of a line too long
//! for one record, `p` a pointer to records written elsewhere in the file,
//! `w` padding) and what cleanup extracted from the headers (up to `E`, the
//! end). `postcat -v` shows the same records by name.

use super::spool::StoredMessage;

/// Record types this reader acts on (`rec_type.h`).
mod rec {
    pub const FROM: u8 = b'S';
    pub const RCPT: u8 = b'R';
    pub const DONE: u8 = b'D';
    pub const MESG: u8 = b'M';
    pub const XTRA: u8 = b'X';
    pub const END: u8 = b'E';
    pub const NORM: u8 = b'N';
    pub const CONT: u8 = b'L';
    pub const PTR: u8 = b'p';
}

/// As Postfix's `rec_goto`: more backward jumps than this is a loop.
const REVERSE_JUMP_LIMIT: usize = 10_000;

/// What a queue file holds, as far as it could be read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueFile {
    /// The `S` record: the reverse path (empty for `<>`).
    pub sender: Option<String>,
    /// The `R` and `D` records (to do and done), in file order.
    pub recipients: Vec<String>,
    /// The message content: each `N` record a line ended by CRLF, `L`
    /// records joined to the line they continue.
    pub content: Vec<u8>,
    /// Whether the end record was reached: a file still being written, or cut
    /// short by a full disk, ends before it.
    pub complete: bool,
    /// Why reading stopped before the end record, if it did.
    pub error: Option<String>,
}

/// Reads a queue file as far as it is well formed; never panics.
pub fn parse(file: &[u8]) -> QueueFile {
    let mut out = QueueFile::default();
    let mut pos = 0usize;
    let mut segment = Segment::Envelope;
    let mut highest_jump = 0usize;
    let mut reverse_jumps = 0usize;
    loop {
        let (kind, data, next) = match record(file, pos) {
            Ok(Some(r)) => r,
            Ok(None) => {
                out.error = Some(format!("the file ends at byte {pos} before its end record"));
                return out;
            }
            Err(why) => {
                out.error = Some(why);
                return out;
            }
        };
        pos = next;
        match (segment, kind) {
            (_, rec::END) => {
                out.complete = true;
                return out;
            }
            (_, rec::PTR) => {
                let text = String::from_utf8_lossy(data);
                let Ok(offset) = text.trim().parse::<usize>() else {
                    out.error = Some(format!("a malformed pointer record `{}`", text.trim()));
                    return out;
                };
                // Offset 0 is a placeholder cleanup leaves for later edits.
                if offset != 0 {
                    if offset <= highest_jump {
                        reverse_jumps += 1;
                        if reverse_jumps > REVERSE_JUMP_LIMIT {
                            out.error = Some("the pointer records loop".into());
                            return out;
                        }
                    }
                    highest_jump = highest_jump.max(offset);
                    pos = offset;
                }
            }
            (Segment::Envelope, rec::FROM) => {
                out.sender = Some(String::from_utf8_lossy(data).into_owned());
            }
            (Segment::Envelope | Segment::Extracted, rec::RCPT | rec::DONE) => {
                out.recipients
                    .push(String::from_utf8_lossy(data).into_owned());
            }
            (Segment::Envelope, rec::MESG) => segment = Segment::Content,
            (Segment::Content, rec::NORM) => {
                out.content.extend_from_slice(data);
                out.content.extend_from_slice(b"\r\n");
            }
            (Segment::Content, rec::CONT) => out.content.extend_from_slice(data),
            (Segment::Content, rec::XTRA) => segment = Segment::Extracted,
            _ => {}
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Segment {
    Envelope,
    Content,
    Extracted,
}

/// A record's type, its data and where the next record starts.
type Record<'a> = (u8, &'a [u8], usize);

/// The record at `pos`; `None` at the end of the file.
fn record(file: &[u8], pos: usize) -> Result<Option<Record<'_>>, String> {
    let Some(&kind) = file.get(pos) else {
        return Ok(None);
    };
    let mut len = 0usize;
    let mut at = pos + 1;
    let mut shift = 0u32;
    loop {
        let Some(&b) = file.get(at) else {
            return Err(format!(
                "the record at byte {pos} is cut short in its length"
            ));
        };
        at += 1;
        if shift > 28 {
            return Err(format!("the record at byte {pos} has an oversized length"));
        }
        len |= usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    let end = at
        .checked_add(len)
        .filter(|&e| e <= file.len())
        .ok_or_else(|| {
            format!(
                "the record at byte {pos} (type `{}`) says {len} bytes, more than the file has",
                kind.escape_ascii()
            )
        })?;
    Ok(Some((kind, &file[at..end], end)))
}

/// A queue file as the ledger compares it: envelope, and the content without
/// the `Received:` header Postfix's smtpd prepends (only that first one: the
/// message may carry others).
pub fn read(file: &[u8]) -> StoredMessage {
    let q = parse(file);
    let body = if q.content.starts_with(b"Received:") {
        q.content[crate::invariants::after_field(&q.content, 0)..].to_vec()
    } else {
        q.content
    };
    StoredMessage {
        sender: q.sender,
        recipients: q.recipients,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as Postfix's `rec_put` writes it.
    fn put(out: &mut Vec<u8>, kind: u8, data: &[u8]) {
        out.push(kind);
        let mut rest = data.len();
        loop {
            let mut b = (rest & 0x7f) as u8;
            rest >>= 7;
            if rest != 0 {
                b |= 0x80;
            }
            out.push(b);
            if rest == 0 {
                break;
            }
        }
        out.extend_from_slice(data);
    }

    #[test]
    fn envelope_content_and_long_lines() {
        let mut f = Vec::new();
        put(&mut f, b'C', b"             42             100 1 0 42 0");
        put(&mut f, b'T', b"1796127341 520950");
        put(&mut f, b'S', b"alice@example.org");
        put(&mut f, b'A', b"log_ident=ABC");
        put(&mut f, b'O', b"bob@example.net");
        put(&mut f, b'R', b"bob@example.net");
        put(&mut f, b'D', b"carol@example.net");
        put(&mut f, b'M', b"");
        put(
            &mut f,
            b'N',
            b"Received: from client.test (localhost [127.0.0.1])",
        );
        put(&mut f, b'N', b"\tby mx.test (Postfix) with ESMTP id ABC");
        put(&mut f, b'N', b"Received: from elsewhere");
        put(&mut f, b'N', b"Subject: s");
        put(&mut f, b'N', b"");
        let long = vec![b'x'; 300];
        put(&mut f, b'L', &long);
        put(&mut f, b'N', b"y");
        put(&mut f, b'p', b"              0");
        put(&mut f, b'X', b"");
        put(&mut f, b'E', b"");
        let q = parse(&f);
        assert!(q.complete, "{q:?}");
        assert_eq!(q.error, None);
        assert_eq!(q.sender.as_deref(), Some("alice@example.org"));
        assert_eq!(q.recipients, ["bob@example.net", "carol@example.net"]);
        let m = read(&f);
        let mut want = b"Received: from elsewhere\r\nSubject: s\r\n\r\n".to_vec();
        want.extend_from_slice(&long);
        want.extend_from_slice(b"y\r\n");
        assert_eq!(
            String::from_utf8_lossy(&m.body),
            String::from_utf8_lossy(&want)
        );
        // A length of 300 takes two bytes.
        assert!(f.windows(3).any(|w| w == [b'L', 0xac, 0x02]));
    }

    #[test]
    fn a_queue_file_postfix_wrote() {
        // Postfix 3.7.11's hold/ file for `Subject: hi`, `Hello.` from
        // alice@example.org to bob@example.net (targets/postfix.yaml).
        let f = include_bytes!("../../tests/fixtures/postfix-hold-queue-file");
        let q = parse(f);
        assert!(q.complete, "{q:?}");
        assert_eq!(q.error, None);
        let m = read(f);
        assert_eq!(m.sender.as_deref(), Some("alice@example.org"));
        assert_eq!(m.recipients, ["bob@example.net"]);
        assert_eq!(m.body, b"Subject: hi\r\n\r\nHello.\r\n");
        assert!(q.content.starts_with(b"Received: from client.test (localhost [127.0.0.1])\r\n\tby postfix.test (Postfix) with ESMTP id 8168998D021\r\n"));
    }

    #[test]
    fn a_pointer_record_jumps_and_a_loop_is_caught() {
        let mut f = Vec::new();
        put(&mut f, b'S', b"");
        put(&mut f, b'M', b"");
        put(&mut f, b'N', b"a");
        let ptr_at = f.len();
        put(&mut f, b'p', b"000000000000000");
        put(&mut f, b'N', b"skipped");
        let target = f.len();
        put(&mut f, b'N', b"b");
        put(&mut f, b'X', b"");
        put(&mut f, b'E', b"");
        let text = format!("{target:015}");
        f[ptr_at + 2..ptr_at + 17].copy_from_slice(text.as_bytes());
        let q = parse(&f);
        assert!(q.complete);
        assert_eq!(q.sender.as_deref(), Some(""), "the null reverse path");
        assert_eq!(q.content, b"a\r\nb\r\n");
        // A pointer to itself.
        let text = format!("{ptr_at:015}");
        f[ptr_at + 2..ptr_at + 17].copy_from_slice(text.as_bytes());
        let q = parse(&f);
        assert!(!q.complete);
        assert_eq!(q.error.as_deref(), Some("the pointer records loop"));
    }

    #[test]
    fn a_cut_file_is_read_as_far_as_it_goes() {
        let mut f = Vec::new();
        put(&mut f, b'S', b"a@example.org");
        put(&mut f, b'R', b"b@example.net");
        put(&mut f, b'M', b"");
        put(&mut f, b'N', b"Subject: partial");
        put(&mut f, b'N', b"0123456789");
        for cut in 0..f.len() {
            let q = parse(&f[..cut]);
            assert!(!q.complete);
            assert!(q.error.is_some(), "cut at {cut}");
        }
        let q = parse(&f[..f.len() - 3]);
        assert_eq!(q.content, b"Subject: partial\r\n");
        assert!(
            q.error
                .as_deref()
                .unwrap()
                .contains("more than the file has"),
            "{q:?}"
        );
        let q = parse(&f);
        assert!(
            q.error
                .as_deref()
                .unwrap()
                .contains("before its end record")
        );
        // Garbage never panics.
        assert!(!parse(&[b'N', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).complete);
    }
}
