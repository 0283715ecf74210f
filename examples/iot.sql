-- Sensors: nested readings, per site over five minutes sliding by one, and per device
-- per minute with a temperature band.
--
-- {"device": {"id": "s-3", "site": "berlin"}, "reading": {"temperature": 21.5,
--  "humidity": 40}, "battery": 87, "ts": "2026-01-01 00:00:05.250Z"}
CREATE TABLE sensors (
  device ROW<id STRING, site STRING>,
  reading ROW<temperature DOUBLE, humidity INT>,
  battery INT,
  ts TIMESTAMP_LTZ(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' MINUTE
) WITH ('connector' = 'kinesis', 'format' = 'json');

CREATE VIEW per_site AS
SELECT window_start, window_end, device.site AS site,
       COUNT(*) AS readings, AVG(reading.temperature) AS temperature,
       MAX(reading.humidity) AS humidity, MIN(battery) AS lowest_battery,
       COUNT(*) FILTER (WHERE reading.temperature > 30) AS hot
FROM TABLE(HOP(TABLE sensors, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '5' MINUTE))
GROUP BY window_start, window_end, device.site;

CREATE VIEW per_device AS
SELECT window_start, window_end, device.id AS device_id,
       CASE WHEN reading.temperature >= 30 THEN 'hot'
            WHEN reading.temperature < 10 THEN 'cold'
            ELSE 'mild' END AS band,
       COUNT(*) AS readings, SUM(reading.humidity) AS humidity_sum,
       AVG(battery) AS battery
FROM TABLE(TUMBLE(TABLE sensors, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
WHERE reading.temperature IS NOT NULL
GROUP BY window_start, window_end, device.id,
         CASE WHEN reading.temperature >= 30 THEN 'hot'
              WHEN reading.temperature < 10 THEN 'cold'
              ELSE 'mild' END;
