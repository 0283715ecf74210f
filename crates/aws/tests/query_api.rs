//! The query API over DynamoDB (moto, see infra/local/up): aggregates and alerts
//! written through the real adapters, read back through `respond`, page by page.
#![cfg(feature = "integration")]

mod common;

use std::collections::BTreeSet;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use serde_json::Value;
use sluice_aws::dynamodb::alerts::BY_WINDOW_INDEX;
use sluice_aws::dynamodb::{DynamoAggregateReader, DynamoAlertReader};
use sluice_aws::{DynamoAggregateStore, DynamoAlerts};
use sluice_core::detect::rules::{Alert, Op, RuleKind, Severity, Stat};
use sluice_core::ports::{AggregateQuery, AggregateStore, AlertQuery, AlertStore, Commit};
use sluice_core::query::{
    AGGREGATES_PATH, ALERTS_PATH, alert_order, parse_aggregate_query, parse_alert_query, respond,
    view_position,
};
use sluice_core::resources::{AGGREGATES_TABLE, ALERTS_TABLE};
use sluice_core::state::fingerprint::FingerprintSet;
use sluice_core::state::item::{
    AggregateItem, AggregateView, GroupKey, GroupWatermark, ItemKey, ItemWrite, WatermarkWrite,
};
use sluice_core::state::window::WindowSpec;
use sluice_core::time::format_rfc3339;

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn items() -> Vec<AggregateItem> {
    let mut items = Vec::new();
    for key in ["sensor-1", "sensor-2", "sensor-3"] {
        for metric in ["temp", "hum"] {
            let group = GroupKey {
                key: key.into(),
                metric: metric.into(),
            };
            for (window, n) in [
                (WindowSpec::tumbling(60), 9),
                (WindowSpec::tumbling(3600), 2),
                (WindowSpec::hopping(3600, 600), 4),
                (WindowSpec::hopping(3600, 1200), 2),
            ] {
                for i in 0..n {
                    let mut item = AggregateItem::new(ItemKey {
                        group: group.clone(),
                        window,
                        start_ms: T0 + i * window.slide_ms,
                    });
                    item.version = 1;
                    item.state = (0..=i).map(|v| v as f64).collect();
                    items.push(item);
                }
            }
        }
    }
    items
}

fn alerts() -> Vec<Alert> {
    (0..23)
        .map(|i| {
            let key = format!("sensor-{}", i % 3);
            let start = T0 + (i / 2) * 60_000;
            let rule = if i % 4 == 0 { "burst" } else { "hot" };
            Alert {
                kind: "alert".into(),
                alert_id: Alert::id_for(rule, "temp", &key, 60, start),
                rule_id: rule.into(),
                kind_of_rule: RuleKind::Threshold,
                severity: Severity::ALL[i as usize % 3],
                key,
                metric: "temp".into(),
                window_seconds: 60,
                window_start: format_rfc3339(start),
                stat: Stat::Max,
                op: Some(Op::Gt),
                threshold: 80.0,
                value: 80.0 + i as f64,
                observed: 80.0 + i as f64,
                count: 2,
                previous: None,
                mean: None,
                stddev: None,
                z: None,
                history: None,
                description: String::new(),
                view: None,
                row: None,
            }
        })
        .collect()
}

/// Every page of a route, following `next`; also checks each page's size.
async fn all_pages(
    aggregates: &DynamoAggregateReader,
    alerts: &DynamoAlertReader,
    path: &str,
    pairs: &[(&str, &str)],
    limit: usize,
) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut next: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut params: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        params.push(("limit".into(), limit.to_string()));
        if let Some(t) = next.take() {
            params.push(("next".into(), t));
        }
        let r = respond(aggregates, alerts, path, &params).await;
        assert_eq!(r.status, 200, "{path} {pairs:?}: {}", r.body);
        let body: Value = serde_json::from_str(&r.body).expect("JSON");
        let page = body["items"].as_array().expect("items");
        assert!(page.len() <= limit, "a page holds at most limit items");
        items.extend(page.iter().cloned());
        pages += 1;
        assert!(pages < 500, "pagination ends");
        match body["next"].as_str() {
            Some(t) => next = Some(t.to_owned()),
            None => return (items, pages),
        }
    }
}

