//! What `/api/overview` answers: the busiest groups with their series over time, dead
//! letters by reason, and per-stage throughput and lag. Built here from plain values
//! (aggregate views, dead letters, stage counters), so the demo and a deployment share
//! it and tests need neither.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use sluice_core::state::item::AggregateView;
use sluice_core::time::parse_rfc3339_ms;

use crate::digest::DeadLetters;

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

/// A group and a tumbling window size.
type GroupSize = (String, String, i64);

/// The first pass over the aggregates: events per group and tumbling window size.
/// Memory: one counter per (group, size) and no windows, so a table of 200,000 groups
/// costs a few tens of MB here instead of every group's latest windows.
#[derive(Default)]
pub struct GroupCounts {
    events: HashMap<GroupSize, u64>,
}

/// Whether a view is charted: hopping windows overlap (an event is in several), so only
/// tumbling ones are; a view whose start does not parse is skipped.
fn charted(v: &AggregateView) -> Option<i64> {
    match v.slide_seconds {
        Some(_) => None,
        None => parse_rfc3339_ms(&v.window_start),
    }
}

impl GroupCounts {
    pub fn feed(&mut self, v: &AggregateView) {
        if charted(v).is_none() {
            return;
        }
        *self
            .events
            .entry((v.key.clone(), v.metric.clone(), v.window_seconds))
            .or_default() += v.count;
    }

    /// The tumbling window sizes seen, smallest first.
    pub fn window_sizes(&self) -> Vec<i64> {
        let mut sizes: Vec<i64> = self.events.keys().map(|(_, _, s)| *s).collect();
        sizes.sort_unstable();
        sizes.dedup();
        sizes
    }

    /// The `top` groups (key, type, events) with the most events in windows of `size`,
    /// most first (ties: by key and type), and how many groups there are in all.
    pub fn top(&self, size: i64, top: usize) -> (Vec<(String, String, u64)>, usize) {
        let mut all: Vec<(&str, &str, u64)> = self
            .events
            .iter()
            .filter(|((_, _, s), _)| *s == size)
            .map(|((key, metric, _), events)| (key.as_str(), metric.as_str(), *events))
            .collect();
        let groups = all.len();
        let order = |a: &(&str, &str, u64), b: &(&str, &str, u64)| {
            b.2.cmp(&a.2).then_with(|| (a.0, a.1).cmp(&(b.0, b.1)))
        };
        if top < all.len() {
            all.select_nth_unstable_by(top, order);
            all.truncate(top);
        }
        all.sort_unstable_by(order);
        let chosen = all
            .into_iter()
            .map(|(key, metric, events)| (key.to_owned(), metric.to_owned(), events))
            .collect();
        (chosen, groups)
    }
}

/// The second pass: the latest `points` windows of the chosen groups only. Memory: at
/// most `top` × `points` windows, whatever the size of the table.
pub struct Series {
    size: i64,
    points: usize,
    /// The chosen groups, busiest first, with their events counted by the first pass.
    chosen: Vec<(String, String, u64)>,
    /// Index in `chosen` by key, then type (looked up without copying a view's strings).
    index: HashMap<String, Vec<(String, usize)>>,
    windows: Vec<BTreeMap<i64, Point>>,
}

impl Series {
    pub fn new(size: i64, points: usize, chosen: Vec<(String, String, u64)>) -> Self {
        let mut index: HashMap<String, Vec<(String, usize)>> = HashMap::new();
        for (i, (key, metric, _)) in chosen.iter().enumerate() {
            index
                .entry(key.clone())
                .or_default()
                .push((metric.clone(), i));
        }
        Series {
            size,
            points: points.max(1),
            windows: vec![BTreeMap::new(); chosen.len()],
            chosen,
            index,
        }
    }

    pub fn feed(&mut self, v: &AggregateView) {
        if v.window_seconds != self.size {
            return;
        }
        let Some(start_ms) = charted(v) else {
            return;
        };
        let Some(i) = self
            .index
            .get(v.key.as_str())
            .and_then(|types| types.iter().find(|(m, _)| *m == v.metric))
            .map(|(_, i)| *i)
        else {
            return;
        };
        let windows = &mut self.windows[i];
        windows.insert(
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
        if windows.len() > self.points {
            windows.pop_first();
        }
    }

    /// Windows held: at most the chosen groups times `points`.
    #[cfg(test)]
    pub fn windows_held(&self) -> usize {
        self.windows.iter().map(BTreeMap::len).sum()
    }

    /// The chosen groups with their latest windows, oldest first.
    pub fn finish(self) -> Vec<GroupSeries> {
        self.chosen
            .into_iter()
            .zip(self.windows)
            .map(|((key, metric, events), windows)| GroupSeries {
                key,
                metric,
                events,
                points: windows.into_values().collect(),
            })
            .collect()
    }
}

/// The chart part of the overview.
#[derive(Debug, Serialize)]
pub struct Charts {
    /// The window size charted, in seconds (none when there are no aggregates yet).
    pub window_seconds: Option<i64>,
    /// Every tumbling window size there is, smallest first.
    pub window_sizes: Vec<i64>,
    /// Groups with aggregates of the charted size (`busiest` lists the first `top`).
    pub groups: usize,
    pub busiest: Vec<GroupSeries>,
    /// Set when the charts do not cover the whole table (see the text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Aggregate views that can be read more than once: `each(f)` calls `f` with every
/// view, in any order.
pub trait Views {
    fn each(&self, f: &mut dyn FnMut(&AggregateView));
}

impl Views for [AggregateView] {
    fn each(&self, f: &mut dyn FnMut(&AggregateView)) {
        self.iter().for_each(f);
    }
}

/// Charts the `top` busiest groups in windows of `size` (default: the smallest there
/// is) with their latest `points` windows, in two passes over `views`: events per group
/// first, then the windows of the chosen groups only. The answer holds at most `top`
/// groups of `points` windows, and so does the memory beyond one counter per group.
pub fn charts(
    views: &(impl Views + ?Sized),
    size: Option<i64>,
    top: usize,
    points: usize,
) -> Charts {
    let mut counts = GroupCounts::default();
    views.each(&mut |v| counts.feed(v));
    let window_sizes = counts.window_sizes();
    let size = size
        .filter(|s| window_sizes.contains(s))
        .or_else(|| window_sizes.first().copied());
    let Some(size) = size else {
        return Charts {
            window_seconds: None,
            window_sizes,
            groups: 0,
            busiest: Vec::new(),
            note: None,
        };
    };
    let (chosen, groups) = counts.top(size, top);
    drop(counts);
    let mut series = Series::new(size, points, chosen);
    views.each(&mut |v| series.feed(v));
    Charts {
        window_seconds: Some(size),
        window_sizes,
        groups,
        busiest: series.finish(),
        note: None,
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
            columns: Vec::new(),
        }
    }

