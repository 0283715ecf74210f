//! Maps a function URL request (payload format 2.0, as `lambda_http` presents it) to
//! [`respond`] and its [`ApiResponse`] back to an HTTP response.
//!
//! The query string is read from the raw URL (`rawQueryString`), not from
//! `queryStringParameters`: the latter joins a repeated parameter's values with commas
//! (`limit=1&limit=2` arrives as `"1,2"`), which would hide the repetition the API
//! rejects and corrupt values that contain commas.

use std::convert::Infallible;

use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use sluice_core::ports::{AggregateReader, AlertReader, ViewCatalog};
use sluice_core::query::{ApiResponse, method_not_allowed, query_pairs, respond_with_views};
use sluice_core::stage::sql::SqlPipeline;

/// Serves one request. Never fails the invocation: every outcome, store failures
/// included, is an HTTP response with a JSON body.
pub async fn handle<A: AggregateReader, L: AlertReader>(
    aggregates: &A,
    alerts: &L,
    request: Request,
) -> Result<Response<Body>, Infallible> {
    handle_with_views(aggregates, alerts, None, request).await
}

/// [`handle`] for a deployment running a SQL pipeline: `GET /views` and
/// `GET /views/{view}` serve its stored views.
pub async fn handle_with_views<A: AggregateReader, L: AlertReader>(
    aggregates: &A,
    alerts: &L,
    views: Option<&SqlPipeline>,
    request: Request,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_owned();
    let api = if request.method() == Method::GET {
        let views = views.map(|v| v as &dyn ViewCatalog);
        let params = query_pairs(request.uri().query());
        respond_with_views(aggregates, alerts, views, &path, &params).await
    } else {
        method_not_allowed(request.method().as_str())
    };
    let request_id = request
        .lambda_context_ref()
        .map(|c| c.request_id.as_str())
        .unwrap_or_default();
    let method = request.method().as_str();
    // A retryable store failure (503) is the caller's to retry: a warning. A 500 is
    // broken configuration (missing table, denied access): an error.
    match api.status {
        503 => {
            tracing::warn!(request_id, method, path, status = api.status, body = %api.body, "query failed, retryable")
        }
        500.. => {
            tracing::error!(request_id, method, path, status = api.status, body = %api.body, "query failed")
        }
        _ => tracing::info!(
            request_id,
            method,
            path,
            status = api.status,
            "query served"
        ),
    }
    Ok(to_http(api))
}

fn to_http(api: ApiResponse) -> Response<Body> {
    let status = StatusCode::from_u16(api.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = Response::new(Body::Text(api.body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // Pages of a live table: never cached by a client or proxy.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(header::ALLOW, HeaderValue::from_static("GET"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_json_and_405_says_what_is_allowed() {
        let r = to_http(ApiResponse {
            status: 405,
            body: "{}".into(),
        });
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "GET");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let ok = to_http(ApiResponse {
            status: 200,
            body: "{\"items\":[]}".into(),
        });
        assert!(ok.headers().get(header::ALLOW).is_none());
        assert_eq!(ok.body(), &Body::Text("{\"items\":[]}".into()));
    }
}
