-- Who did what to whose data (contract section 5, GET /v1/audit): the
-- token's name, never the token; the person as a keyed hash, never the
-- identifier. No foreign key: the record outlives an erased lookup.
CREATE TABLE audit_log (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    token        text NOT NULL,
    action       text NOT NULL CHECK (action IN ('lookup.create', 'lookup.read', 'profile.read',
                                                 'profile.search', 'profile.export', 'subject.erase')),
    subject_hash text,
    lookup_id    uuid,
    count        integer
);
