//! The imc-harness library: scenarios, the runner, and the checks.
//!
//! A scenario (YAML, [`scenario`]) names a connector profile, a sandboxed volume
//! and a list of steps: service control, SMTP sessions driven command by command,
//! whole messages sent by a real client, faults applied to the sandbox for real
//! (now, or at a protocol stage of a session), and expectations. The [`runner`]
//! boots the `imc` connector in-process over the sandbox, plays the steps and
//! records one ordered [`history::History`]. The checks compare it with the
//! inline expectations ([`check`]) and with a stored snapshot ([`snapshot`]).
//! [`claims`] is the registry of documented claims a scenario may cite, and the
//! table of which scenarios check each. [`suite`] ties them together for `cargo test` and the `imc-harness` command.
//!
//! Data flows one way: scenario file -> [`scenario::Scenario`] -> [`runner::run`]
//! -> [`history::History`] -> checks.

pub mod check;
pub mod claims;
pub mod client;
pub mod enumerate;
pub mod explore;
pub mod history;
pub mod invariants;
pub mod profiles;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod send;
pub mod snapshot;
pub mod suite;
pub mod target;
