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
//! | `claims` | yes | The documented claims the scenario checks, at least one: `[KB-3, RFC5321-4.1.1.4]`. Each must be registered (below). |
//! | `tags` | no | Free-form labels (`[backup, field-report]`), checked against nothing. |
//! | `profile` | yes | The connector's behaviour profile: `exchange-4.0` (reproduces KB Q146791) or `hardened`. |
//! | `target` | no | The system under test: `imc` (the in-process connector, the default) or a target file's name (`imc-serve`), below. |
//! | `sandbox` | no | The sandboxed volume (below). |
//! | `connector` | no | Connector settings that differ from the defaults (below). |
//! | `expect_violation` | no | The invariant a seeded defect must violate (below); only with `connector.mutant`. |
//! | `steps` | yes | What happens, in order; at least one step. |
//!
//! ```yaml
//! name: Disk full while receiving
//! description: |
//!   The volume fills up between RCPT and DATA; the connector must refuse the
//!   message with a 452 and keep nothing in the spool.
//! claims: [KB-1, RFC3463-4.3.1]
//! tags: [disk, field-report]
//! profile: hardened
//! ```
//!
//! ## `claims` and the claims registry
//!
//! A claim is something a document says: `KB-1` .. `KB-6` (KB Q146791), a rule of
//! RFC 5321 (`RFC5321-6.1`), RFC 3463 (`RFC3463-4.3.1`), RFC 1870 or RFC 2920, or
//! an observation of another mail system (`POSTFIX-LOWSPACE`). Each is registered
//! in `scenarios/claims.yaml` with its source, section and exact text (see
//! [`crate::claims`]); `claims:` may name registered claims only, and a near miss
//! is reported with the registered id it resembles. `imc-harness claims` prints
//! every claim with the scenarios that check it and their verdicts. A label that
//! is not a documented claim goes in `tags`.
//!
//! ## `target`
//!
//! `imc` (the default) runs the connector in-process. Any other name is a
//! target file, `targets/<name>.yaml` in the nearest `targets` folder above the
//! scenario (or a path to one): a program run as a process, its spool on the
//! sandbox (see README, "Targets"). A process is faulted by the FUSE daemon, so
//! it needs `backend: fuse` (every fault) or `tmpfs` (tree faults only: a
//! scenario with an errno, an operation-timed fault or a crash is skipped
//! there); `vfs` is an error at `target`. An unknown name is an error that lists
//! the known ones, with "did you mean" for a near miss. `imc-harness run
//! --target NAME` (and `IMC_HARNESS_TARGET` under `cargo test`) overrides it.
//!
//! ```yaml
//! target: imc-serve              # the `imc serve` binary, as a process
//! sandbox: { backend: fuse }
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
//! ```yaml
//! sandbox: { quota: 16MiB, backend: tmpfs }   # where tmpfs cannot be mounted, the run is skipped
//! ```
//!
//! ```yaml
//! sandbox: { quota: 16MiB, backend: fuse }    # where FUSE cannot be mounted, the run is skipped
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
//! | `mutant` | none | A seeded defect to run the connector with (below): only for testing the harness itself. |
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
//! ## Seeded defects: `connector.mutant` and `expect_violation`
//!
//! To show that the invariants catch what they claim to, the connector can run
//! with a seeded defect: `ack-before-rename` (250 before the move into IN),
//! `skip-fsync` (no fsync before the 250), `ignore-rename-error` (250 although the
//! move failed), `partial-in` (the message written in IN in place) or
//! `keep-rejected` (a rejected message left in IN). `expect_violation` names the
//! invariant the defect must violate (`no-loss`, `no-phantom`, `no-partial`,
//! `liveness`, `well-formed`, `recovery`, `containment`): the scenario passes when
//! that invariant is violated, and fails when it holds.
//!
//! ```yaml
//! claims: [RFC5321-6.1]
//! profile: hardened
//! connector: { mutant: skip-fsync }
//! expect_violation: no-loss
//! steps:
//!   - service: start
//!   - connect: a
//!   - command: EHLO client.test
//!   - command: "MAIL FROM:<alice@example.org>"
//!   - command: "RCPT TO:<bob@example.net>"
//!   - command: DATA
//!   - message: |
//!       Subject: lost in a crash
//!
//!       hello
//!     expect: { code: 250 }
//!   - service: crash
//! ```
//!
//! ## Sizes and durations
//!
//! A size is a number of bytes (`4096`) or digits with a unit: `B`, `KB`, `MB`,
//! `GB` (powers of 1000) or `K`/`KiB`, `M`/`MiB`, `G`/`GiB` (powers of 1024), in
//! any case: `4KiB` is 4096, `2KB` is 2000. A duration is digits with a unit, `ms`,
//! `s`, `m` (or `min`) or `h` (`250ms`, `5s`, `2m`); a plain number is seconds.
//!
//! Every size is bounded, so that a typo cannot exhaust the host's memory or disk
//! (a size becomes a message built in memory, or a ballast allocated for real):
//!
//! | size | bounds |
//! | --- | --- |
//! | `sandbox.quota` | 4 KiB (one block) to 1 GiB ([`MAX_SIZE`]) |
//! | `fill_disk.leave`, `connector.low_water_mark`, `connector.max_message_size`, `when.after_data_bytes` | at most 1 GiB ([`MAX_SIZE`]) |
//! | `send.size` | at most 64 MiB ([`MAX_SEND_SIZE`]) |
//!
//! A scenario file itself is at most 16 MiB ([`MAX_FILE_SIZE`]) of UTF-8 text.
//! A quota the host cannot hold (more than the free space of the temporary
//! folder on `vfs`, more than the available memory on `tmpfs`) is refused when
//! the run's sandbox is created.
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
//!   - service: check_disk
//!   - service: restart
//!   - service: crash
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
//!       body: |
//!         The first lines of the body;
//!         then padding up to the size.
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
//! | `errno: { op, path, errno, nth, persistent, process }` | Makes the connector's filesystem operations fail (below). |
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
//!   `metadata`, `read_dir`, `available_space`; on backend `fuse` also those of
//!   the next section.
//! - `errno`: `ENOSPC`, `EIO`, `ENOENT`, `EACCES`, `EPERM`, `EROFS`, `ENOTDIR`,
//!   `EISDIR`, `EEXIST`, `EDQUOT`, `ENOMEM`.
//!
//! ```yaml
//!   - fault:
//!       errno: { op: sync, path: "imcdata/work/*", errno: EIO, nth: 2, persistent: true }
//! ```
//!
//! ## Backend `fuse`: every process, every operation
//!
//! On backend `fuse` the volume is a FUSE mount, and the same rules serve
//! every process that uses it: each of its operations is logged with the
//! calling process's pid and name, counted, and may be failed or time a
//! fault. Two things only this backend has:
//!
//! - `process: NAME` in `errno`, `before_op` and `after_op`: only the
//!   operations of the process of that name count (and fail). The name is the
//!   kernel's, `/proc/PID/comm`: the file name the program was started from,
//!   at most 15 bytes (`cleanup`, `smtpd`, `cat`). Default: every process's.
//! - operations no `Fs` call of the connector makes, which any program does on
//!   a mount: `lookup` (the kernel resolving one name of a path; a path is
//!   walked a name at a time), `open` (an existing file, not truncated),
//!   `read`, `fstat` (the kernel asking an open file's attributes, for an
//!   `lseek` to its end), `truncate`, `chmod`, `chown`, `set_times`
//!   (`utimensat`, `touch`), `link`, `symlink`, `read_link`, `mknod`,
//!   `access`, `open_dir` and `flush` (each `close` of a descriptor: the
//!   error is what `close` returns).
//!
//! On `vfs` and `tmpfs` either is a load error: there every operation is the
//! in-process connector's own call, which reaches the rules directly, so none
//! of these kinds ever happens, and it has no process name to match (the
//! harness's own depends on how it was started: `imc-harness`, a test
//! binary). A scenario of backend `fuse` run with `--backend vfs` is skipped
//! for the same reason.
//!
//! ```yaml
//! name: the second write of cleanup fails, and IN goes before its rename
//! sandbox: { backend: fuse }
//! steps:
//!   - service: start
//!   - fault:
//!       errno: { op: write, path: "imcdata/work/*", errno: EIO, nth: 2, process: cleanup }
//!   - fault: { remove: imcdata/in }
//!     when: { before_op: { op: rename, path: "imcdata/in/*", process: cleanup } }
//!   - fault: { fill_disk: { leave: 0 } }
//!     when: { after_op: { op: flush, path: "imcdata/work/*", nth: 3 } }
//! ```
//!
//! ## `when`: faults at a protocol stage or around a filesystem operation
//!
//! A `fault` step fires at once, unless it has `when`: then it is armed and fires
//! at the stage set by exactly one of:
//!
//! | key | fires |
//! | --- | --- |
//! | `after_reply: CODE` | as soon as the session `when.session` receives a reply with this code |
//! | `after_data_bytes: N` | once N bytes of the session's next DATA transfer are sent |
//! | `before_dot: true` | just before the session sends its terminating dot |
//! | `before_op: { op, path, nth, process }` | right before the connector's `nth` operation of kind `op` on a path matching the glob `path` reaches the disk (the operation sees the change) |
//! | `after_op: { op, path, nth, process }` | once that operation has completed: before the connector's next operation, or at the end of the step if none comes (what the connector does meanwhile without the disk, such as sending a reply, may come first) |
//!
//! The protocol stages need `session`; the operation stages take none (the
//! operations are the connector's). `op` is one of the `errno.op` names, `path`
//! defaults to `**` (for a rename either side may match), `nth` to 1; operations
//! are counted from the step that arms the fault. On backend `fuse`, `process`
//! counts one process's operations only (see above). The history records where
//! the fault fired: `fault: renamed directory imcdata/in -> imcdata/in.bak before
//! sync_dir imcdata/in (#1)`, and with `process` `... (#1 by process cleanup)`.
//!
//! `when` is allowed on `fault` steps, and with an operation stage on
//! `service: crash`: from that point the connector's process is gone (the
//! operation, for `before_op`, and every later one never reach the disk and never
//! return), then the runner crashes the connector and applies the crash model, as
//! for `service: crash` at a step. A message whose dot the crash left unanswered
//! may or may not be in IN afterwards; neither breaks an invariant.
//!
//! A fault or crash armed on an operation that never fired by the last step fails
//! the scenario (`armed at step 6, never fired`): a typo in `op` or `path` must
//! not leave a scenario testing nothing.
//!
//! ```yaml
//!   - fault: { rename: { from: imcdata/in, to: imcdata/in.old } }
//!     when: { session: a, after_reply: 354 }
//!   - service: crash          # between the move into IN and the fsync of IN
//!     when: { before_op: { op: sync_dir, path: imcdata/in } }
//!   - fault: { rename: { from: imcdata/in, to: imcdata/in.bak } }
//!     when: { after_op: { op: rename, path: "imcdata/in/*", nth: 1 } }
//!   - fault: { fill_disk: { leave: 0 } }
//!     when: { session: a, after_data_bytes: 65536 }
//!   - fault: { remove: imcdata/in }
//!     when: { session: a, before_dot: true }
//!   - connect: a
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
//! The other keys, each on the kind of step it belongs to:
//!
//! ```yaml
//!   - connect: a
//!     expect: { code: 220, no_events: true }
//!   - command: EHLO client.test
//!     expect: { code: 250, text: "imc.test\nSIZE 10485760\nHELP" }
//!   - command: "MAIL FROM:<alice@example.org>"
//!     expect: { code: 250, enhanced: 2.1.0 }
//!   - raw: { bytes: "NOOP\r\nNOOP\r\n", replies: 2 }
//!     expect: { replies: [{ code: 250 }, { code: 250, closed: false }] }
//!   - service: stop
//!     expect: { service_error: [] }
//!   - connect: b
//!     expect: { connect_failed: true }
//!   - service: start
//!     expect:
//!       events:
//!         - { id: 1000, message: The imc SMTP connector has started. }
//!   - send: { from: alice@example.org, to: [bob@example.net] }
//!     expect: { send_failed: false }
//! ```
//!
//! A reply code (`code`, in `replies`, and `when.after_reply`) is 200 to 599:
//! three digits whose first is 2 to 5 (RFC 5321 4.3.2); anything else could
//! never be met and is refused at load.
//!
//! # Rules checked when a file is loaded
//!
//! Besides the types (each key has the type shown above), loading checks:
//!
//! - `claims` and `steps` are not empty; every claim is registered; `profile` is
//!   a known profile; `tags` are not empty strings.
//! - Reply codes are 200 to 599.
//! - A step has exactly one action, or none if it has `expect`.
//! - `when` appears on `fault` steps and `service: crash` only (the crash with
//!   `before_op` or `after_op`) and sets exactly one stage; `session` is given for
//!   a protocol stage and not for an operation stage; `before_op.op` and
//!   `after_op.op` are operation names, their `path` a valid glob, `nth` at least
//!   1; `before_dot`, like `dot`, can only be `true`.
//! - `session` appears on session actions only; every session action has a session
//!   (named or inherited) that an earlier step connected and none disconnected since.
//! - `errno.op` and `errno.errno` are among the names above, `errno.path` is a valid
//!   glob, and `nth` is at least 1.
//! - `process` (in `errno`, `before_op`, `after_op`) is a name a process can have
//!   (not empty, no `/`, at most 15 bytes), and it and the operations only a FUSE
//!   mount has (`lookup`, `open`, `read`...) are given on backend `fuse` only.
//! - Paths in faults and in `files`, `exists` and `absent` are relative to the
//!   sandbox root.
//! - `text_matches` and `message_matches` compile; `enhanced` is `d.d.d`.
//! - `pipeline` and `send.to` are not empty.
//! - Every size is within its bounds (see [Sizes and durations](#sizes-and-durations)).
//! - The file is UTF-8: the first byte that is not is reported with its line and column.
//!
//! Common YAML slips are named rather than left to the parser's words: a tab in
//! the indentation ("indented with a tab"), an unquoted value starting with `*`
//! such as `**` (YAML reads it as an alias: quote it, `"**"`), a `{` or `[` never
//! closed (shown where it opened), and a file over the parser's limits (which
//! limit, and its value).
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

