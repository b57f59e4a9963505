//! [`ScenarioError`]: what went wrong with a scenario file, rendered like a compiler error.

use annotate_snippets::{AnnotationKind, Level, Renderer, Snippet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Why a scenario could not be loaded.
///
/// `Display` renders a compiler-style report: the message, the file, line and
/// column, the offending line with a caret under the culprit, and a hint where
/// there is one:
///
/// ```text
/// error: unknown field `comand`, expected one of `note`, `session`, `service`, ...
///  --> scenarios/x.yaml:12:5
///    |
/// 12 |   - comand: DATA
///    |     ^^^^^^ unknown field
///    |
///    = help: did you mean `command`?
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ScenarioError {
    /// A file or folder could not be read, or does not exist.
    Io {
        /// The path that could not be read.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid YAML, or does not fit the scenario language (an unknown
    /// key, a value of the wrong type, a missing key).
    Syntax(Box<Diagnostic>),
    /// The file parsed but breaks a rule of the language (two actions in one step, a
    /// session that was never connected, a regex that does not compile...).
    Invalid(Box<Diagnostic>),
}

impl ScenarioError {
    /// The 1-based line of the culprit, when known.
    pub fn line(&self) -> Option<usize> {
        self.diagnostic()
            .and_then(|d| d.at.as_ref())
            .map(|at| at.line)
    }

    /// The 1-based column (in characters) of the culprit, when known.
    pub fn column(&self) -> Option<usize> {
        self.diagnostic()
            .and_then(|d| d.at.as_ref())
            .map(|at| at.column)
    }

    /// The file (or folder) concerned.
    pub fn path(&self) -> &Path {
        match self {
            ScenarioError::Io { path, .. } => path,
            ScenarioError::Syntax(d) | ScenarioError::Invalid(d) => &d.path,
        }
    }

    /// The 1-based index of the step concerned, for errors found in a step.
    pub fn step(&self) -> Option<usize> {
        self.diagnostic().and_then(|d| d.step)
    }

    /// The one-line message, without location, snippet or hint.
    pub fn message(&self) -> String {
        match self {
            ScenarioError::Io { path, source } => {
                format!("cannot read `{}`: {source}", path.display())
            }
            ScenarioError::Syntax(d) | ScenarioError::Invalid(d) => d.message.clone(),
        }
    }

    /// The hint shown after the snippet, if any.
    pub fn help(&self) -> Option<&str> {
        self.diagnostic().and_then(|d| d.help.as_deref())
    }

    fn diagnostic(&self) -> Option<&Diagnostic> {
        match self {
            ScenarioError::Io { .. } => None,
            ScenarioError::Syntax(d) | ScenarioError::Invalid(d) => Some(d),
        }
    }
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScenarioError::Io { .. } => write!(f, "error: {}", self.message()),
            ScenarioError::Syntax(d) | ScenarioError::Invalid(d) => d.fmt(f),
        }
    }
}

impl std::error::Error for ScenarioError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ScenarioError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A located message about a scenario file (see [`ScenarioError`]).
#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub(crate) path: PathBuf,
    pub(crate) message: String,
    pub(crate) label: Option<String>,
    pub(crate) help: Option<String>,
    pub(crate) step: Option<usize>,
    pub(crate) at: Option<At>,
}

/// Where a diagnostic points: a line and column plus the source lines to show.
#[derive(Clone, Debug)]
pub(crate) struct At {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The text of the line.
    pub text: String,
    /// The byte range within `text` to underline (never empty unless `text` is).
    pub range: Range<usize>,
}

impl At {
    /// Points at `line:column` of `source`, underlining `len` characters (at least one,
    /// at most to the end of that line).
    pub(crate) fn new(source: &str, line: usize, column: usize, len: usize) -> At {
        let text = source
            .lines()
            .nth(line.saturating_sub(1))
            .unwrap_or("")
            .to_string();
        let byte_at = |chars: usize| {
            text.char_indices()
                .nth(chars)
                .map_or(text.len(), |(i, _)| i)
        };
        let start = byte_at(column.saturating_sub(1));
        let mut end = byte_at(column.saturating_sub(1) + len.max(1));
        // Do not underline trailing blanks.
        while end > start + 1 && text[..end].ends_with(char::is_whitespace) {
            end -= text[..end].chars().next_back().map_or(1, char::len_utf8);
        }
        if end <= start {
            end = (start + 1).min(text.len());
        }
        At {
            line,
            column,
            text,
            range: start..end,
        }
    }
}

impl Diagnostic {
    pub(crate) fn new(path: &Path, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            path: path.to_path_buf(),
            message: message.into(),
            label: None,
            help: None,
            step: None,
            at: None,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display().to_string();
        if let Some(at) = self.at.as_ref().filter(|at| !at.text.is_empty()) {
            let mut annotation = AnnotationKind::Primary.span(at.range.clone());
            if let Some(label) = &self.label {
                annotation = annotation.label(label.as_str());
            }
            let mut group = Level::ERROR.primary_title(self.message.as_str()).element(
                Snippet::source(at.text.as_str())
                    .line_start(at.line)
                    .path(path.as_str())
                    .annotation(annotation),
            );
            if let Some(help) = &self.help {
                group = group.element(Level::HELP.message(help.as_str()));
            }
            return f.write_str(&Renderer::plain().render(&[group]));
        }
        writeln!(f, "error: {}", self.message)?;
        match &self.at {
            Some(at) => write!(f, " --> {path}:{}:{}", at.line, at.column)?,
            None => write!(f, " --> {path}")?,
        }
        if let Some(help) = &self.help {
            write!(f, "\n  = help: {help}")?;
        }
        Ok(())
    }
}
