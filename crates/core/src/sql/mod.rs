//! Pipelines written in Flink SQL (issue 17): one `.sql` file of statements, read with
//! sqlparser on Flink's lexical rules ([`dialect`]), checked against the supported
//! subset, with every refusal at its line and column.
//!
//! A pipeline holds:
//! - one source, `CREATE TABLE ... WITH ('connector' = 'kinesis', 'format' = 'json')`:
//!   the raw stream's JSON records, an event-time column (`WATERMARK FOR`, whose
//!   interval is the allowed lateness) and optionally the event id (`PRIMARY KEY`);
//! - reference tables (`'connector' = 'dynamodb'` with a primary key) read by lookup
//!   joins, and sinks (`'connector' = 'dynamodb'`, the target of `INSERT INTO`);
//! - views: without aggregation an intermediate step (projection, filter, lookup join);
//!   a windowed aggregation (`TUMBLE`, `HOP`) is stored, as is every `INSERT INTO`.
//!
//! Status: this module reads and checks pipelines and describes their plan
//! (`sluice sql check`). Evaluating them on the stages is not built yet.

mod aggregate;
mod batch;
mod ddl;
mod dialect;
mod expr;
mod json;
mod reserved;
mod types;
mod value;
mod view;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use sqlparser::ast::{DateTimeField, Expr, Statement, TableObject, Value as Literal};
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Token};

pub use aggregate::{
    AggregateError, AggregateFunction, AggregateKind, AggregateState, distinct, exact,
    heavy_hitters, quantile,
};
pub use batch::{
    Evaluated, Evaluation, Lookup, Program, References, ResultRow, StoredShape, ViewUpdate,
    Windows, codec, json_equals, json_number, json_value, value_json,
};
pub use ddl::{Column, ColumnKind, Connector, TableDef, Watermark};
pub use expr::{Compiled, EvalContext, EvalError, Scope, ScopeColumn, compile};
pub use json::{Rejection, RowReader, TimestampStandard};
pub use types::{Field, SqlType};
pub use value::{Decimal, Value};
pub use view::{AGGREGATES, Input, SCALAR_FUNCTIONS, ViewDef, Window, WindowKind};

use crate::error::Result;
use dialect::{FlinkDialect, RECURSION_LIMIT, at, from_parser};

/// The parser thread's stack.
const PARSE_STACK_BYTES: usize = 16 << 20;

/// A checked pipeline.
#[derive(Clone, Debug, PartialEq)]
pub struct Pipeline {
    pub source: TableDef,
    /// Reference tables by name.
    pub references: BTreeMap<String, TableDef>,
    /// Sink tables by name.
    pub sinks: BTreeMap<String, TableDef>,
    /// Views in the order declared (a view reads only tables and earlier views).
    pub views: Vec<ViewDef>,
}

impl Pipeline {
    /// Reads and checks a pipeline's text.
    pub fn parse(text: &str) -> Result<Pipeline> {
        // sqlparser recurses per nesting level with large frames (in a debug build 64
        // levels overflow a test thread's 2 MiB and fit in 4 MiB): the parse runs on a
        // thread whose stack holds `RECURSION_LIMIT` levels with room to spare, so deep
        // input is refused, never a stack overflow. The stack is reserved, not touched.
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("sql-parse".into())
                .stack_size(PARSE_STACK_BYTES)
                .spawn_scoped(scope, || parse_statements(text).and_then(assemble))
                .map_err(|e| {
                    at(
                        Location::new(1, 1),
                        format!("could not start the parser: {e}"),
                    )
                })?
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// The views whose rows are stored: windowed aggregations and sinks.
    pub fn stored_views(&self) -> impl Iterator<Item = &ViewDef> {
        self.views.iter().filter(|v| v.aggregates || v.sink)
    }

    /// A readable account of what each stage will do, for `sluice sql check`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let s = &self.source;
        let _ = writeln!(out, "source `{}` (kinesis, json)", s.name);
        match &s.watermark {
            Some(w) => {
                let _ = writeln!(
                    out,
                    "  event time `{}`, allowed lateness {} ms",
                    w.column, w.delay_ms
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  no event time (no WATERMARK): no window can be computed"
                );
            }
        }
        let id = if s.primary_key.is_empty() {
            "the record's origin (no PRIMARY KEY)".to_owned()
        } else {
            format!("PRIMARY KEY ({})", s.primary_key.join(", "))
        };
        let _ = writeln!(out, "  event identity: {id}");
        let _ = writeln!(out, "  columns:");
        for c in &s.columns {
            let _ = match &c.kind {
                ColumnKind::Physical(t) => writeln!(out, "    {} {t}", c.name),
                ColumnKind::Computed(e) => writeln!(out, "    {} AS {e}", c.name),
            };
        }
        for r in self.references.values() {
            let _ = writeln!(
                out,
                "reference `{}` (dynamodb), key ({})",
                r.name,
                r.primary_key.join(", ")
            );
        }
        for v in &self.views {
            let role = if v.sink {
                "sink"
            } else if v.aggregates {
                "stored view"
            } else {
                "intermediate view"
            };
            let _ = writeln!(out, "{role} `{}`", v.name);
            let _ = match &v.input {
                Input::Relation { name, .. } => writeln!(out, "  reads `{name}`"),
                Input::LookupJoin {
                    stream,
                    reference,
                    left,
                    on,
                    ..
                } => writeln!(
                    out,
                    "  reads `{stream}` {} `{reference}` ON {on} (enrich stage, cached lookups)",
                    if *left { "LEFT JOIN" } else { "JOIN" }
                ),
                Input::Window(w) => match w.kind {
                    WindowKind::Tumble { size_ms } => {
                        writeln!(
                            out,
                            "  TUMBLE over `{}` by `{}`, size {size_ms} ms",
                            w.input, w.time_column
                        )
                    }
                    WindowKind::Hop { slide_ms, size_ms } => writeln!(
                        out,
                        "  HOP over `{}` by `{}`, slide {slide_ms} ms, size {size_ms} ms",
                        w.input, w.time_column
                    ),
                },
            };
            let _ = writeln!(out, "  columns: {}", v.columns.join(", "));
        }
        let needed: BTreeSet<&str> = self.source_columns_needed();
        let _ = writeln!(
            out,
            "ingest reads (the views need): {}",
            needed.into_iter().collect::<Vec<_>>().join(", ")
        );
        out
    }

