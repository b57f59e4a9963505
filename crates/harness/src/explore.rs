//! `imc-harness explore`: random fault schedules, checked by the invariants.
//!
//! A schedule is a sequence of [`Action`]s drawn by a proptest state machine
//! ([`Model`]): service control (start, stop, restart, crash, check_disk), SMTP
//! sessions `a`, `b` and `c` (connect, each command, DATA in parts or whole,
//! disconnect) and every fault of the sandbox (remove, rename, replace and restore
//! `imcdata/in` or `imcdata/work`, fill the disk, free it, an errno on the nth
//! matching operation, clear the errnos). The model's preconditions keep a schedule
//! meaningful: session commands only on open sessions in command mode, `data` and
//! the dot only after a DATA, a restore only after a remove, rename or replace, a
//! start only while stopped. A schedule becomes an ordinary [`Scenario`] with no
//! `expect` ([`to_scenario`]) and is played by [`runner::run`]: a case fails when an
//! invariant is violated (the runner checks them after every step and in the final
//! recovery) or the run cannot be made at all.
//!
//! Seeds: case `i` of a run with seed `S` draws its schedule from its own ChaCha
//! generator, seeded from `(S, i)` ([`case_seed`]), so a seed always gives the same
//! schedules whatever the number of threads or shards, and `--shard K/N` runs the
//! cases `i` with `i mod N == K`.
//!
//! A failing case is shrunk: first with proptest's own shrinking of the state
//! machine's value tree (deleting transitions from the back, then simplifying each
//! transition), then by deleting single actions and whole sessions until no single
//! deletion keeps the same invariant violated ([`shrink`]). The minimal schedule is
//! written as a scenario ([`reproducer`]).

use crate::history::History;
use crate::invariants::{Invariant, Violation};
use crate::runner::{self, RunOptions};
use crate::scenario::{self, Backend, ErrnoSpec, Fault, Scenario, ServiceAction, Size, Step};
use imc::fs::OpKind;
use proptest::strategy::{BoxedStrategy, Just, Strategy, Union, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use proptest_state_machine::ReferenceStateMachine;
use sandbox::Errno;
use std::collections::BTreeMap;
use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------

/// The sessions a schedule may open.
pub const SESSIONS: [&str; 3] = ["a", "b", "c"];

/// An SMTP command a schedule sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// `EHLO client.test`.
    Ehlo,
    /// `HELO client.test`.
    Helo,
    /// `MAIL FROM:<alice@example.org>`.
    Mail,
    /// `RCPT TO:<bob@example.net>`.
    Rcpt,
    /// `DATA`.
    Data,
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `QUIT`.
    Quit,
}

impl Command {
    /// Every command.
    pub const ALL: [Command; 8] = [
        Command::Ehlo,
        Command::Helo,
        Command::Mail,
        Command::Rcpt,
        Command::Data,
        Command::Rset,
        Command::Noop,
        Command::Quit,
    ];

    /// The command line sent.
    pub fn line(self) -> &'static str {
        match self {
            Command::Ehlo => "EHLO client.test",
            Command::Helo => "HELO client.test",
            Command::Mail => "MAIL FROM:<alice@example.org>",
            Command::Rcpt => "RCPT TO:<bob@example.net>",
            Command::Data => "DATA",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
        }
    }
}

/// The size and shape of message text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Body {
    /// A few lines.
    Short,
    /// Lines that start with dots (dot-stuffing).
    Dotted,
    /// About 100 KiB: more than one 64 KiB chunk, and more than a 64 KiB disk.
    Large,
    /// About 1.25 MiB: more than a 1 MiB disk.
    Huge,
}

/// A directory the faults act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// `imcdata/in`.
    In,
    /// `imcdata/work`.
    Work,
}

impl Dir {
    /// The path under the sandbox root.
    pub fn path(self) -> &'static str {
        match self {
            Dir::In => "imcdata/in",
            Dir::Work => "imcdata/work",
        }
    }

    fn index(self) -> usize {
        match self {
            Dir::In => 0,
            Dir::Work => 1,
        }
    }
}

/// An errno fault: the nth operation of a kind on a matching path fails.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ErrnoFault {
    /// The operation kind.
    pub op: OpKind,
    /// The path glob.
    pub path: &'static str,
    /// The error.
    pub errno: Errno,
    /// Which matching operation, from 1.
    pub nth: u32,
    /// Every matching operation from the nth on.
    pub persistent: bool,
}

/// One transition of a schedule; sessions are indexes into [`SESSIONS`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// `service: start`.
    Start,
    /// `service: stop`.
    Stop,
    /// `service: restart`.
    Restart,
    /// `service: crash`.
    Crash,
    /// `service: check_disk`.
    CheckDisk,
    /// `connect: NAME`.
    Connect(usize),
    /// `disconnect: NAME`.
    Disconnect(usize),
    /// `command: LINE`.
    Command(usize, Command),
    /// `data: TEXT` (a part of the message, no dot).
    Data(usize, Body),
    /// `dot: true`.
    Dot(usize),
    /// `message: TEXT` (the rest of the message and the dot).
    Message(usize, Body),
    /// `fault: { remove: DIR }`.
    Remove(Dir),
    /// `fault: { rename: { from: DIR, to: DIR.bak } }`.
    Rename(Dir),
    /// `fault: { replace: DIR }`.
    Replace(Dir),
    /// `fault: { restore: DIR }`.
    Restore(Dir),
    /// `fault: { fill_disk: { leave: BYTES } }`.
    FillDisk(u64),
    /// `fault: free_disk`.
    FreeDisk,
    /// `fault: { errno: ... }`.
    Errno(ErrnoFault),
    /// `fault: clear_errno`.
    ClearErrno,
}

impl Action {
    /// The session the action is on, if any.
    pub fn session(&self) -> Option<usize> {
        match self {
            Action::Connect(s)
            | Action::Disconnect(s)
            | Action::Command(s, _)
            | Action::Data(s, _)
            | Action::Dot(s)
            | Action::Message(s, _) => Some(*s),
            _ => None,
        }
    }

    fn with_session(&self, map: &[usize; 3]) -> Action {
        match self {
            Action::Connect(s) => Action::Connect(map[*s]),
            Action::Disconnect(s) => Action::Disconnect(map[*s]),
            Action::Command(s, c) => Action::Command(map[*s], *c),
            Action::Data(s, b) => Action::Data(map[*s], *b),
            Action::Dot(s) => Action::Dot(map[*s]),
            Action::Message(s, b) => Action::Message(map[*s], *b),
            other => other.clone(),
        }
    }
}

/// Where a session is, as far as the model can tell without the replies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// Not connected.
    #[default]
    Closed,
    /// Connected, no EHLO yet.
    Greeted,
    /// After EHLO (or RSET, or a finished message).
    Hello,
    /// After MAIL.
    Mail,
    /// After RCPT.
    Rcpt,
    /// After DATA: whatever is sent now may be message text, so no commands.
    DataOpen,
    /// Some message text was sent, not the dot.
    DataPart,
}

/// The model's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelState {
    /// The service was started and not stopped since.
    pub running: bool,
    /// Each session's phase.
    pub sessions: [Phase; 3],
    /// `imcdata/in` and `imcdata/work` removed, renamed or replaced and not restored.
    pub displaced: [bool; 2],
    /// The disk was filled and not freed.
    pub filled: bool,
    /// Errno faults installed since the last clear.
    pub errnos: u32,
}

