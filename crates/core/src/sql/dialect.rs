//! Flink's lexical rules on sqlparser: identifiers quoted with backquotes, lookup joins
//! (`FOR SYSTEM_TIME AS OF`), `FILTER (WHERE ...)` on aggregates. One construct is
//! rewritten on the token stream before parsing, keeping every other token's position:
//! the `TABLE` keyword of a windowing function's table argument
//! (`TUMBLE(TABLE src, ...)`), which sqlparser does not read inside a function call.

use sqlparser::dialect::Dialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::ParserError;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer, Whitespace};

use crate::error::Error;

#[derive(Debug, Default)]
pub(super) struct FlinkDialect;

impl Dialect for FlinkDialect {
    fn is_identifier_start(&self, ch: char) -> bool {
        ch.is_ascii_alphabetic() || ch == '_'
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        ch.is_ascii_alphanumeric() || ch == '_' || ch == '$'
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        ch == '`'
    }

    fn supports_table_versioning(&self) -> bool {
        true
    }

    fn supports_filter_during_aggregation(&self) -> bool {
        true
    }
}

/// How deep expressions may nest: deeper input is refused, never a stack overflow.
pub(super) const RECURSION_LIMIT: usize = 64;

/// The tokens of `text`, ready for the parser.
pub(super) fn tokens(text: &str) -> Result<Vec<TokenWithSpan>, Error> {
    let tokens = Tokenizer::new(&FlinkDialect, text)
        .tokenize_with_location()
        .map_err(|e| at(e.location, strip_location(&e.message)))?;
    refuse_session_windows(&tokens)?;
    let mut tokens = without_table_arguments(tokens);
    // The parser's own end token has no place; ours is where the text ends, so an
    // error at the end ("expected `>`, found EOF") says where.
    let end = tokens.last().map_or(Location::new(1, 1), |t| t.span.end);
    tokens.push(TokenWithSpan::at(Token::EOF, end, end));
    Ok(tokens)
}

/// `SESSION(TABLE t PARTITION BY k, ...)` has a syntax sqlparser does not read; it is
/// refused here by name rather than with the parser's "expected `)`".
fn refuse_session_windows(tokens: &[TokenWithSpan]) -> Result<(), Error> {
    let significant: Vec<&TokenWithSpan> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    for w in significant.windows(2) {
        if let (Token::Word(word), Token::LParen) = (&w[0].token, &w[1].token)
            && word.quote_style.is_none()
            && word.value.eq_ignore_ascii_case("SESSION")
        {
            return Err(at(
                w[0].span.start,
                "SESSION windows are not supported yet: use TUMBLE or HOP",
            ));
        }
    }
    Ok(())
}

/// Drops `TABLE` where it opens a table argument: after `(` or `,` and before a name.
fn without_table_arguments(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let significant = |t: &&TokenWithSpan| !matches!(t.token, Token::Whitespace(_));
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        let is_table = matches!(&t.token, Token::Word(w) if w.keyword == Keyword::TABLE);
        if is_table {
            let prev = out.iter().rev().find(significant).map(|t| &t.token);
            let next = tokens[i + 1..].iter().find(significant).map(|t| &t.token);
            if matches!(prev, Some(Token::LParen | Token::Comma))
                && matches!(next, Some(Token::Word(_)))
            {
                out.push(TokenWithSpan::new(
                    Token::Whitespace(Whitespace::Space),
                    t.span,
                ));
                continue;
            }
        }
        out.push(t.clone());
    }
    out
}

/// An error at a place in the pipeline's text.
pub(super) fn at(location: Location, reason: impl Into<String>) -> Error {
    Error::InvalidSql {
        line: location.line,
        column: location.column,
        reason: reason.into(),
    }
}

/// A parser error as ours: sqlparser writes the place into its message
/// (`... at Line: 3, Column: 7`); `fallback` is used when it does not.
pub(super) fn from_parser(error: ParserError, fallback: Location) -> Error {
    let message = match error {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
        ParserError::RecursionLimitExceeded => {
            return at(
                fallback,
                format!("the statement nests deeper than {RECURSION_LIMIT} levels"),
            );
        }
    };
    let location = place_in(&message).unwrap_or(fallback);
    let reason = strip_location(message.trim_start_matches("sql parser error: "));
    at(location, reason)
}

fn place_in(message: &str) -> Option<Location> {
    let (_, place) = message.rsplit_once(" at Line: ")?;
    let (line, column) = place.split_once(", Column: ")?;
    let column: String = column.chars().take_while(char::is_ascii_digit).collect();
    Some(Location::new(
        line.trim().parse().ok()?,
        column.parse().ok()?,
    ))
}

fn strip_location(message: &str) -> String {
    match message.rsplit_once(" at Line: ") {
        Some((head, _)) => head.to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(tokens: &[TokenWithSpan]) -> String {
        let text: String = tokens.iter().map(|t| t.token.to_string()).collect();
        text.strip_suffix("EOF").expect("ends with EOF").to_owned()
    }

    #[test]
    fn the_table_keyword_of_a_table_argument_is_dropped_and_nothing_else_moves() {
        let t = tokens("FROM TABLE(TUMBLE(TABLE src, DESCRIPTOR(et)))").expect("tokens");
        assert_eq!(texts(&t), "FROM TABLE(TUMBLE(  src, DESCRIPTOR(et)))");
        let src = t
            .iter()
            .find(|t| matches!(&t.token, Token::Word(w) if w.value == "src"))
            .expect("src");
        assert_eq!((src.span.start.line, src.span.start.column), (1, 25));
    }

    #[test]
    fn parser_messages_give_their_place_to_the_error() {
        let e = from_parser(
            ParserError::ParserError("Expected: ), found: x at Line: 3, Column: 7".into()),
            Location::new(1, 1),
        );
        assert_eq!(e.to_string(), "line 3, column 7: Expected: ), found: x");
        let deep = from_parser(ParserError::RecursionLimitExceeded, Location::new(2, 5));
        assert!(
            deep.to_string()
                .starts_with("line 2, column 5: the statement nests")
        );
    }

    #[test]
    fn an_unterminated_string_is_an_error_at_its_place() {
        let e = tokens("SELECT 'abc").expect_err("unterminated");
        assert!(e.to_string().starts_with("line 1, column "), "{e}");
    }
}
