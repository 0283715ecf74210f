//! `sluice demo --sql`: every example pipeline through the in-process stages stores, for
//! every (view, window, group), the row `sluice sql eval` computes (which the test
//! command compares with Apache Flink); under chaos too; re-sent events with the same
//! PRIMARY KEY change nothing; junk lines are dead letters naming their column.

use std::collections::BTreeSet;
use std::process::Command;

mod common;

use common::sql::*;

#[test]
fn every_example_stores_the_rows_of_the_one_pass_evaluation_also_under_chaos() {
    for name in ["payments", "iot", "clicks", "envelope"] {
        let (sql, events, references) = example(name);
        let mut eval = vec!["sql", "eval", &sql, "--events", &events];
        eval.extend(references.iter().map(String::as_str));
        let (ok, expected, stderr) = run_sluice(&eval);
        assert!(ok, "{name}: {stderr}");
        let expected = rows(&expected);
        assert!(!expected.is_empty(), "{name}: no rows");
        for chaos in [None, Some("3"), Some("11")] {
            let mut demo = vec![
                "demo", "--sql", &sql, "--file", &events, "--json", "--verify",
            ];
            demo.extend(references.iter().map(String::as_str));
            if let Some(seed) = chaos {
                demo.extend(["--chaos", seed]);
            }
            let (ok, stdout, stderr) = run_sluice(&demo);
            assert!(ok, "{name} chaos {chaos:?}: {stderr}");
            let stored = rows(&stdout);
            // Without a PRIMARY KEY, a producer's duplicate (chaos) is another event, on
            // the stages as in Flink: then only --verify (fed what was sent) can tell.
            let keyed = std::fs::read_to_string(&sql)
                .expect("pipeline")
                .contains("PRIMARY KEY");
            if chaos.is_none() || keyed {
                assert_same_rows(&stored, &expected, &format!("{name} chaos {chaos:?}"));
            }
            let s = summary(&stdout);
            assert_eq!(s["verified"], true, "{name} chaos {chaos:?}: {s}");
            assert_eq!(s["unsettled"], 0, "{s}");
            assert_eq!(s["late"], 0, "{s}");
        }
    }
}

#[test]
fn re_sent_events_with_the_same_primary_key_change_nothing() {
    let (sql, events, references) = example("clicks");
    let text = std::fs::read_to_string(&events).expect("events");
    // Every line twice, the copies after the originals (a producer's retry storm).
    let doubled =
        std::env::temp_dir().join(format!("sluice-sql-doubled-{}.ndjson", std::process::id()));
    std::fs::write(&doubled, format!("{text}{text}")).expect("writing");
    let doubled_path = doubled.to_str().expect("utf-8").to_owned();
    let run = |file: &str| {
        let mut demo = vec!["demo", "--sql", &sql, "--file", file, "--json"];
        demo.extend(references.iter().map(String::as_str));
        let (ok, stdout, stderr) = run_sluice(&demo);
        assert!(ok, "{stderr}");
        stdout
    };
    let once = run(&events);
    let twice = run(&doubled_path);
    std::fs::remove_file(&doubled).ok();
    assert_eq!(rows(&once), rows(&twice));
    let (a, b) = (summary(&once), summary(&twice));
    assert_eq!(
        b["events_in"],
        a["events_in"].as_u64().expect("a count") * 2
    );
    // The copies of counted events are duplicates; the copies of filtered ones are
    // filtered again (no view holds them to recognise them by).
    assert_eq!(b["duplicates"], a["counted"], "{b}");
    assert_eq!(b["counted"], a["counted"]);
}

