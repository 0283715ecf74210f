-- `views` is a reserved word in Flink SQL: Flink refuses this pipeline.
CREATE TABLE pages (page STRING, ms BIGINT, et AS TO_TIMESTAMP_LTZ(ms, 3))
WITH ('connector' = 'kinesis', 'stream' = 'pages', 'format' = 'json');

CREATE VIEW page_views AS
SELECT window_start, window_end, page, COUNT(*) AS views
FROM TABLE(TUMBLE(TABLE pages, DESCRIPTOR(et), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, page;
