//! What the detect stage remembers of groups' closed windows between batches, so that a
//! history read fetches the windows it has not seen instead of the whole lookback again.
//!
//! A closed window never changes (every event that could still fall in it is judged
//! late), so what a rule observed on it stays true. After judging a group's closing
//! range `[from, to)`, the stage knows every window of the group with data ending before
//! `to`, back to the rules' lookback: a [`Known`] entry holds the newest of them, with
//! what each watching rule observed on them. The next range usually starts where the
//! last one ended, so its read asks only for the windows ending in it, with no
//! lookback, and the entry supplies the lookback: one or two items per read where a
//! z-score over 20 windows read 21, in DynamoDB read units as in time.
//!
//! The window lists a rule sees are exactly those a full read gives it (the read's
//! windows, then the entry's, cut to the closed windows plus the lookback), so alerts do
//! not depend on whether the entry was there, and a read never returns more windows
//! than a full one. The entry is used only when the range starts where it ends, as a
//! group's ranges follow each other (each commit closes from where the last one
//! stopped); otherwise (a redelivered or overlapping range, or a gap: ranges that
//! another container judged, or an entry that was dropped) the read is full.
//!
//! Memory is bounded by the bytes held (entries' keys and windows, counted by
//! [`KnownHistory::entry_bytes`]): two generations, each holding at most
//! [`KnownHistory::capacity`] bytes; when the current one fills it becomes the
//! previous one and the older is dropped; an entry found in the previous generation
//! moves to the current one. Different rules (a rules reload that changed them) empty it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::detect::rules::Rule;
use crate::state::item::{ClosingRange, GroupKey};

/// A closed window with data, as the rules watching its group saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub start_ms: i64,
    /// What each watching rule observed on it ([`Rule::observe`]), in the order of the
    /// watching rules.
    pub values: Box<[Option<f64>]>,
}

/// A group's closed windows of one size, known up to `known_end_ms`.
#[derive(Clone, Debug, PartialEq)]
pub struct Known {
    /// Every window with data ending before this is in `windows` or older than all of
    /// them.
    pub known_end_ms: i64,
    /// The newest windows with data ending before `known_end_ms`, newest first: the
    /// lookback's worth, or every one the group has when it has fewer.
    pub windows: Vec<Observed>,
}

/// The read to make for a group's closing range, and what is known already.
#[derive(Debug, PartialEq)]
pub struct HistoryRead {
    /// The range to ask the store for (windows ending in it), and its lookback.
    pub closing: ClosingRange,
    pub lookback: u32,
    /// The entry the read continues, when there is one.
    pub known: Option<Known>,
}

type Slot = (GroupKey, i64);

pub struct KnownHistory {
    rules: Option<Arc<Vec<Rule>>>,
    current: HashMap<Slot, Known>,
    previous: HashMap<Slot, Known>,
    current_bytes: usize,
    capacity: usize,
}

/// Bytes one generation holds at most (as [`KnownHistory::entry_bytes`] counts them):
/// the two stay within 8 MiB (plus the allocator's overhead) however many groups a
/// shard carries and however long their keys. With 4 rules a window takes 88 bytes,
/// so a generation holds about 40,000 windows of short-keyed groups with 20-window
/// lookbacks.
pub const DEFAULT_CAPACITY: usize = 4 << 20;

/// What an entry costs besides its key text and windows: its map slot, its `Known`
/// and the key's and window list's headers.
const ENTRY_OVERHEAD_BYTES: usize = 128;

impl Default for KnownHistory {
    fn default() -> Self {
        KnownHistory::with_capacity(DEFAULT_CAPACITY)
    }
}

impl KnownHistory {
    /// A cache holding at most `capacity` bytes per generation (0: remembers nothing,
    /// every read is full).
    pub fn with_capacity(capacity: usize) -> Self {
        KnownHistory {
            rules: None,
            current: HashMap::new(),
            previous: HashMap::new(),
            current_bytes: 0,
            capacity,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets everything when the rules are not those it was filled under.
    pub fn rules_are(&mut self, rules: &Arc<Vec<Rule>>) {
        let same = self
            .rules
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, rules) || **r == **rules);
        if !same {
            self.current.clear();
            self.previous.clear();
            self.current_bytes = 0;
        }
        self.rules = Some(rules.clone());
    }

