//! Steps 2 and 3 of the aggregate stage: one consistent read of the table, then per
//! group rounds of planning and conditional transactions until every event has a fate.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, PoisonError};

use super::{Aggregate, Batch, Progress, State};
use crate::config::Delivery;
use crate::error::{Error, Result};
use crate::ports::{AggregateStore, Clock, Commit, RecordSink};
use crate::stage::deadline_passed;
use crate::stage::outcome::Fate;
use crate::state::fingerprint::FingerprintSet;
use crate::state::idempotency::{
    Candidate, Transaction, anchor_of, judge_lateness, keys_to_read, keys_to_read_at, plan_group,
    redelivers, transactions, watermark_write,
};
use crate::state::item::{AggregateItem, ClosingRange, GroupKey, GroupWatermark, ItemKey};

/// The most sealed fingerprint pages a container keeps.
const MAX_CACHED_PAGES: usize = 512;

/// How processing one group ended.
#[derive(Debug)]
pub(super) enum GroupEnd {
    /// Every event of the group has a fate.
    Done,
    /// A failure confined to this group that no retry can fix: its unsettled events
    /// become dead letters (`unprocessable`), the batch goes on.
    Unprocessable(Error),
    /// A retryable failure or the deadline: the batch stops here.
    Stop(Error),
}

impl GroupEnd {
    pub(super) fn failed(error: Error) -> Self {
        if error.is_retryable() {
            GroupEnd::Stop(error)
        } else {
            GroupEnd::Unprocessable(error)
        }
    }
}

/// One planning round of a group: its verdicts and the transactions that carry them.
pub(super) struct Round {
    duplicates: Vec<usize>,
    late: Vec<usize>,
    txs: Vec<Transaction>,
}

/// How committing a round's transactions ended.
#[derive(Debug, PartialEq)]
pub(super) enum RoundEnd {
    Committed,
    /// A version condition failed on this item: re-read and plan again.
    Conflict(String),
}

