//! One event through a [`Program`]: its source row, its id, and the updates it makes to
//! the stored views. `run.rs` (the batch evaluation) and the stages run this same code,
//! so what the stages store and what `sluice sql eval` prints differ only in what each
//! adds on top (lateness and delivery, for the stages).

use super::codec::key_text;
use super::plan::{MapPlan, Program, Projection, Step, WindowPlan};
use crate::sql::expr::EvalContext;
use crate::sql::json::Rejection;
use crate::sql::types::SqlType;
use crate::sql::value::Value;
use crate::sql::view::WindowKind;

/// A reference row looked up by its table and key text ([`key_text`] of the key).
pub enum Lookup<'a> {
    Found(&'a [Value]),
    /// No row has that key.
    Absent,
    /// Not known yet: the caller fetches it and evaluates the event again.
    Unknown,
}

/// Where lookup joins find reference rows.
pub trait References {
    fn get(&self, table: &str, key: &str) -> Lookup<'_>;
}

/// One update of a stored view by one event.
#[derive(Clone, Debug, PartialEq)]
pub struct ViewUpdate {
    /// Index of the view among the program's views.
    pub view: usize,
    /// The window: `[start, end)`. For [`Windows::PerEvent`], the event's first
    /// window (the stages derive every window from `ts`).
    pub start: i64,
    pub end: i64,
    /// The event time.
    pub ts: i64,
    pub keys: Vec<Value>,
    /// Per aggregate, the value to add (`None`: not added, by its FILTER).
    pub adds: Vec<Option<Value>>,
}

/// How many updates a windowed view gets per event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Windows {
    /// One per window the event falls in (the batch evaluation).
    Each,
    /// One per view: the stages fold one event into every window from its time. Valid
    /// only for views whose WHERE, GROUP BY and aggregate arguments do not read the window
    /// columns ([`Program::window_independent`]); a TUMBLE view has one window anyway.
    PerEvent,
}

/// What evaluating one event gave.
#[derive(Debug, PartialEq)]
pub enum Evaluated {
    Updates(Vec<ViewUpdate>),
    /// Reference rows (table, key text) to fetch before the event can be evaluated.
    NeedsReference(Vec<(String, String)>),
}

impl Program {
    /// The source row of one record: its physical columns read from the JSON line, then
    /// its computed columns.
    pub fn source_row(&self, line: &[u8], ctx: &EvalContext) -> Result<Vec<Value>, Rejection> {
        let row = self.source.reader.read(line)?;
        self.computed_columns(row, ctx, |_| true)
    }

    /// The source's physical columns, in order: (name, type).
    pub fn physical_columns(&self) -> &[(String, SqlType)] {
        &self.source.columns[..self.source.reader.columns().len()]
    }

    /// The source's computed columns, in order: (name, type).
    pub fn computed_columns_of_source(&self) -> &[(String, SqlType)] {
        &self.source.columns[self.source.reader.columns().len()..]
    }

