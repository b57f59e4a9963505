//! Which target a name means: `imc` (the in-process connector, the default)
//! or a target file, `targets/<name>.yaml`.
//!
//! The `targets` folder is found as the `snapshots` folder is: the nearest
//! ancestor of the scenario file (or of the working directory) holding a folder
//! named `targets`. A name with a `/` or ending in `.yaml`/`.yml` is a path to
//! a target file.

use super::file::{self, Loaded};
use std::path::{Path, PathBuf};

/// The in-process connector's name, and the default target.
pub const IN_PROCESS: &str = "imc";

/// The folder of target files.
pub const TARGETS_DIR: &str = "targets";

/// What a target name means.
#[derive(Debug)]
pub enum Choice {
    /// The in-process connector ([`super::imc::ImcTarget`]).
    InProcess,
    /// A program described by a target file ([`super::process::ProcessTarget`]).
    Process(Box<Loaded>),
}

/// The nearest `targets` folder at or above `from` (a file or a folder).
pub fn targets_dir(from: &Path) -> Option<PathBuf> {
    let abs = std::path::absolute(from).unwrap_or_else(|_| from.to_path_buf());
    abs.ancestors()
        .map(|dir| dir.join(TARGETS_DIR))
        .find(|dir| dir.is_dir())
}

/// The `targets` folder for a run: `dir` when given, else the nearest one above
/// the working directory.
pub fn default_dir(dir: Option<&Path>) -> Option<PathBuf> {
    match dir {
        Some(d) => Some(d.to_path_buf()),
        None => std::env::current_dir().ok().and_then(|d| targets_dir(&d)),
    }
}

/// Every name a scenario may give: `imc`, then the stems of `dir`'s `*.yaml`
/// files, sorted.
pub fn names(dir: Option<&Path>) -> Vec<String> {
    let mut out: Vec<String> = dir
        .and_then(|d| std::fs::read_dir(d).ok())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    out.sort();
    out.insert(0, IN_PROCESS.to_string());
    out
}

/// Whether `name` is a path to a target file rather than a name.
pub fn is_path(name: &str) -> bool {
    name.contains('/') || name.ends_with(".yaml") || name.ends_with(".yml")
}

/// The target file `name` means in `dir`, if it is a target file's name.
pub fn file_of(name: &str, dir: Option<&Path>) -> Option<PathBuf> {
    if name == IN_PROCESS {
        return None;
    }
    if is_path(name) {
        return Some(PathBuf::from(name));
    }
    let dir = dir?;
    ["yaml", "yml"]
        .iter()
        .map(|x| dir.join(format!("{name}.{x}")))
        .find(|p| p.is_file())
}

/// What `name` means, loading its target file (a malformed one is an error
/// at its line and column); an unknown name is an error listing the known ones.
pub fn resolve(name: &str, dir: Option<&Path>) -> Result<Choice, String> {
    if name == IN_PROCESS {
        return Ok(Choice::InProcess);
    }
    match file_of(name, dir) {
        Some(path) => file::load(&path)
            .map(|l| Choice::Process(Box::new(l)))
            .map_err(|e| e.to_string()),
        None => Err(unknown(name, dir)),
    }
}

/// `unknown target `x``, the known names, and where they were looked for.
pub fn unknown(name: &str, dir: Option<&Path>) -> String {
    let known = names(dir)
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match dir {
        Some(d) => format!(
            "unknown target `{name}`: known targets are {known} (target files in {})",
            d.display()
        ),
        None => format!(
            "unknown target `{name}`: no `{TARGETS_DIR}` folder found, so the only target is `{IN_PROCESS}`"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_resolution() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../targets");
        let names = names(Some(&dir));
        assert_eq!(names[0], "imc");
        assert!(names.contains(&"imc-serve".to_string()), "{names:?}");
        assert!(matches!(resolve("imc", None), Ok(Choice::InProcess)));
        assert!(matches!(
            resolve("imc-serve", Some(&dir)),
            Ok(Choice::Process(l)) if l.name == "imc-serve"
        ));
        let e = resolve("imc-serv", Some(&dir)).unwrap_err();
        assert!(
            e.contains("unknown target `imc-serv`") && e.contains("`imc-serve`"),
            "{e}"
        );
        assert!(targets_dir(&dir.join("imc-serve.yaml")).is_some());
    }
}
