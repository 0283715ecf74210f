//! `CREATE VIEW name AS SELECT ...` and `INSERT INTO sink SELECT ...`: what a view
//! reads (a table, a lookup join, a window over a table or view), whether it aggregates,
//! and a check of every clause and expression against the supported subset. Anything
//! else is refused with its place and what is not supported, never run differently.

use std::collections::BTreeSet;

use sqlparser::ast::{
    BinaryOperator, CastKind, CeilFloorKind, DuplicateTreatment, Expr, Function, FunctionArg,
    FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, InTarget, JoinConstraint, JoinOperator,
    ObjectName, Query, Select, SelectItem, SetExpr, Spanned, TableFactor, TableVersion,
    UnaryOperator, Value,
};
use sqlparser::tokenizer::Location;

use super::dialect::at;
use super::reserved::check_name;
use super::{interval_ms, interval_precision_error};
use crate::error::Result;

/// How a stored view's events are cut into windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// `TUMBLE(TABLE t, DESCRIPTOR(col), size)`
    Tumble { size_ms: i64 },
    /// `HOP(TABLE t, DESCRIPTOR(col), slide, size)`
    Hop { slide_ms: i64, size_ms: i64 },
}

/// A windowing table-valued function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub kind: WindowKind,
    /// The table or view it windows.
    pub input: String,
    /// The `DESCRIPTOR` column: the event time.
    pub time_column: String,
}

/// What a view reads.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A table or an earlier view, with its alias.
    Relation { name: String, alias: Option<String> },
    /// `stream [AS s] [LEFT] JOIN reference FOR SYSTEM_TIME AS OF s.proc_time [AS r] ON ...`
    LookupJoin {
        stream: String,
        stream_alias: Option<String>,
        reference: String,
        reference_alias: Option<String>,
        left: bool,
        on: Box<Expr>,
    },
    /// A window over a table or view.
    Window(Window),
}

#[derive(Clone, Debug, PartialEq)]
pub struct ViewDef {
    pub name: String,
    pub place: Location,
    /// Declared by `INSERT INTO` a dynamodb table, rather than `CREATE VIEW`.
    pub sink: bool,
    pub query: Box<Query>,
    pub input: Input,
    /// Whether the view aggregates (then `input` is a window).
    pub aggregates: bool,
    /// The names of the select list, in order (an alias, or a column's own name).
    pub columns: Vec<String>,
    /// Every column path the view's expressions name (`a`, `s.card.country`).
    pub references: BTreeSet<Vec<String>>,
}

/// The aggregate functions a stored view may compute.
pub const AGGREGATES: [&str; 12] = [
    "COUNT",
    "SUM",
    "MIN",
    "MAX",
    "AVG",
    "STDDEV_POP",
    "STDDEV_SAMP",
    "VAR_POP",
    "VAR_SAMP",
    "APPROX_PERCENTILE",
    "PERCENTILE_APPROX",
    "APPROX_COUNT_DISTINCT",
];

/// Whether an aggregate takes a percentile after its column.
pub fn takes_percentile(name: &str) -> bool {
    matches!(name, "APPROX_PERCENTILE" | "PERCENTILE_APPROX")
}

/// The percentile argument of `APPROX_PERCENTILE(x, p)`: a number literal from 0 to 1.
pub fn percentile_literal(name: &str, p: &Expr, here: Location) -> Result<f64> {
    let refuse = || {
        at(
            here,
            format!("{name}'s percentile must be a number literal from 0 to 1, not `{p}`"),
        )
    };
    match p {
        Expr::Value(v) => match &v.value {
            Value::Number(text, _) => text
                .parse::<f64>()
                .ok()
                .filter(|p| (0.0..=1.0).contains(p))
                .ok_or_else(refuse),
            _ => Err(refuse()),
        },
        _ => Err(refuse()),
    }
}

/// The scalar functions expressions may call (besides CAST, CASE, TRIM, SUBSTRING,
/// FLOOR and CEIL, which have syntax of their own).
pub const SCALAR_FUNCTIONS: [&str; 9] = [
    "LOWER",
    "UPPER",
    "CHAR_LENGTH",
    "CONCAT",
    "ABS",
    "ROUND",
    "MOD",
    "COALESCE",
    "TO_TIMESTAMP_LTZ",
];