#[test]
fn unreadable_records_are_dead_letters_naming_their_column() {
    let (sql, _, references) = example("clicks");
    let events =
        std::env::temp_dir().join(format!("sluice-sql-junk-{}.ndjson", std::process::id()));
    std::fs::write(
        &events,
        "not json\n{\"id\": \"c1\", \"user_id\": \"u\", \"page\": \"/x\", \"duration_ms\": \"slow\", \"ms\": 1767225600000}\n",
    )
    .expect("writing");
    let path = events.to_str().expect("utf-8").to_owned();
    let mut demo = vec!["demo", "--sql", &sql, "--file", &path, "--json"];
    demo.extend(references.iter().map(String::as_str));
    let (ok, stdout, stderr) = run_sluice(&demo);
    std::fs::remove_file(&events).ok();
    assert!(ok, "{stderr}");
    let letters = lines_of_kind(&stdout, "dead_letter");
    assert_eq!(letters.len(), 2, "{stdout}");
    assert_eq!(letters[0]["reason"], "not_json");
    assert_eq!(letters[1]["reason"], "wrong_type");
    assert!(
        letters[1]["detail"]
            .as_str()
            .expect("a detail")
            .contains("duration_ms"),
        "{}",
        letters[1]
    );
    assert_eq!(summary(&stdout)["dead_letter"], 2);
}

#[test]
fn out_of_order_events_are_late_per_group_and_verify_still_agrees_under_chaos() {
    let (sql, events, references) = example("iot");
    let text = std::fs::read_to_string(&events).expect("events");
    // A deterministic shuffle: every 7th line moved to the end, far behind its group's
    // watermark (the pipeline allows one minute).
    let lines: Vec<&str> = text.lines().collect();
    let mut shuffled: Vec<&str> = Vec::new();
    let mut moved: Vec<&str> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        match i % 7 == 3 {
            true => moved.push(line),
            false => shuffled.push(line),
        }
    }
    shuffled.extend(moved);
    let path = std::env::temp_dir().join(format!("sluice-sql-late-{}.ndjson", std::process::id()));
    std::fs::write(&path, shuffled.join("\n")).expect("writing");
    let file = path.to_str().expect("utf-8").to_owned();
    for chaos in [None, Some("6")] {
        let mut demo = vec!["demo", "--sql", &sql, "--file", &file, "--json", "--verify"];
        demo.extend(references.iter().map(String::as_str));
        if let Some(seed) = chaos {
            demo.extend(["--chaos", seed]);
        }
        let (ok, stdout, stderr) = run_sluice(&demo);
        assert!(ok, "chaos {chaos:?}: {stderr}");
        let s = summary(&stdout);
        assert_eq!(s["verified"], true, "{s}");
        assert!(s["late"].as_u64().expect("late") > 0, "{s}");
        assert!(
            stdout.contains(r#""reason":"late""#),
            "late events are dead letters"
        );
    }
    std::fs::remove_file(&path).ok();
}

#[test]
fn rules_on_view_columns_fire_exactly_where_the_evaluated_rows_say() {
    let (sql, events, _) = example("iot");
    // examples/iot.rules.jsonl: hot-site (COUNT FILTER >= 3), lima-battery (MIN < 20 in
    // group site=lima) and burst (a rate of 2 on per_device's readings).
    let rules = examples_dir().join("iot.rules.jsonl");
    let rules = rules.to_str().expect("utf-8").to_owned();
    let rows = eval_rows(&sql, &events);
    // Threshold rules on monotone columns (a COUNT only grows, a MIN only falls): an
    // alert per row whose final value satisfies the rule, and no other.
    let mut expected: BTreeSet<String> = BTreeSet::new();
    for r in rows.iter().filter(|r| r["view"] == "per_site") {
        let row = &r["row"];
        if row["hot"].as_i64().expect("hot") >= 3 {
            expected.insert(format!("hot-site {} {}", row["site"], row["window_start"]));
        }
        if row["site"] == "lima" && row["lowest_battery"].as_i64().is_some_and(|b| b < 20) {
            expected.insert(format!(
                "lima-battery {} {}",
                row["site"], row["window_start"]
            ));
        }
    }
    // The rate rule on closed windows: readings doubled from the group's preceding
    // minute, for every window that closed (ended over a minute, the WATERMARK's
    // allowed lateness, before the group's newest minute).
    let mut by_group: std::collections::BTreeMap<String, Vec<(String, i64)>> =
        std::collections::BTreeMap::new();
    for r in rows.iter().filter(|r| r["view"] == "per_device") {
        let row = &r["row"];
        let group = format!("{} {}", row["device_id"], row["band"]);
        let start = row["window_start"].as_str().expect("start").to_owned();
        by_group
            .entry(group)
            .or_default()
            .push((start, row["readings"].as_i64().expect("readings")));
    }
    let minute = |t: &str| -> i64 {
        // "2026-01-01T00:MM:00.000Z" within one day in the example.
        let h: i64 = t[11..13].parse().expect("hour");
        let m: i64 = t[14..16].parse().expect("minute");
        h * 60 + m
    };
    for (group, windows) in &by_group {
        let newest = windows
            .iter()
            .map(|(s, _)| minute(s))
            .max()
            .expect("a window");
        for pair in windows.windows(2) {
            let ((before, a), (start, b)) = (&pair[0], &pair[1]);
            let closed = minute(start) + 1 + 1 < newest;
            if minute(start) == minute(before) + 1 && closed && *b as f64 / *a as f64 >= 2.0 {
                expected.insert(format!("burst {group} \"{start}\""));
            }
        }
    }
    let fired: BTreeSet<String> = alerts(&sql, &events, &rules)
        .iter()
        .map(|a| {
            let row = &a["row"];
            match a["rule_id"].as_str().expect("rule") {
                "burst" => format!(
                    "burst {} {} {}",
                    row["device_id"], row["band"], row["window_start"]
                ),
                rule => format!("{rule} {} {}", row["site"], row["window_start"]),
            }
        })
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(fired, expected);
}

