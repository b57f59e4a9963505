//! Shrinking a failing case down to a minimal schedule.

use super::*;
use crate::runner::RunOptions;
use proptest::strategy::ValueTree;
use sandbox::Errno;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

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
