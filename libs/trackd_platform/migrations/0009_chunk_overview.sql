-- Metric chunk overviews (owned by the ingest service, read by the query service).
--
-- Each chunk written from now on keeps a small overview next to its points: its first and last
-- point and the minimum and maximum point of every block of 128 points (trackd_platform/chunks.py
-- says the bytes). A chart of a long series is drawn from the overviews, reading about 1/64 of the
-- points, with every extreme kept. Chunks written before, small chunks and chunks holding NaN or
-- ±Inf have none (NULL) and are read whole, as before: no rewrite of existing data.
ALTER TABLE metric_chunks ADD COLUMN overview bytea;
