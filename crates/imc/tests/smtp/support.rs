//! Fixtures shared by every module: a connector on a temp root, an SMTP client on
//! a real socket, a recording and fault-injecting [`Fs`], and event waiting.
//!
//! Nothing here sleeps. Every read is bounded by [`GUARD`], a hang guard that only
//! turns a broken connector into a failure instead of a stuck test run.

use chrono::{DateTime, TimeZone, Utc};
use imc::fs::{Fs, FsDir, FsFile, Metadata, RealFs};
use imc::spool::CounterIds;
use imc::{Clock, Config, Connector, Event, EventLog};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};

/// Longest any single wait may take before the test fails as hung.
pub const GUARD: Duration = Duration::from_secs(20);

/// The fixed clock of every test connector: 1 April 1996, noon UTC.
pub fn fixed_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(1996, 4, 1, 12, 0, 0).unwrap()
}

/// [`fixed_time`] as the trace header prints it (RFC 2822).
pub const DATE_2822: &str = "Mon, 1 Apr 1996 12:00:00 +0000";

/// KB Q146791's refusal.
pub const KB_421: &str = "421 Internal Error. Connection Closing.";

/// Bounds a future by [`GUARD`].
pub async fn guard<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, f)
        .await
        .unwrap_or_else(|_| panic!("hung: {what} did not happen within {GUARD:?}"))
}

/// A connector over a fresh temp root with deterministic ids and clock, its
/// event subscription, and (once started) its address.
pub struct Spooled {
    pub root: TempDir,
    pub connector: Connector,
    pub events: mpsc::UnboundedReceiver<Event>,
    pub addr: Option<SocketAddr>,
}

impl Spooled {
    /// Defaults for tests: low-water mark 0 (never low), no periodic disk check,
    /// the fixed clock; everything else is [`Config::new`]'s default.
    pub fn config(root: &Path) -> Config {
        let mut c = Config::new(root);
        c.low_water_mark = 0;
        c.disk_check_interval = Duration::ZERO;
        c.clock = Clock::Fixed(fixed_time());
        c
    }

    /// A stopped connector on a new root; `edit` adjusts the config, `fs` replaces
    /// [`RealFs`]. Events are subscribed to before anything is logged.
    pub fn build(edit: impl FnOnce(&mut Config), fs: Option<TestFs>) -> Self {
        Self::build_profile(imc::profile::exchange_4_0(), edit, fs)
    }

    /// [`Spooled::build`] with another profile.
    pub fn build_profile(
        profile: imc::Profile,
        edit: impl FnOnce(&mut Config),
        fs: Option<TestFs>,
    ) -> Self {
        let root = tempfile::tempdir().expect("temp root");
        let mut config = Self::config(root.path());
        edit(&mut config);
        let fs: Arc<dyn Fs> = match fs {
            Some(fs) => {
                fs.set_root(root.path());
                Arc::new(fs)
            }
            None => Arc::new(RealFs),
        };
        let connector = Connector::new(
            config,
            profile,
            fs,
            EventLog::new(None),
            Arc::new(CounterIds::default()),
        );
        let events = connector.events().subscribe();
        Spooled {
            root,
            connector,
            events,
            addr: None,
        }
    }

    /// Builds and starts with the defaults.
    pub async fn start() -> Self {
        Self::start_with(|_| {}, None).await
    }

    /// Builds and starts.
    pub async fn start_with(edit: impl FnOnce(&mut Config), fs: Option<TestFs>) -> Self {
        let mut s = Self::build(edit, fs);
        s.restart().await;
        s
    }

    /// Builds and starts with the `hardened` profile.
    pub async fn start_hardened(edit: impl FnOnce(&mut Config), fs: Option<TestFs>) -> Self {
        let mut s = Self::build_profile(imc::profile::hardened(), edit, fs);
        s.restart().await;
        s
    }

    /// Starts the (stopped) connector; remembers its address.
    pub async fn restart(&mut self) -> SocketAddr {
        let addr = self.connector.start().await.expect("connector starts");
        self.addr = Some(addr);
        addr
    }

    pub fn in_dir(&self) -> PathBuf {
        self.root.path().join("imcdata").join("in")
    }

    pub fn work_dir(&self) -> PathBuf {
        self.root.path().join("imcdata").join("work")
    }

    /// The root as the connector's events print it (backslashes).
    pub fn root_win(&self) -> String {
        self.root.path().display().to_string().replace('/', "\\")
    }

