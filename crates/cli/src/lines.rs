//! Producer input as lines: a synthetic scenario or a newline-delimited file, read a
//! chunk at a time in bounded memory, whatever the file's size or its lines' length.
//!
//! A line is bytes (invalid UTF-8 is input too); `\n` ends it, a `\r` before it is
//! dropped, and blank lines are skipped. A line longer than a Kinesis record can be is
//! kept only as its first [`LINE_HEAD_BYTES`] bytes: no producer could send it whole,
//! so what follows is skipped unread into memory, and the head (over the record limit
//! by construction) is refused at the producer's edge as `record_too_large` like any
//! other line that does not fit.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sluice_core::state::limits::kinesis::{
    MAX_RECORD_BYTES, MAX_RECORDS_PER_REQUEST, MAX_REQUEST_BYTES,
};
use sluice_local::scenario::{DEFAULT_START_MS, Noise, Producer, Scenario};

/// What is kept of an over-long line: one byte more than a record may hold, so the
/// kept head is itself refused by the record limit, never sent as a cut-off event.
pub const LINE_HEAD_BYTES: usize = MAX_RECORD_BYTES + 1;

/// Lines the demo writes to the raw stream per round, at most. Measured on `iot`:
/// 20,000 keeps peak memory near 60 MiB at 100,000 events (50,000: about 115 MiB) for
/// about 10% more item writes per event than one burst (each drain flushes partial
/// batches).
pub const CHUNK_LINES: usize = 20_000;

/// Bytes of lines per round, at most (a chunk holds at least one line): a round's
/// records are copied by each stage they pass (raw, valid, enriched) while in flight,
/// so a bound on lines alone would let a few hundred 1 MiB lines take gigabytes.
pub const CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// The most a chunk holds: lines, and bytes of lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkBound {
    pub lines: usize,
    pub bytes: usize,
}

impl ChunkBound {
    pub const DEMO: ChunkBound = ChunkBound {
        lines: CHUNK_LINES,
        bytes: CHUNK_BYTES,
    };

    /// One `PutRecords` request's worth: 500 records, 5 MiB.
    pub const REQUEST: ChunkBound = ChunkBound {
        lines: MAX_RECORDS_PER_REQUEST,
        bytes: MAX_REQUEST_BYTES,
    };

    pub fn lines(lines: usize) -> Self {
        ChunkBound {
            lines,
            bytes: usize::MAX,
        }
    }
}

/// Reads the next line into `line` (cleared first), keeping at most `max` bytes of it
/// and skipping the rest up to its end. Returns the line's whole length without its
/// line end, or `None` at the end of the input. Memory: `max` plus the reader's buffer,
/// however long the line.
pub fn read_line_bounded(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<u64>> {
    line.clear();
    let mut whole = 0u64;
    let mut any = false;
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            break;
        }
        any = true;
        let (part, done) = match memchr(buf) {
            Some(at) => (&buf[..at], Some(at + 1)),
            None => (buf, None),
        };
        let room = max.saturating_sub(line.len());
        line.extend_from_slice(&part[..part.len().min(room)]);
        whole += part.len() as u64;
        let used = done.unwrap_or(part.len());
        reader.consume(used);
        if done.is_some() {
            break;
        }
    }
    if !any {
        return Ok(None);
    }
    // A `\r` before the `\n` is part of the line end (the head keeps it only when the
    // line was cut before its end, where it is not a line end).
    if line.len() as u64 == whole && line.last() == Some(&b'\r') {
        line.pop();
        whole -= 1;
    }
    Ok(Some(whole))
}

fn memchr(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|b| *b == b'\n')
}

/// Where producer lines come from, read a chunk at a time.
pub enum LineSource {
    Scenario {
        producer: Producer,
        left: usize,
    },
    File {
        reader: BufReader<File>,
        path: PathBuf,
    },
}

impl LineSource {
    pub fn scenario(scenario: Scenario, events: usize, seed: u64, start: Option<i64>) -> Self {
        LineSource::Scenario {
            producer: scenario.producer(seed, start.unwrap_or(DEFAULT_START_MS), Noise::default()),
            left: events,
        }
    }

