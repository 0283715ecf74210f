//! How `sluice replay` turns a dead letter into the record to send again: [`plan`]
//! decides from the dead letter alone (its bytes, or where to read them back), and
//! [`recover`] takes what it stands for from a raw record read back from the stream.
//! The frames themselves are [`crate::input::replay`]'s.

use crate::input::dead_letter::{DeadLetter, OriginalBytes};
use crate::input::envelope::Reason;
use crate::input::record::{StreamRecord, lines};
use crate::input::replay::{ReplayFrame, ReplayPayload, decode, encode};
use crate::input::unpack::unpack;

/// What to send for one dead letter ([`plan`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replay {
    /// This record: the dead letter holds the whole original input.
    Send(Vec<u8>),
    /// The dead letter holds only the first bytes of the original (or, past ingest, a
    /// processed line): read the raw record at (`shard_id`, `sequence_number`) and take
    /// `want` of it ([`recover`]), checked against `sha256` when the dead letter has it.
    Recover {
        shard_id: String,
        sequence_number: String,
        want: Wanted,
        sha256: Option<String>,
    },
    /// The raw records from `from` to `to` (a batch the event source mapping dropped).
    RecoverRange {
        shard_id: String,
        from: String,
        to: String,
    },
    /// Not replayable, and why.
    Skip(String),
}

/// What of a recovered raw record a replay sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wanted {
    /// The whole record.
    Record,
    /// One line of payload `sub` (all of it, with `whole_payload`, as for a payload
    /// rejected as one: not UTF-8, blank), under the identity it had.
    Line {
        shard_id: String,
        sequence_number: String,
        sub: Option<usize>,
        line: usize,
        whole_payload: bool,
    },
}

/// The identity parts of an origin: `shard:sequence:line` or `shard:sequence:sub:line`.
pub fn parse_origin(origin: &str) -> Option<(&str, &str, Option<usize>, usize)> {
    let parts: Vec<&str> = origin.split(':').collect();
    let number = |s: &str| s.parse::<usize>().ok();
    match parts[..] {
        [shard, sequence, line] => Some((shard, sequence, None, number(line)?)),
        [shard, sequence, sub, line] => Some((shard, sequence, Some(number(sub)?), number(line)?)),
        _ => None,
    }
}

/// How to replay one dead letter of the raw stream `raw_stream` into it, under the
/// identity its input first had.
pub fn plan(letter: &DeadLetter, raw_stream: &str) -> Replay {
    if matches!(
        letter.reason,
        Reason::RetriesExhausted | Reason::RecordTooOld
    ) {
        return match &letter.end_sequence_number {
            Some(to) if letter.source_stream == raw_stream => Replay::RecoverRange {
                shard_id: letter.shard_id.clone(),
                from: letter.sequence_number.clone(),
                to: to.clone(),
            },
            _ => Replay::Skip(format!(
                "a batch of stream {:?} was dropped; replay re-sends records of the raw stream {raw_stream:?} only",
                letter.source_stream
            )),
        };
    }
    if letter.reason == Reason::CorruptReplay {
        return Replay::Skip("a corrupt replay frame is junk; it is not sent again".into());
    }
    let truncated = letter.original.as_ref().is_none_or(|o| o.truncated);
    let sha256 = letter.original.as_ref().map(|o| o.sha256.clone());
    let whole_record = letter.summary.is_some()
        || matches!(
            letter.reason,
            Reason::CorruptAggregate | Reason::CorruptGzip
        );
    if letter.source_stream == raw_stream && whole_record {
        // The bytes are the record as it arrived (a replayed record's are its frame).
        return match letter.original_bytes() {
            Some(bytes) if !truncated => Replay::Send(frame_whole(
                &bytes,
                &letter.shard_id,
                &letter.sequence_number,
            )),
            _ => Replay::Recover {
                shard_id: letter.shard_id.clone(),
                sequence_number: letter.sequence_number.clone(),
                want: Wanted::Record,
                sha256,
            },
        };
    }
    let Some((shard, sequence, sub, line)) = letter.origin.as_deref().and_then(parse_origin) else {
        return Replay::Skip("the dead letter names no origin (shard:sequence:line)".into());
    };
    // A payload that is not UTF-8, or blank, is rejected as one (at its first line).
    let whole_payload = letter.reason == Reason::NotUtf8
        || letter
            .original_bytes()
            .is_some_and(|b| b.trim_ascii().is_empty());
    let frame = ReplayFrame {
        shard_id: shard,
        sequence_number: sequence,
        payload: ReplayPayload::Lines {
            sub,
            first_line: line,
        },
    };
    if letter.source_stream == raw_stream && !truncated {
        if let Some(bytes) = letter.original_bytes() {
            return match encode(&frame, &bytes) {
                Ok(framed) => Replay::Send(framed),
                Err(e) => Replay::Skip(e),
            };
        }
    }
    // Past ingest a dead letter holds a processed line: the input is the raw record
    // its origin names.
    let (at_shard, at_sequence) = if letter.source_stream == raw_stream {
        (letter.shard_id.as_str(), letter.sequence_number.as_str())
    } else {
        (shard, sequence)
    };
    Replay::Recover {
        shard_id: at_shard.to_owned(),
        sequence_number: at_sequence.to_owned(),
        want: Wanted::Line {
            shard_id: shard.to_owned(),
            sequence_number: sequence.to_owned(),
            sub,
            line,
            whole_payload,
        },
        sha256: (letter.source_stream == raw_stream)
            .then_some(sha256)
            .flatten(),
    }
}

