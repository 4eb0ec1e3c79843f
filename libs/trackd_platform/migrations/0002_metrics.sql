-- Metrics: owned by the ingest service, read by the query service.
--
-- One row per series (run, key, context). Points are stored columnar in chunks: one row per
-- series per committed batch, holding packed little-endian arrays (int64 steps, float64 values,
-- int64 unix-millisecond timestamps), so a point costs ~24 bytes plus its share of one row —
-- not a row of its own (MLflow: ~413 bytes a point). Values are stored bit for bit: NaN and
-- ±Infinity included. Every key leads with run_id, the distribution column for Citus, and a
-- series read in step order is a range scan of metric_chunks_pkey.
CREATE TABLE metric_series (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id  uuid NOT NULL,
    key     text NOT NULL,
    context smallint NOT NULL,
    UNIQUE (run_id, key, context)
);

CREATE TABLE metric_chunks (
    run_id     uuid NOT NULL,
    series_id  bigint NOT NULL,
    first_step bigint NOT NULL,
    chunk_id   bigint GENERATED ALWAYS AS IDENTITY,
    last_step  bigint NOT NULL,
    points     integer NOT NULL,
    steps      bytea NOT NULL,
    vals       bytea NOT NULL,
    timestamps bytea NOT NULL,
    PRIMARY KEY (run_id, series_id, first_step, chunk_id)
);
-- Packed arrays compress well (TOAST's pglz; lz4 where the server is built with it): let TOAST
-- try compression from 256 bytes up.
ALTER TABLE metric_chunks SET (toast_tuple_target = 256);

-- Exactly-once: the last committed sequence number of each client stream, written in the same
-- transaction as the stream's points.
CREATE TABLE ingest_streams (
    stream_id     uuid PRIMARY KEY,
    run_id        uuid NOT NULL,
    last_sequence bigint NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Runs whose Redis latest-metric cache missed an update (Redis was down); repaired from
-- metric_chunks when Redis is back.
CREATE TABLE latest_cache_repairs (
    run_id    uuid PRIMARY KEY,
    queued_at timestamptz NOT NULL DEFAULT now()
);
