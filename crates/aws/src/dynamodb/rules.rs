//! Detection rules: [`DynamoRules`] implements [`RulesSource`] over a table keyed by
//! `id` (S). A rule is stored flat, with the field names of its JSON form (absent
//! optional fields are absent attributes): `id` S, `kind` S (`threshold` `rate`
//! `zscore`), `type` S, `key_prefix` S, `window_seconds` N, `stat` S, `op` S
//! (`>` `>=` `<` `<=`), `threshold` N, `min_count` N, `severity` S, `description` S,
//! `enabled` BOOL, `history` N, `min_history` N.
//!
//! [`DynamoRules::put`] validates the rule again before writing (a `Rule` built by hand
//! may break what [`Rule::from_json`] checks), so an invalid rule never reaches the
//! table through this adapter. A malformed item written some other way is logged
//! (`WARN`) and skipped by [`RulesSource::rules`], so one bad row does not stop
//! detection; [`DynamoRules::list`] reports it to the caller instead.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use sluice_core::Result;
use sluice_core::detect::rules::Rule;
use sluice_core::ports::RulesSource;

use super::codec;
use crate::classify::{self, DYNAMODB, Verdict};

/// What [`DynamoRules::list`] found: the valid rules (by id) and the items that are not
/// valid rules, each as (id, why).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleListing {
    pub rules: Vec<Rule>,
    pub malformed: Vec<(String, String)>,
}

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

    fn key(id: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([("id".to_owned(), codec::s(id))])
    }

    /// Validates, then stores (replaces) one rule. An invalid rule is
    /// [`sluice_core::Error::InvalidRule`] and nothing is written.
    pub async fn put(&self, rule: &Rule) -> Result<()> {
        rule.validate()?;
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
        // What is stored must read back as this very rule (the same checks as a rule
        // file line), or it would be skipped by detect later.
        Rule::from_json(&json, "")?;
        let item = codec::json_to_attrs(&json);
        super::put(&self.client, &self.table, item).await
    }

    /// Every item of the table, sorted by id, split into valid rules and the rest.
    pub async fn list(&self) -> Result<RuleListing> {
        let (items, _) = super::scan(&self.client, &self.table, None).await?;
        let mut listing = RuleListing::default();
        for item in &items {
            let json = codec::attrs_to_json(item);
            match Rule::from_json(&json, "") {
                Ok(rule) => listing.rules.push(rule),
                Err(e) => listing.malformed.push((
                    item.get("id")
                        .and_then(codec::str_of)
                        .unwrap_or("?")
                        .to_owned(),
                    e.to_string(),
                )),
            }
        }
        listing.rules.sort_by(|a, b| a.id.cmp(&b.id));
        listing.malformed.sort();
        Ok(listing)
    }

    /// Deletes the rule `id`; `Ok(false)` when there was no such rule (nothing
    /// changed).
    pub async fn delete(&self, id: &str) -> Result<bool> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(id)))
            .condition_expression("attribute_exists(id)")
            .return_values(ReturnValue::None)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(DeleteItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(classify::dynamodb("DeleteItem", &self.table, e)),
        }
    }
}

impl RulesSource for DynamoRules {
    async fn rules(&self) -> Result<Arc<Vec<Rule>>> {
        let listing = self.list().await?;
        for (id, error) in &listing.malformed {
            tracing::warn!(table = %self.table, id = %id, error = %error, "skipping a malformed rule");
        }
        Ok(Arc::new(listing.rules))
    }
}
