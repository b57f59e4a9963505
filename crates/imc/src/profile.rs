//! Behaviour profiles: one table of replies and actions per situation.
//!
//! The session code asks the profile what to say and do; it never tests a
//! profile's name. Reply templates hold the whole reply line after the code's
//! position, with `{host}` (the configured host name), `{id}` (the message id)
//! and `{max}` (the maximum message size) filled in by the session.

/// The SMTP replies of a profile. Each is `"<code> <text>"`, optionally with an
/// enhanced status code after the code.
#[derive(Clone, Debug)]
pub struct Replies {
    /// Greeting on connect.
    pub greeting: &'static str,
    /// Reply to HELO.
    pub helo: &'static str,
    /// First line of the reply to EHLO.
    pub ehlo: &'static str,
    /// EHLO keywords after the first line (`SIZE {max}`, `PIPELINING`...).
    pub ehlo_keywords: &'static [&'static str],
    /// MAIL accepted.
    pub mail_ok: &'static str,
    /// RCPT accepted.
    pub rcpt_ok: &'static str,
    /// DATA accepted: send the message.
    pub data_start: &'static str,
    /// The message is in IN.
    pub queued: &'static str,
    /// RSET and NOOP.
    pub ok: &'static str,
    /// VRFY (never verifies, as RFC 5321 3.5.3 allows).
    pub vrfy: &'static str,
    /// HELP.
    pub help: &'static str,
    /// QUIT.
    pub quit: &'static str,
    /// Unknown command.
    pub unrecognized: &'static str,
    /// Bad arguments: a HELO/EHLO argument that is not a domain or an address
    /// literal, a MAIL/RCPT argument that is not `FROM:`/`TO:` and a bracketed path.
    pub syntax: &'static str,
    /// MAIL's path is not a valid mailbox (RFC 5321 4.1.2).
    pub bad_sender: &'static str,
    /// RCPT's path is not a valid mailbox.
    pub bad_recipient: &'static str,
    /// A known but unimplemented command (EXPN, TURN...).
    pub not_implemented: &'static str,
    /// MAIL/RCPT parameters not recognized.
    pub bad_parameters: &'static str,
    /// Command out of sequence.
    pub bad_sequence: &'static str,
    /// A command line over 512 octets.
    pub line_too_long: &'static str,
    /// After the dot, when a text line was over 1000 octets.
    pub data_line_too_long: &'static str,
    /// SIZE over the maximum, or a message that grew past it.
    pub too_big: &'static str,
    /// More recipients than allowed.
    pub too_many_recipients: &'static str,
    /// No command within the timeout.
    pub timeout: &'static str,
    /// The service is stopping.
    pub shutting_down: &'static str,
}

/// What the connector does when a spool operation fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The reply sent (after the dot, or to DATA if the work file cannot be created).
    pub reply: &'static str,
    /// Close the connection after the reply.
    pub close: bool,
    /// Remove what was written of the message (`false` leaves the work file behind,
    /// as the real IMC did).
    pub remove_message: bool,
}

/// What to do when IN is missing at the moment a message is moved into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InMissingAtMove {
    /// Fail the message.
    Fail(Failure),
    /// Recreate IN (an event says so) and move again; fail only if that fails.
    Recreate(Failure),
}

/// The situations a profile decides.
#[derive(Clone, Copy, Debug)]
pub struct Situations {
    /// Reply to a new connection while IN is missing; `None` accepts it.
    pub connect_in_missing: Option<&'static str>,
    /// Reply to a new connection in flush mode (space under the low-water mark); `None` accepts it.
    pub connect_low_disk: Option<&'static str>,
    /// Reply to MAIL when free space is under the low-water mark plus the declared
    /// SIZE; `None` does not check at MAIL.
    pub mail_low_disk: Option<&'static str>,
    /// IN missing when a message is moved into it.
    pub in_missing_at_move: InMissingAtMove,
    /// The move failed for another reason.
    pub move_failed: Failure,
    /// A write or flush of the work file failed for lack of space.
    pub write_no_space: Failure,
    /// Any other failure to create, write or flush the work file, or to flush IN.
    pub write_failed: Failure,
    /// Error lines reported by a stop while faulted (IN missing, or space under
    /// the low-water mark); empty for a clean stop. The service stops either way.
    pub stop_when_faulted: &'static [&'static str],
    /// Exit status of `imc serve` after a stop that reported errors.
    pub stop_error_status: i32,
}

/// A behaviour profile.
#[derive(Clone, Debug)]
pub struct Profile {
    /// Its name on the command line and in scenarios.
    pub name: &'static str,
    /// The event source logged.
    pub event_source: &'static str,
    /// What the service is called in service-control messages.
    pub service_name: &'static str,
    /// The SMTP replies.
    pub replies: Replies,
    /// The fault handling.
    pub situations: Situations,
}

/// KB Q146791's reply to every refused call.
pub const KB_421: &str = "421 Internal Error. Connection Closing.";

