//! `sluice run`: the four stages over real Kinesis and DynamoDB (AWS, LocalStack or
//! local emulators), each fed by the local event source mapping exactly as Lambda
//! would feed it, running the very handlers the Lambda binaries run. With `--sql FILE`
//! the stages run a Flink SQL pipeline, and the run ends by printing its stored views'
//! rows.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;
use sluice_aws::{
    DynamoAggregateStore, DynamoAlerts, DynamoReference, DynamoRules, KinesisShardSource,
    KinesisSink,
};
use sluice_core::input::record::StreamRecord;
use sluice_core::ports::{
    Clock, RecordSink, ReferenceLookup, RulesSource, ShardSource, SystemClock,
};
use sluice_core::resources::{self, Names};
use sluice_core::stage::sql::SqlPipeline;
use sluice_local::faults::Faults;

use crate::connect::Connection;
use crate::lines::{ChunkBound, LINE_HEAD_BYTES, LineSource};
use crate::output;
use crate::pipeline::AggregateOverrides;
use crate::pipeline::chaos_faults;
use sluice_local::esm::EsmClocks;
use sluice_local::ledger::{LedgerSummary, MemoryLedger};

use crate::commands::sql::{load_pipeline, view_rows, write_rows};
use crate::pipeline::{
    Ports, Runner, SQL_SOURCE_KEY, Stages, build_stages, producer_records, sendable,
};
use crate::remote::explain;
use crate::verify;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  eval \"$(infra/local/up)\"\n  sluice setup --scenario iot\n  sluice produce --scenario iot --events 5000\n  sluice run --until-idle 5\n  sluice run --file events.ndjson --chaos 7 --verify --until-idle 5\n\nA Flink SQL pipeline (rows then the summary, one JSON line each):\n  sluice setup --sql examples/payments.sql --reference merchants=examples/payments.merchants.ndjson\n  sluice produce --sql examples/payments.sql --file examples/payments.events.ndjson\n  sluice run --sql examples/payments.sql --until-idle 3 --json"
)]
pub struct RunArgs {
    #[command(flatten)]
    pub conn: Connection,
    /// Exit 0 once every stream has been drained and quiet for SECS (default: run until
    /// interrupted).
    #[arg(long, value_name = "SECS")]
    pub until_idle: Option<f64>,
    #[command(flatten)]
    pub aggregate: AggregateOverrides,
    /// Write this file to the raw stream first, one record per line (as `sluice produce`).
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Inject faults, deterministically from this seed (see `sluice demo --help`).
    #[arg(long, value_name = "SEED")]
    pub chaos: Option<u64>,
    /// After draining, compute the ground truth from everything in the raw stream and
    /// compare it with the aggregates and alerts tables; exit non-zero on any
    /// difference. A resumed deployment (the aggregates table already held items, as
    /// after a killed run) is judged on its stored state and on the counts that do not
    /// depend on which run counted an event first (see `verify::Counts`).
    #[arg(long)]
    pub verify: bool,
    /// Print the summary as one JSON line on stdout.
    #[arg(long)]
    pub json: bool,
    /// Run a Flink SQL pipeline (.sql) on the stages instead of the event envelope
    /// (reference rows as `sluice setup --sql` seeds them); once idle, print one
    /// `{"kind":"row","view":…,"row":{…}}` line per (view, window, group) stored in the
    /// aggregates table, then the summary. `--file` is sent under one partition key.
    #[arg(long, value_name = "FILE.sql", conflicts_with = "verify")]
    pub sql: Option<PathBuf>,
}

/// Every record of a stream, shard by shard, oldest first.
pub async fn read_stream(source: &impl ShardSource) -> Result<Vec<StreamRecord>> {
    let mut all = Vec::new();
    for shard in source.shards().await? {
        let mut after: Option<String> = None;
        loop {
            let read = source
                .read(&shard.shard_id, after.as_deref(), 10_000)
                .await?;
            let Some(last) = read.records.last() else {
                break;
            };
            after = Some(last.sequence_number.clone());
            all.extend(read.records);
        }
    }
    Ok(all)
}

