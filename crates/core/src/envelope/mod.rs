//! The producer's contract: one JSON object per Kinesis record, or several as
//! newline-delimited JSON. Decoding never panics and never drops input: every line is
//! either an [`Event`] or a [`Rejection`] with a machine-readable [`Reason`].
//!
//! A UTF-8 byte-order mark (`EF BB BF`) at the start of a line (so also of a record) is
//! not content: both decoders, the general one and the borrowing fast path, skip it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::time::{format_rfc3339, parse_rfc3339_ms};

/// Kinesis caps a partition key at 256 Unicode characters; the key becomes one.
pub const MAX_KEY_CHARS: usize = 256;
/// Kinesis caps a record's data at 1 MiB; larger input can only come from files.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Metric names are identifiers: short, and free of the `#` that joins them to keys.
pub const MAX_TYPE_CHARS: usize = 128;
/// Event ids are fingerprinted, but keep them bounded so dead letters stay readable.
pub const MAX_ID_BYTES: usize = 512;
/// Values are bounded so sums and sums of squares of many events stay finite and every
/// intermediate fits a DynamoDB number (magnitudes 1e-130 to 1e125).
pub const MAX_ABS_VALUE: f64 = 1e100;
pub const MIN_ABS_NONZERO_VALUE: f64 = 1e-100;

/// Why a record or line was rejected. The serialized names are a stable contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The record's bytes are not UTF-8.
    NotUtf8,
    /// A line is not JSON (or is empty).
    NotJson,
    /// A required field (`key`, `type`, `ts`, `value`) is absent or null.
    MissingField,
    /// A field has the wrong JSON type (the line itself must be an object; `id` must be
    /// a string or an integer, written without fraction or exponent).
    WrongType,
    /// A field has the right type but an unusable value (empty key, malformed type
    /// name, unparseable timestamp string, over-long id).
    InvalidValue,
    /// `value` is NaN or infinite (e.g. Python's `NaN`/`Infinity` literals, `1e999`).
    NonFiniteValue,
    /// `value` is finite but outside +-1e100, or non-zero and smaller than 1e-100.
    ValueOutOfRange,
    /// `key` has more than 256 characters (Kinesis's partition key limit).
    KeyTooLong,
    /// `ts` is before 1970-01-01, further ahead of the clock than the allowed skew, not
    /// a finite number, or between 1e9 and 1e10 ms, where epoch seconds read as
    /// milliseconds land ([`SECONDS_AS_MS`]).
    TsOutOfRange,
    /// The record (or file line) is larger than 1 MiB.
    RecordTooLarge,
    /// The event's window closed more than the allowed lateness before the watermark.
    Late,
    /// A whole batch was dropped after its retries ran out (on-failure destination).
    RetriesExhausted,
    /// A whole batch was dropped because its records were older than the maximum age.
    RecordTooOld,
    /// A KPL-aggregated record (magic `F3 89 9A C2`) whose protobuf body or MD5 trailer
    /// does not check out: none of its user records can be trusted.
    CorruptAggregate,
    /// A gzip-compressed record (`1F 8B`) that does not decompress.
    CorruptGzip,
    /// The stage could not apply the event for a reason no retry can fix (a stored item
    /// it cannot read, access denied, a service limit); `detail` says which.
    Unprocessable,
}

impl Reason {
    pub const ALL: [Reason; 16] = [
        Reason::NotUtf8,
        Reason::NotJson,
        Reason::MissingField,
        Reason::WrongType,
        Reason::InvalidValue,
        Reason::NonFiniteValue,
        Reason::ValueOutOfRange,
        Reason::KeyTooLong,
        Reason::TsOutOfRange,
        Reason::RecordTooLarge,
        Reason::Late,
        Reason::RetriesExhausted,
        Reason::RecordTooOld,
        Reason::CorruptAggregate,
        Reason::CorruptGzip,
        Reason::Unprocessable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotUtf8 => "not_utf8",
            Reason::NotJson => "not_json",
            Reason::MissingField => "missing_field",
            Reason::WrongType => "wrong_type",
            Reason::InvalidValue => "invalid_value",
            Reason::NonFiniteValue => "non_finite_value",
            Reason::ValueOutOfRange => "value_out_of_range",
            Reason::KeyTooLong => "key_too_long",
            Reason::TsOutOfRange => "ts_out_of_range",
            Reason::RecordTooLarge => "record_too_large",
            Reason::Late => "late",
            Reason::RetriesExhausted => "retries_exhausted",
            Reason::RecordTooOld => "record_too_old",
            Reason::CorruptAggregate => "corrupt_aggregate",
            Reason::CorruptGzip => "corrupt_gzip",
            Reason::Unprocessable => "unprocessable",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated, normalized event. This is also the wire format between stages:
/// `ts` is epoch milliseconds, `id` is always present.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    pub key: String,
    #[serde(rename = "type")]
    pub metric: String,
    pub ts: i64,
    pub value: f64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attrs: BTreeMap<String, String>,
    /// Where the event entered the pipeline (`shard:sequence[:line]` of the raw stream).
    /// Stable across retries and re-emits, so it identifies one producer write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// Why one line was rejected, with the field at fault where one applies.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejection {
    pub reason: Reason,
    pub field: Option<&'static str>,
    pub detail: String,
    /// The producer's id, when the line got far enough to have one.
    pub id: Option<String>,
}

impl Rejection {
    fn new(reason: Reason, field: Option<&'static str>, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            field,
            detail: detail.into(),
            id: None,
        }
    }
}

/// Bounds that depend on the clock, passed in so decoding stays pure.
#[derive(Clone, Copy, Debug)]
pub struct TimeBounds {
    pub now_ms: i64,
    pub max_future_skew_ms: i64,
}

impl TimeBounds {
    /// No upper bound: for stages after ingest, where the clock check already happened.
    pub fn unbounded() -> Self {
        TimeBounds {
            now_ms: i64::MAX / 2,
            max_future_skew_ms: 0,
        }
    }
}

/// One line of a record and what became of it.
#[derive(Debug)]
pub struct DecodedLine<'a> {
    /// 0-based index of the line within the record (blank lines are skipped, not counted
    /// as events, but keep their index so positions stay stable).
    pub line: usize,
    pub bytes: &'a [u8],
    pub result: Result<DecodedEvent, Rejection>,
}

/// An event as the producer sent it: `id` may be absent until a stage derives one.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedEvent {
    pub id: Option<String>,
    pub key: String,
    pub metric: String,
    pub ts: i64,
    pub value: f64,
    pub attrs: BTreeMap<String, String>,
    pub origin: Option<String>,
}

impl DecodedEvent {
    pub fn into_event(self, derived_id: impl FnOnce() -> String) -> Event {
        Event {
            id: self.id.unwrap_or_else(derived_id),
            key: self.key,
            metric: self.metric,
            ts: self.ts,
            value: self.value,
            attrs: self.attrs,
            origin: self.origin,
        }
    }
}

