//! `GET /views` and `GET /views/{view}` (SQL pipelines, issue 17): the stored views with
//! their columns, and one view's rows, filtered by any of its columns
//! (`?country=US&from=&to=&limit=&next=`). Rows are read as the view's aggregate items
//! (the [`AggregateReader`] with the view's id and window) and turned into the view's
//! rows by the pipeline ([`ViewCatalog`]); a page holds at most `limit` rows and, after
//! column filters, may hold fewer while `next` is not null.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::request::{collect_params, limit, time};
use super::token::{bad_token, decode_token, encode_token, filters_digest};
use super::{ApiResponse, BadRequest};
use crate::ports::{AggregateCursor, AggregateQuery, AggregateReader, ViewCatalog};

pub const VIEWS_PATH: &str = "/views";

/// The parameters every view route takes; any other parameter names a column.
const PAGING: [&str; 4] = ["from", "to", "limit", "next"];

/// `GET /views`: every stored view, its columns and window.
pub fn list(views: &dyn ViewCatalog) -> ApiResponse {
    ApiResponse::json(
        200,
        &serde_json::json!({ "items": views.list(), "next": null }),
    )
}

/// `GET /views/{name}`: one page of the view's rows.
pub async fn rows<A: AggregateReader>(
    aggregates: &A,
    views: &dyn ViewCatalog,
    name: &str,
    params: &[(String, String)],
) -> ApiResponse {
    let Some(view) = views.find(name) else {
        let names: Vec<String> = views.list().into_iter().map(|v| v.view).collect();
        return ApiResponse::json(
            404,
            &serde_json::json!({
                "error": format!("no stored view {name:?}; the pipeline stores {}", names.join(", "))
            }),
        );
    };
    let mut allowed: Vec<&str> = PAGING.to_vec();
    allowed.extend(view.columns.iter().map(String::as_str));
    let query = match parse(&view, &allowed, params) {
        Ok(q) => q,
        Err(bad) => return ApiResponse::bad_request(&bad),
    };
    let (query, filters, digest) = query;
    let page = match aggregates.aggregates(&query).await {
        Ok(page) => page,
        Err(e) => return ApiResponse::store_failure(&e),
    };
    let items: Vec<Map<String, Value>> = page
        .items
        .iter()
        .filter_map(|a| views.row(a))
        .filter(|row| {
            filters
                .iter()
                .all(|(col, want)| row.get(col).is_some_and(|v| value_matches(v, want)))
        })
        .collect();
    let next = match page
        .next
        .as_ref()
        .map(|c| encode_token(&digest, c))
        .transpose()
    {
        Ok(next) => next,
        Err(e) => return ApiResponse::store_failure(&e),
    };
    ApiResponse::json(200, &serde_json::json!({ "items": items, "next": next }))
}

/// The aggregate query of a view request, its column filters and its token digest.
fn parse(
    view: &crate::ports::ViewInfo,
    allowed: &[&str],
    params: &[(String, String)],
) -> std::result::Result<(AggregateQuery, BTreeMap<String, String>, String), BadRequest> {
    let map = collect_params(params, allowed)?;
    let from_ms = time(&map, "from")?;
    let to_ms = time(&map, "to")?;
    let filters: BTreeMap<String, String> = map
        .iter()
        .filter(|(k, _)| !PAGING.contains(k))
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut query = AggregateQuery {
        key: None,
        metric: Some(view.id.clone()),
        window_seconds: Some(view.window_seconds),
        from_ms,
        to_ms,
        limit: limit(&map)?,
        after: None,
    };
    let digest = filters_digest(
        VIEWS_PATH,
        &serde_json::json!([view.view, view.id, from_ms, to_ms, filters]),
    );
    if let Some(token) = map.get("next") {
        let cursor: AggregateCursor = decode_token(token, &digest)?;
        if cursor.pk.is_empty() || cursor.sk.is_empty() {
            return Err(bad_token("its position is empty"));
        }
        query.after = Some(cursor);
    }
    Ok((query, filters, digest))
}

/// Whether a row's value is what a query-string value names: the same text, or the
/// same number (`5` matches `5.0`), `true`/`false`, or `null`.
pub fn value_matches(value: &Value, want: &str) -> bool {
    match value {
        Value::String(s) => s == want,
        Value::Number(n) => want
            .parse::<f64>()
            .ok()
            .zip(n.as_f64())
            .is_some_and(|(w, x)| w == x),
        Value::Bool(b) => want == if *b { "true" } else { "false" },
        Value::Null => want == "null",
        _ => false,
    }
}
