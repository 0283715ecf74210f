//! Enrich handler: valid events in; reference attributes joined (cached per container);
//! output keyed by the aggregation key. Generic over its ports.

use sluice_core::config::EnrichConfig;
use sluice_core::ports::{Clock, RecordSink, ReferenceLookup, SystemClock};
pub use sluice_core::stage::enrich::Enrich;

/// The stage as deployed, on the system clock.
pub type EnrichHandler<R, O, D> = Enrich<R, O, D, SystemClock>;

/// The stage as the Lambda binary builds it: the reference table behind a cache that
/// keeps each key for `REFERENCE_CACHE_TTL_SECONDS` (built by [`Enrich::new`]).
pub fn handler<R: ReferenceLookup, O: RecordSink, D: RecordSink>(
    reference: R,
    output: O,
    dead_letters: D,
    config: EnrichConfig,
) -> EnrichHandler<R, O, D> {
    handler_with_clock(reference, output, dead_letters, SystemClock, config)
}

/// The same stage on another clock (the cache ages on it too): the one place the stage
/// is assembled, for the binary and `sluice`.
pub fn handler_with_clock<R, O, D, C>(
    reference: R,
    output: O,
    dead_letters: D,
    clock: C,
    config: EnrichConfig,
) -> Enrich<R, O, D, C>
where
    R: ReferenceLookup,
    O: RecordSink,
    D: RecordSink,
    C: Clock + Clone,
{
    Enrich::new(reference, output, dead_letters, clock, config)
}

/// The stage under a SQL pipeline (issue 17): lookup joins and re-partitioning per
/// (view, group), over the same cached reference port.
pub fn sql_handler_with_clock<R, O, D, C>(
    pipeline: std::sync::Arc<sluice_core::stage::sql::SqlPipeline>,
    reference: R,
    output: O,
    dead_letters: D,
    clock: C,
    config: EnrichConfig,
) -> sluice_core::stage::sql::enrich::SqlEnrich<R, O, D, C>
where
    R: ReferenceLookup,
    O: RecordSink,
    D: RecordSink,
    C: Clock + Clone,
{
    sluice_core::stage::sql::enrich::SqlEnrich::new(
        pipeline,
        reference,
        output,
        dead_letters,
        clock,
        config,
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use aws_lambda_events::event::kinesis::KinesisEvent;
    use sluice_core::ports::{Attrs, SystemClock};
    use sluice_local::store::MemoryReference;
    use sluice_local::streams::MemoryStreams;

    use super::*;

    const FIXTURE: &str = include_str!("../../../events/enrich/valid.json");

    #[tokio::test]
    async fn fixture_joins_known_keys_and_passes_unknown_ones() {
        let streams = MemoryStreams::new(Arc::new(SystemClock));
        streams.create("enriched", 2);
        streams.create("dlq", 1);
        let reference = MemoryReference::new([
            (
                "sensor-1".to_owned(),
                Attrs::from([("site".into(), "north".into()), ("unit".into(), "F".into())]),
            ),
            (
                "sensor-2".to_owned(),
                Attrs::from([("site".into(), "south".into())]),
            ),
        ]);
        let stage = handler(
            reference,
            streams.sink("enriched"),
            streams.sink("dlq"),
            EnrichConfig::default(),
        );
        let event: KinesisEvent = serde_json::from_str(FIXTURE).expect("fixture is a KinesisEvent");
        let (response, outcome) =
            sluice_core::stage::lambda_event::handle(&stage, &event, None).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(outcome.stats.passed_on, 3);
        assert_eq!(outcome.stats.unenriched, 1);
        let out: Vec<serde_json::Value> = streams
            .records("enriched")
            .iter()
            .map(|r| serde_json::from_slice(&r.data).expect("one event per key here"))
            .collect();
        let s1 = out
            .iter()
            .find(|v| v["key"] == "sensor-1")
            .expect("sensor-1");
        assert_eq!(s1["attrs"]["site"], "north");
        assert_eq!(s1["attrs"]["unit"], "C", "the event's own attribute wins");
        let s2 = out
            .iter()
            .find(|v| v["key"] == "sensor-2")
            .expect("sensor-2");
        assert_eq!(s2["attrs"]["site"], "south");
        let unknown = out
            .iter()
            .find(|v| v["key"] == "unknown-7")
            .expect("unknown passes through");
        assert!(unknown.get("attrs").is_none());
        for r in streams.records("enriched") {
            let v: serde_json::Value = serde_json::from_slice(&r.data).expect("json");
            assert_eq!(
                r.partition_key,
                v["key"].as_str().expect("key"),
                "keyed by aggregation key"
            );
        }
        let dead = streams.records("dlq");
        assert_eq!(dead.len(), 1);
        let dl: serde_json::Value = serde_json::from_slice(&dead[0].data).expect("json");
        assert_eq!(dl["reason"], "not_json");
        assert_eq!(dl["stage"], "enrich");
    }
}
