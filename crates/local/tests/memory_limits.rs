//! Limits that only the in-memory adapters can show; the ones both adapters must share
//! are in the conformance suite (`conformance.rs`, `sluice_core::testing::conformance`).
//!
//! - The in-process stream itself (`MemoryStreams::put`, one `PutRecords` request sent
//!   past the sink) refuses a request over a Kinesis limit whole, as Kinesis does:
//!   kinesis-local 0.6.2 accepts 501 records and 6 MiB in one request, so the AWS side
//!   cannot show the request limits at the server (its counterpart is
//!   `crates/aws/tests/server_limits.rs`).
//! - The alerts table's item limit at exactly 409,600 bytes: moto 5.2.5 stops at
//!   405,000, and the alert's stored size is computed here by `alert_item_size`.

use std::sync::Arc;

use sluice_core::detect::rules::{Alert, Op, RuleKind, Severity, Stat};
use sluice_core::input::record::OutRecord;
use sluice_core::ports::{AlertStore, SystemClock};
use sluice_core::state::limits::{dynamodb as ddb, kinesis};
use sluice_core::testing::conformance::assert_limit;
use sluice_core::testing::record;
use sluice_core::{Error, Result};
use sluice_local::store::{MemoryAlerts, alert_item_size};
use sluice_local::streams::MemoryStreams;

const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------- Kinesis

/// Puts `at` (appended) and then `over` (refused with `limit`, `max` and `actual`,
/// nothing appended) straight into a fresh stream.
fn at_and_over(at: Vec<OutRecord>, over: Vec<OutRecord>, limit: &str, max: usize, actual: usize) {
    let s = MemoryStreams::new(Arc::new(SystemClock));
    s.create("s", 2);
    let n = at.len();
    s.put("s", at).expect("at the limit");
    let err = s.put("s", over).expect_err("one over");
    assert_limit(&err, limit, max, actual);
    assert_eq!(s.len("s"), n, "the whole request is refused");
}

#[test]
fn the_stream_refuses_a_record_of_1_mib_and_one_byte() {
    at_and_over(
        vec![record("key", kinesis::MAX_RECORD_BYTES)],
        vec![
            record("ok", 10),
            record("key", kinesis::MAX_RECORD_BYTES + 1),
        ],
        kinesis::LIMIT_RECORD_BYTES,
        MIB,
        kinesis::MAX_RECORD_BYTES + 1,
    );
}

#[test]
fn the_stream_refuses_a_partition_key_of_257_characters_or_none() {
    at_and_over(
        vec![record(&"é".repeat(256), 600)],
        vec![record(&"é".repeat(257), 600)],
        kinesis::LIMIT_PARTITION_KEY,
        256,
        257,
    );
    let s = MemoryStreams::new(Arc::new(SystemClock));
    s.create("s", 2);
    let empty: Result<_> = s.put("s", vec![record("", 10)]);
    assert!(
        matches!(
            empty,
            Err(Error::Remote {
                retryable: false,
                ..
            })
        ),
        "{empty:?}"
    );
}

#[test]
fn the_stream_refuses_a_request_of_501_records() {
    let many = |n: usize| (0..n).map(|i| record(&format!("k{i}"), 20)).collect();
    at_and_over(many(500), many(501), kinesis::LIMIT_RECORDS, 500, 501);
}

#[test]
fn the_stream_refuses_a_request_of_5_mib_and_one_byte() {
    // Four records of 1 MiB, then what decides.
    let request = |tail: &[OutRecord]| -> Vec<OutRecord> {
        let mut r: Vec<OutRecord> = (0..4).map(|i| record(&format!("k{i}"), MIB)).collect();
        r.extend_from_slice(tail);
        r
    };
    at_and_over(
        request(&[record("k4", MIB)]),
        request(&[record("k4", MIB - 2), record("k5", 3)]),
        kinesis::LIMIT_REQUEST_BYTES,
        5 * MIB,
        5 * MIB + 1,
    );
}

// ---------------------------------------------------------------- DynamoDB

fn alert_with_rule(rule_id: String) -> Alert {
    Alert {
        kind: "alert".into(),
        alert_id: "a-1".into(),
        rule_id,
        kind_of_rule: RuleKind::Threshold,
        severity: Severity::Critical,
        key: "sensor-1".into(),
        metric: "temp".into(),
        window_seconds: 60,
        window_start: "2026-01-01T00:00:00Z".into(),
        stat: Stat::Mean,
        op: Some(Op::Gt),
        threshold: 30.0,
        value: 31.5,
        observed: 31.5,
        count: 3,
        previous: None,
        mean: None,
        stddev: None,
        z: None,
        history: None,
        description: String::new(),
        view: None,
        row: None,
    }
}

#[tokio::test]
async fn dynamodb_alert_item_of_400_kb_passes_and_one_byte_more_fails() {
    let alerts = MemoryAlerts::new();
    let base = alert_item_size(&alert_with_rule(String::new())).expect("size");
    let at = alert_with_rule("r".repeat(ddb::MAX_ITEM_BYTES - base));
    assert_eq!(alert_item_size(&at).expect("size"), ddb::MAX_ITEM_BYTES);
    alerts.raise(&at).await.expect("400 KB");
    let mut over = alert_with_rule("r".repeat(ddb::MAX_ITEM_BYTES - base + 1));
    over.alert_id = "a-2".into();
    let err = alerts.raise(&over).await.expect_err("400 KB + 1");
    assert_limit(&err, ddb::LIMIT_ITEM_BYTES, 409_600, 409_601);
    assert_eq!(alerts.alerts().len(), 1, "nothing stored");
}
