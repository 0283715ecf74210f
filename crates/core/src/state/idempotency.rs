//! Exactly-once (and at-least-once) accounting for the aggregate stage.
//!
//! Invariant: every event is judged against its *anchor* item (the finest tumbling
//! window containing its event time). Duplicates of one event share key, type and
//! event time, so they always meet in the same anchor item. The anchor item and every
//! coarser item the same events feed are written in one transaction under version
//! conditions, so a decision taken at the anchor holds for all of them.
//!
//! - Exactly-once: the anchor keeps the fingerprints of the ids it counted; hot anchors
//!   seal fingerprints into immutable pages (separate items) so the anchor stays small.
//! - At-least-once: the anchor keeps, per source shard, the highest sequence number it
//!   applied; a redelivered record is skipped, a re-sent event is not.
//!
//! The order of checks matters: "already applied" comes before "late", so a
//! redelivered event that was counted stays counted rather than turning late.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;
use std::sync::Arc;

use std::fmt;
use std::str::FromStr;

use crate::sql::{AggregateKind, Value};
use crate::state::delta::Delta;
use crate::state::fingerprint::FingerprintSet;
use crate::state::item::{
    AggregateItem, GroupKey, GroupWatermark, ItemKey, ItemWrite, WatermarkWrite,
};
use crate::state::limits::dynamodb as limits;
use crate::state::sequence::SeqNo;
use crate::state::window::{WindowSet, WindowSpec};

/// How duplicates are handled by the aggregate stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Delivery {
    /// Fingerprints of event ids in the anchor item: collapses redeliveries, producer
    /// duplicates and upstream re-emits.
    #[default]
    ExactlyOnce,
    /// Per-shard high-water marks of sequence numbers: collapses the stage's own retries
    /// only. Cheaper for very hot keys.
    AtLeastOnce,
}

impl FromStr for Delivery {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "exactly-once" => Ok(Delivery::ExactlyOnce),
            "at-least-once" => Ok(Delivery::AtLeastOnce),
            other => Err(format!(
                "{other:?} is neither exactly-once nor at-least-once"
            )),
        }
    }
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Delivery::ExactlyOnce => "exactly-once",
            Delivery::AtLeastOnce => "at-least-once",
        })
    }
}

/// What the planner needs of the aggregate stage's configuration
/// ([`crate::config::AggregateConfig::accounting`]), borrowed: the windows an event
/// feeds, the delivery mode, lateness, retention and the anchor's fingerprint cap.
#[derive(Clone, Copy, Debug)]
pub struct PlanSettings<'a> {
    pub windows: &'a WindowSet,
    /// A SQL view's aggregates (`None` for the envelope's metrics).
    pub fold: Option<&'a [AggregateKind]>,
    /// The most bytes a view item's aggregate states can take (0 for the envelope):
    /// coarser items are sized with it before their merged states are known.
    pub max_columns_bytes: usize,
    pub delivery: Delivery,
    pub allowed_lateness_ms: i64,
    /// Aggregates expire (DynamoDB TTL) this long after their window ends; 0: never.
    pub retention_ms: i64,
    /// Fingerprints kept in an anchor item before they are sealed into a page.
    pub head_fingerprint_cap: usize,
}

/// DynamoDB's limit of actions in one `TransactWriteItems`.
pub const MAX_TRANSACTION_ITEMS: usize = 100;
/// DynamoDB allows 4 MB per transaction. The planner's sizes are DynamoDB's own for
/// anchors, pages and the watermark ([`crate::state::limits::dynamodb`]) and upper bounds for
/// the coarser items ([`AggregateItem::max_stored_size`]), so a plan within this is
/// within DynamoDB's limit; it still aims half a megabyte lower.
pub const MAX_TRANSACTION_BYTES: usize = 3_500_000;
/// A sealed page holds at most this many fingerprints (320 KB, under the 400 KB limit).
pub const MAX_PAGE_FINGERPRINTS: usize = 40_000;
/// One anchor write seals at most this many pages (about 1.9 MB), so an anchor with its
/// pages, its coarser items (at most [`crate::state::window::MAX_WINDOWS_PER_EVENT`]) and the
/// group watermark always fits in one transaction. The planner defers the events of an
/// anchor beyond [`fresh_per_anchor`] to a later round of the same batch.
pub const MAX_SEALED_PAGES_PER_WRITE: usize = 6;

/// How many new events one anchor takes per planning round: sealing moves the head
/// (at most `head_fingerprint_cap`) and the new fingerprints into pages, which must
/// stay within [`MAX_SEALED_PAGES_PER_WRITE`].
pub fn fresh_per_anchor(config: &PlanSettings<'_>) -> usize {
    (MAX_SEALED_PAGES_PER_WRITE * MAX_PAGE_FINGERPRINTS)
        .saturating_sub(config.head_fingerprint_cap)
        .max(1)
}

