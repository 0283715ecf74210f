//! Pipelines read whole: what a valid one holds, and every refusal with its place.

use super::*;

const PAYMENTS: &str = "
-- Payments per merchant country, per minute and per five minutes.
CREATE TABLE payments (
  `id` STRING,
  merchant ROW<id STRING, country STRING>,
  amount DECIMAL(12, 2),
  card ROW<brand STRING, `last4` STRING>,
  ms BIGINT,
  et AS TO_TIMESTAMP_LTZ(ms, 3),
  proc_time AS PROCTIME(),
  WATERMARK FOR et AS et - INTERVAL '30' SECOND,
  PRIMARY KEY (id) NOT ENFORCED
) WITH ('connector' = 'kinesis', 'format' = 'json', 'stream' = 'raw');

CREATE TABLE merchants (
  merchant_id STRING,
  tier STRING,
  PRIMARY KEY (merchant_id) NOT ENFORCED
) WITH ('connector' = 'dynamodb', 'table-name' = 'merchants');

CREATE VIEW enriched AS
SELECT p.*, m.tier
FROM payments AS p
LEFT JOIN merchants FOR SYSTEM_TIME AS OF p.proc_time AS m
ON p.merchant.id = m.merchant_id;

CREATE VIEW per_country AS
SELECT window_start, window_end, merchant.country AS country,
       COUNT(*) AS n, SUM(amount) AS total, AVG(amount) AS mean,
       COUNT(*) FILTER (WHERE amount > 100) AS big
FROM TABLE(TUMBLE(TABLE enriched, DESCRIPTOR(et), INTERVAL '1' MINUTE))
WHERE card.brand <> 'test'
GROUP BY window_start, window_end, merchant.country;

CREATE TABLE by_tier (window_start TIMESTAMP(3), window_end TIMESTAMP(3), tier STRING, largest DECIMAL(12, 2))
  WITH ('connector' = 'dynamodb');

INSERT INTO by_tier
SELECT window_start, window_end, COALESCE(tier, 'none') AS tier, MAX(amount) AS largest
FROM TABLE(HOP(TABLE enriched, DESCRIPTOR(et), INTERVAL '1' MINUTE, INTERVAL '5' MINUTE))
GROUP BY window_start, window_end, COALESCE(tier, 'none');
";

#[test]
fn a_pipeline_with_a_lookup_join_a_tumbling_view_and_a_hopping_sink_reads_whole() {
    let p = Pipeline::parse(PAYMENTS).expect("valid pipeline");
    assert_eq!(p.source.name, "payments");
    assert_eq!(
        p.source.watermark,
        Some(Watermark {
            column: "et".into(),
            delay_ms: 30_000
        })
    );
    assert_eq!(p.source.primary_key, vec!["id".to_owned()]);
    assert_eq!(
        p.source.column("merchant").map(|c| &c.kind),
        Some(&ColumnKind::Physical(SqlType::Row(vec![
            Field {
                name: "id".into(),
                ty: SqlType::String
            },
            Field {
                name: "country".into(),
                ty: SqlType::String
            },
        ])))
    );
    assert_eq!(p.references.keys().collect::<Vec<_>>(), ["merchants"]);
    assert_eq!(p.sinks.keys().collect::<Vec<_>>(), ["by_tier"]);
    let names: Vec<&str> = p.views.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["enriched", "per_country", "by_tier"]);
    let stored: Vec<&str> = p.stored_views().map(|v| v.name.as_str()).collect();
    assert_eq!(stored, ["per_country", "by_tier"]);
    assert!(matches!(
        &p.views[0].input,
        Input::LookupJoin { stream, reference, left: true, .. }
            if stream == "payments" && reference == "merchants"
    ));
    assert_eq!(
        p.views[1].input,
        Input::Window(Window {
            kind: WindowKind::Tumble { size_ms: 60_000 },
            input: "enriched".into(),
            time_column: "et".into(),
        })
    );
    assert_eq!(
        p.views[1].columns,
        [
            "window_start",
            "window_end",
            "country",
            "n",
            "total",
            "mean",
            "big"
        ]
    );
    assert_eq!(
        p.views[2].input,
        Input::Window(Window {
            kind: WindowKind::Hop {
                slide_ms: 60_000,
                size_ms: 300_000
            },
            input: "enriched".into(),
            time_column: "et".into(),
        })
    );
    // `p.*` in the join view reads every source column.
    let needed: Vec<&str> = p.source_columns_needed().into_iter().collect();
    assert_eq!(
        needed,
        ["amount", "card", "et", "id", "merchant", "ms", "proc_time"]
    );
    let plan = p.describe();
    for line in [
        "source `payments` (kinesis, json)",
        "event time `et`, allowed lateness 30000 ms",
        "event identity: PRIMARY KEY (id)",
        "reference `merchants` (dynamodb), key (merchant_id)",
        "intermediate view `enriched`",
        "stored view `per_country`",
        "TUMBLE over `enriched` by `et`, size 60000 ms",
        "sink `by_tier`",
        "HOP over `enriched` by `et`, slide 60000 ms, size 300000 ms",
    ] {
        assert!(plan.contains(line), "{line:?} not in\n{plan}");
    }
}

