//! Conversions between domain values and DynamoDB attribute maps.
//!
//! ## Numbers
//! `f64` values are written as `N` in Rust's shortest round-trip scientific notation
//! (`format!("{:e}")`: `1.5e0`, `1e100`), never `{}` (which prints `1e100` as 101 digits;
//! DynamoDB keeps at most 38 significant digits and `{:e}` never needs more than 17).
//! Magnitudes below `1e-120` are written as `0` (DynamoDB's smallest is `1e-130`; this
//! also turns `-0.0` into `0`). Values DynamoDB cannot hold as a number (magnitude
//! `>= 1e126`, infinities, NaN) are written as `S` with the same notation (`"1e200"`,
//! `"inf"`, `"-inf"`, `"NaN"`): this happens to `m2` (a sum of squares) for values near
//! the accepted `1e100`, and to `min`/`max` of an empty state. Decoding accepts `N` or
//! `S` and uses `str::parse::<f64>`, which reads DynamoDB's normalised forms (`1E+100`)
//! too. Integers (`count`, `version`, `window_seconds`, epoch values) are written as plain
//! integers.
//!
//! The aggregate item layout is documented in [`super::aggregates`].

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Map, Number, Value};
use sluice_core::state::fingerprint::FingerprintSet;
use sluice_core::state::item::{
    AggregateItem, GroupKey, GroupWatermark, ItemKey, WATERMARK_SORT_KEY, columns_json,
};
use sluice_core::state::sequence::SeqNo;
use sluice_core::state::statistics::AggState;
use sluice_core::time::format_rfc3339;
use sluice_core::{Error, Result};

pub type Attrs = HashMap<String, AttributeValue>;

/// Aggregate item attribute names.
pub mod attr {
    pub const PK: &str = "pk";
    pub const SK: &str = "sk";
    pub const KEY: &str = "key";
    pub const TYPE: &str = "type";
    pub const WINDOW_SECONDS: &str = "window_seconds";
    pub const SLIDE_SECONDS: &str = "slide_seconds";
    pub const WINDOW_START: &str = "window_start";
    pub const WINDOW_START_MS: &str = "window_start_ms";
    pub const COUNT: &str = "count";
    pub const SUM: &str = "sum";
    pub const SUM_COMP: &str = "sum_comp";
    pub const MIN: &str = "min";
    pub const MAX: &str = "max";
    pub const MEAN: &str = "mean";
    pub const M2: &str = "m2";
    pub const VERSION: &str = "version";
    pub const FPS: &str = "fps";
    pub const FP_PAGES: &str = "fp_pages";
    pub const HWM: &str = "hwm";
    pub const EXPIRES_AT: &str = "expires_at";
    pub const WM: &str = "wm";
    pub const CLOSED_FROM: &str = "closed_from";
    pub const LAST_SHARD: &str = "last_shard";
    pub const LAST_SEQ: &str = "last_seq";
    /// A SQL view item's aggregate states (a JSON array).
    pub const COLS: &str = sluice_core::state::item::COLUMNS_ATTRIBUTE;

    /// Every attribute of an aggregate item but the fingerprint set (what queries read).
    pub const ALL_BUT_FPS: [&str; 21] = [
        COLS,
        PK,
        SK,
        KEY,
        TYPE,
        WINDOW_SECONDS,
        SLIDE_SECONDS,
        WINDOW_START,
        WINDOW_START_MS,
        COUNT,
        SUM,
        SUM_COMP,
        MIN,
        MAX,
        MEAN,
        M2,
        VERSION,
        FP_PAGES,
        HWM,
        EXPIRES_AT,
        WM,
    ];
}

/// The `N` text of `x`, or `None` when DynamoDB cannot store it as a number (shared
/// with the item sizing of [`sluice_core::state::limits::dynamodb`]).
pub use sluice_core::state::limits::dynamodb::number_text;

/// `N`, or `S` for what a DynamoDB number cannot hold (see the module docs).
pub fn f64_value(x: f64) -> AttributeValue {
    match number_text(x) {
        Some(n) => AttributeValue::N(n),
        None => AttributeValue::S(format!("{x:e}")),
    }
}

pub fn int_value(x: impl ToString) -> AttributeValue {
    AttributeValue::N(x.to_string())
}