/// Hashes a fingerprint to itself: fingerprints are already uniform (the first bits of
/// an MD5), so hashing them again (SipHash, per event) buys nothing.
#[derive(Default)]
pub struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (a `u64` key); fold anything else in all the same.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// One event of a group, as the planner needs it.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Index in the stage's event list (echoed back in verdicts).
    pub index: usize,
    pub ts: i64,
    pub value: f64,
    /// A SQL view's event: where each aggregate's input (`None`: left out by its FILTER)
    /// lies in the batch's inputs that [`plan_group`] is given.
    pub adds: Option<Range<u32>>,
    /// [`event_identity`]: what exactly-once de-duplicates on within the anchor.
    pub fingerprint: u64,
    /// The source shard, shared by every event of the batch from it (cloned per
    /// candidate and per plan, so it must not allocate).
    pub shard: Arc<str>,
    pub seq: SeqNo,
    /// The event's anchor window closed more than the allowed lateness before the
    /// watermark it was read under.
    pub late: bool,
}

/// What de-duplication treats as "the same event", as one fingerprint per event: in
/// exactly-once mode that of its id (the anchor item stores it; the anchor scopes it to
/// the group and window); in at-least-once mode that of its producer write (origin),
/// which is only reported (that mode de-duplicates by sequence number).
pub fn event_identity(delivery: Delivery, id: &str, origin: &str) -> u64 {
    match delivery {
        Delivery::ExactlyOnce => crate::state::fingerprint::fingerprint(id),
        Delivery::AtLeastOnce => crate::state::fingerprint::fingerprint(origin),
    }
}

/// The anchor item key of an event time.
pub fn anchor_of(group: &GroupKey, config: &PlanSettings<'_>, ts: i64) -> ItemKey {
    let spec = config.windows.anchor();
    ItemKey {
        group: group.clone(),
        window: spec,
        start_ms: spec.latest_start(ts),
    }
}

/// Judges lateness in processing order and returns the group's new watermark.
///
/// A group's watermark is the start of the newest anchor window it has seen an event
/// in (stored, or earlier in this batch). An event is late when its anchor window ended
/// more than the allowed lateness before the watermark. Because Kinesis keeps order
/// only per partition key, a per-group watermark (key is the partition key) gives the
/// same verdicts however shards, lanes and upstream stages interleave different keys.
pub fn judge_lateness(
    candidates: &mut [Candidate],
    stored: Option<i64>,
    config: &PlanSettings<'_>,
) -> Option<i64> {
    let anchor = config.windows.anchor();
    let mut watermark = stored;
    for c in candidates.iter_mut() {
        let start = anchor.latest_start(c.ts);
        let end = start.saturating_add(anchor.size_ms);
        c.late = watermark.is_some_and(|w| end.saturating_add(config.allowed_lateness_ms) < w);
        watermark = Some(watermark.map_or(start, |w| w.max(start)));
    }
    watermark
}

/// Every key a group's events may need: their anchors and every coarser window they
/// fall in, late or not (a late event may turn out to be a duplicate of one counted
/// earlier, and the stage emits a snapshot of every window such an event fell in).
pub fn keys_to_read(
    group: &GroupKey,
    candidates: &[Candidate],
    config: &PlanSettings<'_>,
) -> Vec<ItemKey> {
    keys_to_read_at(group, candidates.iter().map(|c| c.ts), config)
}

/// [`keys_to_read`] from the events' times alone. Windows are collected first and the
/// keys built once per distinct window (the group is the same in every key, so the
/// order is that of `ItemKey`'s).
pub fn keys_to_read_at(
    group: &GroupKey,
    times: impl IntoIterator<Item = i64>,
    config: &PlanSettings<'_>,
) -> Vec<ItemKey> {
    let anchor = config.windows.anchor();
    let mut windows = std::collections::BTreeSet::new();
    for ts in times {
        windows.insert((anchor, anchor.latest_start(ts)));
        windows.extend(config.windows.coarser_windows_of(ts));
    }
    windows
        .into_iter()
        .map(|(window, start_ms)| ItemKey {
            group: group.clone(),
            window,
            start_ms,
        })
        .collect()
}

/// What to write for one anchor window.
#[derive(Clone, Debug)]
pub struct AnchorPlan {
    pub write: ItemWrite,
    pub counted: Vec<usize>,
    /// What the counted events add to each coarser window.
    pub coarse: Vec<(ItemKey, Delta)>,
}

#[derive(Clone, Debug, Default)]
pub struct GroupPlan {
    pub anchors: Vec<AnchorPlan>,
    pub duplicates: Vec<usize>,
    pub late: Vec<usize>,
    /// New events of anchors that already took [`fresh_per_anchor`] events this round:
    /// planned again after this round commits.
    pub deferred: Vec<usize>,
}

