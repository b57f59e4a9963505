//! `imc-harness run` and `imc-harness diff-profiles`: arguments, then the
//! library's suite and report, printed.

use clap::{Args, ValueEnum};
use harness::report::{self, Paint, Status, Timed};
use harness::runner::RunOptions;
use harness::scenario::{Backend, PROFILES};
use harness::snapshot::{Comparison, StoredRun};
use harness::suite::{self, Case, Snapshots};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Where `run` remembers which scenarios failed, for `run --failed`.
pub const LAST_RUN: &str = ".imc-harness/last-run.json";

/// When to colour the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    /// On a terminal, unless `NO_COLOR` is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

impl ColorWhen {
    fn paint(self) -> Paint {
        let color = match self {
            ColorWhen::Always => true,
            ColorWhen::Never => false,
            ColorWhen::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::io::stdout().is_terminal()
            }
        };
        Paint { color }
    }
}

/// A machine-readable report to write (`junit=FILE`, `json=FILE`).
#[derive(Clone, Debug)]
pub enum ReportSpec {
    /// JUnit XML, as cargo-nextest writes it.
    Junit(PathBuf),
    /// One JSON object per scenario per line.
    Json(PathBuf),
}

fn parse_report(s: &str) -> Result<ReportSpec, String> {
    match s.split_once('=') {
        Some(("junit", f)) if !f.is_empty() => Ok(ReportSpec::Junit(f.into())),
        Some(("json", f)) if !f.is_empty() => Ok(ReportSpec::Json(f.into())),
        _ => Err(format!("expected `junit=FILE` or `json=FILE`, not `{s}`")),
    }
}

