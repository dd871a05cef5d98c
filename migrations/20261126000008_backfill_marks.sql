-- One-off data backfills that ran to the end, so that a start does not
-- search the whole table again (it would cost every start seconds on a big
-- database).
CREATE TABLE completed_backfills (
    name text PRIMARY KEY,
    at   timestamptz NOT NULL DEFAULT now()
);
