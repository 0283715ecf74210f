//! Values of columns and expressions at run time, typed as Flink types them
//! ([`SqlType`]). NULL is one variant for every type; a value's type is known from the
//! plan, so values do not repeat it (a `Decimal` carries its scale, not its precision).

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use super::types::SqlType;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Boolean(bool),
    Int(i32),
    BigInt(i64),
    Float(f32),
    Double(f64),
    Decimal(Decimal),
    String(Arc<str>),
    /// `TIMESTAMP(p)`, p ≤ 3: milliseconds since 1970-01-01T00:00:00 of a wall clock
    /// without time zone (UTC by convention, as the session time zone is UTC).
    Timestamp(i64),
    /// `TIMESTAMP_LTZ(p)`, p ≤ 3: an instant, milliseconds since the epoch.
    TimestampLtz(i64),
    /// A nested row's fields, in the declared order.
    Row(Arc<[Value]>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn string(s: &str) -> Value {
        Value::String(Arc::from(s))
    }

    /// Whether this value can stand in a column of type `ty` (NULL fits every type).
    pub fn fits(&self, ty: &SqlType) -> bool {
        match (self, ty) {
            (Value::Null, _) => true,
            (Value::Boolean(_), SqlType::Boolean)
            | (Value::Int(_), SqlType::Int)
            | (Value::BigInt(_), SqlType::BigInt)
            | (Value::Float(_), SqlType::Float)
            | (Value::Double(_), SqlType::Double)
            | (Value::String(_), SqlType::String)
            | (Value::Timestamp(_), SqlType::Timestamp { .. })
            | (Value::TimestampLtz(_), SqlType::TimestampLtz { .. }) => true,
            (Value::Decimal(d), SqlType::Decimal { precision, scale }) => {
                d.scale == *scale && d.digits() <= u32::from(*precision)
            }
            (Value::Row(values), SqlType::Row(fields)) => {
                values.len() == fields.len()
                    && values.iter().zip(fields).all(|(v, f)| v.fits(&f.ty))
            }
            _ => false,
        }
    }

    /// SQL's order of two values of one type: `None` when either is NULL (or a NaN is
    /// compared), as a comparison with NULL is unknown.
    pub fn sql_cmp(&self, other: &Value) -> Option<Ordering> {
        use Value as V;
        match (self, other) {
            (V::Null, _) | (_, V::Null) => None,
            (V::Boolean(a), V::Boolean(b)) => Some(a.cmp(b)),
            (V::Int(a), V::Int(b)) => Some(a.cmp(b)),
            (V::BigInt(a), V::BigInt(b)) => Some(a.cmp(b)),
            (V::Float(a), V::Float(b)) => a.partial_cmp(b),
            (V::Double(a), V::Double(b)) => a.partial_cmp(b),
            (V::Decimal(a), V::Decimal(b)) => Some(a.cmp(b)),
            (V::String(a), V::String(b)) => Some(a.cmp(b)),
            (V::Timestamp(a), V::Timestamp(b)) | (V::TimestampLtz(a), V::TimestampLtz(b)) => {
                Some(a.cmp(b))
            }
            _ => None,
        }
    }
}

/// An exact decimal: `unscaled × 10^-scale`. Precision (digits in all) is the type's;
/// 38 digits fit in an `i128` (its maximum is about 1.7 × 10^38).
#[derive(Clone, Copy, Debug)]
pub struct Decimal {
    pub unscaled: i128,
    pub scale: u8,
}

/// Flink's largest precision and scale.
pub const MAX_PRECISION: u8 = 38;

impl Decimal {
    pub fn new(unscaled: i128, scale: u8) -> Decimal {
        Decimal { unscaled, scale }
    }

    /// How many digits the unscaled value has (0 has one).
    pub fn digits(&self) -> u32 {
        let mut n = self.unscaled.unsigned_abs();
        let mut digits = 1;
        while n >= 10 {
            n /= 10;
            digits += 1;
        }
        digits
    }

    /// The same number at `scale`, rounding half away from zero when digits are cut
    /// (Java's `RoundingMode.HALF_UP`, which Flink uses); `None` on overflow.
    pub fn rescale(&self, scale: u8) -> Option<Decimal> {
        use std::cmp::Ordering as O;
        let unscaled = match scale.cmp(&self.scale) {
            O::Equal => self.unscaled,
            O::Greater => self
                .unscaled
                .checked_mul(pow10(u32::from(scale - self.scale))?)?,
            O::Less => {
                let divisor = pow10(u32::from(self.scale - scale))?;
                let (q, r) = (self.unscaled / divisor, self.unscaled % divisor);
                if r.unsigned_abs() * 2 >= divisor.unsigned_abs() {
                    q + self.unscaled.signum()
                } else {
                    q
                }
            }
        };
        Some(Decimal { unscaled, scale })
    }

