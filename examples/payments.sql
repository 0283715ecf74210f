-- Payments per merchant country: counts, totals and the largest payment per minute,
-- and per merchant tier over five minutes sliding by one.
--
-- Events are JSON objects such as
--   {"id": "p-1", "merchant": {"id": "m-7", "country": "DE"}, "amount": 12.5,
--    "card": {"brand": "visa"}, "ms": 1767225600000}
CREATE TABLE payments (
  `id` STRING,
  merchant ROW<id STRING, country STRING>,
  amount DECIMAL(12, 2),
  card ROW<brand STRING>,
  ms BIGINT,
  et AS TO_TIMESTAMP_LTZ(ms, 3),
  proc_time AS PROCTIME(),
  WATERMARK FOR et AS et - INTERVAL '30' SECOND,
  PRIMARY KEY (`id`) NOT ENFORCED
) WITH ('connector' = 'kinesis', 'format' = 'json');

CREATE TABLE merchants (
  merchant_id STRING,
  tier STRING,
  PRIMARY KEY (merchant_id) NOT ENFORCED
) WITH ('connector' = 'dynamodb');

CREATE VIEW enriched AS
SELECT p.*, m.tier
FROM payments AS p
LEFT JOIN merchants FOR SYSTEM_TIME AS OF p.proc_time AS m
ON p.merchant.id = m.merchant_id;

CREATE VIEW per_country AS
SELECT window_start, window_end, merchant.country AS country,
       COUNT(*) AS payments, SUM(amount) AS total, MAX(amount) AS largest,
       COUNT(*) FILTER (WHERE amount > 100) AS over_100
FROM TABLE(TUMBLE(TABLE enriched, DESCRIPTOR(et), INTERVAL '1' MINUTE))
WHERE card.brand <> 'test'
GROUP BY window_start, window_end, merchant.country;

CREATE TABLE per_tier (
  window_start TIMESTAMP(3),
  window_end TIMESTAMP(3),
  tier STRING,
  payments BIGINT,
  mean DECIMAL(38, 6)
) WITH ('connector' = 'dynamodb');

INSERT INTO per_tier
SELECT window_start, window_end, COALESCE(tier, 'none') AS tier,
       COUNT(*) AS payments, AVG(amount) AS mean
FROM TABLE(HOP(TABLE enriched, DESCRIPTOR(et), INTERVAL '1' MINUTE, INTERVAL '5' MINUTE))
GROUP BY window_start, window_end, COALESCE(tier, 'none');
