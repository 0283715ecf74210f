//! What real producers put in a Kinesis record before it is our envelope: Kinesis
//! Producer Library aggregates (many user records in one Kinesis record) and gzip
//! (CloudWatch Logs subscriptions, agents that compress). [`unpack`] turns one record's
//! bytes into the payloads that hold lines, or one [`Rejection`] for the whole record.
//!
//! Limits, and why:
//! - KPL aggregate (magic `F3 89 9A C2`, a protobuf `AggregatedRecord`, then the MD5 of
//!   that protobuf body): the MD5 must match and every index must point into its table,
//!   otherwise none of its user records can be trusted and the record is one
//!   `corrupt_aggregate`. An aggregate holding no user record is corrupt too (the
//!   reference libraries never write one), so nothing disappears without a trace.
//! - gzip (`1F 8B`, single or concatenated members): decompression stops after
//!   [`MAX_INFLATED_BYTES`] (6 MiB, Lambda's synchronous payload limit); a record that
//!   inflates further is `record_too_large`, one that does not inflate is `corrupt_gzip`.
//!   The cap bounds memory and time per record whatever the compression ratio.
//! - A replayed record ([`crate::input::replay`]) is unpacked as the original it carries
//!   was; frames do not nest (a frame inside a frame is a plain payload, `not_json`).
//! - Unpacking is one level deep: user records of an aggregate and inflated payloads are
//!   decoded as JSON lines, never unpacked again (a nested aggregate or a gzip inside an
//!   aggregate is `not_utf8`, dead-lettered with its bytes).

use std::borrow::Cow;
use std::io::Read as _;

use md5::{Digest as _, Md5};
use prost::Message as _;

use crate::input::envelope::{MAX_RECORD_BYTES, Reason, Rejection};
use crate::input::replay::{self, ReplayPayload};

/// The first bytes of every KPL aggregated record.
pub const KPL_MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
/// The first bytes of every gzip member (RFC 1952).
pub const GZIP_MAGIC: [u8; 2] = [0x1F, 0x8B];
/// The most a gzip record may inflate to: Lambda's 6 MiB synchronous payload limit.
pub const MAX_INFLATED_BYTES: usize = 6 * 1024 * 1024;
const MD5_LEN: usize = 16;

/// The KPL wire format (`messages.proto` of the Kinesis Producer Library, proto2).
/// prost does not enforce `required`; the checks in [`unpack_aggregate`] do what matters.
#[derive(Clone, PartialEq, prost::Message)]
struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    records: Vec<KplRecord>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct KplRecord {
    #[prost(uint64, required, tag = "1")]
    partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "vec", required, tag = "3")]
    data: Vec<u8>,
    #[prost(message, repeated, tag = "4")]
    tags: Vec<KplTag>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct KplTag {
    #[prost(string, required, tag = "1")]
    key: String,
    #[prost(string, optional, tag = "2")]
    value: Option<String>,
}

/// One user record of a KPL aggregate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    /// The partition key the producer gave this user record.
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// A record's bytes, ready to be split into lines.
#[derive(Debug, PartialEq, Eq)]
pub enum Unpacked<'a> {
    /// Plain bytes: the record itself, or what a gzip record inflated to.
    Plain(Cow<'a, [u8]>),
    /// The user records of a KPL aggregate, in order (their index is the sub-sequence
    /// number the KPL assigns).
    Aggregate(Vec<UserRecord>),
    /// Lines of a replayed record: lines of the original's payload `sub`, the first of
    /// them being line `first_line` there.
    Lines {
        sub: Option<usize>,
        first_line: usize,
        bytes: &'a [u8],
    },
}

/// One payload of a record: the bytes that hold lines, and where they stood in the
/// original record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Payload<'a> {
    /// The user record's index in a KPL aggregate (`None`: the record's own payload).
    pub sub: Option<usize>,
    /// The index of the payload's first line (not 0 only for replayed lines).
    pub first_line: usize,
    pub bytes: &'a [u8],
}

impl Unpacked<'_> {
    /// The payloads, in order.
    pub fn payloads(&self) -> Vec<Payload<'_>> {
        match self {
            Unpacked::Plain(bytes) => vec![Payload {
                sub: None,
                first_line: 0,
                bytes: bytes.as_ref(),
            }],
            Unpacked::Aggregate(users) => users
                .iter()
                .enumerate()
                .map(|(i, u)| Payload {
                    sub: Some(i),
                    first_line: 0,
                    bytes: u.data.as_slice(),
                })
                .collect(),
            Unpacked::Lines {
                sub,
                first_line,
                bytes,
            } => vec![Payload {
                sub: *sub,
                first_line: *first_line,
                bytes,
            }],
        }
    }
}

