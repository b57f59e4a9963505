//! Invariants: what must hold on every run, whatever the scenario expects.
//!
//! 1. `no-loss`: every message acknowledged with 250 after its dot is in IN exactly
//!    once and byte-identical, after a final recovery (faults cleared, service
//!    restarted). Messages the scenario itself deleted with a `remove` fault are
//!    excused.
//! 2. `no-phantom`: a message that got 4xx/5xx, or whose session dropped before
//!    the reply, never appears in IN.
//! 3. `no-partial`: IN never holds a file that is not a complete message (checked
//!    after every step, not only at the end).
//! 4. `liveness`: every command gets a reply within the reply timeout.
//! 5. `well-formed`: replies follow RFC 5321 syntax; a 421 (or 221) is followed by
//!    the connection closing.
//! 6. `recovery`: with the faults cleared and the service restarted, a new message
//!    gets 250 and lands in IN.
//! 7. `containment`: the connector touches nothing outside the sandbox root.
//!
//! The ledger follows each message the harness sends, from its first data bytes
//! to the reply to its dot; IN's files are compared with it by content (the
//! connector's trace headers aside). It reads the bytes each session sends the way
//! the server does (commands, the 354 that opens DATA, dot-unstuffing, the
//! `CRLF.CRLF` that ends it), so messages sent with `raw` or pipelined are tracked
//! exactly like those sent with `message`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::path::Path;

/// One of the invariants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invariant {
    /// Acknowledged messages are in IN exactly once.
    NoLoss,
    /// Rejected or unanswered messages are never in IN.
    NoPhantom,
    /// IN only holds complete messages.
    NoPartial,
    /// Every command gets a reply in time.
    Liveness,
    /// Replies are well-formed; 421 closes the connection.
    WellFormed,
    /// After the faults are cleared and the service restarted, mail flows.
    Recovery,
    /// Nothing outside the sandbox is touched.
    Containment,
}

impl Invariant {
    /// Every invariant, in the order of the list above.
    pub const ALL: [Invariant; 7] = [
        Invariant::NoLoss,
        Invariant::NoPhantom,
        Invariant::NoPartial,
        Invariant::Liveness,
        Invariant::WellFormed,
        Invariant::Recovery,
        Invariant::Containment,
    ];

    /// The name used in scenarios and reports (`no-loss`).
    pub fn name(self) -> &'static str {
        match self {
            Invariant::NoLoss => "no-loss",
            Invariant::NoPhantom => "no-phantom",
            Invariant::NoPartial => "no-partial",
            Invariant::Liveness => "liveness",
            Invariant::WellFormed => "well-formed",
            Invariant::Recovery => "recovery",
            Invariant::Containment => "containment",
        }
    }

    /// The invariant called `name`.
    pub fn from_name(name: &str) -> Option<Invariant> {
        Invariant::ALL.into_iter().find(|i| i.name() == name)
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A violated invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which.
    pub invariant: Invariant,
    /// The step after which it was seen (1-based); `None` for the final recovery.
    pub step: Option<usize>,
    /// What was seen.
    pub message: String,
    /// The last lines of the history up to that point.
    pub excerpt: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.step {
            Some(step) => write!(
                f,
                "invariant {} violated at step {step}: {}",
                self.invariant, self.message
            )?,
            None => write!(
                f,
                "invariant {} violated in the final recovery: {}",
                self.invariant, self.message
            )?,
        }
        for line in &self.excerpt {
            write!(f, "\n      | {line}")?;
        }
        Ok(())
    }
}

/// Where a message is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Data is being sent; no dot yet.
    Sending,
    /// The session closed before the dot: the message was abandoned.
    Abandoned,
    /// The dot was sent; no reply yet.
    Pending,
    /// 250 after the dot.
    Acked,
    /// Any other reply after the dot.
    Rejected(u16),
    /// The session closed (or went silent) after the dot without a reply.
    Unanswered,
    /// The connector crashed after the dot, before any reply: the message may
    /// be in IN or not, and either is right.
    Interrupted,
}

/// A message the harness sent.
#[derive(Clone, Debug)]
pub struct Message {
    /// Session name (`send` for the real client, `recovery` for the final check).
    pub session: String,
    /// The text as the connector must store it: CRLF lines, dots unstuffed.
    pub body: Vec<u8>,
    /// Where it is.
    pub state: State,
}

