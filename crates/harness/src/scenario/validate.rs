//! The rules a scenario must follow beyond its types, and session inheritance.

use super::error::{At, Diagnostic};
use super::load::suggest;
use super::locate::{Seg, Target, Tree};
use super::model::{Backend, ErrnoSpec, Expect, Fault, Scenario, ServiceAction, Step, When};
use std::collections::BTreeMap;
use std::path::Path;

/// The connector profiles a scenario may name.
pub const PROFILES: [&str; 2] = ["exchange-4.0", "hardened"];

/// The errno names an `errno` fault may inject.
pub const ERRNOS: [&str; 11] = [
    "ENOSPC", "EIO", "ENOENT", "EACCES", "EPERM", "EROFS", "ENOTDIR", "EISDIR", "EEXIST", "EDQUOT",
    "ENOMEM",
];

/// A broken rule: what, where (a path into the document) and a hint.
#[derive(Debug)]
pub(crate) struct Problem {
    path: Vec<Seg>,
    target: Target,
    message: String,
    label: Option<String>,
    help: Option<String>,
    step: Option<usize>,
}

impl Problem {
    pub(super) fn new(path: Vec<Seg>, target: Target, message: impl Into<String>) -> Problem {
        Problem {
            path,
            target,
            message: message.into(),
            label: None,
            help: None,
            step: None,
        }
    }

    pub(super) fn label(mut self, label: impl Into<String>) -> Problem {
        self.label = Some(label.into());
        self
    }

    pub(super) fn help(mut self, help: impl Into<String>) -> Problem {
        self.help = Some(help.into());
        self
    }

    pub(crate) fn into_diagnostic(self, tree: &Tree, source: &str, path: &Path) -> Diagnostic {
        let mut d = Diagnostic::new(path, self.message);
        d.label = self.label;
        d.help = self.help;
        d.step = self.step;
        d.at = tree
            .find(&self.path, self.target)
            .map(|pos| At::new(source, pos.line, pos.column, pos.len));
        d
    }
}

/// Builds paths: `at!["steps", 3, "fault"]`.
macro_rules! at {
    ($($seg:expr),* $(,)?) => { vec![$(Seg::from($seg)),*] };
}

