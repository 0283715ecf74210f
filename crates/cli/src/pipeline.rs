//! The four stage handlers (the same code the Lambdas run) wired through the local
//! event source mapping with the settings of `template.yaml`: in one process on
//! in-memory streams and tables ([`InProcess`], for `sluice demo`), or over real
//! Kinesis and DynamoDB (`sluice run`), sharing [`build_stages`] and [`Runner`].

use sluice_core::stage::sql::SqlPipeline;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result};
use sluice_core::config::{
    AggregateConfig, DetectConfig, EnrichConfig, EnvReader, IngestConfig, env,
};
use sluice_core::detect::rules::Rule;
use sluice_core::input::dead_letter::DeadLetter;
use sluice_core::input::envelope::{Reason, Rejection};
use sluice_core::input::record::{OutRecord, StreamRecord};
use sluice_core::ports::{
    AggregateStore, AlertStore, Attrs, Clock, RecordSink, ReferenceLookup, RulesSource,
    ShardSource, SystemClock, WindowHistory,
};
use sluice_core::resources;
use sluice_core::stage::outcome::Fate;
use sluice_core::stage::outcome::{BatchOutcome, StageStats};
use sluice_core::state::limits::kinesis as kinesis_limits;
use sluice_local::clock::ManualClock;
use sluice_local::esm::{EsmClocks, EsmStats, EventSourceMapping, Handler, stage_handler};
use sluice_local::faults::{FaultRates, Faults, FaultySink, FaultyStore};
use sluice_local::ledger::MemoryLedger;
use sluice_local::scenario::partition_key_of;
use sluice_local::store::{MemoryAggregateStore, MemoryAlerts, MemoryReference, MemoryRules};
use sluice_local::streams::{Checkpoint, Consumers, MemorySink, MemorySource, MemoryStreams};
use sluice_local::template::{FunctionSpec, Template};

use crate::digest::DeadLetterDigest;
use crate::output::{self, StageSummary};

pub const STAGES: [&str; 4] = ["ingest", "enrich", "aggregate", "detect"];

/// Aggregate-stage settings a command may override (template parameters, as
/// `sam deploy --parameter-overrides` would).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AggregateOverrides {
    /// Delivery mode of the aggregate stage: exactly-once or at-least-once.
    #[arg(long)]
    pub delivery: Option<sluice_core::config::Delivery>,
    /// Windows in seconds, `size` or `size/slide` (hopping), e.g. `60,3600,3600/600`.
    #[arg(long, value_name = "LIST")]
    pub windows: Option<sluice_core::state::window::WindowSet>,
    /// How long after a window closes its late events are still counted, in seconds.
    #[arg(long, value_name = "SECS")]
    pub allowed_lateness: Option<u32>,
}

impl AggregateOverrides {
    pub fn apply(&self, template: &mut Template) {
        if let Some(d) = self.delivery {
            template.set_parameter("Delivery", d.to_string());
        }
        if let Some(w) = &self.windows {
            template.set_parameter("Windows", w.to_string());
        }
        if let Some(l) = self.allowed_lateness {
            template.set_parameter("AllowedLatenessSeconds", l.to_string());
        }
    }
}

pub type Stats = Arc<Mutex<StageStats>>;

/// The table-backed ports the stages run on.
pub struct Ports<R, S, Ru, A, H> {
    pub reference: R,
    pub store: S,
    pub rules: Ru,
    pub alerts: A,
    /// The aggregates table again, read-only, for detect's `rate`/`zscore` rules.
    pub history: H,
    /// A Flink SQL pipeline the stages run instead of the event envelope.
    pub sql: Option<Arc<SqlPipeline>>,
}

/// One stage, ready for an event source mapping.
pub struct StageSpec {
    pub binary: &'static str,
    pub function: FunctionSpec,
    pub input_stream: String,
    pub handler: Handler,
}

/// The stages of a deployment and what the runner reports about them.
pub struct Stages {
    pub stages: Vec<StageSpec>,
    /// Invocation durations per stage, in microseconds.
    pub latencies: BTreeMap<&'static str, Arc<Mutex<Latencies>>>,
    pub raw_stream: String,
    pub dead_letter_stream: String,
    pub aggregate_config: AggregateConfig,
    pub ledger: Arc<MemoryLedger>,
    pub stats: BTreeMap<&'static str, Stats>,
}

fn env_of(spec: &FunctionSpec) -> EnvReader<impl Fn(&str) -> Option<String> + use<>> {
    let env = spec.env.clone();
    EnvReader::new(move |k: &str| env.get(k).cloned())
}

