//! A checked [`Pipeline`] compiled for evaluation: the source's reader and computed
//! columns, each view's scope and compiled expressions, each stored view's windows, group
//! keys, aggregates and output expressions.

use std::collections::{BTreeMap, BTreeSet};

use sqlparser::ast::{
    CaseWhen, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList,
    FunctionArguments, GroupByExpr, Ident, Select, SelectItem, SelectItemQualifiedWildcardKind,
};
use sqlparser::tokenizer::Location;

use crate::error::Result;
use crate::sql::aggregate::AggregateKind;
use crate::sql::dialect::at;
use crate::sql::expr::{Compiled, Scope, compile};
use crate::sql::json::RowReader;
use crate::sql::types::SqlType;
use crate::sql::value::Value;
use crate::sql::view::{AGGREGATES, Input, ViewDef, WindowKind, function_name, single_select};
use crate::sql::view::{percentile_literal, takes_percentile};
use crate::sql::{ColumnKind, Pipeline, TableDef};

/// A relation's columns: the source's (physical, then computed) or an intermediate view's.
pub(super) type Columns = Vec<(String, SqlType)>;

/// A stored view as the stages need it.
pub struct StoredShape<'a> {
    /// Its index among the program's views.
    pub index: usize,
    pub name: &'a str,
    pub kind: WindowKind,
    pub aggregates: Vec<&'a AggregateKind>,
    pub key_types: Vec<&'a SqlType>,
    pub outputs: Vec<&'a str>,
}

/// The compiled pipeline.
pub struct Program {
    pub(super) source: SourcePlan,
    pub(super) references: BTreeMap<String, ReferencePlan>,
    pub(super) views: Vec<ViewPlan>,
}

pub(super) struct SourcePlan {
    pub(super) reader: RowReader,
    /// Computed columns in order, over the physical columns.
    pub(super) computed: Vec<Compiled>,
    pub(super) columns: Columns,
    /// Indexes of the `PRIMARY KEY` columns: the event id.
    pub(super) id: Vec<usize>,
}

pub(super) struct ReferencePlan {
    pub(super) reader: RowReader,
    pub(super) columns: Columns,
    /// Index of the key column (the first `PRIMARY KEY` column).
    pub(super) key: usize,
}

pub(super) struct ViewPlan {
    pub(super) name: String,
    pub(super) step: Step,
}

/// Relations are numbered: 0 is the source, `i + 1` the view `i`.
pub(super) enum Step {
    Map(Box<MapPlan>),
    Window(Box<WindowPlan>),
}

pub(super) struct MapPlan {
    pub(super) input: usize,
    pub(super) join: Option<JoinPlan>,
    pub(super) filter: Option<Compiled>,
    pub(super) project: Vec<Projection>,
    pub(super) columns: Columns,
}

pub(super) struct JoinPlan {
    pub(super) reference: String,
    /// The stream side of `ON stream_expr = reference.key`.
    pub(super) stream_key: Compiled,
    pub(super) left: bool,
}

pub(super) enum Projection {
    Column(usize),
    Expr(Compiled),
}

pub(super) struct WindowPlan {
    pub(super) input: usize,
    pub(super) kind: WindowKind,
    /// Index of the event-time column in the input row.
    pub(super) time: usize,
    /// Columns of the input row (the window columns follow them).
    pub(super) width: usize,
    /// Over the input row followed by `window_start`, `window_end`, `window_time`.
    pub(super) filter: Option<Compiled>,
    pub(super) keys: Vec<Compiled>,
    pub(super) aggregates: Vec<AggregatePlan>,
    /// Over `window_start`, `window_end`, the keys, then the aggregates' results.
    pub(super) outputs: Vec<(String, Compiled)>,
    /// Whether the filter, keys or aggregates read the window columns: when none does,
    /// they are evaluated over the input row itself, not a copy with the window's.
    pub(super) reads_window: bool,
}

pub(super) struct AggregatePlan {
    /// The call as written (`SUM(amount) FILTER (WHERE ...)`).
    pub(super) text: String,
    pub(super) kind: AggregateKind,
    pub(super) arg: Option<Compiled>,
    pub(super) filter: Option<Compiled>,
    /// A percentile's argument and filter as written: percentiles alike in both share
    /// one sketch.
    pub(super) sketch_of: Option<String>,
}

