//! The local runner's ledger: what became of every event, by origin. A redelivered or
//! re-emitted event has the same origin, so its first settled fate is the one that
//! stands; `events_in` must equal the sum of the fates, or something was lost.
//!
//! The stages never call the ledger: each reports its accounting in its
//! [`BatchOutcome`](sluice_core::stage::outcome::BatchOutcome) and the runner books it here
//! ([`MemoryLedger::book`]). The books are exact because every committed write is
//! reported as counted, and a commit whose reply was lost (a timeout or reset after the
//! request went out; chaos injects exactly that) is reported *in doubt*: when such an
//! event later settles as a duplicate (or as late, see [`resolve`]), the lost commit is
//! what counted it, so it is booked as counted. (An in-doubt commit that did not go
//! through is retried and settles as counted itself.)
//!
//! # Compact books
//! An origin names a producer write for ever (`shard:sequence:line`), so the ledger
//! must remember every origin it has seen until the run ends: a later copy of an
//! event (a redelivery, an upstream re-emit) may still arrive and must not be counted
//! again. It keeps one byte per origin: bit 7 says "received", the low seven bits the
//! first fate settled (0: none yet). Which fate stands and what is counted is exactly
//! what a map from origin to (received, first fate) would give; only the storage
//! differs:
//! - In the demo ([`MemoryLedger::for_memory_streams`]) the raw stream's sequence
//!   numbers come from one counter shared by every in-process stream (`49` followed by
//!   the counter in 54 digits), so the origin of a record's first line is named by that
//!   counter alone, and its byte sits at that index of a dense array: about one byte
//!   per record written to any in-process stream (the inter-stage streams pack many
//!   events per record, so this is a little over one byte per event).
//! - Every other origin (later lines of a multi-line record, sequence numbers of a real
//!   Kinesis, origins whose fate has no one-byte code) is kept by name in a map.
//!
//! # Event-to-aggregate latency
//! With [`MemoryLedger::with_latency`] the books also measure, for every counted event,
//! the time from its arrival at ingest to the aggregate commit that counted it, on the
//! simulated clock of the in-process streams and on the wall clock, into two
//! fixed-size histograms ([`sluice_core::latency::Histogram`]).
//! - *Arrival* is when the producer's `PutRecords` put the event's raw record on the raw
//!   stream: the runner notes each put's sequence numbers
//!   ([`MemoryLedger::note_put`]); on the simulated clock that instant is the record's
//!   `ApproximateArrivalTimestamp` (the stream stamps it from the same clock), on the
//!   wall clock it is when the put returned. An event is matched to its put by the
//!   sequence number in its origin.
//! - The *commit* is the invocation of the aggregate stage whose outcome reports the
//!   event counted, stamped when that outcome is booked (its commits are done then).
//!   An event whose commit lost its reply and that a retry then finds already counted
//!   (or late) was counted by the lost commit: it is measured to that commit (stamped
//!   when the in-doubt report was booked), not to the retry. An event first counted on a
//!   redelivery is measured to that redelivery's commit.
//! - Dead letters, late events and duplicates are not samples: the number of samples is
//!   the number of events counted (less any whose put was not noted, reported as
//!   unmeasured).
//!
//! Nothing is kept per event but for commits in doubt: an event's arrival is looked up
//! in the put log when its fate is settled, its latency goes into the histograms, and
//! only an event whose commit lost its reply is remembered (its dense index or origin
//! and a stamp) until the retry settles it. The put log holds one entry per
//! `PutRecords` request (up to 500 records) until the runner forgets it
//! ([`MemoryLedger::forget_puts`], once every event of those puts is settled); the demo
//! drains each chunk of input before the next and forgets then, so the log holds one
//! chunk's requests (about 40 for 20,000 lines), whatever the volume.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use sluice_core::input::envelope::Reason;
use sluice_core::input::record::StreamRecord;
use sluice_core::latency::Histogram;
use sluice_core::ports::Clock;
use sluice_core::stage::outcome::{Accounting, Booking, Fate};

/// Bit 7 of a book byte: the origin was received by ingest.
const RECEIVED: u8 = 0x80;
/// The low seven bits: the first fate settled.
const FATE_MASK: u8 = 0x7F;
const NO_FATE: u8 = 0;
const COUNTED: u8 = 1;
const DUPLICATE: u8 = 2;
const LATE: u8 = 3;
/// Dead letters: this plus the reason's position in [`Reason::ALL`].
const DEAD_LETTER_BASE: u8 = 4;
/// No fate yet, but a commit that may have counted it lost its reply.
const IN_DOUBT: u8 = FATE_MASK - 1;
/// Under a SQL pipeline, no stored view took the event.
const FILTERED: u8 = FATE_MASK - 2;
/// A dense slot whose origin moved to the named map (its fate has no one-byte code).
const MOVED: u8 = FATE_MASK;
/// How far past the end of the dense array a new index may land and still be dense:
/// in-process sequence numbers only grow by one, so a bigger jump means the origin is
/// not one of theirs and would only waste memory.
const MAX_DENSE_GAP: u64 = 1 << 24;

