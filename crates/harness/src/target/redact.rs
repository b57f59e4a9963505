//! [`Redactor`]: what varies from run to run (ids, times, pids) made fixed.
//!
//! A replacement may number what it replaces: `{seq}` (or `{seq:8}`, eight
//! zero-padded decimal digits, or `{seq:8X}`, eight upper-case hex digits)
//! becomes the rank of the matched text among the distinct texts this rule has
//! matched so far, from 1. `imc serve`'s clock ids (`0006...`) thus read as the
//! in-process connector's counter ids (`00000001`), in the order the harness
//! first saw them; the runner shows it the filesystem's operations first, so
//! that order is the order of the files' creation.

use super::file::Redaction;
use regex::{Captures, Regex};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The target file's redactions, compiled, applied in their order. Clones share
/// the numbering of `{seq}`.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
struct Rule {
    pattern: Regex,
    replace: String,
    /// `Some` when `replace` holds `{seq...}`: (width, hex).
    seq: Option<(usize, bool)>,
    /// The rank of each distinct match so far.
    seen: Arc<Mutex<HashMap<String, usize>>>,
}

/// The `{seq...}` of a replacement, if any: its text, width and radix.
fn seq_of(replace: &str) -> Result<Option<(String, usize, bool)>, String> {
    let Some(start) = replace.find("{seq") else {
        return Ok(None);
    };
    let Some(len) = replace[start..].find('}') else {
        return Err(format!("`{replace}`: `{{seq` is not closed"));
    };
    let token = &replace[start..start + len + 1];
    let spec = &token[4..token.len() - 1];
    let (width, hex) = match spec.strip_prefix(':') {
        None if spec.is_empty() => (0, false),
        Some(w) => {
            let (digits, hex) = match w.strip_suffix('X') {
                Some(d) => (d, true),
                None => (w, false),
            };
            let width = digits.parse::<usize>().map_err(|_| {
                format!("`{token}`: expected `{{seq}}`, `{{seq:8}}` or `{{seq:8X}}`")
            })?;
            (width, hex)
        }
        None => {
            return Err(format!(
                "`{token}`: expected `{{seq}}`, `{{seq:8}}` or `{{seq:8X}}`"
            ));
        }
    };
    Ok(Some((token.to_string(), width, hex)))
}

impl Redactor {
    /// Compiles the redactions (a checked target file's always compile).
    pub fn new(redactions: &[Redaction]) -> Result<Redactor, String> {
        let rules = redactions
            .iter()
            .map(|r| {
                let pattern = Regex::new(&r.pattern.value).map_err(|e| e.to_string())?;
                let (replace, seq) = match seq_of(&r.replace)? {
                    // The token becomes a marker the numbering fills in.
                    Some((token, width, hex)) => {
                        (r.replace.replacen(&token, "\u{0}", 1), Some((width, hex)))
                    }
                    None => (r.replace.clone(), None),
                };
                Ok(Rule {
                    pattern,
                    replace,
                    seq,
                    seen: Arc::default(),
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Redactor { rules })
    }

    /// `text` with every redaction applied.
    pub fn apply(&self, text: &str) -> String {
        let mut out = text.to_string();
        for rule in &self.rules {
            if !rule.pattern.is_match(&out) {
                continue;
            }
            out = match rule.seq {
                None => rule
                    .pattern
                    .replace_all(&out, rule.replace.as_str())
                    .into_owned(),
                Some((width, hex)) => {
                    let mut seen = rule.seen.lock().unwrap_or_else(|e| e.into_inner());
                    rule.pattern
                        .replace_all(&out, |c: &Captures| {
                            let next = seen.len() + 1;
                            let n = *seen.entry(c[0].to_string()).or_insert(next);
                            let n = if hex {
                                format!("{n:0width$X}")
                            } else {
                                format!("{n:0width$}")
                            };
                            let mut with = String::new();
                            c.expand(&rule.replace, &mut with);
                            with.replacen('\u{0}', &n, 1)
                        })
                        .into_owned()
                }
            };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::file::Redaction;

    fn redaction(pattern: &str, replace: &str) -> Redaction {
        serde_saphyr::from_str(&format!("{{pattern: '{pattern}', replace: '{replace}'}}")).unwrap()
    }

    #[test]
    fn seq_numbers_distinct_matches_in_order_of_first_sight() {
        let r = Redactor::new(&[redaction(r"\b[0-9A-F]{16}\b", "{seq:8X}")]).unwrap();
        let shared = r.clone();
        assert_eq!(r.apply("queued as 00063D2A0000BBBB"), "queued as 00000001");
        assert_eq!(
            shared.apply("00063D2A0000CCCC then 00063D2A0000BBBB"),
            "00000002 then 00000001",
            "clones share the numbering"
        );
        let many = Redactor::new(&[redaction("m[0-9]+", "<{seq:2X}>")]).unwrap();
        let text: Vec<String> = (0..11).map(|i| format!("m{i}")).collect();
        assert_eq!(
            many.apply(&text.join(" ")).split(' ').next_back(),
            Some("<0B>")
        );
        let plain = Redactor::new(&[redaction("id=([0-9]+)", "id=$1/{seq}")]).unwrap();
        assert_eq!(plain.apply("id=77 id=78 id=77"), "id=77/1 id=78/2 id=77/1");
    }

    #[test]
    fn a_bad_seq_is_an_error() {
        for bad in ["{seq", "{seq:x}", "{seqence}"] {
            assert!(
                Redactor::new(&[redaction("a", bad)]).is_err(),
                "{bad} accepted"
            );
        }
    }
}