pub fn s(x: impl Into<String>) -> AttributeValue {
    AttributeValue::S(x.into())
}

/// Reads an `f64` written by [`f64_value`] (or any DynamoDB number).
pub fn f64_of(v: &AttributeValue) -> Option<f64> {
    match v {
        AttributeValue::N(n) | AttributeValue::S(n) => n.trim().parse::<f64>().ok(),
        _ => None,
    }
}

/// Reads an integer; accepts DynamoDB's normalised forms of whole numbers (`1E+3`).
pub fn i64_of(v: &AttributeValue) -> Option<i64> {
    let AttributeValue::N(n) = v else {
        return None;
    };
    n.trim().parse::<i64>().ok().or_else(|| {
        let f = n.trim().parse::<f64>().ok()?;
        (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
    })
}

pub fn u64_of(v: &AttributeValue) -> Option<u64> {
    let AttributeValue::N(n) = v else {
        return None;
    };
    n.trim()
        .parse::<u64>()
        .ok()
        .or_else(|| i64_of(v).and_then(|i| u64::try_from(i).ok()))
}

pub fn str_of(v: &AttributeValue) -> Option<&str> {
    match v {
        AttributeValue::S(s) => Some(s),
        _ => None,
    }
}

/// The key map of an item of a table with `pk`/`sk`.
pub fn key(pk: impl Into<String>, sk: impl Into<String>) -> Attrs {
    HashMap::from([(attr::PK.to_owned(), s(pk)), (attr::SK.to_owned(), s(sk))])
}

pub fn item_key(k: &ItemKey) -> Attrs {
    key(k.pk(), k.sk())
}

/// The stored form of an aggregate item (layout in [`super::aggregates`]).
pub fn item_to_attrs(item: &AggregateItem) -> Attrs {
    let k = &item.key;
    let st = &item.state;
    let mut m = item_key(k);
    m.insert(attr::KEY.into(), s(&k.group.key));
    m.insert(attr::TYPE.into(), s(&k.group.metric));
    m.insert(attr::WINDOW_SECONDS.into(), int_value(k.window.size_secs()));
    m.insert(attr::SLIDE_SECONDS.into(), int_value(k.window.slide_secs()));
    m.insert(attr::WINDOW_START.into(), s(format_rfc3339(k.start_ms)));
    m.insert(attr::WINDOW_START_MS.into(), int_value(k.start_ms));
    m.insert(attr::COUNT.into(), int_value(st.count));
    m.insert(attr::SUM.into(), f64_value(st.sum));
    m.insert(attr::SUM_COMP.into(), f64_value(st.sum_comp));
    m.insert(attr::MIN.into(), f64_value(st.min));
    m.insert(attr::MAX.into(), f64_value(st.max));
    m.insert(attr::MEAN.into(), f64_value(st.mean));
    m.insert(attr::M2.into(), f64_value(st.m2));
    m.insert(attr::VERSION.into(), int_value(item.version));
    if !item.fingerprints.is_empty() {
        m.insert(
            attr::FPS.into(),
            AttributeValue::B(Blob::new(item.fingerprints.to_bytes())),
        );
    }
    if item.sealed_pages > 0 {
        m.insert(attr::FP_PAGES.into(), int_value(item.sealed_pages));
    }
    if !item.high_water.is_empty() {
        let hwm = item
            .high_water
            .iter()
            .map(|(shard, seq)| (shard.clone(), s(seq.as_str())))
            .collect();
        m.insert(attr::HWM.into(), AttributeValue::M(hwm));
    }
    if let Some(at) = item.expires_at_s {
        m.insert(attr::EXPIRES_AT.into(), int_value(at));
    }
    if !item.columns.is_empty() {
        m.insert(attr::COLS.into(), s(columns_json(&item.columns)));
    }
    m
}

/// Names an item in error messages: `pk/sk` as stored.
pub fn describe(m: &Attrs) -> String {
    let part = |name: &str| m.get(name).and_then(str_of).unwrap_or("?").to_owned();
    format!("{}/{}", part(attr::PK), part(attr::SK))
}

fn corrupt(m: &Attrs, reason: impl Into<String>) -> Error {
    Error::CorruptItem {
        item: describe(m),
        reason: reason.into(),
    }
}

fn required<'a>(m: &'a Attrs, name: &str) -> Result<&'a AttributeValue> {
    m.get(name)
        .ok_or_else(|| corrupt(m, format!("attribute {name:?} is missing")))
}

