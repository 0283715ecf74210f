//! Reading one JSON record into the source table's row, as Flink's `json` format reads
//! it (Flink 2.3, `JsonParserToRowDataConverters`), issue 17.
//!
//! A [`RowReader`] is built once from the source [`TableDef`]: its physical columns in
//! declared order, and its `'json.timestamp-format.standard'` (`'SQL'`, the default, or
//! `'ISO-8601'`). [`RowReader::read`] turns one record into one [`Value`] per physical
//! column. Columns read the top-level field of the same name (case-sensitive); a missing
//! field or JSON `null` is NULL; `ROW<...>` reads a nested object by its fields' names;
//! unknown fields are ignored; when a key repeats, its last value counts, as in Flink.
//!
//! Flink's lenient coercions are copied where Flink reads a value (each was seen with the
//! real Flink, see the tests): `"12"` and `12.7` read into INT/BIGINT as 12 (a fractional
//! number is truncated toward zero), numbers and booleans into STRING as their JSON text
//! (an object or array as compact JSON, numbers printed as Java does), `"true"`/`"false"`
//! (any case, trimmed) into BOOLEAN, `"NaN"`/`"Infinity"` into DOUBLE/FLOAT, numbers and
//! numeric strings into DECIMAL(p, s) rounded half up to s digits. Timestamps are
//! strings in the standard's form only, kept to the millisecond (finer digits are
//! truncated; a column of precision below 3 keeps its milliseconds, as Flink's reader
//! does).
//!
//! **Deliberate difference**: where Flink cannot read a field's value it fails the job,
//! or with `'json.ignore-parse-errors'` reads NULL and keeps the record; a DECIMAL that
//! overflows its precision is NULL in Flink even without that option. Sluice instead
//! rejects the record with a [`Rejection`] naming the column (`merchant.country` for a
//! nested field), so it goes to the dead-letter stream and nothing is silently lost.
//! For the same reason these are rejected although Flink reads a value: a BOOLEAN from a
//! number, an object or a string other than true/false (Flink reads `false`); a line
//! with content after its JSON object (Flink ignores the rest: a second object there
//! would be lost); FLOAT/DOUBLE from a hexadecimal string (`"0x1p3"`, which Java reads);
//! a timestamp year outside 0000-9999 (Java reads `+10000-...`).
//!
//! Hostile input: the line is parsed once by serde_json, which skips unread fields
//! without building them and captures each read field's text without recursion (so any
//! nesting depth takes bounded stack; a value is parsed again only for a declared ROW,
//! one level per declared level); numbers of any length are read without overflow
//! (exponents are clamped, decimal digits counted before they are converted). Work is
//! linear in the line's
//! length times the declared ROW depth; nothing panics.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::ddl::{ColumnKind, TableDef};
use super::dialect::at;
use super::types::SqlType;
use super::value::{Decimal, Value};
use crate::error::Result;

/// The option naming the timestamp standard, and its values.
const STANDARD_OPTION: &str = "json.timestamp-format.standard";

/// Which string forms timestamps take (`'json.timestamp-format.standard'`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampStandard {
    /// `2026-01-01 00:00:05[.250]`, LTZ with a trailing `Z` (Flink's default).
    Sql,
    /// `2026-01-01T00:00[:05[.250]]`, LTZ with a trailing `Z`.
    Iso8601,
}

/// Why a record cannot be read: `column` is `None` when the line is not a JSON object,
/// else the dotted path of the field whose value does not read as its column's type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub column: Option<String>,
    pub reason: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.column {
            Some(c) => write!(f, "column `{c}`: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for Rejection {}

/// Reads records of one source table. Built once; reading borrows it.
#[derive(Clone, Debug)]
pub struct RowReader {
    row: RowShape,
    standard: TimestampStandard,
    /// Flink reads JSON fractions as BigDecimal (not double) when the table has a
    /// DECIMAL anywhere; it shows in the text of an object read into a STRING column.
    big_decimals: bool,
}

#[derive(Clone, Debug)]
struct RowShape {
    names: Vec<String>,
    readers: Vec<FieldReader>,
    index: HashMap<String, usize>,
}

#[derive(Clone, Debug)]
enum FieldReader {
    Scalar(SqlType),
    Row(RowShape),
}

impl RowShape {
    fn new(fields: &[(&str, &SqlType)]) -> RowShape {
        let mut shape = RowShape {
            names: Vec::with_capacity(fields.len()),
            readers: Vec::with_capacity(fields.len()),
            index: HashMap::with_capacity(fields.len()),
        };
        for &(name, ty) in fields {
            let reader = match ty {
                SqlType::Row(fs) => {
                    let nested: Vec<(&str, &SqlType)> =
                        fs.iter().map(|f| (f.name.as_str(), &f.ty)).collect();
                    FieldReader::Row(RowShape::new(&nested))
                }
                other => FieldReader::Scalar(other.clone()),
            };
            shape.index.insert(name.to_owned(), shape.names.len());
            shape.names.push(name.to_owned());
            shape.readers.push(reader);
        }
        shape
    }
}

/// Up to this many fields, a name is found by comparing it with each (faster than
/// hashing it).
const SCANNED_FIELDS: usize = 12;

impl RowShape {
    /// The index of the field named `name`.
    fn position(&self, name: &str) -> Option<usize> {
        match self.names.len() <= SCANNED_FIELDS {
            true => self.names.iter().position(|n| n == name),
            false => self.index.get(name).copied(),
        }
    }
}

/// A failure inside a row: the path below the row (empty: the value itself) and why.
struct Bad {
    path: String,
    reason: String,
}

fn bad(reason: impl Into<String>) -> Bad {
    Bad {
        path: String::new(),
        reason: reason.into(),
    }
}

impl RowReader {
    /// The reader of `table`'s physical columns, in declared order.
    pub fn new(table: &TableDef) -> Result<RowReader> {
        let standard = match table.option(STANDARD_OPTION) {
            None | Some("SQL") => TimestampStandard::Sql,
            Some("ISO-8601") => TimestampStandard::Iso8601,
            Some(other) => {
                return Err(at(
                    table.place,
                    format!(
                        "option '{STANDARD_OPTION}' = '{other}' is not supported: use 'SQL' or 'ISO-8601'"
                    ),
                ));
            }
        };
        let physical: Vec<(&str, &SqlType)> = table
            .columns
            .iter()
            .filter_map(|c| match &c.kind {
                ColumnKind::Physical(ty) => Some((c.name.as_str(), ty)),
                ColumnKind::Computed(_) => None,
            })
            .collect();
        let big_decimals = physical.iter().any(|(_, ty)| has_decimal(ty));
        Ok(RowReader {
            row: RowShape::new(&physical),
            standard,
            big_decimals,
        })
    }

    /// The physical columns' names, in the order of [`RowReader::read`]'s values.
    pub fn columns(&self) -> &[String] {
        &self.row.names
    }

    /// One record's row: a value per physical column.
    pub fn read(&self, line: &[u8]) -> std::result::Result<Vec<Value>, Rejection> {
        let mut de = serde_json::Deserializer::from_slice(line);
        let slots = Slots(&self.row)
            .deserialize(&mut de)
            .and_then(|slots| de.end().map(|()| slots))
            .map_err(|e| Rejection {
                column: None,
                reason: format!("the record is not a JSON object: {e}"),
            })?;
        self.fill(&self.row, &slots).map_err(|b| Rejection {
            column: Some(b.path),
            reason: b.reason,
        })
    }

    fn fill(
        &self,
        shape: &RowShape,
        slots: &[Option<&RawValue>],
    ) -> std::result::Result<Vec<Value>, Bad> {
        let mut values = Vec::with_capacity(shape.readers.len());
        for ((name, reader), raw) in shape.names.iter().zip(&shape.readers).zip(slots) {
            let value = match raw {
                None => Value::Null,
                Some(raw) => self.field(reader, raw.get()).map_err(|b| Bad {
                    path: if b.path.is_empty() {
                        name.clone()
                    } else {
                        format!("{name}.{}", b.path)
                    },
                    reason: b.reason,
                })?,
            };
            values.push(value);
        }
        Ok(values)
    }

    fn field(&self, reader: &FieldReader, raw: &str) -> std::result::Result<Value, Bad> {
        if raw == "null" {
            return Ok(Value::Null);
        }
        match reader {
            FieldReader::Scalar(ty) => self.scalar(ty, raw),
            FieldReader::Row(shape) => {
                if !raw.starts_with('{') {
                    return Err(bad(format!(
                        "expected a JSON object for a ROW, found {}",
                        quoted(raw)
                    )));
                }
                let mut de = serde_json::Deserializer::from_str(raw);
                let slots = Slots(shape)
                    .deserialize(&mut de)
                    .map_err(|e| bad(format!("cannot read the object: {e}")))?;
                Ok(Value::Row(Arc::from(self.fill(shape, &slots)?)))
            }
        }
    }

    fn scalar(&self, ty: &SqlType, raw: &str) -> std::result::Result<Value, Bad> {
        let kind = Kind::of(raw);
        let refuse = || bad(format!("{} cannot be read as {ty}", quoted(raw)));
        let text = || -> std::result::Result<Cow<'_, str>, Bad> {
            serde_json::from_str::<Text<'_>>(raw)
                .map(|t| t.0)
                .map_err(|e| bad(format!("cannot read the string: {e}")))
        };
        Ok(match (ty, kind) {
            (SqlType::String, Kind::String) => Value::string(&text()?),
            (SqlType::String, Kind::Number | Kind::Bool) => Value::string(raw),
            (SqlType::String, Kind::Container) => {
                Value::string(&container_text(raw, self.big_decimals).map_err(bad)?)
            }
            (SqlType::Boolean, Kind::Bool) => Value::Boolean(raw == "true"),
            (SqlType::Boolean, Kind::String) => {
                let t = text()?;
                match java_trim(&t) {
                    s if s.eq_ignore_ascii_case("true") => Value::Boolean(true),
                    s if s.eq_ignore_ascii_case("false") => Value::Boolean(false),
                    _ => return Err(refuse()),
                }
            }
            (SqlType::Int, Kind::Number) => Value::Int(int_from_number(raw).ok_or_else(refuse)?),
            (SqlType::Int, Kind::String) => {
                Value::Int(java_trim(&text()?).parse().map_err(|_| refuse())?)
            }
            (SqlType::BigInt, Kind::Number) => {
                Value::BigInt(int_from_number(raw).ok_or_else(refuse)?)
            }
            (SqlType::BigInt, Kind::String) => {
                Value::BigInt(java_trim(&text()?).parse().map_err(|_| refuse())?)
            }
            (SqlType::Float, Kind::Number) => Value::Float(raw.parse().map_err(|_| refuse())?),
            (SqlType::Float, Kind::String) => {
                Value::Float(java_float(&text()?).ok_or_else(refuse)?)
            }
            (SqlType::Double, Kind::Number) => Value::Double(raw.parse().map_err(|_| refuse())?),
            (SqlType::Double, Kind::String) => {
                Value::Double(java_float(&text()?).ok_or_else(refuse)?)
            }
            (SqlType::Decimal { precision, scale }, Kind::Number | Kind::String) => {
                let t = if kind == Kind::String {
                    text()?
                } else {
                    Cow::Borrowed(raw)
                };
                let number = BigDecimalText::parse(java_trim(&t)).ok_or_else(refuse)?;
                Value::Decimal(number.to_decimal(*precision, *scale).ok_or_else(|| {
                    bad(format!(
                        "{} does not fit {ty} (Flink reads NULL)",
                        quoted(raw)
                    ))
                })?)
            }
            (SqlType::Timestamp { .. }, Kind::String) => Value::Timestamp(
                parse_timestamp(&text()?, self.standard, false).ok_or_else(|| {
                    bad(format!(
                        "{} is not a TIMESTAMP in the {} standard ({})",
                        quoted(raw),
                        standard_name(self.standard),
                        timestamp_form(self.standard, false)
                    ))
                })?,
            ),
            (SqlType::TimestampLtz { .. }, Kind::String) => Value::TimestampLtz(
                parse_timestamp(&text()?, self.standard, true).ok_or_else(|| {
                    bad(format!(
                        "{} is not a TIMESTAMP_LTZ in the {} standard ({})",
                        quoted(raw),
                        standard_name(self.standard),
                        timestamp_form(self.standard, true)
                    ))
                })?,
            ),
            _ => return Err(refuse()),
        })
    }
}

fn standard_name(s: TimestampStandard) -> &'static str {
    match s {
        TimestampStandard::Sql => "SQL",
        TimestampStandard::Iso8601 => "ISO-8601",
    }
}

