//! Kinesis sequence numbers are decimal strings of up to 56+ digits: more than `u128`
//! or a DynamoDB number holds. They compare by length, then lexicographically.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SeqNo(String);

impl SeqNo {
    /// Accepts a non-empty string of ASCII digits; leading zeros are dropped so that
    /// comparison by length stays right.
    pub fn parse(s: &str) -> Option<SeqNo> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let trimmed = s.trim_start_matches('0');
        Some(SeqNo(
            if trimmed.is_empty() { "0" } else { trimmed }.to_owned(),
        ))
    }

    pub fn zero() -> SeqNo {
        SeqNo("0".to_owned())
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
