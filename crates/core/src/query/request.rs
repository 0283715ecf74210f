//! The request side of the read API: query-string pairs decoded, each route's
//! parameters validated into an [`AggregateQuery`] or [`AlertQuery`] (with the position
//! a `next` token resumes after), or a [`BadRequest`] naming the parameter.

use std::collections::BTreeMap;

use super::BadRequest;
use super::token::{aggregate_digest, alert_digest, bad_token, decode_token};
use super::{DEFAULT_LIMIT, MAX_LIMIT, MAX_WINDOW_SECONDS};
use crate::detect::rules::Severity;
use crate::ports::{AggregateCursor, AggregateQuery, AlertCursor, AlertQuery};
use crate::time::{parse_rfc3339_ms, parse_time_arg};

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
pub(super) fn collect_params<'a>(
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

pub(super) fn time(
    map: &BTreeMap<&str, &str>,
    name: &str,
) -> std::result::Result<Option<i64>, BadRequest> {
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

pub(super) fn limit(map: &BTreeMap<&str, &str>) -> std::result::Result<usize, BadRequest> {
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
        let cursor: AggregateCursor = decode_token(token, &aggregate_digest(&query))?;
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
        let cursor: AlertCursor = decode_token(token, &alert_digest(&query))?;
        if cursor.alert_id.is_empty() || parse_rfc3339_ms(&cursor.window_start).is_none() {
            return Err(bad_token("its position is not an alert's"));
        }
        query.after = Some(cursor);
    }
    Ok(query)
}
