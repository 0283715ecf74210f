//! The query API's read ports over DynamoDB ([`sluice_core::query`]): what the query
//! Lambda serves.
//!
//! ## Aggregates ([`DynamoAggregateReader`])
//! With `key` and `type`, one `Query` of the group's partition (`pk` =
//! [`GroupKey::partition_key`]) per sort-key range: without `window_seconds` the range
//! of every window (`sk < "~"`, which leaves out fingerprint pages and the watermark);
//! with `window_seconds = W`, the tumbling windows `W#from..W#to` and then the hopping
//! windows of that size (`W/…`, every slide). Otherwise a `Scan`. Both carry a
//! `FilterExpression` for the filters the key condition does not cover and for
//! `count > 0`, and project every attribute but the fingerprint set. Items come back in
//! the order DynamoDB returns them: a group's windows by label then start; a scan in
//! the table's hash order.
//!
//! ## Alerts ([`DynamoAlertReader`])
//! A `Query` of the alerts table's global secondary index [`BY_WINDOW_INDEX`]
//! (partition `kind`, always `"alert"`; sort `window_start`), newest first
//! (`ScanIndexForward = false`), `since` as a key condition, `severity` and `rule` as
//! a filter. See [`super::alerts`] for why an index rather than a `Scan`.
//!
//! ## Pages
//! Each call asks DynamoDB for at most `limit` items (`Limit`), and a page makes at
//! most [`MAX_CALLS_PER_PAGE`] calls: a selective filter over a large table returns a
//! short (even empty) page with a `next` position instead of reading the whole table
//! in one request. The position is DynamoDB's `LastEvaluatedKey`, or the key of the
//! last item returned when a call matched more than the page had room for (any item's
//! key is a valid `ExclusiveStartKey`).

use std::collections::HashMap;
use std::future::Future;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use sluice_core::detect::rules::Alert;
use sluice_core::ports::{
    AggregateCursor, AggregateQuery, AggregateReader, AlertCursor, AlertQuery, AlertReader, Page,
};
use sluice_core::state::item::{AggregateView, GroupKey};
use sluice_core::time::format_rfc3339;
use sluice_core::{Error, Result};

use super::alerts::{ALERT_ID, BY_WINDOW_INDEX, KIND, KIND_ALERT, WINDOW_START};
use super::codec::{self, Attrs, attr};
use super::{Got, paginate, query_page, scan_page};

/// DynamoDB calls one page may make before it returns what it has with a `next`.
pub const MAX_CALLS_PER_PAGE: u32 = 8;

/// Conditions joined by `AND`, with the placeholders of their names and values. A
/// key condition and a filter of one request share one `Expression` (DynamoDB wants
/// one map of names and one of values per request, every entry used).
#[derive(Clone, Debug, Default, PartialEq)]
struct Expression {
    key: Vec<String>,
    filter: Vec<String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

/// Where a condition goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Key,
    Filter,
}

impl Expression {
    fn name(&mut self, name: &str) -> String {
        let n = format!("#n{}", self.names.len());
        self.names.insert(n.clone(), name.to_owned());
        n
    }

    fn value(&mut self, value: AttributeValue) -> String {
        let v = format!(":v{}", self.values.len());
        self.values.insert(v.clone(), value);
        v
    }

    fn push(&mut self, part: Part, clause: String) {
        match part {
            Part::Key => self.key.push(clause),
            Part::Filter => self.filter.push(clause),
        }
    }

    /// `name op value`.
    fn compare(&mut self, part: Part, name: &str, op: &str, value: AttributeValue) {
        let n = self.name(name);
        let v = self.value(value);
        self.push(part, format!("{n} {op} {v}"));
    }

    /// `name BETWEEN lo AND hi` (inclusive).
    fn between(&mut self, part: Part, name: &str, lo: AttributeValue, hi: AttributeValue) {
        let n = self.name(name);
        let lo = self.value(lo);
        let hi = self.value(hi);
        self.push(part, format!("{n} BETWEEN {lo} AND {hi}"));
    }

