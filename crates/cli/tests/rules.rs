//! Rules end to end: `sluice rules put/list/delete` against the local endpoints, and the
//! "Done when" checks of rate and z-score detection: on a generated input with a count
//! spike and a mean shift, `sluice demo --file F --rules R --json --verify` raises
//! exactly the alerts the verifier's own closed-window math implies (every kind fires),
//! a replay of the same input into the same state raises nothing new (demo: the file
//! twice in one run; `sluice run` over the loopback endpoints: the same file run twice).
//!
//! The demo tests need nothing; the others need `eval "$(infra/local/up)"` and
//! `--features integration`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{BASE_MS, Lcg, json_lines, tempdir};
use serde_json::Value;

/// Rules of every kind over the input of [`write_spiky_input`].
const RULES: &str = r#"# every kind, as `sluice rules put` takes them
{"id":"hot","type":"temp","window_seconds":60,"stat":"max","op":">","threshold":35,"severity":"critical"}
{"id":"surge","kind":"rate","type":"temp","window_seconds":60,"stat":"count","op":">=","threshold":3,"min_count":5}
{"id":"shift","kind":"zscore","type":"temp","key_prefix":"dev-","window_seconds":60,"stat":"mean","op":">","threshold":3,"history":10,"min_history":4,"description":"mean far above the last minutes"}
{"id":"busy-or-quiet","kind":"zscore","type":"*","window_seconds":60,"stat":"count","threshold":2.5,"history":6,"min_history":3}
"#;

/// 20 minutes of readings from three devices, about five a minute each, with a count
/// spike (dev-1, minute 10: 25 readings), a mean shift (dev-2, minute 12: about 40
/// instead of 20), producer repeats and a few invalid lines. Deterministic for `seed`.
fn write_spiky_input(dir: &Path, seed: u64) -> PathBuf {
    let mut rng = Lcg(seed);
    let mut lines: Vec<String> = Vec::new();
    let mut n = 0;
    for minute in 0..20i64 {
        for dev in 0..3 {
            let readings = if dev == 1 && minute == 10 {
                25
            } else {
                4 + rng.next() % 3
            };
            for r in 0..readings {
                n += 1;
                let ts = BASE_MS + minute * 60_000 + (r as i64 * 59_000) / readings as i64;
                let base = if dev == 2 && minute == 12 { 40.0 } else { 20.0 };
                let value = base + (rng.next() % 200) as f64 / 100.0;
                let line = format!(
                    r#"{{"id":"r{n}","key":"dev-{dev}","type":"temp","ts":{ts},"value":{value}}}"#
                );
                if rng.next() % 30 == 0 {
                    lines.push(line.clone()); // a producer retry
                }
                lines.push(line);
                if rng.next() % 60 == 0 {
                    lines.push(format!(
                        r#"{{"id":"bad{n}","key":"dev-{dev}","type":"temp"}}"#
                    ));
                }
            }
        }
    }
    let path = dir.join(format!("spiky-{seed}.ndjson"));
    std::fs::write(&path, lines.join("\n")).expect("write input");
    path
}

fn write_rules(dir: &Path) -> PathBuf {
    let path = dir.join("rules.jsonl");
    std::fs::write(&path, RULES).expect("write rules");
    path
}

fn demo(args: &[&str]) -> Vec<Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("demo")
        .args(args)
        .output()
        .expect("run sluice");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sluice demo {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_lines(&stdout)
}

/// The alert lines, by alert id.
fn alerts_of(lines: &[Value]) -> BTreeMap<String, Value> {
    lines
        .iter()
        .filter(|l| l["kind"] == "alert")
        .map(|l| (l["alert_id"].as_str().expect("id").to_owned(), l.clone()))
        .collect()
}

