//! Reference, rules and alerts adapters against moto's DynamoDB (see infra/local/up).
#![cfg(feature = "integration")]

mod common;

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;
use sluice_aws::{DynamoAlerts, DynamoReference, DynamoRules};
use sluice_core::detect::rules::{Alert, Op, RuleKind, Severity, Stat, parse_rules};
use sluice_core::ports::{AlertStatus, AlertStore, Clock, ReferenceLookup, RulesSource};
use sluice_core::resources::{ALERTS_TABLE, REFERENCE_TABLE, RULES_TABLE};

#[tokio::test]
async fn reference_lookup_returns_scalar_attributes_of_known_keys() {
    let c = common::clients().await;
    let table = common::unique("sluice-it-ref");
    c.provisioner()
        .ensure_table(&table, &REFERENCE_TABLE)
        .await
        .expect("table");
    let reference = DynamoReference::new(c.dynamodb.clone(), &table);
    let attrs: BTreeMap<String, String> =
        [("region", "eu-west"), ("tier", "gold"), ("key", "ignored")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    reference.put("sensor-1", &attrs).await.expect("put");
    // A row written by someone else, with numbers, booleans and a list.
    c.dynamodb
        .put_item()
        .table_name(&table)
        .item("key", AttributeValue::S("sensor-2".into()))
        .item("floor", AttributeValue::N("3".into()))
        .item("active", AttributeValue::Bool(true))
        .item(
            "tags",
            AttributeValue::L(vec![AttributeValue::S("x".into())]),
        )
        .send()
        .await
        .expect("raw put");

    let keys: Vec<String> = ["sensor-1", "sensor-2", "unknown", "sensor-1"]
        .into_iter()
        .map(String::from)
        .collect();
    let found = reference.lookup(&keys).await.expect("lookup");
    assert_eq!(found.len(), 2, "{found:?}");
    let s1 = &found["sensor-1"];
    assert_eq!(s1.len(), 2);
    assert_eq!(s1["region"], "eu-west");
    assert_eq!(s1["tier"], "gold");
    let s2 = &found["sensor-2"];
    assert_eq!(s2.get("floor").map(String::as_str), Some("3"));
    assert_eq!(s2.get("active").map(String::as_str), Some("true"));
    assert!(
        !s2.contains_key("tags") && !s2.contains_key("key"),
        "{s2:?}"
    );
    assert!(reference.lookup(&[]).await.expect("empty").is_empty());

    // More keys than one BatchGetItem takes.
    let many: Vec<String> = (0..130)
        .map(|i| format!("absent-{i}"))
        .chain(["sensor-2".into()])
        .collect();
    assert_eq!(reference.lookup(&many).await.expect("lookup").len(), 1);
    c.provisioner().delete_table(&table).await.expect("delete");
}

#[tokio::test]
async fn rules_are_stored_flat_and_malformed_ones_are_skipped() {
    let c = common::clients().await;
    let table = common::unique("sluice-it-rules");
    c.provisioner()
        .ensure_table(&table, &RULES_TABLE)
        .await
        .expect("table");
    let store = DynamoRules::new(c.dynamodb.clone(), &table);
    let rules = parse_rules(concat!(
        r#"{"id":"hot","type":"temp","window_seconds":60,"stat":"max","op":">","threshold":80.5}"#,
        "\n",
        r#"{"id":"busy","type":"*","key_prefix":"pay-","window_seconds":3600,"stat":"count","op":">=","threshold":1000,"min_count":5,"severity":"critical"}"#,
    ))
    .expect("rules");
    for r in &rules {
        store.put(r).await.expect("put");
    }
    c.dynamodb
        .put_item()
        .table_name(&table)
        .item("id", AttributeValue::S("broken".into()))
        .item("type", AttributeValue::S("temp".into()))
        .item("op", AttributeValue::S("=~".into()))
        .send()
        .await
        .expect("raw put");

    let got = store.rules().await.expect("rules");
    let mut want = rules.clone();
    want.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(*got, want, "malformed rule skipped, the others intact");
    assert_eq!(got[1].kind, RuleKind::Threshold);
    assert_eq!(got[1].threshold, 80.5);

    let raw = c
        .dynamodb
        .get_item()
        .table_name(&table)
        .key("id", AttributeValue::S("busy".into()))
        .send()
        .await
        .expect("get")
        .item
        .expect("stored");
    assert_eq!(raw["type"], AttributeValue::S("*".into()));
    assert_eq!(raw["op"], AttributeValue::S(">=".into()));
    assert_eq!(raw["stat"], AttributeValue::S("count".into()));
    assert_eq!(raw["kind"], AttributeValue::S("threshold".into()));
    assert!(matches!(&raw["threshold"], AttributeValue::N(_)));
    assert_eq!(raw["min_count"], AttributeValue::N("5".into()));
    assert_eq!(raw["window_seconds"], AttributeValue::N("3600".into()));
    c.provisioner().delete_table(&table).await.expect("delete");
}

struct FixedClock(i64);

impl Clock for FixedClock {
    fn now_ms(&self) -> i64 {
        self.0
    }
}

fn alert(id_suffix: &str, start: &str) -> Alert {
    Alert {
        kind: "alert".into(),
        alert_id: format!("hot|temp#sensor-1|60#{start}{id_suffix}"),
        rule_id: "hot".into(),
        kind_of_rule: RuleKind::Threshold,
        severity: Severity::Warning,
        key: "sensor-1".into(),
        metric: "temp".into(),
        window_seconds: 60,
        window_start: start.into(),
        stat: Stat::Max,
        op: Some(Op::Gt),
        threshold: 80.0,
        value: 80.5,
        observed: 80.5,
        count: 3,
        previous: None,
        mean: None,
        stddev: None,
        z: None,
        history: None,
        description: String::new(),
        view: None,
        row: None,
    }
}

#[tokio::test]
async fn alerts_are_raised_once_then_pending_then_notified() {
    let c = common::clients().await;
    let table = common::unique("sluice-it-alerts");
    c.provisioner()
        .ensure_table(&table, &ALERTS_TABLE)
        .await
        .expect("table");
    let now_ms = 1_767_225_600_000;
    let store = DynamoAlerts::new(c.dynamodb.clone(), &table).with_clock(FixedClock(now_ms));
    let a = alert("", "2026-01-01T00:01:00Z");

    assert_eq!(store.raise(&a).await.expect("raise"), AlertStatus::New);
    assert_eq!(store.raise(&a).await.expect("raise"), AlertStatus::Pending);
    store.mark_notified(&a.alert_id).await.expect("mark");
    assert_eq!(store.raise(&a).await.expect("raise"), AlertStatus::Notified);

    let raw = c
        .dynamodb
        .get_item()
        .table_name(&table)
        .key("alert_id", AttributeValue::S(a.alert_id.clone()))
        .send()
        .await
        .expect("get")
        .item
        .expect("stored");
    assert_eq!(raw["notified"], AttributeValue::Bool(true));
    let expires = now_ms / 1000 + 30 * 86_400;
    assert_eq!(raw["expires_at"], AttributeValue::N(expires.to_string()));
    let value = raw["value"].as_n().expect("value is N");
    assert_eq!(value.parse::<f64>().ok(), Some(80.5), "{value}");
    assert_eq!(raw["type"], AttributeValue::S("temp".into()));

    // Marking an unknown alert creates nothing.
    store.mark_notified("no-such-alert").await.expect("mark");
    let b = alert("", "2026-01-01T00:02:00Z");
    assert_eq!(store.raise(&b).await.expect("raise"), AlertStatus::New);
    let listed = store.list(10).await.expect("list");
    assert_eq!(
        listed,
        vec![b.clone(), a.clone()],
        "latest window first, nothing else"
    );
    assert_eq!(store.list(1).await.expect("list"), vec![b]);
    c.provisioner().delete_table(&table).await.expect("delete");
}