impl Program {
    pub fn compile(pipeline: &Pipeline) -> Result<Program> {
        let source = source_plan(&pipeline.source)?;
        let mut references = BTreeMap::new();
        for (name, table) in &pipeline.references {
            references.insert(name.clone(), reference_plan(table)?);
        }
        let mut relations: Vec<(String, Columns)> =
            vec![(pipeline.source.name.clone(), source.columns.clone())];
        let mut views = Vec::new();
        for view in &pipeline.views {
            let mut step = view_step(view, &relations, &pipeline.references)?;
            if let (Some(sink), Step::Window(w)) = (pipeline.sinks.get(&view.name), &mut step)
                && view.sink
            {
                into_sink(w, sink)?;
            }
            let columns = match &step {
                Step::Map(m) => m.columns.clone(),
                Step::Window(_) => Vec::new(),
            };
            relations.push((view.name.clone(), columns));
            views.push(ViewPlan {
                name: view.name.clone(),
                step,
            });
        }
        Ok(Program {
            source,
            references,
            views,
        })
    }

    /// What each stored view keeps per (window, group), for `sluice sql check`: its
    /// group keys with their types, each aggregate with its result type and the most
    /// bytes its stored state takes, and their sum (what the item holds besides its key,
    /// fingerprints and bookkeeping).
    pub fn describe_state(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for view in &self.views {
            let Step::Window(w) = &view.step else {
                continue;
            };
            let _ = writeln!(out, "state of `{}` per (window, group):", view.name);
            if w.keys.is_empty() {
                let _ = writeln!(out, "  group: the window alone");
            }
            for k in &w.keys {
                let _ = writeln!(out, "  group by {k}: {}", k.ty);
            }
            let mut total = 0;
            let mut strings = false;
            for a in &w.aggregates {
                let bytes = a.kind.max_state_bytes(0);
                let grows = a.kind.max_state_bytes(1) > bytes;
                strings |= grows;
                total += bytes;
                let shares = a.sketch_of.is_some() && !a.kind.keeps_sketch();
                let _ = writeln!(
                    out,
                    "  {} -> {}, state <= {bytes} bytes{}",
                    a.text,
                    a.kind.result_type(),
                    if grows {
                        " + 6 per byte of the longest string"
                    } else if shares {
                        " (reads the sketch of the percentile of the same column before it)"
                    } else {
                        ""
                    }
                );
            }
            let _ = writeln!(
                out,
                "  aggregate state <= {total} bytes per item{}",
                if strings {
                    " plus the longest strings MIN/MAX keep (bounded by the record size)"
                } else {
                    ""
                }
            );
        }
        out
    }

    /// One JSON line of reference table `table`: its key's [`key_text`] and its row.
    ///
    /// [`key_text`]: super::codec::key_text
    pub fn read_reference(&self, table: &str, line: &[u8]) -> Result<(String, Vec<Value>), String> {
        let plan = self
            .references
            .get(table)
            .ok_or_else(|| format!("`{table}` is not a reference table of the pipeline"))?;
        let row = plan.reader.read(line).map_err(|r| r.to_string())?;
        let key = super::codec::key_text(&row[plan.key..=plan.key]);
        Ok((key, row))
    }

    /// The source's JSON fields (physical columns) that the columns in `needed` read:
    /// themselves, or what a computed one is computed from.
    pub fn source_fields_read(&self, needed: &BTreeSet<&str>) -> BTreeSet<String> {
        let physical = self.source.reader.columns().len();
        let mut fields = BTreeSet::new();
        for (i, (name, _)) in self.source.columns.iter().enumerate() {
            if !needed.contains(name.as_str()) {
                continue;
            }
            match i.checked_sub(physical) {
                None => {
                    fields.insert(name.clone());
                }
                Some(c) => fields.extend(
                    self.source.computed[c]
                        .columns_read()
                        .into_iter()
                        .map(|j| self.source.columns[j].0.clone()),
                ),
            }
        }
        fields
    }

    /// Whether `column` is a computed column of the source.
    pub fn is_computed(&self, column: Option<&str>) -> bool {
        let physical = self.source.reader.columns().len();
        column.is_some_and(|c| self.source.columns[physical..].iter().any(|(n, _)| n == c))
    }

