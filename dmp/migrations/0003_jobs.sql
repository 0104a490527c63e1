-- Job runs: one row per run of a pipeline job, however it was started.
-- A run is inserted as 'running' when it starts and updated once when it ends;
-- a 'running' row found when a process opens the runner is from a process that
-- died mid-run and is marked 'interrupted' (its open transaction never committed).

CREATE SEQUENCE job_run_id_seq START 1;

CREATE TABLE job_runs (
    run_id      BIGINT PRIMARY KEY DEFAULT nextval('job_run_id_seq'),
    job         VARCHAR NOT NULL,
    trigger     VARCHAR NOT NULL CHECK (trigger IN ('schedule', 'cli', 'api')),
    status      VARCHAR NOT NULL CHECK (
        status IN ('running', 'succeeded', 'failed', 'timed_out', 'interrupted', 'skipped')
    ),
    started_at  TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    result      JSON,       -- the job's summary: counts, warnings
    error       VARCHAR     -- why it did not succeed; the traceback for a crash
);