fn req_f64(m: &Attrs, name: &str) -> Result<f64> {
    let v = required(m, name)?;
    f64_of(v).ok_or_else(|| corrupt(m, format!("attribute {name:?} is not a number: {v:?}")))
}

fn req_u64(m: &Attrs, name: &str) -> Result<u64> {
    let v = required(m, name)?;
    u64_of(v).ok_or_else(|| {
        corrupt(
            m,
            format!("attribute {name:?} is not a whole number: {v:?}"),
        )
    })
}

/// Parses a stored aggregate item; anything malformed is [`Error::CorruptItem`].
pub fn attrs_to_item(m: &Attrs) -> Result<AggregateItem> {
    let pk = required(m, attr::PK)?
        .as_s()
        .map_err(|_| corrupt(m, "pk is not S"))?;
    let sk = required(m, attr::SK)?
        .as_s()
        .map_err(|_| corrupt(m, "sk is not S"))?;
    let key =
        ItemKey::parse(pk, sk).ok_or_else(|| corrupt(m, "pk/sk do not name a group and window"))?;
    let state = AggState {
        count: req_u64(m, attr::COUNT)?,
        sum: req_f64(m, attr::SUM)?,
        sum_comp: req_f64(m, attr::SUM_COMP)?,
        min: req_f64(m, attr::MIN)?,
        max: req_f64(m, attr::MAX)?,
        mean: req_f64(m, attr::MEAN)?,
        m2: req_f64(m, attr::M2)?,
    };
    let fingerprints = match m.get(attr::FPS) {
        None => FingerprintSet::new(),
        Some(AttributeValue::B(b)) => FingerprintSet::from_bytes(b.as_ref()).ok_or_else(|| {
            corrupt(
                m,
                format!("fps has {} bytes, not a multiple of 8", b.as_ref().len()),
            )
        })?,
        Some(other) => return Err(corrupt(m, format!("fps is not B: {other:?}"))),
    };
    let sealed_pages = match m.get(attr::FP_PAGES) {
        None => 0,
        Some(v) => u64_of(v)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| corrupt(m, format!("fp_pages is not a page count: {v:?}")))?,
    };
    let mut high_water = BTreeMap::new();
    match m.get(attr::HWM) {
        None => {}
        Some(AttributeValue::M(hwm)) => {
            for (shard, v) in hwm {
                let seq = str_of(v).and_then(SeqNo::parse).ok_or_else(|| {
                    corrupt(m, format!("hwm[{shard:?}] is not a sequence number: {v:?}"))
                })?;
                high_water.insert(shard.clone(), seq);
            }
        }
        Some(other) => return Err(corrupt(m, format!("hwm is not M: {other:?}"))),
    }
    let expires_at_s = match m.get(attr::EXPIRES_AT) {
        None => None,
        Some(v) => Some(
            i64_of(v)
                .ok_or_else(|| corrupt(m, format!("expires_at is not epoch seconds: {v:?}")))?,
        ),
    };
    let columns = match m.get(attr::COLS) {
        None => Vec::new(),
        Some(v) => str_of(v)
            .and_then(|text| serde_json::from_str(text).ok())
            .ok_or_else(|| corrupt(m, format!("cols is not a JSON array of states: {v:?}")))?,
    };
    Ok(AggregateItem {
        columns,
        key,
        version: req_u64(m, attr::VERSION)?,
        state,
        fingerprints,
        sealed_pages,
        high_water,
        expires_at_s,
    })
}

/// A sealed fingerprint page: anchor pk, `page_sk(n)`, the set, and the anchor's expiry.
pub fn page_to_attrs(
    anchor: &ItemKey,
    page: u32,
    set: &FingerprintSet,
    expires_at_s: Option<i64>,
) -> Attrs {
    let mut m = key(anchor.pk(), anchor.page_sk(page));
    m.insert(
        attr::FPS.into(),
        AttributeValue::B(Blob::new(set.to_bytes())),
    );
    if let Some(at) = expires_at_s {
        m.insert(attr::EXPIRES_AT.into(), int_value(at));
    }
    m
}

