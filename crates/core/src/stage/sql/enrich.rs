//! Enrich under a SQL pipeline: each source line through the views (lookup joins read
//! reference rows through the cached port, fetched for the whole batch at once), then
//! one [`ViewLine`] per (event, stored view), keyed by the view's group.
//!
//! Reference rows live in the reference table under the key `table#<key text>` with the
//! row's JSON line in the attribute `row` ([`reference_key`], [`REFERENCE_ROW`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::{SourceLine, SqlPipeline};
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
            for (line, bytes) in record.data.split(|b| *b == b'\n').enumerate() {
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
        for event in &events {
            let record = &records[event.record];
            let origin: &str = &event.source.origin;
            match event.result.as_ref() {
                Some(Ok(updates)) if updates.is_empty() => {
                    settle.push((origin.to_owned(), Fate::Filtered));
                }
                Some(Ok(updates)) => {
                    let packed = self.pack(&event.source, updates, &mut lines);
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
                        id: Some(event.source.id.to_string()),
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
                let row = match program.source_row(event.source.e.get().as_bytes(), &ctx) {
                    Ok(row) => row,
                    Err(r) => {
                        event.result = Some(Err(r.to_string()));
                        continue;
                    }
                };
                match program.view_updates(row, &fetched, &ctx, Windows::PerEvent) {
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

    /// Step: one event's view lines into the packer; how many.
    fn pack(
        &self,
        source: &SourceLine<'_>,
        updates: &[ViewUpdate],
        lines: &mut LinePacker,
    ) -> std::result::Result<u64, Rejection> {
        // Every update is checked before any line is packed: an event is refused whole.
        let keys: Vec<String> = updates.iter().map(|u| codec::key_text(&u.keys)).collect();
        let refused = updates
            .iter()
            .zip(&keys)
            .find_map(|(u, k)| self.pipeline.refusal_with_key(u, k));
        if let Some(detail) = refused {
            return Err(Rejection {
                reason: Reason::InvalidValue,
                field: None,
                detail,
                id: Some(source.id.to_string()),
            });
        }
        let mut bytes = Vec::new();
        for (update, key_text) in updates.iter().zip(keys) {
            let Some(view) = self.pipeline.view_at(update.view) else {
                continue;
            };
            bytes.clear();
            write_view_line(&mut bytes, &view.id, &key_text, update, source).map_err(|e| {
                Rejection {
                    reason: Reason::InvalidValue,
                    field: None,
                    detail: format!("the view line could not be encoded: {e}"),
                    id: Some(source.id.to_string()),
                }
            })?;
            lines
                .push(&view.partition_key(&key_text), &bytes)
                .map_err(|e| Rejection {
                    reason: Reason::RecordTooLarge,
                    field: None,
                    detail: format!("view `{}`: {e}", view.name),
                    id: Some(source.id.to_string()),
                })?;
        }
        Ok(updates.len() as u64)
    }
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

/// Writes the [`ViewLine`] JSON of one update (the bytes `serde_json` gives for the
/// struct, field for field), each input written from its value without building a JSON
/// value first.
fn write_view_line(
    out: &mut Vec<u8>,
    view_id: &str,
    key_text: &str,
    update: &ViewUpdate,
    source: &SourceLine<'_>,
) -> serde_json::Result<()> {
    out.extend_from_slice(b"{\"v\":");
    serde_json::to_writer(&mut *out, view_id)?;
    out.extend_from_slice(b",\"k\":");
    serde_json::to_writer(&mut *out, key_text)?;
    out.extend_from_slice(b",\"t\":");
    serde_json::to_writer(&mut *out, &update.ts)?;
    out.extend_from_slice(b",\"id\":");
    serde_json::to_writer(&mut *out, source.id.as_ref())?;
    out.extend_from_slice(b",\"origin\":");
    serde_json::to_writer(&mut *out, source.origin.as_ref())?;
    out.extend_from_slice(b",\"a\":[");
    for (i, add) in update.adds.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match add {
            Some(value) => codec::write_value(out, value),
            None => out.extend_from_slice(b"null"),
        }
    }
    out.push(b']');
    let skipped: Vec<usize> = (0..update.adds.len())
        .filter(|&i| update.adds[i].is_none())
        .collect();
    if !skipped.is_empty() {
        out.extend_from_slice(b",\"skip\":");
        serde_json::to_writer(&mut *out, &skipped)?;
    }
    out.push(b'}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::sql::Decimal;
    use crate::stage::sql::ViewLine;

    #[test]
    fn a_view_line_is_written_as_serde_writes_the_struct() {
        let raw: &serde_json::value::RawValue = serde_json::from_str(r#"{"x":1}"#).expect("JSON");
        let source = SourceLine {
            id: Cow::Borrowed("p-\"1"),
            origin: Cow::Borrowed("s:1:0"),
            e: raw,
        };
        for adds in [
            vec![
                Some(Value::BigInt(3)),
                None,
                Some(Value::String("é\n".into())),
            ],
            vec![
                Some(Value::Double(f64::NAN)),
                Some(Value::Decimal(Decimal::parse("1.50").expect("decimal"))),
                Some(Value::Null),
            ],
        ] {
            let update = ViewUpdate {
                view: 0,
                start: 0,
                end: 60_000,
                ts: 1234,
                keys: vec![Value::String("DE".into())],
                adds,
            };
            let key = codec::key_text(&update.keys);
            let mut written = Vec::new();
            write_view_line(&mut written, "v1", &key, &update, &source).expect("writes");
            let by_serde = serde_json::to_vec(&ViewLine {
                v: "v1",
                k: Cow::Borrowed(&key),
                t: update.ts,
                id: Cow::Borrowed(&source.id),
                origin: Cow::Borrowed(&source.origin),
                a: update
                    .adds
                    .iter()
                    .map(|a| a.as_ref().map_or(serde_json::Value::Null, codec::encode))
                    .collect(),
                skip: (0..update.adds.len())
                    .filter(|&i| update.adds[i].is_none())
                    .collect(),
            })
            .expect("serde writes");
            assert_eq!(
                String::from_utf8(written).expect("UTF-8"),
                String::from_utf8(by_serde).expect("UTF-8")
            );
        }
    }
}
