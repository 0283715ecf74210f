//! Capped exponential backoff with jitter, shared by the Kinesis sink and the DynamoDB
//! batch reads. The jitter comes from the clock's nanoseconds and a process-wide counter
//! mixed through SplitMix64: cheap, not cryptographic, and different per call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_core::rng::SplitMix64;

/// How often and how patiently to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first delay (before jitter).
    pub base: Duration,
    /// No delay exceeds this.
    pub cap: Duration,
    /// Attempts in all, the first one included (at least 1).
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    /// 50 ms, doubling, capped at 2 s, 8 attempts: at most about 6 s of waiting.
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(50),
            cap: Duration::from_secs(2),
            max_attempts: 8,
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1`, after `attempt` (>= 1) attempts failed:
    /// "equal jitter", uniform in `[d/2, d]` with `d = min(cap, base * 2^(attempt-1))`,
    /// so retries spread out yet never collapse to zero.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, jitter_unit())
    }

    /// [`RetryPolicy::delay`] with the jitter given (`unit` in `[0, 1)`), for tests.
    pub fn delay_with(&self, attempt: u32, unit: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let full = self
            .base
            .checked_mul(1u32 << exp)
            .unwrap_or(self.cap)
            .min(self.cap);
        let half = full / 2;
        half + half.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// Sleeps for [`RetryPolicy::delay`].
    pub async fn sleep(&self, attempt: u32) {
        tokio::time::sleep(self.delay(attempt)).await;
    }
}

/// A number in `[0, 1)`, different on every call.
pub fn jitter_unit() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut rng = SplitMix64::new(nanos ^ n.rotate_left(32) ^ u64::from(std::process::id()));
    rng.next_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_within_bounds() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay_with(1, 0.0), Duration::from_millis(25));
        assert_eq!(p.delay_with(1, 1.0), Duration::from_millis(50));
        assert_eq!(p.delay_with(3, 1.0), Duration::from_millis(200));
        assert_eq!(p.delay_with(7, 1.0), Duration::from_secs(2), "capped");
        assert_eq!(p.delay_with(200, 0.5), Duration::from_millis(1500));
        for attempt in 1..20 {
            let d = p.delay(attempt);
            assert!(d <= p.cap && d >= Duration::from_millis(25), "{d:?}");
        }
    }

    #[test]
    fn jitter_varies() {
        let xs: Vec<f64> = (0..50).map(|_| jitter_unit()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let distinct = xs
            .iter()
            .map(|x| x.to_bits())
            .collect::<std::collections::HashSet<_>>();
        assert!(distinct.len() > 40, "{distinct:?}");
    }
}
