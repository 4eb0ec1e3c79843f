-- Projects, experiments and runs: owned by the run service.
CREATE TABLE projects (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE experiments (
    id          uuid PRIMARY KEY,
    project_id  uuid NOT NULL REFERENCES projects (id),
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    tags        jsonb NOT NULL DEFAULT '{}',
    archived    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, name)
);

-- status: the RunStatus enum number (1 RUNNING, 2 FINISHED, 3 FAILED, 4 KILLED, 5 CRASHED).
CREATE TABLE runs (
    id             uuid PRIMARY KEY,
    experiment_id  uuid NOT NULL REFERENCES experiments (id),
    name           text NOT NULL,
    status         smallint NOT NULL,
    start_time     timestamptz NOT NULL,
    end_time       timestamptz,
    last_heartbeat timestamptz NOT NULL,
    parent_run_id  uuid REFERENCES runs (id),
    user_name      text NOT NULL DEFAULT '',
    notes          text NOT NULL DEFAULT '',
    source         jsonb NOT NULL DEFAULT '{}',
    environment    jsonb NOT NULL DEFAULT '{}',
    deleted_at     timestamptz
);
CREATE INDEX runs_experiment_start ON runs (experiment_id, start_time DESC, id DESC);
CREATE INDEX runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
-- The crash detector scans only running runs.
CREATE INDEX runs_running_heartbeat ON runs (last_heartbeat) WHERE status = 1;

CREATE TABLE run_params (
    run_id uuid NOT NULL REFERENCES runs (id),
    key    text NOT NULL,
    value  text NOT NULL,
    PRIMARY KEY (run_id, key)
);

CREATE TABLE run_tags (
    run_id uuid NOT NULL REFERENCES runs (id),
    key    text NOT NULL,
    value  text NOT NULL,
    PRIMARY KEY (run_id, key)
);

-- The transactional outbox: written in the same transaction as the state change, published to
-- Kafka by the relay, then marked sent. See trackd_platform/outbox.py.
CREATE TABLE outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    uuid NOT NULL UNIQUE,
    topic       text NOT NULL,
    key         text NOT NULL,
    event_type  text NOT NULL,
    payload     bytea NOT NULL,
    traceparent text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
