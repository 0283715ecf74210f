//! Event time helpers: epoch milliseconds in, RFC 3339 (UTC) out. Nothing here reads
//! the clock; callers pass `now` in through the [`crate::ports::Clock`] port.

use chrono::{DateTime, SecondsFormat, Utc};

/// Parses an RFC 3339 timestamp to epoch milliseconds (sub-millisecond digits are
/// truncated). Returns `None` for anything else.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let t = DateTime::parse_from_rfc3339(s).ok()?;
    Some(t.timestamp_millis())
}

/// Formats epoch milliseconds as RFC 3339 in UTC, with milliseconds only when present.
pub fn format_rfc3339(ms: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) if ms.rem_euclid(1000) == 0 => t.to_rfc3339_opts(SecondsFormat::Secs, true),
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => ms.to_string(),
    }
}

/// Parses a command-line time: RFC 3339, or epoch milliseconds.
pub fn parse_time_arg(s: &str) -> Option<i64> {
    parse_rfc3339_ms(s).or_else(|| s.parse::<i64>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_whole_seconds_without_fraction() {
        assert_eq!(format_rfc3339(1_767_225_660_000), "2026-01-01T00:01:00Z");
        assert_eq!(
            format_rfc3339(1_767_225_660_250),
            "2026-01-01T00:01:00.250Z"
        );
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(-60_000), "1969-12-31T23:59:00Z");
    }

    #[test]
    fn parses_offsets_and_rejects_garbage() {
        assert_eq!(
            parse_rfc3339_ms("2026-01-01T00:01:00Z"),
            Some(1_767_225_660_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-01-01T02:01:00+02:00"),
            Some(1_767_225_660_000)
        );
        assert_eq!(parse_rfc3339_ms("2026-01-01 00:01:00"), None);
        assert_eq!(parse_time_arg("1767225660000"), Some(1_767_225_660_000));
    }
}
