//! The state of `APPROX_COUNT_DISTINCT(x)`: an Apache DataSketches HLL sketch
//! (HyperLogLog, `lg_k` 12, 8-bit registers), kept in the serialization DataSketches'
//! Java, C++ and Python libraries read (base64 in the item's JSON).
//!
//! Exact while small: up to a few hundred distinct values the sketch keeps each value's
//! 32-bit coupon (list and set modes), so the estimate is the count of distinct
//! coupons; beyond, 4,096 registers give a relative standard error of 1.04/√4096 =
//! 1.6%. Merging is a union (the maximum of each register), so the result does not
//! depend on how values were batched or in which order states were merged.
//!
//! Values are hashed as DataSketches' other implementations hash them: strings by their
//! UTF-8 bytes, integers and timestamps as 64-bit integers, doubles canonicalized
//! (-0.0 as 0.0, one NaN), DECIMALs by their text, booleans as 0 and 1.

use base64::Engine as _;
use datasketches::hash_value;
use datasketches::hll::{HllSketch, HllType, HllUnion};

use crate::sql::value::Value;

/// log2 of the registers: 4,096 of them, a relative standard error of 1.6%.
pub const LG_K: u8 = 12;
/// The relative standard error of an estimate beyond the exact range.
pub const RELATIVE_STANDARD_ERROR: f64 = 1.04 / 64.0;
/// The most bytes of the serialized sketch: an HLL-8 array (a 40-byte preamble and one
/// byte per register); the list and set modes of small counts are smaller.
pub const MAX_SERIALIZED_BYTES: usize = 40 + (1 << LG_K);

#[derive(Clone, Debug, PartialEq)]
pub struct DistinctSketch(HllSketch);

impl Default for DistinctSketch {
    fn default() -> Self {
        DistinctSketch(HllSketch::new(LG_K, HllType::Hll8))
    }
}

impl DistinctSketch {
    /// Adds a non-NULL value.
    pub fn add(&mut self, value: &Value) {
        let sketch = &mut self.0;
        match value {
            Value::Null | Value::Row(_) => {}
            Value::Boolean(b) => sketch.update(i64::from(*b)),
            Value::Int(x) => sketch.update(i64::from(*x)),
            Value::BigInt(x) | Value::Timestamp(x) | Value::TimestampLtz(x) => sketch.update(*x),
            Value::Float(x) => sketch.update(hash_value::canonical_float::from_f64(f64::from(*x))),
            Value::Double(x) => sketch.update(hash_value::canonical_float::from_f64(*x)),
            Value::Decimal(d) => sketch.update(hash_value::raw_bytes::from_str(&d.to_string())),
            Value::String(s) => sketch.update(hash_value::raw_bytes::from_str(s)),
        }
    }

    /// Adds every value of `other`: the sketch of both.
    pub fn merge(&mut self, other: &DistinctSketch) {
        if other.0.is_empty() {
            return;
        }
        let mut union = HllUnion::new(LG_K);
        union.update(&self.0);
        union.update(&other.0);
        self.0 = union.to_sketch(HllType::Hll8);
    }

    /// The estimated number of distinct values, rounded: a function of the values
    /// alone, not of how they were batched and merged (see [`canonical_bytes`]).
    pub fn estimate(&self) -> i64 {
        canonical_estimate(&self.0).round() as i64
    }

    /// DataSketches' serialization of the canonical sketch (see [`canonical_bytes`]),
    /// base64: any DataSketches library reading it estimates what [`Self::estimate`]
    /// says.
    pub fn to_text(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(canonical_bytes(&self.0))
    }

    /// Reads [`DistinctSketch::to_text`] back: an HLL sketch of [`LG_K`] and HLL-8.
    pub fn from_text(text: &str) -> Result<DistinctSketch, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| format!("an HLL sketch in base64: {e}"))?;
        if bytes.len() > MAX_SERIALIZED_BYTES {
            return Err(format!(
                "an HLL sketch of {} bytes: at most {MAX_SERIALIZED_BYTES}",
                bytes.len()
            ));
        }
        let sketch = HllSketch::deserialize(&bytes).map_err(|e| format!("an HLL sketch: {e}"))?;
        if sketch.lg_config_k() != LG_K || sketch.target_type() != HllType::Hll8 {
            return Err(format!(
                "an HLL sketch of lg_k {} and type {:?}: this one keeps lg_k {LG_K}, HLL-8",
                sketch.lg_config_k(),
                sketch.target_type()
            ));
        }
        Ok(DistinctSketch(sketch))
    }
}

/// The preamble of a serialized sketch in HLL mode (DataSketches' layout): flags at byte
/// 5, the mode in the low bits of byte 7, then the HIP accumulator, kxq0 and kxq1
/// (little-endian doubles at 8, 16 and 24), the registers at 40.
const FLAGS_BYTE: usize = 5;
const MODE_BYTE: usize = 7;
const HLL_MODE: u8 = 2;
const OUT_OF_ORDER_FLAG: u8 = 16;
const HIP_AT: usize = 8;
const KXQ0_AT: usize = 16;
const KXQ1_AT: usize = 24;
const REGISTERS_AT: usize = 40;

