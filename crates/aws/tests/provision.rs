//! Provisioning against kinesis-local and moto (see infra/local/up).
#![cfg(feature = "integration")]

mod common;

use aws_sdk_dynamodb::types::{BillingMode, TimeToLiveStatus};
use aws_sdk_kinesis::types::StreamStatus;
use sluice_core::resources::{Names, STREAMS, TABLES};

#[tokio::test]
async fn provisioning_is_idempotent_and_creates_everything_active() {
    let c = common::clients().await;
    let prefix = common::unique("sluice-it-prov");
    let p = c.provisioner();
    let shards = |def: &sluice_core::resources::StreamDef| {
        if def.suffix == "raw" { 3 } else { 1 }
    };

    let first = p.provision(&prefix, shards).await.expect("first run");
    assert_eq!(first.len(), STREAMS.len() + TABLES.len());
    assert!(first.iter().all(|r| r.created), "{first:?}");
    let second = p.provision(&prefix, shards).await.expect("second run");
    assert_eq!(second.len(), first.len());
    assert!(second.iter().all(|r| !r.created), "{second:?}");

    let names = Names::new(&prefix);
    for def in STREAMS {
        let name = names.stream(def);
        let d = c
            .kinesis
            .describe_stream_summary()
            .stream_name(&name)
            .send()
            .await
            .expect("describe stream");
        let d = d.stream_description_summary().expect("summary");
        assert_eq!(d.stream_status(), &StreamStatus::Active, "{name}");
        assert_eq!(d.open_shard_count(), shards(&def) as i32, "{name}");
    }
    for def in TABLES {
        let name = names.table(def);
        let d = c
            .dynamodb
            .describe_table()
            .table_name(&name)
            .send()
            .await
            .expect("describe table");
        let t = d.table().expect("table");
        assert_eq!(
            t.billing_mode_summary().and_then(|b| b.billing_mode()),
            Some(&BillingMode::PayPerRequest),
            "{name}"
        );
        let keys: Vec<&str> = t.key_schema().iter().map(|k| k.attribute_name()).collect();
        let mut want = vec![def.partition_key];
        want.extend(def.sort_key);
        assert_eq!(keys, want, "{name}");
        let ttl = c
            .dynamodb
            .describe_time_to_live()
            .table_name(&name)
            .send()
            .await
            .expect("ttl");
        let ttl = ttl.time_to_live_description();
        match def.ttl_attribute {
            Some(attr) => {
                let ttl = ttl.expect("ttl description");
                assert_eq!(
                    ttl.time_to_live_status(),
                    Some(&TimeToLiveStatus::Enabled),
                    "{name}"
                );
                assert_eq!(ttl.attribute_name(), Some(attr), "{name}");
            }
            None => assert!(
                ttl.and_then(|t| t.time_to_live_status())
                    .is_none_or(|s| *s == TimeToLiveStatus::Disabled),
                "{name}: {ttl:?}"
            ),
        }
    }

    p.delete_all(&prefix).await.expect("delete");
    for def in TABLES {
        let err = c
            .dynamodb
            .describe_table()
            .table_name(names.table(def))
            .send()
            .await
            .expect_err("deleted");
        assert_eq!(
            aws_sdk_dynamodb::error::ProvideErrorMetadata::code(&err),
            Some("ResourceNotFoundException")
        );
    }
    p.delete_all(&prefix).await.expect("deleting again is fine");
}
