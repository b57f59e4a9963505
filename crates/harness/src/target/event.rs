//! [`Event`]: what a target logged, in the harness's own terms.

use std::fmt;

/// The level of an event read from a line that the target file's pattern did
/// not map: the line is kept whole as the message, never dropped.
pub const UNKNOWN_LEVEL: &str = "unknown";

/// One event a target logged (an entry of the Windows event log for the IMC, a
/// log line for Postfix).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The event id (`4055`), where the target's events carry one.
    pub id: Option<u32>,
    /// Severity as the target writes it (`Error`, `warning`), or
    /// [`UNKNOWN_LEVEL`] for a line that did not map.
    pub level: String,
    /// Who logged it (`MSExchangeIMC`, `postfix/cleanup`).
    pub source: String,
    /// The category (`Internal Processing`); empty where the target has none.
    pub category: String,
    /// The text, one paragraph.
    pub message: String,
}

impl fmt::Display for Event {
    /// `4055 Error MSExchangeIMC [Internal Processing] Unable to move...`, the
    /// history's form; `-` for a missing id.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id {
            Some(id) => write!(f, "{id}")?,
            None => f.write_str("-")?,
        }
        write!(
            f,
            " {} {} [{}] {}",
            self.level, self.source, self.category, self.message
        )
    }
}