/// Splits a record into lines and decodes each. A record that is not UTF-8 or is too
/// large is one rejected "line" covering the whole record; a record with no non-blank
/// line is one `not_json` rejection, so nothing disappears without a trace. One leading
/// byte-order mark per line is skipped (a line of only that is blank).
pub fn decode_record(data: &[u8], bounds: TimeBounds) -> Vec<DecodedLine<'_>> {
    if data.len() > MAX_RECORD_BYTES {
        return vec![whole(
            data,
            Rejection::new(
                Reason::RecordTooLarge,
                None,
                format!(
                    "record has {} bytes, the limit is {MAX_RECORD_BYTES}",
                    data.len()
                ),
            ),
        )];
    }
    decode_lines(data, bounds).collect()
}

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
    /// The next line before decoding, for a caller with a decoder of its own (ingest
    /// normalizes valid lines without building an owned event).
    pub(crate) fn next_raw(&mut self) -> Option<NextLine<'a>> {
        let data = self.data;
        match &mut self.state {
            LinesState::Whole(rejection) => {
                rejection.take().map(|r| NextLine::Whole(whole(data, r)))
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
                Some(NextLine::Whole(whole(
                    data,
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

fn whole(data: &[u8], rejection: Rejection) -> DecodedLine<'_> {
    DecodedLine {
        line: 0,
        bytes: data,
        result: Err(rejection),
    }
}

/// A UTF-8 byte-order mark. Some Windows tools write one at the start of a file or a
/// stream; it is not content.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// What of a line the decoders read: the line without surrounding whitespace and
/// without one leading byte-order mark.
fn line_content(line: &[u8]) -> &[u8] {
    let line = line.trim_ascii();
    line.strip_prefix(UTF8_BOM)
        .unwrap_or(line)
        .trim_ascii_start()
}

/// Decodes one JSON line into an event. A leading byte-order mark is skipped.
pub fn decode_line(line: &[u8], bounds: TimeBounds) -> Result<DecodedEvent, Rejection> {
    if let Some(event) = fast::decode(line, bounds) {
        return Ok(event);
    }
    decode_line_slow(line, bounds)
}

/// [`decode_line`] for stages that never read `attrs` (aggregate): the same verdict,
/// and the same event except that its `attrs` is empty, without building the map.
pub fn decode_line_without_attrs(
    line: &[u8],
    bounds: TimeBounds,
) -> Result<DecodedEvent, Rejection> {
    if let Some(event) = fast::decode_without_attrs(line, bounds) {
        return Ok(event);
    }
    decode_line_slow(line, bounds).map(|mut event| {
        event.attrs.clear();
        event
    })
}

/// The general decoder: parses into a `serde_json::Value` and names whatever is wrong.
/// [`decode_line`] only reaches it for lines the fast path declines.
pub(crate) fn decode_line_slow(line: &[u8], bounds: TimeBounds) -> Result<DecodedEvent, Rejection> {
    let line = line_content(line);
    // Fast path for garbage: a byte no JSON value (nor a NaN/Infinity literal we repair)
    // can start with. Same verdict and message as the parser's, at a fraction of the
    // cost, which keeps a record of many junk lines about as cheap as a valid one.
    if let Some(first) = line.first() {
        if !matches!(
            first,
            b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n' | b'N' | b'I'
        ) {
            return Err(Rejection::new(
                Reason::NotJson,
                None,
                "not valid JSON: expected value at line 1 column 1",
            ));
        }
    }
    // The text parsed: the line, or (when it held non-finite literals) the line with
    // them replaced by `null`, and `non_finite` saying where they were.
    let mut repaired = String::new();
    let (value, non_finite) = match serde_json::from_slice::<Value>(line) {
        Ok(v) => (v, NonFinite::default()),
        Err(err) => {
            // Producers in some languages write NaN/Infinity literals or numbers beyond
            // f64; those lines mean "a non-finite value", not "garbage".
            let parsed = std::str::from_utf8(line)
                .ok()
                .and_then(repair_non_finite_literals)
                .and_then(|(text, found)| {
                    let v = serde_json::from_str::<Value>(&text).ok()?;
                    repaired = text;
                    Some((v, found))
                });
            match parsed {
                Some(parsed) => parsed,
                None => {
                    return Err(Rejection::new(
                        Reason::NotJson,
                        None,
                        format!("not valid JSON: {err}"),
                    ));
                }
            }
        }
    };
    let text = if repaired.is_empty() {
        line
    } else {
        repaired.as_bytes()
    };
    let Value::Object(mut obj) = value else {
        return Err(Rejection::new(
            Reason::WrongType,
            None,
            format!(
                "expected a JSON object, found {}",
                describe(&value, non_finite.root.as_deref())
            ),
        ));
    };
    let nf = &non_finite;
    let id = take_id(&mut obj, nf, text)?;
    let attach = |mut r: Rejection| {
        r.id.clone_from(&id);
        r
    };
    let key = take_string(&mut obj, nf, "key").map_err(attach)?;
    if key.is_empty() {
        return Err(attach(Rejection::new(
            Reason::InvalidValue,
            Some("key"),
            "key is empty",
        )));
    }
    let key_chars = key.chars().count();
    if key_chars > MAX_KEY_CHARS {
        return Err(attach(Rejection::new(
            Reason::KeyTooLong,
            Some("key"),
            format!("key has {key_chars} characters, the limit is {MAX_KEY_CHARS}"),
        )));
    }
    let metric = take_string(&mut obj, nf, "type").map_err(attach)?;
    check_metric_name(&metric).map_err(attach)?;
    let ts = take_ts(&mut obj, nf, bounds).map_err(attach)?;
    let value = take_value(&mut obj, nf).map_err(attach)?;
    let attrs = take_attrs(&mut obj, nf, text).map_err(attach)?;
    let origin = match obj.remove("origin") {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    Ok(DecodedEvent {
        id,
        key,
        metric,
        ts,
        value,
        attrs,
        origin,
    })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// What a field holds, for a message: the non-finite literal its `null` stands for
/// (`literal`, from [`NonFinite`]), or its JSON kind.
fn describe(v: &Value, literal: Option<&str>) -> String {
    match (v, literal) {
        (Value::Null, Some(literal)) => format!("the non-finite number {literal}"),
        _ => json_kind(v).to_owned(),
    }
}

fn take_id(
    obj: &mut Map<String, Value>,
    nf: &NonFinite,
    text: &[u8],
) -> Result<Option<String>, Rejection> {
    let id = match (obj.remove("id"), nf.field("id")) {
        // Also an integer of more than 308 digits, which overflows f64.
        (Some(Value::Null), Some(literal)) => integer_id(literal)?,
        (None, _) | (Some(Value::Null), None) => return Ok(None),
        (Some(Value::String(s)), _) => s,
        // Many producers use numeric ids; their decimal form is the id.
        (Some(Value::Number(n)), _) if n.is_i64() || n.is_u64() => n.to_string(),
        // Beyond 64 bits, or with a fraction or an exponent: the parsed number is an
        // f64, so the text as written decides.
        (Some(Value::Number(n)), _) => {
            let written = raw_member(text, "id").map_or_else(|| n.to_string(), str::to_owned);
            integer_id(&written)?
        }
        (Some(other), _) => {
            return Err(Rejection::new(
                Reason::WrongType,
                Some("id"),
                format!(
                    "id must be a string or an integer, found {}",
                    json_kind(&other)
                ),
            ));
        }
    };
    if !id_len_ok(&id) {
        return Err(Rejection::new(
            Reason::InvalidValue,
            Some("id"),
            format!("id must have 1 to {MAX_ID_BYTES} bytes, found {}", id.len()),
        ));
    }
    Ok(Some(id))
}

/// A numeric id as written: an integer (no fraction, no exponent) is the id, all its
/// digits kept however many there are (no f64 rounding: 30 digits stay 30 digits).
/// `1.5`, `1e30` or `NaN` are not integers: a wrong type, since ids are strings or
/// integers, and `1e30` is not written the way the producer's id would be.
fn integer_id(written: &str) -> Result<String, Rejection> {
    let digits = written.strip_prefix('-').unwrap_or(written);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(written.to_owned());
    }
    Err(Rejection::new(
        Reason::WrongType,
        Some("id"),
        format!("id {written} is not an integer; send ids as strings or integers"),
    ))
}

/// The text of the top-level member `name` as written (the last one, as the parsed map
/// keeps it), for a number a `serde_json::Value` cannot hold exactly.
fn raw_member<'t>(text: &'t [u8], name: &str) -> Option<&'t str> {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
    use serde_json::value::RawValue;

    struct Member<'n>(&'n str);

    impl<'de> Visitor<'de> for Member<'_> {
        type Value = Option<&'de RawValue>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
            let mut found = None;
            while let Some(key) = map.next_key::<String>()? {
                if key == self.0 {
                    found = Some(map.next_value::<&'de RawValue>()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }

    impl<'de> DeserializeSeed<'de> for Member<'_> {
        type Value = Option<&'de RawValue>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }

    let mut de = serde_json::Deserializer::from_slice(text);
    Member(name)
        .deserialize(&mut de)
        .ok()
        .flatten()
        .map(RawValue::get)
}

fn take_string(
    obj: &mut Map<String, Value>,
    nf: &NonFinite,
    field: &'static str,
) -> Result<String, Rejection> {
    match (obj.remove(field), nf.field(field)) {
        (Some(Value::String(s)), _) => Ok(s),
        (None, _) | (Some(Value::Null), None) => Err(Rejection::new(
            Reason::MissingField,
            Some(field),
            format!("{field} is missing"),
        )),
        (Some(other), literal) => Err(Rejection::new(
            Reason::WrongType,
            Some(field),
            format!(
                "{field} must be a string, found {}",
                describe(&other, literal)
            ),
        )),
    }
}

fn id_len_ok(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_BYTES
}

/// Epoch milliseconds from 1970-01-12T13:46:40Z to 1970-04-26T17:46:40Z (1e9 to 1e10
/// ms): where epoch *seconds* from 2001-09-09 to 2286-11-20 land when read as
/// milliseconds. No stream carries events from early 1970, while a producer that sends
/// seconds (Unix `date +%s`, Python's `time.time()`) lands exactly here, and its events
/// would be counted, silently, into windows 56 years in the past. So no event time in
/// this range is accepted, whatever its form.
///
/// The rule is part of the accepted event-time range every stage checks
/// ([`ts_in_range`]), not of [`TimeBounds`]: it does not depend on the clock, and the
/// later stages (which decode with [`TimeBounds::unbounded`]) must accept exactly what
/// ingest wrote. For the same reason an RFC 3339 `ts` in the range is refused too:
/// ingest would normalize it to epoch milliseconds that read as seconds downstream.
/// Smaller values (seconds before 2001, or small test counters) are left alone.
pub const SECONDS_AS_MS: std::ops::Range<i64> = 1_000_000_000..10_000_000_000;

/// Whether `ts` lies between 1970 and the clock plus the allowed skew, outside
/// [`SECONDS_AS_MS`].
fn ts_in_range(ts: i64, bounds: TimeBounds) -> bool {
    ts >= 0
        && !SECONDS_AS_MS.contains(&ts)
        && ts <= bounds.now_ms.saturating_add(bounds.max_future_skew_ms)
}

/// Whether a finite `value` lies within the supported magnitudes.
fn value_in_range(v: f64) -> bool {
    v.is_finite() && v.abs() <= MAX_ABS_VALUE && (v == 0.0 || v.abs() >= MIN_ABS_NONZERO_VALUE)
}

/// The fast path of [`decode_line`]: a typed parse that borrows every string from the
/// line instead of building a `serde_json::Value` (a map, and a `String` per field name
/// and value, all freed again a moment later).
///
/// Invariant: it returns `Some` only for a line the general decoder accepts, and then
/// exactly the event the general decoder would build. It declines (`None`) anything
/// unusual, and the general decoder decides, with its exact rejection: strings with
/// escapes (they cannot be borrowed), non-finite literals (they are not JSON, so the
/// parse fails), fractional numbers in `attrs` (their text needs the raw line), `id` or
/// `ts` of an unusual type or range (an id beyond 64 bits among them), duplicate fields,
/// and every line that fails a check. Like the general decoder it reads a line without
/// one leading byte-order mark ([`line_content`]).
mod fast {
    use std::collections::BTreeMap;
    use std::fmt;

    use serde::Deserialize;
    use serde::de::{self, Deserializer, Visitor};

    use super::{
        DecodedEvent, MAX_KEY_CHARS, TimeBounds, check_metric_name, id_len_ok, line_content,
        ts_in_range, value_in_range,
    };
    use crate::time::parse_rfc3339_ms;

    #[derive(Deserialize)]
    #[serde(bound(deserialize = "'de: 'a, A: Deserialize<'de>"))]
    struct Envelope<'a, A> {
        #[serde(borrow, default)]
        id: Option<Scalar<'a>>,
        key: &'a str,
        #[serde(rename = "type")]
        metric: &'a str,
        ts: Ts,
        value: f64,
        #[serde(default)]
        attrs: Option<A>,
        #[serde(default)]
        origin: Option<&'a str>,
    }

    /// A string borrowed from the line, an integer or a boolean, as the text the general
    /// decoder would keep (integers and booleans print the same from a `Value`).
    pub(crate) enum Scalar<'a> {
        Str(&'a str),
        Text(String),
        Bool(bool),
    }

    impl Scalar<'_> {
        fn into_string(self) -> String {
            match self {
                Scalar::Str(s) => s.to_owned(),
                Scalar::Text(s) => s,
                Scalar::Bool(b) => b.to_string(),
            }
        }
    }

    impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Scalar<'de>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an unescaped string, an integer or a boolean")
                }
                fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                    Ok(Scalar::Str(s))
                }
                fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
                    Ok(Scalar::Text(n.to_string()))
                }
                fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                    Ok(Scalar::Text(n.to_string()))
                }
                fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
                    Ok(Scalar::Bool(b))
                }
            }
            d.deserialize_any(V)
        }
    }

    /// `ts` as epoch milliseconds: an integer, a number (truncated to the millisecond) or
    /// an RFC 3339 string without escapes.
    struct Ts(i64);

    impl<'de> Deserialize<'de> for Ts {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Ts;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("epoch milliseconds or an RFC 3339 string")
                }
                fn visit_i64<E: de::Error>(self, n: i64) -> Result<Ts, E> {
                    Ok(Ts(n))
                }
                fn visit_u64<E: de::Error>(self, n: u64) -> Result<Ts, E> {
                    i64::try_from(n)
                        .map(Ts)
                        .map_err(|_| E::custom("ts out of range"))
                }
                fn visit_f64<E: de::Error>(self, f: f64) -> Result<Ts, E> {
                    if f.is_finite() && f.abs() < 9.0e15 {
                        Ok(Ts(f.floor() as i64))
                    } else {
                        Err(E::custom("ts out of range"))
                    }
                }
                fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Ts, E> {
                    parse_rfc3339_ms(s)
                        .map(Ts)
                        .ok_or_else(|| E::custom("ts is not RFC 3339"))
                }
            }
            d.deserialize_any(V)
        }
    }

    /// Attributes the fast path accepts (borrowed names; unescaped strings, integers,
    /// booleans), checked without being kept: for stages that never read them.
    struct UnkeptAttrs;

    impl<'de> Deserialize<'de> for UnkeptAttrs {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = UnkeptAttrs;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an object of scalars")
                }
                fn visit_map<M: de::MapAccess<'de>>(
                    self,
                    mut map: M,
                ) -> Result<UnkeptAttrs, M::Error> {
                    while let Some((_, _)) = map.next_entry::<&'de str, Scalar<'de>>()? {}
                    Ok(UnkeptAttrs)
                }
            }
            d.deserialize_map(V)
        }
    }

    /// What the fast path does with `attrs`.
    pub(super) trait AttrsMode<'a>: Deserialize<'a> {
        fn into_attrs(self) -> BTreeMap<String, String>;
    }

    impl<'a> AttrsMode<'a> for BTreeMap<&'a str, Scalar<'a>> {
        fn into_attrs(self) -> BTreeMap<String, String> {
            self.into_iter()
                .map(|(name, v)| (name.to_owned(), v.into_string()))
                .collect()
        }
    }

    impl AttrsMode<'_> for UnkeptAttrs {
        fn into_attrs(self) -> BTreeMap<String, String> {
            BTreeMap::new()
        }
    }

    pub(super) fn decode(line: &[u8], bounds: TimeBounds) -> Option<DecodedEvent> {
        decode_as::<BTreeMap<&str, Scalar<'_>>>(line, bounds)
    }

    /// [`decode`] for stages that never read `attrs`: checked like the general decoder
    /// checks them, but not kept (the event's `attrs` is empty).
    pub(super) fn decode_without_attrs(line: &[u8], bounds: TimeBounds) -> Option<DecodedEvent> {
        decode_as::<UnkeptAttrs>(line, bounds)
    }

    /// A valid envelope with every string borrowed from its line: what ingest
    /// normalizes ([`decode_borrowed`]) and aggregate counts
    /// ([`decode_borrowed_without_attrs`]) without building an owned event.
    #[derive(Debug)]
    pub(crate) struct BorrowedEvent<'a> {
        /// The producer's id, as the text the general decoder would keep.
        pub id: Option<Scalar<'a>>,
        pub key: &'a str,
        pub metric: &'a str,
        pub ts: i64,
        pub value: f64,
        /// Empty from [`decode_borrowed_without_attrs`].
        pub attrs: BTreeMap<&'a str, Scalar<'a>>,
        /// The origin an upstream stage stamped (ingest ignores a producer's).
        pub origin: Option<&'a str>,
    }

    impl fmt::Debug for Scalar<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.as_str())
        }
    }

    impl<'a> Scalar<'a> {
        /// The text [`Scalar::into_string`] gives, borrowed from the line where it is.
        pub(crate) fn into_cow(self) -> std::borrow::Cow<'a, str> {
            match self {
                Scalar::Str(s) => std::borrow::Cow::Borrowed(s),
                other => std::borrow::Cow::Owned(other.into_string()),
            }
        }
    }

    impl Scalar<'_> {
        /// The text [`Scalar::into_string`] gives, borrowed.
        pub(crate) fn as_str(&self) -> &str {
            match self {
                Scalar::Str(s) => s,
                Scalar::Text(s) => s,
                Scalar::Bool(true) => "true",
                Scalar::Bool(false) => "false",
            }
        }
    }

    /// As the string it stands for: what the owned event serializes.
    impl serde::Serialize for Scalar<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(self.as_str())
        }
    }

    /// [`decode`] without copying a string out of the line: `Some` for exactly the
    /// lines [`decode`] takes, holding the same values.
    pub(crate) fn decode_borrowed(line: &[u8], bounds: TimeBounds) -> Option<BorrowedEvent<'_>> {
        decode_borrowed_as::<BTreeMap<&str, Scalar<'_>>>(line, bounds, Option::unwrap_or_default)
    }

    /// [`decode_without_attrs`] without copying a string out of the line: `Some` for
    /// exactly the lines it takes, holding the same values (`attrs` checked, not kept).
    pub(crate) fn decode_borrowed_without_attrs(
        line: &[u8],
        bounds: TimeBounds,
    ) -> Option<BorrowedEvent<'_>> {
        decode_borrowed_as::<UnkeptAttrs>(line, bounds, |_| BTreeMap::new())
    }

    fn decode_borrowed_as<'a, A: Deserialize<'a>>(
        line: &'a [u8],
        bounds: TimeBounds,
        attrs: impl FnOnce(Option<A>) -> BTreeMap<&'a str, Scalar<'a>>,
    ) -> Option<BorrowedEvent<'a>> {
        let e = decode_checked::<A>(line, bounds)?;
        Some(BorrowedEvent {
            id: e.id,
            key: e.key,
            metric: e.metric,
            ts: e.ts.0,
            value: e.value,
            attrs: attrs(e.attrs),
            origin: e.origin,
        })
    }

    /// Parses a line and applies every check of the general decoder; `None` when the
    /// line is unusual or fails one (the general decoder then gives the verdict).
    fn decode_checked<'a, A: Deserialize<'a>>(
        line: &'a [u8],
        bounds: TimeBounds,
    ) -> Option<Envelope<'a, A>> {
        let e: Envelope<'a, A> = serde_json::from_slice(line_content(line)).ok()?;
        // A boolean id is a wrong type: the general decoder says so.
        if matches!(e.id, Some(Scalar::Bool(_))) {
            return None;
        }
        if e.id.as_ref().is_some_and(|id| !id_len_ok(id.as_str()))
            || e.key.is_empty()
            || e.key.chars().count() > MAX_KEY_CHARS
            || check_metric_name(e.metric).is_err()
            || !ts_in_range(e.ts.0, bounds)
            || !value_in_range(e.value)
        {
            return None;
        }
        Some(e)
    }

    fn decode_as<'a, A: AttrsMode<'a>>(line: &'a [u8], bounds: TimeBounds) -> Option<DecodedEvent> {
        let e = decode_checked::<A>(line, bounds)?;
        let attrs = e.attrs.map(A::into_attrs).unwrap_or_default();
        Some(DecodedEvent {
            id: e.id.map(Scalar::into_string),
            key: e.key.to_owned(),
            metric: e.metric.to_owned(),
            ts: e.ts.0,
            value: e.value,
            attrs,
            origin: e.origin.map(str::to_owned),
        })
    }
}

