//! Stage configuration: the environment variable names (set by `template.yaml`), their
//! defaults, and validation. Parsing takes a lookup function so it is testable; the
//! Lambda binaries pass `std::env::var`. Every error names the variable.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
pub use crate::state::idempotency::Delivery;
use crate::state::idempotency::PlanSettings;
use crate::state::window::WindowSet;

pub mod env {
    pub const OUTPUT_STREAM: &str = "OUTPUT_STREAM";
    pub const DEAD_LETTER_STREAM: &str = "DEAD_LETTER_STREAM";
    pub const MAX_CLOCK_SKEW_SECONDS: &str = "MAX_CLOCK_SKEW_SECONDS";
    pub const DEADLINE_MARGIN_MS: &str = "DEADLINE_MARGIN_MS";
    pub const REFERENCE_TABLE: &str = "REFERENCE_TABLE";
    pub const REFERENCE_CACHE_TTL_SECONDS: &str = "REFERENCE_CACHE_TTL_SECONDS";
    pub const AGGREGATES_TABLE: &str = "AGGREGATES_TABLE";
    pub const WINDOWS: &str = "WINDOWS";
    pub const DELIVERY: &str = "DELIVERY";
    pub const ALLOWED_LATENESS_SECONDS: &str = "ALLOWED_LATENESS_SECONDS";
    pub const AGGREGATE_RETENTION_DAYS: &str = "AGGREGATE_RETENTION_DAYS";
    pub const RULES_TABLE: &str = "RULES_TABLE";
    pub const RULES_CACHE_TTL_SECONDS: &str = "RULES_CACHE_TTL_SECONDS";
    pub const ALERTS_TABLE: &str = "ALERTS_TABLE";
    /// A Flink SQL pipeline file packaged with the function (issue 17); a relative path
    /// is read from the function's code directory (`LAMBDA_TASK_ROOT`). Unset or blank:
    /// the event envelope.
    pub const PIPELINE_FILE: &str = "PIPELINE_FILE";
    /// Set by Lambda: where the function's code is unpacked.
    pub const LAMBDA_TASK_ROOT: &str = "LAMBDA_TASK_ROOT";
}

/// Reads variables through `get`, applying defaults and naming the variable on error.
pub struct EnvReader<F> {
    get: F,
}

impl<F: Fn(&str) -> Option<String>> EnvReader<F> {
    pub fn new(get: F) -> Self {
        EnvReader { get }
    }

    pub fn required(&self, name: &str) -> Result<String> {
        match (self.get)(name) {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(Error::config(name, "", "is required but not set")),
        }
    }

    /// Whether the variable is set to something other than blanks.
    pub fn is_set(&self, name: &str) -> bool {
        (self.get)(name).is_some_and(|v| !v.trim().is_empty())
    }

    pub fn parsed<T: FromStr>(&self, name: &str, default: T) -> Result<T>
    where
        T::Err: fmt::Display,
    {
        match (self.get)(name) {
            None => Ok(default),
            Some(v) if v.trim().is_empty() => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|e: T::Err| Error::config(name, &v, e.to_string())),
        }
    }

    fn seconds(&self, name: &str, default: i64, max: i64) -> Result<i64> {
        let v: i64 = self.parsed(name, default)?;
        if !(0..=max).contains(&v) {
            return Err(Error::config(
                name,
                &v.to_string(),
                format!("must be within 0..={max}"),
            ));
        }
        Ok(v)
    }
}

/// Default of `MAX_CLOCK_SKEW_SECONDS`: at most [`DEFAULT_ALLOWED_LATENESS_SECONDS`] (see
/// [`check_lateness_covers_skew`]), leaving four minutes for events in flight.
pub const DEFAULT_MAX_CLOCK_SKEW_SECONDS: i64 = 60;
/// Default of `ALLOWED_LATENESS_SECONDS`.
pub const DEFAULT_ALLOWED_LATENESS_SECONDS: i64 = 300;
/// Largest `ALLOWED_LATENESS_SECONDS`: 31 days.
pub const MAX_ALLOWED_LATENESS_SECONDS: i64 = 86_400 * 31;