    /// How many views (intermediate and stored) the program has.
    pub fn view_count(&self) -> usize {
        self.views.len()
    }

    /// The reference tables' names.
    pub fn reference_tables(&self) -> impl Iterator<Item = &str> {
        self.references.keys().map(String::as_str)
    }

    /// What the stages need of each stored view, in order.
    pub fn stored_shapes(&self) -> Vec<StoredShape<'_>> {
        self.views
            .iter()
            .enumerate()
            .filter_map(|(index, v)| match &v.step {
                Step::Window(w) => Some(StoredShape {
                    index,
                    name: &v.name,
                    kind: w.kind,
                    aggregates: w.aggregates.iter().map(|a| &a.kind).collect(),
                    key_types: w.keys.iter().map(|k| &k.ty).collect(),
                    outputs: w.outputs.iter().map(|(n, _)| n.as_str()).collect(),
                }),
                Step::Map(_) => None,
            })
            .collect()
    }

    /// The stored views, in order, with their output columns' names.
    pub fn stored_views(&self) -> impl Iterator<Item = (&str, Vec<&str>)> {
        self.views.iter().filter_map(|v| match &v.step {
            Step::Window(w) => Some((
                v.name.as_str(),
                w.outputs.iter().map(|(n, _)| n.as_str()).collect(),
            )),
            Step::Map(_) => None,
        })
    }
}

/// `INSERT INTO sink SELECT ...`: as in Flink, the query's columns fill the sink's
/// declared columns by position, each cast to the sink column's type and named after it.
fn into_sink(w: &mut WindowPlan, sink: &TableDef) -> Result<()> {
    let outputs = std::mem::take(&mut w.outputs);
    for ((_, compiled), column) in outputs.into_iter().zip(&sink.columns) {
        let ColumnKind::Physical(ty) = &column.kind else {
            return Err(at(
                column.place,
                format!("sink column `{}` must be a plain column", column.name),
            ));
        };
        let from = compiled.ty.clone();
        let cast = compiled.cast_to(ty).ok_or_else(|| {
            at(
                column.place,
                format!(
                    "sink column `{}` is {ty}: cannot CAST the query's {from} to it",
                    column.name
                ),
            )
        })?;
        w.outputs.push((column.name.clone(), cast));
    }
    Ok(())
}

fn source_plan(table: &TableDef) -> Result<SourcePlan> {
    let reader = RowReader::new(table)?;
    let mut scope = Scope::new();
    let mut columns = Columns::new();
    for c in &table.columns {
        if let ColumnKind::Physical(ty) = &c.kind {
            scope.push(None, &c.name, ty.clone());
            columns.push((c.name.clone(), ty.clone()));
        }
    }
    // Computed columns read the physical ones (Flink allows nothing else).
    let physical = scope.clone();
    let mut computed = Vec::new();
    for c in &table.columns {
        if let ColumnKind::Computed(e) = &c.kind {
            let compiled = compile(e, &physical)?;
            columns.push((c.name.clone(), compiled.ty.clone()));
            computed.push(compiled);
        }
    }
    let id = table
        .primary_key
        .iter()
        .filter_map(|k| columns.iter().position(|(n, _)| n == k))
        .collect();
    Ok(SourcePlan {
        reader,
        computed,
        columns,
        id,
    })
}

fn reference_plan(table: &TableDef) -> Result<ReferencePlan> {
    let reader = RowReader::new(table)?;
    let columns: Columns = table
        .columns
        .iter()
        .filter_map(|c| match &c.kind {
            ColumnKind::Physical(ty) => Some((c.name.clone(), ty.clone())),
            ColumnKind::Computed(_) => None,
        })
        .collect();
    let key = columns
        .iter()
        .position(|(n, _)| Some(n) == table.primary_key.first())
        .ok_or_else(|| at(table.place, "a reference table needs a key column"))?;
    Ok(ReferencePlan {
        reader,
        columns,
        key,
    })
}

fn relation<'a>(
    relations: &'a [(String, Columns)],
    name: &str,
    place: Location,
) -> Result<(usize, &'a Columns)> {
    relations
        .iter()
        .position(|(n, _)| n == name)
        .map(|i| (i, &relations[i].1))
        .ok_or_else(|| at(place, format!("`{name}` is not a table or view")))
}

