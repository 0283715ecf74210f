//! `sluice cost`: what the pipeline costs on AWS per month and per million events, from
//! measured figures, not guesses: the per-stage speed, DynamoDB writes and request units
//! per event and Kinesis record sizes of `sluice bench --stage` (run here in-process at
//! the batch shape the given rate produces, or read from `--bench FILE`), priced with
//! the us-east-1 list prices below. Beside it, the same pipeline with one DynamoDB write
//! per event (the per-event `UpdateItem` design), to show what in-batch combining saves.
//!
//! The model, per stage: Lambda's event source mapping reads each shard with
//! `ParallelizationFactor` concurrent batches; a batch holds what arrives in
//! `max(MaximumBatchingWindow, 1 s)` (Lambda polls a shard about once a second), at
//! most `BatchSize` records. Billed duration per invocation = assumed AWS I/O wait
//! (`--io-ms`) + measured compute time per event × events per invocation, scaled by the
//! CPU share of the memory size (a full vCPU at 1,769 MB), rounded up to 1 ms. A batch
//! also stops at Lambda's 6 MB invocation payload: the records' base64 data plus each
//! record's JSON envelope. The aggregate stage is measured at the batch it would really
//! see (its events per invocation follow from the enriched records' measured packing,
//! so a first pass finds the packing and a second measures at that size).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use serde_json::json;
use sluice_core::config::Delivery;
use sluice_core::resources;
use sluice_local::template::Template;

use crate::pipeline::STAGES;
use crate::template::load_template;
use crate::tools::bench::stage::{self, Spec, StageMeasure};

/// List prices, us-east-1. The pricing pages could not be opened from this machine;
/// each figure was checked against the page's text as indexed by the `search` tool
/// (2026-11-25) or, where the page's figures were not in the index, against secondary
/// sources quoting that page; see each constant.
pub mod price {
    /// Lambda duration on arm64 (first 7.5 billion GB-s a month), per GB-second.
    /// <https://aws.amazon.com/lambda/pricing/>, read 2026-11-25 (figure via
    /// cloudchipr.com's and kodekloud's copies of that page; the archived page itself,
    /// web.archive.org 2026-06-18, was indexed without its price table).
    pub const LAMBDA_ARM64_PER_GB_SECOND: f64 = 0.000_013_333_4;
    /// Lambda requests, per million (both architectures). Same page and date.
    pub const LAMBDA_PER_MILLION_REQUESTS: f64 = 0.20;
    /// DynamoDB on-demand write request units, per million (Standard table class; the
    /// price since the November 2024 cut). <https://aws.amazon.com/dynamodb/pricing/on-demand/>,
    /// read 2026-11-25 via airbyte.com's pricing guide quoting it.
    pub const DYNAMODB_PER_MILLION_WRU: f64 = 0.625;
    /// DynamoDB on-demand read request units, per million. Same page and date.
    pub const DYNAMODB_PER_MILLION_RRU: f64 = 0.125;
    /// Kinesis Data Streams provisioned mode, per shard-hour.
    /// <https://aws.amazon.com/kinesis/data-streams/pricing/>, read 2026-11-25: the
    /// indexed page confirms the units (shard-hour; PUT payload unit = 25 KB chunk);
    /// the figures are the well-known us-east-1 list prices, as of 2026-11.
    pub const KINESIS_PER_SHARD_HOUR: f64 = 0.015;
    /// Kinesis provisioned mode, per million PUT payload units. Same page and date.
    pub const KINESIS_PER_MILLION_PUT_UNITS: f64 = 0.014;
    /// Kinesis on-demand mode, per stream-hour. Same page (it confirms the per-stream
    /// hourly charge and per-GB data in/out, records rounded up to 1 KB); figures are the
    /// well-known us-east-1 list prices, as of 2026-11.
    pub const KINESIS_ON_DEMAND_PER_STREAM_HOUR: f64 = 0.04;
    /// Kinesis on-demand data in, per GB.
    pub const KINESIS_ON_DEMAND_PER_GB_IN: f64 = 0.08;
    /// Kinesis on-demand data retrieved, per GB (each stream has one reader here: the
    /// next stage's event source mapping).
    pub const KINESIS_ON_DEMAND_PER_GB_OUT: f64 = 0.04;
}

