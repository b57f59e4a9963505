//! Errors that teach and values checked at load: YAML slips (a tab in the
//! indentation, an unquoted `**`, an unclosed `{` or `[`, a file over the
//! parser's limits), reply codes outside 200..=599, and `scenario::create`
//! (what `imc-harness new` writes, and what it refuses).

use harness::scenario::{self, ScenarioError};
use std::path::Path;

fn err(source: &str) -> ScenarioError {
    match scenario::parse(source, Path::new("scenarios/x.yaml")) {
        Ok(s) => panic!("expected an error, parsed {s:#?}"),
        Err(e) => e,
    }
}

#[track_caller]
fn located(e: &ScenarioError, line: usize, column: usize) {
    assert_eq!((e.line(), e.column()), (Some(line), Some(column)), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("scenarios/x.yaml:{line}:{column}")),
        "{e}"
    );
}

#[test]
fn a_tab_in_the_indentation_says_so() {
    let e = err("claims: [KB-3]\nprofile: hardened\nsteps:\n\t- service: start\n");
    assert_eq!(
        e.message(),
        "line 4 is indented with a tab: YAML indents with spaces only"
    );
    assert!(e.help().unwrap().contains("replace the tab with spaces"));
    located(&e, 4, 1);
    let e =
        err("claims: [KB-3]\nprofile: hardened\nsteps:\n  - service: start\n  \t- connect: a\n");
    assert!(
        e.message().starts_with("line 5 is indented with a tab"),
        "{e}"
    );
    located(&e, 5, 3);
}

#[test]
fn an_unquoted_double_star_says_to_quote_it() {
    let e = err(
        "claims: [KB-3]\nprofile: hardened\nsteps:\n  - service: start\n  - fault:\n      errno: { op: write, path: **, errno: EIO }\n",
    );
    assert_eq!(
        e.message(),
        "`**` is read as a YAML alias (`*name` refers to an anchor `&name`): quote it"
    );
    assert_eq!(
        e.help(),
        Some("write it in quotes: `\"**\"`; a plain value cannot start with `*`")
    );
    located(&e, 6, 33);
    // Quoted, it loads.
    scenario::parse(
        "claims: [KB-3]\nprofile: hardened\nsteps:\n  - service: start\n  - fault:\n      errno: { op: write, path: \"**\", errno: EIO }\n",
        Path::new("x.yaml"),
    )
    .unwrap();
}

#[test]
fn an_unclosed_brace_points_at_where_it_opened() {
    let e = err(
        "claims: [KB-3]\nprofile: hardened\nsteps:\n  - service: start\n  - connect: a\n    expect: { code: 220\n  - command: NOOP\n",
    );
    assert_eq!(
        e.message(),
        "this `{` (a flow mapping) is never closed: `}` is missing"
    );
    located(&e, 6, 13);
    assert!(e.to_string().contains("`{` opened here"), "{e}");
}

#[test]
fn an_unclosed_bracket_points_at_where_it_opened() {
    let e = err("claims: [KB-3\nprofile: hardened\nsteps: [{ service: start }]\n");
    assert_eq!(
        e.message(),
        "this `[` (a flow list) is never closed: `]` is missing"
    );
    located(&e, 1, 9);
    // At the very end of the file too.
    let e = err("claims: [KB-3]\nprofile: hardened\nsteps: [{ service: start }\n");
    assert!(e.message().starts_with("this `[`"), "{e}");
    located(&e, 3, 8);
}

#[test]
fn a_file_over_the_parsers_limits_says_what_the_limit_is() {
    let claims = vec!["KB-3"; 250_001].join(",");
    let e = err(&format!(
        "claims: [{claims}]\nprofile: hardened\nsteps: [{{ service: start }}]\n"
    ));
    assert_eq!(
        e.message(),
        "the scenario file is too large: the YAML parser reads at most 250000 YAML nodes (keys, values and list items)"
    );
    let text = e.to_string();
    assert!(
        !text.contains("Nodes {") && !text.contains("breach"),
        "{text}"
    );
}

