//! Aggregate: assign event-time windows, combine the batch in memory, and merge into
//! the aggregates table with one consistent read and conditional transactions per
//! group (see `state/idempotency.rs` for why that counts every event exactly once).
//!
//! Per batch, in named steps (step 1 in `decode.rs`, 2–3 in `commit.rs`, 4–5 in
//! `settle.rs`; `process` below runs them in order):
//! 1. `decode`: events and rejected lines, grouped by (key, type).
//! 2. `load_state`: one consistent read of every touched item and group watermark
//!    (group by group when that read fails for good, to find the group at fault).
//! 3. per group, `commit_group`: judge lateness, then rounds of `plan_round` and
//!    `commit_round` until every event has a fate; on a conflict, re-read and re-plan.
//! 4. `settle`: which records are done, their dead letters and their events' fates.
//! 5. `emit`: a snapshot of every window the batch touched, then the dead letters; only
//!    then are those fates reported in the outcome's accounting.
//!
//! Accounting: events a transaction counted are reported as soon as it commits (the
//! write is durable whatever happens next, even if the emit fails). A commit that fails
//! in a way that leaves its outcome unknown (a timeout or a reset after the request
//! went out) reports its events as *in doubt*: the retry finds them counted (a
//! duplicate) if that commit went through, and the local ledger then books them as
//! counted, so its books stay exact without any help from fault injection.
//!
//! Failure rules: a retryable failure (throttling, timeouts, the deadline, conflicts
//! that outlast `max_commit_attempts`) stops the batch at the first record with an
//! unsettled event, for Lambda to deliver again. A failure no retry can fix that is
//! confined to one group (a corrupt stored item, a missing sealed page, access denied,
//! a service limit) dead-letters that group's unsettled events as `unprocessable`, and
//! the batch goes on.
//!
//! Updates are snapshots: after a commit whose window updates were lost, the retry finds
//! every event already counted and still emits the current state of each window it
//! touched, so the detect stage sees it (its alerts de-duplicate by rule, group and
//! window).

mod commit;
mod decode;
mod settle;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use crate::config::AggregateConfig;
use crate::error::Error;
use crate::input::record::StreamRecord;
use crate::ports::{AggregateStore, Clock, Loaded, RecordSink};
use crate::sql::Value;
use crate::stage::outcome::{BatchOutcome, Fate, StageStats};
use crate::stage::sql::SqlPipeline;
use crate::stage::{Rejected, Stage, deadline_passed, fail_whole_batch, failure_at};
use crate::state::fingerprint::FingerprintSet;
use crate::state::idempotency::{Candidate, PlanSettings};
use crate::state::item::{AggregateItem, ClosingRange, GroupKey, GroupWatermark, ItemKey};
use commit::{GroupEnd, closing_of};
use settle::settle;

pub struct Aggregate<S, O, D, C> {
    pub store: S,
    pub updates: O,
    pub dead_letters: D,
    pub clock: C,
    pub config: AggregateConfig,
    /// Sealed fingerprint pages never change once written, so a container keeps them.
    pages: Mutex<HashMap<(ItemKey, u32), Arc<FingerprintSet>>>,
    /// A SQL pipeline: its stored views' lines are what the stage folds.
    pub(super) sql: Option<Arc<SqlPipeline>>,
}

impl<S, O, D, C> Aggregate<S, O, D, C> {
    /// The one way to build the stage (the sealed-page cache starts empty).
    pub fn new(store: S, updates: O, dead_letters: D, clock: C, config: AggregateConfig) -> Self {
        Aggregate {
            store,
            updates,
            dead_letters,
            clock,
            config,
            pages: Mutex::new(HashMap::new()),
            sql: None,
        }
    }

    /// The stage under a SQL pipeline: it folds the view lines enrich writes.
    pub fn with_sql(mut self, pipeline: Arc<SqlPipeline>) -> Self {
        self.sql = Some(pipeline);
        self
    }

    /// The planner's settings for a group: its view's under a SQL pipeline, else the
    /// deployment's.
    pub(super) fn plan_settings(&self, group: &GroupKey) -> PlanSettings<'_> {
        self.sql
            .as_ref()
            .and_then(|sql| sql.plan_settings(group, &self.config))
            .unwrap_or_else(|| self.config.plan_settings())
    }
}

/// One decoded event of the batch.
struct Pending {
    record: usize,
    /// Its line in the record (a dead letter reads the event's id from it again).
    line: usize,
    origin: String,
    identity: u64,
    /// Index into [`Batch::groups`].
    group: usize,
    candidate: Candidate,
}

/// The decoded batch: its events, its rejected lines, and its groups in order of first
/// appearance with the indexes (into `pending`) of their events.
struct Batch {
    pending: Vec<Pending>,
    rejected: Vec<Rejected>,
    groups: Vec<(GroupKey, Vec<usize>)>,
    /// Under a SQL pipeline, every event's aggregate inputs, one after the other (each
    /// candidate holds its range): empty for the envelope.
    inputs: Vec<Option<Value>>,
}

/// What the batch knows of the table: read once, then kept current by its own commits
/// and by the re-reads after conflicts.
#[derive(Default)]
struct State {
    items: HashMap<ItemKey, AggregateItem>,
    watermarks: HashMap<GroupKey, GroupWatermark>,
    /// Groups whose read failed for a reason no retry can fix.
    unreadable: HashMap<GroupKey, Error>,
}

impl State {
    /// Replaces what is known of `keys` and `groups` by a fresh read.
    fn refresh(&mut self, keys: &[ItemKey], groups: &[GroupKey], loaded: Loaded) {
        for k in keys {
            self.items.remove(k);
        }
        for g in groups {
            self.watermarks.remove(g);
        }
        self.items
            .extend(loaded.items.into_iter().map(|i| (i.key.clone(), i)));
        self.watermarks
            .extend(loaded.watermarks.into_iter().map(|w| (w.group.clone(), w)));
    }
}

/// The fate of every event so far, and what to emit.
struct Progress {
    fates: Vec<Option<Fate>>,
    /// Transactions, items written and conflicts so far.
    stats: StageStats,
    /// Why each dead-lettered group could not be processed.
    unprocessable: HashMap<GroupKey, String>,
    /// Every window to emit a snapshot of: all windows of finished groups' events, and
    /// everything written.
    touched: BTreeSet<ItemKey>,
    /// Events counted by committed transactions, reported whatever happens next.
    /// (Indexes into the batch's events: their origins are moved out once, at the end.)
    counted: Vec<(usize, Fate)>,
    /// Events of a commit whose outcome is unknown.
    in_doubt: Vec<usize>,
    /// Groups with a transaction committed by this batch.
    committed: BTreeSet<GroupKey>,
    /// What each group's window updates tell detect about closed windows.
    closing: HashMap<GroupKey, ClosingRange>,
}