pub(crate) use fast::{BorrowedEvent, Scalar, decode_borrowed, decode_borrowed_without_attrs};

/// Metric names join keys in storage keys (`type#key`), so they are identifiers.
pub fn check_metric_name(metric: &str) -> Result<(), Rejection> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/');
    if metric.is_empty() || metric.len() > MAX_TYPE_CHARS || !metric.chars().all(ok_char) {
        return Err(Rejection::new(
            Reason::InvalidValue,
            Some("type"),
            format!(
                "type {metric:?} must be 1 to {MAX_TYPE_CHARS} characters of A-Z a-z 0-9 _ - . : /"
            ),
        ));
    }
    Ok(())
}

fn take_ts(
    obj: &mut Map<String, Value>,
    nf: &NonFinite,
    bounds: TimeBounds,
) -> Result<i64, Rejection> {
    let (ts, numeric) = match (obj.remove("ts"), nf.field("ts")) {
        (Some(Value::Null), Some(literal)) => {
            return Err(Rejection::new(
                Reason::TsOutOfRange,
                Some("ts"),
                format!("ts {literal} is not a finite number"),
            ));
        }
        (None, _) | (Some(Value::Null), None) => {
            return Err(Rejection::new(
                Reason::MissingField,
                Some("ts"),
                "ts is missing",
            ));
        }
        (Some(Value::String(s)), _) => {
            let ts = parse_rfc3339_ms(&s).ok_or_else(|| {
                Rejection::new(
                    Reason::InvalidValue,
                    Some("ts"),
                    format!("ts {s:?} is neither RFC 3339 nor epoch milliseconds"),
                )
            })?;
            (ts, None)
        }
        (Some(Value::Number(n)), _) => {
            let ts = if let Some(i) = n.as_i64() {
                i
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                // Fractional milliseconds are truncated to the millisecond.
                if f.is_finite() && f.abs() < 9.0e15 {
                    f.floor() as i64
                } else {
                    return Err(Rejection::new(
                        Reason::TsOutOfRange,
                        Some("ts"),
                        format!("ts {n} is out of range for epoch milliseconds"),
                    ));
                }
            };
            (ts, Some(n))
        }
        (Some(other), _) => {
            return Err(Rejection::new(
                Reason::WrongType,
                Some("ts"),
                format!(
                    "ts must be an RFC 3339 string or epoch milliseconds, found {}",
                    json_kind(&other)
                ),
            ));
        }
    };
    if ts < 0 {
        return Err(Rejection::new(
            Reason::TsOutOfRange,
            Some("ts"),
            format!("ts {ts} is before 1970-01-01T00:00:00Z"),
        ));
    }
    if SECONDS_AS_MS.contains(&ts) {
        let detail = match numeric {
            Some(n) => {
                // What the producer most likely meant: the number as seconds.
                let meant_ms = (n.as_f64().unwrap_or(0.0) * 1000.0).floor() as i64;
                format!(
                    "ts {n} looks like epoch seconds ({}); send epoch milliseconds",
                    format_rfc3339(meant_ms)
                )
            }
            None => format!(
                "ts {} is in {}..{}, where epoch seconds sent as milliseconds land; \
                 no event time in that range is accepted",
                format_rfc3339(ts),
                format_rfc3339(SECONDS_AS_MS.start),
                format_rfc3339(SECONDS_AS_MS.end)
            ),
        };
        return Err(Rejection::new(Reason::TsOutOfRange, Some("ts"), detail));
    }
    let limit = bounds.now_ms.saturating_add(bounds.max_future_skew_ms);
    if ts > limit {
        return Err(Rejection::new(
            Reason::TsOutOfRange,
            Some("ts"),
            format!(
                "ts {ts} is {} ms ahead of the clock; at most {} ms of skew is allowed",
                ts.saturating_sub(bounds.now_ms),
                bounds.max_future_skew_ms
            ),
        ));
    }
    Ok(ts)
}

