//! Aggregate: assign event-time windows, combine the batch in memory, and merge into
//! the aggregates table with one consistent read and conditional transactions per
//! group (see `idempotency.rs` for why that counts every event exactly once).
//!
//! Per batch, in named steps:
//! 1. [`decode`](Aggregate::decode): events and rejected lines, grouped by (key, type).
//! 2. [`load_state`](Aggregate::load_state): one consistent read of every touched item
//!    and group watermark (group by group when that read fails for good, to find the
//!    group at fault).
//! 3. per group, [`commit_group`](Aggregate::commit_group): judge lateness, then rounds
//!    of [`plan_round`](Aggregate::plan_round) and
//!    [`commit_round`](Aggregate::commit_round) until every event has a fate; on a
//!    conflict, re-read and re-plan.
//! 4. [`settle`]: which records are done, their dead letters and ledger fates.
//! 5. [`emit`](Aggregate::emit): a snapshot of every window the batch touched, then the
//!    dead letters; only then are the fates booked.
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

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::AggregateConfig;
use crate::dead_letter::DeadLetter;
use crate::envelope::{Reason, Rejection};
use crate::error::{Error, Result};
use crate::fingerprint::{FingerprintSet, fingerprint};
use crate::idempotency::{
    Candidate, Transaction, anchor_of, event_identity, judge_lateness, keys_to_read, plan_group,
    transactions, watermark_write,
};
use crate::item::{AggregateItem, GroupKey, GroupWatermark, ItemKey};
use crate::outcome::{BatchOutcome, StageStats};
use crate::ports::{AggregateStore, Clock, Commit, EventLedger, Fate, Loaded, RecordSink};
use crate::record::{OutRecord, PACKED_RECORD_BYTES, StreamRecord, pack_lines};
use crate::sequence::SeqNo;
use crate::stage::{Rejected, Stage, deadline_passed, decode_events, fail_whole_batch, failure_at};

pub struct Aggregate<S, O, D, L, C> {
    pub store: S,
    pub updates: O,
    pub dead_letters: D,
    pub ledger: L,
    pub clock: C,
    pub config: AggregateConfig,
    /// Sealed fingerprint pages never change once written, so a container keeps them.
    pages: Mutex<HashMap<(ItemKey, u32), Arc<FingerprintSet>>>,
}

const MAX_CACHED_PAGES: usize = 512;

impl<S, O, D, L, C> Aggregate<S, O, D, L, C> {
    pub fn new(
        store: S,
        updates: O,
        dead_letters: D,
        ledger: L,
        clock: C,
        config: AggregateConfig,
    ) -> Self {
        Aggregate {
            store,
            updates,
            dead_letters,
            ledger,
            clock,
            config,
            pages: Mutex::new(HashMap::new()),
        }
    }
}

/// One decoded event of the batch.
struct Pending {
    record: usize,
    origin: String,
    identity: u64,
    id: Option<String>,
    group: GroupKey,
    candidate: Candidate,
}

/// The decoded batch: its events, its rejected lines, and its groups in order of first
/// appearance with the indexes (into `pending`) of their events.
struct Batch {
    pending: Vec<Pending>,
    rejected: Vec<Rejected>,
    groups: Vec<(GroupKey, Vec<usize>)>,
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
}

impl Progress {
    fn new(events: usize) -> Self {
        Progress {
            fates: vec![None; events],
            stats: StageStats::default(),
            unprocessable: HashMap::new(),
            touched: BTreeSet::new(),
        }
    }
}

/// How processing one group ended.
#[derive(Debug)]
enum GroupEnd {
    /// Every event of the group has a fate.
    Done,
    /// A failure confined to this group that no retry can fix: its unsettled events
    /// become dead letters (`unprocessable`), the batch goes on.
    Unprocessable(Error),
    /// A retryable failure or the deadline: the batch stops here.
    Stop(Error),
}

impl GroupEnd {
    fn failed(error: Error) -> Self {
        if error.is_retryable() {
            GroupEnd::Stop(error)
        } else {
            GroupEnd::Unprocessable(error)
        }
    }
}

