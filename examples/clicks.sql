-- Clicks: per page section per minute, joined with campaigns (reference data in
-- DynamoDB) for the channel.
--
-- {"id": "c-1", "user_id": "u-17", "page": "/shop/shoes", "campaign": "spring",
--  "duration_ms": 1234, "ms": 1767225600000}
CREATE TABLE clicks (
  id STRING,
  user_id STRING,
  page STRING,
  campaign STRING,
  duration_ms BIGINT,
  ms BIGINT,
  et AS TO_TIMESTAMP_LTZ(ms, 3),
  proc_time AS PROCTIME(),
  WATERMARK FOR et AS et - INTERVAL '10' SECOND,
  PRIMARY KEY (id) NOT ENFORCED
) WITH ('connector' = 'kinesis', 'format' = 'json');

CREATE TABLE campaigns (
  campaign_id STRING,
  channel STRING,
  PRIMARY KEY (campaign_id) NOT ENFORCED
) WITH ('connector' = 'dynamodb');

CREATE VIEW tagged AS
SELECT c.id, c.user_id, LOWER(c.page) AS page, c.duration_ms, c.et,
       COALESCE(k.channel, 'direct') AS channel
FROM clicks AS c
LEFT JOIN campaigns FOR SYSTEM_TIME AS OF c.proc_time AS k
ON c.campaign = k.campaign_id
WHERE c.page LIKE '/%';

CREATE VIEW per_section AS
SELECT window_start, window_end,
       SUBSTRING(page FROM 2 FOR 4) AS section, channel,
       COUNT(*) AS clicks, AVG(duration_ms) AS mean_ms,
       SUM(CASE WHEN duration_ms < 1000 THEN 1 ELSE 0 END) AS bounces,
       MAX(duration_ms) / 1000 AS longest_s
FROM TABLE(TUMBLE(TABLE tagged, DESCRIPTOR(et), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, SUBSTRING(page FROM 2 FOR 4), channel;