#[test]
fn setup_produce_and_run_refuse_a_pipeline_that_does_not_load_before_any_request() {
    let bad = std::env::temp_dir().join(format!("sluice-sql-bad-{}.sql", std::process::id()));
    std::fs::write(
        &bad,
        "CREATE TABLE t (\n  id STRING,\n  x BIGINT\n) WITH ('connector' = 'kinesis', 'format' = 'json');\n\
         CREATE VIEW v AS SELECT id, SUM(x) AS s FROM t GROUP BY id;\n",
    )
    .expect("writing");
    let path = bad.to_str().expect("utf-8").to_owned();
    let (_, events, _) = example("payments");
    // No endpoint answers here: the pipeline is checked before any request is sent.
    let unreachable = "http://127.0.0.1:9";
    for args in [
        vec!["setup", "--endpoint", unreachable, "--sql", &path],
        vec![
            "produce",
            "--endpoint",
            unreachable,
            "--sql",
            &path,
            "--file",
            &events,
        ],
        vec![
            "run",
            "--endpoint",
            unreachable,
            "--sql",
            &path,
            "--until-idle",
            "1",
        ],
    ] {
        let (ok, _, stderr) = run_sluice(&args);
        assert!(!ok, "{args:?}");
        assert!(
            stderr.contains(&format!("{path}: line 5, column 1:")),
            "{args:?}: {stderr}"
        );
    }
    let (ok, _, stderr) = run_sluice(&[
        "setup",
        "--endpoint",
        unreachable,
        "--sql",
        &example("payments").0,
        "--reference",
        &format!("nope={events}"),
    ]);
    std::fs::remove_file(&bad).ok();
    assert!(!ok);
    assert!(
        stderr.contains("line 1") && stderr.contains("`nope` is not a reference table"),
        "{stderr}"
    );
}