/// Recognises a record's format and unpacks it. A record larger than a Kinesis record
/// (only files can hold one) is `record_too_large` before anything else looks at it.
pub fn unpack(data: &[u8]) -> Result<Unpacked<'_>, Rejection> {
    if data.len() > MAX_RECORD_BYTES {
        return Err(rejection(
            Reason::RecordTooLarge,
            format!(
                "record has {} bytes, the limit is {MAX_RECORD_BYTES}",
                data.len()
            ),
        ));
    }
    if let Some((frame, payload)) = replay::decode(data)? {
        return match frame.payload {
            ReplayPayload::Record => unpack_original(payload),
            ReplayPayload::Lines { sub, first_line } => Ok(Unpacked::Lines {
                sub,
                first_line,
                bytes: payload,
            }),
        };
    }
    unpack_original(data)
}

/// A record as its producer wrote it: a KPL aggregate, gzip or plain lines.
fn unpack_original(data: &[u8]) -> Result<Unpacked<'_>, Rejection> {
    if data.starts_with(&KPL_MAGIC) {
        return unpack_aggregate(data).map(Unpacked::Aggregate);
    }
    if data.starts_with(&GZIP_MAGIC) {
        return inflate(data, MAX_INFLATED_BYTES).map(|v| Unpacked::Plain(Cow::Owned(v)));
    }
    Ok(Unpacked::Plain(Cow::Borrowed(data)))
}

/// Checks the MD5 trailer, decodes the protobuf body and resolves partition keys.
pub fn unpack_aggregate(data: &[u8]) -> Result<Vec<UserRecord>, Rejection> {
    let corrupt = |detail: String| rejection(Reason::CorruptAggregate, detail);
    let Some(rest) = data.strip_prefix(&KPL_MAGIC) else {
        return Err(corrupt("missing the KPL magic bytes".into()));
    };
    if rest.len() < MD5_LEN {
        return Err(corrupt(format!(
            "aggregate has {} bytes after the magic, fewer than its 16-byte MD5 trailer",
            rest.len()
        )));
    }
    let (body, trailer) = rest.split_at(rest.len() - MD5_LEN);
    let digest = Md5::digest(body);
    if digest.as_slice() != trailer {
        return Err(corrupt(format!(
            "MD5 of the protobuf body is {}, the trailer says {}",
            hex(digest.as_slice()),
            hex(trailer)
        )));
    }
    let aggregate = AggregatedRecord::decode(body)
        .map_err(|e| corrupt(format!("protobuf body does not decode: {e}")))?;
    if aggregate.records.is_empty() {
        return Err(corrupt("aggregate holds no user records".into()));
    }
    let keys = &aggregate.partition_key_table;
    let hash_keys = aggregate.explicit_hash_key_table.len();
    let mut users = Vec::with_capacity(aggregate.records.len());
    for (i, record) in aggregate.records.into_iter().enumerate() {
        let partition_key = usize::try_from(record.partition_key_index)
            .ok()
            .and_then(|k| keys.get(k))
            .ok_or_else(|| {
                corrupt(format!(
                    "user record {i} has partition_key_index {}, the table has {} keys",
                    record.partition_key_index,
                    keys.len()
                ))
            })?;
        if let Some(h) = record.explicit_hash_key_index {
            if usize::try_from(h).map_or(true, |h| h >= hash_keys) {
                return Err(corrupt(format!(
                    "user record {i} has explicit_hash_key_index {h}, the table has {hash_keys} keys"
                )));
            }
        }
        users.push(UserRecord {
            partition_key: partition_key.clone(),
            data: record.data,
        });
    }
    Ok(users)
}

/// Inflates gzip (one or more members), never producing more than `cap` bytes.
pub fn inflate(data: &[u8], cap: usize) -> Result<Vec<u8>, Rejection> {
    let mut out = Vec::new();
    // Read one byte past the cap: reading exactly `cap` cannot tell "fits" from "more".
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::MultiGzDecoder::new(data)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| rejection(Reason::CorruptGzip, format!("gzip does not inflate: {e}")))?;
    if out.len() > cap {
        return Err(rejection(
            Reason::RecordTooLarge,
            format!(
                "gzip record of {} bytes inflates past {cap} bytes (the limit)",
                data.len()
            ),
        ));
    }
    Ok(out)
}

