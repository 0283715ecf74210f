//! Errors at the binary's edge, run through the built `sluice` (no servers needed):
//!
//! * a missing credential or an endpoint nothing listens on is one line that says which,
//!   and `sluice run` / `sluice setup` fail at once instead of waiting out their
//!   timeouts (120 s for setup);
//! * a terminal escape sequence (ESC ... BEL, DEL) in any user-supplied field of any
//!   input (rules file, reference file, template, events file, command-line arguments)
//!   never reaches stdout or stderr raw.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Sets the window title and rings the bell if printed raw; DEL for good measure.
const HOSTILE: &str = "\u{1b}]0;pwned\u{7}\u{7f}";

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Runs `sluice args` with the AWS environment cleared and then `env` set, killing it
/// after 30 s: a guard against the waits this file checks are gone (setup's is 120 s).
fn sluice(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k.starts_with("SLUICE_") {
            cmd.env_remove(k);
        }
    }
    // No shared config or credentials file of whoever runs the tests.
    let home = std::env::temp_dir().join("sluice-errors-test-no-home");
    cmd.env("HOME", &home)
        .env("AWS_CONFIG_FILE", home.join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("credentials"))
        .env("AWS_REGION", "us-east-1")
        // Not the instance metadata service of whatever machine runs this.
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start sluice");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        stdout.read_to_end(&mut b).map(|_| b)
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        stderr.read_to_end(&mut b).map(|_| b)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            child.kill().expect("kill");
            panic!("sluice {args:?} still ran after 30 s: it waits for what waiting cannot fix");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().expect("stdout thread").expect("read stdout"),
        stderr: err.join().expect("stderr thread").expect("read stderr"),
    }
}

const CREDENTIALS: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
];

/// The lines of stderr that are errors.
fn error_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("error:"))
        .map(str::to_owned)
        .collect()
}

/// Asserts that the command failed with exactly `want` as its error line and that
/// nothing on stderr looks like a Debug dump.
fn assert_fails_with(out: &Output, what: &str, want: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what}: should fail\n{stderr}");
    assert_eq!(error_lines(out), vec![want.to_owned()], "{what}:\n{stderr}");
    for dump in ["DispatchFailure {", "ConnectorError {", "Some(", "\\n"] {
        assert!(!stderr.contains(dump), "{what}: {dump:?} in\n{stderr}");
    }
}

const NO_CREDENTIALS: &str =
    "error: no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE)";

#[test]
fn without_credentials_run_and_setup_say_so_at_once() {
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    for args in [
        &["run", "--until-idle", "1"][..],
        &["setup"][..],
        &["query"][..],
    ] {
        let out = sluice(args, &[("AWS_ENDPOINT_URL", &endpoint)]);
        assert_fails_with(&out, &format!("{args:?}"), NO_CREDENTIALS);
    }
}

#[test]
fn a_closed_port_is_named_and_not_waited_for() {
    let port = closed_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let want = format!(
        "error: cannot connect to {endpoint} (connection refused): is the endpoint running?"
    );
    let mut env = CREDENTIALS.to_vec();
    env.push(("AWS_ENDPOINT_URL", &endpoint));
    for args in [
        &["run", "--until-idle", "1"][..],
        &["setup"][..],
        &["rules", "list"][..],
    ] {
        let out = sluice(args, &env);
        assert_fails_with(&out, &format!("{args:?}"), &want);
    }
    // --endpoint too, and a per-service endpoint names that service's URL.
    let out = sluice(&["setup", "--endpoint", &endpoint], &CREDENTIALS);
    assert_fails_with(&out, "setup --endpoint", &want);
    let mut env = CREDENTIALS.to_vec();
    let other = format!("http://127.0.0.1:{}", closed_port());
    env.push(("AWS_ENDPOINT_URL_KINESIS", &endpoint));
    env.push(("AWS_ENDPOINT_URL_DYNAMODB", &other));
    let out = sluice(&["query"], &env);
    assert_fails_with(
        &out,
        "query",
        &format!("error: cannot connect to {other} (connection refused): is the endpoint running?"),
    );
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sluice-errors-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.to_str().expect("utf-8 path").to_owned()
}

/// No byte below 0x20 but a newline, and no DEL, on stdout or stderr.
fn assert_terminal_safe(case: &str, out: &Output) {
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let bad: Vec<(usize, u8)> = bytes
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, b)| (*b < 0x20 && *b != b'\n') || *b == 0x7f)
            .collect();
        assert!(
            bad.is_empty(),
            "{case}: raw control bytes {bad:?} on {stream}:\n{}",
            String::from_utf8_lossy(bytes)
        );
    }
}

