//! Hostile input gets a clear error, never a hang, a panic or a full memory:
//! discovery of folders holding dangling links, FIFOs and devices, the size cap on
//! scenario files, bytes that are not UTF-8, and the bounds on every size.

use harness::scenario::{self, ScenarioError};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

const VALID: &str = "claims: [KB-1]\nprofile: exchange-4.0\nsteps:\n  - service: start\n";

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

/// Runs `f` on a thread and waits for it; a hang (the old behaviour on a FIFO)
/// fails the test instead of blocking the suite. The bound is no measurement: the
/// right behaviour answers at once.
fn without_hanging<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(120))
        .expect("blocked: the call never returned")
}

#[test]
fn a_dangling_link_or_a_fifo_under_a_folder_is_skipped_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    std::fs::write(root.join("a.yaml"), VALID).unwrap();
    std::fs::create_dir(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/c.yaml"), VALID).unwrap();
    std::os::unix::fs::symlink(root.join("nowhere.yaml"), root.join("sub/broken.yaml")).unwrap();
    std::os::unix::fs::symlink(root.join("nowhere"), root.join("gone")).unwrap();
    mkfifo(&root.join("pipe.yaml"));
    let found = without_hanging({
        let root = root.clone();
        move || scenario::scan(&[root]).map_err(|e| e.to_string())
    })
    .unwrap();
    assert_eq!(found.files, [root.join("a.yaml"), root.join("sub/c.yaml")]);
    let skipped: Vec<(PathBuf, &str)> = found
        .skipped
        .iter()
        .map(|s| (s.path.clone(), s.reason.as_str()))
        .collect();
    assert_eq!(
        skipped,
        [
            (root.join("gone"), "a dangling symbolic link"),
            (root.join("pipe.yaml"), "a FIFO, not a regular file"),
            (root.join("sub/broken.yaml"), "a dangling symbolic link"),
        ]
    );
    // `discover` gives the same files (and warns on stderr).
    assert_eq!(scenario::discover(&[root]).unwrap(), found.files);
}

#[test]
fn a_fifo_given_as_a_file_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.yaml");
    mkfifo(&fifo);
    let (scanned, loaded) = without_hanging({
        let fifo = fifo.clone();
        move || {
            (
                scenario::scan(std::slice::from_ref(&fifo)).map(|d| d.files),
                scenario::load(&fifo).map(|s| s.name),
            )
        }
    });
    for e in [scanned.unwrap_err(), loaded.unwrap_err()] {
        assert!(matches!(e, ScenarioError::Io { .. }), "{e:?}");
        assert_eq!(e.path(), fifo);
        assert!(e.to_string().contains("a FIFO"), "{e}");
    }
}

#[test]
fn a_device_is_refused_instead_of_read_forever() {
    let e = without_hanging(|| scenario::load(Path::new("/dev/zero")).map(|s| s.name)).unwrap_err();
    assert!(e.to_string().contains("a character device"), "{e}");
    let e = scenario::discover(&[PathBuf::from("/dev/zero")]).unwrap_err();
    assert!(e.to_string().contains("a character device"), "{e}");
}

#[test]
fn a_scenario_file_larger_than_the_cap_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.yaml");
    // A valid scenario, padded with a comment to one byte over the cap.
    let mut text = String::from(VALID);
    text.push('#');
    let pad = scenario::MAX_FILE_SIZE as usize + 1 - text.len() - 1;
    text.push_str(&"x".repeat(pad));
    text.push('\n');
    assert_eq!(text.len() as u64, scenario::MAX_FILE_SIZE + 1);
    std::fs::write(&path, &text).unwrap();
    let e = scenario::load(&path).unwrap_err();
    assert!(matches!(e, ScenarioError::Io { .. }), "{e:?}");
    assert!(e.to_string().contains("larger than the 16 MiB"), "{e}");
    // At the cap itself it loads.
    text.truncate(text.len() - 2);
    text.push('\n');
    std::fs::write(&path, &text).unwrap();
    scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn bytes_that_are_not_utf8_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.yaml");
    let mut bytes = b"claims: [KB-1]\nprofile: exchange-4.0\nsteps:\n  - service: start\n  - note: \xc3\xa9t\xe9\n".to_vec();
    bytes.extend_from_slice(b"  - service: stop\n");
    std::fs::write(&path, &bytes).unwrap();
    let e = scenario::load(&path).unwrap_err();
    assert!(matches!(e, ScenarioError::Syntax(_)), "{e:?}");
    // `  - note: ` is 10 characters, `é` one and `t` one: the bad byte is the 13th.
    assert_eq!((e.line(), e.column()), (Some(5), Some(13)), "{e}");
    assert!(e.message().contains("byte 0xe9"), "{e}");
    let rendered = e.to_string();
    assert!(
        rendered.contains(&format!("{}:5:13", path.display())),
        "{rendered}"
    );
    // A bad byte on the first line, first column.
    std::fs::write(&path, b"\xffclaims: [KB-1]\n").unwrap();
    let e = scenario::load(&path).unwrap_err();
    assert_eq!((e.line(), e.column()), (Some(1), Some(1)), "{e}");
}

