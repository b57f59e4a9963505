//! The arguments of HELO/EHLO, MAIL and RCPT, parsed by RFC 5321's grammar
//! (section 4.1.2), and the only door through which they reach a stored file.
//!
//! Whatever a client sends, a stored envelope or trace line (`x-sender:`,
//! `x-receiver:`, `Received:`) can hold only printable ASCII, SP and HTAB: the
//! types here are built only from text that matched the grammar, and the
//! [`StoredHeader`] the spool writes accepts only [`HeaderLine`]s, which check
//! every byte once more when they are made. A bare CR or LF in a stored line is a
//! line break to many readers downstream, so a client that could put one there
//! could add a recipient.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A host name for HELO/EHLO and for `--hostname`: an RFC 5321 `Domain` or an
/// `address-literal` (`[127.0.0.1]`, `[IPv6:::1]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostName(String);

impl HostName {
    /// Parses `text`; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<HostName, GrammarError> {
        let b = text.as_bytes();
        if b.is_empty() {
            return Err(GrammarError("it is empty".into()));
        }
        if let Some(bad) = b.iter().find(|&&c| !is_printable(c)) {
            return Err(GrammarError(format!(
                "byte {} is not printable ASCII",
                show_byte(*bad)
            )));
        }
        let ok = if b[0] == b'[' {
            address_literal(b) == Some(b.len())
        } else {
            domain(b) == Some(b.len())
        };
        if ok {
            Ok(HostName(text.to_string()))
        } else {
            Err(GrammarError(
                "not a domain name (letters, digits and hyphens in dot-separated labels) nor an address literal such as [192.0.2.1]"
                    .into(),
            ))
        }
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a text does not match the grammar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrammarError(pub String);

impl fmt::Display for GrammarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GrammarError {}

/// A mailbox, `Local-part "@" (Domain / address-literal)`, with any obsolete
/// source route (`@a,@b:`) already dropped (RFC 5321 4.1.2 and C: a server
/// ignores it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox(String);

impl Mailbox {
    /// The mailbox as the client spelt it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The reverse path of MAIL: a mailbox, or `<>` (a bounce).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReversePath {
    /// `<>`.
    Null,
    /// `<mailbox>`.
    Mailbox(Mailbox),
}

impl ReversePath {
    /// The mailbox, or the empty string for `<>`.
    pub fn as_str(&self) -> &str {
        match self {
            ReversePath::Null => "",
            ReversePath::Mailbox(m) => m.as_str(),
        }
    }
}

/// The forward path of RCPT: a mailbox, or the bare `<Postmaster>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForwardPath {
    /// `<Postmaster>` (any case), which every server must accept (RFC 5321 4.5.1).
    Postmaster(String),
    /// `<mailbox>`.
    Mailbox(Mailbox),
}

impl ForwardPath {
    /// The path as the client spelt it, without the brackets.
    pub fn as_str(&self) -> &str {
        match self {
            ForwardPath::Postmaster(p) => p,
            ForwardPath::Mailbox(m) => m.as_str(),
        }
    }
}

/// What is wrong with a MAIL or RCPT argument; each gets its own reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathError {
    /// Not `FROM:`/`TO:` followed by a bracketed path, or bad parameter syntax.
    Syntax,
    /// The path is there but is not a valid mailbox.
    Address,
}

/// One `esmtp-param` of MAIL or RCPT: a keyword and an optional value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// The keyword as sent (compare it ignoring case).
    pub keyword: String,
    /// The value after `=`, if any.
    pub value: Option<String>,
}

/// Parses MAIL's argument: `FROM:<reverse-path> [params]`.
pub fn parse_mail(arg: &str) -> Result<(ReversePath, Vec<Param>), PathError> {
    let (inner, params) = split_path(arg, "FROM:")?;
    let path = if inner.is_empty() {
        ReversePath::Null
    } else {
        ReversePath::Mailbox(path_mailbox(inner)?)
    };
    Ok((path, params))
}

/// Parses RCPT's argument: `TO:<forward-path> [params]`.
pub fn parse_rcpt(arg: &str) -> Result<(ForwardPath, Vec<Param>), PathError> {
    let (inner, params) = split_path(arg, "TO:")?;
    let path = if inner.eq_ignore_ascii_case("postmaster") {
        ForwardPath::Postmaster(inner.to_string())
    } else {
        ForwardPath::Mailbox(path_mailbox(inner)?)
    };
    Ok((path, params))
}

