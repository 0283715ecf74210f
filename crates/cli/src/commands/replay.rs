//! `sluice replay`: after a pipeline is fixed, the input it rejected is sent again to the
//! raw stream, under the identity it first had ([`sluice_core::input::replay`]), so that
//! each event counts once however often it is replayed.
//!
//! Dead letters are read shard by shard from the dead-letter stream, one page at a
//! time, and what they stand for is sent as it is read: memory holds a page and one
//! request, whatever the stream holds. Only dead letters written before the command
//! started are read (its own re-rejections cannot feed it).

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use sluice_aws::{KinesisShardSource, KinesisSink};
use sluice_core::input::dead_letter::DeadLetter;
use sluice_core::input::envelope::Reason;
use sluice_core::input::record::{MAX_KINESIS_RECORD_BYTES, OutRecord, StreamRecord};
use sluice_core::input::replay_plan::{Replay, frame_whole, plan, recover};
use sluice_core::ports::{Clock as _, RecordSink as _, ShardSource, SystemClock};
use sluice_core::resources;
use sluice_core::time::format_rfc3339;

use crate::connect::Connection;
use crate::output::terminal_safe;
use crate::remote::{explain, parse_time};

#[derive(Args, Debug)]
#[command(
    after_help = "Each dead letter's input is sent to the `{prefix}-raw` stream under the identity it first\nhad (its shard, sequence number and line), so with DELIVERY=exactly-once (the default) an\nevent replayed twice, or one already counted, counts once. A dead letter that holds only\nthe first 256 KiB of its input, and one written past ingest (which holds a processed line),\nare replayed from the raw record they name, read back from the raw stream while it still\nholds it (its retention period) and checked against the dead letter's SHA-256.\n\nExamples:\n  sluice replay --dry-run\n  sluice replay --reason wrong_type --reason missing_field\n  sluice replay --since 2026-01-01T00:00:00Z --until 2026-01-01T06:00:00Z"
)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub conn: Connection,
    /// Only dead letters with this reason (repeatable; `sluice dead-letters` lists them).
    #[arg(long = "reason", value_name = "R", value_parser = parse_reason)]
    pub reasons: Vec<Reason>,
    /// Only dead letters written at or after T (RFC 3339 or epoch ms).
    #[arg(long, value_parser = parse_time, value_name = "T")]
    pub since: Option<i64>,
    /// Only dead letters written before T (default: when the command starts).
    #[arg(long, value_parser = parse_time, value_name = "T")]
    pub until: Option<i64>,
    /// Read and plan everything, send nothing: what would be sent, per reason.
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_reason(s: &str) -> Result<Reason, String> {
    Reason::ALL
        .into_iter()
        .find(|r| r.as_str() == s)
        .ok_or_else(|| {
            let names: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
            format!(
                "{s:?} is no dead-letter reason; one of {}",
                names.join(", ")
            )
        })
}

/// What became of the dead letters of one reason.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct ReasonTally {
    letters: u64,
    /// Records sent (or, with `--dry-run`, that would be).
    sent: u64,
    /// Of those, read back from the raw stream.
    read_back: u64,
    /// Dead letters that could not be replayed.
    not_replayed: u64,
}

/// At most this many distinct explanations of unreplayable dead letters are kept (the
/// rest are counted under the last line).
const MAX_WHY: usize = 20;

#[derive(Debug, Default)]
struct Tally {
    by_reason: BTreeMap<Reason, ReasonTally>,
    why_not: BTreeMap<String, u64>,
    not_dead_letters: u64,
    send_failures: u64,
}

impl Tally {
    fn not_replayed(&mut self, reason: Reason, why: String) {
        self.by_reason.entry(reason).or_default().not_replayed += 1;
        let why = if self.why_not.len() < MAX_WHY || self.why_not.contains_key(&why) {
            why
        } else {
            "other reasons".to_owned()
        };
        *self.why_not.entry(why).or_default() += 1;
    }

    fn totals(&self) -> ReasonTally {
        self.by_reason
            .values()
            .fold(ReasonTally::default(), |a, t| ReasonTally {
                letters: a.letters + t.letters,
                sent: a.sent + t.sent,
                read_back: a.read_back + t.read_back,
                not_replayed: a.not_replayed + t.not_replayed,
            })
    }
}

