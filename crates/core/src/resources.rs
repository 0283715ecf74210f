//! The streams and tables a deployment has, in one table of constants. `template.yaml`
//! defines the same resources; a test (in `sluice-local`) checks that both agree, and
//! `sluice setup` creates exactly these.

/// Default name prefix (the template's `NamePrefix` parameter default).
pub const DEFAULT_PREFIX: &str = "sluice";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamDef {
    /// Logical id in `template.yaml`.
    pub logical_id: &'static str,
    /// Name suffix: the stream is named `{prefix}-{suffix}`.
    pub suffix: &'static str,
    /// Template parameter holding the shard count.
    pub shards_parameter: &'static str,
    pub default_shards: u32,
}

pub const RAW: StreamDef = StreamDef {
    logical_id: "RawStream",
    suffix: "raw",
    shards_parameter: "RawShards",
    default_shards: 2,
};
pub const VALID: StreamDef = StreamDef {
    logical_id: "ValidStream",
    suffix: "valid",
    shards_parameter: "ValidShards",
    default_shards: 2,
};
pub const ENRICHED: StreamDef = StreamDef {
    logical_id: "EnrichedStream",
    suffix: "enriched",
    shards_parameter: "EnrichedShards",
    default_shards: 2,
};
pub const WINDOW_UPDATES: StreamDef = StreamDef {
    logical_id: "WindowUpdatesStream",
    suffix: "window-updates",
    shards_parameter: "WindowUpdatesShards",
    default_shards: 1,
};
pub const ALERTS: StreamDef = StreamDef {
    logical_id: "AlertsStream",
    suffix: "alerts",
    shards_parameter: "AlertsShards",
    default_shards: 1,
};
pub const DEAD_LETTER: StreamDef = StreamDef {
    logical_id: "DeadLetterStream",
    suffix: "dead-letter",
    shards_parameter: "DeadLetterShards",
    default_shards: 1,
};

pub const STREAMS: [StreamDef; 6] = [RAW, VALID, ENRICHED, WINDOW_UPDATES, ALERTS, DEAD_LETTER];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableDef {
    pub logical_id: &'static str,
    /// Name suffix: the table is named `{prefix}-{suffix}`.
    pub suffix: &'static str,
    /// Partition key attribute (type S).
    pub partition_key: &'static str,
    /// Sort key attribute (type S), if any.
    pub sort_key: Option<&'static str>,
    /// TTL attribute (epoch seconds), if items expire.
    pub ttl_attribute: Option<&'static str>,
}

pub const AGGREGATES_TABLE: TableDef = TableDef {
    logical_id: "AggregatesTable",
    suffix: "aggregates",
    partition_key: "pk",
    sort_key: Some("sk"),
    ttl_attribute: Some("expires_at"),
};
pub const REFERENCE_TABLE: TableDef = TableDef {
    logical_id: "ReferenceTable",
    suffix: "reference",
    partition_key: "key",
    sort_key: None,
    ttl_attribute: None,
};
pub const RULES_TABLE: TableDef = TableDef {
    logical_id: "RulesTable",
    suffix: "rules",
    partition_key: "id",
    sort_key: None,
    ttl_attribute: None,
};
pub const ALERTS_TABLE: TableDef = TableDef {
    logical_id: "AlertsTable",
    suffix: "alerts",
    partition_key: "alert_id",
    sort_key: None,
    ttl_attribute: Some("expires_at"),
};

pub const TABLES: [TableDef; 4] = [AGGREGATES_TABLE, REFERENCE_TABLE, RULES_TABLE, ALERTS_TABLE];

pub fn resource_name(prefix: &str, suffix: &str) -> String {
    format!("{prefix}-{suffix}")
}

/// Resolved names of one deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub prefix: String,
}

impl Names {
    pub fn new(prefix: &str) -> Self {
        Names {
            prefix: prefix.to_owned(),
        }
    }

    pub fn stream(&self, def: StreamDef) -> String {
        resource_name(&self.prefix, def.suffix)
    }

    pub fn table(&self, def: TableDef) -> String {
        resource_name(&self.prefix, def.suffix)
    }
}