impl<S, O, D, C> Aggregate<S, O, D, C>
where
    S: AggregateStore,
    O: RecordSink,
    D: RecordSink,
    C: Clock,
{
    /// Step 2: one consistent read of every item and watermark the batch may need. If it
    /// fails for a reason no retry can fix, each group is read alone, so that only the
    /// groups at fault are marked unreadable; a retryable failure fails the batch.
    pub(super) async fn load_state(&self, batch: &Batch) -> Result<State> {
        let reads: Vec<Vec<ItemKey>> = batch
            .groups
            .iter()
            .map(|(g, members)| {
                let times = members.iter().map(|i| batch.pending[*i].candidate.ts);
                keys_to_read_at(g, times, &self.plan_settings(g))
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
        // A view item whose states are not its view's cannot be folded into: its group
        // is unprocessable (a retry cannot help), the rest of the batch goes on.
        if let Some(sql) = &self.sql {
            for item in state.items.values() {
                if let Some(error) = sql.check_columns(item) {
                    state.unreadable.insert(item.key.group.clone(), error);
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
    pub(super) async fn commit_group(
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
        let batch_watermark = judge_lateness(&mut open, stored, &self.plan_settings(group));
        let judged = open.clone();
        let mut conflicts = 0;
        while !open.is_empty() {
            let margin = self.config.common.deadline_margin_ms;
            if let Some(error) = deadline_passed(&self.clock, deadline_ms, margin) {
                return GroupEnd::Stop(error);
            }
            let round = match self
                .plan_round(batch, group, &open, &judged, batch_watermark, state)
                .await
            {
                Ok(round) => round,
                Err(error) => return GroupEnd::failed(error),
            };
            match self
                .commit_round(batch, group, round.txs, state, progress)
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
                    let keys = keys_to_read(group, &open, &self.plan_settings(group));
                    let groups = std::slice::from_ref(group);
                    match self.store.load(&keys, groups).await {
                        Ok(fresh) => state.refresh(&keys, groups, fresh),
                        Err(error) => return GroupEnd::failed(error),
                    }
                }
                Err(error) => return GroupEnd::failed(error),
            }
        }
        // Every window a counted or duplicate event falls in is emitted, changed or not
        // (a late duplicate too: the first delivery's updates may have been lost).
        // At-least-once judges the late events of a redelivered record late again (see
        // `plan_group`), yet the first delivery may have counted them before its own
        // commit moved the watermark past them: when their record was applied at their
        // anchor, their windows are emitted for the same reason.
        let applied_at_anchor = |c: &Candidate| {
            self.config.delivery == Delivery::AtLeastOnce
                && state
                    .items
                    .get(&anchor_of(group, &self.plan_settings(group), c.ts))
                    .and_then(|item| item.high_water.get(&*c.shard))
                    .is_some_and(|hw| c.seq <= *hw)
        };
        let seen: Vec<Candidate> = judged
            .into_iter()
            .filter(|c| match progress.fates[c.index] {
                Some(Fate::Counted(_) | Fate::Duplicate(_)) => true,
                Some(Fate::Late) => applied_at_anchor(c),
                _ => false,
            })
            .collect();
        progress
            .touched
            .extend(keys_to_read(group, &seen, &self.plan_settings(group)));
        GroupEnd::Done
    }

    /// Plans one round of a group against what `state` knows: verdicts and transactions
    /// (the watermark, if it moved, in the last one). `all` are every event of the group
    /// in the batch: the watermark's closing range is decided from them, alike in every
    /// round.
    pub(super) async fn plan_round(
        &self,
        batch: &Batch,
        group: &GroupKey,
        open: &[Candidate],
        all: &[Candidate],
        batch_watermark: Option<i64>,
        state: &State,
    ) -> Result<Round> {
        // Distinct anchor starts first: one key (two strings) per anchor, not per event.
        let starts: BTreeSet<i64> = open
            .iter()
            .map(|c| self.config.windows.anchor().latest_start(c.ts))
            .collect();
        let anchors: Vec<ItemKey> = starts
            .into_iter()
            .map(|start_ms| anchor_of(group, &self.plan_settings(group), start_ms))
            .collect();
        let pages = self.sealed_pages(&state.items, &anchors).await?;
        let plan = plan_group(
            group,
            open,
            &batch.inputs,
            &state.items,
            &pages,
            &self.plan_settings(group),
        );
        let watermark = watermark_write(
            group,
            batch_watermark,
            state.watermarks.get(group),
            all,
            &self.plan_settings(group),
        );
        let txs = transactions(&plan, &state.items, watermark, &self.plan_settings(group));
        Ok(Round {
            duplicates: plan.duplicates,
            late: plan.late,
            txs,
        })
    }

    /// Commits a round's transactions in order. Each committed transaction's events are
    /// counted (and reported) at once, whatever happens after: the write is durable. A
    /// commit whose outcome is unknown reports its events in doubt.
    pub(super) async fn commit_round(
        &self,
        batch: &Batch,
        group: &GroupKey,
        txs: Vec<Transaction>,
        state: &mut State,
        progress: &mut Progress,
    ) -> Result<RoundEnd> {
        for tx in txs {
            progress.stats.transactions += 1;
            match self.store.commit(&tx.writes, tx.watermark.as_ref()).await {
                Ok(Commit::Done) => {
                    progress.stats.items_written += tx.action_count() as u64;
                    progress.committed.insert(group.clone());
                    // The written items become the known state (moved, not copied).
                    for w in tx.writes {
                        progress.touched.insert(w.item.key.clone());
                        state.items.insert(w.item.key.clone(), w.item);
                    }
                    if let Some(w) = tx.watermark {
                        state.watermarks.insert(group.clone(), w.watermark);
                    }
                    for &i in &tx.counted {
                        let fate = Fate::Counted(batch.pending[i].identity);
                        progress.fates[i] = Some(fate);
                        progress.counted.push((i, fate));
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
                    if outcome_unknown(&error) {
                        progress.in_doubt.extend(&tx.counted);
                    }
                    return Err(error);
                }
            }
        }
        Ok(RoundEnd::Committed)
    }

    pub(super) async fn sealed_pages(
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

/// The closing range a group's window updates carry: the stored one (that of the
/// commit that last moved the watermark), unless this batch's commits provably closed
/// nothing: they counted new events without moving the watermark, and the batch is not
/// a redelivery (whose first attempt may have moved it and lost its updates). Detect
/// then reads nothing for the group.
pub(super) fn closing_of(
    batch: &Batch,
    (group, members): &(GroupKey, Vec<usize>),
    before: Option<&GroupWatermark>,
    after: Option<&GroupWatermark>,
    committed: bool,
    allowed_lateness_ms: i64,
) -> Option<ClosingRange> {
    let after = after?;
    let moved = before.is_none_or(|b| b.version != after.version);
    if committed && !moved {
        let candidates: Vec<Candidate> = members
            .iter()
            .map(|i| batch.pending[*i].candidate.clone())
            .collect();
        if !redelivers(&candidates, before) {
            return None;
        }
    }
    debug_assert_eq!(&after.group, group);
    after.closing(allowed_lateness_ms)
}

/// Whether a failed commit may still have been applied: the request went out and no
/// answer came back (a timeout, a reset connection, a 5xx). A throttled or refused
/// request (limits, validation, access) was not applied.
pub(super) fn outcome_unknown(error: &Error) -> bool {
    matches!(
        error,
        Error::Remote {
            retryable: true,
            ..
        }
    )
}
