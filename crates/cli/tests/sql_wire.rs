//! A Flink SQL pipeline over real wire protocols: `setup --sql --reference` →
//! `produce --sql --file` → `run --sql --until-idle --json` stores the rows `sluice demo
//! --sql` stores for the same inputs; producing the file again and running again
//! changes no row (a PRIMARY KEY's repeats count once). Needs `eval "$(infra/local/up)"`.
#![cfg(feature = "integration")]

mod common;

use std::collections::BTreeSet;

use common::sql::*;
use common::*;
use serde_json::Value;

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
