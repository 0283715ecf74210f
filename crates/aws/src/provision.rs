//! Idempotent creation of a deployment's streams and tables
//! ([`sluice_core::resources::STREAMS`] and [`TABLES`]) for `sluice setup` and tests:
//! what exists is left as it is, what is missing is created, and every resource is
//! waited for until it is ACTIVE (it is not right after a create). Tables are
//! on-demand (`PAY_PER_REQUEST`) with string keys, and get TTL on their TTL attribute.
//! The alerts table gets its index by window ([`INDEXES`]); a table created before the
//! index existed gets it added (`UpdateTable`), and is ready once the index is ACTIVE.
//!
//! Only what waiting fixes is waited for (a resource in CREATING, throttling, a stream
//! limit); a missing credential or an unreachable endpoint ends provisioning at the
//! first call with [`Error::Misconfigured`].

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_kinesis::types::StreamStatus;
use sluice_core::resources::{ALERTS_TABLE, STREAMS, StreamDef, TABLES, TableDef, resource_name};

use crate::classify::{self, DYNAMODB};
use crate::dynamodb::alerts;
use crate::error::{Error, Result};

/// A global secondary index of a table (string keys, every attribute projected).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexDef {
    /// The table's logical id ([`TableDef::logical_id`]).
    pub table: &'static str,
    pub name: &'static str,
    pub partition_key: &'static str,
    pub sort_key: &'static str,
}

/// The indexes of a deployment's tables (`template.yaml` defines the same).
pub const INDEXES: [IndexDef; 1] = [IndexDef {
    table: ALERTS_TABLE.logical_id,
    name: alerts::BY_WINDOW_INDEX,
    partition_key: alerts::KIND,
    sort_key: alerts::WINDOW_START,
}];

fn indexes_of(def: &TableDef) -> impl Iterator<Item = &'static IndexDef> + '_ {
    INDEXES.iter().filter(move |i| i.table == def.logical_id)
}

/// What provisioning did with one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provisioned {
    /// `stream` or `table`.
    pub kind: &'static str,
    pub name: String,
    /// False when it already existed.
    pub created: bool,
}

/// Creates and deletes a deployment's resources.
#[derive(Clone, Debug)]
pub struct Provisioner {
    kinesis: aws_sdk_kinesis::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    timeout: Duration,
    poll: Duration,
}

impl Provisioner {
    pub fn new(kinesis: aws_sdk_kinesis::Client, dynamodb: aws_sdk_dynamodb::Client) -> Self {
        Provisioner {
            kinesis,
            dynamodb,
            timeout: Duration::from_secs(120),
            poll: Duration::from_millis(250),
        }
    }

    /// How long to wait for one resource to become ACTIVE (default 120 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Creates every stream (`shards(def)` shards each) and table of a deployment named
    /// `prefix`, and waits until all are ACTIVE.
    pub async fn provision(
        &self,
        prefix: &str,
        shards: impl Fn(&StreamDef) -> u32,
    ) -> Result<Vec<Provisioned>> {
        let mut done = Vec::new();
        // Ask for everything first, then wait: creation runs in parallel server-side.
        for def in STREAMS {
            let name = resource_name(prefix, def.suffix);
            let created = self.create_stream(&name, shards(&def)).await?;
            done.push(Provisioned {
                kind: "stream",
                name,
                created,
            });
        }
        for def in TABLES {
            let name = resource_name(prefix, def.suffix);
            let created = self.create_table(&name, &def).await?;
            done.push(Provisioned {
                kind: "table",
                name,
                created,
            });
        }
        for p in &done {
            if p.kind == "stream" {
                self.wait_stream(&p.name).await?;
            }
        }
        for def in TABLES {
            let name = resource_name(prefix, def.suffix);
            self.wait_table(&name).await?;
            self.ensure_indexes(&name, &def).await?;
            if let Some(ttl) = def.ttl_attribute {
                self.enable_ttl(&name, ttl).await?;
            }
        }
        for p in &done {
            tracing::info!(
                kind = p.kind,
                name = %p.name,
                created = p.created,
                "{}",
                if p.created { "created" } else { "already exists" }
            );
        }
        Ok(done)
    }