impl Progress {
    fn new(events: usize) -> Self {
        Progress {
            fates: vec![None; events],
            stats: StageStats::default(),
            unprocessable: HashMap::new(),
            touched: BTreeSet::new(),
            counted: Vec::new(),
            in_doubt: Vec::new(),
            committed: BTreeSet::new(),
            closing: HashMap::new(),
        }
    }
}

const STAGE: &str = "aggregate";

impl<S, O, D, C> Stage for Aggregate<S, O, D, C>
where
    S: AggregateStore,
    O: RecordSink,
    D: RecordSink,
    C: Clock,
{
    fn name(&self) -> &'static str {
        STAGE
    }

    async fn process(&self, records: &[StreamRecord], deadline_ms: Option<i64>) -> BatchOutcome {
        let mut outcome = BatchOutcome {
            records: records.len(),
            ..Default::default()
        };
        let margin = self.config.common.deadline_margin_ms;
        if let Some(error) = deadline_passed(&self.clock, deadline_ms, margin) {
            outcome.failure = Some(failure_at(records, 0, error));
            return outcome;
        }
        let mut batch = self.decode(records);
        let mut state = match self.load_state(&batch).await {
            Ok(state) => state,
            Err(error) => {
                fail_whole_batch(&mut outcome, records, error);
                return outcome;
            }
        };
        let mut progress = Progress::new(batch.pending.len());
        let mut stop = None;
        for group in &batch.groups {
            let before = state.watermarks.get(&group.0).cloned();
            let end = self
                .commit_group(&batch, group, &mut state, &mut progress, deadline_ms)
                .await;
            let closing = closing_of(
                &batch,
                group,
                before.as_ref(),
                state.watermarks.get(&group.0),
                progress.committed.contains(&group.0),
                self.plan_settings(&group.0).allowed_lateness_ms,
            );
            if let Some(range) = closing {
                progress.closing.insert(group.0.clone(), range);
            }
            match end {
                GroupEnd::Done => {}
                GroupEnd::Unprocessable(error) => progress.dead_letter_group(group, &error),
                GroupEnd::Stop(error) => {
                    stop = Some(error);
                    break;
                }
            }
        }
        outcome.stats = progress.stats.clone();
        let settled = settle(
            records,
            &batch,
            &progress,
            stop.is_some(),
            &|group| self.plan_settings(group).allowed_lateness_ms,
            &mut outcome.stats,
        );
        let emitted = self.emit(&state, &progress, settled.dead).await;
        // The commits stand whatever the emit did: their events are counted.
        // In doubt first: an event in doubt may also be dead-lettered (cloned), while
        // a counted one is counted once, so its origin can be moved out.
        outcome.accounting.in_doubt = progress
            .in_doubt
            .iter()
            .map(|&i| batch.pending[i].origin.clone())
            .collect();
        outcome.accounting.settled = progress
            .counted
            .iter()
            .map(|&(i, fate)| (std::mem::take(&mut batch.pending[i].origin), fate))
            .collect();
        match emitted {
            // What it passes on: window updates.
            Ok(updates) => outcome.stats.passed_on = updates,
            Err(error) => {
                // The retry finds these events counted and emits their snapshots.
                fail_whole_batch(&mut outcome, records, error);
                outcome.stats.transactions = progress.stats.transactions;
                outcome.stats.items_written = progress.stats.items_written;
                outcome.stats.conflicts = progress.stats.conflicts;
                return outcome;
            }
        }
        outcome.accounting.settled.extend(settled.fates);
        if let Some(error) = stop {
            if settled.done < records.len() {
                outcome.failure = Some(failure_at(records, settled.done, error));
            }
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    //! Deterministic tests of each failure path. The test ports (a store that conflicts
    //! N times, fails after committing, or fails for good for one group; a clock moved by
    //! commits) wrap a minimal in-memory store that enforces DynamoDB's transaction limits.
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use super::*;
    use crate::error::Result;
    use crate::input::dead_letter::DeadLetter;
    use crate::input::envelope::Reason;
    use crate::ports::Commit;
    use crate::stage::testing::{FixedClock, VecSink, block_on, record};
    use crate::state::idempotency::{MAX_TRANSACTION_BYTES, MAX_TRANSACTION_ITEMS};
    use crate::state::item::{
        ItemWrite, UpdateLine, WatermarkWrite, WindowUpdate, page_stored_size,
    };
    use crate::state::window::WindowSet;

    const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    const MINUTE: i64 = 60_000;

    /// DynamoDB's own limit per transaction (the planner aims lower).
    const DYNAMODB_TRANSACTION_BYTES: usize = 4_000_000;

    #[derive(Default)]
    struct Tables {
        items: HashMap<ItemKey, AggregateItem>,
        pages: HashMap<(ItemKey, u32), FingerprintSet>,
        watermarks: HashMap<GroupKey, GroupWatermark>,
    }

    /// The aggregates table in memory, with DynamoDB's transaction limits: at most 100
    /// actions and 4 MB, no item twice.
    #[derive(Default)]
    struct MemStore {
        tables: Mutex<Tables>,
        /// (actions, bytes) of every accepted commit.
        commits: Mutex<Vec<(usize, usize)>>,
    }

    impl MemStore {
        fn item(&self, key: &ItemKey) -> Option<AggregateItem> {
            self.tables.lock().expect("lock").items.get(key).cloned()
        }

        fn limits(writes: &[ItemWrite], watermark: Option<&WatermarkWrite>) -> Result<usize> {
            let mut keys = BTreeSet::new();
            let (mut actions, mut bytes) = (0, 0);
            for w in writes {
                assert!(
                    keys.insert(w.item.key.sk()),
                    "item twice in one transaction"
                );
                actions += 1 + w.sealed_page.len();
                bytes += w.item.stored_size();
                for (n, p) in &w.sealed_page {
                    assert!(keys.insert(w.item.key.page_sk(*n)), "page twice");
                    bytes += page_stored_size(&w.item.key, p);
                }
            }
            if let Some(w) = watermark {
                actions += 1;
                bytes += w.watermark.stored_size();
            }
            let limit = |limit, max, actual| Error::LimitExceeded {
                service: "dynamodb",
                operation: "TransactWriteItems",
                limit,
                max,
                actual,
            };
            if actions > MAX_TRANSACTION_ITEMS {
                return Err(limit("actions", MAX_TRANSACTION_ITEMS, actions));
            }
            if bytes > DYNAMODB_TRANSACTION_BYTES {
                return Err(limit("bytes", DYNAMODB_TRANSACTION_BYTES, bytes));
            }
            Ok(bytes)
        }
    }

    impl AggregateStore for MemStore {
        async fn load(&self, keys: &[ItemKey], groups: &[GroupKey]) -> Result<Loaded> {
            let t = self.tables.lock().expect("lock");
            Ok(Loaded {
                items: keys
                    .iter()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .filter_map(|k| t.items.get(k).cloned())
                    .collect(),
                watermarks: groups
                    .iter()
                    .filter_map(|g| t.watermarks.get(g).cloned())
                    .collect(),
            })
        }

        async fn load_page(&self, anchor: &ItemKey, page: u32) -> Result<Option<FingerprintSet>> {
            let t = self.tables.lock().expect("lock");
            Ok(t.pages.get(&(anchor.clone(), page)).cloned())
        }

        async fn commit(
            &self,
            writes: &[ItemWrite],
            watermark: Option<&WatermarkWrite>,
        ) -> Result<Commit> {
            let bytes = Self::limits(writes, watermark)?;
            let mut t = self.tables.lock().expect("lock");
            let holds = writes.iter().all(|w| {
                t.items.get(&w.item.key).map_or(0, |i| i.version) == w.expected_version
                    && w.sealed_page
                        .iter()
                        .all(|(n, _)| !t.pages.contains_key(&(w.item.key.clone(), *n)))
            }) && watermark.is_none_or(|w| {
                t.watermarks
                    .get(&w.watermark.group)
                    .map_or(0, |c| c.version)
                    == w.expected_version
            });
            if !holds {
                return Ok(Commit::Conflict);
            }
            let mut actions = usize::from(watermark.is_some());
            for w in writes {
                actions += 1 + w.sealed_page.len();
                for (n, p) in &w.sealed_page {
                    t.pages.insert((w.item.key.clone(), *n), p.clone());
                }
                t.items.insert(w.item.key.clone(), w.item.clone());
            }
            if let Some(w) = watermark {
                t.watermarks
                    .insert(w.watermark.group.clone(), w.watermark.clone());
            }
            self.commits.lock().expect("lock").push((actions, bytes));
            Ok(Commit::Done)
        }
    }

    /// Delegates to `inner`, with hooks the wrappers below fill in.
    macro_rules! delegate_reads {
        () => {
            async fn load(&self, keys: &[ItemKey], groups: &[GroupKey]) -> Result<Loaded> {
                self.inner.load(keys, groups).await
            }
            async fn load_page(
                &self,
                anchor: &ItemKey,
                page: u32,
            ) -> Result<Option<FingerprintSet>> {
                self.inner.load_page(anchor, page).await
            }
        };
    }

    /// Loses the version race `left` times (as if another writer got there first).
    struct Conflicting {
        inner: Arc<MemStore>,
        left: AtomicU32,
    }

    impl AggregateStore for Conflicting {
        delegate_reads!();
        async fn commit(
            &self,
            writes: &[ItemWrite],
            watermark: Option<&WatermarkWrite>,
        ) -> Result<Commit> {
            if self
                .left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Ok(Commit::Conflict);
            }
            self.inner.commit(writes, watermark).await
        }
    }

    /// Commits, then reports a timeout once (the reply was lost).
    struct FailsAfterCommit {
        inner: Arc<MemStore>,
        armed: AtomicBool,
    }

    impl AggregateStore for FailsAfterCommit {
        delegate_reads!();
        async fn commit(
            &self,
            writes: &[ItemWrite],
            watermark: Option<&WatermarkWrite>,
        ) -> Result<Commit> {
            let done = self.inner.commit(writes, watermark).await?;
            if self.armed.swap(false, Ordering::SeqCst) {
                return Err(timeout());
            }
            Ok(done)
        }
    }

    fn timeout() -> Error {
        Error::Remote {
            service: "dynamodb",
            operation: "TransactWriteItems",
            message: "timed out waiting for the reply".into(),
            retryable: true,
            source: None,
        }
    }

    /// Where [`BrokenGroup`] fails.
    #[derive(Clone, Copy, PartialEq)]
    enum Fails {
        Read,
        Commit,
    }

    /// Fails for good on every read or commit that touches one key.
    struct BrokenGroup {
        inner: Arc<MemStore>,
        key: &'static str,
        fails: Fails,
        error: fn(&str) -> Error,
    }

    impl AggregateStore for BrokenGroup {
        async fn load(&self, keys: &[ItemKey], groups: &[GroupKey]) -> Result<Loaded> {
            if self.fails == Fails::Read && groups.iter().any(|g| g.key == self.key) {
                return Err((self.error)(self.key));
            }
            self.inner.load(keys, groups).await
        }
        async fn load_page(&self, anchor: &ItemKey, page: u32) -> Result<Option<FingerprintSet>> {
            self.inner.load_page(anchor, page).await
        }
        async fn commit(
            &self,
            writes: &[ItemWrite],
            watermark: Option<&WatermarkWrite>,
        ) -> Result<Commit> {
            let touches = writes.iter().any(|w| w.item.key.group.key == self.key)
                || watermark.is_some_and(|w| w.watermark.group.key == self.key);
            if self.fails == Fails::Commit && touches {
                return Err((self.error)(self.key));
            }
            self.inner.commit(writes, watermark).await
        }
    }

    /// Moves the clock forward by `step_ms` on every commit.
    struct SlowCommits {
        inner: Arc<MemStore>,
        clock: Arc<FixedClock>,
        step_ms: i64,
    }

    impl AggregateStore for SlowCommits {
        delegate_reads!();
        async fn commit(
            &self,
            writes: &[ItemWrite],
            watermark: Option<&WatermarkWrite>,
        ) -> Result<Commit> {
            self.clock.0.fetch_add(self.step_ms, Ordering::SeqCst);
            self.inner.commit(writes, watermark).await
        }
    }

    /// Records every fate a stage reports, so a test can check each event got exactly
    /// one. Like the local runner's ledger, an event reported in doubt that later
    /// settles as a duplicate (or late) was counted by the commit whose reply was lost.
    #[derive(Default)]
    struct StrictLedger {
        fates: Mutex<BTreeMap<String, Vec<Fate>>>,
        in_doubt: Mutex<BTreeSet<String>>,
    }

    impl StrictLedger {
        fn first(&self) -> BTreeMap<String, Fate> {
            let fates = self.fates.lock().expect("lock");
            fates.iter().map(|(o, f)| (o.clone(), f[0])).collect()
        }

        /// Every origin was told one fate: the same again on a redelivery, except that
        /// a counted event is a duplicate when delivered again.
        fn assert_one_fate_each(&self) {
            for (origin, fates) in self.fates.lock().expect("lock").iter() {
                let first = std::mem::discriminant(&fates[0]);
                let again = |f: &Fate| {
                    std::mem::discriminant(f) == first
                        || matches!((fates[0], f), (Fate::Counted(_), Fate::Duplicate(_)))
                };
                assert!(
                    fates[1..].iter().all(again),
                    "{origin} was given different fates: {fates:?}"
                );
            }
        }
    }

    impl StrictLedger {
        fn book(&self, accounting: &crate::stage::outcome::Accounting) {
            let mut doubt = self.in_doubt.lock().expect("lock");
            doubt.extend(accounting.in_doubt.iter().cloned());
            let mut fates = self.fates.lock().expect("lock");
            for (origin, fate) in &accounting.settled {
                let fate = match fate {
                    Fate::Duplicate(id) | Fate::Counted(id) if doubt.remove(origin) => {
                        Fate::Counted(*id)
                    }
                    Fate::Late if doubt.remove(origin) => Fate::Counted(0),
                    other => {
                        doubt.remove(origin);
                        *other
                    }
                };
                fates.entry(origin.clone()).or_default().push(fate);
            }
        }
    }

    /// The stage with its outcomes booked in a [`StrictLedger`].
    struct TestStage<S: AggregateStore> {
        stage: Aggregate<S, VecSink, VecSink, Arc<FixedClock>>,
        ledger: StrictLedger,
    }

    impl<S: AggregateStore> TestStage<S> {
        async fn process(&self, records: &[StreamRecord], deadline: Option<i64>) -> BatchOutcome {
            let outcome = self.stage.process(records, deadline).await;
            self.ledger.book(&outcome.accounting);
            outcome
        }
    }

    impl<S: AggregateStore> std::ops::Deref for TestStage<S> {
        type Target = Aggregate<S, VecSink, VecSink, Arc<FixedClock>>;
        fn deref(&self) -> &Self::Target {
            &self.stage
        }
    }

    fn stage<S: AggregateStore>(store: S, config: AggregateConfig) -> TestStage<S> {
        stage_at(store, config, Arc::new(FixedClock::at(T0)))
    }

    fn stage_at<S: AggregateStore>(
        store: S,
        config: AggregateConfig,
        clock: Arc<FixedClock>,
    ) -> TestStage<S> {
        TestStage {
            stage: Aggregate::new(
                store,
                VecSink::named("updates"),
                VecSink::named("dlq"),
                clock,
                config,
            ),
            ledger: StrictLedger::default(),
        }
    }

    /// One record per event: `(key, id, ts, value)`; origin `o-<id>`.
    fn records(events: &[(&str, &str, i64, f64)]) -> Vec<StreamRecord> {
        events
            .iter()
            .enumerate()
            .map(|(i, (key, id, ts, value))| {
                let line = serde_json::json!({
                    "id": id, "key": key, "type": "t", "ts": ts, "value": value,
                    "origin": format!("o-{id}"),
                });
                record("s0", i as u64 + 1, key, line.to_string().as_bytes())
            })
            .collect()
    }

    fn key(k: &str, window: WindowSpec, start_ms: i64) -> ItemKey {
        ItemKey {
            group: GroupKey {
                key: k.into(),
                metric: "t".into(),
            },
            window,
            start_ms,
        }
    }

    use crate::state::window::WindowSpec;

    fn updates(sink: &VecSink) -> Vec<WindowUpdate> {
        sink.lines()
            .into_iter()
            .map(|v| serde_json::from_value(v).expect("a window update"))
            .collect()
    }

    fn dead_letters(sink: &VecSink) -> Vec<DeadLetter> {
        sink.lines()
            .into_iter()
            .map(|v| serde_json::from_value(v).expect("a dead letter"))
            .collect()
    }

    #[test]
    fn conflict_then_retry_succeeds() {
        let mem = Arc::new(MemStore::default());
        let store = Conflicting {
            inner: mem.clone(),
            left: AtomicU32::new(2),
        };
        let s = stage(store, AggregateConfig::default());
        let batch = records(&[("a", "1", T0, 1.0), ("a", "2", T0 + 1, 2.0)]);
        let out = block_on(s.process(&batch, None));
        assert!(out.is_complete(), "{:?}", out.failure);
        assert_eq!(out.stats.conflicts, 2);
        assert_eq!(out.stats.counted, 2);
        let minute = mem
            .item(&key("a", WindowSpec::tumbling(60), T0))
            .expect("written");
        assert_eq!((minute.state.count, minute.state.total()), (2, 3.0));
        assert_eq!(s.ledger.first().len(), 2);
        s.ledger.assert_one_fate_each();
    }

    #[test]
    fn conflicts_past_the_attempt_limit_stop_the_batch_for_a_retry() {
        let mem = Arc::new(MemStore::default());
        let config = AggregateConfig::default();
        let attempts = config.max_commit_attempts;
        let store = Conflicting {
            inner: mem.clone(),
            left: AtomicU32::new(u32::MAX),
        };
        let s = stage(store, config);
        let batch = records(&[("a", "1", T0, 1.0), ("b", "2", T0, 2.0)]);
        let out = block_on(s.process(&batch, None));
        let failure = out.failure.expect("stopped");
        assert_eq!(failure.index, 0);
        assert!(
            matches!(failure.error, Error::Conflict { attempts: n, .. } if n == attempts),
            "{:?}",
            failure.error
        );
        assert!(failure.error.is_retryable());
        assert_eq!(out.stats.conflicts, u64::from(attempts));
        assert!(s.ledger.first().is_empty(), "nothing settled");
        assert!(s.dead_letters.lines().is_empty() && s.updates.lines().is_empty());
    }

    #[test]
    fn deadline_mid_batch_stops_before_the_next_group_and_keeps_what_committed() {
        let mem = Arc::new(MemStore::default());
        let clock = Arc::new(FixedClock::at(T0));
        let store = SlowCommits {
            inner: mem.clone(),
            clock: clock.clone(),
            step_ms: 10_000,
        };
        let config = AggregateConfig::default();
        let deadline = T0 + config.common.deadline_margin_ms + 5_000;
        let s = stage_at(store, config, clock);
        let batch = records(&[
            ("a", "1", T0, 1.0),
            ("a", "2", T0, 2.0),
            ("b", "3", T0, 3.0),
            ("a", "4", T0, 4.0),
        ]);
        let out = block_on(s.process(&batch, Some(deadline)));
        let failure = out.failure.expect("stopped by the deadline");
        assert!(matches!(failure.error, Error::Deadline { .. }));
        assert_eq!(
            failure.index, 2,
            "b's record is the first with an open event"
        );
        assert_eq!(out.stats.records, 2);
        assert_eq!(out.stats.counted, 2, "a's events of records 0 and 1");
        // a's record 3 was committed too (one transaction per group): counted and booked,
        // so the retry from record 2 finds it a duplicate.
        let fates = s.ledger.first();
        assert_eq!(fates.len(), 3);
        assert!(matches!(fates["o-4"], Fate::Counted(_)));
        assert!(!fates.contains_key("o-3"));
        let minute = updates(&s.updates)
            .into_iter()
            .find(|u| u.key == "a" && u.window_seconds == 60)
            .expect("a's minute emitted");
        assert_eq!(minute.count, 3);
        assert!(mem.item(&key("b", WindowSpec::tumbling(60), T0)).is_none());
    }

    #[test]
    fn failure_after_commit_before_emit_is_emitted_by_the_retry() {
        let mem = Arc::new(MemStore::default());
        let s = stage(mem.clone(), AggregateConfig::default());
        *s.updates.fail.lock().expect("lock") = true;
        let batch = records(&[("a", "1", T0, 1.0), ("a", "2", T0 + MINUTE, 2.0)]);
        let out = block_on(s.process(&batch, None));
        let failure = out.failure.expect("the emit failed");
        assert_eq!(failure.index, 0, "the whole batch again");
        assert_eq!(out.stats.transactions, 1, "the commit stands");
        assert!(s.updates.lines().is_empty());

        *s.updates.fail.lock().expect("lock") = false;
        let out = block_on(s.process(&batch, None));
        assert!(out.is_complete());
        assert_eq!((out.stats.counted, out.stats.duplicates), (0, 2));
        assert_eq!(out.stats.transactions, 0, "nothing new to write");
        let mut got: Vec<(i64, i64, u64)> = updates(&s.updates)
            .iter()
            .map(|u| (u.window_seconds, u.window_start, u.count))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![(60, T0, 1), (60, T0 + MINUTE, 1), (3600, T0, 2)],
            "every window the batch touched, as stored"
        );
        s.ledger.assert_one_fate_each();
        assert!(
            s.ledger
                .first()
                .values()
                .all(|f| matches!(f, Fate::Counted(_)))
        );
    }

    #[test]
    fn lost_commit_reply_is_a_duplicate_on_retry_and_still_emitted() {
        let mem = Arc::new(MemStore::default());
        let store = FailsAfterCommit {
            inner: mem.clone(),
            armed: AtomicBool::new(true),
        };
        let s = stage(store, AggregateConfig::default());
        let batch = records(&[("a", "1", T0, 5.0)]);
        let out = block_on(s.process(&batch, None));
        assert!(out.failure.expect("retryable").error.is_retryable());
        assert!(
            s.ledger.first().is_empty(),
            "the stage did not know it committed"
        );
        assert_eq!(out.accounting.in_doubt, ["o-1"], "but it knows it may have");
        let out = block_on(s.process(&batch, None));
        assert!(out.is_complete());
        assert_eq!(out.stats.duplicates, 1);
        assert!(
            matches!(s.ledger.first()["o-1"], Fate::Counted(_)),
            "in doubt, then a duplicate: the lost commit counted it"
        );
        let minute = mem
            .item(&key("a", WindowSpec::tumbling(60), T0))
            .expect("stored");
        assert_eq!(minute.state.count, 1, "counted once");
        assert_eq!(updates(&s.updates).len(), 2, "minute and hour emitted");
        assert_eq!(out.stats.passed_on, 2, "what it passed on: the two updates");
    }

    /// At-least-once: the lost commit moved the group's watermark past the batch's
    /// first event, so the retry reports it late (an applied record's late events are
    /// late again). It was reported in doubt, and the commit did count it.
    #[test]
    fn at_least_once_lost_commit_reply_then_late_on_retry_is_booked_counted() {
        let mem = Arc::new(MemStore::default());
        let store = FailsAfterCommit {
            inner: mem.clone(),
            armed: AtomicBool::new(true),
        };
        let config = AggregateConfig {
            delivery: crate::config::Delivery::AtLeastOnce,
            ..AggregateConfig::default()
        };
        let s = stage(store, config);
        let batch = records(&[("a", "1", T0, 1.0), ("a", "2", T0 + 10 * MINUTE, 2.0)]);
        let first = block_on(s.process(&batch, None));
        assert!(first.failure.is_some());
        assert_eq!(first.accounting.in_doubt, ["o-1", "o-2"]);
        let again = block_on(s.process(&batch, None));
        assert!(again.is_complete());
        assert_eq!(
            again.stats.dead_lettered.get(&Reason::Late),
            Some(&1),
            "o-1 is behind the watermark the lost commit stored"
        );
        let fates = s.ledger.first();
        assert!(matches!(fates["o-1"], Fate::Counted(_)), "{fates:?}");
        assert!(matches!(fates["o-2"], Fate::Counted(_)), "{fates:?}");
        let minute = mem
            .item(&key("a", WindowSpec::tumbling(60), T0))
            .expect("stored");
        assert_eq!(minute.state.count, 1, "counted once, by the lost commit");
        // Its window was never emitted (the first attempt failed before its emit): the
        // retry emits it although it judged o-1 late, or detect would never see it.
        let emitted: Vec<(i64, i64, u64)> = updates(&s.updates)
            .iter()
            .map(|u| (u.window_seconds, u.window_start, u.count))
            .collect();
        assert!(emitted.contains(&(60, T0, 1)), "{emitted:?}");
        assert!(emitted.contains(&(60, T0 + 10 * MINUTE, 1)), "{emitted:?}");
    }

    /// A throttled commit was refused, not lost: its events are not in doubt.
    #[test]
    fn a_throttled_commit_is_not_in_doubt() {
        let mem = Arc::new(MemStore::default());
        let store = BrokenGroup {
            inner: mem.clone(),
            key: "a",
            fails: Fails::Commit,
            error: |_| Error::Throttled {
                service: "dynamodb",
                operation: "TransactWriteItems",
                message: "slow down".into(),
            },
        };
        let s = stage(store, AggregateConfig::default());
        let out = block_on(s.process(&records(&[("a", "1", T0, 1.0)]), None));
        assert!(out.failure.is_some());
        assert!(out.accounting.in_doubt.is_empty());
        let timed_out = BrokenGroup {
            inner: mem,
            key: "a",
            fails: Fails::Commit,
            error: |_| timeout(),
        };
        let s = stage(timed_out, AggregateConfig::default());
        let out = block_on(s.process(&records(&[("a", "1", T0, 1.0)]), None));
        assert_eq!(out.accounting.in_doubt, ["o-1"], "a timeout is");
    }

    fn limit_exceeded(_key: &str) -> Error {
        Error::LimitExceeded {
            service: "dynamodb",
            operation: "TransactWriteItems",
            limit: "item size",
            max: 400_000,
            actual: 400_001,
        }
    }

    fn corrupt(key: &str) -> Error {
        Error::CorruptItem {
            item: format!("t#{key}/60#2026-01-01T00:00:00Z"),
            reason: "count is not a number".into(),
        }
    }

    /// Keys `good` and `bad` interleaved; `bad` fails for good.
    fn one_bad_group(fails: Fails, error: fn(&str) -> Error) {
        let mem = Arc::new(MemStore::default());
        let store = BrokenGroup {
            inner: mem.clone(),
            key: "bad",
            fails,
            error,
        };
        let s = stage(store, AggregateConfig::default());
        let batch = records(&[
            ("good", "1", T0, 1.0),
            ("bad", "2", T0, 2.0),
            ("good", "3", T0, 3.0),
            ("bad", "4", T0 + MINUTE, 4.0),
            ("other", "5", T0, 5.0),
        ]);
        let out = block_on(s.process(&batch, None));
        assert!(out.is_complete(), "{:?}", out.failure);
        assert_eq!(out.stats.counted, 3);
        assert_eq!(out.stats.dead_lettered[&Reason::Unprocessable], 2);
        assert_eq!(out.stats.events_in, 5);
        let dead = dead_letters(&s.dead_letters);
        assert_eq!(dead.len(), 2);
        let expected = error("bad").to_string();
        for d in &dead {
            assert_eq!(d.reason, Reason::Unprocessable);
            assert!(d.detail.contains(&expected), "{}", d.detail);
            assert!(d.detail.contains("t#bad"), "{}", d.detail);
        }
        // Each names its event: the id (read again from its line), its origin, and the
        // event as the stage read it.
        let ids: Vec<Option<&str>> = dead.iter().map(|d| d.id.as_deref()).collect();
        assert_eq!(ids, vec![Some("2"), Some("4")]);
        let origins: Vec<Option<&str>> = dead.iter().map(|d| d.origin.as_deref()).collect();
        assert_eq!(origins, vec![Some("o-2"), Some("o-4")]);
        use base64::Engine as _;
        let data = base64::engine::general_purpose::STANDARD
            .decode(dead[1].data.as_deref().expect("the event's bytes"))
            .expect("base64");
        let event: serde_json::Value = serde_json::from_slice(&data).expect("json");
        assert_eq!(
            (&event["id"], &event["key"], &event["type"], &event["value"]),
            (
                &serde_json::json!("4"),
                &serde_json::json!("bad"),
                &serde_json::json!("t"),
                &serde_json::json!(4.0)
            )
        );
        let fates = s.ledger.first();
        assert_eq!(fates.len(), 5, "every event has a fate");
        assert_eq!(
            fates["o-2"],
            Fate::DeadLetter(Reason::Unprocessable),
            "{fates:?}"
        );
        assert!(matches!(fates["o-5"], Fate::Counted(_)));
        s.ledger.assert_one_fate_each();
        let good = mem
            .item(&key("good", WindowSpec::tumbling(60), T0))
            .expect("good written");
        assert_eq!(good.state.count, 2);
        assert!(updates(&s.updates).iter().all(|u| u.key != "bad"));
    }

    #[test]
    fn a_limit_exceeded_commit_dead_letters_only_its_group() {
        one_bad_group(Fails::Commit, limit_exceeded);
    }

    #[test]
    fn a_corrupt_stored_item_dead_letters_only_its_group() {
        one_bad_group(Fails::Read, corrupt);
    }

    #[test]
    fn access_denied_to_one_group_dead_letters_only_that_group() {
        one_bad_group(Fails::Commit, |key| Error::Remote {
            service: "dynamodb",
            operation: "TransactWriteItems",
            message: format!("AccessDeniedException: not authorized on pk t#{key}"),
            retryable: false,
            source: None,
        });
    }

    #[test]
    fn a_missing_sealed_page_dead_letters_only_its_group() {
        let mem = Arc::new(MemStore::default());
        let anchor = key("bad", WindowSpec::tumbling(60), T0);
        let mut item = AggregateItem::new(anchor.clone());
        item.version = 1;
        item.sealed_pages = 1; // page 1 deleted (e.g. by TTL)
        mem.tables.lock().expect("lock").items.insert(anchor, item);
        let s = stage(mem.clone(), AggregateConfig::default());
        let batch = records(&[("bad", "1", T0, 1.0), ("good", "2", T0, 2.0)]);
        let out = block_on(s.process(&batch, None));
        assert!(out.is_complete());
        assert_eq!(out.stats.counted, 1);
        let dead = dead_letters(&s.dead_letters);
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].reason, Reason::Unprocessable);
        assert!(
            dead[0].detail.contains("sealed fingerprint page 1"),
            "{}",
            dead[0].detail
        );
    }

    #[test]
    fn a_retryable_failure_of_one_group_still_stops_the_batch() {
        let mem = Arc::new(MemStore::default());
        let store = BrokenGroup {
            inner: mem.clone(),
            key: "b",
            fails: Fails::Commit,
            error: |_| timeout(),
        };
        let s = stage(store, AggregateConfig::default());
        let batch = records(&[
            ("a", "1", T0, 1.0),
            ("b", "2", T0, 2.0),
            ("c", "3", T0, 3.0),
        ]);
        let out = block_on(s.process(&batch, None));
        assert_eq!(out.failure.expect("stopped").index, 1);
        assert!(s.dead_letters.lines().is_empty());
        assert_eq!(s.ledger.first().len(), 1, "only a");
    }

    #[test]
    fn a_backfill_of_98_minutes_fits_in_transactions_with_the_watermark() {
        let mem = Arc::new(MemStore::default());
        let s = stage(mem.clone(), AggregateConfig::default());
        let events: Vec<(String, i64)> = (0..98)
            .map(|i| (format!("e{i}"), T0 + i * MINUTE))
            .collect();
        let batch = records(
            &events
                .iter()
                .map(|(id, ts)| ("k", id.as_str(), *ts, 1.0))
                .collect::<Vec<_>>(),
        );
        let out = block_on(s.process(&batch, None));
        assert!(out.is_complete(), "{:?}", out.failure);
        assert_eq!(out.stats.counted, 98);
        let commits = mem.commits.lock().expect("lock").clone();
        assert_eq!(
            commits.len(),
            2,
            "98 minutes + 2 hours + watermark = 101 actions"
        );
        assert!(commits.iter().all(|(a, _)| *a <= MAX_TRANSACTION_ITEMS));
        let wm = mem
            .tables
            .lock()
            .expect("lock")
            .watermarks
            .values()
            .next()
            .cloned();
        assert_eq!(wm.map(|w| w.watermark_ms), Some(T0 + 97 * MINUTE));
        let hours: u64 = [T0, T0 + 60 * MINUTE]
            .iter()
            .map(|h| {
                mem.item(&key("k", WindowSpec::tumbling(3600), *h))
                    .map_or(0, |i| i.state.count)
            })
            .sum();
        assert_eq!(hours, 98);
        assert_eq!(updates(&s.updates).len(), 100);
        // Redelivered: the early minutes are now behind the watermark, but they were
        // counted, so they are duplicates and all their windows are emitted again.
        let again = block_on(s.process(&batch, None));
        assert_eq!(again.stats.duplicates, 98);
        assert_eq!(updates(&s.updates).len(), 200);
    }

    #[test]
    fn a_redelivered_batch_of_duplicates_emits_every_window_it_touched() {
        let mem = Arc::new(MemStore::default());
        let config = AggregateConfig {
            windows: WindowSet::parse("60,3600,600/300").expect("valid"),
            ..AggregateConfig::default()
        };
        let s = stage(mem.clone(), config);
        let batch = records(&[("a", "1", T0 + 1, 1.0)]);
        assert!(block_on(s.process(&batch, None)).is_complete());
        let first = updates(&s.updates).len();
        assert_eq!(first, 4, "minute, hour, two 10-minute hops");
        let out = block_on(s.process(&batch, None));
        assert_eq!(out.stats.duplicates, 1);
        assert_eq!(
            updates(&s.updates).len(),
            2 * first,
            "the same snapshots again"
        );
    }

    #[test]
    fn a_hot_anchor_is_committed_in_rounds_within_one_batch() {
        use crate::state::idempotency::{MAX_PAGE_FINGERPRINTS, MAX_SEALED_PAGES_PER_WRITE};
        let mem = Arc::new(MemStore::default());
        let config = AggregateConfig {
            // Leaves room for 10 new events per anchor per round.
            head_fingerprint_cap: MAX_SEALED_PAGES_PER_WRITE * MAX_PAGE_FINGERPRINTS - 10,
            ..AggregateConfig::default()
        };
        let s = stage(mem.clone(), config);
        let ids: Vec<String> = (0..25).map(|i| format!("e{i}")).collect();
        let batch = records(
            &ids.iter()
                .map(|id| ("a", id.as_str(), T0, 1.0))
                .collect::<Vec<_>>(),
        );
        let out = block_on(s.process(&batch, None));
        assert!(out.is_complete());
        assert_eq!(out.stats.counted, 25);
        assert_eq!(out.stats.transactions, 3, "10 + 10 + 5");
        let minute = mem
            .item(&key("a", WindowSpec::tumbling(60), T0))
            .expect("written");
        assert_eq!((minute.state.count, minute.version), (25, 3));
        assert_eq!(updates(&s.updates).len(), 2, "one snapshot per window");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// For any batch and any window set within the caps: every transaction is within
        /// DynamoDB's limits (the store refuses anything else, which would show as an
        /// `unprocessable` dead letter), every event gets one fate, and every emitted
        /// record is within Kinesis's 1 MiB.
        #[test]
        fn every_transaction_and_record_fits(
            events in proptest::collection::vec((0usize..4, 0i64..3_000, 0u8..4), 1..400),
            windows in proptest::sample::select(vec![
                "60", "60,3600", "60,3600/60,86400", "60,120,300,900,1800,3600,21600,86400",
                "60,3600/300,86400/3600,600/60", "300,3600/300,7200/600",
            ]),
            head_cap in proptest::sample::select(vec![4usize, 64, 4096]),
            at_least_once in proptest::bool::ANY,
        ) {
            let mem = Arc::new(MemStore::default());
            let config = AggregateConfig {
                windows: WindowSet::parse(windows).expect("within the caps"),
                head_fingerprint_cap: head_cap,
                delivery: if at_least_once {
                    crate::config::Delivery::AtLeastOnce
                } else {
                    crate::config::Delivery::ExactlyOnce
                },
                ..AggregateConfig::default()
            };
            let s = stage(mem.clone(), config);
            let keys = ["a", "b", &"k".repeat(256), "sensor-7"];
            let list: Vec<(String, String, i64)> = events
                .iter()
                .enumerate()
                .map(|(i, (k, minute, dup))| {
                    // Some ids repeat (duplicates within the batch).
                    let id = if *dup == 0 { format!("d{minute}") } else { format!("e{i}") };
                    (keys[*k].to_owned(), id, T0 + minute * MINUTE + (i as i64 % 7) * 1000)
                })
                .collect();
            let batch = records(
                &list
                    .iter()
                    .map(|(k, id, ts)| (k.as_str(), id.as_str(), *ts, 1.5))
                    .collect::<Vec<_>>(),
            );
            let out = block_on(s.process(&batch, None));
            proptest::prop_assert!(out.is_complete(), "{:?}", out.failure);
            proptest::prop_assert!(
                !out.stats.dead_lettered.contains_key(&Reason::Unprocessable),
                "{:?}", dead_letters(&s.dead_letters)
            );
            proptest::prop_assert_eq!(
                out.stats.counted + out.stats.duplicates + out.stats.dead_lettered_total(),
                list.len() as u64
            );
            for (actions, bytes) in mem.commits.lock().expect("lock").iter() {
                proptest::prop_assert!(*actions <= MAX_TRANSACTION_ITEMS);
                proptest::prop_assert!(*bytes <= MAX_TRANSACTION_BYTES);
            }
            for sink in [&s.updates, &s.dead_letters] {
                for r in sink.records.lock().expect("lock").iter() {
                    proptest::prop_assert!(r.data.len() + r.partition_key.len() <= 1024 * 1024);
                }
            }
        }
    }

    /// One record per event from sequence number `first_seq` on: `(key, id, ts)`.
    fn records_from(first_seq: u64, events: &[(&str, &str, i64)]) -> Vec<StreamRecord> {
        events
            .iter()
            .enumerate()
            .map(|(i, (key, id, ts))| {
                let line = serde_json::json!({
                    "id": id, "key": key, "type": "t", "ts": ts, "value": 1.0,
                    "origin": format!("o-{id}-{}", first_seq + i as u64),
                });
                record("s0", first_seq + i as u64, key, line.to_string().as_bytes())
            })
            .collect()
    }

    /// The closing range every emitted update carries, asserting they all agree.
    fn closing_of_updates(sink: &VecSink) -> Option<ClosingRange> {
        let lines: Vec<UpdateLine> = sink
            .lines()
            .into_iter()
            .map(|v| serde_json::from_value(v).expect("an update line"))
            .collect();
        assert!(!lines.is_empty(), "updates were emitted");
        let first = lines[0].closing;
        assert!(
            lines.iter().all(|l| l.closing == first),
            "one group, one range"
        );
        sink.records.lock().expect("lock").clear();
        first
    }

    fn range(from_ms: i64, to_ms: i64) -> Option<ClosingRange> {
        Some(ClosingRange { from_ms, to_ms })
    }

    fn stored_watermark(mem: &MemStore, k: &str) -> GroupWatermark {
        mem.tables.lock().expect("lock").watermarks[&GroupKey {
            key: k.into(),
            metric: "t".into(),
        }]
            .clone()
    }

    fn closing_ranges_through_a_lost_emit(delivery: crate::config::Delivery) {
        const L: i64 = 300_000; // the default allowed lateness
        let mem = Arc::new(MemStore::default());
        let config = AggregateConfig {
            delivery,
            ..AggregateConfig::default()
        };
        assert_eq!(config.allowed_lateness_ms, L);
        let s = stage(mem.clone(), config);
        let run = |batch: &[StreamRecord]| {
            let out = block_on(s.process(batch, None));
            assert!(out.is_complete(), "{:?}", out.failure);
            closing_of_updates(&s.updates)
        };
        // The group's first commit: its watermark is the first minute; nothing closed.
        assert_eq!(run(&records_from(1, &[("a", "1", T0)])), None);
        // Ten minutes later: every window ending before T0 + 10 min − L closed.
        assert_eq!(
            run(&records_from(2, &[("a", "2", T0 + 10 * MINUTE)])),
            range(T0 - L, T0 + 10 * MINUTE - L)
        );
        // A fresh batch that does not move the watermark closed nothing.
        assert_eq!(
            run(&records_from(3, &[("a", "3", T0 + 10 * MINUTE + 1)])),
            None
        );
        // The commit goes through, its updates are lost.
        let lost = records_from(4, &[("a", "4", T0 + 20 * MINUTE)]);
        *s.updates.fail.lock().expect("lock") = true;
        let out = block_on(s.process(&lost, None));
        assert!(out.failure.is_some(), "the emit failed");
        *s.updates.fail.lock().expect("lock") = false;
        let wm = stored_watermark(&mem, "a");
        assert_eq!(
            (wm.watermark_ms, wm.closed_from_ms),
            (T0 + 20 * MINUTE, T0 + 10 * MINUTE)
        );
        // The retry commits nothing but says again what the lost commit closed.
        assert_eq!(
            run(&lost),
            range(T0 + 5 * MINUTE, T0 + 15 * MINUTE),
            "the redelivery repeats the range"
        );
        // A retry that also brings newer records keeps the range it must repeat.
        let mut longer = lost.clone();
        longer.extend(records_from(5, &[("a", "5", T0 + 30 * MINUTE)]));
        assert_eq!(run(&longer), range(T0 + 5 * MINUTE, T0 + 25 * MINUTE));
        // A producer duplicate in a fresh batch does not hold the range open.
        let fresh = records_from(
            6,
            &[("a", "4", T0 + 20 * MINUTE), ("a", "6", T0 + 40 * MINUTE)],
        );
        assert_eq!(run(&fresh), range(T0 + 25 * MINUTE, T0 + 35 * MINUTE));
        let wm = stored_watermark(&mem, "a");
        assert_eq!(
            wm.last_record
                .map(|(shard, seq)| (shard, seq.as_str().to_owned())),
            Some(("s0".to_owned(), "7".to_owned()))
        );
    }

    #[test]
    fn updates_carry_the_windows_a_commit_closed_exactly_once() {
        closing_ranges_through_a_lost_emit(crate::config::Delivery::ExactlyOnce);
    }

    #[test]
    fn updates_carry_the_windows_a_commit_closed_at_least_once() {
        closing_ranges_through_a_lost_emit(crate::config::Delivery::AtLeastOnce);
    }

    #[test]
    fn a_backfill_closes_every_window_it_passed_in_one_range() {
        const L: i64 = 300_000;
        let mem = Arc::new(MemStore::default());
        let s = stage(mem.clone(), AggregateConfig::default());
        // Three hours of history in one batch, the group's first.
        let events: Vec<(String, i64)> = (0..180)
            .map(|m| (format!("e{m}"), T0 + 5 * MINUTE + m * MINUTE))
            .collect();
        let list: Vec<(&str, &str, i64)> = events
            .iter()
            .map(|(id, ts)| ("a", id.as_str(), *ts))
            .collect();
        let out = block_on(s.process(&records_from(1, &list), None));
        assert!(out.is_complete(), "{:?}", out.failure);
        assert!(out.stats.transactions > 1, "more than one transaction");
        // From the earliest anchor start: every window of the batch that closed.
        assert_eq!(
            closing_of_updates(&s.updates),
            range(T0 + 5 * MINUTE - L, T0 + 184 * MINUTE - L)
        );
    }

    #[test]
    fn every_round_of_a_hot_group_decides_the_range_alike() {
        const L: i64 = 300_000;
        let mem = Arc::new(MemStore::default());
        // Two new events per anchor and round: five events take three rounds.
        let config = AggregateConfig {
            head_fingerprint_cap: crate::state::idempotency::MAX_SEALED_PAGES_PER_WRITE
                * crate::state::idempotency::MAX_PAGE_FINGERPRINTS
                - 2,
            ..AggregateConfig::default()
        };
        let s = stage(mem.clone(), config);
        assert!(block_on(s.process(&records_from(1, &[("a", "0", T0)]), None)).is_complete());
        closing_of_updates(&s.updates);
        let hot: Vec<(String, i64)> = (1..=5)
            .map(|i| (format!("h{i}"), T0 + 10 * MINUTE + i))
            .collect();
        let list: Vec<(&str, &str, i64)> =
            hot.iter().map(|(id, ts)| ("a", id.as_str(), *ts)).collect();
        let out = block_on(s.process(&records_from(2, &list), None));
        assert!(out.is_complete(), "{:?}", out.failure);
        assert_eq!(out.stats.counted, 5);
        assert!(out.stats.transactions >= 3, "{}", out.stats.transactions);
        assert_eq!(
            closing_of_updates(&s.updates),
            range(T0 - L, T0 + 10 * MINUTE - L)
        );
        let wm = stored_watermark(&mem, "a");
        assert_eq!((wm.closed_from_ms, wm.version), (T0, 2), "written once");
    }
}
