-- A study's trial counts per state, kept by a trigger on `trials` (whoever writes trials: the
-- controller, Optuna's storage protocol), so reading a study — every AcquireTrial and
-- CompleteTrial does — reads one row instead of counting its trials (O(trials) at 10,000).
-- counts[s] is the number of trials in state s (trackd.hpo.v1.TrialState: 1 WAITING, 2 RUNNING,
-- 3 COMPLETE, 4 PRUNED, 5 FAIL). A table of its own, without foreign keys: updating `studies`
-- itself twice in a transaction would make PostgreSQL re-check studies.run_id (a KEY SHARE lock
-- on the study's run), and the run service, ending that run meanwhile, would wait for it.
CREATE TABLE study_trial_counts (
    study_id uuid PRIMARY KEY,
    counts   integer[] NOT NULL DEFAULT '{0,0,0,0,0}'
);

INSERT INTO study_trial_counts (study_id, counts)
SELECT s.id, ARRAY(SELECT count(t.id)::integer FROM generate_series(1, 5) AS g(state)
                   LEFT JOIN trials t ON t.study_id = s.id AND t.state = g.state GROUP BY g.state ORDER BY g.state)
FROM studies s;

CREATE FUNCTION trials_count_states() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.state = NEW.state AND OLD.study_id = NEW.study_id THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE study_trial_counts SET counts[OLD.state] = counts[OLD.state] - 1 WHERE study_id = OLD.study_id;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        INSERT INTO study_trial_counts AS c (study_id) VALUES (NEW.study_id) ON CONFLICT (study_id) DO NOTHING;
        UPDATE study_trial_counts SET counts[NEW.state] = counts[NEW.state] + 1 WHERE study_id = NEW.study_id;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER trials_count_states AFTER INSERT OR DELETE OR UPDATE OF state, study_id ON trials
    FOR EACH ROW EXECUTE FUNCTION trials_count_states();

-- A run.ended event looks its trial up by run (the reaper's run_ended): not a scan of all trials.
CREATE INDEX trials_run ON trials (run_id) WHERE run_id IS NOT NULL;

-- Define-by-run (created without a search space): search_space is what the trials suggested.
ALTER TABLE studies ADD COLUMN define_by_run boolean NOT NULL DEFAULT false;
