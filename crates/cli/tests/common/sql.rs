//! What the SQL pipeline tests share: the examples with their inputs, and the row lines
//! of an output compared as Flink's oracle compares them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::json_lines;

/// Runs `sluice` with `args`: (exit status success, stdout, stderr).
pub fn run_sluice(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .expect("running sluice");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// The example's pipeline, events and `--reference TABLE=FILE` arguments.
pub fn example(name: &str) -> (String, String, Vec<String>) {
    let dir = examples_dir();
    let path = |f: &str| -> String {
        let p: PathBuf = dir.join(f);
        p.to_str().expect("utf-8 path").to_owned()
    };
    let mut references = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("examples/") {
        let file = entry.expect("entry").file_name();
        let file = file.to_str().expect("utf-8 name");
        if let Some(table) = file
            .strip_prefix(&format!("{name}."))
            .and_then(|rest| rest.strip_suffix(".ndjson"))
            .filter(|t| *t != "events")
        {
            references.push("--reference".to_owned());
            references.push(format!("{table}={}", path(file)));
        }
    }
    (
        path(&format!("{name}.sql")),
        path(&format!("{name}.events.ndjson")),
        references,
    )
}

/// The row lines of an output, each re-serialized (order-free).
pub fn rows(stdout: &str) -> BTreeSet<String> {
    json_lines(stdout)
        .into_iter()
        .filter(|v| v["kind"] == "row")
        .map(|v| v.to_string())
        .collect()
}

/// The rows `sluice sql eval` computes for a pipeline over an events file, as JSON
/// (`{"kind":"row","view":...,"row":{...}}`).
pub fn eval_rows(sql: &str, events: &str) -> Vec<Value> {
    let (ok, stdout, stderr) = run_sluice(&["sql", "eval", sql, "--events", events]);
    assert!(ok, "{stderr}");
    lines_of_kind(&stdout, "row")
}

/// The output's JSON lines of one kind (`"row"`, `"alert"`, `"dead_letter"`, ...).
pub fn lines_of_kind(stdout: &str, kind: &str) -> Vec<Value> {
    json_lines(stdout)
        .into_iter()
        .filter(|v| v["kind"] == kind)
        .collect()
}

/// The last line: the summary.
pub fn summary(stdout: &str) -> Value {
    let last = json_lines(stdout).pop().expect("a summary line");
    assert_eq!(last["kind"], "summary", "{last}");
    last
}

/// Row sets equal, numbers within 1e-9 relative (sums of doubles differ in their last
/// digits with the order partial states are merged in).
pub fn assert_same_rows(stored: &BTreeSet<String>, expected: &BTreeSet<String>, what: &str) {
    fn split(row: &str) -> (String, Vec<f64>) {
        let v: Value = serde_json::from_str(row).expect("JSON");
        let mut named = Vec::new();
        let mut numbers = Vec::new();
        for (k, x) in v["row"].as_object().expect("a row object") {
            match x.as_f64() {
                Some(n) => numbers.push(n),
                None => named.push(format!("{k}={x}")),
            }
        }
        (format!("{} {}", v["view"], named.join(" ")), numbers)
    }
    let stored: BTreeMap<_, _> = stored.iter().map(|r| split(r)).collect();
    let expected: BTreeMap<_, _> = expected.iter().map(|r| split(r)).collect();
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{what}"
    );
    for (key, want) in &expected {
        let got = &stored[key];
        assert_eq!(got.len(), want.len(), "{what}: {key}");
        for (a, b) in got.iter().zip(want) {
            assert!(
                a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()),
                "{what}: {key}: {got:?} != {want:?}"
            );
        }
    }
}
