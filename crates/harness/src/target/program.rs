//! Finding (or building) the program a target file names.
//!
//! `command.program` is a path, or a bare name. A path is taken relative to
//! the target file's folder. A bare name is found, in this order:
//!
//! 1. built: with `command.cargo` and a cargo at hand (`$CARGO`, which cargo
//!    sets for tests and `cargo run`, else `cargo` on `PATH`), `cargo build -p
//!    PACKAGE --bin BIN` runs once per harness process in the target file's
//!    folder (so in its workspace), in the harness's own profile (`--release`
//!    when the harness is a release build), and cargo's report names the
//!    executable: a run never picks up a stale binary. A failed build is an
//!    error, not a fall-back to an older binary;
//! 2. beside the harness's executable, and in the folder above it (a test
//!    binary lives in `target/debug/deps`, the binaries in `target/debug`);
//! 3. in `$CARGO_TARGET_DIR/{release,debug}`, then in `target/{release,debug}`
//!    of every folder from the target file's up;
//! 4. on `PATH`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use super::file::CargoBuild;

/// Where `program` is (see the [module documentation](self)); an error says
/// where it looked.
pub fn find(program: &str, cargo: Option<&CargoBuild>, dir: &Path) -> Result<PathBuf, String> {
    if program.contains('/') {
        let path = dir.join(program);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("the program `{}` does not exist", path.display()))
        };
    }
    if let Some(build) = cargo
        && let Some(cargo) = cargo_command()
    {
        return built(&cargo, build, dir);
    }
    let mut looked = Vec::new();
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(d) = exe.parent()
    {
        candidates.push(d.to_path_buf());
        if let Some(up) = d.parent() {
            candidates.push(up.to_path_buf());
        }
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        let t = PathBuf::from(t);
        candidates.push(t.join("release"));
        candidates.push(t.join("debug"));
    }
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    for ancestor in dir.ancestors() {
        candidates.push(ancestor.join("target/release"));
        candidates.push(ancestor.join("target/debug"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    for d in candidates {
        let path = d.join(program);
        if is_executable(&path) {
            return Ok(path);
        }
        looked.push(d.display().to_string());
    }
    Err(format!(
        "the program `{program}` was not found (looked beside the harness, in target/{{release,debug}} and on PATH){}",
        match cargo {
            Some(b) => format!(
                "; build it with `cargo build -p {} --bin {}`",
                b.package, b.bin
            ),
            None => String::new(),
        }
    ))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The cargo to build with, if there is one.
fn cargo_command() -> Option<PathBuf> {
    if let Some(c) = std::env::var_os("CARGO") {
        return Some(PathBuf::from(c));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("cargo"))
        .find(|p| is_executable(p))
}

/// Builds once per (folder, package, bin) in this process; later calls get the
/// first build's answer.
fn built(cargo: &Path, build: &CargoBuild, dir: &Path) -> Result<PathBuf, String> {
    type Cache = Mutex<HashMap<(PathBuf, String, String), Result<PathBuf, String>>>;
    static BUILT: OnceLock<Cache> = OnceLock::new();
    let key = (dir.to_path_buf(), build.package.clone(), build.bin.clone());
    // Held during the build: two runs wanting the same binary build it once.
    let mut cache = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(done) = cache.get(&key) {
        return done.clone();
    }
    let result = cargo_build(cargo, build, dir);
    cache.insert(key, result.clone());
    result
}

fn cargo_build(cargo: &Path, build: &CargoBuild, dir: &Path) -> Result<PathBuf, String> {
    let mut command = std::process::Command::new(cargo);
    command
        .current_dir(dir)
        .args([
            "build",
            "--quiet",
            "--message-format=json-render-diagnostics",
        ])
        .args(["-p", &build.package, "--bin", &build.bin]);
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    let what = format!("cargo build -p {} --bin {}", build.package, build.bin);
    let out = command
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("`{what}` could not run: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "`{what}` failed ({}):\n{}",
            out.status,
            stderr.trim_end()
        ));
    }
    // The last artifact of the bin target names the executable.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == build.bin.as_str())
        .filter_map(|v| v["executable"].as_str().map(PathBuf::from))
        .next_back()
        .ok_or_else(|| format!("`{what}` built no executable named `{}`", build.bin))
}
