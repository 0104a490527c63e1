-- Segments an admin shares with an agency. An agency sees its own segments
-- (segments.agency) and the ones granted to it here; every lookup, listing and
-- overlap an agency reaches goes through dmp.segments.registry.visible_sql.
CREATE TABLE segment_grants (
    segment_id INTEGER NOT NULL,
    agency     VARCHAR NOT NULL,
    granted_at TIMESTAMP NOT NULL,
    PRIMARY KEY (segment_id, agency)
);
