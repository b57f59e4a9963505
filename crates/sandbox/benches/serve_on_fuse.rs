//! `imc serve` with its spool on the fuse backend against tmpfs: messages
//! accepted per second, 1 and 10 sessions, 1 KiB messages, rounds interleaved.
//!
//! ```text
//! cargo build --release -p imc
//! cargo bench -p sandbox --bench serve_on_fuse
//! ```
//!
//! Runs the release binary at `$IMC_BIN` (default `<workspace>/target/release/imc`)
//! as a child process, so every file operation of the connector goes through
//! the kernel and, on fuse, through the daemon and its rule engine (no rules
//! installed: the cost of the model itself). Needs root and /dev/fuse; says
//! why and stops otherwise. `IMC_BENCH_SECS` (default 3) per row and round,
//! `IMC_BENCH_ROUNDS` (default 3) rounds; prints each row's median.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sandbox::{Backend, Sandbox, SandboxConfig};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // Before any thread: the mounts stay in this process's namespace.
    if let Err(why) = sandbox::enter_private_mount_namespace()
        .and_then(|()| sandbox::tmpfs_available())
        .and_then(|()| sandbox::fuse_available())
    {
        println!("serve_on_fuse: skipped: {why}");
        return;
    }
    let bin = std::env::var_os("IMC_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/imc"),
        PathBuf::from,
    );
    if !bin.exists() {
        println!(
            "serve_on_fuse: {} is missing: cargo build --release -p imc",
            bin.display()
        );
        return;
    }
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let secs = env("IMC_BENCH_SECS", 3);
    let rounds = env("IMC_BENCH_ROUNDS", 3).max(1);
    println!("imc serve on fuse against tmpfs ({rounds} rounds of {secs} s per row, 1 KiB)");
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); 4];
    for _ in 0..rounds {
        for (b, backend) in [Backend::Tmpfs, Backend::Fuse].into_iter().enumerate() {
            let sb =
                Sandbox::with_backend(SandboxConfig { quota: 1 << 30 }, backend).expect("sandbox");
            let server = Server::start(&bin, sb.root());
            for (s, sessions) in [1usize, 10].into_iter().enumerate() {
                let n = load(server.addr, sessions, Duration::from_secs(secs));
                rates[b * 2 + s].push(n as f64 / secs as f64);
                // Emptied behind the connector's back (on fuse, on the
                // backing tree), so each row starts alike.
                let in_dir = sb.tree().join("imcdata/in");
                for e in std::fs::read_dir(in_dir).expect("IN").flatten() {
                    std::fs::remove_file(e.path()).expect("remove");
                }
            }
            server.stop();
        }
    }
    let mut median = |i: usize| {
        let v = &mut rates[i];
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (t1, t10, f1, f10) = (median(0), median(1), median(2), median(3));
    println!("  sessions   tmpfs msg/s   fuse msg/s   fuse/tmpfs");
    println!("  {:>8}  {:>12.0}  {:>11.0}  {:>10.2}", 1, t1, f1, f1 / t1);
    println!(
        "  {:>8}  {:>12.0}  {:>11.0}  {:>10.2}",
        10,
        t10,
        f10,
        f10 / t10
    );
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(bin: &Path, root: &Path) -> Server {
        let mut child = Command::new(bin)
            .args(["serve", "--root"])
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
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the address");
        let addr = line
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("imc serve said {line:?}"))
            .parse()
            .expect("an address");
        Server { child, addr }
    }

    fn stop(self) {
        // SAFETY: a plain syscall on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
    }
}

impl Drop for Server {
    /// Also on a panic: the connector must not outlive the bench.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Messages accepted by `sessions` clients in `time`.
fn load(addr: SocketAddr, sessions: usize, time: Duration) -> u64 {
    let deadline = Instant::now() + time;
    let threads: Vec<_> = (0..sessions)
        .map(|_| std::thread::spawn(move || session(addr, deadline)))
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("session"))
        .sum()
}

/// The code of the next reply, after its continuation lines.
fn reply(reader: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).expect("reply");
        if line.as_bytes().get(3) != Some(&b'-') {
            return line.get(..3).unwrap_or_default().to_owned();
        }
    }
}

/// One session: EHLO once, then whole transactions until the deadline.
fn session(addr: SocketAddr, deadline: Instant) -> u64 {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    assert_eq!(reply(&mut reader), "220");
    writer.write_all(b"EHLO bench\r\n").expect("send");
    assert_eq!(reply(&mut reader), "250");
    // 1 KiB in lines of 78 octets (a text line may not pass 1000).
    let mut body = b"Subject: bench\r\n\r\n".to_vec();
    while body.len() + 78 <= 1024 {
        body.extend_from_slice(&[b'x'; 76]);
        body.extend_from_slice(b"\r\n");
    }
    body.resize(1024 - 2, b'y');
    body.extend_from_slice(b"\r\n.\r\n");
    let mut n = 0;
    while Instant::now() < deadline {
        for (line, code) in [
            (&b"MAIL FROM:<a@example.org>\r\n"[..], "250"),
            (b"RCPT TO:<b@example.net>\r\n", "250"),
            (b"DATA\r\n", "354"),
            (&body, "250"),
        ] {
            writer.write_all(line).expect("send");
            let got = reply(&mut reader);
            assert_eq!(got, code, "after {}", String::from_utf8_lossy(line));
        }
        n += 1;
    }
    writer.write_all(b"QUIT\r\n").expect("send");
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    n
}