/// Which parts get faults: in at-least-once mode only the aggregate stage's own retries
/// are guarded, so only its parts do; upstream retries would re-emit records that this
/// mode is documented to count again.
pub fn faults_for(
    template: &Template,
    faults: &Option<Arc<Faults>>,
    stage: &str,
) -> Option<Arc<Faults>> {
    let at_least_once = template.parameter("Delivery") == Some("at-least-once");
    faults
        .clone()
        .filter(|_| !at_least_once || stage == "aggregate")
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

/// Builds the four stages from the template's functions (their environment is their
/// configuration) over the given ports; `sink(stream)` makes a writer for a stream;
/// `clock` is the wall clock the stages read (deadlines, clock skew, cache ages);
/// `streams_clock` the one the streams stamp arrivals with (iterator ages are measured
/// on it); `ledger` books every event's fate.
pub fn build_stages<R, S, Ru, A, H, K>(
    template: &Template,
    ports: Ports<R, S, Ru, A, H>,
    sink: impl Fn(&str) -> K,
    faults: &Option<Arc<Faults>>,
    clock: Arc<dyn Clock>,
    streams_clock: Arc<dyn Clock>,
    ledger: Arc<MemoryLedger>,
) -> Result<Stages>
where
    R: ReferenceLookup + 'static,
    S: AggregateStore + 'static,
    Ru: RulesSource + 'static,
    A: AlertStore + 'static,
    H: WindowHistory + 'static,
    K: RecordSink + 'static,
{
    let stream = |logical: &str| -> Result<String> {
        template
            .stream_name(logical)
            .with_context(|| format!("template.yaml has no stream {logical}"))
    };
    let raw_stream = stream(resources::RAW.logical_id)?;
    let dead_letter_stream = stream(resources::DEAD_LETTER.logical_id)?;
    let stats: BTreeMap<&'static str, Stats> =
        STAGES.iter().map(|s| (*s, Stats::default())).collect();
    let faulty_sink =
        |name: &str, stage: &str| FaultySink::new(sink(name), faults_for(template, faults, stage));
    let sql = ports.sql.clone();
    // Each port goes to exactly one stage.
    let mut ports = Unclaimed::from(ports);
    let mut aggregate_config = AggregateConfig::default();
    let mut stages = Vec::new();
    let mut latencies = BTreeMap::new();
    for binary in STAGES {
        let function = template
            .function(binary)
            .with_context(|| format!("reading function {binary} from template.yaml"))?;
        let vars = env_of(&function);
        let output_stream = function
            .env
            .get(env::OUTPUT_STREAM)
            .cloned()
            .with_context(|| format!("{} has no {}", function.logical_id, env::OUTPUT_STREAM))?;
        let parts = StageParts {
            output: faulty_sink(&output_stream, binary),
            dead_letters: faulty_sink(&dead_letter_stream, binary),
            faults: faults_for(template, faults, binary),
            clock: clock.clone(),
            sql: sql.clone(),
        };
        let observe = observer(stats[binary].clone(), ledger.clone(), streams_clock.clone());
        let handler = handler_for(
            binary,
            &vars,
            &mut ports,
            parts,
            &mut aggregate_config,
            observe,
        )?;
        let input_stream = stream(&function.input_stream)?;
        let timings = Arc::new(Mutex::new(Latencies::default()));
        latencies.insert(binary, timings.clone());
        stages.push(StageSpec {
            binary,
            function,
            input_stream,
            handler: timed(handler, timings),
        });
    }
    Ok(Stages {
        stages,
        latencies,
        raw_stream,
        dead_letter_stream,
        aggregate_config,
        ledger,
        stats,
    })
}

/// The ports not yet handed to a stage: each goes to exactly one.
struct Unclaimed<R, S, Ru, A, H> {
    reference: Option<R>,
    store: Option<S>,
    rules: Option<Ru>,
    alerts: Option<A>,
    history: Option<H>,
}

impl<R, S, Ru, A, H> From<Ports<R, S, Ru, A, H>> for Unclaimed<R, S, Ru, A, H> {
    fn from(ports: Ports<R, S, Ru, A, H>) -> Self {
        Unclaimed {
            reference: Some(ports.reference),
            store: Some(ports.store),
            rules: Some(ports.rules),
            alerts: Some(ports.alerts),
            history: Some(ports.history),
        }
    }
}

/// What every stage is built over besides its own ports: its output and dead-letter
/// writers (with fault injection), the faults its stores get, and the wall clock.
struct StageParts<K> {
    output: FaultySink<K>,
    dead_letters: FaultySink<K>,
    faults: Option<Arc<Faults>>,
    clock: Arc<dyn Clock>,
    sql: Option<Arc<SqlPipeline>>,
}

/// Each invocation's counters are summed into `stats`, with the largest iterator age of
/// its batches (measured as the stage returns: on the demo's simulated clock that is
/// when the batch was handed over; on a real clock it includes the batch's own
/// duration), and its accounting booked in the ledger.
fn observer(
    stats: Stats,
    ledger: Arc<MemoryLedger>,
    streams_clock: Arc<dyn Clock>,
) -> impl Fn(&[StreamRecord], &BatchOutcome) + Send + Sync + 'static {
    move |records: &[StreamRecord], o: &BatchOutcome| {
        let age = sluice_core::stage::outcome::iterator_age_ms(
            records.iter().map(|r| r.arrival_ms),
            streams_clock.now_ms(),
        );
        {
            let mut total = stats.lock().unwrap_or_else(PoisonError::into_inner);
            *total += &o.stats;
            total.iterator_age_ms = total.iterator_age_ms.max(age);
        }
        ledger.book(records, &o.accounting);
    }
}

/// Builds stage `binary` by its Lambda crate's own constructor (the binary's code path)
/// from its environment `vars`, over the ports it claims wrapped in fault injection;
/// the aggregate stage's configuration is kept in `aggregate_config`.
fn handler_for<R, S, Ru, A, H, K, E>(
    binary: &str,
    vars: &EnvReader<E>,
    ports: &mut Unclaimed<R, S, Ru, A, H>,
    parts: StageParts<K>,
    aggregate_config: &mut AggregateConfig,
    observe: impl Fn(&[StreamRecord], &BatchOutcome) + Send + Sync + 'static,
) -> Result<Handler>
where
    R: ReferenceLookup + 'static,
    S: AggregateStore + 'static,
    Ru: RulesSource + 'static,
    A: AlertStore + 'static,
    H: WindowHistory + 'static,
    K: RecordSink + 'static,
    E: Fn(&str) -> Option<String>,
{
    let StageParts {
        output,
        dead_letters,
        faults,
        clock,
        sql,
    } = parts;
    Ok(match binary {
        "ingest" => {
            let stage = sluice_ingest::handler_with_clock(
                output,
                dead_letters,
                clock,
                IngestConfig::from_reader(vars)?,
            );
            let stage = match sql {
                Some(sql) => stage.with_sql(sql),
                None => stage,
            };
            stage_handler(Arc::new(stage), observe)
        }
        "enrich" if sql.is_some() => stage_handler(
            Arc::new(sluice_enrich::sql_handler_with_clock(
                sql.context("a pipeline")?,
                ports.reference.take().context("one enrich stage")?,
                output,
                dead_letters,
                clock,
                EnrichConfig::from_reader(vars)?,
            )),
            observe,
        ),
        "enrich" => stage_handler(
            Arc::new(sluice_enrich::handler_with_clock(
                ports.reference.take().context("one enrich stage")?,
                output,
                dead_letters,
                clock,
                EnrichConfig::from_reader(vars)?,
            )),
            observe,
        ),
        "aggregate" => {
            *aggregate_config = AggregateConfig::from_reader(vars)?;
            let stage = sluice_aggregate::handler_with_clock(
                FaultyStore::new(ports.store.take().context("one aggregate stage")?, faults),
                // Its window updates are written right after its commits.
                output.after_commit(),
                dead_letters,
                clock,
                aggregate_config.clone(),
            );
            let stage = match sql {
                Some(sql) => stage.with_sql(sql),
                None => stage,
            };
            stage_handler(Arc::new(stage), observe)
        }
        _ => {
            let stage = sluice_detect::handler_with_clock(
                ports.rules.take().context("one detect stage")?,
                ports.alerts.take().context("one detect stage")?,
                FaultyStore::new(ports.history.take().context("one detect stage")?, faults),
                output,
                dead_letters,
                clock,
                DetectConfig::from_reader(vars)?,
            );
            let stage = match sql {
                Some(sql) => stage.with_sql(sql),
                None => stage,
            };
            stage_handler(Arc::new(stage), observe)
        }
    })
}

