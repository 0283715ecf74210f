//! End-to-end tests of `sluice setup`, `produce`, `query`, `alerts` and `dead-letters`:
//! the real binary against local Kinesis and DynamoDB endpoints. Start them first:
//!
//! ```sh
//! eval "$(infra/local/up)" && cargo test -p sluice --features integration; infra/local/down
//! ```
//!
//! Each test has its own deployment prefix, so they run in parallel; each stream gets
//! far fewer than 5,000 records (kinesis-local slows down as a stream fills).

#![cfg(feature = "integration")]

mod common;

use std::collections::BTreeMap;

use common::{BASE_MS, json_lines, sluice, sluice_ok, tempdir, unique_prefix, write_input};
use sluice_aws::{DynamoAggregateStore, DynamoAlerts, DynamoReference, DynamoRules};
use sluice_aws::{KinesisShardSource, stream_arn};
use sluice_core::detect::rules::{Alert, Op, RuleKind, Severity, Stat, parse_rules};
use sluice_core::input::dead_letter::DeadLetter;
use sluice_core::input::envelope::Reason;
use sluice_core::input::record::StreamRecord;
use sluice_core::ports::{AggregateStore, AlertStore, ReferenceLookup, RulesSource, ShardSource};
use sluice_core::resources::{self, Names};
use sluice_core::state::item::{AggregateItem, GroupKey, ItemKey, ItemWrite};
use sluice_core::state::statistics::AggState;
use sluice_local::scenario::Scenario;

struct Clients {
    kinesis: aws_sdk_kinesis::Client,
    dynamodb: aws_sdk_dynamodb::Client,
}

async fn clients() -> Clients {
    common::require_endpoints();
    let config = sluice_aws::sdk_config().await;
    Clients {
        kinesis: sluice_aws::kinesis_client(&config),
        dynamodb: sluice_aws::dynamodb_client(&config),
    }
}

/// `sluice setup --prefix P --shards 1` plus `extra`; returns stderr.
fn setup(prefix: &str, extra: &[&str]) -> String {
    let mut args = vec!["setup", "--prefix", prefix, "--shards", "1"];
    args.extend_from_slice(extra);
    sluice_ok(&args).1
}

/// Every record of a stream, oldest first per shard.
async fn read_stream(kinesis: &aws_sdk_kinesis::Client, stream: &str) -> Vec<StreamRecord> {
    let source = KinesisShardSource::connect(kinesis.clone(), stream)
        .await
        .expect("stream exists");
    let mut out = Vec::new();
    for shard in source.shards().await.expect("shards") {
        let mut after: Option<String> = None;
        loop {
            let read = source
                .read(&shard.shard_id, after.as_deref(), 10_000)
                .await
                .expect("read");
            let Some(last) = read.records.last() else {
                break;
            };
            after = Some(last.sequence_number.clone());
            out.extend(read.records);
        }
    }
    out
}

#[tokio::test]
async fn setup_twice_is_idempotent() {
    let prefix = unique_prefix();
    let names = Names::new(&prefix);
    let all: Vec<String> = resources::STREAMS
        .iter()
        .map(|d| names.stream(*d))
        .chain(resources::TABLES.iter().map(|d| names.table(*d)))
        .collect();
    assert_eq!(all.len(), 10);

    let first = sluice_ok(&["setup", "--prefix", &prefix, "--shards", "3"]).1;
    for name in &all {
        assert!(
            first
                .lines()
                .any(|l| l.contains("created") && l.split_whitespace().any(|w| w == name)),
            "{name} created:\n{first}"
        );
    }
    let second = sluice_ok(&["setup", "--prefix", &prefix, "--shards", "3"]).1;
    for name in &all {
        let line = second
            .lines()
            .find(|l| l.split_whitespace().any(|w| w == name))
            .unwrap_or_else(|| panic!("{name} reported:\n{second}"));
        assert!(line.contains("exists"), "{name} exists: {line}");
    }
    assert!(
        !second.contains("created "),
        "nothing created twice:\n{second}"
    );
    assert!(second.contains("0 created, 10 existed"), "{second}");

    // --shards applies to raw/valid/enriched; the others follow the template.
    let c = clients().await;
    for (def, want) in [
        (resources::RAW, 3),
        (resources::ENRICHED, 3),
        (resources::DEAD_LETTER, 1),
    ] {
        let summary = c
            .kinesis
            .describe_stream_summary()
            .stream_name(names.stream(def))
            .send()
            .await
            .expect("describe");
        let s = summary.stream_description_summary().expect("summary");
        assert_eq!(s.open_shard_count(), want, "{}", def.suffix);
        assert_eq!(s.stream_status().as_str(), "ACTIVE");
    }
}

