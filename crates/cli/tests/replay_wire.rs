//! `sluice replay` over real wire protocols (issue 18): a pipeline that rejects part of
//! its input (an amount declared INT, sent with decimals), fixed (DOUBLE), then the dead
//! letters replayed, twice: every event counts once, the rows are those of the fixed
//! pipeline over the input, and a dead letter holding only the first 256 KiB of its
//! line is replayed from the raw record read back from the stream. Needs
//! `eval "$(infra/local/up)"`.
#![cfg(feature = "integration")]

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::sql::*;
use common::*;
use serde_json::Value;

fn pipeline(amount_type: &str) -> String {
    format!(
        "CREATE TABLE payments (
  merchant STRING,
  amount {amount_type},
  ts TIMESTAMP_LTZ(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' MINUTE
) WITH ('connector' = 'kinesis', 'format' = 'json',
        'json.timestamp-format.standard' = 'ISO-8601');
CREATE VIEW per_minute AS
SELECT window_start, window_end, merchant, COUNT(*) AS n, SUM(amount) AS total
FROM TABLE(TUMBLE(TABLE payments, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, merchant;
"
    )
}

fn n(s: &Value, k: &str) -> u64 {
    s[k].as_u64().unwrap_or_else(|| panic!("{k} in {s}"))
}

/// A fresh deployment (`setup` under `setup_sql`) with `lines` produced to its raw
/// stream (under `produce_sql`): its prefix, and the events' file.
fn set_up_and_produce(
    dir: &Path,
    lines: &[String],
    setup_sql: &str,
    produce_sql: &str,
) -> (String, String) {
    let events = dir.join("events.ndjson");
    std::fs::write(&events, lines.join("\n") + "\n").expect("write");
    let events = events.to_str().expect("utf-8").to_owned();
    let prefix = unique_prefix();
    sluice_ok(&["setup", "--prefix", &prefix, "--sql", setup_sql]);
    sluice_ok(&[
        "produce",
        "--prefix",
        &prefix,
        "--sql",
        produce_sql,
        "--file",
        &events,
    ]);
    (prefix, events)
}

/// `sluice run --sql` until idle: the rows, the summary and stderr.
fn run_sql(prefix: &str, sql: &str) -> (BTreeSet<String>, Value, String) {
    let (out, err) = sluice_ok(&[
        "run",
        "--prefix",
        prefix,
        "--sql",
        sql,
        "--until-idle",
        "3",
        "--json",
    ]);
    (rows(&out), summary(&out), err)
}

/// The counts `sluice replay` prints for `reason`: dead letters, sent, read back, not
/// replayed.
fn reason_counts(out: &str, reason: &str) -> Vec<u64> {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(reason))
        .unwrap_or_else(|| panic!("a {reason} row in:\n{out}"))
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().expect("a count"))
        .collect()
}

#[test]
fn replayed_dead_letters_count_once_after_the_pipeline_is_fixed() {
    let dir = tempdir();
    let broken = dir.join("broken.sql");
    let fixed = dir.join("fixed.sql");
    std::fs::write(&broken, pipeline("INT")).expect("write");
    std::fs::write(&fixed, pipeline("DOUBLE")).expect("write");
    let (broken, fixed) = (
        broken.to_str().expect("utf-8").to_owned(),
        fixed.to_str().expect("utf-8").to_owned(),
    );
    // No PRIMARY KEY: an event's identity is its origin (shard, sequence, line), the
    // case replay must carry over. 12 whole amounts, 8 decimals in strings (Flink
    // reads "10.25" as a DOUBLE, not as an INT), and one line of about 300 KB (an
    // undeclared field) with such an amount.
    let mut lines = Vec::new();
    for i in 0..20 {
        let amount = if i % 5 < 3 {
            format!("{}", 10 + i)
        } else {
            format!("\"{i}.25\"")
        };
        lines.push(format!(
            r#"{{"merchant":"m{}","amount":{amount},"ts":"2026-01-01T00:00:{:02}.000Z"}}"#,
            i % 3,
            i
        ));
    }
    lines.push(format!(
        r#"{{"merchant":"m0","amount":"7.5","ts":"2026-01-01T00:00:30.000Z","note":"{}"}}"#,
        "x".repeat(300_000)
    ));
    let rejected = 8 + 1;
    let (prefix, events) = set_up_and_produce(&dir, &lines, &fixed, &broken);
    let run = |sql: &str| run_sql(&prefix, sql);

    // The broken pipeline: the decimals are dead letters.
    let (_, s, err) = run(&broken);
    assert_eq!(n(&s, "dead_letter"), rejected, "{s}\n{err}");
    assert_eq!(n(&s, "counted"), 12, "{s}");

    // A dry run sends nothing and says what it would.
    let (dry, _) = sluice_ok(&["replay", "--prefix", &prefix, "--dry-run"]);
    let wrong_type = |out: &str| reason_counts(out, "wrong_type");
    assert!(dry.contains("would send"), "{dry}");
    // Dead letters, sent, read back (the 300 KB line), not replayed.
    assert_eq!(wrong_type(&dry), [rejected, rejected, 1, 0], "{dry}");

    // Fixed, replayed, run: each event counts once. (`sluice run` reads each stream from
    // its oldest record, so this run also meets the first copies again: an identity a
    // replay did not carry over would count its event twice.)
    let (sent, _) = sluice_ok(&["replay", "--prefix", &prefix]);
    assert_eq!(wrong_type(&sent), [rejected, rejected, 1, 0], "{sent}");
    // The run's books are kept by origin: a replay is the event it replays.
    let (first_rows, s, err) = run(&fixed);
    let total = lines.len() as u64;
    assert_eq!(n(&s, "events_in"), total, "{s}\n{err}");
    assert_eq!(n(&s, "counted") + n(&s, "duplicates"), total, "{s}\n{err}");
    assert_eq!(n(&s, "late"), 0, "{s}");

    // The rows are the fixed pipeline's over the input, each event once.
    let (ok, demo_out, demo_err) =
        run_sluice(&["demo", "--sql", &fixed, "--file", &events, "--json"]);
    assert!(ok, "{demo_err}");
    let expected = rows(&demo_out);
    let counts: u64 = expected
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_str(r).expect("JSON");
            v["row"]["n"].as_u64().expect("n")
        })
        .sum();
    assert_eq!(counts, total, "the demo counts every event once");
    assert_same_rows(&first_rows, &expected, "after one replay");

    // Replayed again: nothing moves.
    let (again, _) = sluice_ok(&["replay", "--prefix", &prefix, "--reason", "wrong_type"]);
    // The run above also read the lines the broken pipeline's ingest had passed on, from
    // its own streams (`sluice run` starts each stream at its oldest record): the fixed
    // aggregate stage refused them (a changed view starts afresh under a new id) as
    // wrong_type, under no raw origin. They are reported, not sent.
    assert_eq!(
        wrong_type(&again),
        [rejected + 12, rejected, 1, 12],
        "{again}"
    );
    assert!(again.contains("names no raw record"), "{again}");
    let (second_rows, s, err) = run(&fixed);
    assert_eq!(n(&s, "counted"), 0, "nothing counted twice: {s}\n{err}");
    assert_eq!(n(&s, "events_in"), total, "{s}");
    assert_eq!(second_rows, first_rows, "rows after a second replay");

    // A reason with no dead letters sends nothing.
    let (none, _) = sluice_ok(&["replay", "--prefix", &prefix, "--reason", "late"]);
    assert!(
        none.lines()
            .any(|l| l.starts_with("total") && l.split_whitespace().nth(2) == Some("0")),
        "{none}"
    );
}