/// Invocation durations in microseconds, in a fixed-size histogram: percentiles within
/// 1/128 (exact below 128 µs) in memory that does not grow with the invocations.
pub type Latencies = sluice_core::latency::Histogram;

/// Records how long each invocation took.
fn timed(handler: Handler, timings: Arc<Mutex<Latencies>>) -> Handler {
    Arc::new(move |event, deadline_ms| {
        let handler = handler.clone();
        let timings = timings.clone();
        Box::pin(async move {
            let started = std::time::Instant::now();
            let result = handler(event, deadline_ms).await;
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            timings
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .record(micros);
            result
        }) as sluice_local::esm::InvokeFuture
    })
}

/// Event source mappings for every stage, polled in stage order.
pub struct Runner<Src, D> {
    pub mappings: Vec<EventSourceMapping<Src, D>>,
}

impl<Src: ShardSource, D: RecordSink> Runner<Src, D> {
    /// Wires a mapping per stage: `source(stream)` reads a stream, `on_failure()` writes
    /// batch metadata to the dead-letter stream.
    pub fn new(
        stages: &Stages,
        mut source: impl FnMut(&str) -> Src,
        on_failure: impl Fn() -> D,
        clocks: EsmClocks,
        template: &Template,
        faults: &Option<Arc<Faults>>,
    ) -> Self {
        let mappings = stages
            .stages
            .iter()
            .map(|s| {
                let mut m = EventSourceMapping::new(
                    s.binary,
                    source(&s.input_stream),
                    s.function.esm.clone(),
                    s.handler.clone(),
                    on_failure(),
                    clocks.clone(),
                    s.function.timeout_s * 1000,
                )
                .with_ledger(stages.ledger.clone(), s.binary == "ingest");
                if let Some(f) = faults_for(template, faults, s.binary) {
                    m = m.with_faults(f);
                }
                m
            })
            .collect();
        Runner { mappings }
    }

    /// One pass over the stages. `drain_each`: run each stage until it has nothing
    /// ready before moving on (bigger batches when input is already there).
    pub async fn step(&mut self, drain_each: bool) -> Result<bool> {
        self.step_then(drain_each, |_| {}).await
    }

    /// As [`Runner::step`], calling `polled` after every poll (to drop what the
    /// mappings have checkpointed while the next stage works).
    pub async fn step_then(
        &mut self,
        drain_each: bool,
        mut polled: impl FnMut(&EventSourceMapping<Src, D>),
    ) -> Result<bool> {
        let mut worked = false;
        for m in &mut self.mappings {
            loop {
                let did = m
                    .poll()
                    .await
                    .with_context(|| format!("event source mapping of {}", m.function))?;
                polled(m);
                worked |= did;
                if !did || !drain_each {
                    break;
                }
            }
        }
        Ok(worked)
    }

    pub fn next_due_ms(&self) -> Option<i64> {
        self.mappings.iter().filter_map(|m| m.next_due_ms()).min()
    }

    pub fn is_idle(&self) -> bool {
        self.mappings.iter().all(|m| m.is_idle())
    }

    pub fn mapping_stats(&self) -> Vec<(String, EsmStats)> {
        self.mappings
            .iter()
            .map(|m| (m.function.clone(), m.stats.clone()))
            .collect()
    }
}

/// The whole pipeline in one process, on in-memory streams and tables.
pub struct InProcess {
    pub streams: Arc<MemoryStreams>,
    pub store: Arc<MemoryAggregateStore>,
    pub alerts: Arc<MemoryAlerts>,
    pub stages: Stages,
    pub runner: Runner<MemorySource, MemorySink>,
    pub faults: Option<Arc<Faults>>,
    pub clock: Arc<ManualClock>,
    /// The stages as consumers of the streams they read: what all of them have
    /// checkpointed is dropped, so memory follows what is in flight, not the volume.
    consumers: Consumers,
    /// Lines refused at the producer's edge so far (they name their dead letters).
    producer_rejections: std::sync::atomic::AtomicU64,
    /// The streams no stage reads (dead letters, alerts): the pipeline is their
    /// consumer, so they hold only what the last round wrote.
    unconsumed: Vec<String>,
    /// What the dead-letter stream carried, folded as it streamed by.
    pub dead_letters: Arc<Mutex<DeadLetterDigest>>,
    /// The SQL pipeline the stages run, if any (the dashboard serves its views).
    pub sql: Option<Arc<SqlPipeline>>,
    /// One partition key for every producer record (`demo --sql`: a file is one ordered
    /// source, as Flink's filesystem source reads it); `None`: each line's `key`.
    pub producer_key: Option<String>,
}