    pub fn file(path: &Path) -> Result<Self> {
        let file =
            File::open(path).with_context(|| format!("reading input file {}", path.display()))?;
        Ok(LineSource::File {
            reader: BufReader::new(file),
            path: path.to_owned(),
        })
    }

    /// More lines, within `bound` (at least one line when any is left); empty when the
    /// input is done.
    pub fn next_chunk(&mut self, bound: ChunkBound) -> Result<Vec<Vec<u8>>> {
        let mut lines = Vec::new();
        let mut bytes = 0usize;
        let full = |lines: &Vec<Vec<u8>>, bytes: usize| {
            lines.len() >= bound.lines || (!lines.is_empty() && bytes >= bound.bytes)
        };
        match self {
            LineSource::Scenario { producer, left } => {
                while *left > 0 && !full(&lines, bytes) {
                    let Some(line) = producer.next() else { break };
                    *left -= 1;
                    bytes += line.len();
                    lines.push(line.into_bytes());
                }
            }
            LineSource::File { reader, path } => {
                let mut buf = Vec::new();
                while !full(&lines, bytes) {
                    let read = read_line_bounded(reader, &mut buf, LINE_HEAD_BYTES)
                        .with_context(|| format!("reading input file {}", path.display()))?;
                    if read.is_none() {
                        break;
                    }
                    if !buf.trim_ascii().is_empty() {
                        // Copied out at its exact size; `buf` keeps its capacity.
                        bytes += buf.len();
                        lines.push(buf.clone());
                    }
                }
            }
        }
        Ok(lines)
    }
}

/// A [`LineSource`] read on its own thread, at most two chunks ahead (so memory stays
/// bounded by three chunks whatever the input's size).
pub struct ReadAhead {
    chunks: std::sync::mpsc::Receiver<Result<Vec<Vec<u8>>>>,
}

impl ReadAhead {
    pub fn start(mut input: LineSource, bound: ChunkBound) -> ReadAhead {
        let (send, chunks) = std::sync::mpsc::sync_channel(2);
        std::thread::spawn(move || {
            loop {
                let next = input.next_chunk(bound);
                let last = next.as_ref().map_or(true, Vec::is_empty);
                // The receiver is gone when the demo stopped early: stop reading too.
                if send.send(next).is_err() || last {
                    break;
                }
            }
        });
        ReadAhead { chunks }
    }

