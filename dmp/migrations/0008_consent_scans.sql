-- How far the consent pass has read events for new consent strings, per policy.
-- Events arrive by file and file ids only grow, so each pass reads newer files only.
CREATE TABLE consent_scans (
    policy       VARCHAR PRIMARY KEY,
    last_file_id INTEGER NOT NULL
);
