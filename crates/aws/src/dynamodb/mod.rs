//! DynamoDB adapters: the aggregates table ([`DynamoAggregateStore`]), reference data
//! ([`DynamoReference`]), rules ([`DynamoRules`]) and alerts ([`DynamoAlerts`]), plus the
//! shared pieces: attribute codecs ([`codec`]), capacity metering ([`Meter`]), batched
//! reads and paginated scans.

pub mod aggregates;
pub mod alerts;
pub mod codec;
pub mod readers;
pub mod reference;
pub mod rules;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder;
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::scan::ScanOutput;
use aws_sdk_dynamodb::operation::scan::builders::ScanFluentBuilder;
use aws_sdk_dynamodb::types::{ConsumedCapacity, KeysAndAttributes, ReturnConsumedCapacity};
use sluice_core::state::capacity::to_milli;
pub use sluice_core::state::capacity::{
    page_read_units, read_units, transactional_write_units, write_units,
};
use sluice_core::{Error, Result};

pub use aggregates::DynamoAggregateStore;
pub use alerts::DynamoAlerts;
pub use readers::{DynamoAggregateReader, DynamoAlertReader};
pub use reference::DynamoReference;
pub use rules::DynamoRules;

use crate::backoff::RetryPolicy;
use crate::classify::{self, DYNAMODB};
use codec::Attrs;

/// `BatchGetItem` reads at most this many keys per request.
pub const MAX_BATCH_GET_KEYS: usize = sluice_core::state::limits::dynamodb::MAX_BATCH_GET_KEYS;

/// Capacity units as DynamoDB charges them (on-demand request units are counted the
/// same way), accumulated per adapter; the arithmetic is [`sluice_core::state::capacity`]'s.
/// A write whose condition fails is charged too.
///
/// Each call asks for `ReturnConsumedCapacity=TOTAL`. [`Meter::units`] counts what the
/// server reports, and the computed value (from
/// [`sluice_core::state::item::AggregateItem::stored_size`]) for calls it reports nothing
/// for. [`Meter::estimated_units`] always counts the computed value: local emulators
/// report made-up numbers (moto: 1 per key of a `BatchGetItem` whatever the size), so
/// benchmarks against them should use the estimate.
#[derive(Debug, Default)]
pub struct Meter {
    read_milli: AtomicU64,
    write_milli: AtomicU64,
    estimated_read_milli: AtomicU64,
    estimated_write_milli: AtomicU64,
}

impl Meter {
    /// One read call: what the server reported (if it did) and what it should cost.
    pub fn read(&self, reported: Option<f64>, computed: f64) {
        self.read_milli
            .fetch_add(to_milli(reported.unwrap_or(computed)), Ordering::Relaxed);
        self.estimated_read_milli
            .fetch_add(to_milli(computed), Ordering::Relaxed);
    }

    /// One write call: what the server reported (if it did) and what it should cost.
    pub fn write(&self, reported: Option<f64>, computed: f64) {
        self.write_milli
            .fetch_add(to_milli(reported.unwrap_or(computed)), Ordering::Relaxed);
        self.estimated_write_milli
            .fetch_add(to_milli(computed), Ordering::Relaxed);
    }

    /// One `Query` or `Scan` page: what the server reported (if it did), and the page's
    /// total size rounded up.
    pub(crate) fn read_page(&self, got: &Got, consistent: bool) {
        let total = got.items.iter().map(attrs_size).sum();
        self.read(got.reported, page_read_units(total, consistent));
    }

    /// (read units, write units) so far: reported by the server where it did.
    pub fn units(&self) -> (f64, f64) {
        (
            self.read_milli.load(Ordering::Relaxed) as f64 / 1000.0,
            self.write_milli.load(Ordering::Relaxed) as f64 / 1000.0,
        )
    }

    /// (read units, write units) so far, as computed from item sizes.
    pub fn estimated_units(&self) -> (f64, f64) {
        (
            self.estimated_read_milli.load(Ordering::Relaxed) as f64 / 1000.0,
            self.estimated_write_milli.load(Ordering::Relaxed) as f64 / 1000.0,
        )
    }
}

/// The capacity a server reported, if it did.
pub fn reported<'a>(consumed: impl IntoIterator<Item = &'a ConsumedCapacity>) -> Option<f64> {
    let mut total = None;
    for c in consumed {
        if let Some(units) = c.capacity_units() {
            *total.get_or_insert(0.0) += units;
        }
    }
    total
}

