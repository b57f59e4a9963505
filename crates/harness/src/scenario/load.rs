//! Reading scenario files: [`parse`], [`load`] and [`discover`].

use super::error::{At, Diagnostic, ScenarioError};
use super::locate::Tree;
use super::model::Scenario;
use super::validate;
use serde_saphyr::{Error as YamlError, MessageFormatter, UserMessageFormatter};
use std::collections::BTreeSet;
use std::io::Write;
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
    scenario.targets_dir = path
        .parent()
        .and_then(crate::target::choice::targets_dir)
        .or_else(|| crate::target::choice::default_dir(None));
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

/// The largest scenario file [`load`] reads: 16 MiB. Scenario files are a few
/// KiB; explore's reproducers hold message texts of up to 1.25 MiB.
pub const MAX_FILE_SIZE: u64 = 16 << 20;

/// Reads, parses and checks the scenario file at `path` (see [`parse`]).
///
/// Only a regular file of at most [`MAX_FILE_SIZE`] bytes is read (a FIFO would
/// block, `/dev/zero` would never end), and it must be UTF-8: the first invalid
/// byte is reported with its line and column.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let bytes = read_capped(path).map_err(|source| io_error(path, source))?;
    let source = utf8(bytes, path)?;
    parse(&source, path)
}

/// The bytes of the regular file at `path`, refusing anything else and anything
/// longer than [`MAX_FILE_SIZE`].
fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // Non-blocking, so that opening a FIFO returns at once and it is refused below
    // instead of waiting for a writer.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{}, not a regular file", file_kind(&meta)),
        ));
    }
    let too_large = |len: u64| {
        std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!(
                "the file is {len} bytes or more, larger than the {} MiB a scenario file may hold",
                MAX_FILE_SIZE >> 20
            ),
        )
    };
    if meta.len() > MAX_FILE_SIZE {
        return Err(too_large(meta.len()));
    }
    // Read one byte past the cap, so that a file growing meanwhile is caught too.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_SIZE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// What a non-regular file is, for messages (`a FIFO`, `a directory`...).
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if meta.is_dir() {
        "a directory"
    } else if meta.is_symlink() {
        "a symbolic link"
    } else {
        "a special file"
    }
}

/// The text of `bytes`, or a located error at the first byte that is not UTF-8.
fn utf8(bytes: Vec<u8>, path: &Path) -> Result<String, ScenarioError> {
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let valid = e.utf8_error().valid_up_to();
        // Valid up to there, so the prefix converts without loss.
        let before = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        // Each bad sequence shows as one U+FFFD, so columns still count characters.
        let shown = String::from_utf8_lossy(bytes);
        let mut d = Diagnostic::new(
            path,
            format!(
                "invalid UTF-8: byte 0x{:02x} at offset {valid} is not valid UTF-8",
                bytes[valid]
            ),
        );
        d.label = Some("not UTF-8".into());
        d.help = Some(
            "a scenario file is UTF-8 text; write other bytes with YAML escapes (`\"\\xe9\"`)"
                .into(),
        );
        d.at = Some(At::new(&shown, line, column, 1));
        ScenarioError::Syntax(Box::new(d))
    })
}

/// Expands `paths` into scenario files, as [`scan`] does, and writes a warning to
/// stderr for each entry it skipped.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ScenarioError> {
    let found = scan(paths)?;
    let mut stderr = std::io::stderr().lock();
    for skip in &found.skipped {
        // A closed stderr must not stop the run.
        let _ = writeln!(stderr, "warning: {skip}");
    }
    Ok(found.files)
}

/// What [`scan`] found: the scenario files, and the entries it passed over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Discovery {
    /// The scenario files, in order.
    pub files: Vec<PathBuf>,
    /// Entries under a folder that look like scenarios but are not regular files
    /// or folders (a dangling symbolic link, a FIFO, a device), or cannot be read.
    pub skipped: Vec<Skipped>,
}

/// An entry [`scan`] passed over, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The entry.
    pub path: PathBuf,
    /// Why (`a FIFO, not a regular file`, `a dangling symbolic link`...).
    pub reason: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "skipping `{}`: {}", self.path.display(), self.reason)
    }
}

/// Expands `paths` into scenario files.
///
/// A file is taken as it is, whatever its extension, but must be a regular file
/// (or a link to one). A folder is searched recursively for `*.yaml` and `*.yml`
/// files (names starting with `.` are skipped, and so is `claims.yaml`, the claims
/// registry), which come sorted by path; under a
/// folder, an entry that is neither a regular file nor a folder (a dangling
/// symbolic link, a FIFO, a device) or cannot be read is skipped and listed in
/// [`Discovery::skipped`], so one bad entry does not stop the others. Files keep
/// the order of `paths`; a file named twice is listed once. A path given that does
/// not exist, cannot be read or is not a regular file or folder is an error naming it.
pub fn scan(paths: &[PathBuf]) -> Result<Discovery, ScenarioError> {
    let mut out = Discovery::default();
    let mut seen = BTreeSet::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| io_error(path, source))?;
        let found = if meta.is_dir() {
            let mut found = Vec::new();
            let mut visited = BTreeSet::new();
            walk(path, &mut found, &mut out.skipped, &mut visited)?;
            found.sort();
            found
        } else if meta.is_file() {
            vec![path.clone()]
        } else {
            return Err(io_error(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "{}, not a scenario file or a folder of them",
                        file_kind(&meta)
                    ),
                ),
            ));
        };
        for file in found {
            if seen.insert(file.clone()) {
                out.files.push(file);
            }
        }
    }
    out.skipped.sort_by(|a, b| a.path.cmp(&b.path));
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
    skipped: &mut Vec<Skipped>,
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
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) => {
                // It may have been a scenario or a folder of them: say so.
                let dangling = e.kind() == std::io::ErrorKind::NotFound
                    && std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_symlink());
                let reason = if dangling {
                    "a dangling symbolic link".to_string()
                } else {
                    format!("cannot read it: {e}")
                };
                skipped.push(Skipped { path, reason });
                continue;
            }
        };
        if meta.is_dir() {
            // An unreadable folder below the one given is passed over, not fatal.
            if let Err(e) = walk(&path, found, skipped, visited) {
                skipped.push(Skipped {
                    path,
                    reason: e.message(),
                });
            }
        } else if is_scenario_file(&path) && name != crate::claims::REGISTRY_FILE {
            if meta.is_file() {
                found.push(path);
            } else {
                skipped.push(Skipped {
                    path,
                    reason: format!("{}, not a regular file", file_kind(&meta)),
                });
            }
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
