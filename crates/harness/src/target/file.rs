//! Target files: a process target as data (`targets/<name>.yaml`).
//!
//! ```yaml
//! name: imc-serve
//! command:
//!   program: imc
//!   cargo: { package: imc, bin: imc }
//!   args: [serve, --root, "{root}", --listen, "127.0.0.1:{port}", --event-log, "{events}"]
//! ready: { stdout: "^listening on " }
//! stop: { signal: SIGTERM, statuses: [0, 8] }
//! spool: { receiving: [imcdata/work], accepted: [imcdata/in] }
//! events: { json_lines: { path: "{events}" } }
//! redactions:
//!   - { pattern: "\\b[0-9A-F]{16}\\b", replace: "<id>" }
//! ```
//!
//! Placeholders in `command.args`, `command.env`, `listen` and the event
//! source's `path`: `{root}` (the spool root the harness made, a sandbox),
//! `{port}` (a free loopback port the harness chose), `{events}` (a file for the
//! event log, outside the root), `{run}` (a directory of the run's own, outside
//! the root, for logs, configuration, pid files); `{{` and `}}` are braces.
//! Every mapping takes only the keys listed in [`TargetFile`]; a misspelt key,
//! a regex that does not compile or an unknown placeholder is an error with the
//! file, line and column. [`schema`] gives the JSON Schema (`targets/schema.json`).

use super::diagnostic::{Located, TargetFileError, closest, from_yaml};
use super::spool::SpoolLayout;
use crate::scenario::Duration;
use serde::{Deserialize, Serialize};
use serde_saphyr::{Location, Spanned};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A target file.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetFile {
    /// The target's name (`imc-serve`). Default: the file name without extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free text: what this target runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What to run.
    pub command: CommandSpec,
    /// Files written afresh into the run's directory before every start
    /// (configuration the program reads: Postfix's `main.cf`, `master.cf`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileSpec>,
    /// The address the harness connects to. Default `127.0.0.1:{port}`.
    #[serde(default = "default_listen")]
    #[schemars(with = "String")]
    pub listen: Spanned<String>,
    /// When the process is ready for clients.
    pub ready: Ready,
    /// How a graceful stop is done and how it may end. Default: SIGTERM,
    /// status 0, within 10 s.
    #[serde(default)]
    pub stop: Stop,
    /// How a crash is done. Default: SIGKILL of the process group.
    #[serde(default)]
    pub crash: Crash,
    /// The spool layout, relative to `{root}`.
    pub spool: SpoolLayout,
    /// Where its events come from.
    pub events: EventSource,
    /// What varies from run to run, replaced by fixed text in events, replies
    /// and error lines (applied in order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redactions: Vec<Redaction>,
    /// How the harness waits for the process to finish reacting to a step.
    #[serde(default)]
    pub settle: SettleSpec,
    /// The arguments that set what a scenario may set (its `profile`, its
    /// `connector:` settings), appended after `command.args` for the settings
    /// the scenario gives. A scenario that sets one the file does not map is
    /// refused with a clear error.
    #[serde(default)]
    pub settings: Settings,
}

/// For each scenario setting, the arguments that pass it; `{value}` is the
/// scenario's value: a name as written (`hardened`, `skip-fsync`), a size in
/// bytes (`1048576`), a count, a duration in milliseconds with its unit (`5000ms`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The scenario's `profile` (`[--profile, "{value}"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Vec<String>>")]
    pub profile: Option<Vec<Spanned<String>>>,
    /// `connector.hostname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Vec<String>>")]
    pub hostname: Option<Vec<Spanned<String>>>,
    /// `connector.low_water_mark`, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Vec<String>>")]
    pub low_water_mark: Option<Vec<Spanned<String>>>,
    /// `connector.max_message_size`, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Vec<String>>")]
    pub max_message_size: Option<Vec<Spanned<String>>>,
    /// `connector.max_recipients`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Vec<String>>")]
    pub max_recipients: Option<Vec<Spanned<String>>>,
    /// `connector.command_timeout`, in milliseconds (`5000ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Vec<String>>")]
    pub command_timeout: Option<Vec<Spanned<String>>>,
    /// `connector.mutant`, a seeded defect (testing the harness only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Vec<String>>")]
    pub mutant: Option<Vec<Spanned<String>>>,
}

