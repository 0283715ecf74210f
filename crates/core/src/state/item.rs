//! The aggregate items the store keeps, their storage keys, and the window updates the
//! aggregate stage emits.
//!
//! Storage keys: `pk = type#key` (types cannot contain `#`, so the split is
//! unambiguous), `sk = label#start` with the window label (`60`, `3600/600`) and the
//! window start in RFC 3339, so a range of one key's windows is one `Query`.
//! Fingerprint pages sort apart under `~fp#…`; a group's watermark is the item
//! `sk = ~wm` of its partition.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::sql::AggregateState;
use crate::state::attr_size::{MAX_F64_BYTES, MAX_U64_BYTES, f64_size, int_size};
use crate::state::fingerprint::FingerprintSet;
use crate::state::row_text::RowText;
use crate::state::sequence::SeqNo;
use crate::state::statistics::AggState;
use crate::state::window::WindowSpec;
use crate::time::{format_rfc3339, parse_rfc3339_ms};

pub const WATERMARK_SORT_KEY: &str = "~wm";
pub const PAGE_PREFIX: &str = "~fp#";

/// What is aggregated: one metric of one entity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    pub key: String,
    pub metric: String,
}

impl GroupKey {
    pub fn partition_key(&self) -> String {
        format!("{}#{}", self.metric, self.key)
    }

    pub fn parse_partition_key(pk: &str) -> Option<GroupKey> {
        let (metric, key) = pk.split_once('#')?;
        Some(GroupKey {
            key: key.to_owned(),
            metric: metric.to_owned(),
        })
    }
}

/// One aggregate item: a group in one window.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemKey {
    pub group: GroupKey,
    pub window: WindowSpec,
    pub start_ms: i64,
}

impl ItemKey {
    pub fn pk(&self) -> String {
        self.group.partition_key()
    }

    pub fn sk(&self) -> String {
        format!("{}#{}", self.window.label(), format_rfc3339(self.start_ms))
    }

    /// Sort key of the `page`-th sealed fingerprint page of this (anchor) item.
    pub fn page_sk(&self, page: u32) -> String {
        format!("{PAGE_PREFIX}{}#{page:06}", self.sk())
    }

    pub fn parse(pk: &str, sk: &str) -> Option<ItemKey> {
        let group = GroupKey::parse_partition_key(pk)?;
        let (label, start) = sk.split_once('#')?;
        Some(ItemKey {
            group,
            window: label.parse().ok()?,
            start_ms: parse_rfc3339_ms(start)?,
        })
    }

    pub fn end_ms(&self) -> i64 {
        self.start_ms + self.window.size_ms
    }

    pub fn describe(&self) -> String {
        format!("{}/{}", self.pk(), self.sk())
    }
}

/// A stored aggregate. Only anchor items carry de-duplication state.
#[derive(Clone, Debug, PartialEq)]
pub struct AggregateItem {
    pub key: ItemKey,
    /// 0 means "not stored yet"; each write increments it and is conditioned on it.
    pub version: u64,
    pub state: AggState,
    /// Exactly-once: fingerprints of counted event ids not yet sealed into pages.
    pub fingerprints: FingerprintSet,
    /// Exactly-once: how many sealed fingerprint pages exist (`page_sk(1..=n)`).
    pub sealed_pages: u32,
    /// At-least-once: per source shard, the highest sequence number applied.
    pub high_water: BTreeMap<String, SeqNo>,
    /// DynamoDB TTL (epoch seconds), if the deployment expires aggregates.
    pub expires_at_s: Option<i64>,
    /// A SQL view's item: one state per aggregate of the view, in its SELECT order
    /// (empty for the envelope's metrics, and before the first event of a view's item).
    pub columns: Vec<AggregateState>,
}

impl AggregateItem {
    pub fn new(key: ItemKey) -> Self {
        AggregateItem {
            key,
            version: 0,
            state: AggState::EMPTY,
            fingerprints: FingerprintSet::new(),
            sealed_pages: 0,
            high_water: BTreeMap::new(),
            expires_at_s: None,
            columns: Vec::new(),
        }
    }

    pub fn view(&self) -> AggregateView {
        AggregateView::of(&self.key, &self.state).with_columns(&self.columns)
    }

    /// The update the aggregate stage emits after writing this item.
    pub fn update(&self) -> WindowUpdate {
        WindowUpdate::of(
            &self.key,
            &self.state,
            self.version,
            Arc::new(self.columns.clone()),
        )
    }

