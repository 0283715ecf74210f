//! Deterministic fault injection for chaos runs (`--chaos SEED`). Every decision comes
//! from one seeded generator, so a seed names a reproducible run; every injected fault
//! is counted so the summary can say what the run survived.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use sluice_core::error::{Error, Result};
use sluice_core::fingerprint::FingerprintSet;
use sluice_core::item::{GroupKey, ItemKey, ItemWrite, WatermarkWrite};
use sluice_core::ports::{AggregateStore, Commit, Loaded, RecordSink};
use sluice_core::record::OutRecord;
use sluice_core::rng::SplitMix64;

/// Probabilities per opportunity (per call, batch or event).
#[derive(Clone, Debug, PartialEq)]
pub struct FaultRates {
    /// A `PutRecords` call is throttled.
    pub sink_throttle: f64,
    /// A store read or write is throttled.
    pub store_throttle: f64,
    /// A conditional write loses to a (simulated) concurrent writer.
    pub conflict: f64,
    /// The store write succeeds but the handler dies right after it.
    pub crash_after_write: f64,
    /// The function fails after doing all its work (no response reaches Lambda).
    pub crash_after_batch: f64,
    /// A batch is delivered again although it succeeded (lost checkpoint).
    pub redeliver: f64,
    /// A stage's output is written twice under new sequence numbers.
    pub re_emit: f64,
    /// The producer sends an event twice.
    pub producer_duplicate: f64,
}

impl FaultRates {
    pub const NONE: FaultRates = FaultRates {
        sink_throttle: 0.0,
        store_throttle: 0.0,
        conflict: 0.0,
        crash_after_write: 0.0,
        crash_after_batch: 0.0,
        redeliver: 0.0,
        re_emit: 0.0,
        producer_duplicate: 0.0,
    };

    /// The chaos mix for exactly-once runs: every fault kind. Per-call rates are small
    /// because a batch makes many calls (one commit per group); together they fail
    /// roughly a third of invocations, far from the retry limits of the template.
    pub fn chaos() -> Self {
        FaultRates {
            sink_throttle: 0.08,
            store_throttle: 0.005,
            conflict: 0.02,
            crash_after_write: 0.004,
            crash_after_batch: 0.1,
            redeliver: 0.1,
            re_emit: 0.1,
            producer_duplicate: 0.02,
        }
    }

    /// At-least-once guards only against the stage's own retries: no producer
    /// duplicates and no upstream re-emits.
    pub fn chaos_at_least_once() -> Self {
        FaultRates {
            re_emit: 0.0,
            producer_duplicate: 0.0,
            ..Self::chaos()
        }
    }
}

pub struct Faults {
    rates: FaultRates,
    rng: Mutex<SplitMix64>,
    injected: Mutex<BTreeMap<&'static str, u64>>,
}

impl Faults {
    pub fn new(seed: u64, rates: FaultRates) -> Self {
        Faults {
            rates,
            rng: Mutex::new(SplitMix64::new(seed)),
            injected: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn rates(&self) -> &FaultRates {
        &self.rates
    }

    fn roll(&self, what: &'static str, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        let hit = self
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .chance(p);
        if hit {
            *self
                .injected
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(what)
                .or_default() += 1;
        }
        hit
    }

    pub fn sink_throttle(&self, stream: &str) -> Result<()> {
        if self.roll("sink_throttle", self.rates.sink_throttle) {
            return Err(Error::Throttled {
                service: "kinesis",
                operation: "PutRecords",
                message: format!("injected throttling on stream {stream:?}"),
            });
        }
        Ok(())
    }

    pub fn store_throttle(&self, operation: &'static str) -> Result<()> {
        if self.roll("store_throttle", self.rates.store_throttle) {
            return Err(Error::Throttled {
                service: "dynamodb",
                operation,
                message: "injected throttling".into(),
            });
        }
        Ok(())
    }

    pub fn conflict(&self) -> bool {
        self.roll("conflict", self.rates.conflict)
    }

    pub fn crash_after_write(&self) -> Result<()> {
        if self.roll("crash_after_write", self.rates.crash_after_write) {
            return Err(Error::Injected {
                what: "handler crashed after a committed write".into(),
                after_commit: true,
            });
        }
        Ok(())
    }

    pub fn crash_after_batch(&self) -> bool {
        self.roll("crash_after_batch", self.rates.crash_after_batch)
    }

    pub fn redeliver(&self) -> bool {
        self.roll("redeliver", self.rates.redeliver)
    }

    pub fn re_emit(&self) -> bool {
        self.roll("re_emit", self.rates.re_emit)
    }

    pub fn producer_duplicate(&self) -> bool {
        self.roll("producer_duplicate", self.rates.producer_duplicate)
    }

    /// Counts of injected faults by kind.
    pub fn injected(&self) -> BTreeMap<&'static str, u64> {
        self.injected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Counts a fault decided elsewhere (e.g. a bisection the mapping performed).
    pub fn note(&self, what: &'static str) {
        *self
            .injected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(what)
            .or_default() += 1;
    }
}

/// A record sink with injected faults: throttling, and re-emits (the same records
/// written twice under new sequence numbers, as a retried upstream stage does).
pub struct FaultySink<S> {
    inner: S,
    faults: Option<Arc<Faults>>,
}

impl<S> FaultySink<S> {
    pub fn new(inner: S, faults: Option<Arc<Faults>>) -> Self {
        FaultySink { inner, faults }
    }
}

impl<S: RecordSink> RecordSink for FaultySink<S> {
    fn stream_name(&self) -> &str {
        self.inner.stream_name()
    }

    async fn put_records(&self, records: Vec<OutRecord>) -> Result<()> {
        if let (Some(f), false) = (&self.faults, records.is_empty()) {
            f.sink_throttle(self.inner.stream_name())?;
            if f.re_emit() {
                self.inner.put_records(records.clone()).await?;
            }
        }
        self.inner.put_records(records).await
    }
}

/// An aggregate store with injected faults: throttling, lost version races, and a
/// handler that dies right after its write was committed.
pub struct FaultyStore<S> {
    inner: S,
    faults: Option<Arc<Faults>>,
}

impl<S> FaultyStore<S> {
    pub fn new(inner: S, faults: Option<Arc<Faults>>) -> Self {
        FaultyStore { inner, faults }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn throttle(&self, operation: &'static str) -> Result<()> {
        self.faults
            .as_ref()
            .map_or(Ok(()), |f| f.store_throttle(operation))
    }
}

impl<S: AggregateStore> AggregateStore for FaultyStore<S> {
    async fn load(&self, keys: &[ItemKey], groups: &[GroupKey]) -> Result<Loaded> {
        self.throttle("BatchGetItem")?;
        self.inner.load(keys, groups).await
    }

    async fn load_page(&self, anchor: &ItemKey, page: u32) -> Result<Option<FingerprintSet>> {
        self.throttle("GetItem")?;
        self.inner.load_page(anchor, page).await
    }

    async fn commit(
        &self,
        writes: &[ItemWrite],
        watermark: Option<&WatermarkWrite>,
    ) -> Result<Commit> {
        self.throttle("TransactWriteItems")?;
        if self.faults.as_ref().is_some_and(|f| f.conflict()) {
            return Ok(Commit::Conflict);
        }
        let done = self.inner.commit(writes, watermark).await?;
        if let (Commit::Done, Some(f)) = (done, &self.faults) {
            f.crash_after_write()?;
        }
        Ok(done)
    }
}
