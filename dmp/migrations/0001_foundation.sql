-- Foundation: events, devices, id links, ingested files and quarantine.
-- All timestamps are UTC (TIMESTAMP without zone; the connection runs in UTC).

CREATE SEQUENCE file_id_seq START 1;

-- One row per log file that was loaded or rejected; the content hash makes
-- re-ingest of the same bytes a no-op.
CREATE TABLE ingested_files (
    file_id         INTEGER PRIMARY KEY,
    path            VARCHAR NOT NULL,
    sha256          VARCHAR NOT NULL,
    size_bytes      BIGINT NOT NULL,
    format          VARCHAR,
    layout          VARCHAR,
    status          VARCHAR NOT NULL CHECK (status IN ('loaded', 'rejected')),
    rows            BIGINT NOT NULL DEFAULT 0,
    loaded          BIGINT NOT NULL DEFAULT 0,
    duplicates      BIGINT NOT NULL DEFAULT 0,
    quarantined     BIGINT NOT NULL DEFAULT 0,
    dropped         BIGINT NOT NULL DEFAULT 0,
    reasons         JSON,
    new_devices     BIGINT NOT NULL DEFAULT 0,
    updated_devices BIGINT NOT NULL DEFAULT 0,
    error           VARCHAR,
    started_at      TIMESTAMP NOT NULL,
    finished_at     TIMESTAMP NOT NULL
);

-- Raw events, normalised. The dedupe key is (id_type, id, ts, event, url).
CREATE TABLE events (
    ts         TIMESTAMP NOT NULL,
    id         VARCHAR NOT NULL,
    id_type    VARCHAR NOT NULL,
    event      VARCHAR NOT NULL,
    url        VARCHAR,
    domain     VARCHAR,
    categories VARCHAR[],
    keywords   VARCHAR,
    country    VARCHAR,
    consent    VARCHAR,
    gpc        BOOLEAN,
    file_id    INTEGER NOT NULL
);

-- One row per pseudonymous ID, kept current by ingest.
-- Keys are unique by construction (every write is a MERGE from a grouped
-- source) rather than by PRIMARY KEY: DuckDB keeps a key's index in memory
-- and building it makes loading a million new IDs five times slower.
CREATE TABLE devices (
    id          VARCHAR NOT NULL,
    id_type     VARCHAR NOT NULL,
    first_seen  TIMESTAMP NOT NULL,
    last_seen   TIMESTAMP NOT NULL,
    event_count BIGINT NOT NULL
);

-- IDs seen together on one event (cookie + maid, device + hashed email).
-- Unique on (id_type, id, linked_type, linked_id), kept like devices.
CREATE TABLE id_links (
    id          VARCHAR NOT NULL,
    id_type     VARCHAR NOT NULL,
    linked_id   VARCHAR NOT NULL,
    linked_type VARCHAR NOT NULL,
    first_seen  TIMESTAMP NOT NULL,
    last_seen   TIMESTAMP NOT NULL
);

-- Rows that failed validation, with where they came from and why.
CREATE TABLE quarantine (
    file_id        INTEGER NOT NULL,
    file           VARCHAR NOT NULL,
    line           BIGINT,
    reason         VARCHAR NOT NULL,
    raw            VARCHAR,
    quarantined_at TIMESTAMP NOT NULL
);
