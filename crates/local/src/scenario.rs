//! Synthetic producers for the demo: IoT sensor readings, payment transactions and ad
//! clicks. Deterministic for a seed. Like real feeds they are not clean: a few records
//! are malformed, a few are sent twice by the producer, a few arrive half an hour late, and
//! event times jitter within the allowed lateness.
//!
//! Each feed also carries the anomalies its default rules ([`Scenario::rules`]) look for,
//! at fixed minutes of event time (counted from the first event), so every rule kind
//! fires on a default demo:
//! - iot: rare single readings of 85–95 °C (overheat), and `sensor-001` running 4 °C
//!   hot, 1 °C more each minute, over minutes 8–15 of every half hour (temperature
//!   anomaly);
//! - payments: rare single payments of 6,000–10,000 (large amount), and in minute 7 of
//!   every ten one of the three busiest accounts gets half of all payments, of 150–450
//!   each (spend burst);
//! - clicks: in minute 3 of every five one of the three busiest campaigns gets half of
//!   all clicks (traffic spike).

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

use sluice_core::detect::rules::{Rule, parse_rules};
use sluice_core::ports::Attrs;
use sluice_core::rng::SplitMix64;
use sluice_core::time::format_rfc3339;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Iot,
    Payments,
    Clicks,
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "iot" => Ok(Scenario::Iot),
            "payments" => Ok(Scenario::Payments),
            "clicks" => Ok(Scenario::Clicks),
            other => Err(format!(
                "unknown scenario {other:?}: use iot, payments or clicks"
            )),
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scenario::Iot => "iot",
            Scenario::Payments => "payments",
            Scenario::Clicks => "clicks",
        })
    }
}

/// How dirty the synthetic feed is (probabilities per event).
#[derive(Clone, Debug)]
pub struct Noise {
    pub malformed: f64,
    pub duplicate: f64,
    pub late: f64,
}

impl Default for Noise {
    fn default() -> Self {
        Noise {
            malformed: 0.003,
            duplicate: 0.003,
            late: 0.001,
        }
    }
}

impl Noise {
    pub const CLEAN: Noise = Noise {
        malformed: 0.0,
        duplicate: 0.0,
        late: 0.0,
    };
}

/// `2026-01-01T00:00:00Z`: synthetic event time starts here unless told otherwise.
pub const DEFAULT_START_MS: i64 = 1_767_225_600_000;

impl Scenario {
    fn keys(self) -> usize {
        match self {
            Scenario::Iot => 50,
            Scenario::Payments => 200,
            Scenario::Clicks => 30,
        }
    }

    fn key(self, i: usize) -> String {
        match self {
            Scenario::Iot => format!("sensor-{i:03}"),
            Scenario::Payments => format!("acct-{i:04}"),
            Scenario::Clicks => format!("campaign-{i:02}"),
        }
    }

    /// Milliseconds of event time between consecutive events.
    fn step_ms(self) -> i64 {
        match self {
            Scenario::Iot => 50,
            Scenario::Payments => 100,
            Scenario::Clicks => 60,
        }
    }

    /// Reference rows for the enrich stage: every other key is known.
    pub fn reference(self) -> Vec<(String, Attrs)> {
        (0..self.keys())
            .step_by(2)
            .map(|i| {
                let attrs = match self {
                    Scenario::Iot => Attrs::from([
                        ("site".into(), ["north", "south", "east"][i % 3].into()),
                        ("floor".into(), (i % 5).to_string()),
                    ]),
                    Scenario::Payments => Attrs::from([
                        ("tier".into(), ["basic", "gold", "platinum"][i % 3].into()),
                        ("country".into(), ["DE", "FR", "US", "JP"][i % 4].into()),
                    ]),
                    Scenario::Clicks => {
                        Attrs::from([("advertiser".into(), format!("adv-{}", i % 7))])
                    }
                };
                (self.key(i), attrs)
            })
            .collect()
    }

