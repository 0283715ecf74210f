//! The read API of a deployment: `GET /aggregates` and `GET /alerts`, served by the
//! query Lambda (`lambdas/query`, behind a function URL) and by the web dashboard of
//! the `sluice` binary. Everything here is pure: [`respond`] parses and validates the
//! request, asks one of two read ports ([`AggregateReader`], [`AlertReader`]) for one
//! page, and renders the JSON response.
//!
//! A server hands [`respond`] the URL path and the query string's pairs as
//! [`query_pairs`] decodes them (from the raw query string, so that a repeated
//! parameter stays visible), and checks the method itself ([`method_not_allowed`]).
//!
//! ## Routes
//! - `GET /aggregates?key=&type=&window_seconds=&from=&to=&limit=&next=`: aggregates
//!   that counted at least one event, as the `{"kind":"aggregate",…}` lines of
//!   `sluice query --json` ([`AggregateView`]). `from`/`to` bound the window start
//!   (inclusive). With both `key` and `type` the store reads one group (a DynamoDB
//!   `Query`), otherwise it scans with filters.
//! - `GET /alerts?since=&severity=&rule=&limit=&next=`: alerts in the serde form of
//!   [`Alert`], newest window first. `since` compares with the alert's `window_start`
//!   (event time, not the time the alert was raised): `since=T` lists the alerts of
//!   windows starting at or after `T`.
//!
//! Times are RFC 3339 or epoch milliseconds. `limit` is 1..=[`MAX_LIMIT`], default
//! [`DEFAULT_LIMIT`].
//!
//! ## Responses
//! `200 {"items":[…],"next":"<token>"|null}`. A page holds at most `limit` items and
//! may hold fewer (even none) while `next` is not null: a store reads a bounded amount
//! per request, so the end of the results is `next: null`, never a short page.
//! Bad input is `400 {"error":"…","parameter":"<name>"}` naming the parameter; an
//! unknown path is 404, a method other than GET 405 ([`method_not_allowed`]); a store
//! failure is 503 when a retry can help, else 500, both `{"error":"…","retryable":…}`.
//!
//! ## Pagination tokens
//! `next` is opaque to clients: base64url (no padding) of a small JSON object holding
//! a version, a digest of the query's filters (not `limit`, which may change from page
//! to page) and the store position to resume after ([`AggregateCursor`],
//! [`AlertCursor`]). A token that does not decode, or that was issued for other
//! filters or another route, is a 400 naming `next`.

mod pager;
mod request;
mod token;
mod views;

use serde::Serialize;

use crate::ports::{AggregateReader, AlertReader, Page, ViewCatalog};
pub use pager::{AggregatePager, AlertPager, alert_order, view_position};
pub use request::{TIME_RANGE_MS, parse_aggregate_query, parse_alert_query, query_pairs};
use token::encode_token;
pub use views::{VIEWS_PATH, value_matches};

/// Items per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 1000;
/// The largest `window_seconds` accepted: the longest window a deployment can define.
pub const MAX_WINDOW_SECONDS: i64 = 31 * 86_400;

pub const AGGREGATES_PATH: &str = "/aggregates";
pub const ALERTS_PATH: &str = "/alerts";

/// An HTTP response: a status and a JSON body (`Content-Type: application/json`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiResponse {
    pub status: u16,
    /// JSON text.
    pub body: String,
}

impl ApiResponse {
    fn json(status: u16, value: &serde_json::Value) -> Self {
        ApiResponse {
            status,
            body: value.to_string(),
        }
    }

    fn bad_request(bad: &BadRequest) -> Self {
        Self::json(
            400,
            &serde_json::json!({"error": bad.message, "parameter": bad.parameter}),
        )
    }

    fn store_failure(error: &crate::Error) -> Self {
        let retryable = error.is_retryable();
        Self::json(
            if retryable { 503 } else { 500 },
            &serde_json::json!({"error": error.to_string(), "retryable": retryable}),
        )
    }
}

