//! `sluice bench --stage`: one stage's handler alone, on Lambda-shaped batches.
//!
//! Each stage is built by its Lambda crate's own constructor (`sluice_<stage>::handler`,
//! the binary's code path) over in-memory ports, with the configuration the template
//! gives its function. Its input is what the stage before it emits: the raw batches are
//! synthetic producer envelopes; every later stage's batches are the previous stage's
//! output for those batches, collected from its in-memory output stream. Every batch is
//! a `KinesisEvent` serialized as Lambda sends it (base64 data, real envelopes), built
//! before any timing starts. A timed batch is what the Lambda runtime does with an
//! invocation: deserialize the event JSON (base64 decoding included) into the
//! `KinesisBatch` the Lambdas read, then `sluice_core::stage::lambda_event::handle_batch`.
//! Single-threaded: the caller runs this on a
//! current-thread runtime.

use sluice_core::stage::sql::SqlPipeline;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use aws_lambda_events::encodings::Base64Data;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sluice_core::config::{
    AggregateConfig, Delivery, DetectConfig, EnrichConfig, EnvReader, IngestConfig, env,
};
use sluice_core::detect::rules::{Alert, Rule, parse_rules};
use sluice_core::ports::{AlertStatus, Attrs, Clock, SystemClock};
use sluice_core::resources;
use sluice_core::stage::Stage;
use sluice_core::stage::lambda_event::KinesisBatch;
use sluice_local::store::{
    MemoryAggregateStore, MemoryAlerts, MemoryReference, MemoryRules, alert_item_size,
};
use sluice_local::streams::MemoryStreams;
use sluice_local::template::{FunctionSpec, Template};

use crate::pipeline::STAGES;

/// A Kinesis PUT payload unit: 25 KB of a record's data and partition key.
pub const PUT_PAYLOAD_UNIT_BYTES: usize = 25 * 1024;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageChoice {
    Ingest,
    Enrich,
    Aggregate,
    Detect,
    All,
}

impl StageChoice {
    /// The stages to time, in pipeline order.
    pub fn stages(self) -> Vec<&'static str> {
        match self {
            StageChoice::Ingest => vec!["ingest"],
            StageChoice::Enrich => vec!["enrich"],
            StageChoice::Aggregate => vec!["aggregate"],
            StageChoice::Detect => vec!["detect"],
            StageChoice::All => STAGES.to_vec(),
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct StageArgs {
    /// Time one stage's handler alone (or all four, one after the other) instead of the
    /// whole pipeline.
    #[arg(long, value_enum)]
    pub stage: Option<StageChoice>,
    /// Producer records (events) per raw batch.
    #[arg(long, default_value_t = 10_000)]
    pub records: usize,
    /// Timed batches per stage.
    #[arg(long, default_value_t = 10)]
    pub batches: usize,
    /// Untimed batches before them.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Distinct aggregation keys the events spread over.
    #[arg(long, default_value_t = 100)]
    pub keys: usize,
    /// Size of one producer envelope in bytes (padded with an attribute).
    #[arg(long, default_value_t = 150)]
    pub record_bytes: usize,
    /// Delivery mode of the aggregate stage (default: the template's, exactly-once).
    #[arg(long)]
    pub delivery: Option<Delivery>,
    /// Event time one batch covers, in seconds (60: each key's minute window is merged
    /// once per batch).
    #[arg(long, default_value_t = 60)]
    pub batch_seconds: u32,
    /// Also run infra/bench/python_handler.py on the same raw batches and print the
    /// ratio of ingest and aggregate to it.
    #[arg(long)]
    pub compare_python: bool,
    /// The Python interpreter for --compare-python.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Write the raw batches (one Lambda event JSON per line) to this file.
    #[arg(long, value_name = "FILE")]
    pub write_events: Option<PathBuf>,
    /// Run the stages under this Flink SQL pipeline (e.g. examples/envelope.sql, which
    /// reads the benchmark's envelopes; their `ts` is then written in ISO 8601).
    #[arg(long, value_name = "FILE.sql")]
    pub sql: Option<PathBuf>,
}

/// A pipeline the stages run under, in a [`Spec`].
#[derive(Clone)]
pub struct SqlBench(pub Arc<SqlPipeline>);

impl std::fmt::Debug for SqlBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqlBench({} stored views)", self.0.views.len())
    }
}

/// The shape of a stage benchmark.
#[derive(Clone, Debug)]
pub struct Spec {
    pub records: usize,
    pub batches: usize,
    pub warmup: usize,
    pub keys: usize,
    pub record_bytes: usize,
    pub delivery: Delivery,
    pub batch_span_ms: i64,
    /// The stages run under a SQL pipeline (`--sql`).
    pub sql: Option<SqlBench>,
}