/// A whole record as it arrived, to send again: a replayed record is sent as it is (its
/// frame names the original); any other is framed under its own identity.
pub fn frame_whole(bytes: &[u8], shard_id: &str, sequence_number: &str) -> Vec<u8> {
    if matches!(decode(bytes), Ok(Some(_))) {
        return bytes.to_vec();
    }
    let frame = ReplayFrame {
        shard_id,
        sequence_number,
        payload: ReplayPayload::Record,
    };
    // Kinesis shard ids and sequence numbers always fit; a name that does not is sent
    // as the bytes alone, which is never wrong about identity for an event with an id.
    encode(&frame, bytes).unwrap_or_else(|_| bytes.to_vec())
}

/// The record to send for `want`, from the raw record `raw` read back from the stream:
/// the bytes the dead letter stood for, framed under their first identity. The bytes
/// are checked against `sha256` when given.
pub fn recover(raw: &StreamRecord, want: &Wanted, sha256: Option<&str>) -> Result<Vec<u8>, String> {
    let (bytes, framed) = match want {
        Wanted::Record => (
            raw.data.clone(),
            frame_whole(&raw.data, &raw.shard_id, &raw.sequence_number),
        ),
        Wanted::Line {
            shard_id,
            sequence_number,
            sub,
            line,
            whole_payload,
        } => {
            let unpacked = unpack(&raw.data).map_err(|r| {
                format!("the raw record does not unpack: {}: {}", r.reason, r.detail)
            })?;
            let payload = unpacked
                .payloads()
                .into_iter()
                .find(|p| p.sub == *sub && p.first_line <= *line)
                .ok_or_else(|| format!("the raw record has no user record {sub:?}"))?;
            let bytes = if *whole_payload {
                payload.bytes.to_vec()
            } else {
                lines(payload.bytes)
                    .nth(line - payload.first_line)
                    .ok_or_else(|| format!("the raw record has no line {line}"))?
                    .to_vec()
            };
            let frame = ReplayFrame {
                shard_id,
                sequence_number,
                payload: ReplayPayload::Lines {
                    sub: *sub,
                    first_line: *line,
                },
            };
            let framed = encode(&frame, &bytes)?;
            (bytes, framed)
        }
    };
    if let Some(expected) = sha256 {
        let got = OriginalBytes::of(&bytes).sha256;
        if got != expected {
            return Err(format!(
                "the bytes read back have SHA-256 {got}, the dead letter's original {expected}"
            ));
        }
    }
    Ok(framed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(data: &[u8]) -> StreamRecord {
        StreamRecord {
            stream: "p-raw".into(),
            shard_id: "shardId-000000000001".into(),
            sequence_number: "42".into(),
            partition_key: "k".into(),
            data: data.to_vec(),
            arrival_ms: 0,
        }
    }

    fn line(sub: Option<usize>, line: usize) -> Wanted {
        Wanted::Line {
            shard_id: "shardId-000000000001".into(),
            sequence_number: "42".into(),
            sub,
            line,
            whole_payload: false,
        }
    }

    #[test]
    fn a_line_is_recovered_from_its_raw_record_and_checked_against_its_hash() {
        let plain = raw(b"a\nbad line\r\nc");
        let sha = OriginalBytes::of(b"bad line\r").sha256;
        let framed = recover(&plain, &line(None, 1), Some(&sha)).expect("recovered");
        let (frame, payload) = decode(&framed).expect("valid").expect("a frame");
        assert_eq!(payload, b"bad line\r");
        assert_eq!(
            frame.payload,
            ReplayPayload::Lines {
                sub: None,
                first_line: 1
            }
        );
        assert_eq!(frame.sequence_number, "42");
        let wrong = recover(&plain, &line(None, 2), Some(&sha)).expect_err("other bytes");
        assert!(wrong.contains("SHA-256"), "{wrong}");
        assert!(recover(&plain, &line(None, 9), None).is_err());
        // A user record of a KPL aggregate.
        let kpl = raw(&crate::input::unpack::aggregate(&[
            ("a", b"x"),
            ("b", b"y\nz"),
        ]));
        let framed = recover(&kpl, &line(Some(1), 1), None).expect("recovered");
        assert!(framed.ends_with(b"z"));
        // A raw record that is itself a replay of lines 5.. keeps numbering from 5.
        let replayed = encode(
            &ReplayFrame {
                shard_id: "shardId-000000000001",
                sequence_number: "42",
                payload: ReplayPayload::Lines {
                    sub: None,
                    first_line: 5,
                },
            },
            b"five\nsix",
        )
        .expect("fits");
        let framed = recover(&raw(&replayed), &line(None, 6), None).expect("recovered");
        assert!(framed.ends_with(b"six"));
        // A whole record is framed under its own identity, a replayed one sent as it is.
        let whole = recover(&plain, &Wanted::Record, None).expect("whole");
        assert_eq!(decode(&whole).expect("ok").expect("frame").1, plain.data);
        assert_eq!(
            recover(&raw(&replayed), &Wanted::Record, None).expect("as is"),
            replayed
        );
    }

    #[test]
    fn origins_parse_into_their_identity() {
        assert_eq!(parse_origin("s-1:42:3"), Some(("s-1", "42", None, 3)));
        assert_eq!(parse_origin("s-1:42:2:3"), Some(("s-1", "42", Some(2), 3)));
        assert_eq!(parse_origin("s-1:42"), None);
        assert_eq!(parse_origin("s-1:42:x"), None);
    }
}
