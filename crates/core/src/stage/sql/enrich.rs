//! Enrich under a SQL pipeline: each source line through the views (lookup joins read
//! reference rows through the cached port, fetched for the whole batch at once), then
//! one [`super::ViewLine`] per event and group its stored views share, keyed by the group.
//!
//! Reference rows live in the reference table under the key `table#<key text>` with the
//! row's JSON line in the attribute `row` ([`reference_key`], [`REFERENCE_ROW`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::line::{self, LineScratch, SourceLine, ViewPart};
use super::{SqlPipeline, group_partition_key};
use crate::config::EnrichConfig;
use crate::error::Result;
use crate::input::dead_letter::DeadLetter;
use crate::input::envelope::{Reason, Rejection};
use crate::input::record::{LinePacker, OutRecord, PACKED_RECORD_BYTES, StreamRecord};
use crate::ports::cache::CachedLookup;
use crate::ports::{Clock, RecordSink, ReferenceLookup};
use crate::sql::{EvalContext, Evaluated, Lookup, References, Value, ViewUpdate, Windows, codec};
use crate::stage::outcome::{BatchOutcome, Fate};
use crate::stage::{Stage, deadline_passed, fail_whole_batch, failure_at};

/// The attribute of a reference item holding a SQL reference row's JSON line.
pub const REFERENCE_ROW: &str = "row";

/// Lookup joins chain at most this deep (a join's key may come from an earlier join).
const MAX_LOOKUP_ROUNDS: usize = 8;

/// The reference table's key of a SQL reference table's row.
pub fn reference_key(table: &str, key_text: &str) -> String {
    format!("{table}#{key_text}")
}

pub struct SqlEnrich<R, O, D, C> {
    pub pipeline: Arc<SqlPipeline>,
    pub reference: CachedLookup<R, C>,
    pub output: O,
    pub dead_letters: D,
    pub clock: C,
    pub config: EnrichConfig,
}

impl<R: ReferenceLookup, O, D, C: Clock + Clone> SqlEnrich<R, O, D, C> {
    pub fn new(
        pipeline: Arc<SqlPipeline>,
        reference: R,
        output: O,
        dead_letters: D,
        clock: C,
        config: EnrichConfig,
    ) -> Self {
        SqlEnrich {
            pipeline,
            reference: CachedLookup::new(reference, clock.clone(), config.cache_ttl_ms),
            output,
            dead_letters,
            clock,
            config,
        }
    }
}

/// One source line of the batch and what became of it.
struct Event<'a> {
    record: usize,
    line: usize,
    source: SourceLine<'a>,
    result: Option<std::result::Result<Vec<ViewUpdate>, String>>,
}

/// Reference rows fetched for this batch: `None` for a key with no row.
struct Fetched(HashMap<String, Option<Vec<Value>>>);

impl References for Fetched {
    fn get(&self, table: &str, key: &str) -> Lookup<'_> {
        match self.0.get(&reference_key(table, key)) {
            Some(Some(row)) => Lookup::Found(row),
            Some(None) => Lookup::Absent,
            None => Lookup::Unknown,
        }
    }
}