    /// One stream, created if missing, ACTIVE on return. True if it was created.
    pub async fn ensure_stream(&self, name: &str, shards: u32) -> Result<bool> {
        let created = self.create_stream(name, shards).await?;
        self.wait_stream(name).await?;
        Ok(created)
    }

    /// One table, created if missing, ACTIVE (and TTL on) on return. True if created.
    pub async fn ensure_table(&self, name: &str, def: &TableDef) -> Result<bool> {
        let created = self.create_table(name, def).await?;
        self.wait_table(name).await?;
        self.ensure_indexes(name, def).await?;
        if let Some(ttl) = def.ttl_attribute {
            self.enable_ttl(name, ttl).await?;
        }
        Ok(created)
    }

    async fn create_stream(&self, name: &str, shards: u32) -> Result<bool> {
        // Kinesis limits how many streams may be CREATING at once (LimitExceeded): wait
        // and try again until the provisioning timeout.
        let started = Instant::now();
        let retry = crate::backoff::RetryPolicy::default();
        let mut attempt = 0;
        loop {
            let result = self
                .kinesis
                .create_stream()
                .stream_name(name)
                .shard_count(shards.max(1) as i32)
                .send()
                .await;
            match result {
                Ok(_) => return Ok(true),
                Err(e) if classify::code_of(&e) == Some("ResourceInUseException") => {
                    return Ok(false);
                }
                Err(e) => {
                    // A stream limit or throttling passes; a missing credential or an
                    // endpoint that refuses connections does not (Error::Misconfigured).
                    let error = Error::from(classify::kinesis("CreateStream", name, e));
                    if !error.is_retryable() || started.elapsed() >= self.timeout {
                        return Err(error);
                    }
                    attempt += 1;
                    retry.sleep(attempt.min(6)).await;
                }
            }
        }
    }

    async fn wait_stream(&self, name: &str) -> Result<()> {
        let started = Instant::now();
        loop {
            let out = self
                .kinesis
                .describe_stream_summary()
                .stream_name(name)
                .send()
                .await;
            let status = match out {
                Ok(o) => o
                    .stream_description_summary()
                    .map(|s| s.stream_status().clone()),
                // Just created: some servers do not know it yet.
                Err(e) if classify::code_of(&e) == Some("ResourceNotFoundException") => None,
                Err(e) => return Err(classify::kinesis("DescribeStreamSummary", name, e).into()),
            };
            if status == Some(StreamStatus::Active) {
                return Ok(());
            }
            if started.elapsed() >= self.timeout {
                return Err(Error::NotReady {
                    kind: "stream",
                    name: name.to_owned(),
                    wanted: "ACTIVE",
                    waited: started.elapsed(),
                    last: status.map_or("unknown".into(), |s| s.as_str().to_owned()),
                });
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    async fn create_table(&self, name: &str, def: &TableDef) -> Result<bool> {
        let build = |e| classify::build_error(DYNAMODB, "CreateTable", name, e);
        let mut request = self
            .dynamodb
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(def.partition_key)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(build)?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(def.partition_key)
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(build)?,
            );
        if let Some(sort) = def.sort_key {
            request = request
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(sort)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .map_err(build)?,
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(sort)
                        .key_type(KeyType::Range)
                        .build()
                        .map_err(build)?,
                );
        }
        for index in indexes_of(def) {
            let (attributes, keys) = index_keys(name, index)?;
            let gsi = GlobalSecondaryIndex::builder()
                .index_name(index.name)
                .set_key_schema(Some(keys))
                .projection(all_attributes())
                .build()
                .map_err(build)?;
            for attribute in attributes {
                // An attribute is defined once, however many keys use it.
                let defined = request
                    .get_attribute_definitions()
                    .iter()
                    .flatten()
                    .any(|a| a.attribute_name() == attribute.attribute_name());
                if !defined {
                    request = request.attribute_definitions(attribute);
                }
            }
            request = request.global_secondary_indexes(gsi);
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e) if classify::code_of(&e) == Some("ResourceInUseException") => Ok(false),
            Err(e) => Err(classify::dynamodb("CreateTable", name, e).into()),
        }
    }