/// Parses a profile name for `--profile`.
pub fn parse_profile(name: &str) -> Result<String, String> {
    if PROFILES.contains(&name) {
        Ok(name.to_string())
    } else {
        Err(format!(
            "unknown profile `{name}`; expected one of {}",
            PROFILES
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// `imc-harness run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Scenario files (.yaml) or folders searched recursively.
    #[arg(required_unless_present = "failed")]
    paths: Vec<PathBuf>,
    /// Rerun the scenarios that failed (or could not run) in the last `run`
    /// from this directory.
    #[arg(long, conflicts_with = "paths")]
    failed: bool,
    /// Folder scenario ids are relative to (their snapshot names derive from
    /// it). Default: each file's nearest enclosing `scenarios` folder.
    #[arg(long)]
    scenarios: Option<PathBuf>,
    /// Folder of stored snapshots. Default: `snapshots` beside the scenarios
    /// folder (beside the file, for a file outside any).
    #[arg(long)]
    snapshots: Option<PathBuf>,
    /// Do not compare with stored snapshots.
    #[arg(long, conflicts_with = "accept")]
    no_snapshots: bool,
    /// Write each missing or differing snapshot (and remove stale `.snap.new`
    /// files): what `cargo insta accept` does, without cargo-insta.
    #[arg(long)]
    accept: bool,
    /// Print every scenario's whole transcript.
    #[arg(long, short, conflicts_with = "quiet")]
    verbose: bool,
    /// Print only the scenarios that did not pass, and the summary.
    #[arg(long, short)]
    quiet: bool,
    /// Colour: `auto` (on a terminal, unless NO_COLOR is set), `always`, `never`.
    #[arg(long, value_enum, default_value_t = ColorWhen::Auto)]
    color: ColorWhen,
    /// Write a report: `junit=FILE` (JUnit XML) or `json=FILE` (JSON lines);
    /// may be given more than once.
    #[arg(long, value_parser = parse_report)]
    report: Vec<ReportSpec>,
    /// Run every scenario on this backend (`vfs`, `tmpfs` or `fuse`) instead of its own.
    #[arg(long, value_parser = crate::parse_backend)]
    backend: Option<Backend>,
    /// Run every scenario against this target instead of its own: `imc` (in
    /// process), or a target file's name (`imc-serve`: `targets/imc-serve.yaml`)
    /// or path. A process target runs on `fuse` unless `--backend` says otherwise.
    #[arg(long)]
    target: Option<String>,
    /// Run every scenario with this profile instead of its own (snapshots are
    /// then not compared: they record each scenario's own profile).
    #[arg(long, value_parser = parse_profile)]
    profile: Option<String>,
    /// Seconds to wait for each reply before the liveness invariant fails.
    #[arg(long, default_value_t = 10)]
    reply_timeout: u64,
    /// Save each run's whole history as JSON in this folder (for `check`).
    #[arg(long)]
    save_history: Option<PathBuf>,
}

/// What `run` stores for `--failed`.
#[derive(serde::Serialize, serde::Deserialize)]
struct LastRun {
    /// The files of the scenarios that failed or could not run, as given.
    failed: Vec<PathBuf>,
}

/// Runs `imc-harness run`.
pub fn run(args: RunArgs) -> ExitCode {
    let paint = args.color.paint();
    let paths = if args.failed {
        match read_last_run() {
            Ok(p) if p.is_empty() => {
                println!("no scenario failed in the last run ({LAST_RUN})");
                return ExitCode::SUCCESS;
            }
            Ok(p) => {
                let (there, gone): (Vec<PathBuf>, Vec<PathBuf>) =
                    p.into_iter().partition(|p| p.exists());
                for p in &gone {
                    println!("no longer exists: {}", p.display());
                }
                if there.is_empty() {
                    return ExitCode::SUCCESS;
                }
                there
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        }
    } else {
        args.paths.clone()
    };
    let mut cases = match suite::cases(&paths, args.scenarios.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if cases.is_empty() {
        eprintln!(
            "no scenario files (*.yaml, *.yml) under {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return ExitCode::from(2);
    }
    if let Some(dir) = &args.snapshots {
        for case in &mut cases {
            case.snapshots = dir.clone();
        }
    }
    let mode = if args.no_snapshots {
        Snapshots::Off
    } else if args.accept {
        Snapshots::Accept
    } else {
        Snapshots::Compare
    };
    let options = RunOptions {
        backend: crate::backend_for(args.target.as_deref(), args.backend),
        profile: args.profile.clone(),
        reply_timeout: Duration::from_secs(args.reply_timeout.max(1)),
        target: args.target.clone(),
        targets_dir: None,
    };
    println!(
        "{:>9} {} (target: {}, profile: {}, backend: {})",
        "Starting",
        report::plural(cases.len(), "scenario", "scenarios"),
        options.target.as_deref().unwrap_or("each scenario's own"),
        options.profile.as_deref().unwrap_or("each scenario's own"),
        match options.backend {
            None => "each scenario's own",
            Some(Backend::Vfs) => "vfs",
            Some(Backend::Tmpfs) => "tmpfs",
            Some(Backend::Fuse) => "fuse",
        }
    );
    let started = Instant::now();
    let mut results = Vec::with_capacity(cases.len());
    for case in &cases {
        let t0 = Instant::now();
        let verdict = suite::run_case(case, &options, &mode);
        let timed = Timed {
            verdict,
            elapsed: t0.elapsed(),
        };
        show(&timed, &args, paint);
        results.push(timed);
    }
    let elapsed = started.elapsed();
    println!();
    print!("{}", report::summary(&results, elapsed, paint));
    let mut status = if results
        .iter()
        .any(|t| matches!(Status::of(&t.verdict), Status::Fail | Status::Error))
    {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    };
    for spec in &args.report {
        let (path, text) = match spec {
            ReportSpec::Junit(p) => (p, report::junit(&results, "scenarios", elapsed)),
            ReportSpec::Json(p) => (p, report::json(&results)),
        };
        if let Err(e) = write_file(path, &text) {
            eprintln!("{e}");
            status = ExitCode::from(2);
        }
    }
    if let Err(e) = write_last_run(&results) {
        eprintln!("{e}");
    }
    status
}

/// Prints one case as it finishes: its status line, what failed, and (with
/// `-v`) the whole transcript.
fn show(t: &Timed, args: &RunArgs, paint: Paint) {
    let v = &t.verdict;
    let status = Status::of(v);
    let shown = !(args.quiet && status == Status::Pass);
    if shown {
        println!("{}", report::status_line(t, paint));
    }
    if let (Some(dir), Some(history)) = (&args.save_history, &v.history)
        && let Ok(scenario) = harness::scenario::load(&v.case.path)
    {
        match StoredRun::new(&v.case.id, &scenario, history).save(dir) {
            Ok(path) if shown => println!("          history saved to {}", path.display()),
            Ok(_) => {}
            Err(e) => eprintln!("{e}"),
        }
    }
    if !shown {
        return;
    }
    if let Some(Comparison::Written(p)) = &v.snapshot {
        println!("          snapshot written to {}", p.display());
    }
    if args.verbose {
        for line in v.report().lines() {
            println!("    {line}");
        }
    } else if matches!(status, Status::Fail | Status::Error) {
        print!("{}", report::failure_detail(v, 15));
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn read_last_run() -> Result<Vec<PathBuf>, String> {
    let text = std::fs::read_to_string(LAST_RUN)
        .map_err(|e| format!("no last run to rerun ({LAST_RUN}: {e}); run some scenarios first"))?;
    let last: LastRun =
        serde_json::from_str(&text).map_err(|e| format!("{LAST_RUN} is not a last run: {e}"))?;
    Ok(last.failed)
}

fn write_last_run(results: &[Timed]) -> Result<(), String> {
    let failed = results
        .iter()
        .filter(|t| matches!(Status::of(&t.verdict), Status::Fail | Status::Error))
        .map(|t| t.verdict.case.path.clone())
        .collect();
    let json = serde_json::to_string_pretty(&LastRun { failed }).expect("paths serialize");
    write_file(Path::new(LAST_RUN), &(json + "\n"))
}

/// `imc-harness diff-profiles`.
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// Scenario files or folders.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Print Markdown tables instead.
    #[arg(long)]
    markdown: bool,
    /// Print every step, not only those where the profiles differ.
    #[arg(long)]
    all: bool,
    /// Seconds to wait for each reply.
    #[arg(long, default_value_t = 10)]
    reply_timeout: u64,
}

/// Runs `imc-harness diff-profiles`.
pub fn diff_profiles(args: DiffArgs) -> ExitCode {
    let cases: Vec<Case> = match suite::cases(&args.paths, None) {
        Ok(c) if c.is_empty() => {
            eprintln!("no scenario files under the given paths");
            return ExitCode::from(2);
        }
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let options = RunOptions {
        reply_timeout: Duration::from_secs(args.reply_timeout.max(1)),
        ..RunOptions::default()
    };
    let mut status = ExitCode::SUCCESS;
    for case in &cases {
        match harness::profiles::compare(case, &PROFILES, &options) {
            Ok(mut table) => {
                if !args.all {
                    table.rows.retain(|r| r.differs());
                }
                if args.markdown {
                    println!("{}", table.markdown());
                } else {
                    println!("{}", table.text());
                }
            }
            Err(e) => {
                eprintln!("{e}");
                status = ExitCode::from(2);
            }
        }
    }
    status
}
