//! `imc-harness`: run fault-injection scenarios against the imc connector.

use clap::{Parser, Subcommand};
use harness::runner::RunOptions;
use harness::scenario::Backend;
use harness::snapshot::Comparison;
use harness::suite::{self, Snapshots};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

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
        /// Run every scenario on this backend (`vfs` or `tmpfs`) instead of its own.
        #[arg(long, value_parser = parse_backend)]
        backend: Option<Backend>,
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
    },
}

fn parse_backend(name: &str) -> Result<Backend, String> {
    match name {
        "vfs" => Ok(Backend::Vfs),
        "tmpfs" => Ok(Backend::Tmpfs),
        other => Err(format!(
            "unknown backend `{other}`; expected `vfs` or `tmpfs`"
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
        } => {
            let options = RunOptions {
                backend,
                ..RunOptions::default()
            };
            run(&paths, &scenarios, snapshots, no_snapshots, quiet, &options)
        }
        Command::New { path, profile } => new(&path, &profile),
        Command::Bench {
            paths,
            runs,
            scenarios,
        } => bench(&paths, &scenarios, runs),
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
    quiet: bool,
    options: &RunOptions,
) -> ExitCode {
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

fn bench(paths: &[PathBuf], base: &std::path::Path, runs: usize) -> ExitCode {
    let cases = match suite::cases(paths, base) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runs = runs.max(1);
    println!(
        "{} scenarios x {runs} runs (snapshots not compared; each run boots a sandbox and a connector)",
        cases.len()
    );
    let mut medians = Vec::new();
    let mut all = Vec::new();
    for case in &cases {
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            let verdict = suite::run_case(case, &RunOptions::default(), &Snapshots::Off);
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            if !verdict.passed() {
                eprintln!(
                    "{} failed during the benchmark:\n{}",
                    case.id,
                    verdict.report()
                );
                return ExitCode::FAILURE;
            }
        }
        let m = median(&mut times);
        println!("  {:>8.2} ms  {}", m, case.id);
        medians.push(m);
        all.extend(times);
    }
    let per_scenario = median(&mut medians);
    let overall = median(&mut all);
    println!(
        "median of per-scenario medians: {per_scenario:.2} ms; median of all {} runs: {overall:.2} ms",
        all.len()
    );
    ExitCode::SUCCESS
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