    /// Adds the indexes `def` should have and `name` lacks (a table created before
    /// they existed), and waits until every one is ACTIVE.
    async fn ensure_indexes(&self, name: &str, def: &TableDef) -> Result<()> {
        for index in indexes_of(def) {
            if self.index_status(name, index.name).await?.is_none() {
                let (attributes, keys) = index_keys(name, index)?;
                let create = CreateGlobalSecondaryIndexAction::builder()
                    .index_name(index.name)
                    .set_key_schema(Some(keys))
                    .projection(all_attributes())
                    .build()
                    .map_err(|e| classify::build_error(DYNAMODB, "UpdateTable", name, e))?;
                let result = self
                    .dynamodb
                    .update_table()
                    .table_name(name)
                    .set_attribute_definitions(Some(attributes))
                    .global_secondary_index_updates(
                        GlobalSecondaryIndexUpdate::builder().create(create).build(),
                    )
                    .send()
                    .await;
                match result {
                    Ok(_) => tracing::info!(table = name, index = index.name, "index added"),
                    // Someone else is adding it right now.
                    Err(e) if classify::code_of(&e) == Some("ResourceInUseException") => {}
                    Err(e) => return Err(classify::dynamodb("UpdateTable", name, e).into()),
                }
            }
            self.wait_index(name, index.name).await?;
        }
        Ok(())
    }