fn scoped(scope: &mut Scope, qualifier: &str, columns: &Columns) {
    for (name, ty) in columns {
        scope.push(Some(qualifier), name, ty.clone());
    }
}

fn view_step(
    view: &ViewDef,
    relations: &[(String, Columns)],
    references: &BTreeMap<String, TableDef>,
) -> Result<Step> {
    let select = single_select(&view.query, view.place)?;
    match &view.input {
        Input::Relation { name, alias } => {
            let (input, columns) = relation(relations, name, view.place)?;
            let mut scope = Scope::new();
            scoped(&mut scope, alias.as_deref().unwrap_or(name), columns);
            map_step(select, input, None, scope)
        }
        Input::LookupJoin {
            stream,
            stream_alias,
            reference,
            reference_alias,
            left,
            on,
        } => {
            let (input, columns) = relation(relations, stream, view.place)?;
            let stream_name = stream_alias.as_deref().unwrap_or(stream);
            let mut stream_scope = Scope::new();
            scoped(&mut stream_scope, stream_name, columns);
            let table = &references[reference];
            let ref_name = reference_alias.as_deref().unwrap_or(reference);
            let ref_columns = reference_plan(table)?.columns;
            let mut scope = stream_scope.clone();
            scoped(&mut scope, ref_name, &ref_columns);
            let stream_key = join_key(on, &stream_scope, ref_name, table, view.place)?;
            let join = JoinPlan {
                reference: reference.clone(),
                stream_key,
                left: *left,
            };
            map_step(select, input, Some(join), scope)
        }
        Input::Window(w) => {
            let (input, columns) = relation(relations, &w.input, view.place)?;
            let time = columns
                .iter()
                .position(|(n, _)| *n == w.time_column)
                .ok_or_else(|| at(view.place, format!("no column `{}`", w.time_column)))?;
            let mut scope = Scope::new();
            scoped(&mut scope, &w.input, columns);
            scope.push(None, "window_start", SqlType::Timestamp { precision: 3 });
            scope.push(None, "window_end", SqlType::Timestamp { precision: 3 });
            scope.push(None, "window_time", SqlType::TimestampLtz { precision: 3 });
            window_step(select, input, w.kind, time, &scope, view.place).map(Step::Window)
        }
    }
}

/// `ON stream_expr = ref.key` (either way round): the stream side compiled.
fn join_key(
    on: &Expr,
    stream_scope: &Scope,
    ref_name: &str,
    table: &TableDef,
    place: Location,
) -> Result<Compiled> {
    let key = table.primary_key.first().map(String::as_str).unwrap_or("");
    let is_key = |e: &Expr| match e {
        Expr::CompoundIdentifier(parts) => {
            parts.len() == 2 && parts[0].value == ref_name && parts[1].value == key
        }
        Expr::Identifier(i) => {
            i.value == key && stream_scope.columns().iter().all(|c| c.name != key)
        }
        _ => false,
    };
    let refuse = || {
        at(
            place,
            format!(
                "a lookup join's ON must be `stream_expression = {ref_name}.{key}` (the reference table's key)"
            ),
        )
    };
    let Expr::BinaryOp {
        left,
        op: sqlparser::ast::BinaryOperator::Eq,
        right,
    } = on
    else {
        return Err(refuse());
    };
    let stream_side = match (is_key(left), is_key(right)) {
        (true, false) => right,
        (false, true) => left,
        _ => return Err(refuse()),
    };
    compile(stream_side, stream_scope)
}

