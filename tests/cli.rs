//! The `imc-harness` command as a user runs it: exit statuses, the summary, a
//! scenario error with its line and column, stored runs re-checked by `check`,
//! every command on a closed or full stdout, and runs stopped by signals.

use std::path::Path;
use std::process::{Command, Output};

fn harness(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imc-harness"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("imc-harness runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn run_passes_a_folder_and_prints_a_summary() {
    let o = harness(&["run", "-q", "scenarios/kb-q146791"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("11 scenarios run: 11 passed, 0 failed"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_typo_in_a_key_fails_with_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.yaml");
    std::fs::write(
        &file,
        "claims: [KB-1]\nprofile: exchange-4.0\nsteps:\n  - service: start\n  - comand: NOOP\n",
    )
    .unwrap();
    let o = harness(&["run", file.to_str().unwrap()]);
    assert!(!o.status.success());
    let out = text(&o);
    assert!(out.contains("typo.yaml:5:5"), "{out}");
    assert!(out.contains("unknown field `comand`"), "{out}");
    assert!(out.contains("did you mean `command`"), "{out}");
}

#[test]
fn a_failing_expectation_fails_the_run_with_a_transcript() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wrong.yaml");
    std::fs::write(
        &file,
        "claims: [KB-2]\nprofile: exchange-4.0\nsteps:\n  - service: start\n  - fault: { remove: imcdata/in }\n  - connect: a\n    expect: { code: 220 }\n",
    )
    .unwrap();
    let o = harness(&["run", "--no-snapshots", file.to_str().unwrap()]);
    assert!(!o.status.success());
    let out = text(&o);
    assert!(
        out.contains("a < 421 Internal Error. Connection Closing."),
        "{out}"
    );
    assert!(out.contains("expected code 220"), "{out}");
    assert!(out.contains("1 failed"), "{out}");
}

#[test]
fn stored_runs_are_rechecked_and_diffed_without_rerunning() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let o = harness(&[
        "run",
        "-q",
        "--save-history",
        out,
        "scenarios/kb-q146791/kb2-in-removed-before-connection.yaml",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let stored = Path::new(out).join("kb-q146791__kb2-in-removed-before-connection.json");
    let o = harness(&["check", stored.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));

    // A run in which the reply changed differs from the snapshot, and from the original.
    let changed = dir.path().join("changed.json");
    let json = std::fs::read_to_string(&stored).unwrap();
    std::fs::write(&changed, json.replace("Connection Closing.", "Goodbye.")).unwrap();
    let o = harness(&["check", changed.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("+ - a < 421 Internal Error. Goodbye."),
        "{}",
        text(&o)
    );
    let o = harness(&[
        "check",
        changed.to_str().unwrap(),
        "--against",
        stored.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
}

// ---------------------------------------------------------------------------------
// A closed or full stdout ends every command quietly, with a non-zero status.

/// A pipe whose read end is already closed: every write to it fails with EPIPE.
fn closed_pipe() -> std::process::Stdio {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both were just created and are owned here alone.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    write.into()
}

fn dev_full() -> std::process::Stdio {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full")
        .into()
}

/// Every subcommand (and `--help`, `--version`), each writing to stdout.
fn every_command(dir: &Path) -> Vec<Vec<String>> {
    let saved = dir.join("saved");
    let o = harness(&[
        "run",
        "-q",
        "--save-history",
        saved.to_str().unwrap(),
        "scenarios/kb-q146791/kb2-in-removed-before-connection.yaml",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let stored = saved.join("kb-q146791__kb2-in-removed-before-connection.json");
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    vec![
        s(&["run", "scenarios/smtp/happy-path.yaml"]),
        s(&["run", "-q", "scenarios/smtp/happy-path.yaml"]),
        s(&["check", stored.to_str().unwrap()]),
        s(&["new", "NEW"]),
        s(&["schema"]),
        s(&["explore", "--cases", "1", "--seed", "1", "--no-write"]),
        s(&[
            "enumerate",
            "scenarios/kb-q146791/kb2-in-removed-before-connection.yaml",
            "--errnos",
            "EIO",
            "--no-write",
        ]),
        s(&["bench", "-n", "1", "scenarios/smtp/happy-path.yaml"]),
        s(&["--help"]),
        s(&["help", "run"]),
        s(&["--version"]),
    ]
}

#[test]
fn a_closed_or_full_stdout_ends_every_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    for (n, args) in every_command(dir.path()).into_iter().enumerate() {
        for (how, status) in [("closed pipe", 141), ("/dev/full", 74)] {
            // `new` needs a file that does not exist yet.
            let new_file = dir.path().join(format!("new-{n}-{status}.yaml"));
            let args: Vec<String> = args
                .iter()
                .map(|a| {
                    if a == "NEW" {
                        new_file.to_str().unwrap().to_string()
                    } else {
                        a.clone()
                    }
                })
                .collect();
            let stdout = if status == 141 {
                closed_pipe()
            } else {
                dev_full()
            };
            let o = Command::new(env!("CARGO_BIN_EXE_imc-harness"))
                .args(&args)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .stdout(stdout)
                .output()
                .expect("imc-harness runs");
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert_eq!(
                o.status.code(),
                Some(status),
                "{args:?} with {how}: {:?}\n{stderr}",
                o.status
            );
            assert!(
                !stderr.contains("panicked"),
                "{args:?} with {how}:\n{stderr}"
            );
            if status == 141 {
                assert!(stderr.trim().is_empty(), "{args:?} with {how}:\n{stderr}");
            } else {
                assert!(
                    stderr.contains("cannot write to stdout: No space left on device"),
                    "{args:?} with {how}:\n{stderr}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Signals: SIGINT and SIGTERM remove the live sandboxes; SIGKILL's leftovers are
// removed by the next command.

/// A scenario that keeps its sandbox (with a 63 MiB ballast) for a long time: each
/// `raw` step waits for a reply that never comes, for the 10 s reply timeout.
const BLOCKS: &str = "claims: [KB-1]\nprofile: hardened\nsteps:\n  - service: start\n  - fault: { fill_disk: { leave: 1MiB } }\n  - connect: a\n  - raw: { bytes: '', replies: 1 }\n  - raw: { bytes: '', replies: 1 }\n  - raw: { bytes: '', replies: 1 }\n  - raw: { bytes: '', replies: 1 }\n  - raw: { bytes: '', replies: 1 }\n  - raw: { bytes: '', replies: 1 }\n";

/// The sandbox directories in `tmp`.
fn sandboxes(tmp: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(tmp)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("imc-sandbox-"))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// `imc-harness` with its temporary folder (where sandboxes live) in `tmp`.
fn harness_in(tmp: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imc-harness"));
    c.args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("TMPDIR", tmp)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    c
}

/// Starts the blocking scenario in `tmp` and waits until its sandbox is set up
/// (the ballast is in place); returns the child and its sandbox directory.
fn start_blocked(tmp: &Path, backend: &str) -> (std::process::Child, std::path::PathBuf) {
    let scenario = tmp.join("blocks.yaml");
    std::fs::write(&scenario, BLOCKS).unwrap();
    let scenario = scenario.to_str().unwrap();
    start(
        tmp,
        &["run", "--no-snapshots", "--backend", backend, scenario],
        true,
    )
}

/// Starts `imc-harness args` in `tmp` and waits until one of its sandboxes exists
/// (with its ballast in place, if `ballasted`); returns the child and that sandbox.
fn start(tmp: &Path, args: &[&str], ballasted: bool) -> (std::process::Child, std::path::PathBuf) {
    let mut child = harness_in(tmp, args).spawn().unwrap();
    let prefix = format!("imc-sandbox-{}-", child.id());
    // Polls a condition, boundedly: the child starts, creates its sandbox and
    // fills its disk, then waits a whole reply timeout.
    for _ in 0..12_000 {
        if let Some(status) = child.try_wait().unwrap() {
            let o = child.wait_with_output().unwrap();
            panic!("{args:?} ended early ({status}): {}", text(&o));
        }
        let ready = sandboxes(tmp).into_iter().find(|d| {
            d.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&prefix)
                && (!ballasted || ballast(&child, d).exists())
        });
        if let Some(dir) = ready {
            return (child, dir);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let _ = child.kill();
    panic!("no sandbox appeared in {}", tmp.display());
}

/// The ballast of sandbox `dir` as `child` sees it: through its own mount
/// namespace, where a tmpfs sandbox's volume is mounted.
fn ballast(child: &std::process::Child, dir: &Path) -> std::path::PathBuf {
    let inside = dir.join("root/ballast.bin");
    Path::new(&format!("/proc/{}/root", child.id())).join(inside.strip_prefix("/").unwrap())
}

fn signal(child: &std::process::Child, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: a plain syscall on our own child.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

#[test]
fn sigint_and_sigterm_remove_the_live_sandbox_and_exit_130_or_143() {
    for (sig, status, name) in [
        (libc::SIGINT, 130, "SIGINT"),
        (libc::SIGTERM, 143, "SIGTERM"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let (child, dir) = start_blocked(tmp.path(), "vfs");
        signal(&child, sig);
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(status), "{name}: {}", text(&o));
        assert!(
            text(&o).contains(&format!("stopped by {name}; removed 1 live sandbox")),
            "{}",
            text(&o)
        );
        assert!(!dir.exists(), "{name} left {}", dir.display());
        assert_eq!(sandboxes(tmp.path()), Vec::<std::path::PathBuf>::new());
    }
}

#[test]
fn a_sigkilled_runs_sandbox_is_removed_by_the_next_command_never_a_live_one() {
    let mut backends = vec!["vfs"];
    // SAFETY: a plain syscall.
    if unsafe { libc::geteuid() } == 0 {
        backends.push("tmpfs");
    } else {
        std::eprintln!("tmpfs part skipped: mounting a tmpfs needs root here");
    }
    for backend in backends {
        let tmp = tempfile::tempdir().unwrap();
        let (mut killed, stale) = start_blocked(tmp.path(), backend);
        signal(&killed, libc::SIGKILL);
        let status = killed.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        // SIGKILL cannot be caught: the sandbox stays (on tmpfs, its mount went
        // with the process's mount namespace, the directories remain).
        assert!(stale.join("root").is_dir(), "{backend}");

        // A live run's sandbox is never touched by another process's cleanup.
        let (live, live_dir) = start_blocked(tmp.path(), backend);
        assert!(
            !stale.exists(),
            "{backend}: the second run's start removes the stale one"
        );
        let o = harness_in(tmp.path(), &["schema"]).output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        assert!(!text(&o).contains("removed"), "{backend}: {}", text(&o));
        assert!(ballast(&live, &live_dir).exists(), "{backend}");
        assert_eq!(
            sandboxes(tmp.path()),
            std::slice::from_ref(&live_dir),
            "{backend}"
        );

        signal(&live, libc::SIGTERM);
        let o = live.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(143), "{}", text(&o));
        assert!(
            text(&o).contains("removed 1 sandbox left by processes that no longer exist"),
            "{backend}: {}",
            text(&o)
        );
        assert_eq!(
            sandboxes(tmp.path()),
            Vec::<std::path::PathBuf>::new(),
            "{backend}"
        );
    }
}

#[test]
fn every_long_command_stops_on_sigint_without_leaving_a_sandbox() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = tmp.path().join("blocks.yaml");
    std::fs::write(&scenario, BLOCKS).unwrap();
    let scenario = scenario.to_str().unwrap();
    let commands: [(&[&str], bool); 3] = [
        (&["bench", "-n", "1", scenario], true),
        (&["enumerate", scenario, "--no-write"], true),
        // Many short runs on two threads: some sandbox is live at any moment.
        (
            &["explore", "--cases", "1000000", "--seed", "1", "--no-write"],
            false,
        ),
    ];
    for (args, ballasted) in commands {
        let (child, _) = start(tmp.path(), args, ballasted);
        signal(&child, libc::SIGINT);
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(130), "{args:?}: {}", text(&o));
        assert!(
            text(&o).contains("stopped by SIGINT"),
            "{args:?}: {}",
            text(&o)
        );
        assert_eq!(
            sandboxes(tmp.path()),
            Vec::<std::path::PathBuf>::new(),
            "{args:?}"
        );
    }
}

#[test]
fn a_dangling_link_in_a_folder_is_skipped_and_the_rest_runs() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/smtp/happy-path.yaml"),
        folder.join("happy-path.yaml"),
    )
    .unwrap();
    std::os::unix::fs::symlink(folder.join("nowhere.yaml"), folder.join("broken.yaml")).unwrap();
    let o = harness(&["run", "-q", "--no-snapshots", folder.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("1 scenario run: 1 passed, 0 failed"), "{out}");
    assert!(
        out.contains(&format!(
            "warning: skipping `{}`: a dangling symbolic link",
            folder.join("broken.yaml").display()
        )),
        "{out}"
    );
}
