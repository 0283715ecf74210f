//! Logs and metrics. On Lambda (`AWS_LAMBDA_FUNCTION_NAME` set) logs are JSON lines on
//! stdout, which CloudWatch Logs ingests; elsewhere a compact human format on stderr,
//! so stdout stays free for a CLI's output. `RUST_LOG` filters (default `info`).
//!
//! Metrics are CloudWatch Embedded Metric Format lines on stdout: one JSON object per
//! batch, which CloudWatch turns into metrics in namespace `Sluice`, dimension `Stage`,
//! without any API call.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use sluice_core::envelope::Reason;
use sluice_core::outcome::StageStats;
use tracing_subscriber::EnvFilter;

pub const NAMESPACE: &str = "Sluice";

/// Installs the global subscriber. Calling it again is harmless (the first one stays).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let on_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let result = if on_lambda {
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter(filter)
            .with_current_span(false)
            .with_ansi(false)
            .without_time() // CloudWatch stamps every line
            .with_writer(std::io::stdout)
            .try_init()
    } else {
        tracing_subscriber::fmt()
            .compact()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init()
    };
    // Already initialised (tests, or a binary that called init twice): keep the first.
    let _ = result;
}

/// The metrics of one batch, in the order they appear in the EMF line.
pub fn metric_values(stats: &StageStats) -> [(&'static str, u64); 12] {
    [
        ("Records", stats.records),
        ("EventsIn", stats.events_in),
        ("PassedOn", stats.passed_on),
        ("DeadLettered", stats.dead_lettered_total()),
        (
            "Late",
            stats
                .dead_lettered
                .iter()
                .filter(|(reason, _)| **reason == Reason::Late)
                .map(|(_, n)| *n)
                .sum(),
        ),
        ("Duplicates", stats.duplicates),
        ("Counted", stats.counted),
        ("Unenriched", stats.unenriched),
        ("AlertsRaised", stats.alerts_raised),
        ("ItemsWritten", stats.items_written),
        ("Transactions", stats.transactions),
        ("Conflicts", stats.conflicts),
    ]
}

/// One EMF JSON object for `stage` (no trailing newline).
pub fn metrics_line(stage: &str, stats: &StageStats, timestamp_ms: i64) -> String {
    let values = metric_values(stats);
    let definitions: Vec<Value> = values
        .iter()
        .map(|(name, _)| json!({ "Name": name, "Unit": "Count" }))
        .collect();
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Stage"]],
                "Metrics": definitions,
            }],
        }),
    );
    root.insert("Stage".into(), Value::String(stage.to_owned()));
    for (name, value) in values {
        root.insert(name.into(), json!(value));
    }
    Value::Object(root).to_string()
}

/// Prints the EMF line of one batch to stdout.
pub fn emit_metrics(stage: &str, stats: &StageStats) {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    println!("{}", metrics_line(stage, stats, now_ms));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_line_declares_and_carries_every_metric() {
        let mut stats = StageStats {
            records: 3,
            events_in: 5,
            counted: 4,
            conflicts: 1,
            ..StageStats::default()
        };
        stats.dead_letter(Reason::Late);
        stats.dead_letter(Reason::Late);
        let line = metrics_line("aggregate", &stats, 1_767_225_600_000);
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).expect("json");
        let cw = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(cw["Namespace"], "Sluice");
        assert_eq!(cw["Dimensions"], json!([["Stage"]]));
        assert_eq!(v["_aws"]["Timestamp"], 1_767_225_600_000i64);
        assert_eq!(v["Stage"], "aggregate");
        let declared: Vec<&str> = cw["Metrics"]
            .as_array()
            .expect("array")
            .iter()
            .map(|m| m["Name"].as_str().expect("name"))
            .collect();
        assert_eq!(declared.len(), 12);
        for name in &declared {
            assert!(v[*name].is_u64(), "{name} has a value");
        }
        assert_eq!(v["Records"], 3);
        assert_eq!(v["EventsIn"], 5);
        assert_eq!(v["Counted"], 4);
        assert_eq!(v["DeadLettered"], 2);
        assert_eq!(v["Late"], 2);
        assert_eq!(v["Conflicts"], 1);
    }
}