/// The serialization of `sketch` as a function of its content alone. In list and set
/// modes (small counts) the coupons already are. In HLL mode the sketch's estimator
/// depends on its history: one that only saw values in order keeps the HIP estimator,
/// one that went through a union the composite estimator, with sums kept in the order
/// registers changed. Here every HLL-mode sketch is written as a union result: out of
/// order, kxq0 and kxq1 summed over the registers in index order (as a union computes
/// them), so batching and redelivery cannot move the estimate.
fn canonical_bytes(sketch: &HllSketch) -> Vec<u8> {
    let mut bytes = sketch.serialize();
    if bytes.len() < REGISTERS_AT || bytes[MODE_BYTE] & 3 != HLL_MODE {
        return bytes;
    }
    let (mut kxq0, mut kxq1) = (0.0f64, 0.0f64);
    for &register in &bytes[REGISTERS_AT..] {
        match register {
            0..32 => kxq0 += 1.0 / (1u64 << register) as f64,
            _ => kxq1 += 1.0 / (1u64 << register.min(63)) as f64,
        }
    }
    bytes[FLAGS_BYTE] |= OUT_OF_ORDER_FLAG;
    // Unused out of order; a union result keeps none.
    bytes[HIP_AT..HIP_AT + 8].copy_from_slice(&0f64.to_le_bytes());
    bytes[KXQ0_AT..KXQ0_AT + 8].copy_from_slice(&kxq0.to_le_bytes());
    bytes[KXQ1_AT..KXQ1_AT + 8].copy_from_slice(&kxq1.to_le_bytes());
    bytes
}

/// The estimate of the canonical sketch ([`canonical_bytes`]).
fn canonical_estimate(sketch: &HllSketch) -> f64 {
    HllSketch::deserialize(&canonical_bytes(sketch))
        .map_or_else(|_| sketch.estimate(), |s| s.estimate())
}

/// The JSON bytes of the stored text at most: base64 of the largest serialization.
pub const MAX_TEXT_BYTES: usize = MAX_SERIALIZED_BYTES.div_ceil(3) * 4 + 2;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sketch_of(values: &[i64]) -> DistinctSketch {
        let mut s = DistinctSketch::default();
        for &v in values {
            s.add(&Value::BigInt(v));
        }
        s
    }

    #[test]
    fn small_counts_are_exact_and_large_ones_within_four_standard_errors() {
        for n in [0, 1, 2, 10, 100, 300] {
            let values: Vec<i64> = (0..n).chain(0..n).collect();
            assert_eq!(sketch_of(&values).estimate(), n, "n {n}");
        }
        for n in [1_000i64, 10_000, 200_000] {
            let s = sketch_of(&(0..n).collect::<Vec<_>>());
            let error = (s.estimate() - n).abs() as f64 / n as f64;
            assert!(
                error <= 4.0 * RELATIVE_STANDARD_ERROR,
                "n {n}: {}",
                s.estimate()
            );
        }
    }

    #[test]
    fn the_largest_sketch_reads_back_within_its_bound() {
        let s = sketch_of(&(0..100_000).collect::<Vec<_>>());
        let text = s.to_text();
        assert!(
            text.len() + 2 <= MAX_TEXT_BYTES,
            "{} > {MAX_TEXT_BYTES}",
            text.len()
        );
        let back = DistinctSketch::from_text(&text).expect("reads");
        assert_eq!((back.estimate(), back.to_text()), (s.estimate(), text));
        assert!(DistinctSketch::from_text("not base64!").is_err());
        assert!(DistinctSketch::from_text("AAAA").is_err());
        let other = HllSketch::new(10, HllType::Hll4);
        let text = base64::engine::general_purpose::STANDARD.encode(other.serialize());
        assert!(DistinctSketch::from_text(&text).is_err(), "another lg_k");
    }

    proptest! {
        /// However the values are split, merged and repeated, the merged sketch gives the
        /// estimate of all of them.
        #[test]
        fn merging_gives_the_estimate_of_all_values(
            values in prop::collection::vec(0i64..5_000, 0..3_000),
            split in 0usize..3_000,
        ) {
            let split = split.min(values.len());
            let (a, b) = values.split_at(split);
            let mut merged = sketch_of(b);
            merged.merge(&sketch_of(a));
            merged.merge(&sketch_of(&a[..a.len() / 2]));
            let mut other_way = sketch_of(a);
            other_way.merge(&sketch_of(b));
            prop_assert_eq!(merged.estimate(), other_way.estimate());
            let mut all = DistinctSketch::default();
            all.merge(&sketch_of(&values));
            prop_assert_eq!(merged.estimate(), all.estimate());
        }
    }
}
