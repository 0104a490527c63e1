-- Activation: destinations, their segment links, what each platform holds,
-- and one record per sync of a destination and a segment.

-- A destination is a connector kind plus its settings. Options never hold a
-- secret: a credential is named by the environment variable holding it
-- (token_env = "TTD_TOKEN").
CREATE SEQUENCE destination_id_seq START 1;
CREATE TABLE destinations (
    destination_id INTEGER PRIMARY KEY,
    name           VARCHAR NOT NULL UNIQUE,
    kind           VARCHAR NOT NULL CHECK (kind IN ('ttd', 'meta', 'xandr', 'webhook', 'file')),
    options        JSON NOT NULL,
    created_at     TIMESTAMP NOT NULL
);

-- Which segments go to a destination, and under which name or ID there
-- (TTD data name, Meta audience ID, Xandr seg_id). An unlinked segment stays
-- here (active = false) until its sync has removed every member it pushed.
CREATE TABLE destination_segments (
    destination_id INTEGER NOT NULL,
    segment_id     INTEGER NOT NULL,
    external_id    VARCHAR NOT NULL,
    active         BOOLEAN NOT NULL,
    linked_at      TIMESTAMP NOT NULL,
    PRIMARY KEY (destination_id, segment_id)
);

-- What each platform holds: one row per ID it confirmed, written only after
-- its confirmation, so a crash mid-sync is picked up by the next run. pid is
-- the ID the platform knows (ours, or its own from partner_ids); expires_at is
-- the platform-side TTL expiry (NULL where the platform has none). IDs stay
-- here after they leave dmp until the platform confirms their removal.
CREATE TABLE destination_state (
    destination_id INTEGER NOT NULL,
    segment_id     INTEGER NOT NULL,
    id             VARCHAR NOT NULL,
    id_type        VARCHAR NOT NULL,
    pid            VARCHAR NOT NULL,
    sent_at        TIMESTAMP NOT NULL,
    expires_at     TIMESTAMP
);

-- One row per sync of one destination and segment. Inserted as 'running',
-- updated once at the end; a 'running' row found by the next sync is from a
-- process that died mid-run and becomes 'interrupted'.
CREATE SEQUENCE sync_run_id_seq START 1;
CREATE TABLE sync_runs (
    run_id            BIGINT PRIMARY KEY DEFAULT nextval('sync_run_id_seq'),
    destination       VARCHAR NOT NULL,
    segment           VARCHAR NOT NULL,
    status            VARCHAR NOT NULL CHECK (
        status IN ('running', 'succeeded', 'partial', 'failed', 'skipped', 'interrupted')
    ),
    reason            VARCHAR,          -- why skipped, failed, or the whole audience removed
    started_at        TIMESTAMP NOT NULL,
    finished_at       TIMESTAMP,
    desired           BIGINT,           -- members the platform should hold
    unmapped          BIGINT,           -- members with no ID this platform takes
    adds_sent         BIGINT,
    removes_sent      BIGINT,
    refreshes_sent    BIGINT,
    accepted          BIGINT,
    rejected          BIGINT,
    failed            BIGINT,           -- sent but not confirmed: retried next run
    requests          BIGINT,
    retries           BIGINT,
    throttled_seconds DOUBLE,
    errors            JSON              -- platform reason -> items
);