    /// A projection of `names`.
    fn projection(&mut self, names: &[&str]) -> String {
        names
            .iter()
            .map(|name| self.name(name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn key_condition(&self) -> String {
        self.key.join(" AND ")
    }

    fn filter_expression(&self) -> Option<String> {
        (!self.filter.is_empty()).then(|| self.filter.join(" AND "))
    }
}

/// One range of sort keys of a group's partition, inclusive.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SortRange {
    lo: String,
    hi: String,
}

/// The sort-key ranges a group query reads, in order; empty when no window start can
/// match. Window starts are whole seconds, so bounds rounded inwards to whole seconds
/// select exactly the starts in `[from, to]` of the tumbling windows.
fn sort_ranges(query: &AggregateQuery) -> Vec<SortRange> {
    let Some((lo, hi)) = query.whole_second_bounds() else {
        return Vec::new();
    };
    match query.window_seconds {
        // Every window, none of the `~…` items (fingerprint pages, watermark).
        // Labels start with a digit 1-9, the `~…` items sort after `}`.
        None => vec![SortRange {
            lo: "0".into(),
            hi: "}".into(),
        }],
        Some(w) => vec![
            SortRange {
                lo: format!("{w}#{}", format_rfc3339(lo)),
                hi: format!("{w}#{}", format_rfc3339(hi)),
            },
            // Hopping windows of size `w`, any slide: `w/slide#start`.
            SortRange {
                lo: format!("{w}/"),
                hi: format!("{w}/~"),
            },
        ],
    }
}

/// The ranges still to read after `after` (the first one resumed from it when it lies
/// inside): positions between or past the ranges resume at the next range.
fn ranges_after(ranges: Vec<SortRange>, after: Option<&str>) -> Vec<(SortRange, Option<String>)> {
    ranges
        .into_iter()
        .filter_map(|r| match after {
            None => Some((r, None)),
            Some(sk) if sk < r.lo.as_str() => Some((r, None)),
            Some(sk) if sk < r.hi.as_str() => {
                let start = Some(sk.to_owned());
                Some((r, start))
            }
            Some(_) => None,
        })
        .collect()
}

/// Adds the filters of `query` that a key condition does not cover to `e`, and
/// returns the projection. With a group, key and type are the partition; window size
/// and time are covered by the key condition for tumbling windows only, but a repeated
/// condition is harmless and keeps one filter for every range.
fn aggregate_filter(e: &mut Expression, query: &AggregateQuery, scan: bool) -> String {
    use Part::Filter;
    e.compare(Filter, attr::COUNT, ">", codec::int_value(0));
    if scan {
        if let Some(key) = &query.key {
            e.compare(Filter, attr::KEY, "=", codec::s(key));
        }
        if let Some(metric) = &query.metric {
            e.compare(Filter, attr::TYPE, "=", codec::s(metric));
        }
    }
    if let Some(w) = query.window_seconds {
        e.compare(Filter, attr::WINDOW_SECONDS, "=", codec::int_value(w));
    }
    match (query.from_ms, query.to_ms) {
        (Some(from), Some(to)) => e.between(
            Filter,
            attr::WINDOW_START_MS,
            codec::int_value(from),
            codec::int_value(to),
        ),
        (Some(from), None) => {
            e.compare(Filter, attr::WINDOW_START_MS, ">=", codec::int_value(from))
        }
        (None, Some(to)) => e.compare(Filter, attr::WINDOW_START_MS, "<=", codec::int_value(to)),
        (None, None) => {}
    }
    e.projection(&attr::ALL_BUT_FPS)
}

fn str_attr<'a>(m: &'a Attrs, name: &str) -> Option<&'a str> {
    m.get(name).and_then(codec::str_of)
}

/// A `LastEvaluatedKey` (or an item) of the aggregates table as a position.
fn aggregate_position(table: &str, m: &Attrs) -> Result<AggregateCursor> {
    match (str_attr(m, attr::PK), str_attr(m, attr::SK)) {
        (Some(pk), Some(sk)) => Ok(AggregateCursor {
            pk: pk.to_owned(),
            sk: sk.to_owned(),
        }),
        _ => Err(Error::CorruptItem {
            item: format!("{table}/{}", codec::describe(m)),
            reason: "a key without string pk and sk".into(),
        }),
    }
}

