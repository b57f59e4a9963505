//! Inline expectations: what a step's `expect` says, compared with what happened.

use crate::client::Reply;
use crate::scenario::{EventSpec, Expect};
use crate::target::Event;
use std::path::Path;

/// What one step produced, for the checks.
#[derive(Debug, Default)]
pub struct StepResult {
    /// Replies received, in order.
    pub replies: Vec<Reply>,
    /// A session of the step was closed by the server.
    pub closed: bool,
    /// A connection attempt failed.
    pub connect_failed: bool,
    /// Events logged during the step (messages with `<root>`).
    pub events: Vec<crate::target::Event>,
    /// Errors reported by service actions (`Some` for service steps).
    pub service_errors: Option<Vec<String>>,
    /// Whether the real client's send failed (`Some` for send steps).
    pub send_failed: Option<bool>,
    /// Things that went wrong whatever the scenario expects (no reply, malformed
    /// reply, a fault that could not be applied...).
    pub problems: Vec<String>,
}

/// Every way `result` departs from `expect`; empty when it holds. `names`
/// redacts a file name as the history shows it (a process target's clock ids
/// numbered), so `exists`/`absent` name files as the history does.
pub fn check(
    expect: &Expect,
    result: &StepResult,
    root: &Path,
    names: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let mut out = Vec::new();
    let wants_reply = expect.code.is_some()
        || expect.enhanced.is_some()
        || expect.text.is_some()
        || expect.text_matches.is_some();
    if wants_reply {
        match result.replies.last() {
            Some(reply) => check_reply(expect, reply, "reply", &mut out),
            None => out.push("expected a reply, got none".into()),
        }
    }
    if let Some(list) = &expect.replies {
        if list.len() != result.replies.len() {
            out.push(format!(
                "expected {} replies, got {}",
                list.len(),
                result.replies.len()
            ));
        }
        for (i, (e, r)) in list.iter().zip(&result.replies).enumerate() {
            check_reply(e, r, &format!("reply {}", i + 1), &mut out);
        }
    }
    if let Some(closed) = expect.closed
        && closed != result.closed
    {
        out.push(if closed {
            "expected the server to close the connection; it stayed open".into()
        } else {
            "expected the connection to stay open; the server closed it".into()
        });
    }
    if let Some(specs) = &expect.events {
        check_events(specs, &result.events, &mut out);
    }
    if expect.no_events == Some(true) && !result.events.is_empty() {
        let ids: Vec<String> = result
            .events
            .iter()
            .map(|e| e.id.map_or("-".to_string(), |id| id.to_string()))
            .collect();
        out.push(format!("expected no events, got {}", ids.join(", ")));
    }
    if let Some(files) = &expect.files {
        for (dir, want) in files {
            match list_dir(&root.join(dir)) {
                None => out.push(format!(
                    "expected {want} file(s) in {dir}, but {dir} is missing"
                )),
                Some(names) if names.len() != *want => out.push(format!(
                    "expected {want} file(s) in {dir}, found {}: [{}]",
                    names.len(),
                    names.join(", ")
                )),
                Some(_) => {}
            }
        }
    }
    for path in expect.exists.iter().flatten() {
        if !present(root, path, names) {
            out.push(format!("expected {path} to exist; it does not"));
        }
    }
    for path in expect.absent.iter().flatten() {
        if present(root, path, names) {
            out.push(format!("expected {path} to be absent; it exists"));
        }
    }
    if let Some(want) = &expect.service_error {
        match &result.service_errors {
            None => out.push("expected a service action's report; this step has none".into()),
            Some(got) if got != want => {
                out.push(format!("expected service errors {want:?}, got {got:?}"))
            }
            Some(_) => {}
        }
    }
    if let Some(want) = expect.connect_failed
        && want != result.connect_failed
    {
        out.push(if want {
            "expected the connection attempt to fail; it succeeded".into()
        } else {
            "expected the connection attempt to succeed; it failed".into()
        });
    }
    if let Some(want) = expect.send_failed {
        match result.send_failed {
            None => out.push("`send_failed` applies to `send` steps only".into()),
            Some(got) if got != want => out.push(if want {
                "expected the send to fail; it succeeded".into()
            } else {
                "expected the send to succeed; it failed".into()
            }),
            Some(_) => {}
        }
    }
    out
}