impl Settings {
    /// Each setting's name (as a scenario spells it) and its arguments.
    pub fn all(&self) -> [(&'static str, Option<&Vec<Spanned<String>>>); 7] {
        [
            ("profile", self.profile.as_ref()),
            ("hostname", self.hostname.as_ref()),
            ("low_water_mark", self.low_water_mark.as_ref()),
            ("max_message_size", self.max_message_size.as_ref()),
            ("max_recipients", self.max_recipients.as_ref()),
            ("command_timeout", self.command_timeout.as_ref()),
            ("mutant", self.mutant.as_ref()),
        ]
    }

    /// The arguments for `setting` set to `value`; an error names a setting
    /// the file does not map.
    pub fn args(
        &self,
        setting: &str,
        value: &str,
        p: &Placeholders,
    ) -> Result<Vec<String>, String> {
        let args = self
            .all()
            .into_iter()
            .find(|(name, _)| *name == setting)
            .and_then(|(_, args)| args)
            .ok_or_else(|| {
                format!(
                    "the target cannot set `{setting}`: its target file has no `settings.{setting}`"
                )
            })?;
        Ok(args
            .iter()
            .map(|a| p.expand_with(&a.value, Some(value)))
            .collect())
    }
}

fn default_listen() -> Spanned<String> {
    Spanned::new(
        "127.0.0.1:{port}".into(),
        Location::UNKNOWN,
        Location::UNKNOWN,
    )
}

/// The program and its arguments.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    /// The program: a path (relative to the target file's folder), or a bare
    /// name looked up as [`program::find`](super::program::find) says: built
    /// with cargo when `cargo` is given, else beside the harness's executable,
    /// in `$CARGO_TARGET_DIR` or `target/{release,debug}` of the enclosing
    /// workspace, then on `PATH`.
    pub program: String,
    /// Build the program with `cargo build -p PACKAGE --bin BIN` (in the target
    /// file's workspace, the harness's own profile) before the first start, so
    /// a run never uses a stale binary. Left out when no cargo is found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cargo: Option<CargoBuild>,
    /// The arguments, with placeholders.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub args: Vec<Spanned<String>>,
    /// Environment variables set for it (values with placeholders); the rest of
    /// the harness's environment is inherited.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(with = "BTreeMap<String, String>")]
    pub env: BTreeMap<String, Spanned<String>>,
}

/// A file the harness writes before each start.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Where: `{run}/` and a relative path without `..` (the run's own
    /// directory, never the spool root a fault may change). Folders on the
    /// way are created.
    #[schemars(with = "String")]
    pub path: Spanned<String>,
    /// The content, with placeholders (`{port}`, `{root}`...; `{{` is a brace).
    #[schemars(with = "String")]
    pub text: Spanned<String>,
}

/// A cargo package and binary that build the program.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CargoBuild {
    /// The package (`imc`).
    pub package: String,
    /// The binary target (`imc`).
    pub bin: String,
}

/// Readiness: exactly one of `stdout`, `port` and `log`.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ready {
    /// Ready once a stdout line matches this regex (`^listening on `).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub stdout: Option<Spanned<String>>,
    /// Ready once the listening address accepts a connection (which the
    /// target sees as a client that leaves at once).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub port: bool,
    /// Ready once a line appended to the event source's file (from this
    /// start on) matches this regex (Postfix's master: `daemon started`,
    /// logged once its listeners are open). Unlike `port`, no client is
    /// made up to find out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub log: Option<Spanned<String>>,
    /// How long to wait. Default 10 s.
    #[serde(default = "ten_seconds")]
    pub timeout: Duration,
}

fn ten_seconds() -> Duration {
    Duration(std::time::Duration::from_secs(10))
}

