//! A mergeable relative-error quantile sketch (DDSketch: Masson, Rim and Lee, VLDB
//! 2019), the state `APPROX_PERCENTILE` is to keep (issue 18).
//!
//! `APPROX_PERCENTILE` of a SQL view keeps one per (group, window) in its item
//! (`crates/core/src/sql/aggregate`), as its JSON form, at most [`MAX_JSON_BYTES`].
//!
//! A value `x > 0` falls in bucket `k = ⌈log_γ x⌉` (γ = (1 + α) / (1 − α)), which holds
//! the values in `(γ^(k−1), γ^k]`; the bucket answers `2γ^k / (γ + 1)`, within `α` of
//! every value in it relatively. Negative values have buckets of their own by
//! magnitude, zeros a count. Counting buckets in order finds the bucket of the value at
//! any rank exactly, so the answer for a quantile is within `α` (relative) of the exact
//! value at that rank, whatever the data, as long as no bucket was collapsed (below).
//!
//! Memory is bounded: each sign keeps at most [`MAX_BUCKETS`] consecutive buckets.
//! When a sign's values span more than that (a ratio of about 6·10^17 between its
//! largest and smallest magnitude at α = 1%), the buckets of its smallest magnitudes
//! are merged into the lowest kept one, and the guarantee no longer holds for ranks
//! that fall in them. The result does not depend on the order values and sketches
//! arrive in: merging sketches gives the sketch of all their values.

use serde::{Deserialize, Serialize};

/// α: the relative error of every answer.
pub const RELATIVE_ACCURACY: f64 = 0.01;
/// The most buckets each sign keeps.
pub const MAX_BUCKETS: usize = 2048;
/// The most bytes the JSON form of a sketch takes (`{"p":{"o":-5,"c":[1,0,2]},"z":1}`):
/// both signs at [`MAX_BUCKETS`] buckets of 20-digit counts, about 86 KB. A sketch over
/// values within six orders of magnitude with counts below a million takes under 5 KB.
pub const MAX_JSON_BYTES: usize =
    r#"{"p":{"o":,"c":[]},"n":{"o":,"c":[]},"z":}"#.len() + 2 * (11 + MAX_BUCKETS * 21) + 20;

/// γ = (1 + α) / (1 − α), and its natural logarithm.
fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

/// The bucket of a magnitude `x > 0`.
fn key_of(x: f64) -> i32 {
    // Magnitudes of finite doubles lie within γ^±37,300: the key fits an i32.
    (x.ln() / gamma().ln()).ceil() as i32
}

/// What bucket `k` answers: the same relative distance from both of its bounds.
fn value_of(k: i32) -> f64 {
    let g = gamma();
    2.0 * g.powi(k) / (g + 1.0)
}

/// Why a value cannot be added.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
#[error("{0} is not a finite number: a quantile sketch holds finite values only")]
pub struct NotFinite(pub f64);

/// Consecutive buckets of one sign: `counts[i]` is bucket `offset + i`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StoredBuckets")]
struct Buckets {
    #[serde(rename = "o")]
    offset: i32,
    #[serde(rename = "c")]
    counts: Vec<u64>,
}

/// Buckets as read back, checked before use: at most [`MAX_BUCKETS`] of them, all
/// within the keys finite doubles have (so key arithmetic cannot overflow).
#[derive(Deserialize)]
struct StoredBuckets {
    #[serde(rename = "o")]
    offset: i32,
    #[serde(rename = "c")]
    counts: Vec<u64>,
}

/// The keys of finite doubles' magnitudes lie within ±37,300; this leaves room.
const MAX_KEY: i32 = 1 << 20;

impl TryFrom<StoredBuckets> for Buckets {
    type Error = String;
    fn try_from(b: StoredBuckets) -> Result<Self, String> {
        let last = i64::from(b.offset) + b.counts.len() as i64;
        if b.counts.len() > MAX_BUCKETS || b.offset < -MAX_KEY || last > i64::from(MAX_KEY) {
            return Err(format!(
                "{} buckets from key {}: at most {MAX_BUCKETS}, keys within ±{MAX_KEY}",
                b.counts.len(),
                b.offset
            ));
        }
        Ok(Buckets {
            offset: b.offset,
            counts: b.counts,
        })
    }
}

impl Buckets {
    fn add(&mut self, key: i32, n: u64) {
        if self.counts.is_empty() {
            self.offset = key;
            self.counts.push(n);
            return;
        }
        let last = self.offset + self.counts.len() as i32 - 1;
        if key > last {
            self.counts
                .resize(self.counts.len() + (key - last) as usize, 0);
        } else if key < self.offset {
            let grow = (self.offset - key) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = key;
        }
        self.counts[(key - self.offset) as usize] += n;
        self.collapse();
    }