/// The partition key of every producer record of a SQL pipeline's input (`demo`,
/// `produce` and `run` with `--sql`): a file is one ordered source, as Flink's
/// filesystem source reads it, so a group's lines reach aggregate in order and none is
/// late for another shard's skew.
pub const SQL_SOURCE_KEY: &str = "sql-source";

/// The name the pipeline itself checkpoints under as the consumer of the streams no
/// stage reads.
const PIPELINE_CONSUMER: &str = "sluice-demo";

impl InProcess {
    /// The demo's pipeline: the streams and mappings run on simulated time, which jumps
    /// over batching windows when every stage is only waiting; the stages read the
    /// wall clock.
    pub fn build(
        template: &Template,
        reference: Vec<(String, Attrs)>,
        rules: Vec<Rule>,
        faults: Option<Arc<Faults>>,
    ) -> Result<Self> {
        let sim = Arc::new(ManualClock::starting_at(SystemClock.now_ms()));
        Self::build_with_clocks(
            template,
            reference,
            rules,
            faults,
            sim,
            Arc::new(SystemClock),
        )
    }

    /// As [`InProcess::build`], with the simulated clock of the streams and mappings
    /// (`sim`) and the clock the stages read (`wall`: deadlines, clock skew, cache
    /// ages) given, so tests can put them as far apart as a long run does.
    pub fn build_with_clocks(
        template: &Template,
        reference: Vec<(String, Attrs)>,
        rules: Vec<Rule>,
        faults: Option<Arc<Faults>>,
        sim: Arc<ManualClock>,
        wall: Arc<dyn Clock>,
    ) -> Result<Self> {
        Self::assemble(template, reference, rules, faults, (sim, wall), None)
    }

    /// The demo's pipeline running a Flink SQL pipeline (`sluice demo --sql`):
    /// `reference` holds the reference tables' rows as enrich reads them
    /// ([`sluice_core::stage::sql::enrich::reference_key`]).
    pub fn build_sql(
        template: &Template,
        reference: Vec<(String, Attrs)>,
        rules: Vec<Rule>,
        faults: Option<Arc<Faults>>,
        sql: Arc<SqlPipeline>,
    ) -> Result<Self> {
        let sim = Arc::new(ManualClock::starting_at(SystemClock.now_ms()));
        let clocks = (sim, Arc::new(SystemClock) as Arc<dyn Clock>);
        let mut pipeline = Self::assemble(template, reference, rules, faults, clocks, Some(sql))?;
        pipeline.producer_key = Some(SQL_SOURCE_KEY.into());
        Ok(pipeline)
    }

    fn assemble(
        template: &Template,
        reference: Vec<(String, Attrs)>,
        rules: Vec<Rule>,
        faults: Option<Arc<Faults>>,
        (sim, wall): (Arc<ManualClock>, Arc<dyn Clock>),
        sql: Option<Arc<SqlPipeline>>,
    ) -> Result<Self> {
        let clock: Arc<dyn Clock> = sim.clone();
        let streams = MemoryStreams::new(clock.clone());
        for s in template.streams() {
            streams.create(&s.name, s.shards);
        }
        let store = Arc::new(MemoryAggregateStore::new());
        let alerts = Arc::new(MemoryAlerts::new());
        let ports = Ports {
            reference: MemoryReference::new(reference),
            store: store.clone(),
            rules: MemoryRules::new(rules),
            alerts: alerts.clone(),
            history: store.clone(),
            sql: sql.clone(),
        };
        let stages = build_stages(
            template,
            ports,
            |name| streams.sink(name),
            &faults,
            wall.clone(),
            clock.clone(),
            // Origins here come from the in-process streams' one sequence counter;
            // arrivals are stamped on the streams' (simulated) clock.
            Arc::new(MemoryLedger::for_memory_streams().with_latency(clock.clone())),
        )?;
        let dead_letters = stages.dead_letter_stream.clone();
        let runner = Runner::new(
            &stages,
            |name| streams.source(name),
            || streams.sink(&dead_letters),
            EsmClocks {
                mapping: clock,
                function: wall,
            },
            template,
            &faults,
        );
        let consumers = Consumers::new();
        for m in &runner.mappings {
            consumers.register(m.stream_name(), &m.function);
        }
        let unconsumed: Vec<String> = template
            .streams()
            .iter()
            .map(|s| s.name.clone())
            .filter(|name| runner.mappings.iter().all(|m| m.stream_name() != name))
            .collect();
        for name in &unconsumed {
            consumers.register(name, PIPELINE_CONSUMER);
        }
        Ok(InProcess {
            streams,
            store,
            alerts,
            stages,
            runner,
            faults,
            clock: sim,
            consumers,
            producer_rejections: Default::default(),
            unconsumed,
            dead_letters: Default::default(),
            sql,
            producer_key: None,
        })
    }

    /// Writes producer lines to the raw stream, one record per line, keyed by `key`.
    /// With fault injection on, some lines are sent twice (producer retries). Returns
    /// every record written, in order.
    ///
    /// Requests keep within `PutRecords`' limits (500 records, 5 MiB). A line that
    /// Kinesis would refuse (over 1 MiB with its partition key) cannot enter the raw
    /// stream: as a real producer's `PutRecords` would fail for it, the demo books it
    /// here, at the producer's edge, as a `record_too_large` dead letter (stage
    /// `produce`, original bytes bounded like every dead letter) instead of aborting.
    pub fn produce(&self, lines: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
        let (mut records, sent) = producer_records(lines, &self.faults);
        if let Some(key) = &self.producer_key {
            records
                .iter_mut()
                .for_each(|r| r.partition_key.clone_from(key));
        }
        let (fitting, refused) = sendable(records);
        for (_, record, error) in &refused {
            self.reject_at_producer(record, error)?;
        }
        // Requests are runs of consecutive records: move each run out, no copies.
        let all: Vec<usize> = (0..fitting.len()).collect();
        let sizes: Vec<usize> = kinesis_limits::requests(&fitting, &all)
            .iter()
            .map(Vec::len)
            .collect();
        let mut rest = fitting.into_iter();
        for size in sizes {
            let batch: Vec<OutRecord> = rest.by_ref().take(size).collect();
            let sequence_numbers = self.streams.put(&self.stages.raw_stream, batch)?;
            // The arrival of these events at ingest, for their latency.
            self.stages
                .ledger
                .note_put(sequence_numbers.iter().map(String::as_str));
        }
        Ok(sent)
    }

