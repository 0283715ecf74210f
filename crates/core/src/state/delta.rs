//! What counted events add to one aggregate item: their statistics (the envelope's
//! metric; for a SQL view, the events counted) and, for a SQL view, one state per
//! aggregate of the view. The planner folds events into deltas and deltas into items.

use crate::sql::{AggregateKind, AggregateState, Value};
use crate::state::item::AggregateItem;
use crate::state::statistics::AggState;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Delta {
    pub stats: AggState,
    /// Empty until a view's first event (always, for the envelope).
    pub columns: Vec<AggregateState>,
}

impl Delta {
    /// Adds one event: its value, and (for a view) each aggregate's input (`None`: its
    /// FILTER left the event out).
    pub fn push(
        &mut self,
        value: f64,
        adds: Option<&[Option<Value>]>,
        fold: Option<&[AggregateKind]>,
    ) {
        self.stats.push(value);
        if let (Some(kinds), Some(adds)) = (fold, adds) {
            start(&mut self.columns, kinds);
            for ((kind, state), add) in kinds.iter().zip(&mut self.columns).zip(adds) {
                if let Some(value) = add {
                    // A value of another type was refused when the line was read.
                    let _ = kind.add(state, value);
                }
            }
        }
    }

    pub fn merge(&mut self, other: &Delta, fold: Option<&[AggregateKind]>) {
        self.stats.merge(&other.stats);
        merge_columns(&mut self.columns, &other.columns, fold);
    }

    /// Folds the delta into a stored item's state.
    pub fn apply(&self, item: &mut AggregateItem, fold: Option<&[AggregateKind]>) {
        item.state.merge(&self.stats);
        merge_columns(&mut item.columns, &self.columns, fold);
    }
}

fn start(columns: &mut Vec<AggregateState>, kinds: &[AggregateKind]) {
    if columns.is_empty() {
        columns.extend(kinds.iter().map(AggregateKind::empty));
    }
}

fn merge_columns(
    into: &mut Vec<AggregateState>,
    other: &[AggregateState],
    fold: Option<&[AggregateKind]>,
) {
    let Some(kinds) = fold else {
        return;
    };
    if other.is_empty() {
        return;
    }
    start(into, kinds);
    for ((kind, state), add) in kinds.iter().zip(into.iter_mut()).zip(other) {
        // Stored states are checked against the view's kinds when read.
        let _ = kind.merge(state, add);
    }
}