    /// The status of index `index` of table `name`; `None` when it has no such index.
    async fn index_status(&self, name: &str, index: &str) -> Result<Option<String>> {
        let out = self
            .dynamodb
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| classify::dynamodb("DescribeTable", name, e))?;
        Ok(out
            .table()
            .map(|t| t.global_secondary_indexes())
            .into_iter()
            .flatten()
            .find(|i| i.index_name() == Some(index))
            // A server that reports no status (moto does not always) has it ready.
            .map(|i| {
                i.index_status()
                    .map_or(IndexStatus::Active.as_str().to_owned(), |s| {
                        s.as_str().to_owned()
                    })
            }))
    }

    async fn wait_index(&self, name: &str, index: &str) -> Result<()> {
        let started = Instant::now();
        loop {
            let status = self.index_status(name, index).await?;
            if status.as_deref() == Some(IndexStatus::Active.as_str()) {
                return Ok(());
            }
            if started.elapsed() >= self.timeout {
                return Err(Error::NotReady {
                    kind: "index",
                    name: format!("{name}/{index}"),
                    wanted: "ACTIVE",
                    waited: started.elapsed(),
                    last: status.unwrap_or_else(|| "missing".into()),
                });
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    async fn wait_table(&self, name: &str) -> Result<()> {
        let started = Instant::now();
        loop {
            let out = self.dynamodb.describe_table().table_name(name).send().await;
            let status = match out {
                Ok(o) => o.table().and_then(|t| t.table_status().cloned()),
                Err(e) if classify::code_of(&e) == Some("ResourceNotFoundException") => None,
                Err(e) => return Err(classify::dynamodb("DescribeTable", name, e).into()),
            };
            if status == Some(TableStatus::Active) {
                return Ok(());
            }
            if started.elapsed() >= self.timeout {
                return Err(Error::NotReady {
                    kind: "table",
                    name: name.to_owned(),
                    wanted: "ACTIVE",
                    waited: started.elapsed(),
                    last: status.map_or("unknown".into(), |s| s.as_str().to_owned()),
                });
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    async fn enable_ttl(&self, table: &str, attribute: &str) -> Result<()> {
        let current = self
            .dynamodb
            .describe_time_to_live()
            .table_name(table)
            .send()
            .await
            .map_err(|e| classify::dynamodb("DescribeTimeToLive", table, e))?;
        if let Some(d) = current.time_to_live_description() {
            let on = matches!(
                d.time_to_live_status(),
                Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            );
            if on && d.attribute_name() == Some(attribute) {
                return Ok(());
            }
        }
        let spec = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(attribute)
            .build()
            .map_err(|e| classify::build_error(DYNAMODB, "UpdateTimeToLive", table, e))?;
        let result = self
            .dynamodb
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(spec)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if classify::code_of(&e) == Some("ValidationException")
                    && e.as_service_error()
                        .and_then(|s| aws_sdk_dynamodb::error::ProvideErrorMetadata::message(s))
                        .is_some_and(|m| m.to_ascii_lowercase().contains("already enabled")) =>
            {
                Ok(())
            }
            Err(e) => Err(classify::dynamodb("UpdateTimeToLive", table, e).into()),
        }
    }

    /// Deletes every stream and table of deployment `prefix` that exists (missing ones
    /// are fine). Does not wait for the deletions to finish.
    pub async fn delete_all(&self, prefix: &str) -> Result<()> {
        for def in STREAMS {
            self.delete_stream(&resource_name(prefix, def.suffix))
                .await?;
        }
        for def in TABLES {
            self.delete_table(&resource_name(prefix, def.suffix))
                .await?;
        }
        Ok(())
    }

    /// Deletes one stream (with its consumers), if it exists and is not being deleted
    /// already. A stream still being created or updated is waited for first.
    pub async fn delete_stream(&self, name: &str) -> Result<()> {
        let started = Instant::now();
        loop {
            let result = self
                .kinesis
                .delete_stream()
                .stream_name(name)
                .enforce_consumer_deletion(true)
                .send()
                .await;
            let e = match result {
                Ok(_) => {
                    tracing::info!(kind = "stream", name, "deleted");
                    return Ok(());
                }
                Err(e) => e,
            };
            match classify::code_of(&e) {
                Some("ResourceNotFoundException") => return Ok(()),
                Some("ResourceInUseException") => {}
                _ => return Err(classify::kinesis("DeleteStream", name, e).into()),
            }
            // Not ACTIVE: already deleting (done), or creating/updating (wait).
            let status = self
                .kinesis
                .describe_stream_summary()
                .stream_name(name)
                .send()
                .await
                .ok()
                .and_then(|o| {
                    o.stream_description_summary()
                        .map(|s| s.stream_status().clone())
                });
            match status {
                None | Some(StreamStatus::Deleting) => return Ok(()),
                Some(s) if started.elapsed() >= self.timeout => {
                    return Err(Error::NotReady {
                        kind: "stream",
                        name: name.to_owned(),
                        wanted: "deletable",
                        waited: started.elapsed(),
                        last: s.as_str().to_owned(),
                    });
                }
                Some(_) => tokio::time::sleep(self.poll).await,
            }
        }
    }

    /// Deletes one table, if it exists.
    pub async fn delete_table(&self, name: &str) -> Result<()> {
        match self.dynamodb.delete_table().table_name(name).send().await {
            Ok(_) => {
                tracing::info!(kind = "table", name, "deleted");
                Ok(())
            }
            Err(e) if classify::code_of(&e) == Some("ResourceNotFoundException") => Ok(()),
            Err(e) => Err(classify::dynamodb("DeleteTable", name, e).into()),
        }
    }
}

/// The template's default shard count of a stream.
pub fn default_shards(def: &StreamDef) -> u32 {
    def.default_shards
}

/// The attribute definitions and key schema of an index (string keys).
fn index_keys(
    table: &str,
    index: &IndexDef,
) -> Result<(Vec<AttributeDefinition>, Vec<KeySchemaElement>)> {
    let build = |e| classify::build_error(DYNAMODB, "CreateTable", table, e);
    let mut attributes = Vec::new();
    let mut keys = Vec::new();
    for (attribute, kind) in [
        (index.partition_key, KeyType::Hash),
        (index.sort_key, KeyType::Range),
    ] {
        attributes.push(
            AttributeDefinition::builder()
                .attribute_name(attribute)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build)?,
        );
        keys.push(
            KeySchemaElement::builder()
                .attribute_name(attribute)
                .key_type(kind)
                .build()
                .map_err(build)?,
        );
    }
    Ok((attributes, keys))
}

fn all_attributes() -> Projection {
    Projection::builder()
        .projection_type(ProjectionType::All)
        .build()
}
