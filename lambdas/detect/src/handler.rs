//! Detect handler: window updates in; rules evaluated (`threshold` on every update,
//! `rate` and `zscore` on the windows each update says were closed, with the group's
//! history read from the aggregates table); each alert stored and announced once per
//! (rule, group, window). Generic over its ports.

use sluice_core::config::DetectConfig;
use sluice_core::ports::{AlertStore, Clock, RecordSink, RulesSource, SystemClock, WindowHistory};
pub use sluice_core::stage::detect::Detect;

/// The stage as deployed, with the system clock.
pub type DetectHandler<R, A, H, O, D> = Detect<R, A, H, O, D, SystemClock>;

/// The stage as the Lambda binary builds it: the rules behind a cache that keeps them
/// for `RULES_CACHE_TTL_SECONDS` (built by [`Detect::new`]).
pub fn handler<R, A, H, O, D>(
    rules: R,
    alerts: A,
    history: H,
    output: O,
    dead_letters: D,
    config: DetectConfig,
) -> DetectHandler<R, A, H, O, D>
where
    R: RulesSource,
    A: AlertStore,
    H: WindowHistory,
    O: RecordSink,
    D: RecordSink,
{
    handler_with_clock(
        rules,
        alerts,
        history,
        output,
        dead_letters,
        SystemClock,
        config,
    )
}

