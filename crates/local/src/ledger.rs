//! The local runner's ledger: what became of every event, by origin. A redelivered or
//! re-emitted event has the same origin, so its first settled fate is the one that
//! stands; `events_in` must equal the sum of the fates, or something was lost.
//!
//! The stages never call the ledger: each reports its accounting in its
//! [`BatchOutcome`](sluice_core::outcome::BatchOutcome) and the runner books it here
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

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use sluice_core::envelope::Reason;
use sluice_core::outcome::{Accounting, Booking, Fate};
use sluice_core::record::StreamRecord;

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
}

impl From<Fate> for Settled {
    fn from(fate: Fate) -> Self {
        match fate {
            Fate::Counted(_) => Settled::Counted,
            Fate::Duplicate(_) => Settled::Duplicate,
            Fate::Late => Settled::Late,
            Fate::DeadLetter(r) => Settled::DeadLetter(r),
        }
    }
}

/// The one-byte code of a fate, if it has one.
fn encode(fate: Settled) -> Option<u8> {
    Some(match fate {
        Settled::Counted => COUNTED,
        Settled::Duplicate => DUPLICATE,
        Settled::Late => LATE,
        Settled::DeadLetter(r) => {
            let at = Reason::ALL.iter().position(|x| *x == r)?;
            let code = DEAD_LETTER_BASE.checked_add(u8::try_from(at).ok()?)?;
            return (code < IN_DOUBT).then_some(code);
        }
    })
}

fn decode(code: u8) -> Option<Settled> {
    match code & FATE_MASK {
        NO_FATE | MOVED | IN_DOUBT => None,
        COUNTED => Some(Settled::Counted),
        DUPLICATE => Some(Settled::Duplicate),
        LATE => Some(Settled::Late),
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
    fn settle(&mut self, fate: Settled) {
        let fate = resolve(self.in_doubt, fate);
        self.fate.get_or_insert(fate);
        self.in_doubt = false;
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
}

/// The dense index of an origin `shard:49<54 digits>:0`, if it has one.
fn dense_index(origin: &str) -> Option<u64> {
    let mut parts = origin.rsplitn(3, ':');
    let line = parts.next()?;
    let sequence = parts.next()?;
    parts.next()?;
    if line != "0" || sequence.len() != 56 || !sequence.starts_with("49") {
        return None;
    }
    let tail = &sequence[2..];
    if !tail.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    tail.parse().ok()
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

    fn receive(&mut self, origin: &str) {
        match self.slot(origin) {
            Some(b) => *b |= RECEIVED,
            None => self.named.entry(origin.to_owned()).or_default().received = true,
        }
    }

    fn doubt(&mut self, origin: &str) {
        match self.slot(origin) {
            Some(b) => {
                if *b & FATE_MASK == NO_FATE {
                    *b |= IN_DOUBT;
                }
            }
            None => {
                let entry = self.named.entry(origin.to_owned()).or_default();
                entry.in_doubt |= entry.fate.is_none();
            }
        }
    }

    fn settle(&mut self, origin: &str, fate: Settled) {
        let in_doubt = self
            .slot(origin)
            .is_some_and(|b| *b & FATE_MASK == IN_DOUBT);
        let fate = resolve(in_doubt, fate);
        let code = encode(fate);
        match (self.slot(origin), code) {
            (Some(b), Some(code)) => {
                if matches!(*b & FATE_MASK, NO_FATE | IN_DOUBT) {
                    *b = (*b & RECEIVED) | code;
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
                entry.settle(fate);
                self.named.insert(origin.to_owned(), entry);
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
        books.dense.capacity()
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
        self.lock().settle(origin, fate.into());
    }

    /// A commit that may have counted this origin lost its reply.
    pub fn in_doubt(&self, origin: &str) {
        self.lock().doubt(origin);
    }

    /// Books what one invocation reported; `records` is the batch it processed.
    pub fn book(&self, records: &[StreamRecord], accounting: &Accounting) {
        if accounting.is_empty() {
            return;
        }
        let mut books = self.lock();
        for booking in accounting.bookings(records) {
            match booking {
                Booking::Received(origin) => books.receive(&origin),
                Booking::Settled(origin, fate) => books.settle(&origin, fate.into()),
                Booking::InDoubt(origin) => books.doubt(&origin),
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
    }

    #[test]
    fn dense_and_named_books_agree_on_every_fate() {
        let dense = MemoryLedger::for_memory_streams();
        let named = MemoryLedger::new();
        story(&dense);
        story(&named);
        let want = LedgerSummary {
            events_in: 11,
            counted: 5,
            dead_letter: 2,
            late: 1,
            duplicates: 1,
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
        assert_eq!(named.lock().named.len(), 12);
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
