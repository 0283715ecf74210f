//! Event-time windows. A window start is the timestamp minus its remainder by the
//! slide (Euclidean, so negative times work), in UTC; nothing reads the clock.
//!
//! A [`WindowSet`] has one *anchor*: its finest tumbling window. Every other window's
//! size and slide are multiples of the anchor's size, so each anchor window lies wholly
//! inside the same set of coarser windows. The aggregate stage relies on that: the
//! anchor item carries the de-duplication state for all windows its events feed.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WindowSpec {
    pub size_ms: i64,
    pub slide_ms: i64,
}

impl WindowSpec {
    pub fn tumbling(size_secs: i64) -> Self {
        WindowSpec {
            size_ms: size_secs * 1000,
            slide_ms: size_secs * 1000,
        }
    }

    pub fn hopping(size_secs: i64, slide_secs: i64) -> Self {
        WindowSpec {
            size_ms: size_secs * 1000,
            slide_ms: slide_secs * 1000,
        }
    }

    pub fn is_tumbling(&self) -> bool {
        self.size_ms == self.slide_ms
    }

    pub fn size_secs(&self) -> i64 {
        self.size_ms / 1000
    }

    pub fn slide_secs(&self) -> i64 {
        self.slide_ms / 1000
    }

    /// The latest window start at or before `ts`.
    pub fn latest_start(&self, ts: i64) -> i64 {
        ts - ts.rem_euclid(self.slide_ms)
    }

    /// Starts of every window of this spec containing `ts`, latest first.
    /// A tumbling window yields exactly one.
    pub fn starts_containing(&self, ts: i64) -> impl Iterator<Item = i64> + '_ {
        let latest = self.latest_start(ts);
        let count = (self.size_ms + self.slide_ms - 1) / self.slide_ms;
        (0..count)
            .map(move |i| latest - i * self.slide_ms)
            .filter(move |start| ts < start + self.size_ms)
    }

    /// How many windows of this spec contain any instant (`size / slide`).
    pub fn windows_per_event(&self) -> i64 {
        self.size_ms / self.slide_ms
    }

    /// Storage label: `60` for tumbling, `3600/600` for hopping (seconds).
    pub fn label(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for WindowSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_tumbling() {
            write!(f, "{}", self.size_secs())
        } else {
            write!(f, "{}/{}", self.size_secs(), self.slide_secs())
        }
    }
}

impl FromStr for WindowSpec {
    type Err = String;

    /// `60` (tumbling, seconds) or `3600/600` (hopping: size/slide, seconds).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parse = |p: &str| -> Result<i64, String> {
            let n: i64 = p
                .trim()
                .parse()
                .map_err(|_| format!("{p:?} is not a whole number of seconds"))?;
            if !(1..=31 * 86_400).contains(&n) {
                return Err(format!("{n} s is outside 1 s..31 days"));
            }
            Ok(n)
        };
        match s.split_once('/') {
            None => Ok(WindowSpec::tumbling(parse(s)?)),
            Some((size, slide)) => {
                let (size, slide) = (parse(size)?, parse(slide)?);
                if slide > size || size % slide != 0 {
                    return Err(format!(
                        "hopping window {size}/{slide}: the slide must divide the size"
                    ));
                }
                Ok(WindowSpec::hopping(size, slide))
            }
        }
    }
}

/// At most this many window definitions in `WINDOWS`.
pub const MAX_WINDOW_DEFINITIONS: usize = 8;

/// At most this many windows one event falls in, over all definitions: a tumbling
/// window counts 1, a hopping window `size/slide`. One event's anchor item, the coarser
/// items it feeds, its sealed fingerprint pages (at most
/// [`crate::state::idempotency::MAX_SEALED_PAGES_PER_WRITE`]) and its group's watermark are
/// written in one `TransactWriteItems`, which DynamoDB caps at 100 actions; this cap
/// keeps that within reach with room to spare (64 + 6 + 1 = 71).
pub const MAX_WINDOWS_PER_EVENT: i64 = 64;

