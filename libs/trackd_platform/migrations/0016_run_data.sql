-- Console logs, media over steps and inputs of runs (owned by the run service, RunDataService).
--
-- run_logs: console chunks in arrival order (position); (run, writer, seq) makes a retried chunk a
-- duplicate. run_log_usage: bytes kept and dropped per run (the per-run limit drops the oldest).
CREATE TABLE run_logs (
    position bigserial PRIMARY KEY,
    run_id uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    writer_id text NOT NULL,
    seq bigint NOT NULL,
    stream smallint NOT NULL,
    text text NOT NULL,
    bytes integer NOT NULL,
    logged_at timestamptz NOT NULL,
    UNIQUE (run_id, writer_id, seq)
);
CREATE INDEX run_logs_run_position ON run_logs (run_id, position);

CREATE TABLE run_log_usage (
    run_id uuid PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    stored_bytes bigint NOT NULL DEFAULT 0,
    dropped_bytes bigint NOT NULL DEFAULT 0
);

-- run_media: one row per (run, key, step); images and tables name an artifact of the run,
-- histograms are kept inline (edges and counts, bounded).
CREATE TABLE run_media (
    run_id uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key text NOT NULL,
    step bigint NOT NULL,
    kind smallint NOT NULL,
    artifact_path text NOT NULL DEFAULT '',
    sha256 text NOT NULL DEFAULT '',
    edges double precision[],
    counts double precision[],
    info jsonb NOT NULL DEFAULT '{}',
    logged_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, key, step)
);

-- run_inputs: the datasets a run read; searched by digest (`inputs.digest = '…'`).
CREATE TABLE run_inputs (
    id bigserial PRIMARY KEY,
    run_id uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    uri text NOT NULL,
    digest text NOT NULL,
    schema jsonb,
    rows bigint,
    context text NOT NULL,
    logged_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (run_id, uri, digest, context)
);
CREATE INDEX run_inputs_digest ON run_inputs (digest, run_id);