/// What a reply the session waits for answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Awaited {
    /// A command (or the greeting).
    Command,
    /// A DATA command: 354 opens the data.
    Data,
    /// The dot of message `index`.
    Dot(usize),
}

/// How far the server has read a session's bytes, as the client can know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Reading command lines.
    Command,
    /// A DATA command was sent: nothing after it can be read until its reply.
    AwaitingData,
    /// Reading the text of message `index`; `crlf` says the last line ended in CRLF.
    Data { index: usize, crlf: bool },
}

/// One session's wire, from the client's side.
#[derive(Debug)]
struct Wire {
    unread: Vec<u8>,
    awaited: VecDeque<Awaited>,
    mode: Mode,
}

impl Default for Wire {
    fn default() -> Self {
        Wire {
            unread: Vec::new(),
            // The greeting.
            awaited: VecDeque::from([Awaited::Command]),
            mode: Mode::Command,
        }
    }
}

/// Every message of a run and what became of it.
#[derive(Debug, Default)]
pub struct Ledger {
    messages: Vec<Message>,
    removed: Vec<Vec<u8>>,
    wires: BTreeMap<String, Wire>,
    /// A crash is cutting the sessions (see [`Ledger::crash_begins`]).
    crashing: bool,
}

impl Ledger {
    /// A session connected (its greeting is awaited).
    pub fn connected(&mut self, session: &str) {
        self.wires.insert(session.to_string(), Wire::default());
    }

    /// Bytes sent on a session, exactly as sent.
    pub fn sent(&mut self, session: &str, bytes: &[u8]) {
        if let Some(wire) = self.wires.get_mut(session) {
            wire.unread.extend_from_slice(bytes);
        }
        self.advance(session);
    }

    /// A reply received on a session.
    pub fn replied(&mut self, session: &str, code: u16) {
        let Some(wire) = self.wires.get_mut(session) else {
            return;
        };
        match wire.awaited.pop_front() {
            Some(Awaited::Data) => {
                if code == 354 {
                    self.messages.push(Message {
                        session: session.to_string(),
                        body: Vec::new(),
                        state: State::Sending,
                    });
                    wire.mode = Mode::Data {
                        index: self.messages.len() - 1,
                        crlf: true,
                    };
                } else {
                    wire.mode = Mode::Command;
                }
            }
            Some(Awaited::Dot(index)) => {
                self.messages[index].state = if code == 250 {
                    State::Acked
                } else {
                    State::Rejected(code)
                };
            }
            // A command's reply, or one nobody asked for (a 421 on timeout).
            Some(Awaited::Command) | None => {}
        }
        self.advance(session);
    }

    /// The session is gone: a message being sent is abandoned, one whose dot
    /// went unanswered is unanswered.
    pub fn closed(&mut self, session: &str) {
        let Some(wire) = self.wires.remove(session) else {
            return;
        };
        if let Mode::Data { index, .. } = wire.mode {
            self.messages[index].state = State::Abandoned;
        }
        for awaited in wire.awaited {
            if let Awaited::Dot(index) = awaited {
                self.messages[index].state = if self.crashing {
                    State::Interrupted
                } else {
                    State::Unanswered
                };
            }
        }
    }

    /// Reads as much of the session's unread bytes as the server can have read.
    fn advance(&mut self, session: &str) {
        let Some(wire) = self.wires.get_mut(session) else {
            return;
        };
        // Lines are read from `pos` on and dropped once at the end: draining each
        // line off the front would copy the rest of a large message every time.
        let mut pos = 0;
        loop {
            match wire.mode {
                Mode::AwaitingData => break,
                Mode::Command => {
                    let Some(end) = wire.unread[pos..].iter().position(|&b| b == b'\n') else {
                        break;
                    };
                    let line: Vec<u8> = wire.unread[pos..=pos + end].to_vec();
                    pos += end + 1;
                    let verb = line
                        .split(|b| b.is_ascii_whitespace())
                        .next()
                        .unwrap_or_default()
                        .to_ascii_uppercase();
                    if verb == b"DATA" {
                        wire.awaited.push_back(Awaited::Data);
                        wire.mode = Mode::AwaitingData;
                    } else {
                        wire.awaited.push_back(Awaited::Command);
                    }
                }
                Mode::Data { index, crlf } => {
                    let Some(end) = wire.unread[pos..].iter().position(|&b| b == b'\n') else {
                        break;
                    };
                    let line: Vec<u8> = wire.unread[pos..=pos + end].to_vec();
                    pos += end + 1;
                    let ends_crlf = line.ends_with(b"\r\n");
                    let content = &line[..line.len() - if ends_crlf { 2 } else { 1 }];
                    if content == b"." && ends_crlf && crlf {
                        self.messages[index].state = State::Pending;
                        wire.awaited.push_back(Awaited::Dot(index));
                        wire.mode = Mode::Command;
                        continue;
                    }
                    // As the server does (RFC 5321 4.5.2): the leading dot goes only
                    // when other characters follow it on the line.
                    let unstuffed = if content.len() > 1 && content[0] == b'.' {
                        &line[1..]
                    } else {
                        &line[..]
                    };
                    self.messages[index].body.extend_from_slice(unstuffed);
                    wire.mode = Mode::Data {
                        index,
                        crlf: ends_crlf,
                    };
                }
            }
        }
        wire.unread.drain(..pos);
    }

