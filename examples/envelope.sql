-- The event envelope that Sluice's producers write today ({"id", "key", "type", "ts",
-- "value", "attrs"}), as a pipeline: count, sum, min, max, mean and variance per key and
-- type, per minute and per hour, as the envelope pipeline computes them. (`attrs`, a map
-- of any strings, has no column: MAP is not supported.)
CREATE TABLE events (
  id STRING,
  `key` STRING,
  `type` STRING,
  ts TIMESTAMP_LTZ(3),
  `value` DOUBLE,
  WATERMARK FOR ts AS ts - INTERVAL '5' MINUTE,
  PRIMARY KEY (id) NOT ENFORCED
) WITH (
  'connector' = 'kinesis',
  'format' = 'json',
  'json.timestamp-format.standard' = 'ISO-8601'
);

CREATE VIEW per_minute AS
SELECT window_start, window_end, `key`, `type`,
       COUNT(*) AS n, SUM(`value`) AS total, MIN(`value`) AS low, MAX(`value`) AS high,
       AVG(`value`) AS mean, VAR_POP(`value`) AS spread
FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, `key`, `type`;

CREATE VIEW per_hour AS
SELECT window_start, window_end, `key`, `type`,
       COUNT(*) AS n, SUM(`value`) AS total, MIN(`value`) AS low, MAX(`value`) AS high,
       AVG(`value`) AS mean, VAR_POP(`value`) AS spread
FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' HOUR))
GROUP BY window_start, window_end, `key`, `type`;