/// Reads the query of a view named `name` (declared at `place`).
pub(super) fn analyze(
    name: String,
    place: Location,
    sink: bool,
    query: Box<Query>,
) -> Result<ViewDef> {
    let select = single_select(&query, place)?;
    let input = input_of(select, place)?;
    let mut walk = Walk::default();
    let columns = select_columns(select, &mut walk)?;
    if let Some(filter) = &select.selection {
        walk.expr(filter, Context::Row)?;
    }
    let group_by = match &select.group_by {
        GroupByExpr::Expressions(exprs, modifiers) if modifiers.is_empty() => exprs.as_slice(),
        other => {
            return Err(at(
                other.span().start.max(place),
                "GROUP BY ALL and grouping sets are not supported",
            ));
        }
    };
    for g in group_by {
        walk.expr(g, Context::Row)?;
    }
    let aggregates = walk.aggregates > 0 || !group_by.is_empty();
    match (&input, aggregates) {
        (Input::Window(_), true) => check_window_grouping(group_by, place)?,
        (Input::Window(_), false) => {
            return Err(at(
                place,
                "a window without aggregation is not supported: GROUP BY window_start, window_end and compute aggregates",
            ));
        }
        (_, true) => {
            return Err(at(
                place,
                "an aggregation needs a window: FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(col), size)) or HOP(..., slide, size)",
            ));
        }
        (_, false) => {}
    }
    if let Input::LookupJoin { on, .. } = &input {
        walk.expr(on, Context::Row)?;
    }
    Ok(ViewDef {
        name,
        place,
        sink,
        query: query.clone(),
        input,
        aggregates,
        columns,
        references: walk.references,
    })
}

pub(super) fn single_select(query: &Query, place: Location) -> Result<&Select> {
    if let Some(with) = &query.with {
        return Err(at(
            with.span().start,
            "WITH (common table expressions) is not supported: declare a view",
        ));
    }
    if let Some(order) = &query.order_by {
        return Err(at(
            order.span().start.max(place),
            "ORDER BY is not supported: a view is unordered, as Flink's streaming views are",
        ));
    }
    if query.limit_clause.is_some() || query.fetch.is_some() {
        return Err(at(place, "LIMIT and FETCH are not supported in a view"));
    }
    let select = match query.body.as_ref() {
        SetExpr::Select(select) => select,
        SetExpr::SetOperation { .. } => {
            return Err(at(
                query.body.span().start.max(place),
                "UNION, INTERSECT and EXCEPT are not supported",
            ));
        }
        other => {
            return Err(at(
                other.span().start.max(place),
                "a view must be one SELECT",
            ));
        }
    };
    let refuse = |what: &str| {
        Err(at(
            select.span().start.max(place),
            format!("{what} is not supported"),
        ))
    };
    if select.distinct.is_some() {
        return refuse("SELECT DISTINCT");
    }
    if let Some(having) = &select.having {
        return Err(at(
            having.span().start,
            "HAVING is not supported: filter the view's rows in a rule or a later view",
        ));
    }
    if select.qualify.is_some() || !select.named_window.is_empty() {
        return refuse("QUALIFY and WINDOW clauses");
    }
    if select.top.is_some() || select.into.is_some() || !select.lateral_views.is_empty() {
        return refuse("this SELECT form");
    }
    Ok(select)
}

fn input_of(select: &Select, place: Location) -> Result<Input> {
    let [from] = select.from.as_slice() else {
        return Err(at(
            place,
            if select.from.is_empty() {
                "a view must read FROM a table or view".to_owned()
            } else {
                "a join between two streams is not supported; a lookup join needs FOR SYSTEM_TIME AS OF".to_owned()
            },
        ));
    };
    let (stream, stream_alias) = match &from.relation {
        TableFactor::Table {
            name,
            alias,
            args: None,
            version: None,
            ..
        } => (object_name(name, place)?, alias_name(alias.as_ref())?),
        TableFactor::TableFunction { expr, alias } if from.joins.is_empty() => {
            if let Some(alias) = alias {
                return Err(at(
                    alias.name.span.start,
                    "an alias of a window is not supported",
                ));
            }
            return window_of(expr, place).map(Input::Window);
        }
        TableFactor::Derived { .. } => {
            return Err(at(
                from.relation.span().start.max(place),
                "a subquery in FROM is not supported: declare it as a view",
            ));
        }
        other => {
            return Err(at(
                other.span().start.max(place),
                "this FROM clause is not supported",
            ));
        }
    };
    let join = match from.joins.as_slice() {
        [] => {
            return Ok(Input::Relation {
                name: stream,
                alias: stream_alias,
            });
        }
        [join] => join,
        _ => return Err(at(place, "a view joins at most one reference table")),
    };
    let (left, constraint) = match &join.join_operator {
        JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (true, c),
        JoinOperator::Inner(c) | JoinOperator::Join(c) => (false, c),
        _ => {
            return Err(at(
                join.relation.span().start.max(place),
                "only [LEFT] JOIN ... FOR SYSTEM_TIME AS OF is supported",
            ));
        }
    };
    let TableFactor::Table {
        name,
        alias,
        version: Some(TableVersion::ForSystemTimeAsOf(_)),
        args: None,
        ..
    } = &join.relation
    else {
        return Err(at(
            join.relation.span().start.max(place),
            "a join between two streams is not supported; a lookup join needs FOR SYSTEM_TIME AS OF",
        ));
    };
    let JoinConstraint::On(on) = constraint else {
        return Err(at(
            join.relation.span().start.max(place),
            "a lookup join needs ON stream_column = reference_key",
        ));
    };
    Ok(Input::LookupJoin {
        stream,
        stream_alias,
        reference: object_name(name, place)?,
        reference_alias: alias_name(alias.as_ref())?,
        left,
        on: Box::new(on.clone()),
    })
}

