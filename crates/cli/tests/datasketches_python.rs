//! APPROX_COUNT_DISTINCT stores its HLL sketch in Apache DataSketches' serialization:
//! sketches built and merged as the aggregate stage builds them (batches of values,
//! repeats, merges into the stored state) are read back by DataSketches for Python
//! (`datasketches` 5.2.0 from PyPI, installed by `infra/sketches/setup`, which the test
//! command runs and which sets `SLUICE_DATASKETCHES_PYTHON`), and give the estimate
//! Sluice reports.
#![cfg(feature = "integration")]

use std::io::Write;
use std::process::{Command, Stdio};

use sluice_core::sql::{AggregateKind, AggregateState, SqlType, Value};

/// The stored state of `values`, built as the aggregate stage builds it: a fresh state
/// per batch of `batch` values, each merged into the stored one.
fn stored(kind: &AggregateKind, values: &[Value], batch: usize) -> AggregateState {
    let mut state = kind.empty();
    for chunk in values.chunks(batch.max(1)) {
        let mut delta = kind.empty();
        for v in chunk {
            kind.add(&mut delta, v)
                .expect("a value of the argument's type");
        }
        kind.merge(&mut state, &delta).expect("same kind");
    }
    state
}

/// The base64 sketch in a state's stored JSON (`{"h":"…"}`).
fn sketch_text(state: &AggregateState) -> String {
    let json: serde_json::Value = serde_json::from_str(&state.to_json()).expect("json");
    json["h"].as_str().expect("an HLL sketch").to_owned()
}

#[test]
fn datasketches_for_python_reads_every_stored_sketch_with_the_estimate_sluice_reports() {
    let python = std::env::var("SLUICE_DATASKETCHES_PYTHON")
        .expect("SLUICE_DATASKETCHES_PYTHON: run `eval \"$(infra/sketches/setup)\"` first");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../infra/sketches/estimate.py"
    );
    let users =
        AggregateKind::new("APPROX_COUNT_DISTINCT", Some(&SqlType::BigInt)).expect("planned");
    let pages =
        AggregateKind::new("APPROX_COUNT_DISTINCT", Some(&SqlType::String)).expect("planned");
    let mut cases: Vec<(String, AggregateKind, AggregateState)> = Vec::new();
    for (n, batch) in [
        (0u64, 10),
        (1, 1),
        (40, 7),
        (300, 50),
        (2_000, 333),
        (50_000, 4_096),
        (400_000, 100_000),
    ] {
        // Every value twice, the repeats in later batches (redelivered events).
        let values: Vec<Value> = (0..n)
            .chain(0..n)
            .map(|i| Value::BigInt((i * 2_654_435_761) as i64))
            .collect();
        cases.push((
            format!("{n} integers"),
            users.clone(),
            stored(&users, &values, batch),
        ));
        let words: Vec<Value> = (0..n)
            .map(|i| Value::String(format!("page-{i}").into()))
            .collect();
        cases.push((
            format!("{n} strings"),
            pages.clone(),
            stored(&pages, &words, batch),
        ));
    }
    let mut child = Command::new(&python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("running DataSketches for Python");
    {
        let stdin = child.stdin.as_mut().expect("stdin");
        for (_, _, state) in &cases {
            writeln!(stdin, "{}", sketch_text(state)).expect("writing");
        }
    }
    let out = child.wait_with_output().expect("its output");
    assert!(out.status.success(), "estimate.py failed");
    let estimates: Vec<f64> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| l.parse().expect("a number"))
        .collect();
    assert_eq!(estimates.len(), cases.len());
    for ((what, kind, state), python) in cases.iter().zip(estimates) {
        let Value::BigInt(ours) = kind.result(state) else {
            panic!("{what}: a BIGINT");
        };
        assert_eq!(ours, python.round() as i64, "{what}: Python reads {python}");
        eprintln!("{what}: {ours} (Python {python})");
    }
}