fn kinds_of(alerts: &BTreeMap<String, Value>) -> Vec<String> {
    let mut kinds: Vec<String> = alerts
        .values()
        .map(|a| a["kind_of_rule"].as_str().expect("kind").to_owned())
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

#[test]
fn demo_raises_exactly_the_implied_alerts_of_every_kind_and_a_replay_raises_none() {
    let dir = tempdir();
    let input = write_spiky_input(&dir, 8);
    let rules = write_rules(&dir);
    let (input_s, rules_s) = (
        input.to_str().expect("utf-8"),
        rules.to_str().expect("utf-8"),
    );
    let once = demo(&["--file", input_s, "--rules", rules_s, "--json", "--verify"]);
    let summary = once.last().expect("summary");
    assert_eq!(summary["verified"], "exact", "{summary}");
    let alerts = alerts_of(&once);
    assert_eq!(
        kinds_of(&alerts),
        ["rate", "threshold", "zscore"],
        "{:?}",
        alerts.keys()
    );
    // The planted anomalies are among them, explained.
    let surge = &alerts["surge|temp#dev-1|60#2026-01-01T00:10:00Z"];
    assert_eq!(surge["observed"], 25.0);
    assert!(surge["previous"].as_f64().expect("previous") >= 4.0);
    let shift = &alerts["shift|temp#dev-2|60#2026-01-01T00:12:00Z"];
    assert!(shift["z"].as_f64().expect("z") > 3.0, "{shift}");
    for field in ["mean", "stddev", "history"] {
        assert!(shift[field].is_number(), "{field}: {shift}");
    }
    // Windows still open at the end (the last 6 minutes: lateness 300 s) raise no rate
    // or z-score alert.
    for a in alerts.values().filter(|a| a["kind_of_rule"] != "threshold") {
        let start = a["window_start"].as_str().expect("start");
        assert!(start < "2026-01-01T00:13:00Z", "open window alerted: {a}");
    }

    // The same input twice in one run: the second copy is all duplicates, so the
    // alerts are the same, and still exactly what the definitions imply.
    let text = std::fs::read_to_string(&input).expect("read");
    let twice = dir.join("twice.ndjson");
    std::fs::write(&twice, format!("{text}\n{text}")).expect("write");
    let replayed = demo(&[
        "--file",
        twice.to_str().expect("utf-8"),
        "--rules",
        rules_s,
        "--json",
        "--verify",
    ]);
    assert_eq!(replayed.last().expect("summary")["verified"], "exact");
    assert_eq!(
        alerts_of(&replayed).keys().collect::<Vec<_>>(),
        alerts.keys().collect::<Vec<_>>(),
        "a replay raises no new alert"
    );
}

#[cfg(feature = "integration")]
mod deployed {
    use super::*;
    use common::{sluice, sluice_ok, unique_prefix};

    fn alert_ids(prefix: &str) -> Vec<String> {
        let (out, _) = sluice_ok(&["alerts", "--prefix", prefix, "--limit", "100000", "--json"]);
        let mut ids: Vec<String> = json_lines(&out)
            .iter()
            .map(|a| a["alert_id"].as_str().expect("id").to_owned())
            .collect();
        ids.sort();
        ids
    }

    #[test]
    fn rules_put_list_delete_round_trip_and_refuse_invalid_files() {
        let prefix = unique_prefix();
        let dir = tempdir();
        sluice_ok(&["setup", "--prefix", &prefix, "--shards", "1"]);

        // An invalid line anywhere: the error names line, rule and field; nothing is
        // written, not even the valid lines before it.
        let bad = dir.join("bad.jsonl");
        std::fs::write(
            &bad,
            format!(
                "{}{}\n",
                RULES,
                r#"{"id":"broken","kind":"zscore","type":"temp","window_seconds":60,"stat":"mean","threshold":2,"history":3,"min_history":4}"#
            ),
        )
        .expect("write");
        let out = sluice(&[
            "rules",
            "put",
            "--prefix",
            &prefix,
            "--file",
            bad.to_str().expect("utf-8"),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        for part in [
            "line 6",
            "\"broken\"",
            "`min_history`",
            "nothing was written",
        ] {
            assert!(err.contains(part), "{part}: {err}");
        }
        let (listed, _) = sluice_ok(&["rules", "list", "--prefix", &prefix, "--json"]);
        assert!(listed.trim().is_empty(), "nothing written: {listed}");

        // A valid file: one item per rule, printed.
        let rules = write_rules(&dir);
        let (put, _) = sluice_ok(&[
            "rules",
            "put",
            "--prefix",
            &prefix,
            "--file",
            rules.to_str().expect("utf-8"),
        ]);
        assert!(put.contains("Wrote 4 rules"), "{put}");
        for id in ["hot", "surge", "shift", "busy-or-quiet"] {
            assert!(put.contains(id), "{id}: {put}");
        }
        // list --json gives back exactly what put takes.
        let (listed, _) = sluice_ok(&["rules", "list", "--prefix", &prefix, "--json"]);
        let mut want = sluice_core::detect::rules::parse_rules(RULES).expect("rules");
        want.sort_by(|a, b| a.id.cmp(&b.id));
        let got =
            sluice_core::detect::rules::parse_rules(&listed).expect("list --json parses as rules");
        assert_eq!(got, want);
        let again = dir.join("again.jsonl");
        std::fs::write(&again, &listed).expect("write");
        sluice_ok(&[
            "rules",
            "put",
            "--prefix",
            &prefix,
            "--file",
            again.to_str().expect("utf-8"),
        ]);
        let (table, _) = sluice_ok(&["rules", "list", "--prefix", &prefix]);
        assert_eq!(table.lines().count(), 5, "{table}");
        assert!(table.contains("count / previous >= 3"), "{table}");
        assert!(
            table.contains("z(mean) >= 3 over 10 windows (min 4)"),
            "{table}"
        );

        // Delete one; deleting it again is an error that says so.
        let (deleted, _) = sluice_ok(&["rules", "delete", "--prefix", &prefix, "surge"]);
        assert!(deleted.contains("Deleted rule \"surge\""), "{deleted}");
        let out = sluice(&["rules", "delete", "--prefix", &prefix, "surge"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no rule \"surge\""), "{err}");
        let (listed, _) = sluice_ok(&["rules", "list", "--prefix", &prefix, "--json"]);
        assert_eq!(listed.lines().count(), 3);

        // setup --rules takes the same format.
        sluice_ok(&[
            "setup",
            "--prefix",
            &prefix,
            "--shards",
            "1",
            "--rules",
            rules.to_str().expect("utf-8"),
        ]);
        let (listed, _) = sluice_ok(&["rules", "list", "--prefix", &prefix, "--json"]);
        assert_eq!(listed.lines().count(), 4);
    }

    /// `sluice run` over the loopback endpoints: the alerts table holds exactly the
    /// implied alerts (`--verify` judges them), and running the same file again into the
    /// same tables raises no new alert.
    /// `GET /alerts` through the query Lambda's handler, over the deployment's tables.
    fn query_function_alerts(prefix: &str) -> BTreeMap<String, Value> {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            let config = sluice_aws::sdk_config().await;
            let dynamodb = sluice_aws::dynamodb_client(&config);
            let aggregates = sluice_aws::dynamodb::DynamoAggregateReader::new(
                dynamodb.clone(),
                format!("{prefix}-aggregates"),
            );
            let alerts =
                sluice_aws::dynamodb::DynamoAlertReader::new(dynamodb, format!("{prefix}-alerts"));
            let request = lambda_http::http::Request::builder()
                .method("GET")
                .uri("https://fn.lambda-url.us-east-1.on.aws/alerts?limit=1000")
                .body(lambda_http::Body::Empty)
                .expect("request");
            let response = sluice_query::handle(&aggregates, &alerts, request)
                .await
                .expect("never fails");
            assert_eq!(response.status(), 200);
            let body: Value = match response.body() {
                lambda_http::Body::Text(t) => serde_json::from_str(t).expect("JSON"),
                other => panic!("not a text body: {other:?}"),
            };
            assert!(body["next"].is_null(), "one page holds them all: {body}");
            alerts_of(body["items"].as_array().expect("items"))
        })
    }

    #[test]
    fn run_raises_exactly_the_implied_alerts_and_a_replay_raises_none() {
        let prefix = unique_prefix();
        let dir = tempdir();
        let input = write_spiky_input(&dir, 9);
        let rules = write_rules(&dir);
        sluice_ok(&[
            "setup",
            "--prefix",
            &prefix,
            "--shards",
            "1",
            "--rules",
            rules.to_str().expect("utf-8"),
        ]);
        let file = input.to_str().expect("utf-8");
        // The replay runs without --verify: its run counts only what it read this time
        // (nothing new), which `--verify` compares with the whole input's truth.
        let run = |label: &str, verify: bool| {
            let mut args = vec![
                "run",
                "--prefix",
                &prefix,
                "--file",
                file,
                "--until-idle",
                "3",
                "--json",
            ];
            if verify {
                args.push("--verify");
            }
            let (out, err) = sluice_ok(&args);
            let summary = json_lines(&out)[0].clone();
            if verify {
                assert_eq!(summary["verified"], "exact", "{label}: {summary}\n{err}");
            }
            summary
        };
        run("first run", true);
        let first = alert_ids(&prefix);
        let (lines, _) = sluice_ok(&["alerts", "--prefix", &prefix, "--limit", "100000", "--json"]);
        let by_id: BTreeMap<String, Value> = alerts_of(&json_lines(&lines));
        assert_eq!(
            kinds_of(&by_id),
            ["rate", "threshold", "zscore"],
            "{first:?}"
        );
        assert_eq!(
            query_function_alerts(&prefix),
            by_id,
            "the query function's handler serves the alerts `sluice alerts` lists"
        );
        let (_server, url) = common::dashboard(&prefix);
        let (status, page) = common::get(&url, "/api/alerts?limit=1000");
        assert_eq!(status, 200, "{page}");
        assert!(page["next"].is_null(), "one page holds them all: {page}");
        assert_eq!(
            alerts_of(page["items"].as_array().expect("items")),
            by_id,
            "the dashboard's endpoint serves the same alerts"
        );
        let second = run("replay", false);
        assert_eq!(second["counted"], 0, "the replay counts nothing");
        assert!(
            second["duplicates"].as_u64().expect("duplicates") > 300,
            "{second}"
        );
        assert_eq!(alert_ids(&prefix), first, "a replay raises no new alert");
    }
}
