-- Interests and segments: taxonomies, interest profiles, segments and their
-- members, daily sizes, interest clusters.

-- IAB Content Taxonomy 3.1 ('content') and Audience Taxonomy 1.1 ('audience'),
-- filled from dmp/data/iab/ by dmp.interests.taxonomy.install().
CREATE TABLE taxonomy (
    taxonomy  VARCHAR NOT NULL CHECK (taxonomy IN ('content', 'audience')),
    id        VARCHAR NOT NULL,
    parent_id VARCHAR,
    name      VARCHAR NOT NULL,
    path      VARCHAR NOT NULL,      -- tiers joined by " | "
    depth     INTEGER NOT NULL,
    sensitive BOOLEAN NOT NULL,      -- health, religion, politics, sexuality...
    PRIMARY KEY (taxonomy, id)
);

-- Decayed interest per device and content category. The score is kept as
-- log2 of sum(2^((ts - epoch) / half_life)) over the device's usable events,
-- which never changes with time: the score at T is 2^(score_log2 - (T - epoch)
-- / half_life), so only devices with new events need rewriting.
CREATE TABLE profiles (
    id          VARCHAR NOT NULL,
    id_type     VARCHAR NOT NULL,
    category_id VARCHAR NOT NULL,
    score_log2  DOUBLE NOT NULL,
    events      BIGINT NOT NULL,
    last_seen   TIMESTAMP NOT NULL
);

-- Daily rollup of the same usable, categorised events: what rule segments
-- count ("3 car pages in 14 days") without scanning raw events. weight_log2 is
-- that day's part of score_log2.
CREATE TABLE activity (
    id          VARCHAR NOT NULL,
    id_type     VARCHAR NOT NULL,
    category_id VARCHAR NOT NULL,
    day         DATE NOT NULL,
    events      BIGINT NOT NULL,
    weight_log2 DOUBLE NOT NULL,
    last_seen   TIMESTAMP NOT NULL
);

-- How far the profile job has read: events of files after this one are new.
CREATE TABLE profile_state (
    last_file_id INTEGER NOT NULL,
    half_life_days DOUBLE NOT NULL,
    updated_at   TIMESTAMP NOT NULL
);

CREATE SEQUENCE segment_id_seq START 1;
CREATE TABLE segments (
    segment_id  INTEGER PRIMARY KEY,
    name        VARCHAR NOT NULL,
    kind        VARCHAR NOT NULL CHECK (kind IN ('rule', 'cluster', 'lookalike')),
    definition  JSON,                -- the rule, the cluster, or the model reference
    description VARCHAR,
    agency      VARCHAR,             -- owner, for agency-scoped segments (lookalikes)
    ttl_days    INTEGER NOT NULL,
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL,
    UNIQUE (kind, name)
);

-- A device is a member while it matches; when it stops matching it stays
-- until expires_at (the segment TTL after it last matched).
CREATE TABLE segment_members (
    segment_id INTEGER NOT NULL,
    id         VARCHAR NOT NULL,
    id_type    VARCHAR NOT NULL,
    added_at   TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);

-- Why a device left a segment (its membership ran out), for `dmp explain`.
CREATE TABLE segment_exits (
    segment_id INTEGER NOT NULL,
    id         VARCHAR NOT NULL,
    id_type    VARCHAR NOT NULL,
    reason     VARCHAR NOT NULL,
    left_at    TIMESTAMP NOT NULL
);

CREATE TABLE segment_sizes (
    segment_id INTEGER NOT NULL,
    day        DATE NOT NULL,
    size       BIGINT NOT NULL,
    PRIMARY KEY (segment_id, day)
);

-- One row per cluster of each cluster run; cluster_key is stable across runs.
CREATE TABLE clusters (
    run_id         INTEGER NOT NULL,
    cluster_key    INTEGER NOT NULL,
    label          VARCHAR NOT NULL,
    size           BIGINT NOT NULL,
    top_categories JSON NOT NULL,
    centroid       JSON NOT NULL,     -- category_id -> weight
    segment_id     INTEGER,
    created_at     TIMESTAMP NOT NULL
);