    /// Keeps the [`MAX_BUCKETS`] highest buckets, the lower ones merged into the
    /// lowest kept.
    fn collapse(&mut self) {
        if self.counts.len() <= MAX_BUCKETS {
            return;
        }
        let extra = self.counts.len() - MAX_BUCKETS;
        let merged: u64 = self.counts.drain(..extra).sum();
        self.counts[0] += merged;
        self.offset += extra as i32;
    }

    fn merge(&mut self, other: &Buckets) {
        for (i, &n) in other.counts.iter().enumerate() {
            if n > 0 {
                self.add(other.offset + i as i32, n);
            }
        }
    }

    /// (key, count) of the non-empty buckets, lowest key first.
    fn iter(&self) -> impl DoubleEndedIterator<Item = (i32, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, &n)| (self.offset + i as i32, n))
    }
}

/// The sketch of a multiset of finite doubles.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantileSketch {
    #[serde(rename = "p", default, skip_serializing_if = "is_empty")]
    positive: Buckets,
    #[serde(rename = "n", default, skip_serializing_if = "is_empty")]
    negative: Buckets,
    #[serde(rename = "z", default)]
    zeros: u64,
}

fn is_empty(b: &Buckets) -> bool {
    b.counts.is_empty()
}

impl QuantileSketch {
    /// Adds one value (zero and minus zero alike).
    pub fn add(&mut self, x: f64) -> Result<(), NotFinite> {
        if !x.is_finite() {
            return Err(NotFinite(x));
        }
        if x > 0.0 {
            self.positive.add(key_of(x), 1);
        } else if x < 0.0 {
            self.negative.add(key_of(-x), 1);
        } else {
            self.zeros += 1;
        }
        Ok(())
    }

    /// Adds every value of `other`: the result is the sketch of both multisets.
    pub fn merge(&mut self, other: &QuantileSketch) {
        self.positive.merge(&other.positive);
        self.negative.merge(&other.negative);
        self.zeros += other.zeros;
    }

    /// How many values it holds.
    pub fn count(&self) -> u64 {
        let sum = |b: &Buckets| b.counts.iter().sum::<u64>();
        sum(&self.positive) + sum(&self.negative) + self.zeros
    }

