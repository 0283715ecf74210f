//! In-memory implementations of the table ports, with DynamoDB's semantics:
//! version-conditioned all-or-nothing commits, immutable fingerprint pages, a
//! never-decreasing watermark, and request units metered by item size as DynamoDB
//! would charge them.
//!
//! ## Limits
//! A commit is checked against DynamoDB's limits before anything else, as DynamoDB
//! validates a request before it evaluates conditions
//! ([`sluice_core::state::limits::dynamodb::check_commit`], the same check the AWS adapter
//! makes before sending): one item alone (a `PutItem`) at most 400 KB; several (one
//! `TransactWriteItems`) at most 100 actions on distinct items, each at most 400 KB,
//! 4 MB in all. A commit that breaks one fails with
//! [`sluice_core::Error::LimitExceeded`] and changes nothing. Items are sized in the
//! layout the AWS codec writes ([`sluice_core::state::limits::dynamodb::aggregate_item_size`]).
//! A `load` never fails on size: like the AWS adapter it reads 100 keys per
//! `BatchGetItem` and asks again for what did not fit in a 16 MB answer;
//! [`Meter::batch_get_requests`] counts the requests that takes.

use sluice_core::sql::AggregateState;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sluice_core::detect::rules::{Alert, Rule};
use sluice_core::error::{Error, Result};
use sluice_core::ports::{
    AggregateStore, AlertStatus, AlertStore, Attrs, Commit, HistoryCut, Loaded, ReferenceLookup,
    RulesSource, WindowHistory,
};
use sluice_core::state::capacity;
use sluice_core::state::fingerprint::FingerprintSet;
use sluice_core::state::item::{
    AggregateItem, AggregateView, ClosingRange, GroupKey, GroupWatermark, ItemKey, ItemWrite,
    WatermarkWrite, WindowUpdate,
};
use sluice_core::state::limits::dynamodb as limits;
use sluice_core::state::sequence::SeqNo;
use sluice_core::state::statistics::AggState;
use sluice_core::state::window::WindowSpec;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Request units, in thousandths so they add up exactly, as [`sluice_core::state::capacity`]
/// computes them; and the requests that took.
#[derive(Debug, Default)]
pub struct Meter {
    read_milli: AtomicU64,
    write_milli: AtomicU64,
    read_requests: AtomicU64,
    write_requests: AtomicU64,
    batch_get_requests: AtomicU64,
}

