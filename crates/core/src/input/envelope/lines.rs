//! Splitting a record into lines: blank lines are skipped (keeping their index), and
//! one leading UTF-8 byte-order mark per line is not content.

use super::{
    DecodedLine, MAX_RECORD_BYTES, Reason, Rejection, TimeBounds, decode_line,
    decode_line_without_attrs, decode_record,
};

/// Like [`decode_record`] but lazy and without the size check: for payloads whose size
/// the caller already bounded (an inflated gzip record may exceed 1 MiB). Lines are
/// decoded one at a time, so memory does not grow with the number of lines.
pub fn decode_lines(data: &[u8], bounds: TimeBounds) -> DecodeLines<'_> {
    let state = match std::str::from_utf8(data) {
        Ok(_) => LinesState::Lines {
            pos: 0,
            line: 0,
            yielded: false,
        },
        Err(e) => LinesState::Whole(Some(Rejection::new(
            Reason::NotUtf8,
            None,
            format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        ))),
    };
    DecodeLines {
        data,
        bounds,
        keep_attrs: true,
        first_line: 0,
        state,
    }
}

/// [`decode_record`] with [`decode_line_without_attrs`] for each line.
pub fn decode_record_without_attrs(data: &[u8], bounds: TimeBounds) -> Vec<DecodedLine<'_>> {
    if data.len() > MAX_RECORD_BYTES {
        // One whole-record rejection: no line is decoded.
        return decode_record(data, bounds);
    }
    DecodeLines {
        keep_attrs: false,
        ..decode_lines(data, bounds)
    }
    .collect()
}

/// Iterator returned by [`decode_lines`].
#[derive(Debug)]
pub struct DecodeLines<'a> {
    data: &'a [u8],
    bounds: TimeBounds,
    /// `false`: lines decode with [`decode_line_without_attrs`].
    keep_attrs: bool,
    /// The index of the payload's first line (a replayed record's lines keep theirs).
    first_line: usize,
    state: LinesState,
}

#[derive(Debug)]
enum LinesState {
    /// The whole payload is one rejection.
    Whole(Option<Rejection>),
    /// Next line starts at `pos` and has index `line`.
    Lines {
        pos: usize,
        line: usize,
        yielded: bool,
    },
}

/// A non-blank line of a payload, not decoded yet ([`DecodeLines::next_raw`]).
#[derive(Debug)]
pub(crate) struct RawLine<'a> {
    /// Its index, as [`DecodedLine::line`].
    pub line: usize,
    /// The whole line, as [`DecodedLine::bytes`].
    pub bytes: &'a [u8],
    /// The line without surrounding whitespace: what is decoded (the decoders skip a
    /// leading byte-order mark themselves).
    pub trimmed: &'a [u8],
}

/// What [`DecodeLines::next_raw`] yields.
#[derive(Debug)]
pub(crate) enum NextLine<'a> {
    /// A non-blank line, to decode.
    Raw(RawLine<'a>),
    /// What the iterator yields without decoding: the rejection of a payload that is
    /// not UTF-8, or of one with no non-blank line.
    Whole(DecodedLine<'a>),
}

impl<'a> DecodeLines<'a> {
    /// The same lines, numbered from `first_line` (see [`crate::input::unpack::Payload`]).
    pub fn numbered_from(mut self, first_line: usize) -> Self {
        self.first_line = first_line;
        if let LinesState::Lines { line, .. } = &mut self.state {
            *line = first_line;
        }
        self
    }

    /// The next line before decoding, for a caller with a decoder of its own (ingest
    /// normalizes valid lines without building an owned event).
    pub(crate) fn next_raw(&mut self) -> Option<NextLine<'a>> {
        let data = self.data;
        match &mut self.state {
            LinesState::Whole(rejection) => {
                let first_line = self.first_line;
                rejection
                    .take()
                    .map(|r| NextLine::Whole(whole_at(data, first_line, r)))
            }
            LinesState::Lines { pos, line, yielded } => {
                // Same positions as `data.split(b'\n')`: a trailing newline ends with an
                // empty (blank) line.
                while *pos <= data.len() {
                    let start = *pos;
                    // memchr: a vectorized search (a byte loop was 3-5 % of ingest).
                    let end =
                        memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i);
                    let index = *line;
                    *pos = end + 1;
                    *line += 1;
                    let trimmed = data[start..end].trim_ascii();
                    // A line of nothing but a byte-order mark is blank too.
                    if !line_content(trimmed).is_empty() {
                        *yielded = true;
                        return Some(NextLine::Raw(RawLine {
                            line: index,
                            bytes: &data[start..end],
                            trimmed,
                        }));
                    }
                }
                if *yielded {
                    return None;
                }
                *yielded = true;
                Some(NextLine::Whole(whole_at(
                    data,
                    self.first_line,
                    Rejection::new(Reason::NotJson, None, "record is empty or blank"),
                )))
            }
        }
    }
}

