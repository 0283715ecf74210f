//! The producer's contract: one JSON object per Kinesis record, or several as
//! newline-delimited JSON. Decoding never panics and never drops input: every line is
//! either an [`Event`] or a [`Rejection`] with a machine-readable [`Reason`].
//!
//! A UTF-8 byte-order mark (`EF BB BF`) at the start of a line (so also of a record) is
//! not content: both decoders, the general one and the borrowing fast path, skip it.
//!
//! Layout: this module holds the types, [`decode_record`] and the general decoder;
//! `lines` splits a record into lines (and skips byte-order marks), `fast` is the
//! borrowing fast path, `event_time` the `ts` rules and [`TimeBounds`], and
//! `non_finite` the repair of `NaN`/`Infinity` literals before the general parse.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod event_time;
mod fast;
mod lines;
mod non_finite;

pub use event_time::{SECONDS_AS_MS, TimeBounds};
use event_time::{take_ts, ts_in_range};
pub use lines::{DecodeLines, decode_lines, decode_record_without_attrs};
pub(crate) use lines::{NextLine, RawLine};
use lines::{line_content, whole};
use non_finite::{NonFinite, repair_non_finite_literals};

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
    /// A replayed record (`sluice replay`, magic `00 53 52 01`) whose frame header does
    /// not check out.
    CorruptReplay,
    /// The stage could not apply the event for a reason no retry can fix (a stored item
    /// it cannot read, access denied, a service limit); `detail` says which.
    Unprocessable,
}

impl Reason {
    pub const ALL: [Reason; 17] = [
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
        Reason::CorruptReplay,
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
            Reason::CorruptReplay => "corrupt_replay",
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
    pub(crate) fn new(
        reason: Reason,
        field: Option<&'static str>,
        detail: impl Into<String>,
    ) -> Self {
        Rejection {
            reason,
            field,
            detail: detail.into(),
            id: None,
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

/// Whether a finite `value` lies within the supported magnitudes.
fn value_in_range(v: f64) -> bool {
    v.is_finite() && v.abs() <= MAX_ABS_VALUE && (v == 0.0 || v.abs() >= MIN_ABS_NONZERO_VALUE)
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

/// Helpers shared by the tests of this module and of its parts.
#[cfg(test)]
mod test_support {
    use super::*;

    pub(super) const NOW: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    pub(super) fn bounds() -> TimeBounds {
        TimeBounds {
            now_ms: NOW,
            max_future_skew_ms: 300_000,
        }
    }

    pub(super) fn one(line: &str) -> Result<DecodedEvent, Rejection> {
        one_with(line, bounds())
    }

    pub(super) fn one_with(line: &str, bounds: TimeBounds) -> Result<DecodedEvent, Rejection> {
        let lines = decode_record(line.as_bytes(), bounds);
        assert_eq!(lines.len(), 1, "{line}");
        lines
            .into_iter()
            .next()
            .map(|l| l.result)
            .expect("one line")
    }

    pub(super) fn reason(line: &str) -> (Reason, Option<&'static str>) {
        let r = one(line).expect_err("should be rejected");
        (r.reason, r.field)
    }
}
#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

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