#[tokio::test]
async fn produce_file_sends_every_line_invalid_ones_included() {
    let prefix = unique_prefix();
    setup(&prefix, &[]);
    let dir = tempdir();
    let (path, _, invalid) = write_input(&dir, 400, 5);
    assert!(invalid > 0, "the input has invalid lines");
    // Add a line that is not UTF-8 and blank lines (which are not records).
    let mut bytes = std::fs::read(&path).expect("read");
    bytes.extend_from_slice(b"\n\n\xff\xfe not utf-8\n   \n");
    std::fs::write(&path, &bytes).expect("write");
    let lines: Vec<&[u8]> = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.trim_ascii().is_empty())
        .collect();
    assert_eq!(lines.len(), 401);

    let (stdout, _) = sluice_ok(&[
        "produce",
        "--prefix",
        &prefix,
        "--file",
        path.to_str().expect("utf-8"),
    ]);
    assert!(
        stdout.starts_with("sent 401, retried 0, failed 0"),
        "{stdout}"
    );

    let c = clients().await;
    let got = read_stream(&c.kinesis, &format!("{prefix}-raw")).await;
    let mut sent: Vec<Vec<u8>> = got.iter().map(|r| r.data.clone()).collect();
    let mut want: Vec<Vec<u8>> = lines.iter().map(|l| l.to_vec()).collect();
    sent.sort();
    want.sort();
    assert_eq!(sent, want, "every line is one record, byte for byte");
    for r in &got {
        let key = serde_json::from_slice::<serde_json::Value>(&r.data)
            .ok()
            .and_then(|v| v["key"].as_str().map(str::to_owned));
        match key {
            Some(k) => assert_eq!(r.partition_key, k),
            None => assert!(r.partition_key.starts_with("unkeyed-"), "{r:?}"),
        }
    }
    // Per key, records keep the file's order (one key, one shard, in sequence order).
    let mut want_per_key: BTreeMap<String, Vec<&[u8]>> = BTreeMap::new();
    for l in &lines {
        if let Some(k) = serde_json::from_slice::<serde_json::Value>(l)
            .ok()
            .and_then(|v| v["key"].as_str().map(str::to_owned))
        {
            want_per_key.entry(k).or_default().push(l);
        }
    }
    let mut got_per_key: BTreeMap<String, Vec<&[u8]>> = BTreeMap::new();
    for r in got
        .iter()
        .filter(|r| want_per_key.contains_key(&r.partition_key))
    {
        got_per_key
            .entry(r.partition_key.clone())
            .or_default()
            .push(&r.data);
    }
    assert!(want_per_key.len() >= 12, "{:?}", want_per_key.keys());
    assert_eq!(got_per_key, want_per_key);
}

