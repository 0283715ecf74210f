//! Records as stages see them, independent of the Lambda event type, and records as
//! stages write them.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// One Kinesis record delivered to a stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRecord {
    /// Stream name (the last part of `eventSourceARN`).
    pub stream: String,
    pub shard_id: String,
    pub sequence_number: String,
    pub partition_key: String,
    pub data: Vec<u8>,
    /// `approximateArrivalTimestamp` in epoch milliseconds.
    pub arrival_ms: i64,
}

impl StreamRecord {
    /// The shard id and sequence number that name this record's lines: its own, or for
    /// a replayed record those of the original it carries ([`crate::input::replay`]).
    pub fn identity(&self) -> (&str, &str) {
        crate::input::replay::identity(&self.data, &self.shard_id, &self.sequence_number)
    }

    /// Identifies a line of this record for ever: `shard:sequence:line`.
    pub fn origin_of_line(&self, line: usize) -> String {
        let (shard, sequence) = self.identity();
        format!("{shard}:{sequence}:{line}")
    }

    /// Identifies a line of a payload of this record: `shard:sequence:line` for the record
    /// itself (or what it inflated to), `shard:sequence:sub:line` for line `line` of user
    /// record `sub` of a KPL aggregate. The KPL's sub-sequence number is the user record's
    /// index in the aggregate, so each user record keeps a distinct, stable origin.
    pub fn origin_of(&self, sub: Option<usize>, line: usize) -> String {
        match sub {
            None => self.origin_of_line(line),
            Some(sub) => {
                let (shard, sequence) = self.identity();
                format!("{shard}:{sequence}:{sub}:{line}")
            }
        }
    }
}

