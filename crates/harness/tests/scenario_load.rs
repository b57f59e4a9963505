//! Loading scenario files: parsing, error locations, the language's rules, sizes and
//! durations, fault forms, session inheritance, discovery, the schema and the scaffold.

use harness::scenario::{
    self, Backend, Duration, Fault, Scenario, ScenarioError, ServiceAction, Size,
};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/scenarios")
        .join(name)
}

fn parse(source: &str) -> Result<Scenario, ScenarioError> {
    scenario::parse(source, Path::new("scenarios/x.yaml"))
}

fn ok(source: &str) -> Scenario {
    parse(source).unwrap_or_else(|e| panic!("expected to parse, got:\n{e}\n--- source:\n{source}"))
}

/// A scenario with `steps` appended after the header (the steps start on line 4).
fn with_steps(steps: &str) -> String {
    format!("claims: [KB-3]\nprofile: exchange-4.0\nsteps:\n{steps}")
}

fn err(source: &str) -> ScenarioError {
    match parse(source) {
        Ok(s) => panic!("expected an error, parsed {s:#?}\n--- source:\n{source}"),
        Err(e) => e,
    }
}

/// Asserts a semantic (rule) error at `line:column` whose message contains `needle`.
#[track_caller]
fn invalid_at(source: &str, line: usize, column: usize, needle: &str) -> ScenarioError {
    let e = err(source);
    assert!(
        matches!(e, ScenarioError::Invalid(_)),
        "expected a rule error, got {e:?}\n{e}"
    );
    assert!(
        e.message().contains(needle),
        "message {:?} lacks {needle:?}\n{e}",
        e.message()
    );
    assert_eq!(
        (e.line(), e.column()),
        (Some(line), Some(column)),
        "wrong location for {needle:?}:\n{e}"
    );
    let rendered = e.to_string();
    assert!(
        rendered.contains(&format!("scenarios/x.yaml:{line}:{column}")),
        "rendering lacks the location:\n{rendered}"
    );
    e
}

/// Asserts a syntax/type error at `line:column` whose message contains `needle`.
#[track_caller]
fn syntax_at(source: &str, line: usize, column: usize, needle: &str) -> ScenarioError {
    let e = err(source);
    assert!(
        matches!(e, ScenarioError::Syntax(_)),
        "expected a syntax error, got {e:?}\n{e}"
    );
    assert!(
        e.message().contains(needle),
        "message {:?} lacks {needle:?}\n{e}",
        e.message()
    );
    assert_eq!(
        (e.line(), e.column()),
        (Some(line), Some(column)),
        "wrong location for {needle:?}:\n{e}"
    );
    e
}

// ---------------------------------------------------------------------------------
// Valid files

