//! `sluice demo --sql FILE`: a Flink SQL pipeline on the in-process stages. Prints one
//! `{"kind":"row","view":…,"row":{…}}` line per (view, window, group) as stored, then
//! the dead letters and the summary (`--json`); `--verify` compares every stored row
//! with the one-pass evaluation of the same input ([`Evaluation`], which the test
//! command compares with Apache Flink).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sluice_core::ports::{Clock, SystemClock};
use sluice_core::sql::Evaluation;
use sluice_core::sql::exact::Tolerance;
use sluice_core::stage::sql::SqlPipeline;

use super::{DemoArgs, demo_template, lock_digest};
use crate::commands::sql::{load_pipeline, reference_rows, view_rows, write_rows};
use crate::lines::{ChunkBound, LineSource, ReadAhead};
use crate::pipeline::{InProcess, chaos_faults};

pub async fn run(args: &DemoArgs, file: &Path) -> Result<bool> {
    let Some(events) = &args.file else {
        bail!("--sql runs a pipeline over --file EVENTS.ndjson (one JSON object per line)");
    };
    let sql = Arc::new(load(args, file)?);
    let mut truth = Evaluation::new(&sql.program);
    if args.verify {
        // Sketches are checked against exact answers, within their documented bounds.
        truth.exact_approximations();
    }
    let mut pipeline = build(args, &sql, &mut truth)?;
    eprintln!(
        "sluice demo: pipeline {} over {}; {} stored views",
        file.display(),
        events.display(),
        sql.views.len()
    );
    let title = format!("pipeline {} over {}", file.display(), events.display());
    let server = crate::commands::dashboard::serve_demo(&args.serve, &pipeline, title).await?;
    let started = Instant::now();
    let produced = feed(&mut pipeline, events, args.verify.then_some(&mut truth)).await?;
    let elapsed = started.elapsed();
    let rows = view_rows(&sql, &pipeline.store.items())?;
    let differences = match args.verify {
        true => Some(differences(&rows, &truth, &sql)?),
        false => None,
    };
    let (summary, consistent) = summarize(&pipeline, produced, elapsed, &rows, &differences);
    print(args, &pipeline, &rows, summary, &differences)?;
    if let Some(server) = server {
        server.until_interrupted().await?;
    }
    Ok(consistent && differences.is_none_or(|d| d.is_empty()))
}

/// Step: the pipeline, with `--allowed-lateness` overriding its WATERMARK delay (the
/// oracle runs the stages with no lateness, as Flink's batch mode has none).
fn load(args: &DemoArgs, file: &Path) -> Result<SqlPipeline> {
    let mut sql = load_pipeline(file)?;
    if let Some(seconds) = args.aggregate.allowed_lateness {
        sql.allowed_lateness_ms = Some(i64::from(seconds) * 1000);
    }
    Ok(sql)
}

/// Step: the in-process stages over the reference rows and rules, and the truth set to
/// judge lateness as they do (per view and group, in file order).
fn build(args: &DemoArgs, sql: &Arc<SqlPipeline>, truth: &mut Evaluation<'_>) -> Result<InProcess> {
    let template = demo_template(args)?;
    let reference = reference_rows(sql, &args.reference, |table, line| {
        truth.load_reference(table, line)
    })?;
    let rules = match &args.rules {
        Some(path) => super::load_rules(Some(path), args.scenario)?,
        None => Vec::new(),
    };
    check_view_rules(sql, &rules)?;
    let faults = chaos_faults(args.chaos, &template);
    let pipeline = InProcess::build_sql(&template, reference, rules, faults, sql.clone())?;
    let allowed_ms = sql
        .allowed_lateness_ms
        .unwrap_or(pipeline.stages.aggregate_config.allowed_lateness_ms);
    truth.judge_lateness(
        (0..sql.program.view_count())
            .map(|i| {
                sql.view_at(i)
                    .map(|v| (v.windows.anchor().size_ms, allowed_ms))
            })
            .collect(),
    );
    // ... and refuse what they cannot store.
    let stages = sql.clone();
    truth.refuse_with(Box::new(move |u| stages.refusal(u)));
    if args.json {
        lock_digest(&pipeline)
            .keep_lines()
            .context("creating a temporary file for the dead letters of --json")?;
    }
    Ok(pipeline)
}