impl Meter {
    /// A strongly consistent read: 1 RCU per 4 KB (rounded up, per item).
    pub fn consistent_read(&self, bytes: usize) {
        self.read_milli.fetch_add(
            capacity::to_milli(capacity::read_units(bytes, true)),
            Ordering::Relaxed,
        );
        self.read_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A standard write: 1 WCU per 1 KB.
    pub fn write(&self, bytes: usize) {
        self.write_milli.fetch_add(
            capacity::to_milli(capacity::write_units(bytes)),
            Ordering::Relaxed,
        );
        self.write_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A write inside `TransactWriteItems`: 2 WCU per 1 KB.
    pub fn transactional_write(&self, bytes: usize) {
        self.write_milli.fetch_add(
            capacity::to_milli(capacity::transactional_write_units(bytes)),
            Ordering::Relaxed,
        );
        self.write_requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn read_units(&self) -> f64 {
        self.read_milli.load(Ordering::Relaxed) as f64 / 1000.0
    }

    pub fn write_units(&self) -> f64 {
        self.write_milli.load(Ordering::Relaxed) as f64 / 1000.0
    }

    pub fn item_reads(&self) -> u64 {
        self.read_requests.load(Ordering::Relaxed)
    }

    pub fn item_writes(&self) -> u64 {
        self.write_requests.load(Ordering::Relaxed)
    }

    /// `BatchGetItem` requests the loads so far would have taken on DynamoDB.
    pub fn batch_get_requests(&self) -> u64 {
        self.batch_get_requests.load(Ordering::Relaxed)
    }
}

/// Where an item sits: its group and window (interned: each item would otherwise
/// carry its own copies of the key and type strings) and its window start. Orders as
/// [`ItemKey`] does only within a group and window; [`MemoryAggregateStore::items`]
/// sorts by the full key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Slot {
    group: u32,
    window: u16,
    start_ms: i64,
}

/// An item as the table holds it: everything an [`AggregateItem`] holds but its key,
/// fingerprints in an exactly sized slice, high-water marks (at-least-once only) boxed.
#[derive(Debug)]
struct Stored {
    version: u64,
    state: AggState,
    fingerprints: Box<[u64]>,
    sealed_pages: u32,
    /// The item's stored size as DynamoDB counts it (what a read of it is charged,
    /// whatever a projection returns), worked out when it was written: a stored item
    /// never changes (a write replaces it). A `u32` (items are under 400 KB) in the
    /// padding after `sealed_pages`.
    stored_bytes: u32,
    expires_at_s: Option<i64>,
    /// Boxed on purpose: 8 bytes in every item instead of 24, and only at-least-once
    /// items have high-water marks at all.
    #[allow(clippy::box_collection)]
    high_water: Option<Box<BTreeMap<String, SeqNo>>>,
    /// A SQL view item's aggregate states (none for the envelope's metrics), shared
    /// with the updates a history read returns instead of copied into each (and 8
    /// bytes in every envelope item, as a `Box` was).
    columns: Option<Arc<Vec<AggregateState>>>,
}

impl Stored {
    /// The stored form of `item`, whose [`AggregateItem::stored_size`] is `size`.
    fn of(item: &AggregateItem, size: usize) -> Self {
        Stored {
            version: item.version,
            state: item.state,
            fingerprints: item.fingerprints.iter().collect(),
            sealed_pages: item.sealed_pages,
            expires_at_s: item.expires_at_s,
            high_water: (!item.high_water.is_empty()).then(|| Box::new(item.high_water.clone())),
            columns: (!item.columns.is_empty()).then(|| Arc::new(item.columns.clone())),
            stored_bytes: u32::try_from(size).unwrap_or(u32::MAX),
        }
    }

    fn view(&self, key: ItemKey) -> AggregateView {
        let view = AggregateView::of(&key, &self.state);
        match &self.columns {
            Some(columns) => view.with_columns(columns),
            None => view,
        }
    }

    /// The window update a history read returns (the item without its de-duplication
    /// state).
    fn to_update(&self, key: &ItemKey) -> WindowUpdate {
        let columns = self.columns.clone().unwrap_or_default();
        WindowUpdate::of(key, &self.state, self.version, columns)
    }

    fn to_item(&self, key: ItemKey) -> AggregateItem {
        let mut fingerprints = FingerprintSet::new();
        fingerprints.extend(self.fingerprints.iter().copied());
        AggregateItem {
            key,
            version: self.version,
            state: self.state,
            fingerprints,
            sealed_pages: self.sealed_pages,
            high_water: self.high_water.as_deref().cloned().unwrap_or_default(),
            expires_at_s: self.expires_at_s,
            columns: self.columns.as_deref().cloned().unwrap_or_default(),
        }
    }
}

/// A sealed fingerprint page and the expiry it was written with.
struct Page {
    fingerprints: Box<[u64]>,
    expires_at_s: Option<i64>,
}

#[derive(Default)]
struct Tables {
    /// Interned groups and windows: `Slot::group` and `Slot::window` index these.
    groups: Vec<GroupKey>,
    group_ids: HashMap<GroupKey, u32>,
    windows: Vec<WindowSpec>,
    /// Boxed: a B-tree node fills to about 55% when keys arrive in order (as new
    /// windows do), so the tree holds small entries and each item one exact allocation.
    items: BTreeMap<Slot, Box<Stored>>,
    pages: HashMap<(Slot, u32), Page>,
    watermarks: BTreeMap<GroupKey, GroupWatermark>,
}

impl Tables {
    /// The slot of `key` if its group and window have been written before.
    fn find(&self, key: &ItemKey) -> Option<Slot> {
        Some(Slot {
            group: *self.group_ids.get(&key.group)?,
            window: u16::try_from(self.windows.iter().position(|w| *w == key.window)?).ok()?,
            start_ms: key.start_ms,
        })
    }

    /// The slot of `key`, interning its group and window.
    fn slot(&mut self, key: &ItemKey) -> Result<Slot> {
        let group = match self.group_ids.get(&key.group) {
            Some(id) => *id,
            None => {
                let id = u32::try_from(self.groups.len())
                    .map_err(|_| too_many("groups", self.groups.len()))?;
                self.groups.push(key.group.clone());
                self.group_ids.insert(key.group.clone(), id);
                id
            }
        };
        let window = match self.windows.iter().position(|w| *w == key.window) {
            Some(i) => i,
            None => {
                self.windows.push(key.window);
                self.windows.len() - 1
            }
        };
        let window = u16::try_from(window).map_err(|_| too_many("windows", window))?;
        Ok(Slot {
            group,
            window,
            start_ms: key.start_ms,
        })
    }

    fn key(&self, slot: Slot) -> ItemKey {
        ItemKey {
            group: self.groups[slot.group as usize].clone(),
            window: self.windows[usize::from(slot.window)],
            start_ms: slot.start_ms,
        }
    }

    fn item(&self, key: &ItemKey) -> Option<&Stored> {
        self.find(key)
            .and_then(|slot| self.items.get(&slot))
            .map(|s| &**s)
    }
}

/// The in-memory table cannot number more groups or windows than its ids hold (2^32
/// groups, 2^16 window definitions): far past what fits in memory anyway.
fn too_many(what: &str, n: usize) -> Error {
    Error::Remote {
        service: limits::SERVICE,
        operation: "TransactWriteItems",
        message: format!(
            "the in-memory aggregates table holds {n} {what}, more than it can number"
        ),
        retryable: false,
        source: None,
    }
}

/// The aggregates table in memory.
///
/// ## Memory
/// The table holds what DynamoDB would: every item written (nothing expires: see the
/// docs/performance.md's Volume section for why the demo does not apply TTL), every sealed page and
/// every group's watermark. An item costs its [`Slot`] and [`Stored`] (16 + 128 bytes)
/// in a B-tree node, plus 8 bytes per fingerprint of an anchor item and the
/// at-least-once high-water marks; group and type strings are held once per group.
/// `crates/local/tests/store_memory.rs` measures it.
#[derive(Default)]
pub struct MemoryAggregateStore {
    tables: Mutex<Tables>,
    pub meter: Meter,
}

impl MemoryAggregateStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every aggregate item, in key order: a copy of the whole table, for tests. To
    /// read a large table use [`MemoryAggregateStore::views`] or
    /// [`MemoryAggregateStore::for_each_item`].
    pub fn items(&self) -> Vec<AggregateItem> {
        let mut items = Vec::new();
        self.for_each_item(|item| items.push(item.clone()));
        items.sort_by(|a, b| a.key.cmp(&b.key));
        items
    }

    /// Calls `f` with every item, in no particular order, under the table's lock (so
    /// `f` must not use the store), one item at a time: nothing is copied but the item
    /// `f` sees.
    pub fn for_each_item(&self, mut f: impl FnMut(&AggregateItem)) {
        let tables = lock(&self.tables);
        for (slot, stored) in &tables.items {
            f(&stored.to_item(tables.key(*slot)));
        }
    }

    /// The public view of every item that counted an event, in no particular order:
    /// what `sluice demo` prints and verifies, without copying the table.
    pub fn views(&self) -> Vec<AggregateView> {
        let tables = lock(&self.tables);
        tables
            .items
            .iter()
            .filter(|(_, stored)| stored.state.count > 0)
            .map(|(slot, stored)| stored.view(tables.key(*slot)))
            .collect()
    }

    /// Calls `f` with the view of every item that counted an event, in no particular
    /// order, one at a time under the table's lock (`f` must not use the store): reads a
    /// table of any size in the memory of one view.
    pub fn for_each_view(&self, mut f: impl FnMut(AggregateView)) {
        let tables = lock(&self.tables);
        for (slot, stored) in &tables.items {
            if stored.state.count > 0 {
                f(stored.view(tables.key(*slot)));
            }
        }
    }

    /// How many aggregate items the table holds.
    pub fn item_count(&self) -> usize {
        lock(&self.tables).items.len()
    }

    pub fn page_count(&self) -> usize {
        lock(&self.tables).pages.len()
    }
}

/// Reads as DynamoDB's `Query` would: the group's items of that window newest first,
/// from the last window ending before `closing.to_ms`, metered as one strongly
/// consistent read of the bytes it went through (fingerprint sets projected out).
impl WindowHistory for MemoryAggregateStore {
    async fn closed_windows(
        &self,
        group: &GroupKey,
        window_seconds: i64,
        closing: ClosingRange,
        lookback: u32,
    ) -> Result<Vec<WindowUpdate>> {
        let tables = lock(&self.tables);
        let spec = WindowSpec::tumbling(window_seconds);
        let probe = ItemKey {
            group: group.clone(),
            window: spec,
            start_ms: closing.to_ms.saturating_sub(spec.size_ms),
        };
        let mut cut = HistoryCut::new(closing, lookback);
        let mut bytes = 0;
        if let Some(below) = tables.find(&probe) {
            let first = Slot {
                start_ms: i64::MIN,
                ..below
            };
            // Windows starting before `to − size`: ending before `to`.
            for (slot, stored) in tables.items.range(first..below).rev() {
                // Charged for the whole item; the projection leaves the fingerprints
                // out of what is returned.
                bytes += stored.stored_bytes as usize;
                if !cut.push(stored.to_update(&tables.key(*slot))) {
                    break;
                }
            }
        }
        self.meter.consistent_read(bytes);
        Ok(cut.finish())
    }
}

impl AggregateStore for MemoryAggregateStore {
    async fn load(&self, keys: &[ItemKey], groups: &[GroupKey]) -> Result<Loaded> {
        let tables = lock(&self.tables);
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Loaded::default();
        // Answer sizes, key by key, to count requests as DynamoDB would split them.
        let mut sizes = Vec::new();
        for key in keys {
            if !seen.insert(key) {
                continue;
            }
            match tables.item(key) {
                Some(stored) => {
                    let item = stored.to_item(key.clone());
                    let size = stored.stored_bytes as usize;
                    self.meter.consistent_read(size);
                    sizes.push(Some(size));
                    out.items.push(item);
                }
                // DynamoDB charges a minimum read for a key that is not there.
                None => {
                    self.meter.consistent_read(1);
                    sizes.push(None);
                }
            }
        }
        for group in groups.iter().collect::<std::collections::BTreeSet<_>>() {
            let found = tables.watermarks.get(group);
            let size = found.map(limits::watermark_size);
            // A missing watermark is charged the minimum read, as a missing item is.
            self.meter.consistent_read(size.unwrap_or(1));
            sizes.push(size);
            if let Some(w) = found {
                out.watermarks.push(w.clone());
            }
        }
        self.meter
            .batch_get_requests
            .fetch_add(limits::batch_get_requests(&sizes) as u64, Ordering::Relaxed);
        Ok(out)
    }

