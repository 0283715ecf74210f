//! Replayed records (`sluice replay`): a rejected input re-sent to the raw stream under
//! the identity it had when it first arrived, so that exactly-once holds across replays.
//!
//! A replayed record is a *frame*: [`REPLAY_MAGIC`], a small header naming the original
//! record (its shard and sequence number) and what the payload is, then the original
//! bytes. Ingest reads a framed record as the original would have been read: the lines
//! get the origins the original's lines had (`shard:sequence[:sub]:line`), so an event
//! without an id keeps its derived id, a record replayed twice, or one whose valid
//! lines were already counted, is a duplicate, and a replayed line that is rejected
//! again is dead-lettered under its first origin (and can be replayed again).
//!
//! Header (all lengths bounded; anything else is `corrupt_replay`):
//! `magic(4) | shard_len(u8) shard | sequence_len(u8) sequence | kind(u8) | [sub(u32 BE)] first_line(u32 BE) | payload`
//! - kind 0, **record**: the payload is a whole original record (plain, gzip or a KPL
//!   aggregate) and is unpacked as one; lines are numbered from 0.
//! - kind 1, **lines**: the payload is lines of the original's plain payload (after
//!   unpacking), never unpacked again; its first line is line `first_line`.
//! - kind 2, **user record lines**: as kind 1, within user record `sub` of a KPL aggregate.
//!
//! The magic starts with a NUL byte: no JSON text, gzip member or KPL aggregate starts
//! so, and a producer's NUL-led record was `not_json` before replay existed.

use crate::input::envelope::{Reason, Rejection};

/// The first bytes of every replayed record.
pub const REPLAY_MAGIC: [u8; 4] = [0x00, b'S', b'R', 0x01];
/// The longest shard id or sequence number a frame names (Kinesis's are 20 and 56).
pub const MAX_NAME_BYTES: usize = 128;
/// The most bytes a frame's header takes.
pub const MAX_HEADER_BYTES: usize = REPLAY_MAGIC.len() + 2 * (1 + MAX_NAME_BYTES) + 1 + 4 + 4;

/// Where a replayed payload came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayFrame<'a> {
    pub shard_id: &'a str,
    pub sequence_number: &'a str,
    pub payload: ReplayPayload,
}

/// What a frame's payload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayPayload {
    /// A whole original record, unpacked as any record is.
    Record,
    /// Lines of the original's payload `sub` (`None`: the record's own, or what it
    /// inflated to), the first being line `first_line`.
    Lines {
        sub: Option<usize>,
        first_line: usize,
    },
}

/// A frame: the header for `frame`, then `payload`.
pub fn encode(frame: &ReplayFrame<'_>, payload: &[u8]) -> Result<Vec<u8>, String> {
    for (what, name) in [
        ("shard id", frame.shard_id),
        ("sequence number", frame.sequence_number),
    ] {
        if name.is_empty() || name.len() > MAX_NAME_BYTES || !name.bytes().all(name_byte) {
            return Err(format!(
                "{what} {name:?}: a replay frame takes 1 to {MAX_NAME_BYTES} letters, digits, '-' and '_'"
            ));
        }
    }
    let number = |n: usize, what: &str| {
        u32::try_from(n).map_err(|_| format!("{what} {n} does not fit a replay frame"))
    };
    let mut out = Vec::with_capacity(MAX_HEADER_BYTES + payload.len());
    out.extend_from_slice(&REPLAY_MAGIC);
    for name in [frame.shard_id, frame.sequence_number] {
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
    }
    match frame.payload {
        ReplayPayload::Record => out.extend_from_slice(&[0, 0, 0, 0, 0]),
        ReplayPayload::Lines { sub, first_line } => {
            if let Some(sub) = sub {
                out.push(2);
                out.extend_from_slice(&number(sub, "user record")?.to_be_bytes());
            } else {
                out.push(1);
            }
            out.extend_from_slice(&number(first_line, "line")?.to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    Ok(out)
}

/// The frame and payload of a replayed record; `Ok(None)` for any other record (the
/// check is one comparison of four bytes).
pub fn decode(data: &[u8]) -> Result<Option<(ReplayFrame<'_>, &[u8])>, Rejection> {
    let Some(rest) = data.strip_prefix(&REPLAY_MAGIC) else {
        return Ok(None);
    };
    let mut header = Header { rest };
    let shard_id = header.name("shard id")?;
    let sequence_number = header.name("sequence number")?;
    let payload = match header.byte("kind")? {
        0 => {
            header.number("line")?;
            ReplayPayload::Record
        }
        1 => ReplayPayload::Lines {
            sub: None,
            first_line: header.number("line")?,
        },
        2 => {
            let sub = header.number("user record")?;
            ReplayPayload::Lines {
                sub: Some(sub),
                first_line: header.number("line")?,
            }
        }
        other => return Err(corrupt(&format!("kind {other} (0, 1 or 2)"))),
    };
    Ok(Some((
        ReplayFrame {
            shard_id,
            sequence_number,
            payload,
        },
        header.rest,
    )))
}

fn name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn corrupt(detail: &str) -> Rejection {
    Rejection::new(
        Reason::CorruptReplay,
        None,
        format!("replay frame: {detail}"),
    )
}

/// A frame's header, read front to back.
struct Header<'a> {
    rest: &'a [u8],
}

impl<'a> Header<'a> {
    fn byte(&mut self, what: &str) -> Result<u8, Rejection> {
        let (&b, tail) = self
            .rest
            .split_first()
            .ok_or_else(|| corrupt(&format!("ends before its {what}")))?;
        self.rest = tail;
        Ok(b)
    }

    fn number(&mut self, what: &str) -> Result<usize, Rejection> {
        let (bytes, tail) = self
            .rest
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt(&format!("ends before its {what}")))?;
        self.rest = tail;
        Ok(u32::from_be_bytes(*bytes) as usize)
    }

    /// A shard id or sequence number: 1 to [`MAX_NAME_BYTES`] letters, digits, `-`, `_`
    /// (an origin joins them with `:`).
    fn name(&mut self, what: &str) -> Result<&'a str, Rejection> {
        let len = usize::from(self.byte(what)?);
        if len == 0 || len > MAX_NAME_BYTES || self.rest.len() < len {
            return Err(corrupt(&format!(
                "{what} length {len} (1 to {MAX_NAME_BYTES}, within the record)"
            )));
        }
        let (bytes, tail) = self.rest.split_at(len);
        self.rest = tail;
        let text =
            std::str::from_utf8(bytes).map_err(|_| corrupt(&format!("{what} is not UTF-8")))?;
        if !text.bytes().all(name_byte) {
            return Err(corrupt(&format!(
                "{what} {text:?} holds more than letters, digits, '-' and '_'"
            )));
        }
        Ok(text)
    }
}

