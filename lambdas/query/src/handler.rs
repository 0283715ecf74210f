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
use sluice_core::query::{AggregateReader, AlertReader, ApiResponse, method_not_allowed, respond};

/// Serves one request. Never fails the invocation: every outcome, store failures
/// included, is an HTTP response with a JSON body.
pub async fn handle<A: AggregateReader, L: AlertReader>(
    aggregates: &A,
    alerts: &L,
    request: Request,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_owned();
    let api = if request.method() == Method::GET {
        respond(
            aggregates,
            alerts,
            &path,
            &query_pairs(request.uri().query()),
        )
        .await
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

/// The decoded `name=value` pairs of a query string, in order, repeats kept
/// (`application/x-www-form-urlencoded`: `+` is a space, `%XX` a byte; a name
/// without `=` has an empty value, which the API rejects as empty).
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

/// Percent-decoding of one form component; an invalid escape is kept as written and
/// invalid UTF-8 becomes U+FFFD, so a bad value reaches the API's validation (and its
/// 400 naming the parameter) instead of failing here.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(|b| (*b as char).to_digit(16)),
                bytes.get(i + 2).and_then(|b| (*b as char).to_digit(16)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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

    fn pairs(q: &str) -> Vec<(String, String)> {
        query_pairs(Some(q))
    }

    fn owned(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(a, b)| ((*a).into(), (*b).into())).collect()
    }

    #[test]
    fn query_strings_decode_in_order_with_repeats() {
        assert_eq!(
            pairs("from=2026-01-01T00%3A00%3A00Z&key=a+b&limit=1&limit=2"),
            owned(&[
                ("from", "2026-01-01T00:00:00Z"),
                ("key", "a b"),
                ("limit", "1"),
                ("limit", "2")
            ])
        );
        assert_eq!(pairs("key=%2B1%2C2"), owned(&[("key", "+1,2")]));
        assert_eq!(pairs("&&key&"), owned(&[("key", "")]));
        assert_eq!(pairs("k=%zz%4"), owned(&[("k", "%zz%4")]));
        assert_eq!(pairs("k=%ff"), owned(&[("k", "\u{fffd}")]));
        assert!(query_pairs(None).is_empty());
    }

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