/// Records to send, flushed a `PutRecords` request's worth at a time.
struct Outbox {
    records: Vec<OutRecord>,
    bytes: usize,
}

impl Outbox {
    const RECORDS: usize = 500;
    const BYTES: usize = 4 * 1024 * 1024;

    fn full(&self) -> bool {
        self.records.len() >= Self::RECORDS || self.bytes >= Self::BYTES
    }
}

/// The raw stream, read back record by record; the last record read is kept, as the
/// dead letters of one record's lines come one after another.
struct ReadBack {
    source: KinesisShardSource,
    last: Option<StreamRecord>,
}

impl ReadBack {
    async fn record(
        &mut self,
        shard_id: &str,
        sequence_number: &str,
    ) -> Result<StreamRecord, String> {
        if let Some(last) = &self.last {
            if last.shard_id == shard_id && last.sequence_number == sequence_number {
                return Ok(last.clone());
            }
        }
        let gone = || {
            "the raw stream holds no record at the origin it names (past the stream's retention period, or the dead letter names no raw record)".to_owned()
        };
        let records = match self.source.read_at(shard_id, sequence_number, 1).await {
            Ok(records) => records,
            // Kinesis answers a sequence number it does not hold (trimmed, or of another
            // stream) with ResourceNotFound or InvalidArgument.
            Err(e) if !e.is_retryable() => return Err(gone()),
            Err(e) => return Err(format!("reading it back from the raw stream failed: {e}")),
        };
        let record = records
            .into_iter()
            .find(|r| r.sequence_number == sequence_number)
            .ok_or_else(gone)?;
        self.last = Some(record.clone());
        Ok(record)
    }

