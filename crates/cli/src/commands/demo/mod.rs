//! `sluice demo`: the whole pipeline in one process on in-memory streams and tables,
//! fed by a synthetic producer or a file.

mod sql;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use sluice_core::detect::rules::{Rule, parse_rules};
use sluice_local::faults::Faults;
use sluice_local::scenario::Scenario;
use sluice_local::template::Template;

use crate::lines::{ChunkBound, LineSource, ReadAhead};
use crate::output::{self, Summary};
use crate::pipeline::AggregateOverrides;
use crate::pipeline::InProcess;
use crate::pipeline::chaos_faults;
use crate::template::load_template;
use crate::verify;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  sluice demo\n  sluice demo --scenario payments --events 100000 --seed 7\n  sluice demo --file events.ndjson --json > out.jsonl\n  sluice demo --delivery at-least-once --shards 4\n\nSummary: events in, counted, dead letters, late, duplicates; events/s; DynamoDB writes\nper event; and event-to-aggregate latency p50/p99: from the moment the producer's record\nreached the raw stream to the aggregate commit that counted the event, on the simulated\nclock (batching windows, as Lambda would wait them) and on the wall clock. Only counted\nevents are samples (an event counted on a retry is measured to the commit that counted\nit); dead letters, late events and duplicates are not."
)]
pub struct DemoArgs {
    /// Synthetic producer: iot sensor readings, payments, or ad clicks.
    #[arg(long, default_value = "iot")]
    pub scenario: Scenario,
    /// How many synthetic events to produce.
    #[arg(long, default_value_t = 20_000)]
    pub events: usize,
    /// Seed of the synthetic producer (same seed, same events).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Read newline-delimited JSON envelopes from this file instead (one record per
    /// line; bad lines become dead letters like any other record).
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Shards of the raw, valid and enriched streams (default: template.yaml's).
    #[arg(long)]
    pub shards: Option<usize>,
    #[command(flatten)]
    pub aggregate: AggregateOverrides,
    /// Rules as JSON lines (default: the scenario's rules).
    #[arg(long, value_name = "PATH")]
    pub rules: Option<PathBuf>,
    /// Print JSON lines on stdout (aggregates, dead letters, alerts, then a summary).
    #[arg(long)]
    pub json: bool,
    /// template.yaml to take stage settings from (default: the bundled one).
    #[arg(long, value_name = "PATH")]
    pub template: Option<PathBuf>,
    /// Event time of the first synthetic event (RFC 3339 or epoch ms).
    #[arg(long, value_parser = parse_time)]
    pub start: Option<i64>,
    /// Inject faults, deterministically from this seed: crashes after writes, throttling,
    /// version conflicts, producer duplicates, redelivered and bisected batches, upstream
    /// re-emits (at-least-once mode: only the faults that mode guards against).
    #[arg(long, value_name = "SEED")]
    pub chaos: Option<u64>,
    /// Compute the ground truth from the input independently of the pipeline and compare
    /// it with the stored aggregates; exit non-zero on any difference.
    #[arg(long)]
    pub verify: bool,
    #[command(flatten)]
    pub serve: crate::commands::dashboard::ServeArgs,
    /// Run a Flink SQL pipeline (.sql) over --file instead of the event envelope: one
    /// `{"kind":"row",...}` line per (view, window, group), then the summary.
    #[arg(long, value_name = "FILE.sql", requires = "file")]
    pub sql: Option<PathBuf>,
    /// With --sql: reference rows for a lookup join, TABLE=FILE.ndjson (repeatable).
    #[arg(long, value_name = "TABLE=FILE", requires = "sql")]
    pub reference: Vec<String>,
}

fn parse_time(s: &str) -> Result<i64, String> {
    sluice_core::time::parse_time_arg(s)
        .ok_or_else(|| format!("{s:?} is neither RFC 3339 nor epoch milliseconds"))
}

pub fn load_rules(path: Option<&PathBuf>, scenario: Scenario) -> Result<Vec<Rule>> {
    match path {
        None => Ok(scenario.rules()),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading rules {}", p.display()))?;
            parse_rules(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
        }
    }
}

pub async fn run(args: DemoArgs) -> Result<bool> {
    if let Some(sql) = &args.sql {
        return sql::run(&args, sql).await;
    }
    let template = demo_template(&args)?;
    let input = match &args.file {
        Some(path) => LineSource::file(path)?,
        None => LineSource::scenario(args.scenario, args.events, args.seed, args.start),
    };
    // Generating or reading lines takes about a tenth of the demo's time: a thread does
    // it a chunk ahead, while the pipeline (one thread) works through the last one.
    let input = ReadAhead::start(input, ChunkBound::DEMO);
    let rules = load_rules(args.rules.as_ref(), args.scenario)?;
    let faults = chaos_faults(args.chaos, &template);
    let mut pipeline = InProcess::build(
        &template,
        args.scenario.reference(),
        rules.clone(),
        faults.clone(),
    )?;
    let source = describe_source(&args);
    eprintln!(
        "sluice demo: {source}; delivery {}; windows {}",
        pipeline.stages.aggregate_config.delivery, pipeline.stages.aggregate_config.windows
    );
    if args.json {
        // Every dead letter is a line of the output: kept on disk as they stream by.
        lock_digest(&pipeline)
            .keep_lines()
            .context("creating a temporary file for the dead letters of --json")?;
    }
    let server =
        crate::commands::dashboard::serve_demo(&args.serve, &pipeline, source.clone()).await?;
    let mut truth = match args.verify {
        // The reference rows the pipeline enriches with: `InProcess::build` above.
        true => Some(
            verify::GroundTruth::new(
                &pipeline.stages.aggregate_config,
                verify::ingest_bounds(&template)?,
            )
            .with_reference(args.scenario.reference()),
        ),
        false => None,
    };
    let started = Instant::now();
    let produced = feed_with_progress(&mut pipeline, &input, truth.as_mut()).await?;
    let report = Report::of(&pipeline, produced, started.elapsed(), &faults);
    let consistent = print_results(&args, &pipeline, &report, &rules, truth.as_ref())?;
    if let Some(server) = server {
        server.until_interrupted().await?;
    }
    Ok(consistent)
}

/// The deployment's template with the demo's overrides (`--shards`, the aggregate
/// flags) applied.
pub(crate) fn demo_template(args: &DemoArgs) -> Result<Template> {
    let mut template = load_template(args.template.as_ref())?;
    if let Some(n) = args.shards {
        if n == 0 || n > 64 {
            bail!("--shards {n}: use 1 to 64");
        }
        for p in ["RawShards", "ValidShards", "EnrichedShards"] {
            template.set_parameter(p, n.to_string());
        }
    }
    args.aggregate.apply(&mut template);
    Ok(template)
}

/// Where the events come from, as the first line and the dashboard say it.
fn describe_source(args: &DemoArgs) -> String {
    match &args.file {
        Some(p) => format!("file {}", p.display()),
        None => format!(
            "{} events from scenario {} (seed {})",
            args.events, args.scenario, args.seed
        ),
    }
}

/// Feeds every chunk of `input` through the pipeline (and into `truth`), with a
/// progress line on stderr; returns how many events were produced.
async fn feed_with_progress(
    pipeline: &mut InProcess,
    input: &ReadAhead,
    mut truth: Option<&mut verify::GroundTruth>,
) -> Result<u64> {
    let mut last = Instant::now();
    let interactive = std::io::stderr().is_terminal();
    let every = Duration::from_millis(if interactive { 250 } else { 2000 });
    let produced = pipeline
        .feed_in_chunks(
            || input.next_chunk(),
            |sent| {
                if let Some(t) = truth.as_deref_mut() {
                    sent.iter().for_each(|line| t.feed(line));
                }
            },
            |p, produced| {
                if last.elapsed() >= every {
                    last = Instant::now();
                    progress_line(p, produced, interactive);
                }
            },
        )
        .await?;
    progress_line(pipeline, produced, interactive);
    if interactive {
        eprintln!();
    }
    Ok(produced)
}

/// Prints the stored views, alerts and summary (`--json` lines or tables) and the
/// verdict of `--verify`; returns whether the books balanced and the verdict found no
/// difference.
fn print_results(
    args: &DemoArgs,
    pipeline: &InProcess,
    report: &Report,
    rules: &[Rule],
    truth: Option<&verify::GroundTruth>,
) -> Result<bool> {
    // Every view at once only to print (--json) or verify them all: the table reads the
    // store a view at a time.
    let views = if args.json || args.verify {
        output::sorted_views(pipeline.store.views())
    } else {
        Vec::new()
    };
    let alerts = pipeline.alerts.alerts();
    let mut summary_json = report.summary_json(pipeline, alerts.len())?;
    let verdict = truth.map(|truth| {
        let rules = Some((rules, alerts.as_slice()));
        verify::verdict(truth, &views, &report.ledger, rules, verify::Counts::All)
    });
    if let Some(diffs) = &verdict {
        verify::mark_summary(&mut summary_json, diffs);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        let mut digest = lock_digest(pipeline);
        let dead_letters = |out: &mut _| digest.write_lines(out);
        output::print_json_lines(&mut out, &views, dead_letters, &alerts, &summary_json)?;
    } else {
        output::print_store_table(&mut out, &pipeline.store, 10)?;
        output::print_alerts(&mut out, &alerts)?;
        report.write_human(&mut out, pipeline)?;
    }
    if let Some(diffs) = &verdict {
        verify::write_verdict(&mut out, diffs, args.json)?;
    }
    drop(out);
    std::io::stdout().flush()?;
    Ok(report.consistent() && verdict.as_ref().is_none_or(Vec::is_empty))
}

/// Dead letters the human summary shows whole (the first ones).
const SHOWN_DEAD_LETTERS: usize = 5;

/// What a finished demo run reports: the books, the meters, the latency and the faults.
struct Report {
    ledger: sluice_local::ledger::LedgerSummary,
    latency: sluice_local::ledger::EventLatency,
    produced: u64,
    elapsed: Duration,
    /// Faults injected by name (`--chaos`), with every kind the mode injects listed.
    injected: Option<std::collections::BTreeMap<&'static str, u64>>,
}

impl Report {
    fn of(
        pipeline: &InProcess,
        produced: u64,
        elapsed: Duration,
        faults: &Option<Arc<Faults>>,
    ) -> Self {
        let unreadable = lock_digest(pipeline).unreadable();
        if unreadable > 0 {
            eprintln!(
                "warning: {unreadable} records on the dead-letter stream are not dead letters"
            );
        }
        let injected = faults.as_ref().map(|f| {
            for (stage, m) in pipeline.runner.mapping_stats() {
                if m.dropped_batches > 0 {
                    eprintln!(
                        "warning: {stage} dropped {} batches after their retries",
                        m.dropped_batches
                    );
                }
            }
            let mut injected = f.injected();
            injected.entry("producer_duplicate").or_default();
            injected
        });
        Report {
            ledger: pipeline.stages.ledger.summary(),
            latency: pipeline.stages.ledger.latency().unwrap_or_default(),
            produced,
            elapsed,
            injected,
        }
    }

