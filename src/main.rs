//! `imc-harness`: run fault-injection scenarios against the imc connector.

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
    /// Run scenario files or folders; print each transcript and a summary.
    Run {
        /// Scenario files (.yaml) or folders searched recursively.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Folder scenario ids are relative to (their snapshot names derive from it).
        #[arg(long, default_value = "scenarios")]
        scenarios: PathBuf,
        /// Folder of stored snapshots to compare with.
        #[arg(long, default_value = "snapshots")]
        snapshots: PathBuf,
        /// Do not compare with stored snapshots.
        #[arg(long)]
        no_snapshots: bool,
        /// Print transcripts of failing scenarios only.
        #[arg(long, short)]
        quiet: bool,
        /// Run every scenario on this backend (`vfs`, `tmpfs` or `fuse`) instead of its own.
        #[arg(long, value_parser = parse_backend)]
        backend: Option<Backend>,
        /// Save each run's whole history as JSON in this folder (for `check`).
        #[arg(long)]
        save_history: Option<PathBuf>,
    },
    /// Re-check stored runs (from `run --save-history`) against the snapshots, or
    /// diff two stored runs, without running anything.
    Check {
        /// A stored run (`.json`).
        run: PathBuf,
        /// Compare with this other stored run instead of the snapshot.
        #[arg(long)]
        against: Option<PathBuf>,
        /// Folder of stored snapshots.
        #[arg(long, default_value = "snapshots")]
        snapshots: PathBuf,
    },
    /// Write a new scenario file to start from.
    New {
        /// The file to create (`scenarios/regressions/my-bug.yaml`).
        path: PathBuf,
        /// The connector profile.
        #[arg(long, default_value = "exchange-4.0")]
        profile: String,
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
        /// Run on this backend (`vfs`, `tmpfs` or `fuse`).
        #[arg(long, value_parser = parse_backend)]
        backend: Option<Backend>,
        /// Stop starting new cases after this many seconds.
        #[arg(long)]
        time_budget: Option<u64>,
        /// Run only the cases i with i mod N == K (`K/N`).
        #[arg(long, default_value = "0/1")]
        shard: harness::explore::Shard,
        /// Where to write the reproducer (default
        /// scenarios/regressions/explore-<profile>[-<mutant>]-<seed>.yaml).
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
        /// Path glob of each fault: `exact` (the operation's own path) or `any` (`**`).
        #[arg(long, default_value = "exact")]
        glob: harness::enumerate::GlobMode,
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
    /// Run the scenarios N times each and print the median time per scenario.
    Bench {
        /// Scenario files or folders.
        #[arg(default_value = "scenarios")]
        paths: Vec<PathBuf>,
        /// Runs per scenario.
        #[arg(long, short = 'n', default_value_t = 20)]
        runs: usize,
        /// Folder scenario ids are relative to.
        #[arg(long, default_value = "scenarios")]
        scenarios: PathBuf,
        /// Run on this backend instead of each scenario's own; repeat it
        /// (`--backend vfs --backend fuse`) to interleave the backends, run
        /// by run, and compare them.
        #[arg(long = "backend", value_parser = parse_backend)]
        backends: Vec<Backend>,
    },
}

