//! The hard limits of Kinesis and DynamoDB that Sluice's requests can run into, and
//! the checks both the AWS adapters (before sending) and the in-memory adapters (before
//! changing any state) apply, so that `sluice demo` fails exactly where AWS would.
//! A broken limit is [`Error::LimitExceeded`]: the same request can never succeed.
//!
//! Sources (AWS API references): `PutRecords` takes up to 500 records, each up to 1 MiB
//! of data plus partition key, up to 5 MiB for the whole request including partition
//! keys; a partition key is 1 to 256 Unicode characters. A DynamoDB item is at most
//! 400 KB (1 KB = 1024 bytes: 409,600 bytes) of attribute names plus values;
//! `TransactWriteItems` groups up to 100 actions on distinct items, at most 4 MB in
//! all; `BatchGetItem` takes up to 100 keys and answers with at most 16 MB, returning
//! the rest as `UnprocessedKeys` (a partial result, not an error).

use crate::error::{Error, Result};

/// Kinesis Data Streams limits and checks.
pub mod kinesis {
    use super::*;
    use crate::input::record::OutRecord;

    pub const SERVICE: &str = "kinesis";
    pub const PUT_RECORDS: &str = "PutRecords";
    /// One record: data plus partition key (UTF-8 bytes), with the default stream
    /// maximum record size.
    pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
    /// Partition key length in Unicode characters (at least 1).
    pub const MAX_PARTITION_KEY_CHARS: usize = 256;
    pub const MAX_RECORDS_PER_REQUEST: usize = 500;
    /// A whole `PutRecords` request: data plus partition keys.
    pub const MAX_REQUEST_BYTES: usize = 5 * 1024 * 1024;

    pub const LIMIT_RECORD_BYTES: &str = "record size in bytes (data + partition key)";
    pub const LIMIT_PARTITION_KEY: &str = "partition key length in characters";
    pub const LIMIT_RECORDS: &str = "records per request";
    pub const LIMIT_REQUEST_BYTES: &str = "request size in bytes (data + partition keys)";

    /// What a record counts against the record and request limits.
    pub fn record_bytes(r: &OutRecord) -> usize {
        r.data.len() + r.partition_key.len()
    }

    fn exceeded(limit: &'static str, max: usize, actual: usize) -> Error {
        Error::LimitExceeded {
            service: SERVICE,
            operation: PUT_RECORDS,
            limit,
            max,
            actual,
        }
    }

    /// One record on its own: a partition key of 1..=256 characters, at most 1 MiB
    /// with its key. An empty key is a validation error, not a limit (non-retryable
    /// [`Error::Remote`]).
    pub fn check_record(r: &OutRecord) -> Result<()> {
        if r.partition_key.is_empty() {
            return Err(Error::Remote {
                service: SERVICE,
                operation: PUT_RECORDS,
                message: "a record has an empty partition key (1 to 256 characters needed)".into(),
                retryable: false,
                source: None,
            });
        }
        let chars = r.partition_key.chars().count();
        if chars > MAX_PARTITION_KEY_CHARS {
            return Err(exceeded(
                LIMIT_PARTITION_KEY,
                MAX_PARTITION_KEY_CHARS,
                chars,
            ));
        }
        let bytes = record_bytes(r);
        if bytes > MAX_RECORD_BYTES {
            return Err(exceeded(LIMIT_RECORD_BYTES, MAX_RECORD_BYTES, bytes));
        }
        Ok(())
    }

