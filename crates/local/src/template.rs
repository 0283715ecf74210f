//! Reads `template.yaml`: parameters, the stream and table resources, and each stage
//! function's Kinesis event source settings and environment. The local runner uses
//! this so that `sluice demo` and `sluice run` behave as the deployed stack would.
//!
//! It refuses what CloudFormation or Lambda would refuse, before anything runs:
//! reference cycles (at [`Template::parse`]), parameter values outside their declared
//! constraints, shard counts, event source mapping settings, timeouts and memory sizes
//! outside the services' limits, and a clock skew the allowed lateness does not cover
//! (at [`Template::functions`], which every runner calls).

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::{Mapping, Value};
use sluice_core::config::{check_lateness_covers_skew, env};

/// The repository's template, compiled in so the CLI works from any directory.
pub const BUNDLED_TEMPLATE: &str = include_str!("../../../template.yaml");

/// Region, account and partition the reader uses for pseudo parameters and ARNs.
const LOCAL_REGION: &str = "us-east-1";
const LOCAL_ACCOUNT: &str = "000000000000";

/// Resolution never goes deeper than this (cycles are rejected at parse; this bounds
/// what a cycle-free but absurd template can cost).
const MAX_RESOLVE_DEPTH: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template is not valid YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("template: {0}")]
    Shape(String),
    /// A value outside the range the service accepts.
    #[error("template: {owner}: {property} is {value}, outside {allowed}")]
    OutOfRange {
        /// Logical id of the function or stream.
        owner: String,
        property: &'static str,
        value: i64,
        allowed: String,
    },
    /// A parameter value its declaration (Type, MinValue, MaxValue, AllowedValues) refuses.
    #[error("template: parameter {name}={value:?} {reason}")]
    Parameter {
        name: String,
        value: String,
        reason: String,
    },
    /// Resources that depend on themselves through `Ref`, `GetAtt`, `Sub` or `DependsOn`.
    #[error(
        "template: reference cycle {}: a resource cannot depend on itself",
        .path.join(" -> ")
    )]
    Cycle { path: Vec<String> },
    /// Settings of two functions that contradict each other.
    #[error("template: {functions}: {source}")]
    Inconsistent {
        functions: String,
        #[source]
        source: sluice_core::Error,
    },
}

fn shape(msg: impl Into<String>) -> TemplateError {
    TemplateError::Shape(msg.into())
}

/// An inclusive range a numeric setting must fall in, with an optional extra value
/// outside it that the service also accepts (-1: "no limit").
#[derive(Clone, Copy, Debug)]
pub struct Limit {
    pub property: &'static str,
    pub min: i64,
    pub max: i64,
    pub also: Option<i64>,
    /// Whose limit it is, for the message.
    pub source: &'static str,
}

impl Limit {
    const fn new(property: &'static str, min: i64, max: i64, source: &'static str) -> Self {
        Limit {
            property,
            min,
            max,
            also: None,
            source,
        }
    }

    pub fn contains(&self, v: i64) -> bool {
        (self.min..=self.max).contains(&v) || self.also == Some(v)
    }

    /// `v`, or an error naming `owner`, the property, the value and the range.
    pub fn check(&self, owner: &str, v: i64) -> Result<i64, TemplateError> {
        if self.contains(v) {
            return Ok(v);
        }
        let range = format!("{}..={}", self.min, self.max);
        Err(TemplateError::OutOfRange {
            owner: owner.to_owned(),
            property: self.property,
            value: v,
            allowed: match self.also {
                Some(a) => format!("{a} or {range} ({})", self.source),
                None => format!("{range} ({})", self.source),
            },
        })
    }
}

const ESM: &str = "Lambda's Kinesis event source mapping";
pub const BATCH_SIZE: Limit = Limit::new("BatchSize", 1, 10_000, ESM);
pub const BATCHING_WINDOW: Limit = Limit::new("MaximumBatchingWindowInSeconds", 0, 300, ESM);
pub const PARALLELIZATION_FACTOR: Limit = Limit::new("ParallelizationFactor", 1, 10, ESM);
pub const MAX_RETRY_ATTEMPTS: Limit = Limit::new("MaximumRetryAttempts", -1, 10_000, ESM);
pub const MAX_RECORD_AGE: Limit = Limit {
    also: Some(-1),
    ..Limit::new("MaximumRecordAgeInSeconds", 60, 604_800, ESM)
};
pub const TIMEOUT: Limit = Limit::new("Timeout", 1, 900, "Lambda");
pub const MEMORY_SIZE: Limit = Limit::new("MemorySize", 128, 10_240, "Lambda");
/// Kinesis has no hard per-stream maximum (the default account quota is 500 shards per
/// region); this cap keeps a typo from making the local runner allocate a million shards.
pub const SHARD_COUNT: Limit = Limit::new("ShardCount", 1, 10_000, "Kinesis; capped here");

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

/// A stream's `ShardCount` under the capacity mode parameter, `!If [OnDemandStreams,
/// !Ref AWS::NoValue, count]`: the count (local streams are provisioned ones, whichever
/// mode a deployment selects). Any other value is itself.
fn provisioned_branch(v: &Value) -> &Value {
    let args = match v {
        Value::Tagged(t) if t.tag == "!If" => &t.value,
        Value::Mapping(m) if m.len() == 1 => match m.get("Fn::If") {
            Some(args) => args,
            None => return v,
        },
        _ => return v,
    };
    match args {
        Value::Sequence(parts) => match parts.as_slice() {
            [_, then, otherwise]
                if matches!(intrinsic(then), Some(Intrinsic::Ref("AWS::NoValue"))) =>
            {
                otherwise
            }
            _ => v,
        },
        _ => v,
    }
}

