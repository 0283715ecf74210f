//! Step 1 of the aggregate stage: the batch's events decoded and grouped.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use super::{Aggregate, Batch, Pending, STAGE};
use crate::input::envelope::{Reason, Rejection};
use crate::input::record::StreamRecord;
use crate::ports::{AggregateStore, Clock, RecordSink};
use crate::sql::Value;
use crate::stage::sql::line::{DecodedInputs, id_text};
use crate::stage::sql::read_line::ReadLine;
use crate::stage::sql::{SqlPipeline, StoredView};
use crate::stage::{RecordLines, decode_event_views};
use crate::state::idempotency::Delivery;
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
        if let Some(sql) = &self.sql {
            return decode_view_lines(sql, self.config.delivery, records);
        }
        let mut pending: Vec<Pending> = Vec::new();
        let mut groups = Groups::default();
        // Events come record by record: the record's sequence number and shard are
        // parsed and shared once per record, not once per event.
        let mut current: Option<(usize, SeqNo, Arc<str>)> = None;
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
            let group = groups.find(&event.key, &event.metric);
            groups.list[group].1.push(index);
            pending.push(Pending {
                record: at_record,
                line,
                identity,
                origin: event.origin.into_owned(),
                candidate: Candidate {
                    index,
                    ts: event.ts,
                    value: event.value,
                    adds: None,
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
            groups: groups.list,
            inputs: Vec::new(),
        }
    }
}

/// Step 1 under a SQL pipeline: the batch's view lines, one event per group of items
/// a line names, grouped by (that group, group key). A line that is not a view line of this pipeline
/// (another pipeline's, or junk) is a dead letter, whole.
fn decode_view_lines(sql: &SqlPipeline, delivery: Delivery, records: &[StreamRecord]) -> Batch {
    let mut pending: Vec<Pending> = Vec::new();
    let mut groups = Groups::default();
    let mut rejected = Vec::new();
    let mut views = Vec::new();
    let mut decoded = DecodedInputs::default();
    let mut inputs = Vec::new();
    for (at_record, record) in records.iter().enumerate() {
        let seq = SeqNo::parse(&record.sequence_number).unwrap_or_else(SeqNo::zero);
        let shard: Arc<str> = Arc::from(record.shard_id.as_str());
        let mut lines = RecordLines::new(STAGE, at_record, record, &mut rejected);
        for (line, bytes) in crate::input::record::lines(&record.data).enumerate() {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            lines.line();
            let view_line = std::str::from_utf8(bytes)
                .ok()
                .and_then(ReadLine::read)
                .filter(|l| read_views(sql, l, &mut decoded, &mut inputs, &mut views));
            let Some(view_line) = view_line else {
                let rejection = Rejection {
                    reason: Reason::WrongType,
                    field: None,
                    detail: "not a view line of this pipeline (a view whose definition \
                             changed starts afresh under a new id)"
                        .into(),
                    id: None,
                };
                lines.reject(line, bytes, &rejection);
                continue;
            };
            let id = id_text(view_line.id, &view_line.origin);
            let identity = event_identity(delivery, id, &view_line.origin);
            let key_text = view_line.k;
            for (view, adds) in views.drain(..) {
                let group = groups.find(key_text, &view.group);
                let index = pending.len();
                groups.list[group].1.push(index);
                pending.push(Pending {
                    record: at_record,
                    line,
                    identity,
                    origin: view_line.origin.clone().into_owned(),
                    candidate: Candidate {
                        index,
                        ts: view_line.t,
                        value: 0.0,
                        adds: Some(adds),
                        fingerprint: identity,
                        shard: shard.clone(),
                        seq: seq.clone(),
                        late: false,
                    },
                    group,
                });
            }
        }
        lines.finish();
    }
    Batch {
        pending,
        rejected,
        groups: groups.list,
        inputs,
    }
}

/// Each group of items a line names (a view's, or that of views sharing one) with the
/// range of its inputs, appended to `inputs`, into `out` (cleared first); false (and
/// `inputs` as it was) when one is no group of this pipeline or its inputs are not
/// that group's.
fn read_views<'p>(
    sql: &'p SqlPipeline,
    line: &ReadLine<'_>,
    decoded: &mut DecodedInputs<'p>,
    inputs: &mut Vec<Option<Value>>,
    out: &mut Vec<(&'p StoredView, Range<u32>)>,
) -> bool {
    out.clear();
    decoded.reset(line.a.len());
    let before = inputs.len();
    for (id, slots) in &line.v {
        let adds = sql
            .group(id)
            .and_then(|view| Some((view, view.adds(slots, &line.a, decoded, inputs)?)));
        match adds {
            Some(found) => out.push(found),
            None => {
                inputs.truncate(before);
                out.clear();
                return false;
            }
        }
    }
    !out.is_empty()
}

/// The batch's groups in order of first appearance, each with its events.
#[derive(Default)]
struct Groups {
    list: Vec<(GroupKey, Vec<usize>)>,
    position: HashMap<GroupKey, usize>,
    previous: Option<usize>,
}

impl Groups {
    /// The index of group (`key`, `metric`), added if new. A record holds one group's
    /// lines (the stages pack per key), so the group is mostly the previous line's: no
    /// key is built for it, the map is consulted on a change only.
    fn find(&mut self, key: &str, metric: &str) -> usize {
        let Groups {
            list: groups,
            position,
            previous,
        } = self;
        let at = match *previous {
            Some(at) if groups[at].0.key == key && groups[at].0.metric == metric => at,
            _ => {
                let key = GroupKey {
                    key: key.to_owned(),
                    metric: metric.to_owned(),
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
        *previous = Some(at);
        at
    }
}