pub fn attrs_to_page(m: &Attrs) -> Result<FingerprintSet> {
    match required(m, attr::FPS)? {
        AttributeValue::B(b) => FingerprintSet::from_bytes(b.as_ref())
            .ok_or_else(|| corrupt(m, "fps length is not a multiple of 8")),
        other => Err(corrupt(m, format!("fps is not B: {other:?}"))),
    }
}

/// A group's watermark item: the group's `pk`, `sk = ~wm`, `wm`, `closed_from` (the
/// watermark before the commit that wrote it), the group's last record in that commit's
/// batch (`last_shard`, `last_seq`, both `S`: a sequence number is too long for `N`) and
/// `version`.
pub fn watermark_to_attrs(w: &GroupWatermark) -> Attrs {
    let mut m = key(w.group.partition_key(), WATERMARK_SORT_KEY);
    m.insert(attr::WM.into(), int_value(w.watermark_ms));
    m.insert(attr::CLOSED_FROM.into(), int_value(w.closed_from_ms));
    if let Some((shard, seq)) = &w.last_record {
        m.insert(attr::LAST_SHARD.into(), AttributeValue::S(shard.clone()));
        m.insert(
            attr::LAST_SEQ.into(),
            AttributeValue::S(seq.as_str().to_owned()),
        );
    }
    m.insert(attr::VERSION.into(), int_value(w.version));
    m
}

pub fn attrs_to_watermark(m: &Attrs) -> Result<GroupWatermark> {
    let pk = required(m, attr::PK)?
        .as_s()
        .map_err(|_| corrupt(m, "pk is not S"))?;
    let group =
        GroupKey::parse_partition_key(pk).ok_or_else(|| corrupt(m, "pk does not name a group"))?;
    let wm = required(m, attr::WM)?;
    let watermark_ms =
        i64_of(wm).ok_or_else(|| corrupt(m, format!("wm is not epoch milliseconds: {wm:?}")))?;
    // Written before closing ranges existed: nothing is pending.
    let closed_from_ms = match m.get(attr::CLOSED_FROM) {
        None => watermark_ms,
        Some(v) => i64_of(v)
            .ok_or_else(|| corrupt(m, format!("closed_from is not epoch milliseconds: {v:?}")))?,
    };
    let last_record = match (m.get(attr::LAST_SHARD), m.get(attr::LAST_SEQ)) {
        (None, None) => None,
        (Some(AttributeValue::S(shard)), Some(AttributeValue::S(seq))) => Some((
            shard.clone(),
            SeqNo::parse(seq)
                .ok_or_else(|| corrupt(m, format!("last_seq is not a sequence number: {seq:?}")))?,
        )),
        (shard, seq) => {
            return Err(corrupt(
                m,
                format!(
                    "last_shard and last_seq must both be S or both absent: {shard:?}, {seq:?}"
                ),
            ));
        }
    };
    Ok(GroupWatermark {
        group,
        watermark_ms,
        closed_from_ms,
        last_record,
        version: req_u64(m, attr::VERSION)?,
    })
}

/// Flat JSON object -> attributes: strings `S`, numbers `N` (floats as in
/// [`f64_value`]), booleans `BOOL`; nulls are left out, arrays and objects kept as JSON
/// text in `S`.
pub fn json_to_attrs(v: &Value) -> Attrs {
    let Value::Object(map) = v else {
        return Attrs::new();
    };
    map.iter()
        .filter_map(|(k, v)| {
            let av = match v {
                Value::Null => return None,
                Value::Bool(b) => AttributeValue::Bool(*b),
                Value::String(x) => s(x),
                Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                    (Some(i), _, _) => int_value(i),
                    (_, Some(u), _) => int_value(u),
                    (_, _, Some(f)) => f64_value(f),
                    _ => s(n.to_string()),
                },
                other => s(other.to_string()),
            };
            Some((k.clone(), av))
        })
        .collect()
}

