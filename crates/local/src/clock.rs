//! A clock the local runner moves by hand, so batching windows and record ages behave
//! as on Lambda without the demo sleeping through them.

use std::sync::atomic::{AtomicI64, Ordering};

use sluice_core::ports::Clock;

#[derive(Debug)]
pub struct ManualClock {
    now_ms: AtomicI64,
}

impl ManualClock {
    pub fn starting_at(ms: i64) -> Self {
        ManualClock {
            now_ms: AtomicI64::new(ms),
        }
    }

    /// Moves the clock forward to `ms` (never backwards).
    pub fn advance_to(&self, ms: i64) {
        self.now_ms.fetch_max(ms, Ordering::SeqCst);
    }

    pub fn advance_by(&self, ms: i64) {
        self.now_ms.fetch_add(ms.max(0), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}