    /// The demo's detection rules, as JSON lines (the format of `sluice rules put`).
    pub fn rules_text(self) -> &'static str {
        match self {
            Scenario::Iot => concat!(
                r#"{"id":"overheat","type":"temperature","window_seconds":60,"stat":"max","op":">","threshold":80,"severity":"critical","description":"a reading above 80 °C"}"#,
                "\n",
                r#"{"id":"temp-anomaly","kind":"zscore","type":"temperature","window_seconds":60,"stat":"mean","op":">","threshold":4,"min_count":10,"severity":"warning","description":"a minute's mean temperature far above the sensor's recent minutes"}"#,
                "\n",
                r#"{"id":"dry-air","type":"humidity","window_seconds":3600,"stat":"mean","op":"<","threshold":20,"min_count":10}"#,
            ),
            Scenario::Payments => concat!(
                r#"{"id":"large-amount","type":"amount","window_seconds":60,"stat":"max","op":">","threshold":5000,"severity":"critical","description":"one payment above 5,000"}"#,
                "\n",
                r#"{"id":"spend-burst","kind":"rate","type":"amount","window_seconds":60,"stat":"count","op":">=","threshold":3,"min_count":20,"severity":"warning","description":"three times as many payments as the minute before"}"#,
                "\n",
                r#"{"id":"spend-anomaly","kind":"zscore","type":"amount","window_seconds":60,"stat":"sum","op":">","threshold":4,"min_count":10,"severity":"critical","description":"a minute's spend far above the account's recent minutes"}"#,
            ),
            Scenario::Clicks => concat!(
                r#"{"id":"click-flood","type":"click","window_seconds":60,"stat":"count","op":">","threshold":150}"#,
                "\n",
                r#"{"id":"traffic-spike","kind":"rate","type":"click","window_seconds":60,"stat":"count","op":">=","threshold":3,"min_count":30,"severity":"warning","description":"three times the clicks of the minute before"}"#,
                "\n",
                r#"{"id":"traffic-anomaly","kind":"zscore","type":"click","window_seconds":60,"stat":"count","op":">","threshold":4,"history":10,"min_history":3,"min_count":30,"description":"a minute's clicks far above the campaign's recent minutes"}"#,
                "\n",
                r#"{"id":"cost-overrun","type":"cost","window_seconds":3600,"stat":"sum","op":">","threshold":5000}"#,
            ),
        }
    }

    /// The demo's detection rules ([`Scenario::rules_text`], parsed).
    pub fn rules(self) -> Vec<Rule> {
        parse_rules(self.rules_text()).unwrap_or_default()
    }

    /// `events` producer records (one JSON line each), deterministic for `seed`.
    pub fn generate(self, events: usize, seed: u64, start_ms: i64, noise: &Noise) -> Vec<String> {
        self.producer(seed, start_ms, noise.clone())
            .take(events)
            .collect()
    }

    /// An endless producer, deterministic for `seed`: the same lines as
    /// [`Scenario::generate`], one at a time, in memory that does not grow with the
    /// number of lines (a producer duplicate repeats one of the last
    /// [`RECENT_LINES`] lines).
    pub fn producer(self, seed: u64, start_ms: i64, noise: Noise) -> Producer {
        Producer {
            scenario: self,
            rng: SplitMix64::new(seed ^ 0x5EED_0000 ^ self.keys() as u64),
            noise,
            start_ms,
            clock: start_ms,
            n: 0,
            recent: VecDeque::with_capacity(RECENT_LINES),
        }
    }

    /// The line of event number `n` (not a duplicate).
    fn line(
        self,
        rng: &mut SplitMix64,
        n: usize,
        clock: i64,
        start_ms: i64,
        noise: &Noise,
    ) -> String {
        if rng.chance(noise.malformed) {
            return malformed(rng, n);
        }
        let minute = (clock - start_ms).div_euclid(60_000);
        let burst = self.burst_key(minute).filter(|_| rng.chance(0.5));
        let k = burst.unwrap_or_else(|| self.hot_key(rng));
        let key = self.key(k);
        // Jitter within a few seconds (never before the first event: a sliver of a
        // window before the feed starts would look like a collapse of traffic); rarely
        // an event half an hour late.
        let mut ts = (clock - rng.below(5_000) as i64).max(start_ms);
        if clock - start_ms > 600_000 && rng.chance(noise.late) {
            ts -= 1_800_000;
        }
        let (metric, value) = match burst {
            Some(_) => self.burst_reading(rng),
            None => self.reading(rng, k, minute),
        };
        let id = format!("{self}-{n}");
        // Alternate time formats, as mixed producers do.
        let ts_json = if n % 2 == 0 {
            format!("\"{}\"", format_rfc3339(ts))
        } else {
            ts.to_string()
        };
        format!(r#"{{"id":"{id}","key":"{key}","type":"{metric}","ts":{ts_json},"value":{value}}}"#)
    }

    /// Keys are skewed: a few are much busier than the rest, as in real feeds.
    fn hot_key(self, rng: &mut SplitMix64) -> usize {
        let n = self.keys() as u64;
        if rng.chance(0.3) {
            rng.below(3) as usize
        } else {
            rng.below(n) as usize
        }
    }

    /// The key that gets half of all events in this minute of event time (a spend burst,
    /// a traffic spike), if any: one of the three busiest keys, in turn.
    fn burst_key(self, minute: i64) -> Option<usize> {
        let (every, at) = match self {
            Scenario::Iot => return None,
            Scenario::Payments => (10, 7),
            Scenario::Clicks => (5, 3),
        };
        (minute.rem_euclid(every) == at).then_some((minute / every).rem_euclid(3) as usize)
    }

    /// A reading of a burst: a payment of 150–450, or a click (iot has no bursts: its
    /// anomaly is a drift, see [`Scenario::drift`]).
    fn burst_reading(self, rng: &mut SplitMix64) -> (&'static str, String) {
        match self {
            Scenario::Payments => ("amount", round2(150.0 + rng.next_f64() * 300.0)),
            Scenario::Clicks => ("click", "1".into()),
            Scenario::Iot => ("temperature", round2(20.0 + rng.normal())),
        }
    }

    /// How far `sensor-001` runs above its normal temperature in this minute: over
    /// minutes 8–15 of every half hour it fails, 4 °C hot and 1 °C more each minute,
    /// then it is recalibrated.
    fn drift(k: usize, minute: i64) -> f64 {
        let phase = minute.rem_euclid(30);
        if k == 1 && (8..16).contains(&phase) {
            4.0 + (phase - 8) as f64
        } else {
            0.0
        }
    }

    fn reading(self, rng: &mut SplitMix64, k: usize, minute: i64) -> (&'static str, String) {
        match self {
            Scenario::Iot => {
                if rng.chance(0.7) {
                    let spike = rng.chance(0.002);
                    let v = if spike {
                        85.0 + rng.next_f64() * 10.0
                    } else {
                        18.0 + (k % 7) as f64 + 2.0 * rng.normal() + Self::drift(k, minute)
                    };
                    ("temperature", round2(v))
                } else {
                    (
                        "humidity",
                        round2((45.0 + 10.0 * rng.normal()).clamp(0.0, 100.0)),
                    )
                }
            }
            Scenario::Payments => {
                let v = if rng.chance(0.001) {
                    6000.0 + rng.next_f64() * 4000.0
                } else {
                    (rng.normal() * 0.8 + 3.5).exp()
                };
                ("amount", round2(v))
            }
            Scenario::Clicks => {
                if rng.chance(0.8) {
                    ("click", "1".into())
                } else {
                    ("cost", round2(0.05 + rng.next_f64() * 2.0))
                }
            }
        }
    }
}