mod bounds;
mod error;
mod load;
mod locate;
pub mod model;
mod teach;
mod validate;

pub use bounds::{MAX_SEND_SIZE, MAX_SIZE, MIN_QUOTA};
pub use error::{Diagnostic, ScenarioError};
pub use load::{Discovery, MAX_FILE_SIZE, Skipped, discover, load, parse, scan};
pub use locate::step_lines;
pub use model::*;
pub use validate::{ERRNOS, PROFILES, REPLY_CODES};

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

/// Writes a new scenario file at `path` ([`scaffold`], named after the file's
/// stem), creating its folder. The name must end in `.yaml` or `.yml` (folder
/// discovery reads only those), `profile` must be one of [`PROFILES`], and an
/// existing file is kept unless `force` is set. The error says what to do.
pub fn create(path: &std::path::Path, profile: &str, force: bool) -> Result<(), String> {
    let yaml = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
    if !yaml {
        let mut suggested = path.to_path_buf();
        suggested.set_extension("yaml");
        return Err(format!(
            "`{}` is not a YAML file name: a scenario file ends in `.yaml` or `.yml` \
             (`imc-harness run` on a folder reads only those); try `{}`",
            path.display(),
            suggested.display()
        ));
    }
    if !PROFILES.contains(&profile) {
        let hint = match load::suggest(profile, &PROFILES) {
            Some(s) => format!("; did you mean `{s}`?"),
            None => String::new(),
        };
        return Err(format!(
            "unknown profile `{profile}`, expected one of `{}`{hint}",
            PROFILES.join("`, `")
        ));
    }
    if path.exists() && !force {
        return Err(format!(
            "{} already exists; not overwriting it (pass --force to overwrite)",
            path.display()
        ));
    }
    if path.is_dir() {
        return Err(format!("{} is a folder", path.display()));
    }
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "new scenario".into());
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    std::fs::write(path, scaffold(&name, profile))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
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
