-- A lookup decided under the daily credit budget commits without waiting
-- for its fsync (so the budget lock it holds to commit is released at
-- once), then the request makes one small synchronous write here before it
-- answers: the log is flushed in order, so this flush puts the lookup's
-- commit on disk too (store::lookups::flush_wal). One row per slot,
-- chosen by the backend's pid, so concurrent flushes never wait on a row.
CREATE TABLE wal_flush_marks (
    slot  integer PRIMARY KEY,
    n     bigint NOT NULL DEFAULT 0
);
INSERT INTO wal_flush_marks (slot) SELECT generate_series(0, 63);
