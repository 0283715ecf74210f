//! The arithmetic of the accumulators: Java's orders and wrapping, compensated sums,
//! Welford's and Chan's variance, exact decimal sums wider than 38 digits, and
//! conversions between decimals and doubles as Flink makes them.

use super::*;

/// A total order of two non-NULL values of one type; doubles as Java's
/// `Double.compare` (-0.0 below 0.0, every NaN above +∞).
pub(super) fn total_cmp(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (&Value::Float(x), &Value::Float(y)) => java_double_cmp(f64::from(x), f64::from(y)),
        (&Value::Double(x), &Value::Double(y)) => java_double_cmp(x, y),
        _ => a.sql_cmp(b).unwrap_or(Ordering::Equal),
    }
}

pub(super) fn java_double_cmp(x: f64, y: f64) -> Ordering {
    match (x.is_nan(), y.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => x.total_cmp(&y),
    }
}

pub(super) fn float_value(num: Num, x: f64) -> Value {
    match num {
        Num::Float => Value::Float(x as f32),
        _ => Value::Double(x),
    }
}

/// Neumaier's compensated addition: the new sum and the compensation, the low-order
/// part lost to rounding (as in `state::statistics`).
pub(super) fn neumaier_add(sum: f64, comp: f64, x: f64) -> (f64, f64) {
    let t = sum + x;
    let lost = if sum.abs() >= x.abs() {
        (sum - t) + x
    } else {
        (x - t) + sum
    };
    (t, comp + lost)
}

/// Welford's update, with the very operations of Flink's `WelfordM2AggFunction`.
pub(super) fn welford_add(n: &mut u64, mean: &mut f64, m2: &mut f64, x: f64) {
    *n += 1;
    let delta = x - *mean;
    *mean += delta / *n as f64;
    let delta2 = x - *mean;
    *m2 += delta * delta2;
}

/// Chan et al.'s merge of two Welford states, as Flink's `WelfordM2AggFunction.merge`.
pub(super) fn chan_merge(n: &mut u64, mean: &mut f64, m2: &mut f64, bn: u64, bmean: f64, bm2: f64) {
    if bn == 0 {
        return;
    }
    if *n == 0 {
        (*n, *mean, *m2) = (bn, bmean, bm2);
        return;
    }
    let total = *n + bn;
    let delta = bmean - *mean;
    let new_mean = *mean + (bn as f64 / total as f64) * delta;
    *m2 = *m2 + bm2 + (*n as f64 * bn as f64 / total as f64) * delta * delta;
    (*n, *mean) = (total, new_mean);
}

/// VAR_* and STDDEV_* from Welford's M2, cast to the result type as Flink does.
pub(super) fn moment_value(moment: Moment, num: Num, n: u64, m2: f64) -> Value {
    // Flink's Welford function gives NULL for a negative M2 (never seen with these
    // formulas, kept for fidelity).
    if m2 < 0.0 {
        return Value::Null;
    }
    let divisor = match moment {
        Moment::VarPop | Moment::StddevPop => n,
        Moment::VarSamp | Moment::StddevSamp if n == 1 => return Value::Null,
        Moment::VarSamp | Moment::StddevSamp => n - 1,
    };
    let var = m2 / divisor as f64;
    let x = match moment {
        Moment::StddevPop | Moment::StddevSamp => var.sqrt(),
        Moment::VarPop | Moment::VarSamp => var,
    };
    // Rust's `as` truncates toward zero and saturates (NaN to 0), as Java's casts do.
    match num {
        Num::Int => Value::Int(x as i32),
        Num::BigInt => Value::BigInt(x as i64),
        Num::Float => Value::Float(x as f32),
        Num::Double => Value::Double(x),
        Num::Decimal { scale, .. } => {
            decimal_from_f64(x, avg_scale(scale)).map_or(Value::Null, Value::Decimal)
        }
    }
}

/// A decimal's value as Flink's `DecimalDataUtils.doubleValue`: for a compact decimal
/// (precision up to 18) `unscaled / 10^scale` in doubles, otherwise correctly rounded
/// (`BigDecimal.doubleValue`). No allocation.
pub(super) fn decimal_to_f64(unscaled: i128, scale: u8, precision: u8) -> f64 {
    if precision <= 18 {
        return unscaled as f64 / 10f64.powi(i32::from(scale));
    }
    if unscaled.unsigned_abs() < 1 << 53 && scale <= 22 {
        // Both operands are exact doubles: one rounding, the correct one.
        return unscaled as f64 / 10f64.powi(i32::from(scale));
    }
    let mut buf = StackText::default();
    // Cannot fail: at most 40 digits, a sign and "e-38" fit the buffer.
    let _ = write!(buf, "{unscaled}e-{scale}");
    buf.as_str().parse().unwrap_or(f64::NAN)
}