#[tokio::test]
async fn produce_reports_records_it_cannot_write_and_exits_non_zero() {
    let prefix = unique_prefix();
    setup(&prefix, &[]);
    let dir = tempdir();
    let path = dir.join("big.ndjson");
    let mut data = br#"{"id":"1","key":"k","type":"t","ts":1,"value":1}"#.to_vec();
    data.extend_from_slice(b"\n{\"id\":\"big\",\"key\":\"k\",\"pad\":\"");
    // Far longer than a record: read only as far as it takes to know it cannot be sent.
    data.extend(std::iter::repeat_n(b'a', 24 << 20));
    data.extend_from_slice(b"\"}\n");
    data.extend_from_slice(br#"{"id":"3","key":"k","type":"t","ts":1,"value":3}"#);
    std::fs::write(&path, data).expect("write");
    let out = sluice(&[
        "produce",
        "--prefix",
        &prefix,
        "--file",
        path.to_str().expect("utf-8"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("sent 2, retried 0, failed 1"),
        "{stdout}"
    );
    assert!(
        stderr.contains("1 of 3 records could not be written") && stderr.contains("1 MiB"),
        "{stderr}"
    );
    let c = clients().await;
    let got = read_stream(&c.kinesis, &format!("{prefix}-raw")).await;
    let ids: Vec<String> = got
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.data).expect("json")["id"].to_string()
        })
        .collect();
    assert_eq!(ids, [r#""1""#, r#""3""#], "the rest is sent, in order");
}

/// `sluice run --file` writes what a producer can send and reports the rest: a line
/// over the record limit does not stop the run (it used to fail the whole request).
#[tokio::test]
async fn run_file_reports_a_line_it_cannot_send_and_runs_the_rest() {
    let prefix = unique_prefix();
    setup(&prefix, &[]);
    let dir = tempdir();
    let path = dir.join("long.ndjson");
    let mut data = br#"{"id":"1","key":"k","type":"t","ts":1767225600000,"value":1}"#.to_vec();
    data.extend_from_slice(b"\n{\"id\":\"long\",\"key\":\"k\",\"pad\":\"");
    data.extend(std::iter::repeat_n(b'a', 3 << 20));
    data.extend_from_slice(b"\"}\n");
    data.extend_from_slice(br#"{"id":"3","key":"k","type":"t","ts":1767225600001,"value":3}"#);
    std::fs::write(&path, data).expect("write");
    let (stdout, stderr) = sluice_ok(&[
        "run",
        "--prefix",
        &prefix,
        "--file",
        path.to_str().expect("utf-8"),
        "--until-idle",
        "2",
        "--json",
    ]);
    assert!(
        stderr.contains("bytes or more) not sent") && stderr.contains("wrote 2 records"),
        "{stderr}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().next().expect("summary")).expect("json");
    assert_eq!(summary["events_in"], 2, "{summary}");
    assert_eq!(summary["counted"], 2, "{summary}");
}

#[tokio::test]
async fn produce_scenario_at_a_rate_sends_the_scenario_lines() {
    let prefix = unique_prefix();
    setup(&prefix, &[]);
    let (stdout, _) = sluice_ok(&[
        "produce",
        "--prefix",
        &prefix,
        "--scenario",
        "clicks",
        "--events",
        "60",
        "--seed",
        "4",
        "--rate",
        "200",
    ]);
    assert!(
        stdout.starts_with("sent 60, retried 0, failed 0"),
        "{stdout}"
    );
    let want = Scenario::Clicks.generate(
        60,
        4,
        sluice_local::scenario::DEFAULT_START_MS,
        &sluice_local::scenario::Noise::default(),
    );
    let c = clients().await;
    let mut got: Vec<String> = read_stream(&c.kinesis, &format!("{prefix}-raw"))
        .await
        .into_iter()
        .map(|r| String::from_utf8(r.data).expect("utf-8"))
        .collect();
    let mut want_sorted = want.clone();
    got.sort();
    want_sorted.sort();
    assert_eq!(got, want_sorted);
}

#[test]
fn produce_to_a_missing_stream_fails_and_points_at_setup() {
    let prefix = unique_prefix();
    let dir = tempdir();
    let path = dir.join("one.ndjson");
    std::fs::write(&path, r#"{"id":"1","key":"k","type":"t","ts":1,"value":1}"#).expect("write");
    let out = sluice(&[
        "produce",
        "--prefix",
        &prefix,
        "--file",
        path.to_str().expect("utf-8"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("{prefix}-raw"))
            && stderr.contains(&format!("sluice setup --prefix {prefix}")),
        "{stderr}"
    );
    for args in [
        vec!["query", "--prefix", &prefix],
        vec!["alerts", "--prefix", &prefix],
        vec!["dead-letters", "--prefix", &prefix],
    ] {
        let out = sluice(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr.contains(&format!("sluice setup --prefix {prefix}")),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn query_on_an_empty_table_prints_nothing() {
    let prefix = unique_prefix();
    setup(&prefix, &[]);
    for extra in [
        vec!["--json"],
        vec![],
        vec!["--key", "dev-1", "--type", "temp", "--json"],
    ] {
        let mut args = vec!["query", "--prefix", prefix.as_str()];
        args.extend(extra);
        let (stdout, _) = sluice_ok(&args);
        assert_eq!(stdout, "", "{args:?}");
    }
}

fn item(
    key: &str,
    metric: &str,
    size: i64,
    slide: i64,
    start_ms: i64,
    values: &[f64],
) -> ItemWrite {
    let mut state = AggState::EMPTY;
    for v in values {
        state.push(*v);
    }
    let mut item = AggregateItem::new(ItemKey {
        group: GroupKey {
            key: key.into(),
            metric: metric.into(),
        },
        window: sluice_core::state::window::WindowSpec::hopping(size, slide),
        start_ms,
    });
    item.state = state;
    item.version = 1;
    ItemWrite {
        item,
        expected_version: 0,
        sealed_page: Vec::new(),
    }
}

#[tokio::test]
async fn query_prints_stored_aggregates_like_demo_and_filters() {
    let prefix = unique_prefix();
    setup(&prefix, &[]);
    let c = clients().await;
    let store = DynamoAggregateStore::new(c.dynamodb.clone(), format!("{prefix}-aggregates"));
    let minute = 60_000;
    let writes = [
        item("b-key", "temp", 60, 60, BASE_MS + minute, &[1.0, 3.0]),
        item("b-key", "temp", 60, 60, BASE_MS, &[2.0]),
        item("a-key", "temp", 3600, 600, BASE_MS, &[5.0, 7.0, 9.0]),
        item("a-key", "temp", 60, 60, BASE_MS, &[4.0]),
        item("a-key", "hum", 60, 60, BASE_MS + 2 * minute, &[40.0]),
    ];
    for w in &writes {
        store
            .commit(std::slice::from_ref(w), None)
            .await
            .expect("commit");
    }

    let all = json_lines(&sluice_ok(&["query", "--prefix", &prefix, "--json"]).0);
    let order: Vec<(String, String, i64, String)> = all
        .iter()
        .map(|l| {
            (
                l["key"].as_str().expect("key").to_owned(),
                l["type"].as_str().expect("type").to_owned(),
                l["window_seconds"].as_i64().expect("size"),
                l["window_start"].as_str().expect("start").to_owned(),
            )
        })
        .collect();
    let s = |k: &str, t: &str, w: i64, st: &str| (k.to_owned(), t.to_owned(), w, st.to_owned());
    assert_eq!(
        order,
        vec![
            s("a-key", "hum", 60, "2026-01-01T00:02:00Z"),
            s("a-key", "temp", 60, "2026-01-01T00:00:00Z"),
            s("a-key", "temp", 3600, "2026-01-01T00:00:00Z"),
            s("b-key", "temp", 60, "2026-01-01T00:00:00Z"),
            s("b-key", "temp", 60, "2026-01-01T00:01:00Z"),
        ],
        "sorted by key, type, window, start (the demo's order)"
    );
    let hopping = &all[2];
    assert_eq!(hopping["kind"], "aggregate");
    assert_eq!(hopping["slide_seconds"], 600);
    assert_eq!(hopping["count"], 3);
    assert_eq!(hopping["sum"], 21.0);
    assert_eq!(
        (hopping["min"].as_f64(), hopping["max"].as_f64()),
        (Some(5.0), Some(9.0))
    );
    assert_eq!(hopping["mean"], 7.0);
    let variance = hopping["variance"].as_f64().expect("variance");
    assert!((variance - 8.0 / 3.0).abs() < 1e-12, "{variance}");
    assert!(all[0].get("slide_seconds").is_none(), "tumbling: no slide");
    let fields: Vec<&str> = all[0]
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        [
            "kind",
            "key",
            "type",
            "window_seconds",
            "window_start",
            "count",
            "sum",
            "min",
            "max",
            "mean",
            "variance"
        ],
        "the demo's field order"
    );

    let query = |extra: &[&str]| {
        let mut args = vec!["query", "--prefix", prefix.as_str(), "--json"];
        args.extend_from_slice(extra);
        json_lines(&sluice_ok(&args).0)
    };
    // One group (a Query, not a Scan): both window sizes.
    let group = query(&["--key", "a-key", "--type", "temp"]);
    assert_eq!(group, all[1..3].to_vec());
    assert_eq!(query(&["--key", "b-key"]), all[3..5].to_vec());
    assert_eq!(query(&["--type", "hum"]), all[0..1].to_vec());
    assert_eq!(query(&["--window-seconds", "3600"]), all[2..3].to_vec());
    assert_eq!(
        query(&[
            "--key",
            "b-key",
            "--type",
            "temp",
            "--from",
            "2026-01-01T00:00:30Z"
        ]),
        all[4..5].to_vec()
    );
    let to = (BASE_MS + minute).to_string();
    assert_eq!(
        query(&[
            "--type",
            "temp",
            "--window-seconds",
            "60",
            "--from",
            &BASE_MS.to_string(),
            "--to",
            &to
        ]),
        vec![all[1].clone(), all[3].clone(), all[4].clone()]
    );
    assert_eq!(
        query(&["--key", "b-key", "--to", "2026-01-01T00:00:59Z"]),
        all[3..4].to_vec()
    );
    assert_eq!(
        query(&[
            "--key",
            "b-key",
            "--type",
            "temp",
            "--to",
            &(BASE_MS + 59_999).to_string()
        ]),
        all[3..4].to_vec()
    );
    assert!(query(&["--key", "nobody"]).is_empty());

    // Human mode: a table with every row.
    let (table, _) = sluice_ok(&["query", "--prefix", &prefix]);
    assert_eq!(
        table.lines().filter(|l| l.contains("-key")).count(),
        5,
        "{table}"
    );
    assert!(table.contains("3600/600s"), "{table}");
    assert!(table.contains("5 aggregates"), "{table}");
}

#[tokio::test]
async fn setup_seeds_scenario_reference_and_rules() {
    let prefix = unique_prefix();
    let stderr = setup(&prefix, &["--scenario", "payments"]);
    let want_rules = Scenario::Payments.rules();
    let want_reference = Scenario::Payments.reference();
    assert!(
        stderr.contains(&format!("({} reference rows)", want_reference.len())),
        "{stderr}"
    );
    let c = clients().await;
    let rules = DynamoRules::new(c.dynamodb.clone(), format!("{prefix}-rules"))
        .rules()
        .await
        .expect("rules");
    let mut want_sorted = want_rules.clone();
    want_sorted.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(*rules, want_sorted);

    let reference = DynamoReference::new(c.dynamodb.clone(), format!("{prefix}-reference"));
    let keys: Vec<String> = vec![
        want_reference[0].0.clone(),
        want_reference[3].0.clone(),
        "acct-0001".into(),
    ];
    let got = reference.lookup(&keys).await.expect("lookup");
    assert_eq!(got.get(&keys[0]), Some(&want_reference[0].1));
    assert_eq!(got.get(&keys[1]), Some(&want_reference[3].1));
    assert!(
        !got.contains_key("acct-0001"),
        "odd keys are unknown in the scenario"
    );
}

#[tokio::test]
async fn setup_seeds_files_and_alerts_reads_them_back() {
    let prefix = unique_prefix();
    let dir = tempdir();
    let reference = dir.join("reference.jsonl");
    std::fs::write(
        &reference,
        "# sites\n{\"key\":\"sensor-001\",\"attrs\":{\"site\":\"north\",\"floor\":2}}\n{\"key\":\"sensor-002\",\"attrs\":{\"site\":\"south\"}}\n",
    )
    .expect("write");
    let rules_text = r#"{"id":"too-hot","type":"temperature","window_seconds":60,"stat":"max","op":">","threshold":30,"severity":"critical"}"#;
    let rules = dir.join("rules.jsonl");
    std::fs::write(&rules, rules_text).expect("write");
    let args = [
        "--reference",
        reference.to_str().expect("utf-8"),
        "--rules",
        rules.to_str().expect("utf-8"),
    ];
    setup(&prefix, &args);
    // Seeding again replaces, it does not duplicate.
    setup(&prefix, &args);

    let c = clients().await;
    let stored = DynamoRules::new(c.dynamodb.clone(), format!("{prefix}-rules"))
        .rules()
        .await
        .expect("rules");
    assert_eq!(*stored, parse_rules(rules_text).expect("rule"));
    let got = DynamoReference::new(c.dynamodb.clone(), format!("{prefix}-reference"))
        .lookup(&[
            "sensor-001".into(),
            "sensor-002".into(),
            "sensor-003".into(),
        ])
        .await
        .expect("lookup");
    assert_eq!(got.len(), 2);
    assert_eq!(got["sensor-001"]["site"], "north");
    assert_eq!(got["sensor-001"]["floor"], "2");
    assert_eq!(got["sensor-002"]["site"], "south");

    // A bad reference file is refused before anything is written.
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "{\"key\":\"x\",\"attrs\":{\"a\":[1]}}\n").expect("write");
    let out = sluice(&[
        "setup",
        "--prefix",
        &prefix,
        "--reference",
        bad.to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1"));

    // Alerts raised by the detect stage's store are listed by `sluice alerts`.
    let alerts = DynamoAlerts::new(c.dynamodb.clone(), format!("{prefix}-alerts"));
    let raised: Vec<Alert> = (0..3)
        .map(|i| Alert {
            kind: "alert".into(),
            alert_id: Alert::id_for(
                "too-hot",
                "temperature",
                "sensor-001",
                60,
                BASE_MS + i * 60_000,
            ),
            rule_id: "too-hot".into(),
            kind_of_rule: RuleKind::Threshold,
            severity: Severity::Critical,
            key: "sensor-001".into(),
            metric: "temperature".into(),
            window_seconds: 60,
            window_start: common::chrono_like(BASE_MS + i * 60_000).replace(".000", ""),
            stat: Stat::Max,
            op: Some(Op::Gt),
            threshold: 30.0,
            value: 31.5 + i as f64,
            observed: 31.5 + i as f64,
            count: 4,
            previous: None,
            mean: None,
            stddev: None,
            z: None,
            history: None,
            description: String::new(),
            view: None,
            row: None,
        })
        .collect();
    for a in &raised {
        alerts.raise(a).await.expect("raise");
    }
    let lines = json_lines(&sluice_ok(&["alerts", "--prefix", &prefix, "--json"]).0);
    let newest_first: Vec<serde_json::Value> = raised
        .iter()
        .rev()
        .map(|a| serde_json::to_value(a).expect("json"))
        .collect();
    assert_eq!(lines, newest_first);
    assert_eq!(lines[0]["kind"], "alert");
    let limited =
        json_lines(&sluice_ok(&["alerts", "--prefix", &prefix, "--json", "--limit", "1"]).0);
    assert_eq!(limited, newest_first[..1].to_vec());
    let (human, _) = sluice_ok(&["alerts", "--prefix", &prefix]);
    assert!(
        human.contains("Alerts (3)")
            && human.contains("too-hot (threshold) on sensor-001")
            && human.contains("max 33.5 > 30"),
        "{human}"
    );
}

fn letter(reason: Reason, id: &str, origin: &str) -> DeadLetter {
    DeadLetter {
        reason,
        field: (reason == Reason::MissingField).then(|| "key".to_owned()),
        detail: format!("{reason} in test"),
        id: Some(id.to_owned()),
        origin: Some(origin.to_owned()),
        stage: "ingest".into(),
        source_stream: "x-raw".into(),
        shard_id: "shardId-000000000000".into(),
        sequence_number: "1".into(),
        line: Some(0),
        data: None,
        end_sequence_number: None,
        batch_size: None,
        original: None,
        summary: None,
    }
}

#[tokio::test]
async fn dead_letters_lists_what_the_stream_holds() {
    let prefix = unique_prefix();
    setup(&prefix, &[]);
    let empty = sluice_ok(&["dead-letters", "--prefix", &prefix, "--json"]).0;
    assert_eq!(empty, "");

    let letters = [
        letter(Reason::NotJson, "a", "s:1:0"),
        letter(Reason::MissingField, "b", "s:2:0"),
        letter(Reason::NotJson, "c", "s:3:0"),
    ];
    let mut lines: Vec<String> = letters
        .iter()
        .map(|l| serde_json::to_string(l).expect("json"))
        .collect();
    // The same rejection written twice (a retried batch) is listed once.
    lines.push(lines[1].clone());
    let dir = tempdir();
    let path = dir.join("letters.jsonl");
    std::fs::write(&path, lines.join("\n")).expect("write");
    let stream = format!("{prefix}-dead-letter");
    let (stdout, _) = sluice_ok(&[
        "produce",
        "--prefix",
        &prefix,
        "--stream",
        &stream,
        "--file",
        path.to_str().expect("utf-8"),
    ]);
    assert!(
        stdout.starts_with("sent 4, retried 0, failed 0"),
        "{stdout}"
    );
    let c = clients().await;
    stream_arn(&c.kinesis, &stream).await.expect("stream");

    let got = json_lines(&sluice_ok(&["dead-letters", "--prefix", &prefix, "--json"]).0);
    let mut ids: Vec<&str> = got.iter().map(|l| l["id"].as_str().expect("id")).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["a", "b", "c"]);
    let b = got.iter().find(|l| l["id"] == "b").expect("b");
    assert_eq!(
        *b,
        serde_json::json!({
            "kind": "dead_letter",
            "reason": "missing_field",
            "id": "b",
            "stage": "ingest",
            "field": "key",
            "detail": "missing_field in test",
        }),
        "the demo's dead-letter line"
    );
    assert_eq!(
        json_lines(
            &sluice_ok(&[
                "dead-letters",
                "--prefix",
                &prefix,
                "--json",
                "--limit",
                "2"
            ])
            .0
        )
        .len(),
        2
    );

    let (table, _) = sluice_ok(&["dead-letters", "--prefix", &prefix]);
    assert!(
        table
            .lines()
            .next()
            .is_some_and(|h| h.starts_with("reason")),
        "{table}"
    );
    assert_eq!(
        table.lines().filter(|l| l.starts_with("not_json")).count(),
        2,
        "{table}"
    );
    assert!(
        table.contains("3 dead letters; by reason: missing_field 1, not_json 2"),
        "{table}"
    );
}
