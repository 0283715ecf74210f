//! `sluice produce`: writes newline-delimited JSON (a file, or a synthetic scenario) to a
//! stream, one record per line, partitioned by each line's `key` (with `--sql`, all
//! under one key: the file is one ordered source), through the same Kinesis sink the
//! stages use (per-key order, retries of failed entries only).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::{ArgGroup, Args};
use sluice_aws::KinesisSink;
use sluice_aws::kinesis::MAX_ENTRIES_PER_REQUEST;
use sluice_core::input::record::OutRecord;
use sluice_core::ports::RecordSink;
use sluice_core::resources;
use sluice_local::scenario::{Scenario, partition_key_of};

use crate::commands::sql::load_pipeline;
use crate::connect::Connection;
use crate::lines::{ChunkBound, LINE_HEAD_BYTES, LineSource};
use crate::pipeline::{SQL_SOURCE_KEY, sendable};
use crate::remote::{explain, parse_time};

#[derive(Args, Debug)]
#[command(
    group(ArgGroup::new("input").required(true).args(["file", "scenario"])),
    after_help = "Progress goes to stderr; the summary `sent N, retried M, failed K` to stdout.\nExits 1 if any record could not be written.\n\nExamples:\n  sluice produce --file events.ndjson\n  sluice produce --sql examples/payments.sql --file examples/payments.events.ndjson\n  sluice produce --scenario iot --events 5000 --seed 7\n  sluice produce --scenario payments --events 100000 --rate 500\n  sluice produce --file replay.ndjson --stream sluice-raw --endpoint http://localhost:4566"
)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub conn: Connection,
    /// Newline-delimited JSON envelopes, one record per non-blank line (sent as they
    /// are, invalid lines included: the ingest stage dead-letters them).
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Synthetic producer instead of a file: iot, payments or clicks.
    #[arg(long)]
    pub scenario: Option<Scenario>,
    /// How many synthetic events to produce.
    #[arg(long, default_value_t = 1_000, conflicts_with = "file")]
    pub events: usize,
    /// Seed of the synthetic producer (same seed, same events).
    #[arg(long, default_value_t = 1, conflicts_with = "file")]
    pub seed: u64,
    /// Event time of the first synthetic event (RFC 3339 or epoch ms;
    /// default 2026-01-01T00:00:00Z).
    #[arg(long, value_parser = parse_time, conflicts_with = "file")]
    pub start: Option<i64>,
    /// Stream to write to (default: the deployment's raw stream, `{prefix}-raw`).
    #[arg(long, value_name = "NAME")]
    pub stream: Option<String>,
    /// Records per second (0: as fast as the stream takes them).
    #[arg(long, value_name = "R", default_value_t = 0.0)]
    pub rate: f64,
    /// The --file is a Flink SQL pipeline's source (this .sql file, checked first): its
    /// lines are sent unchanged, all under one partition key, so the stages read them
    /// in file order.
    #[arg(long, value_name = "FILE.sql", requires = "file")]
    pub sql: Option<PathBuf>,
}

/// Records sent per `PutRecords` call: a full request, or one second's worth at `rate`.
fn chunk_size(rate: f64) -> usize {
    if rate > 0.0 {
        (rate.ceil() as usize).clamp(1, MAX_ENTRIES_PER_REQUEST)
    } else {
        MAX_ENTRIES_PER_REQUEST
    }
}

/// What happened to the records so far.
#[derive(Debug, Default)]
struct Tally {
    /// Records the input holds, when known before reading it (a scenario's).
    known_total: Option<u64>,
    /// Lines read so far (all of them once the input is done).
    read: u64,
    sent: u64,
    retried: u64,
    failed: u64,
    /// Why records failed, with how many each.
    reasons: BTreeMap<String, u64>,
}

impl Tally {
    fn fail(&mut self, n: u64, reason: impl Into<String>) {
        if n > 0 {
            self.failed += n;
            *self.reasons.entry(reason.into()).or_default() += n;
        }
    }
}

pub async fn run(args: ProduceArgs) -> Result<bool> {
    if !args.rate.is_finite() || args.rate < 0.0 {
        bail!(
            "--rate {}: use a number of records per second, 0 for no limit",
            args.rate
        );
    }
    let conn = &args.conn;
    let stream = args
        .stream
        .clone()
        .unwrap_or_else(|| conn.names().stream(resources::RAW));
    if let Some(file) = &args.sql {
        load_pipeline(file)?;
    }
    let (mut input, source, known_total) = open_input(&args)?;

    let clients = conn.clients().await;
    sluice_aws::stream_arn(&clients.kinesis, &stream)
        .await
        .map_err(|e| explain(e, &format!("looking up stream {stream:?}"), conn))?;
    eprintln!("{}", banner(&source, &stream, known_total, args.rate));

    let sink = KinesisSink::new(clients.kinesis.clone(), &stream);
    let interactive = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut tally = Tally {
        known_total,
        ..Tally::default()
    };
    let fatal = send_all(
        &mut input,
        &sink,
        &args,
        &stream,
        &mut tally,
        started,
        interactive,
    )
    .await?;
    if interactive {
        progress(&tally, started, true);
        eprintln!();
    }
    Ok(finish(
        &tally,
        fatal,
        &stream,
        started.elapsed().as_secs_f64(),
    ))
}

