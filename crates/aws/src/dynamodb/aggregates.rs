//! The aggregates table: [`DynamoAggregateStore`] implements [`AggregateStore`].
//!
//! ## Item layout
//! Aggregate item (one group in one window):
//!
//! | attribute | type | content |
//! |---|---|---|
//! | `pk` | S | `type#key` ([`ItemKey::pk`]) |
//! | `sk` | S | `label#start`, e.g. `60#2026-01-01T00:01:00Z` ([`ItemKey::sk`]) |
//! | `key` | S | the entity |
//! | `type` | S | the metric |
//! | `window_seconds`, `slide_seconds` | N | window size and slide |
//! | `window_start` | S | RFC 3339 (UTC) |
//! | `window_start_ms` | N | epoch milliseconds |
//! | `count` | N | events counted |
//! | `sum`, `sum_comp`, `min`, `max`, `mean`, `m2` | N (S when out of range, see [`super::codec`]) | [`sluice_core::state::statistics::AggState`] |
//! | `version` | N | optimistic-concurrency version, 1 on the first write |
//! | `fps` | B | exactly-once: packed fingerprints ([`FingerprintSet::to_bytes`]); absent when empty |
//! | `fp_pages` | N | exactly-once: number of sealed fingerprint pages; absent when 0 |
//! | `hwm` | M of S | at-least-once: shard id -> highest applied sequence number; absent when empty |
//! | `expires_at` | N | TTL, epoch seconds; absent when aggregates do not expire |
//!
//! Sealed fingerprint page `n` of an anchor item: `pk` = the anchor's, `sk` =
//! [`ItemKey::page_sk`]`(n)` (`~fp#…`, sorting after every window), `fps` B, and the
//! anchor's `expires_at` so a page never outlives its anchor by much.
//!
//! Event-time watermark of a group ([`sluice_core::state::item::GroupWatermark`]): `pk` = the group's `pk`, `sk` =
//! `~wm` ([`WATERMARK_SORT_KEY`]), `wm` N (epoch milliseconds), `closed_from` N (the
//! watermark before the commit that wrote it: the closing range), `last_shard` and
//! `last_seq` S (the group's last record in that batch, to recognise a redelivery),
//! `version` N.
//!
//! ## Reads
//! `load` is one strongly consistent `BatchGetItem` (100 keys per request, unprocessed
//! keys retried with backoff) of the anchor and coarse items and the groups' watermarks.
//!
//! `closed_windows` ([`WindowHistory`], for the detect stage) is one strongly consistent
//! `Query` on the group's partition, `sk BETWEEN "<size>#" AND "<size>#<last start
//! ending before the range's end>"`, newest first (`ScanIndexForward = false`), without
//! fingerprint sets, with `Limit` the most items it can need (the windows the range can
//! hold, plus the lookback, at most 1,000 a page), paginated until it has the closed
//! windows and their lookback: it reads about as many items as it returns.
//!
//! ## Writes
//! A commit of a single action (one item without sealed pages, or a watermark alone) is
//! a `PutItem` conditioned on `attribute_not_exists(pk)` (expected version 0) or
//! `version = :v`. Anything more is one `TransactWriteItems`: one `Put` per item and for
//! the watermark under the same conditions, one `Put` per sealed page conditioned on
//! `attribute_not_exists(pk)`. A failed condition (or a transaction conflict) is
//! [`Commit::Conflict`]: the caller re-reads and re-plans.
//!
//! Every `TransactWriteItems` carries a `ClientRequestToken` derived from its whole
//! content ([`request_token`]: table, every item's attributes, every condition), so a
//! re-send of a transaction that already committed (within DynamoDB's 10-minute
//! idempotency window) returns success instead of failing its version conditions,
//! and two different transactions never share a token (which DynamoDB would reject as
//! `IdempotentParameterMismatch`). Every committed write raises the versions it
//! touches, so a token is never legitimately reused for new work. (Without a token
//! the SDK makes a random one per call, which covers only its own retries.)
//!
//! Before sending, a commit is checked against DynamoDB's limits
//! ([`sluice_core::state::limits::dynamodb::check_commit`]: 400 KB per item; per transaction
//! 100 actions on distinct items and 4 MB), the same check the in-memory store makes;
//! a broken limit is [`Error::LimitExceeded`] and nothing is sent. A server that
//! rejects a write for a limit anyway (a validation error, or a transaction cancelled
//! with a `ValidationError` reason about item size) yields the same error.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnConsumedCapacity, TransactWriteItem};
use sluice_core::ports::{AggregateStore, Commit, HistoryCut, Loaded, WindowHistory};
use sluice_core::state::fingerprint::{FingerprintSet, digest_hex};
use sluice_core::state::item::{
    AggregateItem, ClosingRange, GroupKey, ItemKey, ItemWrite, PAGE_PREFIX, WATERMARK_SORT_KEY,
    WatermarkWrite, WindowUpdate,
};
use sluice_core::state::limits::dynamodb::page_size;
use sluice_core::state::window::WindowSpec;
use sluice_core::time::format_rfc3339;
use sluice_core::{Error, Result};