/// What finally became of one event, as the ledger books it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Settled {
    Counted,
    Duplicate,
    Late,
    DeadLetter(Reason),
    Filtered,
}

impl From<Fate> for Settled {
    fn from(fate: Fate) -> Self {
        match fate {
            Fate::Counted(_) => Settled::Counted,
            Fate::Duplicate(_) => Settled::Duplicate,
            Fate::Late => Settled::Late,
            Fate::DeadLetter(r) => Settled::DeadLetter(r),
            Fate::Filtered => Settled::Filtered,
        }
    }
}

/// The one-byte code of a fate, if it has one.
fn encode(fate: Settled) -> Option<u8> {
    Some(match fate {
        Settled::Counted => COUNTED,
        Settled::Duplicate => DUPLICATE,
        Settled::Late => LATE,
        Settled::Filtered => FILTERED,
        Settled::DeadLetter(r) => {
            let at = Reason::ALL.iter().position(|x| *x == r)?;
            let code = DEAD_LETTER_BASE.checked_add(u8::try_from(at).ok()?)?;
            return (code < FILTERED).then_some(code);
        }
    })
}

fn decode(code: u8) -> Option<Settled> {
    match code & FATE_MASK {
        NO_FATE | MOVED | IN_DOUBT => None,
        COUNTED => Some(Settled::Counted),
        DUPLICATE => Some(Settled::Duplicate),
        LATE => Some(Settled::Late),
        FILTERED => Some(Settled::Filtered),
        c => Reason::ALL
            .get(usize::from(c - DEAD_LETTER_BASE))
            .map(|r| Settled::DeadLetter(*r)),
    }
}

/// Received or not, and the first fate: what the books know of one origin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Entry {
    received: bool,
    fate: Option<Settled>,
    /// A commit that may have counted it lost its reply (only while no fate).
    in_doubt: bool,
}

/// The fate that stands when `fate` settles an origin a lost commit may have counted.
///
/// An in-doubt event was on time and fresh when its commit was planned. If the retry
/// finds it a duplicate, that commit applied it. If the retry finds it late, its group's
/// watermark moved past it since; the only commit that can have moved it is the lost
/// one, because every event of a group travels through one shard and one lane (the
/// inter-stage streams are keyed by the group's key) and the lane is blocked until the
/// retry. That commit carried the event too (in at-least-once mode an applied record's
/// late events are reported late again, not as duplicates). Either way: counted.
fn resolve(in_doubt: bool, fate: Settled) -> Settled {
    match fate {
        Settled::Duplicate | Settled::Late if in_doubt => Settled::Counted,
        other => other,
    }
}

impl Entry {
    /// Settles the entry; returns the fate this set, `None` if one already stood.
    fn settle(&mut self, fate: Settled) -> Option<Settled> {
        let fate = resolve(self.in_doubt, fate);
        self.in_doubt = false;
        match self.fate {
            Some(_) => None,
            None => {
                self.fate = Some(fate);
                Some(fate)
            }
        }
    }
}

#[derive(Default)]
struct Books {
    /// Whether origins of the in-process numbering go to `dense`.
    dense_enabled: bool,
    /// Book bytes indexed by the in-process sequence counter (first lines only).
    dense: Vec<u8>,
    /// Every other origin, by name.
    named: HashMap<String, Entry>,
    /// Event-to-aggregate latency, when measured.
    latency: Option<Latency>,
}

