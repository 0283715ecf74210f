//! What `/api/overview` answers: the busiest groups with their series over time, dead
//! letters by reason, and per-stage throughput and lag. Built here from plain values
//! (aggregate views, dead letters, stage counters), so the demo and a deployment share
//! it and tests need neither.

use std::collections::BTreeMap;

use serde::Serialize;
use sluice_core::dead_letter::DeadLetter;
use sluice_core::item::AggregateView;
use sluice_core::time::parse_rfc3339_ms;

/// One window of a group's series.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Point {
    pub start_ms: i64,
    pub window_start: String,
    pub count: u64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

/// A group (key, type) with its events over all windows of the chosen size and its
/// latest windows, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupSeries {
    pub key: String,
    #[serde(rename = "type")]
    pub metric: String,
    pub events: u64,
    pub points: Vec<Point>,
}

/// Per group and tumbling window size: events counted and the latest windows.
#[derive(Default)]
struct Acc {
    events: u64,
    points: BTreeMap<i64, Point>,
}

/// Folds aggregate views (in any order) into the busiest groups. Memory: one
/// accumulator per (group, window size), each with at most `points` windows.
pub struct Busiest {
    points: usize,
    groups: BTreeMap<(String, String, i64), Acc>,
}

impl Busiest {
    pub fn new(points: usize) -> Self {
        Busiest {
            points: points.max(1),
            groups: BTreeMap::new(),
        }
    }

    /// Counts a view. Hopping windows overlap (an event is in several), so only
    /// tumbling windows are charted; a view whose start does not parse is skipped.
    pub fn feed(&mut self, v: &AggregateView) {
        if v.slide_seconds.is_some() {
            return;
        }
        let Some(start_ms) = parse_rfc3339_ms(&v.window_start) else {
            return;
        };
        let acc = self
            .groups
            .entry((v.key.clone(), v.metric.clone(), v.window_seconds))
            .or_default();
        acc.events += v.count;
        acc.points.insert(
            start_ms,
            Point {
                start_ms,
                window_start: v.window_start.clone(),
                count: v.count,
                mean: v.mean,
                min: v.min,
                max: v.max,
            },
        );
        if acc.points.len() > self.points {
            acc.points.pop_first();
        }
    }

    /// The tumbling window sizes seen, smallest first.
    pub fn window_sizes(&self) -> Vec<i64> {
        let mut sizes: Vec<i64> = self.groups.keys().map(|(_, _, s)| *s).collect();
        sizes.sort_unstable();
        sizes.dedup();
        sizes
    }

    /// The `top` groups with the most events in windows of `size` (ties: by key and
    /// type), and how many groups there are in all.
    pub fn top(self, size: i64, top: usize) -> (Vec<GroupSeries>, usize) {
        let mut all: Vec<GroupSeries> = self
            .groups
            .into_iter()
            .filter(|((_, _, s), _)| *s == size)
            .map(|((key, metric, _), acc)| GroupSeries {
                key,
                metric,
                events: acc.events,
                points: acc.points.into_values().collect(),
            })
            .collect();
        let groups = all.len();
        all.sort_by(|a, b| {
            b.events
                .cmp(&a.events)
                .then_with(|| (&a.key, &a.metric).cmp(&(&b.key, &b.metric)))
        });
        all.truncate(top);
        (all, groups)
    }
}

