//! The dashboard's view of `sluice demo`: its in-memory tables and streams and the
//! runner's counters, read live while the demo runs (every part is shared, none is
//! copied when the demo starts).

use std::sync::{Arc, Mutex, PoisonError};

use serde_json::json;
use sluice_core::ports::{Clock, ShardSource, SystemClock};
use sluice_core::state::item::AggregateView;
use sluice_local::clock::ManualClock;
use sluice_local::ledger::MemoryLedger;
use sluice_local::readers::{MemoryAggregateReader, MemoryAlertReader};
use sluice_local::store::{MemoryAggregateStore, MemoryAlerts};
use sluice_local::streams::MemoryStreams;

use super::overview::{self, Overview, StageRow, Views};
use crate::digest::{DeadLetterDigest, DeadLetters};
use crate::pipeline::{InProcess, Latencies, Stats};

/// The demo's table, read in place (under its lock, one view at a time) once per pass.
impl Views for MemoryAggregateStore {
    fn each(&self, f: &mut dyn FnMut(&AggregateView)) {
        self.for_each_view(|v| f(&v));
    }
}

struct DemoStage {
    name: &'static str,
    input_stream: String,
    stats: Stats,
    latencies: Option<Arc<Mutex<Latencies>>>,
}

pub struct DemoSource {
    title: String,
    store: Arc<MemoryAggregateStore>,
    alerts: Arc<MemoryAlerts>,
    streams: Arc<MemoryStreams>,
    /// The demo's dead letters, counted as they streamed by (the stream itself holds
    /// only the current round's).
    dead_letters: Arc<Mutex<DeadLetterDigest>>,
    stages: Vec<DemoStage>,
    /// The streams' clock (arrival times are on it): iterator ages are measured on it.
    clock: Arc<ManualClock>,
    ledger: Arc<MemoryLedger>,
}

impl DemoSource {
    pub fn of(p: &InProcess, title: String) -> Self {
        let stages = p
            .stages
            .stages
            .iter()
            .map(|s| DemoStage {
                name: s.binary,
                input_stream: s.input_stream.clone(),
                stats: p.stages.stats[s.binary].clone(),
                latencies: p.stages.latencies.get(s.binary).cloned(),
            })
            .collect();
        DemoSource {
            title,
            store: p.store.clone(),
            alerts: p.alerts.clone(),
            streams: p.streams.clone(),
            dead_letters: p.dead_letters.clone(),
            stages,
            clock: p.clock.clone(),
            ledger: p.stages.ledger.clone(),
        }
    }

    pub fn aggregate_reader(&self) -> MemoryAggregateReader {
        MemoryAggregateReader::new(self.store.clone())
    }

    pub fn alert_reader(&self) -> MemoryAlertReader {
        MemoryAlertReader::new(self.alerts.clone())
    }

    pub async fn overview(&self, window: Option<i64>, top: usize, points: usize) -> Overview {
        let dead_letters = {
            let digest = self
                .dead_letters
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            DeadLetters {
                total: digest.counts().total,
                by_reason: digest.counts().by_reason.clone(),
                note: None,
            }
        };
        let mut rows = Vec::with_capacity(self.stages.len());
        for s in &self.stages {
            rows.push(self.stage_row(s).await);
        }
        let ledger = self.ledger.summary();
        Overview {
            source: "demo",
            title: self.title.clone(),
            generated_ms: SystemClock.now_ms(),
            totals: Some(json!({
                "events_in": ledger.events_in,
                "counted": ledger.counted,
                "duplicates": ledger.duplicates,
                "dead_letter": ledger.dead_letter,
                "late": ledger.late,
                "alerts": self.alerts.alerts().len(),
            })),
            charts: overview::charts(self.store.as_ref(), window, top, points),
            dead_letters,
            stages: overview::Stages {
                rows,
                note: Some(
                    "iterator age is on the demo's simulated stream clock, which skips over batching windows".into(),
                ),
            },
        }
    }

    async fn stage_row(&self, s: &DemoStage) -> StageRow {
        let stats = s
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let (p50, p99) = s
            .latencies
            .as_ref()
            .map(|l| {
                let l = l.lock().unwrap_or_else(PoisonError::into_inner);
                let ms = |q| l.percentile(q).map(|us| us as f64 / 1000.0);
                (ms(0.5), ms(0.99))
            })
            .unwrap_or_default();
        StageRow {
            stage: s.name.to_owned(),
            input_stream: s.input_stream.clone(),
            records_in: Some(stats.records),
            events_in: Some(stats.events_in),
            records_out: Some(stats.passed_on),
            dead_letters: Some(stats.dead_lettered_total()),
            backlog_records: Some(self.streams.len(&s.input_stream) as u64),
            iterator_age_ms: Some(self.oldest_age_ms(&s.input_stream).await),
            p50_ms: p50,
            p99_ms: p99,
        }
    }

    /// Age of the oldest record still on a stream (its consumers trim what they have
    /// checkpointed): 0 when it is empty.
    async fn oldest_age_ms(&self, stream: &str) -> i64 {
        let source = self.streams.source(stream);
        let mut oldest: Option<i64> = None;
        for shard in source.shards().await.unwrap_or_default() {
            if let Ok(read) = source.read(&shard.shard_id, None, 1).await {
                if let Some(r) = read.records.first() {
                    oldest = Some(oldest.map_or(r.arrival_ms, |o| o.min(r.arrival_ms)));
                }
            }
        }
        oldest.map_or(0, |t| (self.clock.now_ms() - t).max(0))
    }
}