fn check_reply(expect: &Expect, reply: &Reply, label: &str, out: &mut Vec<String>) {
    let shown = reply.lines.join(" / ");
    if let Some(code) = expect.code
        && code != reply.code
    {
        out.push(format!("{label}: expected code {code}, got `{shown}`"));
    }
    if let Some(enhanced) = &expect.enhanced
        && reply.enhanced.as_deref() != Some(enhanced.as_str())
    {
        out.push(format!(
            "{label}: expected enhanced code {enhanced}, got `{shown}`"
        ));
    }
    if let Some(text) = &expect.text
        && *text != reply.text
    {
        out.push(format!(
            "{label}: expected text {text:?}, got {:?}",
            reply.text
        ));
    }
    if let Some(pattern) = &expect.text_matches {
        match regex::Regex::new(pattern) {
            Ok(re) if re.is_match(&reply.text) => {}
            Ok(_) => out.push(format!(
                "{label}: text {:?} does not match /{pattern}/",
                reply.text
            )),
            Err(e) => out.push(format!("{label}: bad pattern /{pattern}/: {e}")),
        }
    }
}

/// Each spec must match a distinct event, in order (other events may come between).
fn check_events(specs: &[EventSpec], events: &[Event], out: &mut Vec<String>) {
    let mut next = 0;
    for spec in specs {
        match events[next..].iter().position(|e| event_matches(spec, e)) {
            Some(i) => next += i + 1,
            None => {
                let got: Vec<String> = events
                    .iter()
                    .map(|e| {
                        let id = e.id.map_or("-".to_string(), |id| id.to_string());
                        format!("{id} {} [{}] {}", e.level, e.category, e.message)
                    })
                    .collect();
                out.push(format!(
                    "expected an event {}; events of this step: {}",
                    describe_event(spec),
                    if got.is_empty() {
                        "none".to_string()
                    } else {
                        got.join(" || ")
                    }
                ));
            }
        }
    }
}

fn event_matches(spec: &EventSpec, e: &Event) -> bool {
    spec.id.is_none_or(|id| Some(id) == e.id)
        && spec.source.as_ref().is_none_or(|s| *s == e.source)
        && spec.level.as_ref().is_none_or(|l| *l == e.level)
        && spec.category.as_ref().is_none_or(|c| *c == e.category)
        && spec.message.as_ref().is_none_or(|m| *m == e.message)
        && spec
            .message_matches
            .as_ref()
            .is_none_or(|p| regex::Regex::new(p).is_ok_and(|re| re.is_match(&e.message)))
}

fn describe_event(spec: &EventSpec) -> String {
    let mut parts = Vec::new();
    if let Some(id) = spec.id {
        parts.push(format!("id {id}"));
    }
    if let Some(s) = &spec.source {
        parts.push(format!("source {s}"));
    }
    if let Some(l) = &spec.level {
        parts.push(format!("level {l}"));
    }
    if let Some(c) = &spec.category {
        parts.push(format!("category {c:?}"));
    }
    if let Some(m) = &spec.message {
        parts.push(format!("message {m:?}"));
    }
    if let Some(m) = &spec.message_matches {
        parts.push(format!("message matching /{m}/"));
    }
    format!("with {}", parts.join(", "))
}

/// Whether `path` (relative to `root`) exists, its last part compared with
/// the directory's entries as `names` redacts them.
fn present(root: &Path, path: &str, names: &dyn Fn(&str) -> String) -> bool {
    if std::fs::symlink_metadata(root.join(path)).is_ok() {
        return true;
    }
    let p = Path::new(path);
    let (Some(dir), Some(name)) = (p.parent(), p.file_name()) else {
        return false;
    };
    let name = name.to_string_lossy();
    list_dir(&root.join(dir)).is_some_and(|entries| entries.iter().any(|e| names(e) == name))
}

/// The sorted file names in a directory, `None` if it is missing or not a directory.
pub fn list_dir(path: &Path) -> Option<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(path)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Some(names)
}