pub async fn run(args: RunArgs) -> Result<bool> {
    let sql = match &args.sql {
        Some(file) => Some(Arc::new(load_pipeline(file)?)),
        None => None,
    };
    let mut template = args.conn.template()?;
    args.aggregate.apply(&mut template);
    let faults = chaos_faults(args.chaos, &template);
    let clients = args.conn.clients().await;
    let names = args.conn.names();
    let store = Arc::new(DynamoAggregateStore::new(
        clients.dynamodb.clone(),
        names.table(resources::AGGREGATES_TABLE),
    ));
    let ports = Ports {
        sql: sql.clone(),
        ..dynamo_ports(&clients.dynamodb, &names, &store)
    };
    // Before anything runs: whether an earlier run already committed to this table.
    let resumed = match args.verify {
        true => held_items(&clients.dynamodb, store.table()).await?,
        false => false,
    };
    let kinesis = clients.kinesis.clone();
    let stages = build_stages(
        &template,
        ports,
        |name| KinesisSink::new(kinesis.clone(), name),
        &faults,
        Arc::new(SystemClock),
        // Arrival times are Kinesis's: the wall clock measures iterator ages.
        Arc::new(SystemClock),
        // Kinesis sequence numbers: every origin is booked by name.
        Arc::new(MemoryLedger::new()),
    )?;
    let mut runner = connect_runner(&args.conn, &stages, &kinesis, &template, &faults).await?;

    if let Some(path) = &args.file {
        let key = sql.as_ref().map(|_| SQL_SOURCE_KEY);
        write_file(
            path,
            &faults,
            key,
            &KinesisSink::new(kinesis.clone(), &stages.raw_stream),
        )
        .await?;
    }

    eprintln!("{}", banner(&stages, &args.conn.prefix, args.until_idle));
    let interactive = std::io::stderr().is_terminal();
    let started = Instant::now();
    drive(&mut runner, &stages, &store, args.until_idle, interactive).await;
    progress_line(&stages, &store, interactive);
    if interactive {
        eprintln!();
    }
    let verify_tables = VerifyTables {
        rules: DynamoRules::new(
            clients.dynamodb.clone(),
            names.table(resources::RULES_TABLE),
        ),
        alerts: DynamoAlerts::new(
            clients.dynamodb.clone(),
            names.table(resources::ALERTS_TABLE),
        ),
        reference: DynamoReference::new(
            clients.dynamodb.clone(),
            names.table(resources::REFERENCE_TABLE),
        ),
        resumed,
    };
    let run = Finished {
        stages: &stages,
        runner: &runner,
        store: &store,
        faults: &faults,
        started,
    };
    match &sql {
        Some(sql) => report_sql(&args, sql, &run).await,
        None => report(&args, &template, &run, &verify_tables, &kinesis).await,
    }
}

/// The DynamoDB tables under `names` as the stages' ports; the aggregates table serves
/// both aggregate (`store`) and detect (`history`).
fn dynamo_ports(
    dynamodb: &aws_sdk_dynamodb::Client,
    names: &Names,
    store: &Arc<DynamoAggregateStore>,
) -> DynamoPorts {
    Ports {
        reference: DynamoReference::new(dynamodb.clone(), names.table(resources::REFERENCE_TABLE)),
        store: store.clone(),
        rules: DynamoRules::new(dynamodb.clone(), names.table(resources::RULES_TABLE)),
        alerts: DynamoAlerts::new(dynamodb.clone(), names.table(resources::ALERTS_TABLE)),
        history: store.clone(),
        sql: None,
    }
}

type DynamoPorts = Ports<
    DynamoReference,
    Arc<DynamoAggregateStore>,
    DynamoRules,
    DynamoAlerts,
    Arc<DynamoAggregateStore>,
