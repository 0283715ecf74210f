//! The narrow traits each stage needs. AWS adapters implement them in `sluice-aws`,
//! in-memory ones in `sluice-local`. Futures are `Send` so handlers run on any runtime.
//! [`cache`] wraps the read ports the stages call per record in per-container caches.

pub mod cache;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;

use crate::detect::rules::{Alert, Rule, Severity};
use crate::error::Result;
use crate::input::record::OutRecord;
use serde::{Deserialize, Serialize};

use crate::state::fingerprint::FingerprintSet;
use crate::state::item::{
    AggregateItem, AggregateView, ClosingRange, GroupKey, GroupWatermark, ItemKey, ItemWrite,
    WatermarkWrite, WindowUpdate,
};
use crate::time::parse_rfc3339_ms;

/// Dimensions attached to an entity in the reference table.
pub type Attrs = BTreeMap<String, String>;

/// Wall-clock time, passed in so domain logic never reads it.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now_ms(&self) -> i64 {
        (**self).now_ms()
    }
}

/// Writes records to one stream (`PutRecords`). Either every record is written or the
/// call fails; records for one partition key keep their order.
pub trait RecordSink: Send + Sync {
    fn stream_name(&self) -> &str;
    fn put_records(&self, records: Vec<OutRecord>) -> impl Future<Output = Result<()>> + Send;
}

/// Looks up reference attributes by entity key. Unknown keys are simply absent.
pub trait ReferenceLookup: Send + Sync {
    fn lookup(
        &self,
        keys: &[String],
    ) -> impl Future<Output = Result<HashMap<String, Attrs>>> + Send;
}

/// Whether a conditional commit went through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Commit {
    Done,
    /// Some item's version (or a page's absence) no longer held: re-read and retry.
    Conflict,
}

/// What one consistent read of the aggregates table returned.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub items: Vec<AggregateItem>,
    pub watermarks: Vec<GroupWatermark>,
}

/// The aggregates table.
pub trait AggregateStore: Send + Sync {
    /// Strongly consistent read of the items and group watermarks that exist among
    /// `keys` and `groups` (one `BatchGetItem` on DynamoDB).
    fn load(
        &self,
        keys: &[ItemKey],
        groups: &[GroupKey],
    ) -> impl Future<Output = Result<Loaded>> + Send;
    /// One sealed fingerprint page of an anchor item (immutable once written).
    fn load_page(
        &self,
        anchor: &ItemKey,
        page: u32,
    ) -> impl Future<Output = Result<Option<FingerprintSet>>> + Send;
    /// Writes all items (and the group's watermark, if given) atomically, each
    /// conditioned on its expected version.
    fn commit(
        &self,
        writes: &[ItemWrite],
        watermark: Option<&WatermarkWrite>,
    ) -> impl Future<Output = Result<Commit>> + Send;
}

/// The history of a group's windows, for the detect stage's `rate` and `zscore` rules
/// (a read of the aggregates table).
pub trait WindowHistory: Send + Sync {
    /// The group's tumbling windows of `window_seconds` that have data and whose end
    /// lies in `closing`, followed by the (at most) `lookback` windows with data
    /// immediately before the earliest of them; all newest first. Nothing when no
    /// window in `closing` has data. On DynamoDB: one strongly consistent `Query`
    /// (paginated) on the group's partition, newest first, stopping as soon as it has
    /// them.
    fn closed_windows(
        &self,
        group: &GroupKey,
        window_seconds: i64,
        closing: ClosingRange,
        lookback: u32,
    ) -> impl Future<Output = Result<Vec<WindowUpdate>>> + Send;
}

/// Cuts a newest-first run of a group's windows (of one size) to what
/// [`WindowHistory::closed_windows`] returns: those with data ending in `closing`, then
/// `lookback` earlier ones with data. Both adapters use it, so they answer alike: feed it
/// windows newest first until [`HistoryCut::push`] says it has enough.
#[derive(Debug)]
pub struct HistoryCut {
    closing: ClosingRange,
    lookback: u32,
    earlier: u32,
    done: bool,
    out: Vec<WindowUpdate>,
}

impl HistoryCut {
    pub fn new(closing: ClosingRange, lookback: u32) -> Self {
        HistoryCut {
            closing,
            lookback,
            earlier: 0,
            done: false,
            out: Vec::new(),
        }
    }