    /// One `PutRecords` request: every record, the record count and the total size.
    pub fn check_request<'a>(records: impl IntoIterator<Item = &'a OutRecord>) -> Result<()> {
        let (mut count, mut bytes) = (0usize, 0usize);
        for r in records {
            check_record(r)?;
            count += 1;
            bytes += record_bytes(r);
        }
        if count > MAX_RECORDS_PER_REQUEST {
            return Err(exceeded(LIMIT_RECORDS, MAX_RECORDS_PER_REQUEST, count));
        }
        if bytes > MAX_REQUEST_BYTES {
            return Err(exceeded(LIMIT_REQUEST_BYTES, MAX_REQUEST_BYTES, bytes));
        }
        Ok(())
    }

    /// Cuts `indices` (into `records`) into requests within the count and byte
    /// limits, keeping their order. Each record must pass [`check_record`] first.
    pub fn requests(records: &[OutRecord], indices: &[usize]) -> Vec<Vec<usize>> {
        let mut out: Vec<Vec<usize>> = Vec::new();
        let mut current: Vec<usize> = Vec::new();
        let mut bytes = 0usize;
        for &i in indices {
            let size = record_bytes(&records[i]);
            if !current.is_empty()
                && (current.len() == MAX_RECORDS_PER_REQUEST || bytes + size > MAX_REQUEST_BYTES)
            {
                out.push(std::mem::take(&mut current));
                bytes = 0;
            }
            current.push(i);
            bytes += size;
        }
        if !current.is_empty() {
            out.push(current);
        }
        out
    }
}

/// DynamoDB limits, item sizing and checks.
pub mod dynamodb {
    use super::*;
    use crate::state::item::WATERMARK_SORT_KEY;
    use crate::state::item::{ItemWrite, WatermarkWrite};

    pub const SERVICE: &str = "dynamodb";
    /// 400 KB, DynamoDB's KB being 1024 bytes.
    pub const MAX_ITEM_BYTES: usize = 400 * 1024;
    pub const MAX_TRANSACTION_ACTIONS: usize = 100;
    /// 4 MB of items in one `TransactWriteItems`.
    pub const MAX_TRANSACTION_BYTES: usize = 4 * 1024 * 1024;
    pub const MAX_BATCH_GET_KEYS: usize = 100;
    /// Key attribute values: partition key 2048 bytes, sort key 1024 bytes.
    pub const MAX_PARTITION_KEY_BYTES: usize = 2048;
    pub const MAX_SORT_KEY_BYTES: usize = 1024;
    /// One `BatchGetItem` answer; past it the rest comes back as `UnprocessedKeys`.
    pub const MAX_BATCH_GET_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

    pub const LIMIT_ITEM_BYTES: &str = "item size in bytes";
    pub const LIMIT_ACTIONS: &str = "actions per transaction";
    pub const LIMIT_TRANSACTION_BYTES: &str = "transaction size in bytes";
    pub const LIMIT_ACTIONS_PER_ITEM: &str = "actions on one item per transaction";
    pub const LIMIT_BATCH_GET_KEYS: &str = "keys per request";
    pub const LIMIT_PARTITION_KEY_BYTES: &str = "partition key size in bytes";
    pub const LIMIT_SORT_KEY_BYTES: &str = "sort key size in bytes";

    // Number sizing lives in `crate::state::attr_size`, aggregate-item sizing with the items
    // (`crate::state::item`): re-exported here, where the adapters have always found them.
    pub(crate) use crate::state::attr_size::int_size;
    pub use crate::state::attr_size::{
        FLUSH_BELOW, MAX_F64_BYTES, MAX_NUMBER_MAGNITUDE, MAX_U64_BYTES, f64_size, number_size,
        number_text,
    };
    pub use crate::state::item::{
        aggregate_item_size, aggregate_item_size_bound, page_size, watermark_size,
    };

