-- Identity lifecycle: opt-outs, removals for destinations, deletion audit,
-- consent decisions, the ID graph, partner ID sync and the bot flag.

-- A person's "no": only the ID is kept, so the choice can be honoured.
CREATE TABLE optouts (
    id         VARCHAR NOT NULL,
    id_type    VARCHAR NOT NULL,
    source     VARCHAR NOT NULL,   -- cli, file, http
    created_at TIMESTAMP NOT NULL
);

-- IDs that left the system (expired, opted out, deleted). Destinations read
-- this on their next sync and tell the platform; activation prunes it.
CREATE TABLE identity_removals (
    id         VARCHAR NOT NULL,
    id_type    VARCHAR NOT NULL,
    reason     VARCHAR NOT NULL CHECK (reason IN ('expired', 'optout', 'deleted')),
    removed_at TIMESTAMP NOT NULL
);

-- One line per deletion request: who, when, how many rows. No IDs, no data
-- about the person.
CREATE SEQUENCE deletion_id_seq START 1;
CREATE TABLE deletion_audit (
    request_id   INTEGER PRIMARY KEY,
    requested_by VARCHAR NOT NULL,
    requested_at TIMESTAMP NOT NULL,
    ids_given    INTEGER NOT NULL,
    ids_found    INTEGER NOT NULL,
    rows_deleted JSON NOT NULL       -- table -> rows removed
);

-- Every distinct TCF string seen, decoded once (in Python) under one policy
-- (required purposes + vendor); the policy changing re-decides them all.
CREATE TABLE consent_decisions (
    consent    VARCHAR NOT NULL,
    policy     VARCHAR NOT NULL,
    valid      BOOLEAN NOT NULL,     -- false: undecodable, counts as no consent
    allowed    BOOLEAN NOT NULL,
    decided_at TIMESTAMP NOT NULL
);

-- Connected components of id_links: every ID of one device (or person, via a
-- hashed email) shares a group_id.
CREATE TABLE id_groups (
    id       VARCHAR NOT NULL,
    id_type  VARCHAR NOT NULL,
    group_id BIGINT NOT NULL
);

-- Cookie matching: our cookie ID -> a partner's (DSP's) own user ID.
CREATE TABLE partner_ids (
    partner    VARCHAR NOT NULL,
    cookie_id  VARCHAR NOT NULL,
    partner_id VARCHAR NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

ALTER TABLE devices ADD COLUMN bot BOOLEAN DEFAULT false;