#[test]
fn reply_codes_are_200_to_599() {
    let steps = |expect: &str| {
        format!(
            "claims: [KB-3]\nprofile: hardened\nsteps:\n  - service: start\n  - connect: a\n    expect: {expect}\n"
        )
    };
    let e = err(&steps("{ code: 600 }"));
    assert!(matches!(e, ScenarioError::Invalid(_)), "{e}");
    assert!(
        e.message()
            .contains("`600` is not an SMTP reply code: expected 200 to 599"),
        "{e}"
    );
    located(&e, 6, 21);
    let e = err(&steps("{ code: 25 }"));
    assert!(
        e.message().contains("`25` is not an SMTP reply code"),
        "{e}"
    );
    let e = err(&steps("{ replies: [{ code: 250 }, { code: 199 }] }"));
    assert!(
        e.message().contains("`199` is not an SMTP reply code"),
        "{e}"
    );
    located(&e, 6, 48);
    for code in [200, 250, 421, 599] {
        scenario::parse(&steps(&format!("{{ code: {code} }}")), Path::new("x.yaml")).unwrap();
    }
    // `when: { after_reply }` waits for a reply code too.
    let e = err(
        "claims: [KB-3]\nprofile: hardened\nsteps:\n  - service: start\n  - fault: { remove: imcdata/in }\n    when: { session: a, after_reply: 3540 }\n  - connect: a\n",
    );
    assert!(
        e.message().contains("`3540` is not an SMTP reply code"),
        "{e}"
    );
}

#[test]
fn create_writes_a_scenario_that_loads() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sub/my-bug.yaml");
    scenario::create(&file, "hardened", false).unwrap();
    let loaded = scenario::load(&file).unwrap();
    assert_eq!(loaded.profile, "hardened");
    assert_eq!(loaded.name.as_deref(), Some("my-bug"));
}

#[test]
fn create_refuses_a_name_that_is_not_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("my-bug.txt");
    let e = scenario::create(&file, "hardened", false).unwrap_err();
    assert!(
        e.contains("is not a YAML file name") && e.contains("my-bug.yaml"),
        "{e}"
    );
    assert!(!file.exists());
    let e = scenario::create(&dir.path().join("my-bug"), "hardened", false).unwrap_err();
    assert!(e.contains("is not a YAML file name"), "{e}");
    scenario::create(&dir.path().join("other.yml"), "hardened", false).unwrap();
}

#[test]
fn create_refuses_an_unknown_profile() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.yaml");
    let e = scenario::create(&file, "hardend", false).unwrap_err();
    assert_eq!(
        e,
        "unknown profile `hardend`, expected one of `exchange-4.0`, `hardened`; did you mean `hardened`?"
    );
    assert!(!file.exists());
}

#[test]
fn create_keeps_an_existing_file_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.yaml");
    std::fs::write(&file, "mine").unwrap();
    let e = scenario::create(&file, "hardened", false).unwrap_err();
    assert!(e.contains("already exists") && e.contains("--force"), "{e}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");
    scenario::create(&file, "hardened", true).unwrap();
    scenario::load(&file).unwrap();
}

/// A 10 MiB `send` through lettre reaches IN whole: acknowledged, and
/// byte-identical to what the client sent (the no-loss invariant compares IN
/// with the bytes of the session, after a final recovery).
#[test]
fn a_10_mib_send_arrives_byte_for_byte() {
    use harness::runner::{self, RunOptions};
    let scenario = scenario::parse(
        "claims: [RFC5321-6.1]\nprofile: hardened\nsandbox: { quota: 64MiB }\n\
         connector: { max_message_size: 16MiB, low_water_mark: 1MiB }\n\
         steps:\n  - service: start\n\
         \x20 - send: { from: alice@example.org, to: [bob@example.net], subject: big, body: \"first line\\n\", size: 10MiB }\n\
         \x20   expect: { send_failed: false, files: { imcdata/in: 1, imcdata/work: 0 } }\n",
        Path::new("big.yaml"),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let run = runtime
        .block_on(runner::run(&scenario, &RunOptions::default()))
        .unwrap();
    assert!(run.mismatches.is_empty(), "{:?}", run.mismatches);
    assert!(run.violations.is_empty(), "{:?}", run.violations);
    let history = run.history.to_string();
    assert!(history.contains("send: 250"), "{history}");
}