/// The lines of a record's data: the same slices as `data.split(|b| *b == b'\n')` (a
/// trailing newline ends with an empty line), found with a vectorized search (a byte
/// loop was 7 % of the aggregate stage's time).
pub fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let current = rest?;
        match memchr::memchr(b'\n', current) {
            Some(at) => {
                rest = Some(&current[at + 1..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// One record a stage writes (`PutRecords` entry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutRecord {
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// Kinesis's hard limit on one record: data plus partition key (UTF-8 bytes), 1 MiB.
pub const MAX_KINESIS_RECORD_BYTES: usize = 1024 * 1024;

/// Leave room under Kinesis's 1 MiB record limit for the partition key (at most 256
/// characters, so at most 1024 bytes of UTF-8).
pub const PACKED_RECORD_BYTES: usize = MAX_KINESIS_RECORD_BYTES - 1024;

/// Whether one line can be written as (part of) a record under `partition_key`. Stages
/// check every output line with this before packing it and dead-letter those that
/// cannot fit as `record_too_large`, so [`pack_lines`] never meets one.
pub fn line_fits(partition_key: &str, line_len: usize) -> bool {
    line_len <= PACKED_RECORD_BYTES && partition_key.len() + line_len <= MAX_KINESIS_RECORD_BYTES
}

/// Packs lines into newline-delimited records, one or more per partition key, keeping
/// the order of lines within each key and the order in which keys first appear.
/// Fewer, larger records cost fewer `PutRecords` entries and keep per-key order across
/// retries (see the Kinesis sink), and every stage accepts NDJSON records.
///
/// Guard: no record it returns exceeds `max_bytes` of data, nor 1 MiB of data plus
/// partition key. A line that cannot fit on its own is a caller's bug (stages check with
/// [`line_fits`] first); it fails the whole call with a non-retryable
/// [`Error::LimitExceeded`] rather than letting an oversize record reach `PutRecords`,
/// where it would fail the batch at every retry.
pub fn pack_lines(
    lines: impl IntoIterator<Item = (String, Vec<u8>)>,
    max_bytes: usize,
) -> Result<Vec<OutRecord>> {
    let mut order: Vec<String> = Vec::new();
    let mut by_key: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for (key, line) in lines {
        let budget = max_bytes.min(MAX_KINESIS_RECORD_BYTES.saturating_sub(key.len()));
        if line.len() > budget {
            return Err(Error::LimitExceeded {
                service: "kinesis",
                operation: "PutRecords",
                limit: "record size (data + partition key)",
                max: budget,
                actual: line.len(),
            });
        }
        // Look up before inserting: a key is cloned once, not once per line.
        match by_key.get_mut(&key) {
            Some(lines) => lines.push(line),
            None => {
                by_key.insert(key.clone(), vec![line]);
                order.push(key);
            }
        }
    }
    let mut out = Vec::new();
    for key in order {
        let budget = max_bytes.min(MAX_KINESIS_RECORD_BYTES.saturating_sub(key.len()));
        let lines = by_key.remove(&key).unwrap_or_default();
        // Sized for all of the key's lines (or one full record) up front.
        let mut remaining = lines.iter().map(|l| l.len() + 1).sum::<usize>();
        let mut current: Vec<u8> = Vec::with_capacity(remaining.min(budget));
        for line in lines {
            if !current.is_empty() && current.len() + 1 + line.len() > budget {
                let next = Vec::with_capacity(remaining.min(budget));
                out.push(OutRecord {
                    partition_key: key.clone(),
                    data: std::mem::replace(&mut current, next),
                });
            }
            if !current.is_empty() {
                current.push(b'\n');
            }
            current.extend_from_slice(&line);
            remaining -= line.len() + 1;
        }
        if !current.is_empty() {
            out.push(OutRecord {
                partition_key: key,
                data: current,
            });
        }
    }
    Ok(out)
}

/// [`pack_lines`] done as the lines arrive: each line is copied into one arena as it
/// comes, and each record is allocated once, at its exact size, by [`finish`]
/// (`LinePacker::finish`). A stage needs no `String` and no buffer per line (a line is
/// encoded into one reused scratch buffer and pushed from there), and no record buffer
/// is regrown line by line (regrowing per-key buffers cost enrich ~11 % in `realloc`).
/// Gives exactly the records `pack_lines` gives for the same lines, in the same order.
///
/// [`finish`]: LinePacker::finish
#[derive(Debug)]
pub struct LinePacker {
    max_bytes: usize,
    /// Index of each key in `keys`: one `String` per distinct key.
    slots: HashMap<String, usize>,
    /// Per key, in order of first appearance.
    keys: Vec<PackedKey>,
    /// Every line pushed, back to back.
    arena: Vec<u8>,
}

#[derive(Debug)]
struct PackedKey {
    key: String,
    budget: usize,
    /// Its lines, as (start, end) in the arena, in order.
    lines: Vec<(usize, usize)>,
}

/// The arena starts this large (a few hundred typical lines).
const ARENA_CAPACITY: usize = 64 * 1024;

impl LinePacker {
    pub fn new(max_bytes: usize) -> Self {
        LinePacker {
            max_bytes,
            slots: HashMap::new(),
            keys: Vec::new(),
            arena: Vec::new(),
        }
    }

    /// Whether no line was pushed.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds one line under `key`; a line that cannot fit a record on its own fails with
    /// the error [`pack_lines`] gives and leaves the packer as it was.
    pub fn push(&mut self, key: &str, line: &[u8]) -> Result<()> {
        let slot = match self.slots.get(key) {
            Some(&slot) => slot,
            None => {
                let budget = self
                    .max_bytes
                    .min(MAX_KINESIS_RECORD_BYTES.saturating_sub(key.len()));
                check_line(budget, line.len())?;
                self.slots.insert(key.to_owned(), self.keys.len());
                self.keys.push(PackedKey {
                    key: key.to_owned(),
                    budget,
                    lines: Vec::new(),
                });
                self.keys.len() - 1
            }
        };
        let k = &mut self.keys[slot];
        check_line(k.budget, line.len())?;
        if self.arena.capacity() == 0 {
            self.arena.reserve(ARENA_CAPACITY);
        }
        let start = self.arena.len();
        self.arena.extend_from_slice(line);
        k.lines.push((start, self.arena.len()));
        Ok(())
    }

    /// The packed records: per key in order of first appearance, in line order, split
    /// greedily as [`pack_lines`] splits them.
    pub fn finish(self) -> Vec<OutRecord> {
        let mut out = Vec::with_capacity(self.keys.len());
        for k in self.keys {
            let mut lines = k.lines.as_slice();
            while !lines.is_empty() {
                // How many lines the next record takes, and its exact size.
                let (mut n, mut size) = (0, 0);
                for &(start, end) in lines {
                    let len = end - start;
                    // An empty record takes the next line whatever its size (it fits:
                    // `push` checked); `pack_lines` joins lines only while they fit.
                    let grown = if size == 0 { len } else { size + 1 + len };
                    if size > 0 && grown > k.budget {
                        break;
                    }
                    size = grown;
                    n += 1;
                }
                let mut data = Vec::with_capacity(size);
                for &(start, end) in &lines[..n] {
                    if !data.is_empty() {
                        data.push(b'\n');
                    }
                    data.extend_from_slice(&self.arena[start..end]);
                }
                lines = &lines[n..];
                if !data.is_empty() {
                    out.push(OutRecord {
                        partition_key: k.key.clone(),
                        data,
                    });
                }
            }
        }
        out
    }
}

fn check_line(budget: usize, len: usize) -> Result<()> {
    if len > budget {
        return Err(Error::LimitExceeded {
            service: "kinesis",
            operation: "PutRecords",
            limit: "record size (data + partition key)",
            max: budget,
            actual: len,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_by_key_in_first_appearance_order() {
        let lines = vec![
            ("b".to_owned(), b"1".to_vec()),
            ("a".to_owned(), b"2".to_vec()),
            ("b".to_owned(), b"3".to_vec()),
        ];
        let out = pack_lines(lines, 100).expect("fits");
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].partition_key, "b");
        assert_eq!(out[0].data, b"1\n3");
        assert_eq!(out[1].data, b"2");
    }

    #[test]
    fn splits_when_a_record_would_exceed_the_limit() {
        let lines = (0..5).map(|i| ("k".to_owned(), vec![b'0' + i; 4]));
        let out = pack_lines(lines, 10).expect("fits");
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|r| r.data.len() <= 10));
        assert_eq!(out[0].data, b"0000\n1111");
        assert_eq!(out[2].data, b"4444");
    }

    #[test]
    fn a_line_that_cannot_fit_fails_the_call_instead_of_emitting_it() {
        let err = pack_lines(vec![("k".to_owned(), vec![b'x'; 11])], 10).expect_err("oversize");
        assert!(!err.is_retryable());
        assert_eq!(err.code(), "limit_exceeded");
        // The partition key counts against the 1 MiB record limit too.
        let key = "k".repeat(256);
        let line = vec![b'x'; MAX_KINESIS_RECORD_BYTES - 255];
        assert!(!line_fits(&key, line.len()));
        assert!(pack_lines(vec![(key, line)], usize::MAX).is_err());
        assert!(line_fits("k", PACKED_RECORD_BYTES));
        assert!(!line_fits("k", PACKED_RECORD_BYTES + 1));
    }

    #[test]
    fn origins_name_user_records_of_an_aggregate_apart() {
        let r = StreamRecord {
            stream: "s".into(),
            shard_id: "shardId-0".into(),
            sequence_number: "42".into(),
            partition_key: "p".into(),
            data: Vec::new(),
            arrival_ms: 0,
        };
        assert_eq!(r.origin_of(None, 3), "shardId-0:42:3");
        assert_eq!(r.origin_of(None, 3), r.origin_of_line(3));
        assert_eq!(r.origin_of(Some(0), 3), "shardId-0:42:0:3");
        assert_ne!(r.origin_of(Some(1), 0), r.origin_of(Some(0), 1));
    }

    proptest::proptest! {
        /// Whatever the bytes, `lines` yields exactly what splitting at each newline does.
        #[test]
        fn lines_are_the_newline_split(data in proptest::collection::vec(proptest::sample::select(vec![b'\n', b'a', b' ', 0xff]), 0..64)) {
            let split: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
            proptest::prop_assert_eq!(lines(&data).collect::<Vec<_>>(), split);
        }

        /// Whatever the lines and keys, every packed record fits Kinesis and no line is
        /// lost or reordered within its key.
        #[test]
        fn the_packer_packs_exactly_like_pack_lines(lines in proptest::collection::vec(("[a-c]{1,4}", 0usize..40), 0..80), max in 1usize..120) {
            let input: Vec<(String, Vec<u8>)> = lines.iter().enumerate().map(|(i, (k, n))| (k.clone(), vec![b'a' + (i % 26) as u8; *n])).collect();
            let mut packer = LinePacker::new(max);
            let pushed: Result<()> = input.iter().try_for_each(|(k, l)| packer.push(k, l));
            match (pack_lines(input.clone(), max), pushed) {
                (Ok(expected), Ok(())) => proptest::prop_assert_eq!(packer.finish(), expected),
                (Err(_), Err(_)) => {}
                (a, b) => proptest::prop_assert!(false, "pack_lines {:?} but the packer {:?}", a.map(|r| r.len()), b),
            }
        }

        #[test]
        fn packed_records_always_fit(lines in proptest::collection::vec(("[a-c]{1,4}", 1usize..40), 0..60), max in 1usize..100) {
            let input: Vec<(String, Vec<u8>)> = lines.iter().map(|(k, n)| (k.clone(), vec![b'x'; *n])).collect();
            match pack_lines(input.clone(), max) {
                Ok(out) => {
                    for r in &out {
                        proptest::prop_assert!(r.data.len() <= max);
                        proptest::prop_assert!(r.data.len() + r.partition_key.len() <= MAX_KINESIS_RECORD_BYTES);
                    }
                    let total: usize = out.iter().map(|r| r.data.split(|b| *b == b'\n').count()).sum();
                    proptest::prop_assert_eq!(total, input.len());
                }
                Err(_) => proptest::prop_assert!(input.iter().any(|(_, l)| l.len() > max)),
            }
        }
    }
}
