//! `sluice demo --file F --json` against aggregates computed here, independently of the
//! pipeline: a plain fold over the file, de-duplicated by id.

mod common;

use std::process::Command;

use common::{BASE_MS, Lcg, assert_aggregates_match, tempdir, write_input};
use serde_json::Value;

fn run_demo(args: &[&str]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("demo")
        .args(args)
        .output()
        .expect("run sluice");
    assert!(
        out.status.success(),
        "sluice demo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("every stdout line is JSON"))
        .collect()
}

fn check_file(seed: u64, events: usize, extra: &[&str]) {
    let dir = tempdir();
    let (path, expected, invalid) = write_input(&dir, events, seed);
    let path = path.to_str().expect("utf-8 path").to_owned();
    let mut args = vec!["--file", path.as_str(), "--json"];
    args.extend_from_slice(extra);
    let lines = run_demo(&args);
    let summary = lines.last().expect("summary line");
    assert_eq!(summary["kind"], "summary");
    let n = |k: &str| summary[k].as_u64().expect(k);
    assert_eq!(n("events_in"), events as u64);
    assert_eq!(
        n("events_in"),
        n("counted") + n("dead_letter") + n("late") + n("duplicates")
    );
    assert_eq!(n("dead_letter"), invalid as u64);
    assert_eq!(n("late"), 0);
    let unique: u64 = expected
        .iter()
        .filter(|(k, _)| k.2 == 60)
        .map(|(_, v)| v.0)
        .sum();
    assert_eq!(n("counted"), unique);

    assert_aggregates_match(&lines, &expected);
    let reasons: Vec<&str> = lines
        .iter()
        .filter(|l| l["kind"] == "dead_letter")
        .map(|l| l["reason"].as_str().expect("reason"))
        .collect();
    assert_eq!(reasons.len(), invalid);
    assert!(
        reasons
            .iter()
            .all(|r| ["not_json", "missing_field", "wrong_type"].contains(r))
    );
}

#[test]
fn file_input_reproduces_independent_aggregates_exactly_once() {
    check_file(11, 5_000, &[]);
}

#[test]
fn file_input_with_more_shards_gives_the_same_aggregates() {
    check_file(12, 3_000, &["--shards", "4"]);
}

#[test]
fn synthetic_demo_accounts_for_every_event() {
    let lines = run_demo(&["--events", "5000", "--seed", "3", "--json"]);
    let summary = lines.last().expect("summary");
    let n = |k: &str| summary[k].as_u64().expect(k);
    assert_eq!(n("events_in"), 5000);
    assert_eq!(
        n("events_in"),
        n("counted") + n("dead_letter") + n("late") + n("duplicates")
    );
    assert!(
        n("dead_letter") > 0 && n("duplicates") > 0,
        "the synthetic feed is dirty on purpose"
    );
    let counted_in_minutes: u64 = lines
        .iter()
        .filter(|l| l["kind"] == "aggregate" && l["window_seconds"] == 60)
        .map(|l| l["count"].as_u64().expect("count"))
        .sum();
    assert_eq!(counted_in_minutes, n("counted"));
    let again = run_demo(&["--events", "5000", "--seed", "3", "--json"]);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["kind"] == "aggregate")
            .collect::<Vec<_>>(),
        again
            .iter()
            .filter(|l| l["kind"] == "aggregate")
            .collect::<Vec<_>>(),
        "deterministic for a seed"
    );
}

#[test]
fn help_lists_the_commands() {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--help")
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("demo"));
}

