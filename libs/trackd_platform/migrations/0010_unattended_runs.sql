-- Runs whose client sends no heartbeats (owned by the run service).
--
-- MLflow's clients never send heartbeats: a run they start (StartRun with `unattended`) is never
-- marked CRASHED for silence and stays RUNNING until it is ended. Runs started before keep the
-- heartbeat rule (DEFAULT true); the crash detector's partial index now covers only runs it judges.
ALTER TABLE runs ADD COLUMN heartbeats boolean NOT NULL DEFAULT true;
DROP INDEX runs_running_heartbeat;
CREATE INDEX runs_running_heartbeat ON runs (last_heartbeat) WHERE status = 1 AND heartbeats;
