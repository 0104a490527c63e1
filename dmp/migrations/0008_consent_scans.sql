-- How far the consent pass has read events for new consent strings, per policy.
-- Events arrive by file and file ids only grow, so each pass reads newer files
-- only. One row per pass (no key: two passes at once must not conflict); the
-- latest is the highest last_file_id of the policy.
CREATE TABLE consent_scans (
    policy       VARCHAR NOT NULL,
    last_file_id INTEGER NOT NULL
);