/// AWS bills a month as 730 hours.
pub const HOURS_PER_MONTH: f64 = 730.0;
/// Lambda gives a function one full vCPU at 1,769 MB, proportionally less below.
pub const FULL_VCPU_MB: f64 = 1769.0;
/// Lambda polls a shard about once a second when its batching window is shorter.
pub const MIN_POLL_INTERVAL_S: f64 = 1.0;
/// Lambda's synchronous invocation payload limit (6 MB), which also bounds a Kinesis
/// event source mapping's batch.
pub const INVOCATION_PAYLOAD_BYTES: f64 = 6_291_456.0;
/// JSON around one record's base64 data in a Kinesis event (event id, sequence number,
/// ARNs, ...): 575 B per record in `events/aggregate/enriched.json`, about 550 compact.
pub const EVENT_RECORD_OVERHEAD_BYTES: f64 = 550.0;
/// The largest aggregate batch the model measures in-process (events), to bound the
/// time and memory of `sluice cost`.
pub const MAX_MEASURED_BATCH_EVENTS: f64 = 200_000.0;
const SECONDS_PER_MONTH: f64 = HOURS_PER_MONTH * 3600.0;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  sluice cost --events-per-second 1000 --keys 1000\n  sluice bench --stage all --json > bench.jsonl && sluice cost --events-per-second 5000 --bench bench.jsonl --json"
)]
pub struct CostArgs {
    /// Producer events per second, sustained.
    #[arg(long)]
    pub events_per_second: f64,
    /// Size of one producer envelope in bytes.
    #[arg(long, default_value_t = 150)]
    pub record_bytes: usize,
    /// Distinct aggregation keys.
    #[arg(long, default_value_t = 1000)]
    pub keys: usize,
    /// Delivery mode of the aggregate stage (default: the template's, exactly-once).
    #[arg(long)]
    pub delivery: Option<Delivery>,
    /// Shards of every stream (default: the template's counts per stream).
    #[arg(long)]
    pub shards: Option<usize>,
    /// Price Kinesis in on-demand mode (per stream-hour and GB) instead of provisioned.
    #[arg(long)]
    pub on_demand: bool,
    /// Memory of every function in MB (default: the template's per function).
    #[arg(long)]
    pub memory_mb: Option<u32>,
    /// The aggregate stage's MaximumBatchingWindowInSeconds (default: the template's
    /// AggregateBatchingWindowSeconds parameter).
    /// Longer windows mean bigger batches and fewer writes per event.
    #[arg(long, value_name = "SECONDS")]
    pub aggregate_batching_window: Option<f64>,
    /// The aggregate stage's BatchSize in records (default: the template's,
    /// AggregateBatchSize; at most 10,000).
    #[arg(long, value_name = "RECORDS")]
    pub aggregate_batch_size: Option<usize>,
    /// Assumed wall time per invocation spent waiting on Kinesis and DynamoDB calls, ms
    /// (not measured here: the bench runs on in-memory ports).
    #[arg(long, default_value_t = 20.0)]
    pub io_ms: f64,
    /// Per-stage measurements (the JSON lines of `sluice bench --stage all --json`)
    /// instead of measuring in-process now.
    #[arg(long, value_name = "FILE")]
    pub bench: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// One stage, as the model sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct StageInput {
    pub name: String,
    pub memory_mb: f64,
    pub batch_size: f64,
    pub batching_window_s: f64,
    /// Concurrent batches reading the input stream: shards × ParallelizationFactor.
    pub consumers: f64,
    /// Compute per event, measured.
    pub ns_per_event: f64,
    /// Events this stage receives per producer event.
    pub events_per_producer_event: f64,
    /// Kinesis records it receives per producer event.
    pub records_per_producer_event: f64,
    /// Record bytes (data and partition key) it receives per producer event.
    pub bytes_per_producer_event: f64,
}

