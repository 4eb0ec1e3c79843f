-- Every metric table is keyed by run id first (docs/scaling.md): metric_series' primary key was
-- its identity column alone, which a table distributed by run id (Citus) cannot keep unique
-- across shards. It becomes (run_id, id); ids stay unique (one identity sequence) and every read
-- or write of a series by id names its run too. No foreign key joins metric tables across runs.
ALTER TABLE metric_series DROP CONSTRAINT metric_series_pkey;
ALTER TABLE metric_series ADD PRIMARY KEY (run_id, id);