    /// Writes the physical columns of a source row as one JSON array of their
    /// encodings ([`codec`](super::codec)), `null` for a column `keep` leaves out: the
    /// row travels between the stages typed, read back by [`Self::source_row_encoded`]
    /// without names, field lookups or timestamp formats.
    pub fn write_encoded_row(&self, row: &[Value], keep: &[bool], out: &mut Vec<u8>) {
        out.push(b'[');
        for (i, value) in row[..self.physical_columns().len()].iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match keep.get(i) {
                Some(true) => super::codec::write_value(out, value),
                _ => out.extend_from_slice(b"null"),
            }
        }
        out.push(b']');
    }

    /// The source row from [`Self::write_encoded_row`]'s text, then the computed
    /// columns `computed` keeps (NULL for the others, which no view reads).
    pub fn source_row_encoded(
        &self,
        text: &str,
        computed: &[bool],
        ctx: &EvalContext,
    ) -> Result<Vec<Value>, Rejection> {
        use serde::de::{DeserializeSeed, Error as _, SeqAccess, Visitor};
        struct Encoded<'t>(&'t [(String, SqlType)], usize);
        impl<'de> Visitor<'de> for Encoded<'_> {
            type Value = Vec<Value>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of a source row's encoded columns")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
                let mut row = Vec::with_capacity(self.1);
                for (name, ty) in self.0 {
                    let raw: &'de serde_json::value::RawValue = seq
                        .next_element()?
                        .ok_or_else(|| A::Error::custom("too few columns"))?;
                    let value = super::codec::decode_text(raw.get(), ty).ok_or_else(|| {
                        A::Error::custom(format!("column `{name}` is not an encoded {ty}"))
                    })?;
                    row.push(value);
                }
                match seq.next_element::<serde::de::IgnoredAny>()? {
                    Some(_) => Err(A::Error::custom("too many columns")),
                    None => Ok(row),
                }
            }
        }
        impl<'de> DeserializeSeed<'de> for Encoded<'_> {
            type Value = Vec<Value>;
            fn deserialize<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<Vec<Value>, D::Error> {
                d.deserialize_seq(self)
            }
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let row = Encoded(self.physical_columns(), self.source.columns.len())
            .deserialize(&mut de)
            .and_then(|row| de.end().map(|()| row))
            .map_err(|e| Rejection {
                column: None,
                reason: format!("not an encoded source row: {e}"),
            })?;
        self.computed_columns(row, ctx, |c| computed.get(c).copied().unwrap_or(true))
    }

    /// Appends the computed columns to a row of physical columns; those `keep` leaves
    /// out are NULL.
    fn computed_columns(
        &self,
        mut row: Vec<Value>,
        ctx: &EvalContext,
        keep: impl Fn(usize) -> bool,
    ) -> Result<Vec<Value>, Rejection> {
        let source = &self.source;
        let physical = source.reader.columns().len();
        for (i, (c, (name, _))) in source
            .computed
            .iter()
            .zip(&source.columns[physical..source.columns.len()])
            .enumerate()
        {
            if !keep(i) {
                row.push(Value::Null);
                continue;
            }
            let v = c.eval(&row[..physical], ctx).map_err(|e| Rejection {
                column: Some(name.clone()),
                reason: e.to_string(),
            })?;
            row.push(v);
        }
        Ok(row)
    }

    /// The event id: the `PRIMARY KEY` columns' [`key_text`], if the source has one.
    pub fn event_id(&self, row: &[Value]) -> Option<String> {
        let id = &self.source.id;
        (!id.is_empty()).then(|| {
            let values: Vec<Value> = id.iter().map(|&i| row[i].clone()).collect();
            key_text(&values)
        })
    }

    /// The updates one source row makes to the stored views.
    pub fn view_updates(
        &self,
        row: Vec<Value>,
        references: &impl References,
        ctx: &EvalContext,
        windows: Windows,
    ) -> Result<Evaluated, String> {
        self.view_updates_except(row, references, ctx, windows, &[])
    }

    /// [`Self::view_updates`] without the stored views `skip` marks (by program index;
    /// beyond its end, none): the stages skip views whose updates another view's give.
    pub fn view_updates_except(
        &self,
        row: Vec<Value>,
        references: &impl References,
        ctx: &EvalContext,
        windows: Windows,
        skip: &[bool],
    ) -> Result<Evaluated, String> {
        let mut relations: Vec<Option<Vec<Value>>> = vec![Some(row)];
        let mut updates = Vec::new();
        let mut missing = Vec::new();
        for (v, view) in self.views.iter().enumerate() {
            let out = match &view.step {
                Step::Map(m) => match &relations[m.input] {
                    Some(input) => match self.map_row(m, input, references, ctx)? {
                        MapOut::Row(row) => Some(row),
                        MapOut::Dropped => None,
                        MapOut::Needs(table, key) => {
                            missing.push((table, key));
                            None
                        }
                    },
                    None => None,
                },
                Step::Window(w) => {
                    if let Some(input) = &relations[w.input]
                        && !skip.get(v).copied().unwrap_or(false)
                    {
                        window_updates(v, w, input, ctx, windows, &mut updates)?;
                    }
                    None
                }
            };
            relations.push(out);
        }
        Ok(match missing.is_empty() {
            true => Evaluated::Updates(updates),
            false => Evaluated::NeedsReference(missing),
        })
    }

    fn map_row(
        &self,
        m: &MapPlan,
        input: &[Value],
        references: &impl References,
        ctx: &EvalContext,
    ) -> Result<MapOut, String> {
        let width = match &m.join {
            Some(join) => self.references[&join.reference].columns.len(),
            None => 0,
        };
        // Sized once: the joined row never grows its buffer again.
        let mut row = Vec::with_capacity(input.len() + width);
        row.extend_from_slice(input);
        if let Some(join) = &m.join {
            let key = join
                .stream_key
                .eval(input, ctx)
                .map_err(|e| e.to_string())?;
            let text = key_text(std::slice::from_ref(&key));
            let found = match key.is_null() {
                true => Lookup::Absent,
                false => references.get(&join.reference, &text),
            };
            match found {
                Lookup::Found(r) => row.extend(r.iter().cloned()),
                Lookup::Absent if join.left => row.extend(std::iter::repeat_n(Value::Null, width)),
                Lookup::Absent => return Ok(MapOut::Dropped),
                Lookup::Unknown => return Ok(MapOut::Needs(join.reference.clone(), text)),
            }
        }
        if let Some(filter) = &m.filter
            && filter.eval(&row, ctx).map_err(|e| e.to_string())? != Value::Boolean(true)
        {
            return Ok(MapOut::Dropped);
        }
        let mut out = Vec::with_capacity(m.project.len());
        for p in &m.project {
            out.push(match p {
                Projection::Column(i) => row[*i].clone(),
                Projection::Expr(c) => c.eval(&row, ctx).map_err(|e| e.to_string())?,
            });
        }
        Ok(MapOut::Row(out))
    }

    /// Whether stored views `a` and `b` (program indexes) are TUMBLE views that take the
    /// same events into the same groups with the same aggregate inputs, differing at most
    /// in their window size and select list: then their rows can share one group of
    /// items (one line per event, one set of event ids, one watermark). Views that read
    /// the window columns before aggregating are never alike.
    pub fn fold_alike(&self, a: usize, b: usize) -> bool {
        let plan = |v: usize| match self.views.get(v).map(|v| &v.step) {
            Some(Step::Window(w))
                if matches!(w.kind, WindowKind::Tumble { .. }) && !w.reads_window =>
            {
                Some(w)
            }
            _ => None,
        };
        let (Some(a), Some(b)) = (plan(a), plan(b)) else {
            return false;
        };
        let same = |x: &Option<crate::sql::expr::Compiled>,
                    y: &Option<crate::sql::expr::Compiled>| match (x, y) {
            (None, None) => true,
            (Some(x), Some(y)) => x.same_computation(y),
            _ => false,
        };
        a.input == b.input
            && a.time == b.time
            && same(&a.filter, &b.filter)
            && a.keys.len() == b.keys.len()
            && a.keys
                .iter()
                .zip(&b.keys)
                .all(|(x, y)| x.same_computation(y))
            && a.aggregates.len() == b.aggregates.len()
            && a.aggregates.iter().zip(&b.aggregates).all(|(x, y)| {
                x.kind == y.kind && same(&x.arg, &y.arg) && same(&x.filter, &y.filter)
            })
    }

    /// Whether some view (intermediate or stored) has a WHERE.
    pub fn has_filters(&self) -> bool {
        self.views.iter().any(|view| match &view.step {
            Step::Map(m) => m.filter.is_some(),
            Step::Window(w) => w.filter.is_some(),
        })
    }

    /// Whether no view takes the event whatever the reference data holds: its row is
    /// in no stored view when every lookup join is left out. An event some view may
    /// take (it needs a reference row to tell), or whose evaluation fails (the stage
    /// that has the reference data dead-letters it), is taken.
    pub fn taken_by_no_view(&self, row: Vec<Value>, ctx: &EvalContext) -> bool {
        struct Unknown;
        impl References for Unknown {
            fn get(&self, _: &str, _: &str) -> Lookup<'_> {
                Lookup::Unknown
            }
        }
        matches!(
            self.view_updates(row, &Unknown, ctx, Windows::PerEvent),
            Ok(Evaluated::Updates(updates)) if updates.is_empty()
        )
    }

    /// Whether every stored view's WHERE, GROUP BY and aggregate arguments and filters
    /// leave the window columns alone: then one update per (event, view) says it all
    /// ([`Windows::PerEvent`]). The name of the first view that reads them otherwise.
    pub fn window_dependent_view(&self) -> Option<&str> {
        self.views.iter().find_map(|view| match &view.step {
            Step::Window(w) if matches!(w.kind, WindowKind::Hop { .. }) => {
                let width = w.width;
                let reads = |c: &crate::sql::expr::Compiled| c.reads_columns_from(width);
                let dependent = w.filter.as_ref().is_some_and(reads)
                    || w.keys.iter().any(reads)
                    || w.aggregates.iter().any(|a| {
                        a.arg.as_ref().is_some_and(reads) || a.filter.as_ref().is_some_and(reads)
                    });
                dependent.then_some(view.name.as_str())
            }
            _ => None,
        })
    }
}