/// A graceful stop.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stop {
    /// The signal sent to the process. Default `SIGTERM`.
    #[serde(default = "sigterm")]
    pub signal: Signal,
    /// The exit statuses a stop may end with (`imc serve`: 0, or 8 when
    /// stopped while faulted, KB-4). Default `[0]`. Any other status, or an
    /// end by a signal, is recorded as unexpected.
    #[serde(default = "zero")]
    pub statuses: Vec<i32>,
    /// Send the signal to the whole process group instead of the process
    /// the harness started (which may be a wrapper that ignores it, as
    /// `unshare --fork` does, while a process of its group acts on it).
    /// Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub group: bool,
    /// How long to wait for it to exit; then the group is killed and the stop
    /// is reported as unexpected. Default 10 s.
    #[serde(default = "ten_seconds")]
    pub timeout: Duration,
}

fn sigterm() -> Signal {
    Signal::SIGTERM
}

fn zero() -> Vec<i32> {
    vec![0]
}

impl Default for Stop {
    fn default() -> Stop {
        Stop {
            signal: Signal::SIGTERM,
            statuses: vec![0],
            group: false,
            timeout: ten_seconds(),
        }
    }
}

/// A crash: the signal is sent to the whole process group, so no child of
/// the target survives it.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Crash {
    /// Default `SIGKILL` (nothing flushed, nothing logged).
    #[serde(default = "sigkill")]
    pub signal: Signal,
}

fn sigkill() -> Signal {
    Signal::SIGKILL
}

impl Default for Crash {
    fn default() -> Crash {
        Crash {
            signal: Signal::SIGKILL,
        }
    }
}

/// A signal, by name.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
pub enum Signal {
    /// Terminate (a service stop).
    SIGTERM,
    /// Interrupt (Ctrl-C).
    SIGINT,
    /// Hang-up.
    SIGHUP,
    /// Quit (with a core dump by default).
    SIGQUIT,
    /// Kill: cannot be caught.
    SIGKILL,
    /// Abort.
    SIGABRT,
    /// User signal 1.
    SIGUSR1,
    /// User signal 2.
    SIGUSR2,
}

impl Signal {
    /// The signal's number.
    pub fn number(self) -> i32 {
        match self {
            Signal::SIGTERM => libc::SIGTERM,
            Signal::SIGINT => libc::SIGINT,
            Signal::SIGHUP => libc::SIGHUP,
            Signal::SIGQUIT => libc::SIGQUIT,
            Signal::SIGKILL => libc::SIGKILL,
            Signal::SIGABRT => libc::SIGABRT,
            Signal::SIGUSR1 => libc::SIGUSR1,
            Signal::SIGUSR2 => libc::SIGUSR2,
        }
    }
}

/// `SIGTERM` for 15, the number itself for a signal without a name here.
pub fn signal_name(number: i32) -> String {
    const ALL: [Signal; 8] = [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGKILL,
        Signal::SIGABRT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ];
    ALL.iter()
        .find(|s| s.number() == number)
        .map_or_else(|| number.to_string(), |s| format!("{s:?}"))
}

/// Where a target's events come from: one of the keys.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum EventSource {
    /// A file of JSON objects, one a line (what `imc serve --event-log` writes).
    JsonLines(JsonLines),
    /// A text log whose lines a regex maps to an event.
    Log(TextLog),
}

impl EventSource {
    /// The file it reads (with placeholders).
    pub fn path(&self) -> &Spanned<String> {
        match self {
            EventSource::JsonLines(j) => &j.path,
            EventSource::Log(l) => &l.path,
        }
    }
}

/// A JSON-lines event file.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonLines {
    /// The file (`{events}`).
    #[schemars(with = "String")]
    pub path: Spanned<String>,
    /// Which key of each object holds each field. Default: `id`, `level`,
    /// `source`, `category`, `message`.
    #[serde(default)]
    pub fields: JsonFields,
}

/// The keys of a JSON event.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonFields {
    /// Default `id`: a number, or a string of digits.
    #[serde(default = "key_id")]
    pub id: String,
    /// Default `level`.
    #[serde(default = "key_level")]
    pub level: String,
    /// Default `source`.
    #[serde(default = "key_source")]
    pub source: String,
    /// Default `category`.
    #[serde(default = "key_category")]
    pub category: String,
    /// Default `message`.
    #[serde(default = "key_message")]
    pub message: String,
}

fn key_id() -> String {
    "id".into()
}
fn key_level() -> String {
    "level".into()
}
fn key_source() -> String {
    "source".into()
}
fn key_category() -> String {
    "category".into()
}
fn key_message() -> String {
    "message".into()
}

