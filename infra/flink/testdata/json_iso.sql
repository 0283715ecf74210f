-- How the json format decodes values under the 'json.timestamp-format.standard' = 'ISO-8601'.
CREATE TABLE src (
  id STRING,
  v BIGINT,
  t TIMESTAMP(3),
  tl TIMESTAMP_LTZ(3)
) WITH ('connector' = 'kinesis', 'stream' = 'raw-events', 'format' = 'json',
  'json.timestamp-format.standard' = 'ISO-8601');

CREATE VIEW decoded AS SELECT id, v, t, tl FROM src;