    /// File names in `imcdata/in`, sorted (panics if it is missing).
    pub fn in_files(&self) -> Vec<String> {
        names(&self.in_dir())
    }

    /// File names in `imcdata/work`, sorted.
    pub fn work_files(&self) -> Vec<String> {
        names(&self.work_dir())
    }

    /// The bytes of `in/<id>`.
    pub fn stored(&self, id: &str) -> Vec<u8> {
        std::fs::read(self.in_dir().join(id)).expect("message in IN")
    }

    /// Connects a client (without reading the greeting).
    pub async fn connect(&self) -> Client {
        Client::connect(self.addr.expect("started")).await
    }

    /// Connects, reads the 220 greeting, says EHLO.
    pub async fn session(&self) -> Client {
        let mut c = self.connect().await;
        c.greeting().await;
        let r = c.cmd("EHLO client.example").await;
        assert!(r.starts_with("250-imc.test"), "{r}");
        c
    }

    /// The next event with this id; events with other ids are skipped.
    pub async fn event(&mut self, id: u32) -> Event {
        guard(&format!("event {id}"), async {
            loop {
                let e = self.events.recv().await.expect("event log open");
                if e.id == id {
                    return e;
                }
            }
        })
        .await
    }

    /// Every event logged so far that nobody has read, in order.
    pub fn drain_events(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(e);
        }
        out
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// An SMTP client on a real socket, reading replies line by line.
pub struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = guard("connect", TcpStream::connect(addr))
            .await
            .expect("connect");
        let (r, w) = stream.into_split();
        Client {
            reader: BufReader::new(r),
            writer: w,
        }
    }

    /// Writes bytes in one write call.
    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.writer.write_all(bytes.as_ref()).await.expect("send");
    }

    /// Writes bytes, returning the error instead of failing.
    pub async fn try_send(&mut self, bytes: impl AsRef<[u8]>) -> io::Result<()> {
        self.writer.write_all(bytes.as_ref()).await
    }

    /// One reply line without its CRLF; fails on EOF or a line not ended by CRLF.
    pub async fn line(&mut self) -> String {
        let mut buf = Vec::new();
        let n = guard("a reply line", self.reader.read_until(b'\n', &mut buf))
            .await
            .expect("read");
        assert!(n > 0, "connection closed while a reply was expected");
        let text = String::from_utf8(buf).expect("utf-8 reply");
        text.strip_suffix("\r\n")
            .unwrap_or_else(|| panic!("reply line not ended by CRLF: {text:?}"))
            .to_string()
    }

    /// One whole reply; the lines of a multi-line reply are joined with `\n`.
    pub async fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let l = self.line().await;
            let last = l.as_bytes().get(3) != Some(&b'-');
            lines.push(l);
            if last {
                return lines.join("\n");
            }
        }
    }

    /// Sends `line` + CRLF, returns the reply.
    pub async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n")).await;
        self.reply().await
    }

    /// Reads the greeting and checks it.
    pub async fn greeting(&mut self) {
        assert_eq!(
            self.reply().await,
            "220 imc.test Microsoft Exchange Internet Mail Connector ready"
        );
    }

    /// MAIL and one RCPT, both accepted.
    pub async fn envelope(&mut self) {
        assert_eq!(
            self.cmd("MAIL FROM:<alice@example.org>").await,
            "250 OK - mail from accepted"
        );
        assert_eq!(
            self.cmd("RCPT TO:<bob@example.net>").await,
            "250 OK - recipient accepted"
        );
    }

    /// DATA (expecting 354), then `text` and the end-of-data dot; returns the reply to the dot.
    pub async fn data(&mut self, text: &[u8]) -> String {
        assert_eq!(self.cmd("DATA").await, "354 Send data.  End with CRLF.CRLF");
        self.send([text, b".\r\n"].concat()).await;
        self.reply().await
    }

    /// A whole transaction: envelope, DATA, text, dot.
    pub async fn mail(&mut self, text: &[u8]) -> String {
        self.envelope().await;
        self.data(text).await
    }

    /// The server closed the connection cleanly with nothing more to say.
    pub async fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        guard("the close", self.reader.read_to_end(&mut rest))
            .await
            .expect("clean close (FIN), not a reset");
        assert!(
            rest.is_empty(),
            "expected the close, got {:?}",
            String::from_utf8_lossy(&rest)
        );
    }

    /// The connection was cut with no byte sent: EOF or reset, both fine.
    pub async fn expect_cut(&mut self) {
        let mut rest = Vec::new();
        let _ = guard("the cut", self.reader.read_to_end(&mut rest)).await;
        assert!(
            rest.is_empty(),
            "expected no reply, got {:?}",
            String::from_utf8_lossy(&rest)
        );
    }

    /// Resets the connection (SO_LINGER 0, then close): the server sees ECONNRESET.
    pub fn reset(self) {
        let stream = self
            .reader
            .into_inner()
            .reunite(self.writer)
            .expect("halves");
        // A zero linger resets at once, so the blocking-on-drop concern is moot.
        #[allow(deprecated)]
        stream.set_linger(Some(Duration::ZERO)).expect("linger");
        drop(stream);
    }
}