fn window_of(expr: &Expr, place: Location) -> Result<Window> {
    let here = expr.span().start.max(place);
    let Expr::Function(f) = expr else {
        return Err(at(
            here,
            "FROM TABLE(...) takes a windowing function: TUMBLE or HOP",
        ));
    };
    let name = function_name(f);
    let args = plain_args(f, here)?;
    let ms = |e: &Expr| {
        if let Some(reason) = interval_precision_error(e) {
            return Err(at(e.span().start.max(here), reason));
        }
        interval_ms(e).filter(|ms| *ms > 0).ok_or_else(|| {
            at(
                e.span().start.max(here),
                "a window size is INTERVAL 'n' SECOND, MINUTE, HOUR or DAY, above zero",
            )
        })
    };
    let (input, time_column, kind) = match (name.as_str(), args.as_slice()) {
        ("TUMBLE", [table, descriptor, size]) => {
            (table, descriptor, WindowKind::Tumble { size_ms: ms(size)? })
        }
        ("HOP", [table, descriptor, slide, size]) => {
            let (slide_ms, size_ms) = (ms(slide)?, ms(size)?);
            if size_ms % slide_ms != 0 {
                return Err(at(
                    here,
                    "a HOP window's size must be a whole multiple of its slide",
                ));
            }
            (table, descriptor, WindowKind::Hop { slide_ms, size_ms })
        }
        ("TUMBLE", _) => return Err(at(here, "TUMBLE takes (TABLE t, DESCRIPTOR(col), size)")),
        ("HOP", _) => {
            return Err(at(
                here,
                "HOP takes (TABLE t, DESCRIPTOR(col), slide, size)",
            ));
        }
        ("SESSION" | "CUMULATE", _) => {
            return Err(at(
                here,
                format!("{name} windows are not supported yet: use TUMBLE or HOP"),
            ));
        }
        _ => {
            return Err(at(
                here,
                format!("{name} is not a windowing function: use TUMBLE or HOP"),
            ));
        }
    };
    let Expr::Identifier(input) = input else {
        return Err(at(
            input.span().start.max(here),
            "the window's first argument is TABLE name",
        ));
    };
    let time_column = match time_column {
        Expr::Function(d) if function_name(d) == "DESCRIPTOR" => {
            match plain_args(d, here)?.as_slice() {
                [Expr::Identifier(col)] => col.value.clone(),
                _ => return Err(at(here, "DESCRIPTOR names one column")),
            }
        }
        other => {
            return Err(at(
                other.span().start.max(here),
                "the window's second argument is DESCRIPTOR(event_time_column)",
            ));
        }
    };
    Ok(Window {
        kind,
        input: input.value.clone(),
        time_column,
    })
}

/// GROUP BY of a windowed view: `window_start` and `window_end` and any other keys.
fn check_window_grouping(group_by: &[Expr], place: Location) -> Result<()> {
    let named = |n: &str| {
        group_by
            .iter()
            .any(|g| matches!(g, Expr::Identifier(i) if i.value == n))
    };
    if !(named("window_start") && named("window_end")) {
        return Err(at(
            place,
            "a windowed aggregation must GROUP BY window_start, window_end (and its keys)",
        ));
    }
    Ok(())
}

