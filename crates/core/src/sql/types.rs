//! The column types a pipeline may declare, as Flink names them, and how a declaration
//! is read (`ROW<...>` by us, every other type by sqlparser).

use std::fmt;

use sqlparser::ast::{DataType, ExactNumberInfo, ObjectName, TimezoneInfo, TypeModifier};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use super::dialect::{at, from_parser};
use crate::error::Result;

/// A column's type. Every type is nullable, as Flink's are unless declared `NOT NULL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SqlType {
    Boolean,
    /// 32-bit integer (`INT`, `INTEGER`).
    Int,
    /// 64-bit integer.
    BigInt,
    /// 32-bit float (`FLOAT`, `REAL`).
    Float,
    /// 64-bit float (`DOUBLE`, `DOUBLE PRECISION`).
    Double,
    /// Exact decimal; Flink's default is `DECIMAL(10, 0)`.
    Decimal {
        precision: u8,
        scale: u8,
    },
    /// `STRING`, `VARCHAR(n)`, `CHAR(n)`: lengths are not enforced (as Flink's json
    /// format does not).
    String,
    /// Timestamp without time zone, `precision` fractional digits (0..=3).
    Timestamp {
        precision: u8,
    },
    /// Timestamp with local time zone (an instant), `TIMESTAMP_LTZ(p)`.
    TimestampLtz {
        precision: u8,
    },
    /// A nested object: its fields by name, in order.
    Row(Vec<Field>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub ty: SqlType,
}

/// Flink's largest decimal precision.
const MAX_DECIMAL_PRECISION: u64 = 38;

impl SqlType {
    pub fn is_numeric(&self) -> bool {
        matches!(
            self,
            SqlType::Int
                | SqlType::BigInt
                | SqlType::Float
                | SqlType::Double
                | SqlType::Decimal { .. }
        )
    }

    pub fn is_timestamp(&self) -> bool {
        matches!(
            self,
            SqlType::Timestamp { .. } | SqlType::TimestampLtz { .. }
        )
    }
}

impl fmt::Display for SqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlType::Boolean => f.write_str("BOOLEAN"),
            SqlType::Int => f.write_str("INT"),
            SqlType::BigInt => f.write_str("BIGINT"),
            SqlType::Float => f.write_str("FLOAT"),
            SqlType::Double => f.write_str("DOUBLE"),
            SqlType::Decimal { precision, scale } => write!(f, "DECIMAL({precision}, {scale})"),
            SqlType::String => f.write_str("STRING"),
            SqlType::Timestamp { precision } => write!(f, "TIMESTAMP({precision})"),
            SqlType::TimestampLtz { precision } => write!(f, "TIMESTAMP_LTZ({precision})"),
            SqlType::Row(fields) => {
                f.write_str("ROW<")?;
                for (i, field) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "`{}` {}", field.name, field.ty)?;
                }
                f.write_str(">")
            }
        }
    }
}

/// Reads one type at the parser's position. `ROW<name type, ...>` may nest; a `>>`
/// closing two rows at once is split, as the tokenizer reads it as one shift token.
pub(super) fn parse_type(p: &mut Parser<'_>) -> Result<SqlType> {
    let mut pending_close = false;
    let ty = parse_type_closing(p, &mut pending_close)?;
    if pending_close {
        let t = p.peek_token();
        return Err(at(t.span.start, "unbalanced `>` in a ROW type"));
    }
    Ok(ty)
}

fn parse_type_closing(p: &mut Parser<'_>, pending_close: &mut bool) -> Result<SqlType> {
    let start = p.peek_token();
    if let Token::Word(w) = &start.token
        && w.value.eq_ignore_ascii_case("ROW")
        && p.peek_nth_token(1).token == Token::Lt
    {
        p.next_token();
        p.next_token();
        let mut fields = Vec::new();
        loop {
            let name = p
                .parse_identifier()
                .map_err(|e| from_parser(e, start.span.start))?;
            super::reserved::check_name(&name)?;
            let ty = parse_type_closing(p, pending_close)?;
            if fields.iter().any(|f: &Field| f.name == name.value) {
                return Err(at(
                    name.span.start,
                    format!("field `{}` is declared twice in one ROW", name.value),
                ));
            }
            fields.push(Field {
                name: name.value,
                ty,
            });
            if *pending_close {
                // The `>>` that closed the inner row closes this one too.
                *pending_close = false;
                return Ok(SqlType::Row(fields));
            }
            if p.consume_token(&Token::Comma) {
                continue;
            }
            let close = p.next_token();
            match close.token {
                Token::Gt => return Ok(SqlType::Row(fields)),
                Token::ShiftRight => {
                    *pending_close = true;
                    return Ok(SqlType::Row(fields));
                }
                other => {
                    return Err(at(
                        close.span.start,
                        format!("expected `,` or `>` in a ROW type, found {other}"),
                    ));
                }
            }
        }
    }
    let declared = p
        .parse_data_type()
        .map_err(|e| from_parser(e, start.span.start))?;
    from_data_type(&declared).ok_or_else(|| {
        at(
            start.span.start,
            format!(
                "type {declared} is not supported: use STRING, BOOLEAN, INT, BIGINT, FLOAT, \
                 DOUBLE, DECIMAL(p, s), TIMESTAMP(3), TIMESTAMP_LTZ(3) or ROW<...>"
            ),
        )
    })
}

