//! How many bytes DynamoDB counts for a number attribute value as Sluice's codecs
//! write it (`N`, or `S` beyond DynamoDB's number range). Kept apart from
//! the limit checks (`limits`, which re-exports it as `limits::dynamodb::*`) so that the items
//! can size themselves without depending on the limit checks, which depend on them.

/// DynamoDB numbers must be below this in magnitude.
pub const MAX_NUMBER_MAGNITUDE: f64 = 1e126;
/// Smaller magnitudes are stored as zero.
pub const FLUSH_BELOW: f64 = 1e-120;

/// The `N` text Sluice writes for `x`, or `None` when DynamoDB cannot hold it as a
/// number (the codec writes such values as `S` of `format!("{x:e}")`).
pub fn number_text(x: f64) -> Option<String> {
    if !x.is_finite() || x.abs() >= MAX_NUMBER_MAGNITUDE {
        None
    } else if x.abs() < FLUSH_BELOW {
        Some("0".to_owned())
    } else {
        Some(format!("{x:e}"))
    }
}

/// Size of a number value as documented: 1 byte per two significant digits (leading
/// and trailing zeroes trimmed) plus 1 byte.
pub fn number_size(text: &str) -> usize {
    let mantissa = text.split(['e', 'E']).next().unwrap_or_default();
    // The digits between the first and last non-zero digit, counted in place (this
    // runs for every number of every item written).
    let digits = mantissa.bytes().filter(u8::is_ascii_digit);
    let leading = digits.clone().take_while(|&d| d == b'0').count();
    let nonzero_tail = digits
        .clone()
        .skip(leading)
        .enumerate()
        .filter(|&(_, d)| d != b'0')
        .last()
        .map_or(0, |(i, _)| i + 1);
    nonzero_tail.max(1).div_ceil(2) + 1
}

/// Size of an `f64` attribute value as the codec writes it (`N`, or `S`).
/// Same as sizing [`number_text`]'s text (or the `S` text), but formatted on the
/// stack: this runs for every number of every item sized.
pub fn f64_size(x: f64) -> usize {
    if !x.is_finite() || x.abs() >= MAX_NUMBER_MAGNITUDE {
        with_text(format_args!("{x:e}"), str::len)
    } else if x.abs() < FLUSH_BELOW {
        number_size("0")
    } else {
        // ryu writes the same shortest round-trip digits as `{x:e}` (only the
        // notation differs, which `number_size` ignores), at a fraction of the
        // cost of the fmt machinery: this ran 6 times per item sized, ~5 % of the
        // demo (a proptest checks the two agree).
        number_size(ryu::Buffer::new().format_finite(x))
    }
}

/// [`number_size`] of an integer's decimal text, counted without formatting it.
pub(crate) fn int_size<T: TryInto<i128> + std::fmt::Display + Copy>(x: T) -> usize {
    match x.try_into() {
        Ok(mut n) => {
            if n == 0 {
                return number_size("0");
            }
            // Trailing zeroes do not count; the significant digits do.
            while n % 10 == 0 {
                n /= 10;
            }
            let mut digits = 0usize;
            while n != 0 {
                n /= 10;
                digits += 1;
            }
            digits.div_ceil(2) + 1
        }
        Err(_) => with_text(format_args!("{x}"), number_size),
    }
}

/// Runs `f` on the formatted text of `args`, formatted into a stack buffer (numbers
/// need at most 24 bytes); longer text falls back to a `String`.
fn with_text<R>(args: std::fmt::Arguments<'_>, f: impl FnOnce(&str) -> R) -> R {
    struct Stack {
        buf: [u8; 48],
        len: usize,
    }
    impl std::fmt::Write for Stack {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let end = self.len + s.len();
            let slot = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
            slot.copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }
    let mut stack = Stack {
        buf: [0; 48],
        len: 0,
    };
    if std::fmt::Write::write_fmt(&mut stack, args).is_ok() {
        // Whole `&str`s were copied in, so the bytes are UTF-8.
        if let Ok(text) = std::str::from_utf8(&stack.buf[..stack.len]) {
            return f(text);
        }
    }
    f(&args.to_string())
}

/// The most bytes an `f64` attribute value takes as the codec writes it: an `N` has
/// at most 17 significant digits (9 + 1 bytes); an `S` (non-finite, or beyond
/// DynamoDB's number range) is at most `-1.7976931348623157e308`, 23 bytes.
pub const MAX_F64_BYTES: usize = 23;
/// The most bytes a `u64` number takes: 20 digits, 10 + 1 bytes.
pub const MAX_U64_BYTES: usize = 11;
