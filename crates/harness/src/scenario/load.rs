//! Reading scenario files: [`parse`], [`load`] and [`discover`].

use super::error::{At, Diagnostic, ScenarioError};
use super::locate::Tree;
use super::model::Scenario;
use super::validate;
use serde_saphyr::{Error as YamlError, MessageFormatter, UserMessageFormatter};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Parses and checks the text of a scenario file; `path` names it in errors and gives
/// the default `name` (the file stem).
///
/// On success every rule of the language holds, `name` is set, and every session
/// action (`command`, `pipeline`, `data`, `dot`, `message`, `raw`) has its `session`
/// set (inherited ones resolved).
pub fn parse(source: &str, path: &Path) -> Result<Scenario, ScenarioError> {
    let mut scenario: Scenario = serde_saphyr::from_str(source)
        .map_err(|err| ScenarioError::Syntax(Box::new(yaml_diagnostic(&err, source, path))))?;
    let tree = Tree::parse(source);
    validate::check(&mut scenario, &tree).map_err(|problem| {
        ScenarioError::Invalid(Box::new(problem.into_diagnostic(&tree, source, path)))
    })?;
    if scenario.name.is_none() {
        scenario.name = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned());
    }
    Ok(scenario)
}

/// Reads, parses and checks the scenario file at `path` (see [`parse`]).
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let source = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&source, path)
}

/// Expands `paths` into scenario files.
///
/// A file is taken as it is, whatever its extension. A folder is searched
/// recursively for `*.yaml` and `*.yml` files (names starting with `.` are skipped,
/// and so is `claims.yaml`, the claims registry), which come sorted by path. Files keep the order of `paths`; a file named twice
/// is listed once. A path that does not exist or cannot be read is an error naming it.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ScenarioError> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| io_error(path, source))?;
        let found = if meta.is_dir() {
            let mut found = Vec::new();
            let mut visited = BTreeSet::new();
            walk(path, &mut found, &mut visited)?;
            found.sort();
            found
        } else {
            vec![path.clone()]
        };
        for file in found {
            if seen.insert(file.clone()) {
                out.push(file);
            }
        }
    }
    Ok(out)
}