/// A JSON object as text, with `field` set to `value` (added if missing).
fn with_field(base: &str, field: &str, value: serde_json::Value) -> String {
    let mut v: serde_json::Value = serde_json::from_str(base).expect("base JSON");
    v[field] = value;
    v.to_string()
}

/// Variants of a JSON line with the hostile text in `field`: as a string, inside a
/// list (a wrong type whose value an error may print), and as raw bytes in the line.
fn hostile_lines(base: &str, field: &str) -> Vec<(String, String)> {
    let h = serde_json::Value::String(HOSTILE.into());
    let string = with_field(base, field, h.clone());
    let raw = string
        .replace("\\u001b", "\u{1b}")
        .replace("\\u0007", "\u{7}");
    vec![
        (format!("{field}=string"), string),
        (
            format!("{field}=[string]"),
            with_field(base, field, serde_json::json!([h])),
        ),
        (format!("{field}=raw"), raw),
    ]
}

/// The lines that break a JSON lines file as a whole: an unknown field named by
/// the hostile text, a value that is no object, text that is no JSON.
fn hostile_shapes(base: &str) -> Vec<(String, String)> {
    vec![
        (
            "unknown field".into(),
            with_field(base, HOSTILE, serde_json::json!(1)),
        ),
        (
            "not an object".into(),
            serde_json::json!([HOSTILE]).to_string(),
        ),
        ("not JSON".into(), format!("{{{HOSTILE}")),
    ]
}

/// Every field of a rule: the parser's own list, so a new field is covered too.
const RULE_FIELDS: [&str; 17] = sluice_core::detect::rules::FIELDS;

#[test]
fn hostile_rules_files_never_reach_the_terminal_raw() {
    let dir = tempdir();
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let mut env = CREDENTIALS.to_vec();
    env.push(("AWS_ENDPOINT_URL", &endpoint));
    let base = r#"{"id":"r","kind":"zscore","type":"t","window_seconds":60,"stat":"max","op":">","threshold":1}"#;
    let mut cases: Vec<(String, String)> = RULE_FIELDS
        .iter()
        .flat_map(|f| hostile_lines(base, f))
        .collect();
    cases.extend(hostile_shapes(base));
    for (name, line) in &cases {
        let file = write(&dir, "rules.jsonl", &format!("{line}\n"));
        for args in [
            &["rules", "put", "--file", &file][..],
            &["setup", "--rules", &file][..],
            &["demo", "--events", "50", "--rules", &file][..],
        ] {
            let out = sluice(args, &env);
            assert_terminal_safe(&format!("rule {name}: {args:?}"), &out);
        }
    }
}

#[test]
fn hostile_reference_files_never_reach_the_terminal_raw() {
    let dir = tempdir();
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let mut env = CREDENTIALS.to_vec();
    env.push(("AWS_ENDPOINT_URL", &endpoint));
    let base = r#"{"key":"sensor-1","attrs":{"site":"north"}}"#;
    let mut cases: Vec<(String, String)> = ["key", "attrs"]
        .iter()
        .flat_map(|f| hostile_lines(base, f))
        .collect();
    cases.push((
        "attribute name".into(),
        serde_json::json!({"key": "k", "attrs": {HOSTILE: [HOSTILE]}}).to_string(),
    ));
    cases.push((
        "attribute value".into(),
        serde_json::json!({"key": "k", "attrs": {"a": {"x": HOSTILE}}}).to_string(),
    ));
    cases.extend(hostile_shapes(base));
    for (name, line) in &cases {
        let file = write(&dir, "reference.jsonl", &format!("{line}\n"));
        let out = sluice(&["setup", "--reference", &file], &env);
        assert_terminal_safe(&format!("reference {name}"), &out);
        assert!(!out.status.success(), "reference {name}");
    }
}