/// Decides each candidate's fate against the stored anchors and builds the writes.
/// `pages` holds the sealed fingerprint pages of every anchor that has some; `inputs`
/// the aggregate inputs the candidates' `adds` index (SQL views only).
pub fn plan_group(
    group: &GroupKey,
    candidates: &[Candidate],
    inputs: &[Option<Value>],
    items: &HashMap<ItemKey, AggregateItem>,
    pages: &HashMap<ItemKey, Vec<Arc<FingerprintSet>>>,
    config: &PlanSettings<'_>,
) -> GroupPlan {
    // Keyed by window start (and size): the group is the same throughout, so no
    // per-event key (with its two strings) is built; item keys are made once per window.
    struct Work {
        item: AggregateItem,
        delta: Delta,
        counted: Vec<usize>,
        coarse: BTreeMap<(WindowSpec, i64), Delta>,
        max_seq: BTreeMap<Arc<str>, SeqNo>,
        /// Fingerprints accepted in this batch (merged into the item once, at the end).
        fresh: HashSet<u64, BuildHasherDefault<FingerprintHasher>>,
    }
    let mut plan = GroupPlan::default();
    let fresh_cap = fresh_per_anchor(config);
    let anchor_spec = config.windows.anchor();
    let mut work: BTreeMap<i64, Work> = BTreeMap::new();
    for c in candidates {
        let w = work
            .entry(anchor_spec.latest_start(c.ts))
            .or_insert_with(|| {
                let anchor = anchor_of(group, config, c.ts);
                Work {
                    item: items
                        .get(&anchor)
                        .cloned()
                        .unwrap_or_else(|| AggregateItem::new(anchor)),
                    delta: Delta::default(),
                    counted: Vec::new(),
                    coarse: BTreeMap::new(),
                    max_seq: BTreeMap::new(),
                    fresh: HashSet::default(),
                }
            });
        let already_applied = match config.delivery {
            Delivery::ExactlyOnce => {
                w.fresh.contains(&c.fingerprint)
                    || w.item.fingerprints.contains(c.fingerprint)
                    || pages
                        .get(&w.item.key)
                        .is_some_and(|ps| ps.iter().any(|p| p.contains(c.fingerprint)))
            }
            Delivery::AtLeastOnce => w
                .item
                .high_water
                .get(&*c.shard)
                .is_some_and(|hw| c.seq <= *hw),
        };
        // At-least-once marks whole records as applied, and a record may also hold
        // events that were late the first time: those are late again, not duplicates.
        if already_applied && !(c.late && config.delivery == Delivery::AtLeastOnce) {
            plan.duplicates.push(c.index);
            continue;
        }
        if c.late {
            plan.late.push(c.index);
            continue;
        }
        if w.counted.len() >= fresh_cap {
            plan.deferred.push(c.index);
            continue;
        }
        if config.delivery == Delivery::ExactlyOnce {
            w.fresh.insert(c.fingerprint);
        } else {
            match w.max_seq.get_mut(&c.shard) {
                Some(seq) if c.seq > *seq => *seq = c.seq.clone(),
                Some(_) => {}
                None => {
                    w.max_seq.insert(c.shard.clone(), c.seq.clone());
                }
            }
        }
        let adds = c
            .adds
            .clone()
            .map(|r| &inputs[r.start as usize..r.end as usize]);
        w.delta.push(c.value, adds, config.fold);
        w.counted.push(c.index);
    }
    for (anchor_start, mut w) in work {
        if w.counted.is_empty() {
            continue;
        }
        // A coarser window holds whole anchor windows (its size and slide are multiples
        // of the anchor's): what the batch adds to it from this anchor is the anchor's
        // delta, merged once rather than pushed event by event.
        for window in config.windows.coarser_windows_of(anchor_start) {
            w.coarse
                .entry(window)
                .or_default()
                .merge(&w.delta, config.fold);
        }
        let expected_version = w.item.version;
        w.item.version += 1;
        w.item.fingerprints.extend(w.fresh.drain());
        w.delta.apply(&mut w.item, config.fold);
        for (shard, seq) in w.max_seq {
            match w.item.high_water.get_mut(&*shard) {
                Some(hw) if seq > *hw => *hw = seq,
                Some(_) => {}
                None => {
                    w.item.high_water.insert(shard.to_string(), seq);
                }
            }
        }
        w.item.expires_at_s = expiry(&w.item.key, config);
        let mut sealed_page = Vec::new();
        if w.item.fingerprints.len() > config.head_fingerprint_cap {
            let all: Vec<u64> = w.item.fingerprints.take().iter().collect();
            for chunk in all.chunks(MAX_PAGE_FINGERPRINTS) {
                w.item.sealed_pages += 1;
                let mut page = FingerprintSet::new();
                page.extend(chunk.iter().copied());
                sealed_page.push((w.item.sealed_pages, page));
            }
        }
        plan.anchors.push(AnchorPlan {
            write: ItemWrite {
                item: w.item,
                expected_version,
                sealed_page,
            },
            counted: w.counted,
            coarse: w
                .coarse
                .into_iter()
                .map(|((window, start_ms), state)| {
                    let key = ItemKey {
                        group: group.clone(),
                        window,
                        start_ms,
                    };
                    (key, state)
                })
                .collect(),
        });
    }
    plan
}

fn expiry(key: &ItemKey, config: &PlanSettings<'_>) -> Option<i64> {
    (config.retention_ms > 0).then(|| (key.end_ms() + config.retention_ms) / 1000)
}

