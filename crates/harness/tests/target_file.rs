//! Target files: `targets/imc-serve.yaml` loads, the JSON Schema is current,
//! and a malformed file is an error at its line and column.

use harness::target::file::{self, EventSource};
use harness::target::{MessageFormat, TargetFileError};
use std::path::{Path, PathBuf};

fn targets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../targets")
}

fn parse(text: &str) -> Result<file::Loaded, TargetFileError> {
    file::parse(text, Path::new("targets/t.yaml"))
}

const GOOD: &str = "\
command:
  program: imc
  args: [serve, --root, '{root}']
ready: { stdout: '^listening on ' }
spool: { receiving: [imcdata/work], accepted: [imcdata/in] }
events: { json_lines: { path: '{events}' } }
";

#[test]
fn imc_serve_loads() {
    let loaded = file::load(&targets().join("imc-serve.yaml")).unwrap();
    assert_eq!(loaded.name, "imc-serve");
    let f = &loaded.file;
    assert_eq!(f.stop.statuses, [0, 8]);
    assert_eq!(f.spool.accepted, ["imcdata/in"]);
    assert_eq!(f.spool.receiving, ["imcdata/work"]);
    assert_eq!(f.spool.format, MessageFormat::XHeaders);
    assert!(matches!(f.events, EventSource::JsonLines(_)));
    assert_eq!(
        f.command.cargo.as_ref().map(|c| c.package.as_str()),
        Some("imc")
    );
    let args: Vec<&str> = f.command.args.iter().map(|a| a.value.as_str()).collect();
    assert!(
        args.windows(2).any(|w| w == ["--disk-check-interval", "0"]),
        "{args:?}"
    );
}

#[test]
fn defaults_and_name_from_the_file() {
    let loaded = parse(GOOD).unwrap();
    assert_eq!(loaded.name, "t");
    assert_eq!(loaded.file.listen.value, "127.0.0.1:{port}");
    assert_eq!(loaded.file.stop.statuses, [0]);
    assert_eq!(loaded.file.settle.quiet.get().as_millis(), 20);
    assert_eq!(loaded.dir, Path::new("targets"));
}

#[test]
fn the_committed_schema_is_current() {
    let path = targets().join("schema.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let current = file::schema();
    if committed != current {
        if std::env::var_os("UPDATE_SCHEMA").is_some() {
            std::fs::write(&path, &current).unwrap();
        } else {
            panic!(
                "targets/schema.json is out of date with the target file types.\n\
                 Regenerate it with:\n    UPDATE_SCHEMA=1 cargo test -p harness --test target_file the_committed_schema_is_current"
            );
        }
    }
    let schema: serde_json::Value = serde_json::from_str(&current).unwrap();
    assert_eq!(schema["title"], "imc-harness target");
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, ["command", "ready", "spool", "events"]);
}

/// The error, its line and column, and its whole rendering.
fn error(text: &str) -> (TargetFileError, usize, usize, String) {
    let e = parse(text).expect_err("the file must be refused");
    let (line, column) = (e.line().expect("a line"), e.column().expect("a column"));
    let shown = e.to_string();
    (e, line, column, shown)
}

#[test]
fn a_misspelt_key_is_located_with_a_suggestion() {
    let text = GOOD.replace("command:", "comand:");
    let (e, line, column, shown) = error(&text);
    assert_eq!((line, column), (1, 1), "{shown}");
    assert!(e.message().starts_with("unknown field `comand`"), "{shown}");
    assert_eq!(e.help(), Some("did you mean `command`?"));
    assert!(shown.contains("targets/t.yaml:1:1"), "{shown}");
    assert!(shown.contains("comand:"), "{shown}");
}

#[test]
fn a_bad_signal_is_located() {
    let text = format!("{GOOD}stop: {{ signal: SIGTREM }}\n");
    let (e, line, _, shown) = error(&text);
    assert_eq!(line, 7, "{shown}");
    assert!(e.message().contains("unknown variant `SIGTREM`"), "{shown}");
    assert_eq!(e.help(), Some("did you mean `SIGTERM`?"));
}

#[test]
fn an_unknown_placeholder_is_located() {
    let text = GOOD.replace("'{root}'", "'{rot}'");
    let (e, line, column, shown) = error(&text);
    assert_eq!((line, column), (3, 25), "{shown}");
    assert!(
        e.message().contains("unknown placeholder `{rot}`"),
        "{shown}"
    );
    assert_eq!(e.help(), Some("did you mean `{root}`?"));
}

#[test]
fn a_regex_that_does_not_compile_is_located() {
    let text = GOOD.replace("'^listening on '", "'^listening (on'");
    let (e, line, column, shown) = error(&text);
    assert_eq!((line, column), (4, 18), "{shown}");
    assert!(
        e.message().ends_with("does not compile: unclosed group"),
        "{shown}"
    );
    assert!(
        e.message().contains("the regex does not compile"),
        "{shown}"
    );
    let text = format!("{GOOD}redactions: [{{ pattern: '[0-9', replace: x }}]\n");
    let (_, line, _, shown) = error(&text);
    assert_eq!(line, 7, "{shown}");
}