/// The windows one deployment aggregates into, anchor first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowSet {
    specs: Vec<WindowSpec>,
}

impl WindowSet {
    pub fn new(mut specs: Vec<WindowSpec>) -> Result<Self, String> {
        specs.sort();
        specs.dedup();
        if specs.len() > MAX_WINDOW_DEFINITIONS {
            return Err(format!(
                "{} window definitions; at most {MAX_WINDOW_DEFINITIONS} are allowed",
                specs.len()
            ));
        }
        let per_event: i64 = specs.iter().map(WindowSpec::windows_per_event).sum();
        if per_event > MAX_WINDOWS_PER_EVENT {
            return Err(format!(
                "an event would fall in {per_event} windows; at most {MAX_WINDOWS_PER_EVENT} \
                 are allowed (a tumbling window counts 1, a hopping window its size/slide)"
            ));
        }
        let anchor = *specs
            .iter()
            .find(|s| s.is_tumbling())
            .ok_or("at least one tumbling window is needed")?;
        for s in &specs {
            if s.size_ms % anchor.size_ms != 0 || s.slide_ms % anchor.size_ms != 0 {
                return Err(format!(
                    "window {s} is not a multiple of the finest tumbling window {anchor}"
                ));
            }
        }
        specs.retain(|s| *s != anchor);
        specs.insert(0, anchor);
        Ok(WindowSet { specs })
    }

    /// Parses `60,3600,3600/600`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let specs = s
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| p.trim().parse())
            .collect::<Result<Vec<WindowSpec>, String>>()?;
        Self::new(specs)
    }

    pub fn anchor(&self) -> WindowSpec {
        self.specs[0]
    }

    /// Every window other than the anchor.
    pub fn coarser(&self) -> &[WindowSpec] {
        &self.specs[1..]
    }

    pub fn all(&self) -> &[WindowSpec] {
        &self.specs
    }

    /// `(spec, start)` for every non-anchor window that contains `ts`.
    pub fn coarser_windows_of(&self, ts: i64) -> impl Iterator<Item = (WindowSpec, i64)> + '_ {
        self.coarser()
            .iter()
            .flat_map(move |spec| spec.starts_containing(ts).map(move |start| (*spec, start)))
    }
}

impl Default for WindowSet {
    fn default() -> Self {
        WindowSet {
            specs: vec![WindowSpec::tumbling(60), WindowSpec::tumbling(3600)],
        }
    }
}

impl fmt::Display for WindowSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let labels: Vec<String> = self.specs.iter().map(WindowSpec::label).collect();
        f.write_str(&labels.join(","))
    }
}

impl FromStr for WindowSet {
    /// Why the value is invalid; the configuration loader wraps it in an error naming
    /// the variable (`WINDOWS`) and the value.
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WindowSet::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn tumbling_start_is_ts_minus_remainder() {
        let w = WindowSpec::tumbling(60);
        assert_eq!(
            w.latest_start(1_767_225_660_000),
            1_767_225_660_000,
            "exactly on a boundary"
        );
        assert_eq!(
            w.latest_start(1_767_225_659_999),
            1_767_225_600_000,
            "one ms before"
        );
        assert_eq!(w.latest_start(0), 0, "epoch");
        assert_eq!(w.latest_start(-1), -60_000, "negative times round down");
        assert_eq!(w.latest_start(-60_000), -60_000);
        assert_eq!(w.starts_containing(59_999).collect::<Vec<_>>(), vec![0]);
    }

    #[test]
    fn hour_and_day_windows_cross_midnight() {
        let hour = WindowSpec::tumbling(3600);
        let day = WindowSpec::tumbling(86_400);
        let just_before_midnight = 20 * DAY - 1;
        assert_eq!(day.latest_start(just_before_midnight), 19 * DAY);
        assert_eq!(day.latest_start(just_before_midnight + 1), 20 * DAY);
        assert_eq!(
            hour.latest_start(just_before_midnight),
            20 * DAY - 3_600_000
        );
    }

