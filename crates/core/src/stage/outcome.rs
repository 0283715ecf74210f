//! What a stage did with one batch, and what Lambda should retry.

use std::collections::BTreeMap;
use std::ops::AddAssign;

use crate::error::Error;
use crate::input::envelope::Reason;
use crate::input::record::StreamRecord;

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
    /// What the stage wrote to its output stream: events (ingest, enrich), window
    /// updates (aggregate); for detect, the window updates it evaluated.
    pub passed_on: u64,
    pub dead_lettered: BTreeMap<Reason, u64>,
    pub duplicates: u64,
    pub counted: u64,
    pub unenriched: u64,
    pub alerts_raised: u64,
    /// Detect: reads of a group's window history (one `Query` each) for `rate` and
    /// `zscore` rules.
    pub history_reads: u64,
    pub items_written: u64,
    pub transactions: u64,
    pub conflicts: u64,
    /// Invocations these counters cover (1 for one batch; summed by `+=`). Set where
    /// invocations are timed (the Lambda adapter, the local runner), not by the stages.
    pub batches: u64,
    /// Time the stage spent on its batches, in milliseconds (summed by `+=`).
    pub duration_ms: u64,
    /// How long the oldest record of a batch had been in its stream when the batch
    /// was handed to the stage (now − its `approximateArrivalTimestamp`), in
    /// milliseconds; `+=` keeps the largest. `None`: not measured (no records, or a
    /// runner that does not time batches).
    pub iterator_age_ms: Option<u64>,
    /// DynamoDB capacity the batch consumed, in thousandths of a request unit (integers
    /// keep the counters exact and comparable), summed by `+=`. `None`: the stage's
    /// tables are not metered where it runs (only the aggregates table is metered).
    pub read_milli_units: Option<u64>,
    pub write_milli_units: Option<u64>,
}

/// Now minus the oldest of a batch's arrival times (epoch ms), never negative (the
/// clocks of the stream and the function differ a little); `None` for an empty batch.
pub fn iterator_age_ms(arrivals_ms: impl IntoIterator<Item = i64>, now_ms: i64) -> Option<u64> {
    let oldest = arrivals_ms.into_iter().min()?;
    Some(u64::try_from(now_ms.saturating_sub(oldest)).unwrap_or(0))
}

/// `a + b` where either may be unmeasured: measured if either is.
fn add_measured(a: Option<u64>, b: Option<u64>, f: impl Fn(u64, u64) -> u64) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(f(x, y)),
        (x, None) => x,
        (None, y) => y,
    }
}

impl StageStats {
    /// Read request units (fractional: eventually consistent reads cost half a unit).
    pub fn read_units(&self) -> Option<f64> {
        self.read_milli_units.map(|m| m as f64 / 1000.0)
    }

    pub fn write_units(&self) -> Option<f64> {
        self.write_milli_units.map(|m| m as f64 / 1000.0)
    }

    /// Records the measures of one invocation the stage itself cannot see: it ran from
    /// `started_ms` for `duration_ms` over `records`.
    pub fn time_batch(&mut self, records: &[StreamRecord], started_ms: i64, duration_ms: u64) {
        self.batches = 1;
        self.duration_ms = duration_ms;
        self.iterator_age_ms = iterator_age_ms(records.iter().map(|r| r.arrival_ms), started_ms);
    }

    /// Events dead-lettered as `late`.
    pub fn late(&self) -> u64 {
        self.dead_lettered.get(&Reason::Late).copied().unwrap_or(0)
    }

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
        self.history_reads += o.history_reads;
        self.items_written += o.items_written;
        self.transactions += o.transactions;
        self.conflicts += o.conflicts;
        self.batches += o.batches;
        self.duration_ms += o.duration_ms;
        self.iterator_age_ms = add_measured(self.iterator_age_ms, o.iterator_age_ms, u64::max);
        self.read_milli_units =
            add_measured(self.read_milli_units, o.read_milli_units, |a, b| a + b);
        self.write_milli_units =
            add_measured(self.write_milli_units, o.write_milli_units, |a, b| a + b);
    }
}

#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub records: usize,
    /// The first record to deliver again, if any: everything before it is done.
    pub failure: Option<BatchFailure>,
    pub stats: StageStats,
    /// What became of each event this invocation, by origin. Lambda ignores it; the
    /// local runner books it in its ledger to prove every event has exactly one fate.
    pub accounting: Accounting,
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

/// What finally became of one producer write (identified by its origin).
/// `Counted` and `Duplicate` carry the event's identity (what de-duplication keys on),
/// for diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fate {
    Counted(u64),
    Duplicate(u64),
    Late,
    DeadLetter(Reason),
    /// Under a SQL pipeline: no stored view takes the event (their filters, or an
    /// inner lookup join without a match, leave it out).
    Filtered,
}

/// Consecutive lines of one payload of one input record with the same fate (`None`:
/// passed on to the next stage). Ingest reports what it received this way, so a record
/// of 500,000 junk lines costs a few runs, not 500,000 origin strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineRun {
    /// Index of the record in the batch.
    pub record: usize,
    /// The user record of a KPL aggregate, if the record is one.
    pub sub: Option<usize>,
    pub first_line: usize,
    pub lines: usize,
    /// `None`: passed on; else settled here (a dead letter, or filtered out).
    pub fate: Option<Fate>,
}