#[test]
fn readiness_must_be_given_one_way() {
    let text = GOOD.replace("{ stdout: '^listening on ' }", "{ timeout: 5s }");
    let e = parse(&text).err().unwrap();
    assert!(
        e.message()
            .contains("neither `stdout`, `port: true` nor `log`"),
        "{e}"
    );
    let text = GOOD.replace("{ stdout: '^listening on ' }", "{ stdout: x, port: true }");
    let (e, line, _, _) = error(&text);
    assert_eq!(line, 4);
    assert!(
        e.message().contains("given 2 ways: `stdout` and `port`"),
        "{e}"
    );
    let text = GOOD.replace("{ stdout: '^listening on ' }", "{ log: x, port: true }");
    let (e, line, _, _) = error(&text);
    assert_eq!(line, 4);
    assert!(
        e.message().contains("given 2 ways: `port` and `log`"),
        "{e}"
    );
}

#[test]
fn readiness_by_a_log_line_is_a_checked_regex() {
    let text = GOOD.replace("{ stdout: '^listening on ' }", "{ log: 'daemon started' }");
    let loaded = parse(&text).unwrap();
    assert_eq!(
        loaded.file.ready.log.as_ref().map(|s| s.value.as_str()),
        Some("daemon started")
    );
    let text = GOOD.replace("{ stdout: '^listening on ' }", "{ log: 'daemon (started' }");
    let (e, line, column, shown) = error(&text);
    assert_eq!((line, column), (4, 15), "{shown}");
    assert!(
        e.message()
            .starts_with("`ready.log`: the regex does not compile"),
        "{shown}"
    );
}

#[test]
fn files_are_written_under_run_only_and_their_placeholders_are_checked() {
    let good = format!(
        "{GOOD}files:\n  - path: '{{run}}/etc/main.cf'\n    text: |\n      queue_directory = {{root}}\n      port = {{port}}\n"
    );
    let loaded = parse(&good).unwrap();
    assert_eq!(loaded.file.files.len(), 1);
    assert_eq!(loaded.file.files[0].path.value, "{run}/etc/main.cf");
    for bad in [
        "'{root}/main.cf'",
        "'/etc/postfix/main.cf'",
        "'{run}/../x'",
        "'{run}/'",
    ] {
        let text = good.replace("'{run}/etc/main.cf'", bad);
        let (e, line, column, shown) = error(&text);
        assert_eq!((line, column), (8, 11), "{bad}: {shown}");
        assert!(
            e.message().contains("must be inside the run's directory"),
            "{bad}: {shown}"
        );
        assert!(e.help().unwrap().contains("{run}/etc/main.cf"), "{shown}");
    }
    let text = good.replace("port = {port}", "port = {prot}");
    let (e, line, _, shown) = error(&text);
    // The text's first line (its block starts there).
    assert_eq!(line, 10, "{shown}");
    assert!(
        e.message()
            .contains("a file's `text`: unknown placeholder `{prot}`"),
        "{shown}"
    );
    assert_eq!(e.help(), Some("did you mean `{port}`?"));
}

#[test]
fn a_group_stop_and_a_log_level_are_read() {
    let text = format!("{GOOD}stop: {{ group: true }}\n").replace(
        "{ json_lines: { path: '{events}' } }",
        "{ log: { path: '{run}/log', pattern: '^(?P<message>.*)$', level: info } }",
    );
    let loaded = parse(&text).unwrap();
    assert!(loaded.file.stop.group);
    assert_eq!(loaded.file.stop.statuses, [0]);
    assert!(
        !parse(GOOD).unwrap().file.stop.group,
        "default: the process only"
    );
    match &loaded.file.events {
        EventSource::Log(l) => assert_eq!(l.level.as_deref(), Some("info")),
        other => panic!("{other:?}"),
    }
    let text = format!("{GOOD}stop: {{ group: yes-please }}\n");
    let (_, line, _, shown) = error(&text);
    assert_eq!(line, 7, "{shown}");
}

#[test]
fn postfix_loads() {
    let loaded = file::load(&targets().join("postfix.yaml")).unwrap();
    assert_eq!(loaded.name, "postfix");
    let f = &loaded.file;
    assert_eq!(f.spool.format, MessageFormat::PostfixQueue);
    assert_eq!(f.spool.accepted[0], "hold");
    assert!(f.stop.group);
    assert_eq!(f.command.program, "/usr/bin/unshare");
    assert!(f.ready.log.is_some());
    let paths: Vec<&str> = f.files.iter().map(|f| f.path.value.as_str()).collect();
    assert_eq!(paths, ["{run}/etc/main.cf", "{run}/etc/master.cf"]);
    assert!(matches!(f.events, EventSource::Log(_)));
}

#[test]
fn a_log_pattern_needs_a_message_group() {
    let text = GOOD.replace(
        "{ json_lines: { path: '{events}' } }",
        "{ log: { path: '{run}/log', pattern: '^(?P<text>.*)$' } }",
    );
    let (e, line, _, _) = error(&text);
    assert_eq!(line, 6);
    assert!(e.message().contains("no group named `message`"), "{e}");
}

#[test]
fn a_spool_directory_may_not_leave_the_root() {
    let text = GOOD.replace("accepted: [imcdata/in]", "accepted: [../in]");
    let e = parse(&text).err().unwrap();
    assert!(e.message().contains("leaves the root"), "{e}");
}

#[test]
fn placeholders_expand() {
    let p = file::Placeholders {
        root: "/r".into(),
        port: 2525,
        events: "/x/events".into(),
        run: "/x".into(),
    };
    assert_eq!(
        p.expand("{root}|127.0.0.1:{port}|{events}|{run}/log|{{port}}"),
        "/r|127.0.0.1:2525|/x/events|/x/log|{port}"
    );
}
