//! Function calls and the SQL forms with syntax of their own (TRIM, SUBSTRING, FLOOR,
//! CEIL): argument types, arity, result types.

use sqlparser::ast::{Expr, Function, Spanned, TrimWhereField, UnaryOperator, Value as Literal};
use sqlparser::tokenizer::Location;

use super::compile::{Compiler, Typed, arithmetic, illegal_null, located, merged};
use super::typing;
use super::{ArithOp, Func, Node, TrimSide};
use crate::error::Result;
use crate::sql::dialect::at;
use crate::sql::types::SqlType;
use crate::sql::value::Value;
use crate::sql::view::{AGGREGATES, plain_args};

impl Compiler<'_> {
    pub(super) fn trim(
        &mut self,
        e: &Expr,
        side: Option<&TrimWhereField>,
        what: Option<&Expr>,
        here: Location,
    ) -> Result<Typed> {
        let side = match side {
            None | Some(TrimWhereField::Both) => TrimSide::Both,
            Some(TrimWhereField::Leading) => TrimSide::Leading,
            Some(TrimWhereField::Trailing) => TrimSide::Trailing,
        };
        let value = self.string(e, here, "TRIM")?;
        let characters = match what {
            Some(w) => self.string(w, here, "TRIM")?,
            None => Node::Literal(Value::string(" ")),
        };
        Ok(Typed::of(
            Node::Call {
                func: Func::Trim(side),
                ty: SqlType::String,
                args: vec![value, characters],
            },
            SqlType::String,
        ))
    }

    pub(super) fn substring(&mut self, args: &[&Expr], here: Location) -> Result<Typed> {
        let [value, rest @ ..] = args else {
            return Err(at(here, "SUBSTRING takes (s FROM start [FOR length])"));
        };
        if rest.is_empty() || rest.len() > 2 {
            return Err(at(
                here,
                "SUBSTRING takes (s FROM start [FOR length]) or (s, start[, length])",
            ));
        }
        let mut nodes = vec![self.string(value, here, "SUBSTRING")?];
        for a in rest {
            nodes.push(self.integer(a, here, "SUBSTRING")?);
        }
        Ok(Typed::of(
            Node::Call {
                func: Func::Substring,
                ty: SqlType::String,
                args: nodes,
            },
            SqlType::String,
        ))
    }

    pub(super) fn floor_ceil(&mut self, func: Func, e: &Expr, here: Location) -> Result<Typed> {
        let (node, ty) =
            self.numeric(e, here, if func == Func::Floor { "FLOOR" } else { "CEIL" })?;
        let out = match ty {
            SqlType::Decimal { precision, scale } => typing::floor_ceil_decimal(precision, scale),
            other => other,
        };
        Ok(Typed::of(
            Node::Call {
                func,
                ty: out.clone(),
                args: vec![node],
            },
            out,
        ))
    }

    fn numeric(&mut self, e: &Expr, parent: Location, what: &str) -> Result<(Node, SqlType)> {
        let (node, ty) = self.typed(e, parent)?;
        if !ty.is_numeric() {
            return Err(at(
                located(e.span().start, parent),
                format!("{what} takes a number, not {ty}"),
            ));
        }
        Ok((node, ty))
    }

    pub(super) fn function(&mut self, f: &Function, here: Location) -> Result<Typed> {
        let name = f.name.to_string().to_ascii_uppercase();
        if AGGREGATES.contains(&name.as_str()) {
            return Err(at(
                here,
                format!(
                    "{name} is an aggregate, not a scalar expression: it may only stand in the select list of a windowed view"
                ),
            ));
        }
        if f.over.is_some() || f.filter.is_some() || !f.within_group.is_empty() {
            return Err(at(
                here,
                format!("{name}: OVER, FILTER and WITHIN GROUP are not supported here"),
            ));
        }
        let args = plain_args(f, here)?;
        let arity = |n: std::ops::RangeInclusive<usize>| -> Result<()> {
            if n.contains(&args.len()) {
                Ok(())
            } else {
                Err(at(
                    here,
                    format!(
                        "{name} takes {} argument{}, not {}",
                        if n.start() == n.end() {
                            n.start().to_string()
                        } else {
                            format!("{} to {}", n.start(), n.end())
                        },
                        if *n.end() == 1 { "" } else { "s" },
                        args.len()
                    ),
                ))
            }
        };
        match name.as_str() {
            "PROCTIME" => {
                arity(0..=0)?;
                Ok(Typed::of(
                    Node::ProcTime,
                    SqlType::TimestampLtz { precision: 3 },
                ))
            }
            "LOWER" | "UPPER" | "CHAR_LENGTH" | "CHARACTER_LENGTH" => {
                arity(1..=1)?;
                let node = self.string(args[0], here, &name)?;
                let (func, ty) = match name.as_str() {
                    "LOWER" => (Func::Lower, SqlType::String),
                    "UPPER" => (Func::Upper, SqlType::String),
                    _ => (Func::CharLength, SqlType::Int),
                };
                Ok(call(func, ty, vec![node]))
            }
            "CONCAT" => {
                if args.is_empty() {
                    return Err(at(here, "CONCAT takes at least one argument"));
                }
                let nodes = args
                    .iter()
                    .map(|a| self.string(a, here, "CONCAT"))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Typed::of(Node::Concat(nodes), SqlType::String))
            }
            "SUBSTRING" | "SUBSTR" => self.substring(&args, here),
            "COALESCE" => {
                if args.is_empty() {
                    return Err(at(here, "COALESCE takes at least one argument"));
                }
                let typed = args
                    .iter()
                    .map(|a| Ok((located(a.span().start, here), self.expr(a, here)?)))
                    .collect::<Result<Vec<_>>>()?;
                let ty = merged(typed.iter().map(|(p, t)| (*p, t.ty.as_ref())), "COALESCE")?
                    .ok_or_else(|| illegal_null(here))?;
                let nodes = typed.into_iter().map(|(_, t)| t.cast(&ty)).collect();
                Ok(Typed::of(Node::Coalesce(nodes), ty))
            }
            "ABS" => {
                arity(1..=1)?;
                let (node, ty) = self.numeric(args[0], here, "ABS")?;
                Ok(call(Func::Abs, ty, vec![node]))
            }
            "ROUND" => {
                arity(1..=2)?;
                self.round(&args, here)
            }
            "MOD" => {
                arity(2..=2)?;
                let l = self.typed(args[0], here)?;
                let r = self.typed(args[1], here)?;
                arithmetic(ArithOp::Rem, l, r, here)
            }
            "TO_TIMESTAMP_LTZ" => {
                arity(2..=2)?;
                let (node, ty) = self.numeric(args[0], here, "TO_TIMESTAMP_LTZ")?;
                let unit_ms = match integer_literal(args[1]) {
                    Some(0) => 1000,
                    Some(3) => 1,
                    _ => {
                        return Err(at(
                            located(args[1].span().start, here),
                            "TO_TIMESTAMP_LTZ(epoch, precision): the precision is 0 (seconds) or 3 (milliseconds)",
                        ));
                    }
                };
                if matches!(ty, SqlType::Float) {
                    return Err(at(
                        here,
                        "TO_TIMESTAMP_LTZ takes INT, BIGINT, DECIMAL or DOUBLE",
                    ));
                }
                let arg = node;
                Ok(call(
                    Func::ToTimestampLtz { unit_ms },
                    SqlType::TimestampLtz { precision: 3 },
                    vec![arg],
                ))
            }
            _ => Err(at(
                here,
                format!(
                    "function {name} is not supported (supported: {}, CAST, CASE, TRIM, SUBSTRING, FLOOR, CEIL, PROCTIME)",
                    crate::sql::view::SCALAR_FUNCTIONS.join(", ")
                ),
            )),
        }
    }

    fn round(&mut self, args: &[&Expr], here: Location) -> Result<Typed> {
        let (node, ty) = self.numeric(args[0], here, "ROUND")?;
        let digits = match args.get(1) {
            None => 0,
            Some(d) => match integer_literal(d) {
                Some(n) => n,
                None => {
                    return Err(at(
                        located(d.span().start, here),
                        "ROUND(x, digits): the digits are an integer literal here",
                    ));
                }
            },
        };
        let digits = i32::try_from(digits).map_err(|_| at(here, "ROUND: too many digits"))?;
        let out = match &ty {
            SqlType::Decimal { precision, scale } => {
                typing::round_decimal(u32::from(*precision), u32::from(*scale), digits)
            }
            other => other.clone(),
        };
        Ok(call(
            Func::Round,
            out,
            vec![node, Node::Literal(Value::Int(digits))],
        ))
    }
}

fn call(func: Func, ty: SqlType, args: Vec<Node>) -> Typed {
    Typed::of(
        Node::Call {
            func,
            ty: ty.clone(),
            args,
        },
        ty,
    )
}

/// An integer literal, possibly negative (`3`, `-1`).
fn integer_literal(e: &Expr) -> Option<i64> {
    match e {
        Expr::Value(v) => match &v.value {
            Literal::Number(text, _) => text.parse().ok(),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => integer_literal(expr).map(|n| -n),
        Expr::Nested(inner) => integer_literal(inner),
        _ => None,
    }
}
