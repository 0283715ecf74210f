//! Scalar expressions (issue 17): a sqlparser [`Expr`] is compiled once against a
//! [`Scope`] (the columns it may name) into a typed tree, [`Compiled`], which is then
//! evaluated per row with Flink's semantics: integer arithmetic wraps and `/` truncates,
//! DECIMAL results take Flink's precision and scale, NULL follows SQL's three-valued
//! logic. Type errors are refused at compile time with their line and column; what can
//! only fail on a value (an integer division by zero, a failed CAST: both fail the job in
//! Flink) is an [`EvalError`], so the caller can dead-letter the record.
//!
//! Aggregates are not scalar expressions: they are refused here and planned elsewhere.
//!
//! - [`compile`] (in `compile.rs`): names, literals, operators; `calls.rs`: functions,
//!   TRIM, SUBSTRING, FLOOR, CEIL.
//! - `typing.rs`: Flink's result types (numeric promotion, DECIMAL precision and scale).
//! - `eval.rs`: operators; `functions.rs`: string and numeric functions, LIKE;
//!   `cast.rs`: CAST between the supported types.

mod calls;
mod cast;
mod compile;
mod eval;
mod functions;
mod typing;

#[cfg(test)]
mod tests;

use std::fmt;

pub use compile::compile;

use super::types::SqlType;
use super::value::Value;

/// The columns an expression may name, in the order of the row it is evaluated on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scope {
    columns: Vec<ScopeColumn>,
}

/// One column of a [`Scope`].
#[derive(Clone, Debug, PartialEq)]
pub struct ScopeColumn {
    /// The table alias that may qualify it (`p` in `p.amount`), if any.
    pub qualifier: Option<String>,
    pub name: String,
    pub ty: SqlType,
}

impl Scope {
    pub fn new() -> Scope {
        Scope::default()
    }

    /// Adds a column; its index in the row is the number of columns before it.
    pub fn push(&mut self, qualifier: Option<&str>, name: &str, ty: SqlType) {
        self.columns.push(ScopeColumn {
            qualifier: qualifier.map(str::to_owned),
            name: name.to_owned(),
            ty,
        });
    }

    /// [`Scope::push`], by value.
    pub fn with(mut self, qualifier: Option<&str>, name: &str, ty: SqlType) -> Scope {
        self.push(qualifier, name, ty);
        self
    }

    pub fn columns(&self) -> &[ScopeColumn] {
        &self.columns
    }
}

/// What evaluation may read besides the row: the processing time `PROCTIME()` returns,
/// supplied by the caller (expressions never read the clock).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvalContext {
    /// Milliseconds since the epoch.
    pub now_ms: i64,
}

/// An expression that failed on a value: Flink fails the job; Sluice dead-letters the
/// record, naming the expression and the reason. Retrying cannot help.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{expression}`: {reason}")]
pub struct EvalError {
    /// The expression as written (normalised by sqlparser).
    pub expression: String,
    pub reason: String,
}

/// A failure inside evaluation, before the expression's text is attached.
#[derive(Debug)]
pub(super) struct Failure(String);

pub(super) type Eval<T = Value> = Result<T, Failure>;

pub(super) fn fail<T>(reason: impl Into<String>) -> Eval<T> {
    Err(Failure(reason.into()))
}

/// A compiled, typed expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Compiled {
    /// The result's type (every result may be NULL).
    pub ty: SqlType,
    text: String,
    node: Node,
}

impl Compiled {
    /// The value of the expression on `row` (indexed like the [`Scope`] it was compiled
    /// against). Never panics; a row shorter than the scope is an error.
    pub fn eval(&self, row: &[Value], ctx: &EvalContext) -> Result<Value, EvalError> {
        self.node
            .eval(row, ctx)
            .map_err(|Failure(reason)| EvalError {
                expression: self.text.clone(),
                reason,
            })
    }

    /// The input column the expression is, when it is one column as it is (its value is
    /// that column's: no evaluation needed).
    pub fn column(&self) -> Option<usize> {
        match self.node {
            Node::Column(at) => Some(at),
            _ => None,
        }
    }

    /// The expression cast to `to`, as Flink's `INSERT INTO` casts a query's column to
    /// the sink column it fills; `None` when that CAST is not supported.
    pub fn cast_to(self, to: &SqlType) -> Option<Compiled> {
        if self.ty == *to {
            return Some(self);
        }
        if !cast::supported(&self.ty, to) {
            return None;
        }
        let node = compile::Typed::of(self.node, self.ty).cast(to);
        Some(Compiled {
            ty: to.clone(),
            text: format!("CAST({} AS {to})", self.text),
            node,
        })
    }