/// The rule between ingest's `MAX_CLOCK_SKEW_SECONDS` (S) and the aggregate stage's
/// `ALLOWED_LATENESS_SECONDS` (L): `S <= L`.
///
/// Why: ingest accepts an event up to S ahead of its clock. Such an event moves its
/// group's watermark to the start of its anchor window, up to S ahead of the present.
/// An event is late when its anchor window ended more than L before the watermark, so
/// afterwards an event of the same group is late once it is more than `L - S` (plus the
/// rest of its anchor window) behind the clock that accepted the future-dated one. With
/// `S > L` that budget is negative: even an event stamped with the present moment and
/// processed at once can be dead-lettered as `late`. With `S <= L`, `L - S` is how long
/// an on-time event may spend in flight (producer retries, batching windows, stage
/// retries) and still count when a future-dated event of its group overtook it.
pub fn check_lateness_covers_skew(max_clock_skew_s: i64, allowed_lateness_s: i64) -> Result<()> {
    if max_clock_skew_s > allowed_lateness_s {
        return Err(Error::config(
            env::MAX_CLOCK_SKEW_SECONDS,
            &max_clock_skew_s.to_string(),
            format!(
                "must not exceed {}={allowed_lateness_s}: an event accepted {max_clock_skew_s} s ahead \
                 of the clock moves its group's watermark so far that on-time events of the \
                 present are dead-lettered as late",
                env::ALLOWED_LATENESS_SECONDS
            ),
        ));
    }
    Ok(())
}

/// Settings shared by every stage.
#[derive(Clone, Debug)]
pub struct CommonConfig {
    /// Stop starting new work when less than this remains before the deadline.
    pub deadline_margin_ms: i64,
}

impl Default for CommonConfig {
    fn default() -> Self {
        CommonConfig {
            deadline_margin_ms: 2_000,
        }
    }
}

impl CommonConfig {
    pub fn from_reader<F: Fn(&str) -> Option<String>>(r: &EnvReader<F>) -> Result<Self> {
        Ok(CommonConfig {
            deadline_margin_ms: r.seconds(env::DEADLINE_MARGIN_MS, 2_000, 600_000)?,
        })
    }
}

#[derive(Clone, Debug)]
pub struct IngestConfig {
    pub common: CommonConfig,
    /// How far ahead of the clock an event time may be.
    pub max_clock_skew_ms: i64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            common: CommonConfig::default(),
            max_clock_skew_ms: DEFAULT_MAX_CLOCK_SKEW_SECONDS * 1000,
        }
    }
}

impl IngestConfig {
    /// Also checks [`check_lateness_covers_skew`] when `ALLOWED_LATENESS_SECONDS` is set
    /// (the template gives ingest the aggregate stage's value for this check alone): a
    /// deployment whose lateness is below its skew fails ingest at start-up, before any
    /// record is read, rather than dead-lettering on-time events as late.
    pub fn from_reader<F: Fn(&str) -> Option<String>>(r: &EnvReader<F>) -> Result<Self> {
        let skew_s = r.seconds(
            env::MAX_CLOCK_SKEW_SECONDS,
            DEFAULT_MAX_CLOCK_SKEW_SECONDS,
            86_400 * 365,
        )?;
        if r.is_set(env::ALLOWED_LATENESS_SECONDS) {
            let lateness_s = r.seconds(
                env::ALLOWED_LATENESS_SECONDS,
                DEFAULT_ALLOWED_LATENESS_SECONDS,
                MAX_ALLOWED_LATENESS_SECONDS,
            )?;
            check_lateness_covers_skew(skew_s, lateness_s)?;
        }
        Ok(IngestConfig {
            common: CommonConfig::from_reader(r)?,
            max_clock_skew_ms: skew_s * 1000,
        })
    }
}

#[derive(Clone, Debug)]
pub struct EnrichConfig {
    pub common: CommonConfig,
    pub cache_ttl_ms: i64,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        EnrichConfig {
            common: CommonConfig::default(),
            cache_ttl_ms: 300_000,
        }
    }
}

