//! Detection rules: [`DynamoRules`] implements [`RulesSource`] over a table keyed by
//! `id` (S). A rule is stored flat, with the field names of its JSON form:
//! `id` S, `kind` S, `type` S, `key_prefix` S, `window_seconds` N, `stat` S,
//! `op` S (`>` `>=` `<` `<=`), `threshold` N, `min_count` N, `severity` S.
//! A malformed rule item is logged (`WARN`) and skipped, so one bad row does not stop
//! detection.

use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use sluice_core::Result;
use sluice_core::ports::RulesSource;
use sluice_core::rules::Rule;

use super::codec;
use crate::classify::{self, DYNAMODB, Verdict};

#[derive(Clone, Debug)]
pub struct DynamoRules {
    client: Client,
    table: String,
}

impl DynamoRules {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoRules {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Stores (replaces) one rule.
    pub async fn put(&self, rule: &Rule) -> Result<()> {
        let json = serde_json::to_value(rule).map_err(|e| {
            classify::to_error(
                DYNAMODB,
                "PutItem",
                &self.table,
                Verdict::Fatal,
                &format!("rule {:?} cannot be encoded: {e}", rule.id),
                None,
            )
        })?;
        let item = codec::json_to_attrs(&json);
        super::check_item_size("PutItem", &item)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| classify::dynamodb("PutItem", &self.table, e))?;
        Ok(())
    }
}

impl RulesSource for DynamoRules {
    async fn rules(&self) -> Result<Arc<Vec<Rule>>> {
        let (items, _) = super::scan(&self.client, &self.table, None).await?;
        let mut rules = Vec::with_capacity(items.len());
        for item in &items {
            match serde_json::from_value::<Rule>(codec::attrs_to_json(item)) {
                Ok(rule) => rules.push(rule),
                Err(e) => tracing::warn!(
                    table = %self.table,
                    id = item.get("id").and_then(codec::str_of).unwrap_or("?"),
                    error = %e,
                    "skipping a malformed rule"
                ),
            }
        }
        rules.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Arc::new(rules))
    }
}