/// `Ref`, `Fn::Sub` (string form) or `Fn::GetAtt`, in short (`!Ref`) or long form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Intrinsic<'a> {
    Ref(&'a str),
    Sub(&'a str),
    GetAtt(&'a str, &'a str),
}

fn intrinsic(v: &Value) -> Option<Intrinsic<'_>> {
    let (kind, arg) = match v {
        Value::Tagged(t) => (
            match t.tag.to_string().as_str() {
                "!Ref" => "Ref",
                "!Sub" => "Fn::Sub",
                "!GetAtt" => "Fn::GetAtt",
                _ => return None,
            },
            &t.value,
        ),
        Value::Mapping(m) if m.len() == 1 => {
            let (k, arg) = m.iter().next()?;
            (k.as_str()?, arg)
        }
        _ => return None,
    };
    match (kind, arg) {
        ("Ref", Value::String(name)) => Some(Intrinsic::Ref(name)),
        ("Fn::Sub", Value::String(text)) => Some(Intrinsic::Sub(text)),
        ("Fn::GetAtt", Value::String(path)) => {
            let (id, attr) = path.split_once('.')?;
            Some(Intrinsic::GetAtt(id, attr))
        }
        ("Fn::GetAtt", Value::Sequence(parts)) => match parts.as_slice() {
            [id, attr] => Some(Intrinsic::GetAtt(id.as_str()?, attr.as_str()?)),
            _ => None,
        },
        _ => None,
    }
}

/// The `${...}` names of a `Fn::Sub` string, without `${!literal}` escapes.
fn sub_names(text: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let name = &after[..end];
        if !name.starts_with('!') {
            names.push(name);
        }
        rest = &after[end + 1..];
    }
    names
}

/// The value of a pseudo parameter (`AWS::Region`, …) for the local runner.
fn pseudo_parameter(name: &str) -> Option<&'static str> {
    match name {
        "AWS::Region" => Some(LOCAL_REGION),
        "AWS::AccountId" => Some(LOCAL_ACCOUNT),
        "AWS::Partition" => Some("aws"),
        "AWS::URLSuffix" => Some("amazonaws.com"),
        _ => None,
    }
}

#[derive(Clone, Debug)]
pub struct Template {
    root: Mapping,
    parameters: BTreeMap<String, String>,
}

