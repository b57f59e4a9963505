//! `imc-harness explore`: random fault schedules, checked by the invariants.
//!
//! A schedule is a sequence of [`Action`]s drawn by a proptest state machine
//! ([`Model`]): service control (start, stop, restart, crash, check_disk), SMTP
//! sessions `a`, `b` and `c` (connect, each command, DATA in parts or whole,
//! disconnect) and every fault of the sandbox (remove, rename, replace and restore
//! `imcdata/in` or `imcdata/work`, fill the disk, free it, an errno on the nth
//! matching operation, clear the errnos), and tree faults and crashes timed by
//! an operation ([`TimedFault`], `when: { before_op | after_op }`). The model's preconditions keep a schedule
//! meaningful: session commands only on open sessions in command mode, `data` and
//! the dot only after a DATA, a restore only after a remove, rename or replace, a
//! start only while stopped. A schedule becomes an ordinary [`Scenario`](crate::scenario::Scenario) with no
//! `expect` ([`to_scenario`]) and is played by [`runner::run`](crate::runner::run): a case fails when an
//! invariant is violated (the runner checks them after every step and in the final
//! recovery) or the run cannot be made at all.
//!
//! Seeds: case `i` of a run with seed `S` draws its schedule from its own ChaCha
//! generator, seeded from `(S, i)` ([`case_seed`]), so a seed always gives the same
//! schedules whatever the number of threads or shards, and `--shard K/N` runs the
//! cases `i` with `i mod N == K`.
//!
//! A failing case is shrunk ([`shrink`]): cut after its violation, then chunks
//! removed delta-debugging style (halves, quarters, ... single actions, each
//! followed by [`repair`], which drops the actions whose precondition broke),
//! whole sessions, pairs, simpler forms of each action, until no single change
//! keeps the same invariant violated. The time budget covers shrinking too
//! (read on a [`Clock`] that tests replace). The minimal schedule is
//! written as a scenario ([`reproducer`]).
//!
//! The files, by concern: `model` (actions, the state machine, case seeds),
//! `translate` (a schedule as a scenario), `parallel` (one run's outcome, worker
//! threads, the progress bar; `enumerate` uses them too), `shrink`, `reproducer`
//! (writing and re-checking scenario files), `cases` (the exploration of a shard)
//! and `report` (findings and the summary).

mod cases;
mod model;
mod parallel;
mod report;
mod reproducer;
mod shrink;
mod translate;

pub use cases::*;
pub use model::*;
pub use parallel::*;
pub use report::*;
pub use reproducer::*;
pub use shrink::*;
pub use translate::*;