/// Collects up to `limit` items over calls, and where to resume.
struct Collector<T> {
    limit: usize,
    items: Vec<T>,
    calls: u32,
}

enum Next<C> {
    /// Room left and calls left: continue from this key (`None`: this range is done).
    Continue(Option<Attrs>),
    /// The page is full or out of calls: resume here.
    Stop(Option<C>),
}

impl<T> Collector<T> {
    fn new(limit: usize) -> Self {
        Collector {
            limit,
            items: Vec::new(),
            calls: 0,
        }
    }

    fn room(&self) -> usize {
        self.limit.saturating_sub(self.items.len())
    }

    /// Takes what `got` matched, decoding with `decode` (`None`: skip) and positioning
    /// with `position`; decides whether to continue.
    fn take<C>(
        &mut self,
        got: Got,
        decode: impl Fn(&Attrs) -> Result<Option<T>>,
        position: impl Fn(&Attrs) -> Result<C>,
    ) -> Result<Next<C>> {
        self.calls += 1;
        let mut raw = got.items.into_iter().peekable();
        while let Some(m) = raw.next() {
            if let Some(item) = decode(&m)? {
                self.items.push(item);
                // Full with items of this call still unread: resume after this item.
                if self.room() == 0 && (raw.peek().is_some() || got.last_evaluated.is_some()) {
                    return Ok(Next::Stop(Some(position(&m)?)));
                }
            }
        }
        let more = got.last_evaluated.filter(|k| !k.is_empty());
        if self.room() == 0 || self.calls >= MAX_CALLS_PER_PAGE {
            return Ok(Next::Stop(more.as_ref().map(position).transpose()?));
        }
        Ok(Next::Continue(more))
    }
}

/// Calls `send` from `start` into `page` until the page is full or out of calls
/// (`Some(next)`: resume at `next`) or DynamoDB has no more (`None`).
async fn fill<T, C, F, Fut>(
    page: &mut Collector<T>,
    start: Option<Attrs>,
    send: F,
    decode: impl Fn(&Attrs) -> Result<Option<T>>,
    position: impl Fn(&Attrs) -> Result<C>,
) -> Result<Option<Option<C>>>
where
    F: FnMut(Option<Attrs>) -> Fut,
    Fut: Future<Output = Result<Got>>,
{
    let mut stopped = None;
    paginate(start, send, |got| {
        match page.take(got, &decode, &position)? {
            Next::Continue(k) => Ok(k),
            Next::Stop(next) => {
                stopped = Some(next);
                Ok(None)
            }
        }
    })
    .await?;
    Ok(stopped)
}

/// Reads aggregates for the query API.
#[derive(Clone, Debug)]
pub struct DynamoAggregateReader {
    client: Client,
    table: String,
}

impl DynamoAggregateReader {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoAggregateReader {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn decode(&self, query: &AggregateQuery, m: &Attrs) -> Result<Option<AggregateView>> {
        let view = codec::attrs_to_item(m)?.view();
        Ok(query.matches(&view).then_some(view))
    }

    /// [`fill`] with the views of the aggregates that match `query`.
    async fn fill<F, Fut>(
        &self,
        page: &mut Collector<AggregateView>,
        query: &AggregateQuery,
        start: Option<Attrs>,
        send: F,
    ) -> Result<Option<Option<AggregateCursor>>>
    where
        F: FnMut(Option<Attrs>) -> Fut,
        Fut: Future<Output = Result<Got>>,
    {
        let decode = |m: &Attrs| self.decode(query, m);
        let position = |m: &Attrs| aggregate_position(&self.table, m);
        fill(page, start, send, decode, position).await
    }