impl StageInput {
    /// Records one invocation can carry within [`INVOCATION_PAYLOAD_BYTES`]: each
    /// record's data base64-encoded plus its envelope in the event JSON.
    pub fn payload_cap_records(&self) -> f64 {
        if self.records_per_producer_event <= 0.0 {
            return f64::INFINITY;
        }
        let bytes = self.bytes_per_producer_event / self.records_per_producer_event;
        let in_event = (bytes / 3.0).ceil() * 4.0 + EVENT_RECORD_OVERHEAD_BYTES;
        (INVOCATION_PAYLOAD_BYTES / in_event).floor().max(1.0)
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StageCost {
    pub stage: String,
    pub memory_mb: f64,
    pub invocations_per_second: f64,
    pub events_per_invocation: f64,
    pub billed_ms: f64,
    pub gb_seconds_per_second: f64,
    /// Lambda, dollars per second of the workload.
    pub usd_per_second: f64,
}

/// Lambda's invocations and billed duration for one stage at `events_per_second`.
pub fn stage_cost(s: &StageInput, events_per_second: f64, io_ms: f64) -> StageCost {
    let records_per_s = events_per_second * s.records_per_producer_event;
    if records_per_s <= 0.0 {
        return StageCost {
            stage: s.name.clone(),
            memory_mb: s.memory_mb,
            invocations_per_second: 0.0,
            events_per_invocation: 0.0,
            billed_ms: 0.0,
            gb_seconds_per_second: 0.0,
            usd_per_second: 0.0,
        };
    }
    let per_consumer = records_per_s / s.consumers.max(1.0);
    let cap = s.batch_size.min(s.payload_cap_records()).max(1.0);
    let records_per_invocation =
        (per_consumer * s.batching_window_s.max(MIN_POLL_INTERVAL_S)).clamp(1.0, cap);
    let invocations = records_per_s / records_per_invocation;
    let events_per_invocation =
        records_per_invocation * s.events_per_producer_event / s.records_per_producer_event;
    let cpu_share = (s.memory_mb / FULL_VCPU_MB).min(1.0);
    let compute_ms = events_per_invocation * s.ns_per_event / 1e6 / cpu_share;
    let billed_ms = (io_ms + compute_ms).ceil();
    let gb_seconds = invocations * billed_ms / 1000.0 * s.memory_mb / 1024.0;
    StageCost {
        stage: s.name.clone(),
        memory_mb: s.memory_mb,
        invocations_per_second: invocations,
        events_per_invocation,
        billed_ms,
        gb_seconds_per_second: gb_seconds,
        usd_per_second: gb_seconds * price::LAMBDA_ARM64_PER_GB_SECOND
            + invocations * price::LAMBDA_PER_MILLION_REQUESTS / 1e6,
    }
}

/// One stream hop: what is written to it per producer event.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Hop {
    pub stream: String,
    pub shards: usize,
    pub put_units_per_event: f64,
    pub kib_per_event: f64,
}

/// Kinesis dollars per second for the hops at `events_per_second`, excluding the
/// per-shard (or per-stream) hourly charge, which [`kinesis_hourly`] gives.
pub fn kinesis_usage_usd_per_second(hops: &[Hop], events_per_second: f64, on_demand: bool) -> f64 {
    hops.iter()
        .map(|h| {
            if on_demand {
                let gb = events_per_second * h.kib_per_event / (1024.0 * 1024.0);
                gb * (price::KINESIS_ON_DEMAND_PER_GB_IN + price::KINESIS_ON_DEMAND_PER_GB_OUT)
            } else {
                events_per_second * h.put_units_per_event * price::KINESIS_PER_MILLION_PUT_UNITS
                    / 1e6
            }
        })
        .sum()
}

/// Kinesis dollars per hour independent of volume: shard-hours (provisioned) or
/// stream-hours (on-demand).
pub fn kinesis_hourly(hops: &[Hop], on_demand: bool) -> f64 {
    if on_demand {
        hops.len() as f64 * price::KINESIS_ON_DEMAND_PER_STREAM_HOUR
    } else {
        hops.iter().map(|h| h.shards as f64).sum::<f64>() * price::KINESIS_PER_SHARD_HOUR
    }
}

/// DynamoDB request units per producer event.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct TableUse {
    pub write_units_per_event: f64,
    pub read_units_per_event: f64,
    pub item_writes_per_event: f64,
}

pub fn dynamodb_usd_per_second(t: &TableUse, events_per_second: f64) -> f64 {
    events_per_second
        * (t.write_units_per_event * price::DYNAMODB_PER_MILLION_WRU
            + t.read_units_per_event * price::DYNAMODB_PER_MILLION_RRU)
        / 1e6
}

/// A priced pipeline.
#[derive(Clone, Debug, Serialize)]
pub struct Bill {
    pub stages: Vec<StageCost>,
    pub table: TableUse,
    pub hops: Vec<Hop>,
    pub lambda_usd_per_month: f64,
    pub dynamodb_usd_per_month: f64,
    pub kinesis_usage_usd_per_month: f64,
    pub kinesis_hourly_usd_per_month: f64,
    pub total_usd_per_month: f64,
    pub usd_per_million_events: f64,
    pub usd_per_million_events_excluding_shard_hours: f64,
}

