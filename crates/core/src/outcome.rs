//! What a stage did with one batch, and what Lambda should retry.

use std::collections::BTreeMap;
use std::ops::AddAssign;

use crate::envelope::Reason;
use crate::error::Error;

#[derive(Debug)]
pub struct BatchFailure {
    /// Index of the first record that must be delivered again.
    pub index: usize,
    pub sequence_number: String,
    pub error: Error,
}

/// Counters a stage reports per batch (and the local runner sums up).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StageStats {
    pub records: u64,
    pub events_in: u64,
    pub passed_on: u64,
    pub dead_lettered: BTreeMap<Reason, u64>,
    pub duplicates: u64,
    pub counted: u64,
    pub unenriched: u64,
    pub alerts_raised: u64,
    pub items_written: u64,
    pub transactions: u64,
    pub conflicts: u64,
}

impl StageStats {
    pub fn dead_letter(&mut self, reason: Reason) {
        *self.dead_lettered.entry(reason).or_default() += 1;
    }

    pub fn dead_lettered_total(&self) -> u64 {
        self.dead_lettered.values().sum()
    }
}

impl AddAssign<&StageStats> for StageStats {
    fn add_assign(&mut self, o: &StageStats) {
        self.records += o.records;
        self.events_in += o.events_in;
        self.passed_on += o.passed_on;
        for (r, n) in &o.dead_lettered {
            *self.dead_lettered.entry(*r).or_default() += n;
        }
        self.duplicates += o.duplicates;
        self.counted += o.counted;
        self.unenriched += o.unenriched;
        self.alerts_raised += o.alerts_raised;
        self.items_written += o.items_written;
        self.transactions += o.transactions;
        self.conflicts += o.conflicts;
    }
}

#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub records: usize,
    /// The first record to deliver again, if any: everything before it is done.
    pub failure: Option<BatchFailure>,
    pub stats: StageStats,
}

impl BatchOutcome {
    pub fn is_complete(&self) -> bool {
        self.failure.is_none()
    }

    /// How many records, from the start of the batch, are fully done.
    pub fn completed(&self) -> usize {
        self.failure.as_ref().map_or(self.records, |f| f.index)
    }
}
