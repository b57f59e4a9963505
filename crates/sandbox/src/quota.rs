//! The sandbox's quota: a volume of a chosen size inside the real one, charged
//! in whole blocks as a tmpfs charges whole pages.
//!
//! The connector decides what to accept from the free space it is told, so the
//! quota must report exactly what writes can still consume, and must agree with
//! the kernel so that a scenario sees the same figures on the `vfs` and `tmpfs`
//! backends. Measured on a real tmpfs (`size=1M`, 4 KiB pages): a 200-byte file
//! takes 4096 bytes of `statvfs` free space, a 4096-byte file 4096, a 4097-byte
//! file 8192; empty files and directories take nothing (not even with hundreds
//! of long-named entries); a write crossing the limit stores what fits in the
//! file's last page plus the remaining free pages, returns that short count,
//! and the next write fails with `ENOSPC`. This module models exactly that.
//!
//! The counter is kept up to date by the operations passing through the faulty
//! filesystem, and recounted from the tree whenever a fault changes the tree
//! behind its back.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The allocation unit, in bytes: a tmpfs page on the platforms the harness
/// runs on. Every regular file is charged its length rounded up to it.
pub const BLOCK: u64 = 4096;

/// What a regular file of `len` bytes is charged: its length rounded up to a
/// whole number of blocks.
pub(crate) fn charged(len: u64) -> u64 {
    len.div_ceil(BLOCK) * BLOCK
}

/// `bytes` rounded down to whole blocks.
pub(crate) fn whole_blocks(bytes: u64) -> u64 {
    bytes / BLOCK * BLOCK
}

/// Bytes allowed under the root and bytes charged there, both whole blocks.
#[derive(Debug)]
pub(crate) struct Quota {
    limit: u64,
    used: u64,
}

/// Room taken by [`Quota::reserve`] for one write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reservation {
    /// Bytes of the write that fit.
    pub(crate) fit: usize,
    /// Bytes of quota (whole blocks) taken for them.
    pub(crate) charged: u64,
}

impl Quota {
    /// A quota of `limit` bytes, rounded down to whole blocks, with `used`
    /// bytes (as counted by [`usage`]) already charged.
    pub(crate) fn new(limit: u64, used: u64) -> Quota {
        Quota {
            limit: whole_blocks(limit),
            used,
        }
    }

    /// The quota in bytes (whole blocks).
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes that writes can still be charged: the free blocks.
    pub(crate) fn available(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }

    /// Reserves room for appending up to `want` bytes to a file now `len`
    /// bytes long and returns how much fits: first the rest of the file's last
    /// block, which is already charged, then as many free blocks as needed and
    /// available. The blocks are taken before the write so concurrent writers
    /// can never together cross the quota; [`Quota::settle`] gives back what
    /// was not written.
    pub(crate) fn reserve(&mut self, len: u64, want: usize) -> Reservation {
        let slack = charged(len) - len;
        let want64 = want as u64;
        if want64 <= slack {
            return Reservation {
                fit: want,
                charged: 0,
            };
        }
        let needed = charged(want64 - slack);
        let taken = needed.min(whole_blocks(self.available()));
        self.used += taken;
        Reservation {
            // `min` with `want`, so it fits in a usize.
            fit: want64.min(slack + taken) as usize,
            charged: taken,
        }
    }

    /// Returns the part of `reservation` that a write of `written` bytes
    /// appended to a file of `len` bytes did not use.
    pub(crate) fn settle(&mut self, len: u64, reservation: Reservation, written: usize) {
        let used = charged(len + written as u64) - charged(len);
        self.release(reservation.charged.saturating_sub(used));
    }

    /// Gives back `bytes` (a removed or truncated file: pass [`charged`] of its length).
    pub(crate) fn release(&mut self, bytes: u64) {
        self.used = self.used.saturating_sub(bytes);
    }

    /// Replaces the running count with a fresh one from [`usage`].
    pub(crate) fn recount(&mut self, used: u64) {
        self.used = used;
    }
}

