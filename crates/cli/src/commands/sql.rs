//! `sluice sql`: pipelines written in Flink SQL. `check` reads a pipeline, refuses what
//! is outside the supported subset (with line and column) and prints the plan: what
//! each stage will read, join, window and store. `eval` computes a pipeline's stored
//! views over a file of events in one pass, as Flink's batch mode does.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use sluice_core::ports::{Attrs, Clock, SystemClock};
use sluice_core::sql::{Evaluation, Pipeline, Program};
use sluice_core::stage::sql::SqlPipeline;
use sluice_core::stage::sql::enrich::{REFERENCE_ROW, reference_key};
use sluice_core::state::item::AggregateItem;

use crate::lines::{LINE_HEAD_BYTES, read_line_bounded};

#[derive(Args, Debug)]
pub struct SqlArgs {
    #[command(subcommand)]
    command: SqlCommand,
}

#[derive(Subcommand, Debug)]
enum SqlCommand {
    /// Check a pipeline (.sql), types included, and print its plan and the state each
    /// stored view keeps; exits non-zero, naming the line and column, on anything that
    /// is not supported.
    #[command(after_help = "Example:\n  sluice sql check examples/payments.sql")]
    Check {
        /// The pipeline: CREATE TABLE (one kinesis source, dynamodb reference tables and
        /// sinks), CREATE VIEW and INSERT INTO statements.
        file: PathBuf,
    },
    /// Compute a pipeline's stored views over a file of events in one pass (as Flink's
    /// batch mode does) and print one `{"kind":"row",...}` line per (view, window, group),
    /// then a summary line.
    #[command(
        after_help = "Example:\n  sluice sql eval examples/payments.sql --events examples/payments.events.ndjson \\\n    --reference merchants=examples/payments.merchants.ndjson\n\nA PRIMARY KEY's repeated ids count once; a record that cannot be read, or whose\nexpression fails, is counted by reason in the summary. Lateness is not judged."
    )]
    Eval {
        /// The pipeline (.sql).
        file: PathBuf,
        /// Events, one JSON object per line.
        #[arg(long)]
        events: PathBuf,
        /// Reference rows for a lookup join: TABLE=FILE.ndjson, one JSON object per line.
        #[arg(long, value_name = "TABLE=FILE")]
        reference: Vec<String>,
    },
}

pub async fn run(args: SqlArgs) -> Result<bool> {
    match args.command {
        SqlCommand::Check { file } => {
            let pipeline = read(&file)?;
            // Compiling types every expression and aggregate: a type error is refused
            // here, at its line and column, not when the first event arrives.
            let program =
                Program::compile(&pipeline).with_context(|| format!("{}", file.display()))?;
            // What the stages refuse besides (a HOP view reading its window's columns).
            let stages = load_pipeline(&file)?;
            print!(
                "{}{}{}",
                pipeline.describe(),
                program.describe_state(),
                stages.describe_stages()
            );
            Ok(true)
        }
        SqlCommand::Eval {
            file,
            events,
            reference,
        } => eval(&file, &events, &reference),
    }
}

fn eval(file: &PathBuf, events: &Path, references: &[String]) -> Result<bool> {
    let pipeline = read(file)?;
    let program = Program::compile(&pipeline).with_context(|| format!("{}", file.display()))?;
    let mut evaluation = Evaluation::new(&program);
    for spec in references {
        let Some((table, path)) = spec.split_once('=') else {
            bail!("--reference {spec:?}: write TABLE=FILE.ndjson");
        };
        for_each_line(Path::new(path), |n, line| {
            evaluation
                .load_reference(table, line)
                .map_err(|e| anyhow::anyhow!("{path}, line {n}: {e}"))
        })?;
    }
    let now_ms = SystemClock.now_ms();
    for_each_line(events, |_, line| {
        evaluation.push(line, now_ms);
        Ok(())
    })?;
    let rows = evaluation.rows().map_err(|e| anyhow::anyhow!(e))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for row in &rows {
        writeln!(
            out,
            r#"{{"kind":"row","view":{},"row":{}}}"#,
            serde_json::Value::from(row.view.as_str()),
            row.json
        )?;
    }
    let rejected: u64 = evaluation.rejected.values().sum();
    let summary = serde_json::json!({
        "kind": "summary",
        "events_in": evaluation.events,
        "rows": rows.len(),
        "duplicates": evaluation.duplicates,
        "rejected": rejected,
        "rejected_by_reason": evaluation.rejected,
    });
    writeln!(out, "{summary}")?;
    Ok(true)
}

