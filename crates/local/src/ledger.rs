//! The local runner's ledger: what became of every event, by origin. A redelivered or
//! re-emitted event has the same origin, so its first settled fate is the one that
//! stands; `events_in` must equal the sum of the fates, or something was lost.
//!
//! The books are exact when every committed write is reported as counted (the stages
//! do so; injected crashes after a commit report it too). A real commit whose
//! acknowledgement was lost shows up as a duplicate on the retry: the aggregates are
//! still exact, only this run's summary moves one event from counted to duplicates.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use sluice_core::envelope::Reason;
use sluice_core::ports::{EventLedger, Fate};

#[derive(Default)]
pub struct MemoryLedger {
    received: Mutex<HashSet<String>>,
    fates: Mutex<HashMap<String, Fate>>,
}

/// Counts by fate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LedgerSummary {
    pub events_in: u64,
    pub counted: u64,
    pub dead_letter: u64,
    pub late: u64,
    pub duplicates: u64,
    /// Received but never settled: lost or still in flight. Must be 0 after draining.
    pub unsettled: u64,
    pub dead_letter_reasons: Vec<(Reason, u64)>,
}

impl MemoryLedger {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn fate(&self, origin: &str) -> Option<Fate> {
        self.fates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(origin)
            .copied()
    }

    pub fn fates(&self) -> HashMap<String, Fate> {
        self.fates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn summary(&self) -> LedgerSummary {
        let received = self.received.lock().unwrap_or_else(PoisonError::into_inner);
        let fates = self.fates.lock().unwrap_or_else(PoisonError::into_inner);
        let mut s = LedgerSummary {
            events_in: received.len() as u64,
            ..Default::default()
        };
        let mut reasons: HashMap<Reason, u64> = HashMap::new();
        for origin in received.iter() {
            match fates.get(origin) {
                Some(Fate::Counted(_)) => s.counted += 1,
                Some(Fate::Duplicate(_)) => s.duplicates += 1,
                Some(Fate::Late) => s.late += 1,
                Some(Fate::DeadLetter(r)) => {
                    s.dead_letter += 1;
                    *reasons.entry(*r).or_default() += 1;
                }
                None => s.unsettled += 1,
            }
        }
        let mut reasons: Vec<(Reason, u64)> = reasons.into_iter().collect();
        reasons.sort();
        s.dead_letter_reasons = reasons;
        s
    }
}

impl EventLedger for MemoryLedger {
    fn received(&self, origin: &str) {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(origin.to_owned());
    }

    fn settled(&self, origin: &str, fate: Fate) {
        self.fates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(origin.to_owned())
            .or_insert(fate);
    }
}
