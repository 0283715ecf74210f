//! Aggregate handler: enriched events in; windows assigned from event time, the batch
//! combined in memory, merged exactly once into the aggregates table, window updates
//! out. Generic over its ports.

use sluice_core::config::AggregateConfig;
use sluice_core::ports::{AggregateStore, Clock, RecordSink, SystemClock};
pub use sluice_core::stage::aggregate::Aggregate;

/// The stage as deployed, on the system clock.
pub type AggregateHandler<S, O, D> = Aggregate<S, O, D, SystemClock>;

/// The stage as the Lambda binary builds it.
pub fn handler<S: AggregateStore, O: RecordSink, D: RecordSink>(
    store: S,
    updates: O,
    dead_letters: D,
    config: AggregateConfig,
) -> AggregateHandler<S, O, D> {
    handler_with_clock(store, updates, dead_letters, SystemClock, config)
}

/// The same stage on another clock (deadlines are checked on it): the one place the
/// stage is assembled, for the binary and `sluice`.
pub fn handler_with_clock<S, O, D, C>(
    store: S,
    updates: O,
    dead_letters: D,
    clock: C,
    config: AggregateConfig,
) -> Aggregate<S, O, D, C>
where
    S: AggregateStore,
    O: RecordSink,
    D: RecordSink,
    C: Clock,
{
    Aggregate::new(store, updates, dead_letters, clock, config)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use aws_lambda_events::event::kinesis::KinesisEvent;
    use sluice_core::ports::SystemClock;
    use sluice_core::state::item::WindowUpdate;
    use sluice_local::store::MemoryAggregateStore;
    use sluice_local::streams::MemoryStreams;

    use super::*;

    const FIXTURE: &str = include_str!("../../../events/aggregate/enriched.json");

    #[tokio::test]
    async fn fixture_is_counted_once_even_when_delivered_twice() {
        let streams = MemoryStreams::new(Arc::new(SystemClock));
        streams.create("updates", 1);
        streams.create("dlq", 1);
        let store = Arc::new(MemoryAggregateStore::new());
        let stage = handler(
            store.clone(),
            streams.sink("updates"),
            streams.sink("dlq"),
            AggregateConfig::default(),
        );
        let event: KinesisEvent = serde_json::from_str(FIXTURE).expect("fixture is a KinesisEvent");
        let (response, outcome) =
            sluice_core::stage::lambda_event::handle(&stage, &event, None).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(outcome.stats.counted, 4);
        assert_eq!(outcome.stats.duplicates, 1, "t-1 sent twice");
        assert_eq!(outcome.stats.dead_lettered_total(), 1, "the malformed line");

        let views = |store: &MemoryAggregateStore| {
            store
                .items()
                .iter()
                .map(|i| {
                    let v = i.view();
                    (
                        v.key,
                        v.window_seconds,
                        v.window_start,
                        v.count,
                        v.sum,
                        v.min,
                        v.max,
                    )
                })
                .collect::<Vec<_>>()
        };
        let expected = vec![
            (
                "sensor-1".to_owned(),
                60,
                "2026-01-01T00:00:00Z".to_owned(),
                2,
                44.0,
                21.5,
                22.5,
            ),
            (
                "sensor-1".to_owned(),
                60,
                "2026-01-01T00:01:00Z".to_owned(),
                1,
                30.0,
                30.0,
                30.0,
            ),
            (
                "sensor-1".to_owned(),
                3600,
                "2026-01-01T00:00:00Z".to_owned(),
                3,
                74.0,
                21.5,
                30.0,
            ),
            (
                "sensor-2".to_owned(),
                60,
                "2026-01-01T00:00:00Z".to_owned(),
                1,
                19.0,
                19.0,
                19.0,
            ),
            (
                "sensor-2".to_owned(),
                3600,
                "2026-01-01T00:00:00Z".to_owned(),
                1,
                19.0,
                19.0,
                19.0,
            ),
        ];
        assert_eq!(views(&store), expected);
        let updates: Vec<WindowUpdate> = streams
            .records("updates")
            .iter()
            .flat_map(|r| {
                r.data
                    .split(|b| *b == b'\n')
                    .map(|l| serde_json::from_slice(l).expect("update"))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(updates.len(), 5, "one update per written item");

        // Lambda redelivers the same batch (e.g. the response was lost): nothing changes.
        let (_, again) = sluice_core::stage::lambda_event::handle(&stage, &event, None).await;
        assert_eq!(again.stats.counted, 0);
        assert_eq!(again.stats.duplicates, 5);
        assert_eq!(views(&store), expected);
    }

    /// The aggregate stage under examples/payments.sql over in-memory streams and table,
    /// and events/sql/aggregate.json as Lambda delivers it.
    struct SqlFixture {
        pipeline: Arc<sluice_core::stage::sql::SqlPipeline>,
        streams: Arc<MemoryStreams>,
        store: Arc<MemoryAggregateStore>,
        stage: Aggregate<
            Arc<MemoryAggregateStore>,
            sluice_local::streams::MemorySink,
            sluice_local::streams::MemorySink,
            SystemClock,
        >,
        event: KinesisEvent,
    }

    fn sql_fixture() -> SqlFixture {
        let fixture = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../events/sql/aggregate.json"),
        )
        .expect("events/sql/aggregate.json");
        let pipeline = Arc::new(
            sluice_core::stage::sql::SqlPipeline::load(include_str!(
                "../../../examples/payments.sql"
            ))
            .expect("examples/payments.sql loads"),
        );
        let streams = MemoryStreams::new(Arc::new(SystemClock));
        streams.create("updates", 1);
        streams.create("dlq", 1);
        let store = Arc::new(MemoryAggregateStore::new());
        let stage = handler(
            store.clone(),
            streams.sink("updates"),
            streams.sink("dlq"),
            AggregateConfig::default(),
        )
        .with_sql(pipeline.clone());
        let event: KinesisEvent = serde_json::from_str(&fixture).expect("a KinesisEvent");
        SqlFixture {
            pipeline,
            streams,
            store,
            stage,
            event,
        }
    }

    /// events/sql/aggregate.json (what enrich writes for events/sql/enrich.json) under
    /// examples/payments.sql: one item per (view, group, window), p-2 (sent twice by its
    /// producer) counted once; the same batch delivered again changes nothing.
    #[tokio::test]
    async fn fixture_sql_view_lines_fold_into_rows_exactly_once() {
        let SqlFixture {
            pipeline,
            streams,
            store,
            stage,
            event,
        } = sql_fixture();
        let (response, outcome) =
            sluice_core::stage::lambda_event::handle(&stage, &event, None).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(outcome.stats.events_in, 11, "view lines");
        assert_eq!(outcome.stats.counted, 9);
        assert_eq!(
            outcome.stats.duplicates, 2,
            "p-2's second sending, once per view"
        );
        assert_eq!(outcome.stats.dead_lettered_total(), 0);
        assert!(streams.records("dlq").is_empty());

        // The rows as stored (a HOP view's panes are items but not rows): p-2 counted
        // once, p-3 (a test card) only per tier, under "none" (its merchant is unknown).
        let rows = |store: &MemoryAggregateStore| {
            store
                .items()
                .iter()
                .filter_map(|i| pipeline.row_of(&i.key, &i.columns))
                .map(|r| r.expect("a row"))
                .collect::<Vec<(String, String)>>()
        };
        let expected: Vec<(String, String)> = [
            (
                "per_country",
                r#"{"window_start":"2026-01-01T00:00:00.000Z","window_end":"2026-01-01T00:01:00.000Z","country":"DE","payments":2,"total":162.50,"largest":150.00,"over_100":1}"#,
            ),
            (
                "per_country",
                r#"{"window_start":"2026-01-01T00:01:00.000Z","window_end":"2026-01-01T00:02:00.000Z","country":"FR","payments":1,"total":3.00,"largest":3.00,"over_100":0}"#,
            ),
            (
                "per_country",
                r#"{"window_start":"2026-01-01T00:02:00.000Z","window_end":"2026-01-01T00:03:00.000Z","country":"FR","payments":1,"total":250.00,"largest":250.00,"over_100":1}"#,
            ),
            (
                "per_tier",
                r#"{"window_start":"2025-12-31T23:56:00.000Z","window_end":"2026-01-01T00:01:00.000Z","tier":"gold","payments":1,"mean":12.500000}"#,
            ),
            (
                "per_tier",
                r#"{"window_start":"2025-12-31T23:57:00.000Z","window_end":"2026-01-01T00:02:00.000Z","tier":"gold","payments":2,"mean":7.750000}"#,
            ),
            (
                "per_tier",
                r#"{"window_start":"2025-12-31T23:58:00.000Z","window_end":"2026-01-01T00:03:00.000Z","tier":"gold","payments":2,"mean":7.750000}"#,
            ),
            (
                "per_tier",
                r#"{"window_start":"2025-12-31T23:59:00.000Z","window_end":"2026-01-01T00:04:00.000Z","tier":"gold","payments":2,"mean":7.750000}"#,
            ),
            (
                "per_tier",
                r#"{"window_start":"2026-01-01T00:00:00.000Z","window_end":"2026-01-01T00:05:00.000Z","tier":"gold","payments":2,"mean":7.750000}"#,
            ),
            (
                "per_tier",
                r#"{"window_start":"2026-01-01T00:01:00.000Z","window_end":"2026-01-01T00:06:00.000Z","tier":"gold","payments":1,"mean":3.000000}"#,
            ),
            (
                "per_tier",
                r#"{"window_start":"2025-12-31T23:57:00.000Z","window_end":"2026-01-01T00:02:00.000Z","tier":"none","payments":1,"mean":7.250000}"#,
            ),
            (
                "per_tier",
                r#"{"window_start":"2025-12-31T23:58:00.000Z","window_end":"2026-01-01T00:03:00.000Z","tier":"none","payments":1,"mean":7.250000}"#,
            ),
            (
                "per_tier",
                r#"{"window_start":"2025-12-31T23:59:00.000Z","window_end":"2026-01-01T00:04:00.000Z","tier":"none","payments":1,"mean":7.250000}"#,
            ),
            (
                "per_tier",
                r#"{"window_start":"2026-01-01T00:00:00.000Z","window_end":"2026-01-01T00:05:00.000Z","tier":"none","payments":1,"mean":7.250000}"#,
            ),
            (
                "per_tier",
                r#"{"window_start":"2026-01-01T00:01:00.000Z","window_end":"2026-01-01T00:06:00.000Z","tier":"none","payments":1,"mean":7.250000}"#,
            ),
            (
                "per_tier",
                r#"{"window_start":"2025-12-31T23:56:00.000Z","window_end":"2026-01-01T00:01:00.000Z","tier":"silver","payments":1,"mean":150.000000}"#,
            ),
            (
                "per_tier",
                r#"{"window_start":"2025-12-31T23:57:00.000Z","window_end":"2026-01-01T00:02:00.000Z","tier":"silver","payments":1,"mean":150.000000}"#,
            ),
            (
                "per_tier",
                r#"{"window_start":"2025-12-31T23:58:00.000Z","window_end":"2026-01-01T00:03:00.000Z","tier":"silver","payments":2,"mean":200.000000}"#,
            ),
            (
                "per_tier",
                r#"{"window_start":"2025-12-31T23:59:00.000Z","window_end":"2026-01-01T00:04:00.000Z","tier":"silver","payments":2,"mean":200.000000}"#,
            ),
            (
                "per_tier",
                r#"{"window_start":"2026-01-01T00:00:00.000Z","window_end":"2026-01-01T00:05:00.000Z","tier":"silver","payments":2,"mean":200.000000}"#,
            ),
            (
                "per_tier",
                r#"{"window_start":"2026-01-01T00:01:00.000Z","window_end":"2026-01-01T00:06:00.000Z","tier":"silver","payments":1,"mean":250.000000}"#,
            ),
            (
                "per_tier",
                r#"{"window_start":"2026-01-01T00:02:00.000Z","window_end":"2026-01-01T00:07:00.000Z","tier":"silver","payments":1,"mean":250.000000}"#,
            ),
        ]
        .into_iter()
        .map(|(view, row)| (view.to_owned(), row.to_owned()))
        .collect();
        assert_eq!(rows(&store), expected);
        let items = store.items();
        assert_eq!(items.len(), 26, "the rows and per_tier's one-minute panes");

        // Lambda delivers the same batch again: every line is a duplicate, nothing changes.
        let (response, again) =
            sluice_core::stage::lambda_event::handle(&stage, &event, None).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(again.stats.counted, 0);
        assert_eq!(again.stats.duplicates, 11);
        assert_eq!(again.stats.dead_lettered_total(), 0);
        assert_eq!(store.items(), items);
        assert_eq!(rows(&store), expected);
    }

    /// A view item whose stored states are not its view's (another definition wrote
    /// them, or they are corrupt) is never folded into: its group's lines are dead
    /// letters (`unprocessable`, naming the item), every other group goes on.
    #[tokio::test]
    async fn a_view_item_with_foreign_states_dead_letters_its_group_only() {
        use sluice_core::ports::AggregateStore;
        use sluice_core::state::item::ItemWrite;

        let SqlFixture {
            streams,
            store,
            stage,
            event,
            ..
        } = sql_fixture();
        sluice_core::stage::lambda_event::handle(&stage, &event, None).await;
        // The DE row of per_country loses a state.
        let de = store
            .items()
            .into_iter()
            .find(|i| i.key.group.key.contains("DE"))
            .expect("the DE item");
        let mut tampered = de.clone();
        tampered.columns.pop();
        tampered.version += 1;
        let write = ItemWrite {
            item: tampered,
            expected_version: de.version,
            sealed_page: Vec::new(),
        };
        store.commit(&[write], None).await.expect("tampered");
        let (response, again) =
            sluice_core::stage::lambda_event::handle(&stage, &event, None).await;
        assert!(response.batch_item_failures.is_empty(), "nothing to retry");
        let dead = streams.records("dlq");
        assert_eq!(
            again.stats.dead_lettered_total(),
            3,
            "DE's lines: p-1, p-2 and p-2's second sending"
        );
        assert_eq!(again.stats.duplicates, 8, "every other line, as before");
        let text: String = dead
            .iter()
            .map(|r| String::from_utf8_lossy(&r.data).into_owned())
            .collect();
        assert!(text.contains("unprocessable"), "{text}");
        assert!(
            text.contains("aggregate states where view `per_country` has"),
            "{text}"
        );
    }
}
