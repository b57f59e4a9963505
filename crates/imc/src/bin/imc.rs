//! `imc serve`: the connector on its own, on a real filesystem.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "imc",
    version,
    about = "An SMTP spool connector modelled on the Exchange 4.0 Internet Mail Connector"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the connector until SIGTERM or SIGINT (a service stop).
    Serve(Serve),
}

#[derive(Parser)]
struct Serve {
    /// Directory holding the spool (`imcdata/work`, `imcdata/in` are created in it).
    #[arg(long)]
    root: PathBuf,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:2525")]
    listen: SocketAddr,
    /// Behaviour profile.
    #[arg(long, default_value = "exchange-4.0", value_parser = parse_profile)]
    profile: imc::Profile,
    /// File the events are appended to as JSON lines (must not be on the spool); default stderr.
    #[arg(long)]
    event_log: Option<PathBuf>,
    /// Flush mode below this much free space (`10MiB`, `1048576`).
    #[arg(long, default_value = "10MiB", value_parser = imc::units::parse_size)]
    low_water_mark: u64,
    /// Seconds between free-space checks; 0 checks only on new connections.
    #[arg(long, default_value_t = 15)]
    disk_check_interval: u64,
    /// Host name in replies and trace headers, and the server in the KB-4 stop
    /// error: a domain name (`mail.example.org`, `EXCH01`) or an address literal
    /// (`[192.0.2.1]`).
    #[arg(long, default_value = "imc.test", value_parser = parse_hostname)]
    hostname: String,
    /// Largest message accepted (`10MiB`).
    #[arg(long, default_value = "10MiB", value_parser = imc::units::parse_size)]
    max_message_size: u64,
    /// Most recipients per message.
    #[arg(long, default_value_t = 100)]
    max_recipients: usize,
    /// Idle time allowed per command or data line (`300s`, `5m`).
    #[arg(long, default_value = "300s", value_parser = imc::units::parse_duration)]
    command_timeout: Duration,
    /// How long a stop waits for a client that does not read its last replies
    /// before closing its connection (`5s`).
    #[arg(long, default_value = "5s", value_parser = imc::units::parse_duration)]
    stop_grace: Duration,
    /// Run with a seeded defect, only to test a harness: ack-before-rename,
    /// skip-fsync, ignore-rename-error, partial-in, keep-rejected.
    #[arg(long)]
    mutant: Option<imc::Mutant>,
    /// Threads running the sessions: 1 runs them all on the main thread (disk
    /// calls still run on threads of their own); more gives a work-stealing
    /// pool of that many.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    threads: u16,
    /// Most threads doing disk calls at once (tokio's blocking pool).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u16).range(1..))]
    disk_threads: u16,
}

fn parse_profile(name: &str) -> Result<imc::Profile, String> {
    imc::profile::by_name(name)
}

/// Checked at start-up (clap exits 2 on an error): the name goes into every
/// greeting and trace header, where a line break would split them.
fn parse_hostname(name: &str) -> Result<String, String> {
    imc::envelope::HostName::parse(name)
        .map(|h| h.as_str().to_string())
        .map_err(|e| e.to_string())
}

/// Writes a line to stdout or stderr, ignoring a closed or full stream: the
/// connector's work does not depend on anyone reading these lines (the event
/// log is what records it), so failing to print is no reason to stop or panic.
fn say(mut to: impl std::io::Write, line: &str) {
    let _ = writeln!(to, "{line}").and_then(|()| to.flush());
}

fn main() -> ExitCode {
    let Command::Serve(args) = Cli::parse().command;
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(args.disk_threads.into())
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads.into())
            .max_blocking_threads(args.disk_threads.into())
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            say(
                std::io::stderr(),
                &format!("imc: cannot start the runtime: {e}"),
            );
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(status) => ExitCode::from(status),
        Err(message) => {
            say(std::io::stderr(), &format!("imc: {message}"));
            ExitCode::from(1)
        }
    }
}

async fn serve(args: Serve) -> Result<u8, String> {
    std::fs::create_dir_all(&args.root)
        .map_err(|e| format!("cannot create the root {}: {e}", args.root.display()))?;
    let sink: Box<dyn std::io::Write + Send> = match &args.event_log {
        Some(path) => Box::new(open_event_log(path, &args.root)?),
        None => Box::new(std::io::stderr()),
    };
    let mut config = imc::Config::new(&args.root);
    config.listen = args.listen;
    config.hostname = args.hostname;
    config.low_water_mark = args.low_water_mark;
    config.disk_check_interval = Duration::from_secs(args.disk_check_interval);
    config.max_message_size = args.max_message_size;
    config.max_recipients = args.max_recipients;
    config.command_timeout = args.command_timeout;
    config.stop_grace = args.stop_grace;
    config.mutant = args.mutant;
    if let Some(m) = args.mutant {
        say(
            std::io::stderr(),
            &format!("imc: running with the seeded defect `{m}` (for harness testing only)"),
        );
    }
    let connector = imc::Connector::new(
        config,
        args.profile,
        Arc::new(imc::fs::RealFs),
        imc::EventLog::new(Some(sink)),
        Arc::new(imc::spool::ClockIds::default()),
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    // SIGUSR1 runs the low-disk monitor's check now and prints its outcome,
    // so that a harness can ask for it (a service manager's "check now").
    let mut check = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
        .map_err(|e| format!("cannot watch SIGUSR1: {e}"))?;
    let addr = connector.start().await.map_err(|e| e.to_string())?;
    say(std::io::stdout(), &format!("listening on {addr}"));
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = check.recv() => {
                let flush = connector.check_disk().await;
                let mode = if flush { "on" } else { "off" };
                say(std::io::stdout(), &format!("disk check: flush mode {mode}"));
            }
        }
    }
    let report = connector.stop().await.unwrap_or_default();
    for line in &report.errors {
        say(std::io::stderr(), line);
    }
    Ok(u8::try_from(report.status).unwrap_or(1))
}

/// Opens the event log for appending; refuses a file on the spool itself, which a
/// full disk would silence.
fn open_event_log(path: &Path, root: &Path) -> Result<std::fs::File, String> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dir = parent.canonicalize().map_err(|e| {
        format!(
            "event log {}: its directory is not usable: {e}",
            path.display()
        )
    })?;
    let root = root
        .canonicalize()
        .map_err(|e| format!("root {}: {e}", root.display()))?;
    if dir.starts_with(&root) {
        return Err(format!(
            "event log {} is inside the spool root {}: put it on another volume so a full spool cannot silence it",
            path.display(),
            root.display()
        ));
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open the event log {}: {e}", path.display()))
}