impl EnrichConfig {
    pub fn from_reader<F: Fn(&str) -> Option<String>>(r: &EnvReader<F>) -> Result<Self> {
        Ok(EnrichConfig {
            common: CommonConfig::from_reader(r)?,
            cache_ttl_ms: r.seconds(env::REFERENCE_CACHE_TTL_SECONDS, 300, 86_400)? * 1000,
        })
    }
}

#[derive(Clone, Debug)]
pub struct AggregateConfig {
    pub common: CommonConfig,
    pub windows: WindowSet,
    pub delivery: Delivery,
    pub allowed_lateness_ms: i64,
    /// Aggregates expire (DynamoDB TTL) this long after their window ends; 0: never.
    pub retention_ms: i64,
    /// Fingerprints kept in an anchor item before they are sealed into a page.
    pub head_fingerprint_cap: usize,
    /// Conditional-write attempts per group before the batch is retried by Lambda.
    pub max_commit_attempts: u32,
}

impl Default for AggregateConfig {
    fn default() -> Self {
        AggregateConfig {
            common: CommonConfig::default(),
            windows: WindowSet::default(),
            delivery: Delivery::ExactlyOnce,
            allowed_lateness_ms: DEFAULT_ALLOWED_LATENESS_SECONDS * 1000,
            retention_ms: 0,
            head_fingerprint_cap: 4096,
            max_commit_attempts: 5,
        }
    }
}

impl AggregateConfig {
    /// What the exactly-once planner ([`crate::state::idempotency`]) needs of it.
    pub fn plan_settings(&self) -> PlanSettings<'_> {
        PlanSettings {
            windows: &self.windows,
            fold: None,
            max_columns_bytes: 0,
            delivery: self.delivery,
            allowed_lateness_ms: self.allowed_lateness_ms,
            retention_ms: self.retention_ms,
            head_fingerprint_cap: self.head_fingerprint_cap,
        }
    }

    pub fn from_reader<F: Fn(&str) -> Option<String>>(r: &EnvReader<F>) -> Result<Self> {
        Ok(AggregateConfig {
            common: CommonConfig::from_reader(r)?,
            windows: r.parsed(env::WINDOWS, WindowSet::default())?,
            delivery: r.parsed(env::DELIVERY, Delivery::ExactlyOnce)?,
            allowed_lateness_ms: r.seconds(
                env::ALLOWED_LATENESS_SECONDS,
                DEFAULT_ALLOWED_LATENESS_SECONDS,
                MAX_ALLOWED_LATENESS_SECONDS,
            )? * 1000,
            retention_ms: r.seconds(env::AGGREGATE_RETENTION_DAYS, 0, 3650)? * 86_400_000,
            ..AggregateConfig::default()
        })
    }
}

#[derive(Clone, Debug)]
pub struct DetectConfig {
    pub common: CommonConfig,
    pub rules_cache_ttl_ms: i64,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            common: CommonConfig::default(),
            rules_cache_ttl_ms: 60_000,
        }
    }
}

