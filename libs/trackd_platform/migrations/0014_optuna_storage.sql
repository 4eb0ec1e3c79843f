-- Optuna's storage protocol (the hpo service's StorageService, which optuna.storages.GrpcStorageProxy
-- speaks; docs/optuna.md). An Optuna study is a trackd study (`studies`) and each of its trials a
-- trackd trial (`trials`, with its run); what only Optuna has lives here, keyed to them. The
-- identity columns are the integer ids Optuna's protocol uses.
CREATE TABLE optuna_studies (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    study_id     uuid NOT NULL UNIQUE REFERENCES studies (id),
    directions   smallint[] NOT NULL,  -- optuna.StudyDirection numbers (api_pb2: MINIMIZE 0, MAXIMIZE 1)
    user_attrs   jsonb NOT NULL DEFAULT '{}',
    system_attrs jsonb NOT NULL DEFAULT '{}'
);

-- The first distribution seen for each param name of a study: a later one must be compatible
-- (optuna.distributions.check_distribution_compatibility), as every Optuna storage checks.
CREATE TABLE optuna_study_params (
    optuna_study_id bigint NOT NULL REFERENCES optuna_studies (id),
    name            text NOT NULL,
    distribution    text NOT NULL,
    PRIMARY KEY (optuna_study_id, name)
);

CREATE TABLE optuna_trials (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trial_id        uuid NOT NULL UNIQUE REFERENCES trials (id),
    optuna_study_id bigint NOT NULL REFERENCES optuna_studies (id),
    params          jsonb NOT NULL DEFAULT '{}',  -- name → internal representation (a float)
    distributions   jsonb NOT NULL DEFAULT '{}',  -- name → optuna.distributions.distribution_to_json
    user_attrs      jsonb NOT NULL DEFAULT '{}',
    system_attrs    jsonb NOT NULL DEFAULT '{}'
);
-- GetTrials reads a study's trials after an id (GrpcStorageProxy's cache asks for the new ones).
CREATE INDEX optuna_trials_study ON optuna_trials (optuna_study_id, id);
