//! `imc-harness`: run fault-injection scenarios against the imc connector.

// First, so that its `print!`, `println!` and `eprintln!` replace std's below.
#[macro_use]
mod out;
mod run;
mod signals;

use clap::{Parser, Subcommand};
use harness::runner::RunOptions;
use harness::scenario::Backend;
use harness::snapshot::{self, Comparison, StoredRun};
use harness::suite::{self, Snapshots};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "imc-harness",
    version,
    about = "Fault-injection test harness for spool-based SMTP connectors"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenario files or folders: a line per scenario, what failed, a summary.
    Run(run::RunArgs),
    /// Run scenarios under every profile and show, step by step, what each
    /// profile replied and logged (KB behaviour against modern behaviour).
    DiffProfiles(run::DiffArgs),
    /// Re-check stored runs (from `run --save-history`) against the snapshots, or
    /// diff two stored runs, without running anything.
    Check {
        /// Stored runs (`.json`), or folders searched recursively for them.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Compare with this other stored run instead of the snapshot (one run only).
        #[arg(long)]
        against: Option<PathBuf>,
        /// Folder of stored snapshots.
        #[arg(long, default_value = "snapshots")]
        snapshots: PathBuf,
    },
    /// Write a new scenario file to start from.
    New {
        /// The file to create (`scenarios/regressions/my-bug.yaml`); its name ends
        /// in `.yaml` or `.yml`.
        path: PathBuf,
        /// The connector profile (`exchange-4.0` or `hardened`).
        #[arg(long, default_value = "exchange-4.0")]
        profile: String,
        /// Overwrite the file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Print the JSON Schema of scenario files (for editors).
    Schema,
    /// Random fault schedules checked by the invariants; shrinks and writes a reproducer.
    Explore {
        /// The connector profile.
        #[arg(long, default_value = "hardened")]
        profile: String,
        /// Run the connector with a seeded defect (to check that explore finds it).
        #[arg(long)]
        mutant: Option<String>,
        /// Cases (schedules) to run.
        #[arg(long, default_value_t = 256)]
        cases: u64,
        /// The seed (default: random; always printed). The same seed replays the same schedules.
        #[arg(long)]
        seed: Option<u64>,
        /// Longest schedule, in steps.
        #[arg(long, default_value_t = 30)]
        max_steps: usize,
        /// Run against this target: `imc` (in process, the default), or a
        /// target file's name (`imc-serve`) or path; a process target runs on
        /// `fuse` unless `--backend` says otherwise.
        #[arg(long)]
        target: Option<String>,
        /// Run on this backend (`vfs`, `tmpfs` or `fuse`).
        #[arg(long, value_parser = parse_backend)]
        backend: Option<Backend>,
        /// Seconds for the whole run: no case starts and no shrink goes on after.
        #[arg(long)]
        time_budget: Option<u64>,
        /// Run only the cases i with i mod N == K (`K/N`).
        #[arg(long, default_value = "0/1")]
        shard: harness::explore::Shard,
        /// Where to write the reproducer (default
        /// `scenarios/regressions/explore-<profile>[-<mutant>]-<seed>.yaml`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the reproducer instead of writing it.
        #[arg(long)]
        no_write: bool,
        /// Keep going after a failing case; shrink the first case of each invariant.
        #[arg(long)]
        keep_going: bool,
        /// Worker threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Seconds to wait for each reply before the liveness invariant fails.
        #[arg(long, default_value_t = 5)]
        reply_timeout: u64,
    },
    /// Run the scenario again with each filesystem operation failing in turn
    /// (SQLite's countdown); only the invariants must hold.
    Enumerate {
        /// The scenario file.
        scenario: PathBuf,
        /// Override the scenario's profile.
        #[arg(long)]
        profile: Option<String>,
        /// Run the connector with a seeded defect.
        #[arg(long)]
        mutant: Option<String>,
        /// The errnos each operation fails with, comma-separated.
        #[arg(long, default_value = "ENOSPC,EIO,ENOENT", value_delimiter = ',')]
        errnos: Vec<String>,
        /// What happens at each operation, comma-separated: `errno` (each of
        /// `--errnos`, once and from then on) and tree faults made right before it:
        /// rename-in, rename-in-back (put back after it), remove-in, replace-in,
        /// remove-work, fill-disk, crash, crash-after (once it is done).
        #[arg(
            long,
            default_value = "errno,rename-in,rename-in-back,remove-in,replace-in,remove-work,fill-disk,crash,crash-after",
            value_delimiter = ','
        )]
        faults: Vec<String>,
        /// Path glob of each errno fault: `exact` (the operation's own path) or `any` (`**`).
        #[arg(long, default_value = "exact")]
        glob: harness::enumerate::GlobMode,
        /// Run against this target: `imc` (in process, the default), or a
        /// target file's name (`imc-serve`) or path; a process target runs on
        /// `fuse` unless `--backend` says otherwise.
        #[arg(long)]
        target: Option<String>,
        /// Run on this backend (`vfs`, `tmpfs` or `fuse`).
        #[arg(long, value_parser = parse_backend)]
        backend: Option<Backend>,
        /// Folder of the reproducers.
        #[arg(long, default_value = "scenarios/regressions")]
        out_dir: PathBuf,
        /// Do not write reproducers.
        #[arg(long)]
        no_write: bool,
        /// Worker threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Seconds to wait for each reply before the liveness invariant fails.
        #[arg(long, default_value_t = 5)]
        reply_timeout: u64,
    },
    /// Print the claims coverage table: each registered claim, the scenarios
    /// that cite it and their verdicts (the scenarios are run); a claim no
    /// passing scenario checks is flagged.
    Claims {
        /// Scenario files or folders.
        #[arg(default_value = "scenarios")]
        paths: Vec<PathBuf>,
        /// Print the table as Markdown (as the README shows it).
        #[arg(long)]
        markdown: bool,
        /// Folder scenario ids are relative to. Default: each file's nearest
        /// enclosing `scenarios` folder.
        #[arg(long)]
        scenarios: Option<PathBuf>,
        /// Print the JSON Schema of the claims registry instead.
        #[arg(long, conflicts_with = "markdown")]
        schema: bool,
    },
    /// Run the scenarios N times each and print the median time per scenario.
    Bench {
        /// Scenario files or folders.
        #[arg(default_value = "scenarios")]
        paths: Vec<PathBuf>,
        /// Runs per scenario.
        #[arg(long, short = 'n', default_value_t = 20)]
        runs: usize,
        /// Folder scenario ids are relative to. Default: each file's nearest
        /// enclosing `scenarios` folder.
        #[arg(long)]
        scenarios: Option<PathBuf>,
        /// Run on this backend instead of each scenario's own; repeat it
        /// (`--backend vfs --backend fuse`) to interleave the backends, run
        /// by run, and compare them.
        #[arg(long = "backend", value_parser = parse_backend)]
        backends: Vec<Backend>,
        /// Run against this target instead of each scenario's own; repeat it
        /// (`--target imc --target imc-serve`) to interleave the targets (each
        /// with each `--backend`; a process target on `fuse` by default).
        #[arg(long = "target")]
        targets: Vec<String>,
    },
}