    /// A whole message handed over at once (the real client's), now pending.
    pub fn complete(&mut self, session: &str, body: Vec<u8>) {
        self.messages.push(Message {
            session: session.to_string(),
            body,
            state: State::Pending,
        });
    }

    /// The reply to the real client's message (`send`): 250 or a failure code.
    pub fn answer_complete(&mut self, session: &str, code: Option<u16>) {
        if let Some(m) = self
            .messages
            .iter_mut()
            .rev()
            .find(|m| m.session == session && m.state == State::Pending)
        {
            m.state = match code {
                Some(250) => State::Acked,
                Some(code) => State::Rejected(code),
                None => State::Unanswered,
            };
        }
    }

    /// A crash begins: until [`Ledger::crash_ends`], a session that closes with
    /// its dot unanswered was cut by the crash ([`State::Interrupted`]).
    pub fn crash_begins(&mut self) {
        self.crashing = true;
    }

    /// The sessions cut by a crash have all closed.
    pub fn crash_ends(&mut self) {
        self.crashing = false;
    }

    /// Files the scenario itself deleted from IN (their bodies): not the connector's loss.
    pub fn removed_by_fault(&mut self, bodies: Vec<Vec<u8>>) {
        self.removed.extend(bodies);
    }

    /// How many replies the server owes the session, as the client can know it
    /// (one per command line read so far, the DATA's, the dot's).
    pub fn owed(&self, session: &str) -> usize {
        self.wires.get(session).map_or(0, |w| w.awaited.len())
    }

    /// The messages so far.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// `no-phantom` and `no-partial` over the files of the target's accepted
    /// directories ("IN"): each is (its path under the root, the message body
    /// as the target's format reads it, see [`read_spool`]).
    pub fn check_in(&self, files: &[(String, Vec<u8>)]) -> Vec<(Invariant, String)> {
        let mut out = Vec::new();
        for (name, body) in files {
            let body = body.as_slice();
            let same: Vec<&Message> = self.messages.iter().filter(|m| m.body == body).collect();
            let complete = same.iter().any(|m| {
                matches!(
                    m.state,
                    State::Pending | State::Acked | State::Rejected(_) | State::Unanswered
                )
            });
            let fine = same
                .iter()
                .any(|m| matches!(m.state, State::Pending | State::Acked | State::Interrupted));
            if fine {
                continue;
            }
            if complete {
                let why = same
                    .iter()
                    .map(|m| match m.state {
                        State::Rejected(code) => format!("rejected with {code} on `{}`", m.session),
                        _ => format!("unanswered on `{}`", m.session),
                    })
                    .next()
                    .unwrap_or_default();
                out.push((
                    Invariant::NoPhantom,
                    format!("{name} holds a message that was {why}"),
                ));
            } else {
                let prefix_of = self.messages.iter().find(|m| {
                    !body.is_empty() && m.body.starts_with(body) && m.body.len() > body.len()
                });
                out.push((
                    Invariant::NoPartial,
                    match prefix_of {
                        Some(m) => format!(
                            "{name} holds {} of the {} bytes of a message of `{}`",
                            body.len(),
                            m.body.len(),
                            m.session
                        ),
                        None => format!(
                            "{name} ({} bytes) is not any message the harness sent",
                            body.len()
                        ),
                    },
                ));
            }
        }
        out
    }