impl StageArgs {
    pub fn spec(&self) -> Spec {
        Spec {
            records: self.records.max(1),
            batches: self.batches.max(1),
            warmup: self.warmup,
            keys: self.keys.max(1),
            record_bytes: self.record_bytes,
            delivery: self.delivery.unwrap_or(Delivery::ExactlyOnce),
            batch_span_ms: i64::from(self.batch_seconds.max(1)) * 1000,
            sql: None,
        }
    }
}

/// What one stage did on its timed batches. The `*_per_event` figures divide by the
/// events the stage received (window updates for detect), not by producer events.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StageMeasure {
    pub stage: String,
    pub delivery: String,
    /// Events (JSON lines) the stage processed in its timed batches.
    pub records: u64,
    /// Kinesis records those events came in (stages pack lines per key).
    pub kinesis_records: u64,
    pub batches: u64,
    pub records_per_sec: f64,
    pub ns_per_record: f64,
    pub batch_ms_p50: f64,
    pub batch_ms_p99: f64,
    /// Table item writes (aggregates for aggregate, alerts for detect) per event.
    pub store_writes_per_event: f64,
    pub store_write_units_per_event: f64,
    pub store_read_units_per_event: f64,
    /// Events this stage wrote to its output stream per event it received.
    pub out_events_per_event: f64,
    /// Kinesis records (and PUT payload units) it wrote per event it received.
    pub out_records_per_event: f64,
    pub out_put_units_per_event: f64,
    /// The same records in 1 KB units (each record rounded up), as Kinesis on-demand
    /// bills data in and out.
    #[serde(default)]
    pub out_kib_per_event: f64,
    /// Bytes (data and partition key) of those records per event it received: what the
    /// next stage's invocation payload carries, base64-encoded.
    #[serde(default)]
    pub out_bytes_per_event: f64,
    pub dead_letters: u64,
    /// High-water mark of the process's resident memory while this stage ran (reset
    /// before it, where the kernel allows); includes its prepared input batches.
    pub peak_rss_bytes: Option<u64>,
}

/// A stage's output, one batch at a time: what the next stage is fed.
type Outputs = Vec<Vec<(String, Vec<u8>)>>;

/// `n / events`, 0 for no events.
pub fn per_event(n: f64, events: u64) -> f64 {
    if events == 0 { 0.0 } else { n / events as f64 }
}

/// PUT payload units of one record: its data and partition key in 25 KB units (at
/// least one).
pub fn put_units(partition_key: &str, data: &[u8]) -> u64 {
    (partition_key.len() + data.len())
        .div_ceil(PUT_PAYLOAD_UNIT_BYTES)
        .max(1) as u64
}

/// 1 KB units of one record (rounded up, at least one): Kinesis on-demand's billing.
pub fn kib_units(partition_key: &str, data: &[u8]) -> u64 {
    (partition_key.len() + data.len()).div_ceil(1024).max(1) as u64
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One producer envelope, `record_bytes` long when that is more than the bare
/// envelope (an `attrs.pad` attribute makes up the difference). Event `i` belongs to
/// batch `i / records`; each batch covers `batch_span_ms` of event time from `start_ms`.
pub fn envelope(i: u64, spec: &Spec, start_ms: i64) -> String {
    let records = spec.records as u64;
    let batch = (i / records) as i64;
    let within = (i % records) as i64;
    let ts = start_ms + batch * spec.batch_span_ms + within * spec.batch_span_ms / records as i64;
    let key = i % spec.keys as u64;
    let value = ((i * 7919) % 1000) as f64 / 10.0;
    let ts = match spec.sql {
        // A SQL source reads a TIMESTAMP_LTZ from text (ISO 8601 in envelope.sql).
        Some(_) => format!("\"{}\"", sluice_core::time::format_rfc3339(ts)),
        None => ts.to_string(),
    };
    let bare = format!(r#"{{"id":"e{i}","key":"key-{key}","type":"t","ts":{ts},"value":{value}}}"#);
    let padded_overhead = r#","attrs":{"pad":""}"#.len();
    if spec.record_bytes <= bare.len() + padded_overhead {
        return bare;
    }
    let pad = "x".repeat(spec.record_bytes - bare.len() - padded_overhead);
    format!(
        r#"{{"id":"e{i}","key":"key-{key}","type":"t","ts":{ts},"value":{value},"attrs":{{"pad":"{pad}"}}}}"#
    )
}

/// First event time: far enough back that every batch is in the past (ingest rejects
/// events ahead of the clock), aligned to the batch span so batches fill whole windows.
pub fn start_ms(spec: &Spec, now_ms: i64) -> i64 {
    let total = (spec.batches + spec.warmup + 2) as i64;
    let start = now_ms - total * spec.batch_span_ms;
    start - start.rem_euclid(spec.batch_span_ms.max(1))
}

/// The producer's records for every batch (warm-up first): (partition key, data).
pub fn raw_batches(spec: &Spec, start_ms: i64) -> Outputs {
    let total = spec.batches + spec.warmup;
    (0..total)
        .map(|b| {
            (0..spec.records)
                .map(|j| {
                    let i = (b * spec.records + j) as u64;
                    (
                        format!("key-{}", i % spec.keys as u64),
                        envelope(i, spec, start_ms).into_bytes(),
                    )
                })
                .collect()
        })
        .collect()
}

/// One Lambda `KinesisEvent` as JSON, the way Lambda delivers a batch of one shard of
/// `stream`: base64 data, 56-digit sequence numbers from `first_sequence`.
pub fn lambda_event(
    stream: &str,
    records: &[(String, Vec<u8>)],
    first_sequence: u64,
    arrival_ms: i64,
) -> Result<Vec<u8>> {
    let shard = "shardId-000000000000";
    let arn = format!("arn:aws:kinesis:us-east-1:123456789012:stream/{stream}");
    let records = records
        .iter()
        .enumerate()
        .map(|(i, (pk, data))| {
            let seq = format!("49{:054}", first_sequence + i as u64);
            // `Base64Data` is non-exhaustive: fill a default one.
            let mut encoded = Base64Data::default();
            encoded.0.clone_from(data);
            Ok(json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": pk,
                    "sequenceNumber": seq,
                    "data": serde_json::to_value(encoded)?,
                    "approximateArrivalTimestamp": arrival_ms as f64 / 1000.0,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{shard}:{seq}"),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/sluice-bench",
                "awsRegion": "us-east-1",
                "eventSourceARN": arn,
            }))
        })
        .collect::<Result<Vec<_>, serde_json::Error>>()?;
    Ok(serde_json::to_vec(&json!({ "Records": records }))?)
}