/// The counter of an in-process sequence number (`49` and 54 digits), if it is one.
/// Every booking parses one: the 54-digit tail is read as zeros then at most 20 digits
/// (all a `u64` holds), in one pass, not checked and then parsed again.
fn sequence_counter(sequence: &str) -> Option<u64> {
    let bytes = sequence.as_bytes();
    if bytes.len() != 56 || !bytes.starts_with(b"49") {
        return None;
    }
    let (zeros, digits) = bytes[2..].split_at(54 - 20);
    if zeros.iter().any(|b| *b != b'0') {
        return None;
    }
    digits.iter().try_fold(0u64, |n, b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// The dense index of an origin `shard:49<54 digits>:0`, if it has one.
fn dense_index(origin: &str) -> Option<u64> {
    let mut parts = origin.rsplitn(3, ':');
    let line = parts.next()?;
    let sequence = parts.next()?;
    parts.next()?;
    if line != "0" {
        return None;
    }
    sequence_counter(sequence)
}

/// The sequence counter of the record an origin (`shard:sequence:…`) names, whatever
/// its line or KPL user record.
fn origin_counter(origin: &str) -> Option<u64> {
    sequence_counter(origin.split(':').nth(1)?)
}

/// When something happened: on the simulated clock (epoch ms) and on the wall clock
/// (µs since the tracker started).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    sim_ms: i64,
    wall_us: u64,
}

/// An event's name in the tracker: its dense index when it has one (no string kept).
enum Key<'a> {
    Dense(u64),
    Named(&'a str),
}

/// Latency of every counted event (see the module documentation).
struct Latency {
    /// The simulated clock the streams stamp arrivals with.
    clock: Arc<dyn Clock>,
    epoch: Instant,
    /// Raw-stream puts not forgotten yet: first sequence counter → (last, when).
    puts: BTreeMap<u64, (u64, Stamp)>,
    /// When a commit that may have counted an unsettled event lost its reply (the
    /// latest such commit), by event.
    doubts: HashMap<u64, Stamp>,
    named_doubts: HashMap<String, Stamp>,
    simulated_ms: Histogram,
    real_us: Histogram,
    /// Counted events that could not be measured (their put was not noted, or was
    /// forgotten before they were counted).
    unmeasured: u64,
}

/// The event-to-aggregate latency measured so far (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventLatency {
    /// From arrival on the raw stream to the commit, on the simulated clock, in ms.
    pub simulated_ms: Histogram,
    /// The same on the wall clock, in µs.
    pub real_us: Histogram,
    /// Counted events without a measure: their raw record's put was not noted.
    pub unmeasured: u64,
    /// What the tracker holds right now: puts noted and not forgotten, and events whose
    /// commit is in doubt.
    pub puts_held: usize,
    pub in_doubt_held: usize,
}

impl Latency {
    fn new(clock: Arc<dyn Clock>) -> Self {
        Latency {
            clock,
            epoch: Instant::now(),
            puts: BTreeMap::new(),
            doubts: HashMap::new(),
            named_doubts: HashMap::new(),
            simulated_ms: Histogram::new(),
            real_us: Histogram::new(),
            unmeasured: 0,
        }
    }

    fn now(&self) -> Stamp {
        Stamp {
            sim_ms: self.clock.now_ms(),
            wall_us: u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX),
        }
    }

    fn note_put(&mut self, counters: impl Iterator<Item = u64>) {
        let (mut first, mut last) = (u64::MAX, 0);
        for c in counters {
            first = first.min(c);
            last = last.max(c);
        }
        if first <= last {
            let now = self.now();
            self.puts.insert(first, (last, now));
        }
    }

    /// When the raw record an origin names was put, if that put was noted. (The
    /// in-process counter is shared by every stream, so a put's range may also hold
    /// numbers of other streams' records; an origin never names one of those.)
    fn arrival_of(&self, origin: &str) -> Option<Stamp> {
        let counter = origin_counter(origin)?;
        let (_, (last, stamp)) = self.puts.range(..=counter).next_back()?;
        (counter <= *last).then_some(*stamp)
    }

    /// A commit that may have counted the unsettled event lost its reply, `at`.
    fn doubt(&mut self, key: &Key<'_>, at: Stamp) {
        match key {
            Key::Dense(i) => self.doubts.insert(*i, at),
            Key::Named(o) => self.named_doubts.insert((*o).to_owned(), at),
        };
    }

    /// The event's first fate was settled, as `set`, `at`; `reported` is what the stage
    /// said (before an in-doubt commit resolved it).
    fn settle(&mut self, key: &Key<'_>, origin: &str, reported: Settled, set: Settled, at: Stamp) {
        let doubt = match key {
            Key::Dense(i) if !self.doubts.is_empty() => self.doubts.remove(i),
            Key::Named(o) if !self.named_doubts.is_empty() => self.named_doubts.remove(*o),
            _ => None,
        };
        if set != Settled::Counted {
            return;
        }
        // Reported a duplicate (or late) but booked counted: the lost commit counted it.
        let commit = match reported {
            Settled::Counted => Some(at),
            _ => doubt,
        };
        match (self.arrival_of(origin), commit) {
            (Some(arrival), Some(commit)) => {
                let sim = commit.sim_ms.saturating_sub(arrival.sim_ms);
                self.simulated_ms.record(u64::try_from(sim).unwrap_or(0));
                self.real_us
                    .record(commit.wall_us.saturating_sub(arrival.wall_us));
            }
            _ => self.unmeasured += 1,
        }
    }

    fn report(&self) -> EventLatency {
        EventLatency {
            simulated_ms: self.simulated_ms.clone(),
            real_us: self.real_us.clone(),
            unmeasured: self.unmeasured,
            puts_held: self.puts.len(),
            in_doubt_held: self.doubts.len() + self.named_doubts.len(),
        }
    }

    fn approximate_bytes(&self) -> usize {
        let stamp = std::mem::size_of::<Stamp>();
        self.puts.len() * (8 + 8 + stamp + 16)
            + self.doubts.capacity() * (8 + stamp + 1)
            + self
                .named_doubts
                .keys()
                .map(|k| k.capacity() + std::mem::size_of::<String>() + stamp + 1)
                .sum::<usize>()
            + [&self.simulated_ms, &self.real_us]
                .iter()
                .map(|h| h.approximate_bytes())
                .sum::<usize>()
    }
}