>;

/// Looks up every stage's input stream (failing with an explanation if one is missing)
/// and wires a mapping per stage over it, with the dead-letter stream for failures.
async fn connect_runner(
    conn: &Connection,
    stages: &Stages,
    kinesis: &aws_sdk_kinesis::Client,
    template: &sluice_local::template::Template,
    faults: &Option<Arc<Faults>>,
) -> Result<Runner<KinesisShardSource, KinesisSink>> {
    let mut sources = HashMap::new();
    for s in &stages.stages {
        let source = KinesisShardSource::connect(kinesis.clone(), s.input_stream.clone())
            .await
            .map_err(|e| explain(e, &format!("looking up stream {:?}", s.input_stream), conn))?;
        sources.insert(s.input_stream.clone(), source);
    }
    let dead_letters = stages.dead_letter_stream.clone();
    Ok(Runner::new(
        stages,
        |name| {
            sources
                .remove(name)
                .unwrap_or_else(|| KinesisShardSource::new(kinesis.clone(), name, String::new()))
        },
        || KinesisSink::new(kinesis.clone(), dead_letters.clone()),
        // Real time for both: the mapping polls real streams as Lambda would.
        EsmClocks::shared(Arc::new(SystemClock)),
        template,
        faults,
    ))
}

/// The line `sluice run` starts with: the stages in order, the prefix, the delivery
/// mode and when it exits.
fn banner(stages: &Stages, prefix: &str, until_idle: Option<f64>) -> String {
    format!(
        "sluice run: stages {} over prefix {:?}; delivery {}; {}",
        stages
            .stages
            .iter()
            .map(|s| s.binary)
            .collect::<Vec<_>>()
            .join(" → "),
        prefix,
        stages.aggregate_config.delivery,
        exit_rule(until_idle)
    )
}

/// How the banner says the run ends.
fn exit_rule(until_idle: Option<f64>) -> String {
    match until_idle {
        Some(s) => format!("exits after {s} s idle"),
        None => "runs until interrupted".into(),
    }
}

/// Steps the mappings until every stream has been quiet for `until_idle` seconds (for
/// ever without it), backing off on transient read errors and printing the progress
/// line every half second on a terminal, every five seconds otherwise.
async fn drive(
    runner: &mut Runner<KinesisShardSource, KinesisSink>,
    stages: &Stages,
    store: &DynamoAggregateStore,
    until_idle: Option<f64>,
    interactive: bool,
) {
    let mut last_work = Instant::now();
    let mut last_progress = Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        match runner.step(false).await {
            Ok(true) => {
                last_work = Instant::now();
                backoff = Duration::from_millis(100);
            }
            Ok(false) => {}
            Err(e) => {
                // Transient trouble reading a stream (throttling, a restarting endpoint):
                // report and back off; the mappings keep their positions.
                eprintln!(
                    "warning: {}; retrying in {} ms",
                    output::terminal_safe(&format!("{e:#}")),
                    backoff.as_millis()
                );
                tokio::time::sleep(backoff).await;
                backoff = next_backoff(backoff);
                continue;
            }
        }
        if last_progress.elapsed() >= Duration::from_millis(if interactive { 500 } else { 5_000 }) {
            last_progress = Instant::now();
            progress_line(stages, store, interactive);
        }
        if last_work.elapsed() < Duration::from_millis(50) {
            continue;
        }
        if let Some(quiet) = until_idle {
            if runner.is_idle()
                && runner.next_due_ms().is_none()
                && last_work.elapsed().as_secs_f64() >= quiet
            {
                return;
            }
        }
        let wait = idle_wait_ms(runner.next_due_ms(), SystemClock.now_ms());
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
}

/// The next back-off after a failed step: doubled, at most five seconds.
fn next_backoff(backoff: Duration) -> Duration {
    (backoff * 2).min(Duration::from_secs(5))
}