    /// The decimal as written in JSON or SQL (`-12.50`, `3`, `1e3` refused: `None`),
    /// at its own scale.
    pub fn parse(text: &str) -> Option<Decimal> {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty() && frac.is_empty()
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
            || frac.len() > usize::from(MAX_PRECISION)
        {
            return None;
        }
        let mut unscaled: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            unscaled = unscaled
                .checked_mul(10)?
                .checked_add(i128::from(b - b'0'))?;
        }
        Some(Decimal {
            unscaled: if negative { -unscaled } else { unscaled },
            scale: frac.len() as u8,
        })
    }

    pub fn to_f64(&self) -> f64 {
        // Through the decimal text: exact to the nearest double, unlike a division.
        self.to_string().parse().unwrap_or(f64::NAN)
    }
}

fn pow10(exp: u32) -> Option<i128> {
    10i128.checked_pow(exp)
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Decimal) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Decimal {}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Decimal) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    /// By value, whatever the scales (`1.50` equals `1.5`).
    fn cmp(&self, other: &Decimal) -> Ordering {
        let scale = self.scale.max(other.scale);
        match (self.rescale(scale), other.rescale(scale)) {
            (Some(a), Some(b)) => a.unscaled.cmp(&b.unscaled),
            // Too large to align: compare as doubles (only at the extreme of i128).
            _ => self
                .to_f64()
                .partial_cmp(&other.to_f64())
                .unwrap_or(Ordering::Equal),
        }
    }
}

impl fmt::Display for Decimal {
    /// Plain notation with exactly `scale` fractional digits, as Flink prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.unscaled.unsigned_abs().to_string();
        let sign = if self.unscaled < 0 { "-" } else { "" };
        let scale = usize::from(self.scale);
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        write!(f, "{sign}{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).expect(s)
    }

    #[test]
    fn decimals_parse_and_print_at_their_scale() {
        for s in [
            "0",
            "12.50",
            "-0.05",
            "123456789012345678901234567890.12345678",
        ] {
            assert_eq!(d(s).to_string(), s);
        }
        assert_eq!(d("+7.0").to_string(), "7.0");
        assert_eq!(d(".5").to_string(), "0.5");
        assert_eq!(d("5.").to_string(), "5");
        for bad in ["", ".", "1e3", "1.2.3", "--1", "abc", "1 ", &"9".repeat(40)] {
            assert!(Decimal::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn rescaling_rounds_half_away_from_zero() {
        assert_eq!(d("1.675").rescale(2).expect("fits").to_string(), "1.68");
        assert_eq!(d("-1.675").rescale(2).expect("fits").to_string(), "-1.68");
        assert_eq!(d("1.674").rescale(2).expect("fits").to_string(), "1.67");
        assert_eq!(d("2.5").rescale(0).expect("fits").to_string(), "3");
        assert_eq!(d("1.5").rescale(6).expect("fits").to_string(), "1.500000");
        assert!(d(&"9".repeat(38)).rescale(2).is_none());
    }

    #[test]
    fn decimals_compare_by_value_and_fit_their_type() {
        assert_eq!(d("1.50"), d("1.5"));
        assert!(d("-2") < d("1.99"));
        let ty = SqlType::Decimal {
            precision: 4,
            scale: 2,
        };
        assert!(Value::Decimal(d("12.34")).fits(&ty));
        assert!(!Value::Decimal(d("123.45")).fits(&ty));
        assert!(!Value::Decimal(d("12.3")).fits(&ty));
        assert_eq!(d("0.1").to_f64(), 0.1);
    }

    #[test]
    fn comparisons_with_null_or_nan_are_unknown() {
        assert_eq!(Value::Null.sql_cmp(&Value::Int(1)), None);
        assert_eq!(Value::Double(f64::NAN).sql_cmp(&Value::Double(1.0)), None);
        assert_eq!(
            Value::string("a").sql_cmp(&Value::string("b")),
            Some(Ordering::Less)
        );
        assert_eq!(Value::Int(1).sql_cmp(&Value::BigInt(1)), None);
    }
}