    async fn load_page(&self, anchor: &ItemKey, page: u32) -> Result<Option<FingerprintSet>> {
        let tables = lock(&self.tables);
        let found = tables
            .find(anchor)
            .and_then(|slot| tables.pages.get(&(slot, page)));
        let Some(found) = found else {
            self.meter.consistent_read(1);
            return Ok(None);
        };
        let mut set = FingerprintSet::new();
        set.extend(found.fingerprints.iter().copied());
        self.meter
            .consistent_read(limits::page_size(anchor, page, &set, found.expires_at_s));
        Ok(Some(set))
    }

    async fn commit(
        &self,
        writes: &[ItemWrite],
        watermark: Option<&WatermarkWrite>,
    ) -> Result<Commit> {
        // Validation comes before conditions, and a rejected request changes nothing.
        limits::check_commit(writes, watermark)?;
        {
            let mut tables = lock(&self.tables);
            let version_holds = |w: &ItemWrite| {
                tables.item(&w.item.key).map_or(0, |i| i.version) == w.expected_version
            };
            let pages_absent = |w: &ItemWrite| {
                let Some(slot) = tables.find(&w.item.key) else {
                    return true;
                };
                w.sealed_page
                    .iter()
                    .all(|(n, _)| !tables.pages.contains_key(&(slot, *n)))
            };
            let watermark_holds = watermark.is_none_or(|w| {
                tables
                    .watermarks
                    .get(&w.watermark.group)
                    .map_or(0, |c| c.version)
                    == w.expected_version
            });
            let actions = writes.len()
                + writes.iter().map(|w| w.sealed_page.len()).sum::<usize>()
                + usize::from(watermark.is_some());
            let charge = |bytes: usize| {
                if actions > 1 {
                    self.meter.transactional_write(bytes);
                } else {
                    self.meter.write(bytes);
                }
            };
            if !watermark_holds || !writes.iter().all(|w| version_holds(w) && pages_absent(w)) {
                // DynamoDB charges the write units of a write whose condition fails, as
                // the AWS adapter meters them: every action, at its size.
                for w in writes {
                    charge(w.item.stored_size());
                    for (n, page) in &w.sealed_page {
                        charge(limits::page_size(
                            &w.item.key,
                            *n,
                            page,
                            w.item.expires_at_s,
                        ));
                    }
                }
                if let Some(w) = watermark {
                    charge(w.watermark.stored_size());
                }
                return Ok(Commit::Conflict);
            }
            // Intern first: a table that cannot number the keys changes nothing.
            let slots = writes
                .iter()
                .map(|w| tables.slot(&w.item.key))
                .collect::<Result<Vec<_>>>()?;
            for (w, slot) in writes.iter().zip(slots) {
                let size = w.item.stored_size();
                charge(size);
                for (n, page) in &w.sealed_page {
                    charge(limits::page_size(
                        &w.item.key,
                        *n,
                        page,
                        w.item.expires_at_s,
                    ));
                    tables.pages.insert(
                        (slot, *n),
                        Page {
                            fingerprints: page.iter().collect(),
                            expires_at_s: w.item.expires_at_s,
                        },
                    );
                }
                tables
                    .items
                    .insert(slot, Box::new(Stored::of(&w.item, size)));
            }
            if let Some(w) = watermark {
                charge(w.watermark.stored_size());
                tables
                    .watermarks
                    .insert(w.watermark.group.clone(), w.watermark.clone());
            }
        }
        Ok(Commit::Done)
    }
}

/// The reference table in memory.
#[derive(Default)]
pub struct MemoryReference {
    rows: Mutex<HashMap<String, Attrs>>,
    pub lookups: AtomicU64,
}

impl MemoryReference {
    pub fn new(rows: impl IntoIterator<Item = (String, Attrs)>) -> Self {
        MemoryReference {
            rows: Mutex::new(rows.into_iter().collect()),
            lookups: AtomicU64::new(0),
        }
    }
}

impl ReferenceLookup for MemoryReference {
    async fn lookup(&self, keys: &[String]) -> Result<HashMap<String, Attrs>> {
        self.lookups.fetch_add(keys.len() as u64, Ordering::Relaxed);
        let rows = lock(&self.rows);
        Ok(keys
            .iter()
            .filter_map(|k| rows.get(k).map(|a| (k.clone(), a.clone())))
            .collect())
    }
}

/// The rules table in memory.
#[derive(Default)]
pub struct MemoryRules {
    rules: Arc<Vec<Rule>>,
}

impl MemoryRules {
    pub fn new(rules: Vec<Rule>) -> Self {
        MemoryRules {
            rules: Arc::new(rules),
        }
    }
}

impl RulesSource for MemoryRules {
    async fn rules(&self) -> Result<Arc<Vec<Rule>>> {
        Ok(self.rules.clone())
    }
}

/// The alerts table in memory.
#[derive(Default)]
pub struct MemoryAlerts {
    alerts: Mutex<BTreeMap<String, (Alert, bool)>>,
}

impl MemoryAlerts {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn alerts(&self) -> Vec<Alert> {
        lock(&self.alerts)
            .values()
            .map(|(a, _)| a.clone())
            .collect()
    }
}

/// The stored size of an alert item as the AWS adapter writes it: the alert's JSON
/// fields, `notified` (BOOL) and `expires_at` (epoch seconds, at most 10 digits).
pub fn alert_item_size(alert: &Alert) -> Result<usize> {
    let json = serde_json::to_value(alert).map_err(|e| Error::Remote {
        service: limits::SERVICE,
        operation: "PutItem",
        message: format!("alert {:?} cannot be encoded: {e}", alert.alert_id),
        retryable: false,
        source: Some(Box::new(e)),
    })?;
    Ok(limits::json_item_size(&json)
        + "notified".len()
        + 1
        + limits::int_attribute_size("expires_at", 9_999_999_999))
}

impl AlertStore for MemoryAlerts {
    async fn raise(&self, alert: &Alert) -> Result<AlertStatus> {
        limits::check_item("PutItem", alert_item_size(alert)?)?;
        let mut alerts = lock(&self.alerts);
        Ok(match alerts.get(&alert.alert_id) {
            None => {
                alerts.insert(alert.alert_id.clone(), (alert.clone(), false));
                AlertStatus::New
            }
            Some((_, false)) => AlertStatus::Pending,
            Some((_, true)) => AlertStatus::Notified,
        })
    }