use super::codec::{self, Attrs, attr};
use super::{Meter, batch_get, page_read_units, read_units, reported, write_units};
use crate::backoff::RetryPolicy;
use crate::classify::{self, DYNAMODB};

const CONDITION_NEW: &str = "attribute_not_exists(pk)";
const CONDITION_VERSION: &str = "#version = :expected";

/// The aggregates table; see the module documentation for the item layout.
#[derive(Clone, Debug)]
pub struct DynamoAggregateStore {
    client: Client,
    table: String,
    retry: RetryPolicy,
    meter: Arc<Meter>,
}

impl DynamoAggregateStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoAggregateStore {
            client,
            table: table.into(),
            retry: RetryPolicy::default(),
            meter: Arc::new(Meter::default()),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// (read units, write units) consumed through this store (clones share the meter);
    /// see [`Meter`] for how they are counted.
    pub fn units(&self) -> (f64, f64) {
        self.meter.units()
    }

    /// (read units, write units) as computed from item sizes, whatever the server
    /// reports (use this against local emulators, which report made-up numbers).
    pub fn estimated_units(&self) -> (f64, f64) {
        self.meter.estimated_units()
    }

    /// Every action of a commit, in order: each item, its sealed pages, the watermark.
    fn actions(&self, writes: &[ItemWrite], watermark: Option<&WatermarkWrite>) -> Vec<Action> {
        let mut actions = Vec::new();
        for w in writes {
            actions.push(Action {
                item: codec::item_to_attrs(&w.item),
                condition: Condition::Version(w.expected_version),
                size: w.item.stored_size(),
            });
            for (n, page) in &w.sealed_page {
                actions.push(Action {
                    item: codec::page_to_attrs(&w.item.key, *n, page, w.item.expires_at_s),
                    condition: Condition::Absent,
                    size: page_size(&w.item.key, *n, page, w.item.expires_at_s),
                });
            }
        }
        if let Some(wm) = watermark {
            actions.push(Action {
                item: codec::watermark_to_attrs(&wm.watermark),
                condition: Condition::Version(wm.expected_version),
                size: wm.watermark.stored_size(),
            });
        }
        actions
    }

