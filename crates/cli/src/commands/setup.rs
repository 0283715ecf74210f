//! `sluice setup`: creates a deployment's streams and tables (the ones
//! `sluice_core::resources` lists, named `{prefix}-{suffix}` like `template.yaml` names
//! them), waits until they are ACTIVE, and optionally seeds reference data and rules.
//! Idempotent: what exists is left as it is.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Deserialize;
use sluice_aws::{DynamoReference, DynamoRules, Provisioned, Provisioner};
use sluice_core::detect::rules::{Rule, parse_rules};
use sluice_core::ports::Attrs;
use sluice_core::resources::{self, Names, StreamDef};
use sluice_local::scenario::Scenario;
use sluice_local::template::Template;

use crate::commands::sql::{load_pipeline, reference_rows};
use crate::connect::Connection;
use crate::remote::explain;

#[derive(Args, Debug)]
#[command(
    after_help = "Each stream and table is printed on stderr as `created` or `exists`.\n\nExamples:\n  sluice setup --endpoint http://localhost:4566\n  sluice setup --prefix dev --shards 4\n  sluice setup --scenario iot          (also seeds the iot scenario's reference rows and rules)\n  sluice setup --reference sites.jsonl --rules rules.jsonl\n  sluice setup --sql examples/payments.sql --reference merchants=examples/payments.merchants.ndjson\n\nReference lines: {\"key\":\"sensor-001\",\"attrs\":{\"site\":\"north\"}}\nRule lines:      {\"id\":\"overheat\",\"type\":\"temperature\",\"window_seconds\":60,\"stat\":\"max\",\"op\":\">\",\"threshold\":80}\n                 {\"id\":\"burst\",\"kind\":\"rate\",\"type\":\"amount\",\"window_seconds\":60,\"stat\":\"count\",\"op\":\">=\",\"threshold\":3}\n                 (the format of `sluice rules put`; see `sluice rules --help`)"
)]
pub struct SetupArgs {
    #[command(flatten)]
    pub conn: Connection,
    /// Shards of the raw, valid and enriched streams (default: the template's
    /// RawShards, ValidShards, EnrichedShards). Existing streams are not resharded.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub shards: Option<u32>,
    /// Seed the reference table from JSON lines `{"key":…,"attrs":{…}}`. With --sql:
    /// a lookup join's rows, TABLE=FILE.ndjson, one JSON object per line (repeatable).
    #[arg(long, value_name = "PATH")]
    pub reference: Vec<PathBuf>,
    /// Seed the rules table from JSON lines of rules.
    #[arg(long, value_name = "PATH")]
    pub rules: Option<PathBuf>,
    /// Seed a synthetic scenario's reference rows and rules (iot, payments, clicks);
    /// --reference and --rules replace the respective part.
    #[arg(long)]
    pub scenario: Option<Scenario>,
    /// For a Flink SQL pipeline (.sql): check that it loads, and seed the reference
    /// table with its lookup joins' rows (--reference TABLE=FILE.ndjson) instead of a
    /// scenario's.
    #[arg(long, value_name = "FILE.sql", conflicts_with = "scenario")]
    pub sql: Option<PathBuf>,
    /// How long to wait for each stream or table to become ACTIVE.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub wait_seconds: u64,
}

/// One line of a reference file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReferenceLine {
    key: String,
    #[serde(default)]
    attrs: serde_json::Map<String, serde_json::Value>,
}

/// Parses reference rows from JSON lines (blank lines and `#` comments allowed).
/// Attribute values are strings; numbers and booleans are kept as their text.
pub fn parse_reference(text: &str) -> Result<Vec<(String, Attrs)>, String> {
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let parsed: ReferenceLine = serde_json::from_str(trimmed)
            // serde quotes an unknown field as it is: escaped.
            .map_err(|e| {
                format!(
                    "reference on line {}: {}",
                    n + 1,
                    crate::output::terminal_safe(&e.to_string())
                )
            })?;
        if parsed.key.is_empty() {
            return Err(format!("reference on line {}: empty key", n + 1));
        }
        let mut attrs = Attrs::new();
        for (name, value) in parsed.attrs {
            let text = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(x) => x.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                other => {
                    return Err(format!(
                        "reference on line {}: attribute {name:?} is {}, not a string, number or boolean",
                        n + 1,
                        crate::output::terminal_safe(&other.to_string())
                    ));
                }
            };
            attrs.insert(name, text);
        }
        rows.push((parsed.key, attrs));
    }
    Ok(rows)
}

/// Shard count of `def`: `--shards` for the raw, valid and enriched streams, else the
/// template parameter, else the resource table's default.
pub fn shards_of(template: &Template, def: &StreamDef, shards: Option<u32>) -> Result<u32> {
    let scaled = [resources::RAW, resources::VALID, resources::ENRICHED];
    if let Some(n) = shards.filter(|_| scaled.contains(def)) {
        return Ok(n);
    }
    match template.parameter(def.shards_parameter) {
        None => Ok(def.default_shards),
        Some(v) => match v.trim().parse::<u32>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => bail!(
                "template parameter {}={v:?} is not a shard count (a whole number, at least 1)",
                def.shards_parameter
            ),
        },
    }
}