/// Whether the batch delivers again a record of the group that the batch which wrote
/// `stored` already held: then it may be the retry of an attempt that committed and lost
/// its window updates. Kinesis delivers one partition key (one group) from one shard in
/// sequence order, so a fresh batch only holds records after the stored one; a retry
/// holds the same records again. (Producer duplicates and upstream re-emits come in new
/// records, so they are not redeliveries.)
pub fn redelivers(candidates: &[Candidate], stored: Option<&GroupWatermark>) -> bool {
    let Some((shard, seq)) = stored.and_then(|w| w.last_record.as_ref()) else {
        return false;
    };
    candidates
        .iter()
        .any(|c| *c.shard == **shard && c.seq <= *seq)
}

/// The group watermark to write with a group's aggregates, if the batch moved it.
///
/// `candidates` are all the group's events in the batch (every round passes the same
/// ones, so every round decides alike). The new watermark's `closed_from_ms` makes
/// [`GroupWatermark::closing`] the windows this commit closes: the stored watermark
/// (what was closed before stays closed); on a redelivery, the stored `closed_from_ms`
/// instead, so that the range also covers what the first attempt closed (its window
/// updates may have been lost); for the group's first watermark, the earliest anchor
/// start of its events (no window of the group ends before it).
pub fn watermark_write(
    group: &GroupKey,
    batch_watermark: Option<i64>,
    current: Option<&GroupWatermark>,
    candidates: &[Candidate],
    config: &PlanSettings<'_>,
) -> Option<WatermarkWrite> {
    let wm = batch_watermark.filter(|wm| current.is_none_or(|c| *wm > c.watermark_ms))?;
    let expected_version = current.map_or(0, |c| c.version);
    let anchor = config.windows.anchor();
    let closed_from_ms = match current {
        Some(c) if redelivers(candidates, current) => c.closed_from_ms,
        Some(c) => c.watermark_ms,
        None => candidates
            .iter()
            .map(|c| anchor.latest_start(c.ts))
            .min()
            .unwrap_or(wm),
    };
    // The batch's last record of the group (a batch comes from one shard).
    let last_record = candidates
        .iter()
        .max_by(|a, b| a.seq.cmp(&b.seq))
        .map(|c| (c.shard.to_string(), c.seq.clone()))
        .or_else(|| current.and_then(|c| c.last_record.clone()));
    Some(WatermarkWrite {
        watermark: GroupWatermark {
            group: group.clone(),
            watermark_ms: wm,
            closed_from_ms,
            last_record,
            version: expected_version + 1,
        },
        expected_version,
    })
}

/// One `TransactWriteItems` worth of writes and the events it counts.
#[derive(Clone, Debug)]
pub struct Transaction {
    pub writes: Vec<ItemWrite>,
    /// The group watermark, in the group's last transaction only.
    pub watermark: Option<WatermarkWrite>,
    pub counted: Vec<usize>,
}

impl Transaction {
    /// Actions of the `TransactWriteItems`: items, sealed pages and the watermark.
    pub fn action_count(&self) -> usize {
        self.writes
            .iter()
            .map(|w| 1 + w.sealed_page.len())
            .sum::<usize>()
            + usize::from(self.watermark.is_some())
    }

    /// Stored bytes of everything the transaction writes, as DynamoDB sizes them.
    pub fn byte_size(&self) -> usize {
        self.writes.iter().map(write_size).sum::<usize>()
            + self
                .watermark
                .as_ref()
                .map_or(0, |w| w.watermark.stored_size())
    }
}

/// The stored bytes of a write: the item and its sealed pages, exactly (they are
/// final when planned).
fn write_size(w: &ItemWrite) -> usize {
    w.item.stored_size()
        + w.sealed_page
            .iter()
            .map(|(n, p)| limits::page_size(&w.item.key, *n, p, w.item.expires_at_s))
            .sum::<usize>()
}

/// At least the stored size of a coarser item once written: its counts are merged
/// later (and carried from one transaction to the next), so they are sized at their
/// largest; its expiry is the one [`transactions`] writes.
fn coarse_size(
    key: &ItemKey,
    items: &HashMap<ItemKey, AggregateItem>,
    config: &PlanSettings<'_>,
) -> usize {
    let mut item = items
        .get(key)
        .cloned()
        .unwrap_or_else(|| AggregateItem::new(key.clone()));
    item.expires_at_s = expiry(key, config);
    item.columns.clear();
    item.max_stored_size() + config.max_columns_bytes
}

