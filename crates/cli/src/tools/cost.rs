//! `sluice cost`: what the pipeline costs on AWS per month and per million events, from
//! measured figures, not guesses: the per-stage speed, DynamoDB writes and request units
//! per event and Kinesis record sizes of `sluice bench --stage` (run here in-process at
//! the batch shape the given rate produces, or read from `--bench FILE`), priced by
//! `pricing` at us-east-1 list prices. Beside it, the same pipeline with one DynamoDB write
//! per event (the per-event `UpdateItem` design), to show what in-batch combining saves;
//! after it, the two Kinesis capacity modes side by side (`capacity_mode`).
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
use serde_json::json;
use sluice_core::config::Delivery;
use sluice_core::resources;
use sluice_local::template::Template;

use crate::pipeline::STAGES;
use crate::template::load_template;
use crate::tools::bench::stage::{self, Spec, StageMeasure};
use crate::tools::capacity_mode;
use crate::tools::pricing::{
    Bill, Hop, MIN_POLL_INTERVAL_S, SECONDS_PER_MONTH, StageInput, TableUse, bill, stage_cost,
};

/// The largest aggregate batch the model measures in-process (events), to bound the
/// time and memory of `sluice cost`.
pub const MAX_MEASURED_BATCH_EVENTS: f64 = 200_000.0;

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
    /// Both modes are compared after the bill either way.
    #[arg(long)]
    pub on_demand: bool,
    /// The peak rate provisioned streams must take (default: --events-per-second, a
    /// steady load): the comparison of capacity modes sizes provisioned shards for it,
    /// while on-demand follows the load.
    #[arg(long, value_name = "EVENTS_PER_SECOND")]
    pub peak_events_per_second: Option<f64>,
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
        // One event per producer record (a KPL-aggregated record carries many).
        records_per_event: 1.0,
        bytes_per_event: (pk.len() + raw.len()) as f64,
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
            records_per_event: input.events_per_producer_event * m.out_records_per_event,
            bytes_per_event: input.events_per_producer_event * m.out_bytes_per_event,
        });
    }
    // Valid input sends nothing to the dead-letter stream; it is priced for its hours.
    let (name, shards) = shards_of(resources::DEAD_LETTER.logical_id)?;
    hops.push(Hop {
        stream: name,
        shards,
        put_units_per_event: 0.0,
        kib_per_event: 0.0,
        records_per_event: 0.0,
        bytes_per_event: 0.0,
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
    let peak = args.peak_events_per_second.unwrap_or(r);
    if !(peak.is_finite() && peak >= r) {
        bail!("--peak-events-per-second must be at least --events-per-second ({r}), not {peak}");
    }
    let modes = capacity_mode::compare(&inputs, table, &hops, r, peak, args.io_ms);
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
                "capacity_modes": modes,
            })
        )?;
        return Ok(true);
    }
    print_text(&mut out, &args, delivery, &source, &sluice, &naive)?;
    capacity_mode::print(&mut out, &modes)?;
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