/// Bytes charged for the regular files under `root`, recursively: each file's
/// length rounded up to whole blocks.
///
/// Files still open after their last name is gone also take blocks until
/// closed; the faulty filesystem adds them (see `OpenInode`).
///
/// Directories, symlinks and empty files cost nothing (the connector cannot
/// make symlinks, so the long ones a tmpfs charges a page for never occur).
/// Entries that vanish or cannot be read while walking (the connector runs
/// concurrently) are skipped: the count is a snapshot, not a proof.
pub(crate) fn usage(root: &Path) -> u64 {
    let mut inodes = HashSet::new();
    usage_and_inodes(root, &mut inodes)
}

/// [`usage`], also collecting the inode numbers of the regular files counted.
pub(crate) fn usage_and_inodes(root: &Path, inodes: &mut HashSet<u64>) -> u64 {
    let Ok(entries) = fs::read_dir(root) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.filter_map(Result::ok) {
        match entry.file_type() {
            Ok(t) if t.is_dir() => total += usage_and_inodes(&entry.path(), inodes),
            Ok(t) if t.is_file() => {
                if let Ok(meta) = fs::symlink_metadata(entry.path()) {
                    // A file with two names (the crash model's hard links stay
                    // outside the root) is charged once, as by the kernel.
                    if inodes.insert(meta.ino()) {
                        total += charged(meta.len());
                    }
                }
            }
            _ => {}
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_charged_whole_blocks() {
        assert_eq!(charged(0), 0);
        assert_eq!(charged(1), BLOCK);
        assert_eq!(charged(200), BLOCK);
        assert_eq!(charged(BLOCK), BLOCK);
        assert_eq!(charged(BLOCK + 1), 2 * BLOCK);
        assert_eq!(whole_blocks(BLOCK - 1), 0);
        assert_eq!(whole_blocks(3 * BLOCK + 5), 3 * BLOCK);
    }

    #[test]
    fn the_limit_is_rounded_down() {
        assert_eq!(Quota::new(10_000, 0).limit(), 2 * BLOCK);
        assert_eq!(Quota::new(10_000, 0).available(), 2 * BLOCK);
        assert_eq!(Quota::new(BLOCK - 1, 0).available(), 0);
    }

    #[test]
    fn reserve_uses_the_last_block_then_free_blocks() {
        let mut q = Quota::new(4 * BLOCK, BLOCK);
        // A file of 200 bytes: 3896 bytes of its block are already paid for.
        let r = q.reserve(200, 100);
        assert_eq!(
            r,
            Reservation {
                fit: 100,
                charged: 0
            }
        );
        assert_eq!(q.available(), 3 * BLOCK);
        // Crossing into a new block takes a whole one.
        let r = q.reserve(200, 3897);
        assert_eq!(
            r,
            Reservation {
                fit: 3897,
                charged: BLOCK
            }
        );
        assert_eq!(q.available(), 2 * BLOCK);
        q.settle(200, r, 3897);
        assert_eq!(q.available(), 2 * BLOCK);
        // Asking for more than there is: the slack plus every free block.
        let r = q.reserve(BLOCK + 1, 100_000);
        assert_eq!(r.fit as u64, (BLOCK - 1) + 2 * BLOCK);
        assert_eq!(r.charged, 2 * BLOCK);
        assert_eq!(q.available(), 0);
        // A write that stored less gives the unused blocks back.
        q.settle(BLOCK + 1, r, 10);
        assert_eq!(q.available(), 2 * BLOCK);
        q.reserve(0, 2 * BLOCK as usize);
        // Full, and an empty or block-aligned file has no slack: nothing fits.
        assert_eq!(q.reserve(0, 1).fit, 0);
        assert_eq!(q.reserve(BLOCK, 1).fit, 0);
        assert_eq!(q.reserve(BLOCK - 1, 5).fit, 1);
        q.release(BLOCK);
        assert_eq!(q.available(), BLOCK);
        q.recount(20 * BLOCK);
        assert_eq!(q.available(), 0);
        assert_eq!(q.limit(), 4 * BLOCK);
    }

    #[test]
    fn usage_charges_regular_files_whole_blocks() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        fs::write(dir.path().join("x"), b"12345").unwrap();
        fs::write(dir.path().join("a/b/y"), vec![0; 4097]).unwrap();
        fs::write(dir.path().join("a/empty"), b"").unwrap();
        assert_eq!(usage(dir.path()), 3 * BLOCK);
    }
}
