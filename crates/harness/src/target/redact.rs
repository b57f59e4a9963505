//! [`Redactor`]: what varies from run to run (ids, times, pids) made fixed.

use super::file::Redaction;
use regex::Regex;

/// The target file's redactions, compiled, applied in their order.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    rules: Vec<(Regex, String)>,
}

impl Redactor {
    /// Compiles the redactions (a checked target file's always compile).
    pub fn new(redactions: &[Redaction]) -> Result<Redactor, regex::Error> {
        let rules = redactions
            .iter()
            .map(|r| Ok((Regex::new(&r.pattern.value)?, r.replace.clone())))
            .collect::<Result<_, regex::Error>>()?;
        Ok(Redactor { rules })
    }

    /// `text` with every redaction applied.
    pub fn apply(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (re, with) in &self.rules {
            if re.is_match(&out) {
                out = re.replace_all(&out, with.as_str()).into_owned();
            }
        }
        out
    }
}
