//! Reading a deployment back: `sluice query` (the aggregates table), `sluice alerts`
//! (the alerts table) and `sluice dead-letters` (the dead-letter stream). With `--json`
//! they print the same lines as `sluice demo --json` (see `output`). What they print
//! comes from producers and tables: it goes through `output`'s escaping, never raw.

use std::io::Write;

use anyhow::Result;
use clap::Args;
use sluice_aws::{DynamoAggregateStore, DynamoAlerts, KinesisShardSource};
use sluice_core::input::dead_letter::DeadLetter;
use sluice_core::input::record::StreamRecord;
use sluice_core::ports::ShardSource;
use sluice_core::resources;
use sluice_core::state::item::{AggregateItem, GroupKey};

use crate::connect::Connection;
use crate::output;
use crate::remote::{explain, parse_time};

#[derive(Args, Debug)]
#[command(
    after_help = "Window starts are compared with --from and --to (inclusive). With --key and --type the\ntable is queried for that one group; otherwise it is scanned and filtered.\n\nExamples:\n  sluice query\n  sluice query --key sensor-001 --type temperature --window-seconds 60\n  sluice query --type amount --from 2026-01-01T00:00:00Z --to 2026-01-01T01:00:00Z\n  sluice query --json > aggregates.jsonl     (the aggregate lines of `sluice demo --json`)"
)]
pub struct QueryArgs {
    #[command(flatten)]
    pub conn: Connection,
    /// Only this entity (sensor, account, campaign, host).
    #[arg(long)]
    pub key: Option<String>,
    /// Only this metric.
    #[arg(long = "type", value_name = "TYPE")]
    pub metric: Option<String>,
    /// Only windows of this size (tumbling and hopping).
    #[arg(long, value_name = "N")]
    pub window_seconds: Option<i64>,
    /// Only windows starting at or after this time (RFC 3339 or epoch ms).
    #[arg(long, value_parser = parse_time, value_name = "T")]
    pub from: Option<i64>,
    /// Only windows starting at or before this time (RFC 3339 or epoch ms).
    #[arg(long, value_parser = parse_time, value_name = "T")]
    pub to: Option<i64>,
    /// Print JSON lines (one per aggregate, as `sluice demo --json` does; no summary).
    #[arg(long)]
    pub json: bool,
    /// A SQL pipeline's stored view: print its rows (one `{"kind":"row",...}` line
    /// each) instead of aggregates; needs --sql.
    #[arg(long, value_name = "NAME", requires = "sql")]
    pub view: Option<String>,
    /// The pipeline (.sql) the deployment runs, to read its views' rows.
    #[arg(long, value_name = "FILE.sql")]
    pub sql: Option<std::path::PathBuf>,
    /// With --view: only rows whose column has this value, COLUMN=VALUE (repeatable).
    #[arg(long = "where", value_name = "COLUMN=VALUE", requires = "view")]
    pub filters: Vec<String>,
}

/// Whether an item passes the filters of `args`.
fn selected(args: &QueryArgs, item: &AggregateItem) -> bool {
    let k = &item.key;
    args.key.as_ref().is_none_or(|key| &k.group.key == key)
        && args.metric.as_ref().is_none_or(|m| &k.group.metric == m)
        && args
            .window_seconds
            .is_none_or(|s| k.window.size_secs() == s)
        && args.from.is_none_or(|from| k.start_ms >= from)
        && args.to.is_none_or(|to| k.start_ms <= to)
}

pub async fn run_query(args: QueryArgs) -> Result<bool> {
    if let (Some(view), Some(sql)) = (&args.view, &args.sql) {
        return run_view_query(&args, view, sql).await;
    }
    let conn = &args.conn;
    let clients = conn.clients().await;
    let table = conn.names().table(resources::AGGREGATES_TABLE);
    let store = DynamoAggregateStore::new(clients.dynamodb, &table);
    let items = match (&args.key, &args.metric) {
        (Some(key), Some(metric)) => {
            let group = GroupKey {
                key: key.clone(),
                metric: metric.clone(),
            };
            store
                .query(
                    &group,
                    None,
                    args.from.unwrap_or(i64::MIN),
                    args.to.unwrap_or(i64::MAX),
                )
                .await
        }
        _ => store.scan_all().await,
    }
    .map_err(|e| explain(e, &format!("reading aggregates table {table:?}"), conn))?;
    let selected: Vec<AggregateItem> = items.into_iter().filter(|i| selected(&args, i)).collect();
    let views = output::aggregate_views(&selected);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        for v in &views {
            writeln!(out, "{}", output::json_line(v)?)?;
        }
    } else if views.is_empty() {
        eprintln!("No aggregates in table {table} match.");
    } else {
        output::print_views(&mut out, &views)?;
    }
    out.flush()?;
    Ok(true)
}

#[derive(Args, Debug)]
#[command(
    after_help = "Latest window first.\n\nExamples:\n  sluice alerts\n  sluice alerts --limit 100 --json"
)]
pub struct AlertsArgs {
    #[command(flatten)]
    pub conn: Connection,
    /// Show at most this many alerts.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Print JSON lines (the alert lines of `sluice demo --json`).
    #[arg(long)]
    pub json: bool,
}

pub async fn run_alerts(args: AlertsArgs) -> Result<bool> {
    let conn = &args.conn;
    let clients = conn.clients().await;
    let table = conn.names().table(resources::ALERTS_TABLE);
    let alerts = DynamoAlerts::new(clients.dynamodb, &table)
        .list(args.limit)
        .await
        .map_err(|e| explain(e, &format!("reading alerts table {table:?}"), conn))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        for a in &alerts {
            writeln!(out, "{}", output::json_line(a)?)?;
        }
    } else {
        output::print_alerts_upto(&mut out, &alerts, args.limit)?;
    }
    out.flush()?;
    Ok(true)
}