/// The response to a request whose method is not GET (the routes are read-only).
pub fn method_not_allowed(method: &str) -> ApiResponse {
    ApiResponse::json(
        405,
        &serde_json::json!({"error": format!("method {method:?} is not allowed: use GET")}),
    )
}

/// A request parameter that is missing, malformed or not allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRequest {
    pub parameter: String,
    pub message: String,
}

impl BadRequest {
    pub(super) fn new(parameter: &str, message: impl Into<String>) -> Self {
        BadRequest {
            parameter: parameter.to_owned(),
            message: message.into(),
        }
    }
}

/// Serves one GET request: `path` is the URL path (`/aggregates`, `/alerts`), `params`
/// its decoded query-string pairs in order. The method is the caller's to check
/// ([`method_not_allowed`]).
pub async fn respond<A: AggregateReader, L: AlertReader>(
    aggregates: &A,
    alerts: &L,
    path: &str,
    params: &[(String, String)],
) -> ApiResponse {
    respond_with_views(aggregates, alerts, None, path, params).await
}

/// [`respond`] for a deployment that runs a SQL pipeline: `GET /views` lists its stored
/// views and `GET /views/{view}` pages a view's rows (see `views.rs`).
pub async fn respond_with_views<A: AggregateReader, L: AlertReader>(
    aggregates: &A,
    alerts: &L,
    views: Option<&dyn ViewCatalog>,
    path: &str,
    params: &[(String, String)],
) -> ApiResponse {
    if let Some(catalog) = views {
        if path == VIEWS_PATH {
            return views::list(catalog);
        }
        if let Some(name) = path
            .strip_prefix(VIEWS_PATH)
            .and_then(|p| p.strip_prefix('/'))
        {
            return views::rows(aggregates, catalog, name, params).await;
        }
    }
    match path {
        AGGREGATES_PATH => match parse_aggregate_query(params) {
            Err(bad) => ApiResponse::bad_request(&bad),
            Ok(query) => match aggregates.aggregates(&query).await {
                Ok(page) => page_response(&page, &token::aggregate_digest(&query)),
                Err(e) => ApiResponse::store_failure(&e),
            },
        },
        ALERTS_PATH => match parse_alert_query(params) {
            Err(bad) => ApiResponse::bad_request(&bad),
            Ok(query) => match alerts.alerts(&query).await {
                Ok(page) => page_response(&page, &token::alert_digest(&query)),
                Err(e) => ApiResponse::store_failure(&e),
            },
        },
        _ => ApiResponse::json(
            404,
            &serde_json::json!({
                "error": format!("no route {path:?}: use {AGGREGATES_PATH} or {ALERTS_PATH}")
            }),
        ),
    }
}