#[test]
fn hostile_templates_never_reach_the_terminal_raw() {
    let dir = tempdir();
    let bundled = include_str!("../../../template.yaml");
    // YAML double-quoted escapes: ESC, BEL and DEL in the parsed value.
    let y = r#""\e]0;pwned\a\x7f""#;
    let edits: Vec<(&str, &str, String)> = vec![
        (
            "a parameter name",
            "  RawShards:\n    Type: Number",
            format!("  {y}:\n    Type: Number"),
        ),
        (
            "a number default",
            "    Default: 2\n    MinValue: 1\n    Description: Shards of the raw",
            format!("    Default: {y}\n    MinValue: 1\n    Description: Shards of the raw"),
        ),
        (
            "a windows default",
            "    Default: \"60,3600\"",
            format!("    Default: {y}"),
        ),
        (
            "an allowed value",
            "    Default: exactly-once",
            format!("    Default: {y}"),
        ),
        (
            "a resource id",
            "  RawStream:\n    Type: AWS::Kinesis::Stream",
            format!("  {y}:\n    Type: AWS::Kinesis::Stream"),
        ),
        (
            "a resource type",
            "  RawStream:\n    Type: AWS::Kinesis::Stream",
            format!("  RawStream:\n    Type: {y}"),
        ),
        (
            "a stream name",
            "      Name: !Sub \"${NamePrefix}-raw\"",
            format!("      Name: {y}"),
        ),
        (
            "a shard count",
            "      ShardCount: !If [OnDemandStreams, !Ref AWS::NoValue, !Ref RawShards]",
            format!("      ShardCount: {y}"),
        ),
        (
            "a reference",
            "      ShardCount: !If [OnDemandStreams, !Ref AWS::NoValue, !Ref RawShards]",
            format!("      ShardCount: !If [OnDemandStreams, !Ref AWS::NoValue, !Ref {y}]"),
        ),
        (
            "a batch size",
            "            BatchSize: !Ref IngestBatchSize",
            format!("            BatchSize: {y}"),
        ),
        (
            "raw bytes",
            "  RawStream:\n",
            format!("  RawStream:\n    {HOSTILE}: 1\n"),
        ),
    ];
    for (name, from, to) in &edits {
        assert!(
            bundled.contains(from),
            "{name}: {from:?} not in template.yaml"
        );
        let file = write(&dir, "template.yaml", &bundled.replacen(from, to, 1));
        let out = sluice(&["demo", "--events", "50", "--template", &file], &[]);
        assert_terminal_safe(&format!("template {name}"), &out);
    }
}

#[test]
fn hostile_events_files_never_reach_the_terminal_raw() {
    let dir = tempdir();
    let base = r#"{"id":"e","key":"k","type":"t","ts":"2026-01-01T00:00:00Z","value":1.5,"attrs":{"a":"b"}}"#;
    let mut cases: Vec<(String, String)> = ["id", "key", "type", "ts", "value", "attrs"]
        .iter()
        .flat_map(|f| hostile_lines(base, f))
        .collect();
    cases.push((
        "attribute".into(),
        with_field(base, "attrs", serde_json::json!({HOSTILE: HOSTILE})),
    ));
    cases.extend(hostile_shapes(base));
    let all: Vec<&str> = cases.iter().map(|(_, l)| l.as_str()).collect();
    let file = write(&dir, "events.ndjson", &(all.join("\n") + "\n"));
    // Each bad line is a dead letter; the tables and summaries quote keys and types.
    for json in [false, true] {
        let mut args = vec!["demo", "--file", &file];
        if json {
            args.push("--json");
        }
        let out = sluice(&args, &[]);
        assert_terminal_safe(&format!("events {args:?}"), &out);
        assert!(
            out.status.success(),
            "{args:?}: bad events are dead letters, not a failure"
        );
    }
}

#[test]
fn hostile_arguments_never_reach_the_terminal_raw() {
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let mut env = CREDENTIALS.to_vec();
    env.push(("AWS_ENDPOINT_URL", &endpoint));
    let h = HOSTILE;
    let cases: Vec<Vec<&str>> = vec![
        vec!["query", "--key", h, "--type", h],
        vec!["query", "--from", h],
        vec!["query", "--to", h],
        vec!["query", "--window-seconds", h],
        vec!["query", "--prefix", h],
        vec!["query", "--endpoint", h],
        vec!["alerts", "--limit", h],
        vec!["alerts", "--prefix", h],
        vec!["rules", "delete", h],
        vec!["rules", "put", "--file", h],
        vec!["demo", "--file", h],
        vec!["demo", "--scenario", h],
        vec!["query", h],
    ];
    for args in &cases {
        let out = sluice(args, &env);
        assert_terminal_safe(&format!("{args:?}"), &out);
        assert!(!out.status.success(), "{args:?}");
    }
}
