-- How the json format coerces values into each column type (ignore-parse-errors: a value
-- Flink cannot read is NULL; Sluice dead-letters that record, crates/core/src/sql/json.rs).
CREATE TABLE src (
  id STRING, i INT, b BIGINT, d DOUBLE, dc DECIMAL(5, 2), s STRING, bo BOOLEAN,
  r ROW<a INT, n ROW<x STRING>>
) WITH ('connector' = 'kinesis', 'stream' = 'raw-events', 'format' = 'json');

CREATE VIEW decoded AS SELECT id, i, b, d, dc, s, bo, r FROM src;
