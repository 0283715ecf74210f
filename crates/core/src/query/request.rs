//! The request side of the read API: query-string pairs decoded, each route's
//! parameters validated into an [`AggregateQuery`] or [`AlertQuery`] (with the position
//! a `next` token resumes after), or a [`BadRequest`] naming the parameter.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::token::{bad_token, decode_token, filters_digest};
use super::{AGGREGATES_PATH, ALERTS_PATH, DEFAULT_LIMIT, MAX_LIMIT, MAX_WINDOW_SECONDS};
use crate::detect::rules::{Alert, Severity};
use crate::state::item::{AggregateView, GroupKey};
use crate::time::{parse_rfc3339_ms, parse_time_arg};

/// Where an aggregates read resumes: the storage key (`pk`, `sk`, see
/// [`crate::state::item`]) of the last item it evaluated. Any pair of non-empty strings is a
/// valid position: the store resumes at the first key after it in its own order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateCursor {
    pub pk: String,
    pub sk: String,
}

/// Where an alerts read resumes: the last alert evaluated, newest window first
/// (`window_start` is RFC 3339, as the alert holds it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertCursor {
    pub window_start: String,
    pub alert_id: String,
}

/// A validated `GET /aggregates`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregateQuery {
    pub key: Option<String>,
    /// The metric (`type`).
    pub metric: Option<String>,
    /// Windows of this size only (tumbling and hopping).
    pub window_seconds: Option<i64>,
    /// Window start at or after (epoch ms).
    pub from_ms: Option<i64>,
    /// Window start at or before (epoch ms).
    pub to_ms: Option<i64>,
    /// At most this many items (1..=[`MAX_LIMIT`]).
    pub limit: usize,
    /// Resume after this position (from `next`).
    pub after: Option<AggregateCursor>,
}

impl AggregateQuery {
    /// The one group read when both `key` and `type` are given (a `Query` on its
    /// partition); otherwise the store scans.
    pub fn group(&self) -> Option<GroupKey> {
        Some(GroupKey {
            key: self.key.clone()?,
            metric: self.metric.clone()?,
        })
    }

    /// Whether `view` passes every filter (not the position: see `after`). Aggregates
    /// that counted no event never do.
    pub fn matches(&self, view: &AggregateView) -> bool {
        let start = parse_rfc3339_ms(&view.window_start);
        view.count > 0
            && self.key.as_ref().is_none_or(|k| *k == view.key)
            && self.metric.as_ref().is_none_or(|m| *m == view.metric)
            && self.window_seconds.is_none_or(|w| w == view.window_seconds)
            && self
                .from_ms
                .is_none_or(|from| start.is_some_and(|s| s >= from))
            && self.to_ms.is_none_or(|to| start.is_some_and(|s| s <= to))
    }

    /// The time bounds as whole seconds (window starts are whole seconds), so that
    /// their RFC 3339 forms sort like the starts they bound: `None` when no whole
    /// second lies in `[from, to]`.
    pub fn whole_second_bounds(&self) -> Option<(i64, i64)> {
        let from = self.from_ms.unwrap_or(i64::MIN / 2);
        let to = self.to_ms.unwrap_or(i64::MAX / 2);
        let lo = from + (1000 - from.rem_euclid(1000)) % 1000;
        let hi = to - to.rem_euclid(1000);
        (lo <= hi).then_some((lo, hi))
    }

    pub(super) fn digest(&self) -> String {
        filters_digest(
            AGGREGATES_PATH,
            &serde_json::json!([
                self.key,
                self.metric,
                self.window_seconds,
                self.from_ms,
                self.to_ms
            ]),
        )
    }
}

/// A validated `GET /alerts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertQuery {
    /// Alerts whose `window_start` is at or after this (epoch ms).
    pub since_ms: Option<i64>,
    pub severity: Option<Severity>,
    /// The rule id.
    pub rule: Option<String>,
    pub limit: usize,
    pub after: Option<AlertCursor>,
}

impl AlertQuery {
    /// Whether `alert` passes every filter (not the position: see `after`).
    pub fn matches(&self, alert: &Alert) -> bool {
        self.since_ms.is_none_or(|since| {
            parse_rfc3339_ms(&alert.window_start).is_some_and(|start| start >= since)
        }) && self.severity.is_none_or(|s| s == alert.severity)
            && self.rule.as_ref().is_none_or(|r| *r == alert.rule_id)
    }

    pub(super) fn digest(&self) -> String {
        filters_digest(
            ALERTS_PATH,
            &serde_json::json!([
                self.since_ms,
                self.severity.map(Severity::as_str),
                self.rule
            ]),
        )
    }
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

/// The parameters, each at most once, only those of `allowed`.
fn collect_params<'a>(
    params: &'a [(String, String)],
    allowed: &[&str],
) -> std::result::Result<BTreeMap<&'a str, &'a str>, BadRequest> {
    let mut map = BTreeMap::new();
    for (name, value) in params {
        if !allowed.contains(&name.as_str()) {
            return Err(BadRequest::new(
                name,
                format!(
                    "unknown parameter {name:?}: this route takes {}",
                    allowed.join(", ")
                ),
            ));
        }
        if map.insert(name.as_str(), value.as_str()).is_some() {
            return Err(BadRequest::new(name, format!("{name} is given twice")));
        }
        if value.is_empty() {
            return Err(BadRequest::new(
                name,
                format!("{name} is empty: leave it out to not filter by it"),
            ));
        }
    }
    Ok(map)
}