/// A file with repeated ids, events out of order within the lateness, and events far
/// later than it.
fn write_messy_input(dir: &std::path::Path, seed: u64) -> std::path::PathBuf {
    let mut rng = Lcg(seed);
    let mut lines = Vec::new();
    for i in 0..4_000i64 {
        let key = format!("m-{}", rng.next() % 7);
        let mut ts = BASE_MS + i * 2_000 - (rng.next() % 240_000) as i64;
        if rng.next() % 100 == 0 {
            ts -= 3_600_000; // far later than the allowed lateness
        }
        let id = if rng.next() % 10 == 0 {
            format!("rep-{}", rng.next() % 50)
        } else {
            format!("u-{i}")
        };
        let value = (rng.next() % 10_000) as f64 / 7.0;
        lines.push(format!(
            r#"{{"id":"{id}","key":"{key}","type":"v","ts":{ts},"value":{value}}}"#
        ));
        if rng.next() % 30 == 0 {
            lines.push(lines[lines.len() - 1].clone());
        }
        if rng.next() % 200 == 0 {
            lines.push("{\"truncated\":".to_owned());
        }
    }
    let path = dir.join(format!("messy-{seed}.ndjson"));
    std::fs::write(&path, lines.join("\n")).expect("write");
    path
}

/// `--verify` also judges alerts: every scenario's default rules fire on its data under
/// chaos (lost emits, redeliveries, crashes), alerts of every kind the rules define, and
/// the alerts raised are the ones the rules imply on the true windows (rate and z-score
/// exactly, on the windows the watermark closed). 20,000 events: enough event time that
/// minutes close (a window closes 5 minutes of lateness after it ends).
#[test]
fn chaos_runs_raise_exactly_the_alerts_the_rules_imply() {
    for (scenario, kinds) in [
        ("iot", &["threshold", "zscore"][..]),
        ("payments", &["rate", "threshold", "zscore"][..]),
        ("clicks", &["rate", "threshold", "zscore"][..]),
    ] {
        // At-least-once too: a retry there judges a redelivered record's events late
        // again, and must still emit their windows (or detect misses their alerts).
        for delivery in ["exactly-once", "at-least-once"] {
            let lines = run_demo(&[
                "--scenario",
                scenario,
                "--events",
                "20000",
                "--json",
                "--chaos",
                "5",
                "--verify",
                "--delivery",
                delivery,
            ]);
            let summary = lines.last().expect("summary");
            assert_eq!(
                summary["verified"], "exact",
                "{scenario}, {delivery}: {summary}"
            );
            let alerts = summary["alerts"].as_u64().expect("alerts");
            assert!(alerts > 0, "{scenario}: the default rules fire on its data");
            let printed: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "alert").collect();
            assert_eq!(printed.len() as u64, alerts, "{scenario}");
            let fired: std::collections::BTreeSet<&str> = printed
                .iter()
                .map(|a| a["kind_of_rule"].as_str().expect("kind_of_rule"))
                .collect();
            assert_eq!(
                fired.into_iter().collect::<Vec<_>>(),
                kinds,
                "{scenario}: every kind of its rules fires"
            );
        }
    }
}

#[test]
fn chaos_runs_verify_exact_in_both_delivery_modes() {
    let dir = tempdir();
    for seed in [1u64, 2, 3] {
        let path = write_messy_input(&dir, seed);
        let path = path.to_str().expect("utf-8");
        for delivery in ["exactly-once", "at-least-once"] {
            let chaos = seed.to_string();
            let lines = run_demo(&[
                "--file",
                path,
                "--json",
                "--chaos",
                &chaos,
                "--verify",
                "--delivery",
                delivery,
            ]);
            let summary = lines.last().expect("summary");
            assert_eq!(
                summary["verified"], "exact",
                "seed {seed}, {delivery}: {summary}"
            );
            let n = |k: &str| summary[k].as_u64().expect(k);
            assert!(n("late") > 0, "the input has far-late events");
            assert_eq!(
                n("events_in"),
                n("counted") + n("dead_letter") + n("late") + n("duplicates")
            );
            let injected = summary["injected"]
                .as_object()
                .expect("injected faults are reported");
            if delivery == "exactly-once" {
                assert!(
                    injected
                        .values()
                        .map(|v| v.as_u64().unwrap_or(0))
                        .sum::<u64>()
                        > 0
                );
                assert!(n("duplicates") > 0);
            }
        }
    }
}