/// How long to sleep with nothing to do: until the next due retry or flush, between
/// 10 and 250 ms, or 250 ms when nothing is due.
fn idle_wait_ms(next_due_ms: Option<i64>, now_ms: i64) -> i64 {
    next_due_ms.map_or(250, |due| (due - now_ms).clamp(10, 250))
}

/// What `--verify` reads besides the aggregates: rules, alerts, the reference rows enrich
/// joins (the truth applies enrich's size rule with them), and whether the aggregates
/// table held items before this run started.
struct VerifyTables {
    rules: DynamoRules,
    alerts: DynamoAlerts,
    reference: DynamoReference,
    resumed: bool,
}

/// Whether a table holds any item: for the aggregates table (aggregates, watermarks,
/// fingerprint pages), whether some run already committed events to it.
async fn held_items(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<bool> {
    let page = client
        .scan()
        .table_name(table)
        .limit(1)
        .send()
        .await
        .with_context(|| format!("reading table {table}"))?;
    Ok(page.count() > 0)
}

/// The live summary: per stage counters, the largest iterator age, median batch
/// duration, and the aggregates table's request units (estimated from item sizes, as
/// the final summary reports them). Stream backlogs would need API calls: not shown.
fn progress_line(stages: &Stages, store: &DynamoAggregateStore, interactive: bool) {
    let summary = stages.live_summary(None, Some(store.estimated_units()), |_| None);
    output::progress(&summary, interactive);
}

/// What a finished run reports on: its stages, mappings and aggregates table.
struct Finished<'a> {
    stages: &'a Stages,
    runner: &'a Runner<KinesisShardSource, KinesisSink>,
    store: &'a DynamoAggregateStore,
    faults: &'a Option<Arc<Faults>>,
    started: Instant,
}

impl Finished<'_> {
    /// The ledger's totals, after warning about batches the mappings dropped.
    fn ledger(&self) -> LedgerSummary {
        for (stage, m) in self.runner.mapping_stats() {
            if m.dropped_batches > 0 {
                eprintln!(
                    "warning: {stage} dropped {} batches ({} records) after their retries",
                    m.dropped_batches, m.dropped_records
                );
            }
        }
        self.stages.ledger.summary()
    }

    /// Whether every event read was settled (an error line if not).
    fn settled(ledger: &LedgerSummary) -> bool {
        if ledger.unsettled > 0 {
            eprintln!(
                "error: {} events were read but never settled",
                ledger.unsettled
            );
        }
        ledger.unsettled == 0
    }
}

/// The end of a run: warnings about dropped batches, the summary, and with `--verify`
/// the verdict on the stored state; `Ok(false)` when something was lost or differs.
async fn report(
    args: &RunArgs,
    template: &sluice_local::template::Template,
    run: &Finished<'_>,
    tables: &VerifyTables,
    kinesis: &aws_sdk_kinesis::Client,
) -> Result<bool> {
    let Finished {
        stages,
        store,
        faults,
        started,
        ..
    } = *run;
    let ledger = run.ledger();
    let mut summary = summary_json(&ledger, stages, store, faults, started);
    let verdict = match args.verify {
        true => {
            let v = verify_stored_state(template, stages, store, tables, kinesis, &ledger).await?;
            verify::mark_summary(&mut summary, &v.diffs);
            if let (Some(note), Some(obj)) = (&v.not_judged, summary.as_object_mut()) {
                obj.insert("not_judged".into(), json!(note));
            }
            Some(v)
        }
        false => None,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        writeln!(out, "{summary}")?;
    } else {
        write_human(&mut out, &ledger, store, started)?;
    }
    if let Some(v) = &verdict {
        verify::write_verdict(&mut out, &v.diffs, args.json)?;
        if let Some(note) = &v.not_judged {
            verify::write_not_judged(&mut out, note, args.json)?;
        }
    }
    let consistent = Finished::settled(&ledger);
    Ok(consistent && verdict.is_none_or(|v| v.diffs.is_empty()))
}

