//! The scenario language: the types a scenario file deserializes into.
//!
//! A scenario is data only; this module never imports the runner. Every struct
//! denies unknown keys, so a typo is an error that points at its line and column.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One scenario file.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A one-line title; defaults to the file's stem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free text: what the scenario reproduces and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The documented claims checked (`KB-3`, `RFC5321-4.1.1.4`, ...), each
    /// registered in `scenarios/claims.yaml`. At least one.
    #[schemars(length(min = 1))]
    pub claims: Vec<String>,
    /// Free-form labels (`backup`, `field-report`), for people and tools; not
    /// checked against anything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The connector profile (`exchange-4.0`, `hardened`).
    #[schemars(extend("enum" = ["exchange-4.0", "hardened"]))]
    pub profile: String,
    /// The system under test: `imc` (the in-process connector, the default) or
    /// the name of a target file, `targets/<name>.yaml` (`imc-serve`: the
    /// `imc serve` binary as a process, which needs `sandbox.backend: fuse`, or
    /// `tmpfs` for tree faults only). `--target` overrides it for a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The `targets` folder found for the file when it was loaded (the nearest
    /// above it), where `target` is looked up; not part of the file.
    #[serde(skip)]
    #[schemars(skip)]
    pub targets_dir: Option<std::path::PathBuf>,
    /// The sandboxed volume.
    #[serde(default, skip_serializing_if = "SandboxSpec::is_default")]
    pub sandbox: SandboxSpec,
    /// Connector settings that differ from the defaults.
    #[serde(default, skip_serializing_if = "ConnectorSpec::is_default")]
    pub connector: ConnectorSpec,
    /// What happens, in order.
    #[schemars(length(min = 1))]
    pub steps: Vec<Step>,
    /// The invariant this scenario expects to see violated (`no-loss`, `no-phantom`,
    /// `no-partial`, `liveness`, `well-formed`, `recovery`, `containment`). Only
    /// for scenarios that run a seeded defect (`connector.mutant`): the scenario
    /// then fails if that invariant holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_violation: Option<String>,
}

/// The sandboxed volume a scenario runs on.
#[derive(Clone, Debug, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxSpec {
    /// Size of the volume (`64MiB`, `512KiB`, `1048576`). Default 64 MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Size>,
    /// The volume backend. Default `vfs`.
    #[serde(default, skip_serializing_if = "Backend::is_default")]
    pub backend: Backend,
}

/// Which filesystem backs the sandbox.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Real files in a temp dir behind the fault-injecting filesystem layer.
    #[default]
    Vfs,
    /// A size-limited tmpfs mount (Linux, needs root or a user namespace).
    Tmpfs,
    /// A FUSE mount passing through to a temp dir, faulted by the same rule
    /// engine as `vfs` for every process using it (Linux, root, /dev/fuse).
    Fuse,
}

/// Connector settings; each `None` keeps the connector's default.
#[derive(Clone, Debug, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectorSpec {
    /// The host name in the greeting and replies. Default `imc.test`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Free-space threshold of flush mode. Default 10 MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_water_mark: Option<Size>,
    /// Largest accepted message. Default 10 MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_size: Option<Size>,
    /// Most recipients per transaction. Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_recipients: Option<u32>,
    /// Idle time allowed per command (`5s`, `300ms`). Default 300 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_timeout: Option<Duration>,
    /// A seeded defect to run the connector with (`ack-before-rename`, `skip-fsync`,
    /// `ignore-rename-error`, `partial-in`, `keep-rejected`): only for testing the
    /// harness itself. Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutant: Option<String>,
}

impl SandboxSpec {
    /// True when every setting is the default (it is then left out when written).
    pub fn is_default(&self) -> bool {
        self.quota.is_none() && self.backend == Backend::Vfs
    }
}

impl Backend {
    /// True for the default backend, `vfs`.
    pub fn is_default(&self) -> bool {
        *self == Backend::Vfs
    }
}