/// The chart part of the overview.
#[derive(Debug, Serialize)]
pub struct Charts {
    /// The window size charted, in seconds (none when there are no aggregates yet).
    pub window_seconds: Option<i64>,
    /// Every tumbling window size there is, smallest first.
    pub window_sizes: Vec<i64>,
    /// Groups with aggregates of the charted size.
    pub groups: usize,
    pub busiest: Vec<GroupSeries>,
    /// Set when the charts do not cover the whole table (see the text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Charts the busiest groups in windows of `size` (default: the smallest there is).
pub fn charts(busiest: Busiest, size: Option<i64>, top: usize) -> Charts {
    let window_sizes = busiest.window_sizes();
    let size = size
        .filter(|s| window_sizes.contains(s))
        .or_else(|| window_sizes.first().copied());
    let (busiest, groups) = match size {
        Some(s) => busiest.top(s, top),
        None => (Vec::new(), 0),
    };
    Charts {
        window_seconds: size,
        window_sizes,
        groups,
        busiest,
        note: None,
    }
}

/// Dead letters counted by reason (a dead letter standing for several rejected lines
/// of one record counts once, as one `dead_letter` line of `--json` output does).
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct DeadLetters {
    pub total: u64,
    pub by_reason: BTreeMap<String, u64>,
    /// Set when the counts do not cover the whole stream (see the text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl DeadLetters {
    pub fn add(&mut self, letter: &DeadLetter) {
        self.total += 1;
        *self.by_reason.entry(letter.reason.to_string()).or_default() += 1;
    }

    #[cfg(test)]
    pub fn of(letters: &[DeadLetter]) -> Self {
        let mut counts = DeadLetters::default();
        letters.iter().for_each(|l| counts.add(l));
        counts
    }
}

/// One stage's throughput and lag. `None`: not known for this source (the page says
/// "unavailable" and `note` says why).
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct StageRow {
    pub stage: String,
    pub input_stream: String,
    /// Kinesis records the stage processed.
    pub records_in: Option<u64>,
    /// Events in those records (a record may hold several).
    pub events_in: Option<u64>,
    /// Records the stage wrote to its output stream.
    pub records_out: Option<u64>,
    pub dead_letters: Option<u64>,
    /// Records on the input stream not yet checkpointed by the stage.
    pub backlog_records: Option<u64>,
    /// Age of the oldest record the stage has not processed (iterator age), ms.
    pub iterator_age_ms: Option<i64>,
    /// Invocation duration percentiles, ms.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Stages {
    pub rows: Vec<StageRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The whole `/api/overview` body.
#[derive(Debug, Serialize)]
pub struct Overview {
    /// What the page shows: `demo` or `deployment`.
    pub source: &'static str,
    /// A line naming it (scenario, or prefix and endpoint).
    pub title: String,
    /// When this overview was computed (wall clock, epoch ms).
    pub generated_ms: i64,
    /// Counted events in total, when known (the demo's ledger).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub totals: Option<serde_json::Value>,
    pub charts: Charts,
    pub dead_letters: DeadLetters,
    pub stages: Stages,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(key: &str, size: i64, start: &str, count: u64) -> AggregateView {
        AggregateView {
            kind: "aggregate".into(),
            key: key.into(),
            metric: "temp".into(),
            window_seconds: size,
            slide_seconds: None,
            window_start: start.into(),
            count,
            sum: count as f64 * 2.0,
            min: 1.0,
            max: 3.0,
            mean: 2.0,
            variance: 0.5,
        }
    }

    #[test]
    fn the_busiest_groups_come_first_with_their_latest_windows_in_order() {
        let mut b = Busiest::new(2);
        for (key, start, count) in [
            ("a", "2026-01-01T00:02:00Z", 1),
            ("b", "2026-01-01T00:00:00Z", 5),
            ("a", "2026-01-01T00:00:00Z", 1),
            ("c", "2026-01-01T00:00:00Z", 2),
            ("a", "2026-01-01T00:01:00Z", 1),
        ] {
            b.feed(&view(key, 60, start, count));
        }
        // A coarser size and a hopping window are not charted with the 60 s ones.
        b.feed(&view("z", 3600, "2026-01-01T00:00:00Z", 100));
        let mut hopping = view("y", 60, "2026-01-01T00:00:00Z", 100);
        hopping.slide_seconds = Some(30);
        b.feed(&hopping);
        assert_eq!(b.window_sizes(), vec![60, 3600]);
        let c = charts(b, None, 2);
        assert_eq!(c.window_seconds, Some(60));
        assert_eq!(c.groups, 3);
        let got: Vec<(&str, u64)> = c
            .busiest
            .iter()
            .map(|g| (g.key.as_str(), g.events))
            .collect();
        assert_eq!(got, vec![("b", 5), ("a", 3)]);
        // "a" keeps its two latest windows of three, oldest first; events count all.
        let starts: Vec<&str> = c.busiest[1]
            .points
            .iter()
            .map(|p| p.window_start.as_str())
            .collect();
        assert_eq!(starts, vec!["2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"]);
    }

    #[test]
    fn an_unknown_size_falls_back_to_the_smallest_and_no_data_charts_nothing() {
        let mut b = Busiest::new(10);
        b.feed(&view("a", 3600, "2026-01-01T00:00:00Z", 4));
        b.feed(&view("a", 60, "2026-01-01T00:00:00Z", 4));
        assert_eq!(charts(b, Some(7), 5).window_seconds, Some(60));
        let mut b = Busiest::new(10);
        b.feed(&view("a", 3600, "2026-01-01T00:00:00Z", 4));
        assert_eq!(charts(b, Some(3600), 5).busiest.len(), 1);
        let empty = charts(Busiest::new(10), None, 5);
        assert_eq!(empty.window_seconds, None);
        assert!(empty.busiest.is_empty());
    }

    #[test]
    fn dead_letters_are_counted_by_reason() {
        let letter = |reason: &str| -> DeadLetter {
            serde_json::from_value(serde_json::json!({
                "reason": reason, "detail": "d", "id": null, "stage": "ingest",
                "source_stream": "raw", "shard_id": "s", "sequence_number": "1"
            }))
            .expect("dead letter")
        };
        let counts = DeadLetters::of(&[
            letter("not_json"),
            letter("missing_field"),
            letter("not_json"),
        ]);
        assert_eq!(counts.total, 3);
        assert_eq!(counts.by_reason["not_json"], 2);
        assert_eq!(counts.by_reason["missing_field"], 1);
    }
}
