-- Resume keys (owned by the run service).
--
-- A client may start a run with a key of its own (e.g. a scheduler's job id): the first StartRun
-- with it in an experiment creates the run, later ones resume that run. Unique per experiment;
-- runs without a key (NULL) are not indexed.
ALTER TABLE runs ADD COLUMN resume_key text;
CREATE UNIQUE INDEX runs_resume_key ON runs (experiment_id, resume_key) WHERE resume_key IS NOT NULL;