    /// Takes the next (older) window; false once nothing older is needed.
    pub fn push(&mut self, w: WindowUpdate) -> bool {
        if self.done {
            return false;
        }
        let end = w
            .window_start
            .saturating_add(w.window_seconds.saturating_mul(1000));
        if end >= self.closing.to_ms || w.count == 0 {
            return true;
        }
        if end >= self.closing.from_ms {
            self.out.push(w);
            return true;
        }
        if self.out.is_empty() || self.earlier >= self.lookback {
            self.done = true;
            return false;
        }
        self.earlier += 1;
        self.out.push(w);
        self.done = self.earlier >= self.lookback;
        !self.done
    }

    pub fn finish(self) -> Vec<WindowUpdate> {
        self.out
    }
}

/// The rules the detect stage evaluates.
pub trait RulesSource: Send + Sync {
    fn rules(&self) -> impl Future<Output = Result<Arc<Vec<Rule>>>> + Send;
}

/// What the alerts table knew about an alert before this call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertStatus {
    /// First time: stored now, not yet announced.
    New,
    /// Stored earlier, but its announcement may not have gone out.
    Pending,
    /// Stored and announced: nothing to do.
    Notified,
}

/// The alerts table, keyed by alert id.
pub trait AlertStore: Send + Sync {
    fn raise(&self, alert: &Alert) -> impl Future<Output = Result<AlertStatus>> + Send;
    fn mark_notified(&self, alert_id: &str) -> impl Future<Output = Result<()>> + Send;
}

/// One shard of a stream, as the event source mapping sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    pub shard_id: String,
    /// After a split or merge, the children are read only once the parents are done.
    pub parents: Vec<String>,
}

/// The result of one read from a shard.
#[derive(Clone, Debug, Default)]
pub struct ShardRead {
    /// Records in sequence order (at most the limit asked for).
    pub records: Vec<crate::input::record::StreamRecord>,
    /// The shard is closed (resharded) and every record of it has been returned.
    pub ended: bool,
    /// How far behind the tip this read was (`MillisBehindLatest`), when known.
    pub behind_ms: Option<i64>,
}

/// Reads a stream shard by shard, for the local event source mapping (`sluice demo`
/// reads in-process streams, `sluice run` reads Kinesis).
pub trait ShardSource: Send + Sync {
    fn stream_name(&self) -> &str;
    /// `arn:aws:kinesis:…:stream/{name}` as Lambda puts it in `eventSourceARN`.
    fn stream_arn(&self) -> String;
    fn shards(&self) -> impl Future<Output = Result<Vec<ShardInfo>>> + Send;
    /// Up to `limit` records after sequence number `after` (`None`: from the oldest).
    fn read(
        &self,
        shard_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<ShardRead>> + Send;
}

// Shared ownership: a stage can hold an `Arc` of an adapter that the runner (or a
// test) also inspects.
impl<T: RecordSink + ?Sized> RecordSink for Arc<T> {
    fn stream_name(&self) -> &str {
        (**self).stream_name()
    }
    fn put_records(&self, records: Vec<OutRecord>) -> impl Future<Output = Result<()>> + Send {
        (**self).put_records(records)
    }
}

impl<T: ReferenceLookup + ?Sized> ReferenceLookup for Arc<T> {
    fn lookup(
        &self,
        keys: &[String],
    ) -> impl Future<Output = Result<HashMap<String, Attrs>>> + Send {
        (**self).lookup(keys)
    }
}

impl<T: AggregateStore + ?Sized> AggregateStore for Arc<T> {
    fn load(
        &self,
        keys: &[ItemKey],
        groups: &[GroupKey],
    ) -> impl Future<Output = Result<Loaded>> + Send {
        (**self).load(keys, groups)
    }
    fn load_page(
        &self,
        anchor: &ItemKey,
        page: u32,
    ) -> impl Future<Output = Result<Option<FingerprintSet>>> + Send {
        (**self).load_page(anchor, page)
    }
    fn commit(
        &self,
        writes: &[ItemWrite],
        watermark: Option<&WatermarkWrite>,
    ) -> impl Future<Output = Result<Commit>> + Send {
        (**self).commit(writes, watermark)
    }
}

impl<T: WindowHistory + ?Sized> WindowHistory for Arc<T> {
    fn closed_windows(
        &self,
        group: &GroupKey,
        window_seconds: i64,
        closing: ClosingRange,
        lookback: u32,
    ) -> impl Future<Output = Result<Vec<WindowUpdate>>> + Send {
        (**self).closed_windows(group, window_seconds, closing, lookback)
    }
}

impl<T: RulesSource + ?Sized> RulesSource for Arc<T> {
    fn rules(&self) -> impl Future<Output = Result<Arc<Vec<Rule>>>> + Send {
        (**self).rules()
    }
}

impl<T: AlertStore + ?Sized> AlertStore for Arc<T> {
    fn raise(&self, alert: &Alert) -> impl Future<Output = Result<AlertStatus>> + Send {
        (**self).raise(alert)
    }
    fn mark_notified(&self, alert_id: &str) -> impl Future<Output = Result<()>> + Send {
        (**self).mark_notified(alert_id)
    }
}

// ---------------------------------------------------------------- query API

/// Where an aggregates read resumes: the storage key (`pk`, `sk`, see
/// [`crate::state::item`]) of the last item it evaluated. Any pair of non-empty strings is a
/// valid position: the store resumes at the first key after it in its own order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateCursor {
    pub pk: String,
    pub sk: String,
}