    fn reject_at_producer(&self, record: &OutRecord, error: &sluice_core::Error) -> Result<()> {
        let n = self
            .producer_rejections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let origin = format!("producer:{n}");
        let source = StreamRecord {
            stream: self.stages.raw_stream.clone(),
            shard_id: "producer".into(),
            sequence_number: n.to_string(),
            partition_key: record.partition_key.clone(),
            data: Vec::new(),
            arrival_ms: self.clock.now_ms(),
        };
        let rejection = Rejection {
            reason: Reason::RecordTooLarge,
            field: None,
            detail: format!("a producer cannot send this line: {error}"),
            id: None,
        };
        let dead = DeadLetter::for_line("produce", &source, 0, &record.data, &rejection)
            .with_origin(Some(origin.clone()))
            .into_record(&record.partition_key);
        self.streams
            .put(&self.stages.dead_letter_stream, vec![dead])?;
        self.stages.ledger.received(&origin);
        self.stages
            .ledger
            .settled(&origin, Fate::DeadLetter(Reason::RecordTooLarge));
        Ok(())
    }

    /// Runs every stage until every stream is drained; `progress` is called between
    /// rounds.
    pub async fn drain(&mut self, mut progress: impl FnMut(&InProcess)) -> Result<()> {
        loop {
            let (streams, consumers) = (&self.streams, &self.consumers);
            let worked = self
                .runner
                .step_then(true, |m| trim(streams, consumers, m))
                .await?;
            self.collect_unconsumed()?;
            progress(self);
            if worked {
                continue;
            }
            // Only batching windows are left to wait for: jump to the first one due.
            match self.runner.next_due_ms() {
                Some(due) => self.clock.advance_to(due),
                None if self.runner.is_idle() => {
                    // Every record put so far is settled: its arrival is no longer needed,
                    // and no dead letter can be written again.
                    self.stages.ledger.forget_puts();
                    lock(&self.dead_letters).round_done();
                    return Ok(());
                }
                None => {}
            }
        }
    }
}

impl InProcess {
    /// Feeds the pipeline a chunk of lines at a time (`next_chunk` returns an empty
    /// chunk when the input is done) and drains it after each, as a producer that
    /// sends a burst and waits for the pipeline to catch up would: what is in memory
    /// is one chunk in flight, whatever the volume. (Each drain flushes the partial
    /// batches of its chunk, so smaller chunks cost a few more writes per event.)
    /// `sent` sees every line as written (with injected producer duplicates);
    /// `progress` gets the lines written so far. Returns how many lines were written.
    pub async fn feed_in_chunks(
        &mut self,
        mut next_chunk: impl FnMut() -> Result<Vec<Vec<u8>>>,
        mut sent: impl FnMut(&[Vec<u8>]),
        mut progress: impl FnMut(&InProcess, u64),
    ) -> Result<u64> {
        let mut produced = 0u64;
        loop {
            let chunk = next_chunk()?;
            if chunk.is_empty() {
                return Ok(produced);
            }
            let lines = self.produce(&chunk)?;
            produced += lines.len() as u64;
            sent(&lines);
            // What is in flight now lives in the streams: hold no other copy meanwhile.
            drop((chunk, lines));
            self.drain(|p| progress(p, produced)).await?;
        }
    }

    /// Reads what the streams no stage consumes received since the last call (dead
    /// letters into [`InProcess::dead_letters`]) and drops it from them.
    fn collect_unconsumed(&self) -> Result<()> {
        for stream in &self.unconsumed {
            let records = self.streams.records(stream);
            if records.is_empty() {
                continue;
            }
            if *stream == self.stages.dead_letter_stream {
                let mut digest = lock(&self.dead_letters);
                for r in &records {
                    digest
                        .add(r)
                        .context("keeping the demo's dead letters for --json")?;
                }
            }
            // Each shard's newest record read (records come shard by shard, in order).
            let mut newest: BTreeMap<&str, &str> = BTreeMap::new();
            for r in &records {
                newest.insert(&r.shard_id, &r.sequence_number);
            }
            for (shard, seq) in newest {
                self.consumers.checkpoint(
                    &self.streams,
                    stream,
                    PIPELINE_CONSUMER,
                    shard,
                    Checkpoint::Through(seq.to_owned()),
                );
            }
        }
        Ok(())
    }

    /// Records held by the in-process streams right now.
    #[cfg(test)]
    pub fn records_held(&self) -> usize {
        self.streams
            .names()
            .iter()
            .map(|name| self.streams.len(name))
            .sum()
    }
}

