//! Throughput and memory of `imc serve`, measured from outside over loopback.
//!
//! ```text
//! cargo build --release -p imc
//! cargo bench -p imc --bench throughput
//! ```
//!
//! The bench builds nothing: it runs the release binary at `$IMC_BIN`, by default
//! `<workspace>/target/release/imc` (or `$CARGO_TARGET_DIR/release/imc`), and
//! stops with a message if it is missing. It warns when the binary is older than
//! the connector's sources. The spool root is on a tmpfs so the figures measure
//! the connector, not a disk: `/dev/shm` when /proc/mounts says it is a tmpfs,
//! else a tmpfs mounted for the run when running as root, else the system temp
//! dir (said so in the output).
//!
//! 1. Messages per second accepted (250 after the dot) by one `imc serve`, for 1
//!    and 10 concurrent sessions and 1 KiB and 100 KiB messages, each for a fixed
//!    time (`IMC_BENCH_SECS`, default 5 s). Each session says EHLO once, then
//!    loops MAIL, RCPT, DATA, text, dot, waiting for each reply (no pipelining:
//!    the connector does not offer it). IN is emptied between the rows.
//! 2. Peak RSS (VmHWM) of a fresh `imc serve --max-message-size 20MiB` while 50
//!    sessions each stream a 10 MiB message at once.
//!
//! The whole run takes about 30 s.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::TcpStream;