impl ConnectorSpec {
    /// True when every setting is the default (it is then left out when written).
    pub fn is_default(&self) -> bool {
        let ConnectorSpec {
            hostname,
            low_water_mark,
            max_message_size,
            max_recipients,
            command_timeout,
            mutant,
        } = self;
        hostname.is_none()
            && low_water_mark.is_none()
            && max_message_size.is_none()
            && max_recipients.is_none()
            && command_timeout.is_none()
            && mutant.is_none()
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A byte count written as plain bytes or with a suffix (`4096`, `4KiB`, `10MiB`, `1GB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[schemars(with = "SizeRepr")]
pub struct Size(pub u64);

/// A duration written with a unit (`250ms`, `5s`, `2m`, `1h`); a plain integer is seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[schemars(with = "DurationRepr")]
pub struct Duration(pub std::time::Duration);

/// The JSON Schema shape of [`Size`]: bytes, or digits with a unit.
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum SizeRepr {
    /// Plain bytes.
    Bytes(u64),
    /// Digits and a unit: B, KB, MB, GB (powers of 1000), K/KiB, M/MiB, G/GiB (powers of 1024).
    Text(#[schemars(regex(pattern = r"^\s*[0-9]+\s*([bB]|[kKmMgG]([bB]|[iI][bB])?)?\s*$"))] String),
}

/// The JSON Schema shape of [`Duration`]: seconds, or digits with a unit.
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum DurationRepr {
    /// Whole seconds.
    Seconds(u64),
    /// Digits and a unit: ms, s, m (or min), h.
    Text(#[schemars(regex(pattern = r"^\s*[0-9]+\s*(ms|s|m|min|h)?\s*$"))] String),
}

impl Size {
    /// The number of bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl Duration {
    /// The duration as a [`std::time::Duration`].
    pub fn get(self) -> std::time::Duration {
        self.0
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl serde::de::Visitor<'_> for SizeVisitor {
            type Value = Size;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size such as `4096`, `4KiB` or `10MiB`")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v).map(Size).map_err(|_| {
                    E::custom(format!("`{v}` is not a size: a size cannot be negative"))
                })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Size, E> {
                crate::target::imc::parse_size(v)
                    .map(Size)
                    .map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl serde::de::Visitor<'_> for DurationVisitor {
            type Value = Duration;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration such as `5s`, `250ms` or `2m`")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration(std::time::Duration::from_secs(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v)
                    .map(|s| Duration(std::time::Duration::from_secs(s)))
                    .map_err(|_| {
                        E::custom(format!(
                            "`{v}` is not a duration: a duration cannot be negative"
                        ))
                    })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
                crate::target::imc::parse_duration(v)
                    .map(Duration)
                    .map_err(E::custom)
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

impl Serialize for Size {
    /// With the largest binary unit that divides it exactly (`64KiB`, `1MiB`), else bytes.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let n = self.0;
        for (unit, scale) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if n >= scale && n.is_multiple_of(scale) {
                return serializer.serialize_str(&format!("{}{unit}", n / scale));
            }
        }
        serializer.serialize_u64(n)
    }
}

impl Serialize for Duration {
    /// In whole seconds (`5s`) when exact, else milliseconds (`250ms`).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let d = self.0;
        if d.subsec_nanos() == 0 {
            serializer.serialize_str(&format!("{}s", d.as_secs()))
        } else {
            serializer.serialize_str(&format!("{}ms", d.as_millis()))
        }
    }
}

/// One step: exactly one action key, plus optional `expect` (and `when` for faults).
#[derive(Clone, Debug, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// A note shown in the transcript.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The session the step acts on (`command`, `pipeline`, `data`, `dot`, `message`,
    /// `raw`). Defaults to the session of the previous session step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,

    /// Service control.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceAction>,
    /// Open a TCP connection as the named session and read the greeting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<String>,
    /// Send one command line (CRLF added) and read its reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Send several command lines in one write, then read one reply per line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub pipeline: Option<Vec<String>>,
    /// Send message text (line ends become CRLF, leading dots are stuffed) without
    /// the terminating dot. No reply is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Send the terminating `.` line and read the reply (`dot: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dot: Option<bool>,
    /// `data` followed by the dot, reading the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Send bytes exactly as written (escapes such as `\r\n` are the YAML's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<Raw>,
    /// Close the named session's TCP connection without QUIT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnect: Option<String>,
    /// A whole message sent by a real SMTP client (lettre) on its own connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<SendSpec>,
    /// Change the sandbox for real (now, or when `when` says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
    /// Arm the fault (or a `service: crash`) to fire at a protocol stage or
    /// around a filesystem operation instead of now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<When>,
    /// What must hold after the step. A step may hold only `expect` (a pure check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
}

impl Step {
    /// Every action key, in the order the manual lists them.
    pub const ACTIONS: [&'static str; 11] = [
        "service",
        "connect",
        "command",
        "pipeline",
        "data",
        "dot",
        "message",
        "raw",
        "disconnect",
        "send",
        "fault",
    ];

    /// The actions that act on a session and take a `session` key.
    pub const SESSION_ACTIONS: [&'static str; 6] =
        ["command", "pipeline", "data", "dot", "message", "raw"];

    /// The action keys this step sets, in [`Step::ACTIONS`] order (one for a valid
    /// action step, none for a pure check step).
    pub fn actions(&self) -> Vec<&'static str> {
        let set = [
            self.service.is_some(),
            self.connect.is_some(),
            self.command.is_some(),
            self.pipeline.is_some(),
            self.data.is_some(),
            self.dot.is_some(),
            self.message.is_some(),
            self.raw.is_some(),
            self.disconnect.is_some(),
            self.send.is_some(),
            self.fault.is_some(),
        ];
        Self::ACTIONS
            .into_iter()
            .zip(set)
            .filter_map(|(name, is_set)| is_set.then_some(name))
            .collect()
    }

    /// The step's action key (the first one if, invalidly, there are several); `None`
    /// for a pure check step.
    pub fn action(&self) -> Option<&'static str> {
        self.actions().first().copied()
    }

    /// True if the step's action acts on a session (`command`, `pipeline`, `data`,
    /// `dot`, `message`, `raw`).
    pub fn is_session_action(&self) -> bool {
        self.action()
            .is_some_and(|a| Self::SESSION_ACTIONS.contains(&a))
    }
}

/// Service control actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServiceAction {
    /// Start the service (creates missing directories, deals with leftovers).
    Start,
    /// A graceful stop (may report the KB-4 error and stops anyway).
    Stop,
    /// Stop then start.
    Restart,
    /// Abrupt end: no cleanup, open sessions are cut.
    Crash,
    /// Run the low-disk monitor's check now instead of waiting for its interval.
    CheckDisk,
}