impl ModelState {
    /// The action's precondition.
    pub fn allows(&self, action: &Action) -> bool {
        let phase = |s: usize| self.sessions[s];
        match action {
            Action::Start => !self.running,
            Action::Stop | Action::Restart | Action::Crash | Action::CheckDisk => self.running,
            Action::Connect(s) => self.running && phase(*s) == Phase::Closed,
            Action::Disconnect(s) => phase(*s) != Phase::Closed,
            Action::Command(s, _) => matches!(
                phase(*s),
                Phase::Greeted | Phase::Hello | Phase::Mail | Phase::Rcpt
            ),
            Action::Data(s, _) | Action::Message(s, _) => {
                matches!(phase(*s), Phase::DataOpen | Phase::DataPart)
            }
            Action::Dot(s) => phase(*s) == Phase::DataPart,
            Action::Remove(d) | Action::Rename(d) | Action::Replace(d) => {
                !self.displaced[d.index()]
            }
            Action::Restore(d) => self.displaced[d.index()],
            Action::FillDisk(_) | Action::Errno(_) => true,
            Action::FreeDisk => self.filled,
            Action::ClearErrno => self.errnos > 0,
        }
    }

    /// The state after the action (assuming the replies the schedule hopes for).
    pub fn apply(&mut self, action: &Action) {
        match action {
            Action::Start => self.running = true,
            Action::Stop | Action::Crash => {
                self.running = false;
                self.sessions = [Phase::Closed; 3];
            }
            Action::Restart => self.sessions = [Phase::Closed; 3],
            Action::CheckDisk => {}
            Action::Connect(s) => self.sessions[*s] = Phase::Greeted,
            Action::Disconnect(s) => self.sessions[*s] = Phase::Closed,
            Action::Command(s, c) => {
                let p = &mut self.sessions[*s];
                *p = match (c, *p) {
                    (Command::Ehlo | Command::Helo, _) => Phase::Hello,
                    (Command::Mail, Phase::Hello) => Phase::Mail,
                    (Command::Rcpt, Phase::Mail | Phase::Rcpt) => Phase::Rcpt,
                    (Command::Data, _) => Phase::DataOpen,
                    (Command::Rset, Phase::Mail | Phase::Rcpt) => Phase::Hello,
                    (Command::Quit, _) => Phase::Closed,
                    (_, p) => p,
                };
            }
            Action::Data(s, _) => self.sessions[*s] = Phase::DataPart,
            Action::Dot(s) | Action::Message(s, _) => self.sessions[*s] = Phase::Hello,
            Action::Remove(d) | Action::Rename(d) | Action::Replace(d) => {
                self.displaced[d.index()] = true
            }
            Action::Restore(d) => self.displaced[d.index()] = false,
            Action::FillDisk(_) => self.filled = true,
            Action::FreeDisk => self.filled = false,
            Action::Errno(_) => self.errnos += 1,
            Action::ClearErrno => self.errnos = 0,
        }
    }
}

/// True if every action's precondition holds in turn.
pub fn valid(actions: &[Action]) -> bool {
    let mut state = ModelState::default();
    for a in actions {
        if !state.allows(a) {
            return false;
        }
        state.apply(a);
    }
    true
}

/// The state machine proptest draws schedules from.
pub struct Model;

/// The errno names faults use.
pub const ERRNOS: [Errno; 4] = [Errno::Eio, Errno::Enospc, Errno::Enoent, Errno::Eacces];

/// The path globs an errno fault on `op` may use (the broadest first).
pub fn globs_for(op: OpKind) -> &'static [&'static str] {
    match op {
        OpKind::Create | OpKind::Write | OpKind::Sync | OpKind::Remove | OpKind::Rename => {
            &["**", "imcdata/in/*", "imcdata/work/*"]
        }
        OpKind::SyncDir | OpKind::CreateDir | OpKind::ReadDir => {
            &["**", "imcdata/in", "imcdata/work", "imcdata"]
        }
        OpKind::Metadata => &[
            "**",
            "imcdata/in",
            "imcdata/work",
            "imcdata/in/*",
            "imcdata/work/*",
        ],
        OpKind::AvailableSpace => &["**"],
    }
}

/// The errnos an errno fault on `op` may inject. Not ENOENT on `remove`: the
/// sandbox fails the call without touching the disk, so the file stays, while
/// ENOENT tells the connector it is already gone (which it may rightly believe).
pub fn errnos_for(op: OpKind) -> Vec<Errno> {
    ERRNOS.into_iter().filter(|&e| realistic(op, e)).collect()
}

/// False for an injected errno that says the call succeeded in effect (ENOENT
/// on `remove`): the sandbox leaves the disk untouched, so the connector would be
/// told something untrue.
pub fn realistic(op: OpKind, errno: Errno) -> bool {
    !(op == OpKind::Remove && errno == Errno::Enoent)
}

fn errno_strategy() -> BoxedStrategy<Action> {
    proptest::sample::select(OpKind::ALL.to_vec())
        .prop_flat_map(|op| {
            (
                Just(op),
                proptest::sample::select(globs_for(op).to_vec()),
                proptest::sample::select(errnos_for(op)),
                proptest::prop_oneof![4 => Just(1u32), 1 => 2..=4u32],
                proptest::prop_oneof![3 => Just(false), 1 => Just(true)],
            )
        })
        .prop_map(|(op, path, errno, nth, persistent)| {
            Action::Errno(ErrnoFault {
                op,
                path,
                errno,
                nth,
                persistent,
            })
        })
        .boxed()
}

fn body_strategy() -> BoxedStrategy<Body> {
    proptest::prop_oneof![
        12 => Just(Body::Short),
        3 => Just(Body::Dotted),
        2 => Just(Body::Large),
        1 => Just(Body::Huge),
    ]
    .boxed()
}

/// The weight of each command for a session in `phase`: the natural next one is
/// likely, any other possible.
fn command_weight(phase: Phase, c: Command) -> u32 {
    let natural = match phase {
        Phase::Greeted => Command::Ehlo,
        Phase::Hello => Command::Mail,
        Phase::Mail => Command::Rcpt,
        _ => Command::Data,
    };
    if c == natural {
        40
    } else if phase == Phase::Rcpt && c == Command::Rcpt {
        3
    } else {
        1
    }
}

impl ReferenceStateMachine for Model {
    type State = ModelState;
    type Transition = Action;

    fn init_state() -> BoxedStrategy<ModelState> {
        Just(ModelState::default()).boxed()
    }

