//! Shrinking a failing case down to a minimal schedule.

use super::*;
use crate::runner::RunOptions;
use sandbox::Errno;
use std::time::Duration;

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

/// The schedule left when every action whose precondition no longer holds is
/// dropped, in order: what a deletion leaves of the rest (the commands of a
/// session whose connect went, the start after a crash that went...).
pub fn repair(actions: &[Action]) -> Vec<Action> {
    let mut state = ModelState::default();
    actions
        .iter()
        .filter(|a| {
            let ok = state.allows(a);
            if ok {
                state.apply(a);
            }
            ok
        })
        .cloned()
        .collect()
}

/// Schedules this long or shorter also try every deletion of two actions.
const PAIRS_UP_TO: usize = 40;

/// Shrinks a schedule that failed with `kind` at step `seen` (the step of its
/// first violation of `kind`; `None` for the final recovery), within `limits`
/// as read on `clock`. The passes, each kept only where the same invariant is
/// still violated (twice in a row, so a racy failure does not steer it):
/// the prefix up to `seen`; chunks removed delta-debugging style (halves, then
/// quarters, ... then single actions, each deletion followed by [`repair`]);
/// whole sessions; pairs of actions (short schedules); simpler forms of each
/// action; steps that do not play as written; sessions renamed a, b, c in
/// order of use.
#[allow(clippy::too_many_arguments)]
pub fn shrink(
    rt: &tokio::runtime::Runtime,
    actions: Vec<Action>,
    target: &Target,
    options: &RunOptions,
    kind: Kind,
    seen: Option<usize>,
    limits: &ShrinkLimits,
    clock: &Clock,
    on_progress: impl FnMut(usize, usize),
) -> Shrunk {
    let deadline = clock.now().saturating_add(limits.time);
    let mut s = Shrinker {
        rt,
        target,
        options,
        kind,
        limits,
        clock,
        deadline,
        runs: 0,
        cut_short: false,
        best: actions,
        best_outcome: None,
        bound: usize::MAX,
        on_progress,
    };
    s.shrink(seen);
    let outcome = match s.best_outcome.take() {
        Some(o) => o,
        None => {
            s.runs += 1;
            run_on(rt, &to_scenario(&s.best, target, "shrink"), options)
        }
    };
    Shrunk {
        actions: s.best,
        outcome,
        runs: s.runs,
        cut_short: s.cut_short,
    }
}

struct Shrinker<'a, P> {
    rt: &'a tokio::runtime::Runtime,
    target: &'a Target,
    options: &'a RunOptions,
    kind: Kind,
    limits: &'a ShrinkLimits,
    clock: &'a Clock,
    deadline: Duration,
    runs: usize,
    cut_short: bool,
    best: Vec<Action>,
    best_outcome: Option<Outcome>,
    /// Mismatches of the best schedule so far: a candidate may not have more, so
    /// that the reproducer ends up playing as written.
    bound: usize,
    on_progress: P,
}

