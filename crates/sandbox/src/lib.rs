//! Sandboxed spool volumes.