    /// `no-loss` over the accepted directories' files (path, body, as for
    /// [`Ledger::check_in`]) after recovery: each acknowledged body is there
    /// exactly as many times as it was acknowledged (less the scenario's own deletions).
    pub fn check_no_loss(&self, files: &[(String, Vec<u8>)]) -> Vec<(Invariant, String)> {
        let mut acked: BTreeMap<&[u8], (usize, &str)> = BTreeMap::new();
        for m in self.messages.iter().filter(|m| m.state == State::Acked) {
            let e = acked.entry(&m.body).or_insert((0, &m.session));
            e.0 += 1;
        }
        let mut out = Vec::new();
        for (body, (count, session)) in acked {
            let removed = self.removed.iter().filter(|b| b.as_slice() == body).count();
            let want = count.saturating_sub(removed);
            let names: Vec<&str> = files
                .iter()
                .filter(|(_, b)| b.as_slice() == body)
                .map(|(n, _)| n.as_str())
                .collect();
            let summary = summarize(body);
            if names.len() < want {
                out.push((
                    Invariant::NoLoss,
                    format!(
                        "a message acknowledged with 250 on `{session}` ({summary}) is not in IN{}",
                        if want > 1 {
                            format!(" {want} times (found {})", names.len())
                        } else {
                            String::new()
                        }
                    ),
                ));
            } else if names.len() > want && removed == 0 {
                out.push((
                    Invariant::NoLoss,
                    format!(
                        "a message acknowledged on `{session}` ({summary}) is in IN {} times: {}",
                        names.len(),
                        names.join(", ")
                    ),
                ));
            }
        }
        out
    }
}

/// The stored message without what the connector puts in front of it: the
/// `x-sender:`/`x-receiver:` envelope lines and its `Received:` trace header.
pub fn body_of(stored: &[u8]) -> &[u8] {
    let mut pos = 0;
    if stored.starts_with(b"x-sender:") {
        pos = after_field(stored, pos);
    }
    while stored[pos..].starts_with(b"x-receiver:") {
        pos = after_field(stored, pos);
    }
    // Only the connector's own trace header: the message may carry others.
    if stored[pos..].starts_with(b"Received:") {
        pos = after_field(stored, pos);
    }
    &stored[pos..]
}

/// The offset after the header field starting at `start`, folded lines included.
pub(crate) fn after_field(stored: &[u8], start: usize) -> usize {
    let mut pos = start;
    loop {
        match stored[pos..].iter().position(|&b| b == b'\n') {
            None => return stored.len(),
            Some(i) => {
                pos += i + 1;
                // Folded continuation lines start with a space or a tab.
                if !matches!(stored.get(pos), Some(b' ') | Some(b'\t')) {
                    return pos;
                }
            }
        }
    }
}

/// The files of a directory with their contents, sorted by name; empty if missing.
pub fn read_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let content = std::fs::read(e.path()).ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), content))
        })
        .collect();
    out.sort();
    out
}

/// The files of the spool directories `dirs` (relative to `tree`, in that
/// order), each as its path under the root and its whole content.
pub fn read_spool(tree: &Path, dirs: &[String]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in dirs {
        for (name, content) in read_files(&tree.join(dir)) {
            out.push((format!("{dir}/{name}"), content));
        }
    }
    out
}