impl<P: FnMut(usize, usize)> Shrinker<'_, P> {
    /// True (and the shrink cut short) once a limit is reached; reads the clock
    /// once, so a ticking clock counts decisions.
    fn out_of_budget(&mut self) -> bool {
        if !self.cut_short && (self.runs >= self.limits.runs || self.clock.now() >= self.deadline) {
            self.cut_short = true;
        }
        self.cut_short
    }

    /// Runs `candidate` and keeps it as the best if it fails with the kind,
    /// twice in a row, with no more mismatches than the best.
    fn attempt(&mut self, candidate: Vec<Action>) -> bool {
        if candidate.is_empty() || candidate == self.best || self.out_of_budget() {
            return false; // a scenario has at least one step
        }
        let scenario = to_scenario(&candidate, self.target, "shrink");
        self.runs += 1;
        let o = run_on(self.rt, &scenario, self.options);
        if !o.fails_with(self.kind) || o.mismatches.len() > self.bound {
            return false;
        }
        self.runs += 1;
        if !run_on(self.rt, &scenario, self.options).fails_with(self.kind) {
            return false;
        }
        self.bound = o.mismatches.len();
        self.best = candidate;
        self.best_outcome = Some(o);
        (self.on_progress)(self.best.len(), self.runs);
        true
    }

    fn shrink(&mut self, seen: Option<usize>) {
        // What comes after the violation is seldom needed for it.
        if let Some(step) = seen.filter(|&s| s < self.best.len()) {
            let prefix = self.best[..step].to_vec();
            self.attempt(prefix);
        }
        self.chunks();
        self.deletions();
        self.simplify();
        self.drop_mismatched();
        self.rename_sessions();
    }

    /// Delta debugging: remove chunks of half the schedule, then quarters, and
    /// so on down to single actions, from the back; a chunk size is tried again
    /// as long as it removes something.
    fn chunks(&mut self) {
        let mut chunk = (self.best.len() / 2).max(1);
        while !self.cut_short && self.best.len() > 1 {
            let mut removed = false;
            let mut end = self.best.len();
            while end > 0 && !self.cut_short {
                let lo = end.saturating_sub(chunk);
                let mut candidate = self.best[..lo].to_vec();
                candidate.extend_from_slice(&self.best[end..]);
                let candidate = repair(&candidate);
                if candidate.len() < self.best.len() && self.attempt(candidate) {
                    removed = true;
                }
                // What precedes the chunk is unchanged by the repair.
                end = lo.min(self.best.len());
            }
            if !removed {
                if chunk == 1 {
                    break;
                }
                chunk = (chunk / 2).max(1);
            } else {
                chunk = chunk.min(self.best.len() / 2).max(1);
            }
        }
    }

    /// Whole sessions, single actions, then pairs (short schedules only), until
    /// no deletion keeps the failure.
    fn deletions(&mut self) {
        let mut pairs = false;
        while !self.cut_short {
            let best = &self.best;
            let mut candidates: Vec<Vec<Action>> = Vec::new();
            for s in 0..SESSIONS.len() {
                let without: Vec<Action> = best
                    .iter()
                    .filter(|a| a.session() != Some(s))
                    .cloned()
                    .collect();
                if without.len() < best.len() {
                    candidates.push(repair(&without));
                }
            }
            for i in (0..best.len()).rev() {
                let mut without = best.clone();
                without.remove(i);
                candidates.push(repair(&without));
            }
            if pairs && best.len() <= PAIRS_UP_TO {
                for j in (0..best.len()).rev() {
                    for i in (0..j).rev() {
                        let mut without = best.clone();
                        without.remove(j);
                        without.remove(i);
                        candidates.push(repair(&without));
                    }
                }
            }
            let mut changed = false;
            for candidate in candidates {
                if self.attempt(candidate) {
                    changed = true;
                    break;
                }
                if self.cut_short {
                    return;
                }
            }
            if changed {
                pairs = false;
            } else if !pairs && self.best.len() <= PAIRS_UP_TO {
                pairs = true;
            } else {
                break;
            }
        }
    }

    /// Simpler forms of each action (EIO, `**`, the 1st, once; short bodies; an
    /// empty disk), as long as the failure stays.
    fn simplify(&mut self) {
        let mut i = 0;
        while i < self.best.len() && !self.cut_short {
            let mut replaced = false;
            for simpler in simpler_forms(&self.best[i]) {
                let mut candidate = self.best.clone();
                candidate[i] = simpler;
                if valid(&candidate) && self.attempt(candidate) {
                    replaced = true;
                    break;
                }
                if self.cut_short {
                    return;
                }
            }
            if !replaced {
                i += 1;
            }
        }
    }

    /// Steps that cannot be played as written go, preconditions or not, as long
    /// as the failure stays.
    fn drop_mismatched(&mut self) {
        while let Some(o) = &self.best_outcome {
            let mut steps: Vec<usize> = o.mismatches.iter().map(|m| m.step).collect();
            steps.dedup();
            let mut improved = false;
            for step in steps.into_iter().rev() {
                if step == 0 || step > self.best.len() || self.cut_short {
                    continue;
                }
                let mut without = self.best.clone();
                without.remove(step - 1);
                let before = self.bound;
                self.bound = before.saturating_sub(1);
                if self.attempt(without) {
                    improved = true;
                    break;
                }
                self.bound = before;
            }
            if !improved {
                break;
            }
        }
    }

    /// Sessions named in the order they are first used: a, then b, then c.
    fn rename_sessions(&mut self) {
        let mut map = [usize::MAX; 3];
        let mut next = 0;
        for a in &self.best {
            if let Some(s) = a.session()
                && map[s] == usize::MAX
            {
                map[s] = next;
                next += 1;
            }
        }
        for m in map.iter_mut() {
            if *m == usize::MAX {
                *m = next;
                next += 1;
            }
        }
        if map != [0, 1, 2] {
            let renamed: Vec<Action> = self.best.iter().map(|a| a.with_session(&map)).collect();
            if valid(&renamed) {
                self.attempt(renamed);
            }
        }
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
        Action::Timed(fault, timing) => {
            // The fault at the step itself, then simpler timings.
            out.push(match *fault {
                TimedFault::Remove(d) => Action::Remove(d),
                TimedFault::Rename(d) => Action::Rename(d),
                TimedFault::Replace(d) => Action::Replace(d),
                TimedFault::FillDisk => Action::FillDisk(0),
                TimedFault::Crash => Action::Crash,
            });
            let mut push = |t: OpTiming| {
                if t != *timing {
                    out.push(Action::Timed(*fault, t));
                }
            };
            push(OpTiming {
                nth: 1,
                ..timing.clone()
            });
            push(OpTiming {
                after: false,
                ..timing.clone()
            });
            push(OpTiming {
                path: "**",
                ..timing.clone()
            });
        }
        _ => {}
    }
    out
}
