//! `sluice dashboard` over a deployment on the local endpoints: its JSON endpoints
//! answer what `sluice alerts`, `sluice query` and `sluice dead-letters` print. Start
//! the endpoints first:
//!
//! ```sh
//! eval "$(infra/local/up)" && cargo test -p sluice --features integration --test dashboard_e2e
//! ```

#![cfg(feature = "integration")]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::{BASE_MS, dashboard, get, json_lines, sluice_ok, tempdir, unique_prefix};
use serde_json::{Value, json};
use sluice_aws::{DynamoAggregateStore, DynamoAlerts};
use sluice_core::detect::rules::Alert;
use sluice_core::ports::{AggregateStore, AlertStore};
use sluice_core::state::item::{AggregateItem, GroupKey, ItemKey, ItemWrite};
use sluice_core::state::statistics::AggState;
use sluice_core::state::window::WindowSpec;
use sluice_core::time::format_rfc3339;

const MINUTE: i64 = 60_000;

fn write(key: &str, start_ms: i64, values: &[f64]) -> ItemWrite {
    let mut state = AggState::EMPTY;
    values.iter().for_each(|v| state.push(*v));
    let mut item = AggregateItem::new(ItemKey {
        group: GroupKey {
            key: key.into(),
            metric: "temperature".into(),
        },
        window: WindowSpec::tumbling(60),
        start_ms,
    });
    item.state = state;
    item.version = 1;
    ItemWrite {
        item,
        expected_version: 0,
        sealed_page: Vec::new(),
    }
}

/// An alert as the detect stage stores it (built from JSON, so fields added to the
/// contract later keep their defaults).
fn alert(key: &str, start_ms: i64, value: f64) -> Alert {
    serde_json::from_value(json!({
        "kind": "alert",
        "alert_id": Alert::id_for("too-hot", "temperature", key, 60, start_ms),
        "rule_id": "too-hot", "severity": "critical", "key": key, "type": "temperature",
        "window_seconds": 60, "window_start": format_rfc3339(start_ms),
        "stat": "max", "op": ">", "threshold": 30.0, "value": value, "observed": value,
        "count": 2,
    }))
    .expect("alert")
}

fn dead_letter(reason: &str, origin: &str) -> String {
    json!({
        "reason": reason, "detail": "in test", "id": origin, "origin": origin,
        "stage": "ingest", "source_stream": "x-raw", "shard_id": "shardId-000000000000",
        "sequence_number": "1",
    })
    .to_string()
}

