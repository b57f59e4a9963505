//! How long a `send: { size: N }` step takes: the message built by the harness
//! and sent through lettre's SMTP transport to the connector.
//!
//! `cargo bench -p harness --bench send` prints, for 1, 4 and 10 MiB, the time to
//! build the message alone and the time of a whole scenario run with that one
//! `send` step, next to the same run without it (boot, recovery and checks
//! included), so the difference is what the step costs. Median of 5 runs each
//! (`-- --runs N` for another count).

use harness::runner::{self, RunOptions};
use harness::scenario::{self, SendSpec, Size};
use std::path::Path;
use std::time::Instant;

fn scenario_text(send: Option<u64>) -> String {
    let send = match send {
        Some(size) => format!(
            "  - send: {{ from: alice@example.org, to: [bob@example.net], subject: big, size: {size} }}\n    expect: {{ send_failed: false, files: {{ imcdata/in: 1 }} }}\n"
        ),
        None => String::new(),
    };
    format!(
        "claims: [RFC5321-6.1]\nprofile: hardened\nsandbox: {{ quota: 256MiB }}\n\
         connector: {{ max_message_size: 64MiB, low_water_mark: 1MiB }}\n\
         steps:\n  - service: start\n{send}  - service: stop\n"
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time_run(text: &str, runtime: &tokio::runtime::Runtime) -> f64 {
    let scenario = scenario::parse(text, Path::new("bench.yaml")).expect("the scenario loads");
    let started = Instant::now();
    let run = runtime
        .block_on(runner::run(&scenario, &RunOptions::default()))
        .expect("the scenario runs");
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        run.mismatches.is_empty() && run.violations.is_empty(),
        "the run failed: {:?} {:?}",
        run.mismatches,
        run.violations
    );
    elapsed
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // `-- --runs N` (cargo passes `--bench` too, which is ignored).
    let args: Vec<String> = std::env::args().collect();
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .map_or(5, |n| n.parse().expect("--runs takes a number"));
    let baseline = median(
        (0..runs)
            .map(|_| time_run(&scenario_text(None), &runtime))
            .collect(),
    );
    println!("scenario without send: {:.3} s", baseline);
    for mib in [1u64, 4, 10] {
        let size = mib * 1024 * 1024;
        let spec = SendSpec {
            from: "alice@example.org".into(),
            to: vec!["bob@example.net".into()],
            subject: Some("big".into()),
            body: None,
            size: Some(Size(size)),
        };
        let build = median(
            (0..runs)
                .map(|_| {
                    let started = Instant::now();
                    let message = harness::send::build(&spec).expect("the message builds");
                    let t = started.elapsed().as_secs_f64();
                    assert!(harness::send::stored_body(&message).len() as u64 > size);
                    t
                })
                .collect(),
        );
        let whole = median(
            (0..runs)
                .map(|_| time_run(&scenario_text(Some(size)), &runtime))
                .collect(),
        );
        println!(
            "send {mib:>2} MiB: build {build:.3} s; scenario {whole:.3} s, {:.3} s more than without send",
            whole - baseline
        );
    }
}