fn parse_backend(name: &str) -> Result<Backend, String> {
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
    match Cli::parse().command {
        Command::Run {
            paths,
            scenarios,
            snapshots,
            no_snapshots,
            quiet,
            backend,
            save_history,
        } => {
            let options = RunOptions {
                backend,
                ..RunOptions::default()
            };
            let output = Output {
                quiet,
                save_history,
            };
            run(
                &paths,
                &scenarios,
                snapshots,
                no_snapshots,
                &output,
                &options,
            )
        }
        Command::Check {
            run,
            against,
            snapshots,
        } => check(&run, against.as_deref(), &snapshots),
        Command::New { path, profile } => new(&path, &profile),
        Command::Bench {
            paths,
            runs,
            scenarios,
            backends,
        } => bench(&paths, &scenarios, runs, &backends),
        Command::Explore {
            profile,
            mutant,
            cases,
            seed,
            max_steps,
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
            let target = harness::explore::Target {
                profile,
                mutant,
                backend,
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
            glob,
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
            options.glob = glob;
            options.out_dir = (!no_write).then_some(out_dir);
            options.threads = threads;
            options.progress = true;
            options.run.backend = backend;
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
        Command::Schema => {
            print!("{}", harness::scenario::schema());
            ExitCode::SUCCESS
        }
    }
}

fn run(
    paths: &[PathBuf],
    base: &std::path::Path,
    snapshots: PathBuf,
    off: bool,
    output: &Output,
    options: &RunOptions,
) -> ExitCode {
    let quiet = output.quiet;
    let cases = match suite::cases(paths, base) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mode = if off {
        Snapshots::Off
    } else {
        Snapshots::Compare(snapshots)
    };
    let started = Instant::now();
    let (mut passed, mut failed) = (Vec::new(), Vec::new());
    for case in &cases {
        let verdict = suite::run_case(case, options, &mode);
        let ok = verdict.passed();
        if let (Some(dir), Some(history)) = (&output.save_history, &verdict.history) {
            let loaded = harness::scenario::load(&case.path);
            if let Ok(scenario) = loaded {
                match StoredRun::new(&case.id, &scenario, history).save(dir) {
                    Ok(path) => println!("history saved to {}", path.display()),
                    Err(e) => eprintln!("{e}"),
                }
            }
        }
        println!("=== {} ({})", case.id, case.path.display());
        if !quiet || !ok {
            print!("{}", verdict.report());
        }
        if let Some(Comparison::Missing(_)) = verdict.snapshot {
            if quiet {
                println!("(no stored snapshot)");
            }
        }
        println!("--- {}: {}\n", case.id, if ok { "PASS" } else { "FAIL" });
        if ok {
            passed.push(case.id.clone());
        } else {
            failed.push(case.id.clone());
        }
    }
    println!(
        "{} scenarios: {} passed, {} failed ({:.2} s)",
        cases.len(),
        passed.len(),
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    for id in &failed {
        println!("  FAIL {id}");
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn new(path: &std::path::Path, profile: &str) -> ExitCode {
    if path.exists() {
        eprintln!("{} already exists; not overwriting it", path.display());
        return ExitCode::from(2);
    }
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "new scenario".into());
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Err(e) = std::fs::create_dir_all(parent) {
            eprintln!("cannot create {}: {e}", parent.display());
            return ExitCode::from(2);
        }
    }
    match std::fs::write(path, harness::scenario::scaffold(&name, profile)) {
        Ok(()) => {
            println!(
                "wrote {}; run it with `imc-harness run {}`",
                path.display(),
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot write {}: {e}", path.display());
            ExitCode::from(2)
        }
    }
}

fn bench(paths: &[PathBuf], base: &std::path::Path, runs: usize, backends: &[Backend]) -> ExitCode {
    let cases = match suite::cases(paths, base) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runs = runs.max(1);
    // `None`: each scenario's own backend.
    let backends: Vec<Option<Backend>> = if backends.is_empty() {
        vec![None]
    } else {
        backends.iter().copied().map(Some).collect()
    };
    let name = |b: Option<Backend>| b.map_or("own", |b| backend_name(b));
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
            for (i, &backend) in backends.iter().enumerate() {
                let options = RunOptions {
                    backend,
                    ..RunOptions::default()
                };
                let started = Instant::now();
                let verdict = suite::run_case(case, &options, &Snapshots::Off);
                times[i].push(started.elapsed().as_secs_f64() * 1000.0);
                if !verdict.passed() {
                    eprintln!(
                        "{} failed during the benchmark on {}:\n{}",
                        case.id,
                        name(backend),
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

/// How `run` reports.
struct Output {
    quiet: bool,
    save_history: Option<PathBuf>,
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
        Comparison::Same => {
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
