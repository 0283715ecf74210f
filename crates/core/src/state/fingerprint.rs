//! 64-bit fingerprints of event ids, and the sorted set the anchor item keeps.
//!
//! Collisions: with n ids in one anchor window the chance of any collision is about
//! n^2 / 2^65; for 10^5 events in one minute of one key that is 3e-10.

use md5::{Digest, Md5};

/// The first eight bytes of MD5(id): stable across versions, platforms and languages
/// (unlike `std`'s hasher), so stored sets stay valid after upgrades.
pub fn fingerprint(id: &str) -> u64 {
    let digest = Md5::digest(id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The whole MD5 of `bytes` as 32 lowercase hex digits: a stable digest of request
/// contents (the DynamoDB adapter derives `ClientRequestToken`s from it). Not for
/// secrets: it only has to tell different requests apart.
pub fn digest_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A sorted set of fingerprints, stored as packed big-endian bytes (8 per id).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FingerprintSet {
    sorted: Vec<u64>,
}

impl FingerprintSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    pub fn contains(&self, fp: u64) -> bool {
        self.sorted.binary_search(&fp).is_ok()
    }

    /// Inserts; returns false if it was already present.
    pub fn insert(&mut self, fp: u64) -> bool {
        match self.sorted.binary_search(&fp) {
            Ok(_) => false,
            Err(at) => {
                self.sorted.insert(at, fp);
                true
            }
        }
    }

    pub fn extend(&mut self, fps: impl IntoIterator<Item = u64>) {
        self.sorted.extend(fps);
        self.sorted.sort_unstable();
        self.sorted.dedup();
    }

    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.sorted.iter().copied()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.sorted.iter().flat_map(|fp| fp.to_be_bytes()).collect()
    }

    /// Decodes packed bytes; `None` if the length is not a multiple of 8.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() % 8 != 0 {
            return None;
        }
        let mut sorted: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                u64::from_be_bytes(b)
            })
            .collect();
        sorted.sort_unstable();
        sorted.dedup();
        Some(FingerprintSet { sorted })
    }

    /// Takes every fingerprint out, leaving the set empty.
    pub fn take(&mut self) -> FingerprintSet {
        std::mem::take(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_and_distinct() {
        // MD5("e1") = 4d4dd... ; pinned so a change of hash is caught.
        assert_eq!(fingerprint("e1"), fingerprint("e1"));
        assert_ne!(fingerprint("e1"), fingerprint("e2"));
        assert_eq!(fingerprint(""), 0xd41d8cd98f00b204);
        assert_eq!(digest_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_ne!(digest_hex(b"a"), digest_hex(b"b"));
    }

    #[test]
    fn set_round_trips_through_bytes() {
        let mut s = FingerprintSet::new();
        assert!(s.insert(5));
        assert!(s.insert(1));
        assert!(!s.insert(5));
        s.extend([9, 1, 3]);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![1, 3, 5, 9]);
        let back = FingerprintSet::from_bytes(&s.to_bytes()).expect("multiple of 8");
        assert_eq!(back, s);
        assert!(FingerprintSet::from_bytes(&[1, 2, 3]).is_none());
        assert!(s.contains(3) && !s.contains(4));
    }
}
