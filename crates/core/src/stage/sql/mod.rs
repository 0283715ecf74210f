//! A Flink SQL pipeline on the stages (issue 17): what each stage does with a
//! [`Program`], and the lines the stages pass each other ([`mod@line`]).
//!
//! - **Ingest** reads each raw line into the source row (a line that cannot be read is a
//!   dead letter naming the column), computes its event id (the `PRIMARY KEY`, else the
//!   line's origin), settles `filtered` an event no view can take without reference data
//!   ([`SqlPipeline::ingest_filters`]) and passes on the columns the views read, typed:
//!   [`SourceLine`], keyed by the raw record's partition key.
//! - **Enrich** ([`enrich::SqlEnrich`]) evaluates the views (lookup joins through its
//!   cached reference port) and re-partitions: one [`ViewLine`] per event and group key
//!   text its views share, keyed by that text ([`group_partition_key`]), as Flink's
//!   `keyBy` does, so that a group's events reach one aggregate invocation in order.
//! - **Aggregate** folds view lines into one item per (group of items, group key,
//!   window) with the envelope's exactly-once machinery ([`SqlPipeline::plan_settings`]).
//!   A group of items is a view's, or that of TUMBLE views alike but for their size
//!   ([`StoredView::group`]), each view's rows being its window's items.
//!
//! A view's id is a digest of its definition and of everything it reads: a changed view
//! starts with fresh state instead of mixing two definitions.

pub mod enrich;
pub mod line;
pub mod read_line;

pub use line::{SourceLine, ViewLine};

use std::borrow::Cow;
use std::collections::HashMap;

use crate::config::AggregateConfig;
use crate::error::{Error, Result};
use crate::input::envelope::{Reason, Rejection};
use crate::sql::{
    AggregateKind, EvalContext, Pipeline, Program, SqlType, Value, WindowKind, codec, json_equals,
    json_number,
};
use crate::state::fingerprint::digest_hex;
use crate::state::idempotency::PlanSettings;
use crate::state::item::{GroupKey, ItemKey};
use crate::state::row_text::RowText;
use crate::state::window::{WindowSet, WindowSpec};

/// The longest string a MIN/MAX of STRING keeps: a longer input is a dead letter, so a
/// view item's size has a bound ([`StoredView::max_columns_bytes`]).
pub const MAX_EXTREME_STRING_BYTES: usize = 1024;

/// The most bytes a view's aggregate states may take in its item, at their largest: a
/// DynamoDB item holds 400 KB, and an anchor item also holds up to 4,096 fingerprints
/// (32 KB), its key and bookkeeping. A view over it (say four `APPROX_PERCENTILE`
/// sketches of at most 86 KB each) is refused when the pipeline loads, never a failed
/// batch.
pub const MAX_COLUMNS_BYTES: usize = 300_000;

/// A checked, compiled pipeline with what the stages derive from it.
pub struct SqlPipeline {
    pub program: Program,
    pub views: Vec<StoredView>,
    by_id: HashMap<String, usize>,
    /// Per group id, the views whose rows it holds.
    by_group: HashMap<String, Vec<usize>>,
    /// The source's `WATERMARK` delay: the allowed lateness of every view.
    pub allowed_lateness_ms: Option<i64>,
    /// The JSON fields the views read (directly or through computed columns): ingest
    /// passes on only these (a record's other fields, declared or not, go no further).
    pub fields: std::collections::HashSet<String>,
    /// Per physical column of the source, whether ingest passes it on (its field is in
    /// [`Self::fields`]).
    pub physical_kept: Vec<bool>,
    /// Per computed column of the source, whether a view reads it: enrich computes
    /// only those.
    pub computed_kept: Vec<bool>,
    /// Whether some view has a WHERE: then ingest evaluates the views without
    /// reference data and passes on only events some view may take.
    pub ingest_filters: bool,
    /// Per program view, whether enrich skips it: a view sharing its group of items
    /// with an earlier one takes the same updates, which that one's give.
    pub follows: Vec<bool>,
    /// The group keys detect read last, decoded (group id, key text, values): rules read
    /// every window of a group's history in a row, all of one key.
    last_keys: std::sync::Mutex<Option<DecodedKeys>>,
}

/// A group's keys decoded: its group id, its key text and the values.
type DecodedKeys = (String, String, std::sync::Arc<[Value]>);

/// One stored view on the stages.
pub struct StoredView {
    /// Its index among the program's views.
    pub index: usize,
    pub name: String,
    /// The first 16 hex digits of the digest of its definition (and of what it reads).
    pub id: String,
    /// The group of items its rows are in (the items' `metric`): its own id, or, for
    /// TUMBLE views that differ only in their size and select list
    /// ([`Program::fold_alike`]), one id for all of them (a digest of theirs), each
    /// view's rows being the items of its window.
    pub group: String,
    /// The group's windows: the anchor (the finest TUMBLE size, or the HOP slide) and
    /// the others (a HOP view's hopping window, or the coarser TUMBLE sizes of the views
    /// sharing the group).
    pub windows: WindowSet,
    /// The window whose items are the view's rows.
    pub row_window: WindowSpec,
    pub aggregates: Vec<AggregateKind>,
    pub key_types: Vec<SqlType>,
    pub outputs: Vec<String>,
    /// The most bytes the view's aggregate states take in an item.
    pub max_columns_bytes: usize,
}