    #[test]
    fn the_busiest_groups_come_first_with_their_latest_windows_in_order() {
        let mut views: Vec<AggregateView> = [
            ("a", "2026-01-01T00:02:00Z", 1),
            ("b", "2026-01-01T00:00:00Z", 5),
            ("a", "2026-01-01T00:00:00Z", 1),
            ("c", "2026-01-01T00:00:00Z", 2),
            ("a", "2026-01-01T00:01:00Z", 1),
        ]
        .into_iter()
        .map(|(key, start, count)| view(key, 60, start, count))
        .collect();
        // A coarser size and a hopping window are not charted with the 60 s ones.
        views.push(view("z", 3600, "2026-01-01T00:00:00Z", 100));
        let mut hopping = view("y", 60, "2026-01-01T00:00:00Z", 100);
        hopping.slide_seconds = Some(30);
        views.push(hopping);
        let c = charts(&views[..], None, 2, 2);
        assert_eq!(c.window_sizes, vec![60, 3600]);
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
        let views = [
            view("a", 3600, "2026-01-01T00:00:00Z", 4),
            view("a", 60, "2026-01-01T00:00:00Z", 4),
        ];
        assert_eq!(charts(&views[..], Some(7), 5, 10).window_seconds, Some(60));
        assert_eq!(charts(&views[..1], Some(3600), 5, 10).busiest.len(), 1);
        let empty = charts(&[][..], None, 5, 10);
        assert_eq!(empty.window_seconds, None);
        assert!(empty.busiest.is_empty());
    }

    /// 3,000 groups of 8 windows: the answer lists `top` groups of `points` windows
    /// with the count of all groups, and the second pass holds no more windows than
    /// that (one pass over every group's windows once held them all: 440 MB at 200,000).
    #[test]
    fn the_charts_and_their_memory_are_bounded_by_top_and_points() {
        let minute = |m: i64| sluice_core::time::format_rfc3339(1_767_225_600_000 + m * 60_000);
        let views: Vec<AggregateView> = (0..3000u64)
            .flat_map(|g| {
                (0..8).map(move |w| view(&format!("k{g:04}"), 60, &minute(w), 1 + g % 50))
            })
            .collect();
        let c = charts(&views[..], None, 5, 3);
        assert_eq!((c.groups, c.busiest.len()), (3000, 5));
        assert!(c.busiest.iter().all(|g| g.points.len() == 3));
        // The busiest: 49 events a window, eight windows, ties by key.
        let keys: Vec<&str> = c.busiest.iter().map(|g| g.key.as_str()).collect();
        assert_eq!(keys, ["k0049", "k0099", "k0149", "k0199", "k0249"]);
        assert_eq!(c.busiest[0].events, 8 * 50);

        let mut counts = GroupCounts::default();
        views.iter().for_each(|v| counts.feed(v));
        let (chosen, groups) = counts.top(60, 5);
        assert_eq!(groups, 3000);
        let mut series = Series::new(60, 3, chosen);
        views.iter().for_each(|v| series.feed(v));
        assert_eq!(series.windows_held(), 5 * 3);
    }

    #[test]
    fn the_top_groups_are_those_a_full_sort_gives() {
        let mut counts = GroupCounts::default();
        let mut expected = Vec::new();
        for g in 0..200u64 {
            let (key, events) = (format!("k{}", (g * 37) % 200), g % 13);
            counts.feed(&view(&key, 60, "2026-01-01T00:00:00Z", events));
            expected.push((key, "temp".to_owned(), events));
        }
        expected.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1))));
        for top in [0, 1, 7, 199, 200, 500] {
            let (chosen, groups) = counts.top(60, top);
            assert_eq!(groups, 200);
            assert_eq!(chosen, expected[..top.min(200)], "top {top}");
        }
    }
}