/// Splits a group plan into transactions within DynamoDB's limits (100 actions, 4 MB,
/// no item twice). Each anchor goes whole into one transaction together with its sealed
/// pages and the coarser items it feeds, so they never disagree; a coarser item shared
/// by several transactions is written in each, its version carried forward from one to
/// the next. Every transaction keeps one action and the watermark's bytes free, so the
/// watermark fits in whichever transaction is last; with no anchor to write, the
/// watermark (if any) goes alone.
///
/// An anchor with its pages, coarse items and the watermark fits in one transaction
/// because of [`crate::state::window::MAX_WINDOWS_PER_EVENT`] and
/// [`MAX_SEALED_PAGES_PER_WRITE`]; were it ever larger it would still go alone, and the
/// store's limit check would reject it (a per-group, non-retryable failure).
pub fn transactions(
    plan: &GroupPlan,
    items: &HashMap<ItemKey, AggregateItem>,
    watermark: Option<WatermarkWrite>,
    config: &PlanSettings<'_>,
) -> Vec<Transaction> {
    let reserved_actions = usize::from(watermark.is_some());
    let reserved_bytes = watermark.as_ref().map_or(0, |w| w.watermark.stored_size());
    let max_actions = MAX_TRANSACTION_ITEMS - reserved_actions;
    let max_bytes = MAX_TRANSACTION_BYTES - reserved_bytes;
    let mut chunks: Vec<Vec<&AnchorPlan>> = Vec::new();
    let (mut count, mut bytes) = (0usize, 0usize);
    let mut seen_coarse = std::collections::BTreeSet::new();
    for anchor in &plan.anchors {
        let new_coarse: Vec<&ItemKey> = anchor
            .coarse
            .iter()
            .map(|(k, _)| k)
            .filter(|k| !seen_coarse.contains(*k))
            .collect();
        let need = 1 + anchor.write.sealed_page.len() + new_coarse.len();
        let size = write_size(&anchor.write)
            + new_coarse
                .iter()
                .map(|k| coarse_size(k, items, config))
                .sum::<usize>();
        let full = count + need > max_actions || bytes + size > max_bytes;
        if chunks.is_empty() || (full && count > 0) {
            chunks.push(Vec::new());
            seen_coarse.clear();
            count = 0;
            bytes = 0;
        }
        // Recount against the (possibly new) chunk: every coarse item is new there.
        for (k, _) in &anchor.coarse {
            if seen_coarse.insert(k.clone()) {
                count += 1;
                bytes += coarse_size(k, items, config);
            }
        }
        count += 1 + anchor.write.sealed_page.len();
        bytes += write_size(&anchor.write);
        if let Some(last) = chunks.last_mut() {
            last.push(anchor);
        }
    }
    let mut running: HashMap<ItemKey, AggregateItem> = HashMap::new();
    let mut txs: Vec<Transaction> = chunks
        .into_iter()
        .map(|chunk| {
            let mut writes = Vec::new();
            let mut counted = Vec::new();
            let mut delta: BTreeMap<ItemKey, Delta> = BTreeMap::new();
            for a in chunk {
                writes.push(a.write.clone());
                counted.extend_from_slice(&a.counted);
                for (k, s) in &a.coarse {
                    delta.entry(k.clone()).or_default().merge(s, config.fold);
                }
            }
            for (key, d) in delta {
                let current = running.entry(key.clone()).or_insert_with(|| {
                    items
                        .get(&key)
                        .cloned()
                        .unwrap_or_else(|| AggregateItem::new(key.clone()))
                });
                let mut next = current.clone();
                d.apply(&mut next, config.fold);
                next.version += 1;
                next.expires_at_s = expiry(&key, config);
                writes.push(ItemWrite {
                    item: next.clone(),
                    expected_version: current.version,
                    sealed_page: Vec::new(),
                });
                *current = next;
            }
            Transaction {
                writes,
                watermark: None,
                counted,
            }
        })
        .collect();
    if let Some(wm) = watermark {
        match txs.last_mut() {
            Some(last) => last.watermark = Some(wm),
            None => txs.push(Transaction {
                writes: Vec::new(),
                watermark: Some(wm),
                counted: Vec::new(),
            }),
        }
    }
    txs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AggregateConfig;
    use crate::state::fingerprint::fingerprint;
    use crate::state::item::{GroupWatermark, WatermarkWrite};
    use crate::state::window::{WindowSet, WindowSpec};

    fn group() -> GroupKey {
        GroupKey {
            key: "k".into(),
            metric: "t".into(),
        }
    }

    proptest::proptest! {
        /// Reading by window first gives the very keys (and order) of one key per event
        /// and window.
        #[test]
        fn keys_to_read_lists_each_window_of_each_event_once_in_key_order(
            times in proptest::collection::vec(0i64..10_000_000_000, 0..50),
        ) {
            let config = AggregateConfig::default();
            let mut expected = std::collections::BTreeSet::new();
            for &ts in &times {
                expected.insert(anchor_of(&group(), &config.plan_settings(), ts));
                for (window, start_ms) in config.windows.coarser_windows_of(ts) {
                    expected.insert(ItemKey { group: group(), window, start_ms });
                }
            }
            let expected: Vec<ItemKey> = expected.into_iter().collect();
            proptest::prop_assert_eq!(keys_to_read_at(&group(), times.iter().copied(), &config.plan_settings()), expected);
        }
    }

    fn cand(index: usize, id: &str, ts: i64, value: f64, seq: u64) -> Candidate {
        Candidate {
            index,
            ts,
            value,
            adds: None,
            fingerprint: fingerprint(id),
            shard: "s0".into(),
            seq: SeqNo::parse(&seq.to_string()).expect("digits"),
            late: false,
        }
    }

    fn apply(items: &mut HashMap<ItemKey, AggregateItem>, txs: &[Transaction]) {
        for tx in txs {
            for w in &tx.writes {
                let stored = items.get(&w.item.key).map_or(0, |i| i.version);
                assert_eq!(stored, w.expected_version, "version chain");
                items.insert(w.item.key.clone(), w.item.clone());
            }
        }
    }

    #[test]
    fn duplicates_within_and_across_batches_collapse() {
        let config = AggregateConfig::default();
        let mut items = HashMap::new();
        let batch = [
            cand(0, "a", 1_000, 1.0, 1),
            cand(1, "a", 1_000, 1.0, 2),
            cand(2, "b", 61_000, 5.0, 3),
        ];
        let plan = plan_group(
            &group(),
            &batch,
            &[],
            &items,
            &HashMap::new(),
            &config.plan_settings(),
        );
        assert_eq!(plan.duplicates, vec![1]);
        let txs = transactions(&plan, &items, None, &config.plan_settings());
        assert_eq!(txs.len(), 1);
        assert_eq!(txs[0].writes.len(), 3, "two minute anchors and one hour");
        apply(&mut items, &txs);
        let hour = ItemKey {
            group: group(),
            window: WindowSpec::tumbling(3600),
            start_ms: 0,
        };
        assert_eq!(items[&hour].state.count, 2);
        assert_eq!(items[&hour].state.total(), 6.0);
        // Redelivery of the whole batch: nothing new.
        let plan = plan_group(
            &group(),
            &batch,
            &[],
            &items,
            &HashMap::new(),
            &config.plan_settings(),
        );
        assert!(plan.anchors.is_empty());
        assert_eq!(plan.duplicates, vec![0, 1, 2]);
    }

    #[test]
    fn already_applied_beats_late() {
        let config = AggregateConfig::default();
        let mut items = HashMap::new();
        let first = [cand(0, "a", 1_000, 1.0, 1)];
        let plan = plan_group(
            &group(),
            &first,
            &[],
            &items,
            &HashMap::new(),
            &config.plan_settings(),
        );
        let txs = transactions(&plan, &items, None, &config.plan_settings());
        apply(&mut items, &txs);
        let mut again = cand(0, "a", 1_000, 1.0, 1);
        again.late = true;
        let mut fresh_late = cand(1, "z", 2_000, 1.0, 9);
        fresh_late.late = true;
        let plan = plan_group(
            &group(),
            &[again, fresh_late],
            &[],
            &items,
            &HashMap::new(),
            &config.plan_settings(),
        );
        assert_eq!(plan.duplicates, vec![0]);
        assert_eq!(plan.late, vec![1]);
        assert!(plan.anchors.is_empty());
    }

    #[test]
    fn at_least_once_skips_redelivered_sequence_numbers_only() {
        let config = AggregateConfig {
            delivery: Delivery::AtLeastOnce,
            ..AggregateConfig::default()
        };
        let mut items = HashMap::new();
        let batch = [cand(0, "a", 1_000, 1.0, 10), cand(1, "a", 1_000, 1.0, 11)];
        let plan = plan_group(
            &group(),
            &batch,
            &[],
            &items,
            &HashMap::new(),
            &config.plan_settings(),
        );
        assert!(
            plan.duplicates.is_empty(),
            "same id, different records: both count"
        );
        let txs = transactions(&plan, &items, None, &config.plan_settings());
        apply(&mut items, &txs);
        let redelivered = [cand(0, "a", 1_000, 1.0, 11), cand(1, "c", 1_000, 1.0, 12)];
        let plan = plan_group(
            &group(),
            &redelivered,
            &[],
            &items,
            &HashMap::new(),
            &config.plan_settings(),
        );
        assert_eq!(plan.duplicates, vec![0]);
        assert_eq!(plan.anchors[0].counted, vec![1]);
        let anchor = &plan.anchors[0].write.item;
        assert_eq!(anchor.high_water["s0"].as_str(), "12");
        assert!(anchor.fingerprints.is_empty());
    }

    #[test]
    fn hot_anchor_seals_pages_and_pages_still_deduplicate() {
        let config = AggregateConfig {
            head_fingerprint_cap: 10,
            ..AggregateConfig::default()
        };
        let mut items = HashMap::new();
        let batch: Vec<Candidate> = (0..25)
            .map(|i| cand(i, &format!("e{i}"), 1_000, 1.0, i as u64 + 1))
            .collect();
        let plan = plan_group(
            &group(),
            &batch,
            &[],
            &items,
            &HashMap::new(),
            &config.plan_settings(),
        );
        let w = &plan.anchors[0].write;
        assert_eq!(w.item.sealed_pages, 1);
        assert!(w.item.fingerprints.is_empty());
        assert_eq!(w.sealed_page[0].1.len(), 25);
        let page = Arc::new(w.sealed_page[0].1.clone());
        let txs = transactions(&plan, &items, None, &config.plan_settings());
        apply(&mut items, &txs);
        let anchor_key = plan.anchors[0].write.item.key.clone();
        let pages = HashMap::from([(anchor_key, vec![page])]);
        let plan = plan_group(
            &group(),
            &batch[..3],
            &[],
            &items,
            &pages,
            &config.plan_settings(),
        );
        assert_eq!(plan.duplicates, vec![0, 1, 2]);
    }

    #[test]
    fn large_groups_split_into_transactions_that_chain_versions() {
        let config = AggregateConfig {
            windows: WindowSet::parse("60,86400").expect("valid"),
            ..AggregateConfig::default()
        };
        let mut items = HashMap::new();
        // 150 different minutes of one day: 150 anchors + 1 day item.
        let batch: Vec<Candidate> = (0..150)
            .map(|i| cand(i, &format!("e{i}"), i as i64 * 60_000, 2.0, i as u64 + 1))
            .collect();
        let plan = plan_group(
            &group(),
            &batch,
            &[],
            &items,
            &HashMap::new(),
            &config.plan_settings(),
        );
        let txs = transactions(&plan, &items, None, &config.plan_settings());
        assert_eq!(txs.len(), 2);
        assert!(
            txs.iter()
                .all(|t| t.action_count() <= MAX_TRANSACTION_ITEMS)
        );
        apply(&mut items, &txs);
        let day = ItemKey {
            group: group(),
            window: WindowSpec::tumbling(86_400),
            start_ms: 0,
        };
        assert_eq!(items[&day].state.count, 150);
        assert_eq!(items[&day].version, 2);
        assert_eq!(txs.iter().map(|t| t.counted.len()).sum::<usize>(), 150);
    }

    #[test]
    fn lateness_is_judged_against_the_group_watermark_in_order() {
        let config = AggregateConfig::default(); // 60 s anchor, 300 s lateness
        let mut batch = vec![
            cand(0, "a", 1_000_000, 1.0, 1),
            cand(1, "b", 1_000_000 + 361_000, 1.0, 2),
            cand(2, "c", 1_000_000, 1.0, 3),
            cand(3, "d", 1_000_000 + 60_000, 1.0, 4),
        ];
        let wm = judge_lateness(&mut batch, None, &config.plan_settings());
        // Watermark after b: start of b's minute (1_320_000); a's minute [960_000, 1_020_000)
        // ended 300 s + 0 before 1_320_000: not more than the lateness, so c is on time.
        assert_eq!(wm, Some(1_320_000));
        assert_eq!(
            batch.iter().map(|c| c.late).collect::<Vec<_>>(),
            [false, false, false, false]
        );
        let mut later = vec![cand(4, "e", 1_000_000, 1.0, 5)];
        judge_lateness(&mut later, Some(1_380_000), &config.plan_settings());
        assert!(
            later[0].late,
            "one more minute and the window is closed for good"
        );
        let mut early = vec![cand(5, "f", 1_000_000, 1.0, 6)];
        assert_eq!(
            judge_lateness(&mut early, Some(1_380_000), &config.plan_settings()),
            Some(1_380_000),
            "never lowers"
        );
    }

    #[test]
    fn keys_to_read_covers_every_window_late_or_not() {
        let config = AggregateConfig::default();
        let mut late = cand(0, "a", 7_200_000, 1.0, 1);
        late.late = true;
        let keys = keys_to_read(
            &group(),
            &[late, cand(1, "b", 1_000, 1.0, 2)],
            &config.plan_settings(),
        );
        assert_eq!(keys.len(), 4, "two anchors, two hours");
    }

    fn watermark(ms: i64) -> WatermarkWrite {
        WatermarkWrite {
            watermark: GroupWatermark {
                group: group(),
                watermark_ms: ms,
                closed_from_ms: 0,
                last_record: None,
                version: 1,
            },
            expected_version: 0,
        }
    }

    #[test]
    fn the_watermark_has_a_reserved_slot_in_the_last_transaction() {
        let config = AggregateConfig::default(); // 60, 3600
        let items = HashMap::new();
        // 98 minutes over two hours: 98 anchors + 2 hour items = 100 actions.
        let batch: Vec<Candidate> = (0..98)
            .map(|i| cand(i, &format!("e{i}"), i as i64 * 60_000, 1.0, i as u64 + 1))
            .collect();
        let plan = plan_group(
            &group(),
            &batch,
            &[],
            &items,
            &HashMap::new(),
            &config.plan_settings(),
        );
        let without = transactions(&plan, &items, None, &config.plan_settings());
        assert_eq!(without.len(), 1, "100 actions fit without a watermark");
        let txs = transactions(
            &plan,
            &items,
            Some(watermark(97 * 60_000)),
            &config.plan_settings(),
        );
        assert_eq!(txs.len(), 2);
        assert!(
            txs.iter()
                .all(|t| t.action_count() <= MAX_TRANSACTION_ITEMS)
        );
        assert!(txs[0].watermark.is_none() && txs[1].watermark.is_some());
        // With nothing to write, the watermark goes alone.
        let alone = transactions(
            &GroupPlan::default(),
            &items,
            Some(watermark(1)),
            &config.plan_settings(),
        );
        assert_eq!(alone.len(), 1);
        assert_eq!(alone[0].action_count(), 1);
    }

    #[test]
    fn transactions_split_by_bytes_when_pages_are_large() {
        let config = AggregateConfig::default();
        let items = HashMap::new();
        let mut page = FingerprintSet::new();
        page.extend(0..MAX_PAGE_FINGERPRINTS as u64);
        let plan = GroupPlan {
            anchors: (0..14)
                .map(|i| {
                    let key = anchor_of(&group(), &config.plan_settings(), i * 60_000);
                    let mut item = AggregateItem::new(key);
                    item.version = 1;
                    item.sealed_pages = 1;
                    AnchorPlan {
                        write: ItemWrite {
                            item,
                            expected_version: 0,
                            sealed_page: vec![(1, page.clone())],
                        },
                        counted: vec![i as usize],
                        coarse: Vec::new(),
                    }
                })
                .collect(),
            ..GroupPlan::default()
        };
        let txs = transactions(&plan, &items, Some(watermark(1)), &config.plan_settings());
        assert!(txs.len() >= 2, "14 pages of 320 KB exceed one transaction");
        for t in &txs {
            assert!(t.byte_size() <= MAX_TRANSACTION_BYTES, "{}", t.byte_size());
        }
        assert_eq!(txs.iter().map(|t| t.counted.len()).sum::<usize>(), 14);
    }

    #[test]
    fn a_hot_anchor_takes_a_bounded_number_of_events_per_round() {
        // A head cap near the page budget leaves room for 10 new events per round.
        let config = AggregateConfig {
            head_fingerprint_cap: MAX_SEALED_PAGES_PER_WRITE * MAX_PAGE_FINGERPRINTS - 10,
            ..AggregateConfig::default()
        };
        assert_eq!(fresh_per_anchor(&config.plan_settings()), 10);
        let items = HashMap::new();
        let mut batch: Vec<Candidate> = (0..25)
            .map(|i| cand(i, &format!("e{i}"), 1_000, 1.0, i as u64 + 1))
            .collect();
        batch.push(cand(25, "e3", 1_000, 1.0, 26)); // a duplicate of a counted one
        let plan = plan_group(
            &group(),
            &batch,
            &[],
            &items,
            &HashMap::new(),
            &config.plan_settings(),
        );
        assert_eq!(plan.anchors[0].counted.len(), 10);
        assert_eq!(plan.deferred, (10..25).collect::<Vec<_>>());
        assert_eq!(plan.duplicates, vec![25], "a duplicate is never deferred");
    }

    #[test]
    fn the_watermark_records_what_its_commit_closed() {
        let config = AggregateConfig::default(); // 60 s anchor
        let batch = [cand(0, "a", 130_000, 1.0, 7), cand(1, "b", 70_000, 1.0, 8)];
        // First watermark of the group: closed from the earliest anchor start.
        let first = watermark_write(
            &group(),
            Some(120_000),
            None,
            &batch,
            &config.plan_settings(),
        )
        .expect("moves")
        .watermark;
        assert_eq!(
            (first.watermark_ms, first.closed_from_ms),
            (120_000, 60_000)
        );
        assert_eq!(
            first
                .last_record
                .as_ref()
                .map(|(s, q)| (s.as_str(), q.as_str())),
            Some(("s0", "8"))
        );
        // A fresh batch: closed from the stored watermark.
        let fresh = [cand(0, "c", 600_000, 1.0, 9)];
        let next = watermark_write(
            &group(),
            Some(600_000),
            Some(&first),
            &fresh,
            &config.plan_settings(),
        )
        .expect("moves")
        .watermark;
        assert_eq!((next.closed_from_ms, next.version), (120_000, 2));
        // A redelivery (a record at or before the stored one) keeps the stored start.
        let again = [
            cand(0, "a", 130_000, 1.0, 8),
            cand(1, "d", 900_000, 1.0, 10),
        ];
        assert!(redelivers(&again, Some(&first)));
        assert!(!redelivers(&fresh, Some(&first)), "seq 9 comes after 8");
        let retried = watermark_write(
            &group(),
            Some(900_000),
            Some(&first),
            &again,
            &config.plan_settings(),
        )
        .expect("moves")
        .watermark;
        assert_eq!(retried.closed_from_ms, first.closed_from_ms);
        // The same sequence number on another shard is not a redelivery.
        let mut elsewhere = again.clone();
        for c in &mut elsewhere {
            c.shard = "s1".into();
        }
        assert!(!redelivers(&elsewhere, Some(&first)));
        // Not moved: nothing to write.
        assert!(
            watermark_write(
                &group(),
                Some(120_000),
                Some(&first),
                &fresh,
                &config.plan_settings()
            )
            .is_none()
        );
    }
}