fn timestamp_form(s: TimestampStandard, ltz: bool) -> &'static str {
    match (s, ltz) {
        (TimestampStandard::Sql, false) => "2026-01-01 00:00:05[.250]",
        (TimestampStandard::Sql, true) => "2026-01-01 00:00:05[.250]Z",
        (TimestampStandard::Iso8601, false) => "2026-01-01T00:00[:05[.250]]",
        (TimestampStandard::Iso8601, true) => "2026-01-01T00:00[:05[.250]]Z",
    }
}

fn has_decimal(ty: &SqlType) -> bool {
    match ty {
        SqlType::Decimal { .. } => true,
        SqlType::Row(fields) => fields.iter().any(|f| has_decimal(&f.ty)),
        _ => false,
    }
}

/// A value as quoted in a reason: its JSON text, cut short when long.
fn quoted(raw: &str) -> String {
    const MAX: usize = 64;
    if raw.len() <= MAX {
        return raw.to_owned();
    }
    let mut end = MAX;
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &raw[..end])
}

/// The JSON kind of a value's raw text (serde_json has checked it is one value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    String,
    Number,
    Bool,
    Container,
}

impl Kind {
    fn of(raw: &str) -> Kind {
        match raw.as_bytes().first() {
            Some(b'"') => Kind::String,
            Some(b't' | b'f') => Kind::Bool,
            Some(b'{' | b'[') => Kind::Container,
            _ => Kind::Number,
        }
    }
}

/// Reads an object's fields into one slot per field of `shape` (last key wins), skipping
/// the others without building them.
struct Slots<'s>(&'s RowShape);

impl<'de> DeserializeSeed<'de> for Slots<'_> {
    type Value = Vec<Option<&'de RawValue>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Slots<'_> {
    type Value = Vec<Option<&'de RawValue>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut slots = vec![None; self.0.names.len()];
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match self.0.position(key.0.as_ref()) {
                Some(i) => slots[i] = Some(map.next_value::<&'de RawValue>()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(slots)
    }
}

/// A JSON string, borrowed when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(
                self,
                s: &'de str,
            ) -> std::result::Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> std::result::Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Java's `String.trim`: cuts characters up to U+0020 at both ends.
fn java_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c <= ' ')
}

/// An integer from a JSON number, as Jackson's `getIntValue`/`getLongValue`: an integer
/// token must fit; a fractional one is read as a double, refused beyond the type's range
/// and truncated toward zero.
fn int_from_number<T>(raw: &str) -> Option<T>
where
    T: std::str::FromStr + TryFrom<i64> + Bounded,
{
    if !raw.contains(['.', 'e', 'E']) {
        return raw.parse().ok();
    }
    let d: f64 = raw.parse().ok()?;
    if d < T::MIN_F64 || d > T::MAX_F64 {
        return None;
    }
    T::try_from(d as i64).ok()
}

trait Bounded {
    const MIN_F64: f64;
    const MAX_F64: f64;
}

impl Bounded for i32 {
    const MIN_F64: f64 = i32::MIN as f64;
    const MAX_F64: f64 = i32::MAX as f64;
}

impl Bounded for i64 {
    const MIN_F64: f64 = i64::MIN as f64;
    // 2^63: Jackson's bound; `as i64` then saturates to i64::MAX as Java's cast does.
    const MAX_F64: f64 = i64::MAX as f64;
}

/// A float from a string, as Java's `Double.parseDouble`/`Float.parseFloat` of the
/// trimmed text: `NaN`, `[+-]Infinity`, decimal forms with an optional `f`/`d` suffix.
/// Hexadecimal forms are refused (a deliberate difference).
fn java_float<T: std::str::FromStr + JavaSpecial>(text: &str) -> Option<T> {
    let s = java_trim(text);
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    match body {
        "NaN" => return Some(T::NAN),
        "Infinity" => {
            return Some(if negative {
                T::NEG_INFINITY
            } else {
                T::INFINITY
            });
        }
        _ => {}
    }
    let body = body.strip_suffix(['f', 'F', 'd', 'D']).unwrap_or(body);
    let valid = body.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if !valid {
        return None;
    }
    let signed = if negative {
        format!("-{body}")
    } else {
        body.to_owned()
    };
    signed.parse().ok()
}