fn parse(source: &str) -> Result<scenario::Scenario, ScenarioError> {
    scenario::parse(source, Path::new("scenarios/x.yaml"))
}

/// The 1-based line and column of the first `token` after `after` in `source`.
fn position(source: &str, after: &str, token: &str) -> (usize, usize) {
    let from = source.find(after).expect("anchor in source");
    let at = from + source[from..].find(token).expect("token in source");
    let line = source[..at].matches('\n').count() + 1;
    let start = source[..at].rfind('\n').map_or(0, |i| i + 1);
    (line, source[start..at].chars().count() + 1)
}

/// Asserts a rule error pointing at the value `token` (the first after the key
/// `key`) whose message contains `needle`.
#[track_caller]
fn refused_at(source: &str, key: &str, token: &str, needle: &str) {
    let e = match parse(source) {
        Ok(_) => panic!("expected an error for:\n{source}"),
        Err(e) => e,
    };
    assert!(matches!(e, ScenarioError::Invalid(_)), "{e:?}\n{e}");
    assert!(e.message().contains(needle), "{e}");
    let (line, column) = position(source, key, token);
    assert_eq!((e.line(), e.column()), (Some(line), Some(column)), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("scenarios/x.yaml:{line}:{column}")),
        "{e}"
    );
}

const HEAD: &str = "claims: [KB-1]\nprofile: hardened\n";

#[test]
fn every_size_has_an_upper_bound_checked_at_load() {
    let max = scenario::MAX_SIZE;
    let send = scenario::MAX_SEND_SIZE;
    let steps = |step: &str| format!("{HEAD}steps:\n  - service: start\n  - connect: a\n{step}");
    let header = |block: &str| format!("{HEAD}{block}\nsteps: [{{ service: start }}]\n");
    // The largest u64, and 3 GiB, in each place a size is written.
    for big in ["18446744073709551615", "3GiB"] {
        refused_at(
            &header(&format!("sandbox: {{ quota: {big} }}")),
            "quota",
            big,
            "`quota` is",
        );
        refused_at(
            &header(&format!("connector:\n  low_water_mark: {big}")),
            "low_water_mark",
            big,
            "more than the 1073741824 bytes (1GiB)",
        );
        refused_at(
            &header(&format!("connector:\n  max_message_size: {big}")),
            "max_message_size",
            big,
            "`max_message_size` is",
        );
        refused_at(
            &steps(&format!(
                "  - send: {{ from: a@example.org, to: [b@example.net], size: {big} }}\n"
            )),
            "size",
            big,
            "step 3 (`send`): `send.size` is",
        );
        refused_at(
            &steps(&format!("  - fault: {{ fill_disk: {{ leave: {big} }} }}\n")),
            "leave",
            big,
            "step 3 (`fault`): `fill_disk.leave` is",
        );
        if big.bytes().all(|b| b.is_ascii_digit()) {
            refused_at(
                &steps(&format!(
                    "  - fault: free_disk\n    when: {{ session: a, after_data_bytes: {big} }}\n"
                )),
                "after_data_bytes",
                big,
                "`after_data_bytes` is",
            );
        }
    }
    // One byte over each bound is refused; the bound itself loads.
    let over = (max + 1).to_string();
    for key in ["quota", "leave", "after_data_bytes", "low_water_mark"] {
        let source = match key {
            "quota" => header(&format!("sandbox: {{ quota: {over} }}")),
            "low_water_mark" => header(&format!("connector: {{ low_water_mark: {over} }}")),
            "leave" => steps(&format!(
                "  - fault: {{ fill_disk: {{ leave: {over} }} }}\n"
            )),
            _ => steps(&format!(
                "  - fault: free_disk\n    when: {{ session: a, after_data_bytes: {over} }}\n"
            )),
        };
        refused_at(&source, key, &over, "more than the 1073741824 bytes");
        let at_max = source.replace(&over, &max.to_string());
        parse(&at_max).unwrap_or_else(|e| panic!("{e}"));
    }
    let over = (send + 1).to_string();
    refused_at(
        &steps(&format!(
            "  - send: {{ from: a@example.org, to: [b@example.net], size: {over} }}\n"
        )),
        "size",
        &over,
        "more than the 67108864 bytes (64MiB)",
    );
    parse(&steps(&format!(
        "  - send: {{ from: a@example.org, to: [b@example.net], size: {send} }}\n"
    )))
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_quota_must_hold_at_least_one_block() {
    for small in ["0", "4095"] {
        refused_at(
            &format!("{HEAD}sandbox: {{ quota: {small} }}\nsteps: [{{ service: start }}]\n"),
            "quota",
            small,
            "a volume needs at least 4096 bytes",
        );
    }
    parse(&format!(
        "{HEAD}sandbox: {{ quota: 4KiB }}\nsteps: [{{ service: start }}]\n"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
}