impl<'a> Iterator for DecodeLines<'a> {
    type Item = DecodedLine<'a>;

    fn next(&mut self) -> Option<DecodedLine<'a>> {
        Some(match self.next_raw()? {
            NextLine::Whole(whole) => whole,
            NextLine::Raw(raw) => DecodedLine {
                line: raw.line,
                bytes: raw.bytes,
                result: if self.keep_attrs {
                    decode_line(raw.trimmed, self.bounds)
                } else {
                    decode_line_without_attrs(raw.trimmed, self.bounds)
                },
            },
        })
    }
}

pub(super) fn whole(data: &[u8], rejection: Rejection) -> DecodedLine<'_> {
    whole_at(data, 0, rejection)
}

fn whole_at(data: &[u8], line: usize, rejection: Rejection) -> DecodedLine<'_> {
    DecodedLine {
        line,
        bytes: data,
        result: Err(rejection),
    }
}

/// A UTF-8 byte-order mark. Some Windows tools write one at the start of a file or a
/// stream; it is not content.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// What of a line the decoders read: the line without surrounding whitespace and
/// without one leading byte-order mark.
pub(super) fn line_content(line: &[u8]) -> &[u8] {
    let line = line.trim_ascii();
    line.strip_prefix(UTF8_BOM)
        .unwrap_or(line)
        .trim_ascii_start()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::envelope::test_support::*;
    use crate::input::envelope::*;

    #[test]
    fn splits_newline_delimited_records_and_skips_blank_lines() {
        let data = b"{\"key\":\"a\",\"type\":\"t\",\"ts\":1,\"value\":1}\n\n{\"key\":\"b\"}\r\n";
        let lines = decode_record(data, bounds());
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].line, 0);
        assert!(lines[0].result.is_ok());
        assert_eq!(lines[1].line, 2);
        assert_eq!(
            lines[1].result.as_ref().expect_err("missing").reason,
            Reason::MissingField
        );
        assert_eq!(lines[1].bytes, b"{\"key\":\"b\"}\r");
    }

    #[test]
    fn a_leading_byte_order_mark_is_not_content() {
        let valid = r#"{"id":"e1","key":"k","type":"t","ts":1764000000000,"value":2}"#;
        let expected = decode_line(valid.as_bytes(), bounds()).expect("valid");
        for line in [
            format!("\u{feff}{valid}"),
            format!("\u{feff}  {valid}"),
            format!(" \u{feff}{valid}\r"),
        ] {
            let bytes = line.as_bytes();
            assert_eq!(
                fast::decode(bytes, bounds()).as_ref(),
                Some(&expected),
                "{line:?}"
            );
            assert_eq!(
                decode_borrowed(bytes, bounds()).map(|e| e.key),
                Some("k"),
                "{line:?}"
            );
            assert_eq!(
                decode_line_slow(bytes, bounds()),
                Ok(expected.clone()),
                "{line:?}"
            );
            assert_eq!(one(&line), Ok(expected.clone()), "{line:?}");
        }
        // The general decoder too, for a line the fast path declines.
        let escaped = "\u{feff}{\"key\":\"k\\u00e9\",\"type\":\"t\",\"ts\":1,\"value\":2}";
        assert_eq!(one(escaped).map(|e| e.key), Ok("k\u{e9}".to_owned()));
        // At the start of each line of a record; a record of only a mark is blank.
        let data = format!("\u{feff}{valid}\n\u{feff}{valid}\n");
        let lines = decode_record(data.as_bytes(), bounds());
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.result.is_ok()), "{lines:?}");
        let r = one("\u{feff}").expect_err("blank");
        assert_eq!(r.detail, "record is empty or blank");
        // One mark, not any number of them.
        assert_eq!(
            reason(&format!("\u{feff}\u{feff}{valid}")).0,
            Reason::NotJson
        );
    }

    #[test]
    fn lazy_lines_match_the_eager_split() {
        for data in [&b""[..], b"\n", b"a\n\nb\n", b"\n\n{}", b"x", b"\xff\n{}"] {
            let lazy: Vec<(usize, &[u8])> = decode_lines(data, bounds())
                .map(|l| (l.line, l.bytes))
                .collect();
            let eager: Vec<(usize, &[u8])> = data
                .split(|b| *b == b'\n')
                .enumerate()
                .filter(|(_, l)| !l.trim_ascii().is_empty())
                .collect();
            if std::str::from_utf8(data).is_err() || eager.is_empty() {
                assert_eq!(lazy, [(0, data)], "{data:?}");
            } else {
                assert_eq!(lazy, eager, "{data:?}");
            }
        }
    }
}