fn take_value(obj: &mut Map<String, Value>, nf: &NonFinite) -> Result<f64, Rejection> {
    match (obj.remove("value"), nf.field("value")) {
        (Some(Value::Null), Some(literal)) => Err(Rejection::new(
            Reason::NonFiniteValue,
            Some("value"),
            format!("value {literal} is not finite"),
        )),
        (None, _) | (Some(Value::Null), None) => Err(Rejection::new(
            Reason::MissingField,
            Some("value"),
            "value is missing",
        )),
        (Some(Value::Number(n)), _) => {
            let v = n.as_f64().unwrap_or(f64::NAN);
            if !v.is_finite() {
                Err(Rejection::new(
                    Reason::NonFiniteValue,
                    Some("value"),
                    format!("value {n} is not finite"),
                ))
            } else if v.abs() > MAX_ABS_VALUE || (v != 0.0 && v.abs() < MIN_ABS_NONZERO_VALUE) {
                Err(Rejection::new(
                    Reason::ValueOutOfRange,
                    Some("value"),
                    format!("value {v:e} is outside the supported magnitude 1e-100..1e100"),
                ))
            } else {
                Ok(v)
            }
        }
        (Some(other), _) => Err(Rejection::new(
            Reason::WrongType,
            Some("value"),
            format!("value must be a number, found {}", json_kind(&other)),
        )),
    }
}

/// Attribute values as the producer wrote them, for numbers that are not integers.
#[derive(Deserialize)]
struct RawAttrs<'a> {
    #[serde(borrow, default)]
    attrs: Option<BTreeMap<String, &'a serde_json::value::RawValue>>,
}