    /// The value at quantile `q` ∈ [0, 1]: within [`RELATIVE_ACCURACY`] (relative) of
    /// the lower nearest-rank value, the value of 0-based rank `⌊q · (n − 1)⌋` in sorted
    /// order (numpy's `method="lower"`); `None` when the sketch is empty or `q` is
    /// outside [0, 1].
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = (q * (n - 1) as f64).floor() as u64;
        let mut seen = 0u64;
        // Most negative first: the negative buckets from the largest magnitude down.
        for (key, count) in self.negative.iter().rev() {
            seen += count;
            if seen > rank {
                return Some(-value_of(key));
            }
        }
        seen += self.zeros;
        if seen > rank {
            return Some(0.0);
        }
        for (key, count) in self.positive.iter() {
            seen += count;
            if seen > rank {
                return Some(value_of(key));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sketch_of(values: &[f64]) -> QuantileSketch {
        let mut s = QuantileSketch::default();
        for &x in values {
            s.add(x).expect("finite");
        }
        s
    }

    /// The exact lower nearest-rank value.
    fn exact(values: &[f64], q: f64) -> f64 {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
    }

    fn within(estimate: f64, exact: f64) -> bool {
        (estimate - exact).abs() <= RELATIVE_ACCURACY * exact.abs() * (1.0 + 1e-12)
    }

    /// Uniform, skewed over 13 orders of magnitude, signed, with zeros: each sign's
    /// magnitudes within the span the buckets keep whole.
    fn values() -> impl Strategy<Value = Vec<f64>> {
        let one = prop_oneof![
            1e-3..1e6f64,
            -1e6..-1e-3f64,
            (-15.0..15.0f64).prop_map(f64::exp),
            (-15.0..15.0f64).prop_map(|e| -e.exp()),
            Just(0.0),
            Just(-0.0),
            (1u32..5).prop_map(f64::from),
        ];
        prop::collection::vec(one, 1..400)
    }

    proptest! {
        #[test]
        fn every_quantile_is_within_the_relative_accuracy(values in values(), q in 0.0..=1.0f64) {
            let s = sketch_of(&values);
            prop_assert_eq!(s.count(), values.len() as u64);
            let estimate = s.quantile(q).expect("not empty");
            let exact = exact(&values, q);
            prop_assert!(within(estimate, exact), "q {}: {} against {}", q, estimate, exact);
        }

        /// Merging sketches gives the sketch of all their values, in any order.
        #[test]
        fn merging_is_the_sketch_of_the_union(a in values(), b in values()) {
            let mut merged = sketch_of(&a);
            merged.merge(&sketch_of(&b));
            let both: Vec<f64> = b.iter().chain(&a).copied().collect();
            prop_assert_eq!(&merged, &sketch_of(&both));
            let mut other_way = sketch_of(&b);
            other_way.merge(&sketch_of(&a));
            prop_assert_eq!(merged, other_way);
        }

        #[test]
        fn a_sketch_reads_back_as_written(values in values()) {
            let s = sketch_of(&values);
            let text = serde_json::to_string(&s).expect("writes");
            let back: QuantileSketch = serde_json::from_str(&text).expect("reads");
            prop_assert_eq!(back, s);
        }
    }

    #[test]
    fn the_largest_sketch_takes_at_most_its_bound() {
        let counts = vec![u64::MAX.to_string(); MAX_BUCKETS].join(",");
        let text = format!(
            r#"{{"p":{{"o":-1048576,"c":[{counts}]}},"n":{{"o":-1048576,"c":[{counts}]}},"z":{}}}"#,
            u64::MAX
        );
        let worst: QuantileSketch = serde_json::from_str(&text).expect("reads");
        let written = serde_json::to_string(&worst).expect("writes");
        assert!(
            written.len() <= MAX_JSON_BYTES,
            "{} > {MAX_JSON_BYTES}",
            written.len()
        );
        assert!(written.len() + 40 > MAX_JSON_BYTES, "the bound is tight");
        let small = sketch_of(
            &(1..=100_000)
                .map(|i| f64::from(i) / 10.0)
                .collect::<Vec<_>>(),
        );
        assert!(serde_json::to_string(&small).expect("writes").len() < 5_000);
    }

    /// A stored form out of what a sketch can hold is refused when read, not used.
    #[test]
    fn impossible_stored_buckets_are_refused() {
        let ok = r#"{"p":{"o":-5,"c":[1,0,2]},"z":1}"#;
        let s: QuantileSketch = serde_json::from_str(ok).expect("reads");
        assert_eq!(s.count(), 4);
        let too_many = format!(
            r#"{{"p":{{"o":0,"c":[{}]}},"z":0}}"#,
            vec!["1"; MAX_BUCKETS + 1].join(",")
        );
        for bad in [
            r#"{"p":{"o":2147483647,"c":[1,1]},"z":0}"#,
            r#"{"n":{"o":-2147483648,"c":[1]},"z":0}"#,
            too_many.as_str(),
        ] {
            assert!(
                serde_json::from_str::<QuantileSketch>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_common_percentiles_of_a_known_set() {
        let values: Vec<f64> = (1..=1000).map(f64::from).collect();
        let s = sketch_of(&values);
        for (q, want) in [
            (0.0, 1.0),
            (0.5, 500.0),
            (0.9, 900.0),
            (0.99, 990.0),
            (1.0, 1000.0),
        ] {
            let got = s.quantile(q).expect("a value");
            assert!(within(got, want), "p{q}: {got} against {want}");
        }
        assert_eq!(sketch_of(&[0.0, -0.0]).quantile(0.5), Some(0.0));
        assert_eq!(QuantileSketch::default().quantile(0.5), None);
        assert_eq!(s.quantile(1.5), None);
        assert_eq!(s.quantile(f64::NAN), None);
        let mut s = s;
        assert_eq!(s.add(f64::NAN).map_err(|e| e.0.is_nan()), Err(true));
        assert_eq!(s.add(f64::INFINITY), Err(NotFinite(f64::INFINITY)));
        assert_eq!(s.count(), 1000);
    }

    /// A sign's span beyond [`MAX_BUCKETS`] merges its smallest magnitudes: memory
    /// stays bounded and the large quantiles keep their guarantee.
    #[test]
    fn buckets_are_bounded_and_the_smallest_magnitudes_merge() {
        // 10^-40 … 10^40: 80 decades, of which 2,048 buckets keep the top 17.8.
        let values: Vec<f64> = (-40..=40).map(|e| 10f64.powi(e)).collect();
        let s = sketch_of(&values);
        assert_eq!(s.positive.counts.len(), MAX_BUCKETS);
        assert_eq!(s.count(), values.len() as u64);
        for q in [0.8, 0.9, 0.99, 1.0] {
            let got = s.quantile(q).expect("a value");
            let want = exact(&values, q);
            assert!(within(got, want), "q {q}: {got} against {want}");
        }
        let low = s.quantile(0.0).expect("a value");
        assert!(
            low > 1e22,
            "the smallest magnitudes were merged upwards: {low}"
        );
        // Merged alike whatever the order the values and sketches come in.
        let reversed: Vec<f64> = values.iter().rev().copied().collect();
        assert_eq!(sketch_of(&reversed), s);
        let (low_half, high_half) = values.split_at(40);
        let mut merged = sketch_of(high_half);
        merged.merge(&sketch_of(low_half));
        assert_eq!(merged, s);
    }
}