/// One planning round of a group: its verdicts and the transactions that carry them.
struct Round {
    duplicates: Vec<usize>,
    late: Vec<usize>,
    txs: Vec<Transaction>,
}

/// How committing a round's transactions ended.
#[derive(Debug, PartialEq)]
enum RoundEnd {
    Committed,
    /// A version condition failed on this item: re-read and plan again.
    Conflict(String),
}

/// What [`settle`] decided for the records that are done.
struct Settled {
    /// Records `..done` are finished; the rest is delivered again.
    done: usize,
    dead: Vec<OutRecord>,
    fates: Vec<(String, Fate)>,
}

const STAGE: &str = "aggregate";

impl<S, O, D, L, C> Aggregate<S, O, D, L, C>
where
    S: AggregateStore,
    O: RecordSink,
    D: RecordSink,
    L: EventLedger,
    C: Clock,
{
    /// Step 1: decodes the events of the batch and groups them by (key, type).
    fn decode(&self, records: &[StreamRecord]) -> Batch {
        let (events, rejected) = decode_events(STAGE, records);
        let mut pending: Vec<Pending> = Vec::with_capacity(events.len());
        let mut groups: Vec<(GroupKey, Vec<usize>)> = Vec::new();
        let mut position: HashMap<GroupKey, usize> = HashMap::new();
        for d in events {
            let record = &records[d.record];
            let seq = SeqNo::parse(&record.sequence_number).unwrap_or_else(SeqNo::zero);
            let origin = d.event.origin.clone().unwrap_or_default();
            let group = GroupKey {
                key: d.event.key.clone(),
                metric: d.event.metric.clone(),
            };
            let anchor = anchor_of(&group, &self.config, d.event.ts);
            let index = pending.len();
            let at = *position.entry(group.clone()).or_insert_with(|| {
                groups.push((group.clone(), Vec::new()));
                groups.len() - 1
            });
            groups[at].1.push(index);
            pending.push(Pending {
                record: d.record,
                identity: event_identity(self.config.delivery, &d.event.id, &anchor, &origin),
                origin,
                id: Some(d.event.id.clone()),
                candidate: Candidate {
                    index,
                    ts: d.event.ts,
                    value: d.event.value,
                    fingerprint: fingerprint(&d.event.id),
                    shard: record.shard_id.clone(),
                    seq,
                    late: false,
                },
                group,
            });
        }
        Batch {
            pending,
            rejected,
            groups,
        }
    }

    /// Step 2: one consistent read of every item and watermark the batch may need. If it
    /// fails for a reason no retry can fix, each group is read alone, so that only the
    /// groups at fault are marked unreadable; a retryable failure fails the batch.
    async fn load_state(&self, batch: &Batch) -> Result<State> {
        let reads: Vec<Vec<ItemKey>> = batch
            .groups
            .iter()
            .map(|(g, members)| {
                let candidates: Vec<Candidate> = members
                    .iter()
                    .map(|i| batch.pending[*i].candidate.clone())
                    .collect();
                keys_to_read(g, &candidates, &self.config)
            })
            .collect();
        let groups: Vec<GroupKey> = batch.groups.iter().map(|(g, _)| g.clone()).collect();
        let mut state = State::default();
        match self.store.load(&reads.concat(), &groups).await {
            Ok(loaded) => state.refresh(&[], &[], loaded),
            Err(error) if error.is_retryable() => return Err(error),
            Err(_) => {
                for (group, keys) in groups.iter().zip(&reads) {
                    match self.store.load(keys, std::slice::from_ref(group)).await {
                        Ok(loaded) => state.refresh(&[], &[], loaded),
                        Err(error) if error.is_retryable() => return Err(error),
                        Err(error) => {
                            state.unreadable.insert(group.clone(), error);
                        }
                    }
                }
            }
        }
        Ok(state)
    }

    /// Step 3: gives every event of one group a fate, in rounds of plan and commit.
    /// Lateness is judged once, in processing order, against the stored watermark; a
    /// conflict re-reads the group's items but keeps those verdicts. A round leaves
    /// events open only after a conflict or when the planner deferred them (a very hot
    /// anchor), and each committed round settles at least one event, so this ends.
    async fn commit_group(
        &self,
        batch: &Batch,
        (group, members): &(GroupKey, Vec<usize>),
        state: &mut State,
        progress: &mut Progress,
        deadline_ms: Option<i64>,
    ) -> GroupEnd {
        if let Some(error) = state.unreadable.remove(group) {
            return GroupEnd::Unprocessable(error);
        }
        let mut open: Vec<Candidate> = members
            .iter()
            .map(|i| batch.pending[*i].candidate.clone())
            .collect();
        let stored = state.watermarks.get(group).map(|w| w.watermark_ms);
        let batch_watermark = judge_lateness(&mut open, stored, &self.config);
        let judged = open.clone();
        let mut conflicts = 0;
        while !open.is_empty() {
            let margin = self.config.common.deadline_margin_ms;
            if let Some(error) = deadline_passed(&self.clock, deadline_ms, margin) {
                return GroupEnd::Stop(error);
            }
            let round = match self.plan_round(group, &open, batch_watermark, state).await {
                Ok(round) => round,
                Err(error) => return GroupEnd::failed(error),
            };
            match self
                .commit_round(batch, group, &round.txs, state, progress)
                .await
            {
                Ok(RoundEnd::Committed) => {
                    for &i in &round.duplicates {
                        progress.fates[i] = Some(Fate::Duplicate(batch.pending[i].identity));
                    }
                    for &i in &round.late {
                        progress.fates[i] = Some(Fate::Late);
                    }
                    open.retain(|c| progress.fates[c.index].is_none());
                }
                Ok(RoundEnd::Conflict(item)) => {
                    progress.stats.conflicts += 1;
                    conflicts += 1;
                    if conflicts >= self.config.max_commit_attempts {
                        let attempts = conflicts;
                        return GroupEnd::Stop(Error::Conflict { item, attempts });
                    }
                    // Someone else wrote: re-read what is still open and plan again.
                    open.retain(|c| progress.fates[c.index].is_none());
                    let keys = keys_to_read(group, &open, &self.config);
                    let groups = std::slice::from_ref(group);
                    match self.store.load(&keys, groups).await {
                        Ok(fresh) => state.refresh(&keys, groups, fresh),
                        Err(error) => return GroupEnd::failed(error),
                    }
                }
                Err(error) => return GroupEnd::failed(error),
            }
        }
        // Every window the group's events fall in is emitted, changed or not.
        for c in &judged {
            if let Some(Fate::Counted(_) | Fate::Duplicate(_)) = progress.fates[c.index] {
                progress
                    .touched
                    .insert(anchor_of(group, &self.config, c.ts));
                if !c.late {
                    progress
                        .touched
                        .extend(self.config.windows.coarser_windows_of(c.ts).map(
                            |(window, start_ms)| ItemKey {
                                group: group.clone(),
                                window,
                                start_ms,
                            },
                        ));
                }
            }
        }
        GroupEnd::Done
    }

    /// Plans one round of a group against what `state` knows: verdicts and transactions
    /// (the watermark, if it moved, in the last one).
    async fn plan_round(
        &self,
        group: &GroupKey,
        open: &[Candidate],
        batch_watermark: Option<i64>,
        state: &State,
    ) -> Result<Round> {
        let anchors: BTreeSet<ItemKey> = open
            .iter()
            .map(|c| anchor_of(group, &self.config, c.ts))
            .collect();
        let anchors: Vec<ItemKey> = anchors.into_iter().collect();
        let pages = self.sealed_pages(&state.items, &anchors).await?;
        let plan = plan_group(group, open, &state.items, &pages, &self.config);
        let watermark = watermark_write(group, batch_watermark, state.watermarks.get(group));
        let txs = transactions(&plan, &state.items, watermark, &self.config);
        Ok(Round {
            duplicates: plan.duplicates,
            late: plan.late,
            txs,
        })
    }

    /// Commits a round's transactions in order. Each committed transaction's events are
    /// counted (and booked) at once, whatever happens after: the write is durable.
    async fn commit_round(
        &self,
        batch: &Batch,
        group: &GroupKey,
        txs: &[Transaction],
        state: &mut State,
        progress: &mut Progress,
    ) -> Result<RoundEnd> {
        for tx in txs {
            progress.stats.transactions += 1;
            match self.store.commit(&tx.writes, tx.watermark.as_ref()).await {
                Ok(Commit::Done) => {
                    progress.stats.items_written += tx.action_count() as u64;
                    for w in &tx.writes {
                        state.items.insert(w.item.key.clone(), w.item.clone());
                        progress.touched.insert(w.item.key.clone());
                    }
                    if let Some(w) = &tx.watermark {
                        state.watermarks.insert(group.clone(), w.watermark.clone());
                    }
                    for &i in &tx.counted {
                        let fate = Fate::Counted(batch.pending[i].identity);
                        progress.fates[i] = Some(fate);
                        self.ledger.settled(&batch.pending[i].origin, fate);
                    }
                }
                Ok(Commit::Conflict) => {
                    let item = tx
                        .writes
                        .first()
                        .map_or_else(|| group.partition_key(), |w| w.item.key.describe());
                    return Ok(RoundEnd::Conflict(item));
                }
                Err(error) => {
                    if matches!(
                        error,
                        Error::Injected {
                            after_commit: true,
                            ..
                        }
                    ) {
                        // Fault injection only: the write happened; book it.
                        for &i in &tx.counted {
                            let p = &batch.pending[i];
                            self.ledger.settled(&p.origin, Fate::Counted(p.identity));
                        }
                    }
                    return Err(error);
                }
            }
        }
        Ok(RoundEnd::Committed)
    }

    /// Step 5: window updates (a snapshot of every touched window as stored now), then
    /// dead letters.
    async fn emit(&self, state: &State, progress: &Progress, dead: Vec<OutRecord>) -> Result<()> {
        let updates = progress
            .touched
            .iter()
            .filter_map(|k| state.items.get(k))
            .filter(|item| item.version > 0)
            .map(|item| {
                let line = serde_json::to_vec(&item.update()).unwrap_or_default();
                (item.key.group.key.clone(), line)
            });
        self.updates
            .put_records(pack_lines(updates, PACKED_RECORD_BYTES))
            .await?;
        self.dead_letters.put_records(dead).await
    }

    async fn sealed_pages(
        &self,
        items: &HashMap<ItemKey, AggregateItem>,
        anchors: &[ItemKey],
    ) -> Result<HashMap<ItemKey, Vec<Arc<FingerprintSet>>>> {
        let mut out = HashMap::new();
        for anchor in anchors {
            let Some(item) = items.get(anchor) else {
                continue;
            };
            let mut pages = Vec::new();
            for page in 1..=item.sealed_pages {
                let cached = self
                    .pages
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&(anchor.clone(), page))
                    .cloned();
                let set = match cached {
                    Some(set) => set,
                    None => {
                        let set = self.store.load_page(anchor, page).await?.ok_or_else(|| {
                            Error::CorruptItem {
                                item: anchor.describe(),
                                reason: format!(
                                    "sealed fingerprint page {page} of {} is missing",
                                    item.sealed_pages
                                ),
                            }
                        })?;
                        let set = Arc::new(set);
                        let mut cache = self.pages.lock().unwrap_or_else(PoisonError::into_inner);
                        if cache.len() >= MAX_CACHED_PAGES {
                            cache.clear();
                        }
                        cache.insert((anchor.clone(), page), set.clone());
                        set
                    }
                };
                pages.push(set);
            }
            out.insert(anchor.clone(), pages);
        }
        Ok(out)
    }
}