const SOURCE: &str = "CREATE TABLE s (k STRING, v BIGINT, ts TIMESTAMP(3), \
    WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) WITH ('connector' = 'kinesis', 'format' = 'json');\n";

fn windowed(select: &str) -> String {
    format!(
        "{SOURCE}CREATE VIEW w AS SELECT window_start, window_end, k, {select} \
         FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end, k;"
    )
}

/// (pipeline, line, column, what the message says)
fn refusals() -> Vec<(String, u64, u64, &'static str)> {
    vec![
        (
            format!("{SOURCE}CREATE VIEW j AS SELECT * FROM s AS a JOIN s AS b ON a.k = b.k;"),
            2,
            44,
            "a join between two streams is not supported; a lookup join needs FOR SYSTEM_TIME AS OF",
        ),
        (
            format!("{SOURCE}CREATE VIEW j AS SELECT * FROM s, s;"),
            2,
            1,
            "a join between two streams",
        ),
        (
            format!("{SOURCE}CREATE VIEW c AS SELECT k, COUNT(*) AS n FROM s GROUP BY k;"),
            2,
            1,
            "an aggregation needs a window",
        ),
        (
            windowed("COUNT(DISTINCT v) AS d"),
            2,
            54,
            "COUNT(DISTINCT ...) is not supported yet",
        ),
        (
            windowed("PERCENTILE(v, 0.5) AS p"),
            2,
            54,
            "function PERCENTILE is not supported",
        ),
        (
            windowed("APPROX_PERCENTILE(v, 1.5) AS p"),
            2,
            54,
            "APPROX_PERCENTILE's percentile must be a number literal from 0 to 1, not `1.5`",
        ),
        (
            windowed("PERCENTILE_APPROX(v, k) AS p"),
            2,
            54,
            "PERCENTILE_APPROX's percentile must be a number literal from 0 to 1, not `k`",
        ),
        (
            windowed("APPROX_PERCENTILE(v) AS p"),
            2,
            54,
            "APPROX_PERCENTILE takes a column and a percentile: APPROX_PERCENTILE(x, 0.99)",
        ),
        (
            windowed("SUM(v) OVER () AS o"),
            2,
            54,
            "window functions (OVER) are not supported",
        ),
        (
            windowed("SUM(SUM(v)) AS o"),
            2,
            58,
            "SUM may only stand in the select list",
        ),
        (windowed("v + 1"), 2, 54, "name this column"),
        (
            windowed("COUNT(*) AS n, COUNT(*) AS n"),
            2,
            18,
            "column name `n` is used twice",
        ),
        (
            format!(
                "{SOURCE}CREATE VIEW w AS SELECT window_start, window_end, COUNT(*) AS n \
          FROM TABLE(SESSION(TABLE s PARTITION BY k, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end;"
            ),
            2,
            76,
            "SESSION windows are not supported yet",
        ),
        (
            format!(
                "{SOURCE}CREATE VIEW w AS SELECT window_start, window_end, COUNT(*) AS n \
          FROM TABLE(CUMULATE(TABLE s, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '1' HOUR)) GROUP BY window_start, window_end;"
            ),
            2,
            76,
            "CUMULATE windows are not supported yet",
        ),
        (
            format!(
                "{SOURCE}CREATE VIEW w AS SELECT window_start, window_end, COUNT(*) AS n \
          FROM TABLE(HOP(TABLE s, DESCRIPTOR(ts), INTERVAL '7' SECOND, INTERVAL '1' MINUTE)) GROUP BY window_start, window_end;"
            ),
            2,
            76,
            "whole multiple of its slide",
        ),
        (
            format!(
                "{SOURCE}CREATE VIEW w AS SELECT window_start, window_end, COUNT(*) AS n \
          FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(k), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end;"
            ),
            2,
            1,
            "windows are over the event-time column `ts`",
        ),
        (
            format!(
                "{SOURCE}CREATE VIEW w AS SELECT window_start, COUNT(*) AS n \
          FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start;"
            ),
            2,
            1,
            "must GROUP BY window_start, window_end",
        ),
        (
            format!("{SOURCE}CREATE VIEW w AS SELECT k FROM s ORDER BY k;"),
            2,
            43,
            "ORDER BY is not supported",
        ),
        (
            format!("{SOURCE}CREATE VIEW w AS SELECT DISTINCT k FROM s;"),
            2,
            18,
            "SELECT DISTINCT is not supported",
        ),
        (
            format!("{SOURCE}CREATE VIEW w AS SELECT k FROM (SELECT k FROM s);"),
            2,
            33,
            "a subquery in FROM",
        ),
        (
            format!("{SOURCE}CREATE VIEW w AS SELECT k FROM s UNION ALL SELECT k FROM s;"),
            2,
            18,
            "UNION",
        ),
        (
            format!("{SOURCE}DROP TABLE s;"),
            2,
            1,
            "statement `DROP TABLE s` is not supported",
        ),
        (
            format!("{SOURCE}CREATE VIEW w AS SELECT k FROM nowhere;"),
            2,
            1,
            "`nowhere` is neither the source",
        ),
        (
            SOURCE.replace("'kinesis'", "'kafka'"),
            1,
            14,
            "connector 'kafka' is not supported",
        ),
        (
            SOURCE.replace("'json'", "'csv'"),
            1,
            14,
            "format 'csv' is not supported",
        ),
        (
            SOURCE.replace("v BIGINT", "v ARRAY<INT>"),
            1,
            29,
            "type ARRAY<INT> is not supported",
        ),
        (
            SOURCE.replace("ts - INTERVAL '5' SECOND", "ts + INTERVAL '5' SECOND"),
            1,
            54,
            "a watermark must read",
        ),
        (
            SOURCE.replace("k STRING", "k STRING NOT NULL"),
            1,
            26,
            "NOT NULL columns are not supported",
        ),
        (
            SOURCE.replace("'json')", "'json', 'json.ignore-parse-errors' = 'true')"),
            1,
            14,
            "option 'json.ignore-parse-errors' is not supported",
        ),
        (
            format!("{SOURCE}{}", SOURCE.replace("TABLE s ", "TABLE t ")),
            2,
            14,
            "a pipeline reads one kinesis source",
        ),
        (
            format!("{SOURCE}CREATE VIEW w AS SELECT k FROM s;"),
            1,
            1,
            "the pipeline stores nothing",
        ),
        (
            format!("{SOURCE}CREATE VIEW w AS SELECT k FROM s WHERE k SIMILAR TO 'a';"),
            2,
            40,
            "is not supported",
        ),
        (
            format!("{SOURCE}CREATE VIEW w AS SELECT k FROM s garbage more;"),
            2,
            42,
            "expected `;`",
        ),
        (
            format!(
                "{SOURCE}INSERT INTO totals SELECT window_start, window_end, COUNT(*) AS n \
          FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end;"
            ),
            2,
            1,
            "INSERT INTO `totals`: no dynamodb table of that name",
        ),
        (
            format!(
                "{SOURCE}CREATE TABLE totals (n BIGINT) WITH ('connector' = 'dynamodb');\n\
                 INSERT INTO totals SELECT window_start, window_end, COUNT(*) AS n \
                 FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end;"
            ),
            3,
            1,
            "INSERT INTO `totals` selects 3 columns; the sink declares 1 (n)",
        ),
        (
            SOURCE.replace("INTERVAL '5' SECOND", "INTERVAL '300' SECOND"),
            1,
            54,
            "INTERVAL '300' has more digits than its field's precision (2)",
        ),
        (
            windowed("COUNT(*) AS n").replace("INTERVAL '1' MINUTE", "INTERVAL '120' SECOND"),
            2,
            120,
            "INTERVAL '120' has more digits than its field's precision (2)",
        ),
        (
            windowed("COUNT(*) AS value"),
            2,
            66,
            "`value` is a reserved word in Flink SQL: write it in backquotes",
        ),
        (
            SOURCE.replace("k STRING", "count STRING"),
            1,
            17,
            "`count` is a reserved word in Flink SQL",
        ),
        (
            "CREATE TABLE r (a STRING) WITH ('connector' = 'dynamodb');\n".to_owned()
                + &windowed("COUNT(*) AS n"),
            1,
            14,
            "reference table `r` needs PRIMARY KEY",
        ),
    ]
}

