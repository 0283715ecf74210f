//! Steps 4 and 5 of the aggregate stage: which records are done and their dead
//! letters, then the window updates and dead letters written.

use super::{Aggregate, Batch, Pending, Progress, STAGE, State};
use crate::error::{Error, Result};
use crate::input::dead_letter::DeadLetter;
use crate::input::envelope::{Reason, Rejection, TimeBounds, decode_line_without_attrs};
use crate::input::record::{OutRecord, PACKED_RECORD_BYTES, StreamRecord, pack_lines};
use crate::ports::{AggregateStore, Clock, RecordSink};
use crate::stage::line_bytes;
use crate::stage::outcome::{Fate, StageStats};
use crate::state::item::{AggregateItem, GroupKey, UpdateLine, WindowUpdate};

/// What `settle` decided for the records that are done.
pub(super) struct Settled {
    /// Records `..done` are finished; the rest is delivered again.
    pub(super) done: usize,
    pub(super) dead: Vec<OutRecord>,
    pub(super) fates: Vec<(String, Fate)>,
}

impl<S, O, D, C> Aggregate<S, O, D, C>
where
    S: AggregateStore,
    O: RecordSink,
    D: RecordSink,
    C: Clock,
{
    /// Step 5: window updates (a snapshot of every touched window as stored now), then
    /// dead letters. Returns how many window updates it wrote.
    pub(super) async fn emit(
        &self,
        state: &State,
        progress: &Progress,
        dead: Vec<OutRecord>,
    ) -> Result<u64> {
        let updates = progress
            .touched
            .iter()
            .filter_map(|k| state.items.get(k))
            .filter(|item| item.version > 0)
            .map(|item| {
                let line = UpdateLine {
                    update: self.update_of(item),
                    closing: progress.closing.get(&item.key.group).copied(),
                };
                serde_json::to_vec(&line)
                    .map(|line| (item.key.group.key.clone(), line))
                    .map_err(|source| Error::Encode {
                        what: "a window update",
                        source,
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let written = updates.len() as u64;
        self.updates
            .put_records(pack_lines(updates, PACKED_RECORD_BYTES)?)
            .await?;
        self.dead_letters.put_records(dead).await?;
        Ok(written)
    }
}

impl<S, O, D, C> Aggregate<S, O, D, C> {
    /// The window update of an item as emitted: a SQL view's item carries its row, as
    /// the view's columns, in place of its aggregate states. Detect then reads a rule's
    /// column without decoding states (a sketch's take kilobytes) or evaluating the
    /// view's expressions, and the line is smaller. An item whose row cannot be
    /// computed keeps its states (detect judges it as before).
    fn update_of(&self, item: &AggregateItem) -> WindowUpdate {
        let row = match item.columns.is_empty() {
            true => None,
            false => self
                .sql
                .as_ref()
                .and_then(|sql| sql.row_text(&item.key, &item.columns))
                .and_then(Result::ok),
        };
        match row {
            // The states are not copied into an update that carries the row instead.
            Some(row) => WindowUpdate {
                row: Some(row),
                ..WindowUpdate::of(&item.key, &item.state, item.version, Default::default())
            },
            None => item.update(),
        }
    }
}

impl Progress {
    /// A failure no retry can fix struck this group: its events that no committed
    /// transaction counted become dead letters; the error is their detail.
    pub(super) fn dead_letter_group(
        &mut self,
        (group, members): &(GroupKey, Vec<usize>),
        error: &Error,
    ) {
        self.unprocessable.insert(
            group.clone(),
            format!("group {}: {error}", group.partition_key()),
        );
        for &i in members {
            if self.fates[i].is_none() {
                self.fates[i] = Some(Fate::DeadLetter(Reason::Unprocessable));
            }
        }
    }
}

/// Step 4: decides which records are done (all of them, unless the batch stopped: then
/// those before the first record with an unsettled event), and for those, the dead
/// letters to send, the fates to report once they are sent, and the stage's counters.
/// Counted events were reported when their transaction committed.
pub(super) fn settle(
    records: &[StreamRecord],
    batch: &Batch,
    progress: &Progress,
    stopped: bool,
    lateness_ms: &dyn Fn(&GroupKey) -> i64,
    stats: &mut StageStats,
) -> Settled {
    let done = if stopped {
        batch
            .pending
            .iter()
            .zip(&progress.fates)
            .filter(|(_, f)| f.is_none())
            .map(|(p, _)| p.record)
            .min()
            .unwrap_or(records.len())
    } else {
        records.len()
    };
    let mut settled = Settled {
        done,
        dead: Vec::new(),
        fates: Vec::new(),
    };
    for r in batch.rejected.iter().filter(|r| r.record < done) {
        settled.dead.extend(r.dead_letters().cloned());
        settled
            .fates
            .push((r.origin.clone(), Fate::DeadLetter(r.reason)));
        stats.dead_letter(r.reason);
    }
    for (p, fate) in batch.pending.iter().zip(&progress.fates) {
        if p.record >= done {
            continue;
        }
        let Some(fate) = *fate else { continue };
        let record = &records[p.record];
        match fate {
            Fate::Counted(_) => stats.counted += 1,
            Fate::Duplicate(_) => stats.duplicates += 1,
            // Enrich settles those; no event of the aggregate stage is filtered.
            Fate::Filtered => {}
            Fate::Late => {
                let detail = format!(
                    "event time {} is in a window that closed more than {} ms before the watermark",
                    p.candidate.ts,
                    lateness_ms(&batch.groups[p.group].0)
                );
                stats.dead_letter(Reason::Late);
                settled.dead.push(event_dead_letter(
                    record,
                    p,
                    &batch.groups[p.group].0,
                    Reason::Late,
                    Some("ts"),
                    detail,
                ));
            }
            Fate::DeadLetter(reason) => {
                let detail = progress
                    .unprocessable
                    .get(&batch.groups[p.group].0)
                    .cloned()
                    .unwrap_or_else(|| reason.as_str().to_owned());
                stats.dead_letter(reason);
                settled.dead.push(event_dead_letter(
                    record,
                    p,
                    &batch.groups[p.group].0,
                    reason,
                    None,
                    detail,
                ));
            }
        }
        if !matches!(fate, Fate::Counted(_)) {
            settled.fates.push((p.origin.clone(), fate));
        }
    }
    stats.records = done as u64;
    stats.events_in = batch.pending.iter().filter(|p| p.record < done).count() as u64
        + batch.rejected.iter().filter(|r| r.record < done).count() as u64;
    settled
}

/// A dead letter for one decoded event; its original bytes are the event as this stage
/// read it.
pub(super) fn event_dead_letter(
    record: &StreamRecord,
    p: &Pending,
    group: &GroupKey,
    reason: Reason,
    field: Option<&'static str>,
    detail: String,
) -> OutRecord {
    // The id is not kept per event: it is read again from the event's line (which
    // decoded before, so it decodes alike), or derived as decoding derived it.
    let id = decode_line_without_attrs(
        line_bytes(record, p.line).trim_ascii(),
        TimeBounds::unbounded(),
    )
    .ok()
    .and_then(|e| e.id)
    .unwrap_or_else(|| record.origin_of_line(p.line));
    let rejection = Rejection {
        reason,
        field,
        detail,
        id: Some(id.clone()),
    };
    let line = serde_json::json!({
        "id": id, "key": group.key, "type": group.metric,
        "ts": p.candidate.ts, "value": p.candidate.value, "origin": p.origin,
    });
    // A `Value` displays as its JSON text, which cannot fail.
    let bytes = line.to_string().into_bytes();
    DeadLetter::for_line(STAGE, record, 0, &bytes, &rejection)
        .with_origin(Some(p.origin.clone()))
        .into_record(&record.partition_key)
}
