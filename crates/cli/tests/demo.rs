//! `sluice demo --file F --json` against aggregates computed here, independently of the
//! pipeline: a plain fold over the file, de-duplicated by id.

use std::collections::{BTreeMap, HashSet};
use std::process::Command;

use serde_json::Value;

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

const BASE_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/// Expected (count, sum, min, max) per (key, type, window seconds, window start ms).
type Expected = BTreeMap<(String, String, i64, i64), (u64, f64, f64, f64)>;

fn write_input(
    dir: &std::path::Path,
    events: usize,
    seed: u64,
) -> (std::path::PathBuf, Expected, usize) {
    let mut rng = Lcg(seed);
    let mut lines = Vec::new();
    let mut expected: Expected = BTreeMap::new();
    let mut seen = HashSet::new();
    let mut invalid = 0;
    let mut emitted: Vec<String> = Vec::new();
    for i in 0..events {
        if rng.next() % 50 == 0 {
            lines.push(match rng.next() % 3 {
                0 => "{not json".to_owned(),
                1 => format!(r#"{{"id":"x{i}","type":"t","ts":1,"value":1}}"#),
                _ => format!(r#"{{"id":"x{i}","key":"k","type":"t","ts":1,"value":"NaN"}}"#),
            });
            invalid += 1;
            continue;
        }
        if rng.next() % 40 == 0 && !emitted.is_empty() {
            // A producer retry: the very same event again.
            let again = emitted[(rng.next() as usize) % emitted.len()].clone();
            lines.push(again);
            continue;
        }
        let key = format!("dev-{}", rng.next() % 12);
        let metric = if rng.next() % 3 == 0 {
            "pressure"
        } else {
            "temp"
        };
        // Three hours of event time, 90 s of out-of-order jitter (within the lateness).
        let ts = BASE_MS + (i as i64 * 10_800_000 / events as i64) - (rng.next() % 90_000) as i64;
        let value = (rng.next() % 200_000) as f64 / 1000.0 - 50.0;
        let id = format!("ev-{i}");
        let ts_field = if i % 2 == 0 {
            format!("{ts}")
        } else {
            format!("\"{}\"", chrono_like(ts))
        };
        let line = format!(
            r#"{{"id":"{id}","key":"{key}","type":"{metric}","ts":{ts_field},"value":{value}}}"#
        );
        emitted.push(line.clone());
        lines.push(line);
        if seen.insert(id) {
            for size in [60_000i64, 3_600_000] {
                let start = ts - ts.rem_euclid(size);
                let e = expected
                    .entry((key.clone(), metric.to_owned(), size / 1000, start))
                    .or_insert((0, 0.0, f64::INFINITY, f64::NEG_INFINITY));
                e.0 += 1;
                e.1 += value;
                e.2 = e.2.min(value);
                e.3 = e.3.max(value);
            }
        }
    }
    let path = dir.join(format!("input-{seed}.ndjson"));
    std::fs::write(&path, lines.join("\n")).expect("write input");
    (path, expected, invalid)
}

/// RFC 3339 with milliseconds, computed by hand so the test does not share code with
/// the pipeline.
fn chrono_like(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

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

    let mut got: Expected = BTreeMap::new();
    for l in lines.iter().filter(|l| l["kind"] == "aggregate") {
        let start = parse_start(l["window_start"].as_str().expect("start"));
        got.insert(
            (
                l["key"].as_str().expect("key").to_owned(),
                l["type"].as_str().expect("type").to_owned(),
                l["window_seconds"].as_i64().expect("size"),
                start,
            ),
            (
                l["count"].as_u64().expect("count"),
                l["sum"].as_f64().expect("sum"),
                l["min"].as_f64().expect("min"),
                l["max"].as_f64().expect("max"),
            ),
        );
    }
    assert_eq!(got.len(), expected.len(), "same set of windows");
    for (k, want) in &expected {
        let have = got
            .get(k)
            .unwrap_or_else(|| panic!("missing aggregate {k:?}"));
        assert_eq!(have.0, want.0, "count of {k:?}");
        assert_eq!(have.2, want.2, "min of {k:?}");
        assert_eq!(have.3, want.3, "max of {k:?}");
        let tol = 1e-9 * want.1.abs().max(1.0);
        assert!(
            (have.1 - want.1).abs() <= tol,
            "sum of {k:?}: {} vs {}",
            have.1,
            want.1
        );
    }
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

fn parse_start(s: &str) -> i64 {
    // Inverse of chrono_like for whole seconds: compare through formatting.
    let secs = BASE_MS - 86_400_000 * 2;
    let mut t = secs;
    // Window starts are whole minutes within a few days of BASE_MS: search by formatting.
    while t < BASE_MS + 86_400_000 * 2 {
        if chrono_like(t).replace(".000", "") == s {
            return t;
        }
        t += 60_000;
    }
    panic!("unexpected window start {s}");
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sluice-demo-test-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
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