fn io_error(path: &Path, source: std::io::Error) -> ScenarioError {
    ScenarioError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn walk(
    dir: &Path,
    found: &mut Vec<PathBuf>,
    visited: &mut BTreeSet<PathBuf>,
) -> Result<(), ScenarioError> {
    // Symbolic links are followed; a folder reached twice (a link loop) is read once.
    let canonical = dir.canonicalize().map_err(|e| io_error(dir, e))?;
    if !visited.insert(canonical) {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| io_error(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let meta = std::fs::metadata(&path).map_err(|e| io_error(&path, e))?;
        if meta.is_dir() {
            walk(&path, found, visited)?;
        } else if meta.is_file() && is_scenario_file(&path) && name != crate::claims::REGISTRY_FILE
        {
            found.push(path);
        }
    }
    Ok(())
}

fn is_scenario_file(path: &Path) -> bool {
    path.extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| ext.eq_ignore_ascii_case("yaml") || ext.eq_ignore_ascii_case("yml"))
}

/// Turns a serde-saphyr error into a diagnostic with our wording.
fn yaml_diagnostic(err: &YamlError, source: &str, path: &Path) -> Diagnostic {
    let inner = original(err);
    let location = err.location().filter(|l| l.line() > 0);
    let found = location.map(|l| {
        let at = At::new(
            source,
            l.line() as usize,
            l.column() as usize,
            l.span().len() as usize,
        );
        at.text[at.range.clone()].to_string()
    });
    let described = describe(inner, found.as_deref());
    let mut d = Diagnostic::new(path, described.message);
    d.label = described.label;
    d.help = described.help;
    d.at = location.map(|l| {
        At::new(
            source,
            l.line() as usize,
            l.column() as usize,
            l.span().len() as usize,
        )
    });
    super::teach::rewrite(inner, d, source)
}

/// The error under the snippet and alias wrappers.
fn original(err: &YamlError) -> &YamlError {
    match err {
        YamlError::WithSnippet { error, .. } | YamlError::AliasError { error, .. } => {
            original(error)
        }
        other => other,
    }
}

struct Described {
    message: String,
    label: Option<String>,
    help: Option<String>,
}

/// `expected `a``, `expected one of `a`, `b``, or `there are none` for no names.
fn expected_one_of(names: &[&str]) -> String {
    let ticked: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match ticked.as_slice() {
        [] => "there are none".to_string(),
        [one] => format!("expected {one}"),
        many => format!("expected one of {}", many.join(", ")),
    }
}

/// Describes what was found at an error's location, for "expected X, found Y".
fn found_text(found: Option<&str>) -> String {
    match found.map(str::trim) {
        None | Some("") => String::new(),
        Some(t) if t.starts_with('[') || t == "-" || t.starts_with("- ") => {
            ", found a list".to_string()
        }
        Some(t) if t.starts_with('{') => ", found a mapping".to_string(),
        Some(t) => format!(", found `{t}`"),
    }
}

/// The offending scalar, quoted, with a leading space (or nothing if unknown).
fn quoted(found: Option<&str>) -> String {
    match found.map(str::trim) {
        None | Some("") => String::new(),
        Some(t) => format!(" `{t}`"),
    }
}

fn describe(err: &YamlError, found: Option<&str>) -> Described {
    let plain = |message: String| Described {
        message,
        label: None,
        help: None,
    };
    match err {
        YamlError::SerdeUnknownField {
            field, expected, ..
        } => Described {
            message: format!("unknown field `{field}`, {}", expected_one_of(expected)),
            label: Some("unknown field".into()),
            help: suggest(field, expected).map(|s| format!("did you mean `{s}`?")),
        },
        YamlError::SerdeUnknownVariant {
            variant, expected, ..
        } => Described {
            message: format!("unknown variant `{variant}`, {}", expected_one_of(expected)),
            label: Some("unknown variant".into()),
            help: suggest(variant, expected).map(|s| format!("did you mean `{s}`?")),
        },
        YamlError::SerdeMissingField { field, .. } => Described {
            message: format!("missing field `{field}`"),
            label: Some(format!("`{field}` is missing from this mapping")),
            help: Some(format!("add `{field}:` with its value")),
        },
        YamlError::InvalidScalar { ty, .. } => Described {
            message: format!(
                "invalid value{}: expected {}",
                quoted(found),
                scalar_kind(ty)
            ),
            label: Some(format!("expected {}", scalar_kind(ty))),
            help: None,
        },
        YamlError::InvalidBooleanStrict { .. } => Described {
            message: format!("invalid value{}: expected `true` or `false`", quoted(found)),
            label: Some("expected `true` or `false`".into()),
            help: None,
        },
        YamlError::Unexpected { expected, .. } => {
            let what = match *expected {
                "string scalar" => "a string",
                "sequence start" => "a list (`[a, b]`, or `- a` lines)",
                "mapping start" => "a mapping (`key: value`)",
                "scalar" => "a single value, not a list or a mapping",
                other => other,
            };
            Described {
                message: format!("wrong type: expected {what}{}", found_text(found)),
                label: Some(format!("expected {what}")),
                help: None,
            }
        }
        YamlError::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => Described {
            message: format!("wrong type: expected {expected}, found {unexpected}"),
            label: Some(format!("expected {expected}")),
            help: None,
        },
        YamlError::SerdeInvalidValue {
            unexpected,
            expected,
            ..
        } => plain(format!("invalid value {unexpected}: expected {expected}")),
        YamlError::DuplicateMappingKey { key, .. } => Described {
            message: match key {
                Some(k) => format!("duplicate key `{k}`"),
                None => "duplicate key".to_string(),
            },
            label: Some("set a second time here".into()),
            help: Some("a key may appear once per mapping".into()),
        },
        YamlError::Eof { .. } => Described {
            message: "unexpected end of file".into(),
            label: None,
            help: Some("a scenario needs at least `claims`, `profile` and `steps`".into()),
        },
        YamlError::MultipleDocuments { .. } => Described {
            message: "a scenario file holds a single YAML document, found a second one".into(),
            label: Some("second document".into()),
            help: Some("put each scenario in a file of its own".into()),
        },
        other => plain(UserMessageFormatter.format_message(other).into_owned()),
    }
}

fn scalar_kind(ty: &str) -> String {
    match ty {
        "u8" => "an integer from 0 to 255".into(),
        "u16" => "an integer from 0 to 65535".into(),
        "u32" => "an integer from 0 to 4294967295".into(),
        "u64" | "usize" => "a non-negative integer".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".into(),
        "f32" | "f64" => "a number".into(),
        "bool" | "boolean" => "`true` or `false`".into(),
        other => format!("a value of type {other}"),
    }
}

/// The expected name closest to `got`, if it is close enough to be a typo.
pub(crate) fn suggest<'a>(got: &str, expected: &[&'a str]) -> Option<&'a str> {
    expected
        .iter()
        .map(|e| (edit_distance(got, e), *e))
        .filter(|(d, e)| *d <= (e.chars().count().max(3) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, e)| e)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and
/// transpositions of neighbours each cost 1.
fn edit_distance(a: &str, b: &str) -> usize {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(suggest("comand", &["command", "connect"]), Some("command"));
        assert_eq!(suggest("xyz", &["command", "connect"]), None);
        assert_eq!(suggest("fautl", &["fault", "data"]), Some("fault"));
    }
}
