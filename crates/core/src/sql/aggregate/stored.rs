//! The stored form of an accumulator's state: a small tagged JSON value whose tag names
//! its layout, and the byte bounds of each layout.

use super::*;

pub(super) const COUNT_STATE_BYTES: usize = r#"{"c":}"#.len() + U64_BYTES;
pub(super) const INT_STATE_BYTES: usize = r#"{"i":[,]}"#.len() + U64_BYTES + I64_BYTES;
pub(super) const FLOAT_STATE_BYTES: usize = r#"{"f":[,,]}"#.len() + U64_BYTES + 2 * F64_BYTES;
pub(super) const DECIMAL_STATE_BYTES: usize = r#"{"d":[,""]}"#.len() + U64_BYTES + WIDE_SUM_BYTES;
pub(super) const SKETCH_STATE_BYTES: usize =
    r#"{"q":}"#.len() + crate::sql::quantile::MAX_JSON_BYTES;
pub(super) const DISTINCT_STATE_BYTES: usize = r#"{"h":}"#.len() + super::distinct::MAX_TEXT_BYTES;
pub(super) const SHARED_STATE_BYTES: usize = r#""r""#.len();
pub(super) const EXTREME_OVERHEAD_BYTES: usize = r#"{"x":{"s":}}"#.len();
/// The longest non-string extreme: a DECIMAL(38, 38) text `"-0.<38 digits>"`.
pub(super) const MAX_SCALAR_BYTES: usize = 2 + 3 + 38;
pub(super) const U64_BYTES: usize = 20;
pub(super) const I64_BYTES: usize = 20;
/// The longest shortest-text of a double (`-2.2250738585072014e-308`); the texts of
/// non-finite values (`"-Infinity"`) are shorter.
pub(super) const F64_BYTES: usize = 24;
/// A sign, 19 digits of `hi` and 37 of `lo`.
pub(super) const WIDE_SUM_BYTES: usize = 1 + 19 + 37;

/// The serde form of a state: short tags, tuples, doubles as JSON numbers (non-finite
/// ones as `"NaN"`, `"Infinity"`, `"-Infinity"`), exact decimals as text.
#[derive(Serialize, Deserialize)]
pub(super) enum Stored {
    #[serde(rename = "c")]
    Count(u64),
    #[serde(rename = "i")]
    Int(u64, i64),
    #[serde(rename = "f")]
    Float(u64, F64, F64),
    #[serde(rename = "d")]
    Decimal(u64, String),
    #[serde(rename = "m")]
    Moments(u64, F64, F64),
    #[serde(rename = "x")]
    Extreme(Option<Scalar>),
    #[serde(rename = "q")]
    Sketch(Box<QuantileSketch>),
    /// A percentile reading another's sketch: `"r"`.
    #[serde(rename = "r")]
    Shared,
    /// An HLL sketch in DataSketches' serialization, base64.
    #[serde(rename = "h")]
    Distinct(String),
}

#[derive(Serialize, Deserialize)]
pub(super) enum Scalar {
    #[serde(rename = "b")]
    Boolean(bool),
    #[serde(rename = "i")]
    Int(i32),
    #[serde(rename = "l")]
    BigInt(i64),
    /// A FLOAT as the double it widens to (exact, so it reads back bit for bit).
    #[serde(rename = "f")]
    Float(F64),
    #[serde(rename = "d")]
    Double(F64),
    #[serde(rename = "n")]
    Decimal(String),
    #[serde(rename = "s")]
    String(String),
    #[serde(rename = "t")]
    Timestamp(i64),
    #[serde(rename = "z")]
    TimestampLtz(i64),
}

