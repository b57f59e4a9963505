//! The manual (the `harness::scenario` module docs) stays true: every ```yaml
//! example in it loads (a fragment is completed into a whole scenario first), and
//! every key of the language (each top-level key, step, fault, `when`, `expect`
//! key, connector option, service action...) appears in some example.

use harness::scenario;
use std::collections::BTreeSet;
use std::path::Path;

/// The ```yaml blocks of the module docs of `src/scenario/mod.rs`, with the line
/// each starts on.
fn examples() -> Vec<(usize, String)> {
    let source = include_str!("../src/scenario/mod.rs");
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (n, line) in source.lines().enumerate() {
        let Some(doc) = line.strip_prefix("//!") else {
            continue;
        };
        let doc = doc.strip_prefix(' ').unwrap_or(doc);
        match &mut current {
            None if doc.trim() == "```yaml" => current = Some((n + 2, String::new())),
            Some(_) if doc.trim() == "```" => out.push(current.take().unwrap()),
            Some((_, text)) => {
                text.push_str(doc);
                text.push('\n');
            }
            None => {}
        }
    }
    assert!(current.is_none(), "an unclosed ```yaml block");
    out
}

const HEADER: &str = "claims: [KB-1]\nprofile: hardened\n";

/// A whole scenario around `block`: as it is when it is one; else the header
/// keys it lacks and a step; else (steps, or keys of one step) inside steps
/// that start the service and connect the sessions it uses.
fn complete(block: &str) -> String {
    let first = block.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let indent = first.len() - first.trim_start().len();
    let has = |key: &str| block.lines().any(|l| l.starts_with(&format!("{key}:")));
    match indent {
        0 => {
            let mut text = String::new();
            if !has("claims") {
                text.push_str("claims: [KB-1]\n");
            }
            if !has("profile") {
                text.push_str("profile: hardened\n");
            }
            text.push_str(block);
            if !has("steps") {
                text.push_str("steps: [{ service: start }]\n");
            }
            text
        }
        2 => format!(
            "{HEADER}steps:\n  - service: start\n{}{block}",
            prelude(block)
        ),
        _ => format!(
            "{HEADER}steps:\n  - service: start\n  - connect: a\n  - command: NOOP\n{block}"
        ),
    }
}

/// `connect` steps for the sessions `steps` uses before connecting them.
fn prelude(steps: &str) -> String {
    let mut connected = BTreeSet::new();
    let mut needed = Vec::new();
    let mut need = |name: &str, connected: &BTreeSet<String>| {
        if !connected.contains(name) && !needed.iter().any(|n: &String| n == name) {
            needed.push(name.to_string());
        }
    };
    for line in steps.lines() {
        let item = line.trim_start().trim_start_matches("- ");
        if let Some(name) = item.strip_prefix("connect: ") {
            connected.insert(name.split_whitespace().next().unwrap().to_string());
            continue;
        }
        if let Some(at) = line.find("session: ") {
            let name: String = line[at + 9..]
                .chars()
                .take_while(|c| c.is_alphanumeric())
                .collect();
            need(&name, &connected);
        }
        if let Some(name) = item.strip_prefix("disconnect: ") {
            need(name.trim(), &connected);
        }
        let action = ["command:", "pipeline:", "data:", "dot:", "message:", "raw:"]
            .iter()
            .any(|a| item.starts_with(a));
        if action && connected.is_empty() {
            need("a", &connected);
        }
    }
    needed
        .iter()
        .map(|n| format!("  - connect: {n}\n"))
        .collect()
}

#[test]
fn every_example_of_the_manual_loads() {
    let examples = examples();
    assert!(examples.len() > 15, "{} examples", examples.len());
    for (line, block) in examples {
        let text = complete(&block);
        if let Err(e) = scenario::parse(&text, Path::new("manual.yaml")) {
            panic!(
                "the example at src/scenario/mod.rs:{line} does not load:\n{e}\n--- as completed:\n{text}"
            );
        }
    }
}

/// Every name the schema knows: object keys, enum strings, fault forms.
fn names(value: &serde_json::Value, out: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Object(props)) = map.get("properties") {
                out.extend(props.keys().cloned());
            }
            if let Some(serde_json::Value::String(c)) = map.get("const") {
                out.insert(c.clone());
            }
            for v in map.values() {
                names(v, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| names(v, out)),
        _ => {}
    }
}

#[test]
fn every_key_of_the_language_has_an_example() {
    let schema: serde_json::Value = serde_json::from_str(&scenario::schema()).unwrap();
    let mut all = BTreeSet::new();
    names(&schema, &mut all);
    let text: String = examples().into_iter().map(|(_, b)| b).collect();
    let words: BTreeSet<&str> = text
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .collect();
    let missing: Vec<&String> = all.iter().filter(|n| !words.contains(n.as_str())).collect();
    assert!(
        missing.is_empty(),
        "the manual (src/scenario/mod.rs) has no example of {missing:?}"
    );
    for key in [
        "mutant",
        "expect_violation",
        "after_data_bytes",
        "before_dot",
        "check_disk",
    ] {
        assert!(all.contains(key), "the schema lost {key}");
    }
}
