//! One SMTP session (RFC 5321): the command state machine, DATA streamed into the
//! spool, and the profile's answers to every fault.

use crate::envelope::{self, ForwardPath, HostName, PathError, ReversePath, StoredHeader, Trace};
use crate::event::EventId;
use crate::line::{Ending, Line, LineReader};
use crate::mutant::Mutant;
use crate::profile::{Failure, InMissingAtMove};
use crate::service::{Activity, Shared};
use crate::spool::{Finish, InEntry, WorkFile};
use crate::win32;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

/// Command lines: 512 octets including CRLF (RFC 5321 4.5.3.1.4).
pub const MAX_COMMAND_LINE: usize = 512;
/// Text lines: 1000 octets including CRLF (RFC 5321 4.5.3.1.6).
pub const MAX_TEXT_LINE: usize = 1000;
/// DATA is written to the work file in chunks of this size, never held whole.
const CHUNK: usize = 64 * 1024;

/// Whether the session goes on after a step.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// The envelope of the transaction in progress.
#[derive(Default)]
struct Transaction {
    from: Option<ReversePath>,
    recipients: Vec<ForwardPath>,
}

/// A session on one connection.
pub(crate) struct Session<R, W> {
    shared: Arc<Shared>,
    reader: LineReader<R>,
    writer: W,
    out: Vec<u8>,
    peer: IpAddr,
    /// This server's name, validated at start: it goes into every trace header.
    hostname: Arc<HostName>,
    helo: Option<(HostName, bool)>,
    txn: Transaction,
    shutdown: watch::Receiver<bool>,
    activity: Activity,
}

