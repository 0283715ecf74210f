//! A mergeable heavy-hitters summary (Misra–Gries, merged as Agarwal et al., "Mergeable
//! Summaries", PODS 2012), the state `APPROX_TOP_K` is to keep (issue 18).
//!
//! Not wired into SQL views yet: this module is the summary alone, with its guarantee
//! tested; the aggregate kind, its stored form in view items and the checks against
//! exact counts come with the function.
//!
//! With `m` counters over `n` values, whatever the order they arrive in and however the
//! summaries were merged:
//! - every value counted more than `n / (m + 1)` times has a counter;
//! - a counter never exceeds its value's true count, and falls short of it by at most
//!   `n / (m + 1)`.
//!
//! Values are texts (a SQL value's canonical JSON, so `1` and `"1"` stay apart).
//! Counters are kept in value order, so the stored form and every answer are the same
//! for the same counters.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The most counters a summary may keep (`APPROX_TOP_K`'s k is at most 100).
pub const MAX_CAPACITY: usize = 10_000;

/// The summary of a multiset of texts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StoredHeavyHitters")]
pub struct HeavyHitters {
    /// `m`: the most counters kept.
    #[serde(rename = "m")]
    capacity: usize,
    /// `n`: the values summarized.
    #[serde(rename = "n")]
    seen: u64,
    #[serde(rename = "c")]
    counters: BTreeMap<String, u64>,
}

/// A summary as read back, checked before use: a capacity within [`MAX_CAPACITY`], no
/// more counters than it, none zero, and counters that add up to no more than the
/// values summarized (each counter is at most its value's count).
#[derive(Deserialize)]
struct StoredHeavyHitters {
    #[serde(rename = "m")]
    capacity: usize,
    #[serde(rename = "n")]
    seen: u64,
    #[serde(rename = "c")]
    counters: BTreeMap<String, u64>,
}

impl TryFrom<StoredHeavyHitters> for HeavyHitters {
    type Error = String;
    fn try_from(s: StoredHeavyHitters) -> Result<Self, String> {
        let total = s
            .counters
            .values()
            .try_fold(0u64, |sum, c| sum.checked_add(*c));
        if s.capacity == 0 || s.capacity > MAX_CAPACITY {
            return Err(format!("{} counters: from 1 to {MAX_CAPACITY}", s.capacity));
        }
        if s.counters.len() > s.capacity || s.counters.values().any(|c| *c == 0) {
            return Err(format!(
                "{} counters for a capacity of {}, or a zero counter",
                s.counters.len(),
                s.capacity
            ));
        }
        if total.is_none_or(|t| t > s.seen) {
            return Err(format!(
                "counters adding up to more than the {} values",
                s.seen
            ));
        }
        Ok(HeavyHitters {
            capacity: s.capacity,
            seen: s.seen,
            counters: s.counters,
        })
    }
}

impl HeavyHitters {
    /// An empty summary of at most `capacity` counters (at least one).
    pub fn new(capacity: usize) -> Self {
        HeavyHitters {
            capacity: capacity.clamp(1, MAX_CAPACITY),
            seen: 0,
            counters: BTreeMap::new(),
        }
    }

    /// How many values it summarizes.
    pub fn count(&self) -> u64 {
        self.seen
    }

    /// The most a counter falls short of its value's true count: `⌊n / (m + 1)⌋`.
    pub fn max_error(&self) -> u64 {
        self.seen / (self.capacity as u64 + 1)
    }

    /// Adds one value.
    pub fn add(&mut self, value: &str) {
        self.seen += 1;
        if let Some(c) = self.counters.get_mut(value) {
            *c += 1;
        } else if self.counters.len() < self.capacity {
            self.counters.insert(value.to_owned(), 1);
        } else {
            // The new value and every counter each lose one: m + 1 distinct values
            // forgotten once. This happens at most n / (m + 1) times, so adding stays
            // O(1) amortized.
            self.counters.retain(|_, c| {
                *c -= 1;
                *c > 0
            });
        }
    }

    /// Adds every value `other` summarizes: the guarantee holds for both together.
    /// `other`'s capacity is this one's (the same aggregate's); a smaller one would
    /// carry a larger error into the result.
    pub fn merge(&mut self, other: &HeavyHitters) {
        self.seen += other.seen;
        for (value, c) in &other.counters {
            *self.counters.entry(value.clone()).or_insert(0) += c;
        }
        if self.counters.len() > self.capacity {
            // Take the (m + 1)-th largest count off every counter.
            let mut counts: Vec<u64> = self.counters.values().copied().collect();
            counts.sort_unstable_by(|a, b| b.cmp(a));
            let cut = counts[self.capacity];
            self.counters.retain(|_, c| {
                *c = c.saturating_sub(cut);
                *c > 0
            });
        }
    }