impl DetectConfig {
    pub fn from_reader<F: Fn(&str) -> Option<String>>(r: &EnvReader<F>) -> Result<Self> {
        Ok(DetectConfig {
            common: CommonConfig::from_reader(r)?,
            rules_cache_ttl_ms: r.seconds(env::RULES_CACHE_TTL_SECONDS, 60, 86_400)? * 1000,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn reader(pairs: &[(&str, &str)]) -> EnvReader<impl Fn(&str) -> Option<String>> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        EnvReader::new(move |k: &str| map.get(k).cloned())
    }

    #[test]
    fn defaults_apply_when_unset() {
        let c = AggregateConfig::from_reader(&reader(&[])).expect("defaults");
        assert_eq!(c.delivery, Delivery::ExactlyOnce);
        assert_eq!(c.allowed_lateness_ms, 300_000);
        assert_eq!(c.windows.to_string(), "60,3600");
    }

    #[test]
    fn errors_name_the_variable_and_value() {
        let err = AggregateConfig::from_reader(&reader(&[("DELIVERY", "twice")])).expect_err("bad");
        let msg = err.to_string();
        assert!(msg.contains("DELIVERY") && msg.contains("twice"), "{msg}");
        assert!(!err.is_retryable());
        let err = AggregateConfig::from_reader(&reader(&[("WINDOWS", "90,60")])).expect_err("bad");
        assert!(err.to_string().contains("WINDOWS"));
        let err = IngestConfig::from_reader(&reader(&[("MAX_CLOCK_SKEW_SECONDS", "-5")]))
            .expect_err("bad");
        assert!(err.to_string().contains("MAX_CLOCK_SKEW_SECONDS"));
        let err = reader(&[])
            .required(env::OUTPUT_STREAM)
            .expect_err("missing");
        assert!(err.to_string().contains("OUTPUT_STREAM"));
    }

    #[test]
    fn lateness_must_cover_the_clock_skew() {
        assert!(check_lateness_covers_skew(300, 300).is_ok());
        assert!(check_lateness_covers_skew(0, 0).is_ok());
        assert!(check_lateness_covers_skew(60, 300).is_ok());
        let err = check_lateness_covers_skew(301, 300).expect_err("skew past lateness");
        let msg = err.to_string();
        assert!(
            msg.contains("MAX_CLOCK_SKEW_SECONDS=\"301\"")
                && msg.contains("ALLOWED_LATENESS_SECONDS=300"),
            "{msg}"
        );
        assert!(!err.is_retryable());
        assert!(
            check_lateness_covers_skew(
                DEFAULT_MAX_CLOCK_SKEW_SECONDS,
                DEFAULT_ALLOWED_LATENESS_SECONDS
            )
            .is_ok(),
            "the defaults keep the rule"
        );
    }

    #[test]
    fn ingest_refuses_a_skew_beyond_the_lateness_it_is_given() {
        let ok = IngestConfig::from_reader(&reader(&[
            ("MAX_CLOCK_SKEW_SECONDS", "120"),
            ("ALLOWED_LATENESS_SECONDS", "120"),
        ]))
        .expect("equal is fine");
        assert_eq!(ok.max_clock_skew_ms, 120_000);
        let err = IngestConfig::from_reader(&reader(&[
            ("MAX_CLOCK_SKEW_SECONDS", "300"),
            ("ALLOWED_LATENESS_SECONDS", "120"),
        ]))
        .expect_err("skew past lateness");
        assert!(
            err.to_string().contains("ALLOWED_LATENESS_SECONDS=120"),
            "{err}"
        );
        // The default skew against a given lateness.
        let err = IngestConfig::from_reader(&reader(&[("ALLOWED_LATENESS_SECONDS", "30")]))
            .expect_err("default skew 60 > 30");
        assert!(
            err.to_string().contains("MAX_CLOCK_SKEW_SECONDS=\"60\""),
            "{err}"
        );
        // A malformed lateness is named even though ingest only checks it.
        let err = IngestConfig::from_reader(&reader(&[("ALLOWED_LATENESS_SECONDS", "soon")]))
            .expect_err("not a number");
        assert!(
            err.to_string().contains("ALLOWED_LATENESS_SECONDS"),
            "{err}"
        );
        // Without the aggregate's value ingest cannot check (nor does it guess one).
        let alone = IngestConfig::from_reader(&reader(&[("MAX_CLOCK_SKEW_SECONDS", "600")]))
            .expect("no lateness given");
        assert_eq!(alone.max_clock_skew_ms, 600_000);
        let default = IngestConfig::from_reader(&reader(&[])).expect("defaults");
        assert_eq!(
            default.max_clock_skew_ms,
            DEFAULT_MAX_CLOCK_SKEW_SECONDS * 1000
        );
    }

    #[test]
    fn parses_explicit_values() {
        let c = AggregateConfig::from_reader(&reader(&[
            ("DELIVERY", "at-least-once"),
            ("WINDOWS", "60,3600,3600/600"),
            ("ALLOWED_LATENESS_SECONDS", "10"),
        ]))
        .expect("valid");
        assert_eq!(c.delivery, Delivery::AtLeastOnce);
        assert_eq!(c.windows.all().len(), 3);
        assert_eq!(c.allowed_lateness_ms, 10_000);
    }
}
