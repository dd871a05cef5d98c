-- The strongest identifier a lookup carries (contract section 5:
-- `match_basis`), derived from the stored identifiers so that old rows,
-- bulk loads and `generate` have it without being told; and the warnings
-- given when the lookup was made (NAME_ONLY_LOOKUPS=warn).
-- Replaces no function.
ALTER TABLE lookups
    ADD COLUMN match_basis text GENERATED ALWAYS AS (
        CASE WHEN email IS NOT NULL THEN 'email'
             WHEN phone IS NOT NULL THEN 'phone'
             WHEN social_media_url IS NOT NULL THEN 'social_media_url'
             WHEN name IS NOT NULL AND company IS NOT NULL THEN 'name_company'
             WHEN name IS NOT NULL THEN 'name_only'
        END) STORED,
    ADD COLUMN warnings text[] NOT NULL DEFAULT '{}';

-- `GET /v1/profiles?match_basis=`: the rarer bases (name_only) are found
-- without reading every lookup.
CREATE INDEX lookups_match_basis ON lookups (match_basis);