/// The payload of a replayed record with where its lines start: (user record, index of
/// its first line, bytes); `None` for any other record and for a damaged frame. A whole
/// replayed record's lines start at its own line 0 (its user records are not unpacked
/// here).
pub fn lines_of(data: &[u8]) -> Option<(Option<usize>, usize, &[u8])> {
    let (frame, payload) = decode(data).ok()??;
    Some(match frame.payload {
        ReplayPayload::Record => (None, 0, payload),
        ReplayPayload::Lines { sub, first_line } => (sub, first_line, payload),
    })
}

/// The shard id and sequence number that name a record's lines: those of the original
/// for a replayed record, its own otherwise (also for a corrupt frame, whose one dead
/// letter is then named after the record that carried it).
pub fn identity<'a>(
    data: &'a [u8],
    shard_id: &'a str,
    sequence_number: &'a str,
) -> (&'a str, &'a str) {
    match decode(data) {
        Ok(Some((frame, _))) => (frame.shard_id, frame.sequence_number),
        _ => (shard_id, sequence_number),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: ReplayPayload) -> ReplayFrame<'static> {
        ReplayFrame {
            shard_id: "shardId-000000000003",
            sequence_number: "49590338271490256608559692538361571095921575989136588898",
            payload,
        }
    }

    #[test]
    fn frames_round_trip_for_every_kind() {
        for payload in [
            ReplayPayload::Record,
            ReplayPayload::Lines {
                sub: None,
                first_line: 7,
            },
            ReplayPayload::Lines {
                sub: Some(3),
                first_line: 0,
            },
        ] {
            let f = frame(payload);
            let data = encode(&f, b"{\"a\":1}\n").expect("fits");
            assert!(data.len() <= MAX_HEADER_BYTES + 8);
            let (back, rest) = decode(&data).expect("valid").expect("a frame");
            assert_eq!(back, f);
            assert_eq!(rest, b"{\"a\":1}\n");
            assert_eq!(identity(&data, "own", "1"), (f.shard_id, f.sequence_number));
        }
    }

    #[test]
    fn other_records_are_not_frames_and_keep_their_own_identity() {
        for data in [
            &b"{\"a\":1}"[..],
            b"",
            b"\x1f\x8b",
            b"\xf3\x89\x9a\xc2",
            b"\x00S",
        ] {
            assert_eq!(decode(data).expect("not a frame"), None);
            assert_eq!(identity(data, "own", "1"), ("own", "1"));
        }
    }

    #[test]
    fn a_damaged_header_is_corrupt_replay_never_a_panic() {
        let good = encode(
            &frame(ReplayPayload::Lines {
                sub: Some(1),
                first_line: 2,
            }),
            b"x",
        )
        .expect("fits");
        // Every cut of the header is refused with the reason.
        for cut in REPLAY_MAGIC.len()..good.len() - 1 {
            let err = decode(&good[..cut]).expect_err("cut header");
            assert_eq!(err.reason, Reason::CorruptReplay, "cut at {cut}");
        }
        let mut bad_kind = good.clone();
        let kind_at = REPLAY_MAGIC.len() + 2 + 20 + 56;
        bad_kind[kind_at] = 9;
        assert!(
            decode(&bad_kind)
                .expect_err("kind")
                .detail
                .contains("kind 9")
        );
        let mut bad_name = good.clone();
        bad_name[REPLAY_MAGIC.len() + 1] = b':';
        assert_eq!(
            decode(&bad_name).expect_err("name").reason,
            Reason::CorruptReplay
        );
        assert_eq!(identity(&bad_name, "own", "1"), ("own", "1"));
    }

    #[test]
    fn names_outside_the_bounds_are_refused_when_encoding() {
        let long = "9".repeat(MAX_NAME_BYTES + 1);
        let f = ReplayFrame {
            sequence_number: &long,
            ..frame(ReplayPayload::Record)
        };
        assert!(
            encode(&f, b"x")
                .expect_err("long")
                .contains("sequence number")
        );
        let empty = ReplayFrame {
            shard_id: "",
            ..frame(ReplayPayload::Record)
        };
        assert!(encode(&empty, b"x").is_err());
    }
}
