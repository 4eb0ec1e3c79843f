-- API tokens (docs/auth.md): owned by the run service, read by every service's access check.
-- Only the sha256 of a token's secret is stored; the secret is shown once, at creation.
-- role: the trackd.auth.v1.Role number (1 READ, 2 WRITE, 3 ADMIN).
CREATE TABLE api_tokens (
    id          uuid PRIMARY KEY,
    secret_hash text NOT NULL UNIQUE,
    project_id  uuid NOT NULL REFERENCES projects (id),
    role        smallint NOT NULL CHECK (role BETWEEN 1 AND 3),
    name        text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX api_tokens_project ON api_tokens (project_id, created_at);

-- A registered model belongs to a project, so access to it can be checked: the project of the
-- token that created it, else (created by an admin, or before auth was on) that of the run of its
-- first version. NULL until then: only the global admin reaches such a model.
ALTER TABLE registered_models ADD COLUMN project_id uuid REFERENCES projects (id);

CREATE FUNCTION trackd_model_owner() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE registered_models m SET project_id = e.project_id
      FROM runs r JOIN experiments e ON e.id = r.experiment_id
     WHERE m.name = NEW.name AND m.project_id IS NULL AND r.id = NEW.run_id;
    RETURN NEW;
END
$$;
CREATE TRIGGER model_versions_owner AFTER INSERT ON model_versions
    FOR EACH ROW EXECUTE FUNCTION trackd_model_owner();

-- Models registered before this migration: the project of their first version's run.
UPDATE registered_models m SET project_id = (
    SELECT e.project_id FROM model_versions v JOIN runs r ON r.id = v.run_id
      JOIN experiments e ON e.id = r.experiment_id
     WHERE v.name = m.name ORDER BY v.version LIMIT 1);