    /// The stored size of a flat JSON object written as an item the way the AWS
    /// codec's `json_to_attrs` writes it (alerts, rules): strings `S`, integers `N`,
    /// other numbers as [`f64_size`], booleans 1 byte, nulls left out, arrays and
    /// objects as their JSON text in `S`.
    pub fn json_item_size(v: &serde_json::Value) -> usize {
        use serde_json::Value;
        let Value::Object(map) = v else {
            return 0;
        };
        map.iter()
            .map(|(name, v)| {
                name.len()
                    + match v {
                        Value::Null => return 0,
                        Value::Bool(_) => 1,
                        Value::String(x) => x.len(),
                        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                            (Some(i), _, _) => int_size(i),
                            (_, Some(u), _) => int_size(u),
                            (_, _, Some(f)) => f64_size(f),
                            _ => n.to_string().len(),
                        },
                        other => other.to_string().len(),
                    }
            })
            .sum()
    }

    /// The size of a numeric attribute `name` holding the integer `x`.
    pub fn int_attribute_size(name: &str, x: i64) -> usize {
        name.len() + int_size(x)
    }

    /// One write of a commit, as the limits see it: the item's key and stored size.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct ActionSize {
        pub pk: String,
        pub sk: String,
        pub bytes: usize,
    }

    /// Every action of an aggregate commit, in the order the adapters send them: each
    /// item, its sealed pages, then the watermark.
    pub fn commit_actions(
        writes: &[ItemWrite],
        watermark: Option<&WatermarkWrite>,
    ) -> Vec<ActionSize> {
        let mut out = Vec::new();
        for w in writes {
            let key = &w.item.key;
            out.push(ActionSize {
                pk: key.pk(),
                sk: key.sk(),
                bytes: aggregate_item_size(&w.item),
            });
            for (n, page) in &w.sealed_page {
                out.push(ActionSize {
                    pk: key.pk(),
                    sk: key.page_sk(*n),
                    bytes: page_size(key, *n, page, w.item.expires_at_s),
                });
            }
        }
        if let Some(wm) = watermark {
            out.push(ActionSize {
                pk: wm.watermark.group.partition_key(),
                sk: WATERMARK_SORT_KEY.to_owned(),
                bytes: watermark_size(&wm.watermark),
            });
        }
        out
    }

    fn exceeded(operation: &'static str, limit: &'static str, max: usize, actual: usize) -> Error {
        Error::LimitExceeded {
            service: SERVICE,
            operation,
            limit,
            max,
            actual,
        }
    }

    /// The key of one written item (partition key 2048 bytes, sort key 1024 bytes).
    pub fn check_key(operation: &'static str, pk: &str, sk: &str) -> Result<()> {
        if pk.len() > MAX_PARTITION_KEY_BYTES {
            return Err(exceeded(
                operation,
                LIMIT_PARTITION_KEY_BYTES,
                MAX_PARTITION_KEY_BYTES,
                pk.len(),
            ));
        }
        if sk.len() > MAX_SORT_KEY_BYTES {
            return Err(exceeded(
                operation,
                LIMIT_SORT_KEY_BYTES,
                MAX_SORT_KEY_BYTES,
                sk.len(),
            ));
        }
        Ok(())
    }

    /// One item written on its own (`PutItem`).
    pub fn check_item(operation: &'static str, bytes: usize) -> Result<()> {
        if bytes > MAX_ITEM_BYTES {
            return Err(exceeded(operation, LIMIT_ITEM_BYTES, MAX_ITEM_BYTES, bytes));
        }
        Ok(())
    }

    /// The actions of one write request: a single action is a `PutItem` (item size
    /// only); more are one `TransactWriteItems` (action count, distinct items, item
    /// sizes, total size), checked in that order.
    pub fn check_actions(actions: &[ActionSize]) -> Result<()> {
        const TX: &str = "TransactWriteItems";
        match actions {
            [] => Ok(()),
            [one] => {
                check_key("PutItem", &one.pk, &one.sk)?;
                check_item("PutItem", one.bytes)
            }
            many => {
                if many.len() > MAX_TRANSACTION_ACTIONS {
                    return Err(exceeded(
                        TX,
                        LIMIT_ACTIONS,
                        MAX_TRANSACTION_ACTIONS,
                        many.len(),
                    ));
                }
                let mut per_item: std::collections::BTreeMap<(&str, &str), usize> =
                    std::collections::BTreeMap::new();
                for a in many {
                    *per_item.entry((&a.pk, &a.sk)).or_default() += 1;
                }
                if let Some(n) = per_item.values().copied().find(|n| *n > 1) {
                    return Err(exceeded(TX, LIMIT_ACTIONS_PER_ITEM, 1, n));
                }
                for a in many {
                    check_key(TX, &a.pk, &a.sk)?;
                    check_item(TX, a.bytes)?;
                }
                let total: usize = many.iter().map(|a| a.bytes).sum();
                if total > MAX_TRANSACTION_BYTES {
                    return Err(exceeded(
                        TX,
                        LIMIT_TRANSACTION_BYTES,
                        MAX_TRANSACTION_BYTES,
                        total,
                    ));
                }
                Ok(())
            }
        }
    }

    /// [`check_actions`] of an aggregate commit.
    pub fn check_commit(writes: &[ItemWrite], watermark: Option<&WatermarkWrite>) -> Result<()> {
        check_actions(&commit_actions(writes, watermark))
    }

    /// Cuts keys into `BatchGetItem` requests of at most 100 keys, and each answer at
    /// 16 MB (what does not fit comes back as `UnprocessedKeys` and is asked for
    /// again): returns how many requests reading items of these sizes takes, in order
    /// (`None`: the key is absent, which costs nothing in the answer).
    pub fn batch_get_requests(sizes: &[Option<usize>]) -> usize {
        let mut requests = 0;
        for chunk in sizes.chunks(MAX_BATCH_GET_KEYS) {
            let mut pending: Vec<usize> = chunk.iter().map(|s| s.unwrap_or(0)).collect();
            while !pending.is_empty() {
                requests += 1;
                let mut answered = 0usize;
                let mut rest = Vec::new();
                for (i, size) in pending.iter().copied().enumerate() {
                    // At least one item per answer: an item is at most 400 KB.
                    if i > 0 && answered + size > MAX_BATCH_GET_RESPONSE_BYTES {
                        rest.push(size);
                    } else {
                        answered += size;
                    }
                }
                pending = rest;
            }
        }
        requests
    }
}

