-- Why a trial failed: FailTrial's reason, or why the hpo service failed it (worker lost).
ALTER TABLE trials ADD COLUMN fail_reason text NOT NULL DEFAULT '';
-- A trial given its params by EnqueueTrial (a warm start): handed out before sampled ones, and
-- kept when the trials sampled ahead are dropped to make room for it.
ALTER TABLE trials ADD COLUMN enqueued boolean NOT NULL DEFAULT false;
