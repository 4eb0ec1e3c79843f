-- Model version numbers only grow, also across deleted versions (MLflow's DeleteModelVersion):
-- the next number a model gives out, kept on the model.
ALTER TABLE registered_models ADD COLUMN next_version integer NOT NULL DEFAULT 1;
UPDATE registered_models m
   SET next_version = coalesce((SELECT max(version) FROM model_versions v WHERE v.model_id = m.id), 0) + 1;