impl SqlPipeline {
    /// Reads, checks and compiles a pipeline for the stages, refusing what the batch
    /// evaluation accepts but the stages cannot run alike.
    pub fn load(text: &str) -> Result<SqlPipeline> {
        let pipeline = Pipeline::parse(text)?;
        let program = Program::compile(&pipeline)?;
        if let Some(view) = program.window_dependent_view() {
            return Err(refused(format!(
                "view `{view}`: a HOP view whose WHERE, GROUP BY or aggregate arguments read \
                 window_start, window_end or window_time is not supported on the stages \
                 (each event is folded into all its windows at once)"
            )));
        }
        let mut views = Vec::new();
        let shapes = program.stored_shapes();
        let mut shape_at = shapes.iter().peekable();
        for (index, def) in pipeline.views.iter().enumerate() {
            let Some(shape) = shape_at.next_if(|s| s.index == index) else {
                continue;
            };
            let (windows, row_window) = view_windows(shape.name, shape.kind)?;
            let aggregates: Vec<AggregateKind> =
                shape.aggregates.iter().map(|k| (*k).clone()).collect();
            let max_columns_bytes = 2
                + aggregates
                    .iter()
                    .map(|k| k.max_state_bytes(MAX_EXTREME_STRING_BYTES) + 1)
                    .sum::<usize>()
                + crate::state::item::COLUMNS_ATTRIBUTE.len();
            if max_columns_bytes > MAX_COLUMNS_BYTES {
                return Err(refused(format!(
                    "view `{}`: its aggregate states can take {max_columns_bytes} bytes in one \
                     item, more than the {MAX_COLUMNS_BYTES} an item has room for beside its \
                     fingerprints (each APPROX_PERCENTILE takes up to {} bytes, each MIN or \
                     MAX of a STRING up to {}): split the view",
                    shape.name,
                    AggregateKind::percentile(&SqlType::Double, 0.5)
                        .map_or(0, |k| k.max_state_bytes(0)),
                    AggregateKind::new("MAX", Some(&SqlType::String))
                        .map_or(0, |k| k.max_state_bytes(MAX_EXTREME_STRING_BYTES)),
                )));
            }
            let id = format!(
                "v{}",
                &digest_hex(definition(&pipeline, def).as_bytes())[..15]
            );
            views.push(StoredView {
                index,
                name: shape.name.to_owned(),
                group: id.clone(),
                id,
                windows,
                row_window,
                aggregates,
                key_types: shape.key_types.iter().map(|t| (*t).clone()).collect(),
                outputs: shape.outputs.iter().map(|s| (*s).to_owned()).collect(),
                max_columns_bytes,
            });
        }
        share_groups(&program, &mut views);
        let by_id = views
            .iter()
            .enumerate()
            .map(|(i, v)| (v.id.clone(), i))
            .collect();
        let mut by_group: HashMap<String, Vec<usize>> = HashMap::new();
        let mut follows = vec![false; program.view_count()];
        for (i, v) in views.iter().enumerate() {
            let members = by_group.entry(v.group.clone()).or_default();
            follows[v.index] = !members.is_empty();
            members.push(i);
        }
        let needed = pipeline.source_columns_needed();
        let fields: std::collections::HashSet<String> =
            program.source_fields_read(&needed).into_iter().collect();
        let physical_kept = program
            .physical_columns()
            .iter()
            .map(|(name, _)| fields.contains(name))
            .collect();
        let computed_kept = program
            .computed_columns_of_source()
            .iter()
            .map(|(name, _)| needed.contains(name.as_str()))
            .collect();
        Ok(SqlPipeline {
            fields,
            physical_kept,
            computed_kept,
            ingest_filters: program.has_filters(),
            follows,
            allowed_lateness_ms: pipeline.source.watermark.as_ref().map(|w| w.delay_ms),
            program,
            views,
            by_id,
            by_group,
            last_keys: std::sync::Mutex::default(),
        })
    }

    /// What each stage does with each stored view, for `sluice sql check`: its id, its
    /// windows and lateness, how enrich re-partitions it and the largest aggregate state
    /// an item of it holds.
    pub fn describe_stages(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let mut fields: Vec<&str> = self.fields.iter().map(String::as_str).collect();
        fields.sort_unstable();
        let _ = writeln!(
            out,
            "on the stages: ingest passes on the fields {} (typed; the rest go no further)",
            fields.join(", ")
        );
        for v in &self.views {
            let rows = v.row_window;
            let _ = writeln!(out, "on the stages: stored view `{}` (id {})", v.name, v.id);
            let siblings: Vec<&str> = self
                .views_of_group(&v.group)
                .filter(|o| o.id != v.id)
                .map(|o| o.name.as_str())
                .collect();
            if !siblings.is_empty() {
                let _ = writeln!(
                    out,
                    "  shares its items' group {} with `{}` (the same events, groups and \
                     aggregates in another window): one line per event, one set of event ids",
                    v.group,
                    siblings.join("`, `")
                );
            }
            let _ = writeln!(
                out,
                "  enrich writes one line per event keyed by the group: {} group column(s)",
                v.key_types.len()
            );
            let _ = writeln!(
                out,
                "  aggregate: one item per (group, {} s window{}), fingerprints in the {} s anchor, \
                 allowed lateness {}",
                rows.size_secs(),
                match rows.is_tumbling() {
                    true => String::new(),
                    false => format!(" sliding by {} s", rows.slide_secs()),
                },
                v.windows.anchor().size_secs(),
                match self.allowed_lateness_ms {
                    Some(ms) => format!("{ms} ms (WATERMARK)"),
                    None => "of the deployment (no WATERMARK)".into(),
                }
            );
            let _ = writeln!(
                out,
                "  largest item: {} bytes of aggregate state (MIN/MAX strings up to {} bytes) \
                 plus the group's key text and the fingerprints of its anchor",
                v.max_columns_bytes, MAX_EXTREME_STRING_BYTES
            );
        }
        out
    }

    /// Why the stages cannot store an update (the event is then a dead letter,
    /// `invalid_value`): its group's key values too long for a DynamoDB partition key, or
    /// a string for MIN/MAX longer than [`MAX_EXTREME_STRING_BYTES`].
    pub fn refusal(&self, update: &crate::sql::ViewUpdate) -> Option<String> {
        self.refusal_with_key(update, &codec::key_text(&update.keys))
    }

