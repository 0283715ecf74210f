//! Pages of an unindexed collection (the in-memory tables, a scan's filtered items)
//! built in the memory of one page, in the order a DynamoDB read of the same query
//! returns.

use std::collections::BTreeMap;

use crate::detect::rules::Alert;
use crate::ports::{AggregateCursor, AggregateQuery, AlertCursor, AlertQuery, Page};
use crate::state::item::{AggregateView, GroupKey};
use crate::time::parse_rfc3339_ms;

/// The newest-first order of alerts: later `window_start` first, then `alert_id`.
/// Returns the sort key (`Reverse` of the start) for `sort_by_key`.
pub fn alert_order(alert: &Alert) -> (std::cmp::Reverse<i64>, String) {
    (
        std::cmp::Reverse(parse_rfc3339_ms(&alert.window_start).unwrap_or(i64::MIN)),
        alert.alert_id.clone(),
    )
}

/// The `limit` smallest entries above a position, by key, from entries offered one at
/// a time in any order: a page of an unindexed collection in the memory of one page.
#[derive(Debug)]
pub(super) struct Smallest<K, T> {
    after: Option<K>,
    limit: usize,
    /// At most `limit + 1` entries: one more than a page tells whether anything follows.
    kept: BTreeMap<K, T>,
}

impl<K: Ord + Clone, T> Smallest<K, T> {
    pub(super) fn new(after: Option<K>, limit: usize) -> Self {
        Smallest {
            after,
            limit: limit.max(1),
            kept: BTreeMap::new(),
        }
    }

    pub(super) fn offer(&mut self, key: K, item: T) {
        if self.after.as_ref().is_some_and(|after| key <= *after) {
            return;
        }
        if self.kept.len() > self.limit {
            match self.kept.last_key_value() {
                Some((largest, _)) if key >= *largest => return,
                _ => {}
            }
        }
        self.kept.insert(key, item);
        if self.kept.len() > self.limit + 1 {
            self.kept.pop_last();
        }
    }

    /// The page, and the key of its last entry when more entries follow it.
    pub(super) fn finish(mut self) -> (Vec<T>, Option<K>) {
        let more = self.kept.len() > self.limit;
        if more {
            self.kept.pop_last();
        }
        let next = more
            .then(|| self.kept.last_key_value().map(|(k, _)| k.clone()))
            .flatten();
        (self.kept.into_values().collect(), next)
    }
}

/// Builds a page of aggregates from views offered in any order, for readers without
/// an index (the in-memory store, the dashboard's): items in storage-key order (`pk`,
/// then `sk`: a group's windows by label, then start), the same order a DynamoDB
/// `Query` of one group returns.
#[derive(Debug)]
pub struct AggregatePager {
    query: AggregateQuery,
    page: Smallest<AggregateCursor, AggregateView>,
}

impl AggregatePager {
    pub fn new(query: &AggregateQuery) -> Self {
        AggregatePager {
            query: query.clone(),
            page: Smallest::new(query.after.clone(), query.limit),
        }
    }

    /// Considers one aggregate (ignored unless it matches the query's filters).
    pub fn offer(&mut self, view: AggregateView) {
        if !self.query.matches(&view) {
            return;
        }
        if let Some(position) = view_position(&view) {
            self.page.offer(position, view);
        }
    }

    pub fn finish(self) -> Page<AggregateView, AggregateCursor> {
        let (items, next) = self.page.finish();
        Page { items, next }
    }
}

/// The storage key of the item a view shows (`None` for a view no item can have).
pub fn view_position(view: &AggregateView) -> Option<AggregateCursor> {
    let window = crate::state::window::WindowSpec::hopping(
        view.window_seconds,
        view.slide_seconds.unwrap_or(view.window_seconds),
    );
    let key = crate::state::item::ItemKey {
        group: GroupKey {
            key: view.key.clone(),
            metric: view.metric.clone(),
        },
        window,
        start_ms: parse_rfc3339_ms(&view.window_start)?,
    };
    Some(AggregateCursor {
        pk: key.pk(),
        sk: key.sk(),
    })
}

/// Builds a page of alerts from alerts offered in any order: newest window first, ties
/// by `alert_id` ([`alert_order`]).
#[derive(Debug)]
pub struct AlertPager {
    query: AlertQuery,
    page: Smallest<(std::cmp::Reverse<i64>, String), Alert>,
}

impl AlertPager {
    pub fn new(query: &AlertQuery) -> Self {
        let after = query.after.as_ref().map(|c| {
            (
                std::cmp::Reverse(parse_rfc3339_ms(&c.window_start).unwrap_or(i64::MIN)),
                c.alert_id.clone(),
            )
        });
        AlertPager {
            query: query.clone(),
            page: Smallest::new(after, query.limit),
        }
    }

    /// Considers one alert (ignored unless it matches the query's filters).
    pub fn offer(&mut self, alert: Alert) {
        if self.query.matches(&alert) {
            self.page.offer(alert_order(&alert), alert);
        }
    }

    pub fn finish(self) -> Page<Alert, AlertCursor> {
        let (items, next) = self.page.finish();
        Page {
            items,
            next: next.map(|(std::cmp::Reverse(start), alert_id)| AlertCursor {
                window_start: crate::time::format_rfc3339(start),
                alert_id,
            }),
        }
    }
}