/// Calls `f` with each non-blank line of `path` and its number (from 1); lines are read
/// with the producer's bound (a longer line is cut, and will not read as JSON).
pub(crate) fn for_each_line(
    path: &Path,
    mut f: impl FnMut(usize, &[u8]) -> Result<()>,
) -> Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let mut n = 0;
    while read_line_bounded(&mut reader, &mut line, LINE_HEAD_BYTES)
        .with_context(|| format!("reading {}", path.display()))?
        .is_some()
    {
        n += 1;
        if !line.iter().all(u8::is_ascii_whitespace) {
            f(n, &line)?;
        }
    }
    Ok(())
}

/// Reads and checks the pipeline in `file`; an error names the file, line and column.
pub fn read(file: &PathBuf) -> Result<Pipeline> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the pipeline {}", file.display()))?;
    Pipeline::parse(&text).with_context(|| format!("{}", file.display()))
}

/// Reads and checks a pipeline for the stages (`--sql FILE`); an error names the file,
/// line and column.
pub fn load_pipeline(file: &Path) -> Result<SqlPipeline> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the pipeline {}", file.display()))?;
    SqlPipeline::load(&text).with_context(|| format!("{}", file.display()))
}

/// Reads `TABLE=FILE.ndjson` reference files (`--reference` with `--sql`) into the rows
/// enrich reads from the reference table: key [`reference_key`], one attribute
/// [`REFERENCE_ROW`] holding the line. `each` sees every line too (table, line).
pub fn reference_rows(
    sql: &SqlPipeline,
    specs: &[String],
    mut each: impl FnMut(&str, &[u8]) -> std::result::Result<(), String>,
) -> Result<Vec<(String, Attrs)>> {
    let mut rows = Vec::new();
    for spec in specs {
        let Some((table, path)) = spec.split_once('=') else {
            bail!("--reference {spec:?}: write TABLE=FILE.ndjson");
        };
        for_each_line(Path::new(path), |n, line| {
            let (key, _) = sql
                .program
                .read_reference(table, line)
                .and_then(|read| each(table, line).map(|()| read))
                .map_err(|e| anyhow::anyhow!("{path}, line {n}: {e}"))?;
            let text = String::from_utf8_lossy(line).into_owned();
            rows.push((
                reference_key(table, &key),
                Attrs::from([(REFERENCE_ROW.to_owned(), text)]),
            ));
            Ok(())
        })?;
    }
    Ok(rows)
}

/// The result rows of the stored view items among `items`: (view name, row JSON), in
/// the pipeline's view order, then as `items` come (by view, window and group).
pub fn view_rows<'a>(
    sql: &SqlPipeline,
    items: impl IntoIterator<Item = &'a AggregateItem>,
) -> Result<Vec<(String, String)>> {
    let mut rows = Vec::new();
    for item in items {
        if let Some(row) = sql.row_of(&item.key, &item.columns) {
            rows.push(row.map_err(|e| anyhow::anyhow!(e))?);
        }
    }
    let order: BTreeMap<&str, usize> = sql
        .views
        .iter()
        .enumerate()
        .map(|(i, v)| (v.name.as_str(), i))
        .collect();
    rows.sort_by_key(|(view, _)| order.get(view.as_str()).copied());
    Ok(rows)
}

/// Writes one `{"kind":"row","view":…,"row":{…}}` line per row.
pub fn write_rows(out: &mut impl Write, rows: &[(String, String)]) -> std::io::Result<()> {
    for (view, row) in rows {
        writeln!(
            out,
            r#"{{"kind":"row","view":{},"row":{row}}}"#,
            serde_json::Value::from(view.as_str())
        )?;
    }
    Ok(())
}