    /// [`SqlPipeline::refusal`] with the update's key text already made.
    pub fn refusal_with_key(
        &self,
        update: &crate::sql::ViewUpdate,
        key_text: &str,
    ) -> Option<String> {
        let view = self.view_at(update.view)?;
        let keeps = |kind: &AggregateKind| {
            matches!(
                kind.function(),
                crate::sql::AggregateFunction::Min | crate::sql::AggregateFunction::Max
            )
        };
        for (add, kind) in update.adds.iter().zip(&view.aggregates) {
            if let Some(Value::String(s)) = add
                && keeps(kind)
                && s.len() > MAX_EXTREME_STRING_BYTES
            {
                return Some(format!(
                    "view `{}`: a string of {} bytes for MIN/MAX; at most {MAX_EXTREME_STRING_BYTES} are kept",
                    view.name,
                    s.len()
                ));
            }
        }
        let pk_bytes = view.group.len() + 1 + key_text.len();
        let max = crate::state::limits::dynamodb::MAX_PARTITION_KEY_BYTES;
        (pk_bytes > max).then(|| {
            format!(
                "view `{}`: the group's values take {pk_bytes} bytes as a key; a DynamoDB \
                 partition key holds {max}",
                view.name
            )
        })
    }

    /// The stored view whose id is `id`.
    pub fn view(&self, id: &str) -> Option<&StoredView> {
        self.by_id.get(id).map(|&i| &self.views[i])
    }

    /// Why `rule` could never fire on this pipeline (it names a view the pipeline does
    /// not store, or a column that view does not select); `None` when it can, or when it
    /// is a metric rule.
    pub fn rule_mismatch(&self, rule: &crate::detect::rules::Rule) -> Option<String> {
        let (Some(view), Some(column)) = (&rule.view, &rule.column) else {
            return None;
        };
        let Some(stored) = self.views.iter().find(|v| v.name == *view) else {
            let names: Vec<&str> = self.views.iter().map(|v| v.name.as_str()).collect();
            return Some(format!(
                "rule {:?}: the pipeline stores no view `{view}` (its stored views: {})",
                rule.id,
                names.join(", ")
            ));
        };
        std::iter::once(column)
            .chain(rule.group.keys())
            .find(|name| !stored.outputs.contains(name))
            .map(|name| {
                format!(
                    "rule {:?}: view `{view}` has no column `{name}` (its columns: {})",
                    rule.id,
                    stored.outputs.join(", ")
                )
            })
    }

    /// The views whose rows group `group` (an item's `metric`) holds.
    pub fn views_of_group<'a>(&'a self, group: &str) -> impl Iterator<Item = &'a StoredView> {
        self.by_group
            .get(group)
            .into_iter()
            .flatten()
            .map(|&i| &self.views[i])
    }

    /// A view of group `group`: its windows, aggregates and item sizes are the group's.
    pub fn group(&self, group: &str) -> Option<&StoredView> {
        self.views_of_group(group).next()
    }

    /// The view whose rows are group `group`'s items of `window` (`None` for a HOP
    /// view's panes, and for what is no view's).
    pub fn view_of(&self, group: &str, window: WindowSpec) -> Option<&StoredView> {
        self.views_of_group(group).find(|v| v.row_window == window)
    }

    /// The stored view the program numbers `index`.
    pub fn view_at(&self, index: usize) -> Option<&StoredView> {
        self.views.iter().find(|v| v.index == index)
    }

    /// The planner's settings for a group: its view's windows, aggregates and lateness;
    /// `None` when the group is no view of this pipeline.
    pub fn plan_settings<'a>(
        &'a self,
        group: &GroupKey,
        config: &'a AggregateConfig,
    ) -> Option<PlanSettings<'a>> {
        let view = self.group(&group.metric)?;
        Some(PlanSettings {
            windows: &view.windows,
            fold: Some(&view.aggregates),
            max_columns_bytes: view.max_columns_bytes,
            allowed_lateness_ms: self
                .allowed_lateness_ms
                .unwrap_or(config.allowed_lateness_ms),
            ..config.plan_settings()
        })
    }

    /// Why a stored item of a view cannot be folded into: its states are not those of
    /// the view's aggregates (written by another definition, or corrupt). `None` for
    /// items of no view of this pipeline and for items without states yet.
    pub fn check_columns(&self, item: &crate::state::item::AggregateItem) -> Option<Error> {
        let view = self.group(&item.key.group.metric)?;
        if item.columns.is_empty() {
            return None;
        }
        let wrong = match item.columns.len() == view.aggregates.len() {
            false => Some(format!(
                "{} aggregate states where view `{}` has {} aggregates",
                item.columns.len(),
                view.name,
                view.aggregates.len()
            )),
            true => view
                .aggregates
                .iter()
                .zip(&item.columns)
                .find_map(|(kind, state)| kind.check_state(state).err())
                .map(|e| e.to_string()),
        };
        wrong.map(|reason| Error::CorruptItem {
            item: item.key.describe(),
            reason,
        })
    }

    /// The row values of a stored item of a view, in the view's column order, as a
    /// window update carries them (`None` for its other windows' items). A row whose
    /// text exceeds [`MAX_COLUMNS_BYTES`] (the most a view's states may take) is an
    /// error, so that an update line carrying it is never larger than one carrying the
    /// states would be bounded to.
    pub fn row_text(
        &self,
        key: &ItemKey,
        columns: &[crate::sql::AggregateState],
    ) -> Option<std::result::Result<RowText, String>> {
        let (view, keys) = match self.view_and_keys(key)? {
            Ok(found) => found,
            Err(e) => return Some(Err(e)),
        };
        Some(
            self.program
                .row_array_json(view.index, key.start_ms, key.end_ms(), &keys, columns)
                .and_then(|text| match text.len() > MAX_COLUMNS_BYTES {
                    true => Err(format!("the row takes {} bytes", text.len())),
                    false => RowText::new(text).map_err(|e| e.to_string()),
                }),
        )
    }

    /// The view an item belongs to (`None` for its other windows' items) and its
    /// group's keys, decoded.
    fn view_and_keys(
        &self,
        key: &ItemKey,
    ) -> Option<std::result::Result<(&StoredView, Vec<Value>), String>> {
        let view = self.view_of(&key.group.metric, key.window)?;
        let types: Vec<&SqlType> = view.key_types.iter().collect();
        Some(match codec::decode_key(&key.group.key, &types) {
            Some(keys) => Ok((view, keys)),
            None => Err(format!(
                "view `{}`: group {:?} does not read as its keys",
                view.name, key.group.key
            )),
        })
    }

    /// The result row of a stored item of a view (`None` for its other windows' items,
    /// such as a HOP view's panes).
    pub fn row_of(
        &self,
        key: &ItemKey,
        columns: &[crate::sql::AggregateState],
    ) -> Option<std::result::Result<(String, String), String>> {
        let (view, keys) = match self.view_and_keys(key)? {
            Ok(found) => found,
            Err(e) => return Some(Err(e)),
        };
        let empty: Vec<_>;
        let states = match columns.is_empty() {
            true => {
                empty = view.aggregates.iter().map(AggregateKind::empty).collect();
                &empty
            }
            false => columns,
        };
        Some(
            self.program
                .row_json(view.index, key.start_ms, key.end_ms(), &keys, states)
                .map(|row| (view.name.clone(), row)),
        )
    }
}

