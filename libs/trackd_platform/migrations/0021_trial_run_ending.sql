-- A trial's run is ended through the run service just after CompleteTrial / FailTrial answers
-- (off the worker's path): `run_ending` marks an ended trial whose run may still be RUNNING —
-- set with the trial's end in one statement, cleared once the run service has ended the run. The
-- hpo controller's reaper ends the runs still marked (after a SIGKILL, or a run service outage),
-- so every trial's run ends. The partial index holds only the few marked trials.
ALTER TABLE trials ADD COLUMN run_ending boolean NOT NULL DEFAULT false;
CREATE INDEX trials_run_ending ON trials (id) WHERE run_ending;