fn map_step(select: &Select, input: usize, join: Option<JoinPlan>, scope: Scope) -> Result<Step> {
    let filter = select
        .selection
        .as_ref()
        .map(|f| compile(f, &scope))
        .transpose()?;
    let mut project = Vec::new();
    let mut columns = Columns::new();
    for item in &select.projection {
        match item {
            SelectItem::UnnamedExpr(e) => {
                let c = compile(e, &scope)?;
                columns.push((item_name(e), c.ty.clone()));
                project.push(Projection::Expr(c));
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                let c = compile(expr, &scope)?;
                columns.push((alias.value.clone(), c.ty.clone()));
                project.push(Projection::Expr(c));
            }
            SelectItem::Wildcard(_) => {
                for (i, c) in scope.columns().iter().enumerate() {
                    columns.push((c.name.clone(), c.ty.clone()));
                    project.push(Projection::Column(i));
                }
            }
            SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(name), _) => {
                let qualifier = name.to_string();
                for (i, c) in scope.columns().iter().enumerate() {
                    if c.qualifier.as_deref() == Some(qualifier.trim_matches('`')) {
                        columns.push((c.name.clone(), c.ty.clone()));
                        project.push(Projection::Column(i));
                    }
                }
            }
            other => {
                return Err(at(
                    Location::new(1, 1),
                    format!("select item `{other}` is not supported"),
                ));
            }
        }
    }
    Ok(Step::Map(Box::new(MapPlan {
        input,
        join,
        filter,
        project,
        columns,
    })))
}

fn item_name(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => i.value.clone(),
        Expr::CompoundIdentifier(parts) => {
            parts.last().map(|i| i.value.clone()).unwrap_or_default()
        }
        other => other.to_string(),
    }
}

fn window_step(
    select: &Select,
    input: usize,
    kind: WindowKind,
    time: usize,
    scope: &Scope,
    place: Location,
) -> Result<Box<WindowPlan>> {
    let filter = select
        .selection
        .as_ref()
        .map(|f| compile(f, scope))
        .transpose()?;
    let GroupByExpr::Expressions(group_by, _) = &select.group_by else {
        return Err(at(place, "GROUP BY ALL is not supported"));
    };
    let is_window_column = |e: &Expr| matches!(e, Expr::Identifier(i) if i.value == "window_start" || i.value == "window_end");
    let key_exprs: Vec<&Expr> = group_by.iter().filter(|e| !is_window_column(e)).collect();
    let keys: Vec<Compiled> = key_exprs
        .iter()
        .map(|e| compile(e, scope))
        .collect::<Result<_>>()?;
    let key_texts: Vec<String> = key_exprs.iter().map(|e| e.to_string()).collect();
    let mut calls: Vec<Function> = Vec::new();
    let mut rewritten = Vec::new();
    for item in &select.projection {
        let (expr, name) = match item {
            SelectItem::UnnamedExpr(e) => (e, item_name(e)),
            SelectItem::ExprWithAlias { expr, alias } => (expr, alias.value.clone()),
            other => {
                return Err(at(
                    place,
                    format!("`{other}`: a windowed view selects named expressions"),
                ));
            }
        };
        rewritten.push((name, rewrite(expr, &key_texts, &mut calls)));
    }
    let mut aggregates: Vec<AggregatePlan> = Vec::new();
    for call in &calls {
        let mut a = aggregate_plan(call, scope, place)?;
        // Percentiles of one argument under one filter read one sketch: the first's.
        if let Some(first) = aggregates.iter().position(|b| {
            b.kind.keeps_sketch() && b.sketch_of.is_some() && b.sketch_of == a.sketch_of
        }) {
            a.kind = a.kind.reading_sketch_of(first);
        }
        aggregates.push(a);
    }
    let mut post = Scope::new();
    post.push(None, "window_start", SqlType::Timestamp { precision: 3 });
    post.push(None, "window_end", SqlType::Timestamp { precision: 3 });
    for (i, k) in keys.iter().enumerate() {
        post.push(None, &format!("$k{i}"), k.ty.clone());
    }
    for (i, a) in aggregates.iter().enumerate() {
        post.push(None, &format!("$a{i}"), a.kind.result_type().clone());
    }
    let outputs = rewritten
        .into_iter()
        .map(|(name, e)| {
            compile(&e, &post)
                .map(|c| (name.clone(), c))
                .map_err(|err| match err {
                    crate::Error::InvalidSql {
                        line,
                        column,
                        reason,
                    } if reason.starts_with("unknown column") => crate::Error::InvalidSql {
                        line,
                        column,
                        reason: format!(
                            "`{name}`: {reason}; a windowed view selects window_start, window_end, \
                             its GROUP BY expressions and aggregates"
                        ),
                    },
                    other => other,
                })
        })
        .collect::<Result<_>>()?;
    // The scope ends with window_start, window_end and window_time.
    let width = scope.columns().len() - 3;
    let reads = |c: &Compiled| c.reads_columns_from(width);
    let reads_window = filter.as_ref().is_some_and(reads)
        || keys.iter().any(reads)
        || aggregates
            .iter()
            .any(|a| a.arg.as_ref().is_some_and(reads) || a.filter.as_ref().is_some_and(reads));
    Ok(Box::new(WindowPlan {
        input,
        kind,
        time,
        width,
        filter,
        keys,
        aggregates,
        outputs,
        reads_window,
    }))
}

