//! The whole pipeline in one process: in-process streams and tables, the four stage
//! handlers (the same code the Lambdas run), wired through the local event source
//! mapping with the settings of `template.yaml`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result};
use sluice_core::cache::{CachedLookup, CachedRules};
use sluice_core::config::{AggregateConfig, DetectConfig, EnrichConfig, EnvReader, IngestConfig};
use sluice_core::outcome::StageStats;
use sluice_core::ports::{Attrs, Clock, SystemClock};
use sluice_core::record::OutRecord;
use sluice_core::resources;
use sluice_core::rules::Rule;
use sluice_core::stage::aggregate::Aggregate;
use sluice_core::stage::detect::Detect;
use sluice_core::stage::enrich::Enrich;
use sluice_core::stage::ingest::Ingest;
use sluice_local::clock::ManualClock;
use sluice_local::esm::{EsmStats, EventSourceMapping, stage_handler};
use sluice_local::faults::Faults;
use sluice_local::ledger::MemoryLedger;
use sluice_local::scenario::partition_key_of;
use sluice_local::store::{MemoryAggregateStore, MemoryAlerts, MemoryReference, MemoryRules};
use sluice_local::streams::{MemorySink, MemorySource, MemoryStreams};
use sluice_local::template::{FunctionSpec, Template};

pub const STAGES: [&str; 4] = ["ingest", "enrich", "aggregate", "detect"];

pub type Stats = Arc<Mutex<StageStats>>;

fn env_of(spec: &FunctionSpec) -> EnvReader<impl Fn(&str) -> Option<String>> {
    let env = spec.env.clone();
    EnvReader::new(move |k: &str| env.get(k).cloned())
}

pub struct InProcess {
    pub streams: Arc<MemoryStreams>,
    pub store: Arc<MemoryAggregateStore>,
    pub alerts: Arc<MemoryAlerts>,
    pub ledger: Arc<MemoryLedger>,
    pub stats: BTreeMap<&'static str, Stats>,
    pub mappings: Vec<EventSourceMapping<MemorySource, MemorySink>>,
    pub raw_stream: String,
    pub dead_letter_stream: String,
    pub aggregate_config: AggregateConfig,
    pub faults: Option<Arc<Faults>>,
    pub clock: Arc<ManualClock>,
}

impl InProcess {
    pub fn build(
        template: &Template,
        reference: Vec<(String, Attrs)>,
        rules: Vec<Rule>,
        faults: Option<Arc<Faults>>,
    ) -> Result<Self> {
        // Streams and mappings run on simulated time (batching windows, record ages);
        // the stages themselves check event times against the real clock.
        let sim = Arc::new(ManualClock::starting_at(SystemClock.now_ms()));
        let clock: Arc<dyn Clock> = sim.clone();
        let streams = MemoryStreams::new(clock.clone());
        for s in template.streams() {
            streams.create(&s.name, s.shards);
        }
        let stream = |logical: &str| -> Result<String> {
            template
                .stream_name(logical)
                .with_context(|| format!("template.yaml has no stream {logical}"))
        };
        let raw_stream = stream(resources::RAW.logical_id)?;
        let dead_letter_stream = stream(resources::DEAD_LETTER.logical_id)?;
        // In at-least-once mode only the aggregate stage's own retries are guarded, so
        // only its parts get faults; upstream retries would re-emit records that mode
        // is documented to count again.
        let delivery = template
            .parameter("Delivery")
            .unwrap_or("exactly-once")
            .to_owned();
        let faults_for = |stage: &str| {
            faults
                .clone()
                .filter(|_| delivery != "at-least-once" || stage == "aggregate")
        };
        let sink = |name: &str, stage: &str| {
            let s = streams.sink(name);
            match faults_for(stage) {
                Some(f) => s.with_faults(f),
                None => s,
            }
        };
        let mut store = MemoryAggregateStore::new();
        if let Some(f) = &faults {
            store = store.with_faults(f.clone());
        }
        let store = Arc::new(store);
        let alerts = Arc::new(MemoryAlerts::new());
        let ledger = Arc::new(MemoryLedger::new());
        let stats: BTreeMap<&'static str, Stats> =
            STAGES.iter().map(|s| (*s, Stats::default())).collect();
        let observe = |stage: &'static str| {
            let stats = stats[stage].clone();
            move |o: &sluice_core::outcome::BatchOutcome| {
                *stats.lock().unwrap_or_else(PoisonError::into_inner) += &o.stats;
            }
        };

