//! A Flink SQL pipeline over real wire protocols: `setup --sql --reference` →
//! `produce --sql --file` → `run --sql --until-idle --json` stores the rows `sluice demo
//! --sql` stores for the same inputs; producing the file again and running again
//! changes no row (a PRIMARY KEY's repeats count once). Needs `eval "$(infra/local/up)"`.
#![cfg(feature = "integration")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// The example's pipeline, events and `--reference TABLE=FILE` arguments.
fn example(name: &str) -> (String, String, Vec<String>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
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
fn rows(stdout: &str) -> BTreeSet<String> {
    json_lines(stdout)
        .into_iter()
        .filter(|v| v["kind"] == "row")
        .map(|v| v.to_string())
        .collect()
}

/// The last line: the summary.
fn summary(stdout: &str) -> Value {
    let last = json_lines(stdout).pop().expect("a summary line");
    assert_eq!(last["kind"], "summary", "{last}");
    last
}

/// Row sets equal, numbers within 1e-9 relative (sums of doubles differ in their last
/// digits with the order partial states are merged in).
fn assert_same_rows(stored: &BTreeSet<String>, expected: &BTreeSet<String>, what: &str) {
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

/// The example through the deployment, twice, against `demo --sql` on the same inputs.
fn wire_matches_demo(name: &str) {
    let (sql, events, references) = example(name);
    let prefix = unique_prefix();
    let lines = std::fs::read_to_string(&events)
        .expect("events")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count() as u64;

    let mut setup = vec!["setup", "--prefix", &prefix, "--sql", &sql];
    setup.extend(references.iter().map(String::as_str));
    let (_, err) = sluice_ok(&setup);
    assert!(err.contains("reference rows"), "{name}: {err}");

    let produce = [
        "produce", "--prefix", &prefix, "--sql", &sql, "--file", &events,
    ];
    let (sent, _) = sluice_ok(&produce);
    assert!(sent.contains(&format!("sent {lines},")), "{name}: {sent}");
    let run = [
        "run",
        "--prefix",
        &prefix,
        "--sql",
        &sql,
        "--until-idle",
        "3",
        "--json",
    ];
    let (ran, err) = sluice_ok(&run);
    let first = rows(&ran);
    let s = summary(&ran);
    assert_eq!(s["events_in"], lines, "{name}: {s}\n{err}");
    assert_eq!(s["rows"], first.len(), "{name}: {s}");
    assert!(!first.is_empty(), "{name}: no rows\n{err}");
    let n = |s: &Value, k: &str| s[k].as_u64().expect(k);
    assert_eq!(
        n(&s, "events_in"),
        n(&s, "counted") + n(&s, "filtered") + n(&s, "dead_letter") + n(&s, "duplicates"),
        "{name}: every event has one fate: {s}"
    );
    assert_eq!(n(&s, "late"), 0, "{name}: {s}");
    let counted = n(&s, "counted");

    let mut demo = vec!["demo", "--sql", &sql, "--file", &events, "--json"];
    demo.extend(references.iter().map(String::as_str));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(&demo)
        .output()
        .expect("demo");
    let demo_out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{name}: demo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_rows(&first, &rows(&demo_out), &format!("{name}: run vs demo"));

    // `sluice query --view` reads each view's rows back from the table.
    let views: BTreeSet<String> = first
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_str(r).expect("JSON");
            v["view"].as_str().expect("view").to_owned()
        })
        .collect();
    let mut queried = BTreeSet::new();
    for view in &views {
        let (out, _) = sluice_ok(&[
            "query", "--prefix", &prefix, "--sql", &sql, "--view", view, "--json",
        ]);
        queried.extend(rows(&out));
    }
    assert_eq!(queried, first, "{name}: query --view");

    // The same file again: a run re-reads the streams from the start and finds every
    // event already counted, the first copy and the second, by its PRIMARY KEY (not
    // judged late); no row changes.
    let (sent, _) = sluice_ok(&produce);
    assert!(sent.contains(&format!("sent {lines},")), "{name}: {sent}");
    let (again, err) = sluice_ok(&run);
    let s = summary(&again);
    assert_eq!(s["events_in"], 2 * lines, "{name}: {s}\n{err}");
    assert_eq!(s["counted"], 0, "{name}: nothing counted twice: {s}");
    assert_eq!(n(&s, "late"), 0, "{name}: {s}");
    assert_eq!(n(&s, "duplicates"), 2 * counted, "{name}: {s}");
    assert_eq!(
        rows(&again),
        first,
        "{name}: rows after the file was sent again"
    );
}

#[test]
fn payments_over_the_wire_stores_the_demo_rows_and_repeats_change_nothing() {
    wire_matches_demo("payments");
}

#[test]
fn clicks_over_the_wire_stores_the_demo_rows_and_repeats_change_nothing() {
    wire_matches_demo("clicks");
}

#[test]
fn run_file_sends_a_sql_source_in_order_and_stores_the_demo_rows() {
    let (sql, events, references) = example("iot");
    let prefix = unique_prefix();
    let mut setup = vec!["setup", "--prefix", &prefix, "--sql", &sql];
    setup.extend(references.iter().map(String::as_str));
    sluice_ok(&setup);
    let (ran, err) = sluice_ok(&[
        "run",
        "--prefix",
        &prefix,
        "--sql",
        &sql,
        "--file",
        &events,
        "--until-idle",
        "3",
        "--json",
    ]);
    // One partition key: no event is late for another shard's skew.
    assert_eq!(summary(&ran)["late"], 0, "{err}");
    let mut demo = vec!["demo", "--sql", &sql, "--file", &events, "--json"];
    demo.extend(references.iter().map(String::as_str));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(&demo)
        .output()
        .expect("demo");
    assert!(out.status.success());
    assert_same_rows(
        &rows(&ran),
        &rows(&String::from_utf8_lossy(&out.stdout)),
        "iot: run --file vs demo",
    );
}
