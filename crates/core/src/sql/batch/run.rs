//! Events through a [`Program`]: rows of intermediate views are computed one event at a
//! time; stored views fold them into (window, group) accumulators.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::codec::key_text;
use super::event::{Evaluated, Lookup, References, ViewUpdate, Windows};
use super::plan::{Program, Step, ViewPlan, WindowPlan};
use super::row_json::value_json;
use crate::sql::aggregate::AggregateState;
use crate::sql::exact::Tolerance;
use crate::sql::expr::EvalContext;
use crate::sql::types::SqlType;
use crate::sql::value::Value;

/// Why an update cannot be stored, if it cannot (see [`Evaluation::refuse_with`]).
pub type Refusal<'p> = Box<dyn Fn(&ViewUpdate) -> Option<String> + 'p>;

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
    /// Per aggregate, every non-NULL value an approximate one was given (only when the
    /// evaluation computes exact answers: see [`Evaluation::exact_approximations`]).
    values: Vec<Vec<Value>>,
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
    /// Lateness as the stages judge it, per view (by program index): the anchor window
    /// size and the allowed lateness; `None` (the default, Flink's batch mode): no
    /// lateness at all.
    lateness: Vec<Option<(i64, i64)>>,
    /// Per (view, group key text), the newest anchor window start seen.
    watermarks: HashMap<(usize, String), i64>,
    /// (event, view) updates left out as late.
    pub late: u64,
    /// What the stages cannot store (see [`Evaluation::refuse_with`]).
    refuse: Option<Refusal<'p>>,
    /// Rejected events with their reasons (not kept: counted by reason).
    pub rejected: BTreeMap<String, u64>,
    /// Whether rows hold the exact answers approximate aggregates estimate.
    exact: bool,
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
            lateness: Vec::new(),
            watermarks: HashMap::new(),
            late: 0,
            refuse: None,
            rejected: BTreeMap::new(),
            exact: false,
        }
    }

    /// Rows hold, for each approximate aggregate (`APPROX_PERCENTILE`,
    /// `APPROX_COUNT_DISTINCT`), the exact answer it estimates instead of a sketch's:
    /// the truth `--verify` compares stored estimates with, within each one's
    /// [`Tolerance`](crate::sql::exact::Tolerance). Keeps every value those
    /// aggregates are given.
    pub fn exact_approximations(&mut self) {
        self.exact = true;
    }

    /// Loads one JSON line of reference table `table` (keyed by its key column).
    pub fn load_reference(&mut self, table: &str, line: &[u8]) -> Result<(), String> {
        let (key, row) = self.program.read_reference(table, line)?;
        self.references
            .entry(table.to_owned())
            .or_default()
            .insert(key, row);
        Ok(())
    }

    /// Judges lateness as the stages do, in the order events are pushed: per (view,
    /// group), an event whose anchor window (`anchor_ms` of the view, given by program
    /// view index) ended more than `allowed_ms` before the newest anchor start the group
    /// has seen leaves that view alone. The stages see one group's events in the order
    /// they were produced when the producer keeps them on one partition key.
    pub fn judge_lateness(&mut self, per_view: Vec<Option<(i64, i64)>>) {
        self.lateness = per_view;
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
    fn updates(&mut self, line: &[u8], now_ms: i64) -> Result<Option<Vec<ViewUpdate>>, String> {
        let ctx = EvalContext { now_ms };
        let row = self
            .program
            .source_row(line, &ctx)
            .map_err(|r| r.to_string())?;
        let id = self.program.event_id(&row).map(|id| id_hash(&id));
        if id.is_some_and(|id| self.seen.contains(&id)) {
            return Ok(None);
        }
        let updates =
            match self
                .program
                .view_updates(row, &Loaded(&self.references), &ctx, Windows::Each)?
            {
                Evaluated::Updates(updates) => updates,
                // `Loaded` knows every row there is: a key it lacks is absent.
                Evaluated::NeedsReference(_) => unreachable!("loaded references are complete"),
            };
        if let Some(refuse) = &self.refuse
            && let Some(reason) = updates.iter().find_map(refuse)
        {
            return Err(reason);
        }
        // Only an event taken counts for de-duplication (a refused one left no trace).
        if let Some(id) = id {
            self.seen.insert(id);
        }
        Ok(Some(self.timely(updates)))
    }

    /// Refuses the events for which `refuse` gives a reason for one of their updates,
    /// as the stages refuse what they cannot store (`SqlPipeline::refusal`).
    pub fn refuse_with(&mut self, refuse: Refusal<'p>) {
        self.refuse = Some(refuse);
    }

    /// The updates that are not late (see [`Evaluation::judge_lateness`]): judged once
    /// per (view, group) of the event, every window of it alike.
    fn timely(&mut self, updates: Vec<ViewUpdate>) -> Vec<ViewUpdate> {
        if self.lateness.is_empty() {
            return updates;
        }
        let mut verdicts: HashMap<(usize, String), bool> = HashMap::new();
        let mut kept = Vec::with_capacity(updates.len());
        for u in updates {
            let Some((anchor_ms, allowed_ms)) = self.lateness.get(u.view).copied().flatten() else {
                kept.push(u);
                continue;
            };
            let group = (u.view, key_text(&u.keys));
            let late = *verdicts.entry(group.clone()).or_insert_with(|| {
                let start = u.ts - u.ts.rem_euclid(anchor_ms);
                let end = start.saturating_add(anchor_ms);
                let watermark = self.watermarks.entry(group).or_insert(i64::MIN);
                let late = *watermark != i64::MIN && end.saturating_add(allowed_ms) < *watermark;
                *watermark = (*watermark).max(start);
                if late {
                    self.late += 1;
                }
                late
            });
            if !late {
                kept.push(u);
            }
        }
        kept
    }

    fn apply(&mut self, updates: Vec<ViewUpdate>) {
        for u in updates {
            let WindowPlanRef(w) = self.window(u.view);
            let id = (u.start, u.end, key_text(&u.keys));
            let exact = self.exact;
            let group = self.groups[u.view].entry(id).or_insert_with(|| Group {
                keys: u.keys,
                states: w.aggregates.iter().map(|a| a.kind.empty()).collect(),
                values: match exact {
                    true => w.aggregates.iter().map(|_| Vec::new()).collect(),
                    false => Vec::new(),
                },
            });
            for (i, ((a, state), add)) in w
                .aggregates
                .iter()
                .zip(&mut group.states)
                .zip(&u.adds)
                .enumerate()
            {
                if let Some(value) = add {
                    // The value's type is the argument's compiled type: add cannot fail.
                    let _ = a.kind.add(state, value);
                    if exact && !value.is_null() && a.kind.is_approximate() {
                        group.values[i].push(value.clone());
                    }
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
        let mut rows = Vec::new();
        for (v, view) in self.program.views.iter().enumerate() {
            let aggregates = match &view.step {
                Step::Window(w) => &w.aggregates[..],
                Step::Map(_) => &[],
            };
            for ((start, end, _), group) in &self.groups[v] {
                let exact: Vec<Option<Value>> = match self.exact {
                    true => aggregates
                        .iter()
                        .zip(&group.values)
                        .map(|(a, values)| a.kind.exact_result(values))
                        .collect(),
                    false => Vec::new(),
                };
                rows.push(ResultRow {
                    view: view.name.clone(),
                    json: self.program.write_row(
                        v,
                        (*start, *end),
                        &group.keys,
                        &group.states,
                        &exact,
                        true,
                    )?,
                });
            }
        }
        Ok(rows)
    }
}

impl Program {
    /// The result row of stored view `view` for one (window, group), as a JSON object
    /// by output column name (what `sluice sql eval` and `demo --sql` print).
    pub fn row_json(
        &self,
        view: usize,
        start: i64,
        end: i64,
        keys: &[Value],
        states: &[AggregateState],
    ) -> Result<String, String> {
        self.write_row(view, (start, end), keys, states, &[], true)
    }

    /// [`Program::row_json`]'s values alone, as a JSON array in the view's column order:
    /// the row a window update carries to detect.
    pub fn row_array_json(
        &self,
        view: usize,
        start: i64,
        end: i64,
        keys: &[Value],
        states: &[AggregateState],
    ) -> Result<String, String> {
        self.write_row(view, (start, end), keys, states, &[], false)
    }

    /// The row, with `results[i]` (when `Some`) as aggregate `i`'s result in place of
    /// its state's.
    fn write_row(
        &self,
        view: usize,
        (start, end): (i64, i64),
        keys: &[Value],
        states: &[AggregateState],
        results: &[Option<Value>],
        named: bool,
    ) -> Result<String, String> {
        let (plan, w, mut post) = self.row_inputs(view, start, end, keys, states)?;
        let first = 2 + keys.len();
        for (i, result) in results.iter().enumerate() {
            if let (Some(result), Some(slot)) = (result, post.get_mut(first + i)) {
                *slot = result.clone();
            }
        }
        let ctx = EvalContext::default();
        let mut json = String::from(if named { "{" } else { "[" });
        for (i, (name, c)) in w.outputs.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            if named {
                json.push_str(&serde_json::Value::from(name.as_str()).to_string());
                json.push(':');
            }
            let value = c
                .eval(&post, &ctx)
                .map_err(|e| format!("view `{}`: {e}", plan.name))?;
            value_json(&mut json, &value, &c.ty);
        }
        json.push(if named { '}' } else { ']' });
        Ok(json)
    }

    /// The value of one output column of that row, with its type; `None` when the view
    /// does not select `column`. Only that column is computed, and a column that is an
    /// aggregate, a key or a window bound as it is is read without evaluating anything:
    /// detect reads one or two columns of a row per rule, for every window of a rule's
    /// history. `keys` gives the group's keys, called only when the column needs them.
    pub fn row_column(
        &self,
        view: usize,
        (start, end): (i64, i64),
        keys: &dyn Fn() -> Option<Arc<[Value]>>,
        states: &[AggregateState],
        column: &str,
    ) -> Result<Option<(Value, &SqlType)>, String> {
        let (plan, w) = self.stored_plan(view)?;
        let Some((_, c)) = w.outputs.iter().find(|(name, _)| name == column) else {
            return Ok(None);
        };
        let keys = || {
            keys()
                .ok_or_else(|| format!("view `{}`: the group does not read as its keys", plan.name))
        };
        let key_count = w.keys.len();
        let value = match c.column() {
            Some(0) => Value::Timestamp(start),
            Some(1) => Value::Timestamp(end),
            Some(at) if at < 2 + key_count => keys()?[at - 2].clone(),
            Some(at) => {
                let i = at - 2 - key_count;
                match (w.aggregates.get(i), states.get(i)) {
                    (Some(a), Some(_)) => a.kind.result_in(states, i),
                    _ => return Err(format!("view `{}`: no state {i}", plan.name)),
                }
            }
            None => {
                let (_, _, post) = self.row_inputs(view, start, end, &keys()?, states)?;
                c.eval(&post, &EvalContext::default())
                    .map_err(|e| format!("view `{}`: {e}", plan.name))?
            }
        };
        Ok(Some((value, &c.ty)))
    }

    /// What a stored view's output columns are evaluated over: the window's bounds, the
    /// group's keys and each aggregate's result.
    fn row_inputs(
        &self,
        view: usize,
        start: i64,
        end: i64,
        keys: &[Value],
        states: &[AggregateState],
    ) -> Result<(&ViewPlan, &WindowPlan, Vec<Value>), String> {
        let (plan, w) = self.stored_plan(view)?;
        let mut post = vec![Value::Timestamp(start), Value::Timestamp(end)];
        post.extend(keys.iter().cloned());
        post.extend(
            w.aggregates
                .iter()
                .enumerate()
                .map(|(i, a)| a.kind.result_in(states, i)),
        );
        Ok((plan, w, post))
    }

    /// The output columns of stored view `view` (by name) that read an approximate
    /// aggregate, with the loosest tolerance among those they read: where a row's
    /// estimate may differ from the exact answer (`Evaluation::exact_approximations`).
    pub fn approximate_columns(&self, view: &str) -> Vec<(String, Tolerance)> {
        let Some(Step::Window(w)) = self.views.iter().find(|v| v.name == view).map(|v| &v.step)
        else {
            return Vec::new();
        };
        let first = 2 + w.keys.len();
        w.outputs
            .iter()
            .filter_map(|(name, c)| {
                let loosest = c
                    .columns_read()
                    .into_iter()
                    .filter_map(|slot| w.aggregates.get(slot.checked_sub(first)?))
                    .filter_map(|a| a.kind.tolerance())
                    .reduce(|a, b| Tolerance {
                        relative: a.relative.max(b.relative),
                        absolute: a.absolute.max(b.absolute),
                    })?;
                Some((name.clone(), loosest))
            })
            .collect()
    }

    /// View `view` and its windowed aggregation, if it is stored.
    fn stored_plan(&self, view: usize) -> Result<(&ViewPlan, &WindowPlan), String> {
        let plan = &self.views[view];
        match &plan.step {
            Step::Window(w) => Ok((plan, w)),
            _ => Err(format!("view `{}` is not stored", plan.name)),
        }
    }
}

struct WindowPlanRef<'a>(&'a WindowPlan);

/// The reference rows loaded into an evaluation: complete, so a key not there is absent.
struct Loaded<'a>(&'a HashMap<String, HashMap<String, Vec<Value>>>);

impl References for Loaded<'_> {
    fn get(&self, table: &str, key: &str) -> Lookup<'_> {
        match self.0.get(table).and_then(|rows| rows.get(key)) {
            Some(row) => Lookup::Found(row),
            None => Lookup::Absent,
        }
    }
}

/// A 64-bit hash of an event id (SipHash with fixed keys: the same on every run).
fn id_hash(id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}