/// Dimensions are strings; numbers are kept in the producer's own text (`1e15` stays
/// `1e15`, `1.10` stays `1.10`), so normalizing never makes an event larger than its
/// input (re-encoding `1e15` as `1000000000000000.0` would, up to 5 times over).
/// Integers print identically either way; other numbers need the parsed text (the line,
/// or its repair) parsed once more, only for the `attrs` object.
fn number_text<'a>(
    n: &serde_json::Number,
    name: &str,
    raw: &mut Option<Option<RawAttrs<'a>>>,
    text: &'a [u8],
) -> String {
    if n.is_f64() {
        let parsed = raw.get_or_insert_with(|| serde_json::from_slice::<RawAttrs<'a>>(text).ok());
        // A text that does not parse raw (a duplicate `attrs` field) falls back to the
        // shortest of the two canonical forms.
        if let Some(text) = parsed
            .as_ref()
            .and_then(|r| r.attrs.as_ref())
            .and_then(|a| a.get(name))
        {
            return text.get().to_owned();
        }
        if let Some(f) = n.as_f64() {
            let plain = n.to_string();
            let sci = format!("{f:e}");
            return if sci.len() < plain.len() { sci } else { plain };
        }
    }
    n.to_string()
}

fn take_attrs(
    obj: &mut Map<String, Value>,
    nf: &NonFinite,
    text: &[u8],
) -> Result<BTreeMap<String, String>, Rejection> {
    let map = match (obj.remove("attrs"), nf.field("attrs")) {
        (None, _) | (Some(Value::Null), None) => return Ok(BTreeMap::new()),
        (Some(Value::Object(map)), _) => map,
        (Some(other), literal) => {
            return Err(Rejection::new(
                Reason::WrongType,
                Some("attrs"),
                format!(
                    "attrs must be an object, found {}",
                    describe(&other, literal)
                ),
            ));
        }
    };
    let mut attrs = BTreeMap::new();
    let mut raw = None;
    for (name, v) in map {
        // Dimensions are strings; scalar numbers and booleans are taken in their JSON form.
        let s = match v {
            Value::String(s) => s,
            Value::Number(n) => number_text(&n, &name, &mut raw, text),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(Rejection::new(
                    Reason::WrongType,
                    Some("attrs"),
                    format!(
                        "attrs.{name} must be a string, number or boolean, found {}",
                        describe(&other, nf.attr(&name))
                    ),
                ));
            }
        };
        attrs.insert(name, s);
    }
    Ok(attrs)
}

/// Where [`repair_non_finite_literals`] found non-finite number literals (`NaN`,
/// `Infinity`, `1e999`...), each with its text as written. Kept beside the parsed
/// value, never inside it: the literals become `null` in the text that is parsed, so
/// no string a producer sends can be mistaken for one.
#[derive(Debug, Default)]
struct NonFinite {
    /// The literal, when the whole line is one.
    root: Option<String>,
    /// Top-level fields whose value (the last one, as the parsed map keeps) is a
    /// non-finite literal.
    fields: BTreeMap<String, String>,
    /// The same for the members of the top-level `attrs` object.
    attrs: BTreeMap<String, String>,
}

impl NonFinite {
    /// The literal a top-level field held, if its `null` stands for one.
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// The literal an `attrs` member held, if its `null` stands for one.
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).map(String::as_str)
    }
}