    fn per_event(&self, x: f64) -> f64 {
        match self.ledger.events_in {
            0 => 0.0,
            n => x / n as f64,
        }
    }

    fn events_per_sec(&self) -> f64 {
        self.ledger.events_in as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Every event has exactly one fate and every line produced was received.
    fn consistent(&self) -> bool {
        let l = &self.ledger;
        let ok = l.unsettled == 0
            && l.events_in == self.produced
            && l.events_in == l.counted + l.dead_letter + l.late + l.duplicates;
        if !ok {
            eprintln!(
                "error: the ledger does not add up: produced {}, events_in {}, unsettled {} (counted {} + dead letters {} + late {} + duplicates {})",
                self.produced,
                l.events_in,
                l.unsettled,
                l.counted,
                l.dead_letter,
                l.late,
                l.duplicates
            );
        }
        ok
    }

    /// The `--json` summary line (see docs/reference/json-contract.md).
    fn summary_json(&self, pipeline: &InProcess, alerts: usize) -> Result<serde_json::Value> {
        let l = &self.ledger;
        let mut v = serde_json::to_value(Summary {
            kind: "summary",
            events_in: l.events_in,
            counted: l.counted,
            dead_letter: l.dead_letter,
            late: l.late,
            duplicates: l.duplicates,
        })?;
        let meter = &pipeline.store.meter;
        if let Some(obj) = v.as_object_mut() {
            let fields = [
                (
                    "delivery",
                    json!(pipeline.stages.aggregate_config.delivery.to_string()),
                ),
                ("alerts", json!(alerts)),
                ("unsettled", json!(l.unsettled)),
                (
                    "unenriched",
                    json!(pipeline.stages.stage_stats("enrich").unenriched),
                ),
                ("dynamodb_item_writes", json!(meter.item_writes())),
                ("dynamodb_read_units", json!(meter.read_units())),
                ("dynamodb_write_units", json!(meter.write_units())),
                (
                    "item_writes_per_event",
                    json!(self.per_event(meter.item_writes() as f64)),
                ),
                (
                    "write_units_per_event",
                    json!(self.per_event(meter.write_units())),
                ),
                (
                    "read_units_per_event",
                    json!(self.per_event(meter.read_units())),
                ),
                ("elapsed_s", json!(self.elapsed.as_secs_f64())),
                ("events_per_sec", json!(self.events_per_sec())),
            ];
            for (name, value) in fields {
                obj.insert(name.into(), value);
            }
            output::insert_latency(obj, &self.latency);
            if let Some(injected) = &self.injected {
                obj.insert("injected".into(), json!(injected));
            }
        }
        Ok(v)
    }

    /// The human summary after the tables: the books, dead letters by reason with the
    /// first few whole, the faults injected, DynamoDB's meters and the latency.
    fn write_human(&self, out: &mut impl Write, pipeline: &InProcess) -> Result<()> {
        let l = &self.ledger;
        writeln!(
            out,
            "\n{} events in {:.2} s ({:.0} events/s): {} counted, {} dead letters, {} late, {} duplicates collapsed.",
            l.events_in,
            self.elapsed.as_secs_f64(),
            self.events_per_sec(),
            l.counted,
            l.dead_letter,
            l.late,
            l.duplicates
        )?;
        if !l.dead_letter_reasons.is_empty() {
            writeln!(
                out,
                "Dead letters by reason: {}",
                counts_line(l.dead_letter_reasons.iter().map(|(r, n)| (r, n)))
            )?;
            let digest = lock_digest(pipeline);
            let sample = digest.sample();
            let shown = &sample[..sample.len().min(SHOWN_DEAD_LETTERS)];
            writeln!(
                out,
                "First {} of {} dead-letter records, late ones included (all of them: --json):",
                shown.len(),
                digest.counts().total
            )?;
            output::print_dead_letters(out, shown)?;
        }
        if let Some(injected) = &self.injected {
            writeln!(out, "Faults injected: {}.", counts_line(injected.iter()))?;
        }
        let meter = &pipeline.store.meter;
        writeln!(
            out,
            "DynamoDB: {} item writes ({:.4} per event), {:.1} write units, {:.1} read units.",
            meter.item_writes(),
            self.per_event(meter.item_writes() as f64),
            meter.write_units(),
            meter.read_units()
        )?;
        writeln!(out, "{}", output::latency_line(&self.latency))?;
        Ok(())
    }
}

pub(crate) fn lock_digest(
    pipeline: &InProcess,
) -> std::sync::MutexGuard<'_, crate::digest::DeadLetterDigest> {
    pipeline
        .dead_letters
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `name n, name n` in the order given.
fn counts_line<K: std::fmt::Display, N: std::fmt::Display>(
    counts: impl Iterator<Item = (K, N)>,
) -> String {
    counts
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The live summary (see `output::live_summary`); the backlog of a stage is what its
/// input stream still holds (the demo drops what every consumer has checkpointed).
fn progress_line(p: &InProcess, produced: u64, interactive: bool) {
    let meter = &p.store.meter;
    let summary = p.stages.live_summary(
        Some(produced),
        Some((meter.read_units(), meter.write_units())),
        |stream| Some(p.streams.len(stream) as u64),
    );
    output::progress(&summary, interactive);
}