#[cfg(test)]
mod tests {
    use super::dynamodb::*;
    use super::kinesis;
    use crate::input::record::OutRecord;

    #[test]
    fn numbers_are_sized_by_significant_digits() {
        assert_eq!(number_size("0"), 2);
        assert_eq!(number_size("7"), 2);
        assert_eq!(number_size("1767225600000"), 5, "trailing zeroes trimmed");
        assert_eq!(number_size("-1.5e0"), 2);
        assert_eq!(number_size("0.00025"), 2, "leading zeroes trimmed");
        assert_eq!(number_size("123456789"), 6);
        assert_eq!(f64_size(f64::INFINITY), "inf".len(), "written as S");
        assert_eq!(f64_size(1e200), "1e200".len());
        assert_eq!(number_size("100.0100"), 4, "zeroes inside count");
        assert_eq!(number_size("-0.000"), 2);
    }

    proptest::proptest! {
        /// Sizing on the stack gives what sizing the codec's text gives.
        #[test]
        fn f64_size_is_the_size_of_the_written_text(bits in proptest::prelude::any::<u64>()) {
            let x = f64::from_bits(bits);
            let expected = match number_text(x) {
                Some(n) => number_size(&n),
                None => format!("{x:e}").len(),
            };
            proptest::prop_assert_eq!(f64_size(x), expected, "{:e}", x);
        }

        /// Counting in place gives what trimming a collected digit string gives.
        #[test]
        fn sizes_counted_without_fmt_match_the_formatted_ones(bits in proptest::prelude::any::<u64>(), n in proptest::prelude::any::<i64>(), u in proptest::prelude::any::<u64>(), scale in 0u32..19) {
            let x = f64::from_bits(bits);
            let formatted = if !x.is_finite() || x.abs() >= MAX_NUMBER_MAGNITUDE {
                format!("{x:e}").len()
            } else if x.abs() < FLUSH_BELOW {
                number_size("0")
            } else {
                number_size(&format!("{x:e}"))
            };
            proptest::prop_assert_eq!(f64_size(x), formatted, "{}", x);
            let round = (n / 10i64.pow(scale)) * 10i64.pow(scale);
            for i in [n, round, 0, -1, i64::MIN, i64::MAX] {
                proptest::prop_assert_eq!(crate::state::limits::dynamodb::int_size(i), number_size(&i.to_string()), "{}", i);
            }
            proptest::prop_assert_eq!(crate::state::limits::dynamodb::int_size(u), number_size(&u.to_string()));
            proptest::prop_assert_eq!(crate::state::limits::dynamodb::int_size(u as usize), number_size(&u.to_string()));
        }

        #[test]
        fn number_size_counts_like_trimming_the_digits(text in "-?[0-9]{0,20}(\\.[0-9]{0,20})?([eE]-?[0-9]{1,3})?") {
            let mantissa = text.split(['e', 'E']).next().unwrap_or_default();
            let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
            let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
            proptest::prop_assert_eq!(number_size(&text), significant.max(1).div_ceil(2) + 1);
        }
    }