fn env_of(function: &FunctionSpec) -> EnvReader<impl Fn(&str) -> Option<String> + use<>> {
    let vars = function.env.clone();
    EnvReader::new(move |k: &str| vars.get(k).cloned())
}

/// The detection rules the detect stage runs: a threshold on a minute's peak that fires
/// for a few key-minutes (one event in 1,000 carries the top value, 99.9), a coarser one
/// that never fires, and the two history rules (`rate`, `zscore`) that read closed
/// windows.
pub const BENCH_RULES: &str = concat!(
    r#"{"id":"peak","type":"t","window_seconds":60,"stat":"max","op":">","threshold":99.8}"#,
    "\n",
    r#"{"id":"hot-hour","type":"t","window_seconds":3600,"stat":"max","op":">","threshold":1000}"#,
    "\n",
    r#"{"id":"burst","kind":"rate","type":"t","window_seconds":60,"stat":"count","op":">=","threshold":3,"min_count":20}"#,
    "\n",
    r#"{"id":"anomaly","kind":"zscore","type":"t","window_seconds":60,"stat":"mean","op":">","threshold":4,"min_count":10}"#,
);

/// [`BENCH_RULES`] restated on the views of `examples/envelope.sql` (minute and hour
/// rows of the same statistics), so the SQL detect stage judges what the envelope's
/// does. Under another pipeline, only those naming its views and columns run.
pub const BENCH_VIEW_RULES: &str = concat!(
    r#"{"id":"peak","view":"per_minute","column":"high","group":{"type":"t"},"op":">","threshold":99.8}"#,
    "\n",
    r#"{"id":"hot-hour","view":"per_hour","column":"high","group":{"type":"t"},"op":">","threshold":1000}"#,
    "\n",
    r#"{"id":"burst","kind":"rate","view":"per_minute","column":"n","group":{"type":"t"},"op":">=","threshold":3,"min_count":20}"#,
    "\n",
    r#"{"id":"anomaly","kind":"zscore","view":"per_minute","column":"mean","group":{"type":"t"},"op":">","threshold":4,"min_count":10}"#,
);

/// The rules the bench's detect stage runs: [`BENCH_RULES`], or under a SQL pipeline
/// those of [`BENCH_VIEW_RULES`] that can fire on it.
pub fn bench_rules(sql: Option<&SqlPipeline>) -> Result<Vec<Rule>> {
    Ok(match sql {
        None => parse_rules(BENCH_RULES)?,
        Some(sql) => parse_rules(BENCH_VIEW_RULES)?
            .into_iter()
            .filter(|rule| sql.rule_mismatch(rule).is_none())
            .collect(),
    })
}

/// The alerts table in memory, counting its writes: every `raise` is one conditional
/// `PutItem` (charged whether or not the alert was new), every `mark_notified` one
/// small `UpdateItem`.
#[derive(Default)]
pub struct CountingAlerts {
    inner: MemoryAlerts,
    writes: AtomicU64,
    write_units: AtomicU64,
}

