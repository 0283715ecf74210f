//! Aggregate: assign event-time windows, combine the batch in memory, and merge into
//! the aggregates table with one consistent read and one conditional transaction per
//! group (see `idempotency.rs` for why that counts every event exactly once).
//!
//! Per batch: decode → read every touched item and group watermark at once → per
//! group: judge lateness, plan, commit (watermark in the same transaction), on
//! conflict re-read and re-plan → emit window updates and dead letters.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::AggregateConfig;
use crate::dead_letter::DeadLetter;
use crate::envelope::{Reason, Rejection};
use crate::error::{Error, Result};
use crate::fingerprint::{FingerprintSet, fingerprint};
use crate::idempotency::{
    Candidate, anchor_of, event_identity, judge_lateness, keys_to_read, plan_group, transactions,
};
use crate::item::{AggregateItem, GroupKey, GroupWatermark, ItemKey, WatermarkWrite};
use crate::outcome::BatchOutcome;
use crate::ports::{AggregateStore, Clock, Commit, EventLedger, Fate, Loaded, RecordSink};
use crate::record::{PACKED_RECORD_BYTES, StreamRecord, pack_lines};
use crate::sequence::SeqNo;
use crate::stage::{Stage, deadline_passed, decode_events, fail_whole_batch, failure_at};

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

fn split_loaded(
    loaded: Loaded,
) -> (
    HashMap<ItemKey, AggregateItem>,
    HashMap<GroupKey, GroupWatermark>,
) {
    (
        loaded
            .items
            .into_iter()
            .map(|i| (i.key.clone(), i))
            .collect(),
        loaded
            .watermarks
            .into_iter()
            .map(|w| (w.group.clone(), w))
            .collect(),
    )
}

struct Pending {
    record: usize,
    origin: String,
    identity: u64,
    id: Option<String>,
    group: GroupKey,
    candidate: Candidate,
}