    fn item_with(
        key: &str,
        window: crate::state::window::WindowSpec,
        start_ms: i64,
    ) -> crate::state::item::AggregateItem {
        use crate::state::item::{AggregateItem, GroupKey, ItemKey};
        AggregateItem::new(ItemKey {
            group: GroupKey {
                key: key.into(),
                metric: "temperature".into(),
            },
            window,
            start_ms,
        })
    }

    #[test]
    fn an_item_is_sized_attribute_by_attribute() {
        let mut item = item_with(
            "sensor-001",
            crate::state::window::WindowSpec::tumbling(60),
            1_767_225_660_000,
        );
        item.version = 3;
        item.state.count = 12;
        item.state.sum = 1.5;
        item.state.min = 0.25;
        item.state.max = 1.25;
        item.expires_at_s = Some(1_769_817_660);
        let want = [
            ("pk", "temperature#sensor-001".len()),
            ("sk", "60#2026-01-01T00:01:00Z".len()),
            ("key", 10),
            ("type", 11),
            ("window_seconds", 2),
            ("slide_seconds", 2),
            ("window_start", 20),
            ("window_start_ms", 6), // 1767225660000: 9 significant digits
            ("count", 2),
            ("sum", 2),
            ("sum_comp", 2),
            ("min", 2),
            ("max", 3), // 1.25e0: 3 digits
            ("mean", 2),
            ("m2", 2),
            ("version", 2),
            ("expires_at", 6),
        ];
        let total: usize = want.iter().map(|(n, v)| n.len() + v).sum();
        assert_eq!(aggregate_item_size(&item), total);
        assert_eq!(item.stored_size(), total, "one sizing function");
    }

    #[test]
    fn page_and_watermark_sizes_are_the_limits_sizes() {
        use crate::state::fingerprint::FingerprintSet;
        use crate::state::item::{GroupWatermark, page_stored_size};
        let item = item_with("k", crate::state::window::WindowSpec::tumbling(60), 0);
        let mut set = FingerprintSet::new();
        set.extend(0..100);
        let bound = page_stored_size(&item.key, &set);
        for page in [1, 999_999, 1_000_000, u32::MAX] {
            for at in [
                None,
                Some(0),
                Some(1_900_000_000),
                Some(i64::MIN),
                Some(i64::MAX),
            ] {
                assert!(
                    page_size(&item.key, page, &set, at) <= bound,
                    "{page} {at:?}"
                );
            }
        }
        assert_eq!(
            page_size(&item.key, u32::MAX, &set, Some(i64::MAX)),
            bound,
            "the bound is reached"
        );
        let mut wm = GroupWatermark {
            group: item.key.group.clone(),
            watermark_ms: 1_767_225_660_000,
            closed_from_ms: 1_767_225_600_000,
            last_record: None,
            version: 7,
        };
        assert_eq!(wm.stored_size(), watermark_size(&wm));
        let bare = watermark_size(&wm);
        wm.last_record = Some((
            "shardId-000000000000".into(),
            crate::state::sequence::SeqNo::parse("49").expect("digits"),
        ));
        assert_eq!(
            watermark_size(&wm),
            bare + "last_shard".len() + 20 + "last_seq".len() + 2
        );
    }

    #[test]
    fn the_widest_numbers_are_the_documented_maxima() {
        for x in [
            f64::MAX,
            f64::MIN,
            -1.234_567_890_123_456_7e125,
            f64::NEG_INFINITY,
            f64::NAN,
            f64::MIN_POSITIVE,
        ] {
            assert!(f64_size(x) <= MAX_F64_BYTES, "{x:e}");
        }
        assert_eq!(f64_size(f64::MIN), MAX_F64_BYTES, "-1.7976931348623157e308");
        assert_eq!(number_size(&u64::MAX.to_string()), MAX_U64_BYTES);
    }