/// The input (`--file` or `--scenario`), how the banner names it, and its number of
/// records when known in advance.
fn open_input(args: &ProduceArgs) -> Result<(LineSource, String, Option<u64>)> {
    Ok(match (&args.file, args.scenario) {
        (Some(path), _) => (
            LineSource::file(path)?,
            format!("file {}", path.display()),
            None,
        ),
        (None, Some(s)) => (
            LineSource::scenario(s, args.events, args.seed, args.start),
            format!("scenario {s} (seed {})", args.seed),
            Some(args.events as u64),
        ),
        (None, None) => bail!("give --file PATH or --scenario NAME"),
    })
}

/// The line `sluice produce` starts with.
fn banner(source: &str, stream: &str, known_total: Option<u64>, rate: f64) -> String {
    format!(
        "sluice produce: {} from {source} to stream {stream}{}",
        known_total.map_or_else(|| "records".to_owned(), |n| format!("{n} records")),
        if rate > 0.0 {
            format!(" at {rate} records/s")
        } else {
            String::new()
        }
    )
}

/// Sends the input a request's worth (or a second's at `--rate`) at a time, so memory
/// holds one chunk whatever the input's size, paced at `--rate`, with a progress line
/// on stderr. After an error other than throttling the rest is read on only to be
/// counted as not sent, and that error is returned.
async fn send_all(
    input: &mut LineSource,
    sink: &KinesisSink,
    args: &ProduceArgs,
    stream: &str,
    tally: &mut Tally,
    started: Instant,
    interactive: bool,
) -> Result<Option<anyhow::Error>> {
    let progress_every = Duration::from_millis(if interactive { 250 } else { 2000 });
    let mut last_progress = Instant::now();
    let mut fatal: Option<anyhow::Error> = None;
    let mut offered = 0u64;
    let bound = ChunkBound {
        lines: chunk_size(args.rate),
        ..ChunkBound::REQUEST
    };
    loop {
        let lines = input.next_chunk(bound)?;
        if lines.is_empty() {
            break;
        }
        tally.read += lines.len() as u64;
        let key = args.sql.as_ref().map(|_| SQL_SOURCE_KEY);
        let chunk = records_to_send(lines, key, tally);
        if fatal.is_some() {
            tally.fail(chunk.len() as u64, "not sent after the error above");
            continue;
        }
        if args.rate > 0.0 {
            let due = started + Duration::from_secs_f64(offered as f64 / args.rate);
            tokio::time::sleep_until(due.into()).await;
        }
        offered += chunk.len() as u64;
        if let Some(e) = send_chunk(sink, chunk, tally).await {
            fatal = Some(explain(
                e,
                &format!("writing to stream {stream:?}"),
                &args.conn,
            ));
        }
        if last_progress.elapsed() >= progress_every {
            last_progress = Instant::now();
            progress(tally, started, interactive);
        }
    }
    Ok(fatal)
}

/// Writes one chunk and counts what was written and what was not; returns the error
/// that should stop the sending (throttling that outlasted the retries does not).
async fn send_chunk(
    sink: &KinesisSink,
    chunk: Vec<OutRecord>,
    tally: &mut Tally,
) -> Option<sluice_core::Error> {
    let n = chunk.len() as u64;
    let before = sink.written();
    let result = sink.put_records(chunk).await;
    let written = sink.written() - before;
    tally.sent += written;
    tally.retried = sink.retried();
    let unwritten = n - written.min(n);
    match result {
        Ok(()) => None,
        Err(sluice_core::Error::SinkExhausted {
            attempts,
            last_code,
            ..
        }) => {
            // Throttling that outlasted the retries: report it, try the next chunk.
            tally.fail(
                unwritten,
                format!("{last_code} still after {attempts} attempts"),
            );
            None
        }
        Err(e) => {
            tally.fail(unwritten, e.to_string());
            Some(e)
        }
    }
}