    async fn mark_notified(&self, alert_id: &str) -> Result<()> {
        if let Some(entry) = lock(&self.alerts).get_mut(alert_id) {
            entry.1 = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A history Query is charged for the whole items it reads, fingerprints included,
    /// though its projection returns none of them (DynamoDB charges by item size), and
    /// alike on every read.
    #[test]
    fn a_history_read_is_charged_for_whole_items() {
        let store = MemoryAggregateStore::new();
        let minute = WindowSpec::tumbling(60);
        // 2,000 fingerprints: 16 KB of each item.
        put(&store, minute, 0, 2_000);
        put(&store, minute, 60_000, 2_000);
        let group = GroupKey {
            key: "k".into(),
            metric: "t".into(),
        };
        let closing = ClosingRange {
            from_ms: 60_000,
            to_ms: 180_000,
        };
        let whole: usize = block_on(
            store.load(
                &[minute, minute]
                    .iter()
                    .zip([0, 60_000])
                    .map(|(&window, start_ms)| ItemKey {
                        group: group.clone(),
                        window,
                        start_ms,
                    })
                    .collect::<Vec<_>>(),
                &[],
            ),
        )
        .expect("load")
        .items
        .iter()
        .map(AggregateItem::stored_size)
        .sum();
        assert!(whole > 32_000, "{whole} bytes");
        let want = capacity::read_units(whole, true);
        for _ in 0..2 {
            let before = store.meter.read_units();
            let got = block_on(store.closed_windows(&group, 60, closing, 5)).expect("read");
            assert_eq!(got.len(), 2);
            assert_eq!(store.meter.read_units() - before, want);
        }
    }

    fn put(store: &MemoryAggregateStore, window: WindowSpec, start_ms: i64, count: u64) {
        let mut item = AggregateItem::new(ItemKey {
            group: GroupKey {
                key: "k".into(),
                metric: "t".into(),
            },
            window,
            start_ms,
        });
        for v in 0..count {
            item.state.push(v as f64);
        }
        item.fingerprints.extend(0..count);
        item.version = 1;
        let write = ItemWrite {
            item,
            expected_version: 0,
            sealed_page: Vec::new(),
        };
        let done = block_on(store.commit(&[write], None)).expect("commit");
        assert_eq!(done, Commit::Done);
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn closed_windows_reads_one_size_of_one_group_newest_first() {
        let store = MemoryAggregateStore::new();
        let minute = WindowSpec::tumbling(60);
        for m in [0, 1, 2, 4, 5, 6] {
            put(&store, minute, m * 60_000, m as u64 + 1);
        }
        put(&store, WindowSpec::tumbling(3600), 0, 9);
        put(&store, WindowSpec::hopping(120, 60), 60_000, 9);
        let group = GroupKey {
            key: "k".into(),
            metric: "t".into(),
        };
        // Ends in [5 min, 7 min): minutes 4 (end 5) and 5 (end 6); lookback 2: 2 and 1.
        let closing = ClosingRange {
            from_ms: 5 * 60_000,
            to_ms: 7 * 60_000,
        };
        let got = block_on(store.closed_windows(&group, 60, closing, 2)).expect("read");
        let starts: Vec<i64> = got.iter().map(|w| w.window_start / 60_000).collect();
        assert_eq!(starts, [5, 4, 2, 1]);
        assert!(
            got.iter()
                .all(|w| w.window_seconds == 60 && w.slide_seconds == 60)
        );
        assert_eq!(got[0].count, 6);
        assert_eq!(store.meter.item_reads(), 1, "one Query");
        let other = GroupKey {
            key: "x".into(),
            metric: "t".into(),
        };
        assert!(
            block_on(store.closed_windows(&other, 60, closing, 2))
                .expect("read")
                .is_empty()
        );
    }
}