pub fn bill(
    stages: &[StageInput],
    table: TableUse,
    hops: Vec<Hop>,
    events_per_second: f64,
    io_ms: f64,
    on_demand: bool,
) -> Bill {
    let costs: Vec<StageCost> = stages
        .iter()
        .map(|s| stage_cost(s, events_per_second, io_ms))
        .collect();
    let lambda: f64 = costs.iter().map(|c| c.usd_per_second).sum();
    let dynamodb = dynamodb_usd_per_second(&table, events_per_second);
    let kinesis = kinesis_usage_usd_per_second(&hops, events_per_second, on_demand);
    let hourly = kinesis_hourly(&hops, on_demand);
    let usage = lambda + dynamodb + kinesis;
    let per_million =
        |usd_per_second: f64| usd_per_second / events_per_second.max(f64::MIN_POSITIVE) * 1e6;
    Bill {
        stages: costs,
        table,
        hops,
        lambda_usd_per_month: lambda * SECONDS_PER_MONTH,
        dynamodb_usd_per_month: dynamodb * SECONDS_PER_MONTH,
        kinesis_usage_usd_per_month: kinesis * SECONDS_PER_MONTH,
        kinesis_hourly_usd_per_month: hourly * HOURS_PER_MONTH,
        total_usd_per_month: usage * SECONDS_PER_MONTH + hourly * HOURS_PER_MONTH,
        usd_per_million_events: per_million(usage + hourly / 3600.0),
        usd_per_million_events_excluding_shard_hours: per_million(usage),
    }
}

/// The template's view of one stage: memory, batching, consumers.
struct StageSettings {
    memory_mb: f64,
    batch_size: f64,
    batching_window_s: f64,
    consumers: f64,
}

fn settings(template: &Template, args: &CostArgs) -> Result<Vec<StageSettings>> {
    let streams = template.streams();
    STAGES
        .iter()
        .map(|name| {
            let f = template.function(name)?;
            let input = template
                .stream_name(&f.input_stream)
                .with_context(|| format!("no stream {}", f.input_stream))?;
            let shards = match args.shards {
                Some(n) => n,
                None => streams
                    .iter()
                    .find(|s| s.name == input)
                    .map(|s| s.shards)
                    .with_context(|| format!("no shard count for {input}"))?,
            };
            let mut window_s = f.esm.max_batching_window_ms as f64 / 1000.0;
            let mut batch_size = f.esm.batch_size;
            if *name == "aggregate" {
                window_s = args.aggregate_batching_window.unwrap_or(window_s);
                batch_size = args.aggregate_batch_size.unwrap_or(batch_size);
            }
            Ok(StageSettings {
                memory_mb: args.memory_mb.map_or(f.memory_mb as f64, f64::from),
                batch_size: batch_size as f64,
                batching_window_s: window_s,
                consumers: (shards * f.esm.parallelization_factor.max(1)) as f64,
            })
        })
        .collect()
}

/// The batch the aggregate stage sees at this rate, as a bench spec: `events` per
/// invocation (at most [`MAX_MEASURED_BATCH_EVENTS`]) over the keys of one enriched
/// shard, spanning the event time that takes to arrive.
fn spec_for(args: &CostArgs, aggregate: &StageSettings, delivery: Delivery, events: f64) -> Spec {
    let events = events.clamp(1.0, MAX_MEASURED_BATCH_EVENTS);
    let shards = aggregate.consumers.max(1.0);
    let per_shard_rate = (args.events_per_second / shards).max(f64::MIN_POSITIVE);
    Spec {
        records: events as usize,
        batches: 5,
        warmup: 1,
        keys: ((args.keys as f64 / shards).ceil() as usize).max(1),
        record_bytes: args.record_bytes,
        delivery,
        batch_span_ms: ((events / per_shard_rate * 1000.0) as i64).max(1),
        sql: None,
    }
}

fn read_bench(path: &PathBuf) -> Result<Vec<StageMeasure>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    // Other lines (the Python baseline, the comparison) are skipped.
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<StageMeasure>(l).ok())
        .collect())
}

/// The per-stage inputs of the model from the measurements: each stage receives what
/// the one before it emits.
fn stage_inputs(
    settings: &[StageSettings],
    measures: &[StageMeasure],
    raw_record_bytes: f64,
) -> Result<Vec<StageInput>> {
    let mut events = 1.0;
    let mut records = 1.0;
    let mut bytes = raw_record_bytes;
    let mut inputs = Vec::new();
    for (name, s) in STAGES.iter().zip(settings) {
        let m = measures
            .iter()
            .find(|m| m.stage == *name)
            .with_context(|| format!("no measurement for stage {name}"))?;
        inputs.push(StageInput {
            name: (*name).to_owned(),
            memory_mb: s.memory_mb,
            batch_size: s.batch_size,
            batching_window_s: s.batching_window_s,
            consumers: s.consumers,
            ns_per_event: m.ns_per_record,
            events_per_producer_event: events,
            records_per_producer_event: records,
            bytes_per_producer_event: bytes,
        });
        records = events * m.out_records_per_event;
        bytes = events * m.out_bytes_per_event;
        events *= m.out_events_per_event;
    }
    Ok(inputs)
}

