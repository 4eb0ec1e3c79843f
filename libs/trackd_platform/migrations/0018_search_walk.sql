-- Search ordered by a metric walks that metric's (key, context, last_value) index from the top
-- and checks each run it meets against the filter, stopping when the page is full (search_sql.py).
-- Both halves are made cheap here (measured in bench/query.py, EXPLAIN (ANALYZE, BUFFERS) printed):
--
-- * the walk reads the index alone: run_id and points ride along in it, no table row is visited
--   (replaces 0005's metric_series_key_last, same key columns);
-- * a param or tag compared for equality is checked per run with one index probe on
--   (run_id, key, value prefix) — the key 0001's primary key leads with — rather than a visit of
--   the row. Both lead with what they look up and are ordinary secondary indexes: a Citus
--   cluster distributed by run id builds them on every shard.
CREATE INDEX metric_series_key_last_run ON metric_series (key, context, last_value) INCLUDE (run_id, points);
DROP INDEX metric_series_key_last;
CREATE INDEX run_params_run_key_prefix ON run_params (run_id, key, left(value, 200));
CREATE INDEX run_tags_run_key_prefix ON run_tags (run_id, key, left(value, 200));