#[test]
fn every_refused_construct_names_its_place_and_what_is_not_supported() {
    let mut wrong = Vec::new();
    for (text, line, column, needle) in refusals() {
        let err = Pipeline::parse(&text).expect_err(&text);
        let message = err.to_string();
        let place = match &err {
            crate::Error::InvalidSql { line, column, .. } => (*line, *column),
            other => panic!("expected InvalidSql, got {other:?}"),
        };
        if !message.contains(needle) || place != (line, column) {
            wrong.push(format!("want {line}:{column} {needle:?}, got {message:?}"));
        }
        assert!(!err.is_retryable());
        assert_eq!(err.code(), "invalid_sql");
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let deep = format!("{}1{}", "(".repeat(5_000), ")".repeat(5_000));
    let text = windowed(&format!("SUM({deep}) AS s"));
    let err = Pipeline::parse(&text).expect_err("too deep");
    assert!(err.to_string().contains("nests deeper than"), "{err}");
}

#[test]
fn names_are_case_sensitive_and_backquotes_quote_them() {
    let text = "CREATE TABLE `Src` (`Key` STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) \
        WITH ('connector' = 'kinesis', 'format' = 'json');\n\
        CREATE VIEW w AS SELECT window_start, window_end, `Key`, COUNT(*) AS n \
        FROM TABLE(TUMBLE(TABLE Src, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end, `Key`;";
    let p = Pipeline::parse(text).expect("valid");
    assert_eq!(p.source.name, "Src");
    assert_eq!(
        p.views[0].columns,
        ["window_start", "window_end", "Key", "n"]
    );
    let lower = text.replace("TABLE Src,", "TABLE src,");
    let e = Pipeline::parse(&lower).expect_err("src is not Src");
    assert!(e.to_string().contains("`src` is neither the source"), "{e}");
}