impl Default for JsonFields {
    fn default() -> JsonFields {
        JsonFields {
            id: key_id(),
            level: key_level(),
            source: key_source(),
            category: key_category(),
            message: key_message(),
        }
    }
}

/// A text log.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TextLog {
    /// The file (`{run}/maillog`).
    #[schemars(with = "String")]
    pub path: Spanned<String>,
    /// A regex with named groups `id`, `level`, `source`, `category` and
    /// `message` (each optional but `message`; a line it does not match is
    /// kept whole as an event of level `unknown`).
    #[schemars(with = "String")]
    pub pattern: Spanned<String>,
    /// The level of a line the pattern maps without a `level` (Postfix
    /// writes none for its informational lines: `info`). Default: empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
}

/// A redaction: every match of `pattern` becomes `replace`.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Redaction {
    /// A regex (`\b[0-9A-F]{16}\b` for `imc serve`'s clock ids).
    #[schemars(with = "String")]
    pub pattern: Spanned<String>,
    /// The fixed text (`<id>`); `$name` refers to a named group, as in the
    /// regex crate's replacement syntax.
    pub replace: String,
}

/// Waiting for the process to be quiet.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SettleSpec {
    /// How long nothing must happen (no new event, no filesystem operation
    /// where the harness sees them) before the process counts as done with
    /// a step. Default 20 ms. Longer is surer and slower: it is paid on every step.
    #[serde(default = "twenty_ms")]
    pub quiet: Duration,
}

fn twenty_ms() -> Duration {
    Duration(std::time::Duration::from_millis(20))
}

impl Default for SettleSpec {
    fn default() -> SettleSpec {
        SettleSpec { quiet: twenty_ms() }
    }
}

/// A loaded, checked target file.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The file's content.
    pub file: TargetFile,
    /// Its name (the `name` key, or the file's stem).
    pub name: String,
    /// The folder holding it: relative program paths and cargo builds start there.
    pub dir: PathBuf,
}

/// The placeholders a target file may use.
pub const PLACEHOLDERS: [&str; 4] = ["root", "port", "events", "run"];

/// The values of the placeholders for one run.
#[derive(Clone, Debug)]
pub struct Placeholders {
    /// `{root}`: the spool root.
    pub root: PathBuf,
    /// `{port}`: the port the harness chose.
    pub port: u16,
    /// `{events}`: the event file.
    pub events: PathBuf,
    /// `{run}`: the run's own directory.
    pub run: PathBuf,
}

impl Placeholders {
    /// `text` with each placeholder replaced (the file was checked at load, so
    /// an unknown one is left as it is).
    pub fn expand(&self, text: &str) -> String {
        self.expand_with(text, None)
    }

    /// [`expand`](Self::expand), with `{value}` (in `settings`) as `value`.
    pub fn expand_with(&self, text: &str, value: Option<&str>) -> String {
        let mut out = String::new();
        for piece in split(text).unwrap_or_default() {
            match piece {
                Piece::Text(t) => out.push_str(&t),
                Piece::Name(name) => match name.as_str() {
                    "root" => out.push_str(&self.root.display().to_string()),
                    "port" => out.push_str(&self.port.to_string()),
                    "events" => out.push_str(&self.events.display().to_string()),
                    "run" => out.push_str(&self.run.display().to_string()),
                    "value" if value.is_some() => out.push_str(value.unwrap_or_default()),
                    other => out.push_str(&format!("{{{other}}}")),
                },
            }
        }
        out
    }
}

enum Piece {
    Text(String),
    Name(String),
}

/// Splits `text` into literal text and `{name}`s; an error says what is wrong
/// and at which character.
fn split(text: &str) -> Result<Vec<Piece>, (usize, String)> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|p| p.1) == Some('{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek().map(|p| p.1) == Some('}') => {
                chars.next();
                lit.push('}');
            }
            '{' => {
                let rest = &text[i + 1..];
                let Some(end) = rest.find('}') else {
                    return Err((i, "a `{` without its `}` (write `{{` for a brace)".into()));
                };
                if !lit.is_empty() {
                    out.push(Piece::Text(std::mem::take(&mut lit)));
                }
                out.push(Piece::Name(rest[..end].to_string()));
                for _ in 0..=end {
                    chars.next();
                }
            }
            '}' => return Err((i, "a `}` without its `{` (write `}}` for a brace)".into())),
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        out.push(Piece::Text(lit));
    }
    Ok(out)
}