    async fn put_one(&self, action: Action) -> Result<Commit> {
        let (expression, names, values) = action.condition.expression();
        let computed = write_units(action.size);
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(action.item))
            .condition_expression(expression)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .return_consumed_capacity(ReturnConsumedCapacity::Total);
        match super::put_item(&self.table, request, true).await? {
            Some(out) => {
                self.meter
                    .write(reported(out.consumed_capacity()), computed);
                Ok(Commit::Done)
            }
            None => {
                self.meter.write(None, computed);
                Ok(Commit::Conflict)
            }
        }
    }

    async fn transact(&self, actions: Vec<Action>) -> Result<Commit> {
        let token = request_token(&self.table, &actions);
        let mut items = Vec::with_capacity(actions.len());
        let mut computed = 0.0;
        for action in actions {
            computed += super::transactional_write_units(action.size);
            let (expression, names, values) = action.condition.expression();
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(action.item))
                .condition_expression(expression)
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .build()
                .map_err(|e| {
                    classify::build_error(DYNAMODB, "TransactWriteItems", &self.table, e)
                })?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        let result = self
            .client
            .transact_write_items()
            .client_request_token(token)
            .set_transact_items(Some(items))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match result {
            Ok(out) => {
                self.meter
                    .write(reported(out.consumed_capacity()), computed);
                Ok(Commit::Done)
            }
            Err(e) => {
                let reasons: Vec<String> = match e.as_service_error() {
                    Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                        if let Some(limit) = cancelled_for_a_limit(c) {
                            return Err(limit);
                        }
                        c.cancellation_reasons()
                            .iter()
                            .filter_map(|r| r.code().map(str::to_owned))
                            .collect()
                    }
                    _ if classify::code_of(&e) == Some("TransactionConflictException") => {
                        vec!["TransactionConflict".to_owned()]
                    }
                    _ => return Err(classify::dynamodb("TransactWriteItems", &self.table, e)),
                };
                if reasons
                    .iter()
                    .any(|r| r == "ConditionalCheckFailed" || r == "TransactionConflict")
                {
                    self.meter.write(None, computed);
                    return Ok(Commit::Conflict);
                }
                if reasons.iter().any(|r| classify::is_throttling_code(r)) {
                    return Err(Error::Throttled {
                        service: DYNAMODB,
                        operation: "TransactWriteItems",
                        message: format!(
                            "table {:?}: transaction cancelled: {}",
                            self.table,
                            reasons.join(", ")
                        ),
                    });
                }
                Err(classify::dynamodb("TransactWriteItems", &self.table, e))
            }
        }
    }

    /// The items of one group (metric of one key) whose window starts within
    /// `[from_ms, to_ms]`, oldest first; one window spec only when `window` is given.
    /// Fingerprint sets are not read (a projection leaves them out), so the items'
    /// `fingerprints` are empty: this is for display, not for planning writes.
    pub async fn query(
        &self,
        group: &GroupKey,
        window: Option<WindowSpec>,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<AggregateItem>> {
        if from_ms > to_ms {
            return Ok(Vec::new());
        }
        let mut values: HashMap<String, AttributeValue> =
            HashMap::from([(":pk".to_owned(), codec::s(group.partition_key()))]);
        let condition = match window {
            Some(w) => {
                // Whole seconds, so the RFC 3339 bounds sort like the starts they bound;
                // the exact range is applied below.
                let lo = from_ms + (1000 - from_ms.rem_euclid(1000)) % 1000;
                let hi = to_ms - to_ms.rem_euclid(1000);
                if lo > hi {
                    return Ok(Vec::new()); // no whole second, so no window start, in range
                }
                values.insert(
                    ":lo".into(),
                    codec::s(format!("{}#{}", w.label(), format_rfc3339(lo))),
                );
                values.insert(
                    ":hi".into(),
                    codec::s(format!("{}#{}", w.label(), format_rfc3339(hi))),
                );
                "pk = :pk AND sk BETWEEN :lo AND :hi"
            }
            None => {
                values.insert(":pages".into(), codec::s("~"));
                "pk = :pk AND sk < :pages"
            }
        };
        let (projection, names) = projection();
        let mut items = Vec::new();
        let send = |start| {
            let request = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(condition)
                .set_expression_attribute_values(Some(values.clone()))
                .projection_expression(&projection)
                .set_expression_attribute_names(Some(names.clone()))
                .set_exclusive_start_key(start)
                .return_consumed_capacity(ReturnConsumedCapacity::Total);
            super::query_page(&self.table, request)
        };
        super::paginate(None, send, |mut got| {
            self.meter.read_page(&got, false);
            for m in &got.items {
                let item = codec::attrs_to_item(m)?;
                let in_window = window.is_none_or(|w| item.key.window == w);
                if in_window && (from_ms..=to_ms).contains(&item.key.start_ms) {
                    items.push(item);
                }
            }
            Ok(got.next_start())
        })
        .await?;
        items.sort_by_key(|a| (a.key.start_ms, a.key.window));
        Ok(items)
    }

    /// Every aggregate item of the table (`Scan`), without watermarks, fingerprint pages
    /// or fingerprint sets.
    pub async fn scan_all(&self) -> Result<Vec<AggregateItem>> {
        let (projection, names) = projection();
        let (raw, reported_units) =
            super::scan(&self.client, &self.table, Some((&projection, &names))).await?;
        let computed = page_read_units(raw.iter().map(super::attrs_size).sum(), false);
        self.meter.read(reported_units, computed);
        let mut items = Vec::new();
        for m in &raw {
            let pk = m.get(attr::PK).and_then(codec::str_of).unwrap_or_default();
            let sk = m.get(attr::SK).and_then(codec::str_of).unwrap_or_default();
            if pk.is_empty() || sk == WATERMARK_SORT_KEY || sk.starts_with(PAGE_PREFIX) {
                continue;
            }
            items.push(codec::attrs_to_item(m)?);
        }
        items.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(items)
    }
}