enum Input {
    Line(Line),
    Timeout,
    Shutdown,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<R, W> {
    pub(crate) fn new(
        shared: Arc<Shared>,
        reader: R,
        writer: W,
        peer: IpAddr,
        hostname: Arc<HostName>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Session {
            activity: Activity::new(shared.clone()),
            shared,
            reader: LineReader::new(reader),
            writer,
            out: Vec::new(),
            peer,
            hostname,
            helo: None,
            txn: Transaction::default(),
            shutdown,
        }
    }

    /// Runs the session to its end. I/O errors on the socket just end it.
    pub(crate) async fn run(mut self) {
        // After a socket error (or a write timeout) there is no one to flush to.
        if self.converse().await.is_ok() {
            let _ = self.flush().await;
        }
        let _ = self.writer.shutdown().await;
    }

    async fn converse(&mut self) -> io::Result<()> {
        if self.refuse_connection().await? == Flow::Close {
            return Ok(());
        }
        let greeting = self.render(self.shared.profile.replies.greeting, "");
        self.reply(&greeting);
        loop {
            let line = match self.next_input(MAX_COMMAND_LINE).await? {
                Input::Line(line) => line,
                Input::Timeout => {
                    let r = self.render(self.shared.profile.replies.timeout, "");
                    self.reply(&r);
                    return Ok(());
                }
                Input::Shutdown => {
                    let r = self.render(self.shared.profile.replies.shutting_down, "");
                    self.reply(&r);
                    return Ok(());
                }
            };
            let flow = match line {
                Line::Eof => return Ok(()),
                Line::TooLong(_) => {
                    self.reply(self.shared.profile.replies.line_too_long);
                    Flow::Continue
                }
                Line::Complete(bytes, _) => self.command(&String::from_utf8_lossy(&bytes)).await?,
            };
            if flow == Flow::Close {
                return Ok(());
            }
        }
    }

    /// The profile's refusals of a new connection (KB-1, KB-2).
    async fn refuse_connection(&mut self) -> io::Result<Flow> {
        let s = self.shared.profile.situations;
        if let Some(reply) = s.connect_in_missing {
            let in_dir = self.shared.spool.in_dir();
            if !self.shared.spool.is_dir(in_dir.clone()).await {
                self.shared.log(
                    EventId::ConnectionRefused,
                    format!(
                        "Refused a connection from {}: the directory {} is missing.",
                        self.peer,
                        win32::path(&in_dir)
                    ),
                );
                self.reply(reply);
                return Ok(Flow::Close);
            }
        }
        if let Some(reply) = s.connect_low_disk
            && self.shared.check_disk().await
        {
            self.shared.log(
                EventId::ConnectionRefused,
                format!(
                    "Refused a connection from {}: the spool volume is in flush mode.",
                    self.peer
                ),
            );
            self.reply(reply);
            return Ok(Flow::Close);
        }
        Ok(Flow::Continue)
    }

    /// Waits for a line, the command timeout, or the service stopping. Replies
    /// queued so far are sent first unless more pipelined input is already here.
    async fn next_input(&mut self, limit: usize) -> io::Result<Input> {
        let buffered = self.reader.has_line();
        if !buffered {
            self.flush().await?;
        }
        if *self.shutdown.borrow() {
            return Ok(Input::Shutdown);
        }
        if buffered {
            // No read needed: skip arming a timer for every line of a message.
            return Ok(Input::Line(self.reader.next_line(limit).await?));
        }
        let timeout = self.shared.config.command_timeout;
        self.activity.waiting();
        let input = tokio::select! {
            line = tokio::time::timeout(timeout, self.reader.next_line(limit)) => match line {
                Ok(line) => line.map(Input::Line),
                Err(_) => Ok(Input::Timeout),
            },
            _ = self.shutdown.changed() => Ok(Input::Shutdown),
        };
        self.activity.working();
        input
    }

    fn reply(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// Sends the queued replies. The command timeout bounds the write too: a client
    /// that stops reading must not hold the session forever; once the service
    /// is stopping, the stop grace bounds it as well, so it cannot hold a stop
    /// for the command timeout either.
    async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            let write = async {
                self.writer.write_all(&self.out).await?;
                self.writer.flush().await
            };
            let mut stopping = self.shutdown.clone();
            let grace = self.shared.config.stop_grace;
            let grace_over = async move {
                if stopping.wait_for(|s| *s).await.is_ok() {
                    tokio::time::sleep(grace).await;
                } else {
                    // The service is gone without a stop (a crash aborts us anyway).
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                written = tokio::time::timeout(self.shared.config.command_timeout, write) => {
                    written.map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
                }
                () = grace_over => return Err(io::Error::from(io::ErrorKind::TimedOut)),
            }
            self.out.clear();
        }
        Ok(())
    }

    fn render(&self, template: &str, id: &str) -> String {
        template
            .replace("{host}", &self.shared.config.hostname)
            .replace("{max}", &self.shared.config.max_message_size.to_string())
            .replace("{id}", id)
    }

    async fn command(&mut self, line: &str) -> io::Result<Flow> {
        // Only spaces are trimmed: any other byte around an argument is part of it
        // and is judged by the grammar.
        let line = line.trim_end_matches(' ');
        let (verb, arg) = match line.split_once(' ') {
            Some((v, a)) => (v, a.trim_start_matches(' ')),
            None => (line, ""),
        };
        let replies = &self.shared.profile.replies;
        let verb = verb.to_ascii_uppercase();
        match verb.as_str() {
            "HELO" | "EHLO" => {
                // RFC 5321 asks a Domain of HELO, but clients without a name send
                // an address literal there too: both are accepted for both.
                if let Ok(name) = HostName::parse(arg) {
                    self.helo = Some((name, verb == "EHLO"));
                    self.txn = Transaction::default();
                    if verb == "HELO" {
                        let r = self.render(replies.helo, "");
                        self.reply(&r);
                    } else {
                        self.ehlo();
                    }
                } else {
                    self.reply(replies.syntax);
                }
            }
            "MAIL" => return self.mail(arg).await,
            "RCPT" => self.rcpt(arg),
            "DATA" => {
                if !arg.is_empty() {
                    self.reply(replies.syntax);
                } else if self.txn.recipients.is_empty() {
                    self.reply(replies.bad_sequence);
                } else {
                    return self.data().await;
                }
            }
            "RSET" => {
                if arg.is_empty() {
                    self.txn = Transaction::default();
                    self.reply(replies.ok);
                } else {
                    self.reply(replies.syntax);
                }
            }
            "NOOP" => self.reply(replies.ok),
            "VRFY" => {
                if arg.is_empty() {
                    self.reply(replies.syntax);
                } else {
                    self.reply(replies.vrfy);
                }
            }
            "HELP" => self.reply(replies.help),
            "QUIT" => {
                let r = self.render(replies.quit, "");
                self.reply(&r);
                return Ok(Flow::Close);
            }
            "EXPN" | "TURN" | "SEND" | "SOML" | "SAML" => self.reply(replies.not_implemented),
            _ => self.reply(replies.unrecognized),
        }
        Ok(Flow::Continue)
    }

    fn ehlo(&mut self) {
        let replies = &self.shared.profile.replies;
        let mut lines = vec![self.render(replies.ehlo, "")];
        lines.extend(
            replies
                .ehlo_keywords
                .iter()
                .map(|k| format!("250 {}", self.render(k, ""))),
        );
        let last = lines.len() - 1;
        for (i, mut l) in lines.into_iter().enumerate() {
            if i < last {
                l.replace_range(3..4, "-");
            }
            self.reply(&l);
        }
    }

    async fn mail(&mut self, arg: &str) -> io::Result<Flow> {
        let replies = &self.shared.profile.replies;
        if self.helo.is_none() || self.txn.from.is_some() {
            self.reply(replies.bad_sequence);
            return Ok(Flow::Continue);
        }
        let (path, params) = match envelope::parse_mail(arg) {
            Ok(parsed) => parsed,
            Err(PathError::Syntax) => {
                self.reply(replies.syntax);
                return Ok(Flow::Continue);
            }
            Err(PathError::Address) => {
                self.reply(replies.bad_sender);
                return Ok(Flow::Continue);
            }
        };
        let mut declared = 0u64;
        for param in &params {
            let value = param.value.as_deref().unwrap_or("");
            match param.keyword.to_ascii_uppercase().as_str() {
                "SIZE" => match value.parse::<u64>() {
                    Ok(n) => declared = n,
                    Err(_) => {
                        self.reply(replies.syntax);
                        return Ok(Flow::Continue);
                    }
                },
                "BODY" if ["7BIT", "8BITMIME"].contains(&value.to_ascii_uppercase().as_str()) => {}
                _ => {
                    self.reply(replies.bad_parameters);
                    return Ok(Flow::Continue);
                }
            }
        }
        if declared > self.shared.config.max_message_size {
            self.reply(replies.too_big);
            return Ok(Flow::Continue);
        }
        if let Some(reply) = self.shared.profile.situations.mail_low_disk {
            // A failed measurement refuses this MAIL but leaves the state as it is.
            let free = match self.shared.spool.available_space().await {
                Ok(free) => {
                    self.shared.note_free_space(free);
                    free
                }
                Err(_) => 0,
            };
            // A declared SIZE that does not fit refuses this one message only: the
            // state (and its events) is about the low-water mark.
            if free < self.shared.config.low_water_mark.saturating_add(declared) {
                self.reply(reply);
                return Ok(Flow::Continue);
            }
        }
        self.txn.from = Some(path);
        self.reply(self.shared.profile.replies.mail_ok);
        Ok(Flow::Continue)
    }

    fn rcpt(&mut self, arg: &str) {
        let replies = &self.shared.profile.replies;
        if self.txn.from.is_none() {
            self.reply(replies.bad_sequence);
            return;
        }
        let (path, params) = match envelope::parse_rcpt(arg) {
            Ok(parsed) => parsed,
            Err(PathError::Syntax) => {
                self.reply(replies.syntax);
                return;
            }
            Err(PathError::Address) => {
                self.reply(replies.bad_recipient);
                return;
            }
        };
        if !params.is_empty() {
            self.reply(replies.bad_parameters);
            return;
        }
        if self.txn.recipients.len() >= self.shared.config.max_recipients {
            self.reply(replies.too_many_recipients);
            return;
        }
        self.txn.recipients.push(path);
        self.reply(replies.rcpt_ok);
    }

    /// DATA: create the work file, stream the text into it, then move it into IN.
    async fn data(&mut self) -> io::Result<Flow> {
        let txn = std::mem::take(&mut self.txn);
        let id = self.shared.ids.next_id();
        let Some(header) = self.stored_header(&id, &txn) else {
            let failure = self.shared.profile.situations.write_failed;
            return self.fail(failure, None).await;
        };
        let created = if self.mutant(Mutant::PartialIn) {
            self.shared.spool.create_in_place(&id, &header).await
        } else {
            self.shared.spool.create_work(&id, &header).await
        };
        let mut work = match created {
            Ok(w) => w,
            Err(e) => {
                let path = self.shared.spool.work_dir().join(&id);
                self.log_write_failure(&path, &e);
                let failure = self.write_failure(&e);
                return self.fail(failure, Some(path)).await;
            }
        };
        let r = self.render(self.shared.profile.replies.data_start, &id);
        self.reply(&r);

        let mut chunk = Vec::new();
        let mut size = 0u64;
        let mut too_big = false;
        let mut line_too_long = false;
        let mut write_error: Option<io::Error> = None;
        let mut previous = Ending::CrLf;
        loop {
            // One octet more than the limit: the dot added for transparency is not
            // counted (RFC 5321 4.5.3.1.6); the limit is checked after unstuffing.
            let line = match self.next_input(MAX_TEXT_LINE + 1).await {
                Ok(Input::Line(line)) => line,
                Err(e) => {
                    // The connection failed: the message stays the client's.
                    let _ = self.shared.spool.remove(work.path().to_path_buf()).await;
                    return Err(e);
                }
                Ok(Input::Timeout | Input::Shutdown) => {
                    // The client is not answered for this message: it stays the client's.
                    let _ = self.shared.spool.remove(work.path().to_path_buf()).await;
                    let template = if *self.shutdown.borrow() {
                        self.shared.profile.replies.shutting_down
                    } else {
                        self.shared.profile.replies.timeout
                    };
                    let r = self.render(template, "");
                    self.reply(&r);
                    return Ok(Flow::Close);
                }
            };
            let (content, ending) = match line {
                Line::Eof => {
                    let _ = self.shared.spool.remove(work.path().to_path_buf()).await;
                    return Ok(Flow::Close);
                }
                Line::TooLong(ending) => {
                    line_too_long = true;
                    previous = ending;
                    continue;
                }
                Line::Complete(content, ending) => (content, ending),
            };
            // Only <CRLF>.<CRLF> ends the data: a dot after a bare LF does not
            // (the "SMTP smuggling" ambiguity).
            if content == b"." && ending == Ending::CrLf && previous == Ending::CrLf {
                break;
            }
            previous = ending;
            // A leading dot is removed only when other characters follow it
            // (RFC 5321 4.5.2): a lone dot that does not end the data is text.
            let text = match content.strip_prefix(b".") {
                Some(rest) if !rest.is_empty() => rest,
                _ => &content[..],
            };
            if text.len() + ending.bytes().len() > MAX_TEXT_LINE {
                line_too_long = true;
                continue;
            }
            size += (text.len() + ending.bytes().len()) as u64;
            if size > self.shared.config.max_message_size {
                too_big = true;
            }
            if too_big || line_too_long || write_error.is_some() {
                continue; // read on to the dot, store nothing more
            }
            chunk.extend_from_slice(text);
            chunk.extend_from_slice(ending.bytes());
            if chunk.len() + work.unwritten_header() >= CHUNK
                && let Err(e) = work.write(std::mem::take(&mut chunk)).await
            {
                write_error = Some(e);
            }
        }
        let replies = &self.shared.profile.replies;
        if too_big || line_too_long {
            let _ = self.shared.spool.remove(work.path().to_path_buf()).await;
            self.reply(if too_big {
                replies.too_big
            } else {
                replies.data_line_too_long
            });
            return Ok(Flow::Continue);
        }
        if let Some(e) = write_error {
            self.log_write_failure(work.path(), &e);
            let failure = self.write_failure(&e);
            let path = work.path().to_path_buf();
            drop(work);
            return self.fail(failure, Some(path)).await;
        }
        let stepwise = [
            Mutant::PartialIn,
            Mutant::AckBeforeRename,
            Mutant::IgnoreRenameError,
        ];
        if stepwise.into_iter().any(|m| self.mutant(m)) {
            if let Err(e) = work.write(chunk).await {
                self.log_write_failure(work.path(), &e);
                let failure = self.write_failure(&e);
                let path = work.path().to_path_buf();
                drop(work);
                return self.fail(failure, Some(path)).await;
            }
            return self.commit(work).await;
        }
        self.finish(work, chunk).await
    }

    /// The common path: the last bytes, flush, move into IN and flush IN in one
    /// trip to the blocking pool (each trip costs thread wake-ups), then the reply.
    async fn finish(&mut self, work: WorkFile, last: Vec<u8>) -> io::Result<Flow> {
        let id = work.id().to_string();
        let work_path = work.path().to_path_buf();
        let durable = !self.mutant(Mutant::SkipFsync);
        match self.shared.spool.finish(work, last, durable).await {
            Ok(()) => {
                let r = self.render(self.shared.profile.replies.queued, &id);
                self.reply(&r);
                Ok(Flow::Continue)
            }
            Err(Finish::Write(e) | Finish::Sync(e)) => {
                self.log_write_failure(&work_path, &e);
                let failure = self.write_failure(&e);
                self.fail(failure, Some(work_path)).await
            }
            Err(Finish::Directory(e)) => {
                self.log_not_durable(&id, &work_path, &e);
                let failure = self.write_failure(&e);
                self.fail(failure, Some(work_path)).await
            }
            Err(Finish::Rename(e)) => self.move_failed(&id, e, work_path).await,
            Err(Finish::SyncDir(e, entry)) => self.in_not_durable(entry, e).await,
        }
    }

    /// Flush, move into IN, flush IN; reply 250 only when all three succeeded.
    async fn commit(&mut self, mut work: WorkFile) -> io::Result<Flow> {
        let spool = self.shared.spool.clone();
        let work_path = work.path().to_path_buf();
        let skip_fsync = self.mutant(Mutant::SkipFsync);
        if let Err(e) = if skip_fsync {
            Ok(())
        } else {
            work.sync_all().await
        } {
            self.log_write_failure(&work_path, &e);
            let failure = self.write_failure(&e);
            drop(work);
            return self.fail(failure, Some(work_path)).await;
        }
        let id = work.id().to_string();
        drop(work); // closed before the move
        let in_path = spool.in_dir().join(&id);
        if self.mutant(Mutant::PartialIn) {
            return match spool.in_entry(&id).await {
                Ok(entry) => self.synced_into_in(entry).await,
                Err(e) => {
                    self.log_not_durable(&id, &in_path, &e);
                    let failure = self.write_failure(&e);
                    self.fail(failure, Some(in_path)).await
                }
            };
        }
        if self.mutant(Mutant::AckBeforeRename) {
            let r = self.render(self.shared.profile.replies.queued, &id);
            self.reply(&r);
            self.flush().await?;
            // The client already holds a 250: whatever happens now is silent.
            if let Ok(entry) = spool.move_into_in(&id).await {
                let _ = entry.sync().await;
            }
            return Ok(Flow::Continue);
        }
        if !skip_fsync && let Err(e) = spool.sync_created_dirs().await {
            self.log_not_durable(&id, &work_path, &e);
            let failure = self.write_failure(&e);
            return self.fail(failure, Some(work_path)).await;
        }
        match spool.move_into_in(&id).await {
            Ok(entry) => self.synced_into_in(entry).await,
            Err(e) if self.mutant(Mutant::IgnoreRenameError) => {
                self.log_move_failure(&id, &e);
                let r = self.render(self.shared.profile.replies.queued, &id);
                self.reply(&r);
                Ok(Flow::Continue)
            }
            Err(e) => self.move_failed(&id, e, work_path).await,
        }
    }

    /// The move into IN failed: the profile decides, recreating IN if it says so.
    async fn move_failed(
        &mut self,
        id: &str,
        e: io::Error,
        work_path: std::path::PathBuf,
    ) -> io::Result<Flow> {
        let spool = self.shared.spool.clone();
        let in_missing = !spool.is_dir(spool.in_dir()).await;
        let failure = match self.shared.profile.situations.in_missing_at_move {
            InMissingAtMove::Recreate(failure) if in_missing => {
                match self.recreate_in_and_move(id).await {
                    Ok(entry) => return self.synced_into_in(entry).await,
                    Err(e) => {
                        self.log_move_failure(id, &e);
                        failure
                    }
                }
            }
            InMissingAtMove::Fail(failure) if in_missing => {
                self.log_move_failure(id, &e);
                failure
            }
            _ => {
                self.log_move_failure(id, &e);
                self.shared.profile.situations.move_failed
            }
        };
        self.fail(failure, Some(work_path)).await
    }

    async fn recreate_in_and_move(&mut self, id: &str) -> io::Result<InEntry> {
        let spool = self.shared.spool.clone();
        if spool.ensure_dir(spool.in_dir()).await? {
            self.shared.log(
                EventId::DirectoryCreated,
                format!(
                    "The directory {} was missing and has been created.",
                    win32::path(&spool.in_dir())
                ),
            );
        }
        spool.sync_created_dirs().await?;
        spool.move_into_in(id).await
    }

    /// Flushes the directory the message was moved into (through the handle it
    /// was moved through), then 250.
    async fn synced_into_in(&mut self, entry: InEntry) -> io::Result<Flow> {
        let synced = if self.mutant(Mutant::SkipFsync) {
            Ok(())
        } else {
            entry.sync().await
        };
        if let Err(e) = synced {
            return self.in_not_durable(entry, e).await;
        }
        let r = self.render(self.shared.profile.replies.queued, entry.id());
        self.reply(&r);
        Ok(Flow::Continue)
    }

    /// The message is in IN but flushing IN failed: it is refused and taken out of
    /// IN again (removed, or failing that moved back into work), since the client
    /// will retry and must not be delivered twice. Both go through IN's handle,
    /// so they reach the message in whatever place IN has been moved to. If it
    /// cannot leave IN, it will be delivered, so it is accepted: a duplicate or a
    /// loss would be worse than a message whose durability could not be confirmed.
    async fn in_not_durable(&mut self, entry: InEntry, e: io::Error) -> io::Result<Flow> {
        let spool = self.shared.spool.clone();
        let (id, in_path) = (entry.id().to_string(), entry.path().to_path_buf());
        self.log_not_durable(&id, &in_path, &e);
        let failure = self.write_failure(&e);
        if self.mutant(Mutant::KeepRejected) {
            return self.fail(failure, None).await;
        }
        if entry.remove().await.is_ok() || entry.move_out(spool.work_dir().join(&id)).await.is_ok()
        {
            return self.fail(failure, None).await;
        }
        self.shared.log(
            EventId::AcceptedNotDurable,
            format!(
                "The message {} could not be flushed nor taken out of the IN directory; it was accepted and may not survive a system failure.",
                win32::path(&in_path)
            ),
        );
        let r = self.render(self.shared.profile.replies.queued, &id);
        self.reply(&r);
        Ok(Flow::Continue)
    }

    /// Applies a profile's failure: remove what was stored (if it says so), reply, maybe close.
    async fn fail(
        &mut self,
        failure: Failure,
        stored: Option<std::path::PathBuf>,
    ) -> io::Result<Flow> {
        if failure.remove_message
            && let Some(path) = stored
        {
            let _ = self.shared.spool.remove(path).await;
        }
        self.reply(failure.reply);
        Ok(if failure.close {
            Flow::Close
        } else {
            Flow::Continue
        })
    }

    /// True when the connector runs with this seeded defect (harness tests only).
    fn mutant(&self, m: Mutant) -> bool {
        self.shared.config.mutant == Some(m)
    }

    fn write_failure(&self, e: &io::Error) -> Failure {
        let s = &self.shared.profile.situations;
        match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => s.write_no_space,
            _ => s.write_failed,
        }
    }

