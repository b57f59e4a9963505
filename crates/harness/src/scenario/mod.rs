//! The scenario language: failure scenarios written in YAML.
//!
//! A scenario starts the connector on a sandboxed volume, talks SMTP to it, breaks
//! the volume for real at chosen moments, and checks the replies, the logged events
//! and the files left behind. This page is the manual of the language; the types
//! are in [`model`], the loader is [`load`] / [`parse`], and [`schema`] gives a
//! JSON Schema for editors (`scenarios/schema.json`).
//!
//! # A first scenario
//!
//! ```yaml
//! name: IN removed after the 354, before the dot
//! claims: [KB-3, KB-6]
//! profile: exchange-4.0
//! sandbox: { quota: 64MiB }
//! connector: { low_water_mark: 1MiB, command_timeout: 5s }
//! steps:
//!   - service: start
//!   - connect: a
//!     expect: { code: 220 }
//!   - command: EHLO client.test
//!     expect: { code: 250 }
//!   - command: "MAIL FROM:<alice@example.org>"
//!   - command: "RCPT TO:<bob@example.net>"
//!   - command: DATA
//!     expect: { code: 354 }
//!   - fault: { remove: imcdata/in }
//!   - message: |
//!       Subject: test
//!
//!       hello
//!     expect:
//!       code: 421
//!       text: Internal Error. Connection Closing.
//!       closed: true
//!       files: { imcdata/work: 1 }
//!       absent: [imcdata/in]
//!   - service: stop
//! ```
//!
//! `imc-harness new NAME` writes a commented starting point (see [`scaffold`]).
//! Editors that speak the YAML language server complete and check keys when the
//! file starts with `# yaml-language-server: $schema=<path to>/scenarios/schema.json`.
//!
//! Every mapping accepts only the keys listed here: a misspelt key is an error that
//! names its line and column and the keys expected there.
//!
//! # Top-level keys
//!
//! | key | required | meaning |
//! | --- | --- | --- |
//! | `name` | no | A one-line title. Default: the file name without its extension. |
//! | `description` | no | Free text: what the scenario reproduces and why. |
//! | `claims` | yes | The documented claims the scenario checks, at least one: `[KB-3, RFC5321-4.1.1.4]`. |
//! | `profile` | yes | The connector's behaviour profile: `exchange-4.0` (reproduces KB Q146791) or `hardened`. |
//! | `sandbox` | no | The sandboxed volume (below). |
//! | `connector` | no | Connector settings that differ from the defaults (below). |
//! | `steps` | yes | What happens, in order; at least one step. |
//!
//! ```yaml
//! name: Disk full while receiving
//! description: |
//!   The volume fills up between RCPT and DATA; the connector must refuse the
//!   message with a 452 and keep nothing in the spool.
//! claims: [KB-1]
//! profile: hardened
//! ```
//!
//! ## `sandbox`
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `quota` | `64MiB` | Size of the volume. |
//! | `backend` | `vfs` | `vfs`: real files in a temporary folder behind the fault-injecting filesystem layer. `tmpfs`: a size-limited tmpfs mount (Linux, needs root or a user namespace). `fuse`: a FUSE mount over a temporary folder, faulted by the same layer for every process (Linux, root, /dev/fuse). |
//!
//! ```yaml
//! sandbox: { quota: 8MiB, backend: vfs }
//! ```
//!
//! ## `connector`
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `hostname` | `imc.test` | The host name in the greeting and replies. |
//! | `low_water_mark` | `10MiB` | Below this much free space the connector goes into flush mode. |
//! | `max_message_size` | `10MiB` | The largest message accepted. |
//! | `max_recipients` | `100` | The most recipients per transaction. |
//! | `command_timeout` | `300s` | How long a session may stay idle waiting for a command. |
//!
//! ```yaml
//! connector:
//!   hostname: mail.example.org
//!   low_water_mark: 1MiB
//!   max_message_size: 512KiB
//!   max_recipients: 5
//!   command_timeout: 2s
//! ```
//!
//! ## Sizes and durations
//!
//! A size is a number of bytes (`4096`) or digits with a unit: `B`, `KB`, `MB`,
//! `GB` (powers of 1000) or `K`/`KiB`, `M`/`MiB`, `G`/`GiB` (powers of 1024), in
//! any case: `4KiB` is 4096, `2KB` is 2000. A duration is digits with a unit, `ms`,
//! `s`, `m` (or `min`) or `h` (`250ms`, `5s`, `2m`); a plain number is seconds.
//!
//! # Steps
//!
//! Each step does exactly one *action* (one of the keys below), optionally followed
//! by `expect` (what must hold once the action is done) and a `note` (shown in the
//! transcript). A step with `expect` and no action is a *check*: it checks the
//! state of the sandbox and the event log as they are at that point.
//!
//! ```yaml
//! steps:
//!   - note: the spool is empty before anything is sent
//!     expect: { files: { imcdata/in: 0, imcdata/work: 0 } }
//! ```
//!
//! ## `service`
//!
//! Controls the connector service: `start` (creates missing spool directories and
//! deals with leftovers), `stop` (graceful; may report an error, and stops anyway),
//! `restart` (stop then start), `crash` (abrupt end: no clean-up, open sessions are
//! cut) and `check_disk` (run the low-disk monitor's check now instead of waiting for
//! its interval). `expect.service_error` checks the error lines a start or stop
//! reports.
//!
//! ```yaml
//!   - service: start
//!   - service: stop
//!     expect:
//!       service_error:
//!         - 'Could not stop the Microsoft Exchange Internet Mail Connector on \\imc.test'
//!         - '0008: Not enough storage space is available.'
//! ```
//!
//! ## Sessions: `connect`, `disconnect` and `session`
//!
//! `connect: NAME` opens a TCP connection to the connector as the session `NAME` and
//! reads the greeting (check it with `expect: { code: 220 }`). `disconnect: NAME`
//! closes the connection without QUIT. Several sessions may be open at once.
//!
//! The session actions (`command`, `pipeline`, `data`, `dot`, `message`, `raw`) act
//! on a session: the one named by the step's `session` key, or else the session of
//! the previous `connect` or session action. A session must be connected by an
//! earlier step (and not disconnected since) before an action uses it. `session` is
//! allowed on session actions only.
//!
//! ```yaml
//!   - connect: a
//!   - connect: b
//!   - command: EHLO b.test          # session b: the last one connected
//!   - command: EHLO a.test
//!     session: a
//!   - command: "MAIL FROM:<x@a.test>" # session a: inherited from the step before
//!   - disconnect: b
//! ```
//!
//! ## `command`
//!
//! Sends one command line (CRLF added) and reads its reply; `expect` checks the
//! reply.
//!
//! ```yaml
//!   - command: "RCPT TO:<bob@example.net>"
//!     expect: { code: 250, enhanced: 2.1.5 }
//! ```
//!
//! Quote a command holding `: ` or starting with a YAML indicator (`"MAIL FROM:<a@b>"`).
//!
//! ## `pipeline`
//!
//! Sends several command lines in one write (RFC 2920 pipelining), then reads one
//! reply per line; `expect.replies` checks them in order, `expect` itself the last.
//!
//! ```yaml
//!   - pipeline: ["MAIL FROM:<a@example.org>", "RCPT TO:<b@example.net>", DATA]
//!     expect:
//!       replies: [{ code: 250 }, { code: 250 }, { code: 354 }]
//! ```
//!
//! ## `data`, `dot` and `message`
//!
//! After the `354`, `data: TEXT` sends message text (line ends become CRLF, lines
//! starting with `.` are dot-stuffed) without the terminating dot and reads no
//! reply, so that a fault can strike mid-message. `dot: true` then sends the
//! terminating `.` line and reads the reply. `message: TEXT` is `data` and `dot` in
//! one step.
//!
//! ```yaml
//!   - data: |
//!       Subject: part one
//!
//!   - fault: { fill_disk: { leave: 0 } }
//!   - dot: true
//!     expect: { code: 452 }
//!   - message: |
//!       Subject: whole
//!
//!       body
//!     expect: { code: 250 }
//! ```
//!
//! ## `raw`
//!
//! Sends bytes exactly as written, with no CRLF added: use YAML double-quoted
//! escapes for control characters. `replies` (default 0) is how many replies to read
//! afterwards.
//!
//! ```yaml
//!   - raw: { bytes: "NOOP\r\nNOOP\r\n", replies: 2 }
//!     expect: { replies: [{ code: 250 }, { code: 250 }] }
//! ```
//!
//! ## `send`
//!
//! A whole message sent by a real SMTP client (lettre) on a connection of its own:
//! `from`, `to` (at least one recipient), optional `subject` and `body`, and `size`
//! to pad the body to at least that many bytes. `expect.send_failed` checks whether
//! the client reported a failure.
//!
//! ```yaml
//!   - send:
//!       from: alice@example.org
//!       to: [bob@example.net, carol@example.net]
//!       subject: big
//!       size: 2MiB
//!     expect: { send_failed: false, files: { imcdata/in: 1 } }
//! ```
//!
//! ## `fault`
//!
//! Changes the sandbox for real. Paths are relative to the sandbox root (the folder
//! holding `imcdata`): no leading `/`, no `..`, `/` between components.
//!
//! | form | effect |
//! | --- | --- |
//! | `remove: PATH` | Removes a directory (with its contents) or a file. |
//! | `rename: { from: PATH, to: PATH }` | Renames a directory or a file. |
//! | `replace: PATH` | Puts a plain file where the directory was (the directory is kept aside). |
//! | `restore: PATH` | Undoes the last `remove`, `rename` or `replace` of `PATH`. |
//! | `fill_disk: { leave: SIZE }` | Allocates a ballast file so that only `leave` bytes stay free. |
//! | `free_disk` | Removes the ballast file. |
//! | `errno: { op, path, errno, nth, persistent }` | Makes the connector's filesystem operations fail (below). |
//! | `clear_errno` | Removes every `errno` fault. |
//!
//! ```yaml
//!   - fault: { remove: imcdata/in }
//!   - fault: { rename: { from: imcdata/in, to: imcdata/in.old } }
//!   - fault: { replace: imcdata/work }
//!   - fault: { restore: imcdata/work }
//!   - fault: { fill_disk: { leave: 4KiB } }
//!   - fault: free_disk
//!   - fault: clear_errno
//! ```
//!
//! An `errno` fault makes the `nth` (default 1, counting from 1) operation of kind
//! `op` on a path matching the glob `path` (relative to the sandbox root; default
//! `**`) fail with `errno`; with `persistent: true` every matching operation from
//! the `nth` on fails, otherwise only that one.
//!
//! - `op`: `create`, `write`, `sync`, `sync_dir`, `rename`, `remove`, `create_dir`,
//!   `metadata`, `read_dir`, `available_space`.
//! - `errno`: `ENOSPC`, `EIO`, `ENOENT`, `EACCES`, `EPERM`, `EROFS`, `ENOTDIR`,
//!   `EISDIR`, `EEXIST`, `EDQUOT`, `ENOMEM`.
//!
//! ```yaml
//!   - fault:
//!       errno: { op: sync, path: "imcdata/work/*", errno: EIO, nth: 2, persistent: true }
//! ```
//!
//! ## `when`: faults at a protocol stage
//!
//! A `fault` step fires at once, unless it has `when`: then it is armed and fires
//! when the session `when.session` reaches a stage, set by exactly one of:
//!
//! | key | fires |
//! | --- | --- |
//! | `after_reply: CODE` | as soon as the session receives a reply with this code |
//! | `after_data_bytes: N` | once N bytes of the session's next DATA transfer are sent |
//! | `before_dot: true` | just before the session sends its terminating dot |
//!
//! `when` is allowed on `fault` steps only.
//!
//! ```yaml
//!   - fault: { rename: { from: imcdata/in, to: imcdata/in.old } }
//!     when: { session: a, after_reply: 354 }
//! ```
//!
//! # `expect`
//!
//! What must hold after the step; every key is optional and all those given must
//! hold.
//!
//! | key | checks |
//! | --- | --- |
//! | `code` | The reply's code (of the step's last reply). |
//! | `enhanced` | The reply's enhanced status code, `class.subject.detail` (`4.3.1`). |
//! | `text` | The reply's exact text after the code (lines of a multi-line reply joined by `\n`). |
//! | `text_matches` | A regular expression (Rust `regex` syntax) the reply's text must match. |
//! | `closed` | The server closed the connection after the reply (`true`) or kept it open (`false`). |
//! | `replies` | A list of expectations, one per reply, for `pipeline` and `raw` steps. |
//! | `events` | Events logged during the step, each matching one logged event, in order. |
//! | `no_events` | `true`: no event at all is logged during the step. |
//! | `files` | The number of entries in each directory: `{ imcdata/in: 1, imcdata/work: 0 }`. |
//! | `exists` | Paths that must exist. |
//! | `absent` | Paths that must not exist. |
//! | `service_error` | The exact error lines a `service` step reported; `[]` for none. |
//! | `send_failed` | The `send` step's client failed (`true`) or succeeded (`false`). |
//! | `connect_failed` | The `connect` of the step was refused (`true`), e.g. after a stop, or not (`false`). |
//!
//! An item of `events` matches an event when all its given keys match: `id`
//! (`4055`), `source` (`MSExchangeIMC`), `level` (`Error`, `Warning`,
//! `Information`), `category` (`Internal Processing`), `message` (the exact text,
//! with the sandbox root written `<root>`) and `message_matches` (a regular
//! expression).
//!
//! ```yaml
//!     expect:
//!       code: 421
//!       text_matches: '^Internal Error'
//!       closed: true
//!       events:
//!         - id: 4055
//!           source: MSExchangeIMC
//!           level: Error
//!           category: Internal Processing
//!           message_matches: 'Unable to move file .*\\imcdata\\work\\'
//!       files: { imcdata/work: 1 }
//!       exists: [imcdata/work]
//!       absent: [imcdata/in]
//! ```
//!
//! # Rules checked when a file is loaded
//!
//! Besides the types (each key has the type shown above), loading checks:
//!
//! - `claims` and `steps` are not empty; `profile` is a known profile.
//! - A step has exactly one action, or none if it has `expect`.
//! - `when` appears on `fault` steps only and sets exactly one stage;
//!   `before_dot`, like `dot`, can only be `true`.
//! - `session` appears on session actions only; every session action has a session
//!   (named or inherited) that an earlier step connected and none disconnected since.
//! - `errno.op` and `errno.errno` are among the names above, `errno.path` is a valid
//!   glob, and `nth` is at least 1.
//! - Paths in faults and in `files`, `exists` and `absent` are relative to the
//!   sandbox root.
//! - `text_matches` and `message_matches` compile; `enhanced` is `d.d.d`.
//! - `pipeline` and `send.to` are not empty.
//!
//! A broken rule is reported like a compiler error, with the file, line and column:
//!
//! ```text
//! error: step 7 (`command`): session `b` is not connected
//!  --> scenarios/two-sessions.yaml:15:14
//!    |
//! 15 |     session: b
//!    |              ^ not connected
//!    |
//!    = help: connect it in an earlier step: `- connect: b`
//! ```