/// Raw bytes to send, and whether a reply is expected.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    /// The bytes (as UTF-8 text).
    pub bytes: String,
    /// How many replies to read after sending. Default 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(extend("default" = 0))]
    pub replies: u32,
}

/// A message for the real client.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendSpec {
    /// Envelope and header sender.
    pub from: String,
    /// Envelope and header recipients (at least one).
    #[schemars(length(min = 1))]
    pub to: Vec<String>,
    /// Subject header. Default empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Body text. Default empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Pad the body to at least this many bytes (for size and space scenarios).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Size>,
}

impl ServiceAction {
    /// The name written in scenarios (`start`, `check_disk`...).
    pub fn name(self) -> &'static str {
        match self {
            ServiceAction::Start => "start",
            ServiceAction::Stop => "stop",
            ServiceAction::Restart => "restart",
            ServiceAction::Crash => "crash",
            ServiceAction::CheckDisk => "check_disk",
        }
    }
}

/// A change made to the sandbox, for real.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Remove a directory (and its contents) or a file.
    Remove(String),
    /// Rename a directory or file.
    Rename {
        /// The path renamed.
        from: String,
        /// Its new name.
        to: String,
    },
    /// Put a plain file where the directory was (the directory is kept aside).
    Replace(String),
    /// Undo the last remove, rename or replace of this path.
    Restore(String),
    /// Allocate a ballast file so that only `leave` bytes stay free.
    FillDisk {
        /// Bytes left free.
        leave: Size,
    },
    /// Remove the ballast file.
    FreeDisk,
    /// Fail matching filesystem operations of the connector with an errno.
    Errno(ErrnoSpec),
    /// Remove every errno fault.
    ClearErrno,
}

impl Fault {
    /// The key written in scenarios (`remove`, `fill_disk`...).
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Remove(_) => "remove",
            Fault::Rename { .. } => "rename",
            Fault::Replace(_) => "replace",
            Fault::Restore(_) => "restore",
            Fault::FillDisk { .. } => "fill_disk",
            Fault::FreeDisk => "free_disk",
            Fault::Errno(_) => "errno",
            Fault::ClearErrno => "clear_errno",
        }
    }
}

/// An errno fault: the `nth` operation of kind `op` on a path matching `path` fails.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrnoSpec {
    /// Operation kind: create, write, sync, sync_dir, rename, remove, create_dir,
    /// metadata, read_dir, available_space; on backend `fuse` also lookup, open,
    /// read, fstat, truncate, chmod, chown, set_times, link, symlink, read_link,
    /// mknod, access, open_dir, flush.
    #[schemars(extend("enum" = ["create", "write", "sync", "sync_dir", "rename", "remove",
        "create_dir", "metadata", "read_dir", "available_space", "lookup", "open", "read",
        "fstat", "truncate", "chmod", "chown", "set_times", "link", "symlink", "read_link",
        "mknod", "access", "open_dir", "flush"]))]
    pub op: String,
    /// Glob relative to the sandbox root (`imcdata/in/*`). Default `**`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The errno name (`ENOSPC`, `EIO`, `ENOENT`, `EACCES`...).
    #[schemars(extend("enum" = ["ENOSPC", "EIO", "ENOENT", "EACCES", "EPERM", "EROFS",
        "ENOTDIR", "EISDIR", "EEXIST", "EDQUOT", "ENOMEM"]))]
    pub errno: String,
    /// Which matching operation fails, counting from 1. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub nth: Option<u32>,
    /// Fail every matching operation from the nth on. Default false (once).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[schemars(extend("default" = false))]
    pub persistent: bool,
    /// Only the operations of the process of this name count (its
    /// `/proc/<pid>/comm`, at most 15 bytes). Backend `fuse` only. Default: every
    /// process's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 15))]
    pub process: Option<String>,
}