    fn transitions(state: &ModelState) -> BoxedStrategy<Action> {
        let mut options: Vec<(u32, BoxedStrategy<Action>)> = Vec::new();
        let just = |options: &mut Vec<(u32, BoxedStrategy<Action>)>, w: u32, a: Action| {
            options.push((w, Just(a).boxed()))
        };
        // Service control.
        if state.running {
            just(&mut options, 1, Action::Stop);
            just(&mut options, 1, Action::Restart);
            just(&mut options, 2, Action::Crash);
            just(&mut options, 1, Action::CheckDisk);
        } else {
            just(&mut options, 40, Action::Start);
        }
        // Sessions.
        for s in 0..SESSIONS.len() {
            match state.sessions[s] {
                Phase::Closed => {
                    if state.running {
                        just(&mut options, [16, 3, 1][s], Action::Connect(s));
                    }
                }
                p @ (Phase::Greeted | Phase::Hello | Phase::Mail | Phase::Rcpt) => {
                    for c in Command::ALL {
                        just(&mut options, command_weight(p, c), Action::Command(s, c));
                    }
                    just(&mut options, 1, Action::Disconnect(s));
                }
                Phase::DataOpen | Phase::DataPart => {
                    let open = state.sessions[s] == Phase::DataOpen;
                    options.push((
                        if open { 24 } else { 4 },
                        body_strategy()
                            .prop_map(move |b| Action::Message(s, b))
                            .boxed(),
                    ));
                    options.push((
                        if open { 8 } else { 4 },
                        body_strategy()
                            .prop_map(move |b| Action::Data(s, b))
                            .boxed(),
                    ));
                    if !open {
                        options.push((16, Just(Action::Dot(s)).boxed()));
                    }
                    options.push((1, Just(Action::Disconnect(s)).boxed()));
                }
            }
        }
        // Faults.
        for d in [Dir::In, Dir::Work] {
            let w = if d == Dir::In { 2 } else { 1 };
            if state.displaced[d.index()] {
                options.push((6, Just(Action::Restore(d)).boxed()));
            } else {
                options.push((w, Just(Action::Remove(d)).boxed()));
                options.push((w, Just(Action::Rename(d)).boxed()));
                options.push((w, Just(Action::Replace(d)).boxed()));
            }
        }
        options.push((
            3,
            proptest::sample::select(vec![0u64, 64 << 10, 1 << 20])
                .prop_map(Action::FillDisk)
                .boxed(),
        ));
        if state.filled {
            options.push((4, Just(Action::FreeDisk).boxed()));
        }
        options.push((6, errno_strategy()));
        if state.errnos > 0 {
            options.push((2, Just(Action::ClearErrno).boxed()));
        }
        Union::new_weighted(options).boxed()
    }

    fn apply(mut state: ModelState, transition: &Action) -> ModelState {
        state.apply(transition);
        state
    }

    fn preconditions(state: &ModelState, transition: &Action) -> bool {
        state.allows(transition)
    }
}

/// The value tree of one case: a schedule proptest can shrink.
pub type CaseTree = <proptest_state_machine::Sequential<
    ModelState,
    Action,
    BoxedStrategy<ModelState>,
    BoxedStrategy<Action>,
> as Strategy>::Tree;

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The 32-byte ChaCha seed of case `index` of a run seeded with `seed`.
pub fn case_seed(seed: u64, index: u64) -> [u8; 32] {
    let mut state = seed;
    let a = splitmix64(&mut state);
    let mut state = a ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        chunk.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    out
}

/// The value tree of case `index` (schedules of 1 to `max_steps` actions).
pub fn case_tree(seed: u64, index: u64, max_steps: usize) -> CaseTree {
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &case_seed(seed, index));
    let config = Config {
        cases: 1,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, rng);
    Model::sequential_strategy(1..=max_steps.max(1))
        .new_tree(&mut runner)
        .expect("the model always has a transition")
}

/// The schedule of case `index`.
pub fn schedule(seed: u64, index: u64, max_steps: usize) -> Vec<Action> {
    case_tree(seed, index, max_steps).current().1
}

// ---------------------------------------------------------------------------
// Schedules as scenarios
// ---------------------------------------------------------------------------

/// What the schedules run against.
#[derive(Clone, Debug)]
pub struct Target {
    /// The connector profile.
    pub profile: String,
    /// The seeded defect, if any.
    pub mutant: Option<String>,
    /// The backend written into the scenario (`None`: the default, vfs).
    pub backend: Option<Backend>,
}

impl Target {
    /// An error naming what is wrong if the profile or the mutant is unknown.
    pub fn check(&self) -> Result<(), String> {
        imc::profile::by_name(&self.profile)?;
        if let Some(m) = &self.mutant {
            m.parse::<imc::Mutant>()?;
        }
        Ok(())
    }
}

fn message_text(n: usize, part: usize, body: Body, first: bool) -> String {
    let mut text = String::new();
    if first {
        text.push_str(&format!("Subject: explore {n}\n\n"));
    }
    match body {
        Body::Short => text.push_str(&format!("Message {n}, part {part}.\n")),
        Body::Dotted => text.push_str(&format!(".\n..\n.message {n}, part {part}\n")),
        Body::Large | Body::Huge => {
            let target = if body == Body::Large {
                100 << 10
            } else {
                1280 << 10
            };
            let mut line = 0;
            while text.len() < target {
                line += 1;
                text.push_str(&format!(
                    "message {n} part {part} line {line:05} {}\n",
                    "x".repeat(52)
                ));
            }
        }
    }
    text
}

fn session_step(s: usize) -> Step {
    Step {
        session: Some(SESSIONS[s].to_string()),
        ..Step::default()
    }
}

fn fault_step(fault: Fault) -> Step {
    Step {
        fault: Some(fault),
        ..Step::default()
    }
}

fn service_step(action: ServiceAction) -> Step {
    Step {
        service: Some(action),
        ..Step::default()
    }
}

/// The steps of a schedule (no `expect`: the invariants are the oracle). Every
/// session action names its session.
pub fn to_steps(actions: &[Action]) -> Vec<Step> {
    let mut messages = 0;
    // Per session: the current message number and its next part.
    let mut current: [Option<(usize, usize)>; 3] = [None; 3];
    let mut steps = Vec::with_capacity(actions.len());
    for action in actions {
        let step = match action {
            Action::Start => service_step(ServiceAction::Start),
            Action::Stop => service_step(ServiceAction::Stop),
            Action::Restart => service_step(ServiceAction::Restart),
            Action::Crash => service_step(ServiceAction::Crash),
            Action::CheckDisk => service_step(ServiceAction::CheckDisk),
            Action::Connect(s) => Step {
                connect: Some(SESSIONS[*s].to_string()),
                ..Step::default()
            },
            Action::Disconnect(s) => {
                current[*s] = None;
                Step {
                    disconnect: Some(SESSIONS[*s].to_string()),
                    ..Step::default()
                }
            }
            Action::Command(s, c) => {
                if *c == Command::Data {
                    current[*s] = None;
                }
                Step {
                    command: Some(c.line().to_string()),
                    ..session_step(*s)
                }
            }
            Action::Data(s, body) | Action::Message(s, body) => {
                let (n, part, first) = match current[*s] {
                    Some((n, part)) => (n, part, false),
                    None => {
                        messages += 1;
                        (messages, 1, true)
                    }
                };
                let text = message_text(n, part, *body, first);
                if matches!(action, Action::Data(..)) {
                    current[*s] = Some((n, part + 1));
                    Step {
                        data: Some(text),
                        ..session_step(*s)
                    }
                } else {
                    current[*s] = None;
                    Step {
                        message: Some(text),
                        ..session_step(*s)
                    }
                }
            }
            Action::Dot(s) => {
                current[*s] = None;
                Step {
                    dot: Some(true),
                    ..session_step(*s)
                }
            }
            Action::Remove(d) => fault_step(Fault::Remove(d.path().into())),
            Action::Rename(d) => fault_step(Fault::Rename {
                from: d.path().into(),
                to: format!("{}.bak", d.path()),
            }),
            Action::Replace(d) => fault_step(Fault::Replace(d.path().into())),
            Action::Restore(d) => fault_step(Fault::Restore(d.path().into())),
            Action::FillDisk(leave) => fault_step(Fault::FillDisk {
                leave: Size(*leave),
            }),
            Action::FreeDisk => fault_step(Fault::FreeDisk),
            Action::Errno(e) => fault_step(Fault::Errno(ErrnoSpec {
                op: e.op.name().to_string(),
                path: Some(e.path.to_string()),
                errno: e.errno.name().to_string(),
                nth: (e.nth != 1).then_some(e.nth),
                persistent: e.persistent,
            })),
            Action::ClearErrno => fault_step(Fault::ClearErrno),
        };
        steps.push(step);
    }
    steps
}