    async fn query_group(
        &self,
        query: &AggregateQuery,
        group: &GroupKey,
    ) -> Result<Page<AggregateView, AggregateCursor>> {
        let mut page = Collector::new(query.limit);
        let after = query.after.as_ref().map(|c| c.sk.as_str());
        let ranges = ranges_after(sort_ranges(query), after);
        let last = ranges.len().saturating_sub(1);
        for (i, (range, start)) in ranges.into_iter().enumerate() {
            let start = start.map(|sk| codec::key(group.partition_key(), sk));
            let send = |start| {
                let mut e = Expression::default();
                e.compare(Part::Key, attr::PK, "=", codec::s(group.partition_key()));
                e.between(
                    Part::Key,
                    attr::SK,
                    codec::s(&range.lo),
                    codec::s(&range.hi),
                );
                let projection = aggregate_filter(&mut e, query, false);
                let request = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression(e.key_condition())
                    .set_filter_expression(e.filter_expression())
                    .projection_expression(projection)
                    .set_expression_attribute_names(Some(e.names))
                    .set_expression_attribute_values(Some(e.values))
                    .set_exclusive_start_key(start)
                    .limit(limit_of(query.limit));
                query_page(&self.table, request)
            };
            let stopped = self.fill(&mut page, query, start, send).await?;
            if let Some(next) = stopped {
                // Stopped at the end of a range: the next one starts after it.
                let next = match next {
                    None if i < last => Some(AggregateCursor {
                        pk: group.partition_key(),
                        sk: range.hi.clone(),
                    }),
                    other => other,
                };
                return Ok(Page {
                    items: page.items,
                    next,
                });
            }
        }
        Ok(Page {
            items: page.items,
            next: None,
        })
    }

    async fn scan(&self, query: &AggregateQuery) -> Result<Page<AggregateView, AggregateCursor>> {
        let mut page = Collector::new(query.limit);
        let start = query
            .after
            .as_ref()
            .map(|c| codec::key(c.pk.clone(), c.sk.clone()));
        let send = |start| {
            let mut e = Expression::default();
            let projection = aggregate_filter(&mut e, query, true);
            let request = self
                .client
                .scan()
                .table_name(&self.table)
                .set_filter_expression(e.filter_expression())
                .projection_expression(projection)
                .set_expression_attribute_names(Some(e.names))
                .set_expression_attribute_values(Some(e.values))
                .set_exclusive_start_key(start)
                .limit(limit_of(query.limit));
            scan_page(&self.table, request)
        };
        let next = self.fill(&mut page, query, start, send).await?;
        Ok(Page {
            items: page.items,
            next: next.flatten(),
        })
    }
}

/// DynamoDB's `Limit` for a page of `limit` items (1..=1000 after validation).
fn limit_of(limit: usize) -> i32 {
    i32::try_from(limit.max(1)).unwrap_or(i32::MAX)
}

impl AggregateReader for DynamoAggregateReader {
    async fn aggregates(
        &self,
        query: &AggregateQuery,
    ) -> Result<Page<AggregateView, AggregateCursor>> {
        match query.group() {
            Some(group) => self.query_group(query, &group).await,
            None => self.scan(query).await,
        }
    }
}

/// Reads alerts for the query API, newest window first, from the alerts table's
/// [`BY_WINDOW_INDEX`].
#[derive(Clone, Debug)]
pub struct DynamoAlertReader {
    client: Client,
    table: String,
}

impl DynamoAlertReader {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoAlertReader {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// An alert of the index, or `None` (logged) for an item this version cannot read:
    /// one malformed item must not make every page fail.
    fn decode(&self, query: &AlertQuery, m: &Attrs) -> Option<Alert> {
        match serde_json::from_value::<Alert>(codec::attrs_to_json(m)) {
            Ok(alert) => query.matches(&alert).then_some(alert),
            Err(e) => {
                tracing::warn!(
                    table = %self.table,
                    alert_id = str_attr(m, ALERT_ID).unwrap_or("?"),
                    error = %e,
                    "skipping a malformed alert"
                );
                None
            }
        }
    }

