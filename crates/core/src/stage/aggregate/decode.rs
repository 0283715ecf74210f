//! Step 1 of the aggregate stage: the batch's events decoded and grouped.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Aggregate, Batch, Pending, STAGE};
use crate::input::record::StreamRecord;
use crate::ports::{AggregateStore, Clock, RecordSink};
use crate::stage::decode_event_views;
use crate::state::idempotency::{Candidate, event_identity};
use crate::state::item::GroupKey;
use crate::state::sequence::SeqNo;

impl<S, O, D, C> Aggregate<S, O, D, C>
where
    S: AggregateStore,
    O: RecordSink,
    D: RecordSink,
    C: Clock,
{
    /// Step 1: decodes the events of the batch and groups them by (key, type). Strings
    /// are read borrowed from the records: per event only its origin is copied (the
    /// accounting reports it); a group's key is built once per run of its events.
    pub(super) fn decode(&self, records: &[StreamRecord]) -> Batch {
        let mut pending: Vec<Pending> = Vec::new();
        let mut groups: Vec<(GroupKey, Vec<usize>)> = Vec::new();
        let mut position: HashMap<GroupKey, usize> = HashMap::new();
        // Events come record by record: the record's sequence number and shard are
        // parsed and shared once per record, not once per event.
        let mut current: Option<(usize, SeqNo, Arc<str>)> = None;
        let mut previous_group: Option<usize> = None;
        let rejected = decode_event_views(STAGE, records, |at_record, line, event| {
            let record = &records[at_record];
            let (seq, shard) = match &current {
                Some((at, seq, shard)) if *at == at_record => (seq.clone(), shard.clone()),
                _ => {
                    let seq = SeqNo::parse(&record.sequence_number).unwrap_or_else(SeqNo::zero);
                    let shard = match &current {
                        Some((_, _, shard)) if **shard == *record.shard_id => shard.clone(),
                        _ => Arc::from(record.shard_id.as_str()),
                    };
                    current = Some((at_record, seq.clone(), shard.clone()));
                    (seq, shard)
                }
            };
            // One digest per event: its identity is also what the anchor stores.
            let identity = event_identity(self.config.delivery, &event.id, &event.origin);
            let index = pending.len();
            // A record holds one key's events (stages pack per key), so the group is
            // mostly the previous event's; the map is consulted on a change only.
            let group = match previous_group {
                Some(at)
                    if groups[at].0.key == event.key && groups[at].0.metric == event.metric =>
                {
                    at
                }
                _ => {
                    let key = GroupKey {
                        key: event.key.into_owned(),
                        metric: event.metric.into_owned(),
                    };
                    match position.get(&key) {
                        Some(&at) => at,
                        None => {
                            position.insert(key.clone(), groups.len());
                            groups.push((key, Vec::new()));
                            groups.len() - 1
                        }
                    }
                }
            };
            previous_group = Some(group);
            groups[group].1.push(index);
            pending.push(Pending {
                record: at_record,
                line,
                identity,
                origin: event.origin.into_owned(),
                candidate: Candidate {
                    index,
                    ts: event.ts,
                    value: event.value,
                    fingerprint: identity,
                    shard,
                    seq,
                    late: false,
                },
                group,
            });
        });
        Batch {
            pending,
            rejected,
            groups,
        }
    }
}