/// The JSON Schema (draft 2020-12) of a target file, pretty-printed with a
/// final newline. `targets/schema.json` holds a copy; a test keeps it current.
pub fn schema() -> String {
    let mut schema = schemars::schema_for!(TargetFile);
    schema.insert(
        "title".into(),
        serde_json::Value::String("imc-harness target".into()),
    );
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema is valid JSON");
    text.push('\n');
    text
}

/// The largest target file read: 1 MiB (they are a few hundred bytes).
pub const MAX_FILE_SIZE: u64 = 1 << 20;

/// Reads and checks the target file at `path`.
pub fn load(path: &Path) -> Result<Loaded, TargetFileError> {
    let io = |source| TargetFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    if meta.len() > MAX_FILE_SIZE {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!(
                "larger than the {} MiB a target file may hold",
                MAX_FILE_SIZE >> 20
            ),
        )));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    let source = String::from_utf8(bytes).map_err(|e| {
        TargetFileError::Syntax(Located::new(
            path,
            format!(
                "invalid UTF-8 at byte offset {}: a target file is UTF-8 text",
                e.utf8_error().valid_up_to()
            ),
        ))
    })?;
    parse(&source, path)
}

/// Parses and checks the text of a target file; `path` names it in errors,
/// gives the default name and the folder relative paths start from.
pub fn parse(source: &str, path: &Path) -> Result<Loaded, TargetFileError> {
    let file: TargetFile = serde_saphyr::from_str(source)
        .map_err(|e| TargetFileError::Syntax(from_yaml(&e, source, path)))?;
    check(&file, source, path).map_err(TargetFileError::Invalid)?;
    let name = file.name.clone().unwrap_or_else(|| {
        path.file_stem()
            .map_or_else(|| "target".into(), |s| s.to_string_lossy().into_owned())
    });
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok(Loaded { file, name, dir })
}