/// A schedule as a scenario that runs it against `target`.
pub fn to_scenario(actions: &[Action], target: &Target, name: &str) -> Scenario {
    let mut scenario = Scenario {
        name: Some(name.to_string()),
        description: None,
        claims: vec!["RFC5321-6.1".to_string()],
        profile: target.profile.clone(),
        sandbox: Default::default(),
        connector: Default::default(),
        steps: to_steps(actions),
        expect_violation: None,
        tags: Vec::new(),
    };
    scenario.connector.mutant = target.mutant.clone();
    if let Some(b) = target.backend {
        scenario.sandbox.backend = b;
    }
    scenario
}

// ---------------------------------------------------------------------------
// Running cases
// ---------------------------------------------------------------------------

/// What a failing run is: an invariant, or a run that could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// This invariant was violated.
    Invariant(Invariant),
    /// `runner::run` returned an error.
    RunError,
}

impl Kind {
    /// The invariant's name, or `run-error`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Invariant(i) => i.name(),
            Kind::RunError => "run-error",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one run gave.
#[derive(Debug)]
pub struct Outcome {
    /// The history (none when the run could not be made).
    pub history: Option<History>,
    /// The violations, in the order seen.
    pub violations: Vec<Violation>,
    /// Why the run could not be made.
    pub error: Option<String>,
    /// The connector's filesystem operations (empty when the run could not be made).
    pub ops: Vec<sandbox::OpRecord>,
    /// Steps that could not be played as written (a command on a session the
    /// server closed, a start that failed...): a scenario with any fails under
    /// `imc-harness run` whatever the invariants say.
    pub mismatches: Vec<runner::Mismatch>,
}

impl Outcome {
    /// The kinds of failure, each once, in the order first seen.
    pub fn kinds(&self) -> Vec<Kind> {
        let mut out = Vec::new();
        if self.error.is_some() {
            out.push(Kind::RunError);
        }
        for v in &self.violations {
            let k = Kind::Invariant(v.invariant);
            if !out.contains(&k) {
                out.push(k);
            }
        }
        out
    }

    /// True if the run failed in the way `kind` says.
    pub fn fails_with(&self, kind: Kind) -> bool {
        self.kinds().contains(&kind)
    }

    /// The first violation of `kind`, in words.
    pub fn describe(&self, kind: Kind) -> String {
        match kind {
            Kind::RunError => self.error.clone().unwrap_or_default(),
            Kind::Invariant(i) => self
                .violations
                .iter()
                .find(|v| v.invariant == i)
                .map(|v| match v.step {
                    Some(step) => format!("at step {step}: {}", v.message),
                    None => format!("in the final recovery: {}", v.message),
                })
                .unwrap_or_default(),
        }
    }
}

/// A current-thread runtime, as every run uses.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Runs a scenario on `rt`.
pub fn run_on(rt: &tokio::runtime::Runtime, scenario: &Scenario, options: &RunOptions) -> Outcome {
    match rt.block_on(runner::run(scenario, options)) {
        Ok(run) => Outcome {
            history: Some(run.history),
            violations: run.violations,
            error: None,
            ops: run.ops,
            mismatches: run.mismatches,
        },
        Err(e) => Outcome {
            history: None,
            violations: Vec::new(),
            error: Some(e.to_string()),
            ops: Vec::new(),
            mismatches: Vec::new(),
        },
    }
}

/// Runs `count` jobs on `threads` threads, each with its own runtime, in index
/// order as far as each thread goes. `job` returns `false` to stop the thread
/// from claiming more work; `skip` is asked before each index is claimed.
pub(crate) fn parallel<F, S>(count: usize, threads: usize, skip: S, job: F)
where
    F: Fn(&tokio::runtime::Runtime, usize) + Sync,
    S: Fn(usize) -> bool + Sync,
{
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                let rt = runtime();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= count || skip(i) {
                        break;
                    }
                    job(&rt, i);
                }
            });
        }
    });
}

// ---------------------------------------------------------------------------
// Progress
// ---------------------------------------------------------------------------

/// A progress bar on stderr when it is a terminal; silent otherwise.
pub struct Progress {
    bar: indicatif::ProgressBar,
    started: Instant,
}

