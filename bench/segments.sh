# Segments at scale: sourced by scripts/bench.sh once the service runs (it
# uses that script's helpers: sql, fact, run_wrk, log, die, and its
# BIN, BASE, DB_URL, WORK, RESULTS, HELPER). For each size of
# BENCH_PROFILES it generates profiles up to that size with
# `interests-receiver generate`, then measures:
#   - p50 / p95 of GET /v1/profiles for each single facet filter, for pairs
#     and for triples, and of GET /v1/facets with 0, 1, 2 and 3 filters,
#     values drawn from the common, mid and rare thirds of each field's
#     frequency ranking (bench.py segment-paths);
#   - the same for identifier filters (email, phone, URL);
#   - `interests-receiver export` of a segment of about a tenth of the
#     profiles (100,000 at a million) beside `COPY` of the same rows to
#     /dev/null, in the same run, and the export's peak RSS;
#   - EXPLAIN (ANALYZE, BUFFERS) of the hardest cases, kept in $WORK;
#   - with BENCH_BITMAPS=1, the in-process design for facet counts: roaring
#     bitmaps per value (bench/bitmap-probe) loaded from the postings, their
#     load time and peak RSS, and the same facet requests answered by them.

export BENCH_TOKEN="$API_TOKEN"
if [ -n "${BENCH_BITMAPS:-}" ]; then
  log "segments: building bench/bitmap-probe"
  cargo build --release --locked --manifest-path "$ROOT/bench/bitmap-probe/Cargo.toml" >"$WORK/probe-build.log" 2>&1 ||
    { cat "$WORK/probe-build.log" >&2; die "bitmap-probe build failed"; }
  PROBE="$TARGET_DIR/release/bitmap-probe"
fi

# seconds since $1 (date +%s%N), with 3 decimals
since() { awk -v a="$1" -v b="$(date +%s%N)" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }
# KiB of the kernel's page cache written but not yet on disk
dirty_kib() { awk '/^(Dirty|Writeback):/ { n += $2 } END { print n + 0 }' /proc/meminfo; }