impl From<AggregateState> for Stored {
    fn from(state: AggregateState) -> Stored {
        match state.0 {
            State::Count(n) => Stored::Count(n),
            State::Int { n, sum } => Stored::Int(n, sum),
            State::Float { n, sum, comp } => Stored::Float(n, F64(sum), F64(comp)),
            State::Decimal { n, sum } => Stored::Decimal(n, sum.to_text()),
            State::Moments { n, mean, m2 } => Stored::Moments(n, F64(mean), F64(m2)),
            State::Extreme(v) => Stored::Extreme(match v {
                Value::Boolean(b) => Some(Scalar::Boolean(b)),
                Value::Int(x) => Some(Scalar::Int(x)),
                Value::BigInt(x) => Some(Scalar::BigInt(x)),
                Value::Float(x) => Some(Scalar::Float(F64(f64::from(x)))),
                Value::Double(x) => Some(Scalar::Double(F64(x))),
                Value::Decimal(d) => Some(Scalar::Decimal(d.to_string())),
                Value::String(s) => Some(Scalar::String(s.to_string())),
                Value::Timestamp(ms) => Some(Scalar::Timestamp(ms)),
                Value::TimestampLtz(ms) => Some(Scalar::TimestampLtz(ms)),
                // MIN/MAX never keep a ROW (refused when planned).
                Value::Null | Value::Row(_) => None,
            }),
            State::Sketch(sketch) => Stored::Sketch(sketch),
            State::Shared => Stored::Shared,
            State::Distinct(sketch) => Stored::Distinct(sketch.to_text()),
        }
    }
}

impl TryFrom<Stored> for AggregateState {
    type Error = String;

    fn try_from(stored: Stored) -> std::result::Result<AggregateState, String> {
        Ok(AggregateState(match stored {
            Stored::Count(n) => State::Count(n),
            Stored::Int(n, sum) => State::Int { n, sum },
            Stored::Float(n, sum, comp) => State::Float {
                n,
                sum: sum.0,
                comp: comp.0,
            },
            Stored::Decimal(n, text) => State::Decimal {
                n,
                sum: WideSum::parse(&text)
                    .filter(|s| s.lo.unsigned_abs() < WIDE_BASE as u128)
                    .ok_or_else(|| format!("decimal sum {text:?} is not an integer"))?,
            },
            Stored::Moments(n, mean, m2) => State::Moments {
                n,
                mean: mean.0,
                m2: m2.0,
            },
            Stored::Extreme(scalar) => State::Extreme(match scalar {
                None => Value::Null,
                Some(Scalar::Boolean(b)) => Value::Boolean(b),
                Some(Scalar::Int(x)) => Value::Int(x),
                Some(Scalar::BigInt(x)) => Value::BigInt(x),
                Some(Scalar::Float(x)) => Value::Float(x.0 as f32),
                Some(Scalar::Double(x)) => Value::Double(x.0),
                Some(Scalar::Decimal(text)) => Value::Decimal(
                    Decimal::parse(&text).ok_or_else(|| format!("bad decimal {text:?}"))?,
                ),
                Some(Scalar::String(s)) => Value::String(Arc::from(s)),
                Some(Scalar::Timestamp(ms)) => Value::Timestamp(ms),
                Some(Scalar::TimestampLtz(ms)) => Value::TimestampLtz(ms),
            }),
            Stored::Sketch(sketch) => State::Sketch(sketch),
            Stored::Shared => State::Shared,
            Stored::Distinct(text) => State::Distinct(Box::new(DistinctSketch::from_text(&text)?)),
        }))
    }
}

/// A double stored as a JSON number, or as a string when not finite.
#[derive(Clone, Copy, Debug)]
pub(super) struct F64(f64);

impl Serialize for F64 {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let x = self.0;
        if x.is_finite() {
            s.serialize_f64(x)
        } else if x.is_nan() {
            s.serialize_str("NaN")
        } else if x > 0.0 {
            s.serialize_str("Infinity")
        } else {
            s.serialize_str("-Infinity")
        }
    }
}

impl<'de> Deserialize<'de> for F64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<F64, D::Error> {
        // A visitor rather than an untagged enum, which buffers every value first:
        // states are read back for every update detect judges.
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = F64;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number, \"NaN\", \"Infinity\" or \"-Infinity\"")
            }
            fn visit_f64<E: serde::de::Error>(self, x: f64) -> std::result::Result<F64, E> {
                Ok(F64(x))
            }
            fn visit_i64<E: serde::de::Error>(self, x: i64) -> std::result::Result<F64, E> {
                Ok(F64(x as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, x: u64) -> std::result::Result<F64, E> {
                Ok(F64(x as f64))
            }
            fn visit_str<E: serde::de::Error>(self, t: &str) -> std::result::Result<F64, E> {
                match t {
                    "NaN" => Ok(F64(f64::NAN)),
                    "Infinity" => Ok(F64(f64::INFINITY)),
                    "-Infinity" => Ok(F64(f64::NEG_INFINITY)),
                    other => Err(E::custom(format!(
                        "expected a number, \"NaN\", \"Infinity\" or \"-Infinity\", got {other:?}"
                    ))),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}
