//! In-memory implementations of the table ports, with DynamoDB's semantics:
//! version-conditioned all-or-nothing commits, immutable fingerprint pages, a
//! never-decreasing watermark, and request units metered by item size as DynamoDB
//! would charge them.
//!
//! ## Limits
//! A commit is checked against DynamoDB's limits before anything else, as DynamoDB
//! validates a request before it evaluates conditions
//! ([`sluice_core::limits::dynamodb::check_commit`], the same check the AWS adapter
//! makes before sending): one item alone (a `PutItem`) at most 400 KB; several (one
//! `TransactWriteItems`) at most 100 actions on distinct items, each at most 400 KB,
//! 4 MB in all. A commit that breaks one fails with
//! [`sluice_core::Error::LimitExceeded`] and changes nothing. Items are sized in the
//! layout the AWS codec writes ([`sluice_core::limits::dynamodb::aggregate_item_size`]).
//! A `load` never fails on size: like the AWS adapter it reads 100 keys per
//! `BatchGetItem` and asks again for what did not fit in a 16 MB answer;
//! [`Meter::batch_get_requests`] counts the requests that takes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sluice_core::error::{Error, Result};
use sluice_core::fingerprint::FingerprintSet;
use sluice_core::item::{
    AggregateItem, GroupKey, GroupWatermark, ItemKey, ItemWrite, WatermarkWrite, page_stored_size,
};
use sluice_core::limits::dynamodb as limits;
use sluice_core::ports::{
    AggregateStore, AlertStatus, AlertStore, Attrs, Commit, Loaded, ReferenceLookup, RulesSource,
};
use sluice_core::rules::{Alert, Rule};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Request units, in thousandths so they add up exactly.
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
        self.read_milli
            .fetch_add(1000 * bytes.div_ceil(4096).max(1) as u64, Ordering::Relaxed);
        self.read_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A standard write: 1 WCU per 1 KB.
    pub fn write(&self, bytes: usize) {
        self.write_milli
            .fetch_add(1000 * bytes.div_ceil(1024).max(1) as u64, Ordering::Relaxed);
        self.write_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A write inside `TransactWriteItems`: 2 WCU per 1 KB.
    pub fn transactional_write(&self, bytes: usize) {
        self.write_milli
            .fetch_add(2000 * bytes.div_ceil(1024).max(1) as u64, Ordering::Relaxed);
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

#[derive(Default)]
struct Tables {
    items: BTreeMap<ItemKey, AggregateItem>,
    pages: HashMap<(ItemKey, u32), FingerprintSet>,
    watermarks: BTreeMap<GroupKey, GroupWatermark>,
}

/// The aggregates table in memory.
#[derive(Default)]
pub struct MemoryAggregateStore {
    tables: Mutex<Tables>,
    pub meter: Meter,
}

impl MemoryAggregateStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every aggregate item, in key order.
    pub fn items(&self) -> Vec<AggregateItem> {
        lock(&self.tables).items.values().cloned().collect()
    }

    pub fn page_count(&self) -> usize {
        lock(&self.tables).pages.len()
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
            match tables.items.get(key) {
                Some(item) => {
                    self.meter.consistent_read(item.stored_size());
                    sizes.push(Some(limits::aggregate_item_size(item)));
                    out.items.push(item.clone());
                }
                // DynamoDB charges a minimum read for a key that is not there.
                None => {
                    self.meter.consistent_read(1);
                    sizes.push(None);
                }
            }
        }
        for group in groups.iter().collect::<std::collections::BTreeSet<_>>() {
            self.meter.consistent_read(64);
            let found = tables.watermarks.get(group);
            sizes.push(found.map(limits::watermark_size));
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
        let found = tables.pages.get(&(anchor.clone(), page)).cloned();
        self.meter
            .consistent_read(found.as_ref().map_or(1, |p| page_stored_size(anchor, p)));
        Ok(found)
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
                tables.items.get(&w.item.key).map_or(0, |i| i.version) == w.expected_version
            };
            let pages_absent = |w: &ItemWrite| {
                w.sealed_page
                    .iter()
                    .all(|(n, _)| !tables.pages.contains_key(&(w.item.key.clone(), *n)))
            };
            let watermark_holds = watermark.is_none_or(|w| {
                tables
                    .watermarks
                    .get(&w.watermark.group)
                    .map_or(0, |c| c.version)
                    == w.expected_version
            });
            if !watermark_holds || !writes.iter().all(|w| version_holds(w) && pages_absent(w)) {
                return Ok(Commit::Conflict);
            }
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
            for w in writes {
                charge(w.item.stored_size());
                for (n, page) in &w.sealed_page {
                    charge(page_stored_size(&w.item.key, page));
                    tables.pages.insert((w.item.key.clone(), *n), page.clone());
                }
                tables.items.insert(w.item.key.clone(), w.item.clone());
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