/// `exchange-4.0`: the Exchange Server 4.0 Internet Mail Connector as KB Q146791
/// documents it: a 421 and a closed connection for a missing IN or low disk,
/// event 4055 when a move into IN fails, and the `0008` error on a faulted stop.
pub fn exchange_4_0() -> Profile {
    const FAIL: Failure = Failure {
        reply: KB_421,
        close: true,
        remove_message: false,
    };
    Profile {
        name: "exchange-4.0",
        event_source: "MSExchangeIMC",
        service_name: "Microsoft Exchange Internet Mail Connector",
        replies: Replies {
            greeting: "220 {host} Microsoft Exchange Internet Mail Connector ready",
            helo: "250 {host}",
            ehlo: "250-{host}",
            ehlo_keywords: &["SIZE {max}", "HELP"],
            mail_ok: "250 OK - mail from accepted",
            rcpt_ok: "250 OK - recipient accepted",
            data_start: "354 Send data.  End with CRLF.CRLF",
            queued: "250 OK",
            ok: "250 OK",
            vrfy: "252 Cannot VRFY user, but will accept message and attempt delivery",
            help: "214 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT",
            quit: "221 {host} closing connection",
            unrecognized: "500 Syntax error, command unrecognized",
            syntax: "501 Syntax error in parameters or arguments",
            bad_sender: "501 Syntax error in parameters or arguments",
            bad_recipient: "501 Syntax error in parameters or arguments",
            not_implemented: "502 Command not implemented",
            bad_parameters: "555 MAIL FROM/RCPT TO parameters not recognized or not implemented",
            bad_sequence: "503 Bad sequence of commands",
            line_too_long: "500 Line too long",
            data_line_too_long: "554 Transaction failed: line too long",
            too_big: "552 Message size exceeds fixed maximum message size",
            too_many_recipients: "452 Too many recipients",
            timeout: "421 {host} Timeout, closing connection",
            shutting_down: "421 {host} Service not available, closing transmission channel",
        },
        situations: Situations {
            connect_in_missing: Some(KB_421),
            connect_low_disk: Some(KB_421),
            mail_low_disk: None,
            in_missing_at_move: InMissingAtMove::Fail(FAIL),
            move_failed: FAIL,
            write_no_space: FAIL,
            write_failed: FAIL,
            stop_when_faulted: &[
                "Could not stop the {service} on \\\\{server}",
                "0008: Not enough storage space is available.",
            ],
            stop_error_status: 8,
        },
    }
}

/// `hardened`: what a modern RFC 5321 / RFC 3463 connector does under the same
/// faults (ORACLES.md sections 2 and 3, the consensus of Postfix, Exim, Sendmail,
/// OpenSMTPD and Exchange 2007+): low disk is refused early and transiently at
/// MAIL (`452 4.3.1`, counting the declared SIZE); a missing IN is recreated, not
/// fatal; a write failure after the data arrived is a transient 451/452 after the
/// dot with nothing left behind, and the session stays usable; stop always
/// succeeds. Enhanced status codes go on every 2yz/4yz/5yz reply except the
/// greeting and the HELO/EHLO replies, as RFC 2034 section 3 prescribes.
pub fn hardened() -> Profile {
    const NO_SPACE: Failure = Failure {
        reply: "452 4.3.1 Insufficient system storage",
        close: false,
        remove_message: true,
    };
    const LOCAL_ERROR: Failure = Failure {
        reply: "451 4.3.0 Requested action aborted: local error in processing",
        close: false,
        remove_message: true,
    };
    Profile {
        name: "hardened",
        event_source: "imc",
        service_name: "imc SMTP connector",
        replies: Replies {
            greeting: "220 {host} ESMTP imc ready",
            helo: "250 {host}",
            ehlo: "250-{host}",
            ehlo_keywords: &[
                "PIPELINING",
                "SIZE {max}",
                "8BITMIME",
                "ENHANCEDSTATUSCODES",
                "HELP",
            ],
            mail_ok: "250 2.1.0 Sender OK",
            rcpt_ok: "250 2.1.5 Recipient OK",
            data_start: "354 Start mail input; end with <CRLF>.<CRLF>",
            queued: "250 2.0.0 OK queued as {id}",
            ok: "250 2.0.0 OK",
            vrfy: "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery",
            help: "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT",
            quit: "221 2.0.0 {host} closing connection",
            unrecognized: "500 5.5.2 Syntax error, command unrecognized",
            syntax: "501 5.5.4 Syntax error in parameters or arguments",
            bad_sender: "501 5.1.7 Bad sender address syntax",
            bad_recipient: "501 5.1.3 Bad recipient address syntax",
            not_implemented: "502 5.5.1 Command not implemented",
            bad_parameters: "555 5.5.4 MAIL FROM/RCPT TO parameters not recognized or not implemented",
            bad_sequence: "503 5.5.1 Bad sequence of commands",
            line_too_long: "500 5.5.2 Line too long",
            data_line_too_long: "554 5.6.0 Transaction failed: line too long",
            too_big: "552 5.3.4 Message size exceeds fixed maximum message size",
            too_many_recipients: "452 4.5.3 Too many recipients",
            timeout: "421 4.4.2 {host} Timeout, closing connection",
            shutting_down: "421 4.3.2 {host} Service not available, closing transmission channel",
        },
        situations: Situations {
            connect_in_missing: None,
            connect_low_disk: None,
            mail_low_disk: Some("452 4.3.1 Insufficient system storage"),
            in_missing_at_move: InMissingAtMove::Recreate(LOCAL_ERROR),
            move_failed: LOCAL_ERROR,
            write_no_space: NO_SPACE,
            write_failed: LOCAL_ERROR,
            stop_when_faulted: &[],
            stop_error_status: 0,
        },
    }
}

/// Every profile, by name.
pub fn all() -> Vec<Profile> {
    vec![exchange_4_0(), hardened()]
}

/// The profile called `name`, or an error listing the known names.
pub fn by_name(name: &str) -> Result<Profile, String> {
    all().into_iter().find(|p| p.name == name).ok_or_else(|| {
        let names: Vec<&str> = all().iter().map(|p| p.name).collect();
        format!(
            "unknown profile `{name}`; known profiles: {}",
            names.join(", ")
        )
    })
}

/// The numeric code of a reply template.
pub fn code_of(template: &str) -> u16 {
    template
        .get(..3)
        .and_then(|c| c.parse().ok())
        .expect("reply templates start with a three-digit code")
}