async fn write_items(store: &DynamoAggregateStore, items: &[AggregateItem]) {
    for item in items {
        let w = ItemWrite {
            item: item.clone(),
            expected_version: 0,
            sealed_page: Vec::new(),
        };
        assert_eq!(
            store.commit(&[w], None).await.expect("commit"),
            Commit::Done
        );
    }
    // What a scan must leave out: a watermark, a sealed fingerprint page, and an item
    // that counted nothing.
    let group = items[0].key.group.clone();
    let wm = WatermarkWrite {
        watermark: GroupWatermark {
            group: group.clone(),
            watermark_ms: T0,
            closed_from_ms: T0,
            last_record: None,
            version: 1,
        },
        expected_version: 0,
    };
    let mut anchor = AggregateItem::new(ItemKey {
        group,
        window: WindowSpec::tumbling(60),
        start_ms: T0 - 60_000,
    });
    anchor.version = 1;
    anchor.sealed_pages = 1;
    let mut page = FingerprintSet::new();
    page.extend([1, 2, 3]);
    let w = ItemWrite {
        item: anchor,
        expected_version: 0,
        sealed_page: vec![(1, page)],
    };
    assert_eq!(
        store.commit(&[w], Some(&wm)).await.expect("commit"),
        Commit::Done
    );
}

fn views(items: &[Value]) -> Vec<AggregateView> {
    items
        .iter()
        .map(|v| serde_json::from_value(v.clone()).expect("an aggregate line"))
        .collect()
}

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect()
}

