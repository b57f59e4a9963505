//! Schedules as scenarios: each action becomes an ordinary scenario step.

use super::*;
use crate::scenario::{
    Backend, ErrnoSpec, Fault, OpMatch, Scenario, ServiceAction, Size, Step, When,
};

/// What the schedules run against.
#[derive(Clone, Debug)]
pub struct Target {
    /// The connector profile.
    pub profile: String,
    /// The seeded defect, if any.
    pub mutant: Option<String>,
    /// The backend written into the scenario (`None`: the default, vfs).
    pub backend: Option<Backend>,
    /// The system under test written into the scenario (`None`: `imc`, in-process).
    pub target: Option<String>,
}

impl Target {
    /// An error naming what is wrong if the profile or the mutant is unknown.
    pub fn check(&self) -> Result<(), String> {
        crate::target::imc::check_profile(&self.profile)?;
        if let Some(m) = &self.mutant {
            crate::target::imc::check_mutant(m)?;
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
                process: None,
            })),
            Action::ClearErrno => fault_step(Fault::ClearErrno),
            Action::Timed(fault, timing) => {
                let m = OpMatch {
                    op: timing.op.name().to_string(),
                    path: (timing.path != "**").then(|| timing.path.to_string()),
                    nth: (timing.nth != 1).then_some(timing.nth),
                    process: None,
                };
                let when = Some(if timing.after {
                    When {
                        after_op: Some(m),
                        ..When::default()
                    }
                } else {
                    When {
                        before_op: Some(m),
                        ..When::default()
                    }
                });
                let mut step = match fault {
                    TimedFault::Remove(d) => fault_step(Fault::Remove(d.path().into())),
                    TimedFault::Rename(d) => fault_step(Fault::Rename {
                        from: d.path().into(),
                        to: format!("{}.bak", d.path()),
                    }),
                    TimedFault::Replace(d) => fault_step(Fault::Replace(d.path().into())),
                    TimedFault::FillDisk => fault_step(Fault::FillDisk { leave: Size(0) }),
                    TimedFault::Crash => service_step(ServiceAction::Crash),
                };
                step.when = when;
                step
            }
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
        target: target.target.clone(),
        targets_dir: None,
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