/// Where an alerts read resumes: the last alert evaluated, newest window first
/// (`window_start` is RFC 3339, as the alert holds it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertCursor {
    pub window_start: String,
    pub alert_id: String,
}

/// A validated `GET /aggregates`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregateQuery {
    pub key: Option<String>,
    /// The metric (`type`).
    pub metric: Option<String>,
    /// Windows of this size only (tumbling and hopping).
    pub window_seconds: Option<i64>,
    /// Window start at or after (epoch ms).
    pub from_ms: Option<i64>,
    /// Window start at or before (epoch ms).
    pub to_ms: Option<i64>,
    /// At most this many items (1..=[`crate::query::MAX_LIMIT`]).
    pub limit: usize,
    /// Resume after this position (from `next`).
    pub after: Option<AggregateCursor>,
}

impl AggregateQuery {
    /// The one group read when both `key` and `type` are given (a `Query` on its
    /// partition); otherwise the store scans.
    pub fn group(&self) -> Option<GroupKey> {
        Some(GroupKey {
            key: self.key.clone()?,
            metric: self.metric.clone()?,
        })
    }

    /// Whether `view` passes every filter (not the position: see `after`). Aggregates
    /// that counted no event never do.
    pub fn matches(&self, view: &AggregateView) -> bool {
        let start = parse_rfc3339_ms(&view.window_start);
        view.count > 0
            && self.key.as_ref().is_none_or(|k| *k == view.key)
            && self.metric.as_ref().is_none_or(|m| *m == view.metric)
            && self.window_seconds.is_none_or(|w| w == view.window_seconds)
            && self
                .from_ms
                .is_none_or(|from| start.is_some_and(|s| s >= from))
            && self.to_ms.is_none_or(|to| start.is_some_and(|s| s <= to))
    }

    /// The time bounds as whole seconds (window starts are whole seconds), so that
    /// their RFC 3339 forms sort like the starts they bound: `None` when no whole
    /// second lies in `[from, to]`.
    pub fn whole_second_bounds(&self) -> Option<(i64, i64)> {
        let from = self.from_ms.unwrap_or(i64::MIN / 2);
        let to = self.to_ms.unwrap_or(i64::MAX / 2);
        let lo = from + (1000 - from.rem_euclid(1000)) % 1000;
        let hi = to - to.rem_euclid(1000);
        (lo <= hi).then_some((lo, hi))
    }
}

/// A validated `GET /alerts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertQuery {
    /// Alerts whose `window_start` is at or after this (epoch ms).
    pub since_ms: Option<i64>,
    pub severity: Option<Severity>,
    /// The rule id.
    pub rule: Option<String>,
    pub limit: usize,
    pub after: Option<AlertCursor>,
}