    proptest::proptest! {
        /// The planner's bound of an item is never below its stored size, whatever
        /// the counts and version, and never more than 144 bytes above it.
        #[test]
        fn the_item_bound_holds_for_any_state(
            bits in proptest::collection::vec(proptest::prelude::any::<u64>(), 6),
            count in proptest::prelude::any::<u64>(),
            version in proptest::prelude::any::<u64>(),
            start in -8_000_000_000_000i64..8_000_000_000_000,
            expires in proptest::option::of(proptest::prelude::any::<i64>()),
            fps in 0usize..50,
            pages in 0u32..3,
            hopping in proptest::prelude::any::<bool>(),
        ) {
            let window = if hopping {
                crate::state::window::WindowSpec::hopping(3600, 600)
            } else {
                crate::state::window::WindowSpec::tumbling(60)
            };
            let mut item = item_with("sensor-ü", window, start);
            let floats: Vec<f64> = bits.iter().map(|b| f64::from_bits(*b)).collect();
            item.state.count = count;
            item.state.sum = floats[0];
            item.state.sum_comp = floats[1];
            item.state.min = floats[2];
            item.state.max = floats[3];
            item.state.mean = floats[4];
            item.state.m2 = floats[5];
            item.version = version;
            item.expires_at_s = expires;
            item.fingerprints.extend(0..fps as u64);
            item.sealed_pages = pages;
            let size = aggregate_item_size(&item);
            let bound = aggregate_item_size_bound(&item);
            proptest::prop_assert!(size <= bound, "{size} > {bound}");
            proptest::prop_assert!(bound - size <= 144, "{size} vs {bound}");
            for x in floats {
                proptest::prop_assert!(f64_size(x) <= MAX_F64_BYTES, "{x:e}");
            }
        }
    }

    #[test]
    fn key_sizes_are_checked_for_every_action() {
        let action = |pk: usize, sk: usize| ActionSize {
            pk: "p".repeat(pk),
            sk: "s".repeat(sk),
            bytes: 10,
        };
        assert!(check_actions(&[action(2048, 1024)]).is_ok());
        let err = check_actions(&[action(1, 1), action(2, 1025)]).expect_err("sort key");
        assert!(
            matches!(
                err,
                crate::Error::LimitExceeded {
                    limit: LIMIT_SORT_KEY_BYTES,
                    max: 1024,
                    actual: 1025,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(check_actions(&[action(2049, 1)]).is_err());
    }

    #[test]
    fn batch_gets_split_at_100_keys_and_16_mb() {
        assert_eq!(batch_get_requests(&[]), 0);
        assert_eq!(batch_get_requests(&vec![Some(1000); 100]), 1);
        assert_eq!(batch_get_requests(&vec![Some(1000); 101]), 2);
        assert_eq!(batch_get_requests(&vec![None; 250]), 3);
        // 100 items of 300 KB: 54 fit in 16 MB, the rest in a second answer.
        assert_eq!(batch_get_requests(&vec![Some(300 * 1024); 100]), 2);
        assert_eq!(batch_get_requests(&vec![Some(MAX_ITEM_BYTES); 100]), 3);
    }

    #[test]
    fn request_split_keeps_order_within_count_and_bytes() {
        let big = vec![0u8; kinesis::MAX_RECORD_BYTES - 10];
        let records: Vec<OutRecord> = (0..12)
            .map(|i| OutRecord {
                partition_key: format!("key{i:02}"),
                data: big.clone(),
            })
            .collect();
        let idx: Vec<usize> = (0..records.len()).collect();
        let reqs = kinesis::requests(&records, &idx);
        assert_eq!(reqs.iter().map(Vec::len).collect::<Vec<_>>(), vec![5, 5, 2]);
        assert_eq!(reqs.concat(), idx);
        for r in &reqs {
            assert!(kinesis::check_request(r.iter().map(|&i| &records[i])).is_ok());
        }
    }
}
