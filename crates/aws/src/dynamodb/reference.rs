//! Reference data: [`DynamoReference`] implements [`ReferenceLookup`] over a table
//! keyed by `key` (S). Every other attribute that is S, N or BOOL becomes a dimension
//! (numbers as stored, booleans as `true`/`false`); other types are ignored.

use std::collections::{BTreeSet, HashMap};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use sluice_core::Result;
use sluice_core::ports::{Attrs, ReferenceLookup};

use super::batch_get;
use super::codec::{self, Attrs as Item};
use crate::backoff::RetryPolicy;

/// The partition key attribute of the reference table.
pub const KEY: &str = "key";

#[derive(Clone, Debug)]
pub struct DynamoReference {
    client: Client,
    table: String,
    retry: RetryPolicy,
}

impl DynamoReference {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoReference {
            client,
            table: table.into(),
            retry: RetryPolicy::default(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Stores (replaces) the dimensions of one entity, all as S. A dimension named
    /// `key` is left out (it is the table's key).
    pub async fn put(&self, key: &str, attrs: &Attrs) -> Result<()> {
        let mut item: Item = attrs
            .iter()
            .filter(|(name, _)| name.as_str() != KEY)
            .map(|(name, value)| (name.clone(), codec::s(value)))
            .collect();
        item.insert(KEY.to_owned(), codec::s(key));
        super::put(&self.client, &self.table, item).await
    }
}

impl ReferenceLookup for DynamoReference {
    async fn lookup(&self, keys: &[String]) -> Result<HashMap<String, Attrs>> {
        let unique: BTreeSet<&String> = keys.iter().collect();
        if unique.is_empty() {
            return Ok(HashMap::new());
        }
        let raw_keys = unique
            .into_iter()
            .map(|k| HashMap::from([(KEY.to_owned(), AttributeValue::S(k.clone()))]))
            .collect();
        let got = batch_get(&self.client, &self.table, raw_keys, false, &self.retry).await?;
        let mut out = HashMap::new();
        for item in got.items {
            let Some(key) = item.get(KEY).and_then(codec::str_of).map(str::to_owned) else {
                continue;
            };
            let attrs: Attrs = item
                .iter()
                .filter(|(name, _)| name.as_str() != KEY)
                .filter_map(|(name, v)| codec::scalar_text(v).map(|t| (name.clone(), t)))
                .collect();
            out.insert(key, attrs);
        }
        Ok(out)
    }
}
