//! The dashboard's view of a deployment: the aggregates and alerts tables, and the
//! dead-letter stream, tailed a bounded number of records per refresh. Per-stage
//! throughput, lag and durations are not in the tables (they are CloudWatch metrics),
//! so a deployment shows them as unavailable.

use std::collections::{BTreeMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use anyhow::Result;
use sluice_aws::KinesisShardSource;
use sluice_aws::dynamodb::{DynamoAggregateReader, DynamoAlertReader};
use sluice_core::input::dead_letter::DeadLetter;
use sluice_core::ports::{AggregateQuery, AggregateReader, Clock, ShardSource, SystemClock};
use sluice_core::query::MAX_LIMIT;
use sluice_core::resources;
use sluice_core::state::item::AggregateView;
use sluice_core::time::format_rfc3339;
use tokio::sync::Mutex;

use super::overview::{self, Overview, StageRow};
use crate::connect::Connection;
use crate::digest::DeadLetters;
use crate::pipeline::STAGES;

/// Aggregates-table reads (query API pages of up to [`MAX_LIMIT`] items, each a bounded
/// DynamoDB `Scan` request) per refresh at most: a table larger than that is charted
/// from the part read, and the page says so.
pub const AGGREGATE_READS: usize = 20;

/// Dead-letter records read per refresh at most (Kinesis `GetRecords` pages of 1,000):
/// a large backlog is counted over several refreshes instead of in one long one.
pub const DEAD_LETTER_BUDGET: usize = 10_000;

pub struct DeploymentSource {
    title: String,
    aggregates: DynamoAggregateReader,
    alerts: DynamoAlertReader,
    aggregates_table: String,
    kinesis: aws_sdk_kinesis::Client,
    dead_letter_stream: String,
    stages: Vec<(String, String)>,
    tail: Mutex<Tail>,
}

/// What has been read of the dead-letter stream so far: per shard the last sequence
/// number, the identities of the letters counted (a letter written twice counts
/// once) and the counts.
#[derive(Default)]
struct Tail {
    source: Option<KinesisShardSource>,
    after: BTreeMap<String, String>,
    seen: HashSet<u64>,
    counts: DeadLetters,
}

/// The identity `sluice dead-letters` de-duplicates by, hashed.
fn identity(letter: &DeadLetter) -> u64 {
    let mut h = DefaultHasher::new();
    match &letter.origin {
        Some(origin) => (origin, letter.reason.to_string()).hash(&mut h),
        None => (
            &letter.shard_id,
            &letter.sequence_number,
            letter.reason.to_string(),
        )
            .hash(&mut h),
    }
    h.finish()
}

impl DeploymentSource {
    pub async fn connect(conn: &Connection) -> Result<Self> {
        let clients = conn.clients().await;
        let names = conn.names();
        let template = conn.template()?;
        let mut stages = Vec::new();
        for stage in STAGES {
            let f = template.function(stage)?;
            let stream = template
                .stream_name(&f.input_stream)
                .unwrap_or(f.input_stream);
            stages.push((stage.to_owned(), stream));
        }
        let aggregates_table = names.table(resources::AGGREGATES_TABLE);
        Ok(DeploymentSource {
            title: format!(
                "deployment {:?}{}",
                conn.prefix,
                conn.endpoint
                    .as_ref()
                    .map(|e| format!(" at {e}"))
                    .unwrap_or_default()
            ),
            aggregates: DynamoAggregateReader::new(clients.dynamodb.clone(), &aggregates_table),
            alerts: DynamoAlertReader::new(clients.dynamodb, names.table(resources::ALERTS_TABLE)),
            aggregates_table,
            kinesis: clients.kinesis,
            dead_letter_stream: names.stream(resources::DEAD_LETTER),
            stages,
            tail: Mutex::new(Tail::default()),
        })
    }

    pub fn aggregate_reader(&self) -> &DynamoAggregateReader {
        &self.aggregates
    }

    pub fn alert_reader(&self) -> &DynamoAlertReader {
        &self.alerts
    }

    /// Adds the first [`AGGREGATE_READS`] pages of the aggregates table to `views` (at
    /// most [`AGGREGATE_READS`] × [`MAX_LIMIT`]); returns whether that was the whole
    /// table.
    async fn read_aggregates(&self, views: &mut Vec<AggregateView>) -> sluice_core::Result<bool> {
        let mut query = AggregateQuery {
            key: None,
            metric: None,
            window_seconds: None,
            from_ms: None,
            to_ms: None,
            limit: MAX_LIMIT,
            after: None,
        };
        for _ in 0..AGGREGATE_READS {
            let page = self.aggregates.aggregates(&query).await?;
            views.extend(page.items);
            match page.next {
                Some(next) => query.after = Some(next),
                None => return Ok(true),
            }
        }
        Ok(false)
    }

    pub async fn overview(&self, window: Option<i64>, top: usize, points: usize) -> Overview {
        let mut views = Vec::new();
        let note = match self.read_aggregates(&mut views).await {
            Ok(true) => None,
            Ok(false) => Some(format!(
                "charted from the first {AGGREGATE_READS} reads of {} (a bounded read per refresh; the table holds more)",
                self.aggregates_table
            )),
            Err(e) => Some(format!("cannot read {}: {e}", self.aggregates_table)),
        };
        let mut charts = overview::charts(&views[..], window, top, points);
        drop(views);
        charts.note = note;
        let dead_letters = self.dead_letters().await;
        let rows = self
            .stages
            .iter()
            .map(|(stage, stream)| StageRow {
                stage: stage.clone(),
                input_stream: stream.clone(),
                ..StageRow::default()
            })
            .collect();
        Overview {
            source: "deployment",
            title: self.title.clone(),
            generated_ms: SystemClock.now_ms(),
            totals: None,
            charts,
            dead_letters,
            stages: overview::Stages {
                rows,
                note: Some(
                    "unavailable for a deployment: records in/out, iterator age and durations per stage are CloudWatch metrics (the stages' EMF lines, Lambda IteratorAge); sluice dashboard reads only the tables and the dead-letter stream".into(),
                ),
            },
        }
    }

    /// Reads what is new on the dead-letter stream (at most [`DEAD_LETTER_BUDGET`]
    /// records) and returns the counts so far.
    async fn dead_letters(&self) -> DeadLetters {
        let mut tail = self.tail.lock().await;
        let note = match self.read_tail(&mut tail).await {
            Ok(true) => Some(format!(
                "still catching up with {}: counted so far, more on the next refresh",
                self.dead_letter_stream
            )),
            Ok(false) => None,
            Err(e) => Some(format!(
                "cannot read {} ({}): {e}",
                self.dead_letter_stream,
                format_rfc3339(SystemClock.now_ms())
            )),
        };
        DeadLetters {
            total: tail.counts.total,
            by_reason: tail.counts.by_reason.clone(),
            note,
        }
    }

    /// Returns whether the budget ran out before the tip of every shard.
    async fn read_tail(&self, tail: &mut Tail) -> sluice_core::Result<bool> {
        if tail.source.is_none() {
            tail.source = Some(
                KinesisShardSource::connect(self.kinesis.clone(), &self.dead_letter_stream).await?,
            );
        }
        let Tail {
            source,
            after,
            seen,
            counts,
        } = tail;
        let Some(source) = source.as_ref() else {
            return Ok(false);
        };
        let mut budget = DEAD_LETTER_BUDGET;
        for shard in source.shards().await? {
            loop {
                if budget == 0 {
                    return Ok(true);
                }
                let from = after.get(&shard.shard_id).cloned();
                let read = source
                    .read(&shard.shard_id, from.as_deref(), budget.min(1000))
                    .await?;
                let Some(last) = read.records.last() else {
                    break;
                };
                after.insert(shard.shard_id.clone(), last.sequence_number.clone());
                budget = budget.saturating_sub(read.records.len());
                for r in &read.records {
                    if let Ok(letter) = serde_json::from_slice::<DeadLetter>(&r.data) {
                        if seen.insert(identity(&letter)) {
                            counts.add(&letter);
                        }
                    }
                }
                if read.ended {
                    break;
                }
            }
        }
        Ok(false)
    }
}
