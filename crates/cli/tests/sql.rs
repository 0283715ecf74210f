//! `sluice sql check`: every pipeline in `examples/` reads and prints its plan; a
//! pipeline outside the subset fails with its file, line and column.

use std::path::Path;

mod common;

use common::sql::*;

fn examples() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_pipeline_checks_and_prints_its_plan() {
    let files = examples();
    assert!(!files.is_empty(), "no .sql file in examples/");
    for file in files {
        let (ok, stdout, stderr) =
            run_sluice(&["sql", "check", file.to_str().expect("utf-8 path")]);
        assert!(ok, "{}: {stderr}", file.display());
        assert!(stdout.starts_with("source `"), "{stdout}");
        assert!(
            stdout.contains("stored view `") || stdout.contains("sink `"),
            "{stdout}"
        );
        assert!(
            stdout.contains("ingest reads (the views need): "),
            "{stdout}"
        );
        assert!(stdout.contains("on the stages: stored view `"), "{stdout}");
    }
}

#[test]
fn the_payments_example_plans_a_lookup_join_a_tumbling_view_and_a_hopping_sink() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/payments.sql");
    let (ok, stdout, stderr) = run_sluice(&["sql", "check", file.to_str().expect("utf-8 path")]);
    assert!(ok, "{stderr}");
    for line in [
        "event time `et`, allowed lateness 30000 ms",
        "reads `payments` LEFT JOIN `merchants` ON p.merchant.id = m.merchant_id",
        "stored view `per_country`",
        "TUMBLE over `enriched` by `et`, size 60000 ms",
        "sink `per_tier`",
        "HOP over `enriched` by `et`, slide 60000 ms, size 300000 ms",
        "state of `per_country` per (window, group):",
        "  group by merchant.country: STRING",
        "  SUM(amount) -> DECIMAL(38, 2), state <= 88 bytes",
        "  aggregate state <= 195 bytes per item",
        "  AVG(amount) -> DECIMAL(38, 6), state <= 88 bytes",
    ] {
        assert!(stdout.contains(line), "{line:?} not in\n{stdout}");
    }
}

#[test]
fn an_unsupported_pipeline_fails_naming_file_line_and_column() {
    let dir = common::tempdir();
    let file = dir.join("joins.sql");
    std::fs::write(
        &file,
        "CREATE TABLE s (k STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)\n  WITH ('connector' = 'kinesis', 'format' = 'json');\n\
         CREATE VIEW j AS SELECT a.k FROM s AS a JOIN s AS b ON a.k = b.k;\n",
    )
    .expect("write");
    let path = file.to_str().expect("utf-8 path");
    let (ok, stdout, stderr) = run_sluice(&["sql", "check", path]);
    assert!(!ok);
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(
        stderr.trim(),
        format!(
            "error: {path}: line 3, column 46: a join between two streams is not supported; \
             a lookup join needs FOR SYSTEM_TIME AS OF"
        )
    );
    let (ok, _, stderr) = run_sluice(&["sql", "check", "/nonexistent/p.sql"]);
    assert!(!ok);
    assert!(
        stderr.contains("reading the pipeline /nonexistent/p.sql"),
        "{stderr}"
    );
}

#[test]
fn eval_prints_the_rows_flink_computes_for_the_payments_example() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = |p: &str| root.join(p).to_str().expect("utf-8 path").to_owned();
    let (ok, stdout, stderr) = run_sluice(&[
        "sql",
        "eval",
        &path("examples/payments.sql"),
        "--events",
        &path("examples/payments.events.ndjson"),
        "--reference",
        &format!("merchants={}", path("examples/payments.merchants.ndjson")),
    ]);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    // The rows Flink 2.3 prints for the same input (infra/flink/examples --rows); by hand:
    // DE has p-1 (12.5) and p-2 (150) in the first minute; p-3 is a test card.
    assert_eq!(
        lines[0],
        r#"{"kind":"row","view":"per_country","row":{"window_start":"2026-01-01T00:00:00.000Z","window_end":"2026-01-01T00:01:00.000Z","country":"DE","payments":2,"total":162.50,"largest":150.00,"over_100":1}}"#
    );
    assert_eq!(
        lines[1],
        r#"{"kind":"row","view":"per_country","row":{"window_start":"2026-01-01T00:01:00.000Z","window_end":"2026-01-01T00:02:00.000Z","country":"FR","payments":1,"total":3.00,"largest":3.00,"over_100":0}}"#
    );
    // Five-minute windows sliding by one: each payment is in five of them.
    let tier_rows = lines
        .iter()
        .filter(|l| l.contains(r#""view":"per_tier""#))
        .count();
    assert_eq!(tier_rows, 16);
    assert!(lines.contains(&r#"{"kind":"row","view":"per_tier","row":{"window_start":"2025-12-31T23:57:00.000Z","window_end":"2026-01-01T00:02:00.000Z","tier":"gold","payments":2,"mean":7.750000}}"#));
    assert_eq!(
        lines.last().copied(),
        Some(
            r#"{"kind":"summary","events_in":4,"rows":18,"duplicates":0,"rejected":0,"rejected_by_reason":{}}"#
        )
    );
    let (ok, _, stderr) = run_sluice(&[
        "sql",
        "eval",
        &path("examples/payments.sql"),
        "--events",
        &path("examples/payments.events.ndjson"),
        "--reference",
        "nope",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("--reference \"nope\": write TABLE=FILE.ndjson"),
        "{stderr}"
    );
}

#[test]
fn check_refuses_a_type_error_at_its_place_before_any_event() {
    let dir = common::tempdir();
    let cases = [
        (
            "WHERE k + 1 > 2",
            "line 3, column 138: cannot apply `+` to STRING and INT",
        ),
        ("WHERE v > 2", ""),
    ];
    for (filter, place) in cases {
        let file = dir.join("types.sql");
        std::fs::write(
            &file,
            format!(
                "CREATE TABLE s (k STRING, v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)\n  \
                 WITH ('connector' = 'kinesis', 'format' = 'json');\n\
                 CREATE VIEW w AS SELECT window_start, window_end, SUM(v) AS total FROM TABLE(TUMBLE(TABLE s, \
                 DESCRIPTOR(ts), INTERVAL '1' MINUTE)) {filter} GROUP BY window_start, window_end;\n"
            ),
        )
        .expect("write");
        let (ok, _, stderr) = run_sluice(&["sql", "check", file.to_str().expect("utf-8 path")]);
        if place.is_empty() {
            assert!(ok, "{stderr}");
        } else {
            assert!(!ok, "{filter}");
            assert!(stderr.contains(place), "{place:?} not in {stderr}");
        }
    }
    let file = dir.join("sum.sql");
    std::fs::write(
        &file,
        "CREATE TABLE s (k STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)\n  \
         WITH ('connector' = 'kinesis', 'format' = 'json');\n\
         CREATE VIEW w AS SELECT window_start, window_end, SUM(k) AS total FROM TABLE(TUMBLE(TABLE s, \
         DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end;\n",
    )
    .expect("write");
    let (ok, _, stderr) = run_sluice(&["sql", "check", file.to_str().expect("utf-8 path")]);
    assert!(!ok);
    assert!(stderr.contains("SUM"), "{stderr}");
}