    /// Whether the value depends on the processing time (`PROCTIME()`).
    /// The indexes of the columns the expression reads.
    pub fn columns_read(&self) -> std::collections::BTreeSet<usize> {
        let read = std::cell::RefCell::new(std::collections::BTreeSet::new());
        self.node.any(&|n| {
            if let Node::Column(i) = n {
                read.borrow_mut().insert(*i);
            }
            false
        });
        read.into_inner()
    }

    /// Whether the expression reads a column at index `first` or after.
    pub fn reads_columns_from(&self, first: usize) -> bool {
        self.node
            .any(&|n| matches!(n, Node::Column(i) if *i >= first))
    }

    /// Whether `other` computes the same value on every row (the same operations on the
    /// same columns), whatever the text it was written as.
    pub fn same_computation(&self, other: &Compiled) -> bool {
        self.ty == other.ty && self.node == other.node
    }

    pub fn uses_proctime(&self) -> bool {
        self.node.any(&|n| matches!(n, Node::ProcTime))
    }
}

impl fmt::Display for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TrimSide {
    Both,
    Leading,
    Trailing,
}

/// Scalar functions, their arguments already cast to the types they compute in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Func {
    Lower,
    Upper,
    /// (string, characters)
    Trim(TrimSide),
    /// (string, start[, length])
    Substring,
    CharLength,
    Abs,
    Floor,
    Ceil,
    /// (x, digits)
    Round,
    /// `TO_TIMESTAMP_LTZ(epoch, 0 | 3)`: the number's unit, in milliseconds.
    ToTimestampLtz {
        unit_ms: i64,
    },
}

/// The typed tree. Operands are cast at compile time to the type an operator computes
/// in, so evaluation meets values of one type per operator.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Node {
    Literal(Value),
    Column(usize),
    /// A field of a ROW value.
    Field(Box<Node>, usize),
    /// Both operands of the result's type, except DECIMAL, where each operand is a
    /// DECIMAL of its own precision and scale.
    Arith {
        op: ArithOp,
        ty: SqlType,
        left: Box<Node>,
        right: Box<Node>,
    },
    Neg(Box<Node>),
    /// Both operands of one type.
    Cmp {
        op: CmpOp,
        left: Box<Node>,
        right: Box<Node>,
    },
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    IsNull(Box<Node>),
    In {
        expr: Box<Node>,
        list: Vec<Node>,
    },
    Like {
        expr: Box<Node>,
        pattern: Box<Node>,
    },
    /// Searched form: the first true condition's result, else `otherwise`.
    Case {
        whens: Vec<(Node, Node)>,
        otherwise: Box<Node>,
    },
    Cast {
        expr: Box<Node>,
        from: SqlType,
        to: SqlType,
    },
    Coalesce(Vec<Node>),
    /// `||` and CONCAT: NULL if any argument is NULL.
    Concat(Vec<Node>),
    Call {
        func: Func,
        ty: SqlType,
        args: Vec<Node>,
    },
    ProcTime,
}

impl Node {
    /// Whether this node or one below it satisfies `pred`.
    fn any(&self, pred: &dyn Fn(&Node) -> bool) -> bool {
        if pred(self) {
            return true;
        }
        let children: Vec<&Node> = match self {
            Node::Literal(_) | Node::Column(_) | Node::ProcTime => Vec::new(),
            Node::Field(n, _) | Node::Neg(n) | Node::Not(n) | Node::IsNull(n) => vec![n],
            Node::Cast { expr, .. } => vec![expr],
            Node::Arith { left, right, .. }
            | Node::Cmp { left, right, .. }
            | Node::And(left, right)
            | Node::Or(left, right) => vec![left, right],
            Node::In { expr, list } => std::iter::once(expr.as_ref()).chain(list).collect(),
            Node::Like { expr, pattern } => vec![expr, pattern],
            Node::Case { whens, otherwise } => whens
                .iter()
                .flat_map(|(c, r)| [c, r])
                .chain(std::iter::once(otherwise.as_ref()))
                .collect(),
            Node::Coalesce(args) | Node::Concat(args) | Node::Call { args, .. } => {
                args.iter().collect()
            }
        };
        children.into_iter().any(|c| c.any(pred))
    }
}