fn main() {
    // `cargo bench` passes `--bench`; a filter or `--list` from libtest means nothing here.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let bin = locate_binary();
    let (spool, how) = Spool::prepare();
    println!("imc throughput bench");
    println!("  binary: {}", bin.display());
    println!("  spool:  {} ({how})", spool.path().display());
    println!(
        "  cpus:   {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let secs: u64 = std::env::var("IMC_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    // 1. Throughput.
    let server = Server::start(&bin, &spool.path().join("throughput"), &[]);
    println!();
    println!("messages accepted per second ({secs} s per row, loopback, no pipelining)");
    println!(
        "  {:>8}  {:>8}  {:>10}  {:>10}  {:>9}  {:>10}",
        "sessions", "size", "messages", "msg/s", "MiB/s", "mean ms"
    );
    for size in [1024usize, 100 * 1024] {
        for sessions in [1usize, 10] {
            let text = Arc::new(message(size));
            let accepted = Arc::new(AtomicU64::new(0));
            let started = Instant::now();
            let deadline = started + Duration::from_secs(secs);
            rt.block_on(async {
                let tasks: Vec<_> = (0..sessions)
                    .map(|_| {
                        tokio::spawn(session_loop(
                            server.addr,
                            text.clone(),
                            deadline,
                            accepted.clone(),
                        ))
                    })
                    .collect();
                for t in tasks {
                    t.await.expect("session task");
                }
            });
            let elapsed = started.elapsed().as_secs_f64();
            let n = accepted.load(Ordering::Relaxed);
            let in_dir = server.root.join("imcdata/in");
            let stored = count_and_empty(&in_dir);
            assert_eq!(stored, n, "every 250 must have left a file in IN");
            let rate = n as f64 / elapsed;
            println!(
                "  {:>8}  {:>8}  {:>10}  {:>10.0}  {:>9.1}  {:>10.2}",
                sessions,
                human(size as u64),
                n,
                rate,
                rate * size as f64 / (1 << 20) as f64,
                1000.0 * sessions as f64 / rate,
            );
        }
    }
    let rss = server.status_kib("VmHWM");
    server.stop();
    println!(
        "  (peak RSS of that server over all rows: {})",
        human(rss * 1024)
    );

    // 2. Peak memory with 50 concurrent 10 MiB messages.
    let sessions = 50;
    let size = 10 << 20;
    let server = Server::start(
        &bin,
        &spool.path().join("memory"),
        &["--max-message-size", "20MiB"],
    );
    let idle = server.status_kib("VmHWM");
    let text = Arc::new(message(size));
    let accepted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..sessions)
            .map(|_| {
                let text = text.clone();
                let accepted = accepted.clone();
                let addr = server.addr;
                tokio::spawn(async move {
                    let mut c = Client::connect(addr).await;
                    c.transaction(&text).await;
                    accepted.fetch_add(1, Ordering::Relaxed);
                    c.quit().await;
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("session task");
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let peak = server.status_kib("VmHWM");
    let n = accepted.load(Ordering::Relaxed);
    assert_eq!(n, sessions as u64);
    assert_eq!(count_and_empty(&server.root.join("imcdata/in")), n);
    server.stop();
    println!();
    println!("peak memory, {sessions} concurrent sessions each streaming a 10 MiB message");
    println!("  accepted:         {n} messages in {elapsed:.2} s");
    println!("  VmHWM after start: {}", human(idle * 1024));
    println!("  VmHWM peak:        {}", human(peak * 1024));
    println!(
        "  per session:       {} above the idle peak",
        human((peak.saturating_sub(idle)) * 1024 / sessions as u64)
    );
}

/// `$IMC_BIN`, else the release binary of this workspace; exits if missing.
fn locate_binary() -> PathBuf {
    let bin = match std::env::var_os("IMC_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
            target.join("release").join("imc")
        }
    };
    let Ok(meta) = std::fs::metadata(&bin) else {
        eprintln!(
            "error: no imc binary at {}\n\
             build it first:  cargo build --release -p imc\n\
             or point IMC_BIN at one.",
            bin.display()
        );
        std::process::exit(1);
    };
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    if let (Ok(built), Some(newest)) = (meta.modified(), newest_mtime(&src))
        && newest > built
    {
        eprintln!(
            "warning: {} is older than the sources in {}; run `cargo build --release -p imc`",
            bin.display(),
            src.display()
        );
    }
    bin.canonicalize().unwrap_or(bin)
}

fn newest_mtime(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let t = if e.path().is_dir() {
            newest_mtime(&e.path())
        } else {
            e.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(t);
    }
    newest
}

/// Where the spool roots live for the run.
enum Spool {
    Temp(tempfile::TempDir),
    Mounted(tempfile::TempDir),
}

impl Spool {
    fn prepare() -> (Spool, String) {
        if is_tmpfs(Path::new("/dev/shm")) {
            let dir = tempfile::Builder::new()
                .prefix("imc-bench-")
                .tempdir_in("/dev/shm")
                .expect("temp dir in /dev/shm");
            return (Spool::Temp(dir), "tmpfs: /dev/shm".to_string());
        }
        let dir = tempfile::Builder::new()
            .prefix("imc-bench-")
            .tempdir()
            .expect("temp dir");
        if unsafe { libc::geteuid() } == 0 {
            let target =
                std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).expect("path");
            let rc = unsafe {
                libc::mount(
                    c"tmpfs".as_ptr(),
                    target.as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    c"size=4g".as_ptr().cast(),
                )
            };
            if rc == 0 {
                return (
                    Spool::Mounted(dir),
                    "tmpfs mounted for this run".to_string(),
                );
            }
        }
        (
            Spool::Temp(dir),
            "NOT a tmpfs: /dev/shm is not one and no tmpfs could be mounted; disk speed is included"
                .to_string(),
        )
    }

    fn path(&self) -> &Path {
        match self {
            Spool::Temp(d) | Spool::Mounted(d) => d.path(),
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Spool::Mounted(d) = self
            && let Ok(p) = std::ffi::CString::new(d.path().as_os_str().as_encoded_bytes())
        {
            unsafe { libc::umount(p.as_ptr()) };
        }
    }
}

fn is_tmpfs(path: &Path) -> bool {
    std::fs::read_to_string("/proc/mounts").is_ok_and(|m| {
        m.lines().any(|l| {
            let mut f = l.split_whitespace();
            let (_, mount, kind) = (f.next(), f.next(), f.next());
            mount == path.to_str() && kind == Some("tmpfs")
        })
    })
}

/// A running `imc serve`.
struct Server {
    child: Child,
    addr: SocketAddr,
    root: PathBuf,
}

impl Server {
    fn start(bin: &Path, root: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(bin)
            .arg("serve")
            .arg("--root")
            .arg(root)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--low-water-mark",
                "0",
                "--disk-check-interval",
                "0",
                "--event-log",
                "/dev/null",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the address");
        let addr = line
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("imc serve said {line:?}"))
            .parse()
            .expect("an address");
        Server {
            child,
            addr,
            root: root.to_path_buf(),
        }
    }

    /// A `kB` field of /proc/<pid>/status (`VmHWM`, `VmRSS`), in KiB.
    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/<pid>/status"))
    }

    /// SIGTERM, and a clean exit expected.
    fn stop(mut self) {
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "imc serve exited with {status}");
    }
}