/// Splits `KEYWORD:<path> params` into the text between the brackets and the
/// parameters. One or more spaces after the colon are tolerated (many clients
/// send them), nothing else.
fn split_path<'a>(arg: &'a str, keyword: &str) -> Result<(&'a str, Vec<Param>), PathError> {
    let b = arg.as_bytes();
    if b.len() < keyword.len() || !b[..keyword.len()].eq_ignore_ascii_case(keyword.as_bytes()) {
        return Err(PathError::Syntax);
    }
    let mut i = keyword.len();
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    if b.get(i) != Some(&b'<') {
        return Err(PathError::Syntax);
    }
    let start = i + 1;
    let end = match path_end(b, start) {
        Some(end) => end,
        // An unclosed bracket, or a bracket holding bytes no path may hold.
        None if b[start..].contains(&b'>') => return Err(PathError::Address),
        None => return Err(PathError::Syntax),
    };
    let inner = &arg[start..end];
    let rest = &b[end + 1..];
    let params = if rest.is_empty() {
        Vec::new()
    } else if rest[0] == b' ' {
        parse_params(&arg[end + 2..])?
    } else {
        return Err(PathError::Syntax);
    };
    Ok((inner, params))
}

/// Where the `>` closing a path that starts at `start` is: the first `>` not
/// inside a quoted local part.
fn path_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    let mut quoted = false;
    while i < b.len() {
        match b[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'>' if !quoted => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// `[ A-d-l ":" ] Mailbox`, the route dropped.
fn path_mailbox(inner: &str) -> Result<Mailbox, PathError> {
    let b = inner.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'@') {
        // A-d-l = At-domain *( "," At-domain ), At-domain = "@" Domain
        loop {
            if b.get(i) != Some(&b'@') {
                return Err(PathError::Address);
            }
            i += 1;
            i += domain(&b[i..]).ok_or(PathError::Address)?;
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b':') => {
                    i += 1;
                    break;
                }
                _ => return Err(PathError::Address),
            }
        }
    }
    let mailbox = &b[i..];
    if mailbox_len(mailbox) == Some(mailbox.len()) {
        Ok(Mailbox(inner[i..].to_string()))
    } else {
        Err(PathError::Address)
    }
}

/// `Mail-parameters = esmtp-param *(SP esmtp-param)`.
fn parse_params(text: &str) -> Result<Vec<Param>, PathError> {
    let mut params = Vec::new();
    // Trailing spaces were already trimmed; consecutive ones are tolerated.
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let (keyword, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word, None),
        };
        let kb = keyword.as_bytes();
        let keyword_ok = kb.first().is_some_and(u8::is_ascii_alphanumeric)
            && kb.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-');
        // esmtp-value = 1*(%d33-60 / %d62-126)
        let value_ok = value.is_none_or(|v| {
            !v.is_empty() && v.bytes().all(|c| (33..=126).contains(&c) && c != b'=')
        });
        if !keyword_ok || !value_ok {
            return Err(PathError::Syntax);
        }
        params.push(Param {
            keyword: keyword.to_string(),
            value: value.map(str::to_string),
        });
    }
    Ok(params)
}

/// The length of the `Mailbox` at the start of `b`, if there is one.
fn mailbox_len(b: &[u8]) -> Option<usize> {
    let local = if b.first() == Some(&b'"') {
        quoted_string(b)?
    } else {
        dot_string(b)?
    };
    // No 64-octet cap on the local part: RFC 5321 4.5.3.1 asks servers not to
    // impose the minimum limits where they need not; the line limit bounds it.
    if b.get(local) != Some(&b'@') {
        return None;
    }
    let rest = &b[local + 1..];
    let host = if rest.first() == Some(&b'[') {
        address_literal(rest)?
    } else {
        domain(rest)?
    };
    Some(local + 1 + host)
}

/// `Dot-string = Atom *("." Atom)`.
fn dot_string(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        let atom = b[i..].iter().take_while(|c| is_atext(**c)).count();
        if atom == 0 {
            return None;
        }
        i += atom;
        if b.get(i) == Some(&b'.') {
            i += 1;
        } else {
            return Some(i);
        }
    }
}

/// `Quoted-string = DQUOTE *QcontentSMTP DQUOTE`.
fn quoted_string(b: &[u8]) -> Option<usize> {
    let mut i = 1;
    loop {
        match *b.get(i)? {
            b'"' => return Some(i + 1),
            // quoted-pairSMTP = %d92 %d32-126
            b'\\' => {
                let next = *b.get(i + 1)?;
                if !(32..=126).contains(&next) {
                    return None;
                }
                i += 2;
            }
            // qtextSMTP = %d32-33 / %d35-91 / %d93-126
            c if (32..=126).contains(&c) => i += 1,
            _ => return None,
        }
    }
}