impl<R, O, D, C> Stage for SqlEnrich<R, O, D, C>
where
    R: ReferenceLookup,
    O: RecordSink,
    D: RecordSink,
    C: Clock,
{
    fn name(&self) -> &'static str {
        "enrich"
    }

    async fn process(&self, records: &[StreamRecord], deadline_ms: Option<i64>) -> BatchOutcome {
        let mut outcome = BatchOutcome {
            records: records.len(),
            ..Default::default()
        };
        let margin = self.config.common.deadline_margin_ms;
        if let Some(err) = deadline_passed(&self.clock, deadline_ms, margin) {
            outcome.failure = Some(failure_at(records, 0, err));
            return outcome;
        }
        let mut dead = Vec::new();
        let mut settle = Vec::new();
        let mut events = Vec::new();
        for (index, record) in records.iter().enumerate() {
            for (line, bytes) in crate::input::record::lines(&record.data).enumerate() {
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                outcome.stats.events_in += 1;
                match std::str::from_utf8(bytes)
                    .ok()
                    .and_then(|t| serde_json::from_str::<SourceLine<'_>>(t).ok())
                {
                    Some(source) => events.push(Event {
                        record: index,
                        line,
                        source,
                        result: None,
                    }),
                    None => {
                        let rejection = Rejection {
                            reason: Reason::NotJson,
                            field: None,
                            detail: "not a source line of the ingest stage".into(),
                            id: None,
                        };
                        let origin = record.origin_of_line(line);
                        self.reject(record, line, bytes, &rejection, &origin, &mut dead);
                        outcome.stats.dead_letter(rejection.reason);
                        settle.push((origin, Fate::DeadLetter(rejection.reason)));
                    }
                }
            }
        }
        let now_ms = self.clock.now_ms();
        if let Err(error) = self.evaluate(&mut events, now_ms).await {
            fail_whole_batch(&mut outcome, records, error);
            return outcome;
        }
        let mut lines = LinePacker::new(PACKED_RECORD_BYTES);
        let mut scratch = PackScratch::default();
        for event in &events {
            let record = &records[event.record];
            let origin: &str = &event.source.origin;
            match event.result.as_ref() {
                Some(Ok(updates)) if updates.is_empty() => {
                    settle.push((origin.to_owned(), Fate::Filtered));
                }
                Some(Ok(updates)) => {
                    let packed = self.pack(&event.source, updates, &mut lines, &mut scratch);
                    match packed {
                        Ok(n) => outcome.stats.passed_on += n,
                        Err(rejection) => {
                            let bytes = crate::stage::line_bytes(record, event.line);
                            self.reject(record, event.line, bytes, &rejection, origin, &mut dead);
                            outcome.stats.dead_letter(rejection.reason);
                            settle.push((origin.to_owned(), Fate::DeadLetter(rejection.reason)));
                        }
                    }
                }
                other => {
                    let detail = match other {
                        Some(Err(reason)) => reason.clone(),
                        _ => "a lookup join chains deeper than the stages follow".into(),
                    };
                    let rejection = Rejection {
                        reason: Reason::InvalidValue,
                        field: None,
                        detail,
                        id: Some(
                            line::id_text(
                                event.source.id.map(serde_json::value::RawValue::get),
                                &event.source.origin,
                            )
                            .to_owned(),
                        ),
                    };
                    let bytes = crate::stage::line_bytes(record, event.line);
                    self.reject(record, event.line, bytes, &rejection, origin, &mut dead);
                    outcome.stats.dead_letter(rejection.reason);
                    settle.push((origin.to_owned(), Fate::DeadLetter(rejection.reason)));
                }
            }
        }
        outcome.stats.records = records.len() as u64;
        let written = async {
            self.output.put_records(lines.finish()).await?;
            self.dead_letters.put_records(dead).await
        };
        if let Err(error) = written.await {
            fail_whole_batch(&mut outcome, records, error);
            return outcome;
        }
        outcome.accounting.settled = settle;
        outcome
    }
}