impl Books {
    /// The dense slot of an origin, growing the array when the origin is next in line.
    fn slot(&mut self, origin: &str) -> Option<&mut u8> {
        if !self.dense_enabled {
            return None;
        }
        let index = dense_index(origin)?;
        let len = self.dense.len() as u64;
        if index >= len.saturating_add(MAX_DENSE_GAP) {
            return None;
        }
        let at = usize::try_from(index).ok()?;
        if at >= self.dense.len() {
            self.dense.resize(at + 1, 0);
        }
        match self.dense.get_mut(at) {
            Some(b) if *b & FATE_MASK == MOVED => None,
            other => other,
        }
    }

    /// The origin's name in the latency tracker.
    fn key<'a>(&self, origin: &'a str) -> Key<'a> {
        match dense_index(origin) {
            Some(i) if self.dense_enabled => Key::Dense(i),
            _ => Key::Named(origin),
        }
    }

    /// Now, for the latency tracker, if there is one (read once per booking call).
    fn now(&self) -> Option<Stamp> {
        self.latency.as_ref().map(Latency::now)
    }

    fn receive(&mut self, origin: &str) {
        match self.slot(origin) {
            Some(b) => *b |= RECEIVED,
            None => self.named.entry(origin.to_owned()).or_default().received = true,
        }
    }

    fn doubt(&mut self, origin: &str, at: Option<Stamp>) {
        let unsettled = match self.slot(origin) {
            Some(b) => {
                let unsettled = matches!(*b & FATE_MASK, NO_FATE | IN_DOUBT);
                if *b & FATE_MASK == NO_FATE {
                    *b |= IN_DOUBT;
                }
                unsettled
            }
            None => {
                let entry = self.named.entry(origin.to_owned()).or_default();
                entry.in_doubt |= entry.fate.is_none();
                entry.fate.is_none()
            }
        };
        if let Some(at) = at.filter(|_| unsettled) {
            let key = self.key(origin);
            if let Some(l) = &mut self.latency {
                l.doubt(&key, at);
            }
        }
    }

    fn settle(&mut self, origin: &str, reported: Settled, at: Option<Stamp>) {
        let set = self.settle_books(origin, reported);
        if let (Some(set), Some(at)) = (set, at) {
            let key = self.key(origin);
            if let Some(l) = &mut self.latency {
                l.settle(&key, origin, reported, set, at);
            }
        }
    }

    /// Settles the books; returns the fate this set, `None` if one already stood.
    fn settle_books(&mut self, origin: &str, fate: Settled) -> Option<Settled> {
        let in_doubt = self
            .slot(origin)
            .is_some_and(|b| *b & FATE_MASK == IN_DOUBT);
        let fate = resolve(in_doubt, fate);
        let code = encode(fate);
        match (self.slot(origin), code) {
            (Some(b), Some(code)) => {
                if matches!(*b & FATE_MASK, NO_FATE | IN_DOUBT) {
                    *b = (*b & RECEIVED) | code;
                    Some(fate)
                } else {
                    None
                }
            }
            (Some(b), None) => {
                // No one-byte code: the origin moves to the named map, with what the
                // dense byte knew.
                let mut entry = Entry {
                    received: *b & RECEIVED != 0,
                    fate: decode(*b),
                    in_doubt: false,
                };
                *b = (*b & RECEIVED) | MOVED;
                let set = entry.settle(fate);
                self.named.insert(origin.to_owned(), entry);
                set
            }
            (None, _) => self
                .named
                .entry(origin.to_owned())
                .or_default()
                .settle(fate),
        }
    }

    fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        let dense = self
            .dense
            .iter()
            .filter(|b| **b != 0 && **b & FATE_MASK != MOVED)
            .map(|b| Entry {
                received: b & RECEIVED != 0,
                fate: decode(*b),
                in_doubt: b & FATE_MASK == IN_DOUBT,
            });
        dense.chain(self.named.values().copied())
    }
}

/// The ledger of the local runner (see the module documentation).
#[derive(Default)]
pub struct MemoryLedger {
    books: Mutex<Books>,
}