/// What a view's rows depend on, as text: its query, and recursively every relation it
/// reads (views by their queries, tables by their columns' names and types or
/// expressions). Positions in the file, comments, other views and options that change
/// no row (connector settings, the WATERMARK: lateness is not part of a row) are left
/// out, so a view's id changes exactly when its definition does.
fn definition(pipeline: &Pipeline, view: &crate::sql::ViewDef) -> String {
    fn table(t: &crate::sql::TableDef) -> String {
        let columns: Vec<String> = t
            .columns
            .iter()
            .map(|c| match &c.kind {
                crate::sql::ColumnKind::Physical(ty) => format!("{} {ty}", c.name),
                crate::sql::ColumnKind::Computed(e) => format!("{} AS {e}", c.name),
            })
            .collect();
        let options: Vec<String> = t
            .options
            .iter()
            .filter(|(k, _)| k.starts_with("json."))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(
            "table {}({}) key({}) {}",
            t.name,
            columns.join(", "),
            t.primary_key.join(", "),
            options.join(" ")
        )
    }
    fn relation(pipeline: &Pipeline, name: &str, out: &mut Vec<String>) {
        if let Some(v) = pipeline.views.iter().find(|v| v.name == name) {
            out.push(format!("view {}: {}", v.name, v.query));
            for input in inputs(&v.input) {
                relation(pipeline, input, out);
            }
        } else if pipeline.source.name == name {
            out.push(table(&pipeline.source));
        } else if let Some(t) = pipeline.references.get(name) {
            out.push(table(t));
        }
    }
    fn inputs(input: &crate::sql::Input) -> Vec<&str> {
        match input {
            crate::sql::Input::Relation { name, .. } => vec![name],
            crate::sql::Input::LookupJoin {
                stream, reference, ..
            } => vec![stream, reference],
            crate::sql::Input::Window(w) => vec![&w.input],
        }
    }
    let mut out = Vec::new();
    relation(pipeline, &view.name, &mut out);
    if let Some(sink) = pipeline.sinks.get(&view.name).filter(|_| view.sink) {
        out.push(table(sink));
    }
    out.join("\n")
}

/// Gives views that [`Program::fold_alike`] one group of items: each TUMBLE size once
/// (a second view of the same size and shape keeps a group of its own), sizes that make
/// a [`WindowSet`] (each a multiple of the finest).
fn share_groups(program: &Program, views: &mut [StoredView]) {
    let mut families: Vec<Vec<usize>> = Vec::new();
    for at in 0..views.len() {
        let joins = families.iter_mut().find(|family| {
            program.fold_alike(views[family[0]].index, views[at].index)
                && family
                    .iter()
                    .all(|&m| views[m].row_window != views[at].row_window)
        });
        match joins {
            Some(family) => family.push(at),
            None => families.push(vec![at]),
        }
    }
    for family in families.into_iter().filter(|f| f.len() > 1) {
        let specs: Vec<WindowSpec> = family.iter().map(|&m| views[m].row_window).collect();
        let Ok(windows) = WindowSet::new(specs) else {
            continue;
        };
        let mut ids: Vec<&str> = family.iter().map(|&m| views[m].id.as_str()).collect();
        ids.sort_unstable();
        let group = format!("g{}", &digest_hex(ids.join(" ").as_bytes())[..15]);
        for m in family {
            views[m].group.clone_from(&group);
            views[m].windows = windows.clone();
        }
    }
}

fn refused(reason: String) -> Error {
    Error::InvalidSql {
        line: 1,
        column: 1,
        reason,
    }
}

