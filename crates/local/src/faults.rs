//! Deterministic fault injection for chaos runs (`--chaos SEED`). Every decision comes
//! from one seeded generator, so a seed names a reproducible run; every injected fault
//! is counted so the summary can say what the run survived.
//!
//! Faults live only here, in wrappers around the ports (`FaultySink`, `FaultyStore`),
//! and every one of them is an error a real service can return: the stages handle them
//! as they handle AWS's, and nothing in `sluice-core` knows that a fault was injected.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use sluice_core::error::{Error, Result};
use sluice_core::input::record::OutRecord;
use sluice_core::ports::{AggregateStore, Commit, Loaded, RecordSink, WindowHistory};
use sluice_core::rng::SplitMix64;
use sluice_core::state::fingerprint::FingerprintSet;
use sluice_core::state::item::{
    ClosingRange, GroupKey, ItemKey, ItemWrite, WatermarkWrite, WindowUpdate,
};

/// Probabilities per opportunity (per call, batch or event).
#[derive(Clone, Debug, PartialEq)]
pub struct FaultRates {
    /// A `PutRecords` call is throttled.
    pub sink_throttle: f64,
    /// A store read or write is throttled.
    pub store_throttle: f64,
    /// A conditional write loses to a (simulated) concurrent writer.
    pub conflict: f64,
    /// The store commits, but its reply is lost (the connection resets after the
    /// request went out): the stage cannot tell whether it committed.
    pub lost_commit_reply: f64,
    /// The aggregate stage's window-updates write fails right after its store commit
    /// (the lost-emit path: the retry must still emit the updates).
    pub emit_after_commit: f64,
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
        lost_commit_reply: 0.0,
        emit_after_commit: 0.0,
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
            lost_commit_reply: 0.004,
            emit_after_commit: 0.05,
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

    /// After a commit went through: its reply is lost, as when the connection resets
    /// after the request was sent (retryable; the outcome is unknown to the caller).
    pub fn lost_commit_reply(&self) -> Result<()> {
        if self.roll("lost_commit_reply", self.rates.lost_commit_reply) {
            return Err(Error::Remote {
                service: "dynamodb",
                operation: "TransactWriteItems",
                message: "connection reset after the request was sent (injected)".into(),
                retryable: true,
                source: None,
            });
        }
        Ok(())
    }