fn select_columns(select: &Select, walk: &mut Walk) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for item in &select.projection {
        match item {
            SelectItem::UnnamedExpr(e) => {
                walk.expr(e, Context::Select)?;
                names.push(match e {
                    Expr::Identifier(i) => i.value.clone(),
                    Expr::CompoundIdentifier(parts) => {
                        parts.last().map(|i| i.value.clone()).unwrap_or_default()
                    }
                    // Flink names it EXPR$n; we ask for a name instead of inventing one.
                    other => {
                        return Err(at(
                            other.span().start,
                            format!("name this column: `{other} AS name`"),
                        ));
                    }
                });
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                walk.expr(expr, Context::Select)?;
                check_name(alias)?;
                names.push(alias.value.clone());
            }
            SelectItem::QualifiedWildcard(..) | SelectItem::Wildcard(..) => {
                names.push("*".to_owned())
            }
            #[allow(unreachable_patterns)]
            other => return Err(at(other.span().start, "this select item is not supported")),
        }
    }
    let mut seen = BTreeSet::new();
    for n in &names {
        if n != "*" && !seen.insert(n) {
            return Err(at(
                select.span().start,
                format!("column name `{n}` is used twice in the select list"),
            ));
        }
    }
    Ok(names)
}

/// Where an expression stands: a select item may hold aggregates; a filter, a group key
/// or an aggregate's argument may not.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    Select,
    Row,
}

#[derive(Default)]
struct Walk {
    aggregates: usize,
    references: BTreeSet<Vec<String>>,
}

impl Walk {
    fn expr(&mut self, e: &Expr, ctx: Context) -> Result<()> {
        let here = e.span().start;
        match e {
            Expr::Identifier(i) => {
                check_name(i)?;
                self.references.insert(vec![i.value.clone()]);
            }
            Expr::CompoundIdentifier(parts) => {
                for part in parts {
                    check_name(part)?;
                }
                self.references
                    .insert(parts.iter().map(|i| i.value.clone()).collect());
            }
            Expr::Value(v) => match &v.value {
                Value::Number(..)
                | Value::SingleQuotedString(_)
                | Value::Boolean(_)
                | Value::Null => {}
                other => return Err(at(here, format!("literal {other} is not supported"))),
            },
            Expr::BinaryOp { left, op, right } => {
                use BinaryOperator as B;
                if !matches!(
                    op,
                    B::Plus
                        | B::Minus
                        | B::Multiply
                        | B::Divide
                        | B::Modulo
                        | B::Eq
                        | B::NotEq
                        | B::Lt
                        | B::LtEq
                        | B::Gt
                        | B::GtEq
                        | B::And
                        | B::Or
                        | B::StringConcat
                ) {
                    return Err(at(here, format!("operator {op} is not supported")));
                }
                self.expr(left, ctx)?;
                self.expr(right, ctx)?;
            }
            Expr::UnaryOp { op, expr } => {
                if !matches!(
                    op,
                    UnaryOperator::Not | UnaryOperator::Minus | UnaryOperator::Plus
                ) {
                    return Err(at(here, format!("operator {op} is not supported")));
                }
                self.expr(expr, ctx)?;
            }
            Expr::Nested(inner) | Expr::IsNull(inner) | Expr::IsNotNull(inner) => {
                self.expr(inner, ctx)?
            }
            Expr::In {
                expr,
                target: InTarget::List(list),
                global: false,
                ..
            } => {
                self.expr(expr, ctx)?;
                for item in list {
                    self.expr(item, ctx)?;
                }
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                for part in [expr, low, high] {
                    self.expr(part, ctx)?;
                }
            }
            Expr::Like {
                expr,
                pattern,
                any: false,
                escape_char: None,
                ..
            } => {
                self.expr(expr, ctx)?;
                self.expr(pattern, ctx)?;
            }
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                if let Some(operand) = operand {
                    self.expr(operand, ctx)?;
                }
                for when in conditions {
                    self.expr(&when.condition, ctx)?;
                    self.expr(&when.result, ctx)?;
                }
                if let Some(e) = else_result {
                    self.expr(e, ctx)?;
                }
            }
            Expr::Cast {
                kind: CastKind::Cast,
                expr,
                format: None,
                ..
            } => self.expr(expr, ctx)?,
            Expr::Trim {
                expr,
                trim_what,
                trim_characters: None,
                ..
            } => {
                self.expr(expr, ctx)?;
                if let Some(what) = trim_what {
                    self.expr(what, ctx)?;
                }
            }
            Expr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                self.expr(expr, ctx)?;
                for part in [substring_from, substring_for].into_iter().flatten() {
                    self.expr(part, ctx)?;
                }
            }
            Expr::Floor { expr, field } | Expr::Ceil { expr, field } => {
                if !matches!(
                    field,
                    CeilFloorKind::DateTimeField(sqlparser::ast::DateTimeField::NoDateTime)
                ) {
                    return Err(at(
                        here,
                        "FLOOR and CEIL take a number here (FLOOR(x TO unit) is not supported)",
                    ));
                }
                self.expr(expr, ctx)?;
            }
            Expr::Function(f) => self.function(f, ctx, here)?,
            other => return Err(at(here, format!("expression `{other}` is not supported"))),
        }
        Ok(())
    }

    fn function(&mut self, f: &Function, ctx: Context, here: Location) -> Result<()> {
        let name = function_name(f);
        if f.over.is_some() {
            return Err(at(here, "window functions (OVER) are not supported"));
        }
        if AGGREGATES.contains(&name.as_str()) {
            if ctx != Context::Select {
                return Err(at(
                    here,
                    format!("{name} may only stand in the select list of a windowed view"),
                ));
            }
            if let FunctionArguments::List(list) = &f.args
                && list.duplicate_treatment == Some(DuplicateTreatment::Distinct)
            {
                return Err(at(
                    here,
                    format!("{name}(DISTINCT ...) is not supported yet"),
                ));
            }
            self.aggregates += 1;
            let star = name == "COUNT"
                && matches!(&f.args, FunctionArguments::List(l) if matches!(l.args.as_slice(), [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)]));
            if !star {
                let args = plain_args(f, here)?;
                match (takes_percentile(&name), args.as_slice()) {
                    (false, [_]) => {}
                    (true, [_, p]) => {
                        percentile_literal(&name, p, here)?;
                    }
                    (false, _) => return Err(at(here, format!("{name} takes one argument"))),
                    (true, _) => {
                        return Err(at(
                            here,
                            format!("{name} takes a column and a percentile: {name}(x, 0.99)"),
                        ));
                    }
                }
                self.expr(args[0], Context::Row)?;
            }
            if let Some(filter) = &f.filter {
                self.expr(filter, Context::Row)?;
            }
            return Ok(());
        }
        if f.filter.is_some() {
            return Err(at(
                here,
                "FILTER (WHERE ...) applies to aggregate functions only",
            ));
        }
        if name == "PROCTIME" {
            if !plain_args(f, here)?.is_empty() {
                return Err(at(here, "PROCTIME() takes no argument"));
            }
            return Ok(());
        }
        if !SCALAR_FUNCTIONS.contains(&name.as_str()) {
            return Err(at(
                here,
                format!(
                    "function {name} is not supported (supported: {}, CAST, CASE, TRIM, SUBSTRING, FLOOR, CEIL)",
                    SCALAR_FUNCTIONS.join(", ")
                ),
            ));
        }
        for arg in plain_args(f, here)? {
            self.expr(arg, ctx)?;
        }
        Ok(())
    }
}