#[tokio::test]
async fn the_dashboard_serves_a_deployment_as_the_commands_print_it() {
    let prefix = unique_prefix();
    sluice_ok(&["setup", "--prefix", &prefix, "--shards", "1"]);
    let config = sluice_aws::sdk_config().await;
    let dynamodb = sluice_aws::dynamodb_client(&config);
    let store = DynamoAggregateStore::new(dynamodb.clone(), format!("{prefix}-aggregates"));
    for w in [
        write("sensor-1", BASE_MS, &[20.0, 31.0]),
        write("sensor-1", BASE_MS + MINUTE, &[22.0, 24.0, 26.0]),
        write("sensor-2", BASE_MS, &[18.0]),
    ] {
        store
            .commit(std::slice::from_ref(&w), None)
            .await
            .expect("commit");
    }
    let alerts = DynamoAlerts::new(dynamodb, format!("{prefix}-alerts"));
    for a in [
        alert("sensor-1", BASE_MS, 31.0),
        alert("sensor-1", BASE_MS + MINUTE, 26.0),
    ] {
        alerts.raise(&a).await.expect("raise");
    }
    let dir = tempdir();
    let letters = dir.join("letters.jsonl");
    let missing = dead_letter("missing_field", "s:2:0");
    let lines = [
        dead_letter("not_json", "s:1:0"),
        missing.clone(),
        dead_letter("not_json", "s:3:0"),
        missing,
    ];
    std::fs::write(&letters, lines.join("\n")).expect("write");
    let stream = format!("{prefix}-dead-letter");
    let path = letters.to_str().expect("utf-8");
    sluice_ok(&[
        "produce", "--prefix", &prefix, "--stream", &stream, "--file", path,
    ]);

    let (_server, url) = dashboard(&prefix);

    // /api/alerts is the query function's answer: the alerts `sluice alerts` prints.
    let (status, page) = get(&url, "/api/alerts?limit=50");
    assert_eq!(status, 200, "{page}");
    let printed = json_lines(&sluice_ok(&["alerts", "--prefix", &prefix, "--json"]).0);
    assert_eq!(page["items"], Value::Array(printed));
    assert_eq!(page["items"][0]["window_start"], "2026-01-01T00:01:00Z");

    // /api/aggregates is the query function's answer too; bad input names the parameter.
    let (status, page) = get(
        &url,
        "/api/aggregates?key=sensor-1&type=temperature&window_seconds=60",
    );
    assert_eq!(status, 200, "{page}");
    let printed = json_lines(
        &sluice_ok(&[
            "query",
            "--prefix",
            &prefix,
            "--key",
            "sensor-1",
            "--type",
            "temperature",
            "--json",
        ])
        .0,
    );
    assert_eq!(page["items"], Value::Array(printed));
    let (status, bad) = get(&url, "/api/aggregates?limit=zero");
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["parameter"], "limit");

    // The overview: busiest groups with their windows, dead letters by reason (a
    // letter written twice counts once), stages without the numbers only CloudWatch has.
    let (status, o) = get(&url, "/api/overview");
    assert_eq!(status, 200, "{o}");
    assert_eq!(o["source"], "deployment");
    assert_eq!(o["charts"]["window_seconds"], 60);
    let busiest: Vec<(&str, u64, usize)> = o["charts"]["busiest"]
        .as_array()
        .expect("busiest")
        .iter()
        .map(|g| {
            (
                g["key"].as_str().expect("key"),
                g["events"].as_u64().expect("events"),
                g["points"].as_array().expect("points").len(),
            )
        })
        .collect();
    assert_eq!(busiest, vec![("sensor-1", 5, 2), ("sensor-2", 1, 1)]);
    assert_eq!(
        o["dead_letters"]["by_reason"],
        json!({"missing_field": 1, "not_json": 2})
    );
    assert_eq!(o["dead_letters"]["total"], 3);
    let stages = o["stages"]["rows"].as_array().expect("stages");
    let names: Vec<&str> = stages
        .iter()
        .map(|s| s["stage"].as_str().expect("stage"))
        .collect();
    assert_eq!(names, ["ingest", "enrich", "aggregate", "detect"]);
    assert!(
        stages
            .iter()
            .all(|s| s["records_in"].is_null() && s["iterator_age_ms"].is_null())
    );
    assert!(
        o["stages"]["note"]
            .as_str()
            .expect("note")
            .contains("CloudWatch"),
        "{o}"
    );
    // A second refresh reads only what is new: the counts stay.
    let (_, again) = get(&url, "/api/overview");
    assert_eq!(again["dead_letters"], o["dead_letters"]);
    // The page itself.
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(host).expect("connect");
    write!(s, "GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").expect("send");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("read");
    assert!(
        reply.starts_with("HTTP/1.1 200 OK") && reply.contains("<title>Sluice dashboard</title>")
    );
    // A DNS-rebinding page (its own name re-resolved to 127.0.0.1) sends that name as
    // Host: the deployment's numbers are not given to it.
    let port = host.rsplit(':').next().expect("port");
    let mut s = TcpStream::connect(host).expect("connect");
    write!(
        s,
        "GET /api/overview HTTP/1.1\r\nHost: attacker.example:{port}\r\n\r\n"
    )
    .expect("send");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("read");
    assert!(reply.starts_with("HTTP/1.1 403 Forbidden"), "{reply}");
    assert!(!reply.contains("sensor-1"), "{reply}");
}