#[test]
fn the_read_api_lists_views_and_pages_their_rows_filtered_by_column() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let (sql, events, _) = example("iot");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "demo", "--sql", &sql, "--file", &events, "--json", "--serve", "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the demo");
    let stderr = child.stderr.take().expect("stderr");
    let stdout = child.stdout.take().expect("stdout");
    let server = common::Server::of(child);
    let mut err_lines = BufReader::new(stderr).lines();
    let url = err_lines
        .find_map(|l| {
            let l = l.ok()?;
            l.split_once("http://").map(|(_, rest)| {
                format!("http://{}", rest.split_whitespace().next().unwrap_or(rest))
            })
        })
        .expect("the demo prints the dashboard's URL");
    std::thread::spawn(move || err_lines.for_each(drop));
    // The rows as printed, once the run is done (it keeps serving afterwards).
    let mut printed = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("stdout");
        if line.contains(r#""kind":"summary""#) {
            break;
        }
        if line.starts_with(r#"{"kind":"row","view":"per_site""#) {
            let v: serde_json::Value = serde_json::from_str(&line).expect("JSON");
            printed.push(v["row"].clone());
        }
    }
    let base = url
        .split('?')
        .next()
        .expect("url")
        .trim_end_matches('/')
        .to_owned();
    let (status, list) = common::get(&base, "/api/views");
    assert_eq!(status, 200, "{list}");
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|v| v["view"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["per_site", "per_device"]);
    assert_eq!(list["items"][0]["window_seconds"], 300);
    assert_eq!(list["items"][0]["slide_seconds"], 60);
    // Every lima row of per_site, page by page.
    let mut served = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let path = match &next {
            None => "/api/views/per_site?site=lima&limit=7".to_owned(),
            Some(t) => format!("/api/views/per_site?site=lima&limit=7&next={t}"),
        };
        let (status, page) = common::get(&base, &path);
        assert_eq!(status, 200, "{page}");
        served.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next"].as_str() {
            Some(t) => next = Some(t.to_owned()),
            None => break,
        }
    }
    let key = |r: &serde_json::Value| r.to_string();
    let mut want: Vec<String> = printed
        .iter()
        .filter(|r| r["site"] == "lima")
        .map(key)
        .collect();
    let mut got: Vec<String> = served.iter().map(key).collect();
    want.sort();
    got.sort();
    assert!(!want.is_empty());
    assert_eq!(got, want);
    let (status, bad) = common::get(&base, "/api/views/per_site?sight=lima");
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["parameter"], "sight");
    let (status, missing) = common::get(&base, "/api/views/nope");
    assert_eq!(status, 404, "{missing}");
    drop(server);
}

#[test]
fn a_group_too_long_for_a_key_or_a_string_too_long_to_keep_is_a_dead_letter() {
    let dir = std::env::temp_dir().join(format!("sluice-sql-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sql = dir.join("p.sql");
    std::fs::write(
        &sql,
        "CREATE TABLE s (k STRING, txt STRING, ts TIMESTAMP_LTZ(3), \
         WATERMARK FOR ts AS ts - INTERVAL '1' MINUTE) WITH ('connector' = 'kinesis', 'format' = 'json');\n\
         CREATE VIEW v AS SELECT window_start, window_end, k, COUNT(*) AS n, MIN(txt) AS first \
         FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) \
         GROUP BY window_start, window_end, k;\n",
    )
    .expect("writing");
    let events = dir.join("e.ndjson");
    let long_key = "k".repeat(3000);
    let long_text = "t".repeat(2000);
    std::fs::write(
        &events,
        format!(
            "{{\"k\":\"a\",\"txt\":\"x\",\"ts\":\"2026-01-01 00:00:01Z\"}}\n\
             {{\"k\":\"{long_key}\",\"txt\":\"x\",\"ts\":\"2026-01-01 00:00:02Z\"}}\n\
             {{\"k\":\"a\",\"txt\":\"{long_text}\",\"ts\":\"2026-01-01 00:00:03Z\"}}\n"
        ),
    )
    .expect("writing");
    let (sql, events) = (
        sql.to_str().expect("utf-8").to_owned(),
        events.to_str().expect("utf-8").to_owned(),
    );
    let (ok, stdout, stderr) = run_sluice(&[
        "demo", "--sql", &sql, "--file", &events, "--json", "--verify",
    ]);
    std::fs::remove_dir_all(&dir).ok();
    assert!(ok, "{stderr}");
    let letters = lines_of_kind(&stdout, "dead_letter");
    assert_eq!(letters.len(), 2, "{stdout}");
    assert!(
        letters
            .iter()
            .all(|l| l["reason"] == "invalid_value" && l["stage"] == "enrich")
    );
    let details: Vec<&str> = letters
        .iter()
        .map(|l| l["detail"].as_str().expect("detail"))
        .collect();
    assert!(
        details
            .iter()
            .any(|d| d.contains("a DynamoDB partition key holds 2048")),
        "{details:?}"
    );
    assert!(
        details
            .iter()
            .any(|d| d.contains("a string of 2000 bytes for MIN/MAX")),
        "{details:?}"
    );
    assert_eq!(rows(&stdout).len(), 1);
    let s = summary(&stdout);
    assert_eq!(
        (s["counted"].as_u64(), s["dead_letter"].as_u64()),
        (Some(1), Some(2)),
        "{s}"
    );
}

#[test]
fn every_example_rules_file_loads_and_each_of_its_rules_fires() {
    for name in ["iot", "payments", "clicks"] {
        let (sql, events, references) = example(name);
        let rules = examples_dir().join(format!("{name}.rules.jsonl"));
        let rules = rules.to_str().expect("utf-8").to_owned();
        let text = std::fs::read_to_string(&rules).expect("rules");
        let ids: BTreeSet<String> = text
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("JSON");
                v["id"].as_str().expect("id").to_owned()
            })
            .collect();
        let mut demo = vec![
            "demo", "--sql", &sql, "--file", &events, "--rules", &rules, "--json",
        ];
        demo.extend(references.iter().map(String::as_str));
        let (ok, stdout, stderr) = run_sluice(&demo);
        assert!(ok, "{name}: {stderr}");
        let fired: BTreeSet<String> = lines_of_kind(&stdout, "alert")
            .iter()
            .map(|a| {
                assert!(
                    a["row"].is_object(),
                    "{name}: an alert carries its row: {a}"
                );
                a["rule_id"].as_str().expect("rule").to_owned()
            })
            .collect();
        assert_eq!(fired, ids, "{name}");
    }
}

