//! Testing your own connector in-process: a tiny maildir-style SMTP receiver
//! (`spool/tmp/<n>`, fsync, rename into `spool/new/<n>`, fsync `spool/new`,
//! then `250`) implements [`Target`], and a scenario runs against it with
//! [`runner::run_with`], invariants and all.
//!
//! `cargo run -p harness --example own_connector` prints the history; the test
//! `crates/harness/tests/own_connector.rs` runs the same code.

use harness::runner::{self, RunOptions};
use harness::target::{
    Event, Exit, MessageFormat, Settle, SpoolLayout, StartError, Stopped, Target, async_trait,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The connector: what a crate would have already; nothing here knows the harness.
pub struct Maildrop {
    root: PathBuf,
    /// Names messages `1`, `2`, ... (deterministic, as a rerun must be).
    next: Arc<Mutex<u64>>,
    /// Its log, which the adapter hands to the runner as events.
    log: Arc<Mutex<Vec<String>>>,
    running: Option<(SocketAddr, JoinSet<()>)>,
}

impl Maildrop {
    /// A stopped connector spooling under `root`.
    pub fn new(root: &Path) -> Maildrop {
        Maildrop {
            root: root.to_path_buf(),
            next: Arc::default(),
            log: Arc::default(),
            running: None,
        }
    }

    async fn start(&mut self) -> std::io::Result<SocketAddr> {
        for dir in ["spool/tmp", "spool/new"] {
            std::fs::create_dir_all(self.root.join(dir))?;
        }
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut tasks = JoinSet::new();
        let (root, next, log) = (self.root.clone(), self.next.clone(), self.log.clone());
        tasks.spawn(async move {
            let mut sessions = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                sessions.spawn(session(stream, root.clone(), next.clone(), log.clone()));
            }
        });
        self.running = Some((addr, tasks));
        Ok(addr)
    }

    /// Drops the listener and every session (dropping a JoinSet aborts its tasks).
    fn halt(&mut self) -> bool {
        self.running.take().is_some()
    }
}

async fn session(
    stream: TcpStream,
    root: PathBuf,
    next: Arc<Mutex<u64>>,
    log: Arc<Mutex<Vec<String>>>,
) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let _ = write.write_all(b"220 maildrop ready\r\n").await;
    while let Ok(Some(line)) = lines.next_line().await {
        let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let reply = match verb.as_str() {
            "EHLO" | "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => "250 OK".to_string(),
            "QUIT" => {
                let _ = write.write_all(b"221 bye\r\n").await;
                return;
            }
            "DATA" => {
                let _ = write.write_all(b"354 go ahead\r\n").await;
                let mut body = Vec::new();
                while let Ok(Some(l)) = lines.next_line().await {
                    if l == "." {
                        break;
                    }
                    // Dot-unstuffing (RFC 5321 4.5.2).
                    let l = l.strip_prefix('.').filter(|r| !r.is_empty()).unwrap_or(&l);
                    body.extend_from_slice(l.as_bytes());
                    body.extend_from_slice(b"\r\n");
                }
                let n = {
                    let mut next = next.lock().unwrap();
                    *next += 1;
                    *next
                };
                match store(&root, n, &body) {
                    Ok(()) => format!("250 queued as {n}"),
                    Err(e) => {
                        log.lock()
                            .unwrap()
                            .push(format!("cannot store message {n}: {e}"));
                        "451 cannot store the message".to_string()
                    }
                }
            }
            _ => "500 unknown command".to_string(),
        };
        if write
            .write_all(format!("{reply}\r\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Durable before the 250: the file, then its entry in `new/`.
fn store(root: &Path, n: u64, body: &[u8]) -> std::io::Result<()> {
    let tmp = root.join(format!("spool/tmp/{n}"));
    let new = root.join(format!("spool/new/{n}"));
    let mut f = std::fs::File::create(&tmp)?;
    std::io::Write::write_all(&mut f, body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &new).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    std::fs::File::open(root.join("spool/new"))?.sync_all()
}

/// The adapter: what the harness asks of a target, in the connector's terms.
pub struct MaildropTarget {
    connector: Maildrop,
    spool: SpoolLayout,
}

impl MaildropTarget {
    /// The connector on the sandbox's root.
    pub fn new(root: &Path) -> MaildropTarget {
        MaildropTarget {
            connector: Maildrop::new(root),
            spool: SpoolLayout {
                receiving: vec!["spool/tmp".into()],
                accepted: vec!["spool/new".into()],
                format: MessageFormat::Whole,
            },
        }
    }
}

#[async_trait]
impl Target for MaildropTarget {
    fn name(&self) -> &str {
        "maildrop"
    }
    fn spool(&self) -> &SpoolLayout {
        &self.spool
    }
    async fn start(&mut self) -> Result<SocketAddr, StartError> {
        self.connector.start().await.map_err(|e| StartError {
            message: e.to_string(),
            stderr: vec![],
            exit: None,
        })
    }
    async fn stop(&mut self) -> Option<Stopped> {
        // This connector has no graceful stop: its sessions are cut.
        self.connector.halt().then_some(Stopped {
            exit: Exit::Code(0),
            expected: true,
            errors: vec![],
        })
    }
    async fn crash(&mut self) -> bool {
        self.connector.halt()
    }
    fn address(&self) -> Option<SocketAddr> {
        self.connector.running.as_ref().map(|(a, _)| *a)
    }
    fn poll_events(&mut self) -> Vec<Event> {
        let mut log = self.connector.log.lock().unwrap();
        log.drain(..)
            .map(|message| Event {
                id: None,
                level: "error".into(),
                source: "maildrop".into(),
                category: String::new(),
                message,
            })
            .collect()
    }
    async fn settle(&mut self, _budget: Duration) -> Settle {
        // Each reply is sent after the work it answers: once the runner has
        // read it, nothing is left to wait for.
        Settle::Quiet
    }
}

/// A scenario for it: one message, then `imcdata`-free checks of its spool.
pub const SCENARIO: &str = r#"
name: one message into the maildrop
claims: [RFC5321-4.1.1.4]
profile: hardened
steps:
  - service: start
  - connect: a
    expect: { code: 220 }
  - command: EHLO client.test
  - command: "MAIL FROM:<alice@example.org>"
  - command: "RCPT TO:<bob@example.net>"
  - command: DATA
    expect: { code: 354 }
  - message: |
      Subject: hello

      ..a stuffed line
    expect: { code: 250, files: { spool/new: 1, spool/tmp: 0 } }
  - fault: { rename: { from: spool/new, to: spool/new.bak } }
  - command: "MAIL FROM:<alice@example.org>"
  - command: "RCPT TO:<bob@example.net>"
  - command: DATA
  - message: "Subject: refused\n"
    expect: { code: 451, events: [{ message_matches: "cannot store message 2" }] }
"#;

/// Runs [`SCENARIO`] against the maildrop.
pub async fn run() -> runner::Run {
    let scenario = harness::scenario::parse(SCENARIO, Path::new("maildrop.yaml")).expect("loads");
    runner::run_with(&scenario, &RunOptions::default(), false, |sandbox| {
        Ok(Box::new(MaildropTarget::new(sandbox.root())))
    })
    .await
    .expect("runs")
}

#[allow(dead_code, reason = "the test includes this file and has its own main")]
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let run = run().await;
    print!("{}", run.history);
    for v in &run.violations {
        println!("violation: {v}");
    }
    for m in &run.mismatches {
        println!("mismatch: {m}");
    }
}
