//! Logs and metrics. On Lambda (`AWS_LAMBDA_FUNCTION_NAME` set) logs are JSON lines on
//! stdout, which CloudWatch Logs ingests; elsewhere a compact human format on stderr,
//! so stdout stays free for a CLI's output. `RUST_LOG` filters (default `info`): a level
//! (`warn`), or comma-separated `target=level` directives (`info,sluice_aws=debug`), see
//! [`log_filter`].
//!
//! Every log line written while a batch is processed carries the batch's span
//! ([`batch_span`]) as a `span` object: `request_id`, `stage`, `shard`, `batch_size`.
//!
//! Metrics are CloudWatch Embedded Metric Format (EMF) lines on stdout, which
//! CloudWatch Logs turns into metrics without any API call: per batch one line of
//! counters, durations and request units in namespace [`NAMESPACE`] with the dimensions
//! `Function` and `Stage`, and one line per dead-letter reason seen in the batch with
//! the dimensions `Function`, `Stage` and `Reason` (a dimension has one value per line,
//! so each reason needs its own line). Two dimension sets in all keep the number of
//! custom metrics (billed per name and dimension combination) at one per metric and
//! function, plus one per reason that actually occurs.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use sluice_core::stage::outcome::StageStats;
use tracing::Subscriber;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

pub const NAMESPACE: &str = "Sluice";

/// The dimension sets of the batch line and of the per-reason lines.
pub const DIMENSIONS: [&str; 2] = ["Function", "Stage"];
pub const REASON_DIMENSIONS: [&str; 3] = ["Function", "Stage", "Reason"];

/// The metric of the per-reason lines.
pub const DEAD_LETTERS_BY_REASON: &str = "DeadLetters";

/// Installs the global subscriber. Calling it again is harmless (the first one stays).
pub fn init() {
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref().unwrap_or(""));
    let on_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let result = if on_lambda {
        tracing::subscriber::set_global_default(json_subscriber(std::io::stdout, filter))
    } else {
        let compact = tracing_subscriber::fmt()
            .compact()
            .with_max_level(LevelFilter::TRACE)
            .with_writer(std::io::stderr)
            .finish();
        tracing::subscriber::set_global_default(compact.with(filter))
    };
    // Already initialised (tests, or a binary that called init twice): keep the first.
    let _ = result;
}

/// The log filter of a `RUST_LOG` value: a level (`error`, `warn`, `info`, `debug`,
/// `trace`, `off`) for everything, or comma-separated directives `target=level` (a target
/// matches by prefix, e.g. `info,sluice_aws=debug,aws_smithy_runtime=warn`). Blank or
/// unparsable gives `info`, the default, as a missing variable does.
///
/// `tracing_subscriber`'s `Targets`, not `EnvFilter`: the same syntax minus span and
/// field filters (`target[span{field=value}]=level`), which nothing here uses and whose
/// regex engine took ~0.27 MB (3 %) of every Lambda's binary (docs/performance.md,
/// "Cold start and binary size").
pub fn log_filter(spec: &str) -> Targets {
    let default = || Targets::new().with_default(LevelFilter::INFO);
    if spec.trim().is_empty() {
        return default();
    }
    spec.parse().unwrap_or_else(|_| default())
}

/// The Lambda log format: one flat JSON object per event, with the innermost span's
/// fields (the batch's, see [`batch_span`]) as `span`; no timestamp (CloudWatch stamps
/// every line).
pub fn json_subscriber<W>(writer: W, filter: Targets) -> impl Subscriber + Send + Sync
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        // Everything reaches the subscriber; `filter` decides.
        .with_max_level(LevelFilter::TRACE)
        .with_ansi(false)
        .without_time()
        .with_writer(writer)
        .finish()
        .with(filter)
}

/// The span every log line of one invocation is written in. At ERROR level, so that
/// no `RUST_LOG` level that lets a line through filters its span out (a span below the
/// filter's level would vanish, and with it the fields of every WARN line).
pub fn batch_span(request_id: &str, stage: &str, shard: &str, batch_size: usize) -> tracing::Span {
    tracing::error_span!("batch", request_id, stage, shard, batch_size)
}

/// The function name the metrics are dimensioned by: Lambda's `AWS_LAMBDA_FUNCTION_NAME`
/// (unique per deployment, so two stacks in one account never mix their numbers), or
/// `local` outside Lambda.
pub fn function_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".to_owned())
    })
}

/// Units EMF accepts (CloudWatch's `StandardUnit`).
pub const UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// One metric of a batch line.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    pub unit: &'static str,
    pub value: Value,
}