fn read_text(path: &PathBuf, what: &str) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {what} {}", path.display()))
}

pub async fn run(args: SetupArgs) -> Result<bool> {
    let conn = &args.conn;
    // Read and check everything local before touching the deployment.
    let inputs = read_inputs(&args)?;

    let clients = conn.clients().await;
    let provisioner = Provisioner::new(clients.kinesis.clone(), clients.dynamodb.clone())
        .with_timeout(Duration::from_secs(args.wait_seconds.max(1)));
    let shards_for = |def: &StreamDef| shards_for(&inputs.shard_counts, def);
    eprintln!(
        "sluice setup: prefix {:?}, waiting for every stream and table to be ACTIVE",
        conn.prefix
    );
    let done = provisioner
        .provision(&conn.prefix, shards_for)
        .await
        .map_err(|e| {
            explain(
                e,
                &format!(
                    "creating the streams and tables of prefix {:?}",
                    conn.prefix
                ),
                conn,
            )
        })?;
    let names = conn.names();
    for p in &done {
        eprintln!("{}", provisioned_line(p, &names, shards_for));
    }
    let created = done.iter().filter(|p| p.created).count();
    eprintln!(
        "sluice setup: {} resources ready ({created} created, {} existed)",
        done.len(),
        done.len() - created
    );
    seed_tables(conn, &clients.dynamodb, &names, &inputs).await?;
    Ok(true)
}

