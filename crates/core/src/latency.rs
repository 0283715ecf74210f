//! A fixed-size latency histogram: percentiles of any number of samples in memory that
//! does not grow with them.
//!
//! Buckets are log-linear, as in HdrHistogram: values below 128 each have their own
//! bucket (exact); above, every power-of-two range `[2^e, 2^(e+1))` is cut into 128
//! equal buckets, so a bucket is never wider than 1/128 of its smallest value. A
//! percentile is reported as the largest value its bucket holds (capped at the largest
//! sample), so it is never below the exact percentile and at most [`RELATIVE_ERROR`]
//! above it. The whole `u64` range fits in 7,424 buckets (58 KiB, allocated on the first
//! sample); the unit is the caller's (the demo records milliseconds and microseconds).

/// Bits of a value kept exactly: 7, so 128 buckets per power of two.
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
/// Values below [`SUB`], then 128 buckets for each shift 0..=56 of a value's top 8 bits.
const BUCKETS: usize = ((u64::BITS - SUB_BITS + 1) as u64 * SUB) as usize;

/// How far above the exact percentile a reported one may be, relative to it.
pub const RELATIVE_ERROR: f64 = 1.0 / SUB as f64;

/// The bucket of a value.
fn index(value: u64) -> usize {
    if value < SUB {
        return value as usize;
    }
    // value >= 128, so its highest set bit is at position 7 or more.
    let shift = u64::BITS - 1 - value.leading_zeros() - SUB_BITS;
    let top = value >> shift; // in [128, 256)
    ((u64::from(shift) + 1) * SUB + (top - SUB)) as usize
}

/// The smallest and the largest value of a bucket.
fn bounds(index: usize) -> (u64, u64) {
    let i = index as u64;
    if i < SUB {
        return (i, i);
    }
    let shift = i / SUB - 1;
    let low = (SUB + i % SUB) << shift;
    (low, low + ((1u64 << shift) - 1))
}

/// Counts of samples per bucket, with their number, smallest and largest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Empty until the first sample, then [`BUCKETS`] long.
    counts: Vec<u64>,
    count: u64,
    min: u64,
    max: u64,
}

impl Histogram {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record(&mut self, value: u64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS];
            self.min = value;
        }
        self.counts[index(value)] += 1;
        self.count += 1;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Heap bytes held: none before the first sample, then the fixed bucket array.
    pub fn approximate_bytes(&self) -> usize {
        self.counts.capacity() * std::mem::size_of::<u64>()
    }

    /// How many samples were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The smallest sample (exact), `None` without samples.
    pub fn min(&self) -> Option<u64> {
        (self.count > 0).then_some(self.min)
    }

    /// The largest sample (exact), `None` without samples.
    pub fn max(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max)
    }

    /// The `q` quantile (`0.0..=1.0`) by nearest rank: the smallest sample that at least
    /// `q` of all samples are at or below (the `ceil(q·n)`-th smallest, the first for
    /// `q = 0`). Reported as the largest value of its bucket, capped at the largest
    /// sample: at or above the exact value, by at most [`RELATIVE_ERROR`] of it. `None`
    /// without samples.
    pub fn percentile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        // The epsilon keeps q·n from rounding up past an integer (0.29 · 100).
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64) - 1e-9).ceil() as u64;
        let rank = rank.clamp(1, self.count);
        let mut seen = 0u64;
        for (i, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(bounds(i).1.min(self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// The exact nearest-rank percentile of sorted samples.
    fn exact(sorted: &[u64], q: f64) -> u64 {
        let rank = ((q * sorted.len() as f64) - 1e-9).ceil().max(1.0) as usize;
        sorted[rank.min(sorted.len()) - 1]
    }

    fn check(samples: &[u64]) {
        let mut h = Histogram::new();
        samples.iter().for_each(|v| h.record(*v));
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        for q in [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0] {
            let want = exact(&sorted, q);
            let got = h.percentile(q).expect("samples");
            assert!(
                got >= want && got as f64 <= want as f64 * (1.0 + RELATIVE_ERROR),
                "q {q}: got {got}, exact {want}"
            );
        }
        assert_eq!(h.count(), samples.len() as u64);
        assert_eq!(h.min(), sorted.first().copied());
        assert_eq!(h.max(), sorted.last().copied());
    }

    #[test]
    fn percentiles_are_at_or_above_the_exact_ones_within_the_stated_error() {
        check(&(1..=100_000).collect::<Vec<u64>>());
        // Skewed: a long tail over nine orders of magnitude, in random order.
        let mut rng = SplitMix64::new(7);
        let tail: Vec<u64> = (0..50_000)
            .map(|_| {
                let exp = rng.next_u64() % 30;
                (1u64 << exp) + rng.next_u64() % (1u64 << exp)
            })
            .collect();
        check(&tail);
        // A few values, many repeated: the nearest rank picks a sample, not a mean.
        check(&[3, 3, 3, 4_000, 4_000, 9_999, 1_000_000]);
        check(&[0]);
        check(&[u64::MAX, 0, u64::MAX / 3]);
    }

    #[test]
    fn small_values_are_exact_and_ranks_follow_the_nearest_rank_rule() {
        let mut h = Histogram::new();
        for v in 1..=100u64 {
            h.record(v);
        }
        assert_eq!(h.percentile(0.5), Some(50));
        assert_eq!(h.percentile(0.99), Some(99));
        assert_eq!(h.percentile(0.29), Some(29), "0.29 · 100 is 29, not 30");
        assert_eq!(h.percentile(0.0), Some(1));
        assert_eq!(h.percentile(1.0), Some(100));
        assert_eq!(Histogram::new().percentile(0.5), None);
        assert_eq!(Histogram::new().max(), None);
    }

    #[test]
    fn a_repeated_value_is_reported_as_itself_not_its_bucket_edge() {
        let mut h = Histogram::new();
        (0..1_000).for_each(|_| h.record(4_000));
        // 4,000 sits in a bucket 32 wide; capping at the largest sample makes it exact.
        assert_eq!(h.percentile(0.5), Some(4_000));
        assert_eq!(h.percentile(0.99), Some(4_000));
    }

    #[test]
    fn buckets_tile_the_whole_range_without_gaps_or_overlaps() {
        let mut next = 0u64;
        for i in 0..BUCKETS {
            let (low, high) = bounds(i);
            assert_eq!(low, next, "bucket {i}");
            assert!(high >= low);
            assert_eq!(index(low), i);
            assert_eq!(index(high), i);
            // No bucket is wider than the stated error allows.
            assert!(
                (high - low) as f64 <= low as f64 * RELATIVE_ERROR,
                "bucket {i}"
            );
            next = high.wrapping_add(1);
        }
        assert_eq!(next, 0, "the last bucket ends at u64::MAX");
    }
}
