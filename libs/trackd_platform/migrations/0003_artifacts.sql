-- Artifacts: owned by the artifact service. Blobs live in S3 under blobs/<sha256> — stored once
-- whatever the number of artifacts with that content — and are deleted once no live artifact
-- refers to them (an advisory lock on the digest orders recording against collection).
-- type: the ArtifactType enum number (1 file, 2 model, 3 figure, 4 data, 5 text).
CREATE TABLE artifacts (
    run_id     uuid NOT NULL,
    path       text NOT NULL,
    sha256     text NOT NULL,
    size       bigint NOT NULL,
    type       smallint NOT NULL,
    metadata   jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    PRIMARY KEY (run_id, path)
);
CREATE INDEX artifacts_sha256 ON artifacts (sha256) WHERE deleted_at IS NULL;