/// Rewrites `NaN`, `Infinity`, `-Infinity` and numeric literals that overflow `f64`
/// (outside strings) into `null`, and says where they were; `None` if there were none.
/// The text is not validated here: what follows parses the result and rejects it if it
/// is not JSON, so the bookkeeping only has to be right for text that is.
fn repair_non_finite_literals(text: &str) -> Option<(String, NonFinite)> {
    let bytes = text.as_bytes();
    // Allocates only once a literal is found: most lines that reach here are garbage.
    let mut out = String::new();
    let mut found = NonFinite::default();
    let mut changed = false;
    let mut i = 0;
    let mut last = 0;
    // The containers open at `i` (`{` or `[`), outermost first.
    let mut open: Vec<u8> = Vec::new();
    // The last key read in the top-level object, and in its `attrs` object.
    let mut field: Option<String> = None;
    let mut attr: Option<String> = None;
    // Whether `open[1]` is the object that is the value of the top-level `attrs`.
    let mut in_attrs = false;
    while i < bytes.len() {
        match bytes[i] {
            b'{' | b'[' => {
                if open == [b'{'] && bytes[i] == b'{' && field.as_deref() == Some("attrs") {
                    in_attrs = true;
                }
                open.push(bytes[i]);
                i += 1;
            }
            b'}' | b']' => {
                open.pop();
                if open.len() < 2 {
                    in_attrs = false;
                }
                i += 1;
            }
            b'"' => {
                // Skip the string, honouring escapes.
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(bytes.len());
                let mut next = i;
                while next < bytes.len() && bytes[next].is_ascii_whitespace() {
                    next += 1;
                }
                if bytes.get(next) != Some(&b':') {
                    continue;
                }
                // A key: a new occurrence replaces an earlier one, as in the parsed map.
                let depth_one = open == [b'{'];
                if !(depth_one || in_attrs && open.len() == 2) {
                    continue;
                }
                let Ok(key) = serde_json::from_str::<String>(&text[start..i]) else {
                    continue;
                };
                if depth_one {
                    found.fields.remove(&key);
                    if key == "attrs" {
                        found.attrs.clear();
                    }
                    field = Some(key);
                } else {
                    found.attrs.remove(&key);
                    attr = Some(key);
                }
            }
            b'N' | b'I' | b'-' | b'0'..=b'9' => {
                let start = i;
                let mut end = i;
                while end < bytes.len()
                    && matches!(bytes[end], b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'+' | b'.')
                {
                    end += 1;
                }
                let token = &text[start..end];
                let non_finite = matches!(token, "NaN" | "-NaN" | "Infinity" | "-Infinity")
                    || (token.starts_with(|c: char| c == '-' || c.is_ascii_digit())
                        && token.parse::<f64>().is_ok_and(|f| f.is_infinite()));
                if non_finite {
                    if !changed {
                        out.reserve(text.len());
                    }
                    out.push_str(&text[last..start]);
                    out.push_str("null");
                    last = end;
                    changed = true;
                    let literal = token.to_owned();
                    if open.is_empty() {
                        found.root = Some(literal);
                    } else if open == [b'{'] {
                        if let Some(f) = &field {
                            found.fields.insert(f.clone(), literal);
                        }
                    } else if in_attrs && open.len() == 2 {
                        if let Some(a) = &attr {
                            found.attrs.insert(a.clone(), literal);
                        }
                    }
                }
                i = end.max(start + 1);
            }
            _ => i += 1,
        }
    }
    if !changed {
        return None;
    }
    out.push_str(&text[last.min(text.len())..]);
    Some((out, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn bounds() -> TimeBounds {
        TimeBounds {
            now_ms: NOW,
            max_future_skew_ms: 300_000,
        }
    }

    #[test]
    fn fast_path_takes_plain_envelopes_and_declines_escapes() {
        let plain = br#"{"id":"e1","key":"k","type":"t","ts":1764000000000,"value":2,"attrs":{"a":"x","n":3,"b":false},"origin":"s:1:0"}"#;
        let event = fast::decode(plain, bounds()).expect("a plain envelope takes the fast path");
        assert_eq!(event.attrs.get("n").map(String::as_str), Some("3"));
        assert_eq!(event.attrs.get("b").map(String::as_str), Some("false"));
        assert_eq!(Ok(event), decode_line_slow(plain, bounds()));
        let escaped = br#"{"key":"k\u00e9","type":"t","ts":1764000000000,"value":2}"#;
        assert!(fast::decode(escaped, bounds()).is_none());
        assert_eq!(
            decode_line(escaped, bounds()).map(|e| e.key),
            Ok("k\u{e9}".to_owned())
        );
    }

    fn one(line: &str) -> Result<DecodedEvent, Rejection> {
        one_with(line, bounds())
    }

    fn one_with(line: &str, bounds: TimeBounds) -> Result<DecodedEvent, Rejection> {
        let lines = decode_record(line.as_bytes(), bounds);
        assert_eq!(lines.len(), 1, "{line}");
        lines
            .into_iter()
            .next()
            .map(|l| l.result)
            .expect("one line")
    }

    fn reason(line: &str) -> (Reason, Option<&'static str>) {
        let r = one(line).expect_err("should be rejected");
        (r.reason, r.field)
    }

    #[test]
    fn decodes_a_full_event_with_rfc3339_time() {
        let e = one(r#"{"id":"e1","key":"sensor-1","type":"temp","ts":"2026-01-01T00:00:01.5Z","value":21.5,"attrs":{"site":"a","floor":3}}"#)
            .expect("valid");
        assert_eq!(e.id.as_deref(), Some("e1"));
        assert_eq!(e.ts, NOW + 1500);
        assert_eq!(e.value, 21.5);
        assert_eq!(e.attrs.get("floor").map(String::as_str), Some("3"));
    }

    #[test]
    fn decodes_epoch_millis_and_numeric_ids_and_offsets() {
        let e =
            one(r#"{"id":7,"key":"k","type":"t","ts":1767225600000,"value":-3}"#).expect("valid");
        assert_eq!(e.id.as_deref(), Some("7"));
        assert_eq!(e.ts, NOW);
        let e = one(r#"{"key":"k","type":"t","ts":"2026-01-01T01:00:00+01:00","value":0}"#)
            .expect("valid");
        assert_eq!(e.ts, NOW);
        assert_eq!(e.id, None);
    }

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
    fn every_reason_is_reachable_with_its_field() {
        assert_eq!(
            decode_record(b"\xff\xfe", bounds())[0]
                .result
                .as_ref()
                .expect_err("x")
                .reason,
            Reason::NotUtf8
        );
        assert_eq!(reason("{nope"), (Reason::NotJson, None));
        assert_eq!(
            decode_record(b"  \n ", bounds())[0]
                .result
                .as_ref()
                .expect_err("x")
                .reason,
            Reason::NotJson
        );
        assert_eq!(reason("[1,2]"), (Reason::WrongType, None));
        assert_eq!(
            reason(r#"{"type":"t","ts":1,"value":1}"#),
            (Reason::MissingField, Some("key"))
        );
        assert_eq!(
            reason(r#"{"key":"k","ts":1,"value":1}"#),
            (Reason::MissingField, Some("type"))
        );
        assert_eq!(
            reason(r#"{"key":"k","type":"t","value":1}"#),
            (Reason::MissingField, Some("ts"))
        );
        assert_eq!(
            reason(r#"{"key":"k","type":"t","ts":1}"#),
            (Reason::MissingField, Some("value"))
        );
        assert_eq!(
            reason(r#"{"key":"k","type":"t","ts":1,"value":null}"#),
            (Reason::MissingField, Some("value"))
        );
        assert_eq!(
            reason(r#"{"key":5,"type":"t","ts":1,"value":1}"#),
            (Reason::WrongType, Some("key"))
        );
        assert_eq!(
            reason(r#"{"key":"k","type":"t","ts":1,"value":"1"}"#),
            (Reason::WrongType, Some("value"))
        );
        assert_eq!(
            reason(r#"{"key":"k","type":"t","ts":true,"value":1}"#),
            (Reason::WrongType, Some("ts"))
        );
        assert_eq!(
            reason(r#"{"key":"k","type":"t","ts":1,"value":1,"attrs":[1]}"#),
            (Reason::WrongType, Some("attrs"))
        );
        assert_eq!(
            reason(r#"{"key":"k","type":"t","ts":1,"value":1,"attrs":{"a":{}}}"#),
            (Reason::WrongType, Some("attrs"))
        );
        assert_eq!(
            reason(r#"{"id":[],"key":"k","type":"t","ts":1,"value":1}"#),
            (Reason::WrongType, Some("id"))
        );
        assert_eq!(
            reason(r#"{"key":"","type":"t","ts":1,"value":1}"#),
            (Reason::InvalidValue, Some("key"))
        );
        assert_eq!(
            reason(r#"{"key":"k","type":"a#b","ts":1,"value":1}"#),
            (Reason::InvalidValue, Some("type"))
        );
        assert_eq!(
            reason(r#"{"key":"k","type":"t","ts":"yesterday","value":1}"#),
            (Reason::InvalidValue, Some("ts"))
        );
        assert_eq!(
            reason(r#"{"key":"k","type":"t","ts":1,"value":NaN}"#),
            (Reason::NonFiniteValue, Some("value"))
        );
        assert_eq!(
            reason(r#"{"key":"k","type":"t","ts":1,"value":-Infinity}"#),
            (Reason::NonFiniteValue, Some("value"))
        );
        assert_eq!(
            reason(r#"{"key":"k","type":"t","ts":1,"value":1e999}"#),
            (Reason::NonFiniteValue, Some("value"))
        );
        assert_eq!(
            reason(r#"{"key":"k","type":"t","ts":1,"value":1e101}"#),
            (Reason::ValueOutOfRange, Some("value"))
        );
        assert_eq!(
            reason(r#"{"key":"k","type":"t","ts":1,"value":1e-101}"#),
            (Reason::ValueOutOfRange, Some("value"))
        );
        assert_eq!(
            reason(r#"{"key":"k","type":"t","ts":-1,"value":1}"#),
            (Reason::TsOutOfRange, Some("ts"))
        );
        assert_eq!(
            reason(r#"{"key":"k","type":"t","ts":"2026-01-01T00:05:01Z","value":1}"#),
            (Reason::TsOutOfRange, Some("ts"))
        );
        assert_eq!(
            reason(r#"{"key":"k","type":"t","ts":1e300,"value":1}"#),
            (Reason::TsOutOfRange, Some("ts"))
        );
        let long = "k".repeat(257);
        assert_eq!(
            reason(&format!(
                r#"{{"key":"{long}","type":"t","ts":1,"value":1}}"#
            )),
            (Reason::KeyTooLong, Some("key"))
        );
        let big = vec![b' '; MAX_RECORD_BYTES + 1];
        assert_eq!(
            decode_record(&big, bounds())[0]
                .result
                .as_ref()
                .expect_err("x")
                .reason,
            Reason::RecordTooLarge
        );
    }

    #[test]
    fn keys_are_limited_in_characters_not_bytes() {
        let key: String = "é".repeat(256); // 512 bytes, 256 characters
        assert!(one(&format!(r#"{{"key":"{key}","type":"t","ts":1,"value":1}}"#)).is_ok());
        let key: String = "🦀".repeat(257);
        assert_eq!(
            reason(&format!(r#"{{"key":"{key}","type":"t","ts":1,"value":1}}"#)).0,
            Reason::KeyTooLong
        );
    }

    #[test]
    fn nan_inside_strings_is_left_alone() {
        let e = one(r#"{"key":"NaN","type":"t","ts":1,"value":2,"attrs":{"x":"Infinity"}}"#)
            .expect("valid");
        assert_eq!(e.key, "NaN");
        assert_eq!(e.attrs["x"], "Infinity");
    }

    /// The string the decoder once used to mark a non-finite literal inside the JSON
    /// text, sent by a producer: an ordinary string wherever it appears.
    const OLD_SENTINEL: &str = r#""\u0000sluice:non-finite""#;

    #[test]
    fn the_old_non_finite_marker_string_is_an_ordinary_string() {
        let marker = "\u{0}sluice:non-finite";
        let line = |id: &str, key: &str, ts: &str, value: &str, tail: &str| {
            format!(
                r#"{{"id":{id},"key":{key},"type":"t","ts":{ts},"value":{value},"attrs":{{"a":{OLD_SENTINEL}}},"origin":{OLD_SENTINEL}{tail}}}"#
            )
        };
        // As id, key, attribute and origin: kept as sent, also in a line with a real
        // non-finite literal elsewhere (which takes the repairing path).
        for tail in ["", r#","junk":NaN"#] {
            let e = one(&line(OLD_SENTINEL, OLD_SENTINEL, "1", "2", tail)).expect("valid");
            assert_eq!(e.id.as_deref(), Some(marker), "{tail}");
            assert_eq!(e.key, marker, "{tail}");
            assert_eq!(e.attrs["a"], marker, "{tail}");
            assert_eq!(e.origin.as_deref(), Some(marker), "{tail}");
        }
        // As value: a string where a number belongs.
        let r = one(&line("1", r#""k""#, "1", OLD_SENTINEL, "")).expect_err("a string value");
        assert_eq!(
            (r.reason, r.field, r.detail.as_str()),
            (
                Reason::WrongType,
                Some("value"),
                "value must be a number, found a string"
            )
        );
        // As ts: a string that is not RFC 3339.
        let r = one(&line("1", r#""k""#, OLD_SENTINEL, "NaN", "")).expect_err("a bad ts");
        assert_eq!((r.reason, r.field), (Reason::InvalidValue, Some("ts")));
        assert!(r.detail.contains("sluice:non-finite"), "{}", r.detail);
        // As type: not a metric name. As attrs: a string, not an object.
        assert_eq!(
            reason(&format!(
                r#"{{"key":"k","type":{OLD_SENTINEL},"ts":1,"value":1}}"#
            )),
            (Reason::InvalidValue, Some("type"))
        );
        let r = one(&format!(
            r#"{{"key":"k","type":"t","ts":1,"value":1,"attrs":{OLD_SENTINEL}}}"#
        ))
        .expect_err("attrs");
        assert_eq!(r.detail, "attrs must be an object, found a string");
        // As the whole line.
        let r = one(OLD_SENTINEL).expect_err("not an object");
        assert_eq!(r.detail, "expected a JSON object, found a string");
    }

    #[test]
    fn non_finite_literals_are_named_by_the_field_that_held_them() {
        let r = one(r#"{"key":NaN,"type":"t","ts":1,"value":1}"#).expect_err("key");
        assert_eq!(
            (r.reason, r.field, r.detail.as_str()),
            (
                Reason::WrongType,
                Some("key"),
                "key must be a string, found the non-finite number NaN"
            )
        );
        let r = one(r#"{"key":"k","type":"t","ts":-Infinity,"value":1}"#).expect_err("ts");
        assert_eq!(
            (r.reason, r.field, r.detail.as_str()),
            (
                Reason::TsOutOfRange,
                Some("ts"),
                "ts -Infinity is not a finite number"
            )
        );
        let r = one(r#"{"key":"k","type":"t","ts":1,"value":1e999}"#).expect_err("value");
        assert_eq!(
            (r.reason, r.field, r.detail.as_str()),
            (
                Reason::NonFiniteValue,
                Some("value"),
                "value 1e999 is not finite"
            )
        );
        // The field is named even when its name is escaped.
        assert_eq!(
            reason(r#"{"key":"k","type":"t","ts":1,"v\u0061lue":NaN}"#),
            (Reason::NonFiniteValue, Some("value"))
        );
        let r = one(r#"{"key":"k","type":"t","ts":1,"value":1,"attrs":{"a":"x","n":NaN}}"#)
            .expect_err("attrs");
        assert_eq!(
            r.detail,
            "attrs.n must be a string, number or boolean, found the non-finite number NaN"
        );
        let r =
            one(r#"{"key":"k","type":"t","ts":1,"value":1,"attrs":Infinity}"#).expect_err("attrs");
        assert_eq!(
            r.detail,
            "attrs must be an object, found the non-finite number Infinity"
        );
        let r = one("NaN").expect_err("not an object");
        assert_eq!(
            r.detail,
            "expected a JSON object, found the non-finite number NaN"
        );
        // A literal null is still missing, also in a line that needed repair.
        assert_eq!(
            reason(r#"{"key":null,"type":"t","ts":1,"value":NaN}"#),
            (Reason::MissingField, Some("key"))
        );
        // Fields nobody reads may hold them; a non-string origin is no origin.
        let e = one(
            r#"{"key":"k","type":"t","ts":1,"value":1,"origin":NaN,"x":{"y":[Infinity]},"z":NaN}"#,
        )
        .expect("valid");
        assert_eq!(e.origin, None);
        // Duplicate fields: the last one counts, as for any other value.
        assert_eq!(
            one(r#"{"key":"k","type":"t","ts":1,"value":NaN,"value":2}"#)
                .expect("valid")
                .value,
            2.0
        );
        assert_eq!(
            reason(r#"{"key":"k","type":"t","ts":1,"value":2,"value":NaN}"#),
            (Reason::NonFiniteValue, Some("value"))
        );
        let r =
            one(r#"{"key":"k","type":"t","ts":1,"value":1,"attrs":{"a":NaN},"attrs":{"a":null}}"#)
                .expect_err("attrs");
        assert_eq!(
            r.detail,
            "attrs.a must be a string, number or boolean, found null"
        );
        // Numbers in attrs keep their text in a repaired line too.
        let e = one(r#"{"key":"k","type":"t","ts":1,"value":1,"attrs":{"f":1.10},"z":NaN}"#)
            .expect("valid");
        assert_eq!(e.attrs["f"], "1.10");
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
    fn integer_ids_beyond_64_bits_keep_their_digits() {
        for id in [
            "123456789012345678901234567890",
            "-123456789012345678901234567890",
            "18446744073709551616",
            "-9223372036854775809",
            "-0",
            // Beyond f64 as well (taken for a non-finite literal by the parser).
            &"9".repeat(400),
        ] {
            let line = format!(r#"{{"id":{id},"key":"k","type":"t","ts":1,"value":1}}"#);
            assert_eq!(one(&line).expect("valid").id.as_deref(), Some(id));
            assert_eq!(
                decode_line_slow(line.as_bytes(), bounds())
                    .expect("valid")
                    .id
                    .as_deref(),
                Some(id)
            );
        }
        // Still bounded in length.
        let long = format!(
            r#"{{"id":{},"key":"k","type":"t","ts":1,"value":1}}"#,
            "9".repeat(MAX_ID_BYTES + 1)
        );
        assert_eq!(reason(&long), (Reason::InvalidValue, Some("id")));
        // A fraction or an exponent is not an integer, whatever its value.
        for id in ["1e30", "1E+2", "1.5", "12.0", "NaN"] {
            let line = format!(r#"{{"id":{id},"key":"k","type":"t","ts":1,"value":1}}"#);
            let r = one(&line).expect_err("not an integer");
            assert_eq!(
                (r.reason, r.field, r.detail),
                (
                    Reason::WrongType,
                    Some("id"),
                    format!("id {id} is not an integer; send ids as strings or integers")
                )
            );
        }
        // The last of duplicate ids counts, as for a string id.
        let line = r#"{"id":1e30,"id":123456789012345678901234567890,"key":"k","type":"t","ts":1,"value":1}"#;
        assert_eq!(
            one(line).expect("valid").id.as_deref(),
            Some("123456789012345678901234567890")
        );
    }

    #[test]
    fn epoch_seconds_are_refused_with_the_time_they_meant() {
        let ts_line = |ts: &str| format!(r#"{{"key":"k","type":"t","ts":{ts},"value":1}}"#);
        for (ts, detail) in [
            (
                "1767225600",
                "ts 1767225600 looks like epoch seconds (2026-01-01T00:00:00Z); send epoch milliseconds",
            ),
            (
                "1767225600.5",
                "ts 1767225600.5 looks like epoch seconds (2026-01-01T00:00:00.500Z); send epoch milliseconds",
            ),
            (
                "1000000000",
                "ts 1000000000 looks like epoch seconds (2001-09-09T01:46:40Z); send epoch milliseconds",
            ),
        ] {
            for b in [bounds(), TimeBounds::unbounded()] {
                let r = one_with(&ts_line(ts), b).expect_err("seconds");
                assert_eq!(
                    (r.reason, r.field, r.detail.as_str()),
                    (Reason::TsOutOfRange, Some("ts"), detail)
                );
                assert!(fast::decode(ts_line(ts).as_bytes(), b).is_none(), "{ts}");
            }
        }
        assert_eq!(
            reason(&ts_line("9999999999")),
            (Reason::TsOutOfRange, Some("ts"))
        );
        // The same instant as a string is refused too: ingest would write it as a number.
        let r = one(&ts_line(r#""1970-02-01T00:00:00Z""#)).expect_err("in the range");
        assert_eq!(
            (r.reason, r.detail.as_str()),
            (
                Reason::TsOutOfRange,
                "ts 1970-02-01T00:00:00Z is in 1970-01-12T13:46:40Z..1970-04-26T17:46:40Z, \
                 where epoch seconds sent as milliseconds land; no event time in that range \
                 is accepted"
            )
        );
        // Just outside the range: milliseconds.
        for ts in [999_999_999_i64, 10_000_000_000, 1] {
            assert_eq!(one(&ts_line(&ts.to_string())).expect("valid").ts, ts);
        }
    }

    #[test]
    fn rejections_keep_the_producer_id() {
        let r = one(r#"{"id":"abc","key":"k","type":"t","ts":1,"value":"x"}"#).expect_err("bad");
        assert_eq!(r.id.as_deref(), Some("abc"));
    }

    #[test]
    fn reasons_serialize_to_their_documented_names() {
        for r in Reason::ALL {
            let json = serde_json::to_string(&r).expect("serialize");
            assert_eq!(json, format!("\"{}\"", r.as_str()));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Fuzzing in CI: decoding never panics and accounts for every non-blank line.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            let lines = decode_record(&data, bounds());
            proptest::prop_assert!(!lines.is_empty());
        }

        /// The fast path never changes a verdict: for lines built from every form each
        /// field can take (valid, escaped, wrongly typed, out of range, absent, null,
        /// duplicated), `decode_line` gives exactly what the general decoder gives.
        #[test]
        fn fast_path_decodes_exactly_like_the_general_decoder(
            id in proptest::sample::select(vec![
                "", r#""id":"e1","#, r#""id":7,"#, r#""id":-7,"#, r#""id":1.5,"#, r#""id":true,"#,
                r#""id":null,"#, r#""id":"","#, r#""id":"e\u00e9","#, r#""id":"a","id":"b","#,
                r#""id":"\u0000sluice:non-finite","#, r#""id":NaN,"#, r#""id":123456789012345678901234567890,"#,
                r#""id":-123456789012345678901234567890,"#, r#""id":1e30,"#, r#""id":-0,"#,
                r#""id":18446744073709551616,"#, r#""id":1e999,"#,
            ]),
            key in proptest::sample::select(vec![
                r#""key":"k1","#, r#""key":"","#, r#""key":7,"#, r#""key":null,"#, "",
                r#""key":"k\"q","#, r#""key":"\u0000sluice:non-finite","#, r#""key":"ké","#,
            ]),
            metric in proptest::sample::select(vec![
                r#""type":"temp","#, r#""type":"bad name","#, r#""type":"","#, r#""type":[1],"#, "",
                r#""type":"\u0000sluice:non-finite","#, r#""type":Infinity,"#,
            ]),
            ts in proptest::sample::select(vec![
                r#""ts":1764000000000,"#, r#""ts":1764000000000.7,"#, r#""ts":-5,"#,
                r#""ts":"2025-11-24T16:00:00Z","#, r#""ts":"yesterday","#, r#""ts":99999999999999999999,"#,
                r#""ts":1e300,"#, r#""ts":null,"#, r#""ts":"2025-11-24T16:00:00\u005a","#, r#""ts":9999999999999,"#,
                r#""ts":18446744073709551615,"#, r#""ts":true,"#, r#""ts":"\u0000sluice:non-finite","#,
                r#""ts":NaN,"#, r#""ts":1764000000,"#, r#""ts":1764000000.5,"#, r#""ts":"1970-02-01T00:00:00Z","#,
                r#""ts":999999999,"#, r#""ts":10000000000,"#,
            ]),
            value in proptest::sample::select(vec![
                r#""value":1.5"#, r#""value":0"#, r#""value":-0"#, r#""value":1e101"#, r#""value":1e-101"#,
                r#""value":1e999"#, r#""value":NaN"#, r#""value":"1""#, r#""value":null"#, r#""value":12345678901234567890"#,
                r#""value":"\u0000sluice:non-finite""#,
            ]),
            attrs in proptest::sample::select(vec![
                "", r#","attrs":{"a":"x","b":2,"c":true}"#, r#","attrs":{"f":1.10}"#, r#","attrs":{"e":1e15}"#,
                r#","attrs":null"#, r#","attrs":[1]"#, r#","attrs":{"n":null}"#, r#","attrs":{"o":{}}"#,
                r#","attrs":{"a":"1","a":"2"}"#, r#","attrs":{"k\u00e9":"v"}"#, r#","attrs":{"v":"\t"}"#,
                r#","attrs":{"neg":-3}"#, r#","attrs":{"s":"\u0000sluice:non-finite"}"#,
                r#","attrs":"\u0000sluice:non-finite""#, r#","attrs":{"n":NaN}"#, r#","attrs":NaN"#,
                r#","attrs":{"big":123456789012345678901234567890}"#,
            ]),
            tail in proptest::sample::select(vec![
                "", r#","origin":"s:1:0""#, r#","origin":5"#, r#","origin":null"#, r#","extra":{"deep":[1,2,{"x":null}]}"#,
                r#","value":2"#, r#","junk":NaN"#, r#","origin":"\u0000sluice:non-finite""#, r#","origin":NaN"#,
                r#","value":NaN"#, r#","extra":{"x":NaN,"y":[Infinity]}"#,
            ]),
            bom in proptest::sample::select(vec!["", "\u{feff}", " \u{feff} "]),
        ) {
            let line = format!("{bom}{{{id}{key}{metric}{ts}{value}{attrs}{tail}}}");
            let general = decode_line_slow(line.as_bytes(), bounds());
            proptest::prop_assert_eq!(
                decode_line(line.as_bytes(), bounds()),
                general.clone(),
                "line {}", line
            );
            proptest::prop_assert_eq!(
                decode_line_without_attrs(line.as_bytes(), bounds()),
                general.map(|mut e| { e.attrs.clear(); e }),
                "line {} without attrs", line
            );
        }

        /// Near-valid JSON is where parsers break: mutate a valid event byte by byte.
        #[test]
        fn decoding_mutated_events_never_panics(pos in 0usize..120, byte in proptest::prelude::any::<u8>(), cut in 0usize..140) {
            let mut data = br#"{"id":"e1","key":"k\u00e9","type":"t.x","ts":"2025-12-31T23:59:59.999+01:00","value":-1.5e-3,"attrs":{"a":1}}"#.to_vec();
            if pos < data.len() {
                data[pos] = byte;
            }
            data.truncate(cut.max(1));
            let lines = decode_record(&data, bounds());
            proptest::prop_assert!(!lines.is_empty());
            for l in &lines {
                if let Ok(e) = &l.result {
                    proptest::prop_assert!(e.value.is_finite());
                    proptest::prop_assert!(e.key.chars().count() <= MAX_KEY_CHARS);
                }
            }
        }

        #[test]
        fn valid_events_always_decode(
            key in "[a-zA-Z0-9é🦀 #:/-]{1,80}",
            value in -1e12f64..1e12,
            ts in proptest::prop_oneof![0..SECONDS_AS_MS.start, SECONDS_AS_MS.end..NOW],
        ) {
            let line = serde_json::json!({"key": key, "type": "m", "ts": ts, "value": value}).to_string();
            let e = decode_line(line.as_bytes(), bounds()).expect("valid");
            proptest::prop_assert_eq!(e.value, value);
            proptest::prop_assert_eq!(e.ts, ts);
            proptest::prop_assert_eq!(e.key, key);
        }
    }

    #[test]
    fn numeric_attrs_keep_the_producers_text_and_never_grow() {
        let line = r#"{"key":"k","type":"t","ts":1,"value":1,"attrs":{"big":1e15,"v":1.10,"n":7,"neg":-2.5E-3,"b":true}}"#;
        let e = one(line).expect("valid");
        assert_eq!(e.attrs["big"], "1e15");
        assert_eq!(e.attrs["v"], "1.10");
        assert_eq!(e.attrs["n"], "7");
        assert_eq!(e.attrs["neg"], "-2.5E-3");
        assert_eq!(e.attrs["b"], "true");
        // Many such attributes: the normalized event is no larger than the input (plus
        // the quotes a string needs per value).
        let attrs: Vec<String> = (0..1000).map(|i| format!("\"a{i}\":1e15")).collect();
        let line = format!(
            r#"{{"key":"k","type":"t","ts":1,"value":1,"attrs":{{{}}}}}"#,
            attrs.join(",")
        );
        let e = one(&line).expect("valid").into_event(|| "id".into());
        let out = serde_json::to_vec(&e).expect("encode");
        assert!(
            out.len() <= line.len() + 2 * 1000 + 16,
            "{} bytes out of {}",
            out.len(),
            line.len()
        );
    }

    #[test]
    fn repaired_lines_fall_back_to_the_shortest_number_form() {
        // NaN elsewhere in the line makes the raw re-parse fail; the value is rejected
        // anyway, but attrs are read first only if value is fine, so use ts.
        let attrs = take_attrs(
            &mut serde_json::from_str::<Map<String, Value>>(r#"{"attrs":{"a":1e15}}"#)
                .expect("json"),
            &NonFinite::default(),
            b"not the line",
        )
        .expect("valid");
        assert_eq!(attrs["a"], "1e15");
    }

    #[test]
    fn the_garbage_fast_path_says_what_the_parser_says() {
        for junk in ["x", "}", "<xml/>", "+1", "\u{1}"] {
            let err = serde_json::from_str::<Value>(junk).expect_err("not json");
            assert_eq!(
                one(junk).expect_err("rejected").detail,
                format!("not valid JSON: {err}"),
                "{junk:?}"
            );
        }
        assert_eq!(reason("nope").0, Reason::NotJson);
        assert_eq!(reason("NaN").0, Reason::WrongType);
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

    #[test]
    fn normalized_events_round_trip() {
        let e = Event {
            id: "x".into(),
            key: "k".into(),
            metric: "t".into(),
            ts: 5,
            value: 0.1,
            attrs: BTreeMap::from([("a".into(), "b".into())]),
            origin: Some("shardId-0:1".into()),
        };
        let line = serde_json::to_vec(&e).expect("serialize");
        let back = decode_line(&line, TimeBounds::unbounded()).expect("valid");
        assert_eq!(back.into_event(|| unreachable!()), e);
    }
}
