//! The narrow traits each stage needs. AWS adapters implement them in `sluice-aws`,
//! in-memory ones in `sluice-local`. Futures are `Send` so handlers run on any runtime.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;

use crate::error::Result;
use crate::fingerprint::FingerprintSet;
use crate::item::{AggregateItem, GroupKey, GroupWatermark, ItemKey, ItemWrite, WatermarkWrite};
use crate::record::OutRecord;
use crate::rules::{Alert, Rule};

/// Dimensions attached to an entity in the reference table.
pub type Attrs = BTreeMap<String, String>;

/// Wall-clock time, passed in so domain logic never reads it.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now_ms(&self) -> i64 {
        (**self).now_ms()
    }
}

/// Writes records to one stream (`PutRecords`). Either every record is written or the
/// call fails; records for one partition key keep their order.
pub trait RecordSink: Send + Sync {
    fn stream_name(&self) -> &str;
    fn put_records(&self, records: Vec<OutRecord>) -> impl Future<Output = Result<()>> + Send;
}

/// Looks up reference attributes by entity key. Unknown keys are simply absent.
pub trait ReferenceLookup: Send + Sync {
    fn lookup(
        &self,
        keys: &[String],
    ) -> impl Future<Output = Result<HashMap<String, Attrs>>> + Send;
}

/// Whether a conditional commit went through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Commit {
    Done,
    /// Some item's version (or a page's absence) no longer held: re-read and retry.
    Conflict,
}

/// What one consistent read of the aggregates table returned.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub items: Vec<AggregateItem>,
    pub watermarks: Vec<GroupWatermark>,
}

/// The aggregates table.
pub trait AggregateStore: Send + Sync {
    /// Strongly consistent read of the items and group watermarks that exist among
    /// `keys` and `groups` (one `BatchGetItem` on DynamoDB).
    fn load(
        &self,
        keys: &[ItemKey],
        groups: &[GroupKey],
    ) -> impl Future<Output = Result<Loaded>> + Send;
    /// One sealed fingerprint page of an anchor item (immutable once written).
    fn load_page(
        &self,
        anchor: &ItemKey,
        page: u32,
    ) -> impl Future<Output = Result<Option<FingerprintSet>>> + Send;
    /// Writes all items (and the group's watermark, if given) atomically, each
    /// conditioned on its expected version.
    fn commit(
        &self,
        writes: &[ItemWrite],
        watermark: Option<&WatermarkWrite>,
    ) -> impl Future<Output = Result<Commit>> + Send;
}

/// The rules the detect stage evaluates.
pub trait RulesSource: Send + Sync {
    fn rules(&self) -> impl Future<Output = Result<Arc<Vec<Rule>>>> + Send;
}

/// What the alerts table knew about an alert before this call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertStatus {
    /// First time: stored now, not yet announced.
    New,
    /// Stored earlier, but its announcement may not have gone out.
    Pending,
    /// Stored and announced: nothing to do.
    Notified,
}

/// The alerts table, keyed by alert id.
pub trait AlertStore: Send + Sync {
    fn raise(&self, alert: &Alert) -> impl Future<Output = Result<AlertStatus>> + Send;
    fn mark_notified(&self, alert_id: &str) -> impl Future<Output = Result<()>> + Send;
}

/// One shard of a stream, as the event source mapping sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    pub shard_id: String,
    /// After a split or merge, the children are read only once the parents are done.
    pub parents: Vec<String>,
}

/// The result of one read from a shard.
#[derive(Clone, Debug, Default)]
pub struct ShardRead {
    /// Records in sequence order (at most the limit asked for).
    pub records: Vec<crate::record::StreamRecord>,
    /// The shard is closed (resharded) and every record of it has been returned.
    pub ended: bool,
    /// How far behind the tip this read was (`MillisBehindLatest`), when known.
    pub behind_ms: Option<i64>,
}

/// Reads a stream shard by shard, for the local event source mapping (`sluice demo`
/// reads in-process streams, `sluice run` reads Kinesis).
pub trait ShardSource: Send + Sync {
    fn stream_name(&self) -> &str;
    /// `arn:aws:kinesis:…:stream/{name}` as Lambda puts it in `eventSourceARN`.
    fn stream_arn(&self) -> String;
    fn shards(&self) -> impl Future<Output = Result<Vec<ShardInfo>>> + Send;
    /// Up to `limit` records after sequence number `after` (`None`: from the oldest).
    fn read(
        &self,
        shard_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<ShardRead>> + Send;
}

// Shared ownership: a stage can hold an `Arc` of an adapter that the runner (or a
// test) also inspects.
impl<T: RecordSink + ?Sized> RecordSink for Arc<T> {
    fn stream_name(&self) -> &str {
        (**self).stream_name()
    }
    fn put_records(&self, records: Vec<OutRecord>) -> impl Future<Output = Result<()>> + Send {
        (**self).put_records(records)
    }
}

impl<T: ReferenceLookup + ?Sized> ReferenceLookup for Arc<T> {
    fn lookup(
        &self,
        keys: &[String],
    ) -> impl Future<Output = Result<HashMap<String, Attrs>>> + Send {
        (**self).lookup(keys)
    }
}

impl<T: AggregateStore + ?Sized> AggregateStore for Arc<T> {
    fn load(
        &self,
        keys: &[ItemKey],
        groups: &[GroupKey],
    ) -> impl Future<Output = Result<Loaded>> + Send {
        (**self).load(keys, groups)
    }
    fn load_page(
        &self,
        anchor: &ItemKey,
        page: u32,
    ) -> impl Future<Output = Result<Option<FingerprintSet>>> + Send {
        (**self).load_page(anchor, page)
    }
    fn commit(
        &self,
        writes: &[ItemWrite],
        watermark: Option<&WatermarkWrite>,
    ) -> impl Future<Output = Result<Commit>> + Send {
        (**self).commit(writes, watermark)
    }
}

impl<T: RulesSource + ?Sized> RulesSource for Arc<T> {
    fn rules(&self) -> impl Future<Output = Result<Arc<Vec<Rule>>>> + Send {
        (**self).rules()
    }
}

impl<T: AlertStore + ?Sized> AlertStore for Arc<T> {
    fn raise(&self, alert: &Alert) -> impl Future<Output = Result<AlertStatus>> + Send {
        (**self).raise(alert)
    }
    fn mark_notified(&self, alert_id: &str) -> impl Future<Output = Result<()>> + Send {
        (**self).mark_notified(alert_id)
    }
}