/// The positional arguments of a call (`*`, named arguments and clauses are refused).
pub(super) fn plain_args(f: &Function, here: Location) -> Result<Vec<&Expr>> {
    match &f.args {
        FunctionArguments::None => Ok(Vec::new()),
        FunctionArguments::Subquery(_) => {
            Err(at(here, "a subquery as an argument is not supported"))
        }
        FunctionArguments::List(list) => {
            if !list.clauses.is_empty() || list.duplicate_treatment.is_some() {
                return Err(at(here, "this argument form is not supported"));
            }
            list.args
                .iter()
                .map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
                    _ => Err(at(here, "only positional arguments are supported")),
                })
                .collect()
        }
    }
}

pub(super) fn function_name(f: &Function) -> String {
    f.name.to_string().to_ascii_uppercase()
}

fn object_name(name: &ObjectName, place: Location) -> Result<String> {
    match name.0.as_slice() {
        [part] => part
            .as_ident()
            .map(|i: &Ident| i.value.clone())
            .ok_or_else(|| at(place, "a table name is one identifier")),
        _ => Err(at(
            place,
            format!("`{name}`: catalogs and databases are not supported, name the table alone"),
        )),
    }
}

/// A table alias, refused if it is an unquoted reserved word.
fn alias_name(alias: Option<&sqlparser::ast::TableAlias>) -> Result<Option<String>> {
    alias
        .map(|a| check_name(&a.name).map(|()| a.name.value.clone()))
        .transpose()
}