/// The same stage on another clock (the rules cache ages on it too): the one place the
/// stage is assembled, for the binary and `sluice`.
pub fn handler_with_clock<R, A, H, O, D, C>(
    rules: R,
    alerts: A,
    history: H,
    output: O,
    dead_letters: D,
    clock: C,
    config: DetectConfig,
) -> Detect<R, A, H, O, D, C>
where
    R: RulesSource,
    A: AlertStore,
    H: WindowHistory,
    O: RecordSink,
    D: RecordSink,
    C: Clock + Clone,
{
    Detect::new(rules, alerts, history, output, dead_letters, clock, config)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use aws_lambda_events::event::kinesis::KinesisEvent;
    use sluice_core::detect::rules::parse_rules;
    use sluice_core::ports::SystemClock;
    use sluice_local::store::{MemoryAggregateStore, MemoryAlerts, MemoryRules};
    use sluice_local::streams::MemoryStreams;

    use super::*;

    const FIXTURE: &str = include_str!("../../../events/detect/window-updates.json");

    #[tokio::test]
    async fn fixture_raises_one_alert_per_rule_and_window() {
        let streams = MemoryStreams::new(Arc::new(SystemClock));
        streams.create("alerts", 1);
        streams.create("dlq", 1);
        let rules = parse_rules(
            r#"{"id":"too-hot","type":"temperature","window_seconds":60,"stat":"max","op":">","threshold":80}"#,
        )
        .expect("rules");
        let alerts = Arc::new(MemoryAlerts::new());
        let stage = handler(
            MemoryRules::new(rules),
            alerts.clone(),
            MemoryAggregateStore::new(),
            streams.sink("alerts"),
            streams.sink("dlq"),
            DetectConfig::default(),
        );
        let event: KinesisEvent = serde_json::from_str(FIXTURE).expect("fixture is a KinesisEvent");
        let (response, outcome) =
            sluice_core::stage::lambda_event::handle(&stage, &event, None).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(
            outcome.stats.alerts_raised, 1,
            "two updates of one window, one alert"
        );
        let announced = streams.records("alerts");
        assert_eq!(announced.len(), 1);
        let alert: serde_json::Value = serde_json::from_slice(&announced[0].data).expect("json");
        assert_eq!(alert["kind"], "alert");
        assert_eq!(alert["key"], "sensor-7");
        assert_eq!(
            alert["value"], 90.5,
            "the update that first crossed the threshold"
        );
        assert_eq!(alert["window_start"], "2026-01-01T00:00:00Z");
        let dead = streams.records("dlq");
        assert_eq!(dead.len(), 1);
        let dl: serde_json::Value = serde_json::from_slice(&dead[0].data).expect("json");
        assert_eq!(dl["reason"], "wrong_type");

        // Redelivered: the alert is already announced, nothing new goes out.
        let (_, again) = sluice_core::stage::lambda_event::handle(&stage, &event, None).await;
        assert_eq!(again.stats.alerts_raised, 0);
        assert_eq!(streams.records("alerts").len(), 1);
        assert_eq!(alerts.alerts().len(), 1);
    }

    const CLOSED: &str = include_str!("../../../events/detect/closed-windows.json");

    /// sensor-3's temperature, minutes 0..=5: ten readings a minute, then forty at 35.
    async fn seeded_history() -> Arc<MemoryAggregateStore> {
        use sluice_core::ports::AggregateStore;
        use sluice_core::state::item::{AggregateItem, GroupKey, ItemKey, ItemWrite};
        use sluice_core::state::window::WindowSpec;
        const T0: i64 = 1_767_225_600_000;
        let store = Arc::new(MemoryAggregateStore::new());
        let minutes = [
            (10, 20.0),
            (10, 20.5),
            (10, 19.5),
            (10, 20.0),
            (10, 20.5),
            (40, 35.0),
        ];
        let writes: Vec<ItemWrite> = minutes
            .iter()
            .enumerate()
            .map(|(m, (count, mean))| {
                let mut item = AggregateItem::new(ItemKey {
                    group: GroupKey {
                        key: "sensor-3".into(),
                        metric: "temperature".into(),
                    },
                    window: WindowSpec::tumbling(60),
                    start_ms: T0 + m as i64 * 60_000,
                });
                item.state = std::iter::repeat_n(*mean, *count).collect();
                item.version = 1;
                ItemWrite {
                    item,
                    expected_version: 0,
                    sealed_page: Vec::new(),
                }
            })
            .collect();
        store.commit(&writes, None).await.expect("seed");
        store
    }

    #[tokio::test]
    async fn closed_windows_fixture_raises_rate_and_zscore_alerts_once() {
        let streams = MemoryStreams::new(Arc::new(SystemClock));
        streams.create("alerts", 1);
        streams.create("dlq", 1);
        let rules = parse_rules(
            r#"{"id":"burst","kind":"rate","type":"temperature","window_seconds":60,"stat":"count","op":">=","threshold":3}
{"id":"odd-temp","kind":"zscore","type":"temperature","window_seconds":60,"stat":"mean","threshold":3,"history":5,"min_history":3}"#,
        )
        .expect("rules");
        let alerts = Arc::new(MemoryAlerts::new());
        let history = seeded_history().await;
        let stage = handler(
            MemoryRules::new(rules),
            alerts.clone(),
            history.clone(),
            streams.sink("alerts"),
            streams.sink("dlq"),
            DetectConfig::default(),
        );
        let event: KinesisEvent = serde_json::from_str(CLOSED).expect("fixture is a KinesisEvent");
        let (response, outcome) =
            sluice_core::stage::lambda_event::handle(&stage, &event, None).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(outcome.stats.history_reads, 2, "one per group with a range");
        assert_eq!(outcome.stats.alerts_raised, 2);
        let mut announced: Vec<serde_json::Value> = streams
            .records("alerts")
            .iter()
            .map(|r| serde_json::from_slice(&r.data).expect("json"))
            .collect();
        announced.sort_by_key(|a| a["rule_id"].as_str().map(str::to_owned));
        assert_eq!(announced.len(), 2);
        // Minute 5 of sensor-3, closed: 40 readings after 10, a mean far off the last five.
        assert_eq!(
            announced[0]["alert_id"],
            "burst|temperature#sensor-3|60#2026-01-01T00:05:00Z"
        );
        assert_eq!(announced[0]["kind_of_rule"], "rate");
        assert_eq!(
            (
                announced[0]["value"].as_f64(),
                announced[0]["previous"].as_f64()
            ),
            (Some(4.0), Some(10.0))
        );
        assert_eq!(
            announced[1]["alert_id"],
            "odd-temp|temperature#sensor-3|60#2026-01-01T00:05:00Z"
        );
        assert_eq!(announced[1]["kind_of_rule"], "zscore");
        assert_eq!(announced[1]["mean"].as_f64(), Some(20.1));
        assert!(announced[1]["z"].as_f64().expect("z") > 3.0);
        assert!(streams.records("dlq").is_empty());

        // Delivered again: read again, nothing new.
        let (_, again) = sluice_core::stage::lambda_event::handle(&stage, &event, None).await;
        assert_eq!(again.stats.alerts_raised, 0);
        assert_eq!(streams.records("alerts").len(), 2);
        assert_eq!(alerts.alerts().len(), 2);
    }
}
