//! The rules table adapter against moto's DynamoDB (see infra/local/up): put validates
//! before writing, list returns every rule kind as it was put and reports malformed
//! items, delete tells a deleted rule from an absent one.
#![cfg(feature = "integration")]

mod common;

use aws_sdk_dynamodb::types::AttributeValue;
use sluice_aws::DynamoRules;
use sluice_core::Error;
use sluice_core::detect::rules::{RuleKind, parse_rules};
use sluice_core::ports::RulesSource;
use sluice_core::resources::RULES_TABLE;

#[tokio::test]
async fn rules_of_every_kind_put_list_and_delete() {
    let c = common::clients().await;
    let table = common::unique("sluice-it-rules-cli");
    c.provisioner()
        .ensure_table(&table, &RULES_TABLE)
        .await
        .expect("table");
    let store = DynamoRules::new(c.dynamodb.clone(), &table);
    let rules = parse_rules(concat!(
        r#"{"id":"big","type":"amount","window_seconds":60,"stat":"max","op":">","threshold":5000,"severity":"critical","description":"one large payment"}"#,
        "\n",
        r#"{"id":"burst","kind":"rate","type":"amount","key_prefix":"acct-","window_seconds":60,"stat":"count","op":">=","threshold":3,"min_count":20,"enabled":false}"#,
        "\n",
        r#"{"id":"odd","kind":"zscore","type":"amount","window_seconds":60,"stat":"sum","op":">","threshold":4.5,"history":10,"min_history":3}"#,
        "\n",
        r#"{"id":"two-sided","kind":"zscore","type":"temp","window_seconds":3600,"stat":"mean","threshold":3}"#,
    ))
    .expect("rules");
    for r in &rules {
        store.put(r).await.expect("put");
    }
    let listed = store.list().await.expect("list");
    assert_eq!(listed.rules, rules, "sorted by id, every field as put");
    assert!(listed.malformed.is_empty());
    assert_eq!(listed.rules[1].kind, RuleKind::Rate);
    assert!(!listed.rules[1].enabled);
    assert_eq!(listed.rules[2].history, Some(10));
    assert_eq!(listed.rules[3].op, None);

    // An invalid rule is refused before anything is written, even built by hand.
    let mut bad = rules[2].clone();
    bad.id = "bad".into();
    bad.min_history = Some(50);
    let err = store.put(&bad).await.expect_err("min_history > history");
    assert!(
        matches!(&err, Error::InvalidRule { field, .. } if field == "min_history"),
        "{err}"
    );
    assert_eq!(store.list().await.expect("list").rules.len(), 4);

    // An item written around the adapter is reported by list, skipped by rules().
    c.dynamodb
        .put_item()
        .table_name(&table)
        .item("id", AttributeValue::S("broken".into()))
        .item("kind", AttributeValue::S("rate".into()))
        .send()
        .await
        .expect("raw put");
    let listed = store.list().await.expect("list");
    assert_eq!(listed.malformed.len(), 1);
    assert_eq!(listed.malformed[0].0, "broken");
    assert_eq!(store.rules().await.expect("rules").len(), 4);

    assert!(store.delete("burst").await.expect("delete"));
    assert!(
        !store.delete("burst").await.expect("second delete"),
        "nothing to delete"
    );
    assert!(!store.delete("never-was").await.expect("absent"));
    let ids: Vec<String> = store
        .rules()
        .await
        .expect("rules")
        .iter()
        .map(|r| r.id.clone())
        .collect();
    assert_eq!(ids, ["big", "odd", "two-sided"]);
    c.provisioner().delete_table(&table).await.expect("delete");
}