/// `{"items":[…],"next":…}` of a page, its cursor sealed into a token bound to the
/// query's filters.
fn page_response<T: Serialize, C: Serialize>(page: &Page<T, C>, digest: &str) -> ApiResponse {
    #[derive(Serialize)]
    struct Body<'a, T> {
        items: &'a [T],
        next: Option<String>,
    }
    let next = match page
        .next
        .as_ref()
        .map(|c| encode_token(digest, c))
        .transpose()
    {
        Ok(next) => next,
        Err(e) => return ApiResponse::store_failure(&e),
    };
    match serde_json::to_string(&Body {
        items: &page.items,
        next,
    }) {
        Ok(body) => ApiResponse { status: 200, body },
        Err(source) => ApiResponse::store_failure(&crate::Error::Encode {
            what: "query response",
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::sync::Mutex;
    use std::task::{Context, Poll, Waker};

    use serde_json::Value;

    use std::future::Future;

    use super::*;
    use crate::detect::rules::{Alert, Op, RuleKind, Severity, Stat};
    use crate::ports::{AggregateCursor, AggregateQuery, AlertCursor, AlertQuery};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;

    use super::pager::Smallest;
    use super::token::decode_token;
    use crate::Result;
    use crate::state::item::{AggregateView, GroupKey};
    use crate::time::format_rfc3339;

    /// Runs a future that never waits (the fakes below answer at once).
    fn now<F: Future>(f: F) -> F::Output {
        let mut f = pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("the fake readers never wait"),
        }
    }

    const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn view(
        key: &str,
        metric: &str,
        window: (i64, Option<i64>),
        start_ms: i64,
        count: u64,
    ) -> AggregateView {
        AggregateView {
            kind: "aggregate".into(),
            key: key.into(),
            metric: metric.into(),
            window_seconds: window.0,
            slide_seconds: window.1,
            window_start: format_rfc3339(start_ms),
            count,
            sum: count as f64,
            min: 1.0,
            max: 1.0,
            mean: 1.0,
            variance: 0.0,
            columns: Vec::new(),
        }
    }

    fn alert(rule: &str, severity: Severity, key: &str, start_ms: i64) -> Alert {
        Alert {
            kind: "alert".into(),
            alert_id: Alert::id_for(rule, "temp", key, 60, start_ms),
            rule_id: rule.into(),
            kind_of_rule: RuleKind::Threshold,
            severity,
            key: key.into(),
            metric: "temp".into(),
            window_seconds: 60,
            window_start: format_rfc3339(start_ms),
            stat: Stat::Max,
            op: Some(Op::Gt),
            threshold: 80.0,
            value: 90.0,
            observed: 90.0,
            count: 3,
            previous: None,
            mean: None,
            stddev: None,
            z: None,
            history: None,
            description: String::new(),
            view: None,
            row: None,
        }
    }

    /// A store whose reads go through the pagers, recording the queries it was asked.
    #[derive(Default)]
    struct Fake {
        views: Vec<AggregateView>,
        alerts: Vec<Alert>,
        asked: Mutex<Vec<AggregateQuery>>,
        fail: Option<bool>,
    }

    impl Fake {
        fn failure(&self) -> Option<crate::Error> {
            self.fail.map(|retryable| crate::Error::Remote {
                service: "dynamodb",
                operation: "Query",
                message: "table \"t\": boom".into(),
                retryable,
                source: None,
            })
        }
    }

    impl AggregateReader for Fake {
        async fn aggregates(
            &self,
            query: &AggregateQuery,
        ) -> Result<Page<AggregateView, AggregateCursor>> {
            self.asked.lock().expect("lock").push(query.clone());
            if let Some(e) = self.failure() {
                return Err(e);
            }
            let mut pager = AggregatePager::new(query);
            // Offered in reverse, so the order of the page is the pager's doing.
            self.views.iter().rev().for_each(|v| pager.offer(v.clone()));
            Ok(pager.finish())
        }
    }

    impl AlertReader for Fake {
        async fn alerts(&self, query: &AlertQuery) -> Result<Page<Alert, AlertCursor>> {
            if let Some(e) = self.failure() {
                return Err(e);
            }
            let mut pager = AlertPager::new(query);
            self.alerts.iter().for_each(|a| pager.offer(a.clone()));
            Ok(pager.finish())
        }
    }

    fn fixture() -> Fake {
        let mut views = Vec::new();
        for key in ["s-1", "s-2", "s-3"] {
            for metric in ["temp", "hum"] {
                for i in 0..20 {
                    views.push(view(key, metric, (60, None), T0 + i * 60_000, 1 + i as u64));
                }
                for i in 0..5 {
                    views.push(view(key, metric, (3600, None), T0 + i * 3_600_000, 7));
                    views.push(view(key, metric, (3600, Some(600)), T0 + i * 600_000, 7));
                }
            }
        }
        // Counted nothing: never listed.
        views.push(view("s-1", "temp", (60, None), T0 - 60_000, 0));
        let mut alerts = Vec::new();
        for i in 0..30 {
            let severity = Severity::ALL[i as usize % 3];
            let rule = if i % 2 == 0 { "hot" } else { "burst" };
            alerts.push(alert(
                rule,
                severity,
                &format!("s-{}", i % 4),
                T0 + (i / 3) * 60_000,
            ));
        }
        Fake {
            views,
            alerts,
            ..Fake::default()
        }
    }

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn get(fake: &Fake, path: &str, pairs: &[(&str, &str)]) -> (u16, Value) {
        let r = now(respond(fake, fake, path, &params(pairs)));
        let body: Value = serde_json::from_str(&r.body).expect("the body is JSON");
        (r.status, body)
    }

    /// Asserts a 400 naming `parameter`, and returns its message.
    fn rejected(path: &str, pairs: &[(&str, &str)], parameter: &str) -> String {
        let fake = fixture();
        let (status, body) = get(&fake, path, pairs);
        assert_eq!(status, 400, "{pairs:?}: {body}");
        assert_eq!(body["parameter"], parameter, "{pairs:?}: {body}");
        let message = body["error"].as_str().expect("an error message").to_owned();
        assert!(!message.is_empty());
        assert!(
            fake.asked.lock().expect("lock").is_empty(),
            "bad input never reaches the store"
        );
        message
    }

    /// Every page of a query, following `next`; returns the items and the page count.
    fn all_pages(fake: &Fake, path: &str, pairs: &[(&str, &str)]) -> (Vec<Value>, usize) {
        let mut items = Vec::new();
        let mut pages = 0;
        let mut next: Option<String> = None;
        loop {
            let mut p = pairs.to_vec();
            if let Some(t) = &next {
                p.push(("next", t));
            }
            let (status, body) = get(fake, path, &p);
            assert_eq!(status, 200, "{body}");
            pages += 1;
            items.extend(body["items"].as_array().expect("items").iter().cloned());
            match &body["next"] {
                Value::Null => break,
                Value::String(t) => next = Some(t.clone()),
                other => panic!("next is {other}"),
            }
            assert!(pages < 1000, "pagination does not end");
        }
        (items, pages)
    }

    #[test]
    fn unknown_duplicate_and_empty_parameters_are_named() {
        let m = rejected(AGGREGATES_PATH, &[("keys", "s-1")], "keys");
        assert!(m.contains("unknown parameter \"keys\""), "{m}");
        rejected(ALERTS_PATH, &[("from", "0")], "from");
        let m = rejected(AGGREGATES_PATH, &[("key", "a"), ("key", "b")], "key");
        assert!(m.contains("twice"), "{m}");
        let m = rejected(AGGREGATES_PATH, &[("type", "")], "type");
        assert!(m.contains("empty"), "{m}");
        rejected(ALERTS_PATH, &[("rule", "")], "rule");
    }

    #[test]
    fn bad_numbers_are_named() {
        for bad in ["0", "-60", "abc", "1.5", "2678401", ""] {
            rejected(
                AGGREGATES_PATH,
                &[("window_seconds", bad)],
                "window_seconds",
            );
        }
        for path in [AGGREGATES_PATH, ALERTS_PATH] {
            for bad in ["0", "1001", "-1", "ten", "1e2"] {
                let m = rejected(path, &[("limit", bad)], "limit");
                assert!(m.contains("1..=1000"), "{m}");
            }
        }
    }

    #[test]
    fn bad_times_and_reversed_ranges_are_named() {
        rejected(AGGREGATES_PATH, &[("from", "yesterday")], "from");
        rejected(AGGREGATES_PATH, &[("to", "2026-01-01 00:00:00")], "to");
        rejected(ALERTS_PATH, &[("since", "2026-13-01T00:00:00Z")], "since");
        let m = rejected(ALERTS_PATH, &[("since", "253402300800000")], "since");
        assert!(m.contains("0000 to 9999"), "{m}");
        rejected(AGGREGATES_PATH, &[("from", "-62167219200001")], "from");
        let fake = fixture();
        for edge in ["-62167219200000", "253402300799999", "0000-01-01T00:00:00Z"] {
            assert_eq!(get(&fake, ALERTS_PATH, &[("since", edge)]).0, 200, "{edge}");
        }
        let m = rejected(
            AGGREGATES_PATH,
            &[("from", "2026-01-01T00:01:00Z"), ("to", "1767225600000")],
            "from",
        );
        assert!(m.contains("after"), "{m}");
        // from == to is a range of one instant, not an error.
        let fake = fixture();
        let (status, body) = get(
            &fake,
            AGGREGATES_PATH,
            &[
                ("from", "2026-01-01T00:01:00Z"),
                ("to", "1767225660000"),
                ("window_seconds", "60"),
            ],
        );
        assert_eq!(status, 200);
        assert_eq!(body["items"].as_array().expect("items").len(), 6);
    }

    #[test]
    fn unknown_severity_is_named() {
        let m = rejected(ALERTS_PATH, &[("severity", "fatal")], "severity");
        assert!(m.contains("info, warning, critical"), "{m}");
        rejected(ALERTS_PATH, &[("severity", "Warning")], "severity");
    }

    #[test]
    fn tokens_that_do_not_decode_or_belong_elsewhere_are_named_next() {
        rejected(AGGREGATES_PATH, &[("next", "not a token!")], "next");
        let not_json = BASE64URL.encode(b"hello");
        rejected(AGGREGATES_PATH, &[("next", &not_json)], "next");
        let other_shape = BASE64URL.encode(br#"{"v":1,"q":"x","c":{"alert_id":"a"}}"#);
        rejected(AGGREGATES_PATH, &[("next", &other_shape)], "next");

        // A real token of the alerts route is no aggregates token, and the reverse.
        let fake = fixture();
        let (_, alerts) = get(&fake, ALERTS_PATH, &[("limit", "2")]);
        let alert_token = alerts["next"].as_str().expect("a next token").to_owned();
        rejected(AGGREGATES_PATH, &[("next", &alert_token)], "next");
        let (_, aggs) = get(&fake, AGGREGATES_PATH, &[("limit", "2")]);
        let agg_token = aggs["next"].as_str().expect("a next token").to_owned();
        rejected(ALERTS_PATH, &[("next", &agg_token)], "next");

        // Changing a filter between pages is refused; changing the limit is not.
        let m = rejected(
            AGGREGATES_PATH,
            &[("next", &agg_token), ("key", "s-1")],
            "next",
        );
        assert!(m.contains("other filters"), "{m}");
        rejected(
            ALERTS_PATH,
            &[("next", &alert_token), ("severity", "info")],
            "next",
        );
        let (status, _) = get(
            &fake,
            AGGREGATES_PATH,
            &[("next", &agg_token), ("limit", "5")],
        );
        assert_eq!(status, 200);

        // A well-formed token of another version, or positions no store can hold.
        let q = token::aggregate_digest(&parse_aggregate_query(&[]).expect("valid"));
        let v2 = BASE64URL.encode(format!(r#"{{"v":2,"q":"{q}","c":{{"pk":"a","sk":"b"}}}}"#));
        rejected(AGGREGATES_PATH, &[("next", &v2)], "next");
        let empty = encode_token(
            &q,
            &AggregateCursor {
                pk: String::new(),
                sk: "b".into(),
            },
        )
        .expect("encodes");
        rejected(AGGREGATES_PATH, &[("next", &empty)], "next");
        let group = [("key", "s-1"), ("type", "temp")];
        let gq = token::aggregate_digest(&parse_aggregate_query(&params(&group)).expect("valid"));
        let elsewhere = encode_token(
            &gq,
            &AggregateCursor {
                pk: "temp#s-2".into(),
                sk: "60#x".into(),
            },
        )
        .expect("encodes");
        let m = rejected(
            AGGREGATES_PATH,
            &[group[0], group[1], ("next", &elsewhere)],
            "next",
        );
        assert!(m.contains("outside the group"), "{m}");
        let aq = token::alert_digest(&parse_alert_query(&[]).expect("valid"));
        let bad_start = encode_token(
            &aq,
            &AlertCursor {
                window_start: "soon".into(),
                alert_id: "a".into(),
            },
        )
        .expect("encodes");
        rejected(ALERTS_PATH, &[("next", &bad_start)], "next");
    }

    #[test]
    fn tokens_round_trip_and_tolerate_padding() {
        let cursor = AggregateCursor {
            pk: "temp#s-1".into(),
            sk: "3600/600#2026-01-01T00:00:00Z".into(),
        };
        let token = encode_token("abc", &cursor).expect("encodes");
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{token}"
        );
        assert_eq!(
            decode_token::<AggregateCursor>(&token, "abc"),
            Ok(cursor.clone())
        );
        let padded = format!("{token}{}", "=".repeat((4 - token.len() % 4) % 4));
        assert_eq!(decode_token::<AggregateCursor>(&padded, "abc"), Ok(cursor));
        assert_eq!(
            decode_token::<AggregateCursor>(&token, "abd").map_err(|e| e.parameter),
            Err("next".to_owned())
        );
    }

    #[test]
    fn unknown_paths_are_404_and_other_methods_405() {
        let fake = fixture();
        for path in ["/", "/aggregate", "/aggregates/", "/alerts/x", ""] {
            let (status, body) = get(&fake, path, &[]);
            assert_eq!(status, 404, "{path}");
            assert!(
                body["error"]
                    .as_str()
                    .expect("message")
                    .contains("/aggregates")
            );
        }
        let r = method_not_allowed("POST");
        assert_eq!(r.status, 405);
        let body: Value = serde_json::from_str(&r.body).expect("JSON");
        assert!(
            body["error"]
                .as_str()
                .expect("message")
                .contains("\"POST\"")
        );
    }

    #[test]
    fn store_failures_are_503_when_retryable_else_500() {
        for (retryable, status) in [(true, 503), (false, 500)] {
            let fake = Fake {
                fail: Some(retryable),
                ..fixture()
            };
            for path in [AGGREGATES_PATH, ALERTS_PATH] {
                let (got, body) = get(&fake, path, &[]);
                assert_eq!(got, status, "{body}");
                assert_eq!(body["retryable"], retryable);
                assert!(body["error"].as_str().expect("message").contains("boom"));
            }
        }
    }

    #[test]
    fn aggregate_pages_cover_every_match_exactly_once_in_storage_order() {
        let fake = fixture();
        let cases: [&[(&str, &str)]; 5] = [
            &[],
            &[("key", "s-2"), ("type", "hum")],
            &[("type", "temp"), ("window_seconds", "3600")],
            &[
                ("key", "s-1"),
                ("from", "2026-01-01T00:05:00Z"),
                ("to", "1767226500000"),
            ],
            &[("key", "nobody")],
        ];
        for filters in cases {
            let q = parse_aggregate_query(&params(filters)).expect("valid");
            let mut want: Vec<&AggregateView> =
                fake.views.iter().filter(|v| q.matches(v)).collect();
            want.sort_by_key(|v| view_position(v));
            for limit in ["1", "7", "1000"] {
                let mut p = filters.to_vec();
                p.push(("limit", limit));
                let (items, pages) = all_pages(&fake, AGGREGATES_PATH, &p);
                let got: Vec<AggregateView> = items
                    .into_iter()
                    .map(|v| serde_json::from_value(v).expect("an aggregate line"))
                    .collect();
                assert_eq!(got.len(), want.len(), "{filters:?} limit {limit}");
                assert!(
                    got.iter().zip(&want).all(|(g, w)| g == *w),
                    "{filters:?} limit {limit}"
                );
                let limit: usize = limit.parse().expect("number");
                assert_eq!(pages, want.len().div_ceil(limit).max(1), "{filters:?}");
            }
        }
        // The filter arrived as parsed, and the zero-count view is never listed.
        let (_, body) = get(
            &fake,
            AGGREGATES_PATH,
            &[("key", "s-1"), ("type", "temp"), ("limit", "1")],
        );
        assert_eq!(body["items"][0]["kind"], "aggregate");
        assert_eq!(body["items"][0]["window_start"], "2026-01-01T00:00:00Z");
        let asked = fake.asked.lock().expect("lock");
        let last = asked.last().expect("asked");
        assert_eq!(
            last.group(),
            Some(GroupKey {
                key: "s-1".into(),
                metric: "temp".into()
            })
        );
    }

    #[test]
    fn alert_pages_are_newest_first_and_cover_every_match_exactly_once() {
        let fake = fixture();
        let cases: [&[(&str, &str)]; 4] = [
            &[],
            &[("severity", "critical")],
            &[("rule", "hot"), ("since", "2026-01-01T00:04:00Z")],
            &[
                ("since", "1767225900000"),
                ("severity", "info"),
                ("rule", "burst"),
            ],
        ];
        for filters in cases {
            let q = parse_alert_query(&params(filters)).expect("valid");
            let mut want: Vec<&Alert> = fake.alerts.iter().filter(|a| q.matches(a)).collect();
            want.sort_by_key(|a| alert_order(a));
            assert!(
                !want.is_empty() || filters.len() == 3,
                "{filters:?} selects something"
            );
            for limit in ["1", "4", "100"] {
                let mut p = filters.to_vec();
                p.push(("limit", limit));
                let (items, _) = all_pages(&fake, ALERTS_PATH, &p);
                let got: Vec<Alert> = items
                    .into_iter()
                    .map(|a| serde_json::from_value(a).expect("an alert"))
                    .collect();
                assert_eq!(got.len(), want.len(), "{filters:?} limit {limit}");
                assert!(got.iter().zip(&want).all(|(g, w)| g == *w), "{filters:?}");
            }
        }
    }

    #[test]
    fn since_compares_with_the_window_start() {
        let a = alert("hot", Severity::Warning, "s-1", T0 + 60_000);
        let at = |since: i64| AlertQuery {
            since_ms: Some(since),
            severity: None,
            rule: None,
            limit: 10,
            after: None,
        };
        assert!(
            at(T0 + 60_000).matches(&a),
            "a window starting at since is listed"
        );
        assert!(!at(T0 + 60_001).matches(&a));
        assert!(at(T0).matches(&a));
    }

    #[test]
    fn whole_second_bounds_round_inwards() {
        let q = |from, to| AggregateQuery {
            key: None,
            metric: None,
            window_seconds: None,
            from_ms: from,
            to_ms: to,
            limit: 1,
            after: None,
        };
        assert_eq!(
            q(Some(1_500), Some(4_200)).whole_second_bounds(),
            Some((2_000, 4_000))
        );
        assert_eq!(
            q(Some(-1_500), Some(-1)).whole_second_bounds(),
            Some((-1_000, -1_000))
        );
        assert_eq!(q(Some(1_200), Some(1_900)).whole_second_bounds(), None);
        assert_eq!(
            q(Some(2_000), Some(2_000)).whole_second_bounds(),
            Some((2_000, 2_000))
        );
        assert!(q(None, None).whole_second_bounds().is_some());
    }

    #[test]
    fn the_smallest_keeps_one_page_and_knows_what_follows() {
        let mut s = Smallest::new(Some(3), 3);
        for k in [9, 1, 5, 3, 8, 4, 7, 6, 2] {
            s.offer(k, k * 10);
        }
        assert_eq!(s.finish(), (vec![40, 50, 60], Some(6)));
        let mut s = Smallest::new(None, 3);
        for k in [2, 1, 3] {
            s.offer(k, k);
        }
        assert_eq!(
            s.finish(),
            (vec![1, 2, 3], None),
            "exactly a page: nothing follows"
        );
    }

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
}