/// The per-event accounting of one invocation, as data: the stages never call a ledger
/// (that is local verification machinery, see `sluice_local::ledger`); they say here
/// what they did and the runner books it.
///
/// Everything reported here happened: fates of events in records that will be delivered
/// again are not reported, except `Counted` ones, whose commit is durable whatever
/// happens to the rest of the invocation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accounting {
    /// Lines of raw records received (ingest only), in runs.
    pub lines: Vec<LineRun>,
    /// Fates settled by origin (enrich, aggregate).
    pub settled: Vec<(String, Fate)>,
    /// Events whose commit was sent but whose outcome is unknown (the reply was lost:
    /// a timeout or reset after a `TransactWriteItems` went out). The retry tells: if it
    /// finds such an event already counted (`Duplicate`), this invocation counted it.
    pub in_doubt: Vec<String>,
}

/// One entry of an [`Accounting`], with its origin spelled out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Booking {
    Received(String),
    Settled(String, Fate),
    InDoubt(String),
}

impl Accounting {
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.settled.is_empty() && self.in_doubt.is_empty()
    }

    /// Adds a line of record `record` (payload `sub`), extending the last run if it
    /// continues it.
    pub fn line(&mut self, record: usize, sub: Option<usize>, line: usize, fate: Option<Fate>) {
        if let Some(last) = self.lines.last_mut() {
            if last.record == record
                && last.sub == sub
                && last.fate == fate
                && last.first_line + last.lines == line
            {
                last.lines += 1;
                return;
            }
        }
        self.lines.push(LineRun {
            record,
            sub,
            first_line: line,
            lines: 1,
            fate,
        });
    }

    /// Every booking, origins formatted one at a time; `records` is the batch the
    /// stage processed (line runs name records by index).
    pub fn bookings<'a>(
        &'a self,
        records: &'a [StreamRecord],
    ) -> impl Iterator<Item = Booking> + 'a {
        let lines = self.lines.iter().flat_map(move |run| {
            let record = records.get(run.record);
            (run.first_line..run.first_line + run.lines).flat_map(move |line| {
                let origin = record.map(|r| r.origin_of(run.sub, line));
                let settled = origin
                    .clone()
                    .zip(run.fate)
                    .map(|(o, fate)| Booking::Settled(o, fate));
                origin.map(Booking::Received).into_iter().chain(settled)
            })
        });
        let in_doubt = self.in_doubt.iter().cloned().map(Booking::InDoubt);
        let settled = self
            .settled
            .iter()
            .map(|(o, f)| Booking::Settled(o.clone(), *f));
        lines.chain(in_doubt).chain(settled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrived(ms: i64) -> StreamRecord {
        StreamRecord {
            stream: "raw".into(),
            shard_id: "shardId-000000000000".into(),
            sequence_number: "1".into(),
            partition_key: "k".into(),
            data: Vec::new(),
            arrival_ms: ms,
        }
    }

    #[test]
    fn iterator_age_is_measured_from_the_oldest_record_and_never_negative() {
        let batch = [arrived(5_000), arrived(1_000), arrived(9_000)];
        let arrivals = || batch.iter().map(|r| r.arrival_ms);
        assert_eq!(iterator_age_ms(arrivals(), 10_000), Some(9_000));
        assert_eq!(
            iterator_age_ms(arrivals(), 500),
            Some(0),
            "stream clock ahead"
        );
        assert_eq!(iterator_age_ms([], 10_000), None);
        let mut stats = StageStats::default();
        stats.time_batch(&batch, 10_000, 42);
        assert_eq!(
            (stats.batches, stats.duration_ms, stats.iterator_age_ms),
            (1, 42, Some(9_000))
        );
    }

    #[test]
    fn summing_adds_counts_and_durations_and_keeps_the_largest_iterator_age() {
        let mut total = StageStats::default();
        let mut a = StageStats {
            records: 2,
            batches: 1,
            duration_ms: 10,
            iterator_age_ms: Some(700),
            read_milli_units: Some(1_500),
            ..StageStats::default()
        };
        a.dead_letter(Reason::Late);
        let b = StageStats {
            records: 3,
            batches: 1,
            duration_ms: 5,
            iterator_age_ms: Some(300),
            write_milli_units: Some(4_000),
            ..StageStats::default()
        };
        total += &a;
        total += &b;
        total += &StageStats::default();
        assert_eq!(total.records, 5);
        assert_eq!((total.batches, total.duration_ms), (2, 15));
        assert_eq!(total.iterator_age_ms, Some(700));
        assert_eq!(total.read_units(), Some(1.5));
        assert_eq!(total.write_units(), Some(4.0));
        assert_eq!(total.late(), 1);
        assert_eq!(
            StageStats::default().read_units(),
            None,
            "unmetered stays so"
        );
    }

    #[test]
    fn line_runs_expand_to_one_receipt_per_line_and_a_fate_per_rejected_line() {
        let record = StreamRecord {
            stream: "raw".into(),
            shard_id: "s".into(),
            sequence_number: "7".into(),
            partition_key: "k".into(),
            data: Vec::new(),
            arrival_ms: 0,
        };
        let mut a = Accounting::default();
        for line in 0..3 {
            a.line(0, None, line, None);
        }
        a.line(0, None, 3, Some(Fate::DeadLetter(Reason::NotJson)));
        a.line(0, None, 4, Some(Fate::DeadLetter(Reason::NotJson)));
        a.line(0, Some(2), 0, Some(Fate::DeadLetter(Reason::NotJson)));
        assert_eq!(a.lines.len(), 3, "runs: passed, rejected, another payload");
        let got: Vec<Booking> = a.bookings(std::slice::from_ref(&record)).collect();
        assert_eq!(got.len(), 6 + 3);
        assert_eq!(got[0], Booking::Received("s:7:0".into()));
        assert_eq!(
            got[7],
            Booking::Received("s:7:2:0".into()),
            "a KPL user record's origin"
        );
        assert_eq!(
            got[8],
            Booking::Settled("s:7:2:0".into(), Fate::DeadLetter(Reason::NotJson))
        );
    }
}