    /// Step 1: what to read for `closing` of `group`'s windows of `size_ms`, taking the
    /// group's entry out when the read can continue it.
    pub fn plan(
        &mut self,
        group: &GroupKey,
        size_ms: i64,
        closing: ClosingRange,
        lookback: u32,
    ) -> HistoryRead {
        let full = HistoryRead {
            closing,
            lookback,
            known: None,
        };
        let slot = (group.clone(), size_ms);
        let Some(known) = self
            .current
            .remove(&slot)
            .or_else(|| self.previous.remove(&slot))
        else {
            return full;
        };
        if known.known_end_ms != closing.from_ms {
            return full;
        }
        HistoryRead {
            closing,
            lookback: 0,
            known: Some(known),
        }
    }

    /// Step 2: the windows the rules judge and look back on, newest first: those read
    /// (already observed, in the read's order), then the entry's, cut to what a full
    /// read of `closing` returns: `in_range` windows ending in it plus `lookback`.
    pub fn merge(
        read: Vec<Observed>,
        known: Option<Known>,
        in_range: usize,
        lookback: u32,
    ) -> Vec<Observed> {
        let mut windows = read;
        if let Some(known) = known {
            windows.extend(known.windows);
        }
        windows.truncate(in_range.saturating_add(lookback as usize));
        windows
    }

    /// Step 3: remembers the group's windows ending before `known_end_ms` (the newest
    /// `lookback` of `windows`). Only call it when `windows` holds every window with
    /// data ending before `known_end_ms` back to the lookback (or to the group's first):
    /// after a read that continued an entry, or a full read that found windows.
    pub fn remember(
        &mut self,
        group: &GroupKey,
        size_ms: i64,
        known_end_ms: i64,
        mut windows: Vec<Observed>,
        lookback: u32,
    ) {
        windows.truncate(lookback as usize);
        let held = Self::entry_bytes(group, &windows);
        if held > self.capacity {
            return;
        }
        if self.current_bytes + held > self.capacity {
            self.previous = std::mem::take(&mut self.current);
            self.current_bytes = 0;
        }
        self.current_bytes += held;
        self.current.insert(
            (group.clone(), size_ms),
            Known {
                known_end_ms,
                windows,
            },
        );
    }

    /// The bytes an entry of `group` holding `windows` counts for: its key text, each
    /// window and its values, and [`ENTRY_OVERHEAD_BYTES`].
    pub fn entry_bytes(group: &GroupKey, windows: &[Observed]) -> usize {
        let window = |w: &Observed| {
            std::mem::size_of::<Observed>() + std::mem::size_of_val::<[Option<f64>]>(&w.values)
        };
        ENTRY_OVERHEAD_BYTES
            + group.key.len()
            + group.metric.len()
            + windows.iter().map(window).sum::<usize>()
    }