#[derive(Args, Debug)]
#[command(
    after_help = "Reads every shard of the `{prefix}-dead-letter` stream from the oldest record kept\n(the stream's retention period); a rejection written twice is listed once.\n\nExamples:\n  sluice dead-letters\n  sluice dead-letters --limit 20\n  sluice dead-letters --json | jq -r .reason | sort | uniq -c"
)]
pub struct DeadLettersArgs {
    #[command(flatten)]
    pub conn: Connection,
    /// Show only the newest N (counts by reason still cover all of them).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Print JSON lines (the dead-letter lines of `sluice demo --json`).
    #[arg(long)]
    pub json: bool,
}

/// Every record of every shard of `source`, oldest first per shard.
pub async fn read_all(source: &impl ShardSource) -> sluice_core::Result<Vec<StreamRecord>> {
    const LIMIT: usize = 10_000;
    /// Empty reads in a row that end a shard still behind the tip (real Kinesis can
    /// answer empty while it skips over time with no records).
    const EMPTY_READS: u32 = 5;
    let mut records = Vec::new();
    for shard in source.shards().await? {
        let mut after: Option<String> = None;
        let mut empty = 0;
        loop {
            let read = source
                .read(&shard.shard_id, after.as_deref(), LIMIT)
                .await?;
            if let Some(last) = read.records.last() {
                after = Some(last.sequence_number.clone());
                empty = 0;
                records.extend(read.records);
                if read.ended {
                    break;
                }
                continue;
            }
            empty += 1;
            if read.ended || read.behind_ms.unwrap_or(0) <= 0 || empty >= EMPTY_READS {
                break;
            }
        }
    }
    Ok(records)
}

pub async fn run_dead_letters(args: DeadLettersArgs) -> Result<bool> {
    let conn = &args.conn;
    let clients = conn.clients().await;
    let stream = conn.names().stream(resources::DEAD_LETTER);
    let doing = format!("reading dead-letter stream {stream:?}");
    let source = KinesisShardSource::connect(clients.kinesis, &stream)
        .await
        .map_err(|e| explain(e, &doing, conn))?;
    let mut records = read_all(&source)
        .await
        .map_err(|e| explain(e, &doing, conn))?;
    let undecodable = records
        .iter()
        .filter(|r| serde_json::from_slice::<DeadLetter>(&r.data).is_err())
        .count();
    if undecodable > 0 {
        eprintln!(
            "warning: {undecodable} records on stream {stream} are not dead letters: skipped"
        );
    }
    // Oldest first across shards, so `--limit` keeps the newest.
    records.sort_by_key(|r| r.arrival_ms);
    let letters = output::dead_letters(&records);
    let shown = match args.limit {
        Some(n) if n < letters.len() => &letters[letters.len() - n..],
        _ => &letters[..],
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        for l in shown {
            writeln!(out, "{}", output::json_line(&output::dead_letter_json(l))?)?;
        }
    } else if letters.is_empty() {
        eprintln!("No dead letters on stream {stream}.");
    } else {
        if shown.len() < letters.len() {
            writeln!(
                out,
                "The newest {} of {} dead letters:",
                shown.len(),
                letters.len()
            )?;
        }
        output::print_dead_letters(&mut out, shown)?;
        output::print_reason_counts(&mut out, &letters)?;
    }
    out.flush()?;
    Ok(true)
}

/// `sluice query --sql FILE --view NAME [--where COLUMN=VALUE ...]`: the view's rows, read
/// from the aggregates table (a scan of the view's items) and computed by the pipeline.
async fn run_view_query(args: &QueryArgs, view: &str, sql: &std::path::Path) -> Result<bool> {
    let pipeline = crate::commands::sql::load_pipeline(sql)?;
    let Some(stored) = pipeline.views.iter().find(|v| v.name == view) else {
        let names: Vec<&str> = pipeline.views.iter().map(|v| v.name.as_str()).collect();
        anyhow::bail!(
            "{} stores no view `{view}`; its stored views: {}",
            sql.display(),
            names.join(", ")
        );
    };
    let mut filters = Vec::new();
    for f in &args.filters {
        let Some((column, value)) = f.split_once('=') else {
            anyhow::bail!("--where {f:?}: write COLUMN=VALUE");
        };
        if !stored.outputs.iter().any(|c| c == column) {
            anyhow::bail!(
                "--where {f:?}: view `{view}` has no column `{column}` (its columns: {})",
                stored.outputs.join(", ")
            );
        }
        filters.push((column.to_owned(), value.to_owned()));
    }
    let conn = &args.conn;
    let clients = conn.clients().await;
    let table = conn.names().table(resources::AGGREGATES_TABLE);
    let store = DynamoAggregateStore::new(clients.dynamodb, &table);
    let items = store
        .scan_all()
        .await
        .map_err(|e| explain(e, &format!("reading aggregates table {table:?}"), conn))?;
    let mine = items.iter().filter(|i| {
        i.key.group.metric == stored.id
            && args.from.is_none_or(|from| i.key.start_ms >= from)
            && args.to.is_none_or(|to| i.key.start_ms <= to)
    });
    let rows: Vec<(String, String)> = crate::commands::sql::view_rows(&pipeline, mine)?
        .into_iter()
        .filter(|(_, row)| {
            let row: serde_json::Value = serde_json::from_str(row).unwrap_or_default();
            filters
                .iter()
                .all(|(c, v)| sluice_core::query::value_matches(&row[c], v))
        })
        .collect();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    crate::commands::sql::write_rows(&mut out, &rows)?;
    if rows.is_empty() {
        eprintln!("No rows of view `{view}` in table {table} match.");
    }
    out.flush()?;
    Ok(true)
}
