//! Events through a [`Program`]: rows of intermediate views are computed one event at a
//! time; stored views fold them into (window, group) accumulators.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::plan::{MapPlan, Program, Projection, Step, WindowPlan};
use super::row_json::value_json;
use crate::sql::aggregate::AggregateState;
use crate::sql::expr::EvalContext;
use crate::sql::value::Value;
use crate::sql::view::WindowKind;
use crate::state::fingerprint::fingerprint;

/// One result row of a stored view, as a JSON object by column name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultRow {
    pub view: String,
    pub json: String,
}

/// A group of a stored view: its window and key values, one state per aggregate.
struct Group {
    keys: Vec<Value>,
    states: Vec<AggregateState>,
}

/// (window start, window end, the keys as JSON): the order rows come out in.
type GroupId = (i64, i64, String);

/// The state of an evaluation: reference rows, seen event ids, the groups of every
/// stored view, and what happened to each event.
pub struct Evaluation<'p> {
    program: &'p Program,
    /// Per reference table, rows by the key's JSON text.
    references: HashMap<String, HashMap<String, Vec<Value>>>,
    /// Fingerprints of the event ids seen (64 bits each: the chance that two of n ids
    /// collide is about n² / 2^65, as for the stages' fingerprints).
    seen: HashSet<u64>,
    groups: Vec<BTreeMap<GroupId, Group>>,
    pub events: u64,
    pub duplicates: u64,
    /// Rejected events with their reasons (not kept: counted by reason).
    pub rejected: BTreeMap<String, u64>,
}

/// One update of a stored view, computed before any is applied so an event that fails
/// changes nothing.
struct Update {
    view: usize,
    id: GroupId,
    keys: Vec<Value>,
    /// Per aggregate, the value to add (`None`: not added, by its FILTER or COUNT(*)'s
    /// nothing-to-read).
    adds: Vec<Option<Value>>,
}

impl<'p> Evaluation<'p> {
    pub fn new(program: &'p Program) -> Evaluation<'p> {
        Evaluation {
            program,
            references: HashMap::new(),
            seen: HashSet::new(),
            groups: program.views.iter().map(|_| BTreeMap::new()).collect(),
            events: 0,
            duplicates: 0,
            rejected: BTreeMap::new(),
        }
    }

    /// Loads one JSON line of reference table `table` (keyed by its key column).
    pub fn load_reference(&mut self, table: &str, line: &[u8]) -> Result<(), String> {
        let plan = self
            .program
            .references
            .get(table)
            .ok_or_else(|| format!("`{table}` is not a reference table of the pipeline"))?;
        let row = plan.reader.read(line).map_err(|r| r.to_string())?;
        let key = json_key(&row[plan.key..=plan.key]);
        self.references
            .entry(table.to_owned())
            .or_default()
            .insert(key, row);
        Ok(())
    }

    /// Evaluates one event (a JSON line); `now_ms` is what `PROCTIME()` returns.
    pub fn push(&mut self, line: &[u8], now_ms: i64) {
        self.events += 1;
        match self.updates(line, now_ms) {
            Ok(None) => self.duplicates += 1,
            Ok(Some(updates)) => self.apply(updates),
            Err(reason) => *self.rejected.entry(reason).or_default() += 1,
        }
    }

    /// The updates one event makes (`None`: a duplicate of an event already counted).
    fn updates(&mut self, line: &[u8], now_ms: i64) -> Result<Option<Vec<Update>>, String> {
        let ctx = EvalContext { now_ms };
        let source = &self.program.source;
        let mut row = source.reader.read(line).map_err(|r| r.to_string())?;
        for c in &source.computed {
            let v = c
                .eval(&row[..source.reader.columns().len()], &ctx)
                .map_err(|e| e.to_string())?;
            row.push(v);
        }
        if !source.id.is_empty() {
            let ids: Vec<Value> = source.id.iter().map(|&i| row[i].clone()).collect();
            if !self.seen.insert(fingerprint(&json_key(&ids))) {
                return Ok(None);
            }
        }
        let mut relations: Vec<Option<Vec<Value>>> = vec![Some(row)];
        let mut updates = Vec::new();
        for (v, view) in self.program.views.iter().enumerate() {
            let out = match &view.step {
                Step::Map(m) => match &relations[m.input] {
                    Some(input) => self.map_row(m, input, &ctx)?,
                    None => None,
                },
                Step::Window(w) => {
                    if let Some(input) = &relations[w.input] {
                        window_updates(v, w, input, &ctx, &mut updates)?;
                    }
                    None
                }
            };
            relations.push(out);
        }
        Ok(Some(updates))
    }

    fn map_row(
        &self,
        m: &MapPlan,
        input: &[Value],
        ctx: &EvalContext,
    ) -> Result<Option<Vec<Value>>, String> {
        let mut row = input.to_vec();
        if let Some(join) = &m.join {
            let key = join
                .stream_key
                .eval(input, ctx)
                .map_err(|e| e.to_string())?;
            let width = self.program.references[&join.reference].columns.len();
            let found = (!key.is_null())
                .then(|| {
                    self.references
                        .get(&join.reference)?
                        .get(&json_key(std::slice::from_ref(&key)))
                })
                .flatten();
            match found {
                Some(r) => row.extend(r.iter().cloned()),
                None if join.left => row.extend(std::iter::repeat_n(Value::Null, width)),
                None => return Ok(None),
            }
        }
        if let Some(filter) = &m.filter
            && filter.eval(&row, ctx).map_err(|e| e.to_string())? != Value::Boolean(true)
        {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(m.project.len());
        for p in &m.project {
            out.push(match p {
                Projection::Column(i) => row[*i].clone(),
                Projection::Expr(c) => c.eval(&row, ctx).map_err(|e| e.to_string())?,
            });
        }
        Ok(Some(out))
    }

    fn apply(&mut self, updates: Vec<Update>) {
        for u in updates {
            let WindowPlanRef(w) = self.window(u.view);
            let group = self.groups[u.view].entry(u.id).or_insert_with(|| Group {
                keys: u.keys,
                states: w.aggregates.iter().map(|a| a.kind.empty()).collect(),
            });
            for ((a, state), add) in w.aggregates.iter().zip(&mut group.states).zip(&u.adds) {
                if let Some(value) = add {
                    // The value's type is the argument's compiled type: add cannot fail.
                    let _ = a.kind.add(state, value);
                }
            }
        }
    }

    fn window(&self, view: usize) -> WindowPlanRef<'p> {
        match &self.program.views[view].step {
            Step::Window(w) => WindowPlanRef(w),
            Step::Map(_) => unreachable!("updates are made for windowed views only"),
        }
    }

    /// Every stored view's rows: by view, then window, then group keys.
    pub fn rows(&self) -> Result<Vec<ResultRow>, String> {
        let ctx = EvalContext::default();
        let mut rows = Vec::new();
        for (v, view) in self.program.views.iter().enumerate() {
            let Step::Window(w) = &view.step else {
                continue;
            };
            for ((start, end, _), group) in &self.groups[v] {
                let mut post = vec![Value::Timestamp(*start), Value::Timestamp(*end)];
                post.extend(group.keys.iter().cloned());
                post.extend(
                    w.aggregates
                        .iter()
                        .zip(&group.states)
                        .map(|(a, s)| a.kind.result(s)),
                );
                let mut json = String::from("{");
                for (i, (name, c)) in w.outputs.iter().enumerate() {
                    if i > 0 {
                        json.push(',');
                    }
                    json.push_str(&serde_json::Value::from(name.as_str()).to_string());
                    json.push(':');
                    let value = c
                        .eval(&post, &ctx)
                        .map_err(|e| format!("view `{}`: {e}", view.name))?;
                    value_json(&mut json, &value, &c.ty);
                }
                json.push('}');
                rows.push(ResultRow {
                    view: view.name.clone(),
                    json,
                });
            }
        }
        Ok(rows)
    }
}

struct WindowPlanRef<'a>(&'a WindowPlan);