/// Stored size of an item as DynamoDB documents it (names plus values: strings and
/// names in UTF-8 bytes, binary in raw bytes, a number 1 byte per two significant
/// digits plus 1, a boolean or null 1 byte, a list or map 3 bytes plus 1 per
/// element). Used for metering and for the item-size check before writes; it agrees
/// with [`sluice_core::state::limits::dynamodb::aggregate_item_size`] on aggregate items (a
/// codec test checks it).
pub fn attrs_size(m: &Attrs) -> usize {
    use aws_sdk_dynamodb::types::AttributeValue as V;
    use sluice_core::state::limits::dynamodb::number_size;
    fn value_size(v: &V) -> usize {
        match v {
            V::S(s) => s.len(),
            V::N(n) => number_size(n),
            V::B(b) => b.as_ref().len(),
            V::Bool(_) | V::Null(_) => 1,
            V::M(m) => {
                3 + m
                    .iter()
                    .map(|(k, v)| k.len() + value_size(v) + 1)
                    .sum::<usize>()
            }
            V::L(l) => 3 + l.iter().map(|v| value_size(v) + 1).sum::<usize>(),
            V::Ss(xs) => xs.iter().map(String::len).sum(),
            V::Ns(xs) => xs.iter().map(|n| number_size(n)).sum(),
            V::Bs(xs) => xs.iter().map(|b| b.as_ref().len()).sum(),
            _ => 1,
        }
    }
    m.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

/// Fails with [`Error::LimitExceeded`] when `item` is over DynamoDB's 400 KB, before
/// it is sent.
pub fn check_item_size(operation: &'static str, item: &Attrs) -> Result<()> {
    sluice_core::state::limits::dynamodb::check_item(operation, attrs_size(item))
}

/// Sends one `PutItem` to `table`: `Ok(Some(out))` when written, `Ok(None)` when
/// DynamoDB refused it for a failed condition (and, with `conflict_refuses`, for a
/// conflicting transaction); any other failure classified.
pub(crate) async fn put_item(
    table: &str,
    request: PutItemFluentBuilder,
    conflict_refuses: bool,
) -> Result<Option<PutItemOutput>> {
    match request.send().await {
        Ok(out) => Ok(Some(out)),
        Err(e) => match e.as_service_error() {
            Some(PutItemError::ConditionalCheckFailedException(_)) => Ok(None),
            Some(PutItemError::TransactionConflictException(_)) if conflict_refuses => Ok(None),
            _ => Err(classify::dynamodb("PutItem", table, e)),
        },
    }
}

/// Checks the size of `item`, then stores (replaces) it in `table` unconditionally.
pub(crate) async fn put(client: &Client, table: &str, item: Attrs) -> Result<()> {
    check_item_size("PutItem", &item)?;
    let request = client.put_item().table_name(table).set_item(Some(item));
    put_item(table, request, false).await?;
    Ok(())
}

/// What a batched read returned.
#[derive(Debug, Default)]
pub(crate) struct BatchGot {
    pub items: Vec<Attrs>,
    /// Capacity the server reported, summed; `None` if it reported none.
    pub reported: Option<f64>,
}

/// Reads `keys` (already de-duplicated) with `BatchGetItem`, 100 per request, retrying
/// unprocessed keys with backoff; fails as throttled when they stay unprocessed.
pub(crate) async fn batch_get(
    client: &Client,
    table: &str,
    keys: Vec<Attrs>,
    consistent: bool,
    retry: &RetryPolicy,
) -> Result<BatchGot> {
    let mut got = BatchGot::default();
    for chunk in keys.chunks(MAX_BATCH_GET_KEYS) {
        let mut pending: Vec<Attrs> = chunk.to_vec();
        let mut attempt = 0u32;
        while !pending.is_empty() {
            attempt += 1;
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(consistent)
                .build()
                .map_err(|e| classify::build_error(DYNAMODB, "BatchGetItem", table, e))?;
            let mut out = client
                .batch_get_item()
                .request_items(table, request)
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map_err(|e| classify::dynamodb("BatchGetItem", table, e))?;
            if let Some(units) = reported(out.consumed_capacity()) {
                *got.reported.get_or_insert(0.0) += units;
            }
            if let Some(items) = out.responses.as_mut().and_then(|r| r.remove(table)) {
                got.items.extend(items);
            }
            pending = out
                .unprocessed_keys
                .as_mut()
                .and_then(|u| u.remove(table))
                .map(|k| k.keys)
                .unwrap_or_default();
            if !pending.is_empty() {
                if attempt >= retry.max_attempts.max(1) {
                    return Err(Error::Throttled {
                        service: DYNAMODB,
                        operation: "BatchGetItem",
                        message: format!(
                            "table {table:?}: {} keys still unprocessed after {attempt} attempts",
                            pending.len()
                        ),
                    });
                }
                tracing::debug!(
                    table,
                    unprocessed = pending.len(),
                    attempt,
                    "retrying unprocessed keys"
                );
                retry.sleep(attempt).await;
            }
        }
    }
    Ok(got)
}

/// What one `Query` or `Scan` call returned.
#[derive(Debug, Default)]
pub(crate) struct Got {
    pub items: Vec<Attrs>,
    /// DynamoDB's `LastEvaluatedKey`: where the next call starts (none, or empty, after
    /// the last page).
    pub last_evaluated: Option<Attrs>,
    /// Capacity the server reported, if it did.
    pub reported: Option<f64>,
}

impl Got {
    /// Where the next call starts; `None` after the last page.
    pub fn next_start(&mut self) -> Option<Attrs> {
        self.last_evaluated.take().filter(|k| !k.is_empty())
    }
}

impl From<QueryOutput> for Got {
    fn from(out: QueryOutput) -> Self {
        Got {
            reported: reported(out.consumed_capacity()),
            items: out.items.unwrap_or_default(),
            last_evaluated: out.last_evaluated_key,
        }
    }
}

impl From<ScanOutput> for Got {
    fn from(out: ScanOutput) -> Self {
        Got {
            reported: reported(out.consumed_capacity()),
            items: out.items.unwrap_or_default(),
            last_evaluated: out.last_evaluated_key,
        }
    }
}

/// Sends one `Query` of `table`.
pub(crate) async fn query_page(table: &str, request: QueryFluentBuilder) -> Result<Got> {
    request
        .send()
        .await
        .map(Got::from)
        .map_err(|e| classify::dynamodb("Query", table, e))
}

/// Sends one `Scan` of `table`.
pub(crate) async fn scan_page(table: &str, request: ScanFluentBuilder) -> Result<Got> {
    request
        .send()
        .await
        .map(Got::from)
        .map_err(|e| classify::dynamodb("Scan", table, e))
}

/// Pages through a `Query` or `Scan` from `start` (`None`: the beginning): `send` makes
/// one call from an `ExclusiveStartKey`, `each` takes what the call returned and says
/// where the next one starts (`None`: stop).
pub(crate) async fn paginate<F, Fut>(
    mut start: Option<Attrs>,
    mut send: F,
    mut each: impl FnMut(Got) -> Result<Option<Attrs>>,
) -> Result<()>
where
    F: FnMut(Option<Attrs>) -> Fut,
    Fut: Future<Output = Result<Got>>,
{
    loop {
        let got = send(start.take()).await?;
        match each(got)? {
            Some(k) => start = Some(k),
            None => return Ok(()),
        }
    }
}

/// Every item of a table (`Scan`, paginated), with an optional projection.
pub(crate) async fn scan(
    client: &Client,
    table: &str,
    projection: Option<(&str, &std::collections::HashMap<String, String>)>,
) -> Result<(Vec<Attrs>, Option<f64>)> {
    let mut items = Vec::new();
    let mut reported_total = None;
    let send = |start| {
        let mut request = client
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .return_consumed_capacity(ReturnConsumedCapacity::Total);
        if let Some((expression, names)) = projection {
            request = request
                .projection_expression(expression)
                .set_expression_attribute_names(Some(names.clone()));
        }
        scan_page(table, request)
    };
    paginate(None, send, |mut got| {
        if let Some(units) = got.reported {
            *reported_total.get_or_insert(0.0) += units;
        }
        items.append(&mut got.items);
        Ok(got.next_start())
    })
    .await?;
    Ok((items, reported_total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meter_counts_reported_units_and_estimates() {
        let m = Meter::default();
        m.read(None, 0.5);
        m.read(Some(7.0), 2.0);
        m.write(None, 3.0);
        assert_eq!(m.units(), (7.5, 3.0));
        assert_eq!(m.estimated_units(), (2.5, 3.0));
    }
}
