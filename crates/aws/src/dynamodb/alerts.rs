//! Alerts: [`DynamoAlerts`] implements [`AlertStore`] over a table keyed by `alert_id`
//! (S). An alert is stored flat with the field names of its JSON form (`alert_id`,
//! `rule_id`, `severity`, `key`, `type`, `window_seconds`, `window_start`, `stat`, `op`,
//! `threshold`, `value`, `count`, `kind`), plus `notified` BOOL and `expires_at` N (TTL,
//! epoch seconds, 30 days after it was raised by default).
//!
//! ## Index
//! The global secondary index [`BY_WINDOW_INDEX`] (partition `kind`, which is always
//! `"alert"`; sort `window_start`; every attribute projected) lists alerts newest window
//! first for the query API ([`super::query::DynamoAlertReader`]). Why an index and not
//! a `Scan` with filters: a scan returns alerts in hash order, so "the 50 most recent
//! alerts" (what a dashboard asks every few seconds) would read the whole retention
//! period on every request, and `since` would filter after reading instead of bounding
//! the read; the index answers both by reading only the page returned. Its keys are
//! attributes every alert already has, so DynamoDB backfills the index of an existing
//! table and no alert needs rewriting. The cost: each alert is written twice (table and
//! index, an item of a few hundred bytes), and all alerts share one index partition,
//! which takes about 1,000 writes per second: far above any alert rate worth paging
//! anyone for (a storm beyond it throttles `raise`, which the detect stage retries).
//!
//! `raise` writes with `attribute_not_exists(alert_id)`, so a re-delivered update raises
//! nothing new: the existing item's `notified` flag tells [`AlertStatus::Pending`] (stored,
//! maybe not announced) from [`AlertStatus::Notified`].

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use sluice_core::Result;
use sluice_core::detect::rules::Alert;
use sluice_core::ports::{AlertStatus, AlertStore, Clock, SystemClock};

use super::codec;
use crate::classify::{self, DYNAMODB, Verdict};

pub const ALERT_ID: &str = "alert_id";
pub const NOTIFIED: &str = "notified";
pub const EXPIRES_AT: &str = "expires_at";
/// The index of alerts by window, newest first (see the module documentation).
pub const BY_WINDOW_INDEX: &str = "by-window";
/// The index's partition key: the alert's `kind`, always [`KIND_ALERT`].
pub const KIND: &str = "kind";
pub const KIND_ALERT: &str = "alert";
/// The index's sort key: the alert's window start, RFC 3339 (UTC, whole seconds, so it
/// sorts like the instant).
pub const WINDOW_START: &str = "window_start";
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 86_400);

#[derive(Clone, Debug)]
pub struct DynamoAlerts<C = SystemClock> {
    client: Client,
    table: String,
    retention: Duration,
    clock: C,
}

impl DynamoAlerts<SystemClock> {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoAlerts {
            client,
            table: table.into(),
            retention: DEFAULT_RETENTION,
            clock: SystemClock,
        }
    }
}

impl<C: Clock> DynamoAlerts<C> {
    /// The same store with another clock (for `expires_at`).
    pub fn with_clock<D: Clock>(self, clock: D) -> DynamoAlerts<D> {
        DynamoAlerts {
            client: self.client,
            table: self.table,
            retention: self.retention,
            clock,
        }
    }

    /// How long alerts are kept (TTL); 30 days by default.
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn key(alert_id: &str) -> std::collections::HashMap<String, AttributeValue> {
        std::collections::HashMap::from([(ALERT_ID.to_owned(), codec::s(alert_id))])
    }

    /// Up to `limit` alerts, latest window first (a `Scan`: the table only holds the
    /// retention period's alerts). Malformed items are logged and skipped.
    pub async fn list(&self, limit: usize) -> Result<Vec<Alert>> {
        let (items, _) = super::scan(&self.client, &self.table, None).await?;
        let mut alerts: Vec<Alert> = items
            .iter()
            .filter_map(|item| {
                serde_json::from_value::<Alert>(codec::attrs_to_json(item))
                    .map_err(|e| {
                        tracing::warn!(
                            table = %self.table,
                            alert_id = item.get(ALERT_ID).and_then(codec::str_of).unwrap_or("?"),
                            error = %e,
                            "skipping a malformed alert"
                        )
                    })
                    .ok()
            })
            .collect();
        alerts.sort_by(|a, b| {
            b.window_start
                .cmp(&a.window_start)
                .then_with(|| a.alert_id.cmp(&b.alert_id))
        });
        alerts.truncate(limit);
        Ok(alerts)
    }
}

impl<C: Clock> AlertStore for DynamoAlerts<C> {
    async fn raise(&self, alert: &Alert) -> Result<AlertStatus> {
        let json = serde_json::to_value(alert).map_err(|e| {
            classify::to_error(
                DYNAMODB,
                "PutItem",
                &self.table,
                Verdict::Fatal,
                &format!("alert {:?} cannot be encoded: {e}", alert.alert_id),
                None,
            )
        })?;
        let mut item = codec::json_to_attrs(&json);
        // The index's partition: every alert is listed, whatever `kind` it was built with.
        item.insert(KIND.into(), codec::s(KIND_ALERT));
        item.insert(NOTIFIED.into(), AttributeValue::Bool(false));
        let expires_at = self.clock.now_ms() / 1000 + self.retention.as_secs() as i64;
        item.insert(EXPIRES_AT.into(), codec::int_value(expires_at));
        super::check_item_size("PutItem", &item)?;
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(alert_id)");
        match super::put_item(&self.table, request, false).await? {
            Some(_) => Ok(AlertStatus::New),
            None => {
                let out = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .set_key(Some(Self::key(&alert.alert_id)))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| classify::dynamodb("GetItem", &self.table, e))?;
                let notified = out
                    .item()
                    .and_then(|i| i.get(NOTIFIED))
                    .is_some_and(|v| matches!(v, AttributeValue::Bool(true)));
                Ok(if notified {
                    AlertStatus::Notified
                } else {
                    AlertStatus::Pending
                })
            }
        }
    }

    async fn mark_notified(&self, alert_id: &str) -> Result<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(alert_id)))
            .update_expression("SET notified = :t")
            .condition_expression("attribute_exists(alert_id)")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Gone (expired) or never stored: nothing to mark, and no stub is created.
            Err(e) if classify::code_of(&e) == Some("ConditionalCheckFailedException") => {
                tracing::debug!(table = %self.table, alert_id, "mark_notified: no such alert");
                Ok(())
            }
            Err(e) => Err(classify::dynamodb("UpdateItem", &self.table, e)),
        }
    }
}