/// A view's windows in whole seconds (the aggregates table keys windows by seconds).
fn view_windows(name: &str, kind: WindowKind) -> Result<(WindowSet, WindowSpec)> {
    let secs =
        |ms: i64| {
            (ms % 1000 == 0 && ms > 0).then_some(ms / 1000).ok_or_else(|| {
            refused(format!(
                "view `{name}`: a window of {ms} ms is not a whole number of seconds, which \
                 the stages need"
            ))
        })
        };
    let (specs, row) = match kind {
        WindowKind::Tumble { size_ms } => {
            let spec = WindowSpec::tumbling(secs(size_ms)?);
            (vec![spec], spec)
        }
        WindowKind::Hop { slide_ms, size_ms } => {
            let pane = WindowSpec::tumbling(secs(slide_ms)?);
            let hop = WindowSpec::hopping(secs(size_ms)?, secs(slide_ms)?);
            match hop.is_tumbling() {
                true => (vec![pane], pane),
                false => (vec![pane, hop], hop),
            }
        }
    };
    let set = WindowSet::new(specs).map_err(|e| refused(format!("view `{name}`: {e}")))?;
    Ok((set, row))
}

/// What ingest does with a readable line under a pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceFate {
    /// Its [`SourceLine`] is in `out`.
    PassOn,
    /// No view takes it: the filters that need no reference data leave it out.
    Filtered,
}

/// Ingest's step for one raw line under a pipeline: read it (the reasons name the
/// column), apply the filters that need no reference data, and encode its
/// [`SourceLine`] into `out` (cleared first).
pub fn source_line(
    pipeline: &SqlPipeline,
    raw: &[u8],
    origin: &str,
    now_ms: i64,
    out: &mut Vec<u8>,
) -> std::result::Result<SourceFate, Rejection> {
    let ctx = EvalContext { now_ms };
    let row = pipeline.program.source_row(raw, &ctx).map_err(|r| {
        let reason = match (&r.column, pipeline.program.is_computed(r.column.as_deref())) {
            (None, _) => Reason::NotJson,
            (Some(_), true) => Reason::InvalidValue,
            (Some(_), false) => Reason::WrongType,
        };
        Rejection {
            reason,
            // The column is named in the detail (`field` names envelope fields only).
            field: None,
            detail: r.to_string(),
            id: None,
        }
    })?;
    if pipeline.ingest_filters && pipeline.program.taken_by_no_view(row.clone(), &ctx) {
        return Ok(SourceFate::Filtered);
    }
    let id = pipeline.program.event_id(&row);
    // The `SourceLine` JSON, written by hand: the row travels typed, without names.
    out.clear();
    line::write_source_line(out, id.as_deref(), origin, |out| {
        pipeline
            .program
            .write_encoded_row(&row, &pipeline.physical_kept, out);
        Ok(())
    })
    .map(|()| SourceFate::PassOn)
    .map_err(|e| Rejection {
        reason: Reason::InvalidValue,
        field: None,
        detail: format!("the source line could not be encoded: {e}"),
        id: None,
    })
}

/// The partition key of a group's view lines: one group's lines stay on one shard, in
/// order. The group's key text when it fits Kinesis' 256 characters (Kinesis hashes the
/// key itself), else its digest. Views that group an event alike share its line, so the
/// key is the group's values, not the view's.
pub fn group_partition_key(key_text: &str) -> Cow<'_, str> {
    match key_text.chars().count() <= 256 {
        true => Cow::Borrowed(key_text),
        false => Cow::Owned(digest_hex(key_text.as_bytes())),
    }
}

impl SqlPipeline {
    /// The row an update is, when it is a row of a view of this pipeline: (view, row).
    pub fn update_row(
        &self,
        u: &crate::state::item::WindowUpdate,
    ) -> Option<(&StoredView, serde_json::Map<String, serde_json::Value>)> {
        let view = self.view_of(&u.metric, u.window())?;
        let key = ItemKey {
            group: GroupKey {
                key: u.key.clone(),
                metric: u.metric.clone(),
            },
            window: u.window(),
            start_ms: u.window_start,
        };
        if let Some(row) = &u.row {
            let row = view.outputs.iter().cloned().zip(row.values()?).collect();
            return Some((view, row));
        }
        let (_, text) = self.row_of(&key, &u.columns)?.ok()?;
        let row = serde_json::from_str(&text).ok()?;
        Some((view, row))
    }
}

impl crate::detect::rules::ViewColumns for SqlPipeline {
    fn value(
        &self,
        u: &crate::state::item::WindowUpdate,
        view: &str,
        column: &str,
        group: &std::collections::BTreeMap<String, serde_json::Value>,
    ) -> Option<f64> {
        let stored = self.view_of(&u.metric, u.window())?;
        if stored.name != view {
            return None;
        }
        if let Some(row) = &u.row {
            return row_column_value(stored, row, column, group);
        }
        let keys = || {
            // Another thread holding the memo decodes for itself.
            let mut memo = self.last_keys.try_lock().ok();
            if let Some(Some((group, key, values))) = memo.as_deref() {
                if *group == u.metric && *key == u.key {
                    return Some(values.clone());
                }
            }
            let types: Vec<&SqlType> = stored.key_types.iter().collect();
            let values: std::sync::Arc<[Value]> = codec::decode_key(&u.key, &types)?.into();
            if let Some(memo) = memo.as_deref_mut() {
                *memo = Some((u.metric.clone(), u.key.clone(), values.clone()));
            }
            Some(values)
        };
        let empty: Vec<_>;
        let states = match u.columns.is_empty() {
            true => {
                empty = stored.aggregates.iter().map(AggregateKind::empty).collect();
                &empty[..]
            }
            false => &u.columns[..],
        };
        let bounds = (u.window_start, u.window_start + u.window().size_ms);
        // Only the rule's columns are computed, not the whole row.
        let read = |name: &str| {
            self.program
                .row_column(stored.index, bounds, &keys, states, name)
                .ok()
                .flatten()
        };
        for (name, want) in group {
            let (got, ty) = read(name)?;
            if !json_equals(&got, ty, want) {
                return None;
            }
        }
        let (value, ty) = read(column)?;
        json_number(&value, ty)
    }
}