fn rejection(reason: Reason, detail: String) -> Rejection {
    Rejection {
        reason,
        field: None,
        detail,
        id: None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds a KPL aggregate the way the reference libraries do; for tests and for
/// `sluice produce`-style tools that want to exercise the format.
pub fn aggregate(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut keys: Vec<String> = Vec::new();
    let mut out = Vec::with_capacity(records.len());
    for (key, data) in records {
        let index = match keys.iter().position(|k| k == key) {
            Some(i) => i,
            None => {
                keys.push((*key).to_owned());
                keys.len() - 1
            }
        };
        out.push(KplRecord {
            partition_key_index: index as u64,
            explicit_hash_key_index: None,
            data: data.to_vec(),
            tags: Vec::new(),
        });
    }
    let body = AggregatedRecord {
        partition_key_table: keys,
        explicit_hash_key_table: Vec::new(),
        records: out,
    }
    .encode_to_vec();
    frame(&body)
}

/// Magic + body + MD5(body).
fn frame(body: &[u8]) -> Vec<u8> {
    let mut framed = KPL_MAGIC.to_vec();
    framed.extend_from_slice(body);
    framed.extend_from_slice(Md5::digest(body).as_slice());
    framed
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).expect("write");
        enc.finish().expect("finish")
    }

    fn reason(r: Result<Unpacked<'_>, Rejection>) -> Reason {
        r.expect_err("rejected").reason
    }

    #[test]
    fn plain_records_are_borrowed_untouched() {
        let data = br#"{"key":"a"}"#;
        assert_eq!(unpack(data), Ok(Unpacked::Plain(Cow::Borrowed(&data[..]))));
        assert_eq!(unpack(b""), Ok(Unpacked::Plain(Cow::Borrowed(&b""[..]))));
    }

    #[test]
    fn hand_built_aggregates_round_trip_with_their_keys() {
        let data = aggregate(&[("a", b"1"), ("b", b"2\n3"), ("a", b"")]);
        let Ok(Unpacked::Aggregate(users)) = unpack(&data) else {
            panic!("aggregate expected");
        };
        assert_eq!(
            users,
            [
                UserRecord {
                    partition_key: "a".into(),
                    data: b"1".to_vec()
                },
                UserRecord {
                    partition_key: "b".into(),
                    data: b"2\n3".to_vec()
                },
                UserRecord {
                    partition_key: "a".into(),
                    data: Vec::new()
                },
            ]
        );
    }

    #[test]
    fn explicit_hash_keys_and_tags_are_accepted() {
        let body = AggregatedRecord {
            partition_key_table: vec!["k".into()],
            explicit_hash_key_table: vec!["123".into()],
            records: vec![KplRecord {
                partition_key_index: 0,
                explicit_hash_key_index: Some(0),
                data: b"x".to_vec(),
                tags: vec![KplTag {
                    key: "t".into(),
                    value: None,
                }],
            }],
        }
        .encode_to_vec();
        let users = unpack_aggregate(&frame(&body)).expect("valid");
        assert_eq!(users[0].data, b"x");
    }

    #[test]
    fn an_md5_mismatch_is_a_corrupt_aggregate() {
        let mut data = aggregate(&[("a", b"1")]);
        let last = data.len() - 1;
        data[last] ^= 1;
        assert_eq!(reason(unpack(&data)), Reason::CorruptAggregate);
        // A flipped body byte is caught by the same check.
        let mut data = aggregate(&[("a", b"hello")]);
        data[6] ^= 0x40;
        assert_eq!(reason(unpack(&data)), Reason::CorruptAggregate);
    }

    #[test]
    fn truncated_aggregates_are_corrupt_at_every_length() {
        let data = aggregate(&[("a", b"one"), ("b", b"two")]);
        for len in KPL_MAGIC.len()..data.len() {
            assert_eq!(
                reason(unpack(&data[..len])),
                Reason::CorruptAggregate,
                "truncated to {len}"
            );
        }
    }

    #[test]
    fn out_of_range_indexes_and_garbage_bodies_are_corrupt() {
        let bad_key = AggregatedRecord {
            partition_key_table: vec!["k".into()],
            explicit_hash_key_table: vec![],
            records: vec![KplRecord {
                partition_key_index: 1,
                explicit_hash_key_index: None,
                data: b"x".to_vec(),
                tags: vec![],
            }],
        };
        let err = unpack_aggregate(&frame(&bad_key.encode_to_vec())).expect_err("bad index");
        assert!(
            err.detail.contains("partition_key_index 1"),
            "{}",
            err.detail
        );
        let mut bad_hash = bad_key.clone();
        bad_hash.records[0].partition_key_index = 0;
        bad_hash.records[0].explicit_hash_key_index = Some(u64::MAX);
        assert_eq!(
            unpack_aggregate(&frame(&bad_hash.encode_to_vec()))
                .expect_err("bad hash index")
                .reason,
            Reason::CorruptAggregate
        );
        // A valid MD5 over bytes that are not an AggregatedRecord.
        assert_eq!(
            reason(unpack(&frame(b"\xff\xff\xff\xff garbage"))),
            Reason::CorruptAggregate
        );
        // An empty aggregate would make its record vanish.
        assert_eq!(reason(unpack(&frame(b""))), Reason::CorruptAggregate);
        // Invalid UTF-8 in the key table.
        let mut body = Vec::new();
        prost::encoding::bytes::encode(1, &b"\xff".to_vec(), &mut body);
        assert_eq!(reason(unpack(&frame(&body))), Reason::CorruptAggregate);
    }

    #[test]
    fn nested_aggregates_stay_opaque_bytes() {
        let inner = aggregate(&[("a", b"1")]);
        let outer = aggregate(&[("b", &inner)]);
        let users = unpack_aggregate(&outer).expect("valid");
        assert_eq!(users[0].data, inner, "one level only");
    }

    #[test]
    fn gzip_records_inflate_including_concatenated_members() {
        let data = gzip(b"{\"a\":1}\n");
        assert_eq!(
            unpack(&data),
            Ok(Unpacked::Plain(Cow::Owned(b"{\"a\":1}\n".to_vec())))
        );
        let mut two = gzip(b"1\n");
        two.extend(gzip(b"2\n"));
        assert_eq!(inflate(&two, 100).expect("valid"), b"1\n2\n");
    }

    #[test]
    fn corrupt_gzip_is_rejected() {
        let mut data = gzip(&vec![b'x'; 10_000]);
        data.truncate(data.len() / 2);
        assert_eq!(reason(unpack(&data)), Reason::CorruptGzip);
        assert_eq!(reason(unpack(b"\x1f\x8b\x00garbage")), Reason::CorruptGzip);
        let mut crc = gzip(b"hello");
        let n = crc.len();
        crc[n - 6] ^= 1; // CRC32 trailer
        assert_eq!(reason(unpack(&crc)), Reason::CorruptGzip);
    }

    #[test]
    fn a_gzip_bomb_inflates_no_further_than_the_cap() {
        // 64 MiB of zeros compress to ~64 KiB: ten times the cap, well under 1 MiB.
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1024 * 1024];
        for _ in 0..64 {
            enc.write_all(&zeros).expect("write");
        }
        let bomb = enc.finish().expect("finish");
        assert!(bomb.len() < MAX_RECORD_BYTES);
        let err = unpack(&bomb).expect_err("too large");
        assert_eq!(err.reason, Reason::RecordTooLarge);
        assert!(err.detail.contains(&MAX_INFLATED_BYTES.to_string()));
        // Exactly at the cap is fine.
        assert_eq!(
            inflate(&gzip(&[7u8; 1000]), 1000).expect("fits").len(),
            1000
        );
        assert_eq!(
            inflate(&gzip(&[7u8; 1001]), 1000).expect_err("over").reason,
            Reason::RecordTooLarge
        );
    }

    #[test]
    fn oversize_raw_records_are_rejected_before_unpacking() {
        let mut data = KPL_MAGIC.to_vec();
        data.resize(MAX_RECORD_BYTES + 1, 0);
        assert_eq!(reason(unpack(&data)), Reason::RecordTooLarge);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

        /// Whatever follows the magic bytes, unpacking never panics.
        #[test]
        fn arbitrary_aggregates_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512), framed in proptest::prelude::any::<bool>()) {
            let data = if framed { frame(&body) } else { [&KPL_MAGIC[..], &body].concat() };
            let _ = unpack(&data);
            let gz = [&GZIP_MAGIC[..], &body].concat();
            let _ = unpack(&gz);
        }

        #[test]
        fn aggregates_round_trip(records in proptest::collection::vec(("[a-c]{1,3}", proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)), 1..20)) {
            let borrowed: Vec<(&str, &[u8])> = records.iter().map(|(k, d)| (k.as_str(), d.as_slice())).collect();
            let users = unpack_aggregate(&aggregate(&borrowed)).expect("valid");
            proptest::prop_assert_eq!(users.len(), records.len());
            for (u, (k, d)) in users.iter().zip(&records) {
                proptest::prop_assert_eq!(&u.partition_key, k);
                proptest::prop_assert_eq!(&u.data, d);
            }
        }
    }
}