/// Counts by fate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LedgerSummary {
    pub events_in: u64,
    pub counted: u64,
    pub dead_letter: u64,
    pub late: u64,
    pub duplicates: u64,
    /// Under a SQL pipeline: events no stored view took.
    pub filtered: u64,
    /// Received but never settled: lost or still in flight. Must be 0 after draining.
    pub unsettled: u64,
    pub dead_letter_reasons: Vec<(Reason, u64)>,
}

impl MemoryLedger {
    /// Books every origin by name: for origins from any Kinesis.
    pub fn new() -> Self {
        Self::default()
    }

    /// Books origins of in-process streams by their sequence counter, one byte each.
    /// Only for origins whose sequence numbers come from one
    /// [`crate::streams::MemoryStreams`]: its counter is unique across all its shards
    /// and streams, which is what makes the counter alone a name.
    pub fn for_memory_streams() -> Self {
        MemoryLedger {
            books: Mutex::new(Books {
                dense_enabled: true,
                ..Books::default()
            }),
        }
    }

    /// Also measures the latency from each event's arrival at ingest to the aggregate
    /// commit that counted it; `clock` is the one the in-process streams stamp arrivals
    /// with (the demo's simulated clock). See the module documentation.
    pub fn with_latency(self, clock: Arc<dyn Clock>) -> Self {
        self.lock().latency = Some(Latency::new(clock));
        self
    }