    /// The source's columns that some view or computed column names (by their first
    /// path segment, or the second after a table alias): what ingest must extract.
    pub fn source_columns_needed(&self) -> BTreeSet<&str> {
        let mut needed = BTreeSet::new();
        let is_column = |name: &str| self.source.column(name).is_some();
        for v in &self.views {
            for path in &v.references {
                for segment in path.iter().take(2) {
                    if let Some(c) = self.source.columns.iter().find(|c| c.name == *segment) {
                        needed.insert(c.name.as_str());
                        break;
                    }
                }
            }
            if v.columns.iter().any(|c| c == "*") {
                needed.extend(self.source.columns.iter().map(|c| c.name.as_str()));
            }
        }
        if let Some(w) = &self.source.watermark {
            needed.insert(w.column.as_str());
        }
        needed.extend(
            self.source
                .primary_key
                .iter()
                .map(String::as_str)
                .filter(|c| is_column(c)),
        );
        needed
    }
}

/// One statement of the file, read.
enum Parsed {
    Table(Box<TableDef>),
    View(Box<ViewDef>),
}

fn parse_statements(text: &str) -> Result<Vec<Parsed>> {
    let dialect = FlinkDialect;
    let mut p = Parser::new(&dialect)
        .with_recursion_limit(RECURSION_LIMIT)
        .with_tokens_with_locations(dialect::tokens(text)?);
    let mut out = Vec::new();
    loop {
        while p.consume_token(&Token::SemiColon) {}
        let first = p.peek_token();
        if first.token == Token::EOF {
            break;
        }
        let start = first.span.start;
        if p.parse_keywords(&[Keyword::CREATE, Keyword::TABLE]) {
            out.push(Parsed::Table(Box::new(ddl::parse_create_table(
                &mut p, start,
            )?)));
        } else {
            let statement = p.parse_statement().map_err(|e| from_parser(e, start))?;
            out.push(Parsed::View(Box::new(view_statement(statement, start)?)));
        }
        let end = p.peek_token();
        if !matches!(end.token, Token::SemiColon | Token::EOF) {
            return Err(at(
                end.span.start,
                format!("expected `;` after the statement, found {}", end.token),
            ));
        }
    }
    Ok(out)
}

fn view_statement(statement: Statement, start: Location) -> Result<ViewDef> {
    match statement {
        Statement::CreateView(v) => {
            if v.materialized || v.or_replace || !v.columns.is_empty() {
                return Err(at(
                    start,
                    "only CREATE VIEW name AS SELECT ... is supported",
                ));
            }
            if let Some(ident) = v.name.0.first().and_then(|p| p.as_ident()) {
                reserved::check_name(ident)?;
            }
            let name = single_name(&v.name.to_string(), start)?;
            view::analyze(name, start, false, v.query)
        }
        Statement::Insert(insert) => {
            let TableObject::TableName(name) = &insert.table else {
                return Err(at(start, "INSERT INTO names a sink table"));
            };
            let Some(source) = insert.source else {
                return Err(at(
                    start,
                    "INSERT INTO sink SELECT ... is the supported form",
                ));
            };
            if !insert.columns.is_empty() || insert.overwrite {
                return Err(at(
                    start,
                    "INSERT INTO sink SELECT ... is the supported form (no column list, no OVERWRITE)",
                ));
            }
            view::analyze(single_name(&name.to_string(), start)?, start, true, source)
        }
        other => Err(at(
            start,
            format!(
                "statement `{}` is not supported: a pipeline holds CREATE TABLE, CREATE VIEW and INSERT INTO",
                first_words(&other.to_string())
            ),
        )),
    }
}

