//! The exploration itself: the cases of a shard run on worker threads, then
//! the first failure of each kind shrunk and written as a reproducer.

use super::*;
use crate::history::History;
use crate::runner::RunOptions;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

/// The cases of `shard` among `cases`: those `i` with `i mod count == index`,
/// in order. Computed, not listed: a run of 10^9 cases holds no list of them.
pub fn shard_indices(cases: u64, shard: Shard) -> ShardCases {
    ShardCases { cases, shard }
}

/// The case indices of one shard (see [`shard_indices`]).
#[derive(Clone, Copy, Debug)]
pub struct ShardCases {
    cases: u64,
    shard: Shard,
}

impl ShardCases {
    /// How many cases the shard runs.
    pub fn len(&self) -> u64 {
        self.cases
            .saturating_sub(self.shard.index)
            .div_ceil(self.shard.count)
    }

    /// True if the shard runs no case.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The index of the shard's `slot`-th case.
    pub fn get(&self, slot: u64) -> u64 {
        self.shard.index + slot * self.shard.count
    }

    /// How many of the shard's cases have an index of at most `i`.
    pub fn up_to(&self, i: u64) -> u64 {
        if i < self.shard.index || self.cases == 0 {
            return 0;
        }
        ((i - self.shard.index) / self.shard.count + 1).min(self.len())
    }

    /// Every case index of the shard, in order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + use<> {
        let this = *self;
        (0..this.len()).map(move |slot| this.get(slot))
    }
}

/// A case replayed: its index, its schedule and its history (none if the run
/// could not be made).
pub type Replayed = (u64, Vec<Action>, Option<History>);

/// Runs the cases of the shard (no shrinking) and returns each case's schedule
/// and history, in case order: what a replay of the same seed must give again,
/// byte for byte.
pub fn replay(options: &Options) -> Vec<Replayed> {
    let indices = shard_indices(options.cases, options.shard);
    let count = usize::try_from(indices.len()).expect("a replay's cases fit in memory");
    let out: Mutex<Vec<Option<Replayed>>> = Mutex::new((0..count).map(|_| None).collect());
    parallel(
        count,
        options.threads,
        |_| false,
        |rt, slot| {
            let index = indices.get(slot as u64);
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
    /// The whole run's time: no case is started and no shrink goes on after it.
    pub time_budget: Option<Duration>,
    /// The clock the time budget is read from (the real one but in tests).
    pub clock: Clock,
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
            clock: Clock::real(),
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
    let progress = Progress::new(indices.len(), "schedules", options.progress);
    let started = Instant::now();
    let clock_started = options.clock.now();
    let deadline = options.time_budget.map(|b| clock_started.saturating_add(b));
    let stop_at = AtomicU64::new(u64::MAX);
    let out_of_time = AtomicBool::new(false);
    let failures: Mutex<BTreeMap<u64, CaseFailure>> = Mutex::new(BTreeMap::new());
    let ran = AtomicU64::new(0);
    let steps = AtomicU64::new(0);
    let violations = AtomicU64::new(0);
    let slowest: Mutex<Option<(u64, Duration)>> = Mutex::new(None);
    parallel(
        usize::try_from(indices.len()).unwrap_or(usize::MAX),
        options.threads,
        |slot| {
            if deadline.is_some_and(|d| options.clock.now() >= d) {
                out_of_time.store(true, Ordering::SeqCst);
                return true;
            }
            !options.keep_going && indices.get(slot as u64) > stop_at.load(Ordering::SeqCst)
        },
        |rt, slot| {
            let index = indices.get(slot as u64);
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
        planned: indices.len(),
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
        report.ran = indices.up_to(i);
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
        // The shrink gets what is left of the budget, if less than its own limit.
        let mut limits = options.shrink.clone();
        let mut budget_bound = false;
        if let Some(d) = deadline {
            let left = d.saturating_sub(options.clock.now());
            if left < limits.time {
                limits.time = left;
                budget_bound = true;
            }
        }
        let shrunk = shrink(
            &rt,
            schedule(options.seed, index, options.max_steps),
            &options.target,
            &options.run,
            kind,
            seen,
            &limits,
            &options.clock,
            |_, _| {},
        );
        if shrunk.cut_short && budget_bound {
            report.stopped = Some(format!(
                "the time budget of {} s ran out while shrinking case {index}",
                options.time_budget.unwrap_or_default().as_secs()
            ));
        }
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
