//! From sqlparser's [`Expr`] to the typed [`Node`] tree: names resolved against the
//! [`Scope`], literals typed as Flink types them, implicit casts made explicit, and every
//! type error refused at its line and column.

use sqlparser::ast::{
    BinaryOperator, CastKind, CeilFloorKind, DateTimeField, Expr, Ident, InTarget, Spanned,
    UnaryOperator, Value as Literal,
};
use sqlparser::tokenizer::Location;

use super::typing::{self, as_decimal, decimal};
use super::{ArithOp, CmpOp, Compiled, Func, Node, Scope};
use crate::error::Result;
use crate::sql::dialect::at;
use crate::sql::types::{SqlType, from_data_type};
use crate::sql::value::{Decimal, MAX_PRECISION, Value};

/// How deep a compiled tree may nest (a long chain `a + b + ...` nests without the
/// parser recursing): deeper input is refused, so compiling and evaluating cannot
/// overflow the stack, even a test thread's 2 MiB in a debug build. The parser's own
/// limit is the same.
const MAX_DEPTH: usize = crate::sql::dialect::RECURSION_LIMIT;

/// Compiles `expr` against the columns of `scope`.
pub fn compile(expr: &Expr, scope: &Scope) -> Result<Compiled> {
    let place = located(expr.span().start, Location::new(1, 1));
    let typed = Compiler { scope, depth: 0 }.expr(expr, place)?;
    let Some(ty) = typed.ty else {
        return Err(illegal_null(place));
    };
    Ok(Compiled {
        ty,
        text: expr.to_string(),
        node: typed.node,
    })
}

/// A node and its type; `None` is the untyped `NULL` literal, which takes the type its
/// place gives it (a CASE branch, an IN list, COALESCE, CAST) and is refused elsewhere,
/// as Flink refuses `NULL + 1` ("Illegal use of 'NULL'").
pub(super) struct Typed {
    pub(super) node: Node,
    pub(super) ty: Option<SqlType>,
}

impl Typed {
    pub(super) fn of(node: Node, ty: SqlType) -> Typed {
        Typed { node, ty: Some(ty) }
    }

    /// The node cast to `to` (no cast when it already has that type).
    pub(super) fn cast(self, to: &SqlType) -> Node {
        match self.ty {
            None => Node::Literal(Value::Null),
            Some(ty) if ty == *to => self.node,
            Some(from) => match self.node {
                // A literal is cast once, here, when the cast cannot fail.
                Node::Literal(Value::Null) => Node::Literal(Value::Null),
                node => Node::Cast {
                    expr: Box::new(node),
                    from,
                    to: to.clone(),
                },
            },
        }
    }
}

pub(super) struct Compiler<'a> {
    scope: &'a Scope,
    depth: usize,
}

pub(super) fn located(place: Location, fallback: Location) -> Location {
    if place.line == 0 { fallback } else { place }
}

pub(super) fn illegal_null(place: Location) -> crate::error::Error {
    at(
        place,
        "illegal use of NULL (as in Flink): give it a type with CAST(NULL AS type)",
    )
}

