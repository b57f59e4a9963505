//! Translation between the connector's absolute paths and the scenario's
//! root-relative ones.
//!
//! Both directions are purely lexical: the sandbox never creates symlinks and the
//! connector cannot either (its `Fs` has no such call), so no path can escape the
//! root except through `..`, which is rejected.

use std::path::{Component, Path, PathBuf};

use crate::SandboxError;

/// A scenario path checked to lie strictly under the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RelPath {
    /// The absolute path inside the sandbox.
    pub(crate) abs: PathBuf,
    /// The normalized root-relative form (`a/b`, no `.`, no doubled `/`), used as
    /// the key for restores and in every description.
    pub(crate) rel: String,
}

/// Resolves a scenario path against `root`.
pub(crate) fn resolve(root: &Path, rel: &str) -> Result<RelPath, SandboxError> {
    let invalid = |reason| SandboxError::InvalidPath {
        path: rel.to_owned(),
        reason,
    };
    if rel.is_empty() {
        return Err(invalid("the path is empty"));
    }
    let mut parts = Vec::new();
    for component in Path::new(rel).components() {
        match component {
            Component::Normal(name) => parts.push(name.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(invalid(
                    "`..` is not allowed: scenario paths must stay under the sandbox root",
                ));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(invalid(
                    "absolute paths are not allowed: scenario paths are relative to the sandbox root",
                ));
            }
        }
    }
    if parts.is_empty() {
        return Err(invalid(
            "the path names the sandbox root itself, not something under it",
        ));
    }
    let rel = parts.join("/");
    Ok(RelPath {
        abs: root.join(&rel),
        rel,
    })
}

/// The root-relative form of an absolute path the connector passed in, or `None`
/// if it lies outside `root`. The root itself is `.` so that globs like `*` and
/// `**` can match it and the op log never shows an empty path.
pub(crate) fn relative(root: &Path, path: &Path) -> Option<String> {
    let rest = path.strip_prefix(root).ok()?;
    let mut parts = Vec::new();
    for component in rest.components() {
        match component {
            Component::Normal(name) => parts.push(name.to_string_lossy()),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_normalizes() {
        let root = Path::new("/r");
        let p = resolve(root, "./a//b/./c").unwrap();
        assert_eq!(p.rel, "a/b/c");
        assert_eq!(p.abs, Path::new("/r/a/b/c"));
    }

    #[test]
    fn resolve_rejects_escapes() {
        let root = Path::new("/r");
        for bad in ["", "/abs", "../x", "a/../../b", "a/..", ".", "./"] {
            let err = resolve(root, bad).unwrap_err();
            assert!(
                matches!(err, SandboxError::InvalidPath { ref path, .. } if path == bad),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn relative_contains() {
        let root = Path::new("/r/root");
        assert_eq!(relative(root, Path::new("/r/root")).as_deref(), Some("."));
        assert_eq!(
            relative(root, Path::new("/r/root/a/b")).as_deref(),
            Some("a/b")
        );
        assert_eq!(relative(root, Path::new("/r/root/../stash")), None);
        assert_eq!(relative(root, Path::new("/r/rootx")), None);
        assert_eq!(relative(root, Path::new("/r/stash")), None);
        assert_eq!(relative(root, Path::new("root/a")), None);
    }
}
