-- Searches with two or three facet filters whose profiles the facet index
-- has already intersected (src/facet_index.rs) read those profiles by
-- number: an index-only probe each, in any order, then the page is the
-- newest of them. Without this index a rare combination of common values
-- walks the rarest value's postings with a probe per row (BENCHMARKS.md).
CREATE INDEX profiles_doc ON profiles (doc) INCLUDE (created_at, id);
