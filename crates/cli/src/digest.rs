//! What the demo keeps of its dead letters: counts by reason and a bounded sample,
//! folded as they stream by, and (for `--json`) each one's JSON line in a spill file
//! on disk, so memory stays the same whether ten or ten million inputs are rejected.
//!
//! A dead letter can be written more than once (a redelivered batch rejects its records
//! again; an upstream re-emit repeats one): it is one dead letter per origin and reason,
//! as [`crate::output::dead_letters`] judges. Copies are written while the batch that
//! made them is in flight, so the digest remembers identities only for the current
//! round (until the pipeline is idle again: nothing can be redelivered after that).

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};

use sluice_core::input::dead_letter::DeadLetter;
use sluice_core::input::record::StreamRecord;

use serde::Serialize;

use crate::output;

/// Dead letters kept whole for the summary and the dashboard: the first ones.
pub const SAMPLE_SIZE: usize = 20;

/// Dead letters counted by reason (a dead letter standing for several rejected lines
/// of one record counts once, as one `dead_letter` line of `--json` output does).
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct DeadLetters {
    pub total: u64,
    pub by_reason: BTreeMap<String, u64>,
    /// Set when the counts do not cover the whole stream (see the text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl DeadLetters {
    pub fn add(&mut self, letter: &DeadLetter) {
        self.total += 1;
        *self.by_reason.entry(letter.reason.to_string()).or_default() += 1;
    }

    #[cfg(test)]
    pub fn of(letters: &[DeadLetter]) -> Self {
        let mut counts = DeadLetters::default();
        letters.iter().for_each(|l| counts.add(l));
        counts
    }
}

#[derive(Default)]
pub struct DeadLetterDigest {
    counts: DeadLetters,
    sample: Vec<DeadLetter>,
    /// Identities (64-bit fingerprints) of the dead letters seen this round.
    seen: HashSet<u64>,
    /// Records on the stream that are not dead letters (they count nowhere else).
    unreadable: u64,
    spill: Option<Spill>,
}

impl DeadLetterDigest {
    /// Also keeps every dead letter's `--json` line, in a file that is gone when the
    /// digest is (its name is removed at once).
    pub fn keep_lines(&mut self) -> std::io::Result<()> {
        self.spill = Some(Spill::create()?);
        Ok(())
    }

    /// Folds one record of the dead-letter stream in.
    pub fn add(&mut self, record: &StreamRecord) -> std::io::Result<()> {
        let Ok(letter) = serde_json::from_slice::<DeadLetter>(&record.data) else {
            self.unreadable += 1;
            return Ok(());
        };
        if !self.seen.insert(identity(&letter)) {
            return Ok(());
        }
        self.counts.add(&letter);
        if let Some(spill) = &mut self.spill {
            spill.write_line(&output::json_line(&output::dead_letter_json(&letter))?)?;
        }
        if self.sample.len() < SAMPLE_SIZE {
            self.sample.push(letter);
        }
        Ok(())
    }

    /// The pipeline is idle: no dead letter seen so far can be written again.
    pub fn round_done(&mut self) {
        self.seen = HashSet::new();
    }

    pub fn counts(&self) -> &DeadLetters {
        &self.counts
    }

    pub fn sample(&self) -> &[DeadLetter] {
        &self.sample
    }

    /// Records of the stream that did not read as dead letters.
    pub fn unreadable(&self) -> u64 {
        self.unreadable
    }

    /// Copies every kept `--json` line to `out`, in the order they were written.
    pub fn write_lines(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        match &mut self.spill {
            Some(spill) => spill.copy_to(out),
            None => Ok(()),
        }
    }

    /// How many identities the current round holds (tests: they do not outlive it).
    #[cfg(test)]
    pub fn remembered(&self) -> usize {
        self.seen.len()
    }
}

fn identity(letter: &DeadLetter) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    match &letter.origin {
        Some(origin) => origin.hash(&mut h),
        None => (&letter.shard_id, &letter.sequence_number).hash(&mut h),
    }
    letter.reason.hash(&mut h);
    h.finish()
}

/// An unnamed file of lines: written as they come, read back once at the end.
struct Spill {
    file: BufWriter<File>,
}