#[tokio::test]
async fn aggregates_and_alerts_page_through_respond_exactly_once() {
    let c = common::clients().await;
    let aggregates_table = common::unique("sluice-it-query-agg");
    let alerts_table = common::unique("sluice-it-query-alerts");
    let p = c.provisioner();
    p.ensure_table(&aggregates_table, &AGGREGATES_TABLE)
        .await
        .expect("aggregates table");
    p.ensure_table(&alerts_table, &ALERTS_TABLE)
        .await
        .expect("alerts table");
    let store = DynamoAggregateStore::new(c.dynamodb.clone(), &aggregates_table);
    let written = items();
    write_items(&store, &written).await;
    let alert_store = DynamoAlerts::new(c.dynamodb.clone(), &alerts_table);
    let raised = alerts();
    for a in &raised {
        alert_store.raise(a).await.expect("raise");
    }
    let aggregates = DynamoAggregateReader::new(c.dynamodb.clone(), &aggregates_table);
    let alerts = DynamoAlertReader::new(c.dynamodb.clone(), &alerts_table);
    let all_views: Vec<AggregateView> = written.iter().map(AggregateItem::view).collect();

    let cases: [&[(&str, &str)]; 7] = [
        // A Scan, unfiltered and filtered.
        &[],
        &[("type", "hum"), ("window_seconds", "3600")],
        &[("key", "sensor-2"), ("from", "2026-01-01T00:03:00Z")],
        // A Query of one group: every window, one size (tumbling then hopping), a range.
        &[("key", "sensor-1"), ("type", "temp")],
        &[
            ("key", "sensor-3"),
            ("type", "hum"),
            ("window_seconds", "3600"),
        ],
        &[
            ("key", "sensor-1"),
            ("type", "temp"),
            ("window_seconds", "60"),
            ("from", "1767225720500"),
            ("to", "2026-01-01T00:05:00Z"),
        ],
        &[("key", "nobody"), ("type", "temp")],
    ];
    for filters in cases {
        let query: AggregateQuery = parse_aggregate_query(&params(filters)).expect("valid");
        let mut want: Vec<&AggregateView> = all_views.iter().filter(|v| query.matches(v)).collect();
        want.sort_by_key(|v| view_position(v));
        for limit in [1, 4, 1000] {
            let (items, pages) =
                all_pages(&aggregates, &alerts, AGGREGATES_PATH, filters, limit).await;
            let mut got = views(&items);
            if query.group().is_some() {
                // A group's Query returns storage order: by window label, then start.
                let positions: Vec<_> = got.iter().map(view_position).collect();
                let mut sorted = positions.clone();
                sorted.sort();
                assert_eq!(positions, sorted, "{filters:?} limit {limit}");
            }
            got.sort_by_key(view_position);
            assert_eq!(got.len(), want.len(), "{filters:?} limit {limit}");
            assert!(
                got.iter().zip(&want).all(|(g, w)| g == *w),
                "{filters:?} limit {limit}: every match exactly once"
            );
            if limit == 1000 {
                assert!(pages <= 2, "{filters:?}: {pages} pages for one limit");
            }
        }
    }

    let alert_cases: [&[(&str, &str)]; 4] = [
        &[],
        &[("severity", "critical")],
        &[("since", "2026-01-01T00:05:00Z"), ("rule", "hot")],
        &[("since", "1767225900001")],
    ];
    for filters in alert_cases {
        let query: AlertQuery = parse_alert_query(&params(filters)).expect("valid");
        let want: BTreeSet<String> = raised
            .iter()
            .filter(|a| query.matches(a))
            .map(|a| a.alert_id.clone())
            .collect();
        assert!(!want.is_empty(), "{filters:?} selects something");
        for limit in [1, 3, 100] {
            let (items, _) = all_pages(&aggregates, &alerts, ALERTS_PATH, filters, limit).await;
            let got: Vec<Alert> = items
                .iter()
                .map(|a| serde_json::from_value(a.clone()).expect("an alert"))
                .collect();
            let starts: Vec<i64> = got.iter().map(|a| alert_order(a).0.0).collect();
            assert!(
                starts.windows(2).all(|w| w[0] >= w[1]),
                "{filters:?}: newest window first: {starts:?}"
            );
            let ids: BTreeSet<String> = got.iter().map(|a| a.alert_id.clone()).collect();
            assert_eq!(
                ids.len(),
                got.len(),
                "{filters:?} limit {limit}: no alert twice"
            );
            assert_eq!(ids, want, "{filters:?} limit {limit}");
            for a in &got {
                let original = raised
                    .iter()
                    .find(|r| r.alert_id == a.alert_id)
                    .expect("raised");
                assert_eq!(a, original, "the alert as raised");
            }
        }
    }

    // The same alerts `sluice alerts --json` lists (DynamoAlerts::list), in the same
    // window order.
    let listed = alert_store.list(usize::MAX).await.expect("list");
    let (items, _) = all_pages(&aggregates, &alerts, ALERTS_PATH, &[], 7).await;
    let served: Vec<Alert> = items
        .iter()
        .map(|a| serde_json::from_value(a.clone()).expect("an alert"))
        .collect();
    let ids = |v: &[Alert]| {
        v.iter()
            .map(|a| a.alert_id.clone())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(ids(&served), ids(&listed));
    let starts = |v: &[Alert]| v.iter().map(|a| a.window_start.clone()).collect::<Vec<_>>();
    assert_eq!(starts(&served), starts(&listed));

    // A store failure is a 503/500 with a message, never a panic: a table that is gone.
    let missing = DynamoAggregateReader::new(c.dynamodb.clone(), "sluice-it-no-such-table");
    let r = respond(&missing, &alerts, AGGREGATES_PATH, &[]).await;
    assert!(r.status == 500 || r.status == 503, "{}", r.body);
    assert!(r.body.contains("sluice-it-no-such-table"), "{}", r.body);

    p.delete_table(&aggregates_table).await.expect("delete");
    p.delete_table(&alerts_table).await.expect("delete");
}

#[tokio::test]
async fn provisioning_adds_the_alerts_index_to_a_table_created_without_it() {
    let c = common::clients().await;
    let table = common::unique("sluice-it-query-old-alerts");
    // The alerts table as an earlier `sluice setup` created it: no index.
    c.dynamodb
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("alert_id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("definition"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("alert_id")
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .send()
        .await
        .expect("create");
    let old = alerts()[0].clone();
    DynamoAlerts::new(c.dynamodb.clone(), &table)
        .raise(&old)
        .await
        .expect("raise before the index");

    let created = c
        .provisioner()
        .ensure_table(&table, &ALERTS_TABLE)
        .await
        .expect("ensure");
    assert!(!created, "the table existed");
    let d = c
        .dynamodb
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .expect("describe");
    let indexes: Vec<&str> = d
        .table()
        .expect("table")
        .global_secondary_indexes()
        .iter()
        .filter_map(|i| i.index_name())
        .collect();
    assert_eq!(indexes, [BY_WINDOW_INDEX]);

    let reader = DynamoAlertReader::new(c.dynamodb.clone(), &table);
    let aggregates = DynamoAggregateReader::new(c.dynamodb.clone(), "unused");
    let r = respond(&aggregates, &reader, ALERTS_PATH, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let body: Value = serde_json::from_str(&r.body).expect("JSON");
    assert_eq!(body["items"][0]["alert_id"], old.alert_id.as_str());
    assert_eq!(body["next"], Value::Null);
    c.provisioner().delete_table(&table).await.expect("delete");
}