/// Items one page of a history `Query` asks for at most.
const MAX_HISTORY_PAGE_ITEMS: i64 = 1000;

impl WindowHistory for DynamoAggregateStore {
    async fn closed_windows(
        &self,
        group: &GroupKey,
        window_seconds: i64,
        closing: ClosingRange,
        lookback: u32,
    ) -> Result<Vec<WindowUpdate>> {
        let spec = WindowSpec::tumbling(window_seconds);
        // The last whole-second start of a window ending before `to` (starts are whole
        // seconds, so the RFC 3339 bound sorts like the starts it bounds).
        let last_start = closing.to_ms.saturating_sub(spec.size_ms).saturating_sub(1);
        let hi = last_start - last_start.rem_euclid(1000);
        let label = spec.label();
        let values: HashMap<String, AttributeValue> = HashMap::from([
            (":pk".to_owned(), codec::s(group.partition_key())),
            (":lo".to_owned(), codec::s(format!("{label}#"))),
            (
                ":hi".to_owned(),
                codec::s(format!("{label}#{}", format_rfc3339(hi))),
            ),
        ]);
        let in_range =
            (closing.to_ms.saturating_sub(closing.from_ms) / spec.size_ms.max(1)).saturating_add(2);
        let limit = in_range
            .saturating_add(i64::from(lookback))
            .clamp(1, MAX_HISTORY_PAGE_ITEMS);
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let (projection, names) = projection();
        let mut cut = HistoryCut::new(closing, lookback);
        let send = |start| {
            let request = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                .set_expression_attribute_values(Some(values.clone()))
                .projection_expression(&projection)
                .set_expression_attribute_names(Some(names.clone()))
                .consistent_read(true)
                .scan_index_forward(false)
                .limit(limit)
                .set_exclusive_start_key(start)
                .return_consumed_capacity(ReturnConsumedCapacity::Total);
            super::query_page(&self.table, request)
        };
        super::paginate(None, send, |mut got| {
            self.meter.read_page(&got, true);
            for m in &got.items {
                let item = codec::attrs_to_item(m)?;
                if item.key.window != spec {
                    continue;
                }
                if !cut.push(item.update()) {
                    return Ok(None);
                }
            }
            Ok(got.next_start())
        })
        .await?;
        Ok(cut.finish())
    }
}