fn count(name: &'static str, n: u64) -> Metric {
    Metric {
        name,
        unit: "Count",
        value: json!(n),
    }
}

/// The metrics of one batch, in the order they appear in the EMF line. Durations and
/// request units appear only where they were measured (a stage whose tables are not
/// metered reports no request units rather than a misleading 0).
pub fn metric_values(stats: &StageStats) -> Vec<Metric> {
    let mut metrics = vec![
        count("RecordsIn", stats.records),
        count("EventsIn", stats.events_in),
        count("RecordsOut", stats.passed_on),
        count("DeadLetters", stats.dead_lettered_total()),
        count("Late", stats.late()),
        count("Duplicates", stats.duplicates),
        count("Counted", stats.counted),
        count("Unenriched", stats.unenriched),
        count("AlertsRaised", stats.alerts_raised),
        count("HistoryReads", stats.history_reads),
        count("ItemsWritten", stats.items_written),
        count("Transactions", stats.transactions),
        count("Conflicts", stats.conflicts),
    ];
    if stats.batches > 0 {
        metrics.push(Metric {
            name: "BatchDuration",
            unit: "Milliseconds",
            value: json!(stats.duration_ms),
        });
    }
    if let Some(age) = stats.iterator_age_ms {
        metrics.push(Metric {
            name: "IteratorAge",
            unit: "Milliseconds",
            value: json!(age),
        });
    }
    for (name, units) in [
        ("ReadRequestUnits", stats.read_units()),
        ("WriteRequestUnits", stats.write_units()),
    ] {
        if let Some(units) = units {
            metrics.push(Metric {
                name,
                unit: "Count",
                value: json!(units),
            });
        }
    }
    metrics
}

/// One EMF document: `dimensions` (name, value) are top-level strings and form the one
/// dimension set of the directive; each metric is declared and present as a number.
fn emf_document(dimensions: &[(&str, &str)], metrics: &[Metric], timestamp_ms: i64) -> String {
    let definitions: Vec<Value> = metrics
        .iter()
        .map(|m| json!({ "Name": m.name, "Unit": m.unit }))
        .collect();
    let names: Vec<&str> = dimensions.iter().map(|(name, _)| *name).collect();
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [names],
                "Metrics": definitions,
            }],
        }),
    );
    for (name, value) in dimensions {
        root.insert((*name).into(), Value::String((*value).to_owned()));
    }
    for m in metrics {
        root.insert(m.name.into(), m.value.clone());
    }
    Value::Object(root).to_string()
}

/// The EMF lines of one batch of `stage` run by `function` (no trailing newlines): the
/// batch line, then one line per dead-letter reason with its count.
pub fn metrics_lines(
    function: &str,
    stage: &str,
    stats: &StageStats,
    timestamp_ms: i64,
) -> Vec<String> {
    let batch = emf_document(
        &[(DIMENSIONS[0], function), (DIMENSIONS[1], stage)],
        &metric_values(stats),
        timestamp_ms,
    );
    let by_reason = stats
        .dead_lettered
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(reason, n)| {
            emf_document(
                &[
                    (REASON_DIMENSIONS[0], function),
                    (REASON_DIMENSIONS[1], stage),
                    (REASON_DIMENSIONS[2], reason.as_str()),
                ],
                &[count(DEAD_LETTERS_BY_REASON, *n)],
                timestamp_ms,
            )
        });
    std::iter::once(batch).chain(by_reason).collect()
}

