//! DynamoDB capacity-unit arithmetic (on-demand request units are counted the same
//! way), shared by the AWS adapter's meter and the in-memory store's.
//!
//! - Read: 1 unit per 4 KB of each item (rounded up per item, at least 1) for a
//!   strongly consistent read, half that for an eventually consistent one. A read of an
//!   absent item still costs the minimum. `Query` and `Scan` round up the total size of
//!   the page, not each item.
//! - Write: 1 unit per 1 KB of each item (rounded up, at least 1); twice that inside
//!   `TransactWriteItems`.

/// Read units of one item read of `size` bytes.
pub fn read_units(size: usize, consistent: bool) -> f64 {
    let blocks = size.div_ceil(4096).max(1) as f64;
    if consistent { blocks } else { blocks / 2.0 }
}

/// Read units of a `Query`/`Scan` page of `total` bytes.
pub fn page_read_units(total: usize, consistent: bool) -> f64 {
    let blocks = total.div_ceil(4096) as f64;
    let units = if consistent { blocks } else { blocks / 2.0 };
    units.max(if consistent { 1.0 } else { 0.5 })
}

/// Write units of one standard write of `size` bytes.
pub fn write_units(size: usize) -> f64 {
    size.div_ceil(1024).max(1) as f64
}

/// Write units of one write of `size` bytes inside a transaction.
pub fn transactional_write_units(size: usize) -> f64 {
    2.0 * write_units(size)
}

/// `units` in thousandths, so that sums of them add up exactly; 0 for anything not
/// finite and positive.
pub fn to_milli(units: f64) -> u64 {
    if units.is_finite() && units > 0.0 {
        (units * 1000.0).round() as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_follow_dynamodb_rounding() {
        assert_eq!(read_units(1, true), 1.0);
        assert_eq!(read_units(4096, true), 1.0);
        assert_eq!(read_units(4097, true), 2.0);
        assert_eq!(read_units(4097, false), 1.0);
        assert_eq!(read_units(0, false), 0.5);
        assert_eq!(write_units(1024), 1.0);
        assert_eq!(write_units(1025), 2.0);
        assert_eq!(transactional_write_units(300_000), 586.0);
        assert_eq!(page_read_units(10 * 4096 + 1, false), 5.5);
        assert_eq!(page_read_units(0, true), 1.0);
        assert_eq!(to_milli(0.5), 500);
        assert_eq!(to_milli(-1.0), 0);
        assert_eq!(to_milli(f64::NAN), 0);
    }
}