/// The limit a transaction was cancelled for, if a cancellation reason is a
/// `ValidationError` about one (DynamoDB cancels a transaction whose item would grow
/// past 400 KB this way).
fn cancelled_for_a_limit(
    c: &aws_sdk_dynamodb::types::error::TransactionCanceledException,
) -> Option<Error> {
    c.cancellation_reasons().iter().find_map(|r| {
        classify::limit_of(
            DYNAMODB,
            "TransactWriteItems",
            r.code()?,
            r.message().unwrap_or_default(),
        )
    })
}

/// A projection of every attribute but `fps`, with placeholders for reserved words.
fn projection() -> (String, HashMap<String, String>) {
    let names: HashMap<String, String> = attr::ALL_BUT_FPS
        .iter()
        .enumerate()
        .map(|(i, name)| (format!("#a{i}"), (*name).to_owned()))
        .collect();
    let expression = (0..attr::ALL_BUT_FPS.len())
        .map(|i| format!("#a{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    (expression, names)
}

/// The condition of one written item.
#[derive(Clone, Copy, Debug)]
enum Condition {
    /// The item must not exist (a sealed page).
    Absent,
    /// The item must be at this version (0: must not exist yet).
    Version(u64),
}

type Names = Option<HashMap<String, String>>;
type Values = Option<HashMap<String, AttributeValue>>;

impl Condition {
    fn expression(self) -> (&'static str, Names, Values) {
        match self {
            Condition::Absent | Condition::Version(0) => (CONDITION_NEW, None, None),
            Condition::Version(v) => (
                CONDITION_VERSION,
                Some(HashMap::from([(
                    "#version".to_owned(),
                    attr::VERSION.to_owned(),
                )])),
                Some(HashMap::from([(
                    ":expected".to_owned(),
                    codec::int_value(v),
                )])),
            ),
        }
    }
}

/// One `Put` of a commit.
#[derive(Debug)]
struct Action {
    item: Attrs,
    condition: Condition,
    /// Stored size, for metering.
    size: usize,
}

impl AggregateStore for DynamoAggregateStore {
    async fn load(&self, keys: &[ItemKey], groups: &[GroupKey]) -> Result<Loaded> {
        let unique_keys: BTreeSet<&ItemKey> = keys.iter().collect();
        let unique_groups: BTreeSet<&GroupKey> = groups.iter().collect();
        let requested = unique_keys.len() + unique_groups.len();
        if requested == 0 {
            return Ok(Loaded::default());
        }
        let raw_keys: Vec<Attrs> = unique_keys
            .into_iter()
            .map(codec::item_key)
            .chain(
                unique_groups
                    .into_iter()
                    .map(|g| codec::key(g.partition_key(), WATERMARK_SORT_KEY)),
            )
            .collect();
        let got = batch_get(&self.client, &self.table, raw_keys, true, &self.retry).await?;
        let mut loaded = Loaded::default();
        let mut computed = 0.0;
        for m in &got.items {
            if m.get(attr::SK).and_then(codec::str_of) == Some(WATERMARK_SORT_KEY) {
                let wm = codec::attrs_to_watermark(m)?;
                computed += read_units(wm.stored_size(), true);
                loaded.watermarks.push(wm);
            } else {
                let item = codec::attrs_to_item(m)?;
                computed += read_units(item.stored_size(), true);
                loaded.items.push(item);
            }
        }
        computed += (requested - got.items.len()) as f64 * read_units(0, true);
        self.meter.read(got.reported, computed);
        Ok(loaded)
    }

    async fn load_page(&self, anchor: &ItemKey, page: u32) -> Result<Option<FingerprintSet>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(codec::key(anchor.pk(), anchor.page_sk(page))))
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| classify::dynamodb("GetItem", &self.table, e))?;
        let set = out.item().map(codec::attrs_to_page).transpose()?;
        let expires_at = out
            .item()
            .and_then(|m| m.get(attr::EXPIRES_AT))
            .and_then(codec::i64_of);
        let size = set
            .as_ref()
            .map_or(0, |s| page_size(anchor, page, s, expires_at));
        self.meter
            .read(reported(out.consumed_capacity()), read_units(size, true));
        Ok(set)
    }

    async fn commit(
        &self,
        writes: &[ItemWrite],
        watermark: Option<&WatermarkWrite>,
    ) -> Result<Commit> {
        // DynamoDB's limits, checked as the in-memory store checks them.
        sluice_core::state::limits::dynamodb::check_commit(writes, watermark)?;
        let mut actions = self.actions(writes, watermark);
        match actions.len() {
            0 => Ok(Commit::Done),
            1 => self.put_one(actions.remove(0)).await,
            _ => self.transact(actions).await,
        }
    }
}