/// Passes a mapping's checkpoints to its stream, which drops what all its consumers are
/// done with.
fn trim<Src: ShardSource, D: RecordSink>(
    streams: &MemoryStreams,
    consumers: &Consumers,
    m: &EventSourceMapping<Src, D>,
) {
    for (shard, checkpoint) in m.checkpoints() {
        consumers.checkpoint(streams, m.stream_name(), &m.function, &shard, checkpoint);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Splits records into those Kinesis can take and those it refuses whatever the producer
/// does (over the record limit with their key, see `limits::kinesis::check_record`), each
/// with its index in `records` and why: a `PutRecords` call holding one would fail
/// whole, so a producer sets them apart and reports them.
pub fn sendable(
    records: Vec<OutRecord>,
) -> (Vec<OutRecord>, Vec<(usize, OutRecord, sluice_core::Error)>) {
    let mut fitting = Vec::with_capacity(records.len());
    let mut refused = Vec::new();
    for (i, record) in records.into_iter().enumerate() {
        match kinesis_limits::check_record(&record) {
            Ok(()) => fitting.push(record),
            Err(error) => refused.push((i, record, error)),
        }
    }
    (fitting, refused)
}

/// Producer records for lines (partition key = the line's `key`), with injected
/// producer duplicates; also returns every line as sent, in order.
pub fn producer_records(
    lines: &[Vec<u8>],
    faults: &Option<Arc<Faults>>,
) -> (Vec<OutRecord>, Vec<Vec<u8>>) {
    let mut records = Vec::with_capacity(lines.len());
    let mut sent = Vec::with_capacity(lines.len());
    for line in lines {
        let record = OutRecord {
            partition_key: partition_key_of(&String::from_utf8_lossy(line)),
            data: line.clone(),
        };
        if faults.as_ref().is_some_and(|f| f.producer_duplicate()) {
            records.push(record.clone());
            sent.push(line.clone());
        }
        records.push(record);
        sent.push(line.clone());
    }
    (records, sent)
}

impl Stages {
    /// (p50, p95, p99, max) invocation latency of a stage, in microseconds.
    pub fn latency_percentiles(&self, stage: &str) -> Option<(u64, u64, u64, u64)> {
        let l = self
            .latencies
            .get(stage)?
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Some((
            l.percentile(0.5)?,
            l.percentile(0.95)?,
            l.percentile(0.99)?,
            l.max()?,
        ))
    }

    pub fn stage_stats(&self, stage: &str) -> StageStats {
        self.stats
            .get(stage)
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).clone())
            .unwrap_or_default()
    }

    /// The live summary line of these stages (see [`output::live_summary`]); `units`
    /// are the aggregates table's (the metered one), `backlog(stream)` what waits in a
    /// stage's input stream, if known.
    pub fn live_summary(
        &self,
        produced: Option<u64>,
        units: Option<(f64, f64)>,
        backlog: impl Fn(&str) -> Option<u64>,
    ) -> String {
        let summaries: Vec<StageSummary<'_>> = self
            .stages
            .iter()
            .map(|s| StageSummary {
                stage: s.binary,
                stats: self.stage_stats(s.binary),
                units: units.filter(|_| s.binary == "aggregate"),
                backlog: backlog(&s.input_stream),
                p50_micros: self.latency_percentiles(s.binary).map(|p| p.0),
            })
            .collect();
        output::live_summary(produced, &summaries)
    }
}

#[cfg(test)]
mod tests {
    use sluice_local::scenario::{DEFAULT_START_MS, Noise, Scenario};

    use super::*;

    fn pipeline(wall_ahead_ms: i64) -> InProcess {
        pipeline_with(wall_ahead_ms, None)
    }

    fn pipeline_with(wall_ahead_ms: i64, faults: Option<Arc<Faults>>) -> InProcess {
        let template =
            Template::parse(sluice_local::template::BUNDLED_TEMPLATE).expect("bundled template");
        let now = SystemClock.now_ms();
        InProcess::build_with_clocks(
            &template,
            Scenario::Iot.reference(),
            Scenario::Iot.rules(),
            faults,
            Arc::new(ManualClock::starting_at(now)),
            Arc::new(ManualClock::starting_at(now + wall_ahead_ms)),
        )
        .expect("pipeline")
    }

    fn lines(n: usize) -> Vec<Vec<u8>> {
        Scenario::Iot
            .generate(n, 5, DEFAULT_START_MS, &Noise::default())
            .into_iter()
            .map(String::into_bytes)
            .collect()
    }

    #[test]
    fn invocation_latency_percentiles_are_within_one_percent() {
        let mut l = Latencies::default();
        assert_eq!(l.percentile(0.5), None);
        for micros in 1..=100_000u64 {
            l.record(micros);
        }
        for (q, exact) in [(0.5, 50_000.0), (0.95, 95_000.0), (0.99, 99_000.0)] {
            let got = l.percentile(q).expect("percentile") as f64;
            assert!((got - exact).abs() <= exact * 0.01, "{q}: {got} vs {exact}");
        }
        assert_eq!(l.percentile(0.0), Some(1));
        assert_eq!(l.max(), Some(100_000));
    }

    /// A long demo: the wall clock the stages read has run ten minutes past the
    /// simulated clock of the mappings (which only moves over batching windows). Every
    /// batch must still get its whole timeout; with the deadline taken from the
    /// simulated clock, every invocation stopped before its first record and every
    /// batch was dropped as `retries_exhausted` (issue 7: 0 events counted at 400k).
    #[tokio::test]
    async fn stages_keep_their_timeout_when_the_wall_clock_runs_ahead_of_simulated_time() {
        let mut p = pipeline(600_000);
        p.produce(&lines(300)).expect("produce");
        p.drain(|_| {}).await.expect("drain");
        let ledger = p.stages.ledger.summary();
        assert_eq!(ledger.events_in, 300);
        assert_eq!(ledger.unsettled, 0);
        assert!(ledger.counted > 250, "{ledger:?}");
        assert!(
            ledger
                .dead_letter_reasons
                .iter()
                .all(|(r, _)| *r != sluice_core::input::envelope::Reason::RetriesExhausted),
            "{ledger:?}"
        );
        for (stage, stats) in p.runner.mapping_stats() {
            assert_eq!(stats.dropped_batches, 0, "{stage}");
        }
    }

    /// The batching windows (ms) an event waits out on its way to the aggregates table
    /// when no batch ever fills: ingest's, enrich's and aggregate's, from the template.
    fn windows_to_the_aggregates(template: &Template) -> i64 {
        ["ingest", "enrich", "aggregate"]
            .iter()
            .map(|s| {
                template
                    .function(s)
                    .expect("function")
                    .esm
                    .max_batching_window_ms
            })
            .sum()
    }