#[test]
fn at_least_once_chaos_injects_only_stage_faults_and_verifies() {
    let lines = run_demo(&[
        "--events",
        "30000",
        "--delivery",
        "at-least-once",
        "--chaos",
        "4",
        "--verify",
        "--json",
    ]);
    let summary = lines.last().expect("summary");
    assert_eq!(summary["verified"], "exact");
    assert_eq!(summary["delivery"], "at-least-once");
    let injected = summary["injected"].as_object().expect("injected");
    let count = |k: &str| {
        injected
            .get(k)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    assert_eq!(count("producer_duplicate"), 0);
    assert_eq!(count("re_emit"), 0);
    assert!(
        injected
            .values()
            .map(|v| v.as_u64().unwrap_or(0))
            .sum::<u64>()
            > 0
    );
}

#[test]
fn synthetic_chaos_verifies_for_every_scenario() {
    for (scenario, seed) in [("iot", "11"), ("payments", "12"), ("clicks", "13")] {
        let lines = run_demo(&[
            "--scenario",
            scenario,
            "--events",
            "8000",
            "--chaos",
            seed,
            "--verify",
            "--json",
        ]);
        assert_eq!(
            lines.last().expect("summary")["verified"],
            "exact",
            "{scenario}"
        );
    }
}

#[test]
fn a_hot_key_with_more_than_fifty_thousand_events_in_one_window_stays_exact() {
    let dir = tempdir();
    let mut lines = Vec::new();
    for i in 0..55_000i64 {
        let ts = BASE_MS + (i * 59_000) / 55_000; // all inside one minute
        lines.push(format!(
            r#"{{"id":"hot-{i}","key":"hot","type":"rps","ts":{ts},"value":{}}}"#,
            i % 10
        ));
        if i % 997 == 0 {
            lines.push(lines[lines.len() - 1].clone()); // producer retry
        }
    }
    let path = dir.join("hot.ndjson");
    std::fs::write(&path, lines.join("\n")).expect("write");
    let path = path.to_str().expect("utf-8");
    for chaos in [None, Some("21")] {
        let mut args = vec!["--file", path, "--json", "--verify"];
        if let Some(seed) = chaos {
            args.extend(["--chaos", seed]);
        }
        let out = run_demo(&args);
        let summary = out.last().expect("summary");
        assert_eq!(summary["verified"], "exact", "{summary}");
        let minute = out
            .iter()
            .find(|l| l["kind"] == "aggregate" && l["window_seconds"] == 60)
            .expect("the hot minute");
        assert_eq!(minute["count"], 55_000);
        assert_eq!(
            minute["sum"],
            (0..55_000).map(|i| (i % 10) as f64).sum::<f64>()
        );
        assert!(summary["duplicates"].as_u64().expect("duplicates") >= 56);
    }
}

#[test]
fn poison_records_are_dead_lettered_and_the_rest_of_the_shard_flows() {
    let dir = tempdir();
    let mut data: Vec<u8> = Vec::new();
    for i in 0..300 {
        let line = match i {
            100 => b"\xff\xfe not utf-8 at all".to_vec(),
            150 => {
                let mut big = br#"{"id":"big","key":"p","type":"t","ts":1767225600000,"value":1,"attrs":{"x":""#.to_vec();
                big.extend(std::iter::repeat_n(b'a', 1_100_000));
                big.extend_from_slice(br#""}}"#);
                big
            }
            200 => br#"{"id":"nan","key":"p","type":"t","ts":1767225600000,"value":NaN}"#.to_vec(),
            _ => format!(
                r#"{{"id":"ok-{i}","key":"p","type":"t","ts":{},"value":1}}"#,
                BASE_MS + i * 100
            )
            .into_bytes(),
        };
        data.extend_from_slice(&line);
        data.push(b'\n');
    }
    let path = dir.join("poison.ndjson");
    std::fs::write(&path, data).expect("write");
    let out = run_demo(&["--file", path.to_str().expect("utf-8"), "--json"]);
    let summary = out.last().expect("summary");
    assert_eq!(summary["counted"], 297, "everything else flowed");
    let mut reasons: Vec<&str> = out
        .iter()
        .filter(|l| l["kind"] == "dead_letter")
        .map(|l| l["reason"].as_str().expect("reason"))
        .collect();
    reasons.sort_unstable();
    assert_eq!(
        reasons,
        ["non_finite_value", "not_utf8", "record_too_large"]
    );
}

#[test]
fn hopping_windows_and_custom_lateness_verify_under_chaos() {
    let lines = run_demo(&[
        "--events",
        "6000",
        "--windows",
        "60,3600,3600/600",
        "--allowed-lateness",
        "120",
        "--chaos",
        "9",
        "--verify",
        "--json",
    ]);
    let summary = lines.last().expect("summary");
    assert_eq!(summary["verified"], "exact", "{summary}");
    let hopping: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["kind"] == "aggregate" && l["slide_seconds"] == 600)
        .collect();
    assert!(!hopping.is_empty());
    // Six hopping windows overlap every instant: their counts add up to six times the events.
    let hopping_total: u64 = hopping
        .iter()
        .map(|l| l["count"].as_u64().expect("count"))
        .sum();
    assert_eq!(
        hopping_total,
        6 * summary["counted"].as_u64().expect("counted")
    );
}

/// More events than one chunk of input (20,000 lines): the later chunks meet streams
/// already trimmed and a ledger and truth fed across rounds, under faults.
#[test]
fn chaos_across_several_input_chunks_verifies_and_adds_up() {
    let lines = run_demo(&["--events", "45000", "--chaos", "5", "--verify", "--json"]);
    let summary = lines.last().expect("summary");
    assert_eq!(summary["verified"], "exact", "{summary}");
    let n = |k: &str| summary[k].as_u64().unwrap_or_else(|| panic!("{k}"));
    assert!(n("events_in") > 45_000, "producer duplicates were injected");
    assert_eq!(
        n("events_in"),
        n("counted") + n("duplicates") + n("dead_letter") + n("late")
    );
    assert_eq!(n("unsettled"), 0);
}

/// A line `{head,"attrs":{"pad":"xx…"}}` of exactly `len` bytes.
fn padded_line(head: &str, len: usize) -> String {
    let empty = format!(r#"{head},"attrs":{{"pad":""}}}}"#);
    let line = format!(
        r#"{head},"attrs":{{"pad":"{}"}}}}"#,
        "x".repeat(len - empty.len())
    );
    assert_eq!(line.len(), len);
    line
}

/// Lines at the Kinesis record limit that the stages refuse as `record_too_large`, each
/// once: at the producer's edge (under 1 MiB alone, over with its partition key), at
/// ingest (under the limit raw, over once normalized: an id and an origin of 79
/// characters each are added) and at enrich (fits until `sensor-000`'s reference
/// attributes of the iot scenario, `floor` and `site`, are joined). `--verify` must
/// apply the same rules: before, it counted all three.
#[test]
fn verify_applies_the_stages_size_rules_at_the_record_limit() {
    const MIB: usize = 1024 * 1024;
    // The stages' bound for one line (1 MiB less room for a partition key).
    const PACKED: usize = MIB - 1024;
    let small = |i: usize, key: &str| {
        format!(
            r#"{{"id":"s{i}","key":"{key}","type":"t","ts":{},"value":1}}"#,
            BASE_MS + i as i64 * 1000
        )
    };
    let at = |i: i64| BASE_MS + 30_000 + i;
    let lines = [
        small(0, "sensor-000"),
        small(1, "sensor-001"),
        // The producer's edge: 1 MiB - 3 bytes and a 10-byte partition key.
        padded_line(
            &format!(
                r#"{{"id":"p","key":"sensor-001","type":"t","ts":{},"value":2"#,
                at(1)
            ),
            MIB - 3,
        ),
        small(2, "sensor-001"),
        // Ingest: 180 bytes more once normalized.
        padded_line(
            &format!(
                r#"{{"key":"sensor-001","type":"t","ts":{},"value":3"#,
                at(2)
            ),
            PACKED - 100,
        ),
        small(3, "sensor-001"),
        // Enrich: 93 bytes more once normalized (fits), 27 more enriched (does not).
        padded_line(
            &format!(
                r#"{{"id":"e","key":"sensor-000","type":"t","ts":{},"value":4"#,
                at(3)
            ),
            PACKED - 100,
        ),
        small(4, "sensor-000"),
        // The same size for a key without reference rows: it fits all the way.
        padded_line(
            &format!(
                r#"{{"id":"f","key":"sensor-001","type":"t","ts":{},"value":5"#,
                at(4)
            ),
            PACKED - 100,
        ),
    ];
    let dir = tempdir();
    let path = dir.join("at-the-limit.ndjson");
    std::fs::write(&path, lines.join("\n")).expect("write input");
    let out = run_demo(&[
        "--file",
        path.to_str().expect("utf-8 path"),
        "--verify",
        "--json",
    ]);
    let summary = out.last().expect("summary");
    assert_eq!(summary["verified"], "exact", "{summary}");
    assert_eq!(
        (
            &summary["events_in"],
            &summary["counted"],
            &summary["dead_letter"]
        ),
        (&9.into(), &6.into(), &3.into()),
        "{summary}"
    );
    let mut refused: Vec<(&str, &str)> = out
        .iter()
        .filter(|l| l["kind"] == "dead_letter")
        .map(|l| {
            (
                l["stage"].as_str().expect("stage"),
                l["reason"].as_str().expect("reason"),
            )
        })
        .collect();
    refused.sort();
    assert_eq!(
        refused,
        [
            ("enrich", "record_too_large"),
            ("ingest", "record_too_large"),
            ("produce", "record_too_large")
        ]
    );
}

/// The human summary of a `--chaos` run lists the faults injected, by name, and shows the
/// first dead letters whole (escaped) with how many there were in all.
#[test]
fn the_human_summary_lists_injected_faults_and_the_first_dead_letters() {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["demo", "--events", "3000", "--chaos", "4"])
        .output()
        .expect("run sluice");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let faults = text
        .lines()
        .find(|l| l.starts_with("Faults injected: "))
        .unwrap_or_else(|| panic!("no faults line in:\n{text}"));
    for name in [
        "producer_duplicate",
        "lost_commit_reply",
        "emit_after_commit",
    ] {
        assert!(faults.contains(name), "{name} missing: {faults}");
    }
    let first = text
        .lines()
        .position(|l| l.starts_with("First "))
        .unwrap_or_else(|| panic!("no dead letters shown in:\n{text}"));
    assert!(
        text.lines()
            .nth(first)
            .expect("line")
            .contains(" dead-letter records, late ones included (all of them: --json)")
    );
    assert!(
        text.lines()
            .nth(first + 1)
            .expect("header")
            .starts_with("reason")
    );
    // Without --chaos there is nothing to list.
    let plain = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["demo", "--events", "3000"])
        .output()
        .expect("run sluice");
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("Faults injected"));
}

/// Over several input chunks (each drained before the next) `--json` still has one line
/// per dead letter, late ones included, and no copy of one that a redelivery wrote again.
#[test]
fn json_dead_letter_lines_match_the_books_across_chunks_under_chaos() {
    let lines = run_demo(&["--events", "45000", "--chaos", "9", "--json"]);
    let summary = lines.last().expect("summary");
    let letters = lines.iter().filter(|l| l["kind"] == "dead_letter").count() as u64;
    let rejected = summary["dead_letter"].as_u64().expect("dead_letter")
        + summary["late"].as_u64().expect("late");
    assert!(rejected > 100, "the synthetic feed is dirty: {summary}");
    assert_eq!(letters, rejected, "{summary}");
}