impl<S, O, D, L, C> Stage for Aggregate<S, O, D, L, C>
where
    S: AggregateStore,
    O: RecordSink,
    D: RecordSink,
    L: EventLedger,
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
        let batch = self.decode(records);
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
            let end = self
                .commit_group(&batch, group, &mut state, &mut progress, deadline_ms)
                .await;
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
            &self.config,
            &mut outcome.stats,
        );
        if let Err(error) = self.emit(&state, &progress, settled.dead).await {
            // The commits stand (and were booked); the retry emits their snapshots.
            fail_whole_batch(&mut outcome, records, error);
            outcome.stats.transactions = progress.stats.transactions;
            outcome.stats.items_written = progress.stats.items_written;
            outcome.stats.conflicts = progress.stats.conflicts;
            return outcome;
        }
        for (origin, fate) in settled.fates {
            self.ledger.settled(&origin, fate);
        }
        if let Some(error) = stop {
            if settled.done < records.len() {
                outcome.failure = Some(failure_at(records, settled.done, error));
            }
        }
        outcome
    }
}

impl Progress {
    /// A failure no retry can fix struck this group: its events that no committed
    /// transaction counted become dead letters; the error is their detail.
    fn dead_letter_group(&mut self, (group, members): &(GroupKey, Vec<usize>), error: &Error) {
        self.unprocessable.insert(
            group.clone(),
            format!("group {}: {error}", group.partition_key()),
        );
        for &i in members {
            if self.fates[i].is_none() {
                self.fates[i] = Some(Fate::DeadLetter(Reason::Unprocessable));
            }
        }
    }
}

