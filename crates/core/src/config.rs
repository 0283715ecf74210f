//! Stage configuration: the environment variable names (set by `template.yaml`), their
//! defaults, and validation. Parsing takes a lookup function so it is testable; the
//! Lambda binaries pass `std::env::var`. Every error names the variable.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::window::WindowSet;

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
}

/// How duplicates are handled by the aggregate stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Delivery {
    /// Fingerprints of event ids in the anchor item: collapses redeliveries, producer
    /// duplicates and upstream re-emits.
    #[default]
    ExactlyOnce,
    /// Per-shard high-water marks of sequence numbers: collapses the stage's own retries
    /// only. Cheaper for very hot keys.
    AtLeastOnce,
}

impl FromStr for Delivery {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "exactly-once" => Ok(Delivery::ExactlyOnce),
            "at-least-once" => Ok(Delivery::AtLeastOnce),
            other => Err(format!(
                "{other:?} is neither exactly-once nor at-least-once"
            )),
        }
    }
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Delivery::ExactlyOnce => "exactly-once",
            Delivery::AtLeastOnce => "at-least-once",
        })
    }
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
            max_clock_skew_ms: 300_000,
        }
    }
}

impl IngestConfig {
    pub fn from_reader<F: Fn(&str) -> Option<String>>(r: &EnvReader<F>) -> Result<Self> {
        Ok(IngestConfig {
            common: CommonConfig::from_reader(r)?,
            max_clock_skew_ms: r.seconds(env::MAX_CLOCK_SKEW_SECONDS, 300, 86_400 * 365)? * 1000,
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
            allowed_lateness_ms: 300_000,
            retention_ms: 0,
            head_fingerprint_cap: 4096,
            max_commit_attempts: 5,
        }
    }
}

impl AggregateConfig {
    pub fn from_reader<F: Fn(&str) -> Option<String>>(r: &EnvReader<F>) -> Result<Self> {
        Ok(AggregateConfig {
            common: CommonConfig::from_reader(r)?,
            windows: r.parsed(env::WINDOWS, WindowSet::default())?,
            delivery: r.parsed(env::DELIVERY, Delivery::ExactlyOnce)?,
            allowed_lateness_ms: r.seconds(env::ALLOWED_LATENESS_SECONDS, 300, 86_400 * 31)? * 1000,
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