impl<R: ReferenceLookup, O, D, C: Clock> SqlEnrich<R, O, D, C> {
    /// Step: every event through the views; reference rows the joins need are fetched
    /// for the whole batch, round by round (a join's key may come from an earlier join).
    async fn evaluate(&self, events: &mut [Event<'_>], now_ms: i64) -> Result<()> {
        let program = &self.pipeline.program;
        let ctx = EvalContext { now_ms };
        let mut fetched = Fetched(HashMap::new());
        for _ in 0..MAX_LOOKUP_ROUNDS {
            let mut needed = BTreeSet::new();
            for event in events.iter_mut().filter(|e| e.result.is_none()) {
                let encoded = event.source.r.get();
                let row =
                    match program.source_row_encoded(encoded, &self.pipeline.computed_kept, &ctx) {
                        Ok(row) => row,
                        Err(r) => {
                            event.result = Some(Err(r.to_string()));
                            continue;
                        }
                    };
                let skip = &self.pipeline.follows;
                match program.view_updates_except(row, &fetched, &ctx, Windows::PerEvent, skip) {
                    Ok(Evaluated::Updates(updates)) => event.result = Some(Ok(updates)),
                    Ok(Evaluated::NeedsReference(keys)) => {
                        needed.extend(keys.iter().map(|(t, k)| reference_key(t, k)));
                    }
                    Err(reason) => event.result = Some(Err(reason)),
                }
            }
            if needed.is_empty() {
                break;
            }
            let keys: Vec<String> = needed.into_iter().collect();
            let found = self.reference.get(&keys).await?;
            for key in keys {
                let row = found.get(&key).and_then(|attrs| {
                    let (table, _) = key.split_once('#')?;
                    let line = attrs.get(REFERENCE_ROW)?;
                    // A reference row that does not read as its table's is no row.
                    program
                        .read_reference(table, line.as_bytes())
                        .ok()
                        .map(|(_, r)| r)
                });
                fetched.0.insert(key, row);
            }
        }
        Ok(())
    }

    /// Step: one event's view lines into the packer (one per group and event time its
    /// views share); how many.
    fn pack(
        &self,
        source: &SourceLine<'_>,
        updates: &[ViewUpdate],
        lines: &mut LinePacker,
        scratch: &mut PackScratch,
    ) -> std::result::Result<u64, Rejection> {
        // Every update is checked before any line is packed: an event is refused whole.
        let keys: Vec<String> = updates.iter().map(|u| codec::key_text(&u.keys)).collect();
        let refused = updates
            .iter()
            .zip(&keys)
            .find_map(|(u, k)| self.pipeline.refusal_with_key(u, k));
        let rejection = |reason, detail| Rejection {
            reason,
            field: None,
            detail,
            id: Some(
                line::id_text(
                    source.id.map(serde_json::value::RawValue::get),
                    &source.origin,
                )
                .to_owned(),
            ),
        };
        if let Some(detail) = refused {
            return Err(rejection(Reason::InvalidValue, detail));
        }
        let mut written = vec![false; updates.len()];
        let mut count = 0;
        for first in 0..updates.len() {
            if written[first] {
                continue;
            }
            let (key_text, ts) = (&keys[first], updates[first].ts);
            let mut parts = Vec::new();
            for (i, update) in updates.iter().enumerate().skip(first) {
                if written[i] || keys[i] != *key_text || update.ts != ts {
                    continue;
                }
                written[i] = true;
                // Views sharing a group of items take the same inputs: one part says it.
                if let Some(view) = self.pipeline.view_at(update.view)
                    && !parts.iter().any(|p: &ViewPart<'_>| p.group == view.group)
                {
                    parts.push(ViewPart {
                        group: &view.group,
                        adds: &update.adds,
                    });
                }
            }
            scratch.bytes.clear();
            line::write_view_line(
                &mut scratch.bytes,
                key_text,
                ts,
                source,
                &parts,
                &mut scratch.line,
            )
            .map_err(|e| {
                rejection(
                    Reason::InvalidValue,
                    format!("the view line could not be encoded: {e}"),
                )
            })?;
            lines
                .push(&group_partition_key(key_text), &scratch.bytes)
                .map_err(|e| {
                    let names: Vec<&str> = parts
                        .iter()
                        .flat_map(|p| self.pipeline.views_of_group(p.group))
                        .map(|v| v.name.as_str())
                        .collect();
                    rejection(
                        Reason::RecordTooLarge,
                        format!("view `{}`: {e}", names.join("`, `")),
                    )
                })?;
            count += 1;
        }
        Ok(count)
    }
}

/// Buffers [`SqlEnrich::pack`] reuses from event to event.
#[derive(Default)]
struct PackScratch {
    bytes: Vec<u8>,
    line: LineScratch,
}

impl<R, O, D, C> SqlEnrich<R, O, D, C> {
    fn reject(
        &self,
        record: &StreamRecord,
        line: usize,
        bytes: &[u8],
        rejection: &Rejection,
        origin: &str,
        dead: &mut Vec<OutRecord>,
    ) {
        dead.push(
            DeadLetter::for_line("enrich", record, line, bytes, rejection)
                .with_origin(Some(origin.to_owned()))
                .into_record(&record.partition_key),
        );
    }
}