fn first_words(s: &str) -> String {
    s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn single_name(name: &str, start: Location) -> Result<String> {
    let trimmed = name.trim_matches('`');
    if trimmed.contains('.') && !name.starts_with('`') {
        return Err(at(
            start,
            format!("`{name}`: catalogs and databases are not supported"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// The statements sorted by kind: the source, the other tables by name, the views and
/// the `INSERT INTO`s in order.
struct Declared {
    source: TableDef,
    tables: BTreeMap<String, TableDef>,
    views: Vec<ViewDef>,
    inserts: Vec<ViewDef>,
}

/// Puts the statements together and checks what refers to what.
fn assemble(statements: Vec<Parsed>) -> Result<Pipeline> {
    let Declared {
        source,
        tables,
        views,
        inserts,
    } = sort_declarations(statements)?;
    let sink_names: BTreeSet<String> = inserts.iter().map(|v| v.name.clone()).collect();
    let (sinks, references): (BTreeMap<_, _>, BTreeMap<_, _>) = tables
        .into_iter()
        .partition(|(name, _)| sink_names.contains(name));
    check_sinks(&inserts, &sinks)?;
    check_references(&references)?;
    let mut checked: Vec<ViewDef> = Vec::new();
    for v in views.into_iter().chain(inserts) {
        check_inputs(&v, &source, &references, &checked)?;
        checked.push(v);
    }
    let pipeline = Pipeline {
        source,
        references,
        sinks,
        views: checked,
    };
    if pipeline.stored_views().next().is_none() {
        return Err(at(
            Location::new(1, 1),
            "the pipeline stores nothing: declare a windowed view (TUMBLE or HOP with GROUP BY) or INSERT INTO a sink",
        ));
    }
    Ok(pipeline)
}

/// One source, no name declared twice.
fn sort_declarations(statements: Vec<Parsed>) -> Result<Declared> {
    let mut source: Option<TableDef> = None;
    let mut tables: BTreeMap<String, TableDef> = BTreeMap::new();
    let mut views: Vec<ViewDef> = Vec::new();
    let mut inserts: Vec<ViewDef> = Vec::new();
    for statement in statements {
        match statement {
            Parsed::Table(t) => {
                let t = *t;
                if tables.contains_key(&t.name) || source.as_ref().is_some_and(|s| s.name == t.name)
                {
                    return Err(at(t.place, format!("table `{}` is declared twice", t.name)));
                }
                if t.connector != Connector::Kinesis {
                    tables.insert(t.name.clone(), t);
                } else if let Some(first) = &source {
                    return Err(at(
                        t.place,
                        format!(
                            "a pipeline reads one kinesis source; `{}` is already its source",
                            first.name
                        ),
                    ));
                } else {
                    source = Some(t);
                }
            }
            Parsed::View(v) if v.sink => inserts.push(*v),
            Parsed::View(v) => {
                if views.iter().any(|w| w.name == v.name) || tables.contains_key(&v.name) {
                    return Err(at(v.place, format!("`{}` is declared twice", v.name)));
                }
                views.push(*v);
            }
        }
    }
    let source = source.ok_or_else(|| {
        at(
            Location::new(1, 1),
            "the pipeline has no source: CREATE TABLE name (...) WITH ('connector' = 'kinesis', 'format' = 'json')",
        )
    })?;
    Ok(Declared {
        source,
        tables,
        views,
        inserts,
    })
}

/// Every `INSERT INTO` names a declared sink and fills its columns by position, as in
/// Flink.
fn check_sinks(inserts: &[ViewDef], sinks: &BTreeMap<String, TableDef>) -> Result<()> {
    for v in inserts {
        let Some(sink) = sinks.get(&v.name) else {
            return Err(at(
                v.place,
                format!(
                    "INSERT INTO `{}`: no dynamodb table of that name is declared",
                    v.name
                ),
            ));
        };
        if v.columns.iter().any(|c| c == "*") || v.columns.len() != sink.columns.len() {
            let declared: Vec<&str> = sink.columns.iter().map(|c| c.name.as_str()).collect();
            return Err(at(
                v.place,
                format!(
                    "INSERT INTO `{}` selects {} columns; the sink declares {} ({})",
                    v.name,
                    v.columns.len(),
                    declared.len(),
                    declared.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// A reference table is read by its key: it needs one.
fn check_references(references: &BTreeMap<String, TableDef>) -> Result<()> {
    match references.values().find(|r| r.primary_key.is_empty()) {
        Some(r) => Err(at(
            r.place,
            format!(
                "reference table `{}` needs PRIMARY KEY (key) NOT ENFORCED: the lookup key",
                r.name
            ),
        )),
        None => Ok(()),
    }
}

/// What a view reads must exist: the source or an earlier view (windows and joins
/// read the stream; a lookup join's right side is a reference table).
fn check_inputs(
    v: &ViewDef,
    source: &TableDef,
    references: &BTreeMap<String, TableDef>,
    earlier: &[ViewDef],
) -> Result<()> {
    let stream = |name: &str| -> Result<()> {
        if name == source.name {
            return Ok(());
        }
        match earlier.iter().find(|e| e.name == name) {
            Some(e) if e.aggregates || e.sink => Err(at(
                v.place,
                format!(
                    "`{name}` is an aggregation: a view over another view's windows is not supported"
                ),
            )),
            Some(_) => Ok(()),
            None if references.contains_key(name) => Err(at(
                v.place,
                format!(
                    "`{name}` is a reference table: read it through a lookup join (FOR SYSTEM_TIME AS OF)"
                ),
            )),
            None => Err(at(
                v.place,
                format!("`{name}` is neither the source nor an earlier view"),
            )),
        }
    };
    match &v.input {
        Input::Relation { name, .. } => stream(name),
        Input::LookupJoin {
            stream: s,
            reference,
            ..
        } => {
            stream(s)?;
            if !references.contains_key(reference) {
                return Err(at(
                    v.place,
                    format!(
                        "`{reference}` is not a reference table (a dynamodb table with a PRIMARY KEY)"
                    ),
                ));
            }
            Ok(())
        }
        Input::Window(w) => {
            stream(&w.input)?;
            match &source.watermark {
                Some(wm) if wm.column == w.time_column => Ok(()),
                Some(wm) => Err(at(
                    v.place,
                    format!(
                        "DESCRIPTOR({}): windows are over the event-time column `{}` (the WATERMARK's)",
                        w.time_column, wm.column
                    ),
                )),
                None => Err(at(
                    v.place,
                    format!(
                        "a window needs event time: declare WATERMARK FOR {} AS {} - INTERVAL 'n' SECOND in `{}`",
                        w.time_column, w.time_column, source.name
                    ),
                )),
            }
        }
    }
}

/// Why Flink refuses an `INTERVAL 'n' UNIT` literal whose value has more digits than its
/// leading field's precision (2 unless written, e.g. `SECOND(3)`): Flink reads
/// `INTERVAL '300' SECOND` as an error, so Sluice does too.
pub(crate) fn interval_precision_error(e: &Expr) -> Option<String> {
    let Expr::Interval(interval) = e else {
        return None;
    };
    let Expr::Value(v) = interval.value.as_ref() else {
        return None;
    };
    let (Literal::SingleQuotedString(s) | Literal::Number(s, _)) = &v.value else {
        return None;
    };
    let digits = s.trim().trim_start_matches(['-', '+']).len() as u64;
    let precision = interval.leading_precision.unwrap_or(2);
    (digits > precision).then(|| {
        format!(
            "INTERVAL '{}' has more digits than its field's precision ({precision}), which Flink refuses: \
             use a larger unit (INTERVAL '5' MINUTE for 300 seconds) or write the precision (SECOND(3))",
            s.trim()
        )
    })
}

/// `INTERVAL 'n' UNIT` in milliseconds (SECOND, MINUTE, HOUR, DAY; n a whole number).
pub(crate) fn interval_ms(e: &Expr) -> Option<i64> {
    let Expr::Interval(interval) = e else {
        return None;
    };
    if interval.last_field.is_some() || interval.fractional_seconds_precision.is_some() {
        return None;
    }
    let n: i64 = match interval.value.as_ref() {
        Expr::Value(v) => match &v.value {
            Literal::SingleQuotedString(s) | Literal::Number(s, _) => s.trim().parse().ok()?,
            _ => return None,
        },
        _ => return None,
    };
    let unit: i64 = match interval.leading_field.as_ref()? {
        DateTimeField::Second | DateTimeField::Seconds => 1_000,
        DateTimeField::Minute | DateTimeField::Minutes => 60_000,
        DateTimeField::Hour | DateTimeField::Hours => 3_600_000,
        DateTimeField::Day | DateTimeField::Days => 86_400_000,
        _ => return None,
    };
    n.checked_mul(unit)
}

#[cfg(test)]
mod tests;
