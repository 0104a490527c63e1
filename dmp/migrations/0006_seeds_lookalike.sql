-- Seed lists and lookalike audiences: uploaded seed IDs, the devices they
-- resolve to, each lookalike run (model, quality report, churn, guard
-- decisions) and the audience the last applied run chose.

-- One row per seed list, owned by one agency (names are unique per agency).
-- The counts describe the last upload; an email upload is stored as hashed
-- emails (id_type 'hem' in seed_ids): the raw address is never written.
CREATE SEQUENCE seed_list_id_seq START 1;
CREATE TABLE seed_lists (
    seed_list_id    INTEGER PRIMARY KEY,
    agency          VARCHAR NOT NULL,
    name            VARCHAR NOT NULL,
    id_type         VARCHAR NOT NULL CHECK (id_type IN ('maid', 'cookie', 'hem', 'email')),
    rows            BIGINT NOT NULL,    -- non-blank lines, header excluded
    valid           BIGINT NOT NULL,
    invalid         BIGINT NOT NULL,
    invalid_reasons JSON NOT NULL,      -- reason -> count
    duplicates      BIGINT NOT NULL,
    opted_out       BIGINT NOT NULL,    -- valid IDs dropped because they opted out
    ids             BIGINT NOT NULL,    -- distinct IDs kept
    matched         BIGINT NOT NULL,    -- devices they resolved to at matched_at
    uploaded_at     TIMESTAMP NOT NULL,
    matched_at      TIMESTAMP NOT NULL,
    UNIQUE (agency, name)
);

-- The normalised seed IDs of each list: maid, cookie or hem (SHA-256 hex).
CREATE TABLE seed_ids (
    seed_list_id INTEGER NOT NULL,
    id           VARCHAR NOT NULL,
    id_type      VARCHAR NOT NULL
);

-- Devices (cookie, maid) a list resolves to, directly or through the ID
-- graph. seed_key names the device's ID-graph component (else the seed ID
-- that reached it), so a held-out split keeps one person on one side.
CREATE TABLE seed_matches (
    seed_list_id INTEGER NOT NULL,
    id           VARCHAR NOT NULL,
    id_type      VARCHAR NOT NULL,
    via          VARCHAR NOT NULL CHECK (via IN ('direct', 'link')),
    seed_key     UBIGINT NOT NULL
);

-- One row per build or refresh of a lookalike segment. 'applied' runs
-- changed the audience; 'kept' runs were refused by a guard (size, quality,
-- too few seeds) and left the previous audience in place, saying why.
CREATE SEQUENCE lookalike_run_id_seq START 1;
CREATE TABLE lookalike_runs (
    run_id       INTEGER PRIMARY KEY,
    segment_id   INTEGER NOT NULL,
    seed_list_id INTEGER NOT NULL,
    ran_at       TIMESTAMP NOT NULL,
    status       VARCHAR NOT NULL CHECK (status IN ('applied', 'kept')),
    reason       VARCHAR,
    eligible     BIGINT,              -- devices with a consented interest profile
    seed_devices BIGINT,              -- matched seed devices among them
    target_size  BIGINT,
    size         BIGINT,              -- devices this run chose
    added        BIGINT,              -- against the previous applied audience
    removed      BIGINT,
    churn        DOUBLE,              -- (added + removed) / previous size
    quality      JSON,                -- the held-out quality report
    model        JSON,                -- parameters and the strongest features
    seconds      JSON                 -- where the time went
);

-- The audience the last applied run chose, with its scores. Segment
-- membership (segment_members, with the segment TTL) follows it.
CREATE TABLE lookalike_members (
    segment_id INTEGER NOT NULL,
    id         VARCHAR NOT NULL,
    id_type    VARCHAR NOT NULL,
    score      DOUBLE NOT NULL
);