mod error;
mod load;
mod locate;
pub mod model;
mod validate;

pub use error::{Diagnostic, ScenarioError};
pub use load::{discover, load, parse};
pub use model::*;
pub use validate::{ERRNOS, PROFILES};

/// The JSON Schema (draft 2020-12) of a scenario file, as pretty-printed JSON with a
/// final newline. `scenarios/schema.json` holds a copy; a test keeps it current.
pub fn schema() -> String {
    let mut schema = schemars::schema_for!(Scenario);
    schema.insert(
        "title".into(),
        serde_json::Value::String("imc-harness scenario".into()),
    );
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema is valid JSON");
    text.push('\n');
    text
}

/// The text of a new scenario file: valid, commented, and ready to run. It starts
/// the service, runs one mail transaction (EHLO, MAIL, RCPT, DATA, the message,
/// QUIT) checking each reply, and stops the service.
///
/// `name` becomes the scenario's `name`; `profile` its `profile` (one of
/// [`PROFILES`] for the file to load).
pub fn scaffold(name: &str, profile: &str) -> String {
    let (head, rest) = SCAFFOLD
        .split_once("{name}")
        .expect("the template has {name}");
    let (middle, tail) = rest
        .split_once("{profile}")
        .expect("the template has {profile}");
    format!(
        "{head}{}{middle}{}{tail}",
        yaml_string(name),
        yaml_string(profile)
    )
}

