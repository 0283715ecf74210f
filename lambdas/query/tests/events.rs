//! Every function URL payload in `events/query/` through the handler, over in-memory
//! tables with a fixed content: each asserts the status and the body.

use std::sync::Arc;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use serde_json::{Value, json};
use sluice_core::detect::rules::{Alert, Op, RuleKind, Severity, Stat};
use sluice_core::ports::{AggregateStore, AlertStore};
use sluice_core::state::item::{AggregateItem, GroupKey, ItemKey, ItemWrite};
use sluice_core::state::statistics::AggState;
use sluice_core::state::window::WindowSpec;
use sluice_core::time::format_rfc3339;
use sluice_local::readers::{MemoryAggregateReader, MemoryAlertReader};
use sluice_local::store::{MemoryAggregateStore, MemoryAlerts};

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/// Temperature (and humidity) of two sensors, 60 s windows 00:00 to 00:04; window `i`
/// of sensor-001's temperature counted the values `20, 21, …, 20 + i`.
async fn tables() -> (MemoryAggregateReader, MemoryAlertReader) {
    let store = Arc::new(MemoryAggregateStore::new());
    for (key, metric) in [
        ("sensor-001", "temperature"),
        ("sensor-001", "humidity"),
        ("sensor-002", "temperature"),
    ] {
        for i in 0..5 {
            let mut item = AggregateItem::new(ItemKey {
                group: GroupKey {
                    key: key.into(),
                    metric: metric.into(),
                },
                window: WindowSpec::tumbling(60),
                start_ms: T0 + i * 60_000,
            });
            item.version = 1;
            item.state = (0..=i).map(|v| 20.0 + v as f64).collect::<AggState>();
            let w = ItemWrite {
                item,
                expected_version: 0,
                sealed_page: Vec::new(),
            };
            store.commit(&[w], None).await.expect("commit");
        }
    }
    let alerts = Arc::new(MemoryAlerts::new());
    for alert in alerts_raised() {
        alerts.raise(&alert).await.expect("raise");
    }
    (
        MemoryAggregateReader::new(store),
        MemoryAlertReader::new(alerts),
    )
}

/// Three critical alerts (windows 00:00, 00:01, 00:02) and one warning.
fn alerts_raised() -> Vec<Alert> {
    [
        (0, "critical"),
        (1, "critical"),
        (2, "critical"),
        (2, "warning"),
    ]
    .into_iter()
    .map(|(i, severity)| {
        let rule = if severity == "critical" {
            "too-hot"
        } else {
            "warm"
        };
        let start = T0 + i * 60_000;
        Alert {
            kind: "alert".into(),
            alert_id: Alert::id_for(rule, "temperature", "sensor-001", 60, start),
            rule_id: rule.into(),
            kind_of_rule: RuleKind::Threshold,
            severity: Severity::parse(severity).expect("a severity"),
            key: "sensor-001".into(),
            metric: "temperature".into(),
            window_seconds: 60,
            window_start: format_rfc3339(start),
            stat: Stat::Max,
            op: Some(Op::Gt),
            threshold: 21.0,
            value: 22.0,
            observed: 22.0,
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
    })
    .collect()
}

async fn invoke(payload: &str) -> (StatusCode, Value) {
    let (aggregates, alerts) = tables().await;
    let request = lambda_http::request::from_str(payload).expect("a function URL payload");
    let response: Response<Body> = sluice_query::handle(&aggregates, &alerts, request)
        .await
        .expect("never fails");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = match response.body() {
        Body::Text(t) => serde_json::from_str(t).expect("JSON"),
        other => panic!("a text body, got {other:?}"),
    };
    (response.status(), body)
}

fn event(name: &str) -> String {
    let path = format!("{}/../../events/query/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn alert_json(severity: &str, i: i64) -> Value {
    let alert = alerts_raised()
        .into_iter()
        .find(|a| {
            a.severity.as_str() == severity && a.window_start == format_rfc3339(T0 + i * 60_000)
        })
        .expect("raised");
    serde_json::to_value(alert).expect("JSON")
}

#[tokio::test]
async fn a_group_query_returns_its_windows_in_the_range() {
    let (status, body) = invoke(&event("aggregates-group.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let window = |i: i64, mean: f64, variance: f64| {
        let n = i as f64 + 1.0;
        json!({
            "kind": "aggregate", "key": "sensor-001", "type": "temperature",
            "window_seconds": 60, "window_start": format_rfc3339(T0 + i * 60_000),
            "count": i + 1, "sum": mean * n, "min": 20.0, "max": 20.0 + i as f64,
            "mean": mean, "variance": variance
        })
    };
    assert_eq!(
        body,
        json!({
            "items": [
                window(1, 20.5, 0.25),
                window(2, 21.0, 2.0 / 3.0),
                window(3, 21.5, 1.25),
            ],
            "next": null
        })
    );
}

#[tokio::test]
async fn alerts_page_through_with_the_token_of_the_first_page() {
    let (status, first) = invoke(&event("alerts-page-1.json")).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(
        first["items"],
        json!([alert_json("critical", 2), alert_json("critical", 1)])
    );
    let token = first["next"].as_str().expect("a next token");

    // The second payload carries exactly the token the first page returned.
    let second_payload = event("alerts-page-2.json");
    let carried: Value = serde_json::from_str(&second_payload).expect("JSON");
    assert_eq!(
        carried["queryStringParameters"]["next"].as_str(),
        Some(token),
        "events/query/alerts-page-2.json carries the first page's token"
    );
    let (status, second) = invoke(&second_payload).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(
        second,
        json!({"items": [alert_json("critical", 0)], "next": null})
    );
}

#[tokio::test]
async fn recent_alerts_are_every_alert_newest_window_first() {
    let (status, body) = invoke(&event("alerts-recent.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ids: Vec<&str> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|a| a["alert_id"].as_str().expect("alert_id"))
        .collect();
    assert_eq!(
        ids,
        [
            "too-hot|temperature#sensor-001|60#2026-01-01T00:02:00Z",
            "warm|temperature#sensor-001|60#2026-01-01T00:02:00Z",
            "too-hot|temperature#sensor-001|60#2026-01-01T00:01:00Z",
            "too-hot|temperature#sensor-001|60#2026-01-01T00:00:00Z",
        ]
    );
    assert_eq!(body["next"], Value::Null);
}

#[tokio::test]
async fn bad_parameters_are_400_naming_the_parameter() {
    for (name, parameter, says) in [
        ("bad-window-seconds.json", "window_seconds", "\"sixty\""),
        ("bad-since.json", "since", "\"yesterday\" is not a time"),
        ("repeated-limit.json", "limit", "given twice"),
    ] {
        let (status, body) = invoke(&event(name)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {body}");
        assert_eq!(body["parameter"], parameter, "{name}");
        let error = body["error"].as_str().expect("a message");
        assert!(error.contains(says), "{name}: {error}");
    }
}

#[tokio::test]
async fn unknown_paths_are_404_and_posts_405() {
    let (status, body) = invoke(&event("unknown-path.json")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"error": "no route \"/metrics\": use /aggregates or /alerts"})
    );
    let (status, body) = invoke(&event("post-not-allowed.json")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        body,
        json!({"error": "method \"POST\" is not allowed: use GET"})
    );
}

#[test]
fn every_payload_in_events_query_is_tested_here() {
    let dir = format!("{}/../../events/query", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("events/query")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let source = include_str!("events.rs");
    for name in &names {
        assert!(
            source.contains(&format!("\"{name}\"")),
            "{name} has no test in lambdas/query/tests/events.rs"
        );
    }
    assert_eq!(names.len(), 9);
}