    /// Entries held, in both generations.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    fn group(key: &str) -> GroupKey {
        GroupKey {
            key: key.into(),
            metric: "t".into(),
        }
    }

    fn range(from: i64, to: i64) -> ClosingRange {
        ClosingRange {
            from_ms: from * MINUTE,
            to_ms: to * MINUTE,
        }
    }

    fn observed(minute: i64) -> Observed {
        Observed {
            start_ms: minute * MINUTE,
            values: vec![Some(minute as f64)].into(),
        }
    }

    fn starts(windows: &[Observed]) -> Vec<i64> {
        windows.iter().map(|w| w.start_ms / MINUTE).collect()
    }

    #[test]
    fn a_range_that_continues_an_entry_reads_from_its_end_without_lookback() {
        let mut cache = KnownHistory::default();
        let g = group("a");
        // Nothing known: the full range and lookback.
        let read = cache.plan(&g, MINUTE, range(5, 6), 3);
        assert_eq!(
            (read.closing, read.lookback, read.known),
            (range(5, 6), 3, None)
        );
        cache.remember(
            &g,
            MINUTE,
            6 * MINUTE,
            (1..=5).rev().map(observed).collect(),
            3,
        );
        assert_eq!(cache.len(), 1);
        // The next range starts where the entry ends.
        let read = cache.plan(&g, MINUTE, range(6, 8), 3);
        assert_eq!((read.closing, read.lookback), (range(6, 8), 0));
        let known = read.known.expect("continued");
        assert_eq!(starts(&known.windows), [5, 4, 3], "the lookback's worth");
        assert!(cache.is_empty(), "taken out while the read is under way");
        // Minutes 6 and 7 read, then the entry's, cut to 2 in range + 3.
        let merged = KnownHistory::merge(vec![observed(7), observed(6)], Some(known), 2, 3);
        assert_eq!(starts(&merged), [7, 6, 5, 4, 3]);
    }

    #[test]
    fn a_range_that_does_not_start_where_the_entry_ends_is_read_in_full() {
        let mut cache = KnownHistory::default();
        let g = group("a");
        let remember = |cache: &mut KnownHistory| {
            cache.remember(&g, MINUTE, 6 * MINUTE, vec![observed(5), observed(4)], 2)
        };
        // A gap: windows ending in [6, 8) were judged elsewhere, or not yet.
        remember(&mut cache);
        let gap = cache.plan(&g, MINUTE, range(8, 9), 2);
        assert_eq!(
            (gap.closing, gap.lookback, gap.known),
            (range(8, 9), 2, None)
        );
        // An overlap or a redelivery.
        remember(&mut cache);
        let overlap = cache.plan(&g, MINUTE, range(5, 7), 2);
        assert_eq!(
            (overlap.closing, overlap.lookback, overlap.known),
            (range(5, 7), 2, None)
        );
        // Either way the entry is gone: the full read's windows replace it.
        assert!(cache.is_empty());
    }

    #[test]
    fn groups_and_sizes_are_apart_and_memory_stays_within_two_generations() {
        // Room for two entries of two windows.
        let two = vec![observed(0), observed(-1)];
        let mut cache =
            KnownHistory::with_capacity(2 * KnownHistory::entry_bytes(&group("a"), &two));
        for key in ["a", "b", "c"] {
            cache.remember(
                &group(key),
                MINUTE,
                MINUTE,
                vec![observed(0), observed(-1)],
                2,
            );
        }
        // a and b filled the first generation; c started a second.
        assert_eq!((cache.current.len(), cache.previous.len()), (1, 2));
        assert!(
            cache
                .plan(&group("a"), 60 * MINUTE, range(1, 2), 2)
                .known
                .is_none()
        );
        assert!(
            cache
                .plan(&group("a"), MINUTE, range(1, 2), 2)
                .known
                .is_some()
        );
        cache.remember(
            &group("d"),
            MINUTE,
            MINUTE,
            vec![observed(0), observed(-1)],
            2,
        );
        cache.remember(&group("e"), MINUTE, MINUTE, vec![observed(0)], 2);
        // d filled the second generation; e started a third: b is gone with the first.
        assert_eq!(cache.len(), 3);
        assert!(
            cache
                .plan(&group("b"), MINUTE, range(1, 2), 2)
                .known
                .is_none()
        );
        // A long key counts: an entry whose key alone is over the capacity is not kept.
        let mut small = KnownHistory::with_capacity(1_000);
        let long = GroupKey {
            key: "k".repeat(1_000),
            metric: "t".into(),
        };
        small.remember(&long, MINUTE, MINUTE, vec![observed(0)], 2);
        assert!(small.is_empty());
        // A cache of nothing remembers nothing.
        let mut none = KnownHistory::with_capacity(0);
        none.remember(&group("a"), MINUTE, MINUTE, vec![observed(0)], 2);
        assert!(none.is_empty());
    }

    #[test]
    fn other_rules_empty_it() {
        let rules = |threshold: f64| {
            let text = format!(
                r#"{{"id":"z","kind":"zscore","type":"t","window_seconds":60,"stat":"mean","threshold":{threshold}}}"#
            );
            Arc::new(crate::detect::rules::parse_rules(&text).expect("rules"))
        };
        let mut cache = KnownHistory::default();
        cache.rules_are(&rules(3.0));
        cache.remember(&group("a"), MINUTE, MINUTE, vec![observed(0)], 2);
        cache.rules_are(&rules(3.0));
        assert_eq!(cache.len(), 1, "the same rules, reloaded");
        cache.rules_are(&rules(4.0));
        assert!(cache.is_empty());
    }
}