impl CountingAlerts {
    fn counts(&self) -> (u64, f64) {
        (
            self.writes.load(Ordering::Relaxed),
            self.write_units.load(Ordering::Relaxed) as f64,
        )
    }
}

impl sluice_core::ports::AlertStore for CountingAlerts {
    async fn raise(&self, alert: &Alert) -> sluice_core::error::Result<AlertStatus> {
        let units = alert_item_size(alert)?.div_ceil(1024).max(1) as u64;
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.write_units.fetch_add(units, Ordering::Relaxed);
        self.inner.raise(alert).await
    }

    async fn mark_notified(&self, alert_id: &str) -> sluice_core::error::Result<()> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.write_units.fetch_add(1, Ordering::Relaxed);
        self.inner.mark_notified(alert_id).await
    }
}

/// Where a stage reads and writes, named as the template names its streams.
struct Wiring {
    input: String,
    output: String,
    dead_letters: String,
}

fn wiring(template: &Template, function: &FunctionSpec) -> Result<Wiring> {
    let stream = |logical: &str| {
        template
            .stream_name(logical)
            .with_context(|| format!("template.yaml has no stream {logical}"))
    };
    Ok(Wiring {
        input: stream(&function.input_stream)?,
        output: function
            .env
            .get(env::OUTPUT_STREAM)
            .cloned()
            .with_context(|| format!("{} has no {}", function.logical_id, env::OUTPUT_STREAM))?,
        dead_letters: stream(resources::DEAD_LETTER.logical_id)?,
    })
}

/// Table counters of a stage: (item writes, write units, read units).
type Meter<'a> = &'a dyn Fn() -> (u64, f64, f64);

/// Takes what a stream holds and empties it (the next batch's output starts afresh).
fn drain(streams: &MemoryStreams, stream: &str) -> Vec<(String, Vec<u8>)> {
    let records = streams.records(stream);
    streams.create(stream, 1);
    records
        .into_iter()
        .map(|r| (r.partition_key, r.data))
        .collect()
}

/// Times one stage over its input batches (the first `warmup` untimed) and collects
/// its output per batch.
async fn time_stage<S: Stage>(
    name: &str,
    stage: &S,
    events: &[Vec<u8>],
    spec: &Spec,
    streams: &MemoryStreams,
    wiring: &Wiring,
    meter: Meter<'_>,
) -> Result<(StageMeasure, Outputs)> {
    let mut outputs = Vec::with_capacity(events.len());
    let mut durations_ms = Vec::new();
    let (mut records, mut kinesis_records, mut out_events) = (0u64, 0u64, 0u64);
    let (mut out_records, mut out_units, mut dead_letters) = (0u64, 0u64, 0u64);
    let mut out_kib = 0u64;
    let mut out_bytes = 0u64;
    let mut before = meter();
    for (b, bytes) in events.iter().enumerate() {
        if b == spec.warmup {
            before = meter();
        }
        let started = Instant::now();
        let event: KinesisBatch = serde_json::from_slice(bytes)
            .with_context(|| format!("{name}: batch {b} is not a KinesisEvent"))?;
        let (response, outcome) =
            sluice_core::stage::lambda_event::handle_batch(stage, &event, None).await;
        let elapsed = started.elapsed();
        if !response.batch_item_failures.is_empty() || outcome.failure.is_some() {
            bail!("{name}: batch {b} failed: {:?}", outcome.failure);
        }
        let output = drain(streams, &wiring.output);
        let dead = drain(streams, &wiring.dead_letters);
        if b >= spec.warmup {
            durations_ms.push(elapsed.as_secs_f64() * 1000.0);
            records += outcome.stats.events_in;
            kinesis_records += event.records.len() as u64;
            out_events += output
                .iter()
                .map(|(_, d)| d.split(|c| *c == b'\n').filter(|l| !l.is_empty()).count() as u64)
                .sum::<u64>();
            out_records += output.len() as u64;
            out_units += output.iter().map(|(pk, d)| put_units(pk, d)).sum::<u64>();
            out_kib += output.iter().map(|(pk, d)| kib_units(pk, d)).sum::<u64>();
            out_bytes += output
                .iter()
                .map(|(pk, d)| (pk.len() + d.len()) as u64)
                .sum::<u64>();
            dead_letters += dead.len() as u64;
        }
        outputs.push(output);
    }
    let after = meter();
    let total_s: f64 = durations_ms.iter().sum::<f64>() / 1000.0;
    durations_ms.sort_by(f64::total_cmp);
    let measure = StageMeasure {
        stage: name.to_owned(),
        delivery: spec.delivery.to_string(),
        records,
        kinesis_records,
        batches: durations_ms.len() as u64,
        records_per_sec: if total_s > 0.0 {
            records as f64 / total_s
        } else {
            0.0
        },
        ns_per_record: per_event(total_s * 1e9, records),
        batch_ms_p50: percentile(&durations_ms, 50.0),
        batch_ms_p99: percentile(&durations_ms, 99.0),
        store_writes_per_event: per_event((after.0 - before.0) as f64, records),
        store_write_units_per_event: per_event(after.1 - before.1, records),
        store_read_units_per_event: per_event(after.2 - before.2, records),
        out_events_per_event: per_event(out_events as f64, records),
        out_records_per_event: per_event(out_records as f64, records),
        out_put_units_per_event: per_event(out_units as f64, records),
        out_kib_per_event: per_event(out_kib as f64, records),
        out_bytes_per_event: per_event(out_bytes as f64, records),
        dead_letters,
        peak_rss_bytes: None,
    };
    Ok((measure, outputs))
}