    fn log_write_failure(&self, path: &std::path::Path, e: &io::Error) {
        let (_, text) = win32::describe(e);
        self.shared.log(
            EventId::WriteFailed,
            format!(
                "Unable to write file {} due to system error. {text}",
                win32::path(path)
            ),
        );
    }

    /// Event 4070 for a message whose directory could not be flushed; it names
    /// the message, not only the directory: the log alone must tell which one.
    fn log_not_durable(&self, id: &str, path: &std::path::Path, e: &io::Error) {
        let (_, text) = win32::describe(e);
        self.shared.log(
            EventId::WriteFailed,
            format!(
                "Unable to make the message {id} ({}) durable, as a directory flush failed due to system error. {text}",
                win32::path(path)
            ),
        );
    }

    /// Event 4055, worded as KB Q146791 prints it.
    fn log_move_failure(&self, id: &str, e: &io::Error) {
        let spool = &self.shared.spool;
        let (_, text) = win32::describe(e);
        self.shared.log(
            EventId::MoveFailed,
            format!(
                "Unable to move file {} to {} due to system error. {text}",
                win32::path(&spool.work_dir().join(id)),
                win32::path(&spool.in_dir().join(id))
            ),
        );
    }

    /// What is stored in front of the message (see [`StoredHeader`]); `None` if
    /// a line would hold a byte no header may (only an id from outside the
    /// grammar could: every client field was parsed).
    fn stored_header(&self, id: &str, txn: &Transaction) -> Option<StoredHeader> {
        let (helo, esmtp) = self.helo.as_ref()?;
        let date = self.shared.config.clock.now().to_rfc2822();
        let trace = Trace {
            helo,
            esmtp: *esmtp,
            peer: self.peer,
            hostname: &self.hostname,
            id,
            date: &date,
        };
        StoredHeader::new(txn.from.as_ref()?, &txn.recipients, &trace).ok()
    }
}