impl Progress {
    /// A bar of `total` steps, shown only when `show` and stderr is a terminal.
    pub fn new(total: u64, unit: &str, show: bool) -> Progress {
        let bar = if show && std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total);
            let style = indicatif::ProgressStyle::with_template(&format!(
                "{{elapsed_precise}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{msg}}"
            ))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(8));
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        Progress {
            bar,
            started: Instant::now(),
        }
    }

    /// One more done.
    pub fn inc(&self) {
        self.bar.inc(1);
    }

    /// The text after the counts (after the rate per second).
    pub fn message(&self, text: String) {
        if self.bar.is_hidden() {
            return;
        }
        let rate = self.bar.position() as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        self.bar.set_message(format!("({rate:.0}/s) {text}"));
    }

    /// A line above the bar (stderr; printed only when the bar is shown).
    pub fn println(&self, text: &str) {
        if !self.bar.is_hidden() {
            self.bar.println(text);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

// ---------------------------------------------------------------------------
// Shrinking
// ---------------------------------------------------------------------------

/// Limits of a shrink.
#[derive(Clone, Debug)]
pub struct ShrinkLimits {
    /// Most runs.
    pub runs: usize,
    /// Most time.
    pub time: Duration,
}

impl Default for ShrinkLimits {
    fn default() -> Self {
        ShrinkLimits {
            runs: 2000,
            time: Duration::from_secs(300),
        }
    }
}

/// A shrunk schedule.
#[derive(Debug)]
pub struct Shrunk {
    /// The minimal schedule.
    pub actions: Vec<Action>,
    /// Its outcome.
    pub outcome: Outcome,
    /// Runs made while shrinking.
    pub runs: usize,
    /// True if a limit stopped the shrink before it was done.
    pub cut_short: bool,
}

/// Shrinks case `index` of `seed`, which failed with `kind` after `seen` steps
/// (the step of its first violation of `kind`; `None` for the final recovery):
/// proptest's shrinking of the value tree, then deletions of single actions and
/// whole sessions (keeping the model's preconditions) and session renaming, until
/// no single deletion keeps `kind`.
#[allow(clippy::too_many_arguments)]
pub fn shrink(
    rt: &tokio::runtime::Runtime,
    seed: u64,
    index: u64,
    max_steps: usize,
    target: &Target,
    options: &RunOptions,
    kind: Kind,
    seen: Option<usize>,
    limits: &ShrinkLimits,
    mut on_progress: impl FnMut(usize, usize),
) -> Shrunk {
    let started = Instant::now();
    let mut runs = 0usize;
    let mut cut_short = false;
    let mut tree = case_tree(seed, index, max_steps);
    let (_, first, counter) = tree.current();
    let mut best = first.clone();
    let mut best_outcome: Option<Outcome> = None;
    // Mismatches of the best schedule so far: a candidate may not have more, so
    // that the reproducer ends up playing as written.
    let bound = std::cell::Cell::new(usize::MAX);
    let attempt = |actions: &[Action], runs: &mut usize| -> Option<Outcome> {
        if actions.is_empty() {
            return None; // a scenario has at least one step
        }
        // A deletion is kept only if the failure shows twice in a row: a racy
        // failure must not steer the shrink.
        let scenario = to_scenario(actions, target, "shrink");
        *runs += 1;
        let o = run_on(rt, &scenario, options);
        if !o.fails_with(kind) || o.mismatches.len() > bound.get() {
            return None;
        }
        *runs += 1;
        if !run_on(rt, &scenario, options).fails_with(kind) {
            return None;
        }
        bound.set(o.mismatches.len());
        Some(o)
    };
    // Proptest: tell it how many transitions the failure needed, then let it shrink.
    if let Some(counter) = counter {
        counter.store(
            seen.unwrap_or(first.len()).min(first.len()),
            Ordering::SeqCst,
        );
    }
    if tree.simplify() {
        loop {
            if runs >= limits.runs || started.elapsed() > limits.time {
                cut_short = true;
                break;
            }
            let candidate = tree.current().1;
            let more = match attempt(&candidate, &mut runs) {
                Some(o) => {
                    best = candidate;
                    best_outcome = Some(o);
                    on_progress(best.len(), runs);
                    tree.simplify()
                }
                None => tree.complicate(),
            };
            if !more {
                break;
            }
        }
    }
    // Our own passes, with the model's preconditions: whole sessions, single
    // actions, then pairs (a crash and the start after it, a fill and its free),
    // until no deletion keeps the failure.
    let mut pairs = false;
    loop {
        let mut candidates: Vec<Vec<Action>> = Vec::new();
        for s in 0..SESSIONS.len() {
            let without: Vec<Action> = best
                .iter()
                .filter(|a| a.session() != Some(s))
                .cloned()
                .collect();
            if without.len() < best.len() {
                candidates.push(without);
            }
        }
        for i in (0..best.len()).rev() {
            let mut without = best.clone();
            without.remove(i);
            candidates.push(without);
        }
        if pairs {
            for j in (0..best.len()).rev() {
                for i in (0..j).rev() {
                    let mut without = best.clone();
                    without.remove(j);
                    without.remove(i);
                    candidates.push(without);
                }
            }
        }
        let mut changed = false;
        for candidate in candidates {
            if !valid(&candidate) {
                continue;
            }
            if runs >= limits.runs || started.elapsed() > limits.time {
                cut_short = true;
                break;
            }
            if let Some(o) = attempt(&candidate, &mut runs) {
                best = candidate;
                best_outcome = Some(o);
                on_progress(best.len(), runs);
                changed = true;
                break;
            }
        }
        if cut_short {
            break;
        }
        if changed {
            pairs = false;
        } else if !pairs {
            pairs = true;
        } else {
            break;
        }
    }
    // Simpler forms of each action (EIO, `**`, the 1st, once; short bodies; an
    // empty disk), as long as the failure stays.
    if !cut_short {
        let mut i = 0;
        while i < best.len() {
            let mut replaced = false;
            for simpler in simpler_forms(&best[i]) {
                if runs >= limits.runs || started.elapsed() > limits.time {
                    cut_short = true;
                    break;
                }
                let mut candidate = best.clone();
                candidate[i] = simpler;
                if !valid(&candidate) {
                    continue;
                }
                if let Some(o) = attempt(&candidate, &mut runs) {
                    best = candidate;
                    best_outcome = Some(o);
                    replaced = true;
                    break;
                }
            }
            if !replaced {
                i += 1;
            }
        }
    }
    // Steps that cannot be played as written go, preconditions or not, as long as
    // the failure stays.
    while let Some(o) = &best_outcome {
        let mut improved = false;
        let mut steps: Vec<usize> = o.mismatches.iter().map(|m| m.step).collect();
        steps.dedup();
        for step in steps.into_iter().rev() {
            if step == 0 || step > best.len() || cut_short {
                continue;
            }
            let mut without = best.clone();
            without.remove(step - 1);
            let before = bound.get();
            bound.set(before.saturating_sub(1));
            if let Some(o) = attempt(&without, &mut runs) {
                best = without;
                best_outcome = Some(o);
                improved = true;
                break;
            }
            bound.set(before);
        }
        if !improved {
            break;
        }
    }
    // Sessions named in the order they are first used: a, then b, then c.
    let mut map = [usize::MAX; 3];
    let mut next = 0;
    for a in &best {
        if let Some(s) = a.session() {
            if map[s] == usize::MAX {
                map[s] = next;
                next += 1;
            }
        }
    }
    for m in map.iter_mut() {
        if *m == usize::MAX {
            *m = next;
            next += 1;
        }
    }
    if map != [0, 1, 2] {
        let renamed: Vec<Action> = best.iter().map(|a| a.with_session(&map)).collect();
        if valid(&renamed) {
            if let Some(o) = attempt(&renamed, &mut runs) {
                best = renamed;
                best_outcome = Some(o);
            }
        }
    }
    let outcome = match best_outcome {
        Some(o) => o,
        None => {
            runs += 1;
            run_on(rt, &to_scenario(&best, target, "shrink"), options)
        }
    };
    Shrunk {
        actions: best,
        outcome,
        runs,
        cut_short,
    }
}

/// Simpler variants of an action, simplest first: one parameter at a time
/// moved to its simplest value.
fn simpler_forms(action: &Action) -> Vec<Action> {
    let mut out = Vec::new();
    match action {
        Action::Errno(e) => {
            let canon = ErrnoFault {
                op: e.op,
                path: "**",
                errno: Errno::Eio,
                nth: 1,
                persistent: false,
            };
            if *e != canon {
                out.push(Action::Errno(canon));
            }
            let mut push = |f: ErrnoFault| {
                if f != *e {
                    out.push(Action::Errno(f));
                }
            };
            push(ErrnoFault {
                errno: Errno::Eio,
                ..e.clone()
            });
            push(ErrnoFault {
                path: "**",
                ..e.clone()
            });
            push(ErrnoFault {
                nth: 1,
                ..e.clone()
            });
            push(ErrnoFault {
                persistent: false,
                ..e.clone()
            });
        }
        Action::Data(s, b) if *b != Body::Short => out.push(Action::Data(*s, Body::Short)),
        Action::Message(s, b) if *b != Body::Short => out.push(Action::Message(*s, Body::Short)),
        Action::FillDisk(leave) if *leave != 0 => out.push(Action::FillDisk(0)),
        Action::Restart => out.push(Action::Stop),
        _ => {}
    }
    out
}

// ---------------------------------------------------------------------------
// Reproducers
// ---------------------------------------------------------------------------

/// The claims a reproducer of a violation of `kind` checks.
pub fn claims_for(kind: Kind) -> Vec<String> {
    let claims: &[&str] = match kind {
        Kind::Invariant(Invariant::NoLoss) => &["RFC5321-4.1.1.4", "RFC5321-6.1"],
        Kind::Invariant(Invariant::NoPhantom) => &["RFC5321-4.2.5", "RFC5321-6.1"],
        Kind::Invariant(Invariant::NoPartial) => &["KB-6", "RFC5321-6.1"],
        Kind::Invariant(Invariant::Liveness) => &["RFC5321-4.5.3.2"],
        Kind::Invariant(Invariant::WellFormed) => &["RFC5321-4.2", "RFC5321-3.8"],
        Kind::Invariant(Invariant::Recovery) => &["KB-5"],
        Kind::Invariant(Invariant::Containment) => &["RFC5321-6.1"],
        Kind::RunError => &["RFC5321-6.1"],
    };
    claims.iter().map(|c| c.to_string()).collect()
}

/// A scenario file for a failing schedule: `expect_violation` is set for a
/// seeded defect (the scenario then documents the catch and passes while the
/// defect is there), left out for a real bug (the scenario fails until it is
/// fixed). `header` becomes comment lines at the top.
pub fn reproducer(mut scenario: Scenario, kind: Kind, header: &str) -> Result<String, String> {
    if scenario.connector.mutant.is_some() {
        if let Kind::Invariant(i) = kind {
            scenario.expect_violation = Some(i.name().to_string());
        }
    }
    let full = scenario.clone();
    // A session action's `session` is left out where it is inherited.
    let mut current: Option<String> = None;
    for step in &mut scenario.steps {
        if let Some(name) = &step.connect {
            current = Some(name.clone());
        } else if step.is_session_action() {
            if step.session == current {
                step.session = None;
            } else {
                current = step.session.clone();
            }
        }
    }
    let yaml = serde_saphyr::to_string(&scenario).map_err(|e| e.to_string())?;
    let mut text = String::new();
    for line in header.lines() {
        text.push_str(&format!("# {line}\n"));
    }
    // `expect_violation` (a top-level scalar, written last) goes before the steps.
    let expect_line = yaml
        .lines()
        .find(|l| l.starts_with("expect_violation:"))
        .map(str::to_string);
    for line in yaml.lines() {
        if Some(line) == expect_line.as_deref() {
            continue;
        }
        if line.starts_with("steps:") {
            if let Some(e) = &expect_line {
                text.push_str(e);
                text.push('\n');
            }
        }
        text.push_str(line);
        text.push('\n');
    }
    // The file must read back as the very scenario that failed.
    let back = scenario::parse(&text, Path::new("reproducer.yaml"))
        .map_err(|e| format!("the reproducer does not parse back: {e}"))?;
    let same = serde_saphyr::to_string(&back).map_err(|e| e.to_string())?
        == serde_saphyr::to_string(&full).map_err(|e| e.to_string())?;
    if !same {
        return Err("the reproducer parses back as a different scenario".into());
    }
    Ok(text)
}

/// Writes `text` to `path`, creating its folder.
pub fn write_file(path: &Path, text: &str) -> Result<(), String> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------
// Explore
// ---------------------------------------------------------------------------

/// Which part of the cases a process runs: case `i` is run by shard `i mod count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This shard, from 0.
    pub index: u64,
    /// How many shards.
    pub count: u64,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Shard, String> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not a shard: write K/N, as 0/2"))?;
        let index: u64 = k.trim().parse().map_err(|_| format!("bad shard `{s}`"))?;
        let count: u64 = n.trim().parse().map_err(|_| format!("bad shard `{s}`"))?;
        if count == 0 || index >= count {
            return Err(format!("shard `{s}`: K must be below N, and N at least 1"));
        }
        Ok(Shard { index, count })
    }
}