enum MapOut {
    Row(Vec<Value>),
    Dropped,
    Needs(String, String),
}

/// The updates of windowed view `v` for one input row.
fn window_updates(
    v: usize,
    w: &WindowPlan,
    input: &[Value],
    ctx: &EvalContext,
    mode: Windows,
    updates: &mut Vec<ViewUpdate>,
) -> Result<(), String> {
    let ts = match &input[w.time] {
        Value::Timestamp(ms) | Value::TimestampLtz(ms) => *ms,
        // A row without event time is in no window (as in Flink).
        _ => return Ok(()),
    };
    let (one, many);
    let all: &[(i64, i64)] = match mode {
        Windows::PerEvent => {
            one = [first_window(w.kind, ts)];
            &one
        }
        Windows::Each => {
            many = windows(w.kind, ts);
            &many
        }
    };
    let mut with_window = Vec::new();
    for &(start, end) in all {
        let row: &[Value] = match w.reads_window {
            true => {
                with_window.clear();
                with_window.extend_from_slice(input);
                with_window.extend([
                    Value::Timestamp(start),
                    Value::Timestamp(end),
                    Value::TimestampLtz(end - 1),
                ]);
                &with_window
            }
            false => input,
        };
        if let Some(filter) = &w.filter
            && filter.eval(row, ctx).map_err(|e| e.to_string())? != Value::Boolean(true)
        {
            continue;
        }
        let keys: Vec<Value> = w
            .keys
            .iter()
            .map(|k| k.eval(row, ctx).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let mut adds = Vec::with_capacity(w.aggregates.len());
        for a in &w.aggregates {
            if let Some(f) = &a.filter
                && f.eval(row, ctx).map_err(|e| e.to_string())? != Value::Boolean(true)
            {
                adds.push(None);
                continue;
            }
            adds.push(Some(match &a.arg {
                Some(arg) => arg.eval(row, ctx).map_err(|e| e.to_string())?,
                // COUNT(*): any non-NULL value counts the row.
                None => Value::Boolean(true),
            }));
        }
        updates.push(ViewUpdate {
            view: v,
            start,
            end,
            ts,
            keys,
            adds,
        });
    }
    Ok(())
}

/// The first of [`windows`], without a vector.
pub(super) fn first_window(kind: WindowKind, ts: i64) -> (i64, i64) {
    match kind {
        WindowKind::Tumble { size_ms } => {
            let start = ts - ts.rem_euclid(size_ms);
            (start, start + size_ms)
        }
        WindowKind::Hop { slide_ms, size_ms } => {
            let last = ts - ts.rem_euclid(slide_ms);
            // The earliest start after `ts - size_ms` on the slide's grid.
            let behind = (last - (ts - size_ms) - 1) / slide_ms;
            let start = last - behind * slide_ms;
            (start, start + size_ms)
        }
    }
}

/// The windows an event time falls in: `[start, end)`, starts aligned to the epoch.
pub(super) fn windows(kind: WindowKind, ts: i64) -> Vec<(i64, i64)> {
    match kind {
        WindowKind::Tumble { size_ms } => {
            let start = ts - ts.rem_euclid(size_ms);
            vec![(start, start + size_ms)]
        }
        WindowKind::Hop { slide_ms, size_ms } => {
            let last = ts - ts.rem_euclid(slide_ms);
            let mut out = Vec::new();
            let mut start = last;
            while start > ts - size_ms {
                out.push((start, start + size_ms));
                start -= slide_ms;
            }
            out.reverse();
            out
        }
    }
}