fn text(map: &BTreeMap<&str, &str>, name: &str) -> Option<String> {
    map.get(name).map(|v| (*v).to_owned())
}

/// The times a bound may take: years 0000 to 9999, whose RFC 3339 forms all have four
/// year digits and so sort like the instants they name (stores compare them as text).
pub const TIME_RANGE_MS: std::ops::RangeInclusive<i64> = -62_167_219_200_000..=253_402_300_799_999;

fn time(map: &BTreeMap<&str, &str>, name: &str) -> std::result::Result<Option<i64>, BadRequest> {
    map.get(name)
        .map(|v| match parse_time_arg(v) {
            Some(ms) if TIME_RANGE_MS.contains(&ms) => Ok(ms),
            Some(_) => Err(BadRequest::new(
                name,
                format!("{name}={v:?} is outside the years 0000 to 9999"),
            )),
            None => Err(BadRequest::new(
                name,
                format!("{name}={v:?} is not a time: use RFC 3339 or epoch milliseconds"),
            )),
        })
        .transpose()
}

fn limit(map: &BTreeMap<&str, &str>) -> std::result::Result<usize, BadRequest> {
    let Some(v) = map.get("limit") else {
        return Ok(DEFAULT_LIMIT);
    };
    match v.parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(BadRequest::new(
            "limit",
            format!("limit={v:?} is not a whole number in 1..={MAX_LIMIT}"),
        )),
    }
}

/// Validates a `GET /aggregates` request.
pub fn parse_aggregate_query(
    params: &[(String, String)],
) -> std::result::Result<AggregateQuery, BadRequest> {
    let map = collect_params(
        params,
        &[
            "key",
            "type",
            "window_seconds",
            "from",
            "to",
            "limit",
            "next",
        ],
    )?;
    let window_seconds = map
        .get("window_seconds")
        .map(|v| match v.parse::<i64>() {
            Ok(n) if (1..=MAX_WINDOW_SECONDS).contains(&n) => Ok(n),
            _ => Err(BadRequest::new(
                "window_seconds",
                format!("window_seconds={v:?} is not a whole number of seconds in 1..={MAX_WINDOW_SECONDS}"),
            )),
        })
        .transpose()?;
    let from_ms = time(&map, "from")?;
    let to_ms = time(&map, "to")?;
    if from_ms.zip(to_ms).is_some_and(|(from, to)| from > to) {
        return Err(BadRequest::new(
            "from",
            format!(
                "from={:?} is after to={:?}",
                map.get("from").copied().unwrap_or_default(),
                map.get("to").copied().unwrap_or_default()
            ),
        ));
    }
    let mut query = AggregateQuery {
        key: text(&map, "key"),
        metric: text(&map, "type"),
        window_seconds,
        from_ms,
        to_ms,
        limit: limit(&map)?,
        after: None,
    };
    if let Some(token) = map.get("next") {
        let cursor: AggregateCursor = decode_token(token, &query.digest())?;
        if cursor.pk.is_empty() || cursor.sk.is_empty() {
            return Err(bad_token("its position is empty"));
        }
        if query
            .group()
            .is_some_and(|g| cursor.pk != g.partition_key())
        {
            return Err(bad_token("its position is outside the group asked for"));
        }
        query.after = Some(cursor);
    }
    Ok(query)
}

/// Validates a `GET /alerts` request.
pub fn parse_alert_query(
    params: &[(String, String)],
) -> std::result::Result<AlertQuery, BadRequest> {
    let map = collect_params(params, &["since", "severity", "rule", "limit", "next"])?;
    let severity = map
        .get("severity")
        .map(|s| {
            Severity::parse(s).ok_or_else(|| {
                let all: Vec<&str> = Severity::ALL.iter().map(|v| v.as_str()).collect();
                BadRequest::new(
                    "severity",
                    format!(
                        "severity={s:?} is not a severity: use one of {}",
                        all.join(", ")
                    ),
                )
            })
        })
        .transpose()?;
    let mut query = AlertQuery {
        since_ms: time(&map, "since")?,
        severity,
        rule: text(&map, "rule"),
        limit: limit(&map)?,
        after: None,
    };
    if let Some(token) = map.get("next") {
        let cursor: AlertCursor = decode_token(token, &query.digest())?;
        if cursor.alert_id.is_empty() || parse_rfc3339_ms(&cursor.window_start).is_none() {
            return Err(bad_token("its position is not an alert's"));
        }
        query.after = Some(cursor);
    }
    Ok(query)
}
