//! Seeded defects, only for testing the harness: each breaks one promise the
//! connector makes, so the harness can prove it notices. Never on by default.

use std::fmt;
use std::str::FromStr;

/// A seeded defect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mutant {
    /// Sends the 250 before moving the message into IN; a failed move then goes
    /// unreported (the client already believes the message is safe).
    AckBeforeRename,
    /// Never fsyncs the message file or the IN directory.
    SkipFsync,
    /// Answers 250 although the move into IN failed.
    IgnoreRenameError,
    /// Streams the message straight into `in/<id>`, visible while incomplete.
    PartialIn,
    /// Leaves a rejected message in IN instead of removing it.
    KeepRejected,
}

impl Mutant {
    /// Every mutant.
    pub const ALL: [Mutant; 5] = [
        Mutant::AckBeforeRename,
        Mutant::SkipFsync,
        Mutant::IgnoreRenameError,
        Mutant::PartialIn,
        Mutant::KeepRejected,
    ];

    /// Its name on the command line and in scenarios (`ack-before-rename`).
    pub fn name(self) -> &'static str {
        match self {
            Mutant::AckBeforeRename => "ack-before-rename",
            Mutant::SkipFsync => "skip-fsync",
            Mutant::IgnoreRenameError => "ignore-rename-error",
            Mutant::PartialIn => "partial-in",
            Mutant::KeepRejected => "keep-rejected",
        }
    }
}

impl fmt::Display for Mutant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mutant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mutant::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Mutant::ALL.iter().map(|m| m.name()).collect();
                format!("unknown mutant `{s}`; known mutants: {}", names.join(", "))
            })
    }
}