/// Each output batch as the next stage's Lambda event.
fn events_of(stream: &str, batches: &Outputs, arrival_ms: i64) -> Result<Vec<Vec<u8>>> {
    let mut sequence = 1u64;
    batches
        .iter()
        .map(|batch| {
            let event = lambda_event(stream, batch, sequence, arrival_ms);
            sequence += batch.len() as u64;
            event
        })
        .collect()
}

/// Reference rows for enrich: every other key is known (the rest pass unenriched).
fn reference_rows(keys: usize) -> Vec<(String, Attrs)> {
    (0..keys)
        .step_by(2)
        .map(|i| {
            (
                format!("key-{i}"),
                Attrs::from([("site".into(), ["north", "south", "east"][i % 3].into())]),
            )
        })
        .collect()
}

/// Runs the stages in pipeline order up to the last one asked for, timing those in
/// `timed`; returns their measures and the raw batches (as Lambda events).
pub async fn measure(
    template: &Template,
    spec: &Spec,
    timed: &[&str],
) -> Result<(Vec<StageMeasure>, Vec<Vec<u8>>)> {
    let now = SystemClock.now_ms();
    let mut input = raw_batches(spec, start_ms(spec, now));
    let mut raw_events = Vec::new();
    let last = STAGES
        .iter()
        .rposition(|s| timed.contains(s))
        .context("no stage to time")?;
    let mut measures = Vec::new();
    let store = Arc::new(MemoryAggregateStore::new());
    for name in &STAGES[..=last] {
        let function = template
            .function(name)
            .with_context(|| format!("reading function {name} from template.yaml"))?;
        let wiring = wiring(template, &function)?;
        let vars = env_of(&function);
        // Built before the clock starts: Lambda hands over the JSON.
        let events = events_of(&wiring.input, &input, now)?;
        if *name == "ingest" {
            raw_events.clone_from(&events);
        }
        let streams = MemoryStreams::new(Arc::new(SystemClock));
        streams.create(&wiring.output, 1);
        streams.create(&wiring.dead_letters, 1);
        let (output, dead_letters) = (
            streams.sink(&wiring.output),
            streams.sink(&wiring.dead_letters),
        );
        reset_peak_rss();
        let no_table = || (0, 0.0, 0.0);
        let (mut m, outputs) = match *name {
            "ingest" => {
                let stage =
                    sluice_ingest::handler(output, dead_letters, IngestConfig::from_reader(&vars)?);
                let stage = match &spec.sql {
                    Some(sql) => stage.with_sql(sql.0.clone()),
                    None => stage,
                };
                time_stage(name, &stage, &events, spec, &streams, &wiring, &no_table).await?
            }
            "enrich" if spec.sql.is_some() => {
                let sql = spec
                    .sql
                    .as_ref()
                    .map(|s| s.0.clone())
                    .context("a pipeline")?;
                let stage = sluice_enrich::sql_handler(
                    sql,
                    MemoryReference::new(Vec::new()),
                    output,
                    dead_letters,
                    EnrichConfig::from_reader(&vars)?,
                );
                time_stage(name, &stage, &events, spec, &streams, &wiring, &no_table).await?
            }
            "enrich" => {
                let reference = MemoryReference::new(reference_rows(spec.keys));
                let stage = sluice_enrich::handler(
                    reference,
                    output,
                    dead_letters,
                    EnrichConfig::from_reader(&vars)?,
                );
                time_stage(name, &stage, &events, spec, &streams, &wiring, &no_table).await?
            }
            "aggregate" => {
                let config = AggregateConfig {
                    delivery: spec.delivery,
                    ..AggregateConfig::from_reader(&vars)?
                };
                let stage = sluice_aggregate::handler(store.clone(), output, dead_letters, config);
                let stage = match &spec.sql {
                    Some(sql) => stage.with_sql(sql.0.clone()),
                    None => stage,
                };
                let meter = || {
                    (
                        store.meter.item_writes(),
                        store.meter.write_units(),
                        store.meter.read_units(),
                    )
                };
                time_stage(name, &stage, &events, spec, &streams, &wiring, &meter).await?
            }
            _ => {
                let rules = bench_rules(spec.sql.as_ref().map(|sql| &*sql.0))?;
                if rules.is_empty() {
                    // Say so: a detect figure without rules is not comparable with one
                    // that judges every update.
                    eprintln!(
                        "sluice bench: no rule of the bench's view rules (per_minute/per_hour \
                         columns n, high, mean) applies to this pipeline: detect runs without \
                         rules"
                    );
                }
                let alerts = Arc::new(CountingAlerts::default());
                let stage = sluice_detect::handler(
                    MemoryRules::new(rules),
                    alerts.clone(),
                    store.clone(),
                    output,
                    dead_letters,
                    DetectConfig::from_reader(&vars)?,
                );
                let stage = match &spec.sql {
                    Some(sql) => stage.with_sql(sql.0.clone()),
                    None => stage,
                };
                let meter = || {
                    let (w, u) = alerts.counts();
                    (w, u, 0.0)
                };
                time_stage(name, &stage, &events, spec, &streams, &wiring, &meter).await?
            }
        };
        m.peak_rss_bytes = peak_rss_bytes();
        if timed.contains(name) {
            measures.push(m);
        }
        drop(events);
        input = outputs;
    }
    Ok((measures, raw_events))
}

