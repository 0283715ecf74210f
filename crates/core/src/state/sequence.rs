//! Kinesis sequence numbers are decimal strings of up to 56+ digits: more than `u128`
//! or a DynamoDB number holds. They compare by length, then lexicographically.
//!
//! A `SeqNo` is shared (`Arc<str>`): the aggregate stage gives every event of a record
//! the record's number and copies it into candidates, plans and high-water marks, so a
//! clone must not allocate.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SeqNo(Arc<str>);

impl Serialize for SeqNo {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// As a plain string, unchecked (what `#[serde(transparent)]` over a `String` did).
impl<'de> Deserialize<'de> for SeqNo {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Ok(SeqNo(Arc::from(s)))
    }
}

impl SeqNo {
    /// Accepts a non-empty string of ASCII digits; leading zeros are dropped so that
    /// comparison by length stays right.
    pub fn parse(s: &str) -> Option<SeqNo> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let trimmed = s.trim_start_matches('0');
        Some(SeqNo(Arc::from(if trimmed.is_empty() {
            "0"
        } else {
            trimmed
        })))
    }

    pub fn zero() -> SeqNo {
        SeqNo(Arc::from("0"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Ord for SeqNo {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.as_bytes().cmp(other.0.as_bytes()))
    }
}

impl PartialOrd for SeqNo {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SeqNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn compares_by_length_then_lexicographically() {
        let s = |x: &str| SeqNo::parse(x).expect("digits");
        assert!(s("9") < s("10"));
        assert!(s("2") < s("10"));
        let real = "49590338271490256608559692538361571095921575989136588898";
        let next = "49590338271490256608559692538361571095921575989136588899";
        assert_eq!(real.len(), 56);
        assert!(s(real) < s(next));
        assert!(s("0049") == s("49"));
        assert!(SeqNo::parse("").is_none());
        assert!(SeqNo::parse("12a").is_none());
        assert!(SeqNo::parse("-1").is_none());
    }

    #[test]
    fn serializes_as_its_digits() {
        let s = SeqNo::parse("0049").expect("digits");
        let json = serde_json::to_string(&s).expect("serialize");
        assert_eq!(json, "\"49\"");
        assert_eq!(
            serde_json::from_str::<SeqNo>(&json).expect("deserialize"),
            s
        );
    }

    proptest! {
        #[test]
        fn agrees_with_numeric_order_where_u128_fits(a in any::<u128>(), b in any::<u128>()) {
            let (x, y) = (SeqNo::parse(&a.to_string()).expect("d"), SeqNo::parse(&b.to_string()).expect("d"));
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
        }

        #[test]
        fn is_a_total_order_on_long_strings(a in "[1-9][0-9]{0,70}", b in "[1-9][0-9]{0,70}", c in "[1-9][0-9]{0,70}") {
            let (x, y, z) = (SeqNo::parse(&a).expect("d"), SeqNo::parse(&b).expect("d"), SeqNo::parse(&c).expect("d"));
            if x <= y && y <= z { prop_assert!(x <= z); }
            prop_assert_eq!(x.cmp(&y), y.cmp(&x).reverse());
        }
    }
}