/// The rules serde cannot say.
fn check(file: &TargetFile, source: &str, path: &Path) -> Result<(), Box<Located>> {
    let at =
        |s: &Spanned<String>, message: String| Located::new(path, message).at(source, s.referenced);
    let with_value = [
        PLACEHOLDERS[0],
        PLACEHOLDERS[1],
        PLACEHOLDERS[2],
        PLACEHOLDERS[3],
        "value",
    ];
    let placeholders_in =
        |s: &Spanned<String>, what: &str, allowed: &[&str]| -> Result<(), Box<Located>> {
            for piece in split(&s.value).map_err(|(_, why)| at(s, format!("{what}: {why}")))? {
                if let Piece::Name(name) = piece
                    && !allowed.contains(&name.as_str())
                {
                    let l = at(s, format!("{what}: unknown placeholder `{{{name}}}`"))
                        .label("unknown placeholder");
                    return Err(match closest(&name, allowed) {
                        Some(c) => l.help(format!("did you mean `{{{c}}}`?")),
                        None => l.help(format!(
                            "the placeholders here are {}",
                            allowed
                                .iter()
                                .map(|a| format!("`{{{a}}}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    });
                }
            }
            Ok(())
        };
    let placeholders = |s: &Spanned<String>, what: &str| placeholders_in(s, what, &PLACEHOLDERS);
    let regex = |s: &Spanned<String>, what: &str| -> Result<regex::Regex, Box<Located>> {
        regex::Regex::new(&s.value).map_err(|e| {
            let why = e.to_string();
            let last = why.lines().last().unwrap_or("").trim();
            let last = last.strip_prefix("error: ").unwrap_or(last).to_string();
            at(s, format!("{what}: the regex does not compile: {last}")).label("not a regex")
        })
    };
    if file.command.program.trim().is_empty() {
        return Err(Located::new(path, "`command.program` is empty"));
    }
    for arg in &file.command.args {
        placeholders(arg, "an argument")?;
    }
    for (key, value) in &file.command.env {
        placeholders(value, &format!("`command.env.{key}`"))?;
    }
    placeholders(&file.listen, "`listen`")?;
    for f in &file.files {
        placeholders(&f.path, "a file's `path`")?;
        placeholders(&f.text, "a file's `text`")?;
        let inside = f
            .path
            .value
            .strip_prefix("{run}/")
            .map(Path::new)
            .filter(|rest| {
                !rest.as_os_str().is_empty()
                    && rest
                        .components()
                        .all(|c| matches!(c, std::path::Component::Normal(_)))
            });
        if inside.is_none() {
            return Err(at(
                &f.path,
                format!(
                    "a file's `path` must be inside the run's directory: `{}`",
                    f.path.value
                ),
            )
            .label("not under `{run}/`")
            .help(
                "write it as `{run}/` and a relative path without `..`, e.g. `{run}/etc/main.cf`",
            ));
        }
    }
    let listen = Placeholders {
        root: "/".into(),
        port: 1,
        events: "/".into(),
        run: "/".into(),
    }
    .expand(&file.listen.value);
    if listen.parse::<std::net::SocketAddr>().is_err() {
        return Err(at(
            &file.listen,
            format!(
                "`listen` is not an address with a port: `{}`",
                file.listen.value
            ),
        )
        .help("write it as `127.0.0.1:{port}`"));
    }
    let ready = &file.ready;
    let ways: Vec<&str> = [
        ready.stdout.as_ref().map(|_| "`stdout`"),
        ready.port.then_some("`port`"),
        ready.log.as_ref().map(|_| "`log`"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if ways.len() > 1 {
        let message = format!(
            "readiness is given {} ways: {}",
            ways.len(),
            ways.join(" and ")
        );
        let l = match ready.stdout.as_ref().or(ready.log.as_ref()) {
            Some(s) => at(s, message),
            None => Located::new(path, message),
        };
        return Err(l.help("keep one of them"));
    }
    if let Some(s) = &ready.stdout {
        regex(s, "`ready.stdout`")?;
    } else if let Some(s) = &ready.log {
        regex(s, "`ready.log`")?;
    } else if !ready.port {
        return Err(Located::new(path, "`ready` says neither `stdout`, `port: true` nor `log`")
            .help("wait for a stdout line (`stdout: \"^listening on \"`), for the port (`port: true`) or for a line of the event log (`log: \"daemon started\"`)"));
    }
    if file.stop.statuses.is_empty() {
        return Err(Located::new(
            path,
            "`stop.statuses` is empty: no stop could succeed",
        ));
    }
    placeholders(file.events.path(), "the event source's `path`")?;
    if let EventSource::Log(log) = &file.events {
        let re = regex(&log.pattern, "`events.log.pattern`")?;
        if !re.capture_names().any(|n| n == Some("message")) {
            return Err(at(
                &log.pattern,
                "`events.log.pattern` has no group named `message`".into(),
            )
            .help("name the text's group: `(?P<message>.*)`"));
        }
        for name in re.capture_names().flatten() {
            if !["id", "level", "source", "category", "message"].contains(&name) {
                return Err(at(
                    &log.pattern,
                    format!("`events.log.pattern`: unknown group name `{name}`"),
                )
                .help("the groups are `id`, `level`, `source`, `category` and `message`"));
            }
        }
    }
    for (name, args) in file.settings.all() {
        for arg in args.into_iter().flatten() {
            placeholders_in(arg, &format!("`settings.{name}`"), &with_value)?;
        }
    }
    for r in &file.redactions {
        regex(&r.pattern, "a redaction's `pattern`")?;
    }
    if file.spool.accepted.is_empty() {
        return Err(Located::new(
            path,
            "`spool.accepted` is empty: an accepted message must be somewhere",
        ));
    }
    for dir in file.spool.receiving.iter().chain(&file.spool.accepted) {
        let p = Path::new(dir);
        if p.is_absolute()
            || p.components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(Located::new(
                path,
                format!(
                    "spool directory `{dir}` leaves the root: write it relative to `{{root}}`, without `..`"
                ),
            ));
        }
    }
    Ok(())
}