    /// The `k` values with the largest counters, largest first (ties in value order),
    /// with their counters.
    pub fn top(&self, k: usize) -> Vec<(&str, u64)> {
        let mut all: Vec<(&str, u64)> = self
            .counters
            .iter()
            .map(|(v, c)| (v.as_str(), *c))
            .collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        all.truncate(k);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn summary_of(values: &[String], m: usize) -> HeavyHitters {
        let mut s = HeavyHitters::new(m);
        for v in values {
            s.add(v);
        }
        s
    }

    fn truth(values: &[String]) -> HashMap<&str, u64> {
        let mut t = HashMap::new();
        for v in values {
            *t.entry(v.as_str()).or_insert(0) += 1;
        }
        t
    }

    /// The documented guarantee, for every value in `values`.
    fn holds(s: &HeavyHitters, values: &[String]) -> Result<(), TestCaseError> {
        prop_assert_eq!(s.count(), values.len() as u64);
        let bound = values.len() as u64 / (s.capacity as u64 + 1);
        prop_assert_eq!(s.max_error(), bound);
        prop_assert!(s.counters.len() <= s.capacity);
        for (value, f) in truth(values) {
            let got = s.counters.get(value).copied().unwrap_or(0);
            prop_assert!(got <= f, "{}: {} > true {}", value, got, f);
            prop_assert!(
                got + bound >= f,
                "{}: {} + {} < true {}",
                value,
                got,
                bound,
                f
            );
            if f > bound {
                prop_assert!(got > 0, "{} (count {} > {}) missing", value, f, bound);
            }
        }
        Ok(())
    }

    /// Skewed texts: a few hot values and a long tail.
    fn values() -> impl Strategy<Value = Vec<String>> {
        let one = prop_oneof![
            4 => (0u32..3).prop_map(|i| format!("hot-{i}")),
            3 => (0u32..40).prop_map(|i| format!("warm-{i}")),
            3 => (0u32..100_000).prop_map(|i| format!("tail-{i}")),
        ];
        prop::collection::vec(one, 0..600)
    }

    proptest! {
        #[test]
        fn counts_are_within_the_bound_and_heavy_values_are_there(values in values(), m in 1usize..24) {
            holds(&summary_of(&values, m), &values)?;
        }

        #[test]
        fn merged_summaries_keep_the_bound(a in values(), b in values(), c in values(), m in 1usize..24) {
            let mut merged = summary_of(&a, m);
            merged.merge(&summary_of(&b, m));
            merged.merge(&summary_of(&c, m));
            let all: Vec<String> = a.iter().chain(&b).chain(&c).cloned().collect();
            holds(&merged, &all)?;
        }

        #[test]
        fn a_summary_reads_back_as_written(values in values(), m in 1usize..24) {
            let s = summary_of(&values, m);
            let text = serde_json::to_string(&s).expect("writes");
            let back: HeavyHitters = serde_json::from_str(&text).expect("reads");
            prop_assert_eq!(back, s);
        }
    }

    /// A stored form out of what a summary can hold is refused when read, not used.
    #[test]
    fn impossible_stored_summaries_are_refused() {
        let ok: HeavyHitters =
            serde_json::from_str(r#"{"m":2,"n":5,"c":{"a":3,"b":1}}"#).expect("reads");
        assert_eq!(ok.top(1), [("a", 3)]);
        for bad in [
            r#"{"m":0,"n":0,"c":{}}"#,
            r#"{"m":10001,"n":0,"c":{}}"#,
            r#"{"m":1,"n":5,"c":{"a":1,"b":1}}"#,
            r#"{"m":2,"n":5,"c":{"a":0}}"#,
            r#"{"m":2,"n":3,"c":{"a":3,"b":1}}"#,
            r#"{"m":2,"n":5,"c":{"a":18446744073709551615,"b":1}}"#,
        ] {
            assert!(serde_json::from_str::<HeavyHitters>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_top_values_come_largest_first_ties_in_value_order() {
        let values: Vec<String> = ["b", "a", "c", "a", "b", "d", "a"]
            .into_iter()
            .map(String::from)
            .collect();
        let s = summary_of(&values, 10);
        assert_eq!(s.top(3), [("a", 3), ("b", 2), ("c", 1)]);
        assert_eq!(s.top(10).len(), 4);
        assert_eq!(s.max_error(), 0, "fewer values than counters: exact");
        // One counter: only a value holding more than half of them is sure to stay.
        let s = summary_of(&values, 1);
        assert_eq!(s.max_error(), 3);
        assert!(s.top(1).iter().all(|(_, c)| *c <= 3));
    }
}