    /// The item's stored size in bytes as DynamoDB counts it (attribute names plus
    /// values) in the layout the AWS codec writes: what DynamoDB charges read and write
    /// units by and checks against its 400 KB limit
    /// ([`aggregate_item_size`], the one sizing function).
    pub fn stored_size(&self) -> usize {
        aggregate_item_size(self)
    }

    /// An upper bound of [`AggregateItem::stored_size`] over every state and version
    /// this item could be written with (its key, de-duplication state and expiry
    /// fixed): what a planner can count on before the counts are known
    /// ([`aggregate_item_size_bound`]).
    pub fn max_stored_size(&self) -> usize {
        aggregate_item_size_bound(self)
    }
}

/// The event-time watermark of one group: the start of the newest anchor window it
/// has seen an event in. It only grows, and is written in the same transaction as the
/// group's aggregates, so a retried batch judges lateness exactly as the first try did.
///
/// It also remembers which windows the commit that wrote it closed (see
/// [`GroupWatermark::closing`]), so that a retry whose first attempt committed but lost
/// its window updates can tell the detect stage again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupWatermark {
    pub group: GroupKey,
    pub watermark_ms: i64,
    /// The watermark before the commit that wrote this one (or, when a redelivery wrote
    /// it, the value the redelivered attempt had stored: the range then covers both).
    /// Windows whose end lies in `[closed_from_ms − L, watermark_ms − L)` became closed
    /// by that commit (L the allowed lateness). Items written before this field existed
    /// read as `watermark_ms` (nothing pending).
    pub closed_from_ms: i64,
    /// The last record (shard, sequence number) of the group in the batch that wrote
    /// this watermark: a later batch holding a record at or before it is a redelivery.
    pub last_record: Option<(String, SeqNo)>,
    /// 0 means "not stored yet".
    pub version: u64,
}

impl GroupWatermark {
    /// The windows the commit that wrote this watermark closed: a window (of any size:
    /// every window ends on an anchor boundary) whose end `e` satisfies
    /// `e + allowed_lateness < watermark` can never change again, because every event
    /// that could still fall in it is late. `None` when the range is empty.
    pub fn closing(&self, allowed_lateness_ms: i64) -> Option<ClosingRange> {
        let range = ClosingRange {
            from_ms: self.closed_from_ms.saturating_sub(allowed_lateness_ms),
            to_ms: self.watermark_ms.saturating_sub(allowed_lateness_ms),
        };
        (range.from_ms < range.to_ms).then_some(range)
    }

    /// The watermark item's stored size ([`watermark_size`]).
    pub fn stored_size(&self) -> usize {
        watermark_size(self)
    }
}

/// A conditional write of a group's watermark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatermarkWrite {
    pub watermark: GroupWatermark,
    pub expected_version: u64,
}

/// An upper bound of the stored size of a sealed fingerprint page of `anchor` holding
/// `page`, whatever its page number and expiry: for callers that know neither. The
/// exact size is [`page_size`].
pub fn page_stored_size(anchor: &ItemKey, page: &FingerprintSet) -> usize {
    page_size(anchor, u32::MAX, page, Some(i64::MAX))
}

/// A write of one aggregate item, conditioned on the version it was read at.
#[derive(Clone, Debug, PartialEq)]
pub struct ItemWrite {
    /// The new item, with `version = expected_version + 1`.
    pub item: AggregateItem,
    /// 0: the item must not exist yet.
    pub expected_version: u64,
    /// Fingerprint pages sealed by this write (`page number`, contents); written in the
    /// same transaction with the condition that they do not exist yet.
    pub sealed_page: Vec<(u32, FingerprintSet)>,
}

/// The public view of an aggregate: the `sluice demo --json` / `sluice query --json`
/// line, a stable contract.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AggregateView {
    pub kind: String,
    pub key: String,
    #[serde(rename = "type")]
    pub metric: String,
    pub window_seconds: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slide_seconds: Option<i64>,
    pub window_start: String,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub variance: f64,
    /// A SQL view's item: its aggregates' states (the read API turns them into the
    /// view's row); never on the envelope's lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<AggregateState>,
}

impl AggregateView {
    pub fn of(key: &ItemKey, state: &AggState) -> Self {
        AggregateView {
            kind: "aggregate".into(),
            key: key.group.key.clone(),
            metric: key.group.metric.clone(),
            window_seconds: key.window.size_secs(),
            slide_seconds: (!key.window.is_tumbling()).then(|| key.window.slide_secs()),
            window_start: format_rfc3339(key.start_ms),
            count: state.count,
            sum: state.total(),
            min: state.min,
            max: state.max,
            mean: state.mean,
            variance: state.variance(),
            columns: Vec::new(),
        }
    }

