-- Orders per country and per product label: the oracle self-test pipeline (issue 17).
CREATE TABLE orders (
  order_id STRING,
  sku STRING,
  ms BIGINT,
  qty BIGINT,
  price_cents BIGINT,
  placed_at TIMESTAMP_LTZ(3),
  customer ROW<country STRING, tier INT>,
  et AS TO_TIMESTAMP_LTZ(ms, 3),
  proc_time AS PROCTIME(),
  WATERMARK FOR et AS et - INTERVAL '5' SECOND,
  PRIMARY KEY (order_id) NOT ENFORCED
) WITH (
  'connector' = 'kinesis',
  'stream' = 'orders',
  'aws.region' = 'us-east-1',
  'scan.stream.initpos' = 'TRIM_HORIZON',
  'format' = 'json',
  'json.timestamp-format.standard' = 'ISO-8601'
);

CREATE TABLE products (
  sku STRING,
  label STRING,
  PRIMARY KEY (sku) NOT ENFORCED
) WITH ('connector' = 'dynamodb', 'table-name' = 'products', 'aws.region' = 'us-east-1');

CREATE TABLE order_totals (
  window_start TIMESTAMP(3),
  window_end TIMESTAMP(3),
  label STRING,
  orders BIGINT,
  revenue_cents DOUBLE,
  PRIMARY KEY (window_start, label) NOT ENFORCED
) WITH ('connector' = 'dynamodb', 'table-name' = 'order_totals');

-- A plain view: not stored, only used below.
CREATE VIEW enriched AS
SELECT o.order_id, o.customer.country AS country, o.qty, o.price_cents, o.placed_at, o.et,
       COALESCE(p.label, 'unknown') AS label
FROM orders AS o
LEFT JOIN products FOR SYSTEM_TIME AS OF o.proc_time AS p ON o.sku = p.sku;

CREATE VIEW per_minute AS
SELECT window_start, window_end, customer.country AS country,
       COUNT(*) AS n,
       SUM(qty) AS qty_sum,
       AVG(qty) AS qty_avg,
       SUM(price_cents) / COUNT(*) AS avg_price,
       COUNT(*) FILTER (WHERE qty >= 3) AS big_orders,
       MAX(placed_at) AS last_placed
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(et), INTERVAL '1' MINUTE))
WHERE order_id <> 'ignored'
GROUP BY window_start, window_end, customer.country;

CREATE VIEW by_label AS
SELECT window_start, window_end, label, COUNT(*) AS n, SUM(qty) AS qty_sum
FROM TABLE(HOP(TABLE enriched, DESCRIPTOR(et), INTERVAL '30' SECOND, INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, label;

INSERT INTO order_totals
SELECT window_start, window_end, label, COUNT(*), SUM(price_cents * qty)
FROM TABLE(TUMBLE(TABLE enriched, DESCRIPTOR(et), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, label;