pub(super) fn from_data_type(t: &DataType) -> Option<SqlType> {
    Some(match t {
        DataType::Boolean | DataType::Bool => SqlType::Boolean,
        DataType::Int(None) | DataType::Integer(None) => SqlType::Int,
        DataType::BigInt(None) => SqlType::BigInt,
        DataType::Float(ExactNumberInfo::None) | DataType::Real => SqlType::Float,
        DataType::Double(ExactNumberInfo::None) | DataType::DoublePrecision => SqlType::Double,
        DataType::Decimal(info) | DataType::Dec(info) | DataType::Numeric(info) => {
            let (precision, scale) = match *info {
                ExactNumberInfo::None => (10, 0),
                ExactNumberInfo::Precision(p) => (p, 0),
                ExactNumberInfo::PrecisionAndScale(p, s) => (p, u64::try_from(s).ok()?),
            };
            if precision == 0 || precision > MAX_DECIMAL_PRECISION || scale > precision {
                return None;
            }
            SqlType::Decimal {
                precision: precision as u8,
                scale: scale as u8,
            }
        }
        DataType::String(None)
        | DataType::Varchar(_)
        | DataType::CharacterVarying(_)
        | DataType::CharVarying(_)
        | DataType::Char(_)
        | DataType::Character(_) => SqlType::String,
        DataType::Timestamp(precision, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
            SqlType::Timestamp {
                precision: timestamp_precision(*precision)?,
            }
        }
        DataType::Custom(name, modifiers) if is_named(name, "TIMESTAMP_LTZ") => {
            let precision = match modifiers.as_slice() {
                [] => None,
                [TypeModifier::Number(n, false)] => Some(n.parse().ok()?),
                _ => return None,
            };
            SqlType::TimestampLtz {
                precision: timestamp_precision(precision)?,
            }
        }
        _ => return None,
    })
}

/// A timestamp's precision: 0 to 3 (milliseconds). Flink's default, 6, and finer
/// precisions are refused: values are kept in milliseconds, and a finer column would
/// print differently from Flink.
fn timestamp_precision(p: Option<u64>) -> Option<u8> {
    match p {
        Some(p @ 0..=3) => Some(p as u8),
        _ => None,
    }
}

fn is_named(name: &ObjectName, expected: &str) -> bool {
    name.0.len() == 1
        && name.0[0]
            .as_ident()
            .is_some_and(|i| i.value.eq_ignore_ascii_case(expected))
}

#[cfg(test)]
mod tests {
    use super::super::dialect::{FlinkDialect, tokens};
    use super::*;

    fn read(text: &str) -> Result<SqlType> {
        let dialect = FlinkDialect;
        let mut p = Parser::new(&dialect).with_tokens_with_locations(tokens(text)?);
        parse_type(&mut p)
    }

    #[test]
    fn flink_types_read_as_declared() {
        let cases = [
            ("STRING", SqlType::String),
            ("VARCHAR(20)", SqlType::String),
            ("BOOLEAN", SqlType::Boolean),
            ("INT", SqlType::Int),
            ("INTEGER", SqlType::Int),
            ("BIGINT", SqlType::BigInt),
            ("FLOAT", SqlType::Float),
            ("DOUBLE", SqlType::Double),
            (
                "DECIMAL",
                SqlType::Decimal {
                    precision: 10,
                    scale: 0,
                },
            ),
            (
                "DECIMAL(12, 2)",
                SqlType::Decimal {
                    precision: 12,
                    scale: 2,
                },
            ),
            ("TIMESTAMP(3)", SqlType::Timestamp { precision: 3 }),
            ("TIMESTAMP_LTZ(3)", SqlType::TimestampLtz { precision: 3 }),
        ];
        for (text, want) in cases {
            assert_eq!(read(text).expect(text), want, "{text}");
        }
    }

    #[test]
    fn rows_nest_and_close_with_one_shift_token() {
        let t = read("ROW<a INT, `b c` ROW<x STRING, y ROW<z DOUBLE>>>").expect("row");
        assert_eq!(
            t.to_string(),
            "ROW<`a` INT, `b c` ROW<`x` STRING, `y` ROW<`z` DOUBLE>>>"
        );
        let t = read("ROW<a ROW<b INT>, c BIGINT>").expect("row");
        assert_eq!(t.to_string(), "ROW<`a` ROW<`b` INT>, `c` BIGINT>");
    }

    #[test]
    fn unsupported_types_are_refused_with_their_place() {
        for (text, needle) in [
            ("ARRAY<INT>", "is not supported"),
            ("MAP<STRING, INT>", "is not supported"),
            ("DATE", "type DATE is not supported"),
            ("DECIMAL(40, 2)", "is not supported"),
            ("TIMESTAMP(12)", "is not supported"),
            ("TIMESTAMP(6)", "is not supported"),
            ("TIMESTAMP", "is not supported"),
            ("ROW<a INT, a STRING>", "field `a` is declared twice"),
            ("ROW<a INT", "expected"),
        ] {
            let e = read(text).expect_err(text).to_string();
            assert!(e.starts_with("line 1, column "), "{text}: {e}");
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
