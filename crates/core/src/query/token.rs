//! Pagination tokens: opaque to clients, bound to the query's filters (see the
//! module docs of [`super`]).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use serde::{Deserialize, Serialize};

use super::{AGGREGATES_PATH, ALERTS_PATH, BadRequest};
use crate::detect::rules::Severity;
use crate::error::Result;
use crate::ports::{AggregateQuery, AlertQuery};
use crate::state::fingerprint::digest_hex;

/// The version of the token layout; a token of another version is rejected.
const TOKEN_VERSION: u32 = 1;

/// A short digest of a route and its filters: binds a token to the query it came from.
pub(super) fn filters_digest(route: &str, filters: &serde_json::Value) -> String {
    let mut digest = digest_hex(format!("{route}\n{filters}").as_bytes());
    digest.truncate(16);
    digest
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Token<C> {
    v: u32,
    q: String,
    c: C,
}

pub(super) fn encode_token<C: Serialize>(digest: &str, cursor: &C) -> Result<String> {
    let json = serde_json::to_vec(&Token {
        v: TOKEN_VERSION,
        q: digest.to_owned(),
        c: cursor,
    })
    .map_err(|source| crate::Error::Encode {
        what: "pagination token",
        source,
    })?;
    Ok(BASE64URL.encode(json))
}

pub(super) fn bad_token(why: &str) -> BadRequest {
    BadRequest::new(
        "next",
        format!("next is not a token this API issued for this query: {why}"),
    )
}

pub(super) fn decode_token<C: for<'de> Deserialize<'de>>(
    token: &str,
    digest: &str,
) -> std::result::Result<C, BadRequest> {
    let bytes = BASE64URL
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad_token("it is not base64url"))?;
    let token: Token<C> =
        serde_json::from_slice(&bytes).map_err(|_| bad_token("its content is not a position"))?;
    if token.v != TOKEN_VERSION {
        return Err(bad_token("it is of another version"));
    }
    if token.q != digest {
        return Err(bad_token(
            "it was issued for other filters: repeat the first request's parameters",
        ));
    }
    Ok(token.c)
}

/// The digest of a `GET /aggregates`' filters (not `limit`, not the position).
pub(super) fn aggregate_digest(query: &AggregateQuery) -> String {
    filters_digest(
        AGGREGATES_PATH,
        &serde_json::json!([
            query.key,
            query.metric,
            query.window_seconds,
            query.from_ms,
            query.to_ms
        ]),
    )
}

/// The digest of a `GET /alerts`' filters (not `limit`, not the position).
pub(super) fn alert_digest(query: &AlertQuery) -> String {
    filters_digest(
        ALERTS_PATH,
        &serde_json::json!([
            query.since_ms,
            query.severity.map(Severity::as_str),
            query.rule
        ]),
    )
}