/// Step: every line of the file through the stages (and into the truth, when
/// verifying: the lines as sent, producer duplicates included); how many were sent.
async fn feed(
    pipeline: &mut InProcess,
    events: &Path,
    mut truth: Option<&mut Evaluation<'_>>,
) -> Result<u64> {
    let input = ReadAhead::start(LineSource::file(events)?, ChunkBound::DEMO);
    let now_ms = SystemClock.now_ms();
    pipeline
        .feed_in_chunks(
            || input.next_chunk(),
            |sent| {
                if let Some(t) = truth.as_deref_mut() {
                    sent.iter().for_each(|line| t.push(line, now_ms));
                }
            },
            |_, _| {},
        )
        .await
}

/// Step: the summary line, and whether every event sent has exactly one fate.
fn summarize(
    pipeline: &InProcess,
    produced: u64,
    elapsed: std::time::Duration,
    rows: &[(String, String)],
    differences: &Option<Vec<String>>,
) -> (Value, bool) {
    let ledger = pipeline.stages.ledger.summary();
    let meter = &pipeline.store.meter;
    let consistent = ledger.unsettled == 0
        && ledger.events_in == produced
        && ledger.events_in
            == ledger.counted
                + ledger.dead_letter
                + ledger.late
                + ledger.duplicates
                + ledger.filtered;
    let mut summary = json!({
        "kind": "summary",
        "events_in": ledger.events_in,
        "counted": ledger.counted,
        "dead_letter": ledger.dead_letter,
        "late": ledger.late,
        "duplicates": ledger.duplicates,
        "filtered": ledger.filtered,
        "unsettled": ledger.unsettled,
        "rows": rows.len(),
        "alerts": pipeline.alerts.alerts().len(),
        "dynamodb_item_writes": meter.item_writes(),
        "item_writes_per_event": meter.item_writes() as f64 / ledger.events_in.max(1) as f64,
        "stream_bytes_per_event": stream_bytes(pipeline, ledger.events_in),
        "elapsed_s": elapsed.as_secs_f64(),
        "events_per_sec": ledger.events_in as f64 / elapsed.as_secs_f64().max(1e-9),
    });
    if let (Some(d), Some(obj)) = (differences, summary.as_object_mut()) {
        obj.insert("verified".into(), json!(d.is_empty()));
        obj.insert("differences".into(), json!(d.len()));
    }
    if !consistent {
        eprintln!("error: the ledger does not add up: {summary}");
    }
    (summary, consistent)
}

/// Step: the row lines, the dead letters (`--json`), the alerts and the summary on
/// stdout; the first differences `--verify` found on stderr.
fn print(
    args: &DemoArgs,
    pipeline: &InProcess,
    rows: &[(String, String)],
    summary: Value,
    differences: &Option<Vec<String>>,
) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    write_rows(&mut out, rows)?;
    if args.json {
        lock_digest(pipeline).write_lines(&mut out)?;
    }
    for alert in &pipeline.alerts.alerts() {
        writeln!(out, "{}", serde_json::to_string(alert)?)?;
    }
    writeln!(out, "{summary}")?;
    for d in differences.iter().flatten().take(20) {
        eprintln!("verify: {d}");
    }
    out.flush()?;
    Ok(())
}

/// What differs between the stored rows and the truth's: rows missing on either side,
/// and values that differ (numbers within 1e-9 relative, as the oracle compares; a
/// column read from an approximate aggregate within that aggregate's tolerance of the
/// exact answer the truth holds for it).
fn differences(
    rows: &[(String, String)],
    truth: &Evaluation<'_>,
    sql: &SqlPipeline,
) -> Result<Vec<String>> {
    let tolerances: BTreeMap<&str, Vec<(String, Tolerance)>> = sql
        .views
        .iter()
        .map(|v| (v.name.as_str(), sql.program.approximate_columns(&v.name)))
        .collect();
    let expected = truth.rows().map_err(|e| anyhow::anyhow!(e))?;
    let key = |view: &str, row: &Value| -> String {
        // A row is named by its view and its window and group columns: every column
        // that is not a number compares exactly; numbers are compared below.
        let obj = row.as_object().cloned().unwrap_or_default();
        let named: Vec<String> = obj
            .iter()
            .filter(|(_, v)| !v.is_number())
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{view} {}", named.join(" "))
    };
    // The truth's rows by key, as their JSON text (parsed again when compared: a parsed
    // row takes several times its text's memory, and a run may have many rows).
    let mut want: BTreeMap<String, &str> = BTreeMap::new();
    for r in &expected {
        let row: Value = serde_json::from_str(&r.json)?;
        want.insert(key(&r.view, &row), &r.json);
    }
    let mut out = Vec::new();
    for (view, text) in rows {
        let row: Value = serde_json::from_str(text)?;
        let approximate = tolerances.get(view.as_str()).map_or(&[][..], |t| &t[..]);
        match want.remove(&key(view, &row)) {
            None => out.push(format!("stored but not in the truth: {view} {text}")),
            Some(w) if !same_row(&serde_json::from_str(w)?, &row, approximate) => {
                out.push(format!("{view}: stored {text}, truth {w}"))
            }
            Some(_) => {}
        }
    }
    for (k, w) in &want {
        out.push(format!("in the truth but not stored: {k} {w}"));
    }
    Ok(out)
}