/// Prints the totals (stdout) and any error (stderr); whether every record was written.
fn finish(tally: &Tally, fatal: Option<anyhow::Error>, stream: &str, elapsed: f64) -> bool {
    println!(
        "sent {}, retried {}, failed {} (stream {stream}, {elapsed:.1} s, {:.0} records/s)",
        tally.sent,
        tally.retried,
        tally.failed,
        per_second(tally.sent, elapsed)
    );
    if let Some(e) = fatal {
        eprintln!("error: {e:#}");
    }
    if tally.failed > 0 {
        let why: Vec<String> = tally
            .reasons
            .iter()
            .map(|(reason, n)| format!("{n}: {reason}"))
            .collect();
        eprintln!(
            "error: {} of {} records could not be written to stream {stream:?} ({})",
            tally.failed,
            tally.read,
            why.join("; ")
        );
        return false;
    }
    true
}

/// The records of `lines` that Kinesis can take, under partition key `key` (else each
/// line's `key`); a line it refuses whatever we do (over the record limit with its key)
/// is reported and counted as failed, not sent (a `PutRecords` call holding it would
/// fail whole).
fn records_to_send(lines: Vec<Vec<u8>>, key: Option<&str>, tally: &mut Tally) -> Vec<OutRecord> {
    let first_line = tally.read - lines.len() as u64 + 1;
    let records = lines
        .into_iter()
        .map(|line| OutRecord {
            partition_key: key.map_or_else(
                || partition_key_of(&String::from_utf8_lossy(&line)),
                str::to_owned,
            ),
            data: line,
        })
        .collect();
    let (fitting, refused) = sendable(records);
    for (i, record, error) in refused {
        eprintln!(
            "sluice produce: record {} is {} bytes{}: not sent ({error})",
            first_line + i as u64,
            record.data.len(),
            if record.data.len() >= LINE_HEAD_BYTES {
                " or more"
            } else {
                ""
            }
        );
        tally.fail(1, "over Kinesis's 1 MiB record limit");
    }
    fitting
}

/// Records per second; 0 before any time has passed.
fn per_second(records: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        records as f64 / secs
    } else {
        0.0
    }
}

fn progress(t: &Tally, started: Instant, interactive: bool) {
    let secs = started.elapsed().as_secs_f64();
    let of = t.known_total.map_or_else(String::new, |n| format!("/{n}"));
    let line = format!(
        "  sent {}{of}  retried {}  failed {}  {:.0} records/s",
        t.sent,
        t.retried,
        t.failed,
        per_second(t.sent, secs)
    );
    crate::output::progress(&line, interactive);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_follow_the_rate_within_request_limits() {
        assert_eq!(chunk_size(0.0), 500);
        assert_eq!(chunk_size(0.5), 1);
        assert_eq!(chunk_size(100.0), 100);
        assert_eq!(chunk_size(100.2), 101);
        assert_eq!(chunk_size(20_000.0), 500);
    }

    #[test]
    fn the_banner_names_the_input_and_its_pace() {
        assert_eq!(
            banner("scenario iot (seed 7)", "dev-raw", Some(5000), 0.0),
            "sluice produce: 5000 records from scenario iot (seed 7) to stream dev-raw"
        );
        assert_eq!(
            banner("file e.ndjson", "dev-raw", None, 250.5),
            "sluice produce: records from file e.ndjson to stream dev-raw at 250.5 records/s"
        );
    }

    #[test]
    fn a_sql_source_is_sent_under_one_key_unchanged() {
        let lines = vec![
            br#"{"id":"a","key":"k1"}"#.to_vec(),
            br#"{"id":"b","key":"k2"}"#.to_vec(),
        ];
        let mut t = Tally {
            read: 2,
            ..Tally::default()
        };
        let sent = records_to_send(lines.clone(), Some(SQL_SOURCE_KEY), &mut t);
        assert!(sent.iter().all(|r| r.partition_key == SQL_SOURCE_KEY));
        assert_eq!(
            sent.iter().map(|r| r.data.clone()).collect::<Vec<_>>(),
            lines
        );
        let keyed = records_to_send(lines, None, &mut t);
        assert_eq!(
            keyed
                .iter()
                .map(|r| r.partition_key.as_str())
                .collect::<Vec<_>>(),
            ["k1", "k2"]
        );
    }

    #[test]
    fn tally_counts_failures_by_reason() {
        let mut t = Tally::default();
        t.fail(0, "nothing");
        t.fail(2, "throttled");
        t.fail(3, "throttled");
        t.fail(1, "too large");
        assert_eq!(t.failed, 6);
        assert_eq!(
            t.reasons.into_iter().collect::<Vec<_>>(),
            vec![("throttled".to_owned(), 5), ("too large".to_owned(), 1)]
        );
    }
}
