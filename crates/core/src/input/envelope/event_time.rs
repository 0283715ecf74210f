//! Event time: the clock bounds ([`TimeBounds`]), the accepted `ts` range and how the
//! general decoder reads `ts` (epoch milliseconds or RFC 3339).

use serde_json::{Map, Value};

use super::non_finite::NonFinite;
use super::{Reason, Rejection, json_kind};
use crate::time::{format_rfc3339, parse_rfc3339_ms};

/// Bounds that depend on the clock, passed in so decoding stays pure.
#[derive(Clone, Copy, Debug)]
pub struct TimeBounds {
    pub now_ms: i64,
    pub max_future_skew_ms: i64,
}

impl TimeBounds {
    /// No upper bound: for stages after ingest, where the clock check already happened.
    pub fn unbounded() -> Self {
        TimeBounds {
            now_ms: i64::MAX / 2,
            max_future_skew_ms: 0,
        }
    }
}

/// Epoch milliseconds from 1970-01-12T13:46:40Z to 1970-04-26T17:46:40Z (1e9 to 1e10
/// ms): where epoch *seconds* from 2001-09-09 to 2286-11-20 land when read as
/// milliseconds. No stream carries events from early 1970, while a producer that sends
/// seconds (Unix `date +%s`, Python's `time.time()`) lands exactly here, and its events
/// would be counted, silently, into windows 56 years in the past. So no event time in
/// this range is accepted, whatever its form.
///
/// The rule is part of the accepted event-time range every stage checks
/// ([`ts_in_range`]), not of [`TimeBounds`]: it does not depend on the clock, and the
/// later stages (which decode with [`TimeBounds::unbounded`]) must accept exactly what
/// ingest wrote. For the same reason an RFC 3339 `ts` in the range is refused too:
/// ingest would normalize it to epoch milliseconds that read as seconds downstream.
/// Smaller values (seconds before 2001, or small test counters) are left alone.
pub const SECONDS_AS_MS: std::ops::Range<i64> = 1_000_000_000..10_000_000_000;

/// Whether `ts` lies between 1970 and the clock plus the allowed skew, outside
/// [`SECONDS_AS_MS`].
pub(super) fn ts_in_range(ts: i64, bounds: TimeBounds) -> bool {
    ts >= 0
        && !SECONDS_AS_MS.contains(&ts)
        && ts <= bounds.now_ms.saturating_add(bounds.max_future_skew_ms)
}