/// The end of a SQL run: every stored view's rows, read back from the aggregates table
/// (one `{"kind":"row",…}` line each, as `sluice demo --sql` prints them), then the
/// summary (with the events the pipeline's WHERE filtered, and the rows).
async fn report_sql(args: &RunArgs, sql: &SqlPipeline, run: &Finished<'_>) -> Result<bool> {
    let ledger = run.ledger();
    let mut summary = summary_json(&ledger, run.stages, run.store, run.faults, run.started);
    let items = run
        .store
        .scan_all()
        .await
        .context("reading the aggregates table")?;
    let rows = view_rows(sql, &items)?;
    if let Some(obj) = summary.as_object_mut() {
        obj.insert("filtered".into(), json!(ledger.filtered));
        obj.insert("rows".into(), json!(rows.len()));
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    write_rows(&mut out, &rows)?;
    if args.json {
        writeln!(out, "{summary}")?;
    } else {
        write_human(&mut out, &ledger, run.store, run.started)?;
        writeln!(
            out,
            "{} rows of {} stored views ({} events filtered).",
            rows.len(),
            sql.views.len(),
            ledger.filtered
        )?;
    }
    Ok(Finished::settled(&ledger))
}

/// The `--json` summary line of a run.
fn summary_json(
    ledger: &LedgerSummary,
    stages: &Stages,
    store: &DynamoAggregateStore,
    faults: &Option<Arc<Faults>>,
    started: Instant,
) -> serde_json::Value {
    let (read_units, write_units) = store.estimated_units();
    let mut summary = json!({
        "kind": "summary",
        "events_in": ledger.events_in,
        "counted": ledger.counted,
        "dead_letter": ledger.dead_letter,
        "late": ledger.late,
        "duplicates": ledger.duplicates,
        "delivery": stages.aggregate_config.delivery.to_string(),
        "dynamodb_read_units": read_units,
        "dynamodb_write_units": write_units,
        "write_units_per_event": if ledger.events_in == 0 { 0.0 } else { write_units / ledger.events_in as f64 },
        "seconds": started.elapsed().as_secs_f64(),
    });
    if let (Some(f), Some(obj)) = (faults, summary.as_object_mut()) {
        obj.insert("injected".into(), json!(f.injected()));
    }
    summary
}

/// The human summary of a run.
fn write_human(
    out: &mut impl Write,
    ledger: &LedgerSummary,
    store: &DynamoAggregateStore,
    started: Instant,
) -> std::io::Result<()> {
    let (read_units, write_units) = store.estimated_units();
    writeln!(
        out,
        "{} events: {} counted, {} dead letters, {} late, {} duplicates collapsed ({:.1} s).",
        ledger.events_in,
        ledger.counted,
        ledger.dead_letter,
        ledger.late,
        ledger.duplicates,
        started.elapsed().as_secs_f64()
    )?;
    writeln!(
        out,
        "DynamoDB (estimated): {write_units:.1} write units, {read_units:.1} read units."
    )
}

/// What `--verify` found: the differences, and what it could not judge.
struct Verdict {
    diffs: Vec<String>,
    not_judged: Option<String>,
}

/// `--verify`: the truth folded from the whole input, which is everything in the raw
/// stream, whichever run or producer wrote it (a restarted `--file` run writes its file
/// again), in stream order; compared with the stored aggregates and alerts.
async fn verify_stored_state(
    template: &sluice_local::template::Template,
    stages: &Stages,
    store: &DynamoAggregateStore,
    tables: &VerifyTables,
    kinesis: &aws_sdk_kinesis::Client,
    ledger: &LedgerSummary,
) -> Result<Verdict> {
    let raw = KinesisShardSource::connect(kinesis.clone(), stages.raw_stream.clone()).await?;
    let records = read_stream(&raw).await?;
    let items = store
        .scan_all()
        .await
        .context("reading the aggregates table")?;
    let reference = tables
        .reference
        .lookup(&verify::keys_of(&records))
        .await
        .context("reading the reference table")?;
    let mut truth =
        verify::GroundTruth::new(&stages.aggregate_config, verify::ingest_bounds(template)?)
            .with_reference(reference);
    truth.expect_replays(&records);
    for record in &records {
        truth.feed_record(record);
    }
    let rules = tables
        .rules
        .rules()
        .await
        .context("reading the rules table")?;
    let raised = tables
        .alerts
        .list(usize::MAX)
        .await
        .context("reading the alerts table")?;
    let counts = verify::Counts::of_run(&truth, ledger, tables.resumed);
    let diffs = verify::verdict(
        &truth,
        &output::aggregate_views(&items),
        ledger,
        Some((&rules, &raised)),
        counts,
    );
    Ok(Verdict {
        diffs,
        not_judged: counts.not_judged(),
    })
}

/// Writes a file's lines to the raw stream as a producer would, a request at a time (so
/// memory holds one request, whatever the file's size), with `--chaos`'s producer
/// duplicates. A line Kinesis refuses whatever we do (over the record limit with its key)
/// is reported and not sent, as `sluice produce` does; the rest go on.
/// With `key`, every record goes under that partition key (a SQL pipeline's source).
async fn write_file(
    path: &Path,
    faults: &Option<Arc<Faults>>,
    key: Option<&str>,
    raw: &KinesisSink,
) -> Result<()> {
    let mut input = LineSource::file(path)?;
    let (mut written, mut line_no) = (0u64, 0usize);
    loop {
        let lines = input.next_chunk(ChunkBound::REQUEST)?;
        if lines.is_empty() {
            break;
        }
        let (mut records, _) = producer_records(&lines, faults);
        if let Some(key) = key {
            records
                .iter_mut()
                .for_each(|r| r.partition_key = key.to_owned());
        }
        let (fitting, refused) = sendable(records);
        for (_, record, error) in refused {
            eprintln!(
                "sluice run: a line of {} ({} bytes{}) not sent: {error}",
                path.display(),
                record.data.len(),
                if record.data.len() >= LINE_HEAD_BYTES {
                    " or more"
                } else {
                    ""
                }
            );
        }
        line_no += lines.len();
        written += fitting.len() as u64;
        raw.put_records(fitting).await.with_context(|| {
            format!(
                "writing {} (up to line {line_no}) to stream {}",
                path.display(),
                raw.stream_name()
            )
        })?;
    }
    eprintln!(
        "sluice run: wrote {written} records from {} to {}",
        path.display(),
        raw.stream_name()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_says_how_the_run_ends() {
        assert_eq!(exit_rule(Some(5.0)), "exits after 5 s idle");
        assert_eq!(exit_rule(Some(0.5)), "exits after 0.5 s idle");
        assert_eq!(exit_rule(None), "runs until interrupted");
    }

    #[test]
    fn back_off_doubles_up_to_five_seconds() {
        let mut b = Duration::from_millis(100);
        let mut seen = Vec::new();
        for _ in 0..8 {
            b = next_backoff(b);
            seen.push(b.as_millis());
        }
        assert_eq!(seen, [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    }

    #[test]
    fn idle_waits_until_the_next_due_time_within_bounds() {
        assert_eq!(idle_wait_ms(None, 1_000), 250);
        assert_eq!(idle_wait_ms(Some(1_100), 1_000), 100);
        assert_eq!(idle_wait_ms(Some(1_001), 1_000), 10);
        assert_eq!(idle_wait_ms(Some(900), 1_000), 10);
        assert_eq!(idle_wait_ms(Some(9_000), 1_000), 250);
    }
}
