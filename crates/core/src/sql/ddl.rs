//! `CREATE TABLE` as Flink writes it: physical columns with their types, computed
//! columns (`name AS expression`), `WATERMARK FOR column AS column - INTERVAL ...`,
//! `PRIMARY KEY (columns) NOT ENFORCED` and the `WITH (...)` options that name the
//! connector. sqlparser reads each piece; the order of pieces is ours, as no dialect of
//! sqlparser reads Flink's table definitions.

use sqlparser::ast::{BinaryOperator, Expr};
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Token};

use super::dialect::{at, from_parser};
use super::reserved::check_name;
use super::types::{SqlType, parse_type};
use super::{interval_ms, interval_precision_error};
use crate::error::Result;

/// What a table is, by its `'connector'` option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connector {
    /// `'connector' = 'kinesis'`: the raw stream, the pipeline's one source.
    Kinesis,
    /// `'connector' = 'dynamodb'`: reference data (read by lookup joins) or a sink
    /// (the target of an `INSERT INTO`).
    DynamoDb,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ColumnKind {
    /// Read from the record's JSON field of the same name.
    Physical(SqlType),
    /// Computed from other columns of the same row (`et AS TO_TIMESTAMP_LTZ(ms, 3)`).
    Computed(Box<Expr>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub name: String,
    pub kind: ColumnKind,
    pub place: Location,
}

/// `WATERMARK FOR column AS column - INTERVAL 'n' UNIT`: the event-time column, and
/// how far behind the newest event time an event may arrive and still count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watermark {
    pub column: String,
    pub delay_ms: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TableDef {
    pub name: String,
    pub place: Location,
    pub columns: Vec<Column>,
    pub watermark: Option<Watermark>,
    pub primary_key: Vec<String>,
    /// The `WITH` options in the order written.
    pub options: Vec<(String, String)>,
    pub connector: Connector,
}

impl TableDef {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The `json.*` options of a source this version honours; any other is refused, as
/// each changes how records read.
const JSON_OPTIONS: [&str; 2] = [
    "json.timestamp-format.standard",
    "json.fail-on-missing-field",
];

/// Reads a table definition after `CREATE TABLE`; `start` is where the statement began.
pub(super) fn parse_create_table(p: &mut Parser<'_>, start: Location) -> Result<TableDef> {
    let name = p.parse_identifier().map_err(|e| from_parser(e, start))?;
    check_name(&name)?;
    expect(p, &Token::LParen)?;
    let mut columns: Vec<Column> = Vec::new();
    let mut watermark = None;
    let mut primary_key = Vec::new();
    loop {
        let next = p.peek_token();
        if is_word(&next.token, "WATERMARK") {
            p.next_token();
            if watermark.is_some() {
                return Err(at(next.span.start, "a table has at most one WATERMARK"));
            }
            watermark = Some(parse_watermark(p, next.span.start)?);
        } else if is_word(&next.token, "PRIMARY") {
            p.next_token();
            p.expect_keyword(Keyword::KEY)
                .map_err(|e| from_parser(e, next.span.start))?;
            expect(p, &Token::LParen)?;
            loop {
                let col = p.parse_identifier().map_err(|e| from_parser(e, start))?;
                check_name(&col)?;
                primary_key.push(col.value);
                if !p.consume_token(&Token::Comma) {
                    break;
                }
            }
            expect(p, &Token::RParen)?;
            p.expect_keywords(&[Keyword::NOT, Keyword::ENFORCED])
                .map_err(|e| {
                    let place = p.peek_token().span.start;
                    let _ = e;
                    at(
                        place,
                        "a primary key must be declared NOT ENFORCED, as Flink requires",
                    )
                })?;
        } else {
            let col = p.parse_identifier().map_err(|e| from_parser(e, start))?;
            check_name(&col)?;
            if columns.iter().any(|c| c.name == col.value) {
                return Err(at(
                    col.span.start,
                    format!("column `{}` is declared twice", col.value),
                ));
            }
            let kind = if p.parse_keyword(Keyword::AS) {
                ColumnKind::Computed(Box::new(p.parse_expr().map_err(|e| from_parser(e, start))?))
            } else {
                ColumnKind::Physical(parse_type(p)?)
            };
            let not_null = p.peek_token().span.start;
            if p.parse_keywords(&[Keyword::NOT, Keyword::NULL]) {
                // Flink's NOT NULL on a source column only documents; reading a null
                // into it fails the job. We keep columns nullable and say so.
                return Err(at(
                    not_null,
                    "NOT NULL columns are not supported: every column reads missing fields as NULL",
                ));
            }
            columns.push(Column {
                name: col.value,
                kind,
                place: col.span.start,
            });
        }
        if p.consume_token(&Token::Comma) {
            continue;
        }
        expect(p, &Token::RParen)?;
        break;
    }
    let with = p.peek_token();
    if !p.parse_keyword(Keyword::WITH) {
        return Err(at(
            with.span.start,
            format!(
                "table `{}` needs WITH ('connector' = 'kinesis' | 'dynamodb', ...)",
                name.value
            ),
        ));
    }
    let options = parse_options(p)?;
    let table = TableDef {
        connector: connector(&options, name.span.start)?,
        name: name.value,
        place: name.span.start,
        columns,
        watermark,
        primary_key,
        options,
    };
    check_table(&table)?;
    Ok(table)
}

fn parse_watermark(p: &mut Parser<'_>, place: Location) -> Result<Watermark> {
    p.expect_keyword(Keyword::FOR)
        .map_err(|e| from_parser(e, place))?;
    let column = p.parse_identifier().map_err(|e| from_parser(e, place))?;
    check_name(&column)?;
    p.expect_keyword(Keyword::AS)
        .map_err(|e| from_parser(e, place))?;
    let expr = p.parse_expr().map_err(|e| from_parser(e, place))?;
    let same_column = |e: &Expr| matches!(e, Expr::Identifier(i) if i.value == column.value);
    let delay_ms = match &expr {
        e if same_column(e) => Some(0),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Minus,
            right,
        } if same_column(left) => {
            if let Some(reason) = interval_precision_error(right) {
                return Err(at(place, reason));
            }
            interval_ms(right).filter(|ms| *ms >= 0)
        }
        _ => None,
    };
    let delay_ms = delay_ms.ok_or_else(|| {
        at(
            place,
            format!(
                "a watermark must read `{0} - INTERVAL 'n' SECOND` (or MINUTE, HOUR, DAY) or `{0}`",
                column.value
            ),
        )
    })?;
    Ok(Watermark {
        column: column.value,
        delay_ms,
    })
}

fn parse_options(p: &mut Parser<'_>) -> Result<Vec<(String, String)>> {
    expect(p, &Token::LParen)?;
    let mut options: Vec<(String, String)> = Vec::new();
    loop {
        let key = string_literal(p, "an option name in quotes")?;
        expect(p, &Token::Eq)?;
        let value = string_literal(p, "an option value in quotes")?;
        if options.iter().any(|(k, _)| *k == key.0) {
            return Err(at(key.1, format!("option '{}' is given twice", key.0)));
        }
        options.push((key.0, value.0));
        if !p.consume_token(&Token::Comma) {
            break;
        }
    }
    expect(p, &Token::RParen)?;
    Ok(options)
}

fn string_literal(p: &mut Parser<'_>, what: &str) -> Result<(String, Location)> {
    let t = p.next_token();
    match t.token {
        Token::SingleQuotedString(s) => Ok((s, t.span.start)),
        other => Err(at(t.span.start, format!("expected {what}, found {other}"))),
    }
}

fn connector(options: &[(String, String)], place: Location) -> Result<Connector> {
    match options
        .iter()
        .find(|(k, _)| k == "connector")
        .map(|(_, v)| v.as_str())
    {
        Some("kinesis") => Ok(Connector::Kinesis),
        Some("dynamodb") => Ok(Connector::DynamoDb),
        Some(other) => Err(at(
            place,
            format!(
                "connector '{other}' is not supported: use 'kinesis' (the source) or 'dynamodb' (reference data, sinks)"
            ),
        )),
        None => Err(at(place, "the table has no 'connector' option")),
    }
}

/// What a table must hold for its connector.
fn check_table(t: &TableDef) -> Result<()> {
    for key in &t.primary_key {
        if t.column(key).is_none() {
            return Err(at(
                t.place,
                format!("primary key column `{key}` is not a column of `{}`", t.name),
            ));
        }
    }
    if let Some(w) = &t.watermark {
        match t.column(&w.column).map(|c| &c.kind) {
            None => {
                return Err(at(
                    t.place,
                    format!(
                        "watermark column `{}` is not a column of `{}`",
                        w.column, t.name
                    ),
                ));
            }
            Some(ColumnKind::Physical(ty)) if !ty.is_timestamp() => {
                return Err(at(
                    t.place,
                    format!(
                        "watermark column `{}` is {ty}: the event-time column must be TIMESTAMP(3) or TIMESTAMP_LTZ(3)",
                        w.column
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    match t.connector {
        Connector::Kinesis => {
            match t.option("format") {
                Some("json") => {}
                Some(other) => {
                    return Err(at(
                        t.place,
                        format!("format '{other}' is not supported: the source reads 'json'"),
                    ));
                }
                None => return Err(at(t.place, "the kinesis source needs 'format' = 'json'")),
            }
            for (key, value) in &t.options {
                if key.starts_with("json.") && !JSON_OPTIONS.contains(&key.as_str()) {
                    return Err(at(
                        t.place,
                        format!(
                            "option '{key}' is not supported (supported: {})",
                            JSON_OPTIONS.join(", ")
                        ),
                    ));
                }
                let valid = match key.as_str() {
                    "json.timestamp-format.standard" => {
                        matches!(value.as_str(), "SQL" | "ISO-8601")
                    }
                    "json.fail-on-missing-field" => value == "false",
                    _ => true,
                };
                if !valid {
                    return Err(at(
                        t.place,
                        format!("option '{key}' = '{value}' is not supported"),
                    ));
                }
            }
        }
        Connector::DynamoDb => {
            if t.watermark.is_some() {
                return Err(at(
                    t.place,
                    "a dynamodb table has no event time: remove its WATERMARK",
                ));
            }
            if t.columns
                .iter()
                .any(|c| matches!(c.kind, ColumnKind::Computed(_)))
            {
                return Err(at(t.place, "a dynamodb table has no computed columns"));
            }
        }
    }
    Ok(())
}

fn is_word(t: &Token, word: &str) -> bool {
    matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

fn expect(p: &mut Parser<'_>, token: &Token) -> Result<()> {
    let place = p.peek_token().span.start;
    p.expect_token(token)
        .map(|_| ())
        .map_err(|e| from_parser(e, place))
}
