//! `sluice rules`: the rules table of a deployment. `put --file` validates the whole
//! file before writing anything (errors name the line, the rule and the field), then
//! writes one item per rule; `list` prints a table, or with `--json` the rules as JSON
//! lines exactly as `put` accepts them; `delete ID` removes one rule and fails when there
//! is none of that id. Detect reads the table with a short cache, so edits apply without
//! a redeploy.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use sluice_aws::DynamoRules;
use sluice_core::detect::rules::{Op, Rule, RuleKind, parse_rules};
use sluice_core::resources;

use crate::connect::Connection;
use crate::output::{self, terminal_safe};
use crate::remote::explain;

#[derive(Args, Debug)]
#[command(
    after_help = "Rule lines (JSON lines; blank lines and # comments allowed):\n  {\"id\":\"overheat\",\"type\":\"temperature\",\"window_seconds\":60,\"stat\":\"max\",\"op\":\">\",\"threshold\":80}\n  {\"id\":\"burst\",\"kind\":\"rate\",\"type\":\"amount\",\"window_seconds\":60,\"stat\":\"count\",\"op\":\">=\",\"threshold\":3}\n  {\"id\":\"odd\",\"kind\":\"zscore\",\"type\":\"amount\",\"window_seconds\":60,\"stat\":\"sum\",\"op\":\">\",\"threshold\":4}\n\nExamples:\n  sluice rules put --file rules.jsonl\n  sluice rules list\n  sluice rules list --json > rules.jsonl\n  sluice rules delete overheat"
)]
pub struct RulesArgs {
    #[command(subcommand)]
    pub command: RulesCommand,
}

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Validate every rule of a JSON lines file, then store each (replacing a rule of
    /// the same id). Nothing is written if any line is invalid.
    Put {
        #[command(flatten)]
        conn: Connection,
        #[arg(long, value_name = "PATH")]
        file: PathBuf,
    },
    /// Print the stored rules: a table, or JSON lines that `put` accepts.
    List {
        #[command(flatten)]
        conn: Connection,
        #[arg(long)]
        json: bool,
    },
    /// Delete one rule by id (fails when there is no such rule).
    Delete {
        #[command(flatten)]
        conn: Connection,
        #[arg(value_name = "ID")]
        id: String,
    },
}

pub async fn run(args: RulesArgs) -> Result<bool> {
    let conn = match &args.command {
        RulesCommand::Put { conn, .. }
        | RulesCommand::List { conn, .. }
        | RulesCommand::Delete { conn, .. } => conn,
    };
    // A file is read and checked before the deployment is touched.
    let to_put = match &args.command {
        RulesCommand::Put { file, .. } => Some(read_rules(file)?),
        _ => None,
    };
    let table = conn.names().table(resources::RULES_TABLE);
    let store = DynamoRules::new(conn.clients().await.dynamodb, &table);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match (&args.command, to_put) {
        (RulesCommand::Put { .. }, Some(rules)) => {
            for rule in &rules {
                store.put(rule).await.map_err(|e| {
                    explain(
                        e,
                        &format!("writing rule {:?} to table {table:?}", rule.id),
                        conn,
                    )
                })?;
            }
            writeln!(
                out,
                "Wrote {} rule{} to table {table}:",
                rules.len(),
                plural(rules.len())
            )?;
            print_rules(&mut out, &rules)?;
        }
        (RulesCommand::List { json, .. }, _) => {
            let listing = store
                .list()
                .await
                .map_err(|e| explain(e, &format!("reading rules table {table:?}"), conn))?;
            for (id, why) in &listing.malformed {
                eprintln!(
                    "warning: item {:?} of table {table} is not a valid rule (detect skips it): {}",
                    terminal_safe(id),
                    terminal_safe(why)
                );
            }
            if *json {
                for rule in &listing.rules {
                    writeln!(out, "{}", output::json_line(rule)?)?;
                }
            } else if listing.rules.is_empty() {
                eprintln!("No rules in table {table}.");
            } else {
                print_rules(&mut out, &listing.rules)?;
            }
        }
        (RulesCommand::Delete { id, .. }, _) => {
            let deleted = store.delete(id).await.map_err(|e| {
                explain(
                    e,
                    &format!("deleting rule {id:?} from table {table:?}"),
                    conn,
                )
            })?;
            if !deleted {
                bail!(
                    "no rule {:?} in table {table}: nothing deleted (see `sluice rules list`)",
                    terminal_safe(id)
                );
            }
            writeln!(
                out,
                "Deleted rule {:?} from table {table}.",
                terminal_safe(id)
            )?;
        }
        (RulesCommand::Put { .. }, None) => bail!("internal: rules to put were not read"),
    }
    out.flush()?;
    Ok(true)
}

