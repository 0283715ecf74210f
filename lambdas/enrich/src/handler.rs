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

/// The stage under a SQL pipeline as the Lambda binary builds it (`PIPELINE_FILE`).
pub fn sql_handler<R: ReferenceLookup, O: RecordSink, D: RecordSink>(
    pipeline: std::sync::Arc<sluice_core::stage::sql::SqlPipeline>,
    reference: R,
    output: O,
    dead_letters: D,
    config: EnrichConfig,
) -> sluice_core::stage::sql::enrich::SqlEnrich<R, O, D, SystemClock> {
    sql_handler_with_clock(
        pipeline,
        reference,
        output,
        dead_letters,
        SystemClock,
        config,
    )
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

    /// events/sql/enrich.json (what ingest writes for events/sql/ingest.json) under
    /// examples/payments.sql, with the reference table holding
    /// examples/payments.merchants.ndjson (m-1 and m-2; p-3's merchant m-9 is absent):
    /// one view line per event and group its stored views share (here each view groups
    /// by other values, so one per (event, view)); what passes on is
    /// events/sql/aggregate.json, record for record.
    #[tokio::test]
    async fn fixture_sql_source_lines_become_view_lines() {
        use sluice_core::stage::sql::enrich::{REFERENCE_ROW, reference_key};
        use sluice_core::stage::sql::line::id_text;
        use sluice_core::stage::sql::{SqlPipeline, group_partition_key};
        use sluice_local::fixtures::{assert_fixture, kinesis_event};

        let events = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/sql");
        let fixture =
            std::fs::read_to_string(events.join("enrich.json")).expect("events/sql/enrich.json");
        let pipeline = Arc::new(
            SqlPipeline::load(include_str!("../../../examples/payments.sql"))
                .expect("examples/payments.sql loads"),
        );
        let rows: Vec<(String, Attrs)> =
            include_str!("../../../examples/payments.merchants.ndjson")
                .lines()
                .map(|line| {
                    let (key, _) = pipeline
                        .program
                        .read_reference("merchants", line.as_bytes())
                        .expect("a merchants row");
                    (
                        reference_key("merchants", &key),
                        Attrs::from([(REFERENCE_ROW.to_owned(), line.to_owned())]),
                    )
                })
                .collect();
        let streams = MemoryStreams::new(Arc::new(SystemClock));
        streams.create("enriched", 1);
        streams.create("dlq", 1);
        let stage = sql_handler(
            pipeline.clone(),
            MemoryReference::new(rows),
            streams.sink("enriched"),
            streams.sink("dlq"),
            EnrichConfig::default(),
        );
        let event: KinesisEvent = serde_json::from_str(&fixture).expect("a KinesisEvent");
        let (response, outcome) =
            sluice_core::stage::lambda_event::handle(&stage, &event, None).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(outcome.stats.events_in, 6);
        assert_eq!(
            outcome.stats.passed_on, 11,
            "5 per_country lines, 6 per_tier lines"
        );
        assert_eq!(outcome.stats.dead_lettered_total(), 0);
        assert!(streams.records("dlq").is_empty());

        let view_name = |id: &str| pipeline.view(id).expect("a stored view").name.clone();
        let mut got: Vec<(String, String, String)> = Vec::new();
        for r in streams.records("enriched") {
            for l in r.data.split(|b| *b == b'\n') {
                let line: sluice_core::stage::sql::ViewLine<'_> =
                    serde_json::from_slice(l).expect("a view line");
                assert_eq!(
                    r.partition_key,
                    group_partition_key(line.k.get()),
                    "keyed by the group"
                );
                for (view, _) in &line.v {
                    got.push((
                        view_name(view),
                        line.k.get().to_owned(),
                        id_text(line.id.map(|r| r.get()), &line.origin).to_owned(),
                    ));
                }
            }
        }
        got.sort();
        let line = |v: &str, k: &str, id: &str| {
            (v.to_owned(), format!("[\"{k}\"]"), format!("[\"{id}\"]"))
        };
        assert_eq!(
            got,
            [
                // p-3 paid with a test card: the view's WHERE leaves it out.
                line("per_country", "DE", "p-1"),
                line("per_country", "DE", "p-2"),
                line("per_country", "DE", "p-2"),
                line("per_country", "FR", "p-4"),
                line("per_country", "FR", "p-5"),
                line("per_tier", "gold", "p-1"),
                line("per_tier", "gold", "p-4"),
                // m-9 is not in the reference table: the LEFT JOIN's tier is NULL.
                line("per_tier", "none", "p-3"),
                line("per_tier", "silver", "p-2"),
                line("per_tier", "silver", "p-2"),
                line("per_tier", "silver", "p-5"),
            ]
        );

        let written: Vec<(String, Vec<u8>)> = streams
            .records("enriched")
            .into_iter()
            .map(|r| (r.partition_key, r.data))
            .collect();
        assert_fixture(
            &events.join("aggregate.json"),
            &kinesis_event("aggregate", "sluice-enriched", &written),
        );
    }
}