impl Drop for Server {
    /// A panicking bench must not leave the server running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An SMTP client that waits for each reply.
struct Client {
    reader: AsyncBufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    line: String,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        let (r, w) = stream.into_split();
        let mut c = Client {
            reader: AsyncBufReader::new(r),
            writer: w,
            line: String::new(),
        };
        c.expect("220").await;
        c.command(b"EHLO bench.example\r\n", "250").await;
        c
    }

    /// Reads one reply (all its lines) and checks its code.
    async fn expect(&mut self, code: &str) {
        loop {
            self.line.clear();
            let n = self.reader.read_line(&mut self.line).await.expect("read");
            assert!(n > 0, "connection closed, expecting {code}");
            assert!(
                self.line.starts_with(code),
                "expected {code}, got {:?}",
                self.line
            );
            if self.line.as_bytes().get(3) != Some(&b'-') {
                return;
            }
        }
    }

    async fn command(&mut self, line: &[u8], code: &str) {
        self.writer.write_all(line).await.expect("write");
        self.expect(code).await;
    }

    /// MAIL, RCPT, DATA, the (already stuffed) text with its dot: one message.
    async fn transaction(&mut self, text: &[u8]) {
        self.command(b"MAIL FROM:<bench@example.org>\r\n", "250")
            .await;
        self.command(b"RCPT TO:<sink@example.net>\r\n", "250").await;
        self.command(b"DATA\r\n", "354").await;
        self.command(text, "250").await;
    }

    async fn quit(&mut self) {
        self.command(b"QUIT\r\n", "221").await;
    }
}

async fn session_loop(
    addr: SocketAddr,
    text: Arc<Vec<u8>>,
    deadline: Instant,
    accepted: Arc<AtomicU64>,
) {
    let mut c = Client::connect(addr).await;
    while Instant::now() < deadline {
        c.transaction(&text).await;
        accepted.fetch_add(1, Ordering::Relaxed);
    }
    c.quit().await;
}

/// A message of exactly `size` octets (headers, then 78-octet lines), followed by
/// the end-of-data dot.
fn message(size: usize) -> Vec<u8> {
    let mut m =
        b"From: bench@example.org\r\nTo: sink@example.net\r\nSubject: bench\r\n\r\n".to_vec();
    let line = b"The quick brown fox jumps over the lazy dog while the connector spools it.\r\n";
    while m.len() + line.len() <= size {
        m.extend_from_slice(line);
    }
    let rest = size - m.len();
    if rest >= 2 {
        m.extend(std::iter::repeat_n(b'x', rest - 2));
        m.extend_from_slice(b"\r\n");
    } else {
        // Grow the last line by the odd octet.
        let at = m.len() - 2;
        m.splice(at..at, std::iter::repeat_n(b'y', rest));
    }
    assert_eq!(m.len(), size);
    m.extend_from_slice(b".\r\n");
    m
}

/// Counts and removes the files in `dir`.
fn count_and_empty(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("IN").flatten() {
        std::fs::remove_file(e.path()).expect("remove");
        n += 1;
    }
    n
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}