    /// Fewer events than any batch holds: no batch fills, so every stage waits out its
    /// whole batching window (on the simulated clock, which only moves over windows),
    /// and every counted event's simulated latency is exactly the sum of the windows of
    /// ingest, enrich and aggregate. Every counted event is a sample; dead letters, late
    /// events and duplicates are not; nothing is left in the tracker.
    #[tokio::test]
    async fn a_small_input_waits_out_each_batching_window_once() {
        let template =
            Template::parse(sluice_local::template::BUNDLED_TEMPLATE).expect("bundled template");
        let want = u64::try_from(windows_to_the_aggregates(&template)).expect("windows");
        assert!(want > 0, "the template batches");
        let mut p = pipeline(0);
        p.produce(&lines(300)).expect("produce");
        p.drain(|_| {}).await.expect("drain");
        let ledger = p.stages.ledger.summary();
        let latency = p
            .stages
            .ledger
            .latency()
            .expect("the demo measures latency");
        assert!(
            ledger.late + ledger.duplicates + ledger.dead_letter > 0,
            "{ledger:?}"
        );
        assert_eq!(latency.unmeasured, 0);
        assert_eq!(latency.simulated_ms.count(), ledger.counted);
        assert_eq!(latency.real_us.count(), ledger.counted);
        assert_eq!(
            (latency.simulated_ms.min(), latency.simulated_ms.max()),
            (Some(want), Some(want))
        );
        assert_eq!(latency.simulated_ms.percentile(0.5), Some(want));
        assert_eq!(latency.simulated_ms.percentile(0.99), Some(want));
        assert_eq!((latency.puts_held, latency.in_doubt_held), (0, 0));
    }

    /// Input in chunks bigger than the batches: a full batch goes at once, a partial
    /// one waits out its window, so an event waits at most one window per stage and
    /// every simulated latency lies between 0 and the sum of the windows; every counted
    /// event is a sample, and each drain forgets its puts.
    #[tokio::test]
    async fn chunked_input_latency_stays_within_the_batching_windows() {
        let template =
            Template::parse(sluice_local::template::BUNDLED_TEMPLATE).expect("bundled template");
        let most = u64::try_from(windows_to_the_aggregates(&template)).expect("windows");
        let mut p = pipeline(0);
        let mut chunks = lines(12_000)
            .chunks(4_000)
            .map(<[Vec<u8>]>::to_vec)
            .collect::<Vec<_>>()
            .into_iter();
        p.feed_in_chunks(|| Ok(chunks.next().unwrap_or_default()), |_| {}, |_, _| {})
            .await
            .expect("feed");
        let ledger = p.stages.ledger.summary();
        let latency = p.stages.ledger.latency().expect("measured");
        assert_eq!(latency.simulated_ms.count(), ledger.counted);
        assert!(ledger.counted > 11_000, "{ledger:?}");
        let (p50, p99) = (
            latency.simulated_ms.percentile(0.5).expect("p50"),
            latency.simulated_ms.percentile(0.99).expect("p99"),
        );
        assert!(
            p50 <= p99 && p99 <= most,
            "p50 {p50}, p99 {p99}, windows {most}"
        );
        assert!(latency.simulated_ms.max() <= Some(most));
        assert_eq!((latency.puts_held, latency.in_doubt_held), (0, 0));
    }