impl Template {
    /// Parses `text` and rejects reference cycles among its resources.
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
                let Some(default) = scalar(default) else {
                    return Err(shape(format!("parameter {name}: Default is not a scalar")));
                };
                parameters.insert(name.to_owned(), default);
            }
        }
        let template = Template { root, parameters };
        template.check_reference_cycles()?;
        Ok(template)
    }

    pub fn bundled() -> Self {
        // The bundled template is tested to parse; fall back to an empty one if not.
        Self::parse(BUNDLED_TEMPLATE).unwrap_or_else(|_| Template {
            root: Mapping::new(),
            parameters: BTreeMap::new(),
        })
    }

    /// Overrides a parameter, as `sam deploy --parameter-overrides` would. The value is
    /// checked against the parameter's declaration by [`Template::functions`].
    pub fn set_parameter(&mut self, name: &str, value: impl Into<String>) {
        self.parameters.insert(name.to_owned(), value.into());
    }

    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).map(String::as_str)
    }

    fn declared_parameters(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.root
            .get("Parameters")
            .and_then(Value::as_mapping)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter_map(|(k, v)| Some((k.as_str()?, v)))
    }

    fn is_parameter(&self, name: &str) -> bool {
        self.parameters.contains_key(name) || self.declared_parameters().any(|(n, _)| n == name)
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

    // ------------------------------------------------------------ reference cycles

    /// The resources `v` refers to (`Ref`, `GetAtt`, `Sub` names), anywhere inside it.
    fn references_in<'a>(&self, v: &'a Value, out: &mut BTreeSet<&'a str>) {
        let mut note = |name: &'a str| {
            if !self.is_parameter(name) && self.resource(name).is_some() {
                out.insert(name);
            }
        };
        match intrinsic(v) {
            Some(Intrinsic::Ref(name)) => note(name),
            Some(Intrinsic::GetAtt(id, _)) => note(id),
            Some(Intrinsic::Sub(text)) => {
                for name in sub_names(text) {
                    note(name.split_once('.').map_or(name, |(id, _)| id));
                }
            }
            None => match v {
                Value::Tagged(t) => self.references_in(&t.value, out),
                Value::Sequence(items) => {
                    for item in items {
                        self.references_in(item, out);
                    }
                }
                Value::Mapping(m) => {
                    for item in m.values() {
                        self.references_in(item, out);
                    }
                }
                _ => {}
            },
        }
    }

    /// What a resource depends on: references in its properties, and `DependsOn`.
    fn dependencies(&self, logical_id: &str) -> BTreeSet<&str> {
        let mut deps = BTreeSet::new();
        if let Some(r) = self.resource(logical_id) {
            if let Some(props) = r.get("Properties") {
                self.references_in(props, &mut deps);
            }
            match r.get("DependsOn") {
                Some(Value::String(d)) => {
                    deps.insert(d.as_str());
                }
                Some(Value::Sequence(ds)) => deps.extend(ds.iter().filter_map(Value::as_str)),
                _ => {}
            }
        }
        deps
    }

    /// Rejects the first cycle found (depth-first, in resource order), as CloudFormation
    /// does, so that resolving names can never recurse without end.
    fn check_reference_cycles(&self) -> Result<(), TemplateError> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Visiting,
            Done,
        }
        fn visit<'a>(
            t: &'a Template,
            id: &'a str,
            marks: &mut BTreeMap<&'a str, Mark>,
            path: &mut Vec<&'a str>,
        ) -> Result<(), TemplateError> {
            match marks.get(id) {
                Some(Mark::Done) => return Ok(()),
                Some(Mark::Visiting) => {
                    let from = path.iter().position(|p| *p == id).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        path[from..].iter().map(|s| (*s).to_owned()).collect();
                    cycle.push(id.to_owned());
                    return Err(TemplateError::Cycle { path: cycle });
                }
                None => {}
            }
            marks.insert(id, Mark::Visiting);
            path.push(id);
            for dep in t.dependencies(id) {
                visit(t, dep, marks, path)?;
            }
            path.pop();
            marks.insert(id, Mark::Done);
            Ok(())
        }
        let mut marks = BTreeMap::new();
        for (id, _) in self.resources() {
            visit(self, id, &mut marks, &mut Vec::new())?;
        }
        Ok(())
    }

    // ------------------------------------------------------------------ resolving

    /// Resolves `!Ref`, `!Sub` and `!GetAtt X.Arn` (short or long form) against
    /// parameters, pseudo parameters and resources. `None`: not resolvable locally.
    pub fn resolve(&self, v: &Value) -> Option<String> {
        self.resolve_at(v, 0)
    }

    fn resolve_at(&self, v: &Value, depth: usize) -> Option<String> {
        if depth > MAX_RESOLVE_DEPTH {
            return None;
        }
        match intrinsic(v) {
            Some(Intrinsic::Ref(name)) => self.resolve_name(name, depth + 1),
            Some(Intrinsic::Sub(text)) => self.substitute(text, depth + 1),
            Some(Intrinsic::GetAtt(id, attr)) => self.attribute(id, attr, depth + 1),
            None if matches!(v, Value::Tagged(_) | Value::Mapping(_)) => None,
            None => scalar(v),
        }
    }

    /// A parameter's value, a pseudo parameter, or a resource's physical name.
    fn resolve_name(&self, name: &str, depth: usize) -> Option<String> {
        if let Some(p) = self.parameters.get(name) {
            return Some(p.clone());
        }
        if let Some(p) = pseudo_parameter(name) {
            return Some(p.to_owned());
        }
        self.physical_name_at(name, depth)
    }

    fn attribute(&self, id: &str, attr: &str, depth: usize) -> Option<String> {
        let name = self.physical_name_at(id, depth)?;
        let ty = self.resource(id)?.get("Type")?.as_str()?;
        match (ty, attr) {
            ("AWS::Kinesis::Stream", "Arn") => Some(format!(
                "arn:aws:kinesis:{LOCAL_REGION}:{LOCAL_ACCOUNT}:stream/{name}"
            )),
            ("AWS::DynamoDB::Table", "Arn") => Some(format!(
                "arn:aws:dynamodb:{LOCAL_REGION}:{LOCAL_ACCOUNT}:table/{name}"
            )),
            ("AWS::SQS::Queue", "Arn") => {
                Some(format!("arn:aws:sqs:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{name}"))
            }
            _ => None,
        }
    }

    /// `Fn::Sub`: every `${Name}` and `${Resource.Attribute}` must resolve (an unknown
    /// name makes the whole value unresolvable rather than silently empty); `${!x}` is
    /// the literal `${x}`.
    fn substitute(&self, s: &str, depth: usize) -> Option<String> {
        let mut out = String::new();
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                return Some(out);
            };
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let (false, Some((id, attr))) =
                (self.is_parameter(name), name.split_once('.'))
            {
                out.push_str(&self.attribute(id, attr, depth)?);
            } else {
                out.push_str(&self.resolve_name(name, depth)?);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Some(out)
    }

    /// The name a resource gets (`Name`, `TableName`, `QueueName`, `FunctionName`).
    pub fn physical_name(&self, logical_id: &str) -> Option<String> {
        self.physical_name_at(logical_id, 0)
    }

    fn physical_name_at(&self, logical_id: &str, depth: usize) -> Option<String> {
        let props = self.resource(logical_id)?.get("Properties")?;
        ["Name", "TableName", "QueueName", "FunctionName"]
            .iter()
            .find_map(|k| props.get(*k))
            .and_then(|v| self.resolve_at(v, depth + 1))
    }

    // ------------------------------------------------------------------ resources

    /// Every stream whose name and shard count resolve. [`Template::functions`] rejects
    /// a template where one does not, or whose shard count is out of range.
    pub fn streams(&self) -> Vec<StreamSpec> {
        self.resources_of_type("AWS::Kinesis::Stream")
            .filter_map(|(id, _)| self.stream(id).ok())
            .collect()
    }

    /// One stream, with its shard count checked.
    fn stream(&self, id: &str) -> Result<StreamSpec, TemplateError> {
        let props = self
            .resource(id)
            .and_then(|r| r.get("Properties"))
            .ok_or_else(|| shape(format!("{id} has no Properties")))?;
        let name = self
            .physical_name(id)
            .ok_or_else(|| shape(format!("{id}: Name does not resolve")))?;
        let shards = props
            .get("ShardCount")
            .map(provisioned_branch)
            .and_then(|v| self.resolve(v))
            .ok_or_else(|| shape(format!("{id}: ShardCount is missing or does not resolve")))?;
        let shards: i64 = shards
            .trim()
            .parse()
            .map_err(|_| shape(format!("{id}: ShardCount {shards:?} is not a whole number")))?;
        let shards = SHARD_COUNT.check(id, shards)?;
        Ok(StreamSpec {
            logical_id: id.to_owned(),
            name,
            shards: usize::try_from(shards).map_err(|_| shape("unreachable: checked range"))?,
        })
    }

    fn check_streams(&self) -> Result<(), TemplateError> {
        for (id, _) in self.resources_of_type("AWS::Kinesis::Stream") {
            self.stream(id)?;
        }
        Ok(())
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

    // ----------------------------------------------------------------- parameters

    /// Every parameter value (defaults and overrides) against its declaration, as
    /// CloudFormation checks them at deploy. (`AllowedPattern` is left to CloudFormation.)
    fn check_parameters(&self) -> Result<(), TemplateError> {
        for (name, def) in self.declared_parameters() {
            let Some(value) = self.parameters.get(name) else {
                continue;
            };
            let refuse = |reason: String| TemplateError::Parameter {
                name: name.to_owned(),
                value: value.clone(),
                reason,
            };
            let bound = |key: &str| {
                def.get(key)
                    .and_then(scalar)
                    .and_then(|b| b.parse::<f64>().ok())
            };
            if def.get("Type").and_then(Value::as_str) == Some("Number") {
                let n: f64 = value
                    .trim()
                    .parse()
                    .map_err(|_| refuse("is not a number (Type: Number)".into()))?;
                if let Some(min) = bound("MinValue").filter(|min| n < *min) {
                    return Err(refuse(format!("is below its MinValue {min}")));
                }
                if let Some(max) = bound("MaxValue").filter(|max| n > *max) {
                    return Err(refuse(format!("is above its MaxValue {max}")));
                }
            }
            if let Some(allowed) = def.get("AllowedValues").and_then(Value::as_sequence) {
                let allowed: Vec<String> = allowed.iter().filter_map(scalar).collect();
                if !allowed.iter().any(|a| a == value.trim()) {
                    return Err(refuse(format!("is not one of {}", allowed.join(", "))));
                }
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------ functions

    fn global_function(&self, key: &str) -> Option<&Value> {
        self.root.get("Globals")?.get("Function")?.get(key)
    }

    /// Every function with a Kinesis trigger, after checking the whole template:
    /// parameter values, shard counts, each function's settings against the service
    /// limits, and the clock skew against the allowed lateness.
    pub fn functions(&self) -> Result<Vec<FunctionSpec>, TemplateError> {
        self.check_parameters()?;
        self.check_streams()?;
        let functions = self
            .resources_of_type("AWS::Serverless::Function")
            .map(|(id, r)| self.function_spec(id, r))
            .filter_map(Result::transpose)
            .collect::<Result<Vec<_>, _>>()?;
        check_clock_skew(&functions)?;
        Ok(functions)
    }

    /// One function, or `None` when it has no Kinesis trigger.
    fn function_spec(&self, id: &str, r: &Mapping) -> Result<Option<FunctionSpec>, TemplateError> {
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
            return Ok(None);
        };
        let ep = event
            .get("Properties")
            .ok_or_else(|| shape(format!("{id}: Kinesis event has no Properties")))?;
        let input_stream = ep
            .get("Stream")
            .and_then(intrinsic)
            .and_then(|i| match i {
                Intrinsic::GetAtt(stream, "Arn") => Some(stream.to_owned()),
                _ => None,
            })
            .ok_or_else(|| {
                shape(format!(
                    "{id}: Kinesis event Stream must be !GetAtt <Stream>.Arn"
                ))
            })?;
        let esm = self.esm_settings(id, ep)?;
        let number = |value: Option<&Value>, limit: Limit, default: i64| match value {
            None => Ok(default),
            Some(v) => self
                .resolve(v)
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| shape(format!("{id}: {} is not a whole number", limit.property)))
                .and_then(|n| limit.check(id, n)),
        };
        let setting = |limit: Limit, default: i64| {
            number(
                props
                    .get(limit.property)
                    .or_else(|| self.global_function(limit.property)),
                limit,
                default,
            )
        };
        Ok(Some(FunctionSpec {
            logical_id: id.to_owned(),
            binary: r
                .get("Metadata")
                .and_then(|m| m.get("BuildProperties"))
                .and_then(|b| b.get("Binary"))
                .and_then(Value::as_str)
                .unwrap_or(id)
                .to_owned(),
            input_stream,
            esm,
            env: self.environment(props),
            // Lambda's defaults: 3 s, 128 MB.
            timeout_s: setting(TIMEOUT, 3)?,
            memory_mb: setting(MEMORY_SIZE, 128)?,
        }))
    }

    /// The Kinesis event's mapping settings, each within Lambda's limits.
    fn esm_settings(&self, id: &str, ep: &Value) -> Result<EsmSettings, TemplateError> {
        let defaults = EsmSettings::default();
        let num = |limit: Limit, default: i64| -> Result<i64, TemplateError> {
            match ep.get(limit.property) {
                None => Ok(default),
                Some(v) => self
                    .resolve(v)
                    .and_then(|s| s.trim().parse().ok())
                    .ok_or_else(|| shape(format!("{id}: {} is not a whole number", limit.property)))
                    .and_then(|n| limit.check(id, n)),
            }
        };
        let flag = |key: &str| {
            ep.get(key)
                .and_then(|v| self.resolve(v))
                .is_some_and(|s| s == "true")
        };
        let as_usize = |n: i64| usize::try_from(n).map_err(|_| shape("unreachable: checked range"));
        Ok(EsmSettings {
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
            batch_size: as_usize(num(BATCH_SIZE, defaults.batch_size as i64)?)?,
            max_batching_window_ms: num(BATCHING_WINDOW, 0)? * 1000,
            parallelization_factor: as_usize(num(
                PARALLELIZATION_FACTOR,
                defaults.parallelization_factor as i64,
            )?)?,
            report_batch_item_failures: ep
                .get("FunctionResponseTypes")
                .and_then(Value::as_sequence)
                .is_some_and(|s| {
                    s.iter()
                        .any(|v| v.as_str() == Some("ReportBatchItemFailures"))
                }),
            bisect_on_error: flag("BisectBatchOnFunctionError"),
            max_retry_attempts: num(MAX_RETRY_ATTEMPTS, defaults.max_retry_attempts)?,
            max_record_age_s: num(MAX_RECORD_AGE, defaults.max_record_age_s)?,
            on_failure: ep
                .get("DestinationConfig")
                .and_then(|d| d.get("OnFailure"))
                .and_then(|o| o.get("Destination"))
                .and_then(|v| self.resolve(v)),
        })
    }

    /// Globals' variables, then the function's own (which win).
    fn environment(&self, props: &Value) -> BTreeMap<String, String> {
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
        env
    }

    pub fn function(&self, binary: &str) -> Result<FunctionSpec, TemplateError> {
        self.functions()?
            .into_iter()
            .find(|f| f.binary == binary)
            .ok_or_else(|| shape(format!("no function with binary {binary:?}")))
    }
}

/// The largest `MAX_CLOCK_SKEW_SECONDS` of any function against the smallest
/// `ALLOWED_LATENESS_SECONDS` of a function that aggregates (ingest also carries the
/// lateness, for its own start-up check: only functions that set `WINDOWS` count here).
fn check_clock_skew(functions: &[FunctionSpec]) -> Result<(), TemplateError> {
    let seconds = |f: &FunctionSpec, var: &str| -> Result<Option<i64>, TemplateError> {
        f.env
            .get(var)
            .map(|v| {
                v.trim().parse().map_err(|_| {
                    shape(format!(
                        "{}: {var}={v:?} is not a whole number",
                        f.logical_id
                    ))
                })
            })
            .transpose()
    };
    let mut skew: Option<(i64, &str)> = None;
    let mut lateness: Option<(i64, &str)> = None;
    for f in functions {
        if let Some(s) = seconds(f, env::MAX_CLOCK_SKEW_SECONDS)? {
            if skew.is_none_or(|(m, _)| s > m) {
                skew = Some((s, &f.logical_id));
            }
        }
        if f.env.contains_key(env::WINDOWS) {
            if let Some(l) = seconds(f, env::ALLOWED_LATENESS_SECONDS)? {
                if lateness.is_none_or(|(m, _)| l < m) {
                    lateness = Some((l, &f.logical_id));
                }
            }
        }
    }
    if let (Some((s, skew_fn)), Some((l, late_fn))) = (skew, lateness) {
        check_lateness_covers_skew(s, l).map_err(|source| TemplateError::Inconsistent {
            functions: format!("{skew_fn} and {late_fn}"),
            source,
        })?;
    }
    Ok(())
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
        }
    }

    /// `X` of `!GetAtt X.Arn`.
    fn getatt(v: &Value) -> Option<&str> {
        match intrinsic(v)? {
            Intrinsic::GetAtt(id, "Arn") => Some(id),
            _ => None,
        }
    }

    fn as_list(v: &Value) -> Vec<&Value> {
        match v {
            Value::Sequence(items) => items.iter().collect(),
            other => vec![other],
        }
    }

    /// Every statement of a role, both branches of a conditional one included.
    fn statements(role: &Value) -> Vec<&Value> {
        let mut out = Vec::new();
        for policy in role["Properties"]["Policies"]
            .as_sequence()
            .expect("inline policies")
        {
            for s in as_list(&policy["PolicyDocument"]["Statement"]) {
                match s {
                    Value::Tagged(t) if t.tag == "!If" => out.extend(
                        t.value
                            .as_sequence()
                            .expect("[condition, then, else]")
                            .iter()
                            .skip(1)
                            .filter(|b| b.get("Effect").is_some()),
                    ),
                    other => out.push(other),
                }
            }
        }
        out
    }

    fn actions(s: &Value) -> Vec<&str> {
        as_list(&s["Action"])
            .into_iter()
            .filter_map(Value::as_str)
            .collect()
    }

    #[test]
    fn each_function_reads_only_its_own_source_stream() {
        let t = template();
        let text: Value = serde_yaml::from_str(BUNDLED_TEMPLATE).expect("yaml");
        for f in t.functions().expect("functions") {
            let props = &text["Resources"][f.logical_id.as_str()]["Properties"];
            // Its own role: SAM then generates none, so attaches no managed policy.
            assert!(
                props["Policies"].is_null(),
                "{}: no SAM policies",
                f.logical_id
            );
            let role_id = getatt(&props["Role"]).expect("Role: !GetAtt <Role>.Arn");
            let role = &text["Resources"][role_id];
            assert_eq!(role["Type"].as_str(), Some("AWS::IAM::Role"));
            assert!(role["Properties"]["ManagedPolicyArns"].is_null());
            let mut read = BTreeSet::new();
            for s in statements(role) {
                let resources = as_list(&s["Resource"]);
                assert!(
                    resources.iter().all(|r| r.as_str() != Some("*")),
                    "{role_id}: {s:?} grants on *"
                );
                for a in actions(s) {
                    assert!(!a.ends_with('*'), "{role_id}: wildcard action {a}");
                    assert_ne!(a, "kinesis:ListStreams", "cannot be scoped to a stream");
                    assert_ne!(a, "kinesis:SubscribeToShard", "no enhanced fan-out");
                    assert_ne!(a, "kinesis:PutRecord", "the sink calls PutRecords only");
                }
                if actions(s).contains(&"kinesis:GetRecords") {
                    read.extend(resources.iter().map(|r| getatt(r).expect("a stream ARN")));
                }
            }
            assert_eq!(
                read,
                BTreeSet::from([f.input_stream.as_str()]),
                "{}: reads exactly its source stream",
                f.logical_id
            );
        }
    }

    #[test]
    fn roles_grant_only_what_the_code_calls() {
        let text: Value = serde_yaml::from_str(BUNDLED_TEMPLATE).expect("yaml");
        // What crates/aws calls per function (DynamoDB) and per mapping (SQS, Kinesis).
        let expected: [(&str, &[&str]); 4] = [
            ("IngestRole", &[]),
            ("EnrichRole", &["dynamodb:BatchGetItem"]),
            (
                "AggregateRole",
                &[
                    "dynamodb:BatchGetItem",
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                ],
            ),
            (
                "DetectRole",
                &[
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:Query",
                    "dynamodb:Scan",
                    "dynamodb:UpdateItem",
                ],
            ),
        ];
        for (role_id, dynamodb) in expected {
            let mut granted: BTreeSet<&str> = BTreeSet::new();
            for s in statements(&text["Resources"][role_id]) {
                granted.extend(actions(s));
            }
            let mut want: BTreeSet<&str> = [
                "kinesis:DescribeStream",
                "kinesis:DescribeStreamSummary",
                "kinesis:GetRecords",
                "kinesis:GetShardIterator",
                "kinesis:ListShards",
                "kinesis:PutRecords",
                "sqs:SendMessage",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "kms:Decrypt",
                "kms:GenerateDataKey",
            ]
            .into();
            want.extend(dynamodb);
            assert_eq!(granted, want, "{role_id}");
        }
    }

    #[test]
    fn stateful_resources_are_retained() {
        let text: Value = serde_yaml::from_str(BUNDLED_TEMPLATE).expect("yaml");
        let resources = text["Resources"].as_mapping().expect("resources");
        let mut stateful = 0;
        for (id, r) in resources {
            let ty = r["Type"].as_str().expect("type");
            if matches!(
                ty,
                "AWS::Kinesis::Stream" | "AWS::DynamoDB::Table" | "AWS::SQS::Queue"
            ) {
                stateful += 1;
                assert_eq!(r["DeletionPolicy"].as_str(), Some("Retain"), "{id:?}");
                assert_eq!(r["UpdateReplacePolicy"].as_str(), Some("Retain"), "{id:?}");
            }
            if ty == "AWS::DynamoDB::Table" {
                assert_eq!(
                    r["Properties"]["PointInTimeRecoverySpecification"]
                        ["PointInTimeRecoveryEnabled"]
                        .as_bool(),
                    Some(true),
                    "{id:?}"
                );
            }
        }
        assert_eq!(stateful, 6 + 4 + 1, "six streams, four tables, one queue");
    }

    #[test]
    fn each_function_logs_to_its_own_group_with_retention() {
        let t = template();
        let text: Value = serde_yaml::from_str(BUNDLED_TEMPLATE).expect("yaml");
        for f in t.functions().expect("functions") {
            let props = &text["Resources"][f.logical_id.as_str()]["Properties"];
            let Some(Intrinsic::Ref(group_id)) = intrinsic(&props["LoggingConfig"]["LogGroup"])
            else {
                panic!("{}: LoggingConfig.LogGroup: !Ref <group>", f.logical_id);
            };
            let group = &text["Resources"][group_id];
            assert_eq!(group["Type"].as_str(), Some("AWS::Logs::LogGroup"));
            assert!(!group["Properties"]["RetentionInDays"].is_null());
            let role = &text["Resources"][getatt(&props["Role"]).expect("role")];
            let logs: Vec<&Value> = statements(role)
                .into_iter()
                .filter(|s| actions(s).iter().any(|a| a.starts_with("logs:")))
                .collect();
            assert_eq!(logs.len(), 1);
            assert_eq!(
                getatt(&logs[0]["Resource"]),
                Some(group_id),
                "own group only"
            );
        }
    }

    /// The bundled template with its first `from` replaced by `to`.
    fn edited(from: &str, to: &str) -> Result<Template, TemplateError> {
        assert!(
            BUNDLED_TEMPLATE.contains(from),
            "{from:?} is not in the template"
        );
        Template::parse(&BUNDLED_TEMPLATE.replacen(from, to, 1))
    }

    /// The out-of-range error `functions()` gives for an edit.
    fn out_of_range(from: &str, to: &str) -> (String, &'static str, i64, String) {
        let t = edited(from, to).expect("parses");
        match t.functions() {
            Err(e @ TemplateError::OutOfRange { .. }) => {
                let msg = e.to_string();
                let TemplateError::OutOfRange {
                    owner,
                    property,
                    value,
                    ..
                } = e
                else {
                    unreachable!()
                };
                (owner, property, value, msg)
            }
            other => panic!("{to:?}: expected out of range, got {other:?}"),
        }
    }

    #[test]
    fn batch_size_is_range_checked() {
        let (owner, property, value, msg) =
            out_of_range("BatchSize: !Ref IngestBatchSize", "BatchSize: -5");
        assert_eq!(
            (owner.as_str(), property, value),
            ("IngestFunction", "BatchSize", -5)
        );
        assert!(
            msg.contains("IngestFunction")
                && msg.contains("BatchSize is -5")
                && msg.contains("1..=10000"),
            "{msg}"
        );
        assert_eq!(
            out_of_range("BatchSize: !Ref IngestBatchSize", "BatchSize: 10001").2,
            10_001
        );
        let ok = edited("BatchSize: !Ref IngestBatchSize", "BatchSize: 10000").expect("parses");
        assert_eq!(
            ok.function("ingest").expect("in range").esm.batch_size,
            10_000
        );
        // Through a parameter, its declaration refuses it first.
        let mut t = template();
        t.set_parameter("IngestBatchSize", "0");
        let err = t.functions().expect_err("below MinValue");
        assert!(
            matches!(&err, TemplateError::Parameter { name, .. } if name == "IngestBatchSize"),
            "{err}"
        );
    }

    #[test]
    fn batching_window_is_range_checked() {
        let (owner, property, value, _) = out_of_range(
            "MaximumBatchingWindowInSeconds: !Ref AggregateBatchingWindowSeconds",
            "MaximumBatchingWindowInSeconds: 301",
        );
        assert_eq!(
            (owner.as_str(), property, value),
            ("AggregateFunction", "MaximumBatchingWindowInSeconds", 301)
        );
        assert_eq!(
            out_of_range(
                "MaximumBatchingWindowInSeconds: !Ref AggregateBatchingWindowSeconds",
                "MaximumBatchingWindowInSeconds: -1"
            )
            .2,
            -1
        );
    }

    #[test]
    fn parallelization_factor_is_range_checked() {
        for bad in [0, 11] {
            let (owner, property, value, _) = out_of_range(
                "ParallelizationFactor: 2",
                &format!("ParallelizationFactor: {bad}"),
            );
            assert_eq!(
                (owner.as_str(), property, value),
                ("IngestFunction", "ParallelizationFactor", bad)
            );
        }
    }

    #[test]
    fn retry_attempts_are_range_checked() {
        for bad in [-2, 10_001] {
            let (owner, property, value, _) = out_of_range(
                "MaximumRetryAttempts: 20",
                &format!("MaximumRetryAttempts: {bad}"),
            );
            assert_eq!(
                (owner.as_str(), property, value),
                ("AggregateFunction", "MaximumRetryAttempts", bad)
            );
        }
        let forever = edited("MaximumRetryAttempts: 20", "MaximumRetryAttempts: -1")
            .expect("parses")
            .function("aggregate")
            .expect("-1: until the records expire");
        assert_eq!(forever.esm.max_retry_attempts, -1);
    }

    #[test]
    fn record_age_is_minus_one_or_sixty_to_a_week() {
        for bad in [0, 59, -2, 604_801] {
            let (_, property, value, msg) = out_of_range(
                "MaximumRecordAgeInSeconds: 86400",
                &format!("MaximumRecordAgeInSeconds: {bad}"),
            );
            assert_eq!((property, value), ("MaximumRecordAgeInSeconds", bad));
            assert!(msg.contains("-1 or 60..=604800"), "{msg}");
        }
        for good in [-1, 60, 604_800] {
            let t = edited(
                "MaximumRecordAgeInSeconds: 86400",
                &format!("MaximumRecordAgeInSeconds: {good}"),
            )
            .expect("parses");
            assert_eq!(
                t.function("ingest").expect("valid").esm.max_record_age_s,
                good
            );
        }
    }

    #[test]
    fn timeout_and_memory_are_range_checked() {
        for bad in [0, 901] {
            let (owner, property, value, _) =
                out_of_range("Timeout: 60", &format!("Timeout: {bad}"));
            assert_eq!((property, value), ("Timeout", bad), "{owner}");
        }
        let (owner, property, value, _) = out_of_range("MemorySize: 512", "MemorySize: 64");
        assert_eq!(
            (owner.as_str(), property, value),
            ("AggregateFunction", "MemorySize", 64)
        );
        let t = edited("Timeout: 60", "Timeout: soon").expect("parses");
        let err = t.functions().expect_err("not a number is no default");
        assert!(
            err.to_string().contains("Timeout is not a whole number"),
            "{err}"
        );
    }

    /// `StreamCapacityMode` selects every stream's mode; under ON_DEMAND a stream has no
    /// shard count (CloudFormation refuses one), which the local reader, whose streams
    /// are provisioned, reads as the provisioned count.
    #[test]
    fn every_stream_follows_the_capacity_mode_parameter() {
        let mut t = template();
        assert_eq!(t.parameter("StreamCapacityMode"), Some("PROVISIONED"));
        let shards = |t: &Template| -> Vec<(String, usize)> {
            t.streams()
                .into_iter()
                .map(|s| (s.name, s.shards))
                .collect()
        };
        let provisioned = shards(&t);
        assert_eq!(provisioned.len(), 6);
        for (id, _) in t.resources_of_type("AWS::Kinesis::Stream") {
            let props = &t.resource(id).expect("a stream")["Properties"];
            let mode = &props["StreamModeDetails"]["StreamMode"];
            assert!(
                matches!(intrinsic(mode), Some(Intrinsic::Ref("StreamCapacityMode"))),
                "{id}: {mode:?}"
            );
            let count = &props["ShardCount"];
            assert_ne!(provisioned_branch(count), count, "{id}: an !If on the mode");
        }
        t.set_parameter("StreamCapacityMode", "ON_DEMAND");
        assert_eq!(shards(&t), provisioned);
        assert_eq!(provisioned_branch(&Value::from(3)), &Value::from(3));
    }

    #[test]
    fn shard_counts_are_at_least_one() {
        let (owner, property, value, _) = out_of_range(
            "ShardCount: !If [OnDemandStreams, !Ref AWS::NoValue, !Ref RawShards]",
            "ShardCount: 0",
        );
        assert_eq!(
            (owner.as_str(), property, value),
            ("RawStream", "ShardCount", 0)
        );
        let t = edited(
            "ShardCount: !If [OnDemandStreams, !Ref AWS::NoValue, !Ref RawShards]",
            "ShardCount: -3",
        )
        .expect("parses");
        assert!(t.functions().is_err());
        let t = edited(
            "ShardCount: !If [OnDemandStreams, !Ref AWS::NoValue, !Ref RawShards]",
            "ShardCount: two",
        )
        .expect("parses");
        let err = t.functions().expect_err("not a number");
        assert!(err.to_string().contains("RawStream: ShardCount"), "{err}");
        let mut t = template();
        t.set_parameter("RawShards", "0");
        let err = t.functions().expect_err("MinValue 1");
        assert!(
            err.to_string()
                .contains("parameter RawShards=\"0\" is below its MinValue 1"),
            "{err}"
        );
    }

    #[test]
    fn parameter_values_obey_their_declarations() {
        let mut t = template();
        t.set_parameter("Delivery", "twice");
        let err = t.functions().expect_err("not allowed");
        assert!(
            err.to_string().contains("Delivery=\"twice\" is not one of"),
            "{err}"
        );
        let mut t = template();
        t.set_parameter("AlertsShards", "zero");
        let err = t.functions().expect_err("not a number");
        assert!(err.to_string().contains("AlertsShards"), "{err}");
        let mut t = template();
        t.set_parameter("LogRetentionDays", "2");
        assert!(
            t.functions().is_err(),
            "CloudWatch Logs has no 2-day retention"
        );
        let mut t = template();
        t.set_parameter("RawShards", "4");
        assert!(t.functions().is_ok());
        assert_eq!(
            t.streams()
                .iter()
                .find(|s| s.logical_id == "RawStream")
                .map(|s| s.shards),
            Some(4)
        );
    }

    #[test]
    fn clock_skew_beyond_the_allowed_lateness_is_refused() {
        let mut t = template();
        t.set_parameter("MaxClockSkewSeconds", "600");
        let err = t.functions().expect_err("600 s skew, 300 s lateness");
        let msg = err.to_string();
        assert!(
            msg.contains("IngestFunction and AggregateFunction")
                && msg.contains("MAX_CLOCK_SKEW_SECONDS=\"600\"")
                && msg.contains("ALLOWED_LATENESS_SECONDS=300"),
            "{msg}"
        );
        t.set_parameter("AllowedLatenessSeconds", "600");
        assert!(t.functions().is_ok(), "equal is allowed");
        t.set_parameter("AllowedLatenessSeconds", "30");
        t.set_parameter("MaxClockSkewSeconds", "30");
        assert!(t.functions().is_ok());
        // Ingest carries the lateness too, for its own start-up check.
        let ingest = t.function("ingest").expect("ingest");
        assert_eq!(ingest.env[env::ALLOWED_LATENESS_SECONDS], "30");
        assert_eq!(ingest.env[env::MAX_CLOCK_SKEW_SECONDS], "30");
    }

    fn cycle(text: &str) -> Vec<String> {
        match Template::parse(text) {
            Err(TemplateError::Cycle { path }) => path,
            other => panic!("expected a cycle, got {other:?}"),
        }
    }

    #[test]
    fn a_self_reference_is_a_cycle() {
        let path = cycle(&BUNDLED_TEMPLATE.replacen(
            "Name: !Sub \"${NamePrefix}-raw\"",
            "Name: !Ref RawStream",
            1,
        ));
        assert_eq!(path, ["RawStream", "RawStream"]);
        let err = Template::parse(
            "Resources:\n  A:\n    Type: AWS::SQS::Queue\n    Properties:\n      QueueName: {Ref: A}\n",
        )
        .expect_err("long form too");
        assert_eq!(
            err.to_string(),
            "template: reference cycle A -> A: a resource cannot depend on itself"
        );
    }

    #[test]
    fn mutual_references_are_a_cycle() {
        let text = BUNDLED_TEMPLATE
            .replacen(
                "Name: !Sub \"${NamePrefix}-raw\"",
                "Name: !Sub \"${ValidStream}-raw\"",
                1,
            )
            .replacen(
                "Name: !Sub \"${NamePrefix}-valid\"",
                "Name: !Sub \"${RawStream.Arn}-valid\"",
                1,
            );
        let path = cycle(&text);
        assert_eq!(path, ["RawStream", "ValidStream", "RawStream"]);
        // Through a property other than a name, and DependsOn, as CloudFormation sees it.
        let path = cycle(
            "Resources:\n  A:\n    Type: AWS::SQS::Queue\n    DependsOn: B\n  B:\n    Type: AWS::SQS::Queue\n    Properties:\n      Tags:\n        - Key: k\n          Value: !GetAtt A.Arn\n",
        );
        assert_eq!(path, ["A", "B", "A"]);
    }

    #[test]
    fn sub_resolves_every_name_or_nothing() {
        let t = template();
        let sub = |s: &str| t.resolve(&serde_yaml::from_str::<Value>(s).expect("yaml"));
        assert_eq!(sub("!Sub \"${NamePrefix}-x\""), Some("sluice-x".into()));
        assert_eq!(
            sub("!Sub \"${RawStream}/${AWS::Region}\""),
            Some("sluice-raw/us-east-1".into())
        );
        assert_eq!(
            sub("!Sub \"${RawStream.Arn}\""),
            Some("arn:aws:kinesis:us-east-1:000000000000:stream/sluice-raw".into())
        );
        assert_eq!(sub("!Sub \"${!Literal}\""), Some("${Literal}".into()));
        assert_eq!(sub("!Sub \"${Nowhere}-x\""), None, "unknown is not empty");
        assert_eq!(
            sub("{\"Fn::GetAtt\": [RawStream, Arn]}"),
            sub("!GetAtt RawStream.Arn")
        );
    }

    /// `PipelineFile` (default empty: the envelope) is a parameter like the others; the
    /// functions' `PIPELINE_FILE` is an `!If` on it, which the local reader leaves out
    /// (the CLI takes the pipeline from `--sql FILE` instead), so a stage's local
    /// environment is the same with or without it.
    #[test]
    fn the_pipeline_file_parameter_reads_and_leaves_the_local_environment_alone() {
        let mut t = template();
        assert_eq!(t.parameter("PipelineFile"), Some(""));
        let before = t.functions().expect("functions");
        t.set_parameter("PipelineFile", "payments.sql");
        let after = t.functions().expect("functions with a pipeline");
        for (b, a) in before.iter().zip(&after) {
            assert!(!a.env.contains_key(env::PIPELINE_FILE), "{}", a.binary);
            assert_eq!(b.env, a.env, "{}", a.binary);
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