fn hops_of(
    template: &Template,
    args: &CostArgs,
    inputs: &[StageInput],
    measures: &[StageMeasure],
) -> Result<Vec<Hop>> {
    let shards_of = |logical: &str| -> Result<(String, usize)> {
        let name = template
            .stream_name(logical)
            .with_context(|| format!("no stream {logical}"))?;
        let shards = match args.shards {
            Some(n) => n,
            None => template
                .streams()
                .iter()
                .find(|s| s.name == name)
                .map_or(1, |s| s.shards),
        };
        Ok((name, shards))
    };
    let pk = raw_partition_key(args);
    let raw = vec![0u8; args.record_bytes];
    let mut hops = Vec::new();
    let (name, shards) = shards_of(resources::RAW.logical_id)?;
    hops.push(Hop {
        stream: name,
        shards,
        put_units_per_event: stage::put_units(&pk, &raw) as f64,
        kib_per_event: stage::kib_units(&pk, &raw) as f64,
    });
    let outputs = [
        resources::VALID.logical_id,
        resources::ENRICHED.logical_id,
        resources::WINDOW_UPDATES.logical_id,
        resources::ALERTS.logical_id,
    ];
    for ((logical, input), m) in outputs.iter().zip(inputs).zip(measures) {
        let (name, shards) = shards_of(logical)?;
        hops.push(Hop {
            stream: name,
            shards,
            put_units_per_event: input.events_per_producer_event * m.out_put_units_per_event,
            kib_per_event: input.events_per_producer_event * m.out_kib_per_event,
        });
    }
    // Valid input sends nothing to the dead-letter stream; it is priced for its hours.
    let (name, shards) = shards_of(resources::DEAD_LETTER.logical_id)?;
    hops.push(Hop {
        stream: name,
        shards,
        put_units_per_event: 0.0,
        kib_per_event: 0.0,
    });
    Ok(hops)
}

/// The partition key a producer record is priced with (the longest of the keys).
fn raw_partition_key(args: &CostArgs) -> String {
    format!("key-{}", args.keys.saturating_sub(1))
}

/// Measures every stage in-process at the batch shape the rate produces. The aggregate
/// stage's events per invocation depend on how many events an enriched record packs,
/// which only a measurement tells: the first pass assumes one event per record, and
/// when the model then puts a different number in an aggregate invocation, a second
/// pass measures at that size.
fn measure_at_the_rate(
    template: &Template,
    args: &CostArgs,
    settings: &[StageSettings],
    delivery: Delivery,
    raw_bytes: f64,
) -> Result<(Vec<StageMeasure>, String)> {
    let aggregate = &settings[2];
    let per_consumer = args.events_per_second / aggregate.consumers.max(1.0);
    let mut events = (per_consumer * aggregate.batching_window_s.max(MIN_POLL_INTERVAL_S))
        .clamp(1.0, aggregate.batch_size);
    let mut passes = 0;
    loop {
        passes += 1;
        let spec = spec_for(args, aggregate, delivery, events);
        let measured = spec.records;
        eprintln!(
            "sluice cost: measuring every stage on batches of {measured} events over {} keys (pass {passes})",
            spec.keys
        );
        let source = format!(
            "measured now in-process ({} build): 5 aggregate-sized batches of {} events over {} keys, {} ms of event time each",
            if cfg!(debug_assertions) {
                "debug, slow"
            } else {
                "release"
            },
            spec.records,
            spec.keys,
            spec.batch_span_ms
        );
        let measures = stage::measure_single_threaded(template.clone(), spec, STAGES.to_vec())?.0;
        let inputs = stage_inputs(settings, &measures, raw_bytes)?;
        let modelled = stage_cost(&inputs[2], args.events_per_second, args.io_ms)
            .events_per_invocation
            .clamp(1.0, MAX_MEASURED_BATCH_EVENTS);
        let close = (modelled - measured as f64).abs() <= 0.1 * modelled;
        if close || passes == 2 {
            return Ok((measures, source));
        }
        events = modelled;
    }
}

