-- How the json format decodes values under the default timestamp standard ('SQL').
CREATE TABLE src (
  id STRING,
  v BIGINT,
  t TIMESTAMP(3),
  tl TIMESTAMP_LTZ(3)
) WITH ('connector' = 'kinesis', 'stream' = 'raw-events', 'format' = 'json');

CREATE VIEW decoded AS SELECT id, v, t, tl FROM src;
