-- Files `dmp segments export` wrote (wherever --out put them): erasure rewrites
-- the ones that still exist without the erased IDs' lines.
CREATE TABLE exported_files (
    path       VARCHAR PRIMARY KEY,
    written_at TIMESTAMP NOT NULL
);