/// Runs [`measure`] on a current-thread runtime of its own thread: one core, as a
/// Lambda function's handler runs.
pub fn measure_single_threaded(
    template: Template,
    spec: Spec,
    timed: Vec<&'static str>,
) -> Result<(Vec<StageMeasure>, Vec<Vec<u8>>)> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting a current-thread runtime")?;
        runtime.block_on(measure(&template, &spec, &timed))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the benchmark thread panicked"))?
}

/// Lets the kernel restart the process's peak-RSS count (Linux: writing 5 to
/// `/proc/self/clear_refs`); without it the peak is the process's so far.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

/// The Python baseline, shipped inside the binary so `--compare-python` works from
/// any directory.
const PYTHON_HANDLER: &str = include_str!("../../../../../infra/bench/python_handler.py");

/// What the Python handler printed.
#[derive(Debug, Deserialize, Serialize)]
pub struct PythonMeasure {
    pub records: u64,
    pub records_per_sec: f64,
    pub ns_per_record: f64,
    pub groups: u64,
}

/// Runs the Python baseline on the raw batches (one event JSON per line; the first
/// `warmup` untimed).
fn run_python(python: &str, raw_events: &[Vec<u8>], warmup: usize) -> Result<PythonMeasure> {
    let dir = std::env::temp_dir();
    let pid = std::process::id();
    let events_path = dir.join(format!("sluice-bench-{pid}.jsonl"));
    let script_path = dir.join(format!("sluice-bench-{pid}.py"));
    write_events(&events_path, raw_events)?;
    std::fs::write(&script_path, PYTHON_HANDLER)
        .with_context(|| format!("writing {}", script_path.display()))?;
    let output = std::process::Command::new(python)
        .arg(&script_path)
        .arg(&events_path)
        .arg("--warmup")
        .arg(warmup.to_string())
        .output()
        .with_context(|| format!("running {python}"));
    let _ = std::fs::remove_file(&events_path);
    let _ = std::fs::remove_file(&script_path);
    let output = output?;
    if !output.status.success() {
        bail!(
            "the python baseline failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .last()
        .context("the python baseline printed nothing")?;
    serde_json::from_str(line).with_context(|| format!("python printed {line:?}"))
}

fn write_events(path: &PathBuf, raw_events: &[Vec<u8>]) -> Result<()> {
    let mut text = Vec::with_capacity(raw_events.iter().map(|e| e.len() + 1).sum());
    for e in raw_events {
        text.extend_from_slice(e);
        text.push(b'\n');
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// `sluice bench --stage ...`.
pub fn run(args: &StageArgs, json_out: bool, out: &mut impl std::io::Write) -> Result<bool> {
    let choice = args.stage.context("no --stage")?;
    let mut spec = args.spec();
    if let Some(file) = &args.sql {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading the pipeline {}", file.display()))?;
        let pipeline = SqlPipeline::load(&text).with_context(|| format!("{}", file.display()))?;
        spec.sql = Some(SqlBench(Arc::new(pipeline)));
    }
    let template = crate::template::load_template(None)?;
    let (measures, raw_events) = measure_single_threaded(template, spec.clone(), choice.stages())?;
    if let Some(path) = &args.write_events {
        write_events(path, &raw_events)?;
    }
    if !json_out {
        writeln!(
            out,
            "sluice bench --stage ({} build): {} batches of {} events over {} keys, {} B envelopes, {} warm-up, {}, one thread",
            if cfg!(debug_assertions) {
                "debug: use --release for real numbers"
            } else {
                "release"
            },
            spec.batches,
            spec.records,
            spec.keys,
            spec.record_bytes,
            spec.warmup,
            spec.delivery
        )?;
        writeln!(
            out,
            "{:<10} {:>9} {:>12} {:>9} {:>9} {:>9} {:>12} {:>12} {:>10}",
            "stage",
            "events",
            "events/s",
            "ns/event",
            "p50 ms",
            "p99 ms",
            "writes/ev",
            "WRU/ev",
            "peak MiB"
        )?;
    }
    let mut rates = BTreeMap::new();
    for m in &measures {
        rates.insert(m.stage.clone(), m.records_per_sec);
        if json_out {
            writeln!(out, "{}", serde_json::to_string(m)?)?;
        } else {
            writeln!(
                out,
                "{:<10} {:>9} {:>12.0} {:>9.0} {:>9.2} {:>9.2} {:>12.4} {:>12.4} {:>10.1}",
                m.stage,
                m.records,
                m.records_per_sec,
                m.ns_per_record,
                m.batch_ms_p50,
                m.batch_ms_p99,
                m.store_writes_per_event,
                m.store_write_units_per_event,
                m.peak_rss_bytes.unwrap_or(0) as f64 / (1024.0 * 1024.0)
            )?;
        }
    }
    if args.compare_python {
        let py = run_python(&args.python, &raw_events, spec.warmup)?;
        let ratio = |stage: &str| {
            rates
                .get(stage)
                .map(|r| r / py.records_per_sec.max(f64::MIN_POSITIVE))
        };
        if json_out {
            writeln!(
                out,
                "{}",
                json!({"stage": "python-handler", "records": py.records, "records_per_sec": py.records_per_sec, "ns_per_record": py.ns_per_record, "groups": py.groups})
            )?;
            writeln!(
                out,
                "{}",
                json!({"compare": "python-handler", "ingest_vs_python": ratio("ingest"), "aggregate_vs_python": ratio("aggregate")})
            )?;
        } else {
            writeln!(
                out,
                "{:<10} {:>9} {:>12.0} {:>9.0}   (infra/bench/python_handler.py: decode + validate + window + combine)",
                "python", py.records, py.records_per_sec, py.ns_per_record
            )?;
            for stage in ["ingest", "aggregate"] {
                if let Some(r) = ratio(stage) {
                    writeln!(out, "{stage} / python: {r:.1}x")?;
                }
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(records: usize, batches: usize, keys: usize, delivery: Delivery) -> Spec {
        Spec {
            records,
            batches,
            warmup: 1,
            keys,
            record_bytes: 150,
            delivery,
            batch_span_ms: 60_000,
            sql: None,
        }
    }

    /// Under `envelope.sql` the bench's four view rules all apply; under a pipeline
    /// without its views none does, which the bench then says on stderr.
    #[test]
    fn the_bench_view_rules_apply_to_the_envelope_pipeline_and_not_to_others() {
        let load = |name: &str| {
            let path = format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"));
            SqlPipeline::load(&std::fs::read_to_string(path).expect("example")).expect(name)
        };
        let ids = |sql: &SqlPipeline| -> Vec<String> {
            bench_rules(Some(sql))
                .expect("rules")
                .into_iter()
                .map(|r| r.id)
                .collect()
        };
        assert_eq!(
            ids(&load("envelope.sql")),
            ["peak", "hot-hour", "burst", "anomaly"]
        );
        assert!(ids(&load("iot.sql")).is_empty());
        assert_eq!(bench_rules(None).expect("rules").len(), 4);
    }

    #[test]
    fn envelopes_are_padded_to_the_asked_size_and_parse() {
        let spec = small(100, 1, 10, Delivery::ExactlyOnce);
        let e = envelope(7, &spec, 1_700_000_000_000);
        assert_eq!(e.len(), 150);
        let v: serde_json::Value = serde_json::from_str(&e).expect("test setup");
        assert_eq!(v["key"], "key-7");
        assert_eq!(v["ts"], 1_700_000_000_000i64 + 7 * 600);
        // Too small to pad: the bare envelope.
        let bare = envelope(
            7,
            &Spec {
                record_bytes: 10,
                ..spec
            },
            0,
        );
        assert!(!bare.contains("attrs"));
    }

    #[test]
    fn batches_are_valid_lambda_events_with_the_records_base64_encoded() {
        let spec = small(50, 2, 5, Delivery::ExactlyOnce);
        let raw = raw_batches(&spec, 1_700_000_000_000);
        assert_eq!(raw.len(), 3);
        let bytes = lambda_event("sluice-raw", &raw[1], 51, 1_700_000_100_000).expect("test setup");
        let event: aws_lambda_events::event::kinesis::KinesisEvent =
            serde_json::from_slice(&bytes).expect("test setup");
        let records = sluice_core::stage::lambda_event::records_of(&event);
        assert_eq!(records.len(), 50);
        assert_eq!(records[0].stream, "sluice-raw");
        assert_eq!(records[0].sequence_number, format!("49{:054}", 51));
        assert_eq!(records[0].data, raw[1][0].1);
        assert_eq!(records[3].partition_key, "key-3");
    }

    #[test]
    fn under_examples_envelope_sql_every_stage_takes_its_input_and_each_view_gets_each_event() {
        let template = crate::template::load_template(None).expect("test setup");
        let text = include_str!("../../../../../examples/envelope.sql");
        let sql = SqlBench(Arc::new(
            SqlPipeline::load(text).expect("the example loads"),
        ));
        let spec = Spec {
            sql: Some(sql),
            ..small(400, 2, 10, Delivery::ExactlyOnce)
        };
        let (measures, _) =
            measure_single_threaded(template, spec, StageChoice::All.stages()).expect("test setup");
        let by: BTreeMap<_, _> = measures.iter().map(|m| (m.stage.as_str(), m)).collect();
        for m in &measures {
            assert_eq!(m.dead_letters, 0, "{}: {m:?}", m.stage);
        }
        assert_eq!(by["ingest"].records, 800);
        assert_eq!(by["enrich"].records, 800);
        // Two stored views alike but for their window size share one group of items:
        // one event each, as the envelope pipeline's minute and hour.
        assert_eq!(by["aggregate"].records, 800);
        assert!(by["aggregate"].store_writes_per_event > 0.0);
    }

    #[test]
    fn every_stage_accepts_its_input_and_aggregate_writes_per_key_not_per_event() {
        let template = crate::template::load_template(None).expect("test setup");
        let spec = small(400, 2, 10, Delivery::AtLeastOnce);
        let (measures, raw) =
            measure_single_threaded(template, spec, StageChoice::All.stages()).expect("test setup");
        assert_eq!(raw.len(), 3);
        let by: BTreeMap<_, _> = measures.iter().map(|m| (m.stage.as_str(), m)).collect();
        assert_eq!(by.len(), 4);
        for stage in ["ingest", "enrich", "aggregate"] {
            assert_eq!(by[stage].records, 800, "{stage}");
            assert_eq!(by[stage].dead_letters, 0, "{stage}");
        }
        // Ingest and enrich pass every event on; nothing is stored.
        assert_eq!(by["ingest"].out_events_per_event, 1.0);
        assert_eq!(by["enrich"].out_events_per_event, 1.0);
        assert_eq!(by["ingest"].store_writes_per_event, 0.0);
        // Each batch is one minute: per key its minute item, its hour item and its
        // group's watermark item, 10 keys, per batch of 400 events.
        let agg = by["aggregate"];
        assert_eq!(agg.store_writes_per_event, 30.0 / 400.0);
        assert!(agg.store_write_units_per_event >= 2.0 * agg.store_writes_per_event);
        // Detect receives every window update aggregate emitted: per batch and key, its
        // minute and its hour.
        assert_eq!(agg.out_events_per_event, 20.0 / 400.0);
        assert_eq!(by["detect"].records, 40);
    }

    #[test]
    fn the_python_baseline_accepts_the_same_raw_batches() {
        // python3 is installed wherever the test command runs (it runs moto).
        let template = crate::template::load_template(None).expect("test setup");
        let spec = small(300, 2, 10, Delivery::ExactlyOnce);
        let (_, raw) = measure_single_threaded(template, spec, vec!["ingest"]).expect("test setup");
        let py = run_python("python3", &raw, 1).expect("python3 runs the baseline");
        // Two timed batches of 300; per batch and key one minute and one hour group.
        assert_eq!(py.records, 600);
        assert_eq!(py.groups, 2 * 10 * 2);
        assert!(py.records_per_sec > 0.0);
    }

    #[test]
    fn only_the_asked_stage_is_reported() {
        let template = crate::template::load_template(None).expect("test setup");
        let spec = small(100, 1, 5, Delivery::ExactlyOnce);
        let (measures, _) =
            measure_single_threaded(template, spec, vec!["enrich"]).expect("test setup");
        assert_eq!(measures.len(), 1);
        assert_eq!(measures[0].stage, "enrich");
        assert_eq!(measures[0].records, 100);
    }

    #[test]
    fn per_event_and_put_unit_arithmetic() {
        assert_eq!(per_event(200.0, 10_000), 0.02);
        assert_eq!(per_event(5.0, 0), 0.0);
        assert_eq!(put_units("k", b""), 1);
        assert_eq!(put_units("", &vec![0u8; 25 * 1024]), 1);
        assert_eq!(put_units("k", &vec![0u8; 25 * 1024]), 2);
        assert_eq!(put_units("", &vec![0u8; 1024 * 1024]), 41);
        assert_eq!(kib_units("k", &vec![0u8; 1023]), 1);
        assert_eq!(kib_units("k", &vec![0u8; 1024]), 2);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
