//! `APPROX_PERCENTILE` in a SQL view through the in-process stages: every row within 1%
//! of the exact lower nearest-rank value computed here from the events sent (skewed and
//! uniform values, negatives and zeros, small and large groups); duplicates, redelivery
//! and chaos move nothing; percentiles of one column keep one sketch; a view whose
//! sketches cannot fit an item is refused on load.

use std::collections::BTreeMap;

mod common;

use common::sql::*;

const PIPELINE: &str = "
CREATE TABLE requests (
  id STRING,
  route STRING,
  latency_ms DOUBLE,
  ts TIMESTAMP_LTZ(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' MINUTE,
  PRIMARY KEY (id) NOT ENFORCED
) WITH ('connector' = 'kinesis', 'format' = 'json',
        'json.timestamp-format.standard' = 'ISO-8601');

CREATE VIEW latency AS
SELECT window_start, window_end, route,
       COUNT(*) AS n,
       APPROX_PERCENTILE(latency_ms, 0.5) AS p50,
       PERCENTILE_APPROX(latency_ms, 0.99) AS p99,
       APPROX_PERCENTILE(latency_ms, 0) AS low
FROM TABLE(TUMBLE(TABLE requests, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, route;
";

/// A small deterministic generator (xorshift), so the test needs no randomness crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Events of four routes over three minutes: `skewed` heavy-tailed (a few huge
/// values), `uniform`, `signed` (negatives and zeros) and `tiny` (a handful a minute).
/// Returns the event lines and, per (minute, route), the values sent.
fn events() -> (String, BTreeMap<(u32, &'static str), Vec<f64>>) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut lines = String::new();
    let mut sent: BTreeMap<(u32, &'static str), Vec<f64>> = BTreeMap::new();
    let mut id = 0;
    for minute in 0..3u32 {
        for second in 0..60u32 {
            for route in ["skewed", "uniform", "signed", "tiny"] {
                let per_second = if route == "tiny" {
                    u32::from(second % 20 == 0)
                } else {
                    12
                };
                for _ in 0..per_second {
                    let u = rng.next();
                    let value = match route {
                        "skewed" => (1.0 / (1.0 - u * 0.999)).powi(2) * 3.0,
                        "uniform" => 5.0 + 995.0 * u,
                        "signed" if u < 0.2 => 0.0,
                        "signed" => (u - 0.5) * 400.0,
                        _ => 1.0 + 10.0 * u,
                    };
                    id += 1;
                    lines.push_str(&format!(
                        "{{\"id\":\"r{id}\",\"route\":\"{route}\",\"latency_ms\":{value},\"ts\":\"2026-03-01T10:{minute:02}:{second:02}Z\"}}\n"
                    ));
                    sent.entry((minute, route)).or_default().push(value);
                }
            }
        }
    }
    (lines, sent)
}

fn lower_nearest_rank(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[(p * (sorted.len() - 1) as f64).floor() as usize]
}

fn write(name: &str, text: &str) -> String {
    let path = std::env::temp_dir().join(format!("sluice-sketch-{}-{name}", std::process::id()));
    std::fs::write(&path, text).expect("writing");
    path.to_str().expect("utf-8").to_owned()
}

/// `sluice demo --sql SQL --file FILE --json --verify [--chaos SEED]`, checked to
/// succeed and verify: its stdout.
fn verified_demo(sql: &str, file: &str, chaos: Option<&str>) -> String {
    let mut args = vec!["demo", "--sql", sql, "--file", file, "--json", "--verify"];
    if let Some(seed) = chaos {
        args.extend(["--chaos", seed]);
    }
    let (ok, stdout, stderr) = run_sluice(&args);
    assert!(ok, "chaos {chaos:?}: {stderr}");
    let s = summary(&stdout);
    assert_eq!(s["verified"], true, "{s}");
    stdout
}

/// Duplicates (every event sent twice: a retry storm) and chaos (redelivery,
/// throttling, producer duplicates) leave every row of `plain` as it was, bit for bit.
/// Removes the three files (pipeline, events, events twice) afterwards.
fn duplicates_move_nothing(plain: &str, [sql, file, doubled]: [String; 3], seeds: [&str; 2]) {
    for (events, chaos) in [
        (&doubled, None),
        (&file, Some(seeds[0])),
        (&doubled, Some(seeds[1])),
    ] {
        let stored = verified_demo(&sql, events, chaos);
        assert_eq!(rows(&stored), rows(plain), "{events} chaos {chaos:?}");
    }
    for f in [sql, file, doubled] {
        std::fs::remove_file(f).ok();
    }
}

#[test]
fn percentiles_are_within_one_percent_of_exact_and_duplicates_move_nothing() {
    let sql = write("latency.sql", PIPELINE);
    let (lines, sent) = events();
    let file = write("events.ndjson", &lines);
    // Every event sent twice, the copies after the originals.
    let doubled = write("doubled.ndjson", &format!("{lines}{lines}"));
    let plain = verified_demo(&sql, &file, None);
    let rows_sent = lines_of_kind(&plain, "row");
    assert_eq!(rows_sent.len(), sent.len(), "one row per (minute, route)");
    let mut worst: f64 = 0.0;
    for line in &rows_sent {
        let row = &line["row"];
        let minute: u32 = row["window_start"].as_str().expect("start")[14..16]
            .parse()
            .expect("minute");
        let route = row["route"].as_str().expect("route");
        let values = sent
            .iter()
            .find(|((m, r), _)| *m == minute && *r == route)
            .map(|(_, v)| v)
            .expect("a group that was sent");
        assert_eq!(row["n"], values.len(), "{row}");
        for (column, p) in [("p50", 0.5), ("p99", 0.99), ("low", 0.0)] {
            let got = row[column].as_f64().expect("a number");
            let exact = lower_nearest_rank(values, p);
            let error = (got - exact).abs() / exact.abs().max(f64::MIN_POSITIVE);
            assert!(
                (got - exact).abs() <= 0.01 * exact.abs() * (1.0 + 1e-12),
                "{route} minute {minute} {column}: {got} against exact {exact}"
            );
            worst = worst.max(if exact == 0.0 { 0.0 } else { error });
        }
    }
    eprintln!("largest relative error: {worst:.5}");
    duplicates_move_nothing(&plain, [sql, file, doubled], ["4", "9"]);
}

#[test]
fn a_view_whose_sketches_cannot_fit_an_item_is_refused_on_load() {
    // Percentiles under different filters keep sketches of their own.
    let four = PIPELINE.replace(
        "AS low\n",
        "AS low,\n\
         APPROX_PERCENTILE(latency_ms, 0.9) FILTER (WHERE route = 'a') AS a90,\n\
         APPROX_PERCENTILE(latency_ms, 0.9) FILTER (WHERE route = 'b') AS b90,\n\
         APPROX_PERCENTILE(latency_ms, 0.9) FILTER (WHERE route = 'c') AS c90\n",
    );
    let sql = write("four.sql", &four);
    let (ok, _, stderr) = run_sluice(&["sql", "check", &sql]);
    assert!(!ok, "four sketches fit?");
    assert!(
        stderr.contains("view `latency`: its aggregate states can take")
            && stderr.contains("split the view"),
        "{stderr}"
    );
    let three = write("three.sql", PIPELINE);
    let (ok, stdout, stderr) = run_sluice(&["sql", "check", &three]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("APPROX_PERCENTILE(latency_ms, 0.5) -> DOUBLE"),
        "{stdout}"
    );
    // Three percentiles of one column keep one sketch.
    let total: usize = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("aggregate state <= "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the state's bound");
    assert!((86_000..90_000).contains(&total), "{stdout}");
    assert_eq!(
        stdout.matches("reads the sketch of the percentile").count(),
        2,
        "{stdout}"
    );
    for f in [sql, three] {
        std::fs::remove_file(f).ok();
    }
}

#[test]
fn a_rule_on_a_percentile_fires_where_the_rows_cross_it() {
    let sql = write("rules.sql", PIPELINE);
    let (lines, _) = events();
    let file = write("rules-events.ndjson", &lines);
    let (ok, stdout, stderr) = run_sluice(&["demo", "--sql", &sql, "--file", &file, "--json"]);
    assert!(ok, "{stderr}");
    // The rows whose p99 is above 900: the threshold the rule watches.
    let mut want: Vec<(String, String)> = lines_of_kind(&stdout, "row")
        .iter()
        .map(|l| &l["row"])
        .filter(|r| r["p99"].as_f64().is_some_and(|p| p > 900.0))
        .map(|r| {
            (
                r["route"].as_str().expect("route").to_owned(),
                r["window_start"].as_str().expect("start")[..16].to_owned(),
            )
        })
        .collect();
    assert!(!want.is_empty() && want.len() < 12, "{want:?}");
    let rules = write(
        "rules.jsonl",
        r#"{"id":"slow","view":"latency","column":"p99","op":">","threshold":900}"#,
    );
    let (ok, stdout, stderr) = run_sluice(&[
        "demo", "--sql", &sql, "--file", &file, "--rules", &rules, "--json",
    ]);
    assert!(ok, "{stderr}");
    let mut got: Vec<(String, String)> = lines_of_kind(&stdout, "alert")
        .iter()
        .map(|a| {
            (
                a["row"]["route"].as_str().expect("route").to_owned(),
                a["window_start"].as_str().expect("start")[..16].to_owned(),
            )
        })
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    for f in [sql, file, rules] {
        std::fs::remove_file(f).ok();
    }
}

const DISTINCT_PIPELINE: &str = "
CREATE TABLE visits (
  id STRING,
  page STRING,
  user_id BIGINT,
  country STRING,
  ts TIMESTAMP_LTZ(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' MINUTE,
  PRIMARY KEY (id) NOT ENFORCED
) WITH ('connector' = 'kinesis', 'format' = 'json',
        'json.timestamp-format.standard' = 'ISO-8601');

CREATE VIEW audience AS
SELECT window_start, window_end, page,
       COUNT(*) AS n,
       APPROX_COUNT_DISTINCT(user_id) AS users,
       APPROX_COUNT_DISTINCT(country) AS countries
FROM TABLE(TUMBLE(TABLE visits, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, page;
";

#[test]
fn distinct_counts_are_exact_while_small_within_the_error_beyond_and_duplicates_move_nothing() {
    use std::collections::BTreeSet;
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut lines = String::new();
    /// The distinct users and countries a (minute, page) saw.
    type Seen = (BTreeSet<u64>, BTreeSet<u64>);
    let mut truth: BTreeMap<(u32, &str), Seen> = BTreeMap::new();
    let pages = [("home", 100_000.0), ("docs", 3_000.0), ("admin", 40.0)];
    for minute in 0..2u32 {
        for i in 0..15_000u32 {
            let (page, users) = pages[(i % 3) as usize];
            // Skewed: a few users visit often, most once.
            let user = (users * rng.next().powi(2)) as u64;
            let country = (rng.next() * 60.0) as u64;
            lines.push_str(&format!(
                "{{\"id\":\"v{minute}-{i}\",\"page\":\"{page}\",\"user_id\":{user},\"country\":\"c{country}\",\"ts\":\"2026-03-01T10:{minute:02}:{:02}Z\"}}\n",
                (i / 250) % 60
            ));
            let t = truth.entry((minute, page)).or_default();
            t.0.insert(user);
            t.1.insert(country);
        }
    }
    let sql = write("audience.sql", DISTINCT_PIPELINE);
    let file = write("visits.ndjson", &lines);
    let doubled = write("visits-doubled.ndjson", &format!("{lines}{lines}"));
    let plain = verified_demo(&sql, &file, None);
    let stored = lines_of_kind(&plain, "row");
    assert_eq!(stored.len(), truth.len());
    for line in &stored {
        let row = &line["row"];
        let minute: u32 = row["window_start"].as_str().expect("start")[14..16]
            .parse()
            .expect("minute");
        let page = row["page"].as_str().expect("page");
        let (users, countries) = &truth[&(minute, page)];
        // Up to a few hundred distinct values the sketch counts exactly.
        assert_eq!(row["countries"], countries.len(), "{row}");
        let got = row["users"].as_i64().expect("a count");
        let exact = users.len() as i64;
        if exact <= 300 {
            assert_eq!(got, exact, "{row}");
        } else {
            // 1.6% relative standard error: within three of them.
            let error = (got - exact).abs() as f64 / exact as f64;
            assert!(
                error <= 0.048,
                "{page} minute {minute}: {got} against exact {exact}"
            );
            eprintln!("{page} minute {minute}: {got} against {exact} ({error:.4})");
        }
    }
    duplicates_move_nothing(&plain, [sql, file, doubled], ["5", "12"]);
}