/// The length of the `Domain` at the start of `b`: `sub-domain *("." sub-domain)`,
/// `sub-domain = Let-dig [Ldh-str]` (at most 255 octets, labels at most 63).
fn domain(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        let label = b[i..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'-')
            .count();
        let text = &b[i..i + label];
        if label == 0 || label > 63 || text[0] == b'-' || text[label - 1] == b'-' {
            return None;
        }
        i += label;
        // A dot continues the domain only if a label follows it.
        if b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(u8::is_ascii_alphanumeric) {
            i += 1;
        } else {
            return (i <= 255).then_some(i);
        }
    }
}

/// The length of the `address-literal` at the start of `b`: `[IPv4]`,
/// `[IPv6:addr]` or `[tag:dcontent]`.
fn address_literal(b: &[u8]) -> Option<usize> {
    if b.first() != Some(&b'[') {
        return None;
    }
    let close = b.iter().position(|&c| c == b']')?;
    let inner = std::str::from_utf8(&b[1..close]).ok()?;
    let ok = if let Some(v6) = inner
        .get(..5)
        .filter(|t| t.eq_ignore_ascii_case("IPv6:"))
        .map(|_| &inner[5..])
    {
        v6.parse::<Ipv6Addr>().is_ok()
    } else if let Some((tag, content)) = inner.split_once(':') {
        // General-address-literal = Standardized-tag ":" 1*dcontent
        let tb = tag.as_bytes();
        !tb.is_empty()
            && tb.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && tb[tb.len() - 1] != b'-'
            && !content.is_empty()
            && content
                .bytes()
                .all(|c| (33..=90).contains(&c) || (94..=126).contains(&c))
    } else {
        // Snum 3("." Snum), each at most three digits and 255.
        inner.split('.').count() == 4
            && inner
                .split('.')
                .all(|n| (1..=3).contains(&n.len()) && n.bytes().all(|c| c.is_ascii_digit()))
            && inner.parse::<Ipv4Addr>().is_ok()
    };
    ok.then_some(close + 1)
}

/// `atext` of RFC 5322.
fn is_atext(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&c)
}

/// Printable ASCII (no SP): what a name may hold.
fn is_printable(c: u8) -> bool {
    (33..=126).contains(&c)
}

fn show_byte(c: u8) -> String {
    if is_printable(c) {
        format!("'{}'", c as char)
    } else {
        format!("0x{c:02X}")
    }
}

/// One physical line of a stored header, without its CRLF: only printable
/// ASCII, SP and HTAB, checked when it is made, so no client text can break it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderLine(String);

impl HeaderLine {
    /// The line, if every byte is printable ASCII, SP or HTAB.
    pub fn new(text: String) -> Result<HeaderLine, GrammarError> {
        match text
            .bytes()
            .find(|&c| !(is_printable(c) || c == b' ' || c == b'\t'))
        {
            None => Ok(HeaderLine(text)),
            Some(bad) => Err(GrammarError(format!(
                "byte {} may not be stored in a header line",
                show_byte(bad)
            ))),
        }
    }

    /// The line's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What is stored in front of a message: its envelope as `x-sender:` and
/// `x-receiver:` lines (the IIS/Exchange drop directory's format, so whatever
/// delivers from IN knows the reverse path and every recipient), then the trace
/// header (RFC 5321 4.4). The spool writes nothing else from the envelope.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredHeader {
    lines: Vec<HeaderLine>,
}

/// What the trace header says about the session.
pub struct Trace<'a> {
    /// The HELO/EHLO argument.
    pub helo: &'a HostName,
    /// Whether the client said EHLO.
    pub esmtp: bool,
    /// The client's address.
    pub peer: IpAddr,
    /// This server's name.
    pub hostname: &'a HostName,
    /// The message id.
    pub id: &'a str,
    /// RFC 2822 date of receipt.
    pub date: &'a str,
}

impl StoredHeader {
    /// The envelope and trace lines of one message; an error if any line would
    /// hold a byte no header line may (an id or a date from outside the grammar).
    pub fn new(
        from: &ReversePath,
        recipients: &[ForwardPath],
        trace: &Trace<'_>,
    ) -> Result<StoredHeader, GrammarError> {
        let mut lines = vec![HeaderLine::new(format!("x-sender: {}", from.as_str()))?];
        for rcpt in recipients {
            lines.push(HeaderLine::new(format!("x-receiver: {}", rcpt.as_str()))?);
        }
        lines.push(HeaderLine::new(format!(
            "Received: from {} ([{}])",
            trace.helo, trace.peer
        ))?);
        lines.push(HeaderLine::new(format!(
            "\tby {} with {} id {};",
            trace.hostname,
            if trace.esmtp { "ESMTP" } else { "SMTP" },
            trace.id
        ))?);
        lines.push(HeaderLine::new(format!("\t{}", trace.date))?);
        Ok(StoredHeader { lines })
    }