fn aggregate_plan(call: &Function, scope: &Scope, place: Location) -> Result<AggregatePlan> {
    let name = function_name(call);
    let mut percentile = None;
    let mut sketch_of = None;
    let arg = match &call.args {
        FunctionArguments::List(FunctionArgumentList { args, .. }) => match args.as_slice() {
            [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)] => None,
            [FunctionArg::Unnamed(FunctionArgExpr::Expr(e))] => Some(compile(e, scope)?),
            [
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)),
                FunctionArg::Unnamed(FunctionArgExpr::Expr(p)),
            ] if takes_percentile(&name) => {
                percentile = Some(percentile_literal(&name, p, place)?);
                sketch_of = Some(format!(
                    "{e} FILTER {}",
                    call.filter
                        .as_deref()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                ));
                Some(compile(e, scope)?)
            }
            _ => return Err(at(place, format!("{name} takes one argument"))),
        },
        _ => return Err(at(place, format!("{name} takes one argument"))),
    };
    let kind = match (percentile, &arg) {
        (Some(p), Some(arg)) => AggregateKind::percentile(&arg.ty, p),
        _ => AggregateKind::new(&name, arg.as_ref().map(|a| &a.ty)),
    }
    .map_err(|e| at(place, format!("{name}: {e}")))?;
    let filter = call
        .filter
        .as_deref()
        .map(|f| compile(f, scope))
        .transpose()?;
    Ok(AggregatePlan {
        text: call.to_string(),
        kind,
        arg,
        filter,
        sketch_of,
    })
}

/// `expr` with each aggregate call replaced by `$a{i}` (the call kept in `calls`) and each
/// group-key expression by `$k{j}`.
fn rewrite(expr: &Expr, keys: &[String], calls: &mut Vec<Function>) -> Expr {
    if let Some(j) = keys.iter().position(|k| *k == expr.to_string()) {
        return Expr::Identifier(Ident::new(format!("$k{j}")));
    }
    let mut go = |e: &Expr| Box::new(rewrite(e, keys, calls));
    match expr {
        Expr::Function(f) if AGGREGATES.contains(&function_name(f).as_str()) => {
            calls.push(f.clone());
            Expr::Identifier(Ident::new(format!("$a{}", calls.len() - 1)))
        }
        Expr::Function(f) => {
            let mut f = f.clone();
            if let FunctionArguments::List(list) = &mut f.args {
                for arg in &mut list.args {
                    if let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = arg {
                        *e = rewrite(e, keys, calls);
                    }
                }
            }
            Expr::Function(f)
        }
        Expr::BinaryOp { left, op, right } => Expr::BinaryOp {
            left: go(left),
            op: op.clone(),
            right: go(right),
        },
        Expr::UnaryOp { op, expr } => Expr::UnaryOp {
            op: *op,
            expr: go(expr),
        },
        Expr::Nested(e) => Expr::Nested(go(e)),
        Expr::IsNull(e) => Expr::IsNull(go(e)),
        Expr::IsNotNull(e) => Expr::IsNotNull(go(e)),
        Expr::Cast {
            kind,
            expr,
            data_type,
            format,
        } => Expr::Cast {
            kind: kind.clone(),
            expr: go(expr),
            data_type: data_type.clone(),
            format: format.clone(),
        },
        Expr::Case {
            case_token,
            end_token,
            operand,
            conditions,
            else_result,
        } => Expr::Case {
            case_token: case_token.clone(),
            end_token: end_token.clone(),
            operand: operand.as_ref().map(|o| go(o)),
            conditions: conditions
                .iter()
                .map(|w| CaseWhen {
                    condition: *go(&w.condition),
                    result: *go(&w.result),
                })
                .collect(),
            else_result: else_result.as_ref().map(|e| go(e)),
        },
        other => other.clone(),
    }
}