/// The `ClientRequestToken` of a transaction: 32 hex digits of a digest of a canonical
/// encoding of the table name and, per action in order, its condition and its item
/// (attributes sorted by name, sets sorted, every field length-prefixed). Equal for
/// the same request, different for any other.
fn request_token(table: &str, actions: &[Action]) -> String {
    let mut bytes = Vec::new();
    put_bytes(&mut bytes, table.as_bytes());
    for action in actions {
        match action.condition {
            Condition::Absent => bytes.push(b'a'),
            Condition::Version(v) => {
                bytes.push(b'v');
                bytes.extend_from_slice(&v.to_be_bytes());
            }
        }
        canonical_map(&action.item, &mut bytes);
    }
    digest_hex(&bytes)
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn canonical_map(map: &HashMap<String, AttributeValue>, out: &mut Vec<u8>) {
    let mut names: Vec<&String> = map.keys().collect();
    names.sort();
    out.extend_from_slice(&(names.len() as u64).to_be_bytes());
    for name in names {
        put_bytes(out, name.as_bytes());
        canonical_value(&map[name], out);
    }
}

fn canonical_value(value: &AttributeValue, out: &mut Vec<u8>) {
    let sorted = |tag: u8, mut members: Vec<&[u8]>, out: &mut Vec<u8>| {
        members.sort_unstable();
        out.push(tag);
        out.extend_from_slice(&(members.len() as u64).to_be_bytes());
        for m in members {
            put_bytes(out, m);
        }
    };
    match value {
        AttributeValue::S(s) => {
            out.push(b'S');
            put_bytes(out, s.as_bytes());
        }
        AttributeValue::N(n) => {
            out.push(b'N');
            put_bytes(out, n.as_bytes());
        }
        AttributeValue::B(b) => {
            out.push(b'B');
            put_bytes(out, b.as_ref());
        }
        AttributeValue::Bool(b) => out.extend_from_slice(&[b'T', u8::from(*b)]),
        AttributeValue::Null(b) => out.extend_from_slice(&[b'0', u8::from(*b)]),
        AttributeValue::M(m) => {
            out.push(b'M');
            canonical_map(m, out);
        }
        AttributeValue::L(list) => {
            out.push(b'L');
            out.extend_from_slice(&(list.len() as u64).to_be_bytes());
            for v in list {
                canonical_value(v, out);
            }
        }
        AttributeValue::Ss(set) => sorted(b's', set.iter().map(|s| s.as_bytes()).collect(), out),
        AttributeValue::Ns(set) => sorted(b'n', set.iter().map(|s| s.as_bytes()).collect(), out),
        AttributeValue::Bs(set) => sorted(b'b', set.iter().map(|b| b.as_ref()).collect(), out),
        // A kind this SDK version does not know: its debug form still tells requests apart.
        other => {
            out.push(b'?');
            put_bytes(out, format!("{other:?}").as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::state::item::GroupWatermark;

    fn store() -> DynamoAggregateStore {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .build();
        DynamoAggregateStore::new(Client::from_conf(config), "aggregates")
    }

    fn write(minute: i64, count: u64, expected_version: u64) -> ItemWrite {
        let key = ItemKey {
            group: GroupKey {
                key: "k".into(),
                metric: "t".into(),
            },
            window: WindowSpec::tumbling(60),
            start_ms: minute * 60_000,
        };
        let mut item = AggregateItem::new(key);
        for _ in 0..count {
            item.state.push(1.0);
        }
        item.fingerprints.extend(0..count);
        item.version = expected_version + 1;
        ItemWrite {
            item,
            expected_version,
            sealed_page: Vec::new(),
        }
    }

    fn token(
        store: &DynamoAggregateStore,
        writes: &[ItemWrite],
        wm: Option<&WatermarkWrite>,
    ) -> String {
        request_token(store.table(), &store.actions(writes, wm))
    }

    #[test]
    fn request_tokens_are_stable_for_a_request_and_differ_for_any_other() {
        let s = store();
        let wm = WatermarkWrite {
            watermark: GroupWatermark {
                group: GroupKey {
                    key: "k".into(),
                    metric: "t".into(),
                },
                watermark_ms: 60_000,
                closed_from_ms: 0,
                last_record: None,
                version: 1,
            },
            expected_version: 0,
        };
        let base = [write(0, 2, 0), write(1, 1, 0)];
        let t = token(&s, &base, Some(&wm));
        assert_eq!(t.len(), 32);
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
        // Maps are hashed in whatever order: the token must not depend on it.
        for _ in 0..20 {
            assert_eq!(
                token(&store(), &base, Some(&wm)),
                t,
                "same request, same token"
            );
        }
        let others = [
            token(&s, &[write(0, 2, 0), write(2, 1, 0)], Some(&wm)), // another key
            token(&s, &[write(0, 2, 1), write(1, 1, 0)], Some(&wm)), // another expected version
            token(&s, &[write(0, 3, 0), write(1, 1, 0)], Some(&wm)), // other contents
            token(&s, &base, None),                                  // without the watermark
            token(&s, &[write(1, 1, 0), write(0, 2, 0)], Some(&wm)), // another order
            request_token("other-table", &s.actions(&base, Some(&wm))),
        ];
        for (i, other) in others.iter().enumerate() {
            assert_ne!(*other, t, "variant {i}");
        }
        let mut paged = write(0, 2, 0);
        let mut page = FingerprintSet::new();
        page.extend([7, 8]);
        paged.sealed_page.push((1, page));
        assert_ne!(
            token(&s, &[paged, write(1, 1, 0)], Some(&wm)),
            t,
            "a sealed page"
        );
    }

    use aws_sdk_dynamodb::types::CancellationReason;
    use aws_sdk_dynamodb::types::error::TransactionCanceledException;

    fn cancelled(reasons: &[(&str, &str)]) -> TransactionCanceledException {
        let mut b = TransactionCanceledException::builder().message("Transaction cancelled");
        for (code, message) in reasons {
            b = b.cancellation_reasons(
                CancellationReason::builder()
                    .code(*code)
                    .message(*message)
                    .build(),
            );
        }
        b.build()
    }

    #[test]
    fn a_transaction_cancelled_for_item_size_is_limit_exceeded() {
        let c = cancelled(&[
            ("None", ""),
            (
                "ValidationError",
                "Item size has exceeded the maximum allowed size",
            ),
        ]);
        let err = cancelled_for_a_limit(&c).expect("a limit");
        assert!(
            matches!(
                err,
                Error::LimitExceeded {
                    operation: "TransactWriteItems",
                    max: 409_600,
                    ..
                }
            ),
            "{err:?}"
        );
        let conflict = cancelled(&[("ConditionalCheckFailed", "The conditional request failed")]);
        assert!(cancelled_for_a_limit(&conflict).is_none());
        let other = cancelled(&[(
            "ValidationError",
            "One or more parameter values were invalid",
        )]);
        assert!(cancelled_for_a_limit(&other).is_none());
    }
}