    /// The lines, each followed by CRLF.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for line in &self.lines {
            out.extend_from_slice(line.0.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(arg: &str) -> Result<String, PathError> {
        parse_mail(arg).map(|(p, _)| p.as_str().to_string())
    }

    fn rcpt(arg: &str) -> Result<String, PathError> {
        parse_rcpt(arg).map(|(p, _)| p.as_str().to_string())
    }

    #[test]
    fn host_names() {
        for ok in [
            "client.example",
            "EXCH01",
            "a-b.c9",
            "[127.0.0.1]",
            "[IPv6:::1]",
            "[IPv6:2001:db8::1]",
            "[x-tag:abc]",
        ] {
            assert!(HostName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "a\r\nb",
            "-a.example",
            "a-.example",
            "a..b",
            "a.",
            ".a",
            "[256.0.0.1]",
            "[1.2.3]",
            "[IPv6:zz]",
            "[127.0.0.1",
            "caf\u{e9}.example",
            "a_b.example",
        ] {
            assert!(HostName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(HostName::parse("a\rb").unwrap_err().0.contains("0x0D"));
    }

    #[test]
    fn mail_paths() {
        assert_eq!(mail("FROM:<a@b.c>"), Ok("a@b.c".into()));
        assert_eq!(mail("from: <>"), Ok(String::new()));
        assert_eq!(
            mail("FROM:<@r1.example,@r2.example:a@b.c>"),
            Ok("a@b.c".into())
        );
        assert_eq!(mail("FROM:<\"a b@c\"@b.c>"), Ok("\"a b@c\"@b.c".into()));
        assert_eq!(mail("FROM:<\"a>b\"@b.c>"), Ok("\"a>b\"@b.c".into()));
        assert_eq!(mail("FROM:<a.b@[192.0.2.1]>"), Ok("a.b@[192.0.2.1]".into()));
        let (_, params) = parse_mail("FROM:<a@b.c> SIZE=10 BODY=8BITMIME").unwrap();
        assert_eq!(params.len(), 2);
        assert_eq!(params[0].value.as_deref(), Some("10"));
        assert_eq!(mail("FROM:a@b.c"), Err(PathError::Syntax));
        assert_eq!(mail("FROM:<a@b.c"), Err(PathError::Syntax));
        assert_eq!(mail("FROM:<a@b.c>x"), Err(PathError::Syntax));
        assert_eq!(mail("FROM:<a@b.c> SIZE="), Err(PathError::Syntax));
        assert_eq!(mail("FROM:<a@b.c> =1"), Err(PathError::Syntax));
        assert_eq!(mail("FROM:<alice>"), Err(PathError::Address));
        assert_eq!(mail("FROM:<@example.org>"), Err(PathError::Address));
        assert_eq!(mail("FROM:<al ice@b.c>"), Err(PathError::Address));
        assert_eq!(mail("FROM:<a..b@b.c>"), Err(PathError::Address));
        assert_eq!(mail("FROM:<a@>"), Err(PathError::Address));
        assert_eq!(mail("FROM:<@r\x01:a@b.c>"), Err(PathError::Address));
        assert_eq!(mail("FROM:<\"a\rb\"@b.c>"), Err(PathError::Address));
        assert_eq!(mail("FROM:<a@b\r.c>"), Err(PathError::Address));
    }

    #[test]
    fn rcpt_paths() {
        assert_eq!(rcpt("TO:<Postmaster>"), Ok("Postmaster".into()));
        assert_eq!(rcpt("to:<bob@example.net>"), Ok("bob@example.net".into()));
        assert_eq!(rcpt("TO:<>"), Err(PathError::Address));
        assert_eq!(rcpt("TO:erin@example.net"), Err(PathError::Syntax));
    }

    #[test]
    fn header_lines_refuse_controls() {
        for c in (0u8..0x20).chain([0x7F]).filter(|&c| c != b'\t') {
            let text = format!("x-sender: a{}b", c as char);
            assert!(HeaderLine::new(text).is_err(), "0x{c:02X}");
        }
        assert!(HeaderLine::new("\tby x".into()).is_ok());
        assert!(HeaderLine::new("x: caf\u{e9}".into()).is_err());
    }
}