/// How far back a synthetic producer duplicate may reach: producers resend what they
/// sent recently (a retry), and remembering more would make memory grow with volume.
pub const RECENT_LINES: usize = 4096;

/// A scenario's synthetic producer (see [`Scenario::producer`]).
pub struct Producer {
    scenario: Scenario,
    rng: SplitMix64,
    noise: Noise,
    start_ms: i64,
    clock: i64,
    n: usize,
    /// The last lines produced, newest at the back.
    recent: VecDeque<String>,
}

impl Iterator for Producer {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        let n = self.n;
        self.n += 1;
        self.clock += self.scenario.step_ms();
        let line = if n > 0 && self.rng.chance(self.noise.duplicate) {
            // Which earlier line: drawn over what is remembered, so the first
            // RECENT_LINES lines are what an unbounded memory would have given.
            let back = self.rng.below(self.recent.len() as u64) as usize;
            match self.recent.get(back) {
                Some(earlier) => earlier.clone(),
                None => return None,
            }
        } else {
            self.scenario
                .line(&mut self.rng, n, self.clock, self.start_ms, &self.noise)
        };
        if self.recent.len() == RECENT_LINES {
            self.recent.pop_front();
        }
        self.recent.push_back(line.clone());
        Some(line)
    }
}

fn round2(v: f64) -> String {
    format!("{:.2}", v)
}