/// The cases of `shard` among `cases`: those `i` with `i mod count == index`.
pub fn shard_indices(cases: u64, shard: Shard) -> Vec<u64> {
    (0..cases)
        .filter(|i| i % shard.count == shard.index)
        .collect()
}

/// A case replayed: its index, its schedule and its history (none if the run
/// could not be made).
pub type Replayed = (u64, Vec<Action>, Option<History>);

/// Runs the cases of the shard (no shrinking) and returns each case's schedule
/// and history, in case order: what a replay of the same seed must give again,
/// byte for byte.
pub fn replay(options: &Options) -> Vec<Replayed> {
    let indices = shard_indices(options.cases, options.shard);
    let out: Mutex<Vec<Option<Replayed>>> = Mutex::new((0..indices.len()).map(|_| None).collect());
    parallel(
        indices.len(),
        options.threads,
        |_| false,
        |rt, slot| {
            let index = indices[slot];
            let actions = schedule(options.seed, index, options.max_steps);
            let outcome = run_on(
                rt,
                &to_scenario(&actions, &options.target, "explore"),
                &options.run,
            );
            out.lock().expect("lock")[slot] = Some((index, actions, outcome.history));
        },
    );
    out.into_inner()
        .expect("lock")
        .into_iter()
        .flatten()
        .collect()
}

/// Settings of an exploration.
#[derive(Clone, Debug)]
pub struct Options {
    /// What to run against.
    pub target: Target,
    /// Cases in the whole (unsharded) run.
    pub cases: u64,
    /// The seed.
    pub seed: u64,
    /// Longest schedule.
    pub max_steps: usize,
    /// Stop claiming cases after this long.
    pub time_budget: Option<Duration>,
    /// This process's part.
    pub shard: Shard,
    /// Worker threads.
    pub threads: usize,
    /// Run settings (backend override, reply timeout).
    pub run: RunOptions,
    /// Where to write the reproducer (`None`: the default path; see [`default_out`]).
    pub out: Option<PathBuf>,
    /// Do not write any reproducer.
    pub no_write: bool,
    /// Keep running after a failing case; shrink the first of each kind.
    pub keep_going: bool,
    /// Show a progress bar (when stderr is a terminal).
    pub progress: bool,
    /// Limits of each shrink.
    pub shrink: ShrinkLimits,
}

impl Options {
    /// The defaults for `target`: 256 cases, 30 steps, 2 threads, a 5 s reply timeout.
    pub fn new(target: Target, seed: u64) -> Options {
        Options {
            target,
            cases: 256,
            seed,
            max_steps: 30,
            time_budget: None,
            shard: Shard::default(),
            threads: 2,
            run: RunOptions {
                reply_timeout: Duration::from_secs(5),
                ..RunOptions::default()
            },
            out: None,
            no_write: false,
            keep_going: false,
            progress: false,
            shrink: ShrinkLimits::default(),
        }
    }
}

/// `scenarios/regressions/explore-<profile>[-<mutant>]-<seed>[-shardKofN].yaml`.
pub fn default_out(target: &Target, seed: u64, shard: Shard) -> PathBuf {
    let mut name = format!("explore-{}", target.profile);
    if let Some(m) = &target.mutant {
        name.push_str(&format!("-{m}"));
    }
    name.push_str(&format!("-{seed}"));
    if shard.count > 1 {
        name.push_str(&format!("-shard{}of{}", shard.index, shard.count));
    }
    PathBuf::from("scenarios/regressions").join(format!("{name}.yaml"))
}