/// A rule column of a row a window update carries ([`WindowUpdate::row`]), when the
/// row's group columns are `group`'s values: what [`json_number`] and [`json_equals`]
/// give for the row's values, read from their JSON (only those columns are parsed).
///
/// [`WindowUpdate::row`]: crate::state::item::WindowUpdate::row
fn row_column_value(
    stored: &StoredView,
    row: &RowText,
    column: &str,
    group: &std::collections::BTreeMap<String, serde_json::Value>,
) -> Option<f64> {
    let at = |name: &str| stored.outputs.iter().position(|c| c == name);
    for (name, want) in group {
        let got: serde_json::Value = serde_json::from_str(row.element(at(name)?)?.get()).ok()?;
        let same = match (got.as_f64(), want.as_f64()) {
            (Some(x), Some(y)) => x == y,
            (None, None) => got == *want,
            _ => false,
        };
        if !same {
            return None;
        }
    }
    row.number(at(column)?)
}

impl StoredView {
    fn info(&self) -> crate::ports::ViewInfo {
        crate::ports::ViewInfo {
            view: self.name.clone(),
            // The items' metric: what a read of the view's rows asks the store for.
            id: self.group.clone(),
            columns: self.outputs.clone(),
            window_seconds: self.row_window.size_secs(),
            slide_seconds: (!self.row_window.is_tumbling()).then(|| self.row_window.slide_secs()),
        }
    }
}

impl crate::ports::ViewCatalog for SqlPipeline {
    fn list(&self) -> Vec<crate::ports::ViewInfo> {
        self.views.iter().map(StoredView::info).collect()
    }

    fn find(&self, name: &str) -> Option<crate::ports::ViewInfo> {
        self.views
            .iter()
            .find(|v| v.name == name)
            .map(StoredView::info)
    }

