-- Interest clusters a buyer can rely on: segment status and history, the k kept
-- between cluster runs, a quality report per run, the last run's assignment of
-- every clustered device, the membership each cluster segment last applied, and
-- the new memberships the guard holds for linked clusters until accepted.

-- 'live' or 'retired' (a cluster that no longer exists: hidden from the live
-- list, its members expire through the segment TTL).
ALTER TABLE segments ADD COLUMN status VARCHAR DEFAULT 'live';

-- What happened to a segment, for its page: renamed, held, accepted, retired.
CREATE TABLE segment_history (
    segment_id INTEGER NOT NULL,
    happened_at TIMESTAMP NOT NULL,
    event       VARCHAR NOT NULL,
    detail     VARCHAR NOT NULL
);

-- The k of the clusters, kept until an operator asks for a new choice
-- (`dmp run cluster --rechoose-k`) or the segments.cluster_k* settings change.
CREATE TABLE cluster_k (
    k          INTEGER NOT NULL,
    settings   JSON NOT NULL,      -- cluster_k, cluster_k_min, cluster_k_max it was chosen under
    candidates JSON,               -- silhouette of each candidate k, when chosen by silhouette
    chosen_at  TIMESTAMP NOT NULL
);

-- One quality report per cluster run; 'kept' runs refused bad input and
-- changed nothing.
CREATE TABLE cluster_runs (
    run_id INTEGER PRIMARY KEY,
    ran_at TIMESTAMP NOT NULL,
    status VARCHAR NOT NULL CHECK (status IN ('applied', 'kept')),
    reason VARCHAR,
    report JSON NOT NULL
);

-- The cluster of every device in the last applied run (churn: the adjusted
-- Rand index against the next run; accepted holds take their members here).
CREATE TABLE cluster_assignments (
    id          VARCHAR NOT NULL,
    id_type     VARCHAR NOT NULL,
    cluster_key INTEGER NOT NULL
);

-- The membership each cluster segment last applied (what the guard compares a
-- new run with; what a held segment keeps renewing).
CREATE TABLE cluster_members (
    segment_id INTEGER NOT NULL,
    id         VARCHAR NOT NULL,
    id_type    VARCHAR NOT NULL
);
INSERT INTO cluster_members
SELECT DISTINCT m.segment_id, m.id, m.id_type
FROM segment_members m JOIN segments s USING (segment_id) WHERE s.kind = 'cluster';

-- A linked cluster whose new membership (or name) the guard holds back.
CREATE TABLE cluster_holds (
    segment_id  INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL,
    cluster_key INTEGER NOT NULL,
    label       VARCHAR NOT NULL,  -- the name the cluster would take
    reason      VARCHAR NOT NULL,
    held_at     TIMESTAMP NOT NULL
);

-- Clusters of earlier versions that the last run no longer has were left
-- listed as if live: retire them.
UPDATE segments SET status = 'retired'
WHERE kind = 'cluster' AND EXISTS (SELECT 1 FROM clusters) AND segment_id NOT IN (
    SELECT segment_id FROM clusters
    WHERE run_id = (SELECT max(run_id) FROM clusters) AND segment_id IS NOT NULL);
