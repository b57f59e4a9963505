//! [`TargetFileError`]: what is wrong with a target file, located like a
//! scenario error (file:line:column, the line, a caret, a hint).

use annotate_snippets::{AnnotationKind, Level, Renderer, Snippet};
use serde_saphyr::{Error as YamlError, Location, MessageFormatter, UserMessageFormatter};
use std::fmt;
use std::path::{Path, PathBuf};

/// Why a target file could not be loaded.
///
/// `Display` renders it as a compiler does:
///
/// ```text
/// error: unknown field `comand`, expected one of `name`, `description`, `command`, ...
///  --> targets/imc-serve.yaml:3:1
///   |
/// 3 | comand:
///   | ^^^^^^ unknown field
///   |
///   = help: did you mean `command`?
/// ```
#[derive(Debug)]
pub enum TargetFileError {
    /// The file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not YAML, or not the shape of a target file (an unknown key, a wrong type).
    Syntax(Box<Located>),
    /// The shape is right but a value is not (a regex that does not compile, an
    /// unknown placeholder, readiness given two ways).
    Invalid(Box<Located>),
}

/// A message about a place in a target file.
#[derive(Clone, Debug)]
pub struct Located {
    path: PathBuf,
    message: String,
    label: Option<String>,
    help: Option<String>,
    /// 1-based line and column, and the line's text.
    at: Option<(usize, usize, usize, String)>,
}

impl Located {
    pub(crate) fn new(path: &Path, message: impl Into<String>) -> Box<Located> {
        Box::new(Located {
            path: path.to_path_buf(),
            message: message.into(),
            label: None,
            help: None,
            at: None,
        })
    }

    pub(crate) fn label(mut self: Box<Self>, label: impl Into<String>) -> Box<Located> {
        self.label = Some(label.into());
        self
    }

    pub(crate) fn help(mut self: Box<Self>, help: impl Into<String>) -> Box<Located> {
        self.help = Some(help.into());
        self
    }

    /// Points at `location` of `source` (nothing if the parser gave none).
    pub(crate) fn at(mut self: Box<Self>, source: &str, location: Location) -> Box<Located> {
        if location.line() > 0 {
            let line = location.line() as usize;
            let text = source.lines().nth(line - 1).unwrap_or("").to_string();
            let len = (location.span().len() as usize).max(1);
            self.at = Some((line, location.column() as usize, len, text));
        }
        self
    }
}

impl TargetFileError {
    /// The 1-based line of the culprit, when known.
    pub fn line(&self) -> Option<usize> {
        self.located().and_then(|l| l.at.as_ref()).map(|a| a.0)
    }

    /// The 1-based column of the culprit, when known.
    pub fn column(&self) -> Option<usize> {
        self.located().and_then(|l| l.at.as_ref()).map(|a| a.1)
    }

    /// The one-line message, without location or hint.
    pub fn message(&self) -> String {
        match self {
            TargetFileError::Io { path, source } => {
                format!("cannot read `{}`: {source}", path.display())
            }
            TargetFileError::Syntax(l) | TargetFileError::Invalid(l) => l.message.clone(),
        }
    }

    /// The hint, if any.
    pub fn help(&self) -> Option<&str> {
        self.located().and_then(|l| l.help.as_deref())
    }

    fn located(&self) -> Option<&Located> {
        match self {
            TargetFileError::Io { .. } => None,
            TargetFileError::Syntax(l) | TargetFileError::Invalid(l) => Some(l),
        }
    }
}

impl fmt::Display for TargetFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(l) = self.located() else {
            return write!(f, "error: {}", self.message());
        };
        let path = l.path.display().to_string();
        if let Some((line, column, len, text)) = l.at.as_ref().filter(|a| !a.3.is_empty()) {
            let byte = |chars: usize| {
                text.char_indices()
                    .nth(chars)
                    .map_or(text.len(), |(i, _)| i)
            };
            let start = byte(column.saturating_sub(1));
            let end = byte(column.saturating_sub(1) + len).max((start + 1).min(text.len()));
            let mut annotation = AnnotationKind::Primary.span(start..end);
            if let Some(label) = &l.label {
                annotation = annotation.label(label.as_str());
            }
            let mut group = Level::ERROR.primary_title(l.message.as_str()).element(
                Snippet::source(text.as_str())
                    .line_start(*line)
                    .path(path.as_str())
                    .annotation(annotation),
            );
            if let Some(help) = &l.help {
                group = group.element(Level::HELP.message(help.as_str()));
            }
            return f.write_str(&Renderer::plain().render(&[group]));
        }
        write!(f, "error: {}\n --> {path}", l.message)?;
        if let Some(help) = &l.help {
            write!(f, "\n  = help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for TargetFileError {}

/// A serde-saphyr error in our words, located.
pub(crate) fn from_yaml(err: &YamlError, source: &str, path: &Path) -> Box<Located> {
    let mut inner = err;
    while let YamlError::WithSnippet { error, .. } | YamlError::AliasError { error, .. } = inner {
        inner = error;
    }
    let (message, label, help) = match inner {
        YamlError::SerdeUnknownField {
            field, expected, ..
        } => (
            format!("unknown field `{field}`, {}", one_of(expected)),
            Some("unknown field".to_string()),
            closest(field, expected).map(|s| format!("did you mean `{s}`?")),
        ),
        YamlError::SerdeUnknownVariant {
            variant, expected, ..
        } => (
            format!("unknown variant `{variant}`, {}", one_of(expected)),
            Some("unknown variant".to_string()),
            closest(variant, expected).map(|s| format!("did you mean `{s}`?")),
        ),
        YamlError::SerdeMissingField { field, .. } => (
            format!("missing field `{field}`"),
            Some(format!("`{field}` is missing from this mapping")),
            Some(format!("add `{field}:` with its value")),
        ),
        YamlError::Eof { .. } => (
            "unexpected end of file".to_string(),
            None,
            Some("a target file needs at least `command`, `ready`, `spool` and `events`".into()),
        ),
        other => (
            UserMessageFormatter.format_message(other).into_owned(),
            None,
            None,
        ),
    };
    let mut located = Located::new(path, message);
    located.label = label;
    located.help = help;
    match err.location() {
        Some(l) => located.at(source, l),
        None => located,
    }
}

fn one_of(names: &[&str]) -> String {
    let ticked: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match ticked.as_slice() {
        [] => "there are none".into(),
        [one] => format!("expected {one}"),
        many => format!("expected one of {}", many.join(", ")),
    }
}

/// The expected name closest to `got`, if close enough to be a typo.
pub(crate) fn closest<'a>(got: &str, expected: &[&'a str]) -> Option<&'a str> {
    expected
        .iter()
        .map(|e| (distance(got, e), *e))
        .filter(|(d, e)| *d <= (e.chars().count().max(3) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, e)| e)
}

/// Levenshtein distance, with a swap of neighbours costing 1.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}