/// When an armed fault fires: a protocol stage of a named session, or right
/// before or after one of the connector's filesystem operations.
#[derive(Clone, Debug, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// The session watched (protocol stages only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Fire as soon as this session receives a reply with this code (`354`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_reply: Option<u16>,
    /// Fire after this many bytes of the session's next DATA transfer are sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_data_bytes: Option<u64>,
    /// Fire just before the session sends its terminating dot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_dot: Option<bool>,
    /// Fire right before the connector's nth matching operation reaches the disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_op: Option<OpMatch>,
    /// Fire once the connector's nth matching operation has completed (before
    /// its next operation, or at the end of the step if none comes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_op: Option<OpMatch>,
}

impl When {
    /// The operation stage, if the fault is timed by an operation: the match,
    /// and true for `after_op`.
    pub fn op_stage(&self) -> Option<(&OpMatch, bool)> {
        match (&self.before_op, &self.after_op) {
            (Some(m), _) => Some((m, false)),
            (None, Some(m)) => Some((m, true)),
            (None, None) => None,
        }
    }
}

/// The filesystem operations a `before_op` or `after_op` counts: the `nth` of
/// kind `op` whose path matches `path` (made by `process`, if named), counted
/// from the step that arms the fault.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpMatch {
    /// Operation kind: create, write, sync, sync_dir, rename, remove, create_dir,
    /// metadata, read_dir, available_space; on backend `fuse` also lookup, open,
    /// read, fstat, truncate, chmod, chown, set_times, link, symlink, read_link,
    /// mknod, access, open_dir, flush.
    #[schemars(extend("enum" = ["create", "write", "sync", "sync_dir", "rename", "remove",
        "create_dir", "metadata", "read_dir", "available_space", "lookup", "open", "read",
        "fstat", "truncate", "chmod", "chown", "set_times", "link", "symlink", "read_link",
        "mknod", "access", "open_dir", "flush"]))]
    pub op: String,
    /// Glob relative to the sandbox root (`imcdata/in/*`; for a rename either
    /// side may match). Default `**`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Which matching operation, counting from 1. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub nth: Option<u32>,
    /// Only the operations of the process of this name count (its
    /// `/proc/<pid>/comm`, at most 15 bytes). Backend `fuse` only. Default: every
    /// process's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 15))]
    pub process: Option<String>,
}

/// What must hold after a step. Every field is optional; all given ones must hold.
#[derive(Clone, Debug, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The reply's code (the last reply of the step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// The reply's enhanced status code (`4.3.1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[245]\.[0-9]{1,3}\.[0-9]{1,3}$"))]
    pub enhanced: Option<String>,
    /// The reply's exact text after the code (lines joined by `\n`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A regular expression the reply's text must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_matches: Option<String>,
    /// The server closed the connection after the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<bool>,
    /// One expectation per reply, for `pipeline` and `raw` steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replies: Option<Vec<Expect>>,
    /// Events logged during the step (each must match one, in order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<EventSpec>>,
    /// No event at all is logged during the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_events: Option<bool>,
    /// Number of entries in each directory (`imcdata/in: 1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<BTreeMap<String, usize>>,
    /// Paths that must exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<Vec<String>>,
    /// Paths that must not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absent: Option<Vec<String>>,
    /// The service reported exactly these error lines (service steps); empty for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_error: Option<Vec<String>>,
    /// The real client's send failed (`true`) or succeeded (`false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_failed: Option<bool>,
    /// The `connect` of this step could not open a connection (`true`), or could (`false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_failed: Option<bool>,
}

/// An event the step must log. Unset fields match anything.
#[derive(Clone, Debug, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    /// Event id (`4055`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// Event source (`MSExchangeIMC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Level (`Error`, `Warning`, `Information`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// Category (`Internal Processing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Exact message text, with the sandbox root written `<root>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A regular expression the message must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_matches: Option<String>,
}