fn ticked(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks every rule, resolves session inheritance; stops at the first broken rule.
pub(crate) fn check(scenario: &mut Scenario, tree: &Tree) -> Result<(), Problem> {
    if scenario.claims.is_empty() {
        return Err(Problem::new(
            at!["claims"],
            Target::Value,
            "`claims` is empty: name at least one documented claim the scenario checks",
        )
        .label("no claim")
        .help("for example `claims: [KB-3]`"));
    }
    for (i, claim) in scenario.claims.iter().enumerate() {
        if claim.trim().is_empty() {
            return Err(Problem::new(
                at!["claims", i],
                Target::Value,
                format!("claim {} is empty", i + 1),
            ));
        }
        check_claim(i, claim)?;
    }
    for (i, tag) in scenario.tags.iter().enumerate() {
        if tag.trim().is_empty() {
            return Err(Problem::new(
                at!["tags", i],
                Target::Value,
                format!("tag {} is empty", i + 1),
            ));
        }
    }
    if !PROFILES.contains(&scenario.profile.as_str()) {
        let mut p = Problem::new(
            at!["profile"],
            Target::Value,
            format!(
                "unknown profile `{}`, expected one of {}",
                scenario.profile,
                ticked(&PROFILES)
            ),
        )
        .label("unknown profile");
        if let Some(s) = suggest(&scenario.profile, &PROFILES) {
            p = p.help(format!("did you mean `{s}`?"));
        }
        return Err(p);
    }
    if let Some(name) = &scenario.target {
        use crate::target::choice;
        let dir = scenario.targets_dir.as_deref();
        if choice::is_path(name) {
            if !Path::new(name).is_file() {
                return Err(Problem::new(
                    at!["target"],
                    Target::Value,
                    format!("target file `{name}` does not exist"),
                )
                .label("no such file"));
            }
        } else if name != choice::IN_PROCESS && choice::file_of(name, dir).is_none() {
            let names = choice::names(dir);
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let mut p = Problem::new(at!["target"], Target::Value, choice::unknown(name, dir))
                .label("unknown target");
            if let Some(s) = suggest(name, &names) {
                p = p.help(format!("did you mean `{s}`?"));
            }
            return Err(p);
        }
        if name != choice::IN_PROCESS && scenario.sandbox.backend == super::model::Backend::Vfs {
            return Err(Problem::new(
                at!["target"],
                Target::Value,
                format!(
                    "target `{name}` runs as a process, and backend `vfs` (the default) \
                     faults only the in-process connector's own calls"
                ),
            )
            .label("needs a backend that faults a process")
            .help(
                "add `sandbox: { backend: fuse }` (every fault), or `tmpfs` (tree faults only)",
            ));
        }
    }
    if let Some(name) = &scenario.expect_violation {
        let names: Vec<&str> = crate::invariants::Invariant::ALL
            .iter()
            .map(|i| i.name())
            .collect();
        if !names.contains(&name.as_str()) {
            let mut p = Problem::new(
                at!["expect_violation"],
                Target::Value,
                format!(
                    "unknown invariant `{name}`, expected one of {}",
                    ticked(&names)
                ),
            )
            .label("unknown invariant");
            if let Some(s) = suggest(name, &names) {
                p = p.help(format!("did you mean `{s}`?"));
            }
            return Err(p);
        }
    }
    if let Some(name) = &scenario.connector.mutant {
        let names = crate::target::imc::mutant_names();
        if !names.contains(&name.as_str()) {
            let mut p = Problem::new(
                at!["connector", "mutant"],
                Target::Value,
                format!(
                    "unknown mutant `{name}`, expected one of {}",
                    ticked(&names)
                ),
            )
            .label("unknown mutant");
            if let Some(s) = suggest(name, &names) {
                p = p.help(format!("did you mean `{s}`?"));
            }
            return Err(p);
        }
    }
    if scenario.steps.is_empty() {
        return Err(Problem::new(
            at!["steps"],
            Target::Value,
            "`steps` is empty: a scenario needs at least one step",
        )
        .help("for example `steps: [{ service: start }]`"));
    }

    super::bounds::check_header(scenario)?;

    let mut sessions = Sessions::default();
    let connected: Vec<String> = scenario
        .steps
        .iter()
        .filter_map(|s| s.connect.clone())
        .collect();
    let backend = scenario.sandbox.backend;
    for (i, step) in scenario.steps.iter_mut().enumerate() {
        check_step(i, step, &mut sessions, tree)
            .and_then(|()| check_when_session(i, step, &connected))
            .and_then(|()| check_mount_only(i, step, backend))
            .map_err(|mut p| {
                p.step = Some(i + 1);
                p.message = match (step.action(), &step.expect) {
                    (Some(action), _) => format!("step {} (`{action}`): {}", i + 1, p.message),
                    (None, Some(_)) => format!("step {} (check): {}", i + 1, p.message),
                    (None, None) => format!("step {}: {}", i + 1, p.message),
                };
                p
            })?;
    }
    Ok(())
}

/// A claim must be registered (`scenarios/claims.yaml`): a citation of a claim
/// nobody wrote down checks nothing a reader can look up.
fn check_claim(i: usize, claim: &str) -> Result<(), Problem> {
    let registry = crate::claims::registry();
    if registry.get(claim).is_some() {
        return Ok(());
    }
    let ids = registry.ids();
    let suggestion = ids
        .iter()
        .find(|id| id.eq_ignore_ascii_case(claim))
        .copied()
        .or_else(|| suggest(&claim.to_ascii_uppercase(), &ids));
    let help = match suggestion {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!(
            "registered claims are listed in scenarios/{} (`imc-harness claims` \
             prints them); put a free-form label in `tags:` instead",
            crate::claims::REGISTRY_FILE
        ),
    };
    Err(Problem::new(
        at!["claims", i],
        Target::Value,
        format!("unknown claim `{claim}`: it is not in the claims registry"),
    )
    .label("unknown claim")
    .help(help))
}

/// A `when:` must name a session the scenario connects (before or after the
/// step that arms it): a fault waiting on a session that never exists would
/// never fire, and the scenario would test nothing.
fn check_when_session(i: usize, step: &Step, connected: &[String]) -> Result<(), Problem> {
    let Some(name) = step.when.as_ref().and_then(|w| w.session.as_ref()) else {
        return Ok(());
    };
    if connected.contains(name) {
        return Ok(());
    }
    let known: Vec<&str> = connected.iter().map(String::as_str).collect();
    let p = Problem::new(
        at!["steps", i, "when", "session"],
        Target::Value,
        format!("`when` waits on session `{name}`, which the scenario never connects"),
    )
    .label("never connected");
    Err(match suggest(name, &known) {
        Some(s) => p.help(format!("did you mean `{s}`?")),
        None if known.is_empty() => p.help(format!(
            "connect it in a step (`- connect: {name}`): the fault fires on that session's protocol stage"
        )),
        None => p.help(format!("the scenario connects {}", ticked(&known))),
    })
}

/// `process` and the operation kinds only a process on a FUSE mount makes
/// need backend `fuse`. On `vfs` and `tmpfs` every operation is the
/// in-process connector's: it has no process name of its own (the harness's
/// depends on how the harness was started), and it makes only the `Fs`
/// trait's calls, so either would leave a rule that never strikes or a
/// trigger that never fires.
fn check_mount_only(i: usize, step: &Step, backend: Backend) -> Result<(), Problem> {
    if backend == Backend::Fuse {
        return Ok(());
    }
    let backend = match backend {
        Backend::Vfs => "vfs",
        Backend::Tmpfs => "tmpfs",
        Backend::Fuse => "fuse",
    };
    let mut matched = Vec::new();
    if let Some(Fault::Errno(spec)) = &step.fault {
        let base = at!["steps", i, "fault", "errno"];
        matched.push((spec.op.as_str(), spec.process.as_deref(), base));
    }
    if let Some(w) = &step.when
        && let Some((m, after)) = w.op_stage()
    {
        let stage = if after { "after_op" } else { "before_op" };
        matched.push((
            m.op.as_str(),
            m.process.as_deref(),
            at!["steps", i, "when", stage],
        ));
    }
    for (op, process, base) in matched {
        if process.is_some() {
            return Err(Problem::new(
                with(&base, "process"),
                Target::Key,
                format!(
                    "`process` needs backend `fuse`; on `{backend}` every operation is the \
                     in-process connector's, which has no process name to match"
                ),
            )
            .label(format!("backend `{backend}`"))
            .help(
                "set `sandbox: { backend: fuse }` to tell the processes using the volume \
                 apart, or remove `process`",
            ));
        }
        if let Ok(kind) = op.parse::<imc::fs::OpKind>()
            && !kind.in_fs()
        {
            let names: Vec<&str> = imc::fs::OpKind::FS.iter().map(|k| k.name()).collect();
            return Err(Problem::new(
                with(&base, "op"),
                Target::Value,
                format!(
                    "`{op}` is made only by a process on a FUSE mount, and backend \
                     `{backend}` has none: the in-process connector makes {} only",
                    ticked(&names)
                ),
            )
            .label(format!("never happens on `{backend}`"))
            .help("set `sandbox: { backend: fuse }`, or name one of the connector's operations"));
        }
    }
    Ok(())
}

/// Which sessions are open, and the one session actions default to.
#[derive(Default)]
struct Sessions {
    /// Session name -> `Ok(())` while open, `Err(n)` once disconnected at step n.
    state: BTreeMap<String, Result<(), usize>>,
    current: Option<String>,
}

fn check_step(
    i: usize,
    step: &mut Step,
    sessions: &mut Sessions,
    tree: &Tree,
) -> Result<(), Problem> {
    super::bounds::check_step(i, step)?;
    let actions = step.actions();
    if actions.is_empty() {
        // `command:` with nothing after it reads as no `command` at all: say so.
        let here = [Seg::from("steps"), Seg::from(i)];
        if let Some(action) = Step::ACTIONS.iter().find(|a| tree.is_null(&here, a)) {
            return Err(Problem::new(
                at!["steps", i, *action],
                Target::Key,
                format!("`{action}` has no value"),
            )
            .label("empty"));
        }
    }
    match actions.as_slice() {
        [] if step.expect.is_some() => {}
        [] => {
            return Err(Problem::new(
                at!["steps", i],
                Target::Value,
                format!(
                    "the step has no action, expected one of {}",
                    ticked(&Step::ACTIONS)
                ),
            )
            .label("no action")
            .help("a step does one action; a step with only `expect` is a check"));
        }
        [_] => {}
        [first, second, ..] => {
            return Err(Problem::new(
                at!["steps", i, *second],
                Target::Key,
                format!(
                    "the step has {} actions, {}; a step does exactly one",
                    actions.len(),
                    ticked(&actions)
                ),
            )
            .label(format!("second action, after `{first}`"))
            .help("split it into one step per action"));
        }
    }
    let action = actions.first().copied();

    let crash = step.service == Some(ServiceAction::Crash);
    if step.when.is_some() && action != Some("fault") && !crash {
        return Err(Problem::new(
            at!["steps", i, "when"],
            Target::Key,
            "`when` is only allowed on `fault` steps and `service: crash`",
        )
        .label("not a fault step"));
    }
    if let Some(when) = step
        .when
        .as_ref()
        .filter(|w| crash && w.op_stage().is_none())
    {
        let stage = [
            ("after_reply", when.after_reply.is_some()),
            ("after_data_bytes", when.after_data_bytes.is_some()),
            ("before_dot", when.before_dot.is_some()),
        ]
        .into_iter()
        .find_map(|(k, set)| set.then_some(k));
        let mut p = Problem::new(
            match stage {
                Some(k) => at!["steps", i, "when", k],
                None => at!["steps", i, "when"],
            },
            Target::Key,
            "a `service: crash` is timed by an operation only: `before_op` or `after_op`",
        )
        .label("not an operation stage");
        p = p.help("for example `when: { before_op: { op: sync_dir, path: imcdata/in } }`");
        return Err(p);
    }
    if step.session.is_some() && !step.is_session_action() {
        let mut p = Problem::new(
            at!["steps", i, "session"],
            Target::Key,
            format!(
                "`session` is only allowed on session actions ({})",
                ticked(&Step::SESSION_ACTIONS)
            ),
        )
        .label("not a session action");
        p = match action {
            Some("connect") => p.help("`connect` names its session itself: `connect: a`"),
            Some("disconnect") => p.help("`disconnect` names its session itself: `disconnect: a`"),
            Some("fault") => {
                p.help("to fire on a session's protocol stage, use `when: { session: a, ... }`")
            }
            _ => p,
        };
        return Err(p);
    }

    // Session bookkeeping and inheritance.
    if let Some(name) = &step.connect {
        check_name(name, at!["steps", i, "connect"])?;
        sessions.state.insert(name.clone(), Ok(()));
        sessions.current = Some(name.clone());
    }
    if let Some(name) = &step.disconnect {
        check_name(name, at!["steps", i, "disconnect"])?;
        match sessions.state.get(name) {
            Some(Ok(())) => {
                sessions.state.insert(name.clone(), Err(i + 1));
            }
            Some(Err(n)) => {
                return Err(Problem::new(
                    at!["steps", i, "disconnect"],
                    Target::Value,
                    format!("session `{name}` was already disconnected at step {n}"),
                )
                .label("not connected"));
            }
            None => {
                return Err(not_connected(name, at!["steps", i, "disconnect"], sessions));
            }
        }
    }
    if step.is_session_action() {
        let action = action.unwrap_or_default();
        let (name, where_) = match &step.session {
            Some(name) => {
                check_name(name, at!["steps", i, "session"])?;
                (name.clone(), at!["steps", i, "session"])
            }
            None => match &sessions.current {
                Some(name) => (name.clone(), at!["steps", i, action]),
                None => {
                    return Err(Problem::new(
                        at!["steps", i, action],
                        Target::Key,
                        format!("`{action}` needs a session, and none was connected before"),
                    )
                    .label("no session")
                    .help("connect one in an earlier step (`- connect: a`), or name it with `session:`"));
                }
            },
        };
        let target = if step.session.is_some() {
            Target::Value
        } else {
            Target::Key
        };
        match sessions.state.get(&name) {
            Some(Ok(())) => {}
            Some(Err(n)) => {
                let inherited = if step.session.is_none() {
                    " (the session of the previous session step)"
                } else {
                    ""
                };
                return Err(Problem::new(
                    where_,
                    target,
                    format!("session `{name}`{inherited} was disconnected at step {n}"),
                )
                .label("disconnected")
                .help(format!("connect it again first: `- connect: {name}`")));
            }
            None => {
                let mut p = not_connected(&name, where_, sessions);
                p.target = target;
                return Err(p);
            }
        }
        step.session = Some(name.clone());
        sessions.current = Some(name);
    }

    // The actions' own values.
    if step.dot == Some(false) {
        return Err(Problem::new(
            at!["steps", i, "dot"],
            Target::Value,
            "`dot` can only be `true` (send the terminating `.` line)",
        )
        .label("expected `true`"));
    }
    if step.pipeline.as_ref().is_some_and(Vec::is_empty) {
        return Err(Problem::new(
            at!["steps", i, "pipeline"],
            Target::Value,
            "`pipeline` is empty: give at least one command line",
        )
        .label("no command"));
    }
    if let Some(send) = &step.send
        && send.to.is_empty()
    {
        return Err(Problem::new(
            at!["steps", i, "send", "to"],
            Target::Value,
            "`send.to` is empty: give at least one recipient",
        )
        .label("no recipient"));
    }
    if let Some(fault) = &step.fault {
        check_fault(fault, at!["steps", i, "fault"])?;
    }
    if let Some(when) = &step.when {
        check_when(when, at!["steps", i, "when"])?;
    }
    if let Some(expect) = &step.expect {
        check_expect(expect, at!["steps", i, "expect"])?;
    }
    Ok(())
}

fn not_connected(name: &str, path: Vec<Seg>, sessions: &Sessions) -> Problem {
    let known: Vec<&str> = sessions.state.keys().map(String::as_str).collect();
    let mut p = Problem::new(
        path,
        Target::Value,
        format!("session `{name}` is not connected"),
    )
    .label("not connected");
    p = match suggest(name, &known) {
        Some(s) => p.help(format!(
            "did you mean `{s}`? Otherwise connect it in an earlier step: `- connect: {name}`"
        )),
        None => p.help(format!(
            "connect it in an earlier step: `- connect: {name}`"
        )),
    };
    p
}

fn check_name(name: &str, path: Vec<Seg>) -> Result<(), Problem> {
    if name.trim().is_empty() {
        return Err(
            Problem::new(path, Target::Value, "a session name cannot be empty").label("empty name"),
        );
    }
    Ok(())
}

fn with(path: &[Seg], seg: impl Into<Seg>) -> Vec<Seg> {
    let mut p = path.to_vec();
    p.push(seg.into());
    p
}

fn check_fault(fault: &Fault, path: Vec<Seg>) -> Result<(), Problem> {
    let name = fault.name();
    match fault {
        Fault::Remove(p) | Fault::Replace(p) | Fault::Restore(p) => {
            check_rel_path(p, with(&path, name), Target::Value)
        }
        Fault::Rename { from, to } => {
            let base = with(&path, name);
            check_rel_path(from, with(&base, "from"), Target::Value)?;
            check_rel_path(to, with(&base, "to"), Target::Value)
        }
        Fault::Errno(spec) => {
            check_errno(spec, with(&path, name))?;
            check_process(spec.process.as_deref(), &with(&path, name))
        }
        Fault::FillDisk { .. } | Fault::FreeDisk | Fault::ClearErrno => Ok(()),
    }
}

fn check_errno(spec: &ErrnoSpec, path: Vec<Seg>) -> Result<(), Problem> {
    check_op(&spec.op, with(&path, "op"))?;
    if !ERRNOS.contains(&spec.errno.as_str()) {
        let mut p = Problem::new(
            with(&path, "errno"),
            Target::Value,
            format!(
                "unknown errno `{}`, expected one of {}",
                spec.errno,
                ticked(&ERRNOS)
            ),
        )
        .label("unknown errno");
        let upper = spec.errno.to_ascii_uppercase();
        if let Some(s) = suggest(&upper, &ERRNOS) {
            p = p.help(format!("did you mean `{s}`?"));
        }
        return Err(p);
    }
    check_glob_and_nth(spec.path.as_deref(), spec.nth, &path)
}

/// An operation kind's name.
fn check_op(op: &str, path: Vec<Seg>) -> Result<(), Problem> {
    if op.parse::<sandbox::OpKind>().is_err() {
        let names: Vec<&str> = sandbox::OpKind::ALL.iter().map(|k| k.name()).collect();
        let mut p = Problem::new(
            path,
            Target::Value,
            format!(
                "unknown operation `{}`, expected one of {}",
                op,
                ticked(&names)
            ),
        )
        .label("unknown operation");
        if let Some(s) = suggest(op, &names) {
            p = p.help(format!("did you mean `{s}`?"));
        }
        return Err(p);
    }
    Ok(())
}

/// The longest process name the kernel keeps (`/proc/<pid>/comm`: 16 bytes
/// with the final NUL); a longer `process` could never match.
const COMM_LEN: usize = 15;

/// A process name (optional) under `path`: one a process can have.
fn check_process(process: Option<&str>, path: &[Seg]) -> Result<(), Problem> {
    let Some(name) = process else {
        return Ok(());
    };
    let problem = |message: String, label: &str| {
        Problem::new(with(path, "process"), Target::Value, message).label(label)
    };
    if name.is_empty() {
        return Err(problem(
            "`process` is empty: name the process as `/proc/PID/comm` shows it".into(),
            "empty name",
        )
        .help("for example `process: cat`"));
    }
    if name.contains(['/', '\n', '\0']) {
        return Err(problem(
            format!("`{name}` cannot be a process name: it holds a `/`, a newline or a NUL"),
            "not a process name",
        )
        .help(
            "a process is named by its program's file name, without its folder: `process: cat`",
        ));
    }
    if name.len() > COMM_LEN {
        let mut cut = COMM_LEN;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        return Err(problem(
            format!(
                "`{name}` is {} bytes long, and the kernel keeps only the first {COMM_LEN} \
                 of a process name (`/proc/PID/comm`), so it could never match",
                name.len()
            ),
            "longer than 15 bytes",
        )
        .help(format!(
            "write the name as the kernel keeps it: `process: {}`",
            &name[..cut]
        )));
    }
    Ok(())
}

/// A path glob (optional) and an `nth` counting from 1 (optional), under `path`.
fn check_glob_and_nth(glob: Option<&str>, nth: Option<u32>, path: &[Seg]) -> Result<(), Problem> {
    if let Some(glob) = glob {
        check_rel_path(glob, with(path, "path"), Target::Value)?;
        if let Err(e) = globset::Glob::new(glob) {
            return Err(Problem::new(
                with(path, "path"),
                Target::Value,
                format!("`{glob}` is not a valid glob: {}", e.kind()),
            )
            .label("invalid glob"));
        }
    }
    if nth == Some(0) {
        return Err(Problem::new(
            with(path, "nth"),
            Target::Value,
            "`nth` counts from 1: the first matching operation is `nth: 1`",
        )
        .label("expected 1 or more"));
    }
    Ok(())
}

fn check_when(when: &When, path: Vec<Seg>) -> Result<(), Problem> {
    let stages = [
        "after_reply",
        "after_data_bytes",
        "before_dot",
        "before_op",
        "after_op",
    ];
    let set: Vec<&str> = stages
        .into_iter()
        .zip([
            when.after_reply.is_some(),
            when.after_data_bytes.is_some(),
            when.before_dot.is_some(),
            when.before_op.is_some(),
            when.after_op.is_some(),
        ])
        .filter_map(|(s, is_set)| is_set.then_some(s))
        .collect();
    match set.as_slice() {
        [_] => {}
        [] => {
            return Err(Problem::new(
                path,
                Target::Value,
                format!("`when` must set one of {}, found none", ticked(&stages)),
            )
            .label("no stage")
            .help("for example `when: { session: a, after_reply: 354 }`"));
        }
        [_, second, ..] => {
            return Err(Problem::new(
                with(&path, *second),
                Target::Key,
                format!(
                    "`when` must set exactly one of {}, found {}",
                    ticked(&stages),
                    ticked(&set)
                ),
            )
            .label("second stage")
            .help("arm one fault per stage, in separate steps"));
        }
    }
    let (stage, on_op) = (set[0], when.op_stage());
    match (&when.session, on_op) {
        (Some(_), Some(_)) => {
            return Err(Problem::new(
                with(&path, "session"),
                Target::Key,
                format!("`session` does not go with `{stage}`: operations are the volume's, not a session's"),
            )
            .label("not a protocol stage")
            .help("remove `session`, or use a protocol stage: `after_reply`, `after_data_bytes`, `before_dot`"));
        }
        (None, None) => {
            return Err(Problem::new(
                path,
                Target::Value,
                format!("`{stage}` needs the session it watches: `session: NAME`"),
            )
            .label("no session")
            .help(format!(
                "for example `when: {{ session: a, {stage}: ... }}`"
            )));
        }
        (Some(name), None) => check_name(name, with(&path, "session"))?,
        (None, Some((m, _))) => {
            let base = with(&path, stage);
            check_op(&m.op, with(&base, "op"))?;
            check_glob_and_nth(m.path.as_deref(), m.nth, &base)?;
            check_process(m.process.as_deref(), &base)?;
        }
    }
    if let Some(code) = when.after_reply {
        check_reply_code(code, with(&path, "after_reply"))?;
    }
    if when.before_dot == Some(false) {
        return Err(Problem::new(
            with(&path, "before_dot"),
            Target::Value,
            "`before_dot` can only be `true`",
        )
        .label("expected `true`"));
    }
    Ok(())
}

/// The reply codes a server may send (RFC 5321 4.3.2: three digits, the first
/// between 2 and 5): an expectation or a `when` outside them can never be met.
pub const REPLY_CODES: std::ops::RangeInclusive<u16> = 200..=599;

fn check_reply_code(code: u16, path: Vec<Seg>) -> Result<(), Problem> {
    if REPLY_CODES.contains(&code) {
        return Ok(());
    }
    Err(Problem::new(
        path,
        Target::Value,
        format!("`{code}` is not an SMTP reply code: expected 200 to 599"),
    )
    .label("expected 200 to 599")
    .help("a reply code is three digits, the first 2 to 5 (RFC 5321 4.3.2): `250`, `354`, `421`"))
}

fn check_expect(expect: &Expect, path: Vec<Seg>) -> Result<(), Problem> {
    if let Some(code) = expect.code {
        check_reply_code(code, with(&path, "code"))?;
    }
    if let Some(enhanced) = &expect.enhanced
        && !is_enhanced_code(enhanced)
    {
        return Err(Problem::new(
                with(&path, "enhanced"),
                Target::Value,
                format!(
                    "`{enhanced}` is not an enhanced status code: expected class.subject.detail such as `4.3.1`"
                ),
            )
            .label("expected d.d.d"));
    }
    if let Some(re) = &expect.text_matches {
        check_regex(re, with(&path, "text_matches"))?;
    }
    if let Some(replies) = &expect.replies {
        for (j, reply) in replies.iter().enumerate() {
            check_expect(reply, with(&with(&path, "replies"), j))?;
        }
    }
    if let Some(events) = &expect.events {
        for (j, event) in events.iter().enumerate() {
            if let Some(re) = &event.message_matches {
                check_regex(
                    re,
                    with(&with(&with(&path, "events"), j), "message_matches"),
                )?;
            }
        }
    }
    if let Some(files) = &expect.files {
        for dir in files.keys() {
            check_rel_path(dir, with(&with(&path, "files"), dir.as_str()), Target::Key)?;
        }
    }
    for key in ["exists", "absent"] {
        let list = if key == "exists" {
            &expect.exists
        } else {
            &expect.absent
        };
        for (j, p) in list.iter().flatten().enumerate() {
            check_rel_path(p, with(&with(&path, key), j), Target::Value)?;
        }
    }
    Ok(())
}

/// `class.subject.detail`: class 2, 4 or 5; subject and detail of 1 to 3 digits.
fn is_enhanced_code(code: &str) -> bool {
    let parts: Vec<&str> = code.split('.').collect();
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && digits(parts[1], 3)
        && digits(parts[2], 3)
}

fn check_regex(re: &str, path: Vec<Seg>) -> Result<(), Problem> {
    match regex::Regex::new(re) {
        Ok(_) => Ok(()),
        Err(e) => {
            let detail = match &e {
                regex::Error::Syntax(text) => text
                    .lines()
                    .rev()
                    .find(|l| l.starts_with("error:"))
                    .map(|l| l.trim_start_matches("error:").trim().to_string())
                    .unwrap_or_else(|| text.clone()),
                other => other.to_string(),
            };
            Err(
                Problem::new(path, Target::Value, format!("invalid regular expression: {detail}"))
                    .label("does not compile")
                    .help("the syntax is that of the Rust `regex` crate; escape `.`, `(`, `[`... with `\\` to match them literally"),
            )
        }
    }
}

/// A path relative to the sandbox root: not empty, no leading `/`, no `..`, `/` separators.
fn check_rel_path(p: &str, path: Vec<Seg>, target: Target) -> Result<(), Problem> {
    let problem = |message: String, label: &str| {
        Problem::new(path.clone(), target, message)
            .label(label)
            .help("paths are relative to the sandbox root, such as `imcdata/in`")
    };
    if p.trim().is_empty() {
        return Err(problem("a path cannot be empty".into(), "empty path"));
    }
    if p.starts_with('/') {
        return Err(problem(
            format!("`{p}` is absolute: paths are relative to the sandbox root"),
            "absolute path",
        ));
    }
    if p.contains('\\') {
        return Err(problem(
            format!("`{p}` contains `\\`: separate path components with `/`"),
            "backslash",
        ));
    }
    if p.split('/').any(|c| c == "..") {
        return Err(problem(
            format!("`{p}` leaves the sandbox root: `..` is not allowed"),
            "`..` component",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_codes() {
        assert!(is_enhanced_code("4.3.1"));
        assert!(is_enhanced_code("2.0.0"));
        assert!(is_enhanced_code("5.5.100"));
        assert!(!is_enhanced_code("4.3"));
        assert!(!is_enhanced_code("3.1.1"));
        assert!(!is_enhanced_code("4.x.1"));
        assert!(!is_enhanced_code("4.3.1.2"));
        assert!(!is_enhanced_code("4..1"));
    }
}