impl AlertQuery {
    /// Whether `alert` passes every filter (not the position: see `after`).
    pub fn matches(&self, alert: &Alert) -> bool {
        self.since_ms.is_none_or(|since| {
            parse_rfc3339_ms(&alert.window_start).is_some_and(|start| start >= since)
        }) && self.severity.is_none_or(|s| s == alert.severity)
            && self.rule.as_ref().is_none_or(|r| *r == alert.rule_id)
    }
}

/// One page of results and where the next page starts (`None`: nothing after it).
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T, C> {
    pub items: Vec<T>,
    pub next: Option<C>,
}

/// A stored view of a SQL pipeline, as `GET /views` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ViewInfo {
    pub view: String,
    /// Its id: the `type` of its aggregate items.
    pub id: String,
    /// The output columns, in SELECT order.
    pub columns: Vec<String>,
    /// The window of its rows.
    pub window_seconds: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slide_seconds: Option<i64>,
}

/// The stored views of a SQL pipeline, for the read API.
pub trait ViewCatalog: Send + Sync {
    fn list(&self) -> Vec<ViewInfo>;
    fn find(&self, name: &str) -> Option<ViewInfo>;
    /// The row an aggregate is, if it is a row of one of the views.
    fn row(&self, aggregate: &AggregateView) -> Option<serde_json::Map<String, serde_json::Value>>;
}

/// Reads the aggregates table for the query API.
pub trait AggregateReader: Send + Sync {
    /// One page: at most `query.limit` matching aggregates after `query.after`, and
    /// the position to resume after when the read stopped before the end.
    fn aggregates(
        &self,
        query: &AggregateQuery,
    ) -> impl Future<Output = Result<Page<AggregateView, AggregateCursor>>> + Send;
}

/// Reads the alerts table for the query API.
pub trait AlertReader: Send + Sync {
    /// One page: at most `query.limit` matching alerts after `query.after`, newest
    /// window first, and the position to resume after.
    fn alerts(
        &self,
        query: &AlertQuery,
    ) -> impl Future<Output = Result<Page<Alert, AlertCursor>>> + Send;
}

impl<T: AggregateReader + ?Sized> AggregateReader for Arc<T> {
    fn aggregates(
        &self,
        query: &AggregateQuery,
    ) -> impl Future<Output = Result<Page<AggregateView, AggregateCursor>>> + Send {
        (**self).aggregates(query)
    }
}

impl<T: AlertReader + ?Sized> AlertReader for Arc<T> {
    fn alerts(
        &self,
        query: &AlertQuery,
    ) -> impl Future<Output = Result<Page<Alert, AlertCursor>>> + Send {
        (**self).alerts(query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(minute: i64, count: u64) -> WindowUpdate {
        crate::state::item::minute_update("k", "t", minute * 60_000, count)
    }

    fn cut(windows: &[WindowUpdate], from_min: i64, to_min: i64, lookback: u32) -> Vec<i64> {
        let mut cut = HistoryCut::new(
            ClosingRange {
                from_ms: from_min * 60_000,
                to_ms: to_min * 60_000,
            },
            lookback,
        );
        let mut fed = 0;
        for x in windows.iter().rev() {
            fed += 1;
            if !cut.push(x.clone()) {
                break;
            }
        }
        let got: Vec<i64> = cut
            .finish()
            .iter()
            .map(|x| x.window_start / 60_000)
            .collect();
        assert!(fed <= windows.len());
        got
    }

    #[test]
    fn a_cut_is_the_closed_windows_then_the_lookback_newest_first() {
        // Minutes 0..10 with data, minute 4 empty.
        let windows: Vec<WindowUpdate> = (0..10).map(|m| w(m, u64::from(m != 4))).collect();
        // Ends in [6, 9): minutes 5, 6, 7; then two earlier with data (3, 2: 4 is empty).
        assert_eq!(cut(&windows, 6, 9, 2), [7, 6, 5, 3, 2]);
        // Nothing with data in the range: nothing at all, however long the lookback.
        assert_eq!(cut(&windows, 5, 6, 5), Vec::<i64>::new());
        // A lookback reaching past the oldest window returns what there is.
        assert_eq!(cut(&windows, 2, 3, 20), [1, 0]);
        assert_eq!(cut(&windows, 10, 11, 1), [9, 8]);
    }
}