/// A batch the event source mapping dropped from the raw stream (`retries_exhausted`) is
/// replayed by reading its records back, first to last sequence number, each whole
/// under its own identity: records the pipeline had counted count again not at all.
#[tokio::test]
async fn a_dropped_raw_batch_is_read_back_and_replayed_record_by_record() {
    use sluice_aws::{KinesisShardSource, KinesisSink};
    use sluice_core::input::dead_letter::DeadLetter;
    use sluice_core::input::envelope::Reason;
    use sluice_core::input::record::OutRecord;
    use sluice_core::ports::{RecordSink as _, ShardSource as _};

    let dir = tempdir();
    let fixed = dir.join("fixed.sql");
    std::fs::write(&fixed, pipeline("DOUBLE")).expect("write");
    let fixed = fixed.to_str().expect("utf-8").to_owned();
    let lines: Vec<String> = (0..20)
        .map(|i| {
            format!(
                r#"{{"merchant":"m{}","amount":{i},"ts":"2026-01-01T00:00:{i:02}.000Z"}}"#,
                i % 3
            )
        })
        .collect();
    let (prefix, _) = set_up_and_produce(&dir, &lines, &fixed, &fixed);
    let run = || run_sql(&prefix, &fixed);
    let (first_rows, s, err) = run();
    assert_eq!(n(&s, "counted"), 20, "{s}\n{err}");

    // The raw records 5 to 14 of the one shard they went to (one partition key), as a
    // dropped batch's dead letter names them.
    require_endpoints();
    let kinesis = sluice_aws::kinesis_client(&sluice_aws::sdk_config().await);
    let raw_stream = format!("{prefix}-raw");
    let raw = KinesisShardSource::connect(kinesis.clone(), &raw_stream)
        .await
        .expect("raw stream");
    let mut records = Vec::new();
    for shard in raw.shards().await.expect("shards") {
        let read = raw.read(&shard.shard_id, None, 100).await.expect("read");
        records.extend(read.records);
    }
    assert_eq!(records.len(), 20, "one record per line");
    let (from, to) = (&records[5], &records[14]);
    assert_eq!(from.shard_id, to.shard_id, "one partition key, one shard");
    let letter = DeadLetter {
        reason: Reason::RetriesExhausted,
        field: None,
        detail: "batch dropped after its retries ran out".into(),
        id: None,
        origin: None,
        stage: "ingest".into(),
        source_stream: raw_stream.clone(),
        shard_id: from.shard_id.clone(),
        sequence_number: from.sequence_number.clone(),
        line: None,
        data: None,
        end_sequence_number: Some(to.sequence_number.clone()),
        batch_size: Some(10),
        original: None,
        summary: None,
    };
    KinesisSink::new(kinesis.clone(), format!("{prefix}-dead-letter"))
        .put_records(vec![OutRecord {
            partition_key: from.shard_id.clone(),
            data: serde_json::to_vec(&letter).expect("JSON"),
        }])
        .await
        .expect("dead letter written");

    let (sent, _) = sluice_ok(&[
        "replay",
        "--prefix",
        &prefix,
        "--reason",
        "retries_exhausted",
    ]);
    let counts = reason_counts(&sent, "retries_exhausted");
    // One dead letter, its ten records sent, all read back, none left out.
    assert_eq!(counts, [1, 10, 10, 0], "{sent}");
    let (again_rows, s, err) = run();
    assert_eq!(n(&s, "counted"), 0, "nothing counted twice: {s}\n{err}");
    assert_eq!(n(&s, "events_in"), 20, "{s}");
    assert_eq!(again_rows, first_rows);
}
