-- Studies and trials: owned by the hpo service. PostgreSQL is the record of every trial, its
-- params, intermediate values and result; Redis only holds what can be rebuilt from here.
-- state: the StudyState / TrialState enum numbers of trackd.hpo.v1.
CREATE TABLE studies (
    id                uuid PRIMARY KEY,
    name              text NOT NULL UNIQUE,
    experiment_id     uuid NOT NULL REFERENCES experiments (id),
    run_id            uuid REFERENCES runs (id),
    objectives        jsonb NOT NULL,
    search_space      jsonb NOT NULL,
    sampler           text NOT NULL,
    sampler_options   jsonb NOT NULL DEFAULT '{}',
    pruner            text NOT NULL,
    pruner_options    jsonb NOT NULL DEFAULT '{}',
    max_trials        integer NOT NULL DEFAULT 0,
    max_duration_s    integer NOT NULL DEFAULT 0,
    parallelism       integer NOT NULL DEFAULT 1,
    max_failed_trials integer NOT NULL DEFAULT 0,
    retries_per_trial integer NOT NULL DEFAULT 0,
    seed              bigint,
    state             smallint NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz
);

CREATE TABLE trials (
    id            uuid PRIMARY KEY,
    study_id      uuid NOT NULL REFERENCES studies (id),
    number        integer NOT NULL,
    state         smallint NOT NULL,
    params        jsonb NOT NULL,
    objective_values float8[],
    run_id        uuid REFERENCES runs (id),
    attempt       integer NOT NULL DEFAULT 1,
    worker        text NOT NULL DEFAULT '',
    lease_expires timestamptz,
    started_at    timestamptz,
    ended_at      timestamptz,
    UNIQUE (study_id, number)
);
CREATE INDEX trials_study_state ON trials (study_id, state);
-- The lease reaper scans only running trials.
CREATE INDEX trials_running_lease ON trials (lease_expires) WHERE state = 2;

CREATE TABLE trial_intermediates (
    trial_id uuid NOT NULL REFERENCES trials (id),
    step     bigint NOT NULL,
    value    float8 NOT NULL,
    PRIMARY KEY (trial_id, step)
);