/// A seed from the clock and the process id.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.write_u32(std::process::id());
    // Small enough to type.
    h.finish() % 1_000_000_000
}

/// A failing case, shrunk.
#[derive(Debug)]
pub struct Finding {
    /// The case index.
    pub case: u64,
    /// How it failed.
    pub kind: Kind,
    /// The first violation of that kind in the original case.
    pub message: String,
    /// Steps of the original schedule.
    pub steps_before: usize,
    /// Steps of the shrunk schedule.
    pub steps_after: usize,
    /// Runs the shrink made.
    pub shrink_runs: usize,
    /// The shrink stopped at a limit.
    pub cut_short: bool,
    /// The first violation of that kind in the shrunk schedule.
    pub shrunk_message: String,
    /// Steps of the shrunk schedule that do not play as written (none, normally).
    pub problems: Vec<String>,
    /// The reproducer's text.
    pub yaml: String,
    /// Where it was written (`None`: not written).
    pub path: Option<PathBuf>,
    /// The original case run again: how many of [`CONFIRM_RUNS`] runs failed the same way.
    pub confirmed: usize,
    /// The written file, loaded again and run [`RECHECK_RUNS`] times: how many failed the same way.
    pub rechecked: Option<usize>,
}

/// Runs of a failing case, again, before it is shrunk.
pub const CONFIRM_RUNS: usize = 3;

/// What an exploration did.
#[derive(Debug, Default)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// The shard run.
    pub shard: Shard,
    /// Cases this shard had to run.
    pub planned: u64,
    /// Cases run.
    pub ran: u64,
    /// Steps in the cases run.
    pub steps: u64,
    /// Time spent running cases (shrinking aside).
    pub elapsed: Duration,
    /// Time spent shrinking.
    pub shrink_elapsed: Duration,
    /// Why it stopped before the last case, if it did.
    pub stopped: Option<String>,
    /// Failing cases by kind.
    pub by_kind: BTreeMap<Kind, u64>,
    /// The index of the first failing case.
    pub first_failure: Option<u64>,
    /// The shrunk failures.
    pub findings: Vec<Finding>,
    /// The slowest case (index, time).
    pub slowest: Option<(u64, Duration)>,
}

impl Report {
    /// Schedules run per second (shrinking aside).
    pub fn rate(&self) -> f64 {
        self.ran as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            writeln!(
                f,
                "violation: {} (seed {}, case {})",
                finding.kind, self.seed, finding.case
            )?;
            writeln!(f, "  first seen {}", finding.message)?;
            if finding.confirmed < CONFIRM_RUNS {
                writeln!(
                    f,
                    "  the case failed that way again in only {} of {CONFIRM_RUNS} runs: the failure depends on timing",
                    finding.confirmed
                )?;
            }
            writeln!(
                f,
                "  shrunk from {} to {} steps in {} runs{}",
                finding.steps_before,
                finding.steps_after,
                finding.shrink_runs,
                if finding.cut_short {
                    " (stopped at the shrink limit)"
                } else {
                    ""
                }
            )?;
            writeln!(f, "  minimal schedule: {}", finding.shrunk_message)?;
            for p in &finding.problems {
                writeln!(f, "  warning: a step does not play as written: {p}")?;
            }
            match &finding.path {
                Some(p) => {
                    writeln!(f, "  reproducer: {}", p.display())?;
                    if let Some(n) = finding.rechecked {
                        writeln!(f, "  re-run from the file: {}", recheck_words(n))?;
                    }
                }
                None => writeln!(f, "  reproducer (not written):\n{}", finding.yaml)?,
            }
        }
        if let Some(why) = &self.stopped {
            writeln!(f, "stopped early: {why}")?;
        }
        let secs = self.elapsed.as_secs_f64();
        writeln!(
            f,
            "explored {} of {} cases (seed {}{}) in {secs:.1} s: {:.0} schedules/s, {:.1} steps per schedule{}",
            self.ran,
            self.planned,
            self.seed,
            if self.shard.count > 1 {
                format!(", shard {}/{}", self.shard.index, self.shard.count)
            } else {
                String::new()
            },
            self.rate(),
            self.steps as f64 / (self.ran.max(1)) as f64,
            if self.shrink_elapsed > Duration::ZERO {
                format!(
                    "; shrinking took {:.1} s",
                    self.shrink_elapsed.as_secs_f64()
                )
            } else {
                String::new()
            }
        )?;
        if let Some((case, t)) = self.slowest {
            writeln!(
                f,
                "slowest case: {case} ({:.0} ms)",
                t.as_secs_f64() * 1000.0
            )?;
        }
        if self.by_kind.is_empty() {
            writeln!(f, "violations: none")?;
        } else {
            let parts: Vec<String> = self
                .by_kind
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            writeln!(f, "violations (failing cases): {}", parts.join(", "))?;
        }
        Ok(())
    }
}

struct CaseFailure {
    kinds: Vec<Kind>,
    /// Per kind: its first message and the step it was seen at.
    first: Vec<(Kind, String, Option<usize>)>,
    steps: usize,
}