pub async fn run(args: CostArgs) -> Result<bool> {
    if !(args.events_per_second.is_finite() && args.events_per_second > 0.0) {
        bail!(
            "--events-per-second must be a positive number, not {}",
            args.events_per_second
        );
    }
    let template = load_template(None)?;
    let delivery = args.delivery.unwrap_or(Delivery::ExactlyOnce);
    let settings = settings(&template, &args)?;
    let raw_bytes = (args.record_bytes + raw_partition_key(&args).len()) as f64;
    let (measures, source) = match &args.bench {
        Some(path) => (
            read_bench(path)?,
            format!(
                "measurements from {} (their own batch shape)",
                path.display()
            ),
        ),
        None => measure_at_the_rate(&template, &args, &settings, delivery, raw_bytes)?,
    };
    let inputs = stage_inputs(&settings, &measures, raw_bytes)?;
    let hops = hops_of(&template, &args, &inputs, &measures)?;
    let find = |name: &str| measures.iter().find(|m| m.stage == name);
    let (agg, det) = (
        find("aggregate").context("no aggregate")?,
        find("detect").context("no detect")?,
    );
    let detect_events = inputs[3].events_per_producer_event;
    let alerts_wru = detect_events * det.store_write_units_per_event;
    let table = TableUse {
        write_units_per_event: agg.store_write_units_per_event + alerts_wru,
        read_units_per_event: agg.store_read_units_per_event,
        item_writes_per_event: agg.store_writes_per_event
            + detect_events * det.store_writes_per_event,
    };
    // The per-event design: one standard write of a small item (1 WRU) per event, no
    // reads; alerts as measured.
    let naive_table = TableUse {
        write_units_per_event: 1.0 + alerts_wru,
        read_units_per_event: 0.0,
        item_writes_per_event: 1.0 + detect_events * det.store_writes_per_event,
    };
    let r = args.events_per_second;
    let sluice = bill(&inputs, table, hops.clone(), r, args.io_ms, args.on_demand);
    let naive = bill(&inputs, naive_table, hops, r, args.io_ms, args.on_demand);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        writeln!(
            out,
            "{}",
            json!({
                "events_per_second": r, "record_bytes": args.record_bytes, "keys": args.keys,
                "delivery": delivery.to_string(), "kinesis_mode": if args.on_demand { "on-demand" } else { "provisioned" },
                "io_ms": args.io_ms, "source": source, "sluice": sluice, "one_write_per_event": naive,
            })
        )?;
        return Ok(true);
    }
    print_text(&mut out, &args, delivery, &source, &sluice, &naive)?;
    Ok(true)
}