/// Attributes -> flat JSON object (the inverse of [`json_to_attrs`] for `S`, `N` and
/// `BOOL`; other types are left out).
pub fn attrs_to_json(m: &Attrs) -> Value {
    let mut out = Map::new();
    for (k, v) in m {
        let value = match v {
            AttributeValue::S(x) => Value::String(x.clone()),
            AttributeValue::Bool(b) => Value::Bool(*b),
            AttributeValue::N(n) => match (n.parse::<i64>(), n.parse::<u64>(), n.parse::<f64>()) {
                (Ok(i), _, _) => Value::from(i),
                (_, Ok(u), _) => Value::from(u),
                (_, _, Ok(f)) => Number::from_f64(f).map_or(Value::Null, Value::Number),
                _ => continue,
            },
            _ => continue,
        };
        out.insert(k.clone(), value);
    }
    Value::Object(out)
}

/// A scalar attribute as text (`S` as is, `N` as stored, `BOOL` as `true`/`false`).
pub fn scalar_text(v: &AttributeValue) -> Option<String> {
    match v {
        AttributeValue::S(x) | AttributeValue::N(x) => Some(x.clone()),
        AttributeValue::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::rng::SplitMix64;
    use sluice_core::state::item::GroupKey;
    use sluice_core::state::window::WindowSpec;

    #[test]
    fn numbers_use_scientific_notation_within_dynamodb_limits() {
        assert_eq!(number_text(1e100).as_deref(), Some("1e100"));
        assert_eq!(number_text(1.5).as_deref(), Some("1.5e0"));
        assert_eq!(number_text(-2.5e-7).as_deref(), Some("-2.5e-7"));
        assert_eq!(number_text(-0.0).as_deref(), Some("0"));
        assert_eq!(number_text(0.0).as_deref(), Some("0"));
        assert_eq!(number_text(1e-125).as_deref(), Some("0"), "flushed");
        assert_eq!(number_text(-1e-121).as_deref(), Some("0"), "flushed");
        assert_eq!(number_text(1e-119).as_deref(), Some("1e-119"));
        assert_eq!(number_text(1e200), None);
        assert_eq!(number_text(f64::INFINITY), None);
        assert_eq!(number_text(f64::NAN), None);
        // At most 17 significant digits, never 38+.
        let t = number_text(std::f64::consts::PI * 1e99).expect("finite");
        let digits = t
            .split('e')
            .next()
            .expect("mantissa")
            .replace(['.', '-'], "");
        assert!(digits.len() <= 17, "{t}");
        assert_eq!(f64_value(1e200), AttributeValue::S("1e200".into()));
        assert_eq!(f64_value(f64::INFINITY), AttributeValue::S("inf".into()));
        assert_eq!(
            f64_of(&f64_value(f64::NEG_INFINITY)),
            Some(f64::NEG_INFINITY)
        );
        assert!(f64_of(&f64_value(f64::NAN)).expect("nan").is_nan());
    }

    #[test]
    fn decodes_dynamodb_normalised_forms() {
        assert_eq!(f64_of(&AttributeValue::N("1E+100".into())), Some(1e100));
        assert_eq!(
            f64_of(&AttributeValue::N("-0.00025".into())),
            Some(-0.00025)
        );
        assert_eq!(i64_of(&AttributeValue::N("1E+3".into())), Some(1000));
        assert_eq!(u64_of(&AttributeValue::N("42".into())), Some(42));
        assert_eq!(u64_of(&AttributeValue::N("-1".into())), None);
        assert_eq!(f64_of(&AttributeValue::Bool(true)), None);
    }

    #[test]
    fn random_f64s_round_trip() {
        let mut rng = SplitMix64::new(0x5EED);
        for _ in 0..20_000 {
            let x = f64::from_bits(rng.next_u64());
            let back = f64_of(&f64_value(x)).expect("decodes");
            if x.is_nan() {
                assert!(back.is_nan());
            } else if x.abs() < 1e-120 {
                assert_eq!(back, 0.0);
            } else {
                assert_eq!(back.to_bits(), x.to_bits(), "{x:e}");
            }
            // The same value as DynamoDB would print it back (upper-case, explicit +).
            if let Some(t) = number_text(x) {
                let upper = t.to_uppercase().replace("E", "E+").replace("E+-", "E-");
                assert_eq!(upper.parse::<f64>().ok(), Some(back), "{upper}");
            }
        }
        for x in [1e100, -1e100, 1e-100, 123.456, f64::MAX, 1.5e-120] {
            assert_eq!(f64_of(&f64_value(x)), Some(x));
        }
    }

    fn sample() -> AggregateItem {
        let key = ItemKey {
            group: GroupKey {
                key: "sensor#7 🦀".into(),
                metric: "temp".into(),
            },
            window: WindowSpec::hopping(3600, 600),
            start_ms: 1_767_225_600_000,
        };
        let mut item = AggregateItem::new(key);
        item.version = 3;
        item.state = [1.5, -2.0, 1e100, -1e100].into_iter().collect();
        item.fingerprints.extend([7, 1, u64::MAX]);
        item.sealed_pages = 2;
        item.high_water.insert(
            "shardId-000000000001".into(),
            SeqNo::parse("49590338271490256608559692538361571095921575989136588898").expect("d"),
        );
        item.high_water.insert(
            "shardId-000000000002".into(),
            SeqNo::parse("10").expect("d"),
        );
        item.expires_at_s = Some(1_800_000_000);
        item
    }

    #[test]
    fn aggregate_items_round_trip() {
        let item = sample();
        let m = item_to_attrs(&item);
        assert_eq!(m["pk"], s("temp#sensor#7 🦀"));
        assert_eq!(m["sk"], s("3600/600#2026-01-01T00:00:00Z"));
        assert_eq!(m["window_seconds"], AttributeValue::N("3600".into()));
        assert_eq!(m["slide_seconds"], AttributeValue::N("600".into()));
        assert_eq!(m["window_start"], s("2026-01-01T00:00:00Z"));
        assert_eq!(
            m["window_start_ms"],
            AttributeValue::N("1767225600000".into())
        );
        assert_eq!(m["count"], AttributeValue::N("4".into()));
        assert_eq!(m["version"], AttributeValue::N("3".into()));
        assert_eq!(m["fp_pages"], AttributeValue::N("2".into()));
        assert_eq!(m["expires_at"], AttributeValue::N("1800000000".into()));
        assert!(matches!(&m["fps"], AttributeValue::B(b) if b.as_ref().len() == 24));
        assert!(matches!(&m["hwm"], AttributeValue::M(h) if h.len() == 2));
        assert!(matches!(&m["m2"], AttributeValue::S(_)), "1e200 is no N");
        assert_eq!(attrs_to_item(&m).expect("parses"), item);

        let bare = AggregateItem::new(item.key.clone());
        let m = item_to_attrs(&bare);
        for absent in ["fps", "fp_pages", "hwm", "expires_at"] {
            assert!(!m.contains_key(absent), "{absent} omitted when empty");
        }
        assert_eq!(m["min"], s("inf"));
        assert_eq!(attrs_to_item(&m).expect("parses"), bare);
    }

    #[test]
    fn malformed_items_are_corrupt_and_named() {
        let item = sample();
        let mut m = item_to_attrs(&item);
        m.insert("count".into(), s("many"));
        let err = attrs_to_item(&m).expect_err("count is S");
        let msg = err.to_string();
        assert!(matches!(err, Error::CorruptItem { .. }));
        assert!(
            msg.contains("temp#sensor#7 🦀/3600/600#2026-01-01T00:00:00Z"),
            "{msg}"
        );
        assert!(msg.contains("count"), "{msg}");

        let mut m = item_to_attrs(&item);
        m.insert("fps".into(), AttributeValue::B(Blob::new(vec![1, 2, 3])));
        assert!(attrs_to_item(&m).is_err());
        let mut m = item_to_attrs(&item);
        m.remove("version");
        assert!(attrs_to_item(&m).is_err());
        let mut m = item_to_attrs(&item);
        m.insert("sk".into(), s("no-window"));
        assert!(attrs_to_item(&m).is_err());
        let mut m = item_to_attrs(&item);
        m.insert(
            "hwm".into(),
            AttributeValue::M(HashMap::from([("s".into(), s("12x"))])),
        );
        assert!(attrs_to_item(&m).is_err());
    }

    #[test]
    fn pages_and_json_round_trip() {
        let item = sample();
        let mut wm = GroupWatermark {
            group: item.key.group.clone(),
            watermark_ms: 1_767_225_660_000,
            closed_from_ms: 1_767_225_600_000,
            last_record: Some((
                "shardId-000000000001".into(),
                SeqNo::parse("49590338271490256608559692538361571095921575989136588898")
                    .expect("digits"),
            )),
            version: 4,
        };
        let m = watermark_to_attrs(&wm);
        assert_eq!(m["sk"], s("~wm"));
        assert_eq!(m["wm"], AttributeValue::N("1767225660000".into()));
        assert_eq!(m["closed_from"], AttributeValue::N("1767225600000".into()));
        assert_eq!(attrs_to_watermark(&m).expect("watermark"), wm);
        let mut broken = m.clone();
        broken.insert("wm".into(), s("soon"));
        assert!(attrs_to_watermark(&broken).is_err());
        let mut half = m.clone();
        half.remove("last_seq");
        assert!(attrs_to_watermark(&half).is_err(), "shard without seq");
        // A watermark written before closing ranges: nothing pending.
        let mut old = m.clone();
        for a in ["closed_from", "last_shard", "last_seq"] {
            old.remove(a);
        }
        wm.closed_from_ms = wm.watermark_ms;
        wm.last_record = None;
        assert_eq!(attrs_to_watermark(&old).expect("old watermark"), wm);

        let page = page_to_attrs(&item.key, 2, &item.fingerprints, Some(5));
        assert_eq!(page["sk"], s(item.key.page_sk(2)));
        assert_eq!(attrs_to_page(&page).expect("page"), item.fingerprints);

        let v =
            serde_json::json!({"a": "x", "n": 5, "f": 80.0, "b": true, "z": null, "big": 1e200});
        let m = json_to_attrs(&v);
        assert_eq!(m["n"], AttributeValue::N("5".into()));
        assert_eq!(m["f"], AttributeValue::N("8e1".into()));
        assert_eq!(m["b"], AttributeValue::Bool(true));
        assert!(!m.contains_key("z"));
        let back = attrs_to_json(&m);
        assert_eq!(back["a"], "x");
        assert_eq!(back["n"], 5);
        assert_eq!(back["f"], 80.0);
        assert_eq!(back["b"], true);
        assert_eq!(
            scalar_text(&AttributeValue::Bool(false)).as_deref(),
            Some("false")
        );
    }

    #[test]
    fn core_item_sizing_matches_the_written_attributes() {
        use sluice_core::state::limits::dynamodb as limits;
        let full = sample();
        let mut bare = AggregateItem::new(full.key.clone());
        bare.version = 1;
        let mut odd = full.clone();
        odd.state = [0.1, 3.0e-7, 12345.678].into_iter().collect();
        odd.key.start_ms += 1234; // a start with milliseconds
        for item in [&full, &bare, &odd] {
            assert_eq!(
                super::super::attrs_size(&item_to_attrs(item)),
                limits::aggregate_item_size(item),
                "{item:?}"
            );
        }
        let mut wm = GroupWatermark {
            group: full.key.group.clone(),
            watermark_ms: 1_767_225_660_000,
            closed_from_ms: -60_000,
            last_record: None,
            version: 12,
        };
        assert_eq!(
            super::super::attrs_size(&watermark_to_attrs(&wm)),
            limits::watermark_size(&wm)
        );
        wm.last_record = Some(("shardId-000000000007".into(), SeqNo::zero()));
        assert_eq!(
            super::super::attrs_size(&watermark_to_attrs(&wm)),
            limits::watermark_size(&wm)
        );
        for expires in [None, Some(1_800_000_000)] {
            let page = page_to_attrs(&full.key, 3, &full.fingerprints, expires);
            assert_eq!(
                super::super::attrs_size(&page),
                limits::page_size(&full.key, 3, &full.fingerprints, expires)
            );
        }
    }

    #[test]
    fn core_json_item_sizing_matches_the_written_attributes() {
        use sluice_core::state::limits::dynamodb::json_item_size;
        let v = serde_json::json!({
            "alert_id": "r1|temp#k é|60#2026-01-01T00:00:00Z", "n": 5, "big": 1e200,
            "f": 80.25, "neg": -12, "b": true, "z": null, "arr": [1, 2], "obj": {"a": 1}
        });
        assert_eq!(
            json_item_size(&v),
            super::super::attrs_size(&json_to_attrs(&v))
        );
    }
}
