//! The batch evaluation of whole pipelines: rows worked out by hand.

use super::*;
use crate::sql::Pipeline;
use crate::sql::view::WindowKind;
use crate::sql::{SqlType, Value};

fn evaluate(sql: &str, events: &[&str], references: &[(&str, &str)]) -> Vec<(String, String)> {
    let pipeline = Pipeline::parse(sql).expect("pipeline");
    let program = Program::compile(&pipeline).expect("program");
    let mut e = Evaluation::new(&program);
    for (table, line) in references {
        e.load_reference(table, line.as_bytes())
            .expect("reference row");
    }
    for line in events {
        e.push(line.as_bytes(), 0);
    }
    e.rows()
        .expect("rows")
        .into_iter()
        .map(|r| (r.view, r.json))
        .collect()
}

const SOURCE: &str = "CREATE TABLE s (id STRING, k STRING, v BIGINT, d DECIMAL(10, 2), ms BIGINT, \
    ts AS TO_TIMESTAMP_LTZ(ms, 3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND, PRIMARY KEY (id) NOT ENFORCED) \
    WITH ('connector' = 'kinesis', 'format' = 'json');\n";

#[test]
fn a_tumbling_view_groups_counts_sums_and_averages_as_flink_does() {
    let sql = format!(
        "{SOURCE}CREATE VIEW w AS SELECT window_start, window_end, k, COUNT(*) AS n, SUM(v) AS total, \
         AVG(v) AS mean, SUM(d) AS dsum, MAX(v) - MIN(v) AS spread, COUNT(*) FILTER (WHERE v > 10) AS big \
         FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end, k;"
    );
    let rows = evaluate(
        &sql,
        &[
            r#"{"id":"1","k":"a","v":5,"d":1.25,"ms":1767225600000}"#,
            r#"{"id":"2","k":"a","v":20,"d":2,"ms":1767225659999}"#,
            r#"{"id":"2","k":"a","v":20,"d":2,"ms":1767225659999}"#,
            r#"{"id":"3","k":"b","v":6,"ms":1767225660000}"#,
            r#"{"id":"4","k":"a","v":null,"ms":1767225601000}"#,
            r#"not json"#,
        ],
        &[],
    );
    assert_eq!(
        rows,
        vec![
            ("w".into(), r#"{"window_start":"2026-01-01T00:00:00.000Z","window_end":"2026-01-01T00:01:00.000Z","k":"a","n":3,"total":25,"mean":12,"dsum":3.25,"spread":15,"big":1}"#.into()),
            ("w".into(), r#"{"window_start":"2026-01-01T00:01:00.000Z","window_end":"2026-01-01T00:02:00.000Z","k":"b","n":1,"total":6,"mean":6,"dsum":null,"spread":0,"big":0}"#.into()),
        ]
    );
}

#[test]
fn hopping_windows_start_before_the_event_and_a_lookup_join_keeps_missing_keys() {
    let sql = format!(
        "{SOURCE}CREATE TABLE r (rk STRING, label STRING, PRIMARY KEY (rk) NOT ENFORCED) WITH ('connector' = 'dynamodb');\n\
         CREATE VIEW e AS SELECT s.*, x.label, PROCTIME() AS pt FROM s LEFT JOIN r FOR SYSTEM_TIME AS OF s.ts AS x ON s.k = x.rk;\n\
         CREATE VIEW h AS SELECT window_start, window_end, COALESCE(label, 'none') AS label, COUNT(*) AS n \
         FROM TABLE(HOP(TABLE e, DESCRIPTOR(ts), INTERVAL '30' SECOND, INTERVAL '1' MINUTE)) \
         GROUP BY window_start, window_end, COALESCE(label, 'none');"
    );
    let rows = evaluate(
        &sql,
        &[
            r#"{"id":"1","k":"a","v":1,"ms":1767225610000}"#,
            r#"{"id":"2","k":"zz","v":1,"ms":1767225640000}"#,
        ],
        &[("r", r#"{"rk":"a","label":"alpha"}"#)],
    );
    let starts: Vec<String> = rows.iter().map(|(_, j)| j[17..41].to_owned()).collect();
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert_eq!(
        starts,
        [
            "2025-12-31T23:59:30.000Z",
            "2026-01-01T00:00:00.000Z",
            "2026-01-01T00:00:00.000Z",
            "2026-01-01T00:00:30.000Z",
        ]
    );
    assert!(rows[0].1.contains(r#""label":"alpha","n":1"#), "{rows:?}");
    assert!(
        rows.iter()
            .any(|(_, j)| j.contains(r#""label":"none","n":1"#)),
        "{rows:?}"
    );
}

#[test]
fn windows_are_aligned_to_the_epoch() {
    assert_eq!(
        event::windows(WindowKind::Tumble { size_ms: 60_000 }, -1),
        vec![(-60_000, 0)]
    );
    assert_eq!(
        event::windows(
            WindowKind::Hop {
                slide_ms: 30_000,
                size_ms: 60_000
            },
            10_000
        ),
        vec![(-30_000, 30_000), (0, 60_000)]
    );
}

proptest::proptest! {
    #[test]
    fn the_first_window_is_the_first_of_all_windows(
        ts in -10_000_000i64..10_000_000,
        slide in 1i64..5_000,
        panes in 1i64..8,
        extra in 0i64..5_000,
    ) {
        for kind in [
            WindowKind::Tumble { size_ms: slide },
            WindowKind::Hop { slide_ms: slide, size_ms: slide * panes + extra % slide },
        ] {
            proptest::prop_assert_eq!(
                Some(event::first_window(kind, ts)),
                event::windows(kind, ts).first().copied()
            );
        }
    }
}

#[test]
fn a_column_neither_grouped_nor_aggregated_is_refused() {
    let sql = format!(
        "{SOURCE}CREATE VIEW w AS SELECT window_start, window_end, v AS loose, COUNT(*) AS n \
         FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end;"
    );
    let pipeline = Pipeline::parse(&sql).expect("parses");
    let err = Program::compile(&pipeline)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("`loose`: unknown column `v`"), "{err}");
}

#[test]
fn repeated_ids_count_once_and_unreadable_records_are_counted_by_reason() {
    let sql = format!(
        "{SOURCE}CREATE VIEW w AS SELECT window_start, window_end, SUM(v / (v - 2)) AS q, COUNT(*) AS n \
         FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end;"
    );
    let pipeline = Pipeline::parse(&sql).expect("pipeline");
    let program = Program::compile(&pipeline).expect("program");
    let mut e = Evaluation::new(&program);
    for line in [
        r#"{"id":"1","v":3,"ms":0}"#,
        r#"{"id":"1","v":3,"ms":0}"#,
        r#"{"id":"2","v":"x","ms":0}"#,
        r#"{"id":"3","v":2,"ms":0}"#,
        "[1,2]",
    ] {
        e.push(line.as_bytes(), 0);
    }
    assert_eq!((e.events, e.duplicates), (5, 1));
    let reasons: Vec<&str> = e.rejected.keys().map(String::as_str).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("`v`")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("by zero")), "{reasons:?}");
    // The event whose expression failed changed nothing: one event counted.
    let rows = e.rows().expect("rows");
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0].json.ends_with(r#""q":3,"n":1}"#),
        "{}",
        rows[0].json
    );
}

#[test]
fn insert_into_names_and_casts_the_columns_as_the_sink_declares_them() {
    // Found by the oracle corpus (issue 17): Flink's INSERT fills the sink's columns by
    // position, named and typed as the sink declares them; Sluice kept the query's names.
    let sql = format!(
        "{SOURCE}CREATE TABLE totals (window_start TIMESTAMP(3), window_end TIMESTAMP(3), events DOUBLE, \
         top_v DECIMAL(20, 1)) WITH ('connector' = 'dynamodb');\n\
         INSERT INTO totals SELECT window_start, window_end, COUNT(*) AS c, MAX(v) AS mx \
         FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end;"
    );
    let rows = evaluate(
        &sql,
        &[
            r#"{"id":"1","v":5,"ms":1767225600000}"#,
            r#"{"id":"2","v":7,"ms":1767225601000}"#,
        ],
        &[],
    );
    assert_eq!(
        rows,
        vec![("totals".into(), r#"{"window_start":"2026-01-01T00:00:00.000Z","window_end":"2026-01-01T00:01:00.000Z","events":2.0,"top_v":7.0}"#.into())]
    );
}

#[test]
fn a_float_result_is_written_as_the_shortest_float_text() {
    // Found by the oracle corpus (issue 17): AVG(FLOAT) -86/9 is the FLOAT -9.555555,
    // which Flink prints so; widened to a double it printed -9.55555534362793.
    let mut out = String::new();
    value_json(&mut out, &Value::Float(-86.0f32 / 9.0), &SqlType::Float);
    assert_eq!(out, "-9.555555");
    out.clear();
    value_json(&mut out, &Value::Float(0.1), &SqlType::Float);
    assert_eq!(out, "0.1");
}

/// With exact answers on, a row holds what the approximate aggregates estimate, computed
/// from every value: the lower nearest-rank percentile and the distinct count; off, the
/// sketches' results. Columns reading them are the approximate ones.
#[test]
fn exact_answers_replace_estimates_and_name_their_columns() {
    let sql = format!(
        "{SOURCE}CREATE VIEW w AS SELECT window_start, window_end, k, COUNT(*) AS n, \
         APPROX_PERCENTILE(v, 0.5) AS p50, APPROX_PERCENTILE(v, 0.9) * 2 AS twice_p90, \
         APPROX_COUNT_DISTINCT(v) AS kinds \
         FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end, k;"
    );
    let pipeline = Pipeline::parse(&sql).expect("pipeline");
    let program = Program::compile(&pipeline).expect("program");
    // 12 values, 11 distinct: 1..=10 and 1,000,000 twice; sorted, rank ⌊0.5 · 11⌋ = 5
    // is 6 and rank ⌊0.9 · 11⌋ = 9 is 10.
    let values = [1_000_000, 3, 1, 4, 1_000_000, 5, 9, 2, 6, 10, 7, 8];
    let rows = |exact: bool| {
        let mut e = Evaluation::new(&program);
        if exact {
            e.exact_approximations();
        }
        for (i, v) in values.iter().enumerate() {
            let line = format!(r#"{{"id":"{i}","k":"a","v":{v},"ms":1767225600000}}"#);
            e.push(line.as_bytes(), 0);
        }
        let rows = e.rows().expect("rows");
        assert_eq!(rows.len(), 1);
        serde_json::from_str::<serde_json::Value>(&rows[0].json).expect("JSON")
    };
    let (exact, estimated) = (rows(true), rows(false));
    assert_eq!(exact["n"], 12);
    assert_eq!(exact["p50"], 6.0);
    assert_eq!(exact["twice_p90"], 20.0);
    assert_eq!(exact["kinds"], 11);
    let p50 = estimated["p50"].as_f64().expect("a number");
    assert_ne!(p50, 6.0, "the sketch's answer is not exact here");
    assert!((p50 - 6.0).abs() <= 0.01 * 6.0, "{p50}");
    assert_eq!(estimated["kinds"], 11, "a small distinct count is exact");
    let columns: Vec<String> = program
        .approximate_columns("w")
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(columns, ["p50", "twice_p90", "kinds"]);
    assert!(program.approximate_columns("nowhere").is_empty());
}