pub(super) fn take_ts(
    obj: &mut Map<String, Value>,
    nf: &NonFinite,
    bounds: TimeBounds,
) -> Result<i64, Rejection> {
    let (ts, numeric) = match (obj.remove("ts"), nf.field("ts")) {
        (Some(Value::Null), Some(literal)) => {
            return Err(Rejection::new(
                Reason::TsOutOfRange,
                Some("ts"),
                format!("ts {literal} is not a finite number"),
            ));
        }
        (None, _) | (Some(Value::Null), None) => {
            return Err(Rejection::new(
                Reason::MissingField,
                Some("ts"),
                "ts is missing",
            ));
        }
        (Some(Value::String(s)), _) => {
            let ts = parse_rfc3339_ms(&s).ok_or_else(|| {
                Rejection::new(
                    Reason::InvalidValue,
                    Some("ts"),
                    format!("ts {s:?} is neither RFC 3339 nor epoch milliseconds"),
                )
            })?;
            (ts, None)
        }
        (Some(Value::Number(n)), _) => {
            let ts = if let Some(i) = n.as_i64() {
                i
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                // Fractional milliseconds are truncated to the millisecond.
                if f.is_finite() && f.abs() < 9.0e15 {
                    f.floor() as i64
                } else {
                    return Err(Rejection::new(
                        Reason::TsOutOfRange,
                        Some("ts"),
                        format!("ts {n} is out of range for epoch milliseconds"),
                    ));
                }
            };
            (ts, Some(n))
        }
        (Some(other), _) => {
            return Err(Rejection::new(
                Reason::WrongType,
                Some("ts"),
                format!(
                    "ts must be an RFC 3339 string or epoch milliseconds, found {}",
                    json_kind(&other)
                ),
            ));
        }
    };
    if ts < 0 {
        return Err(Rejection::new(
            Reason::TsOutOfRange,
            Some("ts"),
            format!("ts {ts} is before 1970-01-01T00:00:00Z"),
        ));
    }
    if SECONDS_AS_MS.contains(&ts) {
        let detail = match numeric {
            Some(n) => {
                // What the producer most likely meant: the number as seconds.
                let meant_ms = (n.as_f64().unwrap_or(0.0) * 1000.0).floor() as i64;
                format!(
                    "ts {n} looks like epoch seconds ({}); send epoch milliseconds",
                    format_rfc3339(meant_ms)
                )
            }
            None => format!(
                "ts {} is in {}..{}, where epoch seconds sent as milliseconds land; \
                 no event time in that range is accepted",
                format_rfc3339(ts),
                format_rfc3339(SECONDS_AS_MS.start),
                format_rfc3339(SECONDS_AS_MS.end)
            ),
        };
        return Err(Rejection::new(Reason::TsOutOfRange, Some("ts"), detail));
    }
    let limit = bounds.now_ms.saturating_add(bounds.max_future_skew_ms);
    if ts > limit {
        return Err(Rejection::new(
            Reason::TsOutOfRange,
            Some("ts"),
            format!(
                "ts {ts} is {} ms ahead of the clock; at most {} ms of skew is allowed",
                ts.saturating_sub(bounds.now_ms),
                bounds.max_future_skew_ms
            ),
        ));
    }
    Ok(ts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::envelope::test_support::*;
    use crate::input::envelope::*;

    #[test]
    fn epoch_seconds_are_refused_with_the_time_they_meant() {
        let ts_line = |ts: &str| format!(r#"{{"key":"k","type":"t","ts":{ts},"value":1}}"#);
        for (ts, detail) in [
            (
                "1767225600",
                "ts 1767225600 looks like epoch seconds (2026-01-01T00:00:00Z); send epoch milliseconds",
            ),
            (
                "1767225600.5",
                "ts 1767225600.5 looks like epoch seconds (2026-01-01T00:00:00.500Z); send epoch milliseconds",
            ),
            (
                "1000000000",
                "ts 1000000000 looks like epoch seconds (2001-09-09T01:46:40Z); send epoch milliseconds",
            ),
        ] {
            for b in [bounds(), TimeBounds::unbounded()] {
                let r = one_with(&ts_line(ts), b).expect_err("seconds");
                assert_eq!(
                    (r.reason, r.field, r.detail.as_str()),
                    (Reason::TsOutOfRange, Some("ts"), detail)
                );
                assert!(fast::decode(ts_line(ts).as_bytes(), b).is_none(), "{ts}");
            }
        }
        assert_eq!(
            reason(&ts_line("9999999999")),
            (Reason::TsOutOfRange, Some("ts"))
        );
        // The same instant as a string is refused too: ingest would write it as a number.
        let r = one(&ts_line(r#""1970-02-01T00:00:00Z""#)).expect_err("in the range");
        assert_eq!(
            (r.reason, r.detail.as_str()),
            (
                Reason::TsOutOfRange,
                "ts 1970-02-01T00:00:00Z is in 1970-01-12T13:46:40Z..1970-04-26T17:46:40Z, \
                 where epoch seconds sent as milliseconds land; no event time in that range \
                 is accepted"
            )
        );
        // Just outside the range: milliseconds.
        for ts in [999_999_999_i64, 10_000_000_000, 1] {
            assert_eq!(one(&ts_line(&ts.to_string())).expect("valid").ts, ts);
        }
    }
}