    /// What every stage has checkpointed is gone from its input stream, and the streams
    /// no stage reads (dead letters, alerts) are read by the pipeline itself: after a
    /// drain no stream holds anything, however much of the input was rejected, and the
    /// dead letters are counted, each once, as they went by.
    #[tokio::test]
    async fn no_stream_holds_anything_once_drained_and_dead_letters_are_counted() {
        let mut p = pipeline(0);
        let mut input = lines(500);
        // Most of the input rejected: junk, wrong types, a line too long to send.
        for i in 0..1500 {
            input.push(match i % 3 {
                0 => format!("junk {i}").into_bytes(),
                1 => format!(
                    r#"{{"id":"w{i}","key":"k","type":"t","ts":1767225600000,"value":"x"}}"#
                )
                .into_bytes(),
                _ => format!(r#"{{"id":"m{i}","key":"k","type":"t","value":1}}"#).into_bytes(),
            });
        }
        input.push(vec![b'x'; crate::lines::LINE_HEAD_BYTES]);
        for chunk in input.chunks(667) {
            p.produce(chunk).expect("produce");
            assert!(p.records_held() >= chunk.len());
            p.drain(|_| {}).await.expect("drain");
            assert_eq!(p.records_held(), 0, "nothing is held once drained");
        }
        let ledger = p.stages.ledger.summary();
        assert_eq!(ledger.events_in, 2001);
        assert_eq!(ledger.unsettled, 0);
        let digest = lock(&p.dead_letters);
        let counts = digest.counts();
        assert_eq!(counts.by_reason["not_json"], 500);
        assert_eq!(counts.by_reason["wrong_type"], 500);
        assert_eq!(counts.by_reason["missing_field"], 500);
        assert_eq!(counts.by_reason["record_too_large"], 1);
        // Every rejected event has one dead letter here (none stands for several).
        assert_eq!(counts.total, ledger.dead_letter + ledger.late);
        assert_eq!(digest.sample().len(), crate::digest::SAMPLE_SIZE);
    }

    /// The two faults that strike after a commit, often: the store's reply lost (the
    /// stage reports the commit's events in doubt) and the window-updates write failing
    /// right after the commit (the lost-emit path). The books stay exact, the aggregates
    /// are those of a run without faults, and detect still raises every alert: the
    /// retry emits snapshots of every window it touched, duplicates included.
    #[tokio::test]
    async fn faults_after_a_commit_keep_the_books_the_aggregates_and_the_alerts_exact() {
        use sluice_local::faults::FaultRates;
        let input = lines(2_000);
        let run = |faults: Option<Arc<Faults>>| {
            let input = input.clone();
            async move {
                let mut p = pipeline_with(0, faults);
                p.produce(&input).expect("produce");
                p.drain(|_| {}).await.expect("drain");
                p
            }
        };
        let clean = run(None).await;
        let faults = Arc::new(Faults::new(
            5,
            FaultRates {
                lost_commit_reply: 0.2,
                emit_after_commit: 0.3,
                ..FaultRates::NONE
            },
        ));
        let faulty = run(Some(faults.clone())).await;
        let injected = faults.injected();
        assert!(injected.get("lost_commit_reply") > Some(&0), "{injected:?}");
        assert!(injected.get("emit_after_commit") > Some(&0), "{injected:?}");

        let (want, got) = (
            clean.stages.ledger.summary(),
            faulty.stages.ledger.summary(),
        );
        assert_eq!(got.unsettled, 0, "{got:?}");
        assert_eq!(
            (got.events_in, got.counted, got.late, got.dead_letter),
            (want.events_in, want.counted, want.late, want.dead_letter),
            "in doubt, then a duplicate, is counted: {got:?} vs {want:?}"
        );
        let views = |p: &InProcess| {
            let views: Vec<String> = p
                .store
                .items()
                .iter()
                .map(|i| format!("{:?}", i.view()))
                .collect();
            views
        };
        assert_eq!(views(&faulty), views(&clean));
        // Counted through lost replies and retries, every counted event is one sample,
        // measured to the commit that counted it, and no doubt is left behind.
        let latency = faulty.stages.ledger.latency().expect("measured");
        assert_eq!(latency.simulated_ms.count(), got.counted);
        assert_eq!((latency.unmeasured, latency.in_doubt_held), (0, 0));
        let alert_ids = |p: &InProcess| {
            let mut ids: Vec<String> = p.alerts.alerts().into_iter().map(|a| a.alert_id).collect();
            ids.sort();
            ids
        };
        assert!(!alert_ids(&clean).is_empty(), "the scenario raises alerts");
        assert_eq!(alert_ids(&faulty), alert_ids(&clean));
    }

    /// `rate` and `zscore` rules fire on closed windows only, exactly where their
    /// definitions say (checked here for `rate` against the stored windows, with
    /// "closed" computed from them independently), and the same alerts come out when
    /// commits lose their replies and their window updates.
    #[tokio::test]
    async fn closed_window_alerts_survive_lost_emits_and_match_their_definition() {
        use sluice_core::detect::rules::{RuleKind, parse_rules};
        use sluice_local::faults::FaultRates;
        let rules = parse_rules(
            r#"{"id":"burst","kind":"rate","type":"*","window_seconds":60,"stat":"count","op":">=","threshold":2}
{"id":"odd","kind":"zscore","type":"temperature","window_seconds":60,"stat":"mean","threshold":3}"#,
        )
        .expect("rules");
        let input = lines(20_000); // 1,000 s of iot events: about ten minutes close
        let run = |faults: Option<Arc<Faults>>| {
            let (input, rules) = (input.clone(), rules.clone());
            async move {
                let template = Template::parse(sluice_local::template::BUNDLED_TEMPLATE)
                    .expect("bundled template");
                let now = SystemClock.now_ms();
                let mut p = InProcess::build_with_clocks(
                    &template,
                    Scenario::Iot.reference(),
                    rules,
                    faults,
                    Arc::new(ManualClock::starting_at(now)),
                    Arc::new(ManualClock::starting_at(now)),
                )
                .expect("pipeline");
                p.produce(&input).expect("produce");
                p.drain(|_| {}).await.expect("drain");
                p
            }
        };
        let clean = run(None).await;
        let faults = Arc::new(Faults::new(
            11,
            FaultRates {
                lost_commit_reply: 0.2,
                emit_after_commit: 0.3,
                ..FaultRates::NONE
            },
        ));
        let faulty = run(Some(faults.clone())).await;
        assert!(faults.injected().get("emit_after_commit") > Some(&0));
        let alert_ids = |p: &InProcess, kind: RuleKind| {
            let mut ids: Vec<String> = p
                .alerts
                .alerts()
                .into_iter()
                .filter(|a| a.kind_of_rule == kind)
                .map(|a| a.alert_id)
                .collect();
            ids.sort();
            ids
        };
        for kind in [RuleKind::Rate, RuleKind::Zscore] {
            assert!(!alert_ids(&clean, kind).is_empty(), "{kind:?} alerts fire");
            assert_eq!(
                alert_ids(&faulty, kind),
                alert_ids(&clean, kind),
                "{kind:?}"
            );
        }
        // The rate rule, from the stored minutes: a window is closed once its group's
        // newest minute starts more than the allowed lateness after the window's end.
        let lateness = AggregateConfig::default().allowed_lateness_ms;
        let mut minutes: BTreeMap<(String, String), BTreeMap<i64, u64>> = BTreeMap::new();
        for item in clean.store.items() {
            if item.key.window == sluice_core::state::window::WindowSpec::tumbling(60) {
                minutes
                    .entry((item.key.group.metric.clone(), item.key.group.key.clone()))
                    .or_default()
                    .insert(item.key.start_ms, item.state.count);
            }
        }
        let mut want = Vec::new();
        for ((metric, key), counts) in &minutes {
            let newest = *counts.keys().last().expect("a minute");
            for (start, count) in counts {
                let closed = start + 60_000 + lateness < newest;
                let previous = counts.get(&(start - 60_000)).copied().unwrap_or(0);
                if closed && previous > 0 && *count as f64 / previous as f64 >= 2.0 {
                    want.push(sluice_core::detect::rules::Alert::id_for(
                        "burst", metric, key, 60, *start,
                    ));
                }
            }
        }
        want.sort();
        assert_eq!(alert_ids(&clean, RuleKind::Rate), want);
    }
}
