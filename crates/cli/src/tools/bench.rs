//! `sluice bench`: numbers, not assertions. Throughput, DynamoDB writes and request
//! units per event for both delivery modes, invocation latency percentiles per stage,
//! and peak memory, all in one process on the in-memory backend (which meters request
//! units the way DynamoDB charges them: by item size, consistent reads, transactional
//! writes at twice the price). With `--stage`, each stage's handler alone on
//! Lambda-shaped batches, single-threaded ([`stage`]), optionally beside the Python
//! handler baseline of `infra/bench/python_handler.py`.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use serde_json::json;
use sluice_core::config::{AggregateConfig, Delivery};
use sluice_core::input::record::StreamRecord;
use sluice_core::stage::Stage;
use sluice_local::scenario::{DEFAULT_START_MS, Scenario};
use sluice_local::store::MemoryAggregateStore;
use sluice_local::streams::MemoryStreams;

use crate::lines::{ChunkBound, LineSource};
use crate::template::load_template;

pub mod stage;
use crate::pipeline::{InProcess, STAGES};

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  cargo run --release -p sluice -- bench\n  sluice bench --stage all --json --compare-python\n  sluice bench --events 200000 --scenario payments --json"
)]
pub struct BenchArgs {
    /// Events for the whole-pipeline runs.
    #[arg(long, default_value_t = 100_000)]
    pub events: usize,
    #[arg(long, default_value = "iot")]
    pub scenario: Scenario,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// One JSON line per measurement instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub stage: stage::StageArgs,
}

pub async fn run(args: BenchArgs) -> Result<bool> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.stage.stage.is_some() {
        return stage::run(&args.stage, args.json, &mut out);
    }
    if !args.json {
        writeln!(
            out,
            "sluice bench ({} build)",
            if cfg!(debug_assertions) {
                "debug: use --release for real numbers"
            } else {
                "release"
            }
        )?;
        writeln!(
            out,
            "\n1. One aggregate batch: 10,000 events over 100 keys, one minute (DESIGN: ~100 items, not 10,000)"
        )?;
    }
    for delivery in [Delivery::ExactlyOnce, Delivery::AtLeastOnce] {
        let m = one_batch(delivery).await;
        if args.json {
            writeln!(
                out,
                "{}",
                json!({"bench": "one_batch", "delivery": delivery.to_string(), "events": 10_000, "keys": 100, "items_written": m.items, "transactions": m.transactions, "write_units": m.write_units, "read_units": m.read_units, "micros": m.micros})
            )?;
        } else {
            writeln!(
                out,
                "   {delivery:<13}: {} items written in {} transactions ({:.4} per event), {:.0} write units, {:.0} read units, {:.1} ms",
                m.items,
                m.transactions,
                m.items as f64 / 10_000.0,
                m.write_units,
                m.read_units,
                m.micros as f64 / 1000.0
            )?;
        }
    }
    if !args.json {
        writeln!(
            out,
            "\n2. Whole pipeline, in process: {} {} events (seed {})",
            args.events, args.scenario, args.seed
        )?;
    }
    for delivery in [Delivery::ExactlyOnce, Delivery::AtLeastOnce] {
        let mut template = load_template(None)?;
        template.set_parameter("Delivery", delivery.to_string());
        let mut pipeline = InProcess::build(
            &template,
            args.scenario.reference(),
            args.scenario.rules(),
            None,
        )?;
        let started = Instant::now();
        // One burst: every batch as full as the settings allow, so the costs per event
        // are the pipeline's, not the chunking's (the demo feeds smaller chunks).
        let mut input = LineSource::scenario(args.scenario, args.events, args.seed, None);
        pipeline
            .feed_in_chunks(
                || input.next_chunk(ChunkBound::lines(args.events.max(1))),
                |_| {},
                |_, _| {},
            )
            .await?;
        let secs = started.elapsed().as_secs_f64();
        let ledger = pipeline.stages.ledger.summary();
        let meter = &pipeline.store.meter;
        let per = |x: f64| x / ledger.events_in.max(1) as f64;
        let peak_kib = peak_rss_kib();
        if args.json {
            let mut latency = serde_json::Map::new();
            for stage in STAGES {
                if let Some((p50, p95, p99, max)) = pipeline.stages.latency_percentiles(stage) {
                    latency.insert(
                        stage.into(),
                        json!({"p50_us": p50, "p95_us": p95, "p99_us": p99, "max_us": max}),
                    );
                }
            }
            writeln!(
                out,
                "{}",
                json!({
                    "bench": "pipeline", "delivery": delivery.to_string(), "events": ledger.events_in,
                    "seconds": secs, "events_per_second": ledger.events_in as f64 / secs,
                    "item_writes_per_event": per(meter.item_writes() as f64),
                    "write_units_per_event": per(meter.write_units()),
                    "read_units_per_event": per(meter.read_units()),
                    "invocation_latency": latency, "peak_rss_kib": peak_kib,
                })
            )?;
        } else {
            writeln!(
                out,
                "   {delivery:<13}: {:.2} s, {:.0} events/s; per event {:.4} item writes, {:.4} write units, {:.4} read units",
                secs,
                ledger.events_in as f64 / secs,
                per(meter.item_writes() as f64),
                per(meter.write_units()),
                per(meter.read_units())
            )?;
            for stage in STAGES {
                if let Some((p50, p95, p99, max)) = pipeline.stages.latency_percentiles(stage) {
                    writeln!(
                        out,
                        "      {stage:<9} invocation p50 {:>8.2} ms  p95 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms",
                        p50 as f64 / 1000.0,
                        p95 as f64 / 1000.0,
                        p99 as f64 / 1000.0,
                        max as f64 / 1000.0
                    )?;
                }
            }
            if let Some(kib) = peak_kib {
                writeln!(
                    out,
                    "      peak memory (process so far): {:.1} MiB",
                    kib as f64 / 1024.0
                )?;
            }
        }
    }
    Ok(true)
}

struct BatchMeasure {
    items: u64,
    transactions: u64,
    write_units: f64,
    read_units: f64,
    micros: u128,
}

/// The aggregate stage alone, on one 10,000-record batch over 100 keys.
async fn one_batch(delivery: Delivery) -> BatchMeasure {
    let streams = MemoryStreams::new(Arc::new(sluice_core::ports::SystemClock));
    streams.create("updates", 1);
    streams.create("dlq", 1);
    let store = Arc::new(MemoryAggregateStore::new());
    let config = AggregateConfig {
        delivery,
        ..AggregateConfig::default()
    };
    let stage = sluice_aggregate::handler(
        store.clone(),
        streams.sink("updates"),
        streams.sink("dlq"),
        config,
    );
    let records: Vec<StreamRecord> = (0..10_000u64)
        .map(|i| StreamRecord {
            stream: "enriched".into(),
            shard_id: "shardId-000000000000".into(),
            sequence_number: format!("49{:054}", i + 1),
            partition_key: format!("key-{}", i % 100),
            data: format!(
                r#"{{"id":"e{i}","key":"key-{}","type":"t","ts":{},"value":{}}}"#,
                i % 100,
                DEFAULT_START_MS + (i as i64 * 5),
                i % 7
            )
            .into_bytes(),
            arrival_ms: 0,
        })
        .collect();
    let started = Instant::now();
    let outcome = stage.process(&records, None).await;
    BatchMeasure {
        items: outcome.stats.items_written,
        transactions: outcome.stats.transactions,
        write_units: store.meter.write_units(),
        read_units: store.meter.read_units(),
        micros: started.elapsed().as_micros(),
    }
}

/// Peak resident memory of this process (Linux), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
}
