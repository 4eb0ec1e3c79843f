-- A trial's run id is chosen by the hpo controller and stored with the claim that leases the
-- trial (one statement on AcquireTrial's path), then the run service starts the run under that
-- id (StartRun's client_run_id) before the worker gets its answer. So `trials.run_id` may name a
-- run that does not exist yet (or, when that StartRun failed, until the worker's next
-- AcquireTrial starts it, or the reaper requeues the trial and clears the id): it is no longer a
-- foreign key. Runs are never deleted, so an id once started always resolves.
ALTER TABLE trials DROP CONSTRAINT trials_run_id_fkey;
