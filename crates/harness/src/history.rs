//! The history of a run: one ordered record of everything that happened.
//!
//! Every command sent, every reply received, every event logged, every fault
//! applied and every service action, in the order the harness observed them,
//! plus the final listing of `in/` and `work/`. It is what the checks read, what
//! the snapshot stores, and what a failing test prints. Nothing in it depends on
//! the machine: the sandbox path is written `<root>`, ports never appear, and the
//! connector's clock and ids are fixed.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One thing that happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entry {
    /// A step began (1-based index in the scenario, and what it does).
    Step {
        /// Index in the scenario's `steps`, from 1.
        index: usize,
        /// The step, in words.
        action: String,
    },
    /// Bytes the harness sent on a session (a command line, or a summary of data).
    Sent {
        /// Session name.
        session: String,
        /// What was sent.
        text: String,
    },
    /// A reply received on a session.
    Reply {
        /// Session name.
        session: String,
        /// The reply, line by line, as received (without CRLF).
        lines: Vec<String>,
    },
    /// Bytes that are not a well-formed reply.
    Malformed {
        /// Session name.
        session: String,
        /// What was received.
        text: String,
    },
    /// The server closed the session's connection.
    Closed {
        /// Session name.
        session: String,
    },
    /// The harness itself closed a session (disconnect, or the run's end).
    Disconnected {
        /// Session name.
        session: String,
    },
    /// Nothing came back within the reply timeout.
    NoReply {
        /// Session name.
        session: String,
        /// The timeout, in words.
        waited: String,
    },
    /// A connection attempt failed.
    ConnectFailed {
        /// Session name.
        session: String,
        /// Why.
        error: String,
    },
    /// An event the target logged.
    Event {
        /// Event id (`-` in the line form where the target's events have none).
        id: Option<u32>,
        /// Level.
        level: String,
        /// Source.
        source: String,
        /// Category.
        category: String,
        /// Text, with the sandbox root written `<root>`.
        message: String,
    },
    /// A fault applied to the sandbox.
    Fault {
        /// What was done.
        text: String,
    },
    /// A service action and its outcome.
    Service {
        /// What happened (`started`, `stopped`, `crashed`, `start failed: ...`).
        text: String,
        /// Error lines reported by a stop.
        errors: Vec<String>,
    },
    /// A whole message sent by the real client.
    Send {
        /// Outcome (`250 OK` or the client's error).
        text: String,
    },
}

impl Entry {
    /// The session this entry belongs to, if any.
    pub fn session(&self) -> Option<&str> {
        match self {
            Entry::Sent { session, .. }
            | Entry::Reply { session, .. }
            | Entry::Malformed { session, .. }
            | Entry::Closed { session }
            | Entry::Disconnected { session }
            | Entry::NoReply { session, .. }
            | Entry::ConnectFailed { session, .. } => Some(session),
            _ => None,
        }
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Step { index, action } => write!(f, "step {index}: {action}"),
            Entry::Sent { session, text } => write!(f, "{session} > {text}"),
            Entry::Reply { session, lines } => {
                for (i, line) in lines.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "{session} < {line}")?;
                }
                Ok(())
            }
            Entry::Malformed { session, text } => write!(f, "{session} < (malformed) {text:?}"),
            Entry::Closed { session } => write!(f, "{session} : closed by the server"),
            Entry::Disconnected { session } => write!(f, "{session} : disconnected by the client"),
            Entry::NoReply { session, waited } => write!(f, "{session} : no reply within {waited}"),
            Entry::ConnectFailed { session, error } => {
                write!(f, "{session} : connect failed: {error}")
            }
            Entry::Event {
                id,
                level,
                source,
                category,
                message,
            } => {
                let id = id.map_or("-".to_string(), |id| id.to_string());
                write!(f, "event {id} {level} {source} [{category}] {message}")
            }
            Entry::Fault { text } => write!(f, "fault: {text}"),
            Entry::Service { text, errors } => {
                write!(f, "service: {text}")?;
                for e in errors {
                    write!(f, "\n  | {e}")?;
                }
                Ok(())
            }
            Entry::Send { text } => write!(f, "send: {text}"),
        }
    }
}

/// The files left in a directory at the end of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// Directory, relative to the sandbox root.
    pub dir: String,
    /// File names, sorted; `None` when the directory does not exist.
    pub files: Option<Vec<String>>,
}

/// Entries as text, one line per line (a multi-line reply gives several).
pub fn entry_lines(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .flat_map(|e| {
            e.to_string()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A whole run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// The entries, in order.
    pub entries: Vec<Entry>,
    /// `imcdata/in` and `imcdata/work` at the end.
    pub listing: Vec<Listing>,
    /// What the final recovery (the invariants' epilogue) did; not in snapshots.
    #[serde(default)]
    pub recovery: Vec<Entry>,
}

impl History {
    /// Appends an entry.
    pub fn push(&mut self, entry: Entry) {
        self.entries.push(entry);
    }

    /// The snapshot form: one line per line of each entry (a multi-line reply
    /// gives one line per reply line).
    pub fn lines(&self) -> Vec<String> {
        let mut out = entry_lines(&self.entries);
        for l in &self.listing {
            out.push(match &l.files {
                None => format!("final {}: (missing)", l.dir),
                Some(f) if f.is_empty() => format!("final {}: (empty)", l.dir),
                Some(f) => format!("final {}: {}", l.dir, f.join(" ")),
            });
        }
        out
    }
}

impl fmt::Display for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in self.lines() {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}