    #[test]
    fn hopping_windows_cover_ts_size_over_slide_times() {
        let w = WindowSpec::hopping(3600, 600);
        let ts = 3 * 3_600_000 + 5 * 60_000; // 03:05
        let starts: Vec<i64> = w.starts_containing(ts).collect();
        assert_eq!(starts.len(), 6);
        assert_eq!(starts[0], 3 * 3_600_000);
        assert_eq!(starts[5], 2 * 3_600_000 + 10 * 60_000);
        for s in starts {
            assert!(s <= ts && ts < s + 3_600_000);
        }
        let on_edge = 3 * 3_600_000;
        assert!(
            w.starts_containing(on_edge)
                .all(|s| s <= on_edge && on_edge < s + 3_600_000)
        );
        assert_eq!(w.starts_containing(on_edge).count(), 6);
    }

    proptest::proptest! {
        #[test]
        fn every_assigned_window_contains_ts_and_none_is_missed(
            ts in -10_000_000_000_000i64..10_000_000_000_000,
            size in 1i64..7200,
            divisor in 1i64..12,
        ) {
            let slide = (size / divisor).max(1);
            let size = slide * divisor;
            let spec = WindowSpec::hopping(size, slide);
            let starts: Vec<i64> = spec.starts_containing(ts).collect();
            proptest::prop_assert_eq!(starts.len() as i64, divisor, "size/slide windows contain any instant");
            for s in &starts {
                proptest::prop_assert!(*s <= ts && ts < s + spec.size_ms);
                proptest::prop_assert_eq!(s.rem_euclid(spec.slide_ms), 0);
            }
            let tumbling = WindowSpec::tumbling(size);
            let start = tumbling.latest_start(ts);
            proptest::prop_assert!(start <= ts && ts < start + tumbling.size_ms);
            proptest::prop_assert_eq!(start.rem_euclid(tumbling.size_ms), 0);
        }
    }

    #[test]
    fn window_set_parses_and_orders_the_anchor_first() {
        let set = WindowSet::parse("3600, 60,3600/600").expect("valid");
        assert_eq!(set.anchor(), WindowSpec::tumbling(60));
        assert_eq!(set.to_string(), "60,3600/600,3600");
        assert_eq!(set.coarser_windows_of(90_000).count(), 1 + 6);
        assert!(
            WindowSet::parse("90,60").is_err(),
            "90 is not a multiple of 60"
        );
        assert!(WindowSet::parse("3600/600").is_err(), "no tumbling window");
        assert!(
            WindowSet::parse("3600/700").is_err(),
            "slide must divide size"
        );
        assert!(WindowSet::parse("0").is_err());
        assert!(
            WindowSet::parse("60,3600/60,86400").is_ok(),
            "1 + 60 + 1 = 62 windows per event is within the cap"
        );
        assert_eq!(
            WindowSet::default(),
            WindowSet::parse("60,3600").expect("valid")
        );
    }

    #[test]
    fn window_set_caps_definitions_and_windows_per_event() {
        let nine = "60,120,180,240,300,360,420,480,540";
        let err = WindowSet::parse(nine).expect_err("nine definitions");
        assert!(err.contains("9 window definitions"), "{err}");
        let eight = "60,120,180,240,300,360,420,480";
        assert!(WindowSet::parse(eight).is_ok());
        let err = WindowSet::parse("60,86400/60").expect_err("1440 panes");
        assert!(err.contains("1441 windows"), "{err}");
        let env = |k: &str| (k == "WINDOWS").then(|| "60,3600/60,7200/600".to_owned());
        let err = crate::config::AggregateConfig::from_reader(&crate::config::EnvReader::new(env))
            .expect_err("1 + 60 + 12 = 73 windows per event");
        let msg = err.to_string();
        assert_eq!(
            msg,
            "configuration WINDOWS=\"60,3600/60,7200/600\" is invalid: an event would fall in \
             73 windows; at most 64 are allowed (a tumbling window counts 1, a hopping \
             window its size/slide)"
        );
        assert!(!err.is_retryable());
    }
}