    /// The view of an item with its SQL view states, if it has any.
    pub fn with_columns(mut self, columns: &[AggregateState]) -> Self {
        self.columns = columns.to_vec();
        self
    }
}

/// What the aggregate stage tells the detect stage after each write: the item's state
/// as of `version` (a snapshot, so re-deliveries and re-orderings are harmless).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowUpdate {
    pub key: String,
    #[serde(rename = "type")]
    pub metric: String,
    pub window_seconds: i64,
    pub slide_seconds: i64,
    /// Epoch milliseconds.
    pub window_start: i64,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub variance: f64,
    pub version: u64,
    /// A SQL view's item: its aggregates' states (detect computes the view's row from
    /// them for the rules that watch the view). Shared: a store hands out the states it
    /// holds without copying them.
    #[serde(default, skip_serializing_if = "no_states")]
    pub columns: Arc<Vec<AggregateState>>,
    /// A SQL view's row as the aggregate stage computed it from those states when it
    /// emitted the update: every output column's value as rows print it, in the view's
    /// order. A line that carries it carries no states: detect reads rule columns from
    /// the row (updates built from stored items carry states, and no row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<RowText>,
}

/// A minute window's update of `count` events with zero statistics, version 1: the
/// fixture tests adjust with struct update syntax.
#[cfg(test)]
pub(crate) fn minute_update(
    key: &str,
    metric: &str,
    window_start: i64,
    count: u64,
) -> WindowUpdate {
    WindowUpdate {
        key: key.into(),
        metric: metric.into(),
        window_seconds: 60,
        slide_seconds: 60,
        window_start,
        count,
        sum: 0.0,
        min: 0.0,
        max: 0.0,
        mean: 0.0,
        variance: 0.0,
        version: 1,
        columns: Arc::default(),
        row: None,
    }
}

fn no_states(columns: &Arc<Vec<AggregateState>>) -> bool {
    columns.is_empty()
}

impl WindowUpdate {
    /// The update of the item `key` holding `state` (and a view's `columns`) at
    /// `version`.
    pub fn of(
        key: &ItemKey,
        state: &AggState,
        version: u64,
        columns: Arc<Vec<AggregateState>>,
    ) -> WindowUpdate {
        WindowUpdate {
            key: key.group.key.clone(),
            metric: key.group.metric.clone(),
            window_seconds: key.window.size_secs(),
            slide_seconds: key.window.slide_secs(),
            window_start: key.start_ms,
            count: state.count,
            sum: state.total(),
            min: state.min,
            max: state.max,
            mean: state.mean,
            variance: state.variance(),
            version,
            columns,
            row: None,
        }
    }

    pub fn window(&self) -> WindowSpec {
        WindowSpec::hopping(self.window_seconds, self.slide_seconds)
    }
}

/// Windows of a group that a commit closed: every window whose END lies in
/// `[from_ms, to_ms)` (epoch milliseconds) will never change again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ClosingRange {
    #[serde(rename = "from")]
    pub from_ms: i64,
    #[serde(rename = "to")]
    pub to_ms: i64,
}

impl ClosingRange {
    pub fn contains_end(&self, end_ms: i64) -> bool {
        (self.from_ms..self.to_ms).contains(&end_ms)
    }

    /// The smallest range holding both.
    pub fn union(self, other: ClosingRange) -> ClosingRange {
        ClosingRange {
            from_ms: self.from_ms.min(other.from_ms),
            to_ms: self.to_ms.max(other.to_ms),
        }
    }
}

/// One line of the window-updates stream: a [`WindowUpdate`] and, when the commit that
/// produced it closed windows of its group, which ones (`"closing":{"from":…,"to":…}`).
/// Lines written before closing ranges existed have none and still parse.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UpdateLine {
    #[serde(flatten)]
    pub update: WindowUpdate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closing: Option<ClosingRange>,
}

impl<'de> Deserialize<'de> for UpdateLine {
    /// Read field by field: a derived `flatten` buffers the whole line first, which
    /// was a fifth of the detect stage's time on SQL views' updates.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Line {
            key: String,
            #[serde(rename = "type")]
            metric: String,
            window_seconds: i64,
            slide_seconds: i64,
            window_start: i64,
            count: u64,
            sum: f64,
            min: f64,
            max: f64,
            mean: f64,
            variance: f64,
            version: u64,
            #[serde(default)]
            columns: Vec<AggregateState>,
            #[serde(default)]
            row: Option<RowText>,
            #[serde(default)]
            closing: Option<ClosingRange>,
        }
        let l = Line::deserialize(d)?;
        Ok(UpdateLine {
            update: WindowUpdate {
                key: l.key,
                metric: l.metric,
                window_seconds: l.window_seconds,
                slide_seconds: l.slide_seconds,
                window_start: l.window_start,
                count: l.count,
                sum: l.sum,
                min: l.min,
                max: l.max,
                mean: l.mean,
                variance: l.variance,
                version: l.version,
                columns: Arc::new(l.columns),
                row: l.row,
            },
            closing: l.closing,
        })
    }
}

