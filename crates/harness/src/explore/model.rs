//! The model: the actions a schedule is made of, the state machine proptest
//! draws schedules from, and the seeds of the cases.

use proptest::strategy::{BoxedStrategy, Just, Strategy, Union, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use proptest_state_machine::ReferenceStateMachine;
use sandbox::Errno;
use sandbox::OpKind;

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

    pub(crate) fn index(self) -> usize {
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

/// A change of the tree, or a crash, timed by one of the connector's operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimedFault {
    /// Remove the directory.
    Remove(Dir),
    /// Rename it to `DIR.bak`.
    Rename(Dir),
    /// Replace it by a plain file.
    Replace(Dir),
    /// Fill the disk, 0 bytes left.
    FillDisk,
    /// Crash the connector's process.
    Crash,
}

/// When a [`TimedFault`] strikes: before or after the nth operation of a kind
/// on a path glob.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OpTiming {
    /// The operation kind.
    pub op: OpKind,
    /// The path glob.
    pub path: &'static str,
    /// Which matching operation, from 1.
    pub nth: u32,
    /// After the operation (else right before it).
    pub after: bool,
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
    /// A fault step (or `service: crash`) with `when: { before_op | after_op }`.
    Timed(TimedFault, OpTiming),
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

    pub(crate) fn with_session(&self, map: &[usize; 3]) -> Action {
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
    /// A crash timed by an operation was armed: whether and when it fired is
    /// the run's to say, so a start is allowed even while `running`.
    pub crash_armed: bool,
}

impl ModelState {
    /// The action's precondition.
    pub fn allows(&self, action: &Action) -> bool {
        let phase = |s: usize| self.sessions[s];
        match action {
            Action::Start => !self.running || self.crash_armed,
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
            Action::Timed(f, _) => match f {
                TimedFault::Remove(d) | TimedFault::Rename(d) | TimedFault::Replace(d) => {
                    !self.displaced[d.index()]
                }
                TimedFault::FillDisk | TimedFault::Crash => true,
            },
        }
    }

    /// The state after the action (assuming the replies the schedule hopes for).
    pub fn apply(&mut self, action: &Action) {
        match action {
            Action::Start => {
                self.running = true;
                self.crash_armed = false;
            }
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
            // As if it fires (as the schedule hopes for the replies).
            Action::Timed(f, _) => match f {
                TimedFault::Remove(d) | TimedFault::Rename(d) | TimedFault::Replace(d) => {
                    self.displaced[d.index()] = true
                }
                TimedFault::FillDisk => self.filled = true,
                TimedFault::Crash => self.crash_armed = true,
            },
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
        // Never drawn: the connector makes none of these (only a process on
        // a FUSE mount does).
        OpKind::Lookup
        | OpKind::Open
        | OpKind::Read
        | OpKind::Fstat
        | OpKind::Truncate
        | OpKind::Chmod
        | OpKind::Chown
        | OpKind::SetTimes
        | OpKind::Link
        | OpKind::Symlink
        | OpKind::ReadLink
        | OpKind::Mknod
        | OpKind::Access
        | OpKind::OpenDir
        | OpKind::Flush => &["**"],
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
    proptest::sample::select(OpKind::FS.to_vec())
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

/// Tree faults and crashes timed by an operation: any kind, its globs, the 1st
/// mostly, before mostly.
fn timed_strategy(state: &ModelState) -> BoxedStrategy<Action> {
    let mut faults = vec![TimedFault::FillDisk, TimedFault::Crash, TimedFault::Crash];
    for d in [Dir::In, Dir::Work] {
        if !state.displaced[d.index()] {
            faults.extend([
                TimedFault::Remove(d),
                TimedFault::Rename(d),
                TimedFault::Replace(d),
            ]);
        }
    }
    (
        proptest::sample::select(faults),
        proptest::sample::select(OpKind::FS.to_vec())
            .prop_flat_map(|op| (Just(op), proptest::sample::select(globs_for(op).to_vec()))),
        proptest::prop_oneof![4 => Just(1u32), 1 => 2..=3u32],
        proptest::prop_oneof![2 => Just(false), 1 => Just(true)],
    )
        .prop_map(|(fault, (op, path), nth, after)| {
            Action::Timed(
                fault,
                OpTiming {
                    op,
                    path,
                    nth,
                    after,
                },
            )
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
        options.push((5, timed_strategy(state)));
        if state.running && state.crash_armed {
            just(&mut options, 4, Action::Start);
        }
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