trait JavaSpecial {
    const NAN: Self;
    const INFINITY: Self;
    const NEG_INFINITY: Self;
}

impl JavaSpecial for f32 {
    const NAN: f32 = f32::NAN;
    const INFINITY: f32 = f32::INFINITY;
    const NEG_INFINITY: f32 = f32::NEG_INFINITY;
}

impl JavaSpecial for f64 {
    const NAN: f64 = f64::NAN;
    const INFINITY: f64 = f64::INFINITY;
    const NEG_INFINITY: f64 = f64::NEG_INFINITY;
}

/// A number in Java's `BigDecimal` text form (`-12.50`, `.5`, `5.`, `1.5e-1`, `1E+3`):
/// its significant digits (no leading zeros) and the power of ten of the last one.
#[derive(Debug, PartialEq, Eq)]
struct BigDecimalText<'a> {
    negative: bool,
    /// Significant digits without leading zeros (empty for zero), with the fraction's.
    digits: Cow<'a, str>,
    /// value = digits × 10^exponent.
    exponent: i64,
}

/// Exponents are clamped here: far beyond any precision, and no overflow in sums.
const EXPONENT_CLAMP: i64 = 1_000_000_000_000;

impl<'a> BigDecimalText<'a> {
    fn parse(s: &'a str) -> Option<BigDecimalText<'a>> {
        let (negative, rest) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let (mantissa, exp) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if int.is_empty() && frac.is_empty()
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let mut exponent = match exp {
            None => 0,
            Some(e) => {
                let (neg, digits) = match e.as_bytes().first() {
                    Some(b'-') => (true, &e[1..]),
                    Some(b'+') => (false, &e[1..]),
                    _ => (false, e),
                };
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let v = digits.bytes().fold(0i64, |v, b| {
                    (v * 10 + i64::from(b - b'0')).min(EXPONENT_CLAMP)
                });
                if neg { -v } else { v }
            }
        };
        exponent -= i64::try_from(frac.len()).ok()?.min(EXPONENT_CLAMP);
        let digits: Cow<'a, str> = if frac.is_empty() {
            Cow::Borrowed(int.trim_start_matches('0'))
        } else {
            let joined = format!("{int}{frac}");
            Cow::Owned(joined.trim_start_matches('0').to_owned())
        };
        Some(BigDecimalText {
            negative,
            digits,
            exponent,
        })
    }

    /// The value at `scale`, rounded half up (away from zero) as Flink's
    /// `DecimalData.fromBigDecimal`; `None` when it has more than `precision` digits.
    fn to_decimal(&self, precision: u8, scale: u8) -> Option<Decimal> {
        let d = self.digits.as_bytes();
        let shift = self.exponent + i64::from(scale);
        let unscaled: i128 = if d.is_empty() {
            0
        } else if shift >= 0 {
            if d.len() as i64 + shift > i64::from(precision) {
                return None;
            }
            let v = digits_value(d)?;
            v.checked_mul(10i128.checked_pow(u32::try_from(shift).ok()?)?)?
        } else {
            let keep = d.len() as i64 + shift;
            if keep < 0 {
                0
            } else {
                let keep = keep as usize;
                if keep > usize::from(precision) {
                    return None;
                }
                let v = digits_value(&d[..keep])?;
                if d[keep] >= b'5' { v + 1 } else { v }
            }
        };
        let decimal = Decimal::new(if self.negative { -unscaled } else { unscaled }, scale);
        (decimal.digits() <= u32::from(precision)).then_some(decimal)
    }

    /// Java's `BigDecimal.stripTrailingZeros().toString()`.
    fn java_text(&self) -> String {
        let trimmed = self.digits.trim_end_matches('0');
        if trimmed.is_empty() {
            return "0".to_owned();
        }
        let exponent = self.exponent + (self.digits.len() - trimmed.len()) as i64;
        let scale = -exponent;
        let n = trimmed.len() as i64;
        let adjusted = exponent + n - 1;
        let mut out = String::with_capacity(trimmed.len() + 8);
        if self.negative {
            out.push('-');
        }
        if scale >= 0 && adjusted >= -6 {
            if scale == 0 {
                out.push_str(trimmed);
            } else if n > scale {
                let cut = (n - scale) as usize;
                out.push_str(&trimmed[..cut]);
                out.push('.');
                out.push_str(&trimmed[cut..]);
            } else {
                out.push_str("0.");
                out.extend(std::iter::repeat_n('0', (scale - n) as usize));
                out.push_str(trimmed);
            }
        } else {
            out.push_str(&trimmed[..1]);
            if n > 1 {
                out.push('.');
                out.push_str(&trimmed[1..]);
            }
            out.push('E');
            if adjusted > 0 {
                out.push('+');
            }
            out.push_str(&adjusted.to_string());
        }
        out
    }
}

fn digits_value(d: &[u8]) -> Option<i128> {
    d.iter().try_fold(0i128, |v, b| {
        v.checked_mul(10)?.checked_add(i128::from(b - b'0'))
    })
}