// Stored sizes: how many bytes DynamoDB counts for each item Sluice writes. The limit
// checks (`limits::dynamodb`, which re-exports these) and the metering use them.

/// The attributes of an aggregate item that the state and version decide: the
/// counts (`count`, `sum`, `sum_comp`, `min`, `max`, `mean`, `m2`) and `version`.
const STATE_NAMES: [&str; 8] = [
    "count", "sum", "sum_comp", "min", "max", "mean", "m2", "version",
];

/// The bytes of the state-and-version attributes as written.
fn state_size(item: &AggregateItem) -> usize {
    let st = &item.state;
    STATE_NAMES.iter().map(|n| n.len()).sum::<usize>()
        + int_size(st.count)
        + [st.sum, st.sum_comp, st.min, st.max, st.mean, st.m2]
            .into_iter()
            .map(f64_size)
            .sum::<usize>()
        + int_size(item.version)
        + columns_size(&item.columns)
}

/// The attribute name of a SQL view item's aggregate states, and the attribute's bytes:
/// the states as one JSON array ([`columns_json`]).
pub const COLUMNS_ATTRIBUTE: &str = "cols";

/// A view item's aggregate states as the stored JSON array text.
pub fn columns_json(columns: &[AggregateState]) -> String {
    // States are plain data: encoding cannot fail.
    serde_json::to_string(columns).unwrap_or_default()
}