/// A message of `lines` lines, each `width` octets including CRLF (`width` >= 3).
pub fn message(lines: usize, width: usize) -> Vec<u8> {
    let mut m = Vec::with_capacity(lines * width);
    for i in 0..lines {
        let line = format!("{:0>w$}\r\n", i % 10, w = width - 2);
        m.extend_from_slice(line.as_bytes());
    }
    m
}

/// [`RealFs`] that records every mutating operation (`create`, `write`, `sync`,
/// `rename`, `remove`, `create_dir`, `sync_dir`, with paths relative to the root)
/// after it succeeded, and can fail file writes or directory flushes with an errno
/// and report a chosen free space. Clones share one state.
#[derive(Clone)]
pub struct TestFs(Arc<State>);

struct State {
    root: OnceLock<PathBuf>,
    ops: Mutex<Vec<String>>,
    changed: watch::Sender<usize>,
    write_errno: AtomicI32,
    sync_dir_errno: AtomicI32,
    /// Only flushes of this directory (root-relative) fail; `None`: all do.
    sync_dir_only: Mutex<Option<String>>,
    free: AtomicU64,
    /// Run once, right after the operation it names is recorded (what another
    /// process does to the disk between two of the connector's operations).
    after: Mutex<Option<(String, AfterOp)>>,
}

type AfterOp = Box<dyn FnOnce() + Send>;

impl Default for TestFs {
    fn default() -> Self {
        TestFs(Arc::new(State {
            root: OnceLock::new(),
            ops: Mutex::new(Vec::new()),
            changed: watch::channel(0).0,
            write_errno: AtomicI32::new(0),
            sync_dir_errno: AtomicI32::new(0),
            sync_dir_only: Mutex::new(None),
            free: AtomicU64::new(u64::MAX),
            after: Mutex::new(None),
        }))
    }
}

impl TestFs {
    fn set_root(&self, root: &Path) {
        self.0.root.set(root.to_path_buf()).expect("one root");
    }

    /// File writes fail with this errno from now on (0: they succeed).
    pub fn fail_writes(&self, errno: i32) {
        self.0.write_errno.store(errno, Ordering::SeqCst);
    }

    /// Directory flushes fail with this errno from now on (0: they succeed).
    pub fn fail_sync_dir(&self, errno: i32) {
        self.0.sync_dir_errno.store(errno, Ordering::SeqCst);
    }

    /// Flushes of the directory `rel` (root-relative) alone fail with this errno
    /// from now on (0: they succeed).
    pub fn fail_sync_dir_of(&self, rel: &str, errno: i32) {
        *self.0.sync_dir_only.lock().unwrap() = Some(rel.to_string());
        self.fail_sync_dir(errno);
    }

    /// The free space reported from now on (`u64::MAX`: the real one).
    pub fn set_free(&self, bytes: u64) {
        self.0.free.store(bytes, Ordering::SeqCst);
    }

    /// Runs `f` once, right after the operation `op` (as [`TestFs::ops`] lists
    /// it) and before the connector's next one.
    pub fn after_op(&self, op: &str, f: impl FnOnce() + Send + 'static) {
        *self.0.after.lock().unwrap() = Some((op.to_string(), Box::new(f)));
    }

    /// The operations recorded so far.
    pub fn ops(&self) -> Vec<String> {
        self.0.ops.lock().unwrap().clone()
    }

    /// Forgets the operations recorded so far.
    pub fn clear_ops(&self) {
        self.0.ops.lock().unwrap().clear();
    }