/// The truth's row `want` and a stored row alike: every column [`same`], but those of
/// `approximate`, whose stored estimate need only be within tolerance of the truth's
/// exact answer.
fn same_row(want: &Value, got: &Value, approximate: &[(String, Tolerance)]) -> bool {
    let (Some(want), Some(got)) = (want.as_object(), got.as_object()) else {
        return same(want, got);
    };
    want.len() == got.len()
        && want.iter().all(|(name, w)| {
            let Some(g) = got.get(name) else {
                return false;
            };
            match approximate.iter().find(|(column, _)| column == name) {
                Some((_, tolerance)) => match (w.as_f64(), g.as_f64()) {
                    (Some(exact), Some(estimate)) => tolerance.accepts(estimate, exact),
                    _ => w == g,
                },
                None => same(w, g),
            }
        })
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            _ if x == y => true,
            (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
            _ => false,
        },
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// A rule that names a view the pipeline does not store, or a column the view does not
/// select, would never fire: refused before the run.
fn check_view_rules(sql: &SqlPipeline, rules: &[sluice_core::detect::rules::Rule]) -> Result<()> {
    match rules.iter().find_map(|rule| sql.rule_mismatch(rule)) {
        Some(mismatch) => bail!("{mismatch}"),
        None => Ok(()),
    }
}

/// Bytes written per event to each stage's input stream (data and partition keys): the
/// raw stream, ingest's source lines and enrich's view lines (one per event and stored
/// view: the cost of re-partitioning by group).
fn stream_bytes(pipeline: &InProcess, events: u64) -> Value {
    let per_event = |stream: &str| pipeline.streams.bytes_put(stream) as f64 / events.max(1) as f64;
    let mut out = serde_json::Map::new();
    for spec in &pipeline.stages.stages {
        if spec.binary != "detect" {
            out.insert(
                spec.input_stream.clone(),
                json!(per_event(&spec.input_stream)),
            );
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::sql::exact::{DISTINCT_TOLERANCE, PERCENTILE_TOLERANCE};

    /// An approximate column's estimate passes within its tolerance of the truth's exact
    /// answer and fails beyond it; every other column compares as before.
    #[test]
    fn estimates_pass_within_their_tolerance_of_the_exact_answer() {
        let approximate = [
            ("p99".to_owned(), PERCENTILE_TOLERANCE),
            ("users".to_owned(), DISTINCT_TOLERANCE),
        ];
        let truth = json!({"k": "a", "n": 10, "p99": 200.0, "users": 1000});
        let row =
            |p99: f64, users: i64, n: i64| json!({"k": "a", "n": n, "p99": p99, "users": users});
        assert!(same_row(&truth, &row(200.0, 1000, 10), &approximate));
        assert!(same_row(&truth, &row(201.9, 1090, 10), &approximate));
        assert!(
            !same_row(&truth, &row(202.1, 1000, 10), &approximate),
            "1% at most"
        );
        assert!(!same_row(&truth, &row(200.0, 1120, 10), &approximate));
        assert!(
            !same_row(&truth, &row(200.0, 1000, 11), &approximate),
            "exact columns"
        );
        assert!(
            !same_row(&truth, &row(201.0, 1000, 10), &[]),
            "exact without tolerance"
        );
        let missing = json!({"k": "a", "n": 10, "p99": null, "users": 1000});
        assert!(
            !same_row(&truth, &missing, &approximate),
            "NULL is not an estimate"
        );
    }
}