fn malformed(rng: &mut SplitMix64, n: usize) -> String {
    match rng.below(5) {
        0 => format!("sensor reading #{n}: garbled"),
        1 => format!(r#"{{"id":"bad-{n}","type":"temperature","ts":1767225600000,"value":1}}"#),
        2 => format!(
            r#"{{"id":"bad-{n}","key":"k","type":"temperature","ts":1767225600000,"value":NaN}}"#
        ),
        3 => format!(
            r#"{{"id":"bad-{n}","key":"k","type":"temperature","ts":"tomorrow","value":1}}"#
        ),
        _ => format!(
            r#"{{"id":"bad-{n}","key":"k","type":"temperature","ts":1767225600000,"value":"21.5"}}"#
        ),
    }
}

/// The partition key a producer would use for a line: its `key` when that is a usable
/// Kinesis partition key, else a stable stand-in so bad lines still spread over shards.
pub fn partition_key_of(line: &str) -> String {
    let key = serde_json::from_str::<KeyOf>(line).ok().and_then(|k| k.0);
    match key {
        Some(k) if !k.is_empty() && k.chars().count() <= 256 => k,
        _ => format!("unkeyed-{}", line.len() % 16),
    }
}

/// The `key` of a JSON object line when it is a string, read without building the
/// object: other fields are only checked for syntax, like a full parse would. As with a
/// parsed `serde_json::Value`, a repeated `key` counts by its last occurrence, and a
/// line that is not a JSON object has none.
struct KeyOf(Option<String>);

impl<'de> serde::Deserialize<'de> for KeyOf {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldIsKey(bool);
        impl<'de> serde::Deserialize<'de> for FieldIsKey {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = FieldIsKey;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a field name")
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<FieldIsKey, E> {
                        Ok(FieldIsKey(s == "key"))
                    }
                }
                d.deserialize_str(V)
            }
        }
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = KeyOf;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<KeyOf, A::Error> {
                let mut key = None;
                while let Some(FieldIsKey(is_key)) = map.next_key()? {
                    if is_key {
                        key = match map.next_value::<serde_json::Value>()? {
                            serde_json::Value::String(s) => Some(s),
                            _ => None,
                        };
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(KeyOf(key))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key read without building the object is the one the full parse finds.
    #[test]
    fn partition_key_reads_like_a_full_parse() {
        let full = |line: &str| {
            let key = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("key").and_then(|k| k.as_str()).map(str::to_owned));
            match key {
                Some(k) if !k.is_empty() && k.chars().count() <= 256 => k,
                _ => format!("unkeyed-{}", line.len() % 16),
            }
        };
        for line in [
            r#"{"key":"a","value":1}"#,
            r#"{"id":"x","key":"b\u00e9","attrs":{"key":"inner"}}"#,
            r#"{"key":"a","key":"b"}"#,
            r#"{"key":7}"#,
            r#"{"key":null}"#,
            r#"{"k\u0065y":"escaped-name"}"#,
            r#"["key","a"]"#,
            r#"{"key":"a","value":NaN}"#,
            r#"{"key":"a"} trailing"#,
            r#"{"key":"a""#,
            "",
            "garbage",
            r#"{"nested":[[[{"key":"deep"}]]]}"#,
        ] {
            assert_eq!(partition_key_of(line), full(line), "{line}");
        }
    }

    #[test]
    fn generation_is_deterministic_and_sized() {
        let a = Scenario::Iot.generate(1000, 7, DEFAULT_START_MS, &Noise::default());
        let b = Scenario::Iot.generate(1000, 7, DEFAULT_START_MS, &Noise::default());
        let c = Scenario::Iot.generate(1000, 8, DEFAULT_START_MS, &Noise::default());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 1000);
        for s in [Scenario::Iot, Scenario::Payments, Scenario::Clicks] {
            assert!(!s.rules().is_empty(), "{s}");
            let clean = s.generate(200, 1, DEFAULT_START_MS, &Noise::CLEAN);
            assert!(
                clean
                    .iter()
                    .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
            );
        }
    }

    #[test]
    fn partition_keys_fall_back_for_unusable_keys() {
        assert_eq!(partition_key_of(r#"{"key":"a"}"#), "a");
        assert!(partition_key_of("garbage").starts_with("unkeyed-"));
        assert!(
            partition_key_of(&format!(r#"{{"key":"{}"}}"#, "x".repeat(300)))
                .starts_with("unkeyed-")
        );
    }

    #[test]
    fn the_producer_remembers_a_bounded_number_of_lines_and_still_duplicates() {
        let noise = Noise {
            duplicate: 0.05,
            ..Noise::default()
        };
        let mut producer = Scenario::Clicks.producer(3, DEFAULT_START_MS, noise.clone());
        let lines: Vec<String> = producer.by_ref().take(3 * RECENT_LINES).collect();
        assert_eq!(producer.recent.len(), RECENT_LINES);
        let distinct: std::collections::HashSet<&String> = lines.iter().collect();
        assert!(distinct.len() < lines.len(), "some lines were sent twice");
        assert_eq!(
            lines[..100],
            Scenario::Clicks.generate(100, 3, DEFAULT_START_MS, &noise)[..]
        );
    }

    /// Per (key, type, minute from the start): (count, sum) of a clean feed.
    fn minutes(
        s: Scenario,
        events: usize,
    ) -> std::collections::HashMap<(String, String, i64), (u64, f64)> {
        let mut out = std::collections::HashMap::new();
        for line in s.generate(events, 1, DEFAULT_START_MS, &Noise::CLEAN) {
            let v: serde_json::Value = serde_json::from_str(&line).expect("json");
            let ts = v["ts"].as_i64().unwrap_or_else(|| {
                sluice_core::time::parse_time_arg(v["ts"].as_str().expect("ts")).expect("time")
            });
            let e = out
                .entry((
                    v["key"].as_str().expect("key").to_owned(),
                    v["type"].as_str().expect("type").to_owned(),
                    (ts - DEFAULT_START_MS).div_euclid(60_000),
                ))
                .or_insert((0, 0.0));
            e.0 += 1;
            e.1 += v["value"].as_f64().expect("value");
        }
        out
    }

    #[test]
    fn every_scenario_has_rules_of_several_kinds_and_the_anomalies_they_look_for() {
        for s in [Scenario::Iot, Scenario::Payments, Scenario::Clicks] {
            let rules = s.rules();
            assert_eq!(
                rules.len(),
                s.rules_text().lines().count(),
                "{s}: all parse"
            );
            let kinds: std::collections::HashSet<_> = rules.iter().map(|r| r.kind).collect();
            assert!(kinds.len() >= 2, "{s}: {kinds:?}");
        }
        let count = |m: &std::collections::HashMap<_, (u64, f64)>, k: &str, t: &str, min: i64| {
            m.get(&(k.to_owned(), t.to_owned(), min))
                .copied()
                .unwrap_or((0, 0.0))
        };
        // Payments: minute 7 of every ten, one busy account gets half of all payments.
        let pay = minutes(Scenario::Payments, 20_000);
        for (key, minute) in [("acct-0000", 7), ("acct-0001", 17)] {
            let (burst, before) = (
                count(&pay, key, "amount", minute),
                count(&pay, key, "amount", minute - 1),
            );
            assert!(
                burst.0 >= 4 * before.0 && before.0 > 20,
                "{key}: {burst:?} vs {before:?}"
            );
        }
        // Clicks: minute 3 of every five, one busy campaign gets half of all clicks.
        let clicks = minutes(Scenario::Clicks, 20_000);
        for (key, minute) in [("campaign-00", 3), ("campaign-01", 8), ("campaign-02", 13)] {
            let (burst, before) = (
                count(&clicks, key, "click", minute),
                count(&clicks, key, "click", minute - 1),
            );
            assert!(
                burst.0 >= 4 * before.0 && before.0 > 30,
                "{key}: {burst:?} vs {before:?}"
            );
        }
        // IoT: sensor-001 runs hot over minutes 8-15.
        let iot = minutes(Scenario::Iot, 20_000);
        let mean = |m: i64| {
            let (n, sum) = count(&iot, "sensor-001", "temperature", m);
            sum / n as f64
        };
        assert!(mean(8) > mean(7) + 3.0, "{} vs {}", mean(8), mean(7));
        assert!(
            mean(16) < mean(15) - 8.0,
            "recalibrated: {} vs {}",
            mean(16),
            mean(15)
        );
    }
}
