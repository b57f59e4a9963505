//! Reading a target's events: a JSON-lines file or a text log, read from
//! where the last read stopped, mapped line by line to [`Event`]s.
//!
//! Reads are on demand, not by a background task: a connector logs an event
//! before the reply it explains, so reading the file right after a reply sees
//! the event, and the history keeps the order the connector had.

use super::event::{Event, UNKNOWN_LEVEL};
use super::file::{EventSource, JsonFields};
use super::redact::Redactor;
use regex::Regex;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// How lines become events.
#[derive(Clone, Debug)]
enum Mapping {
    Json(JsonFields),
    /// The pattern, and the level of a line it maps without one.
    Log(Regex, String),
}

/// The event file of a target, read incrementally.
#[derive(Debug)]
pub struct EventReader {
    path: PathBuf,
    mapping: Mapping,
    redactor: Redactor,
    /// Bytes of the file already read.
    offset: u64,
    /// The start of a line whose end has not been written yet.
    partial: Vec<u8>,
}

impl EventReader {
    /// A reader of `path` (placeholders expanded) as `source` says, from the
    /// file's current end: what earlier runs logged there is not this run's.
    pub fn new(source: &EventSource, path: PathBuf, redactor: Redactor) -> Result<Self, String> {
        let mapping = match source {
            EventSource::JsonLines(j) => Mapping::Json(j.fields.clone()),
            EventSource::Log(l) => Mapping::Log(
                Regex::new(&l.pattern.value).map_err(|e| format!("events.log.pattern: {e}"))?,
                l.level.clone().unwrap_or_default(),
            ),
        };
        let offset = std::fs::metadata(&path).map_or(0, |m| m.len());
        Ok(EventReader {
            path,
            mapping,
            redactor,
            offset,
            partial: Vec::new(),
        })
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every complete line appended since the last call, as events. A file
    /// not created yet has none; a file that shrank (rotated, truncated) is
    /// read again from its start.
    pub fn poll(&mut self) -> Vec<Event> {
        self.poll_lines().into_iter().map(|(_, e)| e).collect()
    }

    /// [`poll`](Self::poll), each event with the line it was read from (not
    /// redacted): what readiness by a log line matches.
    pub fn poll_lines(&mut self) -> Vec<(String, Event)> {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let len = file.metadata().map_or(0, |m| m.len());
        if len < self.offset {
            self.offset = 0;
            self.partial.clear();
        }
        if len == self.offset || file.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut bytes = Vec::new();
        if file
            .take(len - self.offset)
            .read_to_end(&mut bytes)
            .is_err()
        {
            return Vec::new();
        }
        self.offset += bytes.len() as u64;
        self.partial.extend_from_slice(&bytes);
        let mut events = Vec::new();
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if !line.trim().is_empty() {
                events.push((line.to_string(), self.map(line)));
            }
        }
        events
    }

    /// One line as an event, redacted; a line that does not map is kept whole
    /// with level [`UNKNOWN_LEVEL`].
    pub fn map(&self, line: &str) -> Event {
        let event = match &self.mapping {
            Mapping::Json(fields) => map_json(line, fields),
            Mapping::Log(re, level) => map_log(line, re, level),
        }
        .unwrap_or_else(|| Event {
            id: None,
            level: UNKNOWN_LEVEL.into(),
            source: String::new(),
            category: String::new(),
            message: line.to_string(),
        });
        let r = &self.redactor;
        Event {
            id: event.id,
            level: r.apply(&event.level),
            source: r.apply(&event.source),
            category: r.apply(&event.category),
            message: r.apply(&event.message),
        }
    }
}

fn map_json(line: &str, fields: &JsonFields) -> Option<Event> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let object = value.as_object()?;
    let text = |key: &str| match object.get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let id = match object.get(&fields.id) {
        Some(serde_json::Value::Number(n)) => Some(u32::try_from(n.as_u64()?).ok()?),
        Some(serde_json::Value::String(s)) => Some(s.trim().parse().ok()?),
        _ => None,
    };
    // Without a message there is nothing to read: keep the line whole instead.
    object.get(&fields.message)?;
    Some(Event {
        id,
        level: text(&fields.level),
        source: text(&fields.source),
        category: text(&fields.category),
        message: text(&fields.message),
    })
}

fn map_log(line: &str, re: &Regex, default_level: &str) -> Option<Event> {
    let caps = re.captures(line)?;
    let group = |name: &str| caps.name(name).map_or("", |m| m.as_str()).to_string();
    let id = match caps.name("id") {
        Some(m) => Some(m.as_str().trim().parse().ok()?),
        None => None,
    };
    let level = match caps.name("level") {
        Some(m) if !m.as_str().is_empty() => m.as_str().to_string(),
        _ => default_level.to_string(),
    };
    Some(Event {
        id,
        level,
        source: group("source"),
        category: group("category"),
        message: group("message"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::file::{JsonLines, Redaction, TextLog};
    use serde_saphyr::{Location, Spanned};

    fn spanned(s: &str) -> Spanned<String> {
        Spanned::new(s.into(), Location::UNKNOWN, Location::UNKNOWN)
    }

    #[test]
    fn json_lines_are_read_as_they_are_completed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ev.jsonl");
        std::fs::write(&path, "{\"id\":1,\"message\":\"before\"}\n").unwrap();
        let source = EventSource::JsonLines(JsonLines {
            path: spanned("{events}"),
            fields: JsonFields::default(),
        });
        let redactor = Redactor::new(&[Redaction {
            pattern: spanned(r"\b[0-9A-F]{16}\b"),
            replace: "<id>".into(),
        }])
        .unwrap();
        let mut r = EventReader::new(&source, path.clone(), redactor).unwrap();
        assert!(r.poll().is_empty(), "what was there before is not read");
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        write!(f, "{{\"id\":4055,\"level\":\"Error\",\"source\":\"S\",\"category\":\"C\",\"message\":\"file 0000017F3A2B4C5D\"}}\n{{\"id\":7,").unwrap();
        let got = r.poll();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, Some(4055));
        assert_eq!(got[0].message, "file <id>");
        write!(f, "\"message\":\"x\"}}\nnot json\n").unwrap();
        let got = r.poll();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id, Some(7));
        assert_eq!(got[1].level, UNKNOWN_LEVEL);
        assert_eq!(got[1].message, "not json");
    }

    #[test]
    fn a_log_line_maps_through_the_regex_or_is_kept() {
        let source = EventSource::Log(TextLog {
            path: spanned("{run}/log"),
            pattern: spanned(
                r"^\w{3} [ \d]\d \d\d:\d\d:\d\d \S+ (?P<source>[^\[]+)\[\d+\]: (?:(?P<level>warning|error|fatal): )?(?P<message>.*)$",
            ),
            level: Some("info".into()),
        });
        let r = EventReader::new(&source, "/nonexistent".into(), Redactor::default()).unwrap();
        let e = r.map("Dec  1 10:00:00 mx postfix/cleanup[123]: warning: write queue file: No space left on device");
        assert_eq!(e.source, "postfix/cleanup");
        assert_eq!(e.level, "warning");
        assert_eq!(e.message, "write queue file: No space left on device");
        assert_eq!(e.id, None);
        let e = r.map("Dec 01 10:00:00 mx postfix/master[1]: daemon started");
        assert_eq!(
            (e.level.as_str(), e.message.as_str()),
            ("info", "daemon started")
        );
        let e = r.map("garbage");
        assert_eq!(
            (e.level.as_str(), e.message.as_str()),
            (UNKNOWN_LEVEL, "garbage")
        );
    }
}