    /// The raw records of a shard from `from` to `to`, both included: at most
    /// [`MAX_BATCH_RECORDS`], what one batch of the event source mapping holds (a dead
    /// letter naming a wider range is refused, never read into memory whole).
    async fn range(
        &mut self,
        shard_id: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<StreamRecord>, String> {
        let mut out = Vec::new();
        let mut page = self
            .source
            .read_at(shard_id, from, 1000)
            .await
            .map_err(|e| format!("reading the dropped batch back failed: {e}"))?;
        while let Some(last) = page.last().map(|r| r.sequence_number.clone()) {
            let done = sequence_order(&last, to).is_ge();
            out.extend(
                page.into_iter()
                    .filter(|r| sequence_order(&r.sequence_number, to).is_le()),
            );
            if out.len() > MAX_BATCH_RECORDS {
                return Err(format!(
                    "the dropped batch would hold more than {MAX_BATCH_RECORDS} records, more than a batch can"
                ));
            }
            if done {
                break;
            }
            page = self
                .source
                .read(shard_id, Some(&last), 1000)
                .await
                .map_err(|e| format!("reading the dropped batch back failed: {e}"))?
                .records;
        }
        if out.is_empty() {
            return Err(
                "the raw stream no longer holds the batch (past its retention period)".into(),
            );
        }
        Ok(out)
    }
}

/// The most records one batch of a Kinesis event source mapping holds (`BatchSize`).
const MAX_BATCH_RECORDS: usize = 10_000;

/// Sequence numbers are decimal strings of up to 128 digits: longer is later.
fn sequence_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

pub async fn run(args: ReplayArgs) -> Result<bool> {
    let conn = &args.conn;
    let names = conn.names();
    let dead_stream = names.stream(resources::DEAD_LETTER);
    let raw_stream = names.stream(resources::RAW);
    let until = args.until.unwrap_or_else(|| SystemClock.now_ms());
    let clients = conn.clients().await;
    let reading_letters = |e: sluice_core::Error| {
        explain(
            e,
            &format!("reading dead-letter stream {dead_stream:?}"),
            conn,
        )
    };
    let letters = KinesisShardSource::connect(clients.kinesis.clone(), &dead_stream)
        .await
        .map_err(reading_letters)?;
    let mut read_back = ReadBack {
        source: KinesisShardSource::connect(clients.kinesis.clone(), &raw_stream)
            .await
            .map_err(|e| explain(e, &format!("reading raw stream {raw_stream:?}"), conn))?,
        last: None,
    };
    let sink = KinesisSink::new(clients.kinesis.clone(), &raw_stream);
    eprintln!(
        "sluice replay: dead letters of {dead_stream} written {}before {} to {raw_stream}{}",
        args.since
            .map(|s| format!("from {} ", format_rfc3339(s)))
            .unwrap_or_default(),
        format_rfc3339(until),
        if args.dry_run {
            " (dry run: nothing is sent)"
        } else {
            ""
        }
    );
    let started = Instant::now();
    let interactive = std::io::stderr().is_terminal();
    let mut last_progress = Instant::now();
    let mut tally = Tally::default();
    let mut outbox = Outbox {
        records: Vec::new(),
        bytes: 0,
    };
    for shard in letters
        .shards()
        .await
        .map_err(|e| explain(e, &format!("listing shards of {dead_stream:?}"), conn))?
    {
        let mut after: Option<String> = None;
        loop {
            let read = letters
                .read(&shard.shard_id, after.as_deref(), 1000)
                .await
                .map_err(reading_letters)?;
            let Some(last) = read.records.last() else {
                break;
            };
            after = Some(last.sequence_number.clone());
            let mut past_until = false;
            for record in &read.records {
                if record.arrival_ms >= until {
                    past_until = true;
                    break;
                }
                if args.since.is_some_and(|s| record.arrival_ms < s) {
                    continue;
                }
                let Ok(letter) = serde_json::from_slice::<DeadLetter>(&record.data) else {
                    tally.not_dead_letters += 1;
                    continue;
                };
                if !args.reasons.is_empty() && !args.reasons.contains(&letter.reason) {
                    continue;
                }
                replay_one(
                    &letter,
                    record,
                    &raw_stream,
                    &mut read_back,
                    &mut tally,
                    &mut outbox,
                )
                .await;
                if outbox.full() {
                    flush(&sink, &mut outbox, &mut tally, args.dry_run).await;
                }
                if last_progress.elapsed()
                    >= Duration::from_millis(if interactive { 250 } else { 2000 })
                {
                    last_progress = Instant::now();
                    progress(&tally, started, interactive);
                }
            }
            if past_until || read.ended || read.behind_ms.unwrap_or(0) <= 0 {
                break;
            }
        }
    }
    flush(&sink, &mut outbox, &mut tally, args.dry_run).await;
    if interactive {
        progress(&tally, started, true);
        eprintln!();
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    report(&mut out, &tally, args.dry_run)?;
    out.flush()?;
    Ok(tally.send_failures == 0)
}

/// Step: one dead letter planned, read back where it must be, and queued.
async fn replay_one(
    letter: &DeadLetter,
    record: &StreamRecord,
    raw_stream: &str,
    read_back: &mut ReadBack,
    tally: &mut Tally,
    outbox: &mut Outbox,
) {
    tally.by_reason.entry(letter.reason).or_default().letters += 1;
    // Dead letters keep their input's partition key: so does the replay.
    let key = record.partition_key.clone();
    let (records, from_raw) = match plan(letter, raw_stream) {
        Replay::Send(data) => (Ok(vec![data]), false),
        Replay::Recover {
            shard_id,
            sequence_number,
            want,
            sha256,
        } => {
            let recovered = match read_back.record(&shard_id, &sequence_number).await {
                Ok(raw) => recover(&raw, &want, sha256.as_deref()).map(|d| vec![d]),
                Err(e) => Err(e),
            };
            (recovered, true)
        }
        Replay::RecoverRange { shard_id, from, to } => {
            let recovered = read_back.range(&shard_id, &from, &to).await.map(|raws| {
                raws.iter()
                    .map(|r| frame_whole(&r.data, &r.shard_id, &r.sequence_number))
                    .collect()
            });
            (recovered, true)
        }
        Replay::Skip(why) => (Err(why), false),
    };
    let records = match records {
        Ok(records) => records,
        Err(why) => return tally.not_replayed(letter.reason, why),
    };
    for data in records {
        if data.len() + key.len() > MAX_KINESIS_RECORD_BYTES {
            tally.not_replayed(
                letter.reason,
                format!(
                    "the input with its replay header ({} bytes) no longer fits a Kinesis record",
                    data.len()
                ),
            );
            continue;
        }
        let counts = tally.by_reason.entry(letter.reason).or_default();
        counts.sent += 1;
        counts.read_back += u64::from(from_raw);
        outbox.bytes += data.len() + key.len();
        outbox.records.push(OutRecord {
            partition_key: key.clone(),
            data,
        });
    }
}

/// Step: the queued records sent (throttling retried by the sink).
async fn flush(sink: &KinesisSink, outbox: &mut Outbox, tally: &mut Tally, dry_run: bool) {
    let records = std::mem::take(&mut outbox.records);
    outbox.bytes = 0;
    if dry_run || records.is_empty() {
        return;
    }
    let n = records.len() as u64;
    let before = sink.written();
    if let Err(e) = sink.put_records(records).await {
        let unwritten = n - (sink.written() - before).min(n);
        tally.send_failures += unwritten;
        eprintln!("error: {unwritten} replayed records were not written: {e}");
    }
}

fn progress(tally: &Tally, started: Instant, interactive: bool) {
    let t = tally.totals();
    let line = format!(
        "replay: {} dead letters read, {} records sent ({} read back from the raw stream), {} not replayable, {:.0} s",
        t.letters,
        t.sent,
        t.read_back,
        t.not_replayed,
        started.elapsed().as_secs_f64()
    );
    if interactive {
        eprint!("\r{line}");
    } else {
        eprintln!("{line}");
    }
}

/// The closing table: per reason, dead letters read, records sent (and of those read
/// back from the raw stream), dead letters not replayed; then why not.
fn report(out: &mut impl std::io::Write, tally: &Tally, dry_run: bool) -> std::io::Result<()> {
    let sent = if dry_run { "would send" } else { "sent" };
    writeln!(
        out,
        "{:<20} {:>12} {:>12} {:>12} {:>14}",
        "reason", "dead letters", sent, "read back", "not replayed"
    )?;
    let t = tally.totals();
    for (reason, r) in tally
        .by_reason
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .chain(std::iter::once(("total", &t)))
    {
        writeln!(
            out,
            "{reason:<20} {:>12} {:>12} {:>12} {:>14}",
            r.letters, r.sent, r.read_back, r.not_replayed
        )?;
    }
    for (why, n) in &tally.why_not {
        writeln!(out, "not replayed ({n}): {}", terminal_safe(why))?;
    }
    if tally.not_dead_letters > 0 {
        writeln!(
            out,
            "skipped {} records of the dead-letter stream that are not dead letters",
            tally.not_dead_letters
        )?;
    }
    if tally.send_failures > 0 {
        writeln!(
            out,
            "{} records failed to send (see above)",
            tally.send_failures
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_parse_by_their_dead_letter_names() {
        assert_eq!(parse_reason("wrong_type"), Ok(Reason::WrongType));
        let err = parse_reason("wrongtype").expect_err("unknown");
        assert!(err.contains("wrong_type"), "{err}");
    }

    #[test]
    fn sequence_numbers_order_by_length_then_digits() {
        use std::cmp::Ordering::*;
        assert_eq!(sequence_order("9", "10"), Less);
        assert_eq!(sequence_order("12", "11"), Greater);
        assert_eq!(sequence_order("12", "12"), Equal);
    }

    #[test]
    fn the_report_counts_per_reason_and_keeps_a_bounded_list_of_why_not() {
        let mut tally = Tally::default();
        tally
            .by_reason
            .entry(Reason::WrongType)
            .or_default()
            .letters = 3;
        tally.by_reason.entry(Reason::WrongType).or_default().sent = 2;
        for i in 0..(MAX_WHY + 5) {
            tally.not_replayed(Reason::Late, format!("why {i}"));
        }
        assert_eq!(tally.why_not.len(), MAX_WHY + 1);
        assert_eq!(tally.why_not["other reasons"], 5);
        let mut out = Vec::new();
        report(&mut out, &tally, true).expect("written");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.contains("would send"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("wrong_type") && l.contains(" 3 ") && l.contains(" 2 ")),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("total") && l.ends_with(&format!("{}", MAX_WHY + 5))),
            "{text}"
        );
    }
}