    /// The window-updates write after a commit fails (an unavailable stream).
    pub fn emit_after_commit(&self, stream: &str) -> Result<()> {
        if self.roll("emit_after_commit", self.rates.emit_after_commit) {
            return Err(Error::Remote {
                service: "kinesis",
                operation: "PutRecords",
                message: format!(
                    "stream {stream:?} unavailable right after the aggregate commit (injected)"
                ),
                retryable: true,
                source: None,
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
/// written twice under new sequence numbers, as a retried upstream stage does); on the
/// aggregate stage's output also a failure right after its commit
/// ([`FaultySink::after_commit`]).
pub struct FaultySink<S> {
    inner: S,
    faults: Option<Arc<Faults>>,
    after_commit: bool,
}

impl<S> FaultySink<S> {
    pub fn new(inner: S, faults: Option<Arc<Faults>>) -> Self {
        FaultySink {
            inner,
            faults,
            after_commit: false,
        }
    }

    /// This sink is written right after a store commit (the aggregate stage's window
    /// updates): it also fails with the `emit_after_commit` fault.
    pub fn after_commit(mut self) -> Self {
        self.after_commit = true;
        self
    }
}

impl<S: RecordSink> RecordSink for FaultySink<S> {
    fn stream_name(&self) -> &str {
        self.inner.stream_name()
    }

    async fn put_records(&self, records: Vec<OutRecord>) -> Result<()> {
        if let (Some(f), false) = (&self.faults, records.is_empty()) {
            if self.after_commit {
                f.emit_after_commit(self.inner.stream_name())?;
            }
            f.sink_throttle(self.inner.stream_name())?;
            if f.re_emit() {
                self.inner.put_records(records.clone()).await?;
            }
        }
        self.inner.put_records(records).await
    }
}

/// An aggregate store with injected faults: throttling, lost version races, and a
/// commit whose reply is lost after it went through. As detect's window history it
/// throttles its reads (the `Query` detect makes per group and window size).
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
            f.lost_commit_reply()?;
        }
        Ok(done)
    }
}

impl<S: WindowHistory> WindowHistory for FaultyStore<S> {
    async fn closed_windows(
        &self,
        group: &GroupKey,
        window_seconds: i64,
        closing: ClosingRange,
        lookback: u32,
    ) -> Result<Vec<WindowUpdate>> {
        self.throttle("Query")?;
        self.inner
            .closed_windows(group, window_seconds, closing, lookback)
            .await
    }
}

#[cfg(test)]
mod tests {
    use sluice_core::ports::SystemClock;

    use super::*;
    use crate::streams::MemoryStreams;

    fn only(rates: FaultRates) -> Arc<Faults> {
        Arc::new(Faults::new(7, rates))
    }

    #[tokio::test]
    async fn history_reads_are_throttled_like_other_store_calls() {
        let group = GroupKey {
            key: "sensor-1".into(),
            metric: "temp".into(),
        };
        let closing = ClosingRange {
            from_ms: 0,
            to_ms: 600_000,
        };
        let calm = FaultyStore::new(crate::store::MemoryAggregateStore::new(), None);
        assert_eq!(
            calm.closed_windows(&group, 60, closing, 5)
                .await
                .expect("no faults, no failure"),
            Vec::new()
        );
        let throttled = FaultyStore::new(
            crate::store::MemoryAggregateStore::new(),
            Some(only(FaultRates {
                store_throttle: 1.0,
                ..FaultRates::NONE
            })),
        );
        let err = throttled
            .closed_windows(&group, 60, closing, 5)
            .await
            .expect_err("throttled");
        assert!(err.is_retryable(), "{err}");
        assert!(err.to_string().contains("Query"), "{err}");
    }

    #[tokio::test]
    async fn the_emit_after_commit_fault_strikes_only_the_sink_written_after_a_commit() {
        let streams = MemoryStreams::new(Arc::new(SystemClock));
        streams.create("updates", 1);
        let faults = only(FaultRates {
            emit_after_commit: 1.0,
            ..FaultRates::NONE
        });
        let record = || {
            vec![OutRecord {
                partition_key: "k".into(),
                data: b"{}".to_vec(),
            }]
        };
        let plain = FaultySink::new(streams.sink("updates"), Some(faults.clone()));
        plain
            .put_records(record())
            .await
            .expect("not after a commit");
        let after = FaultySink::new(streams.sink("updates"), Some(faults.clone())).after_commit();
        let error = after.put_records(record()).await.expect_err("injected");
        assert!(error.is_retryable(), "{error}");
        assert_eq!(streams.records("updates").len(), 1, "nothing written");
        assert_eq!(faults.injected().get("emit_after_commit"), Some(&1));
    }

    #[tokio::test]
    async fn a_lost_commit_reply_is_a_retryable_remote_error_after_the_commit() {
        use sluice_core::state::item::{AggregateItem, GroupKey, ItemKey};
        use sluice_core::state::window::WindowSpec;

        let inner = Arc::new(crate::store::MemoryAggregateStore::new());
        let faults = only(FaultRates {
            lost_commit_reply: 1.0,
            ..FaultRates::NONE
        });
        let store = FaultyStore::new(inner.clone(), Some(faults.clone()));
        let key = ItemKey {
            group: GroupKey {
                key: "k".into(),
                metric: "t".into(),
            },
            window: WindowSpec::tumbling(60),
            start_ms: 0,
        };
        let mut item = AggregateItem::new(key);
        item.version = 1;
        let write = ItemWrite {
            item,
            expected_version: 0,
            sealed_page: Vec::new(),
        };
        let error = store
            .commit(std::slice::from_ref(&write), None)
            .await
            .expect_err("reply lost");
        assert!(
            matches!(
                error,
                Error::Remote {
                    retryable: true,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(inner.items().len(), 1, "the commit went through");
        assert_eq!(faults.injected().get("lost_commit_reply"), Some(&1));
    }
}