    /// The next chunk: empty when the input is done, as [`LineSource::next_chunk`].
    pub fn next_chunk(&self) -> Result<Vec<Vec<u8>>> {
        self.chunks
            .recv()
            .map_err(|_| anyhow::anyhow!("the input reader thread stopped without a reason"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("sluice-{name}-{}.ndjson", std::process::id()));
        std::fs::write(&path, bytes).expect("write");
        path
    }

    #[test]
    fn a_file_is_read_in_chunks_without_blank_lines_or_line_ends() {
        let path = temp_file("chunks", b"a\r\n\nb\n  \nc\n\xff\nlast");
        let mut input = LineSource::file(&path).expect("open");
        let mut chunks = Vec::new();
        loop {
            let chunk = input.next_chunk(ChunkBound::lines(2)).expect("read");
            if chunk.is_empty() {
                break;
            }
            chunks.push(chunk);
        }
        let want: Vec<Vec<Vec<u8>>> = vec![
            vec![b"a".to_vec(), b"b".to_vec()],
            vec![b"c".to_vec(), vec![0xff]],
            vec![b"last".to_vec()],
        ];
        assert_eq!(chunks, want);
        std::fs::remove_file(&path).expect("remove");
    }

    #[test]
    fn a_chunk_stops_at_its_byte_bound_but_holds_at_least_one_line() {
        let path = temp_file("bytes", b"aaaa\nbbbb\ncccccccccc\nd\n");
        let mut input = LineSource::file(&path).expect("open");
        let bound = ChunkBound {
            lines: 100,
            bytes: 8,
        };
        let mut sizes = Vec::new();
        loop {
            let chunk = input.next_chunk(bound).expect("read");
            if chunk.is_empty() {
                break;
            }
            sizes.push(chunk.iter().map(Vec::len).collect::<Vec<_>>());
        }
        std::fs::remove_file(&path).expect("remove");
        // 4 + 4 reaches the bound; a line over the bound is a chunk of its own.
        assert_eq!(sizes, vec![vec![4, 4], vec![10], vec![1]]);
        let mut scenario = LineSource::scenario(Scenario::Iot, 1000, 1, None);
        let chunk = scenario
            .next_chunk(ChunkBound {
                lines: 1000,
                bytes: 1000,
            })
            .expect("chunk");
        let bytes: usize = chunk.iter().map(Vec::len).sum();
        assert!(
            chunk.len() < 1000 && bytes >= 1000,
            "{} lines, {bytes} bytes",
            chunk.len()
        );
        assert!(bytes - chunk.last().expect("a line").len() < 1000);
    }

    #[test]
    fn an_over_long_line_is_kept_as_its_head_and_the_next_line_is_intact() {
        let mut text = vec![b'x'; 3 * LINE_HEAD_BYTES + 17];
        text.extend_from_slice(b"\r\n{\"next\":1}\r\n");
        // A reader buffer much smaller than the line: the rest is skipped in pieces.
        let mut reader = BufReader::with_capacity(4096, text.as_slice());
        let mut line = Vec::new();
        let whole = read_line_bounded(&mut reader, &mut line, LINE_HEAD_BYTES).expect("read");
        assert_eq!(
            whole,
            Some(3 * LINE_HEAD_BYTES as u64 + 18),
            "the \\r is content here"
        );
        assert_eq!(line.len(), LINE_HEAD_BYTES);
        assert!(line.capacity() < 2 * LINE_HEAD_BYTES, "{}", line.capacity());
        let whole = read_line_bounded(&mut reader, &mut line, LINE_HEAD_BYTES).expect("read");
        assert_eq!(whole, Some(10));
        assert_eq!(line, b"{\"next\":1}");
        assert_eq!(
            read_line_bounded(&mut reader, &mut line, LINE_HEAD_BYTES).expect("read"),
            None
        );
    }

    #[test]
    fn a_line_of_exactly_the_head_size_is_whole() {
        let mut text = vec![b'y'; LINE_HEAD_BYTES];
        text.push(b'\n');
        let mut reader = BufReader::new(text.as_slice());
        let mut line = Vec::new();
        let whole = read_line_bounded(&mut reader, &mut line, LINE_HEAD_BYTES).expect("read");
        assert_eq!(whole, Some(LINE_HEAD_BYTES as u64));
        assert_eq!(line.len(), LINE_HEAD_BYTES);
    }

    #[test]
    fn a_scenario_source_stops_at_its_event_count() {
        let mut input = LineSource::scenario(Scenario::Iot, 5, 1, None);
        assert_eq!(
            input.next_chunk(ChunkBound::lines(3)).expect("chunk").len(),
            3
        );
        assert_eq!(
            input.next_chunk(ChunkBound::lines(3)).expect("chunk").len(),
            2
        );
        assert!(
            input
                .next_chunk(ChunkBound::lines(3))
                .expect("chunk")
                .is_empty()
        );
    }

    #[test]
    fn reading_ahead_gives_the_same_chunks_in_order_then_the_end() {
        let mut direct = LineSource::scenario(Scenario::Payments, 250, 7, None);
        let ahead = ReadAhead::start(
            LineSource::scenario(Scenario::Payments, 250, 7, None),
            ChunkBound::lines(100),
        );
        for expected_len in [100, 100, 50] {
            let chunk = ahead.next_chunk().expect("chunk");
            assert_eq!(chunk.len(), expected_len);
            assert_eq!(
                chunk,
                direct.next_chunk(ChunkBound::lines(100)).expect("chunk")
            );
        }
        assert!(ahead.next_chunk().expect("the end").is_empty());
        // After the end the thread is gone: asking again is an error, not a hang.
        assert!(ahead.next_chunk().is_err());
    }
}