/// Java's `Double.toString` (shortest digits: JDK 19+; JDK 17 may print a longer form
/// for a few values): plain between 10^-3 and 10^7, else `d.dddE[-]n`.
fn java_double_text(d: f64) -> String {
    if d.is_nan() {
        return "NaN".to_owned();
    }
    if d.is_infinite() {
        return if d > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    if d == 0.0 {
        return if d.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    // Rust's `{:e}` prints the shortest digits that read back: `-1.2345e7`, `1e-7`.
    let sci = format!("{:e}", d.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::new();
    if d < 0.0 {
        out.push('-');
    }
    if (-3..7).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            let padded = format!("{digits:0<int_len$}");
            let (int, frac) = padded.split_at(int_len);
            out.push_str(int);
            out.push('.');
            out.push_str(if frac.is_empty() { "0" } else { frac });
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        out.push('.');
        out.push_str(if digits.len() > 1 { &digits[1..] } else { "0" });
        out.push('E');
        out.push_str(&exp.to_string());
    }
    out
}

/// An object or array read into a STRING column, as Flink writes it back from Jackson's
/// tree: compact, strings escaped as Jackson does, integers canonical, fractions as Java
/// prints a double (or, when the table has a DECIMAL, a stripped BigDecimal). One pass
/// over text serde_json has already checked, without recursion.
fn container_text(raw: &str, big_decimals: bool) -> std::result::Result<String, String> {
    let b = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            c @ (b'{' | b'}' | b'[' | b']' | b',' | b':') => {
                out.push(char::from(c));
                i += 1;
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                let token = raw.get(i..=j).ok_or("unterminated string")?;
                let text: Text<'_> = serde_json::from_str(token)
                    .map_err(|e| format!("cannot read a string: {e}"))?;
                jackson_escape(&text.0, &mut out);
                i = j + 1;
            }
            b't' => {
                out.push_str("true");
                i += 4;
            }
            b'f' => {
                out.push_str("false");
                i += 5;
            }
            b'n' => {
                out.push_str("null");
                i += 4;
            }
            _ => {
                let start = i;
                while i < b.len() && matches!(b[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                {
                    i += 1;
                }
                if i == start {
                    return Err(format!("unexpected byte {:?}", char::from(b[i])));
                }
                out.push_str(&java_number_text(&raw[start..i], big_decimals));
            }
        }
    }
    Ok(out)
}

fn java_number_text(token: &str, big_decimals: bool) -> String {
    if !token.contains(['.', 'e', 'E']) {
        // An integer node prints canonically: `-0` is `0`.
        return if token.trim_start_matches('-').bytes().all(|b| b == b'0') {
            "0".to_owned()
        } else {
            token.to_owned()
        };
    }
    if big_decimals {
        if let Some(n) = BigDecimalText::parse(token) {
            return n.java_text();
        }
    }
    java_double_text(token.parse().unwrap_or(f64::NAN))
}

/// Jackson's string escaping: `"`, `\` and control characters (short forms where JSON
/// has them, else `\u00XX` in upper case); everything else as is.
fn jackson_escape(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if c < ' ' => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A timestamp string in `standard`'s form, as milliseconds since the epoch (UTC).
///
/// Java's formatters, as Flink builds them: `YYYY-MM-DD`, then a space (SQL) or `T`
/// (ISO; `t` too for TIMESTAMP, whose formatter is case-insensitive), `HH:mm`, `:ss`
/// (optional in ISO), a fraction of 0 to 9 digits after `.` (only after seconds; digits
/// beyond milliseconds are truncated), and `Z` for LTZ. ISO TIMESTAMP resolves strictly;
/// the others "smartly": a day beyond the month's end becomes its last day
/// (2026-02-30 → 02-28) and `24:00[:00[.000]]` is the next day's midnight.
fn parse_timestamp(s: &str, standard: TimestampStandard, ltz: bool) -> Option<i64> {
    let b = s.as_bytes();
    let mut p = Cursor { b, i: 0 };
    let year = p.digits(4)?;
    p.byte(b'-')?;
    let month = p.digits(2)?;
    p.byte(b'-')?;
    let day = p.digits(2)?;
    let strict = standard == TimestampStandard::Iso8601 && !ltz;
    match standard {
        TimestampStandard::Sql => p.byte(b' ')?,
        TimestampStandard::Iso8601 if strict => p.byte_either(b'T', b't')?,
        TimestampStandard::Iso8601 => p.byte(b'T')?,
    }
    let hour = p.digits(2)?;
    p.byte(b':')?;
    let minute = p.digits(2)?;
    let (mut second, mut millis, mut zero_fraction) = (0, 0, true);
    let seconds_optional = standard == TimestampStandard::Iso8601;
    if p.peek() == Some(b':') || !seconds_optional {
        p.byte(b':')?;
        second = p.digits(2)?;
        if p.peek() == Some(b'.') {
            p.i += 1;
            let start = p.i;
            while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                p.i += 1;
            }
            let fraction = &b[start..p.i];
            if fraction.len() > 9 {
                return None;
            }
            zero_fraction = fraction.iter().all(|&c| c == b'0');
            millis = fraction
                .iter()
                .chain(std::iter::repeat(&b'0'))
                .take(3)
                .fold(0, |v, &c| v * 10 + i64::from(c - b'0'));
        }
    }
    if ltz {
        p.byte(b'Z')?;
    }
    if p.i != b.len() {
        return None;
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || minute > 59 || second > 59 {
        return None;
    }
    let last = days_in_month(year, month);
    let day = match day {
        d if d <= last => d,
        _ if strict => return None,
        _ => last,
    };
    let mut days = days_from_civil(year, month, day);
    let hour = match hour {
        0..=23 => hour,
        24 if !strict && minute == 0 && second == 0 && zero_fraction => {
            days += 1;
            0
        }
        _ => return None,
    };
    Some(days * 86_400_000 + hour * 3_600_000 + minute * 60_000 + second * 1_000 + millis)
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn byte(&mut self, want: u8) -> Option<()> {
        self.byte_either(want, want)
    }

    fn byte_either(&mut self, a: u8, b: u8) -> Option<()> {
        let c = self.peek()?;
        (c == a || c == b).then(|| self.i += 1)
    }

    fn digits(&mut self, n: usize) -> Option<i64> {
        let d = self.b.get(self.i..self.i + n)?;
        if !d.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.i += n;
        Some(d.iter().fold(0, |v, &c| v * 10 + i64::from(c - b'0')))
    }
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    //! "Probe pNN"/"qNN"/"rNN"/"oNN"/"uNN"/"sN" name the lines of the oracle probes run
    //! with Flink 2.3.0 (listed in the issue 17 report for this module): each comment
    //! says which line showed the asserted outcome.

    use sqlparser::parser::Parser;
    use sqlparser::tokenizer::Location;

    use super::super::ddl::parse_create_table;
    use super::super::dialect::{FlinkDialect, tokens};
    use super::*;

    fn reader_with(columns: &str, options: &str) -> RowReader {
        let text =
            format!("src ({columns}) WITH ('connector' = 'kinesis', 'format' = 'json'{options})");
        let dialect = FlinkDialect;
        let mut p =
            Parser::new(&dialect).with_tokens_with_locations(tokens(&text).expect("tokens"));
        let table = parse_create_table(&mut p, Location::new(1, 1)).expect("valid source");
        RowReader::new(&table).expect("reader")
    }

    fn reader(columns: &str) -> RowReader {
        reader_with(columns, "")
    }

    fn iso(columns: &str) -> RowReader {
        reader_with(columns, ", 'json.timestamp-format.standard' = 'ISO-8601'")
    }

    /// The one column's value read from `{"v": <json>}`.
    fn one(r: &RowReader, json: &str) -> std::result::Result<Value, Rejection> {
        let mut row = r.read(format!(r#"{{"v":{json}}}"#).as_bytes())?;
        assert_eq!(row.len(), 1);
        Ok(row.remove(0))
    }

    fn ok(r: &RowReader, json: &str) -> Value {
        one(r, json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    fn refused(r: &RowReader, json: &str) -> Rejection {
        let e = one(r, json).expect_err(json);
        assert_eq!(e.column.as_deref(), Some("v"), "{json}: {e}");
        e
    }

    fn dec(s: &str) -> Value {
        Value::Decimal(Decimal::parse(s).expect(s))
    }

    /// Milliseconds of a UTC wall-clock time on 2026-01-01.
    fn jan1(h: i64, m: i64, s: i64, ms: i64) -> i64 {
        1_767_225_600_000 + h * 3_600_000 + m * 60_000 + s * 1_000 + ms
    }

    #[test]
    fn physical_columns_read_in_declared_order_and_computed_ones_are_skipped() {
        let r = reader(
            "id STRING, n INT, et AS TO_TIMESTAMP_LTZ(n, 3), ok BOOLEAN, price DECIMAL(10, 2)",
        );
        assert_eq!(r.columns(), ["id", "n", "ok", "price"]);
        let row = r
            .read(br#"{"price": 1.5, "id": "a", "extra": {"deep": [1, 2]}, "n": 7, "ok": true}"#)
            .expect("row");
        assert_eq!(
            row,
            [
                Value::string("a"),
                Value::Int(7),
                Value::Boolean(true),
                dec("1.50")
            ]
        );
    }

    #[test]
    fn missing_fields_and_nulls_are_null() {
        let r = reader("a STRING, b BIGINT, c ROW<x INT>");
        assert_eq!(
            r.read(br#"{"b": null}"#).expect("row"),
            [Value::Null, Value::Null, Value::Null]
        );
        assert_eq!(
            r.read(b"{}").expect("row"),
            [Value::Null, Value::Null, Value::Null]
        );
    }

    #[test]
    fn nested_rows_read_by_field_name_with_missing_fields_null() {
        let r = reader("m ROW<name STRING, geo ROW<country STRING, lat DOUBLE>>, k INT");
        let row = r
            .read(br#"{"k": 1, "m": {"geo": {"lat": 1.5, "country": "fr", "zz": 3}, "name": "shop"}}"#)
            .expect("row");
        let geo = Value::Row(Arc::from(vec![Value::string("fr"), Value::Double(1.5)]));
        let m = Value::Row(Arc::from(vec![Value::string("shop"), geo]));
        assert_eq!(row, [m, Value::Int(1)]);
        // Probe p02: `"n": {}` is a row of NULLs; p23: unknown nested fields are ignored.
        let row = r.read(br#"{"m": {"geo": {}}}"#).expect("row");
        let geo = Value::Row(Arc::from(vec![Value::Null, Value::Null]));
        assert_eq!(
            row,
            [Value::Row(Arc::from(vec![Value::Null, geo])), Value::Null]
        );
        let row = r.read(br#"{"m": {"geo": null}}"#).expect("row");
        assert_eq!(
            row[0],
            Value::Row(Arc::from(vec![Value::Null, Value::Null]))
        );
    }

    #[test]
    fn wrong_types_name_the_column_path() {
        let r = reader("id STRING, m ROW<name STRING, geo ROW<country STRING, n INT>>");
        // Flink (with ignore-parse-errors) reads these as NULL: probes p04 `"a":"oops"`,
        // p05 `"r":"zz"`, p06 `"n":"zz"`; strict Flink fails the job (probe s4).
        for (line, path) in [
            (r#"{"m": "zz"}"#, "m"),
            (r#"{"m": {"geo": "zz"}}"#, "m.geo"),
            (r#"{"m": {"geo": {"n": "oops"}}}"#, "m.geo.n"),
            (r#"{"m": {"geo": {"n": [1]}}}"#, "m.geo.n"),
            (r#"{"m": {"geo": [1, 2]}}"#, "m.geo"),
        ] {
            let e = r.read(line.as_bytes()).expect_err(line);
            assert_eq!(e.column.as_deref(), Some(path), "{line}: {e}");
        }
        let e = r
            .read(br#"{"m": {"geo": {"n": "oops"}}}"#)
            .expect_err("oops");
        assert_eq!(
            e.to_string(),
            r#"column `m.geo.n`: "oops" cannot be read as INT"#
        );
    }

    #[test]
    fn lines_that_are_not_objects_are_rejected_without_a_column() {
        let r = reader("id STRING");
        // Probes: `not json`, `[1,2]`, the empty line, `null`, `"str"` give no row.
        for line in [
            &b"not json"[..],
            b"[1,2]",
            b"",
            b"   ",
            b"null",
            b"\"str\"",
            b"42",
            b"{\"id\": ",
            b"{\"id\": \"a\"",
            b"\xff\xfe",
            b"{\"id\": \"\xff\"}",
            b"{\"id\": NaN}",
        ] {
            let e = r.read(line).expect_err("not an object");
            assert_eq!(e.column, None, "{line:?}");
            assert!(
                e.reason.starts_with("the record is not a JSON object"),
                "{e}"
            );
        }
    }

    // Probe p12 (and s2, strict): Flink reads `{"id":"p12","i":1} xyz` as the object
    // and ignores the rest; we reject the line (deliberate difference).
    #[test]
    fn content_after_the_object_is_rejected() {
        let r = reader("id STRING");
        for line in [&b"{\"id\":\"a\"} xyz"[..], b"{\"id\":\"a\"}{\"id\":\"b\"}"] {
            assert_eq!(r.read(line).expect_err("trailing").column, None);
        }
        assert!(r.read(b" {\"id\":\"a\"} \n").is_ok());
    }

    // Probes p10 `{"i":"oops","i":3}` → 3 and p11 `{"i":3,"i":"oops"}` → NULL: the last
    // value of a repeated key counts.
    #[test]
    fn a_repeated_key_reads_its_last_value() {
        let r = reader("i INT");
        assert_eq!(
            r.read(br#"{"i":"oops","i":3}"#).expect("row"),
            [Value::Int(3)]
        );
        assert_eq!(
            r.read(br#"{"i":3,"i":"oops"}"#)
                .expect_err("last")
                .column
                .as_deref(),
            Some("i")
        );
    }

    #[test]
    fn escaped_keys_and_strings_are_decoded() {
        let r = reader("id STRING, `naïve` INT");
        let row = r
            .read(br#"{"\u0069d": "a\"b\n\u00e9\ud83d\ude00", "na\u00efve": 1}"#)
            .expect("row");
        assert_eq!(row, [Value::string("a\"b\né😀"), Value::Int(1)]);
    }

    // INT/BIGINT. Probes p01 "12" → 12, "-7" → -7; p02 12.7 → 12, -12.7 → -12; p23
    // -12.7 → -12; p08 1e3 → 1000, -0.5 → 0; p15 1.0e0 → 1, "007" → 7; p05 " 12 " → 12,
    // 1e18; p06 "+12" → 12; p16 "-0" → 0; p04 -2147483648; p03 i64::MAX; p19 i64::MIN.
    #[test]
    fn integers_read_numbers_and_numeric_strings_as_flink() {
        let i = reader("v INT");
        for (json, want) in [
            ("12", 12),
            (r#""12""#, 12),
            ("12.7", 12),
            ("-12.7", -12),
            ("1e3", 1000),
            ("1.0e0", 1),
            ("-0.5", 0),
            (r#"" 12 ""#, 12),
            (r#""+12""#, 12),
            (r#""-0""#, 0),
            (r#""007""#, 7),
            ("-2147483648", i32::MIN),
            ("2147483647", i32::MAX),
            ("2147483647.0", i32::MAX),
        ] {
            assert_eq!(ok(&i, json), Value::Int(want), "{json}");
        }
        let b = reader("v BIGINT");
        for (json, want) in [
            (r#""-7""#, -7),
            ("-12.7", -12),
            ("1e18", 1_000_000_000_000_000_000),
            ("9223372036854775807", i64::MAX),
            ("-9223372036854775808", i64::MIN),
            (r#""1767225600000""#, 1_767_225_600_000),
        ] {
            assert_eq!(ok(&b, json), Value::BigInt(want), "{json}");
        }
    }

    // Probes: p03 2147483648 (INT), p04 9223372036854775808, p07 9.3e18, p23 1.5e300
    // (BIGINT) overflow; p07 "12.0", p06 "1.0", p16 "", p22 "0x10" and "1_000", p09 true,
    // json_types "oops" and true are NULL in Flink: rejected here.
    #[test]
    fn integers_refuse_overflow_and_non_integers() {
        let i = reader("v INT");
        for json in [
            "2147483648",
            "-2147483649",
            "2147483648.5",
            "1e10",
            "1e400",
            r#""12.0""#,
            r#""1_000""#,
            r#""""#,
            r#""oops""#,
            "true",
            "[1]",
            r#"{"a":1}"#,
            "99999999999999999999999999999999999999999999",
        ] {
            refused(&i, json);
        }
        let b = reader("v BIGINT");
        for json in [
            "9223372036854775808",
            "99999999999999999999",
            "9.3e18",
            "1.5e300",
            r#""1.0""#,
            r#""0x10""#,
            r#""""#,
            "true",
        ] {
            refused(&b, json);
        }
    }

    // FLOAT/DOUBLE. Probes: p01 "NaN", p02 "Infinity", p03 "-Infinity", p16 "+.5" → 0.5,
    // p06 " 2.5 " → 2.5, p07 and p03 "1.5d" → 1.5, p22 "1e3", p05 1e400 → Infinity and
    // FLOAT 3.4e39 → Infinity (also strict, s1), p19 "1e-400" → 0.0, p24 -0 → -0.0, p19
    // FLOAT "-0" → -0.0, p15 a 30-digit integer → 1.2345678901234568E29.
    #[test]
    fn floats_read_numbers_and_java_float_strings() {
        let d = reader("v DOUBLE");
        for (json, want) in [
            ("1.5", 1.5),
            ("12", 12.0),
            (r#""Infinity""#, f64::INFINITY),
            (r#""-Infinity""#, f64::NEG_INFINITY),
            (r#""+.5""#, 0.5),
            (r#"" 2.5 ""#, 2.5),
            (r#""1.5d""#, 1.5),
            (r#""1e3""#, 1000.0),
            ("1e400", f64::INFINITY),
            (r#""1e-400""#, 0.0),
            ("123456789012345678901234567890", 1.2345678901234568e29),
        ] {
            assert_eq!(ok(&d, json), Value::Double(want), "{json}");
        }
        assert!(matches!(ok(&d, r#""NaN""#), Value::Double(x) if x.is_nan()));
        assert!(matches!(ok(&d, "-0"), Value::Double(x) if x == 0.0 && x.is_sign_negative()));
        let f = reader("v FLOAT");
        for (json, want) in [
            (r#""1.5""#, 1.5f32),
            ("1e3", 1000.0),
            ("3.4e39", f32::INFINITY),
            (r#""1.5f""#, 1.5),
            ("0.1", 0.1),
        ] {
            assert_eq!(ok(&f, json), Value::Float(want), "{json}");
        }
        assert!(matches!(ok(&f, r#""-0""#), Value::Float(x) if x == 0.0 && x.is_sign_negative()));
        assert!(matches!(ok(&f, r#""NaN""#), Value::Float(x) if x.is_nan()));
    }

    // Probes p04 "inf" and "nan", p09 true are NULL in Flink: rejected. "0x1p3" (p06,
    // p08) is 8.0 in Flink: rejected (deliberate difference).
    #[test]
    fn floats_refuse_what_java_does_not_read_and_hex() {
        let d = reader("v DOUBLE");
        for json in [
            r#""inf""#,
            r#""nan""#,
            r#""infinity""#,
            r#""0x1p3""#,
            r#""1,5""#,
            r#""""#,
            r#"".""#,
            r#""e5""#,
            "true",
            "[1.5]",
        ] {
            refused(&d, json);
        }
        refused(&reader("v FLOAT"), r#""inf""#);
    }

    // DECIMAL(5, 2). Probes: p01 "1.675" → 1.68, p02 -1.675 → -1.68 (half up, away from
    // zero), p07 0.005 → 0.01, p08 -0.005 → -0.01, p04 "1e2" → 100.00, p16 "  2.345 " →
    // 2.35, p19 "5." → 5.00, p23 "1.5e-1" → 0.15, p24 1E+1 → 10.00.
    #[test]
    fn decimals_round_half_up_to_the_scale() {
        let r = reader("v DECIMAL(5, 2)");
        for (json, want) in [
            (r#""1.675""#, "1.68"),
            ("-1.675", "-1.68"),
            ("1.674", "1.67"),
            ("0.005", "0.01"),
            ("-0.005", "-0.01"),
            ("-0.004", "0.00"),
            (r#""1e2""#, "100.00"),
            (r#""  2.345 ""#, "2.35"),
            (r#""5.""#, "5.00"),
            (r#"".5""#, "0.50"),
            (r#""1.5e-1""#, "0.15"),
            ("1E+1", "10.00"),
            ("999.994", "999.99"),
            (
                "0.0000000000000000000000000000000000000000000000001",
                "0.00",
            ),
            ("0", "0.00"),
            ("12", "12.00"),
        ] {
            let v = ok(&r, json);
            assert_eq!(v, dec(want), "{json}");
            assert!(
                v.fits(&SqlType::Decimal {
                    precision: 5,
                    scale: 2
                }),
                "{json}"
            );
            let Value::Decimal(d) = v else { unreachable!() };
            assert_eq!(d.to_string(), want, "{json}");
        }
        let wide = reader("v DECIMAL(38, 0)");
        assert_eq!(ok(&wide, &"9".repeat(38)), dec(&"9".repeat(38)));
    }

    // Probes: p03 999.995 (rounds to 1000.00), p05 1000, p15 a 41-digit number, p22
    // 12345678901234567890.123 overflow DECIMAL(5, 2): NULL in Flink even in strict mode
    // (probe s1); rejected here. p06 "abc" and p09 true are NULL (strict: fails, s5).
    #[test]
    fn decimals_refuse_overflow_and_non_numbers() {
        let r = reader("v DECIMAL(5, 2)");
        for json in [
            "999.995",
            "1000",
            "1e3",
            "-1000.00",
            "12345678901234567890.123",
        ] {
            let e = refused(&r, json);
            assert!(e.reason.contains("does not fit DECIMAL(5, 2)"), "{e}");
        }
        refused(&r, &"9".repeat(41));
        refused(&r, "1e999999999999999999999999");
        for json in [
            r#""abc""#,
            r#""1.2.3""#,
            r#""""#,
            r#""e5""#,
            r#""1e""#,
            r#""NaN""#,
            "true",
            "[1]",
        ] {
            refused(&r, json);
        }
        let wide = reader("v DECIMAL(38, 0)");
        refused(&wide, &"9".repeat(39));
        refused(&wide, "1e38");
        assert_eq!(ok(&wide, "1e-999999999999999999"), dec("0"));
    }

    // STRING. Probes: p01 12 → "12", p02 1.50 → "1.50", p03 1E3 → "1E3", p04 -0.0 →
    // "-0.0", p19 1e20 → "1e20" (the number's own text), p05 true → "true", p07 [1, 2]
    // → "[1,2]", o3 ["a\u00e9",[]] → "[\"aé\",[]]".
    #[test]
    fn strings_read_scalars_as_their_json_text() {
        let r = reader("v STRING");
        for (json, want) in [
            (r#""plain""#, "plain"),
            ("12", "12"),
            ("1.50", "1.50"),
            ("1E3", "1E3"),
            ("-0.0", "-0.0"),
            ("1e20", "1e20"),
            ("true", "true"),
            ("false", "false"),
            ("[1, 2]", "[1,2]"),
            (r#"["a\u00e9",[]]"#, r#"["aé",[]]"#),
        ] {
            assert_eq!(ok(&r, json), Value::string(want), "{json}");
        }
    }

    // Objects into STRING, as Flink prints Jackson's tree. Without a DECIMAL column
    // fractions are doubles (probes o1, o2, u1); with one they are BigDecimals with
    // trailing zeros stripped (probes p06, r1). Escapes as probe o1.
    #[test]
    fn objects_read_into_strings_as_flink_prints_them() {
        let doubles = reader("v STRING");
        let cases = [
            (
                r#"{"z":-0.0,"y":0.000,"w":1e-7,"v":0.000001,"u":123.4500e5,"t":-1.0,"s":-0,"r":1E2,"o":100.0}"#,
                r#"{"z":-0.0,"y":0.0,"w":1.0E-7,"v":1.0E-6,"u":1.2345E7,"t":-1.0,"s":0,"r":100.0,"o":100.0}"#,
            ),
            (
                r#"{"n":12345678901234567890.5e-30,"m":0.1,"l":2.50E+2,"k":-9223372036854775809,"j":1.0E-6}"#,
                r#"{"n":1.2345678901234568E-11,"m":0.1,"l":250.0,"k":-9223372036854775809,"j":1.0E-6}"#,
            ),
            (
                r#"{"l":0.001,"k":1234567.5,"j":12345678.5,"m":-1.50,"h":1e300,"g":0.0001}"#,
                r#"{"l":0.001,"k":1234567.5,"j":1.23456785E7,"m":-1.5,"h":1.0E300,"g":1.0E-4}"#,
            ),
            (
                "{\"q\":\"\\u001f\\t\\\"\\\\/\\u007f\\u2028\\b\\f\\r\" , \"p\":[ true , false,null,{}]}",
                "{\"q\":\"\\u001F\\t\\\"\\\\/\u{7f}\u{2028}\\b\\f\\r\",\"p\":[true,false,null,{}]}",
            ),
        ];
        for (json, want) in cases {
            assert_eq!(ok(&doubles, json), Value::string(want), "{json}");
        }
        let decimals = reader("v STRING, d DECIMAL(5, 2)");
        let read = |json: &str| {
            decimals
                .read(format!(r#"{{"v":{json}}}"#).as_bytes())
                .expect(json)
                .remove(0)
        };
        assert_eq!(
            read(
                r#"{"z":-0.0,"y":0.000,"w":1e-7,"v":0.000001,"u":123.4500e5,"r":1E2,"o":100.0,"n":12345678901234567890.5e-30,"m":-1.50,"l":0.001,"k":1234567.5}"#
            ),
            Value::string(
                r#"{"z":0,"y":0,"w":1E-7,"v":0.000001,"u":1.2345E+7,"r":1E+2,"o":1E+2,"n":1.23456789012345678905E-11,"m":-1.5,"l":0.001,"k":1234567.5}"#
            )
        );
        // Probe p06, in a table with DECIMAL(5, 2).
        assert_eq!(
            read(r#"{"a":1.50, "b":[1,"x",null],"c":1e3,"d":"\u00e9\n/"}"#),
            Value::string("{\"a\":1.5,\"b\":[1,\"x\",null],\"c\":1E+3,\"d\":\"é\\n/\"}")
        );
        let nested = reader("r ROW<d DECIMAL(3, 1)>, v STRING");
        assert_eq!(
            nested.read(br#"{"v":{"c":1e3}}"#).expect("row")[1],
            Value::string(r#"{"c":1E+3}"#)
        );
    }

    // BOOLEAN. Probes: p01 "true", p02 "TRUE", p08 "True " → true, p05 "false" → false.
    // Flink reads any other string, a number or an object as false (p03 "yes", p04 1,
    // p06 0, p07 {"a":1}, p19 "1"; also strict, s3): rejected here (deliberate).
    #[test]
    fn booleans_read_true_and_false_in_any_case_and_refuse_the_rest() {
        let r = reader("v BOOLEAN");
        for (json, want) in [
            ("true", true),
            ("false", false),
            (r#""true""#, true),
            (r#""TRUE""#, true),
            (r#""True ""#, true),
            (r#""false""#, false),
            (r#"" FaLsE""#, false),
        ] {
            assert_eq!(ok(&r, json), Value::Boolean(want), "{json}");
        }
        for json in [
            r#""yes""#,
            r#""1""#,
            r#""""#,
            "1",
            "0",
            r#"{"a":1}"#,
            "[true]",
        ] {
            refused(&r, json);
        }
    }

    // TIMESTAMP, 'SQL'. Probes: json_types line 1; p01 "…00:00" → NULL; p02 "…05." →
    // 05.000; p03 10 fraction digits → NULL; p04 and q02 02-30/02-29 → 02-28, q03 04-31 →
    // 04-30, q10 2024-02-30 → 02-29; p05 "24:00:00" → next day; q01 "24:00:00.001" and
    // q09 "24:00:01" → NULL; q14 .1239 → .123; q20 1969-12-31 23:59:59.999; p01 t0
    // TIMESTAMP(0) keeps .999.
    #[test]
    fn sql_timestamps_read_as_flink() {
        let r = reader("v TIMESTAMP(3)");
        let ts = |s: &str| ok(&r, &format!("\"{s}\""));
        assert_eq!(
            ts("2026-01-01 00:00:05.250"),
            Value::Timestamp(jan1(0, 0, 5, 250))
        );
        assert_eq!(
            ts("2026-01-01 00:00:05"),
            Value::Timestamp(jan1(0, 0, 5, 0))
        );
        assert_eq!(
            ts("2026-01-01 00:00:05."),
            Value::Timestamp(jan1(0, 0, 5, 0))
        );
        assert_eq!(
            ts("2026-01-01 00:00:05.1239"),
            Value::Timestamp(jan1(0, 0, 5, 123))
        );
        assert_eq!(
            ts("2026-01-01 00:00:05.123456789"),
            Value::Timestamp(jan1(0, 0, 5, 123))
        );
        assert_eq!(
            ts("2026-01-01 00:00:05.5"),
            Value::Timestamp(jan1(0, 0, 5, 500))
        );
        assert_eq!(
            ts("2026-01-01 24:00:00"),
            Value::Timestamp(jan1(24, 0, 0, 0))
        );
        assert_eq!(
            ts("2026-01-01 24:00:00.000"),
            Value::Timestamp(jan1(24, 0, 0, 0))
        );
        assert_eq!(ts("2026-02-30 00:00:05"), ts("2026-02-28 00:00:05"));
        assert_eq!(ts("2026-02-29 00:00:00"), ts("2026-02-28 00:00:00"));
        assert_eq!(ts("2026-04-31 00:00:00"), ts("2026-04-30 00:00:00"));
        assert_eq!(ts("2024-02-30 00:00:00"), ts("2024-02-29 00:00:00"));
        assert_eq!(ts("1970-01-01 00:00:00"), Value::Timestamp(0));
        assert_eq!(ts("1969-12-31 23:59:59.999"), Value::Timestamp(-1));
        assert_eq!(
            ts("2024-02-29 00:00:00"),
            Value::Timestamp(1_709_164_800_000)
        );
        assert_eq!(
            ts("9999-12-31 23:59:59.999"),
            Value::Timestamp(253_402_300_799_999)
        );
        let p0 = reader("v TIMESTAMP(0)");
        assert_eq!(
            ok(&p0, r#""2026-01-01 00:00:05.999""#),
            Value::Timestamp(jan1(0, 0, 5, 999))
        );
    }

    // Probes: p01 "…00:00", p03 10 digits, p07 leading space, p08 "2026-1-01", p09
    // trailing space, q01, q05 month 13, q04 day 32, q06 23:60, q07 "00:00:5", q11 month
    // 0, q15 "0:00:05", q16 two spaces, q17 a number, q18 ".-1", p17 and q21 the ISO `T`,
    // p18 "+2026": NULL in Flink, rejected here.
    #[test]
    fn sql_timestamps_refuse_other_forms() {
        let r = reader("v TIMESTAMP(3)");
        for s in [
            "2026-01-01 00:00",
            "2026-01-01 00:00:05.1234567891",
            " 2026-01-01 00:00:05",
            "2026-01-01 00:00:05 ",
            "2026-1-01 00:00:05",
            "2026-01-01 24:00:00.001",
            "2026-01-01 24:00:01",
            "2026-13-01 00:00:00",
            "2026-00-10 00:00:00",
            "2026-01-32 00:00:00",
            "2026-01-00 00:00:00",
            "2026-01-01 23:60:00",
            "2026-01-01 23:59:60",
            "2026-01-01 00:00:5",
            "2026-01-01 0:00:05",
            "2026-01-01  00:00:05",
            "2026-01-01 00:00:05.-1",
            "2026-01-01T00:00:05",
            "2026-01-01t24:00",
            "+2026-01-01 00:00:05",
            "2026-01-01 00:00:05Z",
            "2026-01-01 00:00:05+02:00",
            "2026-01-01",
            "",
        ] {
            let e = refused(&r, &format!("\"{s}\""));
            assert!(
                e.reason.contains("is not a TIMESTAMP in the SQL standard"),
                "{e}"
            );
        }
        for json in ["1767225605000", "true", r#"{"a":1}"#] {
            refused(&r, json);
        }
    }

    // TIMESTAMP_LTZ, 'SQL'. Probes: json_types "…05.250Z"; p01 "…05Z"; p17 tl1 ".25Z" →
    // .250; q04 "…05.Z"; q06 "24:00:00Z" and q19 "24:00:00.000Z" → next day; q14 ".9999Z"
    // → .999; p02 lowercase "z", p17 "+00:00", p18 " Z", q08 "00:00Z" (no seconds), the
    // ISO form (json_types line 2) and a number (line 3) are NULL: rejected.
    #[test]
    fn sql_ltz_timestamps_need_a_capital_z() {
        let r = reader("v TIMESTAMP_LTZ(3)");
        let ts = |s: &str| one(&r, &format!("\"{s}\""));
        for (s, want) in [
            ("2026-01-01 00:00:05.250Z", jan1(0, 0, 5, 250)),
            ("2026-01-01 00:00:05Z", jan1(0, 0, 5, 0)),
            ("2026-01-01 00:00:05.25Z", jan1(0, 0, 5, 250)),
            ("2026-01-01 00:00:05.Z", jan1(0, 0, 5, 0)),
            ("2026-01-01 24:00:00Z", jan1(24, 0, 0, 0)),
            ("2026-01-01 24:00:00.000Z", jan1(24, 0, 0, 0)),
            ("2026-01-01 00:00:05.9999Z", jan1(0, 0, 5, 999)),
        ] {
            assert_eq!(ts(s), Ok(Value::TimestampLtz(want)), "{s}");
        }
        for s in [
            "2026-01-01 00:00:05z",
            "2026-01-01 00:00:05.250+00:00",
            "2026-01-01 00:00:05.250 Z",
            "2026-01-01 00:00Z",
            "2026-01-01T00:00:05.250Z",
            "2026-01-01 00:00:05.250",
            "2026-01-01 23:59:59.1234567890Z",
        ] {
            let e = ts(s).expect_err(s);
            assert!(
                e.reason
                    .contains("is not a TIMESTAMP_LTZ in the SQL standard"),
                "{e}"
            );
        }
        refused(&r, "1767225605000");
        let p1 = reader("v TIMESTAMP_LTZ(1)");
        // Probe p01: TIMESTAMP_LTZ(1) keeps .999.
        assert_eq!(
            ok(&p1, r#""2026-01-01 00:00:05.999Z""#),
            Value::TimestampLtz(jan1(0, 0, 5, 999))
        );
    }

    // TIMESTAMP, 'ISO-8601' (a strict formatter). Probes: json_types line 2 "…T00:00:05";
    // p20 lowercase "t" and t0 "…T00:00" (no seconds); p21 "…05."; p22 9 digits → .123;
    // r5 ".1239" → .123; r4 2024-02-29. NULL in Flink, rejected: p21 "…05Z", r1
    // 2026-02-30, r2 04-31, r3 2026-02-29 (no clamping), q08/q12/q21 24:00, the SQL form
    // (json_types line 1).
    #[test]
    fn iso_timestamps_read_as_flink() {
        let r = iso("v TIMESTAMP(3)");
        let ts = |s: &str| one(&r, &format!("\"{s}\""));
        for (s, want) in [
            ("2026-01-01T00:00:05", jan1(0, 0, 5, 0)),
            ("2026-01-01t00:00:05", jan1(0, 0, 5, 0)),
            ("2026-01-01T00:00", jan1(0, 0, 0, 0)),
            ("2026-01-01T00:00:05.", jan1(0, 0, 5, 0)),
            ("2026-01-01T00:00:05.250", jan1(0, 0, 5, 250)),
            ("2026-01-01T00:00:05.123456789", jan1(0, 0, 5, 123)),
            ("2026-01-01T00:00:05.1239", jan1(0, 0, 5, 123)),
        ] {
            assert_eq!(ts(s), Ok(Value::Timestamp(want)), "{s}");
        }
        assert_eq!(
            ts("2024-02-29T00:00:05"),
            Ok(Value::Timestamp(1_709_164_805_000))
        );
        for s in [
            "2026-01-01T00:00:05Z",
            "2026-01-01T00:00:05+02:00",
            "2026-02-30T00:00:00",
            "2026-04-31T00:00",
            "2026-02-29T00:00:05",
            "2026-01-01T24:00",
            "2026-01-01T24:00:00.000",
            "2026-01-01 00:00:05",
            "2026-01-01T00:00:05.1234567891",
            "2026-01-01T00",
            "2026-01-01T00:00.5",
        ] {
            let e = ts(s).expect_err(s);
            assert!(
                e.reason
                    .contains("is not a TIMESTAMP in the ISO-8601 standard"),
                "{e}"
            );
        }
    }

    // TIMESTAMP_LTZ, 'ISO-8601' (a lenient formatter, case-sensitive). Probes: json_types
    // "…T00:00:05.250Z", ".123999Z" → .123; q01 "T00:00Z"; q05 "05.Z"; q07 "T24:00Z" →
    // next day; q09 2026-02-29 → 02-28; q16 04-31 → 04-30; q10 9 digits. NULL in Flink,
    // rejected: q02 lowercase "t", q03 lowercase "z", p21 "+00:00" and no Z, p22 10
    // digits, the SQL form.
    #[test]
    fn iso_ltz_timestamps_read_as_flink() {
        let r = iso("v TIMESTAMP_LTZ(3)");
        let ts = |s: &str| one(&r, &format!("\"{s}\""));
        for (s, want) in [
            ("2026-01-01T00:00:05.250Z", jan1(0, 0, 5, 250)),
            ("2026-01-01T00:00:05.123999Z", jan1(0, 0, 5, 123)),
            ("2026-01-01T00:00Z", jan1(0, 0, 0, 0)),
            ("2026-01-01T00:00:05.Z", jan1(0, 0, 5, 0)),
            ("2026-01-01T24:00Z", jan1(24, 0, 0, 0)),
            ("2026-01-01T00:00:05.999999999Z", jan1(0, 0, 5, 999)),
        ] {
            assert_eq!(ts(s), Ok(Value::TimestampLtz(want)), "{s}");
        }
        assert_eq!(ts("2026-02-29T00:00:00Z"), ts("2026-02-28T00:00:00Z"));
        assert_eq!(ts("2026-04-31T00:00:00Z"), ts("2026-04-30T00:00:00Z"));
        for s in [
            "2026-01-01t00:00:05Z",
            "2026-01-01T00:00:05z",
            "2026-01-01T00:00:05.25+00:00",
            "2026-01-01T00:00",
            "2026-01-01T00:00:05.1234567891Z",
            "2026-01-01 00:00:05.250Z",
            "2026-01-01T24:00:01Z",
        ] {
            let e = ts(s).expect_err(s);
            assert!(
                e.reason
                    .contains("is not a TIMESTAMP_LTZ in the ISO-8601 standard"),
                "{e}"
            );
        }
    }

    #[test]
    fn hostile_lines_are_bounded_and_never_panic() {
        let r = reader("id STRING, v DOUBLE, d DECIMAL(38, 10), s STRING, m ROW<x INT>");
        // serde_json skips and captures nested values without recursion, and a STRING
        // column's text is written in one loop: any depth is read in bounded stack.
        let (open, close) = ("[".repeat(100_000), "]".repeat(100_000));
        let row = r
            .read(format!("{{\"x\": {open}1{close}}}").as_bytes())
            .expect("skipped");
        assert!(row.iter().all(Value::is_null));
        let row = r
            .read(format!("{{\"s\": {open}1{close}}}").as_bytes())
            .expect("into a string");
        assert_eq!(row[3], Value::string(&format!("{open}1{close}")));
        // Only declared ROW levels are parsed again; deeper objects are skipped.
        let deep = format!("{}1{}", "{\"m\":".repeat(100_000), "}".repeat(100_000));
        let row = r.read(deep.as_bytes()).expect("deep");
        assert_eq!(row[4], Value::Row(Arc::from(vec![Value::Null])));
        // A 1 MB line: a long string, and numbers of a million digits.
        let long = "x".repeat(1 << 20);
        let row = r
            .read(format!(r#"{{"id": "{long}", "skipped": "{long}"}}"#).as_bytes())
            .expect("long");
        assert_eq!(row[0], Value::string(&long));
        let digits = "9".repeat(1 << 20);
        assert_eq!(
            r.read(format!(r#"{{"d": {digits}}}"#).as_bytes())
                .expect_err("overflow")
                .column
                .as_deref(),
            Some("d")
        );
        let tiny = format!("0.{}1", "0".repeat(1 << 20));
        assert_eq!(
            r.read(format!(r#"{{"d": {tiny}, "v": {tiny}}}"#).as_bytes())
                .expect("rounds to zero"),
            [
                Value::Null,
                Value::Double(0.0),
                dec("0.0000000000"),
                Value::Null,
                Value::Null
            ]
        );
        let row = r
            .read(format!(r#"{{"v": {digits}, "s": {digits}}}"#).as_bytes())
            .expect("huge");
        assert_eq!(row[1], Value::Double(f64::INFINITY));
        assert_eq!(row[3], Value::string(&digits));
        let row = r
            .read(format!(r#"{{"s": {{"a": {digits}.5e-99999999999999999999}}}}"#).as_bytes())
            .expect("huge exponent");
        assert!(matches!(&row[3], Value::String(s) if s.starts_with("{\"a\":")));
        // Many unknown keys are skipped in one pass.
        let many: String = (0..50_000).map(|i| format!("\"k{i}\":{i},")).collect();
        let line = format!("{{{many}\"id\":\"last\"}}");
        assert_eq!(
            r.read(line.as_bytes()).expect("many")[0],
            Value::string("last")
        );
    }

    #[test]
    fn reasons_quote_the_value_cut_short() {
        let r = reader("v INT");
        let e = refused(&r, &format!("\"{}\"", "y".repeat(1000)));
        assert!(e.reason.len() < 120, "{e}");
        assert!(
            e.reason.contains("...\" cannot be read as INT")
                || e.reason.contains("... cannot be read as INT"),
            "{e}"
        );
    }

    #[test]
    fn java_texts_of_numbers() {
        for (d, want) in [
            (1.0, "1.0"),
            (0.001, "0.001"),
            (0.0001, "1.0E-4"),
            (9_999_999.0, "9999999.0"),
            (10_000_000.0, "1.0E7"),
            (-1.5e-300, "-1.5E-300"),
            (123.456, "123.456"),
        ] {
            assert_eq!(java_double_text(d), want, "{d}");
        }
        for (text, want) in [
            ("1.50", "1.5"),
            ("100", "1E+2"),
            ("0.00", "0"),
            ("-0.0", "0"),
            ("0.0000001", "1E-7"),
            ("0.000001", "0.000001"),
            ("123.4500e5", "1.2345E+7"),
            ("1.23e2", "123"),
            ("-12.5", "-12.5"),
        ] {
            let n = BigDecimalText::parse(text).expect(text);
            assert_eq!(n.java_text(), want, "{text}");
        }
    }
}