/// The updates of windowed view `v` for one input row.
fn window_updates(
    v: usize,
    w: &WindowPlan,
    input: &[Value],
    ctx: &EvalContext,
    updates: &mut Vec<Update>,
) -> Result<(), String> {
    let ts = match &input[w.time] {
        Value::Timestamp(ms) | Value::TimestampLtz(ms) => *ms,
        // A row without event time is in no window (as in Flink).
        _ => return Ok(()),
    };
    for (start, end) in windows(w.kind, ts) {
        let mut row = input.to_vec();
        row.extend([
            Value::Timestamp(start),
            Value::Timestamp(end),
            Value::TimestampLtz(end - 1),
        ]);
        if let Some(filter) = &w.filter
            && filter.eval(&row, ctx).map_err(|e| e.to_string())? != Value::Boolean(true)
        {
            continue;
        }
        let keys: Vec<Value> = w
            .keys
            .iter()
            .map(|k| k.eval(&row, ctx).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let mut adds = Vec::with_capacity(w.aggregates.len());
        for a in &w.aggregates {
            if let Some(f) = &a.filter
                && f.eval(&row, ctx).map_err(|e| e.to_string())? != Value::Boolean(true)
            {
                adds.push(None);
                continue;
            }
            adds.push(Some(match &a.arg {
                Some(arg) => arg.eval(&row, ctx).map_err(|e| e.to_string())?,
                // COUNT(*): any non-NULL value counts the row.
                None => Value::Boolean(true),
            }));
        }
        updates.push(Update {
            view: v,
            id: (start, end, json_key(&keys)),
            keys,
            adds,
        });
    }
    Ok(())
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

/// Values as one hashable text (their JSON, types aside: keys of one column share one).
fn json_key(values: &[Value]) -> String {
    let mut out = String::new();
    for v in values {
        out.push_str(&format!("{v:?}"));
        out.push('\u{1f}');
    }
    out
}