/// The backend of a run: `--backend`, else `fuse` for a process target
/// (`--target` other than `imc`), which no other backend can fault fully,
/// else each scenario's own.
pub(crate) fn backend_for(target: Option<&str>, backend: Option<Backend>) -> Option<Backend> {
    backend.or_else(|| {
        target
            .is_some_and(|t| t != harness::target::choice::IN_PROCESS)
            .then_some(Backend::Fuse)
    })
}

/// Parses a backend name for `--backend`.
pub(crate) fn parse_backend(name: &str) -> Result<Backend, String> {
    match name {
        "vfs" => Ok(Backend::Vfs),
        "tmpfs" => Ok(Backend::Tmpfs),
        "fuse" => Ok(Backend::Fuse),
        other => Err(format!(
            "unknown backend `{other}`; expected `vfs`, `tmpfs` or `fuse`"
        )),
    }
}

fn main() -> ExitCode {
    // Before any thread starts, so tmpfs sandboxes never show in the host's mount
    // table; where it is not permitted, tmpfs runs report why.
    let _ = sandbox::enter_private_mount_namespace();
    // Still single-threaded: every thread started from here on inherits the mask.
    if let Err(e) = signals::install() {
        eprintln!("imc-harness: cannot handle SIGINT and SIGTERM: {e}");
    }
    remove_stale_sandboxes();
    let cli: Cli = match out::parse_args() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::DiffProfiles(args) => run::diff_profiles(args),
        Command::Check {
            runs,
            against,
            snapshots,
        } => check_all(&runs, against.as_deref(), &snapshots),
        Command::New {
            path,
            profile,
            force,
        } => new(&path, &profile, force),
        Command::Bench {
            paths,
            runs,
            scenarios,
            backends,
            targets,
        } => bench(&paths, scenarios.as_deref(), runs, &backends, &targets),
        Command::Explore {
            profile,
            mutant,
            cases,
            seed,
            max_steps,
            target: target_name,
            backend,
            time_budget,
            shard,
            out,
            no_write,
            keep_going,
            threads,
            reply_timeout,
        } => {
            let seed = seed.unwrap_or_else(harness::explore::random_seed);
            println!("explore: seed {seed} (replay with --seed {seed})");
            let backend = backend_for(target_name.as_deref(), backend);
            let target = harness::explore::Target {
                profile,
                mutant,
                backend,
                target: target_name.clone(),
            };
            if let Err(e) = target.check() {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
            let mut options = harness::explore::Options::new(target, seed);
            options.cases = cases;
            options.max_steps = max_steps;
            options.time_budget = time_budget.map(Duration::from_secs);
            options.shard = shard;
            options.out = out;
            options.no_write = no_write;
            options.keep_going = keep_going;
            options.threads = threads;
            options.progress = true;
            options.run.backend = backend;
            options.run.reply_timeout = Duration::from_secs(reply_timeout);
            let report = harness::explore::explore(&options);
            print!("{report}");
            if report.findings.is_empty() && report.by_kind.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Enumerate {
            scenario,
            profile,
            mutant,
            errnos,
            faults,
            glob,
            target,
            backend,
            out_dir,
            no_write,
            threads,
            reply_timeout,
        } => {
            let mut options = harness::enumerate::Options::new(scenario);
            options.profile = profile;
            options.mutant = mutant;
            options.errnos = errnos;
            if let Err(e) = options.select_faults(&faults) {
                eprintln!("--faults: {e}");
                return ExitCode::from(2);
            }
            options.glob = glob;
            options.out_dir = (!no_write).then_some(out_dir);
            options.threads = threads;
            options.progress = true;
            options.run.backend = backend_for(target.as_deref(), backend);
            options.run.target = target;
            options.run.reply_timeout = Duration::from_secs(reply_timeout);
            match harness::enumerate::enumerate(&options) {
                Ok(report) => {
                    print!("{report}");
                    if report.failing_runs() == 0 {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Claims {
            paths,
            markdown,
            scenarios,
            schema,
        } => claims(&paths, scenarios.as_deref(), markdown, schema),
        Command::Schema => {
            print!("{}", harness::scenario::schema());
            ExitCode::SUCCESS
        }
    }
}

/// Removes the sandboxes that processes which no longer exist left behind (a
/// SIGKILL cannot be caught), and says so.
fn remove_stale_sandboxes() {
    match sandbox::remove_stale_sandboxes(None) {
        Ok(removed) if !removed.is_empty() => eprintln!(
            "imc-harness: removed {} sandbox{} left by processes that no longer exist",
            removed.len(),
            if removed.len() == 1 { "" } else { "es" }
        ),
        Ok(_) => {}
        Err(e) => eprintln!(
            "imc-harness: cannot look for stale sandboxes in {}: {e}",
            std::env::temp_dir().display()
        ),
    }
}

fn new(path: &std::path::Path, profile: &str, force: bool) -> ExitCode {
    match harness::scenario::create(path, profile, force) {
        Ok(()) => {
            println!(
                "wrote {}; run it with `imc-harness run {}`",
                path.display(),
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

fn claims(
    paths: &[PathBuf],
    base: Option<&std::path::Path>,
    markdown: bool,
    schema: bool,
) -> ExitCode {
    if schema {
        print!("{}", harness::claims::schema());
        return ExitCode::SUCCESS;
    }
    let cases = match suite::cases(paths, base) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let table =
        harness::claims::coverage(harness::claims::registry(), &cases, &RunOptions::default());
    if markdown {
        print!("{}", table.markdown());
    } else {
        print!("{table}");
    }
    if table.all_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn bench(
    paths: &[PathBuf],
    base: Option<&std::path::Path>,
    runs: usize,
    backends: &[Backend],
    targets: &[String],
) -> ExitCode {
    let cases = match suite::cases(paths, base) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runs = runs.max(1);
    // `None`: each scenario's own backend, or target.
    let backends: Vec<Option<Backend>> = if backends.is_empty() {
        vec![None]
    } else {
        backends.iter().copied().map(Some).collect()
    };
    let targets: Vec<Option<&str>> = if targets.is_empty() {
        vec![None]
    } else {
        targets.iter().map(|t| Some(t.as_str())).collect()
    };
    let configs: Vec<(Option<&str>, Option<Backend>)> = targets
        .iter()
        .flat_map(|&t| backends.iter().map(move |&b| (t, backend_for(t, b))))
        .collect();
    let name = |(t, b): (Option<&str>, Option<Backend>)| {
        let b = b.map_or("own", backend_name);
        match t {
            Some(t) => format!("{t} on {b}"),
            None => b.to_string(),
        }
    };
    let backends = configs;
    println!(
        "{} scenarios x {runs} runs on {} (snapshots not compared; each run boots a sandbox and a connector)",
        cases.len(),
        backends
            .iter()
            .map(|&b| name(b))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut medians = vec![Vec::new(); backends.len()];
    let mut all = vec![Vec::new(); backends.len()];
    for case in &cases {
        let mut times = vec![Vec::with_capacity(runs); backends.len()];
        // Interleaved, run by run, so that load on the machine hits every
        // backend alike.
        for _ in 0..runs {
            for (i, &(target, backend)) in backends.iter().enumerate() {
                let options = RunOptions {
                    backend,
                    target: target.map(str::to_string),
                    ..RunOptions::default()
                };
                let started = Instant::now();
                let verdict = suite::run_case(case, &options, &Snapshots::Off);
                times[i].push(started.elapsed().as_secs_f64() * 1000.0);
                if !verdict.passed() && !verdict.is_skipped() {
                    eprintln!(
                        "{} failed during the benchmark on {}:\n{}",
                        case.id,
                        name((target, backend)),
                        verdict.report()
                    );
                    return ExitCode::FAILURE;
                }
            }
        }
        let line: Vec<String> = times
            .iter_mut()
            .enumerate()
            .map(|(i, t)| {
                let m = median(t);
                medians[i].push(m);
                all[i].extend(t.iter().copied());
                format!("{m:>8.2} ms")
            })
            .collect();
        println!("  {}  {}", line.join("  "), case.id);
    }
    for (i, &backend) in backends.iter().enumerate() {
        let per_scenario = median(&mut medians[i]);
        let overall = median(&mut all[i]);
        println!(
            "{}: median of per-scenario medians: {per_scenario:.2} ms; median of all {} runs: {overall:.2} ms",
            name(backend),
            all[i].len()
        );
    }
    if backends.len() > 1 {
        let base = median(&mut medians[0]);
        for (i, &backend) in backends.iter().enumerate().skip(1) {
            println!(
                "{} / {}: {:.2}x",
                name(backend),
                name(backends[0]),
                median(&mut medians[i]) / base
            );
        }
    }
    ExitCode::SUCCESS
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Vfs => "vfs",
        Backend::Tmpfs => "tmpfs",
        Backend::Fuse => "fuse",
    }
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// `check` over several stored runs: 0 when all are the same as their
/// snapshots, 2 when any cannot be checked, else 1.
fn check_all(
    paths: &[PathBuf],
    against: Option<&std::path::Path>,
    snapshots: &std::path::Path,
) -> ExitCode {
    let runs = match harness::snapshot::stored_runs(paths) {
        Ok(runs) => runs,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if against.is_some() && runs.len() != 1 {
        eprintln!(
            "--against compares one stored run with another; {} were given",
            runs.len()
        );
        return ExitCode::from(2);
    }
    let codes: Vec<ExitCode> = runs
        .iter()
        .map(|run| check(run, against, snapshots))
        .collect();
    if codes.contains(&ExitCode::from(2)) {
        ExitCode::from(2)
    } else if codes.contains(&ExitCode::FAILURE) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn check(
    path: &std::path::Path,
    against: Option<&std::path::Path>,
    snapshots: &std::path::Path,
) -> ExitCode {
    let stored = match StoredRun::load(path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let contents = stored.render();
    let comparison = match against {
        Some(other) => match StoredRun::load(other) {
            Ok(o) => {
                let theirs = o.render();
                if theirs.trim_end() == contents.trim_end() {
                    Comparison::Same
                } else {
                    Comparison::Differs(snapshot::diff(theirs.trim_end(), contents.trim_end()))
                }
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        },
        None => snapshot::compare(snapshots, &stored.snapshot_name(), &contents),
    };
    match comparison {
        // `compare` never writes, so `Written` cannot come back from it.
        Comparison::Same | Comparison::Written(_) => {
            println!(
                "{}: same as {}",
                path.display(),
                against.map_or_else(|| "its snapshot".to_string(), |p| p.display().to_string())
            );
            ExitCode::SUCCESS
        }
        Comparison::Missing(p) => {
            eprintln!("{}: no snapshot at {}", path.display(), p.display());
            ExitCode::from(2)
        }
        Comparison::Differs(d) => {
            println!("{} differs (- other, + this run):\n{d}", path.display());
            ExitCode::FAILURE
        }
    }
}