    fn row(
        &self,
        a: &crate::state::item::AggregateView,
    ) -> Option<serde_json::Map<String, serde_json::Value>> {
        let key = ItemKey {
            group: GroupKey {
                key: a.key.clone(),
                metric: a.metric.clone(),
            },
            window: WindowSpec::hopping(
                a.window_seconds,
                a.slide_seconds.unwrap_or(a.window_seconds),
            ),
            start_ms: crate::time::parse_rfc3339_ms(&a.window_start)?,
        };
        let (_, text) = self.row_of(&key, &a.columns)?.ok()?;
        serde_json::from_str(&text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IOT: &str = include_str!("../../../../../examples/iot.sql");

    fn ids(text: &str) -> Vec<(String, String)> {
        SqlPipeline::load(text)
            .expect("the pipeline loads")
            .views
            .iter()
            .map(|v| (v.name.clone(), v.id.clone()))
            .collect()
    }

    /// Views alike but for their TUMBLE size (and select list) share one group of
    /// items, as the envelope pipeline's minute and hour do; any other difference keeps
    /// them apart.
    #[test]
    fn views_alike_but_for_their_window_share_one_group_of_items() {
        let source = "CREATE TABLE s (k STRING, v DOUBLE, ts TIMESTAMP_LTZ(3),
              WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
            WITH ('connector' = 'kinesis', 'format' = 'json');";
        let view = |name: &str, size: &str, tail: &str| {
            format!(
                "CREATE VIEW {name} AS SELECT window_start, window_end, k, {tail}
                 FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(ts), INTERVAL '{size}' MINUTE))
                 GROUP BY window_start, window_end, k;"
            )
        };
        let load = |views: &[String]| {
            SqlPipeline::load(&format!("{source}{}", views.concat())).expect("loads")
        };
        let sums = "SUM(v) AS total, COUNT(*) AS n";
        let p = load(&[
            view("m1", "1", sums),
            // Other names for the same aggregates: alike.
            view("m60", "60", "SUM(v) AS sum_v, COUNT(*) AS events"),
            // Other aggregates: a group of its own.
            view("x60", "60", "MAX(v) AS top, COUNT(*) AS n"),
            // The size of one already in the group: a group of its own.
            view("again", "1", "SUM(v) AS s, COUNT(*) AS c"),
        ]);
        let group = |name: &str| {
            let v = p.views.iter().find(|v| v.name == name).expect("a view");
            (v.group.clone(), v.id.clone())
        };
        let (m1, m1_id) = group("m1");
        assert!(m1.starts_with('g') && m1 != m1_id);
        assert_eq!(group("m60").0, m1);
        assert_eq!(group("x60").0, group("x60").1);
        assert_eq!(group("again").0, group("again").1);
        let names: Vec<&str> = p.views_of_group(&m1).map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["m1", "m60"]);
        let group_view = p.group(&m1).expect("the group");
        assert_eq!(
            group_view.windows.all(),
            [WindowSpec::tumbling(60), WindowSpec::tumbling(3600)]
        );
        let hour = WindowSpec::tumbling(3600);
        assert_eq!(p.view_of(&m1, hour).map(|v| v.name.as_str()), Some("m60"));
        assert_eq!(
            p.view_of(&m1, WindowSpec::tumbling(60))
                .map(|v| v.name.as_str()),
            Some("m1")
        );
        assert!(p.view_of(&m1, WindowSpec::tumbling(120)).is_none());
        // The read API asks the store for the group's items in the view's window.
        use crate::ports::ViewCatalog as _;
        let info = p.find("m60").expect("listed");
        assert_eq!((info.id.as_str(), info.window_seconds), (m1.as_str(), 3600));
        // A WHERE of one's own, or sizes that do not nest, keep views apart.
        let filtered = format!(
            "{source}{}CREATE VIEW w AS SELECT window_start, window_end, k, {sums}
             FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(ts), INTERVAL '60' MINUTE))
             WHERE v > 0 GROUP BY window_start, window_end, k;",
            view("m1", "1", sums)
        );
        let p = SqlPipeline::load(&filtered).expect("loads");
        assert!(
            p.views.iter().all(|v| v.group == v.id),
            "a WHERE of its own"
        );
        let unnested = load(&[view("m2", "2", sums), view("m3", "3", sums)]);
        assert!(
            unnested.views.iter().all(|v| v.group == v.id),
            "3 minutes is no multiple of 2"
        );
    }

    #[test]
    fn a_view_id_changes_with_its_definition_only() {
        let base = ids(IOT);
        // Comments, blank lines and positions are no part of a definition.
        assert_eq!(ids(&format!("-- a header\n\n{IOT}")), base);
        // Another view's edit leaves this one alone.
        let other = IOT.replace(
            "MIN(battery) AS lowest_battery",
            "MAX(battery) AS lowest_battery",
        );
        assert_ne!(other, IOT);
        let changed = ids(&other);
        assert_ne!(changed[0].1, base[0].1, "per_site changed");
        assert_eq!(changed[1], base[1], "per_device did not");
        // A source column's type is part of every view that reads it.
        let retyped = ids(&IOT.replace("battery INT,", "battery BIGINT,"));
        assert_ne!(retyped[0].1, base[0].1);
        assert_ne!(retyped[1].1, base[1].1);
        // The allowed lateness changes no row: the ids stay.
        let later = IOT.replace("INTERVAL '1' MINUTE\n)", "INTERVAL '2' MINUTE\n)");
        assert_ne!(later, IOT);
        assert_eq!(ids(&later), base);
    }

    fn refusal(text: &str) -> String {
        match SqlPipeline::load(text) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("expected a refusal of:\n{text}"),
        }
    }

    const SOURCE: &str = "CREATE TABLE s (k STRING, v INT, ts TIMESTAMP(3), \
        WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH ('connector' = 'kinesis', 'format' = 'json');\n";

    #[test]
    fn what_the_stages_cannot_run_alike_is_refused_with_the_view_named() {
        let hop_reads_window = format!(
            "{SOURCE}CREATE VIEW h AS SELECT window_start, window_end, COUNT(*) AS n \
             FROM TABLE(HOP(TABLE s, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '5' MINUTE)) \
             WHERE window_end > window_start GROUP BY window_start, window_end;"
        );
        let message = refusal(&hop_reads_window);
        assert!(message.contains("view `h`"), "{message}");
        assert!(
            message.contains("read window_start, window_end or window_time"),
            "{message}"
        );
        // (Windows below a second never get here: the parser takes whole SECONDs at least.)
        // The same views as plain TUMBLE/HOP over whole seconds load.
        let fine = format!(
            "{SOURCE}CREATE VIEW h AS SELECT window_start, window_end, k, COUNT(*) AS n \
             FROM TABLE(HOP(TABLE s, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '5' MINUTE)) \
             WHERE v > 0 GROUP BY window_start, window_end, k;"
        );
        let loaded = SqlPipeline::load(&fine).expect("loads");
        assert_eq!(loaded.views[0].row_window, WindowSpec::hopping(300, 60));
        assert_eq!(loaded.views[0].windows.anchor(), WindowSpec::tumbling(60));
        assert_eq!(loaded.allowed_lateness_ms, Some(1000));
    }

    #[test]
    fn ingest_passes_on_the_columns_the_views_read_typed_and_enrich_reads_them_back() {
        let pipeline = SqlPipeline::load(
            "CREATE TABLE s (
               id STRING, ms BIGINT, note STRING, amount DECIMAL(10, 2),
               r ROW<a INT, b STRING>,
               et AS TO_TIMESTAMP_LTZ(ms, 3),
               unread AS CAST(note AS INT),
               WATERMARK FOR et AS et - INTERVAL '1' SECOND,
               PRIMARY KEY (id) NOT ENFORCED
             ) WITH ('connector' = 'kinesis', 'format' = 'json');
             CREATE VIEW v AS
             SELECT window_start, window_end, r.b AS b, SUM(amount) AS total
             FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(et), INTERVAL '1' MINUTE))
             GROUP BY window_start, window_end, r.b;",
        )
        .expect("loads");
        let raw = br#"{"id": "p-\"1", "ms": 1767225600000, "note": "12", "amount": 12.5,
                       "r": {"a": 1, "b": "x\ny"}, "other": [1]}"#;
        let mut out = Vec::new();
        source_line(&pipeline, raw, "shard:1:0", 0, &mut out).expect("a source line");
        let line: SourceLine<'_> = serde_json::from_slice(&out).expect("reads");
        assert_eq!(line.id.map(|id| id.get()), Some(r#"["p-\"1"]"#));
        // `note` is read by no view (nor by a computed column one reads): NULL.
        assert_eq!(
            line.r.get(),
            r#"["p-\"1",1767225600000,null,"12.50",[1,"x\ny"]]"#
        );
        let ctx = EvalContext { now_ms: 0 };
        let full = pipeline.program.source_row(raw, &ctx).expect("a row");
        let back = pipeline
            .program
            .source_row_encoded(line.r.get(), &pipeline.computed_kept, &ctx)
            .expect("reads back");
        assert_eq!(back.len(), full.len());
        let names: Vec<&str> = pipeline
            .program
            .physical_columns()
            .iter()
            .chain(pipeline.program.computed_columns_of_source())
            .map(|(n, _)| n.as_str())
            .collect();
        for ((name, got), want) in names.iter().zip(&back).zip(&full) {
            match *name {
                "note" | "unread" => assert_eq!(got, &Value::Null, "{name}"),
                _ => assert_eq!(got, want, "{name}"),
            }
        }
        for junk in [
            "[1]",
            "{}",
            r#"["p",1,null,"12.50",[1,"x"],7]"#,
            r#"[1,1,null,"1",[1,"x"]]"#,
        ] {
            assert!(
                pipeline
                    .program
                    .source_row_encoded(junk, &pipeline.computed_kept, &ctx)
                    .is_err(),
                "{junk}"
            );
        }
        // iot.sql's views read four of its fields (through nested paths, or a computed
        // column): ingest keeps those four.
        let iot = SqlPipeline::load(IOT).expect("loads");
        let mut fields: Vec<&str> = iot.fields.iter().map(String::as_str).collect();
        fields.sort();
        assert_eq!(fields, ["battery", "device", "reading", "ts"]);
    }

    /// A rule reads a view's column as the row holds it: for every output column and
    /// group filter, what detect observes equals the column of the whole row (which is
    /// what `demo --sql`, the query API and the alert print).
    #[test]
    fn a_rule_reads_each_column_as_the_whole_row_holds_it() {
        /// Equal JSON scalars, numbers by value (`1` equals `1.0`).
        fn same_scalar(a: &serde_json::Value, b: &serde_json::Value) -> bool {
            match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => x == y,
                _ => a == b,
            }
        }

        use crate::detect::rules::ViewColumns;
        use crate::state::item::WindowUpdate;
        use serde_json::json;
        use std::collections::BTreeMap;
        let sql = SqlPipeline::load(
            "CREATE TABLE s (site STRING, n INT, v DOUBLE, ts TIMESTAMP_LTZ(3),
               WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
             WITH ('connector' = 'kinesis', 'format' = 'json');
             CREATE VIEW per_site AS SELECT window_start, window_end, site, UPPER(site) AS loud,
               COUNT(*) AS events, SUM(n) AS total, SUM(n) / COUNT(*) AS per_event,
               AVG(v) AS mean, MAX(v) AS top, CAST(SUM(n) AS DECIMAL(10, 2)) AS exact,
               CASE WHEN MAX(v) > 2 THEN 'hot' ELSE 'cold' END AS state
             FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
             GROUP BY window_start, window_end, site;",
        )
        .expect("loads");
        let view = &sql.views[0];
        let mut columns: Vec<_> = view.aggregates.iter().map(AggregateKind::empty).collect();
        for (n, v) in [
            (Value::Int(3), Value::Double(1.5)),
            (Value::Int(4), Value::Null),
        ] {
            for (kind, state) in view.aggregates.iter().zip(&mut columns) {
                let add = match kind.arg_type() {
                    None => Value::Boolean(true),
                    Some(SqlType::Int) => n.clone(),
                    Some(_) => v.clone(),
                };
                kind.add(state, &add).expect("adds");
            }
        }
        let update = |columns: Vec<crate::sql::AggregateState>| WindowUpdate {
            metric: view.group.clone(),
            columns: columns.into(),
            ..crate::state::item::minute_update(
                &codec::key_text(&[Value::String("lima".into())]),
                "",
                60_000,
                2,
            )
        };
        // As the aggregate stage emits it: the row computed from the states, no states.
        let carrying_row = |columns: &[crate::sql::AggregateState]| {
            let states = update(columns.to_vec());
            let key = ItemKey {
                group: GroupKey {
                    key: states.key.clone(),
                    metric: states.metric.clone(),
                },
                window: states.window(),
                start_ms: states.window_start,
            };
            WindowUpdate {
                row: Some(
                    sql.row_text(&key, columns)
                        .expect("a view's item")
                        .expect("a row"),
                ),
                ..update(Vec::new())
            }
        };
        assert_eq!(
            sql.update_row(&carrying_row(&columns)).expect("a row").1,
            sql.update_row(&update(columns.clone())).expect("a row").1,
            "the row an update carries is the row of its states"
        );
        let mut read = 0;
        for u in [
            update(columns.clone()),
            update(Vec::new()),
            carrying_row(&columns),
        ] {
            let (_, row) = sql.update_row(&u).expect("a row");
            let filters = [
                BTreeMap::new(),
                BTreeMap::from([("site".to_owned(), json!("lima"))]),
                BTreeMap::from([("site".to_owned(), json!("rome"))]),
                BTreeMap::from([
                    ("loud".to_owned(), json!("LIMA")),
                    ("events".to_owned(), json!(2.0)),
                ]),
                BTreeMap::from([("nowhere".to_owned(), json!(1))]),
                // A number is not its text, nor a text its number.
                BTreeMap::from([("events".to_owned(), json!("2"))]),
                BTreeMap::from([("site".to_owned(), json!(1))]),
                BTreeMap::from([
                    ("total".to_owned(), json!(7)),
                    ("exact".to_owned(), json!(7)),
                ]),
                BTreeMap::from([
                    ("state".to_owned(), json!("cold")),
                    ("mean".to_owned(), json!(1.5)),
                ]),
                BTreeMap::from([("window_start".to_owned(), json!("1970-01-01T00:01:00.000Z"))]),
            ];
            for group in &filters {
                for column in view.outputs.iter().map(String::as_str).chain(["nowhere"]) {
                    let in_row = group.iter().all(|(name, want)| {
                        row.get(name).is_some_and(|got| same_scalar(got, want))
                    });
                    let expected = row.get(column).and_then(|v| v.as_f64()).filter(|_| in_row);
                    let observed = sql.value(&u, "per_site", column, group);
                    assert_eq!(observed, expected, "{column} where {group:?} in {row:?}");
                    read += usize::from(observed.is_some());
                }
            }
            assert_eq!(sql.value(&u, "elsewhere", "events", &BTreeMap::new()), None);
        }
        // Numeric columns under each matching filter, in all three updates.
        assert!(read >= 45, "{read} values read");
    }
}