fn print_text(
    out: &mut impl Write,
    args: &CostArgs,
    delivery: Delivery,
    source: &str,
    sluice: &Bill,
    naive: &Bill,
) -> Result<()> {
    writeln!(
        out,
        "sluice cost: {} events/s of {} B over {} keys, {delivery}, Kinesis {}, us-east-1 list prices, arm64",
        args.events_per_second,
        args.record_bytes,
        args.keys,
        if args.on_demand {
            "on-demand"
        } else {
            "provisioned"
        }
    )?;
    writeln!(
        out,
        "figures: {source}; {} ms of AWS I/O assumed per invocation",
        args.io_ms
    )?;
    writeln!(
        out,
        "\nLambda (per stage)        memory  invocations/s  events/inv  billed ms   GB-s/month   $/month"
    )?;
    for c in &sluice.stages {
        writeln!(
            out,
            "  {:<22} {:>6.0} {:>14.2} {:>11.1} {:>10.0} {:>12.0} {:>9.2}",
            c.stage,
            c.memory_mb,
            c.invocations_per_second,
            c.events_per_invocation,
            c.billed_ms,
            c.gb_seconds_per_second * SECONDS_PER_MONTH,
            c.usd_per_second * SECONDS_PER_MONTH
        )?;
    }
    writeln!(
        out,
        "DynamoDB on-demand: {:.4} item writes, {:.4} WRU, {:.4} RRU per event",
        sluice.table.item_writes_per_event,
        sluice.table.write_units_per_event,
        sluice.table.read_units_per_event
    )?;
    writeln!(
        out,
        "Kinesis per hop        shards  PUT units/event  KB/event"
    )?;
    for h in &sluice.hops {
        writeln!(
            out,
            "  {:<20} {:>6} {:>16.4} {:>9.4}",
            h.stream, h.shards, h.put_units_per_event, h.kib_per_event
        )?;
    }
    writeln!(
        out,
        "\n                                   sluice   one write per event"
    )?;
    let row = |out: &mut dyn Write, label: &str, a: f64, b: f64| {
        writeln!(out, "  {label:<30} {a:>10.2} {b:>14.2}")
    };
    row(
        out,
        "Lambda $/month",
        sluice.lambda_usd_per_month,
        naive.lambda_usd_per_month,
    )?;
    row(
        out,
        "DynamoDB $/month",
        sluice.dynamodb_usd_per_month,
        naive.dynamodb_usd_per_month,
    )?;
    row(
        out,
        "Kinesis PUT/data $/month",
        sluice.kinesis_usage_usd_per_month,
        naive.kinesis_usage_usd_per_month,
    )?;
    row(
        out,
        "Kinesis shard/stream-hours $/month",
        sluice.kinesis_hourly_usd_per_month,
        naive.kinesis_hourly_usd_per_month,
    )?;
    row(
        out,
        "total $/month",
        sluice.total_usd_per_month,
        naive.total_usd_per_month,
    )?;
    writeln!(
        out,
        "  {:<30} {:>10.4} {:>14.4}",
        "$ per million events", sluice.usd_per_million_events, naive.usd_per_million_events
    )?;
    writeln!(
        out,
        "  {:<30} {:>10.4} {:>14.4}",
        "  excluding shard-hours",
        sluice.usd_per_million_events_excluding_shard_hours,
        naive.usd_per_million_events_excluding_shard_hours
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(records_per_event: f64) -> StageInput {
        StageInput {
            name: "s".into(),
            memory_mb: 512.0,
            batch_size: 1000.0,
            batching_window_s: 2.0,
            consumers: 2.0,
            ns_per_event: 1000.0,
            events_per_producer_event: 1.0,
            records_per_producer_event: records_per_event,
            bytes_per_producer_event: 200.0,
        }
    }

    #[test]
    fn invocations_follow_the_batching_window_and_the_batch_size() {
        // 1,000 records/s over 2 consumers, 2 s windows: 1,000 records per batch, 1/s.
        let c = stage_cost(&stage(1.0), 1000.0, 20.0);
        assert_eq!(c.invocations_per_second, 1.0);
        assert_eq!(c.events_per_invocation, 1000.0);
        // 1,000 events × 1 µs = 1 ms of a full vCPU; 512 MB has 512/1769 of one.
        // 20 + 3.455 = 23.455 ms, billed 24 ms.
        assert_eq!(c.billed_ms, 24.0);
        assert!((c.gb_seconds_per_second - 0.024 * 0.5).abs() < 1e-12);
        let usd = 0.012 * 0.000_013_333_4 + 0.2 / 1e6;
        assert!((c.usd_per_second - usd).abs() < 1e-15);
        // 10× the rate: the batch size caps a batch at 1,000 records: 10 invocations/s.
        let c = stage_cost(&stage(1.0), 10_000.0, 20.0);
        assert_eq!(c.invocations_per_second, 10.0);
        // A short window still waits for Lambda's one-second poll.
        let mut s = stage(1.0);
        s.batching_window_s = 0.0;
        assert_eq!(stage_cost(&s, 100.0, 20.0).invocations_per_second, 2.0);
        // Packed records: 10 events per record, 100 records per batch of 1,000 events.
        let c = stage_cost(&stage(0.1), 1000.0, 20.0);
        assert_eq!(c.invocations_per_second, 1.0);
        assert_eq!(c.events_per_invocation, 1000.0);
    }

    #[test]
    fn a_batch_stops_at_the_six_megabyte_invocation_payload() {
        // 200 B per event, 100 events per record: 20,000 B, 26,668 B of base64, plus
        // 550 B of envelope: 27,218 B per record, 231 records in 6,291,456 B.
        let mut s = stage(0.01);
        s.bytes_per_producer_event = 200.0;
        s.batch_size = 10_000.0;
        s.batching_window_s = 300.0;
        assert_eq!(s.payload_cap_records(), 231.0);
        // 1,000 events/s over 2 consumers for 300 s would be 1,500 records (150,000
        // events) per batch; the payload caps it at 231 records, 23,100 events.
        let c = stage_cost(&s, 1000.0, 20.0);
        assert_eq!(c.events_per_invocation, 23_100.0);
        assert!((c.invocations_per_second - 10.0 / 231.0).abs() < 1e-12);
        // Small records: the batch size binds first.
        let mut s = stage(1.0);
        s.bytes_per_producer_event = 150.0;
        assert!(s.payload_cap_records() > s.batch_size);
        assert_eq!(stage_cost(&s, 1000.0, 20.0).events_per_invocation, 1000.0);
    }

    #[test]
    fn dynamodb_and_kinesis_are_priced_per_unit() {
        // 1,000 events/s at 0.1 WRU and 0.05 RRU each: 100 WRU/s and 50 RRU/s.
        let t = TableUse {
            write_units_per_event: 0.1,
            read_units_per_event: 0.05,
            item_writes_per_event: 0.05,
        };
        let usd = dynamodb_usd_per_second(&t, 1000.0);
        assert!((usd - (100.0 * 0.625 + 50.0 * 0.125) / 1e6).abs() < 1e-15);
        let hops = vec![
            Hop {
                stream: "raw".into(),
                shards: 2,
                put_units_per_event: 1.0,
                kib_per_event: 1.0,
            },
            Hop {
                stream: "valid".into(),
                shards: 2,
                put_units_per_event: 0.01,
                kib_per_event: 0.2,
            },
        ];
        // 1,010 PUT units/s at $0.014 per million.
        let usd = kinesis_usage_usd_per_second(&hops, 1000.0, false);
        assert!((usd - 1010.0 * 0.014 / 1e6).abs() < 1e-15);
        // 4 shards × $0.015/h; on-demand: 2 streams × $0.04/h.
        assert!((kinesis_hourly(&hops, false) - 0.06).abs() < 1e-12);
        assert!((kinesis_hourly(&hops, true) - 0.08).abs() < 1e-12);
        // On-demand: 1,200 KB/s in and out.
        let gb = 1200.0 / (1024.0 * 1024.0);
        assert!((kinesis_usage_usd_per_second(&hops, 1000.0, true) - gb * 0.12).abs() < 1e-15);
    }

    #[test]
    fn a_bill_adds_up_per_month_and_per_million_events() {
        let t = TableUse {
            write_units_per_event: 1.0,
            read_units_per_event: 0.0,
            item_writes_per_event: 1.0,
        };
        let hops = vec![Hop {
            stream: "raw".into(),
            shards: 1,
            put_units_per_event: 1.0,
            kib_per_event: 1.0,
        }];
        let b = bill(&[], t, hops, 1000.0, 20.0, false);
        // Per million events: $0.625 of WRU and $0.014 of PUT units.
        assert!((b.usd_per_million_events_excluding_shard_hours - 0.639).abs() < 1e-9);
        // One shard-hour ($0.015) carries 3.6 million events: + $0.0041667 per million.
        assert!((b.usd_per_million_events - (0.639 + 0.015 / 3.6)).abs() < 1e-9);
        assert!((b.kinesis_hourly_usd_per_month - 0.015 * 730.0).abs() < 1e-9);
        assert!((b.dynamodb_usd_per_month - 1000.0 * 0.625 / 1e6 * 730.0 * 3600.0).abs() < 1e-6);
    }

    #[test]
    fn stage_inputs_chain_each_stage_output_to_the_next() {
        let m = |stage: &str, out_events: f64, out_records: f64| StageMeasure {
            stage: stage.into(),
            delivery: "exactly-once".into(),
            records: 1,
            kinesis_records: 1,
            batches: 1,
            records_per_sec: 1.0,
            ns_per_record: 500.0,
            batch_ms_p50: 0.0,
            batch_ms_p99: 0.0,
            store_writes_per_event: 0.0,
            store_write_units_per_event: 0.0,
            store_read_units_per_event: 0.0,
            out_events_per_event: out_events,
            out_records_per_event: out_records,
            out_put_units_per_event: out_records,
            out_kib_per_event: out_records,
            out_bytes_per_event: out_records * 1000.0,
            dead_letters: 0,
            peak_rss_bytes: None,
        };
        let measures = vec![
            m("ingest", 1.0, 0.5),
            m("enrich", 1.0, 0.25),
            m("aggregate", 0.02, 0.001),
            m("detect", 1.0, 0.1),
        ];
        let settings: Vec<StageSettings> = (0..4)
            .map(|_| StageSettings {
                memory_mb: 256.0,
                batch_size: 500.0,
                batching_window_s: 1.0,
                consumers: 4.0,
            })
            .collect();
        let inputs = stage_inputs(&settings, &measures, 160.0).expect("test setup");
        let chain: Vec<(f64, f64, f64)> = inputs
            .iter()
            .map(|i| {
                (
                    i.events_per_producer_event,
                    i.records_per_producer_event,
                    i.bytes_per_producer_event,
                )
            })
            .collect();
        assert_eq!(
            chain,
            vec![
                (1.0, 1.0, 160.0),
                (1.0, 0.5, 500.0),
                (1.0, 0.25, 250.0),
                (0.02, 0.001, 1.0)
            ]
        );
    }
}