/// A double cast to DECIMAL(38, scale) as Flink casts it: `BigDecimal.valueOf(x)` (the
/// double's shortest text) rounded half up to `scale`; `None` when it does not fit (or
/// is not finite, where Flink fails the job).
pub(super) fn decimal_from_f64(x: f64, scale: u8) -> Option<Decimal> {
    if !x.is_finite() {
        return None;
    }
    let text = format!("{}", x.abs());
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let mut unscaled: i128 = 0;
    let digits = int.bytes().chain(
        frac.bytes()
            .chain(std::iter::repeat(b'0'))
            .take(usize::from(scale)),
    );
    for b in digits {
        unscaled = unscaled
            .checked_mul(10)?
            .checked_add(i128::from(b - b'0'))?;
    }
    if frac
        .as_bytes()
        .get(usize::from(scale))
        .is_some_and(|&b| b >= b'5')
    {
        unscaled = unscaled.checked_add(1)?;
    }
    let d = Decimal::new(if x < 0.0 { -unscaled } else { unscaled }, scale);
    (d.digits() <= u32::from(MAX_PRECISION)).then_some(d)
}

/// AVG of decimals: `total × 10^-scale / n`, as Flink divides: rounded half up to 38
/// significant digits, then half up to the result's scale; `None` when it needs more
/// than 38 digits.
pub(super) fn average(total: i128, scale: u8, n: u64) -> Option<Decimal> {
    let target = avg_scale(scale);
    let divisor = u128::from(n);
    let dividend = total.unsigned_abs();
    // Long division: `unscaled` is the quotient truncated at the target scale.
    let mut unscaled = dividend / divisor;
    let mut rem = dividend % divisor;
    let mut next_digit = || {
        rem *= 10;
        let d = (rem / divisor) as u8;
        rem %= divisor;
        d
    };
    for _ in 0..(target - scale) {
        unscaled = unscaled
            .checked_mul(10)?
            .checked_add(u128::from(next_digit()))?;
    }
    let first = next_digit();
    let round_up = match first {
        5.. => true,
        4 => {
            // Rounding to 38 significant digits first may carry into this 4: it does
            // when every digit after it up to the 38th significant one is 9 and the
            // digit after those is 5 or more.
            let kept = Decimal::new(unscaled as i128, 0).digits();
            let more = if unscaled == 0 {
                38
            } else {
                38u32.saturating_sub(kept)
            };
            more > 0 && (1..more).all(|_| next_digit() == 9) && next_digit() >= 5
        }
        _ => false,
    };
    let unscaled = i128::try_from(unscaled + u128::from(round_up)).ok()?;
    let d = Decimal::new(if total < 0 { -unscaled } else { unscaled }, target);
    (d.digits() <= u32::from(MAX_PRECISION)).then_some(d)
}

/// An exact sum of decimals' unscaled values: `hi × 10^37 + lo`, `|lo| < 10^37`, `lo`
/// of `hi`'s sign (canonical, so equal sums are equal states). Holds any sum of fewer
/// than 2^59 values of 38 digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct WideSum {
    pub(super) hi: i64,
    pub(super) lo: i128,
}

pub(super) const WIDE_BASE: i128 = 10_i128.pow(37);
pub(super) const MAX_DECIMAL: i128 = 10_i128.pow(38) - 1;

impl WideSum {
    pub(super) const ZERO: WideSum = WideSum { hi: 0, lo: 0 };

    pub(super) fn add(&mut self, value: i128) {
        self.hi = self.hi.saturating_add((value / WIDE_BASE) as i64);
        self.lo += value % WIDE_BASE;
        self.normalize();
    }

    pub(super) fn merge(&mut self, other: &WideSum) {
        self.hi = self.hi.saturating_add(other.hi);
        self.lo += other.lo;
        self.normalize();
    }

    pub(super) fn normalize(&mut self) {
        self.hi = self.hi.saturating_add((self.lo / WIDE_BASE) as i64);
        self.lo %= WIDE_BASE;
        if self.hi > 0 && self.lo < 0 {
            self.hi -= 1;
            self.lo += WIDE_BASE;
        } else if self.hi < 0 && self.lo > 0 {
            self.hi += 1;
            self.lo -= WIDE_BASE;
        }
    }

    /// The sum if it has at most 38 digits.
    pub(super) fn total(&self) -> Option<i128> {
        let total = i128::from(self.hi)
            .checked_mul(WIDE_BASE)?
            .checked_add(self.lo)?;
        (total.unsigned_abs() <= MAX_DECIMAL as u128).then_some(total)
    }

    pub(super) fn to_text(self) -> String {
        let sign = if self.hi < 0 || self.lo < 0 { "-" } else { "" };
        if self.hi == 0 {
            format!("{sign}{}", self.lo.unsigned_abs())
        } else {
            format!(
                "{sign}{}{:037}",
                self.hi.unsigned_abs(),
                self.lo.unsigned_abs()
            )
        }
    }

    pub(super) fn parse(text: &str) -> Option<WideSum> {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if digits.is_empty() || digits.len() > 56 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let split = digits.len().saturating_sub(37);
        let (hi, lo) = digits.split_at(split);
        let hi: i64 = if hi.is_empty() { 0 } else { hi.parse().ok()? };
        let lo: i128 = lo.parse().ok()?;
        let sign = if negative { -1 } else { 1 };
        Some(WideSum {
            hi: hi * sign as i64,
            lo: lo * sign,
        })
    }
}

/// A short text built on the stack (no allocation).
pub(super) struct StackText {
    buf: [u8; 64],
    len: usize,
}

impl Default for StackText {
    fn default() -> StackText {
        StackText {
            buf: [0; 64],
            len: 0,
        }
    }
}

impl StackText {
    pub(super) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}
