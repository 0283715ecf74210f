//! Per-container caches with a time-to-live, for reference data and rules. Entries
//! live as long as the Lambda container (or the local runner) does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::detect::rules::Rule;
use crate::error::Result;
use crate::ports::{Attrs, Clock, ReferenceLookup, RulesSource};

/// Caches lookups by key, including misses, so an unknown key costs one read per TTL.
pub struct CachedLookup<R, C> {
    inner: R,
    clock: C,
    ttl_ms: i64,
    max_entries: usize,
    entries: Mutex<HashMap<String, (i64, Option<Attrs>)>>,
}

impl<R: ReferenceLookup, C: Clock> CachedLookup<R, C> {
    pub fn new(inner: R, clock: C, ttl_ms: i64) -> Self {
        CachedLookup {
            inner,
            clock,
            ttl_ms,
            max_entries: 100_000,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn inner(&self) -> &R {
        &self.inner
    }

    /// Attributes per key (absent for unknown keys), fetching only expired or unseen keys.
    pub async fn get(&self, keys: &[String]) -> Result<HashMap<String, Attrs>> {
        let now = self.clock.now_ms();
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        {
            let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            for key in keys {
                match entries.get(key) {
                    Some((expires, attrs)) if *expires > now => {
                        if let Some(a) = attrs {
                            found.insert(key.clone(), a.clone());
                        }
                    }
                    _ => missing.push(key.clone()),
                }
            }
        }
        missing.sort();
        missing.dedup();
        if missing.is_empty() {
            return Ok(found);
        }
        let fetched = self.inner.lookup(&missing).await?;
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() + missing.len() > self.max_entries {
            entries.clear();
        }
        for key in missing {
            let attrs = fetched.get(&key).cloned();
            if let Some(a) = &attrs {
                found.insert(key.clone(), a.clone());
            }
            entries.insert(key, (now + self.ttl_ms, attrs));
        }
        Ok(found)
    }
}

/// Caches the rule set for a TTL.
pub struct CachedRules<R, C> {
    inner: R,
    clock: C,
    ttl_ms: i64,
    current: Mutex<Option<(i64, Arc<Vec<Rule>>)>>,
}

impl<R: RulesSource, C: Clock> CachedRules<R, C> {
    pub fn new(inner: R, clock: C, ttl_ms: i64) -> Self {
        CachedRules {
            inner,
            clock,
            ttl_ms,
            current: Mutex::new(None),
        }
    }

    pub async fn get(&self) -> Result<Arc<Vec<Rule>>> {
        let now = self.clock.now_ms();
        if let Some((expires, rules)) =
            &*self.current.lock().unwrap_or_else(PoisonError::into_inner)
        {
            if *expires > now {
                return Ok(rules.clone());
            }
        }
        let rules = self.inner.rules().await?;
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((now + self.ttl_ms, rules.clone()));
        Ok(rules)
    }
}
