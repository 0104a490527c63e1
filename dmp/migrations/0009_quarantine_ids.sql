-- The ID of a quarantined row, when it had a valid one: opt-outs and deletions
-- remove that person's bad rows too, matched exactly on (id, id_type).
ALTER TABLE quarantine ADD COLUMN id VARCHAR;
ALTER TABLE quarantine ADD COLUMN id_type VARCHAR;
