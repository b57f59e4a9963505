//! Running scenarios: one run's outcome, the worker threads that run many
//! (each with its own runtime), and the progress bar; shared with `enumerate`.

use crate::history::History;
use crate::invariants::{Invariant, Violation};
use crate::runner::{self, RunOptions};
use crate::scenario::Scenario;
use std::fmt;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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

/// The clock that time budgets are read from: the real one, or (for tests) one
/// that advances by a fixed step at every reading, so a budget runs out after an
/// exact number of decisions whatever the machine's speed.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    ticks: Option<std::sync::Arc<(AtomicU64, Duration)>>,
}

impl Clock {
    /// The real monotonic clock.
    pub fn real() -> Clock {
        Clock::default()
    }

    /// A clock that starts at zero and advances by `step` at every reading.
    pub fn ticking(step: Duration) -> Clock {
        Clock {
            ticks: Some(std::sync::Arc::new((AtomicU64::new(0), step))),
        }
    }

    /// The time since an origin fixed for the process (real), or the ticks so far.
    pub fn now(&self) -> Duration {
        match &self.ticks {
            None => {
                static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
                ORIGIN.get_or_init(Instant::now).elapsed()
            }
            Some(t) => {
                let n = t.0.fetch_add(1, Ordering::SeqCst) + 1;
                t.1.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX))
            }
        }
    }
}