# Profiles already there (BENCH_DB) count towards each size.
loaded=$(sql -c "SELECT count(*) FROM profiles")
for size in $PROFILE_SIZES; do
  added=$((size - loaded))
  if [ "$added" -gt 0 ]; then
    log "segments: generating profiles $((loaded + 1))..$size in SQL"
    t0=$(date +%s%N)
    env DATABASE_URL="$DB_URL" SERVICE_SECRET="$SERVICE_SECRET" RUST_LOG=warn \
      "$BIN" generate --profiles "$added" >>"$WORK/generate.log" 2>&1 ||
      { cat "$WORK/generate.log" >&2; die "generate failed"; }
    fact "generate:$size" "{\"added\":$added,\"seconds\":$(since "$t0")}"
    loaded=$size
    # The load leaves gigabytes of written pages in the kernel's cache,
    # which it writes back from 30 s on (vm.dirty_expire_centisecs): under
    # the first searches, one filter's p95 went from 8 to 26-34 ms, which
    # filter depending only on when the writeback came (BENCHMARKS.md).
    # Searches are measured after the load, not during its writeback.
    # BENCH_FLUSH=0 measures under the writeback instead, to see it.
    if [ "${BENCH_FLUSH:-1}" != 0 ]; then
      t0=$(date +%s%N)
      dirty=$(dirty_kib)
      sql -c "CHECKPOINT" >/dev/null || log "segments: CHECKPOINT refused (not a superuser); sync only"
      sync
      fact "flushed:$size" "{\"dirty_kib\":$dirty,\"seconds\":$(since "$t0")}"
    fi
  fi
  fact "postings:$size" "\"$(sql -c "SELECT count(*) || ' rows, ' || pg_size_pretty(pg_total_relation_size('profile_facets'))
                                      || ' (profiles: ' || pg_size_pretty(pg_total_relation_size('profiles')) || ')'
                                 FROM profile_facets")\""

  # The service's facet index loads again after a generate (the profiles
  # came with the triggers off): wait until it holds every posting, so that
  # the facet runs measure it, and note its load time, size and the RSS.
  postings=$(sql -c "SELECT count(*) FROM profile_facets")
  t0=$(date +%s%N)
  until [ "$(curl -fs "$BASE/metrics" | awk '/^facet_index_postings / {print $2}')" = "$postings" ]; do
    kill -0 "$SERVICE_PID" 2>/dev/null || die "the service stopped"
    [ $(( ($(date +%s%N) - t0) / 1000000000 )) -lt 900 ] || die "the facet index did not load within 900 s"
    sleep 0.5
  done
  bytes=$(curl -fs "$BASE/metrics" | awk '/^facet_index_bytes / {print $2}')
  loaded_line=$(grep 'facet index loaded' "$WORK/service.log" | tail -1 | tr -d '"\\')
  fact "facet_index:$size" "{\"postings\":$postings,\"bytes\":$bytes,\"waited\":$(since "$t0"),\"rss_kib\":$(rss_kib),\"log\":\"${loaded_line:0:400}\"}"

  # Each field's values ranked by count: the five most common, five around
  # the middle of the ranking, the five rarest.
  sql -F'|' -c "
    WITH r AS (SELECT field, value_lower, count,
                      row_number() OVER (PARTITION BY field ORDER BY count DESC, value_lower) AS rk,
                      count(*) OVER (PARTITION BY field) AS n
                 FROM facet_totals WHERE count > 0)
    SELECT field, CASE WHEN rk <= 5 THEN 'common' WHEN rk > n - 5 THEN 'rare' ELSE 'mid' END,
           count, value_lower
      FROM r WHERE rk <= 5 OR rk > n - 5 OR abs(rk - n / 2) <= 2" >"$WORK/values-$size"
  $HELPER segment-paths "$WORK/values-$size" "$WORK/seg-$size-"
  sql -c "SELECT email, phone, social_media_url FROM lookups TABLESAMPLE SYSTEM (1)
           WHERE email LIKE 'person%' LIMIT 200" -F' ' >"$WORK/subjects"
  $HELPER subject-paths "$WORK/subjects" "$WORK/seg-$size-search-"

  for kind in interest category brand archetype industry pairs triples email phone social_media_url; do
    log "segments: search $kind at $size profiles"
    dirty=$(dirty_kib)
    EXTRA_JSON=",\"profiles\":$size" run_wrk "search:$kind" 4 paths.lua \
      "$WORK/seg-$size-search-$kind.paths" GET 200 >/dev/null
    fact "dirty:search:$kind" "{\"before_kib\":$dirty,\"after_kib\":$(dirty_kib)}"
  done
  for n in 0 1 2 3; do
    log "segments: facets with $n filters at $size profiles"
    EXTRA_JSON=",\"profiles\":$size" run_wrk "facets:$n" 4 paths.lua \
      "$WORK/seg-$size-facets-$n.paths" GET 200 >/dev/null
  done

  # Where the time goes in the hardest cases: the store's queries
  # (src/store/profiles.rs, src/store/facets.rs) for the most common value.
  read -r cf cv < <(sql -F' ' -c "SELECT field, value_lower FROM facet_totals ORDER BY count DESC LIMIT 1")
  read -r rf rv < <(sql -F' ' -c "SELECT field, value_lower FROM facet_totals WHERE field <> '$cf'
                                  ORDER BY abs(count - $size / 1000), value_lower LIMIT 1")
  sql -v cf="$cf" -v cv="$cv" -v rf="$rf" -v rv="$rv" >"$WORK/explain-$size.txt" <<'SQL'
\echo search, one filter, the most common value
EXPLAIN (ANALYZE, BUFFERS)
SELECT p.id, p.result, l.email FROM (
  SELECT d.profile_id AS id, d.created_at FROM profile_facets d
   WHERE d.field = :'cf' AND d.value = lower(:'cv')
   ORDER BY created_at DESC, id DESC LIMIT 51) m
  JOIN profiles p ON p.id = m.id JOIN lookups l ON l.id = p.lookup_id
 ORDER BY p.created_at DESC, p.id DESC;
\echo search, a value on 0.1% of profiles driving, the most common value probed
EXPLAIN (ANALYZE, BUFFERS)
SELECT p.id, p.result, l.email FROM (
  SELECT d.profile_id AS id, d.created_at FROM profile_facets d
   WHERE d.field = :'rf' AND d.value = lower(:'rv')
     AND (SELECT true FROM profile_facets f WHERE f.field = :'cf' AND f.value = lower(:'cv')
           AND f.created_at = d.created_at AND f.profile_id = d.profile_id)
   ORDER BY created_at DESC, id DESC LIMIT 51) m
  JOIN profiles p ON p.id = m.id JOIN lookups l ON l.id = p.lookup_id
 ORDER BY p.created_at DESC, p.id DESC;
\echo facets of brand, one filter: the most common value
EXPLAIN (ANALYZE, BUFFERS)
WITH m AS (SELECT d.profile_id AS id, d.created_at FROM profile_facets d
            WHERE d.field = :'cf' AND d.value = lower(:'cv'))
SELECT u.v, count(*) FROM m JOIN profiles p ON p.id = m.id,
       LATERAL (SELECT DISTINCT lower(x) AS v FROM unnest(p.brand_facets) x) u
 GROUP BY u.v ORDER BY count(*) DESC, u.v LIMIT 20;
SQL
  fact "explain:$size" "\"$(grep -E 'Execution Time' "$WORK/explain-$size.txt" | sed 's/^ *//' | paste -sd ';' -)\""

  if [ -n "${BENCH_BITMAPS:-}" ]; then
    log "segments: the same facet requests from in-process bitmaps at $size profiles"
    cat "$WORK/seg-$size-facets-"[0-3].paths >"$WORK/seg-$size-facets-all.paths"
    t0=$(date +%s%N)
    # Each profile gets a dense ordinal, as an in-process index would.
    sql -c "COPY (SELECT f.field, f.value, p.n FROM profile_facets f
                    JOIN (SELECT id, (row_number() OVER ()) - 1 AS n FROM profiles) p ON p.id = f.profile_id)
            TO STDOUT" |
      /usr/bin/time -f '%M' -o "$WORK/bitmaps-rss" "$PROBE" "$WORK/seg-$size-facets-all.paths" >"$WORK/bitmaps-$size.txt"
    fact "bitmaps:$size" "\"$(paste -sd ';' "$WORK/bitmaps-$size.txt"); loaded from the database and built in $(since "$t0") s; peak RSS $(($(tail -1 "$WORK/bitmaps-rss") / 1024)) MiB\""
  fi

  # Export: the value whose segment is nearest a tenth of the profiles.
  read -r ef ecount ev < <(sql -F' ' -c "SELECT field, count, value_lower FROM facet_totals
                                         ORDER BY abs(count - $size / 10), value_lower LIMIT 1")
  copy_rows() {
    sql -v f="$ef" -v v="$ev" <<'SQL'
COPY (SELECT p.id, p.lookup_id, p.request_id, p.result, p.completed_on, p.received_via, p.created_at,
             l.synthetic, l.email, l.phone, l.social_media_url, l.name, l.company
        FROM profile_facets d JOIN profiles p ON p.id = d.profile_id JOIN lookups l ON l.id = p.lookup_id
       WHERE d.field = :'f' AND d.value = :'v'
       ORDER BY d.created_at DESC, d.profile_id DESC) TO STDOUT
SQL
  }
  copy_rows >/dev/null # warms the cache for both
  log "segments: export --$ef of $ecount profiles at $size, beside COPY"
  t0=$(date +%s%N)
  /usr/bin/time -f '%M' -o "$WORK/export-rss" "$BIN" export --server "$BASE" --token "$API_TOKEN" \
    --format csv "--$ef" "$ev" >/dev/null 2>"$WORK/export.log" ||
    { cat "$WORK/export.log" >&2; die "export failed"; }
  export_s=$(since "$t0")
  t0=$(date +%s%N)
  copy_rows >/dev/null
  copy_s=$(since "$t0")
  fact "export:$size" "{\"rows\":$ecount,\"seconds\":$export_s,\"copy_seconds\":$copy_s,\"rss_kib\":$(tail -1 "$WORK/export-rss")}"
done