    /// Notes a `PutRecords` to the raw stream (its sequence numbers, now): the arrival
    /// of the events of those records. Sequence numbers that are not the in-process
    /// streams' are ignored (their events are not measured).
    pub fn note_put<'a>(&self, sequence_numbers: impl IntoIterator<Item = &'a str>) {
        if let Some(l) = &mut self.lock().latency {
            l.note_put(sequence_numbers.into_iter().filter_map(sequence_counter));
        }
    }

    /// Forgets the puts noted so far: call once every record they wrote has been
    /// received by ingest for the last time (the demo: after each drain).
    pub fn forget_puts(&self) {
        if let Some(l) = &mut self.lock().latency {
            l.puts.clear();
        }
    }

    /// The latency measured so far, `None` unless [`MemoryLedger::with_latency`].
    pub fn latency(&self) -> Option<EventLatency> {
        self.lock().latency.as_ref().map(Latency::report)
    }

    fn lock(&self) -> MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The first fate settled for an origin.
    pub fn fate(&self, origin: &str) -> Option<Settled> {
        let mut books = self.lock();
        match books.slot(origin) {
            Some(b) => decode(*b),
            None => books.named.get(origin).and_then(|e| e.fate),
        }
    }

    /// Bytes the books hold (dense array and named entries, roughly), for reports.
    pub fn approximate_bytes(&self) -> usize {
        let books = self.lock();
        books.latency.as_ref().map_or(0, Latency::approximate_bytes)
            + books.dense.capacity()
            + books
                .named
                .keys()
                .map(|k| k.capacity() + std::mem::size_of::<(String, Entry)>())
                .sum::<usize>()
    }

    pub fn summary(&self) -> LedgerSummary {
        let books = self.lock();
        let mut s = LedgerSummary::default();
        let mut reasons: HashMap<Reason, u64> = HashMap::new();
        // A fate settled for an origin ingest never received (a raw batch dropped
        // before ingest saw it) is not an event in: the producer's count shows it.
        for entry in books.entries().filter(|e| e.received) {
            s.events_in += 1;
            match entry.fate {
                Some(Settled::Counted) => s.counted += 1,
                Some(Settled::Duplicate) => s.duplicates += 1,
                Some(Settled::Late) => s.late += 1,
                Some(Settled::Filtered) => s.filtered += 1,
                Some(Settled::DeadLetter(r)) => {
                    s.dead_letter += 1;
                    *reasons.entry(r).or_default() += 1;
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

impl MemoryLedger {
    /// Ingest received this origin.
    pub fn received(&self, origin: &str) {
        self.lock().receive(origin);
    }

    /// The origin's fate (the first one settled stands).
    pub fn settled(&self, origin: &str, fate: Fate) {
        let mut books = self.lock();
        let now = books.now();
        books.settle(origin, fate.into(), now);
    }

    /// A commit that may have counted this origin lost its reply.
    pub fn in_doubt(&self, origin: &str) {
        let mut books = self.lock();
        let now = books.now();
        books.doubt(origin, now);
    }

    /// Books what one invocation reported; `records` is the batch it processed.
    pub fn book(&self, records: &[StreamRecord], accounting: &Accounting) {
        if accounting.is_empty() {
            return;
        }
        let mut books = self.lock();
        // One instant for the whole invocation: its commits are done when it is booked.
        let now = books.now();
        for booking in accounting.bookings(records) {
            match booking {
                Booking::Received(origin) => books.receive(&origin),
                Booking::Settled(origin, fate) => books.settle(&origin, fate.into(), now),
                Booking::InDoubt(origin) => books.doubt(&origin, now),
            }
        }
    }
}

#[cfg(test)]
mod tests {

    /// Reads exactly what parsing the whole 54-digit tail as a `u64` reads.
    #[test]
    fn sequence_counters_parse_like_the_tail_as_a_number() {
        let old = |s: &str| -> Option<u64> {
            if s.len() != 56 || !s.starts_with("49") {
                return None;
            }
            let tail = &s[2..];
            if !tail.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            tail.parse().ok()
        };
        let mut cases: Vec<String> = [0u64, 1, 9, 10, 12_345, u64::MAX - 1, u64::MAX]
            .iter()
            .map(|n| format!("49{n:054}"))
            .collect();
        cases.push(format!("49{}", "9".repeat(54)));
        cases.push(format!("49{:034}{}", 1, "0".repeat(20)));
        cases.push(format!("49{:053}x", 0));
        cases.push(format!("48{:054}", 7));
        cases.push(format!("49{:053}", 7));
        cases.push(format!("4918446744073709551616{}", "0".repeat(34)));
        cases.push(format!("49{}18446744073709551616", "0".repeat(34)));
        for case in &cases {
            assert_eq!(sequence_counter(case), old(case), "{case}");
        }
        assert_eq!(sequence_counter(&format!("49{:054}", 12_345)), Some(12_345));
        assert_eq!(
            sequence_counter(&format!("49{}18446744073709551616", "0".repeat(34))),
            None
        );
    }
    use super::*;

    fn origin(counter: u64, line: usize) -> String {
        format!("shardId-000000000003:49{counter:054}:{line}")
    }

    /// The same story told to a dense and a named ledger: redeliveries, re-emits,
    /// fates before receipt, fates without receipt, and multi-line records.
    fn story(ledger: &MemoryLedger) {
        for c in 1..=6 {
            ledger.received(&origin(c, 0));
        }
        ledger.received(&origin(7, 1));
        ledger.received(&origin(7, 1)); // redelivered to ingest: one event
        ledger.settled(&origin(1, 0), Fate::Counted(11));
        ledger.settled(&origin(1, 0), Fate::Duplicate(11)); // re-emitted copy: first stands
        ledger.settled(&origin(2, 0), Fate::Duplicate(12));
        ledger.settled(&origin(3, 0), Fate::Late);
        ledger.settled(&origin(4, 0), Fate::DeadLetter(Reason::NotJson));
        ledger.settled(&origin(5, 0), Fate::DeadLetter(Reason::Unprocessable));
        ledger.settled(&origin(5, 0), Fate::Counted(15));
        ledger.settled(&origin(7, 1), Fate::Counted(17));
        ledger.settled(&origin(9, 0), Fate::Counted(19)); // never received: not an event in
        // 6 is received and never settled.
        // 10 and 11: a commit lost its reply; the retry finds 10 counted (the lost commit
        // went through), and commits 11 itself. 12 stays in doubt: unsettled.
        for c in 10..=12 {
            ledger.received(&origin(c, 0));
            ledger.in_doubt(&origin(c, 0));
        }
        ledger.settled(&origin(10, 0), Fate::Duplicate(20));
        ledger.settled(&origin(11, 0), Fate::Counted(21));
        ledger.settled(&origin(11, 0), Fate::Duplicate(21));
        // 13: in doubt, and late on the retry (at-least-once): the lost commit counted it.
        ledger.received(&origin(13, 0));
        ledger.in_doubt(&origin(13, 0));
        ledger.settled(&origin(13, 0), Fate::Late);
        // 14: no SQL view took it; a later copy counted changes nothing.
        ledger.received(&origin(14, 0));
        ledger.settled(&origin(14, 0), Fate::Filtered);
        ledger.settled(&origin(14, 0), Fate::Counted(24));
    }

    #[test]
    fn dense_and_named_books_agree_on_every_fate() {
        let dense = MemoryLedger::for_memory_streams();
        let named = MemoryLedger::new();
        story(&dense);
        story(&named);
        let want = LedgerSummary {
            events_in: 12,
            counted: 5,
            dead_letter: 2,
            late: 1,
            duplicates: 1,
            filtered: 1,
            unsettled: 2,
            dead_letter_reasons: vec![(Reason::NotJson, 1), (Reason::Unprocessable, 1)],
        };
        assert_eq!(dense.summary(), want);
        assert_eq!(named.summary(), want);
        assert_eq!(dense.fate(&origin(1, 0)), Some(Settled::Counted));
        assert_eq!(
            dense.fate(&origin(5, 0)),
            Some(Settled::DeadLetter(Reason::Unprocessable))
        );
        assert_eq!(dense.fate(&origin(6, 0)), None);
        assert_eq!(dense.fate(&origin(10, 0)), Some(Settled::Counted));
        assert_eq!(named.fate(&origin(10, 0)), Some(Settled::Counted));
        assert_eq!(dense.fate(&origin(12, 0)), None);
        assert_eq!(named.fate(&origin(13, 0)), Some(Settled::Counted));
        // Only the second-line origin is kept by name in the dense ledger.
        assert_eq!(dense.lock().named.len(), 1);
        assert_eq!(named.lock().named.len(), 13);
    }

    #[test]
    fn every_reason_has_a_one_byte_code_that_decodes_back() {
        for r in Reason::ALL {
            let code = encode(Settled::DeadLetter(r)).expect("code");
            assert!(code < IN_DOUBT, "{r:?}");
            assert_eq!(decode(code), Some(Settled::DeadLetter(r)));
        }
        for s in [Settled::Counted, Settled::Duplicate, Settled::Late] {
            assert_eq!(encode(s).and_then(decode), Some(s));
        }
    }

    #[test]
    fn a_million_events_cost_about_a_megabyte() {
        let ledger = MemoryLedger::for_memory_streams();
        for c in 1..=1_000_000u64 {
            ledger.received(&origin(c, 0));
            ledger.settled(&origin(c, 0), Fate::Counted(c));
        }
        let s = ledger.summary();
        assert_eq!(
            (s.events_in, s.counted, s.unsettled),
            (1_000_000, 1_000_000, 0)
        );
        let bytes = ledger.approximate_bytes();
        assert!(bytes <= 2_100_000, "{bytes} bytes for a million events");
    }

    fn seq(counter: u64) -> String {
        format!("49{counter:054}")
    }

    /// Every way an event can be counted, each measured to the commit that counted it,
    /// on the simulated clock; nothing else is a sample.
    fn latency_story(ledger: &MemoryLedger, clock: &crate::clock::ManualClock) {
        // Records 1..=8 put at 1,000 ms, record 20 (two lines) at 1,500 ms.
        ledger.note_put(
            (1..=8)
                .map(seq)
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str),
        );
        clock.advance_to(1_500);
        ledger.note_put([seq(20).as_str()]);
        for c in 1..=8 {
            ledger.received(&origin(c, 0));
        }
        ledger.received(&origin(20, 0));
        ledger.received(&origin(20, 1));
        clock.advance_to(3_000);
        ledger.received(&origin(1, 0)); // a redelivered raw record: its arrival stands
        ledger.settled(&origin(1, 0), Fate::Counted(1)); // 2,000 ms
        ledger.settled(&origin(20, 1), Fate::Counted(21)); // 1,500 ms (a second line)
        ledger.settled(&origin(2, 0), Fate::Duplicate(2)); // not a sample
        ledger.settled(&origin(3, 0), Fate::Late); // not a sample
        ledger.settled(&origin(4, 0), Fate::DeadLetter(Reason::NotJson)); // not a sample
        // 5: its commit lost its reply at 3,000; the retry at 7,000 finds it counted.
        ledger.in_doubt(&origin(5, 0));
        // 6: in doubt at 3,000 too, but the lost commit did not go through: the retry at
        // 7,000 counts it.
        ledger.in_doubt(&origin(6, 0));
        clock.advance_to(7_000);
        ledger.settled(&origin(5, 0), Fate::Duplicate(5)); // 2,000 ms
        ledger.settled(&origin(6, 0), Fate::Counted(6)); // 6,000 ms
        ledger.settled(&origin(1, 0), Fate::Duplicate(1)); // a re-emitted copy: nothing
        // 7: counted at 7,000 before its receipt is booked (at 9,000).
        ledger.settled(&origin(7, 0), Fate::Counted(7)); // 6,000 ms
        clock.advance_to(9_000);
        ledger.received(&origin(7, 0));
        // 8 stays in flight; 30 was never noted as put: counted, not measured.
        ledger.received(&origin(30, 0));
        ledger.settled(&origin(30, 0), Fate::Counted(30));
    }

    #[test]
    fn latency_is_measured_from_the_put_to_the_commit_that_counted_each_event() {
        for dense in [true, false] {
            let clock = Arc::new(crate::clock::ManualClock::starting_at(1_000));
            let ledger = match dense {
                true => MemoryLedger::for_memory_streams(),
                false => MemoryLedger::new(),
            }
            .with_latency(clock.clone());
            latency_story(&ledger, &clock);
            let summary = ledger.summary();
            let latency = ledger.latency().expect("measured");
            assert_eq!(summary.counted, 6, "dense {dense}: {summary:?}");
            assert_eq!(latency.unmeasured, 1, "dense {dense}");
            let sim = &latency.simulated_ms;
            assert_eq!(sim.count(), summary.counted - latency.unmeasured);
            assert_eq!(latency.real_us.count(), sim.count());
            // Samples: 1,500, 2,000, 2,000, 6,000, 6,000.
            assert_eq!(sim.min(), Some(1_500), "dense {dense}");
            assert_eq!(sim.max(), Some(6_000), "dense {dense}");
            // 2,000 sits in a bucket 8 wide (the reported value is its top, 2,007).
            for q in [0.5, 0.6] {
                let p = sim.percentile(q).expect("samples");
                assert!((2_000..2_008).contains(&p), "dense {dense}: {q} {p}");
            }
            assert_eq!(sim.percentile(0.61), Some(6_000), "dense {dense}");
            assert_eq!(
                (latency.in_doubt_held, latency.puts_held),
                (0, 2),
                "doubts are resolved; the puts are kept until forgotten"
            );
        }
    }

    #[test]
    fn a_ledger_without_latency_measures_nothing_and_the_put_log_can_be_forgotten() {
        let clock = Arc::new(crate::clock::ManualClock::starting_at(0));
        let plain = MemoryLedger::for_memory_streams();
        latency_story(&plain, &clock);
        assert_eq!(plain.latency(), None);
        let clock = Arc::new(crate::clock::ManualClock::starting_at(0));
        let ledger = MemoryLedger::for_memory_streams().with_latency(clock.clone());
        ledger.note_put([seq(1).as_str(), seq(2).as_str(), "not-ours"]);
        ledger.forget_puts();
        ledger.received(&origin(1, 0));
        ledger.settled(&origin(1, 0), Fate::Counted(1));
        let latency = ledger.latency().expect("measured");
        assert_eq!((latency.simulated_ms.count(), latency.unmeasured), (0, 1));
        assert_eq!((latency.puts_held, latency.in_doubt_held), (0, 0));
    }

    /// The tracker holds one chunk's puts and the commits in doubt, never the events: a
    /// million events received and settled a chunk at a time leave nothing behind.
    #[test]
    fn latency_memory_follows_what_is_in_flight_not_the_volume() {
        let clock = Arc::new(crate::clock::ManualClock::starting_at(0));
        let ledger = MemoryLedger::for_memory_streams().with_latency(clock.clone());
        let chunk = 20_000u64;
        let mut most = 0;
        for first in (1..=1_000_000u64).step_by(chunk as usize) {
            let counters = first..first + chunk;
            let seqs: Vec<String> = counters.clone().map(seq).collect();
            for put in seqs.chunks(500) {
                ledger.note_put(put.iter().map(String::as_str));
            }
            counters
                .clone()
                .for_each(|c| ledger.received(&origin(c, 0)));
            // Every tenth commit loses its reply; its retry finds the event counted.
            for c in counters.clone().step_by(10) {
                ledger.in_doubt(&origin(c, 0));
            }
            most = most.max(ledger.latency().expect("measured").in_doubt_held);
            clock.advance_by(1_000);
            for c in counters {
                let fate = match c % 10 == first % 10 {
                    true => Fate::Duplicate(c),
                    false => Fate::Counted(c),
                };
                ledger.settled(&origin(c, 0), fate);
            }
            ledger.forget_puts();
        }
        let latency = ledger.latency().expect("measured");
        assert_eq!(latency.simulated_ms.count(), 1_000_000);
        // The in-doubt tenth is measured to its lost commit (0 ms), the rest to 1,000.
        assert_eq!(latency.simulated_ms.percentile(0.1), Some(0));
        assert_eq!(latency.simulated_ms.percentile(0.11), Some(1_000));
        assert_eq!((latency.in_doubt_held, latency.puts_held), (0, 0));
        assert_eq!(most, chunk as usize / 10);
        // The books' one to two bytes per event, plus the histograms and the doubts'
        // table, sized for one chunk's commits in doubt.
        let bytes = ledger.approximate_bytes();
        assert!(
            bytes <= 2_100_000 + 200_000,
            "{bytes} bytes for a million events"
        );
    }

    #[test]
    fn origins_outside_the_in_process_numbering_are_named() {
        assert_eq!(dense_index(&origin(42, 0)), Some(42));
        assert_eq!(dense_index(&origin(42, 1)), None);
        assert_eq!(dense_index("shardId-0:1:0"), None, "moto numbers");
        assert_eq!(
            dense_index(
                "shardId-000000000000:49590338271490256608559692538361571095921575989136588898:0"
            ),
            None,
            "a real Kinesis sequence number does not fit"
        );
        let ledger = MemoryLedger::for_memory_streams();
        // Far past the end of the array: named, not a giant allocation.
        ledger.received(&origin(1 << 40, 0));
        assert!(ledger.lock().dense.is_empty());
        assert_eq!(ledger.summary().unsettled, 1);
    }
}