/// `text` as a YAML scalar: plain when that reads back as the same string, else
/// double-quoted (a JSON string is a valid YAML double-quoted scalar).
fn yaml_string(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " -_.,()/".contains(c))
        && text.starts_with(|c: char| c.is_ascii_alphabetic())
        && !text.ends_with(' ')
        && !matches!(
            text.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        );
    if plain {
        text.to_string()
    } else {
        serde_json::to_string(text).expect("a string serializes")
    }
}

const SCAFFOLD: &str = r#"# An imc-harness scenario. The language is described in the harness crate's
# `scenario` module documentation; scenarios/schema.json is its JSON Schema.
name: {name}
description: |
  What this scenario reproduces, and why it matters.
# The documented claims this scenario checks (KB-3, RFC5321-4.1.1.4, ...).
claims: [RFC5321-3.3]
# exchange-4.0 reproduces KB Q146791; hardened is the fixed behaviour.
profile: {profile}
# The sandboxed volume the connector's spool lives on.
sandbox: { quota: 64MiB }
# Connector settings that differ from the defaults, for example:
# connector: { low_water_mark: 1MiB, max_message_size: 1MiB, command_timeout: 5s }

steps:
  - service: start
  # Open session `a`; later session steps use it until another is named.
  - connect: a
    expect: { code: 220 }
  - command: EHLO client.test
    expect: { code: 250 }
  - command: "MAIL FROM:<alice@example.org>"
    expect: { code: 250 }
  - command: "RCPT TO:<bob@example.net>"
    expect: { code: 250 }
  - command: DATA
    expect: { code: 354 }
  # Break something here, for example:
  # - fault: { remove: imcdata/in }
  # or arm a fault for a later protocol stage:
  # - fault: { fill_disk: { leave: 0 } }
  #   when: { session: a, before_dot: true }
  - message: |
      From: alice@example.org
      To: bob@example.net
      Subject: hello

      Hello, Bob.
    expect:
      code: 250
      files: { imcdata/in: 1, imcdata/work: 0 }
  - command: QUIT
    expect: { code: 221, closed: true }
  - service: stop
"#;
