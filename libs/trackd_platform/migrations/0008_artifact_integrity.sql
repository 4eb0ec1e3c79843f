-- Artifact and model registry integrity (owned by the artifact service).
--
-- Model names are unique per project, no longer across projects: a model is identified by an id,
-- and its versions and aliases hang off that id. A name exists at most once per project, and at
-- most once among the models of no project (registered by the admin before any version); NULLS NOT
-- DISTINCT makes the latter a constraint too. The project of a model is now set by the artifact
-- service in the transaction that creates it or its first version, so migration 0007's trigger goes.
ALTER TABLE registered_models ADD COLUMN id uuid NOT NULL DEFAULT gen_random_uuid();
ALTER TABLE model_versions ADD COLUMN model_id uuid;
UPDATE model_versions v SET model_id = m.id FROM registered_models m WHERE m.name = v.name;
ALTER TABLE model_versions ALTER COLUMN model_id SET NOT NULL;
ALTER TABLE model_aliases ADD COLUMN model_id uuid;
UPDATE model_aliases a SET model_id = m.id FROM registered_models m WHERE m.name = a.name;
ALTER TABLE model_aliases ALTER COLUMN model_id SET NOT NULL;

ALTER TABLE model_aliases DROP CONSTRAINT model_aliases_name_version_fkey;
ALTER TABLE model_aliases DROP CONSTRAINT model_aliases_pkey;
ALTER TABLE model_versions DROP CONSTRAINT model_versions_name_fkey;
ALTER TABLE model_versions DROP CONSTRAINT model_versions_pkey;
ALTER TABLE registered_models DROP CONSTRAINT registered_models_pkey;

ALTER TABLE registered_models ADD PRIMARY KEY (id);
ALTER TABLE registered_models ADD CONSTRAINT registered_models_project_name
    UNIQUE NULLS NOT DISTINCT (project_id, name);
CREATE INDEX registered_models_name ON registered_models (name);
ALTER TABLE model_versions ADD PRIMARY KEY (model_id, version);
ALTER TABLE model_versions ADD CONSTRAINT model_versions_model_fkey
    FOREIGN KEY (model_id) REFERENCES registered_models (id);
ALTER TABLE model_aliases ADD PRIMARY KEY (model_id, alias);
ALTER TABLE model_aliases ADD CONSTRAINT model_aliases_version_fkey
    FOREIGN KEY (model_id, version) REFERENCES model_versions (model_id, version);
-- DeleteArtifact looks up the versions that point to a run's artifact (a file, or a directory).
CREATE INDEX model_versions_artifact ON model_versions (run_id, path);

DROP TRIGGER model_versions_owner ON model_versions;
DROP FUNCTION trackd_model_owner();

-- Blobs whose last live artifact was deleted: queued in the transaction of that deletion, deleted
-- from S3 only after it committed (and only if still unreferenced, under the digest's advisory
-- lock), then dequeued. A row a crash left behind is retried by the artifact service's sweeper.
CREATE TABLE blob_collections (
    sha256    text PRIMARY KEY,
    queued_at timestamptz NOT NULL DEFAULT now()
);

-- Direct (presigned PUT) uploads handed out and not yet completed. CompleteDirectUpload accepts
-- only these (for their run, until expires_at plus TRACKD_ARTIFACT_DIRECT_UPLOAD_GRACE_S); the
-- sweeper removes the object or open multipart upload of those never completed by then.
-- upload_id: the S3 multipart upload of a multi-part one, '' for a single PUT.
CREATE TABLE direct_uploads (
    upload_key text PRIMARY KEY,
    upload_id  text NOT NULL DEFAULT '',
    run_id     uuid NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX direct_uploads_expiry ON direct_uploads (expires_at);