/// Whether the root-relative path `path` is `dir` or lies under it.
pub fn is_under(path: &str, dir: &str) -> bool {
    path == dir
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Every regular file under `root`, recursively (root-relative name, whole
/// content), sorted; the subtrees named in `skip` (root-relative) are left out.
pub fn read_tree(root: &Path, skip: &[&str]) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, skip: &[&str], out: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            if skip.iter().any(|s| rel == *s) {
                continue;
            }
            match entry.file_type() {
                Ok(t) if t.is_dir() => walk(root, &path, skip, out),
                Ok(t) if t.is_file() => {
                    if let Ok(content) = std::fs::read(&path) {
                        out.push((rel, content));
                    }
                }
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, skip, &mut out);
    out.sort();
    out
}

fn summarize(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let subject = text
        .lines()
        .find_map(|l| l.strip_prefix("Subject:"))
        .map(|s| format!("Subject:{s}, "))
        .unwrap_or_default();
    format!("{subject}{} bytes", body.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(body: &[u8]) -> Vec<u8> {
        [
            b"Received: from a ([127.0.0.1])\r\n\tby b with SMTP id 1;\r\n\tdate\r\n".as_slice(),
            body,
        ]
        .concat()
    }

    #[test]
    fn received_header_is_stripped() {
        assert_eq!(
            body_of(&stored(b"Subject: x\r\n\r\nhi\r\n")),
            b"Subject: x\r\n\r\nhi\r\n"
        );
        let envelope = b"x-sender: a@b\r\nx-receiver: c@d\r\nx-receiver: e@f\r\n";
        let with_envelope = [envelope.as_slice(), &stored(b"hi\r\n")].concat();
        assert_eq!(body_of(&with_envelope), b"hi\r\n");
        assert_eq!(body_of(b"no header\r\n"), b"no header\r\n");
    }

    fn session(l: &mut Ledger, name: &str, exchange: &[(&[u8], Option<u16>)]) {
        l.connected(name);
        l.replied(name, 220);
        for (bytes, reply) in exchange {
            l.sent(name, bytes);
            if let Some(code) = reply {
                l.replied(name, *code);
            }
        }
    }

    #[test]
    fn acked_message_must_be_in_in() {
        let mut l = Ledger::default();
        session(
            &mut l,
            "a",
            &[
                (b"DATA\r\n", Some(354)),
                (b"hello\r\n..dot\r\n.\r\n", Some(250)),
            ],
        );
        assert_eq!(l.messages()[0].body, b"hello\r\n.dot\r\n");
        assert_eq!(l.check_no_loss(&[]).len(), 1);
        assert!(
            l.check_no_loss(&[("1".into(), b"hello\r\n.dot\r\n".to_vec())])
                .is_empty()
        );
        let twice = [
            ("1".into(), b"hello\r\n.dot\r\n".to_vec()),
            ("2".into(), b"hello\r\n.dot\r\n".to_vec()),
        ];
        assert_eq!(
            l.check_no_loss(&twice).len(),
            1,
            "duplicates are a violation"
        );
    }

    #[test]
    fn pipelined_bytes_wait_for_the_354() {
        let mut l = Ledger::default();
        l.connected("a");
        l.replied("a", 220);
        l.sent(
            "a",
            b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nbody\r\n.\r\nQUIT\r\n",
        );
        assert!(l.messages().is_empty(), "nothing is data before the 354");
        l.replied("a", 250);
        l.replied("a", 250);
        l.replied("a", 354);
        assert_eq!(l.messages()[0].state, State::Pending);
        l.replied("a", 250);
        assert_eq!(l.messages()[0].state, State::Acked);
        assert_eq!(l.messages()[0].body, b"body\r\n");
    }

    #[test]
    fn a_refused_data_leaves_commands_as_commands() {
        let mut l = Ledger::default();
        session(&mut l, "a", &[(b"DATA\r\nNOOP\r\n", Some(503))]);
        l.replied("a", 250);
        assert!(l.messages().is_empty());
    }

    #[test]
    fn a_dot_after_a_bare_lf_does_not_end_the_data() {
        let mut l = Ledger::default();
        session(&mut l, "a", &[(b"DATA\r\n", Some(354)), (b"x\n.\n", None)]);
        assert_eq!(l.messages()[0].state, State::Sending);
    }

    #[test]
    fn rejected_in_in_is_a_phantom_and_a_prefix_is_partial() {
        let mut l = Ledger::default();
        session(
            &mut l,
            "a",
            &[(b"DATA\r\n", Some(354)), (b"one\r\n.\r\n", Some(421))],
        );
        session(
            &mut l,
            "b",
            &[(b"DATA\r\n", Some(354)), (b"two\r\nthree\r\n", None)],
        );
        let v = l.check_in(&[("1".into(), b"one\r\n".to_vec())]);
        assert_eq!(v[0].0, Invariant::NoPhantom);
        let v = l.check_in(&[("2".into(), b"two\r\n".to_vec())]);
        assert_eq!(v[0].0, Invariant::NoPartial);
    }

    #[test]
    fn unanswered_and_pending() {
        let mut l = Ledger::default();
        session(
            &mut l,
            "a",
            &[(b"DATA\r\n", Some(354)), (b"x\r\n.\r\n", None)],
        );
        assert!(
            l.check_in(&[("1".into(), b"x\r\n".to_vec())]).is_empty(),
            "pending is fine"
        );
        l.closed("a");
        assert_eq!(
            l.check_in(&[("1".into(), b"x\r\n".to_vec())])[0].0,
            Invariant::NoPhantom
        );
    }

    #[test]
    fn removal_by_the_scenario_is_excused() {
        let mut l = Ledger::default();
        l.complete("send", b"m\r\n".to_vec());
        l.answer_complete("send", Some(250));
        l.removed_by_fault(vec![b"m\r\n".to_vec()]);
        assert!(l.check_no_loss(&[]).is_empty());
    }
}