impl Spill {
    fn create() -> std::io::Result<Self> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "sluice-dead-letters-{}-{n}.jsonl",
            std::process::id()
        ));
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        // The open handle keeps the data; without a name nothing is left behind, even
        // when the process is killed.
        std::fs::remove_file(&path)?;
        Ok(Spill {
            file: BufWriter::new(file),
        })
    }

    fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        self.file.write_all(line.as_bytes())?;
        self.file.write_all(b"\n")
    }

    fn copy_to(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        self.file.flush()?;
        let file = self.file.get_mut();
        let end = file.stream_position()?;
        file.seek(SeekFrom::Start(0))?;
        std::io::copy(&mut Read::by_ref(file).take(end), out)?;
        file.seek(SeekFrom::Start(end))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::input::envelope::{Reason, Rejection};

    fn record(origin: &str, reason: Reason) -> StreamRecord {
        let source = StreamRecord {
            stream: "raw".into(),
            shard_id: "shardId-000000000000".into(),
            sequence_number: "1".into(),
            partition_key: "k".into(),
            data: b"junk".to_vec(),
            arrival_ms: 0,
        };
        let rejection = Rejection {
            reason,
            field: None,
            detail: format!("detail of {origin}"),
            id: None,
        };
        let letter = DeadLetter::for_line("ingest", &source, 0, b"junk", &rejection)
            .with_origin(Some(origin.into()))
            .into_record("k");
        StreamRecord {
            data: letter.data,
            ..source
        }
    }

    #[test]
    fn copies_within_a_round_count_once_and_memory_does_not_follow_the_count() {
        let mut digest = DeadLetterDigest::default();
        digest.keep_lines().expect("spill");
        for round in 0..3 {
            for i in 0..1000 {
                let r = record(&format!("o{round}-{i}"), Reason::NotJson);
                digest.add(&r).expect("add");
                // A redelivery writes it again within the round.
                digest.add(&r).expect("add");
            }
            digest.add(&record("o-late", Reason::Late)).expect("add");
            assert!(digest.remembered() <= 1001);
            digest.round_done();
            assert_eq!(digest.remembered(), 0);
        }
        let counts = digest.counts();
        assert_eq!(counts.total, 3003);
        assert_eq!(counts.by_reason["not_json"], 3000);
        // The same origin in a later round is another dead letter (a producer resent
        // it after the first was settled); within one round it is a copy.
        assert_eq!(counts.by_reason["late"], 3);
        assert_eq!(digest.sample().len(), SAMPLE_SIZE);
        assert_eq!(digest.sample()[0].detail, "detail of o0-0");
        let mut out = Vec::new();
        digest.write_lines(&mut out).expect("lines");
        let lines: Vec<serde_json::Value> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 3003);
        assert_eq!(lines[0]["kind"], "dead_letter");
        assert_eq!(lines[0]["detail"], "detail of o0-0");
        assert_eq!(lines[1000]["reason"], "late");
        // Reading back leaves the spill writable and whole.
        digest
            .add(&record("o-after", Reason::NotJson))
            .expect("add");
        let mut again = Vec::new();
        digest.write_lines(&mut again).expect("lines");
        assert!(again.starts_with(&out) && again.len() > out.len());
    }

    #[test]
    fn a_record_that_is_not_a_dead_letter_is_counted_apart() {
        let mut digest = DeadLetterDigest::default();
        let mut r = record("o", Reason::NotJson);
        r.data = b"not a dead letter".to_vec();
        digest.add(&r).expect("add");
        assert_eq!((digest.counts().total, digest.unreadable()), (0, 1));
    }

    #[test]
    fn dead_letters_are_counted_by_reason() {
        let letter = |reason: &str| -> DeadLetter {
            serde_json::from_value(serde_json::json!({
                "reason": reason, "detail": "d", "id": null, "stage": "ingest",
                "source_stream": "raw", "shard_id": "s", "sequence_number": "1"
            }))
            .expect("dead letter")
        };
        let counts = DeadLetters::of(&[
            letter("not_json"),
            letter("missing_field"),
            letter("not_json"),
        ]);
        assert_eq!(counts.total, 3);
        assert_eq!(counts.by_reason["not_json"], 2);
        assert_eq!(counts.by_reason["missing_field"], 1);
    }
}