/// examples/envelope.sql's two views share one group of items (they differ only in
/// their window): a rule on either judges that view's rows only, and fires exactly
/// where the evaluated rows say.
#[test]
fn rules_on_views_that_share_a_group_of_items_judge_their_own_rows() {
    let (sql, events, _) = example("envelope");
    let rows = eval_rows(&sql, &events);
    // Monotone columns (a COUNT and a MAX only grow): an alert per row whose final
    // value satisfies the rule, and no other.
    let mut expected: BTreeSet<String> = BTreeSet::new();
    for r in &rows {
        let row = &r["row"];
        let label = format!("{} {} {}", row["key"], row["type"], row["window_start"]);
        if r["view"] == "per_hour" && row["high"].as_f64().expect("high") > 39.0 {
            expected.insert(format!("hot-hour {label}"));
        }
        if r["view"] == "per_minute" && row["n"].as_i64().expect("n") >= 3 {
            expected.insert(format!("busy-minute {label}"));
        }
    }
    let dir = std::env::temp_dir().join(format!("sluice-shared-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let rules = dir.join("rules.jsonl");
    std::fs::write(
        &rules,
        concat!(
            r#"{"id":"hot-hour","view":"per_hour","column":"high","op":">","threshold":39}"#,
            "\n",
            r#"{"id":"busy-minute","view":"per_minute","column":"n","op":">=","threshold":3}"#,
            "\n"
        ),
    )
    .expect("rules");
    let rules = rules.to_str().expect("utf-8").to_owned();
    let fired: BTreeSet<String> = alerts(&sql, &events, &rules)
        .iter()
        .map(|a| {
            let row = &a["row"];
            format!(
                "{} {} {} {}",
                a["rule_id"].as_str().expect("rule"),
                row["key"],
                row["type"],
                row["window_start"]
            )
        })
        .collect();
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        expected.iter().any(|e| e.starts_with("hot-hour")),
        "{expected:?}"
    );
    assert!(
        expected.iter().any(|e| e.starts_with("busy-minute")),
        "{expected:?}"
    );
    assert_eq!(fired, expected);
}

/// The alert lines of `demo --sql` with rules.
fn alerts(sql: &str, events: &str, rules: &str) -> Vec<serde_json::Value> {
    let (ok, stdout, stderr) = run_sluice(&[
        "demo", "--sql", sql, "--file", events, "--rules", rules, "--json",
    ]);
    assert!(ok, "{stderr}");
    lines_of_kind(&stdout, "alert")
}
