//! The query API's read ports over the in-memory tables: what `sluice demo --serve`
//! and the tests serve through [`sluice_core::query::respond`].
//!
//! Neither table has an index for these reads, so each page looks at every item once
//! and keeps only one page ([`AggregatePager`], [`AlertPager`]): memory of one page,
//! time linear in the table.

use std::sync::Arc;

use sluice_core::Result;
use sluice_core::detect::rules::Alert;
use sluice_core::ports::{
    AggregateCursor, AggregateQuery, AggregateReader, AlertCursor, AlertQuery, AlertReader, Page,
};
use sluice_core::query::{AggregatePager, AlertPager};
use sluice_core::state::item::AggregateView;

use crate::store::{MemoryAggregateStore, MemoryAlerts};

/// Reads aggregates from a [`MemoryAggregateStore`], in storage-key order.
#[derive(Clone)]
pub struct MemoryAggregateReader {
    store: Arc<MemoryAggregateStore>,
}

impl MemoryAggregateReader {
    pub fn new(store: Arc<MemoryAggregateStore>) -> Self {
        MemoryAggregateReader { store }
    }
}

impl AggregateReader for MemoryAggregateReader {
    async fn aggregates(
        &self,
        query: &AggregateQuery,
    ) -> Result<Page<AggregateView, AggregateCursor>> {
        let mut pager = AggregatePager::new(query);
        self.store.for_each_view(|view| pager.offer(view));
        Ok(pager.finish())
    }
}

/// Reads alerts from [`MemoryAlerts`], newest window first.
#[derive(Clone)]
pub struct MemoryAlertReader {
    alerts: Arc<MemoryAlerts>,
}

impl MemoryAlertReader {
    pub fn new(alerts: Arc<MemoryAlerts>) -> Self {
        MemoryAlertReader { alerts }
    }
}

impl AlertReader for MemoryAlertReader {
    async fn alerts(&self, query: &AlertQuery) -> Result<Page<Alert, AlertCursor>> {
        let mut pager = AlertPager::new(query);
        for alert in self.alerts.alerts() {
            pager.offer(alert);
        }
        Ok(pager.finish())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use sluice_core::detect::rules::{Op, RuleKind, Severity, Stat};
    use sluice_core::ports::{AggregateStore, AlertStore, Commit};
    use sluice_core::query::{AGGREGATES_PATH, ALERTS_PATH, respond};
    use sluice_core::state::item::{AggregateItem, GroupKey, ItemKey, ItemWrite};
    use sluice_core::state::statistics::AggState;
    use sluice_core::state::window::WindowSpec;
    use sluice_core::time::format_rfc3339;

    use super::*;

    const T0: i64 = 1_767_225_600_000;

    async fn stores() -> (Arc<MemoryAggregateStore>, Arc<MemoryAlerts>) {
        let aggregates = Arc::new(MemoryAggregateStore::new());
        let mut writes = Vec::new();
        for key in ["a", "b"] {
            for (window, n) in [
                (WindowSpec::tumbling(60), 12),
                (WindowSpec::hopping(3600, 600), 3),
            ] {
                for i in 0..n {
                    let mut item = AggregateItem::new(ItemKey {
                        group: GroupKey {
                            key: key.into(),
                            metric: "temp".into(),
                        },
                        window,
                        start_ms: T0 + i * window.slide_ms,
                    });
                    item.version = 1;
                    item.state = AggState::of(i as f64);
                    writes.push(ItemWrite {
                        item,
                        expected_version: 0,
                        sealed_page: Vec::new(),
                    });
                }
            }
        }
        for w in &writes {
            let done = aggregates
                .commit(std::slice::from_ref(w), None)
                .await
                .expect("commit");
            assert_eq!(done, Commit::Done);
        }
        let alerts = Arc::new(MemoryAlerts::new());
        for i in 0..9 {
            let key = format!("k{}", i % 2);
            let alert = Alert {
                kind: "alert".into(),
                alert_id: Alert::id_for("hot", "temp", &key, 60, T0 + i * 60_000),
                rule_id: "hot".into(),
                kind_of_rule: RuleKind::Threshold,
                severity: if i % 3 == 0 {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                key,
                metric: "temp".into(),
                window_seconds: 60,
                window_start: format_rfc3339(T0 + i * 60_000),
                stat: Stat::Max,
                op: Some(Op::Gt),
                threshold: 1.0,
                value: 2.0,
                observed: 2.0,
                count: 1,
                previous: None,
                mean: None,
                stddev: None,
                z: None,
                history: None,
                description: String::new(),
                view: None,
                row: None,
            };
            alerts.raise(&alert).await.expect("raise");
        }
        (aggregates, alerts)
    }

    async fn pages(
        readers: &(MemoryAggregateReader, MemoryAlertReader),
        path: &str,
        pairs: &[(&str, &str)],
    ) -> Vec<Value> {
        let mut items = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut params: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect();
            if let Some(t) = next.take() {
                params.push(("next".into(), t));
            }
            let r = respond(&readers.0, &readers.1, path, &params).await;
            assert_eq!(r.status, 200, "{}", r.body);
            let body: Value = serde_json::from_str(&r.body).expect("JSON");
            items.extend(body["items"].as_array().expect("items").iter().cloned());
            match body["next"].as_str() {
                Some(t) => next = Some(t.to_owned()),
                None => break,
            }
        }
        items
    }

    #[tokio::test]
    async fn memory_readers_page_through_every_aggregate_and_alert_once() {
        let (aggregates, alerts) = stores().await;
        let readers = (
            MemoryAggregateReader::new(aggregates.clone()),
            MemoryAlertReader::new(alerts.clone()),
        );
        let all = pages(&readers, AGGREGATES_PATH, &[("limit", "5")]).await;
        // Every item counted one event (`AggState::of`): all 2 x (12 + 3) show.
        assert_eq!(all.len(), 30);
        let mut seen: Vec<String> = all
            .iter()
            .map(|v| {
                format!(
                    "{}|{}|{}|{}",
                    v["key"], v["window_seconds"], v["slide_seconds"], v["window_start"]
                )
            })
            .collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 30, "no aggregate twice");

        let group = pages(
            &readers,
            AGGREGATES_PATH,
            &[
                ("key", "b"),
                ("type", "temp"),
                ("window_seconds", "3600"),
                ("limit", "2"),
            ],
        )
        .await;
        assert_eq!(group.len(), 3);
        assert!(
            group
                .iter()
                .all(|v| v["key"] == "b" && v["slide_seconds"] == 600)
        );

        let ranged = pages(
            &readers,
            AGGREGATES_PATH,
            &[
                ("window_seconds", "60"),
                ("from", "2026-01-01T00:03:00Z"),
                ("to", "2026-01-01T00:05:30Z"),
            ],
        )
        .await;
        assert_eq!(ranged.len(), 6, "3 starts (00:03, 00:04, 00:05) of 2 keys");

        let newest_first = pages(&readers, ALERTS_PATH, &[("limit", "2")]).await;
        let starts: Vec<&str> = newest_first
            .iter()
            .map(|a| a["window_start"].as_str().expect("start"))
            .collect();
        assert_eq!(starts.len(), 9);
        assert!(starts.windows(2).all(|w| w[0] > w[1]), "{starts:?}");
        let critical = pages(
            &readers,
            ALERTS_PATH,
            &[("severity", "critical"), ("since", "2026-01-01T00:03:00Z")],
        )
        .await;
        assert_eq!(critical.len(), 2, "windows 3 and 6");
        assert_eq!(alerts.alerts().len(), 9, "reading changes nothing");
    }
}