/// Prints the EMF lines of one batch to stdout.
pub fn emit_metrics(stage: &str, stats: &StageStats) {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    for line in metrics_lines(function_name(), stage, stats, now_ms) {
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use sluice_core::input::envelope::Reason;

    use super::*;

    /// Checks one line against the EMF specification: a JSON object whose `_aws` holds
    /// an integer `Timestamp` (epoch ms) and `CloudWatchMetrics`, a list of directives,
    /// each with a `Namespace` (1–255 characters), `Dimensions` (a list of dimension
    /// sets, each at most 30 names, each name a top-level string member) and `Metrics`
    /// (at most 100, each with a `Name` that is a top-level number or list of at most
    /// 100 numbers, and a `Unit` from the allowed list). Returns the declared names.
    fn check_emf(line: &str) -> Result<Vec<String>, String> {
        if line.contains('\n') {
            return Err("an EMF document is one log event: no newline".into());
        }
        let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        let root = v.as_object().ok_or("the root is not an object")?;
        let meta = root
            .get("_aws")
            .and_then(Value::as_object)
            .ok_or("no _aws object")?;
        let ts = meta
            .get("Timestamp")
            .and_then(Value::as_i64)
            .ok_or("_aws.Timestamp is not an integer")?;
        if ts < 1_000_000_000_000 {
            return Err(format!("Timestamp {ts} is not in epoch milliseconds"));
        }
        let directives = meta
            .get("CloudWatchMetrics")
            .and_then(Value::as_array)
            .ok_or("_aws.CloudWatchMetrics is not a list")?;
        let mut declared = Vec::new();
        for d in directives {
            let ns = d["Namespace"].as_str().ok_or("no Namespace")?;
            if ns.is_empty() || ns.len() > 255 {
                return Err(format!("Namespace {ns:?}"));
            }
            for set in d["Dimensions"]
                .as_array()
                .ok_or("Dimensions is not a list")?
            {
                let set = set.as_array().ok_or("a dimension set is not a list")?;
                if set.len() > 30 {
                    return Err(format!("{} dimensions in a set", set.len()));
                }
                for name in set {
                    let name = name.as_str().ok_or("a dimension name is not a string")?;
                    if !root.get(name).is_some_and(Value::is_string) {
                        return Err(format!("dimension {name} has no string value"));
                    }
                }
            }
            let metrics = d["Metrics"].as_array().ok_or("Metrics is not a list")?;
            if metrics.len() > 100 {
                return Err(format!("{} metrics in one directive", metrics.len()));
            }
            for m in metrics {
                let name = m["Name"].as_str().ok_or("a metric without Name")?;
                if let Some(unit) = m.get("Unit") {
                    let unit = unit.as_str().ok_or("Unit is not a string")?;
                    if !UNITS.contains(&unit) {
                        return Err(format!("{name}: unit {unit:?} is not allowed"));
                    }
                }
                let ok = match root.get(name) {
                    Some(Value::Number(_)) => true,
                    Some(Value::Array(values)) => {
                        values.len() <= 100 && values.iter().all(Value::is_number)
                    }
                    _ => false,
                };
                if !ok {
                    return Err(format!("metric {name} has no numeric value"));
                }
                declared.push(name.to_owned());
            }
        }
        Ok(declared)
    }

    fn busy_batch() -> StageStats {
        let mut stats = StageStats {
            records: 3,
            events_in: 5,
            passed_on: 2,
            counted: 4,
            duplicates: 1,
            conflicts: 1,
            batches: 1,
            duration_ms: 37,
            iterator_age_ms: Some(1_250),
            read_milli_units: Some(2_500),
            write_milli_units: Some(12_000),
            ..StageStats::default()
        };
        stats.dead_letter(Reason::Late);
        stats.dead_letter(Reason::Late);
        stats.dead_letter(Reason::NotJson);
        stats
    }

    #[test]
    fn emf_lines_parse_as_the_specification_requires() {
        let lines = metrics_lines(
            "sluice-aggregate",
            "aggregate",
            &busy_batch(),
            1_767_225_600_000,
        );
        assert_eq!(lines.len(), 3, "the batch line and one per reason");
        let mut all = BTreeSet::new();
        for line in &lines {
            let declared = check_emf(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            all.extend(declared);
        }
        for name in [
            "RecordsIn",
            "RecordsOut",
            "DeadLetters",
            "Late",
            "Duplicates",
            "BatchDuration",
            "IteratorAge",
            "ReadRequestUnits",
            "WriteRequestUnits",
        ] {
            assert!(all.contains(name), "{name} declared: {all:?}");
        }
        // Nothing else passes for EMF: the checker fails on what the spec forbids.
        let batch: Value = serde_json::from_str(&lines[0]).expect("json");
        let mut unvalued = batch.clone();
        unvalued["Late"] = json!("2");
        assert!(check_emf(&unvalued.to_string()).is_err());
        let mut bad_unit = batch.clone();
        bad_unit["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] = json!("Records");
        assert!(check_emf(&bad_unit.to_string()).is_err());
        let mut undimensioned = batch;
        undimensioned
            .as_object_mut()
            .expect("object")
            .remove("Stage");
        assert!(check_emf(&undimensioned.to_string()).is_err());
    }

    #[test]
    fn the_batch_line_carries_the_batch_numbers_under_function_and_stage() {
        let lines = metrics_lines(
            "sluice-aggregate",
            "aggregate",
            &busy_batch(),
            1_767_225_600_000,
        );
        let v: Value = serde_json::from_str(&lines[0]).expect("json");
        let cw = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(cw["Namespace"], "Sluice");
        assert_eq!(cw["Dimensions"], json!([["Function", "Stage"]]));
        assert_eq!(v["_aws"]["Timestamp"], 1_767_225_600_000i64);
        assert_eq!(
            (&v["Function"], &v["Stage"]),
            (&json!("sluice-aggregate"), &json!("aggregate"))
        );
        assert_eq!(v["RecordsIn"], 3);
        assert_eq!(v["EventsIn"], 5);
        assert_eq!(v["RecordsOut"], 2);
        assert_eq!(v["DeadLetters"], 3);
        assert_eq!(v["Late"], 2);
        assert_eq!(v["Duplicates"], 1);
        assert_eq!(v["BatchDuration"], 37);
        assert_eq!(v["IteratorAge"], 1_250);
        assert_eq!(v["ReadRequestUnits"], 2.5);
        assert_eq!(v["WriteRequestUnits"], 12.0);
        let unit_of = |name: &str| {
            cw["Metrics"]
                .as_array()
                .expect("metrics")
                .iter()
                .find(|m| m["Name"] == name)
                .map(|m| m["Unit"].clone())
        };
        assert_eq!(unit_of("IteratorAge"), Some(json!("Milliseconds")));
        assert_eq!(unit_of("RecordsIn"), Some(json!("Count")));
    }

    #[test]
    fn each_dead_letter_reason_gets_its_own_line_with_a_reason_dimension() {
        let lines = metrics_lines("f", "ingest", &busy_batch(), 1_767_225_600_000);
        let by_reason: Vec<(String, u64)> = lines[1..]
            .iter()
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("json");
                assert_eq!(
                    v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
                    json!([["Function", "Stage", "Reason"]])
                );
                (
                    v["Reason"].as_str().expect("reason").to_owned(),
                    v[DEAD_LETTERS_BY_REASON].as_u64().expect("count"),
                )
            })
            .collect();
        // In `Reason`'s order, as `dead_lettered` (a BTreeMap) holds them.
        assert_eq!(
            by_reason,
            vec![("not_json".to_owned(), 1), ("late".to_owned(), 2)]
        );
    }

    #[test]
    fn rust_log_selects_levels_globally_and_per_target() {
        use tracing::Level;
        // Unset, blank or unparsable (a level that is none): info, as documented.
        for spec in ["", "  ", "sluice_aws=verbose", "warn,aws_config=loud"] {
            let f = log_filter(spec);
            assert!(
                f.would_enable("sluice_aws::runtime", &Level::INFO),
                "{spec:?}"
            );
            assert!(
                !f.would_enable("sluice_aws::runtime", &Level::DEBUG),
                "{spec:?}"
            );
        }
        // The template's LogLevel values, in either case.
        for (spec, on, off) in [
            ("error", Level::ERROR, Level::WARN),
            ("WARN", Level::WARN, Level::INFO),
            ("debug", Level::DEBUG, Level::TRACE),
        ] {
            let f = log_filter(spec);
            assert!(f.would_enable("aws_smithy_runtime", &on), "{spec}");
            assert!(!f.would_enable("aws_smithy_runtime", &off), "{spec}");
        }
        assert!(log_filter("trace").would_enable("anything", &Level::TRACE));
        assert!(!log_filter("off").would_enable("anything", &Level::ERROR));
        // A bare word that is no level names a target, as with `EnvFilter`: that
        // target at every level, nothing else.
        let f = log_filter("sluice_aws");
        assert!(f.would_enable("sluice_aws::runtime", &Level::TRACE));
        assert!(!f.would_enable("aws_config", &Level::ERROR));
        // Directives per target (prefix match), the rest at the bare level.
        let f = log_filter("warn,sluice_aws=debug");
        assert!(f.would_enable("sluice_aws::runtime", &Level::DEBUG));
        assert!(!f.would_enable("sluice_aws::runtime", &Level::TRACE));
        assert!(!f.would_enable("aws_smithy_runtime::client", &Level::INFO));
        assert!(f.would_enable("aws_smithy_runtime::client", &Level::WARN));
    }

    #[test]
    fn unmeasured_numbers_are_left_out_not_reported_as_zero() {
        let stats = StageStats {
            records: 1,
            ..StageStats::default()
        };
        let lines = metrics_lines("f", "enrich", &stats, 1_767_225_600_000);
        assert_eq!(lines.len(), 1, "no dead letters, no reason lines");
        let declared = check_emf(&lines[0]).expect("valid");
        for absent in [
            "BatchDuration",
            "IteratorAge",
            "ReadRequestUnits",
            "WriteRequestUnits",
        ] {
            assert!(!declared.iter().any(|d| d == absent), "{absent}");
        }
        assert!(declared.iter().any(|d| d == "RecordsIn"));
    }
}
