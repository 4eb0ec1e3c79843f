-- Search: each series' latest point and its min / max / count, kept by the ingest service in the
-- same transaction as the series' chunks, so a filter or an ordering on a metric reads one row
-- per run and key (the Redis cache holds the same numbers for the hot path). min / max ignore
-- NaN and are NULL while a series has only NaN.
ALTER TABLE metric_series
    ADD COLUMN last_step  bigint,
    ADD COLUMN last_value float8,
    ADD COLUMN last_ts    bigint,
    ADD COLUMN min_value  float8,
    ADD COLUMN max_value  float8,
    ADD COLUMN points     bigint NOT NULL DEFAULT 0;
CREATE INDEX metric_series_key_last ON metric_series (key, context, last_value);
-- Search joins each run to one of its series to filter or order by it: with the summary inside
-- the unique index that lookup is an index-only scan. Replaces 0002's UNIQUE (run_id, key, context).
CREATE UNIQUE INDEX metric_series_run_key ON metric_series (run_id, key, context)
    INCLUDE (last_value, min_value, max_value, points);
ALTER TABLE metric_series DROP CONSTRAINT metric_series_run_id_key_context_key;

-- Filters on params and tags look up (key, value) across runs. Values may be longer than a btree
-- entry can hold, so the index keeps their first 200 characters (the search compiler matches
-- on that prefix, then on the whole value).
CREATE INDEX run_params_key_value ON run_params (key, left(value, 200));
CREATE INDEX run_tags_key_value ON run_tags (key, left(value, 200));

-- A param or tag compared with a number compares numerically when its value reads as a
-- (finite) number; NULL otherwise, so the comparison is false.
CREATE FUNCTION trackd_number(value text) RETURNS float8
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    IF value !~ '^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$' THEN
        RETURN NULL;
    END IF;
    RETURN value::float8;
EXCEPTION WHEN numeric_value_out_of_range THEN
    RETURN NULL;
END
$$;