/// Runs the exploration: the cases of this shard on `options.threads` threads,
/// then the shrink of the first failing case (of each kind, with `keep_going`),
/// and writes the reproducers.
pub fn explore(options: &Options) -> Report {
    let indices = shard_indices(options.cases, options.shard);
    let progress = Progress::new(indices.len() as u64, "schedules", options.progress);
    let started = Instant::now();
    let deadline = options.time_budget.map(|b| started + b);
    let stop_at = AtomicU64::new(u64::MAX);
    let out_of_time = AtomicBool::new(false);
    let failures: Mutex<BTreeMap<u64, CaseFailure>> = Mutex::new(BTreeMap::new());
    let ran = AtomicU64::new(0);
    let steps = AtomicU64::new(0);
    let violations = AtomicU64::new(0);
    let slowest: Mutex<Option<(u64, Duration)>> = Mutex::new(None);
    parallel(
        indices.len(),
        options.threads,
        |slot| {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                out_of_time.store(true, Ordering::SeqCst);
                return true;
            }
            !options.keep_going && indices[slot] > stop_at.load(Ordering::SeqCst)
        },
        |rt, slot| {
            let index = indices[slot];
            let actions = schedule(options.seed, index, options.max_steps);
            let scenario = to_scenario(&actions, &options.target, "explore");
            let t = Instant::now();
            let outcome = run_on(rt, &scenario, &options.run);
            let took = t.elapsed();
            {
                let mut s = slowest.lock().expect("lock");
                if s.is_none_or(|(_, d)| took > d) {
                    *s = Some((index, took));
                }
            }
            ran.fetch_add(1, Ordering::SeqCst);
            steps.fetch_add(actions.len() as u64, Ordering::SeqCst);
            let kinds = outcome.kinds();
            if !kinds.is_empty() {
                violations.fetch_add(1, Ordering::SeqCst);
                stop_at.fetch_min(index, Ordering::SeqCst);
                let first = kinds
                    .iter()
                    .map(|&k| {
                        let step = match k {
                            Kind::Invariant(i) => outcome
                                .violations
                                .iter()
                                .find(|v| v.invariant == i)
                                .and_then(|v| v.step),
                            Kind::RunError => None,
                        };
                        (k, outcome.describe(k), step)
                    })
                    .collect();
                progress.println(&format!(
                    "case {index}: {} ({})",
                    kinds
                        .iter()
                        .map(|k| k.name())
                        .collect::<Vec<_>>()
                        .join(", "),
                    outcome.describe(kinds[0])
                ));
                failures.lock().expect("lock").insert(
                    index,
                    CaseFailure {
                        kinds,
                        first,
                        steps: actions.len(),
                    },
                );
            }
            progress.inc();
            progress.message(format!("{} violations", violations.load(Ordering::SeqCst)));
        },
    );
    progress.finish();
    let elapsed = started.elapsed();
    let failures = failures.into_inner().expect("lock");
    let mut report = Report {
        seed: options.seed,
        shard: options.shard,
        planned: indices.len() as u64,
        ran: ran.load(Ordering::SeqCst),
        steps: steps.load(Ordering::SeqCst),
        elapsed,
        slowest: slowest.into_inner().expect("lock"),
        ..Report::default()
    };
    // Without --keep-going, only the cases up to the first failure count (the
    // others may or may not have run, depending on the threads).
    let first_failure = failures.keys().next().copied();
    report.first_failure = first_failure;
    let counted: Vec<(&u64, &CaseFailure)> = failures
        .iter()
        .filter(|(i, _)| options.keep_going || Some(**i) == first_failure)
        .collect();
    for (_, failure) in &counted {
        for k in &failure.kinds {
            *report.by_kind.entry(*k).or_default() += 1;
        }
    }
    if out_of_time.load(Ordering::SeqCst) {
        report.stopped = Some(format!(
            "the time budget of {} s ran out",
            options.time_budget.unwrap_or_default().as_secs()
        ));
    } else if let (Some(i), false) = (first_failure, options.keep_going) {
        report.stopped = Some(format!("case {i} failed"));
        // Cases after the first failure that happened to run are not counted.
        report.ran = indices.iter().filter(|&&j| j <= i).count() as u64;
    }
    // Shrink the first failing case of each kind (just the first case without keep_going).
    let mut done: Vec<Kind> = Vec::new();
    let rt = runtime();
    let shrink_started = Instant::now();
    for &(&index, failure) in &counted {
        let Some((kind, message, seen)) = failure
            .first
            .iter()
            .find(|(k, _, _)| !done.contains(k))
            .cloned()
        else {
            continue;
        };
        done.push(kind);
        if options.progress && std::io::stderr().is_terminal() {
            eprintln!(
                "shrinking case {index} ({kind}, {} steps)...",
                failure.steps
            );
        }
        let original = to_scenario(
            &schedule(options.seed, index, options.max_steps),
            &options.target,
            "explore",
        );
        let confirmed = (0..CONFIRM_RUNS)
            .filter(|_| run_on(&rt, &original, &options.run).fails_with(kind))
            .count();
        let shrunk = shrink(
            &rt,
            options.seed,
            index,
            options.max_steps,
            &options.target,
            &options.run,
            kind,
            seen,
            &options.shrink,
            |_, _| {},
        );
        let scenario = to_scenario(
            &shrunk.actions,
            &options.target,
            &format!(
                "explore: {kind} with profile {}{} (seed {}, case {index})",
                options.target.profile,
                options
                    .target
                    .mutant
                    .as_ref()
                    .map(|m| format!(" and mutant {m}"))
                    .unwrap_or_default(),
                options.seed
            ),
        );
        let mut scenario = scenario;
        scenario.claims = claims_for(kind);
        let shrunk_message = shrunk.outcome.describe(kind);
        scenario.description = Some(describe_finding(options, kind, &shrunk_message));
        let header = header(options, index, failure.steps, shrunk.actions.len(), kind);
        let (yaml, path, rechecked) = match reproducer(scenario, kind, &header) {
            Err(e) => (format!("(cannot write the reproducer: {e})"), None, None),
            Ok(yaml) => {
                let mut path = options
                    .out
                    .clone()
                    .unwrap_or_else(|| default_out(&options.target, options.seed, options.shard));
                if !report.findings.is_empty() {
                    path = path.with_file_name(format!(
                        "{}-{}.yaml",
                        path.file_stem()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        kind.name()
                    ));
                }
                if options.no_write {
                    (yaml, None, None)
                } else {
                    match write_file(&path, &yaml) {
                        Ok(()) => {
                            let rechecked = recheck(&rt, &path, kind);
                            (yaml, Some(path), Some(rechecked))
                        }
                        Err(e) => (format!("{e}\n{yaml}"), None, None),
                    }
                }
            }
        };
        report.findings.push(Finding {
            case: index,
            kind,
            message,
            steps_before: failure.steps,
            steps_after: shrunk.actions.len(),
            shrink_runs: shrunk.runs,
            cut_short: shrunk.cut_short,
            shrunk_message,
            problems: shrunk
                .outcome
                .mismatches
                .iter()
                .map(|m| m.to_string())
                .collect(),
            yaml,
            path,
            confirmed,
            rechecked,
        });
    }
    report.shrink_elapsed = shrink_started.elapsed();
    report
}

/// Runs of a written reproducer when it is checked.
pub const RECHECK_RUNS: usize = 5;

/// Loads the written reproducer and runs it [`RECHECK_RUNS`] times with the
/// default run settings: how many runs failed with `kind` (0 if it does not load).
pub fn recheck(rt: &tokio::runtime::Runtime, path: &Path, kind: Kind) -> usize {
    match scenario::load(path) {
        Ok(s) => (0..RECHECK_RUNS)
            .filter(|_| run_on(rt, &s, &RunOptions::default()).fails_with(kind))
            .count(),
        Err(_) => 0,
    }
}

/// `fails the same way in 5 of 5 runs`, and a warning when not in all.
pub fn recheck_words(failed: usize) -> String {
    if failed == RECHECK_RUNS {
        format!("fails the same way in {failed} of {RECHECK_RUNS} runs")
    } else {
        format!(
            "fails the same way in only {failed} of {RECHECK_RUNS} runs: the failure depends on timing"
        )
    }
}

fn command_line(options: &Options) -> String {
    let mut line = format!("imc-harness explore --profile {}", options.target.profile);
    if let Some(m) = &options.target.mutant {
        line.push_str(&format!(" --mutant {m}"));
    }
    line.push_str(&format!(" --seed {}", options.seed));
    if options.max_steps != 30 {
        line.push_str(&format!(" --max-steps {}", options.max_steps));
    }
    if options.keep_going {
        line.push_str(" --keep-going");
    }
    line
}

fn header(options: &Options, index: u64, before: usize, after: usize, kind: Kind) -> String {
    format!(
        "Found by `{}` (case {index}), shrunk from {before} to {after} steps.\n\
         The invariant violated: {kind}.",
        command_line(options)
    )
}

fn describe_finding(options: &Options, kind: Kind, message: &str) -> String {
    let what = match &options.target.mutant {
        Some(m) => format!(
            "This schedule catches the seeded defect `{m}`: the invariant `{kind}` is violated \
             ({message}). The scenario expects that violation and fails if the invariant holds."
        ),
        None => format!(
            "The invariant `{kind}` is violated ({message}). This scenario fails until the \
             connector is fixed."
        ),
    };
    format!(
        "A minimal schedule found by `{}`. {what}",
        command_line(options)
    )
}