    fn position(&self, m: &Attrs) -> Result<AlertCursor> {
        match (str_attr(m, WINDOW_START), str_attr(m, ALERT_ID)) {
            (Some(window_start), Some(alert_id)) => Ok(AlertCursor {
                window_start: window_start.to_owned(),
                alert_id: alert_id.to_owned(),
            }),
            _ => Err(Error::CorruptItem {
                item: format!("{}/{}", self.table, codec::describe(m)),
                reason: "an index key without string window_start and alert_id".into(),
            }),
        }
    }
}

/// The key condition and filter of an alerts query on [`BY_WINDOW_INDEX`].
fn alert_expression(query: &AlertQuery) -> Expression {
    let mut e = Expression::default();
    e.compare(Part::Key, KIND, "=", codec::s(KIND_ALERT));
    if let Some(since) = query.since_ms {
        // Window starts are whole seconds: the next whole second bounds them exactly,
        // and its RFC 3339 form sorts like the instant (`since` is within the years
        // 0000-9999, checked by the API).
        let since = since + (1000 - since.rem_euclid(1000)) % 1000;
        e.compare(
            Part::Key,
            WINDOW_START,
            ">=",
            codec::s(format_rfc3339(since)),
        );
    }
    if let Some(severity) = query.severity {
        e.compare(Part::Filter, "severity", "=", codec::s(severity.as_str()));
    }
    if let Some(rule) = &query.rule {
        e.compare(Part::Filter, "rule_id", "=", codec::s(rule));
    }
    e
}

impl AlertReader for DynamoAlertReader {
    async fn alerts(&self, query: &AlertQuery) -> Result<Page<Alert, AlertCursor>> {
        let mut page = Collector::new(query.limit);
        let e = alert_expression(query);
        let (condition, filter) = (e.key_condition(), e.filter_expression());
        let start = query.after.as_ref().map(|c| {
            Attrs::from([
                (KIND.to_owned(), codec::s(KIND_ALERT)),
                (WINDOW_START.to_owned(), codec::s(&c.window_start)),
                (ALERT_ID.to_owned(), codec::s(&c.alert_id)),
            ])
        });
        let send = |start| {
            let request = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(BY_WINDOW_INDEX)
                .key_condition_expression(&condition)
                .set_filter_expression(filter.clone())
                .set_expression_attribute_names(Some(e.names.clone()))
                .set_expression_attribute_values(Some(e.values.clone()))
                .scan_index_forward(false)
                .set_exclusive_start_key(start)
                .limit(limit_of(query.limit));
            query_page(&self.table, request)
        };
        let next = fill(
            &mut page,
            start,
            send,
            |m| Ok(self.decode(query, m)),
            |m| self.position(m),
        )
        .await?;
        Ok(Page {
            items: page.items,
            next: next.flatten(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(
        window_seconds: Option<i64>,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> AggregateQuery {
        AggregateQuery {
            key: Some("s".into()),
            metric: Some("temp".into()),
            window_seconds,
            from_ms,
            to_ms,
            limit: 10,
            after: None,
        }
    }

    fn range(lo: &str, hi: &str) -> SortRange {
        SortRange {
            lo: lo.into(),
            hi: hi.into(),
        }
    }

    #[test]
    fn sort_ranges_cover_tumbling_then_hopping_windows_of_one_size() {
        assert_eq!(sort_ranges(&query(None, None, None)), [range("0", "}")]);
        let q = query(Some(60), Some(1_767_225_600_500), Some(1_767_225_720_000));
        assert_eq!(
            sort_ranges(&q),
            [
                range("60#2026-01-01T00:00:01Z", "60#2026-01-01T00:02:00Z"),
                range("60/", "60/~"),
            ]
        );
        // Every stored sort key of a window sorts inside "0".."}", pages and the
        // watermark after it.
        for sk in ["1#2026-01-01T00:00:00Z", "3600/600#2026-01-01T00:00:00Z"] {
            assert!(("0".."}").contains(&sk));
        }
        for sk in ["~wm", "~fp#60#2026-01-01T00:00:00Z#000001"] {
            assert!(sk > "}");
        }
        // A hopping label of the same size sorts inside its range, another size not.
        assert!(("60/".."60/~").contains(&"60/30#2026-01-01T00:00:00Z"));
        assert!(!("60/".."60/~").contains(&"600/60#2026-01-01T00:00:00Z"));
        assert!(sort_ranges(&query(Some(60), Some(1_200), Some(1_900))).is_empty());
    }

    #[test]
    fn ranges_after_a_position_resume_inside_or_skip() {
        let ranges = || vec![range("60#a", "60#m"), range("60/", "60/~")];
        let all = ranges_after(ranges(), None);
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|(_, start)| start.is_none()));
        let inside = ranges_after(ranges(), Some("60#c"));
        assert_eq!(inside[0], (range("60#a", "60#m"), Some("60#c".to_owned())));
        assert_eq!(inside[1].1, None);
        let at_end = ranges_after(ranges(), Some("60#m"));
        assert_eq!(at_end, [(range("60/", "60/~"), None)]);
        let before = ranges_after(ranges(), Some("59"));
        assert!(before.iter().all(|(_, start)| start.is_none()));
        assert!(ranges_after(ranges(), Some("~wm")).is_empty());
    }

    fn raw(n: u32) -> Attrs {
        codec::key("pk", format!("{n:03}"))
    }

    fn got(from: u32, to: u32, more: bool) -> Got {
        Got {
            items: (from..to).map(raw).collect(),
            last_evaluated: more.then(|| raw(to - 1)),
            reported: None,
        }
    }

    fn decode_even(m: &Attrs) -> Result<Option<u32>> {
        let n: u32 = str_attr(m, attr::SK)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok((n % 2 == 0).then_some(n))
    }

    fn position(m: &Attrs) -> Result<String> {
        Ok(str_attr(m, attr::SK).unwrap_or_default().to_owned())
    }

    #[test]
    fn a_full_page_resumes_after_its_last_item_not_the_last_evaluated_key() {
        let mut c = Collector::new(2);
        match c
            .take(got(0, 10, true), decode_even, position)
            .expect("take")
        {
            Next::Stop(Some(p)) => assert_eq!(p, "002"),
            _ => panic!("stops at the second match"),
        }
        assert_eq!(c.items, [0, 2]);
        // Full with an item of the call still unread (3): resume after the last match.
        let mut c = Collector::new(2);
        assert!(matches!(
            c.take(got(0, 4, false), decode_even, position).expect("take"),
            Next::Stop(Some(p)) if p == "002"
        ));
        // Exactly full at the end of the table: no next.
        let mut c = Collector::new(2);
        assert!(matches!(
            c.take(got(0, 3, false), decode_even, position)
                .expect("take"),
            Next::Stop(None)
        ));
        // Room left: continue from the last evaluated key.
        let mut c = Collector::new(5);
        match c
            .take(got(0, 4, true), decode_even, position)
            .expect("take")
        {
            Next::Continue(Some(k)) => assert_eq!(position(&k).expect("sk"), "003"),
            _ => panic!("continues"),
        }
    }

    #[test]
    fn a_page_makes_a_bounded_number_of_calls() {
        let mut c: Collector<u32> = Collector::new(100);
        for call in 1..MAX_CALLS_PER_PAGE {
            assert!(matches!(
                c.take(
                    got(call * 10 + 1, call * 10 + 2, true),
                    decode_even,
                    position
                )
                .expect("take"),
                Next::Continue(Some(_))
            ));
        }
        match c
            .take(got(991, 992, true), decode_even, position)
            .expect("take")
        {
            Next::Stop(Some(p)) => assert_eq!(p, "991"),
            _ => panic!("out of calls: stop with the last evaluated key"),
        }
        assert!(c.items.is_empty(), "a short page, even empty, with a next");
    }

    #[test]
    fn alert_expressions_bound_since_in_the_key_and_filter_the_rest() {
        let q = AlertQuery {
            since_ms: Some(1_767_225_600_001),
            severity: Some(sluice_core::detect::rules::Severity::Critical),
            rule: Some("hot".into()),
            limit: 10,
            after: None,
        };
        let e = alert_expression(&q);
        assert_eq!(e.key_condition(), "#n0 = :v0 AND #n1 >= :v1");
        assert_eq!(e.names["#n1"], WINDOW_START);
        assert_eq!(e.values[":v1"], codec::s("2026-01-01T00:00:01Z"));
        assert_eq!(
            e.filter_expression().as_deref(),
            Some("#n2 = :v2 AND #n3 = :v3")
        );
        let plain = alert_expression(&AlertQuery {
            since_ms: None,
            severity: None,
            rule: None,
            limit: 1,
            after: None,
        });
        assert_eq!(plain.filter_expression(), None);
        assert_eq!(plain.values.len(), 1, "every placeholder is used");
    }
}