    /// Waits until `op` has been recorded.
    pub async fn wait_for_op(&self, op: &str) {
        let mut rx = self.0.changed.subscribe();
        guard(&format!("operation `{op}`"), async {
            while !self.ops().iter().any(|o| o == op) {
                rx.changed().await.expect("fs alive");
            }
        })
        .await
    }
}

impl State {
    fn rel(&self, p: &Path) -> String {
        let root = self.root.get().expect("root set");
        p.strip_prefix(root).unwrap_or(p).display().to_string()
    }

    fn record(&self, op: String) {
        let due = {
            let mut after = self.after.lock().unwrap();
            match after.take() {
                Some((when, f)) if when == op => Some(f),
                other => {
                    *after = other;
                    None
                }
            }
        };
        self.ops.lock().unwrap().push(op);
        if let Some(f) = due {
            f();
        }
        self.changed.send_modify(|n| *n += 1);
    }
}

fn errno(cell: &AtomicI32) -> io::Result<()> {
    match cell.load(Ordering::SeqCst) {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

struct TestFile {
    inner: Box<dyn FsFile>,
    name: String,
    state: Arc<State>,
}

impl Write for TestFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        errno(&self.state.write_errno)?;
        let n = self.inner.write(buf)?;
        self.state.record(format!("write {}", self.name));
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl FsFile for TestFile {
    fn sync_all(&mut self) -> io::Result<()> {
        self.inner.sync_all()?;
        self.state.record(format!("sync {}", self.name));
        Ok(())
    }
}

/// A directory handle of a [`TestFs`]: recorded and failed as the same calls by path.
struct TestDir {
    inner: Box<dyn FsDir>,
    /// The root-relative path it was opened at.
    name: String,
    state: Arc<State>,
}

impl FsDir for TestDir {
    fn rename_in(&self, from: &Path, name: &str) -> io::Result<()> {
        self.inner.rename_in(from, name)?;
        let from = self.state.rel(from);
        self.state
            .record(format!("rename {from} {}/{name}", self.name));
        Ok(())
    }
    fn rename_out(&self, name: &str, to: &Path) -> io::Result<()> {
        self.inner.rename_out(name, to)?;
        let to = self.state.rel(to);
        self.state
            .record(format!("rename {}/{name} {to}", self.name));
        Ok(())
    }
    fn remove_file(&self, name: &str) -> io::Result<()> {
        self.inner.remove_file(name)?;
        self.state.record(format!("remove {}/{name}", self.name));
        Ok(())
    }
    fn sync_all(&self) -> io::Result<()> {
        let only = self.state.sync_dir_only.lock().unwrap().clone();
        if only.is_none_or(|rel| rel == self.name) {
            errno(&self.state.sync_dir_errno)?;
        }
        self.inner.sync_all()?;
        self.state.record(format!("sync_dir {}", self.name));
        Ok(())
    }
}

impl Fs for TestFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let inner = RealFs.create(path)?;
        let name = self.0.rel(path);
        self.0.record(format!("create {name}"));
        Ok(Box::new(TestFile {
            inner,
            name,
            state: self.0.clone(),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealFs.rename(from, to)?;
        self.0
            .record(format!("rename {} {}", self.0.rel(from), self.0.rel(to)));
        Ok(())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        RealFs.remove_file(path)?;
        self.0.record(format!("remove {}", self.0.rel(path)));
        Ok(())
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        RealFs.create_dir(path)?;
        self.0.record(format!("create_dir {}", self.0.rel(path)));
        Ok(())
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let only = self.0.sync_dir_only.lock().unwrap().clone();
        if only.is_none_or(|rel| rel == self.0.rel(path)) {
            errno(&self.0.sync_dir_errno)?;
        }
        RealFs.sync_dir(path)?;
        self.0.record(format!("sync_dir {}", self.0.rel(path)));
        Ok(())
    }
    fn open_dir(&self, path: &Path) -> io::Result<Box<dyn FsDir>> {
        Ok(Box::new(TestDir {
            inner: RealFs.open_dir(path)?,
            name: self.0.rel(path),
            state: self.0.clone(),
        }))
    }
    fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        RealFs.metadata(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        RealFs.read_dir(path)
    }
    fn available_space(&self, path: &Path) -> io::Result<u64> {
        match self.0.free.load(Ordering::SeqCst) {
            u64::MAX => RealFs.available_space(path),
            n => Ok(n),
        }
    }
}