/// Step 4: decides which records are done (all of them, unless the batch stopped: then
/// those before the first record with an unsettled event), and for those, the dead
/// letters to send, the fates to book once they are sent, and the stage's counters.
/// Counted events were booked when their transaction committed.
fn settle(
    records: &[StreamRecord],
    batch: &Batch,
    progress: &Progress,
    stopped: bool,
    config: &AggregateConfig,
    stats: &mut StageStats,
) -> Settled {
    let done = if stopped {
        batch
            .pending
            .iter()
            .zip(&progress.fates)
            .filter(|(_, f)| f.is_none())
            .map(|(p, _)| p.record)
            .min()
            .unwrap_or(records.len())
    } else {
        records.len()
    };
    let mut settled = Settled {
        done,
        dead: Vec::new(),
        fates: Vec::new(),
    };
    for r in batch.rejected.iter().filter(|r| r.record < done) {
        settled.dead.push(r.out.clone());
        settled
            .fates
            .push((r.origin.clone(), Fate::DeadLetter(r.reason)));
        stats.dead_letter(r.reason);
    }
    for (p, fate) in batch.pending.iter().zip(&progress.fates) {
        if p.record >= done {
            continue;
        }
        let Some(fate) = *fate else { continue };
        let record = &records[p.record];
        match fate {
            Fate::Counted(_) => stats.counted += 1,
            Fate::Duplicate(_) => stats.duplicates += 1,
            Fate::Late => {
                let detail = format!(
                    "event time {} is in a window that closed more than {} ms before the watermark",
                    p.candidate.ts, config.allowed_lateness_ms
                );
                stats.dead_letter(Reason::Late);
                settled.dead.push(event_dead_letter(
                    record,
                    p,
                    Reason::Late,
                    Some("ts"),
                    detail,
                ));
            }
            Fate::DeadLetter(reason) => {
                let detail = progress
                    .unprocessable
                    .get(&p.group)
                    .cloned()
                    .unwrap_or_else(|| reason.as_str().to_owned());
                stats.dead_letter(reason);
                settled
                    .dead
                    .push(event_dead_letter(record, p, reason, None, detail));
            }
        }
        if !matches!(fate, Fate::Counted(_)) {
            settled.fates.push((p.origin.clone(), fate));
        }
    }
    stats.records = done as u64;
    stats.events_in = batch.pending.iter().filter(|p| p.record < done).count() as u64
        + batch.rejected.iter().filter(|r| r.record < done).count() as u64;
    settled
}

/// A dead letter for one decoded event; its original bytes are the event as this stage
/// read it.
fn event_dead_letter(
    record: &StreamRecord,
    p: &Pending,
    reason: Reason,
    field: Option<&'static str>,
    detail: String,
) -> OutRecord {
    let rejection = Rejection {
        reason,
        field,
        detail,
        id: p.id.clone(),
    };
    let line = serde_json::json!({
        "id": p.id, "key": p.group.key, "type": p.group.metric,
        "ts": p.candidate.ts, "value": p.candidate.value, "origin": p.origin,
    });
    let bytes = serde_json::to_vec(&line).unwrap_or_default();
    DeadLetter::for_line(STAGE, record, 0, &bytes, &rejection)
        .with_origin(Some(p.origin.clone()))
        .into_record(&record.partition_key)
}
