//! Output that never panics: a closed or full stdout ends the command quietly.
//!
//! Rust ignores SIGPIPE, so `println!` panics when stdout is a closed pipe
//! (`imc-harness run ... | head -1`) or a full disk (`> /dev/full`). The macros
//! here shadow `print!`, `println!` and `eprintln!` in the whole binary: a write
//! to stdout that fails ends the process at once, with [`BROKEN_PIPE`] (closed
//! pipe, silently) or [`WRITE_FAILED`] (any other error, said on stderr), after
//! removing this process's sandboxes; a write to stderr that fails is dropped.

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;

/// The exit status when stdout is a closed pipe: 128 + SIGPIPE, what a shell
/// reports for a process that SIGPIPE ended.
pub const BROKEN_PIPE: u8 = 141;

/// The exit status when stdout cannot be written for another reason (a full
/// disk): `EX_IOERR` of sysexits.h.
pub const WRITE_FAILED: u8 = 74;

/// `print!` to stdout, ending the process if it fails.
macro_rules! print {
    ($($arg:tt)*) => { $crate::out::stdout(format_args!($($arg)*), false) };
}

/// `println!` to stdout, ending the process if it fails.
macro_rules! println {
    () => { $crate::out::stdout(format_args!(""), true) };
    ($($arg:tt)*) => { $crate::out::stdout(format_args!($($arg)*), true) };
}

/// `eprintln!` to stderr; a failed write is dropped (there is nowhere left to say it).
macro_rules! eprintln {
    ($($arg:tt)*) => { $crate::out::stderr(format_args!($($arg)*)) };
}

/// Writes `args` (and a newline) to stdout and flushes it, so that a failure shows
/// here and not at exit, where it would go unnoticed.
pub fn stdout(args: fmt::Arguments<'_>, newline: bool) {
    let mut out = io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| {
            if newline {
                out.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .and_then(|()| out.flush());
    if let Err(e) = written {
        drop(out);
        stdout_failed(&e);
    }
}

/// Writes `args` and a newline to stderr, ignoring failure.
pub fn stderr(args: fmt::Arguments<'_>) {
    let mut err = io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// Ends the process after a failed write to stdout.
fn stdout_failed(e: &io::Error) -> ! {
    let status = if e.kind() == io::ErrorKind::BrokenPipe {
        BROKEN_PIPE
    } else {
        stderr(format_args!("imc-harness: cannot write to stdout: {e}"));
        WRITE_FAILED
    };
    // Between runs nothing is live, but a command may print while one is.
    sandbox::remove_own_sandboxes();
    std::process::exit(i32::from(status))
}

/// Parses the command line as clap would, but writes `--help` and `--version`
/// through [`stdout`], so a closed stdout does not panic there either.
pub fn parse_args<P: clap::Parser>() -> Result<P, ExitCode> {
    match P::try_parse() {
        Ok(parsed) => Ok(parsed),
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            Err(ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2)))
        }
        Err(e) => {
            print!("{}", e.render());
            Err(ExitCode::SUCCESS)
        }
    }
}