/// What `sluice setup` reads before touching the deployment: each stream's shard count,
/// the reference rows and the rules to seed.
struct Inputs {
    shard_counts: Vec<(&'static str, u32)>,
    reference: Vec<(String, Attrs)>,
    rules: Vec<Rule>,
}

/// Reads and checks the shard counts, the reference rows and the rules (`--reference`,
/// `--rules`, else the scenario's, else none).
fn read_inputs(args: &SetupArgs) -> Result<Inputs> {
    let template = args.conn.template()?;
    let mut shard_counts = Vec::new();
    for def in resources::STREAMS {
        shard_counts.push((def.suffix, shards_of(&template, &def, args.shards)?));
    }
    let reference = match &args.sql {
        Some(file) => sql_reference(file, &args.reference)?,
        None => envelope_reference(&args.reference, args.scenario)?,
    };
    let rules: Vec<Rule> = match (&args.rules, args.scenario) {
        (Some(p), _) => parse_rules(&read_text(p, "rules file")?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
        (None, Some(s)) => s.rules(),
        (None, None) => Vec::new(),
    };
    Ok(Inputs {
        shard_counts,
        reference,
        rules,
    })
}

/// The envelope's reference rows: the one `--reference` file's, else the scenario's.
fn envelope_reference(
    paths: &[PathBuf],
    scenario: Option<Scenario>,
) -> Result<Vec<(String, Attrs)>> {
    match (paths, scenario) {
        ([p], _) => parse_reference(&read_text(p, "reference file")?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display())),
        ([], Some(s)) => Ok(s.reference()),
        ([], None) => Ok(Vec::new()),
        _ => bail!("--reference: give one file (several TABLE=FILE ones are for --sql)"),
    }
}

/// A SQL pipeline's reference rows, keyed as its enrich stage reads them, after
/// checking that the pipeline loads (an error names the file, line and column).
fn sql_reference(file: &Path, specs: &[PathBuf]) -> Result<Vec<(String, Attrs)>> {
    let sql = load_pipeline(file)?;
    let specs = specs
        .iter()
        .map(|p| {
            p.to_str()
                .map(str::to_owned)
                .with_context(|| format!("--reference {}: not UTF-8", p.display()))
        })
        .collect::<Result<Vec<String>>>()?;
    let rows = reference_rows(&sql, &specs, |_, _| Ok(()))?;
    eprintln!(
        "sluice setup: pipeline {} loads; {} stored views, {} reference rows",
        file.display(),
        sql.views.len(),
        rows.len()
    );
    Ok(rows)
}

/// A stream's shard count as read, its default if it was not.
fn shards_for(shard_counts: &[(&str, u32)], def: &StreamDef) -> u32 {
    shard_counts
        .iter()
        .find(|(suffix, _)| *suffix == def.suffix)
        .map_or(def.default_shards, |(_, n)| *n)
}

/// The line reporting one provisioned stream or table (with its shards when this run
/// created a stream).
fn provisioned_line(
    p: &Provisioned,
    names: &Names,
    shards_for: impl Fn(&StreamDef) -> u32,
) -> String {
    let detail = if p.kind == "stream" {
        resources::STREAMS
            .iter()
            .find(|d| names.stream(**d) == p.name)
            .map(|d| {
                if p.created {
                    let n = shards_for(d);
                    format!("  ({n} shard{})", if n == 1 { "" } else { "s" })
                } else {
                    String::new()
                }
            })
            .unwrap_or_default()
    } else {
        String::new()
    };
    format!(
        "  {:<8} {:<7} {}{detail}",
        if p.created { "created" } else { "exists" },
        p.kind,
        p.name
    )
}

/// Writes the reference rows and the rules, if any, to their tables.
async fn seed_tables(
    conn: &Connection,
    dynamodb: &aws_sdk_dynamodb::Client,
    names: &Names,
    inputs: &Inputs,
) -> Result<()> {
    let Inputs {
        reference, rules, ..
    } = inputs;
    if !reference.is_empty() {
        let table = names.table(resources::REFERENCE_TABLE);
        let store = DynamoReference::new(dynamodb.clone(), &table);
        seed(reference, |(key, attrs)| {
            let store = store.clone();
            let (key, attrs) = (key.clone(), attrs.clone());
            async move { store.put(&key, &attrs).await }
        })
        .await
        .map_err(|e| explain(e, &format!("seeding reference table {table:?}"), conn))?;
        eprintln!(
            "  seeded   table   {table}  ({} reference rows)",
            reference.len()
        );
    }
    if !rules.is_empty() {
        let table = names.table(resources::RULES_TABLE);
        let store = DynamoRules::new(dynamodb.clone(), &table);
        seed(rules, |rule| {
            let store = store.clone();
            let rule = rule.clone();
            async move { store.put(&rule).await }
        })
        .await
        .map_err(|e| explain(e, &format!("seeding rules table {table:?}"), conn))?;
        eprintln!("  seeded   table   {table}  ({} rules)", rules.len());
    }
    Ok(())
}

/// Writes `rows` with up to 16 requests in flight; the first error wins.
async fn seed<T, F, Fut>(rows: &[T], put: F) -> sluice_core::Result<()>
where
    F: Fn(&T) -> Fut,
    Fut: Future<Output = sluice_core::Result<()>> + Send + 'static,
{
    for chunk in rows.chunks(16) {
        let mut tasks = tokio::task::JoinSet::new();
        for row in chunk {
            tasks.spawn(put(row));
        }
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(result) => result?,
                Err(e) => {
                    return Err(sluice_core::Error::Remote {
                        service: "dynamodb",
                        operation: "PutItem",
                        message: format!("a seeding task failed: {e}"),
                        retryable: false,
                        source: Some(Box::new(e)),
                    });
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provisioned_lines_give_created_streams_their_shards() {
        let names = Names::new("dev");
        let counts = [(resources::RAW.suffix, 4)];
        let shards = |d: &StreamDef| shards_for(&counts, d);
        let raw = names.stream(resources::RAW);
        let line = |kind, name: &str, created| {
            provisioned_line(
                &Provisioned {
                    kind,
                    name: name.to_owned(),
                    created,
                },
                &names,
                shards,
            )
        };
        assert_eq!(
            line("stream", &raw, true),
            format!("  created  stream  {raw}  (4 shards)")
        );
        assert_eq!(
            line("stream", &raw, false),
            format!("  exists   stream  {raw}")
        );
        assert_eq!(
            line("table", "dev-rules", true),
            "  created  table   dev-rules"
        );
        let valid = names.stream(resources::VALID);
        assert_eq!(
            shards_for(&counts, &resources::VALID),
            resources::VALID.default_shards
        );
        assert!(line("stream", &valid, true).starts_with("  created  stream  "));
    }

    #[test]
    fn reference_lines_parse_with_scalar_attributes() {
        let rows = parse_reference(
            "# sites\n{\"key\":\"sensor-001\",\"attrs\":{\"site\":\"north\",\"floor\":3,\"indoor\":true}}\n\n{\"key\":\"sensor-002\"}\n",
        )
        .expect("valid");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0, "sensor-001");
        assert_eq!(
            rows[0].1,
            Attrs::from([
                ("floor".into(), "3".into()),
                ("indoor".into(), "true".into()),
                ("site".into(), "north".into()),
            ])
        );
        assert!(rows[1].1.is_empty());
        let err = parse_reference("{\"key\":\"a\"}\n{\"key\":\"b\",\"attrs\":{\"x\":[1]}}")
            .expect_err("a list is no dimension");
        assert!(err.contains("line 2") && err.contains("\"x\""), "{err}");
        assert!(parse_reference("{\"key\":\"\"}").is_err());
        assert!(parse_reference("{\"id\":\"a\"}").is_err());
    }

    #[test]
    fn shards_come_from_the_flag_then_the_template() {
        let mut t = Template::bundled();
        t.set_parameter("RawShards", "3");
        assert_eq!(shards_of(&t, &resources::RAW, None).expect("ok"), 3);
        assert_eq!(shards_of(&t, &resources::RAW, Some(5)).expect("ok"), 5);
        assert_eq!(shards_of(&t, &resources::ENRICHED, Some(5)).expect("ok"), 5);
        // --shards leaves the small streams alone.
        assert_eq!(
            shards_of(&t, &resources::DEAD_LETTER, Some(5)).expect("ok"),
            t.parameter("DeadLetterShards")
                .map_or(1, |v| v.parse().expect("number"))
        );
        t.set_parameter("AlertsShards", "zero");
        let err = shards_of(&t, &resources::ALERTS, None).expect_err("not a number");
        assert!(err.to_string().contains("AlertsShards"), "{err}");
    }
}
