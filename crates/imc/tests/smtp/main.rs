//! Integration tests of the `imc` connector over real sockets and a real temp dir.
//!
//! Each test starts a [`imc::Connector`] in-process on `127.0.0.1:0` over a fresh
//! temp root (`imc::fs::RealFs`, or the recording/faulting wrapper
//! [`support::TestFs`]), with `CounterIds` and a fixed clock, talks SMTP to it with
//! a tokio `TcpStream`, and watches the event log through `EventLog::subscribe`.
//! No test sleeps: each waits on a reply, a close, an event or a recorded
//! filesystem operation, bounded by a hang guard.
//!
//! - [`protocol`]: every command of the state machine and its exact reply: the
//!   greeting, HELO/EHLO (the multi-line EHLO format), MAIL (syntax 501, the null
//!   sender, SIZE, unknown parameters 555, out of sequence 503), RCPT, DATA, RSET,
//!   NOOP, VRFY, HELP, QUIT (221 and the close), unknown commands 500, EXPN 502.
//! - [`data`]: the message text: dot-unstuffing, the stored file byte for byte
//!   (trace header + text), a dot after a bare LF not ending the data (also after
//!   an over-long line), a lone dot kept, pipelined commands in one write.
//! - [`limits`]: the 512-octet command line and 1000-octet text line at their exact
//!   boundaries (the transparency dot not counted), the maximum message size
//!   (after the dot and as SIZE at MAIL), the recipient limit, the idle timeout
//!   per command and in DATA, and a client that stops reading its replies.
//! - [`spool`]: where an accepted message lands (`in/<id>`, `work/` empty), ids
//!   from the counter, the operation order work -> in -> 250 (KB-6), write and
//!   flush failures (ENOSPC gets the 421, nothing in IN), a missing `work/`, a
//!   client closing or resetting mid-DATA (no work file left).
//! - [`kb`]: KB Q146791's claims KB-1..KB-5: the 421 for low disk and a missing IN,
//!   flush-mode events 4101/4102, event 4055 word for word, the faulted stop's
//!   two error lines and status 8, the restart recreating IN.
//! - [`service`]: service control: a stop tells open sessions 421 and closes them,
//!   a crash cuts them silently and its leftover work file is removed at the next
//!   start (event 1003); double start, stop and crash of a stopped service.
//! - [`binary`]: `imc serve` as a process: `listening on <addr>`, SIGTERM giving
//!   exit 0 or the KB-4 lines and status 8, argument errors, the event log file.

mod binary;
mod data;
mod envelope;
mod kb;
mod limits;
mod protocol;
mod service;
mod spool;
mod support;
