//! `sluice`: run the pipeline locally, feed it, set it up and query it.
//!
//! This file is wiring only: the argument parser, one line per subcommand, and how an
//! error is printed. The crate has three parts:
//!
//! - `commands`: what users run (`demo`, `run`, `setup`, `produce`, `query`,
//!   `alerts`, `dead-letters`, `replay`, `rules`, `dashboard`), a file (or folder) each.
//! - `tools`: the measuring tools (`bench`, `cost`, `coldstart`).
//! - the shared machinery, here at the crate root, which both use and which uses
//!   neither: `pipeline` (the four stages wired through the local event source
//!   mapping, in one process or over real services), `template` (`template.yaml`),
//!   `connect` (endpoint, prefix and SDK clients), `remote` (for the commands that
//!   talk to a deployment: errors that say what to do, argument parsers), `lines`
//!   (producer input read in bounded memory), `digest` (dead letters counted and
//!   sampled), `verify` (`--verify`: the ground truth from the input against what the
//!   pipeline stored), `output` (the `--json` line contract, summaries and tables,
//!   terminal-safe text).
//!
//! No module imports in a cycle; `tests/module_graph.rs` checks it for every crate.

mod commands;
mod connect;
mod digest;
mod lines;
mod output;
mod pipeline;
mod remote;
mod template;
mod tools;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use commands::{dashboard, demo, produce, query, replay, rules, run, setup, sql};
use tools::{bench, coldstart, cost};

#[derive(Parser, Debug)]
#[command(name = "sluice", version, about = "Sluice: a Kinesis -> Lambda -> DynamoDB stream processing pipeline", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the whole pipeline in one process on a synthetic feed or a file; no services needed.
    Demo(demo::DemoArgs),
    /// Run the stages over real Kinesis and DynamoDB through the local event source mapping.
    Run(run::RunArgs),
    /// Measure throughput, DynamoDB writes and request units per event, latency, memory.
    Bench(bench::BenchArgs),
    /// Price the pipeline on AWS (Lambda, DynamoDB, Kinesis) per month and per million
    /// events from measured per-stage figures.
    Cost(cost::CostArgs),
    /// Start each Lambda's release binary against a loopback Runtime API: time to first poll, first response, peak RSS.
    Coldstart(coldstart::ColdStartArgs),
    /// Create the streams and tables of a deployment (idempotent), optionally seeding
    /// reference data and rules.
    Setup(setup::SetupArgs),
    /// Write newline-delimited JSON (a file or a synthetic scenario) to a stream.
    Produce(produce::ProduceArgs),
    /// Print aggregates from the aggregates table, filtered by key, type, window and time.
    Query(query::QueryArgs),
    /// Put, list and delete detection rules in the rules table (validated on write).
    Rules(rules::RulesArgs),
    /// Print the latest alerts from the alerts table.
    Alerts(query::AlertsArgs),
    /// Print what the dead-letter stream holds: rejected input with its reason.
    DeadLetters(query::DeadLettersArgs),
    /// Send the input behind dead letters to the raw stream again, under its first
    /// identity (after a pipeline is fixed, each event then counts once).
    Replay(replay::ReplayArgs),
    /// Serve a live web dashboard of a deployment (aggregates, alerts, dead letters).
    Dashboard(dashboard::DashboardArgs),
    /// Pipelines written in Flink SQL: `sluice sql check FILE` checks one and prints its plan.
    Sql(sql::SqlArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // A usage error quotes the argument it rejects: escaped like any error.
            let text = e.render().to_string();
            for line in text.lines() {
                eprintln!("{}", output::terminal_safe(line));
            }
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
        // --help and --version.
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Demo(args) => demo::run(args).await,
            Command::Run(args) => run::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Cost(args) => cost::run(args).await,
            Command::Coldstart(args) => coldstart::run(args).await,
            Command::Setup(args) => setup::run(args).await,
            Command::Produce(args) => produce::run(args).await,
            Command::Query(args) => query::run_query(args).await,
            Command::Rules(args) => rules::run(args).await,
            Command::Alerts(args) => query::run_alerts(args).await,
            Command::DeadLetters(args) => query::run_dead_letters(args).await,
            Command::Replay(args) => replay::run(args).await,
            Command::Dashboard(args) => dashboard::run(args).await,
            Command::Sql(args) => sql::run(args).await,
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {}", error_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error as the one line `sluice` prints for it: a cause that no wait fixes (no
/// credentials, an endpoint that refuses connections) alone, as it says what to set;
/// otherwise the chain of causes joined by `": "`, each by its `Display` (never a
/// `Debug` dump). Control characters anywhere in it, a newline too, are escaped
/// (`\n`, `\x1b`): whatever an error quotes cannot drive the terminal or break the line.
fn error_line(e: &anyhow::Error) -> String {
    let e: &(dyn std::error::Error + 'static) = e.as_ref();
    let text = match sluice_aws::classify::misconfiguration(e) {
        Some(problem) => problem.to_string(),
        None => sluice_aws::classify::chain_text(e),
    };
    output::terminal_safe(&text).into_owned()
}