#[test]
fn the_brief_example_parses() {
    let s = scenario::load(&fixture("example.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        s.name.as_deref(),
        Some("IN removed after the 354, before the dot")
    );
    assert_eq!(s.claims, ["KB-3", "KB-6"]);
    assert_eq!(s.profile, "exchange-4.0");
    assert_eq!(s.sandbox.quota, Some(Size(64 << 20)));
    assert_eq!(s.connector.low_water_mark, Some(Size(1 << 20)));
    assert_eq!(
        s.connector.command_timeout,
        Some(Duration(std::time::Duration::from_secs(5)))
    );
    assert_eq!(s.steps.len(), 11);
    assert!(matches!(&s.steps[6].fault, Some(Fault::Remove(p)) if p == "imcdata/in"));
    let message = &s.steps[7];
    assert_eq!(message.message.as_deref(), Some("Subject: test\n\nhello\n"));
    assert_eq!(message.session.as_deref(), Some("a"));
    let expect = message.expect.as_ref().unwrap();
    assert_eq!(expect.code, Some(421));
    assert_eq!(
        expect.text.as_deref(),
        Some("Internal Error. Connection Closing.")
    );
    assert_eq!(expect.closed, Some(true));
    let event = &expect.events.as_ref().unwrap()[0];
    assert_eq!(event.id, Some(4055));
    assert!(
        event
            .message
            .as_deref()
            .unwrap()
            .starts_with(r"Unable to move file <root>\imcdata\work\00000001 to")
    );
    assert_eq!(expect.files.as_ref().unwrap()["imcdata/work"], 1);
    assert_eq!(
        expect.absent.as_deref(),
        Some(&["imcdata/in".to_string()][..])
    );
    let when = s.steps[8].when.as_ref().unwrap();
    assert_eq!(
        (when.session.as_deref(), when.after_reply),
        (Some("a"), Some(354))
    );
    assert!(matches!(s.steps[9].fault, Some(Fault::FreeDisk)));
    let stop = s.steps[10].expect.as_ref().unwrap();
    assert_eq!(
        stop.service_error.as_deref().unwrap(),
        [
            r"Could not stop the Microsoft Exchange Internet Mail Connector on \\imc.test",
            "0008: Not enough storage space is available.",
        ]
    );
}

#[test]
fn a_file_using_every_key_parses_to_the_right_values() {
    let s = scenario::load(&fixture("full.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.name.as_deref(), Some("Every key"));
    assert_eq!(
        s.description.as_deref(),
        Some("A scenario that uses every key.\nTwo lines.\n")
    );
    assert_eq!(s.claims, ["KB-3", "RFC5321-4.1.1.4"]);
    assert_eq!(s.profile, "hardened");
    assert_eq!(s.sandbox.quota, Some(Size(512 * 1024)));
    assert_eq!(s.sandbox.backend, Backend::Tmpfs);
    let c = &s.connector;
    assert_eq!(c.hostname.as_deref(), Some("mail.example.org"));
    assert_eq!(c.low_water_mark, Some(Size(2_000_000)));
    assert_eq!(c.max_message_size, Some(Size(1_048_576)));
    assert_eq!(c.max_recipients, Some(5));
    assert_eq!(
        c.command_timeout,
        Some(Duration(std::time::Duration::from_millis(250)))
    );

    let st = &s.steps;
    assert_eq!(st.len(), 26);
    assert_eq!(st[0].service, Some(ServiceAction::Start));
    assert_eq!(st[0].note.as_deref(), Some("start it"));
    assert_eq!(
        st[0].expect.as_ref().unwrap().service_error.as_deref(),
        Some(&[][..])
    );
    assert_eq!(st[1].connect.as_deref(), Some("a"));
    let e1 = st[1].expect.as_ref().unwrap();
    assert_eq!(e1.text_matches.as_deref(), Some(r"^mail\.example\.org "));
    assert_eq!(e1.no_events, Some(true));
    assert_eq!(st[2].command.as_deref(), Some("EHLO client.test"));
    assert_eq!(st[2].expect.as_ref().unwrap().closed, Some(false));
    assert_eq!(
        st[3].pipeline.as_deref().unwrap(),
        [
            "MAIL FROM:<a@example.org>",
            "RCPT TO:<b@example.net>",
            "DATA"
        ]
    );
    let replies = st[3].expect.as_ref().unwrap().replies.as_ref().unwrap();
    assert_eq!(replies.len(), 3);
    assert_eq!(replies[0].enhanced.as_deref(), Some("2.1.0"));
    assert_eq!(replies[1].text.as_deref(), Some("OK"));
    assert_eq!(replies[2].code, Some(354));

    assert!(matches!(&st[4].fault, Some(Fault::Remove(p)) if p == "imcdata/in"));
    assert!(matches!(&st[5].fault,
        Some(Fault::Rename { from, to }) if from == "imcdata/work" && to == "imcdata/work.old"));
    assert!(matches!(&st[6].fault, Some(Fault::Replace(p)) if p == "imcdata/work"));
    assert!(matches!(&st[7].fault, Some(Fault::Restore(p)) if p == "imcdata/work"));
    assert!(matches!(&st[8].fault, Some(Fault::FillDisk { leave }) if *leave == Size(4096)));
    let w8 = st[8].when.as_ref().unwrap();
    assert_eq!(
        (w8.after_reply, w8.after_data_bytes, w8.before_dot),
        (None, Some(100), None)
    );
    assert!(matches!(&st[9].fault, Some(Fault::FreeDisk)));
    assert_eq!(st[9].when.as_ref().unwrap().before_dot, Some(true));
    let Some(Fault::Errno(errno)) = &st[10].fault else {
        panic!("step 11 is an errno fault: {:?}", st[10].fault)
    };
    assert_eq!(errno.op, "sync_dir");
    assert_eq!(errno.path.as_deref(), Some("imcdata/*"));
    assert_eq!(errno.errno, "EIO");
    assert_eq!(errno.nth, Some(2));
    assert!(errno.persistent);
    let w10 = st[10].when.as_ref().unwrap();
    assert_eq!(
        (w10.session.as_deref(), w10.after_reply),
        (Some("b"), Some(354))
    );
    let Some(Fault::Errno(errno)) = &st[11].fault else {
        panic!("step 12 is an errno fault: {:?}", st[11].fault)
    };
    assert_eq!(
        (
            errno.op.as_str(),
            errno.errno.as_str(),
            errno.path.as_deref(),
            errno.nth,
            errno.persistent
        ),
        ("create", "ENOSPC", None, None, false)
    );
    assert!(matches!(&st[12].fault, Some(Fault::ClearErrno)));

    assert_eq!(st[13].data.as_deref(), Some("Subject: part one\n"));
    assert_eq!(st[14].dot, Some(true));
    let e14 = st[14].expect.as_ref().unwrap();
    assert_eq!(e14.code, Some(452));
    assert_eq!(e14.enhanced.as_deref(), Some("4.3.1"));
    assert_eq!(e14.text.as_deref(), Some("Insufficient system storage"));
    let ev = &e14.events.as_ref().unwrap()[0];
    assert_eq!(ev.id, Some(4055));
    assert_eq!(ev.source.as_deref(), Some("MSExchangeIMC"));
    assert_eq!(ev.level.as_deref(), Some("Error"));
    assert_eq!(ev.category.as_deref(), Some("Internal Processing"));
    assert_eq!(
        ev.message.as_deref(),
        Some(r"Unable to move file <root>\imcdata\work\00000001")
    );
    assert_eq!(
        ev.message_matches.as_deref(),
        Some(r"^Unable to move file .*\\imcdata\\")
    );
    let files = e14.files.as_ref().unwrap();
    assert_eq!((files["imcdata/work"], files["imcdata/in"]), (1, 0));
    assert_eq!(
        e14.exists.as_deref().unwrap(),
        ["imcdata/work", "imcdata/work.old"]
    );
    assert_eq!(e14.absent.as_deref().unwrap(), ["imcdata/in"]);

    assert_eq!(st[15].connect.as_deref(), Some("b"));
    assert_eq!(st[16].message.as_deref(), Some("Subject: hi\n\nbody\n"));
    let raw = st[17].raw.as_ref().unwrap();
    assert_eq!((raw.bytes.as_str(), raw.replies), ("NOOP\r\nNOOP\r\n", 2));
    let raw = st[18].raw.as_ref().unwrap();
    assert_eq!((raw.bytes.as_str(), raw.replies), ("QUIT\r\n", 0));
    assert_eq!(st[19].disconnect.as_deref(), Some("a"));
    let send = st[20].send.as_ref().unwrap();
    assert_eq!(send.from, "alice@example.org");
    assert_eq!(send.to, ["bob@example.net", "carol@example.net"]);
    assert_eq!(send.subject.as_deref(), Some("big"));
    assert_eq!(send.body.as_deref(), Some("Hello."));
    assert_eq!(send.size, Some(Size(1 << 20)));
    assert_eq!(st[20].expect.as_ref().unwrap().send_failed, Some(true));
    assert_eq!(st[21].action(), None, "a pure check step");
    assert!(st[21].expect.is_some());
    assert_eq!(
        st[22..]
            .iter()
            .map(|s| s.service.unwrap())
            .collect::<Vec<_>>(),
        [
            ServiceAction::CheckDisk,
            ServiceAction::Restart,
            ServiceAction::Crash,
            ServiceAction::Stop
        ]
    );

    // Session inheritance is resolved: every session action names its session.
    let sessions: Vec<(usize, &str)> = st
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_session_action())
        .map(|(i, s)| (i, s.session.as_deref().expect("resolved")))
        .collect();
    assert_eq!(
        sessions,
        [
            (2, "a"),
            (3, "a"),
            (13, "a"),
            (14, "a"),
            (16, "a"),
            (17, "a"),
            (18, "a")
        ]
    );
    // Steps that are not session actions keep no session.
    assert!(
        st.iter()
            .filter(|s| !s.is_session_action())
            .all(|s| s.session.is_none())
    );
}

#[test]
fn name_defaults_to_the_file_stem() {
    let s = scenario::parse(
        &with_steps("  - service: start\n"),
        Path::new("scenarios/kb-5-recreate.yaml"),
    )
    .unwrap();
    assert_eq!(s.name.as_deref(), Some("kb-5-recreate"));
}

#[test]
fn load_names_a_missing_file() {
    let path = fixture("no-such-file.yaml");
    let e = scenario::load(&path).unwrap_err();
    assert!(matches!(e, ScenarioError::Io { .. }), "{e:?}");
    assert_eq!(e.path(), path);
    assert!(e.to_string().contains("no-such-file.yaml"), "{e}");
    assert_eq!(e.line(), None);
}

// ---------------------------------------------------------------------------------
// YAML and type errors

#[test]
fn a_misspelt_key_names_its_line_column_and_the_expected_keys() {
    let path = fixture("typo.yaml");
    let e = scenario::load(&path).unwrap_err();
    assert!(matches!(e, ScenarioError::Syntax(_)), "{e:?}");
    assert_eq!((e.line(), e.column()), (Some(9), Some(5)), "{e}");
    assert!(
        e.message().starts_with(
            "unknown field `comand`, expected one of `note`, `session`, `service`, `connect`, `command`,"
        ),
        "{}",
        e.message()
    );
    assert!(e.message().ends_with("`when`, `expect`"), "{}", e.message());
    assert_eq!(e.help(), Some("did you mean `command`?"));
    let rendered = e.to_string();
    let expected_head = format!(
        "error: {}\n --> {}:9:5\n  |\n9 |   - comand: DATA\n  |     ^^^^^^ unknown field\n",
        e.message(),
        path.display()
    );
    assert!(
        rendered.starts_with(&expected_head),
        "rendered:\n{rendered}\nexpected to start with:\n{expected_head}"
    );
    assert!(
        rendered.contains("= help: did you mean `command`?"),
        "{rendered}"
    );
}

#[test]
fn a_misspelt_key_deep_inside_is_located() {
    let e = syntax_at(
        &with_steps("  - connect: a\n    expect: { code: 220, colsed: true }\n"),
        5,
        26,
        "unknown field `colsed`",
    );
    assert!(e.message().contains("`closed`"), "{}", e.message());
    assert_eq!(e.help(), Some("did you mean `closed`?"));
    syntax_at(
        "claims: [KB-3]\nprofile: hardened\nsandbox: { quota: 1MiB, backnd: vfs }\nsteps: [{ service: start }]\n",
        3,
        25,
        "unknown field `backnd`, expected one of `quota`, `backend`",
    );
}

#[test]
fn a_wrong_type_names_its_line_and_column() {
    let e = scenario::load(&fixture("wrong-type.yaml")).unwrap_err();
    assert!(matches!(e, ScenarioError::Syntax(_)), "{e:?}");
    assert_eq!((e.line(), e.column()), (Some(8), Some(13)), "{e}");
    assert_eq!(
        e.message(),
        "invalid value `two-twenty`: expected an integer from 0 to 65535"
    );
    assert!(
        e.to_string().contains("8 |       code: two-twenty\n"),
        "{e}"
    );
    assert!(e.to_string().contains("^^^^^^^^^^"), "{e}");

    syntax_at(
        "claims: [KB-3]\nprofile: hardened\nconnector:\n  max_recipients: many\nsteps: [{ service: start }]\n",
        4,
        19,
        "invalid value `many`: expected an integer",
    );
    syntax_at(
        &with_steps("  - connect: a\n  - dot: maybe\n"),
        5,
        10,
        "expected `true` or `false`",
    );
    syntax_at(
        "claims: KB-3\nprofile: hardened\nsteps: [{ service: start }]\n",
        1,
        9,
        "expected a list",
    );
    syntax_at(
        &with_steps("  - connect: [a, b]\n"),
        4,
        14,
        "expected a string, found a list",
    );
}

#[test]
fn unknown_enum_values_are_located() {
    let e = syntax_at(
        &with_steps("  - service: starts\n"),
        4,
        14,
        "unknown variant `starts`, expected one of `start`, `stop`, `restart`, `crash`, `check_disk`",
    );
    assert_eq!(e.help(), Some("did you mean `start`?"));
    syntax_at(
        &with_steps("  - fault: { fil_disk: { leave: 0 } }\n"),
        4,
        14,
        "unknown variant `fil_disk`",
    );
    syntax_at(
        &with_steps("  - fault: freedisk\n"),
        4,
        12,
        "unknown variant `freedisk`",
    );
}

#[test]
fn missing_keys_and_broken_yaml_are_reported() {
    let e = err("claims: [KB-3]\nprofile: hardened\n");
    assert!(matches!(e, ScenarioError::Syntax(_)));
    assert_eq!(e.message(), "missing field `steps`");
    assert!(e.line().is_some());
    syntax_at(
        "claims: [KB-3]\nprofile: hardened\nsteps: [\n",
        3,
        8,
        "this `[` (a flow list) is never closed",
    );
    syntax_at(
        "claims: [KB-3]\nprofile: hardened\nsteps: [{ service: start }]\nprofile: hardened\n",
        4,
        1,
        "duplicate key `profile`",
    );
}

// ---------------------------------------------------------------------------------
// Sizes and durations

fn quota(text: &str) -> Result<Scenario, ScenarioError> {
    parse(&format!(
        "claims: [KB-3]\nprofile: hardened\nsandbox: {{ quota: {text} }}\nsteps: [{{ service: start }}]\n"
    ))
}

fn timeout(text: &str) -> Result<Scenario, ScenarioError> {
    parse(&format!(
        "claims: [KB-3]\nprofile: hardened\nconnector: {{ command_timeout: {text} }}\nsteps: [{{ service: start }}]\n"
    ))
}

#[test]
fn sizes_take_bytes_or_units() {
    let size = |t: &str| {
        quota(t)
            .unwrap_or_else(|e| panic!("{t}: {e}"))
            .sandbox
            .quota
            .unwrap()
            .bytes()
    };
    assert_eq!(size("4096"), 4096);
    assert_eq!(size("4KiB"), 4096);
    assert_eq!(size("4K"), 4096);
    assert_eq!(size("'4096'"), 4096);
    assert_eq!(size("20KB"), 20000);
    assert_eq!(size("10MiB"), 10 << 20);
    assert_eq!(size("1GB"), 1_000_000_000);
    assert_eq!(size("1GiB"), 1 << 30);

    let e = quota("4XB").unwrap_err();
    assert!(matches!(e, ScenarioError::Syntax(_)));
    assert_eq!((e.line(), e.column()), (Some(3), Some(19)), "{e}");
    assert!(e.message().contains("unknown size unit"), "{}", e.message());
    assert!(
        e.message().contains("KiB"),
        "names the valid units: {}",
        e.message()
    );

    for bad in ["MiB", "-4", "[4]", "true", "4.5KiB"] {
        let e = quota(bad).expect_err(bad);
        assert_eq!(e.line(), Some(3), "{bad}: {e}");
    }
    assert!(quota("-4").unwrap_err().message().contains("negative"));
}

#[test]
fn durations_take_units_or_seconds() {
    let secs = |t: &str| {
        timeout(t)
            .unwrap_or_else(|e| panic!("{t}: {e}"))
            .connector
            .command_timeout
            .unwrap()
            .get()
    };
    use std::time::Duration as D;
    assert_eq!(secs("5s"), D::from_secs(5));
    assert_eq!(secs("250ms"), D::from_millis(250));
    assert_eq!(secs("2m"), D::from_secs(120));
    assert_eq!(secs("1h"), D::from_secs(3600));
    assert_eq!(secs("7"), D::from_secs(7));
    assert_eq!(secs("'7'"), D::from_secs(7));

    let e = timeout("5 parsecs").unwrap_err();
    assert_eq!((e.line(), e.column()), (Some(3), Some(31)), "{e}");
    assert!(
        e.message().contains("unknown duration unit"),
        "{}",
        e.message()
    );
    for bad in ["s", "-1", "1.5s", "[5s]"] {
        let e = timeout(bad).expect_err(bad);
        assert_eq!(e.line(), Some(3), "{bad}: {e}");
    }
}

// ---------------------------------------------------------------------------------
// Fault forms

fn fault(text: &str) -> Fault {
    let s = ok(&with_steps(&format!("  - fault: {text}\n")));
    s.steps[0].fault.clone().unwrap()
}

#[test]
fn every_fault_form_parses() {
    assert!(matches!(fault("{ remove: imcdata/in }"), Fault::Remove(p) if p == "imcdata/in"));
    assert!(matches!(fault("\n      remove: imcdata/in"), Fault::Remove(p) if p == "imcdata/in"));
    assert!(matches!(fault("{ replace: imcdata/in }"), Fault::Replace(p) if p == "imcdata/in"));
    assert!(matches!(fault("{ restore: imcdata/in }"), Fault::Restore(p) if p == "imcdata/in"));
    assert!(matches!(
        fault("{ rename: { from: imcdata/in, to: imcdata/in.old } }"),
        Fault::Rename { from, to } if from == "imcdata/in" && to == "imcdata/in.old"
    ));
    assert!(matches!(
        fault("{ fill_disk: { leave: 4KiB } }"),
        Fault::FillDisk { leave: Size(4096) }
    ));
    assert!(matches!(
        fault("{ fill_disk: { leave: 0 } }"),
        Fault::FillDisk { leave: Size(0) }
    ));
    assert!(matches!(fault("free_disk"), Fault::FreeDisk));
    assert!(matches!(fault("clear_errno"), Fault::ClearErrno));
    match fault("{ errno: { op: rename, path: imcdata/in/*, errno: ENOENT } }") {
        Fault::Errno(e) => {
            assert_eq!(e.op, "rename");
            assert_eq!(e.path.as_deref(), Some("imcdata/in/*"));
            assert_eq!(e.errno, "ENOENT");
            assert_eq!((e.nth, e.persistent), (None, false));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn fault_forms_with_wrong_shapes_are_errors() {
    // `rename` needs both ends.
    syntax_at(
        &with_steps("  - fault: { rename: { from: imcdata/in } }\n"),
        4,
        24,
        "missing field `to`",
    );
    syntax_at(
        &with_steps("  - fault: { fill_disk: { leve: 1 } }\n"),
        4,
        27,
        "unknown field `leve`, expected `leave`",
    );
    syntax_at(
        &with_steps("  - fault: { errno: { op: sync, errno: EIO, times: 2 } }\n"),
        4,
        45,
        "unknown field `times`",
    );
}

// ---------------------------------------------------------------------------------
// The language's rules

#[test]
fn steps_and_claims_must_not_be_empty() {
    invalid_at(
        "claims: [KB-3]\nprofile: hardened\nsteps: []\n",
        3,
        8,
        "`steps` is empty",
    );
    invalid_at(
        "claims: []\nprofile: hardened\nsteps: [{ service: start }]\n",
        1,
        9,
        "`claims` is empty",
    );
    invalid_at(
        "claims: [KB-3, '']\nprofile: hardened\nsteps: [{ service: start }]\n",
        1,
        16,
        "claim 2 is empty",
    );
}

#[test]
fn profile_must_be_known() {
    let e = invalid_at(
        "claims: [KB-3]\nprofile: exchange-5.5\nsteps: [{ service: start }]\n",
        2,
        10,
        "unknown profile `exchange-5.5`, expected one of `exchange-4.0`, `hardened`",
    );
    assert_eq!(e.help(), Some("did you mean `exchange-4.0`?"));
    ok("claims: [KB-3]\nprofile: exchange-4.0\nsteps: [{ service: start }]\n");
    ok("claims: [KB-3]\nprofile: hardened\nsteps: [{ service: start }]\n");
}

#[test]
fn a_step_has_exactly_one_action() {
    let e = invalid_at(
        &with_steps("  - connect: a\n  - command: NOOP\n    message: hi\n"),
        6,
        5,
        "the step has 2 actions, `command`, `message`",
    );
    assert_eq!(e.step(), Some(2));
    assert!(
        e.message().starts_with("step 2 (`command`): "),
        "{}",
        e.message()
    );

    let e = invalid_at(
        &with_steps("  - service: start\n  - note: nothing to do\n"),
        5,
        5,
        "the step has no action, expected one of `service`, `connect`,",
    );
    assert_eq!(e.step(), Some(2));
    invalid_at(
        &with_steps("  - service: start\n  - command:\n"),
        5,
        5,
        "step 2: `command` has no value",
    );
    invalid_at(
        &with_steps("  - service: start\n  - command:\n    expect: { code: 250 }\n"),
        5,
        5,
        "step 2 (check): `command` has no value",
    );
    // A step with only `expect` is a check.
    let s = ok(&with_steps(
        "  - note: spool empty\n    expect: { files: { imcdata/in: 0 } }\n",
    ));
    assert_eq!(s.steps[0].action(), None);
}

#[test]
fn when_is_for_fault_steps_and_sets_one_stage() {
    let base = "  - connect: a\n";
    invalid_at(
        &with_steps(&format!(
            "{base}  - command: DATA\n    when: {{ session: a, after_reply: 354 }}\n"
        )),
        6,
        5,
        "step 2 (`command`): `when` is only allowed on `fault` steps",
    );
    invalid_at(
        &with_steps(&format!(
            "{base}  - fault: free_disk\n    when: {{ session: a }}\n"
        )),
        6,
        11,
        "`when` must set one of `after_reply`, `after_data_bytes`, `before_dot`, `before_op`, `after_op`, found none",
    );
    invalid_at(
        &with_steps(&format!(
            "{base}  - fault: free_disk\n    when: {{ session: a, after_reply: 354, after_data_bytes: 10 }}\n"
        )),
        6,
        43,
        "found `after_reply`, `after_data_bytes`",
    );
    invalid_at(
        &with_steps(&format!(
            "{base}  - fault: free_disk\n    when: {{ session: a, before_dot: false }}\n"
        )),
        6,
        37,
        "`before_dot` can only be `true`",
    );
    invalid_at(
        &with_steps(&format!(
            "{base}  - fault: free_disk\n    when: {{ session: '', before_dot: true }}\n"
        )),
        6,
        22,
        "a session name cannot be empty",
    );
    for stage in [
        "after_reply: 354",
        "after_data_bytes: 0",
        "before_dot: true",
    ] {
        let s = ok(&with_steps(&format!(
            "{base}  - fault: free_disk\n    when: {{ session: a, {stage} }}\n"
        )));
        assert!(s.steps[1].when.is_some());
    }
}

#[test]
fn session_is_only_for_session_actions() {
    let e = invalid_at(
        &with_steps("  - connect: a\n    session: a\n"),
        5,
        5,
        "`session` is only allowed on session actions (`command`, `pipeline`, `data`, `dot`, `message`, `raw`)",
    );
    assert!(e.help().unwrap().contains("`connect: a`"));
    invalid_at(
        &with_steps("  - connect: a\n  - fault: free_disk\n    session: a\n"),
        6,
        5,
        "step 2 (`fault`): `session` is only allowed on session actions",
    );
    invalid_at(
        &with_steps("  - connect: a\n  - session: a\n    expect: { code: 250 }\n"),
        5,
        5,
        "step 2 (check): `session` is only allowed",
    );
}

#[test]
fn session_actions_need_a_connected_session() {
    let e = invalid_at(
        &with_steps("  - service: start\n  - command: EHLO x\n"),
        5,
        5,
        "`command` needs a session, and none was connected before",
    );
    assert_eq!(e.step(), Some(2));
    let e = invalid_at(
        &with_steps("  - connect: a\n  - command: EHLO x\n    session: b\n"),
        6,
        14,
        "step 2 (`command`): session `b` is not connected",
    );
    assert!(e.help().unwrap().contains("- connect: b"), "{e}");
    // Connected later is not enough.
    invalid_at(
        &with_steps("  - message: hi\n    session: b\n  - connect: b\n"),
        5,
        14,
        "session `b` is not connected",
    );
    // Disconnected, explicitly or by inheritance.
    invalid_at(
        &with_steps("  - connect: a\n  - disconnect: a\n  - command: QUIT\n    session: a\n"),
        7,
        14,
        "session `a` was disconnected at step 2",
    );
    invalid_at(
        &with_steps("  - connect: a\n  - disconnect: a\n  - dot: true\n"),
        6,
        5,
        "session `a` (the session of the previous session step) was disconnected at step 2",
    );
    invalid_at(
        &with_steps("  - connect: a\n  - disconnect: b\n"),
        5,
        17,
        "session `b` is not connected",
    );
    // Reconnecting makes it usable again.
    let s = ok(&with_steps(
        "  - connect: a\n  - disconnect: a\n  - connect: a\n  - command: NOOP\n",
    ));
    assert_eq!(s.steps[3].session.as_deref(), Some("a"));
}

#[test]
fn sessions_are_inherited_from_the_previous_session_step() {
    let s = ok(&with_steps(concat!(
        "  - connect: a\n",      // 0
        "  - command: EHLO a\n", // 1: a (connect)
        "  - connect: b\n",      // 2
        "  - command: EHLO b\n", // 3: b (the last connect)
        "  - command: MAIL\n",   // 4: a (explicit)
        "    session: a\n",
        "  - pipeline: [RCPT, DATA]\n", // 5: a (inherited from step 4)
        "  - fault: free_disk\n",       // 6: not a session step
        "  - data: x\n",                // 7: a
        "  - dot: true\n",              // 8: a
        "  - raw: { bytes: NOOP }\n",   // 9: a
        "  - message: y\n",             // 10: b (explicit)
        "    session: b\n",
        "  - command: QUIT\n",         // 11: b
        "  - expect: { code: 221 }\n", // 12: check, no session
    )));
    let got: Vec<Option<&str>> = s.steps.iter().map(|s| s.session.as_deref()).collect();
    assert_eq!(
        got,
        [
            None,
            Some("a"),
            None,
            Some("b"),
            Some("a"),
            Some("a"),
            None,
            Some("a"),
            Some("a"),
            Some("a"),
            Some("b"),
            Some("b"),
            None
        ]
    );
}

#[test]
fn errno_faults_name_a_known_operation_and_errno() {
    let e = invalid_at(
        &with_steps("  - fault: { errno: { op: synk, errno: EIO } }\n"),
        4,
        27,
        "unknown operation `synk`, expected one of `create`, `write`, `sync`, `sync_dir`, `rename`, `remove`, `create_dir`, `metadata`, `read_dir`, `available_space`",
    );
    assert_eq!(e.help(), Some("did you mean `sync`?"));
    let e = invalid_at(
        &with_steps("  - fault: { errno: { op: sync, errno: ENOSPACE } }\n"),
        4,
        40,
        "unknown errno `ENOSPACE`, expected one of `ENOSPC`, `EIO`, `ENOENT`, `EACCES`, `EPERM`, `EROFS`, `ENOTDIR`, `EISDIR`, `EEXIST`, `EDQUOT`, `ENOMEM`",
    );
    assert_eq!(e.help(), Some("did you mean `ENOSPC`?"));
    invalid_at(
        &with_steps("  - fault: { errno: { op: sync, errno: EIO, nth: 0 } }\n"),
        4,
        50,
        "`nth` counts from 1",
    );
    invalid_at(
        &with_steps("  - fault: { errno: { op: sync, errno: EIO, path: 'imcdata/[in' } }\n"),
        4,
        51,
        "not a valid glob",
    );
    for op in imc::fs::OpKind::FS {
        for errno in scenario::ERRNOS {
            ok(&with_steps(&format!(
                "  - fault: {{ errno: {{ op: {op}, errno: {errno}, nth: 1 }} }}\n"
            )));
        }
    }
}

#[test]
fn paths_must_stay_relative_to_the_sandbox_root() {
    invalid_at(
        &with_steps("  - fault: { remove: /imcdata/in }\n"),
        4,
        22,
        "`/imcdata/in` is absolute",
    );
    invalid_at(
        &with_steps("  - fault: { rename: { from: imcdata/in, to: ../in } }\n"),
        4,
        46,
        "`../in` leaves the sandbox root",
    );
    invalid_at(
        &with_steps("  - fault: { replace: '' }\n"),
        4,
        23,
        "a path cannot be empty",
    );
    invalid_at(
        &with_steps("  - fault: { restore: imcdata/../../etc }\n"),
        4,
        23,
        "leaves the sandbox root",
    );
    invalid_at(
        &with_steps("  - fault: { errno: { op: sync, errno: EIO, path: /imcdata/** } }\n"),
        4,
        51,
        "is absolute",
    );
    invalid_at(
        &with_steps("  - expect: { files: { imcdata/in: 1, /tmp: 0 } }\n"),
        4,
        39,
        "`/tmp` is absolute",
    );
    invalid_at(
        &with_steps("  - expect:\n      exists: [imcdata/in, '']\n"),
        5,
        28,
        "a path cannot be empty",
    );
    invalid_at(
        &with_steps("  - expect:\n      absent: [imcdata/in, ../x]\n"),
        5,
        28,
        "`../x` leaves the sandbox root",
    );
    // `..` inside a name is fine.
    ok(&with_steps("  - fault: { remove: imcdata/in..old }\n"));
}

#[test]
fn regexes_must_compile() {
    let e = invalid_at(
        &with_steps("  - expect: { text_matches: 'Internal (Error' }\n"),
        4,
        29,
        "invalid regular expression",
    );
    assert!(e.message().contains("unclosed group"), "{}", e.message());
    invalid_at(
        &with_steps(
            "  - expect:\n      events:\n        - id: 1\n        - message_matches: '[a-'\n",
        ),
        7,
        28,
        "invalid regular expression",
    );
    invalid_at(
        &with_steps(
            "  - expect:\n      replies:\n        - code: 250\n        - text_matches: '*'\n",
        ),
        7,
        25,
        "invalid regular expression",
    );
}

#[test]
fn action_values_are_checked() {
    invalid_at(
        &with_steps("  - connect: a\n  - dot: false\n"),
        5,
        10,
        "`dot` can only be `true`",
    );
    invalid_at(
        &with_steps("  - connect: a\n  - pipeline: []\n"),
        5,
        15,
        "`pipeline` is empty",
    );
    invalid_at(
        &with_steps("  - send: { from: a@b.c, to: [] }\n"),
        4,
        30,
        "`send.to` is empty",
    );
    invalid_at(
        &with_steps("  - connect: ''\n"),
        4,
        14,
        "a session name cannot be empty",
    );
}

#[test]
fn enhanced_codes_look_like_class_subject_detail() {
    for good in ["2.0.0", "4.3.1", "5.7.1", "5.1.10"] {
        ok(&with_steps(&format!(
            "  - expect: {{ enhanced: {good} }}\n"
        )));
    }
    for bad in ["4.3", "4.3.1.1", "x.y.z", "3.1.1", "'4 .3.1'", "4.3.1000"] {
        invalid_at(
            &with_steps(&format!("  - expect: {{ enhanced: {bad} }}\n")),
            4,
            25,
            "is not an enhanced status code",
        );
    }
    invalid_at(
        &with_steps("  - expect:\n      replies: [{ code: 250 }, { enhanced: 4.3 }]\n"),
        5,
        44,
        "`4.3` is not an enhanced status code",
    );
}

#[test]
fn a_rule_error_renders_like_a_compiler_error() {
    let e = err(&with_steps(
        "  - connect: a\n  - command: NOOP\n    session: b\n",
    ));
    assert_eq!(
        e.to_string(),
        "error: step 2 (`command`): session `b` is not connected\n\
         \x20--> scenarios/x.yaml:6:14\n\
         \x20 |\n\
         6 |     session: b\n\
         \x20 |              ^ not connected\n\
         \x20 |\n\
         \x20 = help: did you mean `a`? Otherwise connect it in an earlier step: `- connect: b`"
    );
}

// ---------------------------------------------------------------------------------
// Discovery

#[test]
fn discover_expands_folders_sorted_and_keeps_argument_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for f in [
        "b.yaml",
        "a.yml",
        "notes.txt",
        ".hidden.yaml",
        "sub/z.yaml",
        "sub/deeper/c.YAML",
        "a2/x.yaml",
        ".git/y.yaml",
    ] {
        let p = root.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "").unwrap();
    }
    let single = root.join("notes.txt");
    let got = scenario::discover(&[single.clone(), root.to_path_buf()]).unwrap();
    let rel: Vec<String> = got
        .iter()
        .map(|p| p.strip_prefix(root).unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        rel,
        [
            // An explicit file comes first, as given, whatever its extension.
            "notes.txt",
            "a.yml",
            "a2/x.yaml",
            "b.yaml",
            "sub/deeper/c.YAML",
            "sub/z.yaml",
        ]
    );
    // Deterministic, and a file named twice is listed once.
    let again = scenario::discover(&[root.to_path_buf(), root.join("b.yaml")]).unwrap();
    assert_eq!(again, scenario::discover(&[root.to_path_buf()]).unwrap());
    assert_eq!(again.len(), 5);
}

#[test]
fn discover_names_a_missing_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let e = scenario::discover(&[dir.path().to_path_buf(), missing.clone()]).unwrap_err();
    assert!(matches!(e, ScenarioError::Io { .. }), "{e:?}");
    assert_eq!(e.path(), missing);
    assert!(
        e.to_string().contains(&missing.display().to_string()),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------
// Schema and scaffold

#[test]
fn the_committed_schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/schema.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let current = scenario::schema();
    if committed != current {
        if std::env::var_os("UPDATE_SCHEMA").is_some() {
            std::fs::write(&path, &current).unwrap();
        } else {
            panic!(
                "scenarios/schema.json is out of date with the scenario types.\n\
                 Regenerate it with:\n    UPDATE_SCHEMA=1 cargo test -p harness --test scenario_load the_committed_schema_is_current"
            );
        }
    }
}

#[test]
fn the_schema_describes_the_language() {
    let schema: serde_json::Value = serde_json::from_str(&scenario::schema()).unwrap();
    assert_eq!(schema["title"], "imc-harness scenario");
    let required = schema["required"].as_array().unwrap();
    for key in ["claims", "profile", "steps"] {
        assert!(required.iter().any(|r| r == key), "{key} is required");
    }
    assert_eq!(schema["additionalProperties"], false);
    let step = &schema["$defs"]["Step"];
    assert_eq!(step["additionalProperties"], false);
    for key in ["note", "session", "command", "fault", "when", "expect"] {
        assert!(step["properties"].get(key).is_some(), "Step has {key}");
    }
    assert!(schema["$defs"].get("Fault").is_some());

    // The schema's closed lists are the loader's (and the connector's and sandbox's).
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("{v} is a list"))
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        strings(&schema["properties"]["profile"]["enum"]),
        scenario::PROFILES
    );
    let errno = &schema["$defs"]["ErrnoSpec"]["properties"];
    assert_eq!(strings(&errno["errno"]["enum"]), scenario::ERRNOS);
    let ops: Vec<&str> = imc::fs::OpKind::ALL.iter().map(|k| k.name()).collect();
    assert_eq!(strings(&errno["op"]["enum"]), ops);
}

#[test]
fn the_errno_names_are_those_the_sandbox_injects() {
    let names: Vec<&str> = sandbox::Errno::ALL.iter().map(|e| e.name()).collect();
    assert_eq!(scenario::ERRNOS, names.as_slice());
}

#[test]
fn the_scaffold_is_a_valid_commented_scenario() {
    let text = scenario::scaffold("Disk full at the dot", "hardened");
    assert!(text.starts_with('#'), "starts with a comment:\n{text}");
    let s = scenario::parse(&text, Path::new("new.yaml")).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(s.name.as_deref(), Some("Disk full at the dot"));
    assert_eq!(s.profile, "hardened");
    let actions: Vec<&str> = s.steps.iter().map(|s| s.action().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "service", "connect", "command", "command", "command", "command", "message", "command",
            "service"
        ]
    );
    let commands: Vec<&str> = s
        .steps
        .iter()
        .filter_map(|s| s.command.as_deref())
        .collect();
    assert_eq!(
        commands,
        [
            "EHLO client.test",
            "MAIL FROM:<alice@example.org>",
            "RCPT TO:<bob@example.net>",
            "DATA",
            "QUIT"
        ]
    );
    let codes: Vec<Option<u16>> = s
        .steps
        .iter()
        .skip(1)
        .take(7)
        .map(|s| s.expect.as_ref().and_then(|e| e.code))
        .collect();
    assert_eq!(
        codes,
        [
            Some(220),
            Some(250),
            Some(250),
            Some(250),
            Some(354),
            Some(250),
            Some(221)
        ]
    );

    let tricky = "KB-3: a \"quoted\" # not a comment";
    let s = scenario::parse(
        &scenario::scaffold(tricky, "exchange-4.0"),
        Path::new("new.yaml"),
    )
    .unwrap();
    assert_eq!(s.name.as_deref(), Some(tricky));
    assert_eq!(s.profile, "exchange-4.0");
    for name in ["yes", "123", "null", "{name}", "a\nb"] {
        let s = scenario::parse(&scenario::scaffold(name, "hardened"), Path::new("n.yaml"))
            .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        assert_eq!(s.name.as_deref(), Some(name));
    }
}

#[test]
fn target_names_a_target_file_or_imc() {
    let base = "claims: [KB-1]\nprofile: hardened\nsteps: [{ service: start }]\n";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/t.yaml");
    let s = scenario::parse(&format!("target: imc\n{base}"), &path).unwrap();
    assert_eq!(s.target.as_deref(), Some("imc"));
    let s = scenario::parse(
        &format!("target: imc-serve\nsandbox: {{ backend: fuse }}\n{base}"),
        &path,
    )
    .unwrap();
    assert_eq!(s.target.as_deref(), Some("imc-serve"));
    assert!(s.targets_dir.is_some_and(|d| d.ends_with("targets")));

    let e = scenario::parse(
        &format!("target: imc-serv\nsandbox: {{ backend: fuse }}\n{base}"),
        &path,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("t.yaml:1:9"), "{e}");
    assert!(e.contains("unknown target `imc-serv`"), "{e}");
    assert!(e.contains("did you mean `imc-serve`?"), "{e}");

    let e = scenario::parse(&format!("target: imc-serve\n{base}"), &path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("t.yaml:1:9"), "{e}");
    assert!(e.contains("backend `vfs`"), "{e}");
    assert!(e.contains("backend: fuse"), "{e}");
}
