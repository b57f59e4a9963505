//! The sandbox's byte quota: a volume of a chosen size inside the real one.
//!
//! The connector decides what to accept from the free space it is told, so the
//! quota must report exactly what writes can still consume. It is a counter kept
//! up to date by the operations passing through the faulty filesystem, and
//! recounted from the tree whenever a fault changes the tree behind its back.

use std::fs;
use std::path::Path;

/// Bytes allowed under the root and bytes in use there.
#[derive(Debug)]
pub(crate) struct Quota {
    limit: u64,
    used: u64,
}

impl Quota {
    /// A quota of `limit` bytes with `used` already taken.
    pub(crate) fn new(limit: u64, used: u64) -> Quota {
        Quota { limit, used }
    }

    /// The quota in bytes.
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes that writes can still consume.
    pub(crate) fn available(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }

    /// Reserves room for up to `want` bytes and returns how many fit. The
    /// reservation is taken before the write so concurrent writers can never
    /// together cross the quota; [`Quota::release`] returns what was not written.
    pub(crate) fn reserve(&mut self, want: usize) -> usize {
        let fit = self.available().min(want as u64);
        self.used += fit;
        // `fit <= want`, so it fits in a usize.
        fit as usize
    }

    /// Gives back `bytes` (a removed or truncated file, an unused reservation).
    pub(crate) fn release(&mut self, bytes: u64) {
        self.used = self.used.saturating_sub(bytes);
    }

    /// Replaces the running count with a fresh one from [`usage`].
    pub(crate) fn recount(&mut self, used: u64) {
        self.used = used;
    }
}

/// Total length of the regular files under `root`, recursively.
///
/// Directories and symlinks cost nothing, like empty files. Entries that vanish
/// or cannot be read while walking (the connector runs concurrently) are
/// skipped: the count is a snapshot, not a proof.
pub(crate) fn usage(root: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(root) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => usage(&entry.path()),
            Ok(t) if t.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_stops_at_the_limit() {
        let mut q = Quota::new(10, 4);
        assert_eq!(q.available(), 6);
        assert_eq!(q.reserve(4), 4);
        assert_eq!(q.reserve(4), 2);
        assert_eq!(q.reserve(4), 0);
        assert_eq!(q.available(), 0);
        q.release(3);
        assert_eq!(q.available(), 3);
        q.recount(20);
        assert_eq!(q.available(), 0);
        assert_eq!(q.limit(), 10);
    }

    #[test]
    fn usage_sums_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        fs::write(dir.path().join("x"), b"12345").unwrap();
        fs::write(dir.path().join("a/b/y"), b"123").unwrap();
        fs::write(dir.path().join("a/empty"), b"").unwrap();
        assert_eq!(usage(dir.path()), 8);
    }
}