impl Compiler<'_> {
    pub(super) fn expr(&mut self, e: &Expr, parent: Location) -> Result<Typed> {
        let here = located(e.span().start, parent);
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(at(
                here,
                format!("the expression nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        let out = self.expr_inner(e, here);
        self.depth -= 1;
        out
    }

    /// An operand that must have a type (not a bare NULL).
    pub(super) fn typed(&mut self, e: &Expr, parent: Location) -> Result<(Node, SqlType)> {
        let here = located(e.span().start, parent);
        let t = self.expr(e, parent)?;
        match t.ty {
            Some(ty) => Ok((t.node, ty)),
            None => Err(illegal_null(here)),
        }
    }

    fn expr_inner(&mut self, e: &Expr, here: Location) -> Result<Typed> {
        match e {
            Expr::Identifier(i) => self.resolve(std::slice::from_ref(i), here),
            Expr::CompoundIdentifier(parts) => self.resolve(parts, here),
            Expr::Value(v) => literal(&v.value, false, here),
            Expr::Nested(inner) => self.expr(inner, here),
            Expr::BinaryOp { left, op, right } => self.binary(left, op, right, here),
            Expr::UnaryOp { op, expr } => self.unary(op, expr, here),
            Expr::IsNull(inner) | Expr::IsNotNull(inner) => {
                let t = self.expr(inner, here)?;
                let is_null = Node::IsNull(Box::new(t.node));
                Ok(Typed::of(
                    if matches!(e, Expr::IsNull(_)) {
                        is_null
                    } else {
                        Node::Not(Box::new(is_null))
                    },
                    SqlType::Boolean,
                ))
            }
            Expr::In {
                expr,
                target: InTarget::List(list),
                negated,
                global: false,
            } => self.in_list(expr, list, *negated, here),
            Expr::Between {
                expr,
                negated,
                low,
                high,
            } => self.between(expr, low, high, *negated, here),
            Expr::Like {
                negated,
                any: false,
                expr,
                pattern,
                escape_char: None,
            } => {
                let (value, vt) = self.typed(expr, here)?;
                let (pattern, pt) = self.typed(pattern, here)?;
                if vt != SqlType::String || pt != SqlType::String {
                    return Err(at(
                        here,
                        format!("LIKE compares strings, not {vt} with {pt}"),
                    ));
                }
                let like = Node::Like {
                    expr: Box::new(value),
                    pattern: Box::new(pattern),
                };
                Ok(Typed::of(negate_if(*negated, like), SqlType::Boolean))
            }
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => self.case(operand.as_deref(), conditions, else_result.as_deref(), here),
            Expr::Cast {
                kind: CastKind::Cast,
                expr,
                data_type,
                format: None,
                ..
            } => {
                let to = from_data_type(data_type)
                    .ok_or_else(|| at(here, format!("CAST to {data_type} is not supported")))?;
                let t = self.expr(expr, here)?;
                if let Some(from) = &t.ty
                    && !super::cast::supported(from, &to)
                {
                    return Err(at(here, format!("cannot CAST {from} to {to}")));
                }
                Ok(Typed::of(t.cast(&to), to))
            }
            Expr::Trim {
                expr,
                trim_where,
                trim_what,
                trim_characters: None,
            } => self.trim(expr, trim_where.as_ref(), trim_what.as_deref(), here),
            Expr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let mut args = vec![expr.as_ref()];
                args.extend(substring_from.as_deref());
                args.extend(substring_for.as_deref());
                self.substring(&args, here)
            }
            Expr::Floor { expr, field } | Expr::Ceil { expr, field } => {
                if !matches!(
                    field,
                    CeilFloorKind::DateTimeField(DateTimeField::NoDateTime)
                ) {
                    return Err(at(
                        here,
                        "FLOOR and CEIL take a number here (FLOOR(x TO unit) is not supported)",
                    ));
                }
                let func = if matches!(e, Expr::Floor { .. }) {
                    Func::Floor
                } else {
                    Func::Ceil
                };
                self.floor_ceil(func, expr, here)
            }
            Expr::Function(f) => self.function(f, here),
            other => Err(at(here, format!("expression `{other}` is not supported"))),
        }
    }

    /// `col`, `alias.col`, `col.field...`, `alias.col.field...`. As in Flink (Calcite), a
    /// first segment that names a table alias is the alias; otherwise it is a column.
    fn resolve(&mut self, parts: &[Ident], here: Location) -> Result<Typed> {
        let columns = self.scope.columns();
        let Some(first) = parts.first() else {
            return Err(at(here, "an empty name"));
        };
        let here = located(first.span.start, here);
        let is_alias = columns
            .iter()
            .any(|c| c.qualifier.as_deref() == Some(first.value.as_str()));
        let (index, fields) = if is_alias && parts.len() >= 2 {
            let name = &parts[1].value;
            let found = columns.iter().position(|c| {
                c.qualifier.as_deref() == Some(first.value.as_str()) && c.name == *name
            });
            match found {
                Some(i) => (i, &parts[2..]),
                None => {
                    return Err(at(
                        located(parts[1].span.start, here),
                        format!("`{}` has no column `{name}`", first.value),
                    ));
                }
            }
        } else {
            let found: Vec<usize> = columns
                .iter()
                .enumerate()
                .filter(|(_, c)| c.name == first.value)
                .map(|(i, _)| i)
                .collect();
            match found.as_slice() {
                [i] => (*i, &parts[1..]),
                [] if is_alias => {
                    return Err(at(
                        here,
                        format!(
                            "`{}` is a table alias: name one of its columns",
                            first.value
                        ),
                    ));
                }
                [] => {
                    return Err(at(here, format!("unknown column `{}`", first.value)));
                }
                several => {
                    let options: Vec<String> = several
                        .iter()
                        .map(|i| match &columns[*i].qualifier {
                            Some(q) => format!("`{q}.{}`", first.value),
                            None => format!("`{}`", first.value),
                        })
                        .collect();
                    return Err(at(
                        here,
                        format!(
                            "column `{}` is ambiguous: write {}",
                            first.value,
                            options.join(" or ")
                        ),
                    ));
                }
            }
        };
        let mut node = Node::Column(index);
        let mut ty = columns[index].ty.clone();
        let mut path = columns[index].name.clone();
        for field in fields {
            let SqlType::Row(row_fields) = &ty else {
                return Err(at(
                    located(field.span.start, here),
                    format!(
                        "`{path}` is {ty}, not a ROW: it has no field `{}`",
                        field.value
                    ),
                ));
            };
            let Some(i) = row_fields.iter().position(|f| f.name == field.value) else {
                return Err(at(
                    located(field.span.start, here),
                    format!("`{path}` has no field `{}`", field.value),
                ));
            };
            let next = row_fields[i].ty.clone();
            node = Node::Field(Box::new(node), i);
            ty = next;
            path = format!("{path}.{}", field.value);
        }
        Ok(Typed::of(node, ty))
    }

    fn binary(
        &mut self,
        left: &Expr,
        op: &BinaryOperator,
        right: &Expr,
        here: Location,
    ) -> Result<Typed> {
        use BinaryOperator as B;
        let arith = match op {
            B::Plus => Some(ArithOp::Add),
            B::Minus => Some(ArithOp::Sub),
            B::Multiply => Some(ArithOp::Mul),
            B::Divide => Some(ArithOp::Div),
            B::Modulo => Some(ArithOp::Rem),
            _ => None,
        };
        if let Some(op) = arith {
            let l = self.typed(left, here)?;
            let r = self.typed(right, here)?;
            return arithmetic(op, l, r, here);
        }
        let cmp = match op {
            B::Eq => Some(CmpOp::Eq),
            B::NotEq => Some(CmpOp::NotEq),
            B::Lt => Some(CmpOp::Lt),
            B::LtEq => Some(CmpOp::LtEq),
            B::Gt => Some(CmpOp::Gt),
            B::GtEq => Some(CmpOp::GtEq),
            _ => None,
        };
        if let Some(op) = cmp {
            let (l, lt) = self.typed(left, here)?;
            let (r, rt) = self.typed(right, here)?;
            let (left, right) = comparable(Typed::of(l, lt), Typed::of(r, rt), here)?;
            return Ok(Typed::of(
                Node::Cmp {
                    op,
                    left: Box::new(left),
                    right: Box::new(right),
                },
                SqlType::Boolean,
            ));
        }
        match op {
            B::And | B::Or => {
                let l = self.boolean(left, here, &op.to_string())?;
                let r = self.boolean(right, here, &op.to_string())?;
                let (l, r) = (Box::new(l), Box::new(r));
                Ok(Typed::of(
                    if *op == B::And {
                        Node::And(l, r)
                    } else {
                        Node::Or(l, r)
                    },
                    SqlType::Boolean,
                ))
            }
            B::StringConcat => {
                let l = self.string(left, here, "||")?;
                let r = self.string(right, here, "||")?;
                Ok(Typed::of(Node::Concat(vec![l, r]), SqlType::String))
            }
            other => Err(at(here, format!("operator {other} is not supported"))),
        }
    }

    /// An operand that must be BOOLEAN (a bare NULL is an unknown boolean).
    fn boolean(&mut self, e: &Expr, parent: Location, what: &str) -> Result<Node> {
        let t = self.expr(e, parent)?;
        match &t.ty {
            None | Some(SqlType::Boolean) => Ok(t.cast(&SqlType::Boolean)),
            Some(other) => Err(at(
                located(e.span().start, parent),
                format!("{what} takes BOOLEAN operands, not {other}"),
            )),
        }
    }

    /// An operand that must be a STRING.
    pub(super) fn string(&mut self, e: &Expr, parent: Location, what: &str) -> Result<Node> {
        let (node, ty) = self.typed(e, parent)?;
        if ty != SqlType::String {
            return Err(at(
                located(e.span().start, parent),
                format!("{what} takes STRING operands, not {ty}"),
            ));
        }
        Ok(node)
    }

    /// An operand that must be an INT (Flink 2.3 fails on a BIGINT position in
    /// SUBSTRING: its generated code does not compile), as a BIGINT.
    pub(super) fn integer(&mut self, e: &Expr, parent: Location, what: &str) -> Result<Node> {
        let (node, ty) = self.typed(e, parent)?;
        if ty != SqlType::Int {
            return Err(at(
                located(e.span().start, parent),
                format!("{what} takes an INT here, not {ty}"),
            ));
        }
        Ok(Typed::of(node, ty).cast(&SqlType::BigInt))
    }

    fn unary(&mut self, op: &UnaryOperator, e: &Expr, here: Location) -> Result<Typed> {
        match op {
            UnaryOperator::Not => {
                let node = self.boolean(e, here, "NOT")?;
                Ok(Typed::of(Node::Not(Box::new(node)), SqlType::Boolean))
            }
            UnaryOperator::Minus | UnaryOperator::Plus => {
                let minus = *op == UnaryOperator::Minus;
                // `-2147483648` is one INT literal, as in Flink.
                if minus
                    && let Expr::Value(v) = e
                    && let Literal::Number(..) = &v.value
                {
                    return literal(&v.value, true, here);
                }
                let (node, ty) = self.typed(e, here)?;
                if !ty.is_numeric() {
                    return Err(at(here, format!("unary {op} takes a number, not {ty}")));
                }
                Ok(Typed::of(
                    if minus {
                        Node::Neg(Box::new(node))
                    } else {
                        node
                    },
                    ty,
                ))
            }
            other => Err(at(here, format!("operator {other} is not supported"))),
        }
    }

    fn in_list(&mut self, e: &Expr, list: &[Expr], negated: bool, here: Location) -> Result<Typed> {
        let (value, mut ty) = self.typed(e, here)?;
        let left = ty.clone();
        let mut items = Vec::with_capacity(list.len());
        for item in list {
            let mut t = self.expr(item, here)?;
            // As Calcite's IN (convertInToOr, ensureSqlType): a number of another type
            // than the left operand's is first cast to the left's type, so `2 IN (2.5)`
            // on a BIGINT column is TRUE (2.5 becomes 2); DECIMALs of other precisions
            // are not cast.
            if let Some(it) = &t.ty
                && it.is_numeric()
                && left.is_numeric()
                && std::mem::discriminant(it) != std::mem::discriminant(&left)
            {
                t = Typed::of(t.cast(&left), left.clone());
            }
            if let Some(it) = &t.ty {
                ty = typing::common(&ty, it).ok_or_else(|| {
                    at(
                        located(item.span().start, here),
                        format!("IN compares {ty} with {it}: no implicit cast between them"),
                    )
                })?;
            }
            items.push(t);
        }
        let node = Node::In {
            expr: Box::new(Typed::of(value, self.typed(e, here)?.1).cast(&ty)),
            list: items.into_iter().map(|t| t.cast(&ty)).collect(),
        };
        Ok(Typed::of(negate_if(negated, node), SqlType::Boolean))
    }

    fn between(
        &mut self,
        e: &Expr,
        low: &Expr,
        high: &Expr,
        negated: bool,
        here: Location,
    ) -> Result<Typed> {
        let (value, vt) = self.typed(e, here)?;
        let (lo, lt) = self.typed(low, here)?;
        let (hi, ht) = self.typed(high, here)?;
        let value = Typed::of(value, vt);
        let (v1, lo) = comparable(value, Typed::of(lo, lt), here)?;
        let (v2, hi) = comparable(self.expr(e, here)?, Typed::of(hi, ht), here)?;
        let ge = Node::Cmp {
            op: CmpOp::GtEq,
            left: Box::new(v1),
            right: Box::new(lo),
        };
        let le = Node::Cmp {
            op: CmpOp::LtEq,
            left: Box::new(v2),
            right: Box::new(hi),
        };
        let both = Node::And(Box::new(ge), Box::new(le));
        Ok(Typed::of(negate_if(negated, both), SqlType::Boolean))
    }

    fn case(
        &mut self,
        operand: Option<&Expr>,
        conditions: &[sqlparser::ast::CaseWhen],
        else_result: Option<&Expr>,
        here: Location,
    ) -> Result<Typed> {
        let mut whens = Vec::with_capacity(conditions.len());
        let mut results = Vec::with_capacity(conditions.len() + 1);
        for when in conditions {
            let condition = match operand {
                // CASE x WHEN v: x = v.
                Some(operand) => {
                    let (l, lt) = self.typed(operand, here)?;
                    let value = self.expr(&when.condition, here)?;
                    // `CASE x WHEN NULL`: never true, as in Flink.
                    let Some(rt) = value.ty else {
                        whens.push(Node::Literal(Value::Null));
                        results.push((when.result.span().start, self.expr(&when.result, here)?));
                        continue;
                    };
                    let r = value.node;
                    let (left, right) = comparable(Typed::of(l, lt), Typed::of(r, rt), here)?;
                    Node::Cmp {
                        op: CmpOp::Eq,
                        left: Box::new(left),
                        right: Box::new(right),
                    }
                }
                None => self.boolean(&when.condition, here, "WHEN")?,
            };
            whens.push(condition);
            results.push((when.result.span().start, self.expr(&when.result, here)?));
        }
        if let Some(e) = else_result {
            results.push((e.span().start, self.expr(e, here)?));
        }
        let ty = merged(
            results
                .iter()
                .map(|(p, t)| (located(*p, here), t.ty.as_ref())),
            "CASE",
        )?
        .ok_or_else(|| illegal_null(here))?;
        let mut results: Vec<Node> = results.into_iter().map(|(_, t)| t.cast(&ty)).collect();
        let otherwise = if else_result.is_some() {
            results.pop().unwrap_or(Node::Literal(Value::Null))
        } else {
            Node::Literal(Value::Null)
        };
        Ok(Typed::of(
            Node::Case {
                whens: whens.into_iter().zip(results).collect(),
                otherwise: Box::new(otherwise),
            },
            ty,
        ))
    }
}

fn negate_if(negated: bool, node: Node) -> Node {
    if negated {
        Node::Not(Box::new(node))
    } else {
        node
    }
}

/// `l op r` for two numbers: each operand cast to the type the operator computes in.
pub(super) fn arithmetic(
    op: ArithOp,
    (l, lt): (Node, SqlType),
    (r, rt): (Node, SqlType),
    here: Location,
) -> Result<Typed> {
    let Some(ty) = typing::arithmetic(op, &lt, &rt) else {
        let symbol = match op {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
            ArithOp::Rem => "%",
        };
        let what = if op == ArithOp::Rem {
            "MOD and `%` take INT, BIGINT or DECIMAL"
        } else {
            "arithmetic takes numbers"
        };
        return Err(at(
            here,
            format!("cannot apply `{symbol}` to {lt} and {rt}: {what}"),
        ));
    };
    // DECIMAL arithmetic reads each operand as a DECIMAL of its own precision and scale.
    let operand = |node: Node, from: SqlType| match (&ty, as_decimal(&from)) {
        (SqlType::Decimal { .. }, Some((p, s))) => Typed::of(node, from).cast(&decimal(p, s)),
        _ => Typed::of(node, from).cast(&ty),
    };
    // Integer MOD computes in BIGINT, then narrows to the divisor's type (Java's
    // `(int) (a % b)`).
    if op == ArithOp::Rem && matches!((&lt, &rt), (SqlType::BigInt, SqlType::Int)) {
        let rem = Node::Arith {
            op,
            ty: SqlType::BigInt,
            left: Box::new(l),
            right: Box::new(Typed::of(r, rt).cast(&SqlType::BigInt)),
        };
        return Ok(Typed::of(Typed::of(rem, SqlType::BigInt).cast(&ty), ty));
    }
    Ok(Typed::of(
        Node::Arith {
            op,
            ty: ty.clone(),
            left: Box::new(operand(l, lt)),
            right: Box::new(operand(r, rt)),
        },
        ty,
    ))
}

/// Two operands of a comparison, cast to their common type.
fn comparable(l: Typed, r: Typed, here: Location) -> Result<(Node, Node)> {
    let (Some(lt), Some(rt)) = (&l.ty, &r.ty) else {
        return Err(illegal_null(here));
    };
    let common = typing::common(lt, rt)
        // ROW values are not compared (Flink compares them field by field; not needed).
        .filter(|t| !matches!(t, SqlType::Row(_)))
        .ok_or_else(|| {
            at(
                here,
                format!(
                    "cannot compare {lt} with {rt}: no implicit cast between them (CAST one side)"
                ),
            )
        })?;
    Ok((l.cast(&common), r.cast(&common)))
}

/// The common type of CASE branches or COALESCE arguments (`None`: all bare NULLs).
pub(super) fn merged<'t>(
    types: impl Iterator<Item = (Location, Option<&'t SqlType>)>,
    what: &str,
) -> Result<Option<SqlType>> {
    let mut acc: Option<SqlType> = None;
    for (place, ty) in types {
        let Some(ty) = ty else { continue };
        acc = Some(match acc {
            None => ty.clone(),
            Some(a) => typing::common(&a, ty).ok_or_else(|| {
                at(
                    place,
                    format!("{what} mixes {a} and {ty}: no implicit cast between them"),
                )
            })?,
        });
    }
    Ok(acc)
}

/// A literal as Flink types it: an integer is INT if it fits, else BIGINT, else
/// DECIMAL(p, 0); `1.5` is DECIMAL(2, 1); `1.5e0` DOUBLE; a string is a STRING.
fn literal(v: &Literal, negative: bool, here: Location) -> Result<Typed> {
    let (value, ty) = match v {
        Literal::Number(text, _) => {
            let text = if negative {
                format!("-{text}")
            } else {
                text.clone()
            };
            number(&text).ok_or_else(|| at(here, format!("number {text} does not fit any type")))?
        }
        Literal::SingleQuotedString(s) => (Value::string(s), SqlType::String),
        Literal::Boolean(b) => (Value::Boolean(*b), SqlType::Boolean),
        Literal::Null => {
            return Ok(Typed {
                node: Node::Literal(Value::Null),
                ty: None,
            });
        }
        other => return Err(at(here, format!("literal {other} is not supported"))),
    };
    Ok(Typed::of(Node::Literal(value), ty))
}

fn number(text: &str) -> Option<(Value, SqlType)> {
    if text.contains(['e', 'E']) {
        let d: f64 = text.parse().ok()?;
        return d.is_finite().then_some((Value::Double(d), SqlType::Double));
    }
    if !text.contains('.') {
        if let Ok(i) = text.parse::<i32>() {
            return Some((Value::Int(i), SqlType::Int));
        }
        if let Ok(i) = text.parse::<i64>() {
            return Some((Value::BigInt(i), SqlType::BigInt));
        }
    }
    let d = Decimal::parse(text)?;
    let precision = d.digits().max(u32::from(d.scale));
    (precision <= u32::from(MAX_PRECISION))
        .then(|| (Value::Decimal(d), decimal(precision, u32::from(d.scale))))
}
