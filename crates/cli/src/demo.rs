//! `sluice demo`: the whole pipeline in one process on in-memory streams and tables,
//! fed by a synthetic producer or a file.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use sluice_core::rules::{Rule, parse_rules};
use sluice_local::scenario::{DEFAULT_START_MS, Noise, Producer, Scenario};
use sluice_local::template::Template;

use std::sync::Arc;

use sluice_local::faults::{FaultRates, Faults};

use crate::output::{self, Summary};
use crate::pipeline::AggregateOverrides;
use crate::pipeline::InProcess;
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
    pub serve: crate::dashboard::ServeArgs,
}

fn parse_time(s: &str) -> Result<i64, String> {
    sluice_core::time::parse_time_arg(s)
        .ok_or_else(|| format!("{s:?} is neither RFC 3339 nor epoch milliseconds"))
}

pub fn load_template(path: Option<&PathBuf>) -> Result<Template> {
    match path {
        None => Ok(Template::parse(sluice_local::template::BUNDLED_TEMPLATE)?),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading template {}", p.display()))?;
            Template::parse(&text).with_context(|| format!("parsing template {}", p.display()))
        }
    }
}

/// Reads a newline-delimited file as raw lines (bytes: invalid UTF-8 is input too).
pub fn read_lines(path: &PathBuf) -> Result<Vec<Vec<u8>>> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading input file {}", path.display()))?;
    Ok(bytes
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.trim_ascii().is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// Lines the demo writes to the raw stream per round. Measured on `iot`: 20,000 keeps
/// peak memory near 60 MiB at 100,000 events (50,000: about 115 MiB) for about 10% more
/// item writes per event than one burst (each drain flushes partial batches).
pub const CHUNK_LINES: usize = 20_000;

/// Where the demo's producer lines come from, read a chunk at a time.
pub enum LineSource {
    Scenario {
        producer: Producer,
        left: usize,
    },
    File {
        reader: BufReader<File>,
        path: PathBuf,
    },
}

impl LineSource {
    pub fn scenario(scenario: Scenario, events: usize, seed: u64, start: Option<i64>) -> Self {
        LineSource::Scenario {
            producer: scenario.producer(seed, start.unwrap_or(DEFAULT_START_MS), Noise::default()),
            left: events,
        }
    }

    pub fn file(path: &Path) -> Result<Self> {
        let file =
            File::open(path).with_context(|| format!("reading input file {}", path.display()))?;
        Ok(LineSource::File {
            reader: BufReader::new(file),
            path: path.to_owned(),
        })
    }

    /// Up to `max` more lines (bytes: invalid UTF-8 is input too; blank lines are
    /// skipped); empty when the input is done.
    pub fn next_chunk(&mut self, max: usize) -> Result<Vec<Vec<u8>>> {
        match self {
            LineSource::Scenario { producer, left } => {
                let n = max.min(*left);
                *left -= n;
                Ok(producer.by_ref().take(n).map(String::into_bytes).collect())
            }
            LineSource::File { reader, path } => {
                let mut lines = Vec::new();
                let mut buf = Vec::new();
                while lines.len() < max {
                    buf.clear();
                    let n = reader
                        .read_until(b'\n', &mut buf)
                        .with_context(|| format!("reading input file {}", path.display()))?;
                    if n == 0 {
                        break;
                    }
                    let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if !line.trim_ascii().is_empty() {
                        lines.push(line.to_vec());
                    }
                }
                Ok(lines)
            }
        }
    }
}

/// A [`LineSource`] read on its own thread, at most two chunks ahead (so memory stays
/// bounded by three chunks whatever the input's size).
pub struct ReadAhead {
    chunks: std::sync::mpsc::Receiver<Result<Vec<Vec<u8>>>>,
}

impl ReadAhead {
    pub fn start(mut input: LineSource, chunk_lines: usize) -> ReadAhead {
        let (send, chunks) = std::sync::mpsc::sync_channel(2);
        std::thread::spawn(move || {
            loop {
                let next = input.next_chunk(chunk_lines);
                let last = next.as_ref().map_or(true, Vec::is_empty);
                // The receiver is gone when the demo stopped early: stop reading too.
                if send.send(next).is_err() || last {
                    break;
                }
            }
        });
        ReadAhead { chunks }
    }

    /// The next chunk: empty when the input is done, as [`LineSource::next_chunk`].
    pub fn next_chunk(&self) -> Result<Vec<Vec<u8>>> {
        self.chunks
            .recv()
            .map_err(|_| anyhow::anyhow!("the input reader thread stopped without a reason"))?
    }
}

/// A synthetic scenario's producer lines, as bytes.
pub fn scenario_lines(
    scenario: Scenario,
    events: usize,
    seed: u64,
    start: Option<i64>,
) -> Vec<Vec<u8>> {
    scenario
        .generate(
            events,
            seed,
            start.unwrap_or(DEFAULT_START_MS),
            &Noise::default(),
        )
        .into_iter()
        .map(String::into_bytes)
        .collect()
}

/// The fault injector for `--chaos SEED`, with the mix the delivery mode guards against.
pub fn chaos_faults(seed: Option<u64>, template: &Template) -> Option<Arc<Faults>> {
    let at_least_once = template.parameter("Delivery") == Some("at-least-once");
    seed.map(|seed| {
        let rates = if at_least_once {
            FaultRates::chaos_at_least_once()
        } else {
            FaultRates::chaos()
        };
        Arc::new(Faults::new(seed, rates))
    })
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
    let input = match &args.file {
        Some(path) => LineSource::file(path)?,
        None => LineSource::scenario(args.scenario, args.events, args.seed, args.start),
    };
    // Generating or reading lines takes about a tenth of the demo's time: a thread does
    // it a chunk ahead, while the pipeline (one thread) works through the last one.
    let input = ReadAhead::start(input, CHUNK_LINES);
    let rules = load_rules(args.rules.as_ref(), args.scenario)?;
    let faults = chaos_faults(args.chaos, &template);
    let mut pipeline = InProcess::build(
        &template,
        args.scenario.reference(),
        rules.clone(),
        faults.clone(),
    )?;
    let source = match &args.file {
        Some(p) => format!("file {}", p.display()),
        None => format!(
            "{} events from scenario {} (seed {})",
            args.events, args.scenario, args.seed
        ),
    };
    eprintln!(
        "sluice demo: {source}; delivery {}; windows {}",
        pipeline.stages.aggregate_config.delivery, pipeline.stages.aggregate_config.windows
    );
    let server = crate::dashboard::serve_demo(&args.serve, &pipeline, source.clone()).await?;
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
    let mut last = Instant::now();
    let interactive = std::io::stderr().is_terminal();
    let every = Duration::from_millis(if interactive { 250 } else { 2000 });
    let produced = pipeline
        .feed_in_chunks(
            || input.next_chunk(),
            |sent| {
                if let Some(t) = &mut truth {
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
    progress_line(&pipeline, produced, interactive);
    if interactive {
        eprintln!();
    }
    let elapsed = started.elapsed();

    let ledger = pipeline.stages.ledger.summary();
    let latency = pipeline.stages.ledger.latency().unwrap_or_default();
    // Every view at once only to print (--json) or verify them all: the table reads the
    // store a view at a time.
    let views = if args.json || args.verify {
        output::sorted_views(pipeline.store.views())
    } else {
        Vec::new()
    };
    let letters = output::dead_letters(
        &pipeline
            .streams
            .records(&pipeline.stages.dead_letter_stream),
    );
    let alerts = pipeline.alerts.alerts();
    let summary = Summary {
        kind: "summary",
        events_in: ledger.events_in,
        counted: ledger.counted,
        dead_letter: ledger.dead_letter,
        late: ledger.late,
        duplicates: ledger.duplicates,
    };
    let meter = &pipeline.store.meter;
    let per_event = |x: f64| {
        if ledger.events_in == 0 {
            0.0
        } else {
            x / ledger.events_in as f64
        }
    };
    let summary_json = {
        let mut v = serde_json::to_value(&summary)?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert(
                "delivery".into(),
                json!(pipeline.stages.aggregate_config.delivery.to_string()),
            );
            obj.insert("alerts".into(), json!(alerts.len()));
            obj.insert("unsettled".into(), json!(ledger.unsettled));
            obj.insert(
                "unenriched".into(),
                json!(pipeline.stages.stage_stats("enrich").unenriched),
            );
            obj.insert("dynamodb_item_writes".into(), json!(meter.item_writes()));
            obj.insert("dynamodb_read_units".into(), json!(meter.read_units()));
            obj.insert("dynamodb_write_units".into(), json!(meter.write_units()));
            obj.insert(
                "item_writes_per_event".into(),
                json!(per_event(meter.item_writes() as f64)),
            );
            obj.insert(
                "write_units_per_event".into(),
                json!(per_event(meter.write_units())),
            );
            obj.insert(
                "read_units_per_event".into(),
                json!(per_event(meter.read_units())),
            );
            obj.insert("elapsed_s".into(), json!(elapsed.as_secs_f64()));
            obj.insert(
                "events_per_sec".into(),
                json!(ledger.events_in as f64 / elapsed.as_secs_f64().max(1e-9)),
            );
            output::insert_latency(obj, &latency);
            if let Some(f) = &faults {
                let mut injected = f.injected();
                for (stage, m) in pipeline.runner.mapping_stats() {
                    if m.dropped_batches > 0 {
                        eprintln!(
                            "warning: {stage} dropped {} batches after their retries",
                            m.dropped_batches
                        );
                    }
                }
                injected.entry("producer_duplicate").or_default();
                obj.insert("injected".into(), json!(injected));
            }
        }
        v
    };
    let verdict = truth.as_ref().map(|truth| {
        verify::verdict(
            truth,
            &views,
            &ledger,
            Some((&rules, &alerts)),
            verify::Counts::All,
        )
    });
    let mut summary_json = summary_json;
    if let Some(diffs) = &verdict {
        verify::mark_summary(&mut summary_json, diffs);
    }

    let consistent = ledger.unsettled == 0
        && ledger.events_in == produced
        && ledger.events_in
            == ledger.counted + ledger.dead_letter + ledger.late + ledger.duplicates;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        output::print_json_lines(&mut out, &views, &letters, &alerts, &summary_json)?;
    } else {
        output::print_store_table(&mut out, &pipeline.store, 10)?;
        output::print_alerts(&mut out, &alerts)?;
        writeln!(
            out,
            "\n{} events in {:.2} s ({:.0} events/s): {} counted, {} dead letters, {} late, {} duplicates collapsed.",
            ledger.events_in,
            elapsed.as_secs_f64(),
            ledger.events_in as f64 / elapsed.as_secs_f64().max(1e-9),
            ledger.counted,
            ledger.dead_letter,
            ledger.late,
            ledger.duplicates
        )?;
        if !ledger.dead_letter_reasons.is_empty() {
            let reasons: Vec<String> = ledger
                .dead_letter_reasons
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect();
            writeln!(out, "Dead letters by reason: {}", reasons.join(", "))?;
        }
        writeln!(
            out,
            "DynamoDB: {} item writes ({:.4} per event), {:.1} write units, {:.1} read units.",
            meter.item_writes(),
            per_event(meter.item_writes() as f64),
            meter.write_units(),
            meter.read_units()
        )?;
        writeln!(out, "{}", output::latency_line(&latency))?;
    }
    if let Some(diffs) = &verdict {
        verify::write_verdict(&mut out, diffs, args.json)?;
    }
    if !consistent {
        eprintln!(
            "error: the ledger does not add up: produced {produced}, events_in {}, unsettled {} (counted {} + dead letters {} + late {} + duplicates {})",
            ledger.events_in,
            ledger.unsettled,
            ledger.counted,
            ledger.dead_letter,
            ledger.late,
            ledger.duplicates
        );
    }
    drop(out);
    std::io::stdout().flush()?;
    if let Some(server) = server {
        server.until_interrupted().await?;
    }
    Ok(consistent && verdict.as_ref().is_none_or(Vec::is_empty))
}

/// The live summary (see `output::live_summary`); the backlog of a stage is what its
/// input stream still holds (the demo drops what every consumer has checkpointed).
fn progress_line(p: &InProcess, produced: u64, interactive: bool) {
    let meter = &p.store.meter;
    let summary = output::pipeline_summary(
        &p.stages,
        Some(produced),
        Some((meter.read_units(), meter.write_units())),
        |stream| Some(p.streams.len(stream) as u64),
    );
    output::progress(&summary, interactive);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_in_chunks_without_blank_lines_or_line_ends() {
        let path =
            std::env::temp_dir().join(format!("sluice-chunks-{}.ndjson", std::process::id()));
        std::fs::write(&path, b"a\r\n\nb\n  \nc\n\xff\nlast").expect("write");
        let mut input = LineSource::file(&path).expect("open");
        let mut chunks = Vec::new();
        loop {
            let chunk = input.next_chunk(2).expect("read");
            if chunk.is_empty() {
                break;
            }
            chunks.push(chunk);
        }
        std::fs::remove_file(&path).expect("remove");
        let want: Vec<Vec<Vec<u8>>> = vec![
            vec![b"a".to_vec(), b"b".to_vec()],
            vec![b"c".to_vec(), vec![0xff]],
            vec![b"last".to_vec()],
        ];
        assert_eq!(chunks, want);
        // The whole-file reader agrees.
        std::fs::write(&path, b"a\r\n\nb\n  \nc\n\xff\nlast").expect("write");
        assert_eq!(read_lines(&path).expect("read"), want.concat());
        std::fs::remove_file(&path).expect("remove");
    }

    #[test]
    fn a_scenario_source_stops_at_its_event_count() {
        let mut input = LineSource::scenario(Scenario::Iot, 5, 1, None);
        assert_eq!(input.next_chunk(3).expect("chunk").len(), 3);
        assert_eq!(input.next_chunk(3).expect("chunk").len(), 2);
        assert!(input.next_chunk(3).expect("chunk").is_empty());
    }

    #[test]
    fn reading_ahead_gives_the_same_chunks_in_order_then_the_end() {
        let mut direct = LineSource::scenario(Scenario::Payments, 250, 7, None);
        let ahead = ReadAhead::start(LineSource::scenario(Scenario::Payments, 250, 7, None), 100);
        for expected_len in [100, 100, 50] {
            let chunk = ahead.next_chunk().expect("chunk");
            assert_eq!(chunk.len(), expected_len);
            assert_eq!(chunk, direct.next_chunk(100).expect("chunk"));
        }
        assert!(ahead.next_chunk().expect("the end").is_empty());
        // After the end the thread is gone: asking again is an error, not a hang.
        assert!(ahead.next_chunk().is_err());
    }
}
