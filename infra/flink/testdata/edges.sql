-- Aggregate edge cases: integer AVG and division, NULLs, DECIMAL, DOUBLE, empty input.
CREATE TABLE readings (
  k STRING,
  ms BIGINT,
  n INT,
  v BIGINT,
  d DOUBLE,
  price DECIMAL(10, 2),
  et AS TO_TIMESTAMP_LTZ(ms, 3),
  WATERMARK FOR et AS et - INTERVAL '1' SECOND
) WITH ('connector' = 'kinesis', 'stream' = 'readings', 'format' = 'json');

CREATE VIEW stats AS
SELECT window_start, window_end, k,
       COUNT(*) AS c, COUNT(v) AS cv,
       SUM(n) AS sum_n, AVG(n) AS avg_n,
       SUM(v) AS sum_v, AVG(v) AS avg_v, SUM(v) / COUNT(*) AS div_v, MIN(v) AS min_v,
       SUM(d) AS sum_d, AVG(d) AS avg_d,
       SUM(price) AS sum_price, AVG(price) AS avg_price,
       SUM(v) FILTER (WHERE v > 100) AS sum_big
FROM TABLE(TUMBLE(TABLE readings, DESCRIPTOR(et), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, k;

CREATE VIEW nothing AS
SELECT window_start, window_end, COUNT(*) AS c, SUM(v) AS s
FROM TABLE(TUMBLE(TABLE readings, DESCRIPTOR(et), INTERVAL '10' SECOND))
WHERE k = 'no such key'
GROUP BY window_start, window_end;
