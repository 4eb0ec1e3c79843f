-- The model registry: owned by the artifact service.
CREATE TABLE registered_models (
    name        text PRIMARY KEY,
    description text NOT NULL DEFAULT '',
    tags        jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A version is an artifact (a file, or every artifact under a directory) of a run, with the
-- run's latest metrics at registration time.
CREATE TABLE model_versions (
    name       text NOT NULL REFERENCES registered_models (name),
    version    integer NOT NULL,
    run_id     uuid NOT NULL,
    path       text NOT NULL,
    sha256     text NOT NULL,
    metadata   jsonb NOT NULL DEFAULT '{}',
    metrics    jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);

CREATE TABLE model_aliases (
    name    text NOT NULL,
    alias   text NOT NULL,
    version integer NOT NULL,
    PRIMARY KEY (name, alias),
    FOREIGN KEY (name, version) REFERENCES model_versions (name, version)
);