impl<S, O, D, L, C> Aggregate<S, O, D, L, C>
where
    S: AggregateStore,
    O: RecordSink,
    D: RecordSink,
    L: EventLedger,
    C: Clock,
{
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
        "aggregate"
    }

    async fn process(&self, records: &[StreamRecord], deadline_ms: Option<i64>) -> BatchOutcome {
        let mut outcome = BatchOutcome {
            records: records.len(),
            ..Default::default()
        };
        let margin = self.config.common.deadline_margin_ms;
        if let Some(err) = deadline_passed(&self.clock, deadline_ms, margin) {
            outcome.failure = Some(failure_at(records, 0, err));
            return outcome;
        }
        let (events, rejected) = decode_events(self.name(), records);

        let mut pending: Vec<Pending> = Vec::with_capacity(events.len());
        for d in events {
            let record = &records[d.record];
            let seq = SeqNo::parse(&record.sequence_number).unwrap_or_else(SeqNo::zero);
            let origin = d.event.origin.clone().unwrap_or_default();
            let group = GroupKey {
                key: d.event.key.clone(),
                metric: d.event.metric.clone(),
            };
            let anchor = anchor_of(&group, &self.config, d.event.ts);
            pending.push(Pending {
                record: d.record,
                identity: event_identity(self.config.delivery, &d.event.id, &anchor, &origin),
                origin,
                id: Some(d.event.id.clone()),
                candidate: Candidate {
                    index: pending.len(),
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

        // Groups in order of first appearance.
        let mut group_order: Vec<GroupKey> = Vec::new();
        let mut members: HashMap<GroupKey, Vec<usize>> = HashMap::new();
        for (i, p) in pending.iter().enumerate() {
            members
                .entry(p.group.clone())
                .or_insert_with(|| {
                    group_order.push(p.group.clone());
                    Vec::new()
                })
                .push(i);
        }

        // One consistent read of every touched item and every group's watermark.
        let mut read_keys = Vec::new();
        for g in &group_order {
            let cands: Vec<Candidate> = members[g]
                .iter()
                .map(|i| pending[*i].candidate.clone())
                .collect();
            read_keys.extend(keys_to_read(g, &cands, &self.config));
        }
        let (mut items, mut watermarks) = match self.store.load(&read_keys, &group_order).await {
            Ok(loaded) => split_loaded(loaded),
            Err(error) => {
                fail_whole_batch(&mut outcome, records, error);
                return outcome;
            }
        };

        let mut fates: Vec<Option<Fate>> = vec![None; pending.len()];
        let mut written: BTreeMap<ItemKey, AggregateItem> = BTreeMap::new();
        let mut stop: Option<Error> = None;
        'groups: for g in &group_order {
            let mut open: Vec<Candidate> = members[g]
                .iter()
                .map(|i| pending[*i].candidate.clone())
                .collect();
            // Lateness is judged once, in processing order, against the stored watermark;
            // a conflict below re-reads items but keeps these verdicts.
            let stored_wm = watermarks.get(g).map(|w| w.watermark_ms);
            let batch_wm = judge_lateness(&mut open, stored_wm, &self.config);
            let mut attempts = 0;
            loop {
                if let Some(err) = deadline_passed(&self.clock, deadline_ms, margin) {
                    stop = Some(err);
                    break 'groups;
                }
                attempts += 1;
                let anchors: Vec<ItemKey> = open
                    .iter()
                    .map(|c| anchor_of(g, &self.config, c.ts))
                    .collect();
                let pages = match self.sealed_pages(&items, &anchors).await {
                    Ok(p) => p,
                    Err(e) => {
                        stop = Some(e);
                        break 'groups;
                    }
                };
                let plan = plan_group(g, &open, &items, &pages, &self.config);
                let txs = transactions(&plan, &items, &self.config);
                // The watermark goes with the group's last transaction (or alone).
                let current = watermarks.get(g).cloned();
                let wm_write = batch_wm
                    .filter(|wm| current.as_ref().is_none_or(|c| *wm > c.watermark_ms))
                    .map(|wm| WatermarkWrite {
                        watermark: GroupWatermark {
                            group: g.clone(),
                            watermark_ms: wm,
                            version: current.as_ref().map_or(0, |c| c.version) + 1,
                        },
                        expected_version: current.as_ref().map_or(0, |c| c.version),
                    });
                let mut conflict = None;
                let tx_count = txs.len().max(usize::from(wm_write.is_some()));
                for n in 0..tx_count {
                    let writes = txs.get(n).map_or(&[][..], |t| &t.writes[..]);
                    let counted = txs.get(n).map_or(&[][..], |t| &t.counted[..]);
                    let wm = if n + 1 == tx_count {
                        wm_write.as_ref()
                    } else {
                        None
                    };
                    outcome.stats.transactions += 1;
                    match self.store.commit(writes, wm).await {
                        Ok(Commit::Done) => {
                            for w in writes {
                                outcome.stats.items_written += 1 + w.sealed_page.len() as u64;
                                items.insert(w.item.key.clone(), w.item.clone());
                                written.insert(w.item.key.clone(), w.item.clone());
                            }
                            if let Some(w) = wm {
                                outcome.stats.items_written += 1;
                                watermarks.insert(g.clone(), w.watermark.clone());
                            }
                            for &i in counted {
                                let fate = Fate::Counted(pending[i].identity);
                                fates[i] = Some(fate);
                                self.ledger.settled(&pending[i].origin, fate);
                            }
                            let settled: std::collections::HashSet<usize> =
                                counted.iter().copied().collect();
                            open.retain(|c| !settled.contains(&c.index));
                        }
                        Ok(Commit::Conflict) => {
                            conflict = Some(
                                writes
                                    .first()
                                    .map_or_else(|| g.partition_key(), |w| w.item.key.describe()),
                            );
                            break;
                        }
                        Err(e) => {
                            if matches!(
                                e,
                                Error::Injected {
                                    after_commit: true,
                                    ..
                                }
                            ) {
                                // Fault injection only: the write happened; book it.
                                for &i in counted {
                                    self.ledger.settled(
                                        &pending[i].origin,
                                        Fate::Counted(pending[i].identity),
                                    );
                                }
                            }
                            stop = Some(e);
                            break 'groups;
                        }
                    }
                }
                let Some(item) = conflict else {
                    for &i in &plan.duplicates {
                        fates[i] = Some(Fate::Duplicate(pending[i].identity));
                    }
                    for &i in &plan.late {
                        fates[i] = Some(Fate::Late);
                    }
                    break;
                };
                outcome.stats.conflicts += 1;
                if attempts >= self.config.max_commit_attempts {
                    stop = Some(Error::Conflict { item, attempts });
                    break 'groups;
                }
                // Someone else wrote: re-read this group's items and plan again.
                let keys = keys_to_read(g, &open, &self.config);
                match self.store.load(&keys, std::slice::from_ref(g)).await {
                    Ok(fresh) => {
                        for k in &keys {
                            items.remove(k);
                        }
                        watermarks.remove(g);
                        let (fresh_items, fresh_wms) = split_loaded(fresh);
                        items.extend(fresh_items);
                        watermarks.extend(fresh_wms);
                    }
                    Err(e) => {
                        stop = Some(e);
                        break 'groups;
                    }
                }
            }
        }

        // Everything before the first record with an unsettled event is done.
        let done = if stop.is_some() {
            pending
                .iter()
                .zip(&fates)
                .filter(|(_, f)| f.is_none())
                .map(|(p, _)| p.record)
                .min()
                .unwrap_or(records.len())
        } else {
            records.len()
        };

        let mut dead = Vec::new();
        let mut settle = Vec::new();
        for r in rejected.iter().filter(|r| r.record < done) {
            dead.push(r.out.clone());
            settle.push((r.origin.clone(), Fate::DeadLetter(r.reason)));
            outcome.stats.dead_letter(r.reason);
        }
        for (p, fate) in pending.iter().zip(&fates) {
            if p.record >= done {
                continue;
            }
            match fate {
                Some(Fate::Counted(_)) => outcome.stats.counted += 1,
                Some(Fate::Duplicate(identity)) => {
                    outcome.stats.duplicates += 1;
                    settle.push((p.origin.clone(), Fate::Duplicate(*identity)));
                }
                Some(Fate::Late) => {
                    outcome.stats.dead_letter(Reason::Late);
                    settle.push((p.origin.clone(), Fate::Late));
                    let rejection = Rejection {
                        reason: Reason::Late,
                        field: Some("ts"),
                        detail: format!(
                            "event time {} is in a window that closed more than {} ms before the watermark",
                            p.candidate.ts, self.config.allowed_lateness_ms
                        ),
                        id: p.id.clone(),
                    };
                    let record = &records[p.record];
                    let line = serde_json::json!({
                        "id": p.id, "key": p.group.key, "type": p.group.metric,
                        "ts": p.candidate.ts, "value": p.candidate.value, "origin": p.origin,
                    });
                    let bytes = serde_json::to_vec(&line).unwrap_or_default();
                    dead.push(
                        DeadLetter::for_line(self.name(), record, 0, &bytes, &rejection)
                            .with_origin(Some(p.origin.clone()))
                            .into_record(&record.partition_key),
                    );
                }
                Some(Fate::DeadLetter(_)) | None => {}
            }
        }
        outcome.stats.records = done as u64;
        outcome.stats.events_in = pending.iter().filter(|p| p.record < done).count() as u64
            + rejected.iter().filter(|r| r.record < done).count() as u64;

        let updates = written.values().map(|item| {
            let line = serde_json::to_vec(&item.update()).unwrap_or_default();
            (item.key.group.key.clone(), line)
        });
        let emitted = async {
            self.updates
                .put_records(pack_lines(updates, PACKED_RECORD_BYTES)?)
                .await?;
            self.dead_letters.put_records(dead).await
        };
        if let Err(error) = emitted.await {
            let (transactions, items_written, conflicts) = (
                outcome.stats.transactions,
                outcome.stats.items_written,
                outcome.stats.conflicts,
            );
            fail_whole_batch(&mut outcome, records, error);
            outcome.stats.transactions = transactions;
            outcome.stats.items_written = items_written;
            outcome.stats.conflicts = conflicts;
            return outcome;
        }
        for (origin, fate) in settle {
            self.ledger.settled(&origin, fate);
        }
        if let Some(error) = stop {
            if done < records.len() {
                outcome.failure = Some(failure_at(records, done, error));
            }
        }
        outcome
    }
}