/// The rules of a JSON lines file, all validated; the first invalid line is the error.
pub fn read_rules(path: &PathBuf) -> Result<Vec<Rule>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading rules file {}", path.display()))?;
    // Line by line first, so that every error names its line (a range check names
    // only the rule), then the whole file (ids must be unique).
    for (n, line) in text.lines().enumerate() {
        if let Err(e) = parse_rules(line) {
            let e = e.to_string();
            let at = if e.contains("line ") {
                e.replacen("line 1", &format!("line {}", n + 1), 1)
            } else {
                format!("line {}: {e}", n + 1)
            };
            bail!("{}: {at} (nothing was written)", path.display());
        }
    }
    let rules = parse_rules(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e} (nothing was written)", path.display()))?;
    if rules.is_empty() {
        bail!(
            "{}: no rules in the file (nothing was written)",
            path.display()
        );
    }
    Ok(rules)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn op_text(op: Option<Op>) -> &'static str {
    match op {
        Some(Op::Gt) => ">",
        Some(Op::Gte) => ">=",
        Some(Op::Lt) => "<",
        Some(Op::Lte) => "<=",
        None => "",
    }
}

/// What a rule compares, in words: `max > 80`, `count / previous >= 3`,
/// `z(sum) >= 4 over 20 windows (min 5)`.
pub fn condition(rule: &Rule) -> String {
    let stat = serde_json::to_value(rule.stat)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let t = rule.threshold;
    match rule.kind {
        RuleKind::Threshold => format!("{stat} {} {t}", op_text(rule.op)),
        RuleKind::Rate => format!("{stat} / previous {} {t}", op_text(rule.op)),
        RuleKind::Zscore => {
            let side = match rule.op {
                Some(Op::Gt) => format!("z({stat}) >= {t}"),
                Some(Op::Lt) => format!("z({stat}) <= -{t}"),
                _ => format!("|z({stat})| >= {t}"),
            };
            format!(
                "{side} over {} windows (min {})",
                rule.history(),
                rule.min_history()
            )
        }
    }
}

/// One row per rule.
pub fn print_rules(out: &mut impl Write, rules: &[Rule]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<20} {:<9} {:<14} {:<10} {:>7} {:<40} {:>9} {:<8} {:<3}  description",
        "id", "kind", "type", "key prefix", "window", "condition", "min count", "severity", "on"
    )?;
    for r in rules {
        writeln!(
            out,
            "{:<20} {:<9} {:<14} {:<10} {:>7} {:<40} {:>9} {:<8} {:<3}  {}",
            terminal_safe(&r.id),
            r.kind.as_str(),
            terminal_safe(&r.metric),
            terminal_safe(&r.key_prefix),
            format!("{}s", r.window_seconds),
            condition(r),
            r.min_count,
            r.severity.as_str(),
            if r.enabled { "yes" } else { "no" },
            terminal_safe(&r.description)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_say_what_each_kind_compares() {
        let rules = parse_rules(concat!(
            r#"{"id":"a","type":"t","window_seconds":60,"stat":"max","op":">","threshold":80}"#,
            "\n",
            r#"{"id":"b","kind":"rate","type":"t","window_seconds":60,"stat":"count","op":">=","threshold":3}"#,
            "\n",
            r#"{"id":"c","kind":"zscore","type":"t","window_seconds":60,"stat":"sum","threshold":4}"#,
            "\n",
            r#"{"id":"d","kind":"zscore","type":"t","window_seconds":60,"stat":"mean","op":"<","threshold":2.5,"history":8,"min_history":3,"enabled":false}"#,
        ))
        .expect("rules");
        let got: Vec<String> = rules.iter().map(condition).collect();
        assert_eq!(
            got,
            [
                "max > 80",
                "count / previous >= 3",
                "|z(sum)| >= 4 over 20 windows (min 5)",
                "z(mean) <= -2.5 over 8 windows (min 3)"
            ]
        );
        let mut out = Vec::new();
        print_rules(&mut out, &rules).expect("printed");
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(text.lines().count(), 5, "{text}");
        assert!(text.lines().nth(4).expect("d").contains(" no "), "{text}");
    }

    #[test]
    fn a_file_with_an_invalid_line_names_line_rule_and_field() {
        let dir = std::env::temp_dir().join(format!("sluice-rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("rules.jsonl");
        std::fs::write(
            &path,
            concat!(
                r#"{"id":"ok","type":"t","window_seconds":60,"stat":"max","op":">","threshold":1}"#,
                "\n",
                r#"{"id":"bad","kind":"rate","type":"t","window_seconds":60,"stat":"count","threshold":3}"#,
            ),
        )
        .expect("write");
        let err = read_rules(&path).expect_err("rate without op").to_string();
        for part in ["line 2", "\"bad\"", "`op`", "nothing was written"] {
            assert!(err.contains(part), "{part}: {err}");
        }
        std::fs::write(&path, "# only a comment\n").expect("write");
        assert!(read_rules(&path).is_err(), "an empty file writes nothing");
    }
}
