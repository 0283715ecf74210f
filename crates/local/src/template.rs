//! Reads `template.yaml`: parameters, the stream and table resources, and each stage
//! function's Kinesis event source settings and environment. The local runner uses
//! this so that `sluice demo` and `sluice run` behave as the deployed stack would.

use std::collections::BTreeMap;

use serde_yaml::{Mapping, Value};

/// The repository's template, compiled in so the CLI works from any directory.
pub const BUNDLED_TEMPLATE: &str = include_str!("../../../template.yaml");

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template is not valid YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("template: {0}")]
    Shape(String),
}

fn shape(msg: impl Into<String>) -> TemplateError {
    TemplateError::Shape(msg.into())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartingPosition {
    TrimHorizon,
    Latest,
}

/// The Kinesis event source mapping properties Lambda honours.
#[derive(Clone, Debug, PartialEq)]
pub struct EsmSettings {
    pub starting_position: StartingPosition,
    pub batch_size: usize,
    pub max_batching_window_ms: i64,
    pub parallelization_factor: usize,
    pub report_batch_item_failures: bool,
    pub bisect_on_error: bool,
    /// -1: retry until the records expire.
    pub max_retry_attempts: i64,
    /// -1: no limit.
    pub max_record_age_s: i64,
    pub on_failure: Option<String>,
}

impl Default for EsmSettings {
    /// Lambda's own defaults for a Kinesis trigger.
    fn default() -> Self {
        EsmSettings {
            starting_position: StartingPosition::TrimHorizon,
            batch_size: 100,
            max_batching_window_ms: 0,
            parallelization_factor: 1,
            report_batch_item_failures: false,
            bisect_on_error: false,
            max_retry_attempts: -1,
            max_record_age_s: -1,
            on_failure: None,
        }
    }
}

/// One stage function as the template declares it.
#[derive(Clone, Debug)]
pub struct FunctionSpec {
    pub logical_id: String,
    /// The cargo binary (`Metadata.BuildProperties.Binary`): ingest, enrich, …
    pub binary: String,
    /// Logical id of the stream that triggers it.
    pub input_stream: String,
    pub esm: EsmSettings,
    pub env: BTreeMap<String, String>,
    pub timeout_s: i64,
    pub memory_mb: i64,
}

#[derive(Clone, Debug)]
pub struct StreamSpec {
    pub logical_id: String,
    pub name: String,
    pub shards: usize,
}

#[derive(Clone, Debug)]
pub struct TableSpec {
    pub logical_id: String,
    pub name: String,
    pub partition_key: String,
    pub sort_key: Option<String>,
    pub ttl_attribute: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Template {
    root: Mapping,
    parameters: BTreeMap<String, String>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let root: Value = serde_yaml::from_str(text)?;
        let root = root
            .as_mapping()
            .cloned()
            .ok_or_else(|| shape("top level is not a mapping"))?;
        let mut parameters = BTreeMap::new();
        if let Some(params) = root.get("Parameters").and_then(Value::as_mapping) {
            for (name, def) in params {
                let (Some(name), Some(default)) = (name.as_str(), def.get("Default")) else {
                    continue;
                };
                parameters.insert(name.to_owned(), scalar(default).unwrap_or_default());
            }
        }
        Ok(Template { root, parameters })
    }

    pub fn bundled() -> Self {
        // The bundled template is tested to parse; fall back to an empty one if not.
        Self::parse(BUNDLED_TEMPLATE).unwrap_or_else(|_| Template {
            root: Mapping::new(),
            parameters: BTreeMap::new(),
        })
    }

    /// Overrides a parameter, as `sam deploy --parameter-overrides` would.
    pub fn set_parameter(&mut self, name: &str, value: impl Into<String>) {
        self.parameters.insert(name.to_owned(), value.into());
    }

    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).map(String::as_str)
    }

    fn resources(&self) -> impl Iterator<Item = (&str, &Mapping)> {
        self.root
            .get("Resources")
            .and_then(Value::as_mapping)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter_map(|(k, v)| Some((k.as_str()?, v.as_mapping()?)))
    }

    fn resource(&self, logical_id: &str) -> Option<&Mapping> {
        self.resources()
            .find(|(id, _)| *id == logical_id)
            .map(|(_, r)| r)
    }

    fn resources_of_type<'a>(
        &'a self,
        ty: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Mapping)> + 'a {
        self.resources()
            .filter(move |(_, r)| r.get("Type").and_then(Value::as_str) == Some(ty))
    }

    /// Resolves `!Ref`, `!Sub` and `!GetAtt X.Arn` against parameters and resources.
    pub fn resolve(&self, v: &Value) -> Option<String> {
        match v {
            Value::Tagged(t) => {
                let arg = t.value.as_str();
                match t.tag.to_string().as_str() {
                    "!Ref" => {
                        let name = arg?;
                        if let Some(p) = self.parameters.get(name) {
                            return Some(p.clone());
                        }
                        self.physical_name(name)
                    }
                    "!Sub" => Some(self.substitute(arg?)),
                    "!GetAtt" => {
                        let (id, attr) = arg?.split_once('.')?;
                        let name = self.physical_name(id)?;
                        let ty = self.resource(id)?.get("Type")?.as_str()?;
                        match (ty, attr) {
                            ("AWS::Kinesis::Stream", "Arn") => Some(format!(
                                "arn:aws:kinesis:us-east-1:000000000000:stream/{name}"
                            )),
                            ("AWS::DynamoDB::Table", "Arn") => Some(format!(
                                "arn:aws:dynamodb:us-east-1:000000000000:table/{name}"
                            )),
                            ("AWS::SQS::Queue", "Arn") => {
                                Some(format!("arn:aws:sqs:us-east-1:000000000000:{name}"))
                            }
                            _ => None,
                        }
                    }
                    _ => None,
                }
            }
            other => scalar(other),
        }
    }

    fn substitute(&self, s: &str) -> String {
        let mut out = String::new();
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                return out;
            };
            let name = &after[..end];
            out.push_str(&self.parameters.get(name).cloned().unwrap_or_default());
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// The name a resource gets (`Name`, `TableName`, `QueueName`, `FunctionName`).
    pub fn physical_name(&self, logical_id: &str) -> Option<String> {
        let props = self.resource(logical_id)?.get("Properties")?;
        ["Name", "TableName", "QueueName", "FunctionName"]
            .iter()
            .find_map(|k| props.get(*k))
            .and_then(|v| self.resolve(v))
    }

    pub fn streams(&self) -> Vec<StreamSpec> {
        self.resources_of_type("AWS::Kinesis::Stream")
            .filter_map(|(id, r)| {
                let props = r.get("Properties")?;
                Some(StreamSpec {
                    logical_id: id.to_owned(),
                    name: self.physical_name(id)?,
                    shards: props
                        .get("ShardCount")
                        .and_then(|v| self.resolve(v))?
                        .parse()
                        .ok()?,
                })
            })
            .collect()
    }

    pub fn stream_name(&self, logical_id: &str) -> Option<String> {
        self.physical_name(logical_id)
    }

    pub fn tables(&self) -> Vec<TableSpec> {
        self.resources_of_type("AWS::DynamoDB::Table")
            .filter_map(|(id, r)| {
                let props = r.get("Properties")?;
                let key = |kind: &str| {
                    props.get("KeySchema")?.as_sequence()?.iter().find_map(|k| {
                        (k.get("KeyType")?.as_str()? == kind)
                            .then(|| k.get("AttributeName")?.as_str().map(str::to_owned))?
                    })
                };
                let ttl = props.get("TimeToLiveSpecification").and_then(|t| {
                    (t.get("Enabled").and_then(Value::as_bool) == Some(true))
                        .then(|| t.get("AttributeName")?.as_str().map(str::to_owned))?
                });
                Some(TableSpec {
                    logical_id: id.to_owned(),
                    name: self.physical_name(id)?,
                    partition_key: key("HASH")?,
                    sort_key: key("RANGE"),
                    ttl_attribute: ttl,
                })
            })
            .collect()
    }

    fn global_function(&self, key: &str) -> Option<&Value> {
        self.root.get("Globals")?.get("Function")?.get(key)
    }

    /// Every function with a Kinesis trigger.
    pub fn functions(&self) -> Result<Vec<FunctionSpec>, TemplateError> {
        let mut out = Vec::new();
        for (id, r) in self.resources_of_type("AWS::Serverless::Function") {
            let props = r
                .get("Properties")
                .ok_or_else(|| shape(format!("{id} has no Properties")))?;
            let Some((_, event)) = props
                .get("Events")
                .and_then(Value::as_mapping)
                .into_iter()
                .flat_map(|m| m.iter())
                .find(|(_, e)| e.get("Type").and_then(Value::as_str) == Some("Kinesis"))
            else {
                continue;
            };
            let ep = event
                .get("Properties")
                .ok_or_else(|| shape(format!("{id}: Kinesis event has no Properties")))?;
            let stream_ref = ep
                .get("Stream")
                .and_then(|v| match v {
                    Value::Tagged(t) if t.tag == "!GetAtt" => t
                        .value
                        .as_str()
                        .and_then(|s| s.split_once('.'))
                        .map(|(id, _)| id.to_owned()),
                    _ => None,
                })
                .ok_or_else(|| {
                    shape(format!(
                        "{id}: Kinesis event Stream must be !GetAtt <Stream>.Arn"
                    ))
                })?;
            let num = |key: &str, default: i64| -> Result<i64, TemplateError> {
                match ep.get(key) {
                    None => Ok(default),
                    Some(v) => self
                        .resolve(v)
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| shape(format!("{id}: {key} is not a number"))),
                }
            };
            let flag = |key: &str| {
                ep.get(key)
                    .and_then(|v| self.resolve(v))
                    .is_some_and(|s| s == "true")
            };
            let esm = EsmSettings {
                starting_position: match ep
                    .get("StartingPosition")
                    .and_then(|v| self.resolve(v))
                    .as_deref()
                {
                    Some("LATEST") => StartingPosition::Latest,
                    Some("TRIM_HORIZON") | None => StartingPosition::TrimHorizon,
                    Some(other) => {
                        return Err(shape(format!(
                            "{id}: StartingPosition {other:?} is not supported"
                        )));
                    }
                },
                batch_size: num("BatchSize", 100)? as usize,
                max_batching_window_ms: num("MaximumBatchingWindowInSeconds", 0)? * 1000,
                parallelization_factor: num("ParallelizationFactor", 1)? as usize,
                report_batch_item_failures: ep
                    .get("FunctionResponseTypes")
                    .and_then(Value::as_sequence)
                    .is_some_and(|s| {
                        s.iter()
                            .any(|v| v.as_str() == Some("ReportBatchItemFailures"))
                    }),
                bisect_on_error: flag("BisectBatchOnFunctionError"),
                max_retry_attempts: num("MaximumRetryAttempts", -1)?,
                max_record_age_s: num("MaximumRecordAgeInSeconds", -1)?,
                on_failure: ep
                    .get("DestinationConfig")
                    .and_then(|d| d.get("OnFailure"))
                    .and_then(|o| o.get("Destination"))
                    .and_then(|v| self.resolve(v)),
            };
            let mut env = BTreeMap::new();
            for vars in [
                self.global_function("Environment")
                    .and_then(|e| e.get("Variables")),
                props.get("Environment").and_then(|e| e.get("Variables")),
            ]
            .into_iter()
            .flatten()
            {
                if let Some(m) = vars.as_mapping() {
                    for (k, v) in m {
                        if let (Some(k), Some(v)) = (k.as_str(), self.resolve(v)) {
                            env.insert(k.to_owned(), v);
                        }
                    }
                }
            }
            let setting = |key: &str, default: i64| {
                props
                    .get(key)
                    .or_else(|| self.global_function(key))
                    .and_then(|v| self.resolve(v))
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(default)
            };
            out.push(FunctionSpec {
                logical_id: id.to_owned(),
                binary: r
                    .get("Metadata")
                    .and_then(|m| m.get("BuildProperties"))
                    .and_then(|b| b.get("Binary"))
                    .and_then(Value::as_str)
                    .unwrap_or(id)
                    .to_owned(),
                input_stream: stream_ref,
                esm,
                env,
                timeout_s: setting("Timeout", 3),
                memory_mb: setting("MemorySize", 128),
            });
        }
        Ok(out)
    }

    pub fn function(&self, binary: &str) -> Result<FunctionSpec, TemplateError> {
        self.functions()?
            .into_iter()
            .find(|f| f.binary == binary)
            .ok_or_else(|| shape(format!("no function with binary {binary:?}")))
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::config::env;
    use sluice_core::resources::{self, Names};

    fn template() -> Template {
        Template::parse(BUNDLED_TEMPLATE).expect("template.yaml parses")
    }

    #[test]
    fn every_stage_has_a_complete_kinesis_trigger() {
        let t = template();
        let functions = t.functions().expect("functions");
        let mut binaries: Vec<&str> = functions.iter().map(|f| f.binary.as_str()).collect();
        binaries.sort();
        assert_eq!(binaries, ["aggregate", "detect", "enrich", "ingest"]);
        let text: Value = serde_yaml::from_str(BUNDLED_TEMPLATE).expect("yaml");
        for f in &functions {
            let event = text["Resources"][f.logical_id.as_str()]["Properties"]["Events"]
                .as_mapping()
                .and_then(|m| m.values().next())
                .expect("one event");
            assert_eq!(event["Type"].as_str(), Some("Kinesis"), "{}", f.logical_id);
            for key in [
                "Stream",
                "StartingPosition",
                "BatchSize",
                "MaximumBatchingWindowInSeconds",
                "ParallelizationFactor",
                "FunctionResponseTypes",
                "BisectBatchOnFunctionError",
                "MaximumRetryAttempts",
                "MaximumRecordAgeInSeconds",
                "DestinationConfig",
            ] {
                assert!(
                    !event["Properties"][key].is_null(),
                    "{} lacks {key}",
                    f.logical_id
                );
            }
            let esm = &f.esm;
            assert!(esm.report_batch_item_failures, "{}", f.logical_id);
            assert!(esm.bisect_on_error);
            assert!(
                (1..=10_000).contains(&esm.batch_size),
                "Kinesis allows 1..=10000"
            );
            assert!((1..=10).contains(&esm.parallelization_factor));
            assert!((0..=300_000).contains(&esm.max_batching_window_ms));
            assert!((0..=10_000).contains(&esm.max_retry_attempts));
            assert!((60..=604_800).contains(&esm.max_record_age_s));
            assert!(
                esm.on_failure
                    .as_deref()
                    .is_some_and(|d| d.starts_with("arn:aws:sqs:"))
            );
            assert_eq!(esm.starting_position, StartingPosition::TrimHorizon);
            assert!(
                f.env.contains_key(env::OUTPUT_STREAM)
                    && f.env.contains_key(env::DEAD_LETTER_STREAM)
            );
            let resource = &text["Resources"][f.logical_id.as_str()];
            assert_eq!(
                resource["Metadata"]["BuildMethod"].as_str(),
                Some("rust-cargolambda")
            );
            assert!(
                !resource["Properties"]["Policies"].is_null(),
                "least-privilege policies"
            );
        }
    }

    #[test]
    fn stages_are_chained_through_the_streams() {
        let t = template();
        let f = |b: &str| t.function(b).expect("function");
        assert_eq!(f("ingest").input_stream, "RawStream");
        assert_eq!(f("ingest").env[env::OUTPUT_STREAM], "sluice-valid");
        assert_eq!(f("enrich").input_stream, "ValidStream");
        assert_eq!(f("enrich").env[env::OUTPUT_STREAM], "sluice-enriched");
        assert_eq!(f("aggregate").input_stream, "EnrichedStream");
        assert_eq!(
            f("aggregate").env[env::OUTPUT_STREAM],
            "sluice-window-updates"
        );
        assert_eq!(f("aggregate").env[env::WINDOWS], "60,3600");
        assert_eq!(f("aggregate").env[env::DELIVERY], "exactly-once");
        assert_eq!(f("detect").input_stream, "WindowUpdatesStream");
        assert_eq!(f("detect").env[env::OUTPUT_STREAM], "sluice-alerts");
        assert_eq!(f("ingest").env["RUST_LOG"], "info", "globals merge in");
        assert_eq!(f("aggregate").memory_mb, 512);
        assert_eq!(f("ingest").timeout_s, 60);
    }

    #[test]
    fn resource_constants_match_the_template() {
        let t = template();
        let names = Names::new(resources::DEFAULT_PREFIX);
        let streams = t.streams();
        assert_eq!(streams.len(), resources::STREAMS.len());
        for def in resources::STREAMS {
            let s = streams
                .iter()
                .find(|s| s.logical_id == def.logical_id)
                .expect(def.logical_id);
            assert_eq!(s.name, names.stream(def));
            assert_eq!(s.shards, def.default_shards as usize, "{}", def.logical_id);
            assert_eq!(
                t.parameter(def.shards_parameter),
                Some(def.default_shards.to_string().as_str())
            );
        }
        let tables = t.tables();
        assert_eq!(tables.len(), resources::TABLES.len());
        for def in resources::TABLES {
            let tb = tables
                .iter()
                .find(|x| x.logical_id == def.logical_id)
                .expect(def.logical_id);
            assert_eq!(tb.name, names.table(def));
            assert_eq!(tb.partition_key, def.partition_key);
            assert_eq!(tb.sort_key.as_deref(), def.sort_key);
            assert_eq!(tb.ttl_attribute.as_deref(), def.ttl_attribute);
        }
    }

    #[test]
    fn parameters_can_be_overridden() {
        let mut t = template();
        t.set_parameter("NamePrefix", "demo");
        t.set_parameter("Delivery", "at-least-once");
        let agg = t.function("aggregate").expect("aggregate");
        assert_eq!(agg.env[env::OUTPUT_STREAM], "demo-window-updates");
        assert_eq!(agg.env[env::DELIVERY], "at-least-once");
        assert!(Template::parse("[1").is_err());
    }
}
