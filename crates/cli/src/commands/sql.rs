//! `sluice sql`: pipelines written in Flink SQL. `check` reads a pipeline, refuses what
//! is outside the supported subset (with line and column) and prints the plan: what
//! each stage will read, join, window and store.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use sluice_core::sql::Pipeline;

#[derive(Args, Debug)]
pub struct SqlArgs {
    #[command(subcommand)]
    command: SqlCommand,
}

#[derive(Subcommand, Debug)]
enum SqlCommand {
    /// Check a pipeline (.sql) and print its plan; exits non-zero, naming the line and
    /// column, on anything that is not supported.
    #[command(after_help = "Example:\n  sluice sql check examples/payments.sql")]
    Check {
        /// The pipeline: CREATE TABLE (one kinesis source, dynamodb reference tables and
        /// sinks), CREATE VIEW and INSERT INTO statements.
        file: PathBuf,
    },
}

pub async fn run(args: SqlArgs) -> Result<bool> {
    match args.command {
        SqlCommand::Check { file } => {
            let pipeline = read(&file)?;
            print!("{}", pipeline.describe());
            Ok(true)
        }
    }
}

/// Reads and checks the pipeline in `file`; an error names the file, line and column.
pub fn read(file: &PathBuf) -> Result<Pipeline> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the pipeline {}", file.display()))?;
    Pipeline::parse(&text).with_context(|| format!("{}", file.display()))
}