        let spec = |binary: &str| {
            template
                .function(binary)
                .with_context(|| format!("reading function {binary} from template.yaml"))
        };
        let output_of = |spec: &FunctionSpec| -> Result<String> {
            spec.env
                .get(sluice_core::config::env::OUTPUT_STREAM)
                .cloned()
                .with_context(|| format!("{} has no OUTPUT_STREAM", spec.logical_id))
        };
        let mut mappings = Vec::new();
        let mut aggregate_config = AggregateConfig::default();
        for binary in STAGES {
            let spec = spec(binary)?;
            let env = env_of(&spec);
            let output = sink(&output_of(&spec)?, binary);
            let dead = sink(&dead_letter_stream, binary);
            let handler = match binary {
                "ingest" => stage_handler(
                    Arc::new(Ingest {
                        output,
                        dead_letters: dead,
                        ledger: ledger.clone(),
                        clock: SystemClock,
                        config: IngestConfig::from_reader(&env)?,
                    }),
                    observe("ingest"),
                ),
                "enrich" => {
                    let config = EnrichConfig::from_reader(&env)?;
                    stage_handler(
                        Arc::new(Enrich {
                            reference: CachedLookup::new(
                                MemoryReference::new(reference.clone()),
                                SystemClock,
                                config.cache_ttl_ms,
                            ),
                            output,
                            dead_letters: dead,
                            ledger: ledger.clone(),
                            clock: SystemClock,
                            config,
                        }),
                        observe("enrich"),
                    )
                }
                "aggregate" => {
                    aggregate_config = AggregateConfig::from_reader(&env)?;
                    stage_handler(
                        Arc::new(Aggregate::new(
                            store.clone(),
                            output,
                            dead,
                            ledger.clone(),
                            SystemClock,
                            aggregate_config.clone(),
                        )),
                        observe("aggregate"),
                    )
                }
                _ => {
                    let config = DetectConfig::from_reader(&env)?;
                    stage_handler(
                        Arc::new(Detect {
                            rules: CachedRules::new(
                                MemoryRules::new(rules.clone()),
                                SystemClock,
                                config.rules_cache_ttl_ms,
                            ),
                            alerts: alerts.clone(),
                            output,
                            dead_letters: dead,
                            clock: SystemClock,
                            config,
                        }),
                        observe("detect"),
                    )
                }
            };
            let input = template.stream_name(&spec.input_stream).with_context(|| {
                format!(
                    "{} reads unknown stream {}",
                    spec.logical_id, spec.input_stream
                )
            })?;
            let mut mapping = EventSourceMapping::new(
                binary,
                streams.source(&input),
                spec.esm.clone(),
                handler,
                streams.sink(&dead_letter_stream),
                clock.clone(),
                spec.timeout_s * 1000,
            )
            .with_ledger(ledger.clone(), binary == "ingest");
            if let Some(f) = faults_for(binary) {
                mapping = mapping.with_faults(f);
            }
            mappings.push(mapping);
        }
        Ok(InProcess {
            streams,
            store,
            alerts,
            ledger,
            stats,
            mappings,
            raw_stream,
            dead_letter_stream,
            aggregate_config,
            faults,
            clock: sim,
        })
    }

    /// Writes producer lines to the raw stream, one record per line, keyed by `key`.
    /// With fault injection on, some lines are sent twice (producer retries). Returns
    /// every record written, in order.
    pub fn produce(&self, lines: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
        let mut sent = Vec::with_capacity(lines.len());
        for chunk in lines.chunks(500) {
            let mut records = Vec::with_capacity(chunk.len());
            for line in chunk {
                let record = OutRecord {
                    partition_key: partition_key_of(&String::from_utf8_lossy(line)),
                    data: line.clone(),
                };
                if self.faults.as_ref().is_some_and(|f| f.producer_duplicate()) {
                    records.push(record.clone());
                    sent.push(line.clone());
                }
                records.push(record);
                sent.push(line.clone());
            }
            self.streams.put(&self.raw_stream, records)?;
        }
        Ok(sent)
    }

    /// Runs every stage until every stream is drained; `progress` is called between
    /// rounds.
    pub async fn drain(&mut self, mut progress: impl FnMut(&InProcess)) -> Result<()> {
        loop {
            let mut worked = false;
            for i in 0..self.mappings.len() {
                // Drain one stage before the next, as a busy stream would fill batches.
                let mut rounds = 0;
                while self.mappings[i].poll().await? {
                    worked = true;
                    rounds += 1;
                    if rounds % 20 == 0 {
                        progress(self);
                    }
                }
            }
            progress(self);
            if worked {
                continue;
            }
            // Only batching windows are left to wait for: jump to the first one due.
            match self.mappings.iter().filter_map(|m| m.next_due_ms()).min() {
                Some(due) => self.clock.advance_to(due),
                None if self.mappings.iter().all(|m| m.is_idle()) => return Ok(()),
                None => {}
            }
        }
    }

    pub fn stage_stats(&self, stage: &str) -> StageStats {
        self.stats
            .get(stage)
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).clone())
            .unwrap_or_default()
    }

    pub fn mapping_stats(&self) -> Vec<(String, EsmStats)> {
        self.mappings
            .iter()
            .map(|m| (m.function.clone(), m.stats.clone()))
            .collect()
    }
}
