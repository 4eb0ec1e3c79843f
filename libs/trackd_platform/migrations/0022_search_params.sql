-- Search ordered by a metric walks that metric's (key, context, last_value) index (0018) and, for a
-- param filter, probed each run's params: ~1,700 probes (~20 ms) to fill a page of 100 when one run
-- in twenty matches (bench/query.py). Each series row now carries a copy of its run's params
-- (`run_params`, a JSON object key → value) inside the walked index, so the walk tests a param
-- filter on the index entry itself and probes only the runs that pass it.
--
-- The copy is NULL when the run's params take more than 1,024 bytes (a btree entry holds at most
-- ~2,700): search then probes run_params for that run, as before. It is kept exact:
-- * the ingest service fills it when it creates a series, holding the run row FOR KEY SHARE;
-- * a statement trigger on run_params refreshes it on the run's series when params are logged —
--   whoever logs them: the run service does so holding the run row FOR UPDATE, so the two locks
--   conflict and neither misses the other's commit. The series rows are locked in id order, like
--   the ingest service's summary updates, so the two cannot deadlock.
-- Params are only ever added (never changed or removed), so a refresh is rare; a run's params
-- logged with its start meet no series yet.
-- Still keyed by run id (docs/scaling.md): the copy is the run's own data, no cross-run reference.
CREATE FUNCTION trackd_search_params(run uuid) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN pg_column_size(o) <= 1024 THEN o END
    FROM (SELECT COALESCE(jsonb_object_agg(key, value), '{}'::jsonb) AS o FROM run_params WHERE run_id = run) p
$$;

ALTER TABLE metric_series ADD COLUMN run_params jsonb;
UPDATE metric_series s SET run_params = '{}'::jsonb
    WHERE NOT EXISTS (SELECT 1 FROM run_params p WHERE p.run_id = s.run_id);
UPDATE metric_series s SET run_params = a.o
    FROM (SELECT run_id, jsonb_object_agg(key, value) AS o FROM run_params GROUP BY run_id) a
    WHERE a.run_id = s.run_id AND pg_column_size(a.o) <= 1024;
CREATE INDEX metric_series_key_last_params ON metric_series (key, context, last_value)
    INCLUDE (run_id, points, run_params);
DROP INDEX metric_series_key_last_run;

CREATE FUNCTION trackd_refresh_search_params() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE metric_series s SET run_params = trackd_search_params(s.run_id)
    FROM (SELECT m.run_id, m.id FROM metric_series m
          WHERE m.run_id IN (SELECT DISTINCT run_id FROM logged) ORDER BY m.id FOR UPDATE) l
    WHERE s.run_id = l.run_id AND s.id = l.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER run_params_search_copy AFTER INSERT ON run_params
    REFERENCING NEW TABLE AS logged FOR EACH STATEMENT EXECUTE FUNCTION trackd_refresh_search_params();