fn columns_size(columns: &[AggregateState]) -> usize {
    /// Counts what is written: items are sized several times per commit, so the
    /// text is not built to be measured.
    struct Counted(usize);
    impl std::io::Write for Counted {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    if columns.is_empty() {
        return 0;
    }
    let mut counted = Counted(0);
    // States are plain data and the writer never fails: encoding cannot fail.
    let _ = serde_json::to_writer(&mut counted, columns);
    COLUMNS_ATTRIBUTE.len() + counted.0
}

/// The most bytes the state-and-version attributes can take.
fn max_state_size() -> usize {
    STATE_NAMES.iter().map(|n| n.len()).sum::<usize>() + 2 * MAX_U64_BYTES + 6 * MAX_F64_BYTES
}

/// Every other attribute: keys, window, de-duplication state, expiry.
fn key_and_dedup_size(item: &AggregateItem) -> usize {
    let k = &item.key;
    let mut size = 0;
    let mut s = |name: &str, value_bytes: usize| size += name.len() + value_bytes;
    s("pk", k.pk().len());
    s("sk", k.sk().len());
    s("key", k.group.key.len());
    s("type", k.group.metric.len());
    s("window_seconds", int_size(k.window.size_secs()));
    s("slide_seconds", int_size(k.window.slide_secs()));
    s("window_start", format_rfc3339(k.start_ms).len());
    s("window_start_ms", int_size(k.start_ms));
    if !item.fingerprints.is_empty() {
        s("fps", 8 * item.fingerprints.len());
    }
    if item.sealed_pages > 0 {
        s("fp_pages", int_size(item.sealed_pages));
    }
    if !item.high_water.is_empty() {
        let entries: usize = item
            .high_water
            .iter()
            .map(|(shard, seq)| shard.len() + seq.as_str().len() + 1)
            .sum();
        s("hwm", 3 + entries);
    }
    if let Some(at) = item.expires_at_s {
        s("expires_at", int_size(at));
    }
    size
}

/// The stored size of an aggregate item in the layout the AWS codec writes
/// (`sluice_aws::dynamodb::codec::item_to_attrs`; a test there checks that both
/// agree): attribute names plus values, strings in UTF-8 bytes, binary in raw
/// bytes, numbers as [`number_size`](crate::state::attr_size::number_size), a map 3 bytes plus 1 per element. This is
/// the one sizing of aggregate items: limits, metering and the planner use it
/// ([`AggregateItem::stored_size`]).
pub fn aggregate_item_size(item: &AggregateItem) -> usize {
    key_and_dedup_size(item) + state_size(item)
}

/// [`aggregate_item_size`] with the counts and version at their largest: never less
/// than the stored size of this item whatever state and version it is written with
/// (its key, de-duplication state and expiry as they are), and at most 144 bytes
/// more (195 bytes of state at worst, 51 at least). The aggregate planner sizes the
/// coarser items a transaction will write with it, before their merged counts are
/// known.
pub fn aggregate_item_size_bound(item: &AggregateItem) -> usize {
    key_and_dedup_size(item) + max_state_size()
}

/// The stored size of sealed fingerprint page `page` of `anchor`.
pub fn page_size(
    anchor: &ItemKey,
    page: u32,
    set: &FingerprintSet,
    expires_at_s: Option<i64>,
) -> usize {
    "pk".len()
        + anchor.pk().len()
        + "sk".len()
        + anchor.page_sk(page).len()
        + "fps".len()
        + 8 * set.len()
        + expires_at_s.map_or(0, |at| "expires_at".len() + int_size(at))
}

/// The stored size of a group's watermark item.
pub fn watermark_size(w: &GroupWatermark) -> usize {
    "pk".len()
        + w.group.partition_key().len()
        + "sk".len()
        + WATERMARK_SORT_KEY.len()
        + "wm".len()
        + int_size(w.watermark_ms)
        + "closed_from".len()
        + int_size(w.closed_from_ms)
        + w.last_record.as_ref().map_or(0, |(shard, seq)| {
            "last_shard".len() + shard.len() + "last_seq".len() + seq.as_str().len()
        })
        + "version".len()
        + int_size(w.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An update line reads back as written, with or without its closing range and
    /// view states, and unknown fields are ignored (as the derived reader did).
    #[test]
    fn update_lines_read_back_as_written() {
        let kind = crate::sql::AggregateKind::new("SUM", Some(&crate::sql::SqlType::Double))
            .expect("SUM(DOUBLE)");
        let mut state = kind.empty();
        kind.add(&mut state, &crate::sql::Value::Double(2.5))
            .expect("adds");
        let update = WindowUpdate {
            key: "[\"k\"]".into(),
            metric: "g1".into(),
            window_seconds: 60,
            slide_seconds: 60,
            window_start: 120_000,
            count: 3,
            sum: 7.5,
            min: 1.0,
            max: 4.0,
            mean: 2.5,
            variance: 1.5,
            version: 4,
            columns: Arc::new(vec![state]),
            row: None,
        };
        let closing = ClosingRange {
            from_ms: 60_000,
            to_ms: 180_000,
        };
        for line in [
            UpdateLine {
                update: update.clone(),
                closing: Some(closing),
            },
            UpdateLine {
                update: WindowUpdate {
                    columns: Arc::default(),
                    ..update.clone()
                },
                closing: None,
            },
        ] {
            let text = serde_json::to_string(&line).expect("writes");
            let back: UpdateLine = serde_json::from_str(&text).expect("reads");
            assert_eq!(back, line, "{text}");
            let extra = text.replacen('{', "{\"later\":[1,{}],", 1);
            let back: UpdateLine = serde_json::from_str(&extra).expect("reads");
            assert_eq!(back, line, "{extra}");
        }
        let missing = r#"{"key":"k","type":"t","window_seconds":60}"#;
        assert!(serde_json::from_str::<UpdateLine>(missing).is_err());
    }

    #[test]
    fn keys_round_trip_and_sort_by_time() {
        let k = ItemKey {
            group: GroupKey {
                key: "sensor#1 🦀".into(),
                metric: "temp".into(),
            },
            window: WindowSpec::tumbling(60),
            start_ms: 1_767_225_660_000,
        };
        assert_eq!(k.pk(), "temp#sensor#1 🦀");
        assert_eq!(k.sk(), "60#2026-01-01T00:01:00Z");
        assert_eq!(ItemKey::parse(&k.pk(), &k.sk()), Some(k.clone()));
        let later = ItemKey {
            start_ms: k.start_ms + 60_000,
            ..k.clone()
        };
        assert!(k.sk() < later.sk());
        assert!(k.page_sk(1) > later.sk(), "pages sort after every window");
        let hop = ItemKey {
            window: WindowSpec::hopping(3600, 600),
            ..k.clone()
        };
        assert_eq!(hop.sk(), "3600/600#2026-01-01T00:01:00Z");
        assert_eq!(ItemKey::parse(&hop.pk(), &hop.sk()), Some(hop));
    }

    #[test]
    fn stored_size_grows_with_fingerprints() {
        let k = ItemKey {
            group: GroupKey {
                key: "k".into(),
                metric: "t".into(),
            },
            window: WindowSpec::tumbling(60),
            start_ms: 0,
        };
        let mut item = AggregateItem::new(k);
        let small = item.stored_size();
        item.fingerprints.extend(0..1000);
        assert_eq!(item.stored_size(), small + 3 + 8000);
    }
}
